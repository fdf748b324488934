//! Giving freed memory back to the system.
//!
//! glibc's malloc keeps what a burst freed in its arenas and returns only the
//! top of each heap: a mass start (a connection to and from nearly every
//! member for a few seconds) or a listing of a large mesh leaves a node at its
//! peak size long after the memory is free (measured: 20 MB anonymous at 100
//! members with a 9.5 MB live heap; docs/benchmarks.md, "Scale"). Every
//! [`TRIM_EVERY`] the node asks glibc for the free pages back (`malloc_trim`,
//! which `madvise`s them away), on a blocking thread: it takes each arena's
//! lock in turn.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often freed memory is given back: after a burst, within this. A trim
/// costs about 0.2 ms on a node of a 100-node mesh (perf: 0.23 % of the
/// node's CPU; `took_us` in the debug log).
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Give freed memory back every [`TRIM_EVERY`] until `cancel`.
pub async fn give_back(cancel: CancellationToken) {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {
                let t = std::time::Instant::now();
                let released = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
                tracing::debug!(released, took_us = t.elapsed().as_micros() as u64, "gave freed memory back");
            }
        }
    }
}

/// `malloc_trim(0)`: true when glibc gave pages back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() -> bool {
    // SAFETY: malloc_trim takes no pointer and touches only glibc's own free
    // lists, under the arena locks every other malloc call takes too.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Other C libraries' allocators (musl) have no such call.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}
