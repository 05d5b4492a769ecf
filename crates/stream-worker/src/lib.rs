//! stream-worker: reads notifications from the priority streams in a
//! consumer group, stores each batch in PostgreSQL in one transaction,
//! publishes the stored notifications to their users' channels, and only
//! then acknowledges the entries.

pub mod cli;
pub mod consumer;
pub mod startup;

pub use consumer::Consumer;
pub use startup::Worker;
