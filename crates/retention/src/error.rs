//! The one error type of this crate.

/// Everything that can go wrong while reading a policy or building a plan.
///
/// Every variant names the input it concerns (an item id, a WAL file name, a
/// configuration value). None of them is transient: retrying with the same
/// input gives the same error, so the caller should fix the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two items share one id; ids must be unique so that a plan is stable.
    #[error("duplicate item id {id:?}: every backup needs a unique id")]
    DuplicateId {
        /// The repeated id.
        id: String,
    },
    /// Two WAL files share one name.
    #[error("duplicate WAL file {name:?} in the input")]
    DuplicateWal {
        /// The repeated name.
        name: String,
    },
    /// A physical backup's WAL range ends before it starts.
    #[error("backup {id:?}: WAL stop position {stop} is before start position {start}")]
    InvalidWalRange {
        /// The backup id.
        id: String,
        /// Its start LSN, as text.
        start: String,
        /// Its stop LSN, as text.
        stop: String,
    },
    /// The configured time zone is not in the bundled IANA database.
    #[error("unknown time zone {name:?}: use an IANA name such as \"UTC\" or \"Europe/Zurich\"")]
    UnknownTimeZone {
        /// The name as configured.
        name: String,
    },
    /// The WAL segment size is not a power of two between 1 MiB and 1 GiB.
    #[error("invalid WAL segment size {size}: PostgreSQL allows powers of two from 1 MiB to 1 GiB")]
    InvalidSegmentSize {
        /// The configured size in bytes.
        size: u64,
    },
    /// A WAL file name is neither a segment, a partial segment, a backup
    /// label nor a timeline history file.
    #[error("not a WAL file name: {name:?} ({why})")]
    InvalidWalName {
        /// The name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// An LSN is not in PostgreSQL's `X/Y` hexadecimal form.
    #[error("invalid LSN {text:?}: expected two hexadecimal numbers like \"16/B374D848\"")]
    InvalidLsn {
        /// The text.
        text: String,
    },
    /// A retention duration does not follow the `1y2m3w4d5h` grammar.
    #[error(
        "invalid duration {text:?}: expected numbers with units y, m (months), w, d, h, e.g. \"1y6m\" or \"90d\""
    )]
    InvalidDuration {
        /// The text.
        text: String,
    },
    /// A keep count is neither a non-negative integer, -1 nor "unlimited".
    #[error("invalid keep count {text:?}: expected a number >= 0, -1 or \"unlimited\"")]
    InvalidCount {
        /// The value as text.
        text: String,
    },
    /// A plan reason or note could not be read back from its text form.
    #[error("unknown reason {text:?}")]
    InvalidReason {
        /// The text.
        text: String,
    },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
