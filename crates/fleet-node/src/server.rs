//! Running a node: identity, both doors, the live view, the peer feeds, and
//! an orderly shutdown.

use crate::authority::AuthorityFix;
use crate::config::NodeConfig;
use crate::idem::Idempotency;
use crate::live::{self, LiveConfig};
use crate::membership::{self, FoundBy, MemberId, Membership};
use crate::peers::{self, Peers};
use crate::service::{Node, NodeInfo, NodeService};
use fleet_core::names::DnsLabel;
use fleet_proto::v1;
use fleet_proto::v1::fleet_server::FleetServer;
use fleet_proto::v1::mesh_server::MeshServer;
use fleet_tls::audit::AuditLog;
use fleet_tls::config::{Identity, client_config, server_config};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::{broadcast, watch};
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Server;
use tonic::transport::server::Router;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Bad configuration or identity: exit 2, nothing bound.
    #[error("{0}")]
    Config(String),
    /// Could not bind or serve: exit 1.
    #[error("{0}")]
    Serve(String),
}

/// How often static peer names that resolve are resolved again.
const RESOLVE_EVERY: Duration = Duration::from_secs(60);

/// Static peers are `HOST:PORT` names: resolved at start, again every
/// [`RESOLVE_EVERY`] (a host whose address changes is followed: the old
/// address is withdrawn from the seeds), and every `retry`
/// while one does not resolve (a node started before the name service is up
/// joins once it is). Each change of a name's answer is logged once.
async fn follow_static_peers(names: Vec<String>, members: Membership, retry: Duration, cancel: CancellationToken) {
    let mut last: HashMap<&str, Result<std::net::SocketAddr, String>> = HashMap::new();
    loop {
        let mut unresolved = false;
        for name in &names {
            let now = match tokio::net::lookup_host(name.as_str()).await.map(|mut a| a.next()) {
                Ok(Some(addr)) => Ok(addr),
                Ok(None) => Err("no address".to_string()),
                Err(e) => Err(e.to_string()),
            };
            match &now {
                Ok(addr) => members.seed(*addr, FoundBy::Static),
                Err(_) => unresolved = true,
            }
            // The name moved: its old address is no longer a seed (a failed lookup keeps it).
            if let (Some(Ok(old)), Ok(new)) = (last.get(name.as_str()), &now)
                && old != new
            {
                members.withdraw(*old);
            }
            if last.get(name.as_str()) != Some(&now) {
                match &now {
                    Ok(addr) => tracing::info!(peer = %name, %addr, "static peer resolves"),
                    Err(e) => {
                        tracing::warn!(peer = %name, error = %e, retry_s = retry.as_secs_f64(), "static peer does not resolve; retrying")
                    }
                }
                last.insert(name.as_str(), now);
            }
        }
        let wait = if unresolved { retry } else { RESOLVE_EVERY };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// The roster's `tenant_id`, when the roster is there, valid, and says one.
fn roster_tenant(cfg: &NodeConfig) -> Option<DnsLabel> {
    let text = fleet_core::file::read_to_string(&cfg.roster, fleet_core::file::ROSTER_MAX).ok()?;
    fleet_core::roster::Roster::parse(&text).ok()?.tenant_id
}

/// Who this node is, from its certificate (or a fresh one-host mesh, for the
/// configured tenant, else the roster's, else the user name).
fn resolve_identity(cfg: &NodeConfig, roster_tenant: Option<&DnsLabel>) -> Result<(DnsLabel, DnsLabel), NodeError> {
    let bad = |e: fleet_tls::Error| NodeError::Config(e.to_string());
    match fleet_tls::setup::node_principal(&cfg.certs_dir).map_err(bad)? {
        Some(p) => {
            let host = DnsLabel::parse_as("host name", &p.name).map_err(|e| NodeError::Config(e.to_string()))?;
            for (what, configured, actual) in [("tenant_id", &cfg.tenant_id, &p.tenant), ("host", &cfg.host, &host)] {
                if let Some(c) = configured
                    && c != actual
                {
                    return Err(NodeError::Config(format!(
                        "the configuration says {what} {c}, but the node certificate in {} says {actual}: \
                         the certificate decides which mesh a host belongs to; fix {what} or use another certs_dir",
                        cfg.certs_dir.display()
                    )));
                }
            }
            Ok((p.tenant, host))
        }
        None => {
            let tenant = match cfg.tenant_id.clone().or_else(|| roster_tenant.cloned()) {
                Some(t) => t,
                None => DnsLabel::sanitize("user name", &user_name())
                    .map_err(|e| NodeError::Config(format!("{e}; set tenant_id in node.yaml or FLEET_TENANT_ID")))?,
            };
            let host = match &cfg.host {
                Some(h) => h.clone(),
                None => DnsLabel::sanitize("host name", &short_hostname())
                    .map_err(|e| NodeError::Config(format!("{e}; set host in node.yaml or FLEET_HOST")))?,
            };
            if let Some(created) = fleet_tls::setup::ensure_mesh(&cfg.certs_dir, &tenant, &host).map_err(bad)? {
                let files: Vec<String> = created.written.iter().map(|p| p.display().to_string()).collect();
                tracing::info!(
                    certs_dir = %cfg.certs_dir.display(),
                    new_ca = created.new_ca,
                    files = %files.join(", "),
                    "first run: created a one-host mesh (see docs/security.md to add a host)"
                );
            }
            Ok((tenant, host))
        }
    }
}

/// The login name: `$USER`, else `$LOGNAME`, else `uid<N>` (the CLI uses this too).
pub fn user_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid{}", rustix::process::getuid().as_raw()))
}

/// The host name up to its first dot (the CLI uses this too).
pub fn short_hostname() -> String {
    let uname = rustix::system::uname();
    uname.nodename().to_string_lossy().split('.').next().unwrap_or("localhost").to_string()
}

/// How long a node that holds the local door's path has to answer before it is taken for gone.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// Does a node answer on `path`? Connecting is not enough: the socket of a node that is
/// still exiting (killed a moment ago) takes connections into its backlog, and nobody
/// serves them. A node answers `NodeInfo`, as it does for `fleet` on this host.
async fn node_answers(path: &Path) -> bool {
    let target = crate::client::Target::Socket(path.to_path_buf());
    let asked = async { crate::client::mesh(&target).await.ok()?.node_info(v1::NodeInfoRequest {}).await.ok() };
    matches!(tokio::time::timeout(ANSWER_WITHIN, asked).await, Ok(Some(_)))
}

/// Bind the local door: a Unix socket created 0600 (umask during bind), after
/// making sure no other node answers on it.
async fn bind_local_door(path: &Path) -> Result<UnixListener, NodeError> {
    if node_answers(path).await {
        return Err(NodeError::Serve(format!(
            "another fleet node already answers on {}: stop it first (one node per tenant and host)",
            path.display()
        )));
    }
    let _ = std::fs::remove_file(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| NodeError::Serve(format!("cannot create {}: {e}", dir.display())))?;
    }
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let bound = UnixListener::bind(path);
    rustix::process::umask(old);
    bound.map_err(|e| NodeError::Serve(format!("cannot bind the local door {}: {e}", path.display())))
}

/// The local door's connections, each checked: the peer's uid must be ours; and made
/// acceptable to h2 for stock gRPC clients (see [`AuthorityFix`]).
fn local_incoming(
    listener: UnixListener,
    uid: u32,
    audit: Arc<AuditLog>,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<AuthorityFix<UnixStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                () = tx.closed() => return,
                a = listener.accept() => match a {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "local door accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let peer_uid = stream.peer_cred().ok().map(|c| c.uid());
            if peer_uid != Some(uid) {
                let who = format!("local:uid{}", peer_uid.map(|u| u.to_string()).unwrap_or_else(|| "?".into()));
                tracing::warn!(peer = %who, "local door refused a connection from another uid");
                let ev = fleet_tls::audit::AuditEvent {
                    principal: &who,
                    peer: "unix",
                    verb: fleet_tls::Verb::List,
                    target: "",
                    outcome: fleet_tls::audit::DENIED,
                    detail: Some("the local door admits only the node's own uid"),
                };
                let _ = audit.append(&ev);
                continue;
            }
            if tx.send(Ok(AuthorityFix::new(stream))).await.is_err() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Run a node until SIGINT/SIGTERM or `cancel`.
pub async fn run(cfg: NodeConfig, fleet_exe: PathBuf, cancel: CancellationToken) -> Result<(), NodeError> {
    fleet_tls::install_crypto_provider();
    let nofile = nofile_limit();
    let me = load_identity(&cfg)?;
    // Both doors are bound before anything else runs; a failure leaves nothing behind.
    let doors = bind_doors(&cfg, &me, nofile).await?;
    let tracker = TaskTracker::new();
    let live = start_live(&cfg, &me, &cancel, &tracker).await;
    let generation = (live::now_ms() as u64).rotate_left(20) ^ u64::from(std::process::id());
    let members = start_membership(&cfg, &me, &doors, generation, &cancel, &tracker);
    let mdns = start_mdns_seeding(&cfg, &me, &doors, generation, &members, &cancel, &tracker);
    let (peers, client_tls_tx) = start_peer_feeds(&me, &members, &cfg.timings, &cancel, &tracker);
    let queue_dir = cfg.mosaic_home.join("fleet/queue");
    let queue = Arc::new(crate::queue::Store::open(&queue_dir).map_err(|e| {
        NodeError::Serve(format!(
            "cannot open the message queue {}: {e} (it must be a directory this user can write)",
            queue_dir.display()
        ))
    })?);
    let node = Arc::new(Node {
        info: NodeInfo {
            tenant: me.tenant.clone(),
            host: me.host.clone(),
            generation,
            grpc_address: doors.grpc_address.clone(),
            mesh_fingerprint: me.fingerprint.clone(),
            started_unix_ms: live::now_ms(),
            fleet_exe,
            mosaic_home: cfg.mosaic_home.clone(),
            run_dir: cfg.run_dir.clone(),
            interval_secs: cfg.heartbeat_interval_secs,
            fanout_deadline: cfg.timings.fanout_deadline,
            roster: cfg.roster.clone(),
            web_url: doors.web.as_ref().map(|w| w.url.clone()).unwrap_or_default(),
        },
        live,
        peers,
        members: members.clone(),
        panes: Default::default(),
        idle: Default::default(),
        queue,
        audit: me.audit.clone(),
        idem: Idempotency::new(cfg.timings.idempotency_ttl),
        delivery: Default::default(),
        cancel: cancel.clone(),
        uid: rustix::process::getuid().as_raw(),
        tls_refusals: doors.tls.refusals(),
        metrics: Default::default(),
        state_version: Default::default(),
    });
    node.members.serve_rows(Node::rows_source(&node));
    tracker.spawn(crate::replica::number_states(node.clone(), cancel.clone()));
    tracker.spawn(peers::follow_versions(node.peers.clone(), members.versions.clone(), cancel.clone()));
    tracker.spawn(crate::queue::run(node.clone(), cancel.clone()));
    tracker.spawn(crate::roster_verbs::keep_comms_fresh(node.clone(), cancel.clone()));
    tracker.spawn(crate::memory::give_back(cancel.clone()));
    let serving = serve(&cfg, me, doors, node, &members, client_tls_tx, &cancel, &tracker).await?;
    shut_down(&cfg, serving, mdns, &cancel, &tracker).await
}

/// Who this node is, found before anything is bound: names, TLS configs, the audit log.
struct Me {
    tenant: DnsLabel,
    host: DnsLabel,
    identity: Identity,
    server_tls: Arc<rustls::ServerConfig>,
    client_tls: Arc<rustls::ClientConfig>,
    fingerprint: String,
    audit: Arc<AuditLog>,
}

fn load_identity(cfg: &NodeConfig) -> Result<Me, NodeError> {
    // The roster is read once here: a first run takes its tenant, every run is checked against it.
    let in_roster = roster_tenant(cfg);
    let (tenant, host) = resolve_identity(cfg, in_roster.as_ref())?;
    if let Some(t) = in_roster
        && t != tenant
    {
        return Err(NodeError::Config(format!(
            "the roster {} says tenant_id {t}, but this node's certificate says {tenant}: fix the roster or the certs dir",
            cfg.roster.display()
        )));
    }
    let identity = Identity::node(&cfg.certs_dir).map_err(|e| NodeError::Config(e.to_string()))?;
    let server_tls = server_config(&identity).map_err(|e| NodeError::Config(e.to_string()))?;
    let client_tls = client_config(&identity).map_err(|e| NodeError::Config(e.to_string()))?;
    let fingerprint = fleet_tls::show::mesh_fingerprint(identity.ca.as_ref());
    let audit = Arc::new(AuditLog::open(&cfg.audit_log).map_err(|e| NodeError::Config(e.to_string()))?);
    Ok(Me { tenant, host, identity, server_tls, client_tls, fingerprint, audit })
}

/// Both doors, bound: the TCP listener (already accepting TLS handshakes), the QUIC endpoint
/// on the same port number, the Unix socket (removed again when this is dropped).
struct Doors {
    tls: fleet_tls::net::TlsIncoming,
    tls_config: watch::Sender<Arc<rustls::ServerConfig>>,
    tcp_addr: std::net::SocketAddr,
    grpc_address: String,
    endpoint: quinn::Endpoint,
    unix: UnixListener,
    socket_file: RemoveOnDrop,
    /// The web door, unless it is off.
    web: Option<crate::web::Bound>,
    /// The enrollment door, on a node that holds the CA key, unless it is off.
    enroll: Option<EnrollDoor>,
}

/// The enrollment door, bound: TLS without client certificates, serving `Enroll` only.
struct EnrollDoor {
    tls: fleet_tls::net::TlsIncoming,
    config: watch::Sender<Arc<rustls::ServerConfig>>,
    /// As the joiner dials it.
    address: String,
}

/// Bind the enrollment door when this node holds the mesh CA key and `enroll_listen` is not
/// off. A default address that is taken only costs the door (logged); a given one stops the
/// node.
async fn bind_enroll_door(cfg: &NodeConfig, me: &Me) -> Result<Option<EnrollDoor>, NodeError> {
    let Some(addr) = cfg.certs.enroll_listen else { return Ok(None) };
    if !fleet_tls::CertsDir::new(&cfg.certs_dir).ca_key().exists() {
        return Ok(None);
    }
    let config = fleet_tls::config::enroll_server_config(&me.identity).map_err(|e| NodeError::Config(e.to_string()))?;
    let tcp = match TcpListener::bind(addr).await {
        Ok(t) => t,
        Err(e) if !cfg.certs.enroll_explicit => {
            tracing::warn!(address = %addr, error = %e, "the enrollment door is closed: its default address is taken (set enroll_listen)");
            return Ok(None);
        }
        Err(e) => {
            return Err(NodeError::Serve(format!(
                "cannot listen on {addr} for the enrollment door: {e} (set enroll_listen or FLEET_ENROLL_LISTEN, or off)"
            )));
        }
    };
    let bound = tcp.local_addr().map_err(|e| NodeError::Serve(e.to_string()))?;
    let (tx, rx) = watch::channel(config);
    // A small door: few handshakes at once, from few sources.
    let limits = fleet_tls::net::Limits { max_in_flight: 64, per_source: 8, ..Default::default() };
    let tls = fleet_tls::net::TlsIncoming::with_limits(tcp, rx, limits).map_err(|e| NodeError::Serve(e.to_string()))?;
    tracing::info!(address = %bound, "enrollment door open (fleet join)");
    Ok(Some(EnrollDoor { tls, config: tx, address: advertise(bound).to_string() }))
}

/// `nofile`: the open files limit in force, which bounds the TLS handshakes in flight.
async fn bind_doors(cfg: &NodeConfig, me: &Me, nofile: u64) -> Result<Doors, NodeError> {
    let tcp = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| NodeError::Serve(format!("cannot listen on {}: {e} (set listen or FLEET_LISTEN)", cfg.listen)))?;
    let tcp_addr = tcp.local_addr().map_err(|e| NodeError::Serve(e.to_string()))?;
    // Membership (QUIC) on the same port number, UDP.
    let reset = me.identity.derived_secret(membership::RESET_LABEL);
    let endpoint = membership::endpoint(tcp_addr, &me.server_tls, &me.client_tls, &reset).map_err(NodeError::Serve)?;
    let unix = bind_local_door(&cfg.socket).await?;
    // From here on, the socket file is removed however the node ends.
    let socket_file = RemoveOnDrop(cfg.socket.clone());
    let (tls_config, tls_rx) = watch::channel(me.server_tls.clone());
    let limits = fleet_tls::net::Limits::for_fd_limit(nofile);
    let tls =
        fleet_tls::net::TlsIncoming::with_limits(tcp, tls_rx, limits).map_err(|e| NodeError::Serve(e.to_string()))?;
    let grpc_address = advertise(tcp_addr).to_string();
    let web = match &cfg.web {
        Some(w) => crate::web::bind(w, &me.identity).await.map_err(NodeError::Serve)?,
        None => None,
    };
    let enroll = bind_enroll_door(cfg, me).await?;
    Ok(Doors { tls, tls_config, tcp_addr, grpc_address, endpoint, unix, socket_file, web, enroll })
}

/// The live view of this host: roster, tmux, heartbeats.
async fn start_live(cfg: &NodeConfig, me: &Me, cancel: &CancellationToken, tracker: &TaskTracker) -> live::Live {
    live::start(
        LiveConfig {
            tenant_id: me.tenant.to_string(),
            host: me.host.clone(),
            mosaic_home: cfg.mosaic_home.clone(),
            roster: cfg.roster.clone(),
            run_dir: cfg.run_dir.clone(),
            interval_secs: cfg.heartbeat_interval_secs,
            timings: cfg.timings.clone(),
            systemd: true,
        },
        cancel.clone(),
        tracker,
    )
    .await
}

/// Membership: SWIM over QUIC on the same port number, UDP, seeded by the static peers.
fn start_membership(
    cfg: &NodeConfig,
    me: &Me,
    doors: &Doors,
    generation: u64,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> Membership {
    let advertised = advertise(doors.tcp_addr);
    let id = MemberId {
        tenant: me.tenant.to_string(),
        host: me.host.to_string(),
        grpc: advertised,
        quic: advertised,
        generation,
        bump: 0,
    };
    let members = membership::start(id, doors.endpoint.clone(), cfg.timings.swim.clone(), cancel.clone(), tracker);
    if !cfg.peers.is_empty() {
        let retry = cfg.timings.swim.reseed;
        tracker.spawn(follow_static_peers(cfg.peers.clone(), members.clone(), retry, cancel.clone()));
    }
    members
}

/// mDNS: announce ourselves, and seed membership with whatever matching node answers
/// (records of another tenant or mesh never get this far). None when off or unavailable.
fn start_mdns_seeding(
    cfg: &NodeConfig,
    me: &Me,
    doors: &Doors,
    generation: u64,
    members: &Membership,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> Option<crate::mdns::Mdns> {
    if !cfg.mdns {
        return None;
    }
    let (found_tx, mut found_rx) = tokio::sync::mpsc::channel::<crate::mdns::Report>(64);
    let ann = crate::mdns::Announcement {
        tenant: me.tenant.to_string(),
        host: me.host.to_string(),
        mesh: me.fingerprint.clone(),
        grpc_port: doors.tcp_addr.port(),
        quic_port: doors.tcp_addr.port(),
        generation,
    };
    let mcfg = crate::mdns::MdnsConfig {
        allow_interfaces: cfg.mdns_allow_interfaces.clone(),
        deny_interfaces: cfg.mdns_deny_interfaces.clone(),
    };
    let m = match crate::mdns::Mdns::start(ann, &mcfg, found_tx) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "mDNS is off: peers come from static config and gossip only");
            return None;
        }
    };
    let members = members.clone();
    let cancel = cancel.clone();
    tracker.spawn(async move {
        loop {
            let found = tokio::select! {
                () = cancel.cancelled() => return,
                f = found_rx.recv() => match f { Some(f) => f, None => return },
            };
            match found {
                crate::mdns::Report::Found(found) => {
                    tracing::info!(host = %found.host, addrs = ?found.quic_addrs, "mdns: found a node of this mesh");
                    for addr in found.quic_addrs {
                        members.seed(addr, FoundBy::Mdns);
                    }
                }
                crate::mdns::Report::Gone(addrs) => {
                    for addr in addrs {
                        members.withdraw(addr);
                    }
                }
            }
        }
    });
    Some(m)
}

/// The peer list and per-peer gRPC channels, following membership; and the sender that
/// rotates the client TLS config they dial with.
fn start_peer_feeds(
    me: &Me,
    members: &Membership,
    timings: &crate::config::Timings,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> (Arc<Peers>, watch::Sender<Arc<rustls::ClientConfig>>) {
    let (peer_tx, peer_rx) = watch::channel(Vec::new());
    let (peer_events, _) = broadcast::channel(live::EVENT_CAPACITY);
    let peers = Arc::new(Peers {
        list: peer_rx,
        events: peer_events,
        known: Arc::new(Mutex::new(BTreeMap::new())),
        fed: Arc::new(Mutex::new(std::collections::HashMap::new())),
        replicas: Mutex::new(std::collections::HashMap::new()),
        watchers: watch::Sender::new(0),
        idle_close: timings.idle_close,
        feed_linger: timings.feed_linger,
        fetches: Default::default(),
        rows: members.rows(),
        tenant: me.tenant.to_string(),
    });
    let (client_tls_tx, client_tls_rx) = watch::channel(me.client_tls.clone());
    tracker.spawn(peers::follow_membership(
        members.members.clone(),
        peer_tx,
        peers.clone(),
        client_tls_rx,
        me.tenant.clone(),
        cancel.clone(),
    ));
    (peers, client_tls_tx)
}

/// The services both doors serve: Fleet and Mesh, health and reflection (v1 and, for older
/// tools, v1alpha), the last two behind the same authorization as the others.
fn build_router(
    node: &Arc<Node>,
    health: HealthServer<impl Health>,
    web: &crate::web::admin::WebAdmin,
    certs: &crate::enroll::CertsService,
) -> Result<Router<tower::layer::util::Stack<crate::metrics::RpcTimingLayer, tower::layer::util::Identity>>, NodeError>
{
    let svc = NodeService(node.clone());
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(fleet_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let err = |e| NodeError::Serve(format!("reflection: {e}"));
    Ok(Server::builder()
        .layer(crate::metrics::RpcTimingLayer(node.metrics.clone()))
        .add_service(FleetServer::new(svc.clone()))
        .add_service(MeshServer::new(svc.clone()))
        .add_service(fleet_proto::v1::queue_server::QueueServer::new(svc))
        .add_service(fleet_proto::v1::web_server::WebServer::new(web.clone()))
        .add_service(fleet_proto::v1::certs_server::CertsServer::new(certs.clone()))
        .add_service(guarded(node.clone(), HEALTH, health))
        .add_service(guarded(node.clone(), REFLECTION, reflection().build_v1().map_err(err)?))
        .add_service(guarded(node.clone(), REFLECTION_V1ALPHA, reflection().build_v1alpha().map_err(err)?)))
}

/// The doors, serving; what shutting down needs.
struct Serving {
    net: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    local: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    health: HealthReporter,
    _socket_file: RemoveOnDrop,
}

/// Serve both doors (the network door's connections cut when a new CRL revokes their
/// certificate; the certs dir followed for rotation and revocation) until `cancel`.
#[allow(clippy::too_many_arguments)]
async fn serve(
    cfg: &NodeConfig,
    me: Me,
    doors: Doors,
    node: Arc<Node>,
    members: &Membership,
    client_tls: watch::Sender<Arc<rustls::ClientConfig>>,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<Serving, NodeError> {
    let (health, health_svc) = tonic_health::server::health_reporter();
    health.set_serving::<FleetServer<NodeService>>().await;
    health.set_serving::<MeshServer<NodeService>>().await;
    health.set_serving::<fleet_proto::v1::queue_server::QueueServer<NodeService>>().await;
    let registry = crate::revocation::Registry::default();
    registry.apply(me.identity.crl.clone());
    members.apply(me.identity.crl.clone());
    let reloads = crate::revocation::Reloads::new(me.identity.crl.as_ref().map_or(0, |c| c.number));
    let (enroll_incoming, enroll_tls, enroll_address) = match doors.enroll {
        Some(d) => (Some(d.tls), Some(d.config), Some(d.address)),
        None => (None, None, None),
    };
    let enrollment = crate::enroll::Enrollment::new(
        cfg.certs_dir.clone(),
        me.tenant.clone(),
        me.host.clone(),
        &cfg.certs,
        doors.grpc_address.clone(),
        enroll_address,
        reloads.clone(),
        registry.clone(),
    );
    let wrap = registry.clone();
    let tls_incoming = doors.tls.map(move |accepted| accepted.map(|tls| wrap.wrap(tls)));
    tracker.spawn(crate::revocation::follow(
        crate::revocation::Targets {
            certs_dir: cfg.certs_dir.clone(),
            server_tls: doors.tls_config,
            client_tls,
            enroll_tls,
            registry,
            membership: members.clone(),
            reloads,
        },
        cancel.clone(),
    ));
    tracker.spawn(crate::enroll::renew_loop(enrollment.clone(), node.peers.clone(), cancel.clone()));
    tracker.spawn(crate::enroll::spread_crl(enrollment.clone(), node.peers.clone(), cancel.clone()));
    let shutdown = || {
        let cancel = cancel.clone();
        async move { cancel.cancelled().await }
    };
    if let Some(incoming) = enroll_incoming {
        let svc = fleet_proto::v1::enroll_server::EnrollServer::new(crate::enroll::EnrollService(
            node.clone(),
            enrollment.clone(),
        ))
        .max_decoding_message_size(crate::enroll::ENROLL_MAX_MESSAGE);
        let door = Server::builder()
            .timeout(Duration::from_secs(10))
            .concurrency_limit_per_connection(4)
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, shutdown());
        tracker.spawn(async move {
            if let Err(e) = door.await {
                tracing::error!(error = %e, "the enrollment door stopped");
            }
        });
    }
    let certs = crate::enroll::CertsService(node.clone(), enrollment);
    let door = doors.web.map(|bound| crate::web::start(bound, node.clone(), cancel, tracker));
    let web = crate::web::admin::WebAdmin { node: node.clone(), door };
    let net =
        build_router(&node, health_svc.clone(), &web, &certs)?.serve_with_incoming_shutdown(tls_incoming, shutdown());
    let local_door = local_incoming(doors.unix, node.uid, me.audit);
    let local = build_router(&node, health_svc, &web, &certs)?.serve_with_incoming_shutdown(local_door, shutdown());
    let (net, local) = (tokio::spawn(net), tokio::spawn(local));
    tracing::info!(
        tenant = %me.tenant, host = %me.host, listen = %doors.grpc_address, socket = %cfg.socket.display(),
        peers = cfg.peers.len(), "fleet node serving"
    );
    Ok(Serving { net, local, health, _socket_file: doors.socket_file })
}

/// Wait for a signal, `cancel` or a door that stops; then stop being found, say we are
/// going, and give in-flight calls the grace period.
async fn shut_down(
    cfg: &NodeConfig,
    serving: Serving,
    mdns: Option<crate::mdns::Mdns>,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<(), NodeError> {
    let Serving { mut net, mut local, health, _socket_file } = serving;
    let mut early = None;
    tokio::select! {
        () = cancel.cancelled() => {}
        () = signal() => {
            tracing::info!("shutting down: no new calls; in-flight calls have {} ms", cfg.timings.shutdown_grace.as_millis());
        }
        r = &mut net => early = Some(format!("the network door stopped: {r:?}")),
        r = &mut local => early = Some(format!("the local door stopped: {r:?}")),
    }
    // Stop being found first, then say we are going, then stop.
    if let Some(m) = mdns {
        // Goodbye packets: blocks for about 150 ms.
        let _ = tokio::task::spawn_blocking(move || m.shutdown()).await;
    }
    health.set_not_serving::<FleetServer<NodeService>>().await;
    health.set_not_serving::<MeshServer<NodeService>>().await;
    health.set_not_serving::<fleet_proto::v1::queue_server::QueueServer<NodeService>>().await;
    cancel.cancel();
    tracker.close();
    let grace = cfg.timings.shutdown_grace;
    let doors_done = early.is_some();
    if doors_done {
        net.abort();
        local.abort();
    }
    if tokio::time::timeout(grace, async {
        if !doors_done {
            let _ = net.await;
            let _ = local.await;
        }
        tracker.wait().await;
    })
    .await
    .is_err()
    {
        tracing::warn!("grace period over; exiting with calls still open");
    }
    drop(_socket_file);
    if let Some(why) = early {
        return Err(NodeError::Serve(why));
    }
    tracing::info!("fleet node stopped");
    Ok(())
}

const HEALTH: &str = "grpc.health.v1.Health";
const REFLECTION: &str = "grpc.reflection.v1.ServerReflection";
const REFLECTION_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

/// `svc` (health or reflection) behind the same check as every other call: a caller of this
/// node's tenant, any kind (`info`), or the local door's own uid. Denials are audited with the
/// service as the target; no fleet identity is UNAUTHENTICATED, another tenant
/// PERMISSION_DENIED, as for the fleet services.
fn guarded<S>(
    node: Arc<Node>,
    service: &'static str,
    svc: S,
) -> tonic::service::interceptor::InterceptedService<
    S,
    impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone,
> {
    tonic::service::interceptor::InterceptedService::new(svc, move |req: tonic::Request<()>| {
        node.authorize(&req, fleet_tls::Verb::Info, service)?;
        Ok(req)
    })
}

/// This process's soft limit of open files (RLIMIT_NOFILE), which bounds the TLS handshakes
/// in flight to a quarter of it ([`fleet_tls::net::Limits::for_fd_limit`]).
///
/// The node does not raise it. Children inherit the limit: the tmux servers, agents and
/// systemctl the node starts would get the hard limit (often 524288), and programs that
/// size `select()` sets or close every descriptor up to the limit break or crawl past 1024;
/// restoring it in each child needs `pre_exec` (unsafe) or a call after the spawn (too late
/// for a tmux server that has already forked). Nor does the node need it: with systemd's
/// soft limit of 1024 the handshake cap is 256, and under 1,000 half-open connections held
/// (tests/doors.rs) an operator's `fleet ps` took 12-25 ms, as with the limit raised (cap
/// 1024: 10-28 ms), while the node held 273 descriptors instead of 1,018
/// (docs/benchmarks.md). An operator who wants more sets `LimitNOFILE=` in the unit.
fn nofile_limit() -> u64 {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    tracing::debug!(soft, hard = limit.maximum.unwrap_or(u64::MAX), "open files limit (RLIMIT_NOFILE)");
    soft
}

/// Removes a file when dropped (the local door's socket).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// The address others reach this node at: the listen address, or for a
/// wildcard listen address, the first non-loopback IPv4 address of the host.
fn advertise(bound: std::net::SocketAddr) -> std::net::SocketAddr {
    if !bound.ip().is_unspecified() {
        return bound;
    }
    let ip = if_addrs::get_if_addrs()
        .ok()
        .and_then(|ifs| ifs.into_iter().find(|i| !i.is_loopback() && i.ip().is_ipv4()).map(|i| i.ip()))
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    std::net::SocketAddr::new(ip, bound.port())
}
