//! Files and probes that must not take the node down or freeze its view: a
//! "billion laughs" roster, a roster that is a device, a FIFO heartbeat, a tmux
//! server that accepts and never answers, a systemctl that never answers. Real
//! node processes, real tmux, real FIFOs and sockets.

#[path = "mesh_util.rs"]
mod mesh_util;

use mesh_util::{Mesh, wait_for};
use std::path::Path;
use std::time::{Duration, Instant};

/// The VmRSS bound this file checks the node against (it runs at ~15-25 MB).
const RSS_LIMIT_KB: u64 = 64 * 1024;

fn ps_json(m: &Mesh, i: usize) -> Vec<serde_json::Value> {
    let (code, out, err) = m.at(i, &["ps", "--json"]);
    assert_eq!(code, 0, "ps: {err}");
    serde_json::from_str(&out).unwrap()
}

fn self_row(m: &Mesh, i: usize) -> serde_json::Value {
    let host = m.nodes[i].host.clone();
    ps_json(m, i).into_iter().find(|r| r["record"] == "host" && r["host"] == host.as_str()).expect("own host row")
}

fn agent<'a>(rows: &'a [serde_json::Value], name: &str) -> Option<&'a serde_json::Value> {
    rows.iter().find(|r| r["record"] == "agent" && r["name"] == name)
}

fn vm_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("node alive");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z"))
}

/// SIGTERM the node; how long until it exited.
fn terminate(pid: u32) -> Duration {
    let start = Instant::now();
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap(), rustix::process::Signal::TERM)
        .unwrap();
    while !exited(pid) && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// Ten lists of ten aliases, nine deep: 10^9 scalars if expanded; 600 bytes.
fn billion_laughs() -> String {
    let mut t = String::from("version: 1\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..=9 {
        let p = i - 1;
        t.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
    }
    t
}

fn one_node(agents: &str) -> Mesh {
    let mut m = Mesh::new("acme");
    m.add_host("solo", agents);
    m.start_agents(0);
    m.start_node(0, "127.0.0.1:0", &[]);
    m
}

#[test]
fn a_billion_laughs_roster_is_a_roster_problem_and_the_node_stays_small() {
    let m = one_node("  - { name: orch, runtime: stub }\n");
    let pid = m.nodes[0].pid.unwrap();
    wait_for("orch listed", Duration::from_secs(10), || agent(&ps_json(&m, 0), "orch").is_some());
    let roster = m.nodes[0].home.join("fleet/roster.yaml");
    let good = std::fs::read_to_string(&roster).unwrap();
    let bomb = billion_laughs();
    assert!(bomb.len() < 1024, "{}", bomb.len());

    // `fleet roster check` refuses it quickly, with the position of the alias that went over.
    let bomb_file = m.root().join("bomb.yaml");
    std::fs::write(&bomb_file, &bomb).unwrap();
    let start = Instant::now();
    let (code, _, err) = m.run(&["roster", "check", bomb_file.to_str().unwrap()], &[]);
    assert!(start.elapsed() < Duration::from_secs(5), "roster check took {:?}", start.elapsed());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("{}:6:", bomb_file.display())) && err.contains("aliases expand"), "{err}");

    // The node: a roster problem on its host row, the last good roster serving, RSS small throughout.
    let before = vm_rss_kb(pid);
    std::fs::write(&roster, &bomb).unwrap();
    let mut max_rss = 0;
    wait_for("the roster problem", Duration::from_secs(10), || {
        max_rss = max_rss.max(vm_rss_kb(pid));
        self_row(&m, 0)["roster_problem"].as_str().is_some_and(|p| p.contains(":6:") && p.contains("aliases expand"))
    });
    for _ in 0..10 {
        max_rss = max_rss.max(vm_rss_kb(pid));
        assert!(agent(&ps_json(&m, 0), "orch").is_some(), "the last good roster still serves");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("node VmRSS before: {before} kB, peak seen after: {max_rss} kB (limit {RSS_LIMIT_KB} kB)");
    assert!(max_rss < RSS_LIMIT_KB, "node VmRSS {max_rss} kB");

    // A roster that is a symlink to a device is refused at once, not read forever.
    std::fs::remove_file(&roster).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &roster).unwrap();
    wait_for("the device roster problem", Duration::from_secs(10), || {
        self_row(&m, 0)["roster_problem"].as_str().is_some_and(|p| p.contains("character device"))
    });
    assert!(vm_rss_kb(pid) < RSS_LIMIT_KB);
    let start = Instant::now();
    let (code, _, err) = m.run(&["roster", "check", roster.to_str().unwrap()], &[]);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("character device") && err.contains("not a regular file"), "{err}");

    // A good roster again: the problem clears.
    std::fs::remove_file(&roster).unwrap();
    std::fs::write(&roster, good).unwrap();
    wait_for("the problem cleared", Duration::from_secs(10), || self_row(&m, 0)["roster_problem"].is_null());
}

#[test]
fn a_fifo_heartbeat_neither_freezes_the_view_nor_delays_shutdown() {
    let m = one_node("  - { name: orch, runtime: stub }\n");
    let pid = m.nodes[0].pid.unwrap();
    wait_for("orch listed", Duration::from_secs(10), || agent(&ps_json(&m, 0), "orch").is_some());
    // A session by hand with a FIFO for its heartbeat file.
    let fifo = m.nodes[0].home.join("fleet/run/piped.hb");
    rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0)
        .unwrap();
    m.tmux(0, &["new-session", "-d", "-s", "piped", "sleep 1000"]);
    wait_for("the FIFO heartbeat to be unknown with the reason", Duration::from_secs(10), || {
        let rows = ps_json(&m, 0);
        agent(&rows, "piped").is_some_and(|r| {
            r["heartbeat"]["health"] == "unknown"
                && r["heartbeat"]["reason"].as_str().is_some_and(|s| s.contains("FIFO") && s.contains("piped.hb"))
        })
    });
    // Touch it again (inotify: a beat) and start another session: the view keeps up.
    let _ = std::process::Command::new("touch").arg(&fifo).status();
    m.tmux(0, &["new-session", "-d", "-s", "later", "sleep 1000"]);
    wait_for("a new session to appear", Duration::from_secs(10), || agent(&ps_json(&m, 0), "later").is_some());
    let row = self_row(&m, 0);
    assert_eq!(row["state"], "ok", "{row}");
    let took = terminate(pid);
    assert!(took < Duration::from_secs(3), "SIGTERM took {took:?}");
}

#[test]
fn a_tmux_server_that_never_answers_makes_an_error_row_and_the_view_stops_advancing() {
    let m = one_node("  - { name: orch, runtime: stub }\n");
    let pid = m.nodes[0].pid.unwrap();
    let as_of = |row: &serde_json::Value| row["as_of_unix_ms"].as_i64();
    // The view advances while tmux answers.
    let first = as_of(&self_row(&m, 0)).expect("as_of_unix_ms on an ok row");
    wait_for("the view to advance", Duration::from_secs(5), || as_of(&self_row(&m, 0)) > Some(first));

    // A socket that accepts connections and never answers, as the roster's tmux socket.
    let hung = m.root().join("hung.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&hung).unwrap();
    let roster = m.nodes[0].home.join("fleet/roster.yaml");
    let text = std::fs::read_to_string(&roster).unwrap();
    let socket_line = text.lines().find(|l| l.starts_with("tmux:")).unwrap().to_string();
    std::fs::write(&roster, text.replace(&socket_line, &format!("tmux: {{ socket_path: \"{}\" }}", hung.display())))
        .unwrap();
    // FLEET_PROBE_INTERVAL_MS=500: the probe may take 5 s, one tmux call 4 s.
    let mut seen = None;
    wait_for("an error row naming the hung tmux", Duration::from_secs(15), || {
        let row = self_row(&m, 0);
        let ok = row["state"] == "error"
            && row["detail"]
                .as_str()
                .is_some_and(|d| d.contains("did not answer within 4000 ms") && d.contains("hung.sock"));
        seen = Some(row);
        ok
    });
    let stuck = as_of(seen.as_ref().unwrap()).expect("the last good view's time");
    std::thread::sleep(Duration::from_secs(2));
    let row = self_row(&m, 0);
    assert_eq!(as_of(&row), Some(stuck), "as_of_unix_ms advanced while tmux hangs: {row}");
    assert_eq!(row["state"], "error", "{row}");
    // People see the age in the table once the view is old.
    wait_for("the view's age in the table", Duration::from_secs(15), || {
        let (_, out, _) = m.at(0, &["ps"]);
        out.lines().any(|l| l.starts_with("solo") && l.contains("view ") && l.contains(" old"))
    });
    let took = terminate(pid);
    assert!(took < Duration::from_secs(3), "SIGTERM took {took:?}");
}

#[test]
fn a_hung_systemctl_is_killed_the_tmux_rows_keep_refreshing_and_nothing_outlives_the_node() {
    let mut m = Mesh::new("acme");
    m.add_host("solo", "  - { name: orch, runtime: stub }\n");
    m.start_agents(0);
    // A user systemd that is found (its socket exists) and a systemctl that never answers.
    let xdg = m.root().join("xdg");
    std::fs::create_dir_all(xdg.join("systemd")).unwrap();
    std::fs::write(xdg.join("systemd/private"), "").unwrap();
    let bin = m.root().join("hung-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let systemctl = bin.join("systemctl");
    // Not `exec`: the sleep is a grandchild of the node, as a real helper's children would be.
    std::fs::write(&systemctl, "#!/bin/sh\nsleep 60\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let xdg_s = xdg.display().to_string();
    // FLEET_PROBE_INTERVAL_MS=500: the probe may take 5 s, one systemctl call 4 s. The
    // node does not wait for a first probe that slow before it answers.
    let start = Instant::now();
    m.start_node_with(0, "127.0.0.1:0", &[], &[("PATH", &path), ("XDG_RUNTIME_DIR", &xdg_s)]);
    let took = start.elapsed();
    assert!(took < Duration::from_millis(4500), "the node answered only after {took:?}");
    let pid = m.nodes[0].pid.unwrap();

    // The probe ends: systemctl is killed, the rows are there (systemd n/a), the row says why.
    let mut row = serde_json::Value::Null;
    wait_for("an error row naming systemctl", Duration::from_secs(15), || {
        row = self_row(&m, 0);
        row["detail"].as_str().is_some_and(|d| d.contains("systemctl --user show did not answer within 4000 ms"))
    });
    assert_eq!(row["state"], "error", "{row}");
    let detail = row["detail"].as_str().unwrap();
    assert!(detail.contains("systemd could not be probed") && detail.contains("killed it, pid"), "{detail}");
    assert!(!detail.contains("has not finished"), "the probe itself finishes: {detail}");
    let first = row["as_of_unix_ms"].as_i64().expect("the probe completed: as_of_unix_ms is set");
    let rows = ps_json(&m, 0);
    let orch = agent(&rows, "orch").expect("orch listed while systemctl hangs");
    assert_eq!(orch["systemd"]["available"], false, "{orch}");

    // The tmux rows keep refreshing: a new session appears, and the view advances.
    m.tmux(0, &["new-session", "-d", "-s", "later", "sleep 1000"]);
    wait_for("a new session to appear while systemctl hangs", Duration::from_secs(15), || {
        agent(&ps_json(&m, 0), "later").is_some()
    });
    wait_for("the view to advance", Duration::from_secs(15), || {
        self_row(&m, 0)["as_of_unix_ms"].as_i64().is_some_and(|t| t > first)
    });

    let took = terminate(pid);
    assert!(took < Duration::from_secs(3), "SIGTERM took {took:?}");
    // Nothing the node started is left: the systemctl of the probe running at
    // shutdown was killed with its children.
    let mut left = leftover_sleepers(&bin);
    let start = Instant::now();
    while !left.is_empty() && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(50));
        left = leftover_sleepers(&bin);
    }
    for &p in &left {
        let _ =
            rustix::process::kill_process(rustix::process::Pid::from_raw(p).unwrap(), rustix::process::Signal::KILL);
    }
    assert!(left.is_empty(), "processes of the stand-in systemctl outlived the node: {left:?}");
}

/// The live processes (not zombies) started from the stand-in systemctl in
/// `bin` (found by the PATH in their environment): `sh` and its `sleep 60`.
fn leftover_sleepers(bin: &Path) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let env = String::from_utf8_lossy(&env);
        let ours = cmdline.starts_with(b"sleep\0" as &[u8]) || String::from_utf8_lossy(&cmdline).contains("systemctl");
        if ours && env.contains(&bin.display().to_string()) {
            out.push(pid);
        }
    }
    out
}

/// One node per tenant and host: a second `fleet node` on the same home is refused while the
/// first answers, and a node killed with SIGKILL (its socket file left behind) does not keep
/// the next one out. (A node still exiting takes connections and never answers: `fleet node`
/// waits for an answer, not for a connection; tests/queue.rs's crash test restarts in that window.)
#[test]
fn a_second_node_on_a_live_door_is_refused_and_a_dead_nodes_door_is_taken() {
    let mut m = Mesh::new("acme");
    m.add_host("c", "  - { name: coder, runtime: stub }\n");
    m.start_node(0, "127.0.0.1:0", &[]);
    let home = m.nodes[0].home.display().to_string();
    let env = [
        ("MOSAIC_HOME", home.as_str()),
        ("FLEET_LISTEN", "127.0.0.1:0"),
        ("FLEET_MDNS", "false"),
        ("FLEET_WEB_LISTEN", "127.0.0.1:0"),
    ];
    let (code, _, err) = m.run(&["node"], &env);
    assert_ne!(code, 0, "a second node on a live door: {err}");
    assert!(err.contains("another fleet node already answers"), "{err}");
    m.kill_node(0);
    assert!(m.nodes[0].home.join("fleet/node.sock").exists(), "the killed node's socket file stays");
    m.start_node(0, "127.0.0.1:0", &[]);
    let (code, _, err) = m.at(0, &["peers", "--json"]);
    assert_eq!(code, 0, "the new node answers: {err}");
}
