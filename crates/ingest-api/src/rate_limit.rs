//! Each API key's rate, shared by every replica: a GCRA state per key in
//! Redis ([`RedisStore::take_rate`]), taken once per request for as many
//! notifications as it carries (a batch counts its items) before anything
//! is looked up or appended.
//!
//! A process does not ask Redis for every request: it takes a lease of
//! several units (`lease_size`: 50 ms of the key's rate, at most a tenth of
//! its burst, at least one) and spends it locally for up to a second. What
//! is leased is taken from the shared state, so the replicas together never
//! exceed the rate; a lease left unspent when it lapses is lost, so a key
//! may get slightly less than its rate, never more. Keys with small rates
//! get leases of one unit: every request asks Redis.
//!
//! Answers carry the IETF `RateLimit-Policy` and `RateLimit` headers
//! (draft-ietf-httpapi-ratelimit-headers), in notifications:
//! `RateLimit-Policy: "key";q=<burst>;w=<seconds to refill>` and
//! `RateLimit: "key";r=<remaining>;t=<seconds until full>` (with a lease,
//! what Redis had left when it was taken plus what is left of it); a 429
//! adds `Retry-After`.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::HttpResponse;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use platform::rate::Rate;
use platform::redis::RedisStore;
use platform::storage::api_keys::KeyIdentity;
use uuid::Uuid;

use platform::redis::RedisError;

const RATE_LIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATE_LIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// How long a lease may be spent.
const LEASE_LIFE: Duration = Duration::from_secs(1);
/// Keys holding a lease at most; beyond it the leases start over.
const MAX_LEASES: usize = 10_000;

/// Each key's rate: the default of keys without one of their own
/// (`ingest.key_rate_per_sec`, `ingest.key_burst`), and this process's leases.
#[derive(Debug)]
pub struct KeyRates {
    default: Rate,
    leases: Mutex<HashMap<Uuid, Lease>>,
}

/// Units of a key's rate this process took and has not spent yet.
#[derive(Debug, Clone, Copy)]
struct Lease {
    left: u32,
    until: Instant,
    /// What the shared rate had left, and its reset, when it was taken.
    shared_remaining: u64,
    reset: Duration,
}

/// A key's rate after a request took from it (or could not): what its
/// answer's headers say.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitStatus {
    pub rate: Rate,
    pub allowed: bool,
    pub remaining: u64,
    pub retry_after: Duration,
    pub reset: Duration,
}

/// Why a request did not get its units.
#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    /// 429: nothing taken.
    #[error("API key over its rate")]
    Limited(RateLimitStatus),
    /// 413: more than the burst, which could never pass.
    #[error("batch of {items} items over the key's burst of {burst}")]
    OverBurst { items: usize, burst: u32 },
    /// 503.
    #[error(transparent)]
    Redis(#[from] RedisError),
}

/// Units worth leasing at once: 50 ms of the rate, at most a tenth of the
/// burst, at least one.
fn lease_size(rate: Rate) -> u32 {
    let by_time = (rate.per_sec * 0.05).floor();
    let by_burst = f64::from(rate.burst / 10);
    by_time.min(by_burst).max(1.0) as u32
}

impl KeyRates {
    pub fn new(default: Rate) -> Self {
        Self {
            default,
            leases: Mutex::default(),
        }
    }

    /// Takes `cost` notifications from the producer's rate: `Ok(None)` when
    /// the key has no limit, `Ok(Some(status))` when taken, 429 when over it
    /// (nothing taken; counted by the rejection metrics), 413 when `cost`
    /// is over the burst (it could never pass), 503 when Redis does not
    /// answer.
    pub async fn take(
        &self,
        redis: &RedisStore,
        key: &KeyIdentity,
        cost: usize,
    ) -> Result<Option<RateLimitStatus>, RateLimitError> {
        let rate = key.rate(self.default);
        if rate.unlimited() {
            return Ok(None);
        }
        let within_burst = u32::try_from(cost).ok().filter(|c| *c <= rate.burst);
        let Some(cost) = within_burst else {
            return Err(RateLimitError::OverBurst {
                items: cost,
                burst: rate.burst,
            });
        };
        let key = key.id;
        if let Some(status) = self.spend_lease(key, rate, cost) {
            return Ok(Some(status));
        }
        let grant = redis
            .take_rate(&key.to_string(), rate, cost, lease_size(rate).max(cost))
            .await?;
        if grant.granted == 0 {
            return Err(RateLimitError::Limited(RateLimitStatus {
                rate,
                allowed: false,
                remaining: grant.remaining,
                retry_after: grant.retry_after,
                reset: grant.reset,
            }));
        }
        let left = grant.granted - cost.min(grant.granted);
        Ok(Some(self.keep_lease(
            key,
            rate,
            left,
            grant.remaining,
            grant.reset,
        )))
    }

    /// Spends `cost` from this process's lease of the key, if it has them.
    fn spend_lease(&self, key: Uuid, rate: Rate, cost: u32) -> Option<RateLimitStatus> {
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        let lease = leases.get_mut(&key)?;
        if lease.until < Instant::now() || lease.left < cost {
            return None;
        }
        lease.left -= cost;
        Some(RateLimitStatus {
            rate,
            allowed: true,
            remaining: lease.shared_remaining + u64::from(lease.left),
            retry_after: Duration::ZERO,
            reset: lease.reset,
        })
    }

    /// Keeps what is left of a new grant (added to a lease still running).
    fn keep_lease(
        &self,
        key: Uuid,
        rate: Rate,
        left: u32,
        shared_remaining: u64,
        reset: Duration,
    ) -> RateLimitStatus {
        let now = Instant::now();
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        if leases.len() >= MAX_LEASES {
            leases.retain(|_, lease| lease.until > now);
        }
        let lease = leases.entry(key).or_insert(Lease {
            left: 0,
            until: now,
            shared_remaining,
            reset,
        });
        if lease.until < now {
            lease.left = 0;
        }
        lease.left = lease.left.saturating_add(left);
        lease.until = now + LEASE_LIFE;
        lease.shared_remaining = shared_remaining;
        lease.reset = reset;
        RateLimitStatus {
            rate,
            allowed: true,
            remaining: shared_remaining + u64::from(lease.left),
            retry_after: Duration::ZERO,
            reset,
        }
    }
}

impl RateLimitStatus {
    /// Whole seconds until the refused request would pass (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }

    /// Adds the `RateLimit-Policy` and `RateLimit` headers (and
    /// `Retry-After` when refused).
    pub fn insert_into(&self, headers: &mut HeaderMap) {
        let policy = format!(
            "\"key\";q={};w={}",
            self.rate.burst,
            self.rate.window_secs()
        );
        let reset = self.reset.as_secs_f64().ceil() as u64;
        let current = format!("\"key\";r={};t={reset}", self.remaining);
        for (name, value) in [(RATE_LIMIT_POLICY, policy), (RATE_LIMIT, current)] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        if !self.allowed {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_fifty_ms_of_the_rate_within_a_tenth_of_the_burst() {
        let rate = |per_sec, burst| Rate { per_sec, burst };
        assert_eq!(lease_size(rate(1000.0, 2000)), 50);
        assert_eq!(lease_size(rate(1000.0, 100)), 10);
        assert_eq!(lease_size(rate(5.0, 1000)), 1);
        assert_eq!(lease_size(rate(0.1, 5)), 1);
        assert_eq!(lease_size(rate(1_000_000.0, 1_000_000)), 50_000);
    }

    #[test]
    fn a_lease_is_spent_locally_until_it_runs_out_or_lapses() {
        let rates = KeyRates::new(Rate {
            per_sec: 1000.0,
            burst: 2000,
        });
        let rate = rates.default;
        let key = Uuid::now_v7();
        assert!(rates.spend_lease(key, rate, 1).is_none(), "no lease yet");
        let status = rates.keep_lease(key, rate, 3, 100, Duration::from_millis(40));
        assert_eq!(status.remaining, 103);
        assert_eq!(
            rates.spend_lease(key, rate, 2).map(|s| s.remaining),
            Some(101)
        );
        assert!(
            rates.spend_lease(key, rate, 2).is_none(),
            "one left, two asked"
        );
        assert_eq!(
            rates.spend_lease(key, rate, 1).map(|s| s.remaining),
            Some(100)
        );
        assert!(rates.spend_lease(key, rate, 1).is_none());

        rates.keep_lease(key, rate, 5, 0, Duration::ZERO);
        rates.leases.lock().unwrap().get_mut(&key).unwrap().until =
            Instant::now() - Duration::from_millis(1);
        assert!(rates.spend_lease(key, rate, 1).is_none(), "lapsed");
    }
}
