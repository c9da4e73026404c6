//! `preflight`: verify a release of a model repository against an endpoint.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use preflight_harness::container::Limits;
use preflight_harness::terminal::Terminal;
use preflight_harness::{
    Policy, Protocol, Report, Shard, Suite, TargetOptions, TargetSpec, Verdict, VerifyConfig,
    aborted, exit, output, verify,
};

/// Release verification for ML model services.
///
/// Examples:
///   preflight verify --models fixtures/models --target process --out target/preflight
///   preflight verify --models fixtures/models --target url=http://127.0.0.1:8080 --only 'eta-*'
/// --suites parity,quality
///   preflight verify --models models --target process --shard 2/4 --out shard-2
///   preflight check models
///   preflight report merge shard-*/report.json --out target/preflight
///   preflight report diff last-release/report.json target/preflight/report.json
///
/// Exit codes: 0 every suite passed (or was skipped), 1 a suite failed,
/// 2 a usage, bundle or baseline error, 3 the endpoint could not be reached,
/// started, or stopped answering.
#[derive(Debug, Parser)]
#[command(name = "preflight", version, about, long_about, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Check bundles against the format's rules, serving nothing: each
    /// bundle's first problem with its file, line and key. Exits 2 when a
    /// bundle is wrong.
    Check {
        /// Bundles, model folders or repositories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Work with reports.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Derive the suites from each bundle and run them against the target.
    Verify(Box<VerifyArgs>),
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The model repository; each model's highest version is verified.
    #[arg(long, value_name = "DIR")]
    models: PathBuf,
    /// `url=http://HOST:PORT` (any Open Inference Protocol server),
    /// `process` (start preflight-serve on the repository for this run) or
    /// `container=IMAGE` (the serving image on the local Docker engine; never pulled).
    #[arg(long, value_parser = TargetSpec::parse)]
    target: TargetSpec,
    /// The previous release's report.json: drives every comparison with
    /// the last release that is not measured in this run; without it
    /// those checks are skipped.
    #[arg(long, value_name = "REPORT")]
    baseline: Option<PathBuf>,
    /// The last release's endpoint, timed beside the target request by
    /// request in the latency run (same forms as --target; a process or
    /// container is started on the same repository), for the models whose
    /// repository holds no version below the candidate's.
    #[arg(long, value_parser = TargetSpec::parse, value_name = "TARGET")]
    baseline_target: Option<TargetSpec>,
    /// A repository that holds the last release of the models: served
    /// beside the target by an endpoint of the same kind (process or
    /// container), so that a model whose repository holds only the
    /// candidate is still timed beside its last release, and compat reads
    /// its bundle. Without it, and without --baseline-target, the models
    /// folder as it was at the baseline report's commit, where the folder
    /// is a git checkout.
    #[arg(long, value_name = "DIR", conflicts_with = "baseline_target")]
    baseline_models: Option<PathBuf>,
    /// Where report.json, summary.md, junit.xml and the server log go.
    #[arg(long, default_value = "target/preflight")]
    out: PathBuf,
    /// Only models whose name matches one of these globs (`eta-*`).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Suites to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',', value_enum)]
    suites: Vec<Suite>,
    /// Models whose functional suites run at once. Latency is measured
    /// afterwards for the whole fleet in one schedule, whatever this is.
    #[arg(long, default_value_t = 4)]
    jobs: usize,
    /// Verify only shard K of N (`--shard 2/4`): the models whose name
    /// hashes to it. `preflight report merge` joins the shards' reports.
    #[arg(long, value_parser = Shard::parse, value_name = "K/N")]
    shard: Option<Shard>,
    /// The preflight-serve binary for `--target process` (default: beside preflight).
    #[arg(long, value_name = "PATH", env = "PREFLIGHT_SERVE")]
    serve_bin: Option<PathBuf>,
    /// The ONNX Runtime shared library (libonnxruntime.so), for the suites
    /// that run the artifact itself and for the process target. Default:
    /// ORT_DYLIB_PATH, else target/ort/ as fetched by `cargo xtask ort`.
    #[arg(long, value_name = "PATH")]
    ort_lib: Option<PathBuf>,
    /// The repository API token of a `url=` target: with it the rollout
    /// suite pins, routes and restores the target's models (a process or
    /// container target gets a token of its own).
    #[arg(long, env = "PREFLIGHT_REPOSITORY_TOKEN", hide_env_values = true)]
    repository_token: Option<String>,
    /// What the suites' inference goes over: `rest`, or `grpc`, the
    /// protocol's gRPC service (of the server a process target starts, or at
    /// --grpc-addr for a url= target); health, metadata and Preflight's
    /// extensions stay on REST.
    #[arg(long, value_enum, default_value_t = ProtocolArg::Rest)]
    protocol: ProtocolArg,
    /// The gRPC service of a `url=` target, HOST:PORT, for --protocol grpc.
    #[arg(long, value_name = "HOST:PORT")]
    grpc_addr: Option<String>,
    /// Seconds a `url=` target may take to answer 200 on /v2/health/ready.
    #[arg(long, default_value_t = 30)]
    ready_timeout: u64,
    /// CPUs given to a `container=` target.
    #[arg(long, default_value_t = 1.0)]
    cpus: f64,
    /// Memory given to a `container=` target, in MiB.
    #[arg(long, default_value_t = 512)]
    memory_mib: u64,
    /// Skips that fail the release, comma-separated: a suite name (that
    /// suite must judge every model), `suites` (every suite that runs),
    /// `baseline` (every comparison with the last release is made; needs
    /// --baseline), `manifest` (an unknown key in a manifest is an error,
    /// not a warning), or `strict` for all of them. Default: none; every
    /// skip is listed in the reports either way.
    #[arg(long, value_delimiter = ',', value_name = "WHAT")]
    require: Vec<String>,
}

impl VerifyArgs {
    fn into_config(self) -> Result<VerifyConfig, String> {
        let suites = if self.suites.is_empty() {
            Suite::all().to_vec()
        } else {
            self.suites
        };
        Ok(VerifyConfig {
            policy: Policy::new(&self.require, &suites)?,
            suites,
            models: self.models,
            target: self.target,
            baseline: self.baseline,
            baseline_target: self.baseline_target,
            baseline_models: self.baseline_models,
            out: self.out,
            only: self.only,
            shard: self.shard,
            jobs: self.jobs,
            target_options: TargetOptions {
                serve_bin: self.serve_bin,
                ort_lib: self.ort_lib,
                ready_timeout: std::time::Duration::from_secs(self.ready_timeout),
                limits: Limits {
                    cpus: self.cpus,
                    memory_bytes: self.memory_mib * 1024 * 1024,
                },
                repository_token: self.repository_token,
                protocol: match self.protocol {
                    ProtocolArg::Rest => Protocol::Rest,
                    ProtocolArg::Grpc => Protocol::Grpc,
                },
                grpc_addr: self.grpc_addr,
            },
        })
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProtocolArg {
    Rest,
    Grpc,
}

#[derive(Debug, Subcommand)]
enum ReportCommand {
    /// Print what changed between two reports: models, versions, suite
    /// verdicts, and figures that moved by more than 1%. Exits 1 when a
    /// suite's verdict went to failed.
    Diff {
        /// The earlier report.json.
        old: PathBuf,
        /// The later report.json.
        new: PathBuf,
    },
    /// Join the reports of every shard of one release (`verify --shard K/N`)
    /// into the four reports of the whole release; exits with the merged
    /// verdict's code.
    Merge {
        /// report.json of each shard, every shard exactly once.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        /// Where the merged report.json, summary.md, junit.xml and report.html go.
        #[arg(long, default_value = "target/preflight")]
        out: PathBuf,
        /// The previous release's report.json, for the changes in report.html.
        #[arg(long, value_name = "REPORT")]
        baseline: Option<PathBuf>,
    },
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
    let code = match cli.command {
        Commands::Check { paths } => check(&paths),
        Commands::Report {
            command: ReportCommand::Diff { old, new },
        } => diff(&old, &new),
        Commands::Report {
            command:
                ReportCommand::Merge {
                    shards,
                    out,
                    baseline,
                },
        } => merge(shards, &out, baseline.as_deref()),
        Commands::Verify(args) => match args.into_config() {
            Ok(config) => run_verify(config),
            Err(e) => {
                eprintln!("preflight: {e}");
                exit::USAGE
            }
        },
    };
    ExitCode::from(code)
}

#[allow(clippy::print_stdout)] // The problems are the command's output.
fn check(paths: &[PathBuf]) -> u8 {
    let mut failed = false;
    for path in paths {
        let checked = preflight_harness::check::check(path);
        for warning in &checked.warnings {
            println!("warning: {warning}");
        }
        for problem in &checked.problems {
            println!("error: {problem}");
        }
        failed |= !checked.problems.is_empty();
        println!(
            "{}: {} bundle(s) checked, {} problem(s)",
            path.display(),
            checked.bundles,
            checked.problems.len()
        );
    }
    if failed { exit::USAGE } else { exit::PASSED }
}

#[allow(clippy::print_stdout)] // The diff is the command's output.
fn diff(old: &std::path::Path, new: &std::path::Path) -> u8 {
    match (Report::read(old), Report::read(new)) {
        (Ok(old), Ok(new)) => {
            let changes = preflight_harness::diff::changes(&old, &new);
            print!("{}", preflight_harness::diff::render(&changes));
            // Like `diff`: a script can gate on it.
            if changes.iter().any(|c| c.worse) {
                exit::FAILED
            } else {
                exit::PASSED
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("preflight: {e}");
            exit::USAGE
        }
    }
}

fn run_verify(config: VerifyConfig) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("preflight: cannot start the async runtime: {e}");
            return exit::USAGE;
        }
    };
    let terminal = Terminal::stderr();
    let started_at = std::time::SystemTime::now();
    let outcome = runtime.block_on(verify(&config, &terminal.progress()));
    terminal.finish();
    // An aborted run still writes its reports, carrying the error, so that
    // CI shows why.
    let (report, code) = match outcome {
        Ok(report) => {
            let code = verdict_code(&report);
            (report, code)
        }
        // The summary says why.
        Err(e) => (aborted(&config, started_at, &e), e.exit_code()),
    };
    // verify() has read it already; a failure here is impossible short of a race.
    let baseline = config
        .baseline
        .as_deref()
        .and_then(|p| Report::read(p).ok());
    write_reports(&terminal, &report, baseline.as_ref(), &config.out, code)
}

fn verdict_code(report: &Report) -> u8 {
    if report.verdict == Verdict::Failed {
        exit::FAILED
    } else {
        exit::PASSED
    }
}

/// Writes the four reports and prints the summary; `code` unless the
/// reports could not be written where asked (then 2, saying where they are).
fn write_reports(
    terminal: &Terminal,
    report: &Report,
    baseline: Option<&Report>,
    out: &std::path::Path,
    code: u8,
) -> u8 {
    match output::write_all(report, baseline, out) {
        Ok(files) => {
            eprint!("{}", terminal.summary(report, &files));
            code
        }
        Err(e) => {
            eprint!("{}", terminal.summary(report, &[]));
            eprintln!("preflight: {e}");
            exit::USAGE
        }
    }
}

fn merge(shards: Vec<PathBuf>, out: &std::path::Path, baseline: Option<&std::path::Path>) -> u8 {
    let read = || -> Result<(Report, Option<Report>), String> {
        let reports = shards
            .into_iter()
            .map(|p| Report::read(&p).map(|r| (p, r)))
            .collect::<Result<Vec<_>, _>>()?;
        let merged = preflight_harness::merge::merge(reports)?;
        let baseline = baseline.map(Report::read).transpose()?;
        Ok((merged, baseline))
    };
    match read() {
        Ok((merged, baseline)) => {
            let code = match &merged.aborted {
                Some(aborted) => aborted.exit_code,
                None => verdict_code(&merged),
            };
            write_reports(
                &Terminal::summary_only(),
                &merged,
                baseline.as_ref(),
                out,
                code,
            )
        }
        Err(e) => {
            eprintln!("preflight: {e}");
            exit::USAGE
        }
    }
}
