//! The `ping` probe: ICMP echo requests to one host over an unprivileged
//! datagram socket (`SOCK_DGRAM`/`IPPROTO_ICMP`, and `IPPROTO_ICMPV6`),
//! `count` of them `interval` apart: round-trip times (min, avg, max,
//! standard deviation) and loss.
//!
//! The echo packets are surge-ping's; the socket is always a datagram one,
//! which Linux grants to the groups in `net.ipv4.ping_group_range` (the
//! same sysctl governs ICMPv6) without any capability. surge-ping falls
//! back to a raw socket when the datagram one is refused; a raw socket
//! works only with `CAP_NET_RAW`, sees every ICMP packet the host receives,
//! and would make a probe pass as root and fail under the shipped unit, so
//! a raw fallback is closed at once and the run fails like a refused
//! datagram socket: reason `permission`, with the sysctl and where to set
//! it (a sysctl.d file, the pod's `securityContext.sysctls`).
//!
//! Phases: `resolve` (zero for an IP literal) and `ping` (opening the
//! socket, sending every request and waiting for the replies), under the
//! probe's one deadline. Every request is sent at its time from the start
//! of `ping` (all of them fit in the timeout, which `check` enforces); a
//! reply counts if it arrives before the deadline, so a run with a lost
//! packet lasts until the deadline, and one where every reply came ends
//! with the last. A run with no reply at all fails (`timeout`, or
//! `connect` when the kernel refused to send); partial loss is a fact for
//! `expect` and the `loss` threshold to judge.
//!
//! Each round trip is a latency sample of its own (thresholds such as
//! `p(95) < 20ms` read them, not the run's duration, which is mostly the
//! pacing), and the run's packets feed the `loss` threshold metric.

use super::kind::{Assertion, BuildInput, Kind, KindEntry, RunContext, RunFuture};
use crate::config::check::Checker;
use crate::expr::{Facts, Scope, Type, Types, duration_value};
use crate::net::{Clock, Fail};
use crate::outcome::{Details, FailureReason, GaugeSpec, KindFacts, Outcome};
use crate::tagging::RunIds;
use crate::template::Text;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use surge_ping::{Client, Config, ICMP, PingIdentifier, PingSequence, SurgeError};
use tokio::time::Instant;

/// The variables a `ping` expectation can read.
pub const SCOPE: Scope<'static> = Scope {
    names: &[
        "address", "sent", "received", "loss", "rtt", "rtts", "timings", "vars",
    ],
    types: &[TYPES],
};

/// The types of what this kind puts in scope, so `synthmon check` catches
/// a literal of another type compared with them.
const TYPES: Types<'static> = &[
    ("address", Type::String),
    ("sent", Type::Number),
    ("received", Type::Number),
    ("loss", Type::Number),
    ("rtt.*", Type::Duration),
];

/// Echo requests per run when `count` is not set (ping's habit is
/// endless; three give a spread without holding a run long).
pub const DEFAULT_COUNT: u64 = 3;
/// The most echo requests a run sends: a monitor, not a flood.
pub const MAX_COUNT: u64 = 100;
/// The time between two requests when `interval` is not set: the
/// shortest `ping` allows an unprivileged user.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(200);
/// The shortest `interval`.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// The longest `interval`.
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// Payload bytes per request when `size` is not set, as `ping`'s.
pub const DEFAULT_SIZE: u64 = 56;
/// The largest payload: one 1500-byte frame holds it over IPv6 (40-byte
/// header) as over IPv4, so no request is fragmented on a usual link.
pub const MAX_SIZE: u64 = 1452;

/// The sysctl that decides who may open ICMP datagram sockets (for IPv6
/// too).
pub const SYSCTL: &str = "net.ipv4.ping_group_range";
/// Where the running kernel shows it.
const SYSCTL_PATH: &str = "/proc/sys/net/ipv4/ping_group_range";

/// The `[icmp]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPing {
    /// A host name or an IP address (no port); a template.
    pub host: Option<String>,
    /// Echo requests per run.
    pub count: Option<u64>,
    /// Time between two requests.
    #[serde(default, deserialize_with = "crate::config::raw::duration")]
    pub interval: Option<String>,
    /// Payload bytes per request.
    pub size: Option<u64>,
    /// `4` or `6`: the address family to ping when the name has both.
    pub ip_version: Option<u8>,
    #[serde(default)]
    pub expect: Vec<String>,
}

/// The checked `[icmp]` table.
#[derive(Debug)]
pub struct PingSpec {
    pub host: Text,
    pub count: u16,
    pub interval: Duration,
    pub size: usize,
    pub ip_version: Option<IpVersion>,
    pub expect: Vec<Assertion>,
}

/// An address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum IpVersion {
    #[serde(rename = "4")]
    V4,
    #[serde(rename = "6")]
    V6,
}

impl IpVersion {
    fn of(ip: IpAddr) -> IpVersion {
        match ip {
            IpAddr::V4(_) => IpVersion::V4,
            IpAddr::V6(_) => IpVersion::V6,
        }
    }

    fn number(self) -> u8 {
        match self {
            IpVersion::V4 => 4,
            IpVersion::V6 => 6,
        }
    }
}

/// One echo reply.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Reply {
    /// The request's sequence number (0 for the first).
    pub seq: u16,
    /// From the request leaving to its reply arriving.
    #[serde(serialize_with = "crate::outcome::ser_secs")]
    pub rtt: Duration,
}

/// Round-trip statistics over the replies of one run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RttStats {
    #[serde(serialize_with = "crate::outcome::ser_secs")]
    pub min: Duration,
    #[serde(serialize_with = "crate::outcome::ser_secs")]
    pub avg: Duration,
    #[serde(serialize_with = "crate::outcome::ser_secs")]
    pub max: Duration,
    /// The population standard deviation (ping's `mdev`).
    #[serde(serialize_with = "crate::outcome::ser_secs")]
    pub stddev: Duration,
}

impl RttStats {
    /// The statistics of `rtts`, `None` when there is none.
    pub fn of(rtts: &[Duration]) -> Option<RttStats> {
        let min = *rtts.iter().min()?;
        let max = *rtts.iter().max()?;
        let n = rtts.len() as f64;
        let mean = rtts.iter().map(Duration::as_secs_f64).sum::<f64>() / n;
        let variance = rtts
            .iter()
            .map(|d| (d.as_secs_f64() - mean).powi(2))
            .sum::<f64>()
            / n;
        let secs = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO);
        Some(RttStats {
            min,
            avg: secs(mean),
            max,
            stddev: secs(variance.sqrt()),
        })
    }

    fn value(&self) -> cel::Value {
        [
            ("min", self.min),
            ("avg", self.avg),
            ("max", self.max),
            ("stddev", self.stddev),
        ]
        .into_iter()
        .map(|(k, d)| (k.to_owned(), duration_value(d)))
        .collect::<HashMap<String, cel::Value>>()
        .into()
    }
}

/// What a `ping` run saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PingFacts {
    /// The host as rendered for this run.
    pub host: String,
    /// The address pinged, once resolved.
    pub address: Option<IpAddr>,
    /// Payload bytes per request.
    pub size: u64,
    /// Echo requests sent (a send the kernel refused counts, as lost).
    pub sent: u64,
    /// Echo replies that arrived before the deadline.
    pub received: u64,
    /// Lost requests / sent requests, 0 to 1; `None` before any was sent.
    pub loss: Option<f64>,
    /// Over the replies; `None` without one.
    pub rtt: Option<RttStats>,
    /// Each reply, by sequence number.
    pub replies: Vec<Reply>,
    /// Why a request could not be sent, the first time it happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_error: Option<String>,
}

impl PingFacts {
    /// Gauges for /metrics, labelled with probe and environment: the
    /// packet counts once a request went out, the round trips once a
    /// reply came.
    pub fn gauges(&self) -> Vec<(&'static str, f64)> {
        let mut gauges = Vec::new();
        if let Some(loss) = self.loss {
            gauges.push(("probe_icmp_packets_sent", self.sent as f64));
            gauges.push(("probe_icmp_packets_received", self.received as f64));
            gauges.push(("probe_icmp_packet_loss_ratio", loss));
        }
        if let Some(rtt) = &self.rtt {
            gauges.push(("probe_icmp_rtt_min_seconds", rtt.min.as_secs_f64()));
            gauges.push(("probe_icmp_rtt_avg_seconds", rtt.avg.as_secs_f64()));
            gauges.push(("probe_icmp_rtt_max_seconds", rtt.max.as_secs_f64()));
            gauges.push(("probe_icmp_rtt_stddev_seconds", rtt.stddev.as_secs_f64()));
        }
        gauges
    }

    /// The round trips in sequence order.
    pub fn rtts(&self) -> Vec<Duration> {
        self.replies.iter().map(|r| r.rtt).collect()
    }
}

/// Checks the raw table; problems are recorded on `c` at `icmp.…` paths.
pub(crate) fn build(raw: RawPing, input: &BuildInput<'_>, c: &mut Checker<'_>) -> Option<PingSpec> {
    let errors = c.error_count();
    let ip_version = match raw.ip_version {
        None => None,
        Some(4) => Some(IpVersion::V4),
        Some(6) => Some(IpVersion::V6),
        Some(other) => {
            c.err("icmp.ip_version", format!("expected 4 or 6, found {other}"));
            None
        }
    };
    let host = match raw.host.as_deref() {
        None => {
            c.missing("icmp", "host");
            None
        }
        Some(value) => c
            .text("icmp.host", value, Some(input.known_vars))
            .inspect(|text| {
                if text.is_literal() {
                    let checked = parse_host(text.source()).and_then(|host| match host {
                        Host::Ip(ip) => family_matches(ip, ip_version),
                        Host::Name(_) => Ok(()),
                    });
                    if let Err(e) = checked {
                        c.err("icmp.host", e);
                    }
                }
            }),
    };
    let count = match raw.count {
        None => DEFAULT_COUNT,
        Some(n) if (1..=MAX_COUNT).contains(&n) => n,
        Some(n) => {
            c.err(
                "icmp.count",
                format!("expected a number of echo requests from 1 to {MAX_COUNT}, found {n}"),
            );
            DEFAULT_COUNT
        }
    };
    let interval = c.duration_at_most(
        "icmp.interval",
        raw.interval.as_deref(),
        DEFAULT_INTERVAL,
        MAX_INTERVAL,
    );
    if interval < MIN_INTERVAL {
        c.err(
            "icmp.interval",
            format!(
                "expected an interval of at least {}, found {}",
                humantime::format_duration(MIN_INTERVAL),
                humantime::format_duration(interval)
            ),
        );
    } else if let Some(last) = interval.checked_mul(u32::try_from(count - 1).unwrap_or(u32::MAX)) {
        // The last request must leave before the deadline, with room for
        // its reply.
        if last >= input.timeout {
            let path = if raw.interval.is_some() {
                "icmp.interval"
            } else {
                "icmp.count"
            };
            c.err(
                path,
                format!(
                    "{count} echo requests {} apart take {}, which does not fit in the probe's timeout ({}): lower count or interval, or raise timeout",
                    humantime::format_duration(interval),
                    humantime::format_duration(last),
                    humantime::format_duration(input.timeout)
                ),
            );
        }
    }
    let size = match raw.size {
        None => DEFAULT_SIZE,
        Some(n) if n <= MAX_SIZE => n,
        Some(n) => {
            c.err(
                "icmp.size",
                format!("expected a payload of 0 to {MAX_SIZE} bytes, found {n}"),
            );
            DEFAULT_SIZE
        }
    };
    let expect = c.expectations("icmp", &raw.expect, SCOPE);
    if c.error_count() > errors {
        return None;
    }
    Some(PingSpec {
        host: host?,
        count: u16::try_from(count).unwrap_or(u16::MAX),
        interval,
        size: usize::try_from(size).unwrap_or(usize::MAX),
        ip_version,
        expect,
    })
}

/// A host as written: an address, or a name to resolve.
#[derive(Debug, PartialEq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// Parses `host`: an IPv4 or IPv6 address (`::1` or `[::1]`), or a host
/// name; never a port.
fn parse_host(text: &str) -> Result<Host, String> {
    let text = text.trim();
    let invalid =
        |why: &str| format!("expected a host name or an IP address, found `{text}`: {why}");
    if text.is_empty() {
        return Err(invalid("it is empty"));
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    if text.parse::<SocketAddr>().is_ok() || text.rsplit_once(':').is_some() {
        return Err(invalid("ping has no port"));
    }
    let valid = text.len() <= 253
        && text
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '.' | '_'));
    if !valid {
        return Err(invalid("not a host name or IP address"));
    }
    Ok(Host::Name(text.to_owned()))
}

/// An address of the wrong family for `ip_version` is an error.
fn family_matches(ip: IpAddr, wanted: Option<IpVersion>) -> Result<(), String> {
    match wanted {
        Some(v) if IpVersion::of(ip) != v => Err(format!(
            "`{ip}` is an IPv{} address, but ip_version is {}",
            IpVersion::of(ip).number(),
            v.number()
        )),
        _ => Ok(()),
    }
}

pub async fn run(spec: &PingSpec, ctx: &RunContext<'_>) -> Outcome {
    let ids = RunIds::generate();
    let mut outcome = Outcome::new(&ctx.probe.name, &ctx.env.name, "icmp", &ids);
    let mut clock = Clock::new(ctx.deadline(), &[]);
    let mut facts = PingFacts {
        size: spec.size as u64,
        ..PingFacts::default()
    };
    let result = probe(spec, ctx, &ids, &mut clock, &mut facts).await;
    clock.record(&mut outcome);
    ctx.redactor.scrub(&mut facts.host);
    match result {
        Err(fail) => outcome.fail(fail.reason, fail.message),
        Ok(()) => {
            outcome.responded = true;
            let mut f = Facts::default();
            f.set(
                "address",
                facts.address.map(|ip| ip.to_string()).unwrap_or_default(),
            );
            f.set("sent", i64::try_from(facts.sent).unwrap_or(i64::MAX));
            f.set(
                "received",
                i64::try_from(facts.received).unwrap_or(i64::MAX),
            );
            f.set(
                "loss",
                facts.loss.map_or(cel::Value::Null, cel::Value::Float),
            );
            f.set(
                "rtt",
                facts.rtt.as_ref().map_or(cel::Value::Null, RttStats::value),
            );
            f.set(
                "rtts",
                cel::Value::List(Arc::new(
                    facts
                        .replies
                        .iter()
                        .map(|r| duration_value(r.rtt))
                        .collect(),
                )),
            );
            f.set("timings", clock.timings());
            f.set("vars", super::kind::vars_value(ctx.vars));
            ctx.check_expectations(&mut outcome, &spec.expect, f);
        }
    }
    outcome.details = Some(Details::new(facts));
    super::kind::finish(&mut outcome);
    super::kind::redact(outcome, ctx.redactor)
}

/// One run: render, resolve, open the socket, send and wait.
async fn probe(
    spec: &PingSpec,
    ctx: &RunContext<'_>,
    ids: &RunIds,
    clock: &mut Clock,
    facts: &mut PingFacts,
) -> Result<(), Fail> {
    facts.host = ctx.render(&spec.host, ids).map_err(|e| {
        Fail::new(
            FailureReason::Request,
            format!("cannot render ping.host: {e}"),
        )
    })?;
    let host = parse_host(&facts.host).map_err(|e| Fail::new(FailureReason::Request, e))?;
    clock.begin();
    let target = match host {
        Host::Ip(ip) => {
            family_matches(ip, spec.ip_version)
                .map_err(|e| Fail::new(FailureReason::Request, e))?;
            clock.skip("resolve");
            SocketAddr::new(ip, 0)
        }
        Host::Name(name) => resolve(&name, spec.ip_version, clock).await?,
    };
    facts.address = Some(target.ip());
    let exchange = exchange(spec, target, clock.deadline(), facts).await;
    clock.lap("ping");
    exchange?;
    if facts.received > 0 {
        return Ok(());
    }
    Err(match &facts.send_error {
        Some(e) => Fail::new(
            FailureReason::Connect,
            format!("cannot send an echo request to {}: {e}", target.ip()),
        ),
        None => Fail::new(
            FailureReason::Timeout,
            format!(
                "no echo reply from {} to any of {} echo request{} within the timeout ({})",
                target.ip(),
                facts.sent,
                if facts.sent == 1 { "" } else { "s" },
                humantime::format_duration(ctx.probe.timeout)
            ),
        ),
    })
}

/// Resolves `name` with the system's resolver, as phase `resolve`; the
/// first address of the wanted family.
async fn resolve(
    name: &str,
    wanted: Option<IpVersion>,
    clock: &mut Clock,
) -> Result<SocketAddr, Fail> {
    let dns = |why: &dyn std::fmt::Display| {
        Fail::new(FailureReason::Dns, format!("cannot resolve {name}: {why}"))
    };
    let found: Vec<SocketAddr> = clock
        .step("resolve", "resolve", tokio::net::lookup_host((name, 0)))
        .await?
        .map_err(|e| dns(&e))?
        .collect();
    let first = found
        .iter()
        .find(|a| wanted.is_none_or(|v| IpVersion::of(a.ip()) == v))
        .copied();
    match (first, wanted) {
        (Some(addr), _) => Ok(addr),
        (None, Some(v)) if !found.is_empty() => Err(dns(&format_args!(
            "no IPv{} address (found {})",
            v.number(),
            found
                .iter()
                .map(|a| a.ip().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        (None, _) => Err(dns(&"no address found")),
    }
}

/// What became of one echo request.
enum Fate {
    /// Its time came after the deadline.
    NotSent,
    Replied(Duration),
    Lost,
    /// The kernel refused to send it, or the client went away.
    Failed(String),
}

/// Opens the socket and sends `count` requests `interval` apart, each
/// waiting for its reply until `deadline`; fills in the counts.
async fn exchange(
    spec: &PingSpec,
    target: SocketAddr,
    deadline: Instant,
    facts: &mut PingFacts,
) -> Result<(), Fail> {
    let ip = target.ip();
    let client = open(ip)?;
    let payload: Vec<u8> = (0..spec.size).map(|i| (i % 256) as u8).collect();
    let start = Instant::now();
    let one = |seq: u16| {
        let client = &client;
        let payload = &payload;
        async move {
            let at = start + spec.interval * u32::from(seq);
            if at >= deadline {
                return Fate::NotSent;
            }
            tokio::time::sleep_until(at).await;
            let mut pinger = client.pinger(ip, PingIdentifier(0)).await;
            if let SocketAddr::V6(v6) = target {
                pinger.scope_id(v6.scope_id());
            }
            // The deadline below decides; surge-ping's own timer must not
            // fire first.
            pinger.timeout(
                deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1),
            );
            match tokio::time::timeout_at(deadline, pinger.ping(PingSequence(seq), payload)).await {
                Err(_) | Ok(Err(SurgeError::Timeout { .. })) => Fate::Lost,
                Ok(Ok((_, rtt))) => Fate::Replied(rtt),
                Ok(Err(e)) => Fate::Failed(describe_surge(&e)),
            }
        }
    };
    let fates = futures_util::future::join_all((0..spec.count).map(one)).await;
    for (seq, fate) in (0..spec.count).zip(fates) {
        match fate {
            Fate::NotSent => continue,
            Fate::Replied(rtt) => {
                facts.received += 1;
                facts.replies.push(Reply { seq, rtt });
            }
            Fate::Lost => {}
            Fate::Failed(e) => {
                facts.send_error.get_or_insert(e);
            }
        }
        facts.sent += 1;
    }
    facts.loss = (facts.sent > 0).then(|| (facts.sent - facts.received) as f64 / facts.sent as f64);
    facts.rtt = RttStats::of(&facts.rtts());
    Ok(())
}

/// A surge-ping error in words: the OS error of a refused send, else
/// surge-ping's own sentence.
fn describe_surge(e: &SurgeError) -> String {
    match e {
        SurgeError::IOError(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// An ICMP datagram socket for `ip`'s family, or why there is none.
fn open(ip: IpAddr) -> Result<Client, Fail> {
    let kind = match ip {
        IpAddr::V4(_) => ICMP::V4,
        IpAddr::V6(_) => ICMP::V6,
    };
    let config = Config::builder()
        .kind(kind)
        .sock_type_hint(socket2::Type::DGRAM)
        .build();
    let family = IpVersion::of(ip);
    match Client::new(&config) {
        // surge-ping fell back to a raw socket: see the module's comment.
        Ok(client) if client.get_socket().get_type() != socket2::Type::DGRAM => {
            Err(permission_denied(family))
        }
        Ok(client) => Ok(client),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(permission_denied(family)),
        Err(e) if crate::net::dial::out_of_descriptors(&e) => Err(Fail::new(
            FailureReason::Resource,
            format!("cannot open an ICMP socket: {e}"),
        )),
        Err(e) => Err(Fail::new(
            FailureReason::Connect,
            format!(
                "cannot open an ICMP{} datagram socket: {e}",
                if family == IpVersion::V6 { "v6" } else { "" }
            ),
        )),
    }
}

/// The kernel refused an unprivileged ICMP socket: the sysctl, its value
/// when it can be read, synthmon's group, and where to allow it.
fn permission_denied(family: IpVersion) -> Fail {
    let range = std::fs::read_to_string(SYSCTL_PATH)
        .ok()
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "));
    let gid = rustix::process::getegid().as_raw();
    let setting = match range {
        Some(range) => format!("{SYSCTL} is \"{range}\""),
        None => SYSCTL.to_owned(),
    };
    Fail::new(
        FailureReason::Permission,
        format!(
            "the kernel does not allow unprivileged ICMP{} (ping) sockets for synthmon's group (gid {gid}): \
             {setting}, which must include that gid ({SYSCTL} covers IPv6 too); allow it with \
             `sysctl -w {SYSCTL}=\"0 2147483647\"` and keep it in /etc/sysctl.d/ (systemd/synthmon-ping.conf), \
             or in Kubernetes with the pod's securityContext.sysctls entry {SYSCTL} (deploy/kubernetes)",
            if family == IpVersion::V6 { "v6" } else { "" }
        ),
    )
}

/// The registry's line for `[icmp]`.
pub const KIND: KindEntry = KindEntry {
    name: "icmp",
    build: build_kind,
    gauges: GAUGES,
};

/// What this kind's facts export on /metrics.
const GAUGES: &[GaugeSpec] = &[
    GaugeSpec {
        name: "probe_icmp_packets_sent",
        seconds: false,
        help: "Echo requests the last ping run sent.",
    },
    GaugeSpec {
        name: "probe_icmp_packets_received",
        seconds: false,
        help: "Echo replies the last ping run received before its deadline.",
    },
    GaugeSpec {
        name: "probe_icmp_packet_loss_ratio",
        seconds: false,
        help: "Share of the last ping run's echo requests left unanswered (0 to 1).",
    },
    GaugeSpec {
        name: "probe_icmp_rtt_min_seconds",
        seconds: true,
        help: "Shortest round trip of the last ping run.",
    },
    GaugeSpec {
        name: "probe_icmp_rtt_avg_seconds",
        seconds: true,
        help: "Mean round trip of the last ping run.",
    },
    GaugeSpec {
        name: "probe_icmp_rtt_max_seconds",
        seconds: true,
        help: "Longest round trip of the last ping run.",
    },
    GaugeSpec {
        name: "probe_icmp_rtt_stddev_seconds",
        seconds: true,
        help: "Standard deviation of the last ping run's round trips (ping's mdev).",
    },
];

fn build_kind(c: &mut Checker<'_>, input: &BuildInput<'_>) -> Option<Box<dyn Kind>> {
    let raw: RawPing = c.table("icmp")?;
    build(raw, input, c).map(|spec| Box::new(spec) as Box<dyn Kind>)
}

impl Kind for PingSpec {
    fn name(&self) -> &'static str {
        "icmp"
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

impl KindFacts for PingFacts {
    fn gauges(&self) -> Vec<(&'static str, f64)> {
        PingFacts::gauges(self)
    }

    fn latencies(&self) -> Option<Vec<Duration>> {
        Some(self.rtts())
    }

    fn packets(&self) -> Option<(u64, u64)> {
        (self.sent > 0).then(|| (self.sent, self.sent - self.received))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_addresses_or_names_without_a_port() {
        assert_eq!(
            parse_host("127.0.0.1").unwrap(),
            Host::Ip("127.0.0.1".parse().unwrap())
        );
        assert_eq!(parse_host("::1").unwrap(), Host::Ip("::1".parse().unwrap()));
        assert_eq!(
            parse_host("[::1]").unwrap(),
            Host::Ip("::1".parse().unwrap())
        );
        assert_eq!(
            parse_host("db-1.internal").unwrap(),
            Host::Name("db-1.internal".to_owned())
        );
        for (bad, why) in [
            ("", "empty"),
            ("127.0.0.1:80", "no port"),
            ("example.com:443", "no port"),
            ("exa mple", "not a host name"),
        ] {
            let e = parse_host(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(
            family_matches("::1".parse().unwrap(), Some(IpVersion::V4))
                .unwrap_err()
                .contains("IPv6 address, but ip_version is 4")
        );
        assert!(family_matches("::1".parse().unwrap(), Some(IpVersion::V6)).is_ok());
        assert!(family_matches("127.0.0.1".parse().unwrap(), None).is_ok());
    }

    #[test]
    fn rtt_statistics_are_min_mean_max_and_population_deviation() {
        let ms = Duration::from_millis;
        assert_eq!(RttStats::of(&[]), None);
        let s = RttStats::of(&[ms(2), ms(4), ms(4), ms(4), ms(5), ms(5), ms(7), ms(9)]).unwrap();
        assert_eq!(s.min, ms(2));
        assert_eq!(s.max, ms(9));
        assert_eq!(s.avg, ms(5));
        // The textbook example: mean 5, population deviation 2.
        assert!((s.stddev.as_secs_f64() - 0.002).abs() < 1e-9, "{s:?}");
        let one = RttStats::of(&[ms(3)]).unwrap();
        assert_eq!(
            (one.min, one.avg, one.max, one.stddev),
            (ms(3), ms(3), ms(3), Duration::ZERO)
        );
    }

    #[test]
    fn the_permission_error_names_the_sysctl_and_where_to_set_it() {
        let fail = permission_denied(IpVersion::V6);
        assert_eq!(fail.reason, FailureReason::Permission);
        for needle in [
            "unprivileged ICMPv6 (ping) sockets",
            "net.ipv4.ping_group_range",
            "covers IPv6 too",
            "sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"",
            "/etc/sysctl.d/",
            "securityContext.sysctls",
        ] {
            assert!(
                fail.message.contains(needle),
                "no `{needle}` in {}",
                fail.message
            );
        }
    }

    #[test]
    fn facts_give_round_trips_as_latencies_and_packets_for_loss() {
        let ms = Duration::from_millis;
        let mut facts = PingFacts {
            sent: 4,
            received: 3,
            loss: Some(0.25),
            replies: vec![
                Reply { seq: 0, rtt: ms(1) },
                Reply { seq: 2, rtt: ms(3) },
                Reply { seq: 3, rtt: ms(2) },
            ],
            ..PingFacts::default()
        };
        facts.rtt = RttStats::of(&facts.rtts());
        assert_eq!(
            KindFacts::latencies(&facts),
            Some(vec![ms(1), ms(3), ms(2)])
        );
        assert_eq!(KindFacts::packets(&facts), Some((4, 1)));
        let gauges = facts.gauges();
        let names: Vec<&str> = gauges.iter().map(|(n, _)| *n).collect();
        let declared: Vec<&str> = GAUGES.iter().map(|g| g.name).collect();
        assert_eq!(names, declared);
        assert_eq!(gauges[2].1, 0.25);
        // Nothing sent (the socket was refused): no packets, no gauges.
        let none = PingFacts::default();
        assert_eq!(KindFacts::packets(&none), None);
        assert!(none.gauges().is_empty());
    }
}
