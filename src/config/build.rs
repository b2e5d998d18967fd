//! The second loading stage: files → raw types → checked [`Config`].
//!
//! Layering follows the `config` crate: built-in defaults (serde defaults
//! and the constants below) → `config.toml` → `SYNTHMON_…` environment
//! variables → `--set key=value` flags. Each file is first read on its own
//! with locations, so every error in it is reported at once with file, line
//! and column; the layered result is then checked as a whole.

use super::diag::{self, Diagnostic, Diagnostics, SourceDoc};
use super::raw::{RawConfig, RawEnvironment, RawHttp, RawProbe, RawSize};
use super::secret::{self, Redactor};
use super::{
    AlertPolicy, AlertingConfig, BaseUrl, Config, DaemonConfig, EmailSettings, Environment,
    OtlpProtocol, Probe, ReceiverConfig, ReceiverKind, Schedule, Severity, SmtpTls, Tagging,
    TelemetryConfig, TlsOptions,
};
use crate::alert::state::FireRule;
use crate::expr::Expr;
use crate::outcome::SourceLocation;
use crate::probe::Assertion;
use crate::probe::ProbeKind;
use crate::probe::http::{self as http_probe, Body, HttpSpec};
use crate::telemetry::measure;
use crate::template::Text;
use crate::threshold::{self, Threshold, parse_condition};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
pub const DEFAULT_PROBE_GLOB: &str = "probes/*.toml";
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_REDIRECTS: u32 = 10;
pub const DEFAULT_MAX_CONCURRENT_RUNS: usize = 64;
pub const DEFAULT_SPAN_QUEUE: usize = 2048;
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(10);
pub const DEFAULT_RECEIVER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_OTLP_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;
/// The largest body cap a probe may ask for.
pub const MAX_BODY_BYTES_LIMIT: u64 = 1024 * 1024 * 1024;
/// Where the config is looked for when `--config` is not given.
pub const CONFIG_SEARCH: &[&str] = &["config.toml", "/etc/synthmon/config.toml"];
/// Environment variables with this prefix and a `__` override config keys.
pub const ENV_PREFIX: &str = "SYNTHMON";

/// How to load: which file, and the command line's overrides.
#[derive(Debug, Default, Clone)]
pub struct LoadOptions {
    pub config_path: Option<PathBuf>,
    /// `key.path=value` pairs from `--set`, applied last.
    pub overrides: Vec<(String, String)>,
}

/// Loads and checks everything: the config file, its layers and every probe
/// file its globs name. Returns every error found, not just the first.
pub fn load(opts: &LoadOptions) -> Result<Config, Diagnostics> {
    let path = find_config(opts)?;
    let display = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|e| {
        one(Diagnostic {
            file: display.clone(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read config file: {e}"),
            help: None,
        })
    })?;
    let doc = SourceDoc::parse(&display, &text).map_err(one)?;
    let mut diags = Diagnostics::default();
    // The file alone, with locations: every mistake in it at once.
    let Some(from_file) = diag::deserialize_collecting::<RawConfig>(&doc, &mut diags) else {
        return Err(diags);
    };
    // With errors in the file, the layers would only repeat them; check
    // what remains of the file instead, so the build step and the probe
    // files still report theirs in the same run.
    let raw = if diags.is_empty() {
        layered(&text, &display, &opts.overrides)?
    } else {
        from_file
    };
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut redactor = Redactor::default();
    let mut builder = Checker {
        doc: &doc,
        diags: &mut diags,
        redactor: &mut redactor,
        base_dir: &base_dir,
    };
    let config = builder.build(raw, path.clone());
    match config {
        Some(c) if diags.is_empty() => Ok(c),
        _ => {
            diags.sort();
            Err(diags)
        }
    }
}

fn one(d: Diagnostic) -> Diagnostics {
    Diagnostics(vec![d])
}

fn find_config(opts: &LoadOptions) -> Result<PathBuf, Diagnostics> {
    if let Some(p) = &opts.config_path {
        return Ok(p.clone());
    }
    CONFIG_SEARCH
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            one(Diagnostic {
                file: CONFIG_SEARCH[0].into(),
                line: 0,
                column: 0,
                key: String::new(),
                message: format!(
                    "no config file found (looked for {}); pass --config FILE",
                    CONFIG_SEARCH.join(", ")
                ),
                help: None,
            })
        })
}

/// File → `SYNTHMON_…__…` environment → `--set`, through the `config` crate.
fn layered(
    text: &str,
    display: &str,
    overrides: &[(String, String)],
) -> Result<RawConfig, Diagnostics> {
    // Only variables with a `__` are config keys (every key sits in a
    // table), so SYNTHMON_LOG and friends are not mistaken for keys.
    let env: config::Map<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}_")) && k.contains("__"))
        .collect();
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        );
    for (key, value) in overrides {
        builder = builder
            .set_override(key.as_str(), value.as_str())
            .map_err(|e| layer_error(display, key, &e))?;
    }
    builder
        .build()
        .and_then(|c| c.try_deserialize::<RawConfig>())
        .map_err(|e| layer_error(display, "", &e))
}

fn layer_error(display: &str, key: &str, e: &config::ConfigError) -> Diagnostics {
    one(Diagnostic {
        file: format!("{display} (with {ENV_PREFIX}_* variables and --set)"),
        line: 0,
        column: 0,
        key: key.to_owned(),
        message: e.to_string(),
        help: None,
    })
}

/// Checks one file's raw values against its located document, recording
/// every problem, and builds the runtime values that pass.
///
/// Probe kinds build their tables through the `pub(crate)` methods: each
/// takes a dotted key path (`tcp.address`, `flow.steps[2].url`) and records
/// a located error rather than returning one.
/// A probe's common parts, checked, waiting for its kind.
struct ProbeParts<'a> {
    name: String,
    file: &'a Path,
    schedule: Schedule,
    envs: Vec<String>,
    timeout: Duration,
    tags: Vec<String>,
    severity: Option<Severity>,
    labels: BTreeMap<String, String>,
    thresholds: Vec<Threshold>,
    alert: AlertPolicy,
    seed: Option<u64>,
    marker: String,
    workload: Option<crate::probe::workload::Workload>,
}

pub(crate) struct Checker<'a> {
    doc: &'a SourceDoc,
    diags: &'a mut Diagnostics,
    redactor: &'a mut Redactor,
    base_dir: &'a Path,
}

impl Checker<'_> {
    /// An error at the value of `path`.
    pub(crate) fn err(&mut self, path: &str, message: impl Into<String>) {
        let d = self.doc.error_at(path, message);
        self.diags.push(d);
    }

    /// A required key missing from the table at `table`.
    pub(crate) fn missing(&mut self, table: &str, key: &str) {
        self.diags.push(
            self.doc
                .error_at_key(table, format!("missing required key `{key}`")),
        );
    }

    /// A size written at `path` (`4096` or `"4 KiB"`), from 1 byte to
    /// `max`; `default` when unset, or after recording why it is not one.
    pub(crate) fn size(
        &mut self,
        path: &str,
        raw: Option<&RawSize>,
        default: u64,
        max: u64,
    ) -> u64 {
        match raw.map(parse_size) {
            None => default,
            Some(Ok(n)) if (1..=max).contains(&n) => n,
            Some(Ok(n)) => {
                self.err(
                    path,
                    format!(
                        "expected a size from 1 B to {}, found {n} bytes",
                        size_words(max)
                    ),
                );
                default
            }
            Some(Err(msg)) => {
                self.err(path, msg);
                default
            }
        }
    }

    /// A workload must end (its arrivals, plus `tail` for the last one)
    /// before the schedule's next run.
    fn workload_fits(
        &mut self,
        workload: Option<&crate::probe::workload::Workload>,
        schedule: &Schedule,
        tail: Duration,
    ) {
        if let (Some(w), Some(interval)) = (workload, min_gap(schedule)) {
            if w.span() + tail >= interval {
                self.err(
                    "workload",
                    format!(
                        "the workload ({} of arrivals plus {} for the last one) must end before the next run, {} later",
                        humantime::format_duration(w.span()),
                        humantime::format_duration(tail),
                        humantime::format_duration(interval)
                    ),
                );
            }
        }
    }

    /// How many errors were recorded so far (to tell whether a part built).
    pub(crate) fn error_count(&self) -> usize {
        self.diags.len()
    }

    /// The directory relative paths in this file resolve against.
    pub(crate) fn base_dir(&self) -> &Path {
        self.base_dir
    }

    /// Compiles the `expect` list of the table at `table`.
    pub(crate) fn expectations(
        &mut self,
        table: &str,
        sources: &[String],
        scope: &[&str],
    ) -> Vec<Assertion> {
        let mut out = Vec::new();
        for (i, source) in sources.iter().enumerate() {
            let path = format!("{table}.expect[{i}]");
            if let Some(expr) = self.expr(&path, source, scope) {
                out.push(Assertion {
                    expr,
                    location: self.location(&path),
                });
            }
        }
        out
    }

    /// Compiles one expression written at `path`.
    pub(crate) fn expr(&mut self, path: &str, source: &str, scope: &[&str]) -> Option<Expr> {
        match Expr::compile(source, scope) {
            Ok(expr) => Some(expr),
            Err(e) => {
                let mut d = self.doc.error_at(path, e.message);
                if let Some(col) = e.column {
                    // Past the opening quote of a one-line string.
                    d.column += col;
                }
                self.diags.push(d);
                None
            }
        }
    }

    /// Expands secrets in a string value and compiles it as a template.
    /// `known_vars` lists the `vars.X` it may read (`None`: any).
    pub(crate) fn text(
        &mut self,
        path: &str,
        value: &str,
        known_vars: Option<&[String]>,
    ) -> Option<Text> {
        let expanded = self.expand(path, value)?;
        match Text::compile(&expanded, known_vars) {
            Ok(t) => Some(t),
            Err(e) => {
                // The message quotes the template: keep secrets out of it.
                let mut msg = e.message;
                self.redactor.scrub(&mut msg);
                self.err(path, msg);
                None
            }
        }
    }

    fn build(&mut self, raw: RawConfig, file: PathBuf) -> Option<Config> {
        let d = raw.daemon;
        let listen = d.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = match listen.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    "daemon.listen",
                    format!("expected an address like `127.0.0.1:9464`, found `{listen}`"),
                );
                None
            }
        };
        let drain_timeout = self.duration(
            "daemon.drain_timeout",
            d.drain_timeout.as_deref(),
            DEFAULT_DRAIN_TIMEOUT,
        );
        let globs = d
            .probes
            .unwrap_or_else(|| vec![DEFAULT_PROBE_GLOB.to_owned()])
            .into_iter()
            .map(|g| self.base_dir.join(g).display().to_string())
            .collect::<Vec<_>>();
        let daemon = DaemonConfig {
            listen: listen.unwrap_or_else(|| ([127, 0, 0, 1], 9464).into()),
            // systemd's StateDirectory= hands the path over in
            // STATE_DIRECTORY (a colon-separated list; the first is ours).
            state_dir: d.state_dir.map(|s| self.base_dir.join(s)).or_else(|| {
                std::env::var("STATE_DIRECTORY")
                    .ok()
                    .and_then(|v| v.split(':').next().map(PathBuf::from))
                    .filter(|p| !p.as_os_str().is_empty())
            }),
            probe_globs: globs,
            instance: d.instance.unwrap_or_default(),
            location: d.location.unwrap_or_default(),
            drain_timeout,
            max_concurrent_runs: d.max_concurrent_runs.unwrap_or(DEFAULT_MAX_CONCURRENT_RUNS),
        };
        if daemon.max_concurrent_runs == 0 {
            self.err("daemon.max_concurrent_runs", "expected at least 1");
        }
        let tagging = self.tagging(raw.tagging);
        let mut environments = BTreeMap::new();
        for (name, env) in raw.environments {
            if let Some(e) = self.environment(&name, env) {
                environments.insert(name, e);
            }
        }
        let probes = self.probes(&daemon.probe_globs, &environments);
        let telemetry = self.telemetry(raw.telemetry);
        let alerting = self.alerting(raw.alerting);
        warn_alertmanager_timeout(&alerting, &probes);
        Some(Config {
            file: Some(file),
            daemon,
            tagging: tagging?,
            environments,
            probes,
            telemetry,
            alerting,
            redactor: std::mem::take(self.redactor),
        })
    }

    fn alerting(&mut self, raw: super::raw::RawAlerting) -> AlertingConfig {
        let group_wait = self.duration(
            "alerting.group_wait",
            raw.group_wait.as_deref(),
            DEFAULT_GROUP_WAIT,
        );
        let mut receivers = BTreeMap::new();
        for (name, r) in raw.receivers {
            if let Some(built) = self.receiver(&name, r) {
                receivers.insert(name, built);
            }
        }
        let check_names = |checker: &mut Self, path: &str, names: &[String]| {
            for (i, name) in names.iter().enumerate() {
                if !receivers.contains_key(name) {
                    let mut d = checker.doc.error_at(
                        &format!("{path}[{i}]"),
                        format!("unknown receiver `{name}`"),
                    );
                    d.help = diag::nearest(name, receivers.keys().map(String::as_str))
                        .map(|n| format!("did you mean `{n}`?"));
                    checker.diags.push(d);
                }
            }
        };
        check_names(self, "alerting.default_receivers", &raw.default_receivers);
        let mut routes = Vec::new();
        for (i, r) in raw.routes.into_iter().enumerate() {
            let path = format!("alerting.routes[{i}]");
            if r.receivers.is_empty() {
                self.diags.push(
                    self.doc
                        .error_at_key(&path, "a route needs at least one receiver".to_owned()),
                );
            }
            check_names(self, &format!("{path}.receivers"), &r.receivers);
            routes.push(crate::alert::route::Route {
                min_severity: r.severity,
                environments: r.environments,
                labels: r.labels,
                tags: r.tags,
                receivers: r.receivers,
                continue_: r.continue_,
            });
        }
        AlertingConfig {
            group_wait,
            receivers,
            routes,
            default_receivers: raw.default_receivers,
        }
    }

    fn receiver(&mut self, name: &str, raw: super::raw::RawReceiver) -> Option<ReceiverConfig> {
        let path = format!("alerting.receivers.{name}");
        if raw.kind.as_deref() == Some("email") {
            return self.email_receiver(name, &path, raw);
        }
        let email_only = [
            ("smtp_host", raw.smtp_host.is_some()),
            ("smtp_port", raw.smtp_port.is_some()),
            ("tls", raw.tls.is_some()),
            ("username", raw.username.is_some()),
            ("password", raw.password.is_some()),
            ("from", raw.from.is_some()),
            ("to", raw.to.is_some()),
            ("ca_file", raw.ca_file.is_some()),
        ];
        for (key, set) in email_only {
            if set {
                self.err(
                    &format!("{path}.{key}"),
                    format!("`{key}` applies to email receivers only"),
                );
            }
        }
        let default_url = match raw.kind.as_deref() {
            Some("pagerduty") => Some("https://events.pagerduty.com/v2/enqueue"),
            _ => None,
        };
        let url_text = match raw.url.as_deref().or(default_url) {
            Some(u) => self.expand(&format!("{path}.url"), u)?,
            None => {
                self.diags.push(
                    self.doc
                        .error_at_key(&path, "missing required key `url`".to_owned()),
                );
                return None;
            }
        };
        let url = match url::Url::parse(&url_text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            _ => {
                // Never echo the value: it may hold a secret token.
                self.err(&format!("{path}.url"), "expected an http(s) URL");
                return None;
            }
        };
        let kind = match raw.kind.as_deref() {
            None | Some("webhook") => ReceiverKind::Webhook,
            Some("slack") => ReceiverKind::Slack,
            Some("alertmanager") => ReceiverKind::Alertmanager,
            Some("pagerduty") => match raw.routing_key.as_deref() {
                Some(k) => ReceiverKind::PagerDuty {
                    routing_key: self.expand(&format!("{path}.routing_key"), k)?,
                },
                None => {
                    self.diags.push(self.doc.error_at_key(
                        &path,
                        "missing required key `routing_key` for a pagerduty receiver".to_owned(),
                    ));
                    return None;
                }
            },
            Some(other) => {
                let kinds = ["webhook", "slack", "pagerduty", "alertmanager", "email"];
                let mut d = self.doc.error_at(
                    &format!("{path}.type"),
                    format!(
                        "unknown receiver type `{other}` (expected one of `webhook`, `slack`, `pagerduty`, `alertmanager`, `email`)"
                    ),
                );
                d.help = diag::nearest(other, kinds).map(|n| format!("did you mean `{n}`?"));
                self.diags.push(d);
                return None;
            }
        };
        if raw.routing_key.is_some() && !matches!(kind, ReceiverKind::PagerDuty { .. }) {
            self.err(
                &format!("{path}.routing_key"),
                "`routing_key` applies to pagerduty receivers only",
            );
        }
        let mut headers = Vec::new();
        for (k, v) in raw.headers {
            if let Some(v) = self.expand(&format!("{path}.headers.{k}"), &v) {
                headers.push((k, v));
            }
        }
        let hmac_secret = match raw.hmac_secret {
            Some(s) => Some(self.expand(&format!("{path}.hmac_secret"), &s)?),
            None => None,
        };
        let timeout = self.duration(
            &format!("{path}.timeout"),
            raw.timeout.as_deref(),
            DEFAULT_RECEIVER_TIMEOUT,
        );
        let template = match (&kind, raw.template) {
            (_, None) => {
                if raw.content_type.is_some() {
                    self.err(
                        &format!("{path}.content_type"),
                        "`content_type` goes with `template`",
                    );
                }
                None
            }
            (ReceiverKind::Webhook, Some(source)) => {
                if let Err(e) = minijinja::Environment::new().template_from_str(&source) {
                    self.err(
                        &format!("{path}.template"),
                        format!("invalid body template: {e}"),
                    );
                }
                let content_type = raw
                    .content_type
                    .unwrap_or_else(|| "application/json".to_owned());
                Some((source, content_type))
            }
            (_, Some(_)) => {
                self.err(
                    &format!("{path}.template"),
                    "`template` applies to webhook receivers only",
                );
                None
            }
        };
        Some(ReceiverConfig {
            name: name.to_owned(),
            kind,
            url,
            headers,
            hmac_secret,
            timeout,
            template,
        })
    }

    /// A `type = "email"` receiver: SMTP settings instead of a URL.
    fn email_receiver(
        &mut self,
        name: &str,
        path: &str,
        raw: super::raw::RawReceiver,
    ) -> Option<ReceiverConfig> {
        let mut ok = true;
        for (key, set) in [
            ("url", raw.url.is_some()),
            ("routing_key", raw.routing_key.is_some()),
            ("hmac_secret", raw.hmac_secret.is_some()),
            ("headers", !raw.headers.is_empty()),
            ("template", raw.template.is_some()),
            ("content_type", raw.content_type.is_some()),
        ] {
            if set {
                self.err(
                    &format!("{path}.{key}"),
                    format!("`{key}` does not apply to email receivers"),
                );
                ok = false;
            }
        }
        let missing = |checker: &mut Self, key: &str| {
            checker.diags.push(checker.doc.error_at_key(
                path,
                format!("missing required key `{key}` for an email receiver"),
            ));
        };
        let host = match raw.smtp_host.as_deref().map(str::trim) {
            Some(h) if !h.is_empty() => Some(h.trim_matches(['[', ']']).to_owned()),
            Some(_) => {
                self.err(
                    &format!("{path}.smtp_host"),
                    "expected a host name or address",
                );
                None
            }
            None => {
                missing(self, "smtp_host");
                None
            }
        };
        let port = raw.smtp_port.unwrap_or(587);
        if port == 0 {
            self.err(
                &format!("{path}.smtp_port"),
                "expected a port from 1 to 65535",
            );
            ok = false;
        }
        let tls = match raw.tls.as_deref() {
            None | Some("starttls") => Some(SmtpTls::StartTls),
            Some("implicit") => Some(SmtpTls::Implicit),
            Some("none") => Some(SmtpTls::None),
            Some(other) => {
                let modes = ["starttls", "implicit", "none"];
                let mut d = self.doc.error_at(
                    &format!("{path}.tls"),
                    format!(
                        "unknown tls mode `{other}` (expected one of `starttls`, `implicit`, `none`)"
                    ),
                );
                d.help = diag::nearest(other, modes).map(|n| format!("did you mean `{n}`?"));
                self.diags.push(d);
                None
            }
        };
        if let (Some(SmtpTls::None), Some(h)) = (tls, host.as_deref()) {
            let loopback = h.eq_ignore_ascii_case("localhost")
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                let mut d = self.doc.error_at(
                    &format!("{path}.tls"),
                    format!(
                        "`tls = \"none\"` would send the password and alerts in clear text to `{h}`; it is allowed for loopback hosts only"
                    ),
                );
                d.help = Some("use `starttls` (port 587) or `implicit` (port 465)".to_owned());
                self.diags.push(d);
                ok = false;
            }
        }
        let username = match raw.username.as_deref() {
            Some(u) => Some(self.expand(&format!("{path}.username"), u)?),
            None => None,
        };
        let password = match raw.password.as_deref() {
            Some(p) => Some(self.expand(&format!("{path}.password"), p)?),
            None => None,
        };
        if username.is_some() != password.is_some() {
            self.diags.push(self.doc.error_at_key(
                path,
                "`username` and `password` go together: set both or neither".to_owned(),
            ));
            ok = false;
        }
        let from = match raw.from.as_deref() {
            Some(f) => match f.parse::<lettre::message::Mailbox>() {
                Ok(_) => Some(f.to_owned()),
                Err(e) => {
                    self.err(
                        &format!("{path}.from"),
                        format!("`{f}` is not an email address: {e}"),
                    );
                    None
                }
            },
            None => {
                missing(self, "from");
                None
            }
        };
        let to = match raw.to {
            Some(to) if to.is_empty() => {
                self.err(&format!("{path}.to"), "expected at least one recipient");
                None
            }
            Some(to) => {
                let mut good = true;
                for (i, t) in to.iter().enumerate() {
                    if let Err(e) = t.parse::<lettre::message::Mailbox>() {
                        self.err(
                            &format!("{path}.to[{i}]"),
                            format!("`{t}` is not an email address: {e}"),
                        );
                        good = false;
                    }
                }
                good.then_some(to)
            }
            None => {
                missing(self, "to");
                None
            }
        };
        let timeout = self.duration(
            &format!("{path}.timeout"),
            raw.timeout.as_deref(),
            DEFAULT_RECEIVER_TIMEOUT,
        );
        let (Some(host), Some(tls), Some(from), Some(to), true) = (host, tls, from, to, ok) else {
            return None;
        };
        let display = if host.contains(':') {
            format!("smtp://[{host}]:{port}")
        } else {
            format!("smtp://{host}:{port}")
        };
        let Ok(url) = url::Url::parse(&display) else {
            self.err(
                &format!("{path}.smtp_host"),
                format!("`{host}` is not a valid host"),
            );
            return None;
        };
        Some(ReceiverConfig {
            name: name.to_owned(),
            kind: ReceiverKind::Email(EmailSettings {
                smtp_host: host,
                smtp_port: port,
                tls,
                username,
                password,
                from,
                to,
                ca_file: raw.ca_file.map(|f| self.base_dir.join(f)),
            }),
            url,
            headers: Vec::new(),
            hmac_secret: None,
            timeout,
            template: None,
        })
    }

    fn telemetry(&mut self, raw: super::raw::RawTelemetry) -> TelemetryConfig {
        let otlp_protocol = match raw.otlp_protocol.as_deref() {
            None | Some("grpc") => OtlpProtocol::Grpc,
            Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
            Some(other) => {
                self.err(
                    "telemetry.otlp_protocol",
                    format!("expected `grpc` or `http/protobuf`, found `{other}`"),
                );
                OtlpProtocol::Grpc
            }
        };
        if let Some(endpoint) = &raw.otlp_endpoint {
            match url::Url::parse(endpoint) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => self.err(
                    "telemetry.otlp_endpoint",
                    format!(
                        "expected an http(s) URL like `http://127.0.0.1:4317`, found `{endpoint}`"
                    ),
                ),
            }
        }
        let mut otlp_headers = Vec::new();
        for (k, v) in raw.otlp_headers {
            if let Some(v) = self.expand(&format!("telemetry.otlp_headers.{k}"), &v) {
                otlp_headers.push((k, v));
            }
        }
        let queue_size = raw.queue_size.unwrap_or(DEFAULT_SPAN_QUEUE);
        if queue_size == 0 {
            self.err("telemetry.queue_size", "expected at least 1");
        }
        TelemetryConfig {
            otlp_endpoint: raw.otlp_endpoint,
            otlp_protocol,
            otlp_headers,
            otlp_timeout: self.duration(
                "telemetry.otlp_timeout",
                raw.otlp_timeout.as_deref(),
                DEFAULT_OTLP_TIMEOUT,
            ),
            queue_size,
            service_name: raw.service_name,
        }
    }

    pub(crate) fn duration(
        &mut self,
        path: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Duration {
        match value {
            None => default,
            Some(text) => match humantime::parse_duration(text) {
                Ok(d) => d,
                Err(e) => {
                    self.err(
                        path,
                        format!("expected a duration like `30s` or `500ms`, found `{text}` ({e})"),
                    );
                    default
                }
            },
        }
    }

    fn tagging(&mut self, raw: super::raw::RawTagging) -> Option<Tagging> {
        let header = raw.header.as_deref().unwrap_or("x-synthetic");
        let header = http::HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| {
                self.err(
                    "tagging.header",
                    format!("expected an HTTP header name, found `{header}`"),
                )
            })
            .ok();
        let value = self.header_value("tagging.value", raw.value.as_deref().unwrap_or("true"));
        let ua = raw
            .user_agent
            .unwrap_or_else(crate::tagging::default_user_agent);
        let user_agent = self.header_value("tagging.user_agent", &ua);
        Some(Tagging {
            header: header?,
            value: value?,
            user_agent: user_agent?,
        })
    }

    fn header_value(&mut self, path: &str, value: &str) -> Option<http::HeaderValue> {
        http::HeaderValue::from_str(value)
            .map_err(|_| {
                self.err(
                    path,
                    "expected a header value of visible ASCII characters".to_owned(),
                )
            })
            .ok()
    }

    /// Expands secret references in a string value, reporting failures.
    pub(crate) fn expand(&mut self, path: &str, value: &str) -> Option<String> {
        match secret::expand(value, self.base_dir, self.redactor) {
            Ok((out, _)) => Some(out),
            Err(msg) => {
                self.err(path, msg);
                None
            }
        }
    }

    /// Header name/value pairs with secrets expanded.
    fn headers(
        &mut self,
        path: &str,
        raw: BTreeMap<String, String>,
    ) -> Vec<(http::HeaderName, String)> {
        let mut out = Vec::new();
        for (name, value) in raw {
            let key = format!("{path}.{name}");
            let Ok(header) = http::HeaderName::from_bytes(name.as_bytes()) else {
                self.diags.push(
                    self.doc
                        .error_at_key(&key, format!("`{name}` is not a valid HTTP header name")),
                );
                continue;
            };
            if let Some(v) = self.expand(&key, &value) {
                if http::HeaderValue::from_str(&v).is_err() {
                    // Never echo the value: it may hold a secret.
                    self.err(
                        &key,
                        "the header value is not valid in HTTP (control characters or non-ASCII)",
                    );
                    continue;
                }
                out.push((header, v));
            }
        }
        out
    }

    fn environment(&mut self, name: &str, raw: RawEnvironment) -> Option<Environment> {
        let path = format!("environments.{name}");
        if !valid_name(name) {
            self.diags.push(self.doc.error_at_key(
                &path,
                format!("environment name `{name}` must match [A-Za-z0-9][A-Za-z0-9_.-]*"),
            ));
        }
        let base_url = match raw.base_url.as_deref() {
            None => {
                self.diags.push(
                    self.doc
                        .error_at_key(&path, "missing required key `base_url`".to_owned()),
                );
                None
            }
            Some("builtin:sandbox") => Some(BaseUrl::Sandbox),
            Some(text) => {
                let key = format!("{path}.base_url");
                let expanded = self.expand(&key, text)?;
                match url::Url::parse(&expanded) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                        Some(BaseUrl::Url(u))
                    }
                    Ok(_) => {
                        self.err(
                            &key,
                            "expected an http:// or https:// URL with a host, or `builtin:sandbox`",
                        );
                        None
                    }
                    Err(e) => {
                        self.err(
                            &key,
                            format!("expected an http(s) URL or `builtin:sandbox`: {e}"),
                        );
                        None
                    }
                }
            }
        };
        let headers = self.headers(&format!("{path}.headers"), raw.headers);
        let mut variables = BTreeMap::new();
        for (k, v) in raw.variables {
            if let Some(v) = self.expand(&format!("{path}.variables.{k}"), &v) {
                variables.insert(k, v);
            }
        }
        for key in raw.labels.keys() {
            if !valid_label(key) {
                self.diags.push(self.doc.error_at_key(
                    &format!("{path}.labels.{key}"),
                    format!("label name `{key}` must match [a-zA-Z_][a-zA-Z0-9_]*"),
                ));
            }
        }
        let raw_tls = raw.tls.unwrap_or_default();
        let tls = TlsOptions {
            ca_file: raw_tls.ca_file.map(|f| self.base_dir.join(f)),
            client_cert: raw_tls.client_cert.map(|f| self.base_dir.join(f)),
            client_key: raw_tls.client_key.map(|f| self.base_dir.join(f)),
            insecure_skip_verify: raw_tls.insecure_skip_verify.unwrap_or(false),
            server_name: raw_tls.server_name,
        };
        if tls.insecure_skip_verify {
            tracing::warn!(
                environment = name,
                "tls.insecure_skip_verify is on: certificates of this environment are NOT verified"
            );
        }
        let tls_client = match crate::probe::transport::tls_client_config(&tls) {
            Ok(c) => Some(c),
            Err(msg) => {
                self.err(&format!("{path}.tls"), msg);
                None
            }
        };
        Some(Environment {
            name: name.to_owned(),
            base_url: base_url?,
            headers,
            variables,
            tls,
            tls_client: tls_client?,
            labels: raw.labels,
        })
    }

    fn probes(
        &mut self,
        globs: &[String],
        environments: &BTreeMap<String, Environment>,
    ) -> Vec<Probe> {
        let mut files = Vec::new();
        for pattern in globs {
            match glob::glob(pattern) {
                Ok(paths) => {
                    let mut matched: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
                    matched.sort();
                    if matched.is_empty() {
                        tracing::warn!(glob = %pattern, "probe glob matches no file");
                    }
                    files.extend(matched);
                }
                Err(e) => self.err("daemon.probes", format!("invalid glob `{pattern}`: {e}")),
            }
        }
        files.dedup();
        let mut probes: Vec<Probe> = Vec::new();
        // Name → (file, line) of its first definition.
        let mut seen: BTreeMap<String, (String, usize)> = BTreeMap::new();
        let mut depends: Vec<(SourceDoc, Vec<String>)> = Vec::new();
        // Every probe name written, built or not: `depends_on` is checked
        // against these so a broken probe does not hide or cause errors.
        let mut declared: std::collections::BTreeSet<String> = Default::default();
        for file in files {
            let display = display_path(&file);
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    self.diags.push(Diagnostic {
                        file: display,
                        line: 0,
                        column: 0,
                        key: String::new(),
                        message: format!("cannot read probe file: {e}"),
                        help: None,
                    });
                    continue;
                }
            };
            let doc = match SourceDoc::parse(&display, &text) {
                Ok(d) => d,
                Err(d) => {
                    self.diags.push(d);
                    continue;
                }
            };
            let raw = diag::deserialize_collecting::<RawProbe>(&doc, self.diags);
            let Some(raw) = raw else { continue };
            declared.extend(raw.name.clone());
            let depends_on = raw
                .alert
                .as_ref()
                .map(|a| a.depends_on.clone())
                .unwrap_or_default();
            let mut probe_checker = Checker {
                doc: &doc,
                diags: self.diags,
                redactor: self.redactor,
                base_dir: file.parent().unwrap_or(self.base_dir),
            };
            let built = probe_checker.probe(raw, &file, environments);
            let Some(probe) = built else {
                depends.push((doc, depends_on));
                continue;
            };
            if let Some((first_file, first_line)) = seen.get(&probe.name) {
                let d = doc.error_at(
                    "name",
                    format!(
                        "duplicate probe name `{}`: also defined at {first_file}:{first_line}",
                        probe.name
                    ),
                );
                self.diags.push(d);
                continue;
            }
            seen.insert(
                probe.name.clone(),
                (display.clone(), doc.value_position("name").0),
            );
            depends.push((doc, depends_on));
            probes.push(probe);
        }
        // `depends_on` names other probes, which may live in later files.
        for (doc, names) in depends {
            for (i, name) in names.iter().enumerate() {
                if !declared.contains(name) {
                    let mut d = doc.error_at(
                        &format!("alert.depends_on[{i}]"),
                        format!("unknown probe `{name}`"),
                    );
                    d.help = diag::nearest(name, declared.iter().map(String::as_str))
                        .map(|n| format!("did you mean `{n}`?"));
                    self.diags.push(d);
                }
            }
        }
        probes
    }
}

/// Alertmanager ends a firing alert at its `endsAt`, which synthmon sets to
/// three repeat intervals ahead and refreshes with every repeat; with
/// `repeat_interval = "never"` there is no refresh, and Alertmanager ends
/// the alert after its `resolve_timeout` (5 minutes by default). Say so.
fn warn_alertmanager_timeout(alerting: &AlertingConfig, probes: &[Probe]) {
    let has_am = alerting
        .receivers
        .values()
        .any(|r| r.kind == ReceiverKind::Alertmanager);
    if !has_am {
        return;
    }
    let never: Vec<&str> = probes
        .iter()
        .filter(|p| p.alert.rules.repeat_interval.is_none())
        .map(|p| p.name.as_str())
        .collect();
    if !never.is_empty() {
        tracing::warn!(
            probes = %never.join(", "),
            "an alertmanager receiver ends alerts that are never repeated after its resolve_timeout (default 5m): \
             give these probes an [alert] repeat_interval"
        );
    }
}

/// A path as the user would write it: relative to the working directory
/// when it is below it.
fn display_path(p: &Path) -> String {
    let rel = std::env::current_dir()
        .ok()
        .and_then(|cwd| p.strip_prefix(cwd).ok().map(Path::to_path_buf));
    rel.unwrap_or_else(|| p.to_path_buf()).display().to_string()
}

/// Probe and environment names become metric labels, header values and
/// baggage entries, so they are kept to characters that need no escaping.
pub fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && s.len() <= 128
}

fn valid_label(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `every 30s`, or a cron expression (5 fields, or 6 with seconds)
/// evaluated in `timezone` (an IANA name, default UTC).
pub fn parse_schedule(text: &str, timezone: Option<&str>) -> Result<Schedule, String> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix("every ") {
        if timezone.is_some() {
            return Err("`timezone` applies to cron schedules only".into());
        }
        let d = humantime::parse_duration(rest.trim())
            .map_err(|e| format!("expected `every <duration>` like `every 30s`: {e}"))?;
        if d < Duration::from_secs(1) {
            return Err(format!("the interval must be at least 1s, found `{text}`"));
        }
        return Ok(Schedule::Every(d));
    }
    let tz = timezone.unwrap_or("UTC");
    crate::schedule::parse_timezone(tz)?;
    crate::schedule::parse_cron(text).map_err(|e| {
        format!("{e} (expected `every <duration>` like `every 30s`, or a cron expression)")
    })?;
    Ok(Schedule::Cron {
        expression: crate::schedule::normalize_cron(text),
        timezone: tz.to_owned(),
    })
}

/// The shortest time between two runs of a schedule, if it can be known.
pub fn min_gap(schedule: &Schedule) -> Option<Duration> {
    match schedule {
        Schedule::Every(d) => Some(*d),
        Schedule::Cron {
            expression,
            timezone,
        } => {
            let cron = crate::schedule::parse_cron(expression).ok()?;
            let tz = crate::schedule::parse_timezone(timezone).ok()?;
            crate::schedule::cron_min_gap(&cron, &tz, chrono::Utc::now())
        }
    }
}

/// Parses `"3 of 5"`.
pub fn parse_m_of_k(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("expected `M of K` like `3 of 5` (1 ≤ M ≤ K ≤ 100), found `{text}`");
    let (m, k) = text.split_once(" of ").ok_or_else(bad)?;
    let m: u32 = m.trim().parse().map_err(|_| bad())?;
    let k: u32 = k.trim().parse().map_err(|_| bad())?;
    if m == 0 || m > k || k > 100 {
        return Err(bad());
    }
    Ok((m, k))
}

/// Parses `4194304`, `512 KiB`, `4MiB`, `1 MB`, …
pub fn parse_size(raw: &RawSize) -> Result<u64, String> {
    let text = match raw {
        RawSize::Bytes(n) => return Ok(*n),
        RawSize::Text(t) => t.trim(),
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("expected a size like `4 MiB`, found `{text}`"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1024,
        "mb" => 1000 * 1000,
        "mib" | "m" => 1024 * 1024,
        "gb" => 1000 * 1000 * 1000,
        "gib" | "g" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}` (expected B, KB, KiB, MB, MiB, GB or GiB)"
            ));
        }
    };
    Ok((num * mult as f64) as u64)
}

/// `n` bytes in the largest binary unit that divides it: `64 KiB`.
fn size_words(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    UNITS.iter().find(|(unit, _)| n % unit == 0).map_or_else(
        || format!("{n} B"),
        |(unit, name)| format!("{} {name}", n / unit),
    )
}

impl Checker<'_> {
    pub(crate) fn location(&self, path: &str) -> SourceLocation {
        let (line, column) = self.doc.value_position(path);
        SourceLocation {
            file: self.doc.file().to_owned(),
            line,
            column,
        }
    }

    fn probe(
        &mut self,
        raw: RawProbe,
        file: &Path,
        environments: &BTreeMap<String, Environment>,
    ) -> Option<Probe> {
        let errors_before = self.diags.len();
        let name = match raw.name {
            None => {
                self.diags.push(
                    self.doc
                        .error_at_key("", "missing required key `name`".to_owned()),
                );
                String::new()
            }
            Some(n) if !valid_name(&n) => {
                self.err(
                    "name",
                    format!("expected a name matching [A-Za-z0-9][A-Za-z0-9_.-]* (at most 128 characters), found `{n}`"),
                );
                n
            }
            Some(n) => n,
        };
        let schedule = match raw.schedule.as_deref() {
            None if raw.timezone.is_some() => {
                self.err("timezone", "`timezone` applies to cron schedules only");
                Schedule::Every(DEFAULT_INTERVAL)
            }
            None => Schedule::Every(DEFAULT_INTERVAL),
            Some(text) => match parse_schedule(text, raw.timezone.as_deref()) {
                Ok(s) => s,
                Err(msg) => {
                    let path = if msg.contains("time zone") || msg.contains("`timezone`") {
                        "timezone"
                    } else {
                        "schedule"
                    };
                    self.err(path, msg);
                    Schedule::Every(DEFAULT_INTERVAL)
                }
            },
        };
        let timeout = match raw.timeout.as_deref() {
            None => DEFAULT_TIMEOUT,
            Some(text) => match humantime::parse_duration(text) {
                Ok(d) if !d.is_zero() => d,
                _ => {
                    self.err(
                        "timeout",
                        format!("expected a duration like `5s`, found `{text}`"),
                    );
                    DEFAULT_TIMEOUT
                }
            },
        };
        if let Some(interval) = min_gap(&schedule) {
            if timeout >= interval {
                let path = if raw.timeout.is_some() {
                    "timeout"
                } else {
                    "schedule"
                };
                self.err(
                    path,
                    format!(
                        "the timeout ({}) must be shorter than the time between runs ({})",
                        humantime::format_duration(timeout),
                        humantime::format_duration(interval)
                    ),
                );
            }
        }
        let envs = match raw.environments {
            None => {
                self.diags.push(
                    self.doc
                        .error_at_key("", "missing required key `environments`".to_owned()),
                );
                Vec::new()
            }
            Some(list) if list.is_empty() => {
                self.err("environments", "expected at least one environment");
                list
            }
            Some(list) => list,
        };
        for (i, env) in envs.iter().enumerate() {
            if !environments.contains_key(env) {
                let mut d = self.doc.error_at(
                    &format!("environments[{i}]"),
                    format!(
                        "unknown environment `{env}` (defined: {})",
                        environments
                            .keys()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                d.help = diag::nearest(env, environments.keys().map(String::as_str))
                    .map(|n| format!("did you mean `{n}`?"));
                self.diags.push(d);
            }
        }
        for key in raw.labels.keys() {
            if !valid_label(key) {
                self.diags.push(self.doc.error_at_key(
                    &format!("labels.{key}"),
                    format!("label name `{key}` must match [a-zA-Z_][a-zA-Z0-9_]*"),
                ));
            }
        }
        let thresholds = self.thresholds(&raw.thresholds);
        let alert = self.alert_policy(raw.alert.unwrap_or_default());
        if alert.depends_on.contains(&name) {
            self.err("alert.depends_on", "a probe cannot depend on itself");
        }
        // The variables templates may read: every environment's, plus the
        // sandbox's listener addresses.
        let mut known_vars: Vec<String> = Vec::new();
        for env in envs.iter().filter_map(|e| environments.get(e)) {
            known_vars.extend(env.variables.keys().cloned());
            if env.base_url == BaseUrl::Sandbox {
                known_vars.extend(crate::sandbox::VARIABLES.iter().map(|v| (*v).to_owned()));
            }
        }
        known_vars.sort();
        known_vars.dedup();
        let present: Vec<&str> = [
            ("http", raw.http.is_some()),
            ("flow", raw.flow.is_some()),
            ("tcp", raw.tcp.is_some()),
            ("dns", raw.dns.is_some()),
            ("tls", raw.tls.is_some()),
            ("grpc", raw.grpc.is_some()),
            ("stream", raw.stream.is_some()),
            ("command", raw.command.is_some()),
        ]
        .iter()
        .filter(|(_, p)| *p)
        .map(|(k, _)| *k)
        .collect();
        if present.len() > 1 {
            self.err(
                present[1],
                format!(
                    "a probe has exactly one kind, but this file has {}",
                    present
                        .iter()
                        .map(|k| format!("`[{k}]`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            );
        }
        let marker = raw
            .marker
            .unwrap_or_else(|| crate::generate::DEFAULT_MARKER.to_owned());
        if marker.len() > 64 || marker.chars().any(|c| c.is_control() || c == '"') {
            self.err(
                "marker",
                "expected a short prefix of printable characters, like `synth-`",
            );
        }
        if raw.workload.is_some() && raw.http.is_none() && raw.flow.is_none() {
            self.err(
                "workload",
                "`[workload]` applies to `[http]` and `[flow]` probes only",
            );
        }
        let mut workload = None;
        let kind = if let Some(h) = raw.http {
            let spec = self.http("http", h, &known_vars);
            if let (Some(w), Some(spec)) = (raw.workload, &spec) {
                workload = crate::probe::workload::build(w, Some(spec), self);
            }
            self.workload_fits(workload.as_ref(), &schedule, timeout);
            spec.map(ProbeKind::Http)
        } else if let Some(f) = raw.flow {
            let spec = crate::probe::flow::build(f, &known_vars, self);
            if let (Some(w), Some(spec)) = (raw.workload, &spec) {
                workload = crate::probe::workload::build(w, None, self);
                // The last iteration's teardown belongs to the run too.
                self.workload_fits(
                    workload.as_ref(),
                    &schedule,
                    timeout + spec.teardown_timeout,
                );
            }
            spec.map(ProbeKind::Flow)
        } else if let Some(t) = raw.tcp {
            crate::probe::tcp::build(t, self).map(ProbeKind::Tcp)
        } else if let Some(t) = raw.dns {
            crate::probe::dns::build(t, self).map(ProbeKind::Dns)
        } else if let Some(t) = raw.tls {
            crate::probe::tls::build(t, self).map(ProbeKind::Tls)
        } else if let Some(t) = raw.grpc {
            crate::probe::grpc::build(t, self).map(ProbeKind::Grpc)
        } else if let Some(t) = raw.stream {
            crate::probe::stream::build(t, self).map(ProbeKind::Stream)
        } else if let Some(t) = raw.command {
            crate::probe::command::build(t, self).map(ProbeKind::Command)
        } else {
            self.diags.push(self.doc.error_at_key(
                "",
                format!(
                    "missing the probe's body: expected one of the tables {}",
                    RawProbe::KINDS
                        .iter()
                        .map(|k| format!("`[{k}]`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
            None
        };
        self.finish_probe(
            errors_before,
            ProbeParts {
                name,
                file,
                schedule,
                envs,
                timeout,
                tags: raw.tags,
                severity: raw.severity,
                labels: raw.labels,
                thresholds,
                alert,
                seed: raw.seed,
                marker,
                workload,
            },
            kind,
        )
    }

    fn finish_probe(
        &mut self,
        errors_before: usize,
        parts: ProbeParts<'_>,
        kind: Option<ProbeKind>,
    ) -> Option<Probe> {
        if self.diags.len() > errors_before {
            return None;
        }
        Some(Probe {
            name: parts.name,
            file: parts.file.to_path_buf(),
            schedule: parts.schedule,
            environments: parts.envs,
            timeout: parts.timeout,
            tags: parts.tags,
            severity: parts.severity.unwrap_or(Severity::Warning),
            labels: parts.labels,
            thresholds: parts.thresholds,
            alert: parts.alert,
            seed: parts.seed,
            marker: parts.marker,
            workload: parts.workload,
            kind: kind?,
        })
    }

    fn alert_policy(&mut self, raw: super::raw::RawAlert) -> AlertPolicy {
        let mut policy = AlertPolicy::default();
        match (raw.fire_after, raw.fire.as_deref()) {
            (Some(_), Some(_)) => self.err(
                "alert.fire",
                "write either `fire_after = N` or `fire = \"M of K\"`, not both",
            ),
            (Some(n), None) if (1..=100).contains(&n) => {
                policy.rules.fire = FireRule::Consecutive(n)
            }
            (Some(n), None) => self.err(
                "alert.fire_after",
                format!("expected 1 to 100 consecutive runs, found {n}"),
            ),
            (None, Some(text)) => match parse_m_of_k(text) {
                Ok((m, k)) => policy.rules.fire = FireRule::MOfK { m, k },
                Err(e) => self.err("alert.fire", e),
            },
            (None, None) => {}
        }
        if let Some(n) = raw.resolve_after {
            if (1..=100).contains(&n) {
                policy.rules.resolve_after = n;
            } else {
                self.err(
                    "alert.resolve_after",
                    format!("expected 1 to 100 consecutive runs, found {n}"),
                );
            }
        }
        match raw.repeat_interval.as_deref() {
            None => {}
            Some("never") => policy.rules.repeat_interval = None,
            Some(text) => {
                let d = self.duration(
                    "alert.repeat_interval",
                    Some(text),
                    Duration::from_secs(4 * 3600),
                );
                if d < Duration::from_secs(60) {
                    self.err(
                        "alert.repeat_interval",
                        "expected at least 1m (or \"never\")",
                    );
                }
                policy.rules.repeat_interval = Some(d);
            }
        }
        if let Some(b) = raw.notify_degraded {
            policy.rules.notify_degraded = b;
        }
        policy.depends_on = raw.depends_on;
        policy
    }

    fn thresholds(&mut self, raw: &[super::raw::RawThreshold]) -> Vec<Threshold> {
        use super::raw::RawThreshold;
        let mut out = Vec::new();
        for (i, t) in raw.iter().enumerate() {
            let path = format!("thresholds[{i}]");
            let (failing_text, degraded_text, window_text, nested) = match t {
                RawThreshold::Short(s) => (s.as_str(), None, None, false),
                RawThreshold::Full(t) => (
                    t.failing.as_str(),
                    t.degraded.as_deref(),
                    t.window.as_deref(),
                    true,
                ),
            };
            let at = |field: &str| {
                if nested {
                    format!("{path}.{field}")
                } else {
                    path.clone()
                }
            };
            let failing = parse_condition(failing_text)
                .map_err(|e| self.err(&at("failing"), e))
                .ok();
            let degraded = match degraded_text.map(parse_condition) {
                None => None,
                Some(Ok(d)) => Some(d),
                Some(Err(e)) => {
                    self.err(&at("degraded"), e);
                    continue;
                }
            };
            let window = self.duration(&at("window"), window_text, threshold::DEFAULT_WINDOW);
            if window < measure::SUB_WINDOW || window > measure::MAX_WINDOW {
                self.err(
                    &at("window"),
                    format!(
                        "expected a window from {} to {}, found {}",
                        humantime::format_duration(measure::SUB_WINDOW),
                        humantime::format_duration(measure::MAX_WINDOW),
                        humantime::format_duration(window)
                    ),
                );
            }
            let Some(failing) = failing else { continue };
            if let Some(d) = &degraded {
                if d.metric != failing.metric {
                    self.err(
                        &at("degraded"),
                        format!(
                            "the degraded level must judge the same metric as the failing one (`{}`), found `{}`",
                            failing.source, d.source
                        ),
                    );
                    continue;
                }
            }
            out.push(Threshold {
                failing,
                degraded,
                window,
            });
        }
        out
    }

    /// An `[http]` probe's table: a request without the flow-step keys.
    fn http(&mut self, prefix: &str, raw: RawHttp, known_vars: &[String]) -> Option<HttpSpec> {
        for (key, set) in [
            ("name", raw.name.is_some()),
            ("capture", !raw.capture.is_empty()),
            ("until", raw.until.is_some()),
            ("until_interval", raw.until_interval.is_some()),
            ("until_timeout", raw.until_timeout.is_some()),
        ] {
            if set {
                self.err(
                    &format!("{prefix}.{key}"),
                    format!("`{key}` applies to flow steps only"),
                );
            }
        }
        self.request(prefix, &raw, known_vars)
    }

    /// One HTTP request written at `prefix` (`http`, `flow.steps[0]`).
    /// Every string it sends is a template that may read `known_vars`.
    pub(crate) fn request(
        &mut self,
        prefix: &str,
        raw: &RawHttp,
        known_vars: &[String],
    ) -> Option<HttpSpec> {
        let known = Some(known_vars);
        let method_text = raw.method.as_deref().unwrap_or("GET");
        let method = http::Method::from_bytes(method_text.to_ascii_uppercase().as_bytes())
            .map_err(|_| {
                self.err(
                    &format!("{prefix}.method"),
                    format!("expected an HTTP method like `GET`, found `{method_text}`"),
                )
            })
            .ok();
        let url = match raw.url.as_deref() {
            None => {
                self.missing(prefix, "url");
                None
            }
            Some(u) => {
                let path = format!("{prefix}.url");
                let text = self.text(&path, u, known);
                if let Some(t) = text.as_ref().filter(|t| t.is_literal()) {
                    if let Ok(base) = url::Url::parse("http://base.invalid/") {
                        if let Err(err) = http_probe::join_url(&base, t.source()) {
                            self.err(&path, format!("expected a URL or a path: {err}"));
                        }
                    }
                }
                text
            }
        };
        let mut headers = Vec::new();
        for (name, value) in &raw.headers {
            let key = format!("{prefix}.headers.{name}");
            let Ok(header) = http::HeaderName::from_bytes(name.as_bytes()) else {
                self.diags.push(
                    self.doc
                        .error_at_key(&key, format!("`{name}` is not a valid HTTP header name")),
                );
                continue;
            };
            if let Some(t) = self.text(&key, value, known) {
                if t.is_literal() && http::HeaderValue::from_str(t.source()).is_err() {
                    // Never echo the value: it may hold a secret.
                    self.err(
                        &key,
                        "the header value is not valid in HTTP (control characters or non-ASCII)",
                    );
                    continue;
                }
                headers.push((header, t));
            }
        }
        let mut query = Vec::new();
        for (k, v) in &raw.query {
            if let Some(t) = self.text(&format!("{prefix}.query.{k}"), v, known) {
                query.push((k.clone(), t));
            }
        }
        let bodies = [raw.body.is_some(), raw.json.is_some(), raw.form.is_some()];
        if bodies.iter().filter(|b| **b).count() > 1 {
            self.diags.push(self.doc.error_at_key(
                prefix,
                "`body`, `json` and `form` are exclusive: write at most one".to_owned(),
            ));
        }
        let body = if let Some(b) = &raw.body {
            self.text(&format!("{prefix}.body"), b, known)
                .map(Body::Raw)
        } else if let Some(j) = &raw.json {
            let path = format!("{prefix}.json");
            match serde_json::to_value(j) {
                Ok(v) => self.json_template(&path, &v, known).map(Body::Json),
                Err(e) => {
                    self.err(&path, format!("cannot express this value as JSON: {e}"));
                    None
                }
            }
        } else if let Some(form) = &raw.form {
            let mut pairs = Vec::new();
            for (k, v) in form {
                if let Some(t) = self.text(&format!("{prefix}.form.{k}"), v, known) {
                    pairs.push((k.clone(), t));
                }
            }
            Some(Body::Form(pairs))
        } else {
            Some(Body::Empty)
        };
        let max_body_bytes = self.size(
            &format!("{prefix}.max_body_size"),
            raw.max_body_size.as_ref(),
            DEFAULT_MAX_BODY_BYTES,
            MAX_BODY_BYTES_LIMIT,
        );
        let expect = self.expectations(prefix, &raw.expect, http_probe::SCOPE);
        let implicit_status = if expect.iter().any(|a| a.expr.reads("status")) {
            None
        } else {
            Some(self.location(&format!("{prefix}.url")))
        };
        Some(HttpSpec {
            method: method?,
            url: url?,
            headers,
            query,
            body: body?,
            follow_redirects: raw.follow_redirects.unwrap_or(true),
            max_redirects: raw.max_redirects.unwrap_or(DEFAULT_MAX_REDIRECTS),
            max_body_bytes,
            decompress: raw.decompress.unwrap_or(true),
            expect,
            implicit_status,
        })
    }

    /// Compiles the templates in a JSON body; a bad leaf is located at its key.
    fn json_template(
        &mut self,
        path: &str,
        value: &serde_json::Value,
        known: Option<&[String]>,
    ) -> Option<crate::template::JsonTemplate> {
        match crate::template::JsonTemplate::compile(value, known) {
            Ok(t) => Some(t),
            Err((leaf, e)) => {
                let mut msg = e.message;
                self.redactor.scrub(&mut msg);
                let at = if leaf.is_empty() {
                    path.to_owned()
                } else {
                    format!("{path}.{leaf}")
                };
                self.err(&at, msg);
                None
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn size_limits_are_worded_in_their_unit() {
        assert_eq!(size_words(1 << 30), "1 GiB");
        assert_eq!(size_words(64 * 1024 * 1024), "64 MiB");
        assert_eq!(size_words(64 * 1024), "64 KiB");
        assert_eq!(size_words(1536), "1536 B");
        assert_eq!(size_words(1000), "1000 B");
    }

    #[test]
    fn schedules() {
        assert_eq!(
            parse_schedule("every 30s", None).unwrap(),
            Schedule::Every(Duration::from_secs(30))
        );
        assert_eq!(
            parse_schedule(" every 2m ", None).unwrap(),
            Schedule::Every(Duration::from_secs(120))
        );
        assert!(parse_schedule("every 100ms", None).is_err());
        assert!(parse_schedule("every soon", None).is_err());
        assert!(parse_schedule("every 1m", Some("UTC")).is_err());
        assert_eq!(
            parse_schedule("*/5 * * * *", Some("Europe/Berlin")).unwrap(),
            Schedule::Cron {
                expression: "0 */5 * * * *".into(),
                timezone: "Europe/Berlin".into()
            }
        );
        assert!(parse_schedule("*/5 * * * *", Some("Mars/Base")).is_err());
        assert!(parse_schedule("99 * * * *", None).is_err());
        assert_eq!(
            min_gap(&parse_schedule("0 */10 * * * *", None).unwrap()),
            Some(Duration::from_secs(600))
        );
    }

    #[test]
    fn m_of_k() {
        assert_eq!(parse_m_of_k("3 of 5").unwrap(), (3, 5));
        assert_eq!(parse_m_of_k(" 1 of 1 ").unwrap(), (1, 1));
        assert!(parse_m_of_k("6 of 5").is_err());
        assert!(parse_m_of_k("0 of 5").is_err());
        assert!(parse_m_of_k("3/5").is_err());
        assert!(parse_m_of_k("1 of 101").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size(&RawSize::Bytes(10)).unwrap(), 10);
        assert_eq!(parse_size(&RawSize::Text("4 MiB".into())).unwrap(), 4 << 20);
        assert_eq!(
            parse_size(&RawSize::Text("512KiB".into())).unwrap(),
            512 << 10
        );
        assert_eq!(
            parse_size(&RawSize::Text("1 MB".into())).unwrap(),
            1_000_000
        );
        assert!(parse_size(&RawSize::Text("4 parsecs".into())).is_err());
        assert!(parse_size(&RawSize::Text("lots".into())).is_err());
    }

    #[test]
    fn names() {
        assert!(valid_name("api-health.v2_x"));
        assert!(!valid_name("-lead"));
        assert!(!valid_name("has space"));
        assert!(!valid_name(""));
        assert!(valid_label("team_name"));
        assert!(!valid_label("team-name"));
    }
}
