//! What every cfdr binary shares: the global flags, logging setup, config
//! loading and the exit-code policy (0 success, 1 a check or objective
//! failed, 2 usage or runtime error).
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
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cfdr_config::Config;
use cfdr_storage::{CheckOutcome, Progress, Repository};

/// Flags every binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Config file (default: $CFDR_CONFIG, then /etc/cfdr/cfdr.toml if present).
    #[arg(long, global = true, env = "CFDR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Repository URL (file:///path, s3://bucket/prefix, gs://..., azblob://...,
    /// memory://) or the name of a [[copy]] in the config, to read from that copy.
    #[arg(short, long, global = true, env = "CFDR_REPOSITORY")]
    pub repository: Option<String>,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Common {
    /// The configuration with `--repository` applied: a `[[copy]]` name
    /// (or a copy's URL) selects that copy with all its options.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(arg) = &self.repository {
            config.select_repository(arg);
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
    /// Exit 1: a verification or objective failed.
    CheckFailed,
    /// Exit with this code, for commands whose caller defines the codes
    /// (PostgreSQL treats a `restore_command` exit above 125 as fatal).
    Code(u8),
}

/// Parses the command line like [`clap::Parser::parse`], except that a
/// usage error (unknown flag, missing argument) exits with `usage_code`
/// instead of clap's 2; `--help` and `--version` still exit 0. For
/// commands whose callers read exit codes their own way: monitoring takes 2
/// as "critical" where a typo is "unknown", and PostgreSQL ends recovery on
/// a `restore_command` exit of 2 where it should stop.
pub fn parse_args<C: clap::Parser>(usage_code: u8) -> C {
    C::try_parse().unwrap_or_else(|e| {
        if !e.use_stderr() {
            e.exit()
        }
        let _ = e.print();
        std::process::exit(i32::from(usage_code))
    })
}

/// Logs to stderr: warnings by default, more with each `-v`; `RUST_LOG`
/// overrides.
pub fn init_logging(verbose: u8) {
    // opendal logs expected misses (a stat of an absent key) as warnings,
    // and each failed call of a service (with its backtrace when
    // RUST_BACKTRACE is set) as an error that the command's own error
    // message repeats with its cause and the next step: those only at -vv.
    let filter = [
        "warn,opendal=error,opendal::services=off",
        "info,opendal=error,opendal::services=off",
        "debug",
    ][usize::from(verbose.min(2))];
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: cron mail and journald show them raw.
        .with_ansi(std::io::stderr().is_terminal())
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
        Ok(Outcome::Code(code)) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::from(2)
        }
    }
}

/// An error and its causes on one line, each cause once and in order.
///
/// cfdr's errors put their cause in their own message, so naive chain
/// printing (`{:#}`) repeats it; a cause whose text is already shown is
/// skipped.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
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

/// How long ago `then` was, in the largest whole unit (`45s`, `12m`, `3h`, `9d`).
pub fn human_age(now: jiff::Timestamp, then: jiff::Timestamp) -> String {
    let secs = now.duration_since(then).as_secs().max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3_600 => format!("{}m", secs / 60),
        3_600..86_400 => format!("{}h", secs / 3_600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// A backup's verified state for listings: `never`, or the newest check's
/// kind, outcome and age (`restore-test ok 2d`, `checksums FAILED 3h`).
pub fn verified_state(now: jiff::Timestamp, check: Option<&CheckOutcome>) -> String {
    match check {
        None => "never".into(),
        Some(c) => format!(
            "{} {} {}",
            c.kind.name(),
            if c.passed { "ok" } else { "FAILED" },
            human_age(now, c.time)
        ),
    }
}

/// A live byte counter on stderr while long work runs, only when stderr is
/// a terminal (cron and CI logs stay clean). Finishes when dropped.
pub struct ProgressBar {
    bar: Option<indicatif::ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl ProgressBar {
    /// Shows `what` with the bytes `progress` has counted, their rate and
    /// the elapsed time. Must be called inside the tokio runtime.
    pub fn bytes(what: &str, progress: &Progress) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self {
                bar: None,
                ticker: None,
            };
        }
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} {msg}: {bytes} ({bytes_per_sec}), {elapsed}",
        ) {
            bar.set_style(style);
        }
        bar.set_message(what.to_owned());
        let (ticking, count) = (bar.clone(), progress.clone());
        let ticker = tokio::spawn(async move {
            loop {
                ticking.set_position(count.bytes());
                ticking.tick();
                tokio::time::sleep(Duration::from_millis(120)).await;
            }
        });
        Self {
            bar: Some(bar),
            ticker: Some(ticker),
        }
    }
}

impl Drop for ProgressBar {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use cfdr_storage::CheckKind;

    #[test]
    fn error_chain_prints_each_cause_once_in_order() {
        // A storage error that shows its cause in its own message, as most
        // cfdr errors do, with context on top.
        let io = std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "Permission denied (os error 13)",
        );
        let err = cfdr_storage::Error::Sink {
            key: "backups/x/dump.pgdump.zst".into(),
            source: io,
        };
        let e = anyhow::Error::new(err).context("restore failed");
        assert_eq!(
            error_chain(&e),
            "restore failed: writing decoded backups/x/dump.pgdump.zst to its destination failed: Permission denied (os error 13)"
        );
        // A cause not in the message is still shown, after it.
        let e = anyhow::Error::new(std::io::Error::other("disk full")).context("writing the log");
        assert_eq!(error_chain(&e), "writing the log: disk full");
    }

    #[test]
    fn verified_state_reads_for_humans() {
        let now: jiff::Timestamp = "2026-11-26T12:00:00Z".parse().unwrap();
        assert_eq!(verified_state(now, None), "never");
        let check = CheckOutcome {
            kind: CheckKind::RestoreTest,
            time: "2026-11-24T11:00:00Z".parse().unwrap(),
            passed: true,
        };
        assert_eq!(verified_state(now, Some(&check)), "restore-test ok 2d");
        let check = CheckOutcome {
            kind: CheckKind::Checksums,
            time: "2026-11-26T11:59:15Z".parse().unwrap(),
            passed: false,
        };
        assert_eq!(verified_state(now, Some(&check)), "checksums FAILED 45s");
        assert_eq!(
            human_age(now, "2026-11-26T09:30:00Z".parse().unwrap()),
            "2h"
        );
    }
}
