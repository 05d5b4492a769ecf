//! A notification through its life: the producer's request, the validated
//! notification that travels through the stream, and the stored row with its
//! per-user sequence number.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use templates::MAX_PARAMS;
use uuid::Uuid;

use crate::validation::{FieldError, RequestError, decode_json};

pub const USER_ID_MAX_CHARS: usize = 128;
pub const TITLE_MAX_CHARS: usize = 256;
pub const BODY_MAX_CHARS: usize = 8_192;
pub const CATEGORY_MAX_CHARS: usize = 64;
pub const DATA_MAX_BYTES: usize = 4_096;
/// Longest `ttl_seconds` accepted: 30 days.
pub const TTL_MAX_SECONDS: u32 = 30 * 24 * 3600;

/// Delivery lane. Each priority has its own stream so a backlog of `low`
/// never sits in front of `high`.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    ts_rs::TS,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "high" => Ok(Priority::High),
            "normal" => Ok(Priority::Normal),
            "low" => Ok(Priority::Low),
            other => Err(format!("unknown priority `{other}`")),
        }
    }
}

/// Body of `POST /v1/notifications`, exactly as the producer sent it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationRequest {
    /// Recipient: 1..=128 characters of `[A-Za-z0-9._:@-]`.
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:@-]+$")]
    pub user_id: String,
    /// Short headline, 1..=256 characters. With `body`; or send `template` instead.
    #[schema(min_length = 1, max_length = 256)]
    pub title: Option<String>,
    /// Text of the notification, 1..=8192 characters. With `title`; or send `template` instead.
    #[schema(min_length = 1, max_length = 8192)]
    pub body: Option<String>,
    /// A template key: Herald renders title and body in the user's language.
    /// Exclusive with `title` / `body`.
    pub template: Option<String>,
    /// The template's parameters (strings and numbers).
    #[schema(value_type = Option<Object>)]
    pub params: Option<Map<String, Value>>,
    /// BCP 47 locale to render in, overriding the user's preference.
    pub locale: Option<String>,
    #[serde(default)]
    pub priority: Priority,
    /// Optional grouping such as `billing`: 1..=64 characters of `[A-Za-z0-9._:-]`.
    #[schema(min_length = 1, max_length = 64)]
    pub category: Option<String>,
    /// Free-form JSON object for the client app, at most 4 KiB serialized.
    #[schema(value_type = Option<Object>)]
    pub data: Option<Map<String, Value>>,
    /// Seconds after which the notification is no longer worth showing
    /// (1..=2592000). One that has expired before it is processed is stored
    /// as expired and never delivered.
    #[schema(minimum = 1, maximum = 2592000)]
    pub ttl_seconds: Option<u32>,
}

impl NotificationRequest {
    /// Decodes and validates a request body; every field problem is reported
    /// at once so a producer can fix them in one round trip.
    pub fn parse(body: &[u8]) -> Result<Self, RequestError> {
        decode_json::<Self>(body)?.validated()
    }

    fn validated(self) -> Result<Self, RequestError> {
        let errors = self.field_errors();
        if errors.is_empty() {
            Ok(self)
        } else {
            Err(RequestError::InvalidFields(errors))
        }
    }

    pub fn field_errors(&self) -> Vec<FieldError> {
        let text = match (&self.title, &self.body, &self.template) {
            (Some(title), Some(body), None) => Some((title.as_str(), body.as_str())),
            _ => None,
        };
        let mut errors = content_errors(Content {
            user_id: &self.user_id,
            text,
            category: self.category.as_deref(),
            data: self.data.as_ref(),
        });
        match (&self.title, &self.body, &self.template) {
            (Some(_), Some(_), None) => {
                if self.params.is_some() || self.locale.is_some() {
                    errors.push(FieldError::new(
                        "params",
                        "params and locale go with template",
                    ));
                }
            }
            (None, None, Some(key)) => template_errors(
                &mut errors,
                key,
                self.params.as_ref(),
                self.locale.as_deref(),
            ),
            (None, None, None) => errors.push(FieldError::new(
                "template",
                "send either title and body, or template (with params)",
            )),
            (_, _, Some(_)) => errors.push(FieldError::new(
                "template",
                "send either title and body, or template, not both",
            )),
            (None, Some(_), None) => errors.push(FieldError::new("title", "missing field `title`")),
            (Some(_), None, None) => errors.push(FieldError::new("body", "missing field `body`")),
        }
        if let Some(ttl) = self.ttl_seconds
            && !(1..=TTL_MAX_SECONDS).contains(&ttl)
        {
            errors.push(FieldError::new(
                "ttl_seconds",
                format!("must be 1..={TTL_MAX_SECONDS}"),
            ));
        }
        errors
    }

    /// Stamps a validated request with its id and creation time.
    pub fn into_notification(self, id: Uuid, created_at: DateTime<Utc>) -> NewNotification {
        NewNotification {
            id,
            user_id: self.user_id,
            // Empty for a template: the worker renders them.
            title: self.title.unwrap_or_default(),
            body: self.body.unwrap_or_default(),
            template: self.template.map(|key| TemplateRef {
                key,
                // Pinned by ingest-api to the version it checked the params against.
                version: 0,
                params: self.params.unwrap_or_default(),
                locale: self.locale,
            }),
            priority: self.priority,
            category: self.category,
            data: self.data,
            created_at,
            expires_at: self
                .ttl_seconds
                .map(|ttl| created_at + chrono::Duration::seconds(i64::from(ttl))),
            traceparent: None,
        }
    }
}

/// The fields every notification is checked on, at ingest and again when
/// the worker reads it back from the stream.
struct Content<'a> {
    user_id: &'a str,
    /// Title and body; `None` for a templated notification (rendered later).
    text: Option<(&'a str, &'a str)>,
    category: Option<&'a str>,
    data: Option<&'a Map<String, Value>>,
}

fn content_errors(content: Content<'_>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Err(message) = validate_user_id(content.user_id) {
        errors.push(FieldError::new("user_id", message));
    }
    if let Some((title, body)) = content.text {
        check_text(&mut errors, "title", title, TITLE_MAX_CHARS);
        check_text(&mut errors, "body", body, BODY_MAX_CHARS);
    }
    if let Some(category) = content.category
        && let Err(message) = validate_category(category)
    {
        errors.push(FieldError::new("category", message));
    }
    if let Some(data) = content.data {
        let serialized = serde_json::to_string(data).unwrap_or_default();
        if serialized.len() > DATA_MAX_BYTES {
            errors.push(FieldError::new(
                "data",
                format!(
                    "must be at most {DATA_MAX_BYTES} bytes serialized, got {}",
                    serialized.len()
                ),
            ));
        } else if serialized.contains("\\u0000") {
            errors.push(FieldError::new("data", NUL_MESSAGE));
        }
    }
    errors
}

fn template_errors(
    errors: &mut Vec<FieldError>,
    key: &str,
    params: Option<&Map<String, Value>>,
    locale: Option<&str>,
) {
    if let Err(message) = templates::validate_key(key) {
        errors.push(FieldError::new("template", message));
    }
    if let Some(params) = params {
        // A template declares at most this many: a request cannot need more.
        if params.len() > MAX_PARAMS {
            errors.push(FieldError::new(
                "params",
                format!("at most {MAX_PARAMS} parameters"),
            ));
        }
        for (name, value) in params {
            if !(value.is_string() || value.is_number()) {
                errors.push(FieldError::new(
                    format!("params.{name}"),
                    "must be a string or a number",
                ));
            } else if value
                .as_str()
                .is_some_and(|s| s.contains('\0') || s.len() > 1_024)
            {
                errors.push(FieldError::new(
                    format!("params.{name}"),
                    "must be at most 1024 bytes, without U+0000",
                ));
            }
        }
    }
    if let Some(locale) = locale
        && let Err(message) = templates::parse_locale(locale)
    {
        errors.push(FieldError::new("locale", message));
    }
}

/// PostgreSQL text and jsonb cannot hold U+0000; refusing it at the door
/// keeps it from becoming an entry the worker can never store.
const NUL_MESSAGE: &str = "must not contain the NUL character (U+0000)";

fn check_text(errors: &mut Vec<FieldError>, field: &str, value: &str, max_chars: usize) {
    if value.trim().is_empty() {
        errors.push(FieldError::new(field, "must not be empty"));
    } else if value.chars().count() > max_chars {
        errors.push(FieldError::new(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    } else if value.contains('\0') {
        errors.push(FieldError::new(field, NUL_MESSAGE));
    }
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-')
}

/// A user id is 1..=128 characters of `[A-Za-z0-9._:@-]`: safe inside Redis
/// keys, channel names, URLs and log lines without escaping.
pub fn validate_user_id(user_id: &str) -> Result<(), String> {
    if user_id.is_empty() || user_id.len() > USER_ID_MAX_CHARS {
        return Err(format!("must be 1..={USER_ID_MAX_CHARS} characters"));
    }
    if !user_id.chars().all(is_id_char) {
        return Err("may only contain A-Z, a-z, 0-9 and . _ : @ -".to_owned());
    }
    Ok(())
}

pub fn validate_category(category: &str) -> Result<(), String> {
    if category.is_empty() || category.len() > CATEGORY_MAX_CHARS {
        return Err(format!("must be 1..={CATEGORY_MAX_CHARS} characters"));
    }
    if !category.chars().all(|c| is_id_char(c) && c != '@') {
        return Err("may only contain A-Z, a-z, 0-9 and . _ : -".to_owned());
    }
    Ok(())
}

/// A validated notification with its id: what ingest-api appends to the
/// stream and what stream-worker stores. The JSON form is the stream entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewNotification {
    pub id: Uuid,
    pub user_id: String,
    pub title: String,
    pub body: String,
    pub priority: Priority,
    pub category: Option<String>,
    pub data: Option<Map<String, Value>>,
    #[serde(serialize_with = "crate::timestamp::serialize")]
    pub created_at: DateTime<Utc>,
    /// When it stops being worth delivering; `None` never expires.
    #[serde(default, serialize_with = "crate::timestamp::serialize_option")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Set when the notification is rendered from a template by the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateRef>,
    /// W3C trace context of the ingest request's XADD span, when ingest-api
    /// traces: the worker continues that trace. Never part of what is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// What a templated notification is rendered from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateRef {
    pub key: String,
    /// The template version the parameters were checked against.
    pub version: i32,
    #[serde(default)]
    pub params: Map<String, Value>,
    /// The producer's locale override, if any.
    #[serde(default)]
    pub locale: Option<String>,
}

impl NewNotification {
    pub fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Re-checks an entry read back from the stream: the stream is a trust
    /// boundary too (anyone with Redis access can XADD).
    pub fn decode_entry(payload: &[u8]) -> Result<Self, RequestError> {
        let notification: Self = decode_json(payload)?;
        let mut errors = content_errors(Content {
            user_id: &notification.user_id,
            text: match &notification.template {
                None => Some((notification.title.as_str(), notification.body.as_str())),
                Some(_) => None,
            },
            category: notification.category.as_deref(),
            data: notification.data.as_ref(),
        });
        if let Some(template) = &notification.template {
            template_errors(
                &mut errors,
                &template.key,
                Some(&template.params),
                template.locale.as_deref(),
            );
        }
        if errors.is_empty() {
            Ok(notification)
        } else {
            Err(RequestError::InvalidFields(errors))
        }
    }
}

/// The `user_id` of a stream entry's payload (a [`NewNotification`]'s
/// JSON), read without checking the rest; `None` when the payload is not
/// such JSON.
pub fn user_of_entry(payload: &str) -> Option<String> {
    entry_head(payload).map(|head| head.user_id)
}

/// The `id` of a stream entry's payload, like [`user_of_entry`].
pub fn id_of_entry(payload: &str) -> Option<Uuid> {
    entry_head(payload).map(|head| head.id)
}

#[derive(Deserialize)]
struct EntryHead {
    id: Uuid,
    user_id: String,
}

fn entry_head(payload: &str) -> Option<EntryHead> {
    serde_json::from_str(payload).ok()
}

/// A stored notification: the new one plus its place in the user's sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema, ts_rs::TS)]
pub struct Notification {
    pub id: Uuid,
    pub user_id: String,
    /// Position in this user's sequence: 1, 2, 3, ... without gaps.
    pub seq: i64,
    pub title: String,
    pub body: String,
    pub priority: Priority,
    pub category: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub data: Option<Map<String, Value>>,
    #[serde(serialize_with = "crate::timestamp::serialize")]
    pub created_at: DateTime<Utc>,
    /// When it stops being worth showing; `null` never expires.
    #[serde(default, serialize_with = "crate::timestamp::serialize_option")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When the user read it; absent while unread (live frames never carry it).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::timestamp::serialize_option"
    )]
    pub read_at: Option<DateTime<Utc>>,
    /// When the user first saw it (marked it seen, or read it); absent
    /// while unseen (live frames never carry it).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::timestamp::serialize_option"
    )]
    pub seen_at: Option<DateTime<Utc>>,
    /// When the user archived it; absent unless archived.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::timestamp::serialize_option"
    )]
    pub archived_at: Option<DateTime<Utc>>,
    /// Snoozed until then: out of the list and the counts until it comes
    /// back; absent unless snoozed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::timestamp::serialize_option"
    )]
    pub snoozed_until: Option<DateTime<Utc>>,
    /// The locale a template was rendered in; absent for plain notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// Stored while its category was muted: never pushed; counted only
    /// while its category is not muted (muting is retroactive).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub muted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> Result<NotificationRequest, RequestError> {
        NotificationRequest::parse(json.as_bytes())
    }

    fn fields(err: RequestError) -> Vec<String> {
        match err {
            RequestError::InvalidFields(errors) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    #[test]
    fn minimal_request_defaults_to_normal_priority() {
        let request = body(r#"{"user_id":"u-1","title":"Hi","body":"There"}"#).unwrap();
        assert_eq!(request.priority, Priority::Normal);
        assert_eq!(request.category, None);
        assert_eq!(request.data, None);
    }

    #[test]
    fn full_request_is_accepted() {
        let request = body(
            r#"{"user_id":"alice@example.com","title":"Hi","body":"There","priority":"high",
                "category":"billing","data":{"order":42}}"#,
        )
        .unwrap();
        assert_eq!(request.priority, Priority::High);
        assert_eq!(request.category.as_deref(), Some("billing"));
        assert_eq!(request.data.unwrap()["order"], 42);
    }

    #[test]
    fn unknown_priority_names_the_field() {
        let err =
            body(r#"{"user_id":"u","title":"t","body":"b","priority":"urgent"}"#).unwrap_err();
        assert_eq!(fields(err), ["priority"]);
    }

    #[test]
    fn user_id_rules() {
        assert!(validate_user_id("a").is_ok());
        assert!(validate_user_id("user.name_1:x@y-z").is_ok());
        assert!(validate_user_id(&"a".repeat(128)).is_ok());
        assert!(validate_user_id("").is_err());
        assert!(validate_user_id(&"a".repeat(129)).is_err());
        assert!(validate_user_id("has space").is_err());
        assert!(validate_user_id("star*").is_err());
        assert!(validate_user_id("ünïcode").is_err());
    }

    #[test]
    fn every_invalid_field_is_reported_at_once() {
        let err = body(&format!(
            r#"{{"user_id":"bad id","title":" ","body":"{}","category":"no space"}}"#,
            "x".repeat(BODY_MAX_CHARS + 1)
        ))
        .unwrap_err();
        assert_eq!(fields(err), ["user_id", "title", "body", "category"]);
    }

    #[test]
    fn data_must_be_a_small_object() {
        let err = body(r#"{"user_id":"u","title":"t","body":"b","data":[1,2]}"#).unwrap_err();
        assert_eq!(fields(err), ["data"]);
        let big = format!(
            r#"{{"user_id":"u","title":"t","body":"b","data":{{"k":"{}"}}}}"#,
            "x".repeat(DATA_MAX_BYTES)
        );
        assert_eq!(fields(body(&big).unwrap_err()), ["data"]);
        let fits = format!(
            r#"{{"user_id":"u","title":"t","body":"b","data":{{"k":"{}"}}}}"#,
            "x".repeat(DATA_MAX_BYTES - 8)
        );
        assert!(body(&fits).is_ok());
    }

    #[test]
    fn wrong_types_and_missing_fields_are_named() {
        assert_eq!(
            fields(body(r#"{"user_id":7,"title":"t","body":"b"}"#).unwrap_err()),
            ["user_id"]
        );
        assert_eq!(
            fields(body(r#"{"user_id":"u","body":"b"}"#).unwrap_err()),
            ["title"]
        );
        assert_eq!(
            fields(body(r#"{"user_id":"u","title":"t","body":"b","colour":"red"}"#).unwrap_err()),
            ["colour"]
        );
    }

    #[test]
    fn ttl_sets_expiry_and_is_bounded() {
        let request = body(r#"{"user_id":"u","title":"t","body":"b","ttl_seconds":60}"#).unwrap();
        let created = Utc::now();
        let new = request.into_notification(Uuid::now_v7(), created);
        assert_eq!(
            new.expires_at,
            Some(created + chrono::Duration::seconds(60))
        );
        assert!(!new.is_expired_at(created));
        assert!(new.is_expired_at(created + chrono::Duration::seconds(60)));
        let err = body(r#"{"user_id":"u","title":"t","body":"b","ttl_seconds":0}"#).unwrap_err();
        assert_eq!(fields(err), ["ttl_seconds"]);
        let err =
            body(r#"{"user_id":"u","title":"t","body":"b","ttl_seconds":2592001}"#).unwrap_err();
        assert_eq!(fields(err), ["ttl_seconds"]);
        let err = body(r#"{"user_id":"u","title":"t","body":"b","ttl_seconds":-1}"#).unwrap_err();
        assert_eq!(fields(err), ["ttl_seconds"]);
    }

    #[test]
    fn nul_characters_are_refused_everywhere() {
        let err = body(r#"{"user_id":"u","title":"a\u0000b","body":"b\u0000","category":"c","data":{"k\u0000":1}}"#)
            .unwrap_err();
        assert_eq!(fields(err), ["title", "body", "data"]);
    }

    #[test]
    fn stream_entries_are_validated_like_requests() {
        let request = body(r#"{"user_id":"u","title":"t","body":"b"}"#).unwrap();
        let mut new = request.into_notification(Uuid::now_v7(), Utc::now());
        new.title = String::new();
        let payload = serde_json::to_vec(&new).unwrap();
        assert!(NewNotification::decode_entry(&payload).is_err());
    }

    #[test]
    fn stream_entry_round_trips() {
        let request = body(r#"{"user_id":"u","title":"t","body":"b","data":{"a":[1]}}"#).unwrap();
        let new = request.into_notification(Uuid::now_v7(), Utc::now());
        let payload = serde_json::to_vec(&new).unwrap();
        assert_eq!(NewNotification::decode_entry(&payload).unwrap(), new);
        assert!(NewNotification::decode_entry(b"not json").is_err());
        assert!(NewNotification::decode_entry(br#"{"id":"x"}"#).is_err());
    }
}
