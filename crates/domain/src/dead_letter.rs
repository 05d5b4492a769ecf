//! A stream entry the worker could never process, as operators see it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::notification::Priority;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadLetter {
    pub id: Uuid,
    /// The stream shard the entry was read from (0 with one shard).
    pub shard: u16,
    /// The lane the entry was read from.
    pub priority: Priority,
    /// Its id in that stream.
    pub entry_id: String,
    /// The entry's notification field, exactly as read (may be invalid JSON).
    pub payload: String,
    /// Why it could not be processed.
    pub error: String,
    /// How many times it had been delivered to a worker.
    pub deliveries: i64,
    #[serde(serialize_with = "crate::timestamp::serialize")]
    pub created_at: DateTime<Utc>,
    /// Set once it was appended to the stream again.
    #[serde(serialize_with = "crate::timestamp::serialize_option")]
    pub replayed_at: Option<DateTime<Utc>>,
    pub replay_entry_id: Option<String>,
}
