//! Herald's shared vocabulary: what producers send, what travels through the
//! stream, what is stored and what users receive over WebSockets.
//!
//! Everything here is pure (no I/O) so that every service, the tests and the
//! benchmarks agree on one definition of each message and of each Redis key.

pub mod dead_letter;
pub mod frames;
pub mod ids;
pub mod inbox;
pub mod keys;
pub mod notification;
pub mod preferences;
pub mod published;
pub mod timestamp;
pub mod typescript;
pub mod validation;

pub use dead_letter::DeadLetter;
pub use frames::{ClientFrame, ItemState, NotificationFrame, ServerFrame, StateChange};
pub use inbox::{
    CategoryCounts, ChangeResult, Counts, InboxCounts, InboxPage, SeenRequest, SnoozeRequest,
    UnreadState,
};
pub use keys::{KeySpace, Lane, Shard};
pub use notification::{NewNotification, Notification, NotificationRequest, Priority, TemplateRef};
pub use preferences::Preferences;
pub use validation::{FieldError, RequestError};
