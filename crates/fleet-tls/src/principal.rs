//! Who a peer is: a [`Principal`] (tenant, kind, name) read from the one `fleet://` URI SAN
//! of its certificate, and the DNS names a node certificate carries.

use std::fmt;
use std::str::FromStr;

use fleet_core::names::{DnsLabel, NameError, check_agent_chars};
use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

/// The URI scheme of mesh identities.
pub const SCHEME: &str = "fleet";
/// The DNS suffix of node names: `<host>.<tenant>.fleet.internal`.
pub const DNS_SUFFIX: &str = "fleet.internal";

/// The kind of a leaf certificate, and so the role of whoever presents it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A fleet node (one per host and tenant); may do what an operator may.
    Node,
    /// A person or program that may list, watch, send, start, stop and attach.
    Operator,
    /// A person or program that may only list and watch.
    Viewer,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Node, Kind::Operator, Kind::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Node => "node",
            Kind::Operator => "operator",
            Kind::Viewer => "viewer",
        }
    }

    /// What the name of this kind is called in messages.
    pub fn name_what(self) -> &'static str {
        match self {
            Kind::Node => "host name",
            Kind::Operator => "operator name",
            Kind::Viewer => "viewer name",
        }
    }

    /// Validate and normalize a name of this kind: node names are hosts and so DNS labels
    /// (lower-cased); operator and viewer names use the agent-name charset.
    pub fn check_name(self, name: &str) -> Result<String, NameError> {
        match self {
            Kind::Node => Ok(DnsLabel::parse_as(self.name_what(), name)?.as_str().to_string()),
            Kind::Operator | Kind::Viewer => {
                check_agent_chars(self.name_what(), name)?;
                Ok(name.to_string())
            }
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = PrincipalError;
    fn from_str(s: &str) -> Result<Self, PrincipalError> {
        match s {
            "node" => Ok(Kind::Node),
            "operator" => Ok(Kind::Operator),
            "viewer" => Ok(Kind::Viewer),
            other => Err(PrincipalError::UnknownKind { kind: other.to_string() }),
        }
    }
}

/// An authenticated identity: the tenant it belongs to, its kind, and its name (the host
/// for nodes). Displayed as `kind:name@tenant`, e.g. `operator:alice@acme`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Principal {
    pub tenant: DnsLabel,
    pub kind: Kind,
    pub name: String,
}

/// Why a certificate does not name a principal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalError {
    #[error("the peer presented no certificate")]
    NoCertificate,
    #[error("not an X.509 certificate: {0}")]
    Parse(String),
    #[error("the certificate has no fleet:// URI SAN (URI SANs: {})", list(.uris))]
    NoFleetUri { uris: Vec<String> },
    #[error("the certificate has {} fleet:// URI SANs, exactly one is allowed: {}", .uris.len(), list(.uris))]
    ManyFleetUris { uris: Vec<String> },
    #[error("URI SAN {uri:?} is not fleet://<tenant>/<kind>/<name>")]
    Malformed { uri: String },
    #[error("unknown kind {kind:?}: expected node, operator or viewer")]
    UnknownKind { kind: String },
    #[error("URI SAN {uri:?}")]
    BadName {
        uri: String,
        #[source]
        source: NameError,
    },
}

fn list(uris: &[String]) -> String {
    if uris.is_empty() { "none".to_string() } else { uris.join(", ") }
}

impl Principal {
    /// A principal from its parts, validating the name for its kind.
    pub fn new(tenant: DnsLabel, kind: Kind, name: &str) -> Result<Self, NameError> {
        Ok(Principal { tenant, kind, name: kind.check_name(name)? })
    }

    /// The URI SAN that names this principal: `fleet://<tenant>/<kind>/<name>`.
    pub fn uri(&self) -> String {
        format!("{SCHEME}://{}/{}/{}", self.tenant, self.kind, self.name)
    }

    /// For a node, its host name.
    pub fn host(&self) -> Option<&str> {
        (self.kind == Kind::Node).then_some(self.name.as_str())
    }

    /// Parse `fleet://<tenant>/<kind>/<name>`.
    pub fn from_uri(uri: &str) -> Result<Self, PrincipalError> {
        let malformed = || PrincipalError::Malformed { uri: uri.to_string() };
        let rest = strip_scheme(uri).ok_or_else(malformed)?;
        let mut parts = rest.split('/');
        let (Some(tenant), Some(kind), Some(name), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let bad = |source| PrincipalError::BadName { uri: uri.to_string(), source };
        let tenant = DnsLabel::parse_as("tenant id", tenant).map_err(bad)?;
        let kind: Kind = kind.parse()?;
        let name = kind.check_name(name).map_err(bad)?;
        Ok(Principal { tenant, kind, name })
    }

    /// The principal named by a DER certificate: exactly one `fleet://` URI SAN. Other URI
    /// SANs are ignored. The chain is not checked here: rustls has done that before a
    /// peer certificate reaches this function.
    pub fn from_der(der: &[u8]) -> Result<Self, PrincipalError> {
        let uris = uri_sans(der).map_err(PrincipalError::Parse)?;
        let fleet: Vec<String> = uris.iter().filter(|u| strip_scheme(u).is_some()).cloned().collect();
        match fleet.as_slice() {
            [] => Err(PrincipalError::NoFleetUri { uris }),
            [one] => Principal::from_uri(one),
            _ => Err(PrincipalError::ManyFleetUris { uris: fleet }),
        }
    }

    /// The principal of a TLS peer: its end-entity certificate is the first of the chain.
    pub fn from_peer_certs(certs: Option<&[CertificateDer<'_>]>) -> Result<Self, PrincipalError> {
        match certs.and_then(|c| c.first()) {
            Some(leaf) => Principal::from_der(leaf),
            None => Err(PrincipalError::NoCertificate),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}@{}", self.kind, self.name, self.tenant)
    }
}

/// `fleet://` (scheme compared case-insensitively) stripped, or None.
pub(crate) fn strip_scheme(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.split_once("://")?;
    scheme.eq_ignore_ascii_case(SCHEME).then_some(rest)
}

/// The CA's own URI SAN, `fleet://<tenant>/ca`, which records the tenant it serves.
pub fn ca_uri(tenant: &DnsLabel) -> String {
    format!("{SCHEME}://{tenant}/ca")
}

/// The tenant recorded in a CA certificate's `fleet://<tenant>/ca` URI SAN.
pub fn ca_tenant_from_der(der: &[u8]) -> Result<DnsLabel, PrincipalError> {
    let uris = uri_sans(der).map_err(PrincipalError::Parse)?;
    let fleet: Vec<&String> = uris.iter().filter(|u| strip_scheme(u).is_some()).collect();
    let [uri] = fleet.as_slice() else {
        return Err(if fleet.is_empty() {
            PrincipalError::NoFleetUri { uris: uris.clone() }
        } else {
            PrincipalError::ManyFleetUris { uris: fleet.into_iter().cloned().collect() }
        });
    };
    let rest = strip_scheme(uri).unwrap_or_default();
    match rest.split_once('/') {
        Some((tenant, "ca")) => DnsLabel::parse_as("tenant id", tenant)
            .map_err(|source| PrincipalError::BadName { uri: uri.to_string(), source }),
        _ => Err(PrincipalError::Malformed { uri: uri.to_string() }),
    }
}

/// The DNS name of one node: `<host>.<tenant>.fleet.internal`.
pub fn node_dns_name(tenant: &DnsLabel, host: &DnsLabel) -> String {
    format!("{host}.{tenant}.{DNS_SUFFIX}")
}

/// The DNS name every node of a tenant carries: `node.<tenant>.fleet.internal`.
pub fn any_node_dns_name(tenant: &DnsLabel) -> String {
    format!("node.{tenant}.{DNS_SUFFIX}")
}

/// All URI SANs of a DER certificate.
pub(crate) fn uri_sans(der: &[u8]) -> Result<Vec<String>, String> {
    Ok(sans(der)?.0)
}

/// (URI SANs, DNS SANs) of a DER certificate.
pub(crate) fn sans(der: &[u8]) -> Result<(Vec<String>, Vec<String>), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    if let Some(san) = cert.subject_alternative_name().map_err(|e| e.to_string())? {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) => uris.push(u.to_string()),
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                _ => {}
            }
        }
    }
    Ok((uris, dns))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> DnsLabel {
        DnsLabel::parse_as("tenant id", "acme").unwrap()
    }

    #[test]
    fn uri_round_trip_and_display() {
        for (kind, name) in [(Kind::Node, "dragon-lin"), (Kind::Operator, "alice"), (Kind::Viewer, "web_ui-1")] {
            let p = Principal::new(acme(), kind, name).unwrap();
            assert_eq!(Principal::from_uri(&p.uri()).unwrap(), p);
        }
        let p = Principal::from_uri("fleet://acme/operator/alice").unwrap();
        assert_eq!(p.to_string(), "operator:alice@acme");
        assert_eq!(p.host(), None);
        let n = Principal::from_uri("FLEET://Acme/node/Dragon-Lin").unwrap();
        assert_eq!(n.to_string(), "node:dragon-lin@acme");
        assert_eq!(n.host(), Some("dragon-lin"));
    }

    #[test]
    fn malformed_uris_are_refused_with_the_reason() {
        for bad in [
            "fleet://acme/operator",
            "fleet://acme/operator/alice/x",
            "fleet:/acme/operator/alice",
            "https://acme/operator/alice",
            "fleet://acme//alice",
        ] {
            let e = Principal::from_uri(bad).unwrap_err();
            assert!(matches!(e, PrincipalError::Malformed { .. } | PrincipalError::UnknownKind { .. }), "{bad}: {e:?}");
        }
        assert!(matches!(
            Principal::from_uri("fleet://acme/admin/alice"),
            Err(PrincipalError::UnknownKind { kind }) if kind == "admin"
        ));
        assert!(matches!(
            Principal::from_uri("fleet://ac_me/operator/alice"),
            Err(PrincipalError::BadName { source: NameError::BadChar { ch: '_', .. }, .. })
        ));
        assert!(matches!(
            Principal::from_uri("fleet://acme/operator/al.ice"),
            Err(PrincipalError::BadName { source: NameError::TmuxDot { .. }, .. })
        ));
        assert!(matches!(
            Principal::from_uri("fleet://acme/node/under_score"),
            Err(PrincipalError::BadName { source: NameError::BadChar { ch: '_', .. }, .. })
        ));
        assert!(matches!(Principal::from_peer_certs(None), Err(PrincipalError::NoCertificate)));
        assert!(matches!(Principal::from_der(b"not a cert"), Err(PrincipalError::Parse(_))));
    }

    #[test]
    fn names_are_checked_per_kind() {
        assert!(Principal::new(acme(), Kind::Node, "a_b").is_err());
        assert!(Principal::new(acme(), Kind::Operator, "a_b").is_ok());
        assert!(Principal::new(acme(), Kind::Viewer, "a b").is_err());
        assert!(Principal::new(acme(), Kind::Operator, "").is_err());
        assert_eq!(Principal::new(acme(), Kind::Node, "HOST1").unwrap().name, "host1");
    }

    /// A refused name says which name it is, per kind (`fleet certs issue` prints it).
    #[test]
    fn a_refused_name_says_which_name_it_is() {
        for (kind, what) in
            [(Kind::Node, "host name"), (Kind::Operator, "operator name"), (Kind::Viewer, "viewer name")]
        {
            assert_eq!(kind.name_what(), what);
            let e = Principal::new(acme(), kind, "a b").unwrap_err();
            assert!(e.to_string().starts_with(&format!("{what} \"a b\"")), "{e}");
        }
    }

    #[test]
    fn dns_names() {
        let host = DnsLabel::parse_as("host name", "h1").unwrap();
        assert_eq!(node_dns_name(&acme(), &host), "h1.acme.fleet.internal");
        assert_eq!(any_node_dns_name(&acme()), "node.acme.fleet.internal");
        assert_eq!(ca_uri(&acme()), "fleet://acme/ca");
    }
}
