//! `fleet send AGENT[@HOST]`: deliver a message into an agent's pane.

use crate::context::{GlobalArgs, Local, Paths, require_node};
use crate::exit::{self, CliResult};
use anyhow::anyhow;
use fleet_core::address::AgentAddr;
use fleet_core::message::preamble;
use fleet_core::roster::TmuxSocket;
use fleet_tmux::send::{SendError, SendOptions, send};
use fleet_tmux::tmux::Tmux;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The target: AGENT (this host) or AGENT@HOST.
    pub target: String,
    /// The message text.
    #[arg(short = 'm', long = "message", value_name = "TEXT", conflicts_with = "file")]
    pub message: Option<String>,
    /// Read the message from FILE (`-` for stdin).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Confirm the agent took the message (accepted / draft / unverifiable).
    #[arg(long)]
    pub verify: bool,
    /// How long --verify watches the pane, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 6000)]
    pub verify_timeout: u64,
    /// Who sends, for the preamble [default: $MOSAIC_AGENT_NAME, else the user name].
    #[arg(long = "from", value_name = "LABEL")]
    pub from: Option<String>,
    /// Send on this host directly, without a node.
    #[arg(long)]
    pub local: bool,
    /// Print the receipt as JSON.
    #[arg(long)]
    pub json: bool,
}

fn read_text(args: &SendArgs) -> CliResult<String> {
    let read_stdin = || {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map(|_| s)
    };
    match (&args.message, &args.file) {
        (Some(m), _) => Ok(m.clone()),
        (None, Some(f)) if f.as_os_str() == "-" => read_stdin().map_err(|e| exit::usage(anyhow!("reading stdin: {e}"))),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| exit::usage(anyhow!("cannot read the message file {}: {e}", f.display()))),
        (None, None) if std::io::stdin().is_terminal() => {
            Err(exit::usage(anyhow!("no message: give -m TEXT, -f FILE, or pipe it on stdin")))
        }
        (None, None) => read_stdin().map_err(|e| exit::usage(anyhow!("reading stdin: {e}"))),
    }
}

pub fn run(args: SendArgs, g: &GlobalArgs) -> CliResult {
    let addr: AgentAddr = args.target.parse().map_err(exit::usage)?;
    if !args.local {
        return require_node(&Paths::from_env());
    }
    let local = Local::load(g)?;
    if let Some(h) = &addr.host
        && h != &local.host
    {
        return Err(exit::usage(anyhow!(
            "--local sends only on this host ({}), not to {h}; drop --local to send through the node",
            local.host
        )));
    }
    let text = read_text(&args)?;
    let from = args
        .from
        .clone()
        .or_else(|| std::env::var("MOSAIC_AGENT_NAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(crate::context::user_name);
    let name = addr.agent.as_str();
    let socket: TmuxSocket = match local.roster.agent(name) {
        Some(a) => local.roster.socket_of(a).clone(),
        None => local.roster.socket.clone(),
    };
    let full = format!("{}{text}", preamble(local.host.as_str(), &from, local.host.as_str(), name));
    let opts = SendOptions {
        verify: args.verify,
        verify_timeout: Duration::from_millis(args.verify_timeout),
        ..SendOptions::default()
    };
    let delivery = match send(&Tmux::new(socket), name, &full, &opts) {
        Ok(d) => d,
        Err(SendError::NotFound(_)) => {
            return Err(exit::failed(anyhow!(
                "no such agent {name} on host {} (known: {})",
                local.host,
                local.known_agents()
            )));
        }
        Err(e @ SendError::Text(_)) => return Err(exit::usage(e)),
        Err(e) => return Err(exit::failed(e)),
    };
    let outcome = delivery.outcome.as_str();
    if args.json {
        let receipt = serde_json::json!({
            "tenant_id": local.tenant_id,
            "host": local.host.as_str(),
            "agent": name,
            "outcome": outcome,
            "detail": delivery.detail,
            "elapsed_ms": delivery.elapsed.as_millis() as u64,
        });
        println!("{receipt}");
    } else {
        println!("{outcome}: {name}@{} ({}, {} ms)", local.host, delivery.detail, delivery.elapsed.as_millis());
    }
    if delivery.outcome.is_success() { Ok(()) } else { Err(exit::CliError::quiet(exit::Code::Failed)) }
}
