//! Reaching a node: the local socket (no certificates: the uid is checked),
//! or `FLEET_NODE=https://host:port` with an operator certificate.

use fleet_proto::v1::fleet_client::FleetClient;
use fleet_proto::v1::mesh_client::MeshClient;
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no fleet node at {0}: start one with `fleet node` (or pass --local to act on this host directly)")]
    NoNode(String),
    #[error("bad FLEET_NODE {0:?}: expected https://HOST:PORT")]
    BadUrl(String),
    #[error("credentials for {url}: {detail}")]
    Credentials { url: String, detail: String },
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
    tls_channel(url, &addr, name, tls).await
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
        .connect_timeout(Duration::from_secs(3))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let (a, name, tls) = (a.clone(), name.clone(), tls.clone());
            async move {
                let sock = tokio::net::lookup_host(&a).await?.next().ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, format!("{a} resolves to nothing"))
                })?;
                Ok::<_, std::io::Error>(TokioIo::new(fleet_tls::net::connect(sock, name, tls).await?))
            }
        }))
        .await
        .map_err(|e| ClientError::NoNode(format!("{url} ({e})")))
}

pub async fn connect(target: &Target) -> Result<Channel, ClientError> {
    match target {
        Target::Socket(p) => unix_channel(p).await,
        Target::Remote { url, certs_dir } => remote_channel(url, certs_dir).await,
    }
}

pub async fn fleet(target: &Target) -> Result<FleetClient<Channel>, ClientError> {
    Ok(FleetClient::new(connect(target).await?))
}

pub async fn mesh(target: &Target) -> Result<MeshClient<Channel>, ClientError> {
    Ok(MeshClient::new(connect(target).await?))
}
