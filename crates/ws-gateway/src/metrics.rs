//! The gateway's Prometheus metrics (names in docs/api.md).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub struct GatewayMetrics {
    pub connections: Gauge,
    pub users_online: Gauge,
    pub frames_sent: Counter,
    pub send_queue_drops: Counter,
    pub frames_rate_limited: Counter,
    pub resume_backlog: Histogram,
    pub delivery_seconds: Histogram,
}

impl GatewayMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            connections: Gauge::default(),
            users_online: Gauge::default(),
            frames_sent: Counter::default(),
            send_queue_drops: Counter::default(),
            frames_rate_limited: Counter::default(),
            resume_backlog: Histogram::new(exponential_buckets(1.0, 4.0, 10)),
            delivery_seconds: Histogram::new(platform::metrics::latency_buckets()),
        };
        let r = registry.sub_registry_with_prefix("herald_gateway");
        r.register(
            "connections",
            "WebSocket connections open",
            metrics.connections.clone(),
        );
        r.register(
            "users_online",
            "Users with at least one connection on this instance",
            metrics.users_online.clone(),
        );
        r.register(
            "frames_sent",
            "Text frames written to clients",
            metrics.frames_sent.clone(),
        );
        r.register(
            "send_queue_drops",
            "Connections closed because their send queue was full (slow clients)",
            metrics.send_queue_drops.clone(),
        );
        r.register(
            "frames_rate_limited",
            "resume/read/read_all frames refused (error rate_limited) for exceeding a connection's budget",
            metrics.frames_rate_limited.clone(),
        );
        r.register(
            "resume_backlog_frames",
            "Notifications sent from storage per catch-up (resume or gap)",
            metrics.resume_backlog.clone(),
        );
        r.register(
            "delivery_seconds",
            "Time from a notification's creation (ingest) to its frame written to a client",
            metrics.delivery_seconds.clone(),
        );
        metrics
    }
}
