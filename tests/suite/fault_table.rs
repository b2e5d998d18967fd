//! The fault table: one row per hostile behaviour of a target, each run as
//! a real probe against one built-in sandbox (its HTTP routes, its raw
//! HTTP fault port `sandbox_raw`, its TLS, DNS and gRPC listeners) and, for
//! SMTP without STARTTLS, the SMTP server of `email.rs`.
//!
//! Each row names what must come of it: pass or fail, the reason from the
//! closed set (`outcome.reason`), words the message must contain (the
//! outcome's error and its failed checks, as a report shows them; never
//! Rust `Debug` noise), a deadline the run must finish within, and for
//! some rows a fact to check (`body_bytes`, `redirects`). The process' RSS
//! must stay bounded after the rows that try to make the client hold a lot
//! (gzip bomb, endless body, 1 MiB of headers). Every row runs; a failure
//! prints the whole table with every mismatching row.
//!
//! Also here: the regression tests of the net layer's defects found with
//! it, each named after its bug.

use crate::common::{self, load, run_one, write_config};
use crate::email::{Behaviour, notification, receiver, smtp_server};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use synthmon::alert::email::{self, SmtpTls};
use synthmon::alert::outbox::Attempt;
use synthmon::outcome::{FailureReason, Outcome};
use synthmon::sandbox::Sandbox;

/// The whole table runs under this.
const BOUND: Duration = Duration::from_secs(60);
/// How far the process' resident memory may grow over the table.
const RSS_GROWTH: u64 = 300 << 20;
/// Words that mean a `Debug` dump reached a message.
const DEBUG_NOISE: [&str; 6] = ["Kind(", "Custom {", "Os {", "Error {", "kind: ", "Some("];
const SECOND: Duration = Duration::from_secs(1);

/// What a row runs.
enum Target {
    /// A probe file: its top-level keys (after `name`) and its kind table.
    Probe { top: String, table: String },
    /// The email receiver, `tls = "starttls"`, against an SMTP server that
    /// does not offer STARTTLS.
    SmtpWithoutStarttls,
}

/// A fact to check beyond the verdict.
type Check = fn(&Outcome) -> Result<(), String>;

struct Row {
    name: &'static str,
    target: Target,
    pass: bool,
    /// The reason's label; `None` for a pass.
    reason: Option<&'static str>,
    /// Words the message must contain (empty: nothing to match).
    says: String,
    deadline: Duration,
    /// Resident memory is measured after this row.
    heavy: bool,
    check: Option<Check>,
}

/// What came of a row.
struct Seen {
    pass: bool,
    reason: Option<String>,
    message: String,
    elapsed: Duration,
    check: Result<(), String>,
}

/// A probe in environment `env` (`plain`: the system's trust store only;
/// `trusting`: the sandbox CA trusted too) with `timeout` and `table`.
fn probe(env: &str, timeout: &str, table: String) -> Target {
    Target::Probe {
        top: format!("environments = [\"{env}\"]\ntimeout = \"{timeout}\"\n"),
        table,
    }
}

/// An `http` probe of `url` (absolute, or a path on the sandbox) with
/// more keys.
fn http(timeout: &str, url: &str, more: &str) -> Target {
    probe("plain", timeout, format!("[http]\nurl = \"{url}\"\n{more}"))
}

fn row(
    name: &'static str,
    target: Target,
    reason: Option<&'static str>,
    says: impl Into<String>,
    deadline: Duration,
) -> Row {
    Row {
        name,
        target,
        pass: reason.is_none(),
        reason,
        says: says.into(),
        deadline,
        heavy: false,
        check: None,
    }
}

impl Row {
    fn heavy(mut self) -> Row {
        self.heavy = true;
        self
    }

    fn check(mut self, check: Check) -> Row {
        self.check = Some(check);
        self
    }
}

fn body_bytes(o: &Outcome) -> Option<u64> {
    o.http.as_ref().map(|h| h.body_bytes)
}

/// The table, with the sandbox's addresses filled in.
fn rows(vars: &BTreeMap<String, String>) -> Vec<Row> {
    let raw = |path: &str| format!("http://{}{path}", vars["sandbox_raw"]);
    let tls = |var: &str| format!("https://{}/", vars[var]);
    let dns = |name: &str, more: &str| {
        probe(
            "plain",
            "1s",
            format!(
                "[dns]\nserver = \"{}\"\nname = \"{name}\"\n{more}",
                vars["sandbox_dns"]
            ),
        )
    };
    let http_port = vars["http_port"].clone();
    let fast = 3 * SECOND;
    vec![
        // Slow and trickled heads and bodies: the one deadline, by phase.
        row(
            "slow headers",
            http("300ms", "/delay/5000", ""),
            Some("timeout"),
            "deadline exceeded after 0.3",
            SECOND,
        ),
        row(
            "trickled headers",
            http("300ms", &raw("/trickle-head"), ""),
            Some("timeout"),
            "while waiting for the response (processing)",
            SECOND,
        ),
        row(
            "slow body",
            http("300ms", "/stall", ""),
            Some("timeout"),
            "while reading the body (transfer)",
            SECOND,
        )
        .check(|o| match body_bytes(o) {
            Some(10) => Ok(()),
            other => Err(format!("body_bytes {other:?}, expected the 10 that came")),
        }),
        row(
            "trickled body",
            http("300ms", &raw("/trickle-body"), ""),
            Some("timeout"),
            "while reading the body (transfer)",
            SECOND,
        )
        .check(|o| match body_bytes(o) {
            Some(1..=5) => Ok(()),
            other => Err(format!("body_bytes {other:?}, expected the 1-5 that came")),
        }),
        row(
            "endless body",
            http("5s", &raw("/endless"), "max_body_size = \"1 MiB\""),
            Some("body_too_large"),
            "body exceeds the 1048576-byte cap (raw)",
            fast,
        )
        .heavy(),
        row(
            "gzip bomb",
            http("5s", "/gzip/16777216", "max_body_size = \"1 MiB\""),
            Some("body_too_large"),
            "body exceeds the 1048576-byte cap (after decompression)",
            fast,
        )
        .heavy(),
        row(
            "invalid gzip",
            http("2s", &raw("/invalid-gzip"), ""),
            Some("protocol"),
            "cannot decode the gzip body: invalid gzip header",
            fast,
        ),
        // The connection ends early.
        row(
            "close without response",
            http("2s", &raw("/close"), ""),
            Some("closed"),
            "the server closed the connection without sending a response",
            fast,
        ),
        row(
            "reset before the response",
            http("2s", &raw("/reset"), ""),
            Some("connection_reset"),
            "the server reset the connection (TCP RST) before sending a response",
            fast,
        ),
        row(
            "reset mid-body",
            http("2s", &raw("/reset-mid-body"), ""),
            Some("connection_reset"),
            "the server reset the connection (TCP RST) after 1000 of the 100000 body bytes announced",
            fast,
        )
        .check(|o| match body_bytes(o) {
            Some(1000) => Ok(()),
            other => Err(format!("body_bytes {other:?}, expected 1000")),
        }),
        row(
            "truncated head",
            http("2s", &raw("/truncated-head"), ""),
            Some("closed"),
            "the server closed the connection in the middle of the response head, after 38 bytes",
            fast,
        ),
        row(
            "long Content-Length",
            http("2s", &raw("/long-length"), ""),
            Some("closed"),
            "the server closed the connection after 20 of the 100 body bytes announced",
            fast,
        )
        .check(|o| match body_bytes(o) {
            Some(20) => Ok(()),
            other => Err(format!("body_bytes {other:?}, expected 20")),
        }),
        // What came back is not HTTP, or not valid HTTP.
        row(
            "garbage",
            http("2s", &raw("/garbage"), ""),
            Some("protocol"),
            "the response is not valid HTTP/1.x: invalid HTTP version parsed (it begins with \"\\x00\\xff",
            fast,
        ),
        row(
            "HTTP/0.9",
            http("2s", &raw("/http09"), ""),
            Some("protocol"),
            "(it begins with \"<html><body>hello",
            fast,
        ),
        row(
            "bad status line",
            http("2s", &raw("/bad-status-line"), ""),
            Some("protocol"),
            "invalid HTTP status-code parsed (it begins with \"HTTP/1.1 2OO OK",
            fast,
        ),
        row(
            "short Content-Length",
            http("2s", &raw("/short-length"), "expect = [\"body == 'hello'\"]"),
            None,
            "",
            fast,
        )
        .check(|o| match body_bytes(o) {
            Some(5) => Ok(()),
            other => Err(format!("body_bytes {other:?}, expected 5")),
        }),
        row(
            "duplicate Content-Length",
            http("2s", &raw("/duplicate-length"), ""),
            Some("protocol"),
            "invalid content-length parsed",
            fast,
        ),
        row(
            "Content-Length with chunked",
            http("2s", &raw("/length-and-chunked"), ""),
            Some("protocol"),
            "both Transfer-Encoding and Content-Length",
            fast,
        ),
        row(
            "bad chunk",
            http("2s", &raw("/bad-chunk"), ""),
            Some("protocol"),
            "reading the body failed: error reading a body from connection: Invalid chunk size line",
            fast,
        ),
        row(
            "1 MiB of headers",
            http("5s", &raw("/huge-headers"), ""),
            Some("protocol"),
            "the response head is larger than the client accepts (about 400 KiB and 100 headers)",
            fast,
        )
        .heavy(),
        // Redirects.
        row(
            "redirect loop",
            http("2s", "/redirect-loop", "max_redirects = 3"),
            Some("too_many_redirects"),
            "more than 3 redirects",
            fast,
        ),
        row(
            "redirect chain",
            http("2s", "/redirect/3", ""),
            None,
            "",
            fast,
        )
        .check(|o| match o.http.as_ref().map(|h| h.redirects) {
            Some(3) => Ok(()),
            other => Err(format!("redirects {other:?}, expected 3")),
        }),
        row(
            "cross-host redirect with credentials",
            http(
                "2s",
                &format!("/redirect-to?url=http://localhost:{http_port}/headers"),
                &format!(
                    "headers = {{ authorization = \"Bearer fault-table-token\", cookie = \"session=1\" }}\nexpect = [\"!('authorization' in json)\", \"!('cookie' in json)\", \"json.host == 'localhost:{http_port}'\"]"
                ),
            ),
            None,
            "",
            fast,
        ),
        row(
            "redirect without Location",
            http("2s", "/status/302", ""),
            Some("status"),
            "status = 302 (a redirect without a Location header)",
            fast,
        ),
        row(
            "redirect to file://",
            http("2s", "/redirect-to?url=file:///etc/passwd", ""),
            Some("protocol"),
            "redirects to file:///etc/passwd, which is not an http(s) URL with a host",
            fast,
        ),
        // Status codes.
        row(
            "1xx interim responses",
            http(
                "2s",
                &raw("/interim"),
                "expect = [\"status == 200\", \"body == 'after 100/103'\"]",
            ),
            None,
            "",
            fast,
        ),
        row(
            "unknown status 799",
            http("2s", &raw("/status/799"), ""),
            Some("status"),
            "status = 799",
            fast,
        ),
        row(
            "unknown success status 299",
            http("2s", &raw("/status/299"), ""),
            None,
            "",
            fast,
        ),
        // Bodies a probe reads.
        row(
            "invalid JSON",
            http(
                "2s",
                "/json/invalid",
                "expect = [\"json.service.name == 'sandbox-orders'\"]",
            ),
            Some("assertion"),
            "the body is not JSON: EOF while parsing a string",
            fast,
        ),
        row(
            "deep JSON",
            http("5s", "/json/deep", "expect = [\"json != null\"]"),
            Some("assertion"),
            "the body is not JSON: nesting deeper than 127 levels",
            fast,
        ),
        row(
            "non-UTF-8 body",
            http(
                "2s",
                &raw("/non-utf8"),
                "expect = [\"body.startsWith('caf')\", \"headers['content-type'] == 'text/plain; charset=iso-8859-1'\"]",
            ),
            None,
            "",
            fast,
        )
        .check(|o| match body_bytes(o) {
            Some(13) => Ok(()),
            other => Err(format!("body_bytes {other:?}, expected 13")),
        }),
        row(
            "SSE stall",
            probe(
                "plain",
                "5s",
                "[stream]\nurl = \"/events?count=5&interval_ms=10&stall_after=2&stall_ms=5000\"\nmin_events = 5\nmax_gap = \"200ms\"".to_owned(),
            ),
            Some("stream_stalled"),
            "after event 2 (id `2`); max_gap is 200ms",
            SECOND,
        ),
        // TLS.
        row(
            "expired certificate",
            http("2s", &tls("sandbox_tls_expired"), "").trusting(),
            Some("cert_expired"),
            "certificate of 127.0.0.1 expired on ",
            fast,
        ),
        row(
            "self-signed certificate (untrusted CA)",
            http("2s", &tls("sandbox_tls"), ""),
            Some("cert_untrusted"),
            "certificate of 127.0.0.1 is not trusted: unknown issuer",
            fast,
        ),
        row(
            "wrong-host certificate",
            http("2s", &tls("sandbox_tls_wrong_host"), "").trusting(),
            Some("cert_hostname"),
            "certificate is not valid for 127.0.0.1: it names wrong.example",
            fast,
        ),
        row(
            "plain HTTP to a TLS port",
            http("2s", &format!("http://{}/", vars["sandbox_tls"]), ""),
            Some("protocol"),
            "the response is a TLS record, not HTTP/1.x: the port speaks TLS (is the URL meant to be https://?)",
            fast,
        ),
        row(
            "TLS to a plain HTTP port",
            http("2s", &format!("https://127.0.0.1:{http_port}/health"), ""),
            Some("tls"),
            "tls handshake with 127.0.0.1 failed: the answer is not TLS (is the port a plain-text one?)",
            fast,
        ),
        // DNS.
        row(
            "NXDOMAIN for an http target",
            http("2s", "http://synthmon-fault-table.invalid/", ""),
            Some("dns"),
            "cannot resolve synthmon-fault-table.invalid",
            fast,
        ),
        row(
            "DNS NXDOMAIN",
            dns("missing.sandbox.test", ""),
            Some("rcode"),
            "NXDOMAIN",
            fast,
        ),
        row(
            "DNS SERVFAIL",
            dns("servfail.sandbox.test", ""),
            Some("rcode"),
            "SERVFAIL",
            fast,
        ),
        row(
            "DNS no answer (silent server)",
            dns("slow.sandbox.test", ""),
            Some("timeout"),
            "no answer from",
            2 * SECOND,
        ),
        row(
            "DNS no data (NOERROR, empty answer)",
            dns(
                "api.sandbox.test",
                "type = \"MX\"\nexpect = [\"size(answers) > 0\"]",
            ),
            Some("assertion"),
            "size(answers) > 0: size(answers) = 0",
            fast,
        ),
        // gRPC and SMTP.
        row(
            "gRPC NOT_SERVING",
            probe(
                "plain",
                "2s",
                format!(
                    "[grpc]\naddress = \"{}\"\nservice = \"payments\"",
                    vars["sandbox_grpc"]
                ),
            ),
            Some("not_serving"),
            "service `payments` on",
            fast,
        ),
        row(
            "SMTP without STARTTLS",
            Target::SmtpWithoutStarttls,
            Some("permanent"),
            "the server does not offer STARTTLS (tls = \"starttls\"); refusing to send in clear",
            fast,
        ),
    ]
}

impl Target {
    /// The same probe in the environment that trusts the sandbox CA.
    fn trusting(self) -> Target {
        match self {
            Target::Probe { top, table } => Target::Probe {
                top: top.replace("[\"plain\"]", "[\"trusting\"]"),
                table,
            },
            other => other,
        }
    }
}

/// The process' resident memory, from /proc/self/status.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

/// The config: `plain` trusts the system's roots only, `trusting` the
/// sandbox CA too; both at the sandbox.
fn config(sb: &Sandbox) -> String {
    format!(
        "[daemon]\nprobes = [\"probes/*.toml\"]\n\n\
         [environments.plain]\nbase_url = \"{base}\"\n\n\
         [environments.trusting]\nbase_url = \"{base}\"\ntls = {{ ca_file = \"{ca}\" }}\n",
        base = sb.base_url(),
        ca = sb.variables()["sandbox_ca_file"],
    )
}

/// What a report shows of a failure: the error, then each failed check's
/// expression and what it saw.
fn message(o: &Outcome) -> String {
    let mut text = o.error.clone().unwrap_or_default();
    for a in o.assertions.iter().filter(|a| !a.passed) {
        let _ = write!(text, " | {}: {}", a.expression, a.actual);
    }
    text
}

/// Runs one row, under twice its deadline plus a second (a row that hangs
/// is reported, not waited for).
async fn run(row: &Row, config: &str) -> Seen {
    let started = Instant::now();
    let work = async {
        match &row.target {
            Target::Probe { top, table } => {
                let dir = tempfile::tempdir().unwrap();
                let text = format!("name = \"p\"\n{top}\n{table}\n");
                let path = write_config(dir.path(), config, &[("p.toml", &text)]);
                let o = run_one(&load(&path)).await;
                Seen {
                    pass: o.success,
                    reason: o.reason.map(|r| r.as_str().to_owned()),
                    message: message(&o),
                    elapsed: Duration::ZERO,
                    check: row.check.map_or(Ok(()), |check| check(&o)),
                }
            }
            Target::SmtpWithoutStarttls => {
                // A receiver's verdict is an `Attempt`, not an outcome: its
                // class stands in for the reason.
                let server = smtp_server(Behaviour::default()).await;
                let r = receiver(server.port, SmtpTls::StartTls, None);
                let (pass, reason, message) = match email::send(&r, &[notification("api")]).await {
                    Attempt::Delivered => (true, None, String::new()),
                    Attempt::Transient { error, .. } => (false, Some("transient"), error),
                    Attempt::Permanent { error } => (false, Some("permanent"), error),
                };
                Seen {
                    pass,
                    reason: reason.map(str::to_owned),
                    message,
                    elapsed: Duration::ZERO,
                    check: Ok(()),
                }
            }
        }
    };
    match tokio::time::timeout(2 * row.deadline + SECOND, work).await {
        Ok(seen) => Seen {
            elapsed: started.elapsed(),
            ..seen
        },
        Err(_) => Seen {
            pass: false,
            reason: None,
            message: "the run did not finish".to_owned(),
            elapsed: started.elapsed(),
            check: Err("hung".to_owned()),
        },
    }
}

/// What is wrong with `seen` for `row`, if anything.
fn mismatches(row: &Row, seen: &Seen) -> Vec<String> {
    let mut wrong = Vec::new();
    if seen.pass != row.pass {
        wrong.push(format!("pass {} (expected {})", seen.pass, row.pass));
    }
    if seen.reason.as_deref() != row.reason {
        wrong.push(format!(
            "reason {:?} (expected {:?})",
            seen.reason, row.reason
        ));
    }
    if !seen.message.contains(&row.says) {
        wrong.push(format!("message lacks {:?}", row.says));
    }
    if let Some(noise) = DEBUG_NOISE.iter().find(|n| seen.message.contains(*n)) {
        wrong.push(format!("message has Debug noise {noise:?}"));
    }
    if !row.pass && seen.message.trim().is_empty() {
        wrong.push("no message".to_owned());
    }
    if seen.elapsed > row.deadline {
        wrong.push(format!(
            "took {:.3}s (deadline {:.3}s)",
            seen.elapsed.as_secs_f64(),
            row.deadline.as_secs_f64()
        ));
    }
    if let Err(why) = &seen.check {
        wrong.push(why.clone());
    }
    wrong
}

#[tokio::test]
async fn every_hostile_behaviour_of_a_target_gets_its_verdict_reason_and_words_in_time() {
    common::within(BOUND, async {
        let sb = common::sandbox().await;
        let mut vars = sb.variables().clone();
        vars.insert("http_port".to_owned(), sb.addr().port().to_string());
        let config = config(&sb);
        let rows = rows(&vars);
        let baseline = rss();
        let mut report = String::new();
        let mut failed = 0;
        let mut peak = baseline;
        for row in &rows {
            let seen = run(row, &config).await;
            let mut wrong = mismatches(row, &seen);
            if row.heavy {
                let now = rss();
                peak = peak.max(now);
                if now.saturating_sub(baseline) > RSS_GROWTH {
                    wrong.push(format!(
                        "RSS grew by {} MiB (bound {} MiB)",
                        (now - baseline) >> 20,
                        RSS_GROWTH >> 20
                    ));
                }
            }
            let verdict = if wrong.is_empty() { "ok" } else { "WRONG" };
            let _ = writeln!(
                report,
                "{verdict:<5} {:<40} {:<5} {:<20} {:>7.3}s  {}",
                row.name,
                if seen.pass { "pass" } else { "fail" },
                seen.reason.as_deref().unwrap_or("-"),
                seen.elapsed.as_secs_f64(),
                seen.message
            );
            for why in &wrong {
                let _ = writeln!(report, "        -> {why}");
            }
            failed += usize::from(!wrong.is_empty());
        }
        sb.shutdown().await;
        assert!(
            failed == 0,
            "{failed} of {} rows are wrong (RSS {} MiB at start, {} MiB at peak):\n{report}",
            rows.len(),
            baseline >> 20,
            peak >> 20
        );
        // Printed for `--nocapture`: the table as it ran.
        println!("{report}");
    })
    .await;
}

/// The raw fault port, one row for the regression tests.
async fn run_raw(sb: &Sandbox, path: &str) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "name = \"p\"\nenvironments = [\"plain\"]\ntimeout = \"2s\"\n\n[http]\nurl = \"http://{}{path}\"\n",
        sb.variables()["sandbox_raw"]
    );
    let path = write_config(dir.path(), &config(sb), &[("p.toml", &text)]);
    run_one(&load(&path)).await
}

/// Regression: "a TCP reset or a close without response is reported as
/// `protocol`". A reset is `connection_reset`, a close without (or in the
/// middle of) a response is `closed`, each saying what the server did.
#[tokio::test]
async fn a_tcp_reset_or_a_close_without_response_is_reported_as_protocol() {
    common::within(Duration::from_secs(20), async {
        let sb = common::sandbox().await;
        let o = run_raw(&sb, "/reset").await;
        assert_eq!(o.reason, Some(FailureReason::Reset), "{o:#?}");
        assert_eq!(
            o.error.as_deref(),
            Some("the server reset the connection (TCP RST) before sending a response")
        );
        let o = run_raw(&sb, "/close").await;
        assert_eq!(o.reason, Some(FailureReason::Closed), "{o:#?}");
        assert_eq!(
            o.error.as_deref(),
            Some("the server closed the connection without sending a response")
        );
        let o = run_raw(&sb, "/truncated-head").await;
        assert_eq!(o.reason, Some(FailureReason::Closed), "{o:#?}");
        sb.shutdown().await;
    })
    .await;
}

/// Regression: "a body cut by RST mid-way reports `body_bytes 0`". The
/// bytes that arrived before the reset are reported, and the message says
/// how far the body got.
#[tokio::test]
async fn a_body_cut_by_rst_midway_reports_body_bytes_0() {
    common::within(Duration::from_secs(20), async {
        let sb = common::sandbox().await;
        let o = run_raw(&sb, "/reset-mid-body").await;
        assert_eq!(o.reason, Some(FailureReason::Reset), "{o:#?}");
        let http = o.http.as_ref().unwrap();
        assert_eq!(http.body_bytes, 1000, "{o:#?}");
        assert_eq!(http.status, Some(200), "{o:#?}");
        assert_eq!(
            o.error.as_deref(),
            Some(
                "the server reset the connection (TCP RST) after 1000 of the 100000 body bytes announced"
            )
        );
        // A clean close part-way reports its bytes too.
        let o = run_raw(&sb, "/long-length").await;
        assert_eq!(o.reason, Some(FailureReason::Closed), "{o:#?}");
        assert_eq!(o.http.as_ref().unwrap().body_bytes, 20, "{o:#?}");
        sb.shutdown().await;
    })
    .await;
}

/// `synthmon sandbox` prints every listener a person can try, one per
/// line: the HTTP base, the WebSocket URLs and every `vars.sandbox_*`
/// (the raw fault port with where its list is); the raw port it prints
/// answers that list; SIGTERM stops it cleanly.
#[test]
fn synthmon_sandbox_prints_every_port_one_per_line() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_synthmon"))
        .args(["sandbox", "--listen", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wanted: Vec<String> = synthmon::sandbox::VARIABLES
        .iter()
        .map(|v| format!("vars.{v} "))
        .chain(["sandbox listening on http://127.0.0.1:".to_owned()])
        .chain(["ws ".to_owned()])
        .collect();
    let deadline = Instant::now() + common::BIN_DEADLINE;
    let mut lines: Vec<String> = Vec::new();
    while !wanted
        .iter()
        .all(|w| lines.iter().any(|l| l.trim_start().starts_with(w)))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    let raw = lines
        .iter()
        .find_map(|l| l.trim_start().strip_prefix("vars.sandbox_raw"))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned);
    let index = raw.map(|addr| {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut answer = String::new();
        let _ = tcp.read_to_string(&mut answer);
        answer
    });
    // SIGTERM, as a service manager stops it: a clean shutdown, exit 0.
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = Instant::now() + common::BIN_DEADLINE;
    let status = loop {
        match child.try_wait().unwrap() {
            Some(status) => break Some(status),
            None if Instant::now() > deadline => break None,
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "synthmon sandbox did not exit 0 on SIGTERM: {status:?}"
    );
    for w in &wanted {
        assert!(
            lines.iter().any(|l| l.trim_start().starts_with(w)),
            "no line for {w:?} in:\n{}",
            lines.join("\n")
        );
    }
    let ws = lines
        .iter()
        .find(|l| l.trim_start().starts_with("ws "))
        .unwrap();
    assert!(ws.contains("ws://127.0.0.1:"), "{ws}");
    let index = index.unwrap_or_default();
    assert!(index.starts_with("HTTP/1.1 200 OK\r\n"), "{index}");
    assert!(index.contains("/reset-mid-body"), "{index}");
}
