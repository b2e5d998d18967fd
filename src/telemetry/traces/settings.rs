//! Export settings: `[telemetry]` first, then the standard `OTEL_*`
//! variables, resolved into one [`Settings`] value. No I/O: the environment
//! is read only through the lookup function passed in (ignored invalid
//! values are logged as warnings).

use crate::config::DEFAULT_OTLP_TIMEOUT;
use crate::config::{OtlpProtocol, TelemetryConfig};
use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::{KeyValue, Value};
use rand::Rng;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
const TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
const TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
const HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
const TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
const TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
const RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";

/// Who is exporting: `[daemon] instance` and `location`, which become
/// `service.instance.id` and `synthmon.location` on the OTLP resource.
/// Without an instance, `OTEL_RESOURCE_ATTRIBUTES`' `service.instance.id`
/// applies, else a random UUID for the process; without a location there
/// is no `synthmon.location`.
#[derive(Debug, Clone, Default)]
pub struct Resource {
    pub instance: String,
    pub location: String,
}

/// Where a resolved endpoint came from; decides how it is completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndpointSource {
    Config,
    TracesEnv,
    BaseEnv,
}

/// Export settings after applying the config and then the environment.
pub(super) struct Settings {
    /// The URL exported to: for HTTP/protobuf the full `/v1/traces` URL.
    pub(super) endpoint: String,
    /// The endpoint without user info or query, for logs.
    pub(super) endpoint_for_logs: String,
    pub(super) protocol: OtlpProtocol,
    pub(super) headers: HeaderMap,
    pub(super) timeout: Duration,
    pub(super) queue_size: usize,
    pub(super) resource: opentelemetry_sdk::Resource,
}

impl Settings {
    /// Resolves the settings from `[telemetry]` and then the `OTEL_*`
    /// variables `env` returns; `Ok(None)` when no endpoint is configured.
    pub(super) fn resolve(
        config: &TelemetryConfig,
        resource: &Resource,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Settings>, String> {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let (raw, source) = if let Some(e) = config.otlp_endpoint.clone().filter(|e| !e.is_empty())
        {
            (e, EndpointSource::Config)
        } else if let Some(e) = var(TRACES_ENDPOINT) {
            (e, EndpointSource::TracesEnv)
        } else if let Some(e) = var(ENDPOINT) {
            (e, EndpointSource::BaseEnv)
        } else {
            return Ok(None);
        };
        let source_name = match source {
            EndpointSource::Config => "telemetry.otlp_endpoint",
            EndpointSource::TracesEnv => TRACES_ENDPOINT,
            EndpointSource::BaseEnv => ENDPOINT,
        };

        let protocol = if source == EndpointSource::Config
            || config.otlp_protocol != OtlpProtocol::default()
        {
            config.otlp_protocol
        } else {
            match var(TRACES_PROTOCOL)
                .map(|v| (TRACES_PROTOCOL, v))
                .or_else(|| var(PROTOCOL).map(|v| (PROTOCOL, v)))
            {
                None => config.otlp_protocol,
                Some((name, v)) => match v.trim() {
                    "grpc" => OtlpProtocol::Grpc,
                    "http/protobuf" => OtlpProtocol::HttpProtobuf,
                    other => {
                        return Err(format!(
                            "{name}: expected `grpc` or `http/protobuf`, found `{other}`"
                        ));
                    }
                },
            }
        };

        let mut url = url::Url::parse(raw.trim())
            .map_err(|e| format!("{source_name}: `{raw}` is not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "{source_name}: expected an http(s) URL like `http://127.0.0.1:4317`, found `{raw}`"
            ));
        }
        if protocol == OtlpProtocol::HttpProtobuf && source != EndpointSource::TracesEnv {
            let path = url.path().trim_end_matches('/');
            if !path.ends_with("/v1/traces") {
                let full = format!("{path}/v1/traces");
                url.set_path(&full);
            }
        }
        let endpoint_for_logs = format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port().map(|p| format!(":{p}")).unwrap_or_default()
        ) + if url.path() == "/" { "" } else { url.path() };
        let endpoint = match protocol {
            // gRPC routes by service name; tonic wants the bare origin.
            OtlpProtocol::Grpc => url.as_str().trim_end_matches('/').to_owned(),
            OtlpProtocol::HttpProtobuf => url.to_string(),
        };

        let mut headers = HeaderMap::new();
        if let Some(text) = var(TRACES_HEADERS).or_else(|| var(HEADERS)) {
            for (key, value) in parse_pairs(&text) {
                match header(&key, &value) {
                    Some((k, v)) => {
                        headers.insert(k, v);
                    }
                    None => tracing::warn!(
                        header = %key,
                        "ignoring an OTLP header from the environment: invalid name or value"
                    ),
                }
            }
        }
        for (key, value) in &config.otlp_headers {
            let (k, v) = header(key, value).ok_or_else(|| {
                format!("telemetry.otlp_headers.{key}: invalid header name or value")
            })?;
            headers.insert(k, v);
        }

        let mut timeout = config.otlp_timeout;
        if timeout == DEFAULT_OTLP_TIMEOUT || timeout.is_zero() {
            timeout = DEFAULT_OTLP_TIMEOUT;
            if let Some((name, v)) = var(TRACES_TIMEOUT)
                .map(|v| (TRACES_TIMEOUT, v))
                .or_else(|| var(TIMEOUT).map(|v| (TIMEOUT, v)))
            {
                match v.trim().parse::<u64>() {
                    Ok(ms) if ms > 0 => timeout = Duration::from_millis(ms),
                    _ => tracing::warn!(
                        variable = name,
                        value = %v,
                        "ignoring an invalid OTLP timeout; expected milliseconds"
                    ),
                }
            }
        }

        Ok(Some(Settings {
            endpoint,
            endpoint_for_logs,
            protocol,
            headers,
            timeout,
            queue_size: config.queue_size.max(1),
            resource: otel_resource(config, resource, &var),
        }))
    }

    pub(super) fn protocol_name(&self) -> &'static str {
        match self.protocol {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// The OTLP resource: `OTEL_RESOURCE_ATTRIBUTES`, then `service.name`
/// (`[telemetry] service_name`, `OTEL_SERVICE_NAME`, the variable's
/// `service.name`, `synthmon`), `service.version`, `service.instance.id`
/// and `synthmon.location` (see [`Resource`]).
fn otel_resource(
    config: &TelemetryConfig,
    resource: &Resource,
    var: &dyn Fn(&str) -> Option<String>,
) -> opentelemetry_sdk::Resource {
    let mut attributes: BTreeMap<String, Value> = BTreeMap::new();
    if let Some(text) = var(RESOURCE_ATTRIBUTES) {
        for (k, v) in parse_pairs(&text) {
            attributes.insert(k, Value::from(v));
        }
    }
    let service_name = config
        .service_name
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| var(SERVICE_NAME))
        .or_else(|| {
            attributes
                .get("service.name")
                .map(|v| v.as_str().into_owned())
        })
        .unwrap_or_else(|| "synthmon".to_owned());
    attributes.insert("service.name".into(), service_name.into());
    attributes.insert("service.version".into(), env!("CARGO_PKG_VERSION").into());
    if !resource.instance.is_empty() {
        attributes.insert(
            "service.instance.id".into(),
            resource.instance.clone().into(),
        );
    } else if !attributes.contains_key("service.instance.id") {
        attributes.insert("service.instance.id".into(), process_instance_id().into());
    }
    if !resource.location.is_empty() {
        attributes.insert("synthmon.location".into(), resource.location.clone().into());
    }
    opentelemetry_sdk::Resource::builder_empty()
        .with_attributes(attributes.into_iter().map(|(k, v)| KeyValue::new(k, v)))
        .build()
}

/// This process's `service.instance.id` when nothing names the instance:
/// a random (version 4) UUID, as the semantic conventions recommend
/// (`service.instance.id` must tell instances of a service apart), drawn
/// once so that every exporter of the process, across reloads, uses it.
fn process_instance_id() -> String {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        uuid::Builder::from_random_bytes(rand::rng().random())
            .into_uuid()
            .to_string()
    })
    .clone()
}

/// Parses the `key=value,key2=value2` lists of `OTEL_EXPORTER_OTLP_HEADERS`
/// and `OTEL_RESOURCE_ATTRIBUTES` (W3C baggage style: trimmed,
/// percent-decoded); entries without `=` or with an empty key are skipped.
fn parse_pairs(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|entry| {
            let (k, v) = entry.split_once('=')?;
            let k = percent_decode(k.trim());
            let v = percent_decode(v.trim());
            (!k.is_empty()).then_some((k, v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn header(key: &str, value: &str) -> Option<(HeaderName, HeaderValue)> {
    Some((
        HeaderName::from_bytes(key.trim().as_bytes()).ok()?,
        HeaderValue::from_str(value).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn config() -> TelemetryConfig {
        TelemetryConfig {
            otlp_timeout: DEFAULT_OTLP_TIMEOUT,
            queue_size: 16,
            ..Default::default()
        }
    }

    fn resolve(config: &TelemetryConfig, env: &[(&str, &str)]) -> Option<Settings> {
        Settings::resolve(config, &Resource::default(), &env_of(env)).unwrap_or_else(|e| {
            panic!("settings do not resolve: {e}");
        })
    }

    /// The resource attribute `key` of `s`, as text.
    fn resource_attr(s: &Settings, key: &'static str) -> Option<String> {
        s.resource
            .get(&opentelemetry::Key::from_static_str(key))
            .map(|v| v.to_string())
    }

    #[test]
    fn the_resource_always_names_the_instance() {
        let mut c = config();
        c.otlp_endpoint = Some("http://collector:4317".into());
        let at = |resource: &Resource, env: &[(&str, &str)]| {
            Settings::resolve(&c, resource, &env_of(env))
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|| panic!("no settings"))
        };
        let configured = Resource {
            instance: "vm-1".into(),
            location: "eu-west".into(),
        };
        let from_env = [(RESOURCE_ATTRIBUTES, "service.instance.id=pod-7")];
        let s = at(&configured, &from_env);
        assert_eq!(
            resource_attr(&s, "service.instance.id").as_deref(),
            Some("vm-1")
        );
        assert_eq!(
            resource_attr(&s, "synthmon.location").as_deref(),
            Some("eu-west")
        );
        assert_eq!(
            resource_attr(&s, "service.name").as_deref(),
            Some("synthmon")
        );
        assert_eq!(
            resource_attr(&s, "service.version").as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );

        let s = at(&Resource::default(), &from_env);
        assert_eq!(
            resource_attr(&s, "service.instance.id").as_deref(),
            Some("pod-7")
        );
        assert_eq!(resource_attr(&s, "synthmon.location"), None);

        let generated = resource_attr(&at(&Resource::default(), &[]), "service.instance.id")
            .unwrap_or_else(|| panic!("no service.instance.id"));
        let uuid = uuid::Uuid::parse_str(&generated).unwrap_or_else(|e| panic!("{generated}: {e}"));
        assert_eq!(uuid.get_version_num(), 4, "{generated}");
        assert_eq!(
            resource_attr(&at(&Resource::default(), &[]), "service.instance.id"),
            Some(generated),
            "one id per process"
        );
    }

    #[test]
    fn pairs_are_trimmed_and_percent_decoded() {
        assert_eq!(
            parse_pairs(" a = 1 ,b=x%20y%2Cz,,novalue,=skip,c=%zz%"),
            vec![
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "x y,z".to_owned()),
                ("c".to_owned(), "%zz%".to_owned()),
            ]
        );
    }

    #[test]
    fn http_endpoints_get_the_traces_path_unless_signal_specific() {
        let mut c = config();
        c.otlp_endpoint = Some("http://collector:4318".into());
        c.otlp_protocol = OtlpProtocol::HttpProtobuf;
        let s = resolve(&c, &[]).unwrap_or_else(|| panic!("no settings"));
        assert_eq!(s.endpoint, "http://collector:4318/v1/traces");

        let s = resolve(
            &config(),
            &[
                (ENDPOINT, "https://otel.example/base/"),
                (PROTOCOL, "http/protobuf"),
            ],
        )
        .unwrap_or_else(|| panic!("no settings"));
        assert_eq!(s.endpoint, "https://otel.example/base/v1/traces");
        assert_eq!(s.endpoint_for_logs, "https://otel.example/base/v1/traces");

        let s = resolve(
            &config(),
            &[
                (TRACES_ENDPOINT, "http://c:9999/custom"),
                (ENDPOINT, "http://ignored:1"),
                (TRACES_PROTOCOL, "http/protobuf"),
            ],
        )
        .unwrap_or_else(|| panic!("no settings"));
        assert_eq!(s.endpoint, "http://c:9999/custom");
    }

    #[test]
    fn config_wins_over_the_environment() {
        let mut c = config();
        c.otlp_endpoint = Some("http://from-config:4317".into());
        c.otlp_headers = vec![("authorization".into(), "config".into())];
        c.otlp_timeout = Duration::from_secs(2);
        let s = resolve(
            &c,
            &[
                (ENDPOINT, "http://from-env:4318"),
                (PROTOCOL, "http/protobuf"),
                (HEADERS, "Authorization=env,x-extra=1"),
                (TIMEOUT, "100"),
            ],
        )
        .unwrap_or_else(|| panic!("no settings"));
        assert_eq!(s.endpoint, "http://from-config:4317");
        assert_eq!(s.protocol, OtlpProtocol::Grpc);
        assert_eq!(s.timeout, Duration::from_secs(2));
        assert_eq!(s.headers["authorization"], "config");
        assert_eq!(s.headers["x-extra"], "1");
    }

    #[test]
    fn environment_fills_what_the_config_leaves_unset() {
        let s = resolve(
            &config(),
            &[
                (ENDPOINT, "http://from-env:4318"),
                (PROTOCOL, "http/protobuf"),
                (TRACES_HEADERS, "a=1"),
                (HEADERS, "b=2"),
                (TRACES_TIMEOUT, "250"),
            ],
        )
        .unwrap_or_else(|| panic!("no settings"));
        assert_eq!(s.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(s.timeout, Duration::from_millis(250));
        assert_eq!(
            s.headers.len(),
            1,
            "signal-specific headers replace the generic ones"
        );
        assert!(resolve(&config(), &[]).is_none());
        let bad = Settings::resolve(
            &config(),
            &Resource::default(),
            &env_of(&[(ENDPOINT, "http://c:4318"), (PROTOCOL, "http/json")]),
        );
        assert!(bad.is_err());
    }
}
