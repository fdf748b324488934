//! The live view of this host: the current agent rows, kept fresh by
//! - inotify on the heartbeat run dir (a rewritten `.hb` becomes a `beat` at once),
//! - a sweep that re-judges health as time passes (healthy turns stale with no write),
//! - a tmux re-probe on an interval and on demand (after a send, start or stop),
//!   one at a time, on a thread of its own: each tmux and systemctl call in it
//!   is killed past 4/5 of [`probe_timeout`] (and reported), a probe that
//!   still does not finish within [`probe_timeout`] makes the view say so (the
//!   host row is an error row) and no second probe starts until it ends;
//!   shutdown never waits for it, and kills the helpers it still runs,
//! - inotify on the roster's directory: the roster is reloaded when it changes; a
//!   broken roster keeps the last good one and is reported in the view,
//! - each agent's activity ([`crate::activity`]): its screen read by the probe
//!   (through control-mode clients), its hook file `<run_dir>/<agent>.state`
//!   on inotify, both judged again at every sweep.
//!
//! The view is published through a `watch` channel (readers never wait on a
//! probe) and every change as an [`Event`] on a broadcast channel.

use crate::config::Timings;
use fleet_core::event::{self, Event, EventKind};
use fleet_core::heartbeat;
use fleet_core::names::DnsLabel;
use fleet_core::record::AgentRecord;
use fleet_core::roster::Roster;
use fleet_tmux::probe::{ProbeContext, ProbeReport, probe_report};
use fleet_tmux::run::Helpers;
use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// Capacity of the event channel; a subscriber further behind gets `lagged`.
pub const EVENT_CAPACITY: usize = 1024;

/// What the node knows of its host right now.
#[derive(Clone, Debug, Default)]
pub struct HostView {
    pub agents: Vec<AgentRecord>,
    /// Why the roster on disk is not the one in use (the last good one is).
    pub roster_problem: Option<String>,
    pub roster: Option<Arc<Roster>>,
    /// Why the last tmux probe failed, if it did.
    pub probe_error: Option<String>,
    /// The running probe has not finished in time (or the first probe is
    /// still running): what hung, for how long.
    pub probe_hung: Option<String>,
    /// Why the last probe could not ask systemd (systemctl did not answer).
    pub systemd_problem: Option<String>,
    /// When the view was last refreshed: the end of the last probe that
    /// completed with every tmux socket answering (Unix ms); `None` before one.
    pub as_of_unix_ms: Option<i64>,
    /// The number of the probe behind `agents` (probes are numbered from 1 as they begin; 0
    /// before the first): a view that shows a change is one of a probe numbered above
    /// [`Live::probes_begun`] as read after the change.
    pub probe: u64,
}

/// Handle on the live view.
#[derive(Clone)]
pub struct Live {
    pub view: watch::Receiver<Arc<HostView>>,
    pub events: broadcast::Sender<Event>,
    poke: Arc<Notify>,
    roster_changed: Arc<Notify>,
    begun: Arc<std::sync::atomic::AtomicU64>,
}

impl Live {
    /// How many probes have begun so far.
    pub fn probes_begun(&self) -> u64 {
        self.begun.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Ask for a tmux re-probe now (after a change this node made).
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    /// Read the roster again now (after this node rewrote it), without
    /// waiting for the file watcher.
    pub fn reload_roster(&self) {
        self.roster_changed.notify_one();
    }

    /// Wait (at most `timeout`) until the view satisfies `f`.
    pub async fn view_until(&self, timeout: Duration, f: impl Fn(&HostView) -> bool) -> bool {
        let mut view = self.view.clone();
        let wait = view.wait_for(|v| f(v));
        matches!(tokio::time::timeout(timeout, wait).await, Ok(Ok(_)))
    }

    pub fn current(&self) -> Arc<HostView> {
        self.view.borrow().clone()
    }
}

/// Where and who this host is, for the probe.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    pub tenant_id: String,
    pub host: DnsLabel,
    /// Where an operator's `fleet/activity.yaml` (screen rules) may be.
    pub mosaic_home: PathBuf,
    pub roster: PathBuf,
    pub run_dir: PathBuf,
    pub interval_secs: u64,
    pub timings: Timings,
    pub systemd: bool,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// How long a probe may run before the view says it hung: 3 probe intervals,
/// at least 5 s. One tmux call is killed a little earlier (4/5 of it), so a
/// hung tmux server is named as such; this catches anything else.
pub fn probe_timeout(probe_interval: Duration) -> Duration {
    (probe_interval * 3).max(Duration::from_secs(5))
}

/// How long startup waits for the first probe (a normal one takes
/// milliseconds); a slower one goes on in the background and the host row
/// says so until it ends.
pub const FIRST_PROBE_WAIT: Duration = Duration::from_secs(2);

/// A probe running on its own thread.
struct Inflight {
    started: Instant,
    done: oneshot::Receiver<Probed>,
}

/// What a probe thread returns: the rows, and the screens it looked at.
struct Probed {
    report: ProbeReport,
    looked: Option<crate::activity::Looked>,
    /// Its number ([`HostView::probe`]).
    number: u64,
}

/// A rewritten file of the run dir: a heartbeat (`.hb`) or a hook state
/// (`.state`) of an agent. (A roster change is a `Notify` of its own, so a
/// burst of heartbeats can never crowd it out.)
enum RunFile {
    Beat(String),
    Hook(String),
}

/// Start the live view; it runs until `cancel`.
pub async fn start(cfg: LiveConfig, cancel: CancellationToken, tracker: &tokio_util::task::TaskTracker) -> Live {
    let (events, _) = broadcast::channel(EVENT_CAPACITY);
    let (tx, view) = watch::channel(Arc::new(HostView::default()));
    let poke = Arc::new(Notify::new());
    let roster_changed = Arc::new(Notify::new());
    let mut state = State::new(cfg, tx, events.clone());
    let begun = state.begun.clone();
    let live = Live { view, events, poke: poke.clone(), roster_changed: roster_changed.clone(), begun };

    state.reload_roster();
    // The first probe, before the doors open; one that takes longer than
    // FIRST_PROBE_WAIT goes on in the background (the run loop takes it).
    let mut first = state.start_probe();
    let inflight = match tokio::time::timeout(FIRST_PROBE_WAIT.min(state.probe_timeout()), &mut first.done).await {
        Ok(Ok(probed)) => {
            state.finish_probe(probed);
            None
        }
        Ok(Err(_)) => {
            tracing::error!(
                "the first host probe ended without a report (its thread panicked or could not be started); the view is empty until the next probe"
            );
            None
        }
        Err(_) => {
            tracing::warn!(
                after_ms = FIRST_PROBE_WAIT.as_millis() as u64,
                "the first host probe is slow: opening the doors without rows; the host row says so until it ends"
            );
            state.sweep(Some(&first));
            Some(first)
        }
    };

    let (fs_tx, fs_rx) = mpsc::channel(256);
    let watcher = watch_files(&state.cfg, fs_tx, roster_changed.clone());
    tracker.spawn(async move {
        // The watcher lives as long as the loop.
        let _watcher = watcher;
        state.run(fs_rx, roster_changed, poke, cancel, inflight).await;
    });
    live
}

fn watch_files(cfg: &LiveConfig, tx: mpsc::Sender<RunFile>, roster: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    let roster_name = cfg.roster.file_name().map(|n| n.to_os_string());
    let roster_dir = cfg.roster.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let run_dir = cfg.run_dir.clone();
    let handler = move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        if matches!(ev.kind, notify::EventKind::Access(_)) {
            return;
        }
        for path in ev.paths {
            let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { continue };
            if Some(name.to_os_string()) == roster_name && dir == roster_dir {
                roster.notify_one();
            } else if dir == run_dir
                && let Some(name) = name.to_str().filter(|n| !n.starts_with('.'))
            {
                // A full queue drops this one; the next probe reads the file anyway.
                if let Some(agent) = name.strip_suffix(".hb") {
                    let _ = tx.try_send(RunFile::Beat(agent.to_string()));
                } else if let Some(agent) = name.strip_suffix(".state") {
                    let _ = tx.try_send(RunFile::Hook(agent.to_string()));
                }
            }
        }
    };
    if let Err(e) = std::fs::create_dir_all(&cfg.run_dir) {
        tracing::warn!(dir = %cfg.run_dir.display(), error = %e, "cannot create the heartbeat dir");
    }
    let mut w = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "no file watcher: heartbeats are seen at the sweep and probe only");
            return None;
        }
    };
    for dir in [&cfg.run_dir, &cfg.roster.parent().map(Path::to_path_buf).unwrap_or_default()] {
        if let Err(e) = w.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch");
        }
    }
    Some(w)
}

struct State {
    cfg: LiveConfig,
    view: HostView,
    tx: watch::Sender<Arc<HostView>>,
    events: broadcast::Sender<Event>,
    /// The tmux and systemctl processes of the running probe: killed at shutdown.
    helpers: Arc<Helpers>,
    /// Probes that ended with a report.
    probes_done: u64,
    /// Probes begun (shared with [`Live::probes_begun`]).
    begun: Arc<std::sync::atomic::AtomicU64>,
    /// Activity: the screens the probe thread reads, and their judgement.
    looker: Arc<std::sync::Mutex<crate::activity::Looker>>,
    judge: crate::activity::Judge,
}

impl State {
    fn new(cfg: LiveConfig, tx: watch::Sender<Arc<HostView>>, events: broadcast::Sender<Event>) -> State {
        let looker = crate::activity::Looker::new(cfg.mosaic_home.clone());
        let judge = crate::activity::Judge::new(cfg.run_dir.clone());
        State {
            cfg,
            view: HostView::default(),
            tx,
            events,
            helpers: Arc::new(Helpers::default()),
            probes_done: 0,
            begun: Arc::default(),
            looker: Arc::new(std::sync::Mutex::new(looker)),
            judge,
        }
    }

    async fn run(
        &mut self,
        mut files: mpsc::Receiver<RunFile>,
        roster: Arc<Notify>,
        poke: Arc<Notify>,
        cancel: CancellationToken,
        mut inflight: Option<Inflight>,
    ) {
        let mut probe_tick = tokio::time::interval(self.cfg.timings.probe_interval);
        let mut sweep_tick = tokio::time::interval(self.cfg.timings.sweep_interval);
        probe_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        sweep_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A probe asked for while one runs starts when that one ends.
        let mut wanted = false;
        loop {
            let done = async {
                match inflight.as_mut() {
                    Some(f) => (&mut f.done).await.ok(),
                    None => std::future::pending().await,
                }
            };
            let mut finished = None;
            tokio::select! {
                // The probe thread is left to itself: shutdown never waits for
                // it, but ends the helpers it runs (and refuses new ones).
                () = cancel.cancelled() => {
                    let killed = self.helpers.close();
                    if killed > 0 {
                        tracing::info!(killed, "shutdown: killed the probe's running tmux/systemctl calls");
                    }
                    return;
                }
                _ = probe_tick.tick() => wanted = true,
                () = poke.notified() => wanted = true,
                _ = sweep_tick.tick() => self.sweep(inflight.as_ref()),
                () = roster.notified() => {
                    self.reload_roster();
                    wanted = true;
                }
                Some(file) = files.recv() => match file {
                    RunFile::Beat(agent) => self.beat(&agent),
                    RunFile::Hook(agent) => self.hook(&agent),
                },
                report = done => finished = Some(report),
            }
            if let Some(probed) = finished {
                inflight = None;
                match probed {
                    Some(p) => self.finish_probe(p),
                    None => tracing::error!(
                        "the host probe ended without a report (its thread panicked or could not be started)"
                    ),
                }
            }
            if wanted && inflight.is_none() {
                wanted = false;
                inflight = Some(self.start_probe());
            }
        }
    }

    fn publish(&mut self, next: Vec<AgentRecord>) {
        for ev in event::diff(&self.view.agents, &next, now_ms()) {
            // No receivers is fine: nobody is watching.
            let _ = self.events.send(ev);
        }
        self.view.agents = next;
        self.tx.send_replace(Arc::new(self.view.clone()));
    }

    fn reload_roster(&mut self) {
        let text = match fleet_core::file::read_to_string(&self.cfg.roster, fleet_core::file::ROSTER_MAX) {
            Ok(t) => t,
            Err(e) => {
                self.view.roster_problem = Some(format!("cannot read {}: {e}", self.cfg.roster.display()));
                tracing::warn!(roster = %self.cfg.roster.display(), error = %e, "cannot read the roster");
                return;
            }
        };
        match Roster::parse(&text) {
            Ok(r) if r.tenant_id.as_ref().is_some_and(|t| t.as_str() != self.cfg.tenant_id) => {
                let problem = format!(
                    "{}: tenant_id {} is not this node's tenant {} ({})",
                    self.cfg.roster.display(),
                    r.tenant_id.as_ref().map(|t| t.as_str()).unwrap_or(""),
                    self.cfg.tenant_id,
                    self.in_use()
                );
                tracing::warn!(problem = %problem, "roster refused");
                self.view.roster_problem = Some(problem);
            }
            Ok(r) => {
                if self.view.roster.is_some() {
                    tracing::info!(roster = %self.cfg.roster.display(), agents = r.agents.len(), "roster reloaded");
                }
                self.view.roster = Some(Arc::new(r));
                self.view.roster_problem = None;
            }
            Err(e) => {
                let first = &e.problems[0];
                let problem = format!(
                    "{}:{first} ({} problem(s); {})",
                    self.cfg.roster.display(),
                    e.problems.len(),
                    self.in_use()
                );
                tracing::warn!(problem = %problem, "roster is invalid");
                self.view.roster_problem = Some(problem);
            }
        }
        self.tx.send_replace(Arc::new(self.view.clone()));
    }

    /// What stands in for a roster that is refused: the last good one, or
    /// none (this node has not read a good one since it started).
    fn in_use(&self) -> &'static str {
        if self.view.roster.is_some() {
            "the last good roster is in use"
        } else {
            "no roster is in use: this host lists no agents until it is fixed (`fleet roster check`)"
        }
    }

    fn probe_context(&self) -> ProbeContext {
        ProbeContext {
            tenant_id: self.cfg.tenant_id.clone(),
            host: self.cfg.host.clone(),
            run_dir: self.cfg.run_dir.clone(),
            interval_secs: self.cfg.interval_secs,
            now: now_ms() / 1000,
            systemd: self.cfg.systemd,
            call_timeout: self.probe_timeout() * 4 / 5,
            helpers: Some(self.helpers.clone()),
        }
    }

    fn probe_timeout(&self) -> Duration {
        probe_timeout(self.cfg.timings.probe_interval)
    }

    /// Start a probe on a thread of its own (not tokio's blocking pool, which
    /// the runtime's shutdown waits for).
    fn start_probe(&self) -> Inflight {
        let roster = self.view.roster.clone().unwrap_or_else(|| Arc::new(empty_roster()));
        let cx = self.probe_context();
        let looker = self.looker.clone();
        let (tx, done) = oneshot::channel();
        let number = self.begun.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1;
        let spawned = std::thread::Builder::new().name("fleet-probe".into()).spawn(move || {
            let report = probe_report(&roster, &cx);
            // Screens through control clients: bounded per command (5 s).
            let looked = looker.lock().ok().map(|mut l| l.look(&roster, &report.rows));
            let _ = tx.send(Probed { report, looked, number });
        });
        if let Err(e) = spawned {
            // The sender is gone with the closure: `done` reports a failed probe.
            tracing::error!(error = %e, "cannot start a probe thread");
        }
        Inflight { started: Instant::now(), done }
    }

    fn finish_probe(&mut self, probed: Probed) {
        let Probed { report, looked, number } = probed;
        self.view.probe = number;
        let errors: Vec<String> = report.socket_errors.iter().map(|e| format!("{}: {}", e.socket, e.error)).collect();
        if !errors.is_empty() {
            tracing::warn!(errors = %errors.join("; "), "tmux probe failed on some sockets");
        } else {
            self.view.as_of_unix_ms = Some(now_ms());
        }
        if let Some(was) = self.view.probe_hung.take() {
            tracing::info!(was = %was, "the hung probe finished");
        }
        match (&report.systemd_error, &self.view.systemd_problem) {
            (Some(now), was) if was.as_ref() != Some(now) => {
                tracing::warn!(error = %now, "systemd could not be probed")
            }
            (None, Some(was)) => tracing::info!(was = %was, "systemd answers again"),
            _ => {}
        }
        self.view.systemd_problem = report.systemd_error;
        self.probes_done += 1;
        self.view.probe_error = (!errors.is_empty()).then(|| errors.join("; "));
        let now = now_ms();
        if let Some(looked) = looked {
            self.judge.looked(looked, now);
        }
        let mut rows = report.rows;
        self.judge.read_hooks(&rows);
        self.judge.judge_all(&mut rows, &self.view.agents, now);
        self.publish(rows);
    }

    /// An agent's hook file changed: judge its activity again, now.
    fn hook(&mut self, agent: &str) {
        let Some(i) = self.view.agents.iter().position(|r| r.name == agent) else { return };
        self.judge.read_hook(agent);
        let mut next = self.view.agents.clone();
        next[i].activity = self.judge.judge(&next[i], Some(&self.view.agents[i].activity), now_ms());
        if next != self.view.agents {
            self.publish(next);
        }
    }

    /// Re-judge health as time passes, and say so when the running probe hangs.
    fn sweep(&mut self, inflight: Option<&Inflight>) {
        let running = inflight.map(|f| f.started.elapsed());
        let over = running.filter(|t| *t >= self.probe_timeout());
        let hung = match running {
            Some(t) if over.is_some() => Some(format!(
                "the host probe (tmux list-panes, systemctl, heartbeat files) has not finished after {} s (limit {} s); the rows are as of its start or older",
                t.as_secs(),
                self.probe_timeout().as_secs()
            )),
            Some(t) if self.probes_done == 0 => Some(format!(
                "the first host probe has not finished after {} ms (limit {} s): no rows yet",
                t.as_millis(),
                self.probe_timeout().as_secs()
            )),
            _ => None,
        };
        if over.is_some() && self.view.probe_hung.as_deref().is_none_or(|h| h.starts_with("the first")) {
            tracing::error!(after_ms = self.probe_timeout().as_millis() as u64, "the host probe hangs");
        }
        let hung_changed = hung != self.view.probe_hung;
        self.view.probe_hung = hung;
        let mut next = self.view.agents.clone();
        event::reassess(&mut next, now_ms() / 1000);
        self.judge.judge_all(&mut next, &self.view.agents, now_ms());
        if next != self.view.agents || hung_changed {
            self.publish(next);
        }
    }

    fn beat(&mut self, agent: &str) {
        let Some(i) = self.view.agents.iter().position(|r| r.name == agent) else { return };
        let (interval, now) = (self.cfg.interval_secs, now_ms() / 1000);
        // A bounded read that never blocks (a FIFO there is `unknown`, not a hang).
        let report = fleet_tmux::probe::heartbeat_report(&self.cfg.run_dir, agent, now, interval);
        let mut next = self.view.agents.clone();
        let row = &next[i];
        // A heartbeat beside a dead or missing pane, or from another pid, is not this pane's.
        let launcher = self
            .view
            .roster
            .as_deref()
            .and_then(|r| r.agent(agent))
            .and_then(|a| self.view.roster.as_deref().and_then(|r| r.runtime(&a.runtime)).map(|rt| rt.heartbeat))
            != Some(fleet_core::roster::HeartbeatSource::SelfWritten)
            && row.managed;
        next[i].heartbeat = heartbeat::judge_with_pane(report, row.pane, row.pane_pid, launcher);
        self.publish(next);
    }
}

fn empty_roster() -> Roster {
    Roster::parse("agents: []\n").expect("the empty roster parses")
}

/// A host event (up/down) for the stream.
pub fn host_event(tenant_id: &str, host: &str, kind: EventKind) -> Event {
    Event { tenant_id: tenant_id.into(), host: host.into(), agent: String::new(), observed_unix_ms: now_ms(), kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(dir: &Path) -> State {
        let cfg = LiveConfig {
            tenant_id: "acme".into(),
            host: DnsLabel::parse_as("host", "solo").unwrap(),
            mosaic_home: dir.to_path_buf(),
            roster: dir.join("roster.yaml"),
            run_dir: dir.join("run"),
            interval_secs: 15,
            timings: Timings::default(),
            systemd: false,
        };
        let (tx, _) = watch::channel(Arc::new(HostView::default()));
        let (events, _) = broadcast::channel(16);
        State::new(cfg, tx, events)
    }

    /// A probe that has been running for `age`.
    fn running_for(age: Duration) -> Inflight {
        let (_tx, done) = oneshot::channel();
        Inflight { started: Instant::now().checked_sub(age).unwrap(), done }
    }

    fn published(st: &State) -> Arc<HostView> {
        st.tx.borrow().clone()
    }

    #[test]
    fn a_slow_first_probe_is_said_until_it_ends_and_a_hung_one_after_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = state(dir.path());
        let limit = st.probe_timeout();
        assert_eq!(limit, Duration::from_secs(6));
        // The first probe, still running after the startup wait: no rows yet, and the view says so.
        st.sweep(Some(&running_for(FIRST_PROBE_WAIT)));
        let said = published(&st).probe_hung.clone().unwrap_or_default();
        assert!(
            said.starts_with("the first host probe has not finished after 2") && said.contains("no rows yet"),
            "{said}"
        );
        // It ends, with systemctl killed: the problem is kept, the view is fresh.
        st.finish_probe(Probed {
            report: ProbeReport {
                rows: Vec::new(),
                socket_errors: Vec::new(),
                systemd_error: Some("systemctl --user show did not answer within 4800 ms".into()),
            },
            looked: None,
            number: 7,
        });
        let v = published(&st);
        assert_eq!(v.probe, 7, "the view says which probe it is of");
        assert_eq!(v.probe_hung, None);
        assert!(v.systemd_problem.as_deref().is_some_and(|p| p.contains("systemctl")), "{v:?}");
        assert!(v.as_of_unix_ms.is_some());
        // A later probe is not reported before the probe timeout, and is after it.
        st.sweep(Some(&running_for(limit / 2)));
        assert_eq!(published(&st).probe_hung, None);
        st.sweep(Some(&running_for(limit + Duration::from_secs(1))));
        let said = published(&st).probe_hung.clone().unwrap_or_default();
        assert!(said.contains("has not finished after 7 s (limit 6 s)"), "{said}");
        // The next probe answers systemd again: the problem clears.
        let report = ProbeReport { rows: Vec::new(), socket_errors: Vec::new(), systemd_error: None };
        st.finish_probe(Probed { report, looked: None, number: 8 });
        assert_eq!(published(&st).probe, 8);
        assert_eq!((published(&st).probe_hung.clone(), published(&st).systemd_problem.clone()), (None, None));
    }

    /// A broken roster says what is used instead: the last good one, or none
    /// when the node never read a good one.
    #[test]
    fn a_broken_roster_says_whether_a_last_good_one_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = state(dir.path());
        std::fs::write(dir.path().join("roster.yaml"), "agents: [").unwrap();
        st.reload_roster();
        let p = published(&st).roster_problem.clone().unwrap_or_default();
        assert!(p.contains("no roster is in use: this host lists no agents until it is fixed"), "{p}");
        std::fs::write(dir.path().join("roster.yaml"), "version: 1\nagents: []\n").unwrap();
        st.reload_roster();
        assert_eq!(published(&st).roster_problem, None);
        std::fs::write(dir.path().join("roster.yaml"), "agents: [").unwrap();
        st.reload_roster();
        let p = published(&st).roster_problem.clone().unwrap_or_default();
        assert!(p.contains("the last good roster is in use"), "{p}");
    }
}
