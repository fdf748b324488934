//! Reaching a node: the local socket (no certificates: the uid is checked),
//! or `FLEET_NODE=https://host:port` with an operator certificate.
//!
//! A remote node is dialled in stages (resolve the name, TCP, TLS), each bounded in time, so a
//! failure says which stage failed ([`Failure`]): a refused connection, a timeout, a name that
//! does not resolve, a server certificate we refuse, or our certificate refused by the server
//! (which TLS 1.3 reports only after the handshake, on the first call: [`explain_call`]).

use fleet_proto::v1::fleet_client::FleetClient;
use fleet_proto::v1::mesh_client::MeshClient;
use hyper_util::rt::TokioIo;
use std::error::Error as StdError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

/// How long each stage of a remote dial (resolve, TCP connect, TLS handshake) may take.
pub const DIAL_STAGE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no fleet node at {0}: start one with `fleet node` (or pass --local to act on this host directly)")]
    NoNode(String),
    /// A remote node (`FLEET_NODE`) could not be reached: what failed, and the next step.
    #[error("{0}")]
    Remote(Failure),
    #[error("bad FLEET_NODE {0:?}: expected https://HOST:PORT")]
    BadUrl(String),
    #[error("credentials for {url}: {detail}")]
    Credentials { url: String, detail: String },
}

/// What failed when dialling or calling a remote node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The TCP connection was refused: nothing listens on that port.
    Refused,
    /// No TCP answer in time: the host is down or a firewall drops the packets.
    TimedOut,
    /// No route to the host or its network.
    NoRoute,
    /// The host name does not resolve.
    Unresolved,
    /// TCP connected, but no TLS handshake completed in time.
    NoTlsAnswer,
    /// The server's certificate does not chain to our mesh CA (or is expired or revoked).
    ServerCertRefused,
    /// The server refused our client certificate (a TLS alert: revoked, unknown CA, expired).
    ClientCertRefused,
    /// Anything else.
    Other,
}

/// A classified failure to reach the remote node at `url`, with the certs dir it dialled with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub url: String,
    pub certs_dir: PathBuf,
    /// The underlying error, as its chain reads.
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (url, detail) = (&self.url, &self.detail);
        let ca = self.certs_dir.join("ca.pem");
        let cert = self.certs_dir.join("client.pem");
        let secs = DIAL_STAGE_TIMEOUT.as_secs();
        match self.kind {
            FailureKind::Refused => write!(
                f,
                "the fleet node at {url} refused the connection (nothing listens on that port): check the port \
                 against the node's `listen` and that `fleet node` runs on that host"
            ),
            FailureKind::TimedOut => write!(
                f,
                "no answer from {url} within {secs} s (TCP connect timed out): the host is down or off the \
                 network, or a firewall drops packets to that port"
            ),
            FailureKind::NoRoute => {
                write!(f, "no route to {url} ({detail}): check the address and this host's network")
            }
            FailureKind::Unresolved => write!(
                f,
                "the host name of {url} does not resolve ({detail}): check the name in FLEET_NODE, or give an IP \
                 address"
            ),
            FailureKind::NoTlsAnswer => write!(
                f,
                "{url} accepted the connection but completed no TLS handshake within {secs} s: is that port a fleet \
                 node's `listen`, and not another service?"
            ),
            FailureKind::ServerCertRefused => write!(
                f,
                "the server at {url} presented a certificate that our mesh CA {} does not vouch for ({detail}): \
                 FLEET_NODE points at a node of another mesh, or FLEET_CERTS_DIR holds another mesh's CA",
                ca.display()
            ),
            FailureKind::ClientCertRefused => {
                // The alert names the reason when the server gives one (rustls does).
                let why = if detail.contains("CertificateRevoked") {
                    "it is revoked"
                } else if detail.contains("CertificateExpired") {
                    "it has expired"
                } else {
                    "revoked, expired or issued by another mesh's CA?"
                };
                write!(
                    f,
                    "the fleet node at {url} refused our certificate {} ({detail}: {why}): get a new one from this \
                     mesh's CA (`fleet certs issue operator --name NAME` where the CA key is) and point \
                     FLEET_CERTS_DIR at it",
                    cert.display()
                )
            }
            FailureKind::Other => write!(
                f,
                "cannot reach the fleet node at {url} ({detail}): check FLEET_NODE and that `fleet node` runs there"
            ),
        }
    }
}

/// A dial stage's failure, carried inside an `io::Error` through tonic to [`classify`].
#[derive(Debug)]
struct DialError {
    stage: Stage,
    source: std::io::Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Resolve,
    Tcp,
    Tls,
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stage = match self.stage {
            Stage::Resolve => "resolving the name",
            Stage::Tcp => "TCP connect",
            Stage::Tls => "TLS handshake",
        };
        write!(f, "{stage}: {}", self.source)
    }
}

impl StdError for DialError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.source)
    }
}

/// The kind of failure an error chain shows, and the chain as text. `io::Error` hides its
/// inner error from `source()`, so each one's inner error is looked at too.
pub fn classify(err: &(dyn StdError + 'static)) -> (FailureKind, String) {
    let mut kind = None;
    let mut text: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let msg = e.to_string();
        // Wrappers repeat their cause ("transport error: ..."): keep each piece once.
        if !text.iter().any(|t| t.contains(&msg)) {
            text.push(msg);
        }
        kind = kind.or_else(|| kind_of(e));
        next = e.source().or_else(|| inner(e));
    }
    // The most specific piece is the last: "transport error: tcp connect: Connection refused".
    let text = text.last().cloned().unwrap_or_default();
    (kind.unwrap_or(FailureKind::Other), text)
}

/// The error an `io::Error` (or an HTTP/2 error holding one) wraps, which their `source()`
/// skips.
fn inner<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    if let Some(h2) = e.downcast_ref::<h2::Error>() {
        return h2.get_io().map(|io| io as _);
    }
    e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|i| i as _)
}

fn kind_of(e: &(dyn StdError + 'static)) -> Option<FailureKind> {
    use std::io::ErrorKind as K;
    if let Some(d) = e.downcast_ref::<DialError>() {
        return match (d.stage, d.source.kind()) {
            (Stage::Resolve, _) => Some(FailureKind::Unresolved),
            (Stage::Tls, K::TimedOut) => Some(FailureKind::NoTlsAnswer),
            // A TLS failure: the rustls error inside says which side refused.
            (Stage::Tls, _) => d.source.get_ref().and_then(|i| kind_of(i)),
            (Stage::Tcp, _) => io_kind(&d.source),
        };
    }
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return match r {
            rustls::Error::InvalidCertificate(_) => Some(FailureKind::ServerCertRefused),
            rustls::Error::AlertReceived(_) => Some(FailureKind::ClientCertRefused),
            _ => None,
        };
    }
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        return io.get_ref().and_then(|i| kind_of(i)).or_else(|| io_kind(io));
    }
    inner(e).and_then(kind_of)
}

fn io_kind(io: &std::io::Error) -> Option<FailureKind> {
    use std::io::ErrorKind as K;
    match io.kind() {
        K::ConnectionRefused => Some(FailureKind::Refused),
        K::TimedOut => Some(FailureKind::TimedOut),
        K::HostUnreachable | K::NetworkUnreachable => Some(FailureKind::NoRoute),
        _ => None,
    }
}

/// Where the node is.
#[derive(Clone, Debug)]
pub enum Target {
    Socket(PathBuf),
    /// A remote node, with the certs dir holding `client.pem`/`client.key` and `ca.pem`.
    Remote {
        url: String,
        certs_dir: PathBuf,
    },
}

impl Target {
    pub fn describe(&self) -> String {
        match self {
            Target::Socket(p) => p.display().to_string(),
            Target::Remote { url, .. } => url.clone(),
        }
    }
}

async fn unix_channel(path: &Path) -> Result<Channel, ClientError> {
    let shown = path.display().to_string();
    let p = path.to_path_buf();
    // The URI is a placeholder: the connector dials the socket.
    Endpoint::from_static("http://fleet-node.local")
        .connect_timeout(Duration::from_secs(2))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = p.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(p).await?)) }
        }))
        .await
        .map_err(|_| ClientError::NoNode(shown))
}

async fn remote_channel(url: &str, certs_dir: &Path) -> Result<Channel, ClientError> {
    fleet_tls::install_crypto_provider();
    let rest = url.strip_prefix("https://").ok_or_else(|| ClientError::BadUrl(url.into()))?;
    let addr = rest.trim_end_matches('/').to_string();
    let cred = |detail: String| ClientError::Credentials { url: url.into(), detail };
    let id = fleet_tls::config::Identity::client(certs_dir).map_err(|e| cred(e.to_string()))?;
    let tls = fleet_tls::config::client_config(&id).map_err(|e| cred(e.to_string()))?;
    let name = fleet_tls::config::any_node_server_name(&id.principal.tenant);
    tls_channel(url, &addr, name, tls).await.map_err(|e| match e {
        ClientError::Remote(f) => ClientError::Remote(Failure { certs_dir: certs_dir.to_path_buf(), ..f }),
        e => e,
    })
}

/// Dial `addr` (`HOST:PORT`) in stages, each within [`DIAL_STAGE_TIMEOUT`], so that an
/// error says which stage failed ([`DialError`]).
async fn dial(
    addr: &str,
    name: rustls::pki_types::ServerName<'static>,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use std::io::{Error, ErrorKind};
    let staged = |stage, source| Error::other(DialError { stage, source });
    let in_time = |stage, what: &str| staged(stage, Error::new(ErrorKind::TimedOut, format!("{what} timed out")));
    let found = tokio::time::timeout(DIAL_STAGE_TIMEOUT, tokio::net::lookup_host(addr))
        .await
        .map_err(|_| in_time(Stage::Resolve, "the name lookup"))?
        .map_err(|e| staged(Stage::Resolve, e))?
        .next()
        .ok_or_else(|| staged(Stage::Resolve, Error::new(ErrorKind::NotFound, format!("{addr} has no address"))))?;
    let tcp = tokio::time::timeout(DIAL_STAGE_TIMEOUT, tokio::net::TcpStream::connect(found))
        .await
        .map_err(|_| in_time(Stage::Tcp, "TCP connect"))?
        .map_err(|e| staged(Stage::Tcp, e))?;
    tcp.set_nodelay(true)?;
    tokio::time::timeout(DIAL_STAGE_TIMEOUT, tokio_rustls::TlsConnector::from(tls).connect(name, tcp))
        .await
        .map_err(|_| in_time(Stage::Tls, "the TLS handshake"))?
        .map_err(|e| staged(Stage::Tls, e))
}

/// A channel to the network door at `addr` (`HOST:PORT`) with the TLS client config `tls`,
/// verifying the server as `name`; `url` names the node in errors.
pub async fn tls_channel(
    url: &str,
    addr: &str,
    name: rustls::pki_types::ServerName<'static>,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> Result<Channel, ClientError> {
    let a = addr.to_string();
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|_| ClientError::BadUrl(url.into()))?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let (a, name, tls) = (a.clone(), name.clone(), tls.clone());
            async move { Ok::<_, std::io::Error>(TokioIo::new(dial(&a, name, tls).await?)) }
        }))
        .await
        .map_err(|e| {
            let (kind, detail) = classify(&e);
            ClientError::Remote(Failure { kind, url: url.into(), certs_dir: PathBuf::new(), detail })
        })
}

/// A failed call to `target` explained, when it failed on the connection to a remote node
/// rather than in the node. With TLS 1.3 a server refuses a client certificate (revoked, of
/// another CA) only after the handshake, so the first call is what fails, and often with no
/// more cause than "operation was canceled: connection closed". When the call's own error
/// does not tell, the node is dialled once more and its first answer after the handshake read
/// ([`diagnose`]): a refused certificate gets a TLS alert at once.
pub async fn explain_call(target: &Target, status: &tonic::Status) -> Option<Failure> {
    let Target::Remote { url, certs_dir } = target else { return None };
    let failure = |kind, detail| Failure { kind, url: url.clone(), certs_dir: certs_dir.clone(), detail };
    if let Some(source) = StdError::source(status) {
        let (kind, detail) = classify(source);
        if kind != FailureKind::Other {
            return Some(failure(kind, detail));
        }
    }
    diagnose(target).await
}

/// Dial the remote node of `target` and read its first answer after the TLS handshake (for
/// at most [`DIAL_STAGE_TIMEOUT`]): the failure of the dial or a TLS alert, classified; None
/// when the node answers (or says nothing) as a node that accepts us would.
pub async fn diagnose(target: &Target) -> Option<Failure> {
    use tokio::io::AsyncReadExt;
    let Target::Remote { url, certs_dir } = target else { return None };
    let failure = |kind, detail| Failure { kind, url: url.clone(), certs_dir: certs_dir.clone(), detail };
    let addr = url.strip_prefix("https://")?.trim_end_matches('/');
    let id = fleet_tls::config::Identity::client(certs_dir).ok()?;
    let tls = fleet_tls::config::client_config(&id).ok()?;
    let name = fleet_tls::config::any_node_server_name(&id.principal.tenant);
    let mut stream = match dial(addr, name, tls).await {
        Ok(s) => s,
        Err(e) => {
            let (kind, detail) = classify(&e);
            return Some(failure(kind, detail));
        }
    };
    let mut buf = [0u8; 512];
    match tokio::time::timeout(DIAL_STAGE_TIMEOUT, stream.read(&mut buf)).await {
        Ok(Err(e)) => {
            let (kind, detail) = classify(&e);
            Some(failure(kind, detail))
        }
        // Data (the server's HTTP/2 settings), silence or a plain close: no refusal seen.
        _ => None,
    }
}

pub async fn connect(target: &Target) -> Result<Channel, ClientError> {
    match target {
        Target::Socket(p) => unix_channel(p).await,
        Target::Remote { url, certs_dir } => remote_channel(url, certs_dir).await,
    }
}

/// The largest answer a client of this crate reads. tonic's default, 4 MiB, is about 30,000
/// agent rows of `ListAgents` (24,000 rows were 3.4 MB): a mesh of 3,000 hosts of 10 agents
/// each could not be listed. The same holds for the queue's listing (about 16,000 messages)
/// and the peers of a large mesh.
pub const MAX_ANSWER: usize = 256 << 20;

pub async fn fleet(target: &Target) -> Result<FleetClient<Channel>, ClientError> {
    Ok(FleetClient::new(connect(target).await?).max_decoding_message_size(MAX_ANSWER))
}

pub async fn queue(target: &Target) -> Result<fleet_proto::v1::queue_client::QueueClient<Channel>, ClientError> {
    Ok(fleet_proto::v1::queue_client::QueueClient::new(connect(target).await?).max_decoding_message_size(MAX_ANSWER))
}

pub async fn mesh(target: &Target) -> Result<MeshClient<Channel>, ClientError> {
    Ok(MeshClient::new(connect(target).await?).max_decoding_message_size(MAX_ANSWER))
}
