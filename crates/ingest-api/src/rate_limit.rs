//! Each API key's rate, shared by every replica: a GCRA state per key in
//! Redis, taken in the same script that appends the request's
//! notifications (a batch counts its items), so the limit costs no round
//! trip of its own and nothing is taken for what was not appended.
//! Answers carry the IETF `RateLimit-Policy` and `RateLimit` headers
//! (draft-ietf-httpapi-ratelimit-headers), in notifications:
//! `RateLimit-Policy: "key";q=<burst>;w=<seconds to refill>` and
//! `RateLimit: "key";r=<remaining>;t=<seconds until full>`; a 429 adds
//! `Retry-After`.

use actix_web::HttpResponse;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use platform::rate::Rate;
use platform::redis::{RateCharge, RateTaken, RedisStore};

use crate::auth::Producer;
use crate::error::ApiError;

const RATE_LIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATE_LIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The rate of keys without one of their own (`ingest.key_rate_per_sec`,
/// `ingest.key_burst`).
#[derive(Debug, Clone, Copy)]
pub struct KeyRates {
    pub default: Rate,
}

/// What one request takes from its key's rate.
#[derive(Debug, Clone)]
pub struct KeyCharge {
    subject: String,
    rate: Rate,
    cost: u32,
}

/// A key's rate after a request took from it: what its answer's headers say.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitStatus {
    pub rate: Rate,
    pub taken: RateTaken,
}

impl KeyRates {
    /// What a request carrying `cost` notifications takes from the
    /// producer's rate: `None` when its key has no limit, 413 when `cost`
    /// is over the burst (it could never pass).
    pub fn charge(&self, producer: &Producer, cost: usize) -> Result<Option<KeyCharge>, ApiError> {
        let rate = producer.identity.rate(self.default);
        if rate.unlimited() {
            return Ok(None);
        }
        let within_burst = u32::try_from(cost).ok().filter(|c| *c <= rate.burst);
        let Some(cost) = within_burst else {
            return Err(ApiError::BatchOverBurst {
                items: cost,
                burst: rate.burst,
            });
        };
        Ok(Some(KeyCharge {
            subject: producer.key_id().to_string(),
            rate,
            cost,
        }))
    }

    /// Takes `cost` from the producer's rate without appending (a
    /// preferences write): `Ok(None)` when the key has no limit, 429 when
    /// over it, 503 when Redis does not answer.
    pub async fn take(
        &self,
        redis: &RedisStore,
        producer: &Producer,
        cost: usize,
    ) -> Result<Option<RateLimitStatus>, ApiError> {
        let Some(charge) = self.charge(producer, cost)? else {
            return Ok(None);
        };
        let taken = redis
            .take_rate(&charge.redis())
            .await
            .map_err(ApiError::redis)?;
        charge.judge(taken).map(Some)
    }
}

impl KeyCharge {
    pub fn redis(&self) -> RateCharge<'_> {
        RateCharge {
            subject: &self.subject,
            rate: self.rate,
            cost: self.cost,
        }
    }

    /// The answer's headers when the rate had it, else 429 (nothing was
    /// taken or appended; counted by the rejection metrics).
    pub fn judge(&self, taken: RateTaken) -> Result<RateLimitStatus, ApiError> {
        if taken.allowed {
            Ok(RateLimitStatus {
                rate: self.rate,
                taken,
            })
        } else {
            Err(self.refused(taken))
        }
    }

    /// The 429 of a request the rate did not have room for.
    pub fn refused(&self, taken: RateTaken) -> ApiError {
        ApiError::RateLimited(RateLimitStatus {
            rate: self.rate,
            taken,
        })
    }
}

impl RateLimitStatus {
    /// Whole seconds until the refused request would pass (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        self.taken.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }

    /// Adds the `RateLimit-Policy` and `RateLimit` headers (and
    /// `Retry-After` when refused).
    pub fn insert_into(&self, headers: &mut HeaderMap) {
        let policy = format!(
            "\"key\";q={};w={}",
            self.rate.burst,
            self.rate.window_secs()
        );
        let reset = self.taken.reset.as_secs_f64().ceil() as u64;
        let current = format!("\"key\";r={};t={reset}", self.taken.remaining);
        for (name, value) in [(RATE_LIMIT_POLICY, policy), (RATE_LIMIT, current)] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        if !self.taken.allowed {
            headers.insert(RETRY_AFTER, HeaderValue::from(self.retry_after_secs()));
        }
    }
}

/// Puts a taken rate's headers on a successful answer.
pub fn with_headers(mut response: HttpResponse, status: Option<RateLimitStatus>) -> HttpResponse {
    if let Some(status) = status {
        status.insert_into(response.headers_mut());
    }
    response
}
