//! `preflight`: verify a release of a model repository against an endpoint.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use preflight_harness::{Suite, TargetSpec, VerifyConfig, exit, output, verify};

/// Release verification for ML model services.
///
/// Examples:
///   preflight verify --models fixtures/models --target process --out target/preflight
///   preflight verify --models fixtures/models --target url=http://127.0.0.1:8080 --only 'eta-*' --suites parity,quality
///
/// Exit codes: 0 every suite passed (or was skipped), 1 a suite failed,
/// 2 a usage, bundle or baseline error, 3 the endpoint could not be reached,
/// started, or stopped answering.
#[derive(Debug, Parser)]
#[command(version, about, long_about, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Derive the suites from each bundle and run them against the target.
    Verify {
        /// The model repository; each model's highest version is verified.
        #[arg(long, value_name = "DIR")]
        models: PathBuf,
        /// `url=http://HOST:PORT` (any Open Inference Protocol server) or
        /// `process` (start preflight-serve on the repository for this run).
        #[arg(long, value_parser = TargetSpec::parse)]
        target: TargetSpec,
        /// The previous release's report.json: drives every comparison with
        /// the last release; without it those checks are skipped.
        #[arg(long, value_name = "REPORT")]
        baseline: Option<PathBuf>,
        /// Where report.json, summary.md, junit.xml and the server log go.
        #[arg(long, default_value = "target/preflight")]
        out: PathBuf,
        /// Only models whose name matches one of these globs (`eta-*`).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Suites to run, comma-separated: unit, parity, property, nullable, latency, size, quality, fallback.
        #[arg(long, value_delimiter = ',', value_parser = parse_suite)]
        suites: Vec<Suite>,
        /// Models verified at once. Latency figures are only clean with 1.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// The preflight-serve binary for `--target process` (default: beside preflight).
        #[arg(long, value_name = "PATH", env = "PREFLIGHT_SERVE")]
        serve_bin: Option<PathBuf>,
        /// Seconds a `url=` target may take to answer 200 on /v2/health/ready.
        #[arg(long, default_value_t = 30)]
        ready_timeout: u64,
    },
}

fn parse_suite(name: &str) -> Result<Suite, String> {
    Suite::parse(name).ok_or_else(|| {
        format!("unknown suite '{name}' (unit, parity, property, nullable, latency, size, quality, fallback)")
    })
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::PASSED
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let Commands::Verify {
        models,
        target,
        baseline,
        out,
        only,
        suites,
        jobs,
        serve_bin,
        ready_timeout,
    } = cli.command;
    let suites = if suites.is_empty() {
        Suite::ALL.to_vec()
    } else {
        suites
    };
    let config = VerifyConfig {
        models,
        target,
        baseline,
        out: out.clone(),
        only,
        suites,
        jobs,
        serve_bin,
        ready_timeout: std::time::Duration::from_secs(ready_timeout),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("preflight: cannot start the async runtime: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let progress = |line: &str| eprintln!("{line}");
    match runtime.block_on(verify(&config, &progress)) {
        Err(e) => {
            eprintln!("preflight: {e}");
            ExitCode::from(e.exit_code())
        }
        Ok(report) => match output::write_all(&report, &out) {
            Err(e) => {
                eprintln!("preflight: {e}");
                ExitCode::from(exit::USAGE)
            }
            Ok(files) => {
                eprintln!("\n{}", output::markdown(&report));
                for file in files {
                    eprintln!("wrote {}", file.display());
                }
                ExitCode::from(if report.verdict == preflight_harness::Verdict::Failed {
                    exit::FAILED
                } else {
                    exit::PASSED
                })
            }
        },
    }
}
