//! The other nodes: one place that holds the peer list (static config today;
//! membership feeds the same `watch` channel), mutual-TLS gRPC channels to
//! them, the MESH fan-out, and one heartbeat feed per peer.
//!
//! A peer is dialed by address with the server name `node.<tenant>.fleet.internal`
//! (which proves "a node of my tenant"); which host answered is read from the
//! certificate's URI SAN at the handshake, never from config.

use crate::live::host_event;
use crate::membership::{MemberInfo, MemberState};
use fleet_core::event::{Event, EventKind};
use fleet_core::names::DnsLabel;
use fleet_core::record::{AgentRecord, HostState, HostStatus};
use fleet_proto::listing::EncodedAgents;
use fleet_proto::v1;
use fleet_proto::v1::fleet_client::FleetClient;
use futures_util::future::join_all;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint, Uri};

/// One peer node, as membership knows it.
pub struct Peer {
    /// Its gRPC address (the network door).
    pub address: String,
    /// The channel to it while in use ([`Peer::channel`], [`Peer::close_idle`]), and when it was last handed out.
    chan: Mutex<Option<(Channel, Instant)>>,
    tenant: DnsLabel,
    tls: ClientTls,
    /// Why the last call or stream to it failed (the reason of a `host_down`).
    last_error: Mutex<Option<String>>,
    /// The membership row (identity, state, how found); updated in place.
    pub member: Mutex<MemberInfo>,
}

impl Peer {
    pub fn new(member: MemberInfo, tenant: &DnsLabel, tls: ClientTls) -> Peer {
        let address = member.id.grpc.to_string();
        Peer {
            address,
            chan: Mutex::new(None),
            tenant: tenant.clone(),
            tls,
            last_error: Mutex::new(None),
            member: Mutex::new(member),
        }
    }

    /// The channel to this peer: the open one, or a new one (it dials on first use).
    pub fn channel(&self) -> Channel {
        let mut chan = self.chan.lock().expect("channel");
        let (c, used) = chan.get_or_insert_with(|| {
            let host = self.member.lock().expect("member").id.host.clone();
            (channel(&self.address, &self.tenant, &host, self.tls.clone()), Instant::now())
        });
        *used = Instant::now();
        c.clone()
    }

    /// Is a channel to this peer held now?
    pub fn has_channel(&self) -> bool {
        self.chan.lock().expect("channel").is_some()
    }

    /// Let go of the channel when it has not been handed out for `idle`: its
    /// connection closes once the calls and streams still holding it end.
    pub fn close_idle(&self, idle: Duration) {
        let mut chan = self.chan.lock().expect("channel");
        if chan.as_ref().is_some_and(|(_, used)| used.elapsed() >= idle) {
            *chan = None;
        }
    }

    /// The host: the name of this peer's row.
    pub fn label(&self) -> String {
        self.member.lock().expect("member").id.host.clone()
    }

    pub fn info(&self) -> MemberInfo {
        self.member.lock().expect("member").clone()
    }

    /// Membership says it is down: no call is worth making.
    pub fn is_down(&self) -> bool {
        self.member.lock().expect("member").state == MemberState::Down
    }

    fn mark(&self, error: Option<String>) {
        *self.last_error.lock().expect("last error") = error;
    }
}

/// The node's client TLS config, current (a new revocation list replaces it).
pub type ClientTls = watch::Receiver<Arc<ClientConfig>>;

/// The channel to a peer: lazy, reconnecting, mutual TLS with our node
/// identity (the config current at each dial). The server must prove it is
/// `host` of our tenant: the TLS name is `<host>.<tenant>.fleet.internal`, so
/// a member claiming another host's name cannot be called.
pub fn channel(address: &str, tenant: &DnsLabel, host: &str, tls: ClientTls) -> Channel {
    let name = match DnsLabel::parse_as("host name", host) {
        Ok(h) => fleet_tls::config::node_server_name(tenant, &h),
        // Not a DNS label: no certificate can match, so every call fails.
        Err(_) => fleet_tls::config::any_node_server_name(tenant),
    };
    let addr = address.to_string();
    let connector = tower::service_fn(move |_: Uri| {
        let (addr, name, tls) = (addr.clone(), name.clone(), tls.borrow().clone());
        async move {
            let sock = tokio::net::lookup_host(&addr).await?.next().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("{addr} resolves to nothing"))
            })?;
            Ok::<_, std::io::Error>(TokioIo::new(fleet_tls::net::connect(sock, name, tls).await?))
        }
    });
    Endpoint::from_shared(format!("http://{address}"))
        .expect("a HOST:PORT address makes a URI")
        .connect_timeout(Duration::from_secs(2))
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        // Pings only while a call or stream is open: an idle connection costs no packets.
        .keep_alive_while_idle(false)
        .connect_with_connector_lazy(connector)
}

/// The peer list and what is learned from peers.
pub struct Peers {
    pub list: watch::Receiver<Vec<Arc<Peer>>>,
    /// Events of the peers' hosts (their local streams, merged) and host up/down.
    pub events: broadcast::Sender<Event>,
    /// The last known agents of each peer host, for snapshots after a lag and
    /// the replicated view.
    pub known: Arc<Mutex<BTreeMap<String, BTreeMap<String, AgentRecord>>>>,
    /// The host row and freshness of each peer host whose feed is up ([`crate::replica`]).
    pub fed: Arc<Mutex<HashMap<String, crate::replica::Fed>>>,
    /// The copies of the peer hosts' states, by host ([`crate::replica`]).
    pub replicas: Mutex<HashMap<String, crate::replica::Replica>>,
    /// How many watch the mesh's events now: feeds run while anyone does.
    pub watchers: watch::Sender<usize>,
    /// A channel to a peer that carried no call for this long is let go (its
    /// connection closes; the next call dials again): a node keeps connections
    /// only to the peers it talks to, whatever the size of the mesh.
    pub idle_close: Duration,
    /// Feeds keep running this long after the last watcher of the mesh's events
    /// left (a page reload, a `fleet heartbeats` run again, pays no restart).
    pub feed_linger: Duration,
    /// Fetches of peer states since start.
    pub fetches: std::sync::atomic::AtomicU64,
    /// Asks peers for their states over membership's QUIC connections.
    pub rows: crate::membership::Rows,
    pub tenant: String,
}

/// At most this many fetches of peer states run at once.
const FETCHES: usize = 4;

/// Someone watching the mesh's events (while held, feeds run).
pub struct Watching(Arc<Peers>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.watchers.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Peers {
    pub fn current(&self) -> Vec<Arc<Peer>> {
        self.list.borrow().clone()
    }

    /// Count a watcher of the mesh's events until the guard drops: events then
    /// come from a feed per peer, within milliseconds.
    pub fn watch_mesh(self: &Arc<Self>) -> Watching {
        self.watchers.send_modify(|n| *n += 1);
        Watching(self.clone())
    }

    /// The agent rows this node holds of each peer host: its feed's, else its copy's.
    pub fn replicated_rows(&self) -> BTreeMap<String, Vec<AgentRecord>> {
        let now = crate::live::now_ms();
        let mut out: BTreeMap<String, Vec<AgentRecord>> = self
            .replicas
            .lock()
            .expect("replicas")
            .iter()
            .filter_map(|(h, r)| r.copy.as_ref().map(|c| (h.clone(), crate::replica::copy_rows(c, now))))
            .collect();
        let fed = self.fed.lock().expect("fed");
        for (h, rows) in self.known.lock().expect("known").iter() {
            if fed.contains_key(h) {
                out.insert(h.clone(), rows.values().cloned().collect());
            }
        }
        out
    }

    /// The peer serving `host`, if one is known.
    /// The peer serving `host`: not down, newest generation (a restarted node
    /// at a new address leaves its old identity down for a while).
    pub fn by_host(&self, host: &str) -> Option<Arc<Peer>> {
        self.current()
            .into_iter()
            .filter(|p| !p.is_down() && p.label().eq_ignore_ascii_case(host))
            .max_by_key(|p| p.info().id.generation)
    }

    /// The membership row of `host` when membership knows it but declared it down (its newest
    /// identity), for saying "down" rather than "unknown".
    pub fn down(&self, host: &str) -> Option<MemberInfo> {
        self.current()
            .into_iter()
            .filter(|p| p.is_down() && p.label().eq_ignore_ascii_case(host))
            .map(|p| p.info())
            .max_by_key(|m| m.id.generation)
    }

    /// The known host names of the peers, for "known: ..." hints.
    pub fn known_hosts(&self) -> Vec<String> {
        self.current().iter().map(|p| p.label()).collect()
    }

    /// ListAgents(LOCAL) on every peer in parallel under one deadline.
    pub async fn fan_out(&self, hosts: &[String], deadline: Duration) -> (Vec<AgentRecord>, Vec<HostStatus>) {
        let (agents, hosts) = self.list(hosts, deadline, true).await;
        (agents.decode().into_iter().map(AgentRecord::from).collect(), hosts)
    }

    /// The rows of the peer hosts (`hosts`, or all): a host that membership
    /// declared down is an unreachable row; with `fresh`, every other host is
    /// asked now (ListAgents LOCAL, in parallel under one deadline); without,
    /// a host is answered from the replicated view when its feed is up and has
    /// ticked, and asked now otherwise. The agent rows come encoded for the wire (a
    /// copy's rows are kept so: [`crate::replica::write_rows`]).
    pub async fn list(&self, hosts: &[String], deadline: Duration, fresh: bool) -> (EncodedAgents, Vec<HostStatus>) {
        let wanted = |p: &Peer| {
            hosts.is_empty() || {
                let host = p.label();
                hosts.iter().any(|h| h.eq_ignore_ascii_case(&host))
            }
        };
        let peers: Vec<Arc<Peer>> = self.current().into_iter().filter(|p| wanted(p)).collect();
        let (mut down, peers): (Vec<Arc<Peer>>, Vec<Arc<Peer>>) = peers.into_iter().partition(|p| p.is_down());
        // One row per host: an old identity of a host that is back under a new one is no row.
        down.retain(|d| !peers.iter().any(|p| p.label() == d.label()));
        down.dedup_by_key(|d| d.label());
        let mut statuses: Vec<HostStatus> = down
            .iter()
            .map(|p| HostStatus {
                tenant_id: self.tenant.clone(),
                host: p.label(),
                state: HostState::Unreachable,
                latency_ms: 0,
                agent_count: 0,
                detail: Some(format!("{}: down (membership: no answer to probes)", p.address)),
                roster_problem: None,
                as_of_unix_ms: None,
                stale: false,
                heard_unix_ms: None,
            })
            .collect();
        let mut agents = EncodedAgents::default();
        let peers = if fresh {
            peers
        } else {
            let now = crate::live::now_ms();
            let (known, fed) = (self.known.lock().expect("known"), self.fed.lock().expect("fed"));
            let replicas = self.replicas.lock().expect("replicas");
            let mut ask = Vec::new();
            for p in peers {
                let host = p.label();
                let info = p.info();
                let rows = known.get(&host);
                let fed_row = fed
                    .get(&host)
                    .and_then(|f| crate::replica::host_row(&self.tenant, &host, f, rows.map_or(0, BTreeMap::len), now));
                if let Some(row) = fed_row {
                    for r in rows.into_iter().flat_map(BTreeMap::values) {
                        agents.push(&r.clone().into());
                    }
                    statuses.push(row);
                    continue;
                }
                // A copy of this run of the host (a restarted host is asked now).
                let copy =
                    replicas.get(&host).filter(|r| r.copy.as_ref().is_some_and(|c| c.generation == info.id.generation));
                let suspect = info.state == MemberState::Suspect;
                match copy
                    .and_then(|r| crate::replica::copy_row(&self.tenant, &host, r, suspect, now).map(|row| (r, row)))
                {
                    Some((r, row)) => {
                        if let Some(c) = &r.copy {
                            crate::replica::write_rows(c, now, &mut agents);
                        }
                        statuses.push(row);
                    }
                    None => ask.push(p),
                }
            }
            ask
        };
        let calls = peers.iter().map(|p| {
            let peer = p.clone();
            async move {
                let start = Instant::now();
                let res = list_local(&peer, deadline).await;
                (peer, start.elapsed(), res)
            }
        });
        for (peer, elapsed, res) in join_all(calls).await {
            let status = |state, detail: Option<String>, count| HostStatus {
                tenant_id: self.tenant.clone(),
                host: peer.label(),
                state,
                latency_ms: elapsed.as_millis() as u32,
                agent_count: count,
                detail,
                roster_problem: None,
                as_of_unix_ms: None,
                stale: false,
                heard_unix_ms: None,
            };
            match res {
                Ok(Ok(resp)) => {
                    let resp = resp.into_inner();
                    peer.mark(None);
                    // The peer speaks for its own host only (its certificate says which).
                    let host = peer.label();
                    let rows: Vec<AgentRecord> = resp
                        .agents
                        .into_iter()
                        .map(AgentRecord::from)
                        .filter(|r| r.host.eq_ignore_ascii_case(&host) && r.tenant_id == self.tenant)
                        .collect();
                    let mut s = status(HostState::Ok, None, rows.len() as u32);
                    if let Some(h) = resp.hosts.into_iter().find(|h| h.host.eq_ignore_ascii_case(&host)) {
                        s.roster_problem = Some(h.roster_problem).filter(|p| !p.is_empty());
                        s.as_of_unix_ms = Some(h.as_of_unix_ms).filter(|t| *t > 0);
                        // The peer answered, but could not see all of its own host.
                        if h.state == v1::HostState::Error as i32 {
                            s.state = HostState::Error;
                            s.detail = Some(h.detail).filter(|d| !d.is_empty());
                        }
                    }
                    for r in rows {
                        agents.push(&r.into());
                    }
                    statuses.push(s);
                }
                // tonic's own deadline (sent as grpc-timeout, so the peer gives up too)
                // races the outer one: both are a timeout.
                Ok(Err(e)) if matches!(e.code(), tonic::Code::Cancelled | tonic::Code::DeadlineExceeded) => {
                    let detail = format!("{}: no answer within {} ms", peer.address, deadline.as_millis());
                    peer.mark(Some(detail.clone()));
                    statuses.push(status(HostState::Timeout, Some(detail), 0));
                }
                Ok(Err(e)) => {
                    let state =
                        if e.code() == tonic::Code::Unavailable { HostState::Unreachable } else { HostState::Error };
                    let detail = format!("{}: {}", peer.address, e.message());
                    peer.mark(Some(detail.clone()));
                    statuses.push(status(state, Some(detail), 0));
                }
                Err(_) => {
                    let detail = format!("{}: no answer within {} ms", peer.address, deadline.as_millis());
                    peer.mark(Some(detail.clone()));
                    statuses.push(status(HostState::Timeout, Some(detail), 0));
                }
            }
        }
        (agents, statuses)
    }
}

/// `ListAgents(LOCAL)` of `peer` within `deadline` (sent along, so the peer gives up too);
/// the outer error is the deadline.
async fn list_local(
    peer: &Peer,
    deadline: Duration,
) -> Result<Result<tonic::Response<v1::ListAgentsResponse>, tonic::Status>, tokio::time::error::Elapsed> {
    let mut client = FleetClient::new(peer.channel());
    let mut req = tonic::Request::new(v1::ListAgentsRequest {
        scope: v1::Scope::Local as i32,
        hosts: vec![],
        deadline_ms: 0,
        fresh: false,
    });
    req.set_timeout(deadline);
    tokio::time::timeout(deadline, client.list_agents(req)).await
}

/// `peer`'s state: over membership's QUIC connection when `quic`, else (or when that
/// fails) over gRPC; and whether the QUIC ask went unanswered (an older node).
async fn ask_state(peer: &Peer, peers: &Peers, quic: bool) -> (Result<v1::ListAgentsResponse, String>, bool) {
    let mut unanswered = false;
    if quic {
        let id = peer.info().id;
        match tokio::time::timeout(FETCH_TIMEOUT, peers.rows.fetch(id.quic, &id.host)).await {
            Ok(Ok(resp)) => return (Ok(resp), false),
            Ok(Err(e)) => {
                unanswered = matches!(e, crate::membership::RowsError::Unanswered(_));
                tracing::debug!(host = %id.host, error = %e, "replica: no rows over QUIC; asking over gRPC");
            }
            Err(_) => tracing::debug!(host = %id.host, "replica: no rows over QUIC in time; asking over gRPC"),
        }
    }
    let res = match list_local(peer, FETCH_TIMEOUT).await {
        Ok(Ok(resp)) => Ok(resp.into_inner()),
        Ok(Err(e)) => Err(format!("{}: {}", peer.address, e.message())),
        Err(_) => Err(format!("{}: no answer within {} s", peer.address, FETCH_TIMEOUT.as_secs())),
    };
    (res, unanswered)
}

/// A fetch of a peer's state that takes longer than this failed.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a forwarded change's answer waits for the host's state ([`Peers::refresh`]).
const REFRESH_WAIT: Duration = Duration::from_secs(2);

/// Keep a copy of every peer host's state ([`crate::replica`]): fetch it when
/// there is none, when the host restarted, or when gossip announces a newer
/// version of it; and let go of channels nobody used for [`Peers::idle_close`].
pub async fn follow_versions(
    peers: Arc<Peers>,
    mut versions: watch::Receiver<crate::versions::Book>,
    cancel: CancellationToken,
) {
    let mut list = peers.list.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let slots = Arc::new(tokio::sync::Semaphore::new(FETCHES));
    let done = Arc::new(tokio::sync::Notify::new());
    loop {
        let book = versions.borrow_and_update().clone();
        plan_fetches(&peers, &book, &slots, &done);
        tokio::select! {
            () = cancel.cancelled() => return,
            r = versions.changed() => if r.is_err() { return },
            r = list.changed() => if r.is_err() { return },
            () = done.notified() => {}
            _ = tick.tick() => {
                for p in peers.current() {
                    p.close_idle(peers.idle_close);
                }
            }
        }
    }
}

/// Start the fetches that the copies need now (see [`crate::replica::needs_fetch`]).
fn plan_fetches(
    peers: &Arc<Peers>,
    book: &crate::versions::Book,
    slots: &Arc<tokio::sync::Semaphore>,
    done: &Arc<tokio::sync::Notify>,
) {
    let now = crate::live::now_ms();
    // The newest identity of each host that is not down.
    let mut newest: HashMap<String, Arc<Peer>> = HashMap::new();
    for p in peers.current().into_iter().filter(|p| !p.is_down()) {
        let host = p.label();
        if newest.get(&host).is_none_or(|q| q.info().id.generation < p.info().id.generation) {
            newest.insert(host, p);
        }
    }
    let mut replicas = peers.replicas.lock().expect("replicas");
    replicas.retain(|h, _| newest.contains_key(h));
    for (host, p) in newest {
        let generation = p.info().id.generation;
        let heard = book.get(&host.to_ascii_lowercase()).copied();
        let r = replicas.entry(host).or_default();
        let copy = r.copy.as_ref().map(|c| (c.generation, c.version));
        let behind = copy.is_some_and(|(g, _)| g == generation)
            && crate::replica::needs_fetch(copy, generation, heard, r.refuted);
        if !behind {
            r.behind_since = None;
        } else if r.behind_since.is_none() {
            r.behind_since = Some(now);
        }
        if r.fetching
            || r.legacy
            || crate::replica::resting(r, now)
            || !crate::replica::needs_fetch(copy, generation, heard, r.refuted)
        {
            continue;
        }
        r.fetching = true;
        r.tried_ms = now;
        let quic = r.over_grpc != Some(generation);
        tokio::spawn(fetch(p, peers.clone(), slots.clone(), done.clone(), heard, quic));
    }
}

/// Ask `peer` for its host's state (`ListAgents(LOCAL)`: over membership's QUIC
/// connection when `quic`, else or when that fails over gRPC) and keep it as the copy;
/// tell subscribers what changed when no feed of that host does.
async fn fetch(
    peer: Arc<Peer>,
    peers: Arc<Peers>,
    slots: Arc<tokio::sync::Semaphore>,
    done: Arc<tokio::sync::Notify>,
    heard: Option<crate::versions::Stamp>,
    quic: bool,
) {
    let Ok(_slot) = slots.acquire_owned().await else { return };
    peers.fetches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (res, unanswered) = ask_state(&peer, &peers, quic).await;
    keep_state(&peer, &peers, res, unanswered, heard, true);
    done.notify_one();
}

impl Peers {
    /// Fetch `peer`'s state now and keep it as the copy, after a change this node forwarded to
    /// it (`fleet add|remove|start|stop AGENT@HOST`): this node's next listing shows the change,
    /// without waiting for the host's gossip and the fetch it starts. A failure leaves that
    /// to them (and is only logged: the change itself was made).
    pub async fn refresh(self: &Arc<Self>, peer: &Peer) {
        let generation = peer.info().id.generation;
        let quic =
            self.replicas.lock().expect("replicas").get(&peer.label()).is_none_or(|r| r.over_grpc != Some(generation));
        // The verb's answer waits for this: a host that stopped answering costs it at most
        // REFRESH_WAIT, not a fetch's two tries of FETCH_TIMEOUT.
        match tokio::time::timeout(REFRESH_WAIT, ask_state(peer, self, quic)).await {
            Err(_) => tracing::debug!(
                host = %peer.label(), wait_ms = REFRESH_WAIT.as_millis() as u64,
                "replica: no state in time after a forwarded change"
            ),
            Ok((Err(e), _)) => {
                tracing::debug!(host = %peer.label(), error = %e, "replica: no state after a forwarded change")
            }
            Ok((ok, unanswered)) => keep_state(peer, self, ok, unanswered, None, false),
        }
    }
}

/// Keep `peer`'s answer `res` as its host's copy (unless the copy is newer: [`crate::replica::replaces`]);
/// `heard`: the newest version gossip announced, which the answer may refute; `planned`: the
/// answer of a fetch that [`plan_fetches`] started (it ends that fetch).
fn keep_state(
    peer: &Peer,
    peers: &Peers,
    res: Result<v1::ListAgentsResponse, String>,
    unanswered: bool,
    heard: Option<crate::versions::Stamp>,
    planned: bool,
) {
    let host = peer.label();
    let now = crate::live::now_ms();
    let fed = self_fed(peers, &host);
    let mut events = Vec::new();
    {
        let mut replicas = peers.replicas.lock().expect("replicas");
        // Gone meanwhile (declared down): nothing to keep.
        let Some(r) = replicas.get_mut(&host) else { return };
        if planned {
            r.fetching = false;
        }
        if unanswered && res.is_ok() {
            r.over_grpc = Some(peer.info().id.generation);
        }
        match res {
            Ok(resp) => {
                // The peer speaks for its own host only (its certificate says which).
                let rows: Vec<AgentRecord> = resp
                    .agents
                    .into_iter()
                    .map(AgentRecord::from)
                    .filter(|a| a.host.eq_ignore_ascii_case(&host) && a.tenant_id == peers.tenant)
                    .collect();
                let status = resp.hosts.into_iter().find(|h| h.host.eq_ignore_ascii_case(&host)).map(HostStatus::from);
                match (resp.state_generation, status) {
                    (0, _) | (_, None) => {
                        // An older node that numbers no states: asked at each listing.
                        r.legacy = true;
                        r.error = None;
                    }
                    (generation, Some(status)) => {
                        // A new run of the host starts with nothing held against it.
                        if r.refuted.is_some_and(|(g, _)| g != generation) {
                            r.refuted = None;
                        }
                        if let Some((hg, hv)) = heard
                            && hg == generation
                            && hv > resp.state_version
                        {
                            tracing::warn!(
                                host = %host, announced = hv, answered = resp.state_version,
                                "replica: a state version announced for this host is newer than the host's own; set aside"
                            );
                            r.refuted = Some((hg, hv));
                        }
                        let version = resp.state_version;
                        if !crate::replica::replaces(r.copy.as_ref(), generation, version, &status) {
                            r.error = None;
                            return;
                        }
                        if !fed {
                            events = match r.copy.as_ref() {
                                None => std::iter::once(host_event(
                                    &peers.tenant,
                                    &host,
                                    EventKind::HostUp { address: peer.address.clone() },
                                ))
                                .chain(fleet_core::event::snapshot(&rows, now))
                                .collect(),
                                Some(old) => {
                                    fleet_core::event::diff(&crate::replica::copy_rows(old, old.pulled_ms), &rows, now)
                                }
                            };
                        }
                        let rows = fleet_proto::listing::AgentCopy::new(rows.into_iter().map(v1::Agent::from));
                        r.copy = Some(crate::replica::Copy { generation, version, status, rows, pulled_ms: now });
                        r.error = None;
                    }
                }
            }
            Err(e) => r.error = Some(e),
        }
    }
    for e in events {
        let _ = peers.events.send(e);
    }
}

/// Is `ev` an `agent_appeared` of a row that this node's copy of the host holds
/// as it is (a feed's snapshot after the copy was served)?
fn already_shown(peers: &Peers, ev: &Event) -> bool {
    let EventKind::AgentAppeared { record } = &ev.kind else { return false };
    let replicas = peers.replicas.lock().expect("replicas");
    let Some(copy) = replicas.get(&ev.host).and_then(|r| r.copy.as_ref()) else { return false };
    copy.rows.get(&record.name).is_some_and(|r| crate::replica::same_row(&AgentRecord::from(r), record))
}

/// Is a feed of `host` up (its events reach subscribers within milliseconds)?
fn self_fed(peers: &Peers, host: &str) -> bool {
    peers.fed.lock().expect("fed").contains_key(host)
}

/// Follow one peer's local heartbeat stream for as long as `cancel` allows,
/// resubscribing with backoff; publish its events and host up/down. Once
/// stopped, its rows are no longer served as fed (the copy serves them).
pub async fn feed(peer: Arc<Peer>, peers: Arc<Peers>, cancel: CancellationToken) {
    static FEEDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = FEEDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    follow_feed(&peer, &peers, &cancel, id).await;
    let host = peer.label();
    let mut fed = peers.fed.lock().expect("fed");
    if fed.get(&host).is_some_and(|f| f.by == id) {
        fed.remove(&host);
        peers.known.lock().expect("known").remove(&host);
    }
}

async fn follow_feed(peer: &Arc<Peer>, peers: &Arc<Peers>, cancel: &CancellationToken, id: u64) {
    let mut backoff = Duration::from_millis(250);
    let mut was_up = false;
    loop {
        let mut client = FleetClient::new(peer.channel());
        let req = v1::WatchHeartbeatsRequest {
            scope: v1::Scope::Local as i32,
            hosts: vec![],
            snapshot: true,
            host_tick_ms: crate::replica::TICK.as_millis() as u32,
        };
        let result = tokio::select! {
            () = cancel.cancelled() => return,
            r = client.watch_heartbeats(req) => r,
        };
        match result {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                let host = peer.label();
                peer.mark(None);
                was_up = true;
                backoff = Duration::from_millis(250);
                // A host this node already holds a copy of was up already: subscribers knew.
                if peers.replicas.lock().expect("replicas").get(&host).is_none_or(|r| r.copy.is_none()) {
                    let _ = peers.events.send(host_event(
                        &peers.tenant,
                        &host,
                        EventKind::HostUp { address: peer.address.clone() },
                    ));
                }
                peers.known.lock().expect("known").insert(host.clone(), BTreeMap::new());
                let fed = crate::replica::Fed { status: None, heard_ms: crate::live::now_ms(), by: id };
                peers.fed.lock().expect("fed").insert(host.clone(), fed);
                loop {
                    let msg = tokio::select! {
                        () = cancel.cancelled() => return,
                        m = stream.message() => m,
                    };
                    match msg {
                        Ok(Some(wire)) => {
                            let Ok(ev) = Event::try_from(wire) else { continue };
                            // A peer's stream speaks for its own host only.
                            if !ev.host.eq_ignore_ascii_case(&host) || ev.tenant_id != peers.tenant {
                                continue;
                            }
                            if let Some(f) = peers.fed.lock().expect("fed").get_mut(&host) {
                                f.heard_ms = crate::live::now_ms();
                            }
                            remember(peers, &ev);
                            // Ticks keep the replica; subscribers never see them, nor a
                            // snapshot row that the copy they had already shows.
                            if !matches!(ev.kind, EventKind::HostTick { .. }) && !already_shown(peers, &ev) {
                                let _ = peers.events.send(ev);
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            peer.mark(Some(e.message().to_string()));
                            break;
                        }
                    }
                }
            }
            Err(e) => peer.mark(Some(e.message().to_string())),
        }
        if was_up {
            was_up = false;
            let host = peer.label();
            peers.known.lock().expect("known").remove(&host);
            peers.fed.lock().expect("fed").remove(&host);
            // The host's node closed or lost the stream: its copy is not served
            // either (the next listing asks it now) until a fetch succeeds again.
            peers.replicas.lock().expect("replicas").remove(&host);
            let reason = peer.last_error.lock().expect("last error").clone().unwrap_or_else(|| "stream ended".into());
            let _ = peers.events.send(host_event(&peers.tenant, &host, EventKind::HostDown { reason }));
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn remember(peers: &Peers, ev: &Event) {
    let mut known = peers.known.lock().expect("known");
    let host = known.entry(ev.host.clone()).or_default();
    match &ev.kind {
        EventKind::HostTick { status, agents } => {
            if let Some(rows) = agents {
                *host = rows.iter().map(|r| (r.name.clone(), r.clone())).collect();
            }
            if let Some(f) = peers.fed.lock().expect("fed").get_mut(&ev.host) {
                f.status = Some((**status).clone());
            }
        }
        // The peer dropped events for us: a snapshot follows; rows it no longer has must go.
        EventKind::Lagged { .. } => host.clear(),
        EventKind::AgentAppeared { record } => {
            host.insert(ev.agent.clone(), (**record).clone());
        }
        EventKind::AgentGone => {
            host.remove(&ev.agent);
        }
        EventKind::Beat { heartbeat } | EventKind::HealthChange { heartbeat, .. } => {
            if let Some(r) = host.get_mut(&ev.agent) {
                r.heartbeat = heartbeat.clone();
            }
        }
        // Ticks leave activity out of their rows (it changes with every sweep): this is its path.
        EventKind::ActivityChange { activity, .. } => {
            if let Some(r) = host.get_mut(&ev.agent) {
                r.activity = activity.clone();
            }
        }
        EventKind::HostUp { .. } | EventKind::HostDown { .. } => {}
    }
}

/// Keep the peer list in step with membership: one [`Peer`] per live identity
/// (a restarted node is a new one), a heartbeat feed for each peer that is not
/// down while anyone watches the mesh's events (and [`Peers::feed_linger`] after),
/// and a `host_down` event the moment membership declares a host down.
pub async fn follow_membership(
    mut members: watch::Receiver<Vec<MemberInfo>>,
    list: watch::Sender<Vec<Arc<Peer>>>,
    peers: Arc<Peers>,
    mut tls: ClientTls,
    tenant: DnsLabel,
    cancel: CancellationToken,
) {
    type Key = (String, u64);
    let mut known: HashMap<Key, (Arc<Peer>, Option<CancellationToken>)> = HashMap::new();
    let mut watchers = peers.watchers.subscribe();
    // Feeds run while watched, and until this instant after the last watcher left.
    let mut linger: Option<tokio::time::Instant> = None;
    let mut was_watched = false;
    loop {
        let watched = *watchers.borrow_and_update() > 0;
        if watched {
            linger = None;
        } else if was_watched {
            linger = Some(tokio::time::Instant::now() + peers.feed_linger);
        }
        was_watched = watched;
        let feeding = watched || linger.is_some_and(|t| t > tokio::time::Instant::now());
        let rows = members.borrow_and_update().clone();
        let mut next = Vec::with_capacity(rows.len());
        for m in rows {
            let key = (m.id.host.clone(), m.id.generation);
            let entry =
                known.entry(key).or_insert_with(|| (Arc::new(Peer::new(m.clone(), &tenant, tls.clone())), None));
            let was_down = entry.0.is_down();
            *entry.0.member.lock().expect("member") = m.clone();
            if m.state == MemberState::Down {
                if let Some(feed) = entry.1.take() {
                    feed.cancel();
                }
                if !was_down {
                    peers.known.lock().expect("known").remove(&m.id.host);
                    peers.fed.lock().expect("fed").remove(&m.id.host);
                    peers.replicas.lock().expect("replicas").remove(&m.id.host);
                    let reason = "membership: no answer to probes".to_string();
                    let _ = peers.events.send(host_event(&peers.tenant, &m.id.host, EventKind::HostDown { reason }));
                }
            } else if !feeding {
                if let Some(feed) = entry.1.take() {
                    feed.cancel();
                }
            } else if entry.1.is_none() {
                let token = cancel.child_token();
                tokio::spawn(feed(entry.0.clone(), peers.clone(), token.clone()));
                entry.1 = Some(token);
            }
            next.push(entry.0.clone());
        }
        known.retain(|_, (peer, feed)| {
            let keep = next.iter().any(|n| Arc::ptr_eq(n, peer));
            if !keep && let Some(f) = feed.take() {
                f.cancel();
            }
            keep
        });
        list.send_replace(next);
        let lingering = linger.filter(|_| !watched && feeding);
        tokio::select! {
            () = cancel.cancelled() => return,
            r = members.changed() => if r.is_err() { return },
            r = watchers.changed() => if r.is_err() { return },
            () = async { tokio::time::sleep_until(lingering.expect("lingering")).await }, if lingering.is_some() => {}
            r = tls.changed() => {
                if r.is_err() {
                    return;
                }
                // New credentials or a new revocation list: every peer gets a new
                // channel, so no connection made under the old ones is kept (one
                // to a node now revoked, in particular). Feeds start again.
                for (_, (_, feed)) in known.drain() {
                    if let Some(f) = feed {
                        f.cancel();
                    }
                }
            }
        }
    }
}
