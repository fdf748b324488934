//! Revocation: the mesh CA's certificate revocation list, `crl.pem`.
//!
//! `fleet certs revoke` (on the host that holds the CA key) adds a certificate to the
//! CRL in the CA's dir: a new CRL with every earlier entry, the next CRL number, signed by
//! the CA, written in place atomically. Copied into a host's certs dir, it is loaded with
//! the identity ([`crate::config::Identity::node`], [`crate::config::Identity::client`]):
//! both doors and both directions refuse a revoked certificate, and a node re-reads it
//! when it changes. A CRL that is not signed by the mesh CA is refused, not ignored.

use std::path::{Path, PathBuf};

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use time::OffsetDateTime;

use crate::issue::Ca;
use crate::layout::{self, CERT_MODE, CertsDir};
use crate::{Error, Result, show};

/// A CRL read from disk and checked against the mesh CA.
#[derive(Clone, Debug)]
pub struct Crl {
    pub der: CertificateRevocationListDer<'static>,
    pub number: u128,
    /// Revoked serials (big-endian bytes, as in the certificate) and when.
    pub revoked: Vec<(Vec<u8>, OffsetDateTime)>,
}

impl Crl {
    pub fn revokes(&self, serial: &[u8]) -> bool {
        self.revoked.iter().any(|(s, _)| s.as_slice() == strip(serial))
    }
}

/// The serial of a certificate (no leading zero bytes), or None if it does not parse.
pub fn serial_of(cert: &CertificateDer<'_>) -> Option<Vec<u8>> {
    let (_, c) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(strip(c.raw_serial()).to_vec())
}

/// A serial without leading zero bytes (DER adds one when the top bit is set).
fn strip(serial: &[u8]) -> &[u8] {
    let n = serial.iter().take_while(|b| **b == 0).count().min(serial.len().saturating_sub(1));
    &serial[n..]
}

fn invalid(path: &Path, detail: impl Into<String>) -> Error {
    Error::Invalid { path: path.to_path_buf(), detail: detail.into() }
}

/// Read `path` when it exists: one PEM `X509 CRL`, signed by `ca`.
pub fn read_crl(path: &Path, ca: &CertificateDer<'_>) -> Result<Option<Crl>> {
    if !path.exists() {
        return Ok(None);
    }
    let bytes = layout::read_capped(path, fleet_core::file::CRL_MAX)?;
    parse_crl(path, &bytes, ca).map(Some)
}

/// Parse the bytes of a CRL file (`path` names it in errors): one PEM
/// `X509 CRL`, signed by `ca`.
pub fn parse_crl(path: &Path, bytes: &[u8], ca: &CertificateDer<'_>) -> Result<Crl> {
    let der = CertificateRevocationListDer::from_pem_slice(bytes)
        .map_err(|e| invalid(path, format!("not a PEM certificate revocation list: {e}")))?;
    let (_, crl) =
        x509_parser::parse_x509_crl(der.as_ref()).map_err(|e| invalid(path, format!("not a readable CRL: {e}")))?;
    let (_, ca_cert) = x509_parser::parse_x509_certificate(ca.as_ref())
        .map_err(|e| invalid(path, format!("the mesh CA is not a certificate: {e}")))?;
    crl.verify_signature(ca_cert.public_key())
        .map_err(|_| invalid(path, "not signed by this mesh's CA: copy crl.pem from the CA's certs dir"))?;
    let number = match crl.crl_number() {
        Some(n) => n.to_bytes_be().iter().try_fold(0u128, |acc, b| acc.checked_mul(256).map(|a| a + u128::from(*b))),
        None => Some(0),
    }
    .ok_or_else(|| invalid(path, "CRL number too large"))?;
    let revoked = crl
        .iter_revoked_certificates()
        .map(|r| (strip(r.raw_serial()).to_vec(), r.revocation_date.to_datetime()))
        .collect();
    Ok(Crl { der, number, revoked })
}

/// What to revoke.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// A certificate file issued by this CA.
    Cert(&'a Path),
    /// A serial number in hex, as `fleet certs show` prints it (colons allowed).
    Serial(&'a str),
}

/// What `revoke` did.
#[derive(Clone, Debug)]
pub struct Revoked {
    /// The serial revoked, in hex with colons.
    pub serial: String,
    /// Whether the CRL already held it (then nothing was written).
    pub already: bool,
    pub crl: PathBuf,
    pub number: u128,
    /// Every serial the CRL now holds.
    pub all: Vec<String>,
}

/// A serial in hex with colons, as `fleet certs show` prints it.
pub(crate) fn hex(serial: &[u8]) -> String {
    serial.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn parse_serial(s: &str) -> Result<Vec<u8>> {
    let digits: String = s.chars().filter(|c| *c != ':').collect();
    let bad = || Error::Validity(format!("serial {s:?} is not hex (as `fleet certs show` prints it)"));
    if digits.is_empty() || digits.len() > 40 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let padded = if digits.len() % 2 == 1 { format!("0{digits}") } else { digits };
    let bytes: Vec<u8> = (0..padded.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&padded[i..i + 2], 16))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad())?;
    Ok(strip(&bytes).to_vec())
}

/// `fleet certs revoke`: add `target` to the CRL of the CA in `dir` (`dir/crl.pem`).
pub fn revoke(dir: &Path, target: Target<'_>) -> Result<Revoked> {
    let certs = CertsDir::new(dir);
    let ca = Ca::load(&certs)?;
    // Read, add, rewrite: two revokes at once would lose one. An exclusive lock on the
    // CA key (advisory, released when the file is closed) makes them take turns.
    let key = certs.ca_key();
    let held = std::fs::File::open(&key).map_err(|source| Error::Read { path: key.clone(), source })?;
    held.lock().map_err(|source| Error::Read { path: key.clone(), source })?;
    let serial = match target {
        Target::Serial(s) => parse_serial(s)?,
        Target::Cert(path) => {
            let der = show::read_single_cert(path)?;
            let info = show::inspect_der(&der, Some(ca.cert_der())).map_err(|d| invalid(path, d))?;
            if info.chains_to_ca != Some(true) {
                return Err(invalid(path, format!("not issued by the mesh CA in {}", dir.display())));
            }
            serial_of(&der).ok_or_else(|| invalid(path, "no readable serial number"))?
        }
    };
    let path = certs.crl();
    let old = read_crl(&path, ca.cert_der())?;
    let (number, mut entries) = old.map_or((0, vec![]), |c| (c.number, c.revoked));
    let all = |entries: &[(Vec<u8>, OffsetDateTime)]| entries.iter().map(|(s, _)| hex(s)).collect();
    if entries.iter().any(|(s, _)| *s == serial) {
        return Ok(Revoked { serial: hex(&serial), already: true, crl: path, number, all: all(&entries) });
    }
    let now = OffsetDateTime::now_utc();
    entries.push((serial.clone(), now));
    let number = number + 1;
    let params = CertificateRevocationListParams {
        this_update: now,
        // Nodes do not enforce the next update (a mesh has no CRL distribution point to
        // fetch from); the CA's own end is the honest bound.
        next_update: ca.not_after().max(now + time::Duration::days(1)),
        crl_number: SerialNumber::from_slice(&number.to_be_bytes()[number.leading_zeros() as usize / 8..]),
        issuing_distribution_point: None,
        revoked_certs: entries
            .iter()
            .map(|(s, at)| RevokedCertParams {
                serial_number: SerialNumber::from_slice(s),
                revocation_time: *at,
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let pem = ca.sign_crl(&params)?;
    layout::write_atomic(&path, pem.as_bytes(), CERT_MODE)?;
    Ok(Revoked { serial: hex(&serial), already: false, crl: path, number, all: all(&entries) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue;
    use crate::principal::Kind;

    #[test]
    fn serials_parse_with_or_without_colons_and_leading_zeros() {
        assert_eq!(parse_serial("4a:0b").unwrap(), vec![0x4a, 0x0b]);
        assert_eq!(parse_serial("004A0B").unwrap(), vec![0x4a, 0x0b]);
        assert_eq!(parse_serial("abc").unwrap(), vec![0x0a, 0xbc]);
        for bad in ["", "zz", "12:3g", &"1".repeat(41)] {
            assert!(parse_serial(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn concurrent_revokes_lose_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = tmp.path().join("ca");
        issue::init_ca(&ca, "acme", false).unwrap();
        let certs: Vec<PathBuf> =
            (0..8).map(|i| issue::issue(&ca, Kind::Viewer, &format!("v{i}"), 30, None, false).unwrap().cert).collect();
        std::thread::scope(|s| {
            for c in &certs {
                let ca = &ca;
                s.spawn(move || revoke(ca, Target::Cert(c)).unwrap());
            }
        });
        let ca_der = show::read_single_cert(&ca.join("ca.pem")).unwrap();
        let crl = read_crl(&ca.join("crl.pem"), &ca_der).unwrap().unwrap();
        assert_eq!((crl.revoked.len(), crl.number), (8, 8), "{crl:?}");
    }

    #[test]
    fn revoking_grows_the_list_and_a_foreign_crl_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = tmp.path().join("ca");
        issue::init_ca(&ca, "acme", false).unwrap();
        let a = issue::issue(&ca, Kind::Operator, "alice", 30, None, false).unwrap();
        let b = issue::issue(&ca, Kind::Viewer, "bob", 30, None, false).unwrap();
        let ca_der = show::read_single_cert(&ca.join("ca.pem")).unwrap();
        assert!(read_crl(&ca.join("crl.pem"), &ca_der).unwrap().is_none());

        let first = revoke(&ca, Target::Cert(&a.cert)).unwrap();
        assert!(!first.already);
        assert_eq!((first.number, first.all.len()), (1, 1));
        let again = revoke(&ca, Target::Serial(&first.serial)).unwrap();
        assert!(again.already, "{again:?}");
        let second = revoke(&ca, Target::Cert(&b.cert)).unwrap();
        assert_eq!((second.number, second.all.len()), (2, 2));
        let crl = read_crl(&ca.join("crl.pem"), &ca_der).unwrap().unwrap();
        assert_eq!(crl.number, 2);
        let serial_of = |p: &Path| serial_of(&show::read_single_cert(p).unwrap()).unwrap();
        assert!(crl.revokes(&serial_of(&a.cert)) && crl.revokes(&serial_of(&b.cert)));
        assert!(!crl.revokes(&serial_of(&ca.join("ca.pem"))));

        // Another mesh's CA neither signs our CRL nor has its certificates revoked here.
        let other = tmp.path().join("other");
        issue::init_ca(&other, "acme", false).unwrap();
        let other_der = show::read_single_cert(&other.join("ca.pem")).unwrap();
        let e = read_crl(&ca.join("crl.pem"), &other_der).unwrap_err();
        assert!(e.to_string().contains("not signed by this mesh's CA"), "{e}");
        let stranger = issue::issue(&other, Kind::Operator, "eve", 30, None, false).unwrap();
        let e = revoke(&ca, Target::Cert(&stranger.cert)).unwrap_err();
        assert!(e.to_string().contains("not issued by the mesh CA"), "{e}");
        // A garbled file is named, not skipped.
        std::fs::write(ca.join("crl.pem"), "junk").unwrap();
        let e = read_crl(&ca.join("crl.pem"), &ca_der).unwrap_err();
        assert!(e.to_string().contains("crl.pem"), "{e}");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;
        use std::sync::OnceLock;

        /// A real CRL (two revocations) and its CA, made once.
        fn real() -> &'static (Vec<u8>, CertificateDer<'static>) {
            static REAL: OnceLock<(Vec<u8>, CertificateDer<'static>)> = OnceLock::new();
            REAL.get_or_init(|| {
                let tmp = tempfile::tempdir().unwrap();
                let ca = tmp.path().join("ca");
                issue::init_ca(&ca, "acme", false).unwrap();
                for name in ["a", "b"] {
                    let c = issue::issue(&ca, Kind::Viewer, name, 30, None, false).unwrap();
                    revoke(&ca, Target::Cert(&c.cert)).unwrap();
                }
                (std::fs::read(ca.join("crl.pem")).unwrap(), show::read_single_cert(&ca.join("ca.pem")).unwrap())
            })
        }

        fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
            let path = Path::new("/certs/crl.pem");
            if let Err(e) = parse_crl(path, bytes, &real().1) {
                prop_assert!(e.to_string().contains("crl.pem"), "the error names the file: {e}");
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn any_bytes_are_refused_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
                check(&bytes)?;
            }

            #[test]
            fn a_damaged_real_crl_is_refused_or_read_without_panic(
                at in any::<prop::sample::Index>(),
                byte in any::<u8>(),
                cut in any::<prop::sample::Index>(),
            ) {
                let (good, ca) = real();
                prop_assert_eq!(parse_crl(Path::new("crl.pem"), good, ca).unwrap().revoked.len(), 2);
                let mut bad = good.clone();
                bad[at.index(good.len())] = byte;
                check(&bad)?;
                check(&good[..cut.index(good.len())])?;
                // The DER inside, damaged: past the PEM layer into the CRL parser.
                let der = CertificateRevocationListDer::from_pem_slice(good).unwrap().as_ref().to_vec();
                let whole = format!("-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n", base64(&der));
                prop_assert_eq!(parse_crl(Path::new("crl.pem"), whole.as_bytes(), ca).unwrap().revoked.len(), 2);
                let mut der_bad = der.clone();
                der_bad[at.index(der.len())] = byte;
                let pem = format!(
                    "-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n",
                    base64(&der_bad)
                );
                check(pem.as_bytes())?;
            }

            #[test]
            fn serials_round_trip_through_hex(serial in prop::collection::vec(any::<u8>(), 1..20)) {
                prop_assert_eq!(parse_serial(&hex(&serial)).unwrap(), strip(&serial).to_vec());
                prop_assert_eq!(parse_serial(&hex(&serial).replace(':', "")).unwrap(), strip(&serial).to_vec());
            }

            #[test]
            fn any_serial_text_parses_or_is_refused(s in any::<String>()) {
                let _ = parse_serial(&s);
            }
        }

        /// Standard base64 with padding (the test's own, to build PEM).
        fn base64(data: &[u8]) -> String {
            const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut out = String::new();
            for chunk in data.chunks(3) {
                let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
                let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                for i in 0..4 {
                    if i <= chunk.len() {
                        out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                    } else {
                        out.push('=');
                    }
                }
            }
            out
        }
    }
}
