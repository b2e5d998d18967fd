//! The ping probe against the loopback addresses, over the kernel's
//! unprivileged ICMP datagram sockets.
//!
//! Whether the kernel grants those is the sysctl `net.ipv4.ping_group_range`
//! (IPv6 too), which these tests read but never change: each test works out
//! from it and the process' groups whether a ping must pass, and asserts
//! either a passing run with sane facts or the precise `permission`
//! failure naming the sysctl. `.ci/run` allows unprivileged ping before the
//! tests; run them once more after `sysctl -w net.ipv4.ping_group_range="1 0"`
//! to see the other branch.

use crate::common;

use common::{config_with_target, load, position_of, run_all, write_config};
use std::collections::BTreeMap;
use std::time::Duration;
use synthmon::outcome::{FailureReason, Outcome};
use synthmon::probe::icmp::PingFacts;
use synthmon::threshold::State;

/// Every test body runs under this bound.
const BOUND: Duration = Duration::from_secs(20);

/// Whether the kernel lets this process open an ICMP datagram socket: its
/// effective gid or one of its supplementary groups lies in
/// `net.ipv4.ping_group_range` (the kernel's own rule, `ping_init_sock`).
/// A range whose low end is above its high end (`1 0`) allows no one.
pub fn unprivileged_ping_allowed() -> bool {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap();
    let bounds: Vec<u64> = range
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let (low, high) = (bounds[0], bounds[1]);
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> Vec<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no `{name}` in /proc/self/status"))
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect()
    };
    // `Gid:` is real, effective, saved, filesystem.
    let effective = field("Gid:")[1];
    std::iter::once(effective)
        .chain(field("Groups:"))
        .any(|gid| low <= gid && gid <= high)
}

/// Whether `::1` is configured (on the loopback interface).
fn ipv6_loopback() -> bool {
    std::fs::read_to_string("/proc/net/if_inet6").is_ok_and(|t| {
        t.lines()
            .any(|l| l.starts_with("00000000000000000000000000000001"))
    })
}

/// Asserts the failure a forbidden unprivileged ICMP socket gives: reason
/// `permission`, a message naming the sysctl, the command that allows it
/// and the Kubernetes setting; nothing sent.
pub fn assert_sysctl_error(o: &Outcome) {
    assert!(!o.success, "{o:#?}");
    assert_eq!(o.reason, Some(FailureReason::Permission), "{o:#?}");
    let error = o.error.as_deref().unwrap();
    for needle in [
        "the kernel does not allow unprivileged ICMP",
        "net.ipv4.ping_group_range is \"1 0\"",
        "sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"",
        "/etc/sysctl.d/",
        "securityContext.sysctls",
    ] {
        // The current value is quoted only as it is: the forbidding value
        // of this machine's default is `1 0`.
        if needle.contains("\"1 0\"") && !current_range_is("1 0") {
            continue;
        }
        assert!(error.contains(needle), "no `{needle}` in: {error}");
    }
    assert!(o.assertions.is_empty(), "{o:#?}");
    let f = facts(o);
    assert_eq!((f.sent, f.received, f.loss), (0, 0, None), "{f:?}");
}

fn current_range_is(value: &str) -> bool {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap();
    range.split_whitespace().collect::<Vec<_>>().join(" ") == value
}

fn facts(o: &Outcome) -> &PingFacts {
    o.details
        .as_ref()
        .and_then(|d| d.get::<PingFacts>())
        .unwrap_or_else(|| panic!("no ping details: {o:#?}"))
}

/// One probe file in environment `target` (whose base URL ping never
/// reads) with the given timeout, extra top-level keys and `[icmp]` body.
fn probe(name: &str, timeout: &str, top: &str, ping: &str) -> String {
    format!(
        "name = \"{name}\"\nenvironments = [\"target\"]\ntimeout = \"{timeout}\"\n{top}\n[icmp]\n{ping}\n"
    )
}

/// Loads the probe files with environment `target` (variables `vars`) and
/// runs every pair once, thresholds judged as `--once` judges them.
async fn run_probes(vars: &str, probes: &[(&str, &str)]) -> Vec<Outcome> {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}variables = {{ {vars} }}\n",
        config_with_target("http://127.0.0.1:9")
    );
    let path = write_config(dir.path(), &config, probes);
    let config = load(&path);
    let mut outcomes = common::within(BOUND, run_all(&config, &BTreeMap::new())).await;
    outcomes.sort_by(|a, b| a.probe.cmp(&b.probe));
    outcomes
}

/// A passing run's facts: every packet answered, the statistics ordered,
/// one reply per sequence number, the phases adding up to the run.
fn assert_all_answered(o: &Outcome, count: u64, address: &str) {
    assert!(o.success, "{o:#?}");
    assert_eq!(o.reason, None, "{o:#?}");
    let f = facts(o);
    assert_eq!(f.address.unwrap().to_string(), address, "{f:?}");
    assert_eq!(
        (f.sent, f.received, f.loss),
        (count, count, Some(0.0)),
        "{f:?}"
    );
    let seqs: Vec<u16> = f.replies.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..count as u16).collect::<Vec<_>>(), "{f:?}");
    let rtt = f.rtt.unwrap();
    assert!(rtt.min <= rtt.avg && rtt.avg <= rtt.max, "{rtt:?}");
    assert!(rtt.max > Duration::ZERO && rtt.max < o.duration, "{rtt:?}");
    assert!(rtt.stddev <= rtt.max - rtt.min, "{rtt:?}");
    let names: Vec<&str> = o.phases.iter().map(|p| p.name).collect();
    assert_eq!(names, ["resolve", "ping"], "{o:#?}");
    let sum: Duration = o.phases.iter().map(|p| p.seconds).sum();
    assert_eq!(sum, o.duration, "{o:#?}");
    assert!(o.assertions.iter().all(|a| a.passed), "{o:#?}");
}

#[tokio::test]
async fn ipv4_loopback_pings_or_fails_naming_the_sysctl() {
    let outcomes = run_probes(
        "target = \"127.0.0.1\"",
        &[
            (
                "a.toml",
                &probe(
                    "loopback",
                    "3s",
                    "thresholds = [\"loss < 1%\", \"p(95) < 1s\"]",
                    "host = \"{{ vars.target }}\"\ncount = 4\ninterval = \"20ms\"\nsize = 100\nexpect = [\n  \"sent == 4\",\n  \"received == sent\",\n  \"loss == 0.0\",\n  \"rtt.min <= rtt.avg && rtt.avg <= rtt.max\",\n  \"rtt.stddev < duration('1s')\",\n  \"rtts.size() == 4\",\n  \"address == '127.0.0.1'\",\n  \"timings.ping >= rtt.max\",\n]",
                ),
            ),
            (
                "b.toml",
                &probe(
                    "strict",
                    "3s",
                    "",
                    "host = \"127.0.0.1\"\ncount = 1\nexpect = [\"rtt.max < duration('0s')\"]",
                ),
            ),
        ],
    )
    .await;
    let (loopback, strict) = (&outcomes[0], &outcomes[1]);
    if unprivileged_ping_allowed() {
        assert_all_answered(loopback, 4, "127.0.0.1");
        assert_eq!(facts(loopback).size, 100);
        assert_eq!(loopback.assertions.len(), 8, "{loopback:#?}");
        // Each round trip is a latency sample; the packets feed `loss`.
        assert_eq!(loopback.latency.unwrap().samples, 4, "{loopback:#?}");
        let states: Vec<(&str, State, Option<f64>)> = loopback
            .thresholds
            .iter()
            .map(|t| (t.threshold.as_str(), t.state, t.observed))
            .collect();
        assert_eq!(states[0], ("loss < 1%", State::Ok, Some(0.0)), "{states:?}");
        assert_eq!((states[1].0, states[1].1), ("p(95) < 1s", State::Ok));
        assert!(states[1].2.unwrap() <= facts(loopback).rtt.unwrap().max.as_secs_f64());
        // A failed expectation shows the round trip it read.
        assert_eq!(strict.reason, Some(FailureReason::Assertion), "{strict:#?}");
        assert!(
            strict.assertions[0].actual.contains("rtt.max = "),
            "{strict:#?}"
        );
    } else {
        assert_sysctl_error(loopback);
        assert_sysctl_error(strict);
        // No packet, no latency: the thresholds have nothing to judge.
        assert!(loopback.latency.is_none(), "{loopback:#?}");
        assert!(
            loopback.thresholds.iter().all(|t| t.state == State::NoData),
            "{loopback:#?}"
        );
    }
}

#[tokio::test]
async fn ipv6_loopback_pings_or_fails_naming_the_sysctl() {
    let outcomes = run_probes(
        "",
        &[(
            "a.toml",
            &probe(
                "loopback6",
                "2s",
                "",
                "host = \"[::1]\"\nip_version = 6\ncount = 2\ninterval = \"10ms\"\nsize = 0\nexpect = [\"address == '::1'\", \"loss < 0.01\"]",
            ),
        )],
    )
    .await;
    let o = &outcomes[0];
    match (unprivileged_ping_allowed(), ipv6_loopback()) {
        (false, _) => assert_sysctl_error(o),
        (true, true) => assert_all_answered(o, 2, "::1"),
        // IPv6 switched off: the socket or the send is refused, never a
        // verdict of loss.
        (true, false) => assert_eq!(o.reason, Some(FailureReason::Connect), "{o:#?}"),
    }
}

#[test]
fn the_example_probe_passes_or_reports_the_sysctl() {
    let run = common::synthmon(
        &common::repo(),
        &[
            "--config",
            "config.toml",
            "--once",
            "--probe",
            "ping-loopback",
        ],
        &[],
    );
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains("ping-loopback @ sandbox"))
        .unwrap_or_else(|| panic!("no line for ping-loopback:\n{}", run.stdout));
    if unprivileged_ping_allowed() {
        run.assert_code(0);
        assert!(line.starts_with("PASS"), "{}", run.stdout);
        assert!(line.contains("resolve") && line.contains("ping"), "{line}");
        assert!(
            run.stdout.contains("threshold loss < 1%: ok"),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("(3 samples)"), "{}", run.stdout);
    } else {
        run.assert_code(1);
        assert!(line.starts_with("FAIL"), "{}", run.stdout);
        assert!(
            run.stdout
                .contains("permission: the kernel does not allow unprivileged ICMP"),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout
                .contains("sysctl -w net.ipv4.ping_group_range=\"0 2147483647\""),
            "{}",
            run.stdout
        );
    }
}

#[test]
fn load_errors_are_located() {
    const BAD: &str = r#"name = "bad-ping"
environments = ["target"]
timeout = "1s"

[icmp]
host = "127.0.0.1:80"
count = 0
interval = "5ms"
size = 2000
ip_version = 5
pattern = "x"
expect = ["loss < '1%'", "recieved == 3"]
"#;
    // Valid keys, but too many packets for the timeout, and an address of
    // the other family.
    const SLOW: &str = r#"name = "slow-ping"
environments = ["target"]
timeout = "1s"

[icmp]
host = "::1"
ip_version = 4
count = 6
interval = "200ms"
"#;
    const NO_HOST: &str =
        "name = \"no-host\"\nenvironments = [\"target\"]\n\n[icmp]\ncount = 101\n";
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &config_with_target("http://127.0.0.1:9"),
        &[
            ("bad.toml", BAD),
            ("slow.toml", SLOW),
            ("none.toml", NO_HOST),
        ],
    );
    let opts = synthmon::config::LoadOptions {
        config_path: Some(path),
        overrides: vec![],
    };
    let Err(diagnostics) = synthmon::plan::load(&opts) else {
        panic!("probes with mistakes loaded");
    };
    let diagnostics = diagnostics.0;
    let find = |file: &str, key: &str| {
        diagnostics
            .iter()
            .find(|d| d.file.ends_with(file) && d.key == key)
            .unwrap_or_else(|| panic!("no error at `{key}` of {file}: {diagnostics:#?}"))
    };
    // At the value written after `assignment` (`count = `).
    let at = |file: &str, text: &str, key: &str, assignment: &str, message: &str| {
        let d = find(file, key);
        let (line, column) = position_of(text, assignment);
        assert_eq!(
            (d.line, d.column),
            (line, column + assignment.len()),
            "{d:?}"
        );
        assert!(d.message.contains(message), "{d:?}");
    };
    // An unknown key is reported, and the rest of the table still read.
    let d = find("bad.toml", "icmp.pattern");
    assert_eq!(d.line, position_of(BAD, "pattern = ").0, "{d:?}");
    assert!(d.message.contains("pattern"), "{d:?}");
    at("bad.toml", BAD, "icmp.host", "host = ", "ping has no port");
    at(
        "bad.toml",
        BAD,
        "icmp.count",
        "count = ",
        "from 1 to 100, found 0",
    );
    at(
        "bad.toml",
        BAD,
        "icmp.interval",
        "interval = ",
        "at least 10ms, found 5ms",
    );
    at(
        "bad.toml",
        BAD,
        "icmp.size",
        "size = ",
        "0 to 1452 bytes, found 2000",
    );
    at(
        "bad.toml",
        BAD,
        "icmp.ip_version",
        "ip_version = ",
        "expected 4 or 6, found 5",
    );
    let d = find("bad.toml", "icmp.expect[0]");
    assert!(d.message.contains("loss"), "{d:?}");
    let d = find("bad.toml", "icmp.expect[1]");
    assert!(d.message.contains("unknown variable `recieved`"), "{d:?}");
    assert!(d.message.contains("did you mean `received`?"), "{d:?}");
    at(
        "slow.toml",
        SLOW,
        "icmp.interval",
        "interval = ",
        "6 echo requests 200ms apart take 1s, which does not fit in the probe's timeout (1s)",
    );
    at(
        "slow.toml",
        SLOW,
        "icmp.host",
        "host = ",
        "`::1` is an IPv6 address, but ip_version is 4",
    );
    let d = find("none.toml", "icmp");
    assert!(d.message.contains("missing required key `host`"), "{d:?}");
    at(
        "none.toml",
        NO_HOST,
        "icmp.count",
        "count = ",
        "from 1 to 100, found 101",
    );
}
