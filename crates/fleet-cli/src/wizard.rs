//! `fleet init` on a terminal without `--preset`: five questions, no AI.
//! The profile, the tenant, the workers' runtime, the tmux socket, and
//! whether to install and start. Each question shows its default in
//! brackets: the value the roster has now (a re-run), else the preset's.
//!
//! Re-running keeps what the operator changed that the wizard does not ask
//! about: with the same profile, the answers are applied to the roster's text
//! in place ([`fleet_core::roster_edit::apply`]: comments, order and every
//! other value kept), so the same answers change nothing. A new profile
//! starts from its preset; the old roster is kept beside it as `.bak`.

use crate::context::{GlobalArgs, Paths, user_name};
use crate::exit::{self, CliResult};
use crate::init::{Preset, checked_preset};
use anyhow::anyhow;
use fleet_core::names::DnsLabel;
use fleet_core::roster::{Roster, TmuxSocket};
use fleet_core::roster_edit::{self, ENHANCER, ORCHESTRATOR, Setting};
use std::io::{BufRead, Write};

const RUNTIMES: &str = "claude, codex, pi, opencode, gemini, aider, or your own";

struct Ask<'a> {
    input: std::io::StdinLock<'a>,
}

impl Ask<'_> {
    /// One answer: the line typed, or `default` for an empty one.
    fn line(&mut self, question: &str, default: &str) -> CliResult<String> {
        print!("{question} [{default}]: ");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let n = self.input.read_line(&mut answer).map_err(|e| exit::failed(anyhow!("reading the answer: {e}")))?;
        if n == 0 {
            println!();
            return Err(exit::usage(anyhow!("no answer to \"{question}\" (end of input): nothing was written")));
        }
        let answer = answer.trim();
        Ok(if answer.is_empty() { default.to_string() } else { answer.to_string() })
    }

    /// Ask until `check` accepts the answer.
    fn until<T>(&mut self, question: &str, default: &str, check: impl Fn(&str) -> Result<T, String>) -> CliResult<T> {
        loop {
            let answer = self.line(question, default)?;
            match check(&answer) {
                Ok(v) => return Ok(v),
                Err(why) => println!("  {why}"),
            }
        }
    }
}

/// The runtime most of `roster`'s workers (neither orchestrator nor enhancer) run.
fn workers_runtime(roster: &Roster) -> Option<String> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for a in roster.agents.iter().filter(|a| is_worker(a)) {
        match counts.iter_mut().find(|(r, _)| *r == a.runtime) {
            Some((_, n)) => *n += 1,
            None => counts.push((a.runtime.clone(), 1)),
        }
    }
    counts.into_iter().max_by_key(|(_, n)| *n).map(|(r, _)| r)
}

fn is_worker(a: &fleet_core::roster::AgentSpec) -> bool {
    !matches!(a.class.as_deref(), Some(ORCHESTRATOR | ENHANCER))
}

pub fn run(g: &GlobalArgs) -> CliResult {
    let path = g.roster.clone().unwrap_or_else(|| Paths::from_env().default_roster());
    let shown = path.display().to_string();
    let existing = match fleet_core::file::read_to_string(&path, fleet_core::file::ROSTER_MAX) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(exit::usage(anyhow!("cannot read {shown}: {e}"))),
    };
    let current = existing.as_deref().and_then(|t| Roster::parse(t).ok());
    println!("fleet init: five questions (Enter keeps the value in brackets); the roster goes to {shown}.");
    if existing.is_some() && current.is_none() {
        println!("  {shown} exists but does not parse: it will be kept as {shown}.bak");
    }
    let stdin = std::io::stdin();
    let mut ask = Ask { input: stdin.lock() };

    let names: Vec<&str> = Preset::ALL.iter().map(|p| p.name()).collect();
    let profile_default = current.as_ref().and_then(|r| r.profile.clone()).unwrap_or_else(|| "coding".into());
    let preset = ask.until(&format!("Profile ({})", names.join(", ")), &profile_default, |a| {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == a)
            .ok_or_else(|| format!("{a:?} is not one of {}", names.join(", ")))
    })?;
    let tenant_default = current
        .as_ref()
        .and_then(|r| r.tenant_id.as_ref().map(|t| t.to_string()))
        .or_else(|| g.tenant.clone())
        .or_else(|| DnsLabel::sanitize("user name", &user_name()).ok().map(|t| t.to_string()))
        .unwrap_or_else(|| "fleet".into());
    let tenant = ask.until("Tenant id (one per Linux user and mesh)", &tenant_default, |a| {
        DnsLabel::parse_as("tenant id", a).map(|t| t.to_string()).map_err(|e| e.to_string())
    })?;
    let same_profile = current.as_ref().is_some_and(|r| r.profile.as_deref() == Some(preset.name()));
    let base_roster = if same_profile { current.clone() } else { None };
    let preset_roster = checked_preset(preset.name(), preset.text())?;
    let runtime_default = base_roster
        .as_ref()
        .and_then(workers_runtime)
        .or_else(|| workers_runtime(&preset_roster))
        .unwrap_or_else(|| "claude".into());
    let runtime = ask.until(&format!("Runtime for the workers ({RUNTIMES})"), &runtime_default, |a| {
        fleet_core::names::check_agent_chars("runtime", a).map(|()| a.to_string()).map_err(|e| e.to_string())
    })?;
    let socket_default = match base_roster.as_ref().or(current.as_ref()).map(|r| &r.socket) {
        Some(TmuxSocket::Name(n)) => n.clone(),
        _ => "mosaic-fleet".into(),
    };
    let socket = ask.until("tmux socket name (tmux -L NAME)", &socket_default, |a| {
        if a.contains('/') || a.is_empty() || a.chars().any(char::is_whitespace) {
            Err(format!("{a:?} is not a socket name: no '/', no spaces"))
        } else {
            Ok(a.to_string())
        }
    })?;
    let install = ask.until("Install the systemd user units and start the fleet now? (y/n)", "n", |a| {
        match a.to_ascii_lowercase().as_str() {
            "y" | "yes" => Ok(true),
            "n" | "no" => Ok(false),
            _ => Err("y or n".into()),
        }
    })?;
    drop(ask);

    // The text the answers go into: the roster as it is (same profile), else the preset.
    let base = match (&existing, same_profile) {
        (Some(text), true) => text.clone(),
        _ => preset.text().to_string(),
    };
    let mut settings = vec![
        Setting::Top { key: "profile", value: preset.name().into() },
        Setting::Top { key: "tenant_id", value: tenant.clone() },
        Setting::Socket(socket.clone()),
    ];
    let base_parsed = Roster::parse(&base).map_err(|e| exit::failed(anyhow!("{shown}: {e}")))?;
    for a in base_parsed.agents.iter().filter(|a| is_worker(a)) {
        settings.push(Setting::AgentRuntime { agent: a.name.to_string(), runtime: runtime.clone() });
    }
    let mut text = base;
    for s in &settings {
        text = roster_edit::apply(&text, s).map_err(|e| exit::failed(anyhow!("{shown}: {e}")))?;
    }
    let roster = Roster::parse(&text).map_err(|e| exit::failed(anyhow!("the new roster does not parse: {e}")))?;
    if existing.as_deref() == Some(text.as_str()) {
        println!("unchanged {shown}: profile {}, {} agents", preset.name(), roster.agents.len());
    } else {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| exit::failed(anyhow!("cannot create {}: {e}", dir.display())))?;
        }
        if let Some(old) = &existing
            && !same_profile
        {
            let bak = path.with_file_name(format!(
                "{}.bak",
                path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            ));
            fleet_tmux::roster_file::write_atomic(&bak, old.as_bytes())
                .map_err(|e| exit::failed(anyhow!("cannot write {}: {e}", bak.display())))?;
            println!("kept the old roster as {}", bak.display());
        }
        fleet_tmux::roster_file::write_atomic(&path, text.as_bytes())
            .map_err(|e| exit::failed(anyhow!("cannot write {shown}: {e}")))?;
        let names: Vec<&str> = roster.agents.iter().map(|a| a.name.as_str()).collect();
        println!(
            "wrote {shown}: profile {}, tenant {tenant}, socket -L {socket}, {} agents ({})",
            preset.name(),
            names.len(),
            names.join(", ")
        );
    }
    if !install {
        println!(
            "next: `fleet install` (framework files and systemd user units), then `fleet start --all --local` and \
             `fleet node` (or `fleet init` again and answer y); `fleet verify` checks the result"
        );
        return Ok(());
    }
    let args = crate::init::InstallArgs { dry_run: false, force: false, hooks: None };
    if let Err(e) = crate::init::install(args, g) {
        eprintln!("fleet install: {:#}", e.error);
        return Err(exit::CliError::new(
            e.code,
            anyhow!("the roster is written, but the install failed (above): fix that, then `fleet install`"),
        ));
    }
    start_now(&roster, &socket, g)?;
    println!("next: `fleet verify` (every session, unit and heartbeat checked), then `fleet ps`");
    Ok(())
}

/// Start the fleet: through systemd where a user manager runs, else the
/// holder session and every agent directly.
fn start_now(roster: &Roster, socket: &str, g: &GlobalArgs) -> CliResult {
    if fleet_tmux::roster_file::has_user_manager() {
        let mut units: Vec<String> = vec!["mosaic-tmux-holder.service".into(), "fleet-node.service".into()];
        units.extend(roster.agents.iter().map(|a| fleet_tmux::systemd::agent_unit(a.name.as_str())));
        for args in [vec!["--user".to_string(), "daemon-reload".into()], {
            let mut a = vec!["--user".to_string(), "enable".into(), "--now".into()];
            a.extend(units.clone());
            a
        }] {
            println!("systemctl {}", args.join(" "));
            let ok = std::process::Command::new("systemctl").args(&args).status().is_ok_and(|s| s.success());
            if !ok {
                return Err(exit::failed(anyhow!("`systemctl {}` failed: see above", args.join(" "))));
            }
        }
        return Ok(());
    }
    let holder = roster.holder_session.clone().unwrap_or_else(|| "_holder".into());
    let tmux = fleet_tmux::tmux::Tmux::new(TmuxSocket::Name(socket.into()));
    if tmux.run(["has-session", "-t", &format!("={holder}")], None).is_err() {
        tmux.run(["new-session", "-d", "-s", &holder, "sleep infinity"], None)
            .map_err(|e| exit::failed(anyhow!("cannot start the holder session {holder} on -L {socket}: {e}")))?;
    }
    let args = crate::lifecycle::LifecycleArgs { target: None, all: true, local: true, json: false };
    crate::lifecycle::run(crate::lifecycle::Verb::Start, args, g)?;
    println!("no systemd user manager here: run `fleet node` yourself (it is not started)");
    Ok(())
}
