//! The replicated view (issue 17): real `fleet node` processes on loopback.
//! `fleet ps` answers from the node's memory (each host row says when it was
//! last heard from), `--fresh` asks every host now, a host that stops
//! answering is a row that says so within the detection time, and an idle
//! node keeps no connection to its peers.

#[path = "mesh_util.rs"]
mod mesh_util;

use mesh_util::{Mesh, signal, wait_for};
use std::time::{Duration, Instant};

/// a and b, b with two stub agents; a has b as its static peer.
fn two() -> Mesh {
    two_with(&[])
}

/// [`two`] with extra environment for a's node.
fn two_with(env: &[(&str, &str)]) -> Mesh {
    let mut m = Mesh::new("acme");
    m.add_host("a", "  - { name: orch, runtime: stub, class: orchestrator }\n");
    m.add_host("b", "  - { name: rev, runtime: stub, class: reviewer }\n  - { name: coder, runtime: stub }\n");
    m.start_agents(0);
    m.start_agents(1);
    m.start_node(1, "127.0.0.1:0", &[]);
    let peers = vec![m.addr(1)];
    m.start_node_with(0, "127.0.0.1:0", &peers, env);
    m
}

/// One host, `a`, with `agents` stub agents (not started) and its node; and its MOSAIC_HOME.
fn one_host(agents: usize) -> (Mesh, String) {
    let mut m = Mesh::new("acme");
    let roster: String = (0..agents).map(|a| format!("  - {{ name: a{a}, runtime: stub }}\n")).collect();
    m.add_host("a", &roster);
    m.start_node(0, "127.0.0.1:0", &[]);
    let home = m.nodes[0].home.display().to_string();
    (m, home)
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

/// ESTABLISHED TCP connections of process `pid` to `port` on loopback (its
/// sockets in /proc/PID/fd, matched by inode with /proc/PID/net/tcp{,6}).
fn connections_to(pid: u32, port: u16) -> usize {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let port = format!("{port:04X}");
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/{pid}/net/{t}")).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        })
        // local, remote, state (01: ESTABLISHED), ..., inode (10th column).
        .filter(|f| f.len() > 9 && f[3] == "01" && f[2].ends_with(&format!(":{port}")) && inodes.contains(&f[9]))
        .count()
}

#[test]
fn an_idle_node_keeps_no_connection_to_its_peers_and_still_sees_their_changes() {
    // a lets an unused connection go after 1 s and stops feeds 1 s after the last watcher.
    let m = two_with(&[("FLEET_IDLE_CLOSE_MS", "1000"), ("FLEET_FEED_LINGER_MS", "1000")]);
    replicated(&m);
    let (a, b_port) = (m.nodes[0].pid.unwrap(), m.addr(1).rsplit(':').next().unwrap().parse::<u16>().unwrap());

    // Nobody watches: no feed, and the connection of the first fetch goes (the
    // stubs beat every second, which changes no version).
    wait_for("a with no connection to b", Duration::from_secs(8), || connections_to(a, b_port) == 0);
    // Every 15 s, at a phase of its own, a pulls the revocation list from a peer (`GetCrl`: a
    // connection to b that goes after 1 s here). Nothing else may reach b while nothing
    // changes there: no fetch of its state, no feed.
    let calls = || {
        let text = metrics(&m, 1);
        ["/fleet.v1.Fleet/ListAgents", "/fleet.v1.Fleet/WatchHeartbeats", "/fleet.v1.Certs/GetCrl"]
            .map(|method| series(&text, &format!("fleet_rpc_duration_seconds_count{{method=\"{method}\"}}")))
    };
    let before = calls();
    std::thread::sleep(Duration::from_secs(2));
    let open = connections_to(a, b_port);
    let after = calls();
    assert_eq!(after[..2], before[..2], "a asked b for its state with nothing changed on b");
    assert!(open == 0 || after[2] > before[2], "a connection came back with nothing changed on b and no GetCrl");

    // A change on b reaches a's memory all the same: b announces a new version, a fetches it.
    let t = Instant::now();
    m.tmux(1, &["kill-session", "-t", "=coder"]);
    wait_for("coder's pane gone in a's memory", Duration::from_secs(8), || {
        let rows = ps(&m, &["ps", "--json"]).1;
        let coder = rows.iter().find(|r| r["record"] == "agent" && r["host"] == "b" && r["name"] == "coder");
        coder.is_some_and(|c| c["pane"] != "alive") && host(&rows, "b")["heard_unix_ms"].as_i64().is_some()
    });
    eprintln!("a change on b reached a's memory {:?} after it was made", t.elapsed());
    wait_for("a with no connection to b again", Duration::from_secs(8), || connections_to(a, b_port) == 0);

    // Someone watches the mesh's events: a feed of b runs, its events come live.
    let home = m.nodes[0].home.display().to_string();
    let mut watcher = m
        .command(&["heartbeats", "--json", "--snapshot"], &[("MOSAIC_HOME", &home)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (tx, events) = std::sync::mpsc::channel();
    let out = watcher.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && tx.send(v).is_err()
            {
                return;
            }
        }
    });
    // Its snapshot (from a's copy) shows each of b's agents once: the feed that starts then
    // does not show them again.
    let (start, mut got) = (Instant::now(), vec![]);
    while start.elapsed() < Duration::from_secs(8)
        && !(got.iter().any(|e: &serde_json::Value| e["host"] == "b" && e["event"] == "beat")
            && start.elapsed() > Duration::from_secs(2))
    {
        if let Ok(e) = events.recv_timeout(Duration::from_millis(200)) {
            got.push(e);
        }
    }
    assert!(got.iter().any(|e| e["host"] == "b" && e["event"] == "beat"), "no beat of b live: {got:#?}");
    for agent in ["rev", "coder"] {
        let shown = got.iter().filter(|e| e["host"] == "b" && e["agent"] == agent && e["event"] == "agent_appeared");
        assert_eq!(shown.count(), 1, "{agent}@b shown once: {got:#?}");
    }
    assert_eq!(connections_to(a, b_port), 1, "the feed of b");
    // The watcher leaves: the feed stops after the linger and its connection goes.
    watcher.kill().unwrap();
    watcher.wait().unwrap();
    wait_for("the feed's connection gone", Duration::from_secs(10), || connections_to(a, b_port) == 0);
}

/// One sample of node `i`'s `/metrics` (its web door, which serves them to anyone on
/// loopback): the value of the line that starts with `series`, 0 when there is none.
fn metric(m: &Mesh, i: usize, series_name: &str) -> f64 {
    series(&metrics(m, i), series_name)
}

/// Node `i`'s `/metrics` text, from its web door.
fn metrics(m: &Mesh, i: usize) -> String {
    use std::io::{Read, Write};
    let (code, out, err) = m.at(i, &["web", "--json"]);
    assert_eq!(code, 0, "fleet web --json: {err}");
    let url: serde_json::Value = serde_json::from_str(&out).unwrap();
    let addr = url["web_url"].as_str().unwrap().strip_prefix("http://").expect("a plain door on loopback").to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}

/// The value of the line of `text` that starts with `series`, 0 when there is none.
fn series(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .map_or(0.0, |v| v.trim().parse().unwrap_or_else(|_| panic!("{series}{v}")))
}

#[test]
fn a_peer_state_comes_over_the_membership_connection_not_a_grpc_call() {
    let m = two();
    replicated(&m);
    // A change on b: a fetches b's new version.
    m.tmux(1, &["kill-session", "-t", "=coder"]);
    wait_for("coder's pane gone in a's memory", Duration::from_secs(8), || {
        let rows = ps(&m, &["ps", "--json"]).1;
        let coder = rows.iter().find(|r| r["record"] == "agent" && r["host"] == "b" && r["name"] == "coder");
        coder.is_some_and(|c| c["pane"] != "alive")
    });
    // Both copies came over the QUIC connection membership holds to b: b answered no
    // ListAgents call (a gRPC fetch is one, and costs a TCP connection and a TLS handshake).
    let served = metric(&m, 1, "fleet_rpc_duration_seconds_count{method=\"/fleet.v1.Fleet/ListAgents\"}");
    assert_eq!(served, 0.0, "b answered {served} ListAgents calls: a fetched its copies over gRPC");
}

/// A mesh's listing is hundreds of KB; a pipe holds 64 KiB unless asked for more.
/// `fleet ps --json` into a pipe that nobody reads until it exits: it writes the whole
/// listing (here about 130 KB) and exits, instead of waiting for its reader at each
/// 64 KiB (docs/benchmarks.md, "Eighth pass": 0.4-1.0 ms of a 1,100-row listing).
#[test]
fn ps_json_writes_a_large_listing_into_a_pipe_without_waiting_for_the_reader() {
    let (m, home) = one_host(150);
    let mut child = m
        .command(&["ps", "--json"], &[("MOSAIC_HOME", &home)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > Duration::from_secs(10) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Read in any case: a CLI blocked on the pipe finishes once read, and is reaped.
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    let waited = child.wait().unwrap();
    assert!(status.is_some(), "fleet ps --json did not exit within 10 s with its pipe unread ({} bytes)", out.len());
    assert!(waited.success(), "fleet ps --json: {waited}");
    assert!(out.len() > 1 << 16, "the listing is {} bytes: not more than a pipe holds by default", out.len());
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.iter().filter(|r| r["record"] == "agent").count(), 150);
}

/// A reader that stops reading (`fleet ps | head -1`) ends a listing or a stream
/// quietly, exit 0: not a panic (`print!` on a closed pipe, exit 101) nor an
/// error. The pipe's reader is closed before the CLI starts, so its first write
/// fails, whatever the listing's size. A verdict (`verify`) still fails, and a
/// write error other than a closed pipe is said (exit 1).
#[test]
fn a_listing_or_stream_into_a_closed_pipe_ends_quietly() {
    // More than the 64 KiB `ps --json` buffers before its first write (about 880 bytes an
    // agent), so the JSON writer itself meets the closed pipe, not only the last flush.
    let (m, home) = one_host(100);
    let closed_pipe = || {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        writer
    };
    let full_disk = || std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let run = |args: &[&str], stdout: std::process::Stdio| {
        m.command(args, &[("MOSAIC_HOME", &home)]).stdout(stdout).stderr(std::process::Stdio::piped()).output().unwrap()
    };
    let listings: [&[&str]; 8] = [
        &["ps"],
        &["ps", "--json"],
        &["heartbeats", "--snapshot"],
        &["heartbeats", "--snapshot", "--json"],
        &["certs", "show"],
        &["certs", "show", "--json"],
        &["roster", "check"],
        &["roster", "check", "--json"],
    ];
    for args in listings {
        let out = run(args, closed_pipe().into());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "fleet {args:?} into a closed pipe: {}; stderr: {err}", out.status);
        assert!(err.is_empty(), "fleet {args:?} into a closed pipe said: {err}");
    }
    // A verdict stands: the agents were never started, so `fleet verify` fails (exit 1)
    // whether or not its reader stayed (`fleet verify | head -3` under `pipefail`).
    let (code, _, err) = m.at(0, &["verify"]);
    assert_eq!(code, 1, "verify of agents never started: {err}");
    let out = run(&["verify"], closed_pipe().into());
    assert_eq!(out.status.code(), Some(1), "verify into a closed pipe: {}", String::from_utf8_lossy(&out.stderr));
    // So does `roster check`'s (exit 2 for a roster that does not parse).
    let broken = m.root().join("broken.yaml");
    std::fs::write(&broken, "agents: [").unwrap();
    let out = run(&["roster", "check", "--json", broken.to_str().unwrap()], closed_pipe().into());
    assert_eq!(
        out.status.code(),
        Some(2),
        "a broken roster checked into a closed pipe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ... but a write error that is not the reader's going is said, as for `verify` below.
    let out = run(&["roster", "check", "--json", broken.to_str().unwrap()], full_disk().into());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a broken roster checked into /dev/full: {err}");
    assert!(err.contains("No space left on device"), "a broken roster checked into /dev/full said: {err}");
    // Any other write error is one: a full disk is said, exit 1.
    let out = run(&["ps"], full_disk().into());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "fleet ps into /dev/full: {err}");
    assert!(err.contains("No space left on device"), "fleet ps into /dev/full said: {err}");
    // ... also where the verdict fails too: the write error is what is said.
    let out = run(&["verify"], full_disk().into());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "fleet verify into /dev/full: {err}");
    assert!(err.contains("No space left on device"), "fleet verify into /dev/full said: {err}");
}
