//! `fleet explain AGENT[@HOST]`: why an agent's activity is what `fleet ps`
//! says: the state and its source, the rule or hook that decided, and every
//! input (the hook file, the screen, the pane).

use crate::exit::{self, CliResult};
use crate::{node, table};
use anyhow::anyhow;
use fleet_core::activity::{HOOK_TTL_SECS, INTERRUPT_SECS};
use fleet_core::address::AgentAddr;
use fleet_core::record::AgentRecord;
use fleet_proto::v1;

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The agent: AGENT (this host) or AGENT@HOST.
    pub target: String,
    /// Print the agent's activity as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ExplainArgs) -> CliResult {
    let addr: AgentAddr = args.target.parse().map_err(exit::usage)?;
    let rt = node::runtime()?;
    let row = rt.block_on(async {
        let mut client = fleet_node::client::fleet(&node::target()).await.map_err(node::unreachable)?;
        let host = addr.host.as_ref().map(|h| h.to_string());
        let req = v1::ListAgentsRequest {
            scope: if host.is_some() { v1::Scope::Mesh } else { v1::Scope::Local } as i32,
            hosts: host.clone().into_iter().collect(),
            deadline_ms: 0,
            fresh: false,
        };
        let resp = client.list_agents(req).await.map_err(node::status)?.into_inner();
        if let Some(h) = resp.hosts.iter().find(|h| h.state != v1::HostState::Ok as i32) {
            return Err(exit::unreachable(anyhow!("host {} did not answer: {}", h.host, h.detail)));
        }
        let agents: Vec<AgentRecord> = resp.agents.into_iter().map(AgentRecord::from).collect();
        let known: Vec<String> = agents.iter().map(|a| a.name.clone()).collect();
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        let known = fleet_core::names::known(addr.agent.as_str(), &known);
        agents.into_iter().find(|a| a.name == addr.agent.as_str()).ok_or_else(|| {
            exit::failed(anyhow!("no agent {} on {} ({known})", addr.agent, host.as_deref().unwrap_or("this host")))
        })
    })?;
    if args.json {
        let v = serde_json::json!({
            "tenant_id": row.tenant_id, "host": row.host, "agent": row.name, "runtime": row.runtime,
            "pane": row.pane, "activity": row.activity,
        });
        return crate::out::line(v);
    }
    crate::out::print(&render(&row, fleet_node::live::now_ms()))
}

fn render(r: &AgentRecord, now_ms: i64) -> String {
    let a = &r.activity;
    let age = table::duration(((now_ms - a.since_unix_ms) / 1000).max(0));
    let pane = match (r.pane_pid, r.current_command.as_deref()) {
        (Some(pid), Some(cmd)) => format!("{} (pid {pid}, running {cmd})", r.pane),
        _ => r.pane.to_string(),
    };
    format!(
        "{}@{}: {} for {age}, from the {}\n  decided by: {}\n  hook file:  {}\n  screen:     {} (runtime {})\n  pane:       {pane}\n  rules:      a missing or dead pane is exited; a prompt or working marker on screen beats any hook;\n              a hook counts for {} min; a working hook gives way to an idle prompt unchanged for {INTERRUPT_SECS} s\n",
        r.name,
        r.host,
        a.state,
        a.source.as_str(),
        a.detail,
        or_dash(&a.hook),
        or_dash(&a.screen),
        r.runtime.as_deref().unwrap_or("-"),
        HOOK_TTL_SECS / 60,
    )
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}
