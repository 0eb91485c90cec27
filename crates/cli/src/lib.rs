//! What every cfdr binary shares: the global flags, logging setup, config
//! loading and the exit-code policy (0 success, 1 a check or objective
//! failed or the work stopped part-way, 2 usage or runtime error, 3 another
//! process holds the lock the command needs).
//!
//! ```no_run
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     common: cfdr_cli::Common,
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     let cli = Cli::parse();
//!     cfdr_cli::main(cli.common.verbose, async move {
//!         let config = cli.common.config()?;
//!         let _repo = cfdr_cli::open_repository(&config).await?;
//!         Ok(cfdr_cli::Outcome::Ok)
//!     })
//! }
//! ```
#![allow(clippy::print_stderr)]

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use cfdr_config::Config;
use cfdr_storage::Repository;

/// Flags every binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Config file (default: $CFDR_CONFIG, then /etc/cfdr/cfdr.toml if present).
    #[arg(long, global = true, env = "CFDR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Repository URL: file:///path, s3://bucket/prefix, gs://..., azblob://..., memory://
    #[arg(short, long, global = true, env = "CFDR_REPOSITORY")]
    pub repository: Option<String>,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Common {
    /// The configuration with `--repository` applied.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(url) = &self.repository {
            config.repository.url = Some(url.clone());
        }
        Ok(config)
    }
}

/// Opens the configured repository.
pub async fn open_repository(config: &Config) -> anyhow::Result<Repository> {
    Ok(Repository::open(config.repository.build()?).await?)
}

/// How a command ended, as an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Ok,
    /// Exit 1: a verification or objective failed, or the work stopped
    /// part-way (the command says what a re-run does).
    CheckFailed,
    /// Exit 3: another process holds the lock; nothing was changed.
    Busy,
}

/// Logs to stderr: warnings by default, more with each `-v`; `RUST_LOG`
/// overrides.
pub fn init_logging(verbose: u8) {
    // opendal logs expected misses (a stat of an absent key) as warnings.
    let filter = ["warn,opendal=error", "info,opendal=error", "debug"][usize::from(verbose.min(2))];
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Sets up logging to stderr, runs `work` on a tokio runtime and maps the
/// result to the documented exit codes, printing errors with their causes.
pub fn main<F>(verbose: u8, work: F) -> ExitCode
where
    F: Future<Output = anyhow::Result<Outcome>>,
{
    init_logging(verbose);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(work) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::CheckFailed) => ExitCode::from(1),
        Ok(Outcome::Busy) => ExitCode::from(3),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Bytes in binary units, for humans.
pub fn human_bytes(bytes: u64) -> String {
    let mut v = bytes as f64;
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if v < 1024.0 {
            return format!("{v:.1} {unit}");
        }
        v /= 1024.0;
    }
    format!("{v:.1} TiB")
}
