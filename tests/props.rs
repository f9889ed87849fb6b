//! Property tests: encoding round trips, decoders that never panic, string
//! decoding that agrees with serde_json, and hostile nesting.

use proptest::prelude::*;
use pubnub_presence::__internal::{encode, json::Cursor};
use pubnub_presence::decode;

/// Hand-written bodies of every kind (the recorded corpus is added, see
/// `seeds`).
const OWN_BODIES: &[&str] = &[
    r#"{"status":200,"message":"OK","service":"Presence","uuids":["a",{"uuid":"b","state":{"k":[1,2,{"x":null}]}}],"occupancy":2}"#,
    r#"{"message":"OK","payload":{"channels":{"c1":{"occupancy":1,"uuids":[{"state":{"s":"\u00e9\ud83d\ude00"},"uuid":"u"}]},"c2":{"occupancy":0}},"total_channels":2,"total_occupancy":1},"service":"Presence","status":200}"#,
    r#"{"status":200,"payload":{"channels":["a","b\"c"]}}"#,
    r#"{"status":200,"uuid":"u","payload":{"a":1},"channel":"c"}"#,
    r#"{"status":200,"payload":{"channels":{"a":{"n":1},"b":{}}},"uuid":"u"}"#,
    r#"{"message":"Forbidden","payload":{"channels":["demo"],"channel-groups":[":g"]},"error":true,"service":"Access Manager","status":403}"#,
    r#"{"t":{"t":"17302026156815862","r":41},"m":[{"a":"2","f":0,"p":{"t":"17302026156815862","r":43},"c":"ch-pnpres","d":{"action":"join","uuid":"bob","timestamp":1730202615,"occupancy":2,"data":{"k":true}},"b":"g-pnpres"},{"p":{"t":"1"},"c":"x-pnpres","d":{"action":"interval","timestamp":5,"occupancy":3,"join":["a"],"leave":["b"],"timeout":["c"]}}]}"#,
];

fn seeds() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = OWN_BODIES.iter().map(|b| b.as_bytes().to_vec()).collect();
    // The recorded corpus, shipped with the crate (tests/recorded.rs checks
    // that it is all there).
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recorded");
    let rd = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("recorded fixtures not readable at {}: {e}", dir.display()));
    let before = v.len();
    for e in rd.flatten() {
        if e.path().extension().is_some_and(|x| x == "json") {
            v.push(std::fs::read(e.path()).expect("recorded fixture body"));
        }
    }
    assert_eq!(
        v.len() - before,
        45,
        "45 recorded bodies in {}",
        dir.display()
    );
    v
}

/// Runs every decoder entry point on `body`; none may panic.
fn all_decoders(body: &[u8]) {
    let _ = decode::here_now(body, Some("ch"));
    let _ = decode::here_now(body, None);
    let _ = decode::where_now(body);
    let _ = decode::set_state(body, "ch");
    let _ = decode::get_state(body);
    let _ = decode::events(body);
    let _ = decode::ack(body);
    let _ = decode::error(403, body);
    let _ = pubnub_presence::__internal::json::validate(body);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn path_and_query_encoding_round_trip(name in "\\PC*") {
        for set in [encode::PATH_SEGMENT, encode::QUERY_VALUE] {
            let enc = encode::encode(&name, set);
            prop_assert!(enc.bytes().all(|b| set.keeps(b) || b == b'%' || b.is_ascii_hexdigit()));
            let back = encode::decode(&enc);
            prop_assert_eq!(back.as_deref(), Some(name.as_str()));
        }
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        all_decoders(&body);
    }

    #[test]
    fn decoders_never_panic_on_mutated_bodies(
        seed in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let seeds = seeds();
        let mut body = seeds[seed.index(seeds.len())].clone();
        for (at, byte, op) in edits {
            if body.is_empty() { break; }
            let i = at.index(body.len());
            match op {
                0 => body[i] = byte,
                1 => { body.remove(i); }
                _ => body.insert(i, byte),
            }
        }
        all_decoders(&body);
    }

    /// Each part is JSON string text and the UTF-16 code units it stands
    /// for. Every string generated is valid JSON text (RFC 8259's grammar
    /// allows any `\uXXXX`, lone surrogates included).
    #[test]
    fn strings_decode_like_serde_json(
        parts in proptest::collection::vec(prop_oneof![
            "[a-zA-Z0-9 é😀]{0,4}".prop_map(|s| { let u = s.encode_utf16().collect(); (s, u) }),
            prop::sample::select(vec![
                ("\\\"", '"'), ("\\\\", '\\'), ("\\/", '/'), ("\\b", '\u{8}'),
                ("\\f", '\u{c}'), ("\\n", '\n'), ("\\r", '\r'), ("\\t", '\t'),
            ]).prop_map(|(e, c)| (e.to_string(), vec![c as u16])),
            any::<u16>().prop_map(|u| (format!("\\u{u:04x}"), vec![u])),
            any::<char>().prop_map(|c| {
                let mut b = [0u16; 2];
                let units = c.encode_utf16(&mut b).to_vec();
                (units.iter().map(|u| format!("\\u{u:04X}")).collect::<String>(), units)
            }),
        ], 0..12)
    ) {
        let json = format!("\"{}\"", parts.iter().map(|p| p.0.as_str()).collect::<String>());
        let ours = Cursor::new(&json).parse_str().map(|s| s.into_owned());
        // serde_json where it accepts the string; where it does not (a lone
        // surrogate), the standard library's UTF-16 decoding with U+FFFD
        // for each lone surrogate, which is what we promise.
        let units: Vec<u16> = parts.iter().flat_map(|p| p.1.iter().copied()).collect();
        let lossy: String = char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect();
        match serde_json::from_str::<String>(&json) {
            Ok(theirs) => {
                prop_assert_eq!(ours.as_deref().ok(), Some(theirs.as_str()), "{}", json);
                prop_assert_eq!(&theirs, &lossy);
            }
            Err(_) => prop_assert_eq!(ours.as_deref().ok(), Some(lossy.as_str()), "{}", json),
        }
        // skip_value accepts every one of them (valid JSON text).
        prop_assert!(pubnub_presence::__internal::json::validate(json.as_bytes()).is_ok(), "{}", json);
    }
}

#[test]
fn hostile_nesting_is_an_error_not_a_stack_overflow() {
    for open in ["[", "{\"a\":"] {
        let deep = open.repeat(100_000);
        let wrapped = [
            deep.clone(),
            format!("{{\"payload\":{deep}"),
            format!("{{\"occupancy\":1,\"uuids\":[{{\"uuid\":\"u\",\"state\":{deep}"),
            format!("{{\"t\":{{\"t\":\"1\"}},\"m\":[{{\"c\":\"a-pnpres\",\"d\":{deep}"),
        ];
        for body in wrapped {
            all_decoders(body.as_bytes());
            assert!(decode::here_now(body.as_bytes(), Some("c")).is_err());
            // A subscribe body that breaks off after its cursor yields that
            // cursor and the break as skipped; no event is made up.
            match decode::events(body.as_bytes()) {
                Err(_) => {}
                Ok(b) => assert!(b
                    .events
                    .iter()
                    .all(|e| matches!(e.event, pubnub_presence::PresenceEvent::Skipped(_)))),
            }
        }
    }
}
