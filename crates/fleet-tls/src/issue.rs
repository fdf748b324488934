//! The mesh CA and leaf issuance: `fleet certs init` and `fleet certs issue`.
//!
//! The CA is ECDSA P-256, basic constraints CA with path length 0, key usages keyCertSign
//! and cRLSign, 10 years, a random serial, subject `CN=fleet mesh CA <tenant>, O=fleet
//! mesh` and the URI SAN `fleet://<tenant>/ca`, which records the tenant it serves. Leaves
//! are ECDSA P-256, `CA:FALSE`, key usage digitalSignature, EKU serverAuth and clientAuth,
//! a random serial, the URI SAN `fleet://<tenant>/<kind>/<name>` and, for nodes, the DNS
//! SANs `<host>.<tenant>.fleet.internal` and `node.<tenant>.fleet.internal`.
//!
//! Every name is validated before anything is generated or written.

use std::path::{Path, PathBuf};

use fleet_core::names::DnsLabel;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use rustls::pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use crate::layout::{self, CERT_MODE, CertsDir, KEY_MODE};
use crate::principal::{self, Kind, Principal};
use crate::show;
use crate::{Error, Result};

/// Validity of a new mesh CA.
pub const CA_DAYS: u32 = 3650;
/// Default validity of a leaf certificate.
pub const DEFAULT_LEAF_DAYS: u32 = 90;
/// Longest validity `issue` accepts.
pub const MAX_LEAF_DAYS: u32 = 3650;
/// How far `not_before` is set in the past, so a peer whose clock is a little behind
/// accepts a certificate made a moment ago.
pub const BACKDATE: Duration = Duration::minutes(5);

/// When a certificate is valid: `not_before ..= not_after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From a few minutes ago ([`BACKDATE`]) until `days` days from now.
    pub fn days_from_now(days: u32) -> Self {
        let now = OffsetDateTime::now_utc();
        Validity { not_before: now - BACKDATE, not_after: now + Duration::days(i64::from(days)) }
    }

    /// From a little before now until `lifetime` from now: backdated by [`BACKDATE`], or a
    /// quarter of the lifetime when that is shorter (a test's 20 s certificate is not valid
    /// for 5 minutes in the past, which would put its renewal time before its issue).
    pub fn lifetime_from_now(lifetime: std::time::Duration) -> Self {
        let now = OffsetDateTime::now_utc();
        let life = Duration::try_from(lifetime).unwrap_or(Duration::days(i64::from(MAX_LEAF_DAYS)));
        Validity { not_before: now - BACKDATE.min(life / 4), not_after: now + life }
    }
}

/// A loaded or new mesh CA: its certificate, key and tenant.
pub struct Ca {
    tenant: DnsLabel,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key: KeyPair,
    not_after: OffsetDateTime,
}

/// A new leaf certificate and its key, PEM encoded.
pub struct Leaf {
    pub principal: Principal,
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
}

impl Ca {
    /// A new CA for `tenant`.
    pub fn generate(tenant: &DnsLabel, validity: Validity) -> Result<Ca> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("fleet mesh CA {tenant}"));
        dn.push(DnType::OrganizationName, "fleet mesh");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.subject_alt_names = vec![SanType::URI(principal::ca_uri(tenant).try_into()?)];
        params.serial_number = Some(random_serial()?);
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            tenant: tenant.clone(),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key,
            not_after: validity.not_after,
        })
    }

    /// The CA of a certs dir: `ca.pem` and `ca.key`.
    pub fn load(dir: &CertsDir) -> Result<Ca> {
        let (cert_path, key_path) = (dir.ca_cert(), dir.ca_key());
        if !cert_path.exists() {
            return Err(Error::NoCa { path: cert_path });
        }
        if !key_path.exists() {
            return Err(Error::NoCaKey { path: key_path });
        }
        let cert_pem = String::from_utf8_lossy(&layout::read(&cert_path)?).into_owned();
        let key_pem = String::from_utf8_lossy(&layout::read(&key_path)?).into_owned();
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| Error::Invalid { path: key_path.clone(), detail: format!("not a private key: {e}") })?;
        let cert_der = show::read_single_cert(&cert_path)?;
        let info =
            show::inspect_der(&cert_der, None).map_err(|detail| Error::Invalid { path: cert_path.clone(), detail })?;
        if !info.is_ca {
            return Err(Error::Invalid { path: cert_path, detail: "not a CA certificate".into() });
        }
        let tenant = principal::ca_tenant_from_der(&cert_der)
            .map_err(|source| Error::Principal { path: cert_path.clone(), source })?;
        if key.public_key_raw() != info.public_key_raw.as_slice() {
            return Err(Error::Invalid {
                path: key_path,
                detail: format!("this key does not belong to the CA certificate {}", cert_path.display()),
            });
        }
        Ok(Ca { tenant, cert_pem, cert_der, key, not_after: info.not_after })
    }

    pub fn tenant(&self) -> &DnsLabel {
        &self.tenant
    }
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Sign a certificate revocation list; PEM.
    pub fn sign_crl(&self, params: &rcgen::CertificateRevocationListParams) -> Result<String> {
        let issuer = Issuer::from_ca_cert_der(&self.cert_der, &self.key)?;
        Ok(params.signed_by(&issuer)?.pem()?)
    }

    /// Sign a leaf for `principal`. The principal's tenant is written as given, even when it
    /// is not the CA's: [`issue`] always uses the CA's tenant; tests use this to show that a
    /// certificate which chains to the CA grants nothing by itself.
    pub fn issue(&self, principal: &Principal, validity: Validity) -> Result<Leaf> {
        let params = leaf_params(principal, validity)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let issuer = Issuer::from_ca_cert_der(&self.cert_der, &self.key)?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Leaf {
            principal: principal.clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
        })
    }

    /// Sign a certificate for `principal` over `public_key` (from a CSR the signer has
    /// checked): the same certificate [`Ca::issue`] makes, but the key was made elsewhere and
    /// never seen here. `not_after` is capped at the CA's own expiry.
    pub fn issue_for_key(
        &self,
        principal: &Principal,
        validity: Validity,
        public_key: &impl rcgen::PublicKeyData,
    ) -> Result<(String, CertificateDer<'static>)> {
        let validity = Validity { not_after: validity.not_after.min(self.not_after), ..validity };
        let params = leaf_params(principal, validity)?;
        let issuer = Issuer::from_ca_cert_der(&self.cert_der, &self.key)?;
        let cert = params.signed_by(public_key, &issuer)?;
        Ok((cert.pem(), cert.der().clone()))
    }
}

/// The parameters of a leaf for `principal`: everything but its key.
fn leaf_params(principal: &Principal, validity: Validity) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, principal.to_string());
    dn.push(DnType::OrganizationName, "fleet mesh");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let mut sans = vec![SanType::URI(principal.uri().try_into()?)];
    if principal.kind == Kind::Node {
        let host = DnsLabel::parse_as("host name", &principal.name)?;
        sans.push(SanType::DnsName(principal::node_dns_name(&principal.tenant, &host).try_into()?));
        sans.push(SanType::DnsName(principal::any_node_dns_name(&principal.tenant).try_into()?));
    }
    params.subject_alt_names = sans;
    params.serial_number = Some(random_serial()?);
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    Ok(params)
}

/// A positive 127-bit random serial (RFC 5280: at most 20 octets, positive).
fn random_serial() -> Result<SerialNumber> {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| Error::Validity("the system random number generator failed".into()))?;
    // Clear the sign bit and set the next one, so the DER INTEGER is positive and minimal.
    b[0] = (b[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&b))
}

/// What `init_ca` wrote.
#[derive(Clone, Debug)]
pub struct InitDone {
    pub tenant: DnsLabel,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `fleet certs init`: a new mesh CA for `tenant` in `dir` (created 0700 if missing).
/// Refuses when `ca.pem` or `ca.key` exists, unless `force`.
pub fn init_ca(dir: &Path, tenant: &str, force: bool) -> Result<InitDone> {
    let tenant = DnsLabel::parse_as("tenant id", tenant)?;
    let certs = CertsDir::new(dir);
    let (cert, key) = (certs.ca_cert(), certs.ca_key());
    layout::refuse_existing(&[&cert, &key], force)?;
    let ca = Ca::generate(&tenant, Validity::days_from_now(CA_DAYS))?;
    layout::create_dir(dir)?;
    // The key first: a crash between the two leaves a key without a certificate, which
    // `init` refuses to overwrite silently and `issue` reports, never a CA without key.
    layout::write_atomic(&key, ca.key_pem().as_bytes(), KEY_MODE)?;
    layout::write_atomic(&cert, ca.cert_pem.as_bytes(), CERT_MODE)?;
    Ok(InitDone { tenant, cert, key })
}

/// What `issue` wrote.
#[derive(Clone, Debug)]
pub struct Issued {
    pub principal: Principal,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `ca.pem` copied into the `--out` dir, when it was not there yet.
    pub ca_copy: Option<PathBuf>,
    pub not_after: OffsetDateTime,
}

/// `fleet certs issue`: a leaf of `kind` named `name` (the host for nodes), valid `days`
/// days, signed by the CA in `dir`, for the CA's tenant.
///
/// Without `out`, the files go to `dir/issued/<kind>-<name>.{pem,key}`. With `out`, that
/// dir becomes the leaf's own certs dir: `node.{pem,key}` or `client.{pem,key}`, plus a
/// copy of `ca.pem`; copy it to the host or client that will use it. Existing files are
/// refused unless `force`.
pub fn issue(dir: &Path, kind: Kind, name: &str, days: u32, out: Option<&Path>, force: bool) -> Result<Issued> {
    if days == 0 || days > MAX_LEAF_DAYS {
        return Err(Error::Validity(format!("--days {days} is out of range: use 1 to {MAX_LEAF_DAYS}")));
    }
    issue_with_validity(dir, kind, name, Validity::days_from_now(days), out, force)
}

/// [`issue`] with an explicit validity (tests make expired and not-yet-valid leaves).
pub fn issue_with_validity(
    dir: &Path,
    kind: Kind,
    name: &str,
    validity: Validity,
    out: Option<&Path>,
    force: bool,
) -> Result<Issued> {
    // Names first: a bad name is refused before anything is read or written.
    let name = kind.check_name(name)?;
    let certs = CertsDir::new(dir);
    let ca = Ca::load(&certs)?;
    if validity.not_after > ca.not_after {
        return Err(Error::Validity(format!(
            "the certificate would outlive the mesh CA, which expires {}: issue it for fewer days",
            show::rfc3339(ca.not_after)
        )));
    }
    if validity.not_after <= validity.not_before {
        return Err(Error::Validity("not_after is not after not_before".into()));
    }
    let principal = Principal { tenant: ca.tenant.clone(), kind, name };
    let (cert, key, ca_copy) = match out {
        None => (certs.issued_cert(kind, &principal.name), certs.issued_key(kind, &principal.name), None),
        Some(out) => {
            let out = CertsDir::new(out);
            let (c, k) = out.identity(kind);
            let ca_path = out.ca_cert();
            let ca_copy = match layout::read(&ca_path) {
                Ok(existing) if existing == ca.cert_pem.as_bytes() => None,
                Ok(_) if !force => return Err(Error::Exists { path: ca_path }),
                _ => Some(ca_path),
            };
            (c, k, ca_copy)
        }
    };
    layout::refuse_existing(&[&cert, &key], force)?;
    let leaf = ca.issue(&principal, validity)?;
    for parent in [cert.parent(), key.parent()].into_iter().flatten() {
        if !parent.as_os_str().is_empty() {
            layout::create_dir(parent)?;
        }
    }
    layout::write_atomic(&key, leaf.key_pem.as_bytes(), KEY_MODE)?;
    layout::write_atomic(&cert, leaf.cert_pem.as_bytes(), CERT_MODE)?;
    if let Some(ca_path) = &ca_copy {
        layout::write_atomic(ca_path, ca.cert_pem.as_bytes(), CERT_MODE)?;
    }
    Ok(Issued { principal, cert, key, ca_copy, not_after: validity.not_after })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::PrincipalError;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn init_writes_ca_with_modes_and_refuses_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        let done = init_ca(&dir, "Acme", false).unwrap();
        assert_eq!(done.tenant.as_str(), "acme");
        assert_eq!(mode(&done.key), 0o600);
        assert_eq!(mode(&done.cert), 0o644);
        assert_eq!(mode(&dir), 0o700);
        let before = std::fs::read(&done.cert).unwrap();
        let again = init_ca(&dir, "acme", false).unwrap_err();
        assert!(matches!(&again, Error::Exists { path } if *path == done.cert), "{again:?}");
        assert!(again.is_usage());
        assert_eq!(std::fs::read(&done.cert).unwrap(), before, "refusal must not touch the CA");
        // A lone key also blocks a silent overwrite.
        std::fs::remove_file(&done.cert).unwrap();
        assert!(matches!(init_ca(&dir, "acme", false), Err(Error::Exists { path }) if path == done.key));
        init_ca(&dir, "acme", true).unwrap();
        assert_ne!(std::fs::read(&done.cert).unwrap(), before);
        assert_eq!(mode(&done.key), 0o600);
    }

    #[test]
    fn bad_names_are_refused_before_anything_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        for bad in ["", "a_b", "a.b", "-a", &"x".repeat(64)] {
            let e = init_ca(&dir, bad, false).unwrap_err();
            assert!(matches!(e, Error::Name(_)) && e.is_usage(), "{bad:?}: {e:?}");
        }
        assert!(!dir.exists());
        init_ca(&dir, "acme", false).unwrap();
        let listing = || {
            let mut v: Vec<_> = walk(&dir);
            v.sort();
            v
        };
        let before = listing();
        for (kind, bad) in [
            (Kind::Node, "under_score"),
            (Kind::Node, "dot.host"),
            (Kind::Operator, "al ice"),
            (Kind::Operator, "al.ice"),
            (Kind::Viewer, ""),
            (Kind::Viewer, "../x"),
        ] {
            let e = issue(&dir, kind, bad, 90, None, false).unwrap_err();
            assert!(matches!(e, Error::Name(_)), "{kind} {bad:?}: {e:?}");
            let out = tmp.path().join("out");
            assert!(matches!(issue(&dir, kind, bad, 90, Some(&out), false), Err(Error::Name(_))));
            assert!(!out.exists());
        }
        assert_eq!(listing(), before);
        assert!(matches!(issue(&dir, Kind::Viewer, "v", 0, None, false), Err(Error::Validity(_))));
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
        out
    }

    #[test]
    fn issue_places_files_and_names_the_principal() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        init_ca(&dir, "acme", false).unwrap();
        let op = issue(&dir, Kind::Operator, "alice", 30, None, false).unwrap();
        assert_eq!(op.cert, dir.join("issued/operator-alice.pem"));
        assert_eq!(op.key, dir.join("issued/operator-alice.key"));
        assert_eq!(mode(&op.key), 0o600);
        assert_eq!(mode(&op.cert), 0o644);
        assert_eq!(mode(&dir.join("issued")), 0o700);
        assert_eq!(op.principal.to_string(), "operator:alice@acme");
        let der = show::read_single_cert(&op.cert).unwrap();
        assert_eq!(Principal::from_der(&der).unwrap(), op.principal);
        assert!(matches!(issue(&dir, Kind::Operator, "alice", 30, None, false), Err(Error::Exists { .. })));
        issue(&dir, Kind::Operator, "alice", 30, None, true).unwrap();

        let out = tmp.path().join("h2");
        let node = issue(&dir, Kind::Node, "H2", 90, Some(&out), false).unwrap();
        assert_eq!(node.cert, out.join("node.pem"));
        assert_eq!(node.key, out.join("node.key"));
        assert_eq!(node.ca_copy.as_deref(), Some(out.join("ca.pem").as_path()));
        assert_eq!(std::fs::read(out.join("ca.pem")).unwrap(), std::fs::read(dir.join("ca.pem")).unwrap());
        assert_eq!(mode(&node.key), 0o600);
        let (uris, dns) = principal::sans(&show::read_single_cert(&node.cert).unwrap()).unwrap();
        assert_eq!(uris, vec!["fleet://acme/node/h2"]);
        assert_eq!(dns, vec!["h2.acme.fleet.internal", "node.acme.fleet.internal"]);
        // Same out dir again: the node files are refused, an identical ca.pem is not.
        assert!(matches!(issue(&dir, Kind::Node, "h2", 90, Some(&out), false), Err(Error::Exists { .. })));
        let viewer = issue(&dir, Kind::Viewer, "web", 90, Some(&out), false).unwrap();
        assert_eq!(viewer.cert, out.join("client.pem"));
        assert_eq!(viewer.ca_copy, None);
    }

    #[test]
    fn issue_needs_the_ca_and_its_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        assert!(matches!(issue(&dir, Kind::Viewer, "v", 1, None, false), Err(Error::NoCa { .. })));
        init_ca(&dir, "acme", false).unwrap();
        std::fs::remove_file(dir.join("ca.key")).unwrap();
        let e = issue(&dir, Kind::Viewer, "v", 1, None, false).unwrap_err();
        assert!(matches!(e, Error::NoCaKey { .. }), "{e:?}");
        assert!(e.to_string().contains("--out DIR"), "{e}");
    }

    #[test]
    fn leaf_may_not_outlive_the_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        init_ca(&dir, "acme", false).unwrap();
        let too_long = Validity::days_from_now(CA_DAYS + 10);
        assert!(matches!(issue_with_validity(&dir, Kind::Viewer, "v", too_long, None, false), Err(Error::Validity(_))));
    }

    #[test]
    fn principal_needs_exactly_one_fleet_uri() {
        let tenant = DnsLabel::parse_as("tenant id", "acme").unwrap();
        let ca = Ca::generate(&tenant, Validity::days_from_now(10)).unwrap();
        assert_eq!(principal::ca_tenant_from_der(ca.cert_der()).unwrap(), tenant);
        // The CA's own URI is not a leaf principal.
        assert!(matches!(Principal::from_der(ca.cert_der()), Err(PrincipalError::Malformed { .. })));
        let make = |uris: &[&str]| {
            let mut p = CertificateParams::default();
            p.subject_alt_names = uris.iter().map(|u| SanType::URI(u.to_string().try_into().unwrap())).collect();
            p.self_signed(&KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()).unwrap().der().to_vec()
        };
        assert!(matches!(Principal::from_der(&make(&[])), Err(PrincipalError::NoFleetUri { .. })));
        let e = Principal::from_der(&make(&["spiffe://x/y"])).unwrap_err();
        assert!(e.to_string().contains("spiffe://x/y"), "{e}");
        assert!(matches!(
            Principal::from_der(&make(&["fleet://acme/viewer/a", "fleet://acme/operator/b"])),
            Err(PrincipalError::ManyFleetUris { .. })
        ));
        let p = Principal::from_der(&make(&["spiffe://x/y", "fleet://acme/viewer/a"])).unwrap();
        assert_eq!(p.to_string(), "viewer:a@acme");
    }
}
