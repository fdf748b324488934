//! Conversions between the domain types of `fleet-core` and the `fleet.v1`
//! wire messages.
//!
//! Core to wire is always `From`. Wire to core is `From` where every wire
//! value has a domain meaning, and `TryFrom` for events, whose `kind` oneof or
//! payload may be absent.
//!
//! The rules, where the two sides differ:
//! - An `Option<String>` of the core is an empty string on the wire, and an
//!   empty wire string is `None`.
//! - An `UNSPECIFIED` or unknown enum value (a newer peer) reads as the
//!   weakest claim: pane `Missing`, health `Unknown`, host state `Error`. A
//!   heartbeat status other than `ok`/`busy` reads as `None`.
//! - An `Agent` without `systemd` reads as systemd unavailable; without
//!   `heartbeat`, as health `Unknown` with a reason.
//! - `interval_seconds` is `u64` in the core and `uint32` on the wire; larger
//!   values are sent as `u32::MAX`.
//! - The wire `HostStatus.address` has no core field: it is sent empty and
//!   ignored on receipt. Set it with `v1::HostStatus { address, ..status.into() }`.

use crate::v1;
use crate::v1::heartbeat_event::Kind;
use fleet_core::activity::{Activity, Source, State};
use fleet_core::event::{Event, EventKind};
use fleet_core::heartbeat::{BeatStatus, Health, HealthReport};
use fleet_core::record::{AgentRecord, HostState, HostStatus, PaneState, SystemdState};
use std::fmt;

/// Why a wire message does not make a domain value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConvertError {
    /// A `HeartbeatEvent` with no `kind`: absent, or a oneof member this build does not know.
    MissingKind,
    /// A sub-message the domain type cannot do without, e.g. `"agent_appeared.agent"`.
    MissingField(&'static str),
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvertError::MissingKind => f.write_str("heartbeat event without a kind"),
            ConvertError::MissingField(field) => write!(f, "missing field {field}"),
        }
    }
}

impl std::error::Error for ConvertError {}

/// An empty wire string is an absent value.
fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

// ---------------------------------------------------------------- enums

impl From<State> for v1::ActivityState {
    fn from(s: State) -> Self {
        match s {
            State::Working => v1::ActivityState::Working,
            State::Waiting => v1::ActivityState::Waiting,
            State::Idle => v1::ActivityState::Idle,
            State::Exited => v1::ActivityState::Exited,
            State::Unknown => v1::ActivityState::Unknown,
        }
    }
}

/// An unspecified or unknown state (a newer peer) reads as `Unknown`.
fn activity_state(v: i32) -> State {
    match v1::ActivityState::try_from(v) {
        Ok(v1::ActivityState::Working) => State::Working,
        Ok(v1::ActivityState::Waiting) => State::Waiting,
        Ok(v1::ActivityState::Idle) => State::Idle,
        Ok(v1::ActivityState::Exited) => State::Exited,
        _ => State::Unknown,
    }
}

impl From<Source> for v1::ActivitySource {
    fn from(s: Source) -> Self {
        match s {
            Source::Hook => v1::ActivitySource::Hook,
            Source::Screen => v1::ActivitySource::Screen,
            Source::Process => v1::ActivitySource::Process,
        }
    }
}

impl From<Activity> for v1::Activity {
    fn from(a: Activity) -> Self {
        v1::Activity {
            state: v1::ActivityState::from(a.state) as i32,
            source: v1::ActivitySource::from(a.source) as i32,
            since_unix_ms: a.since_unix_ms,
            detail: a.detail,
            hook: a.hook,
            screen: a.screen,
        }
    }
}

impl From<v1::Activity> for Activity {
    fn from(a: v1::Activity) -> Self {
        let source = match v1::ActivitySource::try_from(a.source) {
            Ok(v1::ActivitySource::Hook) => Source::Hook,
            Ok(v1::ActivitySource::Screen) => Source::Screen,
            _ => Source::Process,
        };
        Activity {
            state: activity_state(a.state),
            source,
            since_unix_ms: a.since_unix_ms,
            detail: a.detail,
            hook: a.hook,
            screen: a.screen,
        }
    }
}

impl From<Health> for v1::Health {
    fn from(h: Health) -> Self {
        match h {
            Health::Healthy => v1::Health::Healthy,
            Health::Stale => v1::Health::Stale,
            Health::Unknown => v1::Health::Unknown,
        }
    }
}

impl From<v1::Health> for Health {
    fn from(h: v1::Health) -> Self {
        match h {
            v1::Health::Healthy => Health::Healthy,
            v1::Health::Stale => Health::Stale,
            v1::Health::Unknown | v1::Health::Unspecified => Health::Unknown,
        }
    }
}

fn health(value: i32) -> Health {
    v1::Health::try_from(value).map_or(Health::Unknown, Health::from)
}

impl From<PaneState> for v1::PaneState {
    fn from(p: PaneState) -> Self {
        match p {
            PaneState::Alive => v1::PaneState::Alive,
            PaneState::Dead => v1::PaneState::Dead,
            PaneState::Missing => v1::PaneState::Missing,
        }
    }
}

impl From<v1::PaneState> for PaneState {
    fn from(p: v1::PaneState) -> Self {
        match p {
            v1::PaneState::Alive => PaneState::Alive,
            v1::PaneState::Dead => PaneState::Dead,
            v1::PaneState::Missing | v1::PaneState::Unspecified => PaneState::Missing,
        }
    }
}

impl From<HostState> for v1::HostState {
    fn from(s: HostState) -> Self {
        match s {
            HostState::Ok => v1::HostState::Ok,
            HostState::Unreachable => v1::HostState::Unreachable,
            HostState::Timeout => v1::HostState::Timeout,
            HostState::Error => v1::HostState::Error,
        }
    }
}

impl From<v1::HostState> for HostState {
    fn from(s: v1::HostState) -> Self {
        match s {
            v1::HostState::Ok => HostState::Ok,
            v1::HostState::Unreachable => HostState::Unreachable,
            v1::HostState::Timeout => HostState::Timeout,
            v1::HostState::Error | v1::HostState::Unspecified => HostState::Error,
        }
    }
}

fn beat_status(s: &str) -> Option<BeatStatus> {
    match s {
        "ok" => Some(BeatStatus::Ok),
        "busy" => Some(BeatStatus::Busy),
        _ => None,
    }
}

// ---------------------------------------------------------------- records

impl From<SystemdState> for v1::SystemdState {
    fn from(s: SystemdState) -> Self {
        v1::SystemdState {
            available: s.available,
            active_state: s.active_state.unwrap_or_default(),
            unit_file_state: s.unit_file_state.unwrap_or_default(),
        }
    }
}

impl From<v1::SystemdState> for SystemdState {
    fn from(s: v1::SystemdState) -> Self {
        SystemdState {
            available: s.available,
            active_state: non_empty(s.active_state),
            unit_file_state: non_empty(s.unit_file_state),
        }
    }
}

impl From<HealthReport> for v1::HeartbeatState {
    fn from(r: HealthReport) -> Self {
        v1::HeartbeatState {
            health: v1::Health::from(r.health) as i32,
            age_seconds: r.age_seconds,
            ts: r.ts.unwrap_or_default(),
            pid: r.pid,
            status: r.status.map(|s| s.as_str().to_owned()).unwrap_or_default(),
            reason: r.reason.unwrap_or_default(),
            interval_seconds: u32::try_from(r.interval_seconds).unwrap_or(u32::MAX),
        }
    }
}

impl From<v1::HeartbeatState> for HealthReport {
    fn from(s: v1::HeartbeatState) -> Self {
        HealthReport {
            health: health(s.health),
            age_seconds: s.age_seconds,
            ts: non_empty(s.ts),
            pid: s.pid,
            status: beat_status(&s.status),
            reason: non_empty(s.reason),
            interval_seconds: u64::from(s.interval_seconds),
        }
    }
}

impl From<AgentRecord> for v1::Agent {
    fn from(r: AgentRecord) -> Self {
        v1::Agent {
            tenant_id: r.tenant_id,
            host: r.host,
            name: r.name,
            class: r.class.unwrap_or_default(),
            runtime: r.runtime.unwrap_or_default(),
            managed: r.managed,
            systemd: Some(r.systemd.into()),
            pane: v1::PaneState::from(r.pane) as i32,
            pane_pid: r.pane_pid,
            current_command: r.current_command.unwrap_or_default(),
            idle_seconds: r.idle_seconds,
            in_copy_mode: r.in_copy_mode,
            heartbeat: Some(r.heartbeat.into()),
            drift: r.drift,
            boot_enable: r.boot_enable,
            socket: r.socket,
            activity: Some(r.activity.into()),
        }
    }
}

impl From<v1::Agent> for AgentRecord {
    fn from(a: v1::Agent) -> Self {
        AgentRecord {
            tenant_id: a.tenant_id,
            host: a.host,
            name: a.name,
            class: non_empty(a.class),
            runtime: non_empty(a.runtime),
            managed: a.managed,
            socket: a.socket,
            systemd: a.systemd.map_or_else(SystemdState::unavailable, SystemdState::from),
            pane: v1::PaneState::try_from(a.pane).map_or(PaneState::Missing, PaneState::from),
            pane_pid: a.pane_pid,
            current_command: non_empty(a.current_command),
            idle_seconds: a.idle_seconds,
            in_copy_mode: a.in_copy_mode,
            heartbeat: a
                .heartbeat
                .map_or_else(|| HealthReport::unknown("no heartbeat on the wire", 0), HealthReport::from),
            drift: a.drift,
            boot_enable: a.boot_enable,
            activity: a
                .activity
                .map_or_else(|| Activity::unknown("no activity on the wire (an older node)", 0), Activity::from),
        }
    }
}

impl From<HostStatus> for v1::HostStatus {
    fn from(s: HostStatus) -> Self {
        v1::HostStatus {
            tenant_id: s.tenant_id,
            host: s.host,
            state: v1::HostState::from(s.state) as i32,
            latency_ms: s.latency_ms,
            agent_count: s.agent_count,
            detail: s.detail.unwrap_or_default(),
            roster_problem: s.roster_problem.unwrap_or_default(),
            address: String::new(),
            as_of_unix_ms: s.as_of_unix_ms.unwrap_or(0),
            stale: s.stale,
            heard_unix_ms: s.heard_unix_ms.unwrap_or(0),
        }
    }
}

impl From<v1::HostStatus> for HostStatus {
    fn from(s: v1::HostStatus) -> Self {
        HostStatus {
            tenant_id: s.tenant_id,
            host: s.host,
            state: v1::HostState::try_from(s.state).map_or(HostState::Error, HostState::from),
            latency_ms: s.latency_ms,
            agent_count: s.agent_count,
            detail: non_empty(s.detail),
            roster_problem: non_empty(s.roster_problem),
            as_of_unix_ms: Some(s.as_of_unix_ms).filter(|t| *t > 0),
            stale: s.stale,
            heard_unix_ms: Some(s.heard_unix_ms).filter(|t| *t > 0),
        }
    }
}

// ---------------------------------------------------------------- events

impl From<EventKind> for Kind {
    fn from(k: EventKind) -> Self {
        match k {
            EventKind::Beat { heartbeat } => Kind::Beat(v1::Beat { heartbeat: Some(heartbeat.into()) }),
            EventKind::HealthChange { from, to, heartbeat } => Kind::HealthChange(v1::HealthChange {
                from: v1::Health::from(from) as i32,
                to: v1::Health::from(to) as i32,
                heartbeat: Some(heartbeat.into()),
            }),
            EventKind::AgentAppeared { record } => {
                Kind::AgentAppeared(v1::AgentAppeared { agent: Some((*record).into()) })
            }
            EventKind::AgentGone => Kind::AgentGone(v1::AgentGone {}),
            EventKind::HostUp { address } => Kind::HostUp(v1::HostUp { address }),
            EventKind::HostDown { reason } => Kind::HostDown(v1::HostDown { reason }),
            EventKind::Lagged { dropped } => Kind::Lagged(v1::Lagged { dropped }),
            EventKind::HostTick { status, agents } => Kind::HostTick(v1::HostTick {
                status: Some((*status).into()),
                has_agents: agents.is_some(),
                agents: agents.unwrap_or_default().into_iter().map(Into::into).collect(),
            }),
            EventKind::ActivityChange { from, activity } => Kind::ActivityChange(v1::ActivityChange {
                from: v1::ActivityState::from(from) as i32,
                activity: Some(activity.into()),
            }),
        }
    }
}

impl TryFrom<Kind> for EventKind {
    type Error = ConvertError;

    fn try_from(k: Kind) -> Result<Self, ConvertError> {
        let missing = ConvertError::MissingField;
        Ok(match k {
            Kind::Beat(b) => EventKind::Beat { heartbeat: b.heartbeat.ok_or(missing("beat.heartbeat"))?.into() },
            Kind::HealthChange(c) => EventKind::HealthChange {
                from: health(c.from),
                to: health(c.to),
                heartbeat: c.heartbeat.ok_or(missing("health_change.heartbeat"))?.into(),
            },
            Kind::AgentAppeared(a) => {
                EventKind::AgentAppeared { record: Box::new(a.agent.ok_or(missing("agent_appeared.agent"))?.into()) }
            }
            Kind::AgentGone(v1::AgentGone {}) => EventKind::AgentGone,
            Kind::HostUp(u) => EventKind::HostUp { address: u.address },
            Kind::HostDown(d) => EventKind::HostDown { reason: d.reason },
            Kind::Lagged(l) => EventKind::Lagged { dropped: l.dropped },
            Kind::HostTick(t) => EventKind::HostTick {
                status: Box::new(t.status.ok_or(missing("host_tick.status"))?.into()),
                agents: t.has_agents.then(|| t.agents.into_iter().map(Into::into).collect()),
            },
            Kind::ActivityChange(c) => EventKind::ActivityChange {
                from: activity_state(c.from),
                activity: c.activity.ok_or(missing("activity_change.activity"))?.into(),
            },
        })
    }
}

impl From<Event> for v1::HeartbeatEvent {
    fn from(e: Event) -> Self {
        v1::HeartbeatEvent {
            tenant_id: e.tenant_id,
            host: e.host,
            agent: e.agent,
            observed_unix_ms: e.observed_unix_ms,
            kind: Some(e.kind.into()),
        }
    }
}

impl TryFrom<v1::HeartbeatEvent> for Event {
    type Error = ConvertError;

    fn try_from(e: v1::HeartbeatEvent) -> Result<Self, ConvertError> {
        Ok(Event {
            tenant_id: e.tenant_id,
            host: e.host,
            agent: e.agent,
            observed_unix_ms: e.observed_unix_ms,
            kind: e.kind.ok_or(ConvertError::MissingKind)?.try_into()?,
        })
    }
}

/// The word for a receipt's outcome, as `--json`, the table and the audit log
/// write it: a contract that web UIs read (docs/protocol.md).
pub fn outcome_word(outcome: v1::DeliveryOutcome) -> &'static str {
    match outcome {
        v1::DeliveryOutcome::Unspecified => "unspecified",
        v1::DeliveryOutcome::Delivered => "delivered",
        v1::DeliveryOutcome::Accepted => "accepted",
        v1::DeliveryOutcome::Draft => "draft",
        v1::DeliveryOutcome::Unverifiable => "unverifiable",
        v1::DeliveryOutcome::NotFound => "not_found",
        v1::DeliveryOutcome::Failed => "failed",
        v1::DeliveryOutcome::Busy => "busy",
        v1::DeliveryOutcome::Queued => "queued",
    }
}

/// [`outcome_word`] of a wire value; an unknown one (a newer peer) is `unknown`.
pub fn outcome_word_of(outcome: i32) -> &'static str {
    v1::DeliveryOutcome::try_from(outcome).map_or("unknown", outcome_word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_words_are_fixed() {
        use v1::DeliveryOutcome as O;
        let words = [
            (O::Unspecified, "unspecified"),
            (O::Delivered, "delivered"),
            (O::Accepted, "accepted"),
            (O::Draft, "draft"),
            (O::Unverifiable, "unverifiable"),
            (O::NotFound, "not_found"),
            (O::Failed, "failed"),
            (O::Busy, "busy"),
            (O::Queued, "queued"),
        ];
        for (o, word) in words {
            assert_eq!(outcome_word(o), word);
            assert_eq!(outcome_word_of(o as i32), word);
        }
        assert_eq!(outcome_word_of(99), "unknown");
    }
    use prost::Message;

    fn full_heartbeat() -> HealthReport {
        HealthReport {
            health: Health::Stale,
            age_seconds: Some(-3),
            ts: Some("2026-06-21T18:31:19-05:00".into()),
            pid: Some(4242),
            status: Some(BeatStatus::Busy),
            reason: Some("a reason, though health is known".into()),
            interval_seconds: 15,
        }
    }

    fn full_record() -> AgentRecord {
        AgentRecord {
            tenant_id: "acme".into(),
            host: "box-1".into(),
            name: "coder".into(),
            class: Some("worker".into()),
            runtime: Some("claude".into()),
            managed: true,
            socket: "/tmp/fleet.sock".into(),
            systemd: SystemdState {
                available: true,
                active_state: Some("active".into()),
                unit_file_state: Some("disabled".into()),
            },
            pane: PaneState::Dead,
            pane_pid: Some(77),
            current_command: Some("node".into()),
            idle_seconds: Some(12),
            in_copy_mode: true,
            heartbeat: full_heartbeat(),
            drift: true,
            boot_enable: true,
            activity: Activity {
                state: State::Waiting,
                source: Source::Hook,
                since_unix_ms: 1_796_000_000_123,
                detail: "the notification hook said waiting".into(),
                hook: "waiting by notification at 2026-12-02T01:00:00Z".into(),
                screen: "no rule matched, unchanged for 3 s".into(),
            },
        }
    }

    fn sparse_record() -> AgentRecord {
        AgentRecord {
            tenant_id: "acme".into(),
            host: "box-1".into(),
            name: "stray".into(),
            class: None,
            runtime: None,
            managed: false,
            socket: String::new(),
            systemd: SystemdState::unavailable(),
            pane: PaneState::Missing,
            pane_pid: None,
            current_command: None,
            idle_seconds: None,
            in_copy_mode: false,
            heartbeat: HealthReport::unknown("no heartbeat file", 15),
            drift: false,
            boot_enable: false,
            activity: Activity::of_pane(PaneState::Missing, 5),
        }
    }

    /// Core -> wire -> bytes -> wire -> core.
    fn round_trip_agent(r: &AgentRecord) -> AgentRecord {
        let bytes = v1::Agent::from(r.clone()).encode_to_vec();
        v1::Agent::decode(bytes.as_slice()).unwrap().into()
    }

    fn round_trip_event(e: &Event) -> Result<Event, ConvertError> {
        let bytes = v1::HeartbeatEvent::from(e.clone()).encode_to_vec();
        v1::HeartbeatEvent::decode(bytes.as_slice()).unwrap().try_into()
    }

    #[test]
    fn agent_records_round_trip() {
        for r in [full_record(), sparse_record()] {
            assert_eq!(round_trip_agent(&r), r);
        }
        let wire = v1::Agent::from(sparse_record());
        let systemd = wire.systemd.as_ref().unwrap();
        assert!(!systemd.available && systemd.active_state.is_empty() && systemd.unit_file_state.is_empty());
        assert_eq!((wire.pane, wire.class.as_str()), (v1::PaneState::Missing as i32, ""));
        let hb = wire.heartbeat.unwrap();
        assert_eq!((hb.health, hb.ts.as_str(), hb.status.as_str()), (v1::Health::Unknown as i32, "", ""));
        assert_eq!(hb.reason, "no heartbeat file");
    }

    #[test]
    fn every_event_kind_round_trips() {
        let (from, to) = (Health::Healthy, Health::Unknown);
        let kinds = [
            EventKind::Beat { heartbeat: full_heartbeat() },
            EventKind::HealthChange { from, to, heartbeat: HealthReport::unknown("garbled", 2) },
            EventKind::AgentAppeared { record: Box::new(full_record()) },
            EventKind::AgentAppeared { record: Box::new(sparse_record()) },
            EventKind::AgentGone,
            EventKind::HostUp { address: "10.0.0.2:7443".into() },
            EventKind::HostDown { reason: "connection refused".into() },
            EventKind::Lagged { dropped: u64::MAX },
            EventKind::ActivityChange { from: State::Idle, activity: full_record().activity },
            EventKind::HostTick { status: Box::new(tick_status()), agents: None },
            EventKind::HostTick { status: Box::new(tick_status()), agents: Some(vec![]) },
            EventKind::HostTick { status: Box::new(tick_status()), agents: Some(vec![full_record(), sparse_record()]) },
        ];
        for kind in kinds {
            let agent =
                if matches!(kind, EventKind::HostUp { .. } | EventKind::HostDown { .. }) { "" } else { "coder" };
            let e = Event {
                tenant_id: "acme".into(),
                host: "box-1".into(),
                agent: agent.into(),
                observed_unix_ms: 1_782_084_679_123,
                kind,
            };
            assert_eq!(round_trip_event(&e).as_ref(), Ok(&e), "{}", e.short());
        }
    }

    fn tick_status() -> HostStatus {
        HostStatus {
            tenant_id: "acme".into(),
            host: "box-1".into(),
            state: HostState::Ok,
            latency_ms: 0,
            agent_count: 2,
            detail: None,
            roster_problem: None,
            as_of_unix_ms: Some(1_782_084_679_000),
            stale: false,
            heard_unix_ms: None,
        }
    }

    #[test]
    fn host_status_round_trips() {
        let full = HostStatus {
            tenant_id: "acme".into(),
            host: "box-2".into(),
            state: HostState::Timeout,
            latency_ms: 2000,
            agent_count: 3,
            detail: Some("deadline exceeded".into()),
            roster_problem: Some("roster.yaml: line 3: bad name".into()),
            as_of_unix_ms: Some(1_782_084_679_123),
            stale: true,
            heard_unix_ms: Some(1_782_084_679_456),
        };
        let sparse = HostStatus {
            state: HostState::Ok,
            detail: None,
            roster_problem: None,
            as_of_unix_ms: None,
            stale: false,
            heard_unix_ms: None,
            ..full.clone()
        };
        for s in [full, sparse] {
            let wire = v1::HostStatus::from(s.clone());
            assert_eq!(HostStatus::from(wire), s);
        }
        for state in [HostState::Ok, HostState::Unreachable, HostState::Timeout, HostState::Error] {
            assert_eq!(HostState::from(v1::HostState::from(state)), state);
        }
    }

    #[test]
    fn unknown_and_unspecified_enum_values_read_as_the_weakest_claim() {
        let wire = v1::Agent {
            pane: 99,
            heartbeat: Some(v1::HeartbeatState {
                health: -5,
                status: "sleepy".into(),
                interval_seconds: 15,
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = AgentRecord::from(wire);
        assert_eq!((r.pane, r.heartbeat.health, r.heartbeat.status), (PaneState::Missing, Health::Unknown, None));
        assert_eq!(r.systemd, SystemdState::unavailable());

        let empty = AgentRecord::from(v1::Agent::default());
        assert_eq!((empty.pane, empty.heartbeat.health), (PaneState::Missing, Health::Unknown));
        assert!(empty.heartbeat.reason.is_some());

        let host = HostStatus::from(v1::HostStatus { state: 99, ..Default::default() });
        assert_eq!(host.state, HostState::Error);
        assert_eq!(HostStatus::from(v1::HostStatus::default()).state, HostState::Error);

        let change = v1::HealthChange { from: 0, to: 1234, heartbeat: Some(v1::HeartbeatState::default()) };
        let kind = EventKind::try_from(Kind::HealthChange(change)).unwrap();
        assert!(matches!(kind, EventKind::HealthChange { from: Health::Unknown, to: Health::Unknown, .. }));
    }

    #[test]
    fn oversized_interval_saturates() {
        let r = HealthReport { interval_seconds: u64::MAX, ..full_heartbeat() };
        assert_eq!(v1::HeartbeatState::from(r).interval_seconds, u32::MAX);
    }

    #[test]
    fn events_without_a_kind_or_payload_are_errors() {
        let no_kind = v1::HeartbeatEvent { agent: "coder".into(), ..Default::default() };
        assert_eq!(Event::try_from(no_kind), Err(ConvertError::MissingKind));
        let cases = [
            (Kind::Beat(v1::Beat { heartbeat: None }), "beat.heartbeat"),
            (Kind::HealthChange(v1::HealthChange::default()), "health_change.heartbeat"),
            (Kind::AgentAppeared(v1::AgentAppeared { agent: None }), "agent_appeared.agent"),
        ];
        for (kind, field) in cases {
            let e = v1::HeartbeatEvent { kind: Some(kind), ..Default::default() };
            let err = Event::try_from(e).unwrap_err();
            assert_eq!(err, ConvertError::MissingField(field));
            assert_eq!(err.to_string(), format!("missing field {field}"));
        }
    }
}
