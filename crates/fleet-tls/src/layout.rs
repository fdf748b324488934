//! The on-disk layout of a certs dir (documented in `certs/README.md`), and the one way
//! files are written into it: a temp file in the same dir, created with its final mode,
//! then renamed into place, so a reader never sees half a file and a key is never
//! readable by others, not even for a moment.
//!
//! ```text
//! <certs dir>/            0700
//!   ca.pem                mesh CA certificate (0644), on every host
//!   ca.key                mesh CA key (0600), only on the host that issues
//!   node.pem, node.key    this host's node identity
//!   client.pem, client.key  an off-host client's identity (operator or viewer)
//!   crl.pem               the mesh CA's revocation list (`fleet certs revoke`), on every host
//!   issued/               0700: certificates issued here for others, without --out
//!     <kind>-<name>.pem, <kind>-<name>.key
//! ```

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::principal::Kind;
use crate::{Error, Result};

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const NODE_CERT: &str = "node.pem";
pub const NODE_KEY: &str = "node.key";
pub const CLIENT_CERT: &str = "client.pem";
pub const CLIENT_KEY: &str = "client.key";
pub const CRL: &str = "crl.pem";
pub const ISSUED: &str = "issued";

/// Mode of private keys.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificates.
pub const CERT_MODE: u32 = 0o644;
/// Mode of the dirs this crate creates.
pub const DIR_MODE: u32 = 0o700;

/// A certs dir and the names of the files in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertsDir {
    root: PathBuf,
}

impl CertsDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        CertsDir { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join(CA_CERT)
    }
    pub fn ca_key(&self) -> PathBuf {
        self.root.join(CA_KEY)
    }
    pub fn node_cert(&self) -> PathBuf {
        self.root.join(NODE_CERT)
    }
    pub fn node_key(&self) -> PathBuf {
        self.root.join(NODE_KEY)
    }
    pub fn client_cert(&self) -> PathBuf {
        self.root.join(CLIENT_CERT)
    }
    pub fn client_key(&self) -> PathBuf {
        self.root.join(CLIENT_KEY)
    }
    /// The revocation list: written by [`crate::revoke::revoke`], read with the identity.
    pub fn crl(&self) -> PathBuf {
        self.root.join(CRL)
    }
    pub fn issued_dir(&self) -> PathBuf {
        self.root.join(ISSUED)
    }
    /// `issued/<kind>-<name>.pem`
    pub fn issued_cert(&self, kind: Kind, name: &str) -> PathBuf {
        self.issued_dir().join(format!("{kind}-{name}.pem"))
    }
    /// `issued/<kind>-<name>.key`
    pub fn issued_key(&self, kind: Kind, name: &str) -> PathBuf {
        self.issued_dir().join(format!("{kind}-{name}.key"))
    }
    /// The identity file names for a leaf of `kind` when this dir is that leaf's own
    /// certs dir: `node.pem`/`node.key` for nodes, `client.pem`/`client.key` otherwise.
    pub fn identity(&self, kind: Kind) -> (PathBuf, PathBuf) {
        match kind {
            Kind::Node => (self.node_cert(), self.node_key()),
            Kind::Operator | Kind::Viewer => (self.client_cert(), self.client_key()),
        }
    }
}

/// Create `dir` (and parents) with mode 0700 if missing.
pub(crate) fn create_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|source| Error::Write { path: dir.to_path_buf(), source })
}

/// Write `contents` to `path` atomically with `mode` from the first byte: a temp file in
/// the same dir opened with `create_new` and the mode, written, synced, then renamed over
/// `path`. The mode is never changed afterwards (the umask may only remove bits).
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let err = |source| Error::Write { path: path.to_path_buf(), source };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}-{}", std::process::id(), nonce()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// A few random bytes as hex, so concurrent writers never share a temp name.
fn nonce() -> String {
    let mut b = [0u8; 6];
    // SystemRandom only fails when the OS has no randomness; the pid still separates
    // processes then, and create_new refuses a clash instead of sharing a file.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Read a certificate or key file (a regular file of at most
/// [`fleet_core::file::PEM_MAX`] bytes), naming it in the error.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    read_capped(path, fleet_core::file::PEM_MAX)
}

/// Read a regular file of at most `cap` bytes, naming it in the error.
pub(crate) fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>> {
    fleet_core::file::read(path, cap).map_err(|source| Error::Read { path: path.to_path_buf(), source })
}

/// Refuse when any of `paths` exists and `force` is false.
pub(crate) fn refuse_existing(paths: &[&Path], force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
    match paths.iter().find(|p| p.exists()) {
        Some(p) => Err(Error::Exists { path: p.to_path_buf() }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_has_its_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        create_dir(&sub).unwrap();
        assert_eq!(fs::metadata(&sub).unwrap().permissions().mode() & 0o777, DIR_MODE);
        let key = sub.join("x.key");
        write_atomic(&key, b"secret", KEY_MODE).unwrap();
        assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        write_atomic(&key, b"secret2", KEY_MODE).unwrap();
        assert_eq!(fs::read(&key).unwrap(), b"secret2");
        let names: Vec<_> = fs::read_dir(&sub).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.key")]);
        assert!(matches!(refuse_existing(&[&key], false), Err(Error::Exists { .. })));
        assert!(refuse_existing(&[&key], true).is_ok());
    }
}
