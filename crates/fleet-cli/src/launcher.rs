//! Hidden helpers that `fleet start` puts into a session:
//! `fleet agent-exec` starts a heartbeat writer beside the runtime, then
//! becomes the runtime (exec), so the pane's pid and command are the
//! runtime's own. `fleet heartbeat-writer` writes until that pid is gone.

use crate::exit::{self, CliResult};
use anyhow::anyhow;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct AgentExecArgs {
    /// The heartbeat file to keep fresh.
    #[arg(long, value_name = "FILE")]
    pub heartbeat: PathBuf,
    /// Seconds between heartbeats.
    #[arg(long, default_value_t = 15)]
    pub interval: u64,
    /// The program and its arguments.
    #[arg(last = true, required = true)]
    pub argv: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct WriterArgs {
    #[arg(long)]
    pub pid: u32,
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
    #[arg(long, default_value_t = 15)]
    pub interval: u64,
    /// Re-spawn detached (own process group, parent exits at once), so the
    /// writer is never a zombie child of the runtime.
    #[arg(long)]
    pub detach: bool,
}

fn writer_command(pid: u32, file: &std::path::Path, interval: u64) -> CliResult<Command> {
    let exe = std::env::current_exe().map_err(exit::failed)?;
    let mut cmd = Command::new(exe);
    cmd.args(["heartbeat-writer", "--pid", &pid.to_string(), "--interval", &interval.to_string(), "--file"])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Ok(cmd)
}

pub fn agent_exec(args: AgentExecArgs) -> CliResult {
    let me = std::process::id();
    let mut cmd = writer_command(me, &args.heartbeat, args.interval)?;
    cmd.arg("--detach");
    // The detaching parent exits at once; wait for it so it is reaped.
    if let Err(e) = cmd.status() {
        eprintln!("fleet agent-exec: heartbeat writer did not start: {e}");
    }
    let err = Command::new(&args.argv[0]).args(&args.argv[1..]).exec();
    Err(exit::failed(anyhow!("cannot run {}: {err}", args.argv[0])))
}

pub fn heartbeat_writer(args: WriterArgs) -> CliResult {
    if args.detach {
        let mut cmd = writer_command(args.pid, &args.file, args.interval)?;
        cmd.process_group(0).spawn().map_err(exit::failed)?;
        return Ok(());
    }
    fleet_tmux::hbwriter::run_writer(&args.file, args.pid, Duration::from_secs(args.interval.max(1)))
        .map_err(|e| exit::failed(anyhow!("writing {}: {e}", args.file.display())))
}
