//! ingest-api against real PostgreSQL and Redis: what is answered 202 is in
//! the stream, and every refusal is problem+json with nothing written.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod admin;
mod batch;
mod dependencies;
mod idempotency;
mod keys;
mod notifications;
mod refusals;
mod status;
mod support;
mod templates;
mod users;
