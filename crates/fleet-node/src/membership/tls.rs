//! The membership plane's QUIC endpoint and the TLS configs of its connections.

use super::{ALPN, IDLE_CLOSE, PEER_STREAMS};
use std::net::SocketAddr;
use std::sync::Arc;

/// The QUIC endpoint of the membership plane, bound on `bind` (UDP), with the
/// node's TLS configs (their ALPN is replaced by [`ALPN`]).
pub fn endpoint(
    bind: SocketAddr,
    server: &rustls::ServerConfig,
    client: &rustls::ClientConfig,
) -> Result<quinn::Endpoint, String> {
    let (sc, cc) = quic_configs(server, client)?;
    let mut ep = quinn::Endpoint::server(sc, bind).map_err(|e| format!("cannot bind UDP {bind}: {e}"))?;
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
    // Liveness is SWIM's job, not QUIC's: no keep-alive, and a connection that
    // carries nothing for [`IDLE_CLOSE`] is closed (the next datagram dials
    // again). SWIM talks to every member in turn, so keeping connections alive
    // meant one per member, each with its keep-alive: memory and packets per
    // node grew with the mesh (docs/benchmarks.md, "Scale"). Now a node holds
    // connections only to the members it talked to lately, whatever the size.
    // A member declared down is forgotten at once (see `forget`), and a
    // restarted peer's new connection replaces the old.
    transport.keep_alive_interval(None);
    transport.max_idle_timeout(Some(IDLE_CLOSE.try_into().expect("idle timeout")));
    // A SWIM datagram fits the 1200 bytes every QUIC path carries (`foca_config`): probing
    // for a larger MTU only sent packets, half of an idle node's datagrams at 20 members.
    transport.mtu_discovery_config(None);
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
        fleet_tls::config::install_crypto_provider();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        fleet_tls::issue::init_ca(&dir, "acme", false).unwrap();
        fleet_tls::issue::issue(&dir, fleet_tls::Kind::Node, "h1", 90, Some(&dir), false).unwrap();
        let id = fleet_tls::config::Identity::node(&dir).unwrap();
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
        let (peer, node) = (endpoint(here, &server, &client).unwrap(), endpoint(here, &server, &client).unwrap());
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
}
