//! systemd user units: `mosaic-agent@<name>.service`.
//!
//! A host without a user systemd (a container, macOS, a root shell with no
//! login session) is normal: [`show`] returns `None` and rows say `n/a`. The
//! check for a user manager looks for its private socket first, so such a
//! host costs no process at all.
//!
//! `systemctl` runs within a time limit ([`crate::run`]): a manager that does
//! not answer makes [`show`] an error naming it, never a hang.

use crate::run::{self, Helpers, RunError};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The unit of an agent.
pub fn agent_unit(name: &str) -> String {
    format!("mosaic-agent@{name}.service")
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitState {
    pub active_state: String,
    pub unit_file_state: String,
}

pub type UnitStates = HashMap<String, UnitState>;

/// The private socket of this user's systemd manager, if one runs.
pub fn user_manager_socket() -> Option<PathBuf> {
    let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/run/user/{}", rustix::process::getuid().as_raw())));
    let sock = runtime_dir.join("systemd/private");
    sock.exists().then_some(sock)
}

/// `systemctl --user show` did not answer in time (it was killed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("systemctl --user show did not answer within {} ms (killed it, pid {pid}): is the user systemd manager hung? The systemd column is n/a until it answers", timeout.as_millis())]
pub struct ShowHung {
    pub pid: u32,
    pub timeout: Duration,
}

/// The states of `units`, in one `systemctl --user show` call that may take
/// at most `timeout`; `Ok(None)` when the host has no user systemd (or
/// systemctl cannot be run or fails: a host without systemd is normal).
pub fn show(units: &[String], timeout: Duration, helpers: Option<&Helpers>) -> Result<Option<UnitStates>, ShowHung> {
    if user_manager_socket().is_none() {
        return Ok(None);
    }
    if units.is_empty() {
        return Ok(Some(UnitStates::new()));
    }
    let mut cmd = Command::new("systemctl");
    cmd.args(["--user", "show", "--property=Id,ActiveState,UnitFileState", "--"]).args(units);
    match run::run(&mut cmd, timeout, helpers) {
        Ok(out) if out.status.success() => Ok(Some(parse_show(&String::from_utf8_lossy(&out.stdout)))),
        Ok(_) => Ok(None),
        Err(RunError::Hung { pid, timeout, .. }) => Err(ShowHung { pid, timeout }),
        Err(_) => Ok(None),
    }
}

/// Parse `systemctl show` output: blocks of `Key=Value` separated by blank lines.
pub fn parse_show(out: &str) -> UnitStates {
    let mut states = UnitStates::new();
    for block in out.split("\n\n") {
        let mut props: HashMap<&str, &str> = HashMap::new();
        for line in block.lines() {
            if let Some((k, v)) = line.split_once('=') {
                props.insert(k, v);
            }
        }
        if let Some(id) = props.get("Id") {
            states.insert(
                id.to_string(),
                UnitState {
                    active_state: props.get("ActiveState").unwrap_or(&"").to_string(),
                    unit_file_state: props.get("UnitFileState").unwrap_or(&"").to_string(),
                },
            );
        }
    }
    states
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_blocks() {
        let out = "Id=mosaic-agent@a.service\nActiveState=active\nUnitFileState=disabled\n\nActiveState=inactive\nId=mosaic-agent@b.service\nUnitFileState=\n";
        let s = parse_show(out);
        assert_eq!(s["mosaic-agent@a.service"].unit_file_state, "disabled");
        assert_eq!(s["mosaic-agent@b.service"].active_state, "inactive");
        assert_eq!(s["mosaic-agent@b.service"].unit_file_state, "");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn value() -> impl Strategy<Value = String> {
            any::<String>().prop_map(|s| s.replace(['\n', '\r'], " "))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn printed_states_parse_back(units in prop::collection::btree_map("[a-z@.-]{1,20}", (value(), value()), 0..6)) {
                let out: Vec<String> = units
                    .iter()
                    .map(|(id, (a, u))| format!("Id={id}\nActiveState={a}\nUnitFileState={u}\n"))
                    .collect();
                let s = parse_show(&out.join("\n"));
                prop_assert_eq!(s.len(), units.len());
                for (id, (a, u)) in &units {
                    prop_assert_eq!(&s[id].active_state, a);
                    prop_assert_eq!(&s[id].unit_file_state, u);
                }
            }

            #[test]
            fn any_output_parses_without_panic(out in any::<String>()) {
                let _ = parse_show(&out);
            }
        }
    }
}
