//! The fleet's own verbs across a loopback mesh of real nodes: `fleet add`
//! and `fleet remove` on another host (the roster rewritten, the guards, the
//! unit disabled), `fleet reset` typed and verified, `fleet verify`'s exit
//! codes, `fleet comms`' table and its update when a host joins.

mod mesh_util;

use mesh_util::{Mesh, signal, wait_for};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

fn roster_text(m: &Mesh, i: usize) -> String {
    std::fs::read_to_string(m.nodes[i].home.join("fleet/roster.yaml")).unwrap()
}

/// `fleet ps --json` (the mesh) as seen from host `i`: (name, host) of every agent row.
fn agents(m: &Mesh, i: usize, extra: &[&str]) -> Vec<(String, String)> {
    let mut args = vec!["ps", "--json"];
    args.extend_from_slice(extra);
    let (_, out, _) = m.at(i, &args);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap_or_default();
    rows.iter()
        .filter(|r| r["record"] == "agent" && r["managed"] != false)
        .map(|r| (r["name"].as_str().unwrap_or("").to_string(), r["host"].as_str().unwrap_or("").to_string()))
        .collect()
}

fn listed(m: &Mesh, i: usize, name: &str, host: &str) -> bool {
    agents(m, i, &[]).contains(&(name.to_string(), host.to_string()))
}

fn has_session(m: &Mesh, i: usize, name: &str) -> bool {
    m.tmux(i, &["list-sessions", "-F", "#{session_name}"]).lines().any(|l| l == name)
}

/// Two hosts: h1 with the orchestrator and the enhancer, h2 with a worker.
fn two_hosts() -> Mesh {
    let mut m = Mesh::new("acme");
    let a = m.add_host(
        "h1",
        "  - { name: orchestrator, runtime: stub, class: orchestrator }\n  - { name: enhancer, runtime: stub, class: enhancer }\n",
    );
    let b = m.add_host("h2", "  - name: w\n    runtime: stub\n    class: worker\n");
    // An operator's comment and key order, which the rewrite must keep.
    let path = m.nodes[b].home.join("fleet/roster.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("# h2's fleet: keep this comment\n{text}# the end\n")).unwrap();
    m.start_node(a, "127.0.0.1:0", &[]);
    let seed = m.addr(a);
    m.start_node(b, "127.0.0.1:0", &[seed]);
    m.start_agents(a);
    m.start_agents(b);
    wait_for("both hosts in h1's mesh view", WAIT, || listed(&m, a, "w", "h2"));
    m
}

/// The pane of `name` on `host` in node `i`'s listing (`None`: no row).
fn pane(m: &Mesh, i: usize, name: &str, host: &str) -> Option<String> {
    let (code, out, err) = m.at(i, &["ps", "--json"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    rows.iter()
        .find(|r| r["record"] == "agent" && r["name"] == name && r["host"] == host)
        .map(|r| r["pane"].to_string())
}

/// A start or stop answers once the host's view shows it, and a node that forwarded it
/// fetches that host's state before it answers: the next listing, there or here, shows it.
#[test]
fn a_start_or_stop_shows_in_the_next_listing_here_and_through_the_mesh() {
    let m = two_hosts();
    for round in 0..3 {
        let (code, out, err) = m.at(0, &["stop", "w@h2"]);
        assert_eq!(code, 0, "{out}{err}");
        assert_eq!(pane(&m, 0, "w", "h2").as_deref(), Some("\"missing\""), "round {round}: h1 after the stop");
        assert_eq!(pane(&m, 1, "w", "h2").as_deref(), Some("\"missing\""), "round {round}: h2 after the stop");
        let (code, out, err) = m.at(0, &["start", "w@h2"]);
        assert_eq!(code, 0, "{out}{err}");
        assert_eq!(pane(&m, 0, "w", "h2").as_deref(), Some("\"alive\""), "round {round}: h1 after the start");
        // On the agent's own host, through its own node.
        let (code, out, err) = m.at(1, &["stop", "w"]);
        assert_eq!(code, 0, "{out}{err}");
        assert_eq!(pane(&m, 1, "w", "h2").as_deref(), Some("\"missing\""), "round {round}: h2's own stop");
        let (code, out, err) = m.at(1, &["start", "w"]);
        assert_eq!(code, 0, "{out}{err}");
        assert_eq!(pane(&m, 1, "w", "h2").as_deref(), Some("\"alive\""), "round {round}: h2's own start");
    }
    // A crashed agent (its process killed, its pane kept dead): a start answers after a probe
    // that began after the respawn, not on the view that already had the pane dead.
    let pid = m.tmux(1, &["list-panes", "-t", "=w:", "-F", "#{pane_pid}"]);
    signal(pid.trim().parse().unwrap(), "-KILL");
    wait_for("w's pane dead in h1's listing", WAIT, || pane(&m, 0, "w", "h2").as_deref() == Some("\"dead\""));
    let (code, out, err) = m.at(0, &["start", "w@h2"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(pane(&m, 0, "w", "h2").as_deref(), Some("\"alive\""), "h1 after the start of a crashed agent");
    assert_eq!(pane(&m, 1, "w", "h2").as_deref(), Some("\"alive\""), "h2 after the start of a crashed agent");
}

#[test]
fn add_and_remove_on_another_host_through_the_mesh() {
    let m = two_hosts();
    // A unit link and an env file for the agent-to-be, as `fleet install` and an operator leave them
    // (no user manager runs here, so remove must take the link away itself).
    let wants = m.root().join(".config/systemd/user/default.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink("/nonexistent/mosaic-agent@.service", wants.join("mosaic-agent@coder.service")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/mosaic-agent@.service", wants.join("mosaic-agent@w.service")).unwrap();

    let (code, out, err) = m.at(0, &["add", "coder@h2", "--runtime", "stub", "--class", "implementer"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("Added coder (stub/implementer) to the fleet on h2.\n"), "{out}");
    assert!(out.contains("coder@h2: started"), "{out}");
    let text = roster_text(&m, 1);
    assert!(text.starts_with("# h2's fleet: keep this comment\n"), "{text}");
    assert!(
        text.ends_with("  - name: w\n    runtime: stub\n    class: worker\n  - name: coder\n    runtime: stub\n    class: implementer\n# the end\n"),
        "{text}"
    );
    assert!(has_session(&m, 1, "coder"), "coder runs on h2");
    // The node's live view has it at once.
    assert!(listed(&m, 0, "coder", "h2"), "{:?}", agents(&m, 0, &[]));
    let env = m.nodes[1].home.join("fleet/agents/coder.env");
    std::fs::create_dir_all(env.parent().unwrap()).unwrap();
    std::fs::write(&env, "RUNTIME_COMMAND=true\n").unwrap();
    let hb = m.nodes[1].home.join("fleet/run/coder.hb");
    wait_for("coder's heartbeat", WAIT, || hb.exists());

    // Adding it again is refused, naming the line.
    let (code, _, err) = m.at(0, &["add", "coder@h2", "--runtime", "stub", "--class", "implementer"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("agent coder is already in the roster"), "{err}");

    let (code, out, err) = m.at(0, &["remove", "coder@h2"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("Removed coder (stub/implementer) from the fleet on h2.\n"), "{out}");
    assert!(out.contains("coder@h2: stopped"), "{out}");
    let after = roster_text(&m, 1);
    assert_eq!(after, text.replace("  - name: coder\n    runtime: stub\n    class: implementer\n", ""));
    assert!(!has_session(&m, 1, "coder"));
    assert!(!env.exists(), "its env file is gone");
    assert!(!hb.exists(), "its heartbeat is gone");
    assert!(wants.join("mosaic-agent@coder.service").symlink_metadata().is_err(), "its unit is disabled");
    assert!(wants.join("mosaic-agent@w.service").symlink_metadata().is_ok(), "other units stay enabled");
    assert!(!listed(&m, 0, "coder", "h2"), "{:?}", agents(&m, 0, &[]));

    // --keep-files: the roster entry goes, the env file and the unit link stay.
    let (code, out, err) = m.at(1, &["add", "keeper", "--runtime", "stub", "--class", "worker", "--no-start"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!has_session(&m, 1, "keeper"), "--no-start");
    std::fs::write(m.nodes[1].home.join("fleet/agents/keeper.env"), "RUNTIME_COMMAND=true\n").unwrap();
    std::os::unix::fs::symlink("/nonexistent/x", wants.join("mosaic-agent@keeper.service")).unwrap();
    let (code, out, err) = m.at(1, &["remove", "keeper", "--keep-files", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["change"].as_str(), v["host"].as_str(), v["lifecycle"]["outcome"].as_str()),
        (Some("removed"), Some("h2"), Some("not_running"))
    );
    assert!(m.nodes[1].home.join("fleet/agents/keeper.env").exists());
    assert!(wants.join("mosaic-agent@keeper.service").symlink_metadata().is_ok());
    assert!(!roster_text(&m, 1).contains("keeper"));

    // The audit log of h2 has both, with the operator they were done for.
    let audit = std::fs::read_to_string(m.nodes[1].home.join("fleet/audit.log")).unwrap_or_default();
    assert!(audit.contains("\"target\":\"coder@h2\"") && audit.contains("\"outcome\":\"added\""), "{audit}");
    assert!(audit.contains("\"outcome\":\"removed\""), "{audit}");
}

#[test]
fn the_guards_hold_mesh_wide() {
    let m = two_hosts();
    let before = (roster_text(&m, 0), roster_text(&m, 1));
    // A second orchestrator on another host than the first.
    let (code, _, err) = m.at(0, &["add", "boss2@h2", "--runtime", "stub", "--class", "orchestrator"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Cannot add boss2 as an orchestrator: the fleet already has one (orchestrator@h1)"), "{err}");
    // The sole orchestrator and the sole enhancer, from the other host.
    let (code, _, err) = m.at(1, &["remove", "orchestrator@h1"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("Cannot remove orchestrator: it is the sole orchestrator. Add another orchestrator first."),
        "{err}"
    );
    let (code, _, err) = m.at(1, &["remove", "enhancer@h1"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Cannot remove enhancer: it is the sole enhancer"), "{err}");
    assert_eq!((roster_text(&m, 0), roster_text(&m, 1)), before, "a refused change writes nothing");
    assert!(has_session(&m, 0, "orchestrator") && has_session(&m, 0, "enhancer"), "nothing was stopped");

    // Moving the role: add the new one with --force, then remove the old one.
    let (code, out, err) = m.at(1, &["add", "boss2", "--runtime", "stub", "--class", "orchestrator", "--force"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = m.at(1, &["remove", "orchestrator@h1"]);
    assert_eq!(code, 0, "{out}{err}");
    // A second enhancer makes the first removable.
    let (code, out, err) = m.at(0, &["add", "e2@h2", "--runtime", "stub", "--class", "enhancer", "--no-start"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = m.at(1, &["remove", "enhancer@h1"]);
    assert_eq!(code, 0, "{out}{err}");
    // Unknown agents and hosts are named.
    let (code, _, err) = m.at(0, &["remove", "nobody@h2"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no such agent nobody in the roster of host h2"), "{err}");
    let (code, _, err) = m.at(0, &["add", "x@h9", "--runtime", "stub", "--class", "worker"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no node for host h9"), "{err}");
}

#[test]
fn reset_types_the_runtimes_command_and_verifies() {
    let mut m = Mesh::new("acme");
    let a = m.add_host("h1", "  - { name: o, runtime: stub, class: orchestrator }\n");
    let b = m.add_host(
        "h2",
        "  - { name: r, runtime: stub, class: worker }\n  - { name: d, runtime: drafty, class: worker }\n",
    );
    // The stub runtime resets with /clear; drafty has no reset command.
    let path = m.nodes[b].home.join("fleet/roster.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace(
            "heartbeat: self, enter_delay_ms: 0 }",
            "heartbeat: self, enter_delay_ms: 0, reset_command: /clear }",
        ),
    )
    .unwrap();
    m.start_node(a, "127.0.0.1:0", &[]);
    let seed = m.addr(a);
    m.start_node(b, "127.0.0.1:0", &[seed]);
    m.start_agents(b);
    wait_for("r's prompt", WAIT, || m.capture(b, "r").contains("> "));
    let (code, out, err) = m.at(a, &["send", "r@h2", "-m", "some work to forget"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_for("the message in r's pane", WAIT, || m.capture(b, "r").contains("some work to forget"));

    let (code, out, err) = m.at(a, &["reset", "r@h2"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("reset accepted: r@h2 (/clear"), "{out}");
    let screen = m.capture(b, "r");
    assert!(screen.contains("context cleared (/clear)"), "{screen}");
    assert!(!screen.contains("some work to forget"), "the screen was cleared: {screen}");

    let (code, _, err) = m.at(a, &["reset", "d@h2"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no reset command is known for runtime drafty of d@h2: set runtimes.drafty.reset_command"),
        "{err}"
    );
    let (code, _, err) = m.at(a, &["reset", "zz@h2"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no such agent zz"), "{err}");
}

#[test]
fn verify_exits_1_with_one_line_per_problem() {
    let m = two_hosts();
    wait_for("every heartbeat healthy", WAIT, || {
        let (_, out, _) = m.at(0, &["ps", "--json"]);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap_or_default();
        let agents: Vec<&serde_json::Value> = rows.iter().filter(|r| r["record"] == "agent").collect();
        agents.len() == 3 && agents.iter().all(|r| r["heartbeat"]["health"] == "healthy")
    });
    let (code, out, err) = m.at(0, &["verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok: 3 agent(s) on 2 host(s)"), "{out}");

    m.tmux(1, &["kill-session", "-t", "=w"]);
    m.tmux(0, &["kill-session", "-t", "=_holder"]);
    wait_for("w missing in h2's view", WAIT, || {
        let (_, out, _) = m.at(1, &["ps", "--json"]);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap_or_default();
        rows.iter().any(|r| r["name"] == "w" && r["pane"] == "missing")
    });
    let (code, out, err) = m.at(1, &["verify"]);
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines.iter().any(|l| l.starts_with("h1: the holder session _holder does not exist") && l.contains("; next: ")),
        "{out}"
    );
    assert!(lines.contains(&"w@h2: w@h2 has no session; next: `fleet start w@h2`"), "{out}");
    assert!(err.contains("2 problem(s) on 2 host(s) checked"), "{err}");

    let (code, out, _) = m.at(0, &["verify", "--host", "h2", "--json"]);
    assert_eq!(code, 1);
    let v: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(v.len(), 1, "{out}");
    assert_eq!(
        (v[0]["tenant_id"].as_str(), v[0]["host"].as_str(), v[0]["agent"].as_str()),
        (Some("acme"), Some("h2"), Some("w"))
    );
    assert_eq!(v[0]["next_step"], "`fleet start w@h2`");
    let (code, out, _) = m.at(0, &["verify", "--host", "h9"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("h9: host h9 could not be checked: no node for host h9"), "{out}");
}

fn table(out: &str) -> Vec<String> {
    out.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| Agent")).map(String::from).collect()
}

#[test]
fn comms_lists_the_mesh_and_follows_a_joining_host() {
    let mut m = Mesh::new("acme");
    let a = m.add_host(
        "h1",
        "  - { name: orchestrator, runtime: stub, class: orchestrator }\n  - { name: coder, runtime: stub, class: implementer }\n",
    );
    let b = m.add_host("h2", "  - { name: enhancer, runtime: stub, class: enhancer }\n");
    let c = m.add_host("h3", "  - { name: rev, runtime: stub, class: reviewer }\n");
    m.start_node(a, "127.0.0.1:0", &[]);
    let seed = m.addr(a);
    m.start_node(b, "127.0.0.1:0", std::slice::from_ref(&seed));
    m.start_node(c, "127.0.0.1:0", std::slice::from_ref(&seed));
    for i in [a, b, c] {
        m.start_agents(i);
    }
    wait_for("three hosts in h1's view", WAIT, || listed(&m, a, "enhancer", "h2") && listed(&m, a, "rev", "h3"));
    let (code, out, err) = m.at(a, &["comms", "coder"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("## Fleet Comms: reach your peers\n"), "{out}");
    assert!(out.contains("You are `[h1:coder]`"), "{out}");
    assert_eq!(
        table(&out),
        [
            "| orchestrator | orchestrator (point of contact) | `fleet send orchestrator@h1 -m \"...\"` |",
            "| enhancer | enhancer on h2 | `fleet send enhancer@h2 -m \"...\"` |",
            "| rev | reviewer on h3 | `fleet send rev@h3 -m \"...\"` |",
        ]
    );
    assert!(!out.contains("ssh") && !out.contains(" -L "), "{out}");

    // --write: into coder's context file (AGENTS.md for the stub runtime, in its working
    // directory: the harness's HOME), the operator's own text kept.
    let file = m.root().join("AGENTS.md");
    std::fs::write(&file, "# Notes of my own\n").unwrap();
    let (code, out, err) = m.at(a, &["comms", "coder", "--write"]);
    assert_eq!(code, 0, "{out}{err}");
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.starts_with("# Notes of my own\n\n<!-- fleet-comms:begin"), "{written}");
    assert_eq!(table(&written).len(), 3, "{written}");

    // A host joins: its agents appear, in `fleet comms` and in the written file.
    let d = m.add_host("h4", "  - { name: scout, runtime: stub, class: researcher }\n");
    m.start_node(d, "127.0.0.1:0", &[seed]);
    m.start_agents(d);
    wait_for("scout in coder's comms", WAIT, || {
        let (_, out, _) = m.at(a, &["comms", "coder@h1"]);
        out.contains("| scout | researcher on h4 | `fleet send scout@h4 -m \"...\"` |")
    });
    wait_for("scout in coder's context file", WAIT, || {
        std::fs::read_to_string(&file).unwrap().contains("| scout | researcher on h4 |")
    });
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.starts_with("# Notes of my own\n\n"), "{written}");
    assert_eq!(written.matches("fleet-comms:begin").count(), 1, "{written}");

    let (code, _, err) = m.at(a, &["comms", "nobody@h2"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no agent nobody@h2 in the mesh"), "{err}");
    let (code, _, err) = m.at(a, &["comms", "enhancer@h2", "--write"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("run `fleet comms enhancer --write` there"), "{err}");
}
