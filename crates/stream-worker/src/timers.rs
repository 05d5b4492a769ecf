//! The inbox's timers: snoozed notifications come back when their time
//! comes, delivered ones leave the inbox when their `expires_at` passes;
//! and erasure jobs, carried out within a tick of being asked for (see
//! `platform::erasure`).
//!
//! The timers are the rows themselves (`snoozed_until`, `expires_at`,
//! found through partial indexes that hold only pending ones), so they
//! survive any restart, and every worker may look: each change is applied
//! under the user's lock to rows not changed yet, so two workers finding
//! the same timer change it once and say it once.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use platform::db::{DbError, DbPool};
use platform::erasure::{self, Pass};
use platform::inbox_changes;
use platform::redis::RedisStore;
use platform::shutdown::Ticks;
use platform::storage::inbox::{self, Change, Due, Target};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Most timers of each kind one pass takes; more wait for the next pass
/// (which follows at once).
const PASS: i64 = 1_000;

/// Most erasure jobs one tick finishes.
const ERASURES_PER_TICK: usize = 16;

pub struct Timers {
    pub db: DbPool,
    pub redis: RedisStore,
    pub interval: Duration,
}

impl Timers {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticks = Ticks::new(self.interval, shutdown);
        while ticks.next().await {
            self.erase().await;
            loop {
                match self.pass().await {
                    Ok(moved) if moved as i64 >= PASS => continue,
                    Ok(_) => break,
                    Err(err) => {
                        tracing::warn!(%err, "timer pass failed; trying again next tick");
                        break;
                    }
                }
            }
        }
    }

    /// Carries running erasure jobs a step further, up to
    /// [`ERASURES_PER_TICK`]; a job still waiting for its user's entries
    /// ends the tick's turn.
    pub async fn erase(&self) {
        for _ in 0..ERASURES_PER_TICK {
            match erasure::pass(&self.db, &self.redis).await {
                Ok(Pass::Idle | Pass::Waiting(_)) => return,
                Ok(Pass::Done { job, notifications }) => {
                    tracing::info!(%job, notifications, "user erased");
                }
                Err(err) => {
                    tracing::warn!(%err, "erasure pass failed; trying again next tick");
                    return;
                }
            }
        }
    }

    /// Applies every timer that has come (up to [`PASS`] of each kind);
    /// answers how many it found.
    pub async fn pass(&self) -> Result<usize, DbError> {
        let (woken, expiring) = {
            let mut conn = self.db.get().await?;
            inbox::due(&mut conn, Utc::now(), PASS).await?
        };
        let found = woken.len().max(expiring.len());
        for (change, due) in [(Change::Wake, woken), (Change::Expire, expiring)] {
            for (user, ids) in by_user(due) {
                inbox_changes::apply(&self.db, &self.redis, &user, Target::Ids(&ids), change)
                    .await?;
            }
        }
        Ok(found)
    }
}

/// Timers grouped by user, each user's changes applied at once.
fn by_user(due: Vec<Due>) -> BTreeMap<String, Vec<Uuid>> {
    let mut users: BTreeMap<String, Vec<Uuid>> = BTreeMap::new();
    for (user, id) in due {
        users.entry(user).or_default().push(id);
    }
    users
}
