//! AFL++ target: KServe v1 request bodies; no panic, no 5xx.

fn main() {
    // Before the fork server starts: every fuzzing process starts loaded.
    preflight_fuzz::init();
    afl::fuzz!(|data: &[u8]| preflight_fuzz::infer_v1(data));
}
