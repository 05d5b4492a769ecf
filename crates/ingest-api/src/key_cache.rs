//! Verified API keys, remembered for a short while so a request does not
//! cost a PostgreSQL round trip.
//!
//! Revocation stays immediate: `ingest-api keys revoke` publishes the key's
//! id on `<prefix>:api-keys:revoked`, and every process evicts it
//! ([`watch_revocations`]). If that Pub/Sub connection drops, messages sent
//! meanwhile are lost, so the whole cache is cleared when it comes back; the
//! TTL (`auth.api_key_cache_secs`) bounds what is left. A lookup that started
//! before a revocation may not store its (now stale) answer: every eviction
//! bumps a generation, and an insert from an older generation is dropped.
//!
//! Well-formed keys that PostgreSQL does not know are remembered as unknown
//! for a few seconds (`auth.unknown_api_key_cache_secs`), so a client
//! repeating a wrong key costs one query per interval, not one per request.
//! A key created meanwhile works once that interval has passed.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::recently_unknown::RecentlyUnknown;
use platform::redis::{FramesError, RedisError, RedisStore, RedisSubscriber};
use platform::storage::api_keys::{self, ApiKeyError, KeyIdentity};
use uuid::Uuid;

/// Keys remembered at most; beyond it the cache starts over (there are few
/// keys in practice, and only verified ones are stored).
const MAX_ENTRIES: usize = 10_000;

/// SHA-256 of a presented key.
pub type KeyHash = Vec<u8>;

#[derive(Debug)]
pub struct KeyCache {
    ttl: Duration,
    unknown: RecentlyUnknown<KeyHash>,
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    generation: u64,
    entries: HashMap<KeyHash, (KeyIdentity, Instant)>,
}

impl KeyCache {
    /// A cache keeping keys for `ttl`; a zero TTL keeps nothing.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            unknown: RecentlyUnknown::new(Duration::ZERO),
            inner: RwLock::default(),
        }
    }

    /// Also remembers unknown keys, for `ttl`.
    pub fn remembering_unknown_for(mut self, ttl: Duration) -> Self {
        self.unknown = RecentlyUnknown::new(ttl);
        self
    }

    /// Was this key found unknown less than the unknown TTL ago?
    pub fn known_unknown(&self, hash: &[u8]) -> bool {
        self.unknown.contains(hash)
    }

    /// Remembers that PostgreSQL does not know this key.
    pub fn insert_unknown(&self, hash: KeyHash) {
        self.unknown.insert(hash);
    }

    /// The cached identity of a key, if verified less than the TTL ago;
    /// otherwise the generation to hand back to [`KeyCache::insert`].
    pub fn get(&self, hash: &[u8]) -> Result<KeyIdentity, u64> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        match inner.entries.get(hash) {
            Some((identity, at)) if at.elapsed() < self.ttl => Ok(identity.clone()),
            _ => Err(inner.generation),
        }
    }

    /// Remembers a key verified in `generation`, unless something was
    /// evicted since (the answer might be stale).
    pub fn insert(&self, generation: u64, hash: KeyHash, identity: KeyIdentity) {
        if self.ttl.is_zero() {
            return;
        }
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if inner.generation != generation {
            return;
        }
        if inner.entries.len() >= MAX_ENTRIES {
            inner.entries.clear();
        }
        inner.entries.insert(hash, (identity, Instant::now()));
    }

    /// Forgets one key (by id) or, with `None`, every key.
    pub fn evict(&self, key_id: Option<Uuid>) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.generation += 1;
        match key_id {
            Some(id) => inner.entries.retain(|_, (identity, _)| identity.id != id),
            None => {
                inner.entries.clear();
                self.unknown.clear();
            }
        }
    }
}

/// Evicts revoked keys as they are announced, and everything after the
/// subscriber reconnected or fell behind. Runs until the subscriber closes.
pub async fn watch_revocations(subscriber: RedisSubscriber, cache: std::sync::Arc<KeyCache>) {
    let mut messages = subscriber.messages();
    let mut reconnects = subscriber.reconnects();
    loop {
        tokio::select! {
            message = messages.recv() => match message {
                Ok((_, text)) => match Uuid::parse_str(text.trim()) {
                    Ok(id) => {
                        tracing::info!(key_id = %id, "API key revoked; evicted from cache");
                        cache.evict(Some(id));
                    }
                    Err(_) => cache.evict(None),
                },
                Err(FramesError::Lagged(_)) => cache.evict(None),
                Err(FramesError::Closed) => return,
            },
            alive = reconnects.recv() => {
                if !alive {
                    return;
                }
                // Subscribe again before clearing (fred re-subscribes too, in
                // its own time): a revocation published before this point is
                // covered by the clearing, one published after it is heard.
                if let Err(err) = subscriber.subscribe_key_revocations().await {
                    tracing::warn!(%err, "cannot re-subscribe to API key revocations");
                }
                tracing::info!("revocation channel reconnected; API key cache cleared");
                cache.evict(None);
            }
        }
    }
}

/// Revokes the active key named `name` in PostgreSQL, then announces it so
/// running ingest-api processes evict it from their caches. Answers the
/// key's id and how many processes heard (an error if Redis did not take
/// the announcement: caches then forget the key within their TTL).
pub async fn revoke(
    conn: &mut platform::db::AsyncPgConnection,
    redis: &RedisStore,
    name: &str,
) -> Result<(Uuid, Result<u64, RedisError>), ApiKeyError> {
    let id = api_keys::revoke(conn, name).await?;
    let announced = redis.announce_key_revoked(&id.to_string()).await;
    Ok((id, announced))
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::storage::api_keys::Scopes;

    fn identity() -> KeyIdentity {
        KeyIdentity {
            id: Uuid::now_v7(),
            scopes: Scopes::PRODUCER,
            tenant: None,
            rate_per_sec: None,
            burst: None,
        }
    }

    #[test]
    fn remembers_until_evicted() {
        let cache = KeyCache::new(Duration::from_secs(60));
        let (a, b) = (identity(), identity());
        let generation = cache.get(b"a").unwrap_err();
        cache.insert(generation, b"a".to_vec(), a.clone());
        cache.insert(generation, b"b".to_vec(), b.clone());
        assert_eq!(cache.get(b"a"), Ok(a.clone()));
        cache.evict(Some(a.id));
        assert!(cache.get(b"a").is_err());
        assert_eq!(cache.get(b"b"), Ok(b));
        cache.evict(None);
        assert!(cache.get(b"b").is_err());
    }

    #[test]
    fn a_lookup_older_than_an_eviction_is_not_stored() {
        let cache = KeyCache::new(Duration::from_secs(60));
        let key = identity();
        let before = cache.get(b"k").unwrap_err();
        // The key is revoked while its database lookup is in flight.
        cache.evict(Some(key.id));
        cache.insert(before, b"k".to_vec(), key.clone());
        assert!(cache.get(b"k").is_err());
    }

    #[test]
    fn expires_and_zero_ttl_keeps_nothing() {
        let cache = KeyCache::new(Duration::from_millis(1));
        let generation = cache.get(b"k").unwrap_err();
        cache.insert(generation, b"k".to_vec(), identity());
        std::thread::sleep(Duration::from_millis(5));
        assert!(cache.get(b"k").is_err());

        let off = KeyCache::new(Duration::ZERO);
        off.insert(0, b"k".to_vec(), identity());
        assert!(off.get(b"k").is_err());
    }
}
