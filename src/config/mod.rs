//! Configuration: the daemon config file, environments and probe files.
//!
//! Loading is two-stage. [`raw`] holds serde types that mirror the files
//! (`deny_unknown_fields`); [`build`] turns them into the checked runtime
//! types below (parsed URLs, durations, compiled expressions, resolved
//! secrets) and collects every error with its file, line and column before
//! failing. This module reads files and environment variables; it does no
//! other I/O and starts nothing.

pub mod build;
pub mod diag;
pub mod raw;
pub mod secret;

use crate::probe::ProbeKind;
use secret::Redactor;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use build::{LoadOptions, load};
pub use diag::{Diagnostic, Diagnostics};

/// The whole checked configuration: daemon settings, environments, probes.
#[derive(Debug)]
pub struct Config {
    /// The config file this was loaded from, if any (the embedded default
    /// has none).
    pub file: Option<PathBuf>,
    pub daemon: DaemonConfig,
    pub tagging: Tagging,
    pub environments: BTreeMap<String, Environment>,
    pub probes: Vec<Probe>,
    pub telemetry: TelemetryConfig,
    pub alerting: AlertingConfig,
    /// Every secret value the config resolved, so that output can be
    /// scrubbed of them.
    pub redactor: Redactor,
}

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub listen: SocketAddr,
    pub state_dir: Option<PathBuf>,
    /// Probe file globs, already made absolute against the config file's
    /// directory.
    pub probe_globs: Vec<String>,
    pub instance: String,
    pub location: String,
    pub drain_timeout: Duration,
    /// At most this many runs in flight at once, so slow targets cannot
    /// starve the rest.
    pub max_concurrent_runs: usize,
}

/// `[alerting]`, checked: every receiver a route names exists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertingConfig {
    pub group_wait: Duration,
    pub receivers: BTreeMap<String, ReceiverConfig>,
    pub routes: Vec<crate::alert::route::Route>,
    pub default_receivers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReceiverKind {
    Webhook,
    Slack,
    PagerDuty { routing_key: String },
    Alertmanager,
    Email(EmailSettings),
}

/// How an email receiver secures its SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS; fails if the server does
    /// not offer it.
    StartTls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Implicit,
    /// No TLS at all: loopback servers only.
    None,
}

/// A checked email receiver. The password (and user name) may be secrets:
/// `Debug` never shows the password.
#[derive(Clone, PartialEq)]
pub struct EmailSettings {
    pub smtp_host: String,
    pub smtp_port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<String>,
    /// A mailbox: `ops@example.com` or `Synthmon <ops@example.com>`.
    pub from: String,
    /// At least one mailbox.
    pub to: Vec<String>,
    /// Extra trust anchors (PEM) added to the system roots.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for EmailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSettings")
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("tls", &self.tls)
            .field("username", &self.username.as_ref().map(|_| "<set>"))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .field("to", &self.to)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// A checked receiver. Header values, the HMAC secret and the routing key
/// may be secrets: never log them.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverConfig {
    pub name: String,
    pub kind: ReceiverKind,
    /// Where to deliver; for email receivers `smtp://host:port`, for
    /// display only (the settings are in [`ReceiverKind::Email`]).
    pub url: url::Url,
    pub headers: Vec<(String, String)>,
    pub hmac_secret: Option<String>,
    pub timeout: Duration,
    /// A webhook's body template and its content type, checked at load.
    pub template: Option<(String, String)>,
}

/// When a probe's alerts fire and resolve: the state machine's own rules
/// (defaults: fire after 3 bad runs, resolve after 2 good ones, repeat
/// every 4 h, degraded alerts on), plus the probes it depends on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertPolicy {
    pub rules: crate::alert::state::Rules,
    pub depends_on: Vec<String>,
}

/// OTLP trace export settings from `[telemetry]`; `OTEL_*` variables are
/// applied on top by the exporter (config file values win).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TelemetryConfig {
    pub otlp_endpoint: Option<String>,
    pub otlp_protocol: OtlpProtocol,
    /// Header values may hold secrets; never log them.
    pub otlp_headers: Vec<(String, String)>,
    pub otlp_timeout: Duration,
    pub queue_size: usize,
    pub service_name: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OtlpProtocol {
    #[default]
    Grpc,
    HttpProtobuf,
}

/// How synthetic requests are marked so production can recognise them.
#[derive(Debug, Clone)]
pub struct Tagging {
    pub header: http::HeaderName,
    pub value: http::HeaderValue,
    pub user_agent: http::HeaderValue,
}

/// A named target: where probes go and what they carry there.
#[derive(Debug, Clone)]
pub struct Environment {
    pub name: String,
    pub base_url: BaseUrl,
    /// Headers added to every request to this environment (may hold secrets).
    pub headers: Vec<(http::HeaderName, String)>,
    pub variables: BTreeMap<String, String>,
    pub tls: TlsOptions,
    /// The TLS client settings built from `tls` at load (files read once).
    pub tls_client: std::sync::Arc<rustls::ClientConfig>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BaseUrl {
    Url(url::Url),
    /// `builtin:sandbox`: synthmon's own in-process target, started on a
    /// loopback port when first needed.
    Sandbox,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsOptions {
    /// Extra trust anchors (PEM) added to the system roots.
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Skip certificate verification. Logged loudly at load.
    pub insecure_skip_verify: bool,
    /// Name to verify and send as SNI instead of the URL's host.
    pub server_name: Option<String>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// When a probe runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Every(Duration),
    Cron {
        expression: String,
        timezone: String,
    },
}

/// One checked probe definition.
#[derive(Debug)]
pub struct Probe {
    pub name: String,
    /// The file it came from, for messages.
    pub file: PathBuf,
    pub schedule: Schedule,
    pub environments: Vec<String>,
    /// One deadline for a whole run.
    pub timeout: Duration,
    pub tags: Vec<String>,
    pub severity: Severity,
    pub labels: BTreeMap<String, String>,
    pub thresholds: Vec<crate::threshold::Threshold>,
    pub alert: AlertPolicy,
    /// Seeds the probe's generators: the same seed gives the same payloads
    /// byte for byte. `--seed` overrides it.
    pub seed: Option<u64>,
    /// The synthetic marker generated ids carry (`synth-` by default).
    pub marker: String,
    /// Sends the request at an arrival rate instead of once (http only).
    pub workload: Option<crate::probe::workload::Workload>,
    pub kind: ProbeKind,
}
