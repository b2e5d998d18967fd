//! The result of one probe run: a plain data value that reporters, metrics,
//! traces and alerting only read.
//!
//! A failed probe is an `Outcome` with `success == false`, never an `Err`:
//! `Err` is kept for faults of synthmon itself. An `Outcome` never holds a
//! secret value; the runner redacts it before anyone else sees it.

use serde::Serialize;
use std::time::Duration;

/// Why a run failed. A small closed set, because it becomes a metric label;
/// error text never does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The host name did not resolve.
    Dns,
    /// The target actively refused the TCP connection.
    ConnectRefused,
    /// The deadline passed while resolving or connecting.
    ConnectTimeout,
    /// Any other connect-level failure (unreachable network, reset, …).
    Connect,
    /// The TLS handshake or certificate verification failed.
    Tls,
    /// The deadline passed after the connection was established.
    Timeout,
    /// The status code was outside the implicit 2xx expectation.
    Status,
    /// An `expect` expression did not hold.
    Assertion,
    /// The body, raw or decompressed, exceeded the configured cap.
    BodyTooLarge,
    /// Redirects went past the configured limit.
    TooManyRedirects,
    /// The peer spoke malformed HTTP, or a body failed to decode.
    Protocol,
    /// synthmon could not build the request (a bad runtime value).
    Request,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Dns => "dns",
            FailureReason::ConnectRefused => "connect_refused",
            FailureReason::ConnectTimeout => "connect_timeout",
            FailureReason::Connect => "connect",
            FailureReason::Tls => "tls",
            FailureReason::Timeout => "timeout",
            FailureReason::Status => "status",
            FailureReason::Assertion => "assertion",
            FailureReason::BodyTooLarge => "body_too_large",
            FailureReason::TooManyRedirects => "too_many_redirects",
            FailureReason::Protocol => "protocol",
            FailureReason::Request => "request",
        }
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Phase timings of one HTTP exchange (summed over redirect hops), in the
/// same phases as blackbox_exporter. The phases are contiguous, so they add
/// up to the exchange's total; a phase that does not apply (no DNS for an IP
/// literal, no TLS for plain HTTP) is zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct HttpPhases {
    #[serde(serialize_with = "ser_secs")]
    pub resolve: Duration,
    #[serde(serialize_with = "ser_secs")]
    pub connect: Duration,
    #[serde(serialize_with = "ser_secs")]
    pub tls: Duration,
    /// From the connection being ready to the first response byte: writing
    /// the request and the server's think time.
    #[serde(serialize_with = "ser_secs")]
    pub processing: Duration,
    /// From the first response byte to the last body byte.
    #[serde(serialize_with = "ser_secs")]
    pub transfer: Duration,
}

impl HttpPhases {
    pub fn sum(&self) -> Duration {
        self.resolve + self.connect + self.tls + self.processing + self.transfer
    }

    pub fn add(&mut self, other: &HttpPhases) {
        self.resolve += other.resolve;
        self.connect += other.connect;
        self.tls += other.tls;
        self.processing += other.processing;
        self.transfer += other.transfer;
    }

    /// The phases as (name, duration) pairs, in order.
    pub fn named(&self) -> [(&'static str, Duration); 5] {
        [
            ("resolve", self.resolve),
            ("connect", self.connect),
            ("tls", self.tls),
            ("processing", self.processing),
            ("transfer", self.transfer),
        ]
    }
}

pub(crate) fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Where something was written: a file and a 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourceLocation {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One checked expectation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AssertionResult {
    /// The expression as written, or a description of an implicit check.
    pub expression: String,
    pub passed: bool,
    /// What the operands evaluated to, e.g. `status = 500`; for an
    /// expression that failed to evaluate, the evaluation error.
    pub actual: String,
    pub location: Option<SourceLocation>,
}

/// The result of one run of one (probe, environment) pair.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub probe: String,
    pub environment: String,
    pub kind: &'static str,
    pub run_id: String,
    /// The W3C trace id sent to the target in `traceparent`.
    pub trace_id: String,
    /// The span id sent as the parent in `traceparent`: the id of the HTTP
    /// client span, so the target's server span becomes its child.
    pub span_id: String,
    /// Wall-clock start, RFC 3339.
    pub started_at: String,
    pub success: bool,
    pub reason: Option<FailureReason>,
    /// A human sentence on what went wrong; redacted, never a metric label.
    pub error: Option<String>,
    #[serde(serialize_with = "ser_secs")]
    pub duration: Duration,
    pub http: Option<HttpFacts>,
    pub assertions: Vec<AssertionResult>,
    /// Threshold states after this run; filled in by the measurement stage.
    pub thresholds: Vec<ThresholdResult>,
    /// Latency percentiles of the pair over its window (over this
    /// invocation's samples in `--once`); filled in by the measurement stage.
    pub latency: Option<LatencySummary>,
}

/// Latency percentiles over a window, in seconds (nearest rank).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub window_seconds: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Outcome {
    /// Passed: the run succeeded and no threshold is failing (a degraded
    /// threshold warns but passes).
    pub fn passed(&self) -> bool {
        self.success
            && self
                .thresholds
                .iter()
                .all(|t| t.state != crate::threshold::State::Failing)
    }
}

/// A threshold's state after a run, over its window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ThresholdResult {
    /// The failing condition as written, e.g. `p(99) < 500ms`.
    pub threshold: String,
    pub degraded: Option<String>,
    pub state: crate::threshold::State,
    /// The observed aggregate: seconds for latencies, a ratio for rates.
    pub observed: Option<f64>,
    pub unit: &'static str,
    pub window_seconds: f64,
    /// Runs in the window.
    pub runs: u64,
}

/// What an HTTP run saw.
#[derive(Clone, Debug, Serialize)]
pub struct HttpFacts {
    pub method: String,
    /// The final URL after redirects, secrets redacted.
    pub url: String,
    pub status: Option<u16>,
    pub redirects: u32,
    pub phases: HttpPhases,
    pub body_bytes: u64,
    pub tls: bool,
    /// Earliest `notAfter` of the server's certificates, Unix seconds.
    pub tls_earliest_cert_expiry: Option<i64>,
}
