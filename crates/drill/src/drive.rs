//! What every drill shares, whatever it runs on: timed steps, the race of
//! each scenario against Ctrl-C and the full-system RTO, verdicts, cleanup
//! and the assembled report.

use std::future::Future;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::report::{Cleanup, Phase, Report, ScenarioReport, Status, Verdict};
use crate::{Event, Fault, Objectives, Scenario, drill_id, scenarios};

/// Where a drill runs: the sandbox, or a configured system.
pub(crate) trait Stage {
    /// `sandbox` or `configured`.
    const MODE: &'static str;
    /// Builds or opens what the scenarios need.
    fn setup(&mut self, rec: &mut Recorder<'_>) -> impl Future<Output = Result<()>>;
    /// Plays one scenario.
    fn play(
        &mut self,
        scenario: Scenario,
        rec: &mut Recorder<'_>,
        rep: &mut ScenarioReport,
    ) -> impl Future<Output = Result<()>>;
    /// Removes what the drill made; says what happened.
    fn cleanup(self) -> impl Future<Output = Cleanup>;
    /// Server version of the drill's clusters.
    fn postgres(&self) -> Option<String>;
}

/// What a drill runs.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) scenarios: Vec<Scenario>,
    pub(crate) inject: Vec<Fault>,
    pub(crate) objectives: Objectives,
}

impl Plan {
    /// `all`, or the scenario names joined with `_` (a character every
    /// backend takes in a key).
    pub(crate) fn scope(&self) -> String {
        if self.scenarios.len() == Scenario::ALL.len() {
            "all".to_owned()
        } else {
            let names: Vec<&str> = self.scenarios.iter().map(|s| s.name()).collect();
            names.join("_")
        }
    }
}

/// Times steps, tells the caller, and keeps the phases (also those of a
/// scenario whose future was dropped on cancellation).
pub(crate) struct Recorder<'a> {
    pub(crate) phases: Vec<Phase>,
    on_event: &'a mut dyn for<'e> FnMut(&Event<'e>),
    pub(crate) scenario: String,
    pub(crate) rto: Option<Duration>,
    pub(crate) disaster: Option<Instant>,
}

impl Recorder<'_> {
    /// Sets the scenario the next steps belong to.
    pub(crate) fn begin(&mut self, scenario: &str, rto: Option<Duration>) {
        self.scenario = scenario.to_owned();
        self.rto = rto;
        self.disaster = None;
    }

    /// Runs `work` as the step `name`. A step that never ends (cancelled)
    /// stays in the record as failed, "interrupted".
    pub(crate) async fn step<T>(
        &mut self,
        name: &str,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let start = Timestamp::now();
        let clock = Instant::now();
        (self.on_event)(&Event::StepStarted {
            scenario: &self.scenario,
            step: name,
            rto: self.rto,
            disaster: self.disaster,
        });
        self.phases.push(Phase {
            scenario: self.scenario.clone(),
            name: name.to_owned(),
            start,
            end: start,
            seconds: 0.0,
            bytes: None,
            ok: false,
            error: Some("interrupted".into()),
        });
        let result = work.await;
        let seconds = clock.elapsed().as_secs_f64();
        if let Some(p) = self.phases.last_mut() {
            p.end = Timestamp::now();
            p.seconds = seconds;
            p.ok = result.is_ok();
            p.error = result.as_ref().err().map(ToString::to_string);
        }
        if let Some(p) = self.phases.last() {
            (self.on_event)(&Event::StepFinished(p));
        }
        result
    }

    /// Records the bytes the last step moved.
    pub(crate) fn bytes(&mut self, n: u64) {
        if let Some(p) = self.phases.last_mut() {
            p.bytes = Some(n);
        }
    }

    pub(crate) fn finished(&mut self, report: &ScenarioReport) {
        (self.on_event)(&Event::ScenarioFinished(report));
    }
}

/// How a step or scenario race ended.
enum Race<T> {
    Done(T),
    Cancelled,
    TimedOut,
}

async fn race<T>(
    work: impl Future<Output = T>,
    cancel: &CancellationToken,
    deadline: tokio::time::Instant,
) -> Race<T> {
    tokio::select! {
        r = work => Race::Done(r),
        () = cancel.cancelled() => Race::Cancelled,
        () = tokio::time::sleep_until(deadline) => Race::TimedOut,
    }
}

/// Runs `plan` on `stage`: set-up, each scenario raced against `cancel`
/// and the full-system RTO, cleanup (always), the report (not yet stored).
pub(crate) async fn drive<S: Stage>(
    mut stage: S,
    plan: &Plan,
    cancel: CancellationToken,
    on_event: &mut dyn for<'e> FnMut(&Event<'e>),
) -> Report {
    let started = Timestamp::now();
    let clock = tokio::time::Instant::now();
    let deadline = clock + plan.objectives.rto_full_system;
    let mut rec = Recorder {
        phases: Vec::new(),
        on_event,
        scenario: S::MODE.into(),
        rto: None,
        disaster: None,
    };
    let mut stopped: Option<Status> = None;
    let mut setup_ok = false;
    match race(stage.setup(&mut rec), &cancel, deadline).await {
        Race::Done(r) => setup_ok = r.is_ok(),
        Race::Cancelled => stopped = Some(Status::Cancelled),
        Race::TimedOut => stopped = Some(Status::TimedOut),
    }
    let mut reports = Vec::new();
    for &scenario in &plan.scenarios {
        let now = Timestamp::now();
        let mut rep = ScenarioReport {
            name: scenario.name().to_owned(),
            description: scenario.description().to_owned(),
            verdict: Verdict::NotRun,
            started: now,
            finished: now,
            rto_objective_seconds: plan.objectives.rto_database.as_secs_f64(),
            rto_actual_seconds: None,
            rpo_objective_seconds: plan.objectives.rpo.as_secs_f64(),
            rpo_actual_seconds: None,
            rpo_trades: None,
            last_trade_before: None,
            last_trade_after: None,
            validations: Vec::new(),
            injected: plan
                .inject
                .iter()
                .copied()
                .filter(|f| f.scenario() == scenario)
                .collect(),
            faults_detected: Vec::new(),
            failures: Vec::new(),
        };
        if stopped.is_none() && setup_ok {
            rec.begin(scenario.name(), Some(plan.objectives.rto_database));
            let outcome = race(stage.play(scenario, &mut rec, &mut rep), &cancel, deadline).await;
            match outcome {
                Race::Done(result) => {
                    if let Err(e) = result {
                        scenarios::record_failure(&mut rep, &e);
                    }
                    scenarios::judge(&mut rep);
                }
                Race::Cancelled => stopped = Some(Status::Cancelled),
                Race::TimedOut => stopped = Some(Status::TimedOut),
            }
            if stopped.is_some() {
                rep.verdict = Verdict::Failed;
                rep.failures
                    .push("stopped before it finished (see the report's status)".into());
            }
            rep.finished = Timestamp::now();
            rec.finished(&rep);
        }
        reports.push(rep);
    }
    rec.begin("cleanup", None);
    let postgres = stage.postgres();
    let cleanup_start = Timestamp::now();
    let cleanup = stage.cleanup().await;
    let end = Timestamp::now();
    rec.phases.push(Phase {
        scenario: "cleanup".into(),
        name: format!("{} removed", S::MODE),
        start: cleanup_start,
        end,
        seconds: end.duration_since(cleanup_start).as_secs_f64(),
        bytes: None,
        ok: cleanup.status == "removed",
        error: (cleanup.status != "removed").then(|| cleanup.detail.clone()),
    });
    let status = stopped.unwrap_or(
        // A drill that leaves servers or folders behind did not succeed.
        if setup_ok
            && cleanup.status == "removed"
            && reports.iter().all(|r| r.verdict == Verdict::Passed)
        {
            Status::Successful
        } else {
            Status::Failed
        },
    );
    let worst =
        |f: fn(&ScenarioReport) -> Option<f64>| reports.iter().filter_map(f).reduce(f64::max);
    Report {
        version: crate::REPORT_VERSION,
        id: drill_id(started, &plan.scope()),
        status,
        started,
        finished: end,
        mode: S::MODE.into(),
        rto_actual_seconds: worst(|r| r.rto_actual_seconds),
        rpo_actual_seconds: worst(|r| r.rpo_actual_seconds),
        rpo_actual_trades: reports.iter().filter_map(|r| r.rpo_trades).max(),
        rto_database_objective_seconds: plan.objectives.rto_database.as_secs_f64(),
        rto_full_system_objective_seconds: plan.objectives.rto_full_system.as_secs_f64(),
        rpo_objective_seconds: plan.objectives.rpo.as_secs_f64(),
        total_seconds: clock.elapsed().as_secs_f64(),
        phases: rec.phases,
        scenarios: reports,
        injected: plan.inject.clone(),
        cleanup,
        incident: None,
        postgres,
    }
}
