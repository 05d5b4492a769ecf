//! End-to-end tests with the real binaries as processes, real PostgreSQL,
//! real Redis and real WebSocket clients. One test binary; the modules are
//! the scenarios.
//!
//! Needs the binaries built (`cargo build --bins`; `make test` does it).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod cluster;
mod erasure;
mod failover;
mod faults;
mod gateway;
mod observability;
mod pooler;
mod revocation;
mod sentinel;
mod startup;
mod support;
mod templates;
mod tls;
mod walking_skeleton;
