//! `fleet heartbeats` and `fleet peers`: following and inspecting the mesh.

use crate::exit::{self, CliResult};
use crate::{node, out, table};
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
                        out::line(serde_json::to_string(&e).map_err(exit::failed)?)?;
                    } else {
                        let who = if e.agent.is_empty() { e.host.clone() } else { format!("{}@{}", e.agent, e.host) };
                        out::line(format_args!("{}  {who}  {}", clock(e.observed_unix_ms), describe(&e)))?;
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
    let (peers, certs) = rt.block_on(async {
        let channel = fleet_node::client::connect(&node::target()).await.map_err(node::unreachable)?;
        let mut client =
            v1::mesh_client::MeshClient::new(channel.clone()).max_decoding_message_size(fleet_node::client::MAX_ANSWER);
        let peers = client.list_peers(v1::ListPeersRequest {}).await.map_err(node::status)?.into_inner().peers;
        // Each node's certificate; a node without the Certs service (older) leaves it out.
        let mut certs =
            v1::certs_client::CertsClient::new(channel).max_decoding_message_size(fleet_node::client::MAX_ANSWER);
        let certs = match certs.cert_status(v1::CertStatusRequest { mesh: true }).await {
            Ok(r) => r.into_inner().hosts,
            Err(_) => Vec::new(),
        };
        Ok::<_, exit::CliError>((peers, certs))
    })?;
    let cert_of = |host: &str| certs.iter().find(|c| c.host == host);
    let rows: Vec<serde_json::Value> = peers
        .iter()
        .map(|p| {
            let mut row = fleet_node::json::peer(p);
            row["certificate"] = cert_of(&p.host).map(fleet_node::json::host_cert).unwrap_or(serde_json::Value::Null);
            row
        })
        .collect();
    if args.json {
        return out::line(serde_json::to_string_pretty(&rows).map_err(exit::failed)?);
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
                cert_cell(cert_of(r["host"].as_str().unwrap_or("")), now),
            ]
        })
        .collect();
    let head =
        ["HOST", "TENANT", "GRPC (TCP)", "QUIC (UDP)", "STATE", "INCARNATION", "FOUND BY", "LAST SEEN", "CERTIFICATE"];
    let written = out::print(&table::render(&head, &cells));
    for c in &certs {
        if let Some(w) = cert_warning(c, now) {
            eprintln!("warning: {w}");
        }
    }
    written
}

/// `ok, 59d left`, `due, 2m left, renewal failing`, `?` when unknown.
fn cert_cell(c: Option<&v1::HostCert>, now: i64) -> String {
    let Some(c) = c.filter(|c| c.state != "unknown") else { return "?".into() };
    let left = table::duration((c.not_after_unix_ms - now).max(0) / 1000);
    let mut cell = if c.state == "expired" { "expired".to_string() } else { format!("{}, {left} left", c.state) };
    if !c.renew_error.is_empty() {
        cell.push_str(", renewal failing");
    }
    cell
}

/// A node whose certificate is past its renewal time and whose renewal fails, or that
/// expires soon: said well before it breaks.
pub fn cert_warning(c: &v1::HostCert, now: i64) -> Option<String> {
    let left = table::duration((c.not_after_unix_ms - now).max(0) / 1000);
    match (c.state.as_str(), c.renew_error.is_empty()) {
        ("expired", _) => Some(format!(
            "{}'s certificate has expired: it is out of the mesh until it has a new one (`fleet certs invite --host {}`              on the CA host, then `fleet join --force` there)",
            c.host, c.host
        )),
        ("expiring", _) | ("due", false) => Some(format!(
            "{}'s certificate expires in {left} and {}: {}",
            c.host,
            if c.renew_error.is_empty() { "is not renewed yet" } else { "renewal fails" },
            if c.renew_error.is_empty() { "is the CA host's node running?" } else { &c.renew_error }
        )),
        _ => None,
    }
}
