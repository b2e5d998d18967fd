//! The `http` probe: one request, checked against its expectations.
//!
//! The exchange itself (connections, phases, redirects, body cap) lives in
//! [`super::transport`]; this file builds the request from the probe and its
//! environment, tags it, and turns the response into an [`Outcome`].

use super::transport::{self, TransportOptions};
use crate::config::secret::Redactor;
use crate::config::{Environment, Probe, Tagging};
use crate::expr::{Expr, Facts, duration_value, json_value};
use crate::outcome::{
    AssertionResult, FailureReason, HttpFacts, HttpPhases, Outcome, SourceLocation,
};
use crate::tagging::RunIds;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::collections::{BTreeMap, HashMap};
use tokio::time::Instant;

/// The variables an http expectation can read.
pub const SCOPE: &[&str] = &[
    "status", "headers", "body", "json", "timings", "tls", "vars",
];

/// The checked body of an `http` probe.
#[derive(Debug)]
pub struct HttpSpec {
    pub method: Method,
    /// Absolute, or relative to the environment's base URL (appended to its
    /// path, so a base of `https://h/v1` and `/orders` give `https://h/v1/orders`).
    pub url: String,
    pub headers: Vec<(HeaderName, String)>,
    pub query: Vec<(String, String)>,
    pub body: Body,
    pub follow_redirects: bool,
    pub max_redirects: u32,
    pub max_body_bytes: u64,
    pub decompress: bool,
    pub expect: Vec<Assertion>,
    /// Set when no expectation reads `status`: then a non-2xx status fails
    /// the run with reason `status`, as in blackbox_exporter.
    pub implicit_status: Option<SourceLocation>,
}

#[derive(Debug)]
pub enum Body {
    Empty,
    Raw(String),
    Json(serde_json::Value),
    Form(Vec<(String, String)>),
}

/// A compiled `expect` entry and where it was written.
#[derive(Debug)]
pub struct Assertion {
    pub expr: Expr,
    pub location: SourceLocation,
}

/// Everything one run needs besides the probe's own body.
pub struct RunContext<'a> {
    pub probe: &'a Probe,
    pub env: &'a Environment,
    /// The environment's base URL, `builtin:sandbox` already replaced by the
    /// sandbox's real address.
    pub base_url: &'a url::Url,
    pub tagging: &'a Tagging,
    pub redactor: &'a Redactor,
    /// The environment's variables overlaid with `--var`.
    pub vars: &'a BTreeMap<String, String>,
}

/// Joins a probe URL onto a base URL (see [`HttpSpec::url`]).
pub fn join_url(base: &url::Url, path: &str) -> Result<url::Url, url::ParseError> {
    if path.starts_with("http://") || path.starts_with("https://") {
        return url::Url::parse(path);
    }
    let base = base.as_str().trim_end_matches('/');
    let path = path.trim_start_matches('/');
    url::Url::parse(&format!("{base}/{path}"))
}

pub async fn run(spec: &HttpSpec, ctx: &RunContext<'_>) -> Outcome {
    let ids = RunIds::generate();
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let start = Instant::now();
    let deadline = start + ctx.probe.timeout;
    let mut outcome = Outcome {
        probe: ctx.probe.name.clone(),
        environment: ctx.env.name.clone(),
        kind: "http",
        run_id: ids.run_id.clone(),
        trace_id: ids.trace_id.clone(),
        span_id: ids.span_id.clone(),
        started_at,
        success: false,
        reason: None,
        error: None,
        duration: Default::default(),
        http: None,
        assertions: Vec::new(),
        thresholds: Vec::new(),
        latency: None,
    };

    let request = match build_request(spec, ctx, &ids) {
        Ok(r) => r,
        Err(msg) => {
            outcome.reason = Some(FailureReason::Request);
            outcome.error = Some(msg);
            return redact(outcome, ctx.redactor);
        }
    };
    let options = TransportOptions {
        follow_redirects: spec.follow_redirects,
        max_redirects: spec.max_redirects,
        max_body_bytes: spec.max_body_bytes,
        decompress: spec.decompress,
        tls: ctx.env.tls_client.clone(),
        server_name: ctx.env.tls.server_name.clone(),
    };
    let requested_url = request.url.to_string();
    let result = transport::exchange(request, &options, deadline).await;
    outcome.duration = start.elapsed();

    match result {
        Err(failure) => {
            outcome.reason = Some(failure.reason);
            outcome.error = Some(failure.message);
            outcome.http = Some(HttpFacts {
                method: spec.method.to_string(),
                url: requested_url,
                status: failure.status,
                redirects: failure.redirects,
                phases: failure.phases,
                body_bytes: 0,
                tls: false,
                tls_earliest_cert_expiry: None,
            });
        }
        Ok(resp) => {
            let facts = facts(&resp, ctx.vars, outcome.duration);
            if let Some(location) = &spec.implicit_status {
                let ok = resp.status.is_success();
                outcome.assertions.push(AssertionResult {
                    expression: "status is 2xx (implicit: no expectation reads `status`)".into(),
                    passed: ok,
                    actual: if ok {
                        String::new()
                    } else {
                        format!("status = {}", resp.status.as_u16())
                    },
                    location: Some(location.clone()),
                });
                if !ok {
                    outcome.reason = Some(FailureReason::Status);
                }
            }
            for assertion in &spec.expect {
                let check = assertion.expr.check(&facts);
                if !check.passed && outcome.reason.is_none() {
                    outcome.reason = Some(FailureReason::Assertion);
                }
                outcome.assertions.push(AssertionResult {
                    expression: assertion.expr.source().to_owned(),
                    passed: check.passed,
                    actual: check.actual,
                    location: Some(assertion.location.clone()),
                });
            }
            let failed = outcome.assertions.iter().filter(|a| !a.passed).count();
            if failed > 0 {
                outcome.error = Some(format!(
                    "{failed} of {} expectation{} failed",
                    outcome.assertions.len(),
                    if outcome.assertions.len() == 1 {
                        ""
                    } else {
                        "s"
                    }
                ));
            }
            outcome.success = outcome.reason.is_none();
            outcome.http = Some(HttpFacts {
                method: spec.method.to_string(),
                url: resp.final_url.to_string(),
                status: Some(resp.status.as_u16()),
                redirects: resp.redirects,
                phases: resp.phases,
                body_bytes: resp.body.len() as u64,
                tls: resp.tls,
                tls_earliest_cert_expiry: resp.tls_earliest_expiry,
            });
        }
    }
    redact(outcome, ctx.redactor)
}

fn build_request(
    spec: &HttpSpec,
    ctx: &RunContext<'_>,
    ids: &RunIds,
) -> Result<transport::Request, String> {
    let mut url = join_url(ctx.base_url, &spec.url)
        .map_err(|e| format!("cannot build the request URL from `{}`: {e}", spec.url))?;
    if !spec.query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in &spec.query {
            pairs.append_pair(k, v);
        }
    }
    let mut headers = HeaderMap::new();
    for (name, value) in ctx.env.headers.iter().chain(spec.headers.iter()) {
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("header `{name}` has a value that is not valid in HTTP"))?;
        headers.insert(name.clone(), value);
    }
    let body = match &spec.body {
        Body::Empty => Bytes::new(),
        Body::Raw(text) => Bytes::from(text.clone()),
        Body::Json(value) => {
            headers
                .entry(http::header::CONTENT_TYPE)
                .or_insert(HeaderValue::from_static("application/json"));
            Bytes::from(value.to_string())
        }
        Body::Form(pairs) => {
            headers
                .entry(http::header::CONTENT_TYPE)
                .or_insert(HeaderValue::from_static(
                    "application/x-www-form-urlencoded",
                ));
            let encoded = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish();
            Bytes::from(encoded)
        }
    };
    ids.apply(ctx.tagging, &ctx.probe.name, &mut headers);
    Ok(transport::Request {
        method: spec.method.clone(),
        url,
        headers,
        body,
    })
}

/// The values an expectation can read about a response.
fn facts(
    resp: &transport::Response,
    vars: &BTreeMap<String, String>,
    total: std::time::Duration,
) -> Facts {
    let mut headers: HashMap<String, String> = HashMap::new();
    for (name, value) in &resp.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let body = String::from_utf8_lossy(&resp.body).into_owned();
    let json = serde_json::from_slice::<serde_json::Value>(&resp.body)
        .map(|j| json_value(&j))
        .unwrap_or(cel::Value::Null);
    let p: &HttpPhases = &resp.phases;
    let mut timings: HashMap<String, cel::Value> = p
        .named()
        .iter()
        .map(|(name, d)| ((*name).to_owned(), duration_value(*d)))
        .collect();
    timings.insert(
        "first_byte".into(),
        duration_value(p.resolve + p.connect + p.tls + p.processing),
    );
    timings.insert("total".into(), duration_value(total));
    // `tls.days_left` (a float, may be negative) and `tls.earliest_cert_expiry`
    // (a timestamp) for HTTPS; `tls` is null over plain HTTP.
    let tls = match resp.tls_earliest_expiry {
        Some(expiry) => {
            let days = (expiry - chrono::Utc::now().timestamp()) as f64 / 86_400.0;
            let mut m: HashMap<String, cel::Value> = HashMap::new();
            m.insert("days_left".into(), cel::Value::Float(days));
            if let Some(t) = chrono::DateTime::from_timestamp(expiry, 0) {
                m.insert(
                    "earliest_cert_expiry".into(),
                    cel::Value::Timestamp(t.fixed_offset()),
                );
            }
            cel::Value::from(m)
        }
        None => cel::Value::Null,
    };
    let mut f = Facts::default();
    f.set("tls", tls);
    f.set("status", i64::from(resp.status.as_u16()));
    f.set("headers", headers);
    f.set("body", body);
    f.set("json", json);
    f.set("timings", timings);
    f.set(
        "vars",
        vars.iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<HashMap<_, _>>(),
    );
    f
}

/// Scrubs every secret value from the user-visible strings of an outcome.
fn redact(mut outcome: Outcome, redactor: &Redactor) -> Outcome {
    if redactor.is_empty() {
        return outcome;
    }
    if let Some(e) = outcome.error.as_mut() {
        redactor.scrub(e);
    }
    if let Some(h) = outcome.http.as_mut() {
        redactor.scrub(&mut h.url);
    }
    for a in &mut outcome.assertions {
        redactor.scrub(&mut a.actual);
        redactor.scrub(&mut a.expression);
    }
    outcome
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn relative_urls_append_to_the_base_path() {
        let base = url::Url::parse("https://h.example/v1/").unwrap();
        assert_eq!(
            join_url(&base, "/orders?x=1").unwrap().as_str(),
            "https://h.example/v1/orders?x=1"
        );
        let base = url::Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            join_url(&base, "health").unwrap().as_str(),
            "http://127.0.0.1:8080/health"
        );
        assert_eq!(
            join_url(&base, "https://other.example/x").unwrap().as_str(),
            "https://other.example/x"
        );
    }
}
