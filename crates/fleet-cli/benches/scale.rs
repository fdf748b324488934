//! Scale: N real `fleet node` processes on loopback (issue 17).
//!
//! For each mesh size (`FLEET_SCALE_SIZES`, default `10,50,100`), with one
//! static seed (node 0), mDNS off and `FLEET_SCALE_AGENTS` roster agents per
//! host (default 10, not started: each is a row with a missing pane):
//!
//! 1. **Mass start**: node 0 is started, then the other N-1 are spawned at
//!    once, all with node 0 as their one static peer. Convergence is the time
//!    from the last spawn until every node's view is complete (N-1 other
//!    members, alive or suspected, none down); also until each node listed all
//!    N-1 alive, and until every node does in the same poll round (no
//!    suspicion anywhere at that instant), and the CPU time all nodes spent.
//! 2. **Idle cost**: after a 35 s settle (longer than a node keeps an unused
//!    gRPC connection; SWIM's QUIC connections close after 120 s idle, and up to
//!    about 100 members SWIM uses each more often), a 10 s window: per-node CPU (% of one
//!    core), RSS (median, max), SWIM payload bytes per second (NodeInfo
//!    counters), and the UDP datagrams and TCP segments sent per node per second
//!    (`/proc/net/snmp` of the bench's own network namespace: the bench
//!    re-executes itself under `unshare --net` when it runs as root, so only
//!    its nodes count; otherwise the host's other traffic counts too and the
//!    output says so).
//! 3. **Merged ps** from node 0 over all N hosts: `ListAgents(MESH)` in
//!    process over a warm channel (200 calls), and `fleet ps --json` as a
//!    process (100 calls, the CLI as a user runs it), p50/p99, and the CPU a
//!    call costs node 0 and the CLI (from /proc, 10 ms ticks over all calls:
//!    figures a busy machine does not stretch as it stretches latency); the same
//!    with `--fresh` (the fan-out) when the CLI has it.
//! 4. **One join**: one more node is spawned; the time until every node lists
//!    it alive and it lists every other alive.
//! 5. **Detection**: `kill -9` of that node; the time until every other node
//!    lists it down. Then `FLEET_SCALE_KILLS` more kills, one at a time, timed
//!    from the logs (p50, p90, max), and a count of live nodes that were
//!    declared down anywhere in the run (false downs, from the logs).
//!
//! Observers poll each node's local socket (NodeInfo or ListPeers) in rounds
//! of every node still waited for, every 100 ms, all nodes of a round at once:
//! figures carry that slack and the slowest answer of a round (not the sum of
//! 100 answers, up to seconds on a busy machine). Detection also prints when
//! the first node and the median node saw the kill.
//!
//! The mass start and the detection are also timed from the nodes' own logs,
//! free of the observer's slack: each node logs `membership: member up` and
//! `member down` with a UTC timestamp when its failure detector decides, and
//! the bench reads those lines afterwards (same clock, one machine). A view is
//! complete in the log when N-1 hosts are logged up and not down since.
//!
//! Run: `cargo bench -p fleet-cli --bench scale` (root for the private network
//! namespace); `FLEET_SCALE_SIZES=3,100`, `FLEET_SCALE_AGENTS=10`,
//! `FLEET_SCALE_PROBE_MS=2000` (the nodes' probe interval; the harness's 500 ms
//! by default). Load average is printed with each figure: figures taken while
//! other builds run measure them too. `FLEET_SCALE_WRAP0="heaptrack -o /tmp/hp"`
//! runs node 0 under a wrapper (a heap profile of one node of the mesh);
//! `FLEET_SCALE_HOLD=/tmp/hold` pauses after the merged ps until that file is
//! removed (to profile the CLI or a node against the live mesh);
//! `FLEET_SCALE_KEEP=DIR` keeps the nodes' logs in `DIR/<size>/`
//! (`FLEET_SCALE_NODE_LOG=FILTER` sets their log filter; foca logs only in a
//! build with its `tracing` feature on);
//! `FLEET_SCALE_KILL_AFTER_S=N` waits N s between the join and the kill;
//! `FLEET_SCALE_KILLS=K` (default 5, at most N-2) kills K more nodes one at a
//! time after it, each 0-1 s after the last was logged down everywhere (or 30 s
//! went by), for a distribution of detection times rather than one sample.

#[path = "../../../tests/mesh_util.rs"]
mod mesh_util;

use fleet_node::client::{self, Target};
use fleet_proto::v1;
use fleet_proto::v1::fleet_client::FleetClient;
use fleet_proto::v1::mesh_client::MeshClient;
use mesh_util::Mesh;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Before the idle window: longer than a node keeps an unused gRPC connection to a
/// peer (`timings.idle_close_ms`, 30 s), so the window measures an idle mesh,
/// not the tail of the mass start (`FLEET_SCALE_SETTLE_S`).
fn settle() -> Duration {
    Duration::from_secs(std::env::var("FLEET_SCALE_SETTLE_S").ok().and_then(|s| s.parse().ok()).unwrap_or(35))
}
const WINDOW: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);
const NETNS_MARK: &str = "FLEET_SCALE_IN_NETNS";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

fn socket_of(home: &Path) -> PathBuf {
    home.join("fleet/node.sock")
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// (VmRSS in kB, utime + stime in clock ticks) of `pid`.
fn proc_stat(pid: u32) -> (u64, u64) {
    (status_kb(pid, "VmRSS:"), cpu_ticks(pid))
}

/// A kB figure of /proc/PID/status (`VmRSS:`, `RssAnon:`: the node's own
/// memory, without the pages of the binary that every node shares).
fn status_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn cpu_ticks(pid: u32) -> u64 {
    stat_ticks(&pid.to_string(), 11)
}

/// The CPU time (clock ticks) of this process's children that ended and were
/// waited for: the CLI runs, not the nodes (still running).
fn children_ticks() -> u64 {
    stat_ticks("self", 13)
}

/// Two fields of /proc/PID/stat from `at` (after the name), added: 11 for
/// utime + stime, 13 for cutime + cstime.
fn stat_ticks(pid: &str, at: usize) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat[stat.rfind(')').map_or(0, |i| i + 2)..].split(' ').collect();
    f.get(at).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + f.get(at + 1).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

/// Milliseconds of CPU per call: `ticks` clock ticks (100 a second) over `calls`.
fn per_call_ms(ticks: u64, calls: u32) -> f64 {
    ticks as f64 * 10.0 / f64::from(calls)
}

/// A counter of /proc/net/snmp, e.g. ("Udp:", "OutDatagrams").
fn snmp(proto: &str, name: &str) -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let rows: Vec<&str> = snmp.lines().filter(|l| l.starts_with(proto)).collect();
    let &[names, values] = rows.as_slice() else { return 0 };
    let at = names.split_whitespace().position(|n| n == name);
    at.and_then(|i| values.split_whitespace().nth(i)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn packets() -> (u64, u64) {
    (snmp("Udp:", "OutDatagrams"), snmp("Tcp:", "OutSegs"))
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Clients {
    rt: tokio::runtime::Runtime,
    mesh: Vec<Option<MeshClient<Channel>>>,
    sockets: Vec<PathBuf>,
}

impl Clients {
    fn new(sockets: Vec<PathBuf>) -> Clients {
        Clients { rt: runtime(), mesh: sockets.iter().map(|_| None).collect(), sockets }
    }

    fn push(&mut self, socket: PathBuf) {
        self.sockets.push(socket);
        self.mesh.push(None);
    }

    fn client(&mut self, i: usize) -> Option<MeshClient<Channel>> {
        if self.mesh[i].is_none() {
            self.mesh[i] = self.rt.block_on(client::mesh(&Target::Socket(self.sockets[i].clone()))).ok();
        }
        self.mesh[i].take()
    }

    fn info(&mut self, i: usize) -> Option<v1::NodeInfoResponse> {
        let mut c = self.client(i)?;
        let r = self.rt.block_on(c.node_info(v1::NodeInfoRequest {})).ok()?.into_inner();
        self.mesh[i] = Some(c);
        Some(r)
    }

    /// NodeInfo of every node at once.
    fn info_all(&mut self) -> Vec<Option<v1::NodeInfoResponse>> {
        let all: Vec<usize> = (0..self.sockets.len()).collect();
        self.ask_all(&all, ask_info)
    }

    /// One question to each node of `which` at once (one task per node on this thread): a
    /// round takes the slowest answer, not the sum of 100 (9 s in a mass start at load 20,
    /// polled one after another), so convergence figures carry less of the observer.
    /// Answers in the order of `which`.
    fn ask_all<T, F, Fut>(&mut self, which: &[usize], ask: F) -> Vec<Option<T>>
    where
        T: Send + 'static,
        F: Fn(MeshClient<Channel>) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = Option<(MeshClient<Channel>, T)>> + Send + 'static,
    {
        let mut tasks = tokio::task::JoinSet::new();
        for (k, &i) in which.iter().enumerate() {
            let (held, socket) = (self.mesh[i].take(), self.sockets[i].clone());
            let asked = ask.clone();
            tasks.spawn_on(
                async move {
                    let c = match held {
                        Some(c) => c,
                        None => client::mesh(&Target::Socket(socket)).await.ok()?,
                    };
                    let (c, r) = asked(c).await?;
                    Some((k, c, r))
                },
                self.rt.handle(),
            );
        }
        let mut out: Vec<Option<T>> = which.iter().map(|_| None).collect();
        for (k, c, r) in self.rt.block_on(tasks.join_all()).into_iter().flatten() {
            self.mesh[which[k]] = Some(c);
            out[k] = Some(r);
        }
        out
    }

    /// Poll the nodes `which` in rounds, all of a round at once ([`Clients::ask_all`]),
    /// until `done` holds for each node's answer; per node, when it first held (since
    /// `t0`), None if not within `timeout`.
    fn until_all<T, F, Fut>(
        &mut self,
        which: &[usize],
        t0: Instant,
        timeout: Duration,
        ask: F,
        done: impl Fn(&T) -> bool,
    ) -> Vec<Option<Duration>>
    where
        T: Send + 'static,
        F: Fn(MeshClient<Channel>) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = Option<(MeshClient<Channel>, T)>> + Send + 'static,
    {
        let mut seen: Vec<Option<Duration>> = vec![None; which.len()];
        while seen.iter().any(Option::is_none) && t0.elapsed() < timeout {
            let waiting: Vec<usize> = (0..which.len()).filter(|&k| seen[k].is_none()).collect();
            let asked: Vec<usize> = waiting.iter().map(|&k| which[k]).collect();
            let answers = self.ask_all(&asked, ask.clone());
            for (&k, answer) in waiting.iter().zip(answers) {
                if answer.as_ref().is_some_and(&done) {
                    seen[k] = Some(t0.elapsed());
                }
            }
            std::thread::sleep(POLL);
        }
        seen
    }

    /// How many other hosts node `i` answers from its replicated view (a row
    /// with `heard_unix_ms`), and how many agent rows it lists in all.
    fn replicated(&mut self, i: usize) -> Option<(usize, usize)> {
        let socket = self.sockets[i].clone();
        let r = self.rt.block_on(async move {
            let mut c = client::fleet(&Target::Socket(socket)).await.ok()?;
            let req = v1::ListAgentsRequest { scope: v1::Scope::Mesh as i32, ..Default::default() };
            c.list_agents(req).await.ok().map(|r| r.into_inner())
        })?;
        Some((r.hosts.iter().filter(|h| h.heard_unix_ms > 0).count(), r.agents.len()))
    }

    fn peers(&mut self, i: usize) -> Option<Vec<v1::Peer>> {
        let mut c = self.client(i)?;
        let r = self.rt.block_on(c.list_peers(v1::ListPeersRequest {})).ok()?.into_inner().peers;
        self.mesh[i] = Some(c);
        Some(r)
    }

    /// Poll the nodes `which` in rounds until `done(i)` holds for each; per
    /// node, when it first held (since `t0`), None if not within `timeout`.
    fn until(
        &mut self,
        which: &[usize],
        t0: Instant,
        timeout: Duration,
        mut done: impl FnMut(&mut Clients, usize) -> bool,
    ) -> Vec<Option<Duration>> {
        let mut seen: Vec<Option<Duration>> = vec![None; which.len()];
        while seen.iter().any(Option::is_none) && t0.elapsed() < timeout {
            for (k, &i) in which.iter().enumerate() {
                if seen[k].is_none() && done(self, i) {
                    seen[k] = Some(t0.elapsed());
                }
            }
            std::thread::sleep(POLL);
        }
        seen
    }
}

async fn ask_info(mut c: MeshClient<Channel>) -> Option<(MeshClient<Channel>, v1::NodeInfoResponse)> {
    let r = c.node_info(v1::NodeInfoRequest {}).await.ok()?.into_inner();
    Some((c, r))
}

async fn ask_peers(mut c: MeshClient<Channel>) -> Option<(MeshClient<Channel>, Vec<v1::Peer>)> {
    let r = c.list_peers(v1::ListPeersRequest {}).await.ok()?.into_inner().peers;
    Some((c, r))
}

/// The time the last of `seen` took, or "> timeout (k missing)".
fn last(seen: &[Option<Duration>], timeout: Duration) -> String {
    let missing = seen.iter().filter(|s| s.is_none()).count();
    if missing > 0 {
        return format!(">{:.0} s ({missing} of {} never)", timeout.as_secs_f64(), seen.len());
    }
    let max = seen.iter().flatten().max().copied().unwrap_or_default();
    format!("{:.2} s", max.as_secs_f64())
}

/// Seconds since the Unix epoch now.
fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_secs_f64()
}

/// The Unix time of a node log line: tracing's UTC timestamp that starts it
/// (`2026-12-03T04:01:32.123456Z  INFO ...`). The heartbeat parser reads the
/// whole seconds; the fraction is added here.
fn log_time(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?;
    let whole = fleet_core::heartbeat::Timestamp::parse(stamp)?.unix as f64;
    let frac = match stamp.split_once('.') {
        Some((_, f)) => format!("0.{}", f.trim_end_matches('Z')).parse::<f64>().ok()?,
        None => 0.0,
    };
    Some(whole + frac)
}

/// The `membership: member up|down` lines of node `i`'s log at or after Unix
/// time `since`: (seconds after `since`, the member's host, up).
fn member_events(m: &Mesh, i: usize, since: f64) -> Vec<(f64, String, bool)> {
    let log = std::fs::read_to_string(m.root().join(format!("{}.log", m.nodes[i].host))).unwrap_or_default();
    log.lines()
        .filter_map(|l| {
            let up = l.contains("membership: member up");
            if !up && !l.contains("membership: member down") {
                return None;
            }
            let host = l.split_whitespace().find_map(|w| w.strip_prefix("host="))?;
            let t = log_time(l)? - since;
            (t >= 0.0).then(|| (t, host.to_string(), up))
        })
        .collect()
}

/// Whether node `i`'s log has a line with `text`.
fn log_has(m: &Mesh, i: usize, text: &str) -> bool {
    std::fs::read_to_string(m.root().join(format!("{}.log", m.nodes[i].host))).is_ok_and(|l| l.contains(text))
}

/// When node `i`'s log first says its view holds `others` hosts up (a host logged
/// up and not down since), after `since`.
fn logged_view(m: &Mesh, i: usize, since: f64, others: usize) -> Option<Duration> {
    let mut up = std::collections::HashSet::new();
    member_events(m, i, since)
        .into_iter()
        .find(|(_, host, is_up)| {
            if *is_up {
                up.insert(host.clone());
            } else {
                up.remove(host);
            }
            up.len() == others
        })
        .map(|(t, _, _)| Duration::from_secs_f64(t))
}

/// When node `i`'s log first says `host` is down, after `since`.
fn logged_down(m: &Mesh, i: usize, since: f64, host: &str) -> Option<Duration> {
    member_events(m, i, since)
        .into_iter()
        .find(|(_, h, up)| !up && h == host)
        .map(|(t, _, _)| Duration::from_secs_f64(t))
}

fn roster(agents: usize) -> String {
    (0..agents).map(|a| format!("  - {{ name: a{a}, runtime: stub, class: worker }}\n")).collect()
}

/// `FLEET_SCALE_PROBE_MS`: the nodes' tmux probe interval (the harness's 500 ms by default;
/// at 100 nodes its tmux and systemctl processes are most of the machine's load).
fn node_env() -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        std::env::var("FLEET_SCALE_PROBE_MS").map(|v| vec![("FLEET_PROBE_INTERVAL_MS".into(), v)]).unwrap_or_default();
    // `FLEET_SCALE_NODE_ENV=K=V,K=V`: more environment for every node (an experiment's knob).
    let extra = std::env::var("FLEET_SCALE_NODE_ENV").unwrap_or_default();
    env.extend(extra.split(',').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())));
    // `FLEET_SCALE_NODE_LOG=info,foca=debug`: the nodes' log filter (commas and all).
    if let Ok(filter) = std::env::var("FLEET_SCALE_NODE_LOG") {
        env.push(("RUST_LOG".into(), filter));
    }
    env
}

/// `FLEET_SCALE_HOLD=PATH`: after the merged ps, wait while PATH exists (the
/// bench creates it), so a profiler can be pointed at the live mesh.
fn hold(m: &Mesh) {
    let Ok(path) = std::env::var("FLEET_SCALE_HOLD") else { return };
    let _ = std::fs::write(&path, "");
    println!("  holding while {path} exists; node 0: MOSAIC_HOME={}", m.nodes[0].home.display());
    while Path::new(&path).exists() {
        std::thread::sleep(POLL);
    }
}

fn size(n: usize, agents: usize) {
    println!("== {n} nodes, {agents} roster agents each; load average {}", load());
    let mut m = Mesh::new("acme");
    for i in 0..=n {
        m.add_host(&format!("s{i:03}"), &roster(agents));
    }
    // 1. mass start.
    let dropped0 = snmp("Udp:", "RcvbufErrors");
    let env0 = node_env();
    let env0: Vec<(&str, &str)> = env0.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    match std::env::var("FLEET_SCALE_WRAP0") {
        Ok(w) => {
            let w: Vec<&str> = w.split(' ').collect();
            m.start_node_via(0, "127.0.0.1:0", &[], &env0, &w)
        }
        Err(_) => m.start_node_with(0, "127.0.0.1:0", &[], &env0),
    }
    let seed = vec![m.addr(0)];
    let t_first = Instant::now();
    let unix_first = unix_now();
    let env = node_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for i in 1..n {
        m.spawn_node(i, "127.0.0.1:0", &seed, &env);
    }
    let t0 = Instant::now();
    let spawn = t0 - t_first;
    let mut cl = Clients::new((0..n).map(|i| socket_of(&m.nodes[i].home)).collect());
    let all: Vec<usize> = (0..n).collect();
    let timeout = Duration::from_secs(120);
    // A view is complete when it holds every other node as a member (alive, or suspected
    // and not yet declared down: the "saw all members"); stricter, every node
    // lists every other alive in the same poll round (no suspicion anywhere at once).
    let complete = |r: &v1::NodeInfoResponse| (r.members_alive + r.members_suspect) as usize == n - 1;
    let (mut views, mut alive): (Vec<Option<Duration>>, Vec<Option<Duration>>) = (vec![None; n], vec![None; n]);
    let mut all_alive = None;
    let mut next_progress = Duration::from_secs(2);
    while all_alive.is_none() && t0.elapsed() < timeout {
        let infos = cl.info_all();
        for (i, r) in infos.iter().enumerate() {
            if views[i].is_none() && r.as_ref().is_some_and(complete) {
                views[i] = Some(t0.elapsed());
            }
            if alive[i].is_none() && r.as_ref().is_some_and(|r| r.members_alive as usize == n - 1) {
                alive[i] = Some(t0.elapsed());
            }
        }
        if infos.iter().all(|r| r.as_ref().is_some_and(|r| r.members_alive as usize == n - 1)) {
            all_alive = Some(t0.elapsed());
        }
        if t0.elapsed() >= next_progress {
            next_progress += Duration::from_secs(2);
            let got: Vec<&v1::NodeInfoResponse> = infos.iter().flatten().collect();
            let sum = |f: &dyn Fn(&v1::NodeInfoResponse) -> u32| got.iter().map(|r| f(r) as usize).sum::<usize>();
            eprintln!(
                "    {:5.1} s: {} of {n} answer, {} views complete; known members {} alive {} suspect {} down {} (sums over nodes; a complete mesh: {} alive)",
                t0.elapsed().as_secs_f64(),
                got.len(),
                got.iter().filter(|r| complete(r)).count(),
                sum(&|r| r.members),
                sum(&|r| r.members_alive),
                sum(&|r| r.members_suspect),
                sum(&|r| r.members - r.members_alive - r.members_suspect),
                n * (n - 1)
            );
            // Which members the first few incomplete views lack, and how each node holds them.
            for i in (0..n).filter(|&i| infos[i].as_ref().is_some_and(|r| !complete(r))).take(3) {
                let peers = cl.peers(i).unwrap_or_default();
                let held: Vec<String> = (0..n)
                    .filter(|&j| j != i)
                    .filter_map(|j| {
                        let host = &m.nodes[j].host;
                        match peers.iter().find(|p| &p.host == host) {
                            None => Some(format!("{host} unknown")),
                            Some(p) if p.state != v1::PeerState::Alive as i32 => {
                                Some(format!("{host} {:?}", p.state()))
                            }
                            Some(_) => None,
                        }
                    })
                    .collect();
                eprintln!("      {} lacks: {}", m.nodes[i].host, held.join(", "));
            }
        }
        std::thread::sleep(POLL);
    }
    // What the mass start cost: every node's CPU time from its start until now (clock ticks, 1/100 s).
    let mass_cpu: u64 = m.nodes[..n].iter().filter_map(|node| node.pid).map(cpu_ticks).sum();
    println!(
        "  mass start: {n} nodes spawned in {:.2} s; every node's view complete ({} others alive or suspect) {}, each listed all alive once {}, all alive in one round {} after the last spawn; {:.1} CPU seconds in all nodes (load {})",
        spawn.as_secs_f64(),
        n - 1,
        last(&views, timeout),
        last(&alive, timeout),
        last(&[all_alive], timeout),
        mass_cpu as f64 / 100.0,
        load()
    );
    // The same from the nodes' logs, after the last spawn (0 for a view complete before it).
    let logged: Vec<Option<Duration>> =
        (0..n).map(|i| logged_view(&m, i, unix_first, n - 1).map(|d| d.saturating_sub(spawn))).collect();
    println!(
        "    from the nodes' logs: every view complete {} after the last spawn ({})",
        last(&logged, timeout),
        spread(&logged)
    );
    // A node whose first dial of the seed fails joins only at a later announce.
    let failed: usize = (0..n).filter(|&i| log_has(&m, i, "membership: cannot reach a peer over QUIC")).count();
    println!(
        "    nodes that logged a failed QUIC dial: {failed}; UDP datagrams dropped for a full receive buffer: {}",
        snmp("Udp:", "RcvbufErrors").saturating_sub(dropped0)
    );
    // The replicated view of a sample of nodes: every other host's rows held in memory.
    let sample: Vec<usize> =
        [0, n / 2, n - 1].into_iter().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let full = (n - 1, n * agents);
    let copies = cl.until(&sample, t0, timeout, |c, i| c.replicated(i) == Some(full));
    println!(
        "  replicated view: nodes {sample:?} each hold all {} other hosts' rows ({} agent rows) {} after the last spawn (load {})",
        n - 1,
        n * agents,
        last(&copies, timeout),
        load()
    );
    // No `fleet peers` on each node to learn its address (the tests' `wait_answer`): the
    // observers above already saw every node answer, and each such call fans CertStatus out
    // to every peer over gRPC, 9,900 mutual-TLS handshakes at 100 nodes that earlier passes
    // ran just before the idle window (docs/benchmarks.md, "Eighth pass").

    // 2. idle.
    std::thread::sleep(settle());
    let pids: Vec<u32> = (0..n).map(|i| m.nodes[i].pid.expect("running")).collect();
    let held = |cl: &mut Clients| -> String {
        let infos: Vec<v1::NodeInfoResponse> = (0..n).filter_map(|i| cl.info(i)).collect();
        let mean = |f: &dyn Fn(&v1::NodeInfoResponse) -> u64| {
            infos.iter().map(f).sum::<u64>() as f64 / infos.len().max(1) as f64
        };
        format!(
            "per node: {:.1} QUIC connections, {:.1} gRPC channels, {:.1} feeds open; {:.1} fetches since start",
            mean(&|r| r.membership_connections.into()),
            mean(&|r| r.peer_channels.into()),
            mean(&|r| r.peer_feeds.into()),
            mean(&|r| r.replica_fetches)
        )
    };
    let swim = |cl: &mut Clients| -> Vec<u64> {
        (0..n).map(|i| cl.info(i).map_or(0, |r| r.membership_bytes_in + r.membership_bytes_out)).collect()
    };
    let (cpu0, s0, p0, w0) =
        (pids.iter().map(|p| proc_stat(*p).1).collect::<Vec<_>>(), swim(&mut cl), packets(), Instant::now());
    std::thread::sleep(WINDOW);
    let (cpu1, s1, p1) = (pids.iter().map(|p| proc_stat(*p).1).collect::<Vec<_>>(), swim(&mut cl), packets());
    let dt = w0.elapsed().as_secs_f64();
    let mut cpu: Vec<f64> = cpu0.iter().zip(&cpu1).map(|(a, b)| (b - a) as f64 / dt).collect(); // ticks/s = % of a core
    let mut rss: Vec<f64> = pids.iter().map(|p| proc_stat(*p).0 as f64 / 1024.0).collect();
    let mut anon: Vec<f64> = pids.iter().map(|p| status_kb(*p, "RssAnon:") as f64 / 1024.0).collect();
    let swim_bps: f64 = s0.iter().zip(&s1).map(|(a, b)| (b - a) as f64).sum::<f64>() / n as f64 / dt;
    let udp = (p1.0 - p0.0) as f64 / n as f64 / dt;
    let tcp = (p1.1 - p0.1) as f64 / n as f64 / dt;
    let cpu_mean = cpu.iter().sum::<f64>() / n as f64;
    println!(
        "  idle: CPU {cpu_mean:.2} % of a core per node (max {:.2}); RSS median {:.1} MB (max {:.1}), of it anonymous {:.1} MB; SWIM in+out {swim_bps:.0} B/s per node; UDP {udp:.1} dg/s, TCP {tcp:.1} seg/s per node{} (load {})",
        pct(&mut cpu, 1.0),
        pct(&mut rss, 0.5),
        pct(&mut rss, 1.0),
        pct(&mut anon, 0.5),
        if std::env::var_os(NETNS_MARK).is_some() { "" } else { " [shared network namespace: other traffic counts]" },
        load()
    );
    println!("  idle: {}", held(&mut cl));

    // 3. merged ps from node 0.
    let rt = runtime();
    let sock0 = socket_of(&m.nodes[0].home);
    let mut fc: FleetClient<Channel> = rt.block_on(client::fleet(&Target::Socket(sock0))).expect("node 0");
    let mut call = |fresh: bool| {
        let t = Instant::now();
        let r = rt
            .block_on(fc.list_agents(v1::ListAgentsRequest {
                scope: v1::Scope::Mesh as i32,
                hosts: vec![],
                deadline_ms: 0,
                ..fresh_req(fresh)
            }))
            .expect("ListAgents")
            .into_inner();
        (t.elapsed(), r.agents.len(), r.hosts.len())
    };
    for fresh in [false, true] {
        if fresh && !has_fresh() {
            continue;
        }
        let mut lat = vec![];
        let mut rows = (0, 0);
        let node0 = m.nodes[0].pid.expect("running");
        let cpu0 = cpu_ticks(node0);
        for _ in 0..200 {
            let (d, a, h) = call(fresh);
            lat.push(ms(d));
            rows = (a, h);
        }
        let node_cpu = per_call_ms(cpu_ticks(node0) - cpu0, 200);
        println!(
            "  merged ps in process{}: p50 {:.2} ms, p99 {:.2} ms; node 0's CPU {node_cpu:.2} ms a call ({} agent rows, {} host rows; load {})",
            if fresh { " --fresh" } else { "" },
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99),
            rows.0,
            rows.1,
            load()
        );
        let mut lat = vec![];
        let mut lines = 0;
        let (cpu0, cli0) = (cpu_ticks(node0), children_ticks());
        for _ in 0..100 {
            let t = Instant::now();
            let args: &[&str] = if fresh { &["ps", "--json", "--fresh"] } else { &["ps", "--json"] };
            let (code, out, err) = m.at(0, args);
            lat.push(ms(t.elapsed()));
            assert_eq!(code, 0, "fleet ps: {err}");
            lines = serde_json::from_str::<Vec<serde_json::Value>>(&out).map_or(0, |v| v.len());
        }
        let (node_cpu, cli_cpu) =
            (per_call_ms(cpu_ticks(node0) - cpu0, 100), per_call_ms(children_ticks() - cli0, 100));
        println!(
            "  merged ps `fleet ps --json{}`: p50 {:.2} ms, p99 {:.2} ms; CPU a call: the CLI {cli_cpu:.2} ms, node 0 {node_cpu:.2} ms ({lines} records; load {})",
            if fresh { " --fresh" } else { "" },
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99),
            load()
        );
    }

    hold(&m);

    // 4. one join.
    let j = n;
    let t0 = Instant::now();
    m.spawn_node(j, "127.0.0.1:0", &seed, &env);
    cl.push(socket_of(&m.nodes[j].home));
    let everyone: Vec<usize> = (0..=n).collect();
    let joined = cl.until_all(&everyone, t0, timeout, ask_info, |r| r.members_alive as usize == n);
    println!(
        "  one join: every node lists all {} members alive {} after the spawn (load {})",
        n + 1,
        last(&joined, timeout),
        load()
    );

    // 5. detection of kill -9: at once after the join is seen, or `FLEET_SCALE_KILL_AFTER_S` later.
    if let Some(s) = std::env::var("FLEET_SCALE_KILL_AFTER_S").ok().and_then(|s| s.parse().ok()) {
        std::thread::sleep(Duration::from_secs(s));
    }
    let host = m.nodes[j].host.clone();
    let t0 = Instant::now();
    let unix_kill = unix_now();
    m.kill_node(j);
    let down = cl.until_all(&all, t0, timeout, ask_peers, |ps: &Vec<v1::Peer>| {
        let mut rows = ps.iter().filter(|p| p.host == host).peekable();
        rows.peek().is_none() || rows.all(|p| p.state == v1::PeerState::Down as i32)
    });
    println!(
        "  kill -9 of one node: every other node lists it down {} after the kill ({}; load {})",
        last(&down, timeout),
        spread(&down),
        load()
    );
    let logged: Vec<Option<Duration>> = (0..n).map(|i| logged_down(&m, i, unix_kill, &host)).collect();
    println!(
        "    from the nodes' logs: every other node declared it down {} after the kill ({}; last {})",
        last(&logged, timeout),
        spread(&logged),
        slowest(&m, &logged)
    );

    // 6. more kills, one at a time, for a distribution rather than one sample.
    let mut kills = vec![(host, unix_kill)];
    let mut detections = vec![detection(&logged)];
    let more: usize = std::env::var("FLEET_SCALE_KILLS").ok().and_then(|k| k.parse().ok()).unwrap_or(5);
    let mut alive: Vec<usize> = (0..n).collect();
    for _ in 0..more.min(n.saturating_sub(2)) {
        // A random phase against the nodes' probe ticks (0-1 s).
        std::thread::sleep(Duration::from_millis(u64::from(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_millis(),
        )));
        let victim = alive.pop().expect("more than the observer left");
        let host = m.nodes[victim].host.clone();
        let unix_kill = unix_now();
        m.kill_node(victim);
        // No node can log it before a probe period, a period and the suspicion have passed
        // (about 4 s): reading every log before then only loads the machine.
        std::thread::sleep(Duration::from_secs(3));
        let deadline = Instant::now() + Duration::from_secs(30);
        let logged = loop {
            let logged: Vec<Option<Duration>> = alive.iter().map(|&i| logged_down(&m, i, unix_kill, &host)).collect();
            if logged.iter().all(Option::is_some) || Instant::now() > deadline {
                break logged;
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        detections.push(detection(&logged));
        kills.push((host, unix_kill));
    }
    let every: Vec<f64> = detections.iter().map(|d| d.0.map_or(f64::INFINITY, |d| d.as_secs_f64())).collect();
    let mut first: Vec<f64> = detections.iter().map(|d| d.1.map_or(f64::INFINITY, |d| d.as_secs_f64())).collect();
    let within = every.iter().filter(|&&s| s <= 6.0).count();
    println!(
        "  detection over {} kills (logs): every node p50 {:.2} s, p90 {:.2} s, max {:.2} s; first node p50 {:.2} s, max {:.2} s; within 6 s: {within} of {} [{}]",
        every.len(),
        pct(&mut every.clone(), 0.5),
        pct(&mut every.clone(), 0.9),
        pct(&mut every.clone(), 1.0),
        pct(&mut first.clone(), 0.5),
        pct(&mut first, 1.0),
        every.len(),
        every.iter().map(|s| format!("{s:.2}")).collect::<Vec<_>>().join(" "),
    );
    let (wrong, hosts, renewed) = false_downs(&m, n, &kills, unix_first);
    println!(
        "  live nodes declared down over the whole run (logs): {wrong} `member down` lines about a host not killed then ({hosts} hosts); {renewed} nodes renewed their identity because the mesh declared them down"
    );
    keep_logs(&m, n);
}

/// One kill's detection from the nodes' logs: (when the last node logged it, None if some
/// node never did; when the first did).
fn detection(logged: &[Option<Duration>]) -> (Option<Duration>, Option<Duration>) {
    let every = logged.iter().all(Option::is_some).then(|| logged.iter().flatten().max().copied()).flatten();
    (every, logged.iter().flatten().min().copied())
}

/// Over the run (from Unix time `since`), in the logs of all `n + 1` nodes (a killed node's
/// up to its kill): how many times a node logged a member down that was alive then (never
/// killed, or killed later), how many hosts that was, and how many nodes renewed their
/// identity because the mesh declared them down.
fn false_downs(m: &Mesh, n: usize, kills: &[(String, f64)], since: f64) -> (usize, usize, usize) {
    let killed_at = |host: &str| kills.iter().find(|(h, _)| h == host).map_or(f64::INFINITY, |k| k.1 - since);
    let mut hosts = std::collections::HashSet::new();
    let mut wrong = 0;
    let mut renewed = 0;
    for (i, node) in m.nodes.iter().enumerate().take(n + 1) {
        let mine = killed_at(&node.host);
        for (t, host, up) in member_events(m, i, since) {
            if !up && t < killed_at(&host) && t < mine {
                wrong += 1;
                hosts.insert(host);
            }
        }
        let log = std::fs::read_to_string(m.root().join(format!("{}.log", node.host))).unwrap_or_default();
        renewed += usize::from(
            log.lines()
                .any(|l| l.contains("it renewed its own identity") && log_time(l).is_some_and(|t| t - since < mine)),
        );
    }
    (wrong, hosts.len(), renewed)
}

/// The host whose figure is the largest (or that never saw it).
fn slowest(m: &Mesh, seen: &[Option<Duration>]) -> String {
    let never = seen.iter().position(Option::is_none);
    let late = || seen.iter().enumerate().max_by_key(|(_, d)| **d).map(|(i, _)| i);
    never.or_else(late).map_or_else(|| "none".into(), |i| m.nodes[i].host.clone())
}

/// `FLEET_SCALE_KEEP=DIR`: copy the nodes' logs to `DIR/<n>/` before the mesh's
/// temporary directory goes (to read why a figure missed its target).
fn keep_logs(m: &Mesh, n: usize) {
    let Ok(dir) = std::env::var("FLEET_SCALE_KEEP") else { return };
    let to = Path::new(&dir).join(n.to_string());
    std::fs::create_dir_all(&to).expect("FLEET_SCALE_KEEP dir");
    for node in &m.nodes {
        let name = format!("{}.log", node.host);
        let _ = std::fs::copy(m.root().join(&name), to.join(&name));
    }
    println!("  node logs kept in {}", to.display());
}

/// "first 4.10 s, median 4.62 s" of the nodes that saw it.
fn spread(seen: &[Option<Duration>]) -> String {
    let mut s: Vec<f64> = seen.iter().flatten().map(Duration::as_secs_f64).collect();
    if s.is_empty() {
        return "no node saw it".into();
    }
    format!("first {:.2} s, median {:.2} s", pct(&mut s, 0.0), pct(&mut s, 0.5))
}

/// Whether this build has `ListAgentsRequest.fresh` (the fan-out on demand;
/// false in the bench's first commit, 5a03deb, which measured the code before it).
const FRESH: bool = true;

fn has_fresh() -> bool {
    FRESH && std::env::var_os("FLEET_SCALE_NO_FRESH").is_none()
}

fn fresh_req(fresh: bool) -> v1::ListAgentsRequest {
    v1::ListAgentsRequest { fresh, ..Default::default() }
}

fn main() {
    // A private network namespace, so the packet counters are the nodes' own.
    if std::env::var_os(NETNS_MARK).is_none()
        && std::env::var_os("FLEET_SCALE_SHARED_NETNS").is_none()
        && std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout == b"0\n")
    {
        let exe = std::env::current_exe().expect("own path");
        let args: Vec<String> = std::env::args().skip(1).collect();
        let status = std::process::Command::new("unshare")
            .args(["--net", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
            .arg(exe)
            .args(args)
            .env(NETNS_MARK, "1")
            .status()
            .expect("unshare");
        std::process::exit(status.code().unwrap_or(1));
    }
    let sizes: Vec<usize> = std::env::var("FLEET_SCALE_SIZES")
        .unwrap_or_else(|_| "10,50,100".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let agents: usize = std::env::var("FLEET_SCALE_AGENTS").ok().and_then(|a| a.parse().ok()).unwrap_or(10);
    let t = Instant::now();
    for n in sizes {
        size(n, agents);
    }
    println!("total {:.0} s", t.elapsed().as_secs_f64());
}
