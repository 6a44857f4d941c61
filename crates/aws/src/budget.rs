//! The time budget of a run: a Lambda worker must stop starting mutations when less than
//! max(60 s, 10% of its timeout) is left, so that it can finish in-flight work and hand the rest
//! to a continuation. The CLI runs without a deadline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub struct TimeBudget {
    /// The instant after which no new mutation may start; `None`: no limit.
    stop_at: Option<Instant>,
    /// While a region lease is held: the wall-clock time (ms since the epoch) until which it is
    /// safely ours, moved on by each renewal. No mutation starts after it, so a run whose lease
    /// could not be renewed never overlaps the run that took it over.
    lease_until: Option<Arc<AtomicU64>>,
    /// How long past `lease_until` a mutation may wait for a late renewal before it is deferred
    /// (still short of the lease's expiry).
    lease_grace: Duration,
}

/// Milliseconds since the epoch, now.
pub(crate) fn epoch_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl TimeBudget {
    pub fn unlimited() -> TimeBudget {
        TimeBudget { stop_at: None, lease_until: None, lease_grace: Duration::ZERO }
    }

    /// This budget, also bounded by a held lease: safe until `lease_until` (ms since the epoch,
    /// moved on by renewals), and a late renewal is waited for up to `grace`.
    pub fn with_lease(&self, lease_until: Arc<AtomicU64>, grace: Duration) -> TimeBudget {
        TimeBudget { stop_at: self.stop_at, lease_until: Some(lease_until), lease_grace: grace }
    }

    /// A budget ending `reserve` before `deadline`, where reserve = max(60 s, timeout / 10).
    pub fn until(deadline: Instant, timeout: Duration) -> TimeBudget {
        let reserve = Duration::from_secs(60).max(timeout / 10);
        TimeBudget {
            stop_at: Some(deadline.checked_sub(reserve).unwrap_or(deadline)),
            lease_until: None,
            lease_grace: Duration::ZERO,
        }
    }

    /// Time left before mutations must stop; `None`: no limit.
    pub fn remaining(&self) -> Option<Duration> {
        self.stop_at.map(|t| t.saturating_duration_since(Instant::now()))
    }

    /// Waits until a new mutation may start; false when it may not (time is up, or the lease was
    /// not renewed in time). A late lease renewal is waited for, up to the grace.
    pub async fn mutation_may_start(&self) -> bool {
        loop {
            if self.allows_mutation() {
                return true;
            }
            let Some(until) = &self.lease_until else { return false };
            let late = epoch_ms().saturating_sub(until.load(Ordering::Acquire));
            if self.stop_at.is_some_and(|t| Instant::now() >= t) || late >= self.lease_grace.as_millis() as u64 {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether a new mutation (create, delete, copy) may start now.
    pub fn allows_mutation(&self) -> bool {
        self.stop_at.is_none_or(|t| Instant::now() < t)
            && self.lease_until.as_ref().is_none_or(|until| epoch_ms() < until.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_is_at_least_a_minute_or_a_tenth() {
        let now = Instant::now();
        assert!(TimeBudget::unlimited().allows_mutation());
        // 15 minute timeout, 5 minutes left: reserve 90 s, still allowed.
        assert!(TimeBudget::until(now + Duration::from_secs(300), Duration::from_secs(900)).allows_mutation());
        // 15 minute timeout, 80 s left: reserve 90 s, not allowed.
        assert!(!TimeBudget::until(now + Duration::from_secs(80), Duration::from_secs(900)).allows_mutation());
        // 5 minute timeout, 50 s left: reserve 60 s, not allowed.
        assert!(!TimeBudget::until(now + Duration::from_secs(50), Duration::from_secs(300)).allows_mutation());
    }

    #[test]
    fn a_lease_that_ran_out_stops_mutations() {
        let until = Arc::new(AtomicU64::new(epoch_ms() + 60_000));
        let budget = TimeBudget::unlimited().with_lease(until.clone(), Duration::ZERO);
        assert!(budget.allows_mutation());
        until.store(epoch_ms().saturating_sub(1), Ordering::Release);
        assert!(!budget.allows_mutation());
        // Renewed: allowed again.
        until.store(epoch_ms() + 60_000, Ordering::Release);
        assert!(budget.allows_mutation());
    }
}
