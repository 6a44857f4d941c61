//! The executor's pace per kind of mutation (`ebs_snapper_core::pace::Pace`), on tokio's
//! clock: [`Paced::admit_within`] waits for a start's turn within the run's time budget, and
//! every attempt's answer is told to it (by the executor's interceptor, retries included).

use std::sync::Mutex;

use ebs_snapper_core::pace::Pace;
use tokio::time::Instant;

use crate::budget::TimeBudget;

#[derive(Debug)]
pub struct Paced {
    pace: Mutex<Pace>,
    origin: Instant,
}

impl Default for Paced {
    fn default() -> Paced {
        Paced::new()
    }
}

impl Paced {
    pub fn new() -> Paced {
        Paced { pace: Mutex::new(Pace::new()), origin: Instant::now() }
    }

    /// Waits for this start's turn and for the budget to allow it; whether it may start. Time
    /// can run out while the pace holds a start back: then the answer is no as soon as it does,
    /// not at the start's turn (a worker whose every remaining start first waited its turn
    /// answered long after its deadline).
    pub async fn admit_within(&self, budget: &TimeBudget) -> bool {
        if !budget.mutation_may_start().await {
            return false;
        }
        let turn = self.admit();
        match budget.remaining() {
            Some(left) => {
                if tokio::time::timeout(left, turn).await.is_err() {
                    return false;
                }
            }
            None => turn.await,
        }
        budget.mutation_may_start().await
    }

    /// Waits for this start's turn.
    async fn admit(&self) {
        let at = self.lock().book(self.origin.elapsed());
        tokio::time::sleep_until(self.origin + at).await;
    }

    /// An attempt was answered: `throttled` when AWS refused it for its rate.
    pub fn answered(&self, throttled: bool) {
        let now = self.origin.elapsed();
        self.lock().answered(now, throttled);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pace> {
        self.pace.lock().unwrap_or_else(|e| e.into_inner())
    }
}
