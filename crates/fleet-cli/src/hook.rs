//! `fleet hook`: what a runtime's hooks run to record what its agent is
//! doing, in `<run_dir>/<agent>.state` (the format is
//! `fleet_core::activity::HookState`; docs/protocol.md "Hook state files").
//!
//! Three forms:
//! - `fleet hook STATE [--event NAME]`: STATE is working, waiting, idle or exited;
//! - `fleet hook --claude`: Claude Code's hook input (JSON) on stdin, mapped
//!   by [`claude_state`];
//! - `fleet hook --codex JSON`: the JSON argument Codex gives its `notify`
//!   program, mapped by [`codex_state`].
//!
//! A hook must never break the runtime that runs it (Claude Code blocks a
//! prompt on exit status 2, and shows a hook's stdout to the model on some
//! events): `fleet hook` prints nothing on stdout, and on any problem, a bad
//! argument included (see `main`), prints one line on stderr and exits 0.

use fleet_core::activity::{HookState, State, state_path};
use fleet_core::heartbeat::HeartbeatEnv;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

/// The longest stdin `--claude` reads (Claude's hook input is a few KiB).
const STDIN_MAX: u64 = 1 << 20;

const AFTER_HELP: &str = "\
A hook never breaks the runtime that runs it: `fleet hook` prints nothing on stdout and always \
exits 0. On any problem (no agent name, bad input, a run dir it cannot write, even a bad \
argument) it prints one line on stderr and writes nothing.

Mappings:
  --claude  UserPromptSubmit -> working; Stop -> idle; SessionEnd -> exited; Notification ->
            waiting for a permission prompt or a question (notification_type permission_prompt
            or elicitation_dialog, or a message that says permission is needed), idle when
            Claude is waiting for input (idle_prompt); anything else: nothing written.
  --codex   type agent-turn-complete -> idle; anything else: nothing written.

The file: <run_dir>/<agent>.state, run_dir = $MOSAIC_HEARTBEAT_RUN_DIR, else \
$MOSAIC_HOME/fleet/run; written atomically (temp file + rename). Install the hooks with \
`fleet install --hooks claude` or `fleet install --hooks codex`.";

#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct HookArgs {
    /// The state to record: working, waiting, idle or exited.
    #[arg(value_name = "STATE", required_unless_present_any = ["claude", "codex"], conflicts_with_all = ["claude", "codex"])]
    pub state: Option<String>,
    /// The event that fired, as `fleet explain` will name it (free text).
    #[arg(long, value_name = "NAME", requires = "state")]
    pub event: Option<String>,
    /// Read Claude Code's hook input (JSON) on stdin.
    #[arg(long, conflicts_with = "codex")]
    pub claude: bool,
    /// Codex's `notify` argument (JSON).
    #[arg(long, value_name = "JSON")]
    pub codex: Option<String>,
    /// The agent [default: $MOSAIC_AGENT_NAME].
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,
}

/// Run the hook. Never fails: problems are one line on stderr.
pub fn run(args: HookArgs) {
    // Not even a bug of ours may fail the runtime: a panic is one line too.
    std::panic::set_hook(Box::new(|info| complain(&format!("internal error: {info}"))));
    if let Ok(Err(e)) = std::panic::catch_unwind(|| record(args)) {
        complain(&e);
    }
}

/// One line on stderr, `fleet hook: ...`.
pub fn complain(msg: &str) {
    let line = msg.lines().next().unwrap_or("").trim();
    let _ = writeln!(std::io::stderr(), "fleet hook: {line} (nothing written)");
}

/// A clap error (several lines, with tips and usage) as one line.
pub fn one_line(clap_error: &str) -> String {
    let lines = clap_error.lines().map(str::trim).take_while(|l| !l.starts_with("Usage:"));
    let kept: Vec<&str> = lines.filter(|l| !l.is_empty() && !l.starts_with("tip:")).collect();
    kept.join(" ").trim_start_matches("error: ").to_string()
}

/// Is this command line (`argv`, the program first) a `fleet hook`? For
/// `main`, which must not fail a hook whose arguments do not parse. (`fleet`
/// has no options before the command but --help and --version.)
pub fn is_hook_invocation(argv: impl IntoIterator<Item = std::ffi::OsString>) -> bool {
    argv.into_iter().skip(1).find(|a| !a.to_string_lossy().starts_with('-')).is_some_and(|a| a == "hook")
}

fn record(args: HookArgs) -> Result<(), String> {
    let (state, event) = if args.claude {
        let input = read_stdin()?;
        match claude_state(&input)? {
            Some(x) => x,
            None => return Ok(()),
        }
    } else if let Some(json) = &args.codex {
        match codex_state(json)? {
            Some(x) => x,
            None => return Ok(()),
        }
    } else {
        let s = args.state.as_deref().unwrap_or("");
        let state = parse_state(s)?;
        (state, args.event.clone().unwrap_or_default())
    };
    let agent = agent_name(args.agent)?;
    let env = HeartbeatEnv::from_lookup(|k| std::env::var(k).ok());
    write_state(&env.run_dir(), &agent, state, &event, fleet_tmux::hbwriter::now_unix())
        .map(|_| ())
        .map_err(|e| format!("cannot write {}: {e}", state_path(&env.run_dir(), &agent).display()))
}

/// working, waiting, idle or exited.
pub fn parse_state(s: &str) -> Result<State, String> {
    match State::parse(s) {
        Some(State::Unknown) | None => Err(format!("unknown state {s:?}: expected working, waiting, idle or exited")),
        Some(st) => Ok(st),
    }
}

fn agent_name(flag: Option<String>) -> Result<String, String> {
    let (name, from) = match flag {
        Some(n) => (n, "--agent"),
        None => match std::env::var("MOSAIC_AGENT_NAME").ok().filter(|s| !s.is_empty()) {
            Some(n) => (n, "MOSAIC_AGENT_NAME"),
            None => return Err("no agent name: MOSAIC_AGENT_NAME is not set and no --agent was given".into()),
        },
    };
    // A name is a file name in the run dir: never a path.
    name.parse::<fleet_core::names::AgentName>().map_err(|e| format!("{from}: {e}"))?;
    Ok(name)
}

fn read_stdin() -> Result<String, String> {
    let stdin = std::io::stdin();
    if rustix::termios::isatty(&stdin) {
        return Err("--claude reads Claude Code's hook input (JSON) on stdin, and stdin is a terminal".into());
    }
    let mut text = String::new();
    stdin.lock().take(STDIN_MAX).read_to_string(&mut text).map_err(|e| format!("cannot read stdin: {e}"))?;
    Ok(text)
}

/// Claude Code's hook input (JSON) to a state and the event's name; `None`:
/// an event that says nothing about activity.
pub fn claude_state(input: &str) -> Result<Option<(State, String)>, String> {
    let v: serde_json::Value =
        serde_json::from_str(input).map_err(|e| format!("Claude Code's hook input is not JSON: {e}"))?;
    let Some(event) = v.get("hook_event_name").and_then(|e| e.as_str()) else {
        return Err("Claude Code's hook input has no hook_event_name".into());
    };
    let state = match event {
        "UserPromptSubmit" => State::Working,
        "Stop" => State::Idle,
        "SessionEnd" => State::Exited,
        "Notification" => {
            let kind = v.get("notification_type").and_then(|k| k.as_str()).unwrap_or("");
            let message = v.get("message").and_then(|m| m.as_str()).unwrap_or("").to_lowercase();
            match kind {
                "permission_prompt" | "elicitation_dialog" => State::Waiting,
                "idle_prompt" => State::Idle,
                // Older versions send no type: the message says it
                // ("Claude needs your permission to use Bash", "Claude is
                // waiting for your input").
                "" if message.contains("permission") => State::Waiting,
                "" if message.contains("waiting for your input") => State::Idle,
                _ => return Ok(None),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some((state, event.to_string())))
}

/// Codex's `notify` argument (JSON) to a state and the event's name; `None`:
/// a notification that says nothing about activity.
pub fn codex_state(json: &str) -> Result<Option<(State, String)>, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("Codex's notify argument is not JSON: {e}"))?;
    let Some(kind) = v.get("type").and_then(|t| t.as_str()) else {
        return Err("Codex's notify argument has no `type`".into());
    };
    Ok((kind == "agent-turn-complete").then(|| (State::Idle, kind.to_string())))
}

/// Write `<run_dir>/<agent>.state` atomically (a temp file in the run dir,
/// renamed over the file), creating the run dir if needed. Returns its path.
pub fn write_state(run_dir: &Path, agent: &str, state: State, event: &str, now_unix: i64) -> std::io::Result<PathBuf> {
    let path = state_path(run_dir, agent);
    let text = HookState { unix: now_unix, state, event: event.to_string() }.render();
    std::fs::create_dir_all(run_dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".state-").tempfile_in(run_dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.persist(&path).map_err(|e| e.error)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claude(json: &str) -> Option<(State, String)> {
        claude_state(json).unwrap()
    }

    #[test]
    fn claude_events_map_to_states() {
        assert_eq!(
            claude(r#"{"hook_event_name":"UserPromptSubmit","prompt":"hi"}"#),
            Some((State::Working, "UserPromptSubmit".into()))
        );
        assert_eq!(
            claude(r#"{"hook_event_name":"Stop","stop_hook_active":false}"#),
            Some((State::Idle, "Stop".into()))
        );
        assert_eq!(
            claude(r#"{"hook_event_name":"SessionEnd","reason":"exit"}"#),
            Some((State::Exited, "SessionEnd".into()))
        );
        for other in ["PreToolUse", "PostToolUse", "SessionStart", "SubagentStop", "PreCompact"] {
            assert_eq!(claude(&format!(r#"{{"hook_event_name":"{other}"}}"#)), None, "{other}");
        }
    }

    #[test]
    fn claude_notifications_by_type_or_by_message() {
        let n = |kind: &str, msg: &str| {
            let json =
                serde_json::json!({"hook_event_name": "Notification", "notification_type": kind, "message": msg});
            let json = if kind.is_empty() {
                serde_json::json!({"hook_event_name": "Notification", "message": msg})
            } else {
                json
            };
            claude(&json.to_string()).map(|(s, _)| s)
        };
        assert_eq!(n("permission_prompt", "Claude needs your permission to use Bash"), Some(State::Waiting));
        assert_eq!(n("elicitation_dialog", "a question"), Some(State::Waiting));
        assert_eq!(n("idle_prompt", "Claude is waiting for your input"), Some(State::Idle));
        assert_eq!(n("auth_success", "Logged in"), None);
        // Without notification_type (older versions): the message decides.
        assert_eq!(n("", "Claude needs your permission to use Bash"), Some(State::Waiting));
        assert_eq!(n("", "Claude is waiting for your input"), Some(State::Idle));
        assert_eq!(n("", "Task completed"), None);
    }

    #[test]
    fn bad_claude_input_is_an_error_that_says_what() {
        assert!(claude_state("not json").unwrap_err().contains("not JSON"));
        assert!(claude_state("{}").unwrap_err().contains("no hook_event_name"));
        assert!(claude_state(r#"{"hook_event_name":7}"#).unwrap_err().contains("no hook_event_name"));
    }

    #[test]
    fn codex_turn_complete_is_idle_and_the_rest_is_nothing() {
        let done = r#"{"type":"agent-turn-complete","thread-id":"t","turn-id":"1","input-messages":["hi"],"last-assistant-message":"ok"}"#;
        assert_eq!(codex_state(done).unwrap(), Some((State::Idle, "agent-turn-complete".into())));
        assert_eq!(codex_state(r#"{"type":"approval-requested"}"#).unwrap(), None);
        assert!(codex_state("{").unwrap_err().contains("not JSON"));
        assert!(codex_state("[]").unwrap_err().contains("no `type`"));
    }

    #[test]
    fn states_parse_and_unknown_is_refused() {
        for s in ["working", "waiting", "idle", "exited"] {
            assert_eq!(parse_state(s).unwrap().as_str(), s);
        }
        assert!(parse_state("unknown").unwrap_err().contains("expected working, waiting, idle or exited"));
        assert!(parse_state("busy").is_err());
    }

    #[test]
    fn the_state_file_is_written_atomically_and_parses_back() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("not/yet");
        let path = write_state(&run, "a1", State::Waiting, "Notification", 1_800_000_000).unwrap();
        assert_eq!(path, run.join("a1.state"));
        let h = HookState::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!((h.unix, h.state, h.event.as_str()), (1_800_000_000, State::Waiting, "Notification"));
        write_state(&run, "a1", State::Idle, "", 1_800_000_001).unwrap();
        assert_eq!(HookState::parse(&std::fs::read_to_string(&path).unwrap()).unwrap().state, State::Idle);
        assert_eq!(std::fs::read_dir(&run).unwrap().count(), 1, "no temp file left");
    }

    #[test]
    fn a_clap_error_becomes_one_line() {
        let e = "error: the following required arguments were not provided:\n  <STATE>\n\nUsage: fleet hook <STATE>\n\nFor more information, try '--help'.\n";
        assert_eq!(one_line(e), "the following required arguments were not provided: <STATE>");
        let e = "error: unexpected argument '--bogus' found\n\n  tip: to pass '--bogus' as a value, use '-- --bogus'\n\nUsage: fleet hook\n";
        assert_eq!(one_line(e), "unexpected argument '--bogus' found");
    }

    #[test]
    fn only_a_hook_command_line_is_a_hook_invocation() {
        let is = |args: &[&str]| is_hook_invocation(args.iter().map(std::ffi::OsString::from));
        assert!(is(&["fleet", "hook", "--bogus"]));
        assert!(is(&["/usr/bin/fleet", "hook", "idle"]));
        assert!(!is(&["fleet", "send", "hook", "--bogus"]));
        assert!(!is(&["fleet"]));
    }
}
