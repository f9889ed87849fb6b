//! Request signing, signature v2 (docs/PROTOCOL.md §3).
//!
//! With a secret key configured every request carries `timestamp` and
//! `signature`:
//!
//! 1. add `timestamp=<unix seconds>` to the query;
//! 2. the canonical query: every parameter but `signature`, sorted by key,
//!    `key=value` joined with `&`, values percent-encoded keeping only
//!    `A-Z a-z 0-9 - _ .` (exactly our [`QUERY_VALUE`](crate::encode::QUERY_VALUE)
//!    set, so the query we send *is* the canonical one, re-ordered);
//! 3. input = `GET\n{publish key}\n{path}\n{canonical query}\n` (the empty
//!    GET body leaves the trailing `\n`);
//! 4. HMAC-SHA256 with the secret key, base64, made URL-safe (`+`→`-`,
//!    `/`→`_`) without `=` padding, prefixed `v2.`.
//!
//! HMAC comes from `ring`, which rustls already brings: no hand-written
//! crypto and no new crate. Signing therefore needs the `tls` feature.

use ring::hmac;

/// Base64 (standard alphabet made URL-safe: `-` and `_`), no padding.
pub(crate) fn base64_url_nopad(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let sym = |i: u32| char::from(ALPHABET[(i & 63) as usize]);
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = b(0) << 16 | b(1) << 8 | b(2);
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        if chunk.len() > 1 {
            out.push(sym(n >> 6));
        }
        if chunk.len() > 2 {
            out.push(sym(n));
        }
    }
    out
}

/// The canonical form of an already percent-encoded query: pairs sorted by
/// key (stable, so repeated keys keep their order), `signature` left out.
pub(crate) fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .filter(|(k, _)| *k != "signature")
        .collect();
    // NOTE(size): a query holds a handful of parameters. This insertion
    // sort (stable: equal keys never swap) is a few dozen bytes of code;
    // `sort_by` brought in the standard library's ~4 KB stable sort.
    for i in 1..pairs.len() {
        let mut j = i;
        while j > 0 && pairs.get(j - 1).map(|p| p.0) > pairs.get(j).map(|p| p.0) {
            pairs.swap(j - 1, j);
            j -= 1;
        }
    }
    let mut out = String::with_capacity(query.len());
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// The v2 signature of a GET of `path?query` (query already percent-encoded
/// and including `timestamp`).
pub fn signature_v2(secret_key: &str, publish_key: &str, path: &str, query: &str) -> String {
    let input = format!("GET\n{publish_key}\n{path}\n{}\n", canonical_query(query));
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret_key.as_bytes());
    let tag = hmac::sign(&key, input.as_bytes());
    let mut sig = String::from("v2.");
    sig.push_str(&base64_url_nopad(tag.as_ref()));
    sig
}

/// Adds `timestamp` and `signature` to the request's query.
pub(crate) fn sign(
    request: &mut crate::Request,
    secret_key: &str,
    publish_key: &str,
    unix_secs: u64,
) {
    request.push_param("timestamp", crate::num::itoa64(unix_secs).as_str());
    let sig = signature_v2(secret_key, publish_key, request.path(), request.query());
    request.push_param("signature", &sig);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_vectors() {
        // Signature v2 (docs/PROTOCOL.md §3) against the vectors of
        // PubNub's Go SDK tests (pubnub/go `endpoints_test.go`).
        let cases = [
            (
                "sec-c-MmUxNTZjMmYtNzFkNS00OAkzLWE2YjctNmQ4YzE5NWNmZDA3",
                "pub-c-03f156ea-a2e9-4c35-a733-9535824be897",
                "/v1/objects/sub-c-d7da9e59-c997-11e9-a139-dab2c75acd6f/spaces/pandu-ut-sid/users",
                "l_obj=0.4545555556&l_pam=1.145&pnsdk=PubNubCSharp4.0.34.0&requestid=19e1dee9-2f87-45d6-97e5-3f4d3f9779a2&timestamp=1568724043&uuid=mytestuuid",
                "v2.TcZdUURiXAnxJgN4OLPczxzH4MQO87l-yKfE4fyUHGc",
            ),
            (
                "sec-c-ZDkzZTBkOTEtNTQxZS00VmQ3LTljMWUtMTNiNGZjNWUwMTVk",
                "pub-c-38994634-9e06-4967-bc66-2ac2cef65ed9",
                "/v1/objects/sub-c-c9710929-1b7a-11e3-a0c8-02ee2ddab7fe/users",
                "count=true&filter=name%3D%3D%27newnamemodified%27&include=custom&pnsdk=NET461CSharp4.5.0.0&timestamp=1577364610&uuid=pn-856feea0-5ba3-4c6d-85a2-a67efa1f4e20",
                "v2.w39EWDHc0ibDCxOD2jiJEutjpc_1VJ1SDyGaABEljSs",
            ),
            (
                "wMfbo9G0xVUG8yfTfYw5qIdfJkTd7A",
                "demo",
                "/v2/presence/sub-key/demo/channel/ch1,ch2/heartbeat",
                // Deliberately unsorted: canonicalization sorts it.
                "uuid=myUUID&timestamp=1583755527&state=%7B%22ch1%22%3A%7B%22a%22%3A1%7D%7D&pnsdk=PubNub-Go%2F4.6.5&heartbeat=300",
                "v2.dTQ-BdpNO8pNf0qjiXPVg8ZA2CUytlzZUbdsa1ene7Q",
            ),
        ];
        for (sec, publ, path, query, want) in cases {
            assert_eq!(signature_v2(sec, publ, path, query), want, "{path}");
        }
    }

    #[test]
    fn hmac_and_base64() {
        // Kotlin's signSHA256("key", "data"), before padding is stripped.
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"key");
        let tag = hmac::sign(&key, b"data");
        assert_eq!(
            base64_url_nopad(tag.as_ref()),
            "UDH-PZicbRU3oBP6bnOdojRj_a7DtwE32Cjjas4iG9A"
        );
        let cases: [(&[u8], &str); 5] = [
            (b"", ""),
            (b"f", "Zg"),
            (b"fo", "Zm8"),
            (b"foo", "Zm9v"),
            (&[0xfb, 0xff], "-_8"),
        ];
        for (input, want) in cases {
            assert_eq!(base64_url_nopad(input), want);
        }
    }

    proptest::proptest! {
        #[test]
        fn canonical_sort_matches_std(pairs in proptest::collection::vec(("[a-d]{0,2}", "[0-9]{0,2}"), 0..12)) {
            let query = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
            let mut want: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            want.sort_by(|a, b| a.0.cmp(b.0));
            let want = want.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
            proptest::prop_assert_eq!(canonical_query(&query), want);
        }
    }

    #[test]
    fn canonical() {
        assert_eq!(
            canonical_query("uuid=u&auth=a&signature=x&b=&a=2"),
            "a=2&auth=a&b=&uuid=u"
        );
        let pn = crate::PubNub::builder()
            .subscribe_key("s")
            .user_id("u")
            .origin("http://h")
            .build()
            .unwrap();
        let mut r = pn.where_now().request().unwrap();
        let query = r.query().to_string();
        sign(&mut r, "sec", "pub", 1583755527);
        let (rest, sig) = r.query().split_once("&signature=").unwrap();
        assert_eq!(rest, format!("{query}&timestamp=1583755527"));
        assert_eq!(
            sig,
            signature_v2("sec", "pub", "/v2/presence/sub-key/s/uuid/u", rest)
        );
        assert_eq!(r.path(), "/v2/presence/sub-key/s/uuid/u");
        assert!(sig.starts_with("v2."));
    }
}
