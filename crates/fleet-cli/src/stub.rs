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
//! - typing `/exit` (or Ctrl-D on an empty line): the program exits.
//!
//! With `--log FILE` it also appends every accepted line to FILE, as
//! `<name>\t<line>` (line breaks shown as ` ⏎ `), one `write` per line on a file
//! opened for appending, so agents can share one file: the soak benchmark
//! counts deliveries there instead of in pane scrollback.

use crate::exit::{self, CliResult};
use anyhow::anyhow;
use fleet_core::heartbeat::{BeatStatus, HeartbeatEnv, heartbeat_path};
use rustix::termios::{self, LocalModes, OptionalActions, SpecialCodeIndex};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
    let mut log = match &args.log {
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
    let mut repl = Repl { line: String::new(), pending: Vec::new(), in_paste: false, draft: args.draft };
    let mut buf = [0u8; 4096];
    let mut stdin = std::io::stdin().lock();
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if args.deaf {
            continue;
        }
        for &b in &buf[..n] {
            match repl.feed(b, &mut out) {
                Action::None => {}
                Action::Submit(line) => {
                    let shown = line.replace('\n', " ⏎ ");
                    let _ = write!(out, "\r\naccepted: {shown}\r\n");
                    if let Some(f) = &mut log {
                        // One write: appends of concurrent agents do not interleave.
                        let _ = f.write_all(format!("{name}\t{shown}\n").as_bytes());
                    }
                    // A command may come after a `[src -> dst] ` preamble.
                    let command = line.rsplit_once("] ").map_or(line.as_str(), |(_, c)| c);
                    match command.trim() {
                        "/exit" => return Ok(()),
                        "/stop-heartbeat" => beating.store(false, Ordering::Relaxed),
                        _ => {}
                    }
                    let _ = write!(out, "> ");
                }
                Action::Eof => return Ok(()),
            }
        }
        let _ = out.flush();
    }
    Ok(())
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
    fn draft_mode_ignores_enter_and_backspace_edits() {
        let mut r = Repl { line: String::new(), pending: Vec::new(), in_paste: false, draft: true };
        let (s, _) = feed_all(&mut r, b"abc\x7f\r\r");
        assert!(s.is_empty());
        assert_eq!(r.line, "ab");
    }
}
