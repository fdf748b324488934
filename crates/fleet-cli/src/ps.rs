//! `fleet ps`: one row per agent.

use crate::context::{GlobalArgs, Local, Paths, require_node};
use crate::exit::{self, CliResult};
use crate::table;
use fleet_core::record::AgentRecord;
use fleet_tmux::probe::{ProbeContext, probe};

#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// Print a JSON array of agent objects (docs/protocol.md).
    #[arg(long)]
    pub json: bool,
    /// Read this host directly, without a node.
    #[arg(long)]
    pub local: bool,
    /// Only these hosts (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
}

pub fn run(args: PsArgs, g: &GlobalArgs) -> CliResult {
    if !args.local {
        return require_node(&Paths::from_env());
    }
    let local = Local::load(g)?;
    let cx = ProbeContext {
        tenant_id: local.tenant_id.clone(),
        host: local.host.clone(),
        run_dir: local.run_dir.clone(),
        interval_secs: local.interval_secs,
        now: fleet_tmux::hbwriter::now_unix(),
        systemd: true,
    };
    let mut rows = probe(&local.roster, &cx).map_err(exit::failed)?;
    if !args.hosts.is_empty() {
        rows.retain(|r| args.hosts.iter().any(|h| h.eq_ignore_ascii_case(&r.host)));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows).map_err(exit::failed)?);
    } else {
        print!("{}", render(&rows));
    }
    Ok(())
}

pub const HEADERS: &[&str] =
    &["NAME", "TENANT", "HOST", "CLASS", "RUNTIME", "SYSTEMD", "PANE", "PID", "CMD", "IDLE", "HEALTH", "AGE", "FLAGS"];

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
                r.heartbeat.health.to_string(),
                r.heartbeat.age_seconds.map(table::duration).unwrap_or_else(dash),
                flags(r),
            ]
        })
        .collect();
    if cells.is_empty() {
        return "no agents: the roster names none for this host and no session runs on its socket\n".into();
    }
    table::render(HEADERS, &cells)
}
