//! The membership plane's QUIC endpoint and the TLS configs of its connections.

use super::{ALPN, IDLE_CLOSE, PEER_STREAMS};
use std::net::SocketAddr;
use std::sync::Arc;

/// The QUIC endpoint of the membership plane, bound on `bind` (UDP), with the
/// node's TLS configs (their ALPN is replaced by [`ALPN`]).
///
/// `reset_secret` keys the endpoint's stateless resets; a node derives it from its private
/// key, so a run after a restart resets the connections its peers still hold to the run
/// before: a peer's first datagram over such a connection closes it (the next dials anew)
/// instead of vanishing for up to [`IDLE_CLOSE`]. Any secret of the node's own will do; a
/// random one (a test's) resets nothing across restarts.
pub fn endpoint(
    bind: SocketAddr,
    server: &rustls::ServerConfig,
    client: &rustls::ClientConfig,
    reset_secret: &[u8],
) -> Result<quinn::Endpoint, String> {
    let (sc, cc) = quic_configs(server, client)?;
    let reset = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, reset_secret);
    // The next run must also recognize this run's connection IDs as ones it could have
    // issued: an endpoint resets only those (quinn checks a keyed hash in each ID).
    let ids = ring::hmac::sign(&reset, b"connection ids");
    let ids = u64::from_le_bytes(ids.as_ref()[..8].try_into().expect("8 of 32 bytes"));
    let mut config = quinn::EndpointConfig::new(Arc::new(reset));
    config.cid_generator(move || Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(ids)));
    let socket = std::net::UdpSocket::bind(bind).map_err(|e| format!("cannot bind UDP {bind}: {e}"))?;
    let mut ep = quinn::Endpoint::new(config, Some(sc), socket, Arc::new(quinn::TokioRuntime))
        .map_err(|e| format!("cannot serve QUIC on UDP {bind}: {e}"))?;
    ep.set_default_client_config(cc);
    Ok(ep)
}

/// The QUIC server and client configs made from the node's TLS configs.
pub(super) fn quic_configs(
    server: &rustls::ServerConfig,
    client: &rustls::ClientConfig,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), String> {
    let mut server = server.clone();
    server.alpn_protocols = vec![ALPN.to_vec()];
    let mut client = client.clone();
    client.alpn_protocols = vec![ALPN.to_vec()];
    // No TLS session resumption: every connection's handshake verifies the peer's
    // certificate (its chain to the mesh CA, its validity period, the revocation list in
    // force). A node dials a peer again whenever their connection idled out (`IDLE_CLOSE`),
    // and with rustls's defaults that dial resumed the session of an earlier connection
    // without verifying the certificate again (revocation was still checked when the
    // connection is kept: `Transport::keep`). No session caches either: up to 256 sessions a
    // side, filled by the reconnections of a large mesh (300 KB of node 0's live heap at 100
    // members; its RSS did not measurably change).
    server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    server.send_tls13_tickets = 0;
    client.resumption = rustls::client::Resumption::disabled();
    let qs = quinn::crypto::rustls::QuicServerConfig::try_from(Arc::new(server)).map_err(|e| e.to_string())?;
    let qc = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(client)).map_err(|e| e.to_string())?;
    let mut transport = quinn::TransportConfig::default();
    // Liveness is SWIM's job, not QUIC's: no keep-alive, and a connection that carries
    // nothing for [`IDLE_CLOSE`] is closed (the next datagram dials again). Keep-alives on a
    // connection per member made memory and packets grow with the mesh (docs/benchmarks.md,
    // "Scale"); without them an idle connection costs memory only, and a node holds
    // connections only to the members it talked to within [`IDLE_CLOSE`]. A member declared
    // down is forgotten at once (see `forget`), a restarted peer's new connection replaces
    // the old, and the restarted peer resets the old one at its first datagram (`endpoint`).
    transport.keep_alive_interval(None);
    transport.max_idle_timeout(Some(IDLE_CLOSE.try_into().expect("idle timeout")));
    // A SWIM datagram fits the 1200 bytes every QUIC path carries (`foca_config`): probing
    // for a larger MTU only sent packets, half of an idle node's datagrams at 20 members.
    transport.mtu_discovery_config(None);
    // No segmentation offload: membership sends single datagrams and small streams, and
    // with it every connection kept a send buffer for a batch of 10 datagrams (12 KB, half
    // of a connection's heap; at 100 members RSS 27.1 -> 26.3 MB without it: docs/
    // benchmarks.md, "Tenth pass"). Without it the buffer holds one.
    transport.enable_segmentation_offload(false);
    // Streams carry a full sync or a rows ask: a peer may open one of each at a time.
    transport.max_concurrent_bidi_streams(PEER_STREAMS.into());
    transport.max_concurrent_uni_streams(0u32.into());
    let transport = Arc::new(transport);
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(qs));
    sc.transport_config(transport.clone());
    let mut cc = quinn::ClientConfig::new(Arc::new(qc));
    cc.transport_config(transport);
    Ok((sc, cc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
    use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
    use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A mesh CA of tenant acme and node h1's identity, in `tmp`/certs.
    fn node_h1(tmp: &std::path::Path) -> (std::path::PathBuf, fleet_tls::config::Identity) {
        fleet_tls::config::install_crypto_provider();
        let dir = tmp.join("certs");
        fleet_tls::issue::init_ca(&dir, "acme", false).unwrap();
        fleet_tls::issue::issue(&dir, fleet_tls::Kind::Node, "h1", 90, Some(&dir), false).unwrap();
        let id = fleet_tls::config::Identity::node(&dir).unwrap();
        (dir, id)
    }

    /// The mesh's client-certificate verifier, counting the certificates it verified: once
    /// in a full handshake, never when a session is resumed.
    #[derive(Debug)]
    struct Counted(Arc<dyn ClientCertVerifier>, Arc<AtomicUsize>);

    impl ClientCertVerifier for Counted {
        fn root_hint_subjects(&self) -> &[DistinguishedName] {
            self.0.root_hint_subjects()
        }

        fn verify_client_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            now: UnixTime,
        ) -> Result<ClientCertVerified, rustls::Error> {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.verify_client_cert(end_entity, intermediates, now)
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }

    /// A node dials a peer again whenever their connection idled out. Each time, the peer
    /// verifies its certificate anew: no session of an earlier connection stands in for it
    /// (which would skip a revocation or an expiry since), and none is kept.
    #[tokio::test]
    async fn every_connection_verifies_the_peer_certificate_no_session_is_resumed() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, id) = node_h1(tmp.path());
        let provider = fleet_tls::config::provider();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap()).unwrap();
        let inner = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .unwrap();
        let verified = Arc::new(AtomicUsize::new(0));
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(Arc::new(Counted(inner, verified.clone())))
            .with_single_cert(vec![id.cert.clone()], PrivateKeyDer::from_pem_file(dir.join("node.key")).unwrap())
            .unwrap();
        let client = fleet_tls::config::client_config(&id).unwrap();
        let here: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (peer, node) =
            (endpoint(here, &server, &client, b"peer").unwrap(), endpoint(here, &server, &client, b"node").unwrap());
        let to = peer.local_addr().unwrap();
        let soon = Duration::from_secs(10);
        for round in 1..=3 {
            let accept = async { peer.accept().await.expect("incoming").await.expect("accepted") };
            let dial = async { node.connect(to, "node.acme.fleet.internal").unwrap().await.expect("handshake") };
            let (conn, theirs) =
                tokio::time::timeout(soon, async { tokio::join!(dial, accept) }).await.expect("in time");
            // A round trip after the handshake: a session ticket sent with it has arrived.
            conn.send_datagram(bytes::Bytes::from_static(b"ping")).unwrap();
            assert_eq!(&tokio::time::timeout(soon, theirs.read_datagram()).await.unwrap().unwrap()[..], b"ping");
            theirs.send_datagram(bytes::Bytes::from_static(b"pong")).unwrap();
            assert_eq!(&tokio::time::timeout(soon, conn.read_datagram()).await.unwrap().unwrap()[..], b"pong");
            assert_eq!(verified.load(Ordering::SeqCst), round, "connection {round}: the peer verified the certificate");
            conn.close(0u32.into(), b"idle");
            let _ = tokio::time::timeout(soon, theirs.closed()).await;
        }
    }
    /// A node restarted on its address resets the connections its peers still hold to the
    /// run before, at their first datagram, when both runs derive the same reset secret
    /// (from the node's key, `server::bind_doors`); with another secret the peer's
    /// connection stays open and its datagrams vanish. Each run is a runtime of its own,
    /// dropped as a kill -9 would end it: no close is sent.
    #[test]
    fn a_restarted_node_resets_the_connections_of_its_run_before() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, id) = node_h1(tmp.path());
        let (server, client) =
            (fleet_tls::config::server_config(&id).unwrap(), fleet_tls::config::client_config(&id).unwrap());
        let runtime = || tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let soon = Duration::from_secs(10);
        let node_rt = runtime();
        let node =
            node_rt.block_on(async { endpoint("127.0.0.1:0".parse().unwrap(), &server, &client, b"node") }).unwrap();
        for (second_run, reset) in [(&b"peer"[..], true), (&b"another"[..], false)] {
            // The peer's first run, and a connection to it that carried a datagram.
            let peer_rt = runtime();
            let (addr, conn, first_run) = peer_rt.block_on(async {
                let peer = endpoint("127.0.0.1:0".parse().unwrap(), &server, &client, b"peer").unwrap();
                let addr = peer.local_addr().unwrap();
                let accept = async { peer.accept().await.expect("incoming").await.expect("accepted") };
                let dial = node_rt.spawn({
                    let node = node.clone();
                    async move { node.connect(addr, "node.acme.fleet.internal").unwrap().await.expect("handshake") }
                });
                let (conn, theirs) = tokio::time::timeout(soon, async { tokio::join!(dial, accept) }).await.unwrap();
                let conn = conn.unwrap();
                conn.send_datagram(bytes::Bytes::from_static(b"ping")).unwrap();
                assert_eq!(&tokio::time::timeout(soon, theirs.read_datagram()).await.unwrap().unwrap()[..], b"ping");
                (addr, conn, (peer, theirs))
            });
            // The run ends: its tasks first, so that nothing sends a close, then its socket.
            drop(peer_rt);
            drop(first_run);
            // The second run, on the same address.
            let peer_rt = runtime();
            let _again = peer_rt.block_on(async { endpoint(addr, &server, &client, second_run) }).unwrap();
            // Any packet of the node reaches the second run: this datagram, or one the
            // connection sent by itself since (an ack), which may have been reset already.
            let closed = node_rt.block_on(async {
                let sent = conn.send_datagram(bytes::Bytes::from(vec![7u8; 100])).is_ok();
                (sent, tokio::time::timeout(Duration::from_secs(if reset { 10 } else { 2 }), conn.closed()).await)
            });
            match closed {
                (_, Ok(quinn::ConnectionError::Reset)) if reset => {}
                (true, Err(_)) if !reset => assert!(conn.close_reason().is_none()),
                other => panic!("reset expected: {reset}; sent, and the connection: {other:?}"),
            }
        }
    }
}
