//! The `dns` probe: one query to a chosen DNS server for one record type:
//! rcode, answer set, latency.
//!
//! The probe speaks DNS itself, with hickory-proto's message types, rather
//! than going through a resolver library: the server is always the one the
//! probe names (never the system's resolver), every run sends its own query
//! (there is no cache between runs to hide an outage), and the exchange is
//! ours to time and to bound. Over UDP the query is retransmitted every
//! [`UDP_RETRY`] within the run's deadline, and a truncated answer (TC bit)
//! is asked again over TCP, as a stub resolver does.
//!
//! Phases: `resolve` (rendering the templates and, when the server is given
//! by host name, resolving it with the system's resolver) and `query` (from
//! the first datagram sent to the accepted answer, TCP fallback included);
//! they add up to the run's duration.
//!
//! Hostile servers: an answer whose id or question does not match the
//! query, or that does not parse, is ignored over UDP (it may be spoofed or
//! stale; the real answer may still come) and is a `protocol` failure over
//! TCP. A run that saw only such datagrams before its deadline fails with
//! reason `protocol` and says what was wrong with them; one that saw nothing
//! fails with `timeout`. Every read is sized: one 64 KiB datagram buffer,
//! one TCP message of at most 64 KiB.

use super::kind::{Assertion, BuildInput, Kind, KindEntry, RunContext, RunFuture};
use crate::config::check::Checker;
use crate::expr::{Facts, duration_value, json_value};
use crate::expr::{Scope, Type, Types};
use crate::outcome::{
    AssertionResult, Details, FailureReason, GaugeSpec, KindFacts, Outcome, Phase, SourceLocation,
};
use crate::tagging::RunIds;
use crate::template::Text;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

/// The variables a `dns` expectation can read.
pub const SCOPE: Scope<'static> = Scope {
    names: &[
        "rcode",
        "answers",
        "authority",
        "additional",
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
];

/// How long a UDP query waits for its answer before it is sent again
/// (within the run's deadline): long enough for any sane server, short
/// enough that one lost datagram does not fail a run of a few seconds.
pub const UDP_RETRY: Duration = Duration::from_secs(1);

/// The port a server written without one listens on.
const DEFAULT_PORT: u16 = 53;

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
    /// `host:port`, `host`, `ip`, `ip:port` or `[ipv6]:port`; a template.
    pub server: Option<String>,
    /// The name to query; a template.
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub record_type: Option<String>,
    pub transport: Option<String>,
    pub recursion_desired: Option<bool>,
    pub expect_rcode: Option<OneOrMany>,
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
}

/// The checked `[dns]` table.
#[derive(Debug)]
pub struct DnsSpec {
    pub server: Text,
    pub name: Text,
    pub record_type: RecordType,
    pub transport: Transport,
    pub recursion_desired: bool,
    /// The rcodes that pass (numeric); any other fails the run with reason
    /// `rcode`, whatever the expectations say.
    pub expect_rcode: Vec<u16>,
    /// Where the rcode check comes from (`expect_rcode`, or `name` when it
    /// is the implicit NOERROR), for its assertion result.
    pub rcode_location: SourceLocation,
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
    /// The server's address as queried (after resolving its name).
    pub server: String,
    /// The query name, fully qualified.
    pub name: String,
    #[serde(rename = "type")]
    pub record_type: String,
    /// The transport that carried the answer: `udp`, or `tcp` (also after a
    /// truncated UDP answer).
    pub transport: &'static str,
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
    let server = match raw.server.as_deref() {
        None => {
            c.missing("dns", "server");
            None
        }
        Some(value) => c.text("dns.server", value, None).inspect(|text| {
            if text.is_literal() {
                if let Err(e) = parse_server(text.source()) {
                    c.err("dns.server", e);
                }
            }
        }),
    };
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
    let transport = match raw.transport.as_deref() {
        None | Some("udp") => Transport::Udp,
        Some("tcp") => Transport::Tcp,
        Some(other) => {
            c.err(
                "dns.transport",
                format!("expected `udp` or `tcp`, found `{other}`"),
            );
            Transport::Udp
        }
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
    let expect = c.expectations("dns", &raw.expect, SCOPE);
    if c.error_count() > errors {
        return None;
    }
    Some(DnsSpec {
        server: server?,
        name: name?,
        record_type,
        transport,
        recursion_desired: raw.recursion_desired.unwrap_or(true),
        expect_rcode,
        rcode_location,
        expect,
    })
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
/// `host:port`; the port defaults to 53.
fn parse_server(text: &str) -> Result<ServerAddr, String> {
    let text = text.trim();
    let invalid =
        |why: &str| format!("expected `host:port` or `host` (port 53), found `{text}`: {why}");
    if text.is_empty() {
        return Err(invalid("it is empty"));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(invalid("port 0 cannot be queried"));
        }
        return Ok(ServerAddr::Ip(addr));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(ServerAddr::Ip(SocketAddr::new(ip, DEFAULT_PORT)));
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner
            .parse::<Ipv6Addr>()
            .map(|ip| ServerAddr::Ip(SocketAddr::new(ip.into(), DEFAULT_PORT)))
            .map_err(|_| invalid("not an IPv6 address in brackets"));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => match port.parse::<u16>() {
            Ok(p) if p != 0 => (host, p),
            _ => return Err(invalid("the port is not a number from 1 to 65535")),
        },
        None => (text, DEFAULT_PORT),
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

/// Why a run stopped early.
#[derive(Debug)]
struct Fail {
    reason: FailureReason,
    message: String,
}

impl Fail {
    fn new(reason: FailureReason, message: impl Into<String>) -> Fail {
        Fail {
            reason,
            message: message.into(),
        }
    }
}

/// The instant the `resolve` phase ended, if it did.
struct Progress {
    resolved: Option<Instant>,
}

pub async fn run(spec: &DnsSpec, ctx: &RunContext<'_>) -> Outcome {
    let ids = RunIds::generate();
    let start = Instant::now();
    let deadline = start + ctx.probe.timeout;
    let mut outcome = Outcome::new(&ctx.probe.name, &ctx.env.name, "dns", &ids);
    let mut facts = DnsFacts {
        record_type: spec.record_type.to_string(),
        transport: match spec.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        },
        ..DnsFacts::default()
    };
    let mut progress = Progress { resolved: None };
    let result = exchange(spec, ctx, &ids, deadline, &mut facts, &mut progress).await;
    let end = Instant::now();
    outcome.duration = end - start;
    let resolved = progress.resolved.unwrap_or(end);
    outcome.phases.push(Phase {
        name: "resolve",
        seconds: resolved - start,
    });
    if progress.resolved.is_some() {
        let query = end - resolved;
        facts.lookup_time_seconds = Some(query.as_secs_f64());
        outcome.phases.push(Phase {
            name: "query",
            seconds: query,
        });
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
            let timings = [
                ("resolve", resolved - start),
                ("query", end - resolved),
                ("total", outcome.duration),
            ];
            let scope = expression_facts(&facts, &timings, ctx);
            super::kind::check_expectations(&mut outcome, &spec.expect, &scope);
        }
    }
    outcome.details = Some(Details::new(facts));
    super::kind::finish(&mut outcome);
    super::kind::redact(outcome, ctx.redactor)
}

/// The values an expectation can read about an answer.
fn expression_facts(facts: &DnsFacts, timings: &[(&str, Duration)], ctx: &RunContext<'_>) -> Facts {
    let answers = serde_json::to_value(&facts.answers).unwrap_or(serde_json::Value::Null);
    let timings: HashMap<String, cel::Value> = timings
        .iter()
        .map(|(name, d)| ((*name).to_owned(), duration_value(*d)))
        .collect();
    let mut f = Facts::default();
    f.set("rcode", facts.rcode.clone().unwrap_or_default());
    f.set("answers", json_value(&answers));
    f.set("authority", facts.authority as i64);
    f.set("additional", facts.additional as i64);
    f.set("timings", timings);
    f.set("vars", super::kind::vars_value(ctx.vars));
    f
}

/// Renders the templates, finds the server and asks it; the answer is one
/// whose id and question match the query.
async fn exchange(
    spec: &DnsSpec,
    ctx: &RunContext<'_>,
    ids: &RunIds,
    deadline: Instant,
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
    let server = parse_server(&server).map_err(|e| request("`server`", e))?;
    let addr = match server {
        ServerAddr::Ip(addr) => addr,
        ServerAddr::Host(host, port) => resolve(&host, port, deadline, ctx.probe.timeout).await?,
    };
    facts.server = addr.to_string();
    progress.resolved = Some(Instant::now());
    let query = Query::query(name, spec.record_type);
    let asked = Asked {
        addr,
        query: &query,
        recursion_desired: spec.recursion_desired,
        deadline,
        timeout: ctx.probe.timeout,
    };
    if spec.transport == Transport::Tcp {
        return tcp_exchange(&asked).await;
    }
    let answer = udp_exchange(&asked, facts).await?;
    if !answer.truncated() {
        return Ok(answer);
    }
    facts.truncated = true;
    facts.transport = "tcp";
    tcp_exchange(&asked).await
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
    addr: SocketAddr,
    query: &'a Query,
    recursion_desired: bool,
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
                    self.addr
                ),
            ),
            Some(why) => Fail::new(
                FailureReason::Protocol,
                format!(
                    "no valid answer from {} over {transport} within {within}: ignored {} datagram{} that did not answer the query (the first was {why})",
                    self.addr,
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
async fn udp_exchange(asked: &Asked<'_>, facts: &mut DnsFacts) -> Result<Message, Fail> {
    let (id, query) = asked.encode()?;
    let local: SocketAddr = match asked.addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket_error = |e: std::io::Error| socket_failure(asked.addr, "udp", &e);
    let socket = UdpSocket::bind(local).await.map_err(socket_error)?;
    // A connected socket only hears from the server, and learns of an ICMP
    // port unreachable (ECONNREFUSED) instead of waiting out the deadline.
    socket.connect(asked.addr).await.map_err(socket_error)?;
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

/// Asks over one fresh TCP connection; an answer that does not match is a
/// protocol failure (nothing can inject it into our connection).
async fn tcp_exchange(asked: &Asked<'_>) -> Result<Message, Fail> {
    let (id, query) = asked.encode()?;
    let Ok(length) = u16::try_from(query.len()) else {
        return Err(Fail::new(
            FailureReason::Request,
            "the query is too long for a TCP message",
        ));
    };
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(&query);
    let within = humantime::format_duration(asked.timeout);
    let mut stream = timeout_at(asked.deadline, TcpStream::connect(asked.addr))
        .await
        .map_err(|_| {
            Fail::new(
                FailureReason::Timeout,
                format!("no TCP connection to {} within {within}", asked.addr),
            )
        })?
        .map_err(|e| socket_failure(asked.addr, "tcp", &e))?;
    let exchange = async {
        stream.write_all(&framed).await?;
        let length = usize::from(stream.read_u16().await?);
        let mut answer = vec![0u8; length];
        stream.read_exact(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = timeout_at(asked.deadline, exchange)
        .await
        .map_err(|_| asked.deadline_passed("tcp", &Ignored::default()))?
        .map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
                Fail::new(
                    FailureReason::Protocol,
                    format!(
                        "{} closed the TCP connection before a whole answer came",
                        asked.addr
                    ),
                )
            } else {
                socket_failure(asked.addr, "tcp", &e)
            }
        })?;
    asked.accept(&answer, id).map_err(|why| {
        Fail::new(
            FailureReason::Protocol,
            format!("{} answered over tcp with {why}", asked.addr),
        )
    })
}

/// A socket error as a failure: refused (nothing listens: a TCP reset or an
/// ICMP port unreachable), or any other connect-level error.
fn socket_failure(addr: SocketAddr, transport: &str, e: &std::io::Error) -> Fail {
    if e.kind() == ErrorKind::ConnectionRefused {
        Fail::new(
            FailureReason::ConnectRefused,
            format!("no DNS server listens on {addr} over {transport} (connection refused)"),
        )
    } else {
        Fail::new(
            FailureReason::Connect,
            format!("cannot talk to {addr} over {transport}: {e}"),
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

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl KindFacts for DnsFacts {
    fn gauges(&self) -> Vec<(&'static str, f64)> {
        DnsFacts::gauges(self)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn servers_parse_with_port_53_by_default() {
        let ip = |s: &str| ServerAddr::Ip(s.parse().unwrap());
        assert_eq!(parse_server("127.0.0.1").unwrap(), ip("127.0.0.1:53"));
        assert_eq!(
            parse_server("127.0.0.1:5353").unwrap(),
            ip("127.0.0.1:5353")
        );
        assert_eq!(parse_server("::1").unwrap(), ip("[::1]:53"));
        assert_eq!(parse_server("[::1]").unwrap(), ip("[::1]:53"));
        assert_eq!(parse_server("[::1]:5300").unwrap(), ip("[::1]:5300"));
        assert_eq!(
            parse_server("ns1.example.com").unwrap(),
            ServerAddr::Host("ns1.example.com".into(), 53)
        );
        assert_eq!(
            parse_server("localhost:8053").unwrap(),
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
            assert!(parse_server(bad).is_err(), "{bad}");
        }
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
