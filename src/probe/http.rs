//! The `http` probe: one request, checked against its expectations.
//!
//! The exchange itself (connections, phases, redirects, body cap) lives in
//! [`super::transport`]; this file builds the request from the probe and its
//! environment, tags it, and turns the response into an [`Outcome`].

use super::transport::{self, TransportOptions};
use super::{Assertion, RunContext};
use crate::expr::{Facts, duration_value, json_value};
use crate::outcome::{
    AssertionResult, FailureReason, HttpFacts, HttpPhases, Outcome, SourceLocation,
};
use crate::tagging::RunIds;
use crate::template::{JsonTemplate, Scope, Text};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::collections::{BTreeMap, HashMap};
use tokio::time::Instant;

/// The variables an http expectation can read.
pub const SCOPE: &[&str] = &[
    "status", "headers", "body", "json", "timings", "tls", "vars",
];

/// The checked body of an `http` probe, and of one flow step.
#[derive(Debug)]
pub struct HttpSpec {
    pub method: Method,
    /// Absolute, or relative to the environment's base URL (appended to its
    /// path, so a base of `https://h/v1` and `/orders` give `https://h/v1/orders`).
    pub url: Text,
    pub headers: Vec<(HeaderName, Text)>,
    pub query: Vec<(String, Text)>,
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
    Raw(Text),
    Json(JsonTemplate),
    Form(Vec<(String, Text)>),
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
    let start = Instant::now();
    let mut outcome = Outcome::new(&ctx.probe.name, &ctx.env.name, "http", &ids);
    let scope = ctx.scope(&ids, 0);
    let done = perform(
        spec,
        ctx,
        &ids,
        &scope,
        start + ctx.probe.timeout,
        &Checks::Spec,
    )
    .await;
    outcome.duration = start.elapsed();
    outcome.reason = done.reason;
    outcome.error = done.error;
    outcome.http = done.http;
    outcome.assertions = done.assertions;
    outcome.responded = done.responded;
    outcome.success = outcome.reason.is_none();
    super::redact(outcome, ctx.redactor)
}

/// Which expectations judge a response.
pub enum Checks<'a> {
    /// The spec's own (`expect`, or the implicit 2xx).
    Spec,
    /// Others instead, e.g. an anomaly's.
    Other(&'a [Assertion]),
}

/// One request sent and judged.
pub struct Performed {
    pub reason: Option<FailureReason>,
    pub error: Option<String>,
    pub http: Option<HttpFacts>,
    pub assertions: Vec<AssertionResult>,
    /// Got a response (so its duration is a latency sample).
    pub responded: bool,
    /// What expressions can read about the response (captures, `until`).
    pub facts: Option<Facts>,
}

impl Performed {
    pub fn failed(reason: FailureReason, error: String) -> Performed {
        Performed {
            reason: Some(reason),
            error: Some(error),
            http: None,
            assertions: Vec::new(),
            responded: false,
            facts: None,
        }
    }
}

/// Renders `spec` in `scope`, sends it within `deadline` and judges the
/// response. The request carries `ids`' tags.
pub async fn perform(
    spec: &HttpSpec,
    ctx: &RunContext<'_>,
    ids: &RunIds,
    scope: &Scope,
    deadline: Instant,
    checks: &Checks<'_>,
) -> Performed {
    let request = match build_request(spec, ctx, ids, scope) {
        Ok(r) => r,
        Err(msg) => return Performed::failed(FailureReason::Request, msg),
    };
    send(spec, ctx, request, scope, deadline, checks).await
}

/// Sends an already built request (a workload mutates its body first).
pub async fn send(
    spec: &HttpSpec,
    ctx: &RunContext<'_>,
    request: transport::Request,
    scope: &Scope,
    deadline: Instant,
    checks: &Checks<'_>,
) -> Performed {
    let exchanged = exchange(request, options(spec, ctx), deadline).await;
    judge(spec, exchanged, scope, checks)
}

/// How `spec` is sent in the run's environment.
pub fn options(spec: &HttpSpec, ctx: &RunContext<'_>) -> TransportOptions {
    TransportOptions {
        follow_redirects: spec.follow_redirects,
        max_redirects: spec.max_redirects,
        max_body_bytes: spec.max_body_bytes,
        decompress: spec.decompress,
        tls: ctx.env.tls_client.clone(),
        server_name: ctx.env.tls.server_name.clone(),
    }
}

/// The network part of one request, before judging. Owns everything, so a
/// workload can run it as a task of its own.
pub struct Exchanged {
    result: Result<transport::Response, transport::Failure>,
    requested_url: String,
    elapsed: std::time::Duration,
    /// When the last body byte (or the failure) arrived.
    pub finished: Instant,
}

/// Sends `request` within `deadline`.
pub async fn exchange(
    request: transport::Request,
    options: TransportOptions,
    deadline: Instant,
) -> Exchanged {
    let started = Instant::now();
    let requested_url = request.url.to_string();
    let result = transport::exchange(request, &options, deadline).await;
    let finished = Instant::now();
    Exchanged {
        result,
        requested_url,
        elapsed: finished - started,
        finished,
    }
}

/// Judges an exchange against `checks`.
pub fn judge(
    spec: &HttpSpec,
    exchanged: Exchanged,
    scope: &Scope,
    checks: &Checks<'_>,
) -> Performed {
    let Exchanged {
        result,
        requested_url,
        elapsed,
        ..
    } = exchanged;
    match result {
        Err(failure) => Performed {
            reason: Some(failure.reason),
            error: Some(failure.message),
            http: Some(HttpFacts {
                method: spec.method.to_string(),
                url: requested_url,
                status: failure.status,
                redirects: failure.redirects,
                phases: failure.phases,
                body_bytes: 0,
                tls: false,
                tls_earliest_cert_expiry: None,
            }),
            assertions: Vec::new(),
            responded: false,
            facts: None,
        },
        Ok(resp) => {
            let facts = facts(&resp, &scope.vars, elapsed);
            let mut assertions = Vec::new();
            let mut reason = None;
            let (expect, implicit) = match checks {
                Checks::Spec => (spec.expect.as_slice(), spec.implicit_status.as_ref()),
                Checks::Other(list) => (*list, None),
            };
            if let Some(location) = implicit {
                let ok = resp.status.is_success();
                assertions.push(AssertionResult {
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
                    reason = Some(FailureReason::Status);
                }
            }
            if super::check_into(&mut assertions, expect, &facts) > 0 && reason.is_none() {
                reason = Some(FailureReason::Assertion);
            }
            Performed {
                reason,
                error: super::expectation_summary(&assertions),
                http: Some(HttpFacts {
                    method: spec.method.to_string(),
                    url: resp.final_url.to_string(),
                    status: Some(resp.status.as_u16()),
                    redirects: resp.redirects,
                    phases: resp.phases,
                    body_bytes: resp.body.len() as u64,
                    tls: resp.tls,
                    tls_earliest_cert_expiry: resp.tls_earliest_expiry,
                }),
                assertions,
                responded: true,
                facts: Some(facts),
            }
        }
    }
}

/// Renders the request of `spec` in `scope` and tags it with `ids`.
pub fn build_request(
    spec: &HttpSpec,
    ctx: &RunContext<'_>,
    ids: &RunIds,
    scope: &Scope,
) -> Result<transport::Request, String> {
    let body = render_body(&spec.body, scope)?;
    build_request_with(spec, ctx, ids, scope, body)
}

/// A rendered body, before it is encoded.
pub enum RenderedBody {
    Empty,
    Raw(String),
    Json(serde_json::Value),
    Form(Vec<(String, String)>),
}

pub fn render_body(body: &Body, scope: &Scope) -> Result<RenderedBody, String> {
    Ok(match body {
        Body::Empty => RenderedBody::Empty,
        Body::Raw(t) => RenderedBody::Raw(t.render(scope)?),
        Body::Json(t) => RenderedBody::Json(t.render(scope)?),
        Body::Form(pairs) => RenderedBody::Form(
            pairs
                .iter()
                .map(|(k, v)| Ok((k.clone(), v.render(scope)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// Renders everything but the body, which is given.
pub fn build_request_with(
    spec: &HttpSpec,
    ctx: &RunContext<'_>,
    ids: &RunIds,
    scope: &Scope,
    body: RenderedBody,
) -> Result<transport::Request, String> {
    let path = spec.url.render(scope)?;
    let mut url = join_url(ctx.base_url, &path)
        .map_err(|e| format!("cannot build the request URL from `{path}`: {e}"))?;
    if !spec.query.is_empty() {
        let mut rendered = Vec::with_capacity(spec.query.len());
        for (k, v) in &spec.query {
            rendered.push((k, v.render(scope)?));
        }
        let mut pairs = url.query_pairs_mut();
        for (k, v) in rendered {
            pairs.append_pair(k, &v);
        }
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &ctx.env.headers {
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("header `{name}` has a value that is not valid in HTTP"))?;
        headers.insert(name.clone(), value);
    }
    for (name, value) in &spec.headers {
        let value = HeaderValue::from_str(&value.render(scope)?)
            .map_err(|_| format!("header `{name}` has a value that is not valid in HTTP"))?;
        headers.insert(name.clone(), value);
    }
    let body = match body {
        RenderedBody::Empty => Bytes::new(),
        RenderedBody::Raw(text) => Bytes::from(text),
        RenderedBody::Json(value) => {
            headers
                .entry(http::header::CONTENT_TYPE)
                .or_insert(HeaderValue::from_static("application/json"));
            Bytes::from(value.to_string())
        }
        RenderedBody::Form(pairs) => {
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
    vars: &BTreeMap<String, serde_json::Value>,
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
    f.set("vars", vars_value(vars));
    f
}

/// `vars` as expressions see it.
pub fn vars_value(vars: &BTreeMap<String, serde_json::Value>) -> cel::Value {
    vars.iter()
        .map(|(k, v)| (k.clone(), json_value(v)))
        .collect::<HashMap<_, _>>()
        .into()
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
