//! Soak: a mesh of namespace hosts under churn for a long run, counting every
//! message and sampling every node's resources.
//!
//! Four hosts a, b, c, d (`tests/netns_util.rs`: one bridge namespace, one
//! namespace per host, a real `fleet node` in each with every other host as a
//! static peer, mDNS off), each with [`AGENTS`] stub agents and a holder
//! session. The stub agents run with `--log`: every line they accept is
//! appended to one file per host, which is where deliveries are counted.
//!
//! For `FLEET_SOAK_MINUTES` (default 30), on a schedule drawn from a seeded
//! generator (`FLEET_SOAK_SEED`, default 1) and printed before it runs, one
//! step after another: a node killed with SIGKILL and restarted after a pause,
//! or at once; a node stopped with SIGTERM and restarted after a pause; a
//! host's link cut and healed; `fleet heartbeats --json` watchers started and
//! killed. Host a's node is never killed or stopped (its link is cut like the
//! others'): its samples are one series over the whole run.
//!
//! Meanwhile `FLEET_SOAK_SENDS` (default 1000) sends `fleet send AGENT@HOST
//! --verify --json` go, evenly spread over the run, from a random host to an
//! agent on another host, each with a unique id in its text. Each is
//! classified from its exit code, its receipt and how often its id arrived:
//! ok (success, arrived once), LOST (success, never arrived), DUPLICATED
//! (arrived more than once), refused (failed, not arrived: the sender was
//! told) and unconfirmed (failed, yet arrived once).
//!
//! Every `FLEET_SOAK_SAMPLE_SECS` (default 30) each running node's RSS, open
//! fds, threads (/proc/PID) and live tokio tasks (`Mesh.NodeInfo`
//! `tasks_alive`, asked on its local socket) are sampled; a restarted node
//! starts a new series.
//!
//! Everything the lab made (processes, namespaces, links, files) is removed
//! when it is dropped, also on a panic; SIGINT or SIGTERM end the run early
//! and report what was done. The bench checks at the end that nothing is left.
//!
//! Run (as root): `cargo bench -p fleet-cli --bench soak` (docs/benchmarks.md).

#[path = "../../../tests/netns_util.rs"]
mod netns_util;

use fleet_node::client::{self, Target};
use fleet_proto::v1;
use netns_util::{FLEET, HostId, Lab};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HOSTS: [&str; 4] = ["a", "b", "c", "d"];
/// Stub agents per host.
const AGENTS: usize = 3;
/// The host whose node is never killed or stopped.
const LONG_LIVED: HostId = 0;
const HOLDER: &str = "_holder";
/// Sends under way at once, at most.
const SENDERS: usize = 8;
/// Watchers running at once, at most.
const MAX_WATCHERS: usize = 4;
/// Quiet time at the start (before any churn) and at the end (after the last step).
const WARMUP: Duration = Duration::from_secs(20);
const COOLDOWN: Duration = Duration::from_secs(30);
/// The least quiet time before the last sample (tokio's idle blocking threads
/// leave after 10 s).
const QUIET: Duration = Duration::from_secs(15);
/// Range of the pauses between churn steps, seconds.
const GAP: (u64, u64) = (4, 12);

/// Set by SIGINT/SIGTERM: every loop stops early.
static STOP: AtomicBool = AtomicBool::new(false);

fn env_f64(name: &str, default: f64) -> f64 {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?}: not a number")),
        Err(_) => default,
    }
}

/// SplitMix64: a small seeded generator, so a schedule can be run again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// In `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[(self.next() % v.len() as u64) as usize]
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

// ---------------------------------------------------------------- commands

/// A command as host `h` (inside its namespace, its environment), kept as
/// parts so that threads can build it without the lab.
#[derive(Clone)]
struct HostCmd {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl HostCmd {
    fn of(lab: &Lab, h: HostId) -> HostCmd {
        let cmd = lab.command_in(h, FLEET);
        HostCmd {
            program: cmd.get_program().to_owned(),
            args: cmd.get_args().map(|a| a.to_owned()).collect(),
            env: cmd.get_envs().filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))).collect(),
        }
    }

    fn fleet(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.env_clear().envs(self.env.iter().map(|(k, v)| (k, v))).args(&self.args).args(args);
        cmd
    }
}

// ---------------------------------------------------------------- schedule

#[derive(Clone, Copy, Debug)]
enum Step {
    /// SIGKILL the node, restart it after `down` seconds (0: at once).
    Kill { h: HostId, down: u64 },
    /// SIGTERM the node, wait for it to exit, restart it after `down` seconds.
    Stop { h: HostId, down: u64 },
    /// Cut the host's link for `secs` seconds, then heal it.
    Cut { h: HostId, secs: u64 },
    /// Start a `fleet heartbeats --json` watcher on the host.
    Watch { h: HostId },
    /// Kill the oldest running watcher.
    Unwatch,
}

impl Step {
    fn describe(&self) -> String {
        match *self {
            Step::Kill { h, down: 0 } => format!("kill -9 node {}, restart at once", HOSTS[h]),
            Step::Kill { h, down } => format!("kill -9 node {}, restart after {down} s", HOSTS[h]),
            Step::Stop { h, down } => format!("SIGTERM node {}, restart after {down} s", HOSTS[h]),
            Step::Cut { h, secs } => format!("cut link of {} for {secs} s, heal", HOSTS[h]),
            Step::Watch { h } => format!("start a watcher on {}", HOSTS[h]),
            Step::Unwatch => "kill the oldest watcher".into(),
        }
    }

    /// How long the step itself lasts (its pauses; restarts not counted).
    fn lasts(&self) -> u64 {
        match *self {
            Step::Kill { down, .. } | Step::Stop { down, .. } => down,
            Step::Cut { secs, .. } => secs,
            Step::Watch { .. } | Step::Unwatch => 0,
        }
    }
}

/// Steps with their planned start (seconds from the start of the run), from
/// WARMUP until `total - COOLDOWN`.
fn schedule(seed: u64, total: Duration) -> Vec<(u64, Step)> {
    let mut rng = Rng(seed);
    let mut t = WARMUP.as_secs();
    let end = total.saturating_sub(COOLDOWN).as_secs();
    let churnable: Vec<HostId> = (0..HOSTS.len()).filter(|&h| h != LONG_LIVED).collect();
    let all: Vec<HostId> = (0..HOSTS.len()).collect();
    let mut watchers = 0usize;
    let mut steps = vec![];
    loop {
        let step = match rng.range(0, 9) {
            0 | 1 => Step::Kill { h: rng.pick(&churnable), down: rng.range(1, 8) },
            2 => Step::Kill { h: rng.pick(&churnable), down: 0 },
            3 | 4 => Step::Stop { h: rng.pick(&churnable), down: rng.range(1, 8) },
            5 | 6 => Step::Cut { h: rng.pick(&all), secs: rng.range(2, 15) },
            _ if watchers < MAX_WATCHERS && (watchers == 0 || rng.range(0, 1) == 0) => {
                watchers += 1;
                Step::Watch { h: rng.pick(&all) }
            }
            _ => {
                watchers -= 1;
                Step::Unwatch
            }
        };
        if t + step.lasts() > end {
            break;
        }
        steps.push((t, step));
        t += step.lasts() + rng.range(GAP.0, GAP.1);
    }
    steps
}

// ---------------------------------------------------------------- sends

#[derive(Clone, Debug)]
struct Send {
    id: usize,
    from: HostId,
    to: HostId,
    agent: String,
    /// Planned start, from the start of the run.
    due: Duration,
    started: Option<Duration>,
    took: Duration,
    code: i32,
    outcome: String,
    /// The receipt said the retry was answered from the target's idempotency cache.
    duplicate_receipt: bool,
    stderr: String,
}

fn plan_sends(seed: u64, n: usize, total: Duration) -> Vec<Send> {
    let mut rng = Rng(seed ^ 0x5EED_5EED);
    let first = Duration::from_secs(10);
    let span = total.saturating_sub(COOLDOWN + Duration::from_secs(10)).saturating_sub(first);
    (0..n)
        .map(|i| {
            let from = rng.range(0, HOSTS.len() as u64 - 1) as usize;
            let to = (from + rng.range(1, HOSTS.len() as u64 - 1) as usize) % HOSTS.len();
            let agent = format!("{}{}", HOSTS[to], rng.range(0, AGENTS as u64 - 1));
            Send {
                id: i,
                from,
                to,
                agent,
                due: first + span.mul_f64(i as f64 / n as f64),
                started: None,
                took: Duration::ZERO,
                code: -1,
                outcome: String::new(),
                duplicate_receipt: false,
                stderr: String::new(),
            }
        })
        .collect()
}

fn text_of(s: &Send) -> String {
    format!("SOAK-{:05} from {} to {}@{}: churn check", s.id, HOSTS[s.from], s.agent, HOSTS[s.to])
}

fn run_send(cmds: &[HostCmd], s: &mut Send, t0: Instant) {
    let target = format!("{}@{}", s.agent, HOSTS[s.to]);
    let text = text_of(s);
    let start = Instant::now();
    s.started = Some(start - t0);
    let out = cmds[s.from]
        .fleet(&["send", &target, "--verify", "--json", "--from", "soak", "-m", &text])
        .stdin(Stdio::null())
        .output()
        .expect("spawn fleet send");
    s.took = start.elapsed();
    s.code = out.status.code().unwrap_or(-1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(stdout.trim()) {
        s.outcome = v["outcome"].as_str().unwrap_or("").to_string();
        s.duplicate_receipt = v["duplicate"].as_bool().unwrap_or(false);
    }
    s.stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
}

/// Arrivals per send id, from the hosts' `--log` files: where each id
/// arrived (`agent@host`, once per arrival), and the accepted lines that hold
/// more than one id (a text pasted without its Enter, e.g. when the target
/// node was killed between the two, stays on the agent's input line and is
/// submitted with the next message).
fn arrivals(logs: &[PathBuf]) -> (BTreeMap<usize, Vec<String>>, Vec<String>) {
    let mut seen: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut merged = vec![];
    for (h, path) in logs.iter().enumerate() {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text.lines() {
            let Some((agent, rest)) = line.split_once('\t') else { continue };
            let ids: Vec<usize> = rest
                .split("SOAK-")
                .skip(1)
                .filter_map(|p| p.chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok())
                .collect();
            for &id in &ids {
                seen.entry(id).or_default().push(format!("{agent}@{}", HOSTS[h]));
            }
            if ids.len() > 1 {
                merged.push(format!("{agent}@{}: {rest}", HOSTS[h]));
            }
        }
    }
    (seen, merged)
}

// ---------------------------------------------------------------- samples

#[derive(Clone, Debug)]
struct Sample {
    t: Duration,
    host: HostId,
    pid: u32,
    rss_kb: u64,
    fds: u64,
    threads: u64,
    tasks: Option<u64>,
}

fn status_field(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn tasks_alive(rt: &tokio::runtime::Runtime, socket: &Path) -> Option<u64> {
    rt.block_on(async {
        let fut = async {
            let mut c = client::mesh(&Target::Socket(socket.to_path_buf())).await.ok()?;
            c.node_info(v1::NodeInfoRequest {}).await.ok().map(|r| r.into_inner().tasks_alive)
        };
        tokio::time::timeout(Duration::from_secs(3), fut).await.ok().flatten()
    })
}

fn sample_all(rt: &tokio::runtime::Runtime, pids: &[Option<u32>], homes: &[PathBuf], t: Duration) -> Vec<Sample> {
    let mut out = vec![];
    for (h, pid) in pids.iter().enumerate() {
        let Some(pid) = *pid else { continue };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
        // A process being killed (or a zombie) has no VmRSS line: no sample.
        if !status.contains("VmRSS:") {
            continue;
        }
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as u64).unwrap_or(0);
        let tasks = tasks_alive(rt, &homes[h].join("fleet/node.sock"));
        out.push(Sample {
            t,
            host: h,
            pid,
            rss_kb: status_field(&status, "VmRSS:"),
            fds,
            threads: status_field(&status, "Threads:"),
            tasks,
        });
    }
    out
}

// ---------------------------------------------------------------- lab

/// Rewrite host `h`'s roster: the `soak` runtime (a stub agent that logs what
/// it accepts to `log`) and a holder session, which is started (the node's
/// tmux control-mode client attaches to it, as on a deployed host).
fn prepare(lab: &Lab, h: HostId, log: &Path) {
    let path = lab.hosts[h].home.join("fleet/roster.yaml");
    let text = std::fs::read_to_string(&path).expect("roster");
    let runtime =
        format!("runtimes:\n  soak: {{ command: \"{FLEET} stub-agent --log {}\", heartbeat: self }}\n", log.display());
    let socket = format!("socket_name: {}", lab.hosts[h].socket);
    let text =
        text.replacen("runtimes:\n", &runtime, 1).replacen(&socket, &format!("{socket}, holder_session: {HOLDER}"), 1);
    std::fs::write(&path, text).expect("write roster");
    let o = lab.exec_in(
        h,
        "tmux",
        &["-L", &lab.hosts[h].socket, "-f", "/dev/null", "new-session", "-d", "-s", HOLDER, "sleep 1000000"],
    );
    assert!(o.ok(), "holder session on {}: {}", HOSTS[h], o.stderr);
}

fn roster_agents(host: &str) -> String {
    (0..AGENTS).map(|i| format!("  - {{ name: {host}{i}, runtime: soak }}\n")).collect()
}

/// Watchers started by the churn; killed (by pid) when dropped.
#[derive(Default)]
struct Watchers {
    running: Vec<(usize, HostId, Child)>,
    started: usize,
    killed: usize,
    ended_by_themselves: usize,
}

impl Watchers {
    fn reap(&mut self) {
        let before = self.running.len();
        self.running.retain_mut(|(_, _, c)| matches!(c.try_wait(), Ok(None)));
        self.ended_by_themselves += before - self.running.len();
    }
}

impl Drop for Watchers {
    fn drop(&mut self) {
        for (_, _, c) in &mut self.running {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Restart host `h`'s node; a node that does not answer is tried once more.
fn restart(lab: &mut Lab, h: HostId, failures: &mut Vec<String>, t: Duration) {
    for attempt in 1..=2 {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lab.restart_node(h)));
        match r {
            Ok(_) => return,
            Err(e) => {
                let why = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let first = why.lines().next().unwrap_or("").to_string();
                failures.push(format!("t={:.0}s restart of {} (attempt {attempt}): {first}", secs(t), HOSTS[h]));
            }
        }
    }
}

/// What the churn steps act on besides the lab.
struct Churn<'a> {
    cmds: &'a [HostCmd],
    watchers: Watchers,
    /// Where watchers write what they receive.
    wdir: PathBuf,
    /// Steps that did not go as expected (a restart that did not answer, a SIGTERM that did not exit 0).
    failures: Vec<String>,
    /// The nodes' pids, for the sampler.
    pids: &'a Mutex<Vec<Option<u32>>>,
}

fn run_step(lab: &mut Lab, step: Step, t: Duration, c: &mut Churn) {
    let Churn { cmds, watchers, wdir, failures, pids } = c;
    let publish = |lab: &Lab| {
        *pids.lock().unwrap() = lab.hosts.iter().map(|h| h.pid).collect();
    };
    let pause = |s: u64| {
        let until = Instant::now() + Duration::from_secs(s);
        while Instant::now() < until && !STOP.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    match step {
        Step::Kill { h, down } => {
            if lab.hosts[h].pid.is_some() {
                lab.kill_node(h);
            }
            publish(lab);
            pause(down);
            restart(lab, h, failures, t);
        }
        Step::Stop { h, down } => {
            if lab.hosts[h].pid.is_some() {
                let code = lab.stop_node(h, Duration::from_secs(10));
                if code != Some(0) {
                    failures.push(format!("t={:.0}s SIGTERM of {}: exit {code:?} (0 expected)", secs(t), HOSTS[h]));
                }
            }
            publish(lab);
            pause(down);
            restart(lab, h, failures, t);
        }
        Step::Cut { h, secs } => {
            lab.cut_link(h);
            pause(secs);
            lab.restore_link(h);
        }
        Step::Watch { h } => {
            watchers.reap();
            let n = watchers.started;
            let out = std::fs::File::create(wdir.join(format!("watcher-{n}-{}.jsonl", HOSTS[h]))).expect("watcher out");
            let err = std::fs::File::create(wdir.join(format!("watcher-{n}-{}.err", HOSTS[h]))).expect("watcher err");
            let child = cmds[h]
                .fleet(&["heartbeats", "--json"])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("spawn fleet heartbeats");
            watchers.running.push((n, h, child));
            watchers.started += 1;
        }
        Step::Unwatch => {
            watchers.reap();
            if !watchers.running.is_empty() {
                let (_, _, mut c) = watchers.running.remove(0);
                let _ = c.kill();
                let _ = c.wait();
                watchers.killed += 1;
            }
        }
    }
    publish(lab);
}

fn install_signal_stop() {
    std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        eprintln!("soak: signal received: stopping early, then cleaning up");
        STOP.store(true, Ordering::Relaxed);
    });
}

// ---------------------------------------------------------------- report

fn mb(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// Least-squares slope of `ys` over `ts` (per minute).
fn slope_per_min(ts: &[f64], ys: &[f64]) -> f64 {
    let n = ts.len() as f64;
    if ts.len() < 2 {
        return 0.0;
    }
    let (mt, my) = (ts.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let num: f64 = ts.iter().zip(ys).map(|(t, y)| (t - mt) * (y - my)).sum();
    let den: f64 = ts.iter().map(|t| (t - mt) * (t - mt)).sum();
    if den == 0.0 { 0.0 } else { num / den * 60.0 }
}

fn report_samples(mut samples: Vec<Sample>) {
    samples.sort_by_key(|s| (s.t, s.host));
    let samples = &samples[..];
    // Series: (host, pid) in order of first appearance.
    let mut series: Vec<(HostId, u32)> = vec![];
    for s in samples {
        if !series.contains(&(s.host, s.pid)) {
            series.push((s.host, s.pid));
        }
    }
    println!();
    println!("resources over time, per node: RSS MB / open fds / threads / tokio tasks alive");
    println!("(`*`: a new process since the previous sample, i.e. the node was restarted: a new series)");
    let mut times: Vec<Duration> = samples.iter().map(|s| s.t).collect();
    times.dedup();
    print!("{:>7}", "t s");
    for h in HOSTS {
        print!("  {:>24}", format!("node {h}"));
    }
    println!();
    let mut last_pid: Vec<Option<u32>> = vec![None; HOSTS.len()];
    for t in &times {
        print!("{:>7.0}", secs(*t));
        for (h, last) in last_pid.iter_mut().enumerate() {
            match samples.iter().find(|s| s.t == *t && s.host == h) {
                Some(s) => {
                    let mark = if last.is_some_and(|p| p != s.pid) { "*" } else { " " };
                    *last = Some(s.pid);
                    print!("  {:>24}", format!("{mark}{}/{}/{}/{}", mb(s.rss_kb), s.fds, s.threads, opt(s.tasks)));
                }
                None => print!("  {:>24}", "(down)"),
            }
        }
        println!();
    }
    println!();
    println!("per series (one node process): first / last / max");
    println!(
        "{:<5} {:>8} {:>7} {:>7} {:>4}  {:>18}  {:>12}  {:>12}  {:>12}  {:>14}",
        "node", "pid", "from s", "to s", "n", "RSS MB", "fds", "threads", "tasks", "RSS slope kB/min"
    );
    for &(h, pid) in &series {
        let v: Vec<&Sample> = samples.iter().filter(|s| s.host == h && s.pid == pid).collect();
        let (f, l) = (v[0], v[v.len() - 1]);
        let max = |g: &dyn Fn(&Sample) -> u64| v.iter().map(|s| g(s)).max().unwrap_or(0);
        let tmax = v.iter().filter_map(|s| s.tasks).max();
        let ts: Vec<f64> = v.iter().map(|s| secs(s.t)).collect();
        let rss: Vec<f64> = v.iter().map(|s| s.rss_kb as f64).collect();
        println!(
            "{:<5} {:>8} {:>7.0} {:>7.0} {:>4}  {:>18}  {:>12}  {:>12}  {:>12}  {:>14.0}",
            HOSTS[h],
            pid,
            secs(f.t),
            secs(l.t),
            v.len(),
            format!("{}/{}/{}", mb(f.rss_kb), mb(l.rss_kb), mb(max(&|s| s.rss_kb))),
            format!("{}/{}/{}", f.fds, l.fds, max(&|s| s.fds)),
            format!("{}/{}/{}", f.threads, l.threads, max(&|s| s.threads)),
            format!("{}/{}/{}", opt(f.tasks), opt(l.tasks), opt(tmax)),
            slope_per_min(&ts, &rss),
        );
    }

    // Flat: the long-lived node, whose one series covers the whole run.
    let v: Vec<&Sample> = samples.iter().filter(|s| s.host == LONG_LIVED).collect();
    let pids: Vec<u32> = {
        let mut p: Vec<u32> = v.iter().map(|s| s.pid).collect();
        p.dedup();
        p
    };
    println!();
    if v.len() < 4 || pids.len() != 1 {
        println!("flat: not judged (node {} has {} samples in {} series)", HOSTS[LONG_LIVED], v.len(), pids.len());
        return;
    }
    let (f, l) = (v[0], v[v.len() - 1]);
    // Flat: nothing grows with the churn. RSS: the second half's peak within
    // 10% of the first half's. Counts (fds, threads, tasks): the last sample
    // (quiet, after the churn) within the range seen in the first fifth of the
    // run (before and early in the churn), plus max(2, 10%) of slack.
    let half = v.len() / 2;
    let first_max = v[..half].iter().map(|s| s.rss_kb).max().unwrap_or(0);
    let second_max = v[half..].iter().map(|s| s.rss_kb).max().unwrap_or(0);
    let rss_ok = second_max as f64 <= first_max as f64 * 1.10;
    let fifth = &v[..v.len().div_ceil(5)];
    let yn = |b: bool| if b { "flat" } else { "NOT FLAT" };
    println!(
        "flat? node {} (never restarted): RSS, second half against first half; counts, the last sample \
         (quiet, after the churn) against the first fifth of the run (t <= {:.0} s):",
        HOSTS[LONG_LIVED],
        secs(fifth[fifth.len() - 1].t)
    );
    println!(
        "  RSS: max of the second half {} MB <= 1.10 x max of the first half {} MB: {}",
        mb(second_max),
        mb(first_max),
        yn(rss_ok)
    );
    let count = |what: &str, g: &dyn Fn(&Sample) -> Option<u64>| {
        let early: Vec<u64> = fifth.iter().filter_map(|s| g(s)).collect();
        let (lo, hi) = (early.iter().min().copied(), early.iter().max().copied());
        match (hi, g(l)) {
            (Some(hi), Some(last)) => {
                let limit = hi + (hi / 10).max(2);
                println!(
                    "  {what}: last {last}, first {} (first fifth {}..{hi}), limit {limit}: {}",
                    opt(g(f)),
                    lo.unwrap_or(0),
                    yn(last <= limit)
                );
            }
            _ => println!("  {what}: not sampled"),
        }
    };
    count("open fds", &|s| Some(s.fds));
    count("threads", &|s| Some(s.threads));
    count("tokio tasks", &|s| s.tasks);
}

fn report_sends(sends: &[Send], seen: &BTreeMap<usize, Vec<String>>) {
    let mut ok = 0;
    let (mut lost, mut dup, mut refused, mut unconfirmed, mut misdelivered, mut not_run) =
        (vec![], vec![], vec![], vec![], vec![], 0);
    let mut retried_ok = 0;
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for s in sends {
        if s.started.is_none() {
            not_run += 1;
            continue;
        }
        let at = seen.get(&s.id).cloned().unwrap_or_default();
        let want = format!("{}@{}", s.agent, HOSTS[s.to]);
        if at.iter().any(|w| *w != want) {
            misdelivered.push((s, at.clone()));
        }
        let success = s.code == 0 && (s.outcome == "accepted" || s.outcome == "delivered");
        match (success, at.len()) {
            (_, n) if n > 1 => dup.push((s, at.clone())),
            (true, 1) => {
                ok += 1;
                if s.duplicate_receipt {
                    retried_ok += 1;
                }
            }
            (true, _) => lost.push(s),
            (false, 0) => refused.push(s),
            (false, _) => unconfirmed.push(s),
        }
        if !success {
            let first = s.stderr.lines().next().unwrap_or("");
            // The reason without its host names and addresses: `fleet: ... (see ...)`.
            let short: String = first
                .split([':', '('])
                .take(2)
                .collect::<Vec<_>>()
                .join(":")
                .chars()
                .filter(|c| !c.is_ascii_digit())
                .collect();
            let key = format!("exit {} outcome {:?}: {}", s.code, s.outcome, short.trim());
            *reasons.entry(key).or_default() += 1;
        }
    }
    let run = sends.len() - not_run;
    let mut took: Vec<f64> = sends.iter().filter(|s| s.started.is_some()).map(|s| secs(s.took)).collect();
    took.sort_by(f64::total_cmp);
    let late = sends.iter().filter_map(|s| s.started.map(|st| st.saturating_sub(s.due))).max().unwrap_or_default();
    println!();
    println!("sends: {run} run ({not_run} not run: stopped early)");
    println!(
        "  ok (receipt accepted/delivered, arrived exactly once): {ok}  (of them answered from the idempotency cache after a retry: {retried_ok})"
    );
    println!("  LOST (receipt success, never arrived):                 {}", lost.len());
    println!("  DUPLICATED (arrived more than once):                   {}", dup.len());
    println!("  refused (command failed, not arrived):                 {}", refused.len());
    println!("  unconfirmed (command failed, yet arrived once):        {}", unconfirmed.len());
    println!("  misdelivered (arrived at another agent):               {}", misdelivered.len());
    if !took.is_empty() {
        let p = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize];
        println!(
            "  send duration s: p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2}; latest start behind plan {:.1} s",
            p(0.5),
            p(0.9),
            p(0.99),
            took[took.len() - 1],
            secs(late)
        );
    }
    if !reasons.is_empty() {
        println!("  why the failed ones failed (count, exit, receipt outcome, first words of stderr):");
        let mut r: Vec<_> = reasons.into_iter().collect();
        r.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        for (k, n) in r {
            println!("    {n:>4}  {k}");
        }
    }
    let show = |what: &str, list: &[&Send]| {
        for s in list.iter().take(20) {
            println!(
                "  {what} #{} {}->{}@{} planned t={:.1}s started t={:.1}s took {:.2}s exit {} outcome {:?} dup-receipt {}: {}",
                s.id,
                HOSTS[s.from],
                s.agent,
                HOSTS[s.to],
                secs(s.due),
                secs(s.started.unwrap_or_default()),
                secs(s.took),
                s.code,
                s.outcome,
                s.duplicate_receipt,
                s.stderr.lines().next().unwrap_or("")
            );
        }
    };
    show("LOST", &lost);
    for (s, at) in &dup {
        show("DUPLICATED", &[s]);
        println!("      arrived at {at:?}");
    }
    show("unconfirmed", &unconfirmed);
    for (s, at) in &misdelivered {
        show("MISDELIVERED", &[s]);
        println!("      arrived at {at:?}");
    }
}

// ---------------------------------------------------------------- main

fn main() {
    if let Err(why) = netns_util::preflight() {
        println!("soak SKIPPED: {why}");
        println!("(run `cargo bench -p fleet-cli --bench soak` as root)");
        return;
    }
    let minutes = env_f64("FLEET_SOAK_MINUTES", 30.0);
    let n_sends = env_f64("FLEET_SOAK_SENDS", 1000.0) as usize;
    let every = Duration::from_secs_f64(env_f64("FLEET_SOAK_SAMPLE_SECS", 30.0).max(1.0));
    let seed = env_f64("FLEET_SOAK_SEED", 1.0) as u64;
    let total = Duration::from_secs_f64(minutes * 60.0);
    assert!(total >= WARMUP + COOLDOWN + Duration::from_secs(30), "FLEET_SOAK_MINUTES={minutes}: at least 1.5");
    install_signal_stop();

    let steps = schedule(seed, total);
    let sends = plan_sends(seed, n_sends, total);
    println!(
        "soak: {} hosts x {AGENTS} stub agents, {minutes} min, {n_sends} sends with --verify, sample every {} s, seed {seed}",
        HOSTS.len(),
        every.as_secs()
    );
    println!("schedule ({} steps; node {} is never killed or stopped):", steps.len(), HOSTS[LONG_LIVED]);
    for (t, s) in &steps {
        println!("  t={t:>5}s  {}", s.describe());
    }
    let count = |f: &dyn Fn(&Step) -> bool| steps.iter().filter(|(_, s)| f(s)).count();
    println!(
        "  (kill -9: {}, of them restarted at once: {}; SIGTERM: {}; link cuts: {}; watchers started: {}, killed: {})",
        count(&|s| matches!(s, Step::Kill { .. })),
        count(&|s| matches!(s, Step::Kill { down: 0, .. })),
        count(&|s| matches!(s, Step::Stop { .. })),
        count(&|s| matches!(s, Step::Cut { .. })),
        count(&|s| matches!(s, Step::Watch { .. })),
        count(&|s| matches!(s, Step::Unwatch)),
    );

    // The lab: dropped last (after the watchers), also on a panic.
    let mut lab = Lab::new("acme");
    lab.interval = 2;
    let ids: Vec<HostId> = HOSTS.iter().map(|h| lab.add_host(h, &roster_agents(h))).collect();
    let logs: Vec<PathBuf> = HOSTS.iter().map(|h| lab.root().join(format!("accepted-{h}.log"))).collect();
    let wdir = lab.root().join("watchers");
    std::fs::create_dir_all(&wdir).expect("mkdir watchers");
    for &h in &ids {
        prepare(&lab, h, &logs[h]);
        lab.start_agents(h);
    }
    for &h in &ids {
        let others: Vec<HostId> = ids.iter().copied().filter(|&o| o != h).collect();
        lab.start_node(h, &others);
    }
    let cmds: Vec<HostCmd> = ids.iter().map(|&h| HostCmd::of(&lab, h)).collect();
    let homes: Vec<PathBuf> = lab.hosts.iter().map(|h| h.home.clone()).collect();
    let fp_dir = lab.root().to_path_buf();
    // Every host lists every agent before the clock starts.
    let want = HOSTS.len() * AGENTS;
    netns_util::wait_for("every agent listed everywhere", Duration::from_secs(60), || {
        ids.iter().all(|&h| {
            let o = lab.fleet(h, &["ps", "--json"]);
            o.ok() && o.json::<Vec<serde_json::Value>>().iter().filter(|r| r["record"] == "agent").count() == want
        })
    });
    // Warm-up, not counted: one send from every host to every other, so that
    // the first sample sees the mesh's connections up (as the last one does).
    for &from in &ids {
        for &to in &ids {
            if from != to {
                let target = format!("{}0@{}", HOSTS[to], HOSTS[to]);
                let o = lab.fleet(from, &["send", &target, "--verify", "--from", "soak", "-m", "warm-up"]);
                assert!(o.ok(), "warm-up send {} -> {target}: exit {}: {}", HOSTS[from], o.code, o.stderr);
            }
        }
    }
    let pids = Mutex::new(lab.hosts.iter().map(|h| h.pid).collect::<Vec<_>>());
    // Dropped before the lab (its watchers killed), also on a panic.
    let mut churn = Churn { cmds: &cmds, watchers: Watchers::default(), wdir, failures: vec![], pids: &pids };
    let samples: Mutex<Vec<Sample>> = Mutex::new(vec![]);
    let next_send = AtomicUsize::new(0);
    let done_sends = Arc::new(AtomicUsize::new(0));
    let sends_out: Mutex<Vec<Send>> = Mutex::new(vec![]);
    let sampling_done = AtomicBool::new(false);
    let t0 = Instant::now();
    let hard_end = t0 + total + Duration::from_secs(600);

    std::thread::scope(|scope| {
        // Senders: each takes the next send, waits for its time, runs it.
        for _ in 0..SENDERS {
            let (cmds, sends, next, done, out) = (&cmds, &sends, &next_send, &done_sends, &sends_out);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= sends.len() {
                        return;
                    }
                    let mut s = sends[i].clone();
                    while t0.elapsed() < s.due && !STOP.load(Ordering::Relaxed) {
                        std::thread::sleep((s.due - t0.elapsed()).min(Duration::from_millis(200)));
                    }
                    if !STOP.load(Ordering::Relaxed) && Instant::now() < hard_end {
                        run_send(cmds, &mut s, t0);
                    }
                    out.lock().unwrap().push(s);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // The sampler.
        {
            let (pids, samples, homes, done, sampling_done) = (&pids, &samples, &homes, &done_sends, &sampling_done);
            let n = sends.len();
            scope.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                let mut k = 0u32;
                while !sampling_done.load(Ordering::Relaxed) {
                    let at = every * k;
                    while t0.elapsed() < at && !sampling_done.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    if sampling_done.load(Ordering::Relaxed) {
                        return;
                    }
                    let now = pids.lock().unwrap().clone();
                    let got = sample_all(&rt, &now, homes, t0.elapsed());
                    let line: Vec<String> = got
                        .iter()
                        .map(|s| {
                            format!(
                                "{}:{}MB/{}fd/{}thr/{}tasks",
                                HOSTS[s.host],
                                mb(s.rss_kb),
                                s.fds,
                                s.threads,
                                opt(s.tasks)
                            )
                        })
                        .collect();
                    println!(
                        "[t={:>6.0}s] sends done {}/{n}  {}",
                        secs(t0.elapsed()),
                        done.load(Ordering::Relaxed),
                        line.join("  ")
                    );
                    samples.lock().unwrap().extend(got);
                    k += 1;
                }
            });
        }
        // The churn, on the main thread of the scope. On a panic the other
        // threads are told to stop (the scope waits for them), then it goes on.
        let churn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for &(at, step) in &steps {
                let at = Duration::from_secs(at);
                while t0.elapsed() < at && !STOP.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                if STOP.load(Ordering::Relaxed) || Instant::now() > hard_end {
                    break;
                }
                let t = t0.elapsed();
                println!("[t={:>6.1}s] {}", secs(t), step.describe());
                run_step(&mut lab, step, t, &mut churn);
            }
            // The end: every link healed, every node up, the watchers gone, the sends done, a quiet spell.
            for &h in &ids {
                lab.restore_link(h);
                if lab.hosts[h].pid.is_none() {
                    restart(&mut lab, h, &mut churn.failures, t0.elapsed());
                }
            }
            *pids.lock().unwrap() = lab.hosts.iter().map(|h| h.pid).collect();
            while done_sends.load(Ordering::Relaxed) < sends.len() && Instant::now() < hard_end {
                std::thread::sleep(Duration::from_millis(200));
            }
            let w = &mut churn.watchers;
            w.reap();
            for (_, _, c) in &mut w.running {
                let _ = c.kill();
                let _ = c.wait();
                w.killed += 1;
            }
            w.running.clear();
            // Quiet until the planned end, and at least QUIET after the watchers went.
            let end = total.max(t0.elapsed() + QUIET);
            while t0.elapsed() < end && !STOP.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
            // One last sample, after the quiet spell.
            std::thread::sleep(Duration::from_secs(2));
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            let last = sample_all(&rt, &pids.lock().unwrap().clone(), &homes, t0.elapsed());
            samples.lock().unwrap().extend(last);
        }));
        sampling_done.store(true, Ordering::Relaxed);
        if let Err(panic) = churn {
            STOP.store(true, Ordering::Relaxed);
            std::panic::resume_unwind(panic);
        }
    });
    let elapsed = t0.elapsed();

    // Late arrivals: a verified send is on screen before its receipt; a short wait all the same.
    std::thread::sleep(Duration::from_secs(3));
    let (seen, merged) = arrivals(&logs);
    let mut sends = sends_out.into_inner().unwrap();
    sends.sort_by_key(|s| s.id);
    let stray = seen.keys().filter(|id| **id >= n_sends).count();

    println!();
    println!("==== soak report: ran {:.1} min ====", secs(elapsed) / 60.0);
    report_sends(&sends, &seen);
    println!(
        "  accepted lines holding more than one message (a text left without its Enter, submitted with the next): {}",
        merged.len()
    );
    for m in merged.iter().take(20) {
        println!("    {m}");
    }
    if stray > 0 {
        println!("  arrivals with an id that was never sent: {stray}");
    }
    let watcher_lines: usize = std::fs::read_dir(&churn.wdir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default().lines().count())
                .sum()
        })
        .unwrap_or(0);
    println!(
        "watchers: {} started, {} killed by the schedule or at the end, {} ended by themselves (their node stopped); {} events received in all",
        churn.watchers.started, churn.watchers.killed, churn.watchers.ended_by_themselves, watcher_lines
    );
    report_samples(samples.into_inner().unwrap());
    println!();
    if churn.failures.is_empty() {
        println!("churn: every step done (every SIGTERM exited 0, every restart answered)");
    } else {
        println!("churn problems ({}):", churn.failures.len());
        for f in &churn.failures {
            println!("  {f}");
        }
    }

    // Cleanup, checked: nothing of the lab may be left.
    let fp = lab.footprint();
    drop(churn);
    drop(lab);
    let left = fp.leftovers();
    let left = if left.is_empty() {
        left
    } else {
        std::thread::sleep(Duration::from_secs(3));
        fp.leftovers()
    };
    if left.is_empty() {
        println!("cleanup: nothing left (namespaces, interfaces, processes, {})", fp_dir.display());
    } else {
        println!("cleanup: LEFT BEHIND: {left:?}");
        std::process::exit(1);
    }
}
