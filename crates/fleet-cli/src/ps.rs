//! `fleet ps`: one row per agent, then one row per host (through the node).

use crate::context::{GlobalArgs, Local};
use crate::exit::{self, CliResult};
use crate::{node, out, table};
use fleet_core::record::{AgentRecord, HostState, HostStatus};
use fleet_proto::v1;
use fleet_tmux::probe::{ProbeContext, probe_report};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// Print a JSON array of agent and host objects (docs/protocol.md).
    #[arg(long)]
    pub json: bool,
    /// Read this host directly, without a node.
    #[arg(long)]
    pub local: bool,
    /// Only these hosts (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Redraw every second until Ctrl-C.
    #[arg(long, conflicts_with = "json")]
    pub watch: bool,
    /// How long the mesh listing waits for slow hosts, in milliseconds [default: the node's, 2000].
    #[arg(long, value_name = "MS")]
    pub deadline: Option<u32>,
    /// Ask every host now (one round trip to each, up to the deadline) instead of
    /// answering from the node's replicated view of the mesh.
    #[arg(long, conflicts_with = "local")]
    pub fresh: bool,
}

fn local_rows(g: &GlobalArgs, hosts: &[String]) -> CliResult<(Vec<AgentRecord>, Vec<HostStatus>)> {
    let local = Local::load(g)?;
    if let Some(other) = hosts.iter().find(|h| !h.eq_ignore_ascii_case(local.host.as_str())) {
        return Err(exit::usage(anyhow::anyhow!(
            "--local lists only this host ({}), not {other}; drop --local to list the mesh",
            local.host
        )));
    }
    let cx = ProbeContext {
        tenant_id: local.tenant_id.clone(),
        host: local.host.clone(),
        run_dir: local.run_dir.clone(),
        interval_secs: local.interval_secs,
        now: fleet_tmux::hbwriter::now_unix(),
        systemd: true,
        call_timeout: fleet_tmux::probe::DEFAULT_CALL_TIMEOUT,
        helpers: None,
    };
    let report = probe_report(&local.roster, &cx);
    for e in &report.socket_errors {
        eprintln!(
            "fleet: {} could not be probed ({}); not shown: {}",
            e.socket,
            e.error,
            if e.agents.is_empty() { "no roster agents".into() } else { e.agents.join(", ") }
        );
    }
    if let Some(e) = &report.systemd_error {
        eprintln!("fleet: systemd could not be probed: {e}");
    }
    if report.rows.is_empty() && !report.socket_errors.is_empty() {
        return Err(exit::CliError::quiet(exit::Code::Failed));
    }
    let mut rows = report.rows;
    if !hosts.is_empty() {
        rows.retain(|r| hosts.iter().any(|h| h.eq_ignore_ascii_case(&r.host)));
    }
    judge_here(&local, &mut rows);
    Ok((rows, Vec::new()))
}

/// Activity without a node: one look at the screens (so no "unchanged for"
/// history: an interrupted turn is only caught by a node) and the hook files.
fn judge_here(local: &Local, rows: &mut [AgentRecord]) {
    use fleet_tmux::screen;
    let (rules, problem) = screen::load_rules(&local.paths.mosaic_home);
    if let Some(p) = problem {
        eprintln!("fleet: {p}");
    }
    let now = fleet_node::live::now_ms();
    let mut seen = std::collections::BTreeMap::new();
    screen::remember(&mut seen, screen::Screens::default().read(&local.roster, rows, &rules), now);
    for row in rows.iter_mut() {
        row.activity = screen::judge(row, &local.run_dir, seen.get(&row.name), &rules, None, now);
    }
}

/// The mesh's listing from the node: its agent rows as they came, and its host rows.
async fn mesh_rows(args: &PsArgs) -> CliResult<(Vec<v1::Agent>, Vec<HostStatus>)> {
    let mut client = fleet_node::client::fleet(&node::target()).await.map_err(node::unreachable)?;
    let req = v1::ListAgentsRequest {
        scope: v1::Scope::Mesh as i32,
        hosts: args.hosts.clone(),
        deadline_ms: args.deadline.unwrap_or(0),
        fresh: args.fresh,
    };
    let resp = client.list_agents(req).await.map_err(node::status)?.into_inner();
    Ok((resp.agents, resp.hosts.into_iter().map(HostStatus::from).collect()))
}

pub fn run(args: PsArgs, g: &GlobalArgs) -> CliResult {
    let rt = node::runtime()?;
    if args.json && !args.local {
        // Each row becomes a record as it is written: a mesh's 1,100 rows in a second
        // vector cost the CLI 47 page faults more a call (docs/benchmarks.md, "Twelfth pass").
        let (agents, hosts) = rt.block_on(mesh_rows(&args))?;
        return write_json(agents.into_iter().map(AgentRecord::from), &hosts);
    }
    let fetch = || {
        if args.local {
            local_rows(g, &args.hosts)
        } else {
            let (agents, hosts) = rt.block_on(mesh_rows(&args))?;
            Ok((agents.into_iter().map(AgentRecord::from).collect(), hosts))
        }
    };
    if args.watch {
        loop {
            let (agents, hosts) = fetch()?;
            // Clear the screen and home the cursor, then draw.
            out::print(&format!("\x1b[H\x1b[2J{}", render_all(&agents, &hosts)))?;
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let (agents, hosts) = fetch()?;
    if args.json {
        return write_json(agents.into_iter(), &hosts);
    }
    out::print(&render_all(&agents, &hosts))
}

/// `fleet ps --json`: the agent rows, then the host rows, as one JSON array
/// ([`fleet_node::json::Row`]), written as the rows come.
fn write_json(agents: impl Iterator<Item = AgentRecord>, hosts: &[HostStatus]) -> CliResult {
    use fleet_node::json::Row;
    use serde::ser::{SerializeSeq, Serializer};
    use std::io::Write;
    // 64 KiB writes: a mesh's listing is hundreds of KB (16 writes, not 120, per 1,000 rows).
    let stdout = std::io::stdout().lock();
    grow_pipe(&stdout);
    let mut w = std::io::BufWriter::with_capacity(1 << 16, stdout);
    let mut json = serde_json::Serializer::pretty(&mut w);
    let mut seq = json.serialize_seq(None).map_err(out::json)?;
    for a in agents {
        seq.serialize_element(&Row::Agent(&a)).map_err(out::json)?;
    }
    for h in hosts {
        seq.serialize_element(&Row::Host(h)).map_err(out::json)?;
    }
    seq.end().map_err(out::json)?;
    writeln!(w).and_then(|()| w.flush()).map_err(out::io)
}

/// When stdout is a pipe smaller than 1 MiB (the most an unprivileged process
/// may ask for), grow it to that: with the kernel's 64 KiB, the CLI waits for
/// its reader at every 64 KiB of a mesh's listing (1,100 rows are about 900 KB).
/// Anything else (a terminal, a file) refuses, and nothing changes.
fn grow_pipe(out: &impl std::os::fd::AsFd) {
    const WANT: usize = 1 << 20;
    if rustix::pipe::fcntl_getpipe_size(out).is_ok_and(|now| now < WANT) {
        let _ = rustix::pipe::fcntl_setpipe_size(out, WANT);
    }
}

fn render_all(agents: &[AgentRecord], hosts: &[HostStatus]) -> String {
    let mut out = render(agents);
    if !hosts.is_empty() {
        out.push('\n');
        out.push_str(&render_hosts(hosts));
    }
    out
}

pub const HEADERS: &[&str] = &[
    "NAME", "TENANT", "HOST", "CLASS", "RUNTIME", "SYSTEMD", "PANE", "PID", "CMD", "IDLE", "HEALTH", "AGE", "ACTIVITY",
    "FLAGS",
];

/// `working 2m hook`: the state, for how long (as this machine's clock sees
/// the node's `since`), and its source.
pub fn activity_cell(a: &fleet_core::activity::Activity, now_ms: i64) -> String {
    activity_cell_in(a, now_ms, false)
}

fn activity_cell_in(a: &fleet_core::activity::Activity, now_ms: i64, colour: bool) -> String {
    use fleet_core::activity::State;
    let code = match a.state {
        State::Working => "36",
        State::Waiting => "1;33",
        State::Idle => "32",
        State::Exited => "31",
        State::Unknown => "2",
    };
    let state = table::paint(a.state.as_str(), code, colour);
    if a.since_unix_ms <= 0 {
        return format!("{state} {}", a.source.as_str());
    }
    let age = table::duration(((now_ms - a.since_unix_ms) / 1000).max(0));
    format!("{state} {age} {}", a.source.as_str())
}

fn health_cell(h: fleet_core::heartbeat::Health, colour: bool) -> String {
    use fleet_core::heartbeat::Health;
    let code = match h {
        Health::Healthy => "32",
        Health::Stale => "33",
        Health::Unknown => "2",
    };
    table::paint(h.as_str(), code, colour)
}

fn flags(r: &AgentRecord) -> String {
    let mut f = Vec::new();
    if !r.managed {
        f.push("unmanaged");
    }
    if r.drift {
        f.push("drift");
    }
    if r.boot_enable {
        f.push("boot-enable");
    }
    if r.in_copy_mode {
        f.push("copy-mode");
    }
    f.join(",")
}

/// The table of agent rows.
pub fn render(rows: &[AgentRecord]) -> String {
    let dash = || "-".to_string();
    let now = fleet_node::live::now_ms();
    let colour = table::colour();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.tenant_id.clone(),
                r.host.clone(),
                r.class.clone().unwrap_or_else(dash),
                r.runtime.clone().unwrap_or_else(dash),
                r.systemd.short(),
                r.pane.to_string(),
                r.pane_pid.map(|p| p.to_string()).unwrap_or_else(dash),
                r.current_command.clone().unwrap_or_else(dash),
                r.idle_seconds.map(|s| table::duration(s as i64)).unwrap_or_else(dash),
                health_cell(r.heartbeat.health, colour),
                r.heartbeat.age_seconds.map(table::duration).unwrap_or_else(dash),
                activity_cell_in(&r.activity, now, colour),
                flags(r),
            ]
        })
        .collect();
    if cells.is_empty() {
        return "no agents\n".into();
    }
    table::render(HEADERS, &cells)
}

/// A host view older than this is shown with its age (a node probes every
/// 2 s by default and says a probe hung after at least 5 s).
pub const STALE_VIEW_MS: i64 = 10_000;

/// "view 42s old" when the host's view is older than [`STALE_VIEW_MS`] at
/// `now_ms` (this machine's clock against the node's: a skew of seconds shows).
pub fn stale_note(as_of_unix_ms: Option<i64>, now_ms: i64) -> Option<String> {
    let age = now_ms - as_of_unix_ms?;
    (age > STALE_VIEW_MS).then(|| format!("view {} old", table::duration(age / 1000)))
}

/// The table of host rows.
pub fn render_hosts(hosts: &[HostStatus]) -> String {
    let now = fleet_node::live::now_ms();
    let colour = table::colour();
    let cells: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            let state = match h.state {
                HostState::Ok => "ok",
                HostState::Unreachable => "unreachable",
                HostState::Timeout => "timeout",
                HostState::Error => "error",
            };
            // A replicated row's view is as old as the host's last change (nothing
            // changed since, or the row would be `stale`): its age says nothing.
            let stale = if h.heard_unix_ms.is_none() { stale_note(h.as_of_unix_ms, now) } else { None };
            let detail =
                [&h.detail, &h.roster_problem, &stale].into_iter().flatten().cloned().collect::<Vec<_>>().join("; ");
            let ok = h.state == HostState::Ok;
            let state = if h.stale { format!("{state} (stale)") } else { state.to_string() };
            vec![
                h.host.clone(),
                h.tenant_id.clone(),
                table::paint(&state, if ok && !h.stale { "32" } else { "31" }, colour),
                // A host that did not answer has no latency to show; a row from the
                // node's replicated view took no round trip.
                match (ok, h.heard_unix_ms) {
                    (false, _) => "-".into(),
                    (true, Some(_)) => "replica".into(),
                    (true, None) => format!("{} ms", h.latency_ms),
                },
                h.agent_count.to_string(),
                detail,
            ]
        })
        .collect();
    table::render(&["HOST", "TENANT", "STATE", "LATENCY", "AGENTS", "DETAIL"], &cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_view_shows_its_age_only_when_stale() {
        assert_eq!(stale_note(None, 50_000), None);
        assert_eq!(stale_note(Some(45_000), 50_000), None);
        assert_eq!(stale_note(Some(40_000), 50_000), None);
        assert_eq!(stale_note(Some(8_000), 50_000).as_deref(), Some("view 42s old"));
    }
}
