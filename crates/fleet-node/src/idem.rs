//! Idempotency keys of sends: a retried send with the same key is typed once.
//!
//! The send runs as its own task, so it finishes (and its receipt is kept)
//! even when the call that started it is cut: a retry after a cut link waits
//! for, or reads, that same result instead of typing the text again.
//! Concurrent calls with one key share one run. A failed run (an error, not a
//! receipt) is forgotten, so it can be retried. Keys are scoped by the caller
//! and the target, kept for the TTL, and at most [`MAX_KEYS`] are held.

use fleet_proto::v1::SendReceipt;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tonic::Status;

/// The most keys remembered at once; the oldest go first.
pub const MAX_KEYS: usize = 10_000;

type Pending = Shared<BoxFuture<'static, Result<SendReceipt, Status>>>;

pub struct Idempotency {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Pending)>>,
}

impl Idempotency {
    pub fn new(ttl: Duration) -> Self {
        Idempotency { ttl, entries: Mutex::new(HashMap::new()) }
    }

    /// Run `send` once per `scope`+`key` within the TTL; returns the receipt
    /// and whether it is a duplicate. An empty key runs every time.
    pub async fn once<F>(&self, scope: &str, key: &str, send: F) -> Result<(SendReceipt, bool), Status>
    where
        F: Future<Output = Result<SendReceipt, Status>> + Send + 'static,
    {
        if key.is_empty() {
            return send.await.map(|r| (r, false));
        }
        let id = format!("{scope}\n{key}");
        let (pending, duplicate) = {
            let mut entries = self.entries.lock().expect("idempotency map");
            let now = Instant::now();
            // Equivalent mutant: `<` -> `<=` differs only for an entry exactly one TTL old.
            entries.retain(|_, (at, _)| now.duration_since(*at) < self.ttl);
            match entries.get(&id) {
                Some((_, p)) => (p.clone(), true),
                None => {
                    if entries.len() >= MAX_KEYS
                        && let Some(oldest) = entries.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone())
                    {
                        entries.remove(&oldest);
                    }
                    let task = tokio::spawn(send);
                    let p: Pending = async move {
                        task.await.unwrap_or_else(|e| Err(Status::internal(format!("send task failed: {e}"))))
                    }
                    .boxed()
                    .shared();
                    entries.insert(id.clone(), (now, p.clone()));
                    (p, false)
                }
            }
        };
        match pending.clone().await {
            Ok(r) => Ok((r, duplicate)),
            Err(e) => {
                let mut entries = self.entries.lock().expect("idempotency map");
                if entries.get(&id).is_some_and(|(_, p)| p.ptr_eq(&pending)) {
                    entries.remove(&id);
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn receipt() -> SendReceipt {
        SendReceipt { agent: "a".into(), ..Default::default() }
    }

    #[tokio::test]
    async fn one_key_runs_once_even_concurrently() {
        let idem = Arc::new(Idempotency::new(Duration::from_secs(60)));
        let runs = Arc::new(AtomicU32::new(0));
        let call = |idem: Arc<Idempotency>, runs: Arc<AtomicU32>, key: &'static str| async move {
            idem.once("op", key, async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(receipt())
            })
            .await
            .unwrap()
        };
        let (a, b) = tokio::join!(call(idem.clone(), runs.clone(), "k"), call(idem.clone(), runs.clone(), "k"));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(a.1 != b.1, "exactly one of the two is the duplicate");
        call(idem.clone(), runs.clone(), "other").await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_cut_call_still_completes_and_its_retry_is_a_duplicate() {
        let idem = Arc::new(Idempotency::new(Duration::from_secs(60)));
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let slow = async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            r.fetch_add(1, Ordering::SeqCst);
            Ok(receipt())
        };
        // The first caller gives up (its call was cut) before the send finishes.
        let first = tokio::time::timeout(Duration::from_millis(5), idem.once("op", "k", slow)).await;
        assert!(first.is_err());
        let r = runs.clone();
        let (_, dup) = idem
            .once("op", "k", async move {
                r.fetch_add(1, Ordering::SeqCst);
                Ok(receipt())
            })
            .await
            .unwrap();
        assert!(dup);
        assert_eq!(runs.load(Ordering::SeqCst), 1, "typed once");
    }

    /// Keys are kept side by side up to MAX_KEYS; past it the oldest goes.
    #[tokio::test]
    async fn keys_are_kept_until_the_cap_then_the_oldest_goes() {
        async fn duplicate(idem: &Idempotency, key: &str) -> bool {
            idem.once("op", key, async { Ok(receipt()) }).await.unwrap().1
        }
        let idem = Idempotency::new(Duration::from_secs(60));
        for i in 0..MAX_KEYS {
            assert!(!duplicate(&idem, &format!("k{i}")).await);
        }
        assert!(duplicate(&idem, "k0").await, "the first of MAX_KEYS keys is still remembered");
        assert!(!duplicate(&idem, "one more").await);
        assert!(!duplicate(&idem, "k0").await, "past the cap the oldest was forgotten");
        assert!(duplicate(&idem, &format!("k{}", MAX_KEYS - 1)).await, "the newest are kept");
    }

    #[tokio::test]
    async fn errors_are_not_remembered_keys_are_scoped_and_expire() {
        let idem = Idempotency::new(Duration::from_millis(30));
        assert!(idem.once("op", "k", async { Err(Status::internal("x")) }).await.is_err());
        let (_, dup) = idem.once("op", "k", async { Ok(receipt()) }).await.unwrap();
        assert!(!dup);
        let (_, dup) = idem.once("op", "k", async { Ok(receipt()) }).await.unwrap();
        assert!(dup);
        let (_, dup) = idem.once("another caller", "k", async { Ok(receipt()) }).await.unwrap();
        assert!(!dup, "the same key from another scope is another send");
        tokio::time::sleep(Duration::from_millis(40)).await;
        let (_, dup) = idem.once("op", "k", async { Ok(receipt()) }).await.unwrap();
        assert!(!dup, "expired");
    }
}
