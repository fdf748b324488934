//! Harness for multi-node tests on loopback: one mesh CA made in the test,
//! one real `fleet node` process per host, each with its own MOSAIC_HOME,
//! tmux socket and stub agents. Dropping the harness kills the node processes
//! it started (by pid) and the tmux servers on its own sockets.

#![allow(dead_code)]

// Benches that include both harnesses load it twice; it is a single function.
#[allow(clippy::duplicate_mod)]
#[path = "sandbox_env.rs"]
mod sandbox_env;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const FLEET: &str = env!("CARGO_BIN_EXE_fleet");

/// The pause between paste and Enter of the `slow` runtime, in milliseconds.
pub const SLOW_ENTER_MS: u64 = 1500;

pub struct Mesh {
    pub dir: tempfile::TempDir,
    pub tenant: String,
    pub nodes: Vec<NodeHost>,
    /// MOSAIC_HEARTBEAT_INTERVAL of everything started (seconds).
    pub interval: u32,
    children: Vec<Child>,
    /// tmux servers of terminals ([`Mesh::terminal`]), killed on drop.
    terminals: Vec<String>,
}

pub struct NodeHost {
    pub host: String,
    pub home: PathBuf,
    pub socket: String,
    pub addr: Option<String>,
    pub pid: Option<u32>,
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let o = cmd.output().expect("run");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Send `sig` (`-STOP`, `-CONT`, ...) to a process this test started.
pub fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig} {pid}");
}

pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Mesh {
    /// A mesh CA for `tenant`, no nodes yet.
    pub fn new(tenant: &str) -> Mesh {
        let dir = tempfile::Builder::new().prefix("fleet-mesh-").tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tmux")).unwrap();
        let m = Mesh { dir, tenant: tenant.into(), nodes: vec![], interval: 1, children: vec![], terminals: vec![] };
        let ca = m.ca_dir();
        let (code, _, err) = m.run(&["certs", "init", "--tenant", tenant, "--dir", ca.to_str().unwrap()], &[]);
        assert_eq!(code, 0, "certs init: {err}");
        m
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.root().join("ca")
    }

    /// A `viewer` or `operator` certificate for `name` from the mesh CA, in
    /// the certs dir `<root>/<name>` (ca.pem, client.pem, client.key), for
    /// `FLEET_CERTS_DIR`.
    pub fn client_certs(&self, kind: &str, name: &str) -> PathBuf {
        let out = self.root().join(name);
        let (ca, dir) = (self.ca_dir(), out.display().to_string());
        let (code, _, err) =
            self.run(&["certs", "issue", kind, "--name", name, "--dir", ca.to_str().unwrap(), "--out", &dir], &[]);
        assert_eq!(code, 0, "issue {kind} {name}: {err}");
        out
    }

    fn base_env(&self, cmd: &mut Command) {
        sandbox_env::clean_env(cmd, self.root(), &self.interval.to_string());
    }

    /// `fleet ARGS` with the clean environment and extra env, not started.
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(FLEET);
        self.base_env(&mut cmd);
        cmd.args(args).envs(env.iter().copied()).stdin(Stdio::null());
        cmd
    }

    /// Run fleet with extra env.
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        run(&mut self.command(args, env))
    }

    /// Run fleet as the CLI of node `i` (its local socket).
    pub fn at(&self, i: usize, args: &[&str]) -> (i32, String, String) {
        let home = self.nodes[i].home.display().to_string();
        self.run(args, &[("MOSAIC_HOME", &home)])
    }

    /// Host `host` with the roster agents `agents` (YAML lines). Runtimes: `stub`
    /// (no pause before Enter), `drafty` (keeps input as a draft), `quiet` (no
    /// heartbeat), `slow` ([`SLOW_ENTER_MS`] between paste and Enter), `shell`
    /// (`sh`, to make a pane print what a test wants).
    pub fn add_host(&mut self, host: &str, agents: &str) -> usize {
        let home = self.root().join(host);
        std::fs::create_dir_all(home.join("fleet")).unwrap();
        let certs = home.join("fleet/certs");
        let (code, _, err) = self.run(
            &[
                "certs",
                "issue",
                "node",
                "--host",
                host,
                "--dir",
                self.ca_dir().to_str().unwrap(),
                "--out",
                certs.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(code, 0, "issue node {host}: {err}");
        let socket = format!("mesh-{host}-{}", std::process::id());
        let roster = format!(
            "version: 1
tenant_id: {tenant}
tmux: {{ socket_name: {socket}, holder_session: _holder }}
runtimes:
  stub: {{ command: \"{FLEET} stub-agent\", heartbeat: self, enter_delay_ms: 0 }}
  drafty: {{ command: \"{FLEET} stub-agent --draft\", process_names: [fleet], heartbeat: self }}
  quiet: {{ command: \"{FLEET} stub-agent --no-heartbeat\", process_names: [fleet], heartbeat: self }}
  slow: {{ command: \"{FLEET} stub-agent\", process_names: [fleet], heartbeat: self, enter_delay_ms: {SLOW_ENTER_MS} }}
  shell: {{ command: \"sh\", process_names: [sh] }}
agents:
{agents}",
            tenant = self.tenant
        );
        std::fs::write(home.join("fleet/roster.yaml"), roster).unwrap();
        self.nodes.push(NodeHost { host: host.into(), home, socket, addr: None, pid: None });
        self.nodes.len() - 1
    }

    /// Start node `i` listening on `listen` with static `peers`; wait until it answers.
    pub fn start_node(&mut self, i: usize, listen: &str, peers: &[String]) {
        self.start_node_with(i, listen, peers, &[]);
    }

    /// [`Mesh::start_node`] with extra environment for the node.
    pub fn start_node_with(&mut self, i: usize, listen: &str, peers: &[String], env: &[(&str, &str)]) {
        self.start_node_via(i, listen, peers, env, &[]);
    }

    /// [`Mesh::start_node_with`] through a wrapper that execs the node (e.g. `prlimit
    /// --nofile=1024:20000 --`), so the pid is still the node's.
    pub fn start_node_via(&mut self, i: usize, listen: &str, peers: &[String], env: &[(&str, &str)], via: &[&str]) {
        self.spawn_node_via(i, listen, peers, env, via);
        self.wait_answer(i);
    }

    /// Start node `i` like [`Mesh::start_node_with`] but do not wait for it
    /// (a mass start); [`Mesh::wait_answer`] later learns its address.
    pub fn spawn_node(&mut self, i: usize, listen: &str, peers: &[String], env: &[(&str, &str)]) {
        self.spawn_node_via(i, listen, peers, env, &[]);
    }

    fn spawn_node_via(&mut self, i: usize, listen: &str, peers: &[String], env: &[(&str, &str)], via: &[&str]) {
        let n = &self.nodes[i];
        let log = std::fs::File::create(self.root().join(format!("{}.log", n.host))).unwrap();
        let mut cmd = match via {
            [] => Command::new(FLEET),
            [wrapper, args @ ..] => {
                let mut c = Command::new(wrapper);
                c.args(args).arg(FLEET);
                c
            }
        };
        self.base_env(&mut cmd);
        cmd.arg("node")
            .env("MOSAIC_HOME", &n.home)
            .env("FLEET_LISTEN", listen)
            .env("FLEET_PEERS", peers.join(","))
            .env("FLEET_MDNS", "false")
            .env("FLEET_WEB_LISTEN", "127.0.0.1:0")
            .env("FLEET_PROBE_INTERVAL_MS", "500")
            .env("FLEET_FANOUT_DEADLINE_MS", "1000")
            .env("FLEET_SHUTDOWN_GRACE_MS", "1000")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = cmd.spawn().expect("start fleet node");
        self.nodes[i].pid = Some(child.id());
        self.children.push(child);
    }

    /// Wait until node `i` answers on its local socket; note its gRPC address. If it does
    /// not within 15 s, the panic shows the end of the node's log and the last answer.
    pub fn wait_answer(&mut self, i: usize) {
        let (start, timeout) = (Instant::now(), Duration::from_secs(15));
        let host = self.nodes[i].host.clone();
        loop {
            let (code, out, err) = self.at(i, &["peers", "--json"]);
            if code == 0 {
                let peers: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
                let addr = peers.iter().find(|p| p["found_by"] == "self").and_then(|p| p["grpc_address"].as_str());
                if let Some(addr) = addr {
                    self.nodes[i].addr = Some(addr.to_string());
                    return;
                }
            }
            if start.elapsed() >= timeout {
                let log = std::fs::read_to_string(self.root().join(format!("{host}.log"))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
                panic!(
                    "timed out after {timeout:?} waiting for node {host} to answer; `fleet peers --json` exited {code}: {out}{err}\nthe end of {host}.log:\n{}",
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Own a process started by the test, so that drop kills it.
    pub fn adopt(&mut self, child: Child) {
        self.children.push(child);
    }

    /// `kill -9` node `i`.
    pub fn kill_node(&mut self, i: usize) {
        let pid = self.nodes[i].pid.take().expect("node running");
        if let Some(c) = self.children.iter_mut().find(|c| c.id() == pid) {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn addr(&self, i: usize) -> String {
        self.nodes[i].addr.clone().expect("node started")
    }

    /// `fleet start --all --local` on host `i`.
    /// The holder session (keeps the server up; the node's control-mode client
    /// attaches to it), then `fleet start --all --local`.
    pub fn start_agents(&self, i: usize) {
        self.tmux(i, &["-f", "/dev/null", "new-session", "-d", "-s", "_holder", "sleep 1000000"]);
        let (code, out, err) = self.at(i, &["start", "--all", "--local"]);
        assert_eq!(code, 0, "start agents on {}: {out}{err}", self.nodes[i].host);
    }

    pub fn tmux(&self, i: usize, args: &[&str]) -> String {
        let mut cmd = Command::new("tmux");
        self.base_env(&mut cmd);
        cmd.args(["-L", &self.nodes[i].socket]).args(args);
        run(&mut cmd).1
    }

    /// A terminal for a person at host `i`: a tmux server of its own (socket
    /// `term-NAME-PID`, 100x30) whose one pane runs the shell command `cmd`
    /// with host `i`'s MOSAIC_HOME, then prints `EXIT=<code>` and waits. The
    /// socket name, for [`Mesh::tmux_on`]; the server dies with the mesh.
    pub fn terminal(&mut self, i: usize, name: &str, cmd: &str) -> String {
        let socket = format!("term-{name}-{}", std::process::id());
        let home = format!("MOSAIC_HOME={}", self.nodes[i].home.display());
        let script = format!("{cmd}; echo EXIT=$?; sleep 1000");
        self.tmux_on(
            &socket,
            &[
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                "100",
                "-y",
                "30",
                "-e",
                &home,
                "sh",
                "-c",
                &script,
            ],
        );
        self.terminals.push(socket.clone());
        socket
    }

    /// tmux on another socket than a host's, with the clean environment.
    pub fn tmux_on(&self, socket: &str, args: &[&str]) -> String {
        let mut cmd = Command::new("tmux");
        self.base_env(&mut cmd);
        cmd.args(["-L", socket]).args(args);
        run(&mut cmd).1
    }

    pub fn capture(&self, i: usize, agent: &str) -> String {
        self.tmux(i, &["capture-pane", "-p", "-J", "-t", &format!("={agent}:")])
    }

    /// Follow `fleet heartbeats --json` of node `i`: returns a receiver of lines.
    pub fn follow(&mut self, i: usize) -> mpsc::Receiver<serde_json::Value> {
        let mut cmd = Command::new(FLEET);
        self.base_env(&mut cmd);
        cmd.args(["heartbeats", "--json"])
            .env("MOSAIC_HOME", &self.nodes[i].home)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let out = child.stdout.take().unwrap();
        self.children.push(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if let Ok(v) = serde_json::from_str(&line)
                    && tx.send(v).is_err()
                {
                    return;
                }
            }
        });
        rx
    }
}

/// Wait for an event matching `f` on `rx`, within `timeout`.
pub fn expect_event(
    rx: &mpsc::Receiver<serde_json::Value>,
    what: &str,
    timeout: Duration,
    f: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(v) if f(&v) => return v,
            Ok(_) => {}
            Err(_) => panic!("no {what} event within {timeout:?}"),
        }
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for socket in self.nodes.iter().map(|n| &n.socket).chain(&self.terminals) {
            let mut cmd = Command::new("tmux");
            self.base_env(&mut cmd);
            cmd.args(["-L", socket, "kill-server"]).stderr(Stdio::null());
            let _ = cmd.status();
        }
        // A node killed with SIGKILL can leave its control-mode clients behind,
        // and tmux 3.3a's server then waits for them after kill-server (seen:
        // one server per run of this file). Every tmux process of this mesh
        // has its TMUX_TMPDIR in its environment: end those that are left.
        let mark = format!("TMUX_TMPDIR={}", self.root().join("tmux").display());
        for pid in tmux_processes_with(&mark) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// Pids of tmux processes whose environment holds `var` (`NAME=value`).
fn tmux_processes_with(var: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            comm.starts_with("tmux")
                && std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == var.as_bytes()))
        })
        .collect()
}
