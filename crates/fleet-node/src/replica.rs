//! The replicated view: every node keeps the agent rows and the host row of
//! every peer host, so that `ListAgents(MESH)` answers from memory instead of
//! a round trip to every host. Two ways feed it:
//!
//! - Copies (always): each node numbers the states of its own host
//!   ([`number_states`]: a new version when anything a peer would show
//!   changes) and announces the number by SWIM gossip ([`crate::versions`]).
//!   A node that hears of a version newer than its copy asks that host for its
//!   rows ([`crate::peers::follow_versions`]: `ListAgents(LOCAL)` over mutual
//!   TLS, so only the host itself speaks for its rows). Idle, this costs
//!   nothing but SWIM's own datagrams, whatever the size of the mesh; a
//!   connection closes after [`crate::peers::Peers::idle_close`].
//! - Feeds (while someone watches the mesh's events: `WatchHeartbeats(MESH)`,
//!   the web door's event stream): one heartbeat stream per peer
//!   ([`crate::peers::feed`]: a snapshot, then events within milliseconds, and
//!   a [`fleet_core::event::EventKind::HostTick`] every [`TICK`]). A fed host
//!   is served from its feed; feeds stop [`crate::peers::Peers::feed_linger`] after
//!   the last watcher leaves.
//!
//! Freshness, per row:
//! - A copy is `stale` when a newer version was heard of more than [`LAG`]
//!   ago and could not be fetched (a host this node cannot reach while others
//!   can: a partial partition), or while membership suspects the host; a feed
//!   is stale when silent for longer than [`is_stale`] allows. A stale row
//!   says why, and `fleet ps --fresh` asks the host now.
//! - A host that membership declares down is an `unreachable` row within the
//!   detection time ([`crate::peers::Peers::list`]) and its rows are dropped,
//!   so they are never served silently old.
//! - The serving side of a feed sends the agent rows with a tick when
//!   something that no event says changed (pane, pid, command, systemd, flags;
//!   [`rows_key`]), and at least every [`ROWS_EVERY`] ticks.

use fleet_core::record::{AgentRecord, HostStatus};
use fleet_proto::listing::{AgentCopy, EncodedAgents};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
    /// Which feed keeps it (one that stops removes only its own).
    pub by: u64,
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

/// A copy is stale when a newer version was announced this long ago and is
/// not here yet (a fetch takes a round trip; two missed seconds are a fault).
pub const LAG: Duration = Duration::from_secs(2);

/// A peer host's state as its node last answered.
#[derive(Clone, Debug)]
pub struct Copy {
    /// The node's run and version of this state ([`number_states`]).
    pub generation: u64,
    pub version: u64,
    /// The host's own row, as it answered.
    pub status: HostStatus,
    /// Its agent rows, kept encoded (a listing writes them as they are).
    pub rows: AgentCopy,
    /// When the answer came (Unix ms, this node's clock).
    pub pulled_ms: i64,
}

/// What this node knows of one peer host's state.
#[derive(Clone, Debug, Default)]
pub struct Replica {
    pub copy: Option<Copy>,
    /// Since when a version newer than the copy is known (Unix ms).
    pub behind_since: Option<i64>,
    /// The newest announced stamp the host itself contradicted (it answered
    /// with an older version of the same run): never asked for again.
    pub refuted: Option<crate::versions::Stamp>,
    /// A fetch is under way.
    pub fetching: bool,
    /// The host's node numbers no states (an older version): it is asked at each listing.
    pub legacy: bool,
    /// The host's node left a rows stream unanswered ([`crate::membership::RowsError::Unanswered`]:
    /// an older version): its state is fetched over gRPC, until it restarts.
    pub over_grpc: Option<u64>,
    /// When the last fetch began, and why it failed (if it did).
    pub tried_ms: i64,
    pub error: Option<String>,
}

/// Should a node whose copy of a host is at `copy` (generation, version) ask
/// that host for its state, given the host's current run `generation` (from
/// membership), the newest stamp `heard` by gossip and the stamp it
/// `refuted`? When there is no copy, the copy is of another run, or a newer
/// version of this run was announced and not refuted.
pub fn needs_fetch(
    copy: Option<crate::versions::Stamp>,
    generation: u64,
    heard: Option<crate::versions::Stamp>,
    refuted: Option<crate::versions::Stamp>,
) -> bool {
    let Some((g, v)) = copy else { return true };
    if g != generation {
        return true;
    }
    heard.is_some_and(|(hg, hv)| hg == g && hv > v && refuted.is_none_or(|r| (hg, hv) > r))
}

/// Does an answer of the host's run `generation` at `version`, with its host row `status`,
/// replace the copy `old`? Not when the copy is of the same run and newer (a higher version,
/// or the same version of a later view of the host): two fetches may land out of order (one
/// that gossip started, one after a change this node forwarded), and the older answer must
/// not undo the newer.
pub fn replaces(old: Option<&Copy>, generation: u64, version: u64, status: &HostStatus) -> bool {
    let Some(c) = old else { return true };
    let as_of = |s: &HostStatus| s.as_of_unix_ms.unwrap_or(0);
    c.generation != generation || (version, as_of(status)) >= (c.version, as_of(&c.status))
}

/// How long a host is not asked again after a failed fetch.
pub const RETRY: Duration = Duration::from_secs(2);

/// How long a host is not asked again after it contradicted an announced version of its own
/// state: a node that forges ever higher versions makes every node ask that host at most this
/// often, not once per forgery.
pub const AFTER_FORGERY: Duration = Duration::from_secs(10);

/// Is the host of `r` not to be asked at `now_ms` (its last fetch, at `tried_ms`, failed or
/// refuted an announcement, and the wait for that has not passed)?
pub fn resting(r: &Replica, now_ms: i64) -> bool {
    let wait = if r.refuted.is_some() {
        AFTER_FORGERY
    } else if r.error.is_some() {
        RETRY
    } else {
        return false;
    };
    now_ms - r.tried_ms < wait.as_millis() as i64
}

/// Is the copy `behind_since` a newer version was heard of (Unix ms) stale at `now_ms`?
pub fn is_behind(behind_since: Option<i64>, now_ms: i64) -> bool {
    behind_since.is_some_and(|t| now_ms - t > LAG.as_millis() as i64)
}

/// The host row this node serves from `r`'s copy at `now_ms`, for a host that
/// membership says is `suspect`ed (or not); `None` without a copy.
pub fn copy_row(tenant: &str, host: &str, r: &Replica, suspect: bool, now_ms: i64) -> Option<HostStatus> {
    let c = r.copy.as_ref()?;
    let behind = is_behind(r.behind_since, now_ms);
    let why = match (suspect, behind) {
        (true, _) => Some("membership suspects this host (it missed its probes): these rows may be old".to_string()),
        (false, true) => Some(format!(
            "a newer state was announced {} s ago and could not be fetched{}: these rows may be old (`fleet ps --fresh` asks the host now)",
            (now_ms - r.behind_since.unwrap_or(now_ms)) / 1000,
            r.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
        )),
        (false, false) => None,
    };
    let detail = match (c.status.detail.clone(), why) {
        (Some(d), Some(w)) => Some(format!("{d}; {w}")),
        (d, w) => d.or(w),
    };
    Some(HostStatus {
        tenant_id: tenant.to_string(),
        host: host.to_string(),
        state: c.status.state,
        latency_ms: 0,
        agent_count: c.rows.len() as u32,
        detail,
        roster_problem: c.status.roster_problem.clone(),
        as_of_unix_ms: c.status.as_of_unix_ms,
        stale: suspect || behind,
        heard_unix_ms: Some(c.pulled_ms),
    })
}

/// Append the agent rows of a copy as of `now_ms` to `out`: idle time and a
/// beat's age grown by the time since the copy was taken. Health stays as the
/// host judged it: a beat on time changes no version ([`shared_key`]), so the
/// host's own judgement is the one that knows of it.
pub fn write_rows(c: &Copy, now_ms: i64, out: &mut EncodedAgents) {
    let since = (now_ms - c.pulled_ms).max(0) / 1000;
    c.rows.write(since as u64, out);
}

/// The agent rows of a copy as of `now_ms` ([`write_rows`]), decoded.
pub fn copy_rows(c: &Copy, now_ms: i64) -> Vec<AgentRecord> {
    let mut out = EncodedAgents::default();
    write_rows(c, now_ms, &mut out);
    out.decode().into_iter().map(AgentRecord::from).collect()
}

/// What peers would show of this host, without what changes by itself as
/// time passes (idle time, the screen's "unchanged for" note) and without
/// the time of each beat: a beat on time changes nothing a peer shows but the
/// age ([`copy_rows`]); a late or missing one changes the health, which is here.
pub fn shared_key(status: &HostStatus, rows: &[AgentRecord]) -> (String, Vec<AgentRecord>) {
    let host = format!("{:?}|{:?}|{:?}", status.state, status.detail, status.roster_problem);
    (host, rows.iter().map(shared_row).collect())
}

/// One row as [`shared_key`] sees it.
fn shared_row(r: &AgentRecord) -> AgentRecord {
    AgentRecord {
        idle_seconds: None,
        heartbeat: fleet_core::heartbeat::HealthReport { age_seconds: None, ts: None, ..r.heartbeat.clone() },
        activity: fleet_core::activity::Activity { screen: String::new(), ..r.activity.clone() },
        ..r.clone()
    }
}

/// Do two rows of one agent show the same to a peer ([`shared_key`])?
pub fn same_row(a: &AgentRecord, b: &AgentRecord) -> bool {
    shared_row(a) == shared_row(b)
}

/// Number the states of this host ([`shared_key`]) as its view changes, and
/// announce each new number by gossip.
pub async fn number_states(node: Arc<crate::service::Node>, cancel: CancellationToken) {
    let mut view = node.live.view.clone();
    let mut last = None;
    loop {
        let v = view.borrow_and_update().clone();
        let key = shared_key(&node.self_status(&v), &v.agents);
        if last.as_ref() != Some(&key) {
            last = Some(key);
            let version = node.state_version.fetch_add(1, Ordering::AcqRel) + 1;
            node.members.publish_version(version);
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            r = view.changed() => if r.is_err() { return },
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
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
        let fed = Fed { status: Some(status(None)), heard_ms: 10_000, by: 1 };
        let row = host_row("acme", "b", &fed, 3, 11_000).unwrap();
        assert_eq!((row.host.as_str(), row.agent_count, row.latency_ms), ("b", 3, 0), "not what the peer claims");
        assert_eq!(row.heard_unix_ms, Some(10_000));
        assert_eq!(row.as_of_unix_ms, Some(1_000));
        assert_eq!(row.roster_problem.as_deref(), Some("roster.yaml: bad"));
        assert!(!row.stale && row.detail.is_none());
        let late = host_row("acme", "b", &fed, 3, 21_000).unwrap();
        assert!(late.stale);
        assert!(late.detail.as_deref().unwrap().contains("nothing for 11 s"), "{:?}", late.detail);
        let probe = Fed { status: Some(status(Some("tmux could not be probed"))), heard_ms: 10_000, by: 1 };
        let both = host_row("acme", "b", &probe, 0, 21_000).unwrap().detail.unwrap();
        assert!(both.starts_with("tmux could not be probed; its feed"), "{both}");
        assert_eq!(
            host_row("acme", "b", &probe, 0, 11_000).unwrap().detail.as_deref(),
            Some("tmux could not be probed")
        );
        assert!(
            host_row("acme", "b", &Fed { status: None, heard_ms: 10_000, by: 1 }, 0, 10_000).is_none(),
            "no tick yet"
        );
    }

    #[test]
    fn the_rows_key_ignores_what_events_carry() {
        let r = record("x");
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

    #[test]
    fn a_copy_is_fetched_when_missing_of_another_run_or_behind_an_unrefuted_announcement() {
        assert!(needs_fetch(None, 7, None, None), "no copy");
        assert!(!needs_fetch(Some((7, 3)), 7, None, None), "nothing heard");
        assert!(needs_fetch(Some((7, 3)), 8, None, None), "the host restarted");
        assert!(!needs_fetch(Some((7, 3)), 7, Some((7, 3)), None), "the same version");
        assert!(!needs_fetch(Some((7, 3)), 7, Some((7, 2)), None), "an older one");
        assert!(needs_fetch(Some((7, 3)), 7, Some((7, 4)), None), "a newer one");
        assert!(!needs_fetch(Some((7, 3)), 7, Some((6, 9)), None), "of an older run");
        assert!(!needs_fetch(Some((7, 3)), 7, Some((8, 0)), None), "of a run membership does not know yet");
        assert!(!needs_fetch(Some((7, 3)), 7, Some((7, 9)), Some((7, 9))), "refuted by the host");
        assert!(!needs_fetch(Some((7, 3)), 7, Some((7, 8)), Some((7, 9))), "older than a refuted one");
        assert!(needs_fetch(Some((7, 3)), 7, Some((7, 10)), Some((7, 9))), "newer than the refuted one");
    }

    #[test]
    fn a_host_rests_after_a_failed_fetch_and_longer_after_a_refuted_version() {
        let tried = Replica { tried_ms: 10_000, ..Replica::default() };
        assert!(!resting(&tried, 10_500), "the last fetch went well");
        let failed = Replica { error: Some("refused".into()), ..tried.clone() };
        assert!(resting(&failed, 11_999));
        assert!(!resting(&failed, 12_000));
        let forged = Replica { refuted: Some((1, 9)), ..tried.clone() };
        assert!(resting(&forged, 19_999));
        assert!(!resting(&forged, 20_000));
        let both = Replica { refuted: Some((1, 9)), ..failed.clone() };
        assert!(resting(&both, 15_000), "the longer wait wins");
    }

    #[test]
    fn a_copy_is_behind_two_seconds_after_a_newer_version_was_heard() {
        assert!(!is_behind(None, 50_000));
        assert!(!is_behind(Some(48_000), 50_000), "2 s: a fetch may take that");
        assert!(is_behind(Some(47_999), 50_000));
        assert!(!is_behind(Some(51_000), 50_000), "a clock step back");
    }

    /// A managed row of `name` on host b, its pane alive (also for other modules' tests).
    pub(crate) fn record(name: &str) -> AgentRecord {
        AgentRecord {
            tenant_id: "acme".into(),
            host: "b".into(),
            name: name.into(),
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
        }
    }

    fn copied(detail: Option<&str>) -> Replica {
        copied_rows(detail, vec![record("x"), record("y")])
    }

    fn copied_rows(detail: Option<&str>, rows: Vec<AgentRecord>) -> Replica {
        let rows = AgentCopy::new(rows.into_iter().map(Into::into));
        let copy = Copy { generation: 7, version: 3, status: status(detail), rows, pulled_ms: 10_000 };
        Replica { copy: Some(copy), ..Replica::default() }
    }

    #[test]
    fn an_answer_replaces_a_copy_unless_the_copy_is_newer() {
        let at = |as_of| HostStatus { as_of_unix_ms: as_of, ..status(None) };
        let copy = |generation, version, as_of| Copy {
            generation,
            version,
            status: at(as_of),
            rows: AgentCopy::default(),
            pulled_ms: 10_000,
        };
        assert!(replaces(None, 7, 1, &at(None)), "no copy yet");
        let c = copy(7, 3, Some(5_000));
        assert!(replaces(Some(&c), 7, 4, &at(Some(1_000))), "a newer version");
        assert!(!replaces(Some(&c), 7, 2, &at(Some(9_000))), "an older version, whatever its view's time");
        assert!(replaces(Some(&c), 7, 3, &at(Some(6_000))), "the same version, a later view");
        assert!(replaces(Some(&c), 7, 3, &at(Some(5_000))), "the same answer again");
        assert!(!replaces(Some(&c), 7, 3, &at(Some(4_999))), "the same version, an earlier view");
        assert!(!replaces(Some(&c), 7, 3, &at(None)), "the same version, a view of no known time");
        assert!(replaces(Some(&copy(7, 3, None)), 7, 3, &at(None)));
        assert!(replaces(Some(&c), 8, 1, &at(None)), "another run of the host");
        assert!(replaces(Some(&c), 6, 9, &at(None)), "another run, either way");
    }

    #[test]
    fn a_copy_row_names_the_host_counts_its_rows_and_says_why_it_may_be_old() {
        assert!(copy_row("acme", "b", &Replica::default(), false, 10_000).is_none(), "no copy");
        let r = copied(None);
        let row = copy_row("acme", "b", &r, false, 12_000).unwrap();
        assert_eq!((row.host.as_str(), row.agent_count, row.latency_ms), ("b", 2, 0), "not what the peer claims");
        assert_eq!(row.heard_unix_ms, Some(10_000));
        assert_eq!(row.as_of_unix_ms, Some(1_000));
        assert_eq!(row.roster_problem.as_deref(), Some("roster.yaml: bad"));
        assert!(!row.stale && row.detail.is_none());
        let suspect = copy_row("acme", "b", &r, true, 12_000).unwrap();
        assert!(suspect.stale);
        assert!(suspect.detail.as_deref().unwrap().starts_with("membership suspects"), "{:?}", suspect.detail);
        let behind = Replica { behind_since: Some(5_000), error: Some("refused".into()), ..copied(None) };
        let row = copy_row("acme", "b", &behind, false, 9_000).unwrap();
        assert!(row.stale);
        let d = row.detail.unwrap();
        assert!(d.contains("announced 4 s ago") && d.contains("(refused)"), "{d}");
        let both =
            copy_row("acme", "b", &Replica { behind_since: Some(5_000), ..copied(Some("tmux hung")) }, false, 9_000)
                .unwrap()
                .detail
                .unwrap();
        assert!(both.starts_with("tmux hung; a newer state"), "{both}");
        assert_eq!(
            copy_row("acme", "b", &copied(Some("tmux hung")), false, 9_000).unwrap().detail.as_deref(),
            Some("tmux hung")
        );
    }

    #[test]
    fn copied_rows_age_from_when_the_copy_was_taken() {
        let mut x = record("x");
        x.heartbeat.age_seconds = Some(3);
        let y = AgentRecord { idle_seconds: None, ..record("y") };
        let c = copied_rows(None, vec![x.clone(), y.clone()]).copy.unwrap();
        assert_eq!(copy_rows(&c, 10_999), [x, y], "as taken, within its first second");
        let rows = copy_rows(&c, 17_500);
        assert_eq!(rows[0].idle_seconds, Some(12), "5 s then, 7 s since");
        assert_eq!(rows[0].heartbeat.age_seconds, Some(10));
        assert_eq!(rows[1].idle_seconds, None);
        assert_eq!(rows[1].heartbeat.age_seconds, None);
        assert_eq!(copy_rows(&c, 5_000)[0].idle_seconds, Some(5), "a clock step back adds nothing");
    }

    #[test]
    fn the_shared_key_changes_with_what_peers_show_not_with_time() {
        let s = status(None);
        let r = record("x");
        let key = shared_key(&s, std::slice::from_ref(&r));
        let later = AgentRecord {
            idle_seconds: Some(99),
            heartbeat: fleet_core::heartbeat::HealthReport {
                age_seconds: Some(9),
                ts: Some("2026-12-02T07:00:00Z".into()),
                ..r.heartbeat.clone()
            },
            activity: fleet_core::activity::Activity { screen: "unchanged for 35 s".into(), ..r.activity.clone() },
            ..r.clone()
        };
        assert_eq!(key, shared_key(&s, std::slice::from_ref(&later)), "time passing and a beat on time");
        assert!(same_row(&r, &later) && same_row(&later, &r));
        let sick = AgentRecord {
            heartbeat: fleet_core::heartbeat::HealthReport {
                health: fleet_core::heartbeat::Health::Stale,
                ..r.heartbeat.clone()
            },
            ..r.clone()
        };
        assert_ne!(key, shared_key(&s, &[sick]), "a health change");
        let busy = AgentRecord {
            activity: fleet_core::activity::Activity {
                state: fleet_core::activity::State::Working,
                ..r.activity.clone()
            },
            ..r.clone()
        };
        assert_ne!(key, shared_key(&s, &[busy]), "an activity change");
        let died = AgentRecord { pane: fleet_core::record::PaneState::Dead, ..r.clone() };
        assert!(!same_row(&r, &died));
        assert_ne!(key, shared_key(&s, &[died]));
        assert_ne!(key, shared_key(&s, &[]), "an agent gone");
        let s2 = HostStatus { as_of_unix_ms: Some(99_999), ..s.clone() };
        assert_eq!(key, shared_key(&s2, std::slice::from_ref(&r)), "a newer probe time alone");
        for other in [
            HostStatus { state: fleet_core::record::HostState::Error, ..s.clone() },
            HostStatus { detail: Some("tmux hung".into()), ..s.clone() },
            HostStatus { roster_problem: None, ..s.clone() },
        ] {
            assert_ne!(key, shared_key(&other, std::slice::from_ref(&r)), "{other:?}");
        }
    }
}
