//! Serde types that mirror the files as written.
//!
//! Every table denies unknown keys. Keys the user must write are still
//! `Option` here: serde would stop at the first missing one, while the build
//! step reports them all, each located at its table.

use crate::config::Severity;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `config.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub daemon: RawDaemon,
    #[serde(default)]
    pub tagging: RawTagging,
    #[serde(default)]
    pub environments: BTreeMap<String, RawEnvironment>,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    #[serde(default)]
    pub alerting: RawAlerting,
}

/// `[alerting]`: receivers, routes, and how notifications are grouped.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerting {
    /// Notifications produced within this window go out as one batch per
    /// receiver.
    pub group_wait: Option<String>,
    #[serde(default)]
    pub receivers: BTreeMap<String, RawReceiver>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// Receivers for notifications no route matched.
    #[serde(default)]
    pub default_receivers: Vec<String>,
}

/// `[alerting.receivers.NAME]`: the keys of every receiver type, so that
/// unknown keys are named against all of them. Which type reads which key
/// is its receiver file's business (`alert::receivers::RECEIVERS`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReceiver {
    /// The receiver type (`alert::receivers::RECEIVERS` lists them).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub url: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Signs bodies with HMAC-SHA256 (`X-Synthmon-Signature`).
    pub hmac_secret: Option<String>,
    /// A minijinja template over the generic v1 document (webhook only).
    pub template: Option<String>,
    /// The template's content type (default `application/json`).
    pub content_type: Option<String>,
    /// PagerDuty Events v2 integration key.
    pub routing_key: Option<String>,
    /// Bounds each delivery attempt as a whole.
    pub timeout: Option<String>,
    /// Email: the SMTP server.
    pub smtp_host: Option<String>,
    /// Email: the SMTP port (default 587).
    pub smtp_port: Option<u16>,
    /// Email: `starttls` (default), `implicit` or `none` (loopback only).
    pub tls: Option<String>,
    /// Email: SMTP AUTH user name (may use `${env:…}`/`${file:…}`).
    pub username: Option<String>,
    /// Email: SMTP AUTH password (may use `${env:…}`/`${file:…}`).
    pub password: Option<String>,
    /// Email: the sender address.
    pub from: Option<String>,
    /// Email: the recipients.
    pub to: Option<Vec<String>>,
    /// Email: extra trust anchors (PEM) for the SMTP server's certificate.
    pub ca_file: Option<String>,
}

impl RawReceiver {
    /// The keys written in this table besides `type`, in field order (an
    /// empty `headers` table counts as unwritten).
    pub fn set_keys(&self) -> Vec<&'static str> {
        [
            ("url", self.url.is_some()),
            ("headers", !self.headers.is_empty()),
            ("hmac_secret", self.hmac_secret.is_some()),
            ("template", self.template.is_some()),
            ("content_type", self.content_type.is_some()),
            ("routing_key", self.routing_key.is_some()),
            ("timeout", self.timeout.is_some()),
            ("smtp_host", self.smtp_host.is_some()),
            ("smtp_port", self.smtp_port.is_some()),
            ("tls", self.tls.is_some()),
            ("username", self.username.is_some()),
            ("password", self.password.is_some()),
            ("from", self.from.is_some()),
            ("to", self.to.is_some()),
            ("ca_file", self.ca_file.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Matches this severity and above.
    pub severity: Option<Severity>,
    #[serde(default)]
    pub environments: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub receivers: Vec<String>,
    /// Keep evaluating later routes after this one matched.
    #[serde(default, rename = "continue")]
    pub continue_: bool,
}

/// A probe's `[alert]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlert {
    /// Fire after this many consecutive bad runs.
    pub fire_after: Option<u32>,
    /// Or fire when M of the last K runs were bad: `"3 of 5"`.
    pub fire: Option<String>,
    /// Resolve after this many consecutive good runs.
    pub resolve_after: Option<u32>,
    /// Repeat while firing (`"4h"`), or `"never"`.
    pub repeat_interval: Option<String>,
    pub notify_degraded: Option<bool>,
    /// Probes (same environment) whose failure holds this probe's alerts back.
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// `[telemetry]`: where traces go. The standard `OTEL_*` variables fill
/// whatever is not set here.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// OTLP endpoint, e.g. `http://127.0.0.1:4317` (gRPC) or
    /// `http://127.0.0.1:4318` (HTTP); traces are off when neither this nor
    /// `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` is set.
    pub otlp_endpoint: Option<String>,
    /// `grpc` (default) or `http/protobuf`.
    pub otlp_protocol: Option<String>,
    /// Extra headers for the collector (may reference secrets).
    #[serde(default)]
    pub otlp_headers: BTreeMap<String, String>,
    /// Per-export timeout.
    pub otlp_timeout: Option<String>,
    /// Spans waiting for export beyond this are dropped and counted.
    pub queue_size: Option<usize>,
    pub service_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub listen: Option<String>,
    pub state_dir: Option<String>,
    /// Probe file globs, relative to the config file's directory.
    pub probes: Option<Vec<String>>,
    pub instance: Option<String>,
    pub location: Option<String>,
    pub drain_timeout: Option<String>,
    /// At most this many runs in flight at once, across all probes.
    pub max_concurrent_runs: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTagging {
    pub header: Option<String>,
    pub value: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnvironment {
    pub base_url: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca_file: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub insecure_skip_verify: Option<bool>,
    pub server_name: Option<String>,
}

/// One probe file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    pub name: Option<String>,
    pub schedule: Option<String>,
    /// IANA zone for cron schedules.
    pub timezone: Option<String>,
    pub environments: Option<Vec<String>>,
    pub timeout: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub severity: Option<Severity>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// SLA thresholds: `"p(99) < 500ms"`, or a table with a degraded level.
    #[serde(default)]
    pub thresholds: Vec<RawThreshold>,
    /// When this probe's alerts fire and resolve.
    pub alert: Option<RawAlert>,
    /// Seeds the generators (`--seed` overrides it).
    pub seed: Option<u64>,
    /// The prefix of generated synthetic ids (default `synth-`).
    pub marker: Option<String>,
    // The kind's table (`[http]`, `[tcp]`, …) and `[workload]` are read
    // by their owners (probe::KINDS, probe::workload), not here.
}

/// A size written as a number of bytes or as a string with a unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, expecting = "a number of bytes or a size like \"4 MiB\"")]
pub enum RawSize {
    Bytes(u64),
    Text(String),
}

/// A threshold: the failing condition alone, or a table.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a condition like \"p(99) < 500ms\" or a table { failing = \"…\", degraded = \"…\", window = \"5m\" }"
)]
pub enum RawThreshold {
    Short(String),
    Full(RawThresholdTable),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThresholdTable {
    pub failing: String,
    pub degraded: Option<String>,
    pub window: Option<String>,
}
