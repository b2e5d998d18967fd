//! The `[grpc]` table as written ([`RawGrpc`]), checked into a
//! [`GrpcSpec`] by [`build`] with every problem located (reserved metadata
//! keys refused); the address syntax ([`Target`]); [`SCOPE`], what
//! expectations can read.

use crate::config::check::Checker;
use crate::expr::{Scope, Type, Types};
use crate::probe::kind::Assertion;
use crate::template::Text;
use http::{HeaderName, HeaderValue};
use rustls_pki_types::ServerName;
use serde::Deserialize;
use std::collections::BTreeMap;
use url::Host;

/// The variables a `grpc` expectation can read.
pub const SCOPE: Scope<'static> = Scope {
    names: &["status", "grpc_code", "grpc_message", "timings", "vars"],
    types: &[TYPES],
};

/// The types of what this kind puts in scope, so `synthmon check` catches
/// a literal of another type compared with them.
const TYPES: Types<'static> = &[
    ("status", Type::String),
    ("grpc_code", Type::Number),
    ("grpc_message", Type::String),
];

/// Metadata names gRPC or HTTP/2 reserve: the probe sets them itself, and
/// HTTP/2 forbids the connection-specific ones outright.
const RESERVED: &[&str] = &[
    "content-type",
    "te",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// The `[grpc]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrpc {
    /// `host:port`, or `http://host:port` / `https://host:port`.
    pub address: Option<String>,
    /// The service to ask about; "" (the default) asks about the server.
    pub service: Option<String>,
    pub tls: Option<bool>,
    pub server_name: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub expect: Vec<String>,
}

/// The checked `[grpc]` table.
#[derive(Debug)]
pub struct GrpcSpec {
    pub address: Text,
    pub service: String,
    /// `None`: from the address (`https://` means TLS, anything else not).
    pub tls: Option<bool>,
    /// SNI and verification name, over the environment's and the host.
    pub server_name: Option<String>,
    pub metadata: Vec<(HeaderName, Text)>,
    pub expect: Vec<Assertion>,
    /// No expectation reads `status`: anything but SERVING fails the run
    /// with `not_serving` (like the http probe's implicit 2xx).
    pub implicit_serving: bool,
    /// No expectation reads `grpc_code`: a non-OK gRPC status fails the run
    /// with `grpc`.
    pub implicit_code: bool,
}

/// Checks the raw table; problems are recorded on `c` at `grpc.…` paths.
pub(crate) fn build(raw: RawGrpc, c: &mut Checker<'_>) -> Option<GrpcSpec> {
    let address = match raw.address.as_deref() {
        None => {
            c.missing("grpc", "address");
            None
        }
        Some(a) => {
            let text = c.text("grpc.address", a, None);
            if let Some(t) = text.as_ref().filter(|t| t.is_literal()) {
                match parse_address(t.source(), raw.tls) {
                    Err(msg) => c.err("grpc.address", msg),
                    Ok(target) if raw.server_name.is_some() && !target.tls => c.err(
                        "grpc.server_name",
                        "`server_name` applies to TLS only: set `tls = true` or use an https:// address",
                    ),
                    Ok(_) => {}
                }
            }
            text
        }
    };
    let service = match raw.service.as_deref() {
        None => Some(String::new()),
        Some(s) => c.expand("grpc.service", s),
    };
    let server_name = raw
        .server_name
        .as_deref()
        .and_then(|s| c.expand("grpc.server_name", s));
    if let Some(name) = &server_name {
        if ServerName::try_from(name.clone()).is_err() {
            c.err(
                "grpc.server_name",
                format!("expected a DNS name or an IP address, found `{name}`"),
            );
        }
    }
    let mut metadata = Vec::new();
    for (name, value) in &raw.metadata {
        let key = format!("grpc.metadata.{name}");
        let header = match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => h,
            Err(_) => {
                c.err(&key, format!("`{name}` is not a valid metadata key"));
                continue;
            }
        };
        if let Some(why) = reserved(&header) {
            c.err(&key, why);
            continue;
        }
        if header.as_str().ends_with("-bin") {
            c.err(
                &key,
                "binary metadata (`-bin` keys) is not supported; send text metadata",
            );
            continue;
        }
        if let Some(t) = c.text(&key, value, None) {
            if t.is_literal() && HeaderValue::from_str(t.source()).is_err() {
                // Never echo the value: it may hold a secret.
                c.err(
                    &key,
                    "the metadata value is not valid (control characters or non-ASCII)",
                );
                continue;
            }
            metadata.push((header, t));
        }
    }
    let expect = c.expectations("grpc", &raw.expect, SCOPE);
    let implicit_serving = !expect.iter().any(|a| a.expr.reads("status"));
    let implicit_code = !expect.iter().any(|a| a.expr.reads("grpc_code"));
    Some(GrpcSpec {
        address: address?,
        service: service?,
        tls: raw.tls,
        server_name,
        metadata,
        expect,
        implicit_serving,
        implicit_code,
    })
}

/// Why a metadata key may not be set by a probe, if it may not.
pub(super) fn reserved(name: &HeaderName) -> Option<String> {
    let n = name.as_str();
    if n.starts_with("grpc-") {
        return Some(format!("`{n}`: `grpc-` keys are reserved by gRPC"));
    }
    RESERVED
        .contains(&n)
        .then(|| format!("`{n}` is set by the probe (or forbidden in HTTP/2)"))
}

/// Where to call: parsed from `address`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Target {
    pub(super) host: Host<String>,
    pub(super) port: u16,
    pub(super) tls: bool,
}

impl Target {
    /// `host:port`, the `:authority` of the call.
    pub(super) fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Parses `host:port`, `[v6]:port` or an `http://`/`https://` URL; an
/// explicit `tls` must agree with a URL's scheme.
pub(super) fn parse_address(text: &str, tls: Option<bool>) -> Result<Target, String> {
    let text = text.trim();
    if text.contains("://") {
        let url = url::Url::parse(text)
            .map_err(|e| format!("expected `host:port` or an http(s) URL, found `{text}`: {e}"))?;
        let secure = match url.scheme() {
            "http" => false,
            "https" => true,
            other => {
                return Err(format!(
                    "unsupported scheme `{other}` in `{text}` (expected http or https, or `host:port`)"
                ));
            }
        };
        if tls.is_some_and(|t| t != secure) {
            return Err(format!(
                "`tls = {}` contradicts the {} scheme of `{text}`",
                !secure,
                url.scheme()
            ));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(format!(
                "`{text}` has a path or query; a gRPC address is only a scheme, host and port"
            ));
        }
        let (Some(host), Some(port)) = (url.host(), url.port_or_known_default()) else {
            return Err(format!("`{text}` has no host"));
        };
        return Ok(Target {
            host: host.to_owned(),
            port,
            tls: secure,
        });
    }
    let bad = |why: &str| format!("expected `host:port` or an http(s) URL, found `{text}`: {why}");
    let (host, port) = text.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?;
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if host.contains(':') && !host.starts_with('[') {
        return Err(bad("write an IPv6 address in brackets, like `[::1]:50051`"));
    }
    let host = Host::parse(host).map_err(|e| bad(&e.to_string()))?;
    Ok(Target {
        host,
        port,
        tls: tls.unwrap_or(false),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_or_without_a_scheme() {
        let t = parse_address("127.0.0.1:50051", None).unwrap();
        assert_eq!((t.authority().as_str(), t.tls), ("127.0.0.1:50051", false));
        let t = parse_address("[::1]:443", Some(true)).unwrap();
        assert_eq!((t.authority().as_str(), t.tls), ("[::1]:443", true));
        let t = parse_address("https://grpc.example", None).unwrap();
        assert_eq!((t.authority().as_str(), t.tls), ("grpc.example:443", true));
        let t = parse_address("http://localhost:8080/", None).unwrap();
        assert_eq!((t.authority().as_str(), t.tls), ("localhost:8080", false));
        for (bad, why) in [
            ("localhost", "no port"),
            ("localhost:0", "1 to 65535"),
            (":80", "no host"),
            ("::1:80", "brackets"),
            ("ftp://h:1", "unsupported scheme"),
            ("http://h:1/x", "path"),
        ] {
            let err = parse_address(bad, None).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let err = parse_address("https://h:1", Some(false)).unwrap_err();
        assert!(err.contains("contradicts"), "{err}");
    }
}
