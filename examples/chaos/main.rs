//! Chaos soak of the device loop: a `PresenceLoop` talks to the local
//! presence server through a fault proxy that refuses connections, stalls,
//! resets responses mid-body and cuts the network for minutes, while other
//! clients join, leave, change state and time out. Checks that every event
//! published reaches the device exactly once once the network is back,
//! that its presence (with state) is back within one heartbeat interval
//! after each fault, that every poll stays within its budget, and that
//! the device's RSS stays flat. The scenario is in `scenario.rs` (the
//! device in `device.rs`, the checks in `report.rs`); a
//! 20-second version runs in `cargo test` (`tests/chaos.rs`).
//!
//! The device runs in a child process of its own, so that its RSS is its
//! own; the server, the proxy, the other clients and the checks run here.
//!
//! ```text
//! cargo run --release --example chaos --features emulator -- --minutes 30
//! cargo run --release --example chaos --features emulator -- --short   # the test's plan
//! ```

mod device;
mod report;
mod scenario;

use device::{Device, DeviceConfig, DeviceMsg, Stats};
use scenario::Plan;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Counts live heap bytes, so the device process reports its heap as
/// well as its RSS (RSS also moves with the allocator's arenas and pages
/// touched once).
struct Counting;
static LIVE: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only
// counts the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as u64, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as u64, Ordering::Relaxed);
        System.dealloc(p, l)
    }
}
#[global_allocator]
static GLOBAL: Counting = Counting;

/// The child: runs the device, one line per report on stdout, until
/// stdin closes ("quiet" on stdin stops its state changes).
fn device_main(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let [origin, timeout, interval, budget, state_every, stats_every] = args else {
        return Err("--device ORIGIN TIMEOUT_S INTERVAL_S BUDGET_MS STATE_MS STATS_MS".into());
    };
    let ms = |v: &String| v.parse().map(Duration::from_millis);
    let cfg = DeviceConfig {
        origin: origin.clone(),
        presence_timeout: timeout.parse()?,
        heartbeat_interval: interval.parse()?,
        budget: ms(budget)?,
        state_every: ms(state_every)?,
        stats_every: ms(stats_every)?,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let quiet = Arc::new(AtomicBool::new(false));
    {
        let (stop, quiet) = (stop.clone(), quiet.clone());
        thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                match line {
                    Ok(l) if l == "quiet" => quiet.store(true, Ordering::SeqCst),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            stop.store(true, Ordering::SeqCst);
            // Parked, not ended: a thread's exit touches library code not
            // run before (+50 to 200 KiB of file-backed pages), which the
            // final report would show as the device's growth.
            loop {
                thread::park();
            }
        });
    }
    let mut out = std::io::stdout().lock();
    let mut write = |msg: DeviceMsg| {
        let line = match msg {
            DeviceMsg::Ready => "ready".to_string(),
            DeviceMsg::Event(e) => format!("event {e}"),
            DeviceMsg::Error(k) => format!("error {k}"),
            DeviceMsg::Beat => "beat".to_string(),
            DeviceMsg::Stats(s) => format!(
                "stats {} {} {} {} {} {} {} {}",
                s.polls,
                s.max_poll.as_micros(),
                s.max_poll_cpu_wait.as_micros(),
                s.max_poll_own.as_micros(),
                s.rss,
                s.rss_anon,
                s.heap,
                s.event_connections
            ),
        };
        // The parent going away ends the child.
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            stop.store(true, Ordering::SeqCst);
        }
    };
    let memory = || {
        let (rss, anon) = device::rss();
        (rss, anon, LIVE.load(Ordering::Relaxed))
    };
    device::run_device(&cfg, &stop, &quiet, &memory, &mut write)?;
    Ok(())
}

fn parse(line: &str) -> Option<DeviceMsg> {
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    Some(match word {
        "ready" => DeviceMsg::Ready,
        "beat" => DeviceMsg::Beat,
        "event" => DeviceMsg::Event(rest.to_string()),
        "error" => DeviceMsg::Error(rest.to_string()),
        "stats" => {
            let v: Vec<u64> = rest.split(' ').filter_map(|n| n.parse().ok()).collect();
            let [polls, max_us, wait_us, own_us, rss, rss_anon, heap, conns] = v[..] else {
                return None;
            };
            DeviceMsg::Stats(Stats {
                polls,
                max_poll: Duration::from_micros(max_us),
                max_poll_cpu_wait: Duration::from_micros(wait_us),
                max_poll_own: Duration::from_micros(own_us),
                rss,
                rss_anon,
                heap,
                event_connections: conns,
            })
        }
        _ => return None,
    })
}

struct ChildDevice {
    child: Child,
    stdin: Mutex<Option<ChildStdin>>,
    reader: JoinHandle<()>,
}

impl Device for ChildDevice {
    fn quiet(&self) {
        if let Ok(mut stdin) = self.stdin.lock() {
            if let Some(s) = stdin.as_mut() {
                let _ = writeln!(s, "quiet").and_then(|()| s.flush());
            }
        }
    }

    fn stop(mut self: Box<Self>) {
        if let Ok(mut stdin) = self.stdin.lock() {
            stdin.take();
        }
        let _ = self.child.wait();
        let _ = self.reader.join();
    }
}

fn spawn_child(cfg: &DeviceConfig, tx: Sender<DeviceMsg>) -> Box<dyn Device> {
    let exe = std::env::current_exe().expect("the example's own path");
    let mut child = Command::new(exe)
        .arg("--device")
        .args([
            cfg.origin.clone(),
            cfg.presence_timeout.to_string(),
            cfg.heartbeat_interval.to_string(),
            cfg.budget.as_millis().to_string(),
            cfg.state_every.as_millis().to_string(),
            cfg.stats_every.as_millis().to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the device process");
    let stdout = child.stdout.take().expect("piped stdout");
    let stdin = child.stdin.take();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(msg) = parse(&line) {
                if tx.send(msg).is_err() {
                    break;
                }
            }
        }
    });
    Box::new(ChildDevice {
        child,
        stdin: Mutex::new(stdin),
        reader,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--device") {
        return device_main(&args[1..]);
    }
    let mut minutes = 30u64;
    let mut short = false;
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--minutes" => {
                minutes = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--minutes N")?
            }
            "--seed" => seed = it.next().and_then(|v| v.parse().ok()).ok_or("--seed N")?,
            "--short" => short = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let mut plan = if short {
        Plan::short(seed)
    } else {
        Plan::long(Duration::from_secs(minutes * 60), seed)
    };
    plan.progress = true;
    println!(
        "chaos soak: faults for {} s (each at least once): {:?}, device heartbeat every {} s (presence timeout {} s), poll budget {} ms, seed {seed}",
        plan.duration.as_secs(),
        plan.faults.iter().map(|(f, d)| format!("{f:?} {} s", d.as_secs_f64())).collect::<Vec<_>>(),
        plan.device_heartbeat_interval,
        plan.device_presence_timeout,
        plan.budget.as_millis()
    );
    let report = scenario::run(&plan, &spawn_child)?;
    report.print();
    // The heap: a queue of recent events (256 entries) and buffers, nothing
    // that grows with time. RSS moves by whole pages and allocator arenas.
    let failures = report.failures(64 * 1024, Some(512 * 1024));
    if failures.is_empty() {
        println!("all checks passed");
        Ok(())
    } else {
        for f in &failures {
            println!("FAILED: {f}");
        }
        Err(format!("{} checks failed", failures.len()).into())
    }
}
