//! What the inbox REST API answers (`/v1/me/*` on ws-gateway); the frames a
//! change causes on every device carry the same `unread` and `version`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::notification::Notification;

/// One page of `GET /v1/me/notifications`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema, ts_rs::TS)]
pub struct InboxPage {
    /// Newest first. Archived ones are left out.
    pub items: Vec<Notification>,
    /// Pass as `before` for the next page; `null` on the last page.
    pub next_before: Option<i64>,
}

/// The user's read state (`GET /v1/me/unread-count`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, ts_rs::TS)]
pub struct UnreadState {
    pub unread: i64,
    /// Bumped with every change of unread state: keep the highest.
    pub version: i64,
    pub last_seq: i64,
}

/// The outcome of a change of read state (read, read-all, archive): which
/// notifications changed and the user's state after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, ts_rs::TS)]
pub struct ChangeResult {
    /// The notifications this request changed (empty if none did).
    pub ids: Vec<Uuid>,
    pub unread: i64,
    pub version: i64,
}

/// A user's unread count and the state `version` it belongs to, as one
/// transaction left them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxCounts {
    pub unread: i64,
    pub version: i64,
}
