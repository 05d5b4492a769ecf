//! Infrastructure shared by Herald's three services: settings, logging,
//! the PostgreSQL pool and storage queries, the Redis wrapper, the HTTP
//! server every service starts from, health
//! endpoints, problem+json errors and shutdown. Services own their HTTP
//! routes and their loops; everything that talks to the outside lives here
//! once.

pub mod body;
pub mod client_limits;
pub mod db;
pub mod dlq;
pub mod erasure;
pub mod hashing;
pub mod health;
pub mod inbox_changes;
pub mod metrics;
pub mod problem;
pub mod rate;
pub mod redis;
pub mod rendering;
pub mod retry;
pub mod server;
pub mod service;
pub mod settings;
pub mod shutdown;
pub mod storage;
pub mod telemetry;
pub mod template_dir;
pub mod tls;

pub use settings::Settings;
