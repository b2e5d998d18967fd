//! The dns probe against real DNS servers on 127.0.0.1: the sandbox's
//! authoritative server (started in-process) and small UDP servers started
//! here that count queries, drop them, or answer with garbage and wrong ids.
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
    at("dns.transport", "\"quic\"", "expected `udp` or `tcp`");
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
        sb.shutdown().await;
        // The open connection is closed, and the port stops answering.
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::io::AsyncReadExt::read(&mut idle, &mut buf),
        )
        .await
        .expect("the connection outlived the sandbox");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        eventually("the UDP port closing", || async {
            run_probe(&udp_probe).await.reason == Some(FailureReason::ConnectRefused)
        })
        .await;
    })
    .await;
}
