//! The decode-memory budget: what decoding requests may hold at once, reserved from each
//! request's size before it is decoded.
//!
//! Decoding multiplies memory: an OTLP value of two protobuf bytes (`0a 00`) becomes a
//! 32-byte `AnyValue`, and OTLP/JSON passes through a parsed tree first. Each request
//! reserves `body × factor` (its worst case, at most the whole budget, so that any request
//! the body limit admits can be decoded alone) and waits up to [`WAIT`] for that much to be
//! free; a request that cannot get it is refused with a retryable error, never decoded. So
//! concurrent worst-case requests cannot add up past the budget.

use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

/// Worst-case bytes held per body byte while decoding, the body itself included: protobuf
/// (`0a 00` → a 32-byte `AnyValue`: 16×) and OTLP/JSON (measured: an 18 MB request of small
/// array values peaks at about 10.5×).
pub const PROTOBUF_FACTOR: usize = 17;
pub const JSON_FACTOR: usize = 13;

/// The retryable refusal when the budget stays in use.
pub const BUSY: &str =
    "the memory for decoding requests (decode_memory_mib) is in use by other large requests; retry shortly";

/// How long a request waits for budget before it is refused (retryable).
pub const WAIT: Duration = Duration::from_secs(2);

pub struct DecodeBudget {
    sem: Semaphore,
    kib: u32,
}

impl DecodeBudget {
    pub fn new(mib: u64) -> DecodeBudget {
        let kib = (mib.saturating_mul(1024)).clamp(1, u32::MAX as u64 / 2) as u32;
        DecodeBudget { sem: Semaphore::new(kib as usize), kib }
    }

    /// The KiB decoding `len` body bytes may take, at most the whole budget.
    pub fn need_kib(&self, len: usize, factor: usize) -> u32 {
        (len.saturating_mul(factor) / 1024).clamp(1, self.kib as usize) as u32
    }

    /// Reserves what decoding `len` bytes may take; `None` when it is not free within [`WAIT`].
    /// Reserves without waiting (for work that may be skipped, such as counting the items of
    /// a refused request).
    pub fn try_reserve(&self, len: usize, factor: usize) -> Option<SemaphorePermit<'_>> {
        self.sem.try_acquire_many(self.need_kib(len, factor)).ok()
    }

    pub async fn reserve(&self, len: usize, factor: usize) -> Option<SemaphorePermit<'_>> {
        self.reserve_within(len, factor, WAIT).await
    }

    async fn reserve_within(&self, len: usize, factor: usize, wait: Duration) -> Option<SemaphorePermit<'_>> {
        let need = self.need_kib(len, factor);
        match self.sem.try_acquire_many(need) {
            Ok(p) => Some(p),
            Err(_) => tokio::time::timeout(wait, self.sem.acquire_many(need)).await.ok()?.ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_reservations_never_exceed_the_budget() {
        let b = DecodeBudget::new(100);
        let wait = Duration::from_millis(20);
        // 5 MB of JSON may take 60 MB: one fits, a second waits, then is refused.
        let first = b.reserve_within(5_000_000, JSON_FACTOR, wait).await;
        assert!(first.is_some());
        assert!(b.reserve_within(5_000_000, JSON_FACTOR, wait).await.is_none(), "over the budget: refused");
        // Small requests still pass beside it.
        assert!(b.reserve_within(40_000, PROTOBUF_FACTOR, wait).await.is_some());
        drop(first);
        // A request bigger than the whole budget is decoded alone.
        let huge = b.reserve_within(50_000_000, JSON_FACTOR, wait).await;
        assert!(huge.is_some());
        assert_eq!(b.need_kib(50_000_000, JSON_FACTOR), 100 * 1024);
    }
}
