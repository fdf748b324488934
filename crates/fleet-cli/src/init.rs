//! `fleet init` (a roster from a preset) and `fleet install` (the framework
//! files and the systemd user units in place). Every file is compiled in from
//! `framework/`, so the binary works anywhere.

use crate::context::{GlobalArgs, Paths, short_hostname};
use crate::exit::{self, CliResult};
use anyhow::{Context as _, anyhow};
use fleet_core::names::DnsLabel;
use fleet_core::roster::{Roster, TmuxSocket};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// The roster presets, in the order `--help` lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    General,
    Coding,
    Research,
    Hybrid,
    Minimal,
}

impl Preset {
    pub const ALL: [Preset; 5] = [Preset::General, Preset::Coding, Preset::Research, Preset::Hybrid, Preset::Minimal];

    pub fn name(self) -> &'static str {
        match self {
            Preset::General => "general",
            Preset::Coding => "coding",
            Preset::Research => "research",
            Preset::Hybrid => "hybrid",
            Preset::Minimal => "minimal",
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Preset::General => include_str!("../../../framework/fleet/presets/general.yaml"),
            Preset::Coding => include_str!("../../../framework/fleet/presets/coding.yaml"),
            Preset::Research => include_str!("../../../framework/fleet/presets/research.yaml"),
            Preset::Hybrid => include_str!("../../../framework/fleet/presets/hybrid.yaml"),
            Preset::Minimal => include_str!("../../../framework/fleet/presets/minimal.yaml"),
        }
    }
}

const SCHEMA: &str = include_str!("../../../framework/fleet/roster.schema.json");
const LAUNCHER: &str = include_str!("../../../framework/tools/fleet/start-agent-session.sh");
/// The systemd user units: (file name, text).
const UNITS: [(&str, &str); 3] = [
    ("fleet-node.service", include_str!("../../../framework/systemd/fleet-node.service")),
    ("mosaic-agent@.service", include_str!("../../../framework/systemd/mosaic-agent@.service")),
    ("mosaic-tmux-holder.service", include_str!("../../../framework/systemd/mosaic-tmux-holder.service")),
];

/// Where the units expect `fleet` and `$MOSAIC_HOME`; `fleet install` writes
/// this host's paths in their place.
const UNIT_FLEET: &str = "/usr/local/bin/fleet";
const UNIT_MOSAIC_HOME: &str = "%h/.config/mosaic";

/// The fewest agents a fleet has: an orchestrator and one worker.
pub const AGENT_FLOOR: usize = 2;

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The preset: general, coding, research, hybrid (an orchestrator, an
    /// enhancer and workers) or minimal (an orchestrator and one worker).
    /// Without it, on a terminal, `fleet init` asks (profile, tenant, the
    /// workers' runtime, the tmux socket, install and start) and writes the roster.
    #[arg(long, value_enum, value_name = "PRESET")]
    pub preset: Option<Preset>,
    /// Write the roster to $MOSAIC_HOME/fleet/roster.yaml (or --roster FILE)
    /// instead of printing it.
    #[arg(long)]
    pub write: bool,
    /// With --write: replace an existing roster.
    #[arg(long, requires = "write")]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// Print exactly what would be written, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace existing files that differ from this fleet's version.
    #[arg(long, conflicts_with = "hooks")]
    pub force: bool,
    /// Instead of the framework files: put `fleet hook` into a runtime's own
    /// configuration, so that it reports what its agent is doing (claude:
    /// ~/.claude/settings.json hooks; codex: `notify` in ~/.codex/config.toml).
    #[arg(long, value_enum, value_name = "RUNTIME")]
    pub hooks: Option<crate::hook_install::HookRuntime>,
}

/// A preset's roster, checked: it parses, and keeps the two-agent floor.
pub fn checked_preset(name: &str, text: &str) -> CliResult<Roster> {
    let roster = Roster::parse(text)
        .map_err(|e| exit::failed(anyhow!("the compiled-in preset {name} is not a valid roster: {e}")))?;
    if roster.agents.len() < AGENT_FLOOR {
        return Err(exit::usage(anyhow!(
            "preset {name} has {} agent(s); a fleet needs at least {AGENT_FLOOR} (an orchestrator and one worker)",
            roster.agents.len()
        )));
    }
    Ok(roster)
}

pub fn init(args: InitArgs, g: &GlobalArgs) -> CliResult {
    let Some(preset) = args.preset else {
        use std::io::IsTerminal;
        if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
            return Err(exit::usage(anyhow!(
                "fleet init asks its questions on a terminal, and this is none: pass --preset \
                 general|coding|research|hybrid|minimal (with --write to write the roster)"
            )));
        }
        return crate::wizard::run(g);
    };
    let (name, text) = (preset.name(), preset.text());
    let roster = checked_preset(name, text)?;
    if !args.write {
        print!("{text}");
        return Ok(());
    }
    let path = g.roster.clone().unwrap_or_else(|| Paths::from_env().default_roster());
    let shown = path.display();
    if !args.force && path.symlink_metadata().is_ok() {
        return Err(exit::usage(anyhow!(
            "{shown} exists: pass --force to replace it (or --roster FILE to write elsewhere)"
        )));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create {}", dir.display()))
            .map_err(exit::failed)?;
    }
    let staged = stage(&path, text.as_bytes(), 0o644).map_err(exit::failed)?;
    let written = if args.force { staged.persist(&path) } else { staged.persist_noclobber(&path) };
    if let Err(e) = written {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            return Err(exit::usage(anyhow!("{shown} exists: pass --force to replace it")));
        }
        return Err(exit::failed(anyhow!("cannot write {shown}: {}", e.error)));
    }
    let names: Vec<&str> = roster.agents.iter().map(|a| a.name.as_str()).collect();
    println!("wrote {shown}: preset {name}, {} agents ({})", names.len(), names.join(", "));
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut missing: Vec<&str> = vec![];
    for a in &roster.agents {
        let dir = roster.working_directory(a).unwrap_or("~");
        let path = match (dir, dir.strip_prefix("~/"), &home) {
            ("~", _, Some(h)) => h.clone(),
            (_, Some(rest), Some(h)) => h.join(rest),
            _ => PathBuf::from(dir),
        };
        if !path.is_dir() && !missing.contains(&dir) {
            missing.push(dir);
        }
    }
    if !missing.is_empty() {
        println!(
            "note: the agents start in {}, which does not exist yet: create it, or edit working_directory",
            missing.join(", ")
        );
    }
    println!(
        "next: `fleet roster check {shown}`, then `fleet start --all --local` (or `fleet install` for systemd units)"
    );
    Ok(())
}

/// A file to put in place.
struct Item {
    path: PathBuf,
    text: String,
    mode: u32,
    /// Made from this binary and never edited by hand (completions, the man
    /// page): replaced when it differs, without --force.
    generated: bool,
}

impl Item {
    fn file(path: PathBuf, text: &str, mode: u32) -> Item {
        Item { path, text: text.into(), mode, generated: false }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No file there.
    New,
    /// The same content and mode: nothing to do.
    Same,
    /// The same content, another mode: the mode is fixed.
    Mode,
    /// Another content: replaced only with --force.
    Differs,
}

fn state_of(item: &Item) -> CliResult<State> {
    let shown = item.path.display();
    // What init would write is small; anything larger (or a device, a FIFO) differs.
    match fleet_core::file::read(&item.path, item.text.len() as u64 + 1) {
        Ok(bytes) if bytes == item.text.as_bytes() => {
            let meta = std::fs::metadata(&item.path).map_err(|e| exit::failed(anyhow!("cannot read {shown}: {e}")))?;
            Ok(if meta.permissions().mode() & 0o7777 == item.mode { State::Same } else { State::Mode })
        }
        Ok(_) => Ok(State::Differs),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::FileTooLarge) => Ok(State::Differs),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::New),
        Err(e) => Err(exit::failed(anyhow!("cannot read {shown}: {e}"))),
    }
}

/// The content in a temp file beside `path`, with `mode`, flushed to disk.
pub(crate) fn stage(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<tempfile::NamedTempFile> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".fleet-install-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temp file in {}", dir.display()))?;
    tmp.write_all(bytes).with_context(|| format!("cannot write {}", tmp.path().display()))?;
    // Explicitly, so the umask does not decide.
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    Ok(tmp)
}

/// A path as a systemd unit may hold it: `%` doubled; refused where it would
/// need quoting (whitespace, quotes, `\`, `$`).
fn unit_path(what: &str, path: &Path) -> CliResult<String> {
    let s = path.to_str().ok_or_else(|| exit::usage(anyhow!("{what} {} is not UTF-8", path.display())))?;
    if let Some(c) = s.chars().find(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | '$' | ';')) {
        return Err(exit::usage(anyhow!(
            "{what} {s} contains {c:?}, which a systemd unit line cannot hold unquoted; use another path, or edit the units by hand"
        )));
    }
    Ok(s.replace('%', "%%"))
}

/// A unit with this host's paths in its settings (comments stay as shipped):
/// the `fleet` that runs now, and `$MOSAIC_HOME` when it is not the default
/// `%h/.config/mosaic`.
fn render_unit(text: &str, fleet_exe: &str, mosaic_home: Option<&str>) -> String {
    let mut out = String::with_capacity(text.len() + 256);
    for line in text.split_inclusive('\n') {
        if line.starts_with(['#', ';']) {
            out.push_str(line);
            continue;
        }
        let line = line.replace(UNIT_FLEET, fleet_exe);
        match mosaic_home {
            Some(home) => out.push_str(&line.replace(UNIT_MOSAIC_HOME, home)),
            None => out.push_str(&line),
        }
    }
    out
}

fn absolute(path: &Path) -> CliResult<PathBuf> {
    std::path::absolute(path).map_err(|e| exit::usage(anyhow!("cannot make {} absolute: {e}", path.display())))
}

/// `$XDG_CONFIG_HOME/systemd/user` (when set and absolute), else `~/.config/systemd/user`.
fn user_unit_dir(home: &Path) -> PathBuf {
    match std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from) {
        Some(x) if x.is_absolute() => x.join("systemd/user"),
        _ => home.join(".config/systemd/user"),
    }
}

pub fn install(args: InstallArgs, g: &GlobalArgs) -> CliResult {
    let paths = Paths::from_env();
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from).ok_or_else(|| {
        let goes = match args.hooks {
            Some(_) => "the runtimes' configuration is under ~/.claude or ~/.codex",
            None => "the systemd user units go to ~/.config/systemd/user",
        };
        exit::usage(anyhow!("HOME is not set: {goes}"))
    })?;
    let home = absolute(&home)?;
    if let Some(rt) = args.hooks {
        return crate::hook_install::install(rt, &home, args.dry_run);
    }
    let mosaic_home = absolute(&paths.mosaic_home)?;
    let framework = mosaic_home.join("framework");
    let unit_dir = user_unit_dir(&home);

    let exe =
        std::env::current_exe().map_err(|e| exit::failed(anyhow!("cannot find the running fleet binary: {e}")))?;
    let exe = unit_path("the fleet binary", &exe)?;
    let custom_home =
        if mosaic_home == home.join(".config/mosaic") { None } else { Some(unit_path("MOSAIC_HOME", &mosaic_home)?) };

    let mut items = vec![Item::file(framework.join("fleet/roster.schema.json"), SCHEMA, 0o644)];
    for p in Preset::ALL {
        let path = framework.join(format!("fleet/presets/{}.yaml", p.name()));
        items.push(Item::file(path, p.text(), 0o644));
    }
    items.push(Item::file(framework.join("tools/fleet/start-agent-session.sh"), LAUNCHER, 0o755));
    for (name, text) in UNITS {
        items.push(Item::file(framework.join("systemd").join(name), text, 0o644));
    }
    for (name, text) in UNITS {
        let text = render_unit(text, &exe, custom_home.as_deref());
        items.push(Item::file(unit_dir.join(name), &text, 0o644));
    }
    for (path, text) in crate::completions::install_paths(&home) {
        items.push(Item { path, text, mode: 0o644, generated: true });
    }

    let states: Vec<State> = items.iter().map(state_of).collect::<CliResult<_>>()?;
    let differing: Vec<String> = items
        .iter()
        .zip(&states)
        .filter(|(i, s)| **s == State::Differs && !i.generated)
        .map(|(i, _)| format!("  {}", i.path.display()))
        .collect();
    if !differing.is_empty() && !args.force {
        return Err(exit::usage(anyhow!(
            "{} file(s) exist and differ from this fleet's version; nothing was written:\n{}\npass --force to replace them",
            differing.len(),
            differing.join("\n")
        )));
    }

    if !args.dry_run {
        // Every file is staged beside its target first; only when all are
        // staged are they renamed into place, so a failure leaves no file
        // half-written and, before the renames, none written at all.
        let mut staged = Vec::new();
        for (item, state) in items.iter().zip(&states).filter(|(_, s)| **s != State::Same) {
            let dir = item.path.parent().expect("install paths have a parent");
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))
                .map_err(exit::failed)?;
            staged.push((stage(&item.path, item.text.as_bytes(), item.mode).map_err(exit::failed)?, item, *state));
        }
        for (tmp, item, state) in staged {
            let done = if state == State::New { tmp.persist_noclobber(&item.path) } else { tmp.persist(&item.path) };
            done.map_err(|e| exit::failed(anyhow!("cannot write {}: {}", item.path.display(), e.error)))?;
        }
    }
    for (item, state) in items.iter().zip(&states) {
        let verb = match (state, args.dry_run) {
            (State::Same, _) => "unchanged",
            (State::New, true) => "would write",
            (State::New, false) => "wrote",
            (State::Differs, true) => "would replace",
            (State::Differs, false) => "replaced",
            (State::Mode, true) => "would chmod",
            (State::Mode, false) => "chmod",
        };
        println!("{verb} {}", item.path.display());
    }
    print_next_steps(g, &mosaic_home, args.dry_run);
    Ok(())
}

fn print_next_steps(g: &GlobalArgs, mosaic_home: &Path, dry_run: bool) {
    let paths = Paths::from_env();
    let roster_path = g.roster.clone().unwrap_or_else(|| paths.default_roster());
    // Missing and broken are different next steps: `fleet init` makes a roster, a broken one is fixed.
    let (roster, why_none) = match fleet_core::file::read_to_string(&roster_path, fleet_core::file::ROSTER_MAX) {
        Ok(text) => match Roster::parse(&text) {
            Ok(r) => (Some(r), String::new()),
            Err(_) => {
                (None, format!("the roster {} is not valid: `fleet roster check` shows why", roster_path.display()))
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            (None, format!("no roster at {} yet: `fleet init`", roster_path.display()))
        }
        Err(e) => (None, format!("cannot read the roster {}: {e}", roster_path.display())),
    };
    let host = g
        .hostname
        .clone()
        .and_then(|h| DnsLabel::parse_as("host name", &h).ok())
        .or_else(|| DnsLabel::sanitize("host name", &short_hostname()).ok());
    let agents: Vec<String> = match (&roster, &host) {
        (Some(r), Some(h)) => r.agents_on(h).map(|a| fleet_tmux::systemd::agent_unit(a.name.as_str())).collect(),
        (Some(r), None) => r.agents.iter().map(|a| fleet_tmux::systemd::agent_unit(a.name.as_str())).collect(),
        (None, _) => vec![],
    };
    println!();
    if dry_run {
        println!("(dry run: nothing was written)");
    }
    println!("next, to run the fleet under systemd (user units):");
    println!("  systemctl --user daemon-reload");
    println!("  systemctl --user enable --now mosaic-tmux-holder.service fleet-node.service");
    if agents.is_empty() {
        let why = if why_none.is_empty() { "no agent of this host in the roster".to_string() } else { why_none };
        println!("  systemctl --user enable --now mosaic-agent@NAME.service   # per agent ({why})");
    } else {
        println!("  systemctl --user enable --now {}", agents.join(" "));
    }
    println!("  loginctl enable-linger \"$USER\"   # keep them running without a login session");
    println!(
        "shell completion (agent@host names too) and `man fleet` / `man fleet-send` are in place for bash and fish; \
         zsh needs `fpath+=(~/.local/share/zsh/site-functions)` before compinit"
    );
    println!(
        "mosaic-agent@NAME reads {}/fleet/agents/NAME.env (see start-agent-session.sh); without one it runs `fleet start --local NAME`.",
        mosaic_home.display()
    );
    if let Some(r) = &roster {
        let socket_ok = r.socket == TmuxSocket::Name("mosaic-fleet".into());
        let holder_ok = r.holder_session.as_deref() == Some("_holder");
        if !socket_ok || !holder_ok {
            let name = match &r.socket {
                TmuxSocket::Name(n) => n.clone(),
                _ => String::new(),
            };
            println!(
                "the roster's tmux server is not the holder unit's default (-L mosaic-fleet, session _holder): write TMUX_SOCKET_NAME={name} and TMUX_HOLDER_SESSION={} to {}/fleet/tmux.env",
                r.holder_session.as_deref().unwrap_or("_holder"),
                mosaic_home.display()
            );
        }
    }
    println!(
        "runtime hooks (exact working/waiting/idle in `fleet ps`): `fleet install --hooks claude` (Claude Code) and `fleet install --hooks codex` (Codex)"
    );
    if fleet_tmux::systemd::user_manager_socket().is_none() {
        println!(
            "no systemd user manager runs for this user here: without one, run `fleet node` and `fleet start --all --local` yourself."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses_and_keeps_the_floor() {
        for p in Preset::ALL {
            let r = checked_preset(p.name(), p.text()).unwrap_or_else(|e| panic!("{}: {e:?}", p.name()));
            assert!(r.agents.len() >= AGENT_FLOOR);
            let orchestrators = r.agents.iter().filter(|a| a.class.as_deref() == Some("orchestrator")).count();
            assert_eq!(orchestrators, 1, "{}", p.name());
            let enhancers = r.agents.iter().filter(|a| a.class.as_deref() == Some("enhancer")).count();
            if p == Preset::Minimal {
                assert_eq!(r.agents.len(), 2, "minimal is the two-agent floor");
            } else {
                assert!(enhancers >= 1, "{} has an enhancer", p.name());
                assert!(r.invariant_warnings().is_empty(), "{}: {:?}", p.name(), r.invariant_warnings());
            }
            assert_eq!(r.socket, TmuxSocket::Name("mosaic-fleet".into()), "{}", p.name());
            assert_eq!(r.holder_session.as_deref(), Some("_holder"), "{}", p.name());
        }
    }

    #[test]
    fn a_preset_below_the_floor_is_refused() {
        let e = checked_preset("solo", "agents:\n  - { name: orchestrator, runtime: claude, class: orchestrator }\n")
            .unwrap_err();
        assert_eq!(e.code, exit::Code::Usage);
        assert!(format!("{:#}", e.error).contains("preset solo has 1 agent(s); a fleet needs at least 2"));
        let e = checked_preset("broken", "agents: [\n").unwrap_err();
        assert_eq!(e.code, exit::Code::Failed);
    }

    #[test]
    fn units_get_this_hosts_paths() {
        let (_, node) = UNITS[0];
        let r = render_unit(node, "/opt/fleet/bin/fleet", None);
        assert!(r.contains("ExecStart=/opt/fleet/bin/fleet node"), "{r}");
        assert!(r.contains("ReadWritePaths=%h/.config/mosaic\n"), "{r}");
        assert!(r.contains(&format!("# place of {UNIT_FLEET}")), "comments stay as shipped: {r}");
        let r = render_unit(node, "/f", Some("/srv/mosaic%%x"));
        assert!(r.contains("ReadWritePaths=/srv/mosaic%%x\n"), "{r}");
        assert!(r.lines().filter(|l| !l.starts_with('#')).all(|l| !l.contains(UNIT_MOSAIC_HOME)), "{r}");
        assert_eq!(render_unit(node, UNIT_FLEET, None), node);
        assert_eq!(unit_path("p", Path::new("/a%b")).unwrap(), "/a%%b");
        let e = unit_path("MOSAIC_HOME", Path::new("/my home")).unwrap_err();
        assert!(format!("{:#}", e.error).contains("contains ' '"));
    }
}
