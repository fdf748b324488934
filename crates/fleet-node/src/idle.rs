//! `fleet send --when-idle`: type only once the agent is idle, never into a
//! turn in progress.
//!
//! Sends with `--when-idle` to one agent take turns. Each waits until the
//! live view shows the agent `idle` in a view that is newer than the turn
//! before it typed (a probe that ended after it, or an activity change after
//! it), so a second message never goes in on the strength of the idle state
//! that the first one just ended.

use fleet_core::activity::{Activity, Source, State};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What a when-idle send does with an agent's activity as it is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ready {
    /// Type now.
    Go,
    /// Wait for a change; why (for the receipt if the wait runs out).
    Wait(String),
    /// Give up now: waiting cannot help; why.
    Refuse(String),
}

/// The decision. `fresh`: the activity was seen after this node last typed
/// into the agent for a when-idle send.
pub fn ready(a: &Activity, fresh: bool) -> Ready {
    match a.state {
        State::Idle if fresh => Ready::Go,
        State::Idle => Ready::Wait("it is idle, but not yet seen after the last when-idle message".into()),
        State::Working | State::Waiting => Ready::Wait(format!("it is {} ({})", a.state, a.detail)),
        State::Exited => Ready::Refuse(format!("it has exited ({})", a.detail)),
        State::Unknown if a.source == Source::Process => Ready::Refuse(format!(
            "its activity cannot be known ({}): add screen rules or hooks for its runtime (`fleet explain`), or send without --when-idle",
            a.detail
        )),
        State::Unknown => Ready::Wait(format!("its activity is unknown ({})", a.detail)),
    }
}

/// Was `a` seen after `last_typed_ms` (0: never)? In a view that ended
/// after it, or a change of state after it.
pub fn fresh(a: &Activity, view_as_of_ms: Option<i64>, last_typed_ms: i64) -> bool {
    last_typed_ms == 0 || view_as_of_ms.is_some_and(|t| t > last_typed_ms) || a.since_unix_ms > last_typed_ms
}

/// One turn per agent for when-idle sends; the lock holds when its holder
/// last typed (Unix ms, 0: never).
#[derive(Default)]
pub struct IdleTurns {
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<i64>>>>,
}

impl IdleTurns {
    pub fn turn(&self, agent: &str) -> Arc<tokio::sync::Mutex<i64>> {
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        turns.retain(|_, t| Arc::strong_count(t) > 1);
        turns.entry(agent.to_string()).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(state: State, source: Source, since: i64) -> Activity {
        Activity { state, source, since_unix_ms: since, ..Activity::unknown("the rule", 0) }
    }

    #[test]
    fn only_a_fresh_idle_goes_and_what_cannot_change_is_refused() {
        assert_eq!(ready(&act(State::Idle, Source::Screen, 1), true), Ready::Go);
        assert!(
            matches!(ready(&act(State::Idle, Source::Hook, 1), false), Ready::Wait(w) if w.contains("not yet seen"))
        );
        for s in [State::Working, State::Waiting] {
            assert_eq!(ready(&act(s, Source::Hook, 1), true), Ready::Wait(format!("it is {s} (the rule)")));
        }
        assert!(
            matches!(ready(&act(State::Exited, Source::Process, 1), true), Ready::Refuse(r) if r.contains("exited"))
        );
        assert!(
            matches!(ready(&act(State::Unknown, Source::Process, 1), true), Ready::Refuse(r) if r.contains("cannot be known"))
        );
        assert!(
            matches!(ready(&act(State::Unknown, Source::Screen, 1), true), Ready::Wait(w) if w.contains("unknown"))
        );
    }

    #[test]
    fn fresh_means_seen_after_the_last_typing() {
        let a = act(State::Idle, Source::Screen, 100);
        assert!(fresh(&a, None, 0), "never typed");
        assert!(!fresh(&a, Some(200), 200), "a view that ended when we typed is not after it");
        assert!(fresh(&a, Some(201), 200), "a probe that ended after");
        assert!(!fresh(&a, None, 200));
        assert!(fresh(&act(State::Idle, Source::Hook, 201), Some(150), 200), "a change after");
        assert!(!fresh(&act(State::Idle, Source::Hook, 200), Some(150), 200));
    }

    #[test]
    fn turns_are_per_agent_and_forgotten_when_unused() {
        let t = IdleTurns::default();
        let a = t.turn("a");
        assert!(Arc::ptr_eq(&a, &t.turn("a")));
        assert!(!Arc::ptr_eq(&a, &t.turn("b")));
        drop(a);
        let _ = t.turn("c");
        assert_eq!(t.turns.lock().unwrap().len(), 1, "unused turns are dropped");
    }
}
