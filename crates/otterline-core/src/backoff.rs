//! Exponential backoff with jitter, the one retry policy shape used by the engine (retrying
//! an exporter), the forwarding exporters (`retry_on_failure`, the Collector's keys) and the
//! alert channels: `initial`, ×`multiplier` per attempt up to `max`, a uniform jitter of
//! ±`randomization_factor`, and an optional `max_elapsed` after which it gives up.

use std::time::{Duration, Instant};

/// The shape of a backoff.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
    /// Each wait is drawn uniformly from `[1 − f, 1 + f]` × the interval (0: no jitter).
    pub randomization_factor: f64,
    /// Give up when the next wait would end later than this after the first attempt
    /// (zero: never give up).
    pub max_elapsed: Duration,
}

/// One retry sequence: ask [`Backoff::next_wait`] after each failed attempt.
#[derive(Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    interval: Duration,
    started: Instant,
    jitter: Jitter,
}

impl Backoff {
    /// Starts a sequence now.
    pub fn new(policy: BackoffPolicy) -> Backoff {
        Backoff { interval: policy.initial, policy, started: Instant::now(), jitter: Jitter::new() }
    }

    /// How long to wait before the next attempt, or `None` when `max_elapsed` would be
    /// passed. `hint` (a peer's `Retry-After`) replaces the drawn wait, but the interval
    /// still grows.
    pub fn next_wait(&mut self, hint: Option<Duration>) -> Option<Duration> {
        let p = &self.policy;
        let wait = hint.unwrap_or_else(|| self.jitter.apply(self.interval, p.randomization_factor));
        if !p.max_elapsed.is_zero() && self.started.elapsed() + wait > p.max_elapsed {
            return None;
        }
        self.interval = self.interval.mul_f64(p.multiplier.max(1.0)).min(p.max);
        Some(wait)
    }

    /// Time since the sequence started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Uniform jitter from a small xorshift generator (no shared state, no locking).
#[derive(Debug)]
struct Jitter(u64);

impl Jitter {
    fn new() -> Jitter {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded randomly per process and per instance.
        let seed = std::collections::hash_map::RandomState::new().build_hasher().finish();
        Jitter(seed | 1)
    }

    fn next_unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `d` × a factor drawn from [1 − f, 1 + f].
    fn apply(&mut self, d: Duration, f: f64) -> Duration {
        if f <= 0.0 {
            return d;
        }
        d.mul_f64(1.0 - f + 2.0 * f * self.next_unit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
            multiplier: 2.0,
            randomization_factor: 0.0,
            max_elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn grows_by_the_multiplier_up_to_max() {
        let mut b = Backoff::new(policy());
        let waits: Vec<u64> = (0..5).map(|_| b.next_wait(None).unwrap().as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
    }

    #[test]
    fn a_hint_replaces_the_wait_and_max_elapsed_gives_up() {
        let mut b = Backoff::new(BackoffPolicy { max_elapsed: Duration::from_millis(300), ..policy() });
        assert_eq!(b.next_wait(Some(Duration::from_millis(7))), Some(Duration::from_millis(7)));
        assert_eq!(b.next_wait(None), Some(Duration::from_millis(200)));
        assert_eq!(b.next_wait(Some(Duration::from_secs(1))), None);
    }

    #[test]
    fn jitter_stays_within_the_randomization_factor() {
        let mut j = Jitter::new();
        let d = Duration::from_millis(1000);
        let mut seen = (Duration::MAX, Duration::ZERO);
        for _ in 0..2000 {
            let w = j.apply(d, 0.5);
            assert!(w >= Duration::from_millis(500) && w <= Duration::from_millis(1500), "{w:?}");
            seen = (seen.0.min(w), seen.1.max(w));
        }
        // Spread over most of the range, not stuck at one value.
        assert!(seen.0 < Duration::from_millis(600) && seen.1 > Duration::from_millis(1400), "{seen:?}");
        assert_eq!(j.apply(d, 0.0), d);
    }
}
