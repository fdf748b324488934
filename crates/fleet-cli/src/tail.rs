//! `fleet tail AGENT[@HOST]`: the last lines of an agent's pane, on this host
//! or another (read-only; the viewer role may).

use crate::context::{GlobalArgs, Local};
use crate::exit::{self, CliResult};
use crate::{node, out};
use anyhow::anyhow;
use fleet_core::address::AgentAddr;
use fleet_proto::v1;
use fleet_proto::v1::pane_frame::Body;
use fleet_tmux::tail::{DEFAULT_LINES, MAX_LINES};
use fleet_tmux::tmux::Tmux;
use std::io::Write;

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
    /// Then follow the pane's new output until Ctrl-C (through the node).
    #[arg(short = 'f', long, conflicts_with = "local")]
    pub follow: bool,
    /// Read this host's tmux directly, without a node.
    #[arg(long)]
    pub local: bool,
    /// Print the lines as JSON, with the pane's size.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: TailArgs, g: &GlobalArgs) -> CliResult {
    let addr: AgentAddr = args.target.parse().map_err(exit::usage)?;
    if args.follow {
        return follow(&args, &addr);
    }
    let tail = if args.local { local(&args, &addr, g)? } else { via_node(&args, &addr)? };
    if args.json {
        out::line(fleet_node::json::tail(&tail))
    } else {
        out::print(&tail.lines.iter().map(|l| format!("{l}\n")).collect::<String>())
    }
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
                "agent {name} of host {} is in the roster but not running (no tmux session): start it with `fleet start {name} --local`",
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

/// The last lines, then the pane's output as it comes, until Ctrl-C or the
/// end of the agent's session. Plain text unless `--ansi`; with `--json`,
/// the tail object, then one `{"output": ...}` object per chunk.
fn follow(args: &TailArgs, addr: &AgentAddr) -> CliResult {
    let req = v1::WatchPaneRequest {
        tenant_id: String::new(),
        host: addr.host.as_ref().map(|h| h.to_string()).unwrap_or_default(),
        agent: addr.agent.to_string(),
        lines: args.lines,
    };
    let rt = node::runtime()?;
    rt.block_on(async {
        let mut client = fleet_node::client::fleet(&node::target()).await.map_err(node::unreachable)?;
        let mut frames = client.watch_pane(req).await.map_err(node::status)?.into_inner();
        let mut plain = crate::term::Plain::default();
        // The last output written ended inside a line: a note then starts a line of its own.
        let mut mid_line = false;
        loop {
            let frame = tokio::select! {
                f = frames.message() => f.map_err(node::status)?,
                _ = tokio::signal::ctrl_c() => return Ok(()),
            };
            let Some(f) = frame else { return Ok(()) };
            let mut out = std::io::stdout().lock();
            let written = match &f.body {
                Some(Body::Screen(s)) if args.json => {
                    let lines: Vec<&str> = std::str::from_utf8(&s.content).unwrap_or_default().lines().collect();
                    let v = serde_json::json!({
                        "tenant_id": f.tenant_id, "host": f.host, "agent": f.agent, "lines": lines,
                        "pane_width": f.pane_width, "pane_height": f.pane_height, "reason": s.reason,
                    });
                    writeln!(out, "{v}")
                }
                Some(Body::Screen(s)) => {
                    let note = if s.reason == "start" {
                        Ok(())
                    } else {
                        let cut = if std::mem::take(&mut mid_line) { "\n" } else { "" };
                        writeln!(out, "{cut}[fleet: {}: {}; the screen now:]", s.reason, skipped(&s.reason))
                    };
                    note.and_then(|()| out.write_all(&s.content))
                        .and_then(|()| if s.content.is_empty() { Ok(()) } else { writeln!(out) })
                }
                Some(Body::Output(bytes)) => {
                    let text = if args.ansi { bytes.clone() } else { plain.text(bytes) };
                    if args.json {
                        let v = serde_json::json!({
                            "tenant_id": f.tenant_id, "host": f.host, "agent": f.agent,
                            "output": String::from_utf8_lossy(&text),
                        });
                        writeln!(out, "{v}")
                    } else {
                        if let Some(&last) = text.last() {
                            mid_line = last != b'\n';
                        }
                        out.write_all(&text)
                    }
                }
                Some(Body::Ended(why)) => {
                    eprintln!("fleet tail: {why}");
                    return Ok(());
                }
                None => Ok(()),
            };
            // A closed stdout (`| head`) ends the follow quietly; another write error is said.
            written.and_then(|()| out.flush()).map_err(crate::out::io)?;
        }
    })
}

fn skipped(reason: &str) -> &'static str {
    match reason {
        "lagged" => "this reader fell behind and output was skipped",
        "paused" => "tmux paused the output and some was skipped",
        _ => "output may have been skipped",
    }
}
