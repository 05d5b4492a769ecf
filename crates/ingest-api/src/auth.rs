//! `x-api-key` authentication: an extractor that resolves the key against
//! the stored hashes (remembered for a while in the [`KeyCache`]), before
//! the body is read.

use std::future::Future;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::http::header::HeaderName;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use platform::client_limits::{FailureGate, Limited, client_address};
use platform::db::DbPool;
use platform::storage::api_keys::{self, KeyIdentity};
use uuid::Uuid;

use crate::error::ApiError;
use crate::key_cache::KeyCache;

/// A `HeaderName` constant: looking a header up by `&str` parses the name
/// (and copies it) on every request.
pub const API_KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");

/// What the extractors check a key against: the cache of verified keys,
/// then PostgreSQL. The app holds it as `web::Data<ApiKeys>`.
pub struct ApiKeys {
    pub cache: Arc<KeyCache>,
    pub db: DbPool,
    /// Addresses that fail too often are refused before their key is
    /// looked at (`auth.failures_per_address_*`).
    pub failures: FailureGate<IpAddr>,
    pub trusted_proxy_hops: usize,
}

impl ApiKeys {
    /// The key's identity if this process verified it less than
    /// `auth.api_key_cache_secs` ago (no query).
    fn recently_verified(&self, key: &str) -> Option<Producer> {
        if !api_keys::well_formed(key) {
            return None;
        }
        self.cache
            .get(&api_keys::hash_key(key))
            .ok()
            .map(|identity| Producer { identity })
    }

    /// The identity of a presented key, or 401 (503 if PostgreSQL cannot tell).
    async fn verify(&self, key: &str) -> Result<Producer, ApiError> {
        // Not a key Herald could have issued: no query.
        if !api_keys::well_formed(key) {
            return Err(ApiError::Unauthorized);
        }
        let hash = api_keys::hash_key(key);
        let identity = match self.cache.get(&hash) {
            Ok(identity) => identity,
            Err(_) if self.cache.known_unknown(&hash) => return Err(ApiError::Unauthorized),
            Err(generation) => {
                let mut conn = self.db.get().await.map_err(ApiError::database)?;
                let found = api_keys::authenticate(&mut conn, &hash)
                    .await
                    .map_err(ApiError::database)?;
                let Some(identity) = found else {
                    self.cache.insert_unknown(hash);
                    return Err(ApiError::Unauthorized);
                };
                self.cache.insert(generation, hash, identity.clone());
                identity
            }
        };
        Ok(Producer { identity })
    }
}

/// The producer's API key, verified. Holding one means the request is
/// authenticated; what it may do is [`Authorized`]'s to check.
#[derive(Debug, Clone)]
pub struct Producer {
    pub identity: KeyIdentity,
}

impl Producer {
    pub fn key_id(&self) -> Uuid {
        self.identity.id
    }

    /// 403 unless the key may address `user_id` (a tenant's key: only its
    /// own users).
    pub fn check_user(&self, user_id: &str) -> Result<(), ApiError> {
        if self.identity.may_address(user_id) {
            Ok(())
        } else {
            Err(ApiError::ForeignUsers(vec![domain::FieldError::new(
                "user_id",
                self.foreign_user_message(),
            )]))
        }
    }

    /// Why a user id was refused to this key.
    pub fn foreign_user_message(&self) -> String {
        format!(
            "this API key addresses only user ids that start with `{}:`",
            self.identity.tenant.as_deref().unwrap_or_default()
        )
    }
}

/// A verified key holding the scope `S` (403 otherwise), checked before the
/// body is read. Handlers name what they need in their signature:
/// `Authorized<scope::Dlq>`.
#[derive(Debug, Clone)]
pub struct Authorized<S> {
    pub producer: Producer,
    scope: PhantomData<S>,
}

impl<S> std::ops::Deref for Authorized<S> {
    type Target = Producer;

    fn deref(&self) -> &Producer {
        &self.producer
    }
}

/// The scopes as types, for [`Authorized`].
pub mod scope {
    use platform::storage::api_keys::Scope;

    pub trait Required {
        const SCOPE: Scope;
    }

    macro_rules! scopes {
        ($($name:ident),*) => {$(
            #[derive(Debug, Clone, Copy)]
            pub struct $name;
            impl Required for $name {
                const SCOPE: Scope = Scope::$name;
            }
        )*};
    }

    scopes!(Notify, Preferences, Templates, Dlq, Admin);
}

impl<S: scope::Required + 'static> FromRequest for Authorized<S> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let producer = Producer::from_request(req, payload);
        Box::pin(async move {
            let producer = producer.await?;
            if producer.identity.scopes.contains(S::SCOPE) {
                Ok(Authorized {
                    producer,
                    scope: PhantomData,
                })
            } else {
                Err(ApiError::MissingScope(S::SCOPE))
            }
        })
    }
}

impl FromRequest for Producer {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let key = req
            .headers()
            .get(&API_KEY_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let keys = req.app_data::<web::Data<ApiKeys>>().cloned();
        let address = keys
            .as_ref()
            .and_then(|keys| client_address(req, keys.trusted_proxy_hops));
        Box::pin(async move {
            let (Some(keys), Some(key)) = (keys, key) else {
                // No key sent: not a guess, nothing to count.
                return Err(ApiError::Unauthorized);
            };
            // A key this process verified a moment ago passes even when its
            // address is shut out: someone else behind the same address
            // guessing must not lock out a producer whose key is good.
            if let Some(producer) = keys.recently_verified(&key) {
                return Ok(producer);
            }
            if let Some(address) = address {
                keys.failures
                    .check(&address)
                    .map_err(|wait| ApiError::Limited(Limited::Failures(wait)))?;
            }
            let verified = keys.verify(&key).await;
            if let (Err(ApiError::Unauthorized), Some(address)) = (&verified, address) {
                keys.failures.failed(&address);
            }
            verified
        })
    }
}
