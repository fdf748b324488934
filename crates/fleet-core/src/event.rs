//! Heartbeat-stream events, and the pure functions that derive them from
//! successive views of a host: what appeared, what went, whose health changed,
//! who beat.

use crate::heartbeat::{Health, HealthReport, Timestamp, assess_parsed};
use crate::record::AgentRecord;
use std::collections::BTreeMap;

/// One event of `fleet heartbeats`. `agent` is empty for host events.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    pub tenant_id: String,
    pub host: String,
    pub agent: String,
    /// When the observing node saw it, ms since the Unix epoch.
    pub observed_unix_ms: i64,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// A new heartbeat was written.
    Beat {
        heartbeat: HealthReport,
    },
    /// Health moved (e.g. healthy -> stale as time passed with no beat).
    HealthChange {
        from: Health,
        to: Health,
        heartbeat: HealthReport,
    },
    /// The agent's activity moved (e.g. working -> waiting).
    ActivityChange {
        from: crate::activity::State,
        activity: crate::activity::Activity,
    },
    /// A new agent row (also sent as the snapshot at the start of a stream).
    AgentAppeared {
        record: Box<AgentRecord>,
    },
    AgentGone,
    HostUp {
        address: String,
    },
    HostDown {
        reason: String,
    },
    /// The subscriber fell behind; `dropped` events were lost. A snapshot follows.
    Lagged {
        dropped: u64,
    },
    /// The host's own row, every tick of a feed that asked for them (nodes keep
    /// their replicated view with it); `agents`: every agent row, when one
    /// changed since the last tick in what no other event says.
    HostTick {
        status: Box<crate::record::HostStatus>,
        agents: Option<Vec<AgentRecord>>,
    },
}

impl Event {
    pub fn short(&self) -> &'static str {
        match self.kind {
            EventKind::Beat { .. } => "beat",
            EventKind::HealthChange { .. } => "health_change",
            EventKind::ActivityChange { .. } => "activity_change",
            EventKind::AgentAppeared { .. } => "agent_appeared",
            EventKind::AgentGone => "agent_gone",
            EventKind::HostUp { .. } => "host_up",
            EventKind::HostDown { .. } => "host_down",
            EventKind::Lagged { .. } => "lagged",
            EventKind::HostTick { .. } => "host_tick",
        }
    }
}

fn event(r: &AgentRecord, now_ms: i64, kind: EventKind) -> Event {
    Event {
        tenant_id: r.tenant_id.clone(),
        host: r.host.clone(),
        agent: r.name.clone(),
        observed_unix_ms: now_ms,
        kind,
    }
}

/// The snapshot of a view: one `AgentAppeared` per row.
pub fn snapshot(rows: &[AgentRecord], now_ms: i64) -> Vec<Event> {
    rows.iter().map(|r| event(r, now_ms, EventKind::AgentAppeared { record: Box::new(r.clone()) })).collect()
}

/// The events that lead from view `prev` to view `next` of one host.
pub fn diff(prev: &[AgentRecord], next: &[AgentRecord], now_ms: i64) -> Vec<Event> {
    let before: BTreeMap<&str, &AgentRecord> = prev.iter().map(|r| (r.name.as_str(), r)).collect();
    let after: BTreeMap<&str, &AgentRecord> = next.iter().map(|r| (r.name.as_str(), r)).collect();
    let mut out = Vec::new();
    for r in next {
        match before.get(r.name.as_str()) {
            None => out.push(event(r, now_ms, EventKind::AgentAppeared { record: Box::new(r.clone()) })),
            Some(p) => {
                let (a, b) = (&p.heartbeat, &r.heartbeat);
                if a.health != b.health {
                    out.push(event(
                        r,
                        now_ms,
                        EventKind::HealthChange { from: a.health, to: b.health, heartbeat: b.clone() },
                    ));
                } else if b.ts.is_some() && a.ts != b.ts {
                    out.push(event(r, now_ms, EventKind::Beat { heartbeat: b.clone() }));
                }
                if p.activity.state != r.activity.state {
                    out.push(event(
                        r,
                        now_ms,
                        EventKind::ActivityChange { from: p.activity.state, activity: r.activity.clone() },
                    ));
                }
            }
        }
    }
    for r in prev {
        if !after.contains_key(r.name.as_str()) {
            out.push(event(r, now_ms, EventKind::AgentGone));
        }
    }
    out
}

/// Re-judge every row's health at `now` (seconds) from the heartbeat it
/// already holds: stale arrives as time passes, with no file read.
pub fn reassess(rows: &mut [AgentRecord], now: i64) {
    for r in rows {
        if let (Some(ts), Some(pid), Some(status)) = (&r.heartbeat.ts, r.heartbeat.pid, r.heartbeat.status)
            && let Some(ts) = Timestamp::parse(ts)
        {
            r.heartbeat = assess_parsed(ts, pid, status, now, r.heartbeat.interval_seconds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heartbeat::assess;
    use crate::record::{PaneState, SystemdState};

    const T0: i64 = 1_782_084_679; // 2026-06-21T23:31:19Z

    fn row(name: &str, hb_age: Option<i64>, now: i64) -> AgentRecord {
        let text =
            hb_age.map(|age| format!("ts={}\npid=1\nstatus=ok\n", Timestamp::from_unix(now - age).to_iso_compact()));
        AgentRecord {
            tenant_id: "t".into(),
            host: "h".into(),
            name: name.into(),
            class: None,
            runtime: None,
            managed: true,
            socket: String::new(),
            systemd: SystemdState::unavailable(),
            pane: PaneState::Alive,
            pane_pid: Some(1),
            current_command: None,
            idle_seconds: None,
            in_copy_mode: false,
            heartbeat: assess(text.as_deref(), now, 15),
            drift: false,
            boot_enable: false,
            activity: crate::activity::Activity::of_pane(PaneState::Alive, 0),
        }
    }

    #[test]
    fn appeared_gone_beat_and_health_change() {
        let prev = vec![row("a", Some(0), T0), row("b", Some(0), T0), row("gone", None, T0)];
        let next = vec![row("a", Some(0), T0 + 5), row("b", Some(50), T0 + 5), row("new", None, T0 + 5)];
        let ev = diff(&prev, &next, 7);
        let kinds: Vec<(&str, &str)> = ev.iter().map(|e| (e.agent.as_str(), e.short())).collect();
        assert_eq!(kinds, [("a", "beat"), ("b", "health_change"), ("new", "agent_appeared"), ("gone", "agent_gone")]);
        assert!(matches!(ev[1].kind, EventKind::HealthChange { from: Health::Healthy, to: Health::Stale, .. }));
        assert_eq!(ev[0].observed_unix_ms, 7);
        assert!(diff(&next, &next, 8).is_empty(), "no change, no event");
    }

    #[test]
    fn an_activity_change_is_an_event_and_a_new_detail_alone_is_not() {
        use crate::activity::{Activity, Source, State};
        let prev = vec![row("a", None, T0)];
        let mut next = prev.clone();
        next[0].activity = Activity { state: State::Waiting, source: Source::Screen, ..Activity::unknown("prompt", 9) };
        let ev = diff(&prev, &next, 10);
        assert_eq!(ev.len(), 1, "{ev:?}");
        match &ev[0].kind {
            EventKind::ActivityChange { from, activity } => {
                assert_eq!((*from, activity.state), (State::Unknown, State::Waiting));
            }
            other => panic!("{other:?}"),
        }
        let v = serde_json::to_value(&ev[0]).unwrap();
        assert_eq!((v["event"].as_str(), v["from"].as_str()), (Some("activity_change"), Some("unknown")));
        assert_eq!(v["activity"]["state"], "waiting");
        let mut again = next.clone();
        again[0].activity.detail = "another rule, same state".into();
        assert!(diff(&next, &again, 11).is_empty());
    }

    #[test]
    fn reassess_turns_healthy_stale_as_time_passes() {
        let mut rows = vec![row("a", Some(0), T0)];
        reassess(&mut rows, T0 + 45);
        assert_eq!(rows[0].heartbeat.health, Health::Healthy);
        let before = rows.clone();
        reassess(&mut rows, T0 + 46);
        assert_eq!(rows[0].heartbeat.health, Health::Stale);
        assert_eq!(rows[0].heartbeat.age_seconds, Some(46));
        let ev = diff(&before, &rows, 0);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].short(), "health_change");
    }

    #[test]
    fn json_shape() {
        let ev = diff(&[], &[row("a", None, T0)], 1);
        let v = serde_json::to_value(&ev[0]).unwrap();
        assert_eq!(v["event"], "agent_appeared");
        assert_eq!((v["tenant_id"].as_str(), v["host"].as_str()), (Some("t"), Some("h")));
        assert_eq!(v["agent"], "a");
        assert_eq!(v["record"]["name"], "a");
    }
}
