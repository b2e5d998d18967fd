//! Configuration files: the low layer that reads and checks them, knowing
//! no probe kind and no receiver.
//!
//! Loading is two-stage. [`raw`] holds serde types that mirror the files
//! (`deny_unknown_fields`); [`check::Checker`] turns them into the checked
//! types below (parsed URLs, durations, compiled expressions, resolved
//! secrets) and collects every error with its file, line and column before
//! failing. [`load`] reads `config.toml` and its layers into [`Settings`];
//! probe kinds build their own tables through the same checker, and the
//! assembly (`crate::plan`) ties it all into the runtime plan. This module
//! reads files and environment variables; it does no other I/O and starts
//! nothing.

pub mod check;
pub mod load;
pub mod maintenance;
pub mod raw;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::diag::{Diagnostic, Diagnostics};
pub use crate::net::tls::TlsOptions;
pub use load::{
    CONFIG_SEARCH, DEFAULT_DRAIN_TIMEOUT, DEFAULT_GROUP_WAIT, DEFAULT_INTERVAL, DEFAULT_LISTEN,
    DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONCURRENT_RUNS, DEFAULT_MAX_REDIRECTS,
    DEFAULT_OTLP_TIMEOUT, DEFAULT_PROBE_GLOB, DEFAULT_RECEIVER_TIMEOUT, DEFAULT_SPAN_QUEUE,
    DEFAULT_TIMEOUT, ENV_PREFIX, LoadOptions, Loaded, MAX_BODY_BYTES_LIMIT, load_settings,
};

/// The daemon's own settings from `config.toml` (all but alerting).
#[derive(Debug)]
pub struct Settings {
    pub daemon: DaemonConfig,
    pub tagging: Tagging,
    pub environments: BTreeMap<String, Environment>,
    pub telemetry: TelemetryConfig,
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
    pub history: HistoryConfig,
    /// `[daemon] public_url`: where people reach this daemon, without a
    /// trailing `/` (`https://synthmon.example.com`); links in alerts are
    /// absolute under it, relative (`/api/v1/…`) without it.
    pub public_url: Option<String>,
    /// `[daemon.artifacts]`: the failure artifacts kept in the state
    /// directory.
    pub artifacts: ArtifactsConfig,
    /// `[daemon] token`: when set, the listener serves `/`, `/api/` and
    /// `/metrics` only to requests with `Authorization: Bearer TOKEN`
    /// (`/healthz` and `/readyz` stay open for probes and orchestrators).
    pub token: Option<crate::secret::Secret<String>>,
    /// The errors of the token's secret references, set aside like an
    /// environment's: reported by the assembly for the daemon and `check`,
    /// not for `--once`, which serves nothing.
    pub token_unresolved: Vec<Diagnostic>,
    /// `[[maintenance]]` (a top-level array in the file, kept here because
    /// only the daemon acts on it): windows that hold alerts.
    pub maintenance: Vec<crate::hold::Maintenance>,
    /// `[daemon] self_check`: `None` when no target is configured (the
    /// feature is off).
    pub self_check: Option<SelfCheck>,
}

/// `[daemon] self_check`: while every target fails, the monitor takes
/// itself to be offline (its own network is down) rather than every
/// probe's target.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfCheck {
    pub targets: Vec<SelfCheckTarget>,
    /// How often every target is tried.
    pub every: Duration,
    /// Each try's deadline (connect, or the whole GET).
    pub timeout: Duration,
}

/// One self-check target.
#[derive(Debug, Clone, PartialEq)]
pub enum SelfCheckTarget {
    /// `host:port`: a TCP connect.
    Tcp(String),
    /// `http://…` or `https://…`: a GET whose answer (any status) proves
    /// the network works.
    Http(url::Url),
}

impl std::fmt::Display for SelfCheckTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SelfCheckTarget::Tcp(a) => f.write_str(a),
            SelfCheckTarget::Http(u) => f.write_str(u.as_str()),
        }
    }
}

/// `[daemon.history]`: whether the daemon keeps a run history in its state
/// directory, and for how long each kind of record is kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistoryConfig {
    pub enabled: bool,
    /// Every run's row (default 7 days).
    pub keep_runs: Duration,
    /// Per-minute counts and latency snapshots (default 48 hours).
    pub keep_minutes: Duration,
    /// Per-hour roll-ups and state changes (default 400 days).
    pub keep_hours: Duration,
}

impl Default for HistoryConfig {
    fn default() -> HistoryConfig {
        const DAY: u64 = 86_400;
        HistoryConfig {
            enabled: true,
            keep_runs: Duration::from_secs(7 * DAY),
            keep_minutes: Duration::from_secs(2 * DAY),
            keep_hours: Duration::from_secs(400 * DAY),
        }
    }
}

/// `[daemon.artifacts]`: whether the daemon keeps a failed run's artifact
/// (its redacted outcome, exchange and flow steps) in
/// `STATE_DIR/artifacts`, and how many per (probe, environment), the
/// oldest dropped first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArtifactsConfig {
    pub enabled: bool,
    /// Files kept per pair (default 20).
    pub keep: usize,
    /// Bytes kept per pair (default 2 MiB); the newest file stays anyway.
    pub max_bytes: u64,
}

impl Default for ArtifactsConfig {
    fn default() -> ArtifactsConfig {
        ArtifactsConfig {
            enabled: true,
            keep: 20,
            max_bytes: 2 * 1024 * 1024,
        }
    }
}

/// When a probe's alerts fire and resolve: the state machine's own rules
/// (defaults: fire after 3 bad runs, resolve after 2 good ones, repeat
/// every 4 h, degraded alerts on), plus the probes it depends on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertPolicy {
    pub rules: Rules,
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

pub use crate::tagging::Tagging;

/// A named target: where probes go and what they carry there.
#[derive(Debug, Clone)]
pub struct Environment {
    pub name: String,
    pub base_url: BaseUrl,
    /// Headers added to every request to this environment (may hold secrets).
    pub headers: Vec<(http::HeaderName, String)>,
    pub variables: BTreeMap<String, String>,
    pub tls: TlsOptions,
    /// The TLS client settings built from `tls` at load, when its files
    /// were checked. A run takes the config from
    /// `net::tls::current(&tls)` instead, which is the same one until a
    /// file changes on disk, and then the one built from the new files.
    pub tls_client: std::sync::Arc<rustls::ClientConfig>,
    /// The HTTP proxy its connections tunnel through (`proxy`, `env`'s
    /// `HTTPS_PROXY`…); `None`: direct.
    pub proxy: Option<std::sync::Arc<crate::net::proxy::Proxy>>,
    pub labels: BTreeMap<String, String>,
    /// `oauth2 = { … }`: requests here carry a bearer token from its token
    /// endpoint, unless the probe sets its own Authorization header.
    pub oauth2: Option<std::sync::Arc<crate::net::oauth2::OAuth2>>,
    /// The errors of the secret references that could not be resolved
    /// (the values are left out): reported by the assembly when a probe
    /// that runs here is used, and always by the daemon and `check`.
    pub unresolved: Vec<Diagnostic>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BaseUrl {
    Url(url::Url),
    /// `builtin:sandbox`: synthmon's own in-process target, started on a
    /// loopback port when first needed.
    Sandbox,
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

/// When an alert starts firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FireRule {
    /// The last `n` runs counted.
    Consecutive(u32),
    /// At least `m` of the last `k` runs counted.
    MOfK { m: u32, k: u32 },
}

/// How a pair's runs become alerts.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rules {
    /// When failing (over bad runs) and degraded (over non-good runs) fire.
    pub fire: FireRule,
    /// Consecutive good runs that resolve an alert (non-bad runs, to step a
    /// failing pair down to degraded).
    pub resolve_after: u32,
    /// How often a firing alert is repeated; `None` never repeats.
    pub repeat_interval: Option<Duration>,
    /// Whether the degraded state has its own alert (kind `Degraded`).
    pub notify_degraded: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            fire: FireRule::Consecutive(3),
            resolve_after: 2,
            repeat_interval: Some(Duration::from_secs(4 * 3600)),
            notify_degraded: true,
        }
    }
}
