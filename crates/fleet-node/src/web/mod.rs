//! The web door: the node as a federated web UI backend (docs/protocol.md "Web door").
//!
//! A second listener (`web_listen`, default `127.0.0.1:7421`; HTTPS with the node
//! certificate when `web_tls` is on, required off loopback) serving HTTP/1.1 (hyper):
//!
//! - `/api/v1/...`: a JSON API mirroring the gRPC verbs, with the `--json` objects
//!   ([`crate::json`]). Every call is made in this process on the node's own `Fleet` and
//!   `Mesh` services as the browser's principal `web:<label>@<tenant>` ([`WebCaller`]), so
//!   authorization, audit, forwarding across the mesh (on behalf of that principal) and the
//!   fan-out are the same code as for a CLI.
//! - `/api/v1/events`: Server-Sent Events of the event stream, resumable by `Last-Event-ID`
//!   from the last [`JOURNAL`] events ([`journal`]).
//! - `/api/v1/agents/{host}/{name}/watch|attach`: a WebSocket per pane ([`ws`]).
//! - `/metrics`: Prometheus text.
//! - `/pair`: a pairing link's code exchanged, once, for a session cookie ([`sessions`]).
//!
//! Modules: [`sessions`] (codes and sessions), [`journal`] (numbered events), [`api`] (the
//! routes), [`admin`] (the gRPC `Web` service behind `fleet web pair|sessions`).

pub mod admin;
pub mod api;
pub mod journal;
pub mod sessions;
pub mod ws;

use crate::config::WebConfig;
use crate::service::Node;
use sessions::{Role, Store};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Events kept for `Last-Event-ID` resumption.
pub const JOURNAL: usize = 1024;
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 256;
/// A TLS handshake or a request's headers must arrive within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A browser's identity on a call into the node's services, carried as a request extension.
/// Only this process puts it there: nothing on the wire can.
#[derive(Clone, Debug)]
pub struct WebCaller {
    pub label: String,
    pub role: Role,
    /// The browser's address, for the audit log.
    pub peer: String,
}

/// The web door's listener, bound before anything else runs.
pub struct Bound {
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    pub addr: SocketAddr,
    /// `http://127.0.0.1:7421`, or `https://...` with TLS.
    pub url: String,
    cfg: WebConfig,
}

/// Bind `cfg.listen`. A default address that is taken (another node of another tenant on
/// this host) costs only the web door: `Ok(None)` and a warning; a configured one stops
/// the node with an error naming the key.
pub async fn bind(cfg: &WebConfig, identity: &fleet_tls::Identity) -> Result<Option<Bound>, String> {
    let tls = if cfg.tls {
        Some(fleet_tls::config::web_server_config(identity).map_err(|e| format!("web_tls: {e}"))?)
    } else {
        None
    };
    let listener = match TcpListener::bind(cfg.listen).await {
        Ok(l) => l,
        Err(e) if !cfg.explicit => {
            tracing::warn!(
                web_listen = %cfg.listen, error = %e,
                "the web door is off: its default address is taken; set web_listen (FLEET_WEB_LISTEN) or web: false"
            );
            return Ok(None);
        }
        Err(e) => {
            return Err(format!(
                "cannot listen on {} for the web door: {e} (set web_listen or FLEET_WEB_LISTEN, or web: false)",
                cfg.listen
            ));
        }
    };
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let url = if tls.is_some() {
        // The node certificate names the node only by DNS names (no IP SANs): a browser
        // accepts it under `<host>.<tenant>.fleet.internal`, never under the address the door
        // is bound to (which may be 0.0.0.0). That name must resolve to the node for the
        // browser (a hosts line, or DNS): `fleet web pair` says so.
        let p = &identity.principal;
        let host = fleet_core::names::DnsLabel::parse_as("host", &p.name).map_err(|e| format!("web_tls: {e}"))?;
        format!("https://{}:{}", fleet_tls::principal::node_dns_name(&p.tenant, &host), addr.port())
    } else {
        format!("http://{addr}")
    };
    Ok(Some(Bound { listener, tls, addr, url, cfg: cfg.clone() }))
}

/// The running door: what its routes and the `Web` gRPC service share.
pub struct WebDoor {
    pub node: Arc<Node>,
    pub sessions: Mutex<Store>,
    pub tls: bool,
    pub addr: SocketAddr,
    pub url: String,
    pub journal: journal::Journal,
}

/// Serve `bound` for `node` until `cancel`.
pub fn start(bound: Bound, node: Arc<Node>, cancel: &CancellationToken, tracker: &TaskTracker) -> Arc<WebDoor> {
    let (store, problem) = Store::load(&bound.cfg.sessions_file, crate::live::now_ms());
    if let Some(p) = problem {
        tracing::warn!(problem = %p, "web sessions");
    }
    let journal = journal::Journal::new(node.info.generation);
    tracker.spawn(journal::follow(journal.clone(), node.clone(), cancel.clone()));
    let door = Arc::new(WebDoor {
        node,
        sessions: Mutex::new(store),
        tls: bound.tls.is_some(),
        addr: bound.addr,
        url: bound.url.clone(),
        journal,
    });
    tracing::info!(url = %bound.url, tls = door.tls, "web door serving");
    tracker.spawn(accept_loop(bound.listener, bound.tls, door.clone(), cancel.clone()));
    door
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    door: Arc<WebDoor>,
    cancel: CancellationToken,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let permit = tokio::select! {
            () = cancel.cancelled() => return,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let (stream, peer) = tokio::select! {
            () = cancel.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "web door accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (door, acceptor, cancel) = (door.clone(), acceptor.clone(), cancel.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                None => serve_connection(stream, peer, door, cancel).await,
                Some(a) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, a.accept(stream)).await {
                    Ok(Ok(tls)) => serve_connection(tls, peer, door, cancel).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "web door TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "web door TLS handshake timed out"),
                },
            }
        });
    }
}

async fn serve_connection<S>(stream: S, peer: SocketAddr, door: Arc<WebDoor>, cancel: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let door = door.clone();
        async move { Ok::<_, std::convert::Infallible>(api::handle(door, req, peer).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "web door connection ended");
            }
        }
        () = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.as_mut()).await;
        }
    }
}
