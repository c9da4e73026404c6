//! Where the last release is served from, for the models whose repository
//! holds only the candidate: latency is judged only against a last release
//! measured in the same run (`docs/harness.md`, "Latency at fleet scale"),
//! so the run brings it in.
//!
//! In order: `--baseline-target` (an endpoint that serves it); else
//! `--baseline-models DIR` (a repository that holds it); else, where the
//! baseline report records the commit it verified and the models folder is
//! a git checkout that has that commit, the models folder as it was at that
//! commit. A repository is served by a second endpoint of the target's kind.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use preflight_bundle::{Bundle, Repository};

use crate::report::Report;
use crate::target::TargetSpec;

/// The last release's endpoint to start, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LastRelease {
    /// An endpoint of this form on this repository.
    Served { target: TargetSpec, models: PathBuf },
    /// Nothing beyond the candidates' repository; why, for the report.
    Absent(String),
}

/// Where the last release comes from, given `--baseline-target` (`target`),
/// `--baseline-models` (`models`) and the baseline report; `candidates` is
/// the repository verified and `out` the run's folder, where a checkout
/// from git is written. An error is a usage error.
pub(crate) fn find(
    target: &TargetSpec,
    candidates: &Path,
    baseline_target: Option<&TargetSpec>,
    models: Option<&Path>,
    baseline: Option<&Report>,
    out: &Path,
) -> Result<LastRelease, String> {
    if let Some(spec) = baseline_target {
        return Ok(LastRelease::Served {
            target: spec.clone(),
            models: candidates.to_owned(),
        });
    }
    let startable = !matches!(target, TargetSpec::Url(_));
    if let Some(dir) = models {
        if !startable {
            return Err(format!(
                "--baseline-models {}: a url= target is not started by this run, so neither is \
                 its last release; give --baseline-target, the endpoint that serves it",
                dir.display()
            ));
        }
        return Ok(LastRelease::Served {
            target: target.clone(),
            models: dir.to_owned(),
        });
    }
    let Some(commit) = baseline.and_then(|b| b.commit.as_deref()) else {
        return Ok(LastRelease::Absent(
            "no last release was brought into the run (--baseline-models, or a baseline report \
             that records its commit)"
                .to_owned(),
        ));
    };
    if !startable {
        return Ok(LastRelease::Absent(
            "a url= target's last release is not started by this run (--baseline-target)"
                .to_owned(),
        ));
    }
    let into = out.join("last-release");
    Ok(match checkout(candidates, commit, &into) {
        Ok(()) => LastRelease::Served {
            target: target.clone(),
            models: into,
        },
        Err(why) => LastRelease::Absent(format!(
            "the last release could not be brought in from git: {why}; give --baseline-models"
        )),
    })
}

/// The repository the last releases' bundles are read from, for the models
/// whose repository holds no version below the candidate (compat reads
/// them), or why there is none.
pub(crate) type Bundles = Result<Repository, String>;

/// The last releases' bundles of `last`: none from an endpoint alone
/// (`from_endpoint`, `--baseline-target`).
pub(crate) fn bundles(last: &LastRelease, from_endpoint: bool) -> Bundles {
    match last {
        LastRelease::Absent(why) => Err(why.clone()),
        LastRelease::Served { .. } if from_endpoint => Err(
            "--baseline-target gives the last release's endpoint, not its bundle; give \
             --baseline-models, the repository that holds it"
                .to_owned(),
        ),
        LastRelease::Served { models, .. } => {
            Repository::scan(models).map_err(|e| format!("{}: {e}", models.display()))
        }
    }
}

/// The last release of `candidate`: the version below it in its repository
/// (`previous`), else the highest version of it in `bundles`.
pub(crate) fn bundle(
    bundles: &Bundles,
    candidate: &Bundle,
    previous: Option<&Bundle>,
) -> Result<Bundle, String> {
    if let Some(previous) = previous {
        return Ok(previous.clone());
    }
    let name = candidate.name();
    let only = format!(
        "version {} is the only version of '{name}' in the repository",
        candidate.version()
    );
    let repository = bundles
        .as_ref()
        .map_err(|why| format!("{only}, and {why}"))?;
    let entry = repository.model(name).ok_or_else(|| {
        format!(
            "{only}, and the last release's repository {} does not have it",
            repository.root().display()
        )
    })?;
    Bundle::open(&entry.latest().dir).map_err(|e| e.to_string())
}

/// Writes the folder `models` as it was at `commit` into `into`, from the
/// git checkout `models` is in.
fn checkout(models: &Path, commit: &str, into: &Path) -> Result<(), String> {
    let short = commit.get(..12).unwrap_or(commit);
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(models)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run git: {e}"))
    };
    let found = git(&["rev-parse", "--show-toplevel", "--show-prefix"])?;
    let text = String::from_utf8_lossy(&found.stdout);
    let mut lines = text.lines();
    let (Some(top), prefix) = (
        lines.next().filter(|_| found.status.success()),
        lines.next(),
    ) else {
        return Err(format!("{} is not in a git checkout", models.display()));
    };
    let prefix = prefix.unwrap_or_default().trim_end_matches('/').to_owned();
    let tree = format!("{commit}:{prefix}");
    let kind = git(&["cat-file", "-t", &tree])?;
    if !kind.status.success() || kind.stdout.trim_ascii() != b"tree" {
        return Err(format!(
            "the baseline report's commit {short} is not in this checkout's history, or has no \
             '{prefix}' (a shallow clone? fetch it)"
        ));
    }
    if into.exists() {
        std::fs::remove_dir_all(into).map_err(|e| format!("{}: {e}", into.display()))?;
    }
    std::fs::create_dir_all(into).map_err(|e| format!("{}: {e}", into.display()))?;
    // From the top: in a subfolder, git archive keeps only that subfolder's
    // paths of the tree it is given.
    let mut archive = Command::new("git")
        .arg("-C")
        .arg(top)
        .args(["archive", "--format=tar", &tree])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run git archive: {e}"))?;
    let tar = archive
        .stdout
        .take()
        .ok_or("git archive gave no output")
        .and_then(|stdout| {
            Command::new("tar")
                .arg("-x")
                .arg("-C")
                .arg(into)
                .stdin(stdout)
                .status()
                .map_err(|_| "cannot run tar")
        });
    let archived = archive.wait().map(|s| s.success()).unwrap_or(false);
    match tar {
        Ok(status) if status.success() && archived => Ok(()),
        Ok(_) => Err(format!(
            "git archive {short} into {} failed",
            into.display()
        )),
        Err(why) => Err(why.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    #[test]
    fn the_models_folder_comes_back_as_it_was_at_the_reports_commit() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = tmp.path().join("repo");
        let models = repo.join("fixtures/models");
        std::fs::create_dir_all(models.join("m/1")).expect("mkdir");
        std::fs::write(models.join("m/1/manifest.toml"), "released\n").expect("write");
        git(&repo, &["init", "-q"]);
        git(&repo, &["add", "."]);
        git(&repo, &["commit", "-qm", "release"]);
        let released = git(&repo, &["rev-parse", "HEAD"]);
        std::fs::write(models.join("m/1/manifest.toml"), "candidate\n").expect("write");
        git(&repo, &["commit", "-qam", "candidate"]);

        let report = Report {
            commit: Some(released),
            ..Report::committed_baseline()
        };
        let out = tmp.path().join("out");
        let found = find(
            &TargetSpec::Process,
            &models,
            None,
            None,
            Some(&report),
            &out,
        );
        let into = out.join("last-release");
        assert_eq!(
            found,
            Ok(LastRelease::Served {
                target: TargetSpec::Process,
                models: into.clone()
            })
        );
        let text = std::fs::read_to_string(into.join("m/1/manifest.toml")).expect("read");
        assert_eq!(text, "released\n");

        // A commit the checkout does not have is said, not guessed around.
        let unknown = Report {
            commit: Some("0123456789abcdef0123456789abcdef01234567".to_owned()),
            ..report
        };
        let found = find(
            &TargetSpec::Process,
            &models,
            None,
            None,
            Some(&unknown),
            &out,
        );
        let Ok(LastRelease::Absent(why)) = found else {
            panic!("{found:?}")
        };
        assert!(
            why.contains("commit 0123456789ab is not in this checkout's history"),
            "{why}"
        );
    }

    #[test]
    fn a_url_target_cannot_have_its_last_release_started() {
        let url = TargetSpec::Url("http://127.0.0.1:1".to_owned());
        let found = find(
            &url,
            Path::new("m"),
            None,
            Some(Path::new("last")),
            None,
            Path::new("o"),
        );
        assert!(found.is_err_and(|e| e.contains("--baseline-target")));
    }

    #[test]
    fn the_last_bundle_is_the_version_below_else_the_brought_in_repositorys_highest() {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models");
        let open = |m: &str, v: &str| Bundle::open(&models.join(m).join(v)).expect("a fixture");
        let (madrid_1, madrid_2) = (open("eta-madrid", "1"), open("eta-madrid", "2"));
        let none: Bundles = Err("no last release was brought in".to_owned());
        let below = bundle(&none, &madrid_2, Some(&madrid_1)).map(|b| b.version());
        assert_eq!(below, Ok(1));
        let brought_in: Bundles = Repository::scan(&models).map_err(|e| e.to_string());
        let highest = bundle(&brought_in, &open("eta-rome", "1"), None);
        assert_eq!(
            highest.map(|b| b.dir().to_owned()),
            Ok(models.join("eta-rome/1"))
        );
        assert_eq!(
            bundle(&none, &madrid_2, None).map(|b| b.version()),
            Err(
                "version 2 is the only version of 'eta-madrid' in the repository, and no last \
                 release was brought in"
                    .to_owned()
            )
        );
    }
}
