//! Structured logs and traces through `tracing`.
//!
//! Logs: one line per event on stderr, JSON when `log.format = "json"`.
//! Secrets never reach a log line because they are `SecretString`s whose
//! `Debug` prints a placeholder.
//!
//! Traces: when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, Herald's own spans are
//! exported over OTLP (HTTP/protobuf, `/v1/traces`) in batches, named by
//! `OTEL_SERVICE_NAME` (default: the binary's name). Unset: no exporter, and
//! spans cost what a disabled `tracing` span costs. Between services the
//! context travels as a W3C `traceparent` (see [`traceparent`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Level, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::settings::{LogFormat, LogSettings};

/// The crates whose spans are exported: Herald's own, never a dependency's
/// (the exporter's HTTP client must not trace itself).
const TRACED_CRATES: [&str; 4] = ["ingest_api", "stream_worker", "ws_gateway", "platform"];

/// How long shutdown waits for the last spans to be exported.
const EXPORT_DEADLINE: Duration = Duration::from_secs(3);

/// Set once an exporter is installed: spans that exist only to be exported
/// (per request, per notification, per frame) are not even created before.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Are spans exported? Hot paths check this before creating trace-only spans.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] flushes it.
#[must_use = "dropping it stops trace export; call shutdown() at the end of main"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered, waiting at most a few seconds (a
    /// collector that does not answer must not hold up a pod's exit).
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let flushed =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(EXPORT_DEADLINE))
                .await;
        if let Ok(Err(err)) = flushed {
            tracing::warn!(%err, "trace exporter did not shut down cleanly");
        }
    }
}

/// Is OTLP export asked for by the standard environment variables?
fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|var| std::env::var(var).is_ok_and(|value| !value.trim().is_empty()))
}

fn tracer_provider(service: &'static str) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|err| err.to_string())?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service);
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// Installs the global subscriber once; later calls (tests) install nothing
/// and export nothing.
pub fn init(service: &'static str, settings: &LogSettings) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match settings.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_target(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let (provider, export_error) = if otlp_configured() {
        match tracer_provider(service) {
            Ok(provider) => (Some(provider), None),
            Err(err) => (None, Some(err)),
        }
    } else {
        (None, None)
    };
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("herald"))
            .with_filter(Targets::new().with_targets(TRACED_CRATES.map(|c| (c, Level::INFO))))
    });
    let installed = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .try_init();
    if installed.is_err() {
        return Telemetry { provider: None };
    }
    EXPORTING.store(provider.is_some(), Ordering::Relaxed);
    tracing::info!(
        service,
        version = env!("CARGO_PKG_VERSION"),
        traces = provider.is_some(),
        "starting"
    );
    if let Some(err) = export_error {
        tracing::error!(%err, "cannot set up the OTLP trace exporter; tracing is off");
    }
    Telemetry { provider }
}

/// W3C trace context carried between services: inside the stream entry
/// (ingest-api -> stream-worker) and the published message (stream-worker
/// -> ws-gateway), as the `traceparent` header value.
pub mod traceparent {
    use super::*;

    const HEADER: &str = "traceparent";

    /// The `traceparent` of `span`; `None` when it is not being traced
    /// (no exporter configured, or the span is disabled).
    pub fn of(span: &Span) -> Option<String> {
        let context = span.context();
        if !context.span().span_context().is_valid() {
            return None;
        }
        let mut carrier = HashMap::with_capacity(1);
        TraceContextPropagator::new().inject_context(&context, &mut carrier);
        carrier.remove(HEADER)
    }

    /// The span context a `traceparent` names; invalid text gives `None`.
    pub fn parse(traceparent: &str) -> Option<opentelemetry::Context> {
        let carrier = HashMap::from([(HEADER.to_owned(), traceparent.to_owned())]);
        let context = TraceContextPropagator::new().extract(&carrier);
        context.span().span_context().is_valid().then_some(context)
    }

    /// Makes `span` (just created, not yet entered) a child of the remote
    /// span `traceparent` names. Returns whether it did.
    pub fn adopt(span: &Span, traceparent: Option<&str>) -> bool {
        match traceparent.and_then(parse) {
            Some(parent) => span.set_parent(parent).is_ok(),
            None => false,
        }
    }

    /// Links `span` to the remote span `traceparent` names (a batch span
    /// pointing at each notification it handles).
    pub fn link(span: &Span, traceparent: &str) {
        if let Some(context) = parse(traceparent) {
            span.add_link(context.span().span_context().clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::traceparent;

    #[test]
    fn a_valid_traceparent_parses_and_garbage_does_not() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = traceparent::parse(text).expect("valid traceparent");
        use opentelemetry::trace::TraceContextExt;
        assert_eq!(
            context.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(traceparent::parse("00-nonsense").is_none());
        assert!(traceparent::parse("").is_none());
        // All-zero ids are invalid by the W3C spec.
        assert!(
            traceparent::parse("00-00000000000000000000000000000000-0000000000000000-01").is_none()
        );
    }

    #[test]
    fn an_untraced_span_has_no_traceparent() {
        // No subscriber with an OpenTelemetry layer here.
        assert_eq!(traceparent::of(&tracing::info_span!("untraced")), None);
    }
}
