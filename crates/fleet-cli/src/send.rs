//! `fleet send AGENT[@HOST]`: deliver a message into an agent's pane.

use crate::context::{GlobalArgs, Local};
use crate::exit::{self, CliResult};
use crate::node;
use anyhow::anyhow;
use fleet_core::address::AgentAddr;
use fleet_core::message::{MAX_MESSAGE_BYTES, Source, compose, label_from, recipient_refusal};
use fleet_core::roster::TmuxSocket;
use fleet_proto::v1;
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
    /// Type only once the agent is idle (its ACTIVITY in `fleet ps`), never
    /// into a turn in progress; exit 1 with `busy` if it is not within --wait-timeout.
    #[arg(long, conflicts_with = "local")]
    pub when_idle: bool,
    /// How long --when-idle waits, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600, requires = "when_idle")]
    pub wait_timeout: u64,
    /// Keep the message on the agent's node (on disk) until the agent can take
    /// it: its pane alive and it neither working nor waiting. The receipt is
    /// `queued` with an id (`fleet queue` lists them, `fleet queue cancel ID@HOST`
    /// cancels). Survives restarts of the node and of the host.
    #[arg(long, conflicts_with_all = ["local", "verify", "when_idle"])]
    pub queue: bool,
    /// How long a --queue message may wait before it expires (90s, 10m, 1h, 2d; at most 7d).
    #[arg(long, value_name = "DURATION", default_value = "1h", requires = "queue")]
    pub expire: String,
    /// Also type into a session the roster does not name (never the holder session).
    #[arg(long)]
    pub unmanaged: bool,
    /// Send on this host directly, without a node.
    #[arg(long)]
    pub local: bool,
    /// Print the receipt as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The message: from -m, a file (a pipe or `<(...)` too) or stdin, read up to
/// one byte past the size limit, so `-f /dev/zero` is refused as too long
/// instead of read forever.
fn read_text(args: &SendArgs) -> CliResult<String> {
    let bounded = |r: &mut dyn Read| {
        let mut bytes = Vec::new();
        r.take(MAX_MESSAGE_BYTES as u64 + 1).read_to_end(&mut bytes)?;
        String::from_utf8(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    };
    let read_stdin = || bounded(&mut std::io::stdin().lock());
    match (&args.message, &args.file) {
        (Some(m), _) => Ok(m.clone()),
        (None, Some(f)) if f.as_os_str() == "-" => read_stdin().map_err(|e| exit::usage(anyhow!("reading stdin: {e}"))),
        (None, Some(f)) => std::fs::File::open(f)
            .and_then(|mut file| bounded(&mut file))
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
        return via_node(&args, &addr);
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
    let from = from_label(&args)?;
    let name = addr.agent.as_str();
    let socket: TmuxSocket = match local.roster.agent(name) {
        Some(a) => local.roster.socket_of(a).clone(),
        None => local.roster.socket.clone(),
    };
    let source = Source { host: local.host.as_str(), label: &from };
    let full = compose(&source, local.host.as_str(), name, &text).map_err(exit::usage)?;
    if let Some(why) = recipient_refusal(&local.roster, &local.host, name, args.unmanaged) {
        return Err(exit::failed(anyhow!("{why}")));
    }
    let opts = SendOptions {
        verify: args.verify,
        verify_timeout: Duration::from_millis(args.verify_timeout),
        enter_delay: Duration::from_millis(local.roster.enter_delay_ms(name)),
        ..SendOptions::default()
    };
    let delivery = match send(&Tmux::new(socket), name, &full, &opts) {
        Ok(d) => d,
        Err(SendError::NotFound(_)) if local.roster.agent_on(&local.host, name).is_ok() => {
            return Err(exit::failed(anyhow!("{}", fleet_core::message::not_running(name, &local.host))));
        }
        Err(SendError::NotFound(_)) => {
            return Err(exit::failed(anyhow!(
                "no such agent {name} on host {} ({})",
                local.host,
                local.known_agents(name)
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

/// A key that makes a retried send deliver once (the target node remembers it).
fn idempotency_key() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}-{:x}", nanos, std::process::id())
}

/// Who sends: `--from`, else `$MOSAIC_AGENT_NAME` (both must be labels: an
/// agent name's characters), else the login name made into one.
fn from_label(args: &SendArgs) -> CliResult<String> {
    let given = args.from.clone().map(|l| (l, "--from")).or_else(|| {
        std::env::var("MOSAIC_AGENT_NAME").ok().filter(|s| !s.is_empty()).map(|l| (l, "MOSAIC_AGENT_NAME"))
    });
    match given {
        Some((label, whence)) => fleet_core::names::check_agent_chars("source label", &label)
            .map(|()| label)
            .map_err(|e| exit::usage(anyhow!("{whence}: {e}"))),
        None => Ok(label_from(&crate::context::user_name())),
    }
}

/// The first attempt of a send failed with `first`: could it have reached the target anyway?
/// Yes, unless our node says it forwarded nothing (the target host is down).
fn may_have_arrived(first: &tonic::Status) -> bool {
    first.metadata().get(fleet_node::service::NOT_FORWARDED).is_none()
}

/// The retry of a send whose first attempt may have arrived failed too (`retry`): say that it
/// may have been delivered (exit 3, unreachable, never 1: "not delivered" would be a guess).
fn maybe_delivered(target: &str, first: &tonic::Status, retry: exit::CliError) -> exit::CliError {
    exit::unreachable(anyhow!(
        "the message may have been delivered to {target}: the first attempt was cut ({}) and the retry \
         failed: {}; look at the pane (`fleet tail {target}`) before sending it again",
        first.message(),
        retry.message()
    ))
}

fn via_node(args: &SendArgs, addr: &AgentAddr) -> CliResult {
    let text = read_text(args)?;
    // The node checks both again; here they are refused before any call, as with --local.
    let from = from_label(args)?;
    fleet_core::message::prepare_text(&text).map_err(exit::usage)?;
    let req = v1::SendRequest {
        tenant_id: String::new(),
        host: addr.host.as_ref().map(|h| h.to_string()).unwrap_or_default(),
        agent: addr.agent.to_string(),
        text,
        source_host: String::new(),
        source_label: from,
        unmanaged: args.unmanaged,
        verify: args.verify,
        verify_timeout_ms: args.verify_timeout.min(u64::from(u32::MAX)) as u32,
        idempotency_key: idempotency_key(),
        when_idle: args.when_idle,
        wait_timeout_ms: args.wait_timeout.saturating_mul(1000).clamp(1, u64::from(u32::MAX)) as u32,
    };
    if args.queue {
        return via_queue(args, req);
    }
    let rt = node::runtime()?;
    let receipt = rt.block_on(async {
        let mut client = fleet_node::client::fleet(&node::target()).await.map_err(node::unreachable)?;
        // One retry with the same key if the call was cut: the target delivers once.
        match client.send_message(req.clone()).await {
            Err(first) if matches!(first.code(), tonic::Code::Unavailable | tonic::Code::Unknown) => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                client.send_message(req).await.map_err(|s| {
                    if may_have_arrived(&first) {
                        maybe_delivered(&args.target, &first, node::status(s))
                    } else {
                        node::status(s)
                    }
                })
            }
            r => r.map_err(node::status),
        }
    })?;
    let receipt = receipt.into_inner();
    let outcome = v1::DeliveryOutcome::try_from(receipt.outcome).unwrap_or(v1::DeliveryOutcome::Unspecified);
    let name = fleet_proto::convert::outcome_word(outcome);
    if args.json {
        println!("{}", fleet_node::json::receipt(&receipt));
    } else if outcome == v1::DeliveryOutcome::NotFound {
        eprintln!("fleet: {}", receipt.detail);
    } else {
        let waited = if args.when_idle {
            format!("; waited {:.1} s for it to be idle", f64::from(receipt.waited_ms) / 1000.0)
        } else {
            String::new()
        };
        println!("{name}: {}@{} ({}, {} ms{waited})", receipt.agent, receipt.host, receipt.detail, receipt.elapsed_ms);
    }
    match outcome {
        v1::DeliveryOutcome::Delivered | v1::DeliveryOutcome::Accepted => Ok(()),
        _ => Err(exit::CliError::quiet(exit::Code::Failed)),
    }
}

/// `fleet send --queue`: hand the message to the agent's node to keep (`QueueMessage`).
fn via_queue(args: &SendArgs, send: v1::SendRequest) -> CliResult {
    let expire = fleet_node::queue::parse_duration(&args.expire).map_err(|e| exit::usage(anyhow!("--expire: {e}")))?;
    if expire > fleet_node::queue::MAX_EXPIRE {
        return Err(exit::usage(anyhow!("--expire {}: the longest is 7d", args.expire)));
    }
    let req = v1::QueueRequest { send: Some(send), expire_s: expire.as_secs() as u32 };
    let rt = node::runtime()?;
    let receipt = rt.block_on(async {
        let mut client = fleet_node::client::queue(&node::target()).await.map_err(node::unreachable)?;
        // One retry with the same key if the call was cut: the target keeps it once.
        match client.queue_message(req.clone()).await {
            Err(first) if matches!(first.code(), tonic::Code::Unavailable | tonic::Code::Unknown) => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                client.queue_message(req).await.map_err(|s| {
                    if may_have_arrived(&first) {
                        exit::unreachable(anyhow!(
                            "the message may have been queued on {}: the first attempt was cut ({}) and the retry \
                             failed: {}; `fleet queue` shows it if it was",
                            args.target,
                            first.message(),
                            s.message()
                        ))
                    } else {
                        node::status(s)
                    }
                })
            }
            r => r.map_err(node::status),
        }
    })?;
    let receipt = receipt.into_inner();
    let outcome = v1::DeliveryOutcome::try_from(receipt.outcome).unwrap_or(v1::DeliveryOutcome::Unspecified);
    if args.json {
        println!("{}", fleet_node::json::receipt(&receipt));
    } else if outcome == v1::DeliveryOutcome::Queued {
        println!("queued: {}@{} ({})", receipt.agent, receipt.host, receipt.detail);
    } else {
        eprintln!("fleet: {}", receipt.detail);
    }
    match outcome {
        v1::DeliveryOutcome::Queued => Ok(()),
        _ => Err(exit::CliError::quiet(exit::Code::Failed)),
    }
}
