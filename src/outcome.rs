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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
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
    /// DNS: the server answered with an rcode other than the expected one
    /// (NXDOMAIN, SERVFAIL, REFUSED, …).
    Rcode,
    /// TLS: a certificate of the chain has expired (or is not yet valid).
    CertExpired,
    /// TLS: the certificate does not name the host.
    CertHostname,
    /// TLS: the chain does not lead to a trusted root.
    CertUntrusted,
    /// gRPC: the health service answered NOT_SERVING / SERVICE_UNKNOWN.
    NotServing,
    /// gRPC: the call ended with a non-OK gRPC status.
    Grpc,
    /// Stream: no event or byte arrived within the allowed gap.
    StreamStalled,
    /// Flow: a step's `until` condition did not hold before its deadline.
    Until,
    /// Flow: every main step passed but a teardown step failed.
    Teardown,
    /// The run was cut short by a shutdown.
    Cancelled,
    /// Command: the program could not be started.
    Exec,
    /// Command: the program exited non-zero or was killed by a signal.
    Exit,
    /// The peer closed the connection (a clean close, FIN) before the run
    /// was done: without a response, in the middle of one (its head cut
    /// short, fewer body bytes than announced), a long-lived connection
    /// early, or with an abnormal close code.
    Closed,
    /// The peer reset the connection (TCP RST) once it was established:
    /// before its response, or in the middle of it.
    Reset,
    /// synthmon itself ran out of a local resource (file descriptors:
    /// `RLIMIT_NOFILE`), not a verdict on the target.
    Resource,
    /// The host does not let synthmon do what the probe needs (the kernel
    /// forbids unprivileged ICMP: `net.ipv4.ping_group_range`), not a
    /// verdict on the target.
    Permission,
    /// The configured HTTP proxy failed: it could not be reached (not
    /// resolved, refused, unreachable), or it answered `CONNECT` with a
    /// status other than 2xx (`407` when it wants credentials). The target
    /// itself was not reached, so no verdict on it.
    Proxy,
    /// Getting the credentials the request carries failed: the OAuth2
    /// token endpoint refused the client, answered without a usable token,
    /// or could not be reached. The target itself was not asked.
    Auth,
    /// The monitor's own network was down when the run failed: every
    /// connectivity self-check target failed too (`[daemon] self_check`),
    /// so the failure says nothing about the target. Set by the daemon
    /// after the run, never by a kind.
    MonitorOffline,
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
            FailureReason::Rcode => "rcode",
            FailureReason::CertExpired => "cert_expired",
            FailureReason::CertHostname => "cert_hostname",
            FailureReason::CertUntrusted => "cert_untrusted",
            FailureReason::NotServing => "not_serving",
            FailureReason::Grpc => "grpc",
            FailureReason::StreamStalled => "stream_stalled",
            FailureReason::Until => "until",
            FailureReason::Teardown => "teardown",
            FailureReason::Cancelled => "cancelled",
            FailureReason::Exec => "exec",
            FailureReason::Exit => "exit",
            FailureReason::Closed => "closed",
            FailureReason::Reset => "connection_reset",
            FailureReason::Resource => "resource",
            FailureReason::Permission => "permission",
            FailureReason::Proxy => "proxy",
            FailureReason::Auth => "auth",
            FailureReason::MonitorOffline => "monitor_offline",
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
    /// From the request's first byte being written to the first response
    /// byte: the server's think time and the round trip. On a new
    /// HTTP/1.1 connection the client's own work before that write goes
    /// to the phase before (connect or tls); on a kept connection, and
    /// over HTTP/2, processing starts when the request is handed over.
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

pub use crate::diag::SourceLocation;

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
    /// The run's span id, always an exported span: for a run of one HTTP
    /// exchange, its client span (sent as the parent in `traceparent`, so
    /// the target's server span becomes its child); otherwise the root span
    /// (a flow's steps report their own).
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
    /// Phase timings of the kinds other than `http` (which reports them in
    /// `http.phases`), in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<Phase>,
    /// What a `tcp`, `dns`, `tls`, `grpc` or `stream` run saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Details>,
    /// A `flow`'s steps in the order they ran (setup, steps, teardown).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepOutcome>,
    /// A workload's totals; its per-request samples feed the histograms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadFacts>,
    /// The target answered, so `duration` is a latency sample (a refused
    /// connection is an error, not a fast request).
    #[serde(skip)]
    pub responded: bool,
    pub assertions: Vec<AssertionResult>,
    /// Threshold states after this run; filled in by the measurement stage.
    pub thresholds: Vec<ThresholdResult>,
    /// Latency percentiles of the pair over its window (over this
    /// invocation's samples in `--once`); filled in by the measurement stage.
    pub latency: Option<LatencySummary>,
    /// What this run keeps for the next one (`keep = { NAME = "expr" }`,
    /// and a kind's own entries such as `stream.last_id`): whoever runs
    /// the pair again passes it back as `RunContext::prev`. JSON values,
    /// each at most `probe::kind::MAX_KEPT_BYTES`, secrets scrubbed.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub kept: std::collections::BTreeMap<String, serde_json::Value>,
    /// When the schedule meant the run to start (Unix milliseconds); set
    /// by the daemon's scheduler, `None` for runs started by hand.
    #[serde(skip)]
    pub intended_ms: Option<i64>,
    /// What a person needs to debug a failed `http` or `flow` run (the
    /// exchange, a flow's steps); `None` for a run that passed and for the
    /// other kinds, whose facts above are all there is. Redacted like the
    /// rest of the outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Box<Artifact>>,
    /// How many times the whole run was tried: 1, or more when the probe
    /// has `retries` and earlier tries failed (`probe::retry`). Not a flow
    /// step's `attempts`, which counts one step's polling requests.
    pub attempts: u32,
    /// The run passed only after a retry: a pass, but not a plain one
    /// (`synthmon_probe_flaky_total`, every report says so).
    pub flaky: bool,
    /// The failed tries before the last one, oldest first: at most
    /// `probe::retry::MAX_ATTEMPTS`. Everything else in the outcome is the
    /// last try's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retried: Vec<RetriedAttempt>,
}

/// A failed try of a run that was tried again (`retries`), as its own
/// outcome said it: copied from that outcome, redacted already.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RetriedAttempt {
    /// Which try it was, from 1.
    pub attempt: u32,
    pub reason: Option<FailureReason>,
    pub error: Option<String>,
    #[serde(serialize_with = "ser_secs")]
    pub duration: Duration,
    /// Wall-clock start, RFC 3339.
    pub started_at: String,
    /// The HTTP status it got, when it got one.
    pub status: Option<u16>,
    /// Its own ids: each try is a run of its own for the target's traces.
    pub run_id: String,
    pub trace_id: String,
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
    /// A failed outcome with nothing measured yet; a runner fills it in.
    pub fn new(
        probe: &str,
        environment: &str,
        kind: &'static str,
        ids: &crate::tagging::RunIds,
    ) -> Outcome {
        Outcome {
            probe: probe.to_owned(),
            environment: environment.to_owned(),
            kind,
            run_id: ids.run_id.clone(),
            trace_id: ids.trace_id.clone(),
            span_id: ids.span_id.clone(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            success: false,
            reason: None,
            error: None,
            duration: Duration::ZERO,
            http: None,
            phases: Vec::new(),
            details: None,
            steps: Vec::new(),
            workload: None,
            responded: false,
            assertions: Vec::new(),
            thresholds: Vec::new(),
            latency: None,
            kept: std::collections::BTreeMap::new(),
            intended_ms: None,
            artifact: None,
            attempts: 1,
            flaky: false,
            retried: Vec::new(),
        }
    }

    /// Marks the run failed with `reason` and a human `message`, keeping the
    /// first reason when one is already set.
    pub fn fail(&mut self, reason: FailureReason, message: impl Into<String>) {
        self.success = false;
        if self.reason.is_none() {
            self.reason = Some(reason);
            self.error = Some(message.into());
        }
    }

    /// Earliest `notAfter` (Unix seconds) of the certificates the peer
    /// showed, whatever the kind.
    pub fn cert_expiry(&self) -> Option<i64> {
        self.http
            .as_ref()
            .and_then(|h| h.tls_earliest_cert_expiry)
            .or_else(|| self.details.as_ref().and_then(Details::cert_expiry))
    }

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
    /// The body's size: decoded, for a response that arrived whole; for a
    /// failed exchange, the raw bytes that arrived before it failed (a body
    /// cut by a reset, a close or the deadline, or over its cap).
    pub body_bytes: u64,
    pub tls: bool,
    /// Earliest `notAfter` of the server's certificates, Unix seconds.
    pub tls_earliest_cert_expiry: Option<i64>,
    /// The HTTP version of the final response (`"1.1"`, `"2"`), or of the
    /// failing hop's connection once it was known; `null` when no
    /// connection got that far.
    pub version: Option<&'static str>,
}

/// One named phase of a run of a kind other than `http`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Phase {
    pub name: &'static str,
    #[serde(serialize_with = "ser_secs")]
    pub seconds: Duration,
}

/// What a kind saw, beyond the common fields: a kind implements this for
/// its own facts type (defined in its file), so reporters and `/metrics`
/// handle every kind alike. Serializing (for JSON reports) and downcasting
/// (for tests and kind-specific callers) come from [`FactsData`].
pub trait KindFacts: std::fmt::Debug + Send + Sync + FactsData {
    /// Per-kind gauges in blackbox_exporter's names where it has one, e.g.
    /// `probe_dns_answer_rrs`; each is labelled with probe and environment.
    fn gauges(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }

    /// Earliest `notAfter` (Unix seconds) of the certificates the peer
    /// showed, for kinds that shook hands.
    fn cert_expiry(&self) -> Option<i64> {
        None
    }

    /// The latencies a run measured of its own exchanges, one each (a
    /// ping's round trips): thresholds' latency metrics and the duration
    /// histogram take these instead of the run's duration, which for such
    /// a kind is mostly its own pacing. `None`: the run's duration is its
    /// latency.
    fn latencies(&self) -> Option<Vec<Duration>> {
        None
    }

    /// Packets sent and lost, for kinds that count packets (`ping`): the
    /// `loss` threshold metric reads them.
    fn packets(&self) -> Option<(u64, u64)> {
        None
    }
}

/// A gauge a kind exports, declared with its kind so `/metrics` can give
/// every series its help text before the first run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GaugeSpec {
    pub name: &'static str,
    /// The value is in seconds (Prometheus' base unit).
    pub seconds: bool,
    pub help: &'static str,
}

/// The data side of [`KindFacts`], implemented for every serializable type.
pub trait FactsData: std::any::Any {
    fn to_json(&self) -> serde_json::Value;
    fn as_any(&self) -> &dyn std::any::Any;
}

impl<T: Serialize + std::any::Any> FactsData for T {
    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The kind-specific facts of a run, next to the common fields; serialized
/// as the kind's facts themselves.
#[derive(Clone, Debug)]
pub struct Details(std::sync::Arc<dyn KindFacts>);

impl Details {
    pub fn new<F: KindFacts>(facts: F) -> Details {
        Details(std::sync::Arc::new(facts))
    }

    /// The facts as their kind's own type, if they are of that type.
    pub fn get<F: KindFacts>(&self) -> Option<&F> {
        self.0.as_any().downcast_ref::<F>()
    }

    pub fn gauges(&self) -> Vec<(&'static str, f64)> {
        self.0.gauges()
    }

    pub fn cert_expiry(&self) -> Option<i64> {
        self.0.cert_expiry()
    }

    pub fn latencies(&self) -> Option<Vec<Duration>> {
        self.0.latencies()
    }

    pub fn packets(&self) -> Option<(u64, u64)> {
        self.0.packets()
    }
}

impl Serialize for Details {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.to_json().serialize(s)
    }
}

/// Where a flow step sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Setup,
    Step,
    Teardown,
}

/// One HTTP step of a flow.
#[derive(Clone, Debug, Serialize)]
pub struct StepOutcome {
    pub name: String,
    pub stage: Stage,
    pub success: bool,
    pub reason: Option<FailureReason>,
    pub error: Option<String>,
    #[serde(serialize_with = "ser_secs")]
    pub duration: Duration,
    /// Requests sent: more than one when the step polls with `until`.
    pub attempts: u32,
    pub http: Option<HttpFacts>,
    pub assertions: Vec<AssertionResult>,
    /// Names of the variables this step captured (values stay out of
    /// reports: they may be tokens).
    pub captured: Vec<String>,
    /// The span id of this step's client span, sent in the `traceparent`
    /// of each of its requests; empty for a step that did not run.
    pub span_id: String,
    #[serde(skip)]
    pub responded: bool,
    /// When the step started, from the start of the run.
    #[serde(skip)]
    pub offset: Duration,
}

impl StepOutcome {
    /// A step that has not run yet (or will not).
    pub fn new(name: &str, stage: Stage) -> StepOutcome {
        StepOutcome {
            name: name.to_owned(),
            stage,
            success: false,
            reason: None,
            error: None,
            duration: Duration::ZERO,
            attempts: 0,
            http: None,
            assertions: Vec::new(),
            captured: Vec::new(),
            span_id: String::new(),
            responded: false,
            offset: Duration::ZERO,
        }
    }
}

/// The debugging record of a failed run: the request sent and the
/// response that came back (an `http` run), or a flow's steps. Kept only
/// when the run failed, so a passing run costs nothing to store.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Artifact {
    /// The exchange of an `http` run; `None` when no request was built.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exchange: Option<Exchange>,
    /// A flow's steps that ran, in order: each one's captures and, for a
    /// step that failed, its exchange.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepArtifact>,
}

/// One flow step in an [`Artifact`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepArtifact {
    pub name: String,
    pub stage: Stage,
    pub success: bool,
    /// What the step captured: names, with each value masked (a captured
    /// value may be a token).
    pub captures: Vec<MaskedCapture>,
    /// The step's (last) exchange, when the step failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exchange: Option<Exchange>,
}

/// A captured variable with its value masked: its JSON type and size say
/// whether the capture got what was meant (an id, not an empty string)
/// without showing it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MaskedCapture {
    pub name: String,
    /// Always `***`.
    pub value: &'static str,
    /// `string`, `number`, `bool`, `array`, `object` or `null`.
    #[serde(rename = "type")]
    pub json_type: &'static str,
    /// Characters of a string; otherwise the length of the value as JSON.
    pub length: usize,
}

/// One HTTP exchange as a person debugging it needs it. Header values are
/// redacted (credentials always: see `probe::artifact`); bodies are cut at
/// [`EXCERPT_BYTES`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Exchange {
    pub request: ExchangeRequest,
    /// `None` when no response head arrived (refused, timed out, reset);
    /// the outcome's `http` facts and error say what happened instead.
    pub response: Option<ExchangeResponse>,
}

/// The request of an [`Exchange`], as the first hop sent it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExchangeRequest {
    pub method: String,
    pub url: String,
    /// `[name, value]` pairs in the order they were set.
    pub headers: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<BodyExcerpt>,
}

/// The (last) response of an [`Exchange`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExchangeResponse {
    pub status: u16,
    /// The URL that answered, after redirects.
    pub url: String,
    /// `[name, value]` pairs as the server sent them.
    pub headers: Vec<(String, String)>,
    pub body: BodyExcerpt,
}

/// How much of a body an [`Exchange`] keeps.
pub const EXCERPT_BYTES: usize = 64 * 1024;

/// The first [`EXCERPT_BYTES`] of a body.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BodyExcerpt {
    /// The whole body's size in bytes (decoded).
    pub bytes: u64,
    /// `text` (the bytes are UTF-8) or `base64` (any other bytes).
    pub encoding: &'static str,
    pub data: String,
    /// The body was longer than the excerpt.
    pub truncated: bool,
}

/// What a workload did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkloadFacts {
    /// Requests scheduled by the arrival rate.
    pub scheduled: u64,
    /// Sent (scheduled minus dropped).
    pub sent: u64,
    /// Not sent because the concurrency cap was reached at their time.
    /// Counted by `dropped_rate` (dropped ÷ sent + dropped), never by
    /// `error_rate`.
    pub dropped: u64,
    /// Of `dropped`, those that came due while the sender itself ran
    /// behind schedule (this machine could not keep up); the others met a
    /// full cap on time (the target held every slot).
    pub dropped_behind: u64,
    /// The in-flight cap the run kept (`max_concurrency`).
    pub max_concurrency: u64,
    /// How far behind the intended send time the sender reached a request,
    /// at worst.
    #[serde(serialize_with = "ser_secs")]
    pub max_lag: Duration,
    /// Regular requests that passed every expectation.
    pub ok: u64,
    /// Regular requests that failed (counted against the target).
    pub failed: u64,
    /// Failures by reason.
    pub failures: std::collections::BTreeMap<String, u64>,
    /// Achieved send rate, per second, over the send period.
    pub rate: f64,
    pub anomalies: AnomalyFacts,
    /// Connections opened, with `keep_alive = true` (`None` otherwise:
    /// then every request opened its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<u64>,
    /// The threads the run's requests were sent from: 1, or up to one per
    /// CPU for an `http` workload fast enough to need them.
    pub threads: u64,
    /// The latencies of the regular requests (anomalies excluded) that got
    /// an answer or ran out of time, streamed into a bounded record: fed
    /// to the rolling windows and histograms; never serialized.
    #[serde(skip)]
    pub latencies: Latencies,
    /// The service times of the same requests: from each request's first
    /// byte being written to its response's last byte (processing +
    /// transfer; no connect, tls, or time the sender spent behind its
    /// intended send time), as wrk and other closed-loop tools time a
    /// request. Informative: `latencies`, from the intended send time, is
    /// what thresholds judge. Serialized as its percentiles (`service`:
    /// `samples`, `p50`, `p90`, `p99`, `max`, in seconds), `null` for a
    /// flow or when none was timed.
    #[serde(rename = "service", serialize_with = "ser_service")]
    pub service: Latencies,
}

/// A workload's service times as its JSON report shows them.
fn ser_service<S: serde::Serializer>(l: &Latencies, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let (Some(p50), Some(p90), Some(p99), Some(max)) = (
        l.percentile(50.0),
        l.percentile(90.0),
        l.percentile(99.0),
        l.percentile(100.0),
    ) else {
        return s.serialize_none();
    };
    let mut map = s.serialize_map(Some(5))?;
    map.serialize_entry("samples", &l.len())?;
    for (name, d) in [("p50", p50), ("p90", p90), ("p99", p99), ("max", max)] {
        map.serialize_entry(name, &d.as_secs_f64())?;
    }
    map.end()
}

/// The lowest latency a histogram holds, in microseconds.
pub const LATENCY_LOW_US: u64 = 1;
/// The highest latency a histogram holds (1 h), in microseconds.
pub const LATENCY_HIGH_US: u64 = 3_600_000_000;
/// Significant digits a latency histogram keeps: within 1 %.
pub const LATENCY_SIGFIG: u8 = 2;
/// Latencies a [`Latencies`] keeps exactly before it switches to a
/// histogram, like a rolling window's sub-window.
pub const EXACT_LATENCIES: usize = 1024;

/// An empty latency histogram: 1 µs to 1 h, two significant digits,
/// 3,328 `u32` counters (~13 KB). Every latency histogram of synthmon has
/// this shape, so one merges into another without losing precision.
pub fn latency_histogram() -> Option<hdrhistogram::Histogram<u32>> {
    hdrhistogram::Histogram::new_with_bounds(LATENCY_LOW_US, LATENCY_HIGH_US, LATENCY_SIGFIG).ok()
}

/// A latency as a histogram records it: whole microseconds, at least 1,
/// saturating at `u32::MAX` (71 minutes, beyond any timeout).
pub fn latency_us(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX).max(1)
}

/// A stream of latencies in bounded memory: the first
/// [`EXACT_LATENCIES`] exactly, then an HDR histogram (within 1 %), so a
/// million-request workload holds ~13 KB rather than a sample each.
#[derive(Clone, Debug, Default)]
pub struct Latencies {
    /// Microseconds, in arrival order, while there are few.
    exact: Vec<u32>,
    hist: Option<Box<hdrhistogram::Histogram<u32>>>,
}

impl Latencies {
    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        self.record_us(latency_us(d), 1);
    }

    /// Records `count` latencies of `us` microseconds.
    fn record_us(&mut self, us: u32, count: u64) {
        let n = u32::try_from(count).unwrap_or(u32::MAX);
        if let Some(h) = &mut self.hist {
            h.saturating_record_n(u64::from(us), n);
            return;
        }
        let fits = usize::try_from(count)
            .is_ok_and(|count| self.exact.len().saturating_add(count) <= EXACT_LATENCIES);
        if fits {
            self.exact.extend(std::iter::repeat_n(us, n as usize));
            return;
        }
        let Some(mut h) = latency_histogram() else {
            return;
        };
        for x in self.exact.drain(..) {
            h.saturating_record(u64::from(x));
        }
        self.exact = Vec::new();
        h.saturating_record_n(u64::from(us), n);
        self.hist = Some(Box::new(h));
    }

    /// Records `count` latencies of `d` (a stored histogram's bucket).
    pub fn record_n(&mut self, d: Duration, count: u64) {
        self.record_us(latency_us(d), count);
    }

    /// Adds every latency of `other` (a worker's record into the run's).
    pub fn merge(&mut self, other: &Latencies) {
        for (d, count) in other.iter() {
            self.record_us(latency_us(d), count);
        }
    }

    /// How many latencies were recorded.
    pub fn len(&self) -> u64 {
        match &self.hist {
            Some(h) => h.len(),
            None => self.exact.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The latencies as (value, how many): each exact one once, or the
    /// histogram's buckets at their highest value (so a percentile read
    /// from them errs above, never below, like the windows').
    pub fn iter(&self) -> impl Iterator<Item = (Duration, u64)> + '_ {
        let exact = self
            .exact
            .iter()
            .map(|us| (Duration::from_micros(u64::from(*us)), 1));
        let hist = self.hist.iter().flat_map(|h| {
            h.iter_recorded().map(|v| {
                (
                    Duration::from_micros(v.value_iterated_to()),
                    u64::from(v.count_at_value()),
                )
            })
        });
        exact.chain(hist)
    }

    /// The nearest-rank percentile `p` (0–100): exact while few, within
    /// 1 % above beyond.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        let n = self.len();
        if n == 0 {
            return None;
        }
        let rank = ((p / 100.0) * n as f64).ceil().clamp(1.0, n as f64) as u64;
        if self.hist.is_none() {
            let mut sorted = self.exact.clone();
            sorted.sort_unstable();
            let us = sorted.get(usize::try_from(rank - 1).ok()?)?;
            return Some(Duration::from_micros(u64::from(*us)));
        }
        let mut seen = 0;
        self.iter().find_map(|(d, count)| {
            seen += count;
            (seen >= rank).then_some(d)
        })
    }

    /// Heap bytes held: bounded whatever the number of latencies.
    pub fn heap_bytes(&self) -> usize {
        self.exact.capacity() * std::mem::size_of::<u32>()
            + self.hist.as_ref().map_or(0, |h| {
                std::mem::size_of::<hdrhistogram::Histogram<u32>>()
                    + h.distinct_values() * std::mem::size_of::<u32>()
            })
    }
}

/// Injected anomalies and how the target treated them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AnomalyFacts {
    pub sent: u64,
    /// Rejected the way the anomaly expectations say.
    pub rejected: u64,
    /// Accepted, or answered otherwise than expected.
    pub unexpected: u64,
    /// Sent per mutation kind.
    pub by_mutation: std::collections::BTreeMap<String, u64>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_million_latencies_fit_one_histogram_within_one_percent() {
        let mut l = Latencies::default();
        // 1 ms to 1 s, evenly: the true p50 is 500 ms, p99 990 ms.
        for n in 1..=1_000_000u64 {
            l.record(Duration::from_micros(n));
        }
        assert_eq!(l.len(), 1_000_000);
        let heap = l.heap_bytes();
        assert!(heap < 16 * 1024, "{heap} bytes for a million latencies");
        for (p, truth) in [(50.0, 0.5), (99.0, 0.99), (100.0, 1.0)] {
            let got = l.percentile(p).unwrap().as_secs_f64();
            assert!(
                got >= truth && got <= truth * 1.01,
                "p{p}: {got} vs {truth}"
            );
        }
        // The buckets handed to the windows add up to every latency.
        assert_eq!(l.iter().map(|(_, n)| n).sum::<u64>(), 1_000_000);
    }

    #[test]
    fn few_latencies_stay_exact_and_merge() {
        let mut a = Latencies::default();
        for ms in [30, 10, 20] {
            a.record(Duration::from_millis(ms));
        }
        assert_eq!(a.percentile(50.0), Some(Duration::from_millis(20)));
        assert_eq!(a.percentile(100.0), Some(Duration::from_millis(30)));
        assert_eq!(Latencies::default().percentile(50.0), None);
        let mut b = Latencies::default();
        for _ in 0..EXACT_LATENCIES {
            b.record(Duration::from_millis(1));
        }
        assert!(b.hist.is_none(), "1,024 are kept exactly");
        b.merge(&a);
        assert_eq!(b.len(), EXACT_LATENCIES as u64 + 3);
        assert!(b.hist.is_some(), "beyond, a histogram holds them");
        let max = b.percentile(100.0).unwrap().as_secs_f64();
        assert!((0.030..=0.0303).contains(&max), "{max}");
    }
}
