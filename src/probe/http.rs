//! The `http` probe: one request, checked against its expectations.
//!
//! The exchange itself (connections, phases, redirects, body cap) lives in
//! the net layer ([`crate::net::http1`]); this file owns the `[http]` table
//! (also the shape of a flow step), checks it, builds the request from the
//! probe and its environment, tags it, and turns the response into an
//! [`Outcome`].
//!
//! `json` is the body parsed, or null when the body is not JSON (invalid,
//! empty, or nested deeper than serde_json's recursion limit); a failed
//! expectation that reads it then says why, located
//! (`the body is not JSON: expected value at line 1 column 1`), rather
//! than CEL's "no such key" on a null.
//!
//! A run that fails keeps its exchange (request and response, credentials
//! masked, bodies cut: [`super::artifact`]) as the outcome's artifact.

use super::artifact::{Received, Recorded};
use super::kind::{Assertion, BuildInput, Kind, KindEntry, RunContext, RunFuture};
use crate::config::check::Checker;
use crate::config::raw::RawSize;
use crate::config::{DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_REDIRECTS, MAX_BODY_BYTES_LIMIT};
use crate::expr::{Facts, duration_value, json_value};
use crate::expr::{Type, Types};
use crate::net::http1::{self as transport, TransportOptions};
use crate::net::http2::{HttpVersion, version_name};
use crate::net::oauth2::AccessToken;
use crate::outcome::{
    AssertionResult, FailureReason, HttpFacts, HttpPhases, Outcome, SourceLocation,
};
use crate::tagging::RunIds;
use crate::template::{JsonBody, JsonTemplate, Scope, Text};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use tokio::time::Instant;

/// The variables an http expectation can read.
pub const SCOPE: crate::expr::Scope<'static> = crate::expr::Scope {
    names: &[
        "status", "headers", "body", "json", "timings", "tls", "vars", "http",
    ],
    types: &[TYPES, crate::net::tls::EXPR_TYPES],
};

/// The types of what this kind puts in scope, so `synthmon check` catches
/// a literal of another type compared with them.
const TYPES: Types<'static> = &[
    ("status", Type::Number),
    ("headers.*", Type::String),
    ("body", Type::String),
    ("http.version", Type::String),
];

/// The `[http]` table as written; a flow step is the same table with a
/// few more keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub method: Option<String>,
    pub url: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// `{ user = "…", password = "${env:…}" }`: sent as `Authorization: Basic …`.
    pub basic_auth: Option<crate::config::raw::RawBasicAuth>,
    /// `"${env:…}"`: sent as `Authorization: Bearer …`.
    pub bearer_token: Option<String>,
    /// OAuth2 client credentials: a bearer token from the token endpoint.
    pub oauth2: Option<crate::config::raw::RawOAuth2>,
    /// A raw body, sent as is.
    pub body: Option<String>,
    /// A JSON body (any TOML value), sent with `content-type: application/json`.
    pub json: Option<toml::Value>,
    /// A form body, sent urlencoded.
    pub form: Option<BTreeMap<String, String>>,
    pub follow_redirects: Option<bool>,
    pub max_redirects: Option<u32>,
    /// Bytes, or a string like "4 MiB".
    pub max_body_size: Option<RawSize>,
    pub decompress: Option<bool>,
    /// `"auto"` (default), `"1.1"` or `"2"`; any TOML value, so a number
    /// written without quotes is reported in words.
    pub http_version: Option<toml::Value>,
    #[serde(default)]
    pub expect: Vec<String>,
    /// Flow steps only: the step's name in reports and metrics.
    pub name: Option<String>,
    /// Flow steps only: variable name → expression over the response.
    #[serde(default)]
    pub capture: BTreeMap<String, RawCapture>,
    /// Flow steps only: repeat the request until this expression holds.
    pub until: Option<String>,
    /// Flow steps only: the pause between `until` attempts (default 500ms).
    #[serde(default, deserialize_with = "crate::config::raw::duration")]
    pub until_interval: Option<String>,
    /// Flow steps only: give up on `until` after this long (default: the
    /// run's deadline).
    #[serde(default, deserialize_with = "crate::config::raw::duration")]
    pub until_timeout: Option<String>,
    /// `{ ca_file, client_cert, client_key, server_name, min_version,
    /// insecure_skip_verify }` over the environment's (`[http]` only; a
    /// flow sets it in `[flow]`).
    pub tls: Option<crate::config::raw::RawTls>,
    /// `http://host:port`, `env` or `none`, instead of the environment's.
    pub proxy: Option<String>,
    /// `{ user = "…", password = "${env:…}" }`: the proxy's credentials.
    pub proxy_auth: Option<crate::config::raw::RawBasicAuth>,
    /// Hosts reached without the proxy.
    pub no_proxy: Option<Vec<String>>,
}

impl RawHttp {
    /// The proxy keys as written.
    pub fn proxy_keys(&self) -> crate::config::check::ProxyKeys<'_> {
        crate::config::check::ProxyKeys {
            proxy: self.proxy.as_deref(),
            proxy_auth: self.proxy_auth.as_ref(),
            no_proxy: self.no_proxy.as_deref(),
        }
    }
}

/// A capture: an expression, or a table marking the value secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "an expression like \"json.id\" or a table { from = \"…\", secret = true }"
)]
pub enum RawCapture {
    Expr(String),
    Full(RawCaptureTable),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCaptureTable {
    pub from: String,
    /// Redact the captured value wherever it appears in reports.
    #[serde(default)]
    pub secret: bool,
}

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
    /// `http_version`: what ALPN offers over TLS, and whether cleartext
    /// uses HTTP/2 with prior knowledge.
    pub http_version: HttpVersion,
    pub expect: Vec<Assertion>,
    /// Set when no expectation reads `status`: then a non-2xx status fails
    /// the run with reason `status`, as in blackbox_exporter.
    pub implicit_status: Option<SourceLocation>,
    /// `oauth2 = { … }`: the request carries a bearer token from the token
    /// endpoint (else the environment's `oauth2` applies, unless `headers`
    /// set Authorization).
    pub oauth2: Option<std::sync::Arc<crate::net::oauth2::OAuth2>>,
    /// The probe's own `tls` and `proxy` over the environment's (a flow's
    /// steps share the flow's).
    pub reach: std::sync::Arc<super::reach::Reach>,
    /// A literal `url` joined onto each base URL it ran against (an
    /// environment's, by its text): parsing it again at every run was ~3 %
    /// of a scheduled run's CPU. At most [`JOINED_BASES`] entries, the
    /// first allocated exactly (~0.2 KB a probe in one environment).
    joined: std::sync::Mutex<Vec<(Box<str>, url::Url)>>,
}

/// The most base URLs whose join [`HttpSpec`] keeps: more than a probe
/// has environments, usually.
const JOINED_BASES: usize = 16;

impl HttpSpec {
    /// The request URL before `query`: the rendered `url` joined onto the
    /// environment's base URL; for a literal one, as joined the first time
    /// against this base.
    fn url_for(&self, base: &url::Url, scope: &Scope) -> Result<url::Url, String> {
        let join = |path: &str| {
            check_url(path)
                .map_err(|e| format!("the url template rendered an unusable url: {e}"))?;
            join_url(base, path)
                .map_err(|e| format!("cannot build the request URL from `{path}`: {e}"))
        };
        if !self.url.is_literal() {
            return join(&self.url.render(scope)?);
        }
        let mut joined = match self.joined.lock() {
            Ok(joined) => joined,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((_, url)) = joined.iter().find(|(b, _)| **b == *base.as_str()) {
            return Ok(url.clone());
        }
        let url = join(self.url.source())?;
        if joined.len() < JOINED_BASES {
            if joined.is_empty() {
                joined.reserve_exact(1);
            }
            joined.push((base.as_str().into(), url.clone()));
        }
        Ok(url)
    }

    /// The OAuth2 token this request carries, if any: its own `oauth2`, or
    /// its environment's when it sets no Authorization header itself.
    pub async fn oauth2_token(
        &self,
        ctx: &RunContext<'_>,
        deadline: Instant,
    ) -> Result<Option<AccessToken>, crate::net::Fail> {
        let own_header = self
            .headers
            .iter()
            .any(|(name, _)| name == http::header::AUTHORIZATION);
        ctx.oauth2_token(self.oauth2.as_deref(), own_header, deadline)
            .await
    }

    /// Nothing in the request is a template: every request a workload
    /// sends is then the same but for its tags, built once per run.
    pub fn is_static(&self) -> bool {
        fn literal_json(t: &JsonTemplate) -> bool {
            match t {
                JsonTemplate::Value(_) => true,
                JsonTemplate::Text(t) => t.is_literal(),
                JsonTemplate::Array(items) => items.iter().all(literal_json),
                JsonTemplate::Object(fields) => fields.iter().all(|(_, v)| literal_json(v)),
            }
        }
        let literal = |pairs: &[(String, Text)]| pairs.iter().all(|(_, t)| t.is_literal());
        self.url.is_literal()
            && self.headers.iter().all(|(_, t)| t.is_literal())
            && literal(&self.query)
            && match &self.body {
                Body::Empty => true,
                Body::Raw(t) => t.is_literal(),
                Body::Json(j) => literal_json(&j.tree),
                Body::Form(pairs) => literal(pairs),
            }
    }
}

#[derive(Debug)]
pub enum Body {
    Empty,
    Raw(Text),
    Json(JsonBody),
    Form(Vec<(String, Text)>),
}

/// Joins a probe URL onto a base URL (see [`HttpSpec::url`]).
pub fn join_url(base: &url::Url, path: &str) -> Result<url::Url, url::ParseError> {
    if is_http_url(path) {
        return url::Url::parse(path);
    }
    let base = base.as_str().trim_end_matches('/');
    let path = path.trim_start_matches('/');
    url::Url::parse(&format!("{base}/{path}"))
}

/// Starts with `http://` or `https://`, the scheme in any case.
fn is_http_url(text: &str) -> bool {
    text.split_once("://").is_some_and(|(scheme, _)| {
        scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
    })
}

/// What an http request's `url` must be: an absolute `http://` or
/// `https://` URL with a host, or a path starting with `/` on the
/// environment's base URL. Checked at load for a literal url and at run
/// time for a rendered one; the message says what was found and, for the
/// usual slips (`http//host`, `health`), what was probably meant.
pub fn check_url(text: &str) -> Result<(), String> {
    const EXPECTED: &str =
        "expected an http(s) URL like `https://api.example.com/health` or a path starting with `/`";
    if is_http_url(text) {
        return match url::Url::parse(text) {
            Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => {
                crate::config::check::no_credentials(&u)
            }
            Ok(_) => Err(format!("{EXPECTED}, found `{text}`, which has no host")),
            Err(e) => Err(format!("{EXPECTED}, found `{text}` ({e})")),
        };
    }
    if text.starts_with('/') {
        return Ok(());
    }
    // `http//host`, `https:/host`, `http:host`: a mistyped `://`.
    let slip = ["https", "http"].iter().find_map(|scheme| {
        let rest = text
            .get(..scheme.len())
            .filter(|head| head.eq_ignore_ascii_case(scheme))
            .map(|_| &text[scheme.len()..])?;
        rest.starts_with([':', '/'])
            .then(|| format!("{scheme}://{}", rest.trim_start_matches([':', '/'])))
    });
    if let Some(meant) = slip {
        return Err(format!(
            "{EXPECTED}, found `{text}` (did you mean `{meant}`?)"
        ));
    }
    let scheme = text
        .split_once("://")
        .map(|(scheme, _)| scheme)
        .filter(|s| {
            s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
    if let Some(scheme) = scheme {
        return Err(format!(
            "{EXPECTED}, found `{text}` (the `{scheme}` scheme is not HTTP)"
        ));
    }
    if text.contains(':') {
        // `localhost:8080/x`, `mailto:…`: no guess is safe.
        return Err(format!("{EXPECTED}, found `{text}`"));
    }
    Err(format!(
        "{EXPECTED}, found `{text}` (did you mean `/{text}`?)"
    ))
}

pub async fn run(spec: &HttpSpec, ctx: &RunContext<'_>) -> Outcome {
    let ids = RunIds::generate();
    let began = Instant::now();
    let deadline = ctx.deadline_from(began);
    let mut outcome = Outcome::new(&ctx.probe.name, &ctx.env.name, "http", &ids);
    // The token and the transport (the TLS config as its files are now,
    // the proxy) come first, within the deadline but outside the measured
    // run: the duration is the target's, as its phases are.
    let prepared = match spec.oauth2_token(ctx, deadline).await {
        Ok(token) => options(spec, ctx).await.map(|options| (token, options)),
        Err(fail) => Err(fail),
    };
    let (token, options) = match prepared {
        Ok(prepared) => prepared,
        Err(fail) => {
            outcome.duration = began.elapsed();
            outcome.fail(fail.reason, fail.message);
            outcome.artifact = Some(Box::default());
            return super::redact(outcome, ctx.redactor);
        }
    };
    let start = Instant::now();
    let scope = ctx.scope(&ids, 0);
    let prev = ctx.prev_facts();
    let done = match build_request(spec, ctx, &ids, &scope) {
        Ok(mut request) => {
            if let Some(token) = &token {
                request
                    .headers
                    .insert(http::header::AUTHORIZATION, token.header());
            }
            let checks = Checks::SpecWith(&prev);
            // The response becomes expression facts only when something
            // reads them: an expectation, or a value kept for the next run.
            let want_facts = !ctx.probe.keep.is_empty();
            send_with(
                spec, request, &scope, deadline, &checks, options, want_facts,
            )
            .await
        }
        Err(msg) => Performed::failed(FailureReason::Request, msg),
    };
    if let Some(token) = &token {
        if done.http.as_ref().and_then(|h| h.status) == Some(401) {
            token.rejected();
        }
    }
    outcome.duration = start.elapsed();
    outcome.reason = done.reason;
    outcome.error = done.error;
    outcome.http = done.http;
    outcome.assertions = done.assertions;
    outcome.responded = done.responded;
    if let Some(facts) = &done.facts {
        ctx.keep(&mut outcome, facts);
    }
    outcome.success = outcome.reason.is_none();
    if !outcome.success {
        outcome.artifact = Some(Box::new(crate::outcome::Artifact {
            exchange: done.exchange.map(|x| x.exchange()),
            steps: Vec::new(),
        }));
    }
    super::redact(outcome, &ctx.redactor_with(token.as_ref()))
}

/// Which expectations judge a response.
pub enum Checks<'a> {
    /// The spec's own (`expect`, or the implicit 2xx).
    Spec,
    /// The spec's own, with the previous run's kept values readable as
    /// `prev` (a probe's run and a flow's steps; a workload's requests
    /// read no `prev`).
    SpecWith(&'a crate::expr::Prev),
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
    /// Why the body is not JSON, when it is not (`json` is then null).
    pub not_json: Option<String>,
    /// What was sent and came back, for the artifact of a run or step that
    /// fails ([`send`] records it; `None` when no request was built).
    pub exchange: Option<Box<Recorded>>,
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
            not_json: None,
            exchange: None,
        }
    }
}

/// Sends an already built request and judges the response, recording
/// the exchange ([`Performed::exchange`]) for an artifact.
pub async fn send(
    spec: &HttpSpec,
    ctx: &RunContext<'_>,
    request: transport::Request,
    scope: &Scope,
    deadline: Instant,
    checks: &Checks<'_>,
) -> Performed {
    let options = match options(spec, ctx).await {
        Ok(options) => options,
        Err(fail) => return Performed::failed(fail.reason, fail.message),
    };
    send_with(spec, request, scope, deadline, checks, options, true).await
}

/// [`send`] with the transport already resolved.
async fn send_with(
    spec: &HttpSpec,
    request: transport::Request,
    scope: &Scope,
    deadline: Instant,
    checks: &Checks<'_>,
    options: TransportOptions,
    want_facts: bool,
) -> Performed {
    let exchanged = exchange(&request, &options, None, deadline).await;
    let (mut done, received) =
        judge_keeping(spec, exchanged, &request.url, scope, checks, want_facts);
    let mut recorded = Recorded::request(request);
    recorded.response = received;
    done.exchange = Some(Box::new(recorded));
    done
}

/// How `spec` is sent in the run's environment: its TLS config as the
/// files are now (the probe's `tls` over the environment's) and its proxy.
/// A TLS file that cannot be read fails the run.
pub async fn options(
    spec: &HttpSpec,
    ctx: &RunContext<'_>,
) -> Result<TransportOptions, crate::net::Fail> {
    let reached = spec.reach.resolve(ctx).await?;
    Ok(TransportOptions {
        follow_redirects: spec.follow_redirects,
        max_redirects: spec.max_redirects,
        max_body_bytes: spec.max_body_bytes,
        decompress: spec.decompress,
        tls: reached.tls,
        server_name: reached.server_name,
        proxy: reached.proxy,
        version: spec.http_version,
    })
}

/// The network part of one request, before judging.
pub struct Exchanged {
    result: Result<transport::Response, transport::Failure>,
    elapsed: std::time::Duration,
    /// When the last body byte (or the failure) arrived.
    pub finished: Instant,
}

/// Sends `request` within `deadline`, on a connection `keep` holds open
/// when given (a workload's `keep_alive`), else on a fresh one.
pub async fn exchange(
    request: &transport::Request,
    options: &TransportOptions,
    keep: Option<&transport::KeepAlive>,
    deadline: Instant,
) -> Exchanged {
    // Timed by the exchange's own phase laps: no clock read of its own.
    let timed = transport::exchange_timed(request, options, keep, deadline).await;
    Exchanged {
        result: timed.result,
        elapsed: timed.finished.saturating_duration_since(timed.started),
        finished: timed.finished,
    }
}

impl Exchanged {
    /// The service time: from the request's first byte being written to
    /// the arrival of the response's last byte (or the failure), summed
    /// over redirect hops, with no resolve, connect or tls, as wrk
    /// measures a request. `None` when no request was written (no
    /// connection, or a failure before the request left).
    pub fn service(&self) -> Option<std::time::Duration> {
        let service = match &self.result {
            Ok(response) => response.service,
            Err(failure) => failure.service,
        };
        (!service.is_zero()).then_some(service)
    }
}

/// Judges an exchange of a request for `requested` against `checks`,
/// handing back the response's head and body as well. The response is
/// read into expression facts when an expectation reads them or
/// `want_facts` (the caller keeps or captures from them).
fn judge_keeping(
    spec: &HttpSpec,
    exchanged: Exchanged,
    requested: &url::Url,
    scope: &Scope,
    checks: &Checks<'_>,
    want_facts: bool,
) -> (Performed, Option<Received>) {
    let Exchanged {
        result, elapsed, ..
    } = exchanged;
    // Where the answer came from: the last redirect's target, else the
    // request's own URL.
    let answered_url =
        |resp: &transport::Response| resp.final_url.as_ref().unwrap_or(requested).to_string();
    match result {
        Err(failure) => (
            Performed {
                reason: Some(failure.reason),
                error: Some(failure.message),
                http: Some(HttpFacts {
                    method: spec.method.to_string(),
                    url: requested.to_string(),
                    status: failure.status,
                    redirects: failure.redirects,
                    phases: failure.phases,
                    body_bytes: failure.body_bytes,
                    tls: false,
                    tls_earliest_cert_expiry: None,
                    version: failure.version.map(version_name),
                }),
                assertions: Vec::new(),
                responded: false,
                facts: None,
                not_json: None,
                exchange: None,
            },
            None,
        ),
        Ok(resp) => {
            let mut assertions = Vec::new();
            let mut reason = None;
            let (expect, implicit) = match checks {
                Checks::Spec | Checks::SpecWith(_) => {
                    (spec.expect.as_slice(), spec.implicit_status.as_ref())
                }
                Checks::Other(list) => (*list, None),
            };
            let (facts, not_json) = if want_facts || !expect.is_empty() {
                let (mut facts, not_json) = facts(&resp, &scope.vars, elapsed);
                if let Checks::SpecWith(prev) = checks {
                    facts.set_prev((*prev).clone());
                }
                (Some(facts), not_json)
            } else {
                (None, None)
            };
            if let Some(location) = implicit {
                let ok = resp.status.is_success();
                assertions.push(AssertionResult {
                    expression: "status is 2xx (implicit: no expectation reads `status`)".into(),
                    passed: ok,
                    actual: if ok {
                        String::new()
                    } else {
                        status_actual(&resp)
                    },
                    location: Some(location.clone()),
                });
                if !ok {
                    reason = Some(FailureReason::Status);
                }
            }
            let first = assertions.len();
            if let Some(facts) = &facts
                && super::check_into(&mut assertions, expect, facts) > 0
                && reason.is_none()
            {
                reason = Some(FailureReason::Assertion);
            }
            let mut error = super::expectation_summary(&assertions);
            if let Some(why) = &not_json {
                if super::kind::blame_not_json(&mut assertions[first..], expect, why) {
                    error = error.map(|summary| format!("{summary} ({why})"));
                }
            }
            let performed = Performed {
                reason,
                error,
                http: Some(HttpFacts {
                    method: spec.method.to_string(),
                    url: answered_url(&resp),
                    status: Some(resp.status.as_u16()),
                    redirects: resp.redirects,
                    phases: resp.phases,
                    body_bytes: resp.body.len() as u64,
                    tls: resp.tls,
                    tls_earliest_cert_expiry: resp.tls_earliest_expiry,
                    version: Some(version_name(resp.version)),
                }),
                assertions,
                responded: true,
                facts,
                not_json,
                exchange: None,
            };
            let received = Received {
                status: resp.status,
                url: answered_url(&resp),
                headers: resp.headers,
                body: resp.body,
            };
            (performed, Some(received))
        }
    }
}

/// What a workload keeps of a judged exchange.
pub struct Verdict {
    pub reason: Option<FailureReason>,
    /// Got a response (so its time is a latency).
    pub responded: bool,
}

/// [`judge`]'s verdict alone, for a workload's requests: the response is
/// read into expression facts only when an expectation reads them, and no
/// report is built, since a workload keeps counts rather than reports.
pub fn verdict(
    spec: &HttpSpec,
    exchanged: &Exchanged,
    scope: &Scope,
    checks: &Checks<'_>,
) -> Verdict {
    let resp = match &exchanged.result {
        Err(failure) => {
            return Verdict {
                reason: Some(failure.reason),
                responded: false,
            };
        }
        Ok(resp) => resp,
    };
    let (expect, implicit) = match checks {
        Checks::Spec | Checks::SpecWith(_) => {
            (spec.expect.as_slice(), spec.implicit_status.is_some())
        }
        Checks::Other(list) => (*list, false),
    };
    let mut reason = (implicit && !resp.status.is_success()).then_some(FailureReason::Status);
    if !expect.is_empty() {
        let (facts, _) = facts(resp, &scope.vars, exchanged.elapsed);
        let mut results = Vec::with_capacity(expect.len());
        if super::check_into(&mut results, expect, &facts) > 0 && reason.is_none() {
            reason = Some(FailureReason::Assertion);
        }
    }
    Verdict {
        reason,
        responded: true,
    }
}

/// The implicit check's `actual` for a non-2xx status: `status = 500`, and
/// for a redirect that came back because it has no `Location`, that too
/// (else a 302 reads as if following redirects were off).
fn status_actual(resp: &transport::Response) -> String {
    let status = resp.status.as_u16();
    let redirect = matches!(status, 301 | 302 | 303 | 307 | 308);
    if redirect && !resp.headers.contains_key(http::header::LOCATION) {
        format!("status = {status} (a redirect without a Location header)")
    } else {
        format!("status = {status}")
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
    /// A JSON body, written as text.
    Json(Vec<u8>),
    Form(Vec<(String, String)>),
}

pub fn render_body(body: &Body, scope: &Scope) -> Result<RenderedBody, String> {
    Ok(match body {
        Body::Empty => RenderedBody::Empty,
        Body::Raw(t) => RenderedBody::Raw(t.render(scope)?),
        Body::Json(t) => RenderedBody::Json(t.render_text(scope)?),
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
    let mut url = spec.url_for(ctx.base_url, scope)?;
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
        RenderedBody::Json(text) => {
            headers
                .entry(http::header::CONTENT_TYPE)
                .or_insert(HeaderValue::from_static("application/json"));
            Bytes::from(text)
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

/// The body as `json` reads it, or why it is not JSON.
fn parse_json(body: &[u8]) -> Result<cel::Value, String> {
    crate::expr::parse_json(body, "the body")
}

/// The values an expectation can read about a response, and why the body
/// is not JSON when it is not (`json` is then null).
fn facts(
    resp: &transport::Response,
    vars: &BTreeMap<String, serde_json::Value>,
    total: std::time::Duration,
) -> (Facts, Option<String>) {
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
    let (json, not_json) = match parse_json(&resp.body) {
        Ok(json) => (json, None),
        Err(why) => (cel::Value::Null, Some(why)),
    };
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
    // `http.version`: `"1.1"` or `"2"`, as negotiated.
    let mut http_facts: HashMap<String, cel::Value> = HashMap::new();
    http_facts.insert(
        "version".into(),
        cel::Value::String(std::sync::Arc::new(version_name(resp.version).to_owned())),
    );
    f.set("http", http_facts);
    f.set("status", i64::from(resp.status.as_u16()));
    f.set("headers", headers);
    f.set("body", body);
    f.set("json", json);
    f.set("timings", timings);
    f.set("vars", vars_value(vars));
    (f, not_json)
}

/// `vars` as expressions see it.
pub fn vars_value(vars: &BTreeMap<String, serde_json::Value>) -> cel::Value {
    vars.iter()
        .map(|(k, v)| (k.clone(), json_value(v)))
        .collect::<HashMap<_, _>>()
        .into()
}

/// One HTTP request written at `prefix` (`http`, `flow.steps[0]`).
/// Every string it sends is a template that may read `known_vars`.
pub fn request(
    c: &mut Checker<'_>,
    prefix: &str,
    raw: &RawHttp,
    known_vars: &[String],
) -> Option<HttpSpec> {
    let known = Some(known_vars);
    let method_text = raw.method.as_deref().unwrap_or("GET");
    let method = http::Method::from_bytes(method_text.to_ascii_uppercase().as_bytes())
        .map_err(|_| {
            c.err(
                &format!("{prefix}.method"),
                format!("expected an HTTP method like `GET`, found `{method_text}`"),
            )
        })
        .ok();
    let url = match raw.url.as_deref() {
        None => {
            c.missing(prefix, "url");
            None
        }
        Some(u) => {
            let path = format!("{prefix}.url");
            let text = c.text(&path, u, known);
            // A templated url is checked when it is rendered, at run time.
            match text
                .as_ref()
                .filter(|t| t.is_literal())
                .map(|t| check_url(t.source()))
            {
                Some(Err(mut msg)) => {
                    // The url may hold an expanded secret.
                    c.redactor.scrub(&mut msg);
                    c.err(&path, msg);
                    None
                }
                _ => text,
            }
        }
    };
    let mut headers = Vec::new();
    for (name, value) in &raw.headers {
        let key = format!("{prefix}.headers.{name}");
        let Ok(header) = http::HeaderName::from_bytes(name.as_bytes()) else {
            c.diags.push(
                c.doc
                    .error_at_key(&key, format!("`{name}` is not a valid HTTP header name")),
            );
            continue;
        };
        if let Some(t) = c.text(&key, value, known) {
            if t.is_literal() && http::HeaderValue::from_str(t.source()).is_err() {
                // Never echo the value: it may hold a secret.
                c.err(
                    &key,
                    "the header value is not valid in HTTP (control characters or non-ASCII)",
                );
                continue;
            }
            headers.push((header, t));
        }
    }
    let auth = c.auth(
        prefix,
        crate::config::check::RawAuth {
            basic_auth: raw.basic_auth.as_ref(),
            bearer_token: raw.bearer_token.as_deref(),
            oauth2: raw.oauth2.as_ref(),
        },
        headers.iter().map(|(n, _)| n),
    );
    if let Some(value) = &auth.header {
        headers.push((http::header::AUTHORIZATION, Text::literal(value)));
    }
    let mut query = Vec::new();
    for (k, v) in &raw.query {
        if let Some(t) = c.text(&format!("{prefix}.query.{k}"), v, known) {
            query.push((k.clone(), t));
        }
    }
    let bodies = [raw.body.is_some(), raw.json.is_some(), raw.form.is_some()];
    if bodies.iter().filter(|b| **b).count() > 1 {
        c.diags.push(c.doc.error_at_key(
            prefix,
            "`body`, `json` and `form` are exclusive: write at most one".to_owned(),
        ));
    }
    let body = if let Some(b) = &raw.body {
        c.text(&format!("{prefix}.body"), b, known).map(Body::Raw)
    } else if let Some(j) = &raw.json {
        let path = format!("{prefix}.json");
        match serde_json::to_value(j) {
            Ok(v) => c
                .json_template(&path, &v, known)
                .map(|t| Body::Json(JsonBody::new(t))),
            Err(e) => {
                c.err(&path, format!("cannot express this value as JSON: {e}"));
                None
            }
        }
    } else if let Some(form) = &raw.form {
        let mut pairs = Vec::new();
        for (k, v) in form {
            if let Some(t) = c.text(&format!("{prefix}.form.{k}"), v, known) {
                pairs.push((k.clone(), t));
            }
        }
        Some(Body::Form(pairs))
    } else {
        Some(Body::Empty)
    };
    let max_body_bytes = c.size(
        &format!("{prefix}.max_body_size"),
        raw.max_body_size.as_ref(),
        DEFAULT_MAX_BODY_BYTES,
        MAX_BODY_BYTES_LIMIT,
    );
    let expect = c.expectations(prefix, &raw.expect, SCOPE);
    let implicit_status = if expect.iter().any(|a| a.expr.reads("status")) {
        None
    } else {
        Some(c.location(&format!("{prefix}.url")))
    };
    Some(HttpSpec {
        method: method?,
        url: url?,
        headers,
        query,
        body: body?,
        follow_redirects: raw.follow_redirects.unwrap_or(true),
        max_redirects: raw.max_redirects.unwrap_or(DEFAULT_MAX_REDIRECTS),
        max_body_bytes,
        decompress: raw.decompress.unwrap_or(true),
        http_version: http_version(
            c,
            &format!("{prefix}.http_version"),
            raw.http_version.as_ref(),
        )
        .unwrap_or_default(),
        expect,
        implicit_status,
        oauth2: auth.oauth2,
        reach: std::sync::Arc::default(),
        joined: std::sync::Mutex::default(),
    })
}

/// Checks an `http_version` key at `path` (a request's, a workload's):
/// `"auto"`, `"1.1"` or `"2"`, as a string. `None` when absent or wrong
/// (the error recorded).
pub fn http_version(
    c: &mut Checker<'_>,
    path: &str,
    raw: Option<&toml::Value>,
) -> Option<HttpVersion> {
    let expected = HttpVersion::NAMES;
    match raw? {
        toml::Value::String(text) => {
            let version = HttpVersion::from_name(text.trim());
            if version.is_none() {
                c.err(path, format!("expected {expected}, found `\"{text}\"`"));
            }
            version
        }
        number @ (toml::Value::Integer(_) | toml::Value::Float(_)) => {
            c.err(
                path,
                format!("expected {expected} as a string, found the number {number} (write it in quotes: `http_version = \"{number}\"`)"),
            );
            None
        }
        other => {
            c.err(
                path,
                format!("expected {expected}, found a {}", other.type_str()),
            );
            None
        }
    }
}

/// The registry's line for `[http]`.
pub const KIND: KindEntry = KindEntry {
    name: "http",
    build: build_kind,
    gauges: &[],
};

fn build_kind(c: &mut Checker<'_>, input: &BuildInput<'_>) -> Option<Box<dyn Kind>> {
    let raw: RawHttp = c.table("http")?;
    build(c, "http", raw, input.known_vars).map(|spec| Box::new(spec) as Box<dyn Kind>)
}

impl Kind for HttpSpec {
    fn name(&self) -> &'static str {
        "http"
    }

    fn run<'a>(&'a self, ctx: &'a RunContext<'_>) -> RunFuture<'a> {
        Box::pin(run(self, ctx))
    }

    fn workload_tail(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::ZERO)
    }

    fn scope(&self) -> Option<crate::expr::Scope<'static>> {
        Some(SCOPE)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// An `[http]` probe's table: a request without the flow-step keys.
pub fn build(
    c: &mut Checker<'_>,
    prefix: &str,
    raw: RawHttp,
    known_vars: &[String],
) -> Option<HttpSpec> {
    for (key, set) in [
        ("name", raw.name.is_some()),
        ("capture", !raw.capture.is_empty()),
        ("until", raw.until.is_some()),
        ("until_interval", raw.until_interval.is_some()),
        ("until_timeout", raw.until_timeout.is_some()),
    ] {
        if set {
            c.err(
                &format!("{prefix}.{key}"),
                format!("`{key}` applies to flow steps only"),
            );
        }
    }
    let reach = super::reach::Reach::build(c, prefix, raw.tls.as_ref(), &raw.proxy_keys());
    let mut spec = request(c, prefix, &raw, known_vars)?;
    spec.reach = std::sync::Arc::new(reach);
    Some(spec)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::expr::JSON_MAX_DEPTH;

    #[test]
    fn urls_must_be_http_or_a_path() {
        for ok in [
            "/",
            "/orders?x=1",
            "http://h.example/x",
            "HTTPS://h.example",
            "https://h.example:8443/a",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        let err = |u: &str| check_url(u).unwrap_err();
        assert!(err("http//x/y").ends_with("found `http//x/y` (did you mean `http://x/y`?)"));
        assert!(err("https:/x").ends_with("(did you mean `https://x`?)"));
        assert!(err("http:x").ends_with("(did you mean `http://x`?)"));
        assert!(err("ftp://x").ends_with("found `ftp://x` (the `ftp` scheme is not HTTP)"));
        assert!(err("file:///etc/passwd").ends_with("(the `file` scheme is not HTTP)"));
        assert!(err("health").ends_with("found `health` (did you mean `/health`?)"));
        assert!(err("httpbin.org/get").ends_with("(did you mean `/httpbin.org/get`?)"));
        assert!(err("localhost:8080/x").ends_with("found `localhost:8080/x`"));
        assert!(err("x?u=ftp://y").ends_with("found `x?u=ftp://y`"));
        assert!(err("http://").contains("found `http://`"));
        assert!(err("").starts_with("expected an http(s) URL"));
        // An absolute URL is recognised in any case, as `check_url` does.
        let base = url::Url::parse("http://base.example/").unwrap();
        assert_eq!(
            join_url(&base, "HTTPS://h.example/x").unwrap().as_str(),
            "https://h.example/x"
        );
    }

    /// `depth` arrays nested in one another, built without recursion.
    fn nested(depth: usize) -> Vec<u8> {
        let mut doc = vec![b'['; depth];
        doc.resize(2 * depth, b']');
        doc
    }

    #[test]
    fn json_max_depth_is_serde_jsons_recursion_limit() {
        assert!(parse_json(&nested(JSON_MAX_DEPTH)).is_ok());
        let err = parse_json(&nested(JSON_MAX_DEPTH + 1)).unwrap_err();
        assert_eq!(
            err,
            format!(
                "the body is not JSON: nesting deeper than {JSON_MAX_DEPTH} levels \
                 (recursion limit exceeded at line 1 column {})",
                JSON_MAX_DEPTH + 1
            )
        );
    }

    #[test]
    fn a_100k_deep_body_is_refused_at_the_limit_without_recursing() {
        let started = std::time::Instant::now();
        let err = parse_json(&nested(100_000)).unwrap_err();
        assert!(err.contains("nesting deeper than 127 levels"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn a_body_that_is_not_json_says_where() {
        let err = |body: &str| parse_json(body.as_bytes()).unwrap_err();
        assert_eq!(
            err("<html>"),
            "the body is not JSON: expected value at line 1 column 1"
        );
        assert_eq!(
            err("{\"items\": [1, 2"),
            "the body is not JSON: EOF while parsing a list at line 1 column 15"
        );
        assert_eq!(err(""), "the body is not JSON: it is empty");
        assert_eq!(err(" \r\n"), "the body is not JSON: it is empty");
        assert_eq!(
            parse_json(b" {\"a\": 1} ").unwrap(),
            json_value(&serde_json::json!({"a": 1}))
        );
    }

    #[test]
    fn failed_expectations_reading_json_blame_the_body() {
        let why = "the body is not JSON: expected value at line 1 column 1";
        let location = crate::diag::SourceLocation {
            file: "p.toml".into(),
            line: 1,
            column: 1,
        };
        let expect: Vec<Assertion> = [
            "json.id == 1",
            "json != null",
            "json == null",
            "status == 200",
            "status == 200 && json.ok",
        ]
        .iter()
        .map(|src| Assertion {
            expr: crate::expr::Expr::compile(src, SCOPE.names).unwrap(),
            location: location.clone(),
        })
        .collect();
        let mut facts = Facts::default();
        facts.set("status", 500_i64);
        facts.set("json", cel::Value::Null);
        let mut results = Vec::new();
        super::super::check_into(&mut results, &expect, &facts);
        assert!(crate::probe::kind::blame_not_json(
            &mut results,
            &expect,
            why
        ));
        let actual: Vec<&str> = results.iter().map(|r| r.actual.as_str()).collect();
        assert_eq!(
            actual,
            [
                why,
                &format!("json = null; {why}"),
                "",
                "status = 500",
                &format!("status = 500; {why}"),
            ]
        );
        // Nothing to blame when every expectation reading `json` passed.
        let mut passed = results[2..4].to_vec();
        assert!(!crate::probe::kind::blame_not_json(
            &mut passed,
            &expect[2..4],
            why
        ));
    }

    #[test]
    fn a_literal_url_is_joined_once_per_base_and_never_across_bases() {
        let spec = |url: &str| HttpSpec {
            method: Method::GET,
            url: Text::literal(url),
            headers: Vec::new(),
            query: Vec::new(),
            body: Body::Empty,
            follow_redirects: true,
            max_redirects: 0,
            max_body_bytes: 0,
            decompress: false,
            http_version: HttpVersion::default(),
            expect: Vec::new(),
            implicit_status: None,
            oauth2: None,
            reach: std::sync::Arc::default(),
            joined: std::sync::Mutex::default(),
        };
        let scope = Scope::new(
            crate::generate::Generator::new(Some(1), "p", 0, "synth-"),
            BTreeMap::new(),
            "00112233aabbccdd",
            "p",
            "a",
        );
        let a = url::Url::parse("http://127.0.0.1:1/v1").unwrap();
        let b = url::Url::parse("https://b.example/").unwrap();
        let health = spec("/health");
        for _ in 0..2 {
            let url = health.url_for(&a, &scope).unwrap();
            assert_eq!(url.as_str(), "http://127.0.0.1:1/v1/health");
            let url = health.url_for(&b, &scope).unwrap();
            assert_eq!(url.as_str(), "https://b.example/health");
        }
        assert_eq!(health.joined.lock().unwrap().len(), 2);
        // The cache is bounded: past it, a base is joined every time.
        for port in 2..40 {
            let base = url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
            let url = health.url_for(&base, &scope).unwrap();
            assert_eq!(url.port(), Some(port));
        }
        assert_eq!(health.joined.lock().unwrap().len(), JOINED_BASES);
        // A literal that cannot be used says so at every run, and is not kept.
        let bad = spec("health");
        let err = bad.url_for(&a, &scope).unwrap_err();
        assert!(err.contains("unusable url"), "{err}");
        assert!(bad.joined.lock().unwrap().is_empty());
    }

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
