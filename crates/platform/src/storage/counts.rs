//! How a user's counts are kept: which rows count, and the `user_inbox`
//! columns that hold them (`unread_count`, `unseen_count`, `by_category`).
//!
//! Every writer holds the user's `user_inbox` row lock, reads the counts
//! with it, moves them by what its rows changed and writes them back in
//! the same transaction: no `COUNT` anywhere, and the counts equal a
//! recount from the rows whenever the lock is free.

use std::collections::BTreeMap;

use diesel::result::Error;
use domain::{CategoryCounts, Counts};

/// The counts columns of a `user_inbox` row: `unread_count`,
/// `unseen_count`, `by_category`.
pub(crate) type Columns = (i64, i64, serde_json::Value);

/// The counts held in a row's [`Columns`].
pub(crate) fn from_columns((unread, unseen, by_category): Columns) -> Result<Counts, Error> {
    let by_category: BTreeMap<String, CategoryCounts> = serde_json::from_value(by_category)
        .map_err(|err| Error::DeserializationError(err.into()))?;
    Ok(Counts {
        unread,
        unseen,
        by_category,
    })
}

/// The `by_category` column holding `counts.by_category`.
pub(crate) fn by_category_column(counts: &Counts) -> serde_json::Value {
    // A map of string keys to two integers always serializes.
    serde_json::to_value(&counts.by_category).unwrap_or_default()
}

/// What of a listed notification decides whether it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowState {
    pub read: bool,
    /// Marked seen, or read.
    pub seen: bool,
    pub archived: bool,
    /// Its category is muted now (muting is retroactive: the column
    /// `notifications.muted` only says it was stored while muted, and so
    /// never pushed).
    pub muted: bool,
    /// Snoozed: out of the list until it comes back.
    pub snoozed: bool,
    /// Its `expires_at` passed: out of the list for good.
    pub expired: bool,
}

impl RowState {
    /// A notification as stored: neither read nor seen nor archived.
    pub fn new(muted: bool) -> Self {
        Self {
            read: false,
            seen: false,
            archived: false,
            muted,
            snoozed: false,
            expired: false,
        }
    }

    /// Whether it counts as `(unread, unseen)`: only while in the list
    /// (neither archived, snoozed nor expired) and not muted.
    pub fn counted(self) -> (bool, bool) {
        let counts = !self.archived && !self.muted && !self.snoozed && !self.expired;
        (counts && !self.read, counts && !self.seen)
    }

    /// Moves `counts` by a notification of `category` that went from
    /// `before` to `self`.
    pub fn moved_from(self, before: RowState, category: Option<&str>, counts: &mut Counts) {
        let (unread, unseen) = self.counted();
        let (was_unread, was_unseen) = before.counted();
        counts.add(
            category,
            i64::from(unread) - i64::from(was_unread),
            i64::from(unseen) - i64::from(was_unseen),
        );
    }
}

/// Moves `counts` by a notification of `category` in `state` that was
/// deleted (retention): what it counted leaves.
pub(crate) fn remove_deleted(counts: &mut Counts, category: Option<&str>, state: RowState) {
    let (unread, unseen) = state.counted();
    counts.add(category, -i64::from(unread), -i64::from(unseen));
}

/// Moves `counts` by a notification just stored (listed, unless expired:
/// those never count), `muted` if its category is.
pub(crate) fn add_stored(counts: &mut Counts, category: Option<&str>, muted: bool) {
    let (unread, unseen) = RowState::new(muted).counted();
    counts.add(category, i64::from(unread), i64::from(unseen));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_round_trip_through_their_columns() {
        let mut counts = Counts::default();
        counts.add(Some("orders"), 1, 1);
        counts.add(None, 1, 0);
        let columns = (counts.unread, counts.unseen, by_category_column(&counts));
        assert_eq!(from_columns(columns).unwrap(), counts);
        assert!(from_columns((0, 0, serde_json::json!({"x": 1}))).is_err());
    }

    #[test]
    fn only_listed_unarchived_unmuted_rows_count() {
        let new = RowState::new(false);
        assert_eq!(new.counted(), (true, true));
        assert_eq!(RowState::new(true).counted(), (false, false));
        let seen = RowState { seen: true, ..new };
        assert_eq!(seen.counted(), (true, false));
        let read = RowState {
            read: true,
            seen: true,
            ..new
        };
        assert_eq!(read.counted(), (false, false));
        let mut counts = Counts::default();
        new.moved_from(RowState::new(true), Some("c"), &mut counts);
        read.moved_from(seen, Some("c"), &mut counts);
        assert_eq!((counts.unread, counts.unseen), (0, 1));
        assert_eq!(counts.by_category["c"].unseen, 1);
    }
}
