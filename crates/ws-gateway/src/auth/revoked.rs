//! The user tokens revoked before their `exp` (by `jti`), held in memory
//! so a verification costs no query. Loaded from PostgreSQL before the
//! gateway serves, told of each new revocation over Redis Pub/Sub
//! (`RedisStore::announce_token_revoked`, from ingest-api's admin
//! endpoint), and reloaded every `auth.revoked_tokens_reload_secs` and
//! after the subscription reconnected, so a missed announcement costs at
//! most one interval. Sessions holding a revoked token are told through
//! [`RevokedTokens::changes`] and close with 4003.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use platform::db::DbPool;
use platform::redis::{FramesError, RedisSubscriber};
use platform::storage::revoked_tokens::{self, RevokedToken};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long a `jti` heard over Pub/Sub is held before the next reload
/// gives it its stored expiry.
const HEARD_HOLD: chrono::Duration = chrono::Duration::days(1);

pub struct RevokedTokens {
    entries: RwLock<HashMap<String, Entry>>,
    changes: watch::Sender<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    expires_at: DateTime<Utc>,
    /// Heard over Pub/Sub at this time (not yet confirmed by a reload).
    heard_at: Option<DateTime<Utc>>,
}

impl RevokedTokens {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            entries: RwLock::default(),
            changes: watch::channel(0).0,
        })
    }

    /// Is the token with this `jti` revoked (and not yet expired)?
    pub fn contains(&self, jti: &str) -> bool {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(jti)
            .is_some_and(|entry| entry.expires_at > Utc::now())
    }

    /// Ticks on every change; a session holding a `jti` checks it then.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Replaces the set with what PostgreSQL holds, keeping what was heard
    /// since `started` (its row may have been written after the read).
    pub fn reloaded(&self, stored: Vec<RevokedToken>, started: DateTime<Utc>) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let heard: Vec<(String, Entry)> = entries
            .drain()
            .filter(|(_, entry)| entry.heard_at.is_some_and(|at| at >= started))
            .collect();
        entries.extend(heard);
        for token in stored {
            entries.insert(
                token.jti,
                Entry {
                    expires_at: token.expires_at,
                    heard_at: None,
                },
            );
        }
        drop(entries);
        self.changes.send_modify(|n| *n += 1);
    }

    /// A revocation announced over Pub/Sub.
    pub fn heard(&self, jti: String) {
        let now = Utc::now();
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        entries.entry(jti).or_insert(Entry {
            expires_at: now + HEARD_HOLD,
            heard_at: Some(now),
        });
        drop(entries);
        self.changes.send_modify(|n| *n += 1);
    }

    /// Loads the set from PostgreSQL (dropping expired rows there).
    pub async fn reload(&self, db: &DbPool) -> Result<usize, platform::db::DbError> {
        let started = Utc::now();
        let mut conn = db.get().await?;
        revoked_tokens::purge_expired(&mut conn).await?;
        let stored = revoked_tokens::active(&mut conn).await?;
        let count = stored.len();
        self.reloaded(stored, started);
        Ok(count)
    }
}

/// Keeps `revoked` current until `shutdown`: announcements as they come,
/// a reload every `every` and after the subscriber reconnected or lagged.
pub async fn keep_current(
    revoked: Arc<RevokedTokens>,
    subscriber: RedisSubscriber,
    db: DbPool,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut messages = subscriber.messages();
    let mut reconnects = subscriber.reconnects();
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        let reload = tokio::select! {
            () = shutdown.cancelled() => return,
            message = messages.recv() => match message {
                Ok((_, jti)) => {
                    tracing::info!(%jti, "user token revoked");
                    revoked.heard(jti);
                    false
                }
                Err(FramesError::Lagged(_)) => true,
                Err(FramesError::Closed) => return,
            },
            alive = reconnects.recv() => {
                if !alive {
                    return;
                }
                if let Err(err) = subscriber.subscribe_token_revocations().await {
                    tracing::warn!(%err, "cannot re-subscribe to token revocations");
                }
                true
            }
            _ = tick.tick() => true,
        };
        if reload && let Err(err) = revoked.reload(&db).await {
            tracing::warn!(%err, "cannot reload the revoked tokens; keeping the ones known");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(jti: &str, expires_in: chrono::Duration) -> RevokedToken {
        RevokedToken {
            jti: jti.into(),
            expires_at: Utc::now() + expires_in,
            revoked_at: Utc::now(),
        }
    }

    #[test]
    fn a_reload_keeps_what_was_heard_after_it_started_and_expiry_ends_it() {
        let revoked = RevokedTokens::new();
        let mut changes = revoked.changes();
        let started = Utc::now();
        revoked.heard("late".into());
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        // A reload that started before `late` was heard keeps it (its row
        // may have been written after the reload read the table).
        revoked.reloaded(
            vec![
                stored("a", chrono::Duration::hours(1)),
                stored("gone", chrono::Duration::seconds(-1)),
            ],
            started,
        );
        assert!(changes.has_changed().unwrap());
        assert!(revoked.contains("a"));
        assert!(revoked.contains("late"));
        assert!(!revoked.contains("gone"), "expired: nothing to refuse");
        assert!(!revoked.contains("b"));
        // A later reload that does not list what was heard before it forgets it.
        revoked.reloaded(vec![], Utc::now() + chrono::Duration::seconds(1));
        assert!(!revoked.contains("late"));
    }
}
