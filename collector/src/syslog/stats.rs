//! Syslog counters, per listener and per sending peer, for self-metrics.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ListenerCounts {
    pub messages: u64,
    pub bytes: u64,
    /// Messages kept raw because no syslog header parsed.
    pub fallbacks: u64,
    pub truncated: u64,
    /// UDP datagrams dropped because the write queue was full.
    pub dropped: u64,
    /// Lines the WAL refused.
    pub write_failures: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct PeerCounts {
    pub messages: u64,
    pub bytes: u64,
}

/// Counters of one listener: its totals and per sending peer, under one lock.
#[derive(Debug, Default)]
struct Listener {
    counts: ListenerCounts,
    peers: BTreeMap<IpAddr, PeerCounts>,
}

#[derive(Debug, Default)]
pub struct SyslogStats {
    listeners: Mutex<BTreeMap<String, Listener>>,
}

impl SyslogStats {
    /// Runs `f` on a listener's counters; the name is copied only the first time.
    fn with(&self, listener: &str, f: impl FnOnce(&mut Listener)) {
        let mut l = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        match l.get_mut(listener) {
            Some(c) => f(c),
            None => f(l.entry(listener.to_string()).or_default()),
        }
    }

    pub fn received(
        &self,
        listener: &str,
        peer: IpAddr,
        bytes: usize,
        fallback: bool,
        truncated: bool,
    ) {
        self.received_many(
            listener,
            peer,
            &ListenerCounts {
                messages: 1,
                bytes: bytes as u64,
                fallbacks: u64::from(fallback),
                truncated: u64::from(truncated),
                ..ListenerCounts::default()
            },
        );
    }

    /// Counts a batch of messages from one peer under one lock.
    pub fn received_many(&self, listener: &str, peer: IpAddr, n: &ListenerCounts) {
        self.with(listener, |l| {
            let c = &mut l.counts;
            c.messages += n.messages;
            c.bytes += n.bytes;
            c.fallbacks += n.fallbacks;
            c.truncated += n.truncated;
            let p = l.peers.entry(peer).or_default();
            p.messages += n.messages;
            p.bytes += n.bytes;
        });
    }

    pub fn dropped(&self, listener: &str) {
        self.with(listener, |l| l.counts.dropped += 1);
    }

    pub fn write_failed(&self, listener: &str, lines: usize) {
        self.with(listener, |l| l.counts.write_failures += lines as u64);
    }

    pub fn listeners(&self) -> BTreeMap<String, ListenerCounts> {
        let l = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        l.iter().map(|(k, v)| (k.clone(), v.counts)).collect()
    }

    /// Per (listener, peer) counters.
    pub fn peers(&self) -> BTreeMap<(String, IpAddr), PeerCounts> {
        let l = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        l.iter()
            .flat_map(|(k, v)| v.peers.iter().map(move |(ip, c)| ((k.clone(), *ip), *c)))
            .collect()
    }
}

/// The kernel's count of UDP datagrams dropped for a full receive buffer
/// (`RcvbufErrors` in /proc/net/snmp), host-wide.
pub fn udp_receive_buffer_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names = udp.next()?;
    let values = udp.next()?;
    let i = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(i)?.parse().ok()
}
