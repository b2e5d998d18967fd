//! Building the spans of one run from its [`Outcome`]: the root span
//! `probe <name>` and a client span per HTTP exchange, whose ids are the
//! ones the probe sent in `traceparent`. Client spans follow the
//! OpenTelemetry HTTP client semantic conventions.

use crate::outcome::{FailureReason, HttpFacts, Outcome};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use rand::Rng;
use std::borrow::Cow;
use std::time::{Duration, SystemTime};

/// The spans of one run: the root span and, for an HTTP run, the client
/// span under it. `None` when the outcome's trace or span id is not valid.
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
