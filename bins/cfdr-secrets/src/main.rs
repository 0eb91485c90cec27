//! cfdr-secrets: thin wiring from flags to cfdr-secrets and cfdr-storage.
// Binaries own the terminal: printing is their job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use cfdr_secrets::{Identities, SecretBundle, Sink, Source};
use cfdr_storage::{Repository, SecretStore};
use clap::Parser;
use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    cfdr_cli::init_logging(cli.verbose);
    let result = tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", cfdr_cli::error_chain(&e));
            let conflict = e.downcast_ref::<cfdr_secrets::Error>();
            let check_failed = matches!(conflict, Some(cfdr_secrets::Error::VaultConflict { .. }));
            ExitCode::from(if check_failed { 1 } else { 2 })
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let mut config = cfdr_config::Config::load(cli.config.as_deref())?;
    if let Some(url) = &cli.repository {
        config.select_repository(url);
    }
    let identities = || cli.identities(&config);
    let vault = |needed: bool| cli::vault(needed);
    let store = config.repository.build()?;
    let mount = cli.vault_mount.as_deref();
    let bundle = cli.bundle.as_deref().unwrap_or("default");
    let mut out = std::io::stdout().lock();
    match &cli.command {
        Command::Keygen {
            output: Some(path),
            public: false,
        } => {
            let public =
                cfdr_secrets::write_identity_file(path, &jiff::Timestamp::now().to_string())?;
            eprintln!(
                "wrote {} (mode 0600); add this recipient to encryption.recipients:",
                path.display()
            );
            writeln!(out, "{public}")?;
        }
        Command::Keygen { .. } => {
            let r = identities()?.to_recipients()?;
            for (key, fp) in r.keys().iter().zip(r.fingerprints()) {
                writeln!(out, "{key}  fingerprint {fp}")?;
            }
        }
        Command::Backup {
            from,
            recipients: given,
            armor,
            work_factor,
            init,
        } => {
            let source = Source::parse(from, mount)?;
            let encryption = cli.encryption(&config, given, *work_factor)?;
            let secrets = source.load(vault(source.needs_vault())?.as_ref()).await?;
            let repo = if *init {
                Repository::open_or_init(store).await?
            } else {
                Repository::open(store).await?
            };
            let now = jiff::Timestamp::now();
            let m = SecretStore::new(&repo)
                .backup(
                    bundle,
                    &secrets,
                    &encryption,
                    *armor,
                    &source.to_string(),
                    now,
                )
                .await?;
            writeln!(out, "stored {} ({} secrets)", m.label(), m.count)?;
        }
        Command::List { json } => {
            let s = SecretStore::new(&Repository::open(store).await?);
            let all = s.list(cli.bundle.as_deref()).await?;
            if *json {
                writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
            }
            for m in all.iter().filter(|_| !json) {
                writeln!(out, "{m}")?;
            }
        }
        Command::Restore {
            version,
            to,
            force,
            dry_run,
        } => {
            let sink = Sink::parse(to, mount)?;
            let client = vault(sink.needs_vault())?;
            let s = SecretStore::new(&Repository::open(store).await?);
            let m = s.resolve(bundle, version).await?;
            let secrets = s.open(&m, &identities()?).await?;
            match (sink.render(&secrets, &m.label())?, &sink, client) {
                (Some(text), _, _) => out.write_all(text.expose())?,
                (None, Sink::Vault(path), Some(c)) => {
                    write!(out, "{}", c.import(path, &secrets, *force, *dry_run).await?)?;
                }
                _ => bail!("no Vault client for {to}"),
            }
        }
        Command::Diff { a, b } => {
            let repo = Repository::open(store).await;
            let mut sides: Vec<SecretBundle> = Vec::new();
            for spec in [a, b] {
                sides.push(if spec == "-" || spec.contains(':') {
                    let source = Source::parse(spec, mount)?;
                    source.load(vault(source.needs_vault())?.as_ref()).await?
                } else {
                    let s = SecretStore::new(repo.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?);
                    s.open(&s.resolve(bundle, spec).await?, &identities()?)
                        .await?
                });
            }
            let d = sides[0].diff(&sides[1]);
            write!(out, "{d}")?;
            return Ok(ExitCode::from(u8::from(!d.is_empty())));
        }
        Command::Rekey {
            recipients: given,
            new_identity,
            dry_run,
        } => {
            let to = cli::recipients(&config, given)?;
            let mut ids = identities()?;
            if let Some(f) = new_identity {
                ids = ids.with(Identities::from_file(f, false)?);
            }
            let s = SecretStore::new(&Repository::open(store).await?);
            write!(
                out,
                "{}",
                s.rekey(&to, &ids, *dry_run, jiff::Timestamp::now()).await?
            )?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
