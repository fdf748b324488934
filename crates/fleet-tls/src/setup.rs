//! The zero-setup first run of a node, and the node's own identity on disk.
//!
//! A node started on a host whose certs dir holds neither a CA nor a node certificate
//! makes a one-host mesh: a CA for its tenant and its own node certificate. A node whose
//! certs dir already has `node.pem` loads it: the certificate, not the login, says which
//! tenant and host this node is.

use std::path::{Path, PathBuf};

use fleet_core::names::DnsLabel;

use crate::issue::{self, Ca, DEFAULT_LEAF_DAYS, Validity};
use crate::layout::{self, CERT_MODE, CertsDir, KEY_MODE};
use crate::principal::{Kind, Principal};
use crate::show;
use crate::{Error, Result};

/// What [`ensure_mesh`] created, so the node can log where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created {
    /// True when a new mesh CA was made (a one-host mesh); false when an existing CA
    /// (with its key) issued the node certificate.
    pub new_ca: bool,
    /// Every file written, in the order written.
    pub written: Vec<PathBuf>,
}

/// The principal of the node certificate in `dir` (`node.pem`), or None when there is none.
/// The tenant and host a node runs as come from here.
pub fn node_principal(dir: &Path) -> Result<Option<Principal>> {
    let path = CertsDir::new(dir).node_cert();
    if !path.exists() {
        return Ok(None);
    }
    let der = show::read_single_cert(&path)?;
    let p = Principal::from_der(&der).map_err(|source| Error::Principal { path: path.clone(), source })?;
    if p.kind != Kind::Node {
        return Err(Error::Invalid { path, detail: format!("names {p}, not a node") });
    }
    Ok(Some(p))
}

/// Make sure `dir` holds a node identity for `tenant`/`host`:
/// - `node.pem` exists: nothing is created; its tenant and host must be `tenant` and `host`
///   (else [`Error::Mismatch`] naming both).
/// - no `node.pem`, but the CA and its key: a node certificate is issued from that CA (whose
///   tenant must be `tenant`).
/// - neither CA nor node certificate: a new CA for `tenant` and the node certificate.
/// - a CA certificate without its key, or a stray `node.key`: an error saying what to do.
pub fn ensure_mesh(dir: &Path, tenant: &DnsLabel, host: &DnsLabel) -> Result<Option<Created>> {
    let certs = CertsDir::new(dir);
    if let Some(p) = node_principal(dir)? {
        if p.tenant != *tenant || p.name != host.as_str() {
            return Err(Error::Mismatch(format!(
                "{} is the identity of {} (tenant {}, host {}), but this node is configured as tenant {}, host {}: \
                 fix tenant_id/host in node.yaml or use another certs dir",
                certs.node_cert().display(),
                p,
                p.tenant,
                p.name,
                tenant,
                host
            )));
        }
        return Ok(None);
    }
    let (node_cert, node_key) = (certs.node_cert(), certs.node_key());
    if node_key.exists() {
        return Err(Error::Invalid {
            path: node_key,
            detail: format!("a node key without {}: remove it or put its certificate back", node_cert.display()),
        });
    }
    let principal = Principal { tenant: tenant.clone(), kind: Kind::Node, name: host.as_str().to_string() };
    let leaf_validity = Validity::days_from_now(DEFAULT_LEAF_DAYS);
    let mut written = Vec::new();
    let new_ca = !certs.ca_cert().exists() && !certs.ca_key().exists();
    let ca = if new_ca {
        let done = issue::init_ca(dir, tenant.as_str(), false)?;
        written.extend([done.key, done.cert]);
        Ca::load(&certs)?
    } else {
        let ca = Ca::load(&certs)?;
        if ca.tenant() != tenant {
            return Err(Error::Mismatch(format!(
                "the mesh CA in {} serves tenant {}, but this node is configured as tenant {}",
                certs.ca_cert().display(),
                ca.tenant(),
                tenant
            )));
        }
        ca
    };
    let leaf = ca.issue(&principal, leaf_validity)?;
    layout::write_atomic(&node_key, leaf.key_pem.as_bytes(), KEY_MODE)?;
    layout::write_atomic(&node_cert, leaf.cert_pem.as_bytes(), CERT_MODE)?;
    written.extend([node_key, node_cert]);
    Ok(Some(Created { new_ca, written }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Identity;
    use std::os::unix::fs::PermissionsExt;

    fn label(s: &str) -> DnsLabel {
        DnsLabel::parse_as("t", s).unwrap()
    }

    #[test]
    fn first_run_makes_a_one_host_mesh_then_loads_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("fleet/certs");
        assert_eq!(node_principal(&dir).unwrap(), None);
        let created = ensure_mesh(&dir, &label("acme"), &label("h1")).unwrap().unwrap();
        assert!(created.new_ca);
        let names: Vec<_> = created.written.iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, ["ca.key", "ca.pem", "node.key", "node.pem"]);
        for p in &created.written {
            let want = if p.extension().unwrap() == "key" { 0o600 } else { 0o644 };
            assert_eq!(std::fs::metadata(p).unwrap().permissions().mode() & 0o777, want, "{}", p.display());
        }
        assert_eq!(node_principal(&dir).unwrap().unwrap().to_string(), "node:h1@acme");
        assert_eq!(Identity::node(&dir).unwrap().principal.to_string(), "node:h1@acme");

        assert_eq!(ensure_mesh(&dir, &label("acme"), &label("h1")).unwrap(), None);
        let e = ensure_mesh(&dir, &label("other"), &label("h1")).unwrap_err();
        assert!(matches!(e, Error::Mismatch(_)) && e.to_string().contains("other"), "{e}");
        assert!(matches!(ensure_mesh(&dir, &label("acme"), &label("h2")), Err(Error::Mismatch(_))));
    }

    #[test]
    fn existing_ca_issues_the_node_cert() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        issue::init_ca(&dir, "acme", false).unwrap();
        let created = ensure_mesh(&dir, &label("acme"), &label("h1")).unwrap().unwrap();
        assert!(!created.new_ca);
        assert_eq!(created.written.len(), 2);
        std::fs::remove_file(dir.join("node.pem")).unwrap();
        std::fs::remove_file(dir.join("node.key")).unwrap();
        assert!(matches!(ensure_mesh(&dir, &label("other"), &label("h1")), Err(Error::Mismatch(_))));
        // A CA without its key cannot issue: say how to get a node certificate.
        std::fs::remove_file(dir.join("ca.key")).unwrap();
        let e = ensure_mesh(&dir, &label("acme"), &label("h1")).unwrap_err();
        assert!(matches!(e, Error::NoCaKey { .. }), "{e:?}");
        assert!(!dir.join("node.pem").exists());
    }
}
