//! One health `Check` over a fresh connection: the request (metadata,
//! the headers gRPC requires, `grpc-timeout` from the deadline), dialing
//! through `net`, the HTTP/2 exchange with `h2`, the status from the
//! trailers, and a clearer failure when the peer answers in HTTP/1.

use super::facts::GrpcFacts;
use super::spec::{GrpcSpec, Target, parse_address, reserved};
use super::wire::{
    HEALTH_CHECK_PATH, NOT_FOUND, code_name, decode_health_response, health_request, http_to_grpc,
    percent_decode, serving_status_name,
};
use crate::net::{AbortOnDrop, Clock, Fail, Io, TlsSetup, describe, dial_via};
use crate::outcome::FailureReason;
use crate::probe::kind::RunContext;
use crate::tagging::RunIds;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The largest response body (all messages) a run reads; a health response
/// is a few bytes, so more is a hostile or confused peer.
const MAX_RESPONSE_BYTES: usize = 16 * 1024;

/// The largest header block (headers or trailers) accepted from the peer.
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// Renders, connects and calls; fills `facts` as it learns things.
pub(super) async fn call(
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

    // The environment's TLS files as they are now.
    let config = match target.tls {
        true => Some(crate::probe::reach::environment_tls(ctx).await?),
        false => None,
    };
    let tls = config.map(|config| TlsSetup {
        config,
        server_name: spec
            .server_name
            .as_deref()
            .or(ctx.env.tls.server_name.as_deref()),
        alpn: b"h2",
    });
    // Rendering and building the request are synthmon's work, not the
    // target's: the measured phases start here.
    clock.begin();
    let dialed = dial_via(
        &target.host,
        target.port,
        tls,
        ctx.env.proxy.as_deref(),
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
