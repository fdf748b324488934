//! Which processes a pane of a runtime may show, for drift detection.
//!
//! Many agent runtimes are Node or Python programs, so tmux's
//! `pane_current_command` shows the interpreter (`node`), not the runtime.
//! The mapping is data: the runtime's own name, this built-in table, and the
//! program of the roster's `runtimes.<name>.command`; or exactly the roster's
//! `runtimes.<name>.process_names` when given.

use crate::roster::Roster;

/// Built-in process names per runtime. A runtime not listed here matches its
/// own name (and its command's program) only.
pub const KNOWN_PROCESS_NAMES: &[(&str, &[&str])] = &[
    ("claude", &["claude", "node"]),
    ("codex", &["codex", "node"]),
    ("pi", &["pi", "node"]),
    ("opencode", &["opencode", "node", "bun"]),
    ("gemini", &["gemini", "node"]),
    ("aider", &["aider", "python", "python3"]),
    ("stub", &["fleet"]),
];

/// The process names a pane running `runtime` may show: the roster's
/// `process_names` if given; else the runtime's name, its built-in names, and
/// the program its `command` runs (see [`command_program`]).
pub fn process_names<'a>(roster: &'a Roster, runtime: &'a str) -> Vec<&'a str> {
    let spec = roster.runtime(runtime);
    if let Some(names) = spec.and_then(|r| r.process_names.as_ref()) {
        return names.iter().map(String::as_str).collect();
    }
    let mut names = vec![runtime];
    if let Some((_, known)) = KNOWN_PROCESS_NAMES.iter().find(|(name, _)| *name == runtime) {
        names.extend(known.iter().copied());
    }
    if let Some(program) = spec.and_then(|r| r.command.as_deref()).and_then(command_program) {
        names.push(program);
    }
    names.dedup();
    names
}

/// What resets a runtime's context between tasks when the roster's
/// `runtimes.<name>.reset_command` does not say.
pub const KNOWN_RESET_COMMANDS: &[(&str, &str)] = &[("claude", "/clear"), ("pi", "/new"), ("codex", "/new")];

/// The reset command of `runtime`: the roster's `reset_command`, else the
/// built-in one ([`KNOWN_RESET_COMMANDS`]); `None`: none is known.
pub fn reset_command<'a>(roster: &'a Roster, runtime: &'a str) -> Option<&'a str> {
    roster
        .runtime(runtime)
        .and_then(|r| r.reset_command.as_deref())
        .filter(|c| !c.trim().is_empty())
        .or_else(|| KNOWN_RESET_COMMANDS.iter().find(|(r, _)| *r == runtime).map(|(_, c)| *c))
}

/// The file in an agent's working directory that its runtime reads as
/// standing instructions (where `fleet comms --write` puts the comms block).
pub fn context_file(runtime: &str) -> &'static str {
    match runtime {
        "claude" => "CLAUDE.md",
        "gemini" => "GEMINI.md",
        _ => "AGENTS.md",
    }
}

/// The basename of the program a command line runs: its first word, after an
/// optional `exec`/`env` and `NAME=value` assignments (`env FOO=1 /usr/bin/node
/// x.js` runs `node`). Quotes around the word are dropped; nothing else of
/// shell syntax is interpreted.
pub fn command_program(command: &str) -> Option<&str> {
    let mut words = command.split_whitespace().map(|w| w.trim_matches(['"', '\'']));
    let mut word = words.next()?;
    while word == "exec" || word == "env" || is_assignment(word) {
        word = words.next()?;
    }
    let base = word.rsplit('/').next().unwrap_or(word);
    (!base.is_empty()).then_some(base)
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
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
    fn the_command_program_is_a_process_name() {
        let r = Roster::parse(
            "runtimes:\n  claude: { command: \"sleep 1000\" }\n  mine: { command: \"env A=1 B_2='x' /opt/bin/my-agent --fast\" }\n  wrapped: { command: \"exec /usr/bin/node agent.js\", process_names: [agent] }\n  bare:\nagents: []\n",
        )
        .unwrap();
        assert!(!is_drift(&r, "claude", "sleep"), "runtimes.claude.command runs sleep");
        assert!(!is_drift(&r, "claude", "node"), "the built-in names stay");
        assert!(!is_drift(&r, "claude", "claude"));
        assert!(is_drift(&r, "claude", "bash"));
        assert!(!is_drift(&r, "mine", "my-agent"));
        assert!(!is_drift(&r, "mine", "mine"));
        assert!(is_drift(&r, "mine", "env"));
        assert!(is_drift(&r, "wrapped", "node"), "explicit process_names are exact");
        assert!(!is_drift(&r, "bare", "bare"));
        assert_eq!(command_program("  \"/a b/c\" x"), Some("a"), "quoting is not parsed, only stripped");
        assert_eq!(command_program("FOO=1"), None);
        assert_eq!(command_program("/usr/local/bin/"), None);
        assert_eq!(command_program("2x=y run"), Some("2x=y"));
    }

    #[test]
    fn reset_commands_from_the_roster_else_built_in() {
        let r = Roster::parse(
            "runtimes: { claude: { reset_command: /reset }, stub: { reset_command: /clear }, x: {} }\nagents: []\n",
        )
        .unwrap();
        assert_eq!(reset_command(&r, "claude"), Some("/reset"));
        assert_eq!(reset_command(&r, "stub"), Some("/clear"));
        assert_eq!(reset_command(&r, "pi"), Some("/new"));
        assert_eq!(reset_command(&r, "x"), None);
        assert_eq!((context_file("claude"), context_file("pi")), ("CLAUDE.md", "AGENTS.md"));
    }

    #[test]
    fn truncated_process_names_match() {
        let r = Roster::parse("agents: []\n").unwrap();
        assert!(!is_drift(&r, "averyveryverylongname", "averyveryverylo"));
    }
}
