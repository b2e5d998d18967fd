//! The `dns` probe: one query to a chosen DNS server for one record type:
//! rcode, answer set, latency.
//!
//! The probe speaks DNS itself, with hickory-proto's message types, rather
//! than going through a resolver library: the server is always the one the
//! probe names (never the system's resolver), every run sends its own query
//! (there is no cache between runs to hide an outage), and the exchange is
//! ours to time and to bound. Four transports carry the same query and get
//! the same answer checks:
//!
//! - `udp` (the default): the query is retransmitted every [`UDP_RETRY`]
//!   within the run's deadline, and a truncated answer (TC bit) is asked
//!   again over TCP, as a stub resolver does;
//! - `tcp`: one connection, the message behind a two-byte length (RFC 1035
//!   §4.2.2);
//! - `tls` (DNS over TLS, RFC 7858): the same framing inside TLS, port 853
//!   by default, offering ALPN `dot`;
//! - `https` (DNS over HTTPS, RFC 8484): `server` is a URL; the query is
//!   POSTed as `application/dns-message` through the net layer's HTTP/1.1
//!   exchange ([`crate::net::http1`]), and a non-2xx status (`status`) or
//!   another content type (`protocol`) fails before the answer is read.
//!   `http://` is accepted for loopback hosts only (the sandbox, tests).
//!
//! TLS (for `tls` and `https`) is the strict client of every kind that aborts
//! on a bad certificate: the environment's trust and client certificate, or
//! the system roots plus `ca_file`; `server_name` is the name verified and
//! sent as SNI (the environment's `server_name` belongs to its base URL and
//! does not apply). A bad certificate fails with `cert_expired`,
//! `cert_hostname` or `cert_untrusted`, worded by
//! [`crate::net::error::cert_failure`] as everywhere else.
//!
//! Every query carries a fresh random id, DNS over HTTPS included: RFC 8484
//! recommends id 0 so that HTTP caches can share answers, but a monitor
//! wants no cache between it and the server, a POST is not cached anyway,
//! and one id check for every transport keeps the answer checks the same.
//!
//! Phases: `resolve` (rendering the templates and, when the server is given
//! by host name, resolving it with the system's resolver), for `tls` and
//! `https` then `connect` and `tls` (zero over `http://`), and `query` (from
//! the first byte of the query sent to the accepted answer, TCP fallback
//! included); they add up to the run's duration.
//!
//! Hostile servers: an answer whose id or question does not match the
//! query, or that does not parse, is ignored over UDP (it may be spoofed or
//! stale; the real answer may still come) and is a `protocol` failure over
//! a connection. A run that saw only such datagrams before its deadline
//! fails with reason `protocol` and says what was wrong with them; one that
//! saw nothing fails with `timeout`. Every read is sized: one 64 KiB
//! datagram buffer, one message of at most 64 KiB over a connection or as an
//! HTTP body.

use super::kind::{Assertion, BuildInput, Kind, KindEntry, RunContext, RunFuture};
use super::tls::{self as tls_probe, CaFile};
use crate::config::check::Checker;
use crate::expr::{Facts, json_value};
use crate::expr::{Scope, Type, Types};
use crate::net::http1::{self, TransportOptions};
use crate::net::{Clock, Fail, TlsSetup, close, dial};
use crate::outcome::{
    AssertionResult, Details, FailureReason, GaugeSpec, KindFacts, Outcome, SourceLocation,
};
use crate::tagging::RunIds;
use crate::template::Text;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use http::{HeaderMap, HeaderValue, Method, header};
use serde::{Deserialize, Serialize};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};
use url::{Host, Url};

/// The variables a `dns` expectation can read.
pub const SCOPE: Scope<'static> = Scope {
    names: &[
        "rcode",
        "answers",
        "authority",
        "additional",
        "authenticated",
        "timings",
        "vars",
    ],
    types: &[TYPES],
};

/// The types of what this kind puts in scope, so `synthmon check` catches
/// a literal of another type compared with them.
const TYPES: Types<'static> = &[
    ("rcode", Type::String),
    ("authority", Type::Number),
    ("additional", Type::Number),
    ("authenticated", Type::Bool),
];

/// How long a UDP query waits for its answer before it is sent again
/// (within the run's deadline): long enough for any sane server, short
/// enough that one lost datagram does not fail a run of a few seconds.
pub const UDP_RETRY: Duration = Duration::from_secs(1);

/// The port a server written without one listens on.
const DEFAULT_PORT: u16 = 53;

/// The port of DNS over TLS (RFC 7858 §3.1).
const DOT_PORT: u16 = 853;

/// The ALPN protocol DNS over TLS offers (IANA's `dot`).
const DOT_ALPN: &[u8] = b"dot";

/// The media type of a DNS message over HTTPS (RFC 8484 §6).
const DNS_MESSAGE: &str = "application/dns-message";

/// The largest DNS message there is (its length is two bytes over TCP),
/// so the cap on a DNS-over-HTTPS body.
const MAX_MESSAGE: u64 = 65_535;

/// The receive buffer for a UDP answer: the largest datagram there is, so a
/// legitimate answer is never cut by the kernel into something unparseable.
const UDP_BUFFER: usize = 65_536;

/// The fixed DNS header that starts every message.
const HEADER_LEN: usize = 12;

/// Response codes by their mnemonic, as dig and zone files write them.
const RCODES: &[(u16, &str)] = &[
    (0, "NOERROR"),
    (1, "FORMERR"),
    (2, "SERVFAIL"),
    (3, "NXDOMAIN"),
    (4, "NOTIMP"),
    (5, "REFUSED"),
    (6, "YXDOMAIN"),
    (7, "YXRRSET"),
    (8, "NXRRSET"),
    (9, "NOTAUTH"),
    (10, "NOTZONE"),
    (16, "BADVERS"),
    (17, "BADKEY"),
    (18, "BADTIME"),
    (19, "BADMODE"),
    (20, "BADNAME"),
    (21, "BADALG"),
    (22, "BADTRUNC"),
    (23, "BADCOOKIE"),
];

/// Record types suggested when `type` is not one hickory knows.
const COMMON_TYPES: &str = "A, AAAA, CNAME, MX, TXT, NS, SOA, SRV, PTR, CAA, HTTPS, SVCB";

/// The `[dns]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    /// `host:port`, `host`, `ip`, `ip:port` or `[ipv6]:port`; for
    /// `transport = "https"` a URL; a template.
    pub server: Option<String>,
    /// The name to query; a template.
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub record_type: Option<String>,
    /// `udp` (default), `tcp`, `tls` or `https`.
    pub transport: Option<String>,
    /// `tls` and `https` only: the name to verify and send as SNI
    /// (default: the server's host).
    pub server_name: Option<String>,
    /// `tls` and `https` only: extra trust anchors (PEM) instead of the
    /// environment's; a template.
    pub ca_file: Option<String>,
    pub recursion_desired: Option<bool>,
    pub expect_rcode: Option<OneOrMany>,
    /// Ask for and require the AD bit: the server validated the answer
    /// with DNSSEC.
    pub expect_ad: Option<bool>,
    #[serde(default)]
    pub expect: Vec<String>,
}

/// One value or a list of them (`expect_rcode = "NXDOMAIN"` or
/// `expect_rcode = ["NOERROR", "NXDOMAIN"]`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// How the query travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Datagrams, retransmitted, with a TCP retry for truncated answers.
    Udp,
    /// One TCP connection, two-byte length prefix (RFC 1035 §4.2.2).
    Tcp,
    /// DNS over TLS (RFC 7858): the TCP framing inside TLS.
    Tls,
    /// DNS over HTTPS (RFC 8484): one POST of the message.
    Https,
}

impl Transport {
    /// As written in `transport` and reported in the facts.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Https => "https",
        }
    }

    /// The phases a run reports, in order, each listed even when it took
    /// no time.
    fn phases(self) -> &'static [&'static str] {
        match self {
            Transport::Udp | Transport::Tcp => &["resolve", "query"],
            Transport::Tls | Transport::Https => &["resolve", "connect", "tls", "query"],
        }
    }

    /// Whether the transport speaks TLS, so `server_name` and `ca_file`
    /// apply.
    fn secure(self) -> bool {
        matches!(self, Transport::Tls | Transport::Https)
    }
}

/// The checked `[dns]` table.
#[derive(Debug)]
pub struct DnsSpec {
    pub server: Text,
    pub name: Text,
    pub record_type: RecordType,
    pub transport: Transport,
    /// `tls` and `https`: SNI and verification name instead of the host.
    pub server_name: Option<String>,
    /// `tls` and `https`: the trust anchors instead of the environment's.
    pub ca_file: Option<CaFile>,
    pub recursion_desired: bool,
    /// The rcodes that pass (numeric); any other fails the run with reason
    /// `rcode`, whatever the expectations say.
    pub expect_rcode: Vec<u16>,
    /// Where the rcode check comes from (`expect_rcode`, or `name` when it
    /// is the implicit NOERROR), for its assertion result.
    pub rcode_location: SourceLocation,
    /// `expect_ad = true`: the query sets the AD bit (RFC 6840 §5.7) and an
    /// answer without it fails with reason `assertion`; where it was written.
    pub expect_ad: Option<SourceLocation>,
    pub expect: Vec<Assertion>,
}

/// One resource record as reports and expressions see it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Answer {
    /// The owner name, fully qualified (`api.sandbox.test.`).
    pub name: String,
    #[serde(rename = "type")]
    pub record_type: String,
    pub ttl: u32,
    /// The record data in presentation form: `127.0.0.1`,
    /// `10 mail.example.`, the text of a TXT record.
    pub data: String,
}

/// What a `dns` run saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DnsFacts {
    /// The server as queried: over UDP and TCP its address (after resolving
    /// its name), over TLS `host:port` as written, over HTTPS the URL.
    pub server: String,
    /// The query name, fully qualified.
    pub name: String,
    #[serde(rename = "type")]
    pub record_type: String,
    /// The transport that carried the answer: `udp`, `tcp` (also after a
    /// truncated UDP answer), `tls` or `https`.
    pub transport: &'static str,
    /// DNS over HTTPS: the response's status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// DNS over TLS or HTTPS: the earliest `notAfter` of the server's
    /// certificates, Unix seconds (`probe_ssl_earliest_cert_expiry`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub earliest_cert_expiry: Option<i64>,
    /// The UDP answer came truncated (TC bit), so it was asked again over TCP.
    pub truncated: bool,
    /// UDP datagrams sent, retransmissions included.
    pub udp_queries: u32,
    /// The answer's rcode mnemonic (`NOERROR`, `NXDOMAIN`, …), when one came.
    pub rcode: Option<String>,
    /// The same, numeric (for the `probe_dns_rcode` gauge).
    pub rcode_value: Option<u16>,
    /// The AA bit: the server answered with authority for the zone.
    pub authoritative: bool,
    /// The AD bit: the server validated the answer with DNSSEC.
    pub authenticated: bool,
    pub answers: Vec<Answer>,
    /// Records in the authority section.
    pub authority: u64,
    /// Records in the additional section.
    pub additional: u64,
    /// The `query` phase in seconds, when it started.
    pub lookup_time_seconds: Option<f64>,
}

impl DnsFacts {
    /// Gauges for /metrics, labelled with probe and environment; the
    /// section counts and the rcode only when an answer came.
    pub fn gauges(&self) -> Vec<(&'static str, f64)> {
        let mut gauges = Vec::new();
        if let Some(seconds) = self.lookup_time_seconds {
            gauges.push(("probe_dns_lookup_time_seconds", seconds));
        }
        if let Some(rcode) = self.rcode_value {
            gauges.push(("probe_dns_answer_rrs", self.answers.len() as f64));
            gauges.push(("probe_dns_authority_rrs", self.authority as f64));
            gauges.push(("probe_dns_additional_rrs", self.additional as f64));
            gauges.push(("probe_dns_rcode", f64::from(rcode)));
        }
        gauges
    }
}

/// Checks the raw table; problems are recorded on `c` at `dns.…` paths.
pub(crate) fn build(raw: RawDns, c: &mut Checker<'_>) -> Option<DnsSpec> {
    let errors = c.error_count();
    let transport = match raw.transport.as_deref() {
        None | Some("udp") => Some(Transport::Udp),
        Some("tcp") => Some(Transport::Tcp),
        Some("tls") => Some(Transport::Tls),
        Some("https") => Some(Transport::Https),
        Some(other) => {
            c.err(
                "dns.transport",
                format!("expected `udp`, `tcp`, `tls` or `https`, found `{other}`"),
            );
            None
        }
    };
    let server = match raw.server.as_deref() {
        None => {
            c.missing("dns", "server");
            None
        }
        Some(value) => c.text("dns.server", value, None).inspect(|text| {
            if text.is_literal() {
                // Under a transport that is not one, the server is judged
                // by its own shape, so its mistakes are reported too.
                let judged = transport.unwrap_or(if text.source().contains("://") {
                    Transport::Https
                } else {
                    Transport::Udp
                });
                if let Err(e) = check_server(text.source(), judged) {
                    c.err("dns.server", e);
                }
            }
        }),
    };
    if transport.is_some_and(|t| !t.secure()) {
        for (key, set) in [
            ("server_name", raw.server_name.is_some()),
            ("ca_file", raw.ca_file.is_some()),
        ] {
            if set {
                c.err(
                    &format!("dns.{key}"),
                    format!("`{key}` applies with `transport = \"tls\"` or `\"https\"` only"),
                );
            }
        }
    }
    let server_name = tls_probe::server_name(c, "dns.server_name", raw.server_name);
    let ca_file = raw
        .ca_file
        .as_deref()
        .and_then(|f| CaFile::build(c, "dns.ca_file", f));
    let record_type = match raw.record_type.as_deref() {
        None => RecordType::A,
        Some(text) => parse_type(text).unwrap_or_else(|e| {
            c.err("dns.type", e);
            RecordType::A
        }),
    };
    let name = match raw.name.as_deref() {
        None => {
            c.missing("dns", "name");
            None
        }
        Some(value) => c.text("dns.name", value, None).inspect(|text| {
            if text.is_literal() {
                if let Err(e) = query_name(text.source(), record_type) {
                    c.err("dns.name", e);
                }
            }
        }),
    };
    let (expect_rcode, rcode_location) = match raw.expect_rcode {
        None => (vec![0], c.location("dns.name")),
        Some(written) => {
            let (list, paths): (Vec<String>, Vec<String>) = match written {
                OneOrMany::One(s) => (vec![s], vec!["dns.expect_rcode".to_owned()]),
                OneOrMany::Many(list) => {
                    let paths = (0..list.len())
                        .map(|i| format!("dns.expect_rcode[{i}]"))
                        .collect();
                    (list, paths)
                }
            };
            if list.is_empty() {
                c.err("dns.expect_rcode", "expected at least one rcode");
            }
            let mut codes = Vec::new();
            for (text, path) in list.iter().zip(&paths) {
                match parse_rcode(text) {
                    Some(code) => codes.push(code),
                    None => c.err(
                        path,
                        format!(
                            "unknown rcode `{text}`: expected a name like NOERROR, NXDOMAIN, SERVFAIL, REFUSED, or a number"
                        ),
                    ),
                }
            }
            (codes, c.location("dns.expect_rcode"))
        }
    };
    let expect_ad = (raw.expect_ad == Some(true)).then(|| c.location("dns.expect_ad"));
    let expect = c.expectations("dns", &raw.expect, SCOPE);
    if c.error_count() > errors {
        return None;
    }
    Some(DnsSpec {
        server: server?,
        name: name?,
        record_type,
        transport: transport?,
        server_name,
        ca_file,
        recursion_desired: raw.recursion_desired.unwrap_or(true),
        expect_rcode,
        rcode_location,
        expect_ad,
        expect,
    })
}

/// Checks a literal `server` in the form its transport takes.
fn check_server(text: &str, transport: Transport) -> Result<(), String> {
    match transport {
        Transport::Udp | Transport::Tcp => parse_server(text, DEFAULT_PORT).map(drop),
        Transport::Tls => parse_server(text, DOT_PORT).map(drop),
        Transport::Https => doh_url(text).map(drop),
    }
}

/// A record type by name (any case), or `TYPE65` for a numeric one.
fn parse_type(text: &str) -> Result<RecordType, String> {
    let upper = text.trim().to_ascii_uppercase();
    if let Some(number) = upper.strip_prefix("TYPE") {
        if let Ok(n) = number.parse::<u16>() {
            return Ok(RecordType::from(n));
        }
    }
    match upper.parse::<RecordType>() {
        // OPT is EDNS' pseudo-record, not something to ask for.
        Ok(RecordType::OPT) | Err(_) => Err(format!(
            "unknown record type `{text}`: expected one of {COMMON_TYPES}, … or `TYPE<number>`"
        )),
        Ok(t) => Ok(t),
    }
}

/// An rcode by mnemonic (any case), `RCODE<n>`, or number.
fn parse_rcode(text: &str) -> Option<u16> {
    let upper = text.trim().to_ascii_uppercase();
    if let Some(&(code, _)) = RCODES.iter().find(|(_, name)| *name == upper) {
        return Some(code);
    }
    let digits = upper.strip_prefix("RCODE").unwrap_or(&upper);
    digits.parse::<u16>().ok().filter(|n| *n < 4096)
}

/// The mnemonic of an rcode, `RCODE<n>` for one without a name.
pub fn rcode_name(code: u16) -> String {
    RCODES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or_else(|| format!("RCODE{code}"), |(_, name)| (*name).to_owned())
}

/// Where to send the query, as written.
#[derive(Debug, PartialEq)]
enum ServerAddr {
    Ip(SocketAddr),
    Host(String, u16),
}

/// Parses `server`: `ip`, `ip:port`, `[ipv6]`, `[ipv6]:port`, `host` or
/// `host:port`; the port defaults to `default_port` (53, or 853 over TLS).
fn parse_server(text: &str, default_port: u16) -> Result<ServerAddr, String> {
    let text = text.trim();
    let invalid = |why: &str| {
        format!("expected `host:port` or `host` (port {default_port}), found `{text}`: {why}")
    };
    if text.is_empty() {
        return Err(invalid("it is empty"));
    }
    if text.contains("://") {
        return Err(invalid(
            "a URL names a DNS-over-HTTPS server: set `transport = \"https\"`",
        ));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(invalid("port 0 cannot be queried"));
        }
        return Ok(ServerAddr::Ip(addr));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(ServerAddr::Ip(SocketAddr::new(ip, default_port)));
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner
            .parse::<Ipv6Addr>()
            .map(|ip| ServerAddr::Ip(SocketAddr::new(ip.into(), default_port)))
            .map_err(|_| invalid("not an IPv6 address in brackets"));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => match port.parse::<u16>() {
            Ok(p) if p != 0 => (host, p),
            _ => return Err(invalid("the port is not a number from 1 to 65535")),
        },
        None => (text, default_port),
    };
    let valid_host = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '.' | '_'));
    if !valid_host {
        return Err(invalid("not a host name or IP address"));
    }
    Ok(ServerAddr::Host(host.to_owned(), port))
}

impl ServerAddr {
    /// The host and port as [`dial`] takes them.
    fn dial_target(&self) -> (Host<String>, u16) {
        match self {
            ServerAddr::Ip(SocketAddr::V4(addr)) => (Host::Ipv4(*addr.ip()), addr.port()),
            ServerAddr::Ip(SocketAddr::V6(addr)) => (Host::Ipv6(*addr.ip()), addr.port()),
            ServerAddr::Host(host, port) => (Host::Domain(host.clone()), *port),
        }
    }
}

/// Parses a DNS-over-HTTPS `server`: an `https://` URL (its path is the
/// server's, `/dns-query` by convention), or `http://` to a loopback host
/// (the sandbox, a test server), since DNS over plain HTTP across a network
/// is neither private nor authenticated.
fn doh_url(text: &str) -> Result<Url, String> {
    let text = text.trim();
    let url = Url::parse(text).map_err(|e| {
        format!("expected a URL like `https://dns.example/dns-query`, found `{text}`: {e}")
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the URL carries credentials (`user:password@`), which are not sent and would show in reports: remove them"
                .to_owned(),
        );
    }
    match (url.scheme(), url.host()) {
        ("https", Some(_)) => Ok(url),
        ("http", Some(host)) if loopback(&host) => Ok(url),
        ("http", Some(host)) => Err(format!(
            "`http://` is allowed for loopback hosts only (127.0.0.1, ::1, localhost), not `{host}`: DNS over plain HTTP would cross the network unencrypted; use https://"
        )),
        (scheme, _) => Err(format!(
            "expected an https:// URL like `https://dns.example/dns-query`, found `{text}` (scheme `{scheme}`)"
        )),
    }
}

/// Whether `host` is this machine's loopback: an address in 127.0.0.0/8,
/// `::1`, or the name `localhost`.
fn loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
        Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
    }
}

/// The query name: always fully qualified (a probe has no search list). For
/// PTR queries an IP address stands for its reverse name.
fn query_name(text: &str, record_type: RecordType) -> Result<Name, String> {
    let text = text.trim();
    if record_type == RecordType::PTR {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Name::from(ip));
        }
    }
    if text.is_empty() {
        return Err("expected a domain name, found an empty string".to_owned());
    }
    let mut name = Name::from_str_relaxed(text)
        .map_err(|e| format!("`{text}` is not a valid domain name: {e}"))?;
    name.set_fqdn(true);
    Ok(name)
}

/// Whether the section counts of a message's header could describe a
/// message of this length (each question takes at least 5 bytes, each
/// record 11). hickory reserves room for the counts before it parses, so
/// this keeps a hostile 12-byte datagram from costing megabytes.
pub fn counts_fit(message: &[u8]) -> bool {
    let Some(header) = message.get(..HEADER_LEN) else {
        return false;
    };
    let count = |i: usize| usize::from(u16::from_be_bytes([header[i], header[i + 1]]));
    let needed = count(4) * 5 + (count(6) + count(8) + count(10)) * 11;
    needed <= message.len() - HEADER_LEN
}

/// Whether the `query` phase began, for `probe_dns_lookup_time_seconds`.
struct Progress {
    queried: bool,
}

pub async fn run(spec: &DnsSpec, ctx: &RunContext<'_>) -> Outcome {
    let ids = RunIds::generate();
    let mut outcome = Outcome::new(&ctx.probe.name, &ctx.env.name, "dns", &ids);
    let mut facts = DnsFacts {
        record_type: spec.record_type.to_string(),
        transport: spec.transport.name(),
        ..DnsFacts::default()
    };
    let mut clock = Clock::new(ctx.deadline(), spec.transport.phases());
    let mut progress = Progress { queried: false };
    let result = exchange(spec, ctx, &ids, &mut clock, &mut facts, &mut progress).await;
    clock.record(&mut outcome);
    ctx.redactor.scrub(&mut facts.server);
    if progress.queried {
        facts.lookup_time_seconds = outcome
            .phases
            .iter()
            .find(|p| p.name == "query")
            .map(|p| p.seconds.as_secs_f64());
    }
    match result {
        Err(fail) => outcome.fail(fail.reason, fail.message),
        Ok(message) => {
            outcome.responded = true;
            let code = u16::from(message.response_code());
            let rcode = rcode_name(code);
            facts.rcode = Some(rcode.clone());
            facts.rcode_value = Some(code);
            facts.authoritative = message.authoritative();
            facts.authenticated = message.authentic_data();
            facts.answers = message
                .answers()
                .iter()
                .map(|r| Answer {
                    name: r.name().to_string(),
                    record_type: r.record_type().to_string(),
                    ttl: r.ttl(),
                    data: r.data().to_string(),
                })
                .collect();
            facts.authority = message.name_servers().len() as u64;
            facts.additional = message.additionals().len() as u64;
            let wanted = spec
                .expect_rcode
                .iter()
                .map(|c| rcode_name(*c))
                .collect::<Vec<_>>()
                .join(" or ");
            let passed = spec.expect_rcode.contains(&code);
            outcome.assertions.push(AssertionResult {
                expression: format!("rcode is {wanted} (expect_rcode)"),
                passed,
                actual: if passed {
                    String::new()
                } else {
                    format!("rcode = {rcode}")
                },
                location: Some(spec.rcode_location.clone()),
            });
            if !passed {
                outcome.fail(
                    FailureReason::Rcode,
                    format!(
                        "{} answered {rcode} for {} {}, expected {wanted}",
                        facts.server, facts.name, facts.record_type
                    ),
                );
            }
            if let Some(location) = &spec.expect_ad {
                let passed = facts.authenticated;
                outcome.assertions.push(AssertionResult {
                    expression: "the AD bit is set (expect_ad)".to_owned(),
                    passed,
                    actual: if passed {
                        String::new()
                    } else {
                        "authenticated = false".to_owned()
                    },
                    location: Some(location.clone()),
                });
                if !passed {
                    outcome.fail(
                        FailureReason::Assertion,
                        format!(
                            "{} answered {} {} without the AD bit: it did not vouch for the answer with DNSSEC",
                            facts.server, facts.name, facts.record_type
                        ),
                    );
                }
            }
            let scope = expression_facts(&facts, clock.timings(), ctx);
            ctx.check_expectations(&mut outcome, &spec.expect, scope);
        }
    }
    outcome.details = Some(Details::new(facts));
    super::kind::finish(&mut outcome);
    super::kind::redact(outcome, ctx.redactor)
}

/// The values an expectation can read about an answer.
fn expression_facts(facts: &DnsFacts, timings: cel::Value, ctx: &RunContext<'_>) -> Facts {
    let answers = serde_json::to_value(&facts.answers).unwrap_or(serde_json::Value::Null);
    let mut f = Facts::default();
    f.set("rcode", facts.rcode.clone().unwrap_or_default());
    f.set("answers", json_value(&answers));
    f.set("authority", facts.authority as i64);
    f.set("additional", facts.additional as i64);
    f.set("authenticated", facts.authenticated);
    f.set("timings", timings);
    f.set("vars", super::kind::vars_value(ctx.vars));
    f
}

/// Renders the templates, reaches the server over the spec's transport and
/// asks it, lapping the phases on `clock`; the answer is one whose id and
/// question match the query.
async fn exchange(
    spec: &DnsSpec,
    ctx: &RunContext<'_>,
    ids: &RunIds,
    clock: &mut Clock,
    facts: &mut DnsFacts,
    progress: &mut Progress,
) -> Result<Message, Fail> {
    let request = |what: &str, e: String| Fail::new(FailureReason::Request, format!("{what}: {e}"));
    let server = ctx
        .render(&spec.server, ids)
        .map_err(|e| request("cannot render `server`", e))?;
    let name = ctx
        .render(&spec.name, ids)
        .map_err(|e| request("cannot render `name`", e))?;
    let name = query_name(&name, spec.record_type).map_err(|e| request("`name`", e))?;
    facts.name = name.to_string();
    facts.server.clone_from(&server);
    let query = Query::query(name, spec.record_type);
    let mut asked = Asked {
        peer: server.clone(),
        query: &query,
        recursion_desired: spec.recursion_desired,
        authentic_data: spec.expect_ad.is_some(),
        deadline: clock.deadline(),
        timeout: ctx.probe.timeout,
    };
    match spec.transport {
        Transport::Udp | Transport::Tcp => {
            let server = parse_server(&server, DEFAULT_PORT).map_err(|e| request("`server`", e))?;
            let resolved = match server {
                ServerAddr::Ip(addr) => Ok(addr),
                ServerAddr::Host(host, port) => {
                    resolve(&host, port, clock.deadline(), ctx.probe.timeout).await
                }
            };
            clock.lap("resolve");
            let addr = resolved?;
            facts.server = addr.to_string();
            asked.peer = facts.server.clone();
            progress.queried = true;
            let answer = plain_exchange(spec.transport, addr, &asked, facts).await;
            clock.lap("query");
            answer
        }
        Transport::Tls => {
            let (host, port) = parse_server(&server, DOT_PORT)
                .map_err(|e| request("`server`", e))?
                .dial_target();
            let config = tls_probe::strict_config(spec.ca_file.as_ref(), ctx, ids)
                .await
                .map_err(|e| Fail::new(FailureReason::Request, e))?;
            clock.lap("resolve");
            let tls = TlsSetup {
                config,
                server_name: spec.server_name.as_deref(),
                alpn: DOT_ALPN,
            };
            let dialed = dial(&host, port, Some(tls), clock, ["resolve", "connect", "tls"]).await?;
            facts.earliest_cert_expiry = dialed.cert_expiry;
            progress.queried = true;
            let mut stream = dialed.io;
            let answer = framed_exchange(&mut stream, &asked, "tls").await;
            clock.lap("query");
            close(stream, clock.deadline()).await;
            answer
        }
        Transport::Https => {
            let url = doh_url(&server).map_err(|e| request("`server`", e))?;
            let config = tls_probe::strict_config(spec.ca_file.as_ref(), ctx, ids)
                .await
                .map_err(|e| Fail::new(FailureReason::Request, e))?;
            let options = TransportOptions {
                follow_redirects: false,
                max_redirects: 0,
                max_body_bytes: MAX_MESSAGE,
                decompress: false,
                tls: config,
                server_name: spec.server_name.clone(),
                // A resolver is asked directly, like the other transports.
                proxy: None,
                // DoH over whichever version the server picks by ALPN.
                version: crate::net::http2::HttpVersion::Auto,
            };
            let (id, body) = asked.encode()?;
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE));
            headers.insert(header::ACCEPT, HeaderValue::from_static(DNS_MESSAGE));
            ids.apply(ctx.tagging, &ctx.probe.name, &mut headers);
            let post = http1::Request {
                method: Method::POST,
                url,
                headers,
                body: body.into(),
            };
            clock.lap("resolve");
            let exchanged = http1::exchange(post, &options, clock.deadline()).await;
            // The exchange timed its own resolve, connect and handshake;
            // the rest of it (the request and the answer) is the query.
            let phases = match &exchanged {
                Ok(response) => response.phases,
                Err(failure) => failure.phases,
            };
            clock.charge("resolve", phases.resolve);
            clock.charge("connect", phases.connect);
            clock.charge("tls", phases.tls);
            progress.queried = exchanged.is_ok() || phases.processing > Duration::ZERO;
            let answer = match exchanged {
                Ok(response) => https_answer(response, &asked, id, facts),
                Err(failure) => Err(Fail::new(failure.reason, failure.message)),
            };
            clock.lap("query");
            answer
        }
    }
}

/// Over UDP, then over TCP when the answer came truncated; or over TCP.
async fn plain_exchange(
    transport: Transport,
    addr: SocketAddr,
    asked: &Asked<'_>,
    facts: &mut DnsFacts,
) -> Result<Message, Fail> {
    if transport == Transport::Tcp {
        return tcp_exchange(addr, asked).await;
    }
    let answer = udp_exchange(addr, asked, facts).await?;
    if !answer.truncated() {
        return Ok(answer);
    }
    facts.truncated = true;
    facts.transport = "tcp";
    tcp_exchange(addr, asked).await
}

/// Judges a DNS-over-HTTPS response: a 2xx status (else `status`), the
/// DNS message media type (else `protocol`), then the answer as over any
/// connection.
fn https_answer(
    response: http1::Response,
    asked: &Asked<'_>,
    id: u16,
    facts: &mut DnsFacts,
) -> Result<Message, Fail> {
    facts.http_status = Some(response.status.as_u16());
    facts.earliest_cert_expiry = response.tls_earliest_expiry;
    if !response.status.is_success() {
        return Err(Fail::new(
            FailureReason::Status,
            format!(
                "{} answered HTTP {}, expected 2xx with a DNS message",
                asked.peer, response.status
            ),
        ));
    }
    let written = response
        .headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let media = written
        .as_deref()
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase());
    if media.as_deref() != Some(DNS_MESSAGE) {
        let found = match written {
            // A header is the server's to write: a few words of it say enough.
            Some(t) => format!("content type `{}`", t.chars().take(64).collect::<String>()),
            None => "no content type".to_owned(),
        };
        return Err(Fail::new(
            FailureReason::Protocol,
            format!(
                "{} answered with {found}, expected {DNS_MESSAGE}",
                asked.peer
            ),
        ));
    }
    asked.accept(&response.body, id).map_err(|why| {
        Fail::new(
            FailureReason::Protocol,
            format!("{} answered over https with {why}", asked.peer),
        )
    })
}

/// Resolves the server's host name with the system's resolver, within the
/// deadline; the first address wins.
async fn resolve(
    host: &str,
    port: u16,
    deadline: Instant,
    timeout: Duration,
) -> Result<SocketAddr, Fail> {
    let dns = |why: String| Fail::new(FailureReason::Dns, format!("cannot resolve {host}: {why}"));
    let mut addrs = timeout_at(deadline, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| {
            Fail::new(
                FailureReason::Timeout,
                format!(
                    "deadline of {} exceeded while resolving the server name {host}",
                    humantime::format_duration(timeout)
                ),
            )
        })?
        .map_err(|e| dns(e.to_string()))?;
    addrs
        .next()
        .ok_or_else(|| dns("no address found".to_owned()))
}

/// One question to one server.
struct Asked<'a> {
    /// The server as messages name it: its address, `host:port` or URL.
    peer: String,
    query: &'a Query,
    recursion_desired: bool,
    /// Set the AD bit in the query: the client understands it (RFC 6840
    /// §5.7), so a validating server reports its verdict.
    authentic_data: bool,
    deadline: Instant,
    /// The probe's timeout, for messages.
    timeout: Duration,
}

impl Asked<'_> {
    /// The query message with a fresh random id.
    fn encode(&self) -> Result<(u16, Vec<u8>), Fail> {
        let id: u16 = rand::random();
        let mut message = Message::new();
        message
            .set_id(id)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(self.recursion_desired)
            .set_authentic_data(self.authentic_data)
            .add_query(self.query.clone());
        let bytes = message.to_vec().map_err(|e| {
            Fail::new(
                FailureReason::Request,
                format!("cannot encode the query for {}: {e}", self.query.name()),
            )
        })?;
        Ok((id, bytes))
    }
    /// Checks that `bytes` are the answer to the query with `id`; says why not.
    fn accept(&self, bytes: &[u8], id: u16) -> Result<Message, String> {
        if bytes.len() < HEADER_LEN {
            return Err(format!(
                "a {}-byte message, too short for a DNS header",
                bytes.len()
            ));
        }
        if !counts_fit(bytes) {
            return Err("a malformed message (its section counts exceed its length)".to_owned());
        }
        let message = Message::from_vec(bytes).map_err(|e| format!("a malformed message ({e})"))?;
        if message.id() != id {
            return Err(format!(
                "id {:#06x} where {id:#06x} was expected",
                message.id()
            ));
        }
        if message.message_type() != MessageType::Response {
            return Err("a query where a response was expected".to_owned());
        }
        let same_question = match message.queries() {
            // Servers may leave the question out of an error (FORMERR, NOTIMP).
            [] => message.response_code() != ResponseCode::NoError,
            [q] => {
                q.name() == self.query.name()
                    && q.query_type() == self.query.query_type()
                    && q.query_class() == DNSClass::IN
            }
            _ => false,
        };
        if !same_question {
            let asked: Vec<String> = message
                .queries()
                .iter()
                .map(|q| format!("{} {}", q.name(), q.query_type()))
                .collect();
            return Err(format!(
                "an answer to `{}` where `{} {}` was asked",
                asked.join(", "),
                self.query.name(),
                self.query.query_type()
            ));
        }
        Ok(message)
    }

    /// The failure for a deadline passed while waiting over `transport`.
    fn deadline_passed(&self, transport: &str, ignored: &Ignored) -> Fail {
        let within = humantime::format_duration(self.timeout);
        match &ignored.first {
            None => Fail::new(
                FailureReason::Timeout,
                format!(
                    "no answer from {} over {transport} within {within}",
                    self.peer
                ),
            ),
            Some(why) => Fail::new(
                FailureReason::Protocol,
                format!(
                    "no valid answer from {} over {transport} within {within}: ignored {} datagram{} that did not answer the query (the first was {why})",
                    self.peer,
                    ignored.count,
                    if ignored.count == 1 { "" } else { "s" }
                ),
            ),
        }
    }
}

/// Datagrams that came but were not the answer.
#[derive(Default)]
struct Ignored {
    count: u32,
    first: Option<String>,
}

/// Sends the query over UDP every [`UDP_RETRY`] until a matching answer
/// comes or the deadline passes; every try uses the same id, so a late
/// answer to an earlier datagram counts.
async fn udp_exchange(
    addr: SocketAddr,
    asked: &Asked<'_>,
    facts: &mut DnsFacts,
) -> Result<Message, Fail> {
    let (id, query) = asked.encode()?;
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket_error = |e: std::io::Error| socket_failure(&asked.peer, "udp", &e);
    let socket = UdpSocket::bind(local).await.map_err(socket_error)?;
    // A connected socket only hears from the server, and learns of an ICMP
    // port unreachable (ECONNREFUSED) instead of waiting out the deadline.
    socket.connect(addr).await.map_err(socket_error)?;
    let mut buffer = vec![0u8; UDP_BUFFER];
    let mut ignored = Ignored::default();
    loop {
        socket.send(&query).await.map_err(socket_error)?;
        facts.udp_queries += 1;
        let retry_at = asked.deadline.min(Instant::now() + UDP_RETRY);
        loop {
            let received = match timeout_at(retry_at, socket.recv(&mut buffer)).await {
                Err(_) => break,
                Ok(received) => received.map_err(socket_error)?,
            };
            match asked.accept(&buffer[..received], id) {
                Ok(message) => return Ok(message),
                Err(why) => {
                    ignored.count = ignored.count.saturating_add(1);
                    ignored.first.get_or_insert(why);
                }
            }
        }
        if Instant::now() >= asked.deadline {
            return Err(asked.deadline_passed("udp", &ignored));
        }
    }
}

/// Asks over one fresh TCP connection.
async fn tcp_exchange(addr: SocketAddr, asked: &Asked<'_>) -> Result<Message, Fail> {
    let within = humantime::format_duration(asked.timeout);
    let mut stream = timeout_at(asked.deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            Fail::new(
                FailureReason::Timeout,
                format!("no TCP connection to {addr} within {within}"),
            )
        })?
        .map_err(|e| socket_failure(&asked.peer, "tcp", &e))?;
    framed_exchange(&mut stream, asked, "tcp").await
}

/// Asks over an open connection (TCP, or TLS over it) with the two-byte
/// length prefix of RFC 1035 §4.2.2; an answer that does not match is a
/// protocol failure (nothing can inject it into our connection).
async fn framed_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    asked: &Asked<'_>,
    transport: &str,
) -> Result<Message, Fail> {
    let (id, query) = asked.encode()?;
    let Ok(length) = u16::try_from(query.len()) else {
        return Err(Fail::new(
            FailureReason::Request,
            format!("the query is too long for a {transport} message"),
        ));
    };
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(&query);
    let exchange = async {
        stream.write_all(&framed).await?;
        stream.flush().await?;
        let length = usize::from(stream.read_u16().await?);
        let mut answer = vec![0u8; length];
        stream.read_exact(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = timeout_at(asked.deadline, exchange)
        .await
        .map_err(|_| asked.deadline_passed(transport, &Ignored::default()))?
        .map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
                Fail::new(
                    FailureReason::Protocol,
                    format!(
                        "{} closed the {} connection before a whole answer came",
                        asked.peer,
                        transport.to_ascii_uppercase()
                    ),
                )
            } else {
                socket_failure(&asked.peer, transport, &e)
            }
        })?;
    asked.accept(&answer, id).map_err(|why| {
        Fail::new(
            FailureReason::Protocol,
            format!("{} answered over {transport} with {why}", asked.peer),
        )
    })
}

/// A socket error as a failure: refused (nothing listens: a TCP reset or an
/// ICMP port unreachable), or any other connect-level error.
fn socket_failure(peer: &str, transport: &str, e: &std::io::Error) -> Fail {
    if e.kind() == ErrorKind::ConnectionRefused {
        Fail::new(
            FailureReason::ConnectRefused,
            format!("no DNS server listens on {peer} over {transport} (connection refused)"),
        )
    } else {
        Fail::new(
            FailureReason::Connect,
            format!("cannot talk to {peer} over {transport}: {e}"),
        )
    }
}

/// The registry's line for `[dns]`.
pub const KIND: KindEntry = KindEntry {
    name: "dns",
    build: build_kind,
    gauges: GAUGES,
};

/// What this kind's facts export on /metrics.
const GAUGES: &[GaugeSpec] = &[
    GaugeSpec {
        name: "probe_dns_lookup_time_seconds",
        seconds: true,
        help: "Time from sending the DNS query to its answer.",
    },
    GaugeSpec {
        name: "probe_dns_answer_rrs",
        seconds: false,
        help: "Records in the answer section.",
    },
    GaugeSpec {
        name: "probe_dns_authority_rrs",
        seconds: false,
        help: "Records in the authority section.",
    },
    GaugeSpec {
        name: "probe_dns_additional_rrs",
        seconds: false,
        help: "Records in the additional section.",
    },
    GaugeSpec {
        name: "probe_dns_rcode",
        seconds: false,
        help: "Response code of the last answer (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, …).",
    },
];

fn build_kind(c: &mut Checker<'_>, _: &BuildInput<'_>) -> Option<Box<dyn Kind>> {
    let raw: RawDns = c.table("dns")?;
    build(raw, c).map(|spec| Box::new(spec) as Box<dyn Kind>)
}

impl Kind for DnsSpec {
    fn name(&self) -> &'static str {
        "dns"
    }

    fn run<'a>(&'a self, ctx: &'a RunContext<'_>) -> RunFuture<'a> {
        Box::pin(run(self, ctx))
    }

    fn scope(&self) -> Option<crate::expr::Scope<'static>> {
        Some(SCOPE)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl KindFacts for DnsFacts {
    fn gauges(&self) -> Vec<(&'static str, f64)> {
        DnsFacts::gauges(self)
    }
    fn cert_expiry(&self) -> Option<i64> {
        self.earliest_cert_expiry
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn servers_parse_with_port_53_by_default() {
        let ip = |s: &str| ServerAddr::Ip(s.parse().unwrap());
        assert_eq!(parse_server("127.0.0.1", 53).unwrap(), ip("127.0.0.1:53"));
        assert_eq!(
            parse_server("127.0.0.1:5353", 53).unwrap(),
            ip("127.0.0.1:5353")
        );
        assert_eq!(parse_server("::1", 53).unwrap(), ip("[::1]:53"));
        assert_eq!(parse_server("[::1]", 53).unwrap(), ip("[::1]:53"));
        assert_eq!(parse_server("[::1]:5300", 53).unwrap(), ip("[::1]:5300"));
        assert_eq!(
            parse_server("ns1.example.com", 53).unwrap(),
            ServerAddr::Host("ns1.example.com".into(), 53)
        );
        assert_eq!(
            parse_server("localhost:8053", 53).unwrap(),
            ServerAddr::Host("localhost".into(), 8053)
        );
        for bad in [
            "",
            "host:",
            "host:0",
            "host:99999",
            "a b:53",
            "http://x",
            "[nope]",
        ] {
            assert!(parse_server(bad, 53).is_err(), "{bad}");
        }
    }

    #[test]
    fn dns_over_tls_defaults_to_port_853_and_a_url_points_to_https() {
        assert_eq!(
            parse_server("dns.example", DOT_PORT).unwrap(),
            ServerAddr::Host("dns.example".into(), 853)
        );
        assert_eq!(
            parse_server("::1", DOT_PORT).unwrap(),
            ServerAddr::Ip("[::1]:853".parse().unwrap())
        );
        let e = parse_server("https://dns.example/dns-query", DOT_PORT).unwrap_err();
        assert!(e.contains("transport = \"https\""), "{e}");
    }

    #[test]
    fn dns_over_https_takes_https_urls_and_plain_http_to_loopback_only() {
        for good in [
            "https://dns.example/dns-query",
            "https://192.0.2.1:8443/q",
            "http://127.0.0.1:8080/dns-query",
            "http://127.9.9.9/dns-query",
            "http://[::1]:8080/dns-query",
            "http://LOCALHOST/dns-query",
        ] {
            assert!(doh_url(good).is_ok(), "{good}");
        }
        let e = doh_url("http://dns.example/dns-query").unwrap_err();
        assert!(e.contains("loopback hosts only"), "{e}");
        assert!(e.contains("`dns.example`"), "{e}");
        let e = doh_url("http://10.0.0.1/dns-query").unwrap_err();
        assert!(e.contains("loopback hosts only"), "{e}");
        let e = doh_url("https://user:secret@dns.example/dns-query").unwrap_err();
        assert!(e.contains("credentials") && !e.contains("secret"), "{e}");
        assert!(doh_url("dns.example:853").is_err());
        assert!(doh_url("ftp://dns.example/").is_err());
        assert!(doh_url("").is_err());
    }

    #[test]
    fn rcodes_and_types_parse_by_name_in_any_case() {
        assert_eq!(parse_rcode("nxdomain"), Some(3));
        assert_eq!(parse_rcode("SERVFAIL"), Some(2));
        assert_eq!(parse_rcode("RCODE12"), Some(12));
        assert_eq!(parse_rcode("5"), Some(5));
        assert_eq!(parse_rcode("NOPE"), None);
        assert_eq!(rcode_name(3), "NXDOMAIN");
        assert_eq!(rcode_name(12), "RCODE12");
        assert_eq!(parse_type("aaaa").unwrap(), RecordType::AAAA);
        assert_eq!(parse_type("TYPE65").unwrap(), RecordType::HTTPS);
        assert!(parse_type("AAA").is_err());
        assert!(parse_type("OPT").is_err());
    }

    #[test]
    fn names_are_fully_qualified_and_ptr_takes_an_address() {
        let name = query_name("api.sandbox.test", RecordType::A).unwrap();
        assert_eq!(name.to_string(), "api.sandbox.test.");
        let name = query_name("127.0.0.1", RecordType::PTR).unwrap();
        assert_eq!(name.to_string(), "1.0.0.127.in-addr.arpa.");
        assert!(query_name("", RecordType::A).is_err());
        assert!(query_name("a..b", RecordType::A).is_err());
    }

    #[test]
    fn counts_that_cannot_fit_the_message_are_refused_before_parsing() {
        let mut header = [0u8; HEADER_LEN];
        assert!(counts_fit(&header));
        header[7] = 1; // one answer record in a 12-byte message
        assert!(!counts_fit(&header));
        assert!(!counts_fit(&header[..5]));
        let mut big = vec![0u8; HEADER_LEN + 11];
        big[7] = 1;
        assert!(counts_fit(&big));
    }
}
