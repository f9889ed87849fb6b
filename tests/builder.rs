//! Options that cannot work are refused when the client is built (or the
//! stream or mirror opened), with an `Input` error naming the option; the
//! others are kept as set. A property sweep over every option, with zero,
//! huge and ordinary values, against the bounds the setters document.

use proptest::prelude::*;
use pubnub_presence::{
    ErrorKind, PubNub, RetryPolicy, MAX_DURATION, MAX_PRESENCE_TIMEOUT, MIN_PRESENCE_TIMEOUT,
};
use std::collections::BTreeSet;
use std::time::Duration;

/// Durations at and around every bound, and anything at all.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(MAX_DURATION),
        Just(MAX_DURATION + Duration::from_nanos(1)),
        Just(Duration::MAX),
        (0u64..100_000, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

fn seconds() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(MIN_PRESENCE_TIMEOUT - 1),
        Just(MIN_PRESENCE_TIMEOUT),
        Just(MAX_PRESENCE_TIMEOUT),
        Just(MAX_PRESENCE_TIMEOUT + 1),
        Just(u32::MAX),
        0u32..1_000,
        any::<u32>(),
    ]
}

fn retry_policy() -> impl Strategy<Value = RetryPolicy> {
    (
        prop_oneof![Just(0u32), Just(1), Just(u32::MAX), any::<u32>()],
        duration(),
        duration(),
        proptest::option::of(duration()),
    )
        .prop_map(
            |(max_attempts, base_delay, max_delay, deadline)| RetryPolicy {
                max_attempts,
                base_delay,
                max_delay,
                deadline,
            },
        )
}

#[derive(Debug, Clone)]
struct Options {
    connect_timeout: Option<Duration>,
    request_timeout: Option<Duration>,
    presence_timeout: Option<u32>,
    heartbeat_interval: Option<u32>,
    max_response_size: Option<usize>,
    retry_policy: Option<RetryPolicy>,
}

fn options() -> impl Strategy<Value = Options> {
    use proptest::option::of;
    (
        of(duration()),
        of(duration()),
        of(seconds()),
        of(seconds()),
        of(prop_oneof![
            Just(0usize),
            Just(1),
            Just(usize::MAX),
            any::<usize>()
        ]),
        of(retry_policy()),
    )
        .prop_map(|(ct, rt, pt, hi, size, retry)| Options {
            connect_timeout: ct,
            request_timeout: rt,
            presence_timeout: pt,
            heartbeat_interval: hi,
            max_response_size: size,
            retry_policy: retry,
        })
}

fn timeout_ok(d: Duration) -> bool {
    !d.is_zero() && d <= MAX_DURATION
}

/// The options the documented bounds refuse (the heartbeat interval is
/// judged against a valid presence timeout only); for the retry policy,
/// the fields at fault.
fn refused(o: &Options) -> (BTreeSet<&'static str>, BTreeSet<&'static str>) {
    let mut bad = BTreeSet::new();
    let presence = o.presence_timeout.unwrap_or(300);
    if !(MIN_PRESENCE_TIMEOUT..=MAX_PRESENCE_TIMEOUT).contains(&presence) {
        bad.insert("presence_timeout");
    } else if o.heartbeat_interval.unwrap_or(presence / 2 - 1) >= presence {
        bad.insert("heartbeat_interval");
    }
    if o.connect_timeout.is_some_and(|d| !timeout_ok(d)) {
        bad.insert("connect_timeout");
    }
    if o.request_timeout.is_some_and(|d| !timeout_ok(d)) {
        bad.insert("request_timeout");
    }
    if o.max_response_size == Some(0) {
        bad.insert("max_response_size");
    }
    let mut fields = BTreeSet::new();
    if let Some(r) = &o.retry_policy {
        if r.max_attempts == 0 {
            fields.insert("max_attempts");
        }
        if r.base_delay > MAX_DURATION {
            fields.insert("base_delay");
        }
        if r.max_delay > MAX_DURATION {
            fields.insert("max_delay");
        }
        if r.deadline.is_some_and(|d| !timeout_ok(d)) {
            fields.insert("deadline");
        }
    }
    if !fields.is_empty() {
        bad.insert("retry_policy");
    }
    (bad, fields)
}

fn base() -> pubnub_presence::PubNubBuilder {
    PubNub::builder()
        .subscribe_key("sub")
        .user_id("me")
        .origin("http://127.0.0.1:1")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// build() never panics; it succeeds with exactly the values set (or
    /// the defaults) when every option is within its documented bounds,
    /// and otherwise fails with an `Input` error naming an option that is
    /// out of them.
    #[test]
    fn build_keeps_or_names_each_option(o in options()) {
        let mut b = base();
        if let Some(d) = o.connect_timeout { b = b.connect_timeout(d); }
        if let Some(d) = o.request_timeout { b = b.request_timeout(d); }
        if let Some(s) = o.presence_timeout { b = b.presence_timeout(s); }
        if let Some(s) = o.heartbeat_interval { b = b.heartbeat_interval(s); }
        if let Some(n) = o.max_response_size { b = b.max_response_size(n); }
        if let Some(r) = o.retry_policy { b = b.retry_policy(r); }
        let (bad, fields) = refused(&o);
        match b.build() {
            Ok(p) => {
                prop_assert!(bad.is_empty(), "accepted, but {bad:?} are out of bounds");
                let c = p.config();
                let presence = o.presence_timeout.unwrap_or(300);
                prop_assert_eq!(c.presence_timeout(), presence);
                prop_assert_eq!(
                    c.heartbeat_interval(),
                    o.heartbeat_interval.unwrap_or(presence / 2 - 1)
                );
                prop_assert_eq!(c.connect_timeout(), o.connect_timeout.unwrap_or(Duration::from_secs(5)));
                prop_assert_eq!(c.request_timeout(), o.request_timeout.unwrap_or(Duration::from_secs(10)));
                prop_assert_eq!(c.max_response_size(), o.max_response_size.unwrap_or(1 << 20));
                prop_assert_eq!(c.retry_policy(), o.retry_policy.unwrap_or_default());
            }
            Err(e) => {
                let text = e.to_string();
                let ErrorKind::Input { argument, reason } = e.into_kind() else {
                    return Err(TestCaseError::fail(format!("not an input error: {text}")));
                };
                prop_assert!(bad.contains(argument), "{argument} refused, but only {bad:?} are out of bounds");
                prop_assert!(text.contains(argument), "{text}");
                if argument == "retry_policy" {
                    // The reason names the field at fault.
                    prop_assert!(fields.iter().any(|f| reason.contains(f)), "{reason} vs {fields:?}");
                }
            }
        }
    }

    /// The event stream's and the mirror's options, checked by open() the
    /// same way (open() sends nothing, so no server is needed).
    #[test]
    fn open_refuses_or_accepts_stream_and_mirror_options(
        long_poll in proptest::option::of(duration()),
        resync in proptest::option::of(duration()),
        page in proptest::option::of(prop_oneof![Just(0u32), Just(1), Just(1000), Just(1001), any::<u32>()]),
        max_occupants in proptest::option::of(prop_oneof![Just(0usize), Just(1), Just(usize::MAX), any::<usize>()]),
    ) {
        let p = base().build().unwrap();
        let mut bad = BTreeSet::new();
        if long_poll.is_some_and(|d| !timeout_ok(d)) {
            bad.insert("long_poll_timeout");
        }

        let mut events = p.presence_events().channels(vec!["a".into()]);
        if let Some(d) = long_poll { events = events.long_poll_timeout(d); }
        match events.open() {
            Ok(_) => prop_assert!(bad.is_empty(), "{bad:?}"),
            Err(e) => match e.into_kind() {
                ErrorKind::Input { argument, .. } => prop_assert!(bad.contains(argument), "{argument} vs {bad:?}"),
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            },
        }

        if resync.is_some_and(|d| d > MAX_DURATION) {
            bad.insert("resync_delay");
        }
        if page.is_some_and(|n| n == 0 || n > 1000) {
            bad.insert("page_size");
        }
        if max_occupants == Some(0) {
            bad.insert("max_occupants_per_channel");
        }
        let mut m = p.occupancy().channels(vec!["a".into()]);
        if let Some(d) = long_poll { m = m.long_poll_timeout(d); }
        if let Some(d) = resync { m = m.resync_delay(d); }
        if let Some(n) = page { m = m.page_size(n); }
        if let Some(n) = max_occupants { m = m.max_occupants_per_channel(n); }
        match m.open() {
            Ok(_) => prop_assert!(bad.is_empty(), "{bad:?}"),
            Err(e) => {
                let text = e.to_string();
                match e.into_kind() {
                    ErrorKind::Input { argument, .. } => {
                        prop_assert!(bad.contains(argument), "{argument} vs {bad:?}");
                        prop_assert!(text.contains(argument), "{text}");
                    }
                    other => return Err(TestCaseError::fail(format!("{other:?}"))),
                }
            }
        }
    }
}

/// The named cases, one line each: what a user is most likely to try.
#[test]
fn common_mistakes_are_named() {
    let cases: Vec<(pubnub_presence::PubNubBuilder, &str)> = vec![
        (base().connect_timeout(Duration::ZERO), "connect_timeout"),
        (base().request_timeout(Duration::ZERO), "request_timeout"),
        (base().request_timeout(Duration::MAX), "request_timeout"),
        (base().presence_timeout(0), "presence_timeout"),
        (base().presence_timeout(u32::MAX), "presence_timeout"),
        (
            base().presence_timeout(60).heartbeat_interval(60),
            "heartbeat_interval",
        ),
        (base().max_response_size(0), "max_response_size"),
    ];
    for (b, option) in cases {
        let e = b.build().unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Input { argument, .. } if *argument == option),
            "{option}: {e:?}"
        );
        assert!(
            e.to_string().starts_with(&format!("invalid {option}: ")),
            "{e}"
        );
    }
    // 0 is documented as "no automatic heartbeats", not an error.
    let p = base().heartbeat_interval(0).build().unwrap();
    assert_eq!(p.config().heartbeat_interval(), 0);
    let p = base().build().unwrap();
    let open = |page: u32| {
        p.occupancy()
            .channels(vec!["a".into()])
            .page_size(page)
            .open()
    };
    assert!(open(1000).is_ok());
    for page in [0, 1001] {
        let e = open(page).err().unwrap();
        assert!(
            matches!(
                e.kind(),
                ErrorKind::Input {
                    argument: "page_size",
                    ..
                }
            ),
            "{e:?}"
        );
    }
}
