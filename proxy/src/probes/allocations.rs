//! Heap allocations counted by a global allocator, for bench's
//! allocations-per-call figure. Built only with the `count-allocations`
//! feature (`cargo build --release --features count-allocations`): the
//! counting allocator is the system allocator with a few atomic adds per
//! call, too much to pay in a production build.

/// Allocations since the process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocations {
    /// Calls to `alloc` (reallocations counted apart).
    pub allocations: u64,
    /// Calls to `realloc`.
    pub reallocations: u64,
    /// Bytes requested by `alloc` and the growth of `realloc`.
    pub bytes: u64,
}

#[cfg(feature = "count-allocations")]
#[global_allocator]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

/// The counts so far, or `None` in a build without `count-allocations`.
pub fn counts() -> Option<Allocations> {
    #[cfg(feature = "count-allocations")]
    {
        let s = GLOBAL.stats();
        Some(Allocations {
            allocations: s.allocations as u64,
            reallocations: s.reallocations as u64,
            bytes: (s.bytes_allocated as u64).saturating_add(s.bytes_reallocated.max(0) as u64),
        })
    }
    #[cfg(not(feature = "count-allocations"))]
    {
        None
    }
}

#[cfg(all(test, feature = "count-allocations"))]
mod tests {
    use super::*;

    #[test]
    fn an_allocation_is_counted() {
        let before = counts().map(|c| c.allocations).unwrap_or(0);
        let v: Vec<u64> = Vec::with_capacity(16);
        std::hint::black_box(&v);
        let after = counts().map(|c| c.allocations).unwrap_or(0);
        assert!(after > before);
    }
}
