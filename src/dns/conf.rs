//! What `/etc/resolv.conf` and `/etc/hosts` say, as used here.

use super::wire::MAX_ADDRS;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Name servers used from resolv.conf (glibc's MAXNS).
const MAX_SERVERS: usize = 3;
/// Files larger than this are read only this far.
const MAX_FILE: usize = 64 * 1024;

/// What resolv.conf says, as used here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ResolvConf {
    pub(super) servers: Vec<SocketAddr>,
    pub(super) timeout: Duration,
    pub(super) attempts: usize,
    pub(super) ndots: usize,
}

/// The words of a line (separated by ASCII whitespace, as glibc reads
/// these files) before a comment (`#`, or `also`).
///
/// NOTE(size): bytes and ASCII whitespace, not `lines()`,
/// `split_whitespace()` and a char-set split (Unicode tables and three
/// more iterator types).
fn words(line: &str, also: u8) -> std::str::SplitAsciiWhitespace<'_> {
    let end = line
        .bytes()
        .position(|b| b == b'#' || b == also)
        .unwrap_or(line.len());
    line.get(..end).unwrap_or_default().split_ascii_whitespace()
}

pub(super) fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut conf = ResolvConf {
        servers: Vec::new(),
        timeout: Duration::from_secs(5),
        attempts: 2,
        ndots: 1,
    };
    for line in text.split('\n') {
        let mut words = words(line, b';');
        match words.next() {
            Some("nameserver") => {
                let Some(word) = words.next() else { continue };
                let addr = word.parse::<SocketAddr>().ok().or_else(|| {
                    word.parse::<IpAddr>()
                        .ok()
                        .map(|ip| SocketAddr::new(ip, 53))
                });
                if let Some(addr) = addr {
                    if conf.servers.len() < MAX_SERVERS {
                        conf.servers.push(addr);
                    }
                }
            }
            Some("options") => {
                for word in words {
                    let Some((key, value)) = word.split_once(':') else {
                        continue;
                    };
                    let Ok(n) = value.parse::<u64>() else {
                        continue;
                    };
                    match key {
                        "timeout" => conf.timeout = Duration::from_secs(n.clamp(1, 30)),
                        "attempts" => conf.attempts = usize::try_from(n.clamp(1, 5)).unwrap_or(2),
                        "ndots" => conf.ndots = usize::try_from(n.min(15)).unwrap_or(1),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    conf
}

/// The addresses `/etc/hosts` (its text) gives `name`, in file order.
pub(super) fn hosts_lookup(text: &str, name: &str) -> Vec<IpAddr> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let mut out = Vec::new();
    for line in text.split('\n') {
        let mut words = words(line, b'#');
        let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        if words.any(|w| w.eq_ignore_ascii_case(name)) && !out.contains(&ip) {
            out.push(ip);
        }
    }
    order(out)
}

/// IPv4 first, then alternating, at most [`MAX_ADDRS`].
///
/// NOTE(size): two cursors over the list, not `partition` + iterator
/// chains (their generic copies cost more than this loop).
pub(super) fn order(addrs: Vec<IpAddr>) -> Vec<IpAddr> {
    // The next address of the family from `at` on; `at` moves past it.
    let next = |at: &mut usize, v4: bool| {
        while let Some(a) = addrs.get(*at) {
            *at = at.saturating_add(1);
            if a.is_ipv4() == v4 {
                return Some(*a);
            }
        }
        None
    };
    let mut out = Vec::new();
    let (mut at4, mut at6) = (0, 0);
    while out.len() < MAX_ADDRS {
        match (next(&mut at4, true), next(&mut at6, false)) {
            (None, None) => break,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
    out.truncate(MAX_ADDRS);
    out
}

/// The file's first [`MAX_FILE`] bytes as text (an error when they are
/// not UTF-8).
///
/// NOTE(size): a plain read loop, not `take` + `read_to_string` (std's
/// read-to-end machinery, linked for these two small files).
pub(super) fn read_capped(path: &str) -> io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut text = Vec::new();
    let mut chunk = [0u8; 1024];
    while text.len() < MAX_FILE {
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    text.truncate(MAX_FILE);
    String::from_utf8(text).map_err(|_| io::ErrorKind::InvalidData.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_files() {
        let conf = parse_resolv_conf(
            "# comment\nnameserver 10.0.0.1\nnameserver ::1 ; x\nnameserver fe80::1%eth0\n\
             nameserver 127.0.0.1:5353\nnameserver 10.0.0.4\nsearch lan\n\
             options ndots:2 timeout:0 attempts:9 rotate\n",
        );
        assert_eq!(
            conf.servers,
            ["10.0.0.1:53", "[::1]:53", "127.0.0.1:5353"].map(|s| s.parse().unwrap())
        );
        assert_eq!(
            (conf.timeout, conf.attempts, conf.ndots),
            (Duration::from_secs(1), 5, 2)
        );
        let hosts = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n# 1.2.3.4 box\n10.0.0.9 Box box.lan\nbad line\n";
        assert_eq!(
            hosts_lookup(hosts, "LOCALHOST."),
            ["127.0.0.1", "::1"].map(|s| s.parse::<IpAddr>().unwrap())
        );
        assert_eq!(
            hosts_lookup(hosts, "box.lan"),
            vec![IpAddr::from([10, 0, 0, 9])]
        );
        assert!(hosts_lookup(hosts, "1.2.3.4").is_empty());
        assert!(hosts_lookup(hosts, "box.").len() == 1);
    }

    #[test]
    fn crlf_tabs_and_comments() {
        let conf =
            parse_resolv_conf("nameserver\t10.0.0.1\r\noptions ndots:3\r\n;nameserver 10.0.0.2");
        assert_eq!(conf.servers, ["10.0.0.1:53".parse().unwrap()]);
        assert_eq!(conf.ndots, 3);
        // In /etc/hosts only `#` starts a comment.
        let hosts = "10.0.0.9\tbox ;alias\r\n10.0.0.8 other#box\n";
        assert_eq!(
            hosts_lookup(hosts, "box"),
            vec![IpAddr::from([10, 0, 0, 9])]
        );
        assert_eq!(hosts_lookup(hosts, ";alias").len(), 1);
    }

    #[test]
    fn files_are_read_up_to_the_cap_and_must_be_utf8() {
        let dir = std::env::temp_dir();
        let path = |name: &str| {
            dir.join(format!(
                "pubnub-presence-conf-{}-{name}",
                std::process::id()
            ))
        };
        let (big, bad) = (path("big"), path("bad"));
        std::fs::write(&big, "# x\n".repeat(MAX_FILE / 2)).unwrap();
        std::fs::write(&bad, b"nameserver 10.0.0.1\n#\xff\n").unwrap();
        let text = read_capped(big.to_str().unwrap()).unwrap();
        assert_eq!(text.len(), MAX_FILE);
        let err = read_capped(bad.to_str().unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let _ = (std::fs::remove_file(big), std::fs::remove_file(bad));
        assert!(read_capped(path("missing").to_str().unwrap()).is_err());
    }

    #[test]
    fn addresses_ipv4_first_alternating() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let got = order(
            ["::1", "::2", "1.1.1.1", "::3", "2.2.2.2", "3.3.3.3"]
                .map(ip)
                .to_vec(),
        );
        assert_eq!(got, ["1.1.1.1", "::1", "2.2.2.2", "::2"].map(ip));
    }
}
