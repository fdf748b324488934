//! `fleet`: the command line of fleet mesh. Thin: it parses arguments, then
//! calls the local plane (`fleet-tmux`), the identity crate (`fleet-tls`) or,
//! the node.
//!
//! - `context`: MOSAIC_HOME, roster, tenant and host, resolved once.
//! - `exit`: exit codes (0 ok, 1 failed, 2 usage, 3 unreachable).
//! - `verbs`: `add`, `remove`, `reset`, `verify`, `comms`, through the node.
//! - `ps`, `send`, `queue_cmd` (`fleet queue`), `lifecycle`, `roster_check`, `certs`, `watch_cmd`, `tail`: the commands.
//! - `view`: `fleet watch` and `fleet attach`; `term`: the terminal they draw in.
//! - `node`: `fleet node`, and reaching a node (local socket or FLEET_NODE).
//! - `demo`: the self-contained tour; `init`: `fleet init` and `fleet install`;
//!   `wizard`: `fleet init`'s questions on a terminal.
//! - `stub`: the stub agent; `launcher`: the hidden session helpers.
//! - `hook`: `fleet hook`, what runtimes' hooks run; `hook_install`: `fleet install --hooks`.
//! - `web`: `fleet web` (where the door is), `fleet web pair|sessions` (browser identities).
//! - `table`: aligned tables for people.

mod certs;
mod completions;
mod context;
mod demo;
mod doctor;
mod exit;
mod explain;
mod hook;
mod hook_install;
mod init;
mod join;
mod launcher;
mod lifecycle;
mod node;
mod out;
mod ps;
mod queue_cmd;
mod roster_check;
mod send;
mod stub;
mod table;
mod tail;
mod targets;
mod term;
mod verbs;
mod view;
mod watch_cmd;
mod web;
mod wizard;

use clap::{Parser, Subcommand};
use context::WithHost;
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
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the peer node in the foreground.
    Node(node::NodeArgs),
    /// List agents: one row per agent, with pane, systemd and heartbeat state.
    Ps(WithHost<ps::PsArgs>),
    /// Deliver a message into an agent's pane.
    Send(WithHost<send::SendArgs>),
    /// The queued messages of the mesh (`fleet send --queue`); `fleet queue cancel ID@HOST`.
    Queue(queue_cmd::QueueArgs),
    /// Follow heartbeat and health events across the mesh (until Ctrl-C).
    Heartbeats(watch_cmd::HeartbeatsArgs),
    /// The membership view: peers, their state and how they were found.
    Peers(watch_cmd::PeersArgs),
    /// The last lines of an agent's pane (screen and scrollback), on any host;
    /// with --follow, then its new output.
    Tail(WithHost<tail::TailArgs>),
    /// Print a shell completion script: `fleet completions bash > /etc/bash_completion.d/fleet`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// What this host needs for the mesh, checked, each with the next step.
    Doctor(WithHost<doctor::DoctorArgs>),
    /// Why an agent's activity is what `fleet ps` says: the rule, the hook, the screen.
    Explain(explain::ExplainArgs),
    /// A live, read-only view of an agent's pane, full screen (q leaves).
    Watch(view::WatchArgs),
    /// Type into an agent's pane and see it, full screen (operator role).
    Attach(view::AttachArgs),
    /// Start a roster agent's session (idempotent).
    Start(WithHost<lifecycle::LifecycleArgs>),
    /// Stop a roster agent's session (idempotent).
    Stop(WithHost<lifecycle::LifecycleArgs>),
    /// Stop, then start, a roster agent's session.
    Restart(WithHost<lifecycle::LifecycleArgs>),
    /// Add an agent to a host's roster, enable its unit, start it.
    Add(verbs::AddArgs),
    /// Stop an agent and remove it from its host's roster (its env file, heartbeat, unit too).
    Remove(verbs::RemoveArgs),
    /// Type the runtime's reset command (/clear, /new) into an agent's pane, verified.
    Reset(verbs::ResetArgs),
    /// Check the fleet, mesh-wide: holder sessions, agent sessions, units, heartbeats.
    Verify(verbs::VerifyArgs),
    /// The "Fleet Comms" block an agent reads to reach its peers (--write: into its context file).
    Comms(WithHost<verbs::CommsArgs>),
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
    /// Enter a mesh with a join token from `fleet certs invite` (makes this host's key here).
    Join(join::JoinArgs),
    /// A self-contained tour on this machine (no setup, no root).
    Demo(demo::DemoArgs),
    /// Write a roster from a preset (without --write: print it); with no preset, on a terminal, ask.
    Init(WithHost<init::InitArgs>),
    /// Put the framework files and systemd user units in place.
    Install(WithHost<init::InstallArgs>),
    /// A stub agent REPL for tests and demos.
    StubAgent(stub::StubArgs),
    /// Record what this agent is doing (run by a runtime's hooks; always exits 0).
    Hook(hook::HookArgs),
    #[command(hide = true)]
    AgentExec(launcher::AgentExecArgs),
    #[command(hide = true)]
    HeartbeatWriter(launcher::WriterArgs),
    /// Agent names for shell completion (`fleet completions`).
    #[command(name = "__targets", hide = true)]
    Targets(context::GlobalArgs),
}

#[derive(Debug, Subcommand)]
enum RosterCmd {
    /// Validate a roster; every problem with line and column.
    Check(WithHost<roster_check::CheckArgs>),
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
    let result = match cli.command {
        Command::Node(a) => node::run(a),
        Command::Ps(w) => ps::run(w.args, &w.host),
        Command::Heartbeats(a) => watch_cmd::heartbeats(a),
        Command::Peers(a) => watch_cmd::peers(a),
        Command::Send(w) => send::run(w.args, &w.host),
        Command::Queue(a) => queue_cmd::run(a),
        Command::Tail(w) => tail::run(w.args, &w.host),
        Command::Explain(a) => explain::run(a),
        Command::Doctor(w) => doctor::run(w.args, &w.host),
        Command::Completions { shell } => {
            // A closed stdout (`| head`) is no error.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), completions::script(shell).as_bytes());
            Ok(())
        }
        Command::Targets(g) => completions::print_targets(&g),
        Command::Watch(a) => view::watch(a),
        Command::Attach(a) => view::attach(a),
        Command::Start(w) => lifecycle::run(lifecycle::Verb::Start, w.args, &w.host),
        Command::Stop(w) => lifecycle::run(lifecycle::Verb::Stop, w.args, &w.host),
        Command::Restart(w) => lifecycle::run(lifecycle::Verb::Restart, w.args, &w.host),
        Command::Add(a) => verbs::add(a),
        Command::Remove(a) => verbs::remove(a),
        Command::Reset(a) => verbs::reset(a),
        Command::Verify(a) => verbs::verify(a),
        Command::Comms(w) => verbs::comms(w.args, &w.host),
        Command::Web(c) => web::run(c),
        Command::Roster(RosterCmd::Check(w)) => roster_check::run(w.args, &w.host),
        Command::Context(c) => targets::run(c),
        Command::Certs(c) => certs::run(c, &context::Paths::from_env().certs_dir()),
        Command::Join(a) => join::join(a),
        Command::Demo(a) => demo::run(a),
        Command::Init(w) => init::init(w.args, &w.host),
        Command::Install(w) => init::install(w.args, &w.host),
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
        // The reader of stdout had seen enough (`| head`).
        Err(e) if out::closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.quiet {
                eprintln!("fleet: {}", e.message());
            }
            ExitCode::from(e.code as u8)
        }
    }
}
