//! Drills against a configured system: only what is safe there.
//!
//! Nothing live is touched: the newest physical backup with its WAL is
//! restored into a new data directory in a temp folder (a scratch server,
//! archiving off), the newest logical backup into a new database beside the
//! live one (dropped afterwards), and each secrets bundle is decrypted in
//! memory. The scenarios that harm the live system are refused here unless
//! `--destructive` ([`ConfiguredOptions::destructive`]) is given: then
//! `accidental-deletion` runs on a canary table the drill creates in the
//! live database and drops afterwards, and `replica-failover` stops the
//! live primary (its data directory on this host) and promotes the
//! configured standby, which stays the primary.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use cfdr_pg::physical::{self, RecoveryTarget};
use cfdr_pg::{LocalCluster, PgBin, PgTarget, logical};
use cfdr_secrets::Identities;
use cfdr_storage::{Repository, SecretStore, StorageOptions};
use tokio_util::sync::CancellationToken;

use crate::drive::{Plan, Recorder, Stage, drive};
use crate::error::{Error, Result};
use crate::report::{Cleanup, Report, ScenarioReport, Validation};
use crate::{Event, Objectives, Scenario, sample, sandbox, scenarios};
use cfdr_wal_archive::WalArchive;
use cfdr_wal_archive::chunks::StreamState;
use sqlx::Executor;

/// The scenarios that are safe against a configured system.
pub const SAFE: [Scenario; 2] = [Scenario::SecretsLoss, Scenario::DatabaseLoss];

/// The scenarios `--destructive` adds there: they write to the live
/// database (a canary table of the drill's own) or stop its primary.
pub const DESTRUCTIVE: [Scenario; 2] = [Scenario::AccidentalDeletion, Scenario::ReplicaFailover];

/// Rows of the canary table of a destructive `accidental-deletion`.
const CANARY_ROWS: u64 = 1000;

/// A drill against the configured repository and database.
#[derive(Clone, Debug)]
pub struct ConfiguredOptions {
    /// Folder holding `cfdr-wal` (the folder of `cfdr-drill` itself).
    pub programs: PathBuf,
    /// PostgreSQL's bin folder; found as the rest of cfdr finds it when unset.
    pub pg_bin: Option<PathBuf>,
    /// The repository.
    pub repository: StorageOptions,
    /// The configuration file, handed to `cfdr-wal fetch` by the restore.
    pub config_file: Option<PathBuf>,
    /// age identities for encrypted backups and the secrets bundles.
    pub identities: Option<Arc<Identities>>,
    /// The live database (`DATABASE_URL`/`PG*`): read only, and the server
    /// the logical backup is restored beside.
    pub live: Option<PgTarget>,
    /// Logical restore settings (`[pg]`).
    pub logical: logical::LogicalOptions,
    /// Scenarios to run: a subset of [`SAFE`], and of [`DESTRUCTIVE`] when
    /// `destructive`.
    pub scenarios: Vec<Scenario>,
    /// Allow the [`DESTRUCTIVE`] scenarios (`--destructive`).
    pub destructive: bool,
    /// The live primary's data directory on this host (`[drill]
    /// primary-data-dir`), for `replica-failover`.
    pub primary_data_dir: Option<PathBuf>,
    /// The standby `replica-failover` promotes (`[drill] replica-url`).
    pub replica: Option<PgTarget>,
    /// Objectives.
    pub objectives: Objectives,
}

struct Configured {
    opts: ConfiguredOptions,
    wal_exe: PathBuf,
    repo: Option<Repository>,
    scratch: Vec<LocalCluster>,
    databases: Vec<(PgTarget, String)>,
    /// Canary tables written to the live database, dropped at cleanup.
    canaries: Vec<(PgTarget, String)>,
    postgres: Option<String>,
    dir: tempfile::TempDir,
}

impl Configured {
    fn repo(&self) -> Result<&Repository> {
        self.repo
            .as_ref()
            .ok_or_else(|| Error::Check("the repository is not open".into()))
    }

    /// `restore_command`: the `cfdr-wal` beside `cfdr-drill` with the same
    /// configuration, spooling in `spool` of the scratch folder.
    fn restore_command(&self, spool: &str) -> Result<String> {
        Ok(physical::fetch_command(
            &self.wal_exe,
            self.opts.config_file.as_deref(),
            self.opts.repository.url.as_deref(),
            &self.dir.path().join(spool),
            0,
        )?)
    }

    /// `accidental-deletion` with `--destructive`: a canary table written
    /// to the live database, a bad `DELETE` of half its rows, PITR to just
    /// before it into a scratch server, every row checked there, the
    /// canary dropped.
    async fn accidental_deletion(
        &mut self,
        rec: &mut Recorder<'_>,
        rep: &mut ScenarioReport,
    ) -> Result<()> {
        let live = self.opts.live.clone().ok_or_else(|| {
            Error::Check(
                "accidental-deletion writes a canary table into the live database: set DATABASE_URL (or PG*)".into(),
            )
        })?;
        let table = format!(
            "public.cfdr_drill_canary_{}",
            jiff::Timestamp::now().as_millisecond()
        );
        rec.step(
            &format!("canary table {table} with {CANARY_ROWS} rows written to the live database (--destructive)"),
            async {
                let mut conn = live.connect().await?;
                conn.execute(
                    format!(
                        "CREATE TABLE {table} (id bigint PRIMARY KEY, payload text NOT NULL); \
                         INSERT INTO {table} SELECT g, md5(g::text) FROM generate_series(1, {CANARY_ROWS}) g"
                    )
                    .as_str(),
                )
                .await
                .map_err(scenarios::query_err("writing the canary table", &live))?;
                Ok(())
            },
        )
        .await?;
        self.canaries.push((live.clone(), table.clone()));
        let (before_time, deleted, delete_end) = rec
            .step(
                &format!("bad DELETE of half the rows of {table}"),
                scenarios::timed_delete(&live, &format!("DELETE FROM {table} WHERE id % 2 = 0")),
            )
            .await?;
        let disaster = Instant::now();
        rec.disaster = Some(disaster);
        let repo = self.repo()?.clone();
        // A running WAL stream makes the DELETE safe within about a second;
        // without one the segment is switched and archived.
        let state = StreamState::read(&WalArchive::new(repo.store().clone())).await?;
        let streaming = state.is_some_and(|s| {
            jiff::Timestamp::now().duration_since(s.updated_at)
                < jiff::SignedDuration::from_secs(60)
        });
        if streaming {
            rec.step(
                "WAL through the DELETE safe in the repository (cfdr-wal stream)",
                sandbox::stream_safe(&repo, delete_end),
            )
            .await?;
        } else {
            let segment = rec
                .step(
                    "WAL through the DELETE archived (pg_switch_wal)",
                    scenarios::switch_and_archive(&live),
                )
                .await?;
            rec.step(
                "repository is current",
                scenarios::check_fresh(&repo, &segment),
            )
            .await?;
        }
        let req = scenarios::pitr_request(
            RecoveryTarget::Time(before_time),
            self.dir.path().join("pitr-before-delete"),
            self.restore_command("spool-before-delete")?,
            self.opts.objectives.rto_database,
            self.opts.pg_bin.clone(),
            self.opts.identities.clone(),
        );
        let (cluster, report) = rec
            .step(
                &format!("PITR to {before_time}, just before the DELETE, into a scratch server"),
                scenarios::start_pitr(&repo, &req),
            )
            .await?;
        rec.bytes(report.backup.stored_size());
        let copy = cluster.target(&live.database);
        self.scratch.push(cluster);
        let check = rec
            .step(
                "amcheck on the PITR copy",
                scenarios::amcheck(&copy, "the PITR copy"),
            )
            .await?;
        rep.validations.push(check);
        let present: i64 = {
            let mut conn = copy.connect().await?;
            sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(&mut conn)
                .await
                .map_err(scenarios::query_err("counting the canary rows", &copy))?
        };
        let present = u64::try_from(present).unwrap_or(0);
        rep.validations.push(Validation {
            name: "every canary row is in the PITR copy".into(),
            passed: present == CANARY_ROWS,
            detail: format!(
                "{deleted} deleted in the live database, {present} of {CANARY_ROWS} in the copy"
            ),
        });
        rep.rto_actual_seconds = Some(disaster.elapsed().as_secs_f64());
        if present == CANARY_ROWS {
            rep.rpo_actual_seconds = Some(0.0);
        }
        rec.step(
            &format!("canary table {table} dropped from the live database"),
            async { drop_canary(&live, &table).await },
        )
        .await?;
        self.canaries.retain(|(_, t)| t != &table);
        Ok(())
    }

    /// `replica-failover` with `--destructive`: the live primary is stopped
    /// in immediate mode (as in a crash), the standby promoted and
    /// validated, the archive adopts the new timeline and archiving goes on
    /// there. The promoted standby stays the primary.
    async fn replica_failover(
        &mut self,
        rec: &mut Recorder<'_>,
        rep: &mut ScenarioReport,
    ) -> Result<()> {
        let data_dir = self.opts.primary_data_dir.clone().ok_or_else(|| {
            Error::Check(
                "replica-failover stops the live primary: set [drill] primary-data-dir to its data directory on this host".into(),
            )
        })?;
        let standby = self.opts.replica.clone().ok_or_else(|| {
            Error::Check("replica-failover promotes a standby: set [drill] replica-url".into())
        })?;
        rec.step(&format!("{standby} is a streaming standby"), async {
            let mut conn = standby.connect().await?;
            let streaming: bool = sqlx::query_scalar(
                "SELECT pg_is_in_recovery() AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')",
            )
            .fetch_one(&mut conn)
            .await
            .map_err(scenarios::query_err("reading the standby's state", &standby))?;
            if streaming {
                Ok(())
            } else {
                Err(Error::Check(format!(
                    "{standby} is not a standby streaming from the primary: nothing was stopped"
                )))
            }
        })
        .await?;
        let database = self
            .opts
            .live
            .as_ref()
            .map_or_else(|| "postgres".to_owned(), |t| t.database.clone());
        let before = match &self.opts.live {
            Some(t) => sample::last_trade(t).await.ok(),
            None => None,
        };
        let bin = PgBin::locate(self.opts.pg_bin.as_deref(), None).await?;
        rec.step(
            &format!(
                "the live primary in {} stopped (immediate, as in a crash)",
                data_dir.display()
            ),
            async {
                let mut cmd = bin.command("pg_ctl", true)?;
                cmd.args(["-m", "immediate", "-w", "-D"])
                    .arg(&data_dir)
                    .arg("stop");
                let out = cmd
                    .output()
                    .await
                    .map_err(Error::io("running pg_ctl stop on", &data_dir))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(Error::Check(format!(
                        "pg_ctl stop of {} failed: {}",
                        data_dir.display(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    )))
                }
            },
        )
        .await?;
        let disaster = Instant::now();
        rec.disaster = Some(disaster);
        let wait = self.opts.objectives.rto_database;
        let timeline = scenarios::promote_standby(rec, rep, &standby, "standby", wait).await?;
        let promoted = standby.with_database(&database);
        let check = rec
            .step(
                "amcheck on the promoted standby",
                scenarios::amcheck(&promoted, "the promoted standby"),
            )
            .await?;
        rep.validations.push(check);
        scenarios::invariants(rec, rep, "the promoted standby", &promoted).await?;
        if let Some(before) = before {
            let after = sample::last_trade(&promoted).await?;
            rep.last_trade_before = Some(before);
            rep.last_trade_after = Some(after);
            rep.rpo_trades = Some(before.saturating_sub(after));
            if after >= before {
                rep.rpo_actual_seconds = Some(0.0);
            }
        }
        let repo = self.repo()?.clone();
        scenarios::adopt_timeline(rec, &repo, timeline).await?;
        let segment = rec
            .step(
                &format!("archiving continues on timeline {timeline}"),
                scenarios::switch_and_archive(&standby),
            )
            .await?;
        rec.step(
            &format!("repository holds {segment}"),
            scenarios::check_fresh(&repo, &segment),
        )
        .await?;
        rep.rto_actual_seconds = Some(disaster.elapsed().as_secs_f64());
        Ok(())
    }

    async fn secrets(&mut self, rec: &mut Recorder<'_>, rep: &mut ScenarioReport) -> Result<()> {
        let disaster = Instant::now();
        rec.disaster = Some(disaster);
        let store = SecretStore::new(self.repo()?);
        let bundles = rec
            .step("secrets bundles listed", async {
                Ok(store.bundles().await?)
            })
            .await?;
        if bundles.is_empty() {
            return Err(Error::Check(
                "the repository holds no secrets bundle: back one up with `cfdr-secrets backup`"
                    .into(),
            ));
        }
        let identities = self.opts.identities.clone().ok_or_else(|| {
            Error::Check("no age identity is configured to decrypt the secrets bundles: set encryption.identity-file (or CFDR_AGE_IDENTITY_FILE)".into())
        })?;
        for bundle in bundles {
            let opened = rec
                .step(
                    &format!("newest version of {bundle} restored and decrypted"),
                    async {
                        let m = store.resolve(&bundle, "latest").await?;
                        let secrets = store.open(&m, &identities).await?;
                        Ok((m, secrets.len()))
                    },
                )
                .await?;
            rec.bytes(opened.0.stored.size);
            rep.validations.push(Validation {
                name: format!("secrets bundle {bundle} restores"),
                passed: opened.1 == opened.0.count,
                detail: format!(
                    "{}: {} secrets, names as in its manifest (the live secret store is not read)",
                    opened.0.label(),
                    opened.1
                ),
            });
        }
        rep.rto_actual_seconds = Some(disaster.elapsed().as_secs_f64());
        Ok(())
    }

    async fn database(&mut self, rec: &mut Recorder<'_>, rep: &mut ScenarioReport) -> Result<()> {
        let live = self.opts.live.clone();
        // The disaster is assumed, not made: the live database keeps running.
        let before = match &live {
            Some(t) => sample::last_trade(t).await.ok(),
            None => None,
        };
        let disaster = Instant::now();
        rec.disaster = Some(disaster);
        let repo = self.repo()?.clone();
        let physical = async {
            let base = rec
                .step("newest physical backup", async {
                    Ok(physical::choose_backup(&repo, &RecoveryTarget::Latest, jiff::Timestamp::now()).await?)
                })
                .await?;
            rec.step(
                "WAL continuity from the base backup",
                scenarios::check_continuity(&repo, &base),
            )
            .await?;
            let command = self.restore_command("spool")?;
            let req = scenarios::pitr_request(
                RecoveryTarget::Latest,
                self.dir.path().join("pitr-latest"),
                command,
                self.opts.objectives.rto_database,
                self.opts.pg_bin.clone(),
                self.opts.identities.clone(),
            );
            let (cluster, report) = rec
                .step(
                    "physical restore into a scratch server: newest base backup + all archived WAL (PITR --latest)",
                    scenarios::start_pitr(&repo, &req),
                )
                .await?;
            rec.bytes(report.backup.stored_size());
            let database = self
                .opts
                .live
                .as_ref()
                .map_or_else(|| "postgres".to_owned(), |t| t.database.clone());
            let copy = cluster.target(&database);
            self.scratch.push(cluster);
            let check = rec
                .step("amcheck on the physical restore", scenarios::amcheck(&copy, "the physical restore"))
                .await?;
            rep.validations.push(check);
            scenarios::invariants(rec, rep, "the physical restore", &copy).await?;
            if let Some(before) = before {
                let after = sample::last_trade(&copy).await?;
                rep.last_trade_before = Some(before);
                rep.last_trade_after = Some(after);
                rep.rpo_trades = Some(before.saturating_sub(after));
            }
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = physical {
            scenarios::record_failure(rep, &e);
        }
        let logical_part = async {
            let live = live.ok_or_else(|| {
                Error::Check("no live server to restore the logical backup beside: set DATABASE_URL (or PG*)".into())
            })?;
            let manifest = rec
                .step("newest logical backup", async {
                    Ok(logical::find(&repo, &logical::Selector::Latest, Some(&live.database)).await?)
                })
                .await?;
            let name = format!("{}_drill_{}", live.database, logical::short_id(&manifest.id));
            let req = logical::RestoreRequest {
                target_db: Some(name.clone()),
                identities: self.opts.identities.clone(),
                ..logical::RestoreRequest::default()
            };
            let opts = self.opts.logical.clone();
            rec.step(
                &format!("logical restore of {} into the new database {name} (tables and row counts verified)", manifest.id),
                async {
                    logical::restore(&repo, &live, &manifest, &opts, &req, |_| {}).await?;
                    Ok(())
                },
            )
            .await?;
            rec.bytes(manifest.stored_size());
            let copy = live.with_database(&name);
            self.databases.push((live.clone(), name));
            rep.validations.push(Validation {
                name: "row counts of the logical restore equal the source at the dump's snapshot".into(),
                passed: true,
                detail: "checked by the restore against the counts the backup recorded".into(),
            });
            let check = rec
                .step("amcheck on the logical restore", scenarios::amcheck(&copy, "the logical restore"))
                .await?;
            rep.validations.push(check);
            scenarios::invariants(rec, rep, "the logical restore", &copy).await?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = logical_part {
            scenarios::record_failure(rep, &e);
        }
        if rep.failures.is_empty() {
            rep.rto_actual_seconds = Some(disaster.elapsed().as_secs_f64());
        }
        Ok(())
    }
}

impl Stage for Configured {
    const MODE: &'static str = "configured";

    async fn setup(&mut self, rec: &mut Recorder<'_>) -> Result<()> {
        let options = self.opts.repository.clone();
        let repo = rec
            .step("repository opened", async {
                Ok(Repository::open(options.build()?).await?)
            })
            .await?;
        self.repo = Some(repo);
        if let Some(live) = self.opts.live.clone() {
            let version = rec
                .step(
                    &format!("live database {live} reachable (read only)"),
                    async { Ok(cfdr_pg::admin::server_version(&live).await?.1) },
                )
                .await?;
            self.postgres = Some(version);
        }
        Ok(())
    }

    async fn play(
        &mut self,
        scenario: Scenario,
        rec: &mut Recorder<'_>,
        rep: &mut ScenarioReport,
    ) -> Result<()> {
        match scenario {
            Scenario::SecretsLoss => self.secrets(rec, rep).await,
            Scenario::DatabaseLoss => self.database(rec, rep).await,
            Scenario::AccidentalDeletion if self.opts.destructive => {
                self.accidental_deletion(rec, rep).await
            }
            Scenario::ReplicaFailover if self.opts.destructive => {
                self.replica_failover(rec, rep).await
            }
            other => Err(Error::Check(format!(
                "{other} harms a live system and runs on the sandbox only"
            ))),
        }
    }

    async fn cleanup(mut self) -> Cleanup {
        let mut problems = Vec::new();
        for (server, table) in self.canaries.drain(..) {
            if let Err(e) = drop_canary(&server, &table).await {
                problems.push(e.to_string());
            }
        }
        for (server, name) in self.databases.drain(..) {
            if let Err(e) =
                cfdr_pg::admin::drop_database(&server.with_database("postgres"), &name).await
            {
                problems.push(e.to_string());
            }
        }
        for mut c in self.scratch.drain(..) {
            if let Err(e) = c.stop().await {
                problems.push(e.to_string());
            }
        }
        let path = self.dir.path().to_owned();
        if let Err(e) = self.dir.close() {
            problems.push(format!("{}: {e}", path.display()));
        }
        if problems.is_empty() {
            Cleanup {
                status: "removed".into(),
                detail: format!(
                    "scratch servers stopped, restored databases dropped, {} deleted",
                    path.display()
                ),
            }
        } else {
            Cleanup {
                status: "failed".into(),
                detail: problems.join("; "),
            }
        }
    }

    fn postgres(&self) -> Option<String> {
        self.postgres.clone()
    }
}

/// Runs the safe scenarios of `opts` against the configured system and
/// returns the report (not yet stored). Errors when a scenario is not
/// safe there or a prerequisite is missing.
pub async fn run(
    opts: &ConfiguredOptions,
    cancel: CancellationToken,
    mut on_event: impl for<'e> FnMut(&Event<'e>),
) -> Result<Report> {
    let allowed = |s: &Scenario| SAFE.contains(s) || (opts.destructive && DESTRUCTIVE.contains(s));
    if let Some(s) = opts.scenarios.iter().find(|s| !allowed(s)) {
        let extra = match s {
            Scenario::AccidentalDeletion => {
                format!(" (or add --destructive to run {s} on a canary table in the live database)")
            }
            Scenario::ReplicaFailover => " (or add --destructive, with [drill] primary-data-dir and replica-url, to stop the live primary and promote the standby)".to_owned(),
            _ => String::new(),
        };
        return Err(Error::Check(format!(
            "{s} harms a live system (it deletes rows or kills the primary) and runs only on the sandbox (`cfdr-drill --sandbox --scenario {s}`){extra}; against a configured system the safe scenarios are {}",
            SAFE.map(Scenario::name).join(", ")
        )));
    }
    if opts.scenarios.contains(&Scenario::ReplicaFailover)
        && (opts.primary_data_dir.is_none() || opts.replica.is_none())
    {
        return Err(Error::Check(
            "replica-failover stops the live primary and promotes its standby: set [drill] primary-data-dir (the primary's data directory on this host) and replica-url (the standby) in the configuration".into(),
        ));
    }
    let wal_exe = opts.programs.join("cfdr-wal");
    if !wal_exe.is_file() {
        return Err(Error::ProgramMissing { path: wal_exe });
    }
    // The restore finds the programs itself; a missing PostgreSQL is
    // named here, before anything starts.
    PgBin::locate(opts.pg_bin.as_deref(), None)
        .await
        .map_err(|e| Error::PostgresMissing {
            reason: e.to_string(),
        })?;
    let dir = tempfile::Builder::new()
        .prefix("cfdr-drill-")
        .tempdir()
        .map_err(Error::io(
            "creating a scratch folder in",
            std::env::temp_dir(),
        ))?;
    cfdr_pg::chown_tree(dir.path())?;
    let stage = Configured {
        opts: opts.clone(),
        wal_exe,
        repo: None,
        scratch: Vec::new(),
        databases: Vec::new(),
        canaries: Vec::new(),
        postgres: None,
        dir,
    };
    let plan = Plan {
        scenarios: opts.scenarios.clone(),
        inject: Vec::new(),
        objectives: opts.objectives,
    };
    Ok(drive(stage, &plan, cancel, &mut on_event).await)
}

/// Drops a canary table of the drill from the live database.
async fn drop_canary(live: &PgTarget, table: &str) -> Result<()> {
    let mut conn = live.connect().await?;
    conn.execute(format!("DROP TABLE IF EXISTS {table}").as_str())
        .await
        .map_err(scenarios::query_err("dropping the canary table", live))?;
    Ok(())
}
