//! Durable delivery (`fleet send --queue`, `fleet queue`): messages kept on
//! disk by the agent's node until the agent can take them.
//!
//! - The store: one JSON file per message in `$MOSAIC_HOME/fleet/queue/`
//!   (0700; files 0600), each written whole to a temp file, fsynced, renamed
//!   over the old one, and the directory fsynced: a message is on disk before
//!   its `queued` receipt goes out, and a crash leaves the old or the new
//!   file, never a torn one. Idempotency keys live in the files, so a retried
//!   queue call is answered from them even after a restart.
//! - [`release`]: when the head of an agent's queue may be typed (the pane is
//!   alive, the agent is neither working nor waiting, and the view is newer
//!   than the last message typed; an unknown activity does not hold it back).
//! - [`begin`]: how a delivery starts given what the file says was done
//!   before (the phases, below) and the pane found now.
//! - The worker: on every change of the live view, every enqueue and every
//!   second, it expires, prunes, and starts the deliveries that [`release`]
//!   allows (one at a time per agent, in order; agents in parallel).
//!
//! Phases, each on disk before the next step (docs/protocol.md "Durable
//! delivery" states the guarantee): `queued` -> `typing` (with the pane's id
//! and pid) -> paste -> `pasted` -> Enter -> `delivered`. A node that dies in
//! `typing` may have pasted but never pressed Enter: the next attempt clears
//! that pane's input line (`C-u`) and types again. A node that dies in
//! `pasted` may or may not have pressed Enter: in the same pane the next
//! attempt presses only Enter (an empty Enter if it had been pressed), so the
//! text is submitted once; in another pane (the agent restarted) it types it
//! again.

use crate::live::now_ms;
use crate::service::{Caller, Node, forward, socket_in};
use fleet_core::activity::State as Activity;
use fleet_core::record::{AgentRecord, HostState, HostStatus, PaneState};
use fleet_proto::v1;
use fleet_tmux::send::{Begin, Phase, SendError, SendOptions};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Status};

/// How long a queued message waits when the caller does not say.
pub const DEFAULT_EXPIRE: Duration = Duration::from_secs(3600);
/// The longest wait a caller may ask for.
pub const MAX_EXPIRE: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a finished message (its final receipt) is kept for `fleet queue`
/// and for idempotency keys.
pub const KEEP_FINISHED: Duration = Duration::from_secs(24 * 3600);
/// Test-only fault injection: `typing` kills the node (SIGKILL to itself) after
/// the paste and before `pasted` is recorded; `pasted` after it is recorded and before Enter.
pub const CRASH_ENV: &str = "FLEET_QUEUE_CRASH_AT";

/// Where a message is. Written in the file as a snake_case word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting; nothing typed.
    Queued,
    /// Typing began: the paste may be on the input line; Enter was not pressed.
    Typing,
    /// Pasted: Enter may have been pressed.
    Pasted,
    Delivered,
    Cancelled,
    Expired,
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Typing => "typing",
            State::Pasted => "pasted",
            State::Delivered => "delivered",
            State::Cancelled => "cancelled",
            State::Expired => "expired",
            State::Failed => "failed",
        }
    }

    pub fn finished(self) -> bool {
        matches!(self, State::Delivered | State::Cancelled | State::Expired | State::Failed)
    }
}

/// The pane typing began in.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PaneMark {
    pub id: String,
    pub pid: Option<u32>,
}

/// One message, as its file holds it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub id: String,
    /// Order among one agent's messages.
    pub seq: u64,
    pub agent: String,
    pub unmanaged: bool,
    /// The text to type, preamble included.
    pub text: String,
    pub preview: String,
    /// `host:label`.
    pub source: String,
    pub created_unix_ms: i64,
    pub expires_unix_ms: i64,
    #[serde(default)]
    pub finished_unix_ms: i64,
    /// Idempotency: the caller and target, and the caller's key.
    pub scope: String,
    pub key: String,
    /// Who queued it, for the audit log of its delivery.
    pub principal: String,
    pub state: State,
    #[serde(default)]
    pub pane: Option<PaneMark>,
    #[serde(default)]
    pub attempts: u32,
    /// Why it waits, or the final receipt's detail.
    #[serde(default)]
    pub detail: String,
}

/// What to do with the head of an agent's queue now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Release {
    Deliver,
    /// Not now; why (shown by `fleet queue`).
    Hold(String),
    /// Its time is up: nothing of it was typed.
    Expire,
}

/// The release decision for `e`, the head of its agent's queue: `row` is the
/// agent in the live view (`None`: no session), `view_as_of_ms` when that
/// view was refreshed, `last_typed_ms` when this node last typed into the
/// agent (0: not since it started).
pub fn release(
    e: &Entry,
    row: Option<&AgentRecord>,
    view_as_of_ms: Option<i64>,
    last_typed_ms: i64,
    now_ms: i64,
) -> Release {
    // Once typing began, the message is finished in its pane (see `begin`), not expired.
    if e.state == State::Queued && now_ms >= e.expires_unix_ms {
        return Release::Expire;
    }
    let not_running = || Release::Hold(format!("{} is not running (no session)", e.agent));
    let Some(row) = row else { return not_running() };
    match row.pane {
        PaneState::Alive => {}
        PaneState::Missing => return not_running(),
        PaneState::Dead => return Release::Hold(format!("the pane of {} is dead (its program exited)", e.agent)),
    }
    let a = &row.activity;
    match a.state {
        Activity::Working | Activity::Waiting | Activity::Exited => {
            return Release::Hold(format!("{} is {} ({})", e.agent, a.state, a.detail));
        }
        // Idle, or unknown (no rules or hooks say): an unknown state does not hold it back.
        Activity::Idle | Activity::Unknown => {}
    }
    if !crate::idle::fresh(a, view_as_of_ms, last_typed_ms) {
        return Release::Hold(format!("{} is not yet seen since the last message was typed", e.agent));
    }
    Release::Deliver
}

/// How a delivery of a message in `state` begins in the pane found now
/// (`pane_id`, `pane_pid`), given the pane typing began in (`mark`).
pub fn begin(state: State, mark: Option<&PaneMark>, pane_id: &str, pane_pid: Option<u32>) -> Begin {
    let same = mark.is_some_and(|m| m.id == pane_id && m.pid == pane_pid);
    match state {
        State::Typing if same => Begin::ClearThenType,
        State::Pasted if same => Begin::Enter,
        // Nothing typed yet, or typed into a pane that is gone (with its input line).
        _ => Begin::Type,
    }
}

/// May a message in `state` be cancelled or expired? `pane_there`: the pane
/// typing began in is still there. Once it is typed into a pane that is still
/// there, it is finished (submitted, or cleared and typed again) instead, so
/// no text is left on an input line for the next message to be glued to.
pub fn may_drop(state: State, pane_there: bool) -> bool {
    match state {
        State::Queued => true,
        State::Typing | State::Pasted => !pane_there,
        _ => false,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A new message for [`Store::enqueue`].
pub struct NewMessage {
    pub agent: String,
    pub unmanaged: bool,
    pub text: String,
    pub body: String,
    pub source: String,
    pub expire: Duration,
    pub scope: String,
    pub key: String,
    pub principal: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no queued message {0}")]
    NotFound(String),
    #[error("message {id} is {state} already")]
    Finished { id: String, state: &'static str },
    #[error(
        "message {id} is being typed into {agent}'s pane (state {state}): it will be finished there, not cancelled"
    )]
    Typing { id: String, agent: String, state: &'static str },
    #[error("cannot record the cancel: {0}")]
    Io(#[from] std::io::Error),
}

/// The messages on disk, and in memory.
pub struct Store {
    dir: PathBuf,
    entries: Mutex<BTreeMap<String, Entry>>,
    /// Agents with a delivery running.
    busy: Mutex<HashSet<String>>,
    /// When this node last typed into each agent (Unix ms).
    typed: Mutex<HashMap<String, i64>>,
    /// Why each agent's waiting messages wait (memory only).
    held: Mutex<HashMap<String, String>>,
    /// Something changed: the worker looks again.
    pub wake: Notify,
    crash_at: Option<String>,
}

impl Store {
    /// Open (create) the store in `dir` and read what is there. A file that
    /// cannot be read is renamed `*.bad` and reported, never a reason not to start.
    pub fn open(dir: &Path) -> std::io::Result<Store> {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let mut entries = BTreeMap::new();
        for f in std::fs::read_dir(dir)? {
            let path = f?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            if name.starts_with('.') && name.ends_with(".tmp") {
                // A write that did not reach its rename: the old file (if any) stands.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(".json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Entry>(&b).map_err(|e| format!("not a queued message: {e}")))
            {
                Ok(e) => {
                    entries.insert(e.id.clone(), e);
                }
                Err(why) => {
                    tracing::error!(file = %path.display(), error = %why, "queue: unreadable message file, set aside as .bad");
                    let _ = std::fs::rename(&path, path.with_extension("bad"));
                }
            }
        }
        let waiting = entries.values().filter(|e| !e.state.finished()).count();
        if waiting > 0 {
            tracing::info!(dir = %dir.display(), waiting, "queue: messages waiting from before");
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            entries: Mutex::new(entries),
            busy: Default::default(),
            typed: Default::default(),
            held: Default::default(),
            wake: Notify::new(),
            crash_at: std::env::var(CRASH_ENV).ok().filter(|s| !s.is_empty()),
        })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Write `e` whole: temp file (0600), fsync, rename, fsync the directory.
    fn write(&self, e: &Entry) -> std::io::Result<()> {
        let tmp = self.dir.join(format!(".{}.tmp", e.id));
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(&serde_json::to_vec(e).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, self.path(&e.id))?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    fn remove(&self, id: &str) -> std::io::Result<()> {
        std::fs::remove_file(self.path(id))?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    /// Change one message on disk, then in memory.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut Entry)) -> std::io::Result<Entry> {
        self.try_update(id, |e| {
            f(e);
            Ok(())
        })
    }

    /// [`Store::update`], unless `f` refuses (then nothing is written).
    pub fn try_update(&self, id: &str, f: impl FnOnce(&mut Entry) -> std::io::Result<()>) -> std::io::Result<Entry> {
        let mut entries = lock(&self.entries);
        let mut e = entries.get(id).cloned().ok_or_else(|| std::io::Error::other(format!("no message {id}")))?;
        f(&mut e)?;
        self.write(&e)?;
        entries.insert(id.to_string(), e.clone());
        Ok(e)
    }

    /// Keep `m` on disk; or, if its scope and key were queued before, that
    /// message (`true`: a duplicate).
    pub fn enqueue(&self, m: NewMessage) -> std::io::Result<(Entry, bool)> {
        let mut entries = lock(&self.entries);
        if !m.key.is_empty()
            && let Some(e) = entries.values().find(|e| e.scope == m.scope && e.key == m.key)
        {
            return Ok((e.clone(), true));
        }
        let seq = entries.values().map(|e| e.seq).max().unwrap_or(0) + 1;
        let now = now_ms();
        let preview: String = m.body.chars().take(60).map(|c| if c == '\n' { '⏎' } else { c }).collect();
        let e = Entry {
            id: new_id(),
            seq,
            agent: m.agent,
            unmanaged: m.unmanaged,
            text: m.text,
            preview,
            source: m.source,
            created_unix_ms: now,
            expires_unix_ms: now.saturating_add(m.expire.as_millis() as i64),
            finished_unix_ms: 0,
            scope: m.scope,
            key: m.key,
            principal: m.principal,
            state: State::Queued,
            pane: None,
            attempts: 0,
            detail: String::new(),
        };
        self.write(&e)?;
        entries.insert(e.id.clone(), e.clone());
        Ok((e, false))
    }

    /// Every message, waiting ones with why they wait.
    pub fn list(&self) -> Vec<Entry> {
        let held = lock(&self.held).clone();
        let mut out: Vec<Entry> = lock(&self.entries).values().cloned().collect();
        for e in &mut out {
            if !e.state.finished()
                && let Some(why) = held.get(&e.agent)
            {
                e.detail = why.clone();
            }
        }
        out.sort_by(|a, b| (&a.agent, a.seq).cmp(&(&b.agent, b.seq)));
        out
    }

    /// Cancel message `id`; `pane_there` says whether a pane typing began in is still there.
    pub fn cancel(&self, id: &str, pane_there: impl Fn(&Entry) -> bool) -> Result<Entry, CancelError> {
        let e = lock(&self.entries).get(id).cloned().ok_or_else(|| CancelError::NotFound(id.to_string()))?;
        if e.state.finished() {
            return Err(CancelError::Finished { id: id.into(), state: e.state.as_str() });
        }
        // A delivery running from `queued` on checks the state before it pastes (see
        // `deliver_queued`), so cancelling it now is safe; one further on is not.
        let running = lock(&self.busy).contains(&e.agent) && e.state != State::Queued;
        if running || !may_drop(e.state, pane_there(&e)) {
            return Err(CancelError::Typing { id: id.into(), agent: e.agent.clone(), state: e.state.as_str() });
        }
        Ok(self.update(id, |e| {
            e.state = State::Cancelled;
            e.finished_unix_ms = now_ms();
            e.detail = "cancelled".into();
        })?)
    }

    /// The unfinished messages whose typing began: id, agent and the pane it began in.
    fn marked(&self) -> Vec<(String, String, PaneMark)> {
        lock(&self.entries)
            .values()
            .filter(|e| !e.state.finished())
            .filter_map(|e| e.pane.clone().map(|m| (e.id.clone(), e.agent.clone(), m)))
            .collect()
    }

    /// The first unfinished message of each agent without a delivery running.
    fn heads(&self) -> Vec<Entry> {
        let busy = lock(&self.busy).clone();
        let mut heads: BTreeMap<&str, &Entry> = BTreeMap::new();
        let entries = lock(&self.entries);
        for e in entries.values().filter(|e| !e.state.finished() && !busy.contains(&e.agent)) {
            let head = heads.entry(&e.agent).or_insert(e);
            if e.seq < head.seq {
                *head = e;
            }
        }
        heads.into_values().cloned().collect()
    }

    /// Expire what may be expired; forget finished messages kept long enough.
    fn expire_and_prune(&self, now: i64, pane_there: impl Fn(&Entry) -> bool) -> Vec<Entry> {
        let candidates: Vec<Entry> = lock(&self.entries)
            .values()
            .filter(|e| !e.state.finished() && now >= e.expires_unix_ms && !lock(&self.busy).contains(&e.agent))
            .cloned()
            .collect();
        let mut expired = Vec::new();
        for e in candidates {
            if !may_drop(e.state, pane_there(&e)) {
                continue;
            }
            match self.update(&e.id, |e| {
                e.state = State::Expired;
                e.finished_unix_ms = now;
                e.detail =
                    format!("expired: not delivered within its {} s", (e.expires_unix_ms - e.created_unix_ms) / 1000);
            }) {
                Ok(e) => expired.push(e),
                Err(err) => tracing::error!(id = %e.id, error = %err, "queue: cannot record an expiry"),
            }
        }
        let old: Vec<String> = lock(&self.entries)
            .values()
            .filter(|e| e.state.finished() && now - e.finished_unix_ms > KEEP_FINISHED.as_millis() as i64)
            .map(|e| e.id.clone())
            .collect();
        for id in old {
            match self.remove(&id) {
                Ok(()) => {
                    lock(&self.entries).remove(&id);
                }
                Err(err) => tracing::warn!(id = %id, error = %err, "queue: cannot remove a finished message"),
            }
        }
        expired
    }

    /// Test hook: abort the process at `at` if [`CRASH_ENV`] asks for it.
    fn crash_point(&self, at: &str) {
        if self.crash_at.as_deref() == Some(at) {
            tracing::error!(at, "queue: crashing on purpose ({CRASH_ENV}): SIGKILL to itself");
            // As `kill -9`: no destructor, no flush, no core.
            let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
            std::process::abort();
        }
    }
}

/// 12 hex digits from the system's random source.
fn new_id() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 6];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Node {
    /// The wire form of `e`.
    pub(crate) fn queued_message(&self, e: &Entry) -> v1::QueuedMessage {
        v1::QueuedMessage {
            tenant_id: self.info.tenant.to_string(),
            host: self.info.host.to_string(),
            id: e.id.clone(),
            agent: e.agent.clone(),
            state: e.state.as_str().into(),
            seq: e.seq,
            created_unix_ms: e.created_unix_ms,
            expires_unix_ms: e.expires_unix_ms,
            finished_unix_ms: e.finished_unix_ms,
            source: e.source.clone(),
            preview: e.preview.clone(),
            bytes: e.text.len() as u32,
            attempts: e.attempts,
            detail: e.detail.clone(),
        }
    }

    /// The unfinished messages whose typing began into a pane that is still
    /// there: the live view's row of their agent is alive with that pane's pid.
    /// (Only these; the texts are not copied.)
    fn panes_there(&self) -> HashSet<String> {
        let view = self.live.current();
        self.queue
            .marked()
            .into_iter()
            .filter(|(_, agent, mark)| {
                view.agents.iter().any(|r| &r.name == agent && r.pane == PaneState::Alive && r.pane_pid == mark.pid)
            })
            .map(|(id, _, _)| id)
            .collect()
    }

    /// `QueueMessage` for an agent of this host: checked like a send, then kept on disk.
    pub(crate) async fn queue_local(&self, caller: &Caller, req: v1::QueueRequest) -> Result<v1::SendReceipt, Status> {
        let start = Instant::now();
        let send = req.send.ok_or_else(|| Status::invalid_argument("QueueRequest.send is missing"))?;
        if send.verify || send.when_idle {
            return Err(Status::invalid_argument(
                "a queued message cannot be sent with verify or when_idle: the node types it when the agent is ready (not working or waiting); drop --verify/--when-idle",
            ));
        }
        let expire = match req.expire_s {
            0 => DEFAULT_EXPIRE,
            s if u64::from(s) > MAX_EXPIRE.as_secs() => {
                return Err(Status::invalid_argument(format!(
                    "expire_s {s} is longer than the limit of {} s (7 days)",
                    MAX_EXPIRE.as_secs()
                )));
            }
            s => Duration::from_secs(s.into()),
        };
        let src_host = if send.source_host.is_empty() {
            caller.node_host.clone().unwrap_or_else(|| self.info.host.to_string())
        } else {
            send.source_host.clone()
        };
        let src = if send.source_label.is_empty() { "operator".to_string() } else { send.source_label.clone() };
        let from = fleet_core::message::Source { host: &src_host, label: &src };
        let text = fleet_core::message::compose(&from, self.info.host.as_str(), &send.agent, &send.text)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let receipt = |outcome: v1::DeliveryOutcome, detail: String, id: String, duplicate: bool| v1::SendReceipt {
            tenant_id: self.info.tenant.to_string(),
            host: self.info.host.to_string(),
            agent: send.agent.clone(),
            outcome: outcome as i32,
            detail,
            elapsed_ms: start.elapsed().as_millis() as u32,
            idempotency_key: send.idempotency_key.clone(),
            duplicate,
            waited_ms: 0,
            queue_id: id,
        };
        let view = self.live.current();
        let refusal = match view.roster.as_deref() {
            Some(r) => fleet_core::message::recipient_refusal(r, &self.info.host, &send.agent, send.unmanaged),
            None if send.unmanaged => None,
            None => Some(format!(
                "host {} has no valid roster, so it has no agents; pass --unmanaged to queue for a session anyway",
                self.info.host
            )),
        };
        if let Some(why) = refusal {
            return Ok(receipt(v1::DeliveryOutcome::NotFound, why, String::new(), false));
        }
        let body = fleet_core::message::prepare_text(&send.text).unwrap_or_default();
        let m = NewMessage {
            agent: send.agent.clone(),
            unmanaged: send.unmanaged,
            text,
            body,
            source: format!("{src_host}:{src}"),
            expire,
            scope: format!("{}\n{}@{}", caller.principal, send.agent, self.info.host),
            key: send.idempotency_key.clone(),
            principal: caller.principal.clone(),
        };
        let store = self.queue.clone();
        let (e, duplicate) = tokio::task::spawn_blocking(move || store.enqueue(m))
            .await
            .map_err(|e| Status::internal(format!("queue task failed: {e}")))?
            .map_err(|e| {
                Status::unavailable(format!(
                    "cannot keep the message on disk in {}: {e}; nothing was queued",
                    self.queue.dir.display()
                ))
            })?;
        self.queue.wake.notify_one();
        let detail = if duplicate {
            format!("queued before as {} (now {})", e.id, e.state.as_str())
        } else {
            format!(
                "queued as {}@{}; typed when {} is running and not working or waiting; expires in {}",
                e.id,
                self.info.host,
                e.agent,
                human(expire)
            )
        };
        Ok(receipt(v1::DeliveryOutcome::Queued, detail, e.id, duplicate))
    }

    pub(crate) async fn forward_queue(
        &self,
        caller: &Caller,
        mut req: v1::QueueRequest,
    ) -> Result<v1::SendReceipt, Status> {
        let host = req.send.as_ref().map(|s| s.host.clone()).unwrap_or_default();
        if let Some(s) = req.send.as_mut()
            && s.source_host.is_empty()
        {
            s.source_host = self.info.host.to_string();
        }
        let peer = self.peer_for(&host).await?;
        let queue = |c, r| async move { v1::queue_client::QueueClient::new(c).queue_message(r).await };
        forward(&peer, caller, req, Some(Duration::from_secs(10)), queue).await
    }

    /// `ListQueue`: this host's messages, and for MESH every peer's, under one deadline.
    pub(crate) async fn list_queue(&self, req: v1::ListQueueRequest) -> Result<v1::ListQueueResponse, Status> {
        let mesh = req.scope == v1::Scope::Mesh as i32;
        self.check_host_filter(&req.hosts, mesh)?;
        let want = |h: &str| req.hosts.is_empty() || req.hosts.iter().any(|x| x.eq_ignore_ascii_case(h));
        let mut messages = Vec::new();
        let mut hosts = Vec::new();
        if want(self.info.host.as_str()) {
            messages.extend(self.queue.list().iter().map(|e| self.queued_message(e)));
            hosts.push(HostStatus {
                tenant_id: self.info.tenant.to_string(),
                host: self.info.host.to_string(),
                state: HostState::Ok,
                latency_ms: 0,
                agent_count: 0,
                detail: None,
                roster_problem: None,
                as_of_unix_ms: None,
                stale: false,
                heard_unix_ms: None,
            });
        }
        if mesh {
            let deadline = if req.deadline_ms == 0 {
                self.info.fanout_deadline
            } else {
                Duration::from_millis(req.deadline_ms.into())
            };
            let peers: Vec<_> = self.peers.current().into_iter().filter(|p| want(&p.label())).collect();
            let calls = peers.iter().filter(|p| !p.is_down()).map(|p| {
                let peer = p.clone();
                async move {
                    let start = Instant::now();
                    let mut client = v1::queue_client::QueueClient::new(peer.channel());
                    let mut r = Request::new(v1::ListQueueRequest {
                        scope: v1::Scope::Local as i32,
                        hosts: vec![],
                        deadline_ms: 0,
                    });
                    r.set_timeout(deadline);
                    let res = tokio::time::timeout(deadline, client.list_queue(r)).await;
                    (peer, start.elapsed(), res)
                }
            });
            for (peer, elapsed, res) in futures_util::future::join_all(calls).await {
                let host = peer.label();
                let (state, detail) = match res {
                    Ok(Ok(r)) => {
                        // A peer speaks for its own host only.
                        messages.extend(r.into_inner().messages.into_iter().filter(|m| {
                            m.host.eq_ignore_ascii_case(&host) && m.tenant_id == self.info.tenant.as_str()
                        }));
                        (HostState::Ok, None)
                    }
                    Ok(Err(e)) if e.code() == tonic::Code::Unavailable => {
                        (HostState::Unreachable, Some(format!("{}: {}", peer.address, e.message())))
                    }
                    Ok(Err(e)) if e.code() == tonic::Code::Unimplemented => (
                        HostState::Error,
                        Some(format!("{}: its node has no durable queue (an older version)", peer.address)),
                    ),
                    Ok(Err(e)) => (HostState::Error, Some(format!("{}: {}", peer.address, e.message()))),
                    Err(_) => (
                        HostState::Timeout,
                        Some(format!("{}: no answer within {} ms", peer.address, deadline.as_millis())),
                    ),
                };
                hosts.push(HostStatus {
                    tenant_id: self.info.tenant.to_string(),
                    host,
                    state,
                    latency_ms: elapsed.as_millis() as u32,
                    agent_count: 0,
                    detail,
                    roster_problem: None,
                    as_of_unix_ms: None,
                    stale: false,
                    heard_unix_ms: None,
                });
            }
            for p in peers.iter().filter(|p| p.is_down()) {
                if !hosts.iter().any(|h| h.host == p.label()) {
                    hosts.push(HostStatus {
                        tenant_id: self.info.tenant.to_string(),
                        host: p.label(),
                        state: HostState::Unreachable,
                        latency_ms: 0,
                        agent_count: 0,
                        detail: Some(format!("{}: down (membership: no answer to probes)", p.address)),
                        roster_problem: None,
                        as_of_unix_ms: None,
                        stale: false,
                        heard_unix_ms: None,
                    });
                }
            }
        }
        Ok(v1::ListQueueResponse { messages, hosts: hosts.into_iter().map(Into::into).collect() })
    }

    /// `CancelQueued` here, or forwarded to the message's host.
    pub(crate) async fn cancel_queued(
        &self,
        caller: &Caller,
        req: v1::CancelQueuedRequest,
    ) -> Result<v1::CancelQueuedResponse, Status> {
        if !self.is_self(&req.host) {
            let peer = self.peer_for(&req.host).await?;
            let cancel = |c, r| async move { v1::queue_client::QueueClient::new(c).cancel_queued(r).await };
            return forward(&peer, caller, req, Some(Duration::from_secs(10)), cancel).await;
        }
        let pane_there = self.panes_there();
        let store = self.queue.clone();
        let id = req.id.clone();
        let res = tokio::task::spawn_blocking(move || store.cancel(&id, |e| pane_there.contains(&e.id)))
            .await
            .map_err(|e| Status::internal(format!("queue task failed: {e}")))?;
        match res {
            Ok(e) => {
                self.queue.wake.notify_one();
                Ok(v1::CancelQueuedResponse { message: Some(self.queued_message(&e)) })
            }
            Err(CancelError::NotFound(id)) => Err(Status::not_found(format!(
                "no queued message {id} on host {}: `fleet queue` lists them, with ID@HOST",
                self.info.host
            ))),
            Err(e @ (CancelError::Finished { .. } | CancelError::Typing { .. })) => {
                Err(Status::failed_precondition(e.to_string()))
            }
            Err(e @ CancelError::Io(_)) => Err(Status::unavailable(e.to_string())),
        }
    }

    /// The audit line of a message's end, under the principal that queued it.
    fn audit_queued(&self, e: &Entry) {
        let caller = Caller { principal: e.principal.clone(), peer: "queue".into(), node_host: None };
        let target = format!("{}@{}", e.agent, self.info.host);
        let detail = format!("queued message {}: {}", e.id, e.detail);
        self.audit(&caller, fleet_tls::Verb::Send, &target, e.state.as_str(), Some(&detail));
    }

    /// One look at the queue: expire, prune, start the deliveries that may start.
    async fn queue_pass(self: &Arc<Self>) {
        let view = self.live.current();
        let now = now_ms();
        let there = self.panes_there();
        let store = self.queue.clone();
        let expired = tokio::task::spawn_blocking(move || store.expire_and_prune(now, |e| there.contains(&e.id)))
            .await
            .unwrap_or_default();
        for e in &expired {
            self.audit_queued(e);
        }
        for head in self.queue.heads() {
            let row = view.agents.iter().find(|r| r.name == head.agent);
            let last = lock(&self.queue.typed).get(&head.agent).copied().unwrap_or(0);
            match release(&head, row, view.as_of_unix_ms, last, now) {
                Release::Deliver => {
                    lock(&self.queue.held).remove(&head.agent);
                    lock(&self.queue.busy).insert(head.agent.clone());
                    let node = self.clone();
                    tokio::spawn(async move { node.deliver_queued(head).await });
                }
                Release::Hold(why) => {
                    lock(&self.queue.held).insert(head.agent.clone(), why);
                }
                // Not expired by the pass above: its pane is there (it is finished there, not dropped).
                Release::Expire => {}
            }
        }
    }

    /// Type `e` into its agent's pane, recording each phase first.
    async fn deliver_queued(self: Arc<Self>, e: Entry) {
        let view = self.live.current();
        let roster = view.roster.clone();
        let socket = socket_in(roster.as_deref(), &e.agent);
        let holder = roster.as_deref().and_then(|r| r.holder_session.clone());
        let opts = SendOptions {
            enter_delay: Duration::from_millis(
                roster.as_deref().map_or(fleet_core::roster::DEFAULT_ENTER_DELAY_MS, |r| r.enter_delay_ms(&e.agent)),
            ),
            ..SendOptions::default()
        };
        let (store, delivery, scratch) = (self.queue.clone(), self.delivery.clone(), self.info.run_dir.clone());
        let entry = e.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let mut record_error: Option<std::io::Error> = None;
            let typed = std::cell::Cell::new(false);
            let (state, mark) = (entry.state, entry.pane.clone());
            let result = delivery.send_phased(
                &socket,
                holder.as_deref(),
                &entry.agent,
                &entry.text,
                &opts,
                &scratch,
                |pane| {
                    let b = begin(state, mark.as_ref(), &pane.id, pane.pid);
                    typed.set(b == Begin::Enter);
                    b
                },
                |phase| {
                    let step = match phase {
                        Phase::Pasting { pane } => {
                            typed.set(true);
                            let mark = PaneMark { id: pane.id.clone(), pid: pane.pid };
                            store.try_update(&entry.id, |e| {
                                // Cancelled (or expired) since the pass that started this: stop here.
                                if e.state.finished() {
                                    return Err(std::io::Error::other(format!(
                                        "it was {} meanwhile",
                                        e.state.as_str()
                                    )));
                                }
                                e.state = State::Typing;
                                e.pane = Some(mark);
                                e.attempts += 1;
                                Ok(())
                            })
                        }
                        Phase::Pasted => {
                            store.crash_point("typing");
                            let r = store.update(&entry.id, |e| e.state = State::Pasted);
                            store.crash_point("pasted");
                            r
                        }
                    };
                    step.map(|_| ()).map_err(|err| {
                        let msg = err.to_string();
                        record_error = Some(err);
                        SendError::Tmux(fleet_tmux::tmux::TmuxError::Failed {
                            args: "(the queue's record of the step)".into(),
                            socket: String::new(),
                            stderr: msg,
                        })
                    })
                },
            );
            let result = match result {
                Ok(d) => store
                    .update(&entry.id, |e| {
                        e.state = State::Delivered;
                        e.finished_unix_ms = now_ms();
                        e.detail = d.detail.clone();
                    })
                    .map_err(|err| format!("delivered, but the record of it failed: {err}")),
                Err(e) => Err(match record_error {
                    Some(io) => format!("cannot record the step on disk ({io}); stopped before the next one"),
                    None => e.to_string(),
                }),
            };
            (result, typed.get())
        })
        .await;
        let (result, typed) = match outcome {
            Ok(r) => r,
            Err(join) => (Err(format!("the delivery task failed: {join}")), true),
        };
        if typed {
            lock(&self.queue.typed).insert(e.agent.clone(), now_ms());
        }
        match result {
            Ok(done) => {
                tracing::info!(id = %done.id, agent = %done.agent, attempts = done.attempts, "queue: delivered");
                self.metrics.send("delivered");
                self.audit_queued(&done);
            }
            Err(why) => {
                tracing::warn!(id = %e.id, agent = %e.agent, error = %why, "queue: delivery attempt failed; will retry");
                lock(&self.queue.held).insert(e.agent.clone(), format!("the last attempt failed: {why}"));
            }
        }
        lock(&self.queue.busy).remove(&e.agent);
        self.live.poke();
        self.queue.wake.notify_one();
    }
}

/// The queue's worker: a pass on every change of the live view, every
/// enqueue or cancel, every delivery's end, and every second; until `cancel`.
pub async fn run(node: Arc<Node>, cancel: CancellationToken) {
    let mut view = node.live.view.clone();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = view.changed() => {}
            () = node.queue.wake.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        node.queue_pass().await;
    }
}

/// `3600 s` -> `1h`; `90 s` -> `90s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 86400 && s % 86400 == 0 => format!("{}d", s / 86400),
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `90s`, `10m`, `1h`, `2d` (or a bare number of seconds) as a duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration: give e.g. 90s, 10m, 1h or 2d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86400),
        _ => return Err(format!("{s:?} is not a duration: the unit is s, m, h or d (e.g. 90s, 10m, 1h, 2d)")),
    };
    if secs == 0 {
        return Err(format!("{s:?}: a queued message needs some time to wait; give e.g. 10m"));
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::activity::{Activity as Act, Source};
    use fleet_core::record::SystemdState;

    fn row(pane: PaneState, state: Activity, since: i64) -> AgentRecord {
        AgentRecord {
            tenant_id: "t".into(),
            host: "h".into(),
            name: "a".into(),
            class: None,
            runtime: None,
            managed: true,
            socket: String::new(),
            systemd: SystemdState::unavailable(),
            pane,
            pane_pid: Some(7),
            current_command: None,
            idle_seconds: None,
            in_copy_mode: false,
            heartbeat: fleet_core::heartbeat::assess(None, 0, 15),
            drift: false,
            boot_enable: false,
            activity: Act { state, source: Source::Screen, since_unix_ms: since, ..Act::unknown("the rule", since) },
        }
    }

    fn entry(state: State, expires: i64) -> Entry {
        Entry {
            id: "abc".into(),
            seq: 1,
            agent: "a".into(),
            unmanaged: false,
            text: "[h:x -> h:a] hi".into(),
            preview: "hi".into(),
            source: "h:x".into(),
            created_unix_ms: 0,
            expires_unix_ms: expires,
            finished_unix_ms: 0,
            scope: "s".into(),
            key: "k".into(),
            principal: "p".into(),
            state,
            pane: None,
            attempts: 0,
            detail: String::new(),
        }
    }

    const NOW: i64 = 10_000;

    #[test]
    fn an_idle_or_unknown_agent_takes_it_a_busy_or_absent_one_holds_it() {
        let e = entry(State::Queued, NOW + 1);
        for s in [Activity::Idle, Activity::Unknown] {
            assert_eq!(release(&e, Some(&row(PaneState::Alive, s, 5)), Some(NOW), 0, NOW), Release::Deliver, "{s}");
        }
        for s in [Activity::Working, Activity::Waiting, Activity::Exited] {
            let r = release(&e, Some(&row(PaneState::Alive, s, 5)), Some(NOW), 0, NOW);
            assert_eq!(r, Release::Hold(format!("a is {s} (the rule)")), "{s}");
        }
        let absent = Release::Hold("a is not running (no session)".into());
        assert_eq!(release(&e, None, Some(NOW), 0, NOW), absent);
        assert_eq!(release(&e, Some(&row(PaneState::Missing, Activity::Idle, 5)), Some(NOW), 0, NOW), absent);
        let dead = Release::Hold("the pane of a is dead (its program exited)".into());
        assert_eq!(release(&e, Some(&row(PaneState::Dead, Activity::Idle, 5)), Some(NOW), 0, NOW), dead);
    }

    /// After a message is typed, the next one waits for a view of the agent
    /// newer than that (the idle state the first one ended is no reason).
    #[test]
    fn the_next_message_waits_for_a_view_after_the_last_typing() {
        let e = entry(State::Queued, NOW + 1);
        let idle = row(PaneState::Alive, Activity::Idle, 100);
        let held = Release::Hold("a is not yet seen since the last message was typed".into());
        assert_eq!(release(&e, Some(&idle), Some(200), 200, NOW), held);
        assert_eq!(release(&e, Some(&idle), None, 200, NOW), held);
        assert_eq!(release(&e, Some(&idle), Some(201), 200, NOW), Release::Deliver);
        let unknown = row(PaneState::Alive, Activity::Unknown, 100);
        assert_eq!(release(&e, Some(&unknown), Some(200), 200, NOW), held, "unknown is not exempt");
        assert_eq!(
            release(&e, Some(&row(PaneState::Alive, Activity::Idle, 201)), Some(150), 200, NOW),
            Release::Deliver
        );
    }

    #[test]
    fn only_untouched_messages_expire_and_exactly_at_their_time() {
        let idle = row(PaneState::Alive, Activity::Idle, 5);
        assert_eq!(release(&entry(State::Queued, NOW), Some(&idle), Some(NOW), 0, NOW), Release::Expire);
        assert_eq!(release(&entry(State::Queued, NOW), None, None, 0, NOW), Release::Expire, "held or not");
        assert_eq!(release(&entry(State::Queued, NOW + 1), Some(&idle), Some(NOW), 0, NOW), Release::Deliver);
        for s in [State::Typing, State::Pasted] {
            assert_eq!(release(&entry(s, NOW - 1), Some(&idle), Some(NOW), 0, NOW), Release::Deliver, "{s:?}");
        }
    }

    #[test]
    fn recovery_clears_or_presses_enter_only_in_the_same_pane() {
        let mark = PaneMark { id: "%3".into(), pid: Some(7) };
        assert_eq!(begin(State::Queued, None, "%3", Some(7)), Begin::Type);
        assert_eq!(begin(State::Queued, Some(&mark), "%3", Some(7)), Begin::Type);
        assert_eq!(begin(State::Typing, Some(&mark), "%3", Some(7)), Begin::ClearThenType);
        assert_eq!(begin(State::Pasted, Some(&mark), "%3", Some(7)), Begin::Enter);
        for (id, pid) in [("%4", Some(7)), ("%3", Some(8)), ("%3", None)] {
            assert_eq!(begin(State::Typing, Some(&mark), id, pid), Begin::Type, "{id} {pid:?}");
            assert_eq!(begin(State::Pasted, Some(&mark), id, pid), Begin::Type, "{id} {pid:?}");
        }
        assert_eq!(begin(State::Pasted, None, "%3", Some(7)), Begin::Type);
    }

    #[test]
    fn what_was_typed_into_a_pane_that_is_there_is_never_dropped() {
        assert!(may_drop(State::Queued, true) && may_drop(State::Queued, false));
        for s in [State::Typing, State::Pasted] {
            assert!(!may_drop(s, true), "{s:?}");
            assert!(may_drop(s, false), "{s:?}");
        }
        for s in [State::Delivered, State::Cancelled, State::Expired, State::Failed] {
            assert!(!may_drop(s, false), "{s:?}");
        }
    }

    fn new_message(key: &str) -> NewMessage {
        NewMessage {
            agent: "a".into(),
            unmanaged: false,
            text: "[h:x -> h:a] hello\nthere".into(),
            body: "hello\nthere".into(),
            source: "h:x".into(),
            expire: Duration::from_secs(60),
            scope: "op\na@h".into(),
            key: key.into(),
            principal: "op".into(),
        }
    }

    #[test]
    fn the_store_keeps_messages_across_a_reopen_private_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("queue");
        let store = Store::open(&q).unwrap();
        let (a, dup) = store.enqueue(new_message("k1")).unwrap();
        assert!(!dup);
        assert_eq!(a.preview, "hello⏎there");
        let (again, dup) = store.enqueue(new_message("k1")).unwrap();
        assert!(dup && again.id == a.id, "the same key is the same message");
        let (b, _) = store.enqueue(new_message("k2")).unwrap();
        assert!(b.seq > a.seq);
        store.update(&a.id, |e| e.state = State::Pasted).unwrap();
        assert_eq!(std::fs::metadata(&q).unwrap().permissions().mode() & 0o777, 0o700);
        let file = q.join(format!("{}.json", a.id));
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        // A write cut before its rename, and a file that is not a message.
        std::fs::write(q.join(".deadbeef.tmp"), "{").unwrap();
        std::fs::write(q.join("garbled.json"), "{").unwrap();
        drop(store);
        let store = Store::open(&q).unwrap();
        let list = store.list();
        assert_eq!(
            list.iter().map(|e| (e.id.as_str(), e.state)).collect::<Vec<_>>(),
            [(a.id.as_str(), State::Pasted), (b.id.as_str(), State::Queued)]
        );
        assert!(!q.join(".deadbeef.tmp").exists());
        assert!(q.join("garbled.bad").exists(), "set aside, not lost");
        let (dup, is_dup) = store.enqueue(new_message("k2")).unwrap();
        assert!(is_dup && dup.id == b.id, "idempotency keys survive a restart");
        let heads = store.heads();
        assert_eq!(heads.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), [a.id.as_str()]);
    }

    #[test]
    fn cancel_and_expiry_leave_what_was_typed_into_a_live_pane_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, _) = store.enqueue(new_message("a")).unwrap();
        let (b, _) = store.enqueue(new_message("b")).unwrap();
        store.update(&a.id, |e| e.state = State::Typing).unwrap();
        let e = store.cancel(&a.id, |_| true).unwrap_err();
        assert!(matches!(e, CancelError::Typing { .. }), "{e}");
        assert!(store.cancel(&a.id, |_| false).is_ok(), "its pane is gone");
        assert!(matches!(store.cancel(&a.id, |_| false), Err(CancelError::Finished { .. })));
        assert!(matches!(store.cancel("nope", |_| false), Err(CancelError::NotFound(_))));
        // Expiry: b (queued) goes at its time, not before.
        let at = b.expires_unix_ms;
        assert!(store.expire_and_prune(at - 1, |_| false).is_empty());
        let gone = store.expire_and_prune(at, |_| false);
        assert_eq!(gone.iter().map(|e| (e.id.clone(), e.state)).collect::<Vec<_>>(), [(b.id.clone(), State::Expired)]);
        // Finished ones are kept for KEEP_FINISHED, then removed from disk.
        let later = at + KEEP_FINISHED.as_millis() as i64 + 1;
        store.expire_and_prune(later, |_| false);
        assert!(store.list().is_empty());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h").unwrap(), DEFAULT_EXPIRE);
        assert_eq!(parse_duration("7d").unwrap(), MAX_EXPIRE);
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        for bad in ["", "h", "1x", "0s", "-1m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(human(Duration::from_secs(3600)), "1h");
        assert_eq!(human(Duration::from_secs(90)), "90s");
    }
}
