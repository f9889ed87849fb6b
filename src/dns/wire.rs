//! The DNS message format (RFC 1035 §4), as far as A, AAAA and CNAME
//! answers need it: a query builder and a response parser. Sans-IO, no
//! recursion, every read bounds-checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub(super) const TYPE_A: u16 = 1;
pub(super) const TYPE_CNAME: u16 = 5;
pub(super) const TYPE_AAAA: u16 = 28;
pub(super) const CLASS_IN: u16 = 1;
/// The longest name, in its dotted text form.
const MAX_NAME: usize = 255;
/// Compression pointers followed in one name (each must point before
/// itself; the limit ends any loop).
const MAX_JUMPS: usize = 16;
/// CNAME links followed inside one answer.
const MAX_CNAMES: usize = 8;
/// Answer records looked at in one response.
const MAX_RECORDS: usize = 64;
/// Addresses kept from a lookup (IPv4 and IPv6, a few of each).
pub(super) const MAX_ADDRS: usize = 4;

/// A query for `name` (dotted, without or with a final dot) of type
/// `qtype`, recursion desired. `None` when the name cannot be sent: an
/// empty label, a label over 63 bytes, a name over 253.
pub(super) fn query(id: u16, name: &str, qtype: u16) -> Option<Vec<u8>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let mut out = Vec::with_capacity(name.len().saturating_add(18));
    out.extend_from_slice(&id.to_be_bytes());
    // RD; one question, no other records.
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|l| (1..=63).contains(l))?;
        out.push(len);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Some(out)
}

/// A name as compared: lowercase ASCII, no final dot.
pub(super) fn normal(name: &str) -> Vec<u8> {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.bytes().map(|b| b.to_ascii_lowercase()).collect()
}

/// A cursor over a message; every read is bounds-checked.
struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.msg.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes(b.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes(b.try_into().ok()?))
    }

    /// The name at the cursor, lowercased into `out`, compression pointers
    /// followed (backwards only, at most [`MAX_JUMPS`]); the cursor moves
    /// past the name as written here. No recursion.
    fn name(&mut self, out: &mut Vec<u8>) -> Option<()> {
        out.clear();
        let mut at = self.pos;
        let mut resume = None;
        let mut jumps = 0;
        loop {
            let len = *self.msg.get(at)?;
            match len & 0xC0 {
                0x00 if len == 0 => {
                    at = at.checked_add(1)?;
                    break;
                }
                0x00 => {
                    let start = at.checked_add(1)?;
                    let end = start.checked_add(usize::from(len))?;
                    let label = self.msg.get(start..end)?;
                    // A dot inside a label would make two names look alike.
                    if label.contains(&b'.') {
                        return None;
                    }
                    if !out.is_empty() {
                        out.push(b'.');
                    }
                    if out.len().saturating_add(label.len()) > MAX_NAME {
                        return None;
                    }
                    out.extend(label.iter().map(u8::to_ascii_lowercase));
                    at = end;
                }
                0xC0 => {
                    let low = *self.msg.get(at.checked_add(1)?)?;
                    let target = usize::from(len & 0x3F) << 8 | usize::from(low);
                    if resume.is_none() {
                        resume = Some(at.checked_add(2)?);
                    }
                    jumps += 1;
                    if jumps > MAX_JUMPS || target >= at {
                        return None;
                    }
                    at = target;
                }
                _ => return None,
            }
        }
        self.pos = resume.unwrap_or(at);
        Some(())
    }
}

/// What a response says about the question it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    /// The addresses of the name (none: the name exists without an address
    /// of this type), and the lowest TTL on the way to them (seconds).
    Records { addrs: Vec<IpAddr>, ttl: u32 },
    /// NXDOMAIN: the name does not exist.
    NoName,
    /// Another response code (SERVFAIL, REFUSED, …), or a truncated
    /// answer with nothing usable: ask the next server.
    Failed,
}

/// Reads a response to the query `id` for `name` (as from [`normal`]) and
/// `qtype`. `None`: not an answer to that query (a stray or malformed
/// packet), to be ignored. Total: no input panics.
pub(super) fn parse(msg: &[u8], id: u16, name: &[u8], qtype: u16) -> Option<Answer> {
    let mut r = Reader { msg, pos: 0 };
    if r.u16()? != id {
        return None;
    }
    let flags = r.u16()?;
    // A response (QR) to a standard query (opcode 0).
    if flags & 0x8000 == 0 || flags & 0x7800 != 0 {
        return None;
    }
    let (questions, answers) = (r.u16()?, r.u16()?);
    r.take(4)?;
    if questions != 1 {
        return None;
    }
    let mut owner = Vec::new();
    r.name(&mut owner)?;
    if owner != name || r.u16()? != qtype || r.u16()? != CLASS_IN {
        return None;
    }
    match flags & 0x000F {
        0 => {}
        3 => return Some(Answer::NoName),
        _ => return Some(Answer::Failed),
    }
    // Each step of a CNAME chain reads the answer records again from here
    // (at most MAX_RECORDS, MAX_CNAMES + 1 times).
    // NOTE(size): no list of records kept (144 B less code).
    let answers_at = r.pos;
    let mut owner = Vec::new();
    let mut want = name.to_vec();
    let mut addrs = Vec::new();
    let mut ttl = u32::MAX;
    for _ in 0..=MAX_CNAMES {
        let mut next = None;
        let mut r = Reader {
            msg,
            pos: answers_at,
        };
        for _ in 0..usize::from(answers).min(MAX_RECORDS) {
            r.name(&mut owner)?;
            let (rtype, class, rttl, len) = (r.u16()?, r.u16()?, r.u32()?, r.u16()?);
            let start = r.pos;
            let data = r.take(usize::from(len))?;
            if class != CLASS_IN || owner != want {
                continue;
            }
            if rtype == qtype {
                let ip = match qtype {
                    TYPE_A => <[u8; 4]>::try_from(data)
                        .ok()
                        .map(|b| Ipv4Addr::from(b).into()),
                    _ => <[u8; 16]>::try_from(data)
                        .ok()
                        .map(|b| Ipv6Addr::from(b).into()),
                };
                if let Some(ip) = ip {
                    if addrs.len() < MAX_ADDRS && !addrs.contains(&ip) {
                        addrs.push(ip);
                    }
                    ttl = ttl.min(rttl);
                }
            } else if rtype == TYPE_CNAME && next.is_none() {
                let mut target = Vec::new();
                Reader { msg, pos: start }.name(&mut target)?;
                ttl = ttl.min(rttl);
                next = Some(target);
            }
        }
        if !addrs.is_empty() {
            break;
        }
        match next {
            Some(n) => want = n,
            None => break,
        }
    }
    let truncated = flags & 0x0200 != 0;
    if addrs.is_empty() && truncated {
        return Some(Answer::Failed);
    }
    Some(Answer::Records { addrs, ttl })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A response to `q` (a query as built by [`query`]) with `rcode` and
    /// the given answer records (owner as raw wire bytes).
    pub(crate) fn response(
        q: &[u8],
        rcode: u16,
        records: &[(Vec<u8>, u16, u32, Vec<u8>)],
    ) -> Vec<u8> {
        let mut out = q.to_vec();
        out[2] = 0x81;
        out[3] = 0x80 | rcode as u8;
        out[7] = records.len() as u8;
        for (owner, rtype, ttl, data) in records {
            out.extend_from_slice(owner);
            out.extend_from_slice(&rtype.to_be_bytes());
            out.extend_from_slice(&CLASS_IN.to_be_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
            out.extend_from_slice(&(data.len() as u16).to_be_bytes());
            out.extend_from_slice(data);
        }
        out
    }

    /// A pointer to the question's name (offset 12).
    pub(crate) const AT_QNAME: [u8; 2] = [0xC0, 12];

    pub(crate) fn wire_name(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for l in name.split('.') {
            out.push(l.len() as u8);
            out.extend_from_slice(l.as_bytes());
        }
        out.push(0);
        out
    }

    #[test]
    fn builds_a_query() {
        let q = query(0xBEEF, "ps.pndsn.com.", TYPE_AAAA).unwrap();
        assert_eq!(
            q,
            b"\xBE\xEF\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x02ps\x05pndsn\x03com\x00\x00\x1C\x00\x01"
        );
        assert_eq!(query(1, "", TYPE_A), None);
        assert_eq!(query(1, "a..b", TYPE_A), None);
        assert_eq!(query(1, &"x".repeat(64), TYPE_A), None);
        assert!(query(1, &"x".repeat(63), TYPE_A).is_some());
        let long = vec!["abcdefg"; 32].join(".");
        assert_eq!(query(1, &long, TYPE_A), None);
    }

    #[test]
    fn reads_answers_and_cname_chains() {
        let name = normal("Ps.Pndsn.com");
        let q = query(7, "ps.pndsn.com", TYPE_A).unwrap();
        let r = response(&q, 0, &[(AT_QNAME.to_vec(), TYPE_A, 60, vec![1, 2, 3, 4])]);
        assert_eq!(
            parse(&r, 7, &name, TYPE_A),
            Some(Answer::Records {
                addrs: vec![IpAddr::from([1, 2, 3, 4])],
                ttl: 60
            })
        );
        // Not ours: another id, another question, a query not a response.
        assert_eq!(parse(&r, 8, &name, TYPE_A), None);
        assert_eq!(parse(&r, 7, b"pndsn.com", TYPE_A), None);
        assert_eq!(parse(&r, 7, &name, TYPE_AAAA), None);
        assert_eq!(parse(&q, 7, &name, TYPE_A), None);
        // A chain: ps → edge (compressed: "edge" + pointer to "pndsn.com")
        // → cdn.example; records out of order; lowest TTL kept.
        let edge: Vec<u8> = [&b"\x04edge"[..], &[0xC0, 15]].concat();
        let q6 = query(9, "ps.pndsn.com", TYPE_AAAA).unwrap();
        let r = response(
            &q6,
            0,
            &[
                (wire_name("cdn.example"), TYPE_AAAA, 20, vec![0; 16]),
                (AT_QNAME.to_vec(), TYPE_CNAME, 300, edge),
                (
                    wire_name("edge.pndsn.com"),
                    TYPE_CNAME,
                    100,
                    wire_name("CDN.example"),
                ),
                (wire_name("other"), TYPE_AAAA, 1, vec![1; 16]),
            ],
        );
        assert_eq!(
            parse(&r, 9, &name, TYPE_AAAA),
            Some(Answer::Records {
                addrs: vec![IpAddr::from([0u8; 16])],
                ttl: 20
            })
        );
        // NXDOMAIN, SERVFAIL, NODATA, truncated with nothing.
        assert_eq!(
            parse(&response(&q, 3, &[]), 7, &name, TYPE_A),
            Some(Answer::NoName)
        );
        assert_eq!(
            parse(&response(&q, 2, &[]), 7, &name, TYPE_A),
            Some(Answer::Failed)
        );
        assert_eq!(
            parse(&response(&q, 0, &[]), 7, &name, TYPE_A),
            Some(Answer::Records {
                addrs: vec![],
                ttl: u32::MAX
            })
        );
        let mut tc = response(&q, 0, &[]);
        tc[2] |= 0x02;
        assert_eq!(parse(&tc, 7, &name, TYPE_A), Some(Answer::Failed));
    }

    #[test]
    fn hostile_names_are_refused() {
        let name = normal("a");
        let q = query(1, "a", TYPE_A).unwrap();
        // A CNAME pointing at itself, and one pointing forwards.
        for target in [vec![0xC0, 12], vec![0xC0, 200], vec![0xC0, 0xFF, 0]] {
            let r = response(&q, 0, &[(AT_QNAME.to_vec(), TYPE_CNAME, 1, target.clone())]);
            let got = parse(&r, 1, &name, TYPE_A);
            // 0xC0 12 is the question's own name: a loop the chain limit ends.
            assert!(
                matches!(got, None | Some(Answer::Records { .. })),
                "{target:?}: {got:?}"
            );
        }
        // A pointer to itself in an owner name.
        let mut r = response(&q, 0, &[]);
        r[7] = 1;
        let at = r.len();
        r.extend_from_slice(&[0xC0, at as u8, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4]);
        assert_eq!(parse(&r, 1, &name, TYPE_A), None);
        // A CNAME loop a → b → a: ends within the chain limit, no address.
        let q = query(1, "a.x", TYPE_A).unwrap();
        let r = response(
            &q,
            0,
            &[
                (wire_name("a.x"), TYPE_CNAME, 1, wire_name("b.x")),
                (wire_name("b.x"), TYPE_CNAME, 1, wire_name("a.x")),
            ],
        );
        assert_eq!(
            parse(&r, 1, &normal("a.x"), TYPE_A),
            Some(Answer::Records {
                addrs: vec![],
                ttl: 1
            })
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            id in any::<u16>(),
            qtype in prop_oneof![Just(TYPE_A), Just(TYPE_AAAA)],
        ) {
            let _ = parse(&bytes, id, b"a.b", qtype);
            // With a valid head and question, so the records are reached.
            let mut r = response(&query(id, "a.b", qtype).unwrap(), 0, &[]);
            r[7] = 3;
            r.extend_from_slice(&bytes);
            let _ = parse(&r, id, b"a.b", qtype);
        }

        #[test]
        fn generated_answers_parse(
            labels in proptest::collection::vec("[a-z0-9-]{1,20}", 1..5),
            v4 in proptest::collection::vec(any::<[u8; 4]>(), 1..4),
            ttl in any::<u32>(),
            cname in any::<bool>(),
            id in any::<u16>(),
        ) {
            let name = labels.join(".");
            let q = query(id, &name, TYPE_A).unwrap();
            let mut records = Vec::new();
            let owner = if cname {
                records.push((AT_QNAME.to_vec(), TYPE_CNAME, ttl, wire_name("target.example")));
                wire_name("TARGET.example")
            } else {
                AT_QNAME.to_vec()
            };
            for a in &v4 {
                records.push((owner.clone(), TYPE_A, ttl, a.to_vec()));
            }
            let mut want: Vec<IpAddr> = Vec::new();
            for a in &v4 {
                let ip = IpAddr::from(*a);
                if !want.contains(&ip) { want.push(ip); }
            }
            prop_assert_eq!(
                parse(&response(&q, 0, &records), id, &normal(&name), TYPE_A),
                Some(Answer::Records { addrs: want, ttl })
            );
        }
    }
}
