//! The import graph of a crate's files, read from its own source: every
//! `crate::`, `super::`, `self::` and child-module path of a file, in its
//! `use` lines and in its code, lands in the file of the longest module it
//! names. A test module at the end of a file (`#[cfg(test)]`) is not read:
//! a test may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path in its crate: `""` for the root, `"metrics/counters"`.
pub(super) type Module = String;

#[derive(Debug)]
pub(super) struct Graph {
    /// What each module's file imports, itself aside.
    pub(super) edges: BTreeMap<Module, BTreeSet<Module>>,
}

impl Graph {
    /// The graph of the library whose root is `src/lib.rs`; the modules
    /// of `skip` (another crate's, such as a binary's `main` and its
    /// modules) are left out.
    pub(super) fn of_crate(src: &Path, skip: &[&str]) -> Graph {
        let mut files = BTreeMap::new();
        collect(src, src, &mut files);
        for name in skip {
            files.remove(*name);
        }
        let modules: BTreeSet<Module> = files.keys().cloned().collect();
        let edges = files
            .iter()
            .map(|(module, path)| {
                let text = std::fs::read_to_string(path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let mut to: BTreeSet<Module> = paths(&code(&text))
                    .iter()
                    .filter_map(|p| resolve(module, p, &modules))
                    .collect();
                to.remove(module);
                (module.clone(), to)
            })
            .collect();
        Graph { edges }
    }

    /// Every set of two or more files that import one another, each as
    /// its modules, sorted (Tarjan's strongly connected components).
    pub(super) fn cycles(&self) -> Vec<Vec<Module>> {
        let mut search = Tarjan {
            graph: self,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            found: Vec::new(),
        };
        for module in self.edges.keys().map(String::as_str) {
            if !search.index.contains_key(module) {
                search.visit(module);
            }
        }
        search.found
    }
}

/// Each `.rs` file under `dir` as its module: `a/mod.rs` and `a.rs` are
/// `a`, `lib.rs` the root.
fn collect(src: &Path, dir: &Path, files: &mut BTreeMap<Module, PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(src, &path, files);
            continue;
        }
        let Some(relative) = path.strip_prefix(src).ok().and_then(|p| p.to_str()) else {
            continue;
        };
        let Some(stem) = relative.strip_suffix(".rs") else {
            continue;
        };
        let module = match stem {
            "lib" => String::new(),
            _ => stem.strip_suffix("/mod").unwrap_or(stem).to_owned(),
        };
        files.insert(module, path);
    }
}

/// The code of a file: comments and the test module at its end removed,
/// and no space left around `::`, so that spacing cannot hide a path.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect();
    let joined = lines.join("\n");
    let mut out = String::with_capacity(joined.len());
    let mut rest = joined.as_str();
    while let Some(at) = rest.find("::") {
        out.push_str(rest[..at].trim_end());
        out.push_str("::");
        rest = rest[at + 2..].trim_start();
    }
    out.push_str(rest);
    out
}

/// Every path the code names: each `use` tree expanded, and every chain
/// `a::b::c` elsewhere, as its segments.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = find_word(rest, "use") {
        let tree = &rest[at + 3..];
        let end = tree.find(';').unwrap_or(tree.len());
        expand(&[], tree[..end].trim(), &mut found);
        rest = &tree[end..];
    }
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut chain = String::new();
    for c in code.chars().chain(std::iter::once(' ')) {
        if is_ident(c) || c == ':' {
            chain.push(c);
        } else {
            // `a::{...}` is a `use` tree, which `expand` reads whole.
            if chain.contains("::") && !chain.starts_with(':') && !chain.ends_with(':') {
                let segments: Vec<String> = chain
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                found.push(segments);
            }
            chain.clear();
        }
    }
    found
}

/// Where `word` starts in `text` as a whole word.
fn find_word(text: &str, word: &str) -> Option<usize> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(at) = text[from..].find(word).map(|i| i + from) {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// The paths of a `use` tree below `prefix`: `a::{b, c::{d, e as f}}`.
fn expand(prefix: &[String], tree: &str, found: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    let (head, group) = match tree.find('{') {
        Some(open) => (
            &tree[..open],
            Some(&tree[open + 1..tree.rfind('}').unwrap_or(tree.len())]),
        ),
        None => (tree, None),
    };
    let head = head.split(" as ").next().unwrap_or_default();
    let mut path = prefix.to_vec();
    path.extend(
        head.split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "self")
            .map(str::to_owned),
    );
    let Some(group) = group else {
        found.push(path);
        return;
    };
    let (mut depth, mut start) = (0, 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand(&path, &group[start..i], found);
                start = i + 1;
            }
            _ => {}
        }
    }
    expand(&path, &group[start..], found);
}

/// The module a path from `module` lands in: the longest module it names,
/// or `None` for a path outside the crate.
fn resolve(module: &str, path: &[String], modules: &BTreeSet<Module>) -> Option<Module> {
    let here: Vec<&str> = module.split('/').filter(|s| !s.is_empty()).collect();
    let (mut base, rest): (Vec<&str>, &[String]) = match path.first().map(String::as_str) {
        Some("crate") => (Vec::new(), &path[1..]),
        Some("super") => (here[..here.len().saturating_sub(1)].to_vec(), &path[1..]),
        Some("self") => (here.clone(), &path[1..]),
        Some(first) if modules.contains(&join(&here, first)) => (here.clone(), path),
        _ => return None,
    };
    let mut landed = base.join("/");
    for segment in rest {
        if segment == "super" {
            base.pop();
            landed = base.join("/");
            continue;
        }
        base.push(segment);
        let next = base.join("/");
        if !modules.contains(&next) {
            break;
        }
        landed = next;
    }
    Some(landed)
}

fn join(here: &[&str], child: &str) -> Module {
    let mut parts = here.to_vec();
    parts.push(child);
    parts.join("/")
}

struct Tarjan<'a> {
    graph: &'a Graph,
    index: BTreeMap<&'a str, usize>,
    low: BTreeMap<&'a str, usize>,
    stack: Vec<&'a str>,
    found: Vec<Vec<Module>>,
}

impl<'a> Tarjan<'a> {
    fn visit(&mut self, module: &'a str) {
        let n = self.index.len();
        self.index.insert(module, n);
        self.low.insert(module, n);
        self.stack.push(module);
        let graph = self.graph;
        for next in graph.edges.get(module).into_iter().flatten() {
            let next = next.as_str();
            if !self.index.contains_key(next) {
                self.visit(next);
                let low = self.low[module].min(self.low[next]);
                self.low.insert(module, low);
            } else if self.stack.contains(&next) {
                let low = self.low[module].min(self.index[next]);
                self.low.insert(module, low);
            }
        }
        if self.low[module] == self.index[module] {
            let mut component = Vec::new();
            while let Some(top) = self.stack.pop() {
                component.push(top.to_owned());
                if top == module {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                self.found.push(component);
            }
        }
    }
}
