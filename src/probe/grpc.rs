//! The `grpc` probe: the standard gRPC health check (`grpc.health.v1.Health/Check`).
//!
//! One run opens a fresh connection (plaintext HTTP/2 with prior knowledge,
//! or TLS with ALPN `h2`), sends one `Check` for the configured service and
//! reads the serving status and the gRPC status from the trailers. The phases
//! are `resolve`, `connect`, `tls` and `call` (the HTTP/2 handshake and the
//! exchange), contiguous, under the probe's one deadline.
//!
//! The exchange is spoken with the `h2` crate directly and the two tiny
//! messages are encoded by hand, rather than through tonic and
//! tonic-health: the probe needs the resolve/connect/TLS steps in its own
//! hands for phase timings (tonic's channel hides them), it must see exactly
//! what a broken peer sent (an HTTP/1 answer, a missing `grpc-status`, a
//! non-gRPC HTTP status) to name the failure, and `HealthCheckRequest` is
//! one optional string field while `HealthCheckResponse` is one enum field.
//! The sandbox's server is built the same way; the integration tests check
//! both against tonic-health, the reference implementation.
//!
//! Resolving, connecting and the TLS handshake are [`super::net`]'s
//! ([`dial`]), shared with the `stream` kind.

use super::kind::{Assertion, BuildInput, Kind, KindEntry, RunContext, RunFuture};
use crate::config::check::Checker;
use crate::expr::Facts;
use crate::net::{AbortOnDrop, Clock, Fail, Io, TlsSetup, describe, dial};
use crate::outcome::{Details, FailureReason, KindFacts, Outcome};
use crate::tagging::RunIds;
use crate::template::Text;
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use rustls_pki_types::ServerName;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use url::Host;

/// The variables a `grpc` expectation can read.
pub const SCOPE: &[&str] = &["status", "grpc_code", "grpc_message", "timings", "vars"];

/// The method every run calls.
pub const HEALTH_CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// The largest response body (all messages) a run reads; a health response
/// is a few bytes, so more is a hostile or confused peer.
const MAX_RESPONSE_BYTES: usize = 16 * 1024;

/// The largest header block (headers or trailers) accepted from the peer.
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// The longest `grpc-message` kept in facts and messages.
const MAX_MESSAGE_CHARS: usize = 512;

/// Metadata names gRPC or HTTP/2 reserve: the probe sets them itself, and
/// HTTP/2 forbids the connection-specific ones outright.
const RESERVED: &[&str] = &[
    "content-type",
    "te",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// The `[grpc]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrpc {
    /// `host:port`, or `http://host:port` / `https://host:port`.
    pub address: Option<String>,
    /// The service to ask about; "" (the default) asks about the server.
    pub service: Option<String>,
    pub tls: Option<bool>,
    pub server_name: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub expect: Vec<String>,
}

/// The checked `[grpc]` table.
#[derive(Debug)]
pub struct GrpcSpec {
    pub address: Text,
    pub service: String,
    /// `None`: from the address (`https://` means TLS, anything else not).
    pub tls: Option<bool>,
    /// SNI and verification name, over the environment's and the host.
    pub server_name: Option<String>,
    pub metadata: Vec<(HeaderName, Text)>,
    pub expect: Vec<Assertion>,
    /// No expectation reads `status`: anything but SERVING fails the run
    /// with `not_serving` (like the http probe's implicit 2xx).
    pub implicit_serving: bool,
    /// No expectation reads `grpc_code`: a non-OK gRPC status fails the run
    /// with `grpc`.
    pub implicit_code: bool,
}

/// What a `grpc` run saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GrpcFacts {
    /// `host:port` as called.
    pub address: String,
    pub service: String,
    pub tls: bool,
    /// SERVING, NOT_SERVING, UNKNOWN or SERVICE_UNKNOWN (a `Check` answered
    /// NOT_FOUND, the health protocol's way of saying the service is
    /// unknown); `None` when no answer came.
    pub status: Option<String>,
    pub grpc_code: Option<u32>,
    pub grpc_code_name: Option<String>,
    pub grpc_message: Option<String>,
    pub http_status: Option<u16>,
    /// With TLS: the earliest `notAfter` of the presented certificates,
    /// Unix seconds (exported as `probe_ssl_earliest_cert_expiry`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_expiry: Option<i64>,
}

impl GrpcFacts {
    /// Gauges for /metrics, labelled with probe and environment.
    pub fn gauges(&self) -> Vec<(&'static str, f64)> {
        let serving = self.status.as_deref() == Some("SERVING");
        let mut out = vec![(
            "probe_grpc_healthcheck_response",
            if serving { 1.0 } else { 0.0 },
        )];
        if let Some(code) = self.grpc_code {
            out.push(("probe_grpc_status_code", f64::from(code)));
        }
        out
    }
}

/// Checks the raw table; problems are recorded on `c` at `grpc.…` paths.
pub(crate) fn build(raw: RawGrpc, c: &mut Checker<'_>) -> Option<GrpcSpec> {
    let address = match raw.address.as_deref() {
        None => {
            c.missing("grpc", "address");
            None
        }
        Some(a) => {
            let text = c.text("grpc.address", a, None);
            if let Some(t) = text.as_ref().filter(|t| t.is_literal()) {
                match parse_address(t.source(), raw.tls) {
                    Err(msg) => c.err("grpc.address", msg),
                    Ok(target) if raw.server_name.is_some() && !target.tls => c.err(
                        "grpc.server_name",
                        "`server_name` applies to TLS only: set `tls = true` or use an https:// address",
                    ),
                    Ok(_) => {}
                }
            }
            text
        }
    };
    let service = match raw.service.as_deref() {
        None => Some(String::new()),
        Some(s) => c.expand("grpc.service", s),
    };
    let server_name = raw
        .server_name
        .as_deref()
        .and_then(|s| c.expand("grpc.server_name", s));
    if let Some(name) = &server_name {
        if ServerName::try_from(name.clone()).is_err() {
            c.err(
                "grpc.server_name",
                format!("expected a DNS name or an IP address, found `{name}`"),
            );
        }
    }
    let mut metadata = Vec::new();
    for (name, value) in &raw.metadata {
        let key = format!("grpc.metadata.{name}");
        let header = match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => h,
            Err(_) => {
                c.err(&key, format!("`{name}` is not a valid metadata key"));
                continue;
            }
        };
        if let Some(why) = reserved(&header) {
            c.err(&key, why);
            continue;
        }
        if header.as_str().ends_with("-bin") {
            c.err(
                &key,
                "binary metadata (`-bin` keys) is not supported; send text metadata",
            );
            continue;
        }
        if let Some(t) = c.text(&key, value, None) {
            if t.is_literal() && HeaderValue::from_str(t.source()).is_err() {
                // Never echo the value: it may hold a secret.
                c.err(
                    &key,
                    "the metadata value is not valid (control characters or non-ASCII)",
                );
                continue;
            }
            metadata.push((header, t));
        }
    }
    let expect = c.expectations("grpc", &raw.expect, SCOPE);
    let implicit_serving = !expect.iter().any(|a| a.expr.reads("status"));
    let implicit_code = !expect.iter().any(|a| a.expr.reads("grpc_code"));
    Some(GrpcSpec {
        address: address?,
        service: service?,
        tls: raw.tls,
        server_name,
        metadata,
        expect,
        implicit_serving,
        implicit_code,
    })
}

/// Why a metadata key may not be set by a probe, if it may not.
fn reserved(name: &HeaderName) -> Option<String> {
    let n = name.as_str();
    if n.starts_with("grpc-") {
        return Some(format!("`{n}`: `grpc-` keys are reserved by gRPC"));
    }
    RESERVED
        .contains(&n)
        .then(|| format!("`{n}` is set by the probe (or forbidden in HTTP/2)"))
}

/// Where to call: parsed from `address`.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    host: Host<String>,
    port: u16,
    tls: bool,
}

impl Target {
    /// `host:port`, the `:authority` of the call.
    fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Parses `host:port`, `[v6]:port` or an `http://`/`https://` URL; an
/// explicit `tls` must agree with a URL's scheme.
fn parse_address(text: &str, tls: Option<bool>) -> Result<Target, String> {
    let text = text.trim();
    if text.contains("://") {
        let url = url::Url::parse(text)
            .map_err(|e| format!("expected `host:port` or an http(s) URL, found `{text}`: {e}"))?;
        let secure = match url.scheme() {
            "http" => false,
            "https" => true,
            other => {
                return Err(format!(
                    "unsupported scheme `{other}` in `{text}` (expected http or https, or `host:port`)"
                ));
            }
        };
        if tls.is_some_and(|t| t != secure) {
            return Err(format!(
                "`tls = {}` contradicts the {} scheme of `{text}`",
                !secure,
                url.scheme()
            ));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(format!(
                "`{text}` has a path or query; a gRPC address is only a scheme, host and port"
            ));
        }
        let (Some(host), Some(port)) = (url.host(), url.port_or_known_default()) else {
            return Err(format!("`{text}` has no host"));
        };
        return Ok(Target {
            host: host.to_owned(),
            port,
            tls: secure,
        });
    }
    let bad = |why: &str| format!("expected `host:port` or an http(s) URL, found `{text}`: {why}");
    let (host, port) = text.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?;
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if host.contains(':') && !host.starts_with('[') {
        return Err(bad("write an IPv6 address in brackets, like `[::1]:50051`"));
    }
    let host = Host::parse(host).map_err(|e| bad(&e.to_string()))?;
    Ok(Target {
        host,
        port,
        tls: tls.unwrap_or(false),
    })
}

pub async fn run(spec: &GrpcSpec, ctx: &RunContext<'_>) -> Outcome {
    let ids = RunIds::generate();
    let mut outcome = Outcome::new(&ctx.probe.name, &ctx.env.name, "grpc", &ids);
    let mut clock = Clock::new(ctx.deadline(), &["resolve", "connect", "tls", "call"]);
    let mut facts = GrpcFacts {
        service: spec.service.clone(),
        ..GrpcFacts::default()
    };
    let result = call(spec, ctx, &ids, &mut clock, &mut facts).await;
    clock.record(&mut outcome);
    match result {
        Err(fail) => outcome.fail(fail.reason, fail.message),
        Ok(()) => {
            outcome.responded = true;
            judge(spec, &facts, &mut outcome);
            let mut f = Facts::default();
            f.set("status", facts.status.clone().unwrap_or_default());
            f.set("grpc_code", facts.grpc_code.map_or(-1, i64::from));
            f.set(
                "grpc_message",
                facts.grpc_message.clone().unwrap_or_default(),
            );
            f.set("timings", clock.timings());
            f.set("vars", super::kind::vars_value(ctx.vars));
            super::kind::check_expectations(&mut outcome, &spec.expect, &f);
        }
    }
    ctx.redactor.scrub(&mut facts.address);
    if let Some(m) = facts.grpc_message.as_mut() {
        ctx.redactor.scrub(m);
    }
    outcome.details = Some(Details::new(facts));
    super::kind::finish(&mut outcome);
    super::kind::redact(outcome, ctx.redactor)
}

/// The implicit checks: a non-OK gRPC status, then a status other than
/// SERVING, unless expectations read them.
fn judge(spec: &GrpcSpec, facts: &GrpcFacts, outcome: &mut Outcome) {
    let code = facts.grpc_code.unwrap_or(0);
    let detail = match facts.grpc_message.as_deref() {
        Some(m) if !m.is_empty() => format!(": {m}"),
        _ => String::new(),
    };
    let what = if spec.service.is_empty() {
        "the server".to_owned()
    } else {
        format!("service `{}`", spec.service)
    };
    if code != 0 && code != NOT_FOUND {
        if spec.implicit_code {
            let name = code_name(code);
            let how = match facts.http_status {
                Some(s) if s != 200 => format!(
                    "answered HTTP {s} without a gRPC status ({name} by the gRPC HTTP mapping)"
                ),
                _ => format!("ended with gRPC status {name} ({code})"),
            };
            outcome.fail(
                FailureReason::Grpc,
                format!("Health/Check for {what} on {} {how}{detail}", facts.address),
            );
        }
        return;
    }
    match facts.status.as_deref() {
        Some("SERVING") | None => {}
        Some(status) if spec.implicit_serving => {
            let how = if code == NOT_FOUND {
                format!(" (Check answered NOT_FOUND{detail})")
            } else {
                String::new()
            };
            outcome.fail(
                FailureReason::NotServing,
                format!("{what} on {} is {status}{how}", facts.address),
            );
        }
        Some(_) => {}
    }
}

/// Renders, connects and calls; fills `facts` as it learns things.
async fn call(
    spec: &GrpcSpec,
    ctx: &RunContext<'_>,
    ids: &RunIds,
    clock: &mut Clock,
    facts: &mut GrpcFacts,
) -> Result<(), Fail> {
    let request_error = |m: String| Fail::new(FailureReason::Request, m);
    let address = ctx.render(&spec.address, ids).map_err(request_error)?;
    let target = parse_address(&address, spec.tls).map_err(request_error)?;
    facts.address = target.authority();
    facts.tls = target.tls;
    let request = build_request(spec, ctx, ids, &target, clock.deadline())?;

    let tls = target.tls.then(|| TlsSetup {
        config: Arc::clone(&ctx.env.tls_client),
        server_name: spec
            .server_name
            .as_deref()
            .or(ctx.env.tls.server_name.as_deref()),
        alpn: b"h2",
    });
    // Rendering and building the request are synthmon's work, not the
    // target's: the measured phases start here.
    clock.begin();
    let dialed = dial(
        &target.host,
        target.port,
        tls,
        clock,
        ["resolve", "connect", "tls"],
    )
    .await?;
    facts.cert_expiry = dialed.cert_expiry;
    let sniff = Sniff::new(dialed.io);
    let head = Arc::clone(&sniff.head);
    let exchange = exchange(sniff, request, health_request(&spec.service), clock, facts).await;
    clock.lap("call");
    exchange.map_err(|fail| explain_http1(fail, &head, &facts.address))
}

/// Turns an HTTP/2 failure into a clearer one when the peer's first bytes
/// show it answered in HTTP/1, or when it sent nothing at all (an HTTP/1
/// server may just close the connection at the HTTP/2 preface).
fn explain_http1(fail: Fail, head: &OnceLock<Vec<u8>>, address: &str) -> Fail {
    if fail.reason != FailureReason::Protocol {
        return fail;
    }
    match head.get() {
        Some(bytes) if bytes.starts_with(b"HTTP/1") => {
            let line = String::from_utf8_lossy(bytes);
            let line = line.lines().next().unwrap_or_default();
            Fail::new(
                FailureReason::Protocol,
                format!(
                    "{address} answered in HTTP/1 (`{line}`), not HTTP/2: it is not a gRPC endpoint"
                ),
            )
        }
        Some(_) => fail,
        None => Fail::new(
            FailureReason::Protocol,
            format!(
                "{}; {address} sent nothing back: it does not seem to speak HTTP/2 (gRPC)",
                fail.message
            ),
        ),
    }
}

/// The HTTP/2 request of a `Check`: metadata (environment headers, the
/// probe's `metadata`, the tagging), then the headers gRPC requires.
fn build_request(
    spec: &GrpcSpec,
    ctx: &RunContext<'_>,
    ids: &RunIds,
    target: &Target,
    deadline: Instant,
) -> Result<http::Request<()>, Fail> {
    let bad = |m: String| Fail::new(FailureReason::Request, m);
    let mut headers = HeaderMap::new();
    for (name, value) in &ctx.env.headers {
        if reserved(name).is_some() {
            continue;
        }
        let value = HeaderValue::from_str(value).map_err(|_| {
            bad(format!(
                "header `{name}` has a value that is not valid in HTTP"
            ))
        })?;
        headers.insert(name.clone(), value);
    }
    for (name, text) in &spec.metadata {
        let value = ctx.render(text, ids).map_err(bad)?;
        let value = HeaderValue::from_str(&value)
            .map_err(|_| bad(format!("metadata `{name}` has a value that is not valid")))?;
        headers.insert(name.clone(), value);
    }
    ids.apply(ctx.tagging, &ctx.probe.name, &mut headers);
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    // The server learns the deadline, so it can give up when we do.
    let left = deadline.saturating_duration_since(Instant::now());
    let millis = left.as_millis().clamp(1, 99_999_999);
    if let Ok(v) = HeaderValue::from_str(&format!("{millis}m")) {
        headers.insert("grpc-timeout", v);
    }
    let scheme = if target.tls { "https" } else { "http" };
    let uri = format!("{scheme}://{}{HEALTH_CHECK_PATH}", target.authority());
    let mut request = http::Request::new(());
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = uri
        .parse()
        .map_err(|e| bad(format!("cannot build the request URI `{uri}`: {e}")))?;
    *request.headers_mut() = headers;
    Ok(request)
}

/// One `Check` over a fresh HTTP/2 connection on `io`.
async fn exchange<T>(
    io: T,
    request: http::Request<()>,
    message: Bytes,
    clock: &Clock,
    facts: &mut GrpcFacts,
) -> Result<(), Fail>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let doing = "during the call (call)";
    let address = facts.address.clone();
    let h2_error = |e: h2::Error| {
        Fail::new(
            FailureReason::Protocol,
            format!(
                "the HTTP/2 exchange with {address} failed: {}",
                describe(&e)
            ),
        )
    };
    let (sender, connection) = clock
        .within(
            doing,
            h2::client::Builder::new()
                .max_header_list_size(MAX_HEADER_LIST_BYTES)
                .enable_push(false)
                .handshake::<_, Bytes>(io),
        )
        .await?
        .map_err(h2_error)?;
    let _driver = AbortOnDrop(tokio::spawn(async move {
        // The connection's error also reaches the stream, which reports it.
        let _ = connection.await;
    }));
    let mut sender = clock
        .within(doing, sender.ready())
        .await?
        .map_err(h2_error)?;
    let (response, mut body) = sender.send_request(request, false).map_err(h2_error)?;
    body.send_data(message, true).map_err(h2_error)?;
    let response = clock.within(doing, response).await?.map_err(h2_error)?;
    let (parts, mut body) = response.into_parts();
    facts.http_status = Some(parts.status.as_u16());

    let mut data = BytesMut::new();
    while let Some(chunk) = clock.within(doing, body.data()).await? {
        let chunk = chunk.map_err(h2_error)?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if data.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(Fail::new(
                FailureReason::BodyTooLarge,
                format!(
                    "the health response from {} exceeds {MAX_RESPONSE_BYTES} bytes",
                    facts.address
                ),
            ));
        }
        data.extend_from_slice(&chunk);
    }
    let trailers = clock
        .within(doing, body.trailers())
        .await?
        .map_err(h2_error)?;
    // A "trailers-only" answer carries the status in its headers.
    let status_from = trailers
        .as_ref()
        .filter(|t| t.contains_key("grpc-status"))
        .unwrap_or(&parts.headers);
    facts.grpc_message = status_from
        .get("grpc-message")
        .map(|v| percent_decode(v.as_bytes()));
    let code = match status_from.get("grpc-status") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .ok_or_else(|| {
                Fail::new(
                    FailureReason::Protocol,
                    format!("{} sent an invalid grpc-status {v:?}", facts.address),
                )
            })?,
        None if parts.status != http::StatusCode::OK => http_to_grpc(parts.status.as_u16()),
        None => {
            return Err(Fail::new(
                FailureReason::Protocol,
                format!(
                    "the response from {} ended without a grpc-status (content type {:?})",
                    facts.address,
                    parts
                        .headers
                        .get(http::header::CONTENT_TYPE)
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                        .unwrap_or_default()
                ),
            ));
        }
    };
    facts.grpc_code = Some(code);
    facts.grpc_code_name = Some(code_name(code).to_owned());
    if code == NOT_FOUND {
        facts.status = Some("SERVICE_UNKNOWN".to_owned());
    }
    if code != 0 {
        return Ok(());
    }
    let is_grpc = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if !is_grpc {
        return Err(Fail::new(
            FailureReason::Protocol,
            format!(
                "{} answered with content type {:?}, not application/grpc",
                facts.address,
                parts.headers.get(http::header::CONTENT_TYPE)
            ),
        ));
    }
    let status = decode_health_response(&data).map_err(|why| {
        Fail::new(
            FailureReason::Protocol,
            format!(
                "cannot read the health response from {}: {why}",
                facts.address
            ),
        )
    })?;
    facts.status = Some(serving_status_name(status));
    Ok(())
}

/// The framed `HealthCheckRequest { service }`: field 1, a string, left out
/// when empty (proto3).
fn health_request(service: &str) -> Bytes {
    let mut message = BytesMut::new();
    if !service.is_empty() {
        message.put_u8(0x0a);
        put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    frame(&message)
}

/// A gRPC length-prefixed message, uncompressed.
pub(crate) fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(0);
    out.put_u32(message.len() as u32);
    out.extend_from_slice(message);
    out.freeze()
}

/// The one message of a length-prefixed body; `Err` says what is wrong.
pub(crate) fn unframe(body: &[u8]) -> Result<&[u8], String> {
    let [flag, a, b, c, d, rest @ ..] = body else {
        return Err(format!(
            "expected a length-prefixed message, got {} bytes",
            body.len()
        ));
    };
    if *flag != 0 {
        return Err("the message is compressed, but no compression was offered".to_owned());
    }
    let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
    if rest.len() != len {
        return Err(format!(
            "the message announces {len} bytes, the body holds {}",
            rest.len()
        ));
    }
    Ok(rest)
}

fn put_varint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// Reads a varint at the start of `input`, returning it and the rest.
fn varint(input: &[u8]) -> Result<(u64, &[u8]), String> {
    let mut value = 0u64;
    for (i, byte) in input.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, &input[i + 1..]));
        }
    }
    Err("truncated or overlong varint".to_owned())
}

/// Walks the fields of a protobuf message, calling `on_field` with each
/// field number and its varint value (or `None` for other wire types, which
/// are skipped).
pub(crate) fn fields(
    mut input: &[u8],
    mut on_field: impl FnMut(u64, Option<u64>, &[u8]),
) -> Result<(), String> {
    while !input.is_empty() {
        let (key, rest) = varint(input)?;
        let (number, wire) = (key >> 3, key & 7);
        input = match wire {
            0 => {
                let (v, rest) = varint(rest)?;
                on_field(number, Some(v), &[]);
                rest
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                rest.get(n..).ok_or("truncated fixed-width field")?
            }
            2 => {
                let (len, rest) = varint(rest)?;
                let len = usize::try_from(len).map_err(|_| "field too long")?;
                let bytes = rest.get(..len).ok_or("truncated length-delimited field")?;
                on_field(number, None, bytes);
                &rest[len..]
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
    }
    Ok(())
}

/// The `status` of a framed `HealthCheckResponse` (0, UNKNOWN, when the
/// field is absent, as proto3 defines).
fn decode_health_response(body: &[u8]) -> Result<u64, String> {
    let message = unframe(body)?;
    let mut status = 0;
    fields(message, |number, value, _| {
        if let (1, Some(v)) = (number, value) {
            status = v;
        }
    })?;
    Ok(status)
}

/// The name of a `ServingStatus` value.
pub(crate) fn serving_status_name(value: u64) -> String {
    match value {
        0 => "UNKNOWN".to_owned(),
        1 => "SERVING".to_owned(),
        2 => "NOT_SERVING".to_owned(),
        3 => "SERVICE_UNKNOWN".to_owned(),
        other => format!("UNKNOWN({other})"),
    }
}

/// gRPC's NOT_FOUND: a `Check` for a service the server does not know.
const NOT_FOUND: u32 = 5;

/// The canonical name of a gRPC status code.
pub fn code_name(code: u32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNRECOGNIZED",
    }
}

/// The gRPC code for an HTTP status that came without a `grpc-status`
/// (gRPC's "HTTP to gRPC status code mapping").
fn http_to_grpc(status: u16) -> u32 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        _ => 2,
    }
}

/// Decodes a percent-encoded `grpc-message`, capped in length.
fn percent_decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (raw[i], raw.get(i + 1).copied(), raw.get(i + 2).copied()) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    let text = String::from_utf8_lossy(&out);
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

/// A stream that keeps the first bytes the peer sent, to recognise an
/// HTTP/1 answer to an HTTP/2 preface.
struct Sniff {
    inner: Box<dyn Io>,
    head: Arc<OnceLock<Vec<u8>>>,
}

impl Sniff {
    fn new(inner: Box<dyn Io>) -> Self {
        Sniff {
            inner,
            head: Arc::new(OnceLock::new()),
        }
    }
}

impl AsyncRead for Sniff {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let new = &buf.filled()[before..];
        if !new.is_empty() {
            let keep = new.len().min(64);
            self.head.get_or_init(|| new[..keep].to_vec());
        }
        poll
    }
}

impl AsyncWrite for Sniff {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The registry's line for `[grpc]`.
pub const KIND: KindEntry = KindEntry {
    name: "grpc",
    build: build_kind,
};

fn build_kind(c: &mut Checker<'_>, _: &BuildInput<'_>) -> Option<Box<dyn Kind>> {
    let raw: RawGrpc = c.table("grpc")?;
    build(raw, c).map(|spec| Box::new(spec) as Box<dyn Kind>)
}

impl Kind for GrpcSpec {
    fn name(&self) -> &'static str {
        "grpc"
    }

    fn run<'a>(&'a self, ctx: &'a RunContext<'_>) -> RunFuture<'a> {
        Box::pin(run(self, ctx))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl KindFacts for GrpcFacts {
    fn gauges(&self) -> Vec<(&'static str, f64)> {
        GrpcFacts::gauges(self)
    }
    fn cert_expiry(&self) -> Option<i64> {
        self.cert_expiry
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_encoded_like_protobuf_does() {
        // protoc --encode: service "orders" is 0a 06 "orders".
        assert_eq!(&health_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &health_request("orders")[..],
            &[0, 0, 0, 0, 8, 0x0a, 6, b'o', b'r', b'd', b'e', b'r', b's']
        );
        let long = "s".repeat(200);
        let framed = health_request(&long);
        // 200 needs a two-byte varint: c8 01.
        assert_eq!(&framed[5..8], &[0x0a, 0xc8, 0x01]);
        assert_eq!(framed.len(), 5 + 3 + 200);
    }

    #[test]
    fn the_response_is_decoded_and_unknown_fields_skipped() {
        assert_eq!(decode_health_response(&frame(&[0x08, 0x01])).unwrap(), 1);
        assert_eq!(decode_health_response(&frame(&[])).unwrap(), 0);
        // An unknown string field 2 and a fixed32 field 3 around the status.
        let msg = [0x12, 2, b'h', b'i', 0x08, 0x02, 0x1d, 1, 2, 3, 4];
        assert_eq!(decode_health_response(&frame(&msg)).unwrap(), 2);
        assert!(
            decode_health_response(&[1, 0, 0, 0, 0])
                .unwrap_err()
                .contains("compressed")
        );
        assert!(
            decode_health_response(&[0, 0, 0, 0, 3, 0x08])
                .unwrap_err()
                .contains("announces 3 bytes")
        );
        assert!(decode_health_response(&frame(&[0x08])).is_err());
        assert!(decode_health_response(&frame(&[0x08, 0xff])).is_err());
        assert!(decode_health_response(&frame(&[0x0a, 9, 1])).is_err());
    }

    #[test]
    fn addresses_parse_with_or_without_a_scheme() {
        let t = parse_address("127.0.0.1:50051", None).unwrap();
        assert_eq!((t.authority().as_str(), t.tls), ("127.0.0.1:50051", false));
        let t = parse_address("[::1]:443", Some(true)).unwrap();
        assert_eq!((t.authority().as_str(), t.tls), ("[::1]:443", true));
        let t = parse_address("https://grpc.example", None).unwrap();
        assert_eq!((t.authority().as_str(), t.tls), ("grpc.example:443", true));
        let t = parse_address("http://localhost:8080/", None).unwrap();
        assert_eq!((t.authority().as_str(), t.tls), ("localhost:8080", false));
        for (bad, why) in [
            ("localhost", "no port"),
            ("localhost:0", "1 to 65535"),
            (":80", "no host"),
            ("::1:80", "brackets"),
            ("ftp://h:1", "unsupported scheme"),
            ("http://h:1/x", "path"),
        ] {
            let err = parse_address(bad, None).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let err = parse_address("https://h:1", Some(false)).unwrap_err();
        assert!(err.contains("contradicts"), "{err}");
    }

    #[test]
    fn grpc_messages_are_percent_decoded_and_capped() {
        assert_eq!(
            percent_decode(b"unknown%20service%3A x"),
            "unknown service: x"
        );
        assert_eq!(percent_decode(b"100%"), "100%");
        assert_eq!(percent_decode(b"caf%C3%A9"), "café");
        let long = percent_decode("x".repeat(2000).as_bytes());
        assert_eq!(long.chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn http_statuses_map_to_grpc_codes() {
        assert_eq!(code_name(http_to_grpc(404)), "UNIMPLEMENTED");
        assert_eq!(code_name(http_to_grpc(503)), "UNAVAILABLE");
        assert_eq!(code_name(http_to_grpc(401)), "UNAUTHENTICATED");
        assert_eq!(code_name(http_to_grpc(418)), "UNKNOWN");
    }
}
