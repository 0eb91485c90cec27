//! Flags of `cfdr-status`.

use std::net::SocketAddr;
use std::path::PathBuf;

use cfdr_guard::Dur;
use clap::{Parser, Subcommand};

/// Recovery objectives at a glance (runbook sections 1 and 5.1): RPO
/// exposure, backup ages against their schedules, WAL archiving, replicas,
/// open incidents and the trading gate, for the primary of DATABASE_URL /
/// PG* and the configured repository.
///
/// Exit codes (monitoring-plugin convention): 0 ok, 1 warn, 2 critical,
/// 3 unknown (including errors before anything could be measured).
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
    cfdr-status                                   # the table\n  \
    cfdr-status --json                            # stable field names\n  \
    cfdr-status --check rpo-exposure --check wal-archiving   # a Nagios-style check\n  \
    cfdr-status --prometheus-textfile /var/lib/node_exporter/textfile/cfdr.prom\n  \
    cfdr-status serve --listen 0.0.0.0:9187       # /metrics /health /gate and the page"
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) common: cfdr_cli::Common,
    /// Print JSON instead of the table (fields documented in docs/objectives.md).
    #[arg(long)]
    pub(crate) json: bool,
    /// Report only these named checks (repeatable): trading-gate,
    /// guard-fresh, primary, repository, rpo-exposure, wal-archiving,
    /// incidents, backup:<kind>[/<class>].
    #[arg(long = "check", value_name = "NAME")]
    pub(crate) checks: Vec<String>,
    /// Also write the metrics to PATH (atomically) for node_exporter's
    /// textfile collector.
    #[arg(long, value_name = "PATH")]
    pub(crate) prometheus_textfile: Option<PathBuf>,
    /// How long to watch before reporting: the exposure needs a few samples.
    #[arg(long, default_value = "3s", value_parser = parse_dur)]
    pub(crate) observe: Dur,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Keep watching and serve /metrics, /health, /gate and the status page
    /// at /.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9187")]
        listen: SocketAddr,
        /// Seconds between reloads of the status page.
        #[arg(long, default_value_t = 5)]
        page_refresh: u32,
        /// Also rewrite this textfile (atomically) once per refresh.
        #[arg(long, value_name = "PATH")]
        prometheus_textfile: Option<PathBuf>,
    },
}

fn parse_dur(s: &str) -> Result<Dur, String> {
    Dur::parse(s)
}
