//! OTLP trace export: one trace per probe run, sent to a collector over gRPC
//! or HTTP/protobuf.
//!
//! **Spans are built after the run, from its
//! [`Outcome`](crate::outcome::Outcome).** The probe has already sent the
//! target a `traceparent` carrying the run's trace id and the id of its HTTP
//! client span, so the target's server span is a child of that id. Creating
//! spans through the SDK's `Tracer` would invent new span ids and break that
//! link; instead [`TraceExporter::record`] builds
//! [`SpanData`](opentelemetry_sdk::trace::SpanData) values itself: a root
//! span `probe <name>` and, for an HTTP run, a client span under it whose
//! id is exactly `outcome.span_id` (without one, the root takes that id),
//! and a client span per flow step with the step's id. Client spans follow
//! the OpenTelemetry HTTP client semantic conventions; the root and the
//! client spans follow the test conventions (a run is a suite, a request
//! or step a case), and every span carries
//! `user_agent.synthetic.type = "test"` (see `spans`).
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
//!
//! The files, in one direction (`queue` uses `settings` and `spans`; those
//! two use neither):
//!
//! - `settings`: `[telemetry]` and `OTEL_*` precedence → resolved export
//!   settings (endpoint, protocol, headers, timeout, resource); pure.
//! - `spans`: the `SpanData` of one run, with semantic-convention attributes.
//! - `queue`: [`TraceExporter`]: the bounded queue, batching, the export
//!   task and the exporter it drives (gRPC/HTTP, TLS), drop counting.

mod queue;
mod settings;
mod spans;

pub use queue::{BATCH_INTERVAL, MAX_BATCH, SpanCounts, TraceExporter};
pub use settings::Resource;
