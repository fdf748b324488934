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
//!
//! The files change by hand (`fleet certs revoke` on the CA host, a copied
//! `crl.pem`) or by the node itself: a renewed certificate or a revocation list
//! that arrived from a peer (`crate::enroll`) is written under [`Reloads::files`]
//! and applied at once through [`Reloads::kick`], not at the next check. Each
//! applied list's number is published on [`Reloads::applied`], which the
//! revocation list's spreading follows.

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
    pub fn number(&self) -> u128 {
        self.0.lock().expect("registry").crl.as_ref().map_or(0, |c| c.number)
    }

    /// The list in force.
    pub fn current(&self) -> Option<Crl> {
        self.0.lock().expect("registry").crl.clone()
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
    /// The enrollment door's config, when the door is open.
    pub enroll_tls: Option<watch::Sender<Arc<ServerConfig>>>,
    pub registry: Registry,
    pub membership: crate::membership::Membership,
    pub reloads: Arc<Reloads>,
}

/// What the node's own writers of the certs dir share with [`follow`].
pub struct Reloads {
    /// Reload now (a file was just written).
    pub kick: tokio::sync::Notify,
    /// Held while files are written and while they are loaded, so a load never sees a new
    /// key beside the old certificate.
    pub files: Mutex<()>,
    /// The CRL number of the last applied load.
    pub applied: watch::Sender<u128>,
}

impl Reloads {
    pub fn new(number: u128) -> Arc<Reloads> {
        Arc::new(Reloads { kick: tokio::sync::Notify::new(), files: Mutex::new(()), applied: watch::channel(number).0 })
    }
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
            () = t.reloads.kick.notified() => {}
        }
        let (now, result) = {
            let _files = t.reloads.files.lock().expect("files");
            let now = stamp(&dir);
            if now == applied {
                continue;
            }
            (now, reload(&t))
        };
        match result {
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
    let enroll = match &t.enroll_tls {
        Some(_) => Some(fleet_tls::config::enroll_server_config(&id).map_err(|e| e.to_string())?),
        None => None,
    };
    t.membership.set_tls(&server, &client)?;
    if let (Some(tx), Some(config)) = (&t.enroll_tls, enroll) {
        tx.send_replace(config);
    }
    t.server_tls.send_replace(server);
    t.client_tls.send_replace(client);
    let crl = id.crl;
    let quic = t.membership.apply(crl.clone());
    let grpc = t.registry.apply(crl.clone());
    t.reloads.applied.send_replace(number);
    tracing::info!(
        crl_number = number,
        revoked = crl.as_ref().map_or(0, |c| c.revoked.len()),
        cut_grpc = grpc,
        cut_quic = quic,
        "certificates and revocation list applied"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_tls::config::node_server_name;
    use fleet_tls::issue::{init_ca, issue};
    use fleet_tls::revoke::{Target, read_crl, revoke};
    use fleet_tls::{CertsDir, DnsLabel, Identity, Kind};
    use std::path::Path;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::time::timeout;

    const SOON: Duration = Duration::from_secs(5);

    /// A mesh CA in `<tmp>/ca` and node `n1`'s certs dir in `<tmp>/n1`.
    fn mesh() -> (tempfile::TempDir, PathBuf, PathBuf) {
        fleet_tls::install_crypto_provider();
        let tmp = tempfile::tempdir().unwrap();
        let (ca, node) = (tmp.path().join("ca"), tmp.path().join("n1"));
        init_ca(&ca, "acme", false).unwrap();
        issue(&ca, Kind::Node, "n1", 30, Some(&node), false).unwrap();
        (tmp, ca, node)
    }

    /// An operator's certs dir, issued by the CA in `ca`.
    fn operator(ca: &Path, name: &str) -> PathBuf {
        let out = ca.parent().unwrap().join(name);
        issue(ca, Kind::Operator, name, 30, Some(&out), false).unwrap();
        out
    }

    /// One mutual-TLS connection from `client_dir`'s identity to a server
    /// presenting `node_dir`'s, the server side wrapped by `registry`.
    async fn connect(
        registry: &Registry,
        node_dir: &Path,
        client_dir: &Path,
    ) -> (Cuttable<tokio_rustls::server::TlsStream<TcpStream>>, tokio_rustls::client::TlsStream<TcpStream>) {
        let node = Identity::node(node_dir).unwrap();
        let client = Identity::client(client_dir).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(&node).unwrap());
        let connector = tokio_rustls::TlsConnector::from(client_config(&client).unwrap());
        let host = DnsLabel::parse_as("host name", "n1").unwrap();
        let name = node_server_name(&node.principal.tenant, &host);
        let (server, client) =
            tokio::join!(async { acceptor.accept(listener.accept().await.unwrap().0).await.unwrap() }, async {
                connector.connect(name, TcpStream::connect(addr).await.unwrap()).await.unwrap()
            },);
        (registry.wrap(server), client)
    }

    /// `a` sends `what` to `b`, which reads exactly it.
    async fn passes<A: AsyncWrite + Unpin, B: AsyncRead + Unpin>(a: &mut A, b: &mut B, what: &[u8]) {
        a.write_all(what).await.unwrap();
        a.flush().await.unwrap();
        let mut got = vec![0; what.len()];
        timeout(SOON, b.read_exact(&mut got)).await.expect("the bytes arrive").unwrap();
        assert_eq!(got, what);
    }

    fn aborted<T: std::fmt::Debug>(r: std::io::Result<T>) -> bool {
        r.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionAborted)
    }

    #[tokio::test]
    async fn a_list_cuts_the_connections_it_revokes_and_no_other() {
        let (_tmp, ca, node) = mesh();
        let (alice, bob) = (operator(&ca, "alice"), operator(&ca, "bob"));
        let registry = Registry::default();
        let (mut a1, mut a1_client) = connect(&registry, &node, &alice).await;
        let (mut a2, _a2_client) = connect(&registry, &node, &alice).await;
        let (gone, _gone_client) = connect(&registry, &node, &alice).await;
        let (mut b, mut b_client) = connect(&registry, &node, &bob).await;
        // Before any list: bytes pass both ways.
        passes(&mut a1_client, &mut a1, b"ping").await;
        passes(&mut a1, &mut a1_client, b"pong").await;
        // A connection that closed is forgotten: the list cuts only the two open ones.
        drop(gone);

        let done = revoke(&ca, Target::Cert(&alice.join("client.pem"))).unwrap();
        let crl = read_crl(&done.crl, &Identity::node(&node).unwrap().ca).unwrap().unwrap();
        assert_eq!(registry.apply(Some(crl.clone())), 2);
        assert_eq!(registry.number(), done.number);
        // Cut once: the same list again cuts nothing more.
        assert_eq!(registry.apply(Some(crl.clone())), 0);
        let mut buf = [0u8; 4];
        assert!(aborted(timeout(SOON, a1.read(&mut buf)).await.unwrap()));
        assert!(aborted(timeout(SOON, a2.write(b"x")).await.unwrap()));
        // Bob's connection is untouched.
        passes(&mut b_client, &mut b, b"still").await;
        passes(&mut b, &mut b_client, b"here").await;
        // A connection of alice's that is registered after the list is cut at once.
        let (mut a3, _a3_client) = connect(&registry, &node, &alice).await;
        assert!(aborted(timeout(SOON, a3.read(&mut buf)).await.unwrap()));
        // No list: nothing is cut, and the number in force is 0.
        assert_eq!(registry.apply(None), 0);
        assert_eq!(registry.number(), 0);
    }

    /// Flush and shutdown reach the wrapped stream (a buffered one here, so a
    /// lost flush holds the bytes back).
    #[tokio::test]
    async fn flush_and_shutdown_reach_the_stream() {
        let (near, mut far) = tokio::io::duplex(64);
        let token = CancellationToken::new();
        let mut c = Cuttable {
            inner: tokio::io::BufWriter::new(near),
            cut: Box::pin(token.clone().cancelled_owned()),
            id: u64::MAX,
            registry: Registry::default(),
        };
        c.write_all(b"held").await.unwrap();
        let mut buf = [0u8; 4];
        assert!(timeout(Duration::from_millis(100), far.read(&mut buf)).await.is_err(), "buffered until the flush");
        c.flush().await.unwrap();
        timeout(SOON, far.read_exact(&mut buf)).await.unwrap().unwrap();
        assert_eq!(&buf, b"held");
        c.shutdown().await.unwrap();
        assert_eq!(timeout(SOON, far.read(&mut buf)).await.expect("end of stream").unwrap(), 0);
    }

    /// What `reload` updates, for node `n1` of `node_dir`.
    async fn targets(node_dir: &Path, cancel: &CancellationToken) -> Targets {
        let id = Identity::node(node_dir).unwrap();
        let (server, client) = (server_config(&id).unwrap(), client_config(&id).unwrap());
        let ep = crate::membership::endpoint("127.0.0.1:0".parse().unwrap(), &server, &client, b"test").unwrap();
        let addr = ep.local_addr().unwrap();
        let me = crate::membership::MemberId {
            tenant: "acme".into(),
            host: "n1".into(),
            grpc: addr,
            quic: addr,
            generation: 1,
            bump: 0,
        };
        let tracker = tokio_util::task::TaskTracker::new();
        let membership =
            crate::membership::start(me, ep, crate::membership::SwimTimings::default(), cancel.clone(), &tracker);
        Targets {
            certs_dir: node_dir.to_path_buf(),
            server_tls: watch::channel(server).0,
            client_tls: watch::channel(client).0,
            enroll_tls: None,
            registry: Registry::default(),
            membership,
            reloads: Reloads::new(0),
        }
    }

    /// Revoke a new operator `name`; the CA's crl.pem then, and its number.
    fn revoke_one(ca: &Path, name: &str) -> (Vec<u8>, u128) {
        let done = revoke(ca, Target::Cert(&operator(ca, name).join("client.pem"))).unwrap();
        (std::fs::read(&done.crl).unwrap(), done.number)
    }

    #[tokio::test]
    async fn an_older_list_is_refused_and_the_one_in_force_stays() {
        let (_tmp, ca, node) = mesh();
        let cancel = CancellationToken::new();
        let t = targets(&node, &cancel).await;
        let (first, second) = (revoke_one(&ca, "x1"), revoke_one(&ca, "x2"));
        assert_eq!((first.1, second.1), (1, 2));
        let crl = CertsDir::new(&node).crl();
        let mut server_tls = t.server_tls.subscribe();
        for ((pem, number), ok) in [(&first, true), (&second, true), (&first, false), (&second, true)] {
            std::fs::write(&crl, pem).unwrap();
            let r = reload(&t);
            assert_eq!(r.is_ok(), ok, "crl number {number}: {r:?}");
            if let Err(e) = r {
                assert!(e.contains("CRL number 1, older than the 2 in force"), "{e}");
            }
            assert_eq!(t.registry.number(), if ok { *number } else { 2 });
            assert_eq!(server_tls.has_changed().unwrap(), ok, "new TLS configs only when applied");
            server_tls.mark_unchanged();
        }
        cancel.cancel();
    }

    /// A log sink for one test.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Log {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Log {
        fn count(&self, what: &str) -> usize {
            String::from_utf8_lossy(&self.0.lock().unwrap()).matches(what).count()
        }
    }

    /// The node follows its certs dir: a new list is applied within a check or
    /// two; one it cannot apply is reported once, not at every check.
    #[tokio::test]
    async fn the_node_follows_its_certs_dir_and_reports_a_bad_list_once() {
        let log = Log::default();
        let sink = log.clone();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || sink.clone()).finish();
        // A current-thread runtime: every task of this test logs to `log`.
        let _guard = tracing::subscriber::set_default(subscriber);
        let (_tmp, ca, node) = mesh();
        let cancel = CancellationToken::new();
        let t = targets(&node, &cancel).await;
        let registry = t.registry.clone();
        let following = tokio::spawn(follow(t, cancel.clone()));
        // Its first look at the dir (before the change) is taken when it first runs.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (pem, number) = revoke_one(&ca, "x1");
        std::fs::write(CertsDir::new(&node).crl(), pem).unwrap();
        let start = std::time::Instant::now();
        while registry.number() != number {
            assert!(start.elapsed() < 3 * CHECK_EVERY, "the new list was not applied");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::fs::write(CertsDir::new(&node).crl(), "not a list").unwrap();
        let not_applied = "not applied";
        let start = std::time::Instant::now();
        while log.count(not_applied) == 0 {
            assert!(start.elapsed() < 3 * CHECK_EVERY, "the bad list was not reported");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Two more checks see the same bad file: still one report.
        tokio::time::sleep(2 * CHECK_EVERY + CHECK_EVERY / 2).await;
        assert_eq!(log.count(not_applied), 1, "{}", String::from_utf8_lossy(&log.0.lock().unwrap()));
        assert_eq!(registry.number(), number, "the list in force stays");
        cancel.cancel();
        following.await.unwrap();
    }
}
