//! `fleet demo`: a self-contained tour on this machine, no setup, no root.
//!
//! Today it shows one host's fleet through the local plane: a throwaway
//! `MOSAIC_HOME` and tmux socket in a temp dir, three stub agents started from
//! a roster, `ps`, a verified send with the text visible in the pane, a draft
//! caught by verify, and a heartbeat going stale. Everything it started is
//! removed at the end, on a failure halfway, and on Ctrl-C or SIGTERM.
//! (The multi-node mesh joins the tour when the node lands.)

use crate::exit::{self, CliResult};
use anyhow::{Context as _, anyhow};
use fleet_core::heartbeat::Health;
use fleet_core::names::DnsLabel;
use fleet_core::roster::{Roster, TmuxSocket};
use fleet_tmux::lifecycle::{self, StartEnv};
use fleet_tmux::probe::{ProbeContext, probe};
use fleet_tmux::send::{SendOptions, send};
use fleet_tmux::tmux::Tmux;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Leave the demo fleet running and print how to use it.
    #[arg(long)]
    pub keep: bool,
}

/// Removes the demo's tmux server (by its private socket: only the demo's
/// sessions) and its temp dir.
struct Cleanup {
    socket: String,
    dir: PathBuf,
    keep: bool,
}

impl Cleanup {
    fn run(socket: &str, dir: &Path) {
        let tmux = Tmux { socket: TmuxSocket::Name(socket.into()), bin: "tmux".into() };
        let _ = tmux.run(["kill-server"], None);
        let _ = std::fs::remove_dir_all(dir);
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.keep {
            Cleanup::run(&self.socket, &self.dir);
        }
    }
}

/// On SIGINT or SIGTERM: clean up, then exit 130.
fn clean_on_signal(socket: String, dir: PathBuf) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("signal runtime");
        rt.block_on(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        eprintln!("\ninterrupted: removing the demo fleet");
        Cleanup::run(&socket, &dir);
        std::process::exit(130);
    });
}

fn step(n: u32, title: &str) {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        println!("\n\x1b[1m{n}. {title}\x1b[0m");
    } else {
        println!("\n{n}. {title}");
    }
}

pub fn run(args: DemoArgs) -> CliResult {
    let dir = tempfile::Builder::new().prefix("fleet-demo-").tempdir().map_err(exit::failed)?.keep();
    let socket = format!("fleet-demo-{}", std::process::id());
    let _cleanup = Cleanup { socket: socket.clone(), dir: dir.clone(), keep: args.keep };
    clean_on_signal(socket.clone(), dir.clone());
    tour(&dir, &socket, args.keep).map_err(exit::failed)
}

fn tour(dir: &Path, socket: &str, keep: bool) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the fleet binary")?;
    let home = dir.join("mosaic");
    let run_dir = home.join("fleet/run");
    std::fs::create_dir_all(&run_dir)?;
    let roster_text = format!(
        "version: 1
tenant_id: demo
tmux: {{ socket_name: {socket} }}
runtimes:
  stub: {{ command: \"{exe} stub-agent --interval 1\", heartbeat: self }}
  stub-draft: {{ command: \"{exe} stub-agent --interval 1 --draft\", process_names: [fleet], heartbeat: self }}
agents:
  - {{ name: orchestrator, runtime: stub, class: orchestrator }}
  - {{ name: enhancer, runtime: stub, class: enhancer }}
  - {{ name: coder0-0, runtime: stub-draft, class: implementer }}
",
        exe = exe.display()
    );
    let roster_path = home.join("fleet/roster.yaml");
    std::fs::write(&roster_path, &roster_text)?;
    let roster = Roster::parse(&roster_text).map_err(|e| anyhow!("{e}"))?;
    let host = DnsLabel::sanitize("host name", &crate::context::short_hostname())
        .unwrap_or_else(|_| "localhost".parse().expect("label"));

    println!("fleet demo: a throwaway fleet in {} on tmux socket -L {socket}", dir.display());
    step(1, "A roster with three stub agents (one keeps its input as a draft)");
    println!("{}", roster_text.trim_end().replace(&exe.display().to_string(), "fleet"));

    step(2, "fleet start --all --local");
    let env = StartEnv {
        fleet_exe: exe.clone(),
        mosaic_home: home.clone(),
        run_dir: run_dir.clone(),
        interval_secs: 1,
        home: Some(dir.to_path_buf()),
        tenant_id: "demo".into(),
        host: host.to_string(),
    };
    // The stubs read their run dir and interval from the environment tmux gives them.
    let agents: Vec<_> = roster.agents.iter().collect();
    for (agent, result) in lifecycle::start_many(&roster, &agents, &env) {
        println!(
            "  {}: {}",
            agent.name,
            result.map(|o| o.as_str().to_string()).unwrap_or_else(|e| format!("failed: {e}"))
        );
    }
    let cx = |now| ProbeContext {
        tenant_id: "demo".into(),
        host: host.clone(),
        run_dir: run_dir.clone(),
        interval_secs: 1,
        now,
        systemd: false,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = probe(&roster, &cx(fleet_tmux::hbwriter::now_unix()))?;
        if rows.iter().all(|r| r.heartbeat.health == Health::Healthy) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    step(3, "fleet ps --local: one row per agent, heartbeats from the agents themselves");
    print!("{}", crate::ps::render(&probe(&roster, &cx(fleet_tmux::hbwriter::now_unix()))?));

    let tmux = Tmux::new(TmuxSocket::Name(socket.into()));
    let opts = SendOptions { verify: true, verify_timeout: Duration::from_secs(3), ..SendOptions::default() };
    step(4, "fleet send enhancer --verify: pasted, submitted, and confirmed");
    let text = format!(
        "{}please refine the task for coder0-0",
        fleet_core::message::preamble(host.as_str(), "orchestrator", host.as_str(), "enhancer")
    );
    let d = send(&tmux, "enhancer", &text, &opts)?;
    println!("  receipt: {} ({}, {} ms)", d.outcome.as_str(), d.detail, d.elapsed.as_millis());
    println!("  the enhancer's pane now shows:");
    let screen = tmux.run(["capture-pane", "-p", "-J", "-t", "=enhancer:"], None)?;
    for line in screen.lines().filter(|l| !l.trim().is_empty()) {
        println!("    | {line}");
    }

    step(5, "fleet send coder0-0 --verify: the agent keeps the text as a draft, and verify says so");
    let text = format!(
        "{}implement the parser",
        fleet_core::message::preamble(host.as_str(), "orchestrator", host.as_str(), "coder0-0")
    );
    let d = send(&tmux, "coder0-0", &text, &opts)?;
    println!("  receipt: {} ({}) -> exit code 1, never a false \"sent\"", d.outcome.as_str(), d.detail);

    step(6, "The orchestrator stops heartbeating: healthy turns stale after 3 x interval");
    send(&tmux, "orchestrator", "/stop-heartbeat", &SendOptions::default())?;
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let rows = probe(&roster, &cx(fleet_tmux::hbwriter::now_unix()))?;
        let o = rows.iter().find(|r| r.name == "orchestrator").expect("orchestrator row");
        if o.heartbeat.health == Health::Stale || Instant::now() > deadline {
            println!(
                "  orchestrator: {} (last beat {}s ago)",
                o.heartbeat.health,
                o.heartbeat.age_seconds.unwrap_or(-1)
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }

    if keep {
        step(7, "Kept running. Use it with:");
        println!("  export MOSAIC_HOME={} TMUX_TMPDIR=${{TMUX_TMPDIR:-/tmp}}", home.display());
        println!("  fleet ps --local; fleet send enhancer --local --verify -m hi");
        println!("  tmux -L {socket} attach -t =enhancer");
        println!("  remove it: tmux -L {socket} kill-server; rm -rf {}", dir.display());
    } else {
        step(7, "Removing everything the demo started");
        for (agent, r) in roster.agents.iter().map(|a| (a, lifecycle::stop_and_clear(&roster, a, &run_dir))) {
            println!("  {}: {}", agent.name, r.map(|o| o.as_str().to_string()).unwrap_or_else(|e| e.to_string()));
        }
    }
    Ok(())
}
