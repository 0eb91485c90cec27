//! Reliability suite: bit_rot (being written).
