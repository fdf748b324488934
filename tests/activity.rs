//! Agent activity end to end: real nodes on loopback (mutual TLS,
//! certificates made in the test), real tmux, the stub agent; hook files
//! written as a runtime's hooks would write them.

#[path = "mesh_util.rs"]
mod mesh_util;

use mesh_util::{Mesh, wait_for};
use std::time::{Duration, Instant};

fn two() -> Mesh {
    let mut m = Mesh::new("acme");
    m.add_host("a", "  - { name: orch, runtime: stub, class: orchestrator }\n");
    m.add_host("c", "  - { name: coder, runtime: stub }\n  - { name: sh, runtime: shell }\n");
    m.start_agents(0);
    m.start_agents(1);
    m.start_node(1, "127.0.0.1:0", &[]);
    let peers = vec![m.addr(1)];
    m.start_node(0, "127.0.0.1:0", &peers);
    m
}

fn agent(m: &Mesh, name: &str) -> Option<serde_json::Value> {
    let (code, out, _) = m.at(0, &["ps", "--json", "--host", "c"]);
    if code != 0 {
        return None;
    }
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).ok()?;
    rows.into_iter().find(|r| r["name"] == name)
}

fn coder(m: &Mesh) -> Option<serde_json::Value> {
    agent(m, "coder")
}

/// Write coder's hook file on c as `fleet hook` does (temp file + rename).
fn hook(m: &Mesh, state: &str, event: &str) {
    let run = m.nodes[1].home.join("fleet/run");
    let ts = fleet_core::heartbeat::Timestamp::from_unix(fleet_tmux::hbwriter::now_unix()).to_rfc3339();
    let tmp = run.join(".coder.state.tmp");
    std::fs::write(&tmp, format!("ts={ts}\nstate={state}\nevent={event}\n")).unwrap();
    std::fs::rename(&tmp, run.join("coder.state")).unwrap();
}

/// The next activity change of coder@c on a's event stream, and when it came.
fn next_change(
    events: &std::sync::mpsc::Receiver<serde_json::Value>,
    within: Duration,
) -> (serde_json::Value, Instant) {
    let until = Instant::now() + within;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let e = events.recv_timeout(left).expect("an activity change of coder@c");
        if e["event"] == "activity_change" && e["agent"] == "coder" && e["host"] == "c" {
            return (e, Instant::now());
        }
    }
}

#[test]
fn hooks_and_the_screen_decide_and_changes_reach_another_host_as_events() {
    let mut m = two();
    // The stub at its prompt: idle, from the screen.
    wait_for("coder@c idle from its screen", Duration::from_secs(15), || {
        coder(&m).is_some_and(|r| r["activity"]["state"] == "idle" && r["activity"]["source"] == "screen")
    });
    let row = coder(&m).unwrap();
    assert_eq!(row["activity"]["detail"], "the screen shows its prompt", "{row}");
    assert!(row["activity"]["since_unix_ms"].as_i64().unwrap() > 0, "{row}");
    let (_, table, _) = m.at(0, &["ps", "--host", "c"]);
    assert!(table.lines().any(|l| l.starts_with("coder") && l.contains("idle") && l.contains("screen")), "{table}");

    let events = m.follow(0);
    std::thread::sleep(Duration::from_millis(500));
    // A hook says waiting (a permission prompt the screen rules do not know).
    let t0 = Instant::now();
    hook(&m, "waiting", "notification");
    let (e, at) = next_change(&events, Duration::from_secs(5));
    eprintln!("hook file -> activity_change on the other host: {} ms", at.duration_since(t0).as_millis());
    assert_eq!((e["from"].as_str(), e["activity"]["state"].as_str()), (Some("idle"), Some("waiting")), "{e}");
    assert_eq!(e["activity"]["source"], "hook", "{e}");
    assert_eq!(e["activity"]["detail"], "the notification hook said waiting", "{e}");
    assert!(at.duration_since(t0) < Duration::from_secs(1), "a hook reaches another host within 1 s");

    // A hook says working, and the turn is interrupted (no hook fires): the
    // idle prompt stays unchanged, so after the interrupt window it is idle.
    hook(&m, "working", "prompt_submitted");
    let (e, _) = next_change(&events, Duration::from_secs(5));
    assert_eq!((e["activity"]["state"].as_str(), e["activity"]["source"].as_str()), (Some("working"), Some("hook")));
    let (e, _) = next_change(&events, Duration::from_secs(fleet_core::activity::INTERRUPT_SECS as u64 + 10));
    assert_eq!((e["activity"]["state"].as_str(), e["activity"]["source"].as_str()), (Some("idle"), Some("screen")));
    assert!(e["activity"]["detail"].as_str().unwrap().contains("(interrupted?)"), "{e}");
    let row = coder(&m).unwrap();
    assert!(row["activity"]["hook"].as_str().unwrap().starts_with("working by prompt_submitted at "), "{row}");
    assert!(row["activity"]["screen"].as_str().unwrap().starts_with("its prompt (idle), unchanged for "), "{row}");
    let (code, out, err) = m.at(0, &["explain", "coder@c"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("coder@c: idle for ") && out.contains(", from the screen\n"), "{out}");
    assert!(out.contains("  hook file:  working by prompt_submitted at "), "{out}");
    assert!(out.contains("  screen:     its prompt (idle), unchanged for "), "{out}");
    assert!(out.contains("(interrupted?)"), "{out}");
    let (code, _, err) = m.at(0, &["explain", "nobody@c"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no agent nobody on c (known: coder, sh)"), "{err}");

    // The agent stops: exited, from the process.
    let (code, _, err) = m.at(0, &["stop", "coder@c"]);
    assert_eq!(code, 0, "{err}");
    let (e, _) = next_change(&events, Duration::from_secs(5));
    assert_eq!((e["activity"]["state"].as_str(), e["activity"]["source"].as_str()), (Some("exited"), Some("process")));
}

/// `fleet send --when-idle` waits out a turn in progress (the stub's
/// `/work`), types after it, and says how long it waited; a wait that runs
/// out types nothing (`busy`); an agent whose activity cannot be known is
/// refused at once.
#[test]
fn when_idle_waits_for_the_turn_to_end_and_never_types_into_it() {
    let m = two();
    wait_for("coder@c idle", Duration::from_secs(15), || coder(&m).is_some_and(|r| r["activity"]["state"] == "idle"));
    m.tmux(1, &["send-keys", "-t", "=coder:", "/work 5", "Enter"]);
    wait_for("coder@c working", Duration::from_secs(5), || {
        coder(&m).is_some_and(|r| r["activity"]["state"] == "working" && r["activity"]["source"] == "screen")
    });
    // Too short a wait: busy, exit 1, nothing typed.
    let (code, out, err) =
        m.at(0, &["send", "coder@c", "--from", "t", "-m", "too early", "--when-idle", "--wait-timeout", "1"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.starts_with("busy: coder@c (coder was not idle within 1 s: it is working (the screen shows its spinner)"),
        "{out}"
    );
    assert!(!m.capture(1, "coder").contains("too early"));
    // Long enough: typed after `done`, with the wait in the receipt.
    let (code, out, err) =
        m.at(0, &["send", "coder@c", "--from", "t", "-m", "after the turn", "--when-idle", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["outcome"], "delivered", "{r}");
    assert!(r["waited_ms"].as_u64().unwrap() >= 1000, "{r}");
    wait_for("the text accepted", Duration::from_secs(5), || {
        m.capture(1, "coder").contains("accepted: [a:t -> c:coder] after the turn")
    });
    let screen = m.capture(1, "coder");
    let done = screen.find("done").expect("the turn ended");
    let typed = screen.find("after the turn").unwrap();
    assert!(done < typed, "typed only after the turn: {screen}");
    // No screen rules and no hooks: refused at once.
    let (code, out, err) = m.at(0, &["send", "sh@c", "--from", "t", "-m", "x", "--when-idle"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("failed: sh@c (--when-idle: its activity cannot be known"), "{out}");
}

#[path = "netns_util.rs"]
mod netns_util;

/// Across network-namespace hosts: a hook write on c, and a permission
/// prompt on c's screen, reach a `fleet heartbeats` stream on a as
/// activity changes: the hook within 1 s, the screen within a probe
/// interval (500 ms here) and 1 s.
#[test]
#[ignore = "needs root: network namespaces"]
fn activity_changes_on_one_namespace_host_reach_another_within_a_second() {
    use std::io::BufRead;
    let mut lab = netns_util::Lab::new("acme");
    let a = lab.add_host("a", "  - { name: orch, runtime: stub, class: orchestrator }\n");
    let c = lab.add_host("c", "  - { name: coder, runtime: stub }\n");
    lab.start_agents(a);
    lab.start_agents(c);
    lab.start_node(c, &[]);
    lab.start_node(a, &[c]);
    let fp = lab.footprint();
    netns_util::wait_for("coder@c idle in a's ps", Duration::from_secs(15), || {
        lab.ps_json(a).iter().any(|r| r["name"] == "coder" && r["host"] == "c" && r["activity"]["state"] == "idle")
    });
    let mut follow = lab.command_in(a, netns_util::FLEET);
    follow.args(["heartbeats", "--json"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
    let mut child = follow.spawn().unwrap();
    let out = child.stdout.take().unwrap();
    lab.adopt(child);
    let (tx, events) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && tx.send(v).is_err()
            {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_secs(1));

    // A hook on c (written as `fleet hook` writes it).
    let run = lab.hosts[c].home.join("fleet/run");
    let ts = fleet_core::heartbeat::Timestamp::from_unix(fleet_tmux::hbwriter::now_unix()).to_rfc3339();
    let t0 = Instant::now();
    std::fs::write(run.join(".coder.state.tmp"), format!("ts={ts}\nstate=working\nevent=UserPromptSubmit\n")).unwrap();
    std::fs::rename(run.join(".coder.state.tmp"), run.join("coder.state")).unwrap();
    let (e, at) = next_change(&events, Duration::from_secs(5));
    let hook_ms = at.duration_since(t0).as_millis();
    assert_eq!((e["activity"]["state"].as_str(), e["activity"]["source"].as_str()), (Some("working"), Some("hook")));

    // A permission prompt on c's screen: waiting, whatever the hook said.
    let t0 = Instant::now();
    lab.tmux(c, &["send-keys", "-t", "=coder:", "/ask", "Enter"]);
    let (e, at) = next_change(&events, Duration::from_secs(5));
    let screen_ms = at.duration_since(t0).as_millis();
    assert_eq!((e["activity"]["state"].as_str(), e["activity"]["source"].as_str()), (Some("waiting"), Some("screen")));
    eprintln!("c -> a activity_change: hook write {hook_ms} ms, permission prompt on screen {screen_ms} ms");
    assert!(hook_ms < 1000, "hook: {hook_ms} ms");
    assert!(screen_ms < 1000 + 500, "screen: {screen_ms} ms (within a probe interval and 1 s)");
    drop(lab);
    fp.assert_gone();
}
