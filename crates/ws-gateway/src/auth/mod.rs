//! User authentication: JWTs from the deployment's identity provider
//! (RS256, ES256, EdDSA; keys from a PEM file, a JWKS file or a JWKS URL)
//! or signed with the HS256 development secret, whose `exp` is required and
//! whose user id is the configured claim (`sub` by default). REST requests send `Authorization: Bearer <jwt>`.
//! A WebSocket may also carry it where browsers can put it: in the
//! subprotocol list (`herald.v1, herald.token.<jwt>`, out of URLs and access
//! logs) or, for older clients, as `?token=<jwt>`.

mod jwks;
mod keys;
pub mod revoked;
mod verifier;

use actix_web::HttpRequest;
use actix_web::http::header;
use serde::Deserialize;

pub use verifier::{TokenVerifier, VerifiedToken};

/// Why a request carries no acceptable token; answered 401 problem+json
/// (through `GatewayError::Unauthorized`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error("no token: send Authorization: Bearer <jwt>")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A token that once was good: expired, not yet valid, or revoked.
    /// Not a guess, so it does not count against its address
    /// (`auth.failures_per_address_*`): a whole office waking up with
    /// expired tokens must not shut itself out.
    #[error("invalid token: {0}")]
    Stale(String),
}

impl AuthError {
    /// Is this a failure that counts against the address (a wrong or
    /// forged token), rather than a missing or stale one?
    pub fn is_guess(&self) -> bool {
        matches!(self, AuthError::Invalid(_))
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

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn verifier() -> TokenVerifier {
        TokenVerifier::with_secret(&SecretString::from("0123456789abcdef0123456789abcdef"), 0)
    }

    #[tokio::test]
    async fn issued_tokens_verify() {
        let v = verifier();
        let token = v.issue("alice", 60).unwrap();
        assert_eq!(v.verify(&token).await.unwrap().user_id, "alice");
    }

    #[tokio::test]
    async fn other_secrets_and_garbage_are_refused() {
        let other =
            TokenVerifier::with_secret(&SecretString::from("another-secret-another-secret-xx"), 0);
        let token = other.issue("alice", 60).unwrap();
        assert!(verifier().verify(&token).await.is_err());
        assert!(verifier().verify("not.a.jwt").await.is_err());
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

    #[tokio::test]
    async fn invalid_user_ids_in_sub_are_refused() {
        let v = verifier();
        let token = v.issue("has space", 60).unwrap();
        assert!(v.verify(&token).await.is_err());
    }
}
