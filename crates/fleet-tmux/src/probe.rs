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
use fleet_core::names::DnsLabel;
use fleet_core::record::{AgentRecord, PaneState, SystemdState};
use fleet_core::roster::{AgentSpec, Roster, TmuxSocket};
use fleet_core::runtime;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// The `list-panes -a` format: fixed fields first, the session name last so a
/// name holding a tab cannot shift the others.
pub const PANE_FORMAT: &str = "#{pane_id}\t#{window_index}\t#{pane_index}\t#{pane_dead}\t#{pane_pid}\t#{pane_in_mode}\t#{window_activity}\t#{pane_current_command}\t#{session_name}";

/// One pane as tmux lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pane {
    pub id: String,
    pub window: u32,
    pub index: u32,
    pub dead: bool,
    pub pid: Option<u32>,
    pub in_mode: bool,
    pub activity: Option<i64>,
    pub command: String,
    pub session: String,
}

/// Parse `list-panes -F PANE_FORMAT` output. Malformed lines are skipped.
pub fn parse_panes(out: &str) -> Vec<Pane> {
    out.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.splitn(9, '\t').collect();
            if f.len() != 9 {
                return None;
            }
            Some(Pane {
                id: f[0].to_string(),
                window: f[1].parse().ok()?,
                index: f[2].parse().ok()?,
                dead: f[3] == "1",
                pid: f[4].parse().ok().filter(|p| *p > 0),
                in_mode: f[5] == "1",
                activity: f[6].parse().ok(),
                command: f[7].to_string(),
                session: f[8].to_string(),
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

/// Probe the host: every roster agent that runs here, plus unmanaged sessions.
pub fn probe(roster: &Roster, cx: &ProbeContext) -> Result<Vec<AgentRecord>, ProbeError> {
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
    let mut by_socket: BTreeMap<TmuxSocket, Sessions> = BTreeMap::new();
    for (sock, listing) in sockets.into_iter().zip(listings) {
        by_socket.insert(sock, listing?);
    }

    let mut rows = Vec::with_capacity(agents.len());
    for agent in &agents {
        let sock = roster.socket_of(agent);
        let pane = by_socket.get(sock).and_then(|m| m.get(agent.name.as_str()));
        let unit = systemd_state(unit_states.as_ref(), &systemd::agent_unit(agent.name.as_str()));
        let mut row = row(cx, agent.name.as_str(), sock, pane, unit);
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
            rows.push(row(cx, name, sock, Some(pane), SystemdState::unavailable()));
        }
    }
    Ok(rows)
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

fn row(cx: &ProbeContext, name: &str, sock: &TmuxSocket, pane: Option<&Pane>, systemd: SystemdState) -> AgentRecord {
    let hb_path = heartbeat::heartbeat_path(&cx.run_dir, name);
    let hb = match std::fs::read(&hb_path) {
        Ok(bytes) => heartbeat::assess(Some(&String::from_utf8_lossy(&bytes)), cx.now, cx.interval_secs),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => heartbeat::assess(None, cx.now, cx.interval_secs),
        Err(e) => HealthReport::unknown(format!("cannot read {}: {e}", hb_path.display()), cx.interval_secs),
    };
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
        pane: match pane {
            None => PaneState::Missing,
            Some(p) if p.dead => PaneState::Dead,
            Some(_) => PaneState::Alive,
        },
        pane_pid: pane.and_then(|p| p.pid),
        current_command: pane.filter(|p| !p.dead).map(|p| p.command.clone()).filter(|c| !c.is_empty()),
        idle_seconds: pane.and_then(|p| p.activity).map(|a| (cx.now - a).max(0) as u64),
        in_copy_mode: pane.is_some_and(|p| p.in_mode),
        heartbeat: hb,
        drift: false,
        boot_enable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_pick_first_pane() {
        let out = "%3\t1\t0\t0\t300\t0\t100\tbash\ta\n%1\t0\t1\t1\t0\t1\t90\tclaude\ta\n%0\t0\t0\t0\t100\t0\t95\tnode\ta\n%5\t0\t0\t0\t55\t0\t1\tsh\tname\twith tab\nbad line\n";
        let panes = parse_panes(out);
        assert_eq!(panes.len(), 4);
        assert_eq!(panes[1].pid, None, "pid 0 of a dead pane is no pid");
        assert_eq!(panes[3].session, "name\twith tab");
        let first = first_panes(panes);
        assert_eq!(first["a"].id, "%0");
        assert_eq!(first["a"].command, "node");
        assert!(first.contains_key("name\twith tab"));
    }
}
