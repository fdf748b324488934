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
//! - `web`: `fleet web` (where the door is), `fleet web pair|sessions` (browser identities).
//! - `table`: aligned tables for people.

mod certs;
mod context;
mod demo;
mod doctor;
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
mod targets;
mod term;
mod view;
mod watch_cmd;
mod web;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Operate a fleet of AI coding agents, each in a tmux session, across hosts: list
/// them, see them, type into them, start and stop them.
#[derive(Debug, Parser)]
#[command(
    name = "fleet",
    version,
    propagate_version = true,
    after_help = "Which node: on a node's host the CLI uses its local socket ($MOSAIC_HOME/fleet/node.sock, or \
FLEET_SOCKET); elsewhere set FLEET_NODE=https://HOST:7420 and FLEET_CERTS_DIR to a dir with ca.pem, \
client.pem and client.key (an operator or viewer certificate: `fleet certs issue`).\n\
Start here: `fleet demo` (a three-host mesh on this machine), `fleet doctor` (is this host ready?)."
)]
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
    /// Print a shell completion script: `fleet completions bash > /etc/bash_completion.d/fleet`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// What this host needs for the mesh, checked, each with the next step.
    Doctor(doctor::DoctorArgs),
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
    /// The node's web door: where it is (no subcommand), pair a browser, list or end sessions.
    Web(web::WebArgs),
    /// Roster tools.
    #[command(subcommand)]
    Roster(RosterCmd),
    /// Saved remote nodes to talk to (kubectl style): add, use, list, current, remove.
    #[command(subcommand)]
    Context(targets::ContextCmd),
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
        Command::Doctor(a) => doctor::run(a, g),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "fleet", &mut script);
            // A closed stdout (`| head`) is no error.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            Ok(())
        }
        Command::Watch(a) => view::watch(a),
        Command::Attach(a) => view::attach(a),
        Command::Start(a) => lifecycle::run(lifecycle::Verb::Start, a, g),
        Command::Stop(a) => lifecycle::run(lifecycle::Verb::Stop, a, g),
        Command::Restart(a) => lifecycle::run(lifecycle::Verb::Restart, a, g),
        Command::Web(c) => web::run(c),
        Command::Roster(RosterCmd::Check(a)) => roster_check::run(a, g),
        Command::Context(c) => targets::run(c),
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
