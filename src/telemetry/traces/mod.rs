//! OTLP trace export: one trace per probe run, sent to a collector over gRPC
//! or HTTP/protobuf.
//!
//! **Spans are built after the run, from its [`Outcome`].** The probe has
//! already sent the target a `traceparent` carrying the run's trace id and
//! the id of its HTTP client span, so the target's server span is a child of
//! that id. Creating spans through the SDK's `Tracer` would invent new span
//! ids and break that link; instead [`TraceExporter::record`] builds
//! [`SpanData`] values itself: a root span `probe <name>` with a fresh id,
//! and, for an HTTP run, a client span under it whose id is exactly
//! `outcome.span_id`. The client span follows the OpenTelemetry HTTP client
//! semantic conventions and carries `user_agent.synthetic.type = "test"`.
//!
//! **Our own bounded queue, not the SDK's batch processor.** `record` only
//! ever does a `try_send` into a queue that holds at most
//! `[telemetry] queue_size` spans; when it is full the spans are dropped and
//! counted, so a collector that is down or hangs never blocks a probe run and
//! never grows memory beyond the queue plus the one batch being exported. A
//! single export task drains the queue into batches (at most
//! [`MAX_BATCH`] spans, or whatever arrived within [`BATCH_INTERVAL`]) and
//! hands each to the `opentelemetry-otlp` exporter under a timeout. A batch
//! that fails or times out is dropped and counted; failures are logged at
//! most once a minute.
//!
//! **Settings**: a value in `[telemetry]` wins; otherwise the standard
//! `OTEL_*` variables apply: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as
//! is) or `OTEL_EXPORTER_OTLP_ENDPOINT` (a base: HTTP/protobuf appends
//! `/v1/traces`), `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL`,
//! `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`, `OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT`
//! (milliseconds), `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`. An
//! `otlp_endpoint` in the config is a base endpoint like
//! `OTEL_EXPORTER_OTLP_ENDPOINT`, and it brings the config's protocol with
//! it. Because the checked config cannot tell a default from an explicit
//! value, an `otlp_protocol` of `grpc` and an `otlp_timeout` equal to the
//! default count as unset when the endpoint comes from the environment.
//! Headers are merged per name, the config's value winning. Header values
//! may be secrets: they are never logged, and `Debug` shows names only.

use crate::config::DEFAULT_OTLP_TIMEOUT;
use crate::config::{OtlpProtocol, TelemetryConfig, TlsOptions};
use crate::outcome::{HttpFacts, Outcome};
use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use rand::Rng;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The most spans one export call carries.
pub const MAX_BATCH: usize = 512;
/// How long a span may wait in a partial batch before it is exported.
pub const BATCH_INTERVAL: Duration = Duration::from_secs(1);
/// Export failures are logged at most this often.
const WARN_INTERVAL: Duration = Duration::from_secs(60);

const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
const TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
const TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
const HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
const TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
const TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
const RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";

/// Who is exporting: becomes `service.instance.id` and `synthmon.location`
/// on the OTLP resource (each only when non-empty).
#[derive(Debug, Clone, Default)]
pub struct Resource {
    pub instance: String,
    pub location: String,
}

/// A running OTLP trace export: a bounded queue and the task that drains it.
#[derive(Debug)]
pub struct TraceExporter {
    tx: mpsc::Sender<Vec<SpanData>>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
    queue_size: usize,
}

/// Span accounting shared with the export task. Every span `record`
/// accepts is `pending` until it is exported or dropped; `queued` counts the
/// ones still in the queue, which is what `queue_size` bounds.
#[derive(Debug, Default)]
struct Counters {
    queued: AtomicUsize,
    pending: AtomicU64,
    exported: AtomicU64,
    dropped: AtomicU64,
}

impl Counters {
    /// Marks `n` pending spans as done, exported or dropped.
    fn settle(&self, n: u64, exported: bool) {
        if exported {
            self.exported.fetch_add(n, Ordering::Relaxed);
        } else {
            self.dropped.fetch_add(n, Ordering::Relaxed);
        }
        self.pending.fetch_sub(n, Ordering::Relaxed);
    }
}

impl TraceExporter {
    /// Starts exporting, or returns `Ok(None)` when no endpoint is
    /// configured: neither `config.otlp_endpoint` nor
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`.
    ///
    /// `env` looks up environment variables (production passes
    /// `|k| std::env::var(k).ok()`). Must be called within a tokio runtime;
    /// nothing connects until the first export.
    pub fn start(
        config: &TelemetryConfig,
        resource: Resource,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<TraceExporter>, String> {
        let Some(settings) = Settings::resolve(config, &resource, env)? else {
            return Ok(None);
        };
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "OTLP trace export needs a tokio runtime".to_owned())?;
        let _guard = runtime.enter();
        let exporter = settings.build_exporter()?;
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel(settings.queue_size);
        let task = runtime.spawn(export_loop(
            rx,
            exporter,
            counters.clone(),
            settings.timeout,
            settings.endpoint_for_logs.clone(),
        ));
        tracing::info!(
            endpoint = %settings.endpoint_for_logs,
            protocol = settings.protocol_name(),
            headers = ?settings.headers.keys().collect::<Vec<_>>(),
            "exporting traces over OTLP"
        );
        Ok(Some(TraceExporter {
            tx,
            counters,
            task,
            queue_size: settings.queue_size,
        }))
    }

    /// Queues the spans of one run. Never blocks and never grows memory:
    /// when the queue already holds `queue_size` spans, these are dropped
    /// and counted instead.
    pub fn record(&self, outcome: &Outcome) {
        let n = 1
            + usize::from(outcome.http.is_some())
            + outcome.steps.iter().filter(|s| s.http.is_some()).count();
        // Reserve room first, so that a full queue costs no allocation.
        let reserved = self
            .counters
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q + n <= self.queue_size).then_some(q + n)
            })
            .is_ok();
        if !reserved {
            self.counters.dropped.fetch_add(n as u64, Ordering::Relaxed);
            return;
        }
        let sent = match spans(outcome) {
            Some(spans) => {
                self.counters.pending.fetch_add(n as u64, Ordering::Relaxed);
                match self.tx.try_send(spans) {
                    Ok(()) => true,
                    Err(_) => {
                        self.counters.pending.fetch_sub(n as u64, Ordering::Relaxed);
                        false
                    }
                }
            }
            None => {
                tracing::debug!(
                    probe = %outcome.probe,
                    trace_id = %outcome.trace_id,
                    "outcome has no valid trace id; no spans exported"
                );
                false
            }
        };
        if !sent {
            self.counters.queued.fetch_sub(n, Ordering::AcqRel);
            self.counters.dropped.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// Spans dropped: the queue was full, an export failed or timed out, or
    /// shutdown came before they were exported.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Spans the collector accepted.
    pub fn exported(&self) -> u64 {
        self.counters.exported.load(Ordering::Relaxed)
    }

    /// The counters as one value.
    pub fn counts(&self) -> SpanCounts {
        SpanCounts {
            exported: self.exported(),
            dropped: self.dropped(),
        }
    }

    /// Exports what is queued, waiting at most `deadline`, then stops. Spans
    /// not exported by then are dropped and counted. Never hangs: past the
    /// deadline the export task is aborted. Returns the final counts.
    pub async fn shutdown(self, deadline: Duration) -> SpanCounts {
        let TraceExporter {
            tx,
            counters,
            mut task,
            ..
        } = self;
        // Closing the queue makes the task export what is left and finish.
        drop(tx);
        if tokio::time::timeout(deadline, &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
        }
        let left = counters.pending.swap(0, Ordering::AcqRel);
        if left > 0 {
            counters.dropped.fetch_add(left, Ordering::Relaxed);
            tracing::warn!(
                spans = left,
                "OTLP export did not finish before shutdown; spans dropped"
            );
        }
        SpanCounts {
            exported: counters.exported.load(Ordering::Relaxed),
            dropped: counters.dropped.load(Ordering::Relaxed),
        }
    }
}

/// How many spans an exporter has exported and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpanCounts {
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans dropped: queue full, export failed or timed out, or shutdown.
    pub dropped: u64,
}

/// The export task: drains the queue into batches and exports each under
/// `timeout`, until the queue is closed and empty.
async fn export_loop(
    mut rx: mpsc::Receiver<Vec<SpanData>>,
    exporter: opentelemetry_otlp::SpanExporter,
    counters: Arc<Counters>,
    timeout: Duration,
    endpoint: String,
) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(MAX_BATCH);
    let mut warn = FailureLog::new(endpoint);
    let mut tick = tokio::time::interval(BATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = rx.recv() => match received {
                Some(spans) => {
                    counters.queued.fetch_sub(spans.len(), Ordering::AcqRel);
                    batch.extend(spans);
                    while batch.len() >= MAX_BATCH {
                        let rest = batch.split_off(MAX_BATCH);
                        let full = std::mem::replace(&mut batch, rest);
                        export(&exporter, full, timeout, &counters, &mut warn).await;
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                if !batch.is_empty() {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
                    export(&exporter, full, timeout, &counters, &mut warn).await;
                }
            }
        }
    }
    if !batch.is_empty() {
        export(&exporter, batch, timeout, &counters, &mut warn).await;
    }
    let _ = exporter.shutdown();
}

/// Exports one batch and settles its spans as exported or dropped.
async fn export(
    exporter: &opentelemetry_otlp::SpanExporter,
    batch: Vec<SpanData>,
    timeout: Duration,
    counters: &Counters,
    warn: &mut FailureLog,
) {
    let n = batch.len() as u64;
    match tokio::time::timeout(timeout, exporter.export(batch)).await {
        Ok(Ok(())) => counters.settle(n, true),
        Ok(Err(e)) => {
            counters.settle(n, false);
            warn.failed(n, &e.to_string());
        }
        Err(_) => {
            counters.settle(n, false);
            warn.failed(n, &format!("no answer within {timeout:?}"));
        }
    }
}

/// Rate-limits the export failure warning to one a minute.
struct FailureLog {
    endpoint: String,
    last: Option<Instant>,
    /// Spans dropped by failures since the last warning.
    unreported: u64,
}

impl FailureLog {
    fn new(endpoint: String) -> FailureLog {
        FailureLog {
            endpoint,
            last: None,
            unreported: 0,
        }
    }

    fn failed(&mut self, spans: u64, error: &str) {
        self.unreported += spans;
        if self.last.is_some_and(|t| t.elapsed() < WARN_INTERVAL) {
            return;
        }
        tracing::warn!(
            endpoint = %self.endpoint,
            error,
            spans_dropped = self.unreported,
            "cannot export spans to the OTLP collector; dropping them \
             (this warning repeats at most once a minute)"
        );
        self.last = Some(Instant::now());
        self.unreported = 0;
    }
}

/// Where a resolved endpoint came from; decides how it is completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndpointSource {
    Config,
    TracesEnv,
    BaseEnv,
}

/// Export settings after applying the config and then the environment.
struct Settings {
    /// The URL exported to: for HTTP/protobuf the full `/v1/traces` URL.
    endpoint: String,
    /// The endpoint without user info or query, for logs.
    endpoint_for_logs: String,
    protocol: OtlpProtocol,
    headers: HeaderMap,
    timeout: Duration,
    queue_size: usize,
    resource: opentelemetry_sdk::Resource,
}

impl Settings {
    fn resolve(
        config: &TelemetryConfig,
        resource: &Resource,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Settings>, String> {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let (raw, source) = if let Some(e) = config.otlp_endpoint.clone().filter(|e| !e.is_empty())
        {
            (e, EndpointSource::Config)
        } else if let Some(e) = var(TRACES_ENDPOINT) {
            (e, EndpointSource::TracesEnv)
        } else if let Some(e) = var(ENDPOINT) {
            (e, EndpointSource::BaseEnv)
        } else {
            return Ok(None);
        };
        let source_name = match source {
            EndpointSource::Config => "telemetry.otlp_endpoint",
            EndpointSource::TracesEnv => TRACES_ENDPOINT,
            EndpointSource::BaseEnv => ENDPOINT,
        };

        let protocol = if source == EndpointSource::Config
            || config.otlp_protocol != OtlpProtocol::default()
        {
            config.otlp_protocol
        } else {
            match var(TRACES_PROTOCOL)
                .map(|v| (TRACES_PROTOCOL, v))
                .or_else(|| var(PROTOCOL).map(|v| (PROTOCOL, v)))
            {
                None => config.otlp_protocol,
                Some((name, v)) => match v.trim() {
                    "grpc" => OtlpProtocol::Grpc,
                    "http/protobuf" => OtlpProtocol::HttpProtobuf,
                    other => {
                        return Err(format!(
                            "{name}: expected `grpc` or `http/protobuf`, found `{other}`"
                        ));
                    }
                },
            }
        };

        let mut url = url::Url::parse(raw.trim())
            .map_err(|e| format!("{source_name}: `{raw}` is not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "{source_name}: expected an http(s) URL like `http://127.0.0.1:4317`, found `{raw}`"
            ));
        }
        if protocol == OtlpProtocol::HttpProtobuf && source != EndpointSource::TracesEnv {
            let path = url.path().trim_end_matches('/');
            if !path.ends_with("/v1/traces") {
                let full = format!("{path}/v1/traces");
                url.set_path(&full);
            }
        }
        let endpoint_for_logs = format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port().map(|p| format!(":{p}")).unwrap_or_default()
        ) + if url.path() == "/" { "" } else { url.path() };
        let endpoint = match protocol {
            // gRPC routes by service name; tonic wants the bare origin.
            OtlpProtocol::Grpc => url.as_str().trim_end_matches('/').to_owned(),
            OtlpProtocol::HttpProtobuf => url.to_string(),
        };

        let mut headers = HeaderMap::new();
        if let Some(text) = var(TRACES_HEADERS).or_else(|| var(HEADERS)) {
            for (key, value) in parse_pairs(&text) {
                match header(&key, &value) {
                    Some((k, v)) => {
                        headers.insert(k, v);
                    }
                    None => tracing::warn!(
                        header = %key,
                        "ignoring an OTLP header from the environment: invalid name or value"
                    ),
                }
            }
        }
        for (key, value) in &config.otlp_headers {
            let (k, v) = header(key, value).ok_or_else(|| {
                format!("telemetry.otlp_headers.{key}: invalid header name or value")
            })?;
            headers.insert(k, v);
        }

        let mut timeout = config.otlp_timeout;
        if timeout == DEFAULT_OTLP_TIMEOUT || timeout.is_zero() {
            timeout = DEFAULT_OTLP_TIMEOUT;
            if let Some((name, v)) = var(TRACES_TIMEOUT)
                .map(|v| (TRACES_TIMEOUT, v))
                .or_else(|| var(TIMEOUT).map(|v| (TIMEOUT, v)))
            {
                match v.trim().parse::<u64>() {
                    Ok(ms) if ms > 0 => timeout = Duration::from_millis(ms),
                    _ => tracing::warn!(
                        variable = name,
                        value = %v,
                        "ignoring an invalid OTLP timeout; expected milliseconds"
                    ),
                }
            }
        }

        Ok(Some(Settings {
            endpoint,
            endpoint_for_logs,
            protocol,
            headers,
            timeout,
            queue_size: config.queue_size.max(1),
            resource: otel_resource(config, resource, &var),
        }))
    }

    fn protocol_name(&self) -> &'static str {
        match self.protocol {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        }
    }

    /// Builds the `opentelemetry-otlp` exporter. Must run inside the tokio
    /// runtime (tonic sets up its channel lazily there).
    fn build_exporter(&self) -> Result<opentelemetry_otlp::SpanExporter, String> {
        let built = match self.protocol {
            OtlpProtocol::Grpc => {
                let mut metadata = Vec::new();
                for (k, v) in &self.headers {
                    let key = tonic::metadata::AsciiMetadataKey::from_bytes(k.as_str().as_bytes())
                        .map_err(|_| format!("OTLP header `{k}` cannot be sent over gRPC"))?;
                    let value = tonic::metadata::AsciiMetadataValue::try_from(v.as_bytes())
                        .map_err(|_| format!("OTLP header `{k}` has a value gRPC cannot carry"))?;
                    metadata.push((key, value));
                }
                let metadata = Arc::new(metadata);
                // The interceptor runs after the exporter has added any
                // headers it read from the process environment itself, so
                // the resolved values (config first) are the ones sent.
                let interceptor =
                    move |mut request: tonic::Request<()>| -> Result<tonic::Request<()>, tonic::Status> {
                        for (k, v) in metadata.iter() {
                            request.metadata_mut().insert(k.clone(), v.clone());
                        }
                        Ok(request)
                    };
                let mut builder = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(self.endpoint.clone())
                    .with_timeout(self.timeout)
                    .with_interceptor(interceptor);
                if self.endpoint.starts_with("https:") {
                    builder = builder.with_tls_config(
                        opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new()
                            .with_native_roots(),
                    );
                }
                builder.build()
            }
            OtlpProtocol::HttpProtobuf => {
                // reqwest is built without a default crypto provider; hand it
                // the same ring-based rustls config the probes use.
                let tls = crate::net::tls::client_config(&TlsOptions::default())?;
                let client = reqwest::Client::builder()
                    .tls_backend_preconfigured((*tls).clone())
                    .timeout(self.timeout)
                    .connect_timeout(self.timeout)
                    .build()
                    .map_err(|e| format!("cannot build the OTLP HTTP client: {e}"))?;
                opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_endpoint(self.endpoint.clone())
                    .with_timeout(self.timeout)
                    .with_http_client(HeaderClient {
                        inner: client,
                        headers: self.headers.clone(),
                    })
                    .build()
            }
        };
        let mut exporter = built.map_err(|e| {
            format!(
                "cannot set up OTLP export to {}: {e}",
                self.endpoint_for_logs
            )
        })?;
        exporter.set_resource(&self.resource);
        Ok(exporter)
    }
}

/// The OTLP resource: `OTEL_RESOURCE_ATTRIBUTES`, then `service.name`,
/// `service.version`, `service.instance.id` and `synthmon.location`.
fn otel_resource(
    config: &TelemetryConfig,
    resource: &Resource,
    var: &dyn Fn(&str) -> Option<String>,
) -> opentelemetry_sdk::Resource {
    let mut attributes: BTreeMap<String, Value> = BTreeMap::new();
    if let Some(text) = var(RESOURCE_ATTRIBUTES) {
        for (k, v) in parse_pairs(&text) {
            attributes.insert(k, Value::from(v));
        }
    }
    let service_name = config
        .service_name
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| var(SERVICE_NAME))
        .or_else(|| {
            attributes
                .get("service.name")
                .map(|v| v.as_str().into_owned())
        })
        .unwrap_or_else(|| "synthmon".to_owned());
    attributes.insert("service.name".into(), service_name.into());
    attributes.insert("service.version".into(), env!("CARGO_PKG_VERSION").into());
    if !resource.instance.is_empty() {
        attributes.insert(
            "service.instance.id".into(),
            resource.instance.clone().into(),
        );
    }
    if !resource.location.is_empty() {
        attributes.insert("synthmon.location".into(), resource.location.clone().into());
    }
    opentelemetry_sdk::Resource::builder_empty()
        .with_attributes(attributes.into_iter().map(|(k, v)| KeyValue::new(k, v)))
        .build()
}

/// Parses the `key=value,key2=value2` lists of `OTEL_EXPORTER_OTLP_HEADERS`
/// and `OTEL_RESOURCE_ATTRIBUTES` (W3C baggage style: trimmed,
/// percent-decoded); entries without `=` or with an empty key are skipped.
fn parse_pairs(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|entry| {
            let (k, v) = entry.split_once('=')?;
            let k = percent_decode(k.trim());
            let v = percent_decode(v.trim());
            (!k.is_empty()).then_some((k, v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn header(key: &str, value: &str) -> Option<(HeaderName, HeaderValue)> {
    Some((
        HeaderName::from_bytes(key.trim().as_bytes()).ok()?,
        HeaderValue::from_str(value).ok()?,
    ))
}

/// The HTTP client handed to the exporter: reqwest, with the resolved
/// headers set on every request (replacing any the exporter took from the
/// process environment on its own).
struct HeaderClient {
    inner: reqwest::Client,
    headers: HeaderMap,
}

impl std::fmt::Debug for HeaderClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values may be secrets: names only.
        f.debug_struct("HeaderClient")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl opentelemetry_http::HttpClient for HeaderClient {
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        mut request: http::Request<bytes::Bytes>,
    ) -> Pin<
        Box<
            dyn Future<Output = Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError>>
                + Send
                + 'async_trait,
        >,
    >
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        for (k, v) in &self.headers {
            request.headers_mut().insert(k.clone(), v.clone());
        }
        opentelemetry_http::HttpClient::send_bytes(&self.inner, request)
    }
}

/// The spans of one run: the root span and, for an HTTP run, the client
/// span under it. `None` when the outcome's trace or span id is not valid.
fn spans(outcome: &Outcome) -> Option<Vec<SpanData>> {
    let trace_id = TraceId::from_hex(&outcome.trace_id)
        .ok()
        .filter(|t| *t != TraceId::INVALID)?;
    let start = chrono::DateTime::parse_from_rfc3339(&outcome.started_at)
        .map(SystemTime::from)
        .unwrap_or_else(|_| {
            SystemTime::now()
                .checked_sub(outcome.duration)
                .unwrap_or_else(SystemTime::now)
        });
    // A flow's teardown runs after its main steps: the root span covers it.
    let end = outcome
        .steps
        .iter()
        .map(|s| start + s.offset + s.duration)
        .fold(start + outcome.duration, SystemTime::max);
    let client_id = match &outcome.http {
        Some(_) => Some(
            SpanId::from_hex(&outcome.span_id)
                .ok()
                .filter(|s| *s != SpanId::INVALID)?,
        ),
        None => None,
    };
    let root_id = fresh_span_id(client_id);
    let scope = InstrumentationScope::builder("synthmon")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    let context = |span_id| {
        SpanContext::new(
            trace_id,
            span_id,
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        )
    };
    let error_status = || {
        Status::error(
            outcome
                .error
                .clone()
                .or_else(|| outcome.reason.map(|r| r.as_str().to_owned()))
                .unwrap_or_else(|| "failed".to_owned()),
        )
    };

    let mut root_attributes = vec![
        KeyValue::new("synthmon.probe", outcome.probe.clone()),
        KeyValue::new("synthmon.environment", outcome.environment.clone()),
        KeyValue::new("synthmon.run_id", outcome.run_id.clone()),
        KeyValue::new("synthmon.kind", outcome.kind),
        KeyValue::new(
            "synthmon.result",
            if outcome.success {
                "success"
            } else {
                "failure"
            },
        ),
    ];
    if !outcome.success {
        if let Some(reason) = outcome.reason {
            root_attributes.push(KeyValue::new("synthmon.failure_reason", reason.as_str()));
        }
    }
    let root = SpanData {
        span_context: context(root_id),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: Cow::Owned(format!("probe {}", outcome.probe)),
        start_time: start,
        end_time: end,
        attributes: root_attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: if outcome.success {
            Status::Ok
        } else {
            error_status()
        },
        instrumentation_scope: scope.clone(),
    };

    let mut spans = vec![root];
    if let (Some(http), Some(client_id)) = (&outcome.http, client_id) {
        let exchange = http.phases.sum();
        let client_end = if exchange > Duration::ZERO && exchange <= outcome.duration {
            start + exchange
        } else {
            end
        };
        let (name, attributes) = http_client_attributes(outcome.success, outcome.reason, http);
        spans.push(SpanData {
            span_context: context(client_id),
            parent_span_id: root_id,
            parent_span_is_remote: false,
            span_kind: SpanKind::Client,
            name,
            start_time: start,
            end_time: client_end,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            // Semantic conventions leave a successful client span unset.
            status: if outcome.success {
                Status::Unset
            } else {
                error_status()
            },
            instrumentation_scope: scope.clone(),
        });
    }
    // One client span per flow step that sent a request, with the span id
    // its `traceparent` carried.
    for step in &outcome.steps {
        let (Some(http), Ok(id)) = (&step.http, SpanId::from_hex(&step.span_id)) else {
            continue;
        };
        if id == SpanId::INVALID {
            continue;
        }
        let (name, mut attributes) = http_client_attributes(step.success, step.reason, http);
        attributes.push(KeyValue::new("synthmon.step", step.name.clone()));
        attributes.push(KeyValue::new(
            "synthmon.step.attempts",
            i64::from(step.attempts),
        ));
        spans.push(SpanData {
            span_context: context(id),
            parent_span_id: root_id,
            parent_span_is_remote: false,
            span_kind: SpanKind::Client,
            name,
            start_time: start + step.offset,
            end_time: start + step.offset + step.duration,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: if step.success {
                Status::Unset
            } else {
                Status::error(step.error.clone().unwrap_or_else(|| "failed".to_owned()))
            },
            instrumentation_scope: scope.clone(),
        });
    }
    Some(spans)
}

/// A random span id, never invalid and never `avoid`.
fn fresh_span_id(avoid: Option<SpanId>) -> SpanId {
    let mut rng = rand::rng();
    loop {
        let id = SpanId::from_bytes(rng.random::<[u8; 8]>());
        if id != SpanId::INVALID && Some(id) != avoid {
            return id;
        }
    }
}

const KNOWN_METHODS: &[&str] = &[
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE",
];

const PHASE_KEYS: [&str; 5] = [
    "synthmon.http.phase.resolve",
    "synthmon.http.phase.connect",
    "synthmon.http.phase.tls",
    "synthmon.http.phase.processing",
    "synthmon.http.phase.transfer",
];

/// The client span's name and attributes, per the OpenTelemetry HTTP client
/// semantic conventions plus synthmon's own.
fn http_client_attributes(
    success: bool,
    reason: Option<crate::outcome::FailureReason>,
    http: &HttpFacts,
) -> (Cow<'static, str>, Vec<KeyValue>) {
    let mut attributes = Vec::with_capacity(16);
    let method = http.method.to_ascii_uppercase();
    let name = if KNOWN_METHODS.contains(&method.as_str()) {
        attributes.push(KeyValue::new("http.request.method", method.clone()));
        Cow::Owned(method)
    } else {
        attributes.push(KeyValue::new("http.request.method", "_OTHER"));
        attributes.push(KeyValue::new(
            "http.request.method_original",
            http.method.clone(),
        ));
        Cow::Borrowed("HTTP")
    };
    match url::Url::parse(&http.url) {
        Ok(url) => {
            if let Some(host) = url.host_str() {
                attributes.push(KeyValue::new("server.address", host.to_owned()));
            }
            if let Some(port) = url.port_or_known_default() {
                attributes.push(KeyValue::new("server.port", i64::from(port)));
            }
            attributes.push(KeyValue::new("url.scheme", url.scheme().to_owned()));
            attributes.push(KeyValue::new("url.full", sanitized_url(url)));
        }
        Err(_) => attributes.push(KeyValue::new("url.full", http.url.clone())),
    }
    if let Some(status) = http.status {
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
    }
    attributes.push(KeyValue::new("user_agent.synthetic.type", "test"));
    if !success {
        let kind = reason.map_or("_OTHER", |r| r.as_str());
        attributes.push(KeyValue::new("error.type", kind));
    }
    attributes.push(KeyValue::new(
        "synthmon.http.redirects",
        i64::from(http.redirects),
    ));
    for (key, (_, d)) in PHASE_KEYS.iter().zip(http.phases.named()) {
        attributes.push(KeyValue::new(*key, d.as_secs_f64()));
    }
    (name, attributes)
}

/// Query keys whose values the semantic conventions say to redact in
/// `url.full`.
const SENSITIVE_QUERY_KEYS: &[&str] = &["AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature"];

/// `url.full` per the semantic conventions: user info replaced by
/// `REDACTED`, as are the values of known signature query parameters.
/// (Configured secrets were already masked by the probe runner.)
fn sanitized_url(mut url: url::Url) -> String {
    if !url.username().is_empty() || url.password().is_some() {
        let _ = url.set_username("REDACTED");
        let _ = url.set_password(Some("REDACTED"));
    }
    let sensitive = url
        .query_pairs()
        .any(|(k, _)| SENSITIVE_QUERY_KEYS.contains(&k.as_ref()));
    if sensitive {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if SENSITIVE_QUERY_KEYS.contains(&k.as_ref()) {
                    "REDACTED".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn config() -> TelemetryConfig {
        TelemetryConfig {
            otlp_timeout: DEFAULT_OTLP_TIMEOUT,
            queue_size: 16,
            ..Default::default()
        }
    }

    fn resolve(config: &TelemetryConfig, env: &[(&str, &str)]) -> Option<Settings> {
        Settings::resolve(config, &Resource::default(), &env_of(env)).unwrap_or_else(|e| {
            panic!("settings do not resolve: {e}");
        })
    }

    #[test]
    fn pairs_are_trimmed_and_percent_decoded() {
        assert_eq!(
            parse_pairs(" a = 1 ,b=x%20y%2Cz,,novalue,=skip,c=%zz%"),
            vec![
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "x y,z".to_owned()),
                ("c".to_owned(), "%zz%".to_owned()),
            ]
        );
    }

    #[test]
    fn http_endpoints_get_the_traces_path_unless_signal_specific() {
        let mut c = config();
        c.otlp_endpoint = Some("http://collector:4318".into());
        c.otlp_protocol = OtlpProtocol::HttpProtobuf;
        let s = resolve(&c, &[]).unwrap_or_else(|| panic!("no settings"));
        assert_eq!(s.endpoint, "http://collector:4318/v1/traces");

        let s = resolve(
            &config(),
            &[
                (ENDPOINT, "https://otel.example/base/"),
                (PROTOCOL, "http/protobuf"),
            ],
        )
        .unwrap_or_else(|| panic!("no settings"));
        assert_eq!(s.endpoint, "https://otel.example/base/v1/traces");
        assert_eq!(s.endpoint_for_logs, "https://otel.example/base/v1/traces");

        let s = resolve(
            &config(),
            &[
                (TRACES_ENDPOINT, "http://c:9999/custom"),
                (ENDPOINT, "http://ignored:1"),
                (TRACES_PROTOCOL, "http/protobuf"),
            ],
        )
        .unwrap_or_else(|| panic!("no settings"));
        assert_eq!(s.endpoint, "http://c:9999/custom");
    }

    #[test]
    fn config_wins_over_the_environment() {
        let mut c = config();
        c.otlp_endpoint = Some("http://from-config:4317".into());
        c.otlp_headers = vec![("authorization".into(), "config".into())];
        c.otlp_timeout = Duration::from_secs(2);
        let s = resolve(
            &c,
            &[
                (ENDPOINT, "http://from-env:4318"),
                (PROTOCOL, "http/protobuf"),
                (HEADERS, "Authorization=env,x-extra=1"),
                (TIMEOUT, "100"),
            ],
        )
        .unwrap_or_else(|| panic!("no settings"));
        assert_eq!(s.endpoint, "http://from-config:4317");
        assert_eq!(s.protocol, OtlpProtocol::Grpc);
        assert_eq!(s.timeout, Duration::from_secs(2));
        assert_eq!(s.headers["authorization"], "config");
        assert_eq!(s.headers["x-extra"], "1");
    }

    #[test]
    fn environment_fills_what_the_config_leaves_unset() {
        let s = resolve(
            &config(),
            &[
                (ENDPOINT, "http://from-env:4318"),
                (PROTOCOL, "http/protobuf"),
                (TRACES_HEADERS, "a=1"),
                (HEADERS, "b=2"),
                (TRACES_TIMEOUT, "250"),
            ],
        )
        .unwrap_or_else(|| panic!("no settings"));
        assert_eq!(s.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(s.timeout, Duration::from_millis(250));
        assert_eq!(
            s.headers.len(),
            1,
            "signal-specific headers replace the generic ones"
        );
        assert!(resolve(&config(), &[]).is_none());
        let bad = Settings::resolve(
            &config(),
            &Resource::default(),
            &env_of(&[(ENDPOINT, "http://c:4318"), (PROTOCOL, "http/json")]),
        );
        assert!(bad.is_err());
    }

    #[test]
    fn url_full_hides_user_info_and_signatures() {
        let url = url::Url::parse("https://u:p@h.example/x?a=1&sig=abc")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            sanitized_url(url),
            "https://REDACTED:REDACTED@h.example/x?a=1&sig=REDACTED"
        );
    }
}
