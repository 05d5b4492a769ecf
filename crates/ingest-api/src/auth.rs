//! `x-api-key` authentication: an extractor that resolves the key against
//! the stored hashes (remembered for a while in the [`KeyCache`]), before
//! the body is read.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::http::header::HeaderName;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use platform::db::DbPool;
use platform::storage::api_keys::{self, Scope};
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
}

impl ApiKeys {
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
                self.cache.insert(generation, hash, identity);
                identity
            }
        };
        Ok(Producer {
            key_id: identity.id,
            scope: identity.scope,
        })
    }
}

/// The producer's API key, verified. Holding one means the request is authenticated.
#[derive(Debug, Clone, Copy)]
pub struct Producer {
    pub key_id: Uuid,
    pub scope: Scope,
}

/// An API key with the `admin` scope: operators' endpoints.
#[derive(Debug, Clone, Copy)]
pub struct Admin {
    pub key_id: Uuid,
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let producer = Producer::from_request(req, payload);
        Box::pin(async move {
            let producer = producer.await?;
            match producer.scope {
                Scope::Admin => Ok(Admin {
                    key_id: producer.key_id,
                }),
                Scope::Producer => Err(ApiError::Forbidden),
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
        Box::pin(async move {
            let (Some(key), Some(keys)) = (key, keys) else {
                return Err(ApiError::Unauthorized);
            };
            keys.verify(&key).await
        })
    }
}
