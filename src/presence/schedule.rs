//! Staying present without a runtime: a heartbeat schedule driven by the
//! caller's own loop ([`Heartbeater::tick`]), and an optional helper that
//! runs the same schedule on one background thread ([`HeartbeatThread`]).

use crate::client::PubNub;
use crate::error::{Error, Result};
use crate::state;
use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Keeps a user present on channels and groups: holds what was joined and
/// the per-channel state, knows when the next heartbeat is due, and sends
/// it (state included, every time) when [`tick`](Heartbeater::tick) is
/// called at or after that moment.
///
/// Time is passed in, so a single-threaded loop (or a test) drives it:
///
/// ```no_run
/// # use pubnub_presence::{PubNub, presence::schedule::Heartbeater};
/// # use std::time::{Duration, Instant};
/// # fn main() -> Result<(), pubnub_presence::Error> {
/// let pubnub = PubNub::builder().subscribe_key("demo").user_id("device-42").build()?;
/// let mut online = Heartbeater::new(&pubnub);
/// online.join(vec!["lobby".into()])?;
/// online.set_state_json("lobby", r#"{"battery":87}"#)?;
/// loop {
///     // ... the device's own work ...
///     if let Err(e) = online.tick(Instant::now()) {
///         eprintln!("heartbeat failed, retried at the next tick: {e}");
///     }
///     std::thread::sleep(Duration::from_secs(1));
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Heartbeater {
    pubnub: PubNub,
    channels: Vec<String>,
    groups: Vec<String>,
    state: BTreeMap<String, String>,
    interval: Option<Duration>,
    next_due: Option<Instant>,
}

impl Heartbeater {
    /// A schedule using the client's `heartbeat_interval` (0 = never due on
    /// its own; [`Heartbeater::heartbeat_now`] still works).
    pub fn new(pubnub: &PubNub) -> Self {
        let secs = pubnub.config().heartbeat_interval();
        Heartbeater {
            pubnub: pubnub.clone(),
            channels: Vec::new(),
            groups: Vec::new(),
            state: BTreeMap::new(),
            interval: (secs > 0).then(|| Duration::from_secs(u64::from(secs))),
            next_due: None,
        }
    }

    /// Adds channels; the next tick sends a heartbeat at once.
    pub fn join(&mut self, channels: Vec<String>) -> Result<()> {
        crate::request::check_names("channels", &channels)?;
        for c in channels {
            if !self.channels.contains(&c) {
                self.channels.push(c);
            }
        }
        self.next_due = None;
        Ok(())
    }

    /// Adds channel groups; the next tick sends a heartbeat at once.
    pub fn join_groups(&mut self, groups: Vec<String>) -> Result<()> {
        crate::request::check_names("channel_groups", &groups)?;
        for g in groups {
            if !self.groups.contains(&g) {
                self.groups.push(g);
            }
        }
        self.next_due = None;
        Ok(())
    }

    /// Sets the state sent for `channel` with every heartbeat.
    pub fn set_state<T: state::Serialize + ?Sized>(
        &mut self,
        channel: &str,
        value: &T,
    ) -> Result<()> {
        let json = state::to_json_object(value, "state")?;
        self.state.insert(channel.to_string(), json);
        self.next_due = None;
        Ok(())
    }

    /// Sets the state for `channel` from a JSON object text.
    pub fn set_state_json(&mut self, channel: &str, json: &str) -> Result<()> {
        state::check_json_object(json, "state")?;
        self.state.insert(channel.to_string(), json.to_string());
        self.next_due = None;
        Ok(())
    }

    /// The channels currently joined.
    pub fn channels(&self) -> &[String] {
        &self.channels
    }

    /// When the next heartbeat is due: `None` when nothing is joined or
    /// automatic heartbeats are off; a past instant means "now".
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        // Interval 0: no automatic heartbeats at all, not even on join (as
        // PubNub's presence engine behaves with `heartbeatInterval: 0`).
        self.interval?;
        if self.channels.is_empty() && self.groups.is_empty() {
            return None;
        }
        Some(self.next_due.unwrap_or(now))
    }

    /// Sends a heartbeat if one is due at `now`. Returns whether one was
    /// sent. A failure is returned and the heartbeat stays due, so the next
    /// tick retries it.
    pub fn tick(&mut self, now: Instant) -> Result<bool> {
        match self.next_due(now) {
            Some(due) if due <= now => {
                self.heartbeat_now(now)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Sends a heartbeat now, whatever the schedule.
    pub fn heartbeat_now(&mut self, now: Instant) -> Result<()> {
        let mut hb = self
            .pubnub
            .heartbeat()
            .channels(self.channels.clone())
            .channel_groups(self.groups.clone());
        if !self.state.is_empty() {
            // Each piece was validated when set; the map of them is valid.
            hb = hb.state_checked(self.state_map());
        }
        hb.execute()?;
        self.next_due = Some(now + self.interval.unwrap_or(Duration::ZERO));
        Ok(())
    }

    /// `{"ch1":{…},"ch2":{…}}` from the per-channel states.
    fn state_map(&self) -> String {
        let mut out = String::from("{");
        for (i, (channel, json)) in self.state.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&miniserde::json::to_string(channel));
            out.push(':');
            out.push_str(json);
        }
        out.push('}');
        out
    }

    /// Sends `leave` for everything joined and forgets it (and its state).
    pub fn leave(&mut self) -> Result<()> {
        if self.channels.is_empty() && self.groups.is_empty() {
            return Ok(());
        }
        let result = self
            .pubnub
            .leave()
            .channels(self.channels.clone())
            .channel_groups(self.groups.clone())
            .execute();
        self.channels.clear();
        self.groups.clear();
        self.state.clear();
        self.next_due = None;
        result
    }
}

/// Runs a [`Heartbeater`] on one background thread, and sends `leave` when
/// dropped (or on [`HeartbeatThread::stop`]).
#[derive(Debug)]
pub struct HeartbeatThread {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<Result<()>>>,
    last_error: Arc<Mutex<Option<Error>>>,
}

impl HeartbeatThread {
    /// Starts heartbeating. Failed heartbeats are retried after 5 s (or
    /// the interval, if shorter) and the latest error kept for
    /// [`HeartbeatThread::last_error`].
    pub fn spawn(mut heartbeater: Heartbeater) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<()>();
        let last_error = Arc::new(Mutex::new(None));
        let errors = Arc::clone(&last_error);
        let handle = std::thread::Builder::new()
            .name("pubnub-heartbeat".into())
            .spawn(move || {
                let retry = heartbeater
                    .interval
                    .map_or(Duration::from_secs(5), |i| i.min(Duration::from_secs(5)));
                loop {
                    let now = Instant::now();
                    let wait = match heartbeater.tick(now) {
                        Ok(_) => heartbeater
                            .next_due(now)
                            .map_or(Duration::from_secs(3600), |d| {
                                d.saturating_duration_since(now)
                            }),
                        Err(e) => {
                            if let Ok(mut slot) = errors.lock() {
                                *slot = Some(e);
                            }
                            retry
                        }
                    };
                    match rx.recv_timeout(wait) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                heartbeater.leave()
            })?;
        Ok(HeartbeatThread {
            stop: Some(tx),
            handle: Some(handle),
            last_error,
        })
    }

    /// The most recent heartbeat failure, if any (taken: a second call
    /// returns `None` until the next failure).
    pub fn last_error(&self) -> Option<Error> {
        self.last_error.lock().ok().and_then(|mut e| e.take())
    }

    /// Stops the thread and returns the result of its `leave`.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        self.stop.take();
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::transport(
                crate::TransportErrorKind::Io,
                "the heartbeat thread panicked",
            )),
            None => Ok(()),
        }
    }
}

impl Drop for HeartbeatThread {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
