//! The figures of a chaos soak run and the checks made on them.

use crate::device::Stats;
use pubnub_presence::emulator::Fault;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Messages PubNub keeps per channel for a subscriber that resumes from
/// its cursor, and for how long (its connection-management docs).
const SERVICE_RETENTION: usize = 100;
const SERVICE_RETENTION_TIME: Duration = Duration::from_secs(20 * 60);

/// How far past its budget a poll may go, not counting its waits for a
/// CPU: Linux rounds a socket timeout up to its timer tick and wakes on
/// a tick (here a 50 ms receive timeout returns after up to 56 ms), plus
/// the poll's own few microseconds of work.
const OWN_MARGIN: Duration = Duration::from_millis(20);

/// One fault and what followed it.
#[derive(Debug, Clone)]
pub struct FaultRecord {
    pub fault: Fault,
    pub length: Duration,
    /// When it started and ended.
    pub window: (Instant, Instant),
    /// From the network's return to the device's first answered
    /// heartbeat, confirmed present with state by here_now; `None`: not
    /// within the limit.
    pub restored_after: Option<Duration>,
    /// From the network's return until the device had every event the
    /// truth had got by then; `None`: not within the limit.
    pub caught_up_after: Option<Duration>,
    /// Events published during the fault.
    pub events_during: usize,
    /// The most of those on one channel.
    pub most_on_one_channel: usize,
    /// The device's RSS, anonymous RSS and live heap at its last report
    /// before the record was made (after the catch-up).
    pub memory_after: (u64, u64, u64),
}

impl FaultRecord {
    /// The record as one line of text.
    pub fn line(&self) -> String {
        format!(
            "fault {:<13} {:>6.1} s: presence back after {}, events caught up after {}, {} events during it ({} on one channel at most); then RSS {} KiB (anon {}), heap {:.1} KiB",
            format!("{:?}", self.fault),
            self.length.as_secs_f64(),
            secs(self.restored_after),
            secs(self.caught_up_after),
            self.events_during,
            self.most_on_one_channel,
            self.memory_after.0 / 1024,
            self.memory_after.1 / 1024,
            self.memory_after.2 as f64 / 1024.0
        )
    }
}

/// The figures of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub ran_for: Duration,
    pub faults: Vec<FaultRecord>,
    pub published: usize,
    pub published_during_faults: usize,
    pub delivered: usize,
    pub lost: Vec<String>,
    pub duplicated: Vec<String>,
    pub unexpected: Vec<String>,
    /// Users of the other clients: joined, left, timed out, changed state
    /// (as issued), and how many of those the truth did not see.
    pub churn: [usize; 4],
    pub churn_missing_from_truth: Vec<String>,
    pub device_timeouts: usize,
    pub device_errors: BTreeMap<String, usize>,
    pub truth_errors: usize,
    pub stats_after_warm_up: Stats,
    pub stats_end: Stats,
    /// The most RSS and live heap reported.
    pub max_memory: (u64, u64),
    pub proxy_connections: u64,
    pub proxy_resets: u64,
    pub heartbeat_interval: Duration,
    pub budget: Duration,
    pub margin: Duration,
    pub poll_margin: Duration,
}

impl Report {
    /// Everything the scenario checks; the failures, empty when all
    /// passed.
    /// The device's live heap may grow by `max_heap_growth` bytes from the
    /// end of the warm-up to the end; its RSS by `max_rss_growth`, if
    /// given (not in the test, where RSS is the whole test process's).
    pub fn failures(&self, max_heap_growth: u64, max_rss_growth: Option<u64>) -> Vec<String> {
        let mut f = Vec::new();
        if self.published == 0 || self.published_during_faults == 0 {
            f.push(format!(
                "too few events: {} published, {} during faults",
                self.published, self.published_during_faults
            ));
        }
        for (what, list) in [
            ("lost", &self.lost),
            ("duplicated", &self.duplicated),
            ("unexpected", &self.unexpected),
            ("missing from the truth", &self.churn_missing_from_truth),
        ] {
            if !list.is_empty() {
                f.push(format!(
                    "{} {what}: {:?}",
                    list.len(),
                    &list[..list.len().min(5)]
                ));
            }
        }
        let limit = self.heartbeat_interval + self.margin;
        for r in &self.faults {
            match r.restored_after {
                Some(d) if d <= limit => {}
                other => f.push(format!(
                    "presence after {:?} ({:?}) restored after {other:?}, limit {limit:?}",
                    r.fault, r.length
                )),
            }
            if r.caught_up_after.is_none() {
                f.push(format!("events after {:?} never caught up", r.fault));
            }
            // Past this, the real service would have dropped events the
            // local server still had: "nothing lost" would claim too much.
            if r.most_on_one_channel > SERVICE_RETENTION || r.length > SERVICE_RETENTION_TIME {
                f.push(format!(
                    "{:?} ({:?}, {} events on one channel) goes beyond the service's retention",
                    r.fault, r.length, r.most_on_one_channel
                ));
            }
        }
        let worst = self.stats_end.max_poll;
        if worst > self.budget + self.poll_margin {
            f.push(format!("a poll took {worst:?} (budget {:?})", self.budget));
        }
        // Without the waits for a CPU, the library's own part: a tight
        // bound whatever the load.
        let own = self.stats_end.max_poll_own;
        if own > self.budget + OWN_MARGIN {
            f.push(format!(
                "a poll took {own:?} besides waiting for a CPU (budget {:?})",
                self.budget
            ));
        }
        let (warm, end) = (&self.stats_after_warm_up, &self.stats_end);
        let heap_growth = end.heap.saturating_sub(warm.heap);
        if heap_growth > max_heap_growth {
            f.push(format!(
                "the heap grew by {heap_growth} B (after warm-up {}, end {})",
                warm.heap, end.heap
            ));
        }
        let rss_growth = end.rss.saturating_sub(warm.rss);
        if max_rss_growth.is_some_and(|max| rss_growth > max) {
            f.push(format!(
                "RSS grew by {rss_growth} B (after warm-up {}, end {})",
                warm.rss, end.rss
            ));
        }
        if self.truth_errors > 0 {
            f.push(format!(
                "the truth subscriber failed {} times",
                self.truth_errors
            ));
        }
        f
    }

    /// The figures as text.
    pub fn print(&self) {
        println!("ran for:               {:.1} s", self.ran_for.as_secs_f64());
        println!(
            "events published:      {} ({} during faults)",
            self.published, self.published_during_faults
        );
        println!(
            "events delivered:      {} (lost {}, duplicated {}, unexpected {})",
            self.delivered,
            self.lost.len(),
            self.duplicated.len(),
            self.unexpected.len()
        );
        println!(
            "other clients:         {} joined, {} left, {} timed out, {} state changes",
            self.churn[0], self.churn[1], self.churn[2], self.churn[3]
        );
        println!("device timed out:      {} times", self.device_timeouts);
        for r in &self.faults {
            println!("{}", r.line());
        }
        let worst_restore = self.faults.iter().filter_map(|r| r.restored_after).max();
        println!(
            "presence restored:     worst {} (heartbeat interval {} s)",
            secs(worst_restore),
            self.heartbeat_interval.as_secs()
        );
        let (st, warm) = (&self.stats_end, &self.stats_after_warm_up);
        println!(
            "polls:                 {} (budget {} ms), slowest {:.1} ms (overrun {:.1} ms, of which {:.1} ms waiting for a CPU); slowest without CPU waits {:.1} ms",
            st.polls,
            self.budget.as_millis(),
            ms(st.max_poll),
            ms(st.max_poll.saturating_sub(self.budget)),
            ms(st.max_poll_cpu_wait),
            ms(st.max_poll_own)
        );
        println!(
            "connections:           {} through the proxy ({} reset by faults), {} for events",
            self.proxy_connections, self.proxy_resets, self.stats_end.event_connections
        );
        println!("device errors:         {:?}", self.device_errors);
        println!(
            "device RSS KiB:        after warm-up {} (anon {}), end {} (anon {}), max {}",
            warm.rss / 1024,
            warm.rss_anon / 1024,
            self.stats_end.rss / 1024,
            self.stats_end.rss_anon / 1024,
            self.max_memory.0 / 1024
        );
        println!(
            "device heap KiB:       after warm-up {:.1}, end {:.1}, max {:.1}",
            warm.heap as f64 / 1024.0,
            self.stats_end.heap as f64 / 1024.0,
            self.max_memory.1 as f64 / 1024.0
        );
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("never".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
