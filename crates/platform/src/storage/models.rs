//! Row structs: how domain types map onto columns.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use domain::{NewNotification, Notification, Priority};
use uuid::Uuid;

use super::schema::{api_keys, notifications};

#[derive(Debug, Insertable)]
#[diesel(table_name = notifications)]
pub(super) struct NotificationInsert<'a> {
    pub id: Uuid,
    pub user_id: &'a str,
    pub seq: i64,
    pub title: &'a str,
    pub body: &'a str,
    pub priority: &'static str,
    pub category: Option<&'a str>,
    pub data: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

impl<'a> NotificationInsert<'a> {
    pub fn new(notification: &'a NewNotification, seq: i64) -> Self {
        Self {
            id: notification.id,
            user_id: &notification.user_id,
            seq,
            title: &notification.title,
            body: &notification.body,
            priority: notification.priority.as_str(),
            category: notification.category.as_deref(),
            data: notification.data.clone().map(serde_json::Value::Object),
            created_at: notification.created_at,
        }
    }
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = notifications)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub(super) struct NotificationRow {
    pub id: Uuid,
    pub user_id: String,
    pub seq: i64,
    pub title: String,
    pub body: String,
    pub priority: String,
    pub category: Option<String>,
    pub data: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

impl From<NotificationRow> for Notification {
    fn from(row: NotificationRow) -> Self {
        Notification {
            id: row.id,
            user_id: row.user_id,
            seq: row.seq,
            title: row.title,
            body: row.body,
            // The column has a CHECK constraint; `normal` is only a fallback.
            priority: row.priority.parse().unwrap_or(Priority::Normal),
            category: row.category,
            data: match row.data {
                Some(serde_json::Value::Object(map)) => Some(map),
                _ => None,
            },
            created_at: row.created_at,
        }
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = api_keys)]
pub(super) struct ApiKeyInsert<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub key_hash: &'a [u8],
}
