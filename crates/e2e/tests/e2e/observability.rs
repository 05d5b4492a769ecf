//! What operators watch: one notification's spans form one trace across the
//! three processes (exported over OTLP/HTTP to a collector run by the test),
//! and every metric name docs/operations.md documents is on each service's
//! `/metrics`.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::eventually;
use testkit::ws::WsClient;

use crate::support::{Stack, start, start_as};

/// One exported span, flattened with the service that sent it.
#[derive(Debug, Clone)]
struct CollectedSpan {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    start_ns: u64,
    end_ns: u64,
    linked_spans: Vec<String>,
}

/// An OTLP/HTTP trace receiver (`POST /v1/traces`, protobuf) keeping every span.
struct Collector {
    port: u16,
    spans: Arc<Mutex<Vec<CollectedSpan>>>,
    server: actix_web::dev::ServerHandle,
}

impl Collector {
    fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let store = web::Data::new(spans.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(store.clone())
                .app_data(web::PayloadConfig::new(64 << 20))
                .route("/v1/traces", web::post().to(receive))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            port,
            spans,
            server: handle,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn trace(&self, trace_id: &str) -> Vec<CollectedSpan> {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }

    fn all(&self) -> Vec<CollectedSpan> {
        self.spans.lock().unwrap().clone()
    }
}

async fn receive(
    body: web::Bytes,
    spans: web::Data<Arc<Mutex<Vec<CollectedSpan>>>>,
) -> HttpResponse {
    let Ok(request) = ExportTraceServiceRequest::decode(body.as_ref()) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut collected = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(|v| match v {
                AnyValue::StringValue(s) => s.clone(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                collected.push(CollectedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    start_ns: span.start_time_unix_nano,
                    end_ns: span.end_time_unix_nano,
                    linked_spans: span.links.iter().map(|l| hex(&l.span_id)).collect(),
                });
            }
        }
    }
    spans.lock().unwrap().extend(collected);
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .finish()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn traced_vars(stack: &Stack, collector: &Collector, service: &str) -> HashMap<String, String> {
    let mut vars = stack.vars();
    vars.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), collector.endpoint());
    vars.insert("OTEL_SERVICE_NAME".into(), service.into());
    // Export every 100 ms instead of every 5 s.
    vars.insert("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into());
    vars
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_notification_is_one_trace_from_the_request_to_the_frame() {
    let stack = Stack::new().await;
    let collector = Collector::start();
    let mut ingest_vars = traced_vars(&stack, &collector, "ingest-api");
    // Its "notification accepted" line is logged inside the request's span.
    ingest_vars.insert("RUST_LOG".into(), "info,ingest_api=debug".into());
    let ingest = start("ingest-api", &ingest_vars, &stack.logs).await;
    let _worker = start(
        "stream-worker",
        &traced_vars(&stack, &collector, "stream-worker"),
        &stack.logs,
    )
    .await;
    let gateway = start(
        "ws-gateway",
        &traced_vars(&stack, &collector, "ws-gateway"),
        &stack.logs,
    )
    .await;
    let (mut alice, _) = WsClient::connect_user(gateway.port, &stack.env.token("alice", 300)).await;

    // The producer traces too: its context is continued, so the trace id is known.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let producer_span = "00f067aa0ba902b7";
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/notifications", ingest.port))
        .header("x-api-key", &stack.key)
        .header("traceparent", format!("00-{trace_id}-{producer_span}-01"))
        .json(&json!({"user_id": "alice", "title": "Traced", "body": "follow me"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let frame = alice.next_json(Duration::from_secs(10)).await.unwrap();
    assert_eq!(frame["type"], "notification");
    assert_eq!(frame["title"], "Traced");
    assert!(
        frame.get("traceparent").is_none(),
        "the trace context never reaches a client: {frame}"
    );

    let chain = [
        ("ingest-api", "POST /v1/notifications"),
        ("ingest-api", "XADD"),
        ("stream-worker", "process notification"),
        ("stream-worker", "database insert"),
        ("stream-worker", "publish"),
        ("ws-gateway", "frame write"),
    ];
    let spans = eventually(
        "every span of the notification exported",
        Duration::from_secs(15),
        || async {
            let trace = collector.trace(trace_id);
            chain
                .iter()
                .map(|(service, name)| {
                    trace
                        .iter()
                        .find(|s| s.service == *service && s.name == *name)
                        .cloned()
                })
                .collect::<Option<Vec<_>>>()
        },
    )
    .await;

    // Each span is the child of the one before it, except that the publish
    // follows the insert within the worker's notification span.
    let parent_of = |i: usize| match i {
        0 => producer_span.to_owned(),
        4 => spans[2].span_id.clone(),
        i => spans[i - 1].span_id.clone(),
    };
    for (i, span) in spans.iter().enumerate() {
        assert_eq!(
            span.parent_span_id,
            parent_of(i),
            "{} is a child of the span before it; chain: {spans:#?}",
            span.name
        );
        assert!(span.end_ns >= span.start_ns);
    }
    // In time order: each starts after the previous one started, the publish
    // after the insert ended, the frame write after the publish started.
    for pair in spans.windows(2) {
        assert!(
            pair[1].start_ns >= pair[0].start_ns,
            "{} starts after {}: {spans:#?}",
            pair[1].name,
            pair[0].name
        );
    }
    assert!(
        spans[4].start_ns >= spans[3].end_ns,
        "publish after the insert"
    );

    // The JSON log line written inside the request joins the trace: its
    // trace_id and span_id are the exported span's.
    let log = std::fs::read_to_string(stack.logs.join("ingest-api-e2e.log")).unwrap();
    let accepted: Value = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["message"] == "notification accepted")
        .unwrap_or_else(|| panic!("no \"notification accepted\" line in:\n{log}"));
    assert_eq!(accepted["trace_id"], trace_id, "{accepted}");
    assert_eq!(accepted["span_id"], spans[0].span_id.as_str(), "{accepted}");

    // The round's own span links to the notification's XADD span.
    let xadd = &spans[1].span_id;
    eventually(
        "the worker batch span, linked to the XADD",
        Duration::from_secs(10),
        || async {
            collector
                .all()
                .iter()
                .any(|s| s.name == "worker batch" && s.linked_spans.contains(xadd))
                .then_some(())
        },
    )
    .await;
    collector.server.stop(false).await;
}

/// `| \`herald_...\` |` rows of docs/operations.md, by `### <service>` section.
fn documented_metrics() -> HashMap<String, Vec<String>> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/operations.md"
    ))
    .unwrap();
    let metrics_section = doc
        .split("\n## Metrics")
        .nth(1)
        .expect("docs/operations.md has a `## Metrics` section");
    let metrics_section = metrics_section
        .split("\n## ")
        .next()
        .unwrap_or(metrics_section);
    let mut by_section: HashMap<String, Vec<String>> = HashMap::new();
    let mut section = String::new();
    for line in metrics_section.lines() {
        if let Some(title) = line.strip_prefix("### ") {
            section = title.trim().to_owned();
        } else if let Some(rest) = line.strip_prefix("| `herald_") {
            let name = rest.split('`').next().unwrap();
            by_section
                .entry(section.clone())
                .or_default()
                .push(format!("herald_{name}"));
        }
    }
    by_section
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_metric_is_exposed_by_its_service() {
    let documented = documented_metrics();
    let common = documented
        .get("Every service")
        .expect("a `### Every service` table");
    assert!(common.contains(&"herald_build_info".to_owned()));

    let stack = Stack::new().await;
    let mut vars = stack.vars();
    vars.insert("HERALD__WORKER__TRIM_INTERVAL_MS".into(), "200".into());
    let services = [
        ("ingest-api", start("ingest-api", &vars, &stack.logs).await),
        (
            "stream-worker",
            start("stream-worker", &vars, &stack.logs).await,
        ),
        ("ws-gateway", start("ws-gateway", &vars, &stack.logs).await),
    ];
    // One request of each kind, so the per-request series exist.
    let http = reqwest::Client::new();
    let ingest_port = services[0].1.port;
    let accepted = http
        .post(format!("http://127.0.0.1:{ingest_port}/v1/notifications"))
        .header("x-api-key", &stack.key)
        .json(&json!({"user_id": "mia", "title": "t", "body": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let refused = http
        .post(format!("http://127.0.0.1:{ingest_port}/v1/notifications"))
        .header("x-api-key", "hrld_not-a-key")
        .json(&json!({"user_id": "mia", "title": "t", "body": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    // A batch: two accepted (normal, high), one invalid item.
    let batch = http
        .post(format!(
            "http://127.0.0.1:{ingest_port}/v1/notifications/batch"
        ))
        .header("x-api-key", &stack.key)
        .json(&json!({"notifications": [
            {"user_id": "mia", "title": "t", "body": "b"},
            {"user_id": "mia", "title": "t", "body": "b", "priority": "high"},
            {"user_id": "mia", "title": "", "body": "b"},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(batch.status(), StatusCode::OK);
    // Requests whose path or method a client chooses: none of it may become
    // a label value (a user id in a path, an invented method).
    let by_user = http
        .put(format!(
            "http://127.0.0.1:{ingest_port}/v1/users/mia/preferences"
        ))
        .header("x-api-key", &stack.key)
        .json(&json!({"locale": "de"}))
        .send()
        .await
        .unwrap();
    assert!(by_user.status().is_success() || by_user.status().is_client_error());
    let unknown = http
        .get(format!("http://127.0.0.1:{ingest_port}/v1/mia/secret-path"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let invented = http
        .request(
            reqwest::Method::from_bytes(b"MIA").unwrap(),
            format!("http://127.0.0.1:{ingest_port}/v1/notifications"),
        )
        .send()
        .await
        .unwrap();
    assert!(invented.status().is_client_error());

    for (service, running) in &services {
        let wanted: Vec<&String> = common
            .iter()
            .chain(documented.get(*service).into_iter().flatten())
            .collect();
        assert!(
            wanted.len() > common.len(),
            "docs/operations.md lists {service}'s own metrics"
        );
        // The gauges of the worker's first pass may take a moment.
        let mut missing = Vec::new();
        for _ in 0..50 {
            let body = testkit::scrape_metrics(running.port).await;
            let exposed: Vec<&str> = body
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split(['{', ' ']).next())
                .collect();
            missing = wanted
                .iter()
                .filter(|name| {
                    !exposed.iter().any(|e| {
                        *e == name.as_str()
                            || e.strip_prefix(name.as_str()).is_some_and(|suffix| {
                                matches!(suffix, "_bucket" | "_count" | "_sum")
                            })
                    })
                })
                .map(|name| name.to_string())
                .collect();
            if missing.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            missing.is_empty(),
            "{service} does not expose documented metrics: {missing:?}"
        );
        let body = testkit::scrape_metrics(running.port).await;
        assert!(
            body.contains(&format!("herald_build_info{{service=\"{service}\"")),
            "{service}: build info names the service"
        );
        assert!(
            !body.contains("mia") && !body.contains("MIA"),
            "{service}: no user id or client-chosen text in any label:\n{body}"
        );
    }
    let ingest_metrics = testkit::scrape_metrics(ingest_port).await;
    assert!(
        ingest_metrics
            .contains("herald_ingest_notifications_accepted_total{priority=\"normal\"} 2"),
        "{ingest_metrics}"
    );
    assert!(
        ingest_metrics
            .contains("herald_ingest_notifications_rejected_total{reason=\"unauthorized\"} 1"),
        "{ingest_metrics}"
    );
    for series in [
        "herald_ingest_notifications_accepted_total{priority=\"high\"} 1",
        "herald_ingest_notifications_accepted_total{priority=\"low\"} 0",
        "herald_ingest_notifications_rejected_total{reason=\"invalid\"} 1",
    ] {
        assert!(
            ingest_metrics.contains(series),
            "{series} in {ingest_metrics}"
        );
    }
    assert!(
        ingest_metrics.contains(
            "herald_http_requests_total{method=\"POST\",route=\"/v1/notifications\",status=\"202\"} 1"
        ),
        "{ingest_metrics}"
    );
    for label in [
        "route=\"/v1/users/{user_id}/preferences\"",
        "route=\"unmatched\",status=\"404\"",
        "method=\"OTHER\"",
    ] {
        assert!(
            ingest_metrics.contains(label),
            "{label} in {ingest_metrics}"
        );
    }
    // Only what was sent as a notification counts as rejected: the 401 and
    // the invalid batch item (not the 404, nor the invented method's 405).
    let rejected: u64 = ingest_metrics
        .lines()
        .filter(|l| l.starts_with("herald_ingest_notifications_rejected_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(rejected, 2, "{ingest_metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_neither_slows_requests_nor_holds_up_exit() {
    let stack = Stack::new().await;
    // Accepts connections and never answers, like a collector that hangs.
    let blackhole = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let endpoint = format!("http://{}", blackhole.local_addr().unwrap());
    std::thread::spawn(move || {
        let held: Vec<_> = blackhole.incoming().collect();
        drop(held);
    });
    let mut vars = stack.vars();
    vars.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint);
    vars.insert("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into());
    // An export would wait a minute for an answer: only the bounded flush
    // at shutdown lets the process exit in time.
    vars.insert("OTEL_EXPORTER_OTLP_TIMEOUT".into(), "60000".into());
    let mut ingest = start("ingest-api", &vars, &stack.logs).await;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for n in 0..100 {
        let response = http
            .post(format!("http://127.0.0.1:{}/v1/notifications", ingest.port))
            .header("x-api-key", &stack.key)
            .json(&json!({"user_id": "nia", "title": format!("n{n}"), "body": "b"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    // Well within the shortest terminationGracePeriodSeconds (20 s).
    let status = ingest
        .process
        .terminate(Duration::from_secs(15))
        .expect("exits after SIGTERM although its exports hang");
    assert!(status.success(), "{status:?}");
}

/// An `https://` collector: spans arrive when its CA is given by
/// `OTEL_EXPORTER_OTLP_CERTIFICATE`, and never when the exporter cannot
/// verify it (the system's roots do not know the test CA).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_https_collector_that_the_exporter_verifies() {
    let stack = Stack::new().await;
    let collector = Collector::start();
    let certs = testkit::tls::Certificates::generate();
    let front = testkit::tls::TlsFront::start(&certs, collector.port).await;
    let https = format!("https://127.0.0.1:{}", front.port);
    let post = |port: u16, user: &'static str| {
        let key = stack.key.clone();
        async move {
            let response = reqwest::Client::new()
                .post(format!("http://127.0.0.1:{port}/v1/notifications"))
                .header("x-api-key", key)
                .json(&json!({"user_id": user, "title": "t", "body": "b"}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::ACCEPTED);
        }
    };

    let mut unverified = traced_vars(&stack, &collector, "ingest-unverified");
    unverified.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), https.clone());
    let ingest = start_as("ingest-api", "ingest-unverified", &unverified, &stack.logs).await;
    post(ingest.port, "uma").await;

    let mut verified = traced_vars(&stack, &collector, "ingest-verified");
    verified.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), https);
    verified.insert("OTEL_EXPORTER_OTLP_CERTIFICATE".into(), certs.ca());
    let ingest = start_as("ingest-api", "ingest-verified", &verified, &stack.logs).await;
    post(ingest.port, "vic").await;
    eventually(
        "spans over TLS from the service that trusts the CA",
        Duration::from_secs(10),
        || async {
            collector
                .all()
                .iter()
                .any(|span| span.service == "ingest-verified")
                .then_some(())
        },
    )
    .await;
    // Both exported every 100 ms since their first request.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !collector
            .all()
            .iter()
            .any(|span| span.service == "ingest-unverified"),
        "no span crosses TLS that was not verified"
    );
}
