//! What the OTLP/JSON decoder allocates, counted against a limit while it decodes.
//!
//! A request's size says little about its decoded size (`0,` in an array is a 32-byte
//! value, `{}` in a span list a span of a few hundred bytes), so the receiver cannot know
//! before decoding what a request will take. [`within`] runs a decode with a limit: the
//! parser and the converter charge every vector they grow (by its capacity) and every
//! string they copy, and the decode fails as soon as the total passes the limit, before
//! the memory is taken. Outside [`within`] nothing is limited.
//!
//! The count is per thread: a decode is synchronous and runs on one thread.

use std::cell::Cell;

thread_local! {
    static USED: Cell<usize> = const { Cell::new(0) };
    static LIMIT: Cell<usize> = const { Cell::new(usize::MAX) };
    static EXCEEDED: Cell<bool> = const { Cell::new(false) };
}

/// What an allocator adds to each allocation (header and rounding), roughly.
const ALLOC_OVERHEAD: usize = 16;

/// Runs `f` with at most `limit` bytes counted; returns its result and whether the limit
/// was passed (then `f` failed at that point).
pub(super) fn within<T>(limit: usize, f: impl FnOnce() -> T) -> (T, bool) {
    let saved = (USED.get(), LIMIT.get(), EXCEEDED.get());
    USED.set(0);
    LIMIT.set(limit);
    EXCEEDED.set(false);
    let out = f();
    let exceeded = EXCEEDED.get();
    USED.set(saved.0);
    LIMIT.set(saved.1);
    EXCEEDED.set(saved.2);
    (out, exceeded)
}

/// Counts `bytes` more; `false` once the total passes the limit.
pub(super) fn charge(bytes: usize) -> bool {
    let used = USED.get().saturating_add(bytes);
    USED.set(used);
    if used > LIMIT.get() {
        EXCEEDED.set(true);
        return false;
    }
    true
}

/// Counts a copied string or byte vector of `len` bytes.
pub(super) fn charge_bytes(len: usize) -> bool {
    len == 0 || charge(len + ALLOC_OVERHEAD)
}

/// Counts `n` elements of `T` in a vector allocated at its final size.
pub(super) fn charge_vec<T>(n: usize) -> bool {
    n == 0 || charge(n * std::mem::size_of::<T>() + ALLOC_OVERHEAD)
}

/// Pushes `x`, counting the vector's growth (by capacity, doubling as `Vec` does). While
/// a vector grows its old and new buffers both exist, so the new one must fit beside the
/// old before the old is given back.
pub(super) fn push<T>(v: &mut Vec<T>, x: T) -> bool {
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

fn refund(bytes: usize) {
    USED.set(USED.get().saturating_sub(bytes));
}

/// Gives back what `shrink_to_fit` frees.
pub(super) fn shrink<T>(v: &mut Vec<T>) {
    let freed = (v.capacity() - v.len()) * std::mem::size_of::<T>();
    v.shrink_to_fit();
    refund(freed);
}

/// The message of a decode stopped by its limit.
pub(super) const EXCEEDED_MESSAGE: &str = "decoding the request needs more memory than it may take";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_holds_only_inside_within_and_growth_is_counted_by_capacity() {
        assert!(charge(usize::MAX / 2), "no limit outside within");
        let ((), exceeded) = within(1000, || {
            let mut v: Vec<u64> = Vec::new();
            for i in 0..64 {
                assert!(push(&mut v, i));
            }
            // Grown to 64 elements of 8 bytes, plus overhead per growth.
            assert!(USED.get() >= 512 && USED.get() <= 512 + 8 * ALLOC_OVERHEAD, "{}", USED.get());
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
