//! Request bodies that must be JSON: [`JsonBody`] refuses another content
//! type with 415 before reading anything, and reads at most
//! `http.max_body_bytes` (413 above it, through the app's `PayloadConfig`).

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;

use crate::problem::Problem;

/// Is the request's content type `application/json` (parameters allowed)?
pub fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Does the request carry a body (a non-zero `Content-Length`, or chunks)?
fn has_body(req: &HttpRequest) -> bool {
    match req.headers().get(header::CONTENT_LENGTH) {
        Some(length) => length
            .to_str()
            .ok()
            .and_then(|n| n.trim().parse::<u64>().ok())
            .is_none_or(|n| n > 0),
        None => req.headers().contains_key(header::TRANSFER_ENCODING),
    }
}

/// The 415 problem every service answers for a body that is not JSON.
pub fn unsupported_media_type() -> Problem {
    Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        "Unsupported media type",
    )
    .detail("send the body as JSON with Content-Type: application/json")
}

/// The raw bytes of a JSON body (decoded by the handler, which names the
/// field at fault). An empty body needs no content type: routes whose body
/// is optional take it as "nothing sent".
pub struct JsonBody(pub web::Bytes);

impl FromRequest for JsonBody {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        if has_body(req) && !is_json(req) {
            let refused = unsupported_media_type();
            let response = refused.respond(&"not JSON");
            return Box::pin(std::future::ready(Err(
                actix_web::error::InternalError::from_response("not JSON", response).into(),
            )));
        }
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move { Ok(JsonBody(bytes.await?)) })
    }
}
