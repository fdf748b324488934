//! Agent activity from the agent's side, with the real `fleet` binary: the
//! stub agent in a real tmux pane looks like a runtime (a spinner while it
//! works, a permission prompt, its prompt) and the shipped screen rules
//! (`framework/fleet/activity.yaml`) judge each screen; with `--hooks` it
//! writes the state files a runtime's hooks would, and none when Esc
//! interrupts a turn. `fleet hook` writes those files from each of its forms
//! and never fails; `fleet install --hooks` puts it into Claude Code's and
//! Codex's configuration.

mod util;

use fleet_core::activity::{HookState, ScreenRules, State};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use util::{FLEET, Host};

fn rules() -> ScreenRules {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../framework/fleet/activity.yaml");
    ScreenRules::parse(&std::fs::read_to_string(path).unwrap()).expect("the shipped rules parse")
}

/// What the `stub` rules say about the agent's pane now (screen and title).
fn judge(h: &Host, rules: &ScreenRules, name: &str) -> Option<State> {
    let screen: Vec<String> = h.capture(name).lines().map(String::from).collect();
    let title = h.tmux(&["display-message", "-p", "-t", &format!("={name}:"), "#{pane_title}"]).1;
    rules.judge("stub", &screen, title.trim_end()).map(|m| m.state)
}

fn wait_judged(h: &Host, rules: &ScreenRules, name: &str, want: State) {
    let start = Instant::now();
    while judge(h, rules, name) != Some(want) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{name}: the screen never judged {want}; it shows:\n{}",
            h.capture(name)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn keys(h: &Host, name: &str, keys: &[&str]) {
    let target = format!("={name}:");
    let mut args = vec!["send-keys", "-t", &target];
    args.extend_from_slice(keys);
    let (code, _, err) = h.tmux(&args);
    assert_eq!(code, 0, "send-keys {keys:?}: {err}");
}

fn type_line(h: &Host, name: &str, line: &str) {
    keys(h, name, &["-l", line]);
    keys(h, name, &["Enter"]);
}

fn state_file(h: &Host, name: &str) -> PathBuf {
    h.run_dir().join(format!("{name}.state"))
}

fn hook_state(h: &Host, name: &str) -> HookState {
    let path = state_file(h, name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    HookState::parse(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", path.display()))
}

#[test]
fn the_stub_looks_like_a_runtime_and_its_hooks_miss_only_esc() {
    let h = Host::new();
    h.roster(
        "runtimes:
  stub: { command: \"{fleet} stub-agent --hooks\", heartbeat: self }
  plain: { command: \"{fleet} stub-agent\", process_names: [fleet], heartbeat: self }
agents:
  - { name: hooked, runtime: stub, class: orchestrator }
  - { name: plain, runtime: plain }
",
    );
    let rules = rules();
    for name in ["hooked", "plain"] {
        let (code, out, err) = h.run(&["start", name, "--local"]);
        assert_eq!(code, 0, "start {name}: {out}{err}");
    }
    wait_judged(&h, &rules, "hooked", State::Idle);
    assert!(!state_file(&h, "hooked").exists(), "no hook has fired yet");

    // A turn that ends by itself: working (redrawn spinner), then idle.
    type_line(&h, "hooked", "/work 2");
    wait_judged(&h, &rules, "hooked", State::Working);
    let hs = hook_state(&h, "hooked");
    assert_eq!((hs.state, hs.event.as_str()), (State::Working, "prompt_submitted"));
    let mut spinners = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let screen = h.capture("hooked");
        let line = screen.lines().rfind(|l| l.contains("(esc to interrupt)")).map(String::from);
        spinners.extend(line);
        std::thread::sleep(Duration::from_millis(70));
    }
    assert!(spinners.len() >= 2, "the spinner is redrawn: {spinners:?}");
    assert!(spinners.iter().all(|l| l.contains(" working ") && l.ends_with("s (esc to interrupt)")), "{spinners:?}");
    wait_judged(&h, &rules, "hooked", State::Idle);
    assert!(h.capture("hooked").contains("\ndone\n"), "{}", h.capture("hooked"));
    let hs = hook_state(&h, "hooked");
    assert_eq!((hs.state, hs.event.as_str()), (State::Idle, "turn_done"));

    // A turn interrupted by Esc: the screen goes idle, the hook file is not touched.
    type_line(&h, "hooked", "/work 60");
    wait_judged(&h, &rules, "hooked", State::Working);
    assert_eq!(hook_state(&h, "hooked").state, State::Working);
    let before = std::fs::metadata(state_file(&h, "hooked")).unwrap();
    let text_before = std::fs::read_to_string(state_file(&h, "hooked")).unwrap();
    keys(&h, "hooked", &["Escape"]);
    wait_judged(&h, &rules, "hooked", State::Idle);
    assert!(h.capture("hooked").contains("\ninterrupted\n"), "{}", h.capture("hooked"));
    std::thread::sleep(Duration::from_millis(300));
    let after = std::fs::metadata(state_file(&h, "hooked")).unwrap();
    assert_eq!((after.ino(), after.mtime_nsec()), (before.ino(), before.mtime_nsec()), "Esc fires no hook");
    assert_eq!(std::fs::read_to_string(state_file(&h, "hooked")).unwrap(), text_before);
    assert_eq!(hook_state(&h, "hooked").state, State::Working, "the hook still says working: the blind spot");

    // A permission prompt: waiting until answered, then idle.
    type_line(&h, "hooked", "/ask");
    wait_judged(&h, &rules, "hooked", State::Waiting);
    let hs = hook_state(&h, "hooked");
    assert_eq!((hs.state, hs.event.as_str()), (State::Waiting, "permission_prompt"));
    let last = h.capture("hooked").lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").to_string();
    assert_eq!(last.trim_end(), "Allow this action? [y/n]", "the prompt is the last line");
    keys(&h, "hooked", &["x"]);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(judge(&h, &rules, "hooked"), Some(State::Waiting), "only y or n answers");
    keys(&h, "hooked", &["y"]);
    wait_judged(&h, &rules, "hooked", State::Idle);
    assert!(h.capture("hooked").contains("\nallowed\n"), "{}", h.capture("hooked"));
    let hs = hook_state(&h, "hooked");
    assert_eq!((hs.state, hs.event.as_str()), (State::Idle, "permission_answered"));

    // Without --hooks: the same screens, no state file; keys typed during a
    // turn wait for the prompt; `n` denies.
    wait_judged(&h, &rules, "plain", State::Idle);
    type_line(&h, "plain", "/work 1.5");
    wait_judged(&h, &rules, "plain", State::Working);
    type_line(&h, "plain", "queued");
    wait_judged(&h, &rules, "plain", State::Idle);
    h.wait_for("the queued line", Duration::from_secs(5), || h.capture("plain").contains("accepted: queued"));
    type_line(&h, "plain", "/ask");
    wait_judged(&h, &rules, "plain", State::Waiting);
    keys(&h, "plain", &["n"]);
    wait_judged(&h, &rules, "plain", State::Idle);
    assert!(h.capture("plain").contains("\ndenied\n"), "{}", h.capture("plain"));
    assert!(!state_file(&h, "plain").exists(), "no --hooks, no state file");

    // /exit: the hooked stub says exited, as a SessionEnd hook would.
    type_line(&h, "hooked", "/exit");
    h.wait_for("exited", Duration::from_secs(5), || hook_state(&h, "hooked").state == State::Exited);
}

/// `fleet hook ...` with MOSAIC_AGENT_NAME=a1 and `input` on stdin.
fn hook(h: &Host, args: &[&str], input: &str) -> (i32, String, String) {
    let mut all = vec!["hook"];
    all.extend_from_slice(args);
    h.run_stdin(&all, input.as_bytes())
}

#[test]
fn fleet_hook_writes_each_form_and_never_fails_its_runtime() {
    let mut h = Host::new();
    let file = h.run_dir().join("a1.state");
    let said = |want: State, event: &str| {
        let hs = HookState::parse(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!((hs.state, hs.event.as_str()), (want, event));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        assert!((now - hs.unix).abs() <= 5, "ts is now: {}", hs.unix);
    };

    // No agent name (a runtime outside the fleet): one line, exit 0, nothing written.
    let (code, out, err) = hook(&h, &["working"], "");
    assert_eq!((code, out.as_str()), (0, ""));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("fleet hook: no agent name: MOSAIC_AGENT_NAME is not set"), "{err}");
    assert!(!h.run_dir().exists());

    h.set_env("MOSAIC_AGENT_NAME", "a1");
    let (code, out, err) = hook(&h, &["working", "--event", "by hand"], "");
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    said(State::Working, "by hand");

    let claude = |json: &str| hook(&h, &["--claude"], json);
    let (code, out, err) = claude(r#"{"session_id":"s","hook_event_name":"Stop","stop_hook_active":false}"#);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""), "nothing on stdout: Claude would show it");
    said(State::Idle, "Stop");
    claude(
        r#"{"hook_event_name":"Notification","message":"Claude needs your permission to use Bash","notification_type":"permission_prompt"}"#,
    );
    said(State::Waiting, "Notification");
    claude(r#"{"hook_event_name":"UserPromptSubmit","prompt":"go"}"#);
    said(State::Working, "UserPromptSubmit");
    // An event that says nothing: nothing written, nothing said.
    let (code, _, err) = claude(r#"{"hook_event_name":"PreToolUse","tool_name":"Bash"}"#);
    assert_eq!((code, err.as_str()), (0, ""));
    said(State::Working, "UserPromptSubmit");
    claude(r#"{"hook_event_name":"SessionEnd","reason":"exit"}"#);
    said(State::Exited, "SessionEnd");

    let (code, _, err) = hook(&h, &["--codex", r#"{"type":"agent-turn-complete","turn-id":"1"}"#], "");
    assert_eq!((code, err.as_str()), (0, ""));
    said(State::Idle, "agent-turn-complete");

    // Every problem: exit 0, one line on stderr, nothing on stdout, the file as it was.
    let before = std::fs::read_to_string(&file).unwrap();
    for (args, input, says) in [
        (&["--claude"][..], "not json", "not JSON"),
        (&["--claude"][..], "{}", "no hook_event_name"),
        (&["--codex", "{"][..], "", "not JSON"),
        (&["busy"][..], "", "unknown state \"busy\""),
        (&["unknown"][..], "", "unknown state"),
        (&["--bogus"][..], "", "--bogus"),
        (&[][..], "", "required arguments were not provided: <STATE>"),
        (&["idle", "--agent", "../escape"][..], "", "--agent"),
        (&["--claude", "--codex", "{}"][..], "", "cannot be used with"),
    ] {
        let (code, out, err) = hook(&h, args, input);
        assert_eq!((code, out.as_str()), (0, ""), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(err.starts_with("fleet hook: ") && err.contains(says), "{args:?}: {err}");
        assert!(err.trim_end().ends_with("(nothing written)"), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    assert!(!h.root().join("escape.state").exists());
    let names: Vec<_> = std::fs::read_dir(h.run_dir()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["a1.state"], "no temp files");

    // A run dir that cannot be made: still exit 0.
    let blocker = h.root().join("blocker");
    std::fs::write(&blocker, "").unwrap();
    h.set_env("MOSAIC_HEARTBEAT_RUN_DIR", &blocker.join("run").display().to_string());
    let (code, _, err) = hook(&h, &["idle"], "");
    assert_eq!(code, 0);
    assert!(err.starts_with(&format!("fleet hook: cannot write {}", blocker.join("run/a1.state").display())), "{err}");

    // MOSAIC_HEARTBEAT_RUN_DIR is where heartbeats go, and so state files.
    let other = h.root().join("elsewhere");
    h.set_env("MOSAIC_HEARTBEAT_RUN_DIR", &other.display().to_string());
    assert_eq!(hook(&h, &["waiting"], "").0, 0);
    assert_eq!(
        HookState::parse(&std::fs::read_to_string(other.join("a1.state")).unwrap()).unwrap().state,
        State::Waiting
    );

    // The help says it never fails; unlike errors, help is not swallowed.
    let (code, out, _) = h.run(&["hook", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("always exits 0") && out.contains("--claude") && out.contains("--codex"), "{out}");
}

#[test]
fn install_hooks_puts_fleet_hook_into_claude_and_codex_configs() {
    let mut h = Host::new();
    // The harness's HOME is the host's root.
    let settings = h.root().join(".claude/settings.json");
    let codex = h.root().join(".codex/config.toml");

    let (code, out, err) = h.run(&["install", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("`fleet install --hooks claude`") && out.contains("`fleet install --hooks codex`"), "{out}");

    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    std::fs::write(&settings, "{\n  \"theme\": \"dark\",\n  \"hooks\": { \"Stop\": [ { \"hooks\": [ { \"type\": \"command\", \"command\": \"say done\" } ] } ] }\n}\n").unwrap();
    let original = std::fs::read_to_string(&settings).unwrap();
    let (code, out, err) = h.run(&["install", "--hooks", "claude", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("{FLEET} hook --claude")) && out.contains("dry run"), "{out}");
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), original, "a dry run writes nothing");

    let (code, out, err) = h.run(&["install", "--hooks", "claude"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("updated {}", settings.display())), "{out}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&settings).unwrap()).unwrap();
    assert_eq!(v["theme"], "dark");
    let command = format!("{FLEET} hook --claude");
    for event in ["UserPromptSubmit", "Stop", "Notification", "SessionEnd"] {
        let commands: Vec<&str> = v["hooks"][event]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|e| e["hooks"].as_array().unwrap())
            .map(|c| c["command"].as_str().unwrap())
            .collect();
        let want: Vec<&str> = if event == "Stop" { vec!["say done", &command] } else { vec![&command] };
        assert_eq!(commands, want, "{event}");
    }
    assert_eq!(std::fs::read_to_string(h.root().join(".claude/settings.json.fleet-bak")).unwrap(), original);
    let installed = std::fs::read_to_string(&settings).unwrap();
    let (code, out, _) = h.run(&["install", "--hooks", "claude"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("unchanged"), "{out}");
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), installed, "idempotent");

    // The installed command works as Claude Code runs it: through a shell, JSON on stdin.
    h.set_env("MOSAIC_AGENT_NAME", "a1");
    let mut sh = std::process::Command::new("sh");
    sh.args(["-c", &command]).stdin(std::process::Stdio::piped());
    h.envs(&mut sh);
    let mut child = sh.spawn().unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(br#"{"hook_event_name":"UserPromptSubmit"}"#).unwrap();
    assert!(child.wait().unwrap().success());
    let hs = HookState::parse(&std::fs::read_to_string(h.run_dir().join("a1.state")).unwrap()).unwrap();
    assert_eq!(hs.state, State::Working);

    // Broken JSON: refused, named, untouched.
    std::fs::write(&settings, "{ \"theme\": ").unwrap();
    let (code, _, err) = h.run(&["install", "--hooks", "claude"]);
    assert_eq!(code, 2);
    assert!(err.contains(&format!("{}: not valid JSON", settings.display())), "{err}");
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), "{ \"theme\": ");

    // Codex: the notify line, once; another notify is refused with what to change.
    let (code, out, err) = h.run(&["install", "--hooks", "codex"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("updated {}", codex.display())), "{out}");
    let line = format!("notify = [\"{FLEET}\", \"hook\", \"--codex\"]");
    assert!(std::fs::read_to_string(&codex).unwrap().lines().any(|l| l == line));
    let (code, out, _) = h.run(&["install", "--hooks", "codex"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("unchanged"), "{out}");
    std::fs::write(&codex, "notify = [\"notify-send\"]\n[tui]\n").unwrap();
    let (code, _, err) = h.run(&["install", "--hooks", "codex"]);
    assert_eq!(code, 2);
    assert!(err.contains(&format!("{}:1: `notify = [\"notify-send\"]` is already set", codex.display())), "{err}");
    assert!(err.contains(&format!("Replace it with `{line}`")), "{err}");
    assert_eq!(std::fs::read_to_string(&codex).unwrap(), "notify = [\"notify-send\"]\n[tui]\n");
}
