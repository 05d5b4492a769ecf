//! ws-gateway with real Redis, PostgreSQL, a real stream-worker and real
//! WebSocket clients. One test binary; the modules are the themes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod browsers;
mod connections;
mod convergence;
mod counts;
mod delivery;
mod identity;
mod inbox;
mod limits;
mod planning;
mod resume_state;
mod retention;
mod support;
