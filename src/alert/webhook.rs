//! Webhook receivers: what goes on the wire for a batch of notifications,
//! and one HTTP attempt to deliver it.
//!
//! Four presets shape the body:
//!
//! - **Generic**: synthmon's own document, version `"1"`, described by
//!   `docs/webhook-v1.schema.json`. Fields are only ever added within a
//!   version; a removal or a change of meaning bumps `version`.
//! - **Slack**: an incoming-webhook message (`text` plus `blocks`).
//! - **PagerDuty** Events API v2: one event per notification, so a batch
//!   for this preset must hold exactly one notification ([`body`] refuses
//!   more); the outbox's delivery layer sends a larger batch as one request
//!   per notification, in order. The `dedup_key` is the alert's fingerprint,
//!   so a trigger, its repeats (sent as `trigger` again, which PagerDuty
//!   deduplicates) and its resolve all address the same incident.
//! - **Alertmanager** (`POST /api/v2/alerts`): an array of alerts labelled
//!   so that several synthmon instances sending the same alert deduplicate
//!   there. A firing alert's `endsAt` is its `expires_at` (three repeat
//!   intervals ahead, renewed by every repeat), so it stays active; with
//!   repeats off it has none, and Alertmanager ends it after its
//!   `resolve_timeout`.
//!
//! Every request carries an `Idempotency-Key` header that is the same for
//! every attempt of the same delivery (also across restarts). When the
//! receiver has an HMAC secret, `X-Synthmon-Signature: sha256=<hex>` is the
//! HMAC-SHA256 of the exact body bytes under that secret, and
//! `X-Synthmon-Timestamp` is the Unix time of the attempt in seconds (it is
//! informational: the signature covers the body only, which is identical
//! across retries).
//!
//! An attempt is classified as delivered (2xx), transient (408, 429, 5xx,
//! a network error or the receiver's timeout: retried) or permanent (any
//! other status, or a request that cannot be built: dead-lettered).
//! Header values, the HMAC secret, the PagerDuty routing key and the URL
//! (a Slack webhook URL is itself a secret) are never logged or stored in
//! an error message; errors name the receiver only.
//!
//! [`RECEIVER`] is the registry's line for the four types (`webhook`,
//! `slack`, `pagerduty`, `alertmanager`): it checks their tables and builds
//! the [`WebhookReceiver`].

use super::deliver::{Attempt, Receiver, SendFuture, SharedReceiver};
use super::receiver::{ReceiverEntry, ReceiverInput};
use super::{AlertKind, FailedCheck, Notice, Notification, ThresholdBreach};
use crate::config::check::Checker;
use crate::config::raw::RawReceiver;
use crate::config::{DEFAULT_RECEIVER_TIMEOUT, Severity};
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The version of the generic payload this code writes.
pub const GENERIC_VERSION: &str = "1";

/// The content type of every body synthmon sends.
pub const CONTENT_TYPE: &str = "application/json";

/// The header carrying the HMAC-SHA256 signature of the body.
pub const SIGNATURE_HEADER: &str = "X-Synthmon-Signature";

/// The header carrying the Unix time (seconds) of the attempt.
pub const TIMESTAMP_HEADER: &str = "X-Synthmon-Timestamp";

/// The header carrying the delivery's stable idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Header names a receiver's custom headers may not set: synthmon sets them.
const RESERVED_HEADERS: [&str; 6] = [
    "content-type",
    "content-length",
    "host",
    "idempotency-key",
    "x-synthmon-signature",
    "x-synthmon-timestamp",
];

/// At most this many bytes of a response body are read (and discarded).
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// Slack allows 50 blocks per message; one is kept for the "and N more"
/// line.
const SLACK_MAX_ALERT_BLOCKS: usize = 49;

/// Slack truncates a section's text at 3,000 characters.
const SLACK_MAX_SECTION: usize = 2_900;

/// PagerDuty rejects a summary longer than 1,024 characters.
const PAGERDUTY_MAX_SUMMARY: usize = 1_024;

/// How a receiver's body is shaped.
#[derive(Clone, PartialEq, Eq)]
pub enum Preset {
    /// synthmon's versioned JSON document (`docs/webhook-v1.schema.json`).
    Generic,
    /// A Slack incoming webhook.
    Slack,
    /// PagerDuty Events API v2; the routing key is a secret.
    PagerDuty { routing_key: String },
    /// Prometheus Alertmanager's v2 API (`/api/v2/alerts`).
    Alertmanager,
    /// The generic v1 document rendered through a user's minijinja
    /// template (checked at load), sent with `content_type`.
    Template {
        source: String,
        content_type: String,
    },
}

impl Preset {
    /// The preset's name as configured.
    pub fn name(&self) -> &'static str {
        match self {
            Preset::Generic => "generic",
            Preset::Slack => "slack",
            Preset::PagerDuty { .. } => "pagerduty",
            Preset::Alertmanager => "alertmanager",
            Preset::Template { .. } => "template",
        }
    }

    /// Whether a batch goes out as one request per notification.
    pub fn one_request_per_notification(&self) -> bool {
        matches!(self, Preset::PagerDuty { .. })
    }
}

impl fmt::Debug for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The routing key is a secret.
        f.write_str(self.name())
    }
}

/// One configured webhook receiver.
#[derive(Clone)]
pub struct WebhookReceiver {
    /// Unique among receivers; names the outbox rows and the logs.
    pub name: String,
    /// Where to POST. May itself be a secret (Slack): never logged.
    pub url: url::Url,
    pub preset: Preset,
    /// Extra request headers (e.g. `Authorization`); values are never logged.
    pub headers: Vec<(String, String)>,
    /// Signs bodies with HMAC-SHA256 when set. A secret: never logged.
    pub hmac_secret: Option<String>,
    /// Bounds one whole attempt, connect to last response byte.
    pub timeout: Duration,
}

impl fmt::Debug for WebhookReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL, header values and the secret may all be secrets.
        f.debug_struct("WebhookReceiver")
            .field("name", &self.name)
            .field("preset", &self.preset)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("signed", &self.hmac_secret.is_some())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The generic (v1) document: one group of notifications for one receiver.
#[derive(Debug, Serialize)]
struct GenericPayload<'a> {
    version: &'static str,
    receiver: &'a str,
    /// `resolved` when every alert in it resolved, else `firing`.
    status: &'static str,
    alerts: Vec<GenericAlert<'a>>,
    group_key: String,
}

/// One alert of the generic document.
#[derive(Debug, Serialize)]
struct GenericAlert<'a> {
    fingerprint: &'a str,
    notice: Notice,
    kind: AlertKind,
    probe: &'a str,
    environment: &'a str,
    severity: Severity,
    labels: &'a BTreeMap<String, String>,
    tags: &'a [String],
    starts_at: String,
    ends_at: Option<String>,
    at: String,
    sequence: u32,
    summary: &'a str,
    reason: Option<&'a str>,
    error: Option<&'a str>,
    failed_checks: &'a [FailedCheck],
    thresholds: &'a [ThresholdBreach],
    run_id: &'a str,
    trace_id: &'a str,
    idempotency_key: String,
}

/// The request body for `batch` (one group of notifications) as
/// `receiver` expects it: `(content type, bytes)`. Errs on an empty batch,
/// and on a batch of more than one notification for PagerDuty (which takes
/// one event per request; see [`Preset::one_request_per_notification`]).
pub fn body(
    receiver: &WebhookReceiver,
    batch: &[Notification],
) -> Result<(String, Vec<u8>), String> {
    if batch.is_empty() {
        return Err(format!("receiver {}: nothing to send", receiver.name));
    }
    let value = match &receiver.preset {
        Preset::Generic => generic(receiver, batch)?,
        Preset::Slack => slack(batch),
        Preset::PagerDuty { routing_key } => match batch {
            [n] => pagerduty(routing_key, n),
            _ => {
                return Err(format!(
                    "receiver {}: PagerDuty takes one notification per request, not {}",
                    receiver.name,
                    batch.len()
                ));
            }
        },
        Preset::Alertmanager => alertmanager(batch),
        Preset::Template {
            source,
            content_type,
        } => {
            let doc = generic(receiver, batch)?;
            let text = render_template(source, &doc)
                .map_err(|e| format!("receiver {}: {e}", receiver.name))?;
            return Ok((content_type.clone(), text.into_bytes()));
        }
    };
    let bytes = serde_json::to_vec(&value)
        .map_err(|e| format!("receiver {}: cannot encode the body: {e}", receiver.name))?;
    Ok((CONTENT_TYPE.to_owned(), bytes))
}

/// The headers of one attempt: the receiver's custom headers (minus the
/// reserved names synthmon sets itself), `Idempotency-Key`, and when the
/// receiver has an HMAC secret, `X-Synthmon-Signature: sha256=<hex>` over
/// `body` and `X-Synthmon-Timestamp` (Unix seconds of `now`).
pub fn headers(
    receiver: &WebhookReceiver,
    idempotency_key: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = receiver
        .headers
        .iter()
        .filter(|(k, _)| !RESERVED_HEADERS.contains(&k.trim().to_ascii_lowercase().as_str()))
        .cloned()
        .collect();
    out.push((IDEMPOTENCY_HEADER.to_owned(), idempotency_key.to_owned()));
    if let Some(secret) = &receiver.hmac_secret {
        out.push((
            SIGNATURE_HEADER.to_owned(),
            format!("sha256={}", sign(secret.as_bytes(), body)),
        ));
        out.push((TIMESTAMP_HEADER.to_owned(), now.timestamp().to_string()));
    }
    out
}

/// Lowercase hex of HMAC-SHA256(`secret`, `body`).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length, so this cannot fail; an empty MAC
    // would only make the receiver reject the request.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A stable key for a group: 16 hex digits of FNV-1a over its sorted,
/// distinct fingerprints. The same set of alerts always has the same key.
pub fn group_key(batch: &[Notification]) -> String {
    let mut prints: Vec<&str> = batch.iter().map(|n| n.fingerprint.as_str()).collect();
    prints.sort_unstable();
    prints.dedup();
    format!(
        "{:016x}",
        crate::schedule::stable_hash(prints.join("\n").as_bytes())
    )
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn all_resolved(batch: &[Notification]) -> bool {
    batch.iter().all(|n| n.notice == Notice::Resolve)
}

fn generic(receiver: &WebhookReceiver, batch: &[Notification]) -> Result<Value, String> {
    let payload = GenericPayload {
        version: GENERIC_VERSION,
        receiver: &receiver.name,
        status: if all_resolved(batch) {
            "resolved"
        } else {
            "firing"
        },
        alerts: batch
            .iter()
            .map(|n| GenericAlert {
                fingerprint: &n.fingerprint,
                notice: n.notice,
                kind: n.kind,
                probe: &n.probe,
                environment: &n.environment,
                severity: n.severity,
                labels: &n.labels,
                tags: &n.tags,
                starts_at: rfc3339(n.starts_at),
                ends_at: n.ends_at.map(rfc3339),
                at: rfc3339(n.at),
                sequence: n.sequence,
                summary: &n.summary,
                reason: n.reason.as_deref(),
                error: n.error.as_deref(),
                failed_checks: &n.failed_checks,
                thresholds: &n.thresholds,
                run_id: &n.run_id,
                trace_id: &n.trace_id,
                idempotency_key: n.idempotency_key(),
            })
            .collect(),
        group_key: group_key(batch),
    };
    serde_json::to_value(&payload)
        .map_err(|e| format!("receiver {}: cannot encode the body: {e}", receiver.name))
}

/// Escapes the three characters Slack's mrkdwn treats as control characters.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack date token: rendered in the reader's time zone, with the UTC
/// time as the fallback text.
fn slack_date(t: DateTime<Utc>) -> String {
    format!(
        "<!date^{}^{{date_short_pretty}} {{time}}|{}>",
        t.timestamp(),
        t.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

/// `s` cut to at most `max` characters, with an ellipsis when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn slack(batch: &[Notification]) -> Value {
    let firing = batch.iter().filter(|n| n.notice != Notice::Resolve).count();
    let resolved = batch.len() - firing;
    let text = match batch {
        [n] => format!(
            "{}: {} @ {}: {}",
            if n.notice == Notice::Resolve {
                "RESOLVED"
            } else {
                "FIRING"
            },
            n.probe,
            n.environment,
            n.summary
        ),
        _ => format!(
            "synthmon: {} alerts ({firing} firing, {resolved} resolved)",
            batch.len()
        ),
    };
    let mut blocks: Vec<Value> = batch
        .iter()
        .take(SLACK_MAX_ALERT_BLOCKS)
        .map(|n| {
            let head = match n.notice {
                Notice::Resolve => "*RESOLVED*",
                Notice::Trigger | Notice::Repeat => "*FIRING*",
            };
            let when = match (n.notice, n.ends_at) {
                (Notice::Resolve, Some(end)) => format!(
                    "firing from {} to {}",
                    slack_date(n.starts_at),
                    slack_date(end)
                ),
                (Notice::Repeat, _) => format!(
                    "since {} (reminder {})",
                    slack_date(n.starts_at),
                    n.sequence
                ),
                _ => format!("since {}", slack_date(n.starts_at)),
            };
            let text = format!(
                "{head} `{}` @ `{}` · {} · {}\n{}\n{when}",
                slack_escape(&n.probe),
                slack_escape(&n.environment),
                n.kind.as_str(),
                severity_name(n.severity),
                slack_escape(&truncate(&n.summary, SLACK_MAX_SECTION)),
            );
            json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
        })
        .collect();
    if batch.len() > SLACK_MAX_ALERT_BLOCKS {
        blocks.push(json!({
            "type": "context",
            "elements": [{
                "type": "mrkdwn",
                "text": format!("… and {} more", batch.len() - SLACK_MAX_ALERT_BLOCKS),
            }],
        }));
    }
    json!({"text": text, "blocks": blocks})
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

fn pagerduty(routing_key: &str, n: &Notification) -> Value {
    if n.notice == Notice::Resolve {
        // PagerDuty needs only the key to resolve; a payload is ignored.
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": n.fingerprint,
        });
    }
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": n.fingerprint,
        "client": "synthmon",
        "payload": {
            "summary": truncate(&n.summary, PAGERDUTY_MAX_SUMMARY),
            "source": format!("synthmon/{}", n.environment),
            "severity": severity_name(n.severity),
            "timestamp": rfc3339(n.at),
            "component": n.probe,
            "class": n.kind.as_str(),
            "custom_details": {
                "fingerprint": n.fingerprint,
                "notice": n.notice,
                "kind": n.kind,
                "probe": n.probe,
                "environment": n.environment,
                "labels": n.labels,
                "tags": n.tags,
                "starts_at": rfc3339(n.starts_at),
                "sequence": n.sequence,
                "reason": n.reason,
                "error": n.error,
                "failed_checks": n.failed_checks,
                "thresholds": n.thresholds,
                "run_id": n.run_id,
                "trace_id": n.trace_id,
                "idempotency_key": n.idempotency_key(),
            },
        },
    })
}

/// A Prometheus label name from any string: invalid characters become `_`,
/// and a leading digit gets a `_` prefix.
fn label_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The longer explanation of an alert: reason, error, failed checks and
/// thresholds, one per line.
fn description(n: &Notification) -> String {
    let mut lines = Vec::new();
    if let Some(reason) = &n.reason {
        lines.push(format!("reason: {reason}"));
    }
    if let Some(error) = &n.error {
        lines.push(format!("error: {error}"));
    }
    for c in &n.failed_checks {
        let at = c
            .location
            .as_deref()
            .map(|l| format!(" ({l})"))
            .unwrap_or_default();
        lines.push(format!("failed: {}{at}; actual {}", c.expression, c.actual));
    }
    for t in &n.thresholds {
        let observed = t
            .observed
            .map(|v| format!("{v}{}", t.unit))
            .unwrap_or_else(|| "no data".to_owned());
        lines.push(format!(
            "threshold {}: {} (observed {observed} over {}s)",
            t.threshold, t.state, t.window_seconds
        ));
    }
    if lines.is_empty() {
        n.summary.clone()
    } else {
        lines.join("\n")
    }
}

fn alertmanager(batch: &[Notification]) -> Value {
    let alerts: Vec<Value> = batch
        .iter()
        .map(|n| {
            let mut labels: BTreeMap<String, String> = n
                .labels
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (label_name(k), v.clone()))
                .collect();
            // synthmon's own labels win over probe labels of the same name.
            let kind = match n.kind {
                AlertKind::Failing => "Failing",
                AlertKind::Degraded => "Degraded",
            };
            labels.insert("alertname".into(), format!("SynthmonProbe{kind}"));
            labels.insert("probe".into(), n.probe.clone());
            labels.insert("environment".into(), n.environment.clone());
            labels.insert("severity".into(), severity_name(n.severity).into());
            labels.insert("synthmon_fingerprint".into(), n.fingerprint.clone());
            let mut alert = json!({
                "labels": labels,
                "annotations": {
                    "summary": n.summary,
                    "description": description(n),
                    "run_id": n.run_id,
                    "trace_id": n.trace_id,
                },
                "startsAt": rfc3339(n.starts_at),
            });
            if n.notice == Notice::Resolve {
                alert["endsAt"] = Value::String(rfc3339(n.ends_at.unwrap_or(n.at)));
            } else if let Some(expires) = n.expires_at {
                // Keeps the alert active between repeats; without it
                // Alertmanager ends it after its resolve_timeout.
                alert["endsAt"] = Value::String(rfc3339(expires));
            }
            alert
        })
        .collect();
    Value::Array(alerts)
}

/// Renders a body template over the generic v1 document: `{{ status }}`,
/// `{{ alerts[0].summary }}`, `{% for a in alerts %}…{% endfor %}`, and
/// `{{ alerts | tojson }}`. Also used at load to check a template.
pub fn render_template(source: &str, doc: &Value) -> Result<String, String> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.render_str(source, doc)
        .map_err(|e| format!("cannot render the body template: {e}"))
}

/// One attempt to deliver `batch` to `receiver`: builds the body and
/// headers, POSTs within the receiver's timeout (which bounds the whole
/// exchange, connect to the end of the response body) and classifies the
/// result. A 2xx counts as delivered even if the rest of the response body
/// does not arrive within the timeout.
pub async fn send(
    client: &reqwest::Client,
    receiver: &WebhookReceiver,
    batch: &[Notification],
    idempotency_key: &str,
) -> Attempt {
    let (content_type, bytes) = match body(receiver, batch) {
        Ok(b) => b,
        Err(error) => return Attempt::Permanent { error },
    };
    let mut request = client
        .post(receiver.url.clone())
        .header(reqwest::header::CONTENT_TYPE, content_type);
    for (name, value) in headers(receiver, idempotency_key, &bytes, Utc::now()) {
        let name = match reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()) {
            Ok(n) => n,
            Err(_) => {
                return Attempt::Permanent {
                    error: format!("invalid header name {name:?}"),
                };
            }
        };
        let Ok(value) = reqwest::header::HeaderValue::from_str(&value) else {
            // The value may be a secret: name the header only.
            return Attempt::Permanent {
                error: format!("invalid value for header {name}"),
            };
        };
        request = request.header(name, value);
    }
    let deadline = tokio::time::Instant::now() + receiver.timeout;
    let response = match tokio::time::timeout_at(deadline, request.body(bytes).send()).await {
        Err(_) => {
            return Attempt::Transient {
                error: format!("no response within {:?}", receiver.timeout),
                retry_after: None,
            };
        }
        Ok(Err(e)) => {
            return Attempt::Transient {
                error: error_chain(e),
                retry_after: None,
            };
        }
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, Utc::now()));
    // Read (and drop) the rest of the response, bounded, so the connection
    // can be reused; its content does not change the verdict.
    let _ = tokio::time::timeout_at(deadline, drain(response)).await;
    classify(status.as_u16(), retry_after)
}

/// Reads at most [`MAX_RESPONSE_BODY`] bytes of a response body.
async fn drain(mut response: reqwest::Response) {
    let mut read = 0;
    while let Ok(Some(chunk)) = response.chunk().await {
        read += chunk.len();
        if read >= MAX_RESPONSE_BODY {
            break;
        }
    }
}

/// The verdict for an HTTP status: 2xx delivered; 408, 429 and 5xx
/// transient; anything else (other 4xx, and 3xx since redirects are not
/// followed) permanent.
pub fn classify(status: u16, retry_after: Option<Duration>) -> Attempt {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" {r}"))
        .unwrap_or_default();
    match status {
        200..=299 => Attempt::Delivered,
        408 | 429 | 500..=599 => Attempt::Transient {
            error: format!("HTTP {status}{reason}"),
            retry_after,
        },
        _ => Attempt::Permanent {
            error: format!("HTTP {status}{reason}"),
        },
    }
}

/// A `Retry-After` value: delay-seconds or an HTTP-date (a date in the past
/// means no wait). `None` when it is neither.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) is an RFC 2822 date.
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// A request error as text, with its causes, without the URL (it may
/// carry a token).
fn error_chain(e: reqwest::Error) -> String {
    crate::net::describe(&e.without_url())
}

/// The registry's line for the receivers that POST over HTTP.
pub const RECEIVER: ReceiverEntry = ReceiverEntry {
    types: &["webhook", "slack", "pagerduty", "alertmanager"],
    keys: &[
        "url",
        "headers",
        "hmac_secret",
        "template",
        "content_type",
        "routing_key",
        "timeout",
    ],
    build,
};

/// PagerDuty's Events API v2, where a `pagerduty` receiver without `url`
/// sends.
const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// Checks a `webhook`, `slack`, `pagerduty` or `alertmanager` table into
/// the receiver that delivers it.
fn build(
    c: &mut Checker<'_>,
    input: &ReceiverInput<'_>,
    raw: RawReceiver,
) -> Option<SharedReceiver> {
    let path = input.path;
    input.report_misplaced(c, |key, owners| {
        format!("`{key}` applies to {} receivers only", owners.join(", "))
    });
    let default_url = (input.type_name == "pagerduty").then_some(PAGERDUTY_URL);
    let url_text = match raw.url.as_deref().or(default_url) {
        Some(u) => c.expand(&format!("{path}.url"), u)?,
        None => {
            c.diags.push(
                c.doc
                    .error_at_key(path, "missing required key `url`".to_owned()),
            );
            return None;
        }
    };
    let mut url = match url::Url::parse(&url_text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u,
        _ => {
            // Never echo the value: it may hold a secret token.
            c.err(&format!("{path}.url"), "expected an http(s) URL");
            return None;
        }
    };
    let mut preset = match input.type_name {
        "slack" => Preset::Slack,
        "alertmanager" => Preset::Alertmanager,
        "pagerduty" => match raw.routing_key.as_deref() {
            Some(k) => Preset::PagerDuty {
                routing_key: c.expand(&format!("{path}.routing_key"), k)?,
            },
            None => {
                c.diags.push(c.doc.error_at_key(
                    path,
                    "missing required key `routing_key` for a pagerduty receiver".to_owned(),
                ));
                return None;
            }
        },
        _ => Preset::Generic,
    };
    if raw.routing_key.is_some() && !matches!(preset, Preset::PagerDuty { .. }) {
        c.err(
            &format!("{path}.routing_key"),
            "`routing_key` applies to pagerduty receivers only",
        );
    }
    let mut headers = Vec::new();
    for (k, v) in raw.headers {
        if let Some(v) = c.expand(&format!("{path}.headers.{k}"), &v) {
            headers.push((k, v));
        }
    }
    let hmac_secret = match raw.hmac_secret {
        Some(s) => Some(c.expand(&format!("{path}.hmac_secret"), &s)?),
        None => None,
    };
    let timeout = c.duration(
        &format!("{path}.timeout"),
        raw.timeout.as_deref(),
        DEFAULT_RECEIVER_TIMEOUT,
    );
    match (&preset, raw.template) {
        (_, None) => {
            if raw.content_type.is_some() {
                c.err(
                    &format!("{path}.content_type"),
                    "`content_type` goes with `template`",
                );
            }
        }
        (Preset::Generic, Some(source)) => {
            if let Err(e) = minijinja::Environment::new().template_from_str(&source) {
                c.err(
                    &format!("{path}.template"),
                    format!("invalid body template: {e}"),
                );
            }
            let content_type = raw.content_type.unwrap_or_else(|| CONTENT_TYPE.to_owned());
            preset = Preset::Template {
                source,
                content_type,
            };
        }
        (_, Some(_)) => {
            c.err(
                &format!("{path}.template"),
                "`template` applies to webhook receivers only",
            );
        }
    }
    // A bare Alertmanager address gets the v2 alerts path.
    if preset == Preset::Alertmanager && (url.path() == "/" || url.path().is_empty()) {
        url.set_path("/api/v2/alerts");
    }
    Some(std::sync::Arc::new(WebhookReceiver {
        name: input.name.to_owned(),
        url,
        preset,
        headers,
        hmac_secret,
        timeout,
    }))
}

impl Receiver for WebhookReceiver {
    fn name(&self) -> &str {
        &self.name
    }

    fn one_request_per_notification(&self) -> bool {
        self.preset.one_request_per_notification()
    }

    fn expires_alerts(&self) -> bool {
        self.preset == Preset::Alertmanager
    }

    fn deliver<'a>(
        &'a self,
        client: &'a reqwest::Client,
        batch: &'a [Notification],
        idempotency_key: &'a str,
    ) -> SendFuture<'a> {
        Box::pin(send(client, self, batch, idempotency_key))
    }
}

impl From<WebhookReceiver> for SharedReceiver {
    fn from(r: WebhookReceiver) -> SharedReceiver {
        std::sync::Arc::new(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver(preset: Preset) -> WebhookReceiver {
        WebhookReceiver {
            name: "ops".into(),
            url: url::Url::parse("https://hooks.example/secret-path")
                .unwrap_or_else(|e| panic!("{e}")),
            preset,
            headers: vec![
                ("Authorization".into(), "Bearer s3cret-token".into()),
                ("idempotency-key".into(), "mine".into()),
            ],
            hmac_secret: Some("hmac-s3cret".into()),
            timeout: Duration::from_secs(5),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .unwrap_or_else(|e| panic!("{e}"))
            .with_timezone(&Utc)
    }

    fn notification(notice: Notice) -> Notification {
        Notification {
            fingerprint: super::super::fingerprint("api", "prod", AlertKind::Failing),
            notice,
            kind: AlertKind::Failing,
            probe: "api".into(),
            environment: "prod".into(),
            severity: Severity::Critical,
            labels: BTreeMap::from([("team".into(), "core".into())]),
            tags: vec!["edge".into()],
            starts_at: at("2025-01-02T03:04:05Z"),
            ends_at: (notice == Notice::Resolve).then(|| at("2025-01-02T03:14:05Z")),
            expires_at: None,
            at: at("2025-01-02T03:14:05Z"),
            sequence: 0,
            summary: "api @ prod failing: 3 of 3 runs <failed>".into(),
            reason: Some("status".into()),
            error: None,
            failed_checks: vec![],
            thresholds: vec![],
            run_id: "run-1".into(),
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
        }
    }

    fn json_of(receiver: &WebhookReceiver, batch: &[Notification]) -> Value {
        let (ct, bytes) = body(receiver, batch).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ct, "application/json");
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn generic_status_is_resolved_only_when_all_resolved() {
        let r = receiver(Preset::Generic);
        let both = [notification(Notice::Trigger), notification(Notice::Resolve)];
        assert_eq!(json_of(&r, &both)["status"], "firing");
        assert_eq!(
            json_of(&r, &[notification(Notice::Resolve)])["status"],
            "resolved"
        );
        assert_eq!(json_of(&r, &both)["version"], "1");
        assert!(body(&r, &[]).is_err());
    }

    #[test]
    fn pagerduty_takes_one_notification_and_resolves_by_fingerprint() {
        let r = receiver(Preset::PagerDuty {
            routing_key: "R0UTING".into(),
        });
        let two = [notification(Notice::Trigger), notification(Notice::Repeat)];
        assert!(body(&r, &two).is_err());
        let trigger = json_of(&r, &two[..1]);
        let repeat = json_of(&r, &two[1..]);
        let resolve = json_of(&r, &[notification(Notice::Resolve)]);
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(repeat["event_action"], "trigger");
        assert_eq!(resolve["event_action"], "resolve");
        assert_eq!(trigger["dedup_key"], resolve["dedup_key"]);
        assert_eq!(trigger["payload"]["source"], "synthmon/prod");
        assert_eq!(trigger["payload"]["severity"], "critical");
    }

    #[test]
    fn slack_escapes_and_caps_blocks() {
        let r = receiver(Preset::Slack);
        let batch: Vec<_> = (0..60).map(|_| notification(Notice::Trigger)).collect();
        let v = json_of(&r, &batch);
        let blocks = v["blocks"].as_array().unwrap_or_else(|| panic!("{v}"));
        assert_eq!(blocks.len(), 50);
        assert!(
            blocks[0]["text"]["text"]
                .as_str()
                .is_some_and(|t| t.contains("&lt;failed&gt;"))
        );
        assert_eq!(blocks[49]["elements"][0]["text"], "… and 11 more");
    }

    #[test]
    fn alertmanager_labels_are_valid_and_ours_win() {
        let r = receiver(Preset::Alertmanager);
        let mut n = notification(Notice::Resolve);
        n.labels.insert("app.kubernetes.io/name".into(), "x".into());
        n.labels.insert("probe".into(), "spoofed".into());
        n.labels.insert("empty".into(), String::new());
        let v = json_of(&r, &[n]);
        let labels = &v[0]["labels"];
        assert_eq!(labels["alertname"], "SynthmonProbeFailing");
        assert_eq!(labels["probe"], "api");
        assert_eq!(labels["app_kubernetes_io_name"], "x");
        assert!(labels.get("empty").is_none());
        assert_eq!(v[0]["endsAt"], "2025-01-02T03:14:05.000Z");
        let firing = json_of(&r, &[notification(Notice::Trigger)]);
        assert!(firing[0].get("endsAt").is_none());
        assert_eq!(label_name("9lives"), "_9lives");
    }

    #[test]
    #[allow(clippy::expect_used, clippy::unwrap_used)]
    fn a_template_renders_the_generic_document() {
        let r = receiver(Preset::Template {
            source:
                r#"{"text": "{{ status }}: {{ alerts[0].summary }}", "n": {{ alerts | length }}}"#
                    .into(),
            content_type: "application/json".into(),
        });
        let (ct, bytes) = body(&r, &[notification(Notice::Trigger)]).expect("renders");
        assert_eq!(ct, "application/json");
        let v: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["n"], 1);
        assert!(
            v["text"]
                .as_str()
                .unwrap()
                .starts_with("firing: api @ prod"),
            "{v}"
        );
        let bad = receiver(Preset::Template {
            source: "{{ alerts[0].nope }}".into(),
            content_type: "text/plain".into(),
        });
        let err = body(&bad, &[notification(Notice::Trigger)]).expect_err("undefined field");
        assert!(err.contains("cannot render the body template"), "{err}");
    }

    #[test]
    fn alertmanager_firing_alerts_carry_their_expiry() {
        let r = receiver(Preset::Alertmanager);
        let mut n = notification(Notice::Repeat);
        n.expires_at = Some(at("2025-01-02T15:14:05Z"));
        let v = json_of(&r, &[n]);
        assert_eq!(v[0]["endsAt"], "2025-01-02T15:14:05.000Z");
    }

    #[test]
    fn headers_sign_the_body_and_keep_reserved_names() {
        let r = receiver(Preset::Generic);
        let now = at("2025-01-02T03:14:05Z");
        let h = headers(&r, "key-1", b"{}", now);
        let get = |name: &str| {
            h.iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("idempotency-key"), ["key-1"]);
        assert_eq!(get("authorization"), ["Bearer s3cret-token"]);
        assert_eq!(get("x-synthmon-timestamp"), ["1735787645"]);
        // RFC 4231-style check against an independently computed value.
        assert_eq!(
            get("x-synthmon-signature"),
            [format!("sha256={}", sign(b"hmac-s3cret", b"{}"))]
        );
        assert_eq!(
            sign(b"key", b"The quick brown fox jumps over the lazy dog"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        let unsigned = WebhookReceiver {
            hmac_secret: None,
            ..r
        };
        assert_eq!(headers(&unsigned, "k", b"{}", now).len(), 2);
    }

    #[test]
    fn debug_output_hides_secrets() {
        let r = receiver(Preset::PagerDuty {
            routing_key: "R0UTING".into(),
        });
        let text = format!("{r:?}");
        for secret in ["R0UTING", "s3cret", "secret-path", "hmac-s3cret"] {
            assert!(!text.contains(secret), "{text}");
        }
    }

    #[test]
    fn statuses_are_classified() {
        assert!(matches!(classify(204, None), Attempt::Delivered));
        for transient in [408, 429, 500, 502, 503, 599] {
            assert!(
                matches!(classify(transient, None), Attempt::Transient { .. }),
                "{transient}"
            );
        }
        for permanent in [301, 400, 401, 404, 410, 422] {
            assert!(
                matches!(classify(permanent, None), Attempt::Permanent { .. }),
                "{permanent}"
            );
        }
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = at("2015-10-21T07:28:00Z");
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }
}
