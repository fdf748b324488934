//! Revocation and rotation at run time: the node follows its certs dir.
//!
//! Every [`CHECK_EVERY`] the node looks at `ca.pem`, `node.pem`, `node.key` and
//! `crl.pem` (size, mtime, inode); when one changed, the node identity is
//! loaded again. If that fails (a CRL not signed by the mesh CA, one that
//! revokes this node's own certificate, a new key beside the old certificate
//! halfway through a rotation), the running configuration stays, the error is
//! logged once, and the load is tried again every check until it succeeds.
//! Once loaded:
//! - new TLS handshakes on the network door (gRPC over TCP, membership over
//!   QUIC) and outgoing dials use the new configs; every peer's gRPC channel
//!   is made again (`peers::follow_membership`);
//! - open gRPC connections whose client certificate it revokes are cut
//!   ([`Cuttable`] streams, registered by [`Registry`]);
//! - open QUIC (membership) connections with a revoked node are closed; new
//!   ones are refused, so SWIM declares that node down within seconds.

use fleet_tls::config::{Identity, client_config, server_config};
use fleet_tls::revoke::{Crl, serial_of};
use rustls::{ClientConfig, ServerConfig};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// How often `crl.pem` is looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// An open connection: the serial of its client certificate, and its cut.
type Open = (Vec<u8>, CancellationToken);

/// The open incoming connections, by connection id, and the list in force:
/// a connection whose handshake began before a new list and ends after it is
/// checked against it when it is registered.
#[derive(Default)]
struct Conns {
    conns: HashMap<u64, Open>,
    crl: Option<Crl>,
}

#[derive(Clone, Default)]
pub struct Registry(Arc<Mutex<Conns>>);

impl Registry {
    /// Wrap a freshly accepted TLS stream so that it can be cut.
    pub fn wrap<T>(&self, inner: tokio_rustls::server::TlsStream<T>) -> Cuttable<tokio_rustls::server::TlsStream<T>> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let serial = inner.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(serial_of);
        let token = CancellationToken::new();
        if let Some(serial) = serial {
            let mut open = self.0.lock().expect("registry");
            if open.crl.as_ref().is_some_and(|c| c.revokes(&serial)) {
                token.cancel();
            }
            open.conns.insert(id, (serial, token.clone()));
        }
        Cuttable { inner, cut: Box::pin(token.cancelled_owned()), id, registry: self.clone() }
    }

    /// Put `crl` in force: cut every open connection whose client certificate it
    /// revokes, and every one registered later; how many were cut now.
    pub fn apply(&self, crl: Option<Crl>) -> usize {
        let mut open = self.0.lock().expect("registry");
        let mut n = 0;
        if let Some(crl) = &crl {
            for (serial, token) in open.conns.values() {
                if crl.revokes(serial) && !token.is_cancelled() {
                    token.cancel();
                    n += 1;
                }
            }
        }
        open.crl = crl;
        n
    }

    /// The CRL number in force (0 without a list).
    fn number(&self) -> u128 {
        self.0.lock().expect("registry").crl.as_ref().map_or(0, |c| c.number)
    }
}

/// An accepted connection that fails its next read or write, and wakes its
/// reader, once cut.
pub struct Cuttable<T> {
    inner: T,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    id: u64,
    registry: Registry,
}

impl<T> Drop for Cuttable<T> {
    fn drop(&mut self) {
        self.registry.0.lock().expect("registry").conns.remove(&self.id);
    }
}

fn revoked() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "the peer's certificate was revoked")
}

impl<T: AsyncRead + Unpin> AsyncRead for Cuttable<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(revoked()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Cuttable<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if self.cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(revoked()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected for Cuttable<T> {
    type ConnectInfo = T::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Where a reload goes.
pub struct Targets {
    pub certs_dir: PathBuf,
    pub server_tls: watch::Sender<Arc<ServerConfig>>,
    pub client_tls: watch::Sender<Arc<ClientConfig>>,
    pub registry: Registry,
    pub membership: crate::membership::Membership,
}

type Stamp = Vec<Option<(u64, i64, i64, u64)>>;

fn stamp(dir: &fleet_tls::CertsDir) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    [dir.ca_cert(), dir.node_cert(), dir.node_key(), dir.crl()]
        .iter()
        .map(|p| std::fs::metadata(p).ok().map(|m| (m.len(), m.mtime(), m.mtime_nsec(), m.ino())))
        .collect()
}

/// Follow the certs dir until `cancel`.
pub async fn follow(t: Targets, cancel: CancellationToken) {
    let dir = fleet_tls::CertsDir::new(&t.certs_dir);
    let mut applied = stamp(&dir);
    let mut last_error = None;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
        let now = stamp(&dir);
        if now == applied {
            continue;
        }
        match reload(&t) {
            Ok(()) => {
                applied = now;
                last_error = None;
            }
            Err(e) => {
                if last_error.as_ref() != Some(&e) {
                    tracing::error!(dir = %t.certs_dir.display(), error = %e, "certificates or revocation list not applied; the previous ones stay in force (retrying)");
                }
                last_error = Some(e);
            }
        }
    }
}

fn reload(t: &Targets) -> Result<(), String> {
    let id = Identity::node(&t.certs_dir).map_err(|e| e.to_string())?;
    let (number, in_force) = (id.crl.as_ref().map_or(0, |c| c.number), t.registry.number());
    if number < in_force {
        // A stale copy would silently take revocations back.
        return Err(format!(
            "crl.pem has CRL number {number}, older than the {in_force} in force: copy the current one from the CA's certs dir"
        ));
    }
    let server = server_config(&id).map_err(|e| e.to_string())?;
    let client = client_config(&id).map_err(|e| e.to_string())?;
    t.membership.set_tls(&server, &client)?;
    t.server_tls.send_replace(server);
    t.client_tls.send_replace(client);
    let crl = id.crl;
    let quic = t.membership.apply(crl.clone());
    let grpc = t.registry.apply(crl.clone());
    tracing::info!(
        crl_number = number,
        revoked = crl.as_ref().map_or(0, |c| c.revoked.len()),
        cut_grpc = grpc,
        cut_quic = quic,
        "certificates and revocation list applied"
    );
    Ok(())
}
