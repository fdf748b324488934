//! Harness for multi-host tests on Linux network namespaces (root required).
//!
//! A [`Lab`] is one simulated LAN:
//!
//! - one namespace holds a Linux bridge; every host is a namespace of its own,
//!   joined to the bridge by a veth pair, with an address from a private test
//!   subnet (`10.213.<run-specific>.0/24`), loopback up and **no default
//!   route**, so nothing in a lab can reach any address outside it;
//! - every host has its own `MOSAIC_HOME` (certificates from one mesh CA made
//!   in the test, a roster with stub agents; a host of another tenant, made by
//!   [`Lab::add_foreign_host`], has its own CA), its own tmux socket (in the lab's
//!   own `TMUX_TMPDIR`), and runs `fleet node` *inside* its namespace
//!   (`ip netns exec NS fleet node`), listening on its namespace address;
//! - the CLI of a host is run inside its namespace too (it reaches the node by
//!   the node's Unix socket, a filesystem path).
//!
//! All interfaces are created directly inside the lab's namespaces (never in
//! the root namespace), with names unique to the run. Names: namespaces
//! `fleetnt-<pid>-<n>-br` and `fleetnt-<pid>-<n>-<host>`; interfaces
//! `n<tag>br` (bridge), `n<tag>p<i>` (bridge port of host i), `n<tag>e<i>`
//! (host i's own end), where `<tag>` is the pid and lab counter in hex.
//!
//! Dropping a [`Lab`] (also while a test panics) kills the node processes it
//! started (by pid: `ip netns exec` execs, so the child's pid is the node's),
//! kills the tmux servers on its own sockets, then kills by pid whatever is
//! still inside one of its namespaces (processes only this lab put there) and
//! deletes its namespaces, which deletes the veths and the bridge. A lab whose
//! test process was killed outright (no unwinding) leaves its namespaces
//! behind; the next [`Lab::new`] in any test process reaps those of dead pids.

#![allow(dead_code)]

// Benches that include both harnesses load it twice; it is a single function.
#[allow(clippy::duplicate_mod)]
#[path = "sandbox_env.rs"]
mod sandbox_env;

use std::fs::OpenOptions;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

pub const FLEET: &str = env!("CARGO_BIN_EXE_fleet");

/// The gRPC port of every node (each host has its own network namespace).
pub const PORT: u16 = 7420;

/// Prefix of every namespace a lab makes.
const NS_PREFIX: &str = "fleetnt-";

static COUNTER: AtomicU32 = AtomicU32::new(0);
static REAP: Once = Once::new();

/// A host of a lab, by index.
pub type HostId = usize;

/// The result of a command.
#[derive(Debug, Clone)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == 0
    }

    /// stdout as JSON; panics naming the command output when it is not.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): stdout {:?} stderr {:?}", self.stdout, self.stderr))
    }
}

fn run(cmd: &mut Command) -> Out {
    let o = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// `ip ARGS`; panics with its stderr when it fails.
fn ip(args: &[&str]) {
    let o = run(Command::new("ip").args(args));
    assert!(o.ok(), "ip {}: {}", args.join(" "), o.stderr.trim());
}

/// `ip ARGS` for cleanup: never panics, says what failed.
fn ip_quiet(args: &[&str]) -> bool {
    match Command::new("ip").args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!("netns cleanup: ip {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim());
            false
        }
        Err(e) => {
            eprintln!("netns cleanup: ip {}: {e}", args.join(" "));
            false
        }
    }
}

/// Poll `f` every 50 ms until it holds; panic naming `what` after `timeout`.
/// Returns how long it took.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if f() {
            return start.elapsed();
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Why this machine cannot run namespace tests, if it cannot: not root, no
/// `ip` (iproute2), no `tmux`, or namespaces not permitted (a container
/// without CAP_SYS_ADMIN).
pub fn preflight() -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err("needs root: network namespaces (run the test command as root, e.g. with sudo -E)".into());
    }
    for (tool, pkg) in [("ip", "iproute2"), ("tmux", "tmux")] {
        let found = Command::new(tool).arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
        if !found {
            return Err(format!("needs `{tool}` on PATH (Debian package {pkg})"));
        }
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let probe = format!("{NS_PREFIX}{}-{n}-probe", std::process::id());
    let o = run(Command::new("ip").args(["netns", "add", &probe]));
    if !o.ok() {
        return Err(format!("cannot create a network namespace: ip netns add: {}", o.stderr.trim()));
    }
    let exec = run(Command::new("ip").args(["netns", "exec", &probe, "ip", "link", "set", "lo", "up"]));
    ip_quiet(&["netns", "delete", &probe]);
    if !exec.ok() {
        return Err(format!("cannot run in a network namespace: ip netns exec: {}", exec.stderr.trim()));
    }
    Ok(())
}

/// Panic with the reason when [`preflight`] fails (checked once per process).
pub fn require_root_and_ip() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(why) = CHECKED.get_or_init(preflight) {
        panic!("{why}");
    }
}

/// Names of the network namespaces that exist now (`ip netns list`).
pub fn netns_list() -> Vec<String> {
    let o = run(Command::new("ip").args(["netns", "list"]));
    o.stdout.lines().filter_map(|l| l.split_whitespace().next()).map(String::from).collect()
}

/// Names of the interfaces of the root namespace (`ip -o link`), without `@peer`.
pub fn root_links() -> Vec<String> {
    let o = run(Command::new("ip").args(["-o", "link", "show"]));
    o.stdout
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// Pids of the processes inside namespace `ns` (`ip netns pids`).
fn netns_pids(ns: &str) -> Vec<i32> {
    let o = Command::new("ip").args(["netns", "pids", ns]).stdin(Stdio::null()).stderr(Stdio::null()).output();
    match o {
        Ok(o) => String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect(),
        Err(_) => vec![],
    }
}

/// `/etc/netns/NS`: `ip netns exec NS` bind-mounts each file in it over the
/// file of that name in `/etc` (`Lab::etc_file`).
fn etc_dir(ns: &str) -> PathBuf {
    Path::new("/etc/netns").join(ns)
}

/// PROGRAM's path: as given when it holds a '/', else the first match in PATH.
pub fn which(program: &str) -> PathBuf {
    if program.contains('/') {
        return program.into();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is not in PATH"))
}

/// Whether `pid` is a live process (a zombie counts as gone).
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

fn kill(pid: i32, sig: rustix::process::Signal) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, sig);
    }
}

/// Kill the processes inside `ns`, by pid: wait up to `grace` for them to
/// leave by themselves, then SIGKILL the rest. Returns the pids killed.
fn empty_namespace(ns: &str, grace: Duration) -> Vec<i32> {
    let until = Instant::now() + grace;
    loop {
        // Never this process (a thread of it may have entered the namespace).
        let me = std::process::id() as i32;
        let pids: Vec<i32> = netns_pids(ns).into_iter().filter(|&p| p != me && pid_alive(p)).collect();
        if pids.is_empty() {
            return vec![];
        }
        if Instant::now() >= until {
            for &p in &pids {
                kill(p, rustix::process::Signal::KILL);
            }
            return pids;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Delete namespaces of earlier labs whose test process is gone (killed
/// without unwinding): their leftover processes were put there by a lab.
fn reap_stale() {
    let me = std::process::id();
    for ns in netns_list() {
        let Some(rest) = ns.strip_prefix(NS_PREFIX) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid == me || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let killed = empty_namespace(&ns, Duration::ZERO);
        eprintln!("netns: reaping stale namespace {ns} of dead test process {pid} (killed {killed:?})");
        ip_quiet(&["netns", "delete", &ns]);
    }
    // Their per-namespace /etc files (`Lab::etc_file`).
    for e in std::fs::read_dir("/etc/netns").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NS_PREFIX) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != me && !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("netns: removing stale {}", e.path().display());
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    // Their temp dirs (homes, tmux sockets, logs): `fleet-netns-<pid>-*`.
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("fleet-netns-") else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != me && !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("netns: removing stale {}", e.path().display());
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// How a node is started, kept for restarts.
#[derive(Clone, Debug, Default)]
struct NodeSpec {
    peers: Vec<String>,
    env: Vec<(String, String)>,
}

/// One simulated host.
pub struct LabHost {
    pub name: String,
    /// Its tenant: the lab's, or another one for a host made by [`Lab::add_foreign_host`].
    pub tenant: String,
    /// Its network namespace.
    pub ns: String,
    pub ip: Ipv4Addr,
    /// Its interface inside its namespace.
    pub iface: String,
    /// Its veth end in the bridge namespace (the "switch port").
    pub port: String,
    pub home: PathBuf,
    /// Its tmux socket name (in the lab's TMUX_TMPDIR).
    pub socket: String,
    /// Pid of its running node.
    pub pid: Option<u32>,
    node: Option<NodeSpec>,
}

/// What a lab made, to check after it is dropped that none of it is left.
#[derive(Debug, Clone)]
pub struct Footprint {
    pub namespaces: Vec<String>,
    pub interfaces: Vec<String>,
    pub pids: Vec<i32>,
    /// The lab's temp dir (homes, tmux sockets, logs).
    pub dir: PathBuf,
}

impl Footprint {
    /// What of this footprint still exists (empty when all is gone).
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = vec![];
        let nss = netns_list();
        left.extend(self.namespaces.iter().filter(|n| nss.contains(n)).map(|n| format!("namespace {n}")));
        left.extend(
            self.namespaces
                .iter()
                .map(|n| etc_dir(n))
                .filter(|d| d.exists())
                .map(|d| format!("directory {}", d.display())),
        );
        let links = root_links();
        left.extend(self.interfaces.iter().filter(|i| links.contains(i)).map(|i| format!("root interface {i}")));
        left.extend(self.pids.iter().filter(|p| pid_alive(**p)).map(|p| format!("process {p}")));
        if self.dir.exists() {
            left.push(format!("directory {}", self.dir.display()));
        }
        left
    }

    pub fn assert_gone(&self) {
        // Killed processes may take a moment to be reaped.
        let mut left = self.leftovers();
        let until = Instant::now() + Duration::from_secs(3);
        while !left.is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
            left = self.leftovers();
        }
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

/// A thread inside a host's network namespace (see [`Lab::enter`]); dropping
/// it moves the thread back to where it was.
pub struct Entered {
    back: std::fs::File,
}

impl Drop for Entered {
    fn drop(&mut self) {
        use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
        use std::os::fd::AsFd;
        move_into_link_name_space(self.back.as_fd(), Some(LinkNameSpaceType::Network))
            .expect("setns back to the thread's own network namespace");
    }
}

/// One simulated LAN: a bridge namespace and host namespaces.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub tenant: String,
    /// `fleetnt-<pid>-<n>`: prefix of this lab's namespaces.
    pub id: String,
    /// Short hex tag in this lab's interface names.
    pub tag: String,
    /// Third octet of the lab subnet 10.213.<subnet>.0/24.
    pub subnet: u8,
    pub bridge_ns: String,
    pub bridge: String,
    pub hosts: Vec<LabHost>,
    /// MOSAIC_HEARTBEAT_INTERVAL of everything started (seconds).
    pub interval: u32,
    /// FLEET_FANOUT_DEADLINE_MS of the nodes.
    pub fanout_deadline_ms: u32,
    /// Namespaces made so far, in order (the bridge first).
    namespaces: Vec<String>,
    children: Vec<Child>,
    /// tmux servers of terminals ([`Lab::terminal`]), killed on drop.
    terminals: Vec<String>,
}

impl Lab {
    /// A lab with a mesh CA for `tenant`, the bridge namespace and no hosts.
    /// Panics when [`preflight`] fails.
    pub fn new(tenant: &str) -> Lab {
        require_root_and_ip();
        REAP.call_once(reap_stale);
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{NS_PREFIX}{pid}-{n}");
        let tag = format!("{pid:x}{:02x}", n % 256);
        // Run-specific, away from the common 10.0/10.1/10.10 and 10.213.0.
        let subnet = (((pid as u64) * 7 + n as u64) % 200 + 20) as u8;
        let dir = tempfile::Builder::new().prefix(&format!("fleet-netns-{pid}-")).tempdir().unwrap();
        for sub in ["tmux", "xdg"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let bridge_ns = format!("{id}-br");
        let bridge = format!("n{tag}br");
        let mut lab = Lab {
            dir,
            tenant: tenant.into(),
            id,
            tag,
            subnet,
            bridge_ns: bridge_ns.clone(),
            bridge: bridge.clone(),
            hosts: vec![],
            interval: 1,
            fanout_deadline_ms: 1000,
            namespaces: vec![],
            children: vec![],
            terminals: vec![],
        };
        ip(&["netns", "add", &bridge_ns]);
        lab.namespaces.push(bridge_ns.clone());
        ip(&["-n", &bridge_ns, "link", "set", "lo", "up"]);
        ip(&["-n", &bridge_ns, "link", "add", &bridge, "type", "bridge"]);
        ip(&["-n", &bridge_ns, "link", "set", &bridge, "up"]);
        let ca = lab.ca_dir();
        let o = lab.fleet_outside(&["certs", "init", "--tenant", tenant, "--dir", ca.to_str().unwrap()], &[]);
        assert!(o.ok(), "certs init: {}", o.stderr);
        lab
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.root().join("ca")
    }

    fn base_env(&self, cmd: &mut Command) {
        sandbox_env::clean_env(cmd, self.root(), &self.interval.to_string());
    }

    /// `fleet ARGS` in the root namespace, not as any host (certificates).
    pub fn fleet_outside(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut cmd = Command::new(FLEET);
        self.base_env(&mut cmd);
        cmd.args(args).envs(env.iter().copied());
        run(&mut cmd)
    }

    /// The lab's clean environment, and host `h`'s MOSAIC_HOME and name.
    fn host_env(&self, h: HostId, cmd: &mut Command) {
        self.base_env(cmd);
        // Namespaces share the machine's hostname: each host says its name.
        cmd.env("MOSAIC_HOME", &self.hosts[h].home).env("FLEET_HOST", &self.hosts[h].name);
    }

    /// A command that runs PROGRAM inside host `h`'s namespace with the lab's
    /// clean environment and the host's MOSAIC_HOME.
    pub fn command_in(&self, h: HostId, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        self.host_env(h, &mut cmd);
        cmd.args(["netns", "exec", &self.hosts[h].ns, program]);
        cmd
    }

    /// Give host `h` its own `/etc/NAME` (`hosts`, `resolv.conf`, ...) with
    /// `contents`, for the processes started in it from now on (`ip netns
    /// exec` bind-mounts `/etc/netns/NS/NAME` over it). Writing it again
    /// rewrites the same file, which processes already running there then
    /// see too. Removed with the lab.
    pub fn etc_file(&self, h: HostId, name: &str, contents: &str) {
        let dir = etc_dir(&self.hosts[h].ns);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let path = dir.join(name);
        // Truncate and write in place: the bind mount holds this inode.
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Move the calling thread into host `h`'s network namespace until the
    /// guard is dropped (setns(2) acts on this thread only). A process this
    /// thread spawns then starts on the host directly, without the few ms
    /// that `ip netns exec` adds to each command (a mount namespace, /sys
    /// remounted, one more exec): benchmarks use it to time client commands
    /// as they cost on a real host. Drop the guard before the lab.
    pub fn enter(&self, h: HostId) -> Entered {
        use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
        use std::os::fd::AsFd;
        let back = std::fs::File::open("/proc/thread-self/ns/net").expect("this thread's network namespace");
        let path = format!("/run/netns/{}", self.hosts[h].ns);
        let there = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        move_into_link_name_space(there.as_fd(), Some(LinkNameSpaceType::Network))
            .unwrap_or_else(|e| panic!("setns into {path}: {e}"));
        Entered { back }
    }

    /// PROGRAM as host `h`, for a thread that has [`Lab::enter`]ed `h`: the
    /// same environment as [`Lab::command_in`], no `ip netns exec`.
    ///
    /// PROGRAM is looked up in PATH here: std spawns a command with a path
    /// and its own PATH by posix_spawn (vfork), one found by a changed PATH by
    /// fork, which costs a large parent like a bench ms more per command.
    pub fn command_as(&self, h: HostId, program: &str) -> Command {
        let mut cmd = Command::new(which(program));
        self.host_env(h, &mut cmd);
        cmd
    }

    /// Run PROGRAM ARGS inside host `h`'s namespace.
    pub fn exec_in(&self, h: HostId, program: &str, args: &[&str]) -> Out {
        run(self.command_in(h, program).args(args))
    }

    /// `fleet ARGS` as host `h`: inside its namespace, with its MOSAIC_HOME
    /// (so the CLI talks to that host's node by its local socket).
    pub fn fleet(&self, h: HostId, args: &[&str]) -> Out {
        self.exec_in(h, FLEET, args)
    }

    /// `fleet ARGS` as host `h` with extra environment.
    pub fn fleet_env(&self, h: HostId, args: &[&str], env: &[(&str, &str)]) -> Out {
        run(self.command_in(h, FLEET).args(args).envs(env.iter().copied()))
    }

    /// Add host `name` with `agents` (roster `agents:` items; runtimes `stub`,
    /// `drafty`, `quiet` as in the loopback harness): its namespace, its veth
    /// pair into the bridge, its address, its certificate and roster.
    pub fn add_host(&mut self, name: &str, agents: &str) -> HostId {
        let (tenant, ca) = (self.tenant.clone(), self.ca_dir());
        self.add_host_of(name, &tenant, &ca, agents)
    }

    /// The CA dir of another tenant `tenant` in this lab (see [`Lab::add_foreign_host`]).
    pub fn foreign_ca_dir(&self, tenant: &str) -> PathBuf {
        self.root().join(format!("ca-{tenant}"))
    }

    /// Add host `name` of ANOTHER tenant on the same LAN, with its own mesh CA: made with
    /// `fleet certs init --tenant TENANT` in [`Lab::foreign_ca_dir`] on first use (hosts of one
    /// foreign tenant share it), which issues the host's node certificate; its roster says
    /// `tenant_id: TENANT`. Otherwise as [`Lab::add_host`].
    pub fn add_foreign_host(&mut self, name: &str, tenant: &str, agents: &str) -> HostId {
        assert_ne!(tenant, self.tenant, "a foreign host has a tenant other than the lab's");
        let ca = self.foreign_ca_dir(tenant);
        if !ca.join("ca.pem").exists() {
            let o = self.fleet_outside(&["certs", "init", "--tenant", tenant, "--dir", ca.to_str().unwrap()], &[]);
            assert!(o.ok(), "certs init {tenant}: {}", o.stderr);
        }
        self.add_host_of(name, tenant, &ca, agents)
    }

    fn add_host_of(&mut self, name: &str, tenant: &str, ca: &Path, agents: &str) -> HostId {
        let i = self.add_bare_host(name, tenant);
        let home = self.hosts[i].home.clone();
        let certs = home.join("fleet/certs");
        let (ca, out) = (ca.display().to_string(), certs.display().to_string());
        let o = self.fleet_outside(&["certs", "issue", "node", "--host", name, "--dir", &ca, "--out", &out], &[]);
        assert!(o.ok(), "issue node {name}: {}", o.stderr);
        let socket = &self.hosts[i].socket;
        let roster = format!(
            "version: 1
tenant_id: {tenant}
tmux: {{ socket_name: {socket} }}
runtimes:
  stub: {{ command: \"{FLEET} stub-agent\", heartbeat: self }}
  drafty: {{ command: \"{FLEET} stub-agent --draft\", process_names: [fleet], heartbeat: self }}
  quiet: {{ command: \"{FLEET} stub-agent --no-heartbeat\", process_names: [fleet], heartbeat: self }}
agents:
{agents}"
        );
        std::fs::write(home.join("fleet/roster.yaml"), roster).unwrap();
        i
    }

    /// Host `name` as a new machine: its namespace on the bridge, its address, an
    /// empty `<lab>/<name>/fleet` dir as its MOSAIC_HOME; no certificate, no roster.
    pub fn add_bare_host(&mut self, name: &str, tenant: &str) -> HostId {
        let i = self.hosts.len();
        assert!(i < 250, "a lab holds at most 250 hosts");
        let ns = format!("{}-{name}", self.id);
        let port = format!("n{}p{i}", self.tag);
        let iface = format!("n{}e{i}", self.tag);
        assert!(port.len() <= 15 && iface.len() <= 15, "interface names over IFNAMSIZ: {port} {iface}");
        let ip_addr = Ipv4Addr::new(10, 213, self.subnet, i as u8 + 2);

        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        // Both ends are created inside the lab's namespaces: the root namespace never sees them.
        ip(&["-n", &self.bridge_ns, "link", "add", &port, "type", "veth", "peer", "name", &iface, "netns", &ns]);
        ip(&["-n", &self.bridge_ns, "link", "set", &port, "master", &self.bridge]);
        ip(&["-n", &self.bridge_ns, "link", "set", &port, "up"]);
        ip(&["-n", &ns, "addr", "add", &format!("{ip_addr}/24"), "dev", &iface]);
        ip(&["-n", &ns, "link", "set", &iface, "up"]);

        let home = self.root().join(name);
        std::fs::create_dir_all(home.join("fleet")).unwrap();
        let socket = format!("{}-{name}", self.id);
        self.hosts.push(LabHost {
            name: name.into(),
            tenant: tenant.into(),
            ns,
            ip: ip_addr,
            iface,
            port,
            home,
            socket,
            pid: None,
            node: None,
        });
        i
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> HostId {
        self.hosts.iter().position(|h| h.name == name).unwrap_or_else(|| panic!("no host {name} in this lab"))
    }

    /// Host `h`'s gRPC address, `10.213.S.I:7420`.
    pub fn addr(&self, h: HostId) -> String {
        format!("{}:{PORT}", self.hosts[h].ip)
    }

    /// `fleet start --all --local` as host `h` (its tmux server lives in its namespace).
    pub fn start_agents(&self, h: HostId) {
        let o = self.fleet(h, &["start", "--all", "--local"]);
        assert!(o.ok(), "start agents on {}: {}{}", self.hosts[h].name, o.stdout, o.stderr);
    }

    /// Start host `h`'s node inside its namespace, listening on its address,
    /// with the addresses of `peers` as static peers (mDNS off); wait until it
    /// answers on its local socket. Returns how long it took to answer.
    pub fn start_node(&mut self, h: HostId, peers: &[HostId]) -> Duration {
        let peers = peers.iter().map(|&p| self.addr(p)).collect();
        self.start_node_with(h, peers, &[])
    }

    /// [`Lab::start_node`] with static peer addresses and extra `FLEET_*`
    /// environment (which overrides the defaults here, e.g. `FLEET_MDNS`).
    pub fn start_node_with(&mut self, h: HostId, peers: Vec<String>, env: &[(&str, &str)]) -> Duration {
        let spec = NodeSpec { peers, env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() };
        self.spawn_node(h, spec)
    }

    fn spawn_node(&mut self, h: HostId, spec: NodeSpec) -> Duration {
        assert!(self.hosts[h].pid.is_none(), "node {} is already running", self.hosts[h].name);
        let log_path = self.log_path(h);
        let mut log = OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
        use std::io::Write;
        let _ = writeln!(log, "---- netns harness: starting node (peers {:?}) ----", spec.peers);
        let mut cmd = self.command_in(h, FLEET);
        cmd.arg("node")
            .env("FLEET_LISTEN", self.addr(h))
            .env("FLEET_PEERS", spec.peers.join(","))
            .env("FLEET_MDNS", "false")
            .env("FLEET_PROBE_INTERVAL_MS", "500")
            .env("FLEET_FANOUT_DEADLINE_MS", self.fanout_deadline_ms.to_string())
            .env("FLEET_SHUTDOWN_GRACE_MS", "1000")
            .env("RUST_LOG", "info")
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let start = Instant::now();
        // `ip netns exec` execs the node: this pid is the node's.
        let child = cmd.spawn().expect("start fleet node");
        let pid = child.id();
        self.children.push(child);
        self.hosts[h].pid = Some(pid);
        self.hosts[h].node = Some(spec);
        let name = self.hosts[h].name.clone();
        let want = self.addr(h);
        let mut last = String::new();
        let answered = (|| {
            let until = start + Duration::from_secs(15);
            while Instant::now() < until {
                if !self.node_running(h) {
                    return false;
                }
                let o = self.fleet(h, &["peers", "--json"]);
                if o.ok() {
                    let peers: Vec<serde_json::Value> = o.json();
                    let me = peers.iter().find(|p| p["found_by"] == "self");
                    if me.is_some_and(|p| p["grpc_address"] == want.as_str()) {
                        return true;
                    }
                    last = o.stdout;
                } else {
                    last = o.stderr;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        })();
        assert!(answered, "node {name} did not answer on {want} (last: {last})\nlog:\n{}", self.log(h));
        start.elapsed()
    }

    /// Whether host `h`'s node process is still running.
    pub fn node_running(&mut self, h: HostId) -> bool {
        let Some(pid) = self.hosts[h].pid else { return false };
        match self.children.iter_mut().find(|c| c.id() == pid) {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn take_child(&mut self, h: HostId) -> Child {
        let pid = self.hosts[h].pid.take().unwrap_or_else(|| panic!("node {} is not running", self.hosts[h].name));
        let at = self.children.iter().position(|c| c.id() == pid).expect("the node is a child of the lab");
        self.children.swap_remove(at)
    }

    /// `kill -9` host `h`'s node.
    pub fn kill_node(&mut self, h: HostId) {
        let mut c = self.take_child(h);
        let _ = c.kill();
        let _ = c.wait();
    }

    /// SIGTERM host `h`'s node and wait for it to exit (SIGKILL after `grace`).
    /// Returns its exit code (None when it had to be killed).
    pub fn stop_node(&mut self, h: HostId, grace: Duration) -> Option<i32> {
        let mut c = self.take_child(h);
        kill(c.id() as i32, rustix::process::Signal::TERM);
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// Kill (-9) host `h`'s node if it runs, and start it again with the same
    /// peers and environment. Returns how long the new one took to answer.
    pub fn restart_node(&mut self, h: HostId) -> Duration {
        if self.hosts[h].pid.is_some() {
            self.kill_node(h);
        }
        let spec =
            self.hosts[h].node.clone().unwrap_or_else(|| panic!("node {} was never started", self.hosts[h].name));
        self.spawn_node(h, spec)
    }

    /// Cut host `h`'s cable: set its port in the bridge namespace down (the
    /// host sees no carrier; packets to and from it are dropped).
    pub fn cut_link(&self, h: HostId) {
        ip(&["-n", &self.bridge_ns, "link", "set", &self.hosts[h].port, "down"]);
    }

    /// Undo [`Lab::cut_link`].
    pub fn restore_link(&self, h: HostId) {
        ip(&["-n", &self.bridge_ns, "link", "set", &self.hosts[h].port, "up"]);
    }

    /// Detach host `h`'s port from the bridge, carrier kept: the host's link
    /// looks fine but nothing reaches anyone (a failed switch path).
    pub fn detach_link(&self, h: HostId) {
        ip(&["-n", &self.bridge_ns, "link", "set", &self.hosts[h].port, "nomaster"]);
    }

    /// Undo [`Lab::detach_link`].
    pub fn attach_link(&self, h: HostId) {
        ip(&["-n", &self.bridge_ns, "link", "set", &self.hosts[h].port, "master", &self.bridge]);
    }

    /// Own a process started by the test (e.g. with [`Lab::command_in`]), so
    /// that dropping the lab kills it.
    pub fn adopt(&mut self, child: Child) -> u32 {
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// `fleet ps --json` as host `h`; panics when it fails.
    pub fn ps_json(&self, h: HostId) -> Vec<serde_json::Value> {
        let o = self.fleet(h, &["ps", "--json"]);
        assert!(o.ok(), "ps on {}: exit {}: {}", self.hosts[h].name, o.code, o.stderr);
        o.json()
    }

    /// `fleet peers --json` as host `h`; panics when it fails.
    pub fn peers_json(&self, h: HostId) -> Vec<serde_json::Value> {
        let o = self.fleet(h, &["peers", "--json"]);
        assert!(o.ok(), "peers on {}: exit {}: {}", self.hosts[h].name, o.code, o.stderr);
        o.json()
    }

    /// tmux ARGS on host `h`'s socket.
    pub fn tmux(&self, h: HostId, args: &[&str]) -> String {
        let mut cmd = Command::new("tmux");
        self.base_env(&mut cmd);
        cmd.args(["-L", &self.hosts[h].socket]).args(args);
        run(&mut cmd).stdout
    }

    /// A terminal for a person at host `h`: a tmux server of the lab's own
    /// (socket `term-NAME-<lab id>`, 100x30, in the root namespace) whose one
    /// pane runs `program args` inside `h`'s namespace with the host's
    /// MOSAIC_HOME and name, then prints `EXIT=<code>` and waits. The socket
    /// name, for [`Lab::tmux_on`]; the server dies with the lab.
    pub fn terminal(&mut self, h: HostId, name: &str, program: &str, args: &[&str]) -> String {
        let socket = format!("term-{name}-{}", self.id);
        let home = format!("MOSAIC_HOME={}", self.hosts[h].home.display());
        let host = format!("FLEET_HOST={}", self.hosts[h].name);
        let words: Vec<String> = std::iter::once(which(program).display().to_string())
            .chain(args.iter().map(|a| a.to_string()))
            .map(|w| {
                assert!(!w.contains('\''), "{w:?} holds a single quote");
                format!("'{w}'")
            })
            .collect();
        let script = format!("{}; echo EXIT=$?; sleep 1000", words.join(" "));
        let ns = self.hosts[h].ns.clone();
        self.terminals.push(socket.clone());
        let mut cmd = Command::new("tmux");
        self.base_env(&mut cmd);
        cmd.args(["-L", &socket, "-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "100", "-y", "30"])
            .args(["-e", &home, "-e", &host, "ip", "netns", "exec", &ns, "sh", "-c", &script]);
        let o = run(&mut cmd);
        assert!(o.ok(), "terminal {name} on {}: {}", self.hosts[h].name, o.stderr);
        socket
    }

    /// tmux ARGS on another socket than a host's (a terminal's), with the lab's environment.
    pub fn tmux_on(&self, socket: &str, args: &[&str]) -> String {
        let mut cmd = Command::new("tmux");
        self.base_env(&mut cmd);
        cmd.args(["-L", socket]).args(args);
        run(&mut cmd).stdout
    }

    /// The screen of `agent`'s pane on host `h`.
    pub fn capture(&self, h: HostId, agent: &str) -> String {
        self.tmux(h, &["capture-pane", "-p", "-J", "-t", &format!("={agent}:")])
    }

    pub fn log_path(&self, h: HostId) -> PathBuf {
        self.root().join(format!("{}.log", self.hosts[h].name))
    }

    /// Host `h`'s node log (every start of it, appended).
    pub fn log(&self, h: HostId) -> String {
        std::fs::read_to_string(self.log_path(h)).unwrap_or_default()
    }

    /// What this lab made so far: namespaces, interface names, and the pids
    /// of every process inside its namespaces now (nodes, tmux servers, agents).
    pub fn footprint(&self) -> Footprint {
        let mut interfaces = vec![self.bridge.clone()];
        for h in &self.hosts {
            interfaces.push(h.port.clone());
            interfaces.push(h.iface.clone());
        }
        let mut pids: Vec<i32> = self.namespaces.iter().flat_map(|ns| netns_pids(ns)).collect();
        pids.extend(self.hosts.iter().filter_map(|h| h.pid.map(|p| p as i32)));
        pids.sort_unstable();
        pids.dedup();
        Footprint { namespaces: self.namespaces.clone(), interfaces, pids, dir: self.root().to_path_buf() }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The processes the lab started itself, by pid.
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The tmux servers on the lab's own sockets (hosts' and terminals').
        for socket in self.hosts.iter().map(|h| &h.socket).chain(&self.terminals) {
            let mut cmd = Command::new("tmux");
            self.base_env(&mut cmd);
            cmd.args(["-L", socket, "kill-server"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
            let _ = cmd.status();
        }
        // Whatever is still inside a lab namespace was put there by the lab
        // (agents leaving after their server): by pid, after a short grace.
        for ns in self.namespaces.iter().rev() {
            let killed = empty_namespace(ns, Duration::from_secs(2));
            if !killed.is_empty() {
                eprintln!("netns cleanup: killed leftover processes {killed:?} in {ns}");
            }
        }
        // Hosts first, then the bridge namespace (which takes the veths and the bridge with it).
        for ns in self.namespaces.iter().rev() {
            ip_quiet(&["netns", "delete", ns]);
            let _ = std::fs::remove_dir_all(etc_dir(ns));
        }
    }
}
