//! Reliability suite: crash (being written).
