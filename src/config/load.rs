//! Loading `config.toml`: finding it, layering it with the `config` crate
//! (defaults → file → `SYNTHMON_…__…` environment → `--set`), and checking
//! the daemon's own settings (daemon, tagging, environments, telemetry).
//!
//! Probe files and alerting are checked by the assembly (`plan`), which
//! continues with the same located document, diagnostics and redactor so
//! that one run reports every error of every file.

use super::check::{Checker, Demand, valid_label, valid_name};
use super::raw::{self, RawConfig, RawEnvironment};
use super::{
    BaseUrl, DaemonConfig, Environment, OtlpProtocol, Settings, Tagging, TelemetryConfig,
    TlsOptions,
};
use crate::diag::{self, Diagnostic, Diagnostics, SourceDoc};
use crate::secret::Redactor;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
/// The base URL an environment gets while a secret of its `base_url` is
/// set aside (it is never run so: the secret's error is reported first).
const UNRESOLVED_BASE_URL: &str = "http://unresolved-secret.invalid/";
pub const DEFAULT_PROBE_GLOB: &str = "probes/*.toml";
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `timeout` a probe may have. A run is a check, not a batch
/// job: the slowest sane one (a long flow, a nightly export polled with
/// `until`) takes minutes; a day is room to spare, and the run's deadline
/// stays far from the monotonic clock's limit.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// The longest `daemon.drain_timeout`. A stop or a deploy that waits more
/// than an hour for in-flight runs is stuck; systemd (`TimeoutStopSec`)
/// and Kubernetes (`terminationGracePeriodSeconds`) kill far sooner.
pub const MAX_DRAIN_TIMEOUT: Duration = Duration::from_secs(3600);
/// The longest `telemetry.otlp_timeout`. An export that takes longer than
/// a few minutes is lost anyway, and the bounded span queue fills behind it.
pub const MAX_OTLP_TIMEOUT: Duration = Duration::from_secs(300);
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

/// The first stage of loading: the config file read, layered and checked
/// (daemon, tagging, environments, telemetry), with everything a later
/// stage needs to go on checking the probe files and alerting in the same
/// run. Errors so far are in `diags`; the caller adds its own and fails if
/// any was recorded.
pub struct Loaded {
    pub file: PathBuf,
    pub doc: SourceDoc,
    pub diags: Diagnostics,
    pub redactor: Redactor,
    pub base_dir: PathBuf,
    /// The settings; where a value was wrong its default stands in, and
    /// `diags` says why, so the later stages can still check the rest.
    pub settings: Settings,
    /// `[alerting]` as written, for the assembly to build receivers from.
    pub alerting: super::raw::RawAlerting,
}

/// Reads, layers and checks the config file. `Err` only when the file
/// cannot be found, read or parsed at all.
pub fn load_settings(opts: &LoadOptions) -> Result<Loaded, Diagnostics> {
    let path = find_config(opts)?;
    let display = path.display().to_string();
    let text = diag::read_source(&path, &display, "config file").map_err(one)?;
    let doc = SourceDoc::parse(&display, &text).map_err(one)?;
    let mut diags = Diagnostics::default();
    // The file alone, with locations: every mistake in it at once.
    let Some(from_file) = diag::deserialize_collecting::<RawConfig>(&doc, &mut diags) else {
        return Err(diags);
    };
    // With errors in the file, the layers would only repeat them; check
    // what remains of the file instead, so the build step and the probe
    // files still report theirs in the same run.
    let mut raw = if diags.is_empty() {
        layered(&text, &display, &opts.overrides)?
    } else {
        from_file
    };
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut redactor = Redactor::default();
    let alerting = std::mem::take(&mut raw.alerting);
    let settings = Checker::new(&doc, &mut diags, &mut redactor, &base_dir).settings(raw);
    Ok(Loaded {
        file: path,
        doc,
        diags,
        redactor,
        base_dir,
        settings,
        alerting,
    })
}

pub fn one(d: Diagnostic) -> Diagnostics {
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
    let keys = env.keys().chain(overrides.iter().map(|(k, _)| k));
    if let Some((key, index)) = keys.filter_map(|k| Some((k, oversized_index(k)?))).next() {
        let e = config::ConfigError::Message(format!(
            "expected a list index of at most {MAX_OVERRIDE_INDEX}, found [{index}]"
        ));
        return Err(layer_error(display, key, &e));
    }
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

/// The largest list index an override may name: the `config` crate grows a
/// list to any index it is given (`--set 'daemon[4611686018427387904]=x'`
/// panicked with a capacity overflow), and no list synthmon reads is long.
const MAX_OVERRIDE_INDEX: u64 = 10_000;

/// An index in an override's key (`a.b[12]`) beyond [`MAX_OVERRIDE_INDEX`].
fn oversized_index(key: &str) -> Option<&str> {
    key.split('[')
        .skip(1)
        .filter_map(|rest| Some(rest.split_once(']')?.0))
        .find(|n| {
            n.trim()
                .parse::<i64>()
                .is_ok_and(|n| n.unsigned_abs() > MAX_OVERRIDE_INDEX)
        })
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

impl Checker<'_> {
    /// The daemon's own settings: everything in `config.toml` but alerting.
    pub fn settings(&mut self, raw: RawConfig) -> Settings {
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
        let drain_timeout = self.duration_at_most(
            "daemon.drain_timeout",
            d.drain_timeout.as_deref(),
            DEFAULT_DRAIN_TIMEOUT,
            MAX_DRAIN_TIMEOUT,
        );
        let history = self.history(&d.history);
        let public_url = self.public_url(d.public_url.as_deref());
        let artifacts = self.artifacts(&d.artifacts);
        let (token, token_unresolved) = self.daemon_token(d.token.as_deref());
        let self_check = self.self_check(d.self_check);
        let environment_names = raw.environments.keys().cloned().collect();
        let maintenance = self.maintenance(raw.maintenance, &environment_names);
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
            history,
            public_url,
            artifacts,
            token,
            token_unresolved,
            maintenance,
            self_check,
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
        let telemetry = self.telemetry(raw.telemetry);
        Settings {
            daemon,
            tagging: tagging.unwrap_or_default(),
            environments,
            telemetry,
        }
    }

    /// `[daemon] token`: a secret (masked in every output, written in
    /// clear or as `${env:…}`/`${file:…}`), one HTTP header token: not
    /// empty, visible ASCII without spaces. An unresolvable reference is
    /// set aside (returned) rather than reported: only the daemon and
    /// `check` need the token (the assembly reports it for them).
    fn daemon_token(
        &mut self,
        raw: Option<&str>,
    ) -> (Option<crate::secret::Secret<String>>, Vec<Diagnostic>) {
        const PATH: &str = "daemon.token";
        let Some(raw) = raw else {
            return (None, Vec::new());
        };
        let outer = std::mem::replace(&mut self.secrets, Demand::Deferred(Vec::new()));
        let value = self.secret(PATH, raw);
        let set_aside = match std::mem::replace(&mut self.secrets, outer) {
            Demand::Deferred(set_aside) => set_aside,
            Demand::Required | Demand::Unused => Vec::new(),
        };
        let Some(value) = value else {
            return (None, set_aside);
        };
        // Never echo the value: it is a secret.
        if value.is_empty() {
            self.err(PATH, "expected a non-empty token");
            return (None, set_aside);
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            self.err(
                PATH,
                "expected a token of visible ASCII characters without spaces \
                 (it is sent in an Authorization header)",
            );
            return (None, set_aside);
        }
        (Some(crate::secret::Secret::new(value)), set_aside)
    }

    /// `[daemon] public_url`: an absolute http(s) URL with a host, no
    /// credentials, query or fragment; kept without its trailing `/`.
    fn public_url(&mut self, raw: Option<&str>) -> Option<String> {
        const PATH: &str = "daemon.public_url";
        let raw = raw?;
        let expected = "expected the URL people reach this daemon at, like \
                        `https://synthmon.example.com`";
        let url = match url::Url::parse(raw) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => u,
            _ => {
                self.err(PATH, format!("{expected}, found `{raw}`"));
                return None;
            }
        };
        // Never echo a URL with credentials: it may hold a secret.
        if !url.username().is_empty() || url.password().is_some() {
            self.err(PATH, format!("{expected}, without `user:password@`"));
            return None;
        }
        if url.query().is_some() || url.fragment().is_some() {
            self.err(
                PATH,
                format!("{expected} (no query or fragment), found `{raw}`"),
            );
            return None;
        }
        Some(url.as_str().trim_end_matches('/').to_owned())
    }

    /// `[daemon.artifacts]`: at least one file and one byte per pair.
    fn artifacts(&mut self, raw: &raw::RawArtifacts) -> crate::config::ArtifactsConfig {
        const MAX_KEEP: usize = 10_000;
        const MAX_BYTES: u64 = 1 << 30;
        let d = crate::config::ArtifactsConfig::default();
        let keep = raw.keep.unwrap_or(d.keep);
        if !(1..=MAX_KEEP).contains(&keep) {
            self.err(
                "daemon.artifacts.keep",
                format!("expected a number of files from 1 to {MAX_KEEP}, found {keep}"),
            );
        }
        let max_bytes = self.size(
            "daemon.artifacts.max_size",
            raw.max_size.as_ref(),
            d.max_bytes,
            MAX_BYTES,
        );
        crate::config::ArtifactsConfig {
            enabled: raw.enabled.unwrap_or(d.enabled),
            keep: keep.clamp(1, MAX_KEEP),
            max_bytes,
        }
    }

    /// `[daemon.history]`: minutes are kept at least an hour (the
    /// roll-up reads them), hours at least as long as minutes.
    fn history(&mut self, raw: &raw::RawHistory) -> crate::config::HistoryConfig {
        const YEARS_10: Duration = Duration::from_secs(10 * 366 * 86_400);
        let d = crate::config::HistoryConfig::default();
        let keep_runs = self.duration_at_most(
            "daemon.history.keep_runs",
            raw.keep_runs.as_deref(),
            d.keep_runs,
            YEARS_10,
        );
        let keep_minutes = self.duration_at_most(
            "daemon.history.keep_minutes",
            raw.keep_minutes.as_deref(),
            d.keep_minutes,
            YEARS_10,
        );
        let keep_hours = self.duration_at_most(
            "daemon.history.keep_hours",
            raw.keep_hours.as_deref(),
            d.keep_hours,
            YEARS_10,
        );
        if keep_minutes < Duration::from_secs(2 * 3600) {
            self.err(
                "daemon.history.keep_minutes",
                "expected at least `2h` (hourly roll-ups are made from the minutes)",
            );
        }
        if keep_hours < keep_minutes {
            self.err(
                "daemon.history.keep_hours",
                "expected at least as long as `keep_minutes`",
            );
        }
        crate::config::HistoryConfig {
            enabled: raw.enabled.unwrap_or(true),
            keep_runs,
            keep_minutes,
            keep_hours,
        }
    }

    fn telemetry(&mut self, raw: raw::RawTelemetry) -> TelemetryConfig {
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
            otlp_timeout: self.duration_at_most(
                "telemetry.otlp_timeout",
                raw.otlp_timeout.as_deref(),
                DEFAULT_OTLP_TIMEOUT,
                MAX_OTLP_TIMEOUT,
            ),
            queue_size,
            service_name: raw.service_name,
        }
    }

    fn tagging(&mut self, raw: raw::RawTagging) -> Option<Tagging> {
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

    /// An environment. Its secrets are deferred: whether they must resolve
    /// depends on the probes that run there, which are checked later (see
    /// [`Environment::unresolved`]).
    fn environment(&mut self, name: &str, raw: RawEnvironment) -> Option<Environment> {
        let outer = std::mem::replace(&mut self.secrets, Demand::Deferred(Vec::new()));
        let built = self.environment_parts(name, raw);
        let set_aside = match std::mem::replace(&mut self.secrets, outer) {
            Demand::Deferred(set_aside) => set_aside,
            Demand::Required | Demand::Unused => Vec::new(),
        };
        match built {
            Some(mut env) => {
                env.unresolved = set_aside;
                Some(env)
            }
            None => {
                // The config fails anyway: report everything at once.
                self.diags.extend(set_aside);
                None
            }
        }
    }

    fn environment_parts(&mut self, name: &str, raw: RawEnvironment) -> Option<Environment> {
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
                let errors = self.error_count();
                let expanded = match self.expand(&key, text) {
                    Some(e) => e,
                    // A secret set aside: the environment stands, unusable
                    // until the secret is there (it is reported if used).
                    None if self.error_count() == errors => UNRESOLVED_BASE_URL.to_owned(),
                    None => return None,
                };
                match url::Url::parse(&expanded) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                        match super::check::no_credentials(&u) {
                            Ok(()) => Some(BaseUrl::Url(u)),
                            Err(msg) => {
                                self.err(&key, msg);
                                None
                            }
                        }
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
        let mut headers = self.headers(&format!("{path}.headers"), raw.headers);
        let auth = self.auth(
            &path,
            super::check::RawAuth {
                basic_auth: raw.basic_auth.as_ref(),
                bearer_token: raw.bearer_token.as_deref(),
                oauth2: raw.oauth2.as_ref(),
            },
            headers.iter().map(|(n, _)| n),
        );
        if let Some(value) = auth.header {
            headers.push((http::header::AUTHORIZATION, value));
        }
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
        let min_version = raw_tls.min_version.as_deref().and_then(|v| {
            crate::net::tls::TlsVersion::parse(v)
                .map_err(|msg| self.err(&format!("{path}.tls.min_version"), msg))
                .ok()
        });
        let tls = TlsOptions {
            ca_file: raw_tls.ca_file.map(|f| self.base_dir.join(f)),
            client_cert: raw_tls.client_cert.map(|f| self.base_dir.join(f)),
            client_key: raw_tls.client_key.map(|f| self.base_dir.join(f)),
            insecure_skip_verify: raw_tls.insecure_skip_verify.unwrap_or(false),
            server_name: raw_tls.server_name,
            min_version,
        };
        if tls.insecure_skip_verify {
            tracing::warn!(
                environment = name,
                "tls.insecure_skip_verify is on: certificates of this environment are NOT verified"
            );
        }
        let proxy = self.proxy(
            &path,
            &super::check::ProxyKeys {
                proxy: raw.proxy.as_deref(),
                proxy_auth: raw.proxy_auth.as_ref(),
                no_proxy: raw.no_proxy.as_deref(),
            },
        );
        // Read now, so a missing or bad file is a load error; runs take the
        // config through `net::tls::current`, which rereads changed files.
        let tls_client = match crate::net::tls::current_blocking(&tls) {
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
            proxy,
            labels: raw.labels,
            oauth2: auth.oauth2,
            unresolved: Vec::new(),
        })
    }
}
