//! Membership (SWIM over QUIC) figures, with the default SWIM timings.
//!
//! 1. In network namespaces (root only; skipped with a message otherwise),
//!    for 3 and for 8 hosts, seeded by mDNS (no static peers) and by one
//!    static seed (mDNS off): the time from a new node's start until every
//!    other host lists it alive, from cutting one host's link until every
//!    other host lists it down, from restoring the link until every other
//!    host lists it alive again, and from a clean stop (SIGTERM) of a node
//!    until every other host no longer lists it alive. Each is repeated
//!    [`RUNS`] times; min/median/max over the runs, where one run's figure is
//!    the time until the *last* other host saw it.
//! 2. On loopback, 10, 20 and 40 nodes seeded as a chain (node i has node
//!    i-1 as its one static seed, mDNS off): once every node lists every other
//!    alive, the membership datagram bytes per node per second (NodeInfo's
//!    `membership_bytes_in`/`_out`) over a 10 s window, the UDP datagrams
//!    sent in this network namespace in that window per node (/proc/net/snmp:
//!    all QUIC packets, keep-alives included), CPU and RSS per node.
//!
//! Observers read `ListPeers` (what `fleet peers --json` prints) straight from
//! each node's local socket every 25 ms, one thread per observer, so the
//! figures carry at most ~25 ms of polling slack.
//!
//! Run: `cargo bench -p fleet-cli --bench membership` (as root for part 1;
//! docs/benchmarks.md).

#[path = "../../../tests/mesh_util.rs"]
mod mesh_util;
#[path = "../../../tests/netns_util.rs"]
mod netns_util;

use fleet_node::client::{self, Target};
use fleet_proto::v1;
use fleet_proto::v1::mesh_client::MeshClient;
use mesh_util::Mesh;
use netns_util::{HostId, Lab};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Repeats of each namespace measurement.
const RUNS: usize = 3;
/// How often an observer asks its node.
const POLL: Duration = Duration::from_millis(25);
/// Pause between the steps of a namespace run (after the mesh is whole again).
const SETTLE_NS: Duration = Duration::from_millis(500);
/// Loopback mesh sizes.
const SIZES: [usize; 3] = [10, 20, 40];
/// Quiet time after the loopback mesh converged, before the traffic window.
const SETTLE: Duration = Duration::from_secs(5);
/// The traffic window.
const WINDOW: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

fn socket_of(home: &Path) -> PathBuf {
    home.join("fleet/node.sock")
}

// ---------------------------------------------------------------- observing

#[derive(Clone, Copy, Debug)]
enum Want {
    /// Some row of the host is alive.
    Alive,
    /// The host has rows and all of them are down.
    Down,
    /// No row of the host is alive (down, or gone from the list).
    NotAlive,
}

fn is(p: &v1::Peer, s: v1::PeerState) -> bool {
    p.state == s as i32
}

fn holds(peers: &[v1::Peer], host: &str, want: Want) -> bool {
    let mut rows = peers.iter().filter(|p| p.host == host).peekable();
    match want {
        Want::Alive => rows.any(|p| is(p, v1::PeerState::Alive)),
        Want::Down => rows.peek().is_some() && rows.all(|p| is(p, v1::PeerState::Down)),
        Want::NotAlive => !rows.any(|p| is(p, v1::PeerState::Alive)),
    }
}

fn list_peers(
    rt: &tokio::runtime::Runtime,
    client: &mut Option<MeshClient<Channel>>,
    socket: &Path,
) -> Option<Vec<v1::Peer>> {
    if client.is_none() {
        *client = rt.block_on(client::mesh(&Target::Socket(socket.to_path_buf()))).ok();
    }
    let c = client.as_mut()?;
    match rt.block_on(c.list_peers(v1::ListPeersRequest {})) {
        Ok(r) => Some(r.into_inner().peers),
        Err(_) => {
            *client = None;
            None
        }
    }
}

/// Ask the node at `socket` every [`POLL`] until it lists `host` as `want`;
/// the instant it was first seen so, or None at `until`.
fn poll_until(socket: &Path, host: &str, want: Want, until: Instant) -> Option<Instant> {
    let rt = runtime();
    let mut client = None;
    while Instant::now() < until {
        if let Some(peers) = list_peers(&rt, &mut client, socket)
            && holds(&peers, host, want)
        {
            return Some(Instant::now());
        }
        std::thread::sleep(POLL);
    }
    None
}

/// Start one observer per socket, then run `action`: per observer, how long
/// after the start of `action` it first listed `host` as `want` (None: not
/// within `timeout`).
fn observe(
    sockets: &[PathBuf],
    host: &str,
    want: Want,
    timeout: Duration,
    action: impl FnOnce(),
) -> Vec<Option<Duration>> {
    std::thread::scope(|s| {
        let until = Instant::now() + timeout;
        let observers: Vec<_> =
            sockets.iter().map(|sock| s.spawn(move || poll_until(sock, host, want, until))).collect();
        let t0 = Instant::now();
        action();
        observers
            .into_iter()
            .map(|o| o.join().expect("observer thread").map(|at| at.saturating_duration_since(t0)))
            .collect()
    })
}

/// Wait (not measured) until every node lists every other of `hosts` alive.
fn wait_mesh(sockets: &[PathBuf], hosts: &[String], timeout: Duration) {
    let rt = runtime();
    let mut clients: Vec<Option<MeshClient<Channel>>> = sockets.iter().map(|_| None).collect();
    let start = Instant::now();
    loop {
        let mut missing = vec![];
        for (i, sock) in sockets.iter().enumerate() {
            let peers = list_peers(&rt, &mut clients[i], sock).unwrap_or_default();
            for (j, h) in hosts.iter().enumerate() {
                if i != j && !holds(&peers, h, Want::Alive) {
                    missing.push(format!("{} does not list {h} alive", hosts[i]));
                }
            }
        }
        if missing.is_empty() {
            return;
        }
        assert!(start.elapsed() < timeout, "mesh not formed after {timeout:?}: {}", missing.join("; "));
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------- figures

/// One run: when the last and the first observer saw it.
#[derive(Clone, Copy)]
struct Sample {
    last: Option<Duration>,
    first: Option<Duration>,
}

impl Sample {
    fn of(seen: &[Option<Duration>]) -> Sample {
        let all: Option<Vec<Duration>> = seen.iter().copied().collect();
        Sample { last: all.and_then(|v| v.into_iter().max()), first: seen.iter().flatten().min().copied() }
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn print_row(seeding: &str, hosts: usize, what: &str, samples: &[Sample]) {
    let mut last: Vec<f64> = samples.iter().filter_map(|s| s.last).map(secs).collect();
    let fmt = |d: Option<Duration>| d.map_or("timeout".to_string(), |d| format!("{:.2}", secs(d)));
    let runs: Vec<String> = samples.iter().map(|s| format!("{}..{}", fmt(s.first), fmt(s.last))).collect();
    let (lo, mid, hi) = if last.is_empty() {
        ("-".to_string(), "-".to_string(), "-".to_string())
    } else {
        let m = median(&mut last);
        (format!("{:.2}", last[0]), format!("{m:.2}"), format!("{:.2}", last[last.len() - 1]))
    };
    println!("{seeding:<13} {hosts:>5}  {what:<34} {lo:>6} {mid:>7} {hi:>6}   {}", runs.join("  "));
}

// ---------------------------------------------------------------- namespaces

#[derive(Clone, Copy, PartialEq, Eq)]
enum Seeding {
    Mdns,
    StaticSeed,
}

impl Seeding {
    fn label(self) -> &'static str {
        match self {
            Seeding::Mdns => "mDNS",
            Seeding::StaticSeed => "1 static seed",
        }
    }
}

/// Start host `h`'s node: mDNS on and no static peers, or mDNS off and host 0
/// as the one static seed (host 0 itself has none).
fn start(lab: &mut Lab, h: HostId, seeding: Seeding) {
    match seeding {
        Seeding::Mdns => lab.start_node_with(h, vec![], &[("FLEET_MDNS", "true")]),
        Seeding::StaticSeed if h == 0 => lab.start_node_with(h, vec![], &[]),
        Seeding::StaticSeed => {
            let seed = lab.addr(0);
            lab.start_node_with(h, vec![seed], &[])
        }
    };
}

struct LabFigures {
    join: Vec<Sample>,
    down: Vec<Sample>,
    alive: Vec<Sample>,
    leave: Vec<Sample>,
}

/// A lab of `n - 1` running hosts plus [`RUNS`] spare ones. Run k: spare k
/// joins (the mesh is now `n` hosts); one host's link is cut, then restored;
/// spare k is stopped cleanly (SIGTERM) and leaves.
fn lab_figures(seeding: Seeding, n: usize) -> LabFigures {
    assert!(n >= 3);
    let mut lab = Lab::new("acme");
    let base: Vec<HostId> = (0..n - 1).map(|i| lab.add_host(&format!("h{i}"), "  []\n")).collect();
    let spare: Vec<HostId> = (0..RUNS).map(|k| lab.add_host(&format!("j{k}"), "  []\n")).collect();
    for &h in &base {
        start(&mut lab, h, seeding);
    }
    let sock = |lab: &Lab, h: HostId| socket_of(&lab.hosts[h].home);
    let name = |lab: &Lab, h: HostId| lab.hosts[h].name.clone();
    let base_socks: Vec<PathBuf> = base.iter().map(|&h| sock(&lab, h)).collect();
    let base_names: Vec<String> = base.iter().map(|&h| name(&lab, h)).collect();
    wait_mesh(&base_socks, &base_names, Duration::from_secs(30));
    std::thread::sleep(SETTLE_NS);

    let mut fig = LabFigures { join: vec![], down: vec![], alive: vec![], leave: vec![] };
    for (k, &new) in spare.iter().enumerate() {
        // (a) a new node's start until every other host lists it alive.
        let new_name = name(&lab, new);
        let seen =
            observe(&base_socks, &new_name, Want::Alive, Duration::from_secs(30), || start(&mut lab, new, seeding));
        fig.join.push(Sample::of(&seen));
        let all: Vec<HostId> = base.iter().copied().chain([new]).collect();
        let all_socks: Vec<PathBuf> = all.iter().map(|&h| sock(&lab, h)).collect();
        let all_names: Vec<String> = all.iter().map(|&h| name(&lab, h)).collect();
        wait_mesh(&all_socks, &all_names, Duration::from_secs(30));
        std::thread::sleep(SETTLE_NS);

        // (b) cut one host's link (never the seed, host 0) until every other host lists it down.
        let victim = base[1 + k % (n - 2)];
        let victim_name = name(&lab, victim);
        let others: Vec<PathBuf> = all.iter().filter(|&&h| h != victim).map(|&h| sock(&lab, h)).collect();
        let seen = observe(&others, &victim_name, Want::Down, Duration::from_secs(30), || lab.cut_link(victim));
        fig.down.push(Sample::of(&seen));

        // (c) restore it until every other host lists it alive again.
        let seen = observe(&others, &victim_name, Want::Alive, Duration::from_secs(30), || lab.restore_link(victim));
        fig.alive.push(Sample::of(&seen));
        wait_mesh(&all_socks, &all_names, Duration::from_secs(30));
        std::thread::sleep(SETTLE_NS);

        // A clean stop: until no other host lists it alive.
        let seen = observe(&base_socks, &new_name, Want::NotAlive, Duration::from_secs(30), || {
            lab.stop_node(new, Duration::from_secs(3));
        });
        fig.leave.push(Sample::of(&seen));
        std::thread::sleep(SETTLE_NS);
    }
    fig
}

fn namespaces() {
    if std::env::var_os("FLEET_BENCH_SKIP_NETNS").is_some() {
        println!("namespace part SKIPPED: FLEET_BENCH_SKIP_NETNS is set");
        return;
    }
    if let Err(why) = netns_util::preflight() {
        println!("namespace part SKIPPED: {why}");
        println!(
            "(run `cargo bench -p fleet-cli --bench membership` as root for the join/detection/readmission figures)"
        );
        println!();
        return;
    }
    println!("membership in network namespaces: seconds until the LAST other host saw it (default SWIM timings)");
    println!(
        "{:<13} {:>5}  {:<34} {:>6} {:>7} {:>6}   per run: first..last other host",
        "seeding", "hosts", "measure", "min", "median", "max"
    );
    let t = Instant::now();
    for seeding in [Seeding::Mdns, Seeding::StaticSeed] {
        for n in [3, 8] {
            let result = std::panic::catch_unwind(|| lab_figures(seeding, n));
            match result {
                Ok(f) => {
                    print_row(seeding.label(), n, "new node start -> alive everywhere", &f.join);
                    print_row(seeding.label(), n, "link cut -> down everywhere", &f.down);
                    print_row(seeding.label(), n, "link restored -> alive everywhere", &f.alive);
                    print_row(seeding.label(), n, "SIGTERM -> not alive everywhere", &f.leave);
                }
                Err(_) => println!("{:<13} {n:>5}  FAILED (see the panic above)", seeding.label()),
            }
        }
    }
    println!("(namespace part took {:.0} s)", t.elapsed().as_secs_f64());
    println!();
}

// ---------------------------------------------------------------- loopback

/// (VmRSS in kB, utime + stime in clock ticks) of `pid`.
fn proc_stat(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat[stat.rfind(')').map_or(0, |i| i + 2)..].split(' ').collect();
    let ticks = f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    (rss_kb, ticks)
}

/// `Udp: OutDatagrams` of this network namespace (/proc/net/snmp).
fn udp_out_datagrams() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let udp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
    let &[names, values] = udp.as_slice() else { return 0 };
    let at = names.split_whitespace().position(|n| n == "OutDatagrams");
    at.and_then(|i| values.split_whitespace().nth(i)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

struct Traffic {
    n: usize,
    start_all: Duration,
    converge: Duration,
    in_rates: Vec<f64>,
    out_rates: Vec<f64>,
    udp_per_node: f64,
    cpu_pct: Vec<f64>,
    rss_mb: Vec<f64>,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::MIN, f64::max)
}

fn loopback_traffic(n: usize) -> Traffic {
    let mut m = Mesh::new("acme");
    for i in 0..n {
        m.add_host(&format!("n{n}x{i:02}"), "  []\n");
    }
    let t = Instant::now();
    for i in 0..n {
        let peers = if i == 0 { vec![] } else { vec![m.addr(i - 1)] };
        m.start_node(i, "127.0.0.1:0", &peers);
    }
    let start_all = t.elapsed();

    let rt = runtime();
    let mut clients: Vec<MeshClient<Channel>> = m
        .nodes
        .iter()
        .map(|node| rt.block_on(client::mesh(&Target::Socket(socket_of(&node.home)))).expect("node socket"))
        .collect();
    let info =
        |c: &mut MeshClient<Channel>| rt.block_on(c.node_info(v1::NodeInfoRequest {})).expect("NodeInfo").into_inner();

    // Converged: every node lists every other alive.
    let t = Instant::now();
    loop {
        let behind = clients.iter_mut().map(&info).filter(|r| r.members_alive as usize != n - 1).count();
        if behind == 0 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(90), "{behind} of {n} nodes still do not see all others alive");
        std::thread::sleep(Duration::from_millis(200));
    }
    let converge = t.elapsed();
    std::thread::sleep(SETTLE);

    let pids: Vec<u32> = m.nodes.iter().map(|node| node.pid.expect("node running")).collect();
    let snap = |clients: &mut [MeshClient<Channel>]| {
        clients
            .iter_mut()
            .zip(&pids)
            .map(|(c, pid)| {
                let r = info(c);
                (r.membership_bytes_in, r.membership_bytes_out, Instant::now(), proc_stat(*pid).1, r.members_alive)
            })
            .collect::<Vec<_>>()
    };
    let udp0 = udp_out_datagrams();
    let t0 = Instant::now();
    let before = snap(&mut clients);
    std::thread::sleep(WINDOW);
    let after = snap(&mut clients);
    let udp1 = udp_out_datagrams();
    let window = t0.elapsed();
    let mut in_rates = vec![];
    let mut out_rates = vec![];
    let mut cpu_pct = vec![];
    for (b, a) in before.iter().zip(&after) {
        let dt = secs(a.2 - b.2);
        in_rates.push((a.0 - b.0) as f64 / dt);
        out_rates.push((a.1 - b.1) as f64 / dt);
        cpu_pct.push((a.3 - b.3) as f64 / 100.0 / dt * 100.0); // USER_HZ = 100
    }
    let still = after.iter().filter(|a| a.4 as usize != n - 1).count();
    if still > 0 {
        println!("  note: {still} of {n} nodes did not list every other alive at the end of the window");
    }
    let rss_mb = pids.iter().map(|p| proc_stat(*p).0 as f64 / 1024.0).collect();
    Traffic {
        n,
        start_all,
        converge,
        in_rates,
        out_rates,
        udp_per_node: udp1.saturating_sub(udp0) as f64 / n as f64 / secs(window),
        cpu_pct,
        rss_mb,
    }
}

fn loopback() {
    println!(
        "membership traffic on loopback: chain of static seeds, mDNS off; {} s window after convergence + {} s settle",
        WINDOW.as_secs(),
        SETTLE.as_secs()
    );
    println!(
        "{:>5}  {:>9} {:>9}  {:>10} {:>10}  {:>10} {:>10}  {:>10}  {:>8}  {:>8}",
        "nodes", "start s", "conv s", "in B/s", "in max", "out B/s", "out max", "UDP dg/s", "CPU %", "RSS MB"
    );
    // Whatever else on this host sends UDP in this network namespace counts in
    // "UDP dg/s" too: measured once here, with no mesh running, not subtracted.
    let u0 = udp_out_datagrams();
    std::thread::sleep(Duration::from_secs(3));
    let baseline = udp_out_datagrams().saturating_sub(u0) as f64 / 3.0;
    let mut last = None;
    for n in SIZES {
        let t = loopback_traffic(n);
        let mut rss = t.rss_mb.clone();
        println!(
            "{:>5}  {:>9.1} {:>9.1}  {:>10.0} {:>10.0}  {:>10.0} {:>10.0}  {:>10.1}  {:>8.2}  {:>8.1}",
            t.n,
            secs(t.start_all),
            secs(t.converge),
            mean(&t.in_rates),
            max(&t.in_rates),
            mean(&t.out_rates),
            max(&t.out_rates),
            t.udp_per_node,
            mean(&t.cpu_pct),
            median(&mut rss),
        );
        last = Some(t);
    }
    println!("(start s: starting the nodes one by one, each until it answers; conv s: from then until every");
    println!(" node lists every other alive; in/out: SWIM datagram payload bytes per node per second, mean");
    println!(" and max over nodes; UDP dg/s: UDP datagrams sent in this network namespace per node per");
    println!(" second, i.e. every QUIC packet including keep-alives and acks (host baseline with no mesh:");
    println!(" {baseline:.1} dg/s in all, not subtracted); CPU %: mean per node, of one core, over the window;");
    println!(" RSS MB: median per node)");
    if let Some(t) = last {
        let mut rss = t.rss_mb.clone();
        let med = median(&mut rss);
        println!();
        println!(
            "RSS per node, {} nodes: min {:.1} MB, median {med:.1} MB, max {:.1} MB, sum {:.0} MB",
            t.n,
            rss[0],
            rss[rss.len() - 1],
            t.rss_mb.iter().sum::<f64>()
        );
        for chunk in t.rss_mb.chunks(10) {
            println!("  {}", chunk.iter().map(|r| format!("{r:5.1}")).collect::<Vec<_>>().join(" "));
        }
    }
}

fn main() {
    let t = Instant::now();
    if std::env::var_os("MEMB_DEBUG").is_none() {
        namespaces();
    }
    loopback();
    println!();
    println!("total {:.0} s", t.elapsed().as_secs_f64());
}
