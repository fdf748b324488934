//! The local probe: one row per roster agent, plus the sessions on the same
//! sockets that the roster does not name.
//!
//! Cost is constant in the number of agents: one `tmux list-panes -a` per
//! distinct socket (a roster normally has one), one `systemctl --user show`
//! for all units (none when the host has no user systemd), and one read per
//! heartbeat file. tmux and systemctl run in parallel, each within
//! [`ProbeContext::call_timeout`]: a server or manager that does not answer is
//! killed and reported, and the probe still finishes.

use crate::run::{self, Helpers, RunError};
use crate::systemd::{self, UnitStates};
use crate::tmux::{Tmux, TmuxError};
use fleet_core::heartbeat::{self, HealthReport};
use fleet_core::names::{AgentName, DnsLabel};
use fleet_core::record::{AgentRecord, PaneState, SystemdState};
use fleet_core::roster::{AgentSpec, HeartbeatSource, Roster, TmuxSocket};
use fleet_core::runtime;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long one `tmux list-panes` or `systemctl --user show` may take before
/// it is killed and reported as hung, unless the caller says otherwise.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The `list-panes -a` format: fixed fields first, the session name last so a
/// name holding a tab cannot shift the others.
pub const PANE_FORMAT: &str = "#{pane_id}\t#{window_index}\t#{pane_index}\t#{pane_dead}\t#{pane_pid}\t#{pane_in_mode}\t#{pane_mode}\t#{window_activity}\t#{pane_current_command}\t#{session_name}";

/// One pane as tmux lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pane {
    pub id: String,
    pub window: u32,
    pub index: u32,
    pub dead: bool,
    pub pid: Option<u32>,
    /// In any mode (copy, view, clock, tree, buffer, client, ...): input goes
    /// to the mode, not to the program.
    pub in_mode: bool,
    /// The mode's name (`#{pane_mode}`: `copy-mode`, `view-mode`,
    /// `clock-mode`, `tree-mode`, ...); empty when in none.
    pub mode: String,
    pub activity: Option<i64>,
    pub command: String,
    pub session: String,
}

impl Pane {
    /// Copy mode, or view mode (copy mode's read-only form, e.g. the output
    /// of `run-shell`).
    pub fn in_copy_mode(&self) -> bool {
        matches!(self.mode.as_str(), "copy-mode" | "view-mode")
    }
}

/// Parse `list-panes -F PANE_FORMAT` output. Malformed lines are skipped.
pub fn parse_panes(out: &str) -> Vec<Pane> {
    out.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.splitn(10, '\t').collect();
            if f.len() != 10 {
                return None;
            }
            Some(Pane {
                id: f[0].to_string(),
                window: f[1].parse().ok()?,
                index: f[2].parse().ok()?,
                dead: f[3] == "1",
                pid: f[4].parse().ok().filter(|p| *p > 0),
                in_mode: f[5] == "1",
                mode: f[6].to_string(),
                activity: f[7].parse().ok(),
                command: f[8].to_string(),
                session: f[9].to_string(),
            })
        })
        .collect()
}

/// The first pane (lowest window, then pane index) of each session.
pub fn first_panes(panes: Vec<Pane>) -> BTreeMap<String, Pane> {
    let mut out: BTreeMap<String, Pane> = BTreeMap::new();
    for p in panes {
        match out.get(&p.session) {
            Some(q) if (q.window, q.index) <= (p.window, p.index) => {}
            _ => {
                out.insert(p.session.clone(), p);
            }
        }
    }
    out
}

/// What a probe needs to know about its host.
#[derive(Clone, Debug)]
pub struct ProbeContext {
    pub tenant_id: String,
    pub host: DnsLabel,
    pub run_dir: PathBuf,
    pub interval_secs: u64,
    /// Unix seconds.
    pub now: i64,
    /// Ask systemd (false: report n/a without asking).
    pub systemd: bool,
    /// How long one `tmux list-panes` or `systemctl --user show` may take:
    /// past it the helper (its process group) is killed and its socket, or
    /// systemd, is an error (a server that accepts and never answers must
    /// not hang the probe).
    pub call_timeout: Duration,
    /// Where the probe lists the helpers it runs, so that its owner can kill
    /// them when it stops waiting (the node at shutdown).
    pub helpers: Option<Arc<Helpers>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Tmux(#[from] TmuxError),
    #[error("tmux {args} on {socket} did not answer within {} ms (killed its client, pid {pid}): is that tmux server hung?", timeout.as_millis())]
    Hung { args: String, socket: String, timeout: Duration, pid: u32 },
    /// Its output could not be read, or its owner is shutting down.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// A tmux server that could not be listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketError {
    pub socket: TmuxSocket,
    /// What tmux said.
    pub error: String,
    /// The roster agents on that socket: they have no row.
    pub agents: Vec<String>,
}

/// A probe: the rows of every socket that answered, and the sockets that did
/// not (their agents have no row; show the error instead).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeReport {
    pub rows: Vec<AgentRecord>,
    pub socket_errors: Vec<SocketError>,
    /// Why the systemd states are n/a although the host has a user systemd
    /// (systemctl did not answer in time).
    pub systemd_error: Option<String>,
}

/// Probe the host: every roster agent that runs here, plus unmanaged sessions.
/// A socket that fails is left out (see [`probe_report`] for its error); this
/// fails only when every socket fails.
pub fn probe(roster: &Roster, cx: &ProbeContext) -> Result<Vec<AgentRecord>, ProbeError> {
    let (rows, mut failed, sockets, _) = probe_inner(roster, cx);
    if failed.len() == sockets && !failed.is_empty() {
        return Err(failed.swap_remove(0).1);
    }
    Ok(rows)
}

/// Probe the host; one socket that cannot be listed does not hide the others.
pub fn probe_report(roster: &Roster, cx: &ProbeContext) -> ProbeReport {
    let (rows, failed, _, systemd_error) = probe_inner(roster, cx);
    let socket_errors =
        failed.into_iter().map(|(socket, e, agents)| SocketError { socket, error: e.to_string(), agents }).collect();
    ProbeReport { rows, socket_errors, systemd_error }
}

type Failed = Vec<(TmuxSocket, ProbeError, Vec<String>)>;

/// The rows, the sockets that failed (with their agents), how many sockets
/// were asked, and why systemd could not be asked.
fn probe_inner(roster: &Roster, cx: &ProbeContext) -> (Vec<AgentRecord>, Failed, usize, Option<String>) {
    let agents: Vec<&AgentSpec> = roster.agents_on(&cx.host).collect();
    let sockets: BTreeSet<TmuxSocket> =
        std::iter::once(roster.socket.clone()).chain(agents.iter().map(|a| roster.socket_of(a).clone())).collect();
    let units: Vec<String> = agents.iter().map(|a| systemd::agent_unit(a.name.as_str())).collect();

    // systemd and the first socket on their own threads, the rest here: all at once.
    // Every call is bounded by cx.call_timeout, so every join returns.
    let (listings, unit_states) =
        std::thread::scope(|s| {
            let sd = s.spawn(|| {
                if cx.systemd { systemd::show(&units, cx.call_timeout, cx.helpers.as_deref()) } else { Ok(None) }
            });
            let others: Vec<_> =
                sockets.iter().skip(1).map(|sock| s.spawn(|| list_sessions(&Tmux::new(sock.clone()), cx))).collect();
            let first = Tmux::new(sockets.first().expect("the roster's socket").clone());
            let mut listings = vec![list_sessions(&first, cx)];
            listings.extend(others.into_iter().map(|t| t.join().expect("tmux probe thread")));
            (listings, sd.join().expect("systemd probe thread"))
        });
    let (unit_states, systemd_error) = match unit_states {
        Ok(states) => (states, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let asked = sockets.len();
    let mut by_socket: BTreeMap<TmuxSocket, Sessions> = BTreeMap::new();
    let mut failed: Failed = Vec::new();
    for (sock, listing) in sockets.into_iter().zip(listings) {
        match listing {
            Ok(sessions) => {
                by_socket.insert(sock, sessions);
            }
            Err(e) => {
                let on_it =
                    agents.iter().filter(|a| roster.socket_of(a) == &sock).map(|a| a.name.to_string()).collect();
                failed.push((sock, e, on_it));
            }
        }
    }

    let mut rows = Vec::with_capacity(agents.len());
    for agent in &agents {
        let sock = roster.socket_of(agent);
        let Some(sessions) = by_socket.get(sock) else { continue };
        let pane = sessions.get(agent.name.as_str());
        let unit = systemd_state(unit_states.as_ref(), &systemd::agent_unit(agent.name.as_str()));
        // Launcher heartbeats carry the pane's pid (protocol v1): check it.
        let launcher = roster.runtime(&agent.runtime).is_none_or(|r| r.heartbeat == HeartbeatSource::Launcher);
        let mut row = row(cx, agent.name.as_str(), sock, pane, unit, launcher);
        row.class = agent.class.clone();
        row.runtime = Some(agent.runtime.clone());
        row.managed = true;
        row.drift = pane.is_some_and(|p| !p.dead && runtime::is_drift(roster, &agent.runtime, &p.command));
        rows.push(row);
    }
    let named: BTreeSet<&str> = agents.iter().map(|a| a.name.as_str()).collect();
    for (sock, sessions) in &by_socket {
        for (name, pane) in sessions {
            let holder = sock == &roster.socket && roster.holder_session.as_deref() == Some(name.as_str());
            // Roster agents of other hosts are still not "managed here".
            if named.contains(name.as_str()) || holder {
                continue;
            }
            rows.push(row(cx, name, sock, Some(pane), SystemdState::unavailable(), false));
        }
    }
    (rows, failed, asked, systemd_error)
}

/// The first pane of each session, by session name.
type Sessions = BTreeMap<String, Pane>;

fn list_sessions(tmux: &Tmux, cx: &ProbeContext) -> Result<Sessions, ProbeError> {
    match run_within(tmux, &["list-panes", "-a", "-F", PANE_FORMAT], cx) {
        Ok(out) => Ok(first_panes(parse_panes(&out))),
        Err(ProbeError::Tmux(e)) if e.is_no_server() => Ok(BTreeMap::new()),
        Err(e) => Err(e),
    }
}

/// Run tmux with `args` and return its stdout, or kill it (its process group)
/// once `cx.call_timeout` has passed: a server that accepts a connection and
/// never answers would otherwise hold the probe forever.
fn run_within(tmux: &Tmux, args: &[&str], cx: &ProbeContext) -> Result<String, ProbeError> {
    let spawn = |source| TmuxError::Spawn { bin: tmux.bin.display().to_string(), source };
    let out = match run::run(tmux.command().args(args), cx.call_timeout, cx.helpers.as_deref()) {
        Ok(out) => out,
        Err(RunError::Hung { pid, timeout, .. }) => {
            return Err(ProbeError::Hung {
                args: args.first().copied().unwrap_or_default().to_string(),
                socket: tmux.socket.to_string(),
                timeout,
                pid,
            });
        }
        Err(RunError::Spawn { source, .. }) => return Err(spawn(source).into()),
        Err(e) => return Err(e.into()),
    };
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(TmuxError::Failed {
            args: args.join(" "),
            socket: tmux.socket.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }
        .into())
    }
}

fn systemd_state(states: Option<&UnitStates>, unit: &str) -> SystemdState {
    match states {
        None => SystemdState::unavailable(),
        Some(s) => match s.get(unit) {
            Some(u) => SystemdState {
                available: true,
                active_state: Some(u.active_state.clone()),
                unit_file_state: Some(u.unit_file_state.clone()).filter(|s| !s.is_empty()),
            },
            None => SystemdState { available: true, active_state: None, unit_file_state: None },
        },
    }
}

/// The heartbeat file of a session (judged with its pane by the caller).
fn read_heartbeat(cx: &ProbeContext, name: &str) -> HealthReport {
    // A session name from tmux may hold '/', '..' or be absolute: it is only
    // a file name once it is a valid agent name.
    if name.parse::<AgentName>().is_err() {
        return HealthReport::unknown("not an agent name", cx.interval_secs);
    }
    heartbeat_report(&cx.run_dir, name, cx.now, cx.interval_secs)
}

/// Read and judge the heartbeat file of agent `name` (a valid agent name) in
/// `run_dir`. The file is read as a regular file of at most
/// [`fleet_core::file::HEARTBEAT_MAX`] bytes and never blocks: a FIFO, a
/// device or a directory there is health `unknown` with the reason.
pub fn heartbeat_report(run_dir: &std::path::Path, name: &str, now: i64, interval_secs: u64) -> HealthReport {
    let hb_path = heartbeat::heartbeat_path(run_dir, name);
    match fleet_core::file::read(&hb_path, fleet_core::file::HEARTBEAT_MAX) {
        Ok(bytes) => heartbeat::assess(Some(&String::from_utf8_lossy(&bytes)), now, interval_secs),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => heartbeat::assess(None, now, interval_secs),
        Err(e) => HealthReport::unknown(format!("cannot read {}: {e}", hb_path.display()), interval_secs),
    }
}

fn row(
    cx: &ProbeContext,
    name: &str,
    sock: &TmuxSocket,
    pane: Option<&Pane>,
    systemd: SystemdState,
    launcher: bool,
) -> AgentRecord {
    let pane_state = match pane {
        None => PaneState::Missing,
        Some(p) if p.dead => PaneState::Dead,
        Some(_) => PaneState::Alive,
    };
    let pane_pid = pane.and_then(|p| p.pid);
    let hb = heartbeat::judge_with_pane(read_heartbeat(cx, name), pane_state, pane_pid, launcher);
    let boot_enable = systemd.boot_enable_missing();
    AgentRecord {
        tenant_id: cx.tenant_id.clone(),
        host: cx.host.to_string(),
        name: name.to_string(),
        class: None,
        runtime: None,
        managed: false,
        socket: sock.spec().to_string(),
        systemd,
        pane: pane_state,
        pane_pid,
        current_command: pane.filter(|p| !p.dead).map(|p| p.command.clone()).filter(|c| !c.is_empty()),
        idle_seconds: pane.and_then(|p| p.activity).map(|a| (cx.now - a).max(0) as u64),
        in_copy_mode: pane.is_some_and(Pane::in_copy_mode),
        heartbeat: hb,
        drift: false,
        boot_enable,
        activity: fleet_core::activity::Activity::of_pane(pane_state, cx.now * 1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TestServer;
    use fleet_core::heartbeat::{BeatStatus, Health};
    use std::time::Instant;

    #[test]
    fn parse_and_pick_first_pane() {
        let out = "%3\t1\t0\t0\t300\t0\t\t100\tbash\ta\n%1\t0\t1\t1\t0\t1\tcopy-mode\t90\tclaude\ta\n%0\t0\t0\t0\t100\t1\tclock-mode\t95\tnode\ta\n%5\t0\t0\t0\t55\t1\tview-mode\t1\tsh\tname\twith tab\nbad line\n";
        let panes = parse_panes(out);
        assert_eq!(panes.len(), 4);
        assert_eq!(panes[1].pid, None, "pid 0 of a dead pane is no pid");
        assert_eq!(panes[3].session, "name\twith tab");
        assert_eq!(panes.iter().map(Pane::in_copy_mode).collect::<Vec<_>>(), [false, true, false, true]);
        assert!(panes[2].in_mode, "clock mode is a mode, not copy mode");
        let first = first_panes(panes);
        assert_eq!(first["a"].id, "%0");
        assert_eq!(first["a"].command, "node");
        assert!(first.contains_key("name\twith tab"));
    }

    fn cx(run_dir: &std::path::Path) -> ProbeContext {
        ProbeContext {
            tenant_id: "t".into(),
            host: DnsLabel::parse_as("host", "h").unwrap(),
            run_dir: run_dir.to_path_buf(),
            interval_secs: 15,
            now: crate::hbwriter::now_unix(),
            systemd: false,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            helpers: None,
        }
    }

    #[test]
    fn session_names_that_are_no_agent_names_read_no_heartbeat() {
        let server = TestServer::new();
        let run_dir = server.dir.path().join("run");
        std::fs::create_dir_all(&run_dir).unwrap();
        // An absolute session name would read that path (tmux keeps '/', turns '.' and ':' into '_').
        let outside = format!("{}/x", server.dir.path().display());
        assert!(!outside.contains(['.', ':']), "{outside}");
        crate::hbwriter::write_heartbeat(std::path::Path::new(&format!("{outside}.hb")), 1, BeatStatus::Ok).unwrap();
        server.session(&outside, &["sleep", "1000"]);
        server.session("ok_name", &["sleep", "1000"]);
        let roster =
            Roster::parse(&format!("tmux: {{ socket_path: \"{}\" }}\nagents: []\n", server.socket().spec())).unwrap();
        let rows = probe(&roster, &cx(&run_dir)).unwrap();
        let row = |n: &str| rows.iter().find(|r| r.name == n).unwrap_or_else(|| panic!("no row {n}: {rows:#?}"));
        assert_eq!(row(&outside).heartbeat.reason.as_deref(), Some("not an agent name"));
        assert_eq!(row(&outside).heartbeat.health, Health::Unknown);
        assert_eq!(row("ok_name").heartbeat.reason.as_deref(), Some("no heartbeat file"));
    }

    #[test]
    fn one_failing_socket_does_not_hide_the_others() {
        let server = TestServer::new();
        server.session("a", &["sleep", "1000"]);
        // Longer than a socket address can be: tmux fails on it ("File name too long").
        let bad = format!("{}/{}", server.dir.path().display(), "s".repeat(120));
        let roster = Roster::parse(&format!(
            "tmux: {{ socket_path: \"{}\" }}\nagents:\n  - {{ name: a, runtime: claude }}\n  - {{ name: b, runtime: claude, socket: \"{bad}\" }}\n",
            server.socket().spec()
        ))
        .unwrap();
        let cx = cx(&server.dir.path().join("run"));
        let report = probe_report(&roster, &cx);
        let names: Vec<&str> = report.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a"]);
        assert_eq!(report.rows[0].pane, PaneState::Alive);
        assert_eq!(report.socket_errors.len(), 1, "{report:#?}");
        let e = &report.socket_errors[0];
        assert_eq!((&e.socket, e.agents.as_slice()), (&TmuxSocket::Path(bad.clone()), &["b".to_string()][..]));
        assert!(e.error.contains("File name too long"), "{}", e.error);
        // The old API keeps working: the rows of the sockets that answered (by
        // name and pane: a second probe may see the command exec'd and a second pass).
        let again: Vec<(String, PaneState)> =
            probe(&roster, &cx).unwrap().into_iter().map(|r| (r.name, r.pane)).collect();
        assert_eq!(again, [("a".to_string(), PaneState::Alive)]);
        // Only when every socket fails is the probe an error.
        let all_bad = Roster::parse(&format!(
            "tmux: {{ socket_path: \"{bad}\" }}\nagents:\n  - {{ name: b, runtime: claude }}\n"
        ))
        .unwrap();
        assert!(probe(&all_bad, &cx).is_err());
        assert_eq!(probe_report(&all_bad, &cx).socket_errors.len(), 1);
    }

    #[test]
    fn a_fifo_heartbeat_is_unknown_with_the_reason_and_never_blocks() {
        let server = TestServer::new();
        let run_dir = server.dir.path().join("run");
        std::fs::create_dir_all(&run_dir).unwrap();
        let fifo = run_dir.join("piped.hb");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        server.session("piped", &["sleep", "1000"]);
        let roster =
            Roster::parse(&format!("tmux: {{ socket_path: \"{}\" }}\nagents: []\n", server.socket().spec())).unwrap();
        let cx = cx(&run_dir);
        // On a thread: the old probe blocked forever opening the FIFO.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(probe(&roster, &cx));
        });
        let rows = rx.recv_timeout(Duration::from_secs(10)).expect("the probe blocked on a FIFO heartbeat").unwrap();
        let row = rows.iter().find(|r| r.name == "piped").expect("a row for the session");
        assert_eq!(row.heartbeat.health, Health::Unknown, "{row:#?}");
        let reason = row.heartbeat.reason.as_deref().unwrap_or_default();
        assert!(
            reason.contains("piped.hb") && reason.contains("FIFO") && reason.contains("not a regular file"),
            "{reason}"
        );
    }

    #[test]
    fn a_tmux_server_that_never_answers_is_killed_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hung.sock");
        // Listens (so connecting succeeds) and never accepts nor answers.
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let roster = Roster::parse(&format!(
            "tmux: {{ socket_path: \"{}\" }}\nagents:\n  - {{ name: a, runtime: claude }}\n",
            path.display()
        ))
        .unwrap();
        let cx = ProbeContext { call_timeout: Duration::from_millis(800), ..cx(&dir.path().join("run")) };
        let start = Instant::now();
        let report = probe_report(&roster, &cx);
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(5), "{took:?}");
        assert_eq!(report.socket_errors.len(), 1, "{report:#?}");
        let e = &report.socket_errors[0];
        assert!(
            e.error.contains("did not answer within 800 ms") && e.error.contains("killed its client"),
            "{}",
            e.error
        );
        assert_eq!(e.agents, ["a".to_string()]);
        // The client was killed: no tmux is left connected to the socket.
        let pid: u32 = e.error.split("pid ").nth(1).and_then(|t| t.split(')').next()).unwrap().parse().unwrap();
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "tmux client {pid} still runs");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// A field tmux could print: no tab, no newline (the session name may hold a tab).
        fn field() -> impl Strategy<Value = String> {
            any::<String>().prop_map(|s| s.replace(['\t', '\n', '\r'], " "))
        }

        fn pane() -> impl Strategy<Value = Pane> {
            (
                (field(), any::<u32>(), any::<u32>(), any::<bool>(), any::<Option<u32>>()),
                (any::<bool>(), field(), any::<Option<i64>>(), field(), field(), field()),
            )
                .prop_map(
                    |((id, window, index, dead, pid), (in_mode, mode, activity, command, name, tail))| Pane {
                        id,
                        window,
                        index,
                        dead,
                        pid: pid.filter(|p| *p > 0),
                        in_mode,
                        mode,
                        activity,
                        command,
                        // A session name may hold a tab: it is the last field.
                        session: if tail.is_empty() { name } else { format!("{name}\t{tail}") },
                    },
                )
        }

        /// The line tmux prints for `p` with PANE_FORMAT.
        fn print(p: &Pane) -> String {
            let b = |x: bool| if x { "1" } else { "0" };
            let activity = p.activity.map(|a| a.to_string()).unwrap_or_default();
            format!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                p.id,
                p.window,
                p.index,
                b(p.dead),
                p.pid.unwrap_or(0),
                b(p.in_mode),
                p.mode,
                activity,
                p.command,
                p.session
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn printed_panes_parse_back(panes in prop::collection::vec(pane(), 0..8)) {
                let out: String = panes.iter().map(|p| print(p) + "\n").collect();
                prop_assert_eq!(parse_panes(&out), panes.clone());
                let first = first_panes(panes.clone());
                for p in &panes {
                    let f = &first[&p.session];
                    prop_assert!((f.window, f.index) <= (p.window, p.index));
                }
            }

            #[test]
            fn any_output_parses_without_panic(out in any::<String>()) {
                let panes = parse_panes(&out);
                prop_assert!(panes.len() <= out.lines().count());
                let _ = first_panes(panes);
            }

            #[test]
            fn near_valid_lines_parse_or_are_skipped(
                fields in prop::collection::vec(
                    prop_oneof![field(), Just("-1".to_string()), Just("4294967296".to_string()), Just(String::new())],
                    0..12,
                ),
            ) {
                let line = fields.join("\t");
                let panes = parse_panes(&line);
                prop_assert!(panes.len() <= 1);
                if fields.len() < 10 {
                    prop_assert!(panes.is_empty());
                }
            }
        }
    }
}
