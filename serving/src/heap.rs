//! The bytes the allocator has handed out and not taken back. Unlike
//! resident memory, the figure falls when a model is unloaded, so the
//! difference across an unload and a load is what the model costs
//! (`docs/serving.md`, "Memory").

use std::sync::OnceLock;

static COUNT: OnceLock<fn() -> u64> = OnceLock::new();

/// Makes the heap gauge read `count`: a program that replaces the C
/// allocator and counts its blocks (`preflight-serve` does) says so here,
/// once, before serving.
pub fn count_with(count: fn() -> u64) {
    let _ = COUNT.set(count);
}

/// Bytes in use: the count given to [`count_with`], else what the C library
/// can tell of its `malloc`.
pub(crate) fn in_use() -> Option<u64> {
    match COUNT.get() {
        Some(count) => Some(count()),
        None => c_library_in_use(),
    }
}

/// Bytes in use from glibc's `malloc`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn c_library_in_use() -> Option<u64> {
    // SAFETY: mallinfo2 takes no argument and returns a struct by value; it
    // only reads the allocator's statistics under the allocator's own locks.
    #[allow(unsafe_code)]
    let info = unsafe { libc::mallinfo2() };
    let bytes = info.uordblks.saturating_add(info.hblkhd);
    u64::try_from(bytes).ok()
}

/// Bytes in use from `malloc`: unknown on this platform.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn c_library_in_use() -> Option<u64> {
    None
}
