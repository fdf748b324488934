//! `fleet heartbeats` and `fleet peers`: following and inspecting the mesh.

use crate::exit::{self, CliResult};
use crate::{node, table};
use fleet_core::event::{Event, EventKind};
use fleet_proto::v1;

#[derive(Debug, clap::Args)]
pub struct HeartbeatsArgs {
    /// One JSON object per line (JSON lines).
    #[arg(long)]
    pub json: bool,
    /// Only these hosts (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Start with the current state of every agent.
    #[arg(long)]
    pub snapshot: bool,
}

#[derive(Debug, clap::Args)]
pub struct PeersArgs {
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
}

fn describe(e: &Event) -> String {
    match &e.kind {
        EventKind::Beat { heartbeat } => format!(
            "beat {} (pid {})",
            heartbeat.status.map(|s| s.as_str()).unwrap_or("?"),
            heartbeat.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
        ),
        EventKind::HealthChange { from, to, heartbeat } => {
            let why = heartbeat.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
            format!("health {from} -> {to}{why}")
        }
        EventKind::AgentAppeared { record } => {
            format!(
                "agent appeared: pane {}, health {}, activity {}",
                record.pane, record.heartbeat.health, record.activity.state
            )
        }
        EventKind::ActivityChange { from, activity } => {
            format!("activity {from} -> {} ({}: {})", activity.state, activity.source.as_str(), activity.detail)
        }
        EventKind::AgentGone => "agent gone".into(),
        EventKind::HostUp { address } => format!("host up ({address})"),
        EventKind::HostDown { reason } => format!("host down: {reason}"),
        EventKind::Lagged { dropped } => format!("lagged: {dropped} events dropped; a fresh snapshot follows"),
        EventKind::HostTick { status, .. } => format!("host tick ({} agents)", status.agent_count),
    }
}

fn clock(ms: i64) -> String {
    let t = fleet_core::heartbeat::Timestamp::from_unix(ms / 1000).to_rfc3339();
    format!("{}.{:03}", &t[11..19], ms.rem_euclid(1000))
}

pub fn heartbeats(args: HeartbeatsArgs) -> CliResult {
    let rt = node::runtime()?;
    rt.block_on(async {
        let mut client = fleet_node::client::fleet(&node::target()).await.map_err(node::unreachable)?;
        let req = v1::WatchHeartbeatsRequest {
            scope: v1::Scope::Mesh as i32,
            hosts: args.hosts.clone(),
            snapshot: args.snapshot,
            host_tick_ms: 0,
        };
        let mut stream = client.watch_heartbeats(req).await.map_err(node::status)?.into_inner();
        // A person at a terminal is told the stream is open: events may be
        // seconds apart (a heartbeat interval), and nothing is printed till then.
        if !args.snapshot && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            eprintln!(
                "fleet: following heartbeat, health, activity and host events of the mesh (Ctrl-C stops); \
                 --snapshot starts with every agent's current state"
            );
        }
        loop {
            let msg = tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                m = stream.message() => m,
            };
            match msg {
                Ok(Some(wire)) => {
                    let Ok(e) = Event::try_from(wire) else { continue };
                    if args.json {
                        println!("{}", serde_json::to_string(&e).map_err(exit::failed)?);
                    } else {
                        let who = if e.agent.is_empty() { e.host.clone() } else { format!("{}@{}", e.agent, e.host) };
                        println!("{}  {who}  {}", clock(e.observed_unix_ms), describe(&e));
                    }
                }
                Ok(None) => {
                    return Err(exit::unreachable(anyhow::anyhow!("the node closed the stream (shutting down?)")));
                }
                Err(s) => return Err(node::status(s)),
            }
        }
    })
}

pub fn peers(args: PeersArgs) -> CliResult {
    let rt = node::runtime()?;
    let peers = rt.block_on(async {
        let mut client = fleet_node::client::mesh(&node::target()).await.map_err(node::unreachable)?;
        Ok::<_, exit::CliError>(
            client.list_peers(v1::ListPeersRequest {}).await.map_err(node::status)?.into_inner().peers,
        )
    })?;
    let rows: Vec<serde_json::Value> = peers.iter().map(fleet_node::json::peer).collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows).map_err(exit::failed)?);
        return Ok(());
    }
    let now = fleet_node::live::now_ms();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let seen = r["last_seen_unix_ms"].as_i64().unwrap_or(0);
            vec![
                r["host"].as_str().filter(|h| !h.is_empty()).unwrap_or("?").to_string(),
                r["tenant_id"].as_str().unwrap_or("").to_string(),
                r["grpc_address"].as_str().unwrap_or("").to_string(),
                r["quic_address"].as_str().unwrap_or("").to_string(),
                r["state"].as_str().unwrap_or("").to_string(),
                r["incarnation"].to_string(),
                r["found_by"].as_str().unwrap_or("").to_string(),
                if seen > 0 { format!("{} ago", table::duration((now - seen) / 1000)) } else { "never".into() },
            ]
        })
        .collect();
    let head = ["HOST", "TENANT", "GRPC (TCP)", "QUIC (UDP)", "STATE", "INCARNATION", "FOUND BY", "LAST SEEN"];
    print!("{}", table::render(&head, &cells));
    Ok(())
}
