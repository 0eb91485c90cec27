//! Reliability suite: faults (being written).
