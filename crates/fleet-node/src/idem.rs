//! Idempotency keys of sends: a retried send with the same key is typed once.
//! Concurrent calls with one key wait for the first; the receipt is kept for
//! the TTL. A failed call (an error, not a receipt) is not remembered, so it
//! can be retried.

use fleet_proto::v1::SendReceipt;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;
use tonic::Status;

type Cell = Arc<OnceCell<SendReceipt>>;

pub struct Idempotency {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Cell)>>,
}

impl Idempotency {
    pub fn new(ttl: Duration) -> Self {
        Idempotency { ttl, entries: Mutex::new(HashMap::new()) }
    }

    /// Run `send` once per `key` within the TTL; returns the receipt and
    /// whether it is a duplicate (answered from the cache).
    pub async fn once<F>(&self, key: &str, send: F) -> Result<(SendReceipt, bool), Status>
    where
        F: Future<Output = Result<SendReceipt, Status>>,
    {
        if key.is_empty() {
            return send.await.map(|r| (r, false));
        }
        let cell: Cell = {
            let mut entries = self.entries.lock().expect("idempotency map");
            let now = Instant::now();
            entries.retain(|_, (at, _)| now.duration_since(*at) < self.ttl);
            entries.entry(key.to_string()).or_insert_with(|| (now, Arc::new(OnceCell::new()))).1.clone()
        };
        let mut ran = false;
        let receipt = cell
            .get_or_try_init(|| {
                ran = true;
                send
            })
            .await?
            .clone();
        Ok((receipt, !ran))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn one_key_runs_once_even_concurrently() {
        let idem = Arc::new(Idempotency::new(Duration::from_secs(60)));
        let runs = Arc::new(AtomicU32::new(0));
        let call = |idem: Arc<Idempotency>, runs: Arc<AtomicU32>, key: &'static str| async move {
            idem.once(key, async {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(SendReceipt { agent: "a".into(), ..Default::default() })
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
    async fn errors_are_not_remembered_and_entries_expire() {
        let idem = Idempotency::new(Duration::from_millis(30));
        assert!(idem.once("k", async { Err(Status::internal("x")) }).await.is_err());
        let (_, dup) = idem.once("k", async { Ok(SendReceipt::default()) }).await.unwrap();
        assert!(!dup);
        let (_, dup) = idem.once("k", async { Ok(SendReceipt::default()) }).await.unwrap();
        assert!(dup);
        tokio::time::sleep(Duration::from_millis(40)).await;
        let (_, dup) = idem.once("k", async { Ok(SendReceipt::default()) }).await.unwrap();
        assert!(!dup, "expired");
    }
}
