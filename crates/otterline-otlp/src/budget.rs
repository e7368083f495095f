//! The decode-memory budget: what decoding requests may hold at once, reserved for each
//! request before it is decoded.
//!
//! Decoding multiplies memory, and by how much depends on the content, not the size: an
//! empty span is two protobuf bytes and a few hundred decoded. So a request reserves a
//! share and the decoder counts what it allocates against it (`pdata::meter`):
//! - protobuf: `body × PROTOBUF_FACTOR` first, which holds every ordinary request (they
//!   decode to 3–6× their size); a request that needs more, or that needs prost's decoder,
//!   is measured exactly from its bytes ([`crate::footprint`]), its share grown to that, and
//!   decoded again ([`decode_protobuf`]). Measuring every request first would cost a third
//!   of the receiver's CPU; this costs it only for the unusual ones.
//! - OTLP/JSON: `body × JSON_FACTOR`, which its parser and converter may not pass
//!   (`pdata::json::decode_within`).
//!
//! A request waits up to [`WAIT`] for its share, then gets a retryable refusal, never
//! decoded; one that needs more than the whole budget is refused for good (HTTP 413, gRPC
//! `RESOURCE_EXHAUSTED`): it would not fit at any time. So concurrent worst-case requests
//! cannot add up past the budget.

use std::fmt;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

/// What a protobuf request reserves per body byte before it is decoded (the body
/// included); ordinary requests decode to 3–6× their size.
pub const PROTOBUF_FACTOR: usize = 8;

/// Most bytes an OTLP/JSON request may take per body byte while decoding, the body
/// included (its parsed document and the decoded request together).
pub const JSON_FACTOR: usize = 13;
/// What any request may take (a small request's decoded form is mostly fixed overhead).
pub const MIN_SHARE: usize = 64 * 1024;

/// How long a request waits for budget before it is refused (retryable).
pub const WAIT: Duration = Duration::from_secs(2);

/// Why a request is not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The budget stays in use by other requests: retry shortly.
    Busy,
    /// It would need more than the whole budget: send smaller requests.
    TooLarge { need: usize, total: usize },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Busy => f.write_str(
                "the memory for decoding requests (decode_memory_mib) is in use by other large requests; retry shortly",
            ),
            Refusal::TooLarge { need, total } => write!(
                f,
                "decoding this request would take {} MiB, more than decode_memory_mib ({} MiB) allows; \
                 send fewer items per request",
                need.div_ceil(1 << 20),
                total >> 20
            ),
        }
    }
}

pub struct DecodeBudget {
    sem: Semaphore,
    kib: u32,
}

impl DecodeBudget {
    pub fn new(mib: u64) -> DecodeBudget {
        let kib = (mib.saturating_mul(1024)).clamp(1, u32::MAX as u64 / 2) as u32;
        DecodeBudget { sem: Semaphore::new(kib as usize), kib }
    }

    /// The whole budget in bytes.
    pub fn total(&self) -> usize {
        self.kib as usize * 1024
    }

    /// What decoding an OTLP/JSON body of `len` bytes may take, the body included: at
    /// least [`MIN_SHARE`], at most the whole budget (the decoder stops there).
    pub fn json_need(&self, len: usize) -> usize {
        len.saturating_mul(JSON_FACTOR).max(MIN_SHARE).min(self.total())
    }

    /// What a protobuf request of `len` bytes reserves first (see the module docs).
    pub fn protobuf_guess(&self, len: usize) -> usize {
        len.saturating_mul(PROTOBUF_FACTOR).max(MIN_SHARE).min(self.total())
    }

    fn kib_of(&self, need: usize) -> Result<u32, Refusal> {
        if need > self.total() {
            return Err(Refusal::TooLarge { need, total: self.total() });
        }
        Ok(need.div_ceil(1024).max(1) as u32)
    }

    /// Reserves `need` bytes without waiting (for work that may be skipped, such as
    /// counting the items of a refused request).
    pub fn try_reserve(&self, need: usize) -> Option<SemaphorePermit<'_>> {
        self.sem.try_acquire_many(self.kib_of(need).ok()?).ok()
    }

    /// Reserves `need` bytes, counting what `held` (an earlier reservation of the same
    /// request) already holds; waits up to [`WAIT`].
    pub async fn reserve<'a>(
        &'a self,
        held: Option<SemaphorePermit<'a>>,
        need: usize,
    ) -> Result<SemaphorePermit<'a>, Refusal> {
        self.reserve_within(held, need, WAIT).await
    }

    async fn reserve_within<'a>(
        &'a self,
        held: Option<SemaphorePermit<'a>>,
        need: usize,
        wait: Duration,
    ) -> Result<SemaphorePermit<'a>, Refusal> {
        let need = self.kib_of(need)?;
        let have = held.as_ref().map_or(0, |p| p.num_permits() as u32);
        let Some(more) = need.checked_sub(have).filter(|&m| m > 0) else {
            return held.ok_or(Refusal::Busy);
        };
        let more = match self.sem.try_acquire_many(more) {
            Ok(p) => p,
            Err(_) => match tokio::time::timeout(wait, self.sem.acquire_many(more)).await {
                Ok(Ok(p)) => p,
                _ => return Err(Refusal::Busy),
            },
        };
        Ok(match held {
            Some(mut p) => {
                p.merge(more);
                p
            }
            None => more,
        })
    }
}

/// Decodes a protobuf request of `signal` within the budget (see the module docs), growing
/// `held` (what the request already holds, its body's bytes) as needed; the budget is
/// given back when it returns. `Err` is a refusal; `Ok(Err)` a malformed request.
pub async fn decode_protobuf<'a>(
    budget: &'a DecodeBudget,
    held: Option<SemaphorePermit<'a>>,
    signal: otterline_core::Signal,
    bytes: &[u8],
) -> Result<Result<otterline_core::Batch, prost::DecodeError>, Refusal> {
    let guess = budget.protobuf_guess(bytes.len());
    let share = budget.reserve(held, guess).await?;
    if let Some(batch) = crate::decode::batch_within(signal, bytes, guess.saturating_sub(bytes.len())) {
        return Ok(Ok(batch));
    }
    let need = crate::footprint::protobuf(signal, bytes);
    let _share = budget.reserve(Some(share), need).await?;
    Ok(crate::decode::batch(signal, bytes))
}

/// Decodes a protobuf request now if its first share is free and enough (for counting the
/// items of a refused request: never waits, never measures).
pub fn decode_protobuf_now(
    budget: &DecodeBudget,
    signal: otterline_core::Signal,
    bytes: &[u8],
) -> Option<otterline_core::Batch> {
    let guess = budget.protobuf_guess(bytes.len());
    let _share = budget.try_reserve(guess)?;
    crate::decode::batch_within(signal, bytes, guess.saturating_sub(bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_reservations_never_exceed_the_budget() {
        let b = DecodeBudget::new(100);
        let wait = Duration::from_millis(20);
        let mib = 1 << 20;
        let first = b.reserve_within(None, 60 * mib, wait).await;
        assert!(first.is_ok());
        assert_eq!(b.reserve_within(None, 60 * mib, wait).await.err(), Some(Refusal::Busy), "over the budget");
        // Small requests still pass beside it.
        assert!(b.reserve_within(None, 500_000, wait).await.is_ok());
        // Growing a reservation counts what it holds.
        let grown = b.reserve_within(first.ok(), 90 * mib, wait).await.unwrap();
        assert_eq!(grown.num_permits(), 90 * 1024);
        drop(grown);
        // More than the whole budget: never.
        let e = b.reserve_within(None, 101 * mib, wait).await.unwrap_err();
        assert_eq!(e, Refusal::TooLarge { need: 101 * mib, total: 100 * mib });
        assert!(e.to_string().contains("101 MiB, more than decode_memory_mib (100 MiB)"), "{e}");
        // JSON: at most the whole budget (the decoder enforces it).
        assert_eq!(b.json_need(50_000_000), 100 * mib);
        assert!(b.try_reserve(b.json_need(50_000_000)).is_some());
    }
}
