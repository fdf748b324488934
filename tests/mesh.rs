//! The mesh end to end: real `fleet node` processes on loopback with mutual
//! TLS (certificates made in the test), real tmux, stub agents.

#[path = "mesh_util.rs"]
mod mesh_util;

use mesh_util::{Mesh, expect_event, signal, wait_for};
use std::time::{Duration, Instant};

/// Three hosts a, b, c; a has b and c as static peers.
fn three() -> Mesh {
    let mut m = Mesh::new("acme");
    m.add_host("a", "  - { name: orch, runtime: stub, class: orchestrator }\n");
    m.add_host("b", "  - { name: rev, runtime: stub, class: reviewer }\n");
    m.add_host(
        "c",
        "  - { name: coder, runtime: stub }\n  - { name: drafty, runtime: drafty }\n  - { name: quiet, runtime: quiet }\n",
    );
    for i in 0..3 {
        m.start_agents(i);
    }
    m.start_node(1, "127.0.0.1:0", &[]);
    m.start_node(2, "127.0.0.1:0", &[]);
    let peers = vec![m.addr(1), m.addr(2)];
    m.start_node(0, "127.0.0.1:0", &peers);
    m
}

fn ps_json(m: &Mesh, i: usize) -> Vec<serde_json::Value> {
    let (code, out, err) = m.at(i, &["ps", "--json"]);
    assert_eq!(code, 0, "ps: {err}");
    serde_json::from_str(&out).unwrap()
}

/// What bash completion offers for the last word of `words`, with the CLI of node `i`.
fn complete_in_bash(m: &Mesh, i: usize, words: &[&str]) -> Vec<String> {
    let home = m.nodes[i].home.display().to_string();
    let (code, script, err) = m.at(i, &["completions", "bash"]);
    assert_eq!(code, 0, "{err}");
    let file = m.root().join("completion.bash");
    std::fs::write(&file, script).unwrap();
    let fleet = std::path::Path::new(env!("CARGO_BIN_EXE_fleet"));
    let line = words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" ");
    let probe = format!(
        "source '{}'; COMP_WORDS=({line}); COMP_CWORD={}; _fleet_with_targets; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display(),
        words.len() - 1
    );
    let fleet_cmd = m.command(&[], &[("MOSAIC_HOME", &home)]);
    let mut bash = std::process::Command::new("bash");
    bash.env_clear().envs(fleet_cmd.get_envs().filter_map(|(k, v)| Some((k, v?))));
    let path = format!("{}:{}", fleet.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let out = bash.env("PATH", path).args(["--norc", "-c", &probe]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().filter(|l| !l.is_empty()).map(String::from).collect()
}

fn host_row<'a>(rows: &'a [serde_json::Value], host: &str) -> Option<&'a serde_json::Value> {
    rows.iter().find(|r| r["record"] == "host" && r["host"] == host)
}

#[test]
fn merged_ps_send_heartbeats_and_a_host_that_dies_and_returns() {
    let mut m = three();

    // Merged ps: every agent of every host, with tenant and host.
    wait_for("agents healthy on every host", Duration::from_secs(15), || {
        let rows = ps_json(&m, 0);
        rows.iter().filter(|r| r["record"] == "agent" && r["heartbeat"]["health"] == "healthy").count() == 4
    });
    let rows = ps_json(&m, 0);
    let agents: Vec<(String, String)> = rows
        .iter()
        .filter(|r| r["record"] == "agent")
        .map(|r| (r["name"].as_str().unwrap().to_string(), r["host"].as_str().unwrap().to_string()))
        .collect();
    for (name, host) in [("orch", "a"), ("rev", "b"), ("coder", "c"), ("drafty", "c"), ("quiet", "c")] {
        assert!(agents.contains(&(name.into(), host.into())), "{name}@{host} missing from {agents:?}");
    }
    assert!(rows.iter().all(|r| r["tenant_id"] == "acme"));
    for h in ["a", "b", "c"] {
        assert_eq!(host_row(&rows, h).unwrap()["state"], "ok", "{rows:#?}");
    }
    // Tab after a verb that takes an agent offers the mesh's agents, asked of the node.
    assert_eq!(complete_in_bash(&m, 0, &["fleet", "send", "co"]), ["coder@c"]);
    assert_eq!(complete_in_bash(&m, 0, &["fleet", "send", "or"]), ["orch", "orch@a"], "bare: this host's roster");
    assert!(complete_in_bash(&m, 0, &["fleet", "watch", ""]).contains(&"rev@b".to_string()));

    // A watcher on a sees a heartbeat written on c.
    let events = m.follow(0);
    std::thread::sleep(Duration::from_millis(500));
    let hb = m.nodes[2].home.join("fleet/run/quiet.hb");
    let now = fleet_core::heartbeat::Timestamp::from_unix(fleet_tmux::hbwriter::now_unix());
    std::fs::write(&hb, format!("ts={}\npid=1\nstatus=busy\n", now.to_iso_compact())).unwrap();
    let ev = expect_event(&events, "beat of quiet@c", Duration::from_secs(5), |e| {
        e["agent"] == "quiet" && e["host"] == "c" && (e["event"] == "beat" || e["event"] == "health_change")
    });
    assert_eq!(ev["heartbeat"]["status"], "busy");
    // No more writes: stale after 3 x 1 s, seen by the sweep, no file change needed.
    expect_event(&events, "quiet@c turning stale", Duration::from_secs(8), |e| {
        e["agent"] == "quiet" && e["event"] == "health_change" && e["to"] == "stale"
    });

    // Cross-host send, verified on the target host.
    let (code, out, err) = m.at(0, &["send", "coder@c", "--verify", "--from", "orch", "-m", "review the parser"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("accepted: coder@c"), "{out}");
    assert!(m.capture(2, "coder").contains("accepted: [a:orch -> c:coder] review the parser"));
    let (code, out, _) =
        m.at(0, &["send", "drafty@c", "--verify", "--verify-timeout", "2500", "--json", "-m", "hold this"]);
    assert_eq!(code, 1);
    let receipt: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((receipt["outcome"].as_str(), receipt["host"].as_str()), (Some("draft"), Some("c")));
    let (code, _, err) = m.at(0, &["send", "nobody@c", "-m", "hi"]);
    assert_eq!(code, 1);
    assert!(err.contains("no such agent nobody in the roster of host c (known: coder, drafty, quiet)"), "{err}");
    let (code, _, err) = m.at(0, &["send", "x@nowhere", "-m", "hi"]);
    assert_eq!(code, 1);
    assert!(err.contains("no node for host nowhere"), "{err}");
    // The target's audit log names the original principal behind the forwarding node.
    let audit = std::fs::read_to_string(m.nodes[2].home.join("fleet/audit.log")).unwrap();
    assert!(
        audit.lines().any(|l| l.contains("\"principal\":\"node:a@acme for local:uid") && l.contains("coder@c")),
        "{audit}"
    );

    // kill -9 c: a's ps returns within the deadline with c unreachable.
    let c_addr = m.addr(2);
    m.kill_node(2);
    expect_event(&events, "host down c", Duration::from_secs(10), |e| e["event"] == "host_down" && e["host"] == "c");
    let t = Instant::now();
    let rows = ps_json(&m, 0);
    assert!(t.elapsed() < Duration::from_millis(1900), "ps took {:?}", t.elapsed());
    let c = host_row(&rows, "c").expect("c is still a row");
    assert_ne!(c["state"], "ok");
    assert!(rows.iter().all(|r| !(r["record"] == "agent" && r["host"] == "c")));
    assert_eq!(host_row(&rows, "b").unwrap()["state"], "ok");

    // c comes back on its address: the running stream resubscribes, ps merges it again.
    m.start_node(2, &c_addr, &[]);
    expect_event(&events, "host up c", Duration::from_secs(10), |e| e["event"] == "host_up" && e["host"] == "c");
    wait_for("c back in ps", Duration::from_secs(10), || {
        host_row(&ps_json(&m, 0), "c").is_some_and(|h| h["state"] == "ok")
    });
}

#[test]
fn idempotency_key_delivers_once() {
    let m = three();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let target = fleet_node::client::Target::Socket(m.nodes[0].home.join("fleet/node.sock"));
    let text = "only once please";
    rt.block_on(async {
        let mut client = fleet_node::client::fleet(&target).await.unwrap();
        let req = fleet_proto::v1::SendRequest {
            host: "c".into(),
            agent: "coder".into(),
            text: text.into(),
            source_label: "test".into(),
            idempotency_key: "key-1".into(),
            ..Default::default()
        };
        let first = client.send_message(req.clone()).await.unwrap().into_inner();
        let second = client.send_message(req).await.unwrap().into_inner();
        assert!(!first.duplicate);
        assert!(second.duplicate, "the retry is answered from the target's cache");
    });
    std::thread::sleep(Duration::from_millis(800));
    let screen = m.capture(2, "coder");
    assert_eq!(screen.matches(&format!("accepted: [a:test -> c:coder] {text}")).count(), 1, "{screen}");
}

#[test]
fn another_tenant_is_refused_and_a_viewer_may_list_but_not_send() {
    let mut m = three();
    // A node of another tenant (its own CA) among a's static peers.
    let mut other = Mesh::new("rival");
    other.add_host("d", "  - { name: spy, runtime: stub }\n");
    other.start_agents(0);
    other.start_node(0, "127.0.0.1:0", &[]);
    let peers = vec![m.addr(1), m.addr(2), other.addr(0)];
    m.kill_node(0);
    m.start_node(0, "127.0.0.1:0", &peers);
    // Membership never admits it (the QUIC handshake fails on the other CA), so it is never merged.
    wait_for("a's node to refuse d", Duration::from_secs(10), || {
        std::fs::read_to_string(m.root().join("a.log"))
            .is_ok_and(|l| l.contains("cannot reach a peer over QUIC") && l.contains(&other.addr(0)))
    });
    let rows = ps_json(&m, 0);
    assert!(rows.iter().all(|r| r["name"] != "spy" && r["host"] != "d"), "{rows:#?}");
    let (_, peers, _) = m.at(0, &["peers", "--json"]);
    assert!(!peers.contains("\"d\""), "{peers}");

    // A viewer, off-host, through the network door.
    let viewer = m.client_certs("viewer", "vera");
    let url = format!("https://{}", m.addr(0));
    let env = [("FLEET_NODE", url.as_str()), ("FLEET_CERTS_DIR", viewer.to_str().unwrap())];
    let (code, out, err) = m.run(&["ps", "--json"], &env);
    assert_eq!(code, 0, "a viewer may list: {err}");
    assert!(out.contains("\"rev\""));
    let (code, _, err) = m.run(&["send", "rev@b", "-m", "hi"], &env);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("permission denied") && err.contains("viewer:vera@acme may not send"), "{err}");
    let audit = std::fs::read_to_string(m.nodes[0].home.join("fleet/audit.log")).unwrap();
    assert!(audit.lines().any(|l| l.contains("viewer:vera@acme") && l.contains("\"outcome\":\"denied\"")), "{audit}");
}

#[test]
fn health_serving_and_a_bad_config_binds_nothing() {
    let mut m = Mesh::new("acme");
    m.add_host("a", "  - { name: orch, runtime: stub }\n");
    m.start_node(0, "127.0.0.1:0", &[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let target = fleet_node::client::Target::Socket(m.nodes[0].home.join("fleet/node.sock"));
    rt.block_on(async {
        let channel = fleet_node::client::connect(&target).await.unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let resp =
            health.check(tonic_health::pb::HealthCheckRequest { service: "fleet.v1.Fleet".into() }).await.unwrap();
        assert_eq!(resp.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

        // Server reflection lists our services, so stock tools (grpcurl) work.
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let channel = fleet_node::client::connect(&target).await.unwrap();
        let mut refl = ServerReflectionClient::new(channel);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = refl.server_reflection_info(tokio_stream::iter(vec![req])).await.unwrap().into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            stream.message().await.unwrap().unwrap().message_response
        else {
            panic!("not a service list");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for svc in ["fleet.v1.Fleet", "fleet.v1.Mesh", "grpc.health.v1.Health"] {
            assert!(names.iter().any(|n| n == svc), "{svc} not in {names:?}");
        }
    });

    // A bad node.yaml: exit 2 naming the key, no socket left behind.
    let home = m.root().join("bad");
    std::fs::create_dir_all(home.join("fleet")).unwrap();
    std::fs::write(home.join("fleet/node.yaml"), "listen: 127.0.0.1:0\ntimings: { probe_interval_ms: soon }\n")
        .unwrap();
    let (code, _, err) = m.run(&["node"], &[("MOSAIC_HOME", home.to_str().unwrap())]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("node.yaml:2:31: timings.probe_interval_ms: expected a positive whole number"), "{err}");
    assert!(!home.join("fleet/node.sock").exists());
    assert!(!home.join("fleet/certs").exists(), "nothing written before validation");
}

#[test]
#[ignore = "needs root: drops a child to the nobody user"]
fn the_local_door_refuses_another_uid() {
    let mut m = Mesh::new("acme");
    m.add_host("a", "  - { name: orch, runtime: stub }\n");
    m.start_node(0, "127.0.0.1:0", &[]);
    let sock = m.nodes[0].home.join("fleet/node.sock");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o600);
    // Open the path and the socket itself to everyone, so only the uid check stands in the way.
    for dir in [m.root().to_path_buf(), m.nodes[0].home.clone(), m.nodes[0].home.join("fleet")] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let home = m.nodes[0].home.display().to_string();
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", mesh_util::FLEET, "ps"])
        .env("MOSAIC_HOME", &home)
        .env("HOME", "/tmp");
    let out = cmd.output().expect("setpriv (util-linux)");
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for("the denial in the audit log", Duration::from_secs(5), || {
        std::fs::read_to_string(m.nodes[0].home.join("fleet/audit.log"))
            .is_ok_and(|a| a.lines().any(|l| l.contains("local:uid65534") && l.contains("denied")))
    });
    // The node's own uid still gets in.
    assert_eq!(m.at(0, &["ps"]).0, 0);
}

#[test]
fn first_run_creates_a_one_host_mesh_and_a_broken_roster_keeps_the_last_good_one() {
    let mut m = Mesh::new("acme");
    m.add_host("solo", "  - { name: orch, runtime: stub }\n");
    // No certificates at all: the node makes its own one-host mesh.
    let certs = m.nodes[0].home.join("fleet/certs");
    std::fs::remove_dir_all(&certs).unwrap();
    let home = m.nodes[0].home.display().to_string();
    let mut node = std::process::Command::new(mesh_util::FLEET);
    node.arg("node")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("MOSAIC_HOME", &home)
        .env("TMUX_TMPDIR", m.root().join("tmux"))
        .env("FLEET_LISTEN", "127.0.0.1:0")
        .env("FLEET_MDNS", "false")
        .env("FLEET_TENANT_ID", "acme")
        .env("FLEET_HOST", "solo")
        .env("FLEET_PROBE_INTERVAL_MS", "300")
        .stderr(std::fs::File::create(m.root().join("solo.log")).unwrap());
    m.adopt(node.spawn().unwrap());
    wait_for("node socket", Duration::from_secs(10), || m.nodes[0].home.join("fleet/node.sock").exists());
    use std::os::unix::fs::PermissionsExt;
    for f in ["ca.pem", "ca.key", "node.pem", "node.key"] {
        assert!(certs.join(f).exists(), "{f} was not created");
    }
    assert_eq!(std::fs::metadata(certs.join("node.key")).unwrap().permissions().mode() & 0o777, 0o600);
    let (code, out, _) = m.run(&["certs", "show", certs.join("node.pem").to_str().unwrap(), "--json"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("fleet://acme/node/solo"), "{out}");

    m.start_agents(0);
    wait_for("orch listed", Duration::from_secs(10), || ps_json(&m, 0).iter().any(|r| r["name"] == "orch"));
    // Break the roster: the node keeps the last good one and says why.
    std::fs::write(m.nodes[0].home.join("fleet/roster.yaml"), "agents:\n  - name: [oops\n").unwrap();
    wait_for("roster problem reported", Duration::from_secs(10), || {
        let rows = ps_json(&m, 0);
        host_row(&rows, "solo")
            .is_some_and(|h| h["roster_problem"].as_str().is_some_and(|p| p.contains("last good roster")))
            && rows.iter().any(|r| r["name"] == "orch")
    });
    let log = std::fs::read_to_string(m.root().join("solo.log")).unwrap();
    assert!(log.contains("first run: created a one-host mesh"), "{log}");
    assert!(log.contains(&certs.display().to_string()), "the log says where: {log}");
}

#[test]
fn the_demo_tours_a_three_node_mesh_and_leaves_nothing_behind() {
    let m = Mesh::new("acme");
    let tmpdir = m.root().join("demo-tmp");
    std::fs::create_dir_all(&tmpdir).unwrap();
    let (code, out, err) = m.run(&["demo"], &[("TMPDIR", tmpdir.to_str().unwrap())]);
    assert_eq!(code, 0, "{out}{err}");
    for line in [
        "the dashboard (w-jarvis's web door; the whole mesh), operator pairing link, works once:",
        "/pair?code=",
        "3. fleet ps on w-jarvis",
        "receipt: accepted from dragon-lin",
        "accepted: [w-jarvis:orchestrator -> dragon-lin:coder0-0] please implement the parser",
        "receipt: draft",
        "fleet tail coder0-0@dragon-lin -n 5, from w-jarvis:",
        "4. fleet comms coder0-0@dragon-lin",
        "| orchestrator | orchestrator on w-jarvis (point of contact) | `fleet send orchestrator@w-jarvis -m \"...\"` |",
        "8. fleet watch coder0-0@dragon-lin, from w-jarvis",
        "accepted: [w-jarvis:orchestrator -> dragon-lin:coder0-0] and add tests for the parser",
        "9. researcher@lab-3 asks for permission",
        "ACTIVITY waiting ",
        "decided by: the screen shows its permission prompt",
        "lab-3       demo    unreachable",
        "3 nodes stopped, 3 tmux servers and",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    // Its temp dir is gone, and so are its tmux servers' sockets' servers.
    assert_eq!(std::fs::read_dir(&tmpdir).unwrap().count(), 0, "the demo left files in {}", tmpdir.display());
    let sockets = std::fs::read_dir(m.root().join("tmux")).map(|d| d.count()).unwrap_or(0);
    let live: Vec<_> = std::fs::read_dir(m.root().join("tmux"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .filter(|s| std::os::unix::net::UnixStream::connect(s.path()).is_ok())
        .collect();
    assert!(live.is_empty(), "tmux servers still answer: {live:?} (of {sockets})");
    let demo_sockets: Vec<_> = std::fs::read_dir(m.root().join("tmux"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .filter(|s| s.file_name().to_string_lossy().starts_with("fleet-demo-"))
        .map(|s| s.path())
        .collect();
    assert!(demo_sockets.is_empty(), "the demo left its tmux socket files: {demo_sockets:?}");
    // And no process the demo started is left: every node and agent had the demo dir
    // (under our TMPDIR) in its environment or command line.
    std::thread::sleep(Duration::from_millis(500));
    let marker = tmpdir.display().to_string();
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()))
        .filter(|e| {
            let read = |f: &str| std::fs::read(e.path().join(f)).map(|b| String::from_utf8_lossy(&b).into_owned());
            let zombie =
                read("stat").is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')));
            !zombie
                && (read("environ").is_ok_and(|t| t.contains(&marker))
                    || read("cmdline").is_ok_and(|t| t.contains(&marker)))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "the demo left processes behind: {left:?}");
}

/// A demo step that fails is a failed demo: it names the step and exits 1, and
/// still removes what it started. The failure is the one a C locale caused
/// before tmux got `-u`: a tmux that drops `-u` (a shim in front of the real
/// one, run with no LANG) lists every agent as missing.
#[test]
fn a_demo_whose_step_fails_says_which_and_exits_non_zero() {
    let m = Mesh::new("acme");
    let tmpdir = m.root().join("demo-tmp");
    let shims = m.root().join("shims");
    std::fs::create_dir_all(&tmpdir).unwrap();
    std::fs::create_dir_all(&shims).unwrap();
    let real = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("tmux"))
        .find(|p| p.is_file())
        .expect("tmux on PATH");
    let shim = shims.join("tmux");
    std::fs::write(&shim, format!("#!/bin/sh\n[ \"$1\" = -u ] && shift\nexec {} \"$@\"\n", real.display())).unwrap();
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", shims.display(), std::env::var("PATH").unwrap());
    let (code, out, err) = m.run(&["demo"], &[("TMPDIR", tmpdir.to_str().unwrap()), ("PATH", &path)]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("the demo failed at step 2 (Three `fleet node` processes"), "{err}");
    assert!(err.contains("of 5 agents are healthy") && err.contains("pane missing"), "{err}");
    assert!(!out.contains("4. fleet heartbeats"), "no step after the failed one: {out}");
    assert_eq!(std::fs::read_dir(&tmpdir).unwrap().count(), 0, "the demo left files in {}", tmpdir.display());
}

#[test]
fn sends_to_different_agents_overlap_and_sends_to_one_agent_take_turns() {
    let mut m = Mesh::new("acme");
    m.add_host(
        "s",
        "  - { name: s1, runtime: slow }\n  - { name: s2, runtime: slow }\n  - { name: s3, runtime: slow }\n",
    );
    m.start_agents(0);
    m.start_node(0, "127.0.0.1:0", &[]);
    for agent in ["s1", "s2", "s3"] {
        wait_for(&format!("{agent} ready"), Duration::from_secs(10), || m.capture(0, agent).contains("ready"));
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let target = fleet_node::client::Target::Socket(m.nodes[0].home.join("fleet/node.sock"));
    let pause = Duration::from_millis(mesh_util::SLOW_ENTER_MS);
    rt.block_on(async {
        let client = fleet_node::client::fleet(&target).await.unwrap();
        let send = |agent: &str, text: &str| {
            let mut c = client.clone();
            let req = fleet_proto::v1::SendRequest {
                host: "s".into(),
                agent: agent.into(),
                text: text.into(),
                source_label: "test".into(),
                ..Default::default()
            };
            async move { c.send_message(req).await.expect("SendMessage").into_inner() }
        };
        let delivered = fleet_proto::v1::DeliveryOutcome::Delivered as i32;
        // Three agents at once: each send waits its own pause, not the others'.
        let t = Instant::now();
        let (a, b, c) = tokio::join!(send("s1", "to one"), send("s2", "to two"), send("s3", "to three"));
        let took = t.elapsed();
        for r in [&a, &b, &c] {
            assert_eq!(r.outcome, delivered, "{}: {}", r.agent, r.detail);
        }
        assert!(took >= pause, "a send returned before its pause: {took:?}");
        assert!(took < pause * 2, "three sends to three agents took {took:?}: they waited for each other");
        // One agent twice at once: one after the other, never both pastes before one Enter.
        let (x, y) = tokio::join!(send("s1", "first"), send("s1", "second"));
        assert_eq!((x.outcome, y.outcome), (delivered, delivered), "{} / {}", x.detail, y.detail);
    });
    for (agent, text) in [("s2", "to two"), ("s3", "to three")] {
        let want = format!("accepted: [s:test -> s:{agent}] {text}");
        wait_for(&want, Duration::from_secs(5), || m.capture(0, agent).contains(&want));
    }
    let lines = ["to one", "first", "second"].map(|t| format!("accepted: [s:test -> s:s1] {t}"));
    wait_for("three separate messages on s1", Duration::from_secs(5), || {
        let screen = m.capture(0, "s1");
        lines.iter().all(|l| screen.lines().any(|s| s.trim_end() == l))
    });
}

#[test]
fn a_revoked_operator_is_refused_and_its_open_stream_cut_without_a_restart() {
    let mut m = Mesh::new("acme");
    m.add_host("a", "  - { name: orch, runtime: stub }\n");
    m.start_agents(0);
    m.start_node(0, "127.0.0.1:0", &[]);
    let olga = m.root().join("olga");
    let ca = m.ca_dir();
    let issue = ["certs", "issue", "operator", "--name", "olga", "--dir", ca.to_str().unwrap()];
    let (code, _, err) = m.run(&[&issue[..], &["--out", olga.to_str().unwrap()]].concat(), &[]);
    assert_eq!(code, 0, "{err}");
    let url = format!("https://{}", m.addr(0));
    let env = [("FLEET_NODE", url.as_str()), ("FLEET_CERTS_DIR", olga.to_str().unwrap())];
    let (code, _, err) = m.run(&["ps", "--json"], &env);
    assert_eq!(code, 0, "olga may list: {err}");
    // An open stream of olga's, through the network door: its first event (the snapshot) is read.
    let mut watch = m.command(&["heartbeats", "--json"], &env);
    let mut child = watch.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let (stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let pid = child.id();
    m.adopt(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(5)).expect("a first event on olga's stream");
    assert!(first.contains("orch"), "{first}");

    let (code, out, err) = m.run(
        &[
            "certs",
            "revoke",
            "--cert",
            olga.join("client.pem").to_str().unwrap(),
            "--dir",
            ca.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let done: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(done["already_revoked"], false, "{out}");
    std::fs::copy(ca.join("crl.pem"), m.nodes[0].home.join("fleet/certs/crl.pem")).unwrap();
    // The node picks the list up by itself: new connections are refused, the open one is cut.
    let t = Instant::now();
    wait_for("olga refused", Duration::from_secs(10), || m.run(&["ps", "--json"], &env).0 == 3);
    eprintln!("refused {:?} after the copy", t.elapsed());
    // Told that the certificate was refused, and what to do, not "operation was canceled".
    let (_, _, err) = m.run(&["ps", "--json"], &env);
    assert!(err.contains("refused our certificate") && err.contains("it is revoked"), "{err}");
    assert!(err.contains("fleet certs issue operator"), "{err}");
    wait_for("olga's stream cut", Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z"))
    });
    let mut why = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut why).unwrap();
    assert!(why.contains("refused our certificate"), "{why}");
    eprintln!("olga's stream ended: {why}");
    let log = std::fs::read_to_string(m.root().join("a.log")).unwrap();
    // At least olga's stream (a `ps` of the polling above may have been open at that moment too).
    let cut = log
        .lines()
        .filter(|l| l.contains("revocation list applied"))
        .find_map(|l| l.split("cut_grpc=").nth(1)?.split_whitespace().next()?.parse::<u32>().ok());
    assert!(cut.is_some_and(|n| n >= 1), "{log}");
    // The local door and the node's own identity are untouched.
    assert_eq!(m.at(0, &["ps", "--json"]).0, 0);
    // Revoking again writes nothing.
    let (code, out, _) =
        m.run(&["certs", "revoke", "--serial", done["serial"].as_str().unwrap(), "--dir", ca.to_str().unwrap()], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("already revoked"), "{out}");
}

#[test]
fn a_revoked_node_is_dropped_from_the_mesh() {
    let m = three();
    wait_for("c alive on a and b", Duration::from_secs(10), || {
        [0, 1].iter().all(|&i| {
            let (_, out, _) = m.at(i, &["peers", "--json"]);
            serde_json::from_str::<Vec<serde_json::Value>>(&out)
                .is_ok_and(|p| p.iter().any(|r| r["host"] == "c" && r["state"] == "alive"))
        })
    });
    let c_cert = m.nodes[2].home.join("fleet/certs/node.pem");
    let ca = m.ca_dir();
    let (code, _, err) =
        m.run(&["certs", "revoke", "--cert", c_cert.to_str().unwrap(), "--dir", ca.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    for i in [0, 1] {
        std::fs::copy(ca.join("crl.pem"), m.nodes[i].home.join("fleet/certs/crl.pem")).unwrap();
    }
    // a and b close their QUIC connections with c and refuse new ones: SWIM declares c down.
    let t = Instant::now();
    wait_for("c down on a and b", Duration::from_secs(20), || {
        [0, 1].iter().all(|&i| {
            let (_, out, _) = m.at(i, &["peers", "--json"]);
            serde_json::from_str::<Vec<serde_json::Value>>(&out)
                .is_ok_and(|p| p.iter().any(|r| r["host"] == "c" && r["state"] == "down"))
        })
    });
    eprintln!("c down {:?} after the copies", t.elapsed());
    let rows = ps_json(&m, 0);
    assert_eq!(host_row(&rows, "c").unwrap()["state"], "unreachable", "{rows:#?}");
    assert_eq!(host_row(&rows, "b").unwrap()["state"], "ok", "{rows:#?}");
    assert!(rows.iter().all(|r| r["record"] != "agent" || r["host"] != "c"), "{rows:#?}");
}

#[test]
fn a_host_whose_tmux_cannot_be_probed_is_an_error_row_here_and_on_its_peers() {
    let mut m = Mesh::new("acme");
    m.add_host("a", "  - { name: orch, runtime: stub }\n");
    m.add_host("b", "  - { name: rev, runtime: stub }\n");
    m.start_agents(0);
    m.start_agents(1);
    // a's node cannot run tmux at all (no tmux on its PATH): every probe of its socket fails.
    let empty = m.root().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    m.start_node_with(0, "127.0.0.1:0", &[], &[("PATH", empty.to_str().unwrap())]);
    let peers = vec![m.addr(0)];
    m.start_node(1, "127.0.0.1:0", &peers);
    let error_row = |rows: &[serde_json::Value]| {
        host_row(rows, "a").is_some_and(|r| {
            r["state"] == "error"
                && r["detail"].as_str().is_some_and(|d| d.contains("tmux could not be probed"))
                && r["roster_problem"].is_null()
        })
    };
    wait_for("a's own row to be an error", Duration::from_secs(10), || error_row(&ps_json(&m, 0)));
    wait_for("a's row on b to be an error", Duration::from_secs(10), || error_row(&ps_json(&m, 1)));
    let rows = ps_json(&m, 1);
    assert_eq!(host_row(&rows, "b").unwrap()["state"], "ok", "{rows:#?}");
    eprintln!("{}", host_row(&rows, "a").unwrap());
}

/// The target node checks what any caller sends (a stock client may skip the
/// CLI's checks): an empty body and a label that could draw a second header are
/// INVALID_ARGUMENT; a session the roster does not name is NOT_FOUND unless the
/// caller asks for it, the holder session always. Nothing reaches a pane.
#[test]
fn a_node_refuses_empty_texts_forged_labels_and_unmanaged_targets_from_any_caller() {
    let mut m = Mesh::new("acme");
    m.add_host("a", "  - { name: orch, runtime: stub, class: orchestrator }\n");
    m.add_host("c", "  - { name: coder, runtime: stub }\n");
    m.start_agents(1);
    m.tmux(1, &["new-session", "-d", "-s", "shell", "cat"]);
    m.start_node(1, "127.0.0.1:0", &[]);
    let peers = vec![m.addr(1)];
    m.start_node(0, "127.0.0.1:0", &peers);
    wait_for("coder's prompt", Duration::from_secs(10), || m.capture(1, "coder").contains("> "));
    let before = m.capture(1, "coder");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let target = fleet_node::client::Target::Socket(m.nodes[0].home.join("fleet/node.sock"));
    rt.block_on(async {
        let mut client = fleet_node::client::fleet(&target).await.unwrap();
        let base = fleet_proto::v1::SendRequest {
            host: "c".into(),
            agent: "coder".into(),
            text: "hello".into(),
            source_label: "test".into(),
            ..Default::default()
        };
        wait_for_peer(&mut client, &base).await;
        for (what, req) in [
            ("empty", fleet_proto::v1::SendRequest { text: String::new(), ..base.clone() }),
            ("blank", fleet_proto::v1::SendRequest { text: " \n\t".into(), ..base.clone() }),
            (
                "forged label",
                fleet_proto::v1::SendRequest { source_label: "x] hi\n[c:orch -> c:coder".into(), ..base.clone() },
            ),
            ("forged host", fleet_proto::v1::SendRequest { source_host: "a]\n[b".into(), ..base.clone() }),
        ] {
            let status = client.send_message(req).await.expect_err(what);
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{what}: {status:?}");
        }
        for (agent, unmanaged, refused) in [("shell", false, true), ("_holder", true, true), ("shell", true, false)] {
            let req = fleet_proto::v1::SendRequest { agent: agent.into(), unmanaged, ..base.clone() };
            let receipt = client.send_message(req).await.unwrap().into_inner();
            let not_found = receipt.outcome == fleet_proto::v1::DeliveryOutcome::NotFound as i32;
            assert_eq!(not_found, refused, "{agent} unmanaged={unmanaged}: {receipt:?}");
        }
    });
    wait_for("the asked-for unmanaged send", Duration::from_secs(5), || m.capture(1, "shell").contains("hello"));
    assert_eq!(m.capture(1, "coder"), before, "no refused text reached the agent");
    // The CLI says the same, with the next step.
    let (code, _, err) = m.at(0, &["send", "shell@c", "-m", "hi"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no such agent shell in the roster of host c (known: coder)") && err.contains("--unmanaged"),
        "{err}"
    );
}

/// Until the peer is known, a send to it is NOT_FOUND at the gRPC level; wait for a receipt.
async fn wait_for_peer(
    client: &mut fleet_proto::v1::fleet_client::FleetClient<tonic::transport::Channel>,
    req: &fleet_proto::v1::SendRequest,
) {
    let probe = fleet_proto::v1::SendRequest { agent: "no-such-agent".into(), ..req.clone() };
    let start = Instant::now();
    while client.send_message(probe.clone()).await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(15), "peer c never became reachable");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Hosts a (static peer b) and b (agent `rev`), both running, and host `evil`
/// with a node certificate of the tenant but no node: an insider's
/// credentials. Returns the mesh and evil's index.
fn a_b_and_an_insider() -> (Mesh, usize) {
    let mut m = Mesh::new("acme");
    m.add_host("a", "  - { name: orch, runtime: stub, class: orchestrator }\n");
    m.add_host("b", "  - { name: rev, runtime: stub }\n");
    let evil = m.add_host("evil", "");
    m.start_agents(1);
    m.start_node(1, "127.0.0.1:0", &[]);
    let peers = vec![m.addr(1)];
    m.start_node(0, "127.0.0.1:0", &peers);
    wait_for("a to know b", Duration::from_secs(10), || b_rows(&m).len() == 1);
    (m, evil)
}

/// Node a's `fleet peers --json` rows of host b.
fn b_rows(m: &Mesh) -> Vec<serde_json::Value> {
    let (code, out, err) = m.at(0, &["peers", "--json"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    rows.into_iter().filter(|r| r["host"] == "b").collect()
}

/// The insider's TLS configs (evil's node certificate).
fn insider_tls(m: &Mesh, evil: usize) -> (std::sync::Arc<rustls::ServerConfig>, std::sync::Arc<rustls::ClientConfig>) {
    fleet_tls::install_crypto_provider();
    let identity = fleet_tls::config::Identity::node(&m.nodes[evil].home.join("fleet/certs")).unwrap();
    (fleet_tls::config::server_config(&identity).unwrap(), fleet_tls::config::client_config(&identity).unwrap())
}

/// A node certificate of the tenant cannot pass for another host on the SWIM
/// plane: an impostor with the certificate of host `evil` that announces
/// itself as `b` (real QUIC, real certificates; the membership library itself,
/// as a modified node would run it) never becomes a row of `b` on `a`, and `a`
/// logs the refusal. Sends to `b` still reach the real `b`.
#[test]
fn a_member_that_claims_another_hosts_name_is_refused() {
    let (m, evil) = a_b_and_an_insider();
    let (server, client) = insider_tls(&m, evil);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    let impostor = rt.block_on(async {
        let ep =
            fleet_node::membership::endpoint("127.0.0.1:0".parse().unwrap(), &server, &client, b"insider").unwrap();
        let addr = ep.local_addr().unwrap();
        let me = fleet_node::membership::MemberId {
            tenant: "acme".into(),
            host: "b".into(),
            grpc: addr,
            quic: addr,
            generation: u64::MAX / 2,
            bump: 0,
        };
        let members = fleet_node::membership::start(me, ep, Default::default(), cancel.clone(), &tracker);
        members.seed(m.addr(0).parse().unwrap(), fleet_node::membership::FoundBy::Static);
        addr
    });
    // Long enough for a join (about 1 s on loopback) and a few probe periods.
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let rows = b_rows(&m);
        assert!(
            rows.len() == 1 && rows[0]["quic_address"] != impostor.to_string(),
            "a shows the impostor at {impostor} as host b: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let log = std::fs::read_to_string(m.root().join("a.log")).unwrap();
    assert!(log.contains("refused a member that claims another host than its certificate"), "{log}");
    assert!(log.contains("certificate=evil") && log.contains("claims=b"), "{log}");
    let refused = rt.block_on(async {
        let target = fleet_node::client::Target::Socket(m.nodes[0].home.join("fleet/node.sock"));
        let mut c = fleet_node::client::mesh(&target).await.unwrap();
        c.node_info(fleet_proto::v1::NodeInfoRequest {}).await.unwrap().into_inner().membership_refused_claims
    });
    assert!(refused >= 1, "NodeInfo counts the refused datagrams: {refused}");
    let (code, out, err) = m.at(0, &["send", "rev@b", "--from", "t", "-m", "still the real b"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_for("the send on the real b", Duration::from_secs(5), || m.capture(1, "rev").contains("still the real b"));
    cancel.cancel();
    rt.block_on(async {
        tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), tracker.wait()).await;
    });
}

/// A node of the tenant cannot gossip another host out of the mesh: an
/// insider (host evil's own certificate, speaking as itself, SWIM crafted by
/// hand) tells `a` that `b` restarted at b's own address with a far newer
/// generation and a dead gRPC address. `a` believes `b` itself, which is
/// connected and announces its real identity: the forged update is dropped,
/// counted and logged, `b` keeps its row, and sends still reach it. (On the
/// old code the forgery replaced `b`, and sends to `b` failed.)
#[test]
fn gossip_cannot_replace_a_member_with_a_forged_identity() {
    use foca::Codec as _;
    let (m, evil) = a_b_and_an_insider();
    let real_b = b_rows(&m)[0].clone();
    let b_quic: std::net::SocketAddr = real_b["quic_address"].as_str().unwrap().parse().unwrap();
    let (server, client) = insider_tls(&m, evil);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let a_quic: std::net::SocketAddr = m.addr(0).parse().unwrap();
    rt.block_on(async {
        use fleet_node::membership::MemberId;
        let ep =
            fleet_node::membership::endpoint("127.0.0.1:0".parse().unwrap(), &server, &client, b"insider").unwrap();
        let me_addr = ep.local_addr().unwrap();
        let me = MemberId {
            tenant: "acme".into(),
            host: "evil".into(),
            grpc: me_addr,
            quic: me_addr,
            generation: 1,
            bump: 0,
        };
        let conn = ep.connect(a_quic, "node.acme.fleet.internal").unwrap().await.unwrap();
        let encode = |dst: &MemberId, message: foca::Message<MemberId>, updates: &[foca::Member<MemberId>]| {
            let mut buf = bytes::BytesMut::new();
            let header = foca::Header { src: me.clone(), src_incarnation: 0, dst: dst.clone(), message };
            foca::PostcardCodec.encode_header(&header, &mut buf).unwrap();
            if !updates.is_empty() {
                buf.extend_from_slice(&(updates.len() as u16).to_be_bytes());
                for u in updates {
                    foca::PostcardCodec.encode_member(u, &mut buf).unwrap();
                }
            }
            buf.freeze()
        };
        // Join as itself: announce to whoever is at a's address; a's reply names a.
        let anyone = MemberId { host: "seed".into(), generation: 0, ..me.clone() };
        let anyone = MemberId { grpc: a_quic, quic: a_quic, ..anyone };
        conn.send_datagram(encode(&anyone, foca::Message::Announce, &[])).unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), conn.read_datagram()).await.unwrap().unwrap();
        let a_id: MemberId = foca::PostcardCodec.decode_header(&mut &reply[..]).unwrap().src;
        assert_eq!(a_id.host, "a");
        // The forgery: b "restarted" at its own address, far in the future, gRPC nowhere.
        let fake = MemberId {
            tenant: "acme".into(),
            host: "b".into(),
            grpc: "127.0.0.1:9".parse().unwrap(),
            quic: b_quic,
            generation: u64::MAX,
            bump: 0,
        };
        let forged = [foca::Member::new(fake, 0, foca::State::Alive)];
        for _ in 0..5 {
            conn.send_datagram(encode(&a_id, foca::Message::Gossip, &forged)).unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        conn.close(0u32.into(), b"done");
    });
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let rows = b_rows(&m);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0]["grpc_address"], real_b["grpc_address"], "b was replaced by the forgery: {rows:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let (code, out, err) = m.at(0, &["send", "rev@b", "--from", "t", "-m", "still b"]);
    assert_eq!(code, 0, "{out}{err}");
    let log = std::fs::read_to_string(m.root().join("a.log")).unwrap();
    assert!(log.contains("dropped a gossiped member that is not believable"), "{log}");
}

/// `fleet tail AGENT@HOST` through the node: a pane on another host (the
/// node forwards like a send; authorized as the read-only `watch` verb).
#[test]
fn tail_reads_a_pane_on_another_host() {
    let mut m = Mesh::new("acme");
    m.add_host("a", "  - { name: orch, runtime: stub, class: orchestrator }\n");
    m.add_host("c", "  - { name: coder, runtime: stub }\n");
    m.start_agents(1);
    m.start_node(1, "127.0.0.1:0", &[]);
    let peers = vec![m.addr(1)];
    m.start_node(0, "127.0.0.1:0", &peers);
    wait_for("c joined", Duration::from_secs(10), || {
        m.at(0, &["send", "coder@c", "--from", "t", "-m", "hello from a"]).0 == 0
    });
    wait_for("the text on c", Duration::from_secs(5), || {
        m.capture(1, "coder").contains("accepted: [a:t -> c:coder] hello from a")
    });
    let (code, out, err) = m.at(0, &["tail", "coder@c", "-n", "5", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["tenant_id"].as_str(), v["host"].as_str()), (Some("acme"), Some("c")));
    let text = v["lines"].to_string();
    assert!(text.contains("accepted: [a:t -> c:coder] hello from a"), "{text}");
    let (code, _, err) = m.at(0, &["tail", "nobody@c"]);
    assert_eq!(code, 1);
    assert!(err.contains("no such agent nobody in the roster of host c (known: coder)"), "{err}");
    let (code, _, err) = m.at(0, &["tail", "codr@c"]);
    assert_eq!(code, 1);
    assert!(err.contains("no such agent codr in the roster of host c (known: coder; did you mean coder?)"), "{err}");
    let (code, _, err) = m.at(0, &["tail", "coder@cc"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no node for host cc in the mesh (known: a, c)"), "no guess for a two-letter name: {err}");
}

/// `Mesh.NodeInfo` counts the node's live tokio tasks: open
/// `fleet heartbeats` streams add to it, and it falls back once they close
/// (what the soak benchmark samples to see that churn leaves no task behind).
#[test]
fn node_info_counts_live_tasks_and_they_end_with_their_streams() {
    let mut m = Mesh::new("acme");
    m.add_host("a", "  - { name: orch, runtime: stub }\n");
    m.start_agents(0);
    m.start_node(0, "127.0.0.1:0", &[]);
    let socket = m.nodes[0].home.join("fleet/node.sock");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let tasks = || -> u64 {
        rt.block_on(async {
            let target = fleet_node::client::Target::Socket(socket.clone());
            let mut c = fleet_node::client::mesh(&target).await.expect("node socket");
            c.node_info(fleet_proto::v1::NodeInfoRequest {}).await.expect("NodeInfo").into_inner().tasks_alive
        })
    };
    // Settled: the lowest of a few reads, each over a fresh connection.
    let base = (0..5)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            tasks()
        })
        .min()
        .unwrap();
    assert!(base > 0, "a running node has tasks");
    let home = m.nodes[0].home.display().to_string();
    let mut watchers: Vec<std::process::Child> = (0..4)
        .map(|_| {
            m.command(&["heartbeats", "--json", "--snapshot"], &[("MOSAIC_HOME", &home)])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut seen = 0;
    wait_for("4 streams counted", Duration::from_secs(10), || {
        seen = tasks();
        seen >= base + 4
    });
    for w in &mut watchers {
        w.kill().unwrap();
        w.wait().unwrap();
    }
    let mut after = 0;
    wait_for("the streams' tasks gone", Duration::from_secs(10), || {
        after = tasks();
        after <= base + 1
    });
    eprintln!("tasks alive: {base} settled, {seen} with 4 streams, {after} after they closed");
}

/// A host that membership knows but declared down is named down (exit 3, unreachable), not
/// unknown ("no node for host b (known: a, b)", exit 1); and a send whose call was cut while
/// the target's node went away is not said to have failed: it may have been delivered.
#[test]
fn a_down_host_is_named_down_and_a_cut_send_may_have_been_delivered() {
    let mut m = Mesh::new("acme");
    m.add_host("a", "  - { name: orch, runtime: stub, class: orchestrator }\n");
    m.add_host("b", "  - { name: rev, runtime: stub }\n  - { name: slowpoke, runtime: slow }\n");
    m.start_agents(1);
    m.start_node(1, "127.0.0.1:0", &[]);
    let peers = vec![m.addr(1)];
    m.start_node(0, "127.0.0.1:0", &peers);
    wait_for("b joined", Duration::from_secs(10), || m.at(0, &["send", "rev@b", "-m", "hello"]).0 == 0);

    // The send pastes, waits 1.5 s before Enter, and b's node is killed in between.
    let mut cmd = m.command(&["send", "slowpoke@b", "-m", "cut short"], &[]);
    cmd.env("MOSAIC_HOME", &m.nodes[0].home);
    let child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    wait_for("the paste on b", Duration::from_secs(5), || m.capture(1, "slowpoke").contains("cut short"));
    m.kill_node(1);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("the cut send: {err}");
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("may have been delivered to slowpoke@b") && err.contains("fleet tail slowpoke@b"), "{err}");

    wait_for("b down on a", Duration::from_secs(15), || {
        let (_, out, _) = m.at(0, &["peers", "--json"]);
        serde_json::from_str::<Vec<serde_json::Value>>(&out)
            .is_ok_and(|p| p.iter().any(|r| r["host"] == "b" && r["state"] == "down"))
    });
    for args in [&["send", "rev@b", "-m", "anyone?"][..], &["tail", "rev@b"], &["start", "rev@b"]] {
        let (code, _, err) = m.at(0, args);
        eprintln!("{args:?}: {err}");
        assert_eq!(code, 3, "{args:?}: {err}");
        assert!(err.contains("host b is down") && err.contains("last heard from"), "{args:?}: {err}");
        assert!(!err.contains("no node for host") && !err.contains("may have been delivered"), "{args:?}: {err}");
    }
}

/// A roster agent without a session is "not running" with the command that starts it, through
/// the node and with `--local`, not "no such agent X (known: ..., X)".
#[test]
fn a_roster_agent_that_is_not_running_is_named_so_with_how_to_start_it() {
    let mut m = Mesh::new("acme");
    m.add_host("a", "  - { name: orch, runtime: stub }\n  - { name: coder0-1, runtime: stub }\n");
    m.start_agents(0);
    let (code, _, err) = m.at(0, &["stop", "coder0-1", "--local"]);
    assert_eq!(code, 0, "{err}");
    m.start_node(0, "127.0.0.1:0", &[]);
    let home = m.nodes[0].home.display().to_string();
    for args in [&["send", "coder0-1", "-m", "hi"][..], &["send", "coder0-1", "-m", "hi", "--local"]] {
        let (code, _, err) = m.run(args, &[("MOSAIC_HOME", &home), ("FLEET_HOST", "a")]);
        eprintln!("{args:?}: {err}");
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains("coder0-1 of host a is in the roster but not running"), "{args:?}: {err}");
        assert!(err.contains("`fleet start coder0-1@a`") && !err.contains("known:"), "{args:?}: {err}");
    }
}

/// `fleet ps --host H` for a host the mesh does not know is a usage error naming the known
/// hosts (exit 2), not an empty, successful "no agents".
#[test]
fn ps_for_an_unknown_host_names_the_known_ones() {
    let mut m = Mesh::new("acme");
    m.add_host("a", "  - { name: orch, runtime: stub }\n");
    m.add_host("b", "  - { name: rev, runtime: stub }\n");
    m.start_agents(1);
    m.start_node(1, "127.0.0.1:0", &[]);
    let peers = vec![m.addr(1)];
    m.start_node(0, "127.0.0.1:0", &peers);
    wait_for("b listed on a", Duration::from_secs(10), || {
        let (code, out, _) = m.at(0, &["ps", "--host", "b"]);
        code == 0 && out.contains("rev")
    });
    // Host names are DNS labels: `--host B` is b, as the check before the listing already took it.
    let (code, out, err) = m.at(0, &["ps", "--host", "B"]);
    assert!(code == 0 && out.contains("rev"), "--host B: {out}{err}");
    for args in [&["ps", "--host", "nosuch"][..], &["ps", "--json", "--host", "b", "--host", "nosuch"]] {
        let (code, out, err) = m.at(0, args);
        eprintln!("{args:?}: {err}");
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains("no host nosuch in the mesh (known: a, b)"), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
    }
    let home = m.nodes[0].home.display().to_string();
    let (code, _, err) = m.run(&["ps", "--local", "--host", "b"], &[("MOSAIC_HOME", &home), ("FLEET_HOST", "a")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--local lists only this host (a), not b"), "{err}");
}

/// `fleet certs show` prints the serial number that `fleet certs revoke --serial` takes.
#[test]
fn certs_show_prints_the_serial_that_revoke_takes() {
    let m = Mesh::new("acme");
    let (ca, olga) = (m.ca_dir(), m.root().join("olga"));
    let issue = ["certs", "issue", "operator", "--name", "olga", "--dir", ca.to_str().unwrap()];
    assert_eq!(m.run(&[&issue[..], &["--out", olga.to_str().unwrap()]].concat(), &[]).0, 0);
    let cert = olga.join("client.pem");
    let (code, out, err) = m.run(&["certs", "show", cert.to_str().unwrap(), "--dir", ca.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    let serial = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("serial"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no serial row:\n{out}"))
        .to_string();
    let (code, out, err) =
        m.run(&["certs", "revoke", "--serial", &serial, "--dir", ca.to_str().unwrap(), "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let done: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(done["already_revoked"], false, "{out}");
    // The same certificate, revoked by file, is the one revoked by that serial.
    let (_, out, _) =
        m.run(&["certs", "revoke", "--cert", cert.to_str().unwrap(), "--dir", ca.to_str().unwrap(), "--json"], &[]);
    let again: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((again["already_revoked"].as_bool(), &again["serial"]), (Some(true), &done["serial"]), "{out}");
}

/// A node listening on IPv4 does not dial an IPv6 seed (quinn refuses it as "invalid remote
/// address", which was logged as an unreachable peer on every start where mDNS saw an IPv6
/// link-local address); a static one is named once, with the reason.
#[test]
fn an_ipv4_node_does_not_dial_ipv6_seeds() {
    let mut m = Mesh::new("acme");
    m.add_host("a", "  - { name: orch, runtime: stub }\n");
    m.start_node(0, "127.0.0.1:0", &["[::1]:7420".to_string()]);
    let log_path = m.root().join("a.log");
    wait_for("the warning about the IPv6 seed", Duration::from_secs(5), || {
        std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains("static peer cannot be dialled"))
    });
    std::thread::sleep(Duration::from_secs(4));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.contains("invalid remote address"), "{log}");
    assert_eq!(log.matches("static peer cannot be dialled").count(), 1, "{log}");
    assert!(log.contains("an IPv6 address, and this node listens on IPv4"), "{log}");
}

/// `fleet doctor` on a host with a node: every check named with its state;
/// a private key others can read, and a node that is down, fail it with the
/// next step.
#[test]
fn doctor_checks_this_host_and_names_the_next_step() {
    let mut m = Mesh::new("acme");
    m.add_host("a", "  - { name: orch, runtime: stub, class: orchestrator }\n");
    m.start_agents(0);
    m.start_node(0, "127.0.0.1:0", &[]);
    let (code, out, err) = m.at(0, &["doctor", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let checks: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let status = |name: &str| {
        checks
            .iter()
            .filter(|c| c["check"] == name)
            .map(|c| c["status"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    for ok in ["tmux", "roster", "certificates", "node", "activity rules"] {
        assert_eq!(status(ok), ["ok"], "{ok}: {checks:#?}");
    }
    assert_eq!(status("peers"), ["warn"], "alone in its mesh: {checks:#?}");
    assert_eq!(status("membership"), ["ok"], "{checks:#?}");
    let key = m.nodes[0].home.join("fleet/certs/node.key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    m.kill_node(0);
    let (code, out, _) = m.at(0, &["doctor"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("chmod 600 {}", key.display())), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("node") && l.contains("FAIL") && l.matches("`fleet node`").count() == 1),
        "{out}"
    );
}

/// `fleet context`: a saved remote node and certs dir, used by every command
/// until another is chosen; `FLEET_CONTEXT` picks one for one command.
#[test]
fn a_saved_context_reaches_a_remote_node_until_local_is_chosen_again() {
    let mut m = Mesh::new("acme");
    m.add_host("a", "  - { name: orch, runtime: stub, class: orchestrator }\n");
    m.start_agents(0);
    m.start_node(0, "127.0.0.1:0", &[]);
    let ops = m.client_certs("operator", "olga");
    // A laptop: a home of its own, no node.
    let laptop = m.root().join("laptop");
    std::fs::create_dir_all(&laptop).unwrap();
    let home = [("MOSAIC_HOME", laptop.to_str().unwrap())];
    let url = format!("https://{}", m.addr(0));
    let (code, out, err) = m.run(&["context", "add", "lab", "--node", &url, "--certs", ops.to_str().unwrap()], &home);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, _) = m.run(&["ps", "--json"], &home);
    assert_eq!(code, 3, "not current yet: the laptop's own socket, no node there");
    let (code, _, err) = m.run(&["context", "use", "lba"], &home);
    assert_eq!(code, 2);
    assert!(err.contains("no context lba (known: lab; did you mean lab?)"), "{err}");
    assert_eq!(m.run(&["context", "use", "lab"], &home).0, 0);
    assert_eq!(m.run(&["context", "current"], &home).1.trim(), "lab");
    let (code, out, err) = m.run(&["ps", "--json"], &home);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"orch\""), "{out}");
    let (code, _, _) = m.run(&["ps", "--json"], &[home[0], ("FLEET_CONTEXT", "local")]);
    assert_eq!(code, 3, "FLEET_CONTEXT=local: the socket again");
    let (_, list, _) = m.run(&["context", "list"], &home);
    assert!(list.lines().any(|l| l.starts_with('*') && l.contains("lab") && l.contains(&url)), "{list}");
    assert_eq!(m.run(&["context", "remove", "lab"], &home).0, 0);
    assert_eq!(m.run(&["context", "current"], &home).1.trim(), "local");
    let (code, _, err) = m.run(&["context", "add", "x", "--node", &url, "--certs", laptop.to_str().unwrap()], &home);
    assert_eq!(code, 2);
    assert!(err.contains("lacks ca.pem, client.pem, client.key"), "{err}");
}

/// `members=N` of each `membership: synced` line of `log` where this node began the sync.
fn synced_answers(log: &str) -> Vec<usize> {
    log.lines()
        .filter(|l| l.contains("membership: synced") && l.contains("answered"))
        .filter_map(|l| l.split("members=").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .collect()
}

/// The nodes of `m` that do not list every other node alive (`fleet peers --json`).
fn short_views(m: &Mesh, nodes: std::ops::Range<usize>) -> Vec<String> {
    let n = nodes.len();
    nodes
        .filter(|&i| {
            let (code, out, _) = m.at(i, &["peers", "--json"]);
            let peers: Vec<serde_json::Value> = if code == 0 { serde_json::from_str(&out).unwrap() } else { vec![] };
            peers.iter().filter(|p| p["found_by"] != "self" && p["state"] == "alive").count() < n - 1
        })
        .map(|i| m.nodes[i].host.clone())
        .collect()
}

/// Issue 17, full membership sync: node 0 is the only seed of 10 nodes started at once,
/// then of an 11th. Every node lists all others alive, each joiner began a sync (a QUIC
/// stream that carries the whole view, memberlist's push/pull), and the late joiner's first
/// sync, with its seed, carried all 11 members of the mesh at once (not the ~25 of a `Feed`
/// that a bigger mesh would outgrow). Nothing was refused. (The old code has no sync: no
/// node logs one.)
/// Hosts h00..h{hosts-1}, one agent each; h00 started, then h01..h{started-1} at once with
/// h00 as their one seed, each waited for until it answers. Returns the mesh and h00's address.
fn mass_started(hosts: usize, started: usize) -> (Mesh, Vec<String>) {
    let mut m = Mesh::new("acme");
    for i in 0..hosts {
        m.add_host(&format!("h{i:02}"), "  - { name: a0, runtime: stub, class: worker }\n");
    }
    m.start_node(0, "127.0.0.1:0", &[]);
    let seed = vec![m.addr(0)];
    for i in 1..started {
        m.spawn_node(i, "127.0.0.1:0", &seed, &[]);
    }
    for i in 1..started {
        m.wait_answer(i);
    }
    (m, seed)
}

#[test]
fn a_joiner_learns_the_whole_view_in_one_sync() {
    let (mut m, seed) = mass_started(12, 11);
    let start = Instant::now();
    wait_for("every node of the mass start to list all others alive", Duration::from_secs(40), || {
        short_views(&m, 0..11).is_empty()
    });
    eprintln!("mass start of 11: all views whole after {:.2} s", start.elapsed().as_secs_f64());
    m.start_node(11, "127.0.0.1:0", &seed);
    let late = m.root().join("h11.log");
    wait_for("the late joiner's sync", Duration::from_secs(20), || {
        synced_answers(&std::fs::read_to_string(&late).unwrap()).iter().any(|&n| n >= 11)
    });
    wait_for("every node to list all 11 others alive", Duration::from_secs(30), || short_views(&m, 0..12).is_empty());
    for i in 0..12 {
        let log = std::fs::read_to_string(m.root().join(format!("h{i:02}.log"))).unwrap();
        if i > 0 {
            assert!(!synced_answers(&log).is_empty(), "h{i:02} began no sync:\n{log}");
        }
        assert!(!log.contains("not believable"), "h{i:02} refused a member:\n{log}");
    }
    let late_log = std::fs::read_to_string(&late).unwrap();
    for l in late_log.lines().filter(|l| l.contains("membership: synced")) {
        eprintln!("h11: {l}");
    }
    let log0 = std::fs::read_to_string(m.root().join("h00.log")).unwrap();
    assert!(log0.contains("membership: synced") && log0.contains("asked"), "the seed answered syncs:\n{log0}");
}

/// The full sync is vetted as gossip is: an insider (host evil's own node certificate,
/// real QUIC, the sync frame written by hand: 4-byte length, 2-byte count, foca's members)
/// opens a sync stream to `a` and sends its "view": `b` restarted at b's own address with a
/// far newer generation and a dead gRPC address. `a` answers with its own view (a and the
/// real b), drops the forgery (counted and logged) and keeps b's row. A frame that declares
/// more than the cap is refused without an answer, and `a` serves on. (The old code
/// allowed no stream at all: the open timed out.)
#[test]
fn a_synced_forgery_is_refused_and_the_sync_answered() {
    use fleet_node::membership::MemberId;
    use foca::Codec as _;
    let (m, evil) = a_b_and_an_insider();
    let real_b = b_rows(&m)[0].clone();
    let b_quic: std::net::SocketAddr = real_b["quic_address"].as_str().unwrap().parse().unwrap();
    let (server, client) = insider_tls(&m, evil);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let a_quic: std::net::SocketAddr = m.addr(0).parse().unwrap();
    let (answer, oversized) = rt.block_on(async {
        let ep =
            fleet_node::membership::endpoint("127.0.0.1:0".parse().unwrap(), &server, &client, b"insider").unwrap();
        let conn = ep.connect(a_quic, "node.acme.fleet.internal").unwrap().await.unwrap();
        let fake = MemberId {
            tenant: "acme".into(),
            host: "b".into(),
            grpc: "127.0.0.1:9".parse().unwrap(),
            quic: b_quic,
            generation: u64::MAX,
            bump: 0,
        };
        let mut body = bytes::BytesMut::new();
        body.extend_from_slice(&1u16.to_be_bytes());
        foca::PostcardCodec.encode_member(&foca::Member::new(fake, 0, foca::State::Alive), &mut body).unwrap();
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        let exchange = |frame: Vec<u8>| {
            let conn = conn.clone();
            async move {
                let (mut send, mut recv) = tokio::time::timeout(Duration::from_secs(5), conn.open_bi())
                    .await
                    .expect("a did not let a node of its tenant open a sync stream")
                    .unwrap();
                send.write_all(&frame).await.unwrap();
                let _ = send.finish();
                tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1 << 20)).await.expect("no answer")
            }
        };
        let answer = exchange(frame).await.expect("a's answer");
        let oversized = exchange((u32::MAX).to_be_bytes().to_vec()).await;
        // One stream at a time, and a serves on after the refusal: a third gets its answer.
        let mut empty = 2u32.to_be_bytes().to_vec();
        empty.extend_from_slice(&0u16.to_be_bytes());
        exchange(empty).await.expect("a answers again");
        conn.close(0u32.into(), b"done");
        (answer, oversized)
    });
    // a's answer: a frame of its view, with a itself and the real b.
    let len = u32::from_be_bytes(answer[..4].try_into().unwrap()) as usize;
    assert_eq!(len, answer.len() - 4);
    let count = u16::from_be_bytes([answer[4], answer[5]]);
    let mut cursor = &answer[6..];
    let view: Vec<foca::Member<MemberId>> =
        (0..count).map(|_| foca::PostcardCodec.decode_member(&mut cursor).unwrap()).collect();
    assert!(cursor.is_empty());
    let hosts: Vec<(&str, String)> = view.iter().map(|v| (v.id().host.as_str(), v.id().grpc.to_string())).collect();
    assert!(hosts.contains(&("a", m.addr(0))), "{hosts:?}");
    assert!(hosts.contains(&("b", real_b["grpc_address"].as_str().unwrap().to_string())), "{hosts:?}");
    assert!(!hosts.iter().any(|(_, g)| g == "127.0.0.1:9"), "a answers with the forgery: {hosts:?}");
    assert!(oversized.is_err() || oversized.as_ref().is_ok_and(|b| b.is_empty()), "{oversized:?}");
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let rows = b_rows(&m);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0]["grpc_address"], real_b["grpc_address"], "b was replaced by the synced forgery: {rows:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let log = std::fs::read_to_string(m.root().join("a.log")).unwrap();
    assert!(log.contains("dropped a synced member that is not believable"), "{log}");
    assert!(log.contains("membership: synced") && log.contains("host=evil"), "{log}");
}

/// A node that is suspected and refutes the suspicion in time keeps its identity. foca 2.0
/// sends `TurnUndead` ("the mesh holds you down") to the suspect when the suspicion's time is
/// up even if it was refuted; membership holds that datagram back (`membership::refuted`).
/// Before, the refuted node renewed its identity and every member renamed it.
#[test]
fn a_refuted_suspicion_does_not_make_the_suspect_renew_its_identity() {
    let (m, _) = mass_started(3, 3);
    wait_for("every node to list all others alive", Duration::from_secs(40), || short_views(&m, 0..3).is_empty());
    let pid = m.nodes[2].pid.expect("h02 runs");
    let incarnation = || {
        let (_, out, _) = m.at(0, &["peers", "--json"]);
        let peers: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap_or_default();
        peers.iter().find(|p| p["host"] == "h02").and_then(|p| p["incarnation"].as_u64()).unwrap_or(0)
    };
    // Stopped for 2.5 s, h02 misses its peers' probes and one of them suspects it; the 3 s of
    // suspicion leave it more than a second to refute once it runs again. Until it has
    // refuted once (its incarnation grows), the test has tested nothing: try again.
    let log = || std::fs::read_to_string(m.root().join("h02.log")).unwrap();
    for _ in 0..5 {
        signal(pid, "-STOP");
        std::thread::sleep(Duration::from_millis(2500));
        signal(pid, "-CONT");
        // Past the deadline of any suspicion started while it was stopped.
        std::thread::sleep(Duration::from_secs(5));
        // (A renewed identity starts again at incarnation 0: look at the log first.)
        let log = log();
        assert!(!log.contains("renewed its own identity"), "h02 renewed its identity after a stop of 2.5 s:\n{log}");
        if incarnation() > 0 {
            break;
        }
    }
    assert!(incarnation() > 0, "h02 was never suspected in five stops");
    for i in 0..2 {
        let (_, out, _) = m.at(i, &["peers", "--json"]);
        assert!(!out.contains("\"state\": \"down\""), "a node listed a peer down: {out}");
    }
}

/// A node the mesh declared down comes back as a renewed identity (same run, next bump).
/// Its peers believe a renewal only from the node itself (gossip of it is dropped while
/// the node's last word at that address was the old identity: no one else may introduce
/// its next identity), so the renewed node must say so to every member itself. 10 nodes;
/// the last is stopped (SIGSTOP) until every other lists it down, then continued: every
/// node lists all others alive again within a few probe periods. (Before, the renewal
/// reached each peer only as the node probed it or was probed by it, one member per
/// second: about a probe period per member.)
#[test]
fn a_node_declared_down_and_back_is_believed_by_every_member_at_once() {
    let (m, _) = mass_started(10, 10);
    wait_for("every node to list all others alive", Duration::from_secs(40), || short_views(&m, 0..10).is_empty());
    let pid = m.nodes[9].pid.expect("h09 runs");
    signal(pid, "-STOP");
    wait_for("every other node to list h09 down", Duration::from_secs(20), || {
        (0..9).all(|i| {
            let (_, out, _) = m.at(i, &["peers", "--json"]);
            let peers: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap_or_default();
            peers.iter().any(|p| p["host"] == "h09" && p["state"] == "down")
        })
    });
    signal(pid, "-CONT");
    let start = Instant::now();
    wait_for("every node to list all others alive after h09 came back", Duration::from_secs(30), || {
        short_views(&m, 0..10).is_empty()
    });
    let took = start.elapsed();
    eprintln!("h09 back: every view whole {:.2} s after SIGCONT", took.as_secs_f64());
    let log = std::fs::read_to_string(m.root().join("h09.log")).unwrap();
    assert!(log.contains("renewed its own identity and announces it"), "h09 did not say it rejoined:\n{log}");
    assert!(took < Duration::from_secs(7), "the renewal took {took:?} to reach every member");
}
