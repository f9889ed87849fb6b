//! How long the client's time rules take on real loopback sockets: the
//! wall-clock figures that `cargo test` no longer asserts (a loaded
//! machine would fail them). The rules themselves are checked exactly,
//! in virtual time, by `tests/sim_rules.rs`; this measures what the
//! kernel, the scheduler and TLS add on a real machine.
//!
//!     cargo bench --bench timings
//!
//! Each line: the scenario, the rule, what was measured (several runs
//! where it is quick: the median and the worst).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{ok_json, Reply, Server};
use pubnub_presence::{HeartbeatThread, Heartbeater, PresenceLoop, PubNub, RetryPolicy};
use std::time::{Duration, Instant};

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn client(origin: &str) -> pubnub_presence::PubNubBuilder {
    PubNub::builder()
        .subscribe_key("k")
        .user_id("me")
        .origin(origin)
}

fn median_worst(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    let median = v.get(v.len() / 2).copied().unwrap_or_default();
    let worst = v.last().copied().unwrap_or_default();
    (median, worst)
}

/// An ordinary call against a server that sends the head after 0.5 s and
/// then trickles the body: the retry deadline (1.1 s) ends it.
fn call_deadline_across_phases() {
    let s = Server::start(|_| {
        let mut bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n".to_vec();
        bytes.extend_from_slice(&[b' '; 2000]);
        Reply::Delay(
            Duration::from_millis(500),
            Box::new(Reply::Trickle(bytes, Duration::from_millis(2))),
        )
    });
    let p = client(&s.origin)
        .request_timeout(Duration::from_secs(1))
        .retry_policy(RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
            deadline: Some(Duration::from_millis(1100)),
        })
        .build()
        .unwrap();
    let took: Vec<Duration> = (0..3)
        .map(|_| {
            let t = Instant::now();
            let _ = p.where_now().execute();
            t.elapsed()
        })
        .collect();
    let (median, worst) = median_worst(took);
    println!(
        "call deadline across phases (deadline 1100 ms): median {}, worst {} (3 calls)",
        ms(median),
        ms(worst)
    );
}

/// Over TLS, a poll during which the TCP connect completes (the SYN
/// retransmitted after ~1 s into a full accept queue) ends at its budget.
#[cfg(feature = "tls")]
fn connect_completing_during_a_poll() {
    use socket2::{Domain, SockAddr, Socket, Type};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    sock.bind(&SockAddr::from(any)).unwrap();
    sock.listen(0).unwrap();
    let listener: TcpListener = sock.into();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            fillers.push(s);
        }
    }
    let p = client(&format!("https://127.0.0.1:{}", addr.port()))
        .build()
        .unwrap();
    let mut ev = p
        .presence_events()
        .channels(vec!["room".into()])
        .open()
        .unwrap();
    let (done, wait_done) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        let accepted = listener.accept();
        let _ = wait_done.recv_timeout(Duration::from_secs(5));
        drop((accepted, listener, fillers));
    });
    let budget = Duration::from_millis(1500);
    let t = Instant::now();
    let _ = ev.poll(budget);
    let took = t.elapsed();
    drop(ev);
    let _ = done.send(());
    let _ = holder.join();
    println!(
        "TLS poll with the connect completing in it (budget 1500 ms): {}",
        ms(took)
    );
}

/// The device loop (100 ms budget) against a server that accepts and
/// never answers, for 4 s: the slowest call.
fn loop_against_a_silent_server() {
    let s = Server::start(|_| Reply::Silent);
    let p = client(&s.origin)
        .request_timeout(Duration::from_millis(300))
        .heartbeat_interval(5)
        .build()
        .unwrap();
    let mut hb = Heartbeater::new(&p);
    hb.join(vec!["room".into()]).unwrap();
    let events = p
        .presence_events()
        .channels(vec!["room".into()])
        .open()
        .unwrap();
    let mut device = PresenceLoop::new(hb, Some(events));
    let started = Instant::now();
    let mut took = Vec::new();
    while started.elapsed() < Duration::from_secs(4) {
        let t = Instant::now();
        let _ = device.poll(Duration::from_millis(100));
        took.push(t.elapsed());
    }
    let n = took.len();
    let (median, worst) = median_worst(took);
    println!(
        "loop vs silent server (budget 100 ms): median {}, worst {} ({n} calls, {} heartbeats in 4 s)",
        ms(median),
        ms(worst),
        s.count("/heartbeat")
    );
}

/// Short polls of an event stream whose long-poll is held: the kernel
/// rounds socket timeouts up to scheduler ticks; the loop sleeps the last
/// stretch in small steps.
fn short_budgets() {
    let s = Server::start(|t| {
        if t.contains("tt=0") {
            ok_json(r#"{"t":{"t":"100","r":7},"m":[]}"#)
        } else {
            Reply::Silent
        }
    });
    let p = client(&s.origin).build().unwrap();
    let mut ev = p
        .presence_events()
        .channels(vec!["room".into()])
        .open()
        .unwrap();
    let _ = ev.poll(Duration::from_millis(200));
    for budget_ms in [5u64, 20] {
        let budget = Duration::from_millis(budget_ms);
        let took: Vec<Duration> = (0..40)
            .map(|_| {
                let t = Instant::now();
                let _ = ev.poll(budget);
                t.elapsed()
            })
            .collect();
        let (median, worst) = median_worst(took);
        println!(
            "short poll (budget {budget_ms} ms): median {}, worst {} (40 polls)",
            ms(median),
            ms(worst)
        );
    }
}

/// `HeartbeatThread::stop` against a server that never answers: the
/// final leave is bounded; with 20 commands queued behind a slow one,
/// they are dropped.
fn heartbeat_thread_stop() {
    let s = Server::start(|_| Reply::Silent);
    let p = client(&s.origin).build().unwrap();
    let mut hb = Heartbeater::new(&p);
    hb.join(vec!["room".into()]).unwrap();
    let thread = HeartbeatThread::spawn(hb).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let _ = thread.stop();
    let plain = t.elapsed();

    let s = Server::start(|_| Reply::Silent);
    let p = client(&s.origin).build().unwrap();
    let mut hb = Heartbeater::new(&p);
    hb.join((0..20).map(|i| format!("room{i}")).collect())
        .unwrap();
    let thread = HeartbeatThread::spawn(hb).unwrap();
    for i in 0..20 {
        thread.leave_channels(vec![format!("room{i}")], vec![]);
        thread.set_state_json(&format!("room{i}"), r#"{"a":1}"#);
    }
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let _ = thread.stop();
    let queued = t.elapsed();
    println!(
        "heartbeat thread stop vs silent server: {} (20 commands queued: {})",
        ms(plain),
        ms(queued)
    );
}

/// A 429 with `Retry-After: 1` and a policy of 10 ms delays: the retry
/// waits the server's second.
fn retry_after() {
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n2 = n.clone();
    let s = Server::start(move |_| {
        if n2.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Reply::Raw(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_vec())
        } else {
            ok_json(
                r#"{"status":200,"message":"OK","payload":{"channels":["a"]},"service":"Presence"}"#,
            )
        }
    });
    let p = client(&s.origin)
        .retry_policy(RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
            deadline: Some(Duration::from_secs(5)),
        })
        .build()
        .unwrap();
    let t = Instant::now();
    let r = p.where_now().execute();
    println!(
        "429 with Retry-After: 1: answered after {} ({})",
        ms(t.elapsed()),
        if r.is_ok() { "ok" } else { "failed" }
    );
}

fn main() {
    // `cargo test --benches` runs this with `--bench`; `cargo bench` too.
    call_deadline_across_phases();
    #[cfg(feature = "tls")]
    connect_completing_during_a_poll();
    loop_against_a_silent_server();
    short_budgets();
    heartbeat_thread_stop();
    retry_after();
}
