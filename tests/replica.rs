//! The replicated view (issue 17): real `fleet node` processes on loopback.
//! `fleet ps` answers from the node's memory (each host row says when its
//! feed was last heard from), `--fresh` asks every host now, and a host that
//! stops answering is a row that says so within the detection time.

#[path = "mesh_util.rs"]
mod mesh_util;

use mesh_util::{Mesh, wait_for};
use std::time::{Duration, Instant};

/// a and b, b with two stub agents; a has b as its static peer.
fn two() -> Mesh {
    let mut m = Mesh::new("acme");
    m.add_host("a", "  - { name: orch, runtime: stub, class: orchestrator }\n");
    m.add_host("b", "  - { name: rev, runtime: stub, class: reviewer }\n  - { name: coder, runtime: stub }\n");
    m.start_agents(0);
    m.start_agents(1);
    m.start_node(1, "127.0.0.1:0", &[]);
    let peers = vec![m.addr(1)];
    m.start_node(0, "127.0.0.1:0", &peers);
    m
}

fn ps(m: &Mesh, args: &[&str]) -> (Duration, Vec<serde_json::Value>) {
    let t = Instant::now();
    let (code, out, err) = m.at(0, args);
    let took = t.elapsed();
    assert_eq!(code, 0, "{args:?}: {err}");
    (took, serde_json::from_str(&out).unwrap())
}

fn host<'a>(rows: &'a [serde_json::Value], h: &str) -> &'a serde_json::Value {
    rows.iter().find(|r| r["record"] == "host" && r["host"] == h).unwrap_or_else(|| panic!("no row of {h}: {rows:#?}"))
}

fn agents_of(rows: &[serde_json::Value], h: &str) -> usize {
    rows.iter().filter(|r| r["record"] == "agent" && r["host"] == h).count()
}

/// b's rows are in a's memory: ok, both agents, heard from its feed, with b's own as_of.
fn replicated(m: &Mesh) -> Vec<serde_json::Value> {
    let mut rows = vec![];
    wait_for("b replicated on a", Duration::from_secs(15), || {
        rows = ps(m, &["ps", "--json"]).1;
        // b's row appears once membership has it: until then, wait.
        let Some(b) = rows.iter().find(|r| r["record"] == "host" && r["host"] == "b") else { return false };
        b["state"] == "ok" && b["heard_unix_ms"].as_i64().is_some_and(|t| t > 0) && agents_of(&rows, "b") == 2
    });
    rows
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig} {pid}");
}

#[test]
fn ps_answers_from_memory_and_fresh_asks_every_host() {
    let m = two();
    let rows = replicated(&m);
    let b = host(&rows, "b");
    assert!(b["as_of_unix_ms"].as_i64().is_some_and(|t| t > 0), "b's own as_of: {b}");
    assert_eq!(b["stale"], false, "{b}");
    let a = host(&rows, "a");
    assert!(a["heard_unix_ms"].is_null(), "a's own row is live: {a}");

    // b's node stops (SIGSTOP): it answers nothing, but it did not go away.
    let pid = m.nodes[1].pid.unwrap();
    signal(pid, "-STOP");
    let (took, rows) = ps(&m, &["ps", "--json"]);
    let (fresh_took, fresh) = ps(&m, &["ps", "--json", "--fresh"]);
    signal(pid, "-CONT");
    // From memory: at once, b's rows as last heard.
    assert!(took < Duration::from_millis(900), "ps from memory took {took:?}");
    assert_eq!(agents_of(&rows, "b"), 2, "{rows:#?}");
    assert!(host(&rows, "b")["heard_unix_ms"].as_i64().is_some_and(|t| t > 0));
    // --fresh: asks b now and waits the deadline (1 s in the harness) for it.
    assert!(fresh_took >= Duration::from_millis(1000), "ps --fresh took {fresh_took:?}: it did not ask b");
    let fb = host(&fresh, "b");
    assert_eq!(fb["state"], "timeout", "{fb}");
    assert!(fb["heard_unix_ms"].is_null(), "a live answer: {fb}");
    assert_eq!(agents_of(&fresh, "b"), 0);
    assert_eq!(host(&fresh, "a")["state"], "ok");
}

#[test]
fn a_stopped_or_killed_host_becomes_a_row_that_says_so_within_detection_time() {
    let mut m = two();
    replicated(&m);

    // Stopped: its feed goes silent and membership stops hearing it. Within the
    // detection time (about 5 s) a's memory says so: not ok, or stale.
    let pid = m.nodes[1].pid.unwrap();
    signal(pid, "-STOP");
    let t = Instant::now();
    let mut last = vec![];
    wait_for("b not ok or stale in a's ps", Duration::from_secs(8), || {
        last = ps(&m, &["ps", "--json"]).1;
        let b = host(&last, "b");
        b["state"] != "ok" || b["stale"] == true
    });
    eprintln!("stopped b: a's view said so {:?} after SIGSTOP: {}", t.elapsed(), host(&last, "b"));
    assert!(t.elapsed() < Duration::from_secs(8));
    // Then down (membership), without its rows.
    wait_for("b unreachable in a's ps", Duration::from_secs(8), || {
        let rows = ps(&m, &["ps", "--json"]).1;
        host(&rows, "b")["state"] == "unreachable" && agents_of(&rows, "b") == 0
    });
    signal(pid, "-CONT");
    replicated(&m);

    // kill -9: down within the detection time, no silently old rows meanwhile.
    m.kill_node(1);
    let t = Instant::now();
    wait_for("b not ok in a's ps after kill -9", Duration::from_secs(8), || {
        let rows = ps(&m, &["ps", "--json"]).1;
        let b = host(&rows, "b");
        if b["state"] == "ok" {
            assert!(t.elapsed() < Duration::from_secs(6), "b still ok {:?} after kill -9: {b}", t.elapsed());
            return false;
        }
        agents_of(&rows, "b") == 0
    });
    eprintln!("killed b: a's view said so {:?} after kill -9", t.elapsed());
}
