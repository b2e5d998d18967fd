//! The `[stream]` table as written ([`RawStream`]), checked into a
//! [`StreamSpec`] by [`build`] with every problem located; [`SCOPE`], what
//! expectations can read.

use super::sse::Mode;
use crate::config::check::Checker;
use crate::config::raw::RawSize;
use crate::expr::{Scope, Type, Types};
use crate::outcome::SourceLocation;
use crate::probe::kind::Assertion;
use crate::template::Text;
use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use url::Url;

/// The variables a `stream` expectation can read.
pub const SCOPE: Scope<'static> = Scope {
    names: &[
        "events",
        "first_event",
        "max_gap",
        "last_event_id",
        "reconnected",
        "resumed_from",
        "data",
        "sequence",
        "status",
        "timings",
        "vars",
    ],
    types: &[TYPES],
};

/// The types of what this kind puts in scope, so `synthmon check` catches
/// a literal of another type compared with them.
const TYPES: Types<'static> = &[
    ("events", Type::Number),
    ("first_event", Type::Duration),
    ("max_gap", Type::Duration),
    ("last_event_id", Type::String),
    ("resumed_from", Type::String),
    ("reconnected", Type::Bool),
    ("status", Type::Number),
    ("sequence.gaps", Type::Number),
    ("sequence.missing", Type::Number),
    ("sequence.duplicates", Type::Number),
    ("sequence.not_numeric", Type::Number),
];

/// The default cap on one event (or chunk).
const DEFAULT_MAX_EVENT_BYTES: u64 = 256 * 1024;
/// The largest `max_event_bytes` accepted.
const MAX_EVENT_BYTES_LIMIT: u64 = 64 * 1024 * 1024;

/// The `[stream]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStream {
    pub url: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `{ user = "…", password = "${env:…}" }`: sent as `Authorization: Basic …`.
    pub basic_auth: Option<crate::config::raw::RawBasicAuth>,
    /// `"${env:…}"`: sent as `Authorization: Bearer …`.
    pub bearer_token: Option<String>,
    /// OAuth2 client credentials: a bearer token from the token endpoint.
    pub oauth2: Option<crate::config::raw::RawOAuth2>,
    /// `sse` (default) or `chunked`.
    pub mode: Option<String>,
    pub min_events: Option<u64>,
    #[serde(default, deserialize_with = "crate::config::raw::duration")]
    pub duration: Option<String>,
    #[serde(default, deserialize_with = "crate::config::raw::duration")]
    pub max_gap: Option<String>,
    #[serde(default, deserialize_with = "crate::config::raw::duration")]
    pub first_event_timeout: Option<String>,
    pub reconnect: Option<bool>,
    pub max_event_bytes: Option<RawSize>,
    /// `numeric`: event ids count up by one; gaps and duplicates fail.
    pub sequence: Option<String>,
    /// With `sequence`: each run resumes with `Last-Event-ID` after the
    /// previous run's last id, and the numbering must go on from it
    /// (default true).
    pub sequence_across_runs: Option<bool>,
    #[serde(default)]
    pub expect: Vec<String>,
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
    /// `sequence = "numeric"`.
    pub sequence: Option<SequenceSpec>,
    /// `oauth2 = { … }`: every connection carries a bearer token from the
    /// token endpoint.
    pub oauth2: Option<std::sync::Arc<crate::net::oauth2::OAuth2>>,
}

/// `sequence = "numeric"`: how the ids' numbering is checked.
#[derive(Debug)]
pub struct SequenceSpec {
    /// Resume from the previous run's last id and check across runs.
    pub across_runs: bool,
    /// No expectation reads `sequence`: a gap or a duplicate fails the run
    /// (the implicit check, located here).
    pub implicit_at: Option<SourceLocation>,
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
                    match crate::probe::http::join_url(&base, t.source()) {
                        Err(err) => c.err("stream.url", format!("expected a URL or a path: {err}")),
                        Ok(url) => {
                            if let Err(msg) = crate::config::check::no_credentials(&url) {
                                c.err("stream.url", msg);
                            }
                        }
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
    let auth = c.auth(
        "stream",
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
    let sequence = sequence(&raw, mode, &expect, c);
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
        sequence,
        oauth2: auth.oauth2,
    })
}

/// Checks `sequence` and `sequence_across_runs`, and that expectations
/// read `sequence` only when it is checked.
fn sequence(
    raw: &RawStream,
    mode: Option<Mode>,
    expect: &[Assertion],
    c: &mut Checker<'_>,
) -> Option<SequenceSpec> {
    let Some(kind) = raw.sequence.as_deref() else {
        if raw.sequence_across_runs.is_some() {
            c.err(
                "stream.sequence_across_runs",
                "`sequence_across_runs` needs `sequence = \"numeric\"`",
            );
        }
        for (i, a) in expect.iter().enumerate() {
            if a.expr.reads("sequence") {
                c.err(
                    &format!("stream.expect[{i}]"),
                    "`sequence` is only measured with `sequence = \"numeric\"` in [stream]",
                );
            }
        }
        return None;
    };
    if kind != "numeric" {
        c.err(
            "stream.sequence",
            format!("expected `numeric` (event ids that count up by one), found `{kind}`"),
        );
        return None;
    }
    if mode == Some(Mode::Chunked) {
        c.err(
            "stream.sequence",
            "`sequence` checks the ids of SSE events, which chunked streams do not have: use mode = \"sse\"",
        );
        return None;
    }
    let implicit = !expect.iter().any(|a| a.expr.reads("sequence"));
    Some(SequenceSpec {
        across_runs: raw.sequence_across_runs.unwrap_or(true),
        implicit_at: implicit.then(|| c.location("stream.sequence")),
    })
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
