//! Starting and stopping agent sessions from the roster: idempotent, by exact
//! target, never touching the tmux server or a session the roster does not name.

use crate::tmux::{Tmux, TmuxError};
use fleet_core::roster::{AgentSpec, HeartbeatSource, Roster};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Started,
    AlreadyRunning,
    Stopped,
    NotRunning,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Started => "started",
            Outcome::AlreadyRunning => "already_running",
            Outcome::Stopped => "stopped",
            Outcome::NotRunning => "not_running",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(
        "working directory {dir} of agent {agent} does not exist; create it or fix working_directory in the roster"
    )]
    NoWorkdir { agent: String, dir: String },
    #[error("cannot create the heartbeat directory {dir}: {source}")]
    RunDir {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the program of agent {agent} exited at once (status {status}); run `{command}` by hand to see why")]
    ExitedAtOnce { agent: String, status: String, command: String },
    #[error(transparent)]
    Tmux(#[from] TmuxError),
}

/// What a started session needs beyond the roster.
#[derive(Clone, Debug)]
pub struct StartEnv {
    /// The `fleet` executable, which runs the heartbeat writer.
    pub fleet_exe: PathBuf,
    pub mosaic_home: PathBuf,
    pub run_dir: PathBuf,
    pub interval_secs: u64,
    pub home: Option<PathBuf>,
    pub tenant_id: String,
    pub host: String,
}

fn expand_home(dir: &str, home: Option<&Path>) -> PathBuf {
    match (dir.strip_prefix("~"), home) {
        (Some(rest), Some(h)) if rest.is_empty() || rest.starts_with('/') => h.join(rest.trim_start_matches('/')),
        _ => PathBuf::from(dir),
    }
}

/// The runtime's command: `runtimes.<name>.command`, else the runtime's name.
pub fn runtime_command(roster: &Roster, agent: &AgentSpec) -> String {
    roster.runtime(&agent.runtime).and_then(|r| r.command.clone()).unwrap_or_else(|| agent.runtime.clone())
}

/// The program a session runs: the runtime's command, through a heartbeat
/// launcher unless the runtime writes its own heartbeats. `exec` keeps the
/// pane's pid on the runtime itself, so `pane_current_command` shows it.
pub fn session_argv(roster: &Roster, agent: &AgentSpec, env: &StartEnv) -> Vec<String> {
    let spec = roster.runtime(&agent.runtime);
    let command = runtime_command(roster, agent);
    let shell = vec!["sh".to_string(), "-c".to_string(), format!("exec {command}")];
    if spec.is_some_and(|r| r.heartbeat == HeartbeatSource::SelfWritten) {
        return shell;
    }
    let hb = fleet_core::heartbeat::heartbeat_path(&env.run_dir, agent.name.as_str());
    let mut argv = vec![
        env.fleet_exe.display().to_string(),
        "agent-exec".into(),
        "--heartbeat".into(),
        hb.display().to_string(),
        "--interval".into(),
        env.interval_secs.to_string(),
        "--".into(),
    ];
    argv.extend(shell);
    argv
}

/// The environment of a started session.
pub fn session_env(roster: &Roster, agent: &AgentSpec, env: &StartEnv) -> Vec<(String, String)> {
    let mut vars = vec![
        ("MOSAIC_AGENT_NAME".to_string(), agent.name.to_string()),
        ("MOSAIC_AGENT_RUNTIME".into(), agent.runtime.clone()),
        ("MOSAIC_HOME".into(), env.mosaic_home.display().to_string()),
        ("MOSAIC_HEARTBEAT_RUN_DIR".into(), env.run_dir.display().to_string()),
        ("MOSAIC_HEARTBEAT_INTERVAL".into(), env.interval_secs.to_string()),
        ("MOSAIC_TENANT_ID".into(), env.tenant_id.clone()),
        ("MOSAIC_HOST".into(), env.host.clone()),
    ];
    if let Some(c) = &agent.class {
        vars.push(("MOSAIC_AGENT_CLASS".into(), c.clone()));
    }
    if let Some(m) = &agent.model_hint {
        vars.push(("MOSAIC_MODEL_HINT".into(), m.clone()));
    }
    if let Some(r) = roster.runtime(&agent.runtime).and_then(|r| r.reset_command.clone()) {
        vars.push(("MOSAIC_RESET_COMMAND".into(), r));
    }
    vars
}

fn exists(tmux: &Tmux, name: &str) -> Result<bool, TmuxError> {
    match tmux.run(["has-session", "-t", &format!("={name}")], None) {
        Ok(_) => Ok(true),
        Err(e) if e.is_no_target() => Ok(false),
        Err(e) => Err(e),
    }
}

/// How long a started program must survive to count as started.
pub const SETTLE: Duration = Duration::from_millis(300);

/// Start the agents' sessions, then check once, after [`SETTLE`], that each
/// started program is still running (a missing runtime binary shows here, not
/// as a session that silently vanished).
pub fn start_many<'a>(
    roster: &Roster,
    agents: &[&'a AgentSpec],
    env: &StartEnv,
) -> Vec<(&'a AgentSpec, Result<Outcome, LifecycleError>)> {
    let mut results: Vec<_> = agents.iter().map(|a| (*a, start_session(roster, a, env))).collect();
    if !results.iter().any(|(_, r)| matches!(r, Ok(Outcome::Started))) {
        return results;
    }
    std::thread::sleep(SETTLE);
    for (agent, result) in &mut results {
        if !matches!(result, Ok(Outcome::Started)) {
            continue;
        }
        let tmux = Tmux::new(roster.socket_of(agent).clone());
        let target = crate::tmux::exact_session(agent.name.as_str());
        let status = tmux.run(["list-panes", "-t", &target, "-F", "#{pane_dead} #{pane_dead_status}"], None);
        let dead = match &status {
            // tmux 3.3 sometimes never learns the status of a program that died at once.
            Ok(out) => out
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("1"))
                .map(|s| if s.trim().is_empty() { "unknown".to_string() } else { s.trim().to_string() }),
            Err(e) if e.is_no_target() => Some("unknown".to_string()),
            Err(_) => None,
        };
        if let Some(status) = dead {
            let command = runtime_command(roster, agent);
            *result = Err(LifecycleError::ExitedAtOnce { agent: agent.name.to_string(), status, command });
        }
    }
    results
}

/// Start an agent's session if it is not running (see [`start_many`]).
pub fn start(roster: &Roster, agent: &AgentSpec, env: &StartEnv) -> Result<Outcome, LifecycleError> {
    start_many(roster, &[agent], env).pop().expect("one result per agent").1
}

fn start_session(roster: &Roster, agent: &AgentSpec, env: &StartEnv) -> Result<Outcome, LifecycleError> {
    let tmux = Tmux::new(roster.socket_of(agent).clone());
    let name = agent.name.as_str();
    if exists(&tmux, name)? {
        // A pane whose program exited is kept (remain-on-exit) to show why: run it again.
        let target = crate::tmux::exact_session(name);
        let out = tmux.run(["list-panes", "-t", &target, "-F", "#{pane_dead}"], None)?;
        if out.lines().next() == Some("1") {
            tmux.run(["respawn-pane", "-t", &target], None)?;
            return Ok(Outcome::Started);
        }
        return Ok(Outcome::AlreadyRunning);
    }
    let workdir = expand_home(roster.working_directory(agent).unwrap_or("~"), env.home.as_deref());
    if !workdir.is_dir() {
        return Err(LifecycleError::NoWorkdir { agent: name.into(), dir: workdir.display().to_string() });
    }
    std::fs::create_dir_all(&env.run_dir)
        .map_err(|source| LifecycleError::RunDir { dir: env.run_dir.display().to_string(), source })?;
    // The session starts on a placeholder; remain-on-exit is set; then the real
    // program replaces the placeholder. So a program that dies at once leaves a
    // dead pane with its exit status, never a vanished session.
    let target = crate::tmux::exact_session(name);
    let workdir = workdir.display().to_string();
    let mut args: Vec<String> =
        vec!["new-session".into(), "-d".into(), "-s".into(), name.into(), "-c".into(), workdir.clone()];
    for (k, v) in session_env(roster, agent, env) {
        args.extend(["-e".into(), format!("{k}={v}")]);
    }
    args.extend(["--".into(), "sleep".into(), "60".into(), ";".into()]);
    args.extend(["set-option", "-p", "-t", &target, "remain-on-exit", "on", ";"].map(String::from));
    args.extend(["respawn-pane", "-k", "-t", &target, "-c", &workdir, "--"].map(String::from));
    args.extend(session_argv(roster, agent, env));
    match tmux.run(&args, None) {
        Ok(_) => Ok(Outcome::Started),
        // Someone else started it between our check and our start.
        Err(TmuxError::Failed { stderr, .. }) if stderr.contains("duplicate session") => Ok(Outcome::AlreadyRunning),
        Err(e) => Err(e.into()),
    }
}

/// Stop an agent's session if it runs. Kills that session only.
pub fn stop(roster: &Roster, agent: &AgentSpec) -> Result<Outcome, LifecycleError> {
    let tmux = Tmux::new(roster.socket_of(agent).clone());
    let name = agent.name.as_str();
    if !exists(&tmux, name)? {
        return Ok(Outcome::NotRunning);
    }
    match tmux.run(["kill-session", "-t", &format!("={name}")], None) {
        Ok(_) => Ok(Outcome::Stopped),
        Err(e) if e.is_no_target() => Ok(Outcome::NotRunning),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_expansion() {
        let h = Path::new("/home/u");
        assert_eq!(expand_home("~/src", Some(h)), PathBuf::from("/home/u/src"));
        assert_eq!(expand_home("~", Some(h)), PathBuf::from("/home/u"));
        assert_eq!(expand_home("~other/x", Some(h)), PathBuf::from("~other/x"));
        assert_eq!(expand_home("/abs", Some(h)), PathBuf::from("/abs"));
    }

    #[test]
    fn argv_uses_the_launcher_unless_the_runtime_beats_itself() {
        let r = Roster::parse(
            "runtimes: { stub: { command: \"fleet stub-agent --draft\", heartbeat: self } }\nagents:\n  - { name: a, runtime: claude }\n  - { name: b, runtime: stub }\n",
        )
        .unwrap();
        let env = StartEnv {
            fleet_exe: "/bin/fleet".into(),
            mosaic_home: "/m".into(),
            run_dir: "/m/fleet/run".into(),
            interval_secs: 15,
            home: None,
            tenant_id: "t".into(),
            host: "h".into(),
        };
        let a = session_argv(&r, &r.agents[0], &env);
        assert_eq!(a[..3], ["/bin/fleet", "agent-exec", "--heartbeat"]);
        assert_eq!(a[3], "/m/fleet/run/a.hb");
        assert_eq!(a[a.len() - 3..], ["sh", "-c", "exec claude"]);
        let b = session_argv(&r, &r.agents[1], &env);
        assert_eq!(b, ["sh", "-c", "exec fleet stub-agent --draft"]);
        let vars = session_env(&r, &r.agents[0], &env);
        assert!(vars.contains(&("MOSAIC_AGENT_NAME".into(), "a".into())));
    }
}
