//! What a certificate says (`fleet certs show`): principal, kind, tenant, validity and days
//! left, SHA-256 fingerprint, and whether it chains to the mesh CA of a certs dir.
//!
//! "Chains to the CA" means: issued by the CA's subject and signed by the CA's key (or is
//! the CA itself). Validity is reported beside it, not folded into it.

use std::path::{Path, PathBuf};

use fleet_core::names::DnsLabel;
use ring::digest::{SHA256, digest};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::json;
pub use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::layout::{self, CertsDir};
use crate::principal::{self, Kind, Principal};
use crate::{Error, Result};

/// The facts of one certificate.
#[derive(Clone, Debug)]
pub struct CertInfo {
    pub path: Option<PathBuf>,
    pub is_ca: bool,
    /// The leaf's principal, when its `fleet://` URI SAN names one.
    pub principal: Option<Principal>,
    /// The tenant: of the principal, or of a CA's `fleet://<tenant>/ca`.
    pub tenant: Option<DnsLabel>,
    /// Why no principal or tenant could be read.
    pub problem: Option<String>,
    pub subject: String,
    pub issuer: String,
    /// Serial number, hex, colon-separated.
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub uris: Vec<String>,
    pub dns_names: Vec<String>,
    /// SHA-256 of the DER, upper-case hex, colon-separated (as `openssl x509 -fingerprint`).
    pub sha256: String,
    /// None when no CA was given to check against.
    pub chains_to_ca: Option<bool>,
    pub ca_path: Option<PathBuf>,
    pub(crate) public_key_raw: Vec<u8>,
}

impl CertInfo {
    pub fn kind(&self) -> Option<Kind> {
        self.principal.as_ref().map(|p| p.kind)
    }

    /// Days until `not_after`, rounded to the nearest whole day (negative once expired):
    /// a certificate issued for 90 days a moment ago has 90 days left.
    pub fn days_left(&self, now: OffsetDateTime) -> i64 {
        ((self.not_after - now).whole_seconds() + 43_200).div_euclid(86_400)
    }

    pub fn valid_at(&self, now: OffsetDateTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// The `fleet certs show --json` object (a stable contract, documented in
    /// docs/security.md).
    pub fn to_json(&self, now: OffsetDateTime) -> serde_json::Value {
        let kind = if self.is_ca { Some("ca") } else { self.kind().map(Kind::as_str) };
        json!({
            "path": self.path.as_ref().map(|p| p.display().to_string()),
            "kind": kind,
            "principal": self.principal.as_ref().map(|p| p.to_string()),
            "tenant_id": self.tenant.as_ref().map(|t| t.as_str()),
            "host": self.principal.as_ref().and_then(|p| p.host()),
            "name": self.principal.as_ref().map(|p| p.name.as_str()),
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "not_before": rfc3339(self.not_before),
            "not_after": rfc3339(self.not_after),
            "days_left": self.days_left(now),
            "valid_now": self.valid_at(now),
            "sha256_fingerprint": self.sha256,
            "uris": self.uris,
            "dns_names": self.dns_names,
            "chains_to_ca": self.chains_to_ca,
            "ca_path": self.ca_path.as_ref().map(|p| p.display().to_string()),
            "problem": self.problem,
        })
    }
}

/// The current time, for [`CertInfo::days_left`] and friends.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// RFC 3339 in UTC, whole seconds: `2026-05-01T12:00:00Z`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// SHA-256 of a DER certificate, upper-case hex, colon-separated.
pub fn sha256_fingerprint(der: &[u8]) -> String {
    let d = digest(&SHA256, der);
    d.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// A short mesh id: the first 8 bytes of the CA certificate's SHA-256, lower-case hex
/// (for mDNS TXT `mesh` and `NodeInfo.mesh_fingerprint`).
pub fn mesh_fingerprint(ca_der: &[u8]) -> String {
    digest(&SHA256, ca_der).as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The first certificate of a PEM file.
pub fn read_single_cert(path: &Path) -> Result<CertificateDer<'static>> {
    let pem = layout::read(path)?;
    let invalid = |detail: String| Error::Invalid { path: path.to_path_buf(), detail };
    match CertificateDer::pem_slice_iter(&pem).next() {
        Some(Ok(der)) => Ok(der),
        Some(Err(e)) => Err(invalid(format!("bad PEM: {e}"))),
        None => Err(invalid("no PEM CERTIFICATE block".into())),
    }
}

/// `fleet certs show FILE`: the facts of the certificate at `path`, checked against the CA
/// of `certs` when that dir has one.
pub fn show(path: &Path, certs: Option<&CertsDir>) -> Result<CertInfo> {
    let der = read_single_cert(path)?;
    let ca_path = certs.map(CertsDir::ca_cert).filter(|p| p.exists());
    let ca_der = ca_path.as_deref().map(read_single_cert).transpose()?;
    let mut info =
        inspect_der(&der, ca_der.as_deref()).map_err(|detail| Error::Invalid { path: path.into(), detail })?;
    info.path = Some(path.to_path_buf());
    info.ca_path = ca_path;
    Ok(info)
}

/// The facts of a DER certificate; `ca_der` to check the chain.
pub fn inspect_der(der: &[u8], ca_der: Option<&[u8]>) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let (uris, dns_names) = principal::sans(der)?;
    let is_ca = cert.is_ca();
    let (principal, tenant, problem) = if is_ca {
        match principal::ca_tenant_from_der(der) {
            Ok(t) => (None, Some(t), None),
            Err(e) => (None, None, Some(e.to_string())),
        }
    } else {
        match Principal::from_der(der) {
            Ok(p) => {
                let t = p.tenant.clone();
                (Some(p), Some(t), None)
            }
            Err(e) => (None, None, Some(e.to_string())),
        }
    };
    let chains_to_ca = match ca_der {
        None => None,
        Some(ca_der) if ca_der == der => Some(true),
        Some(ca_der) => {
            let (_, ca) =
                x509_parser::parse_x509_certificate(ca_der).map_err(|e| format!("the CA is not a certificate: {e}"))?;
            Some(
                cert.issuer().as_raw() == ca.subject().as_raw() && cert.verify_signature(Some(ca.public_key())).is_ok(),
            )
        }
    };
    Ok(CertInfo {
        path: None,
        is_ca,
        principal,
        tenant,
        problem,
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string(),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        uris,
        dns_names,
        sha256: sha256_fingerprint(der),
        chains_to_ca,
        ca_path: None,
        public_key_raw: cert.public_key().subject_public_key.data.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::{self, Ca, Validity};

    #[test]
    fn show_reports_principal_validity_and_chain() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        issue::init_ca(&dir, "acme", false).unwrap();
        let node = issue::issue(&dir, Kind::Node, "h1", 90, None, false).unwrap();
        let certs = CertsDir::new(&dir);
        let now = OffsetDateTime::now_utc();

        let info = show(&node.cert, Some(&certs)).unwrap();
        assert_eq!(info.principal.as_ref().unwrap().to_string(), "node:h1@acme");
        assert_eq!(info.tenant.as_ref().unwrap().as_str(), "acme");
        assert_eq!(info.chains_to_ca, Some(true));
        assert!(info.valid_at(now));
        assert!((89..=90).contains(&info.days_left(now)), "{}", info.days_left(now));
        assert_eq!(info.sha256.len(), 32 * 3 - 1);
        let j = info.to_json(now);
        assert_eq!(j["kind"], "node");
        assert_eq!(j["host"], "h1");
        assert_eq!(j["tenant_id"], "acme");
        assert_eq!(j["chains_to_ca"], true);

        let ca = show(&certs.ca_cert(), Some(&certs)).unwrap();
        assert!(ca.is_ca);
        assert_eq!(ca.tenant.as_ref().unwrap().as_str(), "acme");
        assert_eq!(ca.chains_to_ca, Some(true));
        assert_eq!(ca.to_json(now)["kind"], "ca");
        assert_eq!(ca.days_left(now), 3650);

        // Another CA's leaf does not chain to this one.
        let other = Ca::generate(&DnsLabel::parse_as("t", "acme").unwrap(), Validity::days_from_now(5)).unwrap();
        let p = Principal::new(DnsLabel::parse_as("t", "acme").unwrap(), Kind::Viewer, "v").unwrap();
        let leaf = other.issue(&p, Validity::days_from_now(1)).unwrap();
        let f = tmp.path().join("foreign.pem");
        std::fs::write(&f, &leaf.cert_pem).unwrap();
        assert_eq!(show(&f, Some(&certs)).unwrap().chains_to_ca, Some(false));
        assert_eq!(show(&f, None).unwrap().chains_to_ca, None);

        let junk = tmp.path().join("junk.pem");
        std::fs::write(&junk, "hello").unwrap();
        assert!(matches!(show(&junk, None), Err(Error::Invalid { .. })));
        assert!(show(&tmp.path().join("missing.pem"), None).unwrap_err().is_usage());
    }

    #[test]
    fn rfc3339_is_utc_whole_seconds() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap() + time::Duration::milliseconds(250);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
    }
}
