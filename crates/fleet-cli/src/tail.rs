//! `fleet tail AGENT[@HOST]`: the last lines of an agent's pane, on this host
//! or another (read-only; the viewer role may).

use crate::context::{GlobalArgs, Local};
use crate::exit::{self, CliResult};
use crate::node;
use anyhow::anyhow;
use fleet_core::address::AgentAddr;
use fleet_proto::v1;
use fleet_tmux::tail::{DEFAULT_LINES, MAX_LINES};
use fleet_tmux::tmux::Tmux;

#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// The agent: AGENT (this host) or AGENT@HOST.
    pub target: String,
    /// How many lines (screen and scrollback).
    #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = DEFAULT_LINES,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_LINES)))]
    pub lines: u32,
    /// Keep colours and attributes (the pane's escape sequences).
    #[arg(long)]
    pub ansi: bool,
    /// Read this host's tmux directly, without a node.
    #[arg(long)]
    pub local: bool,
    /// Print the lines as JSON, with the pane's size.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: TailArgs, g: &GlobalArgs) -> CliResult {
    let addr: AgentAddr = args.target.parse().map_err(exit::usage)?;
    let tail = if args.local { local(&args, &addr, g)? } else { via_node(&args, &addr)? };
    if args.json {
        let v = serde_json::json!({
            "tenant_id": tail.tenant_id, "host": tail.host, "agent": tail.agent, "lines": tail.lines,
            "pane_width": tail.pane_width, "pane_height": tail.pane_height,
            "captured_unix_ms": tail.captured_unix_ms,
        });
        println!("{v}");
    } else {
        for line in &tail.lines {
            println!("{line}");
        }
    }
    Ok(())
}

fn via_node(args: &TailArgs, addr: &AgentAddr) -> CliResult<v1::TailResponse> {
    let req = v1::TailRequest {
        tenant_id: String::new(),
        host: addr.host.as_ref().map(|h| h.to_string()).unwrap_or_default(),
        agent: addr.agent.to_string(),
        lines: args.lines,
        ansi: args.ansi,
    };
    let rt = node::runtime()?;
    rt.block_on(async {
        let mut client = fleet_node::client::fleet(&node::target()).await.map_err(node::unreachable)?;
        client.tail_pane(req).await.map(|r| r.into_inner()).map_err(node::status)
    })
}

fn local(args: &TailArgs, addr: &AgentAddr, g: &GlobalArgs) -> CliResult<v1::TailResponse> {
    let local = Local::load(g)?;
    if let Some(h) = &addr.host
        && h != &local.host
    {
        return Err(exit::usage(anyhow!("--local reads only this host ({}), not {h}; drop --local", local.host)));
    }
    let name = addr.agent.as_str();
    let spec = local.roster.agent_on(&local.host, name).map_err(|e| exit::failed(anyhow!(e)))?;
    let tmux = Tmux::new(local.roster.socket_of(spec).clone());
    let t = fleet_tmux::tail::tail(&tmux, name, args.lines, args.ansi).map_err(|e| {
        if e.is_no_target() {
            exit::failed(anyhow!(
                "agent {name} of host {} has no session (start it with `fleet start {name} --local`)",
                local.host
            ))
        } else {
            exit::failed(e)
        }
    })?;
    Ok(v1::TailResponse {
        tenant_id: local.tenant_id.clone(),
        host: local.host.to_string(),
        agent: name.to_string(),
        lines: t.lines,
        pane_width: t.width,
        pane_height: t.height,
        captured_unix_ms: fleet_node::live::now_ms(),
    })
}
