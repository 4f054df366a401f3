//! Giving the memory of a finished pass back to the system.
//!
//! A pass over a large namespace parses every manifest and lists every live
//! object: tens of megabytes of small allocations, all freed when the pass
//! ends. glibc's malloc keeps freed memory in its arenas and returns only a
//! free top of the heap, so without help the agent would stay at its peak
//! for good (docs/benchmarks.md has the figures). `malloc_trim(0)` releases
//! the free pages of every arena, including the blocking pool's thread that
//! read the revision. It costs about a millisecond after a pass that may
//! have taken a hundred.

/// Return the freed heap to the system. A no-op on other C libraries
/// (musl's allocator already returns large frees).
#[allow(unsafe_code)]
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks malloc's own free lists, under its
    // locks; it takes no pointer and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
