//! `fleet stub-agent`: a small REPL that behaves like an agent runtime, for
//! tests and the demo.
//!
//! It shows a `> ` prompt, turns on bracketed paste (as Claude Code and pi
//! do), echoes what is typed, and on Enter prints `accepted: <line>` and a
//! fresh prompt. It writes protocol-v1 heartbeats. It can be told to
//! misbehave so that the verify and health paths meet something real:
//! - `--draft`: Enter is ignored; input stays unsubmitted on the prompt line;
//! - `--deaf`: input is read and thrown away; the screen never changes;
//! - `--no-heartbeat`, or typing `/stop-heartbeat`: no (more) heartbeats;
//! - typing `/exit` (or Ctrl-D on an empty line): the program exits;
//! - Ctrl-U clears the input (all of it, a multi-line paste too).
//! - typing `/clear` or `/new` (the reset commands of claude, pi, codex): the
//!   screen is cleared and says `context cleared (/clear)`.
//!
//! It can also look busy, like a runtime in a turn, matching the `stub` rules
//! of `framework/fleet/activity.yaml`:
//! - `/work SECS`: a spinner line `⠋ working 3s (esc to interrupt)`, redrawn
//!   every 100 ms, for SECS seconds, then `done` and the prompt; the Esc key
//!   interrupts it (`interrupted`, the prompt). Keys typed meanwhile are
//!   queued for the prompt;
//! - `/ask`: `Allow this action? [y/n]` until `y` or `n` (`allowed` or
//!   `denied`, the prompt);
//! - `--hooks`: it writes `<name>.state` files as a runtime's hooks would
//!   (working, idle, waiting, idle; exited on `/exit`), and, as Claude Code
//!   and Codex, nothing when Esc interrupts a turn.
//!
//! With `--log FILE` it also appends every accepted line to FILE, as
//! `<name>\t<line>` (line breaks shown as ` ⏎ `), one `write` per line on a file
//! opened for appending, so agents can share one file: the soak benchmark
//! counts deliveries there instead of in pane scrollback.

use crate::exit::{self, CliResult};
use anyhow::anyhow;
use fleet_core::activity::State;
use fleet_core::heartbeat::{BeatStatus, HeartbeatEnv, heartbeat_path};
use rustix::termios::{self, LocalModes, OptionalActions, SpecialCodeIndex};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct StubArgs {
    /// The agent's name [default: $MOSAIC_AGENT_NAME, else "stub"].
    #[arg(long)]
    pub name: Option<String>,
    /// Keep input as an unsubmitted draft: Enter is ignored.
    #[arg(long, conflicts_with = "deaf")]
    pub draft: bool,
    /// Swallow input without echo: nothing on screen ever changes.
    #[arg(long)]
    pub deaf: bool,
    /// Write no heartbeats.
    #[arg(long)]
    pub no_heartbeat: bool,
    /// The heartbeat file [default: $MOSAIC_HEARTBEAT_RUN_DIR or $MOSAIC_HOME/fleet/run, /<name>.hb].
    #[arg(long, value_name = "FILE")]
    pub heartbeat_file: Option<PathBuf>,
    /// Seconds between heartbeats [default: $MOSAIC_HEARTBEAT_INTERVAL, else 15].
    #[arg(long)]
    pub interval: Option<u64>,
    /// Append every accepted line to FILE, as `<name><TAB><line>`.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Write activity state files as a runtime's hooks would
    /// (`<name>.state` beside the heartbeat file): working when `/work`
    /// starts, idle when it ends, waiting on `/ask`, idle after the answer,
    /// exited on `/exit`; nothing when Esc interrupts `/work`.
    #[arg(long)]
    pub hooks: bool,
}

/// Puts the terminal back as it was when dropped.
struct RawMode(Option<termios::Termios>);

impl RawMode {
    fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(&stdin) else { return RawMode(None) };
        let mut raw = saved.clone();
        raw.local_modes.remove(LocalModes::ICANON | LocalModes::ECHO);
        raw.special_codes[SpecialCodeIndex::VMIN] = 1;
        raw.special_codes[SpecialCodeIndex::VTIME] = 0;
        match termios::tcsetattr(&stdin, OptionalActions::Now, &raw) {
            Ok(()) => RawMode(Some(saved)),
            Err(_) => RawMode(None),
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, saved);
        }
    }
}

pub fn run(args: StubArgs) -> CliResult {
    let env = HeartbeatEnv::from_lookup(|k| std::env::var(k).ok());
    let name = args
        .name
        .clone()
        .or_else(|| std::env::var("MOSAIC_AGENT_NAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "stub".into());
    let interval = match args.interval {
        Some(i) => i.max(1),
        None => env.interval_secs().map_err(|e| exit::usage(anyhow!(e)))?,
    };
    let hb_file = args.heartbeat_file.clone().unwrap_or_else(|| heartbeat_path(&env.run_dir(), &name));
    let hooks = args.hooks.then(|| {
        let dir = hb_file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        (dir.to_path_buf(), name.clone())
    });
    let beating = Arc::new(AtomicBool::new(!args.no_heartbeat));
    {
        let beating = beating.clone();
        let pid = std::process::id();
        std::thread::spawn(move || {
            while beating.load(Ordering::Relaxed) {
                if let Err(e) = fleet_tmux::hbwriter::write_heartbeat(&hb_file, pid, BeatStatus::Ok) {
                    eprintln!("stub-agent: cannot write {}: {e}", hb_file.display());
                }
                std::thread::sleep(Duration::from_secs(interval));
            }
        });
    }
    let log = match &args.log {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| exit::usage(anyhow!("cannot open the --log file {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let _raw = RawMode::enter();
    let mut out = std::io::stdout().lock();
    let mode = if args.draft {
        " (draft mode: Enter is ignored)"
    } else if args.deaf {
        " (deaf mode)"
    } else {
        ""
    };
    // Bracketed paste on, as real agent TUIs do.
    let _ = write!(out, "\x1b[?2004hstub agent {name} ready{mode}\r\n> ");
    let _ = out.flush();
    // stdin is read on its own thread, so that a turn's spinner runs while
    // the main loop waits for keys.
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut stdin = std::io::stdin().lock();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) if tx.send(buf[..n].to_vec()).is_err() => return,
                Ok(_) => {}
            }
        }
    });
    let mut stub = Stub {
        repl: Repl::new(args.draft),
        turn: Turn::Prompt,
        held: Vec::new(),
        ask_keys: Repl::new(false),
        name,
        log,
        beating,
        hooks,
    };
    loop {
        let chunk = if matches!(stub.turn, Turn::Work { .. }) {
            match rx.recv_timeout(SPINNER_TICK) {
                Ok(c) => Some(c),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(c) => Some(c),
                Err(_) => break,
            }
        };
        if args.deaf {
            continue;
        }
        if let Some(chunk) = chunk
            && stub.feed(&chunk, &mut out) == Flow::Exit
        {
            return Ok(());
        }
        if stub.tick(&mut out) == Flow::Exit {
            return Ok(());
        }
        let _ = out.flush();
    }
    stub.hook(State::Exited, "session_end");
    Ok(())
}

/// How often the spinner is redrawn.
const SPINNER_TICK: Duration = Duration::from_millis(100);
const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
/// The longest `/work`.
const WORK_MAX_SECS: f64 = 3600.0;

/// Where the stub is in a turn.
enum Turn {
    /// At its `> ` prompt.
    Prompt,
    /// `/work SECS`: a spinner until `until`, or until Esc.
    Work { started: Instant, until: Instant },
    /// `/ask`: a permission prompt until `y` or `n`.
    Ask,
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Go,
    Exit,
}

struct Stub {
    repl: Repl,
    turn: Turn,
    /// Keys typed during a turn, for the prompt after it (as runtimes queue them).
    held: Vec<u8>,
    /// Tracks escape sequences and pastes while `/ask` waits for a key.
    ask_keys: Repl,
    name: String,
    log: Option<std::fs::File>,
    beating: Arc<AtomicBool>,
    /// `--hooks`: the run dir and agent name of the state file.
    hooks: Option<(PathBuf, String)>,
}

impl Stub {
    /// Write the state file, as a runtime's hook would (with `--hooks`).
    fn hook(&self, state: State, event: &str) {
        if let Some((dir, name)) = &self.hooks
            && let Err(e) = crate::hook::write_state(dir, name, state, event, fleet_tmux::hbwriter::now_unix())
        {
            eprintln!("stub-agent: cannot write the state file in {}: {e}", dir.display());
        }
    }

    fn feed(&mut self, chunk: &[u8], out: &mut impl Write) -> Flow {
        for (i, &b) in chunk.iter().enumerate() {
            match self.turn {
                Turn::Work { .. } => {
                    // A lone Esc (not the start of a sequence) is the Esc key.
                    if b == 0x1b && !matches!(chunk.get(i + 1), Some(b'[' | b'O')) {
                        // Real runtimes fire no hook here: the activity logic must see it on screen.
                        let _ = write!(out, "\r\x1b[Kinterrupted\r\n> ");
                        self.turn = Turn::Prompt;
                        if self.replay_held(out) == Flow::Exit {
                            return Flow::Exit;
                        }
                    } else {
                        self.held.push(b);
                    }
                }
                Turn::Ask => {
                    let plain = self.ask_keys.pending.is_empty() && !self.ask_keys.in_paste;
                    let answer = match b {
                        b'y' | b'Y' if plain => Some("allowed"),
                        b'n' | b'N' if plain => Some("denied"),
                        _ => None,
                    };
                    match answer {
                        Some(word) => {
                            let _ = write!(out, "{}\r\n{word}\r\n> ", b as char);
                            self.turn = Turn::Prompt;
                            self.hook(State::Idle, "permission_answered");
                        }
                        None => {
                            self.ask_keys.feed(b, &mut std::io::sink());
                        }
                    }
                }
                Turn::Prompt => match self.repl.feed(b, out) {
                    Action::None => {}
                    Action::Submit(line) => {
                        if self.submit(line, out) == Flow::Exit {
                            return Flow::Exit;
                        }
                    }
                    Action::Eof => {
                        self.hook(State::Exited, "session_end");
                        return Flow::Exit;
                    }
                },
            }
        }
        Flow::Go
    }

    /// Keys typed during the turn that just ended, as if typed now.
    fn replay_held(&mut self, out: &mut impl Write) -> Flow {
        let held = std::mem::take(&mut self.held);
        self.feed(&held, out)
    }

    fn submit(&mut self, line: String, out: &mut impl Write) -> Flow {
        let shown = line.replace('\n', " ⏎ ");
        let _ = write!(out, "\r\naccepted: {shown}\r\n");
        if let Some(f) = &mut self.log {
            // One write: appends of concurrent agents do not interleave.
            let _ = f.write_all(format!("{}\t{shown}\n", self.name).as_bytes());
        }
        // A command may come after a `[src -> dst] ` preamble.
        let command = line.rsplit_once("] ").map_or(line.as_str(), |(_, c)| c).trim();
        let (verb, rest) = command.split_once(' ').unwrap_or((command, ""));
        match verb {
            "/exit" if rest.is_empty() => {
                self.hook(State::Exited, "session_end");
                return Flow::Exit;
            }
            "/stop-heartbeat" if rest.is_empty() => self.beating.store(false, Ordering::Relaxed),
            // The reset commands of claude (/clear) and pi and codex (/new): the screen is cleared.
            "/clear" | "/new" if rest.is_empty() => {
                let _ = write!(out, "\x1b[H\x1b[2Jcontext cleared ({verb}): a fresh conversation\r\n> ");
                return Flow::Go;
            }
            "/work" => match rest.trim().parse::<f64>() {
                Ok(secs) if secs.is_finite() && secs >= 0.0 => {
                    let now = Instant::now();
                    let until = now + Duration::from_secs_f64(secs.min(WORK_MAX_SECS));
                    self.turn = Turn::Work { started: now, until };
                    self.hook(State::Working, "prompt_submitted");
                    self.draw_spinner(out);
                    return Flow::Go;
                }
                _ => {
                    let _ = write!(out, "usage: /work SECS\r\n");
                }
            },
            "/ask" if rest.is_empty() => {
                let _ = write!(out, "Allow this action? [y/n] ");
                self.turn = Turn::Ask;
                self.ask_keys = Repl::new(false);
                self.hook(State::Waiting, "permission_prompt");
                return Flow::Go;
            }
            _ => {}
        }
        let _ = write!(out, "> ");
        Flow::Go
    }

    fn draw_spinner(&self, out: &mut impl Write) {
        if let Turn::Work { started, .. } = self.turn {
            let elapsed = started.elapsed();
            let frame = SPINNER[(elapsed.as_millis() / SPINNER_TICK.as_millis()) as usize % SPINNER.len()];
            let _ = write!(out, "\r\x1b[K{frame} working {}s (esc to interrupt)", elapsed.as_secs());
        }
    }

    /// Time passes: the spinner turns; a turn that is due ends.
    fn tick(&mut self, out: &mut impl Write) -> Flow {
        let Turn::Work { until, .. } = self.turn else { return Flow::Go };
        if Instant::now() < until {
            self.draw_spinner(out);
            return Flow::Go;
        }
        let _ = write!(out, "\r\x1b[Kdone\r\n> ");
        self.turn = Turn::Prompt;
        self.hook(State::Idle, "turn_done");
        self.replay_held(out)
    }
}

enum Action {
    None,
    Submit(String),
    Eof,
}

/// The line editor: plain bytes, bracketed-paste markers, Enter, backspace.
struct Repl {
    line: String,
    /// An escape sequence or a UTF-8 character being read.
    pending: Vec<u8>,
    in_paste: bool,
    draft: bool,
}

impl Repl {
    fn new(draft: bool) -> Repl {
        Repl { line: String::new(), pending: Vec::new(), in_paste: false, draft }
    }

    fn feed(&mut self, b: u8, out: &mut impl Write) -> Action {
        if !self.pending.is_empty() || b == 0x1b {
            self.pending.push(b);
            if self.pending[0] == 0x1b {
                // ESC [ params final-byte
                let done = self.pending.len() > 2 && (0x40..=0x7e).contains(&b) || self.pending.len() > 16;
                if self.pending.len() == 2 && b != b'[' {
                    self.pending.clear();
                } else if done {
                    match &self.pending[..] {
                        b"\x1b[200~" => self.in_paste = true,
                        b"\x1b[201~" => self.in_paste = false,
                        _ => {}
                    }
                    self.pending.clear();
                }
                return Action::None;
            }
            // UTF-8 continuation.
            if let Ok(s) = std::str::from_utf8(&self.pending) {
                let s = s.to_string();
                self.pending.clear();
                self.line.push_str(&s);
                let _ = out.write_all(s.as_bytes());
            } else if self.pending.len() >= 4 {
                self.pending.clear();
            }
            return Action::None;
        }
        match b {
            b'\r' | b'\n' if self.in_paste => {
                self.line.push('\n');
                let _ = out.write_all(b"\r\n  ");
            }
            b'\r' | b'\n' if self.draft => {}
            b'\r' | b'\n' => return Action::Submit(std::mem::take(&mut self.line)),
            0x04 if self.line.is_empty() => return Action::Eof,
            // Ctrl-U: the whole input goes (a multi-line paste too), as readline's unix-line-discard.
            0x15 => {
                for _ in 0..self.line.chars().count() {
                    let _ = out.write_all(b"\x08 \x08");
                }
                self.line.clear();
            }
            0x7f | 0x08 => {
                if self.line.pop().is_some() {
                    let _ = out.write_all(b"\x08 \x08");
                }
            }
            b if b < 0x20 && b != b'\t' => {}
            b if b < 0x80 => {
                self.line.push(b as char);
                let _ = out.write_all(&[b]);
            }
            b => self.pending.push(b),
        }
        Action::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(r: &mut Repl, bytes: &[u8]) -> (Vec<String>, String) {
        let mut out = Vec::new();
        let mut submitted = Vec::new();
        for &b in bytes {
            if let Action::Submit(l) = r.feed(b, &mut out) {
                submitted.push(l);
            }
        }
        (submitted, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn paste_keeps_newlines_and_enter_submits() {
        let mut r = Repl { line: String::new(), pending: Vec::new(), in_paste: false, draft: false };
        let (s, echo) = feed_all(&mut r, "\x1b[200~one\ntwo ü\x1b[201~\r".as_bytes());
        assert_eq!(s, ["one\ntwo ü"]);
        assert!(echo.contains("two ü"));
    }

    #[test]
    fn ctrl_u_clears_the_whole_input_even_a_multi_line_paste() {
        let mut r = Repl::new(false);
        let (s, _) = feed_all(&mut r, b"\x1b[200~one\ntwo\x1b[201~\x15three\r");
        assert_eq!(s, ["three"]);
    }

    #[test]
    fn draft_mode_ignores_enter_and_backspace_edits() {
        let mut r = Repl { line: String::new(), pending: Vec::new(), in_paste: false, draft: true };
        let (s, _) = feed_all(&mut r, b"abc\x7f\r\r");
        assert!(s.is_empty());
        assert_eq!(r.line, "ab");
    }
}
