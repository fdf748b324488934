//! rustls configurations for the network door, and the server names clients use.
//!
//! Only the ring provider is compiled in, and every config is built with it explicitly
//! (`builder_with_provider`), so no dependency that enables another provider can make
//! rustls panic over an ambiguous default. [`install_crypto_provider`] also installs ring
//! as the process default, for code (tonic, quinn) that asks for the default.
//!
//! Both sides verify the peer's chain to the mesh CA and nothing else, and refuse a
//! certificate that the mesh's revocation list (`crl.pem`, when present) names: the server
//! requires a client certificate; the client trusts only the mesh CA and checks the server name
//! `<host>.<tenant>.fleet.internal` (or `node.<tenant>.fleet.internal`) whatever address
//! it dialed. ALPN is `h2` (gRPC).

use std::path::Path;
use std::sync::Arc;

use fleet_core::names::DnsLabel;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::layout::{self, CertsDir};
use crate::principal::{self, Kind, Principal};
use crate::show;
use crate::{Error, Result};

/// ALPN protocols offered and accepted: HTTP/2 only, for gRPC.
pub const ALPN_H2: &[u8] = b"h2";

/// The ring provider, the only one in the tree, with TLS 1.3's AES-128-GCM-SHA256 as the
/// first cipher suite (ring's default order puts AES-256-GCM-SHA384 first). Every mesh
/// handshake hashes its transcript and derives its keys with the suite's hash; ring runs
/// SHA-256 on the CPU's SHA extensions (SHA-NI) where it has them, and SHA-384 without
/// (`sha512_block_data_order_nohw` on this AMD EPYC): a 100-node mass start spent 3 % of the
/// whole machine's time in it (docs/benchmarks.md, "Twelfth pass"). `cargo bench -p fleet-tls
/// --bench handshake`: 20-24 % less CPU a handshake here; less on a CPU without SHA-NI. Both
/// ends of a mesh connection are ours and offer the same list, so that suite is chosen; a
/// peer that prefers another still gets it, as every suite of the default list stays.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring_provider())
}

fn ring_provider() -> CryptoProvider {
    let mut p = rustls::crypto::ring::default_provider();
    // Stable: the other suites keep ring's order.
    p.cipher_suites.sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    p
}

/// Install ring as the process-wide default provider. Call once at start; calling again
/// (or after someone else installed one) is harmless.
pub fn install_crypto_provider() {
    // Err means a provider is already installed: ours from an earlier call, or another
    // one chosen explicitly; our configs name ring explicitly either way.
    let _ = ring_provider().install_default();
}

/// The TLS server name of one node: `<host>.<tenant>.fleet.internal`.
pub fn node_server_name(tenant: &DnsLabel, host: &DnsLabel) -> ServerName<'static> {
    dns_name(principal::node_dns_name(tenant, host))
}

/// The TLS server name any node of a tenant answers to, for a client that knows only an
/// address: `node.<tenant>.fleet.internal`. Which host answered is then read from the
/// server certificate's URI SAN ([`Principal::from_peer_certs`]).
pub fn any_node_server_name(tenant: &DnsLabel) -> ServerName<'static> {
    dns_name(principal::any_node_dns_name(tenant))
}

fn dns_name(name: String) -> ServerName<'static> {
    // Built from DNS labels and a fixed suffix, so always a valid DNS name.
    ServerName::try_from(name).expect("DNS labels and fleet.internal make a valid DNS name")
}

/// A loaded identity: the mesh CA certificate, this party's certificate and key, the
/// principal its certificate names, and the mesh's revocation list when the certs dir has
/// one (`crl.pem`). Load it again and rebuild the configs to rotate or to revoke.
pub struct Identity {
    pub ca: CertificateDer<'static>,
    pub cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    pub principal: Principal,
    /// The revocation list read from the certs dir, when there is one.
    pub crl: Option<crate::revoke::Crl>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone_key(),
            principal: self.principal.clone(),
            crl: self.crl.clone(),
        }
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("principal", &self.principal).finish_non_exhaustive()
    }
}

impl Identity {
    /// A node's identity from its certs dir: `ca.pem`, `node.pem`, `node.key`, and
    /// `crl.pem` if present.
    pub fn node(dir: &Path) -> Result<Identity> {
        let d = CertsDir::new(dir);
        let id = Identity::load(&d.ca_cert(), &d.node_cert(), &d.node_key())?.with_crl(&d.crl(), &d.node_cert())?;
        if id.principal.kind != Kind::Node {
            return Err(Error::Invalid { path: d.node_cert(), detail: format!("names {}, not a node", id.principal) });
        }
        Ok(id)
    }

    /// An off-host client's identity from its certs dir: `ca.pem`, `client.pem`,
    /// `client.key`, and `crl.pem` if present.
    pub fn client(dir: &Path) -> Result<Identity> {
        let d = CertsDir::new(dir);
        Identity::load(&d.ca_cert(), &d.client_cert(), &d.client_key())?.with_crl(&d.crl(), &d.client_cert())
    }

    /// Add the revocation list at `crl` when it exists (it must be signed by the mesh CA),
    /// and refuse an identity whose own certificate (`cert_path`) it revokes.
    fn with_crl(mut self, crl: &Path, cert_path: &Path) -> Result<Identity> {
        let Some(list) = crate::revoke::read_crl(crl, &self.ca)? else { return Ok(self) };
        let serial = crate::revoke::serial_of(&self.cert).ok_or_else(|| Error::Invalid {
            path: cert_path.to_path_buf(),
            detail: "no readable serial number".into(),
        })?;
        if list.revokes(&serial) {
            return Err(Error::Invalid {
                path: cert_path.to_path_buf(),
                detail: format!(
                    "this certificate ({}, serial {}) is revoked by {}: issue a new one",
                    self.principal,
                    crate::revoke::hex(&serial),
                    crl.display()
                ),
            });
        }
        self.crl = Some(list);
        Ok(self)
    }

    /// Load from explicit paths. Checks that the certificate names a principal, was issued
    /// by the CA and matches the key.
    pub fn load(ca_pem: &Path, cert_pem: &Path, key_pem: &Path) -> Result<Identity> {
        let ca = show::read_single_cert(ca_pem)?;
        let cert = show::read_single_cert(cert_pem)?;
        let key_bytes = layout::read(key_pem)?;
        let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| Error::Invalid {
            path: key_pem.to_path_buf(),
            detail: format!("not a PEM private key: {e}"),
        })?;
        Identity::from_der(ca, cert, key).map_err(|e| match e {
            IdentityError::Principal(source) => Error::Principal { path: cert_pem.to_path_buf(), source },
            IdentityError::NotIssuedByCa => Error::Invalid {
                path: cert_pem.to_path_buf(),
                detail: format!("not issued by the mesh CA in {}", ca_pem.display()),
            },
            IdentityError::KeyMismatch => Error::Invalid {
                path: key_pem.to_path_buf(),
                detail: format!("this key does not belong to the certificate {}", cert_pem.display()),
            },
            IdentityError::Invalid(detail) => Error::Invalid { path: cert_pem.to_path_buf(), detail },
        })
    }

    /// A 32-byte secret for `label`, derived from this identity's private key
    /// (HMAC-SHA256 keyed by the key's DER): the same in every run that holds the same key,
    /// different for another key or label, and the key cannot be learned back from it.
    pub fn derived_secret(&self, label: &[u8]) -> [u8; 32] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.key.secret_der());
        let tag = ring::hmac::sign(&key, label);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// From DER parts already in memory.
    pub fn from_der(
        ca: CertificateDer<'static>,
        cert: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Identity, IdentityError> {
        let principal = Principal::from_der(&cert).map_err(IdentityError::Principal)?;
        let info = show::inspect_der(&cert, Some(&ca)).map_err(IdentityError::Invalid)?;
        if info.chains_to_ca != Some(true) {
            return Err(IdentityError::NotIssuedByCa);
        }
        let signing = provider()
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| IdentityError::Invalid(e.to_string()))?;
        let certified = rustls::sign::CertifiedKey::new(vec![cert.clone()], signing);
        if certified.keys_match().is_err() {
            return Err(IdentityError::KeyMismatch);
        }
        Ok(Identity { ca, cert, key, principal, crl: None })
    }

    fn crls(&self) -> Vec<CertificateRevocationListDer<'static>> {
        self.crl.iter().map(|c| c.der.clone()).collect()
    }

    fn roots(&self) -> Result<Arc<RootCertStore>> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone())?;
        Ok(Arc::new(roots))
    }
}

/// Why DER parts do not make an identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Principal(principal::PrincipalError),
    #[error("the certificate was not issued by the mesh CA")]
    NotIssuedByCa,
    #[error("the key does not belong to the certificate")]
    KeyMismatch,
    #[error("{0}")]
    Invalid(String),
}

/// The server side of the network door: presents `id`'s certificate, requires a client
/// certificate that chains to the mesh CA, speaks h2.
pub fn server_config(id: &Identity) -> Result<Arc<ServerConfig>> {
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(id.roots()?, provider.clone()).with_crls(id.crls()).build()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![id.cert.clone()], id.key.clone_key())?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// The web door's server side (browsers): the node certificate (and the mesh CA, for a browser
/// that imports it), no client certificate asked (browsers are paired instead), HTTP/1.1.
pub fn web_server_config(id: &Identity) -> Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![id.cert.clone(), id.ca.clone()], id.key.clone_key())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The enrollment door's server side (`fleet join`, docs/security.md "Enrollment"): the node
/// certificate *and the mesh CA certificate*, so a joining host that knows only the CA's
/// fingerprint (from its token) can check the chain; no client certificate asked, since a
/// joining host has none yet; h2. Only the `Enroll` service is served behind it.
pub fn enroll_server_config(id: &Identity) -> Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![id.cert.clone(), id.ca.clone()], id.key.clone_key())?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// The client side: trusts only the mesh CA, presents `id`'s certificate, speaks h2. The
/// caller picks the server name ([`node_server_name`] or [`any_node_server_name`]).
pub fn client_config(id: &Identity) -> Result<Arc<ClientConfig>> {
    let provider = provider();
    let verifier =
        WebPkiServerVerifier::builder_with_provider(id.roots()?, provider.clone()).with_crls(id.crls()).build()?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(vec![id.cert.clone()], id.key.clone_key())?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue;

    #[test]
    fn handshakes_prefer_aes_128_with_sha_256_and_keep_every_default_suite() {
        let ours: Vec<_> = provider().cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(ours[0], rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        let mut ring: Vec<_> =
            rustls::crypto::ring::default_provider().cipher_suites.iter().map(|s| s.suite()).collect();
        // ring's own order (the test stands for what the order is changed from).
        assert_ne!(ring[0], ours[0]);
        let mut sorted = ours.clone();
        sorted.sort_by_key(|s| u16::from(*s));
        ring.sort_by_key(|s| u16::from(*s));
        assert_eq!(sorted, ring);
    }

    #[test]
    fn the_process_default_is_ours() {
        // What tonic and quinn use when a config does not name a provider.
        install_crypto_provider();
        let default = CryptoProvider::get_default().expect("installed");
        assert_eq!(default.cipher_suites[0].suite(), rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    }

    #[test]
    fn identities_load_and_check_their_parts() {
        install_crypto_provider();
        install_crypto_provider();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        issue::init_ca(&dir, "acme", false).unwrap();
        issue::issue(&dir, Kind::Node, "h1", 90, Some(&dir), false).unwrap();
        let id = Identity::node(&dir).unwrap();
        assert_eq!(id.principal.to_string(), "node:h1@acme");
        server_config(&id).unwrap();
        let c = client_config(&id).unwrap();
        assert_eq!(c.alpn_protocols, vec![b"h2".to_vec()]);

        // A client dir is not a node dir.
        let out = tmp.path().join("alice");
        issue::issue(&dir, Kind::Operator, "alice", 90, Some(&out), false).unwrap();
        assert_eq!(Identity::client(&out).unwrap().principal.kind, Kind::Operator);
        std::fs::copy(out.join("client.pem"), out.join("node.pem")).unwrap();
        std::fs::copy(out.join("client.key"), out.join("node.key")).unwrap();
        assert!(matches!(Identity::node(&out), Err(Error::Invalid { .. })));

        // Mismatched key, and a leaf of another CA.
        let e = Identity::load(&dir.join("ca.pem"), &dir.join("node.pem"), &out.join("client.key")).unwrap_err();
        assert!(e.to_string().contains("does not belong"), "{e}");
        let other = tmp.path().join("other");
        issue::init_ca(&other, "acme", false).unwrap();
        let e = Identity::load(&other.join("ca.pem"), &dir.join("node.pem"), &dir.join("node.key")).unwrap_err();
        assert!(e.to_string().contains("not issued by the mesh CA"), "{e}");
    }

    #[test]
    fn a_derived_secret_follows_the_key_and_the_label() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        issue::init_ca(&dir, "acme", false).unwrap();
        issue::issue(&dir, Kind::Node, "h1", 90, Some(&dir), false).unwrap();
        issue::issue(&dir, Kind::Node, "h2", 90, Some(&tmp.path().join("h2")), false).unwrap();
        let (a, again) = (Identity::node(&dir).unwrap(), Identity::node(&dir).unwrap());
        let b = Identity::node(&tmp.path().join("h2")).unwrap();
        let secret = a.derived_secret(b"one");
        assert_eq!(secret, again.derived_secret(b"one"), "the same key gives the same secret in every load");
        assert_ne!(secret, a.derived_secret(b"two"), "another label, another secret");
        assert_ne!(secret, b.derived_secret(b"one"), "another key, another secret");
        let key = std::fs::read(dir.join("node.key")).unwrap();
        let der = PrivateKeyDer::from_pem_slice(&key).unwrap();
        assert!(!der.secret_der().windows(8).any(|w| secret.windows(8).any(|s| s == w)), "no piece of the key in it");
    }

    #[test]
    fn server_names() {
        let t = DnsLabel::parse_as("tenant id", "acme").unwrap();
        let h = DnsLabel::parse_as("host name", "h1").unwrap();
        assert_eq!(node_server_name(&t, &h).to_str(), "h1.acme.fleet.internal");
        assert_eq!(any_node_server_name(&t).to_str(), "node.acme.fleet.internal");
    }
}
