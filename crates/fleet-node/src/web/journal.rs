//! The event stream numbered for Server-Sent Events: every event of this host and of the
//! peers this node follows gets the id `<generation>-<seq>` (the node's generation changes on
//! restart), and the last [`super::JOURNAL`] are kept, so a browser that reconnects with
//! `Last-Event-ID` gets what it missed, or is told honestly that it cannot.
//!
//! Numbering starts with the first browser stream ([`Journal::arm`]): only a browser that
//! had a stream can come back with an id, so a node no browser watches keeps no events
//! (at 100 members a mass start's rows alone filled the journal: 0.8 MB of JSON kept for
//! nobody).

use crate::service::Node;
use fleet_core::event::{Event, EventKind};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// One numbered event, already in its JSON form.
#[derive(Debug)]
pub struct Entry {
    pub seq: u64,
    pub host: String,
    /// The SSE event name: `beat`, `health_change`, `activity_change`, `host_up`, ...
    pub name: &'static str,
    pub json: String,
}

#[derive(Clone)]
pub struct Journal {
    pub generation: u64,
    inner: Arc<Mutex<Inner>>,
    pub tx: broadcast::Sender<Arc<Entry>>,
}

struct Inner {
    /// A browser stream has begun: events are numbered and kept from then on.
    armed: bool,
    next: u64,
    kept: VecDeque<Arc<Entry>>,
}

/// Where a reconnecting browser stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Resume {
    /// No `Last-Event-ID`: a snapshot, then live events.
    Fresh,
    /// The events after its last one, all still kept.
    Replay(Vec<Arc<Entry>>),
    /// Its last event is no longer kept, or comes from before a restart: why, and a snapshot follows.
    Gone { dropped: Option<u64>, reason: String },
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}
impl Eq for Entry {}

impl Journal {
    pub fn new(generation: u64) -> Journal {
        let (tx, _) = broadcast::channel(super::JOURNAL);
        Journal { generation, inner: Arc::new(Mutex::new(Inner { armed: false, next: 1, kept: VecDeque::new() })), tx }
    }

    /// The id of an event: `<generation in hex>-<seq>`.
    pub fn id(&self, seq: u64) -> String {
        format!("{:x}-{seq}", self.generation)
    }

    /// The last number given (0: none yet).
    pub fn last(&self) -> u64 {
        self.inner.lock().expect("journal").next - 1
    }

    /// Number and keep events from now on (a browser stream begins).
    pub fn arm(&self) {
        self.inner.lock().expect("journal").armed = true;
    }

    /// Number `e`, keep it, and tell the live streams; nothing before [`Journal::arm`].
    pub fn push(&self, e: &Event) {
        if !self.inner.lock().expect("journal").armed {
            return;
        }
        let json = serde_json::to_string(e).expect("events serialize");
        let entry = {
            let mut inner = self.inner.lock().expect("journal");
            let entry = Arc::new(Entry { seq: inner.next, host: e.host.clone(), name: e.short(), json });
            inner.next += 1;
            if inner.kept.len() == super::JOURNAL {
                inner.kept.pop_front();
            }
            inner.kept.push_back(entry.clone());
            entry
        };
        let _ = self.tx.send(entry);
    }

    /// What a browser whose last event was `last_id` gets.
    pub fn resume(&self, last_id: Option<&str>) -> Resume {
        let Some(id) = last_id.map(str::trim).filter(|s| !s.is_empty()) else { return Resume::Fresh };
        let parsed =
            id.split_once('-').and_then(|(g, s)| Some((u64::from_str_radix(g, 16).ok()?, s.parse::<u64>().ok()?)));
        let Some((generation, seq)) = parsed else {
            return Resume::Gone {
                dropped: None,
                reason: format!("Last-Event-ID {id:?} is not an event id of this node"),
            };
        };
        if generation != self.generation {
            return Resume::Gone { dropped: None, reason: format!("the node restarted since event {id}") };
        }
        let inner = self.inner.lock().expect("journal");
        if seq >= inner.next {
            return Resume::Gone { dropped: None, reason: format!("event {id} was never sent") };
        }
        let oldest = inner.kept.front().map_or(inner.next, |e| e.seq);
        if seq + 1 < oldest {
            return Resume::Gone {
                dropped: Some(oldest - seq - 1),
                reason: format!("event {id} is older than the last {} this node keeps", super::JOURNAL),
            };
        }
        Resume::Replay(inner.kept.iter().filter(|e| e.seq > seq).cloned().collect())
    }
}

/// Number every event of this host and of the peers, until `cancel`.
pub async fn follow(journal: Journal, node: Arc<Node>, cancel: CancellationToken) {
    let mut local = node.live.events.subscribe();
    let mut remote = node.peers.events.subscribe();
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => return,
            e = local.recv() => e,
            e = remote.recv() => e,
        };
        match next {
            Ok(e) => journal.push(&e),
            Err(broadcast::error::RecvError::Lagged(dropped)) => journal.push(&crate::live::host_event(
                node.info.tenant.as_str(),
                node.info.host.as_str(),
                EventKind::Lagged { dropped },
            )),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(host: &str) -> Event {
        crate::live::host_event("acme", host, EventKind::HostUp { address: "x".into() })
    }

    #[test]
    fn resume_replays_what_is_kept_and_says_when_it_cannot() {
        let j = Journal::new(0xab);
        assert_eq!(j.resume(None), Resume::Fresh);
        // Before a browser stream: nothing numbered, nothing kept.
        j.push(&beat("h1"));
        assert_eq!((j.last(), j.inner.lock().unwrap().kept.len()), (0, 0));
        assert!(matches!(j.resume(Some("ab-1")), Resume::Gone { .. }));
        j.arm();
        for _ in 0..super::super::JOURNAL + 10 {
            j.push(&beat("h1"));
        }
        let last = j.last();
        assert_eq!(last, super::super::JOURNAL as u64 + 10);
        let Resume::Replay(v) = j.resume(Some(&j.id(last - 3))) else { panic!() };
        assert_eq!(v.iter().map(|e| e.seq).collect::<Vec<_>>(), [last - 2, last - 1, last]);
        assert_eq!(j.resume(Some(&j.id(last))), Resume::Replay(vec![]));
        // The oldest kept is 11: after 10, nothing is missing; after 5, 5 are.
        assert_eq!(j.resume(Some("ab-10")), Resume::Replay(j.inner.lock().unwrap().kept.iter().cloned().collect()));
        let Resume::Gone { dropped, .. } = j.resume(Some("ab-5")) else { panic!() };
        assert_eq!(dropped, Some(5));
        let Resume::Gone { reason, .. } = j.resume(Some("ac-5")) else { panic!() };
        assert!(reason.contains("restarted"), "{reason}");
        assert!(matches!(j.resume(Some("nonsense")), Resume::Gone { .. }));
        assert!(matches!(j.resume(Some(&j.id(last + 1))), Resume::Gone { .. }));
    }
}
