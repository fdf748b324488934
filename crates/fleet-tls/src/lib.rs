//! Mesh identity for fleet mesh: who a peer is, and what it may do.
//!
//! One mesh CA per tenant signs leaf certificates whose URI SAN
//! `fleet://<tenant>/<kind>/<name>` names a [`Principal`]. Nodes also carry the DNS SANs
//! `<host>.<tenant>.fleet.internal` and `node.<tenant>.fleet.internal`, which clients use
//! as the TLS server name whatever address they dialed. Both sides of every connection
//! verify the chain to the mesh CA; then [`authz::authorize`] decides each request. A
//! certificate that merely chains to the CA grants nothing by itself.
//!
//! - [`layout`]: the on-disk layout of a certs dir (`ca.pem`, `ca.key`, `node.pem`, ...).
//! - [`issue`]: the mesh CA and leaf issuance (`fleet certs init` / `fleet certs issue`).
//! - [`show`]: what a certificate says (`fleet certs show`), fingerprints.
//! - [`revoke`]: the mesh CA's revocation list (`fleet certs revoke`), read and checked.
//! - [`enroll`]: join tokens, CSRs, renewal times, pinning the CA of a token (`fleet join`).
//! - [`setup`]: the zero-setup first run of a node (a one-host mesh), the node's own identity.
//! - [`config`]: the ring crypto provider, rustls server and client configs, server names.
//! - [`net`]: accepting and dialing mutual-TLS connections over TCP (tokio-rustls).
//! - [`principal`]: [`Kind`] and [`Principal`], parsed from a peer certificate.
//! - [`authz`]: the authorization rules, a pure function.
//! - [`audit`]: the JSON-lines audit log.

#![forbid(unsafe_code)]

pub mod audit;
pub mod authz;
pub mod config;
pub mod enroll;
pub mod issue;
pub mod layout;
pub mod net;
pub mod principal;
pub mod revoke;
pub mod setup;
pub mod show;

use std::io;
use std::path::PathBuf;

pub use authz::{Denied, Verb, authorize};
pub use config::{Identity, install_crypto_provider};
pub use fleet_core::names::{DnsLabel, NameError};
pub use layout::CertsDir;
pub use principal::{Kind, Principal, PrincipalError};

/// What went wrong while making, reading or using mesh certificates.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tenant, host, operator or viewer name was refused; nothing was written.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A file would be overwritten without `force`.
    #[error("{} already exists", path.display())]
    Exists { path: PathBuf },
    /// A certs dir without a mesh CA certificate.
    #[error("no mesh CA certificate at {}: create a mesh with `fleet certs init --tenant T`", path.display())]
    NoCa { path: PathBuf },
    /// A certs dir with the CA certificate but not its key (any host but the CA's).
    #[error(
        "no mesh CA key at {}: certificates are issued on the host that holds the CA key \
         (`fleet certs issue ... --out DIR` there, then copy DIR here)",
        path.display()
    )]
    NoCaKey { path: PathBuf },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file that is not what it should be (bad PEM, not a certificate, wrong CA, ...).
    #[error("{}: {detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
    /// A certificate whose `fleet://` URI SAN does not name a principal.
    #[error("{}", path.display())]
    Principal {
        path: PathBuf,
        #[source]
        source: PrincipalError,
    },
    /// Requested validity that cannot be issued (0 days, beyond the CA's expiry, ...).
    #[error("{0}")]
    Validity(String),
    /// The identity on disk is not the one asked for (tenant or host differ).
    #[error("{}", .0)]
    Mismatch(String),
    #[error("certificate generation failed")]
    Rcgen(#[from] rcgen::Error),
    #[error("TLS configuration")]
    Tls(#[from] rustls::Error),
    #[error("TLS client certificate verifier")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

impl Error {
    /// True when the input was wrong (the CLI exits 2): a bad name, a refused overwrite,
    /// a missing CA, a file that is not a usable certificate, a mismatch, bad validity.
    /// False for I/O and internal failures (exit 1).
    pub fn is_usage(&self) -> bool {
        match self {
            Error::Name(_)
            | Error::Exists { .. }
            | Error::NoCa { .. }
            | Error::NoCaKey { .. }
            | Error::Invalid { .. }
            | Error::Principal { .. }
            | Error::Validity(_)
            | Error::Mismatch(_) => true,
            Error::Read { source, .. } => source.kind() == io::ErrorKind::NotFound,
            Error::Write { .. } | Error::Rcgen(_) | Error::Tls(_) | Error::Verifier(_) => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
