//! Mutual-TLS connections over TCP: an accept stream for a gRPC server, and a dialer.
//!
//! [`TlsIncoming`] accepts TCP connections and runs each TLS handshake in its own task,
//! bounded in number and time, so a slow or hostile client never holds up the others.
//! Only completed handshakes come out of the stream, as `tokio_rustls` server streams. With
//! tonic's `tls-ring` feature (ring only; not `tls-aws-lc`), tonic implements `Connected`
//! for them, so a handler reads `Request::peer_certs()` and `Request::remote_addr()` (tonic
//! 0.14 exports `TlsConnectInfo` only with a `tls-*` feature, not with `tls-connect-info`
//! alone). The server config is read from a `watch` channel at each handshake, so sending a
//! new config rotates certificates without a restart.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};
use tokio_stream::Stream;

/// Longest a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in flight at once; further connections wait in the accept queue.
pub const MAX_HANDSHAKES: usize = 128;

/// A stream of accepted mutual-TLS connections, for `tonic`'s `serve_with_incoming`.
/// Dropping it stops accepting.
pub struct TlsIncoming {
    rx: mpsc::Receiver<io::Result<server::TlsStream<TcpStream>>>,
    task: JoinHandle<()>,
    local_addr: SocketAddr,
}

impl TlsIncoming {
    /// Accept on `listener`, handshaking with the config current in `config` at each accept.
    /// Must be called within a tokio runtime.
    pub fn new(listener: TcpListener, config: watch::Receiver<Arc<ServerConfig>>) -> io::Result<TlsIncoming> {
        let local_addr = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(MAX_HANDSHAKES);
        let task = tokio::spawn(accept_loop(listener, config, tx));
        Ok(TlsIncoming { rx, task, local_addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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
) {
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            () = tx.closed() => return,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(config.borrow().clone());
        let tx = tx.clone();
        // Per-connection task: bounded by the semaphore and the handshake timeout.
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send(Ok(tls)).await;
                }
                Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake refused"),
                Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
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
