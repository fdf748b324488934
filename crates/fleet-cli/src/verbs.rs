//! The fleet's own verbs, mesh-wide, through the node: `fleet add`,
//! `fleet remove`, `fleet reset`, `fleet verify`, `fleet comms`.

use crate::context::{GlobalArgs, Local};
use crate::exit::{self, CliResult};
use crate::node;
use anyhow::anyhow;
use fleet_core::address::AgentAddr;
use fleet_proto::v1;
use serde_json::json;

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The new agent: NAME (this host) or NAME@HOST.
    pub target: String,
    /// Its runtime (claude, codex, pi, ...; `runtimes:` in the roster may say how to run it).
    #[arg(long, value_name = "R")]
    pub runtime: String,
    /// Its class: orchestrator, enhancer, implementer, reviewer, researcher, worker, ...
    #[arg(long, value_name = "C")]
    pub class: String,
    /// The model hint (MOSAIC_MODEL_HINT in its session).
    #[arg(long, value_name = "M")]
    pub model_hint: Option<String>,
    /// Add it to the roster (and enable its unit) without starting it.
    #[arg(long)]
    pub no_start: bool,
    /// Let a second orchestrator in (to move the role: add the new one, then remove the old).
    #[arg(long)]
    pub force: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// The agent: NAME (this host) or NAME@HOST.
    pub target: String,
    /// Keep its env file and its systemd unit's enablement (the roster entry and heartbeat still go).
    #[arg(long)]
    pub keep_files: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    /// The agent: NAME (this host) or NAME@HOST.
    pub target: String,
    /// Type the reset command without checking that the agent took it.
    #[arg(long)]
    pub no_verify: bool,
    /// How long the verify watches the pane, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 6000)]
    pub verify_timeout: u64,
    /// Print the receipt as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Only these hosts [default: every host of the mesh].
    #[arg(long = "host", value_name = "H")]
    pub hosts: Vec<String>,
    /// Print the problems as JSON (an array; empty when all is well).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct CommsArgs {
    /// The agent: NAME (this host) or NAME@HOST.
    pub target: String,
    /// Put the block into the agent's context file (CLAUDE.md for claude,
    /// AGENTS.md for the others, in its working directory): a marked region,
    /// replaced on every rewrite, the rest of the file untouched. Agents of
    /// this host only.
    #[arg(long)]
    pub write: bool,
}

fn address(target: &str) -> CliResult<AgentAddr> {
    target.parse().map_err(exit::usage)
}

fn host_of(addr: &AgentAddr) -> String {
    addr.host.as_ref().map(|h| h.to_string()).unwrap_or_default()
}

fn print_change(r: &v1::RosterChangeResponse, json_out: bool) -> CliResult {
    let started_failed = r.lifecycle.as_ref().is_some_and(|l| l.outcome == v1::LifecycleOutcome::Failed as i32);
    if json_out {
        let change = if r.change == v1::RosterChange::Added as i32 { "added" } else { "removed" };
        println!(
            "{}",
            json!({
                "tenant_id": r.tenant_id, "host": r.host, "agent": r.agent, "runtime": r.runtime,
                "class": r.class, "change": change,
                "lifecycle": r.lifecycle.as_ref().map(fleet_node::json::lifecycle),
                "done": r.done, "warnings": r.warnings,
            })
        );
    } else {
        if r.change == v1::RosterChange::Added as i32 {
            println!("Added {} ({}/{}) to the fleet on {}.", r.agent, r.runtime, r.class, r.host);
        } else {
            println!("Removed {} ({}/{}) from the fleet on {}.", r.agent, r.runtime, r.class, r.host);
        }
        for d in &r.done {
            println!("  {d}");
        }
        if let Some(l) = &r.lifecycle {
            let outcome = fleet_node::json::lifecycle_outcome(l.outcome);
            if l.detail.is_empty() {
                println!("  {}@{}: {outcome}", l.agent, l.host);
            } else {
                eprintln!("  {}@{}: {outcome}: {}", l.agent, l.host, l.detail);
            }
        }
        for w in &r.warnings {
            eprintln!("warning: {w}");
        }
    }
    if started_failed {
        return Err(exit::CliError::new(
            exit::Code::Failed,
            anyhow!(
                "{}@{} is in the roster, but it did not start; fix that and run `fleet start {}@{}`",
                r.agent,
                r.host,
                r.agent,
                r.host
            ),
        ));
    }
    Ok(())
}

pub fn add(args: AddArgs) -> CliResult {
    let addr = address(&args.target)?;
    let req = v1::AddAgentRequest {
        tenant_id: String::new(),
        host: host_of(&addr),
        agent: addr.agent.to_string(),
        runtime: args.runtime.clone(),
        class: args.class.clone(),
        model_hint: args.model_hint.clone().unwrap_or_default(),
        no_start: args.no_start,
        force: args.force,
    };
    let rt = node::runtime()?;
    let r = rt.block_on(async {
        let mut client = fleet_node::client::fleet(&node::target()).await.map_err(node::unreachable)?;
        client.add_agent(req).await.map_err(node::status)
    })?;
    print_change(&r.into_inner(), args.json)
}

pub fn remove(args: RemoveArgs) -> CliResult {
    let addr = address(&args.target)?;
    let req = v1::RemoveAgentRequest {
        tenant_id: String::new(),
        host: host_of(&addr),
        agent: addr.agent.to_string(),
        keep_files: args.keep_files,
    };
    let rt = node::runtime()?;
    let r = rt.block_on(async {
        let mut client = fleet_node::client::fleet(&node::target()).await.map_err(node::unreachable)?;
        client.remove_agent(req).await.map_err(node::status)
    })?;
    print_change(&r.into_inner(), args.json)
}

pub fn reset(args: ResetArgs) -> CliResult {
    let addr = address(&args.target)?;
    let req = v1::ResetAgentRequest {
        tenant_id: String::new(),
        host: host_of(&addr),
        agent: addr.agent.to_string(),
        verify: !args.no_verify,
        verify_timeout_ms: args.verify_timeout.min(u64::from(u32::MAX)) as u32,
    };
    let rt = node::runtime()?;
    let receipt = rt
        .block_on(async {
            let mut client = fleet_node::client::fleet(&node::target()).await.map_err(node::unreachable)?;
            client.reset_agent(req).await.map_err(node::status)
        })?
        .into_inner();
    let outcome = v1::DeliveryOutcome::try_from(receipt.outcome).unwrap_or(v1::DeliveryOutcome::Unspecified);
    if args.json {
        println!("{}", fleet_node::json::receipt(&receipt));
    } else if outcome == v1::DeliveryOutcome::NotFound {
        eprintln!("fleet: {}", receipt.detail);
    } else {
        let word = fleet_proto::convert::outcome_word(outcome);
        println!("reset {word}: {}@{} ({}, {} ms)", receipt.agent, receipt.host, receipt.detail, receipt.elapsed_ms);
    }
    match outcome {
        v1::DeliveryOutcome::Delivered | v1::DeliveryOutcome::Accepted => Ok(()),
        _ => Err(exit::CliError::quiet(exit::Code::Failed)),
    }
}

/// The hosts to verify: the given ones, else this node's and every peer's
/// (a down peer too: it is a problem to report).
async fn verify_hosts(args: &VerifyArgs) -> CliResult<Vec<String>> {
    if !args.hosts.is_empty() {
        return Ok(args.hosts.clone());
    }
    let mut mesh = fleet_node::client::mesh(&node::target()).await.map_err(node::unreachable)?;
    let peers = mesh.list_peers(v1::ListPeersRequest {}).await.map_err(node::status)?.into_inner().peers;
    let mut hosts: Vec<String> = peers.into_iter().map(|p| p.host).collect();
    hosts.dedup();
    Ok(hosts)
}

pub fn verify(args: VerifyArgs) -> CliResult {
    let rt = node::runtime()?;
    let (problems, hosts, agents) = rt.block_on(async {
        let hosts = verify_hosts(&args).await?;
        let mut client = fleet_node::client::fleet(&node::target()).await.map_err(node::unreachable)?;
        let mut problems: Vec<v1::VerifyProblem> = Vec::new();
        let mut agents = 0;
        for host in &hosts {
            let req = v1::VerifyHostRequest { tenant_id: String::new(), host: host.clone() };
            match client.verify_host(req).await {
                Ok(r) => {
                    let r = r.into_inner();
                    agents += r.agents;
                    problems.extend(r.problems);
                }
                Err(s) => problems.push(v1::VerifyProblem {
                    tenant_id: String::new(),
                    host: host.clone(),
                    agent: String::new(),
                    problem: format!("host {host} could not be checked: {}", s.message()),
                    next_step: "`fleet peers` shows whether it is up; start its `fleet node`".into(),
                }),
            }
        }
        Ok::<_, exit::CliError>((problems, hosts, agents))
    })?;
    let failed = (!problems.is_empty()).then_some(exit::Code::Failed);
    if args.json {
        let out: Vec<serde_json::Value> = problems
            .iter()
            .map(|p| {
                json!({"tenant_id": p.tenant_id, "host": p.host, "agent": p.agent, "problem": p.problem,
                       "next_step": p.next_step})
            })
            .collect();
        return crate::out::verdict(crate::out::line(serde_json::Value::Array(out)), failed);
    }
    let written = if problems.is_empty() {
        crate::out::line(format_args!(
            "ok: {agents} agent(s) on {} host(s) ({}): sessions, units and heartbeats as they should be",
            hosts.len(),
            hosts.join(", ")
        ))
    } else {
        let text: String = problems
            .iter()
            .map(|p| {
                let who = if p.agent.is_empty() { p.host.clone() } else { format!("{}@{}", p.agent, p.host) };
                format!("{who}: {}; next: {}\n", p.problem, p.next_step)
            })
            .collect();
        let written = crate::out::print(&text);
        eprintln!("{} problem(s) on {} host(s) checked", problems.len(), hosts.len());
        written
    };
    crate::out::verdict(written, failed)
}

/// The comms block of `addr`, from the mesh's agents as the node lists them;
/// the host the agent is on, and the node's own host.
fn comms_block(addr: &AgentAddr) -> CliResult<(String, String, String)> {
    let rt = node::runtime()?;
    let (own_host, rows) = rt.block_on(async {
        let mut mesh = fleet_node::client::mesh(&node::target()).await.map_err(node::unreachable)?;
        let info = mesh.node_info(v1::NodeInfoRequest {}).await.map_err(node::status)?.into_inner();
        let mut client = fleet_node::client::fleet(&node::target()).await.map_err(node::unreachable)?;
        let req = v1::ListAgentsRequest { scope: v1::Scope::Mesh as i32, ..Default::default() };
        let rows = client.list_agents(req).await.map_err(node::status)?.into_inner().agents;
        Ok::<_, exit::CliError>((info.host, rows))
    })?;
    let host = addr.host.as_ref().map(|h| h.to_string()).unwrap_or_else(|| own_host.clone());
    let peers: Vec<fleet_core::comms::Peer> = rows
        .iter()
        .filter(|a| a.managed)
        .map(|a| fleet_core::comms::Peer {
            host: a.host.clone(),
            name: a.name.clone(),
            class: Some(a.class.clone()).filter(|c| !c.is_empty()),
        })
        .collect();
    let me = addr.agent.as_str();
    if !peers.iter().any(|p| p.name == me && p.host.eq_ignore_ascii_case(&host)) {
        let known: Vec<String> = peers.iter().map(|p| format!("{}@{}", p.name, p.host)).collect();
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        return Err(exit::failed(anyhow!(
            "no agent {me}@{host} in the mesh ({})",
            fleet_core::names::known(&format!("{me}@{host}"), &known)
        )));
    }
    Ok((fleet_core::comms::render(&host, me, &peers), host, own_host))
}

pub fn comms(args: CommsArgs, g: &GlobalArgs) -> CliResult {
    let addr = address(&args.target)?;
    let (block, host, own_host) = comms_block(&addr)?;
    if !args.write {
        return crate::out::print(&block);
    }
    if !host.eq_ignore_ascii_case(&own_host) {
        return Err(exit::usage(anyhow!(
            "--write writes into {}'s context file, which is on host {host}: run `fleet comms {} --write` there",
            addr.agent,
            addr.agent
        )));
    }
    // The node's host names this host (the certificate's, whatever the hostname says).
    let local = Local::load(&GlobalArgs { hostname: Some(own_host.clone()), ..g.clone() })?;
    let spec = local.roster.agent_on(&local.host, addr.agent.as_str()).map_err(|e| exit::failed(anyhow!(e)))?;
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let path = fleet_tmux::roster_file::context_path(&local.roster, spec, home.as_deref());
    fleet_tmux::roster_file::write_comms(&path, &host, addr.agent.as_str(), &block)
        .map_err(|e| exit::failed(anyhow!("cannot write {}: {e}", path.display())))?;
    println!("wrote the Fleet Comms block of {}@{host} into {}", addr.agent, path.display());
    Ok(())
}
