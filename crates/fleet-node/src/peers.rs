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
    pub channel: Channel,
    /// Why the last call or stream to it failed (the reason of a `host_down`).
    last_error: Mutex<Option<String>>,
    /// The membership row (identity, state, how found); updated in place.
    pub member: Mutex<MemberInfo>,
}

impl Peer {
    pub fn new(member: MemberInfo, tenant: &DnsLabel, tls: ClientTls) -> Peer {
        let address = member.id.grpc.to_string();
        Peer {
            channel: channel(&address, tenant, &member.id.host, tls),
            address,
            last_error: Mutex::new(None),
            member: Mutex::new(member),
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
        .keep_alive_while_idle(true)
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
    pub tenant: String,
}

impl Peers {
    pub fn current(&self) -> Vec<Arc<Peer>> {
        self.list.borrow().clone()
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
        self.list(hosts, deadline, true).await
    }

    /// The rows of the peer hosts (`hosts`, or all): a host that membership
    /// declared down is an unreachable row; with `fresh`, every other host is
    /// asked now (ListAgents LOCAL, in parallel under one deadline); without,
    /// a host is answered from the replicated view when its feed is up and has
    /// ticked, and asked now otherwise.
    pub async fn list(&self, hosts: &[String], deadline: Duration, fresh: bool) -> (Vec<AgentRecord>, Vec<HostStatus>) {
        let peers: Vec<Arc<Peer>> =
            self.current().into_iter().filter(|p| hosts.is_empty() || hosts.contains(&p.label())).collect();
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
        let mut agents = Vec::new();
        let peers = if fresh {
            peers
        } else {
            let now = crate::live::now_ms();
            let (known, fed) = (self.known.lock().expect("known"), self.fed.lock().expect("fed"));
            let mut ask = Vec::new();
            for p in peers {
                let host = p.label();
                let rows = known.get(&host);
                let row = fed
                    .get(&host)
                    .and_then(|f| crate::replica::host_row(&self.tenant, &host, f, rows.map_or(0, BTreeMap::len), now));
                match row {
                    Some(row) => {
                        agents.extend(rows.into_iter().flat_map(|r| r.values().cloned()));
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
                let mut client = FleetClient::new(peer.channel.clone());
                let mut req = tonic::Request::new(v1::ListAgentsRequest {
                    scope: v1::Scope::Local as i32,
                    hosts: vec![],
                    deadline_ms: 0,
                    fresh: false,
                });
                req.set_timeout(deadline);
                let res = tokio::time::timeout(deadline, client.list_agents(req)).await;
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
                    agents.extend(rows);
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

/// Follow one peer's local heartbeat stream for as long as `cancel` allows,
/// resubscribing with backoff; publish its events and host up/down.
pub async fn feed(peer: Arc<Peer>, peers: Arc<Peers>, cancel: CancellationToken) {
    let mut backoff = Duration::from_millis(250);
    let mut was_up = false;
    loop {
        let mut client = FleetClient::new(peer.channel.clone());
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
                let _ = peers.events.send(host_event(
                    &peers.tenant,
                    &host,
                    EventKind::HostUp { address: peer.address.clone() },
                ));
                peers.known.lock().expect("known").insert(host.clone(), BTreeMap::new());
                let fed = crate::replica::Fed { status: None, heard_ms: crate::live::now_ms() };
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
                            remember(&peers, &ev);
                            // Ticks keep the replica; subscribers never see them.
                            if !matches!(ev.kind, EventKind::HostTick { .. }) {
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
/// down, and a `host_down` event the moment membership declares a host down.
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
    loop {
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
                    let reason = "membership: no answer to probes".to_string();
                    let _ = peers.events.send(host_event(&peers.tenant, &m.id.host, EventKind::HostDown { reason }));
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
        tokio::select! {
            () = cancel.cancelled() => return,
            r = members.changed() => if r.is_err() { return },
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
