//! AFL++ target: manifest text; parsing and validation never panic.

fn main() {
    afl::fuzz!(|data: &[u8]| preflight_fuzz::manifest(data));
}
