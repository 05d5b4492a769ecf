//! Structured logs and traces through `tracing`.
//!
//! Logs: one line per event on stderr, JSON when `log.format = "json"`;
//! while spans are exported, a JSON line logged inside a span carries that
//! span's `trace_id` and `span_id`, so a log search joins the trace.
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
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::dispatcher::WeakDispatch;
use tracing::{Level, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
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

/// The first of these variables that is set and not blank.
fn env_var(names: &[&str]) -> Option<String> {
    names
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|value| !value.trim().is_empty())
}

/// The exporter's HTTP client when the collector's CA is given by the
/// standard `OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE` (which the exporter
/// does not read itself); `None`: its own client, trusting the system's
/// roots. Built on a thread of its own: a blocking client may not be made
/// inside the async runtime.
fn otlp_http_client() -> Result<Option<reqwest::blocking::Client>, String> {
    let Some(path) = env_var(&[
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
    ]) else {
        return Ok(None);
    };
    let pem = std::fs::read(&path).map_err(|err| format!("{path}: {err}"))?;
    let certificates =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|err| format!("{path}: {err}"))?;
    let timeout_ms = env_var(&[
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ])
    .and_then(|ms| ms.trim().parse().ok())
    .unwrap_or(10_000);
    std::thread::spawn(move || {
        certificates
            .into_iter()
            .fold(
                reqwest::blocking::Client::builder()
                    .timeout(std::time::Duration::from_millis(timeout_ms)),
                |builder, certificate| builder.add_root_certificate(certificate),
            )
            .build()
    })
    .join()
    .map_err(|_| "building the OTLP HTTP client panicked".to_owned())?
    .map(Some)
    .map_err(|err| err.to_string())
}

fn tracer_provider(service: &'static str) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::WithHttpConfig;
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_http();
    if let Some(client) = otlp_http_client()? {
        builder = builder.with_http_client(client);
    }
    let exporter = builder.build().map_err(|err| err.to_string())?;
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
    let installed_as = DispatchCell::default();
    let logs = match settings.format {
        LogFormat::Json => json_logs(std::io::stderr, installed_as.clone()).boxed(),
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
    if provider.is_some() {
        // Log lines look their span's trace ids up through it.
        tracing::dispatcher::get_default(|dispatch| installed_as.set(dispatch));
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

/// The subscriber the log layer was installed in, set right after: while
/// an event is dispatched, `tracing` answers no default dispatcher (it
/// guards against re-entry), and the span's OpenTelemetry context is only
/// reachable through it.
#[derive(Clone, Default)]
struct DispatchCell(Arc<OnceLock<WeakDispatch>>);

impl DispatchCell {
    fn set(&self, dispatch: &tracing::Dispatch) {
        let _ = self.0.set(dispatch.downgrade());
    }

    fn get(&self) -> Option<tracing::Dispatch> {
        self.0.get().and_then(WeakDispatch::upgrade)
    }
}

/// JSON log lines, one per event, with the current span's trace ids.
fn json_logs<S, W>(writer: W, installed_as: DispatchCell) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let format = tracing_subscriber::fmt::format()
        .json()
        .flatten_event(true)
        .with_current_span(false);
    tracing_subscriber::fmt::layer()
        .fmt_fields(JsonFields::new())
        .event_format(WithTraceIds {
            format,
            installed_as,
        })
        .with_writer(writer)
}

/// The JSON format plus `"trace_id"` and `"span_id"` (W3C hex, as the
/// trace backend shows them) of the span the event is in, when it is traced.
struct WithTraceIds {
    format: Format<Json>,
    installed_as: DispatchCell,
}

impl<S, N> FormatEvent<S, N> for WithTraceIds
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        // Unset without an exporter: nothing to join then.
        let traced = ctx.lookup_current().and_then(|span| {
            let dispatch = self.installed_as.get()?;
            tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)
        });
        let ids = traced.and_then(|context| {
            let span_context = context.span().span_context().clone();
            span_context
                .is_valid()
                .then(|| (span_context.trace_id(), span_context.span_id()))
        });
        let Some((trace_id, span_id)) = ids else {
            return self.format.format_event(ctx, writer, event);
        };
        // The JSON format writes one object and a newline: the ids go in
        // before its closing brace.
        let mut line = String::new();
        self.format
            .format_event(ctx, Writer::new(&mut line), event)?;
        match line.trim_end().strip_suffix('}') {
            Some(object) => writeln!(
                writer,
                r#"{object},"trace_id":"{trace_id}","span_id":"{span_id}"}}"#
            ),
            None => writer.write_str(&line),
        }
    }
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
    fn json_log_lines_carry_the_trace_and_span_of_their_span() {
        use std::sync::{Arc, Mutex};

        use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        use tracing_subscriber::layer::SubscriberExt;

        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        let lines = Lines::default();
        let written = lines.clone();
        // Spans recorded, none exported: the ids exist all the same.
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let installed_as = super::DispatchCell::default();
        let subscriber = tracing_subscriber::registry()
            .with(super::json_logs(
                move || written.clone(),
                installed_as.clone(),
            ))
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let expected = tracing::subscriber::with_default(subscriber, || {
            tracing::dispatcher::get_default(|dispatch| installed_as.set(dispatch));
            tracing::info!(outside = true, "no span");
            let span = tracing::info_span!("round");
            let _entered = span.enter();
            tracing::info!(inside = true, "in a span");
            let context = span.context();
            let span_context = context.span().span_context().clone();
            (
                span_context.trace_id().to_string(),
                span_context.span_id().to_string(),
            )
        });

        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("JSON: {line}")))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["message"], "no span");
        assert!(lines[0].get("trace_id").is_none(), "{}", lines[0]);
        assert_eq!(lines[1]["message"], "in a span");
        assert_eq!(lines[1]["inside"], true);
        assert_eq!(lines[1]["trace_id"], expected.0.as_str());
        assert_eq!(lines[1]["span_id"], expected.1.as_str());
        assert_eq!(expected.0.len(), 32);
    }

    #[test]
    fn an_untraced_span_has_no_traceparent() {
        // No subscriber with an OpenTelemetry layer here.
        assert_eq!(traceparent::of(&tracing::info_span!("untraced")), None);
    }
}
