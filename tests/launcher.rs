//! framework/tools/fleet/start-agent-session.sh against a real tmux server
//! on a throwaway socket (in the host's temp TMUX_TMPDIR): the session, its
//! environment, a healthy heartbeat as `fleet ps --local --json` judges it,
//! idempotence, exact targets, the default socket, and a heartbeat writer
//! that outlives the script and stops with the pane.

mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use util::Host;

fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../framework/tools/fleet/start-agent-session.sh")
}

/// Run the script as host `h` (its clean environment: HOME, TMUX_TMPDIR,
/// MOSAIC_HOME, MOSAIC_HEARTBEAT_INTERVAL=1); returns (code, stdout, stderr).
fn script(h: &Host, args: &[&str], extra_env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(script_path());
    h.envs(&mut cmd);
    cmd.args(args).envs(extra_env.iter().copied()).stdin(Stdio::null());
    let o = cmd.output().expect("run start-agent-session.sh");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn env_file(h: &Host, name: &str, body: &str) {
    let dir = h.mosaic_home().join("fleet/agents");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.env")), body).unwrap();
}

/// The pid of the heartbeat writer the script reported.
fn writer_pid(stdout: &str) -> i32 {
    let rest = stdout.split("heartbeat writer pid ").nth(1).unwrap_or_else(|| panic!("no writer pid in {stdout:?}"));
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// A live process (a zombie counts as gone).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Pids of the heartbeat writers that write `file`.
fn writers_of(file: &Path) -> Vec<i32> {
    let want = file.display().to_string();
    let mut pids = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else { continue };
        let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if args.iter().any(|a| a == "--heartbeat-writer") && args.contains(&want) && alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// Kills the writers of a test on drop (they end with their panes; this is
/// for a test that fails halfway).
struct Writers(Vec<i32>);

impl Drop for Writers {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if alive(pid) {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        }
    }
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn starts_a_session_with_its_environment_and_a_healthy_heartbeat() {
    let h = Host::new();
    h.roster(
        "runtimes:
  claude: { command: \"sleep 1000\", reset_command: /clear }
agents:
  - { name: coder0-0, runtime: claude, class: implementer }
  - { name: coder0-0-extra, runtime: claude }
",
    );
    let work = h.root().join("work dir");
    std::fs::create_dir_all(&work).unwrap();
    env_file(
        &h,
        "coder0-0",
        &format!(
            "# written by an older tool
RUNTIME=claude
RUNTIME_COMMAND=sleep 1000
WORKING_DIRECTORY=~/work dir
TMUX_SOCKET_NAME={}
AGENT_CLASS=implementer
MODEL_HINT=\"gpt;\"
RESET_COMMAND='/clear'
export MOSAIC_TENANT_ID=acme
SOMETHING_ELSE=ignored
",
            h.socket
        ),
    );
    // A session whose name has the agent's as a prefix: exact targets must
    // not take it for the agent.
    h.session("coder0-0-extra", "sleep 1000");

    let (code, out, err) = script(&h, &["coder0-0"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("coder0-0: started on tmux socket -L "), "{out}");
    let hb = h.run_dir().join("coder0-0.hb");
    let mut writers = Writers(vec![writer_pid(&out)]);
    assert!(alive(writers.0[0]), "the writer outlives the script");

    // The session and its environment.
    let (code, env, _) = h.tmux(&["show-environment", "-t", "=coder0-0:"]);
    assert_eq!(code, 0);
    let home = h.mosaic_home().display().to_string();
    for want in [
        "MOSAIC_AGENT_NAME=coder0-0".to_string(),
        "MOSAIC_AGENT_RUNTIME=claude".into(),
        "MOSAIC_AGENT_CLASS=implementer".into(),
        "MOSAIC_MODEL_HINT=gpt;".into(),
        "MOSAIC_RESET_COMMAND=/clear".into(),
        "MOSAIC_TENANT_ID=acme".into(),
        format!("MOSAIC_HOME={home}"),
        format!("MOSAIC_HEARTBEAT_RUN_DIR={home}/fleet/run"),
        "MOSAIC_HEARTBEAT_INTERVAL=1".into(),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} missing from\n{env}");
    }
    assert!(!env.contains("SOMETHING_ELSE"), "{env}");
    let (_, pane, _) = h.tmux(&[
        "list-panes",
        "-t",
        "=coder0-0:",
        "-F",
        "#{pane_dead} #{pane_current_command} #{pane_pid} #{pane_current_path}",
    ]);
    let pane = pane.trim().to_string();
    assert!(pane.starts_with("0 sleep "), "{pane}");
    assert!(pane.ends_with("/work dir"), "{pane}");
    let pane_pid: u64 = pane.split(' ').nth(2).unwrap().parse().unwrap();
    let (_, roe, _) = h.tmux(&["show-options", "-p", "-t", "=coder0-0:", "remain-on-exit"]);
    assert_eq!(roe.trim(), "remain-on-exit on");

    // A healthy heartbeat, as fleet ps judges it (the pid is the pane's).
    wait_until("a healthy heartbeat in fleet ps", Duration::from_secs(10), || {
        let row = h.row("coder0-0");
        row["heartbeat"]["health"] == "healthy"
    });
    let row = h.row("coder0-0");
    assert_eq!(row["pane"], "alive", "{row}");
    assert_eq!(row["pane_pid"], pane_pid, "{row}");
    assert_eq!(row["heartbeat"]["pid"], pane_pid, "{row}");
    assert_eq!(row["heartbeat"]["status"], "ok", "{row}");
    assert_eq!(row["drift"], false, "{row}");
    let text = std::fs::read_to_string(&hb).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("ts=") && lines[0].ends_with("+0000"), "{text}");
    assert_eq!(lines[1..], [format!("pid={pane_pid}").as_str(), "status=ok"]);
    // Rewritten every interval, atomically: no temp file stays behind.
    let first = lines[0].to_string();
    wait_until("a second beat", Duration::from_secs(5), || {
        std::fs::read_to_string(&hb).is_ok_and(|t| !t.starts_with(&first))
    });
    let names: Vec<String> = std::fs::read_dir(h.run_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n == "coder0-0.hb" || n.starts_with(".hb-")), "{names:?}");
    assert!(names.iter().filter(|n| n.starts_with(".hb-")).count() <= 1, "{names:?}");

    // Idempotent: a second run leaves the session and starts no second writer.
    let (code, out, err) = script(&h, &["coder0-0"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("coder0-0: already running on tmux socket -L "), "{out}");
    assert_eq!(writers_of(&hb), writers.0, "one writer, the first one");
    let (_, again, _) = h.tmux(&["list-panes", "-t", "=coder0-0:", "-F", "#{pane_pid}"]);
    assert_eq!(again.trim(), pane_pid.to_string(), "the same pane");

    // The writer stops with the pane.
    let (code, _, err) = h.tmux(&["kill-session", "-t", "=coder0-0:"]);
    assert_eq!(code, 0, "{err}");
    let writer = writers.0[0];
    wait_until("the writer to stop after its pane", Duration::from_secs(5), || !alive(writer));
    assert!(writers_of(&hb).is_empty());
    writers.0.clear();
    // The other session was never touched.
    let (code, _, _) = h.tmux(&["has-session", "-t", "=coder0-0-extra:"]);
    assert_eq!(code, 0);
    h.assert_default_server_untouched();
}

#[test]
fn no_socket_name_means_the_default_server() {
    let mut h = Host::new();
    h.also_cleanup("");
    env_file(&h, "solo", "RUNTIME_COMMAND=exec sleep 1000\n");
    let (code, out, err) = script(&h, &["solo"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let _writers = Writers(vec![writer_pid(&out)]);
    assert!(out.contains("solo: started on the default tmux server"), "{out}");
    assert!(h.socket_path(None).exists(), "the default server of TMUX_TMPDIR runs");
    let (code, env, _) = h.tmux_on(None, &["show-environment", "-t", "=solo:"]);
    assert_eq!(code, 0);
    assert!(env.lines().any(|l| l == "MOSAIC_AGENT_RUNTIME=sleep"), "the program's name by default:\n{env}");
    let (_, path, _) = h.tmux_on(None, &["display-message", "-p", "-t", "=solo:", "#{pane_current_path}"]);
    assert_eq!(Path::new(path.trim()), h.root(), "the working directory defaults to HOME");
    // --stop kills exactly that session and removes the heartbeat file.
    let hb = h.run_dir().join("solo.hb");
    wait_until("a first beat", Duration::from_secs(5), || hb.exists());
    let (code, out, _) = script(&h, &["--stop", "solo"], &[]);
    assert_eq!((code, out.trim()), (0, "solo: stopped on the default tmux server"));
    assert!(!hb.exists());
    let (code, out, _) = script(&h, &["--stop", "solo"], &[]);
    assert_eq!((code, out.trim()), (0, "solo: not running on the default tmux server"));
}

#[test]
fn failed_starts_dead_panes_and_bad_input() {
    let h = Host::new();
    h.session("keep", "sleep 1000");
    let socket = format!("TMUX_SOCKET_NAME={}\n", h.socket);
    // A program that exits at once: exit 1, the pane kept dead.
    env_file(&h, "crasher", &format!("{socket}RUNTIME_COMMAND=sh -c 'exit 3'\n"));
    let (code, _, err) = script(&h, &["crasher"], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the program of agent crasher exited at once (status "), "{err}");
    assert!(h.run_dir().join("crasher.hb").symlink_metadata().is_err(), "no heartbeat for a failed start");
    // Fixed, it is started again in its dead pane, with the new command.
    env_file(&h, "crasher", &format!("{socket}RUNTIME_COMMAND=sleep 1000\n"));
    let (code, out, err) = script(&h, &["crasher"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let _writers = Writers(vec![writer_pid(&out)]);
    assert!(out.contains("crasher: restarted (its pane was dead)"), "{out}");
    let (_, pane, _) = h.tmux(&["list-panes", "-t", "=crasher:", "-F", "#{pane_dead} #{pane_current_command}"]);
    assert_eq!(pane.trim(), "0 sleep");

    // Bad input: exit 2 with the thing named.
    let (code, _, err) = script(&h, &["nobody"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("no env file") && err.contains("fleet/agents/nobody.env"), "{err}");
    let (code, _, err) = script(&h, &["a.b"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("tmux turns into '_'"), "{err}");
    env_file(&h, "empty", &socket);
    let (code, _, err) = script(&h, &["empty"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("RUNTIME_COMMAND is missing"), "{err}");
    env_file(&h, "nowhere", &format!("{socket}RUNTIME_COMMAND=sleep 1\nWORKING_DIRECTORY=/nonexistent/x\n"));
    let (code, _, err) = script(&h, &["nowhere"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("working directory '/nonexistent/x' of agent nowhere does not exist"), "{err}");
    env_file(&h, "garbled", "RUNTIME_COMMAND\n");
    let (code, _, err) = script(&h, &["garbled"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("garbled.env:1: expected KEY=value"), "{err}");
    let (code, _, _) = h.tmux(&["has-session", "-t", "=nowhere:"]);
    assert_ne!(code, 0, "nothing was started for bad input");
}

#[test]
fn without_an_env_file_the_roster_starts_it_through_fleet() {
    let h = Host::new();
    h.roster(&format!("{}agents:\n  - {{ name: rostered, runtime: stub }}\n", Host::RUNTIMES));
    let (code, out, err) = script(&h, &["rostered"], &[("FLEET_BIN", util::FLEET)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("handing over to"), "{out}");
    let (code, _, _) = h.tmux(&["has-session", "-t", "=rostered:"]);
    assert_eq!(code, 0);
    let (code, out, err) = script(&h, &["--stop", "rostered"], &[("FLEET_BIN", util::FLEET)]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, _) = h.tmux(&["has-session", "-t", "=rostered:"]);
    assert_ne!(code, 0);
}
