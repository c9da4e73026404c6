//! Rooms a reader can hold: files of at most [`MAX_FILE`] lines and
//! functions of at most [`MAX_FN`] lines, outside the test module at a
//! file's end. What is over today is listed here, and may only leave the
//! list: a listed item that fits fails until it is taken off, so the lists
//! only shrink.

use std::path::Path;

pub(super) const MAX_FILE: usize = 400;
pub(super) const MAX_FN: usize = 60;

/// The crates whose sources are held to the limits.
pub(super) const CRATES: [&str; 7] = [
    "bundle", "serving", "harness", "ort", "grpc", "testkit", "xtask",
];

/// Table-like functions, a family or a check per entry, that read best
/// whole (ARCHITECTURE.md, "Rooms"): `path::function`.
pub(super) const TABLES: [&str; 6] = [
    "serving/src/metrics/exposition.rs::encode",
    "serving/src/metrics/monitoring.rs::drift",
    "serving/src/metrics/monitoring.rs::feedback",
    "serving/src/metrics/routing.rs::routes",
    "serving/src/metrics/versions.rs::requests",
    "serving/src/metrics/versions.rs::runs",
];

/// Files over [`MAX_FILE`] lines today, to be split.
pub(super) const LONG_FILES: [&str; 0] = [];

/// Functions over [`MAX_FN`] lines today, to be split: `path::function`.
pub(super) const LONG_FNS: [&str; 33] = [
    "bundle/src/classes.rs::check",
    "bundle/src/fallback/mod.rs::bind",
    "bundle/src/manifest/validate.rs::features",
    "bundle/src/records.rs::parse_records",
    "bundle/src/reference.rs::parse",
    "bundle/src/value.rs::read",
    "harness/src/container.rs::start",
    "harness/src/diff.rs::changes",
    "harness/src/suites/latency/run.rs::run_here",
    "harness/src/html/charts.rs::render",
    "harness/src/last_release.rs::checkout",
    "harness/src/merge.rs::check_split",
    "harness/src/merge.rs::merge",
    "harness/src/output/junit.rs::junit",
    "harness/src/output/markdown.rs::figures",
    "harness/src/output/markdown.rs::markdown",
    "harness/src/suites/fallback/agreement.rs::with_training",
    "harness/src/suites/fallback/beside.rs::near_main",
    "harness/src/suites/scoring.rs::classification",
    "harness/src/suites/size.rs::run",
    "harness/src/terminal.rs::summary",
    "harness/src/verify/phases.rs::run_phases",
    "harness/src/verify/mod.rs::verify",
    "serving/src/decode.rs::decode_tensors",
    "serving/src/infer.rs::predict",
    "serving/src/monitor/mod.rs::join",
    "serving/src/serve.rs::serve",
    "xtask/src/abuse.rs::run",
    "xtask/src/fleet.rs::fleet",
    "xtask/src/fuzz.rs::run",
    "xtask/src/image.rs::build",
    "xtask/src/ort.rs::ensure",
    "xtask/src/peers.rs::run",
];

/// The code of a file, up to its test module.
fn code(text: &str) -> Vec<&str> {
    text.lines()
        .take_while(|line| !line.starts_with("#[cfg(test)]"))
        .collect()
}

/// Lines of `path`'s code.
pub(super) fn file_lines(text: &str) -> usize {
    code(text).len()
}

/// Each function of the code with a body, as its name and its lines: from
/// its `fn` line to the `}` at its own indentation, as rustfmt writes it.
pub(super) fn functions(text: &str) -> Vec<(String, usize)> {
    let lines = code(text);
    let mut found = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let Some((indent, name)) = fn_name(line) else {
            continue;
        };
        // A declaration without a body ends its signature with `;`.
        let signature_end = lines[at..]
            .iter()
            .map(|l| l.trim_end())
            .find(|l| l.ends_with('{') || l.ends_with(';'));
        if signature_end.is_none_or(|l| l.ends_with(';')) {
            continue;
        }
        let close = format!("{indent}}}");
        let end = lines[at..]
            .iter()
            .position(|l| *l == close)
            .map_or(lines.len(), |n| at + n);
        found.push((name.to_owned(), end - at + 1));
    }
    found
}

/// The indentation and name of a line that starts a function.
fn fn_name(line: &str) -> Option<(&str, &str)> {
    let body = line.trim_start();
    let indent = &line[..line.len() - body.len()];
    let mut words = body.split_whitespace().peekable();
    while let Some(word) = words.next() {
        match word {
            "fn" => {
                let name = words.next()?;
                let end = name.find(['<', '(']).unwrap_or(name.len());
                return Some((indent, &name[..end]));
            }
            w if w.starts_with("pub")
                || ["async", "const", "unsafe", "extern", "\"C\""].contains(&w) => {}
            _ => return None,
        }
    }
    None
}

/// `path` relative to the workspace, with `/` between its parts.
pub(super) fn key(workspace: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(workspace).unwrap_or(path);
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}
