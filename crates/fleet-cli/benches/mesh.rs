//! Three loopback nodes with 50 stub agents each: merged `ps` (through the
//! CLI and through a warm gRPC channel), heartbeat propagation (a rewrite on
//! host c until the event reaches a watcher on host a), cross-host send
//! without verify, and the nodes' idle RSS and CPU.
//!
//! Run: `cargo bench -p fleet-cli --bench mesh` (docs/benchmarks.md).

#[path = "../../../tests/mesh_util.rs"]
mod mesh_util;

use fleet_proto::v1;
use mesh_util::Mesh;
use std::time::{Duration, Instant};

const AGENTS: usize = 50;

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
}

fn line(what: &str, v: &mut [Duration], target: &str) {
    let (p50, p99) = (pct(v, 0.5), pct(v, 0.99));
    println!("{what:<44} {:>6} {p50:>9.2} {p99:>9.2}   {target}", v.len());
}

fn proc_stat(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap_or(0) + 2..].split(' ').collect();
    let ticks = f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    (rss_kb, ticks)
}

fn main() {
    let mut m = Mesh::new("acme");
    m.interval = 15;
    let agents = |prefix: &str| {
        let mut s = String::new();
        for i in 0..AGENTS {
            s.push_str(&format!("  - {{ name: {prefix}{i:02}, runtime: stub }}\n"));
        }
        s
    };
    m.add_host("a", &agents("a"));
    m.add_host("b", &agents("b"));
    m.add_host("c", &format!("{}  - {{ name: quiet, runtime: quiet }}\n", agents("c")));
    eprintln!("starting {} stub agents on 3 hosts...", 3 * AGENTS + 1);
    for i in 0..3 {
        m.start_agents(i);
    }
    m.start_node(1, "127.0.0.1:0", &[]);
    m.start_node(2, "127.0.0.1:0", &[]);
    let peers = vec![m.addr(1), m.addr(2)];
    m.start_node(0, "127.0.0.1:0", &peers);
    let expected = 3 * AGENTS + 1;

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let target = fleet_node::client::Target::Socket(m.nodes[0].home.join("fleet/node.sock"));
    let mut client = rt.block_on(fleet_node::client::fleet(&target)).unwrap();
    let list = v1::ListAgentsRequest { scope: v1::Scope::Mesh as i32, hosts: vec![], deadline_ms: 0, fresh: false };
    mesh_util::wait_for("every agent listed", Duration::from_secs(30), || {
        rt.block_on(client.list_agents(list.clone())).map(|r| r.into_inner().agents.len()).unwrap_or(0) == expected
    });

    println!("mesh bench: 3 loopback nodes, {expected} stub agents");
    println!("{:<44} {:>6} {:>9} {:>9}   target", "measure", "runs", "p50 ms", "p99 ms");

    // Merged ps over a warm channel.
    let mut warm = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        let n = rt.block_on(client.list_agents(list.clone())).unwrap().into_inner().agents.len();
        warm.push(t.elapsed());
        assert_eq!(n, expected);
    }
    line("merged ps, warm gRPC channel", &mut warm, "p50 <= 5 ms");

    // Merged ps through the CLI process.
    let mut cli = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        let (code, _, err) = m.at(0, &["ps", "--json"]);
        cli.push(t.elapsed());
        assert_eq!(code, 0, "{err}");
    }
    line("merged ps, `fleet ps --json` process", &mut cli, "p50 <= 20 ms");

    // Heartbeat propagation: rewrite quiet.hb on c, wait for the event on a.
    let mut stream = rt
        .block_on(client.watch_heartbeats(v1::WatchHeartbeatsRequest {
            scope: v1::Scope::Mesh as i32,
            hosts: vec!["c".into()],
            snapshot: false,
            host_tick_ms: 0,
        }))
        .unwrap()
        .into_inner();
    let run_dir = m.nodes[2].home.join("fleet/run");
    let base = fleet_tmux::hbwriter::now_unix() - 10_000;
    let mut prop = Vec::new();
    for i in 0..200 {
        // Distinct, old timestamps: each rewrite is a new beat of a stale agent.
        let ts = fleet_core::heartbeat::Timestamp::from_unix(base + i);
        let tmp = run_dir.join(".quiet.tmp");
        std::fs::write(&tmp, format!("ts={}\npid=1\nstatus=ok\n", ts.to_iso_compact())).unwrap();
        let t = Instant::now();
        std::fs::rename(&tmp, run_dir.join("quiet.hb")).unwrap();
        loop {
            let ev = rt.block_on(async { tokio::time::timeout(Duration::from_secs(3), stream.message()).await });
            let ev = ev.expect("event within 3 s").unwrap().unwrap();
            if ev.agent == "quiet" {
                break;
            }
        }
        prop.push(t.elapsed());
    }
    line("heartbeat propagation c -> watcher on a", &mut prop, "p99 <= 100 ms");

    // Cross-host send without verify, warm channel.
    let mut sends = Vec::new();
    for i in 0..100 {
        let req = v1::SendRequest {
            host: "c".into(),
            agent: format!("c{:02}", i % AGENTS),
            text: format!("bench message {i}"),
            source_label: "bench".into(),
            ..Default::default()
        };
        let t = Instant::now();
        let r = rt.block_on(client.send_message(req)).unwrap().into_inner();
        sends.push(t.elapsed());
        assert_eq!(r.outcome, v1::DeliveryOutcome::Delivered as i32, "{}", r.detail);
    }
    line("cross-host send a -> c, no verify", &mut sends, "p50 <= 10 ms");

    // Idle cost: RSS now, CPU over 5 s with nothing asked.
    let pids: Vec<u32> = m.nodes.iter().map(|n| n.pid.unwrap()).collect();
    let before: Vec<(u64, u64)> = pids.iter().map(|p| proc_stat(*p)).collect();
    std::thread::sleep(Duration::from_secs(5));
    let tick = 100.0; // USER_HZ
    for (i, pid) in pids.iter().enumerate() {
        let (rss, ticks) = proc_stat(*pid);
        let cpu = (ticks - before[i].1) as f64 / tick / 5.0 * 100.0;
        println!(
            "node {} idle: RSS {:.1} MB, CPU {:.2}% of one core (target RSS <= 30 MB)",
            m.nodes[i].host,
            rss as f64 / 1024.0,
            cpu
        );
    }
}
