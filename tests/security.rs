//! Reliability suite: security (being written).
