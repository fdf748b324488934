//! The records `fleet ps` shows: one per agent, one per host.
//!
//! These types are also the JSON contract of `fleet ps --json` (snake_case
//! keys, `tenant_id` and `host` on every object; see docs/protocol.md).

use crate::heartbeat::HealthReport;
use std::fmt;

/// The state of an agent's pane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaneState {
    Alive,
    /// The session exists but its process exited (remain-on-exit).
    Dead,
    /// No such session on the socket.
    Missing,
}

impl PaneState {
    pub fn as_str(self) -> &'static str {
        match self {
            PaneState::Alive => "alive",
            PaneState::Dead => "dead",
            PaneState::Missing => "missing",
        }
    }
}

impl fmt::Display for PaneState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The agent's systemd user unit `mosaic-agent@<name>.service`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SystemdState {
    /// False when the host has no user systemd: shown as `n/a`, not an error.
    pub available: bool,
    pub active_state: Option<String>,
    pub unit_file_state: Option<String>,
}

impl SystemdState {
    pub fn unavailable() -> Self {
        SystemdState::default()
    }

    /// Active but not enabled: the unit will not come back after a reboot.
    pub fn boot_enable_missing(&self) -> bool {
        self.available
            && self.active_state.as_deref() == Some("active")
            && !matches!(self.unit_file_state.as_deref(), Some("enabled" | "enabled-runtime" | "static" | "linked"))
    }

    /// `active/enabled`, or `n/a`.
    pub fn short(&self) -> String {
        if !self.available {
            return "n/a".into();
        }
        format!("{}/{}", self.active_state.as_deref().unwrap_or("?"), self.unit_file_state.as_deref().unwrap_or("?"))
    }
}

/// One row of `fleet ps`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AgentRecord {
    pub tenant_id: String,
    pub host: String,
    pub name: String,
    pub class: Option<String>,
    pub runtime: Option<String>,
    /// False for a session on the socket that the roster does not name.
    pub managed: bool,
    /// The tmux socket: a name (-L), a path (-S), or empty for the default server.
    pub socket: String,
    pub systemd: SystemdState,
    pub pane: PaneState,
    pub pane_pid: Option<u32>,
    pub current_command: Option<String>,
    pub idle_seconds: Option<u64>,
    pub in_copy_mode: bool,
    pub heartbeat: HealthReport,
    pub drift: bool,
    pub boot_enable: bool,
    /// What the agent is doing (working, waiting, idle, exited, unknown).
    pub activity: crate::activity::Activity,
}

/// How a host answered a listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    Ok,
    Unreachable,
    Timeout,
    Error,
}

/// One host row of `fleet ps`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HostStatus {
    pub tenant_id: String,
    pub host: String,
    pub state: HostState,
    pub latency_ms: u32,
    pub agent_count: u32,
    pub detail: Option<String>,
    pub roster_problem: Option<String>,
    /// When the host's node last refreshed its view of the host (Unix ms, the
    /// node's clock); `None` when not known.
    pub as_of_unix_ms: Option<i64>,
    /// A row of the answering node's replicated view whose feed has not been
    /// heard from for longer than it should: its rows may be old.
    pub stale: bool,
    /// When the answering node last heard from this host's feed (Unix ms, the
    /// answering node's clock); `None` for a live answer.
    pub heard_unix_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_enable_rule() {
        let s = |a: &str, u: &str| SystemdState {
            available: true,
            active_state: Some(a.into()),
            unit_file_state: Some(u.into()),
        };
        assert!(s("active", "disabled").boot_enable_missing());
        assert!(!s("active", "enabled").boot_enable_missing());
        assert!(!s("inactive", "disabled").boot_enable_missing());
        assert!(!SystemdState::unavailable().boot_enable_missing());
        assert_eq!(SystemdState::unavailable().short(), "n/a");
        assert_eq!(s("active", "enabled").short(), "active/enabled");
    }
}
