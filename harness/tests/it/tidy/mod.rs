//! Tidy: what a review would otherwise have to catch, checked by
//! `cargo xtask ci` and with every test run. Lines that fit a screen, one
//! list of suites ([`Suite`]), docs that describe every suite, and the
//! invariants of ARCHITECTURE.md that a file can show.

mod imports;
mod literals;
mod sizes;

use std::path::{Path, PathBuf};

use preflight_harness::Suite;

const MAX_LINE: usize = 100;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every Rust file of the workspace, outside build output and hidden folders.
fn rust_sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "target" {
                continue;
            }
            if path.is_dir() {
                walk(&path, found);
            } else if name.ends_with(".rs") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&workspace(), &mut found);
    found.sort();
    assert!(
        found.len() > 50,
        "the walk found only {} files",
        found.len()
    );
    found
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn relative(path: &Path) -> String {
    path.strip_prefix(workspace())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn no_line_is_longer_than_100_characters() {
    let mut long = Vec::new();
    for path in rust_sources() {
        for (n, line) in read(&path).lines().enumerate() {
            let width = line.chars().count();
            if width > MAX_LINE {
                long.push(format!("{}:{}: {width} characters", relative(&path), n + 1));
            }
        }
    }
    assert!(
        long.is_empty(),
        "lines over {MAX_LINE} characters:\n{}",
        long.join("\n")
    );
}

/// A hand-written list of suite names goes stale when a suite is added:
/// four names among any six string literals in a row, whatever the lines,
/// spaces and comments between them, in any code but the enum's (tests
/// aside: a contract's sections share the suites' names). And no code of
/// the harness outside its suites names one: it reads the suite's
/// descriptor (the wire's `fallback` parameter is not the suite).
#[test]
fn suites_are_listed_only_by_the_suite_enum() {
    let home = workspace().join("harness/src/suites/mod.rs");
    let names: Vec<&str> = Suite::all().iter().map(|s| s.name()).collect();
    let harness = workspace().join("harness/src");
    let suites = harness.join("suites");
    let wire = harness.join("client.rs");
    let mut found = Vec::new();
    for path in rust_sources().into_iter().filter(|p| *p != home) {
        if path.components().any(|c| c.as_os_str() == "tests") {
            continue;
        }
        let text = read(&path);
        let code_end = text.find("#[cfg(test)]").unwrap_or(text.len());
        let literals: Vec<_> = literals::of(&text)
            .into_iter()
            .filter(|l| l.offset < code_end)
            .collect();
        let named = |window: &[literals::Literal]| -> usize {
            let mut seen: Vec<&str> = window
                .iter()
                .filter(|l| names.contains(&l.text.as_str()))
                .map(|l| l.text.as_str())
                .collect();
            seen.sort_unstable();
            seen.dedup();
            seen.len()
        };
        let width = literals.len().clamp(1, 6);
        if let Some(list) = literals.windows(width).find(|w| named(w) >= 4) {
            found.push(format!(
                "{}:{}: a list of suites",
                relative(&path),
                list[0].line
            ));
        }
        let in_code = path.starts_with(&harness) && !path.starts_with(&suites) && path != wire;
        for literal in &literals {
            if in_code && names.contains(&literal.text.as_str()) {
                found.push(format!(
                    "{}:{}: the suite \"{}\" named outside its module",
                    relative(&path),
                    literal.line,
                    literal.text
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "suites named by hand (use Suite::all() and Suite::descriptor()):\n{}",
        found.join("\n")
    );
}

/// docs/harness.md's table of suites has a row for each, and README.md
/// names each.
#[test]
fn the_docs_describe_every_suite() {
    let harness = read(&workspace().join("docs/harness.md"));
    let readme = read(&workspace().join("README.md"));
    for suite in Suite::all() {
        let row = format!("| `{}` |", suite.name());
        assert!(
            harness.lines().any(|l| l.starts_with(&row)),
            "docs/harness.md has no row `{row}`"
        );
        assert!(
            readme.contains(suite.name()),
            "README.md never names '{}'",
            suite.name()
        );
    }
}

/// The lines of a crate's Cargo.toml in its `[dependencies]`,
/// `[dev-dependencies]` and `[build-dependencies]` tables.
fn dependencies(krate: &str) -> Vec<String> {
    let text = read(&workspace().join(krate).join("Cargo.toml"));
    let mut in_table = false;
    let mut lines = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_table = line.ends_with("dependencies]");
        } else if in_table && !line.is_empty() && !line.starts_with('#') {
            lines.push(line.to_owned());
        }
    }
    lines
}

/// ARCHITECTURE.md: `harness` and `suites` never link `serving`; `bundle`
/// never links ONNX Runtime; `preflight-ort` knows no bundle.
#[test]
fn the_crate_graph_keeps_its_invariants() {
    for krate in ["harness", "suites"] {
        let links: Vec<String> = dependencies(krate)
            .into_iter()
            .filter(|l| l.contains("preflight-serving"))
            .collect();
        assert!(links.is_empty(), "{krate} links the server: {links:?}");
    }
    let ort: Vec<String> = dependencies("bundle")
        .into_iter()
        .filter(|l| l.trim_start().starts_with("ort") || l.contains("preflight-ort"))
        .collect();
    assert!(ort.is_empty(), "bundle links ONNX Runtime: {ort:?}");
    let bundle: Vec<String> = dependencies("ort")
        .into_iter()
        .filter(|l| l.contains("preflight-"))
        .collect();
    assert!(
        bundle.is_empty(),
        "preflight-ort links a crate of ours: {bundle:?}"
    );
}

/// ARCHITECTURE.md: `ApiError::status` is the only place the server
/// chooses a status code, and no lock is shared by every request (each
/// version's session slots and gather queue are the only mutexes on the
/// request path).
#[test]
fn the_server_keeps_its_invariants() {
    let src = workspace().join("serving/src");
    let mut found = Vec::new();
    for path in rust_sources().into_iter().filter(|p| p.starts_with(&src)) {
        let name = relative(&path);
        for (n, line) in read(&path).lines().enumerate() {
            if line.contains("StatusCode::") && !name.ends_with("serving/src/error.rs") {
                found.push(format!(
                    "{name}:{}: a status code chosen outside ApiError",
                    n + 1
                ));
            }
            let request_path = name.contains("/routes/") || name.ends_with("/metrics.rs");
            if request_path && line.contains("Mutex") {
                found.push(format!("{name}:{}: a lock on every request's path", n + 1));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// ARCHITECTURE.md: no file of `serving` imports one that imports it back,
/// and only the top of the server (the crate root, `local.rs`) imports the
/// routes: nothing the routes stand on reaches up to them.
#[test]
fn the_server_stands_in_layers() {
    let src = workspace().join("serving/src");
    let graph = imports::Graph::of_crate(&src, &["main", "malloc"]);
    assert!(
        graph.edges.len() > 30 && graph.edges.values().any(|to| to.contains("model")),
        "the import graph was not read: {graph:?}"
    );
    let cycles: Vec<String> = graph
        .cycles()
        .iter()
        .map(|files| {
            let named: Vec<&str> = files
                .iter()
                .map(|m| if m.is_empty() { "lib" } else { m.as_str() })
                .collect();
            named.join(" → ")
        })
        .collect();
    assert!(
        cycles.is_empty(),
        "files of serving/src that import one another (a module's file may import \
         its children's, never the reverse; import a sibling by its own path, not \
         through the parent's re-export):\n{}",
        cycles.join("\n")
    );
    let top = ["", "local"];
    let upward: Vec<String> = graph
        .edges
        .iter()
        .filter(|(from, _)| !top.contains(&from.as_str()) && !from.starts_with("routes"))
        .flat_map(|(from, to)| {
            to.iter()
                .filter(|m| *m == "routes" || m.starts_with("routes/"))
                .map(move |m| format!("{from} → {m}"))
        })
        .collect();
    assert!(
        upward.is_empty(),
        "imports of the routes from below them:\n{}",
        upward.join("\n")
    );
}

/// Rooms a reader can hold (ARCHITECTURE.md, "Rooms"): no file over
/// `sizes::MAX_FILE` lines and no function over `sizes::MAX_FN`, but the
/// tables named there and what `sizes.rs` lists as still to be split; a
/// listed file or function that fits must leave its list.
#[test]
fn files_and_functions_fit_a_reader() {
    let root = workspace();
    let mut found = Vec::new();
    let (mut long_files, mut long_fns) = (Vec::new(), Vec::new());
    let sources = rust_sources().into_iter().filter(|p| {
        sizes::CRATES
            .iter()
            .any(|krate| p.starts_with(root.join(krate).join("src")))
    });
    for path in sources {
        let (key, text) = (sizes::key(&root, &path), read(&path));
        let lines = sizes::file_lines(&text);
        if lines > sizes::MAX_FILE {
            long_files.push(key.clone());
            if !sizes::LONG_FILES.contains(&key.as_str()) {
                found.push(format!("{key}: {lines} lines, over {}", sizes::MAX_FILE));
            }
        }
        for (name, lines) in sizes::functions(&text) {
            let item = format!("{key}::{name}");
            if lines > sizes::MAX_FN && !sizes::TABLES.contains(&item.as_str()) {
                long_fns.push(item.clone());
                if !sizes::LONG_FNS.contains(&item.as_str()) {
                    found.push(format!("{item}: {lines} lines, over {}", sizes::MAX_FN));
                }
            }
        }
    }
    for listed in sizes::LONG_FILES {
        if !long_files.iter().any(|f| f == listed) {
            found.push(format!("{listed} fits now: take it off sizes::LONG_FILES"));
        }
    }
    for listed in sizes::LONG_FNS {
        if !long_fns.iter().any(|f| f == listed) {
            found.push(format!("{listed} fits now: take it off sizes::LONG_FNS"));
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
