//! A scripted loopback HTTP/1.1 server for integration tests: records each
//! request target and answers with whatever the test's handler returns.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// What the handler tells the server to do with one request.
pub enum Reply {
    /// Send status and body with Content-Length, keep the connection.
    Json(u16, String),
    /// Write these raw bytes and close the connection.
    Raw(Vec<u8>),
    /// Close the connection without answering.
    Close,
    /// Sleep this long, then send the reply.
    Delay(std::time::Duration, Box<Reply>),
    /// Write these bytes one at a time with a pause between, then close.
    Trickle(Vec<u8>, std::time::Duration),
    /// A chunked 200 whose body is `chunk` repeated `times` (generated as
    /// it is sent, so the server never holds it whole), then close.
    ChunkedRepeat(Vec<u8>, usize),
    /// Never answer: keep the connection open, reading, until the client
    /// closes it (a server that stopped answering).
    Silent,
    /// Write the first bytes, then the second's bytes one at a time with a
    /// pause between, over and over, until the client goes away (a
    /// response that never ends).
    Endless(Vec<u8>, Vec<u8>, std::time::Duration),
    /// A 200 with this body, head and body written a byte at a time,
    /// `pause` apart; the connection is kept.
    TrickleJson(String, std::time::Duration),
}

type Handler = dyn Fn(&str) -> Reply + Send + Sync;

pub struct Server {
    pub origin: String,
    pub targets: Arc<Mutex<Vec<String>>>,
    pub connections: Arc<AtomicUsize>,
    /// When each request (path + query) arrived, in order.
    pub times: Arc<Mutex<Vec<(std::time::Instant, String)>>>,
    /// Replies written out whole (a test can tell that a call returned
    /// before the server answered).
    pub answered: Arc<AtomicUsize>,
}

impl Server {
    pub fn start(handler: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Server {
        Self::start_with(None, handler)
    }

    /// Request targets (path + query) seen so far.
    pub fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }

    pub fn last_target(&self) -> String {
        self.targets().pop().expect("a request was made")
    }
}

/// A connection the server reads requests from and writes answers to:
/// plain TCP or a TLS session over it.
pub trait Io: Read + Write + Send {}
impl<T: Read + Write + Send> Io for T {}

impl Server {
    /// The server over TLS with `tls` (origin `https://localhost:PORT`),
    /// or plain (`http://127.0.0.1:PORT`) without.
    pub fn start_with(
        tls: Option<Arc<rustls::ServerConfig>>,
        handler: impl Fn(&str) -> Reply + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let origin = match tls {
            Some(_) => format!("https://localhost:{port}"),
            None => format!("http://127.0.0.1:{port}"),
        };
        let log = Log {
            targets: Arc::new(Mutex::new(Vec::new())),
            times: Arc::new(Mutex::new(Vec::new())),
            answered: Arc::new(AtomicUsize::new(0)),
        };
        let connections = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let (l, c) = (log.clone(), connections.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                c.fetch_add(1, Ordering::SeqCst);
                let (l, h, tls) = (l.clone(), handler.clone(), tls.clone());
                thread::spawn(move || {
                    let io: Box<dyn Io> = match tls {
                        Some(config) => Box::new(rustls::StreamOwned::new(
                            rustls::ServerConnection::new(config).unwrap(),
                            stream,
                        )),
                        None => Box::new(stream),
                    };
                    serve(io, &l, &*h);
                });
            }
        });
        Server {
            origin,
            targets: log.targets,
            connections,
            times: log.times,
            answered: log.answered,
        }
    }

    /// When the requests whose target contains `part` arrived.
    pub fn times(&self, part: &str) -> Vec<std::time::Instant> {
        self.times
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, t)| t.contains(part))
            .map(|(at, _)| *at)
            .collect()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Replies written out whole so far.
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }

    /// Requests whose target contains `part`.
    pub fn count(&self, part: &str) -> usize {
        self.targets().iter().filter(|t| t.contains(part)).count()
    }
}

/// Waits until `done` holds, checking every 5 ms, for at most `limit`
/// (generous: it only runs out when the thing never happens). Whether it
/// held.
pub fn wait_until(limit: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + limit;
    while !done() {
        if std::time::Instant::now() > until {
            return false;
        }
        thread::sleep(std::time::Duration::from_millis(5));
    }
    true
}

/// What the server records.
#[derive(Clone)]
struct Log {
    targets: Arc<Mutex<Vec<String>>>,
    times: Arc<Mutex<Vec<(std::time::Instant, String)>>>,
    answered: Arc<AtomicUsize>,
}

fn serve(io: Box<dyn Io>, log: &Log, handler: &Handler) {
    let mut reader = BufReader::new(io);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        // Skip headers.
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
        }
        let target = line.split(' ').nth(1).unwrap_or("").to_string();
        log.targets.lock().unwrap().push(target.clone());
        log.times
            .lock()
            .unwrap()
            .push((std::time::Instant::now(), target.clone()));
        let mut reply = handler(&target);
        while let Reply::Delay(d, inner) = reply {
            thread::sleep(d);
            reply = *inner;
        }
        let out = reader.get_mut();
        let answered = || log.answered.fetch_add(1, Ordering::SeqCst);
        match reply {
            Reply::Json(status, body) => {
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: text/javascript; charset=\"UTF-8\"\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                if out.write_all(head.as_bytes()).is_err()
                    || out.write_all(body.as_bytes()).is_err()
                    || out.flush().is_err()
                {
                    return;
                }
                answered();
            }
            Reply::Raw(bytes) => {
                if out.write_all(&bytes).is_ok() && out.flush().is_ok() {
                    answered();
                }
                return;
            }
            Reply::Close => return,
            Reply::Trickle(bytes, pause) => {
                for b in bytes {
                    if out.write_all(&[b]).is_err() || out.flush().is_err() {
                        return;
                    }
                    thread::sleep(pause);
                }
                answered();
                return;
            }
            Reply::ChunkedRepeat(chunk, times) => {
                let _ = out.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                for _ in 0..times {
                    let head = format!("{:x}\r\n", chunk.len());
                    if out.write_all(head.as_bytes()).is_err()
                        || out.write_all(&chunk).is_err()
                        || out.write_all(b"\r\n").is_err()
                    {
                        return;
                    }
                }
                if out.write_all(b"0\r\n\r\n").is_ok() && out.flush().is_ok() {
                    answered();
                }
                return;
            }
            Reply::Silent => {
                let mut sink = [0u8; 1024];
                while matches!(std::io::Read::read(&mut reader, &mut sink), Ok(n) if n > 0) {}
                return;
            }
            Reply::Endless(head, unit, pause) => {
                if out.write_all(&head).is_err() {
                    return;
                }
                loop {
                    for b in &unit {
                        if out.write_all(&[*b]).is_err() || out.flush().is_err() {
                            return;
                        }
                        thread::sleep(pause);
                    }
                }
            }
            Reply::TrickleJson(body, pause) => {
                let msg = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                for b in msg.bytes() {
                    if out.write_all(&[b]).is_err() || out.flush().is_err() {
                        return;
                    }
                    thread::sleep(pause);
                }
                answered();
            }
            Reply::Delay(..) => unreachable!(),
        }
    }
}

pub fn client(origin: &str) -> pubnub_presence::PubNub {
    pubnub_presence::PubNub::builder()
        .subscribe_key("sub-key")
        .user_id("me")
        .origin(origin)
        .build()
        .unwrap()
}

pub fn ok_json(body: &str) -> Reply {
    Reply::Json(200, body.to_string())
}

/// The body of a subscribe answer with cursor `t` and no message.
pub fn empty_batch(t: u64) -> String {
    format!(r#"{{"t":{{"t":"{t}","r":1}},"m":[]}}"#)
}

/// A server that does not hold long-polls: every subscribe, the handshake
/// included, is answered at once with an empty batch at cursor `t` (so
/// every long-poll after the handshake brings nothing new at the same
/// cursor); anything else is acknowledged.
pub fn empty_batches_at_once(t: u64) -> Server {
    Server::start(move |target| {
        if target.contains("/v2/subscribe/") {
            return Reply::Json(200, empty_batch(t));
        }
        ok_json(r#"{"status":200,"message":"OK","service":"Presence"}"#)
    })
}

impl Server {
    /// Subscribe requests seen so far.
    pub fn subscribes(&self) -> usize {
        self.targets()
            .iter()
            .filter(|t| t.contains("/v2/subscribe/"))
            .count()
    }
}
