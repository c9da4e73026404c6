//! Which models a verification takes: the served version of each whose
//! name matches `--only` and falls in the shard, with the version below.

use std::path::Path;

use preflight_bundle::{Bundle, Repository};

use super::VerifyError;
use crate::shard::Shard;

/// A model selected for verification: its served version and the one below.
pub(super) struct Selected {
    pub(super) bundle: Bundle,
    pub(super) previous: Option<Bundle>,
}

/// The served (highest) version of every model whose name matches `only`
/// and falls in `shard`, with the version below it.
pub(super) fn select(
    models: &Path,
    only: &[String],
    shard: Option<Shard>,
) -> Result<Vec<Selected>, VerifyError> {
    let repo = Repository::scan(models).map_err(|e| VerifyError::Usage(e.to_string()))?;
    if let Some(problem) = repo.problems().first() {
        return Err(VerifyError::Usage(problem.to_string()));
    }
    let open = |dir: &Path| Bundle::open(dir).map_err(|e| VerifyError::Usage(e.to_string()));
    let matching: Vec<_> = repo
        .models()
        .iter()
        .filter(|m| only.is_empty() || only.iter().any(|pattern| glob_match(pattern, &m.name)))
        .collect();
    if matching.is_empty() {
        // The nearest names to each pattern, for a misspelt one.
        let nearest: Vec<&str> = only
            .iter()
            .filter_map(|pattern| {
                let names = repo.models().iter().map(|m| m.name.as_str());
                names
                    .map(|name| (strsim::levenshtein(pattern, name), name))
                    .filter(|(distance, _)| *distance <= 2)
                    .min()
                    .map(|(_, name)| name)
            })
            .collect();
        let hint = if nearest.is_empty() {
            String::new()
        } else {
            format!("; did you mean {}?", nearest.join(", "))
        };
        return Err(VerifyError::Usage(format!(
            "no model in {} matches {}{hint}",
            models.display(),
            if only.is_empty() {
                "(any)".to_owned()
            } else {
                only.join(", ")
            }
        )));
    }
    // An empty shard is not an error: a release of few models split over
    // many runners leaves some with nothing to do.
    matching
        .into_iter()
        .filter(|m| shard.is_none_or(|s| s.holds(&m.name)))
        .map(|m| {
            let previous = match m.versions.len() {
                0 | 1 => None,
                n => Some(open(&m.versions[n - 2].dir)?),
            };
            Ok(Selected {
                bundle: open(&m.latest().dir)?,
                previous,
            })
        })
        .collect()
}

/// `*` matches any run of characters, `?` any one; everything else itself.
fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}
