//! Several hosts on one simulated LAN: Linux network namespaces joined by a
//! bridge (see netns_util.rs), a real `fleet node` inside each namespace,
//! mutual TLS with certificates made in the test, real tmux, stub agents.
//! Root required: run with `--include-ignored` as root.

#[path = "netns_util.rs"]
mod netns_util;

use netns_util::{HostId, Lab, wait_for};
use std::time::{Duration, Instant};

/// Three hosts a, b, c on one bridge, agents running; a has b and c as static
/// peers, b and c none.
fn three() -> Lab {
    let mut lab = Lab::new("acme");
    let a = lab.add_host("a", "  - { name: orch, runtime: stub, class: orchestrator }\n");
    let b = lab.add_host("b", "  - { name: rev, runtime: stub, class: reviewer }\n");
    let c = lab.add_host("c", "  - { name: coder, runtime: stub }\n  - { name: quiet, runtime: quiet }\n");
    for h in [a, b, c] {
        lab.start_agents(h);
    }
    lab.start_node(b, &[]);
    lab.start_node(c, &[]);
    lab.start_node(a, &[b, c]);
    lab
}

fn host_row<'a>(rows: &'a [serde_json::Value], host: &str) -> Option<&'a serde_json::Value> {
    rows.iter().find(|r| r["record"] == "host" && r["host"] == host)
}

fn agents_of(rows: &[serde_json::Value]) -> Vec<(String, String)> {
    rows.iter()
        .filter(|r| r["record"] == "agent")
        .map(|r| (r["name"].as_str().unwrap_or("").to_string(), r["host"].as_str().unwrap_or("").to_string()))
        .collect()
}

fn all_ok(lab: &Lab, h: HostId) -> bool {
    let rows = lab.ps_json(h);
    ["a", "b", "c"].iter().all(|n| host_row(&rows, n).is_some_and(|r| r["state"] == "ok"))
}

#[test]
#[ignore = "needs root: network namespaces"]
fn merged_ps_across_namespaces_lists_every_host() {
    let lab = three();
    let (a, b, c) = (lab.host("a"), lab.host("b"), lab.host("c"));
    let fp = lab.footprint();

    // No way out of the lab: no default route in a host namespace.
    let routes = lab.exec_in(a, "ip", &["route", "show"]).stdout;
    assert!(!routes.contains("default"), "{routes}");
    assert!(routes.contains(&format!("10.213.{}.0/24", lab.subnet)), "{routes}");

    // a dials its peers on their namespace addresses, across the bridge.
    let peers = lab.peers_json(a);
    let me = peers.iter().find(|p| p["found_by"] == "self").expect("a self row");
    assert_eq!(me["grpc_address"], lab.addr(a).as_str(), "{peers:#?}");

    wait_for("every host ok in a's ps", Duration::from_secs(10), || all_ok(&lab, a));
    let rows = lab.ps_json(a);
    let agents = agents_of(&rows);
    for (name, host) in [("orch", "a"), ("rev", "b"), ("coder", "c"), ("quiet", "c")] {
        assert!(agents.contains(&(name.into(), host.into())), "{name}@{host} missing from {agents:?}");
    }
    assert_eq!(agents.len(), 4, "{agents:?}");
    assert!(rows.iter().all(|r| r["tenant_id"] == "acme"), "{rows:#?}");
    assert!(rows.iter().all(|r| r["host"].is_string()), "{rows:#?}");
    for h in ["a", "b", "c"] {
        let row = host_row(&rows, h).unwrap_or_else(|| panic!("no host row {h}: {rows:#?}"));
        assert_eq!(row["state"], "ok", "{rows:#?}");
    }
    let b_row = host_row(&rows, "b").unwrap();
    assert_eq!(b_row["agent_count"], 1, "{b_row}");
    assert_eq!(host_row(&rows, "c").unwrap()["agent_count"], 2);

    // Membership is symmetric: b and c, which have no static peers, learn the
    // whole mesh from a's announce and gossip, and list every agent too.
    for h in [b, c] {
        wait_for("every host ok from b and c", Duration::from_secs(10), || all_ok(&lab, h));
        let mut seen = agents_of(&lab.ps_json(h));
        seen.sort();
        let mut all = agents.clone();
        all.sort();
        assert_eq!(seen, all);
    }

    drop(lab);
    fp.assert_gone();
}

#[test]
#[ignore = "needs root: network namespaces"]
fn a_cut_link_is_a_prompt_non_ok_row_and_heals_without_restarts() {
    let lab = three();
    let (a, c) = (lab.host("a"), lab.host("c"));
    let fp = lab.footprint();
    let pids: Vec<Option<u32>> = lab.hosts.iter().map(|h| h.pid).collect();
    wait_for("every host ok in a's ps", Duration::from_secs(10), || all_ok(&lab, a));

    lab.cut_link(c);
    // `--fresh` asks every host now: c's row is not ok at once.
    let t = Instant::now();
    let fresh = lab.fleet(a, &["ps", "--json", "--fresh"]);
    let took = t.elapsed();
    assert!(fresh.ok(), "ps --fresh: {}", fresh.stderr);
    let rows: Vec<serde_json::Value> = fresh.json();
    assert!(took < Duration::from_secs(2), "ps --fresh with c cut off took {took:?} (fan-out deadline 1 s)");
    eprintln!("ps --fresh on a with c cut off answered in {took:?}");
    let row = host_row(&rows, "c").unwrap_or_else(|| panic!("c is still a row: {rows:#?}")).clone();
    assert_ne!(row["state"], "ok", "{row}");
    assert!(rows.iter().all(|r| !(r["record"] == "agent" && r["host"] == "c")), "{rows:#?}");
    assert_eq!(host_row(&rows, "b").unwrap()["state"], "ok");
    assert!(agents_of(&rows).contains(&("rev".into(), "b".into())));
    // The replicated view says so within the detection time (membership: about 5 s),
    // answering promptly all the while.
    let said = wait_for("c not ok in a's ps (from memory)", Duration::from_secs(8), || {
        let t = Instant::now();
        let rows = lab.ps_json(a);
        assert!(t.elapsed() < Duration::from_secs(2), "ps took {:?}", t.elapsed());
        host_row(&rows, "c").is_some_and(|r| r["state"] != "ok")
            && rows.iter().all(|r| !(r["record"] == "agent" && r["host"] == "c"))
    });
    eprintln!("a's replicated view said c is not ok {said:?} after the cut");

    lab.restore_link(c);
    let healed = wait_for("c ok again in a's ps", Duration::from_secs(10), || {
        let rows = lab.ps_json(a);
        host_row(&rows, "c").is_some_and(|r| r["state"] == "ok")
            && agents_of(&rows).contains(&("coder".into(), "c".into()))
    });
    eprintln!("c healed {healed:?} after the link was restored");
    let now: Vec<Option<u32>> = lab.hosts.iter().map(|h| h.pid).collect();
    assert_eq!(pids, now, "nothing was restarted");
    // Checked last, so that the healing above is checked whatever this says:
    // a peer that says nothing within the deadline is a timeout (or, when the
    // network tells, unreachable), not an error.
    assert!(
        row["state"] == "timeout" || row["state"] == "unreachable",
        "c's row while cut off should say timeout (or unreachable), not {}: {row} \
         (a silent peer's call ended by the client's grpc-timeout comes back as CANCELLED \"Timeout expired\")",
        row["state"]
    );

    drop(lab);
    fp.assert_gone();
}

#[test]
#[ignore = "needs root: network namespaces"]
fn a_verified_send_crosses_the_bridge() {
    let lab = three();
    let (a, c) = (lab.host("a"), lab.host("c"));
    let fp = lab.footprint();
    wait_for("coder@c healthy in a's ps", Duration::from_secs(10), || {
        lab.ps_json(a).iter().any(|r| r["name"] == "coder" && r["host"] == "c" && r["heartbeat"]["health"] == "healthy")
    });
    let o = lab.fleet(a, &["send", "coder@c", "--verify", "--from", "orch", "-m", "review the parser"]);
    assert!(o.ok(), "exit {}: {}{}", o.code, o.stdout, o.stderr);
    assert!(o.stdout.starts_with("accepted: coder@c"), "{}", o.stdout);
    let screen = lab.capture(c, "coder");
    assert!(screen.contains("accepted: [a:orch -> c:coder] review the parser"), "{screen}");
    // The target's audit log has the forwarding node, seen at a's namespace address.
    let audit = std::fs::read_to_string(lab.hosts[c].home.join("fleet/audit.log")).unwrap_or_default();
    let line =
        audit.lines().find(|l| l.contains("coder@c")).unwrap_or_else(|| panic!("no send in c's audit log: {audit}"));
    assert!(line.contains("node:a@acme"), "{line}");
    assert!(line.contains(&lab.hosts[a].ip.to_string()), "peer address is a's namespace address: {line}");

    drop(lab);
    fp.assert_gone();
}

#[test]
#[ignore = "needs root: network namespaces"]
fn kill_and_restart_a_node_in_its_namespace() {
    let mut lab = three();
    let (a, c) = (lab.host("a"), lab.host("c"));
    wait_for("every host ok in a's ps", Duration::from_secs(10), || all_ok(&lab, a));
    let old_pid = lab.hosts[c].pid;
    lab.kill_node(c);
    // Nobody watches a's events, so a holds no connection to c that could break: its
    // ps says so once membership suspects c (stale), at the latest when it declares c
    // down (unreachable), within the detection time.
    let t = std::time::Instant::now();
    wait_for("c stale or not ok in a's ps", Duration::from_secs(8), || {
        host_row(&lab.ps_json(a), "c").is_some_and(|r| r["state"] != "ok" || r["stale"] == true)
    });
    assert!(t.elapsed() < Duration::from_secs(6), "c still ok {:?} after kill -9", t.elapsed());
    lab.restart_node(c);
    wait_for("c ok again after its restart", Duration::from_secs(10), || {
        host_row(&lab.ps_json(a), "c").is_some_and(|r| r["state"] == "ok")
    });
    assert_ne!(lab.hosts[c].pid, old_pid);
    // Both the killed node and its successor are gone with the lab.
    let mut fp = lab.footprint();
    fp.pids.extend(old_pid.map(|p| p as i32));
    drop(lab);
    fp.assert_gone();
}

#[test]
#[ignore = "needs root: network namespaces"]
fn the_lab_cleans_up_after_a_panicking_test() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::panic::catch_unwind(move || {
        let mut lab = Lab::new("acme");
        let a = lab.add_host("a", "  - { name: orch, runtime: stub }\n");
        let b = lab.add_host("b", "  - { name: rev, runtime: stub }\n");
        lab.start_agents(a);
        lab.start_agents(b);
        lab.start_node(b, &[]);
        lab.start_node(a, &[b]);
        let fp = lab.footprint();
        tx.send(fp.clone()).unwrap();
        assert!(fp.pids.len() >= 4, "nodes, tmux servers and agents run in the namespaces: {fp:?}");
        panic!("a test failing half way");
    });
    assert!(result.is_err());
    let fp = rx.recv().unwrap();
    assert!(fp.namespaces.iter().all(|n| n.starts_with("fleetnt-")), "{fp:?}");
    fp.assert_gone();
}

fn peer_of(lab: &Lab, h: HostId, host: &str) -> Option<serde_json::Value> {
    lab.peers_json(h).into_iter().find(|p| p["host"] == host)
}

/// Three hosts, no static peers, mDNS on: they find each other.
fn three_by_mdns() -> Lab {
    let mut lab = Lab::new("acme");
    let hosts = [
        lab.add_host("a", "  - { name: orch, runtime: stub, class: orchestrator }\n"),
        lab.add_host("b", "  - { name: rev, runtime: stub, class: reviewer }\n"),
        lab.add_host("c", "  - { name: coder, runtime: stub }\n"),
    ];
    for h in hosts {
        lab.start_agents(h);
    }
    for h in hosts {
        lab.start_node_with(h, vec![], &[("FLEET_MDNS", "true")]);
    }
    lab
}

#[test]
#[ignore = "needs root: network namespaces"]
fn mdns_discovery_then_a_cut_link_is_down_within_the_bound_and_heals() {
    let lab = three_by_mdns();
    let fp = lab.footprint();
    let (a, b, c) = (lab.host("a"), lab.host("b"), lab.host("c"));
    // (a) no static peers: mDNS seeds membership; every host lists every agent within 5 s.
    let took = wait_for("every agent on every host", Duration::from_secs(5), || {
        [a, b, c].iter().all(|&h| agents_of(&lab.ps_json(h)).len() == 3 && all_ok(&lab, h))
    });
    eprintln!("mesh formed by mDNS in {took:?}");
    // Each member was first found by mDNS or, when a third node told of it first, by gossip.
    let how: Vec<String> = [a, b, c]
        .iter()
        .flat_map(|&h| lab.peers_json(h))
        .filter(|p| p["found_by"] != "self")
        .map(|p| p["found_by"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(how.iter().all(|f| f == "mdns" || f == "gossip"), "{how:?}");
    assert!(how.iter().any(|f| f == "mdns"), "{how:?}");

    // (b) cut c's link: the others mark it down within the detection bound (about 5 s),
    // and a's ps answers at once with c as an unreachable row.
    lab.cut_link(c);
    let down = wait_for("c down on a and b", Duration::from_secs(8), || {
        [a, b].iter().all(|&h| peer_of(&lab, h, "c").is_some_and(|p| p["state"] == "down"))
    });
    eprintln!("c down everywhere {down:?} after the cut");
    let t = Instant::now();
    let rows = lab.ps_json(a);
    assert!(t.elapsed() < Duration::from_millis(500), "ps took {:?} with c down", t.elapsed());
    assert_eq!(host_row(&rows, "c").unwrap()["state"], "unreachable", "{rows:#?}");
    // Restore: alive again, nothing restarted. Usually within 2 s (down members are announced
    // to every 2 s, seeds every 3 s); in the full suite, with every namespace test running at
    // once on 2 cores, it took more than 10 s three times in eight runs of this session (cause
    // not found; issue note), so the bound here is 20 s and the time is printed.
    let generation = peer_of(&lab, a, "c").unwrap()["generation"].clone();
    lab.restore_link(c);
    let up = wait_for("c alive again", Duration::from_secs(20), || {
        [a, b].iter().all(|&h| peer_of(&lab, h, "c").is_some_and(|p| p["state"] == "alive"))
    });
    eprintln!("c alive again {up:?} after the restore");
    assert_eq!(peer_of(&lab, a, "c").unwrap()["generation"], generation, "same process, same generation");
    wait_for("c ok in ps", Duration::from_secs(5), || all_ok(&lab, a));
    drop(lab);
    fp.assert_gone();
}

#[test]
#[ignore = "needs root: network namespaces"]
fn a_killed_node_is_down_and_rejoins_as_a_new_generation() {
    let mut lab = three();
    let fp = lab.footprint();
    let (a, b, c) = (lab.host("a"), lab.host("b"), lab.host("c"));
    wait_for("c known to b by gossip", Duration::from_secs(10), || {
        peer_of(&lab, b, "c").is_some_and(|p| p["state"] == "alive" && p["found_by"] == "gossip")
    });
    let before = peer_of(&lab, a, "c").unwrap()["generation"].clone();
    lab.kill_node(c);
    wait_for("c down on a", Duration::from_secs(8), || peer_of(&lab, a, "c").is_some_and(|p| p["state"] == "down"));
    lab.restart_node(c);
    wait_for("c back as a new generation", Duration::from_secs(10), || {
        peer_of(&lab, a, "c").is_some_and(|p| p["state"] == "alive" && p["generation"] != before)
    });
    wait_for("c ok in a's ps", Duration::from_secs(5), || all_ok(&lab, a));
    drop(lab);
    fp.assert_gone();
}

/// Debug logs of the mDNS browser (each record it drops, and why); info for everything else.
const MDNS_DEBUG_LOG: (&str, &str) = ("RUST_LOG", "info,fleet_node::mdns=debug");

/// The short mesh id of a CA (the TXT `mesh` value of its nodes).
fn mesh_of(ca_dir: &std::path::Path) -> String {
    let der = fleet_tls::show::read_single_cert(&ca_dir.join("ca.pem")).expect("read the CA certificate");
    fleet_tls::show::mesh_fingerprint(&der)
}

/// Whether host `h`'s mDNS browser logged dropping the record `instance` as one of `tenant`.
fn dropped_as_other_tenant(lab: &Lab, h: HostId, instance: &str, tenant: &str) -> bool {
    let reason = format!("reason=another tenant ({tenant})");
    lab.log(h).lines().any(|l| {
        l.contains("mdns: ignoring a record") && l.contains(&format!("instance={instance}.")) && l.contains(&reason)
    })
}

/// Host `h`'s node log lines where it took `host` for a member (mDNS found it, or membership names it).
fn log_mentions_as_member(lab: &Lab, h: HostId, host: &str) -> Vec<String> {
    let field = format!("host={host} ");
    lab.log(h)
        .lines()
        .filter(|l| l.contains(&field) && !l.contains("mdns: ignoring a record"))
        .map(String::from)
        .collect()
}

/// The hosts in a `fleet peers --json`, sorted.
fn peer_hosts(peers: &[serde_json::Value]) -> Vec<String> {
    let mut hosts: Vec<String> = peers.iter().map(|p| p["host"].as_str().unwrap_or("").to_string()).collect();
    hosts.sort();
    hosts
}

#[test]
#[ignore = "needs root: network namespaces"]
fn a_node_of_another_tenant_on_the_lan_is_seen_by_mdns_and_never_joined_or_merged() {
    // (d) One LAN (one bridge): a and b of acme (the lab's CA), x of globex with a CA of its own.
    let mut lab = Lab::new("acme");
    let a = lab.add_host("a", "  - { name: orch, runtime: stub, class: orchestrator }\n");
    let b = lab.add_host("b", "  - { name: rev, runtime: stub, class: reviewer }\n");
    let x = lab.add_foreign_host("x", "globex", "  - { name: spy, runtime: stub }\n");
    assert_eq!((lab.hosts[x].tenant.as_str(), lab.hosts[a].tenant.as_str()), ("globex", "acme"));
    let (acme_mesh, globex_mesh) = (mesh_of(&lab.ca_dir()), mesh_of(&lab.foreign_ca_dir("globex")));
    assert_ne!(acme_mesh, globex_mesh, "x's CA is not the lab's");
    for h in [a, b, x] {
        lab.start_agents(h);
    }
    // No static peers anywhere; mDNS on. x first, so that its record is on the wire when a and b browse.
    let env = [("FLEET_MDNS", "true"), MDNS_DEBUG_LOG];
    for h in [x, a, b] {
        lab.start_node_with(h, vec![], &env);
    }
    let fp = lab.footprint();

    let alive = |h: HostId, other: &str| peer_of(&lab, h, other).is_some_and(|p| p["state"] == "alive");
    let took = wait_for("a and b alive to each other", Duration::from_secs(5), || alive(a, "b") && alive(b, "a"));
    eprintln!("a and b list each other alive {took:?} after b's node answered");

    // x's announcement is on the LAN: the browsers of a and b resolved it and dropped it for its
    // tenant (before any connection), and x's browser did the same with theirs.
    wait_for("a and b to drop x's record as another tenant's", Duration::from_secs(10), || {
        [a, b].iter().all(|&h| dropped_as_other_tenant(&lab, h, "x@globex", "globex"))
    });
    wait_for("x to drop a's and b's records as another tenant's", Duration::from_secs(10), || {
        ["a@acme", "b@acme"].iter().all(|i| dropped_as_other_tenant(&lab, x, i, "acme"))
    });
    let seen = lab.log(a).lines().find(|l| l.contains("instance=x@globex.")).unwrap_or_default().to_string();
    eprintln!("a's node saw x on the LAN: {seen}");
    wait_for("a and b to merge each other's agents", Duration::from_secs(10), || {
        [a, b].iter().all(|&h| {
            let rows = lab.ps_json(h);
            ["a", "b"].iter().all(|n| host_row(&rows, n).is_some_and(|r| r["state"] == "ok"))
                && agents_of(&rows).len() == 2
        })
    });

    // Never joined, never merged: checked again and again over several probe rounds (500 ms) after all that.
    let until = Instant::now() + Duration::from_secs(3);
    let mut rounds = 0;
    loop {
        for h in [a, b] {
            let me = &lab.hosts[h].name;
            let peers = lab.peers_json(h);
            assert_eq!(peer_hosts(&peers), ["a", "b"], "x must never be a member of {me}'s mesh: {peers:#?}");
            assert!(peers.iter().all(|p| p["tenant_id"] == "acme"), "{peers:#?}");
            let rows = lab.ps_json(h);
            assert!(
                rows.iter().all(|r| r["host"] != "x" && r["tenant_id"] != "globex" && r["name"] != "spy"),
                "x (host row or agents) merged into {me}'s ps: {rows:#?}"
            );
            let mut agents = agents_of(&rows);
            agents.sort();
            assert_eq!(agents, [("orch".to_string(), "a".to_string()), ("rev".into(), "b".into())], "{rows:#?}");
        }
        let peers = lab.peers_json(x);
        assert_eq!(peer_hosts(&peers), ["x"], "x must know nobody of acme: {peers:#?}");
        assert_eq!(peers[0]["found_by"], "self", "{peers:#?}");
        let rows = lab.ps_json(x);
        assert!(rows.iter().all(|r| r["host"] == "x" && r["tenant_id"] == "globex"), "{rows:#?}");
        assert_eq!(agents_of(&rows), [("spy".to_string(), "x".to_string())], "{rows:#?}");
        rounds += 1;
        if Instant::now() >= until {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("x stayed apart for {rounds} rounds of checks");
    // Nor did any node take the other tenant's host for a member, even for a moment.
    for (h, other) in [(a, "x"), (b, "x"), (x, "a"), (x, "b")] {
        let lines = log_mentions_as_member(&lab, h, other);
        assert!(lines.is_empty(), "{}'s log names {other} as a member: {lines:#?}", lab.hosts[h].name);
    }
    // `fleet doctor` on a names x as a node of another mesh on the LAN, and b as one of its own.
    let o = lab.fleet(a, &["doctor", "--json"]);
    let checks: Vec<serde_json::Value> = serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o:?}"));
    let find = |name: &str| checks.iter().find(|c| c["check"] == name).cloned().unwrap_or_default();
    let other = find("other meshes");
    assert_eq!(other["status"], "warn", "{checks:#?}");
    assert!(other["detail"].as_str().unwrap().contains("x (tenant globex, mesh CA "), "{other}");
    assert!(find("mdns")["detail"].as_str().unwrap().contains("this mesh's nodes on the LAN: b"), "{checks:#?}");
    assert_eq!(find("membership")["status"], "ok", "{checks:#?}");
    drop(lab);
    fp.assert_gone();
}

/// Whether `program` can be run (found on PATH).
fn on_path(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

/// A private D-Bus bus (the "system" bus of avahi, used by nothing else) and an avahi-daemon on
/// it, both inside host `h`'s namespace and owned by the lab (killed by pid when it is dropped).
/// avahi-daemon runs in a mount namespace of its own where the lab's `avahi/run` is mounted on
/// /run, so its pid file and socket stay in the lab's dir and a system avahi is never in the way.
/// Returns the bus address (for `DBUS_SYSTEM_BUS_ADDRESS`) and the daemon's log path.
fn start_avahi(lab: &mut Lab, h: HostId) -> (String, std::path::PathBuf) {
    use std::fs::{File, create_dir_all, write};
    use std::process::Stdio;
    let dir = lab.root().join("avahi");
    let run = dir.join("run");
    create_dir_all(&run).unwrap();
    let bus = dir.join("bus");
    let address = format!("unix:path={}", bus.display());
    let bus_conf = dir.join("bus.conf");
    write(
        &bus_conf,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>{address}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#
        ),
    )
    .unwrap();
    let avahi_conf = dir.join("avahi-daemon.conf");
    // Browse only (publish nothing of its own), IPv4, on the host's own link only.
    write(
        &avahi_conf,
        format!(
            "[server]\nuse-ipv4=yes\nuse-ipv6=no\nallow-interfaces={}\nenable-dbus=yes\n\
             [wide-area]\nenable-wide-area=no\n[publish]\ndisable-publishing=yes\n",
            lab.hosts[h].iface
        ),
    )
    .unwrap();

    let dbus_log = dir.join("dbus-daemon.log");
    let out = File::create(&dbus_log).unwrap();
    let err = out.try_clone().unwrap();
    let mut cmd = lab.command_in(h, "dbus-daemon");
    cmd.arg(format!("--config-file={}", bus_conf.display()))
        .args(["--nofork", "--print-address"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let dbus = lab.adopt(cmd.spawn().expect("start dbus-daemon"));
    wait_for("the private bus socket", Duration::from_secs(5), || {
        assert!(
            netns_util::pid_alive(dbus as i32),
            "dbus-daemon exited: {}",
            std::fs::read_to_string(&dbus_log).unwrap()
        );
        bus.exists()
    });

    let avahi_log = dir.join("avahi-daemon.log");
    let out = File::create(&avahi_log).unwrap();
    let err = out.try_clone().unwrap();
    let mut cmd = lab.command_in(h, "unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "mount --bind \"$1\" /run && mkdir -p /run/avahi-daemon && \
             exec avahi-daemon --no-drop-root --no-chroot --no-rlimits --no-proc-title --debug -f \"$2\"",
        )
        .arg("sh")
        .args([&run, &avahi_conf])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // unshare and sh exec: this pid is avahi-daemon's.
    let avahi = lab.adopt(cmd.spawn().expect("start avahi-daemon"));
    wait_for("avahi-daemon to start up", Duration::from_secs(10), || {
        let log = std::fs::read_to_string(&avahi_log).unwrap_or_default();
        assert!(netns_util::pid_alive(avahi as i32), "avahi-daemon exited:\n{log}");
        log.contains("Server startup complete")
    });
    (address, avahi_log)
}

/// `avahi-browse -rpt _fleet-mesh._tcp` in host `h`'s namespace against the bus at `address`:
/// the resolved (`=`) lines, split into their `;`-separated fields, and the whole output.
fn avahi_browse(lab: &Lab, h: HostId, address: &str) -> (Vec<Vec<String>>, String) {
    let o = lab
        .command_in(h, "timeout")
        .args(["15", "avahi-browse", "-rpt", "_fleet-mesh._tcp"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", address)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run avahi-browse");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let resolved = stdout
        .lines()
        .filter(|l| l.starts_with("=;"))
        .map(|l| l.split(';').map(String::from).collect::<Vec<_>>())
        .collect();
    (resolved, format!("exit {:?}\nstdout:\n{stdout}stderr:\n{}", o.status.code(), String::from_utf8_lossy(&o.stderr)))
}

/// A name as `avahi-browse -p` prints it, unescaped: `\DDD` is the byte DDD (decimal), `\c` is c.
fn avahi_unescape(s: &str) -> String {
    let (b, mut out, mut i) = (s.as_bytes(), Vec::new(), 0);
    while i < b.len() {
        if b[i] == b'\\' {
            let code = b.get(i + 1..i + 4).filter(|d| d.iter().all(u8::is_ascii_digit));
            if let Some(n) = code.and_then(|d| std::str::from_utf8(d).ok()?.parse::<u8>().ok()) {
                out.push(n);
                i += 4;
                continue;
            }
            if let Some(&c) = b.get(i + 1) {
                out.push(c);
                i += 2;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The items of a TXT field of `avahi-browse -p` (`"k=v" "k=v" ...`), sorted.
fn txt_items(field: &str) -> Vec<String> {
    let mut items: Vec<String> = field.split_whitespace().map(|t| t.trim_matches('"').to_string()).collect();
    items.sort();
    items
}

#[test]
#[ignore = "needs root: network namespaces"]
fn avahi_browse_sees_our_announcement_with_its_txt_keys() {
    // (f) Debian's avahi-utils: `apt-get install -y avahi-daemon avahi-utils dbus`.
    if !on_path("avahi-browse") {
        eprintln!(
            "SKIPPED: avahi-browse is not installed \
             (Debian: apt-get install -y avahi-daemon avahi-utils dbus)"
        );
        return;
    }
    for tool in ["avahi-daemon", "dbus-daemon", "unshare", "timeout"] {
        assert!(on_path(tool), "avahi-browse is installed but {tool} is not (apt-get install -y avahi-daemon dbus)");
    }
    let mut lab = Lab::new("acme");
    let a = lab.add_host("a", "  - { name: orch, runtime: stub }\n");
    let b = lab.add_host("b", "  - { name: rev, runtime: stub }\n");
    // The watcher: avahi only, no node.
    let w = lab.add_host("w", "  - { name: idle, runtime: stub }\n");
    let (address, avahi_log) = start_avahi(&mut lab, w);
    for h in [a, b] {
        lab.start_node_with(h, vec![], &[("FLEET_MDNS", "true")]);
    }
    let fp = lab.footprint();
    assert!(fp.pids.len() >= 4, "dbus-daemon, avahi-daemon and two nodes run in the lab: {fp:?}");
    let mesh = mesh_of(&lab.ca_dir());

    let mut last = String::new();
    let mut lines = vec![];
    let took = wait_for("avahi-browse to resolve a's and b's services over IPv4", Duration::from_secs(30), || {
        let (resolved, all) = avahi_browse(&lab, w, &address);
        last = all;
        lines = resolved.into_iter().filter(|f| f.len() >= 10 && f[2] == "IPv4").collect();
        ["host=a", "host=b"].iter().all(|want| lines.iter().any(|f| txt_items(&f[9]).iter().any(|t| t == want)))
    });
    eprintln!("avahi-browse resolved both services {took:?} after the nodes answered:\n{last}");
    for h in [a, b] {
        let name = lab.hosts[h].name.clone();
        let me = lab.peers_json(h).into_iter().find(|p| p["found_by"] == "self").expect("self row");
        let generation = me["generation"].as_u64().unwrap_or_else(|| panic!("generation of {me}"));
        let host = format!("host={name}");
        let f = lines
            .iter()
            .find(|f| txt_items(&f[9]).contains(&host))
            .unwrap_or_else(|| panic!("no resolved line for {name}:\n{last}"));
        // =;IFACE;IPv4;NAME;TYPE;DOMAIN;HOSTNAME;ADDRESS;PORT;TXT
        assert_eq!(f[1], lab.hosts[w].iface, "{f:?}");
        assert_eq!(avahi_unescape(&f[3]), format!("{name}@acme"), "instance name: {f:?}");
        assert_eq!((f[4].as_str(), f[5].as_str()), ("_fleet-mesh._tcp", "local"), "{f:?}");
        assert_eq!(f[6], format!("fleet-acme-{name}.local"), "SRV target: {f:?}");
        assert_eq!(f[7], lab.hosts[h].ip.to_string(), "address: {f:?}");
        assert_eq!(f[8], netns_util::PORT.to_string(), "SRV port: {f:?}");
        let mut want = vec![
            "v=1".to_string(),
            "tenant=acme".into(),
            host.clone(),
            format!("mesh={mesh}"),
            format!("grpc={}", netns_util::PORT),
            format!("quic={}", netns_util::PORT),
            format!("gen={generation}"),
        ];
        want.sort();
        assert_eq!(txt_items(&f[9]), want, "TXT of {name}: {f:?}");
    }
    // avahi-daemon --debug logs every packet it rejects ("Invalid response packet from host ...",
    // "Received invalid packet.", ...): none of ours.
    let log = std::fs::read_to_string(&avahi_log).unwrap_or_default();
    eprintln!("avahi-daemon log:\n{log}");
    assert!(!log.to_lowercase().contains("invalid"), "avahi-daemon found packets malformed:\n{log}");
    drop(lab);
    fp.assert_gone();
}

/// A static peer named by a host name that does not resolve when the node
/// starts (the name service is not up yet, or the name is not there yet) is
/// joined once it resolves, without a restart; until then the log says so.
#[test]
#[ignore = "needs root: network namespaces"]
fn a_static_peer_name_that_resolves_later_is_joined() {
    let mut lab = Lab::new("acme");
    let a = lab.add_host("a", "  - { name: orch, runtime: stub }\n");
    let b = lab.add_host("b", "  - { name: rev, runtime: stub }\n");
    // a's own /etc/hosts without b's name, and no name server (nothing leaves the lab).
    let name = "b-node.lab.invalid";
    lab.etc_file(a, "resolv.conf", "options attempts:1 timeout:1\n");
    lab.etc_file(a, "hosts", "127.0.0.1 localhost\n");
    let fp = lab.footprint();
    for h in [a, b] {
        lab.start_agents(h);
    }
    lab.start_node(b, &[]);
    lab.start_node_with(a, vec![format!("{name}:{}", netns_util::PORT)], &[]);
    wait_for("a to log that the static peer does not resolve", Duration::from_secs(10), || {
        lab.log(a).contains("static peer does not resolve")
    });
    assert!(peer_of(&lab, a, "b").is_none(), "{:#?}", lab.peers_json(a));
    lab.etc_file(a, "hosts", &format!("127.0.0.1 localhost\n{} {name}\n", lab.hosts[b].ip));
    let took = wait_for("b alive on a, found by its static name", Duration::from_secs(10), || {
        peer_of(&lab, a, "b").is_some_and(|p| p["state"] == "alive" && p["found_by"] == "static")
    });
    eprintln!("joined {took:?} after the name resolved");
    wait_for("b's agents in a's ps", Duration::from_secs(5), || {
        let rows = lab.ps_json(a);
        host_row(&rows, "b").is_some_and(|r| r["state"] == "ok") && agents_of(&rows).len() == 2
    });
    assert!(lab.log(a).contains("static peer resolves"), "{}", lab.log(a));
    // `last_seen` keeps up with the datagrams (a probe a second), not with the last state change.
    std::thread::sleep(Duration::from_secs(4));
    let seen = peer_of(&lab, a, "b").unwrap()["last_seen_unix_ms"].as_i64().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!(now - seen < 2500, "b last seen {} ms ago, 4 s after it joined", now - seen);
    drop(lab);
    fp.assert_gone();
}

// ---------------------------------------------------------------- seeing agents on another host

/// Hosts a and c on one bridge: `orch` on a, `coder` (a stub REPL) on c; a
/// has c as its static peer. Returns once a can tail c's agent.
fn a_and_c() -> Lab {
    let mut lab = Lab::new("acme");
    let a = lab.add_host("a", "  - { name: orch, runtime: stub, class: orchestrator }\n");
    let c = lab.add_host("c", "  - { name: coder, runtime: stub }\n");
    lab.start_agents(a);
    lab.start_agents(c);
    lab.start_node(c, &[]);
    lab.start_node(a, &[c]);
    wait_for("a to reach coder@c", Duration::from_secs(10), || lab.fleet(a, &["tail", "coder@c", "-n", "1"]).ok());
    lab
}

/// Type `text` and Enter into `agent`'s pane on host `h` directly (tmux on
/// that host), and wait until the REPL has taken it.
fn type_at(lab: &Lab, h: HostId, agent: &str, text: &str) {
    let target = format!("={agent}:");
    lab.tmux(h, &["send-keys", "-t", &target, "-l", text]);
    lab.tmux(h, &["send-keys", "-t", &target, "Enter"]);
    wait_for(&format!("{text:?} accepted on {agent}"), Duration::from_secs(5), || {
        lab.capture(h, agent).contains(&format!("accepted: {text}"))
    });
}

/// The tmux clients attached to `agent`'s session on host `h`, one line each.
fn clients_of(lab: &Lab, h: HostId, agent: &str) -> Vec<String> {
    lab.tmux(h, &["list-clients", "-F", "#{client_name} #{session_name} #{client_flags}"])
        .lines()
        .filter(|l| l.split(' ').nth(1) == Some(agent))
        .map(String::from)
        .collect()
}

#[test]
#[ignore = "needs root: network namespaces"]
fn tail_and_tail_follow_across_namespaces_show_what_a_repl_printed_then_a_new_line() {
    let mut lab = a_and_c();
    let (a, c) = (lab.host("a"), lab.host("c"));
    let fp = lab.footprint();
    // The REPL on c prints two lines (typed there, not sent through the mesh).
    type_at(&lab, c, "coder", "first line on c");
    type_at(&lab, c, "coder", "second line on c");

    let o = lab.fleet(a, &["tail", "coder@c", "-n", "4"]);
    assert!(o.ok(), "exit {}: {}", o.code, o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(
        lines,
        ["accepted: first line on c", "> second line on c", "accepted: second line on c", "> "],
        "{}",
        o.stdout
    );

    let mut child = lab
        .command_in(a, netns_util::FLEET)
        .args(["tail", "coder@c", "--follow", "-n", "3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    lab.adopt(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines() {
            if tx.send((Instant::now(), line.unwrap_or_default())).is_err() {
                return;
            }
        }
    });
    let mut seen: Vec<String> = vec![];
    let take = |seen: &mut Vec<String>| {
        while let Ok((at, l)) = rx.try_recv() {
            seen.push(l);
            if seen.last().is_some_and(|l| l.contains("third line on c")) {
                return Some(at);
            }
        }
        None
    };
    // First the last lines of the pane as it is...
    wait_for("the follower's tail", Duration::from_secs(10), || {
        take(&mut seen);
        seen.iter().any(|l| l == "accepted: second line on c")
    });
    assert_eq!(seen[..2], ["> second line on c", "accepted: second line on c"], "{seen:?}");
    // ...then what the REPL prints after.
    let t0 = Instant::now();
    let target = "=coder:";
    lab.tmux(c, &["send-keys", "-t", target, "-l", "third line on c"]);
    lab.tmux(c, &["send-keys", "-t", target, "Enter"]);
    let mut arrived = None;
    wait_for("the new line at the follower on a", Duration::from_secs(10), || {
        let at = take(&mut seen);
        arrived = arrived.or(at);
        arrived.is_some() && seen.iter().any(|l| l.contains("accepted: third line on c"))
    });
    eprintln!(
        "the typed line reached `fleet tail --follow` on a {} ms after send-keys on c started",
        arrived.unwrap().duration_since(t0).as_millis()
    );
    assert!(seen.iter().all(|l| !l.contains('\x1b')), "plain text: {seen:?}");

    drop(lab);
    fp.assert_gone();
}

#[test]
#[ignore = "needs root: network namespaces"]
fn attach_across_namespaces_types_and_echoes_and_a_cut_link_leaves_no_tmux_client() {
    let mut lab = a_and_c();
    let (a, c) = (lab.host("a"), lab.host("c"));
    let term = lab.terminal(a, "attach", netns_util::FLEET, &["attach", "coder@c"]);
    let fp = lab.footprint();
    let screen = |lab: &Lab| lab.tmux_on(&term, &["capture-pane", "-p", "-J", "-t", "=t:"]);
    wait_for("the pane in the attached terminal on a", Duration::from_secs(10), || {
        screen(&lab).contains("attached to coder@c: ctrl-] detaches")
    });
    lab.tmux_on(&term, &["send-keys", "-t", "=t:", "-l", "typed from a"]);
    lab.tmux_on(&term, &["send-keys", "-t", "=t:", "Enter"]);
    wait_for("the REPL on c took it", Duration::from_secs(10), || {
        lab.capture(c, "coder").contains("accepted: typed from a")
    });
    wait_for("the echo in the terminal on a", Duration::from_secs(10), || {
        screen(&lab).contains("> typed from a") && screen(&lab).contains("accepted: typed from a")
    });
    let attached = clients_of(&lab, c, "coder");
    assert_eq!(attached.len(), 1, "{attached:?}");

    // The cable of c is cut: nothing of the attachment reaches c any more.
    // Within 5 s no tmux client is left on the agent's session there.
    lab.cut_link(c);
    let took = wait_for("no tmux client left on coder's session on c", Duration::from_secs(5), || {
        clients_of(&lab, c, "coder").is_empty()
    });
    eprintln!("the attachment's tmux client on c was gone {} ms after the link was cut", took.as_millis());
    wait_for("the end audited on c", Duration::from_secs(3), || {
        std::fs::read_to_string(lab.hosts[c].home.join("fleet/audit.log"))
            .is_ok_and(|a| a.lines().any(|l| l.contains("\"verb\":\"attach\"") && l.contains("\"outcome\":\"ended\"")))
    });
    let audit = std::fs::read_to_string(lab.hosts[c].home.join("fleet/audit.log")).unwrap();
    let ended = audit.lines().find(|l| l.contains("\"outcome\":\"ended\"")).unwrap();
    eprintln!("c's audit: {ended}");
    assert!(ended.contains("coder@c") && ended.contains("node:a@acme"), "{ended}");

    drop(lab);
    fp.assert_gone();
}

/// A shell block of docs/operations.md's two-host section: where it runs, what it says.
struct DocBlock {
    hosts: Vec<&'static str>,
    script: String,
}

/// The ```sh blocks between "## Two hosts, step by step" and the next section, each opening
/// with `# on w-jarvis`, `# on dragon-lin` or `# on both hosts`.
fn two_host_blocks() -> Vec<DocBlock> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/operations.md")).unwrap();
    let start = doc.find("## Two hosts, step by step").expect("operations.md has the two-host section");
    let section = &doc[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut blocks = vec![];
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```sh" {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let body: Vec<&str> =
            lines.by_ref().take_while(|l| l.trim() != "```").map(|l| l.get(indent..).unwrap_or("")).collect();
        let hosts = match body.first().copied() {
            Some("# on both hosts") => vec!["w-jarvis", "dragon-lin"],
            Some("# on w-jarvis") => vec!["w-jarvis"],
            Some("# on dragon-lin") => vec!["dragon-lin"],
            other => panic!("a block of the two-host section does not say where it runs: {other:?}"),
        };
        blocks.push(DocBlock { hosts, script: body.join("\n") + "\n" });
    }
    blocks
}

/// PROGRAM on doc host `name` as its user would run it: HOME is the host's own, no
/// MOSAIC_HOME or FLEET_* but FLEET_HOST (the namespaces share one hostname), its own tmux and
/// runtime dirs (they share one filesystem), `fleet` on the PATH.
fn as_doc_host(lab: &Lab, name: &str, program: &str) -> std::process::Command {
    let h = lab.host(name);
    let dir = lab.root().join(name);
    let bin_dir = std::path::Path::new(netns_util::FLEET).parent().unwrap().display().to_string();
    let mut cmd = std::process::Command::new("ip");
    cmd.env_clear()
        .env("PATH", format!("{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"))
        .env("HOME", dir.join("home"))
        .env("USER", "root")
        .env("FLEET_HOST", name)
        .env("TMUX_TMPDIR", dir.join("tmux"))
        .env("XDG_RUNTIME_DIR", dir.join("run"))
        .args(["netns", "exec", &lab.hosts[h].ns, program])
        .stdin(std::process::Stdio::null());
    cmd
}

#[test]
#[ignore = "needs root: network namespaces"]
fn the_two_host_steps_of_operations_md_work_as_written() {
    let blocks = two_host_blocks();
    assert!(blocks.len() >= 5, "the section's blocks: {}", blocks.len());
    let mut lab = Lab::new("acme");
    for name in ["w-jarvis", "dragon-lin"] {
        lab.add_bare_host(name, "acme");
        for sub in ["home", "tmux", "run"] {
            let d = lab.root().join(name).join(sub);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        }
    }
    let last = blocks.len() - 1;
    let (mut final_output, mut previous_output) = (String::new(), String::new());
    for (i, block) in blocks.iter().enumerate() {
        // "Paste that line": a line marked so is the `fleet join` line the previous block printed.
        let script: String = block
            .script
            .lines()
            .map(|l| match l.contains("# the line invite printed") {
                true => previous_output
                    .lines()
                    .map(str::trim)
                    .find(|p| p.starts_with("fleet join "))
                    .unwrap_or_else(|| panic!("block {i} pastes a `fleet join` line; none in:\n{previous_output}"))
                    .to_string(),
                false => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        for &name in &block.hosts {
            let commands: Vec<&str> = script.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).collect();
            if commands == ["fleet node"] {
                // A foreground node: left running, as in a terminal of its own.
                let log = std::fs::File::create(lab.root().join(format!("{name}.log"))).unwrap();
                let child = as_doc_host(&lab, name, "fleet")
                    .arg("node")
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .spawn()
                    .unwrap();
                lab.adopt(child);
                let until = Instant::now() + Duration::from_secs(15);
                let mut answer = as_doc_host(&lab, name, "fleet").arg("peers").output().unwrap();
                while !answer.status.success() && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(200));
                    answer = as_doc_host(&lab, name, "fleet").arg("peers").output().unwrap();
                }
                let log = std::fs::read_to_string(lab.root().join(format!("{name}.log"))).unwrap_or_default();
                assert!(
                    answer.status.success(),
                    "the node on {name} does not answer: {}\nits log:\n{log}",
                    String::from_utf8_lossy(&answer.stderr)
                );
                continue;
            }
            let run = || as_doc_host(&lab, name, "bash").args(["-e", "-c", &script]).output().unwrap();
            let mut out = run();
            // The last step reads the mesh: a person looks again while the nodes find each other.
            let until = Instant::now() + Duration::from_secs(30);
            while i == last && !out.status.success() && Instant::now() < until {
                std::thread::sleep(Duration::from_secs(1));
                out = run();
            }
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            let logs: String = ["w-jarvis", "dragon-lin"]
                .iter()
                .map(|n| {
                    format!(
                        "--- {n}.log\n{}",
                        std::fs::read_to_string(lab.root().join(format!("{n}.log"))).unwrap_or_default()
                    )
                })
                .collect();
            assert!(out.status.success(), "block {i} on {name} failed:\n{script}\n{text}\n{logs}");
            if i == last {
                final_output = text.clone();
            }
            previous_output = text;
        }
    }
    for want in ["orchestrator", "coder0-0", "dragon-lin", "w-jarvis", "accepted"] {
        assert!(final_output.contains(want), "the last step does not show {want}:\n{final_output}");
    }
}

#[test]
#[ignore = "needs root: network namespaces"]
fn add_and_remove_an_agent_on_another_namespace_host_through_the_mesh() {
    let lab = three();
    let (a, b) = (lab.host("a"), lab.host("b"));
    wait_for("a's mesh whole", Duration::from_secs(10), || all_ok(&lab, a));
    let roster = lab.hosts[b].home.join("fleet/roster.yaml");
    std::fs::write(&roster, std::fs::read_to_string(&roster).unwrap() + "# kept by fleet add\n").unwrap();

    // From a, across the bridge: b's roster gets the agent and b's node starts it.
    let o = lab.fleet(a, &["add", "helper@b", "--runtime", "stub", "--class", "implementer"]);
    assert!(o.ok(), "add: {}{}", o.stdout, o.stderr);
    assert!(o.stdout.starts_with("Added helper (stub/implementer) to the fleet on b.\n"), "{}", o.stdout);
    let text = std::fs::read_to_string(&roster).unwrap();
    assert!(text.contains("helper") && text.contains("# kept by fleet add"), "{text}");
    wait_for("helper@b running in a's ps", Duration::from_secs(10), || {
        lab.ps_json(a)
            .iter()
            .any(|r| r["record"] == "agent" && r["name"] == "helper" && r["host"] == "b" && r["pane"] == "alive")
    });
    // The guard holds across the mesh: b may not get a second orchestrator (a has one).
    let o = lab.fleet(a, &["add", "boss@b", "--runtime", "stub", "--class", "orchestrator"]);
    assert!(!o.ok() && o.stderr.contains("orch@a"), "{}{}", o.stdout, o.stderr);

    // And away again: stopped, out of b's roster, gone from a's ps.
    let o = lab.fleet(a, &["remove", "helper@b"]);
    assert!(o.ok(), "remove: {}{}", o.stdout, o.stderr);
    let text = std::fs::read_to_string(&roster).unwrap();
    assert!(!text.contains("helper") && text.contains("# kept by fleet add"), "{text}");
    wait_for("helper@b gone from a's ps", Duration::from_secs(10), || {
        !lab.ps_json(a).iter().any(|r| r["record"] == "agent" && r["name"] == "helper")
    });
    let sessions = lab.tmux(b, &["list-sessions", "-F", "#{session_name}"]);
    assert!(!sessions.lines().any(|l| l == "helper"), "helper's session is stopped: {sessions}");
}
