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
    #[error("the session is stopped, but its heartbeat file {file} could not be removed: {source}")]
    ClearHeartbeat {
        file: String,
        #[source]
        source: std::io::Error,
    },
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

pub(crate) fn expand_home(dir: &str, home: Option<&Path>) -> PathBuf {
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
    if let Some(r) = fleet_core::runtime::reset_command(roster, &agent.runtime) {
        vars.push(("MOSAIC_RESET_COMMAND".into(), r.to_string()));
    }
    // For whatever dispatches tasks: reset (`fleet reset`) before the next one.
    if let Some(b) = agent.reset_between_tasks {
        vars.push(("MOSAIC_RESET_BETWEEN_TASKS".into(), b.to_string()));
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
    let target = crate::tmux::exact_session(name);
    let dead = if exists(&tmux, name)? {
        let out = tmux.run(["list-panes", "-t", &target, "-F", "#{pane_dead}"], None)?;
        if out.lines().next() != Some("1") {
            return Ok(Outcome::AlreadyRunning);
        }
        true
    } else {
        false
    };
    let workdir = expand_home(roster.working_directory(agent).unwrap_or("~"), env.home.as_deref());
    if !workdir.is_dir() {
        return Err(LifecycleError::NoWorkdir { agent: name.into(), dir: workdir.display().to_string() });
    }
    std::fs::create_dir_all(&env.run_dir)
        .map_err(|source| LifecycleError::RunDir { dir: env.run_dir.display().to_string(), source })?;
    let workdir = workdir.display().to_string();
    let env_args = session_env(roster, agent, env).into_iter().flat_map(|(k, v)| ["-e".into(), format!("{k}={v}")]);
    if dead {
        // A pane whose program exited is kept (remain-on-exit) to show why. Run
        // what the roster says now (not the pane's old command), where and
        // with the environment it says now.
        let args = ["respawn-pane", "-k", "-t", &target, "-c", &workdir].map(String::from).into_iter().chain(env_args);
        let args: Vec<String> =
            args.chain(std::iter::once("--".into())).chain(session_argv(roster, agent, env)).collect();
        tmux.run(escape_args(&args), None)?;
        return Ok(Outcome::Started);
    }
    // The session starts on a placeholder; remain-on-exit is set; then the real
    // program replaces the placeholder. So a program that dies at once leaves a
    // dead pane with its exit status, never a vanished session. The `;`
    // separators are the only arguments that are not escaped.
    let mut args: Vec<String> = ["new-session", "-d", "-s", name, "-c", &workdir].map(String::from).into();
    args.extend(env_args);
    args.extend(["--", "sleep", "60"].map(String::from));
    let mut args = escape_args(&args);
    args.push(";".into());
    args.extend(["set-option", "-p", "-t", &target, "remain-on-exit", "on"].map(String::from));
    args.push(";".into());
    let mut respawn: Vec<String> = ["respawn-pane", "-k", "-t", &target, "-c", &workdir, "--"].map(String::from).into();
    respawn.extend(session_argv(roster, agent, env));
    args.extend(escape_args(&respawn));
    match tmux.run(&args, None) {
        Ok(_) => Ok(Outcome::Started),
        // Someone else started it between our check and our start.
        Err(TmuxError::Failed { stderr, .. }) if stderr.contains("duplicate session") => Ok(Outcome::AlreadyRunning),
        Err(e) => Err(e.into()),
    }
}

/// Every argument made safe for tmux's command-line parsing (a trailing `;`
/// would end the command: see [`crate::tmux::escape_arg`]).
fn escape_args(args: &[String]) -> Vec<String> {
    args.iter().map(|a| crate::tmux::escape_arg(a).into_owned()).collect()
}

/// Stop an agent's session if it runs. Kills that session only. (Killing the
/// last session of a server ends that server, unless its `exit-empty` option
/// is off.) Leaves the heartbeat file: prefer [`stop_and_clear`].
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

/// [`stop`], then remove `<run_dir>/<agent>.hb` once the session is gone, so
/// a stopped agent never shows its last (still fresh) heartbeat as healthy.
/// A missing file is fine; the file is also removed when the session was not
/// running.
pub fn stop_and_clear(roster: &Roster, agent: &AgentSpec, run_dir: &Path) -> Result<Outcome, LifecycleError> {
    let outcome = stop(roster, agent)?;
    let hb = fleet_core::heartbeat::heartbeat_path(run_dir, agent.name.as_str());
    match std::fs::remove_file(&hb) {
        Ok(()) => Ok(outcome),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(outcome),
        Err(source) => Err(LifecycleError::ClearHeartbeat { file: hb.display().to_string(), source }),
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
        assert!(vars.contains(&("MOSAIC_RESET_COMMAND".into(), "/clear".into())), "claude's built-in reset");
        assert!(!vars.iter().any(|(k, _)| k == "MOSAIC_RESET_BETWEEN_TASKS"));
        let r2 = Roster::parse("agents:\n  - { name: a, runtime: x, reset_between_tasks: true }\n").unwrap();
        let vars = session_env(&r2, &r2.agents[0], &env);
        assert!(vars.contains(&("MOSAIC_RESET_BETWEEN_TASKS".into(), "true".into())));
        assert!(!vars.iter().any(|(k, _)| k == "MOSAIC_RESET_COMMAND"), "no reset known for runtime x");
    }

    use crate::testutil::TestServer;

    fn roster_on(server: &TestServer, body: &str) -> Roster {
        Roster::parse(&format!("tmux: {{ socket_path: \"{}\" }}\n{body}", server.socket().spec())).unwrap()
    }

    fn start_env(dir: &Path) -> StartEnv {
        StartEnv {
            fleet_exe: "/nonexistent/fleet".into(),
            mosaic_home: dir.join("home"),
            run_dir: dir.join("run"),
            interval_secs: 1,
            home: Some(dir.to_path_buf()),
            tenant_id: "t".into(),
            host: "h".into(),
        }
    }

    fn pane(server: &TestServer, name: &str) -> String {
        let format = "#{pane_dead} #{pane_current_command} #{pane_current_path}";
        server.tmux.run(["list-panes", "-t", &format!("={name}:"), "-F", format], None).unwrap().trim().to_string()
    }

    #[test]
    fn start_on_a_dead_pane_runs_the_current_roster_command() {
        let server = TestServer::new();
        // Start the server with no user config; it must outlive the test's own sessions.
        server.session("keep", &["sleep", "1000"]);
        let dir = server.dir.path();
        std::fs::create_dir_all(dir.join("w1")).unwrap();
        std::fs::create_dir_all(dir.join("w2")).unwrap();
        let env = start_env(dir);
        let old = roster_on(
            &server,
            "runtimes: { r: { command: \"sh -c 'exit 3'\", heartbeat: self } }\nagents:\n  - { name: a, runtime: r, working_directory: ~/w1 }\n",
        );
        let err = start(&old, &old.agents[0], &env).unwrap_err();
        assert!(matches!(err, LifecycleError::ExitedAtOnce { .. }), "{err}");
        assert!(pane(&server, "a").starts_with("1 "), "the pane is kept dead");
        let new = roster_on(
            &server,
            "runtimes: { r: { command: \"sleep 1000\", heartbeat: self } }\nagents:\n  - { name: a, runtime: r, working_directory: ~/w2, model_hint: m2 }\n",
        );
        assert_eq!(start(&new, &new.agents[0], &env).unwrap(), Outcome::Started);
        let shown = pane(&server, "a");
        assert!(shown.starts_with("0 sleep "), "the roster's new command runs: {shown}");
        assert!(shown.ends_with("/w2"), "in the roster's new directory: {shown}");
        // With the roster's environment now (the process's own, not the session's).
        let pid = server.tmux.run(["list-panes", "-t", "=a:", "-F", "#{pane_pid}"], None).unwrap();
        let environ = std::fs::read(format!("/proc/{}/environ", pid.trim())).unwrap();
        assert!(environ.split(|b| *b == 0).any(|v| v == b"MOSAIC_MODEL_HINT=m2"), "the new model hint is set");
        assert_eq!(start(&new, &new.agents[0], &env).unwrap(), Outcome::AlreadyRunning);
    }

    #[test]
    fn values_ending_in_a_semicolon_do_not_split_the_start_command() {
        let server = TestServer::new();
        server.session("keep", &["sleep", "1000"]);
        let dir = server.dir.path();
        let r = roster_on(
            &server,
            "runtimes: { r: { command: \"sleep 1000;\", heartbeat: self, reset_command: \"/clear;\" } }\nagents:\n  - { name: a, runtime: r, working_directory: /, model_hint: \"gpt;\" }\n",
        );
        assert_eq!(start(&r, &r.agents[0], &start_env(dir)).unwrap(), Outcome::Started);
        let env = server.tmux.run(["show-environment", "-t", "=a"], None).unwrap();
        assert!(env.lines().any(|l| l == "MOSAIC_MODEL_HINT=gpt;"), "{env}");
        assert!(env.lines().any(|l| l == "MOSAIC_RESET_COMMAND=/clear;"), "{env}");
        let start_command = server.tmux.run(["list-panes", "-t", "=a:", "-F", "#{pane_start_command}"], None).unwrap();
        assert!(start_command.trim().ends_with("sleep 1000;\""), "{start_command}");
    }

    #[test]
    fn stop_and_clear_removes_the_heartbeat_file() {
        let server = TestServer::new();
        server.session("keep", &["sleep", "1000"]);
        server.session("a", &["sleep", "1000"]);
        let r = roster_on(&server, "agents:\n  - { name: a, runtime: claude }\n  - { name: b, runtime: claude }\n");
        let run_dir = server.dir.path().join("run");
        std::fs::create_dir_all(&run_dir).unwrap();
        let hb = |n: &str| fleet_core::heartbeat::heartbeat_path(&run_dir, n);
        for n in ["a", "b"] {
            crate::hbwriter::write_heartbeat(&hb(n), 1, fleet_core::heartbeat::BeatStatus::Ok).unwrap();
        }
        assert_eq!(stop_and_clear(&r, &r.agents[0], &run_dir).unwrap(), Outcome::Stopped);
        assert!(!hb("a").exists(), "a stopped agent leaves no heartbeat behind");
        assert_eq!(stop_and_clear(&r, &r.agents[0], &run_dir).unwrap(), Outcome::NotRunning);
        assert_eq!(stop_and_clear(&r, &r.agents[1], &run_dir).unwrap(), Outcome::NotRunning);
        assert!(!hb("b").exists());
        assert!(pane(&server, "keep").starts_with("0 sleep"), "other sessions are untouched");
    }
}
