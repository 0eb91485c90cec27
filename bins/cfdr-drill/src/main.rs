//! cfdr-drill: thin wiring from flags to cfdr-drill's sandbox drill, the
//! progress display, and storing the report.
// Binaries own the terminal: printing is their job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cfdr_cli::Outcome;
use cfdr_drill::{Event, Fault, Scenario, Status, configured, sandbox};
use clap::Parser;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    cfdr_cli::main(cli.common.verbose, run(cli))
}

async fn run(cli: cli::Cli) -> Result<Outcome> {
    let config_file = match &cli.common.config {
        Some(path) => Some(std::path::absolute(path)?),
        None => Some(std::path::PathBuf::from(cfdr_config::SYSTEM_CONFIG)).filter(|p| p.exists()),
    };
    let config = cli.common.config()?;
    let programs = std::env::current_exe()?
        .parent()
        .context("the folder of cfdr-drill")?
        .to_owned();
    let objectives = config.drill.objectives(config.objectives.rpo.0);
    let configured = config_file.is_some() && !cli.sandbox;
    if configured && !cli.inject.is_empty() {
        bail!("--inject plants faults on the sandbox only: add --sandbox");
    }
    let scenarios = if configured && cli.scenarios == ["all"] {
        let mut all = configured::SAFE.to_vec();
        if cli.destructive {
            all.insert(1, Scenario::AccidentalDeletion);
            // Last: the primary it stops is the server the others read.
            if config.drill.primary_data_dir.is_some() && config.drill.replica_url.is_some() {
                all.push(Scenario::ReplicaFailover);
            }
        }
        all
    } else {
        Scenario::parse_list(&cli.scenarios)?
    };

    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    let mut progress = Progress::new();
    let on_event = |e: &Event<'_>| progress.show(e);
    let mut report = if configured {
        let live = ["DATABASE_URL", "PGHOST", "PGDATABASE"]
            .iter()
            .any(|v| std::env::var_os(v).is_some())
            .then(cfdr_pg::PgTarget::from_env)
            .transpose()?;
        let opts = configured::ConfiguredOptions {
            programs,
            pg_bin: cli.pg_bin.clone(),
            repository: config.repository.clone(),
            config_file,
            identities: config.identities()?.map(Arc::new),
            live,
            logical: config.pg.clone(),
            scenarios,
            destructive: cli.destructive,
            primary_data_dir: config.drill.primary_data_dir.clone(),
            replica: config
                .drill
                .replica_url
                .as_deref()
                .map(cfdr_pg::PgTarget::from_url)
                .transpose()?,
            objectives,
        };
        configured::run(&opts, cancel, on_event).await?
    } else {
        let mut opts = sandbox::SandboxOptions::new(programs, objectives);
        opts.scenarios = scenarios;
        opts.inject = cli
            .inject
            .iter()
            .map(|f| Fault::parse(f))
            .collect::<Result<_, _>>()?;
        for f in &opts.inject {
            if !opts.scenarios.contains(&f.scenario()) {
                bail!(
                    "--inject {f} goes into scenario {}, which this drill does not run: add --scenario {}",
                    f.scenario(),
                    f.scenario()
                );
            }
        }
        opts.pg_bin = cli.pg_bin.clone();
        sandbox::run(&opts, cancel, on_event).await?
    };
    progress.done();

    let repo = cfdr_storage::Repository::open_or_init(config.repository.build()?).await?;
    if report.status != Status::Successful {
        match cfdr_drill::open_incident(repo.store(), &report, config.drill.incident_severity).await
        {
            Ok(id) => report.incident = Some(id),
            Err(e) => eprintln!("warning: {e}"),
        }
    }
    let keys = cfdr_drill::store_report(repo.store(), &report).await?;
    if cli.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.to_markdown());
    }
    eprintln!(
        "drill {} {}; report stored in {} at {}",
        report.id,
        report.status.label(),
        repo.store().location().display(),
        keys.join(", ")
    );
    if let Some(id) = &report.incident {
        eprintln!("incident {id} opened (cfdr-incident show {id})");
    }
    Ok(match report.status {
        Status::Successful => Outcome::Ok,
        Status::Cancelled => Outcome::Code(130),
        _ => Outcome::CheckFailed,
    })
}

/// A spinner with the scenario, the step and the time since the disaster
/// against the RTO (refreshed while the step runs); one line per finished
/// step. Plain lines when stderr is not a terminal.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    now: Arc<Mutex<Showing>>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

/// What the spinner shows.
#[derive(Default)]
struct Showing {
    scenario: String,
    step: String,
    rto: Option<Duration>,
    disaster: Option<Instant>,
}

impl Showing {
    fn message(&self) -> String {
        let clock = match (self.disaster, self.rto) {
            (Some(d), Some(rto)) => format!(
                "  [{:.0} s since the disaster / RTO {} s]",
                d.elapsed().as_secs_f64(),
                rto.as_secs()
            ),
            _ => String::new(),
        };
        format!("{} › {}{clock}", self.scenario, self.step)
    }
}

impl Progress {
    fn new() -> Self {
        let now = Arc::new(Mutex::new(Showing::default()));
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        let ticker = bar.clone().map(|bar| {
            let now = now.clone();
            tokio::spawn(async move {
                loop {
                    if let Ok(s) = now.lock() {
                        bar.set_message(s.message());
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        });
        Self { bar, now, ticker }
    }

    fn line(&self, text: String) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn show(&mut self, event: &Event<'_>) {
        match event {
            Event::StepStarted {
                scenario,
                step,
                rto,
                disaster,
            } => {
                let new_scenario = self.now.lock().is_ok_and(|s| s.scenario != *scenario);
                if new_scenario {
                    self.line(format!("== {scenario}"));
                }
                if let Ok(mut s) = self.now.lock() {
                    *s = Showing {
                        scenario: (*scenario).to_owned(),
                        step: (*step).to_owned(),
                        rto: *rto,
                        disaster: *disaster,
                    };
                }
            }
            Event::StepFinished(p) => self.line(format!(
                "  {} {:>7.2} s  {}{}",
                if p.ok { "ok  " } else { "FAIL" },
                p.seconds,
                p.name,
                p.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )),
            Event::ScenarioFinished(r) => self.line(format!(
                "== {} {:?}: RTO {} s, RPO {} s ({} trades)",
                r.name,
                r.verdict,
                r.rto_actual_seconds
                    .map_or("-".into(), |s| format!("{s:.1}")),
                r.rpo_actual_seconds
                    .map_or("-".into(), |s| format!("{s:.1}")),
                r.rpo_trades.map_or("-".into(), |n| n.to_string())
            )),
            _ => {}
        }
    }

    fn done(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
