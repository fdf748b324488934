//! Names that reach tmux, DNS or the wire: agent names and DNS labels.

use std::fmt;
use std::str::FromStr;

/// Why a name was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} {name:?} is longer than {max} characters")]
    TooLong { what: &'static str, name: String, max: usize },
    #[error("{what} {name:?} contains {ch:?}; allowed: {allowed}")]
    BadChar { what: &'static str, name: String, ch: char, allowed: &'static str },
    #[error("{what} {name:?} contains '.', which tmux turns into '_' (the session would be {tmux:?}); use '_' or '-'")]
    TmuxDot { what: &'static str, name: String, tmux: String },
    #[error("{what} {name:?} may not start or end with '-'")]
    EdgeHyphen { what: &'static str, name: String },
}

const AGENT_CHARS: &str = "letters, digits, '_', '-'";
const LABEL_CHARS: &str = "letters, digits, '-'";

/// An agent name: the exact tmux session name, `^[A-Za-z0-9_.-]+$` minus '.'.
///
/// The roster contract allows '.', but tmux silently rewrites '.' (and ':') in
/// session names to '_', so such an agent could never be addressed exactly.
/// We refuse it with a message that says so.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct AgentName(String);

impl AgentName {
    pub const MAX_LEN: usize = 128;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AgentName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        check_agent_chars("agent name", s)?;
        Ok(AgentName(s.to_string()))
    }
}

impl fmt::Display for AgentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for AgentName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Check a name against the agent-name charset (also used for operator and
/// viewer names in certificates).
pub fn check_agent_chars(what: &'static str, s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty { what });
    }
    if s.chars().count() > AgentName::MAX_LEN {
        return Err(NameError::TooLong { what, name: s.into(), max: AgentName::MAX_LEN });
    }
    if let Some(ch) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))) {
        return Err(NameError::BadChar { what, name: s.into(), ch, allowed: AGENT_CHARS });
    }
    if s.contains('.') {
        return Err(NameError::TmuxDot { what, name: s.into(), tmux: s.replace('.', "_") });
    }
    Ok(())
}

/// A DNS label (RFC 1123): letters, digits and '-', 1-63 characters, not
/// starting or ending with '-'. Stored lower-case, so comparison is
/// case-insensitive. Tenant ids and host names are DNS labels because they
/// go into certificate DNS SANs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct DnsLabel(String);

impl DnsLabel {
    pub const MAX_LEN: usize = 63;

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parse, naming the kind of value in errors ("tenant id", "host name").
    pub fn parse_as(what: &'static str, s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty { what });
        }
        if s.len() > Self::MAX_LEN {
            return Err(NameError::TooLong { what, name: s.into(), max: Self::MAX_LEN });
        }
        if let Some(ch) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
            return Err(NameError::BadChar { what, name: s.into(), ch, allowed: LABEL_CHARS });
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err(NameError::EdgeHyphen { what, name: s.into() });
        }
        Ok(DnsLabel(s.to_ascii_lowercase()))
    }

    /// Turn an arbitrary string (a user name, a hostname) into a DNS label when
    /// that is possible without guessing: lower-case, '_' and '.' become '-'.
    pub fn sanitize(what: &'static str, s: &str) -> Result<Self, NameError> {
        let mapped: String = s.chars().map(|c| if c == '_' || c == '.' { '-' } else { c }).collect();
        Self::parse_as(what, mapped.trim_matches('-'))
    }
}

impl FromStr for DnsLabel {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Self::parse_as("DNS label", s)
    }
}

impl fmt::Display for DnsLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_names() {
        for ok in ["orchestrator", "coder0-0", "A_b-9"] {
            assert_eq!(ok.parse::<AgentName>().unwrap().as_str(), ok);
        }
        assert!(matches!("".parse::<AgentName>(), Err(NameError::Empty { .. })));
        assert!(matches!("a b".parse::<AgentName>(), Err(NameError::BadChar { ch: ' ', .. })));
        assert!(matches!("a:b".parse::<AgentName>(), Err(NameError::BadChar { ch: ':', .. })));
        let dot = "a.b".parse::<AgentName>().unwrap_err();
        assert!(dot.to_string().contains("\"a_b\""), "{dot}");
        assert!(matches!("x".repeat(129).parse::<AgentName>(), Err(NameError::TooLong { .. })));
    }

    #[test]
    fn dns_labels() {
        assert_eq!(DnsLabel::parse_as("host name", "W-Jarvis").unwrap().as_str(), "w-jarvis");
        assert_eq!(
            DnsLabel::parse_as("host name", "W-Jarvis").unwrap(),
            DnsLabel::parse_as("host name", "w-jarvis").unwrap()
        );
        assert!(DnsLabel::parse_as("tenant id", &"a".repeat(63)).is_ok());
        assert!(DnsLabel::parse_as("tenant id", &"a".repeat(64)).is_err());
        assert!(DnsLabel::parse_as("tenant id", "-a").is_err());
        assert!(DnsLabel::parse_as("tenant id", "a_b").is_err());
        let e = DnsLabel::parse_as("tenant id", "a.b").unwrap_err().to_string();
        assert!(e.starts_with("tenant id \"a.b\" contains '.'"), "{e}");
        assert_eq!(DnsLabel::sanitize("user", "Build_Bot").unwrap().as_str(), "build-bot");
    }
}

/// `known: a, b` for an error about `input` not being one of `candidates`,
/// with `; did you mean b?` when one is close: the same but for case, or an
/// edit or two away (one for inputs of three or four characters, none for
/// shorter ones: any one-letter name is one edit from any other).
pub fn known(input: &str, candidates: &[&str]) -> String {
    if candidates.is_empty() {
        return "known: none".into();
    }
    let list = candidates.join(", ");
    match closest(input, candidates) {
        Some(c) => format!("known: {list}; did you mean {c}?"),
        None => format!("known: {list}"),
    }
}

/// The candidate closest to `input`, if it is close enough to be a typo.
pub fn closest<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = match input.chars().count() {
        0..=2 => 0,
        3 | 4 => 1,
        _ => 2,
    };
    candidates
        .iter()
        .filter(|c| **c != input)
        .map(|c| (if c.eq_ignore_ascii_case(input) { 0 } else { edit_distance(input, c) }, *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance over characters, an adjacent swap counting as one edit
/// (`lba` is one edit from `lab`).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // d[i][j]: the distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod did_you_mean {
    use super::*;

    #[test]
    fn a_close_name_is_suggested_and_a_far_one_is_not() {
        let names = ["coder0-0", "coder0-1", "reviewer", "orch"];
        assert_eq!(known("reveiwer", &names), "known: coder0-0, coder0-1, reviewer, orch; did you mean reviewer?");
        assert_eq!(closest("coder0-2", &names), Some("coder0-0"), "the first of equals");
        assert_eq!(closest("Reviewer", &names), Some("reviewer"), "case");
        assert_eq!(closest("orc", &names), Some("orch"));
        assert_eq!(closest("ab", &["orch"]), None);
        assert_eq!(closest("b", &["a", "c"]), None, "one letter: no guess");
        assert_eq!(closest("A", &["a", "c"]), Some("a"), "but case still counts");
        assert_eq!(closest("orbs", &names), None, "two edits from orch, a short name");
        assert_eq!(closest("zzzzzzzz", &names), None);
        assert_eq!(closest("orch", &names), None, "itself is not a suggestion");
        assert_eq!(known("x", &[]), "known: none");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(edit_distance("ab", ""), 2);
        assert_eq!(edit_distance("été", "ete"), 2);
        assert_eq!(edit_distance("lba", "lab"), 1, "a swap is one edit");
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(closest("lba", &["lab"]), Some("lab"));
    }
}
