//! Durable delivery end to end (`fleet send --queue`, `fleet queue`): real
//! nodes on loopback (mutual TLS, certificates made in the test), real tmux,
//! the stub agent; nodes killed with SIGKILL (or aborting at a chosen phase)
//! and started again on the same MOSAIC_HOME.

#[path = "mesh_util.rs"]
mod mesh_util;

use mesh_util::{Mesh, wait_for};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Host a (orch) and host c (coder, not started; sh, a shell). a knows c.
fn two() -> Mesh {
    let mut m = Mesh::new("acme");
    m.add_host("a", "  - { name: orch, runtime: stub, class: orchestrator }\n");
    m.add_host("c", "  - { name: coder, runtime: stub }\n  - { name: sh, runtime: shell }\n");
    m.start_agents(0);
    holder(&m, 1);
    m.start_node(1, "127.0.0.1:0", &[]);
    let peers = vec![m.addr(1)];
    m.start_node(0, "127.0.0.1:0", &peers);
    m
}

/// The holder session of host `i` (no agents), with a long scrollback for the panes to come.
fn holder(m: &Mesh, i: usize) {
    m.tmux(i, &["-f", "/dev/null", "new-session", "-d", "-s", "_holder", "sleep 1000000"]);
    m.tmux(i, &["set-option", "-g", "history-limit", "100000"]);
}

/// Start one agent of host `i` (`fleet start NAME --local`).
fn start(m: &Mesh, i: usize, agent: &str) {
    let (code, out, err) = m.at(i, &["start", agent, "--local"]);
    assert_eq!(code, 0, "start {agent}: {out}{err}");
}

/// The whole pane of `agent` on host `i`, scrollback included.
fn pane(m: &Mesh, i: usize, agent: &str) -> String {
    m.tmux(i, &["capture-pane", "-p", "-J", "-S", "-", "-t", &format!("={agent}:")])
}

/// `fleet queue --json` at node `i`, the message objects by id.
fn queue_json(m: &Mesh, i: usize) -> Vec<serde_json::Value> {
    let (code, out, err) = m.at(i, &["queue", "--json"]);
    assert_eq!(code, 0, "fleet queue --json: {err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    for r in &rows {
        assert!(r["tenant_id"] == "acme" && r["host"].is_string(), "tenant_id and host on every object: {r}");
    }
    rows.into_iter().filter(|r| r["record"] == "message").collect()
}

fn message<'a>(rows: &'a [serde_json::Value], id: &str) -> &'a serde_json::Value {
    rows.iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("no message {id} in {rows:?}"))
}

/// `fleet send TARGET --queue -m TEXT [extra]` at node `i`: the queue id.
fn queue(m: &Mesh, i: usize, target: &str, text: &str, extra: &[&str]) -> String {
    let mut args = vec!["send", target, "--queue", "--json", "--from", "test", "-m", text];
    args.extend(extra);
    let (code, out, err) = m.at(i, &args);
    assert_eq!(code, 0, "send --queue: {out}{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["outcome"], "queued", "{r}");
    r["queue_id"].as_str().unwrap().to_string()
}

/// The `accepted:` lines of a stub's pane, counted by text; every one of them
/// must be a whole message (`glued` is any other non-empty line).
struct Arrived {
    counts: BTreeMap<String, usize>,
    order: Vec<String>,
    glued: Vec<String>,
    empty: usize,
}

fn arrived(screen: &str, prefix: &str, whole: impl Fn(&str) -> bool) -> Arrived {
    let mut a = Arrived { counts: BTreeMap::new(), order: vec![], glued: vec![], empty: 0 };
    for line in screen.lines() {
        let Some(rest) = line.strip_prefix("accepted: ") else { continue };
        let rest = rest.trim_end();
        if rest.is_empty() {
            a.empty += 1;
        } else if let Some(body) = rest.strip_prefix(prefix).filter(|b| whole(b)) {
            *a.counts.entry(body.to_string()).or_default() += 1;
            a.order.push(body.to_string());
        } else {
            a.glued.push(rest.to_string());
        }
    }
    a
}

fn numbered(i: usize) -> String {
    format!("msg-{i:05} end")
}

fn is_numbered(b: &str) -> bool {
    b.len() == "msg-00000 end".len() && b.starts_with("msg-") && b.ends_with(" end")
}

/// Wait until node `i` no longer answers (it crashed on purpose).
fn wait_dead(m: &Mesh, i: usize) {
    wait_for("the node to be gone", Duration::from_secs(10), || m.at(i, &["queue"]).0 == 3);
}

/// Queued messages survive SIGKILL of the target's node, before and during
/// delivery, and arrive exactly once, in order, once the agent starts: none
/// lost, none twice, none glued to another. `FLEET_QUEUE_MESSAGES` sets how
/// many (default 200; docs/benchmarks.md has the 1,000 run).
#[test]
fn queued_messages_survive_kill_9_and_arrive_exactly_once_in_order() {
    let n: usize = std::env::var("FLEET_QUEUE_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let mut m = two();
    let c_addr = m.addr(1);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let a_sock = fleet_node::client::Target::Socket(m.nodes[0].home.join("fleet/node.sock"));
    // Through a's node, forwarded to c's: the mesh-wide path.
    let enqueue = |range: std::ops::Range<usize>| {
        rt.block_on(async {
            let mut client = fleet_node::client::queue(&a_sock).await.unwrap();
            let mut dups = 0;
            for i in range {
                let send = fleet_proto::v1::SendRequest {
                    host: "c".into(),
                    agent: "coder".into(),
                    text: numbered(i),
                    source_label: "test".into(),
                    idempotency_key: format!("key-{i}"),
                    ..Default::default()
                };
                let req = fleet_proto::v1::QueueRequest { send: Some(send), expire_s: 3600 };
                let r = loop {
                    // Right after c's node restarts a may not reach it yet: retry, same key.
                    match client.queue_message(req.clone()).await {
                        Ok(r) => break r.into_inner(),
                        Err(s) if s.code() == tonic::Code::Unavailable || s.code() == tonic::Code::NotFound => {
                            tokio::time::sleep(Duration::from_millis(200)).await
                        }
                        Err(s) => panic!("queue {i}: {s}"),
                    }
                };
                assert_eq!(fleet_proto::convert::outcome_word_of(r.outcome), "queued", "{r:?}");
                assert_eq!((r.host.as_str(), r.tenant_id.as_str()), ("c", "acme"));
                dups += usize::from(r.duplicate);
            }
            dups
        })
    };
    let t0 = Instant::now();
    assert_eq!(enqueue(0..n / 2), 0);
    // The agent is not running: everything waits, and says why.
    let rows = queue_json(&m, 0);
    assert_eq!(rows.len(), n / 2);
    assert!(rows.iter().all(|r| r["state"] == "queued" && r["host"] == "c"), "{:?}", rows[0]);
    wait_for("the reason in the listing", Duration::from_secs(5), || {
        queue_json(&m, 0).iter().all(|r| r["detail"] == "coder is not running (no session)")
    });

    // kill -9 of c's node with everything queued; back on the same address.
    m.kill_node(1);
    m.start_node(1, &c_addr, &[]);
    // A retry of queued keys (across the restart) is a duplicate, not a second message.
    assert_eq!(enqueue(0..10), 10, "idempotency keys survive the restart");
    assert_eq!(enqueue(n / 2..n), 0);
    let queued_in = t0.elapsed();

    // The agent starts; kill -9 c's node twice while it types them.
    let t1 = Instant::now();
    start(&m, 1, "coder");
    let count = |m: &Mesh| arrived(&pane(m, 1, "coder"), "[a:test -> c:coder] ", is_numbered).order.len();
    for at in [n / 4, n / 2] {
        wait_for("deliveries under way", Duration::from_secs(120), || count(&m) >= at);
        m.kill_node(1);
        m.start_node(1, &c_addr, &[]);
    }
    wait_for("every message", Duration::from_secs(300), || count(&m) >= n);
    let delivered_in = t1.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let a = arrived(&pane(&m, 1, "coder"), "[a:test -> c:coder] ", is_numbered);
    eprintln!(
        "{n} messages: queued in {:.1} s, delivered across 2 kills in {:.1} s ({:.0}/s); {} empty Enter(s)",
        queued_in.as_secs_f64(),
        delivered_in.as_secs_f64(),
        n as f64 / delivered_in.as_secs_f64(),
        a.empty
    );
    assert!(a.glued.is_empty(), "glued or partial lines: {:?}", a.glued);
    let lost: Vec<usize> = (0..n).filter(|i| !a.counts.contains_key(&numbered(*i))).collect();
    let twice: Vec<(&String, &usize)> = a.counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(lost.is_empty() && twice.is_empty(), "lost {lost:?}; twice {twice:?}");
    let expected: Vec<String> = (0..n).map(numbered).collect();
    assert_eq!(a.order, expected, "in order");
    // The mesh's listing: all delivered, on c, with their final receipt (once a
    // reaches c's restarted node again).
    let mut rows = vec![];
    wait_for("c's queue listed at a", Duration::from_secs(15), || {
        rows = queue_json(&m, 0);
        rows.len() == n
    });
    let states: BTreeMap<String, usize> = rows.iter().fold(BTreeMap::new(), |mut acc, r| {
        *acc.entry(r["state"].as_str().unwrap().to_string()).or_default() += 1;
        acc
    });
    assert_eq!(states, BTreeMap::from([("delivered".to_string(), n)]));
}

/// The soak defect: a node that dies between paste and Enter left the text on
/// the input line, and the next message was glued to it. Here the node kills itself
/// (on purpose, FLEET_QUEUE_CRASH_AT) after the paste, once before and once
/// after recording it; after a restart each message is submitted once, alone.
#[test]
fn a_crash_between_paste_and_enter_neither_loses_nor_glues() {
    let mut m = Mesh::new("acme");
    m.add_host("c", "  - { name: coder, runtime: stub }\n");
    m.start_agents(0);
    let addr = "127.0.0.1:0";
    let prefix = "[c:test -> c:coder] ";
    wait_for("coder's prompt", Duration::from_secs(10), || pane(&m, 0, "coder").contains("> "));
    for (phase, first, second) in
        [("pasted", "one was pasted", "two follows"), ("typing", "three pasted", "four follows")]
    {
        m.start_node_with(0, addr, &[], &[("FLEET_QUEUE_CRASH_AT", phase)]);
        let id = queue(&m, 0, "coder", first, &[]);
        wait_dead(&m, 0);
        // The text sits on the input line, unsubmitted.
        let screen = pane(&m, 0, "coder");
        assert!(screen.contains(&format!("> {prefix}{first}")), "{phase}: {screen}");
        assert!(!screen.contains(&format!("accepted: {prefix}{first}")), "{phase}: {screen}");
        let left = std::fs::read_to_string(m.nodes[0].home.join(format!("fleet/queue/{id}.json"))).unwrap();
        let expect = if phase == "pasted" { "\"state\":\"pasted\"" } else { "\"state\":\"typing\"" };
        assert!(left.contains(expect), "{phase}: {left}");
        m.start_node(0, addr, &[]);
        queue(&m, 0, "coder", second, &[]);
        let all = ["one was pasted", "two follows", "three pasted", "four follows"];
        let whole = |b: &str| all.contains(&b);
        let this_round = |a: &Arrived| a.order.iter().filter(|b| [first, second].contains(&b.as_str())).count();
        wait_for("both", Duration::from_secs(20), || {
            let a = arrived(&pane(&m, 0, "coder"), prefix, whole);
            this_round(&a) >= 2 || !a.glued.is_empty()
        });
        std::thread::sleep(Duration::from_secs(1));
        let a = arrived(&pane(&m, 0, "coder"), prefix, whole);
        assert!(a.glued.is_empty(), "{phase}: glued: {:?}", a.glued);
        let round: Vec<&str> = a.order.iter().map(String::as_str).filter(|b| [first, second].contains(b)).collect();
        assert_eq!(round, [first, second], "{phase}: once each, in order");
        let rows = queue_json(&m, 0);
        let r = message(&rows, &id);
        assert_eq!(r["state"], "delivered", "{r}");
        let attempts = if phase == "pasted" { 1 } else { 2 };
        assert_eq!(r["attempts"], attempts, "{phase}: {r}");
        m.kill_node(0);
    }
}

/// A queued message is typed only when the agent is neither working (the
/// stub's `/work`) nor waiting (its `/ask`); an agent whose activity is
/// unknown (a shell: no screen rules, no hooks) is not held back.
#[test]
fn a_queued_message_waits_out_work_and_questions_but_not_an_unknown_state() {
    let m = two();
    start(&m, 1, "coder");
    start(&m, 1, "sh");
    let state = |name: &str| {
        let (_, out, _) = m.at(0, &["ps", "--json", "--host", "c"]);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap_or_default();
        rows.iter().find(|r| r["name"] == name).map(|r| r["activity"]["state"].as_str().unwrap_or("").to_string())
    };
    wait_for("coder idle", Duration::from_secs(15), || state("coder").as_deref() == Some("idle"));
    let prefix = "[a:test -> c:coder] ";
    for (busy, word, text) in [("/work 4", "working", "after the work"), ("/ask", "waiting", "after the question")] {
        let (code, _, err) = m.at(0, &["send", "coder@c", "-m", busy]);
        assert_eq!(code, 0, "{err}");
        wait_for(word, Duration::from_secs(10), || state("coder").as_deref() == Some(word));
        let id = queue(&m, 0, "coder@c", text, &[]);
        let held = Instant::now();
        wait_for("the reason", Duration::from_secs(5), || {
            message(&queue_json(&m, 0), &id)["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with(&format!("coder is {word}")))
        });
        std::thread::sleep(Duration::from_millis(1500));
        assert!(!pane(&m, 1, "coder").contains(&format!("accepted: {prefix}{text}")), "typed while {word}");
        if word == "waiting" {
            m.tmux(1, &["send-keys", "-t", "=coder:", "y"]);
        }
        wait_for("delivered", Duration::from_secs(20), || {
            pane(&m, 1, "coder").contains(&format!("accepted: {prefix}{text}"))
        });
        assert!(held.elapsed() >= Duration::from_millis(1500));
        assert_eq!(message(&queue_json(&m, 0), &id)["state"], "delivered");
    }
    wait_for("sh unknown", Duration::from_secs(15), || state("sh").as_deref() == Some("unknown"));
    let id = queue(&m, 0, "sh@c", "from the queue", &[]);
    wait_for("typed into the shell", Duration::from_secs(10), || {
        pane(&m, 1, "sh").contains("[a:test -> c:sh] from the queue")
    });
    wait_for("delivered", Duration::from_secs(5), || message(&queue_json(&m, 0), &id)["state"] == "delivered");
}

/// Cancel and expiry, across the mesh: a cancelled or expired message is never
/// typed; the rest still is once the agent starts. The store is private.
#[test]
fn cancelled_and_expired_messages_are_never_typed() {
    let m = two();
    let short = queue(&m, 0, "coder@c", "too late", &["--expire", "2s"]);
    let kept = queue(&m, 0, "coder@c", "still wanted", &[]);
    let gone = queue(&m, 0, "coder@c", "never mind", &[]);
    let (code, out, err) = m.at(0, &["queue", "cancel", &format!("{gone}@c")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with(&format!("cancelled: {gone}@c for coder")), "{out}");
    let (code, _, err) = m.at(0, &["queue", "cancel", &format!("{gone}@c")]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("message {gone} is cancelled already")), "{err}");
    let (code, _, err) = m.at(0, &["queue", "cancel", &gone]);
    assert_eq!(code, 1, "a bare id is the local host's: {err}");
    assert!(err.contains(&format!("no queued message {gone} on host a")), "{err}");
    let (code, _, err) = m.at(0, &["send", "coder@c", "--queue", "--verify", "-m", "x"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = m.at(0, &["send", "coder@c", "--queue", "--expire", "8d", "-m", "x"]);
    assert_eq!(code, 2, "{err}");
    wait_for("the expiry", Duration::from_secs(10), || message(&queue_json(&m, 0), &short)["state"] == "expired");
    let rows = queue_json(&m, 0);
    assert_eq!(message(&rows, &gone)["state"], "cancelled");
    assert_eq!(message(&rows, &kept)["state"], "queued");
    let (code, _, err) = m.at(0, &["queue", "--host", "nosuch"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no host nosuch in the mesh (known: a, c)"), "{err}");
    let (code, out, _) = m.at(0, &["queue", "--json", "--host", "a"]);
    assert_eq!(code, 0);
    let only_a: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert!(only_a.iter().all(|r| r["host"] == "a") && only_a.iter().all(|r| r["record"] == "host"), "{out}");
    let (code, table, _) = m.at(0, &["queue"]);
    assert_eq!(code, 0);
    assert!(table.lines().any(|l| l.starts_with(&format!("{kept}@c")) && l.contains("queued")), "{table}");
    // Private on disk.
    let dir = m.nodes[1].home.join("fleet/queue");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    let file = dir.join(format!("{kept}.json"));
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);

    start(&m, 1, "coder");
    let prefix = "[a:test -> c:coder] ";
    wait_for("the kept one", Duration::from_secs(20), || {
        pane(&m, 1, "coder").contains(&format!("accepted: {prefix}still wanted"))
    });
    std::thread::sleep(Duration::from_secs(1));
    let screen = pane(&m, 1, "coder");
    assert!(!screen.contains("too late") && !screen.contains("never mind"), "{screen}");
    assert_eq!(message(&queue_json(&m, 0), &kept)["state"], "delivered");
    // Cancelling what was delivered is refused.
    let (code, _, err) = m.at(0, &["queue", "cancel", &format!("{kept}@c")]);
    assert_eq!(code, 1, "{err}");
}
