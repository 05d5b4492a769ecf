//! Limits shared by every process: one GCRA state per subject (an API key)
//! in Redis, taken in one script call ([`TAKE_RATE`]), so N replicas
//! enforce one limit, not N.

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

impl RedisStore {
    /// Takes `cost` units of `rate` for `subject` (shared by every process
    /// using this key prefix). `cost` must not exceed the burst (it could
    /// never be allowed); an unlimited rate must not be asked.
    pub async fn take_rate(
        &self,
        subject: &str,
        rate: Rate,
        cost: u32,
    ) -> Result<RateTaken, RedisError> {
        let micros_per_unit = (1_000_000.0 / rate.per_sec).max(1.0).round() as u64;
        let (allowed, remaining, retry_after_ms, reset_ms): (i64, i64, i64, i64) = TAKE_RATE
            .evalsha_with_reload(
                &self.client,
                vec![self.keys.rate_limit(subject)],
                vec![
                    micros_per_unit.to_string(),
                    rate.burst.to_string(),
                    cost.to_string(),
                ],
            )
            .await
            .map_err(RedisError::on("EVALSHA take_rate"))?;
        let millis = |ms: i64| Duration::from_millis(ms.max(0).unsigned_abs());
        Ok(RateTaken {
            allowed: allowed == 1,
            remaining: remaining.max(0).unsigned_abs(),
            retry_after: millis(retry_after_ms),
            reset: millis(reset_ms),
        })
    }
}
