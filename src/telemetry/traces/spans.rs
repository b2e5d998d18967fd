//! Building the spans of one run from its [`Outcome`]: the root span
//! `probe <name>` (the test suite) and a client span per HTTP exchange or
//! flow step (a test case), whose ids are the ones the probe sent in
//! `traceparent`. Client spans follow the OpenTelemetry HTTP client
//! semantic conventions; every span follows the test conventions and
//! carries `user_agent.synthetic.type = "test"`.
//!
//! **Every id an outcome reports is an exported span.** `Outcome::span_id`
//! is the HTTP client span's id when the run made one exchange (`http`);
//! otherwise (a flow, a workload, a kind that is not HTTP, a request that
//! could not be built) it is the root span's id, so the `traceparent` a
//! gRPC call, a stream or a command carried hangs its target's spans under
//! the run. Each flow step's `span_id` is its client span's id.
//!
//! **Test conventions** (OpenTelemetry semantic conventions, attribute
//! registry, group `test`, added in v1.27.0 by
//! open-telemetry/semantic-conventions#1075, stability "development";
//! <https://opentelemetry.io/docs/specs/semconv/registry/attributes/test/>):
//! `test.suite.name` and `test.suite.run.status` (well-known values
//! `success`, `failure`, `skipped`, `aborted`, `timed_out`, `in_progress`)
//! on the root; `test.case.name` and `test.case.result.status` (`pass`,
//! `fail`) on each client span. A probe run is one suite run named after
//! the probe; a flow step is a case named after the step, the exchange of
//! a single-request probe a case named after the probe. `skipped` and
//! `in_progress` never apply: a span is built once the run is over, and a
//! run that did not start makes no outcome.

use crate::outcome::{FailureReason, HttpFacts, Outcome, StepOutcome};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use rand::Rng;
use std::borrow::Cow;
use std::time::{Duration, SystemTime};

/// `test.suite.name`: the probe.
const TEST_SUITE_NAME: &str = "test.suite.name";
/// `test.suite.run.status`: see [`suite_run_status`].
const TEST_SUITE_RUN_STATUS: &str = "test.suite.run.status";
/// `test.case.name`: the flow step, or the probe of a single request.
const TEST_CASE_NAME: &str = "test.case.name";
/// `test.case.result.status`: `pass` or `fail`.
const TEST_CASE_RESULT_STATUS: &str = "test.case.result.status";

/// The spans of one run: the root span, the client span of an HTTP run and
/// one client span per flow step that ran. `None` when the outcome's trace
/// id is not valid, or its span id is not valid while a client span needs
/// it.
pub(super) fn spans(outcome: &Outcome) -> Option<Vec<SpanData>> {
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
    let reported = valid_span_id(&outcome.span_id);
    let steps: Vec<(&StepOutcome, SpanId)> = outcome
        .steps
        .iter()
        .filter_map(|s| Some((s, valid_span_id(&s.span_id)?)))
        .collect();
    let mut taken: Vec<SpanId> = steps.iter().map(|(_, id)| *id).collect();
    // The reported id names the client span of an HTTP run, else the root.
    let (root_id, client_id) = match (&outcome.http, reported) {
        (Some(_), None) => return None,
        (Some(_), Some(client)) => {
            taken.push(client);
            (fresh_span_id(&taken), Some(client))
        }
        (None, Some(root)) => (root, None),
        (None, None) => (fresh_span_id(&taken), None),
    };
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
    let span = |id, parent, kind, name, (start_time, end_time), attributes, status| SpanData {
        span_context: context(id),
        parent_span_id: parent,
        parent_span_is_remote: false,
        span_kind: kind,
        name,
        start_time,
        end_time,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
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
        KeyValue::new(TEST_SUITE_NAME, outcome.probe.clone()),
        KeyValue::new(TEST_SUITE_RUN_STATUS, suite_run_status(outcome)),
        synthetic(),
        // Tries of the whole run (`retries`); the spans are the last try's.
        KeyValue::new("synthmon.attempts", i64::from(outcome.attempts)),
    ];
    if outcome.flaky {
        root_attributes.push(KeyValue::new("synthmon.flaky", true));
        if let Some(reason) = outcome.retried.first().and_then(|a| a.reason) {
            root_attributes.push(KeyValue::new(
                "synthmon.first_attempt.failure_reason",
                reason.as_str(),
            ));
        }
    }
    if !outcome.success {
        if let Some(reason) = outcome.reason {
            root_attributes.push(KeyValue::new("synthmon.failure_reason", reason.as_str()));
        }
    }
    let mut spans = vec![span(
        root_id,
        SpanId::INVALID,
        SpanKind::Internal,
        Cow::Owned(format!("probe {}", outcome.probe)),
        (start, end),
        root_attributes,
        if outcome.success {
            Status::Ok
        } else {
            error_status()
        },
    )];

    if let (Some(http), Some(client_id)) = (&outcome.http, client_id) {
        let exchange = http.phases.sum();
        let client_end = if exchange > Duration::ZERO && exchange <= outcome.duration {
            start + exchange
        } else {
            end
        };
        let (name, mut attributes) = http_client_attributes(outcome.success, outcome.reason, http);
        attributes.extend(test_case(&outcome.probe, outcome.success));
        spans.push(span(
            client_id,
            root_id,
            SpanKind::Client,
            name,
            (start, client_end),
            attributes,
            // Semantic conventions leave a successful client span unset.
            if outcome.success {
                Status::Unset
            } else {
                error_status()
            },
        ));
    }
    // One client span per flow step that ran, with the span id its
    // `traceparent` carried (every `until` attempt carries the same one).
    // A step whose request could not be built has no HTTP facts: its span
    // says only which case failed and why.
    for (step, id) in steps {
        let (name, mut attributes) = match &step.http {
            Some(http) => http_client_attributes(step.success, step.reason, http),
            None => (
                Cow::Borrowed("HTTP"),
                base_attributes(step.success, step.reason),
            ),
        };
        attributes.extend(test_case(&step.name, step.success));
        attributes.push(KeyValue::new("synthmon.step", step.name.clone()));
        attributes.push(KeyValue::new(
            "synthmon.step.attempts",
            i64::from(step.attempts),
        ));
        spans.push(span(
            id,
            root_id,
            SpanKind::Client,
            name,
            (start + step.offset, start + step.offset + step.duration),
            attributes,
            if step.success {
                Status::Unset
            } else {
                Status::error(step.error.clone().unwrap_or_else(|| "failed".to_owned()))
            },
        ));
    }
    Some(spans)
}

/// How many spans [`spans`] builds for `outcome` (when it builds any),
/// counted without building them: the exporter reserves queue room first.
pub(super) fn span_count(outcome: &Outcome) -> usize {
    1 + usize::from(outcome.http.is_some())
        + outcome
            .steps
            .iter()
            .filter(|s| valid_span_id(&s.span_id).is_some())
            .count()
}

/// `test.suite.run.status` of a finished run: `success`; `aborted` when
/// synthmon cut the run short (a shutdown: `cancelled`) or could not carry
/// it out (`resource`: it ran out of file descriptors), neither being a
/// verdict on the target; `timed_out` when the run's deadline passed
/// (`timeout`, `connect_timeout`); `failure` otherwise. A step's `until`
/// that never held is a `failure`: its condition, not the run, ran out of
/// time.
fn suite_run_status(outcome: &Outcome) -> &'static str {
    if outcome.success {
        return "success";
    }
    match outcome.reason {
        Some(
            FailureReason::Cancelled | FailureReason::Resource | FailureReason::MonitorOffline,
        ) => "aborted",
        Some(FailureReason::Timeout | FailureReason::ConnectTimeout) => "timed_out",
        _ => "failure",
    }
}

/// `test.case.name` and `test.case.result.status` of one case.
fn test_case(name: &str, success: bool) -> [KeyValue; 2] {
    [
        KeyValue::new(TEST_CASE_NAME, name.to_owned()),
        KeyValue::new(
            TEST_CASE_RESULT_STATUS,
            if success { "pass" } else { "fail" },
        ),
    ]
}

/// `user_agent.synthetic.type = "test"`, on every span so that any of
/// them can be told from real traffic.
fn synthetic() -> KeyValue {
    KeyValue::new("user_agent.synthetic.type", "test")
}

/// What every client span carries: `user_agent.synthetic.type`, and
/// `error.type` when its case failed.
fn base_attributes(success: bool, reason: Option<FailureReason>) -> Vec<KeyValue> {
    let mut attributes = vec![synthetic()];
    if !success {
        attributes.push(error_type(reason));
    }
    attributes
}

/// `error.type`: the failure reason, or `_OTHER` without one.
fn error_type(reason: Option<FailureReason>) -> KeyValue {
    KeyValue::new("error.type", reason.map_or("_OTHER", |r| r.as_str()))
}

/// `id` as a span id, unless it is not one or is all zeros.
fn valid_span_id(id: &str) -> Option<SpanId> {
    SpanId::from_hex(id).ok().filter(|s| *s != SpanId::INVALID)
}

/// A random span id, never invalid and never one of `taken`.
fn fresh_span_id(taken: &[SpanId]) -> SpanId {
    let mut rng = rand::rng();
    loop {
        let id = SpanId::from_bytes(rng.random::<[u8; 8]>());
        if id != SpanId::INVALID && !taken.contains(&id) {
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
    reason: Option<FailureReason>,
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
    if let Some(version) = http.version {
        attributes.push(KeyValue::new("network.protocol.version", version));
    }
    attributes.extend(base_attributes(success, reason));
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
    use crate::outcome::{HttpPhases, Stage};
    use crate::tagging::RunIds;
    use opentelemetry::Value;

    fn outcome(kind: &'static str) -> Outcome {
        let mut o = Outcome::new("checkout", "prod", kind, &RunIds::generate());
        o.success = true;
        o.duration = Duration::from_millis(30);
        o
    }

    fn facts(method: &str) -> HttpFacts {
        HttpFacts {
            method: method.to_owned(),
            url: "http://127.0.0.1:8080/orders".to_owned(),
            status: Some(200),
            redirects: 0,
            phases: HttpPhases::default(),
            body_bytes: 0,
            tls: false,
            tls_earliest_cert_expiry: None,
            version: Some("2"),
        }
    }

    fn step(name: &str, success: bool, http: Option<HttpFacts>) -> StepOutcome {
        let mut s = StepOutcome::new(name, Stage::Step);
        s.success = success;
        s.attempts = 1;
        s.http = http;
        s.span_id = RunIds::generate().span_id;
        if !success {
            s.reason = Some(FailureReason::Request);
            s.error = Some("cannot render the URL".to_owned());
        }
        s
    }

    fn id(span: &SpanData) -> String {
        span.span_context.span_id().to_string()
    }

    fn get<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    fn text(span: &SpanData, key: &str) -> String {
        get(span, key).map_or_else(|| panic!("no {key} in {span:#?}"), Value::to_string)
    }

    /// The spans of `outcome`, checked against the count the exporter
    /// reserves room for.
    fn built(outcome: &Outcome) -> Vec<SpanData> {
        let spans = spans(outcome).unwrap_or_else(|| panic!("no spans for {outcome:#?}"));
        assert_eq!(spans.len(), span_count(outcome), "{spans:#?}");
        spans
    }

    #[test]
    fn the_reported_span_id_of_a_run_without_a_client_span_is_the_root() {
        for kind in ["flow", "grpc", "tcp"] {
            let o = outcome(kind);
            let spans = built(&o);
            assert_eq!(spans.len(), 1, "{kind}");
            assert_eq!(
                id(&spans[0]),
                o.span_id,
                "{kind}: the root is the reported id"
            );
            assert_eq!(text(&spans[0], "test.suite.name"), "checkout");
            assert_eq!(text(&spans[0], "test.suite.run.status"), "success");
            assert_eq!(text(&spans[0], "user_agent.synthetic.type"), "test");
            assert!(get(&spans[0], "test.case.name").is_none(), "{kind}");
        }
    }

    #[test]
    fn an_http_run_reports_its_client_span_and_names_the_case_after_the_probe() {
        let mut o = outcome("http");
        o.http = Some(facts("GET"));
        let spans = built(&o);
        assert_eq!(spans.len(), 2);
        let (root, client) = (&spans[0], &spans[1]);
        assert_eq!(id(client), o.span_id);
        assert_ne!(id(root), o.span_id);
        assert_eq!(client.parent_span_id, root.span_context.span_id());
        assert_eq!(text(client, "test.case.name"), "checkout");
        assert_eq!(text(client, "test.case.result.status"), "pass");
        assert_eq!(text(client, "user_agent.synthetic.type"), "test");
        assert!(get(root, "test.case.name").is_none());
    }

    #[test]
    fn the_root_span_counts_the_tries_and_marks_a_flaky_pass() {
        let plain = outcome("tcp");
        assert_eq!(text(&built(&plain)[0], "synthmon.attempts"), "1");
        assert!(get(&built(&plain)[0], "synthmon.flaky").is_none());
        let mut flaky = outcome("tcp");
        flaky.attempts = 2;
        flaky.flaky = true;
        flaky.retried.push(crate::outcome::RetriedAttempt {
            attempt: 1,
            reason: Some(FailureReason::ConnectRefused),
            error: Some("refused".to_owned()),
            duration: Duration::from_millis(3),
            started_at: flaky.started_at.clone(),
            status: None,
            run_id: "r1".to_owned(),
            trace_id: "t1".to_owned(),
        });
        let root = &built(&flaky)[0];
        assert_eq!(text(root, "synthmon.attempts"), "2");
        assert_eq!(text(root, "synthmon.flaky"), "true");
        assert_eq!(
            text(root, "synthmon.first_attempt.failure_reason"),
            "connect_refused"
        );
        assert_eq!(text(root, "synthmon.result"), "success");
    }

    #[test]
    fn every_flow_step_that_ran_is_a_case_even_without_an_exchange() {
        let mut o = outcome("flow");
        o.success = false;
        o.reason = Some(FailureReason::Request);
        o.steps = vec![
            step("create", true, Some(facts("POST"))),
            step("fetch", false, None),
            StepOutcome::new("never-ran", Stage::Teardown),
        ];
        let spans = built(&o);
        assert_eq!(spans.len(), 3, "the root and the two steps with an id");
        let root = &spans[0];
        assert_eq!(id(root), o.span_id);
        assert_eq!(text(root, "test.suite.run.status"), "failure");
        for (span, s) in spans[1..].iter().zip(&o.steps) {
            assert_eq!(id(span), s.span_id);
            assert_eq!(span.parent_span_id, root.span_context.span_id());
            assert_eq!(span.span_kind, SpanKind::Client);
            assert_eq!(text(span, "test.case.name"), s.name);
            assert_eq!(text(span, "user_agent.synthetic.type"), "test");
        }
        assert_eq!(text(&spans[1], "test.case.result.status"), "pass");
        assert_eq!(spans[1].name, "POST");
        assert_eq!(text(&spans[2], "test.case.result.status"), "fail");
        assert_eq!(text(&spans[2], "error.type"), "request");
        assert_eq!(spans[2].name, "HTTP");
    }

    #[test]
    fn the_suite_run_status_tells_aborted_and_timed_out_runs_from_failures() {
        let cases = [
            (None, "success"),
            (Some(FailureReason::Cancelled), "aborted"),
            (Some(FailureReason::Resource), "aborted"),
            (Some(FailureReason::Timeout), "timed_out"),
            (Some(FailureReason::ConnectTimeout), "timed_out"),
            (Some(FailureReason::Until), "failure"),
            (Some(FailureReason::Teardown), "failure"),
            (Some(FailureReason::Status), "failure"),
            (Some(FailureReason::ConnectRefused), "failure"),
        ];
        for (reason, status) in cases {
            let mut o = outcome("http");
            if let Some(r) = reason {
                o.fail(r, "failed");
            }
            assert_eq!(suite_run_status(&o), status, "{reason:?}");
        }
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
