//! The trading state, its reasons, and the hysteresis between them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the orchestrator may do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum TradingState {
    /// Every promise is kept: trade normally.
    Active = 0,
    /// No new risk: only orders that reduce positions.
    Reducing = 1,
    /// No trading.
    Halted = 2,
}

impl TradingState {
    /// The stable name (`active`, `reducing`, `halted`).
    pub fn name(self) -> &'static str {
        match self {
            TradingState::Active => "active",
            TradingState::Reducing => "reducing",
            TradingState::Halted => "halted",
        }
    }

    /// From the stored byte; anything unknown is `Halted`.
    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            0 => TradingState::Active,
            1 => TradingState::Reducing,
            _ => TradingState::Halted,
        }
    }

    /// The value of the `cfdr_trading_state` metric (0, 1, 2).
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl std::fmt::Display for TradingState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the state is what it is. Names are a stable interface (metrics,
/// JSON, logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Reason {
    /// Committed work older than the RPO is not yet safe in the repository.
    RpoExposureExceeded,
    /// PostgreSQL's archiver reports failures (exposure will grow).
    ArchiveFailing,
    /// A scheduled backup is older than its limit.
    BackupStale,
    /// The repository did not answer within the cycle: exposure is unknown.
    RepositoryUnreachable,
    /// PostgreSQL did not answer: trades cannot be persisted.
    PrimaryDown,
    /// The server is in recovery (restore or failover in progress).
    PrimaryInRecovery,
    /// An open incident holds the trading halt.
    IncidentHalt,
    /// The refresher has not completed a cycle within the staleness limit.
    GuardStale,
    /// A restore or failover is recorded as in progress in the repository.
    OperationInProgress,
}

impl Reason {
    /// Every reason, in a fixed order.
    pub const ALL: [Reason; 9] = [
        Reason::RpoExposureExceeded,
        Reason::ArchiveFailing,
        Reason::BackupStale,
        Reason::RepositoryUnreachable,
        Reason::PrimaryDown,
        Reason::PrimaryInRecovery,
        Reason::IncidentHalt,
        Reason::GuardStale,
        Reason::OperationInProgress,
    ];

    /// The stable name, as serialised (`RpoExposureExceeded`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Reason::RpoExposureExceeded => "RpoExposureExceeded",
            Reason::ArchiveFailing => "ArchiveFailing",
            Reason::BackupStale => "BackupStale",
            Reason::RepositoryUnreachable => "RepositoryUnreachable",
            Reason::PrimaryDown => "PrimaryDown",
            Reason::PrimaryInRecovery => "PrimaryInRecovery",
            Reason::IncidentHalt => "IncidentHalt",
            Reason::GuardStale => "GuardStale",
            Reason::OperationInProgress => "OperationInProgress",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One condition seen in a cycle: the reason, what it does to the state
/// (`Active` = a warning that does not restrict trading) and words for a
/// person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// The reason code.
    pub reason: Reason,
    /// The state it asks for.
    pub effect: TradingState,
    /// What was seen, in words.
    pub detail: String,
}

/// A change of the published state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Transition {
    /// The state before.
    pub from: TradingState,
    /// The state after.
    pub to: TradingState,
    /// The strongest reason of the new state (`None` when it is `Active`).
    pub reason: Option<Reason>,
}

/// Enter worse states at once; return to better ones only after
/// `healthy_cycles` cycles in a row that ask for it.
#[derive(Clone, Debug)]
pub struct Hysteresis {
    current: TradingState,
    better_streak: u32,
    healthy_cycles: u32,
}

impl Hysteresis {
    /// Starting in `initial`.
    pub fn new(initial: TradingState, healthy_cycles: u32) -> Self {
        Self {
            current: initial,
            better_streak: 0,
            healthy_cycles: healthy_cycles.max(1),
        }
    }

    /// The state now.
    pub fn current(&self) -> TradingState {
        self.current
    }

    /// Feeds one cycle's target; returns the new state when it changed.
    pub fn step(&mut self, target: TradingState) -> Option<TradingState> {
        if target > self.current {
            self.current = target;
            self.better_streak = 0;
            return Some(target);
        }
        if target == self.current {
            self.better_streak = 0;
            return None;
        }
        self.better_streak += 1;
        if self.better_streak >= self.healthy_cycles {
            self.better_streak = 0;
            self.current = target;
            return Some(target);
        }
        None
    }
}

/// The strongest effect among `conditions`, and its reason.
pub(crate) fn target_of(conditions: &[Condition]) -> (TradingState, Option<Reason>) {
    conditions
        .iter()
        .filter(|c| c.effect > TradingState::Active)
        .max_by_key(|c| c.effect)
        .map_or((TradingState::Active, None), |c| (c.effect, Some(c.reason)))
}

/// What the RPO objective asks for, given the exposure and how long it has
/// been above the RPO.
pub(crate) fn rpo_effect(
    exposure: Duration,
    above_rpo_for: Duration,
    rpo: Duration,
    reduce_after: Duration,
    halt_at: Duration,
) -> TradingState {
    if exposure > halt_at {
        TradingState::Halted
    } else if exposure > rpo && above_rpo_for >= reduce_after {
        TradingState::Reducing
    } else {
        TradingState::Active
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TradingState::*;

    #[test]
    fn worse_at_once_better_after_n_cycles() {
        let mut h = Hysteresis::new(Active, 3);
        assert_eq!(h.step(Halted), Some(Halted));
        assert_eq!(h.step(Active), None);
        assert_eq!(h.step(Active), None);
        // A relapse restarts the count.
        assert_eq!(h.step(Halted), None);
        assert_eq!(h.step(Reducing), None);
        assert_eq!(h.step(Active), None);
        assert_eq!(h.step(Active), Some(Active));
        assert_eq!(h.current(), Active);
        assert_eq!(h.step(Reducing), Some(Reducing));
    }

    #[test]
    fn rpo_thresholds() {
        let s = Duration::from_secs;
        let (rpo, after, halt) = (s(10), s(2), s(20));
        assert_eq!(rpo_effect(s(5), s(0), rpo, after, halt), Active);
        assert_eq!(rpo_effect(s(11), s(1), rpo, after, halt), Active);
        assert_eq!(rpo_effect(s(12), s(2), rpo, after, halt), Reducing);
        assert_eq!(rpo_effect(s(21), s(0), rpo, after, halt), Halted);
    }

    #[test]
    fn unknown_codes_read_as_halted() {
        assert_eq!(TradingState::from_u8(7), Halted);
        for s in [Active, Reducing, Halted] {
            assert_eq!(TradingState::from_u8(s.code()), s);
        }
    }
}
