//! The dns probe against real DNS servers on 127.0.0.1: the sandbox's
//! authoritative server (started in-process: UDP, TCP, DNS over TLS and the
//! HTTP form of DNS over HTTPS) and small UDP servers started here that
//! count queries, drop them, or answer with garbage and wrong ids.
//! Configs are written to temp dirs and loaded with `config::load`, then run
//! with `once::select` + `once::run`.

use crate::common;

use common::{config_with_target, load, position_of, run_all, run_one, write_config};
use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use synthmon::outcome::{FailureReason, Outcome};
use synthmon::probe::dns::DnsFacts;
use synthmon::sandbox::Sandbox;
use tokio::net::UdpSocket;

/// Every test body runs under this bound.
const BOUND: Duration = Duration::from_secs(10);

async fn bounded<F: Future>(f: F) -> F::Output {
    common::within(BOUND, f).await
}

async fn sandbox() -> (Sandbox, String) {
    let sb = common::sandbox().await;
    let dns = sb.variables()["sandbox_dns"].clone();
    (sb, dns)
}

/// One probe file in environment `target` with the given timeout and
/// `[dns]` body.
fn probe(name: &str, timeout: &str, dns: &str) -> String {
    format!(
        "name = \"{name}\"\nenvironments = [\"target\"]\ntimeout = \"{timeout}\"\n\n[dns]\n{dns}\n"
    )
}

/// Loads the given probe files (the environment's base URL is unused by
/// dns probes) and runs every pair once.
async fn run_probes(probes: &[(&str, &str)]) -> Vec<Outcome> {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &config_with_target("http://127.0.0.1:9"),
        probes,
    );
    let config = load(&path);
    run_all(&config, &BTreeMap::new()).await
}

/// Runs one probe file.
async fn run_probe(text: &str) -> Outcome {
    let mut outcomes = run_probes(&[("p.toml", text)]).await;
    assert_eq!(outcomes.len(), 1);
    outcomes.remove(0)
}

fn facts(o: &Outcome) -> &DnsFacts {
    match &o.details {
        Some(d) if d.get::<DnsFacts>().is_some() => d.get::<DnsFacts>().unwrap(),
        other => panic!("no dns details: {other:?}"),
    }
}

fn outcome_named<'a>(outcomes: &'a [Outcome], name: &str) -> &'a Outcome {
    outcomes
        .iter()
        .find(|o| o.probe == name)
        .unwrap_or_else(|| panic!("no outcome for {name}: {outcomes:#?}"))
}

#[tokio::test]
async fn an_a_record_passes_and_its_data_is_readable_in_expect() {
    bounded(async {
        let (sb, dns) = sandbox().await;
        let o = run_probe(&probe(
            "api-a",
            "3s",
            &format!(
                r#"server = "{dns}"
name = "api.sandbox.test"
expect = [
  "rcode == 'NOERROR'",
  "size(answers) == 1",
  "answers[0].name == 'api.sandbox.test.'",
  "answers[0].type == 'A'",
  "answers[0].data == '127.0.0.1'",
  "answers[0].ttl == 300",
  "authority == 0 && additional == 0",
  "timings.query < duration('1s') && timings.total >= timings.query",
]"#
            ),
        ))
        .await;
        assert!(o.success, "{o:#?}");
        assert!(o.responded);
        assert!(o.assertions.iter().all(|a| a.passed), "{o:#?}");
        let f = facts(&o);
        assert_eq!(f.server, dns);
        assert_eq!(f.name, "api.sandbox.test.");
        assert_eq!(f.rcode.as_deref(), Some("NOERROR"));
        assert_eq!(f.transport, "udp");
        assert_eq!(f.udp_queries, 1);
        assert!(f.authoritative);
        let names: Vec<_> = o.phases.iter().map(|p| p.name).collect();
        assert_eq!(names, ["resolve", "query"]);
        let sum: Duration = o.phases.iter().map(|p| p.seconds).sum();
        assert_eq!(sum, o.duration, "phases are contiguous: {o:#?}");
        let gauges = o.details.as_ref().unwrap().gauges();
        let gauge = |n: &str| gauges.iter().find(|(name, _)| *name == n).unwrap().1;
        assert_eq!(gauge("probe_dns_answer_rrs"), 1.0);
        assert_eq!(gauge("probe_dns_rcode"), 0.0);
        assert!(gauge("probe_dns_lookup_time_seconds") > 0.0);
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn other_types_tcp_and_cnames_answer_from_the_sandbox() {
    bounded(async {
        let (sb, dns) = sandbox().await;
        let outcomes = run_probes(&[
            (
                "aaaa.toml",
                &probe(
                    "aaaa-tcp",
                    "3s",
                    &format!(
                        "server = \"{dns}\"\nname = \"api.sandbox.test.\"\ntype = \"aaaa\"\ntransport = \"tcp\"\nexpect = [\"answers[0].data == '::1'\"]"
                    ),
                ),
            ),
            (
                "cname.toml",
                &probe(
                    "cname",
                    "3s",
                    &format!(
                        "server = \"{dns}\"\nname = \"www.sandbox.test\"\nexpect = [\"answers.map(a, a.type) == ['CNAME', 'A']\", \"answers[0].data == 'api.sandbox.test.'\"]"
                    ),
                ),
            ),
            (
                "mx.toml",
                &probe(
                    "mx",
                    "3s",
                    &format!(
                        "server = \"{dns}\"\nname = \"sandbox.test\"\ntype = \"MX\"\nrecursion_desired = false\nexpect = [\"answers[0].data == '10 mail.sandbox.test.'\", \"additional == 1\"]"
                    ),
                ),
            ),
            (
                "txt.toml",
                &probe(
                    "txt",
                    "3s",
                    &format!(
                        "server = \"{dns}\"\nname = \"api.sandbox.test\"\ntype = \"TXT\"\nexpect = [\"answers[0].data == 'synthmon sandbox'\"]"
                    ),
                ),
            ),
            (
                "nodata.toml",
                &probe(
                    "nodata",
                    "3s",
                    &format!(
                        "server = \"{dns}\"\nname = \"mail.sandbox.test\"\ntype = \"AAAA\"\nexpect = [\"size(answers) == 0\", \"authority == 1\"]"
                    ),
                ),
            ),
        ])
        .await;
        assert_eq!(outcomes.len(), 5);
        for o in &outcomes {
            assert!(o.success, "{o:#?}");
        }
        assert_eq!(facts(outcome_named(&outcomes, "aaaa-tcp")).transport, "tcp");
        assert_eq!(facts(outcome_named(&outcomes, "aaaa-tcp")).udp_queries, 0);
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn nxdomain_fails_with_reason_rcode_and_names_it() {
    bounded(async {
        let (sb, dns) = sandbox().await;
        let o = run_probe(&probe(
            "nx",
            "3s",
            &format!(
                "server = \"{dns}\"\nname = \"nope.sandbox.test\"\nexpect = [\"authority == 1\"]"
            ),
        ))
        .await;
        assert!(!o.success, "{o:#?}");
        assert!(o.responded, "an answer came: a latency sample");
        assert_eq!(o.reason, Some(FailureReason::Rcode), "{o:#?}");
        let error = o.error.as_deref().unwrap();
        assert!(error.contains("NXDOMAIN"), "{error}");
        assert!(error.contains("expected NOERROR"), "{error}");
        // The rcode check is reported, and the expectations still ran.
        assert_eq!(o.assertions.len(), 2, "{o:#?}");
        assert!(!o.assertions[0].passed);
        assert_eq!(o.assertions[0].actual, "rcode = NXDOMAIN");
        assert!(o.assertions[1].passed, "{o:#?}");
        assert_eq!(facts(&o).rcode_value, Some(3));
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn servfail_and_refused_fail_with_reason_rcode() {
    bounded(async {
        let (sb, dns) = sandbox().await;
        let outcomes = run_probes(&[
            (
                "sf.toml",
                &probe(
                    "servfail",
                    "3s",
                    &format!("server = \"{dns}\"\nname = \"servfail.sandbox.test\""),
                ),
            ),
            (
                "rf.toml",
                &probe(
                    "refused",
                    "3s",
                    &format!("server = \"{dns}\"\nname = \"example.com\""),
                ),
            ),
        ])
        .await;
        for (name, rcode) in [("servfail", "SERVFAIL"), ("refused", "REFUSED")] {
            let o = outcome_named(&outcomes, name);
            assert_eq!(o.reason, Some(FailureReason::Rcode), "{o:#?}");
            assert!(o.error.as_deref().unwrap().contains(rcode), "{o:#?}");
            assert_eq!(facts(o).rcode.as_deref(), Some(rcode));
        }
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn expect_rcode_nxdomain_makes_nxdomain_pass_and_noerror_fail() {
    bounded(async {
        let (sb, dns) = sandbox().await;
        let outcomes = run_probes(&[
            (
                "gone.toml",
                &probe(
                    "gone",
                    "3s",
                    &format!(
                        "server = \"{dns}\"\nname = \"retired.sandbox.test\"\nexpect_rcode = \"nxdomain\"\nexpect = [\"rcode == 'NXDOMAIN'\"]"
                    ),
                ),
            ),
            (
                "either.toml",
                &probe(
                    "either",
                    "3s",
                    &format!(
                        "server = \"{dns}\"\nname = \"retired.sandbox.test\"\nexpect_rcode = [\"NOERROR\", \"NXDOMAIN\"]"
                    ),
                ),
            ),
            (
                "exists.toml",
                &probe(
                    "exists",
                    "3s",
                    &format!(
                        "server = \"{dns}\"\nname = \"api.sandbox.test\"\nexpect_rcode = \"NXDOMAIN\""
                    ),
                ),
            ),
        ])
        .await;
        assert!(outcome_named(&outcomes, "gone").success, "{outcomes:#?}");
        assert!(outcome_named(&outcomes, "either").success, "{outcomes:#?}");
        let o = outcome_named(&outcomes, "exists");
        assert_eq!(o.reason, Some(FailureReason::Rcode), "{o:#?}");
        assert!(o.error.as_deref().unwrap().contains("NOERROR"), "{o:#?}");
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_within_the_deadline() {
    bounded(async {
        let (sb, dns) = sandbox().await;
        let started = Instant::now();
        let outcomes = run_probes(&[
            (
                "udp.toml",
                &probe(
                    "slow-udp",
                    "1300ms",
                    &format!("server = \"{dns}\"\nname = \"slow.sandbox.test\""),
                ),
            ),
            (
                "tcp.toml",
                &probe(
                    "slow-tcp",
                    "600ms",
                    &format!(
                        "server = \"{dns}\"\nname = \"slow.sandbox.test\"\ntransport = \"tcp\""
                    ),
                ),
            ),
        ])
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        for (name, timeout) in [("slow-udp", 1300), ("slow-tcp", 600)] {
            let o = outcome_named(&outcomes, name);
            assert_eq!(o.reason, Some(FailureReason::Timeout), "{o:#?}");
            assert!(!o.responded);
            let timeout = Duration::from_millis(timeout);
            assert!(o.duration >= timeout, "{o:#?}");
            assert!(o.duration < timeout + Duration::from_millis(200), "{o:#?}");
            assert!(o.error.as_deref().unwrap().contains("no answer"), "{o:#?}");
        }
        // Past one second without an answer, the datagram went again.
        assert_eq!(facts(outcome_named(&outcomes, "slow-udp")).udp_queries, 2);
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_truncated_udp_answer_is_asked_again_over_tcp() {
    bounded(async {
        let (sb, dns) = sandbox().await;
        let o = run_probe(&probe(
            "big",
            "3s",
            &format!(
                "server = \"{dns}\"\nname = \"big.sandbox.test\"\ntype = \"TXT\"\nexpect = [\"size(answers) == 40\", \"answers.all(a, a.data.startsWith('synthmon sandbox big record'))\"]"
            ),
        ))
        .await;
        assert!(o.success, "{o:#?}");
        let f = facts(&o);
        assert!(f.truncated, "{f:#?}");
        assert_eq!(f.transport, "tcp");
        assert_eq!(f.udp_queries, 1);
        assert_eq!(f.answers.len(), 40);
        sb.shutdown().await;
    })
    .await;
}

/// How a test server treats each query it receives.
#[derive(Clone, Copy, Debug)]
enum Behaviour {
    /// Answers `192.0.2.1`.
    Answer,
    /// Ignores the first query, answers the others.
    DropFirst,
    /// Sends garbage, an answer with the wrong id and one to another
    /// question, then the right answer.
    JunkThenAnswer,
    /// Sends only garbage and wrong answers.
    JunkOnly,
    /// Answers with the AD bit set when the query set it (a validating
    /// resolver vouching for the answer).
    Authenticated,
}

/// A UDP DNS server on 127.0.0.1 (and on [::1] at the same port, when it
/// can): counts the queries it receives and records their ids.
struct TestServer {
    port: u16,
    queries: Arc<AtomicUsize>,
    ids: Arc<Mutex<Vec<u16>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    async fn start(behaviour: Behaviour) -> TestServer {
        let v4 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = v4.local_addr().unwrap().port();
        let mut sockets = vec![v4];
        if let Ok(v6) = UdpSocket::bind(("::1", port)).await {
            sockets.push(v6);
        }
        let queries = Arc::new(AtomicUsize::new(0));
        let ids = Arc::new(Mutex::new(Vec::new()));
        let tasks = sockets
            .into_iter()
            .map(|socket| {
                let queries = queries.clone();
                let ids = ids.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    loop {
                        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                            continue;
                        };
                        let Ok(query) = Message::from_vec(&buf[..n]) else {
                            continue;
                        };
                        let seen = queries.fetch_add(1, Ordering::SeqCst) + 1;
                        ids.lock().unwrap().push(query.id());
                        for reply in replies(behaviour, &query, seen) {
                            socket.send_to(&reply, peer).await.unwrap();
                        }
                    }
                })
            })
            .collect();
        TestServer {
            port,
            queries,
            ids,
            tasks,
        }
    }

    fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The answer to `query`: one A record, 192.0.2.1.
fn answer(query: &Message) -> Message {
    let mut m = Message::new();
    m.set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .add_queries(query.queries().iter().cloned());
    if let Some(q) = query.query() {
        m.add_answer(Record::from_rdata(
            q.name().clone(),
            60,
            RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
        ));
    }
    m
}

fn replies(behaviour: Behaviour, query: &Message, seen: usize) -> Vec<Vec<u8>> {
    let good = answer(query);
    // The wrong answers carry another address, so taking one shows.
    let mut bad = good.clone();
    bad.answers_mut()[0].set_data(RData::A(A(Ipv4Addr::new(203, 0, 113, 9))));
    let mut wrong_id = bad.clone();
    wrong_id.set_id(query.id().wrapping_add(1));
    let mut other_question = bad.clone();
    other_question.queries_mut()[0].set_name("other.example.".parse().unwrap());
    let junk = vec![
        b"\xde\xad\xbe\xef garbage".to_vec(),
        // A header claiming 65535 answers in a 12-byte datagram.
        vec![0, 0, 0x81, 0x80, 0, 0, 0xff, 0xff, 0, 0, 0, 0],
        wrong_id.to_vec().unwrap(),
        other_question.to_vec().unwrap(),
    ];
    match behaviour {
        Behaviour::Answer => vec![good.to_vec().unwrap()],
        Behaviour::DropFirst if seen == 1 => vec![],
        Behaviour::DropFirst => vec![good.to_vec().unwrap()],
        Behaviour::JunkThenAnswer => {
            let mut all = junk;
            all.push(good.to_vec().unwrap());
            all
        }
        Behaviour::JunkOnly => junk,
        Behaviour::Authenticated => {
            let mut vouched = good;
            vouched.set_authentic_data(query.authentic_data());
            vec![vouched.to_vec().unwrap()]
        }
    }
}

#[tokio::test]
async fn every_run_sends_its_own_query() {
    bounded(async {
        let server = TestServer::start(Behaviour::Answer).await;
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(
            dir.path(),
            &config_with_target("http://127.0.0.1:9"),
            &[(
                "p.toml",
                &probe(
                    "counted",
                    "3s",
                    &format!(
                        "server = \"127.0.0.1:{}\"\nname = \"www.example.test\"\nexpect = [\"answers[0].data == '192.0.2.1'\"]",
                        server.port
                    ),
                ),
            )],
        );
        let config = load(&path);
        for run in 1..=2 {
            let o = run_one(&config).await;
            assert!(o.success, "{o:#?}");
            assert_eq!(server.queries(), run, "run {run} did not reach the server");
        }
        let ids = server.ids.lock().unwrap().clone();
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1], "each query has its own id");
    })
    .await;
}

#[tokio::test]
async fn a_server_given_by_host_name_is_resolved_first() {
    bounded(async {
        let server = TestServer::start(Behaviour::Answer).await;
        let o = run_probe(&probe(
            "by-name",
            "3s",
            &format!(
                "server = \"localhost:{}\"\nname = \"www.example.test\"",
                server.port
            ),
        ))
        .await;
        assert!(o.success, "{o:#?}");
        let f = facts(&o);
        assert!(f.server.ends_with(&format!(":{}", server.port)), "{f:#?}");
        assert!(!f.server.starts_with("localhost"), "{f:#?}");
        assert_eq!(o.phases[0].name, "resolve");
        assert!(o.phases[0].seconds > Duration::ZERO, "{o:#?}");
        assert_eq!(server.queries(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_lost_datagram_is_sent_again() {
    bounded(async {
        let server = TestServer::start(Behaviour::DropFirst).await;
        let o = run_probe(&probe(
            "lossy",
            "3s",
            &format!(
                "server = \"127.0.0.1:{}\"\nname = \"www.example.test\"",
                server.port
            ),
        ))
        .await;
        assert!(o.success, "{o:#?}");
        assert_eq!(facts(&o).udp_queries, 2);
        assert_eq!(server.queries(), 2);
        assert!(o.duration >= Duration::from_secs(1), "{o:#?}");
    })
    .await;
}

#[tokio::test]
async fn garbage_and_wrong_answers_are_ignored_until_the_right_one() {
    bounded(async {
        let server = TestServer::start(Behaviour::JunkThenAnswer).await;
        let o = run_probe(&probe(
            "junk-then-answer",
            "3s",
            &format!(
                "server = \"127.0.0.1:{}\"\nname = \"www.example.test\"\nexpect = [\"answers[0].data == '192.0.2.1'\"]",
                server.port
            ),
        ))
        .await;
        assert!(o.success, "{o:#?}");
        assert!(o.duration < Duration::from_secs(1), "{o:#?}");
    })
    .await;
}

#[tokio::test]
async fn only_garbage_and_wrong_answers_fail_with_reason_protocol_at_the_deadline() {
    bounded(async {
        let server = TestServer::start(Behaviour::JunkOnly).await;
        let o = run_probe(&probe(
            "junk",
            "700ms",
            &format!(
                "server = \"127.0.0.1:{}\"\nname = \"www.example.test\"",
                server.port
            ),
        ))
        .await;
        assert_eq!(o.reason, Some(FailureReason::Protocol), "{o:#?}");
        assert!(!o.responded);
        let error = o.error.as_deref().unwrap();
        assert!(error.contains("ignored 4 datagrams"), "{error}");
        assert!(error.contains("malformed"), "{error}");
        assert!(o.duration >= Duration::from_millis(700), "{o:#?}");
        assert!(o.duration < Duration::from_millis(900), "{o:#?}");
    })
    .await;
}

#[tokio::test]
async fn nothing_listening_is_connect_refused() {
    bounded(async {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        drop(socket);
        let outcomes = run_probes(&[
            (
                "udp.toml",
                &probe(
                    "closed-udp",
                    "3s",
                    &format!("server = \"127.0.0.1:{port}\"\nname = \"a.example\""),
                ),
            ),
            (
                "tcp.toml",
                &probe(
                    "closed-tcp",
                    "3s",
                    &format!(
                        "server = \"127.0.0.1:{port}\"\nname = \"a.example\"\ntransport = \"tcp\""
                    ),
                ),
            ),
        ])
        .await;
        for o in &outcomes {
            assert_eq!(o.reason, Some(FailureReason::ConnectRefused), "{o:#?}");
            assert!(o.duration < Duration::from_secs(1), "{o:#?}");
            assert!(!o.responded);
        }
    })
    .await;
}

#[test]
fn load_errors_are_located() {
    const BAD: &str = r#"name = "bad-dns"
environments = ["target"]

[dns]
server = "127.0.0.1:99999"
type = "AAA"
transport = "quic"
expect_rcode = ["NOERROR", "NXDOMIAN"]
expect = ["rcod == 'NOERROR'"]
"#;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &config_with_target("http://127.0.0.1:9"),
        &[("bad.toml", BAD)],
    );
    let opts = synthmon::config::LoadOptions {
        config_path: Some(path),
        overrides: vec![],
    };
    let Err(diagnostics) = synthmon::plan::load(&opts) else {
        panic!("a probe with six mistakes loaded");
    };
    let diagnostics = diagnostics.0;
    let find = |key: &str| {
        diagnostics
            .iter()
            .find(|d| d.key == key)
            .unwrap_or_else(|| panic!("no error at `{key}`: {diagnostics:#?}"))
    };
    let at = |key: &str, needle: &str, message: &str| {
        let d = find(key);
        assert!(d.file.ends_with("bad.toml"), "{d:?}");
        assert_eq!((d.line, d.column), position_of(BAD, needle), "{d:?}");
        assert!(d.message.contains(message), "{d:?}");
    };
    at("dns.server", "\"127.0.0.1:99999\"", "port");
    at("dns.type", "\"AAA\"", "unknown record type `AAA`");
    at(
        "dns.transport",
        "\"quic\"",
        "expected `udp`, `tcp`, `tls` or `https`, found `quic`",
    );
    at(
        "dns.expect_rcode[1]",
        "\"NXDOMIAN\"",
        "unknown rcode `NXDOMIAN`",
    );
    let d = find("dns");
    assert!(d.message.contains("missing required key `name`"), "{d:?}");
    assert_eq!(d.line, position_of(BAD, "[dns]").0, "{d:?}");
    let d = find("dns.expect[0]");
    assert_eq!(d.line, position_of(BAD, "expect = [").0, "{d:?}");
    assert!(d.message.contains("rcod"), "{d:?}");
    assert_eq!(diagnostics.len(), 6, "{diagnostics:#?}");
}

#[test]
fn the_example_probe_passes_against_the_sandbox() {
    let run = common::synthmon(
        &common::repo(),
        &[
            "--config",
            "config.toml",
            "--once",
            "--probe",
            "sandbox-dns",
            "--output",
            "json",
        ],
        &[],
    );
    run.assert_code(0);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let text = report.to_string();
    assert!(text.contains("\"rcode\":\"NOERROR\""), "{text}");
    assert!(text.contains("\"data\":\"127.0.0.1\""), "{text}");
}

/// Polls `check` every 20 ms until it holds, for at most two seconds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = Instant::now() + Duration::from_secs(2);
    while !check().await {
        assert!(Instant::now() < until, "{what} did not happen within 2s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_sandbox_server_survives_garbage_and_caps_tcp_connections() {
    bounded(async {
        let (sb, dns) = sandbox().await;
        let addr: std::net::SocketAddr = dns.parse().unwrap();
        // Garbage, an oversized datagram and a header claiming 65535
        // records: no answer, no panic.
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(addr).await.unwrap();
        for junk in [
            b"garbage".to_vec(),
            vec![0x41; 2000],
            vec![0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ] {
            client.send(&junk).await.unwrap();
        }
        let mut buf = [0u8; 512];
        let heard = tokio::time::timeout(Duration::from_millis(200), client.recv(&mut buf)).await;
        assert!(heard.is_err(), "the sandbox answered garbage: {heard:?}");

        let tcp_probe = probe(
            "tcp",
            "500ms",
            &format!("server = \"{dns}\"\nname = \"api.sandbox.test\"\ntransport = \"tcp\""),
        );
        let udp_probe = probe(
            "udp",
            "500ms",
            &format!("server = \"{dns}\"\nname = \"api.sandbox.test\""),
        );
        // Fill every TCP slot with an idle connection (the sandbox serves 64
        // at once: `MAX_TCP_CONNECTIONS` in src/sandbox/dns.rs).
        let mut held = Vec::new();
        for _ in 0..64 {
            held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        // Past the cap a connection is closed at once: the client sees the
        // close (`protocol`) or a reset (`connect`), not a timeout.
        eventually("refusing a TCP query past the cap", || async {
            matches!(
                run_probe(&tcp_probe).await.reason,
                Some(FailureReason::Protocol | FailureReason::Connect)
            )
        })
        .await;
        let o = run_probe(&udp_probe).await;
        assert!(o.success, "UDP is served regardless: {o:#?}");
        drop(held);
        eventually("serving TCP again once slots free", || async {
            run_probe(&tcp_probe).await.success
        })
        .await;
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_sandbox_dns_server_stops_with_the_sandbox() {
    bounded(async {
        let (sb, dns) = sandbox().await;
        let addr: std::net::SocketAddr = dns.parse().unwrap();
        let udp_probe = probe(
            "udp",
            "300ms",
            &format!("server = \"{dns}\"\nname = \"api.sandbox.test\""),
        );
        assert!(run_probe(&udp_probe).await.success);
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut idle_dot = tokio::net::TcpStream::connect(&sb.variables()["sandbox_dot"])
            .await
            .unwrap();
        sb.shutdown().await;
        // The open connections are closed, and the port stops answering.
        for idle in [&mut idle, &mut idle_dot] {
            let mut buf = [0u8; 16];
            let read = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::io::AsyncReadExt::read(idle, &mut buf),
            )
            .await
            .expect("the connection outlived the sandbox");
            assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        }
        eventually("the UDP port closing", || async {
            run_probe(&udp_probe).await.reason == Some(FailureReason::ConnectRefused)
        })
        .await;
    })
    .await;
}

/// The sandbox's DNS-over-TLS address, its DNS-over-HTTP URL and the CA
/// file that vouches for its certificates.
fn encrypted(sb: &Sandbox) -> (String, String, String) {
    let vars = sb.variables();
    (
        vars["sandbox_dot"].clone(),
        vars["sandbox_doh"].clone(),
        vars["sandbox_ca_file"].clone(),
    )
}

fn phase_names(o: &Outcome) -> Vec<&'static str> {
    o.phases.iter().map(|p| p.name).collect()
}

fn phase(o: &Outcome, name: &str) -> Duration {
    o.phases
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no `{name}` phase: {o:#?}"))
        .seconds
}

fn assert_contiguous(o: &Outcome) {
    let sum: Duration = o.phases.iter().map(|p| p.seconds).sum();
    assert_eq!(sum, o.duration, "phases are contiguous: {o:#?}");
}

#[tokio::test]
async fn dns_over_tls_and_over_https_answer_from_the_sandbox_with_phases_that_add_up() {
    bounded(async {
        let sb = common::sandbox().await;
        let (dot, doh, ca) = encrypted(&sb);
        let outcomes = run_probes(&[
            (
                "dot.toml",
                &probe(
                    "dot",
                    "3s",
                    &format!(
                        r#"server = "{dot}"
transport = "tls"
ca_file = "{ca}"
name = "api.sandbox.test"
expect = [
  "answers[0].data == '127.0.0.1'",
  "timings.tls > duration('0s') && timings.total >= timings.query",
]"#
                    ),
                ),
            ),
            (
                "dot-named.toml",
                &probe(
                    "dot-named",
                    "3s",
                    &format!(
                        "server = \"{dot}\"\ntransport = \"tls\"\nserver_name = \"localhost\"\nca_file = \"{ca}\"\nname = \"big.sandbox.test\"\ntype = \"TXT\"\nexpect = [\"size(answers) == 40\"]"
                    ),
                ),
            ),
            (
                "doh.toml",
                &probe(
                    "doh",
                    "3s",
                    &format!(
                        "server = \"{doh}\"\ntransport = \"https\"\nname = \"www.sandbox.test\"\nexpect = [\"answers.map(a, a.type) == ['CNAME', 'A']\", \"timings.tls == duration('0s')\"]"
                    ),
                ),
            ),
            (
                "doh-nx.toml",
                &probe(
                    "doh-nx",
                    "3s",
                    &format!(
                        "server = \"{doh}\"\ntransport = \"https\"\nname = \"nope.sandbox.test\""
                    ),
                ),
            ),
        ])
        .await;
        for name in ["dot", "dot-named", "doh"] {
            let o = outcome_named(&outcomes, name);
            assert!(o.success, "{o:#?}");
            assert!(o.responded);
            assert_eq!(
                phase_names(o),
                ["resolve", "connect", "tls", "query"],
                "{o:#?}"
            );
            assert_contiguous(o);
            assert!(phase(o, "query") > Duration::ZERO, "{o:#?}");
            let lookup = facts(o).lookup_time_seconds.unwrap();
            assert_eq!(lookup, phase(o, "query").as_secs_f64());
        }

        let o = outcome_named(&outcomes, "dot");
        let f = facts(o);
        assert_eq!(f.transport, "tls");
        assert_eq!(f.server, dot);
        assert_eq!(f.udp_queries, 0);
        assert!(f.authoritative);
        assert!(phase(o, "tls") > Duration::ZERO, "{o:#?}");
        // The certificate's expiry reaches /metrics as for every TLS kind.
        assert!(f.earliest_cert_expiry.is_some(), "{f:#?}");
        assert_eq!(o.cert_expiry(), f.earliest_cert_expiry);
        assert_eq!(facts(outcome_named(&outcomes, "dot-named")).answers.len(), 40);

        let o = outcome_named(&outcomes, "doh");
        let f = facts(o);
        assert_eq!(f.transport, "https");
        assert_eq!(f.server, doh);
        assert_eq!(f.http_status, Some(200));
        assert_eq!(f.earliest_cert_expiry, None, "plain HTTP has no certificate");
        assert_eq!(phase(o, "tls"), Duration::ZERO);

        // The same answer checks as over UDP: an NXDOMAIN fails on its rcode.
        let o = outcome_named(&outcomes, "doh-nx");
        assert_eq!(o.reason, Some(FailureReason::Rcode), "{o:#?}");
        assert!(o.error.as_deref().unwrap().contains("NXDOMAIN"), "{o:#?}");
        assert_eq!(facts(o).http_status, Some(200));
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn dns_over_tls_certificate_failures_read_as_everywhere_else() {
    bounded(async {
        let sb = common::sandbox().await;
        let (dot, _, ca) = encrypted(&sb);
        let expired = sb.variables()["sandbox_tls_expired"].clone();
        let outcomes = run_probes(&[
            (
                "wrong-name.toml",
                &probe(
                    "wrong-name",
                    "3s",
                    &format!(
                        "server = \"{dot}\"\ntransport = \"tls\"\nserver_name = \"wrong.example\"\nca_file = \"{ca}\"\nname = \"api.sandbox.test\""
                    ),
                ),
            ),
            (
                "untrusted.toml",
                &probe(
                    "untrusted",
                    "3s",
                    &format!(
                        "server = \"{dot}\"\ntransport = \"tls\"\nname = \"api.sandbox.test\""
                    ),
                ),
            ),
            (
                "expired.toml",
                &probe(
                    "expired",
                    "3s",
                    &format!(
                        "server = \"{expired}\"\ntransport = \"tls\"\nca_file = \"{ca}\"\nname = \"api.sandbox.test\""
                    ),
                ),
            ),
        ])
        .await;
        for (name, reason, words) in [
            (
                "wrong-name",
                FailureReason::CertHostname,
                "certificate is not valid for",
            ),
            (
                "untrusted",
                FailureReason::CertUntrusted,
                "is not trusted: unknown issuer",
            ),
            ("expired", FailureReason::CertExpired, "expired on"),
        ] {
            let o = outcome_named(&outcomes, name);
            assert_eq!(o.reason, Some(reason), "{o:#?}");
            assert!(o.error.as_deref().unwrap().contains(words), "{o:#?}");
            assert!(!o.responded, "{o:#?}");
            // Nothing was asked: the run stopped in the handshake.
            assert_eq!(facts(o).lookup_time_seconds, None, "{o:#?}");
            assert_eq!(phase(o, "query"), Duration::ZERO, "{o:#?}");
            assert_contiguous(o);
        }
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn dns_over_https_fails_on_status_and_content_type_before_the_answer() {
    bounded(async {
        let sb = common::sandbox().await;
        let base = sb.base_url();
        let doh = |name: &str, path: &str| {
            probe(
                name,
                "3s",
                &format!(
                    "server = \"{base}{path}\"\ntransport = \"https\"\nname = \"api.sandbox.test\""
                ),
            )
        };
        let outcomes = run_probes(&[
            ("missing.toml", &doh("missing", "/no-such-dns-query")),
            ("json.toml", &doh("json", "/status/200")),
            ("echo.toml", &doh("echo", "/echo")),
        ])
        .await;

        let o = outcome_named(&outcomes, "missing");
        assert_eq!(o.reason, Some(FailureReason::Status), "{o:#?}");
        assert!(o.error.as_deref().unwrap().contains("HTTP 404"), "{o:#?}");
        assert_eq!(facts(o).http_status, Some(404));
        assert_eq!(facts(o).rcode, None);
        assert_contiguous(o);

        let o = outcome_named(&outcomes, "json");
        assert_eq!(o.reason, Some(FailureReason::Protocol), "{o:#?}");
        let error = o.error.as_deref().unwrap();
        assert!(
            error.contains("content type `application/json`")
                && error.contains("expected application/dns-message"),
            "{error}"
        );

        // /echo returns the query itself, in the right media type: the id
        // matches but it is not a response.
        let o = outcome_named(&outcomes, "echo");
        assert_eq!(o.reason, Some(FailureReason::Protocol), "{o:#?}");
        let error = o.error.as_deref().unwrap();
        assert!(
            error.contains("a query where a response was expected"),
            "{error}"
        );
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn expect_ad_asks_for_the_ad_bit_and_fails_an_answer_without_it() {
    bounded(async {
        let vouching = TestServer::start(Behaviour::Authenticated).await;
        let plain = TestServer::start(Behaviour::Answer).await;
        let ad = |name: &str, port: u16| {
            probe(
                name,
                "3s",
                &format!(
                    "server = \"127.0.0.1:{port}\"\nname = \"www.example.test\"\nexpect_ad = true\nexpect = [\"authenticated\"]"
                ),
            )
        };
        let outcomes = run_probes(&[
            ("vouched.toml", &ad("vouched", vouching.port)),
            ("unvouched.toml", &ad("unvouched", plain.port)),
        ])
        .await;
        let o = outcome_named(&outcomes, "vouched");
        assert!(o.success, "{o:#?}");
        assert!(facts(o).authenticated);
        assert!(o.assertions.iter().all(|a| a.passed), "{o:#?}");

        let o = outcome_named(&outcomes, "unvouched");
        assert_eq!(o.reason, Some(FailureReason::Assertion), "{o:#?}");
        assert!(o.error.as_deref().unwrap().contains("without the AD bit"), "{o:#?}");
        let check = o
            .assertions
            .iter()
            .find(|a| a.expression.contains("expect_ad"))
            .unwrap();
        assert!(!check.passed);
        assert_eq!(check.actual, "authenticated = false");
        assert!(!facts(o).authenticated);
    })
    .await;
}

#[test]
fn encrypted_transport_load_errors_are_located() {
    const BAD: &str = r#"name = "bad-encrypted"
environments = ["target"]

[dns]
server = "http://dns.example/dns-query"
transport = "https"
name = "api.sandbox.test"
ca_file = "no-such-ca.pem"
"#;
    const BAD_DOT: &str = r#"name = "bad-dot"
environments = ["target"]

[dns]
server = "https://dns.example/dns-query"
transport = "tls"
server_name = "not a name"
name = "api.sandbox.test"
"#;
    const BAD_UDP: &str = r#"name = "bad-udp"
environments = ["target"]

[dns]
server = "127.0.0.1"
name = "api.sandbox.test"
server_name = "dns.example"
ca_file = "ca.pem"
"#;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &config_with_target("http://127.0.0.1:9"),
        &[
            ("bad.toml", BAD),
            ("dot.toml", BAD_DOT),
            ("udp.toml", BAD_UDP),
        ],
    );
    let opts = synthmon::config::LoadOptions {
        config_path: Some(path),
        overrides: vec![],
    };
    let Err(diagnostics) = synthmon::plan::load(&opts) else {
        panic!("three broken probes loaded");
    };
    let diagnostics = diagnostics.0;
    let at = |file: &str, text: &str, key: &str, needle: &str, message: &str| {
        let d = diagnostics
            .iter()
            .find(|d| d.key == key && d.file.ends_with(file))
            .unwrap_or_else(|| panic!("no error at `{key}` in {file}: {diagnostics:#?}"));
        assert_eq!((d.line, d.column), position_of(text, needle), "{d:?}");
        assert!(d.message.contains(message), "{d:?}");
    };
    at(
        "bad.toml",
        BAD,
        "dns.server",
        "\"http://dns.example/dns-query\"",
        "`http://` is allowed for loopback hosts only",
    );
    at(
        "bad.toml",
        BAD,
        "dns.ca_file",
        "\"no-such-ca.pem\"",
        "no-such-ca.pem",
    );
    at(
        "dot.toml",
        BAD_DOT,
        "dns.server",
        "\"https://dns.example/dns-query\"",
        "set `transport = \"https\"`",
    );
    at(
        "dot.toml",
        BAD_DOT,
        "dns.server_name",
        "\"not a name\"",
        "expected a DNS name or an IP address",
    );
    at(
        "udp.toml",
        BAD_UDP,
        "dns.server_name",
        "\"dns.example\"",
        "applies with `transport = \"tls\"` or `\"https\"` only",
    );
    at(
        "udp.toml",
        BAD_UDP,
        "dns.ca_file",
        "\"ca.pem\"",
        "applies with `transport = \"tls\"` or `\"https\"` only",
    );
}

#[tokio::test]
async fn the_sandbox_answers_dns_over_http_by_get_and_post_only_as_dns_messages() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bounded(async {
        let sb = common::sandbox().await;
        let addr = sb.addr();
        let mut query = Message::new();
        query.set_id(0).add_query(hickory_proto::op::Query::query(
            "api.sandbox.test.".parse().unwrap(),
            hickory_proto::rr::RecordType::A,
        ));
        let bytes = query.to_vec().unwrap();
        // RFC 8484's GET form: base64url without padding.
        let encoded = base64url(&bytes);
        let send = |head: String, body: Vec<u8>| async move {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tcp.write_all(head.as_bytes()).await.unwrap();
            tcp.write_all(&body).await.unwrap();
            let mut raw = Vec::new();
            tcp.read_to_end(&mut raw).await.unwrap();
            let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
            (head, raw[split + 4..].to_vec())
        };
        let (head, body) = send(
            format!(
                "GET /dns-query?dns={encoded} HTTP/1.1\r\nhost: {addr}\r\naccept: application/dns-message\r\nconnection: close\r\n\r\n"
            ),
            Vec::new(),
        )
        .await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("content-type: application/dns-message"), "{head}");
        let answer = Message::from_vec(&body).unwrap();
        assert_eq!(answer.id(), 0);
        assert_eq!(answer.answers()[0].data().to_string(), "127.0.0.1");

        let (head, _) = send(
            format!(
                "POST /dns-query HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                bytes.len()
            ),
            bytes.clone(),
        )
        .await;
        assert!(head.starts_with("http/1.1 415"), "{head}");
        let (head, _) = send(
            format!(
                "POST /dns-query HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/dns-message\r\ncontent-length: 7\r\nconnection: close\r\n\r\n"
            ),
            b"garbage".to_vec(),
        )
        .await;
        assert!(head.starts_with("http/1.1 400"), "{head}");
        let (head, _) = send(
            format!("GET /dns-query?dns=%2B%2F HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"),
            Vec::new(),
        )
        .await;
        assert!(head.starts_with("http/1.1 400"), "{head}");
        sb.shutdown().await;
    })
    .await;
}

/// base64url without padding (RFC 4648 §5), as RFC 8484's GET form wants.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}
