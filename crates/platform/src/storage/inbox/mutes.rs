//! Which categories count: replacing a user's preferences mutes and
//! unmutes categories in the counts, retroactively.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use domain::{ChangeResult, Preferences};

use super::changes::{lock_counts, muted_categories, write_counts};
use crate::db::DbError;
use crate::storage::schema::{notifications, user_inbox};

/// What replacing a user's preferences did to the counts: the categories
/// muted and unmuted by it, and the state after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Muting {
    pub muted: Vec<String>,
    pub unmuted: Vec<String>,
    /// No ids (a whole category moves).
    pub result: ChangeResult,
}

/// Replaces the user's preferences, and with them which categories count:
/// muting one takes its notifications out of the counts at once, unmuting
/// it brings its unread ones back (those stored while it was muted too;
/// they were never pushed). One transaction under the user's lock.
/// Answers what moved (`None`: no category was muted or unmuted).
///
/// Muting costs nothing per notification: a category's counts are its
/// entry in `by_category`. Unmuting counts the category's unread
/// notifications (through `notifications_category`) with the lock held.
pub async fn set_preferences(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    preferences: &Preferences,
) -> Result<Option<Muting>, DbError> {
    conn.transaction::<_, DbError, _>(async |conn| {
        // The row is created if need be, so that a worker storing the
        // user's first notifications meanwhile waits for this change and
        // reads the preferences it leaves (it reads them again when it
        // finds the row created by another transaction).
        diesel::insert_into(user_inbox::table)
            .values(user_inbox::user_id.eq(user_id))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        let Some((mut counts, _)) = lock_counts(conn, user_id).await? else {
            return Err(diesel::result::Error::NotFound.into());
        };
        let before = muted_categories(conn, user_id).await?;
        crate::storage::preferences::put(conn, user_id, preferences).await?;
        let now = &preferences.muted_categories;
        let muted: Vec<String> = now
            .iter()
            .filter(|c| !before.contains(c))
            .cloned()
            .collect();
        let unmuted: Vec<String> = before
            .iter()
            .filter(|c| !now.contains(c))
            .cloned()
            .collect();
        if muted.is_empty() && unmuted.is_empty() {
            return Ok(None);
        }
        for category in &muted {
            if let Some(those) = counts.by_category.get(category).copied() {
                counts.add(Some(category), -those.unread, -those.unseen);
            }
        }
        for (category, unread, unseen) in counted_in(conn, user_id, &unmuted).await? {
            counts.add(Some(&category), unread, unseen);
        }
        let version = write_counts(conn, user_id, &counts).await?;
        Ok(Some(Muting {
            muted,
            unmuted,
            result: ChangeResult {
                ids: Vec::new(),
                unread: counts.unread,
                version,
                counts,
            },
        }))
    })
    .await
}

/// The `(category, unread, unseen)` of the user's notifications in
/// `categories` as they count when not muted: listed, neither read nor
/// archived.
async fn counted_in(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    categories: &[String],
) -> Result<Vec<(String, i64, i64)>, diesel::result::Error> {
    if categories.is_empty() {
        return Ok(Vec::new());
    }
    let unread = || {
        notifications::table
            .filter(notifications::user_id.eq(user_id))
            .filter(notifications::seq.is_not_null())
            .filter(notifications::expired.eq(false))
            .filter(notifications::category.eq_any(categories))
            .filter(notifications::read_at.is_null())
            .filter(notifications::archived_at.is_null())
            .filter(notifications::snoozed_until.is_null())
    };
    let totals: Vec<(Option<String>, i64)> = unread()
        .group_by(notifications::category)
        .select((notifications::category, diesel::dsl::count_star()))
        .load(conn)
        .await?;
    let unseen: std::collections::HashMap<Option<String>, i64> = unread()
        .filter(notifications::seen_at.is_null())
        .group_by(notifications::category)
        .select((notifications::category, diesel::dsl::count_star()))
        .load(conn)
        .await?
        .into_iter()
        .collect();
    Ok(totals
        .into_iter()
        .filter_map(|(category, n)| {
            let seen_not = unseen.get(&category).copied().unwrap_or(0);
            Some((category?, n, seen_not))
        })
        .collect())
}
