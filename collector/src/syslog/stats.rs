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

#[derive(Debug, Default)]
pub struct SyslogStats {
    listeners: Mutex<BTreeMap<String, ListenerCounts>>,
    peers: Mutex<BTreeMap<(String, IpAddr), PeerCounts>>,
}

impl SyslogStats {
    pub fn received(
        &self,
        listener: &str,
        peer: IpAddr,
        bytes: usize,
        fallback: bool,
        truncated: bool,
    ) {
        {
            let mut l = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
            let c = l.entry(listener.to_string()).or_default();
            c.messages += 1;
            c.bytes += bytes as u64;
            c.fallbacks += u64::from(fallback);
            c.truncated += u64::from(truncated);
        }
        let mut p = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let c = p.entry((listener.to_string(), peer)).or_default();
        c.messages += 1;
        c.bytes += bytes as u64;
    }

    pub fn dropped(&self, listener: &str) {
        let mut l = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        l.entry(listener.to_string()).or_default().dropped += 1;
    }

    pub fn write_failed(&self, listener: &str, lines: usize) {
        let mut l = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        l.entry(listener.to_string()).or_default().write_failures += lines as u64;
    }

    pub fn listeners(&self) -> BTreeMap<String, ListenerCounts> {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn peers(&self) -> BTreeMap<(String, IpAddr), PeerCounts> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).clone()
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
