//! Decode speed and allocations: our parser (borrowed and owned results)
//! against `serde_json::from_slice::<Value>` on the same bytes, in one run.
//!
//!     cargo bench --bench decode
//!
//! Timings are printed, never asserted. Results go in BENCHMARKS.md.

#[path = "support/alloc.rs"]
mod alloc;
#[path = "support/bodies.rs"]
mod bodies;

use pubnub_presence::decode;
use std::hint::black_box;
use std::time::{Duration, Instant};

#[global_allocator]
static A: alloc::Counting = alloc::Counting;

/// Mean time per run over at least `min` of repeated runs.
fn time(min: Duration, mut f: impl FnMut()) -> Duration {
    // Warm up, and pick a batch size worth timing.
    let t = Instant::now();
    f();
    let once = t.elapsed().max(Duration::from_nanos(50));
    let batch = (Duration::from_millis(20).as_nanos() / once.as_nanos()).max(1) as u32;
    let (mut runs, mut total) = (0u32, Duration::ZERO);
    while total < min {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        total += t.elapsed();
        runs += batch;
    }
    total / runs
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

struct Row {
    name: String,
    bytes: usize,
    borrowed: Duration,
    owned: Duration,
    serde: Duration,
    allocs: [alloc::Stats; 3],
}

fn bench(name: &str, body: &[u8], borrowed: &dyn Fn(&[u8]), owned: &dyn Fn(&[u8])) -> Row {
    let min = Duration::from_millis(400);
    let b = time(min, || borrowed(black_box(body)));
    let o = time(min, || owned(black_box(body)));
    let s = time(min, || {
        black_box(serde_json::from_slice::<serde_json::Value>(black_box(body)).unwrap());
    });
    let (_, ab) = alloc::measure(|| borrowed(body));
    let (_, ao) = alloc::measure(|| owned(body));
    let (_, as_) = alloc::measure(|| {
        black_box(serde_json::from_slice::<serde_json::Value>(body).unwrap());
    });
    Row {
        name: name.to_string(),
        bytes: body.len(),
        borrowed: b,
        owned: o,
        serde: s,
        allocs: [ab, ao, as_],
    }
}

fn main() {
    let mut rows = Vec::new();
    for n in [10, 1_000, 10_000] {
        for with_state in [false, true] {
            let body = bodies::here_now(n, with_state);
            let name = format!(
                "here_now {n} occupants{}",
                if with_state { " + state" } else { "" }
            );
            rows.push(bench(
                &name,
                &body,
                &|b| {
                    black_box(decode::here_now(b, Some("ch")).unwrap());
                },
                &|b| {
                    black_box(decode::here_now(b, Some("ch")).unwrap().into_owned());
                },
            ));
        }
    }
    let body = bodies::where_now(100);
    rows.push(bench(
        "where_now 100 channels",
        &body,
        &|b| {
            black_box(decode::where_now(b).unwrap());
        },
        &|b| {
            black_box(decode::where_now(b).unwrap().into_owned());
        },
    ));
    let body = bodies::get_state(100);
    rows.push(bench(
        "get_state 100 channels",
        &body,
        &|b| {
            black_box(decode::get_state(b).unwrap());
        },
        &|b| {
            black_box(decode::get_state(b).unwrap().into_owned());
        },
    ));
    let body = bodies::events(100);
    rows.push(bench(
        "event batch 100 joins",
        &body,
        &|b| {
            black_box(decode::events(b).unwrap());
        },
        &|b| {
            let batch = decode::events(b).unwrap();
            let owned: Vec<_> = batch
                .events
                .into_iter()
                .map(|e| e.event.into_owned())
                .collect();
            black_box(owned);
        },
    ));

    println!("| body | bytes | borrowed MB/s | owned MB/s | serde_json Value MB/s | borrowed ÷ serde | allocs borrowed / owned / serde | bytes allocated borrowed / owned / serde |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.1}× | {} / {} / {} | {} / {} / {} |",
            r.name,
            r.bytes,
            mbps(r.bytes, r.borrowed),
            mbps(r.bytes, r.owned),
            mbps(r.bytes, r.serde),
            r.serde.as_secs_f64() / r.borrowed.as_secs_f64(),
            r.allocs[0].allocs,
            r.allocs[1].allocs,
            r.allocs[2].allocs,
            r.allocs[0].bytes,
            r.allocs[1].bytes,
            r.allocs[2].bytes,
        );
    }
}
