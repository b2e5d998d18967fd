//! HTTP/2 for the `http` exchange ([`super::http1`]): the version a probe
//! asks for, one HTTP/2 connection (h2 over TLS after ALPN, or h2c with
//! prior knowledge over cleartext) and the set of connections a workload's
//! requests share.
//!
//! The exchange itself (phases, redirects, body cap, decoding, the one
//! deadline) stays in [`super::http1`], which asks this module for a
//! connection, sends a request on it and reads the body; this module knows
//! nothing of redirects or phases.
//!
//! It uses `h2` directly rather than hyper's HTTP/2 client, for two reasons.
//! Timing: the reads of a connection are watched frame by frame ([`Watch`]),
//! so the instant the first frame of a stream's response arrived is known
//! per stream, even when many streams share a connection; hyper hides the
//! stream. Ownership: hyper's client spawns the connection and a task per
//! response on an executor, while a fresh connection here is driven by the
//! exchange itself (`drive`), as an HTTP/1.1 one is, and nothing outlives
//! it. Only a connection shared by concurrent requests ([`Shared`]) gets a
//! task, owned by the connection and aborted when its last user goes
//! ([`AbortOnDrop`]).

use super::dial::{AbortOnDrop, Io};
use super::error::{Cut, Fail, cut, describe, looks_like_tls};
use super::pool::Origin;
use crate::outcome::FailureReason;
use bytes::{Bytes, BytesMut};
use h2::client::{Connection, SendRequest};
use h2::{Reason, RecvStream};
use http::header::{self, HeaderMap};
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The HTTP version a request may use (`http_version`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HttpVersion {
    /// Over TLS, whatever the server picks by ALPN among `h2` and
    /// `http/1.1`; HTTP/1.1 over cleartext.
    #[default]
    Auto,
    /// HTTP/1.1 only (ALPN `http/1.1` over TLS).
    Http1,
    /// HTTP/2 only: ALPN `h2` over TLS, prior knowledge (h2c) over
    /// cleartext.
    Http2,
}

impl HttpVersion {
    /// The values `http_version` takes, for messages.
    pub const NAMES: &'static str = "`\"auto\"`, `\"1.1\"` or `\"2\"`";

    /// The setting written `name` (`auto`, `1.1`, `2`).
    pub fn from_name(name: &str) -> Option<HttpVersion> {
        match name {
            "auto" => Some(HttpVersion::Auto),
            "1.1" => Some(HttpVersion::Http1),
            "2" => Some(HttpVersion::Http2),
            _ => None,
        }
    }

    /// The protocols offered by ALPN, most wanted first.
    pub fn alpn(self) -> Vec<Vec<u8>> {
        match self {
            HttpVersion::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            HttpVersion::Http1 => vec![b"http/1.1".to_vec()],
            HttpVersion::Http2 => vec![b"h2".to_vec()],
        }
    }

    /// Whether a connection made with (`tls`) or without TLS may speak
    /// HTTP/2.
    pub fn may_use_http2(self, tls: bool) -> bool {
        match self {
            HttpVersion::Auto => tls,
            HttpVersion::Http1 => false,
            HttpVersion::Http2 => true,
        }
    }

    /// Whether a new TLS connection to `peer` speaks HTTP/2, from the
    /// protocol the server picked by ALPN (`None`: it picked none, as a
    /// server that knows nothing of ALPN does). Asking for HTTP/2 and
    /// getting anything else is the server's refusal, in words.
    pub fn negotiated(self, alpn: Option<&[u8]>, peer: &str) -> Result<bool, Fail> {
        let h2 = alpn == Some(b"h2".as_slice());
        if self == HttpVersion::Http2 && !h2 {
            let picked = match alpn {
                None => "it picked no protocol".to_owned(),
                Some(other) => format!("it picked {:?}", String::from_utf8_lossy(other)),
            };
            return Err(not_http2(peer, &picked));
        }
        Ok(h2)
    }
}

/// The failure when a TLS server does not agree to HTTP/2 and the probe
/// asked for nothing else.
pub fn not_http2(peer: &str, how: &str) -> Fail {
    Fail::new(
        FailureReason::Protocol,
        format!(
            "{peer} does not speak HTTP/2 over TLS: asked for h2 by ALPN, {how} (http_version = \"2\"; \"auto\" would use HTTP/1.1)"
        ),
    )
}

/// The version as reports and expressions name it: `1.1`, `2`.
pub fn version_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// The receive window of each stream: a body of a few MiB arrives without
/// waiting a round trip per 64 KiB, as with HTTP/1.1.
const STREAM_WINDOW: u32 = 1 << 20;
/// The receive window of a connection, shared by its streams.
const CONNECTION_WINDOW: u32 = 4 << 20;
/// The largest response header block accepted, as HTTP/1.1's limit.
const MAX_HEADER_LIST: u32 = 400 * 1024;

/// h2's side of a connection: the future that does its I/O.
type H2 = Connection<Watched, Bytes>;

/// One HTTP/2 connection, or a handle on one that requests share.
///
/// A fresh connection has no task: whoever uses it drives it (`drive`),
/// and it closes when dropped. A handle on a shared connection
/// ([`Shared::add`]) leaves the driving to the connection's task, which
/// lives as long as a handle does.
pub struct Conn {
    sender: SendRequest<Bytes>,
    /// `Some` while this handle drives the connection itself; `None` once
    /// it ended, and on a shared connection.
    connection: Option<Pin<Box<H2>>>,
    watch: Arc<Watch>,
    /// The earliest certificate expiry its handshake showed.
    pub tls_expiry: Option<i64>,
    /// Prior knowledge over cleartext (h2c), where a server that speaks
    /// only HTTP/1.1 answers the preface in its own way.
    cleartext: bool,
    /// The connection this is a handle on, when shared.
    shared: Option<Arc<Multiplexed>>,
}

impl Conn {
    /// Starts HTTP/2 on `io` (after ALPN, or with prior knowledge when
    /// `cleartext`): the preface and settings are written, and the
    /// request can follow at once, without waiting for the server's.
    pub async fn handshake(
        io: Box<dyn Io>,
        cleartext: bool,
        tls_expiry: Option<i64>,
    ) -> Result<Conn, Fail> {
        let watch = Arc::new(Watch::default());
        let io = Watched {
            inner: io,
            watch: Arc::clone(&watch),
        };
        let (sender, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_header_list_size(MAX_HEADER_LIST)
            .enable_push(false)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| match cut_of(&watch, &e) {
                Some(how) => Fail::new(
                    how.reason(),
                    format!("starting http/2 failed: the server {}", how.words()),
                ),
                None => Fail::new(
                    FailureReason::Protocol,
                    format!("starting http/2 failed: {}", describe(&e)),
                ),
            })?;
        Ok(Conn {
            sender,
            connection: Some(Box::pin(connection)),
            watch,
            tls_expiry,
            cleartext,
            shared: None,
        })
    }

    /// Sends `request` with `body` and waits for the response head; the
    /// instant its first frame arrived comes with it (`None` if the watch
    /// lost it, when hundreds of other streams answered meanwhile).
    pub async fn send(
        &mut self,
        request: http::Request<()>,
        body: Bytes,
    ) -> Result<(http::Response<RecvStream>, Option<Instant>), SendFailed> {
        let unsent = |conn: &Conn, e: h2::Error| SendFailed {
            fail: conn.failed("sending the request", &e, 0),
            unsent: true,
            unanswered: true,
            gone: true,
        };
        // Ready once the server allows another concurrent stream.
        let sender = &mut self.sender;
        let ready = drive(
            &mut self.connection,
            std::future::poll_fn(|cx| sender.poll_ready(cx)),
        )
        .await;
        if let Err(e) = ready {
            return Err(unsent(self, e));
        }
        let (response, mut stream) = match self.sender.send_request(request, body.is_empty()) {
            Ok(sent) => sent,
            Err(e) => return Err(unsent(self, e)),
        };
        let id = u32::from(response.stream_id());
        if !body.is_empty() {
            // Buffered by h2 and sent as the server's window allows, while
            // the response is awaited.
            if let Err(e) = stream.send_data(body, true) {
                // The head may have left: only an idempotent request is
                // sent again.
                return Err(SendFailed {
                    unsent: false,
                    ..unsent(self, e)
                });
            }
        }
        match drive(&mut self.connection, response).await {
            Ok(response) => Ok((response, self.watch.first_frame(id))),
            Err(e) => {
                let answered = self.watch.first_frame(id).is_some();
                let refused = e.reason() == Some(Reason::REFUSED_STREAM);
                let gone = e.is_go_away() || e.is_io();
                Err(SendFailed {
                    fail: self.failed("the http/2 exchange", &e, id),
                    unsent: refused,
                    unanswered: !answered && (gone || (e.is_reset() && e.is_remote())),
                    gone,
                })
            }
        }
    }

    /// Reads `body` to its end, failing as soon as more than `max` bytes
    /// have arrived; `received` counts them as they do. `announced` is the
    /// response's `Content-Length`, for the words of a body cut short.
    pub async fn read_body(
        &mut self,
        mut body: RecvStream,
        max: u64,
        announced: Option<u64>,
        received: &mut u64,
    ) -> Result<Bytes, Fail> {
        let mut buf = BytesMut::new();
        while let Some(chunk) = drive(&mut self.connection, body.data()).await {
            let chunk = chunk.map_err(|e| self.body_failed(&e, buf.len() as u64, announced))?;
            // The window opens again as the body is read, not before.
            let _ = body.flow_control().release_capacity(chunk.len());
            *received += chunk.len() as u64;
            if (buf.len() + chunk.len()) as u64 > max {
                return Err(super::error::too_large(max, "raw"));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    /// Why no response head arrived for stream `id` (0: none was opened),
    /// in the words of what the server did.
    fn failed(&self, doing: &str, e: &h2::Error, id: u32) -> Fail {
        let answered = id != 0 && self.watch.first_frame(id).is_some();
        // TLS 1.3: a server that refuses the client certificate says so
        // after the client's side of the handshake is done, at a read.
        if let Some(fail) = self.refused() {
            return fail;
        }
        if let Some(how) = cut_of(&self.watch, e) {
            let when = if answered {
                "in the middle of the response head"
            } else if how == Cut::Closed {
                "without sending a response"
            } else {
                "before sending a response"
            };
            let mut message = format!("the server {} {when}", how.words());
            if self.cleartext && self.watch.received() == 0 {
                message.push_str(
                    " (an HTTP/1.1-only server may close at the HTTP/2 preface: http_version = \"2\" on an http:// URL is HTTP/2 with prior knowledge, h2c)",
                );
            }
            return Fail::new(how.reason(), message);
        }
        if let Some(reason) = e.reason().filter(|_| e.is_remote()) {
            if reason == Reason::HTTP_1_1_REQUIRED {
                return Fail::new(
                    FailureReason::Protocol,
                    "the server requires HTTP/1.1 for this request (HTTP_1_1_REQUIRED): set http_version = \"1.1\"",
                );
            }
            if e.is_go_away() {
                let (reason_kind, what) = if reason == Reason::NO_ERROR {
                    (FailureReason::Closed, "closed the HTTP/2 connection")
                } else {
                    (FailureReason::Protocol, "ended the HTTP/2 connection")
                };
                return Fail::new(
                    reason_kind,
                    format!("the server {what} (GOAWAY {reason:?}) before answering"),
                );
            }
            return Fail::new(
                FailureReason::Protocol,
                format!(
                    "the server reset the HTTP/2 stream ({reason:?}: {}) without sending a response",
                    reason.description()
                ),
            );
        }
        let start = self.watch.start();
        if start.starts_with(b"HTTP/1.") {
            let line = start.split(|b| *b == b'\r').next().unwrap_or_default();
            return Fail::new(
                FailureReason::Protocol,
                format!(
                    "the server answered in HTTP/1.x (\"{}\"), not HTTP/2: it does not speak HTTP/2 with prior knowledge over cleartext (h2c); http_version = \"auto\" or \"1.1\" uses HTTP/1.1",
                    line.escape_ascii()
                ),
            );
        }
        if self.cleartext && looks_like_tls(&start) {
            return Fail::new(
                FailureReason::Protocol,
                "the response is a TLS record, not HTTP/2: the port speaks TLS (is the URL meant to be https://?)",
            );
        }
        Fail::new(
            FailureReason::Protocol,
            format!("{doing} failed: {}", describe(e)),
        )
    }

    /// The server's refusal of the client certificate, if a read met it.
    fn refused(&self) -> Option<Fail> {
        self.watch.frames().refused.clone()
    }

    /// Why a body stopped before its end, after `got` bytes of the
    /// `announced` ones.
    fn body_failed(&self, e: &h2::Error, got: u64, announced: Option<u64>) -> Fail {
        let how_far = match announced {
            Some(total) => format!("after {got} of the {total} body bytes announced"),
            None => format!("in the middle of the body, after {got} bytes"),
        };
        if let Some(fail) = self.refused() {
            return fail;
        }
        if let Some(how) = cut_of(&self.watch, e) {
            return Fail::new(
                how.reason(),
                format!("the server {} {how_far}", how.words()),
            );
        }
        match e.reason().filter(|_| e.is_remote()) {
            Some(reason) if e.is_go_away() => Fail::new(
                FailureReason::Protocol,
                format!("the server ended the HTTP/2 connection (GOAWAY {reason:?}) {how_far}"),
            ),
            Some(reason) => Fail::new(
                FailureReason::Protocol,
                format!(
                    "the server reset the HTTP/2 stream ({reason:?}: {}) {how_far}",
                    reason.description()
                ),
            ),
            None => Fail::new(
                FailureReason::Protocol,
                format!("reading the body failed {how_far}: {}", describe(e)),
            ),
        }
    }
}

/// A request that got no response head.
pub struct SendFailed {
    pub fail: Fail,
    /// The server has not seen it: it never left, or the server refused
    /// the stream before processing it (`REFUSED_STREAM`).
    pub unsent: bool,
    /// No frame of the response arrived before the connection went away.
    pub unanswered: bool,
    /// The connection itself went away (closed, reset, `GOAWAY`), not
    /// just this stream.
    pub gone: bool,
}

impl SendFailed {
    /// Whether to send the request again on a new connection: when the
    /// server has not seen it, or it is idempotent and the shared
    /// connection went away under it before an answer.
    pub fn again(&self, method: &http::Method) -> bool {
        self.unsent || (self.unanswered && method.is_idempotent())
    }
}

/// Runs `fut` (waiting until the connection is ready, a request, its
/// body) while doing the connection's I/O, which `fut` waits on: hyper's
/// HTTP/1.1 connection in [`super::http1`], h2's here. The connection is
/// polled first, so what it reads reaches `fut` in the same turn. A
/// connection that ends is dropped at once, which ends whatever `fut`
/// still waited for with the protocol library's error.
pub(super) async fn drive<C: Future, F: Future>(
    connection: &mut Option<Pin<Box<C>>>,
    fut: F,
) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        if let Some(io) = connection {
            if io.as_mut().poll(cx).is_ready() {
                *connection = None;
            }
        }
        fut.as_mut().poll(cx)
    })
    .await
}

/// How the peer cut the connection under `e`, if it did. h2's errors do
/// not chain to the I/O error beneath, and it reports the end of the
/// stream (a clean close) as a `BrokenPipe` of its own making, with no OS
/// error code: what the reads and writes met ([`Watch`]) decides, the I/O
/// error's kind only when they met nothing.
fn cut_of(watch: &Watch, e: &h2::Error) -> Option<Cut> {
    let io = e.get_io()?;
    watch.frames().ended.or_else(|| cut(io))
}

/// A connection shared by concurrent requests: its task drives it.
struct Multiplexed {
    sender: SendRequest<Bytes>,
    watch: Arc<Watch>,
    tls_expiry: Option<i64>,
    cleartext: bool,
    /// Set by the task when the connection ended.
    ended: Arc<AtomicBool>,
    _task: AbortOnDrop,
}

/// The HTTP/2 connections a run's requests share (a workload's
/// `keep_alive`), by origin: one per origin as a rule, each carrying as
/// many concurrent streams as its server allows (a request waits for a
/// free stream, as any HTTP/2 client does), at most `max` in all.
///
/// A new connection that may speak HTTP/2 is opened by one request at a
/// time ([`Shared::gate`]): the others wait for it, then share it, rather
/// than each open their own. An origin whose server picked HTTP/1.1 by
/// ALPN is remembered, so its requests no longer wait for one another.
pub struct Shared {
    max: usize,
    conns: Mutex<VecDeque<(Origin, Arc<Multiplexed>)>>,
    /// Held while a connection that may speak HTTP/2 is being opened.
    pub gate: tokio::sync::Mutex<()>,
    /// Origins whose server picked HTTP/1.1 (at most `max`, newest last).
    http1: Mutex<VecDeque<Origin>>,
    opened: AtomicU64,
    reused: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Queues of plain values, consistent after every statement.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Keeps at most `max` connections (at least 1).
    pub fn new(max: usize) -> Shared {
        Shared {
            max: max.max(1),
            conns: Mutex::default(),
            gate: tokio::sync::Mutex::new(()),
            http1: Mutex::default(),
            opened: AtomicU64::new(0),
            reused: AtomicU64::new(0),
        }
    }

    /// A handle on a live connection to the origin (`tls`, `host`, `port`);
    /// ended ones met on the way are dropped.
    pub fn find(&self, tls: bool, host: &str, port: u16) -> Option<Conn> {
        let mut conns = lock(&self.conns);
        conns.retain(|(_, m)| !m.ended.load(Ordering::Relaxed));
        let (_, m) = conns.iter().find(|(o, _)| o.is(tls, host, port))?;
        self.reused.fetch_add(1, Ordering::Relaxed);
        Some(Conn {
            sender: m.sender.clone(),
            connection: None,
            watch: Arc::clone(&m.watch),
            tls_expiry: m.tls_expiry,
            cleartext: m.cleartext,
            shared: Some(Arc::clone(m)),
        })
    }

    /// Shares `conn`, just opened to `origin`: its connection gets a task,
    /// and `conn` becomes a handle on it. The oldest connection goes when
    /// there are more than `max` (its requests in flight finish on it).
    pub fn add(&self, origin: Origin, mut conn: Conn) -> Conn {
        self.opened.fetch_add(1, Ordering::Relaxed);
        let ended = Arc::new(AtomicBool::new(false));
        let task = conn.connection.take().map(|connection| {
            let ended = Arc::clone(&ended);
            tokio::spawn(async move {
                // A failure reaches the streams, which report it.
                let _ = connection.await;
                ended.store(true, Ordering::Relaxed);
            })
        });
        let Some(task) = task else {
            // Already ended: nothing to share.
            return conn;
        };
        let m = Arc::new(Multiplexed {
            sender: conn.sender.clone(),
            watch: Arc::clone(&conn.watch),
            tls_expiry: conn.tls_expiry,
            cleartext: conn.cleartext,
            ended,
            _task: AbortOnDrop(task),
        });
        conn.shared = Some(Arc::clone(&m));
        let mut conns = lock(&self.conns);
        conns.push_back((origin, m));
        while conns.len() > self.max {
            conns.pop_front();
        }
        conn
    }

    /// Stops handing out the connection `conn` is a handle on (it failed a
    /// request in a way that says it is gone).
    pub fn forget(&self, conn: &Conn) {
        if let Some(m) = &conn.shared {
            lock(&self.conns).retain(|(_, other)| !Arc::ptr_eq(m, other));
        }
    }

    /// Whether the server of the origin picked HTTP/1.1 by ALPN before.
    pub fn speaks_http1(&self, tls: bool, host: &str, port: u16) -> bool {
        lock(&self.http1).iter().any(|o| o.is(tls, host, port))
    }

    /// Remembers that the server of `origin` picked HTTP/1.1.
    pub fn mark_http1(&self, origin: &Origin) {
        let mut http1 = lock(&self.http1);
        if !http1.contains(origin) {
            http1.push_back(origin.clone());
            while http1.len() > self.max {
                http1.pop_front();
            }
        }
    }

    /// HTTP/2 connections opened so far.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Requests sent on an HTTP/2 connection an earlier request opened.
    pub fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }
}

/// What the reads of an HTTP/2 connection have shown: when the first frame
/// of each stream arrived (the end of that request's `processing`), and
/// the connection's first bytes (an HTTP/1.x answer to the preface, or TLS
/// on a cleartext URL, are recognised by them).
#[derive(Default)]
struct Watch {
    state: Mutex<Frames>,
}

/// The frame parser's state across reads, and what it found.
#[derive(Default)]
struct Frames {
    /// The frame header being read, and how much of it has arrived.
    head: [u8; 9],
    head_len: usize,
    /// When the first byte of that header arrived.
    head_at: Option<Instant>,
    /// Payload bytes of the current frame still to pass over.
    skip: u64,
    /// The connection's first bytes.
    first: Vec<u8>,
    received: u64,
    /// How the connection ended, when a read or a write met its end: a
    /// clean close (the stream ended) or a reset.
    ended: Option<Cut>,
    /// The server refused the client certificate, as a read found out
    /// (kept here: h2 passes on an I/O error's words, not the error).
    refused: Option<Fail>,
    /// Streams whose first frame arrived, with when: oldest first, at most
    /// [`Watch::STREAMS`].
    arrived: VecDeque<(u32, Instant)>,
}

impl Watch {
    /// How many of the connection's first bytes are kept.
    const KEPT: usize = 24;
    /// How many streams' first frames are remembered: a stream's is read
    /// as soon as its response head is, so only hundreds of streams
    /// answering in between could push it out.
    const STREAMS: usize = 512;

    fn frames(&self) -> MutexGuard<'_, Frames> {
        lock(&self.state)
    }

    /// Notes bytes a read returned at `now`.
    fn note(&self, data: &[u8], now: Instant) {
        let mut f = self.frames();
        if f.first.len() < Watch::KEPT {
            let n = (Watch::KEPT - f.first.len()).min(data.len());
            f.first.extend_from_slice(&data[..n]);
        }
        f.received += data.len() as u64;
        let mut rest = data;
        while !rest.is_empty() {
            if f.skip > 0 {
                let n = usize::try_from(f.skip)
                    .unwrap_or(usize::MAX)
                    .min(rest.len());
                f.skip -= n as u64;
                rest = &rest[n..];
                continue;
            }
            if f.head_len == 0 {
                f.head_at = Some(now);
            }
            let n = (9 - f.head_len).min(rest.len());
            let at = f.head_len;
            f.head[at..at + n].copy_from_slice(&rest[..n]);
            f.head_len += n;
            rest = &rest[n..];
            if f.head_len < 9 {
                break;
            }
            f.head_len = 0;
            let head = f.head;
            f.skip = u64::from(u32::from_be_bytes([0, head[0], head[1], head[2]]));
            let kind = head[3];
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            // DATA, HEADERS or RST_STREAM: the stream's answer began.
            let answers = matches!(kind, 0x0 | 0x1 | 0x3);
            if stream == 0 || !answers || f.arrived.iter().rev().any(|(s, _)| *s == stream) {
                continue;
            }
            let at = f.head_at.unwrap_or(now);
            f.arrived.push_back((stream, at));
            if f.arrived.len() > Watch::STREAMS {
                f.arrived.pop_front();
            }
        }
    }

    /// When the first frame of stream `id` arrived.
    fn first_frame(&self, id: u32) -> Option<Instant> {
        self.frames()
            .arrived
            .iter()
            .rev()
            .find(|(s, _)| *s == id)
            .map(|(_, at)| *at)
    }

    fn received(&self) -> u64 {
        self.frames().received
    }

    /// Notes how the connection ended, the first time it is seen.
    fn end(&self, how: Cut) {
        self.frames().ended.get_or_insert(how);
    }

    /// The connection's first bytes.
    fn start(&self) -> Vec<u8> {
        self.frames().first.clone()
    }
}

/// A stream whose reads are noted in a [`Watch`].
struct Watched {
    inner: Box<dyn Io>,
    watch: Arc<Watch>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let (before, room) = (buf.filled().len(), buf.remaining() > 0);
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let new = &buf.filled()[before..];
        if !new.is_empty() {
            self.watch.note(new, Instant::now());
        }
        match &poll {
            Poll::Ready(Ok(())) if new.is_empty() && room => self.watch.end(Cut::Closed),
            Poll::Ready(Err(e)) => self.ended(e),
            _ => {}
        }
        poll
    }
}

impl Watched {
    /// Notes an I/O error that says the peer cut the connection, or
    /// refused the client certificate.
    fn ended(&self, e: &io::Error) {
        if let Some(how) = cut(e) {
            self.watch.end(how);
        }
        if let Some(fail) = super::error::client_auth_refused(e) {
            self.watch.frames().refused.get_or_insert(fail);
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Err(e)) = &poll {
            self.ended(e);
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Err(e)) = &poll {
            self.ended(e);
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The headers HTTP/2 forbids (RFC 9113 section 8.2.2), which h2 refuses
/// to send: the connection-specific ones, and `TE` other than `trailers`.
/// `Host` goes too, its value having become the request's authority.
pub fn strip_connection_headers(headers: &mut HeaderMap) {
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::HOST,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    if headers.get(header::TE).is_some_and(|te| te != "trailers") {
        headers.remove(header::TE);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn frame(kind: u8, stream: u32, payload: usize) -> Vec<u8> {
        let len = (payload as u32).to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, 0];
        f.extend_from_slice(&stream.to_be_bytes());
        f.resize(9 + payload, 0xab);
        f
    }

    #[test]
    fn the_watch_finds_each_streams_first_frame_across_reads() {
        let watch = Watch::default();
        let t0 = Instant::now();
        let at = |ms| t0 + std::time::Duration::from_millis(ms);
        // SETTINGS (stream 0), then stream 3's HEADERS split across reads,
        // then DATA for 3 and HEADERS for 1.
        let mut bytes = frame(0x4, 0, 6);
        bytes.extend(frame(0x1, 3, 20));
        let (a, b) = bytes.split_at(15 + 4);
        watch.note(a, at(1));
        watch.note(b, at(2));
        let mut more = frame(0x0, 3, 100);
        more.extend(frame(0x1, 1, 5));
        watch.note(&more, at(3));
        watch.note(&frame(0x0, 3, 1), at(4));
        // Stream 3's header began in the first read.
        assert_eq!(watch.first_frame(3), Some(at(1)));
        assert_eq!(watch.first_frame(1), Some(at(3)));
        assert_eq!(watch.first_frame(5), None);
        assert_eq!(watch.first_frame(0), None);
        assert_eq!(watch.start(), bytes[..Watch::KEPT]);
    }

    #[test]
    fn the_watch_remembers_a_bounded_number_of_streams() {
        let watch = Watch::default();
        let now = Instant::now();
        for id in 0..(Watch::STREAMS as u32 + 10) {
            watch.note(&frame(0x1, 2 * id + 1, 3), now);
        }
        assert_eq!(watch.frames().arrived.len(), Watch::STREAMS);
        assert_eq!(watch.first_frame(1), None);
        assert!(
            watch
                .first_frame(2 * (Watch::STREAMS as u32 + 9) + 1)
                .is_some()
        );
    }

    #[test]
    fn versions_are_named_and_negotiated() {
        for (name, v) in [
            ("auto", HttpVersion::Auto),
            ("1.1", HttpVersion::Http1),
            ("2", HttpVersion::Http2),
        ] {
            assert_eq!(HttpVersion::from_name(name), Some(v));
        }
        assert_eq!(HttpVersion::from_name("2.0"), None);
        assert!(HttpVersion::Auto.negotiated(Some(b"h2"), "p").unwrap());
        assert!(!HttpVersion::Auto.negotiated(None, "p").unwrap());
        assert!(
            !HttpVersion::Http1
                .negotiated(Some(b"http/1.1"), "p")
                .unwrap()
        );
        let fail = HttpVersion::Http2
            .negotiated(Some(b"http/1.1"), "localhost:8443")
            .unwrap_err();
        assert_eq!(fail.reason, FailureReason::Protocol);
        assert_eq!(
            fail.message,
            "localhost:8443 does not speak HTTP/2 over TLS: asked for h2 by ALPN, it picked \"http/1.1\" (http_version = \"2\"; \"auto\" would use HTTP/1.1)"
        );
        assert_eq!(version_name(http::Version::HTTP_2), "2");
        assert_eq!(version_name(http::Version::HTTP_11), "1.1");
    }
}
