//! The `websocket` probe: a `ws://` or `wss://` upgrade, templated messages
//! sent, messages received and judged, and a clean close.
//!
//! One run dials through the net layer (phases `resolve`, `connect`, `tls`,
//! the same certificate verdicts as every kind), upgrades over HTTP/1.1
//! (`upgrade`, tagged like any synthmon request), sends the `send` messages
//! in order, reads until `messages` have arrived or `duration` has passed
//! (`first_message`, then `messages`), and ends with the close handshake
//! (`close`). The phases are contiguous under the probe's one deadline.
//!
//! It fails with a precise reason: the server refused the upgrade (`status`,
//! with the HTTP status), spoke something that is not the protocol
//! (`protocol`), closed before enough messages or with an abnormal code
//! (`closed`, with the code and reason), went quiet for longer than
//! `max_gap` or `first_message_timeout` (`stream_stalled`), or the deadline
//! passed (`timeout`). Memory is bounded: a message is at most
//! `max_message_size`, and only the first [`MAX_KEPT`] messages are kept
//! (each cut at [`MAX_KEPT_CHARS`]) for expectations.

use super::kind::{Assertion, BuildInput, Kind, KindEntry, RunContext, RunFuture};
use crate::config::check::Checker;
use crate::config::raw::RawSize;
use crate::expr::{Facts, duration_value};
use crate::expr::{Scope, Type, Types};
use crate::net::{Clock, Fail, TlsSetup, describe, dial_via};
use crate::outcome::{Details, FailureReason, GaugeSpec, KindFacts, Outcome};
use crate::tagging::RunIds;
use crate::template::{JsonTemplate, Text};
use futures_util::{SinkExt, StreamExt};
use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use url::{Host, Url};

/// The variables a `websocket` expectation can read.
pub const SCOPE: Scope<'static> = Scope {
    names: &[
        "messages",
        "count",
        "first_message",
        "max_gap",
        "status",
        "subprotocol",
        "close",
        "timings",
        "vars",
    ],
    types: &[TYPES],
};

/// The types of what this kind puts in scope, so `synthmon check` catches
/// a literal of another type compared with them.
const TYPES: Types<'static> = &[
    ("count", Type::Number),
    ("first_message", Type::Duration),
    ("max_gap", Type::Duration),
    ("status", Type::Number),
    ("subprotocol", Type::String),
    ("close.code", Type::Number),
    ("close.reason", Type::String),
    ("close.by", Type::String),
];

/// Messages kept for expectations.
pub const MAX_KEPT: usize = 100;
/// Characters kept of each message's text.
pub const MAX_KEPT_CHARS: usize = 4096;
/// The default cap on one message.
const DEFAULT_MAX_MESSAGE: u64 = 1024 * 1024;
/// The largest `max_message_size` accepted.
const MAX_MESSAGE_LIMIT: u64 = 64 * 1024 * 1024;
/// How long the close handshake may take before the run gives up on the
/// server's answer (still within the deadline).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The `[websocket]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebsocket {
    /// `ws://…`, `wss://…`, or a path on the environment's base URL
    /// (`http` becomes `ws`, `https` becomes `wss`); a template.
    pub url: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `{ user = "…", password = "${env:…}" }`: sent as `Authorization: Basic …`.
    pub basic_auth: Option<crate::config::raw::RawBasicAuth>,
    /// `"${env:…}"`: sent as `Authorization: Bearer …`.
    pub bearer_token: Option<String>,
    /// OAuth2 client credentials: a bearer token from the token endpoint.
    pub oauth2: Option<crate::config::raw::RawOAuth2>,
    /// Offered in `Sec-WebSocket-Protocol`, in order.
    #[serde(default)]
    pub subprotocols: Vec<String>,
    /// Messages to send after the upgrade, in order.
    #[serde(default)]
    pub send: Vec<RawMessage>,
    /// Read until this many messages arrived (default: one per message
    /// sent, or 1 when nothing is sent).
    pub messages: Option<u64>,
    /// Or read for this long, from the upgrade.
    #[serde(default, deserialize_with = "crate::config::raw::duration")]
    pub duration: Option<String>,
    /// The first message must come this soon after the upgrade.
    #[serde(default, deserialize_with = "crate::config::raw::duration")]
    pub first_message_timeout: Option<String>,
    /// No two consecutive messages may be further apart than this.
    #[serde(default, deserialize_with = "crate::config::raw::duration")]
    pub max_gap: Option<String>,
    /// End with the close handshake (default true).
    pub close: Option<bool>,
    pub max_message_size: Option<RawSize>,
    #[serde(default)]
    pub expect: Vec<String>,
}

/// One message to send: exactly one of `text`, `json` or `binary`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMessage {
    /// A text message; a template.
    pub text: Option<String>,
    /// A JSON text message (any TOML value); string leaves are templates.
    pub json: Option<toml::Value>,
    /// A binary message, written as UTF-8 text; a template.
    pub binary: Option<String>,
}

/// A message as checked.
#[derive(Debug)]
pub enum Outgoing {
    Text(Text),
    Json(JsonTemplate),
    Binary(Text),
}

/// The checked `[websocket]` table.
#[derive(Debug)]
pub struct WebsocketSpec {
    pub url: Text,
    pub headers: Vec<(HeaderName, Text)>,
    pub subprotocols: Vec<String>,
    pub send: Vec<Outgoing>,
    pub messages: Option<u64>,
    pub duration: Option<Duration>,
    pub first_message_timeout: Option<Duration>,
    pub max_gap: Option<Duration>,
    pub close: bool,
    pub max_message_bytes: u64,
    pub expect: Vec<Assertion>,
    /// `oauth2 = { … }`: the upgrade request carries a bearer token from
    /// the token endpoint.
    pub oauth2: Option<std::sync::Arc<crate::net::oauth2::OAuth2>>,
}

/// One message received, as reports and expressions see it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Received {
    /// `text` or `binary`.
    pub kind: &'static str,
    /// The text (cut at [`MAX_KEPT_CHARS`]); binary as lossy UTF-8.
    pub text: String,
    pub bytes: u64,
    /// From the upgrade to this message.
    pub at_seconds: f64,
}

/// What a `websocket` run saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WebsocketFacts {
    pub url: String,
    /// The upgrade's HTTP status (101 when it succeeded).
    pub status: Option<u16>,
    pub subprotocol: Option<String>,
    pub sent: u64,
    pub received: u64,
    pub bytes_received: u64,
    pub first_message_seconds: Option<f64>,
    pub max_gap_seconds: f64,
    /// The close code and reason, and who closed first (`client`,
    /// `server`); `None` when the connection ended without a close frame.
    pub close_code: Option<u16>,
    pub close_reason: Option<String>,
    pub closed_by: Option<&'static str>,
    /// The first messages (see [`MAX_KEPT`]).
    pub messages: Vec<Received>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_expiry: Option<i64>,
}

/// Checks the raw table; problems are recorded on `c` at `websocket.…`.
pub(crate) fn build(
    raw: RawWebsocket,
    known_vars: &[String],
    c: &mut Checker<'_>,
) -> Option<WebsocketSpec> {
    let errors = c.error_count();
    let known = Some(known_vars);
    let url = match raw.url.as_deref() {
        None => {
            c.missing("websocket", "url");
            None
        }
        Some(u) => {
            let text = c.text("websocket.url", u, known);
            if let Some(t) = text.as_ref().filter(|t| t.is_literal()) {
                let absolute = t.source().contains("://");
                if absolute
                    && !(t.source().starts_with("ws://") || t.source().starts_with("wss://"))
                {
                    c.err(
                        "websocket.url",
                        format!(
                            "expected a ws:// or wss:// URL or a path, found `{}`",
                            t.source()
                        ),
                    );
                } else if let Ok(url) = Url::parse(t.source()) {
                    if let Err(msg) = crate::config::check::no_credentials(&url) {
                        c.err("websocket.url", msg);
                    }
                }
            }
            text
        }
    };
    let mut headers = Vec::new();
    for (name, value) in &raw.headers {
        let key = format!("websocket.headers.{name}");
        let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
            c.err(&key, format!("`{name}` is not a valid HTTP header name"));
            continue;
        };
        if let Some(t) = c.text(&key, value, known) {
            headers.push((header, t));
        }
    }
    let auth = c.auth(
        "websocket",
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
    for (i, p) in raw.subprotocols.iter().enumerate() {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            c.err(
                &format!("websocket.subprotocols[{i}]"),
                format!("expected a protocol token like `chat.v1`, found `{p}`"),
            );
        }
    }
    let mut send = Vec::new();
    for (i, m) in raw.send.iter().enumerate() {
        let path = format!("websocket.send[{i}]");
        let set = [m.text.is_some(), m.json.is_some(), m.binary.is_some()];
        if set.iter().filter(|s| **s).count() != 1 {
            c.err(&path, "expected exactly one of `text`, `json` or `binary`");
            continue;
        }
        if let Some(t) = &m.text {
            send.extend(
                c.text(&format!("{path}.text"), t, known)
                    .map(Outgoing::Text),
            );
        } else if let Some(b) = &m.binary {
            send.extend(
                c.text(&format!("{path}.binary"), b, known)
                    .map(Outgoing::Binary),
            );
        } else if let Some(j) = &m.json {
            let at = format!("{path}.json");
            match serde_json::to_value(j) {
                Ok(v) => send.extend(c.json_template(&at, &v, known).map(Outgoing::Json)),
                Err(e) => c.err(&at, format!("cannot express this value as JSON: {e}")),
            }
        }
    }
    if raw.messages == Some(0) {
        c.err("websocket.messages", "expected at least 1");
    }
    let duration = raw
        .duration
        .as_deref()
        .map(|d| c.duration("websocket.duration", Some(d), Duration::ZERO));
    let first_message_timeout = raw
        .first_message_timeout
        .as_deref()
        .map(|d| c.duration("websocket.first_message_timeout", Some(d), Duration::ZERO));
    let max_gap = raw
        .max_gap
        .as_deref()
        .map(|d| c.duration("websocket.max_gap", Some(d), Duration::ZERO));
    let max_message_bytes = c.size(
        "websocket.max_message_size",
        raw.max_message_size.as_ref(),
        DEFAULT_MAX_MESSAGE,
        MAX_MESSAGE_LIMIT,
    );
    let expect = c.expectations("websocket", &raw.expect, SCOPE);
    if c.error_count() > errors {
        return None;
    }
    let messages = match (raw.messages, duration) {
        (Some(n), _) => Some(n),
        (None, Some(_)) => None,
        (None, None) => Some((send.len() as u64).max(1)),
    };
    Some(WebsocketSpec {
        url: url?,
        headers,
        subprotocols: raw.subprotocols,
        send,
        messages,
        duration,
        first_message_timeout,
        max_gap,
        close: raw.close.unwrap_or(true),
        max_message_bytes,
        expect,
        oauth2: auth.oauth2,
    })
}

pub async fn run(spec: &WebsocketSpec, ctx: &RunContext<'_>) -> Outcome {
    let ids = RunIds::generate();
    let mut outcome = Outcome::new(&ctx.probe.name, &ctx.env.name, "websocket", &ids);
    let deadline = ctx.deadline();
    // The token comes before the clock starts: the phases are the target's.
    let own_header = spec
        .headers
        .iter()
        .any(|(name, _)| name == http::header::AUTHORIZATION);
    let token = match ctx
        .oauth2_token(spec.oauth2.as_deref(), own_header, deadline)
        .await
    {
        Ok(token) => token,
        Err(fail) => {
            outcome.fail(fail.reason, fail.message);
            return super::kind::redact(outcome, ctx.redactor);
        }
    };
    let mut session = Session {
        spec,
        clock: Clock::new(
            deadline,
            &[
                "resolve",
                "connect",
                "tls",
                "upgrade",
                "first_message",
                "messages",
                "close",
            ],
        ),
        facts: WebsocketFacts::default(),
        upgraded_at: None,
        last_at: None,
        max_gap: Duration::ZERO,
    };
    let result = session.go(ctx, &ids, token.as_ref()).await;
    session.facts.max_gap_seconds = session.max_gap.as_secs_f64();
    session.clock.record(&mut outcome);
    outcome.responded = session.facts.status.is_some();
    match result {
        Err(fail) => outcome.fail(fail.reason, fail.message),
        Ok(()) => {
            let (f, not_json) = session.expression_facts(ctx);
            ctx.check_expectations_with_json(&mut outcome, &spec.expect, f, not_json.as_deref());
        }
    }
    if let Some(token) = &token {
        // Refused: the next run asks for a new token.
        if session.facts.status == Some(401) {
            token.rejected();
        }
    }
    let redactor = ctx.redactor_with(token.as_ref());
    let mut facts = session.facts;
    redactor.scrub(&mut facts.url);
    for m in &mut facts.messages {
        redactor.scrub(&mut m.text);
    }
    outcome.details = Some(Details::new(facts));
    super::kind::finish(&mut outcome);
    super::kind::redact(outcome, &redactor)
}

/// The state of one run.
struct Session<'s> {
    spec: &'s WebsocketSpec,
    clock: Clock,
    facts: WebsocketFacts,
    upgraded_at: Option<Instant>,
    last_at: Option<Instant>,
    max_gap: Duration,
}

/// Why reading stopped.
enum Stop {
    /// Enough messages, or `duration` passed.
    Done,
    /// The server sent a close frame (or the connection ended).
    ServerClosed(Option<CloseFrame>),
}

impl Session<'_> {
    async fn go(
        &mut self,
        ctx: &RunContext<'_>,
        ids: &RunIds,
        token: Option<&crate::net::oauth2::AccessToken>,
    ) -> Result<(), Fail> {
        let bad = |m: String| Fail::new(FailureReason::Request, m);
        let url = self.url(ctx, ids)?;
        self.facts.url = url.to_string();
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| bad(format!("cannot build the upgrade request: {e}")))?;
        let mut defaults = Vec::new();
        if !self.spec.subprotocols.is_empty() {
            let offered = HeaderValue::from_str(&self.spec.subprotocols.join(", "))
                .map_err(|_| bad("the subprotocols cannot be sent in a header".to_owned()))?;
            defaults.push((http::header::SEC_WEBSOCKET_PROTOCOL, offered));
        }
        let headers = ctx
            .request_headers(ids, &defaults, &self.spec.headers)
            .map_err(bad)?;
        request.headers_mut().extend(headers);
        if let Some(token) = token {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, token.header());
        }
        let outgoing = self.render_messages(ctx, ids)?;

        let secure = url.scheme() == "wss";
        // The environment's TLS files as they are now (read before the
        // measured part: that is synthmon's work).
        let config = match secure {
            true => Some(super::reach::environment_tls(ctx).await?),
            false => None,
        };
        self.clock.begin();
        let (Some(host), Some(port)) = (url.host(), url.port_or_known_default()) else {
            return Err(bad(format!("{url} has no host")));
        };
        let host: Host<String> = host.to_owned();
        let tls = config.map(|config| TlsSetup {
            config,
            server_name: ctx.env.tls.server_name.as_deref(),
            alpn: b"http/1.1",
        });
        let dialed = dial_via(
            &host,
            port,
            tls,
            ctx.env.proxy.as_deref(),
            &mut self.clock,
            ["resolve", "connect", "tls"],
        )
        .await?;
        self.facts.cert_expiry = dialed.cert_expiry;
        let limit = usize::try_from(self.spec.max_message_bytes).unwrap_or(usize::MAX);
        let config = WebSocketConfig::default()
            .max_message_size(Some(limit))
            .max_frame_size(Some(limit));
        let upgrade = tokio_tungstenite::client_async_with_config(request, dialed.io, Some(config));
        let (mut ws, response) = match self.clock.phase("upgrade", upgrade).await? {
            Ok(done) => done,
            Err(WsError::Http(response)) => {
                let status = response.status();
                self.facts.status = Some(status.as_u16());
                return Err(Fail::new(
                    FailureReason::Status,
                    format!(
                        "the server refused the upgrade: {} {}",
                        status.as_u16(),
                        status.canonical_reason().unwrap_or("")
                    )
                    .trim_end()
                    .to_owned(),
                ));
            }
            Err(e) => return Err(ws_failure("the upgrade", &e)),
        };
        self.facts.status = Some(response.status().as_u16());
        self.facts.subprotocol = response
            .headers()
            .get(http::header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let upgraded = Instant::now();
        self.upgraded_at = Some(upgraded);

        for message in outgoing {
            self.clock
                .within("while sending (first_message)", ws.send(message))
                .await?
                .map_err(|e| ws_failure("sending a message", &e))?;
            self.facts.sent += 1;
        }
        let stop = self.read(&mut ws, upgraded).await;
        if self.facts.received == 0 {
            self.clock.lap("first_message");
        } else {
            self.clock.lap("messages");
        }
        match stop? {
            Stop::ServerClosed(frame) => {
                self.note_close(frame.as_ref(), "server");
                // Answer the close so the server sees a clean end.
                let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(None)).await;
                self.clock.lap("close");
                self.judge_server_close(frame.as_ref())
            }
            Stop::Done if self.spec.close => {
                self.close(&mut ws).await;
                self.clock.lap("close");
                Ok(())
            }
            Stop::Done => Ok(()),
        }
    }

    /// The URL for this run: absolute `ws(s)://`, or joined onto the base
    /// URL with its scheme turned into the WebSocket one.
    fn url(&self, ctx: &RunContext<'_>, ids: &RunIds) -> Result<Url, Fail> {
        let bad = |m: String| Fail::new(FailureReason::Request, m);
        let rendered = ctx.render(&self.spec.url, ids).map_err(bad)?;
        let mut url = if rendered.starts_with("ws://") || rendered.starts_with("wss://") {
            Url::parse(&rendered).map_err(|e| bad(format!("invalid url `{rendered}`: {e}")))?
        } else {
            super::http::join_url(ctx.base_url, &rendered)
                .map_err(|e| bad(format!("cannot build the URL from `{rendered}`: {e}")))?
        };
        let scheme = match url.scheme() {
            "http" | "ws" => "ws",
            "https" | "wss" => "wss",
            other => {
                return Err(bad(format!(
                    "unsupported url scheme {other:?} in {url} (expected ws or wss)"
                )));
            }
        };
        url.set_scheme(scheme)
            .map_err(|()| bad(format!("cannot use {url} as a {scheme} URL")))?;
        crate::config::check::no_credentials(&url)
            .map_err(|e| bad(format!("the url template rendered an unusable url: {e}")))?;
        Ok(url)
    }

    fn render_messages(&self, ctx: &RunContext<'_>, ids: &RunIds) -> Result<Vec<Message>, Fail> {
        let bad = |m: String| Fail::new(FailureReason::Request, m);
        let scope = ctx.scope(ids, 0);
        self.spec
            .send
            .iter()
            .map(|m| match m {
                Outgoing::Text(t) => t.render(&scope).map(|s| Message::Text(s.into())),
                Outgoing::Binary(t) => t
                    .render(&scope)
                    .map(|s| Message::Binary(s.into_bytes().into())),
                Outgoing::Json(j) => j
                    .render(&scope)
                    .map(|v| Message::Text(v.to_string().into())),
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| bad(format!("cannot render a message: {e}")))
    }

    /// Reads until enough messages, `duration`, a close, a stall or the
    /// deadline.
    async fn read<S>(
        &mut self,
        ws: &mut WebSocketStream<S>,
        upgraded: Instant,
    ) -> Result<Stop, Fail>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let stop_at = self.spec.duration.map(|d| upgraded + d);
        loop {
            if self.spec.messages.is_some_and(|n| self.facts.received >= n) {
                return Ok(Stop::Done);
            }
            // The next instant something must have happened by.
            let (limit, why) = self.next_limit(upgraded);
            let wake = [stop_at.map(|t| (t, Wake::Duration)), limit]
                .into_iter()
                .flatten()
                .min_by_key(|(t, _)| *t);
            let next = ws.next();
            let got = match wake {
                None => self.clock.within(why, next).await?,
                Some((at, wake)) => {
                    match tokio::time::timeout_at(at, self.clock.within(why, next)).await {
                        Ok(got) => got?,
                        Err(_) => return self.woke(wake),
                    }
                }
            };
            let now = Instant::now();
            let message = match got {
                None => return Ok(Stop::ServerClosed(None)),
                Some(Err(e)) => return Err(ws_failure("reading", &e)),
                Some(Ok(m)) => m,
            };
            let (kind, text, bytes) = match message {
                Message::Text(t) => ("text", t.as_str().to_owned(), t.len()),
                Message::Binary(b) => ("binary", String::from_utf8_lossy(&b).into_owned(), b.len()),
                Message::Close(frame) => return Ok(Stop::ServerClosed(frame)),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            if self.facts.received == 0 {
                self.clock.lap("first_message");
                self.facts.first_message_seconds =
                    Some(now.saturating_duration_since(upgraded).as_secs_f64());
            }
            if let Some(last) = self.last_at {
                self.max_gap = self.max_gap.max(now.saturating_duration_since(last));
            }
            self.last_at = Some(now);
            self.facts.received += 1;
            self.facts.bytes_received += bytes as u64;
            if self.facts.messages.len() < MAX_KEPT {
                self.facts.messages.push(Received {
                    kind,
                    text: text.chars().take(MAX_KEPT_CHARS).collect(),
                    bytes: bytes as u64,
                    at_seconds: now.saturating_duration_since(upgraded).as_secs_f64(),
                });
            }
        }
    }

    /// The stall limit in force: the first message's, then the gap's.
    fn next_limit(&self, upgraded: Instant) -> (Option<(Instant, Wake)>, &'static str) {
        match self.last_at {
            None => (
                self.spec
                    .first_message_timeout
                    .map(|t| (upgraded + t, Wake::FirstMessage)),
                "waiting for the first message (first_message)",
            ),
            Some(last) => (
                self.spec.max_gap.map(|g| (last + g, Wake::Gap)),
                "waiting for messages (messages)",
            ),
        }
    }

    fn woke(&mut self, wake: Wake) -> Result<Stop, Fail> {
        let now = Instant::now();
        match wake {
            Wake::Duration => Ok(Stop::Done),
            Wake::FirstMessage => Err(Fail::new(
                FailureReason::StreamStalled,
                format!(
                    "no message within first_message_timeout ({})",
                    humantime::format_duration(self.spec.first_message_timeout.unwrap_or_default())
                ),
            )),
            Wake::Gap => {
                // The stall that failed the run is the largest gap.
                if let Some(last) = self.last_at {
                    self.max_gap = self.max_gap.max(now.saturating_duration_since(last));
                }
                Err(Fail::new(
                    FailureReason::StreamStalled,
                    format!(
                        "no message for longer than max_gap ({}) after {} messages",
                        humantime::format_duration(self.spec.max_gap.unwrap_or_default()),
                        self.facts.received
                    ),
                ))
            }
        }
    }

    /// The client's close handshake: send 1000 and wait (briefly) for the
    /// server's close frame.
    async fn close<S>(&mut self, ws: &mut WebSocketStream<S>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        self.facts.closed_by = Some("client");
        self.facts.close_code = Some(1000);
        let until = self.clock.deadline().min(Instant::now() + CLOSE_GRACE);
        let handshake = async {
            ws.close(Some(frame)).await?;
            // The server's answer (or the end of the stream) completes it.
            while let Some(next) = ws.next().await {
                next?;
            }
            Ok::<(), WsError>(())
        };
        match tokio::time::timeout_at(until, handshake).await {
            Ok(Ok(())) | Ok(Err(WsError::ConnectionClosed)) => {}
            Ok(Err(e)) => tracing::debug!(error = %describe(&e), "websocket close was not clean"),
            Err(_) => tracing::debug!("websocket close unanswered within the grace"),
        }
    }

    fn note_close(&mut self, frame: Option<&CloseFrame>, by: &'static str) {
        self.facts.closed_by = Some(by);
        self.facts.close_code = frame.map(|f| u16::from(f.code));
        self.facts.close_reason = frame
            .map(|f| f.reason.as_str().to_owned())
            .filter(|r| !r.is_empty());
    }

    /// A server close is fine when enough messages came first and the code
    /// is a normal one (1000, 1001); else the run fails with the code.
    fn judge_server_close(&self, frame: Option<&CloseFrame>) -> Result<(), Fail> {
        let code = frame.map(|f| f.code);
        let normal = matches!(code, Some(CloseCode::Normal | CloseCode::Away));
        let enough = self.spec.messages.is_none_or(|n| self.facts.received >= n);
        if normal && enough {
            return Ok(());
        }
        let how = match frame {
            None => "without a close frame".to_owned(),
            Some(f) if f.reason.is_empty() => format!("with code {}", u16::from(f.code)),
            Some(f) => format!("with code {} ({})", u16::from(f.code), f.reason.as_str()),
        };
        let progress = match self.spec.messages {
            Some(n) => format!("after {} of {n} messages", self.facts.received),
            None => format!("after {} messages", self.facts.received),
        };
        Err(Fail::new(
            FailureReason::Closed,
            format!("the server closed the connection {how} {progress}"),
        ))
    }

    /// What expectations read, and why the first message that is not JSON
    /// is not (its `json` is null).
    fn expression_facts(&self, ctx: &RunContext<'_>) -> (Facts, Option<String>) {
        let mut f = Facts::default();
        let mut not_json = None;
        let messages: Vec<cel::Value> = self
            .facts
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let mut map: HashMap<String, cel::Value> = HashMap::new();
                map.insert("kind".to_owned(), m.kind.into());
                map.insert("text".to_owned(), m.text.clone().into());
                let json = crate::expr::parse_json(m.text.as_bytes(), &format!("messages[{i}]"))
                    .unwrap_or_else(|why| {
                        not_json.get_or_insert(why);
                        cel::Value::Null
                    });
                map.insert("json".to_owned(), json);
                map.insert(
                    "bytes".to_owned(),
                    cel::Value::Int(i64::try_from(m.bytes).unwrap_or(i64::MAX)),
                );
                map.into()
            })
            .collect();
        f.set("messages", messages);
        f.set(
            "count",
            cel::Value::Int(i64::try_from(self.facts.received).unwrap_or(i64::MAX)),
        );
        f.set(
            "first_message",
            self.facts
                .first_message_seconds
                .map_or(cel::Value::Null, |s| {
                    duration_value(Duration::from_secs_f64(s))
                }),
        );
        f.set("max_gap", duration_value(self.max_gap));
        f.set(
            "status",
            self.facts
                .status
                .map_or(cel::Value::Null, |s| cel::Value::Int(i64::from(s))),
        );
        f.set(
            "subprotocol",
            self.facts
                .subprotocol
                .clone()
                .map_or(cel::Value::Null, cel::Value::from),
        );
        let mut close: HashMap<String, cel::Value> = HashMap::new();
        close.insert(
            "code".to_owned(),
            self.facts
                .close_code
                .map_or(cel::Value::Null, |c| cel::Value::Int(i64::from(c))),
        );
        close.insert(
            "reason".to_owned(),
            self.facts.close_reason.clone().unwrap_or_default().into(),
        );
        close.insert(
            "by".to_owned(),
            self.facts.closed_by.unwrap_or_default().into(),
        );
        f.set("close", close);
        f.set("timings", self.clock.timings());
        f.set("vars", super::kind::vars_value(ctx.vars));
        (f, not_json)
    }
}

/// What woke the reader when no message came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wake {
    Duration,
    FirstMessage,
    Gap,
}

/// A protocol-level failure in words: what was being done, and why.
fn ws_failure(doing: &str, error: &WsError) -> Fail {
    match error {
        WsError::Io(e) => crate::net::error::io_failure(doing, e),
        WsError::Capacity(e) => {
            Fail::new(FailureReason::BodyTooLarge, format!("{doing} failed: {e}"))
        }
        WsError::ConnectionClosed | WsError::AlreadyClosed => Fail::new(
            FailureReason::Closed,
            format!("{doing} failed: the connection is closed"),
        ),
        other => Fail::new(
            FailureReason::Protocol,
            format!("{doing} failed: {}", describe(other)),
        ),
    }
}

impl WebsocketFacts {
    /// Gauges for /metrics, labelled with probe and environment.
    pub fn gauges(&self) -> Vec<(&'static str, f64)> {
        let mut out = vec![
            ("probe_websocket_messages", self.received as f64),
            ("probe_websocket_max_gap_seconds", self.max_gap_seconds),
        ];
        if let Some(first) = self.first_message_seconds {
            out.push(("probe_websocket_first_message_seconds", first));
        }
        out
    }
}

/// The registry's line for `[websocket]`.
pub const KIND: KindEntry = KindEntry {
    name: "websocket",
    build: build_kind,
    gauges: &[
        GaugeSpec {
            name: "probe_websocket_messages",
            seconds: false,
            help: "Messages the last websocket run received.",
        },
        GaugeSpec {
            name: "probe_websocket_first_message_seconds",
            seconds: true,
            help: "Time from the upgrade to the first message.",
        },
        GaugeSpec {
            name: "probe_websocket_max_gap_seconds",
            seconds: true,
            help: "Largest gap between two messages of the last run.",
        },
    ],
};

fn build_kind(c: &mut Checker<'_>, input: &BuildInput<'_>) -> Option<Box<dyn Kind>> {
    let raw: RawWebsocket = c.table("websocket")?;
    build(raw, input.known_vars, c).map(|spec| Box::new(spec) as Box<dyn Kind>)
}

impl Kind for WebsocketSpec {
    fn name(&self) -> &'static str {
        "websocket"
    }

    fn run<'a>(&'a self, ctx: &'a RunContext<'_>) -> RunFuture<'a> {
        Box::pin(run(self, ctx))
    }

    fn scope(&self) -> Option<crate::expr::Scope<'static>> {
        Some(SCOPE)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl KindFacts for WebsocketFacts {
    fn gauges(&self) -> Vec<(&'static str, f64)> {
        WebsocketFacts::gauges(self)
    }

    fn cert_expiry(&self) -> Option<i64> {
        self.cert_expiry
    }
}
