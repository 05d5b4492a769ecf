//! The WebSocket protocol: one tagged enum per direction, `type` naming the
//! frame. Unknown types are refused with an error frame, never ignored.

use serde::{Deserialize, Serialize};

use crate::inbox::InboxCounts;
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
        /// Notifications not read yet.
        unread: i64,
        /// Highest `seq` stored for this user (0 when none).
        last_seq: i64,
        /// The user's state counter: bumped with every change of unread state.
        version: i64,
    },
    /// One notification, live or replayed.
    Notification(NotificationFrame),
    /// Notifications were marked read (on any device of the user); `unread`
    /// and `version` are the state after the change: keep the highest version.
    Read {
        ids: Vec<uuid::Uuid>,
        unread: i64,
        version: i64,
    },
    /// Notifications were archived (they leave the inbox and the unread count).
    Archived {
        ids: Vec<uuid::Uuid>,
        unread: i64,
        version: i64,
    },
    /// Notifications were marked unread again (they count again unless
    /// archived or muted).
    Unread {
        ids: Vec<uuid::Uuid>,
        unread: i64,
        version: i64,
    },
    /// Notifications were unarchived (back in the inbox; counted again if
    /// unread and not muted).
    Unarchived {
        ids: Vec<uuid::Uuid>,
        unread: i64,
        version: i64,
    },
    /// Answer to a client `ping` frame (WebSocket-level pings are answered too).
    Pong,
    /// The client sent something the gateway could not act on.
    Error { code: ErrorCode, message: String },
}

/// A notification as sent on the socket. A live one (published by the
/// transaction that stored it) also carries the user's unread count and
/// state version right after that transaction; one sent from storage
/// (resume, gaps) carries neither.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct NotificationFrame {
    #[serde(flatten)]
    pub notification: Notification,
    /// The user's unread count after the transaction that stored it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread: Option<i64>,
    /// The state version `unread` belongs to: keep the count of the highest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

impl NotificationFrame {
    /// A live frame: the notification with its user's counts after storing it.
    pub fn live(notification: Notification, counts: Option<InboxCounts>) -> Self {
        Self {
            notification,
            unread: counts.map(|c| c.unread),
            version: counts.map(|c| c.version),
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
    /// A `read` or `unread` frame with more ids than allowed (100).
    TooManyIds,
    /// The database is unavailable; the request was not applied.
    Unavailable,
    /// Too many `resume`, `read`, `read_all` and `unread` frames on this connection
    /// (`gateway.client_requests_*`); this one was not applied.
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
    /// Replace the connection's token before it expires (same `sub`).
    Refresh { token: String },
}

/// Most ids one `read` or `unread` frame may carry.
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
            archived_at: None,
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
        let counts = InboxCounts {
            unread: 4,
            version: 9,
        };
        let frame = ServerFrame::Notification(NotificationFrame::live(notification, Some(counts)));
        let value: serde_json::Value = serde_json::from_str(&frame.to_json()).unwrap();
        let mut live = stored;
        live["unread"] = json!(4);
        live["version"] = json!(9);
        assert_eq!(value, live);
        assert_eq!(serde_json::from_value::<ServerFrame>(value).unwrap(), frame);
    }

    #[test]
    fn hello_and_error_frames() {
        let hello = ServerFrame::Hello {
            user_id: "u".into(),
            unread: 2,
            last_seq: 7,
            version: 9,
        };
        assert_eq!(
            serde_json::to_value(&hello).unwrap(),
            json!({"type":"hello","user_id":"u","unread":2,"last_seq":7,"version":9})
        );
        let id = Uuid::now_v7();
        let read = ServerFrame::Read {
            ids: vec![id],
            unread: 1,
            version: 10,
        };
        assert_eq!(
            serde_json::to_value(&read).unwrap(),
            json!({"type":"read","ids":[id],"unread":1,"version":10})
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
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"read","ids":["nope"]}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"resume"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"kind":"ping"}"#).is_err());
    }
}
