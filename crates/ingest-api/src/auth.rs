//! `x-api-key` authentication: an extractor that resolves the key against
//! the stored hashes, before the body is read.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header::HeaderName;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use platform::storage::api_keys::{self, Scope};
use uuid::Uuid;

use crate::error::ApiError;
use crate::startup::AppState;

/// A `HeaderName` constant: looking a header up by `&str` parses the name
/// (and copies it) on every request.
pub const API_KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");

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
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let (Some(key), Some(state)) = (key, state) else {
                return Err(ApiError::Unauthorized);
            };
            if key.is_empty() || key.len() > 256 {
                return Err(ApiError::Unauthorized);
            }
            let hash = api_keys::hash_key(&key);
            let identity = match state.api_keys.get(&hash) {
                Ok(identity) => identity,
                Err(generation) => {
                    let mut conn = state.conn().await?;
                    let identity = api_keys::authenticate(&mut conn, &hash)
                        .await
                        .map_err(|err| state.db_unavailable(err))?
                        .ok_or(ApiError::Unauthorized)?;
                    state.api_keys.insert(generation, hash, identity);
                    identity
                }
            };
            Ok(Producer {
                key_id: identity.id,
                scope: identity.scope,
            })
        })
    }
}
