//! The executor's pace per kind of mutation (`ebs_snapper_core::pace::Pace`), on tokio's
//! clock: [`Paced::admit`] waits for a start's turn, and every attempt's answer is told to it
//! (by the executor's interceptor, retries included).

use std::sync::Mutex;

use ebs_snapper_core::pace::Pace;
use tokio::time::Instant;

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

    /// Waits for this start's turn.
    pub async fn admit(&self) {
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
