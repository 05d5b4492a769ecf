//! The one error type of ws-gateway's HTTP layer, as problem+json.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError};
use platform::client_limits::Limited;
use platform::problem::Problem;

use crate::auth::AuthError;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
    #[error("not a WebSocket upgrade request: {0}")]
    NotWebSocket(String),
    #[error("the page's origin is not in gateway.allowed_origins")]
    OriginNotAllowed,
    /// 503; the server adds `Retry-After`.
    #[error("this gateway holds its maximum of connections")]
    Full,
    /// 429: the user holds `gateway.max_connections_per_user` sockets here.
    #[error("the user holds {0} connections on this gateway, its maximum")]
    UserFull(usize),
    /// 429 with `Retry-After`: a limit per client address or user.
    #[error(transparent)]
    Limited(#[from] Limited),
    #[error("no such notification")]
    NoSuchNotification,
    #[error("invalid query: {0}")]
    BadQuery(String),
    #[error(transparent)]
    Invalid(domain::RequestError),
    /// 503; the server adds `Retry-After` (`http.retry_after_secs`).
    #[error("{dependency} unavailable: {cause}")]
    Unavailable {
        dependency: &'static str,
        cause: String,
    },
}

impl GatewayError {
    fn problem(&self) -> Problem {
        match self {
            GatewayError::Unauthorized(AuthError::Missing) => {
                Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized").detail(
                    "send Authorization: Bearer <jwt> (a WebSocket may instead offer the \
                     subprotocol herald.token.<jwt>)",
                )
            }
            GatewayError::Unauthorized(AuthError::Invalid(why) | AuthError::Stale(why)) => {
                // The reason (wrong `aud`, unknown `kid`, expired, ...) is
                // what an integrator needs to fix an identity provider's
                // configuration; it names nothing secret.
                Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
                    .detail(format!("the token is not accepted: {why}"))
            }
            GatewayError::NotWebSocket(_) => Problem::new(
                StatusCode::BAD_REQUEST,
                "not-websocket",
                "WebSocket upgrade required",
            )
            .detail("connect with a WebSocket client"),
            GatewayError::OriginNotAllowed => Problem::new(
                StatusCode::FORBIDDEN,
                "origin-not-allowed",
                "Origin not allowed",
            )
            .detail("pages on this origin may not use this gateway (gateway.allowed_origins)"),
            GatewayError::NoSuchNotification => {
                Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found")
                    .detail("you have no notification with this id")
            }
            GatewayError::Invalid(invalid) => Problem::invalid(invalid),
            GatewayError::BadQuery(why) => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-request",
                "Invalid request",
            )
            .detail(why.clone()),
            GatewayError::Full => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            )
            .detail("this gateway holds its maximum of connections; retry (another instance may answer)"),
            GatewayError::UserFull(held) => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-connections",
                "Too many connections",
            )
            .detail(format!(
                "this user already holds {held} connections on this gateway \
                 (gateway.max_connections_per_user); close one first"
            )),
            GatewayError::Limited(limited) => limited.problem(),
            GatewayError::Unavailable { dependency, .. } => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            )
            .detail(format!("{dependency} is unavailable; retry later")),
        }
    }
}

impl GatewayError {
    pub fn database(err: impl std::fmt::Display) -> Self {
        GatewayError::Unavailable {
            dependency: "database",
            cause: err.to_string(),
        }
    }
}

/// Every storage failure answers 503: the request can be tried again.
impl From<platform::db::DbError> for GatewayError {
    fn from(err: platform::db::DbError) -> Self {
        GatewayError::database(err)
    }
}

impl ResponseError for GatewayError {
    fn status_code(&self) -> StatusCode {
        self.problem().status()
    }

    fn error_response(&self) -> HttpResponse {
        if let GatewayError::Limited(limited) = self {
            return limited.respond();
        }
        let mut response = self.problem().respond(self);
        if matches!(self, GatewayError::Unauthorized(_)) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// The inbox's `User` extractor fails with an `AuthError`: answered as the
/// gateway answers every refusal.
impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }

    fn error_response(&self) -> HttpResponse {
        GatewayError::Unauthorized(self.clone()).error_response()
    }
}
