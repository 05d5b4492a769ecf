//! RFC 9457 problem details (`application/problem+json`) for every HTTP
//! error Herald answers. Built with `http-api-problem`; services map their
//! own error enums onto [`Problem`] in one place each.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, HttpResponseBuilder};
use domain::{FieldError, RequestError};
use http_api_problem::HttpApiProblem;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Is this answer already a problem (its content type `application/problem+json`)?
pub fn is_problem(headers: &actix_web::http::header::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes())
}

/// Longest text a problem repeats from the request (a value in a field
/// message, a parser's complaint): a 200 KB value is not sent back.
const MAX_ECHO_CHARS: usize = 300;

fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHO_CHARS) {
        Some((cut, _)) => format!("{}… (truncated)", &text[..cut]),
        None => text.to_owned(),
    }
}

/// A problem response: status, stable `type` slug, title, detail and field errors.
#[derive(Debug, Clone)]
pub struct Problem {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
    errors: Vec<FieldError>,
    extensions: Vec<(&'static str, serde_json::Value)>,
}

impl Problem {
    /// `slug` becomes the problem `type` URI `https://herald.dev/problems/<slug>`;
    /// clients match on it, so it is part of the API contract.
    pub fn new(status: StatusCode, slug: &'static str, title: &'static str) -> Self {
        Self {
            status,
            slug,
            title,
            detail: String::new(),
            errors: Vec::new(),
            extensions: Vec::new(),
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    pub fn errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    /// An extension member (RFC 9457 section 3.2), e.g. `issues` with positions.
    pub fn extension(mut self, name: &'static str, value: serde_json::Value) -> Self {
        self.extensions.push((name, value));
        self
    }

    /// The problem every service answers for a refusal that its own
    /// handlers did not describe (actix's extractors and router: a bad query
    /// or path, an unknown method, a body over the limit), by status.
    pub fn for_status(status: StatusCode) -> Self {
        let (slug, title) = match status {
            StatusCode::BAD_REQUEST => ("invalid-request", "Invalid request"),
            StatusCode::UNAUTHORIZED => ("unauthorized", "Unauthorized"),
            StatusCode::FORBIDDEN => ("forbidden", "Forbidden"),
            StatusCode::NOT_FOUND => ("not-found", "Not found"),
            StatusCode::METHOD_NOT_ALLOWED => ("method-not-allowed", "Method not allowed"),
            StatusCode::PAYLOAD_TOO_LARGE => ("payload-too-large", "Payload too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ("unsupported-media-type", "Unsupported media type")
            }
            StatusCode::SERVICE_UNAVAILABLE => ("unavailable", "Service unavailable"),
            status if status.is_server_error() => ("internal", "Internal error"),
            _ => ("invalid-request", "Request refused"),
        };
        Self::new(status, slug, title)
    }

    /// The one rendering of a refused request body: `malformed-json`, or
    /// `invalid-request` with every field problem in `errors`.
    pub fn invalid(err: &RequestError) -> Self {
        match err {
            RequestError::MalformedJson(cause) => {
                Problem::new(StatusCode::BAD_REQUEST, "malformed-json", "Malformed JSON")
                    .detail(cause.clone())
            }
            RequestError::InvalidFields(errors) => {
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "invalid-request",
                    "Invalid request",
                )
                .detail(format!("invalid field(s): {}", fields.join(", ")))
                .errors(errors.clone())
            }
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn type_uri(&self) -> String {
        format!("https://herald.dev/problems/{}", self.slug)
    }

    /// Logs `cause` (an error for 5xx, debug otherwise: refusals are the
    /// client's business) and renders the problem.
    pub fn respond(&self, cause: &dyn std::fmt::Display) -> HttpResponse {
        if self.status.is_server_error() {
            tracing::error!(error = %cause, status = self.status.as_u16(), "request failed");
        } else {
            tracing::debug!(error = %cause, status = self.status.as_u16(), "request refused");
        }
        self.to_response()
    }

    pub fn to_response(&self) -> HttpResponse {
        // http-api-problem speaks `http` 1.x, actix-web 4 `http` 0.2: bridge by number.
        let status = http_api_problem::StatusCode::from_u16(self.status.as_u16())
            .unwrap_or(http_api_problem::StatusCode::INTERNAL_SERVER_ERROR);
        let mut problem = HttpApiProblem::new(status)
            .type_url(self.type_uri())
            .title(self.title);
        if !self.detail.is_empty() {
            problem = problem.detail(bounded(&self.detail));
        }
        if !self.errors.is_empty() {
            let errors: Vec<FieldError> = self
                .errors
                .iter()
                .map(|e| FieldError::new(bounded(&e.field), bounded(&e.message)))
                .collect();
            problem.set_value("errors", &errors);
        }
        for (name, value) in &self.extensions {
            problem.set_value(*name, value);
        }
        let mut builder = HttpResponseBuilder::new(self.status);
        builder.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        builder.body(problem.json_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    #[test]
    fn echoed_text_is_bounded() {
        let huge = "x".repeat(200_000);
        let response = Problem::new(StatusCode::BAD_REQUEST, "invalid-request", "Invalid")
            .detail(huge.clone())
            .errors(vec![FieldError::new(
                "locale",
                format!("{huge:?} is not a tag"),
            )])
            .to_response();
        let bytes = response.into_body().try_into_bytes().unwrap();
        assert!(bytes.len() < 2_000, "{} bytes", bytes.len());
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(body["detail"].as_str().unwrap().ends_with("(truncated)"));
    }

    #[test]
    fn renders_rfc9457_fields() {
        let response = Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "Invalid request",
        )
        .detail("1 invalid field")
        .errors(vec![FieldError::new("user_id", "must not be empty")])
        .to_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            PROBLEM_JSON
        );
        let bytes = response.into_body().try_into_bytes().unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["type"], "https://herald.dev/problems/invalid-request");
        assert_eq!(body["title"], "Invalid request");
        assert_eq!(body["status"], 400);
        assert_eq!(body["detail"], "1 invalid field");
        assert_eq!(body["errors"][0]["field"], "user_id");
    }
}
