//! What `/etc/resolv.conf` and `/etc/hosts` say, as used here.

use super::wire::MAX_ADDRS;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Name servers used from resolv.conf (glibc's MAXNS).
const MAX_SERVERS: usize = 3;
/// Files larger than this are read only this far.
const MAX_FILE: u64 = 64 * 1024;

/// What resolv.conf says, as used here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ResolvConf {
    pub(super) servers: Vec<SocketAddr>,
    pub(super) timeout: Duration,
    pub(super) attempts: usize,
    pub(super) ndots: usize,
}

pub(super) fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut conf = ResolvConf {
        servers: Vec::new(),
        timeout: Duration::from_secs(5),
        attempts: 2,
        ndots: 1,
    };
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
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
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
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
pub(super) fn order(addrs: Vec<IpAddr>) -> Vec<IpAddr> {
    let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = addrs.into_iter().partition(IpAddr::is_ipv4);
    let mut out = Vec::new();
    let (mut a, mut b) = (v4.into_iter(), v6.into_iter());
    while out.len() < MAX_ADDRS {
        match (a.next(), b.next()) {
            (None, None) => break,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
    out.truncate(MAX_ADDRS);
    out
}

pub(super) fn read_capped(path: &str) -> io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_FILE)
        .read_to_string(&mut text)?;
    Ok(text)
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
