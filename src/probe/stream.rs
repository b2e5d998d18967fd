//! The `stream` probe: Server-Sent Events and chunked streams: time to first event/byte, event count, largest gap, reconnect with `Last-Event-ID`.
//!
//! One run opens a fresh HTTP/1.1 connection (hyper, TLS through rustls),
//! sends a tagged `GET`, and reads the body as it arrives: SSE events
//! (parsed as the WHATWG EventSource algorithm does) or, in `chunked` mode,
//! each piece of body as it is delivered. It stops successfully once
//! `min_events` arrived, once `duration` has passed, or when the server ends
//! the stream; it fails at once when the gap after an event exceeds
//! `max_gap`, when the first event is later than `first_event_timeout`, or
//! when an event exceeds `max_event_bytes`. With `reconnect`, it drops the
//! connection half-way (after `min_events / 2` events, else after half of
//! `duration`, else when the server ends the first stream), reconnects with
//! `Last-Event-ID`, and checks that the stream resumes after that id.
//!
//! The phases are `connect` (start to response headers), `first_event`
//! (headers to the first event) and `stream` (the rest, a reconnect
//! included), contiguous, under the probe's one deadline. Memory is bounded:
//! one event at most `max_event_bytes`, and only the first
//! [`MAX_DATA_KEPT`] event data strings (each cut at [`MAX_DATA_CHARS`]) are
//! kept for expectations.

use super::kind::{Assertion, BuildInput, Kind, KindEntry, RunContext, RunFuture};
use crate::config::check::Checker;
use crate::config::raw::RawSize;
use crate::expr::{Facts, duration_value};
use crate::net::{AbortOnDrop, Clock, Fail, TlsSetup, describe, dial};
use crate::outcome::{AssertionResult, Details, FailureReason, KindFacts, Outcome, SourceLocation};
use crate::tagging::RunIds;
use crate::template::Text;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use url::{Host, Url};

/// The variables a `stream` expectation can read.
pub const SCOPE: &[&str] = &[
    "events",
    "first_event",
    "max_gap",
    "last_event_id",
    "reconnected",
    "resumed_from",
    "data",
    "status",
    "timings",
    "vars",
];

/// The default cap on one event (or chunk).
const DEFAULT_MAX_EVENT_BYTES: u64 = 256 * 1024;
/// The largest `max_event_bytes` accepted.
const MAX_EVENT_BYTES_LIMIT: u64 = 64 * 1024 * 1024;
/// How many event data strings are kept for `data`.
pub const MAX_DATA_KEPT: usize = 100;
/// How many characters of each kept data string.
pub const MAX_DATA_CHARS: usize = 1024;
/// How many ids of the first connection are remembered to recognise a
/// replay after reconnecting (non-numeric ids only).
const MAX_IDS_REMEMBERED: usize = 10_000;

/// The `[stream]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStream {
    pub url: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `sse` (default) or `chunked`.
    pub mode: Option<String>,
    pub min_events: Option<u64>,
    pub duration: Option<String>,
    pub max_gap: Option<String>,
    pub first_event_timeout: Option<String>,
    pub reconnect: Option<bool>,
    pub max_event_bytes: Option<RawSize>,
    #[serde(default)]
    pub expect: Vec<String>,
}

/// How the body is cut into events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `text/event-stream`, events separated by blank lines.
    Sse,
    /// Any body; each piece as it arrives is one event.
    Chunked,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Sse => "sse",
            Mode::Chunked => "chunked",
        }
    }
}

/// The checked `[stream]` table.
#[derive(Debug)]
pub struct StreamSpec {
    /// Absolute, or relative to the environment's base URL (as for `http`).
    pub url: Text,
    pub headers: Vec<(HeaderName, Text)>,
    pub mode: Mode,
    pub min_events: Option<u64>,
    /// Stop after this long (from the start of the run).
    pub duration: Option<Duration>,
    pub max_gap: Option<Duration>,
    /// The first event must come this soon after the start of the run.
    pub first_event_timeout: Option<Duration>,
    pub reconnect: bool,
    pub max_event_bytes: u64,
    pub expect: Vec<Assertion>,
    /// Where `min_events` and `reconnect` were written, for their implicit
    /// checks.
    pub min_events_at: Option<SourceLocation>,
    pub reconnect_at: Option<SourceLocation>,
}

/// What a `stream` run saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StreamFacts {
    pub url: String,
    pub mode: &'static str,
    /// The status of the last response.
    pub status: Option<u16>,
    pub events: u64,
    /// From the start of the run to the first event.
    pub first_event_seconds: Option<f64>,
    /// The largest gap between two consecutive events.
    pub max_gap_seconds: f64,
    pub last_event_id: Option<String>,
    pub reconnected: bool,
    /// The `Last-Event-ID` sent when reconnecting.
    pub resumed_from: Option<String>,
    /// Body bytes read, over every connection.
    pub bytes: u64,
    /// The first events' data (capped, see the module docs).
    pub data: Vec<String>,
    /// Over https: the earliest `notAfter` of the certificates presented on
    /// the last connection, Unix seconds (`probe_ssl_earliest_cert_expiry`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_expiry: Option<i64>,
}

impl StreamFacts {
    /// Gauges for /metrics, labelled with probe and environment.
    pub fn gauges(&self) -> Vec<(&'static str, f64)> {
        let mut out = vec![
            ("probe_stream_events", self.events as f64),
            ("probe_stream_max_gap_seconds", self.max_gap_seconds),
        ];
        if let Some(first) = self.first_event_seconds {
            out.push(("probe_stream_first_event_seconds", first));
        }
        out
    }
}

/// Checks the raw table; problems are recorded on `c` at `stream.…` paths.
pub(crate) fn build(raw: RawStream, c: &mut Checker<'_>) -> Option<StreamSpec> {
    let url = match raw.url.as_deref() {
        None => {
            c.missing("stream", "url");
            None
        }
        Some(u) => {
            let text = c.text("stream.url", u, None);
            if let Some(t) = text.as_ref().filter(|t| t.is_literal()) {
                if let Ok(base) = Url::parse("http://base.invalid/") {
                    if let Err(err) = super::http::join_url(&base, t.source()) {
                        c.err("stream.url", format!("expected a URL or a path: {err}"));
                    }
                }
            }
            text
        }
    };
    let mut headers = Vec::new();
    for (name, value) in &raw.headers {
        let key = format!("stream.headers.{name}");
        let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
            c.err(&key, format!("`{name}` is not a valid HTTP header name"));
            continue;
        };
        if let Some(t) = c.text(&key, value, None) {
            if t.is_literal() && HeaderValue::from_str(t.source()).is_err() {
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
    let mode = match raw.mode.as_deref() {
        None | Some("sse") => Some(Mode::Sse),
        Some("chunked") => Some(Mode::Chunked),
        Some(other) => {
            c.err(
                "stream.mode",
                format!("expected `sse` or `chunked`, found `{other}`"),
            );
            None
        }
    };
    if raw.min_events == Some(0) {
        c.err("stream.min_events", "expected at least 1 event");
    }
    let duration = positive(c, "duration", raw.duration.as_deref());
    let max_gap = positive(c, "max_gap", raw.max_gap.as_deref());
    let first_event_timeout =
        positive(c, "first_event_timeout", raw.first_event_timeout.as_deref());
    let reconnect = raw.reconnect.unwrap_or(false);
    if reconnect && mode == Some(Mode::Chunked) {
        c.err(
            "stream.reconnect",
            "`reconnect` resumes with Last-Event-ID, which only SSE has: use mode = \"sse\"",
        );
    }
    if reconnect && raw.min_events == Some(1) {
        c.err(
            "stream.reconnect",
            "`reconnect` splits `min_events` over two connections: it needs min_events of 2 or more",
        );
    }
    let max_event_bytes = c.size(
        "stream.max_event_bytes",
        raw.max_event_bytes.as_ref(),
        DEFAULT_MAX_EVENT_BYTES,
        MAX_EVENT_BYTES_LIMIT,
    );
    let expect = c.expectations("stream", &raw.expect, SCOPE);
    let min_events_at = raw.min_events.map(|_| c.location("stream.min_events"));
    let reconnect_at = reconnect.then(|| c.location("stream.reconnect"));
    Some(StreamSpec {
        url: url?,
        headers,
        mode: mode?,
        min_events: raw.min_events.filter(|n| *n > 0),
        duration,
        max_gap,
        first_event_timeout,
        reconnect,
        max_event_bytes,
        expect,
        min_events_at,
        reconnect_at,
    })
}

pub async fn run(spec: &StreamSpec, ctx: &RunContext<'_>) -> Outcome {
    let ids = RunIds::generate();
    let mut outcome = Outcome::new(&ctx.probe.name, &ctx.env.name, "stream", &ids);
    let mut s = Streamer::new(spec, ctx.deadline());
    let result = s.go(ctx, &ids).await;
    s.clock.lap(s.phase);
    s.clock.record(&mut outcome);
    outcome.responded = s.facts.status.is_some();
    match result {
        Err(fail) => outcome.fail(fail.reason, fail.message),
        Ok(()) => {
            let implicit = s.implicit_checks();
            if implicit.iter().any(|a| !a.passed) {
                outcome.reason = Some(FailureReason::Assertion);
            }
            outcome.assertions = implicit;
            let f = s.expression_facts(ctx);
            super::kind::check_expectations(&mut outcome, &spec.expect, &f);
        }
    }
    let mut facts = s.facts;
    ctx.redactor.scrub(&mut facts.url);
    for d in &mut facts.data {
        ctx.redactor.scrub(d);
    }
    outcome.details = Some(Details::new(facts));
    super::kind::finish(&mut outcome);
    super::kind::redact(outcome, ctx.redactor)
}

/// What woke the reader up when no data came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wake {
    Deadline,
    Duration,
    FirstEvent,
    Gap,
    /// Half of `duration` passed: time to reconnect.
    Reconnect,
}

/// How reading one connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Enough: `min_events` arrived or `duration` passed.
    Stop,
    /// The server ended the stream.
    Closed,
    /// Time to reconnect (`min_events / 2` arrived, or half of
    /// `duration` passed).
    Reconnect,
}

/// The outcome of the resume check.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resume {
    /// Not reconnected (yet).
    NotYet,
    /// Reconnected; no event since.
    Waiting,
    Passed,
    Failed(String),
}

/// One open response.
struct Connection {
    body: Incoming,
    _sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    _driver: AbortOnDrop,
}

/// One event as parsed.
#[derive(Debug, PartialEq, Eq)]
struct Event {
    /// The last event id buffer at dispatch; `None` until an `id:` field on
    /// this connection set it (or when it was set to "").
    id: Option<String>,
    data: String,
}

/// The state of one run.
struct Streamer<'s> {
    spec: &'s StreamSpec,
    clock: Clock,
    /// The phase in progress.
    phase: &'static str,
    facts: StreamFacts,
    last_event_at: Option<Instant>,
    first_event: Option<Duration>,
    max_gap: Duration,
    /// Hashes of the ids seen on the first connection.
    seen_ids: HashSet<u64>,
    resume: Resume,
    /// Why the run stopped before it could reconnect, if it did.
    stopped_early: Option<&'static str>,
}

impl<'s> Streamer<'s> {
    fn new(spec: &'s StreamSpec, deadline: Instant) -> Self {
        Streamer {
            spec,
            clock: Clock::new(deadline, &["connect", "first_event", "stream"]),
            phase: "connect",
            facts: StreamFacts {
                mode: spec.mode.as_str(),
                ..StreamFacts::default()
            },
            last_event_at: None,
            first_event: None,
            max_gap: Duration::ZERO,
            seen_ids: HashSet::new(),
            resume: Resume::NotYet,
            stopped_early: None,
        }
    }

    /// The whole run: connect, read, maybe reconnect and read again.
    async fn go(&mut self, ctx: &RunContext<'_>, ids: &RunIds) -> Result<(), Fail> {
        let request_error = |m: String| Fail::new(FailureReason::Request, m);
        let path = ctx.render(&self.spec.url, ids).map_err(request_error)?;
        let url = super::http::join_url(ctx.base_url, &path)
            .map_err(|e| request_error(format!("cannot build the URL from `{path}`: {e}")))?;
        self.facts.url = url.to_string();
        let mut headers = self.headers(ctx, ids)?;

        let connection = self.open(ctx, &url, &headers).await?;
        // Reconnect half-way: after half of `min_events`, else after half
        // of `duration`, else when the server ends the first stream.
        let (reconnect_after, reconnect_at) = match (self.spec.reconnect, self.spec.min_events) {
            (false, _) => (None, None),
            (true, Some(n)) => (Some((n / 2).max(1)), None),
            (true, None) => (None, self.spec.duration.map(|d| self.clock.start() + d / 2)),
        };
        match self.read(connection, reconnect_after, reconnect_at).await? {
            Ended::Stop => {
                if self.spec.reconnect {
                    self.stopped_early = Some(if self.spec.duration.is_some() {
                        "the run stopped (duration) before reconnecting"
                    } else {
                        "the run stopped before reconnecting"
                    });
                }
                return Ok(());
            }
            Ended::Closed if !self.spec.reconnect => return Ok(()),
            Ended::Closed | Ended::Reconnect => {}
        }
        let Some(last) = self.facts.last_event_id.clone() else {
            self.resume = Resume::Failed(format!(
                "no event carried an id to resume from ({} events before reconnecting)",
                self.facts.events
            ));
            return Ok(());
        };
        let Ok(value) = HeaderValue::from_str(&last) else {
            self.resume = Resume::Failed(format!(
                "the last event id {last:?} cannot be sent in a header"
            ));
            return Ok(());
        };
        headers.insert(HeaderName::from_static("last-event-id"), value);
        self.facts.reconnected = true;
        self.facts.resumed_from = Some(last);
        self.resume = Resume::Waiting;
        let connection = self.open(ctx, &url, &headers).await?;
        self.read(connection, None, None).await?;
        Ok(())
    }

    /// Environment headers, the mode's defaults, the probe's headers, then
    /// the tagging.
    fn headers(&self, ctx: &RunContext<'_>, ids: &RunIds) -> Result<HeaderMap, Fail> {
        let bad = |m: String| Fail::new(FailureReason::Request, m);
        let mut headers = HeaderMap::new();
        for (name, value) in &ctx.env.headers {
            let value = HeaderValue::from_str(value).map_err(|_| {
                bad(format!(
                    "header `{name}` has a value that is not valid in HTTP"
                ))
            })?;
            headers.insert(name.clone(), value);
        }
        if self.spec.mode == Mode::Sse {
            headers.insert(
                header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        }
        for (name, text) in &self.spec.headers {
            let value = ctx.render(text, ids).map_err(bad)?;
            let value = HeaderValue::from_str(&value).map_err(|_| {
                bad(format!(
                    "header `{name}` has a value that is not valid in HTTP"
                ))
            })?;
            headers.insert(name.clone(), value);
        }
        ids.apply(ctx.tagging, &ctx.probe.name, &mut headers);
        Ok(headers)
    }

    /// Connects, sends the request and checks the response head. While no
    /// event has come, `first_event_timeout` bounds this too; after one,
    /// `max_gap` does (a reconnect is part of the gap).
    async fn open(
        &mut self,
        ctx: &RunContext<'_>,
        url: &Url,
        headers: &HeaderMap,
    ) -> Result<Connection, Fail> {
        let limit = match self.last_event_at {
            None => self
                .spec
                .first_event_timeout
                .map(|t| (self.clock.start() + t, Wake::FirstEvent)),
            Some(at) => self.spec.max_gap.map(|g| (at + g, Wake::Gap)),
        }
        .filter(|(at, _)| *at < self.clock.deadline());
        let phase = self.phase;
        let tls = TlsSetup {
            config: Arc::clone(&ctx.env.tls_client),
            server_name: ctx.env.tls.server_name.as_deref(),
            alpn: b"http/1.1",
        };
        let connecting = connect(
            url,
            headers,
            tls,
            &mut self.clock,
            phase,
            &mut self.facts.cert_expiry,
        );
        let response = match limit {
            None => connecting.await?,
            Some((at, wake)) => match tokio::time::timeout_at(at, connecting).await {
                Ok(response) => response?,
                Err(_) => return Err(self.stalled(wake, "while connecting")),
            },
        };
        let (parts, connection) = response;
        self.facts.status = Some(parts.status.as_u16());
        if self.phase == "connect" {
            self.clock.lap("connect");
            self.phase = "first_event";
        }
        if !parts.status.is_success() {
            return Err(Fail::new(
                FailureReason::Status,
                format!(
                    "GET {url} answered {} (expected 2xx)",
                    parts.status.as_u16()
                ),
            ));
        }
        if self.spec.mode == Mode::Sse {
            let media = parts
                .headers
                .get(header::CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            let essence = media.as_deref().map(|m| {
                m.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            });
            if essence.as_deref() != Some("text/event-stream") {
                return Err(Fail::new(
                    FailureReason::Protocol,
                    format!(
                        "GET {url} answered with content type {}, not text/event-stream",
                        media.map_or_else(|| "(none)".to_owned(), |m| format!("`{m}`"))
                    ),
                ));
            }
        }
        Ok(connection)
    }

    /// When to wake up if no data comes, and why.
    fn next_wake(&self, reconnect_at: Option<Instant>) -> (Instant, Wake) {
        let mut best = (self.clock.deadline(), Wake::Deadline);
        if let Some(d) = self.spec.duration {
            // At a tie the run has lasted as long as asked: a success.
            let at = self.clock.start() + d;
            if at <= best.0 {
                best = (at, Wake::Duration);
            }
        }
        let stall = match self.last_event_at {
            None => self
                .spec
                .first_event_timeout
                .map(|t| (self.clock.start() + t, Wake::FirstEvent)),
            Some(at) => self.spec.max_gap.map(|g| (at + g, Wake::Gap)),
        };
        for (at, wake) in stall
            .into_iter()
            .chain(reconnect_at.map(|at| (at, Wake::Reconnect)))
        {
            if at < best.0 {
                best = (at, wake);
            }
        }
        best
    }

    /// Reads one connection until it ends, the run has enough, or it is
    /// time to reconnect.
    async fn read(
        &mut self,
        mut connection: Connection,
        reconnect_after: Option<u64>,
        reconnect_at: Option<Instant>,
    ) -> Result<Ended, Fail> {
        let mut parser = Parser::new(self.spec.mode, self.spec.max_event_bytes);
        let mut events = Vec::new();
        loop {
            let (at, wake) = self.next_wake(reconnect_at);
            let frame = match tokio::time::timeout_at(at, connection.body.frame()).await {
                Err(_) => return self.woke(wake),
                Ok(None) => return Ok(Ended::Closed),
                Ok(Some(Err(e))) => {
                    return Err(Fail::new(
                        FailureReason::Protocol,
                        format!(
                            "reading the stream failed after {} events: {}",
                            self.facts.events,
                            describe(&e)
                        ),
                    ));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let now = Instant::now();
            self.facts.bytes += data.len() as u64;
            let parsed = parser.feed(&data, &mut events);
            for event in events.drain(..) {
                if let Some(end) = self.on_event(event, now, reconnect_after)? {
                    return Ok(end);
                }
            }
            if let Err(size) = parsed {
                return Err(Fail::new(
                    FailureReason::BodyTooLarge,
                    format!(
                        "event {} exceeds the {}-byte cap (max_event_bytes): {size} bytes and counting",
                        self.facts.events + 1,
                        self.spec.max_event_bytes
                    ),
                ));
            }
        }
    }

    /// Counts one event; decides whether the run has enough or should
    /// reconnect.
    fn on_event(
        &mut self,
        event: Event,
        now: Instant,
        reconnect_after: Option<u64>,
    ) -> Result<Option<Ended>, Fail> {
        let n = self.facts.events + 1;
        match self.last_event_at {
            None => {
                let first = now.saturating_duration_since(self.clock.start());
                if let Some(limit) = self.spec.first_event_timeout {
                    if first > limit {
                        return Err(Fail::new(
                            FailureReason::StreamStalled,
                            format!(
                                "the first event came after {:.3}s, later than first_event_timeout ({})",
                                first.as_secs_f64(),
                                humantime::format_duration(limit)
                            ),
                        ));
                    }
                }
                self.first_event = Some(first);
                self.facts.first_event_seconds = Some(first.as_secs_f64());
                self.clock.lap("first_event");
                self.phase = "stream";
            }
            Some(previous) => {
                let gap = now.saturating_duration_since(previous);
                self.max_gap = self.max_gap.max(gap);
                self.facts.max_gap_seconds = self.max_gap.as_secs_f64();
                if let Some(limit) = self.spec.max_gap {
                    if gap > limit {
                        return Err(Fail::new(
                            FailureReason::StreamStalled,
                            format!(
                                "event {n} came {:.3}s after event {}{}, more than max_gap ({})",
                                gap.as_secs_f64(),
                                n - 1,
                                self.id_note(),
                                humantime::format_duration(limit)
                            ),
                        ));
                    }
                }
            }
        }
        if self.resume == Resume::Waiting {
            self.resume = self.judge_resume(event.id.as_deref());
        }
        self.facts.events = n;
        self.last_event_at = Some(now);
        if let Some(id) = event.id.filter(|id| !id.is_empty()) {
            if !self.facts.reconnected && self.seen_ids.len() < MAX_IDS_REMEMBERED {
                self.seen_ids.insert(hash(&id));
            }
            self.facts.last_event_id = Some(id);
        }
        if self.facts.data.len() < MAX_DATA_KEPT {
            self.facts.data.push(cut(event.data));
        }
        if self.spec.min_events.is_some_and(|min| n >= min) {
            return Ok(Some(Ended::Stop));
        }
        if reconnect_after == Some(n) {
            return Ok(Some(Ended::Reconnect));
        }
        Ok(None)
    }

    /// Whether the first event after reconnecting comes after the id sent.
    fn judge_resume(&self, id: Option<&str>) -> Resume {
        let sent = self.facts.resumed_from.as_deref().unwrap_or_default();
        let Some(id) = id.filter(|id| !id.is_empty()) else {
            return Resume::Failed(format!(
                "the first event after reconnecting with Last-Event-ID {sent:?} has no id"
            ));
        };
        let replayed = match (id.parse::<u64>(), sent.parse::<u64>()) {
            (Ok(new), Ok(old)) => new <= old,
            _ => id == sent || self.seen_ids.contains(&hash(id)),
        };
        if replayed {
            Resume::Failed(format!(
                "after reconnecting with Last-Event-ID {sent:?} the first event has id {id:?}: the stream did not resume after it"
            ))
        } else {
            Resume::Passed
        }
    }

    /// " (id `X`)" for the last event, if it had an id.
    fn id_note(&self) -> String {
        self.facts
            .last_event_id
            .as_deref()
            .map(|id| format!(" (id `{id}`)"))
            .unwrap_or_default()
    }

    /// The result of a wake-up with no data.
    fn woke(&self, wake: Wake) -> Result<Ended, Fail> {
        match wake {
            Wake::Duration => Ok(Ended::Stop),
            Wake::Reconnect => Ok(Ended::Reconnect),
            Wake::Deadline => Err(Fail::new(
                FailureReason::Timeout,
                format!(
                    "deadline exceeded after {:.3}s while streaming ({} events so far); set min_events or duration to stop sooner",
                    self.clock.start().elapsed().as_secs_f64(),
                    self.facts.events
                ),
            )),
            Wake::FirstEvent | Wake::Gap => Err(self.stalled(wake, "")),
        }
    }

    /// A stall: how long it waited, for what, and after which event.
    fn stalled(&self, wake: Wake, doing: &str) -> Fail {
        let doing = if doing.is_empty() {
            String::new()
        } else {
            format!(" ({doing})")
        };
        let message = match (wake, self.last_event_at, self.spec.max_gap) {
            (Wake::Gap, Some(at), Some(limit)) => format!(
                "no event for {:.3}s after event {}{}{doing}; max_gap is {}",
                at.elapsed().as_secs_f64(),
                self.facts.events,
                self.id_note(),
                humantime::format_duration(limit)
            ),
            _ => format!(
                "no event within {:.3}s of the start{doing}; first_event_timeout is {}",
                self.clock.start().elapsed().as_secs_f64(),
                humantime::format_duration(self.spec.first_event_timeout.unwrap_or_default())
            ),
        };
        Fail::new(FailureReason::StreamStalled, message)
    }

    /// The checks `min_events` and `reconnect` imply.
    fn implicit_checks(&self) -> Vec<AssertionResult> {
        let mut out = Vec::new();
        if let Some(min) = self.spec.min_events {
            let passed = self.facts.events >= min;
            out.push(AssertionResult {
                expression: format!("events >= {min} (implicit: min_events)"),
                passed,
                actual: if passed {
                    String::new()
                } else {
                    format!("events = {} when the stream ended", self.facts.events)
                },
                location: self.spec.min_events_at.clone(),
            });
        }
        if self.spec.reconnect {
            let (passed, actual) = match (&self.resume, self.stopped_early) {
                (Resume::Passed | Resume::Waiting, _) => (true, String::new()),
                (Resume::Failed(why), _) => (false, why.clone()),
                (Resume::NotYet, Some(why)) => (false, why.to_owned()),
                (Resume::NotYet, None) => (false, "the run did not reconnect".to_owned()),
            };
            out.push(AssertionResult {
                expression: "the stream resumes after Last-Event-ID (implicit: reconnect)"
                    .to_owned(),
                passed,
                actual,
                location: self.spec.reconnect_at.clone(),
            });
        }
        out
    }

    /// What expectations can read.
    fn expression_facts(&self, ctx: &RunContext<'_>) -> Facts {
        let mut f = Facts::default();
        f.set("events", self.facts.events as i64);
        f.set(
            "first_event",
            self.first_event.map_or(cel::Value::Null, duration_value),
        );
        f.set("max_gap", duration_value(self.max_gap));
        f.set(
            "last_event_id",
            self.facts.last_event_id.clone().unwrap_or_default(),
        );
        f.set("reconnected", self.facts.reconnected);
        f.set(
            "resumed_from",
            self.facts.resumed_from.clone().unwrap_or_default(),
        );
        f.set("data", self.facts.data.clone());
        f.set("status", self.facts.status.map_or(0, i64::from));
        f.set("timings", self.clock.timings());
        f.set("vars", super::kind::vars_value(ctx.vars));
        f
    }
}

fn hash(id: &str) -> u64 {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// `data` cut to [`MAX_DATA_CHARS`] characters.
fn cut(mut data: String) -> String {
    if let Some((at, _)) = data.char_indices().nth(MAX_DATA_CHARS) {
        data.truncate(at);
    }
    data
}

/// Opens a fresh connection to `url` and sends the GET; returns the
/// response head and the body to read. Every step before the headers is
/// lapped as `phase`.
async fn connect(
    url: &Url,
    headers: &HeaderMap,
    tls: TlsSetup<'_>,
    clock: &mut Clock,
    phase: &'static str,
    cert_expiry: &mut Option<i64>,
) -> Result<(http::response::Parts, Connection), Fail> {
    let bad = |m: String| Fail::new(FailureReason::Request, m);
    let secure = match url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err(bad(format!(
                "unsupported url scheme {other:?} in {url} (only http and https are supported)"
            )));
        }
    };
    let (Some(host), Some(port)) = (url.host(), url.port_or_known_default()) else {
        return Err(bad(format!("{url} has no host")));
    };
    let host: Host<String> = host.to_owned();
    let dialed = dial(&host, port, secure.then_some(tls), clock, [phase; 3]).await?;
    *cert_expiry = dialed.cert_expiry;
    let io = dialed.io;
    let protocol = |doing: &str, e: hyper::Error| {
        Fail::new(
            FailureReason::Protocol,
            format!("{doing} with {url} failed: {}", describe(&e)),
        )
    };
    let waiting = "while waiting for the response headers (connect)";
    let (mut sender, connection) = clock
        .within(
            waiting,
            hyper::client::conn::http1::handshake(TokioIo::new(io)),
        )
        .await?
        .map_err(|e| protocol("starting http/1.1", e))?;
    let driver = AbortOnDrop(tokio::spawn(async move {
        // The connection's error also reaches the body read.
        let _ = connection.await;
    }));
    let mut request = http::Request::new(Empty::<Bytes>::new());
    let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
    *request.uri_mut() = target.parse().map_err(|e: http::uri::InvalidUri| {
        bad(format!("cannot build the request for {url}: {e}"))
    })?;
    let mut headers = headers.clone();
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let authority = HeaderValue::try_from(authority)
        .map_err(|e| bad(format!("cannot build the Host header for {url}: {e}")))?;
    headers.insert(header::HOST, authority);
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    *request.headers_mut() = headers;
    let response = clock
        .within(waiting, sender.send_request(request))
        .await?
        .map_err(|e| protocol("the request", e))?;
    let (parts, body) = response.into_parts();
    Ok((
        parts,
        Connection {
            body,
            _sender: sender,
            _driver: driver,
        },
    ))
}

/// A duration key that must be above zero when given.
fn positive(c: &mut Checker<'_>, key: &str, value: Option<&str>) -> Option<Duration> {
    let path = format!("stream.{key}");
    let value = value?;
    let errors = c.error_count();
    let d = c.duration(&path, Some(value), Duration::ZERO);
    if d.is_zero() {
        if c.error_count() == errors {
            c.err(&path, "expected a duration above zero");
        }
        return None;
    }
    Some(d)
}

/// Cuts a body into events, bounded by `max` bytes per event (and per line).
struct Parser {
    mode: Mode,
    max: u64,
    /// The line being read.
    line: Vec<u8>,
    /// The `data` of the event being read, lines joined with `\n`.
    data: String,
    has_data: bool,
    /// The last event id buffer: it persists from event to event.
    id: Option<String>,
    /// A CR ended the previous chunk: an LF first in this one belongs to it.
    after_cr: bool,
    /// The start of the stream, where a byte order mark is dropped.
    at_start: bool,
}

impl Parser {
    fn new(mode: Mode, max: u64) -> Self {
        Parser {
            mode,
            max,
            line: Vec::new(),
            data: String::new(),
            has_data: false,
            id: None,
            after_cr: false,
            at_start: true,
        }
    }

    /// Feeds a piece of body, pushing every completed event to `out`. Fails
    /// with the size reached when an event grows past the cap (the events
    /// completed before it are still pushed).
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> Result<(), u64> {
        if self.mode == Mode::Chunked {
            if bytes.len() as u64 > self.max {
                return Err(bytes.len() as u64);
            }
            out.push(Event {
                id: None,
                data: String::from_utf8_lossy(bytes).into_owned(),
            });
            return Ok(());
        }
        for &byte in bytes {
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                continue;
            }
            match byte {
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(out);
                }
                b'\n' => self.end_line(out),
                _ => {
                    self.line.push(byte);
                    let size = (self.line.len() + self.data.len()) as u64;
                    if size > self.max {
                        return Err(size);
                    }
                }
            }
        }
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<Event>) {
        let mut line = std::mem::take(&mut self.line);
        if std::mem::take(&mut self.at_start) && line.starts_with(b"\xEF\xBB\xBF") {
            line.drain(..3);
        }
        if line.is_empty() {
            if self.has_data {
                out.push(Event {
                    id: self.id.clone(),
                    data: std::mem::take(&mut self.data),
                });
            }
            self.data.clear();
            self.has_data = false;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let line = String::from_utf8_lossy(&line);
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => {
                self.id = (!value.is_empty()).then(|| value.to_owned());
            }
            // `event`, `retry` and unknown fields do not change what is
            // measured.
            _ => {}
        }
    }
}

/// The registry's line for `[stream]`.
pub const KIND: KindEntry = KindEntry {
    name: "stream",
    build: build_kind,
};

fn build_kind(c: &mut Checker<'_>, _: &BuildInput<'_>) -> Option<Box<dyn Kind>> {
    let raw: RawStream = c.table("stream")?;
    build(raw, c).map(|spec| Box::new(spec) as Box<dyn Kind>)
}

impl Kind for StreamSpec {
    fn name(&self) -> &'static str {
        "stream"
    }

    fn run<'a>(&'a self, ctx: &'a RunContext<'_>) -> RunFuture<'a> {
        Box::pin(run(self, ctx))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl KindFacts for StreamFacts {
    fn gauges(&self) -> Vec<(&'static str, f64)> {
        StreamFacts::gauges(self)
    }
    fn cert_expiry(&self) -> Option<i64> {
        self.cert_expiry
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(pieces: &[&[u8]]) -> Vec<Event> {
        let mut p = Parser::new(Mode::Sse, 1024);
        let mut out = Vec::new();
        for piece in pieces {
            p.feed(piece, &mut out).unwrap();
        }
        out
    }

    fn ev(id: Option<&str>, data: &str) -> Event {
        Event {
            id: id.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    #[test]
    fn events_are_cut_at_blank_lines_whatever_the_line_ending() {
        let whole = parse(&[b"id: 1\ndata: a\n\nid: 2\r\ndata: b\r\n\r\nid: 3\rdata: c\r\r"]);
        assert_eq!(
            whole,
            vec![ev(Some("1"), "a"), ev(Some("2"), "b"), ev(Some("3"), "c")]
        );
        // The same bytes one at a time, CR LF split across pieces.
        let text = b"id: 1\ndata: a\n\nid: 2\r\ndata: b\r\n\r\nid: 3\rdata: c\r\r";
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(parse(&bytes), whole);
    }

    #[test]
    fn fields_follow_the_eventsource_rules() {
        let events = parse(&[
            b"\xEF\xBB\xBF: a comment\ndata:x\ndata:  y\nevent: tick\nretry: 10\n\n",
            b"data\n\n",
            b"id: 7\n\n",
            b"data: after id\n\n",
            b"id\ndata: reset\n\n",
        ]);
        assert_eq!(
            events,
            vec![
                ev(None, "x\n y"),
                ev(None, ""),
                ev(Some("7"), "after id"),
                ev(None, "reset"),
            ]
        );
        // A byte order mark split over pieces is dropped too.
        assert_eq!(
            parse(&[b"\xEF", b"\xBB", b"\xBFdata: z\n\n"]),
            vec![ev(None, "z")]
        );
        // An event without a terminating blank line is not dispatched.
        assert_eq!(parse(&[b"data: unfinished\n"]), vec![]);
    }

    #[test]
    fn an_event_or_line_over_the_cap_fails() {
        let mut p = Parser::new(Mode::Sse, 16);
        let mut out = Vec::new();
        p.feed(b"data: ok\n\n", &mut out).unwrap();
        let err = p.feed(b"data: 0123456789abcdef\n\n", &mut out).unwrap_err();
        assert_eq!(err, 17);
        assert_eq!(out, vec![ev(None, "ok")]);
        // Many short data lines add up.
        let mut p = Parser::new(Mode::Sse, 16);
        assert!(
            p.feed(b"data: 12345\ndata: 12345\ndata: 12345\n", &mut out)
                .is_err()
        );
        let mut p = Parser::new(Mode::Chunked, 4);
        p.feed(b"abcd", &mut out).unwrap();
        assert_eq!(p.feed(b"abcde", &mut out).unwrap_err(), 5);
    }
}
