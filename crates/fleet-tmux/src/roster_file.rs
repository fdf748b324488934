//! The files of a roster change on this host: the roster itself, rewritten
//! atomically under a lock, and an agent's own files (its env file, its
//! systemd user unit's enablement).
//!
//! The roster is edited read-modify-write under an exclusive `flock` on
//! `<dir>/.<roster>.lock`, so two changes at once (two operators, a node and a
//! `--local` CLI) never lose one another; the new text goes to a temp file
//! beside the roster with the roster's mode, is synced, and renamed over it:
//! a reader sees the old roster or the new, never half of one.

use crate::run;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RosterFileError {
    #[error("cannot read the roster {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the roster {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock {path} (another roster change holds it?): {source}")]
    Lock {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The lock file beside `roster`.
fn lock_path(roster: &Path) -> PathBuf {
    let name = roster.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "roster".into());
    roster.with_file_name(format!(".{name}.lock"))
}

/// Read the roster, let `edit` make the new text from it, and write that in
/// place atomically, all under the roster's lock. `edit`'s error leaves the
/// file untouched. Returns the old and the new text.
pub fn edit<E>(
    roster: &Path,
    edit: impl FnOnce(&str) -> Result<String, E>,
) -> Result<Result<(String, String), E>, RosterFileError> {
    let shown = roster.display().to_string();
    let lock = lock_path(roster);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|source| RosterFileError::Lock { path: lock.display().to_string(), source })?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| RosterFileError::Lock { path: lock.display().to_string(), source: e.into() })?;
    let old = fleet_core::file::read_to_string(roster, fleet_core::file::ROSTER_MAX)
        .map_err(|source| RosterFileError::Read { path: shown.clone(), source })?;
    let new = match edit(&old) {
        Ok(n) => n,
        Err(e) => return Ok(Err(e)),
    };
    write_atomic(roster, new.as_bytes()).map_err(|source| RosterFileError::Write { path: shown, source })?;
    drop(file);
    Ok(Ok((old, new)))
}

/// Replace `path` with `bytes`: a temp file beside it with its mode (0644 for
/// a new file), synced, renamed over it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o644);
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".fleet-roster-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The agent's context file: its runtime's file (CLAUDE.md, AGENTS.md, see
/// [`fleet_core::runtime::context_file`]) in its working directory.
pub fn context_path(
    roster: &fleet_core::roster::Roster,
    agent: &fleet_core::roster::AgentSpec,
    home: Option<&Path>,
) -> PathBuf {
    let dir = crate::lifecycle::expand_home(roster.working_directory(agent).unwrap_or("~"), home);
    dir.join(fleet_core::runtime::context_file(&agent.runtime))
}

/// The most a context file may hold for `fleet comms` to rewrite it.
const CONTEXT_MAX: u64 = 4 << 20;

/// Put `agent@host`'s comms `block` into the file at `path` (its region
/// replaced, or appended; a new file made), atomically.
pub fn write_comms(path: &Path, host: &str, agent: &str, block: &str) -> std::io::Result<()> {
    let old = match fleet_core::file::read_to_string(path, CONTEXT_MAX) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let new = fleet_core::comms::replace_region(&old, host, agent, block);
    if new != old {
        write_atomic(path, new.as_bytes())?;
    }
    Ok(())
}

/// Rewrite `agent@host`'s comms region of the file at `path` with `block`,
/// only if it has one (`fleet comms --write` made it): true when the file changed.
pub fn refresh_comms(path: &Path, host: &str, agent: &str, block: &str) -> std::io::Result<bool> {
    let old = match fleet_core::file::read_to_string(path, CONTEXT_MAX) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if !fleet_core::comms::has_region(&old, host, agent) {
        return Ok(false);
    }
    let new = fleet_core::comms::replace_region(&old, host, agent, block);
    if new == old {
        return Ok(false);
    }
    write_atomic(path, new.as_bytes())?;
    Ok(true)
}

/// `$MOSAIC_HOME/fleet/agents/NAME.env`, read by start-agent-session.sh.
pub fn env_file(mosaic_home: &Path, agent: &str) -> PathBuf {
    mosaic_home.join("fleet/agents").join(format!("{agent}.env"))
}

/// Remove a file; a missing one is fine. True when one was removed.
pub fn remove_if_there(path: &Path) -> std::io::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// `$XDG_CONFIG_HOME/systemd/user` (when absolute), else `~/.config/systemd/user`.
pub fn user_unit_dir(home: &Path, xdg_config_home: Option<PathBuf>) -> PathBuf {
    match xdg_config_home {
        Some(x) if x.is_absolute() => x.join("systemd/user"),
        _ => home.join(".config/systemd/user"),
    }
}

/// How long a `systemctl --user enable|disable` may take.
pub const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(10);

fn systemctl(args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new("systemctl");
    cmd.arg("--user").args(args);
    match run::run(&mut cmd, SYSTEMCTL_TIMEOUT, None) {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`systemctl --user {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("`systemctl --user {}`: {e}", args.join(" "))),
    }
}

/// Whether a systemd user manager runs for this user (see [`crate::systemd::user_manager_socket`]).
pub fn has_user_manager() -> bool {
    crate::systemd::user_manager_socket().is_some()
}

/// Enable the agent's unit, so it starts at boot, when a user manager runs
/// (`manager`, from [`has_user_manager`]): `Ok(Some(what was done))`,
/// `Ok(None)` without one (nothing to enable with), `Err(why)` when systemctl
/// failed (a warning for the caller).
pub fn enable_unit(agent: &str, manager: bool) -> Result<Option<String>, String> {
    let unit = crate::systemd::agent_unit(agent);
    if !manager {
        return Ok(None);
    }
    systemctl(&["enable", &unit]).map(|()| Some(format!("enabled {unit}")))
}

/// Disable the agent's unit so it never comes back at boot: with a user
/// manager (`manager`), `systemctl --user disable --now`; in any case, every
/// `*.wants/<unit>` link left in `unit_dir` (where no manager runs, or one
/// that failed) is removed. Returns what was done, and a warning.
pub fn disable_unit(agent: &str, unit_dir: &Path, manager: bool) -> (Vec<String>, Option<String>) {
    let unit = crate::systemd::agent_unit(agent);
    let mut done = Vec::new();
    let mut warning = None;
    if manager {
        match systemctl(&["disable", "--now", &unit]) {
            Ok(()) => done.push(format!("disabled {unit}")),
            Err(e) => warning = Some(e),
        }
    }
    if let Ok(entries) = std::fs::read_dir(unit_dir) {
        for e in entries.flatten() {
            let is_wants = e.file_name().to_str().is_some_and(|n| n.ends_with(".wants") || n.ends_with(".requires"));
            if !is_wants {
                continue;
            }
            let link = e.path().join(&unit);
            if link.symlink_metadata().is_ok() {
                match std::fs::remove_file(&link) {
                    Ok(()) => done.push(format!("removed {}", link.display())),
                    Err(err) => {
                        warning.get_or_insert(format!("cannot remove {}: {err}", link.display()));
                    }
                }
            }
        }
    }
    (done, warning)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_is_atomic_keeps_the_mode_and_leaves_the_file_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roster.yaml");
        std::fs::write(&path, "agents: []\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let r = edit(&path, |old| Ok::<_, String>(format!("# x\n{old}"))).unwrap().unwrap();
        assert_eq!(r, ("agents: []\n".to_string(), "# x\nagents: []\n".to_string()));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "# x\nagents: []\n");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let e = edit(&path, |_| Err::<String, _>("no")).unwrap().unwrap_err();
        assert_eq!(e, "no");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "# x\nagents: []\n");
        let names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert!(names.iter().all(|n| !n.starts_with(".fleet-roster-")), "no temp file is left: {names:?}");
        assert!(matches!(
            edit(&dir.path().join("none.yaml"), |o| Ok::<_, String>(o.into())),
            Err(RosterFileError::Read { .. })
        ));
    }

    #[test]
    fn disable_removes_wants_links_without_a_manager() {
        let dir = tempfile::tempdir().unwrap();
        let wants = dir.path().join("default.target.wants");
        std::fs::create_dir_all(&wants).unwrap();
        std::os::unix::fs::symlink("/nonexistent/mosaic-agent@.service", wants.join("mosaic-agent@a.service")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/mosaic-agent@.service", wants.join("mosaic-agent@b.service")).unwrap();
        let (done, warning) = disable_unit("a", dir.path(), false);
        assert_eq!(warning, None);
        assert!(done.iter().any(|d| d.contains("mosaic-agent@a.service")), "{done:?}");
        assert!(wants.join("mosaic-agent@a.service").symlink_metadata().is_err());
        assert!(wants.join("mosaic-agent@b.service").symlink_metadata().is_ok(), "other agents stay enabled");
    }
}
