//! Embedding examples for cfdr's libraries: see this package's `[[example]]`s,
//! e.g. `cargo run -p cfdr-examples --example backup_a_file -- FILE`, or
//! `orchestrator_pretrade`, an order loop behind the recovery-objectives gate.
