//! Time-dependent rules of the client, checked in the deterministic
//! simulator (feature `sim`) in virtual time: the deadlines, budgets,
//! bounds and backoff schedules that the loopback tests (`deadlines.rs`,
//! `device_loop.rs`, `faults.rs`, ...) used to check with the wall clock.
//! Nothing here sleeps or reads the wall clock, so these assertions on
//! durations are exact and hold on any machine, however loaded. What the
//! same rules cost on real sockets is measured by `benches/timings.rs`
//! (BENCHMARKS.md, "Timings on loopback").

use pubnub_presence::sim::{Fault, Sim, SimConfig};
use pubnub_presence::{
    Error, ErrorKind, Heartbeater, PresenceLoop, PubNub, RetryPolicy, TransportErrorKind,
};
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Slack on a deadline in virtual time: a few simulated system calls and
/// one segment's jitter, nothing that depends on the machine.
const SLACK: Duration = Duration::from_millis(5);

fn sim(seed: u64) -> Sim {
    Sim::new(SimConfig {
        seed,
        ..SimConfig::default()
    })
}

fn client(
    build: impl FnOnce(pubnub_presence::PubNubBuilder) -> pubnub_presence::PubNubBuilder,
) -> PubNub {
    build(
        PubNub::builder()
            .subscribe_key("demo")
            .user_id("device")
            .origin(Sim::ORIGIN),
    )
    .build()
    .unwrap()
}

fn is_timeout(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Transport {
            kind: TransportErrorKind::Timeout,
            ..
        }
    )
}

fn count(sim: &Sim, part: &str) -> usize {
    sim.served()
        .iter()
        .filter(|s| s.path.contains(part))
        .count()
}

/// The retry deadline bounds the whole call, not each attempt: an answer
/// that trickles in (each byte well within the request timeout, the whole
/// answer far past the deadline) is cut at the deadline with a timeout
/// (`deadlines.rs`, formerly 1.05..1.4 s on the wall clock). The call
/// engine ends the attempt at the deadline itself: over 40 seeds the call
/// ends 20 µs past it in virtual time (the simulated system calls).
#[test]
fn a_trickling_answer_ends_at_the_call_deadline() {
    for seed in 1..=20 {
        let sim = sim(seed);
        let _on = sim.enter();
        sim.fault(Fault::Trickle {
            from: Duration::ZERO,
            to: secs(3600),
            path: "/uuid/",
            every: ms(40),
        });
        let p = client(|b| {
            b.request_timeout(secs(1)).retry_policy(RetryPolicy {
                max_attempts: 3,
                base_delay: ms(10),
                max_delay: ms(10),
                deadline: Some(ms(1100)),
            })
        });
        let t0 = sim.now();
        let r = p.where_now().execute();
        let spent = sim.now() - t0;
        assert!(r.as_ref().is_err_and(is_timeout), "seed {seed}: {r:?}");
        assert!(spent <= ms(1100) + SLACK, "seed {seed}: spent {spent:?}");
        // Not cut early either: the first attempt ran until its bound.
        assert!(spent >= secs(1), "seed {seed}: spent {spent:?}");
    }
}

/// A poll during which the TCP connect completes still ends within its
/// budget (`deadlines.rs`, formerly a full-accept-queue listener and
/// 1.5..2 s on the wall clock): the path is down for the first second
/// (the SYN waits), then the server accepts and never answers.
#[test]
fn a_connect_completing_during_a_poll_keeps_the_budget() {
    for seed in 1..=20 {
        let sim = sim(seed);
        let _on = sim.enter();
        sim.fault(Fault::Outage {
            from: Duration::ZERO,
            to: secs(1),
            refuse: false,
            dns: false,
        });
        sim.fault(Fault::EndlessContinue {
            from: Duration::ZERO,
            to: secs(3600),
            path: "/subscribe/",
        });
        let p = client(|b| b);
        let mut ev = p
            .presence_events()
            .channels(vec!["lobby".into()])
            .open()
            .unwrap();
        let budget = ms(1500);
        let t0 = sim.now();
        let got = ev.poll(budget);
        let spent = sim.now() - t0;
        assert!(matches!(got, Ok(None)), "seed {seed}: {got:?}");
        assert!(spent <= budget + SLACK, "seed {seed}: spent {spent:?}");
        assert!(spent >= budget, "seed {seed}: returned early, {spent:?}");
        assert_eq!(count(&sim, "/subscribe/"), 1, "seed {seed}");
        assert!(sim.trouble().is_empty(), "{:?}", sim.trouble());
    }
}

/// Short polls against a server that never answers: every poll of the
/// device loop returns within its budget, heartbeats and handshakes are
/// cut at the request timeout and backed off (0.5, 1, 2 s ...), not sent
/// once per poll (`device_loop.rs`, formerly "worst < budget + 60 ms"
/// and 2..=6 heartbeats in 4 s on the wall clock).
#[test]
fn the_loop_stays_within_its_budget_while_the_server_is_silent() {
    for seed in 1..=10 {
        let sim = sim(seed);
        let _on = sim.enter();
        sim.fault(Fault::EndlessContinue {
            from: Duration::ZERO,
            to: secs(3600),
            path: "/",
        });
        let p = client(|b| b.request_timeout(ms(300)).heartbeat_interval(5));
        let mut hb = Heartbeater::new(&p);
        hb.join(vec!["lobby".into()]).unwrap();
        let events = p
            .presence_events()
            .channels(vec!["lobby".into()])
            .open()
            .unwrap();
        let mut device = PresenceLoop::new(hb, Some(events));
        let budget = ms(100);
        let (mut polls, mut failures) = (0, 0);
        while sim.now() < secs(4) {
            let t0 = sim.now();
            match device.poll(budget) {
                Ok(Some(e)) => panic!("seed {seed}: {e:?}"),
                Ok(None) => {}
                Err(_) => failures += 1,
            }
            let spent = sim.now() - t0;
            assert!(
                spent <= budget + SLACK,
                "seed {seed}: a poll spent {spent:?}"
            );
            polls += 1;
        }
        let beats = count(&sim, "/heartbeat");
        // 300 ms timeout, then 0.5, 1, 2 s backoffs (with jitter): about
        // 4 attempts in 4 s, not one per poll (about 40).
        assert!((2..=6).contains(&beats), "seed {seed}: {beats} heartbeats");
        assert!(failures >= 2, "seed {seed}: {failures}");
        let handshakes = count(&sim, "/subscribe/");
        assert!(
            (2..=6).contains(&handshakes),
            "seed {seed}: {handshakes} handshakes in {polls} polls"
        );
    }
}

/// A server that answers the handshake and holds the long-poll without
/// a byte is cut at the long-poll bound (`device_loop.rs`, formerly
/// 390..900 ms on the wall clock).
#[test]
fn a_silent_long_poll_is_cut_at_its_bound() {
    for seed in 1..=10 {
        let sim = sim(seed);
        let _on = sim.enter();
        let p = client(|b| b);
        let mut ev = p
            .presence_events()
            .channels(vec!["lobby".into()])
            .long_poll_timeout(ms(400))
            .open()
            .unwrap();
        // The handshake is answered at once (the server holds long-polls
        // for 280 s, far past the bound).
        let t0 = sim.now();
        let err = loop {
            match ev.poll(ms(100)) {
                Err(e) => break e,
                Ok(_) => assert!(sim.now() - t0 < secs(10), "seed {seed}: never cut"),
            }
        };
        let spent = sim.now() - t0;
        assert!(is_timeout(&err), "seed {seed}: {err:?}");
        assert!(
            spent >= ms(400) && spent <= ms(400) + ms(200),
            "seed {seed}: cut after {spent:?}"
        );
    }
}

/// A heartbeat whose answer trickles in (a byte every 50 ms, so the
/// silence bound never trips) is abandoned once it has been in flight for
/// `request_timeout`, the failure is returned once, and it is sent again
/// after the 0.5 s backoff (`device_loop.rs`, formerly 400..1000 ms).
#[test]
fn a_trickling_heartbeat_is_abandoned_at_its_bound() {
    for seed in 1..=10 {
        let sim = sim(seed);
        let _on = sim.enter();
        sim.fault(Fault::Trickle {
            from: Duration::ZERO,
            to: secs(3600),
            path: "/heartbeat",
            every: ms(50),
        });
        let p = client(|b| b.request_timeout(ms(400)));
        let mut hb = Heartbeater::new(&p);
        hb.join(vec!["lobby".into()]).unwrap();
        assert_eq!(hb.in_flight_bound(), ms(400));
        let t0 = sim.now();
        let mut errors = Vec::new();
        let mut polls = 0;
        while sim.now() - t0 < ms(1500) {
            polls += 1;
            assert!(
                polls < 1000,
                "seed {seed}: virtual time stands at {:?}",
                sim.now()
            );
            if let Err(e) = hb.poll(ms(100)) {
                errors.push((sim.now() - t0, e));
            }
            // `Heartbeater::poll` returns at once when nothing is due or
            // in flight: the device idles a little, as a real loop would.
            sim.run_for(ms(10));
        }
        let (at, first) = errors.first().expect("the heartbeat timed out");
        assert!(is_timeout(first), "seed {seed}: {first:?}");
        assert!(
            *at >= ms(400) && *at <= ms(400) + ms(100) + SLACK,
            "seed {seed}: abandoned after {at:?}"
        );
        let beats = count(&sim, "/heartbeat");
        assert!((2..=3).contains(&beats), "seed {seed}: {beats} heartbeats");
        assert!(errors.len() <= 2, "seed {seed}: {errors:?}");
    }
}

/// The in-flight bound of a later heartbeat counts from its own sending,
/// not from the last poll of the heartbeat before it: the third heartbeat
/// (sent at 4 s, its answer trickling) is abandoned 400 ms later, not
/// after the idle interval was added to its bound (the connection's own
/// limit, silence plus `request_timeout`, would have ended it at 4.8 s).
#[test]
fn a_later_heartbeat_gets_its_own_bound() {
    for seed in 1..=10 {
        let sim = sim(seed);
        let _on = sim.enter();
        sim.fault(Fault::Trickle {
            from: secs(3),
            to: secs(3600),
            path: "/heartbeat",
            every: ms(50),
        });
        let p = client(|b| {
            b.request_timeout(ms(400))
                .heartbeat_interval(2)
                .origin(Sim::ORIGIN_IP)
        });
        let mut hb = Heartbeater::new(&p);
        hb.join(vec!["lobby".into()]).unwrap();
        let mut errors = Vec::new();
        while sim.now() < ms(5500) {
            if let Err(e) = hb.poll(ms(100)) {
                errors.push((sim.now(), e));
            }
            sim.run_for(ms(10));
        }
        let (at, first) = errors.first().expect("the third heartbeat timed out");
        assert!(is_timeout(first), "seed {seed}: {first:?}");
        assert!(
            *at >= ms(4400) && *at <= ms(4400) + ms(100) + SLACK,
            "seed {seed}: abandoned at {at:?}"
        );
    }
}

/// Heartbeats keep to their schedule when answers are slow: the next one
/// is due an interval after the previous was sent, not after its answer
/// (`device_loop.rs`, formerly gaps of 0.9..1.15 s on the wall clock).
#[test]
fn the_heartbeat_schedule_does_not_drift_with_slow_answers() {
    for seed in 1..=10 {
        // 200 ms each way: every answer comes 400 ms after its request
        // (800 ms for the first, which opens the connection).
        let sim = Sim::new(SimConfig {
            seed,
            latency: ms(200),
            jitter: Duration::ZERO,
            ..SimConfig::default()
        });
        let _on = sim.enter();
        // By address: a name lookup would add a round trip to the first
        // heartbeat, past its 1 s in-flight bound at this latency.
        let p = client(|b| b.heartbeat_interval(1).origin(Sim::ORIGIN_IP));
        let mut hb = Heartbeater::new(&p);
        hb.join(vec!["lobby".into()]).unwrap();
        while sim.now() < ms(5300) {
            hb.poll(ms(100)).unwrap();
            // Nothing due or in flight: `poll` returned at once.
            sim.run_for(ms(5));
        }
        let beats: Vec<Duration> = sim
            .served()
            .iter()
            .filter(|s| s.path.contains("/heartbeat"))
            .map(|s| s.at)
            .collect();
        // Sent at 0, 1, 2, 3, 4, 5 s (arriving 200 ms later, the first
        // 600 ms later); a drifting schedule (the interval counted from
        // the answer) would manage 0, 1.8, 3.2, 4.6.
        assert!(beats.len() >= 6, "seed {seed}: {beats:?}");
        for pair in beats.windows(2).skip(1) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= ms(950) && gap <= ms(1050),
                "seed {seed}: gap {gap:?} in {beats:?}"
            );
        }
    }
}

/// One long budget on a quiet channel does not starve the heartbeats:
/// the call returns at its budget, and heartbeats were sent every second
/// meanwhile (`device_loop.rs`, formerly "< 3.7 s" on the wall clock).
#[test]
fn a_long_loop_budget_keeps_heartbeating() {
    for seed in 1..=10 {
        let sim = sim(seed);
        let _on = sim.enter();
        // By address: a name lookup would add a round trip to the first
        // heartbeat, past its 1 s in-flight bound at this latency.
        let p = client(|b| b.heartbeat_interval(1).origin(Sim::ORIGIN_IP));
        let mut hb = Heartbeater::new(&p);
        hb.join(vec!["lobby".into()]).unwrap();
        let events = p
            .presence_events()
            .channels(vec!["lobby".into()])
            .open()
            .unwrap();
        let mut device = PresenceLoop::new(hb, Some(events));
        // Let the handshake and the join's own event go by first.
        while sim.now() < secs(3) {
            device.poll(ms(100)).unwrap();
        }
        let before = count(&sim, "/heartbeat");
        let t0 = sim.now();
        let budget = ms(3500);
        assert!(device.poll(budget).unwrap().is_none(), "seed {seed}");
        let spent = sim.now() - t0;
        assert!(spent <= budget + SLACK, "seed {seed}: spent {spent:?}");
        let beats = count(&sim, "/heartbeat") - before;
        assert!(
            beats >= 3,
            "seed {seed}: {beats} heartbeats in one 3.5 s call"
        );
    }
}

/// Refused connects are reported, and the event stream backs off: a poll
/// during the backoff waits and says nothing new (`device_loop.rs`,
/// formerly 1..=2 failures in 1.8 s on the wall clock).
#[test]
fn refused_connects_are_reported_and_backed_off() {
    for seed in 1..=10 {
        let sim = sim(seed);
        let _on = sim.enter();
        sim.fault(Fault::Outage {
            from: Duration::ZERO,
            to: secs(3600),
            refuse: true,
            dns: false,
        });
        let p = client(|b| b);
        let mut ev = p
            .presence_events()
            .channels(vec!["lobby".into()])
            .open()
            .unwrap();
        match ev.poll(ms(500)).map_err(Error::into_kind) {
            Err(ErrorKind::Transport {
                kind: TransportErrorKind::Connect,
                ..
            }) => {}
            other => panic!("seed {seed}: {other:?}"),
        }
        let t0 = sim.now();
        let mut errors = 0;
        while sim.now() - t0 < ms(1800) {
            if ev.poll(ms(100)).is_err() {
                errors += 1;
            }
        }
        assert!(
            (1..=2).contains(&errors),
            "seed {seed}: {errors} failures in 1.8 s"
        );
    }
}

/// The service caches here_now answers (3 s; 1 s here): a re-sync that
/// fetched at once after a `here_now_refresh` would get the answer from
/// before the change and lose it. Waiting `resync_delay` gets it right;
/// without the wait, the same run goes wrong (so the test can fail).
/// (`occupancy.rs`, where on the wall clock the run without the wait only
/// went wrong if the refresh came within the cache's second.)
#[test]
fn resync_waits_out_the_here_now_cache() {
    use pubnub_presence::emulator::Options;
    use pubnub_presence::sim::Action;
    use pubnub_presence::{Change, Resync};
    for seed in 1..=5 {
        for delay in [ms(1100), Duration::ZERO] {
            let sim = Sim::new(SimConfig {
                seed,
                server: Options {
                    announce_max: 1,
                    interval_delta_limit: 4,
                    here_now_cache: secs(1),
                    ..Options::default()
                },
                ..SimConfig::default()
            });
            let _on = sim.enter();
            let admin = client(|b| b);
            let mut m = admin
                .occupancy()
                .channels(vec!["hall".into()])
                .resync_delay(delay)
                .open()
                .unwrap();
            while !m.is_synced() {
                assert!(sim.now() < secs(10), "seed {seed}: never synced");
                m.poll(ms(20)).unwrap();
            }
            // Fresh in the cache now: the empty hall. `a` comes as a join
            // event, `b` (above the threshold of 1) in an interval whose
            // delta is past the limit: `here_now_refresh`.
            let t0 = sim.now();
            for user in ["a", "b"] {
                sim.act(
                    t0,
                    Action::Heartbeat {
                        sub: "demo".into(),
                        user: user.into(),
                        channels: vec!["hall".into()],
                        timeout: 300,
                    },
                );
            }
            let mut changes = Vec::new();
            while !changes
                .iter()
                .any(|c| matches!(c, Change::Resynced(Resync::HereNowRefresh { .. })))
            {
                assert!(sim.now() - t0 < secs(10), "seed {seed}: {changes:?}");
                changes.extend(m.poll(ms(20)).unwrap());
            }
            let spent = sim.now() - t0;
            let mut present: Vec<&str> = m.occupants("hall").map(|o| o.user_id).collect();
            present.sort();
            if delay.is_zero() {
                assert!(
                    spent < secs(1),
                    "seed {seed}: the refresh came after {spent:?}"
                );
                assert!(present.len() < 2, "seed {seed}: {present:?} {changes:?}");
            } else {
                assert!(spent >= delay, "seed {seed}: {spent:?}");
                assert_eq!(present, ["a", "b"], "seed {seed}: {changes:?}");
            }
        }
    }
}

/// A 429 with `Retry-After: 1` is waited out (1 s, not the policy's
/// 10 ms), then the call succeeds (`faults.rs`, formerly "waited at least
/// 950 ms" on the wall clock).
#[test]
fn retry_after_is_waited_out() {
    for seed in 1..=10 {
        let sim = sim(seed);
        let _on = sim.enter();
        // The first request arrives within 0.5 s (lookup, connect); the
        // retry, a second later, gets the server's answer.
        sim.fault(Fault::Raw {
            from: Duration::ZERO,
            to: ms(500),
            path: "/uuid/",
            bytes: b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        });
        let p = client(|b| {
            b.retry_policy(RetryPolicy {
                max_attempts: 3,
                base_delay: ms(10),
                max_delay: ms(10),
                deadline: Some(secs(5)),
            })
        });
        let r = p.where_now().execute();
        assert!(r.is_ok(), "seed {seed}: {r:?}");
        let at: Vec<Duration> = sim
            .served()
            .iter()
            .filter(|s| s.path.contains("/uuid/"))
            .map(|s| s.at)
            .collect();
        assert_eq!(at.len(), 2, "seed {seed}");
        // Between the two arrivals: the 429's way back, the 1 s wait, a new
        // connection and the retry's way out (about 0.1 s here).
        let apart = at[1] - at[0];
        assert!(apart >= secs(1), "seed {seed}: retried after {apart:?}");
        assert!(apart <= secs(1) + ms(250), "seed {seed}: {apart:?}");
    }
}

/// A `Retry-After` longer than what is left of the call's deadline (or
/// too large to add to an instant at all: it once overflowed) ends the
/// call at once with the server's error, after one attempt: no sleep.
#[test]
fn a_retry_after_past_the_deadline_ends_the_call_at_once() {
    for value in [
        "18446744073709551615",
        "99999999999999999999999999999",
        "31",
    ] {
        let sim = sim(7);
        let _on = sim.enter();
        let head = format!(
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {value}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        sim.fault(Fault::Raw {
            from: Duration::ZERO,
            to: secs(3600),
            path: "/uuid/",
            bytes: Box::leak(head.into_bytes().into_boxed_slice()),
        });
        // The default policy: 3 attempts, a 30 s deadline.
        let p = client(|b| b);
        let t0 = sim.now();
        let e = p.where_now().execute().unwrap_err();
        let virtual_span = sim.now() - t0;
        let server = e.server().unwrap_or_else(|| panic!("{value}: {e:?}"));
        assert_eq!((server.status, server.attempts), (503, 1), "{value}");
        // A name lookup, a connect and one exchange: well under a second
        // of virtual time, nowhere near the Retry-After or the deadline.
        let ends_at_once = virtual_span < secs(1);
        assert!(
            ends_at_once,
            "{value}: the call took {virtual_span:?} (virtual)"
        );
    }
}

/// An ordinary call's retry after a 503 waits the policy's delay (between
/// half the base delay and the whole: its jitter) and, the server having
/// closed that connection (`Fault::Raw` closes), goes out on a new one;
/// the next call reuses that one from the pool: two connections in all.
#[test]
fn a_retry_waits_its_delay_and_the_next_call_reuses_the_connection() {
    for seed in 1..=10 {
        let sim = sim(seed);
        let _on = sim.enter();
        sim.fault(Fault::Raw {
            from: Duration::ZERO,
            to: ms(500),
            path: "/uuid/",
            bytes: b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}",
        });
        let p = client(|b| {
            b.retry_policy(RetryPolicy {
                max_attempts: 3,
                base_delay: secs(1),
                max_delay: secs(1),
                deadline: Some(secs(10)),
            })
        });
        p.where_now().execute().unwrap();
        p.where_now().execute().unwrap();
        let served: Vec<_> = sim
            .served()
            .into_iter()
            .filter(|s| s.path.contains("/uuid/"))
            .collect();
        assert_eq!(served.len(), 3, "seed {seed}");
        assert_ne!(served[0].link, served[1].link, "seed {seed}: {served:?}");
        assert_eq!(served[1].link, served[2].link, "seed {seed}: {served:?}");
        assert_eq!(sim.connections(), 2, "seed {seed}");
        // The 503's way back, the delay, a new connection, the way out.
        let apart = served[1].at - served[0].at;
        assert!(
            apart >= ms(500) && apart <= secs(1) + ms(250),
            "seed {seed}: retried after {apart:?}"
        );
        assert!(sim.trouble().is_empty(), "seed {seed}: {:?}", sim.trouble());
    }
}

/// During an outage the heartbeat is tried again at least every quarter
/// of its interval (the backoff's cap, 7.25 s for a 60 s presence
/// timeout), so a cut shorter than the presence timeout less an interval
/// and a quarter never costs the device its presence; after the cut, the
/// device is heartbeating again within that quarter.
#[test]
fn heartbeats_retry_within_a_quarter_interval_during_an_outage() {
    for seed in 1..=10 {
        let sim = sim(seed);
        let _on = sim.enter();
        // Up, then every connect refused from 40 s to 100 s.
        sim.fault(Fault::Outage {
            from: secs(40),
            to: secs(100),
            refuse: true,
            dns: false,
        });
        let p = client(|b| b.presence_timeout(60)); // interval 29 s
        let mut hb = Heartbeater::new(&p);
        hb.join(vec!["lobby".into()]).unwrap();
        while sim.now() < secs(130) {
            let t0 = sim.now();
            let _ = hb.poll(ms(100));
            // With nothing due, poll returns at once: the loop's own wait.
            if sim.now() - t0 < ms(10) {
                sim.run_for(ms(10));
            }
        }
        let cap = secs(29) / 4;
        // Attempts in the outage, once the first failed (the one due
        // first went out on the kept connection): a connect each, nothing
        // else runs.
        let mut attempts = Vec::new();
        let mut t = secs(40);
        while t < secs(100) {
            if sim.connects_between(t, t + ms(10)) > 0 {
                attempts.push(t);
            }
            t += ms(10);
        }
        assert!(attempts.len() >= 4, "seed {seed}: {attempts:?}");
        for pair in attempts.windows(2) {
            assert!(
                pair[1] - pair[0] <= cap + ms(500),
                "seed {seed}: no attempt from {:?} to {:?}",
                pair[0],
                pair[1]
            );
        }
        let last = attempts.last().copied().unwrap_or_default();
        assert!(
            secs(100) - last <= cap + ms(500),
            "seed {seed}: last attempt at {last:?}"
        );
        let back = sim
            .served()
            .iter()
            .filter(|s| s.path.contains("/heartbeat") && s.at >= secs(100))
            .map(|s| s.at)
            .next();
        let back = back.unwrap_or_else(|| panic!("seed {seed}: no heartbeat after the outage"));
        assert!(
            back - secs(100) <= cap + ms(500),
            "seed {seed}: back at {back:?}"
        );
    }
}

/// After an outage, a state change waits for no heartbeat backoff once
/// the path is known to work again: the loop's event stream is answered,
/// and that ends the heartbeats' backoff (up to 30 s with the default
/// 300 s presence timeout), so the new state reaches the server within
/// seconds, not half a minute later.
#[test]
fn a_state_change_after_an_outage_goes_out_once_events_flow() {
    for seed in 1..=5 {
        let sim = sim(seed);
        let _on = sim.enter();
        // Connections hang (no answer, no reset) from 140 s to 300 s.
        sim.fault(Fault::Outage {
            from: secs(140),
            to: secs(300),
            refuse: false,
            dns: false,
        });
        let p = client(|b| b); // presence timeout 300 s: interval 149 s
        let mut hb = Heartbeater::new(&p);
        hb.join(vec!["lobby".into()]).unwrap();
        let events = p
            .presence_events()
            .channels(vec!["lobby".into()])
            .open()
            .unwrap();
        let mut device = PresenceLoop::new(hb, Some(events));
        let mut changed_at = None;
        while sim.now() < secs(360) {
            let _ = device.poll(ms(100));
            if changed_at.is_none() && sim.now() >= secs(301) {
                device
                    .heartbeater()
                    .set_state_json("lobby", r#"{"mood":"back"}"#)
                    .unwrap();
                changed_at = Some(sim.now());
            }
        }
        let changed_at = changed_at.unwrap();
        let sent = sim
            .served()
            .iter()
            .filter(|s| s.path.contains("/heartbeat") && s.at >= changed_at)
            .map(|s| s.at)
            .next()
            .unwrap_or_else(|| panic!("seed {seed}: no heartbeat after the change"));
        assert!(
            sent - changed_at <= secs(5),
            "seed {seed}: state set at {changed_at:?}, heartbeat at {sent:?}"
        );
        assert_eq!(sim.trouble(), Vec::<String>::new(), "seed {seed}");
    }
}
