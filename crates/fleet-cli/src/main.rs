//! `fleet`: the command line of fleet mesh. Thin: it parses arguments, then
//! calls the local plane (`fleet-tmux`), the identity crate (`fleet-tls`) or,
//! the node.
//!
//! - `context`: MOSAIC_HOME, roster, tenant and host, resolved once.
//! - `exit`: exit codes (0 ok, 1 failed, 2 usage, 3 unreachable).
//! - `ps`, `send`, `lifecycle`, `roster_check`, `certs`, `watch_cmd`, `tail`: the commands.
//! - `view`: `fleet watch` and `fleet attach`; `term`: the terminal they draw in.
//! - `node`: `fleet node`, and reaching a node (local socket or FLEET_NODE).
//! - `demo`: the self-contained tour; `init`: `fleet init` and `fleet install`.
//! - `stub`: the stub agent; `launcher`: the hidden session helpers.
//! - `hook`: `fleet hook`, what runtimes' hooks run; `hook_install`: `fleet install --hooks`.
//! - `web`: `fleet web pair|sessions`, browser identities of the node's web door.
//! - `table`: aligned tables for people.

mod certs;
mod context;
mod demo;
mod exit;
mod explain;
mod hook;
mod hook_install;
mod init;
mod launcher;
mod lifecycle;
mod node;
mod ps;
mod roster_check;
mod send;
mod stub;
mod table;
mod tail;
mod term;
mod view;
mod watch_cmd;
mod web;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Operate a fleet of AI-agent tmux sessions across hosts.
#[derive(Debug, Parser)]
#[command(name = "fleet", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: context::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the peer node in the foreground.
    Node(node::NodeArgs),
    /// List agents: one row per agent, with pane, systemd and heartbeat state.
    Ps(ps::PsArgs),
    /// Deliver a message into an agent's pane.
    Send(send::SendArgs),
    /// Follow heartbeat and health events across the mesh (until Ctrl-C).
    Heartbeats(watch_cmd::HeartbeatsArgs),
    /// The membership view: peers, their state and how they were found.
    Peers(watch_cmd::PeersArgs),
    /// The last lines of an agent's pane (screen and scrollback), on any host;
    /// with --follow, then its new output.
    Tail(tail::TailArgs),
    /// Why an agent's activity is what `fleet ps` says: the rule, the hook, the screen.
    Explain(explain::ExplainArgs),
    /// A live, read-only view of an agent's pane, full screen (q leaves).
    Watch(view::WatchArgs),
    /// Type into an agent's pane and see it, full screen (operator role).
    Attach(view::AttachArgs),
    /// Start a roster agent's session (idempotent).
    Start(lifecycle::LifecycleArgs),
    /// Stop a roster agent's session (idempotent).
    Stop(lifecycle::LifecycleArgs),
    /// Stop, then start, a roster agent's session.
    Restart(lifecycle::LifecycleArgs),
    /// The node's web door: pair a browser, list or end browser sessions.
    #[command(subcommand)]
    Web(web::WebCmd),
    /// Roster tools.
    #[command(subcommand)]
    Roster(RosterCmd),
    /// Mesh CA and certificates.
    #[command(subcommand)]
    Certs(certs::CertsCmd),
    /// A self-contained tour on this machine (no setup, no root).
    Demo(demo::DemoArgs),
    /// Write a roster from a preset (without --write: print it).
    Init(init::InitArgs),
    /// Put the framework files and systemd user units in place.
    Install(init::InstallArgs),
    /// A stub agent REPL for tests and demos.
    StubAgent(stub::StubArgs),
    /// Record what this agent is doing (run by a runtime's hooks; always exits 0).
    Hook(hook::HookArgs),
    #[command(hide = true)]
    AgentExec(launcher::AgentExecArgs),
    #[command(hide = true)]
    HeartbeatWriter(launcher::WriterArgs),
}

#[derive(Debug, Subcommand)]
enum RosterCmd {
    /// Validate a roster; every problem with line and column.
    Check(roster_check::CheckArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A hook must never fail its runtime, not even on arguments it does
        // not know (Claude Code blocks a prompt on exit status 2).
        Err(e) if e.use_stderr() && hook::is_hook_invocation(std::env::args_os()) => {
            hook::complain(&hook::one_line(&e.to_string()));
            return ExitCode::SUCCESS;
        }
        Err(e) => e.exit(),
    };
    let g = &cli.global;
    let result = match cli.command {
        Command::Node(a) => node::run(a),
        Command::Ps(a) => ps::run(a, g),
        Command::Heartbeats(a) => watch_cmd::heartbeats(a),
        Command::Peers(a) => watch_cmd::peers(a),
        Command::Send(a) => send::run(a, g),
        Command::Tail(a) => tail::run(a, g),
        Command::Explain(a) => explain::run(a),
        Command::Watch(a) => view::watch(a),
        Command::Attach(a) => view::attach(a),
        Command::Start(a) => lifecycle::run(lifecycle::Verb::Start, a, g),
        Command::Stop(a) => lifecycle::run(lifecycle::Verb::Stop, a, g),
        Command::Restart(a) => lifecycle::run(lifecycle::Verb::Restart, a, g),
        Command::Web(c) => web::run(c),
        Command::Roster(RosterCmd::Check(a)) => roster_check::run(a, g),
        Command::Certs(c) => certs::run(c, &context::Paths::from_env().certs_dir()),
        Command::Demo(a) => demo::run(a),
        Command::Init(a) => init::init(a, g),
        Command::Install(a) => init::install(a, g),
        Command::StubAgent(a) => stub::run(a),
        Command::Hook(a) => {
            hook::run(a);
            Ok(())
        }
        Command::AgentExec(a) => launcher::agent_exec(a),
        Command::HeartbeatWriter(a) => launcher::heartbeat_writer(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.quiet {
                eprintln!("fleet: {:#}", e.error);
            }
            ExitCode::from(e.code as u8)
        }
    }
}
