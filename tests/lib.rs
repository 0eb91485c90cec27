//! End-to-end tests of cfdr live in this package's `[[test]]` targets; the
//! library is empty.
