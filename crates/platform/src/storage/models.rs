//! Row structs: how domain types map onto columns.

use chrono::{DateTime, SubsecRound, Utc};
use diesel::prelude::*;
use domain::{NewNotification, Notification, Priority};
use uuid::Uuid;

use super::schema::{api_keys, notifications};

/// A notification ready to store: rendered (title and body filled in), with
/// the locale it was rendered in and whether the user muted its category.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub notification: NewNotification,
    pub locale: Option<String>,
    pub muted: bool,
}

impl From<NewNotification> for Prepared {
    fn from(notification: NewNotification) -> Self {
        Self {
            notification,
            locale: None,
            muted: false,
        }
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = notifications)]
pub(crate) struct NotificationInsert<'a> {
    pub id: Uuid,
    pub user_id: &'a str,
    pub seq: Option<i64>,
    pub title: &'a str,
    pub body: &'a str,
    pub priority: &'static str,
    pub category: Option<&'a str>,
    pub data: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub expired: bool,
    pub locale: Option<&'a str>,
    pub template_key: Option<&'a str>,
    pub template_version: Option<i32>,
    pub params: Option<serde_json::Value>,
    pub muted: bool,
}

impl<'a> NotificationInsert<'a> {
    /// `seq` is `None` for a notification stored as expired.
    pub fn new(prepared: &'a Prepared, seq: Option<i64>) -> Self {
        let notification = &prepared.notification;
        let template = notification.template.as_ref();
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
            expires_at: notification.expires_at,
            expired: seq.is_none(),
            locale: prepared.locale.as_deref(),
            template_key: template.map(|t| t.key.as_str()),
            template_version: template.map(|t| t.version),
            params: template.map(|t| serde_json::Value::Object(t.params.clone())),
            muted: prepared.muted,
        }
    }
}

impl NotificationInsert<'_> {
    /// The notification as clients see it once stored: `None` when it has
    /// no `seq` (expired) or is muted. Times carry PostgreSQL's microseconds,
    /// so a live frame equals the same notification read back later.
    pub fn to_visible(&self) -> Option<Notification> {
        let seq = self.seq.filter(|_| !self.muted)?;
        Some(Notification {
            id: self.id,
            user_id: self.user_id.to_owned(),
            seq,
            title: self.title.to_owned(),
            body: self.body.to_owned(),
            priority: self.priority.parse().unwrap_or(Priority::Normal),
            category: self.category.map(str::to_owned),
            data: match &self.data {
                Some(serde_json::Value::Object(map)) => Some(map.clone()),
                _ => None,
            },
            created_at: self.created_at.trunc_subsecs(6),
            expires_at: self.expires_at.map(|t| t.trunc_subsecs(6)),
            read_at: None,
            seen_at: None,
            archived_at: None,
            snoozed_until: None,
            locale: self.locale.map(str::to_owned),
            muted: false,
        })
    }
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = notifications)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub(crate) struct NotificationRow {
    pub id: Uuid,
    pub user_id: String,
    pub seq: Option<i64>,
    pub title: String,
    pub body: String,
    pub priority: String,
    pub category: Option<String>,
    pub data: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub seen_at: Option<DateTime<Utc>>,
    pub archived_at: Option<DateTime<Utc>>,
    pub locale: Option<String>,
    pub muted: bool,
    pub expired: bool,
    pub snoozed_until: Option<DateTime<Utc>>,
}

impl NotificationRow {
    /// The visible notification; `None` for one that expired (stored as
    /// expired, with no `seq`, or expired since).
    pub fn into_visible(self) -> Option<Notification> {
        let seq = self.seq.filter(|_| !self.expired)?;
        Some(Notification {
            id: self.id,
            user_id: self.user_id,
            seq,
            title: self.title,
            body: self.body,
            // The column has a CHECK constraint; `normal` is only a fallback.
            priority: self.priority.parse().unwrap_or(Priority::Normal),
            category: self.category,
            data: match self.data {
                Some(serde_json::Value::Object(map)) => Some(map),
                _ => None,
            },
            created_at: self.created_at,
            expires_at: self.expires_at,
            read_at: self.read_at,
            // Reading one sees it: `seen_at` is only set by marking seen
            // (or by marking a read one unread again).
            seen_at: self.seen_at.or(self.read_at),
            archived_at: self.archived_at,
            snoozed_until: self.snoozed_until,
            locale: self.locale,
            muted: self.muted,
        })
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = api_keys)]
pub(super) struct ApiKeyInsert<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub key_hash: &'a [u8],
    pub scope: &'a str,
    pub scopes: Vec<String>,
    pub tenant: Option<&'a str>,
    pub rate_per_sec: Option<f64>,
    pub burst: Option<i32>,
}
