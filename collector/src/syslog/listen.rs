//! Syslog listeners: UDP, TCP and TLS (RFC 5425). TCP and TLS connections
//! read, frame and parse, then wait until the batch is durable in the WAL
//! before reading again: when storage falls behind, the kernel's receive
//! window fills and the sender slows down instead of losing lines. UDP
//! cannot wait: a datagram that finds the queue full is dropped and counted.

use super::framing::Framer;
use super::parse::{parse, parse_with, Parsed};
use super::stats::{ListenerCounts, SyslogStats};
use crate::config::{SyslogConfig, SyslogListener, SyslogProtocol};
use crate::logs::LogRecord;
use crate::store::loghead::LogHead;
use crate::store::logs::LogStore;
use crate::store::wal::WalError;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Lines queued between the UDP readers and the writer; beyond, drops.
const UDP_QUEUE: usize = 65_536;
/// Most bytes read from a stream before its frames are parsed and stored:
/// under load a read takes what the socket holds, and larger batches share
/// an fsync (1 MiB read 5–10 % faster than 256 KiB, harness runs).
const READ_CHUNK: usize = 1 << 20;
/// Room a quiet connection keeps for its next read; a busy one's doubles
/// with each full read, up to `READ_CHUNK`.
const QUIET_ROOM: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("syslog {protocol} listener on {address}: {msg}")]
    Bind {
        protocol: &'static str,
        address: String,
        msg: String,
    },
    #[error("syslog TLS: {0}")]
    Tls(String),
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Binds every configured listener on the current tokio runtime and serves
/// them until the runtime stops. Returns the bound addresses, in order.
pub async fn start(
    config: &SyslogConfig,
    store: Arc<LogStore>,
    stats: Arc<SyslogStats>,
) -> Result<Vec<SocketAddr>, ListenError> {
    let tz = config.timezone;
    let max = config.max_message_size;
    let mut bound = Vec::new();
    for l in &config.listeners {
        let name = l.name();
        let addr = match l.protocol {
            SyslogProtocol::Udp => {
                let socket = bind_udp(&l.address).await?;
                let addr = local(&socket.local_addr(), l)?;
                let (tx, rx) = tokio::sync::mpsc::channel::<LogRecord>(UDP_QUEUE);
                let (s, st) = (store.clone(), stats.clone());
                let listener = name.clone();
                std::thread::Builder::new()
                    .name(format!("syslog writer {name}"))
                    .spawn(move || udp_writer(rx, &s, &st, &listener))
                    .map_err(|e| bind_err(l, e.to_string()))?;
                tokio::spawn(udp_reader(socket, tx, stats.clone(), name, tz, max));
                addr
            }
            SyslogProtocol::Tcp | SyslogProtocol::Tls => {
                let acceptor = match (&l.protocol, &l.tls) {
                    (SyslogProtocol::Tls, Some(tls)) => Some(tls_acceptor(tls)?),
                    (SyslogProtocol::Tls, None) => {
                        return Err(ListenError::Tls(format!(
                            "listener {name} needs a tls: section"
                        )))
                    }
                    _ => None,
                };
                let listener = tokio::net::TcpListener::bind(&l.address)
                    .await
                    .map_err(|e| bind_err(l, e.to_string()))?;
                let addr = local(&listener.local_addr(), l)?;
                tokio::spawn(accept_loop(
                    listener,
                    acceptor,
                    store.clone(),
                    stats.clone(),
                    name,
                    tz,
                    max,
                ));
                addr
            }
        };
        tracing::info!(protocol = l.protocol.as_str(), address = %addr, "syslog listener started");
        bound.push(addr);
    }
    Ok(bound)
}

fn bind_err(l: &SyslogListener, msg: String) -> ListenError {
    ListenError::Bind {
        protocol: l.protocol.as_str(),
        address: l.address.clone(),
        msg,
    }
}

fn local(r: &std::io::Result<SocketAddr>, l: &SyslogListener) -> Result<SocketAddr, ListenError> {
    r.as_ref()
        .map(|a| *a)
        .map_err(|e| bind_err(l, e.to_string()))
}

/// A UDP socket with the largest receive buffer the kernel allows, so
/// bursts wait in the kernel rather than being dropped.
async fn bind_udp(address: &str) -> Result<tokio::net::UdpSocket, ListenError> {
    let err = |msg: String| ListenError::Bind {
        protocol: "udp",
        address: address.to_string(),
        msg,
    };
    let std_socket = std::net::UdpSocket::bind(address).map_err(|e| err(e.to_string()))?;
    set_receive_buffer(&std_socket, 8 << 20);
    std_socket
        .set_nonblocking(true)
        .map_err(|e| err(e.to_string()))?;
    tokio::net::UdpSocket::from_std(std_socket).map_err(|e| err(e.to_string()))
}

fn set_receive_buffer(socket: &std::net::UdpSocket, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt on a socket we own, with a correctly sized int.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::warn!("could not raise the UDP receive buffer");
    }
}

async fn udp_reader(
    socket: tokio::net::UdpSocket,
    tx: tokio::sync::mpsc::Sender<LogRecord>,
    stats: Arc<SyslogStats>,
    listener: String,
    tz: chrono_tz::Tz,
    max: usize,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "UDP receive failed");
                continue;
            }
        };
        let truncated = n > max;
        let data = &buf[..n.min(max)];
        let peer_url = format!("udp://{peer}");
        let (record, how) = parse(data, &peer_url, now_ns(), tz);
        stats.received(&listener, peer.ip(), n, how == Parsed::Fallback, truncated);
        if tx.try_send(record).is_err() {
            stats.dropped(&listener);
        }
    }
}

/// Drains the UDP queue into the store in batches (sharing fsyncs).
fn udp_writer(
    mut rx: tokio::sync::mpsc::Receiver<LogRecord>,
    store: &LogStore,
    stats: &SyslogStats,
    listener: &str,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < 8192 {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let n = batch.len();
        if let Err(e) = store.append(batch) {
            tracing::error!(error = %e, lines = n, "writing syslog lines to the WAL failed; lines lost");
            stats.write_failed(listener, n);
        }
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    store: Arc<LogStore>,
    stats: Arc<SyslogStats>,
    name: String,
    tz: chrono_tz::Tz,
    max: usize,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a syslog connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let (store, stats, name, tls) = (store.clone(), stats.clone(), name.clone(), tls.clone());
        tokio::spawn(async move {
            let result = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(s) => serve_stream(s, "tls", peer, &store, &stats, &name, tz, max).await,
                    Err(e) => Err(format!("TLS handshake: {e}")),
                },
                None => serve_stream(stream, "tcp", peer, &store, &stats, &name, tz, max).await,
            };
            if let Err(e) = result {
                tracing::warn!(peer = %peer, error = %e, "syslog connection ended");
            }
        });
    }
}

/// Reads one connection to its end. Each read's lines are appended while the
/// next read is parsed, and that one waits for them to be durable: at most
/// one batch is in flight, so a slow WAL still stops the reading.
#[allow(clippy::too_many_arguments)]
async fn serve_stream<S: AsyncRead + Unpin>(
    mut stream: S,
    scheme: &str,
    peer: SocketAddr,
    store: &Arc<LogStore>,
    stats: &SyslogStats,
    listener: &str,
    tz: chrono_tz::Tz,
    max: usize,
) -> Result<(), String> {
    let peer_url = format!("{scheme}://{peer}");
    let mut framer = Framer::new(max);
    let mut buf: Vec<u8> = Vec::with_capacity(QUIET_ROOM);
    let mut room = QUIET_ROOM;
    // Two batches take turns: one is filled while the other is appended.
    let mut spare = LogHead::default();
    let mut in_flight: Option<(Appending, usize)> = None;
    loop {
        buf.reserve(room);
        let n = stream.read_buf(&mut buf).await.map_err(|e| e.to_string())?;
        let eof = n == 0;
        room = if n >= room {
            (room * 2).min(READ_CHUNK)
        } else if n < QUIET_ROOM {
            // Idle senders should not hold a busy one's buffer.
            buf.shrink_to(QUIET_ROOM);
            QUIET_ROOM
        } else {
            room
        };
        let received = now_ns();
        let mut counts = ListenerCounts::default();
        let mut batch = std::mem::take(&mut spare);
        framer.decode_each(&mut buf, eof, |frame, truncated| {
            let how = parse_with(frame, &peer_url, received, tz, |line| batch.push_line(line));
            counts.messages += 1;
            counts.bytes += frame.len() as u64;
            counts.fallbacks += u64::from(how == Parsed::Fallback);
            counts.truncated += u64::from(truncated);
        });
        if counts.messages > 0 {
            stats.received_many(listener, peer.ip(), &counts);
        }
        if let Some((append, n)) = in_flight.take() {
            spare = wait_durable(append, n, stats, listener).await?;
        }
        if !batch.is_empty() {
            let store = store.clone();
            let n = batch.len();
            in_flight = Some((
                tokio::task::spawn_blocking(move || {
                    let result = store.append_batch(&batch);
                    batch.clear();
                    (result, batch)
                }),
                n,
            ));
        }
        if eof {
            if let Some((append, n)) = in_flight.take() {
                wait_durable(append, n, stats, listener).await?;
            }
            return Ok(());
        }
    }
}

/// A batch being appended; it comes back emptied, for reuse.
type Appending = tokio::task::JoinHandle<(Result<(), WalError>, LogHead)>;

async fn wait_durable(
    append: Appending,
    n: usize,
    stats: &SyslogStats,
    listener: &str,
) -> Result<LogHead, String> {
    match append.await.map_err(|e| e.to_string())? {
        (Ok(()), batch) => Ok(batch),
        (Err(e), _) => {
            stats.write_failed(listener, n);
            Err(format!(
                "WAL write failed, closing so the sender retries: {e}"
            ))
        }
    }
}

fn tls_acceptor(tls: &crate::config::SyslogTls) -> Result<tokio_rustls::TlsAcceptor, ListenError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| ListenError::Tls(format!("{}: {e}", p.display())))
    };
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut read(&tls.cert_file)?.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| ListenError::Tls(format!("{}: {e}", tls.cert_file.display())))?;
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut read(&tls.key_file)?.as_slice())
            .map_err(|e| ListenError::Tls(format!("{}: {e}", tls.key_file.display())))?
            .ok_or_else(|| {
                ListenError::Tls(format!("{}: no private key", tls.key_file.display()))
            })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ListenError::Tls(e.to_string()))?;
    let builder = match &tls.client_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut read(ca)?.as_slice()) {
                let c = c.map_err(|e| ListenError::Tls(format!("{}: {e}", ca.display())))?;
                roots
                    .add(c)
                    .map_err(|e| ListenError::Tls(format!("{}: {e}", ca.display())))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::new(rustls::crypto::ring::default_provider()),
            )
            .build()
            .map_err(|e| ListenError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| ListenError::Tls(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
