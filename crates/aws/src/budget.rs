//! The time budget of a run: a Lambda worker must stop starting mutations when less than
//! max(60 s, 10% of its timeout) is left, so that it can finish in-flight work and hand the rest
//! to a continuation. The CLI runs without a deadline.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct TimeBudget {
    /// The instant after which no new mutation may start; `None`: no limit.
    stop_at: Option<Instant>,
}

impl TimeBudget {
    pub fn unlimited() -> TimeBudget {
        TimeBudget { stop_at: None }
    }

    /// A budget ending `reserve` before `deadline`, where reserve = max(60 s, timeout / 10).
    pub fn until(deadline: Instant, timeout: Duration) -> TimeBudget {
        let reserve = Duration::from_secs(60).max(timeout / 10);
        TimeBudget { stop_at: Some(deadline.checked_sub(reserve).unwrap_or(deadline)) }
    }

    /// Time left before mutations must stop; `None`: no limit.
    pub fn remaining(&self) -> Option<Duration> {
        self.stop_at.map(|t| t.saturating_duration_since(Instant::now()))
    }

    /// Whether a new mutation (create, delete, copy) may start now.
    pub fn allows_mutation(&self) -> bool {
        self.stop_at.is_none_or(|t| Instant::now() < t)
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
}
