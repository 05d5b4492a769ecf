//! What the inbox REST API answers (`/v1/me/*` on ws-gateway); the frames a
//! change causes on every device carry the same `counts` and `version`.

use std::collections::BTreeMap;

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
    /// The same as `counts.unread`.
    pub unread: i64,
    /// Bumped with every change of the counts: keep the highest.
    pub version: i64,
    pub last_seq: i64,
    pub counts: Counts,
}

/// `POST /v1/me/notifications/seen`: every notification with `seq` up to
/// `up_to_seq` was seen (the feed was opened).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, ts_rs::TS)]
#[serde(deny_unknown_fields)]
pub struct SeenRequest {
    /// The newest `seq` the user has seen; 0 or more.
    #[schema(minimum = 0)]
    pub up_to_seq: i64,
}

/// `POST /v1/me/notifications/{id}/snooze`: out of the list and the counts
/// until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, ts_rs::TS)]
#[serde(deny_unknown_fields)]
pub struct SnoozeRequest {
    /// RFC 3339, in the future and at most a year ahead.
    #[ts(type = "string")]
    pub until: chrono::DateTime<chrono::Utc>,
}

impl SnoozeRequest {
    /// The longest snooze.
    pub const MAX_DAYS: i64 = 366;

    /// Why `until` cannot be taken at `now`, if it cannot.
    pub fn field_errors(&self, now: chrono::DateTime<chrono::Utc>) -> Vec<crate::FieldError> {
        if self.until <= now {
            vec![crate::FieldError::new("until", "must be in the future")]
        } else if self.until > now + chrono::Duration::days(Self::MAX_DAYS) {
            vec![crate::FieldError::new(
                "until",
                format!("must be at most {} days ahead", Self::MAX_DAYS),
            )]
        } else {
            Vec::new()
        }
    }
}

/// The outcome of a change of state (read, unread, seen, archive, ...):
/// which notifications changed and the user's state after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, ts_rs::TS)]
pub struct ChangeResult {
    /// The notifications this request changed (empty if none did).
    pub ids: Vec<Uuid>,
    /// The same as `counts.unread`.
    pub unread: i64,
    pub version: i64,
    pub counts: Counts,
}

/// What a user's badges show. A notification counts while it is listed
/// and neither archived nor muted: `unread` until it is read, `unseen`
/// until it is seen (marked seen, or read; a notification marked unread
/// again stays seen).
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, ts_rs::TS,
)]
pub struct Counts {
    pub unread: i64,
    /// Never more than `unread`.
    pub unseen: i64,
    /// The same two per category; a category with neither is left out
    /// (and notifications without a category are in no entry).
    pub by_category: BTreeMap<String, CategoryCounts>,
}

/// A category's part of [`Counts`].
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, ts_rs::TS,
)]
pub struct CategoryCounts {
    pub unread: i64,
    pub unseen: i64,
}

impl Counts {
    /// Moves the counts by what one notification of `category` added
    /// (`1`), took away (`-1`) or left (`0`) of each.
    pub fn add(&mut self, category: Option<&str>, unread: i64, unseen: i64) {
        if unread == 0 && unseen == 0 {
            return;
        }
        self.unread += unread;
        self.unseen += unseen;
        let Some(category) = category else {
            return;
        };
        let entry = self.by_category.entry(category.to_owned()).or_default();
        entry.unread += unread;
        entry.unseen += unseen;
        if *entry == CategoryCounts::default() {
            self.by_category.remove(category);
        }
    }
}

/// A user's counts and the state `version` they belong to, as one
/// transaction left them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxCounts {
    pub counts: Counts,
    pub version: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_move_per_category_and_drop_empty_ones() {
        let mut counts = Counts::default();
        counts.add(Some("orders"), 1, 1);
        counts.add(Some("orders"), 1, 1);
        counts.add(None, 1, 0);
        counts.add(Some("chat"), 1, 1);
        assert_eq!((counts.unread, counts.unseen), (4, 3));
        assert_eq!(
            counts.by_category["orders"],
            CategoryCounts {
                unread: 2,
                unseen: 2
            }
        );
        counts.add(Some("chat"), -1, -1);
        counts.add(Some("orders"), 0, -1);
        assert_eq!((counts.unread, counts.unseen), (3, 1));
        assert!(!counts.by_category.contains_key("chat"), "{counts:?}");
        assert_eq!(
            serde_json::to_value(&counts).unwrap(),
            serde_json::json!({"unread":3,"unseen":1,"by_category":{"orders":{"unread":2,"unseen":1}}})
        );
    }
}
