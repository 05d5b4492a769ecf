//! Limits shared by every process: one GCRA state per subject (an API key)
//! in Redis ([`TAKE_RATE`]), so N replicas enforce one limit, not N. A
//! process may take several units at once (a lease) and spend them without
//! asking again: what was granted is the subject's, whichever process
//! spends it.

use std::time::Duration;

use super::scripts::TAKE_RATE;
use super::{RedisError, RedisStore};
use crate::rate::Rate;

/// What a subject's rate granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateGrant {
    /// Units granted (at least the minimum asked for); 0: refused, nothing taken.
    pub granted: u32,
    /// Units the rate has left now.
    pub remaining: u64,
    /// When refused: how long until the minimum is there.
    pub retry_after: Duration,
    /// How long until the whole burst is there again.
    pub reset: Duration,
}

impl RedisStore {
    /// Takes between `min` and `max` units of `rate` for `subject`: as many
    /// as it has now, up to `max`, or none when it has fewer than `min`.
    /// `min` must not exceed the burst (it could never be granted); an
    /// unlimited rate must not be asked.
    pub async fn take_rate(
        &self,
        subject: &str,
        rate: Rate,
        min: u32,
        max: u32,
    ) -> Result<RateGrant, RedisError> {
        let micros_per_unit = (1_000_000.0 / rate.per_sec).max(1.0).round() as u64;
        let (granted, remaining, retry_after_ms, reset_ms): (i64, i64, i64, i64) = TAKE_RATE
            .evalsha_with_reload(
                &self.client,
                vec![self.keys.rate_limit(subject)],
                vec![
                    micros_per_unit.to_string(),
                    rate.burst.to_string(),
                    min.to_string(),
                    max.max(min).to_string(),
                ],
            )
            .await
            .map_err(RedisError::on("EVALSHA take_rate"))?;
        let millis = |ms: i64| Duration::from_millis(ms.max(0).unsigned_abs());
        Ok(RateGrant {
            granted: u32::try_from(granted.max(0)).unwrap_or(u32::MAX),
            remaining: remaining.max(0).unsigned_abs(),
            retry_after: millis(retry_after_ms),
            reset: millis(reset_ms),
        })
    }
}
