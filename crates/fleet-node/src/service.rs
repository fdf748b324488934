//! The gRPC services `fleet.v1.Fleet`, `fleet.v1.Mesh` and `fleet.v1.Queue` (durable delivery), behind one
//! authorization check per call: who is calling (the local door's uid, or the
//! network door's certificate), and may they do this verb.

use crate::idem::Idempotency;
use crate::live::{Live, now_ms};
use crate::membership::{FoundBy, MemberState};
use crate::peers::Peers;
use fleet_core::event::{self, Event, EventKind};
use fleet_core::names::DnsLabel;
use fleet_core::record::{HostState, HostStatus};
use fleet_core::roster::TmuxSocket;
use fleet_proto::v1::{self, fleet_server::Fleet, mesh_server::Mesh, queue_server::Queue};
use fleet_tls::audit::{AuditEvent, AuditLog};
use fleet_tls::net::Refusal;
use fleet_tls::{Principal, Verb, authorize};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// Metadata a node adds when it forwards a call: the principal it acts for.
pub const ON_BEHALF_OF: &str = "x-fleet-on-behalf-of";
/// Trailer of an error that a node returns without forwarding the call to the target's node
/// (the target host is down): a send so refused was certainly not delivered.
pub const NOT_FORWARDED: &str = "x-fleet-not-forwarded";

/// Who is calling.
#[derive(Clone, Debug)]
pub struct Caller {
    /// For the audit log: `operator:alice@acme`, `local:uid1000@acme`, or
    /// `node:h1@acme for operator:alice@acme`.
    pub principal: String,
    pub peer: String,
    /// The host of a calling node (for the preamble of forwarded sends).
    pub node_host: Option<String>,
}

pub struct NodeInfo {
    pub tenant: DnsLabel,
    pub host: DnsLabel,
    pub generation: u64,
    pub grpc_address: String,
    pub mesh_fingerprint: String,
    pub started_unix_ms: i64,
    pub fleet_exe: std::path::PathBuf,
    pub mosaic_home: std::path::PathBuf,
    pub run_dir: std::path::PathBuf,
    pub interval_secs: u64,
    pub fanout_deadline: Duration,
    /// The roster file this node serves (`fleet add` and `remove` rewrite it).
    pub roster: std::path::PathBuf,
    /// The web door's base URL, empty when it is off.
    pub web_url: String,
}

pub struct Node {
    pub info: NodeInfo,
    pub live: Live,
    pub peers: Arc<Peers>,
    pub members: crate::membership::Membership,
    pub audit: Arc<AuditLog>,
    pub idem: Idempotency,
    pub delivery: Arc<crate::delivery::Deliverer>,
    /// Pane feeds for `WatchPane` and `AttachPane`.
    pub panes: crate::pane::Panes,
    /// One turn per agent for `--when-idle` sends.
    pub idle: crate::idle::IdleTurns,
    /// Durable delivery: the messages kept on disk (`fleet send --queue`).
    pub queue: Arc<crate::queue::Store>,
    pub cancel: CancellationToken,
    pub uid: u32,
    /// TLS handshakes refused on the network door, by reason.
    pub tls_refusals: Arc<fleet_tls::net::Refusals>,
    /// Latencies and counters for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The version of this host's state that peers replicate ([`crate::replica::number_states`]).
    pub state_version: std::sync::atomic::AtomicU64,
}

#[derive(Clone)]
pub struct NodeService(pub Arc<Node>);

impl Node {
    /// A host filter that names no host this node knows is a mistake (a typo), not an empty
    /// answer: refused, naming the known hosts (`mesh`: this one and its peers).
    pub(crate) fn check_host_filter(&self, hosts: &[String], mesh: bool) -> Result<(), Status> {
        let mut known = vec![self.info.host.to_string()];
        if mesh {
            known.extend(self.peers.known_hosts());
        }
        let Some(bad) = hosts.iter().find(|h| !known.iter().any(|k| k.eq_ignore_ascii_case(h))) else {
            return Ok(());
        };
        known.sort();
        known.dedup();
        let names: Vec<&str> = known.iter().map(String::as_str).collect();
        Err(Status::invalid_argument(format!(
            "no host {bad} in the {} ({})",
            if mesh { "mesh" } else { "local scope" },
            fleet_core::names::known(bad, &names)
        )))
    }

    pub(crate) fn audit(&self, caller: &Caller, verb: Verb, target: &str, outcome: &str, detail: Option<&str>) {
        let ev = AuditEvent { principal: &caller.principal, peer: &caller.peer, verb, target, outcome, detail };
        if let Err(e) = self.audit.append(&ev) {
            tracing::error!(error = %e, failures = self.audit.failures(), "audit log write failed");
        }
    }

    /// Identify and authorize the caller of `req` for `verb`.
    pub(crate) fn authorize<T>(&self, req: &Request<T>, verb: Verb, target: &str) -> Result<Caller, Status> {
        let tenant = &self.info.tenant;
        // A browser's call through the web door, made in this process (never read from the wire).
        if let Some(web) = req.extensions().get::<crate::web::WebCaller>() {
            let caller =
                Caller { principal: format!("web:{}@{tenant}", web.label), peer: web.peer.clone(), node_host: None };
            if !fleet_tls::authz::role_allows(web.role.kind(), verb) {
                let why = format!(
                    "{} may not {}: a {} may only list, watch, peers and info",
                    caller.principal,
                    verb.as_str(),
                    web.role.as_str()
                );
                self.audit(&caller, verb, target, fleet_tls::audit::DENIED, Some(&why));
                return Err(Status::permission_denied(why));
            }
            return Ok(caller);
        }
        if let Some(uds) = req.extensions().get::<tonic::transport::server::UdsConnectInfo>() {
            let uid = uds.peer_cred.map(|c| c.uid());
            let caller = Caller {
                principal: format!("local:uid{}@{tenant}", uid.unwrap_or(u32::MAX)),
                peer: "unix".into(),
                node_host: None,
            };
            if uid != Some(self.uid) {
                self.audit(
                    &caller,
                    verb,
                    target,
                    fleet_tls::audit::DENIED,
                    Some("the local door admits only the node's own uid"),
                );
                return Err(Status::permission_denied(format!(
                    "{} may not {}: the local door admits only uid {}",
                    caller.principal,
                    verb.as_str(),
                    self.uid
                )));
            }
            return Ok(caller);
        }
        let peer = req.remote_addr().map(|a| a.to_string()).unwrap_or_else(|| "unknown".into());
        let principal = match Principal::from_peer_certs(req.peer_certs().as_deref().map(|v| v.as_slice())) {
            Ok(p) => p,
            Err(e) => {
                let caller = Caller { principal: "unauthenticated".into(), peer: peer.clone(), node_host: None };
                self.audit(&caller, verb, target, fleet_tls::audit::DENIED, Some(&e.to_string()));
                return Err(Status::unauthenticated(format!("no fleet identity in the client certificate: {e}")));
            }
        };
        if let Err(denied) = authorize(tenant, &principal, verb) {
            if let Err(e) = self.audit.append_denied(&denied, &peer, target) {
                tracing::error!(error = %e, "audit log write failed");
            }
            return Err(Status::permission_denied(denied.to_string()));
        }
        let mut name = principal.to_string();
        let node_host = principal.host().map(str::to_string);
        if node_host.is_some()
            && let Some(on_behalf) = req.metadata().get(ON_BEHALF_OF).and_then(|v| v.to_str().ok())
        {
            name = format!("{name} for {on_behalf}");
        }
        Ok(Caller { principal: name, peer, node_host })
    }

    /// This host's own `ListAgents(LOCAL)` answer (and the start of a `MESH` one), as a
    /// peer's replicated view asks for it (over gRPC, or over membership's QUIC connection:
    /// [`crate::membership::Rows`]).
    /// The version is read first, then the view: the rows are at least as new as the
    /// version says.
    pub fn local_state(&self) -> v1::ListAgentsResponse {
        let state_version = self.state_version.load(std::sync::atomic::Ordering::Acquire);
        let view = self.live.current();
        v1::ListAgentsResponse {
            agents: view.agents.iter().cloned().map(Into::into).collect(),
            hosts: vec![self.self_status(&view).into()],
            state_generation: self.info.generation,
            state_version,
            encoded_agents: Default::default(),
        }
    }

    /// What membership's rows streams answer with: [`Node::local_state`] (nothing once the
    /// node is gone; the asker then takes the host for an older node and asks it live).
    pub fn rows_source(node: &Arc<Node>) -> crate::membership::RowsSource {
        let node = Arc::downgrade(node);
        Arc::new(move || node.upgrade().map(|n| n.local_state()).unwrap_or_default())
    }

    /// This host's row: `error` when tmux could not be probed on a socket (the
    /// agents there are missing from the listing; `detail` says which socket
    /// and why), systemctl did not answer (the systemd column is n/a), or the
    /// probe hangs (or the first one has not ended yet), the roster problem, if any, beside it, and
    /// when the view was last refreshed.
    pub(crate) fn self_status(&self, view: &crate::live::HostView) -> HostStatus {
        let failed = view.probe_error.as_ref().map(|e| format!("tmux could not be probed: {e}"));
        let detail = match (view.probe_hung.clone(), failed) {
            (Some(h), Some(f)) => Some(format!("{h}; before that, {f}")),
            (h, f) => h.or(f),
        };
        // The rows are fresh, but their systemd column is n/a: say why.
        let detail = match (detail, view.systemd_problem.as_ref()) {
            (Some(d), Some(e)) => Some(format!("{d}; systemd could not be probed: {e}")),
            (None, Some(e)) => Some(format!("systemd could not be probed: {e}")),
            (d, None) => d,
        };
        HostStatus {
            tenant_id: self.info.tenant.to_string(),
            host: self.info.host.to_string(),
            state: if detail.is_some() { HostState::Error } else { HostState::Ok },
            latency_ms: 0,
            agent_count: view.agents.len() as u32,
            detail,
            roster_problem: view.roster_problem.clone(),
            as_of_unix_ms: view.as_of_unix_ms,
            stale: false,
            heard_unix_ms: None,
        }
    }

    /// The events that describe the fleet as it is now: an `agent_appeared` per agent of
    /// this host and, for `mesh`, of every peer whose rows this node follows.
    pub(crate) fn snapshot_events(&self, mesh: bool) -> Vec<Event> {
        let mut evs = event::snapshot(&self.live.current().agents, now_ms());
        if mesh {
            for rows in self.peers.replicated_rows().values() {
                evs.extend(event::snapshot(rows, now_ms()));
            }
        }
        evs
    }

    pub(crate) fn is_self(&self, host: &str) -> bool {
        host.is_empty() || host.eq_ignore_ascii_case(self.info.host.as_str())
    }

    pub(crate) fn socket_of(&self, agent: &str) -> TmuxSocket {
        socket_in(self.live.current().roster.as_deref(), agent)
    }

    pub(crate) async fn lifecycle_local(
        &self,
        start_it: bool,
        req: &v1::LifecycleRequest,
    ) -> Result<Vec<v1::LifecycleResult>, Status> {
        let view = self.live.current();
        let roster = view.roster.clone().ok_or_else(|| {
            Status::failed_precondition(format!(
                "host {} has no valid roster: {}",
                self.info.host,
                view.roster_problem.clone().unwrap_or_default()
            ))
        })?;
        let names: Vec<String> = if req.all {
            roster.agents_on(&self.info.host).map(|a| a.name.to_string()).collect()
        } else {
            self.roster_agent(&roster, &req.agent)?;
            vec![req.agent.clone()]
        };
        let env = fleet_tmux::lifecycle::StartEnv {
            fleet_exe: self.info.fleet_exe.clone(),
            mosaic_home: self.info.mosaic_home.clone(),
            run_dir: self.info.run_dir.clone(),
            interval_secs: self.info.interval_secs,
            home: std::env::var_os("HOME").map(Into::into),
            tenant_id: self.info.tenant.to_string(),
            host: self.info.host.to_string(),
        };
        let run_dir = self.info.run_dir.clone();
        // The launcher's part: an agent starts with a fresh comms block (where it has one).
        if start_it {
            self.refresh_comms(&names).await;
        }
        let results = tokio::task::spawn_blocking(move || {
            let agents: Vec<_> = names.iter().filter_map(|n| roster.agent(n)).collect();
            let out: Vec<(String, Result<fleet_tmux::lifecycle::Outcome, String>)> = if start_it {
                fleet_tmux::lifecycle::start_many(&roster, &agents, &env)
                    .into_iter()
                    .map(|(a, r)| (a.name.to_string(), r.map_err(|e| e.to_string())))
                    .collect()
            } else {
                agents
                    .iter()
                    .map(|a| {
                        (
                            a.name.to_string(),
                            fleet_tmux::lifecycle::stop_and_clear(&roster, a, &run_dir).map_err(|e| e.to_string()),
                        )
                    })
                    .collect()
            };
            out
        })
        .await
        .map_err(|e| Status::internal(format!("lifecycle task failed: {e}")))?;
        // A probe begun after the change, so that a listing right after shows it (here, and in
        // the copy a forwarding node fetches when this answers): a started pane is there, a
        // stopped one is not alive. Bounded: a pane that went away at once after its start is
        // the view's to show, and the answer does not wait for it.
        let before = self.live.probes_begun();
        self.live.poke();
        let shown =
            |v: &crate::live::HostView| v.probe > before && results.iter().all(|(name, r)| lifecycle_shown(v, name, r));
        if !self.live.view_until(LIFECYCLE_SHOWN_WAIT, shown).await {
            // The change was made; a probe that hangs or an agent that went at once says so in
            // the view, later.
            tracing::debug!(
                wait_ms = LIFECYCLE_SHOWN_WAIT.as_millis() as u64,
                "lifecycle: the view did not show the change in time; answered without it"
            );
        }
        Ok(results
            .into_iter()
            .map(|(agent, r)| {
                let (outcome, detail) = match r {
                    Ok(fleet_tmux::lifecycle::Outcome::Started) => (v1::LifecycleOutcome::Started, String::new()),
                    Ok(fleet_tmux::lifecycle::Outcome::AlreadyRunning) => {
                        (v1::LifecycleOutcome::AlreadyRunning, String::new())
                    }
                    Ok(fleet_tmux::lifecycle::Outcome::Stopped) => (v1::LifecycleOutcome::Stopped, String::new()),
                    Ok(fleet_tmux::lifecycle::Outcome::NotRunning) => (v1::LifecycleOutcome::NotRunning, String::new()),
                    Err(e) => (v1::LifecycleOutcome::Failed, e),
                };
                v1::LifecycleResult {
                    tenant_id: self.info.tenant.to_string(),
                    host: self.info.host.to_string(),
                    agent,
                    outcome: outcome as i32,
                    detail,
                }
            })
            .collect())
    }

    async fn lifecycle(
        &self,
        start_it: bool,
        request: Request<v1::LifecycleRequest>,
    ) -> Result<Response<v1::LifecycleResponse>, Status> {
        let verb = if start_it { Verb::Start } else { Verb::Stop };
        let target = format!(
            "{}@{}",
            if request.get_ref().all { "*" } else { &request.get_ref().agent },
            request.get_ref().host
        );
        let caller = self.authorize(&request, verb, &target)?;
        let req = request.into_inner();
        let results = if self.is_self(&req.host) {
            match self.lifecycle_local(start_it, &req).await {
                Ok(r) => r,
                Err(s) => {
                    self.audit(&caller, verb, &target, "error", Some(s.message()));
                    return Err(s);
                }
            }
        } else {
            let peer = self.peer_for(&req.host).await?;
            let resp = forward(&peer, &caller, req.clone(), Some(Duration::from_secs(30)), |c, r| async move {
                let mut client = v1::fleet_client::FleetClient::new(c);
                if start_it { client.start_agent(r).await } else { client.stop_agent(r).await }
            })
            .await;
            let resp = self.after_change(&peer, resp).await;
            match resp {
                Ok(r) => r.results,
                Err(s) => {
                    self.audit(&caller, verb, &target, "error", Some(s.message()));
                    return Err(s);
                }
            }
        };
        for r in &results {
            let outcome = v1::LifecycleOutcome::try_from(r.outcome)
                .map(|o| short_name(o.as_str_name(), "LIFECYCLE_OUTCOME_"))
                .unwrap_or_else(|_| "unknown".into());
            self.audit(
                &caller,
                verb,
                &format!("{}@{}", r.agent, r.host),
                &outcome,
                Some(&r.detail).filter(|d| !d.is_empty()).map(|d| d.as_str()),
            );
        }
        Ok(Response::new(v1::LifecycleResponse { results }))
    }

    /// `changed`, the answer of a [`forward`]ed change to `peer`'s host (add, remove, start,
    /// stop), once this node has fetched that host's state when it was made
    /// ([`crate::peers::Peers::refresh`]): this node's next listing shows the change.
    pub(crate) async fn after_change<T>(
        &self,
        peer: &crate::peers::Peer,
        changed: Result<T, Status>,
    ) -> Result<T, Status> {
        if changed.is_ok() {
            self.peers.refresh(peer).await;
        }
        changed
    }

    /// `agent` is one of the roster's agents on this host, or NOT_FOUND naming the known ones.
    pub(crate) fn roster_agent(&self, roster: &fleet_core::roster::Roster, agent: &str) -> Result<(), Status> {
        roster.agent_on(&self.info.host, agent).map(|_| ()).map_err(Status::not_found)
    }

    /// The last lines of a roster agent's pane, here or on the agent's host.
    async fn tail(&self, request: Request<v1::TailRequest>) -> Result<Response<v1::TailResponse>, Status> {
        let target = format!("{}@{}", request.get_ref().agent, request.get_ref().host);
        let caller = self.authorize(&request, Verb::Watch, &target)?;
        let req = request.into_inner();
        if !self.is_self(&req.host) {
            let peer = self.peer_for(&req.host).await?;
            let tail = |c, r| async move { v1::fleet_client::FleetClient::new(c).tail_pane(r).await };
            return forward(&peer, &caller, req, Some(Duration::from_secs(5)), tail).await.map(Response::new);
        }
        let view = self.live.current();
        let Some(roster) = view.roster.as_deref() else {
            return Err(Status::failed_precondition(format!("host {} has no valid roster", self.info.host)));
        };
        self.roster_agent(roster, &req.agent)?;
        let socket = self.socket_of(&req.agent);
        let holder = roster.holder_session.clone();
        let lines = if req.lines == 0 { fleet_tmux::tail::DEFAULT_LINES } else { req.lines };
        let (agent, ansi, delivery) = (req.agent.clone(), req.ansi, self.delivery.clone());
        // Through the socket's control-mode client (no process spawned), else by spawning tmux.
        let tail = tokio::task::spawn_blocking(move || {
            let via = delivery.with_control(&socket, holder.as_deref(), |run| {
                fleet_tmux::tail::tail_via(|w| run(w), &agent, lines, ansi)
            });
            via.unwrap_or_else(|| fleet_tmux::tail::tail(&fleet_tmux::tmux::Tmux::new(socket), &agent, lines, ansi))
        })
        .await
        .map_err(|e| Status::internal(format!("tail task failed: {e}")))?;
        match tail {
            Ok(t) => Ok(Response::new(v1::TailResponse {
                tenant_id: self.info.tenant.to_string(),
                host: self.info.host.to_string(),
                agent: req.agent,
                lines: t.lines,
                pane_width: t.width,
                pane_height: t.height,
                captured_unix_ms: crate::live::now_ms(),
            })),
            Err(e) if e.is_no_target() => {
                Err(Status::not_found(fleet_core::message::not_running(&req.agent, &self.info.host)))
            }
            Err(e) => Err(Status::internal(e.to_string())),
        }
    }

    pub(crate) async fn peer_for(&self, host: &str) -> Result<Arc<crate::peers::Peer>, Status> {
        if let Some(p) = self.peers.by_host(host) {
            return Ok(p);
        }
        if let Some(m) = self.peers.down(host) {
            let mut s = Status::unavailable(down_message(&m, crate::live::now_ms()));
            // Nothing was forwarded: a caller may tell the sender so (see NOT_FORWARDED).
            s.metadata_mut().insert(NOT_FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
            return Err(s);
        }
        self.peers.by_host(host).ok_or_else(|| {
            let hosts: Vec<String> =
                std::iter::once(self.info.host.to_string()).chain(self.peers.known_hosts()).collect();
            let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
            Status::not_found(format!(
                "no node for host {host} in the mesh ({})",
                fleet_core::names::known(host, &hosts)
            ))
        })
    }
}

/// `host H is down ...`: a host that membership knows but declared down, with how long ago it
/// was last heard from (when it ever was), at `now_ms`.
fn down_message(m: &crate::membership::MemberInfo, now_ms: i64) -> String {
    let heard = if m.last_seen_ms > 0 {
        format!(", last heard from {} s ago", (now_ms - m.last_seen_ms).max(0) / 1000)
    } else {
        String::new()
    };
    format!(
        "host {} is down (membership: no answer to probes{heard}; its node at {} was not called): check that \
         host and its `fleet node`; `fleet peers` shows when it is back",
        m.id.host, m.id.grpc
    )
}

/// The tmux socket of `agent` in `roster` (the roster's own for a session it
/// does not name; the default server without a roster).
pub(crate) fn socket_in(roster: Option<&fleet_core::roster::Roster>, agent: &str) -> TmuxSocket {
    match roster {
        Some(r) => r.agent(agent).map(|a| r.socket_of(a).clone()).unwrap_or_else(|| r.socket.clone()),
        None => TmuxSocket::Default,
    }
}

/// `LIFECYCLE_OUTCOME_STARTED` -> `started`.
pub fn short_name(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix).to_ascii_lowercase()
}

/// A peer's error, naming the peer, so the CLI does not blame its own node.
pub(crate) fn peer_error(peer: &crate::peers::Peer, s: Status) -> Status {
    let mut why = s.message().to_string();
    let mut src = std::error::Error::source(&s);
    while let Some(e) = src {
        // Wrappers repeat their cause ("transport error: transport error"): each piece once.
        let piece = e.to_string();
        if !why.contains(&piece) {
            why.push_str(&format!(": {piece}"));
        }
        src = e.source();
    }
    let msg = format!("node {} at {}: {why} (see `fleet peers`)", peer.label(), peer.address);
    match s.code() {
        // A cut call to the peer is the peer being unreachable, not this node.
        tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded => Status::unavailable(msg),
        code => Status::new(code, msg),
    }
}

/// How long a start or stop waits for the node's view to show it ([`lifecycle_shown`]).
const LIFECYCLE_SHOWN_WAIT: Duration = Duration::from_secs(2);

/// Does `view` show what a start or stop of agent `name` did (`outcome`)? A started agent has
/// a session (alive, or dead and kept by remain-on-exit); a stopped one has no live pane; a
/// failure shows nothing to wait for.
fn lifecycle_shown(
    view: &crate::live::HostView,
    name: &str,
    outcome: &Result<fleet_tmux::lifecycle::Outcome, String>,
) -> bool {
    use fleet_core::record::PaneState;
    use fleet_tmux::lifecycle::Outcome;
    let pane = view.agents.iter().find(|a| a.managed && a.name == name).map(|a| a.pane);
    match outcome {
        Ok(Outcome::Started | Outcome::AlreadyRunning) => pane.is_some_and(|p| p != PaneState::Missing),
        Ok(Outcome::Stopped | Outcome::NotRunning) => pane != Some(PaneState::Alive),
        Err(_) => true,
    }
}

/// Call `peer` (from [`Node::peer_for`]) for `caller`: its channel, the original principal
/// in the metadata, `timeout` (sent along, so the peer gives up too); a failure names the
/// peer and why (`peer_error`). `call` is the one RPC, e.g.
/// `|c, r| async move { FleetClient::new(c).add_agent(r).await }`.
pub(crate) async fn forward<R, T, F, Fut>(
    peer: &crate::peers::Peer,
    caller: &Caller,
    req: R,
    timeout: Option<Duration>,
    call: F,
) -> Result<T, Status>
where
    F: FnOnce(tonic::transport::Channel, Request<R>) -> Fut,
    Fut: std::future::Future<Output = Result<Response<T>, Status>>,
{
    let mut fwd = Request::new(req);
    forward_meta(&mut fwd, caller);
    if let Some(t) = timeout {
        fwd.set_timeout(t);
    }
    call(peer.channel(), fwd).await.map(Response::into_inner).map_err(|s| peer_error(peer, s))
}

pub(crate) fn forward_meta<T>(req: &mut Request<T>, caller: &Caller) {
    if let Ok(v) = caller.principal.parse() {
        req.metadata_mut().insert(ON_BEHALF_OF, v);
    }
}

/// Events buffered per subscriber before it counts as lagging.
const STREAM_BUFFER: usize = 256;
/// How long a subscriber may take to read a snapshot.
const SNAPSHOT_SEND_TIMEOUT: Duration = Duration::from_secs(10);

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::HeartbeatEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Fleet for NodeService {
    async fn list_agents(
        &self,
        request: Request<v1::ListAgentsRequest>,
    ) -> Result<Response<v1::ListAgentsResponse>, Status> {
        let node = &self.0;
        node.authorize(&request, Verb::List, "")?;
        let req = request.into_inner();
        let mesh = req.scope == v1::Scope::Mesh as i32;
        node.check_host_filter(&req.hosts, mesh)?;
        let want = |h: &str| req.hosts.is_empty() || req.hosts.iter().any(|x| x.eq_ignore_ascii_case(h));
        let mut resp = node.local_state();
        if !want(node.info.host.as_str()) {
            resp.agents.clear();
            resp.hosts.clear();
        }
        if mesh {
            let deadline = if req.deadline_ms == 0 {
                node.info.fanout_deadline
            } else {
                Duration::from_millis(req.deadline_ms.into())
            };
            let (a, h) = node.peers.list(&req.hosts, deadline, req.fresh).await;
            resp.encoded_agents = a;
            resp.hosts.extend(h.into_iter().map(Into::into));
        }
        Ok(Response::new(resp))
    }

    type WatchHeartbeatsStream = EventStream;

    async fn watch_heartbeats(
        &self,
        request: Request<v1::WatchHeartbeatsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let node = self.0.clone();
        node.authorize(&request, Verb::Watch, "")?;
        let req = request.into_inner();
        let mesh = req.scope == v1::Scope::Mesh as i32;
        let hosts = req.hosts.clone();
        let want = move |e: &Event| hosts.is_empty() || hosts.iter().any(|h| h.eq_ignore_ascii_case(&e.host));
        let mut local = node.live.events.subscribe();
        let mut remote = if mesh { Some(node.peers.events.subscribe()) } else { None };
        // While this stream lasts, every peer's events come from its feed (milliseconds).
        let watching = mesh.then(|| node.peers.watch_mesh());
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<v1::HeartbeatEvent, Status>>(STREAM_BUFFER);
        let cancel = node.cancel.clone();
        // Host ticks for a node that keeps a replica of this host (LOCAL only).
        let tick_every =
            (!mesh && req.host_tick_ms > 0).then(|| Duration::from_millis(req.host_tick_ms.max(500).into()));
        tokio::spawn(async move {
            let _watching = watching;
            let snapshot =
                |node: &Node| -> Vec<Event> { node.snapshot_events(mesh).into_iter().filter(|e| want(e)).collect() };
            // Snapshots go out with back-pressure (the subscriber asked for them);
            // one that is not read within the timeout ends the stream.
            let send_all = |evs: Vec<Event>, tx: tokio::sync::mpsc::Sender<Result<v1::HeartbeatEvent, Status>>| async move {
                for e in evs {
                    match tokio::time::timeout(SNAPSHOT_SEND_TIMEOUT, tx.send(Ok(e.into()))).await {
                        Ok(Ok(())) => {}
                        _ => return false,
                    }
                }
                true
            };
            if req.snapshot && !send_all(snapshot(&node), tx.clone()).await {
                return;
            }
            // Live events never wait: a full buffer is counted, and once the client
            // has room again it gets `lagged` and a fresh snapshot.
            let mut dropped: u64 = 0;
            let mut tick = tokio::time::interval(tick_every.unwrap_or(Duration::from_secs(3600)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (mut ticks, mut sent_key) = (0u32, None);
            loop {
                let next = tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tx.closed() => return,
                    permit = tx.reserve(), if dropped > 0 => {
                        let Ok(permit) = permit else { return };
                        let lag = crate::live::host_event(
                            node.info.tenant.as_str(),
                            node.info.host.as_str(),
                            EventKind::Lagged { dropped },
                        );
                        permit.send(Ok(lag.into()));
                        dropped = 0;
                        if !send_all(snapshot(&node), tx.clone()).await {
                            return;
                        }
                        continue;
                    }
                    _ = tick.tick(), if tick_every.is_some() => {
                        let view = node.live.current();
                        let key = crate::replica::rows_key(&view.agents);
                        let agents = crate::replica::send_rows(ticks, sent_key.as_ref() != Some(&key))
                            .then(|| view.agents.clone());
                        if agents.is_some() {
                            sent_key = Some(key);
                        }
                        ticks = ticks.wrapping_add(1);
                        let status = Box::new(node.self_status(&view));
                        Ok(crate::live::host_event(
                            node.info.tenant.as_str(),
                            node.info.host.as_str(),
                            EventKind::HostTick { status, agents },
                        ))
                    }
                    e = local.recv() => e,
                    e = async { remote.as_mut().expect("mesh").recv().await }, if remote.is_some() => e,
                };
                match next {
                    Ok(ev) if want(&ev) => match tx.try_send(Ok(ev.into())) {
                        Ok(()) => {}
                        Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => dropped += 1,
                        Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return,
                    },
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => dropped += n,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn send_message(&self, request: Request<v1::SendRequest>) -> Result<Response<v1::SendReceipt>, Status> {
        let node = self.0.clone();
        let target = format!("{}@{}", request.get_ref().agent, request.get_ref().host);
        let caller = node.authorize(&request, Verb::Send, &target)?;
        let req = request.into_inner();
        let result: Result<(v1::SendReceipt, bool), Status> = if node.is_self(&req.host) {
            // Scoped by caller and target: the same key elsewhere is another send.
            let scope = format!("{}\n{}@{}", caller.principal, req.agent, node.info.host);
            let key = req.idempotency_key.clone();
            let (n, c) = (node.clone(), caller.clone());
            node.idem.once(&scope, &key, async move { n.send_local(&c, req).await }).await
        } else {
            node.forward_send(&caller, req).await.map(|r| (r, false))
        };
        match result {
            Ok((receipt, duplicate)) => {
                let target = format!("{}@{}", receipt.agent, receipt.host);
                if duplicate {
                    node.audit(&caller, Verb::Send, &target, "duplicate", Some("answered from the idempotency cache"));
                    return Ok(Response::new(v1::SendReceipt { duplicate: true, ..receipt }));
                }
                let outcome = fleet_proto::convert::outcome_word_of(receipt.outcome);
                node.metrics.send(outcome);
                node.audit(
                    &caller,
                    Verb::Send,
                    &target,
                    outcome,
                    Some(receipt.detail.as_str()).filter(|d| !d.is_empty()),
                );
                Ok(Response::new(receipt))
            }
            Err(status) => {
                node.metrics.send("error");
                node.audit(&caller, Verb::Send, &target, "error", Some(status.message()));
                Err(status)
            }
        }
    }

    async fn start_agent(
        &self,
        request: Request<v1::LifecycleRequest>,
    ) -> Result<Response<v1::LifecycleResponse>, Status> {
        self.0.lifecycle(true, request).await
    }

    async fn stop_agent(
        &self,
        request: Request<v1::LifecycleRequest>,
    ) -> Result<Response<v1::LifecycleResponse>, Status> {
        self.0.lifecycle(false, request).await
    }

    async fn tail_pane(&self, request: Request<v1::TailRequest>) -> Result<Response<v1::TailResponse>, Status> {
        self.0.tail(request).await
    }

    type WatchPaneStream = crate::terminal::FrameStream;

    async fn watch_pane(
        &self,
        request: Request<v1::WatchPaneRequest>,
    ) -> Result<Response<Self::WatchPaneStream>, Status> {
        self.0.watch_pane(request).await
    }

    type AttachPaneStream = crate::terminal::FrameStream;

    async fn attach_pane(
        &self,
        request: Request<tonic::Streaming<v1::AttachInput>>,
    ) -> Result<Response<Self::AttachPaneStream>, Status> {
        self.0.attach_pane(request.map(|s| Box::pin(s) as crate::terminal::InputStream)).await
    }

    async fn add_agent(
        &self,
        request: Request<v1::AddAgentRequest>,
    ) -> Result<Response<v1::RosterChangeResponse>, Status> {
        self.0.add_agent(request).await
    }

    async fn remove_agent(
        &self,
        request: Request<v1::RemoveAgentRequest>,
    ) -> Result<Response<v1::RosterChangeResponse>, Status> {
        self.0.remove_agent(request).await
    }

    async fn reset_agent(&self, request: Request<v1::ResetAgentRequest>) -> Result<Response<v1::SendReceipt>, Status> {
        self.0.reset_agent(request).await
    }

    async fn verify_host(
        &self,
        request: Request<v1::VerifyHostRequest>,
    ) -> Result<Response<v1::VerifyHostResponse>, Status> {
        self.0.verify_host(request).await
    }
}

#[tonic::async_trait]
impl Mesh for NodeService {
    async fn list_peers(
        &self,
        request: Request<v1::ListPeersRequest>,
    ) -> Result<Response<v1::ListPeersResponse>, Status> {
        let node = &self.0;
        node.authorize(&request, Verb::Peers, "")?;
        let mut peers = vec![v1::Peer {
            tenant_id: node.info.tenant.to_string(),
            host: node.info.host.to_string(),
            grpc_address: node.info.grpc_address.clone(),
            quic_address: node.info.grpc_address.clone(),
            state: v1::PeerState::Alive as i32,
            incarnation: 0,
            generation: node.info.generation,
            found_by: v1::Discovery::Self_ as i32,
            last_seen_unix_ms: now_ms(),
        }];
        // The membership view itself: its rows are rewritten within 20 ms of every
        // datagram, so `last_seen` is current (the peer list is updated on changes only).
        let rows = node.members.members.borrow().clone();
        for m in rows {
            peers.push(v1::Peer {
                tenant_id: m.id.tenant.clone(),
                host: m.id.host.clone(),
                grpc_address: m.id.grpc.to_string(),
                quic_address: m.id.quic.to_string(),
                state: match m.state {
                    MemberState::Alive => v1::PeerState::Alive,
                    MemberState::Suspect => v1::PeerState::Suspect,
                    MemberState::Down => v1::PeerState::Down,
                } as i32,
                incarnation: m.incarnation,
                generation: m.id.generation,
                found_by: match m.found_by {
                    FoundBy::Static => v1::Discovery::Static,
                    FoundBy::Mdns => v1::Discovery::Mdns,
                    FoundBy::Gossip => v1::Discovery::Gossip,
                } as i32,
                last_seen_unix_ms: m.last_seen_ms,
            });
        }
        Ok(Response::new(v1::ListPeersResponse { peers }))
    }

    async fn node_info(&self, request: Request<v1::NodeInfoRequest>) -> Result<Response<v1::NodeInfoResponse>, Status> {
        let node = &self.0;
        node.authorize(&request, Verb::Info, "")?;
        let counts = node.members.counts();
        Ok(Response::new(v1::NodeInfoResponse {
            tenant_id: node.info.tenant.to_string(),
            host: node.info.host.to_string(),
            version: env!("CARGO_PKG_VERSION").into(),
            generation: node.info.generation,
            grpc_address: node.info.grpc_address.clone(),
            quic_address: String::new(),
            mesh_fingerprint: node.info.mesh_fingerprint.clone(),
            started_unix_ms: node.info.started_unix_ms,
            membership_bytes_in: node.members.bytes_in.load(std::sync::atomic::Ordering::Relaxed),
            membership_bytes_out: node.members.bytes_out.load(std::sync::atomic::Ordering::Relaxed),
            members: counts.total,
            members_alive: counts.alive,
            members_suspect: counts.suspect,
            audit_write_failures: node.audit.failures(),
            tls_refused_failed: node.tls_refusals.count(Refusal::Failed),
            tls_refused_timed_out: node.tls_refusals.count(Refusal::TimedOut),
            tls_refused_shed: node.tls_refusals.count(Refusal::Shed),
            tls_refused_no_client_cert: node.tls_refusals.count(Refusal::NoClientCert),
            tls_refused_bad_client_cert: node.tls_refusals.count(Refusal::BadClientCert),
            membership_refused_claims: node.members.refused_claims(),
            tasks_alive: tokio::runtime::Handle::current().metrics().num_alive_tasks() as u64,
            web_url: node.info.web_url.clone(),
            membership_connections: node.members.connections() as u32,
            peer_channels: node.peers.current().iter().filter(|p| p.has_channel()).count() as u32,
            peer_feeds: node.peers.fed.lock().expect("fed").len() as u32,
            replica_fetches: node.peers.fetches.load(std::sync::atomic::Ordering::Relaxed),
        }))
    }
}

#[tonic::async_trait]
impl Queue for NodeService {
    async fn queue_message(&self, request: Request<v1::QueueRequest>) -> Result<Response<v1::SendReceipt>, Status> {
        let node = self.0.clone();
        let (agent, host) =
            request.get_ref().send.as_ref().map(|s| (s.agent.clone(), s.host.clone())).unwrap_or_default();
        let target = format!("{agent}@{host}");
        let caller = node.authorize(&request, Verb::Send, &target)?;
        let req = request.into_inner();
        let result = if node.is_self(&host) {
            node.queue_local(&caller, req).await
        } else {
            node.forward_queue(&caller, req).await
        };
        match result {
            Ok(receipt) => {
                let target = format!("{}@{}", receipt.agent, receipt.host);
                let outcome = if receipt.duplicate {
                    "duplicate"
                } else {
                    fleet_proto::convert::outcome_word_of(receipt.outcome)
                };
                node.audit(
                    &caller,
                    Verb::Send,
                    &target,
                    outcome,
                    Some(receipt.detail.as_str()).filter(|d| !d.is_empty()),
                );
                Ok(Response::new(receipt))
            }
            Err(status) => {
                node.audit(&caller, Verb::Send, &target, "error", Some(status.message()));
                Err(status)
            }
        }
    }

    async fn list_queue(
        &self,
        request: Request<v1::ListQueueRequest>,
    ) -> Result<Response<v1::ListQueueResponse>, Status> {
        let node = &self.0;
        node.authorize(&request, Verb::List, "")?;
        node.list_queue(request.into_inner()).await.map(Response::new)
    }

    async fn cancel_queued(
        &self,
        request: Request<v1::CancelQueuedRequest>,
    ) -> Result<Response<v1::CancelQueuedResponse>, Status> {
        let node = &self.0;
        let target = format!("queued:{}@{}", request.get_ref().id, request.get_ref().host);
        let caller = node.authorize(&request, Verb::Send, &target)?;
        let req = request.into_inner();
        let result = node.cancel_queued(&caller, req).await;
        match &result {
            Ok(r) => {
                let m = r.message.clone().unwrap_or_default();
                node.audit(
                    &caller,
                    Verb::Send,
                    &format!("{}@{}", m.agent, m.host),
                    "cancelled",
                    Some(&format!("queued message {}", m.id)),
                );
            }
            Err(s) => node.audit(&caller, Verb::Send, &target, "error", Some(s.message())),
        }
        result.map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::HostView;
    use fleet_core::record::{AgentRecord, PaneState};
    use fleet_tmux::lifecycle::Outcome;

    #[test]
    fn a_start_shows_as_a_session_and_a_stop_as_no_live_pane() {
        let row = |name, pane| AgentRecord { pane, ..crate::replica::tests::record(name) };
        let view = |rows: Vec<AgentRecord>| HostView { agents: rows, ..Default::default() };
        let started = [Ok(Outcome::Started), Ok(Outcome::AlreadyRunning)];
        let stopped = [Ok(Outcome::Stopped), Ok(Outcome::NotRunning)];
        for r in &started {
            assert!(lifecycle_shown(&view(vec![row("w", PaneState::Alive)]), "w", r));
            assert!(lifecycle_shown(&view(vec![row("w", PaneState::Dead)]), "w", r), "kept by remain-on-exit");
            assert!(!lifecycle_shown(&view(vec![row("w", PaneState::Missing)]), "w", r));
            assert!(!lifecycle_shown(&view(vec![row("x", PaneState::Alive)]), "w", r), "no row of w yet");
            let unmanaged = AgentRecord { managed: false, ..row("w", PaneState::Alive) };
            assert!(!lifecycle_shown(&view(vec![unmanaged]), "w", r), "a session the roster does not name");
        }
        for r in &stopped {
            assert!(!lifecycle_shown(&view(vec![row("w", PaneState::Alive)]), "w", r));
            assert!(lifecycle_shown(&view(vec![row("w", PaneState::Dead)]), "w", r));
            assert!(lifecycle_shown(&view(vec![row("w", PaneState::Missing)]), "w", r));
            assert!(lifecycle_shown(&view(vec![]), "w", r), "no row: nothing alive");
        }
        assert!(lifecycle_shown(&view(vec![]), "w", &Err("tmux: no server".into())), "a failure: nothing to wait for");
    }
}
