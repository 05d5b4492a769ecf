//! The spans of one round, when notifications arrive with a trace context.
//!
//! A round is one span of its own (`worker batch`), linked to the XADD span
//! of every notification in it. Each notification that carries a
//! `traceparent` also gets a `process notification` span continuing its
//! ingest trace, with one child per stage it goes through here
//! (`database insert`, `publish`), so a single notification's trace reads:
//! HTTP request -> XADD -> process notification -> database insert ->
//! publish -> (ws-gateway) frame write. Without an exporter, or for
//! notifications without a context, no span is created at all.

use std::collections::HashMap;

use platform::telemetry::{self, traceparent};
use tracing::Span;
use uuid::Uuid;

pub struct RoundTrace {
    batch: Span,
    notifications: HashMap<Uuid, Span>,
}

impl RoundTrace {
    /// The round's span, a new trace of its own.
    pub fn start(consumer: &str, entries: usize) -> Self {
        let batch = if telemetry::exporting() {
            tracing::info_span!(parent: None, "worker batch", consumer, entries)
        } else {
            Span::none()
        };
        Self {
            batch,
            notifications: HashMap::new(),
        }
    }

    pub fn span(&self) -> &Span {
        &self.batch
    }

    /// Continues the notification's ingest trace, if it has one.
    pub fn follow(&mut self, id: Uuid, context: Option<&str>) {
        let Some(context) = context.filter(|_| telemetry::exporting()) else {
            return;
        };
        let span = tracing::info_span!(
            parent: None,
            "process notification",
            otel.kind = "consumer",
            notification.id = %id,
        );
        if traceparent::adopt(&span, Some(context)) {
            traceparent::link(&self.batch, context);
            self.notifications.insert(id, span);
        }
    }

    /// One span named `stage` under each traced notification; they end
    /// when the returned spans are dropped.
    pub fn stage(&self, stage: &'static str) -> Vec<Span> {
        self.notifications
            .values()
            .map(|parent| stage_span(parent, stage))
            .collect()
    }

    /// The `stage` span of one notification, if it is traced.
    pub fn stage_of(&self, id: &Uuid, stage: &'static str) -> Option<Span> {
        self.notifications
            .get(id)
            .map(|parent| stage_span(parent, stage))
    }
}

fn stage_span(parent: &Span, stage: &'static str) -> Span {
    tracing::info_span!(parent: parent, "stage", otel.name = stage)
}
