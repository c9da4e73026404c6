//! The report files of a run, written as a set: `report.json`,
//! `summary.md`, `junit.xml` and `report.html`.
//!
//! All four are written to a staging folder beside them and then renamed
//! into place, so that a reader never sees half a report, nor reports of two
//! runs mixed. Where the folder cannot take them, they are kept in a
//! temporary folder and the error says where: a complete run's results are
//! never lost to a full or read-only disk.

mod junit;
mod markdown;

use std::path::{Path, PathBuf};

pub use junit::junit;
pub use markdown::markdown;

use crate::report::Report;

/// The reports' names, in the order they are written.
pub const FILES: [&str; 4] = ["report.json", "summary.md", "junit.xml", "report.html"];

/// Writes the four reports into `out`; the baseline, where given, is what
/// the figures are compared with.
pub fn write_all(
    report: &Report,
    baseline: Option<&Report>,
    out: &Path,
) -> Result<Vec<PathBuf>, String> {
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())? + "\n";
    let texts = [
        json,
        markdown(report, baseline, run_link().as_deref()),
        junit(report)?,
        crate::html::render_html(report, baseline),
    ];
    match write_set(out, &texts) {
        Ok(paths) => Ok(paths),
        Err(error) => {
            let kept = std::env::temp_dir().join(format!(
                "preflight-reports-{}-{}",
                std::process::id(),
                report.started_at
            ));
            Err(match write_set(&kept, &texts) {
                Ok(_) => format!(
                    "{error}; the reports of this run are kept in {}",
                    kept.display()
                ),
                Err(again) => format!("{error}; and the reports could not be kept either: {again}"),
            })
        }
    }
}

/// The texts staged in a folder inside `out`, then renamed into place.
fn write_set(out: &Path, texts: &[String; 4]) -> Result<Vec<PathBuf>, String> {
    let fail = |path: &Path, e: std::io::Error| format!("{}: cannot write: {e}", path.display());
    std::fs::create_dir_all(out).map_err(|e| fail(out, e))?;
    let staging = out.join(format!(".preflight-staging-{}", std::process::id()));
    std::fs::create_dir_all(&staging).map_err(|e| fail(&staging, e))?;
    let staged = FILES.iter().zip(texts).try_for_each(|(name, text)| {
        let path = staging.join(name);
        std::fs::write(&path, text).map_err(|e| fail(&path, e))
    });
    let moved = staged.and_then(|()| {
        FILES
            .iter()
            .map(|name| {
                let path = out.join(name);
                std::fs::rename(staging.join(name), &path).map_err(|e| fail(&path, e))?;
                Ok(path)
            })
            .collect()
    });
    let _ = std::fs::remove_dir_all(&staging);
    moved
}

/// The link to this CI run's page, where its artifacts are, on GitHub
/// Actions.
fn run_link() -> Option<String> {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    Some(format!(
        "{}/{}/actions/runs/{}",
        var("GITHUB_SERVER_URL")?,
        var("GITHUB_REPOSITORY")?,
        var("GITHUB_RUN_ID")?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_that_cannot_be_written_are_kept_and_the_error_says_where() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        // A file where the folder should be: nothing can be written there.
        let out = dir.path().join("out");
        std::fs::write(&out, "not a folder").expect("write");
        let report = Report::committed_baseline();
        let error = write_all(&report, None, &out).expect_err("out is a file");
        let kept = error
            .split("kept in ")
            .nth(1)
            .unwrap_or_else(|| panic!("no kept folder in: {error}"));
        for name in FILES {
            let path = Path::new(kept).join(name);
            assert!(path.is_file(), "{} missing; {error}", path.display());
        }
        let _ = std::fs::remove_dir_all(kept);

        // Into a folder that can take them, the set lands whole and no
        // staging folder is left behind.
        let out = dir.path().join("reports");
        let written = write_all(&report, None, &out).expect("written");
        assert_eq!(written.len(), FILES.len());
        let left: Vec<_> = std::fs::read_dir(&out)
            .expect("read")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| !FILES.contains(&name.as_str()))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
