//! Mutual-TLS connections over TCP: an accept stream for a gRPC server, and a dialer.
//!
//! [`TlsIncoming`] accepts TCP connections and runs each TLS handshake in its own task,
//! bounded in time, so a slow or hostile client never holds up the others. Accepting never
//! waits for a free handshake slot: a new connection is always taken, and when handshakes
//! in flight are over a limit (per [`Source`], an IPv4 address or an IPv6 /64, or in all) one
//! half-open handshake is dropped ("shed") to make room ([`to_shed`], [`Slots`]): the oldest of
//! that source, or for the global limit the oldest of the busiest source, the oldest of all
//! when no source has more than the others. A flood of half-open connections therefore costs
//! an honest client at most its own handshake, even from the flood's own address or from
//! a thousand addresses, since the newest connection is the last to be shed.
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

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
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
/// Most handshakes in flight at once from one [`Source`].
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
    sources: HashMap<Source, u64>,
}

/// One summary line's content.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    pub total: u64,
    /// Non-zero counts, in [`Refusal::ALL`] order.
    pub by_reason: Vec<(Refusal, u64)>,
    /// The source with the most refusals, and its count.
    pub top_source: (Source, u64),
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
        let source = Source::of(source);
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
            .max_by_key(|&(ip, n)| (*n, Reverse(*ip)))
            .map(|(ip, n)| (*ip, *n))
            .unwrap_or((Source::of(IpAddr::from([0, 0, 0, 0])), 0));
        self.window = [0; 5];
        self.sources.clear();
        self.last_line = Some(now);
        Some(Summary { total, by_reason, top_source })
    }
}

/// What the handshake limits count as one source: an IPv4 address, or an IPv6 /64 (a host
/// or a LAN is given a whole /64, so one client may use as many addresses in it as it likes).
/// An IPv4-mapped IPv6 address (a dual-stack listener's IPv4 peer) is its IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V6(v6) => Source(IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::from(u64::MAX))))),
            v4 => Source(v4),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// Per source: how many handshakes are in flight, and the oldest of them (start, key).
type Tally<K> = HashMap<Source, (usize, (Instant, K))>;

/// All handshakes in flight, and the [`Tally`] of them.
fn tally<K: Copy + Ord>(in_flight: impl IntoIterator<Item = (K, IpAddr, Instant)>) -> (usize, Tally<K>) {
    let mut total = 0;
    let mut by_source: Tally<K> = HashMap::new();
    for (key, ip, start) in in_flight {
        total += 1;
        let e = by_source.entry(Source::of(ip)).or_insert((0, (start, key)));
        e.0 += 1;
        e.1 = e.1.min((start, key));
    }
    (total, by_source)
}

/// The oldest handshake of the busiest source; between sources with as many (every source
/// with one, when a flood comes from as many addresses), the oldest of them all.
fn busiest_oldest<K: Copy + Ord>(by_source: &Tally<K>) -> Option<K> {
    by_source.values().max_by_key(|&&(n, oldest)| (n, std::cmp::Reverse(oldest))).map(|&(_, (_, key))| key)
}

/// Which handshake in flight to shed so that a new one from `incoming` fits within `limits`;
/// None when it fits as it is. `in_flight`: each handshake's key, peer address and start, in
/// any order; the older of two is the one with the earlier start, on equal starts the
/// smaller key. If `incoming`'s [`Source`] is at its limit, the oldest of that source; else,
/// at the global limit, the oldest of the busiest source, or of all when no source has more
/// than the others ([`flood_victim`]). So the newest handshake is never shed while an older
/// one of a source as busy is in flight, whatever the addresses. ([`Slots`] decides the same
/// from an index, without a pass over all in flight.)
pub fn to_shed<K: Copy + Ord>(
    limits: &Limits,
    in_flight: impl IntoIterator<Item = (K, IpAddr, Instant)>,
    incoming: IpAddr,
) -> Option<K> {
    let (total, by_source) = tally(in_flight);
    match by_source.get(&Source::of(incoming)) {
        Some(&(n, (_, oldest))) if n >= limits.per_source => Some(oldest),
        _ if total >= limits.max_in_flight => busiest_oldest(&by_source),
        _ => None,
    }
}

/// Which handshake in flight to shed when room is needed whatever the limits (out of file
/// descriptors): the oldest of the busiest source, or of all when no source is busier.
pub fn flood_victim<K: Copy + Ord>(in_flight: impl IntoIterator<Item = (K, IpAddr, Instant)>) -> Option<K> {
    busiest_oldest(&tally(in_flight).1)
}

/// A handshake's age: its start, then its id (ids grow): the smaller, the older.
type Age = (Instant, u64);

/// Handshakes in flight (sans I/O), with the choices of [`to_shed`] and [`flood_victim`]
/// kept ready in an index, so that a decision at the cap costs O(log n), not a pass over
/// every handshake (121 µs per accept with 1,024 sources, measured in release). `T` is
/// whatever stops one (the accept loop keeps a oneshot sender).
#[derive(Debug)]
pub struct Slots<T> {
    limits: Limits,
    next: u64,
    open: BTreeMap<u64, (IpAddr, Instant, T)>,
    /// Per source, its handshakes in flight by age.
    by_source: HashMap<Source, BTreeSet<Age>>,
    /// Every source with handshakes in flight, ranked: the last is the busiest, and of
    /// sources as busy, the one with the oldest handshake.
    ranked: BTreeSet<(usize, Reverse<Age>, Source)>,
}

fn rank(ages: &BTreeSet<Age>, source: Source) -> Option<(usize, Reverse<Age>, Source)> {
    ages.first().map(|&oldest| (ages.len(), Reverse(oldest), source))
}

impl<T> Slots<T> {
    pub fn new(limits: Limits) -> Slots<T> {
        Slots { limits, next: 0, open: BTreeMap::new(), by_source: HashMap::new(), ranked: BTreeSet::new() }
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Take a slot for a new handshake from `source`, started `now`: its id, and the
    /// handshake to shed to make room (its stopper), if a limit was reached.
    pub fn admit(&mut self, source: IpAddr, now: Instant, stop: T) -> (u64, Option<T>) {
        let shed = self.to_shed(source).and_then(|id| self.remove(id));
        let id = self.next;
        self.next += 1;
        let group = Source::of(source);
        let ages = self.by_source.entry(group).or_default();
        if let Some(r) = rank(ages, group) {
            self.ranked.remove(&r);
        }
        ages.insert((now, id));
        self.ranked.extend(rank(ages, group));
        self.open.insert(id, (source, now, stop));
        (id, shed)
    }

    /// A handshake ended (done, failed or shed): free its slot.
    pub fn remove(&mut self, id: u64) -> Option<T> {
        let (ip, start, stop) = self.open.remove(&id)?;
        let group = Source::of(ip);
        if let Some(ages) = self.by_source.get_mut(&group) {
            if let Some(r) = rank(ages, group) {
                self.ranked.remove(&r);
            }
            ages.remove(&(start, id));
            match rank(ages, group) {
                Some(r) => {
                    self.ranked.insert(r);
                }
                None => {
                    self.by_source.remove(&group);
                }
            }
        }
        Some(stop)
    }

    /// Shed one handshake to free its descriptor ([`flood_victim`]).
    pub fn shed_for_room(&mut self) -> Option<T> {
        let id = self.victim()?;
        self.remove(id)
    }

    /// [`to_shed`] over the handshakes in flight.
    fn to_shed(&self, incoming: IpAddr) -> Option<u64> {
        match self.by_source.get(&Source::of(incoming)) {
            Some(ages) if ages.len() >= self.limits.per_source => ages.first().map(|&(_, id)| id),
            _ if self.open.len() >= self.limits.max_in_flight => self.victim(),
            _ => None,
        }
    }

    /// [`flood_victim`] over the handshakes in flight.
    fn victim(&self) -> Option<u64> {
        self.ranked.last().map(|&(_, Reverse((_, id)), _)| id)
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
                let shed = shared.slots.lock().expect("slots").shed_for_room();
                let pause = if shed.is_some() { 5 } else { 100 };
                tracing::warn!(error = %e, shed_one = shed.is_some(), "accept failed");
                drop(shed);
                tokio::time::sleep(Duration::from_millis(pause)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (stop, stopped) = oneshot::channel();
        let (id, shed) = shared.slots.lock().expect("slots").admit(peer.ip(), Instant::now(), stop);
        // Dropping the sender stops that handshake; its task counts the refusal.
        drop(shed);
        let acceptor = TlsAcceptor::from(config.borrow().clone());
        let (tx, shared) = (tx.clone(), shared.clone());
        // Per-connection task: bounded by the handshake timeout and by shedding.
        tokio::spawn(async move {
            let outcome = tokio::select! {
                // A handshake done in the same instant as it is shed is kept: its slot is
                // already free, and the client would not know why it was dropped.
                biased;
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

    fn limits(max_in_flight: usize, per_source: usize) -> Limits {
        Limits { timeout: HANDSHAKE_TIMEOUT, max_in_flight, per_source }
    }

    /// The `n`th of a series of starts, 1 ms apart.
    fn at(n: u64) -> Instant {
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *T0.get_or_init(Instant::now) + Duration::from_millis(n)
    }

    #[test]
    fn a_source_over_its_limit_sheds_its_own_oldest() {
        let mut s = Slots::new(limits(100, 3));
        for n in 0..3 {
            assert_eq!(s.admit(ip(2), at(n), n), (n, None));
        }
        let (_, first) = s.admit(ip(1), at(3), 10);
        assert_eq!(first, None);
        // A fourth from .2 sheds .2's oldest, never .1's.
        assert_eq!(s.admit(ip(2), at(4), 3).1, Some(0));
        assert_eq!(s.admit(ip(2), at(5), 4).1, Some(1));
        assert_eq!(s.len(), 4);
        // The newest of a source survives its own flood: it is the last to go.
        assert_eq!(s.remove(5), Some(4));
        assert_eq!(s.remove(5), None);
    }

    #[test]
    fn the_global_limit_sheds_the_oldest_of_the_busiest_source() {
        let mut s = Slots::new(limits(4, 4));
        s.admit(ip(9), at(0), "honest");
        s.admit(ip(2), at(1), "a");
        s.admit(ip(2), at(2), "b");
        s.admit(ip(3), at(3), "c");
        assert_eq!(s.admit(ip(2), at(4), "d").1, Some("a"));
        assert_eq!(s.admit(ip(4), at(5), "e").1, Some("b"));
        // The honest source, with one handshake in flight, was never the one shed.
        assert_eq!(s.len(), 4);
        assert!(s.open.values().any(|(_, _, t)| *t == "honest"));
        // Room for a descriptor, with one handshake in flight per source: the oldest of all.
        assert_eq!(s.shed_for_room(), Some("honest"));
    }

    /// A flood from 1,024 addresses, one half-open handshake each, then an honest client
    /// whose address sorts below all of them, then more of the flood.
    #[test]
    fn a_flood_from_a_thousand_addresses_sheds_its_oldest_not_the_newest() {
        let l = limits(MAX_HANDSHAKES, MAX_HANDSHAKES_PER_SOURCE);
        let flood = |n: u64| IpAddr::from([10, 0, 4 + (n / 250) as u8, 1 + (n % 250) as u8]);
        let honest = IpAddr::from([10, 0, 0, 1]);
        let mut in_flight: Vec<(u64, IpAddr, Instant)> = (0..1024).map(|n| (n, flood(n), at(n))).collect();
        in_flight.push((1024, honest, at(1024)));
        // The next flood connection, from a new address: the oldest goes, not the newest.
        assert_eq!(to_shed(&l, in_flight.iter().copied(), flood(1025)), Some(0));
        assert_eq!(to_shed(&l, in_flight.iter().rev().copied(), flood(1025)), Some(0), "in any order");
        assert_eq!(flood_victim(in_flight.iter().copied()), Some(0));

        // The same through Slots, as the accept loop drives it: the honest handshake outlives
        // the next 1,023 flood connections, each of which sheds the oldest in flight.
        let mut s = Slots::new(l);
        for n in 0..1024 {
            assert_eq!(s.admit(flood(n), at(n), n).1, None);
        }
        let (honest_id, shed) = s.admit(honest, at(1024), u64::MAX);
        assert_eq!(shed, Some(0));
        for n in 1025..2048 {
            assert_eq!(s.admit(flood(n), at(n), n).1, Some(n - 1024), "flood connection {n}");
        }
        assert_eq!(s.remove(honest_id), Some(u64::MAX), "the honest handshake is still in flight");
    }

    /// A flood from one IPv6 /64, one handshake per address, against an honest client of
    /// another /64 whose handshake is the oldest of all and whose address sorts lowest.
    #[test]
    fn ipv6_sources_in_one_64_count_as_one() {
        let l = limits(MAX_HANDSHAKES, MAX_HANDSHAKES_PER_SOURCE);
        let flood = |n: u64| IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0xaaaa, 0, (n >> 16) as u16, n as u16));
        let honest = IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let mut in_flight = vec![(0, honest, at(0))];
        in_flight.extend((1..=1023).map(|n| (n, flood(n), at(n))));
        // The /64 is at its own limit long before the global one: its oldest goes.
        assert_eq!(to_shed(&l, in_flight.iter().copied(), flood(5000)), Some(1));
        // From the honest /64 (another address in it), nothing needs to go.
        let neighbour = IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0xffff, 0, 0, 9));
        assert_eq!(to_shed(&limits(2048, 128), in_flight.iter().copied(), neighbour), None);
        assert_eq!(flood_victim(in_flight.iter().copied()), Some(1), "the busiest source, not the oldest handshake");

        let mut s = Slots::new(l);
        let (honest_id, _) = s.admit(honest, at(0), 0);
        for n in 1..2048 {
            s.admit(flood(n), at(n), n);
        }
        assert_eq!(s.len(), 1 + MAX_HANDSHAKES_PER_SOURCE, "the /64 holds 128 slots at most");
        assert_eq!(s.remove(honest_id), Some(0));
    }

    #[test]
    fn a_source_is_an_ipv4_address_or_an_ipv6_64() {
        let v6 = |s: &str| Source::of(s.parse().unwrap());
        assert_eq!(v6("2001:db8::1"), v6("2001:db8::ffff:1:2:3"));
        assert_ne!(v6("2001:db8::1"), v6("2001:db8:0:1::1"));
        assert_eq!(v6("2001:db8::1").to_string(), "2001:db8::/64");
        assert_eq!(v6("::ffff:10.1.2.3"), Source::of(IpAddr::from([10, 1, 2, 3])), "IPv4-mapped");
        assert_ne!(v6("::ffff:10.1.2.3"), v6("::ffff:10.1.2.4"), "not one /64 for all of IPv4");
        assert_eq!(Source::of(ip(2)).to_string(), "127.0.0.2");
        assert_ne!(Source::of(ip(2)), Source::of(ip(3)));
    }

    #[test]
    fn between_equally_busy_sources_the_oldest_handshake_goes() {
        let l = limits(4, 4);
        // .1 sorts first; .5's oldest is older.
        let in_flight = [(0, ip(5), at(0)), (1, ip(1), at(1)), (2, ip(1), at(2)), (3, ip(5), at(3))];
        assert_eq!(to_shed(&l, in_flight, ip(7)), Some(0));
        assert_eq!(to_shed(&l, in_flight[..3].iter().copied(), ip(7)), None, "under the limits");
        assert_eq!(to_shed(&limits(100, 2), in_flight, ip(1)), Some(1), "a source at its own limit");
    }

    /// Sources for random runs: four IPv4 addresses, many addresses of 2001:db8::/64, one
    /// of 2001:db8:0:1::/64.
    fn step_source(n: u8) -> IpAddr {
        match n % 8 {
            k @ 0..=3 => ip(1 + k),
            4 | 5 => IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(n))),
            _ => IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1)),
        }
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Slots' index decides as the plain functions do, over whatever is in flight: steps
        /// admit from a source after 0-2 ms (0: the same start as the last), end a handshake
        /// in flight, or shed one for room.
        #[test]
        fn slots_shed_what_to_shed_and_flood_victim_choose(
            max_in_flight in 1usize..12,
            per_source in 1usize..6,
            steps in prop::collection::vec(
                (any::<u8>(), 0u8..3, any::<prop::sample::Index>(), any::<bool>(), prop::bool::weighted(0.05)),
                1..200,
            ),
        ) {
            let l = limits(max_in_flight, per_source);
            let mut s = Slots::new(l);
            let mut t = 0u64;
            for (source, dt, which, end, room) in steps {
                let in_flight: Vec<(u64, IpAddr, Instant)> =
                    s.open.iter().map(|(&id, &(ip, start, _))| (id, ip, start)).collect();
                if room {
                    prop_assert_eq!(s.shed_for_room(), flood_victim(in_flight));
                } else if end && !in_flight.is_empty() {
                    let id = in_flight[which.index(in_flight.len())].0;
                    prop_assert_eq!(s.remove(id), Some(id));
                } else {
                    t += u64::from(dt);
                    let ip = step_source(source);
                    let want = to_shed(&l, in_flight, ip);
                    let (id, shed) = s.admit(ip, at(t), s.next);
                    prop_assert_eq!(id, s.next - 1);
                    prop_assert_eq!(shed, want);
                }
                prop_assert!(s.len() <= max_in_flight);
                prop_assert!(s.by_source.values().all(|ages| ages.len() <= per_source));
                prop_assert_eq!(s.ranked.len(), s.by_source.len());
            }
        }
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
        assert_eq!(s.top_source, (Source::of(ip(2)), 900));
        assert_eq!(s.reasons(), "failed=500 timed_out=500");
        assert_eq!(log.flush(t0 + every * 3), None, "nothing new, nothing said");
        // Quiet for a period after the last line: the next refusal is a new burst.
        assert!(log.note(Refusal::Shed, ip(4), t0 + every * 3));
        assert!(!log.note(Refusal::Shed, ip(4), t0 + every * 3));
        assert_eq!(log.flush(t0 + every * 4).map(|s| s.total), Some(1));
    }
}
