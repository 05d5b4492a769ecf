//! Everything Herald stores in PostgreSQL. Only this module writes SQL: the
//! schema (as diesel prints it), the row structs, and one file of queries per
//! aggregate.

pub mod api_keys;
mod counts;
pub mod dead_letters;
pub mod erasures;
pub mod inbox;
#[cfg(feature = "test-support")]
pub mod inspect;
mod models;
pub mod notifications;
mod pipelined_tx;
pub mod preferences;
pub mod revoked_tokens;
pub mod schema;
pub mod templates;

pub use crate::db::DbError as StorageError;
