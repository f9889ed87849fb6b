//! One lookup of A and AAAA over UDP as a state machine: which server to
//! ask when, and what the answers say. No IO, no clock: driven by
//! `Resolving` (or a test) with the time.

use super::conf::{order, ResolvConf};
use super::wire::{normal, parse, query, Answer, TYPE_A, TYPE_AAAA};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How long the other family's answer is waited for once one family
/// answered with addresses.
const SETTLE: Duration = Duration::from_millis(250);

/// How a lookup ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    Found {
        addrs: Vec<IpAddr>,
        ttl: u32,
    },
    /// The name does not exist or has no address.
    NotFound(&'static str),
    /// No usable answer: the servers did not answer in time, failed, or
    /// could not be reached.
    Failed(&'static str),
}

struct Query {
    qtype: u16,
    id: u16,
    bytes: Vec<u8>,
    /// The answer's addresses (maybe none) and TTL.
    done: Option<(Vec<IpAddr>, u32)>,
}

/// One lookup of A and AAAA over UDP: which server to ask when, and what
/// the answers say. Driven by [`Resolving`] (or a test) with the time.
pub(super) struct Lookup {
    name: Vec<u8>,
    servers: Vec<SocketAddr>,
    timeout: Duration,
    /// Tries in all (each sends every unanswered query to one server).
    tries: usize,
    sent: usize,
    /// When the next try is due (or, after the last, when it has failed).
    next_try: Instant,
    ends: Instant,
    queries: [Query; 2],
    /// When to stop waiting for the other family (one answered with
    /// addresses).
    settle: Option<Instant>,
    no_name: bool,
    server_failed: bool,
    unreachable: bool,
}

impl Lookup {
    /// `None` when the name cannot be put in a query.
    pub(super) fn new(
        name: &str,
        conf: &ResolvConf,
        limit: Duration,
        now: Instant,
        seed: u64,
    ) -> Option<Self> {
        let [a, b, c, d, ..] = seed.to_le_bytes();
        let ids = (u16::from_le_bytes([a, b]), u16::from_le_bytes([c, d]));
        // Distinct ids, so an answer cannot be taken for the other query.
        let ids = (ids.0, if ids.1 == ids.0 { ids.1 ^ 1 } else { ids.1 });
        let q = |qtype, id| {
            Some(Query {
                qtype,
                id,
                bytes: query(id, name, qtype)?,
                done: None,
            })
        };
        Some(Lookup {
            name: normal(name),
            tries: conf.attempts.saturating_mul(conf.servers.len()),
            servers: conf.servers.clone(),
            timeout: conf.timeout,
            sent: 0,
            next_try: now,
            // A limit too far to count is an hour (the connect timeout can be
            // anything).
            ends: now
                .checked_add(limit.min(Duration::from_secs(3600)))
                .unwrap_or(now),
            queries: [q(TYPE_A, ids.0)?, q(TYPE_AAAA, ids.1)?],
            settle: None,
            no_name: false,
            server_failed: false,
            unreachable: false,
        })
    }

    /// The server to send the unanswered queries to now, if a try is due.
    pub(super) fn due(&mut self, now: Instant) -> Option<SocketAddr> {
        if now < self.next_try || self.sent >= self.tries || now >= self.ends {
            return None;
        }
        let n = self.servers.len().max(1);
        let server = *self.servers.get(self.sent % n)?;
        let round = u32::try_from(self.sent / n).unwrap_or(u32::MAX).min(8);
        let wait = self.timeout.min(Duration::from_secs(1u64 << round));
        self.sent = self.sent.saturating_add(1);
        self.next_try = now.checked_add(wait).unwrap_or(self.ends);
        Some(server)
    }

    /// The queries still unanswered.
    pub(super) fn pending(&self) -> impl Iterator<Item = &[u8]> {
        self.queries
            .iter()
            .filter(|q| q.done.is_none())
            .map(|q| q.bytes.as_slice())
    }

    /// A send failed at once (no route, say): on to the next try.
    pub(super) fn send_failed(&mut self, now: Instant) {
        self.unreachable = true;
        self.next_try = now;
    }

    /// Takes a packet that came from `from`.
    pub(super) fn handle(&mut self, from: SocketAddr, packet: &[u8], now: Instant) {
        if !self.servers.contains(&from) {
            return;
        }
        for q in self.queries.iter_mut().filter(|q| q.done.is_none()) {
            match parse(packet, q.id, &self.name, q.qtype) {
                None => {}
                Some(Answer::Records { addrs, ttl }) => {
                    if !addrs.is_empty() && self.settle.is_none() {
                        self.settle = now.checked_add(SETTLE);
                    }
                    q.done = Some((addrs, ttl));
                }
                Some(Answer::NoName) => self.no_name = true,
                Some(Answer::Failed) => {
                    self.server_failed = true;
                    self.next_try = now;
                }
            }
        }
    }

    fn found(&self) -> Outcome {
        let mut addrs = Vec::new();
        let mut ttl = u32::MAX;
        for (a, t) in self.queries.iter().filter_map(|q| q.done.as_ref()) {
            addrs.extend_from_slice(a);
            if !a.is_empty() {
                ttl = ttl.min(*t);
            }
        }
        if addrs.is_empty() {
            return Outcome::NotFound("the name has no address");
        }
        Outcome::Found {
            addrs: order(addrs),
            ttl,
        }
    }

    /// How the lookup ended, if it did.
    pub(super) fn outcome(&self, now: Instant) -> Option<Outcome> {
        if self.no_name {
            return Some(Outcome::NotFound(
                "the name servers answered that the name does not exist",
            ));
        }
        let any = self
            .queries
            .iter()
            .any(|q| q.done.as_ref().is_some_and(|(a, _)| !a.is_empty()));
        if self.queries.iter().all(|q| q.done.is_some())
            || (any && self.settle.is_some_and(|s| now >= s))
        {
            return Some(self.found());
        }
        let out_of_tries = self.sent >= self.tries && now >= self.next_try;
        if !out_of_tries && now < self.ends {
            return None;
        }
        if any {
            return Some(self.found());
        }
        Some(Outcome::Failed(if self.server_failed {
            "the name servers failed to answer (SERVFAIL or REFUSED)"
        } else if self.unreachable && self.sent >= self.tries {
            "no name server could be reached"
        } else {
            "no answer from the name servers in time"
        }))
    }

    /// When something is next to happen without a packet: a try, the end
    /// of the settle wait, the end of the lookup.
    pub(super) fn next_timeout(&self) -> Instant {
        let mut at = self.ends.min(self.next_try);
        if let Some(s) = self.settle {
            at = at.min(s);
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::wire::tests::{response, AT_QNAME};
    use crate::dns::wire::TYPE_A;

    fn conf(servers: &[&str]) -> ResolvConf {
        ResolvConf {
            servers: servers.iter().map(|s| s.parse().unwrap()).collect(),
            timeout: Duration::from_secs(5),
            attempts: 2,
            ndots: 1,
        }
    }

    #[test]
    fn a_lookup_in_virtual_time() {
        let t0 = Instant::now();
        let s = |x| t0 + Duration::from_millis(x);
        let c = conf(&["10.0.0.1:53", "10.0.0.2:53"]);
        let (one, two) = (c.servers[0], c.servers[1]);
        let mut l = Lookup::new("ps.pndsn.com", &c, Duration::from_secs(5), t0, 42).unwrap();
        // Try 1 to the first server, then nothing due until it times out.
        assert_eq!(l.due(t0), Some(one));
        assert_eq!(l.pending().count(), 2);
        assert_eq!(l.due(s(999)), None);
        assert_eq!(l.outcome(s(999)), None);
        assert_eq!(l.next_timeout(), s(1000));
        assert_eq!(l.due(s(1000)), Some(two));
        // SERVFAIL from the second: on to the next try at once.
        let aaaa = l.queries[1].bytes.clone();
        l.handle(two, &response(&aaaa, 2, &[]), s(1100));
        assert_eq!(l.due(s(1100)), Some(one));
        // A stray answer (wrong source) is ignored; the right one counts,
        // and the other family is waited for a little.
        let a = l.queries[0].bytes.clone();
        let ok = response(&a, 0, &[(AT_QNAME.to_vec(), TYPE_A, 45, vec![9, 9, 9, 9])]);
        l.handle("10.0.0.3:53".parse().unwrap(), &ok, s(1200));
        assert_eq!(l.outcome(s(1200)), None);
        l.handle(two, &ok, s(1200));
        assert_eq!(l.outcome(s(1300)), None);
        assert_eq!(
            l.outcome(s(1450)),
            Some(Outcome::Found {
                addrs: vec![IpAddr::from([9, 9, 9, 9])],
                ttl: 45
            })
        );

        // Nobody answers: tries 1 s, 1 s, 2 s, 2 s, bounded by the limit.
        let mut l = Lookup::new("ps.pndsn.com", &c, Duration::from_secs(5), t0, 7).unwrap();
        let mut sends = 0;
        let mut t = t0;
        while l.outcome(t).is_none() {
            while l.due(t).is_some() {
                sends += 1;
            }
            t = l.next_timeout();
        }
        assert_eq!(sends, 4);
        assert_eq!(t, s(5000));
        assert_eq!(
            l.outcome(t),
            Some(Outcome::Failed("no answer from the name servers in time"))
        );

        // NXDOMAIN ends it at once.
        let mut l = Lookup::new("nope.example", &c, Duration::from_secs(5), t0, 7).unwrap();
        l.due(t0);
        let a = l.queries[0].bytes.clone();
        l.handle(one, &response(&a, 3, &[]), t0);
        assert!(matches!(l.outcome(t0), Some(Outcome::NotFound(_))));

        // Every send fails at once (no route): over within the call.
        let mut l = Lookup::new("ps.pndsn.com", &c, Duration::from_secs(5), t0, 7).unwrap();
        while l.due(t0).is_some() {
            l.send_failed(t0);
        }
        assert_eq!(
            l.outcome(t0),
            Some(Outcome::Failed("no name server could be reached"))
        );
    }
}
