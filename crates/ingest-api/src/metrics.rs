//! ingest-api's own Prometheus metrics (names in docs/operations.md).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web;
use domain::Priority;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PriorityLabels {
    priority: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Why a notification was not accepted, as the `reason` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Malformed or invalid body, bad Idempotency-Key, reused key, wrong type.
    Invalid,
    /// Missing, unknown or revoked API key, or the wrong scope.
    Unauthorized,
    /// Redis or PostgreSQL did not answer (503).
    Unavailable,
    /// Body over the size limit, or a batch over the key's burst (413).
    TooLarge,
    /// Over the key's rate (429).
    RateLimited,
}

impl Rejection {
    const ALL: [Rejection; 5] = [
        Rejection::Invalid,
        Rejection::Unauthorized,
        Rejection::Unavailable,
        Rejection::TooLarge,
        Rejection::RateLimited,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Rejection::Invalid => "invalid",
            Rejection::Unauthorized => "unauthorized",
            Rejection::Unavailable => "unavailable",
            Rejection::TooLarge => "too_large",
            Rejection::RateLimited => "rate_limited",
        }
    }

    /// The rejection an error status of a producer endpoint stands for.
    fn of_status(status: StatusCode) -> Option<Self> {
        match status.as_u16() {
            // Not a notification sent at all (wrong path or method).
            404 | 405 => None,
            401 | 403 => Some(Rejection::Unauthorized),
            413 => Some(Rejection::TooLarge),
            429 => Some(Rejection::RateLimited),
            503 => Some(Rejection::Unavailable),
            400..=499 => Some(Rejection::Invalid),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct IngestMetrics {
    accepted: Family<PriorityLabels, Counter>,
    rejected: Family<ReasonLabels, Counter>,
}

impl IngestMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            accepted: Family::default(),
            rejected: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("herald_ingest_notifications");
        r.register(
            "accepted",
            "Notifications appended to a stream (202, or accepted batch items), by priority",
            metrics.accepted.clone(),
        );
        r.register(
            "rejected",
            "Notifications refused: whole requests by error status, and invalid batch items",
            metrics.rejected.clone(),
        );
        // Every series exists from the start, so rates are defined at once.
        for priority in Priority::ALL {
            metrics.accepted(priority, 0);
        }
        for reason in Rejection::ALL {
            metrics.rejected(reason, 0);
        }
        metrics
    }

    pub fn accepted(&self, priority: Priority, count: u64) {
        self.accepted
            .get_or_create(&PriorityLabels {
                priority: priority.as_str(),
            })
            .inc_by(count);
    }

    pub fn rejected(&self, reason: Rejection, count: u64) {
        self.rejected
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc_by(count);
    }
}

/// Middleware on the producer endpoints (the app holds
/// `web::Data<IngestMetrics>`): a request answered with an error
/// status counts as one rejected notification (a batch refused as a whole
/// counts once; its invalid items in a 200 are counted by the handler).
pub async fn count_rejections(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let metrics = req.app_data::<web::Data<IngestMetrics>>().cloned();
    let response = next.call(req).await?;
    if let (Some(metrics), Some(reason)) = (metrics, Rejection::of_status(response.status())) {
        metrics.rejected(reason, 1);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_statuses_map_to_reasons() {
        assert_eq!(
            Rejection::of_status(StatusCode::UNAUTHORIZED),
            Some(Rejection::Unauthorized)
        );
        assert_eq!(
            Rejection::of_status(StatusCode::PAYLOAD_TOO_LARGE),
            Some(Rejection::TooLarge)
        );
        assert_eq!(
            Rejection::of_status(StatusCode::SERVICE_UNAVAILABLE),
            Some(Rejection::Unavailable)
        );
        assert_eq!(
            Rejection::of_status(StatusCode::CONFLICT),
            Some(Rejection::Invalid)
        );
        assert_eq!(Rejection::of_status(StatusCode::ACCEPTED), None);
        assert_eq!(Rejection::of_status(StatusCode::METHOD_NOT_ALLOWED), None);
        assert_eq!(Rejection::of_status(StatusCode::OK), None);
    }
}
