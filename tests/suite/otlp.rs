//! OTLP trace export against real receivers on 127.0.0.1: an OTLP/gRPC
//! `TraceService` (tonic, the generated server of `opentelemetry-proto`) and
//! an OTLP/HTTP `POST /v1/traces` handler (axum, protobuf bodies). Probes run
//! for real against the built-in sandbox or a raw TCP server; their outcomes
//! go through `TraceExporter` and the tests read what the receiver got.

use crate::common;

use common::sandbox;

use common::{config_with_target, load, run_one, write_config};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use synthmon::config::{OtlpProtocol, TelemetryConfig};
use synthmon::outcome::Outcome;

use synthmon::telemetry::traces::{Resource, TraceExporter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Every test body runs under this bound.
const BOUND: Duration = Duration::from_secs(20);

async fn bounded<F: Future>(f: F) -> F::Output {
    common::within(BOUND, f).await
}

/// An environment with no `OTEL_*` variables.
fn no_env(_: &str) -> Option<String> {
    None
}

fn resource() -> Resource {
    Resource {
        instance: "vm-test-1".into(),
        location: "eu-test".into(),
    }
}

// ---------------------------------------------------------------- receivers

/// One export request as a receiver saw it: its headers (gRPC metadata or
/// HTTP headers, lowercase names) and the decoded body.
#[derive(Debug, Clone)]
pub(super) struct Received {
    pub(super) headers: HashMap<String, String>,
    pub(super) request: ExportTraceServiceRequest,
}

/// What a receiver got; `pub(super)` for the secret canary
/// (`secret_canary.rs`).
#[derive(Debug, Clone, Default)]
pub(super) struct Store(Arc<Mutex<Vec<Received>>>);

impl Store {
    fn push(&self, headers: HashMap<String, String>, request: ExportTraceServiceRequest) {
        self.0.lock().unwrap().push(Received { headers, request });
    }

    pub(super) fn received(&self) -> Vec<Received> {
        self.0.lock().unwrap().clone()
    }

    /// Every span received, with its resource's attributes.
    fn spans(&self) -> Vec<(Vec<KeyValue>, Span)> {
        let mut out = Vec::new();
        for r in self.received() {
            for rs in r.request.resource_spans {
                let attrs = rs.resource.map(|r| r.attributes).unwrap_or_default();
                for ss in rs.scope_spans {
                    for s in ss.spans {
                        out.push((attrs.clone(), s));
                    }
                }
            }
        }
        out
    }
}

#[tonic::async_trait]
impl TraceService for Store {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        self.push(headers, request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP/gRPC receiver on 127.0.0.1; returns its endpoint URL.
pub(super) async fn grpc_receiver() -> (String, Store) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let store = Store::default();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(store.clone()))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);
    (format!("http://{addr}"), store)
}

/// An OTLP/HTTP receiver on 127.0.0.1 serving `POST /v1/traces`; returns
/// its base URL (without the path).
async fn http_receiver() -> (String, Store) {
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use prost::Message;

    async fn traces(
        State(store): State<Store>,
        headers: HeaderMap,
        body: bytes::Bytes,
    ) -> (StatusCode, [(&'static str, &'static str); 1], Vec<u8>) {
        let Ok(request) = ExportTraceServiceRequest::decode(body) else {
            return (
                StatusCode::BAD_REQUEST,
                [("content-type", "text/plain")],
                b"bad protobuf".to_vec(),
            );
        };
        let headers = headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        store.push(headers, request);
        (
            StatusCode::OK,
            [("content-type", "application/x-protobuf")],
            ExportTraceServiceResponse::default().encode_to_vec(),
        )
    }

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let store = Store::default();
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(traces))
        .with_state(store.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), store)
}

// ---------------------------------------------------------------- helpers

fn attr(attrs: &[KeyValue], key: &str) -> Option<any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone())
        .and_then(|v| v.value)
}

fn str_attr(attrs: &[KeyValue], key: &str) -> String {
    match attr(attrs, key) {
        Some(any_value::Value::StringValue(s)) => s,
        other => panic!("attribute {key}: expected a string, found {other:?} in {attrs:#?}"),
    }
}

fn int_attr(attrs: &[KeyValue], key: &str) -> i64 {
    match attr(attrs, key) {
        Some(any_value::Value::IntValue(i)) => i,
        other => panic!("attribute {key}: expected an int, found {other:?} in {attrs:#?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn probe_file(name: &str, http: &str) -> String {
    format!("name = \"{name}\"\nenvironments = [\"target\"]\n\n[http]\n{http}\n")
}

/// Loads a config with one environment at `base_url`, `telemetry` appended
/// as the `[telemetry]` table, and one probe; runs the probe once.
async fn run_probe(
    base_url: &str,
    telemetry: &str,
    probe: &str,
) -> (Outcome, std::sync::Arc<synthmon::plan::Config>) {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[telemetry]\n{telemetry}\n",
        config_with_target(base_url)
    );
    let path = write_config(dir.path(), &config, &[("p.toml", probe)]);
    let mut config = load(&path);
    // The run itself must not export (`once::run` does when `[telemetry]`
    // is set): each test exports the outcome through its own exporter.
    let telemetry = std::mem::take(&mut std::sync::Arc::get_mut(&mut config).unwrap().telemetry);
    let outcome = run_one(&config).await;
    std::sync::Arc::get_mut(&mut config).unwrap().telemetry = telemetry;
    (outcome, config)
}

/// The outcome of one successful run of `/health` on a fresh sandbox.
async fn health_outcome() -> Outcome {
    let sb = sandbox().await;
    let (outcome, _) = run_probe(
        &sb.base_url(),
        "",
        &probe_file("health", "url = \"/health\""),
    )
    .await;
    sb.shutdown().await;
    assert!(outcome.success, "{outcome:#?}");
    outcome
}

/// The received trace of `outcome`: exactly two spans, the root and the
/// HTTP client span, plus the resource attributes they came with.
fn the_trace(store: &Store, outcome: &Outcome) -> (Span, Span, Vec<KeyValue>) {
    let spans = store.spans();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    for (_, s) in &spans {
        assert_eq!(hex(&s.trace_id), outcome.trace_id, "one trace per run");
        assert_eq!(s.flags & 0xff, 1, "sampled: {s:#?}");
    }
    let resource = spans[0].0.clone();
    let (roots, children): (Vec<_>, Vec<_>) = spans
        .into_iter()
        .map(|(_, s)| s)
        .partition(|s| s.parent_span_id.is_empty());
    assert_eq!(roots.len(), 1, "{roots:#?}");
    assert_eq!(children.len(), 1, "{children:#?}");
    (roots[0].clone(), children[0].clone(), resource)
}

/// What every exported trace of a run of probe `name` shows.
fn assert_shape(root: &Span, client: &Span, resource: &[KeyValue], outcome: &Outcome) {
    // The root span: the run.
    assert_eq!(root.name, format!("probe {}", outcome.probe));
    assert_eq!(root.kind, span::SpanKind::Internal as i32);
    assert_eq!(root.span_id.len(), 8);
    assert_ne!(hex(&root.span_id), outcome.span_id);
    assert_eq!(str_attr(&root.attributes, "synthmon.probe"), outcome.probe);
    assert_eq!(
        str_attr(&root.attributes, "synthmon.environment"),
        outcome.environment
    );
    assert_eq!(
        str_attr(&root.attributes, "synthmon.run_id"),
        outcome.run_id
    );
    assert_eq!(str_attr(&root.attributes, "synthmon.kind"), "http");
    assert_eq!(str_attr(&root.attributes, "test.suite.name"), outcome.probe);
    assert_eq!(
        str_attr(&root.attributes, "user_agent.synthetic.type"),
        "test"
    );
    assert!(root.end_time_unix_nano >= root.start_time_unix_nano);
    let run = Duration::from_nanos(root.end_time_unix_nano - root.start_time_unix_nano);
    assert!(
        run.abs_diff(outcome.duration) < Duration::from_micros(1),
        "{run:?}"
    );

    // The client span: the exchange the target saw, under the root.
    let http = outcome.http.as_ref().unwrap();
    assert_eq!(client.kind, span::SpanKind::Client as i32);
    assert_eq!(
        client.parent_span_id, root.span_id,
        "client hangs under root"
    );
    assert_eq!(
        hex(&client.span_id),
        outcome.span_id,
        "the traceparent's id"
    );
    assert_eq!(client.name, "GET");
    assert_eq!(str_attr(&client.attributes, "http.request.method"), "GET");
    assert_eq!(str_attr(&client.attributes, "url.full"), http.url);
    assert_eq!(str_attr(&client.attributes, "url.scheme"), "http");
    let url = url::Url::parse(&http.url).unwrap();
    assert_eq!(
        str_attr(&client.attributes, "server.address"),
        url.host_str().unwrap()
    );
    assert_eq!(
        int_attr(&client.attributes, "server.port"),
        i64::from(url.port().unwrap())
    );
    assert_eq!(
        str_attr(&client.attributes, "user_agent.synthetic.type"),
        "test"
    );
    assert_eq!(
        str_attr(&client.attributes, "test.case.name"),
        outcome.probe
    );
    assert_eq!(
        str_attr(&client.attributes, "test.case.result.status"),
        if outcome.success { "pass" } else { "fail" }
    );
    assert_eq!(int_attr(&client.attributes, "synthmon.http.redirects"), 0);
    match attr(&client.attributes, "synthmon.http.phase.processing") {
        Some(any_value::Value::DoubleValue(d)) => assert!(d > 0.0, "{d}"),
        other => panic!("processing phase: {other:?}"),
    }
    assert!(client.start_time_unix_nano >= root.start_time_unix_nano);
    assert!(client.end_time_unix_nano <= root.end_time_unix_nano);

    // The resource: who exported it.
    assert_eq!(str_attr(resource, "service.name"), "synthmon");
    assert_eq!(
        str_attr(resource, "service.version"),
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(str_attr(resource, "service.instance.id"), "vm-test-1");
    assert_eq!(str_attr(resource, "synthmon.location"), "eu-test");
}

fn status_code(s: &Span) -> i32 {
    s.status.as_ref().map_or(0, |st| st.code)
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_run_becomes_one_trace_over_grpc() {
    bounded(async {
        let (endpoint, store) = grpc_receiver().await;
        let sb = sandbox().await;
        let (outcome, config) = run_probe(
            &sb.base_url(),
            &format!("otlp_endpoint = \"{endpoint}\"\notlp_headers = {{ x-tenant = \"acme\" }}"),
            &probe_file("health", "url = \"/health\""),
        )
        .await;
        sb.shutdown().await;
        assert!(outcome.success, "{outcome:#?}");
        assert_eq!(config.telemetry.otlp_protocol, OtlpProtocol::Grpc);

        let exporter = TraceExporter::start(&config.telemetry, resource(), &no_env)
            .unwrap()
            .expect("an endpoint is configured");
        exporter.record(&outcome);
        let counts = exporter.shutdown(Duration::from_secs(5)).await;
        assert_eq!((counts.exported, counts.dropped), (2, 0));

        let received = store.received();
        assert_eq!(received.len(), 1, "one batch");
        assert_eq!(
            received[0].headers.get("x-tenant").map(String::as_str),
            Some("acme"),
            "[telemetry] otlp_headers reach the collector as gRPC metadata"
        );
        let (root, client, resource) = the_trace(&store, &outcome);
        assert_shape(&root, &client, &resource, &outcome);
        assert_eq!(str_attr(&root.attributes, "synthmon.result"), "success");
        assert!(attr(&root.attributes, "synthmon.failure_reason").is_none());
        assert_eq!(status_code(&root), status::StatusCode::Ok as i32);
        assert_eq!(status_code(&client), status::StatusCode::Unset as i32);
        assert_eq!(
            int_attr(&client.attributes, "http.response.status_code"),
            200
        );
        assert!(attr(&client.attributes, "error.type").is_none());
    })
    .await;
}

/// A server that records the request head of one connection and answers
/// 200; returns its port and the head.
async fn recorder() -> (u16, tokio::sync::oneshot::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before the end of the head");
            buf.extend_from_slice(&chunk[..n]);
        }
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
        let _ = stream.shutdown().await;
    });
    (port, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_sees_the_ids_of_the_exported_trace() {
    bounded(async {
        let (endpoint, store) = grpc_receiver().await;
        let (port, head) = recorder().await;
        let (outcome, config) = run_probe(
            &format!("http://127.0.0.1:{port}"),
            &format!("otlp_endpoint = \"{endpoint}\""),
            &probe_file("traced", "url = \"/orders\""),
        )
        .await;
        assert!(outcome.success, "{outcome:#?}");
        let head = head.await.unwrap();
        let traceparent = head
            .split("\r\n")
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("traceparent")
                    .then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no traceparent in\n{head}"));
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{traceparent}");

        let exporter = TraceExporter::start(&config.telemetry, resource(), &no_env)
            .unwrap()
            .unwrap();
        exporter.record(&outcome);
        exporter.shutdown(Duration::from_secs(5)).await;
        let (root, client, resource) = the_trace(&store, &outcome);
        assert_shape(&root, &client, &resource, &outcome);
        assert_eq!(parts[1], hex(&client.trace_id), "same trace at the target");
        assert_eq!(
            parts[2],
            hex(&client.span_id),
            "the target's parent is the exported client span"
        );
        assert_eq!(parts[3], "01", "sampled");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_export_carries_the_configured_headers() {
    bounded(async {
        let (base, store) = http_receiver().await;
        let sb = sandbox().await;
        let (outcome, config) = run_probe(
            &sb.base_url(),
            &format!(
                "otlp_endpoint = \"{base}\"\notlp_protocol = \"http/protobuf\"\n\
                 otlp_headers = {{ authorization = \"Bearer otlp-token-123\" }}"
            ),
            &probe_file("health", "url = \"/health\""),
        )
        .await;
        sb.shutdown().await;
        assert!(outcome.success, "{outcome:#?}");

        let exporter = TraceExporter::start(&config.telemetry, resource(), &no_env)
            .unwrap()
            .unwrap();
        exporter.record(&outcome);
        let counts = exporter.shutdown(Duration::from_secs(5)).await;
        assert_eq!((counts.exported, counts.dropped), (2, 0));

        let received = store.received();
        assert_eq!(received.len(), 1, "one POST to {base}/v1/traces");
        let headers = &received[0].headers;
        assert_eq!(
            headers.get("authorization").map(String::as_str),
            Some("Bearer otlp-token-123")
        );
        assert_eq!(
            headers.get("content-type").map(String::as_str),
            Some("application/x-protobuf")
        );
        let (root, client, resource) = the_trace(&store, &outcome);
        assert_shape(&root, &client, &resource, &outcome);
        assert_eq!(
            int_attr(&client.attributes, "http.response.status_code"),
            200
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_exports_error_spans() {
    bounded(async {
        let (endpoint, store) = grpc_receiver().await;
        let sb = sandbox().await;
        let (outcome, config) = run_probe(
            &sb.base_url(),
            &format!("otlp_endpoint = \"{endpoint}\""),
            &probe_file(
                "broken",
                "url = \"/status/500\"\nexpect = [\"status == 200\"]",
            ),
        )
        .await;
        sb.shutdown().await;
        assert!(!outcome.success, "{outcome:#?}");

        let exporter = TraceExporter::start(&config.telemetry, resource(), &no_env)
            .unwrap()
            .unwrap();
        exporter.record(&outcome);
        exporter.shutdown(Duration::from_secs(5)).await;
        let (root, client, resource) = the_trace(&store, &outcome);
        assert_shape(&root, &client, &resource, &outcome);
        let reason = outcome.reason.unwrap().as_str();
        assert_eq!(reason, "assertion");
        assert_eq!(str_attr(&root.attributes, "synthmon.result"), "failure");
        assert_eq!(
            str_attr(&root.attributes, "synthmon.failure_reason"),
            reason
        );
        for s in [&root, &client] {
            let st = s.status.as_ref().unwrap();
            assert_eq!(st.code, status::StatusCode::Error as i32, "{s:#?}");
            assert_eq!(Some(&st.message), outcome.error.as_ref(), "{s:#?}");
        }
        assert_eq!(str_attr(&client.attributes, "error.type"), reason);
        assert_eq!(
            int_attr(&client.attributes, "http.response.status_code"),
            500
        );
    })
    .await;
}

/// A collector address where nothing listens.
fn dead_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

/// A collector that accepts connections and never says a word.
async fn hanging_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    format!("http://{addr}")
}

fn flood_config(endpoint: String, protocol: OtlpProtocol, timeout: Duration) -> TelemetryConfig {
    TelemetryConfig {
        otlp_endpoint: Some(endpoint),
        otlp_protocol: protocol,
        otlp_timeout: timeout,
        queue_size: 100,
        ..Default::default()
    }
}

/// 10,000 runs (20,000 spans) against a collector that does not take them:
/// `record` stays fast, nearly everything is dropped and counted, and
/// shutdown keeps its deadline.
async fn flood(config: TelemetryConfig) {
    let outcome = health_outcome().await;
    let exporter = TraceExporter::start(&config, resource(), &no_env)
        .unwrap()
        .unwrap();
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..10_000 {
        let t = Instant::now();
        exporter.record(&outcome);
        slowest = slowest.max(t.elapsed());
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "10,000 records took {took:?}"
    );
    assert!(
        slowest < Duration::from_millis(250),
        "slowest record {slowest:?}"
    );
    let counts = exporter.counts();
    assert!(
        counts.dropped >= 19_000,
        "queue of 100 spans, 20,000 offered, {counts:?}"
    );
    assert_eq!(counts.exported, 0);

    let start = Instant::now();
    let counts = exporter.shutdown(Duration::from_secs(1)).await;
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    assert_eq!(counts.exported, 0);
    assert_eq!(counts.dropped, 20_000, "every span is accounted for");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_never_blocks_grpc() {
    bounded(flood(flood_config(
        dead_endpoint(),
        OtlpProtocol::Grpc,
        Duration::from_secs(5),
    )))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_never_blocks_http() {
    bounded(flood(flood_config(
        dead_endpoint(),
        OtlpProtocol::HttpProtobuf,
        Duration::from_secs(5),
    )))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_collector_never_blocks_grpc() {
    bounded(async {
        let endpoint = hanging_endpoint().await;
        flood(flood_config(
            endpoint,
            OtlpProtocol::Grpc,
            Duration::from_secs(5),
        ))
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_collector_never_blocks_http() {
    bounded(async {
        let endpoint = hanging_endpoint().await;
        flood(flood_config(
            endpoint,
            OtlpProtocol::HttpProtobuf,
            Duration::from_secs(5),
        ))
        .await;
    })
    .await;
}

/// The process's resident set size in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_flat_while_the_collector_hangs() {
    bounded(async {
        let outcome = health_outcome().await;
        let endpoint = hanging_endpoint().await;
        // A short export timeout keeps the queue cycling: batches are taken,
        // time out and are dropped, over and over.
        let exporter = TraceExporter::start(
            &flood_config(endpoint, OtlpProtocol::Grpc, Duration::from_millis(50)),
            resource(),
            &no_env,
        )
        .unwrap()
        .unwrap();
        let before = rss();
        for _ in 0..100 {
            for _ in 0..1_000 {
                exporter.record(&outcome);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let after = rss();
        let counts = exporter.shutdown(Duration::from_secs(1)).await;
        assert_eq!(counts.exported, 0);
        assert_eq!(counts.dropped, 200_000, "every span is accounted for");
        let grew = after.saturating_sub(before);
        assert!(
            grew < 50 * 1024 * 1024,
            "RSS grew by {} MiB across 100,000 records",
            grew / (1024 * 1024)
        );
    })
    .await;
}

#[tokio::test]
async fn no_endpoint_means_no_exporter() {
    let config = TelemetryConfig {
        queue_size: 10,
        ..Default::default()
    };
    assert!(
        TraceExporter::start(&config, resource(), &no_env)
            .unwrap()
            .is_none()
    );
    let env = |k: &str| (k == "OTEL_SERVICE_NAME").then(|| "svc".to_owned());
    assert!(
        TraceExporter::start(&config, resource(), &env)
            .unwrap()
            .is_none(),
        "a service name alone does not turn export on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_beats_the_environment_and_otel_resource_variables_apply() {
    bounded(async {
        let outcome = health_outcome().await;
        let (configured, configured_store) = grpc_receiver().await;
        let (from_env, env_store) = grpc_receiver().await;
        let env_vars: HashMap<&str, String> = HashMap::from([
            ("OTEL_EXPORTER_OTLP_ENDPOINT", from_env),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
            ("OTEL_SERVICE_NAME", "synthetic-checks".to_owned()),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=staging,team=sre%20ops,service.instance.id=from-env"
                    .to_owned(),
            ),
        ]);
        let env = |k: &str| env_vars.get(k).cloned();
        let config = TelemetryConfig {
            otlp_endpoint: Some(configured),
            queue_size: 10,
            otlp_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let exporter = TraceExporter::start(&config, resource(), &env)
            .unwrap()
            .unwrap();
        exporter.record(&outcome);
        let counts = exporter.shutdown(Duration::from_secs(5)).await;
        assert_eq!((counts.exported, counts.dropped), (2, 0));
        assert!(
            env_store.received().is_empty(),
            "the config's endpoint wins"
        );

        let spans = configured_store.spans();
        assert_eq!(spans.len(), 2);
        let resource = &spans[0].0;
        assert_eq!(str_attr(resource, "service.name"), "synthetic-checks");
        assert_eq!(str_attr(resource, "deployment.environment.name"), "staging");
        assert_eq!(str_attr(resource, "team"), "sre ops");
        assert_eq!(
            str_attr(resource, "service.instance.id"),
            "vm-test-1",
            "synthmon's own instance wins over OTEL_RESOURCE_ATTRIBUTES"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_alone_configures_http_export() {
    bounded(async {
        let outcome = health_outcome().await;
        let (base, store) = http_receiver().await;
        let env_vars: HashMap<&str, String> = HashMap::from([
            ("OTEL_EXPORTER_OTLP_ENDPOINT", base),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "x-env-token=abc%3D".to_owned(),
            ),
            ("OTEL_SERVICE_NAME", "from-env".to_owned()),
        ]);
        let env = |k: &str| env_vars.get(k).cloned();
        let config = TelemetryConfig {
            service_name: Some("from-config".into()),
            queue_size: 10,
            otlp_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let exporter = TraceExporter::start(&config, resource(), &env)
            .unwrap()
            .unwrap();
        exporter.record(&outcome);
        let counts = exporter.shutdown(Duration::from_secs(5)).await;
        assert_eq!((counts.exported, counts.dropped), (2, 0));
        let received = store.received();
        assert_eq!(
            received.len(),
            1,
            "POSTed to the base endpoint + /v1/traces"
        );
        assert_eq!(
            received[0].headers.get("x-env-token").map(String::as_str),
            Some("abc="),
            "OTEL_EXPORTER_OTLP_HEADERS values are percent-decoded"
        );
        let (root, client, resource) = the_trace(&store, &outcome);
        assert_eq!(hex(&client.parent_span_id), hex(&root.span_id));
        assert_eq!(
            str_attr(&resource, "service.name"),
            "from-config",
            "[telemetry] service_name beats OTEL_SERVICE_NAME"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_endpoints_set_up_with_ring_and_shut_down_cleanly() {
    bounded(async {
        for protocol in [OtlpProtocol::Grpc, OtlpProtocol::HttpProtobuf] {
            let endpoint = dead_endpoint().replace("http://", "https://");
            let config = flood_config(endpoint, protocol, Duration::from_millis(200));
            let exporter = TraceExporter::start(&config, resource(), &no_env)
                .unwrap_or_else(|e| panic!("{protocol:?}: {e}"))
                .unwrap();
            exporter.record(&health_outcome().await);
            let counts = exporter.shutdown(Duration::from_secs(2)).await;
            assert_eq!((counts.exported, counts.dropped), (0, 2), "{protocol:?}");
        }
    })
    .await;
}

#[test]
fn start_outside_a_runtime_is_an_error_not_a_panic() {
    let config = flood_config(dead_endpoint(), OtlpProtocol::Grpc, Duration::from_secs(1));
    let err = TraceExporter::start(&config, resource(), &no_env).unwrap_err();
    assert!(err.contains("tokio"), "{err}");
}

/// The daemon with its collector down: probes keep their schedule, every
/// outcome still reaches the pipeline, and the lost spans are counted on
/// `/metrics` as `synthmon_spans_dropped_total`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_keeps_its_schedule_with_the_collector_down() {
    bounded(async {
        // A port nothing listens on.
        let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_port = dead.local_addr().unwrap().port();
        drop(dead);
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[daemon]\nlisten = \"127.0.0.1:0\"\n[environments.target]\nbase_url = \"builtin:sandbox\"\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:{dead_port}\"\notlp_timeout = \"200ms\"\n"
        );
        let probe = "name = \"steady\"\nschedule = \"every 1s\"\ntimeout = \"500ms\"\nenvironments = [\"target\"]\n[http]\nurl = \"/health\"\n";
        let path = write_config(dir.path(), &config, &[("p.toml", probe)]);
        let opts = common::quiet_daemon_options(path);
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let daemon = synthmon::daemon::Daemon::start(opts, Some(tx)).await.unwrap();
        let started = Instant::now();
        let mut seen = Vec::new();
        while seen.len() < 4 {
            let o = rx.recv().await.unwrap();
            assert!(o.success, "{o:#?}");
            seen.push(Instant::now());
        }
        // Four runs one second apart: the dead collector costs no time.
        let span = seen[3] - seen[0];
        assert!(
            span >= Duration::from_millis(2_500) && span <= Duration::from_millis(3_800),
            "runs {:?} apart over 4 runs",
            span
        );
        assert!(started.elapsed() < Duration::from_secs(6));
        // Failed exports are counted and exported on /metrics.
        let addr = daemon.addr();
        let mut dropped = 0.0;
        for _ in 0..40 {
            let body = http_get(&format!("http://{addr}/metrics")).await;
            dropped = body
                .lines()
                .find(|l| l.starts_with("synthmon_spans_dropped_total"))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            if dropped >= 2.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(dropped >= 2.0, "synthmon_spans_dropped_total = {dropped}");
        daemon.shutdown().await;
    })
    .await;
}

/// A plain HTTP/1.1 GET over a fresh connection, returning the body.
async fn http_get(url: &str) -> String {
    let url = url::Url::parse(url).unwrap();
    let addr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        url.path()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// `--once` itself exports a trace per run when `[telemetry]` is set, and
/// flushes it before returning.
#[tokio::test]
async fn once_exports_its_runs_when_telemetry_is_configured() {
    bounded(async {
        let (endpoint, store) = grpc_receiver().await;
        let sb = sandbox().await;
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "{}\n[telemetry]\notlp_endpoint = \"{endpoint}\"\n",
            config_with_target(&sb.base_url())
        );
        let path = write_config(
            dir.path(),
            &config,
            &[("p.toml", &probe_file("health", "url = \"/health\""))],
        );
        let config = load(&path);
        let outcome = run_one(&config).await;
        sb.shutdown().await;
        let spans = store.spans();
        assert_eq!(spans.len(), 2, "{spans:#?}");
        assert!(
            spans.iter().all(|s| hex(&s.1.trace_id) == outcome.trace_id),
            "{spans:#?}"
        );
        assert!(spans.iter().any(|s| hex(&s.1.span_id) == outcome.span_id));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_exports_one_client_span_per_step_with_its_traceparent_id() {
    bounded(async {
        let (endpoint, store) = grpc_receiver().await;
        let sb = sandbox().await;
        let flow = r#"name = "journey"
environments = ["target"]

[[flow.steps]]
name = "create"
method = "POST"
url = "/api/orders"
json = { item = "widget", quantity = 1 }
capture = { order_id = "json.id" }

[[flow.steps]]
name = "fetch"
url = "/api/orders/{{ vars.order_id }}"

[[flow.teardown]]
name = "delete"
method = "DELETE"
url = "/api/orders/{{ vars.order_id }}"
"#;
        let (outcome, config) = run_probe(
            &sb.base_url(),
            &format!("otlp_endpoint = \"{endpoint}\""),
            flow,
        )
        .await;
        sb.shutdown().await;
        assert!(outcome.success, "{outcome:#?}");
        let exporter = TraceExporter::start(&config.telemetry, resource(), &no_env)
            .unwrap()
            .expect("an endpoint is configured");
        exporter.record(&outcome);
        let counts = exporter.shutdown(Duration::from_secs(5)).await;
        assert_eq!((counts.exported, counts.dropped), (4, 0));
        let spans: Vec<Span> = store.spans().into_iter().map(|(_, s)| s).collect();
        let root = spans
            .iter()
            .find(|s| s.parent_span_id.is_empty())
            .expect("a root span");
        assert_eq!(str_attr(&root.attributes, "synthmon.kind"), "flow");
        for step in &outcome.steps {
            let span = spans
                .iter()
                .find(|s| hex(&s.span_id) == step.span_id)
                .unwrap_or_else(|| panic!("no span for step {}", step.name));
            assert_eq!(span.parent_span_id, root.span_id);
            assert_eq!(hex(&span.trace_id), outcome.trace_id);
            assert_eq!(str_attr(&span.attributes, "synthmon.step"), step.name);
            assert!(span.start_time_unix_nano >= root.start_time_unix_nano);
            assert!(span.end_time_unix_nano <= root.end_time_unix_nano);
        }
        // The teardown ran after the main steps and the root covers it.
        let delete = spans
            .iter()
            .find(|s| {
                attr(&s.attributes, "synthmon.step")
                    == Some(any_value::Value::StringValue("delete".into()))
            })
            .unwrap();
        assert_eq!(
            int_attr(&delete.attributes, "http.response.status_code"),
            204
        );
    })
    .await;
}

// ------------------------------------------- test conventions and span ids

/// Starts an exporter to the gRPC receiver at `endpoint`, records
/// `outcomes`, flushes, and checks that every span was exported.
async fn export_all(endpoint: &str, resource: Resource, outcomes: &[&Outcome]) {
    let config = TelemetryConfig {
        otlp_endpoint: Some(endpoint.to_owned()),
        queue_size: 100,
        otlp_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let exporter = TraceExporter::start(&config, resource, &no_env)
        .unwrap()
        .expect("an endpoint is configured");
    for o in outcomes {
        exporter.record(o);
    }
    let counts = exporter.shutdown(Duration::from_secs(5)).await;
    assert_eq!(counts.dropped, 0, "{counts:?}");
}

/// The received spans of `outcome`'s trace, with their resource's
/// attributes: its root first, then the others in the order received.
fn trace_of(store: &Store, outcome: &Outcome) -> (Vec<KeyValue>, Vec<Span>) {
    let mut spans: Vec<(Vec<KeyValue>, Span)> = store
        .spans()
        .into_iter()
        .filter(|(_, s)| hex(&s.trace_id) == outcome.trace_id)
        .collect();
    spans.sort_by_key(|(_, s)| !s.parent_span_id.is_empty());
    assert!(
        spans
            .first()
            .is_some_and(|(_, s)| s.parent_span_id.is_empty()),
        "no root span for {}: {spans:#?}",
        outcome.probe
    );
    assert_eq!(
        spans
            .iter()
            .filter(|(_, s)| s.parent_span_id.is_empty())
            .count(),
        1,
        "{spans:#?}"
    );
    let resource = spans[0].0.clone();
    (resource, spans.into_iter().map(|(_, s)| s).collect())
}

/// The exported span whose id is `id`.
fn span_with_id<'a>(spans: &'a [Span], id: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| hex(&s.span_id) == id)
        .unwrap_or_else(|| panic!("no exported span has id {id}: {spans:#?}"))
}

fn probe_with(name: &str, common: &str, http: &str) -> String {
    format!("name = \"{name}\"\nenvironments = [\"target\"]\n{common}\n[http]\n{http}\n")
}

/// A single-request probe is a test suite of one case: the root span names
/// the suite after the probe and says how its run ended (`success`,
/// `failure`, `timed_out`), the client span names the case after the probe
/// and says `pass` or `fail`; both say they are synthetic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_runs_carry_the_test_conventions_pass_fail_and_timed_out() {
    bounded(async {
        let (endpoint, store) = grpc_receiver().await;
        let sb = sandbox().await;
        let cases = [
            ("up", "", "url = \"/health\"", "success", "pass"),
            ("down", "", "url = \"/status/500\"", "failure", "fail"),
            (
                "slow",
                "timeout = \"200ms\"",
                "url = \"/delay/5000\"",
                "timed_out",
                "fail",
            ),
        ];
        let mut outcomes = Vec::new();
        for (name, common, http, _, _) in cases {
            let (o, _) = run_probe(&sb.base_url(), "", &probe_with(name, common, http)).await;
            outcomes.push(o);
        }
        sb.shutdown().await;
        assert!(outcomes[0].success, "{:#?}", outcomes[0]);
        assert_eq!(
            outcomes[1].reason.map(|r| r.as_str()),
            Some("status"),
            "{:#?}",
            outcomes[1]
        );
        assert_eq!(
            outcomes[2].reason.map(|r| r.as_str()),
            Some("timeout"),
            "{:#?}",
            outcomes[2]
        );
        export_all(&endpoint, resource(), &outcomes.iter().collect::<Vec<_>>()).await;

        for ((name, _, _, suite, case), o) in cases.iter().zip(&outcomes) {
            let (resource, spans) = trace_of(&store, o);
            assert_eq!(spans.len(), 2, "{name}: {spans:#?}");
            let (root, client) = (&spans[0], &spans[1]);
            assert_eq!(str_attr(&root.attributes, "test.suite.name"), *name);
            assert_eq!(
                str_attr(&root.attributes, "test.suite.run.status"),
                *suite,
                "{name}"
            );
            assert!(
                attr(&root.attributes, "test.case.name").is_none(),
                "{name}: the root is the suite, not a case"
            );
            assert_eq!(hex(&client.span_id), o.span_id, "{name}");
            assert_eq!(client.parent_span_id, root.span_id, "{name}");
            assert_eq!(str_attr(&client.attributes, "test.case.name"), *name);
            assert_eq!(
                str_attr(&client.attributes, "test.case.result.status"),
                *case,
                "{name}"
            );
            for s in [root, client] {
                assert_eq!(
                    str_attr(&s.attributes, "user_agent.synthetic.type"),
                    "test",
                    "{name}: {s:#?}"
                );
            }
            // The HTTP client conventions stay beside the test ones.
            assert_eq!(str_attr(&client.attributes, "http.request.method"), "GET");
            assert_eq!(str_attr(&resource, "service.name"), "synthmon");
            assert_eq!(
                str_attr(&resource, "service.version"),
                env!("CARGO_PKG_VERSION")
            );
            assert_eq!(str_attr(&resource, "service.instance.id"), "vm-test-1");
            assert_eq!(str_attr(&resource, "synthmon.location"), "eu-test");
        }
    })
    .await;
}

/// An HTTP/1.1 target on 127.0.0.1 that records the head of every request
/// and answers each on its own connection: `GET /ready` with `{"n": N}`,
/// N counting its calls, `/missing` with a 404, anything else with a 200.
async fn counting_target() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = heads.clone();
    tokio::spawn(async move {
        let mut ready = 0;
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf).into_owned();
            let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
            seen.lock().unwrap().push(head);
            let (status, body) = match path.as_str() {
                "/ready" => {
                    ready += 1;
                    ("200 OK", format!("{{\"n\": {ready}}}"))
                }
                "/missing" => ("404 Not Found", "{}".to_owned()),
                _ => ("200 OK", "{}".to_owned()),
            };
            let answer = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    (port, heads)
}

/// The value of header `name` in a request head.
fn header_of(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

/// Regression: a flow reported a run span id (`span_id` in the JSON
/// report) that no exported span had, and a step polling with `until` sent
/// a new span id with each attempt while only the last one was exported.
/// Now the run's id is the root span's, each step is one client span whose
/// id every attempt carries, and each step is a test case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_reports_only_span_ids_its_trace_holds_and_each_step_is_a_test_case() {
    bounded(async {
        let (endpoint, store) = grpc_receiver().await;
        let (port, heads) = counting_target().await;
        let flow = r#"name = "journey"
environments = ["target"]

[[flow.steps]]
name = "wait"
url = "/ready"
until = "json.n >= 3"
until_interval = "10ms"

[[flow.steps]]
name = "check"
url = "/missing"

[[flow.teardown]]
name = "cleanup"
method = "DELETE"
url = "/orders"
"#;
        let (outcome, _) = run_probe(&format!("http://127.0.0.1:{port}"), "", flow).await;
        assert!(!outcome.success, "{outcome:#?}");
        assert_eq!(outcome.reason.map(|r| r.as_str()), Some("status"));
        let steps: Vec<(&str, bool, u32)> = outcome
            .steps
            .iter()
            .map(|s| (s.name.as_str(), s.success, s.attempts))
            .collect();
        assert_eq!(
            steps,
            [("wait", true, 3), ("check", false, 1), ("cleanup", true, 1)]
        );
        export_all(&endpoint, resource(), &[&outcome]).await;
        let (resource, spans) = trace_of(&store, &outcome);
        assert_eq!(spans.len(), 4, "the root and a span per step: {spans:#?}");

        // The run's reported id is the root span, the suite.
        let root = &spans[0];
        assert_eq!(hex(&root.span_id), outcome.span_id, "the run's span id");
        assert_eq!(str_attr(&root.attributes, "test.suite.name"), "journey");
        assert_eq!(
            str_attr(&root.attributes, "test.suite.run.status"),
            "failure"
        );
        assert_eq!(
            str_attr(&root.attributes, "user_agent.synthetic.type"),
            "test"
        );

        // Each step's reported id is its client span, a case under the root.
        for step in &outcome.steps {
            let span = span_with_id(&spans, &step.span_id);
            assert_eq!(span.parent_span_id, root.span_id, "{}", step.name);
            assert_eq!(span.kind, span::SpanKind::Client as i32, "{}", step.name);
            assert_eq!(str_attr(&span.attributes, "test.case.name"), step.name);
            assert_eq!(
                str_attr(&span.attributes, "test.case.result.status"),
                if step.success { "pass" } else { "fail" },
                "{}",
                step.name
            );
            assert_eq!(
                str_attr(&span.attributes, "user_agent.synthetic.type"),
                "test"
            );
            assert_eq!(
                int_attr(&span.attributes, "synthmon.step.attempts"),
                i64::from(step.attempts)
            );
        }
        let check = span_with_id(&spans, &outcome.steps[1].span_id);
        assert_eq!(str_attr(&check.attributes, "error.type"), "status");
        assert_eq!(
            int_attr(&check.attributes, "http.response.status_code"),
            404
        );

        // Every request the target saw names an exported span: the one of
        // its step, the same for each `until` attempt.
        let heads = heads.lock().unwrap().clone();
        assert_eq!(heads.len(), 5, "three polls, the check, the cleanup");
        let step_of_request = ["wait", "wait", "wait", "check", "cleanup"];
        for (head, name) in heads.iter().zip(step_of_request) {
            assert_eq!(header_of(head, "x-synthetic-step").as_deref(), Some(name));
            let traceparent = header_of(head, "traceparent")
                .unwrap_or_else(|| panic!("no traceparent in\n{head}"));
            let parts: Vec<&str> = traceparent.split('-').collect();
            assert_eq!(parts.len(), 4, "{traceparent}");
            assert_eq!(parts[1], outcome.trace_id, "{traceparent}");
            let step = outcome.steps.iter().find(|s| s.name == name).unwrap();
            assert_eq!(parts[2], step.span_id, "{name}: {traceparent}");
            span_with_id(&spans, parts[2]);
        }
        assert_eq!(str_attr(&resource, "service.instance.id"), "vm-test-1");
    })
    .await;
}

/// A run with no HTTP client span (here a `command`, which hands its
/// program `TRACEPARENT`) reports the root span's id, so what its target
/// was told is in the trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_without_a_client_span_reports_its_root_span_which_its_target_saw() {
    bounded(async {
        let (endpoint, store) = grpc_receiver().await;
        let probe = r#"name = "script"
environments = ["target"]

[command]
program = "sh"
args = ["-c", 'printf %s "$TRACEPARENT"']
"#;
        let (outcome, _) = run_probe("http://127.0.0.1:9", "", probe).await;
        assert!(outcome.success, "{outcome:#?}");
        let told = outcome
            .details
            .as_ref()
            .and_then(|d| d.get::<synthmon::probe::command::CommandFacts>())
            .map(|f| f.stdout.clone())
            .unwrap_or_else(|| panic!("no command facts: {outcome:#?}"));
        export_all(&endpoint, resource(), &[&outcome]).await;
        let (_, spans) = trace_of(&store, &outcome);
        assert_eq!(spans.len(), 1, "{spans:#?}");
        let root = &spans[0];
        assert_eq!(hex(&root.span_id), outcome.span_id);
        assert_eq!(
            told,
            format!("00-{}-{}-01", hex(&root.trace_id), hex(&root.span_id)),
            "the program's parent is the exported root span"
        );
        assert_eq!(str_attr(&root.attributes, "test.suite.name"), "script");
        assert_eq!(
            str_attr(&root.attributes, "test.suite.run.status"),
            "success"
        );
        assert_eq!(
            str_attr(&root.attributes, "user_agent.synthetic.type"),
            "test"
        );
    })
    .await;
}

/// The resource always says who exported: `service.name` (synthmon by
/// default), `service.version`, `service.instance.id` (`[daemon] instance`,
/// else a random UUID for the process) and, when configured, the location.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resource_names_the_service_its_version_instance_and_location() {
    bounded(async {
        let outcome = health_outcome().await;
        let (configured, configured_store) = grpc_receiver().await;
        export_all(&configured, resource(), &[&outcome]).await;
        let (resource_attrs, _) = trace_of(&configured_store, &outcome);
        assert_eq!(str_attr(&resource_attrs, "service.name"), "synthmon");
        assert_eq!(
            str_attr(&resource_attrs, "service.version"),
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(
            str_attr(&resource_attrs, "service.instance.id"),
            "vm-test-1"
        );
        assert_eq!(str_attr(&resource_attrs, "synthmon.location"), "eu-test");

        let (unnamed, unnamed_store) = grpc_receiver().await;
        export_all(&unnamed, Resource::default(), &[&outcome]).await;
        let (resource_attrs, _) = trace_of(&unnamed_store, &outcome);
        assert_eq!(str_attr(&resource_attrs, "service.name"), "synthmon");
        let instance = str_attr(&resource_attrs, "service.instance.id");
        let uuid = uuid::Uuid::parse_str(&instance).unwrap_or_else(|e| panic!("{instance}: {e}"));
        assert_eq!(uuid.get_version_num(), 4, "{instance}");
        assert!(
            attr(&resource_attrs, "synthmon.location").is_none(),
            "{resource_attrs:#?}"
        );
    })
    .await;
}

/// A target that records the head of its first request, says so, and
/// never answers.
async fn silent_target() -> (u16, tokio::sync::oneshot::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before the end of the head");
            buf.extend_from_slice(&chunk[..n]);
        }
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
        // Hold the connection until the client goes away.
        let _ = stream.read(&mut chunk).await;
    });
    (port, rx)
}

/// A shutdown that cancels a flow in the middle of a step: the run is an
/// `aborted` suite, and the step, whose request the target already had,
/// is still reported with the span id its `traceparent` carried, a failed
/// case in the trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_flow_is_an_aborted_suite_and_keeps_the_step_id_the_target_saw() {
    bounded(async {
        let (endpoint, store) = grpc_receiver().await;
        let (port, head) = silent_target().await;
        let base_url = format!("http://127.0.0.1:{port}");
        let dir = tempfile::tempdir().unwrap();
        let flow = "name = \"stuck\"\nenvironments = [\"target\"]\ntimeout = \"15s\"\n\n\
                    [[flow.steps]]\nname = \"hang\"\nurl = \"/hang\"\n";
        let path = write_config(
            dir.path(),
            &config_with_target(&base_url),
            &[("p.toml", flow)],
        );
        let config = load(&path);
        let base = url::Url::parse(&base_url).unwrap();
        let vars = std::collections::BTreeMap::new();
        let cancel = tokio_util::sync::CancellationToken::new();
        let ctx = synthmon::probe::RunContext {
            probe: &config.probes[0],
            env: &config.environments["target"],
            base_url: &base,
            tagging: &config.tagging,
            redactor: &config.redactor,
            vars: &vars,
            cancel: cancel.clone(),
            seed: None,
            progress: None,
            prev: None,
        };
        // Cancel once the target has the request, not after a guess.
        let trigger = async {
            let head = head.await.unwrap();
            cancel.cancel();
            head
        };
        let (outcome, head) = tokio::join!(synthmon::probe::run(&ctx), trigger);
        assert_eq!(outcome.reason.map(|r| r.as_str()), Some("cancelled"));
        let step = &outcome.steps[0];
        assert_eq!((step.name.as_str(), step.success), ("hang", false));
        let traceparent =
            header_of(&head, "traceparent").unwrap_or_else(|| panic!("no traceparent in\n{head}"));
        assert_eq!(
            traceparent,
            format!("00-{}-{}-01", outcome.trace_id, step.span_id),
            "the cancelled step reports the id its request carried"
        );

        export_all(&endpoint, resource(), &[&outcome]).await;
        let (_, spans) = trace_of(&store, &outcome);
        assert_eq!(spans.len(), 2, "{spans:#?}");
        let root = &spans[0];
        assert_eq!(hex(&root.span_id), outcome.span_id);
        assert_eq!(
            str_attr(&root.attributes, "test.suite.run.status"),
            "aborted"
        );
        let hang = span_with_id(&spans, &step.span_id);
        assert_eq!(hang.parent_span_id, root.span_id);
        assert_eq!(str_attr(&hang.attributes, "test.case.name"), "hang");
        assert_eq!(
            str_attr(&hang.attributes, "test.case.result.status"),
            "fail"
        );
        assert_eq!(str_attr(&hang.attributes, "error.type"), "cancelled");
        assert_eq!(
            str_attr(&hang.attributes, "user_agent.synthetic.type"),
            "test"
        );
    })
    .await;
}
