//! Client frames decoded into what a connection does with them, checked
//! here (how many ids, a category, a `before_seq`, a snooze's time), so the
//! session only runs what is valid and answers the rest with an `error`
//! frame.

use chrono::{DateTime, Utc};
use domain::ClientFrame;
use domain::frames::{ErrorCode, MAX_READ_IDS};
use domain::inbox::SnoozeRequest;
use platform::storage::inbox::{Change, Filter, Target};
use uuid::Uuid;

/// What a valid client frame asks for.
pub enum Request {
    Ping,
    Resume { since: i64 },
    Change(Action),
    Refresh { token: String },
}

impl Request {
    /// Whether it reads or changes storage (and so counts against the
    /// connection's request budget).
    pub fn costs_storage(&self) -> bool {
        matches!(self, Request::Resume { .. } | Request::Change(_))
    }
}

/// A state change with its own copy of what it targets (it runs off the
/// loop that decoded the frame).
pub struct Action {
    target: OwnedTarget,
    pub change: Change,
}

enum OwnedTarget {
    Ids(Vec<Uuid>),
    All {
        category: Option<String>,
        before_seq: Option<i64>,
        read_only: bool,
    },
}

impl Action {
    pub fn target(&self) -> Target<'_> {
        match &self.target {
            OwnedTarget::Ids(ids) => Target::Ids(ids),
            OwnedTarget::All {
                category,
                before_seq,
                read_only,
            } => Target::All(Filter {
                category: category.as_deref(),
                before_seq: *before_seq,
                read_only: *read_only,
            }),
        }
    }
}

/// Why a frame was not acted on: the `error` frame's code and message.
#[derive(Debug)]
pub struct Refused {
    pub code: ErrorCode,
    pub message: String,
}

fn refused(code: ErrorCode, message: impl Into<String>) -> Refused {
    Refused {
        code,
        message: message.into(),
    }
}

/// Decodes and checks one text frame received at `now`.
pub fn decode(text: &str, now: DateTime<Utc>) -> Result<Request, Refused> {
    let frame = serde_json::from_str::<ClientFrame>(text)
        .map_err(|err| refused(ErrorCode::BadFrame, format!("not a known frame: {err}")))?;
    let on_ids = |ids: Vec<Uuid>, change| {
        if ids.len() > MAX_READ_IDS {
            return Err(refused(
                ErrorCode::TooManyIds,
                format!("at most {MAX_READ_IDS} ids per frame"),
            ));
        }
        Ok(Request::Change(Action {
            target: OwnedTarget::Ids(ids),
            change,
        }))
    };
    match frame {
        ClientFrame::Ping => Ok(Request::Ping),
        ClientFrame::Resume { since } => Ok(Request::Resume { since }),
        ClientFrame::Refresh { token } => Ok(Request::Refresh { token }),
        ClientFrame::Read { ids } => on_ids(ids, Change::Read),
        ClientFrame::Unread { ids } => on_ids(ids, Change::Unread),
        ClientFrame::Archive { ids } => on_ids(ids, Change::Archive),
        ClientFrame::Unarchive { ids } => on_ids(ids, Change::Unarchive),
        ClientFrame::Unsnooze { ids } => on_ids(ids, Change::Unsnooze),
        ClientFrame::Snooze { ids, until } => {
            if let Some(error) = (SnoozeRequest { until }).field_errors(now).first() {
                return Err(refused(
                    ErrorCode::BadFrame,
                    format!("snooze: until {}", error.message),
                ));
            }
            on_ids(ids, Change::Snooze(until))
        }
        ClientFrame::ReadAll {
            category,
            before_seq,
        } => all("read_all", category, before_seq, false, Change::Read),
        ClientFrame::ArchiveAll {
            category,
            before_seq,
            read,
        } => all(
            "archive_all",
            category,
            before_seq,
            read.unwrap_or(false),
            Change::Archive,
        ),
        ClientFrame::Seen { up_to_seq } => match crate::inbox::seen_filter(up_to_seq) {
            Some(filter) => all("seen", None, filter.before_seq, false, Change::Seen),
            None => Err(refused(
                ErrorCode::BadFrame,
                "seen: up_to_seq must be 0 or more",
            )),
        },
    }
}

/// A bulk change, its filter checked.
fn all(
    frame: &str,
    category: Option<String>,
    before_seq: Option<i64>,
    read_only: bool,
    change: Change,
) -> Result<Request, Refused> {
    if category
        .as_deref()
        .is_some_and(|c| domain::notification::validate_category(c).is_err())
        || before_seq.is_some_and(|seq| seq < 1)
    {
        return Err(refused(
            ErrorCode::BadFrame,
            format!("{frame}: category must be a valid category and before_seq 1 or more"),
        ));
    }
    Ok(Request::Change(Action {
        target: OwnedTarget::All {
            category,
            before_seq,
            read_only,
        },
        change,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(text: &str) -> Option<ErrorCode> {
        decode(text, Utc::now()).err().map(|refused| refused.code)
    }

    #[test]
    fn every_change_frame_decodes_to_its_change() {
        let id = Uuid::now_v7();
        let until = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        for (text, change) in [
            (
                format!(r#"{{"type":"archive","ids":["{id}"]}}"#),
                Change::Archive,
            ),
            (
                format!(r#"{{"type":"unarchive","ids":["{id}"]}}"#),
                Change::Unarchive,
            ),
            (
                format!(r#"{{"type":"unsnooze","ids":["{id}"]}}"#),
                Change::Unsnooze,
            ),
            (
                r#"{"type":"archive_all","read":true}"#.to_owned(),
                Change::Archive,
            ),
        ] {
            let Ok(Request::Change(action)) = decode(&text, Utc::now()) else {
                panic!("{text} is a change");
            };
            assert_eq!(action.change, change, "{text}");
        }
        let snooze = format!(r#"{{"type":"snooze","ids":["{id}"],"until":"{until}"}}"#);
        let Ok(Request::Change(action)) = decode(&snooze, Utc::now()) else {
            panic!("snooze is a change");
        };
        assert!(matches!(action.change, Change::Snooze(_)));
        let archive_read = decode(
            r#"{"type":"archive_all","read":true,"category":"a"}"#,
            Utc::now(),
        );
        let Ok(Request::Change(action)) = archive_read else {
            panic!("archive_all is a change");
        };
        assert!(matches!(
            action.target(),
            Target::All(Filter {
                category: Some("a"),
                read_only: true,
                before_seq: None
            })
        ));
    }

    #[test]
    fn bad_change_frames_are_refused_with_their_reason() {
        let id = Uuid::now_v7();
        let past = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
        let ids: Vec<String> = (0..=MAX_READ_IDS).map(|_| format!("\"{id}\"")).collect();
        assert_eq!(
            code_of(&format!(
                r#"{{"type":"archive","ids":[{}]}}"#,
                ids.join(",")
            )),
            Some(ErrorCode::TooManyIds)
        );
        assert_eq!(
            code_of(&format!(
                r#"{{"type":"snooze","ids":["{id}"],"until":"{past}"}}"#
            )),
            Some(ErrorCode::BadFrame)
        );
        assert_eq!(
            code_of(r#"{"type":"archive_all","before_seq":0}"#),
            Some(ErrorCode::BadFrame)
        );
        assert_eq!(
            code_of(r#"{"type":"archive_all","category":"no spaces"}"#),
            Some(ErrorCode::BadFrame)
        );
        assert_eq!(
            code_of(r#"{"type":"snooze","ids":[]}"#),
            Some(ErrorCode::BadFrame)
        );
    }
}
