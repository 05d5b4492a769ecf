//! The one error type of ingest-api's HTTP layer and its mapping to
//! problem+json. Causes are logged here; bodies never carry internals.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use domain::{FieldError, RequestError};
use platform::client_limits::Limited;
use platform::problem::Problem;
use platform::storage::api_keys::Scope;

use crate::rate_limit::{RateLimitError, RateLimitStatus};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or unknown API key")]
    Unauthorized,
    #[error("this API key lacks the `{}` scope", .0.as_str())]
    MissingScope(Scope),
    #[error("this API key may not address these users")]
    ForeignUsers(Vec<FieldError>),
    /// 429 with `Retry-After` and the `RateLimit` headers.
    #[error("API key over its rate")]
    RateLimited(RateLimitStatus),
    /// 429 with `Retry-After`: a limit per client address.
    #[error(transparent)]
    Limited(#[from] Limited),
    #[error("batch of {items} items over the key's burst of {burst}")]
    BatchOverBurst { items: usize, burst: u32 },
    #[error("invalid Idempotency-Key header: {0}")]
    BadIdempotencyKey(&'static str),
    #[error("Idempotency-Key reused with a different body")]
    IdempotencyKeyReused,
    #[error("{0}")]
    NotFoundDetail(&'static str),
    #[error("{0}")]
    Conflict(&'static str),
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("cannot read request body: {0}")]
    BadBody(String),
    #[error(transparent)]
    InvalidRequest(#[from] RequestError),
    /// 503; the server adds `Retry-After` (`http.retry_after_secs`).
    #[error("{dependency} unavailable: {cause}")]
    Unavailable {
        dependency: &'static str,
        cause: String,
    },
}

impl ApiError {
    /// PostgreSQL did not answer (or refused): 503, nothing done.
    pub fn database(cause: impl std::fmt::Display) -> Self {
        ApiError::Unavailable {
            dependency: "database",
            cause: cause.to_string(),
        }
    }

    /// Redis did not answer (or refused): 503, nothing appended.
    pub fn redis(cause: impl std::fmt::Display) -> Self {
        ApiError::Unavailable {
            dependency: "redis",
            cause: cause.to_string(),
        }
    }

    fn problem(&self) -> Problem {
        match self {
            ApiError::Unauthorized => {
                Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
                    .detail("send a valid API key in the x-api-key header")
            }
            ApiError::MissingScope(scope) => {
                Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").detail(format!(
                    "this endpoint needs an API key with the `{}` scope",
                    scope.as_str()
                ))
            }
            ApiError::ForeignUsers(errors) => {
                Problem::new(StatusCode::FORBIDDEN, "forbidden-user", "Forbidden user")
                    .detail("this API key may not address these users; nothing was accepted")
                    .errors(errors.clone())
            }
            ApiError::RateLimited(status) => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
            )
            .detail(format!(
                "this API key may send {} notifications per second ({} at once); \
                 nothing was accepted, retry after {} s",
                status.rate.per_sec,
                status.rate.burst,
                status.retry_after_secs()
            )),
            ApiError::Limited(limited) => limited.problem(),
            ApiError::BatchOverBurst { items, burst } => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "batch-over-burst",
                "Batch larger than the key's burst",
            )
            .detail(format!(
                "this API key may send at most {burst} notifications at once; \
                 this batch has {items}: split it"
            )),
            ApiError::BadIdempotencyKey(why) => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-request",
                "Invalid request",
            )
            .detail(format!("Idempotency-Key {why}"))
            .errors(vec![domain::FieldError::new("Idempotency-Key", *why)]),
            ApiError::IdempotencyKeyReused => Problem::new(
                StatusCode::CONFLICT,
                "idempotency-key-reused",
                "Idempotency-Key reused",
            )
            .detail("this Idempotency-Key was first used with a different request body"),
            ApiError::NotFoundDetail(what) => {
                Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found").detail(*what)
            }
            ApiError::Conflict(what) => {
                Problem::new(StatusCode::CONFLICT, "conflict", "Conflict").detail(*what)
            }
            ApiError::UnsupportedMediaType => platform::body::unsupported_media_type(),
            ApiError::PayloadTooLarge(limit) => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            )
            .detail(format!("the request body must be at most {limit} bytes")),
            ApiError::BadBody(cause) => {
                Problem::invalid(&RequestError::MalformedJson(cause.clone()))
            }
            ApiError::InvalidRequest(invalid) => Problem::invalid(invalid),
            ApiError::Unavailable { dependency, .. } => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            )
            .detail(format!(
                "{dependency} is unavailable; nothing was accepted, retry later"
            )),
        }
    }
}

/// Every storage failure answers 503: the request can be tried again.
impl From<platform::db::DbError> for ApiError {
    fn from(err: platform::db::DbError) -> Self {
        ApiError::database(err)
    }
}

impl From<platform::dlq::ReplayError> for ApiError {
    fn from(err: platform::dlq::ReplayError) -> Self {
        use platform::dlq::ReplayError;
        match err {
            ReplayError::NotFound => ApiError::NotFoundDetail("no dead letter with this id"),
            ReplayError::AlreadyReplayed => {
                ApiError::Conflict("this dead letter was already replayed")
            }
            ReplayError::InvalidPayload(invalid) => ApiError::InvalidRequest(invalid),
            ReplayError::Db(err) => ApiError::database(err),
            ReplayError::Redis(err) => ApiError::redis(err),
        }
    }
}

impl From<RateLimitError> for ApiError {
    fn from(err: RateLimitError) -> Self {
        match err {
            RateLimitError::Limited(status) => ApiError::RateLimited(status),
            RateLimitError::OverBurst { items, burst } => ApiError::BatchOverBurst { items, burst },
            RateLimitError::Redis(err) => ApiError::redis(err),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.problem().status()
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Limited(limited) = self {
            return limited.respond();
        }
        let mut response = self.problem().respond(self);
        if let ApiError::RateLimited(status) = self {
            status.insert_into(response.headers_mut());
        }
        response
    }
}
