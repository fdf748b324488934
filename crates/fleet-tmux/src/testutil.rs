//! Unit-test helpers: a throwaway tmux server on its own `-S` socket in a
//! temp dir, killed (that server only) when dropped.

use crate::tmux::Tmux;
use fleet_core::roster::TmuxSocket;
use std::time::{Duration, Instant};

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub tmux: Tmux,
}

impl TestServer {
    pub fn new() -> TestServer {
        let dir = tempfile::Builder::new().prefix("fleet-tmux-").tempdir().expect("temp dir");
        let tmux = Tmux::new(TmuxSocket::Path(dir.path().join("sock").display().to_string()));
        TestServer { dir, tmux }
    }

    pub fn socket(&self) -> &TmuxSocket {
        &self.tmux.socket
    }

    /// Start a detached session running `argv` (no user config is read).
    pub fn session(&self, name: &str, argv: &[&str]) {
        let mut args = vec!["-f", "/dev/null", "new-session", "-d", "-x", "120", "-y", "30", "-s", name, "--"];
        args.extend(argv);
        self.tmux.run(&args, None).expect("new-session");
    }

    pub fn capture(&self, name: &str) -> String {
        self.tmux.run(["capture-pane", "-p", "-J", "-t", &format!("={name}:")], None).unwrap_or_default()
    }

    pub fn wait_for(&self, what: &str, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.tmux.run(["kill-server"], None);
    }
}
