//! Reliability suite: concurrency (being written).
