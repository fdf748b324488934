//! Real mutual TLS over loopback with real tonic gRPC: certificates made in the test, a
//! small `fleet.v1.Fleet` service that authorizes every call with `fleet_tls::authorize`
//! and audits like the node will, and clients holding every kind of credential.
//!
//! Outcomes are asserted by kind, never by error text: a transport failure is a call that
//! errs without ever reaching the service (under TLS 1.3 the server's refusal of a client
//! certificate surfaces at the first call, with messages that vary); a denial is
//! PERMISSION_DENIED from the service; success is an answer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fleet_proto::v1::fleet_client::FleetClient;
use fleet_proto::v1::fleet_server::{Fleet, FleetServer};
use fleet_proto::v1::{
    HeartbeatEvent, LifecycleRequest, LifecycleResponse, ListAgentsRequest, ListAgentsResponse, SendReceipt,
    SendRequest, TailRequest, TailResponse, WatchHeartbeatsRequest,
};
use fleet_tls::audit::{AuditEvent, AuditLog};
use fleet_tls::config::{self, Identity};
use fleet_tls::issue::{self, Ca, Validity};
use fleet_tls::net::{self, TlsIncoming};
use fleet_tls::{DnsLabel, Kind, Principal, Verb, authorize, revoke};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tonic::transport::{Channel, Endpoint, Server, Uri};
use tonic::{Code, Request, Response, Status};

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn label(s: &str) -> DnsLabel {
    DnsLabel::parse_as("test label", s).unwrap()
}

// ------------------------------------------------------------------ the test service

/// A Fleet service that does nothing but decide, audit and answer.
struct TestFleet {
    tenant: DnsLabel,
    audit: Arc<AuditLog>,
    /// Requests that reached a handler (authorized or not).
    reached: Arc<AtomicUsize>,
}

impl TestFleet {
    /// What the node will do on every RPC: principal from the peer certificate, authorize,
    /// audit denials and audited verbs.
    fn check<T>(&self, req: &Request<T>, verb: Verb, target: &str) -> Result<Principal, Status> {
        self.reached.fetch_add(1, Ordering::SeqCst);
        // tonic fills these from the tokio-rustls stream that `TlsIncoming` yields.
        let peer = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let certs = req.peer_certs();
        let principal = Principal::from_peer_certs(certs.as_deref().map(Vec::as_slice))
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        match authorize(&self.tenant, &principal, verb) {
            Err(denied) => {
                self.audit.append_denied(&denied, &peer, target).map_err(|e| Status::internal(e.to_string()))?;
                Err(Status::permission_denied(denied.to_string()))
            }
            Ok(()) => {
                if verb.is_audited() {
                    let who = principal.to_string();
                    let event = AuditEvent { principal: &who, peer: &peer, verb, target, outcome: "ok", detail: None };
                    self.audit.append(&event).map_err(|e| Status::internal(e.to_string()))?;
                }
                Ok(principal)
            }
        }
    }
}

#[tonic::async_trait]
impl Fleet for TestFleet {
    async fn list_agents(&self, req: Request<ListAgentsRequest>) -> Result<Response<ListAgentsResponse>, Status> {
        self.check(&req, Verb::List, "")?;
        Ok(Response::new(ListAgentsResponse::default()))
    }

    type WatchHeartbeatsStream = tokio_stream::Iter<std::vec::IntoIter<Result<HeartbeatEvent, Status>>>;

    async fn watch_heartbeats(
        &self,
        req: Request<WatchHeartbeatsRequest>,
    ) -> Result<Response<Self::WatchHeartbeatsStream>, Status> {
        self.check(&req, Verb::Watch, "")?;
        let event = HeartbeatEvent { tenant_id: self.tenant.to_string(), host: "h1".into(), ..Default::default() };
        Ok(Response::new(tokio_stream::iter(vec![Ok(event)])))
    }

    async fn send_message(&self, req: Request<SendRequest>) -> Result<Response<SendReceipt>, Status> {
        let target = format!("{}@{}", req.get_ref().agent, req.get_ref().host);
        self.check(&req, Verb::Send, &target)?;
        Ok(Response::new(SendReceipt { tenant_id: self.tenant.to_string(), ..Default::default() }))
    }

    async fn start_agent(&self, req: Request<LifecycleRequest>) -> Result<Response<LifecycleResponse>, Status> {
        let target = format!("{}@{}", req.get_ref().agent, req.get_ref().host);
        self.check(&req, Verb::Start, &target)?;
        Ok(Response::new(LifecycleResponse::default()))
    }

    async fn stop_agent(&self, req: Request<LifecycleRequest>) -> Result<Response<LifecycleResponse>, Status> {
        let target = format!("{}@{}", req.get_ref().agent, req.get_ref().host);
        self.check(&req, Verb::Stop, &target)?;
        Ok(Response::new(LifecycleResponse::default()))
    }

    async fn tail_pane(&self, req: Request<TailRequest>) -> Result<Response<TailResponse>, Status> {
        let target = format!("{}@{}", req.get_ref().agent, req.get_ref().host);
        self.check(&req, Verb::Watch, &target)?;
        Ok(Response::new(TailResponse::default()))
    }

    type WatchPaneStream = tokio_stream::Empty<Result<fleet_proto::v1::PaneFrame, Status>>;

    async fn watch_pane(
        &self,
        req: Request<fleet_proto::v1::WatchPaneRequest>,
    ) -> Result<Response<Self::WatchPaneStream>, Status> {
        let target = format!("{}@{}", req.get_ref().agent, req.get_ref().host);
        self.check(&req, Verb::Watch, &target)?;
        Ok(Response::new(tokio_stream::empty()))
    }

    type AttachPaneStream = tokio_stream::Empty<Result<fleet_proto::v1::PaneFrame, Status>>;

    async fn attach_pane(
        &self,
        req: Request<tonic::Streaming<fleet_proto::v1::AttachInput>>,
    ) -> Result<Response<Self::AttachPaneStream>, Status> {
        self.check(&req, Verb::Attach, "")?;
        Ok(Response::new(tokio_stream::empty()))
    }
    async fn add_agent(
        &self,
        req: Request<fleet_proto::v1::AddAgentRequest>,
    ) -> Result<Response<fleet_proto::v1::RosterChangeResponse>, Status> {
        self.check(&req, Verb::Start, "")?;
        Ok(Response::new(Default::default()))
    }

    async fn remove_agent(
        &self,
        req: Request<fleet_proto::v1::RemoveAgentRequest>,
    ) -> Result<Response<fleet_proto::v1::RosterChangeResponse>, Status> {
        self.check(&req, Verb::Stop, "")?;
        Ok(Response::new(Default::default()))
    }

    async fn reset_agent(
        &self,
        req: Request<fleet_proto::v1::ResetAgentRequest>,
    ) -> Result<Response<SendReceipt>, Status> {
        self.check(&req, Verb::Send, "")?;
        Ok(Response::new(Default::default()))
    }

    async fn verify_host(
        &self,
        req: Request<fleet_proto::v1::VerifyHostRequest>,
    ) -> Result<Response<fleet_proto::v1::VerifyHostResponse>, Status> {
        self.check(&req, Verb::List, "")?;
        Ok(Response::new(Default::default()))
    }
}

/// A running gRPC server on 127.0.0.1:0; stops when dropped.
struct TestServer {
    addr: SocketAddr,
    reached: Arc<AtomicUsize>,
    configs: watch::Sender<Arc<ServerConfig>>,
    _stop: oneshot::Sender<()>,
}

async fn start_server(tenant: &str, server_config: Arc<ServerConfig>, audit: Arc<AuditLog>) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (configs, rx) = watch::channel(server_config);
    let incoming = TlsIncoming::new(listener, rx).unwrap();
    let addr = incoming.local_addr();
    let reached = Arc::new(AtomicUsize::new(0));
    let svc = FleetServer::new(TestFleet { tenant: label(tenant), audit, reached: reached.clone() });
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        Server::builder()
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    TestServer { addr, reached, configs, _stop: stop }
}

// ------------------------------------------------------------------ clients

/// A client config that trusts `roots` and presents `cert` (if any): built by hand so a
/// test can present credentials a real client would refuse to load.
fn raw_client_config(roots: &[CertificateDer<'static>], cert: Option<(&str, &str)>) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(config::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store);
    let mut cfg = match cert {
        None => builder.with_no_client_auth(),
        Some((cert_pem, key_pem)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(cfg)
}

/// A lazy channel that dials `addr` and verifies the server as `name`.
fn channel(addr: SocketAddr, name: ServerName<'static>, cfg: Arc<ClientConfig>) -> Channel {
    Endpoint::from_static("http://fleet.invalid").connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
        let (name, cfg) = (name.clone(), cfg.clone());
        async move { Ok::<_, std::io::Error>(TokioIo::new(net::connect(addr, name, cfg).await?)) }
    }))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// The call errs and never reaches the service.
    Fails,
    /// The service answers PERMISSION_DENIED.
    Denied,
    /// The service answers.
    Ok,
}
use Outcome::{Denied, Fails, Ok as Allowed};

const VERBS: [Verb; 4] = [Verb::List, Verb::Watch, Verb::Send, Verb::Start];

/// One call of `verb` on a fresh connection, classified.
async fn call(server: &TestServer, name: ServerName<'static>, cfg: Arc<ClientConfig>, verb: Verb) -> Outcome {
    let before = server.reached.load(Ordering::SeqCst);
    let mut client = FleetClient::new(channel(server.addr, name, cfg));
    let target = |agent: &str| LifecycleRequest { agent: agent.into(), host: "h1".into(), ..Default::default() };
    let result: Result<(), Status> = tokio::time::timeout(CALL_TIMEOUT, async {
        match verb {
            Verb::List => client.list_agents(ListAgentsRequest::default()).await.map(drop),
            Verb::Watch => {
                let mut stream = client.watch_heartbeats(WatchHeartbeatsRequest::default()).await?.into_inner();
                let first = stream.message().await?;
                assert!(first.is_some(), "the watch stream ended without an event");
                Ok(())
            }
            Verb::Send => {
                let req =
                    SendRequest { agent: "coder0".into(), host: "h1".into(), text: "hi".into(), ..Default::default() };
                client.send_message(req).await.map(drop)
            }
            Verb::Start => client.start_agent(target("coder0")).await.map(drop),
            other => unreachable!("{other} is not in the matrix"),
        }
    })
    .await
    .expect("call timed out");
    let reached = server.reached.load(Ordering::SeqCst) > before;
    match result {
        Ok(()) => {
            assert!(reached);
            Allowed
        }
        Err(s) if s.code() == Code::PermissionDenied => {
            assert!(reached, "PERMISSION_DENIED must come from the service");
            Denied
        }
        Err(s) => {
            assert!(!reached, "a transport failure reached the service: {s:?}");
            assert!(
                matches!(s.code(), Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled),
                "unexpected code for a transport failure: {s:?}"
            );
            Fails
        }
    }
}

// ------------------------------------------------------------------ fixtures

struct Mesh {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    ca: Ca,
    audit_path: PathBuf,
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// A mesh of tenant acme made through the on-disk API, as `fleet certs` makes it: the CA,
/// node h1's own certs dir, and issued certs for a viewer, an operator and node h2.
fn mesh() -> Mesh {
    config::install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    issue::init_ca(&dir, "acme", false).unwrap();
    issue::issue(&dir, Kind::Node, "h1", 90, Some(&dir), false).unwrap();
    for (kind, name) in [(Kind::Viewer, "vera"), (Kind::Operator, "olga"), (Kind::Node, "h2")] {
        issue::issue(&dir, kind, name, 90, None, false).unwrap();
    }
    let day = time::Duration::days(1);
    let now = OffsetDateTime::now_utc();
    let expired = Validity { not_before: now - 30 * day, not_after: now - day };
    issue::issue_with_validity(&dir, Kind::Operator, "expired", expired, None, false).unwrap();
    let future = Validity { not_before: now + day, not_after: now + 30 * day };
    issue::issue_with_validity(&dir, Kind::Operator, "future", future, None, false).unwrap();
    let ca = Ca::load(&fleet_tls::CertsDir::new(&dir)).unwrap();
    let audit_path = tmp.path().join("audit.log");
    Mesh { dir, ca, audit_path, _tmp: tmp }
}

impl Mesh {
    fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.cert_der().clone()
    }
    fn issued(&self, kind: Kind, name: &str) -> (String, String) {
        let d = fleet_tls::CertsDir::new(&self.dir);
        (read(&d.issued_cert(kind, name)), read(&d.issued_key(kind, name)))
    }
    fn h1_server_config(&self) -> Arc<ServerConfig> {
        config::server_config(&Identity::node(&self.dir).unwrap()).unwrap()
    }
}

fn h1_name() -> ServerName<'static> {
    config::node_server_name(&label("acme"), &label("h1"))
}

// ------------------------------------------------------------------ the matrix

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_by_verb_matrix() {
    let m = mesh();
    let audit = Arc::new(AuditLog::open(&m.audit_path).unwrap());
    let server = start_server("acme", m.h1_server_config(), audit.clone()).await;
    let roots = [m.ca_der()];

    // A different CA, of the same tenant name and of another tenant.
    let rogue = Ca::generate(&label("acme"), Validity::days_from_now(30)).unwrap();
    let rogue_op = rogue
        .issue(&Principal::new(label("acme"), Kind::Operator, "olga").unwrap(), Validity::days_from_now(5))
        .unwrap();
    let other = Ca::generate(&label("other"), Validity::days_from_now(30)).unwrap();
    let other_op = other
        .issue(&Principal::new(label("other"), Kind::Operator, "olga").unwrap(), Validity::days_from_now(5))
        .unwrap();
    // Our own CA, but a URI SAN naming another tenant: chains, and is still denied.
    let cross =
        m.ca.issue(&Principal::new(label("other"), Kind::Operator, "olga").unwrap(), Validity::days_from_now(5))
            .unwrap();

    let (viewer, operator, node) =
        (m.issued(Kind::Viewer, "vera"), m.issued(Kind::Operator, "olga"), m.issued(Kind::Node, "h2"));
    let (expired, future) = (m.issued(Kind::Operator, "expired"), m.issued(Kind::Operator, "future"));
    let rows: Vec<(&str, Arc<ClientConfig>, [Outcome; 4])> = vec![
        ("no client certificate", raw_client_config(&roots, None), [Fails; 4]),
        ("another CA's operator", raw_client_config(&roots, Some((&rogue_op.cert_pem, &rogue_op.key_pem))), [Fails; 4]),
        ("expired operator", raw_client_config(&roots, Some((&expired.0, &expired.1))), [Fails; 4]),
        ("not yet valid operator", raw_client_config(&roots, Some((&future.0, &future.1))), [Fails; 4]),
        ("another tenant's CA", raw_client_config(&roots, Some((&other_op.cert_pem, &other_op.key_pem))), [Fails; 4]),
        ("another tenant, same CA", raw_client_config(&roots, Some((&cross.cert_pem, &cross.key_pem))), [Denied; 4]),
        ("viewer", raw_client_config(&roots, Some((&viewer.0, &viewer.1))), [Allowed, Allowed, Denied, Denied]),
        ("operator", raw_client_config(&roots, Some((&operator.0, &operator.1))), [Allowed; 4]),
        ("node", raw_client_config(&roots, Some((&node.0, &node.1))), [Allowed; 4]),
    ];

    let mut failures = Vec::new();
    for (row, cfg, expected) in &rows {
        for (verb, want) in VERBS.iter().zip(expected) {
            let got = call(&server, h1_name(), cfg.clone(), *verb).await;
            if got != *want {
                failures.push(format!("{row} × {verb}: expected {want:?}, got {got:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "matrix cells wrong:\n{}", failures.join("\n"));

    // The audit log: one line per denial (4 cross-tenant + 2 viewer) and per allowed
    // send/start (operator 2 + node 2); nothing for refused handshakes or allowed reads.
    let text = read(&m.audit_path);
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 10, "{text}");
    assert_eq!(audit.appended(), 10);
    assert_eq!(audit.failures(), 0);
    let count = |principal: &str, verb: &str, outcome: &str| {
        lines.iter().filter(|l| l["principal"] == principal && l["verb"] == verb && l["outcome"] == outcome).count()
    };
    for verb in ["list", "watch", "send", "start"] {
        assert_eq!(count("operator:olga@other", verb, "denied"), 1, "{verb}");
    }
    for verb in ["send", "start"] {
        assert_eq!(count("viewer:vera@acme", verb, "denied"), 1, "{verb}");
        assert_eq!(count("operator:olga@acme", verb, "ok"), 1, "{verb}");
        assert_eq!(count("node:h2@acme", verb, "ok"), 1, "{verb}");
    }
    for l in &lines {
        assert!(l["time"].as_str().unwrap().ends_with('Z'));
        assert!(l["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{l}");
        if l["verb"] == "send" || l["verb"] == "start" {
            assert_eq!(l["target"], "coder0@h1");
        }
        if l["outcome"] == "denied" {
            let detail = l["detail"].as_str().unwrap();
            assert!(detail.contains(l["principal"].as_str().unwrap()) && detail.contains(l["verb"].as_str().unwrap()));
        }
    }
    // Mode 0600 from creation.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&m.audit_path).unwrap().permissions().mode() & 0o777, 0o600);
}

// ------------------------------------------------------------------ the client's checks of the server

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_refuses_wrong_host_and_other_tenants_servers() {
    let m = mesh();
    let audit = Arc::new(AuditLog::open(&m.audit_path).unwrap());
    let operator = Identity::load(
        &m.dir.join("ca.pem"),
        &m.dir.join("issued/operator-olga.pem"),
        &m.dir.join("issued/operator-olga.key"),
    )
    .unwrap();
    let client = config::client_config(&operator).unwrap();

    // h1 answers to its own name and to node.acme.fleet.internal; not to h2's name.
    let h1 = start_server("acme", m.h1_server_config(), audit.clone()).await;
    assert_eq!(call(&h1, h1_name(), client.clone(), Verb::List).await, Allowed);
    assert_eq!(call(&h1, config::any_node_server_name(&label("acme")), client.clone(), Verb::List).await, Allowed);
    let h2_name = config::node_server_name(&label("acme"), &label("h2"));
    assert_eq!(call(&h1, h2_name, client.clone(), Verb::List).await, Fails);
    assert_eq!(call(&h1, config::any_node_server_name(&label("other")), client.clone(), Verb::List).await, Fails);

    // Dialed by address with only the tenant known, the client learns the host from the
    // server certificate's URI SAN.
    let tls = net::connect(h1.addr, config::any_node_server_name(&label("acme")), client.clone()).await.unwrap();
    let server = Principal::from_peer_certs(tls.get_ref().1.peer_certificates()).unwrap();
    assert_eq!(server.to_string(), "node:h1@acme");
    drop(tls);

    // A node of another tenant signed by our CA (URI and DNS SANs say "other"): refused by
    // name, even though it chains.
    let cross =
        m.ca.issue(&Principal::new(label("other"), Kind::Node, "h1").unwrap(), Validity::days_from_now(5)).unwrap();
    let cross_id = Identity::from_der(
        m.ca_der(),
        cross.cert_der.clone(),
        PrivateKeyDer::from_pem_slice(cross.key_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let cross_server = start_server("other", config::server_config(&cross_id).unwrap(), audit.clone()).await;
    assert_eq!(call(&cross_server, h1_name(), client.clone(), Verb::List).await, Fails);
    assert_eq!(
        call(&cross_server, config::any_node_server_name(&label("acme")), client.clone(), Verb::List).await,
        Fails
    );

    // A node of another tenant with its own CA: refused (unknown issuer), even for its own name.
    let other = Ca::generate(&label("other"), Validity::days_from_now(30)).unwrap();
    let other_node =
        other.issue(&Principal::new(label("other"), Kind::Node, "h1").unwrap(), Validity::days_from_now(5)).unwrap();
    let other_id = Identity::from_der(
        other.cert_der().clone(),
        other_node.cert_der.clone(),
        PrivateKeyDer::from_pem_slice(other_node.key_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let other_server = start_server("other", config::server_config(&other_id).unwrap(), audit.clone()).await;
    let other_h1 = config::node_server_name(&label("other"), &label("h1"));
    assert_eq!(call(&other_server, other_h1, client.clone(), Verb::List).await, Fails);
    assert_eq!(call(&other_server, h1_name(), client.clone(), Verb::List).await, Fails);

    // Nothing reached any service but the allowed lists; nothing was audited.
    assert_eq!(cross_server.reached.load(Ordering::SeqCst) + other_server.reached.load(Ordering::SeqCst), 0);
    assert_eq!(read(&m.audit_path), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_takes_effect_for_new_connections_without_restart() {
    let m = mesh();
    let audit = Arc::new(AuditLog::open(&m.audit_path).unwrap());
    let server = start_server("acme", m.h1_server_config(), audit).await;
    let client = config::client_config(&Identity::node(&m.dir).unwrap()).unwrap();
    let fingerprint = |tls: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>| {
        fleet_tls::show::sha256_fingerprint(&tls.get_ref().1.peer_certificates().unwrap()[0])
    };
    let before = fingerprint(&net::connect(server.addr, h1_name(), client.clone()).await.unwrap());
    // Re-issue h1's certificate on disk, reload, publish.
    issue::issue(&m.dir, Kind::Node, "h1", 30, Some(&m.dir), true).unwrap();
    server.configs.send(m.h1_server_config()).unwrap();
    let after = fingerprint(&net::connect(server.addr, h1_name(), client.clone()).await.unwrap());
    assert_ne!(before, after);
    assert_eq!(after, fleet_tls::show::sha256_fingerprint(&Identity::node(&m.dir).unwrap().cert));
    assert_eq!(call(&server, h1_name(), client, Verb::Send).await, Allowed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_is_refused_both_ways_once_the_crl_is_loaded() {
    let m = mesh();
    let audit = Arc::new(AuditLog::open(&m.audit_path).unwrap());
    let h1 = start_server("acme", m.h1_server_config(), audit.clone()).await;
    let roots = [m.ca_der()];
    let d = fleet_tls::CertsDir::new(&m.dir);
    let (olga, vera) = (m.issued(Kind::Operator, "olga"), m.issued(Kind::Viewer, "vera"));
    let olga_cfg = raw_client_config(&roots, Some((&olga.0, &olga.1)));
    let vera_cfg = raw_client_config(&roots, Some((&vera.0, &vera.1)));
    assert_eq!(call(&h1, h1_name(), olga_cfg.clone(), Verb::List).await, Allowed);

    // The server side: olga revoked, the node's identity loaded again with the new crl.pem.
    let done = revoke::revoke(&m.dir, revoke::Target::Cert(&d.issued_cert(Kind::Operator, "olga"))).unwrap();
    assert!(!done.already && done.crl == d.crl());
    h1.configs.send(m.h1_server_config()).unwrap();
    assert_eq!(call(&h1, h1_name(), olga_cfg, Verb::List).await, Fails);
    assert_eq!(call(&h1, h1_name(), vera_cfg, Verb::List).await, Allowed);

    // The client side: a node holding the CRL refuses a server whose certificate it revokes.
    let h2_id =
        Identity::load(&d.ca_cert(), &d.issued_cert(Kind::Node, "h2"), &d.issued_key(Kind::Node, "h2")).unwrap();
    let h2 = start_server("acme", config::server_config(&h2_id).unwrap(), audit).await;
    let h2_name = config::node_server_name(&label("acme"), &label("h2"));
    let h1_client = || config::client_config(&Identity::node(&m.dir).unwrap()).unwrap();
    assert_eq!(call(&h2, h2_name.clone(), h1_client(), Verb::List).await, Allowed);
    revoke::revoke(&m.dir, revoke::Target::Cert(&d.issued_cert(Kind::Node, "h2"))).unwrap();
    assert_eq!(call(&h2, h2_name, h1_client(), Verb::List).await, Fails);

    // A node whose own certificate is revoked does not start with it.
    revoke::revoke(&m.dir, revoke::Target::Cert(&d.node_cert())).unwrap();
    let e = Identity::node(&m.dir).unwrap_err().to_string();
    assert!(e.contains("is revoked by") && e.contains("issue a new one"), "{e}");
}
