//! The body of a request, by preset: synthmon's generic v1 document
//! (`docs/webhook-v1.schema.json`), a user's template over it, Slack,
//! PagerDuty Events API v2 and Alertmanager; the group key.

use super::spec::{Preset, WebhookReceiver};
use crate::alert::{AlertKind, FailedCheck, Notice, Notification, ThresholdBreach};
use crate::config::Severity;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The version of the generic payload this code writes.
pub const GENERIC_VERSION: &str = "1";

/// The content type of every body synthmon sends.
pub const CONTENT_TYPE: &str = "application/json";

/// Slack allows 50 blocks per message; one is kept for the "and N more"
/// line.
const SLACK_MAX_ALERT_BLOCKS: usize = 49;

/// Slack truncates a section's text at 3,000 characters.
const SLACK_MAX_SECTION: usize = 2_900;

/// PagerDuty rejects a summary longer than 1,024 characters.
const PAGERDUTY_MAX_SUMMARY: usize = 1_024;

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
    /// Added within v1; null when there is none.
    artifact_url: Option<&'a str>,
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
                artifact_url: n.artifact_url.as_deref(),
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
            let mut text = format!(
                "{head} `{}` @ `{}` · {} · {}\n{}\n{when}",
                slack_escape(&n.probe),
                slack_escape(&n.environment),
                n.kind.as_str(),
                severity_name(n.severity),
                slack_escape(&truncate(&n.summary, SLACK_MAX_SECTION)),
            );
            // A link when Slack can follow it (an absolute URL), else the path.
            match n.artifact_url.as_deref() {
                Some(url) if is_absolute(url) => {
                    text.push_str(&format!(" · <{}|failure artifact>", slack_escape(url)));
                }
                Some(path) => text.push_str(&format!(" · artifact `{}`", slack_escape(path))),
                None => {}
            }
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

/// An `http(s)://` URL, which a chat or incident tool can link to (a
/// bare API path cannot be followed from there).
fn is_absolute(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
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
    let mut event = json!({
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
    });
    if let Some(url) = &n.artifact_url {
        event["payload"]["custom_details"]["artifact_url"] = Value::String(url.clone());
        // PagerDuty's `links` take absolute URLs only.
        if is_absolute(url) {
            event["links"] = json!([{ "href": url, "text": "Failure artifact" }]);
        }
    }
    event
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
            let alertname = match n.kind {
                AlertKind::Failing => "SynthmonProbeFailing",
                AlertKind::Degraded => "SynthmonProbeDegraded",
                AlertKind::SloPage => "SynthmonProbeSloBurnPage",
                AlertKind::SloTicket => "SynthmonProbeSloBurnTicket",
                AlertKind::MonitorOffline => "SynthmonOffline",
            };
            labels.insert("alertname".into(), alertname.to_owned());
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
            if let Some(url) = &n.artifact_url {
                alert["annotations"]["artifact_url"] = Value::String(url.clone());
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::webhook::fixtures::{at, notification, receiver};
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
    fn every_preset_links_the_failure_artifact_where_its_format_can() {
        let absolute = "https://synthmon.example.com/api/v1/artifacts/api/prod/run-1";
        let mut n = notification(Notice::Trigger);
        let without = json_of(&receiver(Preset::Generic), std::slice::from_ref(&n));
        assert!(without["alerts"][0]["artifact_url"].is_null());
        n.artifact_url = Some(absolute.into());
        let generic = json_of(&receiver(Preset::Generic), std::slice::from_ref(&n));
        assert_eq!(generic["alerts"][0]["artifact_url"], absolute);
        let pd = json_of(
            &receiver(Preset::PagerDuty {
                routing_key: "R".into(),
            }),
            std::slice::from_ref(&n),
        );
        assert_eq!(pd["links"][0]["href"], absolute);
        assert_eq!(pd["payload"]["custom_details"]["artifact_url"], absolute);
        let slack = json_of(&receiver(Preset::Slack), std::slice::from_ref(&n));
        let text = slack["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(
            text.ends_with(&format!(" · <{absolute}|failure artifact>")),
            "{text}"
        );
        let am = json_of(&receiver(Preset::Alertmanager), std::slice::from_ref(&n));
        assert_eq!(am[0]["annotations"]["artifact_url"], absolute);
        // A bare path is no link PagerDuty or Slack could follow.
        n.artifact_url = Some("/api/v1/artifacts/api/prod/run-1".into());
        let pd = json_of(
            &receiver(Preset::PagerDuty {
                routing_key: "R".into(),
            }),
            std::slice::from_ref(&n),
        );
        assert!(pd.get("links").is_none(), "{pd}");
        let slack = json_of(&receiver(Preset::Slack), std::slice::from_ref(&n));
        let text = slack["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(
            text.ends_with(" · artifact `/api/v1/artifacts/api/prod/run-1`"),
            "{text}"
        );
    }
}
