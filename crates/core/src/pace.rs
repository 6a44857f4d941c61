//! Pacing of one kind of mutation to EC2's token bucket for it (pure: time is given).
//!
//! EC2 gives each account, per region and per API, a bucket of request tokens refilled at a
//! fixed rate (mutating actions: 200, refilled at 5 per second); an empty bucket answers
//! `RequestLimitExceeded`. A run that fires at full concurrency empties it in seconds and then
//! spends its time in throttles and the SDK's backoff. So the starts of a run's mutations are
//! paced to the bucket it observes. Until the first throttle nothing is held back but by the
//! executor's concurrency (the bucket's burst is there to be used, and a small run is not slowed
//! at all). At a throttle (at most once a second: the requests already in flight are answered by
//! the same empty bucket) the rate is cut to 80% and to no more than the successes of the last
//! five seconds per second: an empty bucket lets through its refill rate, so that is the rate
//! to go at. Then it is raised by a tenth of a start per second per second, probing for more.
//! Held near the refill rate, the bucket stays near empty without overflowing: the run does as
//! much as the bucket allows, with about two throttles per hundred calls. The executor
//! (`ebs_snapper_aws::pace`) keeps one per kind of mutation and run.

use std::collections::VecDeque;
use std::time::Duration;

/// Never slower than this (one start every two seconds).
pub const MIN_RATE: f64 = 0.5;
/// Never faster than this; also the rate before the first throttle, which in effect leaves the
/// executor's concurrency as the only limit.
pub const MAX_RATE: f64 = 500.0;
/// The rate after a throttle, as a fraction of the rate before.
pub const CUT: f64 = 0.8;
/// After the first throttle: added to the rate per second without one.
pub const PROBE: f64 = 0.1;
/// Throttles this soon after a cut answer requests sent before it, and cut nothing more.
pub const SETTLE: Duration = Duration::from_secs(1);
/// The successes of this long before a throttle tell the rate the bucket lets through.
pub const WINDOW: Duration = Duration::from_secs(5);

/// The pace of one kind of mutation; times are since the pace began.
#[derive(Debug, Clone)]
pub struct Pace {
    /// Starts per second.
    rate: f64,
    /// When the next start may go.
    next: Duration,
    /// When the rate was last cut; `None` before the first throttle.
    cut_at: Option<Duration>,
    /// When the successes of the last [`WINDOW`] were answered.
    recent: VecDeque<Duration>,
    throttled: u64,
    answered: u64,
}

impl Default for Pace {
    fn default() -> Pace {
        Pace::new()
    }
}

impl Pace {
    pub fn new() -> Pace {
        Pace { rate: MAX_RATE, next: Duration::ZERO, cut_at: None, recent: VecDeque::new(), throttled: 0, answered: 0 }
    }

    /// Books the next start, asked for at `now`: when it may go.
    pub fn book(&mut self, now: Duration) -> Duration {
        let at = self.next.max(now);
        self.next = at + Duration::from_secs_f64(1.0 / self.rate);
        at
    }

    /// An attempt was answered at `now`: `throttled` when AWS refused it for its rate.
    pub fn answered(&mut self, now: Duration, throttled: bool) {
        self.answered += 1;
        while self.recent.front().is_some_and(|t| now.saturating_sub(*t) > WINDOW) {
            self.recent.pop_front();
        }
        if throttled {
            self.throttled += 1;
            if self.cut_at.is_none_or(|at| now.saturating_sub(at) >= SETTLE) {
                let observed = self.recent.len() as f64 / WINDOW.as_secs_f64();
                self.rate = (self.rate * CUT).min(observed).max(MIN_RATE);
                self.cut_at = Some(now);
                // The starts already booked at the old rate move back to the new one.
                self.next = self.next.max(now + Duration::from_secs_f64(1.0 / self.rate));
            }
            return;
        }
        self.recent.push_back(now);
        if self.cut_at.is_some() {
            self.rate = (self.rate + PROBE / self.rate).min(MAX_RATE);
        }
    }

    /// Starts per second now.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Attempts answered, and of those throttled.
    pub fn counts(&self) -> (u64, u64) {
        (self.answered, self.throttled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paces `n` starts against a token bucket (size, refill per second) as EC2 keeps one, in
    /// simulated time, each answered at once; returns (seconds taken, throttled answers). A
    /// throttled start is tried again at its next turn, as a retry would be.
    fn run(n: u64, size: f64, refill: f64) -> (f64, u64) {
        let mut pace = Pace::new();
        let (mut tokens, mut last) = (size, Duration::ZERO);
        let mut done = 0;
        let mut now = Duration::ZERO;
        while done < n {
            now = pace.book(now);
            tokens = (tokens + refill * (now - last).as_secs_f64()).min(size);
            last = now;
            if tokens >= 1.0 {
                tokens -= 1.0;
                pace.answered(now, false);
                done += 1;
            } else {
                pace.answered(now, true);
            }
        }
        (now.as_secs_f64(), pace.counts().1)
    }

    #[test]
    fn a_long_run_goes_at_the_buckets_refill_rate_with_few_throttles() {
        for (n, size, refill) in
            [(10_000u64, 100.0, 5.0), (2_000, 200.0, 5.0), (30_000, 100.0, 5.0), (5_000, 100.0, 20.0)]
        {
            let (secs, throttled) = run(n, size, refill);
            let bound = (n as f64 - size) / refill;
            assert!(secs >= bound * 0.999, "{n}: faster than the bucket allows? {secs}");
            assert!(secs <= 1.05 * bound, "{n}: {secs} s against a bound of {bound} s");
            // The way down from the burst costs a couple of hundred; then about 2 per 100.
            assert!(throttled <= 200 + n * 25 / 1000, "{n}: {throttled} throttles");
        }
    }

    /// As [`run`], with `in_flight` requests out at once, each answered `latency` after it
    /// started (it reaches the bucket half-way): the pace learns of a throttle only after the
    /// starts it booked meanwhile went out, as the executor does with eight in flight.
    fn run_concurrent(n: u64, size: f64, refill: f64, in_flight: usize, latency: Duration) -> (f64, u64) {
        let mut pace = Pace::new();
        let (mut tokens, mut last) = (size, Duration::ZERO);
        let (mut done, mut now) = (0u64, Duration::ZERO);
        let mut out: Vec<(Duration, bool)> = Vec::new();
        while done < n {
            while out.len() < in_flight && done + (out.len() as u64) < n {
                let start = pace.book(now);
                let arrives = start + latency / 2;
                tokens = (tokens + refill * arrives.saturating_sub(last).as_secs_f64()).min(size);
                last = last.max(arrives);
                let ok = tokens >= 1.0;
                if ok {
                    tokens -= 1.0;
                }
                out.push((start + latency, ok));
            }
            let first = (0..out.len()).min_by_key(|&i| out[i].0).unwrap();
            let (at, ok) = out.swap_remove(first);
            now = now.max(at);
            pace.answered(now, !ok);
            done += u64::from(ok);
        }
        (now.as_secs_f64(), pace.counts().1)
    }

    #[test]
    fn eight_in_flight_with_latency_still_go_at_the_refill_rate_with_few_throttles() {
        for (n, size, refill, latency_ms) in [
            (10_000u64, 100.0, 5.0, 200u64),
            (2_000, 200.0, 5.0, 50),
            (5_000, 100.0, 20.0, 200),
            (3_000, 100.0, 20.0, 500),
        ] {
            let (secs, throttled) = run_concurrent(n, size, refill, 8, Duration::from_millis(latency_ms));
            // The bucket's bound, or eight in flight's when that is lower (8 / 0.5 s = 16 a second).
            let bound = ((n as f64 - size) / refill).max(n as f64 * latency_ms as f64 / 1000.0 / 8.0);
            eprintln!("{n} at {refill}/s, {latency_ms} ms: {secs:.0} s (bound {bound:.0}), {throttled} throttles");
            assert!(secs >= bound * 0.999, "{n}: faster than the bucket allows? {secs}");
            assert!(secs <= 1.05 * bound + 5.0, "{n}, {latency_ms} ms: {secs} s against a bound of {bound} s");
            assert!(throttled <= 200 + n * 30 / 1000, "{n}, {latency_ms} ms: {throttled} throttles");
        }
    }

    #[test]
    fn an_unlimited_api_is_not_slowed() {
        // No throttle ever: nothing is held back (1,000 starts at the ceiling of 500 a second).
        let (secs, throttled) = run(1000, f64::INFINITY, 0.0);
        assert_eq!(throttled, 0);
        assert!(secs <= 2.0, "{secs}");
    }

    #[test]
    fn the_rate_is_cut_once_per_settle_time_and_never_below_the_minimum() {
        let mut pace = Pace::new();
        for k in 0..100 {
            pace.answered(Duration::from_millis(10 * k), false);
        }
        let before = pace.rate();
        pace.answered(Duration::from_secs(1), true);
        let after_one = pace.rate();
        // 100 successes in the window: 20 per second, below 80% of the rate reached.
        assert!((after_one - 20.0).abs() < 1e-9, "{before} -> {after_one}");
        pace.answered(Duration::from_millis(500), true); // the same burst: no second cut
        assert_eq!(pace.rate(), after_one);
        for k in 1..=40 {
            pace.answered(SETTLE * k, true);
        }
        assert_eq!(pace.rate(), MIN_RATE);
    }

    #[test]
    fn a_cut_moves_the_booked_starts_back() {
        let mut pace = Pace::new();
        let first = pace.book(Duration::ZERO);
        assert_eq!(first, Duration::ZERO);
        pace.answered(Duration::ZERO, true);
        let next = pace.book(Duration::ZERO);
        // No success seen: the rate falls to the minimum at once.
        assert!(next >= Duration::from_secs_f64(1.0 / MIN_RATE) - Duration::from_micros(1), "{next:?}");
    }
}
