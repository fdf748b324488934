//! `fleet start|stop|restart AGENT|--all`.

use crate::context::{GlobalArgs, Local};
use crate::exit::{self, CliResult};
use crate::node;
use anyhow::anyhow;
use fleet_core::roster::AgentSpec;
use fleet_proto::v1;
use fleet_tmux::lifecycle::{self, StartEnv};

#[derive(Debug, clap::Args)]
pub struct LifecycleArgs {
    /// The agent (AGENT or AGENT@HOST).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub target: Option<String>,
    /// Every roster agent of this host.
    #[arg(long)]
    pub all: bool,
    /// Act on this host directly, without a node.
    #[arg(long)]
    pub local: bool,
    /// Print results as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug)]
pub enum Verb {
    Start,
    Stop,
    Restart,
}

pub fn run(verb: Verb, args: LifecycleArgs, g: &GlobalArgs) -> CliResult {
    let addr =
        args.target.as_deref().map(str::parse::<fleet_core::address::AgentAddr>).transpose().map_err(exit::usage)?;
    if !args.local {
        return via_node(verb, &args, addr.as_ref());
    }
    let local = Local::load(g)?;
    if let Some(h) = addr.as_ref().and_then(|a| a.host.as_ref())
        && h != &local.host
    {
        return Err(exit::usage(anyhow!("--local acts only on this host ({}), not on {h}", local.host)));
    }
    let agents: Vec<&AgentSpec> = match &addr {
        None => local.roster.agents_on(&local.host).collect(),
        Some(a) => match local.roster.agents_on(&local.host).find(|s| s.name == a.agent) {
            Some(s) => vec![s],
            None => {
                return Err(exit::failed(anyhow!(
                    "no such agent {} in the roster {} for host {} ({})",
                    a.agent,
                    local.roster_path.display(),
                    local.host,
                    local.known_agents(a.agent.as_str())
                )));
            }
        },
    };
    let env = StartEnv {
        fleet_exe: std::env::current_exe().map_err(exit::failed)?,
        mosaic_home: local.paths.mosaic_home.clone(),
        run_dir: local.run_dir.clone(),
        interval_secs: local.interval_secs,
        home: std::env::var_os("HOME").map(Into::into),
        tenant_id: local.tenant_id.clone(),
        host: local.host.to_string(),
    };
    let outcomes: Vec<(&AgentSpec, Result<lifecycle::Outcome, lifecycle::LifecycleError>)> = match verb {
        Verb::Start => lifecycle::start_many(&local.roster, &agents, &env),
        Verb::Stop => {
            agents.iter().map(|a| (*a, lifecycle::stop_and_clear(&local.roster, a, &local.run_dir))).collect()
        }
        Verb::Restart => {
            let stopped: Vec<_> =
                agents.iter().map(|a| (*a, lifecycle::stop_and_clear(&local.roster, a, &local.run_dir))).collect();
            let ok: Vec<&AgentSpec> = stopped.iter().filter(|(_, r)| r.is_ok()).map(|(a, _)| *a).collect();
            let mut started = lifecycle::start_many(&local.roster, &ok, &env);
            started.extend(stopped.into_iter().filter(|(_, r)| r.is_err()));
            started
        }
    };
    let mut failed = 0;
    let mut results = Vec::new();
    // Every failure is said on stderr even after stdout's reader has gone.
    let mut written = Ok(());
    for (agent, result) in outcomes {
        let (outcome, detail) = match result {
            Ok(o) => (o.as_str(), String::new()),
            Err(e) => {
                failed += 1;
                ("failed", format!("{e:#}"))
            }
        };
        if args.json {
            results.push(serde_json::json!({
                "tenant_id": local.tenant_id, "host": local.host.as_str(), "agent": agent.name.as_str(),
                "outcome": outcome, "detail": detail,
            }));
        } else if detail.is_empty() {
            if written.is_ok() {
                written = crate::out::line(format_args!("{}: {outcome}", agent.name));
            }
        } else {
            eprintln!("{}: {outcome}: {detail}", agent.name);
        }
    }
    if args.json {
        written = crate::out::line(serde_json::Value::Array(results));
    }
    crate::out::verdict(written, (failed > 0).then_some(exit::Code::Failed))
}

fn via_node(verb: Verb, args: &LifecycleArgs, addr: Option<&fleet_core::address::AgentAddr>) -> CliResult {
    let req = v1::LifecycleRequest {
        tenant_id: String::new(),
        host: addr.and_then(|a| a.host.as_ref()).map(|h| h.to_string()).unwrap_or_default(),
        agent: addr.map(|a| a.agent.to_string()).unwrap_or_default(),
        all: args.all,
    };
    let rt = node::runtime()?;
    let results = rt.block_on(async {
        let mut client = fleet_node::client::fleet(&node::target()).await.map_err(node::unreachable)?;
        let mut results = Vec::new();
        if matches!(verb, Verb::Stop | Verb::Restart) {
            results = client.stop_agent(req.clone()).await.map_err(node::status)?.into_inner().results;
        }
        if matches!(verb, Verb::Start | Verb::Restart) {
            let started = client.start_agent(req).await.map_err(node::status)?.into_inner().results;
            // For restart, show the start's outcome, or the stop's failure.
            results.retain(|r| r.outcome == v1::LifecycleOutcome::Failed as i32);
            results.extend(started);
        }
        Ok::<_, exit::CliError>(results)
    })?;
    let mut failed = 0;
    let mut out = Vec::new();
    // Every failure is said on stderr even after stdout's reader has gone.
    let mut written = Ok(());
    for r in &results {
        let outcome = fleet_node::json::lifecycle_outcome(r.outcome);
        if outcome == "failed" {
            failed += 1;
        }
        if args.json {
            out.push(fleet_node::json::lifecycle(r));
        } else if r.detail.is_empty() {
            if written.is_ok() {
                written = crate::out::line(format_args!("{}@{}: {outcome}", r.agent, r.host));
            }
        } else {
            eprintln!("{}@{}: {outcome}: {}", r.agent, r.host, r.detail);
        }
    }
    if args.json {
        written = crate::out::line(serde_json::Value::Array(out));
    }
    crate::out::verdict(written, (failed > 0).then_some(exit::Code::Failed))
}
