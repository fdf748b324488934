//! `fleet roster check [FILE]`: every problem, or a one-line summary.

use crate::context::{GlobalArgs, Paths};
use crate::exit::{self, CliResult};
use crate::out;
use anyhow::anyhow;
use fleet_core::roster::{Problem, Roster, Severity};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The roster [default: --roster, else $MOSAIC_HOME/fleet/roster.yaml].
    pub file: Option<PathBuf>,
    /// Print `{file, ok, agents, problems: [...]}` as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: CheckArgs, g: &GlobalArgs) -> CliResult {
    let path = args.file.or_else(|| g.roster.clone()).unwrap_or_else(|| Paths::from_env().default_roster());
    let text = fleet_core::file::read_to_string(&path, fleet_core::file::ROSTER_MAX)
        .map_err(|e| exit::usage(anyhow!("cannot read the roster {}: {e}", path.display())))?;
    let (roster, problems): (Option<Roster>, Vec<Problem>) = match Roster::parse(&text) {
        Ok(r) => {
            let w = r.invariant_warnings();
            (Some(r), w)
        }
        Err(e) => (None, e.problems),
    };
    let shown = path.display();
    let written = if args.json {
        let v = serde_json::json!({
            "file": shown.to_string(),
            "ok": roster.is_some(),
            "agents": roster.as_ref().map(|r| r.agents.len()),
            "problems": problems,
        });
        out::line(format!("{v:#}"))
    } else {
        // Errors to stderr, the rest to stdout, in the roster's order.
        let mut written = Ok(());
        for p in &problems {
            let line = format!("{shown}:{p}");
            if p.severity == Severity::Error {
                eprintln!("{line}")
            } else if written.is_ok() {
                written = out::line(line)
            }
        }
        if let Some(r) = &roster {
            let count = |c: &str| r.agents.iter().filter(|a| a.class.as_deref() == Some(c)).count();
            let warnings = problems.len();
            written = written.and_then(|()| {
                out::line(format_args!(
                    "{shown}: ok: {} agents ({} orchestrator, {} enhancer), {}{}",
                    r.agents.len(),
                    count("orchestrator"),
                    count("enhancer"),
                    r.socket,
                    if warnings > 0 { format!(", {warnings} warning(s)") } else { String::new() }
                ))
            });
        } else {
            let errors = problems.iter().filter(|p| p.severity == Severity::Error).count();
            eprintln!("{shown}: {errors} error(s)");
        }
        written
    };
    // A roster that does not parse: exit 2.
    out::verdict(written, roster.is_none().then_some(exit::Code::Usage))
}
