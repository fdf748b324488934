//! The local probe: one row per roster agent, plus the sessions on the same
//! sockets that the roster does not name.
//!
//! Cost is constant in the number of agents: one `tmux list-panes -a` per
//! distinct socket (a roster normally has one), one `systemctl --user show`
//! for all units (none when the host has no user systemd), and one read per
//! heartbeat file. tmux and systemctl run in parallel.

use crate::systemd::{self, UnitStates};
use crate::tmux::{Tmux, TmuxError};
use fleet_core::heartbeat::{self, HealthReport};
use fleet_core::names::{AgentName, DnsLabel};
use fleet_core::record::{AgentRecord, PaneState, SystemdState};
use fleet_core::roster::{AgentSpec, HeartbeatSource, Roster, TmuxSocket};
use fleet_core::runtime;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

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
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Tmux(#[from] TmuxError),
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
}

/// Probe the host: every roster agent that runs here, plus unmanaged sessions.
/// A socket that fails is left out (see [`probe_report`] for its error); this
/// fails only when every socket fails.
pub fn probe(roster: &Roster, cx: &ProbeContext) -> Result<Vec<AgentRecord>, ProbeError> {
    let (rows, mut failed, sockets) = probe_inner(roster, cx);
    if failed.len() == sockets && !failed.is_empty() {
        return Err(failed.swap_remove(0).1.into());
    }
    Ok(rows)
}

/// Probe the host; one socket that cannot be listed does not hide the others.
pub fn probe_report(roster: &Roster, cx: &ProbeContext) -> ProbeReport {
    let (rows, failed, _) = probe_inner(roster, cx);
    let socket_errors =
        failed.into_iter().map(|(socket, e, agents)| SocketError { socket, error: e.to_string(), agents }).collect();
    ProbeReport { rows, socket_errors }
}

type Failed = Vec<(TmuxSocket, TmuxError, Vec<String>)>;

/// The rows, the sockets that failed (with their agents), and how many sockets were asked.
fn probe_inner(roster: &Roster, cx: &ProbeContext) -> (Vec<AgentRecord>, Failed, usize) {
    let agents: Vec<&AgentSpec> = roster.agents_on(&cx.host).collect();
    let sockets: BTreeSet<TmuxSocket> =
        std::iter::once(roster.socket.clone()).chain(agents.iter().map(|a| roster.socket_of(a).clone())).collect();
    let units: Vec<String> = agents.iter().map(|a| systemd::agent_unit(a.name.as_str())).collect();

    // systemd and the first socket on their own threads, the rest here: all at once.
    let (listings, unit_states) = std::thread::scope(|s| {
        let sd = s.spawn(|| if cx.systemd { systemd::show(&units) } else { None });
        let others: Vec<_> =
            sockets.iter().skip(1).map(|sock| s.spawn(|| list_sessions(&Tmux::new(sock.clone())))).collect();
        let mut listings = vec![list_sessions(&Tmux::new(sockets.first().expect("the roster's socket").clone()))];
        listings.extend(others.into_iter().map(|t| t.join().expect("tmux probe thread")));
        (listings, sd.join().expect("systemd probe thread"))
    });
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
    (rows, failed, asked)
}

/// The first pane of each session, by session name.
type Sessions = BTreeMap<String, Pane>;

fn list_sessions(tmux: &Tmux) -> Result<Sessions, TmuxError> {
    match tmux.run(["list-panes", "-a", "-F", PANE_FORMAT], None) {
        Ok(out) => Ok(first_panes(parse_panes(&out))),
        Err(e) if e.is_no_server() => Ok(BTreeMap::new()),
        Err(e) => Err(e),
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
    let hb_path = heartbeat::heartbeat_path(&cx.run_dir, name);
    match std::fs::read(&hb_path) {
        Ok(bytes) => heartbeat::assess(Some(&String::from_utf8_lossy(&bytes)), cx.now, cx.interval_secs),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => heartbeat::assess(None, cx.now, cx.interval_secs),
        Err(e) => HealthReport::unknown(format!("cannot read {}: {e}", hb_path.display()), cx.interval_secs),
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TestServer;
    use fleet_core::heartbeat::{BeatStatus, Health};

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
        // The old API keeps working: the rows of the sockets that answered.
        assert_eq!(probe(&roster, &cx).unwrap(), report.rows);
        // Only when every socket fails is the probe an error.
        let all_bad = Roster::parse(&format!(
            "tmux: {{ socket_path: \"{bad}\" }}\nagents:\n  - {{ name: b, runtime: claude }}\n"
        ))
        .unwrap();
        assert!(probe(&all_bad, &cx).is_err());
        assert_eq!(probe_report(&all_bad, &cx).socket_errors.len(), 1);
    }
}
