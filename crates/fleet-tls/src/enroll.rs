//! Enrollment and renewal: join tokens, certificate signing requests, when to renew, and
//! the one way a new identity or revocation list is written into a certs dir.
//!
//! A **join token** (`fleet certs invite`) is `fleetjoin1.<tenant>.<ca>.<secret>`: the
//! tenant, the SHA-256 of the mesh CA certificate (64 hex digits) and 32 random bytes (64 hex
//! digits). The joining host pins the CA by that fingerprint before it sends anything
//! ([`PinnedCa`]), so the secret only ever reaches a node that proved it holds a certificate
//! of that CA. The inviting node keeps only the secret's SHA-256 ([`TokenStore`], a 0600 file
//! in its certs dir), compares in constant time, marks a token used on disk *before* it signs
//! (single use survives a restart), and refuses an unknown, used or expired token alike
//! ([`Refusal`] says which, for the audit log only).
//!
//! A **CSR** carries only the joining (or renewing) party's public key to the signer: the
//! signer decides the whole certificate ([`crate::issue::Ca::issue_for_key`]), whatever the
//! CSR asks for. The private key never leaves the host that made it.
//!
//! **Renewal** ([`renew_at`], [`cert_state`]): a certificate is renewed once a fraction of
//! its lifetime (default [`DEFAULT_RENEW_FRACTION`], about two thirds) has passed; past that
//! it is `due`, and in the last tenth of its lifetime `expiring`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use fleet_core::names::DnsLabel;
use rcgen::{CertificateParams, CertificateSigningRequestParams, KeyPair, PKCS_ECDSA_P256_SHA256};
use ring::digest::{SHA256, digest};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::config::{ALPN_H2, provider};
use crate::issue::{Ca, Validity};
use crate::layout::{self, CERT_MODE, CertsDir, KEY_MODE};
use crate::principal::{Kind, Principal};
use crate::revoke::{self, Crl};
use crate::{Error, Result};

/// The token's first field: its format version.
pub const TOKEN_PREFIX: &str = "fleetjoin1";
/// The file of a CA host's join tokens (hashes only), in its certs dir, 0600.
pub const TOKENS_FILE: &str = "join-tokens.json";
/// Default time a join token may be used in.
pub const DEFAULT_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// Longest time a join token may be used in.
pub const MAX_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
/// The fraction of its lifetime after which a certificate is renewed.
pub const DEFAULT_RENEW_FRACTION: f64 = 2.0 / 3.0;
/// What a refused join says, whatever the reason: nothing for a guesser to learn from.
pub const INVALID_TOKEN: &str = "invalid or expired token";

/// SHA-256 of a CA certificate (its DER).
pub fn ca_fingerprint(ca_der: &[u8]) -> [u8; 32] {
    digest(&SHA256, ca_der).as_ref().try_into().expect("SHA-256 is 32 bytes")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The first certificate of PEM text, if any.
pub fn pem_cert(pem: &str) -> Option<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).ok()
}

/// Equal bytes, compared without an early exit.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

/// A join token as the operator copies it.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub tenant: DnsLabel,
    pub ca_fingerprint: [u8; 32],
    pub secret: [u8; 32],
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{TOKEN_PREFIX}.{}.{}.{}", self.tenant, hex(&self.ca_fingerprint), hex(&self.secret))
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        write!(f, "JoinToken({}, ca {})", self.tenant, hex(&self.ca_fingerprint[..8]))
    }
}

/// A token that does not parse (said to the person who pasted it, before anything is sent).
#[derive(Debug, thiserror::Error)]
#[error(
    "not a join token: expected {TOKEN_PREFIX}.<tenant>.<64 hex digits>.<64 hex digits>, as `fleet certs invite` prints it"
)]
pub struct BadToken;

impl FromStr for JoinToken {
    type Err = BadToken;
    fn from_str(s: &str) -> Result<Self, BadToken> {
        let mut parts = s.trim().split('.');
        let (Some(TOKEN_PREFIX), Some(tenant), Some(fp), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(BadToken);
        };
        Ok(JoinToken {
            tenant: DnsLabel::parse_as("tenant id", tenant).map_err(|_| BadToken)?,
            ca_fingerprint: unhex32(fp).ok_or(BadToken)?,
            secret: unhex32(secret).ok_or(BadToken)?,
        })
    }
}

impl JoinToken {
    /// The stored form of the secret.
    pub fn secret_hash(secret: &[u8]) -> [u8; 32] {
        ca_fingerprint(secret)
    }
}

/// 32 random bytes from the system's generator.
fn random32() -> Result<[u8; 32]> {
    let mut b = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| Error::Validity("the system random number generator failed".into()))?;
    Ok(b)
}

/// One issued token, as stored: never the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// SHA-256 of the secret, hex.
    pub hash: String,
    /// The host the token is bound to (`--host`), if any.
    pub host: Option<String>,
    pub issued_unix_ms: i64,
    pub expires_unix_ms: i64,
    /// When it was used (then it never works again).
    pub used_unix_ms: Option<i64>,
    /// The host that used it.
    pub used_by: Option<String>,
}

impl TokenRecord {
    /// A short id for logs and the audit: the first 8 hex digits of the hash (which is not
    /// the secret, and 32 bits of it says nothing about the secret).
    pub fn id(&self) -> &str {
        self.hash.get(..8).unwrap_or(&self.hash)
    }
}

/// Why a presented token was refused: for the audit log and the node's own log only. The
/// caller always reads [`INVALID_TOKEN`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No token has this secret.
    Unknown,
    /// It was used already (a replay).
    Used,
    /// Its time ran out.
    Expired,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unknown => "unknown token",
            Refusal::Used => "token already used",
            Refusal::Expired => "token expired",
        }
    }
}

/// Which of `records` the secret whose hash is `presented` opens, at `now_ms`: every record's
/// hash is compared (in constant time, none skipped), then the match must be unused and
/// unexpired (a token is good until, not at, its expiry).
pub fn check_token(records: &[TokenRecord], presented: &[u8; 32], now_ms: i64) -> Result<usize, Refusal> {
    let want = hex(presented);
    let mut found = None;
    for (i, r) in records.iter().enumerate() {
        if ct_eq(r.hash.as_bytes(), want.as_bytes()) {
            found = Some(i);
        }
    }
    let i = found.ok_or(Refusal::Unknown)?;
    let r = &records[i];
    if r.used_unix_ms.is_some() {
        return Err(Refusal::Used);
    }
    if now_ms >= r.expires_unix_ms {
        return Err(Refusal::Expired);
    }
    Ok(i)
}

/// How long a used or expired record is kept (so a replay is audited as one).
const KEEP_SPENT_MS: i64 = 7 * 24 * 3600 * 1000;

/// The CA host's join tokens: `<certs dir>/join-tokens.json`, 0600, written atomically. The
/// node is its only writer; it serializes calls itself.
#[derive(Clone, Debug)]
pub struct TokenStore {
    path: PathBuf,
}

impl TokenStore {
    pub fn new(certs_dir: &Path) -> TokenStore {
        TokenStore { path: certs_dir.join(TOKENS_FILE) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every record; none when the file does not exist.
    pub fn load(&self) -> Result<Vec<TokenRecord>> {
        if !self.path.exists() {
            return Ok(Vec::new());
        }
        let bytes = layout::read(&self.path)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Invalid { path: self.path.clone(), detail: format!("not a join token list: {e}") })
    }

    fn save(&self, records: &[TokenRecord]) -> Result<()> {
        let text = serde_json::to_vec_pretty(records).expect("records serialize");
        layout::write_atomic(&self.path, &text, KEY_MODE)
    }

    /// A new token for the mesh of `ca`, good for `ttl` from `now_ms`, bound to `host` when
    /// given; its hash is on disk before the token is returned.
    pub fn issue(
        &self,
        ca_der: &[u8],
        tenant: &DnsLabel,
        host: Option<&DnsLabel>,
        ttl: std::time::Duration,
        now_ms: i64,
    ) -> Result<(JoinToken, TokenRecord)> {
        let secret = random32()?;
        let token = JoinToken { tenant: tenant.clone(), ca_fingerprint: ca_fingerprint(ca_der), secret };
        let record = TokenRecord {
            hash: hex(&JoinToken::secret_hash(&secret)),
            host: host.map(|h| h.to_string()),
            issued_unix_ms: now_ms,
            expires_unix_ms: now_ms.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
            used_unix_ms: None,
            used_by: None,
        };
        let mut records = self.load()?;
        records.retain(|r| now_ms < r.expires_unix_ms.saturating_add(KEEP_SPENT_MS));
        records.push(record.clone());
        self.save(&records)?;
        Ok((token, record))
    }

    /// Use the token whose secret is `secret`, for `host`: checked ([`check_token`]; a token
    /// bound to another host is [`Refusal::Unknown`] to the caller too), then marked used on
    /// disk. `Ok(Err(refusal))` when refused; `Err` when the store cannot be read or written
    /// (then nothing may be signed).
    pub fn consume(
        &self,
        secret: &[u8; 32],
        host: &str,
        now_ms: i64,
    ) -> Result<std::result::Result<TokenRecord, (Refusal, Option<TokenRecord>)>> {
        let mut records = self.load()?;
        let i = match check_token(&records, &JoinToken::secret_hash(secret), now_ms) {
            Ok(i) => i,
            Err(refusal) => {
                let known =
                    records.iter().find(|r| ct_eq(r.hash.as_bytes(), hex(&JoinToken::secret_hash(secret)).as_bytes()));
                return Ok(Err((refusal, known.cloned())));
            }
        };
        if records[i].host.as_deref().is_some_and(|h| h != host) {
            return Ok(Err((Refusal::Unknown, Some(records[i].clone()))));
        }
        records[i].used_unix_ms = Some(now_ms);
        records[i].used_by = Some(host.to_string());
        self.save(&records)?;
        Ok(Ok(records[i].clone()))
    }
}

/// A new ECDSA P-256 key and a CSR over it; the CSR names `principal` only as a courtesy
/// (the signer decides what the certificate says).
pub fn new_key_and_csr(principal_hint: &str) -> Result<(KeyPair, Vec<u8>)> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, principal_hint);
    let csr = params.serialize_request(&key)?;
    Ok((key, csr.der().to_vec()))
}

/// Why a CSR was refused.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error("the certificate signing request does not parse or its signature is wrong")]
    Invalid,
    #[error("the certificate signing request's key is not ECDSA P-256")]
    Algorithm,
}

/// Check a CSR (its self-signature, an ECDSA P-256 key) and sign a certificate for
/// `principal` over its key, valid `validity`: nothing else of the CSR is used.
pub fn sign_csr(
    ca: &Ca,
    csr_der: &[u8],
    principal: &Principal,
    validity: Validity,
) -> Result<std::result::Result<(String, CertificateDer<'static>), CsrError>> {
    let der = CertificateSigningRequestDer::from(csr_der);
    let Ok(csr) = CertificateSigningRequestParams::from_der(&der) else { return Ok(Err(CsrError::Invalid)) };
    if *csr.public_key.algorithm() != PKCS_ECDSA_P256_SHA256 {
        return Ok(Err(CsrError::Algorithm));
    }
    Ok(Ok(ca.issue_for_key(principal, validity, &csr.public_key)?))
}

/// Where a certificate is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertState {
    /// Before its renewal time.
    Ok,
    /// Past its renewal time: renew now.
    Due,
    /// In the last tenth of its lifetime (and not renewed).
    Expiring,
    /// Past `not_after`.
    Expired,
}

impl CertState {
    pub fn as_str(self) -> &'static str {
        match self {
            CertState::Ok => "ok",
            CertState::Due => "due",
            CertState::Expiring => "expiring",
            CertState::Expired => "expired",
        }
    }
}

/// When a certificate valid `not_before ..= not_after` is renewed: after `fraction` of its
/// lifetime (clamped to 0.05 ..= 0.95).
pub fn renew_at(not_before: OffsetDateTime, not_after: OffsetDateTime, fraction: f64) -> OffsetDateTime {
    let fraction = fraction.clamp(0.05, 0.95);
    not_before + (not_after - not_before) * fraction
}

/// The state of that certificate at `now`.
pub fn cert_state(
    now: OffsetDateTime,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    fraction: f64,
) -> CertState {
    if now > not_after {
        CertState::Expired
    } else if now < renew_at(not_before, not_after, fraction) {
        CertState::Ok
    } else if (not_after - now) * 10 <= not_after - not_before {
        CertState::Expiring
    } else {
        CertState::Due
    }
}

/// How long to wait before looking again at a certificate valid `not_before ..= not_after`:
/// until its renewal time, at most `max`; `retry` once due (after a failed attempt).
pub fn next_look(
    now: OffsetDateTime,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    fraction: f64,
    retry: std::time::Duration,
    max: std::time::Duration,
) -> std::time::Duration {
    let until = renew_at(not_before, not_after, fraction) - now;
    if until <= Duration::ZERO {
        return retry.min(max);
    }
    std::time::Duration::try_from(until).unwrap_or(max).min(max)
}

/// Write a new identity into `dir`: `key_pem` (0600) and `cert_pem`, as `node.key`/`node.pem`
/// or `client.key`/`client.pem` by `kind`, plus `ca.pem` when given. The certificate must
/// belong to the key and chain to the CA (`ca_pem`, else the dir's `ca.pem`): checked before
/// anything is written.
pub fn write_identity(dir: &Path, kind: Kind, key_pem: &str, cert_pem: &str, ca_pem: Option<&str>) -> Result<()> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let certs = CertsDir::new(dir);
    let (cert_path, key_path) = certs.identity(kind);
    let bad = |detail: String| Error::Invalid { path: cert_path.clone(), detail };
    let ca_der = match ca_pem {
        Some(p) => CertificateDer::from_pem_slice(p.as_bytes()).map_err(|e| bad(format!("bad CA PEM: {e}")))?,
        None => crate::show::read_single_cert(&certs.ca_cert())?,
    };
    let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| bad(format!("bad PEM: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| bad(format!("bad key PEM: {e}")))?;
    crate::config::Identity::from_der(ca_der, cert_der, key).map_err(|e| bad(e.to_string()))?;
    layout::create_dir(dir)?;
    if let Some(ca) = ca_pem {
        layout::write_atomic(&certs.ca_cert(), ca.as_bytes(), CERT_MODE)?;
    }
    layout::write_atomic(&key_path, key_pem.as_bytes(), KEY_MODE)?;
    layout::write_atomic(&cert_path, cert_pem.as_bytes(), CERT_MODE)?;
    Ok(())
}

/// Install `pem` as `dir/crl.pem` when it is signed by the mesh CA `ca` and newer (a higher
/// CRL number) than the list there: the list installed, or None when it was not newer.
/// A list not signed by the CA is an error, never installed.
pub fn install_crl(dir: &Path, pem: &[u8], ca: &CertificateDer<'_>) -> Result<Option<Crl>> {
    let path = CertsDir::new(dir).crl();
    let new = revoke::parse_crl(Path::new("the offered revocation list"), pem, ca)?;
    let have = revoke::read_crl(&path, ca).ok().flatten().map_or(0, |c| c.number);
    if new.number <= have {
        return Ok(None);
    }
    layout::write_atomic(&path, pem, CERT_MODE)?;
    Ok(Some(new))
}

/// A TLS client config for a host that has no certificate yet: it presents none, and trusts
/// a server only if the last certificate of its chain is the CA whose SHA-256 is `pin` and the
/// server's certificate chains to it as `node.<tenant>.fleet.internal` (the server name the
/// caller uses). Nothing is trusted on first use.
pub fn pinned_client_config(pin: [u8; 32]) -> Result<Arc<ClientConfig>> {
    let verifier = Arc::new(PinnedCa { pin, provider: provider(), seen: Default::default() });
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// The verifier of [`pinned_client_config`].
#[derive(Debug)]
pub struct PinnedCa {
    pin: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
    seen: std::sync::Mutex<Option<[u8; 32]>>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates.last() else {
            return Err(rustls::Error::General("the server sent no CA certificate to check against the token".into()));
        };
        let fp = ca_fingerprint(ca);
        *self.seen.lock().expect("seen") = Some(fp);
        if !ct_eq(&fp, &self.pin) {
            return Err(rustls::Error::General(format!(
                "the server's mesh CA has fingerprint {}, but the token names {}: this is not the mesh the token is for",
                hex(&fp),
                hex(&self.pin)
            )));
        }
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue;

    fn t(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let tok = JoinToken {
            tenant: DnsLabel::parse_as("t", "acme").unwrap(),
            ca_fingerprint: [0xab; 32],
            secret: [0x01; 32],
        };
        let text = tok.to_string();
        assert!(text.starts_with("fleetjoin1.acme.abab"), "{text}");
        assert_eq!(text.parse::<JoinToken>().unwrap(), tok);
        assert_eq!(format!(" {text}\n").parse::<JoinToken>().unwrap(), tok);
        assert!(!format!("{tok:?}").contains("0101"), "Debug never shows the secret");
        let fp = "ab".repeat(32);
        let sec = "01".repeat(32);
        for bad in [
            String::new(),
            format!("fleetjoin2.acme.{fp}.{sec}"),
            format!("fleetjoin1.ac_me.{fp}.{sec}"),
            format!("fleetjoin1.acme.{}.{sec}", &fp[..62]),
            format!("fleetjoin1.acme.{fp}.{}zz", &sec[..62]),
            format!("fleetjoin1.acme.{fp}.{sec}.x"),
            format!("fleetjoin1.acme.{fp}"),
        ] {
            assert!(bad.parse::<JoinToken>().is_err(), "{bad}");
        }
    }

    fn record(secret: u8, expires: i64, used: Option<i64>) -> TokenRecord {
        TokenRecord {
            hash: hex(&JoinToken::secret_hash(&[secret; 32])),
            host: None,
            issued_unix_ms: 0,
            expires_unix_ms: expires,
            used_unix_ms: used,
            used_by: None,
        }
    }

    #[test]
    fn a_token_opens_once_and_until_its_expiry() {
        let h = |s: u8| JoinToken::secret_hash(&[s; 32]);
        let records = vec![record(1, 1000, None), record(2, 1000, Some(10)), record(3, 500, None)];
        assert_eq!(check_token(&records, &h(1), 0), Ok(0));
        assert_eq!(check_token(&records, &h(1), 999), Ok(0));
        assert_eq!(check_token(&records, &h(1), 1000), Err(Refusal::Expired), "good until, not at, the expiry");
        assert_eq!(check_token(&records, &h(2), 0), Err(Refusal::Used));
        assert_eq!(check_token(&records, &h(3), 499), Ok(2));
        assert_eq!(check_token(&records, &h(3), 501), Err(Refusal::Expired));
        assert_eq!(check_token(&records, &h(4), 0), Err(Refusal::Unknown));
        assert_eq!(check_token(&[], &h(1), 0), Err(Refusal::Unknown));
        // The last of two equal hashes (cannot happen with random secrets) still only one.
        let twice = vec![record(5, 1000, Some(1)), record(5, 1000, None)];
        assert_eq!(check_token(&twice, &h(5), 0), Ok(1));
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn the_store_keeps_hashes_only_and_single_use_survives_reloading() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let store = TokenStore::new(tmp.path());
        let tenant = DnsLabel::parse_as("t", "acme").unwrap();
        let h2 = DnsLabel::parse_as("t", "h2").unwrap();
        let ttl = std::time::Duration::from_secs(60);
        let (free, _) = store.issue(b"ca", &tenant, None, ttl, 1000).unwrap();
        let (bound, rec) = store.issue(b"ca", &tenant, Some(&h2), ttl, 1000).unwrap();
        assert_eq!(rec.expires_unix_ms, 61_000);
        assert_eq!(free.ca_fingerprint, ca_fingerprint(b"ca"));
        let text = std::fs::read_to_string(store.path()).unwrap();
        assert!(!text.contains(&hex(&free.secret)) && !text.contains(&hex(&bound.secret)), "{text}");
        assert_eq!(std::fs::metadata(store.path()).unwrap().permissions().mode() & 0o777, 0o600);
        // Bound to h2: another host gets nothing, and the token stays good for h2.
        assert_eq!(store.consume(&bound.secret, "h3", 2000).unwrap().unwrap_err().0, Refusal::Unknown);
        assert_eq!(store.consume(&bound.secret, "h2", 2000).unwrap().unwrap().used_by.as_deref(), Some("h2"));
        // A new store on the same file (a restarted node) remembers the use.
        let again = TokenStore::new(tmp.path());
        assert_eq!(again.consume(&bound.secret, "h2", 2001).unwrap().unwrap_err().0, Refusal::Used);
        assert_eq!(again.consume(&free.secret, "any", 61_000).unwrap().unwrap_err().0, Refusal::Expired);
        assert_eq!(again.consume(&[9; 32], "any", 2000).unwrap().unwrap_err().0, Refusal::Unknown);
    }

    #[test]
    fn renewal_is_due_after_the_fraction_and_expiring_in_the_last_tenth() {
        let (nb, na) = (t(0), t(900));
        let f = DEFAULT_RENEW_FRACTION;
        assert_eq!(renew_at(nb, na, f), t(600));
        assert_eq!(renew_at(nb, na, 0.5), t(450));
        assert_eq!(renew_at(nb, na, 0.0), t(45), "clamped to 5%");
        assert_eq!(renew_at(nb, na, 1.0), t(855), "clamped to 95%");
        assert_eq!(cert_state(t(-10), nb, na, f), CertState::Ok);
        assert_eq!(cert_state(t(599), nb, na, f), CertState::Ok);
        assert_eq!(cert_state(t(600), nb, na, f), CertState::Due);
        assert_eq!(cert_state(t(809), nb, na, f), CertState::Due);
        assert_eq!(cert_state(t(810), nb, na, f), CertState::Expiring);
        assert_eq!(cert_state(t(900), nb, na, f), CertState::Expiring);
        assert_eq!(cert_state(t(901), nb, na, f), CertState::Expired);
        let s = std::time::Duration::from_secs;
        assert_eq!(next_look(t(0), nb, na, f, s(5), s(3600)), s(600));
        assert_eq!(next_look(t(0), nb, na, f, s(5), s(60)), s(60), "at most max");
        assert_eq!(next_look(t(599), nb, na, f, s(5), s(60)), s(1));
        assert_eq!(next_look(t(600), nb, na, f, s(5), s(60)), s(5), "due: retry");
        assert_eq!(next_look(t(700), nb, na, f, s(500), s(60)), s(60));
    }

    #[test]
    fn a_csr_is_signed_for_the_principal_the_signer_chooses() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        issue::init_ca(&dir, "acme", false).unwrap();
        let ca = Ca::load(&CertsDir::new(&dir)).unwrap();
        let (key, csr) = new_key_and_csr("node:evil@other").unwrap();
        let p = Principal::new(ca.tenant().clone(), Kind::Node, "h2").unwrap();
        let life = Validity::lifetime_from_now(std::time::Duration::from_secs(20));
        assert!(life.not_after - life.not_before == Duration::seconds(25), "{life:?}");
        let (pem, der) = sign_csr(&ca, &csr, &p, life).unwrap().unwrap();
        assert_eq!(Principal::from_der(&der).unwrap(), p);
        let out = tmp.path().join("h2");
        write_identity(&out, Kind::Node, &key.serialize_pem(), &pem, Some(ca.cert_pem())).unwrap();
        assert_eq!(crate::config::Identity::node(&out).unwrap().principal, p);
        // Another key's certificate is refused before anything is written.
        let (other, _) = new_key_and_csr("x").unwrap();
        let e = write_identity(&tmp.path().join("h3"), Kind::Node, &other.serialize_pem(), &pem, Some(ca.cert_pem()));
        assert!(e.is_err() && !tmp.path().join("h3").exists());
        // A damaged CSR is refused.
        let mut bad = csr.clone();
        let n = bad.len();
        bad[n - 5] ^= 1;
        assert!(matches!(sign_csr(&ca, &bad, &p, life).unwrap(), Err(CsrError::Invalid)));
        assert!(matches!(sign_csr(&ca, b"junk", &p, life).unwrap(), Err(CsrError::Invalid)));
    }

    #[test]
    fn only_a_newer_list_signed_by_the_ca_is_installed() {
        let tmp = tempfile::tempdir().unwrap();
        let ca_dir = tmp.path().join("ca");
        issue::init_ca(&ca_dir, "acme", false).unwrap();
        let ca = crate::show::read_single_cert(&ca_dir.join("ca.pem")).unwrap();
        let node = tmp.path().join("n");
        std::fs::create_dir_all(&node).unwrap();
        let v = issue::issue(&ca_dir, Kind::Viewer, "v", 30, None, false).unwrap();
        revoke::revoke(&ca_dir, revoke::Target::Cert(&v.cert)).unwrap();
        let one = std::fs::read(ca_dir.join("crl.pem")).unwrap();
        let w = issue::issue(&ca_dir, Kind::Viewer, "w", 30, None, false).unwrap();
        revoke::revoke(&ca_dir, revoke::Target::Cert(&w.cert)).unwrap();
        let two = std::fs::read(ca_dir.join("crl.pem")).unwrap();
        assert_eq!(install_crl(&node, &one, &ca).unwrap().unwrap().number, 1);
        assert_eq!(install_crl(&node, &two, &ca).unwrap().unwrap().number, 2);
        assert!(install_crl(&node, &one, &ca).unwrap().is_none(), "older");
        assert!(install_crl(&node, &two, &ca).unwrap().is_none(), "the same");
        assert_eq!(std::fs::read(node.join("crl.pem")).unwrap(), two);
        let other = tmp.path().join("other");
        issue::init_ca(&other, "acme", false).unwrap();
        let other_ca = crate::show::read_single_cert(&other.join("ca.pem")).unwrap();
        assert!(install_crl(&tmp.path().join("x"), &two, &other_ca).is_err(), "not signed by that CA");
    }
}
