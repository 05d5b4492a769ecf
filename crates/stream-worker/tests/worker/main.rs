//! stream-worker against real Redis and PostgreSQL: every entry is stored
//! once with a gapless per-user `seq`, published to its user's channel, and
//! acknowledged only after it committed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

mod dead_letters;
mod lanes;
mod lifecycle;
mod retention;
mod rounds;
mod schema;
mod storage;
mod support;
mod templates;
