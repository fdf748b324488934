//! The replicated view: every node keeps the agent rows and the host row of
//! every peer host, fed by the heartbeat stream it already follows from each
//! peer ([`crate::peers::feed`]: a snapshot, then events, and a
//! [`fleet_core::event::EventKind::HostTick`] every [`TICK`]), so that
//! `ListAgents(MESH)` answers from memory instead of a round trip to every host.
//!
//! - Freshness: each host row carries when this node last heard from that
//!   host's feed (`heard_unix_ms`) and the host's own `as_of`; a feed silent
//!   for longer than [`is_stale`] allows makes the row `stale` (it says so,
//!   and `fleet ps --fresh` asks the host now).
//! - A host that membership declares down is an `unreachable` row within the
//!   detection time ([`crate::peers::Peers::list`]); a feed that ends drops the
//!   host's replica, so its rows are never served silently old: the next
//!   listing asks that host live (and gets a timeout or unreachable row).
//! - The serving side sends the agent rows with a tick when something that no
//!   event says changed (pane, pid, command, systemd, flags; [`rows_key`]), and
//!   at least every [`ROWS_EVERY`] ticks, so `idle_seconds` is at most that old.

use fleet_core::record::{AgentRecord, HostStatus};
use std::time::Duration;

/// How often a node asks each peer's feed for a host tick.
pub const TICK: Duration = Duration::from_secs(2);

/// A tick carries the agent rows at least every this many ticks.
pub const ROWS_EVERY: u32 = 5;

/// Is a replica last heard from at `heard_ms` stale at `now_ms`, its feed
/// ticking every `tick`? When more than two ticks and a second have passed
/// without a word: one late tick is not yet lag, two missed ones are.
pub fn is_stale(now_ms: i64, heard_ms: i64, tick: Duration) -> bool {
    now_ms - heard_ms > 2 * tick.as_millis() as i64 + 1000
}

/// The parts of the agent rows that no event carries (everything but
/// heartbeat, activity and the ever-growing idle time): the serving side
/// re-sends the rows when this changes.
pub fn rows_key(rows: &[AgentRecord]) -> Vec<AgentRecord> {
    rows.iter()
        .map(|r| AgentRecord {
            idle_seconds: None,
            heartbeat: fleet_core::heartbeat::HealthReport::unknown("", 0),
            activity: fleet_core::activity::Activity::unknown("", 0),
            ..r.clone()
        })
        .collect()
}

/// Whether the tick now (the `n`th of a stream, from 0) carries the rows: the
/// first does, one whose [`rows_key`] differs from the last sent does, and
/// every [`ROWS_EVERY`]th does.
pub fn send_rows(n: u32, changed: bool) -> bool {
    n == 0 || changed || n.is_multiple_of(ROWS_EVERY)
}

/// What this node keeps of one peer host beside its agent rows.
#[derive(Clone, Debug)]
pub struct Fed {
    /// The host's own row from its last tick; `None` before the first (an
    /// older node that sends none is asked live).
    pub status: Option<HostStatus>,
    /// When its feed last said anything (Unix ms, this node's clock).
    pub heard_ms: i64,
}

/// The host row this node serves for a replicated host, `rows` agents, at `now_ms`.
pub fn host_row(tenant: &str, host: &str, fed: &Fed, rows: usize, now_ms: i64) -> Option<HostStatus> {
    let s = fed.status.as_ref()?;
    let stale = is_stale(now_ms, fed.heard_ms, TICK);
    let lag = stale.then(|| {
        format!(
            "its feed has said nothing for {} s: these rows may be old (`fleet ps --fresh` asks the host now)",
            (now_ms - fed.heard_ms) / 1000
        )
    });
    let detail = match (s.detail.clone(), lag) {
        (Some(d), Some(l)) => Some(format!("{d}; {l}")),
        (d, l) => d.or(l),
    };
    Some(HostStatus {
        tenant_id: tenant.to_string(),
        host: host.to_string(),
        state: s.state,
        latency_ms: 0,
        agent_count: rows as u32,
        detail,
        roster_problem: s.roster_problem.clone(),
        as_of_unix_ms: s.as_of_unix_ms,
        stale,
        heard_unix_ms: Some(fed.heard_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::record::HostState;

    fn status(detail: Option<&str>) -> HostStatus {
        HostStatus {
            tenant_id: "acme".into(),
            host: "forged".into(),
            state: HostState::Ok,
            latency_ms: 7,
            agent_count: 99,
            detail: detail.map(String::from),
            roster_problem: Some("roster.yaml: bad".into()),
            as_of_unix_ms: Some(1_000),
            stale: false,
            heard_unix_ms: None,
        }
    }

    #[test]
    fn a_feed_is_stale_after_two_missed_ticks_and_a_second() {
        let t = Duration::from_secs(2);
        assert!(!is_stale(10_000, 10_000, t));
        assert!(!is_stale(15_000, 10_000, t), "5 s: two ticks and a second, not more");
        assert!(is_stale(15_001, 10_000, t));
        assert!(!is_stale(10_000, 12_000, t), "a clock step back is not lag");
        assert!(is_stale(13_001, 10_000, Duration::from_secs(1)), "the tick sets the bound");
        assert!(!is_stale(13_000, 10_000, Duration::from_secs(1)));
    }

    #[test]
    fn rows_go_with_the_first_tick_on_change_and_every_fifth() {
        assert!(send_rows(0, false));
        assert!(!send_rows(1, false));
        assert!(send_rows(1, true));
        assert!(!send_rows(4, false));
        assert!(send_rows(5, false));
        assert!(!send_rows(6, false));
        assert!(send_rows(10, false));
    }

    #[test]
    fn the_served_row_names_the_feed_host_and_says_when_it_lags() {
        let fed = Fed { status: Some(status(None)), heard_ms: 10_000 };
        let row = host_row("acme", "b", &fed, 3, 11_000).unwrap();
        assert_eq!((row.host.as_str(), row.agent_count, row.latency_ms), ("b", 3, 0), "not what the peer claims");
        assert_eq!(row.heard_unix_ms, Some(10_000));
        assert_eq!(row.as_of_unix_ms, Some(1_000));
        assert_eq!(row.roster_problem.as_deref(), Some("roster.yaml: bad"));
        assert!(!row.stale && row.detail.is_none());
        let late = host_row("acme", "b", &fed, 3, 21_000).unwrap();
        assert!(late.stale);
        assert!(late.detail.as_deref().unwrap().contains("nothing for 11 s"), "{:?}", late.detail);
        let probe = Fed { status: Some(status(Some("tmux could not be probed"))), heard_ms: 10_000 };
        let both = host_row("acme", "b", &probe, 0, 21_000).unwrap().detail.unwrap();
        assert!(both.starts_with("tmux could not be probed; its feed"), "{both}");
        assert_eq!(
            host_row("acme", "b", &probe, 0, 11_000).unwrap().detail.as_deref(),
            Some("tmux could not be probed")
        );
        assert!(host_row("acme", "b", &Fed { status: None, heard_ms: 10_000 }, 0, 10_000).is_none(), "no tick yet");
    }

    #[test]
    fn the_rows_key_ignores_what_events_carry() {
        let r = AgentRecord {
            tenant_id: "acme".into(),
            host: "b".into(),
            name: "x".into(),
            class: None,
            runtime: None,
            managed: true,
            socket: String::new(),
            systemd: fleet_core::record::SystemdState::unavailable(),
            pane: fleet_core::record::PaneState::Alive,
            pane_pid: Some(1),
            current_command: Some("claude".into()),
            idle_seconds: Some(5),
            in_copy_mode: false,
            heartbeat: fleet_core::heartbeat::HealthReport::unknown("a", 1),
            drift: false,
            boot_enable: false,
            activity: fleet_core::activity::Activity::unknown("a", 1),
        };
        let later = AgentRecord { idle_seconds: Some(9), ..r.clone() };
        assert_eq!(rows_key(std::slice::from_ref(&r)), rows_key(&[later]));
        // A beat and an activity change come as their own events: the rows are not sent for them.
        let beat = AgentRecord { heartbeat: fleet_core::heartbeat::HealthReport::unknown("b", 2), ..r.clone() };
        assert_eq!(rows_key(std::slice::from_ref(&r)), rows_key(&[beat]));
        let busy = AgentRecord { activity: fleet_core::activity::Activity::unknown("b", 2), ..r.clone() };
        assert_eq!(rows_key(std::slice::from_ref(&r)), rows_key(&[busy]));
        let died = AgentRecord { pane: fleet_core::record::PaneState::Dead, ..r.clone() };
        assert_ne!(rows_key(std::slice::from_ref(&r)), rows_key(&[died]));
        let other = AgentRecord { current_command: Some("sh".into()), ..r.clone() };
        assert_ne!(rows_key(std::slice::from_ref(&r)), rows_key(&[other]));
    }
}
