//! RFC 9457 problem details (`application/problem+json`) for every HTTP
//! error Herald answers. Built with `http-api-problem`; services map their
//! own error enums onto [`Problem`] in one place each.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, HttpResponseBuilder};
use domain::{FieldError, RequestError};
use http_api_problem::HttpApiProblem;

pub const PROBLEM_JSON: &str = "application/problem+json";

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
            problem = problem.detail(self.detail.clone());
        }
        if !self.errors.is_empty() {
            problem.set_value("errors", &self.errors);
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
