//! User authentication: HS256 JWTs whose `sub` is the user id and whose
//! `exp` is required. REST requests send `Authorization: Bearer <jwt>`.
//! A WebSocket may also carry it where browsers can put it: in the
//! subprotocol list (`herald.v1, herald.token.<jwt>`, out of URLs and access
//! logs) or, for older clients, as `?token=<jwt>`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::HttpRequest;
use actix_web::http::header;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

impl Claims {
    /// The monotonic instant at which the token expires.
    pub fn expires_at(&self) -> tokio::time::Instant {
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        // Capped at a year: an absurd `exp` must not overflow the clock.
        let left = Duration::from_secs(self.exp.saturating_sub(now_unix).min(365 * 24 * 3600));
        tokio::time::Instant::now() + left
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no token: send Authorization: Bearer <jwt>")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Verifies (and, for development tooling, issues) user tokens.
#[derive(Clone)]
pub struct TokenVerifier {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

impl TokenVerifier {
    pub fn new(secret: &SecretString, leeway_secs: u64) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        // Only HS256: a token claiming any other algorithm (`none` included) is refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = leeway_secs;
        Self {
            decoding: DecodingKey::from_secret(bytes),
            encoding: EncodingKey::from_secret(bytes),
            validation,
        }
    }

    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|err| AuthError::Invalid(err.to_string()))?
            .claims;
        domain::notification::validate_user_id(&claims.sub)
            .map_err(|why| AuthError::Invalid(format!("sub {why}")))?;
        Ok(claims)
    }

    /// Signs a token for `user_id` valid for `ttl_secs`.
    pub fn issue(&self, user_id: &str, ttl_secs: u64) -> Result<String, AuthError> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: user_id.to_owned(),
            exp: now + ttl_secs,
            nbf: None,
            iat: Some(now),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|err| AuthError::Invalid(err.to_string()))
    }
}

/// The subprotocol a client names to speak Herald's frames; the gateway
/// selects it when offered.
pub const PROTOCOL: &str = "herald.v1";

/// Prefix of the subprotocol that carries a token: `herald.token.<jwt>`.
const TOKEN_PROTOCOL_PREFIX: &str = "herald.token.";

/// The token of a REST request: `Authorization: Bearer <jwt>` only.
pub fn bearer_token(req: &HttpRequest) -> Result<String, AuthError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?;
    let value = value.to_str().map_err(|_| AuthError::Missing)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(AuthError::Missing)?;
    Ok(token.trim().to_owned())
}

/// The subprotocols a WebSocket upgrade offers, in order.
pub fn offered_protocols(req: &HttpRequest) -> impl Iterator<Item = &str> {
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|protocol| !protocol.is_empty())
}

/// The token of a WebSocket upgrade: from the subprotocol list
/// (`herald.token.<jwt>`), else the `Authorization` header, else `?token=`.
pub fn websocket_token(req: &HttpRequest) -> Result<String, AuthError> {
    let from_protocols = offered_protocols(req)
        .find_map(|protocol| protocol.strip_prefix(TOKEN_PROTOCOL_PREFIX))
        .filter(|token| !token.is_empty());
    if let Some(token) = from_protocols {
        return Ok(token.to_owned());
    }
    if req.headers().contains_key(header::AUTHORIZATION) {
        return bearer_token(req);
    }
    #[derive(Deserialize)]
    struct TokenQuery {
        token: Option<String>,
    }
    actix_web::web::Query::<TokenQuery>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().token)
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::Missing)
}

/// The authenticated user of a REST request (`Authorization: Bearer <jwt>`);
/// the app holds the verifier as `web::Data<TokenVerifier>`.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
}

impl actix_web::FromRequest for User {
    type Error = crate::error::GatewayError;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let verified = (|| {
            let verifier = req
                .app_data::<actix_web::web::Data<TokenVerifier>>()
                .ok_or(AuthError::Missing)?;
            let claims = verifier.verify(&bearer_token(req)?)?;
            Ok(User { id: claims.sub })
        })();
        std::future::ready(verified.map_err(|err: AuthError| err.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(&SecretString::from("0123456789abcdef0123456789abcdef"), 0)
    }

    #[test]
    fn issued_tokens_verify() {
        let v = verifier();
        let token = v.issue("alice", 60).unwrap();
        assert_eq!(v.verify(&token).unwrap().sub, "alice");
    }

    #[test]
    fn other_secrets_and_garbage_are_refused() {
        let other = TokenVerifier::new(&SecretString::from("another-secret-another-secret-xx"), 0);
        let token = other.issue("alice", 60).unwrap();
        assert!(verifier().verify(&token).is_err());
        assert!(verifier().verify("not.a.jwt").is_err());
    }

    #[test]
    fn websocket_tokens_come_from_the_subprotocol_header_or_query() {
        use actix_web::test::TestRequest;
        let from_protocol = TestRequest::get()
            .uri("/v1/ws?token=from-query")
            .insert_header((
                header::SEC_WEBSOCKET_PROTOCOL,
                "herald.v1, herald.token.a.b.c",
            ))
            .to_http_request();
        assert_eq!(websocket_token(&from_protocol).unwrap(), "a.b.c");
        let from_header = TestRequest::get()
            .uri("/v1/ws?token=from-query")
            .insert_header((header::SEC_WEBSOCKET_PROTOCOL, "herald.v1"))
            .insert_header((header::AUTHORIZATION, "Bearer from-header"))
            .to_http_request();
        assert_eq!(websocket_token(&from_header).unwrap(), "from-header");
        let from_query = TestRequest::get()
            .uri("/v1/ws?token=from-query")
            .to_http_request();
        assert_eq!(websocket_token(&from_query).unwrap(), "from-query");
        // REST takes the header only.
        assert!(matches!(bearer_token(&from_query), Err(AuthError::Missing)));
        assert!(matches!(
            websocket_token(&TestRequest::get().uri("/v1/ws").to_http_request()),
            Err(AuthError::Missing)
        ));
    }

    #[test]
    fn invalid_user_ids_in_sub_are_refused() {
        let v = verifier();
        let token = v.issue("has space", 60).unwrap();
        assert!(v.verify(&token).is_err());
    }
}
