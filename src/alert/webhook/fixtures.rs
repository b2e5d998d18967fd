//! What the webhook tests share: a receiver with secrets in every place
//! one can hide, a notification, and a time.

use super::spec::{Preset, WebhookReceiver};
use crate::alert::{AlertKind, Notice, Notification};
use crate::config::Severity;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::time::Duration;

pub(super) fn receiver(preset: Preset) -> WebhookReceiver {
    WebhookReceiver {
        name: "ops".into(),
        url: url::Url::parse("https://hooks.example/secret-path").unwrap_or_else(|e| panic!("{e}")),
        preset,
        headers: vec![
            ("Authorization".into(), "Bearer s3cret-token".into()),
            ("idempotency-key".into(), "mine".into()),
        ],
        hmac_secret: Some("hmac-s3cret".into()),
        timeout: Duration::from_secs(5),
    }
}

pub(super) fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_timezone(&Utc)
}

pub(super) fn notification(notice: Notice) -> Notification {
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
        artifact_url: None,
    }
}
