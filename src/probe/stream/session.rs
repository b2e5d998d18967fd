//! One `stream` run: [`run`] connects, reads events until the run has
//! enough, the server ends the stream or a limit fails it, reconnects with
//! `Last-Event-ID` when asked and checks the stream resumed after it, then
//! judges the implicit checks and the expectations. With `sequence`, it
//! follows the ids' numbering ([`Sequence`]), connects with the previous
//! run's last id when there is one, and keeps its own for the next run
//! ([`KEPT_LAST_ID`]) whatever the run's verdict.

use super::connect::{Connection, connect};
use super::facts::{MAX_DATA_KEPT, StreamFacts, cut};
use super::sequence::{KEPT_LAST_ID, Sequence};
use super::spec::StreamSpec;
use super::sse::{Event, Mode, Parser};
use crate::expr::{Facts, duration_value};
use crate::net::oauth2::AccessToken;
use crate::net::{Clock, Fail, TlsSetup};
use crate::outcome::{AssertionResult, Details, FailureReason, Outcome};
use crate::probe::kind::RunContext;
use crate::tagging::RunIds;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use http_body_util::BodyExt;
use std::collections::HashSet;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

/// How many ids of the first connection are remembered to recognise a
/// replay after reconnecting (non-numeric ids only).
const MAX_IDS_REMEMBERED: usize = 10_000;

pub async fn run(spec: &StreamSpec, ctx: &RunContext<'_>) -> Outcome {
    let ids = RunIds::generate();
    let mut outcome = Outcome::new(&ctx.probe.name, &ctx.env.name, "stream", &ids);
    let deadline = ctx.deadline();
    // The token comes before the clock starts: the phases are the target's.
    let own_header = spec
        .headers
        .iter()
        .any(|(name, _)| name == header::AUTHORIZATION);
    let token = match ctx
        .oauth2_token(spec.oauth2.as_deref(), own_header, deadline)
        .await
    {
        Ok(token) => token,
        Err(fail) => {
            outcome.fail(fail.reason, fail.message);
            return crate::probe::kind::redact(outcome, ctx.redactor);
        }
    };
    let mut s = Streamer::new(spec, deadline);
    // Resume where the previous run stopped: its last id, kept.
    let previous = spec
        .sequence
        .as_ref()
        .filter(|q| q.across_runs)
        .and_then(|_| ctx.prev_value(KEPT_LAST_ID))
        .and_then(serde_json::Value::as_u64);
    if let Some(previous) = previous {
        s.facts.sequence = Some(Sequence::resuming(previous));
    }
    let result = s.go(ctx, &ids, token.as_ref()).await;
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
            ctx.check_expectations(&mut outcome, &spec.expect, f);
            if outcome.error.is_none() {
                if let Some(detail) = s.sequence_failure() {
                    let summary = crate::probe::kind::expectation_summary(&outcome.assertions)
                        .unwrap_or_default();
                    outcome.error = Some(format!("{summary}: event ids {detail}"));
                }
            }
        }
    }
    let kept = spec
        .sequence
        .as_ref()
        .filter(|q| q.across_runs)
        .and(s.facts.sequence.as_ref())
        .and_then(|q| q.last_id);
    if let Some(last) = kept {
        outcome.kept.insert(KEPT_LAST_ID.to_owned(), last.into());
    }
    if let Some(token) = &token {
        // Refused: the next run asks for a new token.
        if s.facts.status == Some(401) {
            token.rejected();
        }
    }
    let redactor = ctx.redactor_with(token.as_ref());
    let mut facts = s.facts;
    redactor.scrub(&mut facts.url);
    for d in &mut facts.data {
        redactor.scrub(d);
    }
    outcome.details = Some(Details::new(facts));
    crate::probe::kind::finish(&mut outcome);
    crate::probe::kind::redact(outcome, &redactor)
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
                sequence: spec.sequence.as_ref().map(|_| Sequence::default()),
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
    async fn go(
        &mut self,
        ctx: &RunContext<'_>,
        ids: &RunIds,
        token: Option<&AccessToken>,
    ) -> Result<(), Fail> {
        let request_error = |m: String| Fail::new(FailureReason::Request, m);
        let path = ctx.render(&self.spec.url, ids).map_err(request_error)?;
        let url = crate::probe::http::join_url(ctx.base_url, &path)
            .map_err(|e| request_error(format!("cannot build the URL from `{path}`: {e}")))?;
        crate::config::check::no_credentials(&url).map_err(|e| {
            request_error(format!("the url template rendered an unusable url: {e}"))
        })?;
        self.facts.url = url.to_string();
        let mut headers = self.headers(ctx, ids)?;
        if let Some(token) = token {
            headers.insert(header::AUTHORIZATION, token.header());
        }
        let previous = self.facts.sequence.as_ref().and_then(|q| q.previous_run_id);
        if let Some(previous) = previous {
            headers.insert(
                HeaderName::from_static("last-event-id"),
                HeaderValue::from(previous),
            );
        }

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
        let sse = [
            (
                header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ];
        let defaults: &[_] = if self.spec.mode == Mode::Sse {
            &sse
        } else {
            &[]
        };
        ctx.request_headers(ids, defaults, &self.spec.headers)
            .map_err(|m| Fail::new(FailureReason::Request, m))
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
        // The environment's TLS files as they are now.
        let config = match url.scheme() {
            "https" => crate::probe::reach::environment_tls(ctx).await?,
            _ => Arc::clone(&ctx.env.tls_client),
        };
        let tls = TlsSetup {
            config,
            server_name: ctx.env.tls.server_name.as_deref(),
            alpn: b"http/1.1",
        };
        let connecting = connect(
            url,
            headers,
            tls,
            ctx.env.proxy.as_deref(),
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
                    return Err(crate::net::error::io_failure(
                        &format!("reading the stream after {} events", self.facts.events),
                        &e,
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
                self.note_gap(gap);
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
        if let (true, Some(id), Some(sequence)) = (
            event.own_id,
            event.id.as_deref(),
            self.facts.sequence.as_mut(),
        ) {
            sequence.note(id);
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

    /// Counts `gap` (between two events, or from the last event to the
    /// stall that ended the run) towards the largest gap.
    fn note_gap(&mut self, gap: Duration) {
        self.max_gap = self.max_gap.max(gap);
        self.facts.max_gap_seconds = self.max_gap.as_secs_f64();
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
    fn woke(&mut self, wake: Wake) -> Result<Ended, Fail> {
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

    /// A stall: how long it waited, for what, and after which event. A
    /// stall after an event is a gap too, the one that failed the run, so
    /// it counts towards `max_gap` (at least the configured limit).
    fn stalled(&mut self, wake: Wake, doing: &str) -> Fail {
        let doing = if doing.is_empty() {
            String::new()
        } else {
            format!(" ({doing})")
        };
        let message = match (wake, self.last_event_at, self.spec.max_gap) {
            (Wake::Gap, Some(at), Some(limit)) => {
                let gap = at.elapsed();
                self.note_gap(gap);
                format!(
                    "no event for {:.3}s after event {}{}{doing}; max_gap is {}",
                    gap.as_secs_f64(),
                    self.facts.events,
                    self.id_note(),
                    humantime::format_duration(limit)
                )
            }
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
        if let (Some(at), Some(sequence)) = (
            self.spec
                .sequence
                .as_ref()
                .and_then(|q| q.implicit_at.as_ref()),
            &self.facts.sequence,
        ) {
            out.push(AssertionResult {
                expression: "event ids count up by one (implicit: sequence)".to_owned(),
                passed: !sequence.broken(),
                actual: sequence.describe(),
                location: Some(at.clone()),
            });
        }
        out
    }

    /// What broke the numbering, when the implicit sequence check failed.
    fn sequence_failure(&self) -> Option<String> {
        self.spec.sequence.as_ref()?.implicit_at.as_ref()?;
        self.facts
            .sequence
            .as_ref()
            .filter(|q| q.broken())
            .map(Sequence::describe)
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
        f.set(
            "sequence",
            self.facts
                .sequence
                .as_ref()
                .map_or(cel::Value::Null, Sequence::value),
        );
        f.set("status", self.facts.status.map_or(0, i64::from));
        f.set("timings", self.clock.timings());
        f.set("vars", crate::probe::kind::vars_value(ctx.vars));
        f
    }
}

fn hash(id: &str) -> u64 {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}
