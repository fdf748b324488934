//! Which processes a pane of a runtime may show, for drift detection.
//!
//! Many agent runtimes are Node or Python programs, so tmux's
//! `pane_current_command` shows the interpreter (`node`), not the runtime.
//! The mapping is data: this built-in table, overridden per runtime by the
//! roster's `runtimes.<name>.process_names`.

use crate::roster::Roster;

/// Built-in process names per runtime. A runtime not listed here matches its
/// own name only.
pub const KNOWN_PROCESS_NAMES: &[(&str, &[&str])] = &[
    ("claude", &["claude", "node"]),
    ("codex", &["codex", "node"]),
    ("pi", &["pi", "node"]),
    ("opencode", &["opencode", "node", "bun"]),
    ("gemini", &["gemini", "node"]),
    ("aider", &["aider", "python", "python3"]),
    ("stub", &["fleet"]),
];

/// The process names a pane running `runtime` may show.
pub fn process_names<'a>(roster: &'a Roster, runtime: &'a str) -> Vec<&'a str> {
    if let Some(names) = roster.runtime(runtime).and_then(|r| r.process_names.as_ref()) {
        return names.iter().map(String::as_str).collect();
    }
    KNOWN_PROCESS_NAMES
        .iter()
        .find(|(name, _)| *name == runtime)
        .map(|(_, names)| names.to_vec())
        .unwrap_or_else(|| vec![runtime])
}

/// Drift: the pane runs something other than its runtime. An empty current
/// command (a dead or missing pane) is not drift; that shows as the pane state.
pub fn is_drift(roster: &Roster, runtime: &str, current_command: &str) -> bool {
    if current_command.is_empty() {
        return false;
    }
    // tmux reports the process name, which Linux truncates to 15 bytes.
    let matches =
        |name: &str| name == current_command || (current_command.len() == 15 && name.starts_with(current_command));
    !process_names(roster, runtime).into_iter().any(matches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_and_roster_override() {
        let r = Roster::parse(
            "runtimes: { mine: { process_names: [python3] } }\nagents:\n  - { name: a, runtime: claude }\n",
        )
        .unwrap();
        assert!(!is_drift(&r, "claude", "claude"));
        assert!(!is_drift(&r, "claude", "node"));
        assert!(is_drift(&r, "claude", "bash"));
        assert!(!is_drift(&r, "mine", "python3"));
        assert!(is_drift(&r, "mine", "mine"));
        assert!(!is_drift(&r, "unlisted", "unlisted"));
        assert!(is_drift(&r, "unlisted", "zsh"));
        assert!(!is_drift(&r, "claude", ""));
    }

    #[test]
    fn truncated_process_names_match() {
        let r = Roster::parse("agents: []\n").unwrap();
        assert!(!is_drift(&r, "averyveryverylongname", "averyveryverylo"));
    }
}
