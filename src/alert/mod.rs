//! Alerting: per-pair state machines turn run outcomes into alert
//! notifications ([`state`]); notifications are written to a durable outbox
//! before anything is sent and delivered per receiver with retries
//! ([`outbox`]); receivers format them for the wire ([`webhook`] for
//! HTTP receivers, [`email`] for SMTP). Each receiver file also checks its
//! own `[alerting.receivers.NAME]` tables and builds its receiver; the
//! registry ([`receivers::RECEIVERS`]) lists the files, and the outbox
//! knows receivers only through [`deliver::Receiver`].

pub mod deliver;
pub mod email;
pub mod outbox;
pub mod receiver;
pub mod receivers;
pub mod route;
pub mod state;
pub mod webhook;

use crate::config::Severity;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which alert of a pair: each state other than `ok` is its own alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Runs fail (by the firing rule), or a threshold is failing.
    Failing,
    /// A threshold is degraded (warns; never pages by default).
    Degraded,
    /// An SLO burns its error budget at a rate that pages (critical).
    SloPage,
    /// An SLO burns its error budget at a rate that needs a ticket
    /// (warning).
    SloTicket,
    /// The monitor itself is offline: every connectivity self-check target
    /// fails (`[daemon] self_check`). One alert per instance, raised
    /// instead of the per-probe alerts it holds (critical).
    MonitorOffline,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Failing => "failing",
            AlertKind::Degraded => "degraded",
            AlertKind::SloPage => "slo_page",
            AlertKind::SloTicket => "slo_ticket",
            AlertKind::MonitorOffline => "monitor_offline",
        }
    }
}

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Notice {
    /// The alert started firing.
    Trigger,
    /// Still firing; sent every repeat interval.
    Repeat,
    /// It stopped firing; sent exactly once.
    Resolve,
}

/// One failed expectation, as an alert reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedCheck {
    pub expression: String,
    pub actual: String,
    /// `file:line:column`.
    pub location: Option<String>,
}

/// A failing or degraded threshold, as an alert reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdBreach {
    pub threshold: String,
    pub state: String,
    pub observed: Option<f64>,
    pub unit: String,
    pub window_seconds: f64,
}

/// One notification about one alert: what a receiver is told. Plain,
/// serializable data: it is stored in the outbox as is. Never holds a
/// secret (it is built from redacted outcomes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Stable per (probe, environment, kind): see [`fingerprint`].
    pub fingerprint: String,
    pub notice: Notice,
    pub kind: AlertKind,
    pub probe: String,
    pub environment: String,
    pub severity: Severity,
    /// Probe labels, then environment labels (probe wins on a clash).
    pub labels: BTreeMap<String, String>,
    pub tags: Vec<String>,
    /// When the alert started firing.
    pub starts_at: DateTime<Utc>,
    /// When it resolved (resolves only).
    pub ends_at: Option<DateTime<Utc>>,
    /// For receivers that end alerts by themselves (Alertmanager): until
    /// when this firing notification holds if nothing refreshes it — three
    /// repeat intervals after `at`. `None` for resolves, and when repeats
    /// are off.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// When this notification was produced.
    pub at: DateTime<Utc>,
    /// Counts notifications of this firing: 0 for the trigger, then 1, 2, …
    /// for repeats; the resolve takes the next number.
    pub sequence: u32,
    /// One line: what is wrong, where.
    pub summary: String,
    pub reason: Option<String>,
    pub error: Option<String>,
    pub failed_checks: Vec<FailedCheck>,
    pub thresholds: Vec<ThresholdBreach>,
    /// The last run's ids, to find it in logs and traces.
    pub run_id: String,
    pub trace_id: String,
    /// Where that run's failure artifact is (its request, response and
    /// timings): absolute under `[daemon] public_url`, else the daemon's
    /// API path; with `--once --artifacts DIR`, the file. `None` when the
    /// run passed or artifacts are off. Set after the state machine, by
    /// whoever knows where artifacts are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_url: Option<String>,
}

impl Notification {
    /// Identifies this notification across retries and restarts: the same
    /// logical notification always has the same key, so receivers (and
    /// PagerDuty) can deduplicate.
    pub fn idempotency_key(&self) -> String {
        format!(
            "{}-{}-{}-{}",
            self.fingerprint,
            self.starts_at.timestamp_millis(),
            match self.notice {
                Notice::Trigger => "trigger",
                Notice::Repeat => "repeat",
                Notice::Resolve => "resolve",
            },
            self.sequence
        )
    }
}

/// The stable identity of an alert: 16 hex digits of FNV-1a over
/// (probe, environment, kind). Stable across restarts, builds and hosts.
pub fn fingerprint(probe: &str, environment: &str, kind: AlertKind) -> String {
    let key = format!("{probe}\0{environment}\0{}", kind.as_str());
    format!("{:016x}", crate::schedule::stable_hash(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        let a = fingerprint("api", "prod", AlertKind::Failing);
        assert_eq!(a, fingerprint("api", "prod", AlertKind::Failing));
        assert_eq!(a.len(), 16);
        assert_ne!(a, fingerprint("api", "prod", AlertKind::Degraded));
        assert_ne!(a, fingerprint("api", "staging", AlertKind::Failing));
        // No ambiguity from concatenation.
        assert_ne!(
            fingerprint("ab", "c", AlertKind::Failing),
            fingerprint("a", "bc", AlertKind::Failing)
        );
    }
}
