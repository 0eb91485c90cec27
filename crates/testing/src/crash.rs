//! Crash-consistency trials: run a cfdr writer, SIGKILL it at a seeded
//! random moment, let the test check the repository, repeat.
//!
//! The kill moment of each trial is drawn uniformly from zero to the
//! writer's measured uninterrupted duration ([`Crash::calibrate`]), so
//! kills land at start-up, mid-write and near the end. Everything random
//! comes from one seed, printed first; `CFDR_TEST_SEED=<n>` replays a run.
//! 10 trials per writer, 50 with `CFDR_TEST_LONG=1`.
//!
//! ```no_run
//! use std::process::Command;
//! use cfdr_testing::crash::Crash;
//!
//! let mut crash = Crash::new("cfdr-backup logical");
//! crash.calibrate(&mut Command::new("cfdr-backup"));
//! for trial in crash.trials() {
//!     let kill = crash.kill(trial, &mut Command::new("cfdr-backup"));
//!     // ... check the repository, run the command again ...
//!     let wrote = true;
//!     crash.record(&kill, wrote);
//! }
//! crash.finish();
//! ```

use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The seed of this run: `CFDR_TEST_SEED` when set, else a random one.
pub fn seed() -> u64 {
    std::env::var("CFDR_TEST_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(rand::random)
}

/// Trials per writer: 10, or 50 under `CFDR_TEST_LONG=1`.
pub fn trial_count() -> usize {
    if crate::long_tests() { 50 } else { 10 }
}

/// One SIGKILL.
#[derive(Debug, Clone)]
pub struct Kill {
    /// The trial number.
    pub trial: usize,
    /// When the kill was sent, after the start.
    pub after: Duration,
    /// The command had already exited on its own when the kill came.
    pub finished: bool,
    /// Its exit status (a signal unless `finished`).
    pub status: Option<ExitStatus>,
}

/// Where the kills landed, for the figures line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Trials run.
    pub trials: usize,
    /// Killed before it had written anything.
    pub killed_before_write: usize,
    /// Killed after it had started writing, before it finished.
    pub killed_during: usize,
    /// Finished before the kill came.
    pub completed_before_kill: usize,
    /// Data lost: complete backups, acknowledged WAL or events that a kill
    /// damaged or removed (must stay 0).
    pub lost: usize,
}

/// The trial loop of one writer.
#[derive(Debug)]
pub struct Crash {
    command: String,
    seed: u64,
    rng: StdRng,
    trials: usize,
    clean: Duration,
    summary: Summary,
    losses: Vec<String>,
}

impl Crash {
    /// Trials of `command` (its name in messages and the figures line).
    /// Prints the seed.
    #[allow(clippy::print_stdout)]
    pub fn new(command: &str) -> Self {
        let seed = seed();
        println!("crash {command}: seed {seed} (CFDR_TEST_SEED={seed} replays it)");
        Crash {
            command: command.to_owned(),
            seed,
            rng: StdRng::seed_from_u64(seed),
            trials: trial_count(),
            clean: Duration::from_millis(100),
            summary: Summary::default(),
            losses: Vec::new(),
        }
    }

    /// The seed in use.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Trial numbers to run.
    pub fn trials(&self) -> std::ops::Range<usize> {
        0..self.trials
    }

    /// Runs `cmd` to completion, asserts it succeeded and takes its wall
    /// time as the window kill moments are drawn from. Returns its output.
    pub fn calibrate(&mut self, cmd: &mut Command) -> std::process::Output {
        let start = Instant::now();
        let out = cmd.output().expect("the command starts");
        self.clean = start.elapsed();
        assert!(
            out.status.success(),
            "{}: the clean run failed: {}",
            self.command,
            crate::output_text(&out)
        );
        out
    }

    /// Runs the command `runs` times to completion (each must succeed) and
    /// takes the median wall time as the kill window: the first run of a
    /// binary is often slowed by cold caches.
    pub fn calibrate_median(&mut self, runs: usize, mut make: impl FnMut() -> Command) {
        let mut times: Vec<Duration> = (0..runs.max(1))
            .map(|_| {
                self.calibrate(&mut make());
                self.clean
            })
            .collect();
        times.sort();
        self.clean = times[times.len() / 2];
    }

    /// Sets the kill window to `clean` (a duration measured by the test).
    pub fn set_clean(&mut self, clean: Duration) {
        self.clean = clean;
    }

    /// The measured uninterrupted duration.
    pub fn clean(&self) -> Duration {
        self.clean
    }

    /// The next kill moment: uniform in `[0, clean]`.
    pub fn moment(&mut self) -> Duration {
        let max = self.clean.as_micros().max(1) as u64;
        Duration::from_micros(self.rng.random_range(0..=max))
    }

    /// A seeded number in `range`, for tests that vary their input.
    pub fn pick(&mut self, range: std::ops::Range<usize>) -> usize {
        self.rng.random_range(range)
    }

    /// Spawns `cmd` (stdio to /dev/null), SIGKILLs it at the next kill
    /// moment and reaps it.
    pub fn kill(&mut self, trial: usize, cmd: &mut Command) -> Kill {
        let moment = self.moment();
        let start = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the command starts");
        std::thread::sleep(moment.saturating_sub(start.elapsed()));
        let finished = child.try_wait().expect("try_wait").is_some();
        let after = start.elapsed();
        // Killing a process that already exited (not yet reaped) is harmless.
        let _ = child.kill();
        let status = child.wait().ok();
        Kill {
            trial,
            after,
            finished,
            status,
        }
    }

    /// SIGKILLs process `pid` (one this test did not spawn: a push that
    /// PostgreSQL's archiver started, the detached push worker) at the next
    /// kill moment after `started`. Returns whether it had already gone.
    pub fn kill_pid(&mut self, trial: usize, pid: u32, started: Instant) -> Kill {
        let moment = self.moment();
        std::thread::sleep(moment.saturating_sub(started.elapsed()));
        let alive = pid_alive(pid);
        let after = started.elapsed();
        if alive {
            sigkill(pid);
        }
        Kill {
            trial,
            after,
            finished: !alive,
            status: None,
        }
    }

    /// Text for assertion messages: writer, trial, kill time, seed.
    pub fn at(&self, kill: &Kill) -> String {
        format!(
            "{} trial {} killed after {:?} of a {:?} clean run{} (CFDR_TEST_SEED={} replays it)",
            self.command,
            kill.trial,
            kill.after,
            self.clean,
            if kill.finished {
                ", it had finished"
            } else {
                ""
            },
            self.seed
        )
    }

    /// Records a loss of data (a complete backup that no longer verifies,
    /// an acknowledged WAL segment missing...). The trials go on; [`finish`]
    /// fails listing every loss.
    ///
    /// [`finish`]: Crash::finish
    pub fn lost(&mut self, kill: &Kill, what: impl std::fmt::Display) {
        self.summary.lost += 1;
        self.losses.push(format!("{}: {what}", self.at(kill)));
    }

    /// Counts where `kill` landed: finished first, or killed before or
    /// after its first write (`wrote`: the repository changed).
    pub fn record(&mut self, kill: &Kill, wrote: bool) {
        self.summary.trials += 1;
        if kill.finished {
            self.summary.completed_before_kill += 1;
        } else if wrote {
            self.summary.killed_during += 1;
        } else {
            self.summary.killed_before_write += 1;
        }
    }

    /// Prints the figures line and fails on any recorded loss, or when no
    /// kill landed while the command was still running.
    #[allow(clippy::print_stdout)]
    pub fn finish(self) -> Summary {
        let s = &self.summary;
        println!(
            "reliability: crash {} trials={} killed_before_write={} killed_during={} completed_before_kill={} lost={} clean_ms={} seed={}",
            self.command,
            s.trials,
            s.killed_before_write,
            s.killed_during,
            s.completed_before_kill,
            s.lost,
            self.clean.as_millis(),
            self.seed
        );
        assert!(
            self.losses.is_empty(),
            "data lost after kills:\n{}",
            self.losses.join("\n")
        );
        assert!(
            s.killed_during + s.killed_before_write > 0,
            "{}: every run finished before its kill (CFDR_TEST_SEED={})",
            self.command,
            self.seed
        );
        self.summary
    }
}

/// Sends SIGKILL to process `pid` (`kill -KILL`).
pub fn sigkill(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Whether process `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Pids of running processes of `program` (the file name of their first
/// argument, so a shell running it does not count) whose command line holds
/// every one of `needles`, by pid.
pub fn find_processes(program: &str, needles: &[&str]) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        let first = line.split(' ').next().unwrap_or_default();
        let runs = std::path::Path::new(first)
            .file_name()
            .is_some_and(|n| n == program);
        if runs && needles.iter().all(|n| line.contains(n)) && pid_alive(pid) {
            found.push(pid);
        }
    }
    found.sort_unstable();
    found
}
