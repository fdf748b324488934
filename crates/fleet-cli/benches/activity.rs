//! What activity costs a probe, for 50 agents (issue 14's target: judging
//! 50 agents' screens costs <= 2 ms per probe).
//!
//! A tmux server of its own (a temp socket) with a holder session and 50
//! agent sessions whose panes show a Claude-Code-like screen: 17 of them
//! working ("esc to interrupt"), 17 at a permission prompt, 16 at the idle
//! prompt box. Measured, per probe of all 50:
//! - judge: the built-in screen rules and the decision
//!   (`ScreenRules::judge` + `fleet_tmux::screen::judge`, the hook file read
//!   included) on screens already read;
//! - read + judge: the same after reading every screen through the
//!   control-mode client (`Screens::read`: two tmux commands per agent).
//!
//! Run: `cargo bench -p fleet-cli --bench activity` (docs/benchmarks.md).

use fleet_core::activity::ScreenRules;
use fleet_core::roster::Roster;
use fleet_tmux::probe::{ProbeContext, probe_report};
use fleet_tmux::screen::{self, Screens};
use fleet_tmux::tmux::Tmux;
use std::time::{Duration, Instant};

const AGENTS: usize = 50;
const RUNS: usize = 200;

fn screen_of(i: usize) -> &'static str {
    match i % 3 {
        0 => {
            "✻ Thinking… (12s · ↑ 1.2k tokens · esc to interrupt)\\n\\n╭──────────────╮\\n│ >            │\\n╰──────────────╯\\n"
        }
        1 => "Bash command\\n  rm -rf build\\nDo you want to proceed?\\n❯ 1. Yes\\n  2. No\\n",
        _ => "╭──────────────╮\\n│ >            │\\n╰──────────────╯\\n  ? for shortcuts\\n",
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(what: &str, mut d: Vec<Duration>) {
    d.sort();
    let ms = |x: Duration| x.as_secs_f64() * 1000.0;
    println!(
        "{what:<44} p50 {:>7.3} ms   p99 {:>7.3} ms   ({} probes of {AGENTS} agents)",
        ms(percentile(&d, 0.5)),
        ms(percentile(&d, 0.99)),
        d.len()
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("sock").display().to_string();
    let agents: String = (0..AGENTS).map(|i| format!("  - {{ name: a{i:02}, runtime: claude }}\n")).collect();
    let roster = Roster::parse(&format!(
        "version: 1\ntenant_id: bench\ntmux: {{ socket_path: {sock}, holder_session: _holder }}\nruntimes:\n  claude: {{ command: claude }}\nagents:\n{agents}"
    ))
    .expect("the bench roster parses");
    let tmux = Tmux::new(roster.socket.clone());
    tmux.run(["-f", "/dev/null", "new-session", "-d", "-s", "_holder", "sleep 100000"], None).unwrap();
    for i in 0..AGENTS {
        let script = format!("printf '{}'; sleep 100000", screen_of(i));
        let name = format!("a{i:02}");
        tmux.run(["new-session", "-d", "-x", "100", "-y", "30", "-s", &name, "sh", "-c", &script], None).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    let host = fleet_core::names::DnsLabel::parse_as("host", "bench").unwrap();
    let run_dir = dir.path().join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let cx = ProbeContext {
        tenant_id: "bench".into(),
        host,
        run_dir: run_dir.clone(),
        interval_secs: 15,
        now: fleet_tmux::hbwriter::now_unix(),
        systemd: false,
        call_timeout: Duration::from_secs(5),
        helpers: None,
    };
    let mut rows = probe_report(&roster, &cx).rows;
    // The probe only lists roster agents that run here: every one runs here.
    for r in &mut rows {
        r.managed = true;
    }
    assert_eq!(rows.len(), AGENTS, "every agent has a row");
    let rules = ScreenRules::parse(screen::BUILTIN_RULES).unwrap();
    let mut screens = Screens::default();

    let mut read_judge = Vec::new();
    let mut judge_only = Vec::new();
    let mut states = std::collections::BTreeMap::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let seen = screens.read(&roster, &rows, &rules);
        let mut memo = std::collections::BTreeMap::new();
        let now = fleet_node::live::now_ms();
        screen::remember(&mut memo, seen, now);
        for r in &rows {
            let a = screen::judge(r, &run_dir, memo.get(&r.name), &rules, None, now);
            *states.entry(a.state).or_insert(0usize) += 1;
        }
        read_judge.push(t.elapsed());
        // The judgement alone, on the screens just read.
        let t = Instant::now();
        for r in &rows {
            std::hint::black_box(screen::judge(r, &run_dir, memo.get(&r.name), &rules, None, now));
        }
        judge_only.push(t.elapsed());
    }
    let per_run: Vec<String> = states.iter().map(|(s, n)| format!("{s} {}", n / RUNS)).collect();
    println!("activity of {AGENTS} agents per probe: {}", per_run.join(", "));
    report("judge (rules + decision + hook file read)", judge_only);
    report("read through the control client + judge", read_judge);
    let _ = tmux.run(["kill-server"], None);
}
