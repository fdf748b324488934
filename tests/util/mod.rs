//! Test harness: a throwaway host in a temp dir.
//!
//! Each [`Host`] has its own `TMUX_TMPDIR` (so every tmux socket, the default
//! server's included, lives inside the temp dir), `MOSAIC_HOME`, `HOME` and
//! `XDG_RUNTIME_DIR`, and runs the real `fleet` binary with a clean
//! environment. Dropping it kills the tmux servers it started (by socket, which
//! only holds its own sessions) and checks that the default server was never
//! touched.

#![allow(dead_code)]

#[path = "../sandbox_env.rs"]
mod sandbox_env;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const FLEET: &str = env!("CARGO_BIN_EXE_fleet");

pub struct Host {
    pub dir: tempfile::TempDir,
    pub socket: String,
    pub name: String,
    pub tenant: String,
    /// Sockets whose servers this host may have started.
    extra_sockets: Vec<String>,
    /// Variables set for fleet on top of the clean environment.
    extra_env: Vec<(String, String)>,
}

impl Host {
    pub fn new() -> Host {
        let dir = tempfile::Builder::new().prefix("fleet-test-").tempdir().expect("temp dir");
        for sub in ["tmux", "home/fleet", "xdg"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let socket = format!("fleet-test-{}", std::process::id());
        Host { dir, socket, name: "testhost".into(), tenant: "acme".into(), extra_sockets: vec![], extra_env: vec![] }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn mosaic_home(&self) -> PathBuf {
        self.root().join("home")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.mosaic_home().join("fleet/run")
    }

    pub fn roster_path(&self) -> PathBuf {
        self.mosaic_home().join("fleet/roster.yaml")
    }

    /// Write a roster on this host's socket; `{fleet}` in `body` is replaced by
    /// the fleet binary. `body` holds `runtimes:` and `agents:`.
    pub fn roster(&self, body: &str) {
        let text = format!(
            "version: 1\ntenant_id: {}\ntmux: {{ socket_name: {}, holder_session: _holder }}\n{}",
            self.tenant,
            self.socket,
            body.replace("{fleet}", FLEET)
        );
        std::fs::write(self.roster_path(), text).unwrap();
    }

    /// Runtimes every test roster may use.
    pub const RUNTIMES: &'static str = "runtimes:
  stub: { command: \"{fleet} stub-agent\", heartbeat: self }
  drafty: { command: \"{fleet} stub-agent --draft\", process_names: [fleet], heartbeat: self }
  deaf: { command: \"{fleet} stub-agent --deaf\", process_names: [fleet], heartbeat: self }
  quiet: { command: \"{fleet} stub-agent --no-heartbeat\", process_names: [fleet], heartbeat: self }
  claude: { command: \"sleep 1000\" }
  crashing: { command: \"sh -c 'exit 3'\" }
  fast: { command: \"{fleet} stub-agent\", heartbeat: self, enter_delay_ms: 0 }
  crashfast: { command: \"sh -c 'exit 3'\", enter_delay_ms: 0 }
";

    pub fn envs(&self, cmd: &mut Command) {
        sandbox_env::clean_env(cmd, self.root(), "1")
            .env("MOSAIC_HOME", self.mosaic_home())
            .env("FLEET_HOST", &self.name);
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
    }

    /// Set a variable for every later `fleet` run (not for the harness's own tmux calls).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.extra_env.push((key.to_string(), value.to_string()));
    }

    /// The path of a `-L` socket (`None`: the default server) of this host's TMUX_TMPDIR.
    pub fn socket_path(&self, socket: Option<&str>) -> PathBuf {
        let uid = rustix::process::getuid().as_raw();
        self.root().join(format!("tmux/tmux-{uid}/{}", socket.unwrap_or("default")))
    }

    pub fn fleet(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(FLEET);
        cmd.args(args).stdin(Stdio::null());
        self.envs(&mut cmd);
        cmd
    }

    /// Run fleet; return (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        output(self.fleet(args).output().expect("run fleet"))
    }

    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> (i32, String, String) {
        use std::io::Write;
        let mut child =
            self.fleet(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        output(child.wait_with_output().unwrap())
    }

    /// `fleet ps --local --json`, parsed.
    pub fn ps(&self) -> Vec<serde_json::Value> {
        let (code, out, err) = self.run(&["ps", "--local", "--json"]);
        assert_eq!(code, 0, "ps failed: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ps --json is not JSON ({e}): {out}"))
    }

    pub fn row(&self, name: &str) -> serde_json::Value {
        self.ps().into_iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("no row {name}"))
    }

    /// tmux on this host's socket.
    pub fn tmux(&self, args: &[&str]) -> (i32, String, String) {
        self.tmux_on(Some(&self.socket), args)
    }

    /// tmux on a socket (`None`: the default server of this host's TMUX_TMPDIR).
    pub fn tmux_on(&self, socket: Option<&str>, args: &[&str]) -> (i32, String, String) {
        let mut cmd = Command::new("tmux");
        if let Some(s) = socket {
            cmd.args(["-L", s]);
        }
        cmd.arg("-f").arg("/dev/null").args(args).stdin(Stdio::null());
        self.envs(&mut cmd);
        // The harness addresses exactly the server it names.
        cmd.env_remove("TMUX");
        output(cmd.output().expect("run tmux"))
    }

    /// Start a session by hand (not through fleet) on this host's socket, in
    /// the host's temp dir (so whatever it writes stays there).
    pub fn session(&self, name: &str, command: &str) {
        let root = self.root().display().to_string();
        let (code, _, err) = self.tmux(&["new-session", "-d", "-s", name, "-c", &root, command]);
        assert_eq!(code, 0, "new-session {name}: {err}");
    }

    pub fn capture(&self, name: &str) -> String {
        self.tmux(&["capture-pane", "-p", "-J", "-t", &format!("={name}:")]).1
    }

    /// Wait until `f` holds, or panic with `what` after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Mark a socket whose server the test starts, so drop kills it too.
    pub fn also_cleanup(&mut self, socket: &str) {
        self.extra_sockets.push(socket.to_string());
    }

    fn default_socket(&self) -> PathBuf {
        self.socket_path(None)
    }

    /// The default tmux server of this host has never been started.
    pub fn assert_default_server_untouched(&self) {
        assert!(!self.default_socket().exists(), "something started or addressed the default tmux server");
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let sockets: Vec<Option<String>> = std::iter::once(Some(self.socket.clone()))
            .chain(self.extra_sockets.iter().map(|s| if s.is_empty() { None } else { Some(s.clone()) }))
            .collect();
        for s in sockets {
            let _ = self.tmux_on(s.as_deref(), &["kill-server"]);
        }
    }
}

fn output(o: Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
