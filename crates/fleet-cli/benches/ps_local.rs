//! `fleet ps --local --json` over 50 stub agents, against one bare
//! `tmux list-panes -a -F ...` on the same socket (the least any probe must do).
//!
//! Run: `cargo bench -p fleet-cli --bench ps_local` (docs/benchmarks.md).
//! Prints both medians, p90s, and the ratio. Target: ratio <= 3.

#[path = "../../../tests/util/mod.rs"]
mod util;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use util::Host;

const AGENTS: usize = 50;
const RUNS: usize = 200;

fn time(mut cmd: Command) -> Duration {
    let t = Instant::now();
    let out = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).output().expect("run");
    let d = t.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    d
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

fn main() {
    let h = Host::new();
    let mut agents = String::from("agents:\n");
    for i in 0..AGENTS {
        agents.push_str(&format!("  - {{ name: agent{i:02}, runtime: stub }}\n"));
    }
    h.roster(&format!("{}{agents}", Host::RUNTIMES));
    let (code, _, err) = h.run(&["start", "--all", "--local"]);
    assert_eq!(code, 0, "{err}");
    h.wait_for("all agents healthy", Duration::from_secs(30), || {
        h.ps().iter().filter(|r| r["heartbeat"]["health"] == "healthy").count() == AGENTS
    });

    let bare = || {
        let mut c = Command::new("tmux");
        c.args(["-L", &h.socket, "list-panes", "-a", "-F", fleet_tmux::probe::PANE_FORMAT]);
        h.envs(&mut c);
        c
    };
    let (mut ps, mut tmux) = (Vec::with_capacity(RUNS), Vec::with_capacity(RUNS));
    for _ in 0..10 {
        time(h.fleet(&["ps", "--local", "--json"]));
        time(bare());
    }
    // Interleaved, so both see the same machine.
    for _ in 0..RUNS {
        ps.push(time(h.fleet(&["ps", "--local", "--json"])));
        tmux.push(time(bare()));
    }
    let (ps50, ps90) = (pct(&mut ps, 0.5), pct(&mut ps, 0.9));
    let (tm50, tm90) = (pct(&mut tmux, 0.5), pct(&mut tmux, 0.9));
    println!("ps_local: {AGENTS} stub agents, {RUNS} interleaved runs each");
    println!("{:<40} {:>10} {:>10}", "command", "p50 ms", "p90 ms");
    println!("{:<40} {:>10.2} {:>10.2}", "fleet ps --local --json", ps50, ps90);
    println!("{:<40} {:>10.2} {:>10.2}", "tmux list-panes -a -F ... (bare)", tm50, tm90);
    println!("ratio of medians: {:.2}x (target <= 3x)", ps50 / tm50);
}
