//! Delivering a message into an agent's pane, and verifying it was taken.
//!
//! The technique (CONTEXT.md): check the exact target; leave copy mode; load
//! the text into a uniquely named buffer from stdin and `paste-buffer -d -p`
//! it (bracketed paste); after a short pause, send `Enter`. The text never
//! passes through a shell and is refused if it holds control characters
//! ([`fleet_core::message::prepare_text`]). Three tmux processes per send
//! (five with `--verify`: a capture before the paste and one before `Enter`,
//! plus the polls).

use crate::probe::{PANE_FORMAT, Pane, first_panes, parse_panes};
use crate::tmux::{Tmux, TmuxError, exact_session};
use fleet_core::message::{TextError, prepare_text};
use fleet_core::verify::{Step, Verdict, Verifier};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct SendOptions {
    pub verify: bool,
    /// How long `verify` polls before it decides.
    pub verify_timeout: Duration,
    pub poll_interval: Duration,
    /// The pause between the paste and `Enter`, so the program has read the paste.
    pub enter_delay: Duration,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            verify: false,
            verify_timeout: Duration::from_secs(6),
            poll_interval: Duration::from_millis(400),
            enter_delay: Duration::from_millis(fleet_core::roster::DEFAULT_ENTER_DELAY_MS),
        }
    }
}

/// What happened to a message that reached the pane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Pasted and submitted; not verified.
    Delivered,
    Verified(Verdict),
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Verified(v) => v.as_str(),
        }
    }

    /// Exit 0 only for delivered (no verify asked) or accepted.
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Delivered | Outcome::Verified(Verdict::Accepted))
    }
}

#[derive(Clone, Debug)]
pub struct Delivery {
    pub outcome: Outcome,
    pub detail: String,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Text(#[from] TextError),
    #[error("no such agent {0}")]
    NotFound(String),
    #[error("the pane of {0} is dead (its program exited); restart it with `fleet restart {0}`")]
    DeadPane(String),
    #[error(transparent)]
    Tmux(#[from] TmuxError),
}

/// Find the agent's first pane, by exact session name.
pub fn find_pane(tmux: &Tmux, agent: &str) -> Result<Pane, SendError> {
    let out = tmux.run(["list-panes", "-s", "-t", &exact_session(agent), "-F", PANE_FORMAT], None);
    let out = match out {
        Ok(out) => out,
        Err(e) if e.is_no_target() => return Err(SendError::NotFound(agent.to_string())),
        Err(e) => return Err(e.into()),
    };
    first_panes(parse_panes(&out)).remove(agent).ok_or_else(|| SendError::NotFound(agent.to_string()))
}

fn buffer_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("fleet-send-{}-{}-{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn capture(tmux: &Tmux, pane: &str) -> Result<String, TmuxError> {
    tmux.run(["capture-pane", "-p", "-J", "-t", pane], None)
}

/// Deliver without verify through a control-mode client: the same steps as
/// [`send`] (exact target, dead-pane check first, leave any mode, load into a
/// named buffer, bracketed paste, pause, Enter), each a control-mode command
/// instead of a process. `run` runs one command on the client
/// ([`crate::control::Control::run`]); the caller may share the client and
/// lock it per command, so that other sends go on during this one's pause.
/// The text goes through a 0600 file in `scratch`.
pub fn send_via_control(
    run: impl FnMut(&[&str]) -> Result<Vec<String>, TmuxError>,
    agent: &str,
    text: &str,
    opts: &SendOptions,
    scratch: &std::path::Path,
) -> Result<Delivery, SendError> {
    send_phased(run, agent, text, opts, scratch, |_| Begin::Type, |_| Ok(()))
}

/// How a [`send_phased`] begins, decided once the pane is found (its id and
/// pid tell whether it is the pane an earlier, interrupted attempt typed into).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Begin {
    /// Paste the text, then Enter.
    Type,
    /// Clear the input line (`C-u`) first: an earlier attempt's paste may sit
    /// on it, unsubmitted. Then as `Type`.
    ClearThenType,
    /// Only press Enter: the text is on the input line already (an earlier
    /// attempt pasted it into this very pane).
    Enter,
}

/// The steps of a [`send_phased`] that its caller records before going on;
/// an error from the caller stops the send there.
#[derive(Debug)]
pub enum Phase<'a> {
    /// About to paste into `pane`: from here the text may be on its input line.
    Pasting { pane: &'a Pane },
    /// Pasted; Enter comes next: from here the text may have been submitted.
    Pasted,
}

/// [`send_via_control`] in phases, for a sender that must survive its own
/// crash (the node's durable queue): `begin` chooses, given the pane, how to
/// start; `phase` is called before the paste and between paste and Enter, and
/// the send goes on only if it returns `Ok` (so what it records on disk is
/// always at least as far as the pane got). `run` may be a control-mode client
/// or spawned tmux (one command each).
pub fn send_phased(
    mut run: impl FnMut(&[&str]) -> Result<Vec<String>, TmuxError>,
    agent: &str,
    text: &str,
    opts: &SendOptions,
    scratch: &std::path::Path,
    begin: impl FnOnce(&Pane) -> Begin,
    mut phase: impl FnMut(Phase<'_>) -> Result<(), SendError>,
) -> Result<Delivery, SendError> {
    use std::io::Write as _;
    let start = Instant::now();
    let text = prepare_text(text)?;
    let out = match run(&["list-panes", "-s", "-t", &exact_session(agent), "-F", PANE_FORMAT]) {
        Ok(out) => out,
        Err(e) if e.is_no_target() => return Err(SendError::NotFound(agent.to_string())),
        Err(e) => return Err(e.into()),
    };
    let pane = first_panes(parse_panes(&out.join("\n")))
        .remove(agent)
        .ok_or_else(|| SendError::NotFound(agent.to_string()))?;
    // Never paste into a dead pane: tmux 3.3a's server crashes on it.
    if pane.dead {
        return Err(SendError::DeadPane(agent.to_string()));
    }
    if pane.in_mode {
        run(&["copy-mode", "-q", "-t", &pane.id])?;
    }
    match begin(&pane) {
        Begin::Enter => {
            run(&["send-keys", "-t", &pane.id, "Enter"])?;
            return Ok(Delivery {
                outcome: Outcome::Delivered,
                detail: "submitted (it had been pasted before)".into(),
                elapsed: start.elapsed(),
            });
        }
        Begin::ClearThenType => {
            run(&["send-keys", "-t", &pane.id, "C-u"])?;
        }
        Begin::Type => {}
    }
    let mut file = tempfile::Builder::new()
        .prefix(".fleet-send-")
        .tempfile_in(scratch)
        .map_err(|e| SendError::Tmux(crate::tmux::TmuxError::Spawn { bin: "scratch file".into(), source: e }))?;
    file.write_all(text.as_bytes())
        .and_then(|_| file.flush())
        .map_err(|e| SendError::Tmux(crate::tmux::TmuxError::Spawn { bin: "scratch file".into(), source: e }))?;
    let path = file.path().display().to_string();
    let buffer = buffer_name();
    let loaded = run(&["load-buffer", "-b", &buffer, &path]);
    drop(file);
    loaded?;
    if let Err(e) = phase(Phase::Pasting { pane: &pane }) {
        let _ = run(&["delete-buffer", "-b", &buffer]);
        return Err(e);
    }
    if let Err(e) = run(&["paste-buffer", "-d", "-p", "-b", &buffer, "-t", &pane.id]) {
        let _ = run(&["delete-buffer", "-b", &buffer]);
        return Err(e.into());
    }
    phase(Phase::Pasted)?;
    std::thread::sleep(opts.enter_delay);
    run(&["send-keys", "-t", &pane.id, "Enter"])?;
    Ok(Delivery { outcome: Outcome::Delivered, detail: "pasted and submitted".into(), elapsed: start.elapsed() })
}

/// Deliver `text` (the full message, preamble included) to `agent`.
pub fn send(tmux: &Tmux, agent: &str, text: &str, opts: &SendOptions) -> Result<Delivery, SendError> {
    let start = Instant::now();
    let text = prepare_text(text)?;
    let pane = find_pane(tmux, agent)?;
    // Never paste into a dead pane: tmux 3.3a's server crashes on it (and takes
    // every session with it), so the check comes first, in its own call.
    if pane.dead {
        return Err(SendError::DeadPane(agent.to_string()));
    }
    // Any mode (copy, view, clock, tree, ...) takes the input: leave it.
    // `copy-mode -q` quits whatever mode the pane is in (tmux 3.3a); `send-keys
    // -X cancel` works in copy mode only. Leave it before the first capture,
    // which would otherwise show the mode's screen, not the program's.
    let leave_mode = ["copy-mode", "-q", "-t", &pane.id, ";"];
    let mut args: Vec<&str> = Vec::new();
    let mut verifier = None;
    if opts.verify {
        if pane.in_mode {
            tmux.run(&leave_mode[..4], None)?;
        }
        verifier = Some(Verifier::new(&capture(tmux, &pane.id)?, &text));
    } else if pane.in_mode {
        args.extend(leave_mode);
    }

    let buffer = buffer_name();
    args.extend(["load-buffer", "-b", &buffer, "-", ";", "paste-buffer", "-d", "-p", "-b", &buffer, "-t", &pane.id]);
    // With no pause and nothing to look at between paste and Enter, one tmux
    // process does it all.
    let enter_now = verifier.is_none() && opts.enter_delay.is_zero();
    if enter_now {
        args.extend([";", "send-keys", "-t", &pane.id, "Enter"]);
    }
    if let Err(e) = tmux.run(&args, Some(text.as_bytes())) {
        // The buffer may be left behind if the paste failed; never leave text around.
        let _ = tmux.run(["delete-buffer", "-b", &buffer], None);
        return Err(e.into());
    }
    if !enter_now {
        std::thread::sleep(opts.enter_delay);
        if let Some(v) = verifier.as_mut() {
            // The text seen on the input line now, and gone later, is evidence
            // that Enter took it (agents that show a paste as a placeholder).
            if let Ok(shot) = capture(tmux, &pane.id) {
                v.pasted(&shot);
            }
        }
        tmux.run(["send-keys", "-t", &pane.id, "Enter"], None)?;
    }

    let Some(mut verifier) = verifier else {
        return Ok(Delivery {
            outcome: Outcome::Delivered,
            detail: "pasted and submitted".into(),
            elapsed: start.elapsed(),
        });
    };
    let deadline = Instant::now() + opts.verify_timeout;
    // The first look comes sooner than the poll interval: most agents echo at once.
    let mut wait = opts.poll_interval.min(Duration::from_millis(100));
    loop {
        std::thread::sleep(wait.min(deadline.saturating_duration_since(Instant::now())));
        wait = opts.poll_interval;
        let shot = match capture(tmux, &pane.id) {
            Ok(s) => s,
            Err(e) if e.is_no_target() => {
                let detail = "the pane went away while verifying".to_string();
                return Ok(Delivery {
                    outcome: Outcome::Verified(Verdict::Unverifiable),
                    detail,
                    elapsed: start.elapsed(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        match verifier.observe(&shot) {
            Step::Done(verdict, detail) => {
                return Ok(Delivery { outcome: Outcome::Verified(verdict), detail, elapsed: start.elapsed() });
            }
            Step::PressEnter => {
                tmux.run(["send-keys", "-t", &pane.id, "Enter"], None)?;
            }
            Step::Wait => {}
        }
        if Instant::now() >= deadline {
            let (verdict, detail) = verifier.finish();
            return Ok(Delivery { outcome: Outcome::Verified(verdict), detail, elapsed: start.elapsed() });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TestServer;

    fn buffers(server: &TestServer) -> Vec<String> {
        let out = server.tmux.run(["list-buffers", "-F", "#{buffer_name}"], None).unwrap_or_default();
        out.lines().map(str::to_string).collect()
    }

    #[test]
    fn a_paste_end_sequence_is_refused_before_tmux_runs() {
        let server = TestServer::new();
        let marker = server.dir.path().join("pwned");
        server.session("sh", &["sh"]);
        server.wait_for("the shell prompt", || !server.capture("sh").trim().is_empty());
        let evil = format!("harmless\x1b[201~\ntouch {}\n", marker.display());
        let opts = SendOptions { verify: true, ..SendOptions::default() };
        // A tmux that cannot even start: if anything ran, the error would be Spawn.
        let mut no_tmux = server.tmux.clone();
        no_tmux.bin = server.dir.path().join("no-such-tmux");
        assert!(matches!(send(&no_tmux, "sh", &evil, &opts), Err(SendError::Text(_))));
        let err = send(&server.tmux, "sh", &evil, &opts).unwrap_err();
        assert!(matches!(err, SendError::Text(_)), "{err}");
        assert!(err.to_string().contains("ESC (0x1b)"), "{err}");
        std::thread::sleep(Duration::from_millis(300));
        assert!(!marker.exists(), "the text after ESC[201~ ran");
        assert!(!server.capture("sh").contains("harmless"), "nothing was pasted");
        assert!(buffers(&server).iter().all(|b| !b.starts_with("fleet-send-")), "{:?}", buffers(&server));
    }

    #[test]
    fn a_send_leaves_no_buffer_and_leaves_any_mode_first() {
        let server = TestServer::new();
        let out = server.dir.path().join("got");
        server.session(
            "r",
            &["sh", "-c", &format!("IFS= read -r line; printf '%s' \"$line\" > {}; sleep 30", out.display())],
        );
        // Clock mode eats keys; `send-keys -X cancel` fails outside copy mode.
        server.tmux.run(["clock-mode", "-t", "=r:"], None).unwrap();
        let mode = server.tmux.run(["display-message", "-p", "-t", "=r:", "#{pane_mode}"], None).unwrap();
        assert_eq!(mode.trim(), "clock-mode");
        let d = send(&server.tmux, "r", "[h:a -> h:r] plain text; ok", &SendOptions::default()).unwrap();
        assert_eq!(d.outcome, Outcome::Delivered);
        server.wait_for("the line", || std::fs::read_to_string(&out).is_ok_and(|s| !s.is_empty()));
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "[h:a -> h:r] plain text; ok");
        assert!(buffers(&server).iter().all(|b| !b.starts_with("fleet-send-")), "{:?}", buffers(&server));
    }

    /// A pane program that appends every line it reads to `out`.
    fn line_logger(out: &std::path::Path) -> String {
        format!("while IFS= read -r l; do printf '%s\\n' \"$l\" >> {}; done", out.display())
    }

    fn lines_in(out: &std::path::Path) -> String {
        std::fs::read_to_string(out).unwrap_or_default()
    }

    /// The receipt words (`--json`, web UIs) and the exit status: a contract.
    #[test]
    fn outcome_words_and_success_are_fixed() {
        let all = [
            (Outcome::Delivered, "delivered", true),
            (Outcome::Verified(Verdict::Accepted), "accepted", true),
            (Outcome::Verified(Verdict::Draft), "draft", false),
            (Outcome::Verified(Verdict::Unverifiable), "unverifiable", false),
        ];
        for (o, word, success) in all {
            assert_eq!((o.as_str(), o.is_success()), (word, success), "{o:?}");
        }
    }

    #[test]
    fn a_missing_agent_is_not_found_and_a_broken_tmux_is_an_error() {
        let server = TestServer::new();
        server.session("a", &["sleep", "30"]);
        let pane = find_pane(&server.tmux, "a").unwrap();
        assert!(pane.id.starts_with('%') && pane.session == "a" && !pane.dead, "{pane:?}");
        let e = find_pane(&server.tmux, "b").unwrap_err();
        assert!(matches!(&e, SendError::NotFound(a) if a == "b"), "{e}");
        let mut no_tmux = server.tmux.clone();
        no_tmux.bin = server.dir.path().join("no-such-tmux");
        let e = find_pane(&no_tmux, "a").unwrap_err();
        assert!(matches!(e, SendError::Tmux(TmuxError::Spawn { .. })), "{e}");
    }

    /// Without a pause, one tmux process pastes and presses Enter once; with
    /// one, Enter comes after it.
    #[test]
    fn enter_is_pressed_once_and_after_the_pause() {
        let server = TestServer::new();
        let out = server.dir.path().join("lines");
        server.session("r", &["sh", "-c", &line_logger(&out)]);
        let now = SendOptions { enter_delay: Duration::ZERO, ..SendOptions::default() };
        assert_eq!(send(&server.tmux, "r", "one", &now).unwrap().outcome, Outcome::Delivered);
        server.wait_for("the first line", || lines_in(&out) == "one\n");
        let paused = SendOptions { enter_delay: Duration::from_millis(400), ..SendOptions::default() };
        let d = send(&server.tmux, "r", "two", &paused).unwrap();
        assert!(d.elapsed >= paused.enter_delay, "Enter came after {:?}", d.elapsed);
        server.wait_for("the second line", || lines_in(&out).ends_with("two\n"));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(lines_in(&out), "one\ntwo\n", "one Enter per send");
    }

    /// A program that answers only after a while is watched until it does
    /// (within the verify timeout), not judged on the first look.
    #[test]
    fn verify_waits_for_a_slow_program() {
        let server = TestServer::new();
        server.session("slow", &["sh", "-c", "while :; do printf '$ '; IFS= read -r l || exit; sleep 1; done"]);
        server.wait_for("the prompt", || server.capture("slow").contains('$'));
        let opts = SendOptions {
            verify: true,
            verify_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(200),
            ..SendOptions::default()
        };
        let d = send(&server.tmux, "slow", "hello slow world", &opts).unwrap();
        assert_eq!(d.outcome, Outcome::Verified(Verdict::Accepted), "{}: {}", d.detail, server.capture("slow"));
        assert!(d.elapsed >= Duration::from_secs(1), "{:?}", d.elapsed);
    }

    #[test]
    fn a_pane_that_goes_away_while_verifying_is_unverifiable() {
        let server = TestServer::new();
        server.session("holder", &["sleep", "30"]);
        server.session("once", &["sh", "-c", "IFS= read -r l"]);
        let opts = SendOptions { verify: true, verify_timeout: Duration::from_secs(3), ..SendOptions::default() };
        let d = send(&server.tmux, "once", "bye", &opts).unwrap();
        assert_eq!(d.outcome, Outcome::Verified(Verdict::Unverifiable), "{}", d.detail);
        assert!(d.detail.contains("went away"), "{}", d.detail);
    }

    /// tmux failing for another reason than a missing pane (here: its binary
    /// removed while the send verifies) is an error, not a verdict.
    #[test]
    fn a_tmux_failure_while_verifying_is_an_error() {
        let server = TestServer::new();
        let bin = server.dir.path().join("tmux-copy");
        let path = std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|d| d.join("tmux"))
            .find(|p| p.is_file())
            .expect("tmux on PATH");
        std::fs::copy(path, &bin).unwrap();
        // The program removes the binary as soon as it reads the line.
        server.session("rm", &["sh", "-c", &format!("IFS= read -r l; rm -f {}; sleep 30", bin.display())]);
        let mut tmux = server.tmux.clone();
        tmux.bin = bin.clone();
        let opts = SendOptions { verify: true, verify_timeout: Duration::from_secs(3), ..SendOptions::default() };
        let e = send(&tmux, "rm", "go", &opts).unwrap_err();
        assert!(!bin.exists());
        assert!(matches!(e, SendError::Tmux(TmuxError::Spawn { .. })), "{e}");
    }

    #[test]
    fn control_sends_tell_a_missing_agent_from_a_gone_client() {
        let server = TestServer::new();
        let out = server.dir.path().join("lines");
        server.session("holder", &["sleep", "30"]);
        server.session("r", &["sh", "-c", &line_logger(&out)]);
        let mut c = crate::control::Control::attach(&server.tmux, "holder").unwrap();
        let opts = SendOptions::default();
        let scratch = server.dir.path();
        let d = send_via_control(|w| c.run(w), "r", "via control", &opts, scratch).unwrap();
        assert_eq!(d.outcome, Outcome::Delivered);
        server.wait_for("the line", || lines_in(&out) == "via control\n");
        let e = send_via_control(|w| c.run(w), "nosuch", "x", &opts, scratch).unwrap_err();
        assert!(matches!(&e, SendError::NotFound(a) if a == "nosuch"), "{e}");
        // The client's session ends: the client exits, and a send through it is an error.
        server.tmux.run(["kill-session", "-t", "=holder"], None).unwrap();
        server.wait_for("the client to exit", || !c.alive());
        let e = send_via_control(|w| c.run(w), "r", "x", &opts, scratch).unwrap_err();
        assert!(matches!(e, SendError::Tmux(TmuxError::Failed { .. })), "{e}");
    }
}
