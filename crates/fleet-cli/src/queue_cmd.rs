//! `fleet queue`: the durable queues of the mesh (`fleet send --queue`), and cancelling.

use crate::exit::{self, CliResult};
use crate::{node, out, table};
use anyhow::anyhow;
use fleet_core::record::{HostState, HostStatus};
use fleet_proto::v1;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct QueueArgs {
    #[command(subcommand)]
    pub cmd: Option<QueueCmd>,
    /// Print a JSON array: one object per message (`"record": "message"`), then one per host.
    #[arg(long)]
    pub json: bool,
    /// Only these hosts (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum QueueCmd {
    /// Cancel a queued message that is not being typed: ID@HOST as `fleet queue` shows it
    /// (a bare ID: the local node's host).
    Cancel {
        /// ID@HOST, or ID.
        id: String,
        /// Print the message as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: QueueArgs) -> CliResult {
    match args.cmd {
        Some(QueueCmd::Cancel { id, json }) => cancel(&id, json),
        None => list(&args),
    }
}

fn list(args: &QueueArgs) -> CliResult {
    let rt = node::runtime()?;
    let resp = rt.block_on(async {
        let mut client = fleet_node::client::queue(&node::target()).await.map_err(node::unreachable)?;
        let req = v1::ListQueueRequest { scope: v1::Scope::Mesh as i32, hosts: args.hosts.clone(), deadline_ms: 0 };
        client.list_queue(req).await.map_err(node::status)
    })?;
    let resp = resp.into_inner();
    let mut messages = resp.messages;
    messages.sort_by(|a, b| (&a.host, &a.agent, a.seq).cmp(&(&b.host, &b.agent, b.seq)));
    let hosts: Vec<HostStatus> = resp.hosts.into_iter().map(HostStatus::from).collect();
    if args.json {
        let mut rows: Vec<serde_json::Value> = messages.iter().map(fleet_node::json::queued).collect();
        rows.extend(fleet_node::json::rows(&[], &hosts));
        return out::line(serde_json::to_string_pretty(&rows).map_err(exit::failed)?);
    }
    let now = fleet_node::live::now_ms();
    let secs = |ms: i64| (ms / 1000).max(0);
    let rows: Vec<Vec<String>> = messages
        .iter()
        .map(|m| {
            let when = if m.finished_unix_ms > 0 {
                format!("{} ago", table::duration(secs(now - m.finished_unix_ms)))
            } else {
                format!("in {}", table::duration(secs(m.expires_unix_ms - now)))
            };
            vec![
                format!("{}@{}", m.id, m.host),
                m.agent.clone(),
                m.state.clone(),
                table::duration(secs(now - m.created_unix_ms)),
                when,
                m.source.clone(),
                m.preview.clone(),
                m.detail.clone(),
            ]
        })
        .collect();
    let written = if rows.is_empty() {
        out::line("no queued messages")
    } else {
        out::print(&table::render(&["ID", "AGENT", "STATE", "AGE", "EXPIRES/ENDED", "FROM", "TEXT", "DETAIL"], &rows))
    };
    for h in hosts.iter().filter(|h| h.state != HostState::Ok) {
        eprintln!(
            "fleet: host {}: {} ({}); its queue is not listed",
            h.host,
            serde_json::to_value(h.state).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
            h.detail.clone().unwrap_or_default()
        );
    }
    written
}

fn cancel(target: &str, json: bool) -> CliResult {
    let (id, host) = match target.split_once('@') {
        Some((id, host)) => (id.to_string(), host.to_string()),
        None => (target.to_string(), String::new()),
    };
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(exit::usage(anyhow!(
            "{target:?} is not a queued message's id: give ID@HOST as `fleet queue` shows it"
        )));
    }
    let rt = node::runtime()?;
    let resp = rt.block_on(async {
        let mut client = fleet_node::client::queue(&node::target()).await.map_err(node::unreachable)?;
        client.cancel_queued(v1::CancelQueuedRequest { tenant_id: String::new(), host, id }).await.map_err(node::status)
    })?;
    let m = resp.into_inner().message.unwrap_or_default();
    if json {
        println!("{}", fleet_node::json::queued(&m));
    } else {
        println!("cancelled: {}@{} for {} ({})", m.id, m.host, m.agent, m.preview);
    }
    Ok(())
}
