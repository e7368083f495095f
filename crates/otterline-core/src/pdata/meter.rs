//! What a decoder allocates, counted against a limit while it decodes.
//!
//! A request's size says little about its decoded size (`0,` in a JSON array is a 32-byte
//! value, an empty span two protobuf bytes and a few hundred decoded), so a receiver
//! cannot know before decoding what a request will take. [`within`] runs a decode with a
//! limit: the OTLP/JSON parser and converter and the protobuf decoder of the `otlp`
//! receiver charge every vector they allocate (by its capacity) and every string they
//! copy, and fail as soon as the total passes the limit, before the memory is taken.
//! Outside [`within`] nothing is limited.
//!
//! The count is per thread (a decode is synchronous and runs on one thread) and costs one
//! thread-local read and write per allocation.

use std::cell::Cell;

thread_local! {
    /// Bytes the running decode may still allocate.
    static LEFT: Cell<usize> = const { Cell::new(usize::MAX) };
    static OVER: Cell<bool> = const { Cell::new(false) };
}

/// What an allocator adds to each allocation (header and rounding), roughly.
const ALLOC_OVERHEAD: usize = 16;

/// Runs `f` with at most `limit` bytes counted; returns its result and whether the limit
/// was passed (then `f` failed at that point).
pub fn within<T>(limit: usize, f: impl FnOnce() -> T) -> (T, bool) {
    let saved = (LEFT.get(), OVER.get());
    LEFT.set(limit);
    OVER.set(false);
    let out = f();
    let over = OVER.get();
    LEFT.set(saved.0);
    OVER.set(saved.1);
    (out, over)
}

/// Counts `bytes` more; `false` once the total passes the limit.
#[inline]
pub fn charge(bytes: usize) -> bool {
    // One `with` (inlined) rather than `get`/`set`, which are not inlined across crates.
    let within = LEFT.with(|left| {
        let l = left.get();
        left.set(l.saturating_sub(bytes));
        bytes <= l
    });
    if !within {
        OVER.with(|o| o.set(true));
    }
    within
}

#[inline]
fn refund(bytes: usize) {
    LEFT.with(|left| left.set(left.get().saturating_add(bytes)));
}

/// Counts a copied string or byte vector of `len` bytes.
#[inline]
pub fn charge_bytes(len: usize) -> bool {
    len == 0 || charge(len + ALLOC_OVERHEAD)
}

/// Counts `n` elements of `T` in a vector allocated at its final size.
#[inline]
pub fn charge_vec<T>(n: usize) -> bool {
    n == 0 || charge(n * std::mem::size_of::<T>() + ALLOC_OVERHEAD)
}

/// Pushes `x`, counting the vector's growth (by capacity, doubling as `Vec` does). While
/// a vector grows its old and new buffers both exist, so the new one must fit beside the
/// old before the old is given back.
#[inline]
pub fn push<T>(v: &mut Vec<T>, x: T) -> bool {
    if v.len() == v.capacity() {
        let old = v.capacity();
        if !charge_vec::<T>(2 * old.max(2)) {
            return false;
        }
        v.reserve_exact(old.max(4));
        refund(old * std::mem::size_of::<T>());
    }
    v.push(x);
    true
}

/// Gives back what `shrink_to_fit` frees.
pub fn shrink<T>(v: &mut Vec<T>) {
    let freed = (v.capacity() - v.len()) * std::mem::size_of::<T>();
    v.shrink_to_fit();
    refund(freed);
}

/// The message of a decode stopped by its limit.
pub const EXCEEDED_MESSAGE: &str = "decoding the request needs more memory than it may take";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_holds_only_inside_within_and_growth_is_counted_by_capacity() {
        assert!(charge(1 << 40), "no limit outside within");
        let ((), exceeded) = within(1000, || {
            let mut v: Vec<u64> = Vec::new();
            for i in 0..64 {
                assert!(push(&mut v, i));
            }
            // Grown to 64 elements of 8 bytes, plus overhead per growth.
            let used = 1000 - LEFT.get();
            assert!((512..=512 + 8 * ALLOC_OVERHEAD).contains(&used), "{used}");
            let mut w: Vec<u64> = Vec::new();
            let mut pushed = 0;
            while push(&mut w, 1) {
                pushed += 1;
            }
            assert!(pushed < 64, "{pushed}");
        });
        assert!(exceeded);
        let ((), exceeded) = within(100, || assert!(charge_bytes(50)));
        assert!(!exceeded);
    }
}
