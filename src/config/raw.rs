//! Serde types that mirror the files as written.
//!
//! Every table denies unknown keys. Keys the user must write are still
//! `Option` here: serde would stop at the first missing one, while the build
//! step reports them all, each located at its table.

use crate::config::Severity;
use serde::{Deserialize, Deserializer};
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
    /// `[[maintenance]]`: planned windows that hold alerts.
    #[serde(default)]
    pub maintenance: Vec<RawMaintenance>,
}

/// One `[[maintenance]]` window as written: a schedule (`cron` +
/// `duration` [+ `timezone`], or `from` + `until`), matchers and an
/// action.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaintenance {
    pub name: Option<String>,
    pub cron: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub duration: Option<String>,
    pub timezone: Option<String>,
    pub from: Option<String>,
    pub until: Option<String>,
    #[serde(default)]
    pub probes: Vec<String>,
    #[serde(default)]
    pub environments: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `hold` (default) or `skip`.
    pub action: Option<String>,
}

/// `[daemon] self_check = { targets = [...], every = "30s" }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSelfCheck {
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default, deserialize_with = "duration")]
    pub every: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<String>,
}

/// `[alerting]`: receivers, routes, and how notifications are grouped.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerting {
    /// Notifications produced within this window go out as one batch per
    /// receiver.
    #[serde(default, deserialize_with = "duration")]
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
    #[serde(default, deserialize_with = "duration")]
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
    #[serde(default, deserialize_with = "duration")]
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
    #[serde(default, deserialize_with = "duration")]
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
    #[serde(default, deserialize_with = "duration")]
    pub drain_timeout: Option<String>,
    /// At most this many runs in flight at once, across all probes.
    pub max_concurrent_runs: Option<usize>,
    /// The bearer token `/`, `/api/` and `/metrics` ask for; a secret
    /// (`${env:…}` or `${file:…}`, or written in clear).
    pub token: Option<String>,
    /// `[daemon.history]`: the run history and how long it is kept.
    #[serde(default)]
    pub history: RawHistory,
    /// Where people reach this daemon (`https://synthmon.example.com`),
    /// for absolute links in alerts; relative links without it.
    pub public_url: Option<String>,
    /// `[daemon.artifacts]`: failure artifacts and how many are kept.
    #[serde(default)]
    pub artifacts: RawArtifacts,
    /// The connectivity self-check: targets that tell "the monitor is
    /// offline" from "every target is down".
    pub self_check: Option<RawSelfCheck>,
}

/// `[daemon.artifacts]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArtifacts {
    pub enabled: Option<bool>,
    /// Files kept per (probe, environment).
    pub keep: Option<usize>,
    /// Bytes kept per (probe, environment): a size like "2 MiB".
    pub max_size: Option<RawSize>,
}

/// `[daemon.history]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHistory {
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "duration")]
    pub keep_runs: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub keep_minutes: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub keep_hours: Option<String>,
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
    /// Sent with every request to this environment, as its `headers` are.
    pub basic_auth: Option<RawBasicAuth>,
    /// `Authorization: Bearer …` on every request to this environment.
    pub bearer_token: Option<String>,
    /// OAuth2 client credentials: every request to this environment
    /// carries a bearer token from the token endpoint.
    pub oauth2: Option<RawOAuth2>,
    /// `http://host:port` (credentials may be in it, as secrets), `env`
    /// (`HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`) or `none`: the HTTP proxy
    /// connections of this environment tunnel through.
    pub proxy: Option<String>,
    /// `{ user = "…", password = "${env:…}" }`: the proxy's credentials.
    pub proxy_auth: Option<RawBasicAuth>,
    /// Hosts reached without the proxy: names, `.domains`, IPs, networks.
    pub no_proxy: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca_file: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub insecure_skip_verify: Option<bool>,
    pub server_name: Option<String>,
    /// `"1.2"` (default) or `"1.3"`; a TOML number is taken in too.
    #[serde(default, deserialize_with = "version")]
    pub min_version: Option<String>,
}

/// A version as written: text (`"1.3"`) or a TOML number (`1.3`), read as
/// its text so that the checker says what is expected either way.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a TLS version like \"1.3\"")]
enum RawVersion {
    Text(String),
    Integer(i64),
    Float(f64),
}

/// Reads an optional version key as its text (see [`RawVersion`]).
pub fn version<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(
        Option::<RawVersion>::deserialize(deserializer)?.map(|v| match v {
            RawVersion::Text(text) => text,
            RawVersion::Integer(n) => n.to_string(),
            RawVersion::Float(x) => format!("{x:?}"),
        }),
    )
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
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub severity: Option<Severity>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// SLA thresholds: `"p(99) < 500ms"`, or a table with a degraded level.
    #[serde(default)]
    pub thresholds: Vec<RawThreshold>,
    /// The latency histogram's bucket boundaries: `["50ms", "100ms"]`.
    #[serde(default, deserialize_with = "durations")]
    pub buckets: Option<Vec<String>>,
    /// When this probe's alerts fire and resolve.
    pub alert: Option<RawAlert>,
    /// Seeds the generators (`--seed` overrides it).
    pub seed: Option<u64>,
    /// The prefix of generated synthetic ids (default `synth-`).
    pub marker: Option<String>,
    /// `slo = { objective = "99.9%", window = "30d", sli = "availability" }`.
    pub slo: Option<RawSlo>,
    /// `baseline = { metric = "p95", window = "7d", tolerance = "20%" }`.
    pub baseline: Option<RawBaseline>,
    /// `keep = { last_seq = "json.seq" }`: values a run hands to the next
    /// one, read there as `prev.NAME`.
    #[serde(default)]
    pub keep: BTreeMap<String, String>,
    // The kind's table (`[http]`, `[tcp]`, …) and `[workload]` are read
    // by their owners (probe::KINDS, probe::workload), not here.
}

/// `slo = { … }` as written; `slo::Slo` once checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlo {
    /// `"99.9%"`: the `%` is required (a number is taken in to be told so).
    #[serde(default, deserialize_with = "percent")]
    pub objective: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub window: Option<String>,
    /// `availability` (default) or `latency`.
    pub sli: Option<String>,
    /// The latency SLI's limit: a run is good when it passed within it.
    #[serde(default, deserialize_with = "duration")]
    pub threshold: Option<String>,
    /// Burn-rate alert rules; unset means the SRE workbook's three,
    /// `[]` means none.
    pub alerts: Option<Vec<RawBurnRule>>,
}

/// One entry of `slo.alerts`:
/// `{ burn = 14.4, long = "1h", short = "5m", severity = "page" }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBurnRule {
    pub burn: Option<f64>,
    #[serde(default, deserialize_with = "duration")]
    pub long: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub short: Option<String>,
    /// `page` or `ticket`.
    pub severity: Option<String>,
}

/// `baseline = { … }` as written; `slo::Baseline` once checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBaseline {
    /// `p50`, `p95`, `p(99.9)`, `avg`, …
    pub metric: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub window: Option<String>,
    /// `"20%"`: the `%` is required (a number is taken in to be told so).
    #[serde(default, deserialize_with = "percent")]
    pub tolerance: Option<String>,
    pub min_samples: Option<u64>,
    /// `degraded` (default) or `failing`.
    pub level: Option<String>,
}

/// A percentage as written: text (`"99.9%"`), or a TOML number, which is
/// taken in as its digits so that the checker can ask for the `%` sign
/// (`objective = 0.999` would otherwise only hear "expected a string").
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a percentage like \"99.9%\"")]
enum RawPercent {
    Text(String),
    Integer(i64),
    Float(f64),
}

/// Reads an optional percentage key as its text (see [`RawPercent`]).
fn percent<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(
        Option::<RawPercent>::deserialize(deserializer)?.map(|p| match p {
            RawPercent::Text(text) => text,
            RawPercent::Integer(n) => n.to_string(),
            RawPercent::Float(x) => format!("{x:?}"),
        }),
    )
}

/// A size written as a number of bytes or as a string with a unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, expecting = "a number of bytes or a size like \"4 MiB\"")]
pub enum RawSize {
    Bytes(u64),
    Text(String),
}

/// `basic_auth = { user = "…", password = "${env:…}" }` of a request
/// (an environment, `http`, flow steps and the kinds that send an HTTP
/// request of their own). Both keys are required;
/// they are `Option` so that each missing one is reported.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasicAuth {
    pub user: Option<String>,
    pub password: Option<String>,
}

/// `oauth2 = { token_url = "…", client_id = "…", client_secret =
/// "${env:…}", scopes = […], audience = "…" }` of an environment or a
/// request (where `basic_auth` is accepted): OAuth2 client credentials.
/// `token_url`, `client_id` and `client_secret` are required; they are
/// `Option` so that each missing one is reported.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth2 {
    pub token_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub audience: Option<String>,
}

/// A duration as written: text (`"5s"`, `"1m 30s"`), or a TOML number,
/// which has no unit but is taken in so that it can be told so.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a duration with a unit like \"5s\" or \"500ms\""
)]
enum RawDuration {
    Text(String),
    Integer(i64),
    Float(f64),
}

/// Reads an optional duration key as its text, for
/// `#[serde(default, deserialize_with = "crate::config::raw::duration")]`
/// on an `Option<String>` field: every key a user writes a duration in.
///
/// A number becomes its digits, so `Checker::duration` checks it exactly
/// as the same digits in quotes: `timeout = 5` is told that it needs a
/// unit ("found the number 5"), where serde alone would say only
/// "expected a string, found integer `5`", and `0` is zero as `"0"` is.
/// Environment and `--set` overrides, which the `config` crate hands over
/// as numbers when they look like one, read the same as in the file.
pub fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<RawDuration>::deserialize(deserializer)?.map(RawDuration::into_text))
}

/// [`duration`] for a list of durations (`Option<Vec<String>>`): each
/// number becomes its digits, to be told it needs a unit where it stands.
pub fn durations<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    Ok(Option::<Vec<RawDuration>>::deserialize(deserializer)?
        .map(|list| list.into_iter().map(RawDuration::into_text).collect()))
}

impl RawDuration {
    fn into_text(self) -> String {
        match self {
            RawDuration::Text(text) => text,
            RawDuration::Integer(n) => n.to_string(),
            // `{:?}` keeps the point: `5.0` rather than `5`.
            RawDuration::Float(x) => format!("{x:?}"),
        }
    }
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
    #[serde(default, deserialize_with = "duration")]
    pub window: Option<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Table {
        #[serde(default, deserialize_with = "duration")]
        d: Option<String>,
    }

    #[test]
    fn a_duration_written_as_a_number_reads_as_its_digits() {
        let read = |text: &str| toml::from_str::<Table>(text).map(|t| t.d);
        assert_eq!(read("d = \"5s\"").unwrap().as_deref(), Some("5s"));
        assert_eq!(read("d = 5").unwrap().as_deref(), Some("5"));
        assert_eq!(read("d = 2.5").unwrap().as_deref(), Some("2.5"));
        assert_eq!(read("d = 5.0").unwrap().as_deref(), Some("5.0"));
        assert_eq!(read("").unwrap(), None);
        assert_eq!(
            read("d = true").unwrap_err().message(),
            "a duration with a unit like \"5s\" or \"500ms\""
        );
        // Through the `config` crate, as overrides arrive: text, or a
        // number when they look like one.
        let layered = |value: config::Value| {
            config::Config::builder()
                .set_override("d", value)
                .unwrap()
                .build()
                .unwrap()
                .try_deserialize::<Table>()
                .unwrap()
                .d
        };
        assert_eq!(layered("5s".into()).as_deref(), Some("5s"));
        assert_eq!(layered(5_i64.into()).as_deref(), Some("5"));
    }
}
