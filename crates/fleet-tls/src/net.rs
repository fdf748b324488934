//! Mutual-TLS connections over TCP: an accept stream for a gRPC server, and a dialer.
//!
//! [`TlsIncoming`] accepts TCP connections and runs each TLS handshake in its own task,
//! bounded in time, so a slow or hostile client never holds up the others. Accepting never
//! waits for a free handshake slot: a new connection is always taken, and when handshakes
//! in flight are over a limit (per source address, or in all) the oldest half-open one of
//! the busiest source is dropped ("shed") to make room ([`Slots`]). A flood of half-open
//! connections therefore costs an honest client at most its own handshake, even from the
//! flood's own address, since the newest connection is the last to be shed.
//!
//! Every refused handshake is counted by reason ([`Refusals`], shown in `Mesh.NodeInfo`);
//! the log gets the first refusal of a burst at once and then at most one summary line per
//! [`SUMMARY_EVERY`] ([`RefusalLog`]), so a flood of garbage cannot flood the log.
//!
//! Only completed handshakes come out of the stream, as `tokio_rustls` server streams. With
//! tonic's `tls-ring` feature (ring only; not `tls-aws-lc`), tonic implements `Connected`
//! for them, so a handler reads `Request::peer_certs()` and `Request::remote_addr()` (tonic
//! 0.14 exports `TlsConnectInfo` only with a `tls-*` feature, not with `tls-connect-info`
//! alone). The server config is read from a `watch` channel at each handshake, so sending a
//! new config rotates certificates without a restart.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};
use tokio_stream::Stream;

/// Longest a TLS handshake may take before the connection is dropped. An honest handshake
/// takes a few round trips (milliseconds on a LAN, well under a second across the world).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most handshakes in flight at once, from all sources (see [`Limits::for_fd_limit`]).
pub const MAX_HANDSHAKES: usize = 1024;
/// Most handshakes in flight at once from one source address.
pub const MAX_HANDSHAKES_PER_SOURCE: usize = 128;
/// At most one summary line of refused handshakes per this period.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// Bounds on handshakes in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub timeout: Duration,
    pub max_in_flight: usize,
    pub per_source: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { timeout: HANDSHAKE_TIMEOUT, max_in_flight: MAX_HANDSHAKES, per_source: MAX_HANDSHAKES_PER_SOURCE }
    }
}

impl Limits {
    /// The defaults, with the global cap lowered to a quarter of the process's file
    /// descriptor limit, so half-open handshakes can never take the descriptors that the
    /// node's established connections, files and sockets need.
    pub fn for_fd_limit(nofile: u64) -> Limits {
        let d = Limits::default();
        let cap = usize::try_from(nofile / 4).unwrap_or(usize::MAX).clamp(16, d.max_in_flight);
        Limits { max_in_flight: cap, per_source: d.per_source.min(cap), ..d }
    }
}

/// Why a handshake was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Not TLS, a protocol error, or the client went away mid-handshake.
    Failed,
    /// No complete handshake within the timeout.
    TimedOut,
    /// Dropped to make room: over the per-source or the global limit on handshakes in flight.
    Shed,
    /// The client presented no certificate.
    NoClientCert,
    /// The client's certificate does not chain to the mesh CA, is expired or revoked.
    BadClientCert,
}

impl Refusal {
    pub const ALL: [Refusal; 5] =
        [Refusal::Failed, Refusal::TimedOut, Refusal::Shed, Refusal::NoClientCert, Refusal::BadClientCert];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Failed => "failed",
            Refusal::TimedOut => "timed_out",
            Refusal::Shed => "shed",
            Refusal::NoClientCert => "no_client_cert",
            Refusal::BadClientCert => "bad_client_cert",
        }
    }

    /// The reason of a failed `accept`: rustls' certificate errors are told apart, the rest
    /// is a failed handshake.
    pub fn of(e: &io::Error) -> Refusal {
        match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            Some(rustls::Error::NoCertificatesPresented) => Refusal::NoClientCert,
            Some(rustls::Error::InvalidCertificate(_)) => Refusal::BadClientCert,
            _ => Refusal::Failed,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Refused handshakes since start, by reason.
#[derive(Debug, Default)]
pub struct Refusals([AtomicU64; 5]);

impl Refusals {
    pub fn count(&self, reason: Refusal) -> u64 {
        self.0[reason.index()].load(Ordering::Relaxed)
    }

    fn add(&self, reason: Refusal) {
        self.0[reason.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// What the log says about refusals: the first of a burst at once, the rest as one summary
/// line per [`SUMMARY_EVERY`] (sans I/O: the caller passes the time and writes the lines).
#[derive(Debug)]
pub struct RefusalLog {
    every: Duration,
    /// When the last line (first-of-burst or summary) was written.
    last_line: Option<Instant>,
    window: [u64; 5],
    sources: HashMap<IpAddr, u64>,
}

/// One summary line's content.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    pub total: u64,
    /// Non-zero counts, in [`Refusal::ALL`] order.
    pub by_reason: Vec<(Refusal, u64)>,
    /// The source with the most refusals, and its count.
    pub top_source: (IpAddr, u64),
}

impl Summary {
    pub fn reasons(&self) -> String {
        self.by_reason.iter().map(|(r, n)| format!("{}={n}", r.as_str())).collect::<Vec<_>>().join(" ")
    }
}

/// At most this many distinct sources are tracked per summary window.
const MAX_SOURCES: usize = 4096;

impl RefusalLog {
    pub fn new(every: Duration) -> RefusalLog {
        RefusalLog { every, last_line: None, window: [0; 5], sources: HashMap::new() }
    }

    /// Count a refusal; true when it is the first of a burst and should be logged now.
    pub fn note(&mut self, reason: Refusal, source: IpAddr, now: Instant) -> bool {
        let quiet = self.last_line.is_none_or(|t| now.duration_since(t) >= self.every);
        if quiet && self.window.iter().all(|&n| n == 0) {
            self.last_line = Some(now);
            return true;
        }
        self.window[reason.index()] += 1;
        if self.sources.len() < MAX_SOURCES || self.sources.contains_key(&source) {
            *self.sources.entry(source).or_default() += 1;
        }
        false
    }

    /// The summary of the refusals counted since the last line, once [`SUMMARY_EVERY`] has
    /// passed since that line; None when there is nothing to say yet.
    pub fn flush(&mut self, now: Instant) -> Option<Summary> {
        let total: u64 = self.window.iter().sum();
        if total == 0 || self.last_line.is_some_and(|t| now.duration_since(t) < self.every) {
            return None;
        }
        let by_reason = Refusal::ALL.iter().map(|&r| (r, self.window[r.index()])).filter(|&(_, n)| n > 0).collect();
        let top_source = self
            .sources
            .iter()
            .max_by_key(|&(ip, n)| (*n, std::cmp::Reverse(*ip)))
            .map(|(ip, n)| (*ip, *n))
            .unwrap_or((IpAddr::from([0, 0, 0, 0]), 0));
        self.window = [0; 5];
        self.sources.clear();
        self.last_line = Some(now);
        Some(Summary { total, by_reason, top_source })
    }
}

/// Handshakes in flight, oldest first, by source (sans I/O). `T` is whatever stops one
/// (the accept loop keeps a oneshot sender).
#[derive(Debug)]
pub struct Slots<T> {
    limits: Limits,
    next: u64,
    open: BTreeMap<u64, (IpAddr, T)>,
    per_source: HashMap<IpAddr, usize>,
}

impl<T> Slots<T> {
    pub fn new(limits: Limits) -> Slots<T> {
        Slots { limits, next: 0, open: BTreeMap::new(), per_source: HashMap::new() }
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Take a slot for a new handshake from `source`: its id, and the handshake to shed
    /// to make room (its stopper), if a limit was reached.
    pub fn admit(&mut self, source: IpAddr, stop: T) -> (u64, Option<T>) {
        let shed = if self.per_source.get(&source).copied().unwrap_or(0) >= self.limits.per_source {
            self.shed_oldest_of(Some(source))
        } else if self.open.len() >= self.limits.max_in_flight {
            self.shed_oldest_of(None)
        } else {
            None
        };
        let id = self.next;
        self.next += 1;
        self.open.insert(id, (source, stop));
        *self.per_source.entry(source).or_default() += 1;
        (id, shed)
    }

    /// A handshake ended (done, failed or shed): free its slot.
    pub fn remove(&mut self, id: u64) -> Option<T> {
        let (source, stop) = self.open.remove(&id)?;
        if let Some(n) = self.per_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
        Some(stop)
    }

    /// Remove the oldest handshake of `source`, or without a source, of the source with
    /// the most handshakes in flight (a flood, rather than its victims).
    pub fn shed_oldest_of(&mut self, source: Option<IpAddr>) -> Option<T> {
        let source = match source {
            Some(s) => s,
            None => *self.per_source.iter().max_by_key(|&(ip, n)| (*n, std::cmp::Reverse(*ip)))?.0,
        };
        let id = self.open.iter().find(|(_, (ip, _))| *ip == source).map(|(id, _)| *id)?;
        self.remove(id)
    }
}

struct Shared {
    slots: Mutex<Slots<oneshot::Sender<()>>>,
    refusals: Arc<Refusals>,
    log: Mutex<RefusalLog>,
}

impl Shared {
    fn refused(&self, reason: Refusal, peer: SocketAddr, error: Option<&io::Error>) {
        self.refusals.add(reason);
        let first = self.log.lock().expect("refusal log").note(reason, peer.ip(), Instant::now());
        if first {
            match error {
                Some(e) => tracing::info!(%peer, reason = reason.as_str(), error = %e,
                    "TLS handshake refused (further refusals are summed up once a minute)"),
                None => tracing::info!(%peer, reason = reason.as_str(),
                    "TLS handshake refused (further refusals are summed up once a minute)"),
            }
        }
    }

    fn summarize(&self) {
        let summary = self.log.lock().expect("refusal log").flush(Instant::now());
        if let Some(s) = summary {
            tracing::info!(
                refused = s.total,
                by_reason = %s.reasons(),
                top_source = %s.top_source.0,
                top_source_refused = s.top_source.1,
                "refused {} more TLS handshakes in the last {} s",
                s.total,
                SUMMARY_EVERY.as_secs()
            );
        }
    }
}

/// A stream of accepted mutual-TLS connections, for `tonic`'s `serve_with_incoming`.
/// Dropping it stops accepting.
pub struct TlsIncoming {
    rx: mpsc::Receiver<io::Result<server::TlsStream<TcpStream>>>,
    task: JoinHandle<()>,
    local_addr: SocketAddr,
    refusals: Arc<Refusals>,
}

impl TlsIncoming {
    /// Accept on `listener`, handshaking with the config current in `config` at each accept,
    /// within the default [`Limits`]. Must be called within a tokio runtime.
    pub fn new(listener: TcpListener, config: watch::Receiver<Arc<ServerConfig>>) -> io::Result<TlsIncoming> {
        TlsIncoming::with_limits(listener, config, Limits::default())
    }

    /// [`TlsIncoming::new`] with explicit limits.
    pub fn with_limits(
        listener: TcpListener,
        config: watch::Receiver<Arc<ServerConfig>>,
        limits: Limits,
    ) -> io::Result<TlsIncoming> {
        let local_addr = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let refusals = Arc::new(Refusals::default());
        let shared = Arc::new(Shared {
            slots: Mutex::new(Slots::new(limits)),
            refusals: refusals.clone(),
            log: Mutex::new(RefusalLog::new(SUMMARY_EVERY)),
        });
        let task = tokio::spawn(accept_loop(listener, config, tx, shared, limits.timeout));
        Ok(TlsIncoming { rx, task, local_addr, refusals })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The refusal counters, shared with the accept loop.
    pub fn refusals(&self) -> Arc<Refusals> {
        self.refusals.clone()
    }
}

impl Drop for TlsIncoming {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stream for TlsIncoming {
    type Item = io::Result<server::TlsStream<TcpStream>>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

async fn accept_loop(
    listener: TcpListener,
    config: watch::Receiver<Arc<ServerConfig>>,
    tx: mpsc::Sender<io::Result<server::TlsStream<TcpStream>>>,
    shared: Arc<Shared>,
    timeout: Duration,
) {
    // Checked often, said at most once per SUMMARY_EVERY (RefusalLog::flush decides).
    let mut summary = tokio::time::interval(SUMMARY_EVERY / 12);
    summary.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            () = tx.closed() => return,
            _ = summary.tick() => {
                shared.summarize();
                continue;
            }
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: free one by shedding the oldest
                // half-open handshake of the busiest source, or back off instead of spinning.
                let shed = shared.slots.lock().expect("slots").shed_oldest_of(None);
                let pause = if shed.is_some() { 5 } else { 100 };
                tracing::warn!(error = %e, shed_one = shed.is_some(), "accept failed");
                drop(shed);
                tokio::time::sleep(Duration::from_millis(pause)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (stop, stopped) = oneshot::channel();
        let (id, shed) = shared.slots.lock().expect("slots").admit(peer.ip(), stop);
        // Dropping the sender stops that handshake; its task counts the refusal.
        drop(shed);
        let acceptor = TlsAcceptor::from(config.borrow().clone());
        let (tx, shared) = (tx.clone(), shared.clone());
        // Per-connection task: bounded by the handshake timeout and by shedding.
        tokio::spawn(async move {
            let outcome = tokio::select! {
                r = tokio::time::timeout(timeout, acceptor.accept(tcp)) => Some(r),
                _ = stopped => None,
            };
            shared.slots.lock().expect("slots").remove(id);
            match outcome {
                Some(Ok(Ok(tls))) => {
                    let _ = tx.send(Ok(tls)).await;
                }
                Some(Ok(Err(e))) => shared.refused(Refusal::of(&e), peer, Some(&e)),
                Some(Err(_)) => shared.refused(Refusal::TimedOut, peer, None),
                None => shared.refused(Refusal::Shed, peer, None),
            }
        });
    }
}

/// Dial `addr` and complete a TLS handshake that verifies the server as `server_name`
/// (see [`crate::config::node_server_name`]).
pub async fn connect(
    addr: SocketAddr,
    server_name: ServerName<'static>,
    config: Arc<ClientConfig>,
) -> io::Result<client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    TlsConnector::from(config).connect(server_name, tcp).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn a_source_over_its_limit_sheds_its_own_oldest() {
        let mut s = Slots::new(Limits { timeout: HANDSHAKE_TIMEOUT, max_in_flight: 100, per_source: 3 });
        for n in 0..3 {
            assert_eq!(s.admit(ip(2), n), (n as u64, None));
        }
        let (_, first) = s.admit(ip(1), 10);
        assert_eq!(first, None);
        // A fourth from .2 sheds .2's oldest, never .1's.
        assert_eq!(s.admit(ip(2), 3).1, Some(0));
        assert_eq!(s.admit(ip(2), 4).1, Some(1));
        assert_eq!(s.len(), 4);
        // The newest of a source survives its own flood: it is the last to go.
        assert_eq!(s.remove(5), Some(4));
        assert_eq!(s.remove(5), None);
    }

    #[test]
    fn the_global_limit_sheds_the_oldest_of_the_busiest_source() {
        let mut s = Slots::new(Limits { timeout: HANDSHAKE_TIMEOUT, max_in_flight: 4, per_source: 4 });
        s.admit(ip(9), "honest");
        s.admit(ip(2), "a");
        s.admit(ip(2), "b");
        s.admit(ip(3), "c");
        assert_eq!(s.admit(ip(2), "d").1, Some("a"));
        assert_eq!(s.admit(ip(4), "e").1, Some("b"));
        // The honest source, with one handshake in flight, was never the one shed.
        assert_eq!(s.len(), 4);
        assert!(s.open.values().any(|(_, t)| *t == "honest"));
        assert_eq!(s.shed_oldest_of(Some(ip(7))), None);
    }

    #[test]
    fn for_fd_limit_keeps_a_margin() {
        assert_eq!(Limits::for_fd_limit(1024).max_in_flight, 256);
        assert_eq!(Limits::for_fd_limit(1024).per_source, 128);
        assert_eq!(Limits::for_fd_limit(20_000).max_in_flight, MAX_HANDSHAKES);
        assert_eq!(Limits::for_fd_limit(8).max_in_flight, 16);
        assert_eq!(Limits::for_fd_limit(8).per_source, 16);
    }

    #[test]
    fn the_log_says_the_first_of_a_burst_then_one_summary_per_period() {
        let every = Duration::from_secs(60);
        let mut log = RefusalLog::new(every);
        let t0 = Instant::now();
        assert!(log.note(Refusal::Failed, ip(2), t0), "the first is logged at once");
        for n in 0..1000u64 {
            let source = if n % 10 == 0 { ip(3) } else { ip(2) };
            let reason = if n % 2 == 0 { Refusal::Failed } else { Refusal::TimedOut };
            assert!(!log.note(reason, source, t0 + Duration::from_millis(n)));
        }
        assert_eq!(log.flush(t0 + Duration::from_secs(30)), None, "not before the period");
        let s = log.flush(t0 + every).expect("a summary after the period");
        assert_eq!(s.total, 1000);
        assert_eq!(s.by_reason, vec![(Refusal::Failed, 500), (Refusal::TimedOut, 500)]);
        assert_eq!(s.top_source, (ip(2), 900));
        assert_eq!(s.reasons(), "failed=500 timed_out=500");
        assert_eq!(log.flush(t0 + every * 3), None, "nothing new, nothing said");
        // Quiet for a period after the last line: the next refusal is a new burst.
        assert!(log.note(Refusal::Shed, ip(4), t0 + every * 3));
        assert!(!log.note(Refusal::Shed, ip(4), t0 + every * 3));
        assert_eq!(log.flush(t0 + every * 4).map(|s| s.total), Some(1));
    }
}
