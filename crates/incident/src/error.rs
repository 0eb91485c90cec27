//! The one error type of cfdr-incident.

/// Errors from parsing input, the incident state machine, the event store
/// and configuration. Every variant names the incident, object key or
/// setting it concerns and what to do next. Notification failures are not
/// errors: they are recorded in the incident's timeline (see
/// [`crate::notify`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A severity is not one of P0, P1, P2, P3.
    #[error("unknown severity {given:?}: use P0 (critical), P1 (high), P2 (medium) or P3 (low)")]
    UnknownSeverity {
        /// The text given.
        given: String,
    },
    /// A required text (title, author, reason) is empty.
    #[error("{what} must not be empty")]
    Empty {
        /// Which field.
        what: &'static str,
    },
    /// An incident id is malformed.
    #[error("invalid incident id {id:?}: expected INC-YYYYMMDD-NNN, e.g. INC-20251106-001")]
    InvalidId {
        /// The id as given.
        id: String,
    },
    /// No incident with this id exists in the repository.
    #[error("no incident {id} in the repository: `cfdr-incident list` shows the known ids")]
    UnknownIncident {
        /// The id.
        id: String,
    },
    /// An incident's events exist but none of them opens it readably.
    #[error("{id} cannot be read: {reason}")]
    Unreadable {
        /// The incident.
        id: String,
        /// What is wrong with its first event.
        reason: String,
    },
    /// The change is not allowed in the incident's current state.
    #[error("{id}: cannot {action}: {reason}")]
    IllegalTransition {
        /// The incident.
        id: String,
        /// What was attempted ("resolve", "reopen", ...).
        action: &'static str,
        /// Why not, and what to do instead.
        reason: String,
    },
    /// A setting in `[incident]` is invalid.
    #[error("invalid incident setting {setting}: {reason}")]
    InvalidSetting {
        /// The setting.
        setting: String,
        /// What is wrong.
        reason: String,
    },
    /// Many writers kept taking the next event number first.
    #[error(
        "{id}: gave up appending after {attempts} attempts because other writers kept taking the next event number; retry"
    )]
    Contention {
        /// The incident.
        id: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The repository failed.
    #[error(transparent)]
    Storage(#[from] cfdr_storage::Error),
}

impl Error {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Contention { .. } => true,
            Error::Storage(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
