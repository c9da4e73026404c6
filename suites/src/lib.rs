//! This crate holds no code: its test target `generated` runs Preflight's
//! suites over `fixtures/models` and every defect of `fixtures/defects`.
