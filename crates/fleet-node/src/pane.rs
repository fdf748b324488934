//! Pane feeds: what an agent's pane shows and writes, read once per pane
//! whatever the number of viewers.
//!
//! A feed is one tmux control-mode client attached to the agent's session
//! with `ignore-size` (it never changes the agent's window size) and
//! `pause-after` (tmux holds a pane's output back from a client that fell
//! behind instead of buffering it without end). Its `%output` notifications
//! go into one bounded broadcast ring shared by every viewer of the pane;
//! commands (screen captures, keystrokes, resizes) go through the same
//! client, so a capture's reply sits at an exact place in the output: a
//! viewer shows the capture, then only the output numbered after it.
//!
//! The feed ends (its tmux client detached and killed) when the last viewer
//! drops it, or when tmux detaches it (the session ended).

use fleet_core::roster::TmuxSocket;
use fleet_tmux::control::quote;
use fleet_tmux::notify::{Note, Reader};
use fleet_tmux::tmux::Tmux;
use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::{broadcast, oneshot};

/// Output chunks kept per pane for its viewers. A viewer further behind
/// than this is told it lagged and gets a fresh screen: memory per pane is
/// bounded by this times the size of one chunk (tmux writes a pane's output
/// in reads of at most a few KiB), whatever the viewers do.
pub const BACKLOG: usize = 256;
/// How long a command on the feed may take.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Seconds of output tmux may hold for the feed before pausing the pane
/// towards it (`%pause`); the feed then resumes it and viewers redraw.
const PAUSE_AFTER_SECS: u32 = 3;
/// Keystroke bytes per `send-keys` command.
const KEYS_PER_COMMAND: usize = 256;

/// What viewers of a pane receive, numbered in the order tmux wrote it.
#[derive(Clone, Debug)]
pub enum Chunk {
    /// Bytes the pane's program wrote.
    Output { seq: u64, data: Arc<Vec<u8>> },
    /// Output a screen does not follow from: redraw (`resized`, `paused`).
    Gap { seq: u64, reason: &'static str },
    /// The feed ended: why.
    Ended(String),
}

/// What a screen capture asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capture {
    /// The visible screen, with colours and attributes, row by row.
    Screen,
    /// The last N lines of screen and scrollback as text (wrapped lines
    /// joined); 0: the visible screen's lines.
    Lines(u32),
}

/// A capture and where it sits in the output.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Screen rows joined by CR LF, or text lines joined by LF.
    pub content: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub cursor_x: u32,
    pub cursor_y: u32,
    /// Output numbered up to this is in the capture; what follows is not.
    pub seq: u64,
}

type Replies = Vec<Vec<Vec<u8>>>;
type Reply = Result<(Replies, u64), String>;

/// A command in flight: how many reply blocks it takes (a `;` list answers
/// with one per command, or stops at the first error), those read so far,
/// and who waits.
struct Waiter {
    want: usize,
    got: Replies,
    tx: oneshot::Sender<Reply>,
}

struct Shared {
    stdin: tokio::sync::Mutex<ChildStdin>,
    pending: Mutex<VecDeque<Waiter>>,
    pane: OnceLock<String>,
    ended: AtomicBool,
    out: broadcast::Sender<Chunk>,
}

pub struct Feed {
    pub session: String,
    socket: String,
    shared: Arc<Shared>,
    reader: tokio::task::JoinHandle<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("agent {session} has no session on tmux {socket}")]
    NoSession { session: String, socket: String },
    #[error("tmux {socket}: {why}")]
    Tmux { socket: String, why: String },
}

impl Feed {
    /// Attach a control client to `session` on `tmux`'s server.
    async fn open(tmux: &Tmux, session: &str) -> Result<Feed, FeedError> {
        let socket = tmux.socket.to_string();
        let fail = |why: String| FeedError::Tmux { socket: socket.clone(), why };
        let mut cmd = Command::from(tmux.command());
        let flags = format!("ignore-size,pause-after={PAUSE_AFTER_SECS}");
        cmd.args(["-C", "attach-session", "-f", &flags, "-t"]).arg(format!("={session}"));
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| fail(format!("cannot run {}: {e}", tmux.bin.display())))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let shared = Arc::new(Shared {
            stdin: tokio::sync::Mutex::new(stdin),
            pending: Mutex::new(VecDeque::new()),
            pane: OnceLock::new(),
            ended: AtomicBool::new(false),
            out: broadcast::channel(BACKLOG).0,
        });
        // The attach is answered with a block of its own first.
        let (tx, attached) = oneshot::channel();
        shared.pending.lock().expect("pending").push_back(Waiter { want: 1, got: Vec::new(), tx });
        let reader = tokio::spawn(read(child, stdout, shared.clone()));
        let feed = Feed { session: session.to_string(), socket: socket.clone(), shared, reader };
        match tokio::time::timeout(REPLY_TIMEOUT, attached).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(why))) if why.contains("can't find session") || why.contains("no sessions") => {
                return Err(FeedError::NoSession { session: session.into(), socket });
            }
            Ok(Ok(Err(why))) => return Err(fail(why)),
            Ok(Err(_)) => return Err(FeedError::NoSession { session: session.into(), socket }),
            Err(_) => return Err(fail("the control client did not answer".into())),
        }
        let target = format!("={session}:");
        let (lines, _) = feed.request(&[&["display-message", "-p", "-t", &target, "#{pane_id}"]]).await?;
        let pane = lines.first().and_then(|l| l.first()).map(|l| String::from_utf8_lossy(l).into_owned());
        let pane = pane.filter(|p| p.starts_with('%')).ok_or_else(|| fail("no pane id for the session".into()))?;
        let _ = feed.shared.pane.set(pane);
        Ok(feed)
    }

    /// The pane (`%N`) this feed follows.
    pub fn pane(&self) -> &str {
        self.shared.pane.get().map(String::as_str).unwrap_or_default()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Chunk> {
        self.shared.out.subscribe()
    }

    pub fn ended(&self) -> bool {
        self.shared.ended.load(Ordering::Acquire)
    }

    /// Run a `;` list of commands (words quoted here) and wait for their
    /// replies; the output number the reply sits at.
    async fn request(&self, commands: &[&[&str]]) -> Result<(Replies, u64), FeedError> {
        let fail = |why: String| FeedError::Tmux { socket: self.socket.clone(), why };
        let mut line = String::new();
        for (i, words) in commands.iter().enumerate() {
            if i > 0 {
                line.push_str(" ; ");
            }
            let quoted: Option<Vec<String>> = words.iter().map(|w| quote(w)).collect();
            line.push_str(&quoted.ok_or_else(|| fail("an argument holds a quote or newline".into()))?.join(" "));
        }
        line.push('\n');
        let rx = self.shared.write(line, commands.len()).await.map_err(fail)?;
        match tokio::time::timeout(REPLY_TIMEOUT, rx).await {
            Ok(Ok(reply)) => reply.map_err(fail),
            Ok(Err(_)) => Err(fail("the pane's control client ended".into())),
            Err(_) => Err(fail(format!("no answer within {} s", REPLY_TIMEOUT.as_secs()))),
        }
    }

    /// The pane's screen (or last lines) and where it sits in the output.
    pub async fn snapshot(&self, what: Capture) -> Result<Snapshot, FeedError> {
        let pane = self.pane().to_string();
        let start;
        let mut capture = vec!["capture-pane", "-p", "-t", &pane];
        match what {
            Capture::Screen => capture.push("-e"),
            Capture::Lines(n) => {
                capture.push("-J");
                if n > 0 {
                    start = format!("-{n}");
                    capture.extend(["-S", &start]);
                }
            }
        }
        let size = ["display-message", "-p", "-t", &pane, "#{pane_width} #{pane_height} #{cursor_x} #{cursor_y}"];
        let (replies, seq) = self.request(&[&capture, &size]).await?;
        let numbers: Vec<u32> = replies
            .get(1)
            .and_then(|r| r.first())
            .map(|l| String::from_utf8_lossy(l).split(' ').filter_map(|n| n.parse().ok()).collect())
            .unwrap_or_default();
        let [width, height, cursor_x, cursor_y] = numbers[..] else {
            return Err(FeedError::Tmux { socket: self.socket.clone(), why: "no pane size after the capture".into() });
        };
        let rows = replies.into_iter().next().unwrap_or_default();
        let content = match what {
            Capture::Screen => rows.join(&b"\r\n"[..]),
            Capture::Lines(n) => {
                let text: Vec<String> = rows.iter().map(|r| String::from_utf8_lossy(r).into_owned()).collect();
                let n = if n == 0 { height } else { n };
                fleet_tmux::tail::last_lines(&text, n).join("\n").into_bytes()
            }
        };
        Ok(Snapshot { content, width, height, cursor_x, cursor_y, seq })
    }

    /// Type `bytes` into the pane, as a terminal would send them.
    pub async fn keys(&self, bytes: &[u8]) -> Result<(), FeedError> {
        let pane = self.pane().to_string();
        for part in bytes.chunks(KEYS_PER_COMMAND) {
            let hex: Vec<String> = part.iter().map(|b| format!("{b:02x}")).collect();
            let mut words = vec!["send-keys", "-t", &pane, "-H"];
            words.extend(hex.iter().map(String::as_str));
            self.request(&[&words]).await?;
        }
        Ok(())
    }

    /// Resize the agent's window (tmux then keeps that size: `window-size`
    /// becomes `manual` for the window).
    pub async fn resize(&self, width: u32, height: u32) -> Result<(), FeedError> {
        let (pane, w, h) =
            (self.pane().to_string(), width.clamp(2, 1000).to_string(), height.clamp(2, 1000).to_string());
        self.request(&[&["resize-window", "-t", &pane, "-x", &w, "-y", &h]]).await.map(|_| ())
    }

    /// Put the window back to `width` x `height` and its size back under
    /// tmux's own rule (the `window-size` option unset).
    pub async fn restore_size(&self, width: u32, height: u32) -> Result<(), FeedError> {
        self.resize(width, height).await?;
        let pane = self.pane().to_string();
        self.request(&[&["set-option", "-w", "-u", "-t", &pane, "window-size"]]).await.map(|_| ())
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        // The reader owns the tmux client (killed when dropped): the
        // attachment ends with the feed.
        self.reader.abort();
    }
}

impl Shared {
    /// Write one command line that answers with `want` blocks; its reply.
    /// The waiter is queued under the same lock as the write, so waiters
    /// are in the order tmux answers.
    async fn write(&self, line: String, want: usize) -> Result<oneshot::Receiver<Reply>, String> {
        let (tx, rx) = oneshot::channel();
        let mut stdin = self.stdin.lock().await;
        if self.ended.load(Ordering::Acquire) {
            return Err("the pane's control client ended".into());
        }
        self.pending.lock().expect("pending").push_back(Waiter { want, got: Vec::new(), tx });
        stdin.write_all(line.as_bytes()).await.map_err(|e| e.to_string())?;
        stdin.flush().await.map_err(|e| e.to_string())?;
        Ok(rx)
    }
}

/// Read the client's output until it ends: replies to their waiters, the
/// pane's output and gaps to the viewers.
async fn read(mut child: tokio::process::Child, stdout: tokio::process::ChildStdout, shared: Arc<Shared>) {
    let mut lines = BufReader::new(stdout);
    let mut reader = Reader::default();
    let mut line = Vec::new();
    let mut seq = 0u64;
    let why = loop {
        line.clear();
        match lines.read_until(b'\n', &mut line).await {
            Ok(0) => break "the pane's tmux client exited".to_string(),
            Err(e) => break format!("reading the pane's tmux client: {e}"),
            Ok(_) => {}
        }
        let mine = |pane: &str| shared.pane.get().is_some_and(|p| p == pane);
        match reader.feed(&line) {
            Some(Note::Reply(r)) => answer(&shared, r, seq),
            Some(Note::Output { pane, data }) if mine(&pane) => {
                seq += 1;
                let _ = shared.out.send(Chunk::Output { seq, data: Arc::new(data) });
            }
            Some(Note::Pause { pane }) if mine(&pane) => {
                seq += 1;
                let _ = shared.out.send(Chunk::Gap { seq, reason: "paused" });
                tracing::debug!(pane, "tmux paused the pane's output to its feed; resuming");
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = shared.write(format!("refresh-client -A '{pane}:continue'\n"), 1).await;
                });
            }
            Some(Note::Layout) => {
                seq += 1;
                let _ = shared.out.send(Chunk::Gap { seq, reason: "resized" });
            }
            Some(Note::Exit(why)) => break format!("the session ended or the client was detached ({why})"),
            _ => {}
        }
    };
    shared.ended.store(true, Ordering::Release);
    for w in shared.pending.lock().expect("pending").drain(..) {
        let _ = w.tx.send(Err(why.clone()));
    }
    let _ = shared.out.send(Chunk::Ended(why));
    let _ = child.kill().await;
}

/// A reply block to the oldest waiter: complete once it has all its blocks,
/// or at the first error (tmux runs no more of that line's commands).
fn answer(shared: &Shared, reply: Result<Vec<Vec<u8>>, String>, seq: u64) {
    let mut pending = shared.pending.lock().expect("pending");
    let Some(w) = pending.front_mut() else {
        tracing::debug!("a tmux reply with no command waiting");
        return;
    };
    match reply {
        Ok(lines) => {
            w.got.push(lines);
            if w.got.len() >= w.want {
                let w = pending.pop_front().expect("front");
                let _ = w.tx.send(Ok((w.got, seq)));
            }
        }
        Err(why) => {
            let w = pending.pop_front().expect("front");
            let _ = w.tx.send(Err(why));
        }
    }
}

/// The feeds of this node, one per (tmux server, session) while viewed.
#[derive(Default)]
pub struct Panes {
    feeds: tokio::sync::Mutex<HashMap<(String, String), Weak<Feed>>>,
}

impl Panes {
    /// The feed of `session` on `socket`: the one open, or a new one.
    pub async fn feed(&self, socket: &TmuxSocket, session: &str) -> Result<Arc<Feed>, FeedError> {
        let key = (socket.to_string(), session.to_string());
        let mut feeds = self.feeds.lock().await;
        feeds.retain(|_, f| f.strong_count() > 0);
        if let Some(f) = feeds.get(&key).and_then(Weak::upgrade)
            && !f.ended()
        {
            return Ok(f);
        }
        let feed = Arc::new(Feed::open(&Tmux::new(socket.clone()), session).await?);
        feeds.insert(key, Arc::downgrade(&feed));
        Ok(feed)
    }
}
