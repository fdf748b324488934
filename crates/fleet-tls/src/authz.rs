//! Authorization: a pure function of the node's tenant, the caller's principal and the verb.
//!
//! | kind      | list | watch | peers | info | send | start | stop | attach | pair | invite | renew |
//! |-----------|------|-------|-------|------|------|-------|------|--------|------|--------|-------|
//! | viewer    | yes  | yes   | yes   | yes  | no   | no    | no   | no     | no   | no     | yes   |
//! | operator  | yes  | yes   | yes   | yes  | yes  | yes   | yes  | yes    | yes  | yes    | yes   |
//! | node      | yes  | yes   | yes   | yes  | yes  | yes   | yes  | yes    | yes  | yes    | yes   |
//!
//! `renew` only ever renews the caller's own certificate (the signer reads the principal
//! from the certificate the caller presents), so a viewer may renew as a viewer.
//!
//! and only when the principal's tenant is the node's tenant. Nothing else grants
//! anything: a certificate that chains to the mesh CA but names another tenant is denied.

use std::fmt;

use fleet_core::names::DnsLabel;

use crate::principal::{Kind, Principal};

/// What a request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verb {
    /// ListAgents.
    List,
    /// WatchHeartbeats, and the read-only terminal view (`fleet watch`).
    Watch,
    /// Mesh.ListPeers.
    Peers,
    /// Mesh.NodeInfo.
    Info,
    /// SendMessage.
    Send,
    /// StartAgent.
    Start,
    /// StopAgent.
    Stop,
    /// Interactive takeover of a pane (`fleet attach`).
    Attach,
    /// The web door's browser identities: pairing links, listing and revoking sessions.
    Pair,
    /// Join tokens (`fleet certs invite`); also the verb of a join's audit lines.
    Invite,
    /// Renewing the caller's own certificate (`Certs.Renew`).
    Renew,
}

impl Verb {
    pub const ALL: [Verb; 11] = [
        Verb::List,
        Verb::Watch,
        Verb::Peers,
        Verb::Info,
        Verb::Send,
        Verb::Start,
        Verb::Stop,
        Verb::Attach,
        Verb::Pair,
        Verb::Invite,
        Verb::Renew,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Peers => "peers",
            Verb::Info => "info",
            Verb::Send => "send",
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Attach => "attach",
            Verb::Pair => "pair",
            Verb::Invite => "invite",
            Verb::Renew => "renew",
        }
    }

    /// Reads: list, watch, peers, info. Everything else changes or controls an agent.
    pub fn is_read(self) -> bool {
        matches!(self, Verb::List | Verb::Watch | Verb::Peers | Verb::Info)
    }

    /// Whether an allowed request with this verb goes to the audit log (send, start, stop,
    /// attach, pair). Denied requests are audited whatever the verb.
    pub fn is_audited(self) -> bool {
        !self.is_read()
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request was denied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// The principal belongs to another tenant than the node.
    OtherTenant { node_tenant: DnsLabel },
    /// The principal's kind may not use the verb.
    Role,
}

/// A denied request: who, what, and why. Displayed as e.g.
/// `viewer:bob@acme may not send: a viewer may only list, watch, peers and info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    pub principal: Principal,
    pub verb: Verb,
    pub reason: DenyReason,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} may not {}: ", self.principal, self.verb)?;
        match &self.reason {
            DenyReason::OtherTenant { node_tenant } => {
                write!(f, "it belongs to tenant {}, and this node serves tenant {node_tenant}", self.principal.tenant)
            }
            // (A viewer may also renew its own certificate; the message names what it asked for.)
            DenyReason::Role => write!(f, "a {} may only list, watch, peers and info", self.principal.kind),
        }
    }
}

impl std::error::Error for Denied {}

/// Whether `kind` may use `verb` within its own tenant.
pub fn role_allows(kind: Kind, verb: Verb) -> bool {
    match kind {
        Kind::Viewer => verb.is_read() || verb == Verb::Renew,
        Kind::Operator | Kind::Node => true,
    }
}

/// Decide one request to a node of `node_tenant`.
pub fn authorize(node_tenant: &DnsLabel, principal: &Principal, verb: Verb) -> Result<(), Denied> {
    let deny = |reason| Err(Denied { principal: principal.clone(), verb, reason });
    if principal.tenant != *node_tenant {
        return deny(DenyReason::OtherTenant { node_tenant: node_tenant.clone() });
    }
    if !role_allows(principal.kind, verb) {
        return deny(DenyReason::Role);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Kind::*;
    use Verb::*;

    /// Every (kind, verb) cell within the node's own tenant, written out.
    const SAME_TENANT: [(Kind, Verb, bool); 33] = [
        (Viewer, List, true),
        (Viewer, Watch, true),
        (Viewer, Peers, true),
        (Viewer, Info, true),
        (Viewer, Send, false),
        (Viewer, Start, false),
        (Viewer, Stop, false),
        (Viewer, Attach, false),
        (Viewer, Pair, false),
        (Viewer, Invite, false),
        (Viewer, Renew, true),
        (Operator, List, true),
        (Operator, Watch, true),
        (Operator, Peers, true),
        (Operator, Info, true),
        (Operator, Send, true),
        (Operator, Start, true),
        (Operator, Stop, true),
        (Operator, Attach, true),
        (Operator, Pair, true),
        (Operator, Invite, true),
        (Operator, Renew, true),
        (Node, List, true),
        (Node, Watch, true),
        (Node, Peers, true),
        (Node, Info, true),
        (Node, Send, true),
        (Node, Start, true),
        (Node, Stop, true),
        (Node, Attach, true),
        (Node, Pair, true),
        (Node, Invite, true),
        (Node, Renew, true),
    ];

    fn label(s: &str) -> DnsLabel {
        DnsLabel::parse_as("tenant id", s).unwrap()
    }

    #[test]
    fn the_table_covers_every_kind_and_verb() {
        for kind in Kind::ALL {
            for verb in Verb::ALL {
                assert_eq!(SAME_TENANT.iter().filter(|(k, v, _)| *k == kind && *v == verb).count(), 1);
            }
        }
    }

    #[test]
    fn every_cell_same_and_other_tenant() {
        let node_tenant = label("acme");
        for (kind, verb, allowed) in SAME_TENANT {
            let same = Principal::new(label("acme"), kind, "x1").unwrap();
            let got = authorize(&node_tenant, &same, verb);
            assert_eq!(got.is_ok(), allowed, "{kind} {verb} same tenant: {got:?}");
            if let Err(d) = got {
                assert_eq!(d.reason, DenyReason::Role);
                let msg = d.to_string();
                assert!(msg.starts_with(&format!("{kind}:x1@acme may not {verb}: ")), "{msg}");
            }
            // Another tenant is denied in every cell, whatever the role would allow.
            let other = Principal::new(label("other"), kind, "x1").unwrap();
            let d = authorize(&node_tenant, &other, verb).unwrap_err();
            assert_eq!(d.reason, DenyReason::OtherTenant { node_tenant: node_tenant.clone() });
            let msg = d.to_string();
            assert!(msg.starts_with(&format!("{kind}:x1@other may not {verb}: ")), "{msg}");
            assert!(msg.contains("tenant other") && msg.contains("tenant acme"), "{msg}");
        }
    }

    #[test]
    fn tenant_comparison_is_case_insensitive() {
        let p = Principal::from_uri("fleet://ACME/viewer/v").unwrap();
        assert!(authorize(&label("Acme"), &p, List).is_ok());
    }

    #[test]
    fn audited_verbs() {
        let audited: Vec<_> = Verb::ALL.into_iter().filter(|v| v.is_audited()).collect();
        assert_eq!(audited, [Send, Start, Stop, Attach, Pair, Invite, Renew]);
    }
}
