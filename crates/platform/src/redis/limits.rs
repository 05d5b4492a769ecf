//! Limits shared by every process: one GCRA state per subject (an API key)
//! in Redis. Appends take from it in the same script ([`RedisStore::append_limited`],
//! and `append_idempotent` with a charge), so the limit costs no round trip
//! of its own and nothing is taken for entries that were not appended;
//! [`RedisStore::take_rate`] takes alone (for what appends nothing).

use std::time::Duration;

use super::scripts::TAKE_RATE;
use super::{RedisError, RedisStore};
use crate::rate::Rate;

/// The outcome of taking `cost` units from a subject's rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateTaken {
    /// The units were taken; otherwise nothing was.
    pub allowed: bool,
    /// Units that could be taken right now after this call.
    pub remaining: u64,
    /// When refused: how long until `cost` units are available.
    pub retry_after: Duration,
    /// How long until the whole burst is available again.
    pub reset: Duration,
}

impl RateTaken {
    /// What `take` in gcra.lua answers: {allowed, remaining, retry ms, reset ms}.
    pub(super) fn from_script(reply: (i64, i64, i64, i64)) -> Self {
        let (allowed, remaining, retry_after_ms, reset_ms) = reply;
        let millis = |ms: i64| Duration::from_millis(ms.max(0).unsigned_abs());
        Self {
            allowed: allowed == 1,
            remaining: remaining.max(0).unsigned_abs(),
            retry_after: millis(retry_after_ms),
            reset: millis(reset_ms),
        }
    }
}

/// `cost` units of `rate` for `subject`, to take with an append.
#[derive(Debug, Clone, Copy)]
pub struct RateCharge<'a> {
    pub subject: &'a str,
    pub rate: Rate,
    /// At most the burst (more could never be allowed).
    pub cost: u32,
}

impl RateCharge<'_> {
    /// The script's arguments: microseconds per unit, burst, cost.
    pub(super) fn args(&self) -> [String; 3] {
        let micros_per_unit = (1_000_000.0 / self.rate.per_sec).max(1.0).round() as u64;
        [
            micros_per_unit.to_string(),
            self.rate.burst.to_string(),
            self.cost.to_string(),
        ]
    }
}

impl RedisStore {
    /// Takes `charge.cost` units of its rate (shared by every process using
    /// this key prefix), appending nothing. The rate must not be unlimited.
    pub async fn take_rate(&self, charge: &RateCharge<'_>) -> Result<RateTaken, RedisError> {
        let reply: (i64, i64, i64, i64) = TAKE_RATE
            .evalsha_with_reload(
                &self.client,
                vec![self.keys.rate_limit(charge.subject)],
                charge.args().to_vec(),
            )
            .await
            .map_err(RedisError::on("EVALSHA take_rate"))?;
        Ok(RateTaken::from_script(reply))
    }
}
