//! stream-worker: reads notifications from the priority streams in a
//! consumer group, stores each round in PostgreSQL in one transaction,
//! publishes the stored notifications to their users' channels, and only
//! then acknowledges the entries. Also: claims entries of dead consumers,
//! dead-letters what can never be processed, trims acknowledged entries,
//! brings snoozed notifications back and expires delivered ones on time,
//! deletes notifications past the retention period, and serves `/metrics`, `/healthz`, `/readyz`.

pub mod cli;
pub mod consumer;
pub mod lanes;
pub mod metrics;
pub mod retention;
pub mod round_trace;
pub mod startup;
pub mod timers;
pub mod trimmer;

pub use consumer::Consumer;
pub use startup::Worker;
