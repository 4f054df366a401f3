//! Keeping the agent's heap small: one malloc arena, and the memory of a
//! finished pass given back to the system.
//!
//! A pass over a large namespace parses every manifest and lists every live
//! object: tens of megabytes of small allocations, all freed when the pass
//! ends. glibc's malloc keeps freed memory in its arenas and returns only a
//! free top of the heap, so without help the agent would stay at its peak
//! for good (docs/benchmarks.md has the figures).
//!
//! * glibc gives each thread that allocates its own arena (up to eight per
//!   core): the blocking-pool thread that reads a revision fills a second
//!   heap that is never shared with the runtime's. The agent has one async
//!   thread and at most one busy blocking thread, so lock contention is nil
//!   and one arena is the right size: at 5,000 objects it is 10 MB less
//!   resident memory (the same as `MALLOC_ARENA_MAX=1`).
//! * `malloc_trim(0)` after a pass releases the free pages of the arena. It
//!   costs about a millisecond after a pass that may have taken a hundred.
//!
//! Both are no-ops on other C libraries (musl's allocator has no arenas and
//! already returns large frees).

/// Call once, before any thread is started: every thread then allocates
/// from the main arena.
#[allow(unsafe_code)]
pub fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets malloc's tunables, under its own lock; it
    // takes no pointer.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Return the freed heap to the system.
#[allow(unsafe_code)]
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks malloc's own free lists, under its
    // locks; it takes no pointer and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
