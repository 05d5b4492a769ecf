//! The WebSocket protocol: one tagged enum per direction, `type` naming the
//! frame. Unknown types are refused with an error frame, never ignored.

use serde::{Deserialize, Serialize};

use crate::inbox::{Counts, InboxCounts};
use crate::notification::Notification;

/// Frames the gateway sends to a client.
#[expect(
    clippy::large_enum_variant,
    reason = "a frame is built, encoded once and dropped; boxing the notification would add an allocation per delivery"
)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame of every connection.
    Hello {
        user_id: String,
        /// Notifications not read yet (the same as `counts.unread`).
        unread: i64,
        /// Highest `seq` stored for this user (0 when none).
        last_seq: i64,
        /// The user's state counter: bumped with every change of the counts.
        version: i64,
        counts: Counts,
        /// Every notification with `seq` up to this one was deleted for
        /// good (older than the retention period; 0 when none was): drop
        /// the ones held.
        trimmed_through: i64,
        /// Which inbox of the user `seq` counts in: an erased user's next
        /// inbox has another (0: none yet). Resume with `epoch` beside
        /// `since`; a held one that differs means what was held is gone.
        epoch: i64,
    },
    /// One notification, live or replayed.
    Notification(NotificationFrame),
    /// Notifications were marked read (on any device of the user); read
    /// ones are seen too.
    Read(StateChange),
    /// Notifications were archived (they leave the inbox and the counts).
    Archived(StateChange),
    /// Notifications were marked unread again (they count again unless
    /// archived or muted; they stay seen).
    Unread(StateChange),
    /// Notifications were unarchived (back in the inbox; counted again if
    /// unread and not muted).
    Unarchived(StateChange),
    /// Notifications were snoozed until `until`: they leave the list and
    /// the counts until then.
    Snoozed {
        ids: Vec<uuid::Uuid>,
        #[serde(serialize_with = "crate::timestamp::serialize")]
        #[ts(type = "string")]
        until: chrono::DateTime<chrono::Utc>,
        /// The same as `counts.unread`.
        unread: i64,
        version: i64,
        counts: Counts,
    },
    /// Snoozed notifications came back (their time came, or the user
    /// unsnoozed them): in the list again, counted again if unread.
    Unsnoozed(StateChange),
    /// Notifications expired (their `expires_at` passed): they leave the
    /// list and the counts for good.
    Expired(StateChange),
    /// Every notification with `seq` up to `up_to_seq` was deleted for good
    /// (older than the retention period): drop the ones held. Unread ones
    /// among them left the counts.
    Trimmed {
        up_to_seq: i64,
        /// The same as `counts.unread`.
        unread: i64,
        version: i64,
        counts: Counts,
    },
    /// Every notification with `seq` up to `up_to_seq` was seen (the feed
    /// was opened): `unseen` drops, `unread` stays.
    Seen {
        up_to_seq: i64,
        /// The same as `counts.unread`.
        unread: i64,
        version: i64,
        counts: Counts,
    },
    /// The user muted or unmuted categories (on any device): a muted
    /// category's notifications leave the counts at once, an unmuted one's
    /// unread ones come back (those that arrived while it was muted too:
    /// they were never pushed, so list them to show them).
    Muted {
        muted: Vec<String>,
        unmuted: Vec<String>,
        /// The same as `counts.unread`.
        unread: i64,
        version: i64,
        counts: Counts,
    },
    /// On a connection that resumed with `since_version`: the notifications
    /// it holds (`seq` up to its `since`) that changed since that version,
    /// as they are now, oldest change first, in one or more frames before
    /// any notification frame. Once it applied a frame, the client holds
    /// every change up to `version`: the `since_version` to resume from
    /// next time (the last frame's is the `hello`'s).
    State { items: Vec<ItemState>, version: i64 },
    /// The gateway cannot tell what changed since the connection's
    /// `since_version` (too many changes, or a version this server never
    /// had): drop the held items' state and list them again.
    Resync,
    /// The user's data was erased (a producer's `DELETE /v1/users/{id}`):
    /// every notification, state and preference is gone. The gateway closes
    /// the connection (4004) right after; drop everything held for the
    /// user and connect again without `since` or `since_version`.
    Erased,
    /// Answer to a client `ping` frame (WebSocket-level pings are answered too).
    Pong,
    /// The client sent something the gateway could not act on.
    Error { code: ErrorCode, message: String },
}

/// Which notifications a change of state (on any device of the user, or
/// by a producer) changed, and the user's counts right after it: keep the
/// counts of the highest `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct StateChange {
    pub ids: Vec<uuid::Uuid>,
    /// The same as `counts.unread`.
    pub unread: i64,
    pub version: i64,
    pub counts: Counts,
}

/// One notification's state in a [`ServerFrame::State`] frame: its last
/// change's `version` and every state field (absent: not set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct ItemState {
    pub id: uuid::Uuid,
    pub seq: i64,
    /// The user's state version its last change made.
    pub version: i64,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::timestamp::serialize_option"
    )]
    #[ts(optional, type = "string")]
    pub read_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::timestamp::serialize_option"
    )]
    #[ts(optional, type = "string")]
    pub seen_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::timestamp::serialize_option"
    )]
    #[ts(optional, type = "string")]
    pub archived_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::timestamp::serialize_option"
    )]
    #[ts(optional, type = "string")]
    pub snoozed_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Expired: gone from the inbox for good.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[ts(as = "Option<bool>", optional)]
    pub expired: bool,
}

/// A notification as sent on the socket. A live one (published by the
/// transaction that stored it) also carries the user's counts and state
/// version right after that transaction; one sent from storage (resume,
/// gaps) carries neither.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct NotificationFrame {
    #[serde(flatten)]
    pub notification: Notification,
    /// The user's unread count after the transaction that stored it (the
    /// same as `counts.unread`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread: Option<i64>,
    /// The state version the counts belong to: keep the counts of the highest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<Counts>,
}

impl NotificationFrame {
    /// A live frame: the notification with its user's counts after storing it.
    pub fn live(notification: Notification, counts: Option<InboxCounts>) -> Self {
        match counts {
            None => Self {
                notification,
                unread: None,
                version: None,
                counts: None,
            },
            Some(InboxCounts { counts, version }) => Self {
                notification,
                unread: Some(counts.unread),
                version: Some(version),
                counts: Some(counts),
            },
        }
    }
}

/// A notification sent from storage: no counts.
impl From<Notification> for NotificationFrame {
    fn from(notification: Notification) -> Self {
        Self::live(notification, None)
    }
}

/// Machine-readable reason in an `error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or JSON that is not a known frame.
    BadFrame,
    /// Binary frames are not part of the protocol.
    UnsupportedData,
    /// A frame larger than the gateway accepts.
    FrameTooLarge,
    /// A `refresh` token that is invalid, expired or for another user.
    BadToken,
    /// A frame with more ids than allowed (100).
    TooManyIds,
    /// The database is unavailable; the request was not applied.
    Unavailable,
    /// Too many frames that read or change storage (every one but `ping`
    /// and `refresh`) on this connection (`gateway.client_requests_*`);
    /// this one was not applied.
    RateLimited,
}

/// Frames a client sends to the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Application-level keep-alive for clients that cannot send WebSocket pings.
    Ping,
    /// Send every notification with `seq > since`, in order, then continue live.
    Resume { since: i64 },
    /// Mark these notifications read (ids of other users are ignored).
    Read { ids: Vec<uuid::Uuid> },
    /// Mark every notification read, or only those of `category`, or only
    /// those with `seq` below `before_seq`.
    ReadAll {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        category: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        before_seq: Option<i64>,
    },
    /// Mark these notifications unread again (ids of other users are ignored).
    Unread { ids: Vec<uuid::Uuid> },
    /// Every notification with `seq` up to `up_to_seq` was seen (the feed
    /// was opened): clears the `unseen` badge, leaves them unread.
    Seen { up_to_seq: i64 },
    /// Archive these notifications: they leave the list and the counts.
    Archive { ids: Vec<uuid::Uuid> },
    /// Bring these archived notifications back.
    Unarchive { ids: Vec<uuid::Uuid> },
    /// Archive every notification, or only those of `category`, those with
    /// `seq` below `before_seq`, only read ones (`read: true`).
    ArchiveAll {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        category: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        before_seq: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        read: Option<bool>,
    },
    /// Snooze these notifications until `until` (RFC 3339, in the future,
    /// at most 366 days ahead): out of the list and the counts until then.
    Snooze {
        ids: Vec<uuid::Uuid>,
        #[ts(type = "string")]
        until: chrono::DateTime<chrono::Utc>,
    },
    /// Bring these snoozed notifications back now.
    Unsnooze { ids: Vec<uuid::Uuid> },
    /// Replace the connection's token before it expires (same `sub`).
    Refresh { token: String },
}

/// Most ids one frame (`read`, `unread`, `archive`, `unarchive`, `snooze`,
/// `unsnooze`) may carry.
pub const MAX_READ_IDS: usize = 100;

impl ServerFrame {
    /// Encodes once; the gateway forwards the bytes to every connection as-is.
    pub fn to_json(&self) -> String {
        // A frame is plain data (strings, numbers, JSON maps with string keys);
        // serialising it cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from(r#"{"type":"error"}"#))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Priority;
    use chrono::{TimeZone, Utc};
    use serde_json::json;
    use uuid::Uuid;

    #[test]
    fn notification_frame_has_flat_fields_and_type() {
        let id = Uuid::now_v7();
        let notification = Notification {
            id,
            user_id: "u1".into(),
            seq: 3,
            title: "t".into(),
            body: "b".into(),
            priority: Priority::High,
            category: None,
            data: None,
            created_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            expires_at: None,
            read_at: None,
            seen_at: None,
            archived_at: None,
            snoozed_until: None,
            locale: None,
            muted: false,
        };
        // From storage: the notification's fields only.
        let frame = ServerFrame::Notification(notification.clone().into());
        let value: serde_json::Value = serde_json::from_str(&frame.to_json()).unwrap();
        let stored = json!({"type":"notification","id":id,"user_id":"u1","seq":3,"title":"t",
            "body":"b","priority":"high","category":null,"data":null,
            "created_at":"2026-01-02T03:04:05Z","expires_at":null});
        assert_eq!(value, stored);
        assert_eq!(serde_json::from_value::<ServerFrame>(value).unwrap(), frame);

        // Live: the same fields plus the user's counts after storing it.
        let mut counts = InboxCounts {
            version: 9,
            ..InboxCounts::default()
        };
        counts.counts.add(Some("orders"), 4, 3);
        let frame = ServerFrame::Notification(NotificationFrame::live(notification, Some(counts)));
        let value: serde_json::Value = serde_json::from_str(&frame.to_json()).unwrap();
        let mut live = stored;
        live["unread"] = json!(4);
        live["version"] = json!(9);
        live["counts"] =
            json!({"unread":4,"unseen":3,"by_category":{"orders":{"unread":4,"unseen":3}}});
        assert_eq!(value, live);
        assert_eq!(serde_json::from_value::<ServerFrame>(value).unwrap(), frame);
    }

    #[test]
    fn hello_and_error_frames() {
        let mut counts = Counts::default();
        counts.add(None, 2, 1);
        let hello = ServerFrame::Hello {
            user_id: "u".into(),
            unread: 2,
            last_seq: 7,
            version: 9,
            counts: counts.clone(),
            trimmed_through: 3,
            epoch: 77,
        };
        let counts_json = json!({"unread":2,"unseen":1,"by_category":{}});
        assert_eq!(
            serde_json::to_value(&hello).unwrap(),
            json!({"type":"hello","user_id":"u","unread":2,"last_seq":7,"version":9,"counts":counts_json,"trimmed_through":3,"epoch":77})
        );
        let id = Uuid::now_v7();
        let read = ServerFrame::Read(StateChange {
            ids: vec![id],
            unread: 2,
            version: 10,
            counts: counts.clone(),
        });
        assert_eq!(
            serde_json::to_value(&read).unwrap(),
            json!({"type":"read","ids":[id],"unread":2,"version":10,"counts":counts_json})
        );
        assert_eq!(
            serde_json::from_value::<ServerFrame>(serde_json::to_value(&read).unwrap()).unwrap(),
            read
        );
        let seen = ServerFrame::Seen {
            up_to_seq: 7,
            unread: 2,
            version: 11,
            counts: counts.clone(),
        };
        assert_eq!(
            serde_json::to_value(&seen).unwrap(),
            json!({"type":"seen","up_to_seq":7,"unread":2,"version":11,"counts":counts_json})
        );
        let trimmed = ServerFrame::Trimmed {
            up_to_seq: 3,
            unread: 2,
            version: 12,
            counts,
        };
        assert_eq!(
            serde_json::to_value(&trimmed).unwrap(),
            json!({"type":"trimmed","up_to_seq":3,"unread":2,"version":12,"counts":counts_json})
        );
        let error = ServerFrame::Error {
            code: ErrorCode::BadFrame,
            message: "x".into(),
        };
        assert_eq!(
            serde_json::to_value(&error).unwrap(),
            json!({"type":"error","code":"bad_frame","message":"x"})
        );
    }

    #[test]
    fn client_frames_are_strict() {
        assert_eq!(
            serde_json::from_str::<ClientFrame>(r#"{"type":"ping"}"#).unwrap(),
            ClientFrame::Ping
        );
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"launch"}"#).is_err());
        assert_eq!(
            serde_json::from_str::<ClientFrame>(r#"{"type":"resume","since":42}"#).unwrap(),
            ClientFrame::Resume { since: 42 }
        );
        assert_eq!(
            serde_json::from_str::<ClientFrame>(r#"{"type":"read_all"}"#).unwrap(),
            ClientFrame::ReadAll {
                category: None,
                before_seq: None
            }
        );
        assert_eq!(
            serde_json::from_str::<ClientFrame>(
                r#"{"type":"read_all","category":"orders","before_seq":12}"#
            )
            .unwrap(),
            ClientFrame::ReadAll {
                category: Some("orders".into()),
                before_seq: Some(12)
            }
        );
        assert_eq!(
            serde_json::from_str::<ClientFrame>(r#"{"type":"seen","up_to_seq":12}"#).unwrap(),
            ClientFrame::Seen { up_to_seq: 12 }
        );
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"seen"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"read","ids":["nope"]}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"resume"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"kind":"ping"}"#).is_err());
    }
}
