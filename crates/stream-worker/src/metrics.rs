//! The worker's Prometheus metrics (names documented in docs/operations.md).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use domain::Priority;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// Stored now (visible).
    Stored,
    /// Already stored before: a redelivery, stored once.
    Duplicate,
    /// Stored as expired, not delivered.
    Expired,
    /// Moved to the dead letters.
    DeadLettered,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Stored => "stored",
            Outcome::Duplicate => "duplicate",
            Outcome::Expired => "expired",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EntryLabels {
    pub priority: String,
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PriorityLabels {
    pub priority: String,
}

pub fn lane(priority: Priority) -> PriorityLabels {
    PriorityLabels {
        priority: priority.as_str().to_owned(),
    }
}

pub struct WorkerMetrics {
    pub entries: Family<EntryLabels, Counter>,
    pub batches: Counter,
    pub batch_size: Histogram,
    pub batch_seconds: Histogram,
    pub delivery_seconds: Histogram,
    pub retries: Counter,
    pub dead_letters: Counter,
    pub claimed: Family<PriorityLabels, Counter>,
    pub pending: Family<PriorityLabels, Gauge>,
    pub lag: Family<PriorityLabels, Gauge>,
    pub length: Family<PriorityLabels, Gauge>,
    pub trimmed: Family<PriorityLabels, Counter>,
    pub dlq_entries: Gauge,
    pub retention_deleted: Counter,
    pub retention_chunk_seconds: Histogram,
}

impl WorkerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            entries: Family::default(),
            batches: Counter::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            batch_seconds: Histogram::new(platform::metrics::latency_buckets()),
            delivery_seconds: Histogram::new(platform::metrics::latency_buckets()),
            retries: Counter::default(),
            dead_letters: Counter::default(),
            claimed: Family::default(),
            pending: Family::default(),
            lag: Family::default(),
            length: Family::default(),
            trimmed: Family::default(),
            dlq_entries: Gauge::default(),
            retention_deleted: Counter::default(),
            retention_chunk_seconds: Histogram::new(platform::metrics::latency_buckets()),
        };
        let r = registry.sub_registry_with_prefix("herald_worker");
        r.register(
            "entries",
            "Stream entries handled, by lane and outcome",
            metrics.entries.clone(),
        );
        r.register("batches", "Batches processed", metrics.batches.clone());
        r.register(
            "batch_size_entries",
            "Entries per batch",
            metrics.batch_size.clone(),
        );
        r.register(
            "batch_duration_seconds",
            "Time to store, publish and ack one batch",
            metrics.batch_seconds.clone(),
        );
        r.register(
            "ingest_to_store_seconds",
            "Time from a notification's creation (ingest) to its commit in PostgreSQL",
            metrics.delivery_seconds.clone(),
        );
        r.register(
            "retries",
            "Batch attempts that failed transiently and were retried",
            metrics.retries.clone(),
        );
        r.register(
            "dead_letters",
            "Entries moved to the dead letters",
            metrics.dead_letters.clone(),
        );
        r.register(
            "claimed_entries",
            "Entries claimed from dead or stuck consumers",
            metrics.claimed.clone(),
        );
        r.register(
            "retention_deleted_notifications",
            "Notifications deleted because they were older than the retention period",
            metrics.retention_deleted.clone(),
        );
        r.register(
            "retention_chunk_duration_seconds",
            "Time to delete one chunk of a user's old notifications (holding the user's lock) and publish its frame",
            metrics.retention_chunk_seconds.clone(),
        );
        let s = registry.sub_registry_with_prefix("herald_stream");
        s.register(
            "pending_entries",
            "Entries delivered and not yet acknowledged",
            metrics.pending.clone(),
        );
        s.register(
            "lag_entries",
            "Entries not yet delivered to the consumer group",
            metrics.lag.clone(),
        );
        s.register(
            "length_entries",
            "Entries held in the stream (not yet trimmed)",
            metrics.length.clone(),
        );
        s.register(
            "trimmed_entries",
            "Acknowledged entries deleted by the trimmer",
            metrics.trimmed.clone(),
        );
        registry.register(
            "herald_dlq_entries",
            "Dead letters not replayed yet",
            metrics.dlq_entries.clone(),
        );
        // Every series exists from the start (at 0), so dashboards and
        // alerts see a lane before anything happened in it.
        for priority in Priority::ALL {
            for outcome in [
                Outcome::Stored,
                Outcome::Duplicate,
                Outcome::Expired,
                Outcome::DeadLettered,
            ] {
                metrics.count(priority, outcome, 0);
            }
            let labels = lane(priority);
            let _ = metrics.claimed.get_or_create(&labels);
            let _ = metrics.trimmed.get_or_create(&labels);
            let _ = metrics.pending.get_or_create(&labels);
            let _ = metrics.lag.get_or_create(&labels);
            let _ = metrics.length.get_or_create(&labels);
        }
        metrics
    }

    pub fn count(&self, priority: Priority, outcome: Outcome, n: usize) {
        self.entries
            .get_or_create(&EntryLabels {
                priority: priority.as_str().to_owned(),
                outcome: outcome.as_str().to_owned(),
            })
            .inc_by(n as u64);
    }
}
