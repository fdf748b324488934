//! `fleet init` and `fleet install` with the real binary in a temp home, and
//! the deploy/ files: every preset yields a roster `fleet roster check`
//! accepts; `install --dry-run` lists exactly what it would write and writes
//! nothing; `install` writes those files with their modes, refuses to replace
//! differing files without --force, and its units pass `systemd-analyze
//! verify` where that tool exists; deploy/node.example.yaml explains exactly
//! the node's keys.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const FLEET: &str = env!("CARGO_BIN_EXE_fleet");
const PRESETS: [&str; 5] = ["general", "coding", "research", "hybrid", "minimal"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn repo_file(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A temp home: `fleet` runs with HOME there, a clean environment, and
/// `extra` variables (MOSAIC_HOME, XDG_CONFIG_HOME, ...).
struct Home {
    dir: tempfile::TempDir,
    extra: Vec<(String, String)>,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::Builder::new().prefix("fleet-framework-").tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::create_dir_all(dir.path().join("xdg-runtime")).unwrap();
        Home { dir, extra: vec![] }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn set(&mut self, k: &str, v: &Path) {
        self.extra.push((k.into(), v.display().to_string()));
    }

    fn fleet(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = Command::new(FLEET);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("USER", "tester")
            .env("FLEET_HOST", "testhost")
            // No systemd user manager is found here.
            .env("XDG_RUNTIME_DIR", self.dir.path().join("xdg-runtime"))
            .envs(self.extra.iter().map(|(k, v)| (k, v)))
            .args(args)
            .stdin(Stdio::null());
        let o = cmd.output().expect("run fleet");
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }
}

/// Every file under `dir`, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(files_under(&p)) } else { out.push(p) }
    }
    out.sort();
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o7777
}

#[test]
fn init_prints_and_writes_every_preset_as_a_roster_that_checks() {
    let h = Home::new();
    for p in PRESETS {
        let want = repo_file(&format!("framework/fleet/presets/{p}.yaml"));
        let (code, out, err) = h.fleet(&["init", "--preset", p]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, want, "init --preset {p} prints the preset as it is");

        let file = h.dir.path().join(format!("{p}.yaml"));
        let shown = file.display().to_string();
        let (code, out, err) = h.fleet(&["init", "--preset", p, "--write", "--roster", &shown]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.starts_with(&format!("wrote {shown}: preset {p}, ")), "{out}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), want);
        assert_eq!(mode(&file), 0o644);
        let (code, out, err) = h.fleet(&["roster", "check", &shown]);
        assert_eq!(code, 0, "roster check {p}: {out}{err}");
        assert!(out.contains(": ok: "), "{out}");
        assert!(out.contains("1 orchestrator"), "{out}");
        if p != "minimal" {
            assert!(!out.contains("warning"), "{p}: {out}");
        }
    }
}

#[test]
fn init_writes_the_default_roster_and_refuses_to_overwrite_without_force() {
    let h = Home::new();
    let roster = h.home().join(".config/mosaic/fleet/roster.yaml");
    let (code, out, err) = h.fleet(&["init", "--preset", "coding", "--write"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&roster.display().to_string()), "{out}");
    let coding = repo_file("framework/fleet/presets/coding.yaml");
    assert_eq!(std::fs::read_to_string(&roster).unwrap(), coding);

    let (code, out, err) = h.fleet(&["init", "--preset", "minimal", "--write"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains(&format!("{} exists", roster.display())) && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&roster).unwrap(), coding, "left as it was");

    let (code, _, err) = h.fleet(&["init", "--preset", "minimal", "--write", "--force"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&roster).unwrap(), repo_file("framework/fleet/presets/minimal.yaml"));
    let names: Vec<_> = std::fs::read_dir(roster.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["roster.yaml"], "no temp file left behind");

    // Usage errors: exit 2.
    assert_eq!(h.fleet(&["init", "--preset", "minimal", "--force"]).0, 2, "--force needs --write");
    let (code, _, err) = h.fleet(&["init", "--preset", "huge"]);
    assert_eq!(code, 2);
    assert!(err.contains("general") && err.contains("minimal"), "the presets are named: {err}");
    assert_eq!(h.fleet(&["init"]).0, 2, "--preset is required without a terminal");
}

/// What `fleet install` writes, in its order: the framework files under
/// `mosaic_home/framework`, then the units under `unit_dir`.
fn install_list(mosaic_home: &Path, unit_dir: &Path) -> Vec<PathBuf> {
    let home = mosaic_home.parent().unwrap().parent().unwrap();
    install_list_in(mosaic_home, unit_dir, &home.join(".local/share"), &home.join(".config"))
}

/// [`install_list`], then the completion scripts and the man page under the XDG data and config dirs.
fn install_list_in(mosaic_home: &Path, unit_dir: &Path, data: &Path, config: &Path) -> Vec<PathBuf> {
    let fw = mosaic_home.join("framework");
    let mut list = vec![fw.join("fleet/roster.schema.json")];
    list.extend(PRESETS.iter().map(|p| fw.join(format!("fleet/presets/{p}.yaml"))));
    list.push(fw.join("tools/fleet/start-agent-session.sh"));
    let units = ["fleet-node.service", "mosaic-agent@.service", "mosaic-tmux-holder.service"];
    list.extend(units.iter().map(|u| fw.join("systemd").join(u)));
    list.extend(units.iter().map(|u| unit_dir.join(u)));
    list.push(data.join("bash-completion/completions/fleet"));
    list.push(data.join("zsh/site-functions/_fleet"));
    list.push(config.join("fish/completions/fleet.fish"));
    list.push(data.join("man/man1/fleet.1"));
    // One page per command, in `fleet --help`'s order.
    let help = std::process::Command::new(FLEET).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let verbs: Vec<&str> = help
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|v| *v != "help")
        .collect();
    assert!(verbs.len() > 20 && verbs.contains(&"send"), "{help}");
    list.extend(verbs.iter().map(|v| data.join(format!("man/man1/fleet-{v}.1"))));
    list
}

/// The paths of the output lines that start with `verb `.
fn listed(out: &str, verb: &str) -> Vec<PathBuf> {
    out.lines().filter_map(|l| l.strip_prefix(verb)).filter_map(|l| l.strip_prefix(' ')).map(PathBuf::from).collect()
}

#[test]
fn install_dry_run_lists_exactly_what_it_would_write_and_writes_nothing() {
    let h = Home::new();
    let (code, out, err) = h.fleet(&["install", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    let home = h.home();
    let want = install_list(&home.join(".config/mosaic"), &home.join(".config/systemd/user"));
    assert_eq!(listed(&out, "would write"), want, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with('/') || l.starts_with("would ")).count(), want.len(), "{out}");
    assert!(out.contains("(dry run: nothing was written)"), "{out}");
    assert!(out.contains("systemctl --user daemon-reload"), "{out}");
    assert!(out.contains("systemctl --user enable --now mosaic-tmux-holder.service fleet-node.service"), "{out}");
    assert_eq!(files_under(h.dir.path()), Vec::<PathBuf>::new(), "nothing written");
    assert_eq!(std::fs::read_dir(&home).unwrap().count(), 0, "not even a directory");

    // XDG_CONFIG_HOME decides where the units go; MOSAIC_HOME where the framework goes.
    let mut h = Home::new();
    let (mh, xdg) = (h.dir.path().join("mh"), h.dir.path().join("xdg-config"));
    h.set("MOSAIC_HOME", &mh);
    h.set("XDG_CONFIG_HOME", &xdg);
    let (code, out, err) = h.fleet(&["install", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    let data = h.home().join(".local/share");
    assert_eq!(listed(&out, "would write"), install_list_in(&mh, &xdg.join("systemd/user"), &data, &xdg), "{out}");
    assert_eq!(files_under(h.dir.path()), Vec::<PathBuf>::new(), "nothing written");
    assert!(out.contains("no roster at") && out.contains("`fleet init`"), "a missing roster: {out}");

    // A roster that is there but broken is not called missing.
    std::fs::create_dir_all(mh.join("fleet")).unwrap();
    std::fs::write(mh.join("fleet/roster.yaml"), "agents:\n  - { name: a, runtime: stub\n").unwrap();
    let (code, out, err) = h.fleet(&["install", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("no roster at"), "{out}");
    assert!(out.contains("is not valid: `fleet roster check` shows why"), "{out}");
}

#[test]
fn install_writes_the_files_with_their_modes_and_refuses_to_clobber() {
    let h = Home::new();
    let home = h.home();
    let list = install_list(&home.join(".config/mosaic"), &home.join(".config/systemd/user"));
    // A roster, so the next steps name its agents.
    let (code, _, err) = h.fleet(&["init", "--preset", "minimal", "--write"]);
    assert_eq!(code, 0, "{err}");

    let (code, out, err) = h.fleet(&["install"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(listed(&out, "wrote"), list, "{out}");
    assert!(
        out.contains("systemctl --user enable --now mosaic-agent@orchestrator.service mosaic-agent@worker.service"),
        "{out}"
    );
    assert!(out.contains("no systemd user manager runs"), "{out}");
    let mut on_disk = files_under(&home);
    on_disk.retain(|p| !p.ends_with("fleet/roster.yaml"));
    let mut want = list.clone();
    want.sort();
    assert_eq!(on_disk, want, "exactly the listed files, no temp file");

    // Contents and modes.
    let fw = home.join(".config/mosaic/framework");
    for (rel, m) in [
        ("fleet/roster.schema.json", 0o644),
        ("fleet/presets/coding.yaml", 0o644),
        ("tools/fleet/start-agent-session.sh", 0o755),
        ("systemd/fleet-node.service", 0o644),
        ("systemd/mosaic-agent@.service", 0o644),
        ("systemd/mosaic-tmux-holder.service", 0o644),
    ] {
        let p = fw.join(rel);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), repo_file(&format!("framework/{rel}")), "{rel}");
        assert_eq!(mode(&p), m, "{rel}");
    }
    let units = home.join(".config/systemd/user");
    let node = std::fs::read_to_string(units.join("fleet-node.service")).unwrap();
    assert!(node.contains(&format!("\nExecStart={FLEET} node\n")), "the running fleet's path:\n{node}");
    assert!(node.contains("\nReadWritePaths=%h/.config/mosaic\n"), "the default MOSAIC_HOME stays %h:\n{node}");
    let agent = std::fs::read_to_string(units.join("mosaic-agent@.service")).unwrap();
    assert!(agent.contains(&format!("\nEnvironment=FLEET_BIN={FLEET}\n")), "{agent}");
    assert_eq!(
        std::fs::read_to_string(units.join("mosaic-tmux-holder.service")).unwrap(),
        repo_file("framework/systemd/mosaic-tmux-holder.service")
    );
    for u in ["fleet-node.service", "mosaic-agent@.service", "mosaic-tmux-holder.service"] {
        assert_eq!(mode(&units.join(u)), 0o644, "{u}");
    }

    // The completions and the man page come from this binary: a changed one is replaced without --force.
    let bash = home.join(".local/share/bash-completion/completions/fleet");
    assert!(std::fs::read_to_string(&bash).unwrap().contains("_fleet_with_targets"));
    assert!(std::fs::read_to_string(home.join(".local/share/man/man1/fleet.1")).unwrap().starts_with(".ie \\n(.g"));
    std::fs::write(&bash, "# old\n").unwrap();
    let (code, out, err) = h.fleet(&["install"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(listed(&out, "replaced"), std::slice::from_ref(&bash), "{out}");

    // Again: nothing to do.
    let (code, out, err) = h.fleet(&["install"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(listed(&out, "unchanged"), list, "{out}");

    // A file changed by hand is not replaced without --force, and then
    // nothing at all is written.
    let script = fw.join("tools/fleet/start-agent-session.sh");
    std::fs::write(&script, "#!/bin/sh\n# mine\n").unwrap();
    let schema = fw.join("fleet/roster.schema.json");
    std::fs::remove_file(&schema).unwrap();
    let (code, out, err) = h.fleet(&["install"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains(&format!("  {}\n", script.display())) && err.contains("--force"), "{err}");
    assert!(!schema.exists(), "nothing written when refusing");
    assert_eq!(std::fs::read_to_string(&script).unwrap(), "#!/bin/sh\n# mine\n");
    let (code, out, _) = h.fleet(&["install", "--dry-run"]);
    assert_eq!(code, 2, "a dry run refuses alike: {out}");

    let (code, out, err) = h.fleet(&["install", "--dry-run", "--force"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(listed(&out, "would replace"), std::slice::from_ref(&script), "{out}");
    assert_eq!(listed(&out, "would write"), std::slice::from_ref(&schema), "{out}");
    let (code, out, err) = h.fleet(&["install", "--force"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(listed(&out, "replaced"), std::slice::from_ref(&script), "{out}");
    assert_eq!(std::fs::read_to_string(&script).unwrap(), repo_file("framework/tools/fleet/start-agent-session.sh"));
    assert_eq!(mode(&script), 0o755);
    assert!(schema.exists());

    // A wrong mode alone is fixed without --force.
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out, err) = h.fleet(&["install"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(listed(&out, "chmod"), std::slice::from_ref(&script), "{out}");
    assert_eq!(mode(&script), 0o755);

    verify_units(&h, &units);
}

/// `systemd-analyze --user verify` on the installed units, where the tool
/// exists (it needs no running systemd with HOME and XDG_RUNTIME_DIR set).
fn verify_units(h: &Home, units: &Path) {
    let found = Command::new("systemd-analyze").arg("--version").stdout(Stdio::null()).status().is_ok();
    if !found {
        eprintln!("systemd-analyze not found: units not verified");
        return;
    }
    let instance = units.join("mosaic-agent@orchestrator.service");
    std::os::unix::fs::symlink(units.join("mosaic-agent@.service"), &instance).unwrap();
    for u in ["fleet-node.service", "mosaic-tmux-holder.service", "mosaic-agent@orchestrator.service"] {
        let o = Command::new("systemd-analyze")
            .env("HOME", h.home())
            .env("XDG_RUNTIME_DIR", h.dir.path().join("xdg-runtime"))
            .args(["--user", "verify", "--man=no"])
            .arg(units.join(u))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        if err.contains("Failed to initialize manager") {
            eprintln!("systemd-analyze cannot run here ({}): units not verified", err.trim());
            return;
        }
        assert!(o.status.success() && err.trim().is_empty(), "systemd-analyze verify {u}:\n{err}");
    }
    std::fs::remove_file(instance).unwrap();
}

#[test]
fn install_writes_a_custom_mosaic_home_into_the_units() {
    let mut h = Home::new();
    let (mh, xdg) = (h.dir.path().join("state/mosaic"), h.dir.path().join("cfg"));
    h.set("MOSAIC_HOME", &mh);
    h.set("XDG_CONFIG_HOME", &xdg);
    let (code, out, err) = h.fleet(&["install"]);
    assert_eq!(code, 0, "{out}{err}");
    let data = h.home().join(".local/share");
    assert_eq!(listed(&out, "wrote"), install_list_in(&mh, &xdg.join("systemd/user"), &data, &xdg), "{out}");
    let agent = std::fs::read_to_string(xdg.join("systemd/user/mosaic-agent@.service")).unwrap();
    let mh = mh.display().to_string();
    assert!(agent.contains(&format!("\nExecStart={mh}/framework/tools/fleet/start-agent-session.sh %i\n")), "{agent}");
    assert!(agent.contains(&format!("\nEnvironment=MOSAIC_HOME={mh}\n")), "{agent}");
    assert!(agent.lines().all(|l| l.starts_with('#') || !l.contains("%h/.config/mosaic")), "{agent}");
    // The framework's own copy stays as shipped.
    let shipped = std::fs::read_to_string(format!("{mh}/framework/systemd/mosaic-agent@.service")).unwrap();
    assert_eq!(shipped, repo_file("framework/systemd/mosaic-agent@.service"));

    // A MOSAIC_HOME a unit line cannot hold unquoted is refused, nothing written.
    let mut h = Home::new();
    let spaced = h.dir.path().join("my mosaic");
    h.set("MOSAIC_HOME", &spaced);
    let (code, _, err) = h.fleet(&["install"]);
    assert_eq!(code, 2);
    assert!(err.contains("contains ' '"), "{err}");
    assert_eq!(files_under(h.dir.path()), Vec::<PathBuf>::new());
}

#[test]
fn deploy_node_unit_is_the_frameworks() {
    assert_eq!(repo_file("deploy/fleet-node.service"), repo_file("framework/systemd/fleet-node.service"));
    let unit = repo_file("deploy/fleet-node.service");
    for line in [
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=%h/.config/mosaic",
        "PrivateTmp=false",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing");
    }
}

/// deploy/node.example.yaml, with its settings uncommented: `#key: value`
/// lines, and `#  key: value` under `#timings:`.
fn uncommented_example() -> String {
    repo_file("deploy/node.example.yaml")
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| !c.is_whitespace() && c != '#') => rest,
            Some(rest) if rest.starts_with("  ") && !rest[2..].starts_with(char::is_whitespace) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn node_example_explains_exactly_the_nodes_keys() {
    let dir = tempfile::tempdir().unwrap();
    let env = |k: &str| (k == "MOSAIC_HOME").then(|| dir.path().display().to_string());
    // As shipped (every key commented out): valid, all defaults.
    let file = dir.path().join("node.yaml");
    std::fs::write(&file, repo_file("deploy/node.example.yaml")).unwrap();
    fleet_node::config::NodeConfig::load(Some(&file), &env).expect("the example as shipped loads");

    // Uncommented: valid, and it sets exactly the node's keys.
    let text = uncommented_example();
    std::fs::write(&file, &text).unwrap();
    let cfg = fleet_node::config::NodeConfig::load(Some(&file), &env)
        .unwrap_or_else(|e| panic!("the uncommented example does not load: {e}\n{text}"));
    assert_eq!(cfg.listen.to_string(), "0.0.0.0:7420");
    let tree = fleet_core::yaml::parse(&text).unwrap();
    let mut keys = vec![];
    let fleet_core::yaml::Value::Map(entries) = &tree.value else { panic!("not a map:\n{text}") };
    for (k, v) in entries {
        let k = k.as_str().unwrap().to_string();
        match &v.value {
            fleet_core::yaml::Value::Map(inner) if k == "timings" => {
                keys.extend(inner.iter().map(|(ik, _)| format!("timings.{}", ik.as_str().unwrap())))
            }
            _ => keys.push(k),
        }
    }
    let want: Vec<String> = fleet_node::config::KEYS.iter().map(|(k, _)| k.to_string()).collect();
    assert_eq!(keys, want, "deploy/node.example.yaml must explain every key of fleet_node::config::KEYS, in order");
    let shipped = repo_file("deploy/node.example.yaml");
    for (key, var) in fleet_node::config::KEYS {
        assert!(shipped.contains(var), "{key}: its variable {var} is not named");
    }
}

/// `fleet completions SHELL` prints a script the shell accepts, naming the commands.
#[test]
fn completion_scripts_parse_in_their_shells_and_name_the_commands() {
    let script = |shell: &str| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_fleet")).args(["completions", shell]).output().unwrap();
        assert!(o.status.success(), "{shell}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let bash = script("bash");
    for cmd in ["ps", "send", "tail", "watch", "attach", "explain", "doctor"] {
        assert!(bash.contains(cmd), "bash completion lacks {cmd}");
    }
    let path = std::env::temp_dir().join(format!("fleet-completion-{}.bash", std::process::id()));
    std::fs::write(&path, &bash).unwrap();
    let checked = std::process::Command::new("bash").arg("-n").arg(&path).status().unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(checked.success(), "bash -n refuses the script");
    assert!(script("zsh").starts_with("#compdef fleet"));
    assert!(script("fish").contains("complete -c fleet"));
}

/// `fleet init` with no preset on a pseudo-terminal: each answer is typed once
/// its question (the n-th `]: `) is on the screen. The exit code and all it printed.
fn init_on_a_terminal(h: &Home, answers: &[&str]) -> (i32, String) {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let slave = std::fs::OpenOptions::new().read(true).write(true).open(name.to_str().unwrap()).unwrap();
    let mut cmd = Command::new(FLEET);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", h.home())
        .env("USER", "tester")
        .env("FLEET_HOST", "testhost")
        .env("XDG_RUNTIME_DIR", h.dir.path().join("xdg-runtime"))
        .envs(h.extra.iter().map(|(k, v)| (k, v)))
        .arg("init")
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut master = std::fs::File::from(master);
    let screen = Arc::new(Mutex::new(String::new()));
    let reader = {
        let (mut m, screen) = (master.try_clone().unwrap(), screen.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once the child (the last holder of the terminal) is gone.
            while let Ok(n) = m.read(&mut buf) {
                if n == 0 {
                    break;
                }
                screen.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    for (i, answer) in answers.iter().enumerate() {
        let start = std::time::Instant::now();
        while screen.lock().unwrap().matches("]: ").count() <= i {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "question {i} never came:\n{}",
                screen.lock().unwrap()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        master.write_all(format!("{answer}\n").as_bytes()).unwrap();
    }
    let code = child.wait().unwrap().code().unwrap_or(-1);
    reader.join().unwrap();
    let out = screen.lock().unwrap().clone();
    (code, out)
}

#[test]
fn init_asks_on_a_terminal_and_a_rerun_keeps_the_operators_edits() {
    let h = Home::new();
    let roster = h.home().join(".config/mosaic/fleet/roster.yaml");
    // Profile, tenant, workers' runtime, socket, install: the defaults show in brackets.
    let (code, out) = init_on_a_terminal(&h, &["huge", "research", "Bad_Tenant", "acme", "pi", "", "n"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Profile (general, coding, research, hybrid, minimal) [coding]: "), "{out}");
    assert!(out.contains("\"huge\" is not one of general, coding, research, hybrid, minimal"), "{out}");
    assert!(out.contains("Tenant id (one per Linux user and mesh) [tester]: "), "{out}");
    assert!(out.contains("tmux socket name (tmux -L NAME) [mosaic-fleet]: "), "{out}");
    assert!(out.contains("wrote ") && out.contains("profile research, tenant acme, socket -L mosaic-fleet"), "{out}");
    assert!(out.contains("next: `fleet install`"), "{out}");
    let text = std::fs::read_to_string(&roster).unwrap();
    let preset = repo_file("framework/fleet/presets/research.yaml");
    assert!(text.starts_with("# Preset \"research\""), "the preset's comments are kept: {text}");
    assert!(text.contains("profile: research\ntenant_id: acme\n"), "{text}");
    let (code, out, err) = h.fleet(&["roster", "check", roster.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let workers: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with("runtime:")).collect();
    assert!(workers.iter().any(|l| l.ends_with("runtime: pi")), "{text}");
    assert_eq!(text.lines().count(), preset.lines().count() + 1, "one line added (tenant_id): {text}");

    // The operator edits what the wizard does not ask about; a re-run keeps it.
    let edited = text.replace("defaults: {", "# my note\ndefaults: {");
    std::fs::write(&roster, &edited).unwrap();
    let (code, out) = init_on_a_terminal(&h, &["", "", "", "", ""]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Profile (general, coding, research, hybrid, minimal) [research]: "), "{out}");
    assert!(out.contains("Tenant id (one per Linux user and mesh) [acme]: "), "{out}");
    assert!(out.contains("Runtime for the workers (") && out.contains(") [pi]: "), "{out}");
    assert!(out.contains("unchanged "), "the same answers change nothing: {out}");
    assert_eq!(std::fs::read_to_string(&roster).unwrap(), edited);
    // Another socket: only that value changes.
    let (code, out) = init_on_a_terminal(&h, &["", "", "", "my-fleet", "n"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        std::fs::read_to_string(&roster).unwrap(),
        edited.replace("socket_name: mosaic-fleet", "socket_name: my-fleet")
    );

    // Without a terminal, --preset is needed, and the error says so.
    let (code, _, err) = h.fleet(&["init"]);
    assert_eq!(code, 2);
    assert!(err.contains("asks its questions on a terminal, and this is none: pass --preset"), "{err}");
}
