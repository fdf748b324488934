//! Enrollment, renewal and the spreading of revocation lists (docs/security.md "Enrollment").
//!
//! - [`EnrollService`]: `Enroll.Join`, the only service of the enrollment door (TLS without
//!   client certificates, bound only on a node that holds the mesh CA key). A join token's
//!   secret and a CSR in, a node certificate out; the token is marked used on disk before the
//!   certificate leaves.
//! - [`CertsService`]: `Certs` on both usual doors: `Invite` (join tokens), `Renew` (a new
//!   certificate for the caller's own principal, over mutual TLS), `GetCrl`/`PushCrl` (the
//!   revocation list, verified against the mesh CA before it is installed) and `CertStatus`.
//! - [`renew_loop`]: this node renews its certificate after a fraction of its lifetime, at the
//!   node that holds the CA key (itself, or a peer), and the reload path applies it without a
//!   restart.
//! - [`spread_crl`]: a newer list in force here (written by `fleet certs revoke` on the CA
//!   host, or pushed by a peer) is pushed to every peer; every [`CRL_PULL_EVERY`] one peer is
//!   asked for its list, so a node that was away catches up.

use crate::revocation::{Registry, Reloads};
use crate::service::{Caller, Node};
use fleet_core::names::DnsLabel;
use fleet_proto::v1;
use fleet_proto::v1::certs_client::CertsClient;
use fleet_tls::enroll::{self as en, INVALID_TOKEN, TokenStore};
use fleet_tls::issue::{Ca, Validity};
use fleet_tls::{CertsDir, Kind, Principal, Verb};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// How often one peer is asked for its revocation list.
pub const CRL_PULL_EVERY: Duration = Duration::from_secs(15);
/// Bound on each call to a peer (renew, push, pull, status).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest the renewal loop sleeps between looks at the certificate.
const RENEW_LOOK_MAX: Duration = Duration::from_secs(3600);
/// Refused joins written to the audit log per minute; more are counted and summed up in the
/// node's log (an unauthenticated door must not be able to fill the disk).
const DENIALS_AUDITED_PER_MINUTE: u32 = 30;
/// Largest request the enrollment door decodes (a CSR is under 1 KiB).
pub const ENROLL_MAX_MESSAGE: usize = 16 * 1024;

/// What enrollment and renewal share.
pub struct Enrollment {
    pub certs_dir: PathBuf,
    pub tenant: DnsLabel,
    pub host: DnsLabel,
    /// Lifetime of what this node signs.
    pub lifetime: Duration,
    pub renew_fraction: f64,
    /// This node's network door, as advertised.
    pub grpc_address: String,
    /// The enrollment door's advertised address, when it is open.
    pub enroll_address: Option<String>,
    pub reloads: Arc<Reloads>,
    pub registry: Registry,
    tokens: TokenStore,
    /// Serializes the token store's read-check-write.
    token_lock: Mutex<()>,
    status: Mutex<RenewStatus>,
    denials: Mutex<(Instant, u32, u64)>,
}

#[derive(Clone, Debug, Default)]
struct RenewStatus {
    last_error: Option<String>,
    last_renewed_ms: i64,
}

fn now_ms() -> i64 {
    crate::live::now_ms()
}

fn unix_ms(t: fleet_tls::show::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn internal(what: &str, e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "{what}");
    Status::internal(format!("{what}: {e}"))
}

impl Enrollment {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        certs_dir: PathBuf,
        tenant: DnsLabel,
        host: DnsLabel,
        cfg: &crate::config::CertsConfig,
        grpc_address: String,
        enroll_address: Option<String>,
        reloads: Arc<Reloads>,
        registry: Registry,
    ) -> Arc<Enrollment> {
        Arc::new(Enrollment {
            tokens: TokenStore::new(&certs_dir),
            certs_dir,
            tenant,
            host,
            lifetime: cfg.lifetime,
            renew_fraction: cfg.renew_fraction,
            grpc_address,
            enroll_address,
            reloads,
            registry,
            token_lock: Mutex::new(()),
            status: Mutex::new(RenewStatus::default()),
            denials: Mutex::new((Instant::now(), 0, 0)),
        })
    }

    fn dir(&self) -> CertsDir {
        CertsDir::new(&self.certs_dir)
    }

    /// Whether this node holds the mesh CA key.
    pub fn can_sign(&self) -> bool {
        self.dir().ca_key().exists()
    }

    fn load_ca(&self) -> Result<Ca, Status> {
        if !self.can_sign() {
            return Err(Status::failed_precondition(format!(
                "node {} does not hold the mesh CA key ({}): joins and renewals are signed on the host that does",
                self.host,
                self.dir().ca_key().display()
            )));
        }
        Ca::load(&self.dir()).map_err(|e| internal("the mesh CA cannot be loaded", e))
    }

    /// A certificate for `principal` over the key of `csr`, from this node's CA.
    fn sign(
        &self,
        ca: &Ca,
        principal: &Principal,
        csr: &[u8],
    ) -> Result<(String, fleet_tls::show::OffsetDateTime), Status> {
        let validity = Validity::lifetime_from_now(self.lifetime);
        match en::sign_csr(ca, csr, principal, validity) {
            Ok(Ok((pem, der))) => {
                let info = fleet_tls::show::inspect_der(&der, None).map_err(|e| internal("signed certificate", e))?;
                Ok((pem, info.not_after))
            }
            Ok(Err(e)) => Err(Status::invalid_argument(e.to_string())),
            Err(e) => Err(internal("signing failed", e)),
        }
    }

    /// Write a new identity of this node (checked against its key, the CA and its
    /// principal) and apply it now.
    fn install_own(&self, key_pem: &str, cert_pem: &str) -> Result<(), String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| format!("bad certificate: {e}"))?;
        let got = Principal::from_der(&der).map_err(|e| e.to_string())?;
        if got.kind != Kind::Node || got.tenant != self.tenant || got.name != self.host.as_str() {
            return Err(format!("the signer returned a certificate for {got}, not node:{}@{}", self.host, self.tenant));
        }
        {
            let _files = self.reloads.files.lock().expect("files");
            en::write_identity(&self.certs_dir, Kind::Node, key_pem, cert_pem, None).map_err(|e| e.to_string())?;
        }
        self.reloads.kick.notify_one();
        Ok(())
    }

    /// The list in `crl.pem` (checked against the CA), as its PEM text and number.
    fn crl_file(&self) -> Option<(String, u128)> {
        let dir = self.dir();
        let ca = fleet_tls::show::read_single_cert(&dir.ca_cert()).ok()?;
        let bytes = std::fs::read(dir.crl()).ok()?;
        let crl = fleet_tls::revoke::parse_crl(&dir.crl(), &bytes, &ca).ok()?;
        Some((String::from_utf8_lossy(&bytes).into_owned(), crl.number))
    }

    /// Install `pem` when it is signed by the mesh CA and newer than the list here; apply it
    /// now. The number installed, None when it was not newer.
    pub fn offer_crl(&self, pem: &[u8]) -> Result<Option<u128>, String> {
        let dir = self.dir();
        let ca = fleet_tls::show::read_single_cert(&dir.ca_cert()).map_err(|e| e.to_string())?;
        if let Ok(crl) = fleet_tls::revoke::parse_crl(&dir.crl(), pem, &ca)
            && crl.number <= self.registry.number()
        {
            return Ok(None);
        }
        let installed = {
            let _files = self.reloads.files.lock().expect("files");
            en::install_crl(&self.certs_dir, pem, &ca).map_err(|e| e.to_string())?
        };
        if installed.is_some() {
            self.reloads.kick.notify_one();
        }
        Ok(installed.map(|c| c.number))
    }

    /// This node's certificate, as `CertStatus` tells it.
    pub fn status(&self) -> v1::HostCert {
        let mut out = v1::HostCert {
            tenant_id: self.tenant.to_string(),
            host: self.host.to_string(),
            can_sign: self.can_sign(),
            crl_number: u64::try_from(self.registry.number()).unwrap_or(u64::MAX),
            ..Default::default()
        };
        let st = self.status.lock().expect("status").clone();
        out.renew_error = st.last_error.unwrap_or_default();
        out.last_renewed_unix_ms = st.last_renewed_ms;
        match fleet_tls::show::show(&self.dir().node_cert(), None) {
            Ok(info) => {
                out.principal = info.principal.map(|p| p.to_string()).unwrap_or_default();
                out.not_before_unix_ms = unix_ms(info.not_before);
                out.not_after_unix_ms = unix_ms(info.not_after);
                out.renew_at_unix_ms = unix_ms(en::renew_at(info.not_before, info.not_after, self.renew_fraction));
                let state =
                    en::cert_state(fleet_tls::show::now(), info.not_before, info.not_after, self.renew_fraction);
                out.state = state.as_str().into();
            }
            Err(e) => {
                out.state = "unknown".into();
                out.problem = e.to_string();
            }
        }
        out
    }

    /// Audit a refused join, at most [`DENIALS_AUDITED_PER_MINUTE`] a minute.
    fn audit_denial(&self, node: &Node, caller: &Caller, host: &str, detail: &str) {
        let mut d = self.denials.lock().expect("denials");
        if d.0.elapsed() >= Duration::from_secs(60) {
            if d.2 > 0 {
                tracing::warn!(unaudited = d.2, "refused joins over the audit limit in the last minute");
            }
            *d = (Instant::now(), 0, 0);
        }
        d.1 += 1;
        if d.1 > DENIALS_AUDITED_PER_MINUTE {
            d.2 += 1;
            return;
        }
        drop(d);
        node.audit(caller, Verb::Invite, host, fleet_tls::audit::DENIED, Some(detail));
    }
}

/// `Enroll`: the enrollment door's only service.
#[derive(Clone)]
pub struct EnrollService(pub Arc<Node>, pub Arc<Enrollment>);

#[tonic::async_trait]
impl v1::enroll_server::Enroll for EnrollService {
    async fn join(&self, request: Request<v1::JoinRequest>) -> Result<Response<v1::JoinResponse>, Status> {
        let (node, e) = (&self.0, &self.1);
        let peer = request.remote_addr().map(|a| a.to_string()).unwrap_or_else(|| "unknown".into());
        let req = request.into_inner();
        let host = DnsLabel::parse_as("host name", &req.host)
            .map_err(|err| Status::invalid_argument(format!("{err}: pass a valid --host to `fleet join`")))?;
        let caller = Caller { principal: format!("join:{host}"), peer: peer.clone(), node_host: None };
        let deny = |why: &str| {
            tracing::warn!(%peer, host = %host, reason = why, "join refused");
            e.audit_denial(node, &caller, host.as_str(), why);
            Status::permission_denied(INVALID_TOKEN)
        };
        let Some(secret) = parse_secret(&req.secret) else { return Err(deny("not a token secret")) };
        let ca = e.load_ca()?;
        let now = now_ms();
        let (cert_pem, record) = {
            let _tokens = e.token_lock.lock().expect("tokens");
            let records = e.tokens.load().map_err(|err| internal("the join token store cannot be read", err))?;
            let i = match en::check_token(&records, &en::JoinToken::secret_hash(&secret), now) {
                Ok(i) => i,
                Err(refusal) => {
                    let id = records
                        .iter()
                        .find(|r| en::ct_eq(r.hash.as_bytes(), hex(&en::JoinToken::secret_hash(&secret)).as_bytes()))
                        .map(|r| format!(" (token {})", r.id()))
                        .unwrap_or_default();
                    return Err(deny(&format!("{}{id}", refusal.as_str())));
                }
            };
            let record = records[i].clone();
            match record.host.as_deref() {
                Some(bound) if bound != host.as_str() => {
                    return Err(deny(&format!("token {} is for host {bound}", record.id())));
                }
                Some(_) => {}
                None => {
                    // A token without --host lets the joiner name itself, but never as a node
                    // that is already here: that would be a second key for its identity.
                    let taken = host == e.host
                        || node
                            .members
                            .members
                            .borrow()
                            .iter()
                            .any(|m| m.id.host == host.as_str() && m.state != crate::membership::MemberState::Down);
                    if taken {
                        return Err(Status::failed_precondition(format!(
                            "host {host} is already a member of this mesh: join under another name (--host), \
                             or stop that node first"
                        )));
                    }
                }
            }
            let principal = Principal { tenant: e.tenant.clone(), kind: Kind::Node, name: host.to_string() };
            let (cert_pem, _) = e.sign(&ca, &principal, &req.csr_der)?;
            // Used on disk before the certificate leaves: a crash here loses the token, never
            // lets it be used twice.
            match e.tokens.consume(&secret, host.as_str(), now) {
                Ok(Ok(record)) => (cert_pem, record),
                Ok(Err((refusal, _))) => return Err(deny(refusal.as_str())),
                Err(err) => return Err(internal("the join token store cannot be written", err)),
            }
        };
        node.audit(&caller, Verb::Invite, host.as_str(), "joined", Some(&format!("token {}", record.id())));
        tracing::info!(%peer, host = %host, token = record.id(), "a new host joined the mesh");
        Ok(Response::new(v1::JoinResponse {
            tenant_id: e.tenant.to_string(),
            host: host.to_string(),
            node_cert_pem: cert_pem,
            ca_cert_pem: ca.cert_pem().to_string(),
            crl_pem: e.crl_file().map(|(pem, _)| pem).unwrap_or_default(),
            grpc_address: e.grpc_address.clone(),
        }))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn parse_secret(s: &str) -> Option<[u8; 32]> {
    let t = format!("{}.x.{}.{s}", en::TOKEN_PREFIX, "0".repeat(64));
    t.parse::<en::JoinToken>().ok().map(|t| t.secret)
}

/// `Certs`: on the network door and the local door.
#[derive(Clone)]
pub struct CertsService(pub Arc<Node>, pub Arc<Enrollment>);

#[tonic::async_trait]
impl v1::certs_server::Certs for CertsService {
    async fn invite(&self, request: Request<v1::InviteRequest>) -> Result<Response<v1::InviteResponse>, Status> {
        let (node, e) = (&self.0, &self.1);
        let target = if request.get_ref().host.is_empty() { "*".to_string() } else { request.get_ref().host.clone() };
        let caller = node.authorize(&request, Verb::Invite, &target)?;
        let req = request.into_inner();
        let host = match req.host.as_str() {
            "" => None,
            h => Some(DnsLabel::parse_as("host name", h).map_err(|err| Status::invalid_argument(err.to_string()))?),
        };
        let ttl = match req.ttl_seconds {
            0 => en::DEFAULT_TOKEN_TTL,
            s if Duration::from_secs(s) > en::MAX_TOKEN_TTL => {
                return Err(Status::invalid_argument(format!(
                    "--ttl {s} s is too long: at most {} s (7 days); a join token should live minutes",
                    en::MAX_TOKEN_TTL.as_secs()
                )));
            }
            s => Duration::from_secs(s),
        };
        let ca = e.load_ca()?;
        let Some(enroll_address) = e.enroll_address.clone() else {
            return Err(Status::failed_precondition(format!(
                "the enrollment door of node {} is closed (enroll_listen: off, or its address was taken: see the \
                 node's log): set enroll_listen in node.yaml and restart the node",
                e.host
            )));
        };
        let (token, record) = {
            let _tokens = e.token_lock.lock().expect("tokens");
            e.tokens
                .issue(ca.cert_der(), &e.tenant, host.as_ref(), ttl, now_ms())
                .map_err(|err| internal("the join token store cannot be written", err))?
        };
        let until = fleet_tls::show::OffsetDateTime::from_unix_timestamp(record.expires_unix_ms / 1000)
            .map(fleet_tls::show::rfc3339)
            .unwrap_or_default();
        node.audit(
            &caller,
            Verb::Invite,
            &target,
            "token_issued",
            Some(&format!("token {} until {until}", record.id())),
        );
        Ok(Response::new(v1::InviteResponse {
            tenant_id: e.tenant.to_string(),
            host: e.host.to_string(),
            token: token.to_string(),
            enroll_address,
            expires_unix_ms: record.expires_unix_ms,
            token_id: record.id().to_string(),
        }))
    }

    async fn renew(&self, request: Request<v1::RenewRequest>) -> Result<Response<v1::RenewResponse>, Status> {
        let (node, e) = (&self.0, &self.1);
        let caller = node.authorize(&request, Verb::Renew, "")?;
        let certs = request.peer_certs();
        let principal = Principal::from_peer_certs(certs.as_deref().map(|v| v.as_slice())).map_err(|_| {
            Status::failed_precondition(
                "renewal renews the certificate the caller presents (mutual TLS): the local door and the web \
                 door have none; use `fleet certs renew` with FLEET_NODE and the certificate to renew",
            )
        })?;
        let ca = e.load_ca()?;
        let (cert_pem, not_after) = e.sign(&ca, &principal, &request.get_ref().csr_der)?;
        node.audit(
            &caller,
            Verb::Renew,
            &principal.to_string(),
            "renewed",
            Some(&format!("until {}", fleet_tls::show::rfc3339(not_after))),
        );
        Ok(Response::new(v1::RenewResponse {
            tenant_id: e.tenant.to_string(),
            host: e.host.to_string(),
            cert_pem,
            ca_cert_pem: ca.cert_pem().to_string(),
            not_after_unix_ms: unix_ms(not_after),
        }))
    }

    async fn get_crl(&self, request: Request<v1::GetCrlRequest>) -> Result<Response<v1::CrlResponse>, Status> {
        self.0.authorize(&request, Verb::Info, "crl")?;
        Ok(Response::new(self.crl_response()))
    }

    async fn push_crl(&self, request: Request<v1::PushCrlRequest>) -> Result<Response<v1::CrlResponse>, Status> {
        let caller = self.0.authorize(&request, Verb::Info, "crl")?;
        match self.1.offer_crl(request.get_ref().crl_pem.as_bytes()) {
            Ok(Some(number)) => {
                tracing::info!(crl_number = number as u64, from = %caller.principal, "installed a newer revocation list from a peer")
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(from = %caller.principal, error = %err, "refused an offered revocation list");
                return Err(Status::invalid_argument(format!("revocation list refused: {err}")));
            }
        }
        Ok(Response::new(self.crl_response()))
    }

    async fn cert_status(
        &self,
        request: Request<v1::CertStatusRequest>,
    ) -> Result<Response<v1::CertStatusResponse>, Status> {
        let node = &self.0;
        node.authorize(&request, Verb::Info, "certificates")?;
        let mut hosts = vec![self.1.status()];
        if request.get_ref().mesh {
            let peers: Vec<_> = node.peers.current().into_iter().filter(|p| !p.is_down()).collect();
            let deadline = node.info.fanout_deadline;
            let asks = peers.into_iter().map(|p| async move {
                let info = p.info();
                let ask = async {
                    let mut c = CertsClient::new(p.channel());
                    c.cert_status(v1::CertStatusRequest { mesh: false }).await
                };
                match tokio::time::timeout(deadline, ask).await {
                    Ok(Ok(r)) => r.into_inner().hosts.into_iter().next(),
                    Ok(Err(s)) => Some(unknown(&info.id.tenant, &info.id.host, s.message())),
                    Err(_) => Some(unknown(&info.id.tenant, &info.id.host, "no answer within the deadline")),
                }
            });
            hosts.extend(futures_util::future::join_all(asks).await.into_iter().flatten());
        }
        Ok(Response::new(v1::CertStatusResponse { hosts }))
    }
}

fn unknown(tenant: &str, host: &str, problem: &str) -> v1::HostCert {
    v1::HostCert {
        tenant_id: tenant.into(),
        host: host.into(),
        state: "unknown".into(),
        problem: problem.into(),
        ..Default::default()
    }
}

impl CertsService {
    fn crl_response(&self) -> v1::CrlResponse {
        let e = &self.1;
        let (crl_pem, number) = e.crl_file().unwrap_or_default();
        v1::CrlResponse {
            tenant_id: e.tenant.to_string(),
            host: e.host.to_string(),
            crl_pem,
            number: u64::try_from(number).unwrap_or(u64::MAX),
        }
    }
}

/// Renew this node's certificate when it is due, until `cancel`.
pub async fn renew_loop(e: Arc<Enrollment>, peers: Arc<crate::peers::Peers>, cancel: CancellationToken) {
    loop {
        let wait = match fleet_tls::show::show(&e.dir().node_cert(), None) {
            Ok(info) => {
                let now = fleet_tls::show::now();
                let life = std::time::Duration::try_from(info.not_after - info.not_before).unwrap_or(RENEW_LOOK_MAX);
                let retry = (life / 50).clamp(Duration::from_secs(1), Duration::from_secs(60));
                let state = en::cert_state(now, info.not_before, info.not_after, e.renew_fraction);
                if state != en::CertState::Ok {
                    renew_once(&e, &peers, state, info.not_after).await;
                }
                // Read again: a renewal moved the dates.
                let info = fleet_tls::show::show(&e.dir().node_cert(), None).unwrap_or(info);
                en::next_look(
                    fleet_tls::show::now(),
                    info.not_before,
                    info.not_after,
                    e.renew_fraction,
                    retry,
                    RENEW_LOOK_MAX,
                )
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot read this node's certificate to plan its renewal");
                Duration::from_secs(60)
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

async fn renew_once(
    e: &Enrollment,
    peers: &crate::peers::Peers,
    state: en::CertState,
    not_after: fleet_tls::show::OffsetDateTime,
) {
    let result = renew_via(e, peers).await;
    let left_s = (not_after - fleet_tls::show::now()).whole_seconds();
    let until = fleet_tls::show::rfc3339(not_after);
    let mut st = e.status.lock().expect("status");
    match result {
        Ok(by) => {
            tracing::info!(signer = %by, "renewed this node's certificate; applied without a restart");
            st.last_error = None;
            st.last_renewed_ms = now_ms();
        }
        Err(err) => {
            match state {
                en::CertState::Expiring | en::CertState::Expired => tracing::error!(
                    not_after = %until, left_s, error = %err,
                    "this node's certificate expires soon and cannot be renewed: the node leaves the mesh when it does; \
                     start the CA host's node, or issue a new certificate (`fleet certs issue node`)"
                ),
                _ => tracing::warn!(
                    not_after = %until, left_s, error = %err,
                    "certificate renewal failed; retrying"
                ),
            }
            st.last_error = Some(err);
        }
    }
}

/// Renew at this node (it holds the CA key) or at the first peer that signs; the signer.
async fn renew_via(e: &Enrollment, peers: &crate::peers::Peers) -> Result<String, String> {
    let (key, csr) = en::new_key_and_csr(&format!("node:{}@{}", e.host, e.tenant)).map_err(|err| err.to_string())?;
    let key_pem = key.serialize_pem();
    if e.can_sign() {
        let ca = e.load_ca().map_err(|s| s.message().to_string())?;
        let me = Principal { tenant: e.tenant.clone(), kind: Kind::Node, name: e.host.to_string() };
        let (pem, _) = e.sign(&ca, &me, &csr).map_err(|s| s.message().to_string())?;
        e.install_own(&key_pem, &pem)?;
        return Ok(e.host.to_string());
    }
    let mut tried = Vec::new();
    for p in peers.current().into_iter().filter(|p| !p.is_down()) {
        let host = p.info().id.host;
        let mut c = CertsClient::new(p.channel());
        match tokio::time::timeout(CALL_TIMEOUT, c.renew(v1::RenewRequest { csr_der: csr.clone() })).await {
            Ok(Ok(r)) => {
                e.install_own(&key_pem, &r.into_inner().cert_pem)?;
                return Ok(host);
            }
            Ok(Err(s)) if s.code() == tonic::Code::FailedPrecondition => {}
            Ok(Err(s)) => tried.push(format!("{host}: {}", s.message())),
            Err(_) => tried.push(format!("{host}: no answer in {} s", CALL_TIMEOUT.as_secs())),
        }
    }
    Err(if tried.is_empty() {
        "no reachable peer holds the mesh CA key (renewals are signed on the CA host)".to_string()
    } else {
        format!("no signer renewed it: {}", tried.join("; "))
    })
}

/// Push every newer list in force here to every peer; pull from one peer every
/// [`CRL_PULL_EVERY`], until `cancel`.
pub async fn spread_crl(e: Arc<Enrollment>, peers: Arc<crate::peers::Peers>, cancel: CancellationToken) {
    let mut applied = e.reloads.applied.subscribe();
    let mut pushed = 0u128;
    // Each node at a phase of its own: nodes started together (a mass start, a power cut)
    // would otherwise all pull in the same instant every 15 s, and none in between.
    let phase = CRL_PULL_EVERY.mul_f64(rand::random_range(0.0..1.0));
    let mut pull = tokio::time::interval_at(tokio::time::Instant::now() + phase, CRL_PULL_EVERY);
    pull.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let pulling = tokio::select! {
            () = cancel.cancelled() => return,
            r = applied.changed() => {
                if r.is_err() {
                    return;
                }
                false
            }
            _ = pull.tick() => true,
        };
        let number = e.registry.number();
        if number > pushed
            && let Some((pem, n)) = e.crl_file()
            && n == number
        {
            let pushes = peers.current().into_iter().filter(|p| !p.is_down()).map(|p| {
                let pem = pem.clone();
                async move {
                    let mut c = CertsClient::new(p.channel());
                    let r = tokio::time::timeout(CALL_TIMEOUT, c.push_crl(v1::PushCrlRequest { crl_pem: pem })).await;
                    if let Ok(Err(s)) = &r {
                        tracing::debug!(peer = %p.label(), error = %s.message(), "revocation list not pushed");
                    }
                }
            });
            futures_util::future::join_all(pushes).await;
            tracing::info!(crl_number = number as u64, "pushed the revocation list to the peers");
            pushed = number;
        }
        if pulling {
            let alive: Vec<_> = peers.current().into_iter().filter(|p| !p.is_down()).collect();
            if alive.is_empty() {
                continue;
            }
            let p = &alive[rand::random_range(0..alive.len())];
            let mut c = CertsClient::new(p.channel());
            if let Ok(Ok(r)) = tokio::time::timeout(CALL_TIMEOUT, c.get_crl(v1::GetCrlRequest {})).await {
                let r = r.into_inner();
                if u128::from(r.number) > e.registry.number() {
                    match e.offer_crl(r.crl_pem.as_bytes()) {
                        Ok(Some(n)) => {
                            tracing::info!(crl_number = n as u64, peer = %p.label(), "pulled a newer revocation list")
                        }
                        Ok(None) => {}
                        Err(err) => {
                            tracing::warn!(peer = %p.label(), error = %err, "a peer's revocation list was refused")
                        }
                    }
                }
            }
        }
    }
}
