//! Running a short-lived helper program (`tmux list-panes`, `systemctl --user
//! show`) within a time limit.
//!
//! A helper that does not answer (a tmux server that accepts and never
//! replies, a systemctl whose manager hangs) must not hold its caller. Each
//! helper runs in a process group of its own; past the limit the whole group
//! is killed (a grandchild holding the pipes included) and the call is
//! [`RunError::Hung`]. Both pipes are read on the calling thread with poll(2),
//! so no reader thread can outlive the call.
//!
//! A caller that stops waiting for its helpers (the node at shutdown: it never
//! waits for a probe thread) hands them a [`Helpers`] set and closes it: every
//! helper still running is killed, and later ones are refused. A group is only
//! ever signalled while its leader is not yet reaped, so its id cannot belong
//! to another process by then.

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, Signal};
use std::collections::BTreeSet;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What a helper printed, and how it ended.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("could not run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("{program} did not answer within {} ms (killed it, pid {pid})", timeout.as_millis())]
    Hung { program: String, pid: u32, timeout: Duration },
    #[error("{program} was not run: shutting down")]
    Closed { program: String },
    #[error("could not read the output of {program}: {source}")]
    Read {
        program: String,
        #[source]
        source: io::Error,
    },
}

/// The helpers of one caller that are still running, so that it can end them
/// all at once ([`Helpers::close`]).
#[derive(Debug, Default)]
pub struct Helpers {
    state: Mutex<HelperState>,
}

#[derive(Debug, Default)]
struct HelperState {
    /// Process-group ids (= the leaders' pids) of helpers not yet reaped.
    running: BTreeSet<u32>,
    closed: bool,
}

impl Helpers {
    fn lock(&self) -> MutexGuard<'_, HelperState> {
        // A panic while holding it leaves a consistent set: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Kill every helper still running (its whole process group) and refuse
    /// new ones; how many were killed.
    pub fn close(&self) -> usize {
        let mut s = self.lock();
        s.closed = true;
        for &pid in &s.running {
            kill_group(pid);
        }
        s.running.len()
    }

    /// How many helpers run now.
    pub fn running(&self) -> usize {
        self.lock().running.len()
    }
}

fn kill_group(pid: u32) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    }
}

/// A spawned helper that is killed and reaped on every way out of [`run`].
struct Running<'a> {
    child: Child,
    pid: u32,
    helpers: Option<&'a Helpers>,
    reaped: bool,
}

impl Running<'_> {
    /// Reap the helper if it has exited (under the set's lock, so that
    /// [`Helpers::close`] never signals a reaped group).
    fn try_reap(&mut self) -> io::Result<Option<ExitStatus>> {
        let mut guard = self.helpers.map(Helpers::lock);
        let status = self.child.try_wait()?;
        if status.is_some() {
            self.reaped = true;
            if let Some(s) = guard.as_mut() {
                s.running.remove(&self.pid);
            }
        }
        Ok(status)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        {
            let mut guard = self.helpers.map(Helpers::lock);
            if let Some(s) = guard.as_mut() {
                s.running.remove(&self.pid);
            }
            // Not reaped yet: the group id is still ours.
            kill_group(self.pid);
        }
        let _ = self.child.wait();
    }
}

/// Run `cmd` with no stdin and return what it printed, or kill it (its whole
/// process group) once `timeout` has passed. `helpers`, if given, lists it
/// while it runs.
pub fn run(cmd: &mut Command, timeout: Duration, helpers: Option<&Helpers>) -> Result<Output, RunError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let start = Instant::now();
    let child = cmd.spawn().map_err(|source| RunError::Spawn { program: program.clone(), source })?;
    let pid = child.id();
    let mut running = Running { child, pid, helpers, reaped: false };
    if let Some(h) = helpers {
        let mut s = h.lock();
        if s.closed {
            drop(s);
            // Dropping `running` kills and reaps it.
            return Err(RunError::Closed { program });
        }
        s.running.insert(pid);
    }
    let mut pipes = [
        running.child.stdout.take().map(|p| Box::new(p) as Box<dyn ReadFd>),
        running.child.stderr.take().map(|p| Box::new(p) as Box<dyn ReadFd>),
    ];
    let mut outputs: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let hung = |program: String| RunError::Hung { program, pid, timeout };
    let mut buf = vec![0u8; 64 * 1024];
    // Read both pipes until they close (the helper exited) or time runs out.
    while pipes.iter().any(Option::is_some) {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(hung(program));
        }
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd<'_>> =
                pipes.iter().flatten().map(|p| PollFd::from_borrowed_fd(p.fd(), PollFlags::IN)).collect();
            let ts = Timespec::try_from(left).unwrap_or(Timespec { tv_sec: i64::MAX, tv_nsec: 0 });
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(RunError::Read { program, source: e.into() }),
            }
            fds.iter().map(|f| !f.revents().is_empty()).collect()
        };
        let mut ready = ready.into_iter();
        for (slot, out) in pipes.iter_mut().zip(outputs.iter_mut()) {
            let Some(pipe) = slot else { continue };
            if !ready.next().unwrap_or(false) {
                continue;
            }
            match pipe.read(&mut buf) {
                Ok(0) => *slot = None,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(RunError::Read { program, source }),
            }
        }
    }
    // Both pipes closed: the helper has exited or is about to. (It is reaped
    // only now: until then its group id stays reserved for the kill above.)
    // Wait for its exit on a pidfd where the kernel has them (Linux 5.3),
    // else in short sleeps.
    let pidfd = Pid::from_child(&running.child);
    let pidfd = rustix::process::pidfd_open(pidfd, rustix::process::PidfdFlags::empty()).ok();
    let mut pause = Duration::from_micros(100);
    loop {
        match running.try_reap() {
            Ok(Some(status)) => {
                let [stdout, stderr] = outputs;
                return Ok(Output { status, stdout, stderr });
            }
            Ok(None) if start.elapsed() >= timeout => return Err(hung(program)),
            Ok(None) => {
                let left = timeout.saturating_sub(start.elapsed());
                match &pidfd {
                    Some(fd) => {
                        let ts = Timespec::try_from(left).unwrap_or(Timespec { tv_sec: i64::MAX, tv_nsec: 0 });
                        let _ = rustix::event::poll(&mut [PollFd::new(fd, PollFlags::IN)], Some(&ts));
                    }
                    None => {
                        std::thread::sleep(pause.min(left));
                        pause = (pause * 2).min(Duration::from_millis(20));
                    }
                }
            }
            Err(source) => return Err(RunError::Read { program, source }),
        }
    }
}

/// A pipe from a child: readable, and pollable by its fd.
trait ReadFd: Read {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_>;
}

impl<T: Read + std::os::fd::AsFd> ReadFd for T {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z"))
    }

    #[test]
    fn output_and_status_of_a_helper_that_answers() {
        let out = run(&mut sh("printf out; printf err >&2; exit 3"), Duration::from_secs(5), None).unwrap();
        assert_eq!((out.stdout.as_slice(), out.stderr.as_slice()), (&b"out"[..], &b"err"[..]));
        assert_eq!(out.status.code(), Some(3));
        // More than a pipe holds, on both pipes at once: nothing stalls.
        let big = run(&mut sh("head -c 300000 /dev/zero; head -c 300000 /dev/zero >&2"), Duration::from_secs(5), None)
            .unwrap();
        assert_eq!((big.stdout.len(), big.stderr.len()), (300_000, 300_000));
        let e = run(&mut Command::new("/nonexistent/helper"), Duration::from_secs(5), None).unwrap_err();
        assert!(matches!(e, RunError::Spawn { .. }), "{e}");
    }

    #[test]
    fn a_helper_that_hangs_is_killed_with_its_children_in_time() {
        // The shell does not exec: its `sleep` child holds the pipes too.
        let start = Instant::now();
        let e = run(&mut sh("sleep 60 & wait"), Duration::from_millis(500), None).unwrap_err();
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(500) && took < Duration::from_secs(3), "{took:?}");
        let RunError::Hung { pid, .. } = e else { panic!("{e}") };
        assert!(e.to_string().contains("did not answer within 500 ms"), "{e}");
        assert!(!alive(pid), "helper {pid} still runs");
    }

    #[test]
    fn a_grandchild_holding_the_pipes_is_killed_too() {
        let helpers = Helpers::default();
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        // The helper exits at once; its background child keeps stdout open.
        let script = format!("sleep 60 & echo $! > {}; exit 0", pidfile.display());
        let e = run(&mut sh(&script), Duration::from_millis(500), Some(&helpers)).unwrap_err();
        assert!(matches!(e, RunError::Hung { .. }), "{e}");
        let grandchild: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        // The grandchild is reparented (to init or a subreaper): give the kill a moment to land.
        let start = Instant::now();
        while alive(grandchild) && start.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!alive(grandchild), "grandchild {grandchild} still runs");
        assert_eq!(helpers.running(), 0);
    }

    #[test]
    fn closing_the_set_kills_running_helpers_and_refuses_new_ones() {
        let helpers = std::sync::Arc::new(Helpers::default());
        let h = helpers.clone();
        let t = std::thread::spawn(move || run(&mut sh("exec sleep 60"), Duration::from_secs(60), Some(&h)));
        let start = Instant::now();
        while helpers.running() == 0 && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(helpers.close(), 1);
        let out = t.join().unwrap().expect("a killed helper ends its call");
        assert!(!out.status.success(), "{:?}", out.status);
        assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
        assert_eq!(helpers.running(), 0);
        let e = run(&mut sh("exit 0"), Duration::from_secs(5), Some(&helpers)).unwrap_err();
        assert!(matches!(e, RunError::Closed { .. }), "{e}");
    }
}
