//! What one mesh handshake costs in CPU: TLS 1.3 with client certificates between two node
//! identities of one mesh CA (certificates made here), in memory on one thread, so the time
//! is the CPU of both ends together (no network, no QUIC framing around it).
//!
//! Rows: the node's own configs (`config::server_config`, `config::client_config`), then a
//! client that offers one suite only against the same server, for each TLS 1.3 suite: what
//! the choice of suite costs. Every membership connection (QUIC) and every gRPC connection
//! between nodes pays one such handshake.
//!
//! `cargo bench -p fleet-tls --bench handshake` (`FLEET_HANDSHAKES=N`, default 2000 a row).

use std::sync::Arc;
use std::time::Instant;

use fleet_tls::config::{self, Identity};
use fleet_tls::issue::{Ca, Validity};
use fleet_tls::{DnsLabel, Kind, Principal};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection};

fn label(s: &str) -> DnsLabel {
    DnsLabel::parse_as("bench label", s).expect("label")
}

/// One handshake, both ends pumped in memory; the suite it agreed on.
fn handshake(
    client: &Arc<ClientConfig>,
    server: &Arc<ServerConfig>,
    name: &ServerName<'static>,
) -> rustls::CipherSuite {
    let mut c = Connection::Client(ClientConnection::new(client.clone(), name.clone()).expect("client"));
    let mut s = Connection::Server(ServerConnection::new(server.clone()).expect("server"));
    let mut wire = Vec::with_capacity(8192);
    while c.is_handshaking() || s.is_handshaking() {
        pump(&mut c, &mut s, &mut wire);
        pump(&mut s, &mut c, &mut wire);
    }
    c.negotiated_cipher_suite().expect("a suite").suite()
}

/// What `from` has to send, read and processed by `to`.
fn pump(from: &mut Connection, to: &mut Connection, wire: &mut Vec<u8>) {
    wire.clear();
    while from.wants_write() {
        from.write_tls(wire).expect("writes");
    }
    let mut rd = &wire[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).expect("reads");
    }
    to.process_new_packets().expect("accepts the other end's messages");
}

fn main() {
    config::install_crypto_provider();
    let asked: usize = std::env::var("FLEET_HANDSHAKES").ok().and_then(|s| s.parse().ok()).unwrap_or(2000);
    // Whole turns, at least one handshake each.
    let turn = (asked / ROUNDS).max(1);
    let n = turn * ROUNDS;
    let tenant = label("acme");
    let ca = Ca::generate(&tenant, Validity::days_from_now(30)).expect("CA");
    let node = |host: &str| {
        let leaf =
            ca.issue(&Principal::new(tenant.clone(), Kind::Node, host).expect("principal"), Validity::days_from_now(5));
        let leaf = leaf.expect("leaf");
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key");
        (
            Identity::from_der(ca.cert_der().clone(), leaf.cert_der.clone(), key.clone_key()).expect("identity"),
            leaf,
            key,
        )
    };
    let (a, _, _) = node("a");
    let (b, b_leaf, b_key) = node("b");
    let server = config::server_config(&a).expect("server config");
    let name = config::node_server_name(&tenant, &label("a"));

    let mut rows: Vec<(String, Arc<ClientConfig>)> =
        vec![("the node's configs".into(), config::client_config(&b).expect("client"))];
    for suite in rustls::crypto::ring::DEFAULT_CIPHER_SUITES.iter().filter(|s| s.tls13().is_some()) {
        let provider =
            rustls::crypto::CryptoProvider { cipher_suites: vec![*suite], ..rustls::crypto::ring::default_provider() };
        let mut roots = RootCertStore::empty();
        roots.add(ca.cert_der().clone()).expect("root");
        let mut client = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![b_leaf.cert_der.clone()], b_key.clone_key())
            .expect("client auth");
        client.alpn_protocols = vec![config::ALPN_H2.to_vec()];
        rows.push((format!("a client offering only {:?}", suite.suite()), Arc::new(client)));
    }

    println!("mutual TLS 1.3 handshakes between two node identities, in memory, {n} a row (in turns of {}):", turn);
    // Warm up (page faults, lazily built tables); each row's suite.
    let suites: Vec<_> = rows.iter().map(|(_, client)| handshake(client, &server, &name)).collect();
    // The rows take turns, so a machine that slows down for a while (other work, a
    // hypervisor's steal) slows every row alike.
    let mut spent = vec![std::time::Duration::ZERO; rows.len()];
    for _ in 0..ROUNDS {
        for ((_, client), spent) in rows.iter().zip(&mut spent) {
            let t = Instant::now();
            for _ in 0..turn {
                handshake(client, &server, &name);
            }
            *spent += t.elapsed();
        }
    }
    for (((what, _), suite), spent) in rows.iter().zip(&suites).zip(&spent) {
        let us = spent.as_secs_f64() * 1e6 / n as f64;
        println!("  {what}: {us:.0} us of CPU a handshake (both ends), suite {suite:?}");
    }
}

/// Turns the rows take ([`main`]).
const ROUNDS: usize = 20;
