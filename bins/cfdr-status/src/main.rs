//! cfdr-status: thin wiring from flags to the cfdr-guard library.
// Binaries own the terminal: printing is their job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod serve;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use cfdr_cli::Outcome;
use cfdr_guard::{Guard, Level, Status};
use cli::{Cli, Command};

fn main() -> ExitCode {
    // A mistyped flag is "unknown" to monitoring, not "critical".
    let cli: Cli = cfdr_cli::parse_args(Level::Unknown.exit_code());
    cfdr_cli::main(cli.common.verbose, async move {
        match run(cli).await {
            Ok(o) => Ok(o),
            // Nothing could be measured: "unknown" for monitoring systems.
            Err(e) => {
                eprintln!("error: {}", cfdr_cli::error_chain(&e));
                Ok(Outcome::Code(Level::Unknown.exit_code()))
            }
        }
    })
}

async fn run(cli: Cli) -> Result<Outcome> {
    let config = cli.common.config()?;
    let settings = config.guard_settings()?;
    let repo = cfdr_cli::open_repository(&config).await?;
    let pg = cfdr_pg::PgTarget::from_env()?;
    let guard = Guard::start(settings, repo, pg).await?;
    if let Some(Command::Serve {
        listen,
        page_refresh,
        prometheus_textfile,
    }) = cli.command
    {
        return serve::run(guard, listen, page_refresh, prometheus_textfile).await;
    }
    tokio::time::sleep(cli.observe.0).await;
    let status = guard.status();
    let checks = select_checks(&status, &cli.checks)?;
    let overall = checks
        .iter()
        .map(|c| c.level)
        .max()
        .unwrap_or(Level::Unknown);
    if let Some(path) = &cli.prometheus_textfile {
        write_atomic(path, &cfdr_guard::metrics::render(&status))?;
    }
    if cli.json {
        let doc = serde_json::json!({
            "status": status,
            "checks": checks,
            "overall": overall,
            "exit_code": overall.exit_code(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", cfdr_guard::text::render(&status, &checks));
        println!("\nOVERALL {}", overall.name());
    }
    Ok(Outcome::Code(overall.exit_code()))
}

/// The checks asked for, all of them by default; an unknown name is an
/// error naming the known ones.
fn select_checks(status: &Status, wanted: &[String]) -> Result<Vec<cfdr_guard::Check>> {
    let all = status.checks();
    if wanted.is_empty() {
        return Ok(all);
    }
    let mut out = Vec::new();
    for name in wanted {
        match all.iter().find(|c| &c.name == name) {
            Some(c) => out.push(c.clone()),
            None => {
                let known: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
                bail!(
                    "unknown check {name:?}; the checks are: {}",
                    known.join(", ")
                );
            }
        }
    }
    Ok(out)
}

/// Writes `text` to a temp file beside `path` and renames it into place,
/// so a collector never reads half a file.
pub(crate) fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temp file in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    // node_exporter runs as another user: the file is readable by all.
    set_readable(tmp.path())?;
    tmp.persist(path)
        .with_context(|| format!("cannot rename the metrics into {}", path.display()))?;
    Ok(())
}

fn set_readable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    Ok(())
}
