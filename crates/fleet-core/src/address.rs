//! Agent addresses: `agent` or `agent@host`, as operators already write them.

use crate::names::{AgentName, DnsLabel, NameError};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AgentAddr {
    pub agent: AgentName,
    /// `None`: this host.
    pub host: Option<DnsLabel>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("bad address {addr:?}: {source}")]
    Name {
        addr: String,
        #[source]
        source: NameError,
    },
    #[error("bad address {0:?}: expected AGENT or AGENT@HOST")]
    Shape(String),
}

impl FromStr for AgentAddr {
    type Err = AddrError;
    fn from_str(s: &str) -> Result<Self, AddrError> {
        let wrap = |source| AddrError::Name { addr: s.to_string(), source };
        let (agent, host) = match s.split_once('@') {
            None => (s, None),
            Some((a, h)) if !h.contains('@') => (a, Some(h)),
            Some(_) => return Err(AddrError::Shape(s.to_string())),
        };
        Ok(AgentAddr {
            agent: agent.parse().map_err(wrap)?,
            host: host.map(|h| DnsLabel::parse_as("host name", h)).transpose().map_err(wrap)?,
        })
    }
}

impl fmt::Display for AgentAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Some(h) => write!(f, "{}@{h}", self.agent),
            None => write!(f, "{}", self.agent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for s in ["coder0-0@dragon-lin", "orchestrator"] {
            assert_eq!(s.parse::<AgentAddr>().unwrap().to_string(), s);
        }
        let a: AgentAddr = "x@Dragon-Lin".parse().unwrap();
        assert_eq!(a.host.unwrap().as_str(), "dragon-lin");
        assert!(matches!("a@b@c".parse::<AgentAddr>(), Err(AddrError::Shape(_))));
        let e = "a@bad_host".parse::<AgentAddr>().unwrap_err().to_string();
        assert!(e.starts_with("bad address \"a@bad_host\": host name"), "{e}");
        assert!("@h".parse::<AgentAddr>().is_err());
        assert!("a@".parse::<AgentAddr>().is_err());
    }
}
