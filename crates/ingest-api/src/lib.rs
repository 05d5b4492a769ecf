//! ingest-api: the producer-facing HTTP API. A notification is validated,
//! given a UUIDv7 id and appended to its priority stream; the producer gets
//! `202` only after Redis acknowledged the append.

pub mod auth;
pub mod cli;
pub mod error;
pub mod key_cache;
pub mod metrics;
pub mod openapi;
pub mod pipeline;
pub mod rate_limit;
pub mod recently_unknown;
pub mod routes;
pub mod startup;
pub mod state;

pub use startup::Application;
