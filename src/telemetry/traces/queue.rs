//! The bounded export queue: `record` reserves room and `try_send`s, one
//! export task drains the queue into batches and hands each to the
//! `opentelemetry-otlp` exporter (gRPC or HTTP/protobuf) under a timeout,
//! and every span is counted as exported or dropped.

use super::settings::{Resource, Settings};
use super::spans::{span_count, spans};
use crate::config::{OtlpProtocol, TelemetryConfig, TlsOptions};
use crate::outcome::Outcome;
use http::HeaderMap;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The most spans one export call carries.
pub const MAX_BATCH: usize = 512;
/// How long a span may wait in a partial batch before it is exported.
pub const BATCH_INTERVAL: Duration = Duration::from_secs(1);
/// Export failures are logged at most this often.
const WARN_INTERVAL: Duration = Duration::from_secs(60);

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
        let exporter = build_exporter(&settings)?;
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
        let n = span_count(outcome);
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

/// Builds the `opentelemetry-otlp` exporter for `settings`. Must run inside
/// the tokio runtime (tonic sets up its channel lazily there).
fn build_exporter(settings: &Settings) -> Result<opentelemetry_otlp::SpanExporter, String> {
    let built = match settings.protocol {
        OtlpProtocol::Grpc => {
            let mut metadata = Vec::new();
            for (k, v) in &settings.headers {
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
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(settings.timeout)
                .with_interceptor(interceptor);
            if settings.endpoint.starts_with("https:") {
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
                .timeout(settings.timeout)
                .connect_timeout(settings.timeout)
                .build()
                .map_err(|e| format!("cannot build the OTLP HTTP client: {e}"))?;
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(settings.timeout)
                .with_http_client(HeaderClient {
                    inner: client,
                    headers: settings.headers.clone(),
                })
                .build()
        }
    };
    let mut exporter = built.map_err(|e| {
        format!(
            "cannot set up OTLP export to {}: {e}",
            settings.endpoint_for_logs
        )
    })?;
    exporter.set_resource(&settings.resource);
    Ok(exporter)
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
