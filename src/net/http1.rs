//! One HTTP exchange over a fresh connection, with real phase timings, or
//! over a kept-alive one: HTTP/1.1 here, HTTP/2 through [`super::http2`].
//!
//! This module owns the wire side of an HTTP probe: resolving the host,
//! connecting, the TLS handshake, sending one request, reading the response
//! under a body cap, decoding gzip or deflate, and following redirects. By
//! default ([`exchange`]) every hop opens its own connection, sends
//! `Connection: close` and closes it afterwards, so a probe measures what a
//! new user sees. A connection has no task of its own: the exchange drives
//! hyper's connection future itself (`drive`), so nothing outlives the
//! exchange and a request costs no hop between tasks. One deadline (one
//! timer) covers the whole exchange, every redirect hop included.
//!
//! [`exchange_in`] with a [`KeepAlive`] (a workload's `keep_alive = true`)
//! sends each hop on an idle connection to its origin when there is one
//! (its phases then have no resolve, connect or tls), else on a new one
//! that the pool keeps. A connection goes back to the pool only after a
//! complete HTTP/1.1 response without `Connection: close`; an error or the
//! deadline closes it. A request that meets a kept connection the server
//! had already closed (its idle timeout racing the request) is sent again
//! once on a new connection, if it had not left or is idempotent: the
//! server closing an idle connection is not a fault of the target.
//!
//! HTTP/2 ([`TransportOptions::version`], [`super::http2`]): over TLS the
//! version is offered by ALPN (`auto`: `h2` and `http/1.1`, the server
//! picks), over cleartext HTTP/2 is used with prior knowledge (h2c) only
//! when asked for. An HTTP/2 hop has the same phases, redirects, body cap,
//! decoding and deadline; its `processing` ends when the first frame of
//! its own stream arrives. With a [`KeepAlive`], requests to an origin
//! that speaks HTTP/2 share one connection (streams multiplexed), which
//! one request opens while the others wait for it.
//!
//! A proxy is used only when given ([`TransportOptions::proxy`]):
//! `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` in the process environment
//! are never read here, because a probe measures the path it says it
//! measures. Through a proxy, every connection (`http://` too) is a
//! `CONNECT` tunnel ([`super::proxy`]): its resolve and connect phases are
//! the proxy's, the tunnel's answer counts as connecting, and the exchange
//! on it is the same as on a direct connection.
//!
//! The TLS client configuration comes from [`super::tls::client_config`];
//! a failed handshake is worded by [`super::error::handshake_failed`], like
//! every other kind's.

use super::dial::Io;
use super::error::{Cut, Fail, describe, looks_like_tls, too_large};
use super::http2::{self, HttpVersion, drive};
use super::pool::{Lease, Origin, Pool};
use crate::outcome::{FailureReason, HttpPhases};
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::future::Future;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use url::{Host, Url};

/// How [`exchange`] behaves; built once per probe.
#[derive(Clone, Debug)]
pub struct TransportOptions {
    pub follow_redirects: bool,
    pub max_redirects: u32,
    /// Cap on the body, raw and after decompression.
    pub max_body_bytes: u64,
    /// Send `Accept-Encoding: gzip, deflate` and decode such bodies.
    pub decompress: bool,
    pub tls: Arc<ClientConfig>,
    /// SNI / verification name override (else the URL host).
    pub server_name: Option<String>,
    /// The HTTP version to use (`http_version`): ALPN's offer over TLS,
    /// prior knowledge of HTTP/2 over cleartext.
    pub version: HttpVersion,
    /// The HTTP proxy to tunnel through (`CONNECT`), for the targets it
    /// routes; `None`: every connection is direct.
    pub proxy: Option<Arc<super::proxy::Proxy>>,
}

/// The request to send on the first hop.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The last response of an exchange. Its headers are as the server sent them
/// (`Content-Encoding` included); its body is decoded.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Where the last redirect led; `None` when none was followed (the
    /// request's own URL answered).
    pub final_url: Option<Url>,
    pub redirects: u32,
    pub phases: HttpPhases,
    /// The service time: from the request's first byte being written to
    /// the arrival of the response's last byte, summed over redirect hops
    /// (see [`Progress::service`]).
    pub service: Duration,
    pub tls: bool,
    /// The HTTP version of the final response (`HTTP/1.1`, `HTTP/2`).
    pub version: http::Version,
    /// The earliest `notAfter` of the certificates the server presented on
    /// the final hop, as Unix seconds (blackbox_exporter's
    /// `probe_ssl_earliest_cert_expiry`).
    pub tls_earliest_expiry: Option<i64>,
}

/// Why an exchange failed, with what was measured until then.
#[derive(Debug)]
pub struct Failure {
    pub reason: FailureReason,
    pub message: String,
    pub phases: HttpPhases,
    /// The status of the last response whose headers arrived on the failing
    /// hop, if any.
    pub status: Option<u16>,
    pub redirects: u32,
    /// The service time until the failure: zero when no request was
    /// written (see [`Progress::service`]).
    pub service: Duration,
    /// The raw body bytes that arrived on the failing hop before it failed
    /// (a body cut by a reset or a close, over its cap, or not decodable).
    pub body_bytes: u64,
    /// The HTTP version of the failing hop's connection, once it was known
    /// (after ALPN, or on a kept connection).
    pub version: Option<http::Version>,
}

/// Performs `req` on fresh connections, following redirects if asked, all
/// before `deadline`.
pub async fn exchange(
    req: Request,
    opts: &TransportOptions,
    deadline: Instant,
) -> Result<Response, Failure> {
    exchange_in(req, opts, None, deadline).await
}

/// [`exchange`], on the connections `keep` holds open when given.
pub async fn exchange_in(
    req: Request,
    opts: &TransportOptions,
    keep: Option<&KeepAlive>,
    deadline: Instant,
) -> Result<Response, Failure> {
    exchange_timed(&req, opts, keep, deadline).await.result
}

/// An exchange's outcome and the instants its phases run between, so
/// they sum to `finished - started`.
pub struct Timed {
    pub result: Result<Response, Failure>,
    /// When the exchange began (before resolving or taking a connection).
    pub started: Instant,
    /// When the response's last byte was read (and decoded), or the
    /// exchange failed.
    pub finished: Instant,
}

/// [`exchange_in`], with when it began and ended: the clock reads its
/// phases already made, so a caller timing it needs none of its own.
pub async fn exchange_timed(
    req: &Request,
    opts: &TransportOptions,
    keep: Option<&KeepAlive>,
    deadline: Instant,
) -> Timed {
    let mut progress = Progress::new(deadline);
    // One timer for the whole exchange; a deadline that passes is worded
    // by the phase then in progress.
    let result =
        match tokio::time::timeout_at(deadline, follow(req, opts, keep, &mut progress)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(fail)) => Err(progress.failure(fail)),
            Err(_) => {
                let fail = progress.expired();
                Err(progress.failure(fail))
            }
        };
    Timed {
        result,
        started: progress.start,
        // The last lap: the body's end, or the failure.
        finished: progress.mark,
    }
}

/// Connections kept open between the exchanges of one run (a workload with
/// `keep_alive = true`): at most `max` at once, per origin, all sent with
/// the same [`TransportOptions`]. An HTTP/1.1 connection carries one
/// request at a time; an HTTP/2 one is shared by the requests to its
/// origin, as concurrent streams. Dropping it closes them.
pub struct KeepAlive {
    /// HTTP/1.1 connections: one request at a time each.
    pool: Pool<Conn>,
    /// HTTP/2 connections: shared by the requests to their origin.
    mux: http2::Shared,
}

impl KeepAlive {
    /// Keeps at most `max` connections (a workload's `max_concurrency`).
    pub fn new(max: usize) -> KeepAlive {
        KeepAlive {
            pool: Pool::new(max),
            mux: http2::Shared::new(max),
        }
    }

    /// Connections opened so far.
    pub fn opened(&self) -> u64 {
        self.pool.opened() + self.mux.opened()
    }

    /// Hops sent on a connection an earlier one opened.
    pub fn reused(&self) -> u64 {
        self.pool.reused() + self.mux.reused()
    }
}

/// hyper's side of an HTTP/1.1 connection: the future that does its I/O.
type Http1 = hyper::client::conn::http1::Connection<TokioIo<FirstByte>, Full<Bytes>>;

/// One HTTP/1.1 connection: hyper's sender and connection, and what its
/// reads have shown. It has no task of its own: whoever uses it drives it
/// (`drive`), so a request, its response and its body take no hop
/// between tasks, and nothing outlives the connection when it is dropped.
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    /// `None` once it ended (closed, or failed). Boxed: hyper's state is
    /// large, and a connection moves in and out of its pool.
    connection: Option<Pin<Box<Http1>>>,
    seen: Arc<Seen>,
    /// The earliest certificate expiry its handshake showed.
    tls_expiry: Option<i64>,
}

impl Conn {
    /// Ended, or known to be closed.
    fn closed(&self) -> bool {
        self.connection.is_none() || self.sender.is_closed()
    }
}

fn protocol(doing: &str, error: &hyper::Error) -> Fail {
    Fail::new(
        FailureReason::Protocol,
        format!("{doing} failed: {}", describe(error)),
    )
}

/// Hyper's limits on a response head (`max_buf_size` and the header
/// count), as a person would say them.
const HEAD_LIMITS: &str = "about 400 KiB and 100 headers";

/// Why no whole response head arrived: the peer reset or closed the
/// connection (before its first byte, or part-way), the head was too large,
/// or what came back was not HTTP/1.x (with its first bytes, and a hint
/// when they look like TLS).
fn head_failed(error: &hyper::Error, seen: &Seen) -> Fail {
    // TLS 1.3: a server that refuses the client certificate says so after
    // the client's side of the handshake is done, at the first read.
    if let Some(fail) = super::error::client_auth_refused(error) {
        return fail;
    }
    let received = seen.received();
    let cut = if error.is_incomplete_message() {
        Some(Cut::Closed)
    } else {
        super::error::cut(error)
    };
    if let Some(cut) = cut {
        let when = match (cut, received) {
            (Cut::Closed, 0) => "without sending a response".to_owned(),
            (Cut::Reset, 0) => "before sending a response".to_owned(),
            (_, n) => format!("in the middle of the response head, after {n} bytes"),
        };
        return Fail::new(cut.reason(), format!("the server {} {when}", cut.words()));
    }
    if error.is_parse_too_large() {
        return Fail::new(
            FailureReason::Protocol,
            format!(
                "the response head is larger than the client accepts ({HEAD_LIMITS}): {}",
                describe(error)
            ),
        );
    }
    if error.is_parse() {
        let start = seen.start();
        let message = if looks_like_tls(&start) {
            "the response is a TLS record, not HTTP/1.x: the port speaks TLS (is the URL meant to be https://?)".to_owned()
        } else {
            format!(
                "the response is not valid HTTP/1.x: {} (it begins with \"{}\")",
                describe(error),
                start.escape_ascii()
            )
        };
        return Fail::new(FailureReason::Protocol, message);
    }
    protocol("the http exchange", error)
}

/// A response that announces both `Transfer-Encoding` and
/// `Content-Length`: hyper would read it as chunked, as curl and Go do, but
/// HTTP/1.1 forbids a sender to write both (RFC 9112 §6.1), a recipient
/// "ought to handle it as an error" (§6.3), and strict clients (Node's
/// llhttp) and proxies reject it. A monitor says so rather than pass what
/// some of the service's clients cannot read.
fn length_and_chunked(headers: &HeaderMap) -> Result<(), Fail> {
    if headers.contains_key(header::TRANSFER_ENCODING)
        && headers.contains_key(header::CONTENT_LENGTH)
    {
        return Err(Fail::new(
            FailureReason::Protocol,
            "the response has both Transfer-Encoding and Content-Length, which HTTP/1.1 forbids (RFC 9112 section 6.1; strict clients and proxies reject it)",
        ));
    }
    Ok(())
}

/// The phases of one hop, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Resolve,
    Connect,
    Tls,
    Processing,
    Transfer,
}

impl Phase {
    fn slot(self, phases: &mut HttpPhases) -> &mut Duration {
        match self {
            Phase::Resolve => &mut phases.resolve,
            Phase::Connect => &mut phases.connect,
            Phase::Tls => &mut phases.tls,
            Phase::Processing => &mut phases.processing,
            Phase::Transfer => &mut phases.transfer,
        }
    }

    fn doing(self) -> &'static str {
        match self {
            Phase::Resolve => "while resolving the host (resolve)",
            Phase::Connect => "while connecting (connect)",
            Phase::Tls => "during the tls handshake (tls)",
            Phase::Processing => "while waiting for the response (processing)",
            Phase::Transfer => "while reading the body (transfer)",
        }
    }
}

/// The running state of one exchange: the clock, the phase in progress and
/// what has been seen so far.
///
/// Phases are contiguous: [`Progress::lap`] charges the time since the
/// previous lap to the phase in progress, so the phases always add up to the
/// time since the start, across redirect hops too.
///
/// `processing` starts when the request's first byte is written (the
/// instant [`FirstByte`] notes before its first write), as wrk and curl's
/// `time_pretransfer` count it, not when the request is handed to hyper:
/// the client's own work between the connection being up and that write
/// (starting hyper's side of the connection, encoding the request head)
/// is charged to the phase before it, see [`Progress::writing`].
struct Progress {
    start: Instant,
    deadline: Instant,
    mark: Instant,
    phase: Phase,
    phases: HttpPhases,
    status: Option<u16>,
    redirects: u32,
    /// The earliest certificate expiry seen on the current hop.
    tls_expiry: Option<i64>,
    /// The raw body bytes read on the current hop.
    body_bytes: u64,
    /// The HTTP version of the current hop's connection, once known.
    version: Option<http::Version>,
    /// The proxy being connected through, while it is (a deadline then
    /// names it).
    proxy: Option<String>,
    /// While an HTTP/1.1 request is being sent: the phase before
    /// `processing` (connect or tls on a new connection, processing on a
    /// kept one) and the connection's [`Seen`], whose first write ends
    /// that phase at the next lap.
    writing: Option<(Phase, Arc<Seen>)>,
    /// The request of the current hop, from when it left until its
    /// response's last byte arrived (see [`Progress::answered`]).
    sending: Option<Sending>,
    /// What wrk would time: from each hop's request being written to the
    /// arrival of its response's last byte (the first byte written to the
    /// failure, for a hop that failed), summed over hops. Unlike the
    /// phases, it has no connection setup and none of the client's work
    /// after the last byte arrived (hyper handing the body over, decoding).
    service: Duration,
}

/// Where the service time of a hop in flight starts.
enum Sending {
    /// At the first write the connection's [`Seen`] notes (HTTP/1.1).
    Written(Arc<Seen>),
    /// When the request was handed to the connection (HTTP/2, whose
    /// streams share the connection's writes).
    Since(Instant),
}

impl Progress {
    fn new(deadline: Instant) -> Self {
        let start = Instant::now();
        Progress {
            start,
            deadline,
            mark: start,
            phase: Phase::Resolve,
            phases: HttpPhases::default(),
            status: None,
            redirects: 0,
            tls_expiry: None,
            body_bytes: 0,
            version: None,
            proxy: None,
            writing: None,
            sending: None,
            service: Duration::ZERO,
        }
    }

    /// Enters `phase`; fails at once if the deadline has already passed.
    /// The deadline itself bounds the whole exchange ([`exchange_in`]), so
    /// a step needs no timer of its own.
    fn enter(&mut self, phase: Phase) -> Result<(), Fail> {
        self.phase = phase;
        if Instant::now() >= self.deadline {
            return Err(self.expired());
        }
        Ok(())
    }

    /// Enters `phase` and runs `fut`.
    async fn within<F: Future>(&mut self, phase: Phase, fut: F) -> Result<F::Output, Fail> {
        self.enter(phase)?;
        Ok(fut.await)
    }

    fn expired(&self) -> Fail {
        let reason = match self.phase {
            Phase::Resolve | Phase::Connect => FailureReason::ConnectTimeout,
            Phase::Tls | Phase::Processing | Phase::Transfer => FailureReason::Timeout,
        };
        let elapsed = Instant::now().saturating_duration_since(self.start);
        let via = match &self.proxy {
            Some(proxy) => format!(" through the proxy {proxy}"),
            None => String::new(),
        };
        Fail::new(
            reason,
            format!(
                "deadline exceeded after {:.3}s {}{via}",
                elapsed.as_secs_f64(),
                self.phase.doing()
            ),
        )
    }

    /// Ends the phase in progress at `at`. While a request is being sent,
    /// the time until its first write (once there was one) goes to the
    /// phase before `processing` (see [`Progress::writing`]).
    fn lap(&mut self, at: Instant) {
        if let Some((before, seen)) = &self.writing {
            if let Some(written) = seen.written_at() {
                let written = written.min(at);
                *before.slot(&mut self.phases) += written.saturating_duration_since(self.mark);
                self.mark = self.mark.max(written);
                self.writing = None;
            }
        }
        *self.phase.slot(&mut self.phases) += at.saturating_duration_since(self.mark);
        self.mark = self.mark.max(at);
    }

    /// Ends the current hop's service time at `end` (its response's last
    /// byte): from the request's first write, or its hand-over.
    fn answered(&mut self, end: Option<Instant>) {
        let from = match self.sending.take() {
            Some(Sending::Written(seen)) => seen.written_at(),
            Some(Sending::Since(at)) => Some(at),
            None => None,
        };
        if let (Some(from), Some(end)) = (from, end) {
            self.service += end.saturating_duration_since(from);
        }
    }

    /// The exchange's failure, its phases ended now (the last lap).
    fn failure(&mut self, fail: Fail) -> Failure {
        let now = Instant::now();
        self.lap(now);
        self.answered(Some(now));
        Failure {
            reason: fail.reason,
            message: fail.message,
            phases: self.phases,
            status: self.status,
            redirects: self.redirects,
            service: self.service,
            body_bytes: self.body_bytes,
            version: self.version,
        }
    }
}

/// Runs hops until a response that is not a redirect to follow.
/// The caller's request is borrowed: only a redirect makes a request of
/// its own.
async fn follow(
    first: &Request,
    opts: &TransportOptions,
    keep: Option<&KeepAlive>,
    progress: &mut Progress,
) -> Result<Response, Fail> {
    let mut redirected_to: Option<Request> = None;
    loop {
        let req = redirected_to.as_ref().unwrap_or(first);
        let (parts, raw) = hop(req, opts, keep, progress).await?.into_parts();
        let Some(next) = redirect_target(&req.url, parts.status, &parts.headers, opts)? else {
            let body = if opts.decompress && parts.headers.contains_key(header::CONTENT_ENCODING) {
                let body = decode(&parts.headers, raw, opts.max_body_bytes)?;
                // Decoding is part of getting the body, so it counts as
                // transfer (the hop's last lap was the raw body's end).
                progress.lap(Instant::now());
                body
            } else {
                raw
            };
            return Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
                tls: req.url.scheme() == "https",
                version: parts.version,
                tls_earliest_expiry: progress.tls_expiry,
                final_url: redirected_to.map(|r| r.url),
                redirects: progress.redirects,
                phases: progress.phases,
                service: progress.service,
            });
        };
        if progress.redirects >= opts.max_redirects {
            return Err(Fail::new(
                FailureReason::TooManyRedirects,
                format!(
                    "more than {} redirects: {} redirected again, to {next}",
                    opts.max_redirects, req.url
                ),
            ));
        }
        progress.redirects += 1;
        // The caller's request is copied at the first redirect; a later
        // one rewrites the copy.
        let current = redirected_to.take().unwrap_or_else(|| first.clone());
        redirected_to = Some(redirected(current, parts.status, next));
    }
}

/// Where a response sends the client next, if it is a redirect to follow.
/// A redirect status without `Location` is a final response.
fn redirect_target(
    url: &Url,
    status: StatusCode,
    headers: &HeaderMap,
    opts: &TransportOptions,
) -> Result<Option<Url>, Fail> {
    let is_redirect = matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308);
    if !opts.follow_redirects || !is_redirect {
        return Ok(None);
    }
    let Some(location) = headers.get(header::LOCATION) else {
        return Ok(None);
    };
    let invalid = |why: String| {
        Fail::new(
            FailureReason::Protocol,
            format!("invalid Location header {location:?} from {url}: {why}"),
        )
    };
    let location = location.to_str().map_err(|e| invalid(e.to_string()))?;
    let next = url.join(location).map_err(|e| invalid(e.to_string()))?;
    // Judged here, while the redirect's own status is still the run's: the
    // next hop would only say it cannot fetch the URL, and the server's
    // fault would read as synthmon's.
    if !matches!(next.scheme(), "http" | "https") || next.host().is_none() {
        return Err(Fail::new(
            FailureReason::Protocol,
            format!(
                "{} from {url} redirects to {next}, which is not an http(s) URL with a host",
                status.as_u16()
            ),
        ));
    }
    Ok(Some(next))
}

/// The request for the next hop: 303, and 301/302 after a POST, become a
/// bodiless GET, and credentials stay behind when the origin changes.
fn redirected(mut req: Request, status: StatusCode, next: Url) -> Request {
    let to_get = match status {
        StatusCode::SEE_OTHER => req.method != Method::HEAD,
        StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND => req.method == Method::POST,
        _ => false,
    };
    if to_get {
        req.method = Method::GET;
        req.body = Bytes::new();
        for name in [
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
            header::CONTENT_ENCODING,
            header::TRANSFER_ENCODING,
        ] {
            req.headers.remove(name);
        }
    }
    if req.url.origin() != next.origin() {
        for name in [
            header::AUTHORIZATION,
            header::COOKIE,
            header::PROXY_AUTHORIZATION,
            header::HOST,
        ] {
            req.headers.remove(name);
        }
    }
    req.url = next;
    req
}

/// Where a hop goes: the URL's host, port and scheme.
struct Target<'u> {
    host: Host<&'u str>,
    /// The host as the URL writes it, which kept connections are found by.
    name: &'u str,
    port: u16,
    tls: bool,
}

impl Target<'_> {
    fn origin(&self) -> Origin {
        Origin {
            tls: self.tls,
            host: self.name.to_owned(),
            port: self.port,
        }
    }
}

/// The connection a hop sends on.
enum Via<'k> {
    Http1(Lease<'k, Conn>),
    Http2(http2::Conn),
}

/// A hop whose request got no response: why, and whether to send it again
/// on another connection (it met a kept one that had gone).
struct HopFailed {
    fail: Fail,
    again: bool,
}

impl From<Fail> for HopFailed {
    fn from(fail: Fail) -> HopFailed {
        HopFailed { fail, again: false }
    }
}

/// Sends `req` (on a kept connection to its origin, with `keep`, else on
/// a fresh one) and reads the whole raw body.
async fn hop(
    req: &Request,
    opts: &TransportOptions,
    keep: Option<&KeepAlive>,
    progress: &mut Progress,
) -> Result<http::Response<Bytes>, Fail> {
    progress.status = None;
    progress.tls_expiry = None;
    progress.body_bytes = 0;
    progress.version = None;
    progress.writing = None;
    progress.sending = None;
    let url = &req.url;
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err(Fail::new(
                FailureReason::Request,
                format!(
                    "unsupported url scheme {other:?} in {url} (only http and https are supported)"
                ),
            ));
        }
    };
    let (Some(host), Some(port)) = (url.host(), url.port_or_known_default()) else {
        return Err(Fail::new(
            FailureReason::Request,
            format!("{url} has no host"),
        ));
    };
    let target = Target {
        host,
        name: url.host_str().unwrap_or_default(),
        port,
        tls,
    };
    let (mut via, mut reused) = connection(&target, opts, keep, progress, true).await?;
    loop {
        let shared = matches!(via, Via::Http2(_));
        let sent = match via {
            Via::Http1(lease) => hop_http1(req, opts, keep, lease, progress).await,
            Via::Http2(conn) => hop_http2(req, opts, keep, conn, progress).await,
        };
        match sent {
            Ok(response) => return Ok(response),
            // Once, and only after a kept connection: a new one failing
            // the same way is the server's answer.
            Err(failed) if reused && failed.again => {
                // The attempt on the kept connection counts as waiting.
                progress.lap(Instant::now());
                // A new HTTP/1.1 connection; for HTTP/2, one another
                // request may have opened meanwhile (the one that went is
                // no longer handed out).
                (via, _) = connection(&target, opts, keep, progress, shared).await?;
                reused = false;
            }
            Err(failed) => return Err(failed.fail),
        }
    }
}

/// The connection for a hop to `target`: with `keep` and `reuse`, a
/// shared HTTP/2 one or an idle HTTP/1.1 one to its origin when there is
/// one (the `bool`: it is), else a new one.
async fn connection<'k>(
    target: &Target<'_>,
    opts: &TransportOptions,
    keep: Option<&'k KeepAlive>,
    progress: &mut Progress,
    reuse: bool,
) -> Result<(Via<'k>, bool), Fail> {
    let Some(k) = keep else {
        // Boxed: dialing (TLS above all) is a large future, which the
        // exchanges on kept connections should not carry.
        return Ok((Box::pin(open(target, opts, None, progress)).await?, false));
    };
    if reuse {
        if let Some(via) = kept(target, opts, k, progress).await? {
            return Ok((via, true));
        }
    }
    let multiplexed = opts.version.may_use_http2(target.tls)
        && !k.mux.speaks_http1(target.tls, target.name, target.port);
    if !multiplexed {
        return Ok((Box::pin(open(target, opts, keep, progress)).await?, false));
    }
    // One request at a time opens a connection that may speak HTTP/2; the
    // others wait for it and share it. Waiting counts as connecting.
    progress.enter(Phase::Connect)?;
    let gate = k.mux.gate.lock().await;
    progress.lap(Instant::now());
    if let Some(via) = kept(target, opts, k, progress).await? {
        return Ok((via, true));
    }
    // The connection waited for picked HTTP/1.1: this one need not hold
    // the others up.
    let _gate = (!k.mux.speaks_http1(target.tls, target.name, target.port)).then_some(gate);
    Ok((Box::pin(open(target, opts, keep, progress)).await?, false))
}

/// A connection `k` holds to the origin of `target` that can take a
/// request: a shared HTTP/2 one, else an idle HTTP/1.1 one.
async fn kept<'k>(
    target: &Target<'_>,
    opts: &TransportOptions,
    k: &'k KeepAlive,
    progress: &mut Progress,
) -> Result<Option<Via<'k>>, Fail> {
    let (tls, name, port) = (target.tls, target.name, target.port);
    if opts.version.may_use_http2(tls) {
        if let Some(conn) = k.mux.find(tls, name, port) {
            progress.tls_expiry = conn.tls_expiry;
            progress.version = Some(http::Version::HTTP_2);
            return Ok(Some(Via::Http2(conn)));
        }
    }
    if opts.version == HttpVersion::Http2 {
        return Ok(None);
    }
    let lease = idle(Some(k), |o| o.is(tls, name, port), progress).await?;
    if lease.is_some() {
        progress.version = Some(http::Version::HTTP_11);
    }
    Ok(lease.map(Via::Http1))
}

/// One hop on an HTTP/1.1 connection: the request, the response head,
/// the whole raw body; the connection goes back to `keep` when it can
/// take another request.
async fn hop_http1(
    req: &Request,
    opts: &TransportOptions,
    keep: Option<&KeepAlive>,
    mut lease: Lease<'_, Conn>,
    progress: &mut Progress,
) -> Result<http::Response<Bytes>, HopFailed> {
    let request = build_request(req, opts, keep.is_some())?;
    let response = send(&mut lease, request, progress)
        .await
        .map_err(|failed| HopFailed {
            again: failed.again(&req.method),
            fail: failed.fail,
        })?;
    progress.status = Some(response.status().as_u16());
    length_and_chunked(response.headers())?;

    let (parts, body) = response.into_parts();
    progress.enter(Phase::Transfer)?;
    let Some(conn) = lease.conn() else {
        return Err(Fail::new(
            FailureReason::Request,
            "the connection was released before its body",
        )
        .into());
    };
    // Counted as they arrive: a body cut short (by the deadline too) still
    // tells how far it got.
    let read = read_body(body, opts.max_body_bytes, &mut progress.body_bytes);
    let body = drive(&mut conn.connection, read).await?;
    progress.lap(Instant::now());
    progress.answered(conn.seen.last_at());
    if keep.is_some() && reusable(&parts) {
        lease.release();
    }
    Ok(http::Response::from_parts(parts, body))
}

/// One hop on an HTTP/2 connection (a stream): the request, the response
/// head (`processing` ends when the stream's first frame arrived), the
/// whole raw body. A shared connection that went away under the request
/// is no longer handed out.
async fn hop_http2(
    req: &Request,
    opts: &TransportOptions,
    keep: Option<&KeepAlive>,
    mut conn: http2::Conn,
    progress: &mut Progress,
) -> Result<http::Response<Bytes>, HopFailed> {
    let request = build_h2_request(req, opts)?;
    progress.enter(Phase::Processing)?;
    progress.sending = Some(Sending::Since(Instant::now()));
    let (response, first) = match conn.send(request, req.body.clone()).await {
        Ok(sent) => sent,
        Err(failed) => {
            if let Some(k) = keep {
                if failed.gone {
                    k.mux.forget(&conn);
                }
            }
            return Err(HopFailed {
                again: failed.again(&req.method),
                fail: failed.fail,
            });
        }
    };
    progress.lap(first.unwrap_or_else(Instant::now));
    let status = response.status();
    progress.status = Some(status.as_u16());
    let (parts, body) = response.into_parts();
    progress.enter(Phase::Transfer)?;
    // HTTP/2 has no framing of its own to lie about, but a length it
    // announces over the cap is refused before reading, as on HTTP/1.1.
    let bodiless = req.method == Method::HEAD
        || matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    let announced = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|_| !bodiless);
    if announced.is_some_and(|n| n > opts.max_body_bytes) {
        return Err(too_large(opts.max_body_bytes, "raw").into());
    }
    let body = conn
        .read_body(
            body,
            opts.max_body_bytes,
            announced,
            &mut progress.body_bytes,
        )
        .await?;
    let end = Instant::now();
    progress.lap(end);
    progress.answered(Some(end));
    Ok(http::Response::from_parts(parts, body))
}

/// An idle connection `keep` holds to the origin `wanted` accepts that can
/// take a request now; those found closed on the way are dropped.
async fn idle<'k>(
    keep: Option<&'k KeepAlive>,
    wanted: impl Fn(&Origin) -> bool,
    progress: &mut Progress,
) -> Result<Option<Lease<'k, Conn>>, Fail> {
    let Some(keep) = keep else {
        return Ok(None);
    };
    while let Some(mut lease) = keep.pool.take(&wanted, |c| !c.closed()) {
        let Some(conn) = lease.conn() else {
            continue;
        };
        // Ready once hyper has finished the previous exchange; an error
        // means the server closed it meanwhile.
        progress.enter(Phase::Processing)?;
        if drive(&mut conn.connection, conn.sender.ready())
            .await
            .is_ok()
        {
            progress.tls_expiry = conn.tls_expiry;
            return Ok(Some(lease));
        }
    }
    Ok(None)
}

/// A new connection to `target` (resolve, connect, TLS, then HTTP/1.1 or
/// HTTP/2 as negotiated), held by `keep` when given.
async fn open<'k>(
    target: &Target<'_>,
    opts: &TransportOptions,
    keep: Option<&'k KeepAlive>,
    progress: &mut Progress,
) -> Result<Via<'k>, Fail> {
    let (host, port, origin) = (&target.host, target.port, target.origin());
    let tcp = match opts
        .proxy
        .as_deref()
        .and_then(|p| p.route(origin.tls, &bare(host)))
    {
        None => {
            let addrs = resolve(host, port, progress).await?;
            connect(&addrs, progress).await?
        }
        Some(endpoint) => through(endpoint, host, port, progress).await?,
    };
    let (io, h2): (Box<dyn Io>, bool) = if origin.tls {
        let (stream, h2) = tls_handshake(tcp, host, opts, progress).await?;
        (Box::new(stream), h2)
    } else {
        (Box::new(tcp), opts.version == HttpVersion::Http2)
    };
    if h2 {
        progress.version = Some(http::Version::HTTP_2);
        let conn = http2::Conn::handshake(io, !origin.tls, progress.tls_expiry).await?;
        return Ok(Via::Http2(match keep {
            Some(keep) => keep.mux.add(origin, conn),
            None => conn,
        }));
    }
    progress.version = Some(http::Version::HTTP_11);
    if let Some(keep) = keep.filter(|_| opts.version.may_use_http2(origin.tls)) {
        // The server picked HTTP/1.1: its requests need not wait for one
        // another's connections any more.
        keep.mux.mark_http1(&origin);
    }
    let seen = Arc::new(Seen::default());
    let io = TokioIo::new(FirstByte {
        inner: io,
        seen: Arc::clone(&seen),
        tls: origin.tls,
    });
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| protocol("starting http/1.1", &e))?;
    let conn = Conn {
        sender,
        connection: Some(Box::pin(connection)),
        seen,
        tls_expiry: progress.tls_expiry,
    };
    Ok(Via::Http1(match keep {
        Some(keep) => keep.pool.add(origin, conn),
        None => Lease::alone(origin, conn),
    }))
}

/// A request that got no response head.
struct SendFailed {
    fail: Fail,
    /// The request, when it never left (the connection was already
    /// closed when it was handed over).
    unsent: Option<http::Request<Full<Bytes>>>,
    /// The connection was closed or reset before any response byte.
    unanswered: bool,
}

impl SendFailed {
    /// Whether to send the request again on a new connection: when it
    /// never left, or it is idempotent and the kept connection was closed
    /// under it before an answer (RFC 9112 section 9.3.1).
    fn again(&self, method: &Method) -> bool {
        self.unsent.is_some() || (self.unanswered && method.is_idempotent())
    }
}

/// Sends `request` on the leased connection and waits for the response
/// head, marking when its first byte arrived.
async fn send(
    lease: &mut Lease<'_, Conn>,
    request: http::Request<Full<Bytes>>,
    progress: &mut Progress,
) -> Result<http::Response<Incoming>, SendFailed> {
    let failed = |fail| SendFailed {
        fail,
        unsent: None,
        unanswered: false,
    };
    let Some(conn) = lease.conn() else {
        return Err(failed(Fail::new(
            FailureReason::Request,
            "the connection was released before its request",
        )));
    };
    conn.seen.reset();
    let before = progress.phase;
    // A kept connection's request entered processing when it waited for
    // the connection to be ready (`idle`): no second clock read.
    if before != Phase::Processing {
        progress.enter(Phase::Processing).map_err(failed)?;
    }
    progress.writing = Some((before, Arc::clone(&conn.seen)));
    progress.sending = Some(Sending::Written(Arc::clone(&conn.seen)));
    let sent = drive(&mut conn.connection, conn.sender.try_send_request(request)).await;
    let seen = &conn.seen;
    match sent {
        Ok(response) => {
            progress.lap(seen.at().unwrap_or_else(Instant::now));
            Ok(response)
        }
        Err(mut e) => {
            let unsent = e.take_message();
            let error = e.into_error();
            let unanswered = seen.received() == 0
                && (error.is_canceled()
                    || error.is_incomplete_message()
                    || super::error::cut(&error).is_some());
            Err(SendFailed {
                fail: head_failed(&error, seen),
                unsent,
                unanswered,
            })
        }
    }
}

/// A response after which the connection can take another request:
/// HTTP/1.1 without `Connection: close`.
fn reusable(parts: &http::response::Parts) -> bool {
    let close = parts
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("close"));
    parts.version == http::Version::HTTP_11 && !close
}

/// The codings a request that decompresses accepts (`decode` reads them).
const ACCEPT_ENCODING: &str = "gzip, deflate";

/// `Host` for `url`: its host, and its port unless the scheme's default.
fn host_value(url: &Url) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => HeaderValue::try_from(format!("{host}:{port}")),
        None => HeaderValue::try_from(host),
    }
}

impl Request {
    /// Sets the headers every hop would add unless they are set: `Host`
    /// from the URL, and `Accept-Encoding` when `opts` decompresses. Done
    /// once for a request that is sent many times (a workload's), so each
    /// copy of it is complete (no insert that grows it). A redirect to
    /// another origin drops `Host`, and the next hop sets its own.
    pub fn prepare(&mut self, opts: &TransportOptions) {
        if !self.headers.contains_key(header::HOST) {
            if let Ok(value) = host_value(&self.url) {
                self.headers.insert(header::HOST, value);
            }
        }
        if opts.decompress && !self.headers.contains_key(header::ACCEPT_ENCODING) {
            self.headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static(ACCEPT_ENCODING),
            );
        }
    }
}

/// The hyper request for one hop: origin-form target, `Host` from the URL
/// unless the caller set one, and `Connection: close` unless the
/// connection is to be kept.
fn build_request(
    req: &Request,
    opts: &TransportOptions,
    keep_alive: bool,
) -> Result<http::Request<Full<Bytes>>, Fail> {
    let bad = |what: &str, why: String| {
        Fail::new(
            FailureReason::Request,
            format!("cannot build the request for {}: {what}: {why}", req.url),
        )
    };
    let target = &req.url[url::Position::BeforePath..url::Position::AfterQuery];
    let mut headers = req.headers.clone();
    if !headers.contains_key(header::HOST) {
        let value = host_value(&req.url).map_err(|e| bad("host", e.to_string()))?;
        headers.insert(header::HOST, value);
    }
    if !req.body.is_empty() {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(req.body.len()));
    }
    if opts.decompress && !headers.contains_key(header::ACCEPT_ENCODING) {
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static(ACCEPT_ENCODING),
        );
    }
    if !keep_alive {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }

    let mut request = http::Request::new(Full::new(req.body.clone()));
    *request.method_mut() = req.method.clone();
    *request.uri_mut() = target
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad("target", e.to_string()))?;
    *request.headers_mut() = headers;
    Ok(request)
}

/// The HTTP/2 request for one hop: an absolute URI whose authority is the
/// `Host` the caller set, else the URL's; no connection-specific headers
/// (HTTP/2 forbids them). The body goes beside it.
fn build_h2_request(req: &Request, opts: &TransportOptions) -> Result<http::Request<()>, Fail> {
    let bad = |what: &str, why: String| {
        Fail::new(
            FailureReason::Request,
            format!("cannot build the request for {}: {what}: {why}", req.url),
        )
    };
    let target = &req.url[url::Position::BeforePath..url::Position::AfterQuery];
    let mut headers = req.headers.clone();
    let authority = match headers.get(header::HOST) {
        Some(host) => host
            .to_str()
            .map_err(|e| bad("host", e.to_string()))?
            .to_owned(),
        None => host_value(&req.url)
            .map_err(|e| bad("host", e.to_string()))?
            .to_str()
            .map_err(|e| bad("host", e.to_string()))?
            .to_owned(),
    };
    http2::strip_connection_headers(&mut headers);
    if !req.body.is_empty() {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(req.body.len()));
    }
    if opts.decompress && !headers.contains_key(header::ACCEPT_ENCODING) {
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static(ACCEPT_ENCODING),
        );
    }
    let uri = format!("{}://{authority}{target}", req.url.scheme());
    let mut request = http::Request::new(());
    *request.method_mut() = req.method.clone();
    *request.version_mut() = http::Version::HTTP_2;
    *request.uri_mut() = uri
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad("target", e.to_string()))?;
    *request.headers_mut() = headers;
    Ok(request)
}

/// The addresses to try; an IP literal is used as is, with no lookup.
async fn resolve(
    host: &Host<&str>,
    port: u16,
    progress: &mut Progress,
) -> Result<Vec<SocketAddr>, Fail> {
    let name = match *host {
        Host::Ipv4(ip) => return Ok(vec![SocketAddr::new(ip.into(), port)]),
        Host::Ipv6(ip) => return Ok(vec![SocketAddr::new(ip.into(), port)]),
        Host::Domain(name) => name,
    };
    let dns = |why: String| Fail::new(FailureReason::Dns, format!("cannot resolve {name}: {why}"));
    let addrs: Vec<SocketAddr> = progress
        .within(Phase::Resolve, tokio::net::lookup_host((name, port)))
        .await?
        .map_err(|e| dns(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(dns("no address found".to_owned()));
    }
    progress.lap(Instant::now());
    Ok(addrs)
}

/// A host as a name or an IP literal without brackets.
fn bare(host: &Host<&str>) -> String {
    match host {
        Host::Domain(name) => (*name).to_owned(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => ip.to_string(),
    }
}

/// A tunnel to `host:port` through the proxy at `endpoint`: the proxy's
/// name resolved and connected to (a failure of either is `proxy`), then
/// `CONNECT`, charged to the connect phase.
async fn through(
    endpoint: &super::proxy::Endpoint,
    host: &Host<&str>,
    port: u16,
    progress: &mut Progress,
) -> Result<TcpStream, Fail> {
    let unreachable = |fail| super::proxy::unreachable(endpoint, fail);
    progress.proxy = Some(endpoint.to_string());
    let name = Host::parse(endpoint.host())
        .or_else(|_| Host::parse(&format!("[{}]", endpoint.host())))
        .map_err(|e| {
            Fail::new(
                FailureReason::Proxy,
                format!("the proxy {endpoint} has an unusable host: {e}"),
            )
        })?;
    let name: Host<&str> = match &name {
        Host::Domain(d) => Host::Domain(d.as_str()),
        Host::Ipv4(ip) => Host::Ipv4(*ip),
        Host::Ipv6(ip) => Host::Ipv6(*ip),
    };
    let addrs = resolve(&name, endpoint.port(), progress)
        .await
        .map_err(unreachable)?;
    let mut tcp = connect(&addrs, progress).await.map_err(unreachable)?;
    progress
        .within(
            Phase::Connect,
            super::proxy::tunnel(&mut tcp, endpoint, &bare(host), port),
        )
        .await??;
    progress.lap(Instant::now());
    progress.proxy = None;
    Ok(tcp)
}

/// Connects to the first address that accepts, trying them in order.
async fn connect(addrs: &[SocketAddr], progress: &mut Progress) -> Result<TcpStream, Fail> {
    let attempts = async {
        let mut errors = Vec::with_capacity(addrs.len());
        for &addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => errors.push((addr, e)),
            }
        }
        Err(errors)
    };
    let errors = match progress.within(Phase::Connect, attempts).await? {
        Ok(stream) => {
            progress.lap(Instant::now());
            // Nagle's algorithm would only delay the request; failing to turn
            // it off changes nothing else.
            let _ = stream.set_nodelay(true);
            return Ok(stream);
        }
        Err(errors) => errors,
    };
    // The verdict on every address tried, worded as for every kind.
    Err(super::dial::unreachable(&errors))
}

/// The TLS handshake, offering the HTTP versions `opts` allows by ALPN;
/// with it, whether the server picked HTTP/2.
async fn tls_handshake(
    tcp: TcpStream,
    host: &Host<&str>,
    opts: &TransportOptions,
    progress: &mut Progress,
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, bool), Fail> {
    let name = match (&opts.server_name, host) {
        (Some(name), _) => ServerName::try_from(name.clone()),
        (None, Host::Domain(name)) => ServerName::try_from((*name).to_owned()),
        (None, Host::Ipv4(ip)) => Ok(ServerName::from(IpAddr::from(*ip))),
        (None, Host::Ipv6(ip)) => Ok(ServerName::from(IpAddr::from(*ip))),
    }
    .map_err(|e| Fail::new(FailureReason::Tls, format!("invalid tls server name: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&opts.tls));
    let handshake = connector.with_alpn(opts.version.alpn()).connect(name, tcp);
    let stream = progress.within(Phase::Tls, handshake).await?.map_err(|e| {
        // A server that speaks no protocol offered may refuse by alert.
        if let Some(rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol)) =
            super::error::rustls_error(&e)
        {
            if opts.version == HttpVersion::Http2 {
                return http2::not_http2(
                    &host.to_string(),
                    "it refused it (tls alert no_application_protocol)",
                );
            }
        }
        // A verdict names the name that was checked: `server_name` when set.
        let shared = match &opts.server_name {
            Some(name) => super::error::handshake_failed(name, &e),
            None => super::error::handshake_failed(host, &e),
        };
        Fail::new(shared.reason, shared.message)
    })?;
    progress.lap(Instant::now());
    progress.tls_expiry = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(super::tls::earliest_expiry);
    let h2 = opts
        .version
        .negotiated(stream.get_ref().1.alpn_protocol(), &host.to_string())?;
    Ok((stream, h2))
}

/// Reads body frames until the end, failing as soon as more than `max`
/// bytes have arrived, or before reading if the declared length is already
/// over. hyper derives that length from `Content-Length`, the request method
/// and the status, so a HEAD or 304 response declares none. `received`
/// counts the bytes as they arrive, so a caller whose read was cut short
/// (by the deadline too) knows how many did.
async fn read_body(mut body: Incoming, max: u64, received: &mut u64) -> Result<Bytes, Fail> {
    let announced = body.size_hint().exact();
    if body.size_hint().lower() > max {
        return Err(too_large(max, "raw"));
    }
    // A body that comes in one frame (most do) is kept as hyper handed it
    // over: copied only when a second frame follows.
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| body_failed(&e, len, announced))?;
        if let Ok(data) = frame.into_data() {
            *received += data.len() as u64;
            len += data.len() as u64;
            if len > max {
                return Err(too_large(max, "raw"));
            }
            if first.is_none() && buf.is_empty() {
                first = Some(data);
            } else {
                if let Some(first) = first.take() {
                    buf.extend_from_slice(&first);
                }
                buf.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| buf.freeze()))
}

/// Why a body stopped before its end, after `got` bytes of the `announced`
/// (`Content-Length`; none for a chunked body, or one that ends with the
/// connection, whose cause is told: `unexpected EOF during chunk size
/// line`, a TLS peer gone without `close_notify`).
fn body_failed(error: &hyper::Error, got: u64, announced: Option<u64>) -> Fail {
    let Some(cut) = super::error::cut(error) else {
        return protocol("reading the body", error);
    };
    let how_far = match announced {
        Some(total) => format!("after {got} of the {total} body bytes announced"),
        None => format!(
            "in the middle of the body, after {got} bytes ({})",
            describe(error)
        ),
    };
    Fail::new(
        cut.reason(),
        format!("the server {} {how_far}", cut.words()),
    )
}

/// Decodes a gzip or deflate body, producing at most `max` bytes; other
/// encodings are returned as they are.
fn decode(headers: &HeaderMap, raw: Bytes, max: u64) -> Result<Bytes, Fail> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let data = &raw[..];
    let decoder: Box<dyn Read + '_> = match encoding.as_str() {
        "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(data)),
        // "deflate" is meant to be zlib-wrapped, but some servers send a raw
        // deflate stream; a zlib header is recognisable by its checksum.
        "deflate" if is_zlib(data) => Box::new(flate2::read::ZlibDecoder::new(data)),
        "deflate" => Box::new(flate2::read::DeflateDecoder::new(data)),
        _ => return Ok(raw),
    };
    let mut out = Vec::new();
    decoder
        .take(max.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| {
            Fail::new(
                FailureReason::Protocol,
                format!("cannot decode the {encoding} body: {e}"),
            )
        })?;
    if out.len() as u64 > max {
        return Err(too_large(max, "after decompression"));
    }
    Ok(Bytes::from(out))
}

fn is_zlib(data: &[u8]) -> bool {
    match data {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

/// What the I/O of one connection has shown since its current request was
/// sent: the instant the request's first byte was written, the instants
/// of the first and the latest response bytes, how many came, the first few
/// (what a reply that is not HTTP looks like). [`Seen::reset`] starts over
/// for the next request on a kept connection.
struct Seen {
    /// When the connection was made; `first_at` and `written_at` count
    /// from here.
    base: Instant,
    /// Nanoseconds from `base` to the first write, plus one; 0 while none.
    written_at: AtomicU64,
    /// Nanoseconds from `base` to the first byte, plus one; 0 while none.
    first_at: AtomicU64,
    /// Nanoseconds from `base` to the latest read that returned bytes,
    /// plus one; 0 while none.
    last_at: AtomicU64,
    first: Mutex<([u8; Seen::KEPT], usize)>,
    received: AtomicU64,
}

impl Default for Seen {
    fn default() -> Seen {
        Seen {
            base: Instant::now(),
            written_at: AtomicU64::new(0),
            first_at: AtomicU64::new(0),
            last_at: AtomicU64::new(0),
            first: Mutex::new(([0; Seen::KEPT], 0)),
            received: AtomicU64::new(0),
        }
    }
}

impl Seen {
    /// How many of the first bytes [`Seen`] keeps.
    const KEPT: usize = 24;

    /// `now` as `written_at`, `first_at` and `last_at` store it.
    fn stamp(&self, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(self.base).as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1
    }

    /// The instant a stamp stands for; `None` for 0 (not yet).
    fn instant(&self, stamp: u64) -> Option<Instant> {
        stamp
            .checked_sub(1)
            .map(|n| self.base + Duration::from_nanos(n))
    }

    /// Notes that a write is about to be made: the first since the last
    /// [`Seen::reset`] is when the request started to leave. One clock
    /// read per request; later writes only load the flag.
    fn note_write(&self) {
        if self.written_at.load(Ordering::Relaxed) == 0 {
            self.written_at
                .store(self.stamp(Instant::now()), Ordering::Relaxed);
        }
    }

    /// When the current request's first byte was written.
    fn written_at(&self) -> Option<Instant> {
        self.instant(self.written_at.load(Ordering::Relaxed))
    }

    /// Notes bytes a read returned.
    fn note(&self, new: &[u8]) {
        let now = self.stamp(Instant::now());
        self.last_at.store(now, Ordering::Relaxed);
        if self.received.fetch_add(new.len() as u64, Ordering::Relaxed) > 0 {
            return;
        }
        self.first_at.store(now, Ordering::Relaxed);
        let mut first = self.first.lock().unwrap_or_else(PoisonError::into_inner);
        let n = new.len().min(Seen::KEPT);
        first.0[..n].copy_from_slice(&new[..n]);
        first.1 = n;
    }

    /// When the first response byte arrived.
    fn at(&self) -> Option<Instant> {
        self.instant(self.first_at.load(Ordering::Relaxed))
    }

    /// When the latest bytes arrived: once a response's body is read,
    /// its last byte.
    fn last_at(&self) -> Option<Instant> {
        self.instant(self.last_at.load(Ordering::Relaxed))
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// The first bytes of the first read that returned any.
    fn start(&self) -> Vec<u8> {
        if self.received() == 0 {
            return Vec::new();
        }
        let first = self.first.lock().unwrap_or_else(PoisonError::into_inner);
        first.0[..first.1].to_vec()
    }

    /// Forgets the previous request's response (its first bytes are
    /// overwritten by the next response's first read).
    fn reset(&self) {
        self.received.store(0, Ordering::Relaxed);
        self.first_at.store(0, Ordering::Relaxed);
        self.last_at.store(0, Ordering::Relaxed);
        self.written_at.store(0, Ordering::Relaxed);
    }
}

/// A stream that notes what its reads return, and when its first write
/// was made, in a [`Seen`].
struct FirstByte {
    inner: Box<dyn Io>,
    seen: Arc<Seen>,
    /// Whether `inner` speaks TLS, whose shutdown sends close_notify.
    tls: bool,
}

impl AsyncRead for FirstByte {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let new = &buf.filled()[before..];
        if !new.is_empty() {
            self.seen.note(new);
        }
        poll
    }
}

impl AsyncWrite for FirstByte {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.seen.note_write();
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.seen.note_write();
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    /// A plain socket is not shut down: hyper shuts a connection down just
    /// before dropping it, and the close that follows sends the same FIN,
    /// one system call fewer a connection (a probe's or a fresh-connection
    /// workload request's). TLS still sends its close_notify.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.tls {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::net::tls::TlsOptions;
    use rustls_pki_types::PrivateKeyDer;
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, OnceLock};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::time::sleep;

    /// No test may take longer than this, whatever the code under test does.
    const BOUND: Duration = Duration::from_secs(10);
    const MS: Duration = Duration::from_millis(1);

    /// The request heads (and bodies) a test server received, in order.
    type Log = Arc<Mutex<Vec<String>>>;

    fn options() -> TransportOptions {
        TransportOptions {
            follow_redirects: true,
            max_redirects: 5,
            max_body_bytes: 1 << 20,
            decompress: true,
            tls: crate::net::tls::client_config(&TlsOptions::default()).unwrap(),
            proxy: None,
            server_name: None,
            version: HttpVersion::Auto,
        }
    }

    fn get(url: &str) -> Request {
        Request {
            method: Method::GET,
            url: Url::parse(url).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// Runs one exchange whose deadline is `budget` from now.
    async fn run(
        req: Request,
        opts: &TransportOptions,
        budget: Duration,
    ) -> Result<Response, Failure> {
        tokio::time::timeout(BOUND, exchange(req, opts, Instant::now() + budget))
            .await
            .expect("the exchange outlived the test bound")
    }

    /// Reads a request head and, if it declares one, its body.
    async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
        let mut text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let length = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).await.is_ok() {
            text.push_str(&String::from_utf8_lossy(&body));
        }
        text
    }

    /// The request target of a logged request.
    fn target(request: &str) -> &str {
        request.split(' ').nth(1).unwrap_or_default()
    }

    /// Starts a raw HTTP server on 127.0.0.1 that logs each request and
    /// hands the connection to `handler`.
    async fn serve<F, Fut>(handler: F) -> (SocketAddr, Log)
    where
        F: Fn(String, TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Log::default();
        let seen = Arc::clone(&log);
        let handler = Arc::new(handler);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (seen, handler) = (Arc::clone(&seen), Arc::clone(&handler));
                tokio::spawn(async move {
                    let request = read_request(&mut stream).await;
                    seen.lock().unwrap().push(request.clone());
                    handler(request, stream).await;
                });
            }
        });
        (addr, log)
    }

    async fn respond(mut stream: TcpStream, response: impl AsRef<[u8]>) {
        let _ = stream.write_all(response.as_ref()).await;
        let _ = stream.shutdown().await;
    }

    fn redirect(status: u16, location: &str) -> String {
        format!("HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n")
    }

    fn assert_contiguous(phases: &HttpPhases, total: Duration) {
        assert!(
            phases.sum().abs_diff(total) <= MS,
            "phases {phases:?} do not add up to {total:?}"
        );
    }

    /// Issue 14 (timing truth): processing starts when the request's first
    /// byte is written, not when it is handed to hyper; the client's work
    /// in between goes to the phase before, so the phases still add up.
    /// The service time runs from that write to the last byte's arrival.
    #[test]
    fn processing_starts_at_the_first_write_and_service_ends_at_the_last_byte() {
        let mut p = Progress::new(Instant::now() + BOUND);
        let t0 = p.start;
        let at = |ms: u32| t0 + ms * MS;
        p.enter(Phase::Connect).unwrap();
        p.lap(at(2));
        // Handed to hyper at 2 ms (still connect), written at 3 ms.
        let seen = Arc::new(Seen::default());
        p.writing = Some((Phase::Connect, Arc::clone(&seen)));
        p.sending = Some(Sending::Written(Arc::clone(&seen)));
        p.enter(Phase::Processing).unwrap();
        seen.written_at.store(seen.stamp(at(3)), Ordering::Relaxed);
        assert_eq!(seen.written_at(), Some(at(3)));
        // First byte at 10 ms, last at 11 ms, handed over at 12 ms.
        p.lap(at(10));
        p.enter(Phase::Transfer).unwrap();
        p.lap(at(12));
        p.answered(Some(at(11)));
        let ph = p.phases;
        assert_eq!(
            (ph.connect, ph.processing, ph.transfer),
            (3 * MS, 7 * MS, 2 * MS)
        );
        assert_eq!(ph.sum(), 12 * MS);
        assert_eq!(p.service, 8 * MS);
        assert!(p.writing.is_none() && p.sending.is_none());

        // A request that never left charges no service time, and the time
        // waited stays in processing.
        let mut p = Progress::new(Instant::now() + BOUND);
        let t0 = p.start;
        let seen = Arc::new(Seen::default());
        p.writing = Some((Phase::Connect, Arc::clone(&seen)));
        p.sending = Some(Sending::Written(seen));
        p.enter(Phase::Processing).unwrap();
        p.lap(t0 + 5 * MS);
        p.answered(Some(t0 + 5 * MS));
        assert_eq!(
            (p.phases.connect, p.phases.processing),
            (Duration::ZERO, 5 * MS)
        );
        assert_eq!(p.service, Duration::ZERO);
    }

    /// A plain connection is not shut down before its close (one system
    /// call fewer), but the target must still see a FIN, not a reset, and
    /// see it once the exchange is over, whether or not it said `close`.
    #[tokio::test]
    async fn a_plain_connection_ends_with_a_fin_not_a_reset() {
        for head in ["", "Connection: close\r\n"] {
            let (tx, mut ends) = tokio::sync::mpsc::unbounded_channel();
            let (addr, _) = serve(move |_, mut stream| {
                let tx = tx.clone();
                async move {
                    let response = format!("HTTP/1.1 200 OK\r\n{head}Content-Length: 2\r\n\r\nok");
                    let _ = stream.write_all(response.as_bytes()).await;
                    let mut rest = [0u8; 16];
                    let end = tokio::time::timeout(BOUND, stream.read(&mut rest)).await;
                    let _ = tx.send(format!("{:?}", end.map(|r| r.map_err(|e| e.kind()))));
                }
            })
            .await;
            let resp = run(get(&format!("http://{addr}/")), &options(), BOUND)
                .await
                .unwrap();
            assert_eq!(resp.status, 200);
            let end = tokio::time::timeout(BOUND, ends.recv()).await.unwrap();
            assert_eq!(end.as_deref(), Some("Ok(Ok(0))"), "with {head:?}");
        }
    }

    #[tokio::test]
    async fn plain_200_measures_every_phase() {
        let (addr, log) = serve(|_, mut stream| async move {
            sleep(20 * MS).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello")
                .await;
            sleep(20 * MS).await;
            respond(stream, " world").await;
        })
        .await;
        for host in ["127.0.0.1", "localhost"] {
            let url = format!("http://{host}:{}/path?q=1", addr.port());
            let opts = options();
            let started = Instant::now();
            let response = run(get(&url), &opts, BOUND).await.unwrap();
            let total = started.elapsed();
            assert_eq!(response.status, StatusCode::OK);
            assert_eq!(&response.body[..], b"hello world");
            assert_eq!((response.redirects, response.tls), (0, false));
            // No redirect: the request's own URL answered.
            assert_eq!(response.final_url, None);
            let phases = response.phases;
            if host == "localhost" {
                assert!(phases.resolve > Duration::ZERO, "{phases:?}");
            } else {
                assert_eq!(phases.resolve, Duration::ZERO);
            }
            assert!(phases.connect > Duration::ZERO, "{phases:?}");
            assert_eq!(phases.tls, Duration::ZERO);
            assert!(phases.processing >= 20 * MS, "{phases:?}");
            assert!(phases.transfer >= 10 * MS, "{phases:?}");
            assert_contiguous(&phases, total);
            // The service time runs from the write, which starts
            // processing, to the last byte's arrival, within transfer.
            let service = response.service;
            assert!(service >= 40 * MS, "{service:?} {phases:?}");
            assert!(
                service <= phases.processing + phases.transfer,
                "{service:?} {phases:?}"
            );
        }
        let first = log.lock().unwrap()[0].clone();
        assert!(first.starts_with("get /path?q=1 http/1.1\r\n"), "{first}");
        for line in [
            format!("host: 127.0.0.1:{}", addr.port()),
            "accept-encoding: gzip, deflate".to_owned(),
            "connection: close".to_owned(),
        ] {
            assert!(first.contains(&line), "{line} missing from {first}");
        }
    }

    #[tokio::test]
    async fn body_over_the_cap_fails_without_reading_it_all() {
        let written = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&written);
        let (addr, _) = serve(move |request, mut stream| {
            let counter = Arc::clone(&counter);
            async move {
                if target(&request) == "/declared" {
                    let head = "HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n";
                    let _ = stream.write_all(head.as_bytes()).await;
                    sleep(BOUND).await;
                    return;
                }
                // No length: the body ends when the connection does, never.
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
                let chunk = [b'x'; 16 * 1024];
                while stream.write_all(&chunk).await.is_ok() {
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            }
        })
        .await;
        let opts = TransportOptions {
            max_body_bytes: 64 * 1024,
            ..options()
        };
        for path in ["declared", "endless"] {
            let started = Instant::now();
            let url = format!("http://{addr}/{path}");
            let failure = run(get(&url), &opts, BOUND).await.unwrap_err();
            assert_eq!(failure.reason, FailureReason::BodyTooLarge, "{failure:?}");
            assert_eq!(failure.message, "body exceeds the 65536-byte cap (raw)");
            assert_eq!(failure.status, Some(200));
            assert!(started.elapsed() < Duration::from_secs(2));
        }
        // A HEAD response declares the length but has no body to cap.
        let mut head = get(&format!("http://{addr}/declared"));
        head.method = Method::HEAD;
        let response = run(head, &opts, BOUND).await.unwrap();
        assert_eq!((response.status, response.body.len()), (StatusCode::OK, 0));
        // The server stops once the client hangs up, well short of the stream.
        sleep(100 * MS).await;
        assert!(written.load(Ordering::Relaxed) < 64 << 20);
    }

    fn compress(data: &[u8], encoding: &str) -> Vec<u8> {
        let level = flate2::Compression::default();
        let mut encoder: Box<dyn Read + '_> = match encoding {
            "gzip" => Box::new(flate2::read::GzEncoder::new(data, level)),
            "zlib" => Box::new(flate2::read::ZlibEncoder::new(data, level)),
            _ => Box::new(flate2::read::DeflateEncoder::new(data, level)),
        };
        let mut out = Vec::new();
        encoder.read_to_end(&mut out).unwrap();
        out
    }

    #[tokio::test]
    async fn bodies_are_decoded_within_the_cap() {
        let text = b"hello, compressed world. ".repeat(100);
        let bomb = compress(&vec![0; 16 << 20], "gzip");
        assert!(bomb.len() < 64 * 1024);
        let routes: Arc<Vec<(&str, &str, Vec<u8>)>> = Arc::new(vec![
            ("/bomb", "gzip", bomb),
            ("/gzip", "gzip", compress(&text, "gzip")),
            ("/zlib", "deflate", compress(&text, "zlib")),
            ("/raw-deflate", "deflate", compress(&text, "deflate")),
            ("/bad", "gzip", b"this is not gzip".to_vec()),
        ]);
        let (addr, log) = serve(move |request, stream| {
            let routes = Arc::clone(&routes);
            async move {
                let Some((_, encoding, body)) = routes.iter().find(|r| r.0 == target(&request))
                else {
                    return;
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Encoding: {encoding}\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                respond(stream, [head.as_bytes(), body].concat()).await;
            }
        })
        .await;
        let url = |path: &str| format!("http://{addr}{path}");

        let failure = run(get(&url("/bomb")), &options(), BOUND)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, FailureReason::BodyTooLarge, "{failure:?}");
        assert_eq!(
            failure.message,
            "body exceeds the 1048576-byte cap (after decompression)"
        );
        for path in ["/gzip", "/zlib", "/raw-deflate"] {
            let response = run(get(&url(path)), &options(), BOUND).await.unwrap();
            assert_eq!(response.body, text, "{path}");
        }
        let failure = run(get(&url("/bad")), &options(), BOUND).await.unwrap_err();
        assert_eq!(failure.reason, FailureReason::Protocol, "{failure:?}");
        assert!(
            failure.message.starts_with("cannot decode the gzip body"),
            "{failure:?}"
        );

        // Without `decompress`, nothing is asked for and nothing is decoded.
        let raw = TransportOptions {
            decompress: false,
            ..options()
        };
        let response = run(get(&url("/gzip")), &raw, BOUND).await.unwrap();
        assert_eq!(response.body, compress(&text, "gzip"));
        let last = log.lock().unwrap().last().cloned().unwrap();
        assert!(!last.contains("accept-encoding"), "{last}");
    }

    /// Regression: a redirect to `file:///` reported status null and reason
    /// `request`, as if synthmon had built a bad request.
    #[tokio::test]
    async fn a_redirect_to_file_is_the_servers_protocol_fault_with_its_status() {
        let (addr, _log) =
            serve(|_, stream| respond(stream, redirect(302, "file:///etc/passwd"))).await;
        let failure = run(get(&format!("http://{addr}/")), &options(), BOUND)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, FailureReason::Protocol, "{failure:?}");
        assert_eq!(failure.status, Some(302), "{failure:?}");
        assert_eq!(failure.redirects, 0, "{failure:?}");
        assert!(
            failure.message.ends_with(
                "redirects to file:///etc/passwd, which is not an http(s) URL with a host"
            ),
            "{failure:?}"
        );
    }

    #[tokio::test]
    async fn redirects_are_followed_within_the_limit() {
        let port = Arc::new(OnceLock::new());
        let (addr, log) = serve({
            let port = Arc::clone(&port);
            move |request, stream| {
                let port: u16 = port.get().copied().unwrap_or_default();
                let path = target(&request).to_owned();
                let response = if let Some(n) = path.strip_prefix("/hop/") {
                    match n.parse::<u32>().unwrap_or(0) {
                        0 => "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone".to_owned(),
                        n => redirect(302, &format!("/hop/{}", n - 1)),
                    }
                } else {
                    match path.as_str() {
                        "/loop" => redirect(302, "/loop"),
                        "/cross" => redirect(307, &format!("http://localhost:{port}/hop/0")),
                        "/post" => redirect(303, "/hop/0"),
                        _ => redirect(302, "relative/target"),
                    }
                };
                respond(stream, response)
            }
        })
        .await;
        port.set(addr.port()).unwrap();
        let url = |path: &str| format!("http://{addr}{path}");
        let with_auth = |path: &str| {
            let mut req = get(&url(path));
            req.headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_static("Bearer s3cret"),
            );
            req.headers
                .insert(header::COOKIE, HeaderValue::from_static("session=1"));
            req
        };

        // A chain within the limit is followed, credentials kept on the
        // same origin.
        let (opts, req) = (options(), with_auth("/hop/3"));
        let started = Instant::now();
        let response = run(req, &opts, BOUND).await.unwrap();
        let total = started.elapsed();
        assert_eq!((response.status, response.redirects), (StatusCode::OK, 3));
        assert_eq!(
            response.final_url.as_ref().map(Url::as_str),
            Some(url("/hop/0").as_str())
        );
        assert_contiguous(&response.phases, total);
        let requests = std::mem::take(&mut *log.lock().unwrap());
        assert_eq!(requests.len(), 4);
        assert!(
            requests
                .iter()
                .all(|r| r.contains("authorization: bearer s3cret"))
        );

        // A loop stops at the limit.
        let opts = TransportOptions {
            max_redirects: 3,
            ..options()
        };
        let failure = run(get(&url("/loop")), &opts, BOUND).await.unwrap_err();
        assert_eq!(failure.reason, FailureReason::TooManyRedirects);
        assert_eq!((failure.redirects, failure.status), (3, Some(302)));
        assert!(
            failure.message.contains("more than 3 redirects"),
            "{failure:?}"
        );
        assert!(failure.message.contains(&url("/loop")), "{failure:?}");
        assert_eq!(std::mem::take(&mut *log.lock().unwrap()).len(), 4);

        // Crossing to another host drops the credentials.
        let response = run(with_auth("/cross"), &options(), BOUND).await.unwrap();
        assert_eq!(response.redirects, 1);
        let requests = std::mem::take(&mut *log.lock().unwrap());
        assert!(requests[0].contains("authorization: bearer s3cret"));
        assert!(requests[1].contains(&format!("host: localhost:{}", addr.port())));
        assert!(!requests[1].contains("authorization"), "{}", requests[1]);
        assert!(!requests[1].contains("cookie"), "{}", requests[1]);

        // A 303 after a POST is a GET without the body.
        let mut post = get(&url("/post"));
        post.method = Method::POST;
        post.body = Bytes::from_static(b"a=1");
        post.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        run(post, &options(), BOUND).await.unwrap();
        let requests = std::mem::take(&mut *log.lock().unwrap());
        assert!(requests[0].starts_with("post /post "), "{}", requests[0]);
        assert!(requests[0].contains("content-length: 3"));
        assert!(requests[0].ends_with("\r\n\r\na=1"), "{}", requests[0]);
        assert!(requests[1].starts_with("get /hop/0 "), "{}", requests[1]);
        assert!(!requests[1].contains("content-"), "{}", requests[1]);

        // Not following returns the redirect itself.
        let opts = TransportOptions {
            follow_redirects: false,
            ..options()
        };
        let response = run(get(&url("/hop/1")), &opts, BOUND).await.unwrap();
        assert_eq!(
            (response.status, response.redirects),
            (StatusCode::FOUND, 0)
        );
        assert_eq!(response.headers[header::LOCATION], "/hop/0");
    }

    #[tokio::test]
    async fn the_deadline_covers_a_trickle_and_a_stall() {
        let (addr, _) = serve(|request, mut stream| async move {
            if target(&request) == "/trickle" {
                let head = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
                let _ = stream.write_all(head.as_bytes()).await;
                while stream.write_all(b"x").await.is_ok() {
                    sleep(20 * MS).await;
                }
            } else {
                sleep(BOUND).await;
            }
        })
        .await;
        let (opts, budget) = (options(), 300 * MS);
        for (path, phase) in [("/trickle", "(transfer)"), ("/stall", "(processing)")] {
            let req = get(&format!("http://{addr}{path}"));
            let started = Instant::now();
            let failure = run(req, &opts, budget).await.unwrap_err();
            let elapsed = started.elapsed();
            assert_eq!(failure.reason, FailureReason::Timeout, "{failure:?}");
            assert!(
                failure.message.starts_with("deadline exceeded after 0.3"),
                "{failure:?}"
            );
            assert!(failure.message.ends_with(phase), "{failure:?}");
            assert!(
                elapsed >= budget && elapsed < budget + 200 * MS,
                "{elapsed:?}"
            );
            assert_contiguous(&failure.phases, elapsed);
            // The request left: its service time runs to the deadline.
            let (p, service) = (failure.phases, failure.service);
            assert!(service >= budget / 2, "{service:?} {p:?}");
            assert!(service <= p.processing + p.transfer, "{service:?} {p:?}");
        }

        // A deadline that has already passed fails before the lookup.
        let url = format!("http://localhost:{}/", addr.port());
        let failure = run(get(&url), &options(), Duration::ZERO)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, FailureReason::ConnectTimeout, "{failure:?}");
        assert!(failure.message.ends_with("(resolve)"), "{failure:?}");
    }

    #[tokio::test]
    async fn a_cut_connection_is_told_from_a_protocol_fault() {
        let (addr, _) = serve(|request, stream| async move {
            match target(&request) {
                "/reset" => {
                    stream.set_zero_linger().unwrap();
                    drop(stream);
                }
                "/chunked-cut" => {
                    let head =
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
                    respond(stream, head).await;
                }
                "/tls" => respond(stream, b"\x15\x03\x03\x00\x02\x02\x32").await,
                "/garbage" => respond(stream, "SSH-2.0-OpenSSH_9.6\r\n").await,
                _ => respond(stream, "").await,
            }
        })
        .await;
        let fail = |path: &'static str| async move {
            run(get(&format!("http://{addr}{path}")), &options(), BOUND)
                .await
                .unwrap_err()
        };
        let failure = fail("/reset").await;
        assert_eq!(failure.reason, FailureReason::Reset, "{failure:?}");
        let failure = fail("/close").await;
        assert_eq!(failure.reason, FailureReason::Closed, "{failure:?}");
        assert_eq!(
            failure.message,
            "the server closed the connection without sending a response"
        );
        let failure = fail("/chunked-cut").await;
        assert_eq!(failure.reason, FailureReason::Closed, "{failure:?}");
        assert_eq!(failure.body_bytes, 5, "{failure:?}");
        assert!(
            failure.message.starts_with(
                "the server closed the connection in the middle of the body, after 5 bytes ("
            ),
            "{failure:?}"
        );
        let failure = fail("/tls").await;
        assert_eq!(failure.reason, FailureReason::Protocol, "{failure:?}");
        assert!(
            failure.message.contains("the port speaks TLS"),
            "{failure:?}"
        );
        let failure = fail("/garbage").await;
        assert_eq!(failure.reason, FailureReason::Protocol, "{failure:?}");
        assert!(
            failure
                .message
                .ends_with("(it begins with \"SSH-2.0-OpenSSH_9.6\\r\\n\")"),
            "{failure:?}"
        );
    }

    #[tokio::test]
    async fn connect_and_dns_failures_are_told_apart() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let failure = run(get(&format!("http://{addr}/")), &options(), BOUND)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, FailureReason::ConnectRefused, "{failure:?}");
        assert!(failure.message.contains(&addr.to_string()), "{failure:?}");
        assert_eq!(failure.status, None);

        let failure = run(get("http://synthmon-test.invalid/"), &options(), BOUND)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, FailureReason::Dns, "{failure:?}");

        let failure = run(get("ftp://127.0.0.1/"), &options(), BOUND)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, FailureReason::Request, "{failure:?}");
    }

    /// A certificate and key for `localhost`, signed by nobody.
    fn self_signed() -> rcgen::CertifiedKey<rcgen::KeyPair> {
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap()
    }

    /// Starts an HTTPS server on 127.0.0.1 that answers every request with
    /// a short 200.
    async fn serve_tls(identity: &rcgen::CertifiedKey<rcgen::KeyPair>) -> SocketAddr {
        let key = PrivateKeyDer::Pkcs8(identity.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![identity.cert.der().clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    read_request(&mut stream).await;
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure")
                        .await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        addr
    }

    fn tls_options(tls: TlsOptions) -> TransportOptions {
        TransportOptions {
            tls: crate::net::tls::client_config(&tls).unwrap(),
            server_name: tls.server_name,
            ..options()
        }
    }

    #[tokio::test]
    async fn self_signed_tls_is_rejected_unless_trusted_or_skipped() {
        let identity = self_signed();
        let addr = serve_tls(&identity).await;
        let by_name = format!("https://localhost:{}/", addr.port());
        let by_ip = format!("https://{addr}/");

        let failure = run(get(&by_name), &options(), BOUND).await.unwrap_err();
        // Classified like every kind's certificate failures, not as a
        // generic `tls` with rustls' Debug text.
        assert_eq!(failure.reason, FailureReason::CertUntrusted, "{failure:?}");
        assert_eq!(
            failure.message,
            "certificate of localhost is not trusted: unknown issuer (self-signed, or a private CA: set ca_file to trust it)",
            "{failure:?}"
        );
        assert!(failure.phases.tls > Duration::ZERO);

        let insecure = tls_options(TlsOptions {
            insecure_skip_verify: true,
            ..TlsOptions::default()
        });
        let started = Instant::now();
        let response = run(get(&by_ip), &insecure, BOUND).await.unwrap();
        let total = started.elapsed();
        assert_eq!(&response.body[..], b"secure");
        assert!(response.tls);
        assert!(response.phases.tls > Duration::ZERO);
        assert_contiguous(&response.phases, total);
        // rcgen's default notAfter: 4096-01-01T00:00:00Z.
        assert_eq!(response.tls_earliest_expiry, Some(67_090_118_400));

        let mut ca = tempfile::NamedTempFile::new().unwrap();
        ca.write_all(identity.cert.pem().as_bytes()).unwrap();
        let trusted = TlsOptions {
            ca_file: Some(ca.path().to_owned()),
            ..TlsOptions::default()
        };
        let response = run(get(&by_name), &tls_options(trusted.clone()), BOUND)
            .await
            .unwrap();
        assert_eq!(&response.body[..], b"secure");

        // The certificate names localhost, not the IP, unless told to.
        let failure = run(get(&by_ip), &tls_options(trusted.clone()), BOUND)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, FailureReason::CertHostname, "{failure:?}");
        assert_eq!(
            failure.message,
            "certificate is not valid for 127.0.0.1: it names localhost"
        );
        let renamed = tls_options(TlsOptions {
            server_name: Some("localhost".to_owned()),
            ..trusted.clone()
        });
        assert!(run(get(&by_ip), &renamed, BOUND).await.is_ok());
        // A verdict names the name that was checked, not the host dialled.
        let misnamed = tls_options(TlsOptions {
            server_name: Some("other.example".to_owned()),
            ..trusted
        });
        let failure = run(get(&by_ip), &misnamed, BOUND).await.unwrap_err();
        assert_eq!(
            failure.message,
            "certificate is not valid for other.example: it names localhost"
        );
    }

    /// Starts an HTTP/1.1 server on 127.0.0.1 that answers every request
    /// on a connection until the client leaves: `/redirect` with a 302 to
    /// `/ok` on `localhost` (another origin), `/close` with `Connection:
    /// close` (then it closes), anything else with a short 200. Returns its
    /// address, the connections it accepted and the requests it read.
    async fn serve_kept() -> (SocketAddr, Arc<AtomicU64>, Log) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, log) = (Arc::new(AtomicU64::new(0)), Log::default());
        let (count, seen) = (Arc::clone(&accepted), Arc::clone(&log));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    loop {
                        let request = read_request(&mut stream).await;
                        if request.is_empty() {
                            return;
                        }
                        seen.lock().unwrap().push(request.clone());
                        let response = match target(&request) {
                            "/redirect" => format!(
                                "HTTP/1.1 302 Found\r\nLocation: http://localhost:{}/ok\r\nContent-Length: 0\r\n\r\n",
                                addr.port()
                            ),
                            "/close" => {
                                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
                                    .to_owned()
                            }
                            _ => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_owned(),
                        };
                        if stream.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                        if target(&request) == "/close" {
                            let _ = stream.shutdown().await;
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted, log)
    }

    async fn kept(req: Request, keep: &KeepAlive) -> Result<Response, Failure> {
        let deadline = Instant::now() + BOUND;
        tokio::time::timeout(BOUND, exchange_in(req, &options(), Some(keep), deadline))
            .await
            .expect("the exchange outlived the test bound")
    }

    #[tokio::test]
    async fn kept_connections_are_reused_per_origin_with_no_connect_phase() {
        let (addr, accepted, log) = serve_kept().await;
        let keep = KeepAlive::new(4);
        let url = |path: &str| format!("http://{addr}{path}");

        let first = kept(get(&url("/a")), &keep).await.unwrap();
        assert!(first.phases.connect > Duration::ZERO, "{:?}", first.phases);
        let started = Instant::now();
        let second = kept(get(&url("/b")), &keep).await.unwrap();
        let total = started.elapsed();
        assert_eq!(&second.body[..], b"ok");
        let p = second.phases;
        assert_eq!(
            (p.resolve, p.connect, p.tls),
            (Duration::ZERO, Duration::ZERO, Duration::ZERO)
        );
        assert!(p.processing > Duration::ZERO, "{p:?}");
        assert_contiguous(&p, total);
        assert!(
            second.service > Duration::ZERO && second.service <= p.processing + p.transfer,
            "{:?} {p:?}",
            second.service
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!((keep.opened(), keep.reused()), (1, 1));
        // A kept connection does not ask to be closed.
        let requests = std::mem::take(&mut *log.lock().unwrap());
        assert!(
            requests.iter().all(|r| !r.contains("connection: close")),
            "{requests:?}"
        );

        // A redirect to another origin (localhost, not 127.0.0.1) opens a
        // connection of its own; the next request to each origin reuses.
        let response = kept(get(&url("/redirect")), &keep).await.unwrap();
        assert_eq!((response.status, response.redirects), (StatusCode::OK, 1));
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        kept(get(&url("/c")), &keep).await.unwrap();
        kept(get(&format!("http://localhost:{}/d", addr.port())), &keep)
            .await
            .unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);

        // `Connection: close` in a response retires its connection.
        kept(get(&url("/close")), &keep).await.unwrap();
        kept(get(&url("/e")), &keep).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        assert_eq!(keep.opened(), 3);

        // Without a pool, the same server sees a connection per exchange.
        run(get(&url("/f")), &options(), BOUND).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
        let last = log.lock().unwrap().last().cloned().unwrap();
        assert!(last.contains("connection: close"), "{last}");
    }

    #[tokio::test]
    async fn a_kept_https_connection_keeps_its_certificate_expiry() {
        let identity = self_signed();
        let addr = serve_tls(&identity).await;
        let opts = tls_options(TlsOptions {
            insecure_skip_verify: true,
            ..TlsOptions::default()
        });
        let keep = KeepAlive::new(2);
        // The test server closes after one answer: every request still
        // succeeds, each on a connection with its own handshake.
        for _ in 0..3 {
            let deadline = Instant::now() + BOUND;
            let response = exchange_in(
                get(&format!("https://{addr}/")),
                &opts,
                Some(&keep),
                deadline,
            )
            .await
            .unwrap();
            assert_eq!(&response.body[..], b"secure");
            assert_eq!(response.tls_earliest_expiry, Some(67_090_118_400));
            assert!(response.phases.tls > Duration::ZERO);
        }
        assert_eq!(keep.opened(), 3);
    }

    #[test]
    fn tls_config_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no pem here\n").unwrap();
        let error = |tls: TlsOptions| crate::net::tls::client_config(&tls).unwrap_err();

        let message = error(TlsOptions {
            ca_file: Some(missing.clone()),
            ..TlsOptions::default()
        });
        assert!(
            message.starts_with(&format!("cannot read ca_file {}: ", missing.display())),
            "{message}"
        );
        let message = error(TlsOptions {
            ca_file: Some(empty.clone()),
            ..TlsOptions::default()
        });
        assert_eq!(
            message,
            format!("no certificate found in ca_file {}", empty.display())
        );

        let identity = self_signed();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, identity.cert.pem()).unwrap();
        std::fs::write(&key, identity.signing_key.serialize_pem()).unwrap();
        let message = error(TlsOptions {
            client_cert: Some(cert.clone()),
            client_key: Some(empty.clone()),
            ..TlsOptions::default()
        });
        assert_eq!(
            message,
            format!("no private key found in client_key {}", empty.display())
        );
        let message = error(TlsOptions {
            client_cert: Some(cert.clone()),
            ..TlsOptions::default()
        });
        assert_eq!(message, "client_cert is set without client_key");
        let with_client_cert = TlsOptions {
            client_cert: Some(cert),
            client_key: Some(key),
            ..TlsOptions::default()
        };
        assert!(crate::net::tls::client_config(&with_client_cert).is_ok());
    }

    /// An h2c server (prior knowledge) on 127.0.0.1 that answers every
    /// request 20 ms after it came with `hello`, and ` world` 20 ms later;
    /// it counts the connections it accepts, and the most requests it had
    /// in hand at once.
    async fn serve_h2c() -> (SocketAddr, Arc<AtomicU64>, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, peak) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (count, most) = (Arc::clone(&accepted), Arc::clone(&peak));
        let in_hand = Arc::new(AtomicU64::new(0));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (most, in_hand) = (Arc::clone(&most), Arc::clone(&in_hand));
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(stream).await else {
                        return;
                    };
                    while let Some(Ok((_, mut respond))) = conn.accept().await {
                        let now = in_hand.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        let in_hand = Arc::clone(&in_hand);
                        tokio::spawn(async move {
                            sleep(20 * MS).await;
                            let head = http::Response::builder()
                                .header("content-length", "11")
                                .body(())
                                .unwrap();
                            let mut body = respond.send_response(head, false).unwrap();
                            let _ = body.send_data(Bytes::from_static(b"hello"), false);
                            sleep(20 * MS).await;
                            let _ = body.send_data(Bytes::from_static(b" world"), true);
                            in_hand.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                });
            }
        });
        (addr, accepted, peak)
    }

    #[tokio::test]
    async fn http2_with_prior_knowledge_measures_every_phase() {
        let (addr, _, _) = serve_h2c().await;
        let opts = TransportOptions {
            version: HttpVersion::Http2,
            ..options()
        };
        let started = Instant::now();
        let url = format!("http://{addr}/path?q=1");
        let response = run(get(&url), &opts, BOUND).await.unwrap();
        let total = started.elapsed();
        assert_eq!(response.version, http::Version::HTTP_2);
        assert_eq!(
            (response.status, &response.body[..]),
            (StatusCode::OK, &b"hello world"[..])
        );
        let phases = response.phases;
        assert_eq!(
            (phases.resolve, phases.tls),
            (Duration::ZERO, Duration::ZERO)
        );
        assert!(phases.connect > Duration::ZERO, "{phases:?}");
        assert!(phases.processing >= 20 * MS, "{phases:?}");
        assert!(phases.transfer >= 10 * MS, "{phases:?}");
        assert_contiguous(&phases, total);
        // Over HTTP/2, from the request's hand-over to the body's end.
        let service = response.service;
        assert!(service >= 30 * MS, "{service:?} {phases:?}");
        assert!(
            service <= phases.processing + phases.transfer,
            "{service:?} {phases:?}"
        );
    }

    #[tokio::test]
    async fn kept_http2_requests_share_one_connection_as_concurrent_streams() {
        let (addr, accepted, peak) = serve_h2c().await;
        let opts = TransportOptions {
            version: HttpVersion::Http2,
            ..options()
        };
        let keep = KeepAlive::new(8);
        let url = format!("http://{addr}/");
        let deadline = Instant::now() + BOUND;
        let sends = (0..8).map(|_| exchange_in(get(&url), &opts, Some(&keep), deadline));
        for response in futures_util::future::join_all(sends).await {
            let response = response.unwrap();
            assert_eq!(response.version, http::Version::HTTP_2);
            assert_eq!(&response.body[..], b"hello world");
        }
        // One connection, opened by one request while the others waited,
        // then carrying them side by side.
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!((keep.opened(), keep.reused()), (1, 7));
        assert!(
            peak.load(Ordering::SeqCst) > 1,
            "the streams were not concurrent"
        );
    }

    /// An h2c server that hands the first request of each connection to
    /// `answer`, with the connection, which it drops when done.
    async fn serve_h2c_with<F, Fut>(answer: F) -> SocketAddr
    where
        F: Fn(h2::server::Connection<TcpStream, Bytes>, h2::server::SendResponse<Bytes>) -> Fut
            + Send
            + Sync
            + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let answer = Arc::clone(&answer);
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(stream).await else {
                        return;
                    };
                    if let Some(Ok((_, respond))) = conn.accept().await {
                        answer(conn, respond).await;
                    }
                });
            }
        });
        addr
    }

    /// Drives `conn` for a moment, so what was queued goes out.
    async fn flush(conn: &mut h2::server::Connection<TcpStream, Bytes>) {
        let _ = tokio::time::timeout(50 * MS, conn.accept()).await;
    }

    #[tokio::test]
    async fn http2_failures_are_worded_by_what_the_server_did() {
        let opts = TransportOptions {
            version: HttpVersion::Http2,
            ..options()
        };
        // The stream refused.
        let refusing = serve_h2c_with(|mut conn, mut respond| async move {
            respond.send_reset(h2::Reason::REFUSED_STREAM);
            flush(&mut conn).await;
        })
        .await;
        let failure = run(get(&format!("http://{refusing}/")), &opts, BOUND)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, FailureReason::Protocol, "{failure:?}");
        assert_eq!(
            failure.message,
            "the server reset the HTTP/2 stream (REFUSED_STREAM: refused stream before processing any application logic) without sending a response"
        );
        assert_eq!(failure.version, Some(http::Version::HTTP_2));

        // The body cut short by the connection's end.
        let cutting = serve_h2c_with(|mut conn, mut respond| async move {
            let head = http::Response::builder()
                .header("content-length", "100")
                .body(())
                .unwrap();
            let mut body = respond.send_response(head, false).unwrap();
            let _ = body.send_data(Bytes::from_static(&[b'x'; 10]), false);
            flush(&mut conn).await;
        })
        .await;
        let failure = run(get(&format!("http://{cutting}/")), &opts, BOUND)
            .await
            .unwrap_err();
        assert_eq!(
            (failure.status, failure.body_bytes),
            (Some(200), 10),
            "{failure:?}"
        );
        assert_eq!(failure.reason, FailureReason::Closed, "{failure:?}");
        assert_eq!(
            failure.message,
            "the server closed the connection after 10 of the 100 body bytes announced"
        );

        // A server that takes the HTTP/2 preface for a bad HTTP/1.1 request
        // and hangs up.
        let (closing, _) = serve(|_, stream| async move { drop(stream) }).await;
        let failure = run(get(&format!("http://{closing}/")), &opts, BOUND)
            .await
            .unwrap_err();
        assert!(
            matches!(failure.reason, FailureReason::Closed | FailureReason::Reset),
            "{failure:?}"
        );
        assert!(
            failure.message.ends_with(
                "(an HTTP/1.1-only server may close at the HTTP/2 preface: http_version = \"2\" on an http:// URL is HTTP/2 with prior knowledge, h2c)"
            ),
            "{failure:?}"
        );
    }
}
