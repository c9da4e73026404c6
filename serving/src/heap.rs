//! The bytes the C allocator has handed out and not taken back: the Rust
//! heap and ONNX Runtime's (sessions, arenas) alike. Unlike resident memory,
//! it falls when a model is unloaded, so the difference across an unload
//! and a load is what the model costs (`docs/serving.md`, "Memory").

/// Bytes in use from `malloc`, where the C library can tell (glibc).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn in_use() -> Option<u64> {
    // SAFETY: mallinfo2 takes no argument and returns a struct by value; it
    // only reads the allocator's statistics under the allocator's own locks.
    #[allow(unsafe_code)]
    let info = unsafe { libc::mallinfo2() };
    let bytes = info.uordblks.saturating_add(info.hblkhd);
    u64::try_from(bytes).ok()
}

/// Bytes in use from `malloc`: unknown on this platform.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn in_use() -> Option<u64> {
    None
}
