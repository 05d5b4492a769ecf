//! Which browser pages may use the gateway: `gateway.allowed_origins`
//! decides both the CORS answers of the inbox REST API and which `Origin`
//! may open a WebSocket. A request without `Origin` is not from a browser
//! page (a mobile app, a server, a test) and is not affected.

use std::collections::HashSet;
use std::sync::Arc;

use actix_cors::{Cors, CorsError};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, ResponseError};

use crate::error::GatewayError;

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE_SECS: usize = 600;

#[derive(Debug, Clone)]
pub struct AllowedOrigins(Arc<Allowed>);

#[derive(Debug)]
struct Allowed {
    any: bool,
    origins: HashSet<String>,
}

impl AllowedOrigins {
    /// From `gateway.allowed_origins` (validated by the settings): exact
    /// origins, or `*` for any; empty entries allow nothing.
    pub fn new(origins: &[String]) -> Self {
        Self(Arc::new(Allowed {
            any: origins.iter().any(|o| o == "*"),
            origins: origins
                .iter()
                .filter(|o| !o.is_empty() && *o != "*")
                .cloned()
                .collect(),
        }))
    }

    pub fn allows(&self, origin: &str) -> bool {
        self.0.any || self.0.origins.contains(origin)
    }

    /// A WebSocket upgrade from a page on another origin is refused before
    /// the upgrade (403); one without `Origin` is not from a browser page.
    pub fn check(&self, req: &HttpRequest) -> Result<(), GatewayError> {
        match req.headers().get(header::ORIGIN) {
            None => Ok(()),
            Some(origin) => match origin.to_str() {
                Ok(origin) if self.allows(origin) => Ok(()),
                _ => Err(GatewayError::OriginNotAllowed),
            },
        }
    }

    /// CORS for the inbox and preferences API: allowed origins get the
    /// headers (and their preflight answered); other origins get none, so
    /// the browser keeps the answer from the page. No cookies are involved
    /// (the token travels in `Authorization`), so credentials stay off.
    pub fn cors(&self) -> Cors {
        let allowed = self.clone();
        Cors::default()
            .allowed_origin_fn(move |origin, _| origin.to_str().is_ok_and(|o| allowed.allows(o)))
            .allowed_methods([Method::GET, Method::POST, Method::PUT])
            .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([header::RETRY_AFTER, header::WWW_AUTHENTICATE])
            .max_age(PREFLIGHT_MAX_AGE_SECS)
            .block_on_origin_mismatch(false)
    }
}

/// actix-cors answers a refused preflight with a plain-text 400; every
/// error of Herald's is problem+json, so this turns them into one.
pub async fn cors_errors_as_problems(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let response = next.call(req).await?.map_into_boxed_body();
    let refused = response
        .response()
        .error()
        .and_then(|err| err.as_error::<CorsError>())
        .map(|err| match err {
            CorsError::OriginNotAllowed => GatewayError::OriginNotAllowed,
            other => GatewayError::BadQuery(other.to_string()),
        });
    Ok(match refused {
        Some(problem) => {
            let (req, _) = response.into_parts();
            ServiceResponse::new(req, problem.error_response())
        }
        None => response,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_origins_or_any() {
        let some = AllowedOrigins::new(&["https://app.example.com".into(), String::new()]);
        assert!(some.allows("https://app.example.com"));
        assert!(!some.allows("https://app.example.com:8443"));
        assert!(!some.allows("http://app.example.com"));
        assert!(!some.allows(""));
        assert!(!AllowedOrigins::new(&[]).allows("https://app.example.com"));
        assert!(AllowedOrigins::new(&["*".into()]).allows("https://anything.example"));
    }
}
