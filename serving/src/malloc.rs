//! The allocator of the `preflight-serve` process (part of the binary, not
//! of the library): the C library's `malloc` family, replaced by mimalloc,
//! with every block counted.
//!
//! glibc lets a program replace its allocator by defining these functions
//! (its manual, "Replacing malloc"); ONNX Runtime, loaded later, and the C++
//! runtime then allocate through them too. Loading a model is mostly ONNX
//! Runtime building many small objects, and mimalloc makes that about a
//! third cheaper than glibc's allocator (`benches/README.md`). Rust's own
//! allocations go to mimalloc directly, through [`Counted`].
//!
//! The count is added to when a block is handed out and taken off when it
//! is freed, so it is exact at any moment: the heap gauge, and through it
//! the harness's `size` suite, read it (`heap::count_with`). A C block
//! counts its usable size, which `free` can look up; a Rust block its
//! layout's size, which Rust gives back when it frees the block, so the
//! request path looks nothing up. A block is freed by the side that made
//! it (Rust hands none of its blocks to C's `free`, nor ONNX Runtime its
//! own to Rust), so each is taken off the count as it was added.
//! The first threads (the async workers, the monitor, the log among them)
//! each keep a counter of their own, on a cache line of its own, which
//! they add to without a locked instruction.
//!
//! A library's own override and statistics were measured against this
//! count (`benches/README.md`, "The allocator"): jemalloc's `stats.allocated`
//! counts what threads keep in their caches, and moved by up to 31% between
//! runs of the same model; without the caches it is exact, and loading takes
//! a third longer.
//!
//! Nothing here may allocate, panic or unwind: every function is called
//! from C, and from inside other allocations.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

use mimalloc::MiMalloc;

// mimalloc's C API (mimalloc.h).
unsafe extern "C" {
    fn mi_malloc(size: usize) -> *mut c_void;
    fn mi_calloc(count: usize, size: usize) -> *mut c_void;
    fn mi_realloc(p: *mut c_void, size: usize) -> *mut c_void;
    fn mi_reallocarray(p: *mut c_void, count: usize, size: usize) -> *mut c_void;
    fn mi_free(p: *mut c_void);
    fn mi_usable_size(p: *const c_void) -> usize;
    fn mi_posix_memalign(p: *mut *mut c_void, alignment: usize, size: usize) -> c_int;
    fn mi_aligned_alloc(alignment: usize, size: usize) -> *mut c_void;
    fn mi_memalign(alignment: usize, size: usize) -> *mut c_void;
    fn mi_valloc(size: usize) -> *mut c_void;
    fn mi_pvalloc(size: usize) -> *mut c_void;
}

/// Threads with a counter of their own. Later threads share one.
const OWN: usize = 64;

#[repr(align(128))]
struct Counter(AtomicIsize);

/// `OWN` counters, each written by one thread only, then the shared one.
static IN_USE: [Counter; OWN + 1] = [const { Counter(AtomicIsize::new(0)) }; OWN + 1];
static THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Constant-initialised and without a destructor: reading it never
    // allocates and never fails, even while the thread exits.
    static COUNTER: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Bytes handed out and not yet freed, process-wide.
pub(crate) fn in_use() -> u64 {
    let sum: isize = IN_USE.iter().map(|c| c.0.load(Ordering::Relaxed)).sum();
    u64::try_from(sum).unwrap_or(0)
}

/// Adds `bytes` to this thread's counter. A thread's own counter has one
/// writer, so it takes a plain load and store, not a locked add: this runs
/// on every allocation. A counter is never given back (a thread's blocks
/// can outlive it), so threads started after the first `OWN` share the
/// last counter, with a locked add.
fn count(bytes: isize) {
    let own = COUNTER
        .try_with(|c| {
            if c.get() == usize::MAX {
                c.set(THREADS.fetch_add(1, Ordering::Relaxed).min(OWN));
            }
            c.get()
        })
        .unwrap_or(OWN);
    let counter = &IN_USE[own].0;
    if own < OWN {
        let now = counter.load(Ordering::Relaxed);
        counter.store(now.wrapping_add(bytes), Ordering::Relaxed);
    } else {
        counter.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// `p`, with `bytes` added to the count where it is a block: a null `p`
/// is an allocation that failed, and leaves the count as it was.
fn counted<T>(p: *mut T, bytes: isize) -> *mut T {
    if !p.is_null() {
        count(bytes);
    }
    p
}

fn bytes(n: usize) -> isize {
    isize::try_from(n).unwrap_or(isize::MAX)
}

/// The usable size of a C block, 0 for null.
fn usable(p: *const c_void) -> isize {
    if p.is_null() {
        return 0;
    }
    // SAFETY: `p` is a live block of mimalloc's: every block of this
    // process comes from the functions below.
    bytes(unsafe { mi_usable_size(p) })
}

/// `p`, counted by its usable size where it is a block.
fn handed_out(p: *mut c_void) -> *mut c_void {
    counted(p, usable(p))
}

/// Rust's global allocator: mimalloc (built without its own override),
/// each block counted by its layout's size.
pub(crate) struct Counted;

// SAFETY: each method forwards to mimalloc's allocator under the same
// contract, and only adds to the count where a block was handed out or
// taken back.
unsafe impl GlobalAlloc for Counted {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        counted(unsafe { MiMalloc.alloc(layout) }, bytes(layout.size()))
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        counted(
            unsafe { MiMalloc.alloc_zeroed(layout) },
            bytes(layout.size()),
        )
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        count(-bytes(layout.size()));
        unsafe { MiMalloc.dealloc(p, layout) }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { MiMalloc.realloc(p, layout, new_size) };
        // Where it failed, `p` stays, counted as it was.
        counted(q, bytes(new_size) - bytes(layout.size()))
    }
}

// SAFETY (for each function below): the contract is the C standard's and
// POSIX's for the function of the same name; each forwards its arguments
// unchanged to mimalloc's function of that contract, and only reads the
// usable size of what it hands out or takes back.

#[unsafe(no_mangle)]
unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    handed_out(unsafe { mi_malloc(size) })
}

#[unsafe(no_mangle)]
unsafe extern "C" fn calloc(count: usize, size: usize) -> *mut c_void {
    handed_out(unsafe { mi_calloc(count, size) })
}

#[unsafe(no_mangle)]
unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    let old = usable(p);
    let q = unsafe { mi_realloc(p, size) };
    // Where it failed, `p` stays, counted as it was.
    counted(q, usable(q) - old)
}

#[unsafe(no_mangle)]
unsafe extern "C" fn reallocarray(p: *mut c_void, count: usize, size: usize) -> *mut c_void {
    let old = usable(p);
    let q = unsafe { mi_reallocarray(p, count, size) };
    counted(q, usable(q) - old)
}

#[unsafe(no_mangle)]
unsafe extern "C" fn free(p: *mut c_void) {
    // `usable` and `mi_free` both take null as nothing.
    count(-usable(p));
    unsafe { mi_free(p) }
}

#[unsafe(no_mangle)]
unsafe extern "C" fn posix_memalign(p: *mut *mut c_void, alignment: usize, size: usize) -> c_int {
    let error = unsafe { mi_posix_memalign(p, alignment, size) };
    if error == 0 {
        // SAFETY: on success mimalloc wrote the block to `*p`.
        handed_out(unsafe { *p });
    }
    error
}

#[unsafe(no_mangle)]
unsafe extern "C" fn aligned_alloc(alignment: usize, size: usize) -> *mut c_void {
    handed_out(unsafe { mi_aligned_alloc(alignment, size) })
}

#[unsafe(no_mangle)]
unsafe extern "C" fn memalign(alignment: usize, size: usize) -> *mut c_void {
    handed_out(unsafe { mi_memalign(alignment, size) })
}

#[unsafe(no_mangle)]
unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    handed_out(unsafe { mi_valloc(size) })
}

#[unsafe(no_mangle)]
unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    handed_out(unsafe { mi_pvalloc(size) })
}

#[unsafe(no_mangle)]
unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    unsafe { mi_usable_size(p) }
}

// glibc's own names for the same functions, which a library may call
// directly; left to glibc, they would hand its blocks to mimalloc's `free`.

#[unsafe(no_mangle)]
unsafe extern "C" fn __libc_malloc(size: usize) -> *mut c_void {
    unsafe { malloc(size) }
}

#[unsafe(no_mangle)]
unsafe extern "C" fn __libc_calloc(count: usize, size: usize) -> *mut c_void {
    unsafe { calloc(count, size) }
}

#[unsafe(no_mangle)]
unsafe extern "C" fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    unsafe { realloc(p, size) }
}

#[unsafe(no_mangle)]
unsafe extern "C" fn __libc_free(p: *mut c_void) {
    unsafe { free(p) }
}

#[unsafe(no_mangle)]
unsafe extern "C" fn __libc_memalign(alignment: usize, size: usize) -> *mut c_void {
    unsafe { memalign(alignment, size) }
}

#[unsafe(no_mangle)]
unsafe extern "C" fn __libc_valloc(size: usize) -> *mut c_void {
    unsafe { valloc(size) }
}

#[unsafe(no_mangle)]
unsafe extern "C" fn __libc_pvalloc(size: usize) -> *mut c_void {
    unsafe { pvalloc(size) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: i64 = 1 << 20;

    /// The tests of this module measure one count, so they take turns.
    static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Whether the count moved by `want` since `before`, to within 64 KiB:
    /// the test harness's own threads allocate meanwhile.
    fn moved_by(before: u64, want: i64) -> bool {
        let moved = in_use() as i64 - before as i64;
        (moved - want).abs() < 64 << 10
    }

    #[test]
    fn the_count_rises_by_a_block_and_falls_when_it_is_freed() {
        let _alone = ALONE.lock();
        let before = in_use();
        let block = vec![1u8; 8 * MIB as usize];
        assert!(moved_by(before, 8 * MIB), "{before} then {}", in_use());
        drop(block);
        assert!(moved_by(before, 0), "{before} then {}", in_use());
    }

    #[test]
    fn c_blocks_are_counted_by_their_usable_size_through_realloc_and_free() {
        let _alone = ALONE.lock();
        // Called as C code in another object calls them: through pointers
        // the compiler cannot see into. Called by name from this crate, the
        // compiler takes them for the C library's, which touch no memory of
        // ours, and may read the count before the call as after it.
        use std::hint::black_box as opaque;
        let malloc: unsafe extern "C" fn(usize) -> *mut c_void = opaque(malloc);
        let realloc: unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void = opaque(realloc);
        let free: unsafe extern "C" fn(*mut c_void) = opaque(free);
        let posix_memalign: unsafe extern "C" fn(*mut *mut c_void, usize, usize) -> c_int =
            opaque(posix_memalign);
        let size = |p: *mut c_void| usable(p) as i64;
        let before = in_use();
        // SAFETY: each block is freed once, by the allocator that made it.
        unsafe {
            let p = malloc(MIB as usize);
            assert!(!p.is_null() && size(p) >= MIB);
            assert!(moved_by(before, size(p)), "{before} then {}", in_use());
            let q = realloc(p, 4 * MIB as usize);
            assert!(!q.is_null() && size(q) >= 4 * MIB);
            assert!(moved_by(before, size(q)), "{before} then {}", in_use());
            let mut r = std::ptr::null_mut();
            assert_eq!(posix_memalign(&mut r, 4096, 2 * MIB as usize), 0);
            assert!((r as usize).is_multiple_of(4096) && size(r) >= 2 * MIB);
            assert!(
                moved_by(before, size(q) + size(r)),
                "{before} then {}",
                in_use()
            );
            free(q);
            free(r);
        }
        assert!(moved_by(before, 0), "{before} then {}", in_use());
    }
}
