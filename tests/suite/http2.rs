//! HTTP/2 (`http_version`) for the `http` kind, flow steps and workloads,
//! against real servers on 127.0.0.1: the built-in sandbox (its HTTPS port
//! offers `h2` and `http/1.1` by ALPN, its HTTP port takes HTTP/2 with
//! prior knowledge) and TLS servers of the tests' own that speak only
//! HTTP/1.1 (one with ALPN `http/1.1`, one without ALPN). Connections are
//! counted where they arrive (a TCP relay in front of the sandbox), not
//! taken from the client's word. Configs are written to temp dirs.

use crate::common;

use common::{load, position_of, run_all, synthmon, write_config};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use synthmon::outcome::{FailureReason, Outcome};
use synthmon::sandbox::Sandbox;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const BOUND: Duration = Duration::from_secs(60);

async fn bounded<F: Future>(f: F) -> F::Output {
    common::within(BOUND, f).await
}

/// The sandbox's addresses the tests use.
struct Target {
    sb: Sandbox,
    /// `https://localhost:PORT`: h2 or http/1.1 by ALPN.
    https: String,
    /// The sandbox CA's PEM file, which vouches for `https`.
    ca: String,
    /// `http://127.0.0.1:PORT`: HTTP/1.1, or h2c with prior knowledge.
    plain: String,
}

async fn target() -> Target {
    let sb = common::sandbox().await;
    let vars = sb.variables();
    Target {
        https: vars["sandbox_https"].clone(),
        ca: vars["sandbox_ca_file"].clone(),
        plain: sb.base_url(),
        sb,
    }
}

/// A config with environment `tls` at `https` (trusting `ca`) and `plain`
/// at `plain`.
fn config(https: &str, ca: &str, plain: &str) -> String {
    format!(
        "[daemon]\nprobes = [\"probes/*.toml\"]\n\n\
         [environments.tls]\nbase_url = \"{https}\"\ntls = {{ ca_file = \"{ca}\" }}\n\n\
         [environments.plain]\nbase_url = \"{plain}\"\n"
    )
}

/// An `http` probe `name` in `env` with the `[http]` body `http`.
fn probe(name: &str, env: &str, http: &str) -> String {
    format!("name = \"{name}\"\nenvironments = [\"{env}\"]\ntimeout = \"5s\"\n\n[http]\n{http}\n")
}

/// Runs every probe once against `t`; the outcomes by probe name.
async fn run(t: &Target, probes: &[(&str, &str)]) -> BTreeMap<String, Outcome> {
    run_config(&config(&t.https, &t.ca, &t.plain), probes).await
}

async fn run_config(config: &str, probes: &[(&str, &str)]) -> BTreeMap<String, Outcome> {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), config, probes);
    run_all(&load(&path), &BTreeMap::new())
        .await
        .into_iter()
        .map(|o| (o.probe.clone(), o))
        .collect()
}

/// The negotiated version an outcome reports.
fn version(o: &Outcome) -> Option<&'static str> {
    o.http.as_ref().and_then(|h| h.version)
}

#[tokio::test]
async fn auto_over_tls_negotiates_http2_by_alpn_with_every_phase_measured() {
    bounded(async {
        let t = target().await;
        let outcomes = run(
            &t,
            &[(
                "auto.toml",
                &probe(
                    "auto",
                    "tls",
                    "url = \"/health\"\nexpect = [\"status == 200\", \"http.version == '2'\"]",
                ),
            )],
        )
        .await;
        let o = &outcomes["auto"];
        assert!(o.success, "{o:#?}");
        let http = o.http.as_ref().unwrap();
        assert_eq!((http.version, http.tls), (Some("2"), true));
        assert!(http.tls_earliest_cert_expiry.is_some(), "{http:?}");
        let p = http.phases;
        // `localhost`: resolved, then connected, then TLS, then the stream.
        assert!(p.resolve > Duration::ZERO, "{p:?}");
        assert!(p.connect > Duration::ZERO, "{p:?}");
        assert!(p.tls > Duration::ZERO, "{p:?}");
        assert!(p.processing > Duration::ZERO, "{p:?}");
        assert!(
            p.sum() <= o.duration,
            "phases {p:?} exceed the run {:?}",
            o.duration
        );
        t.sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn http_version_1_1_forces_http1_and_auto_stays_on_http1_over_cleartext() {
    bounded(async {
        let t = target().await;
        let outcomes = run(
            &t,
            &[
                (
                    "forced.toml",
                    &probe(
                        "forced",
                        "tls",
                        "url = \"/health\"\nhttp_version = \"1.1\"\nexpect = [\"http.version == '1.1'\"]",
                    ),
                ),
                (
                    "clear.toml",
                    &probe("clear", "plain", "url = \"/health\"\nexpect = [\"http.version == '1.1'\"]"),
                ),
            ],
        )
        .await;
        for name in ["forced", "clear"] {
            let o = &outcomes[name];
            assert!(o.success, "{o:#?}");
            assert_eq!(version(o), Some("1.1"), "{name}");
        }
        t.sb.shutdown().await;
    })
    .await;
}

/// Redirects, decompression, request bodies and the body cap behave on
/// HTTP/2 as they do on HTTP/1.1.
#[tokio::test]
async fn http_version_2_over_cleartext_is_h2c_with_the_same_exchange_rules() {
    bounded(async {
        let t = target().await;
        let h2 = "http_version = \"2\"\n";
        let outcomes = run(
            &t,
            &[
                (
                    "redirects.toml",
                    &probe(
                        "redirects",
                        "plain",
                        &format!("{h2}url = \"/redirect/2\"\nexpect = [\"status == 200\", \"http.version == '2'\"]"),
                    ),
                ),
                (
                    "gzip.toml",
                    &probe(
                        "gzip",
                        "plain",
                        &format!("{h2}url = \"/gzip/4096\"\nexpect = [\"size(body) == 4096\", \"headers['content-encoding'] == 'gzip'\"]"),
                    ),
                ),
                (
                    "echo.toml",
                    &probe(
                        "echo",
                        "plain",
                        &format!("{h2}method = \"POST\"\nurl = \"/echo\"\njson = {{ item = \"widget\" }}\nexpect = [\"json.item == 'widget'\"]"),
                    ),
                ),
                (
                    "capped.toml",
                    &probe(
                        "capped",
                        "plain",
                        &format!("{h2}url = \"/bytes/100000\"\nmax_body_size = \"10 KiB\""),
                    ),
                ),
            ],
        )
        .await;
        for name in ["redirects", "gzip", "echo"] {
            let o = &outcomes[name];
            assert!(o.success, "{name}: {o:#?}");
            assert_eq!(version(o), Some("2"), "{name}");
            let http = o.http.as_ref().unwrap();
            assert_eq!((http.tls, http.phases.tls), (false, Duration::ZERO));
        }
        assert_eq!(outcomes["redirects"].http.as_ref().unwrap().redirects, 2);
        let capped = &outcomes["capped"];
        assert_eq!(capped.reason, Some(FailureReason::BodyTooLarge), "{capped:#?}");
        assert_eq!(
            capped.error.as_deref(),
            Some("body exceeds the 10240-byte cap (raw)")
        );
        assert_eq!(version(capped), Some("2"));
        t.sb.shutdown().await;
    })
    .await;
}

/// A TLS server on 127.0.0.1 for `localhost` that speaks only HTTP/1.1,
/// offering `alpn` (empty: it knows nothing of ALPN); returns its address
/// and its certificate's PEM (its own trust anchor).
async fn http1_only_tls(alpn: &[&[u8]]) -> (SocketAddr, String) {
    let identity = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = identity.cert.der().clone();
    let key =
        rustls_pki_types::PrivateKeyDer::try_from(identity.signing_key.serialize_der()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match tokio::io::AsyncReadExt::read(&mut tls, &mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, identity.cert.pem())
}

#[tokio::test]
async fn http_version_2_against_an_http1_only_tls_server_fails_saying_why() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        for (alpn, how) in [
            (
                &[b"http/1.1".as_slice()][..],
                "it refused it (tls alert no_application_protocol)",
            ),
            (&[][..], "it picked no protocol"),
        ] {
            let (addr, pem) = http1_only_tls(alpn).await;
            let ca = dir.path().join(format!("ca-{}.pem", addr.port()));
            std::fs::write(&ca, pem).unwrap();
            let https = format!("https://localhost:{}", addr.port());
            let outcomes = run_config(
                &config(&https, &ca.display().to_string(), "http://127.0.0.1:9"),
                &[
                    ("two.toml", &probe("two", "tls", "url = \"/\"\nhttp_version = \"2\"")),
                    ("auto.toml", &probe("auto", "tls", "url = \"/\"")),
                ],
            )
            .await;
            let two = &outcomes["two"];
            assert_eq!(two.reason, Some(FailureReason::Protocol), "{two:#?}");
            assert_eq!(
                two.error.as_deref(),
                Some(
                    format!(
                        "localhost does not speak HTTP/2 over TLS: asked for h2 by ALPN, {how} (http_version = \"2\"; \"auto\" would use HTTP/1.1)"
                    )
                    .as_str()
                ),
            );
            // The same server is fine when HTTP/1.1 is allowed.
            let auto = &outcomes["auto"];
            assert!(auto.success, "{auto:#?}");
            assert_eq!(version(auto), Some("1.1"));
        }
    })
    .await;
}

#[tokio::test]
async fn h2c_against_an_http1_only_port_fails_saying_why() {
    bounded(async {
        let t = target().await;
        let raw = format!("http://{}", t.sb.variables()["sandbox_raw"]);
        let outcomes = run_config(
            &config(&t.https, &t.ca, &raw),
            &[("h2c.toml", &probe("h2c", "plain", "url = \"/\"\nhttp_version = \"2\""))],
        )
        .await;
        let o = &outcomes["h2c"];
        assert_eq!(o.reason, Some(FailureReason::Protocol), "{o:#?}");
        let error = o.error.as_deref().unwrap_or_default();
        assert!(
            error.starts_with("the server answered in HTTP/1.x (\"HTTP/1.1 "),
            "{error}"
        );
        assert!(
            error.ends_with("it does not speak HTTP/2 with prior knowledge over cleartext (h2c); http_version = \"auto\" or \"1.1\" uses HTTP/1.1"),
            "{error}"
        );
        t.sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_expectation_on_http_version_fails_with_the_version_seen() {
    bounded(async {
        let t = target().await;
        let outcomes = run(
            &t,
            &[(
                "want2.toml",
                &probe(
                    "want2",
                    "tls",
                    "url = \"/health\"\nhttp_version = \"1.1\"\nexpect = [\"http.version == '2'\"]",
                ),
            )],
        )
        .await;
        let o = &outcomes["want2"];
        assert_eq!(o.reason, Some(FailureReason::Assertion), "{o:#?}");
        let failed = o
            .assertions
            .iter()
            .find(|a| a.expression == "http.version == '2'")
            .unwrap();
        assert!(!failed.passed);
        assert_eq!(failed.actual, "http.version = \"1.1\"");
        t.sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_flow_step_uses_its_own_http_version() {
    bounded(async {
        let t = target().await;
        let flow = r#"name = "steps"
environments = ["plain"]
timeout = "5s"

[[flow.steps]]
name = "h2c"
url = "/health"
http_version = "2"
expect = ["http.version == '2'"]
capture = { seen = "http.version" }

[[flow.steps]]
name = "default"
url = "/health"
expect = ["http.version == '1.1'", "vars.seen == '2'"]
"#;
        let outcomes = run(&t, &[("flow.toml", flow)]).await;
        let o = &outcomes["steps"];
        assert!(o.success, "{o:#?}");
        let versions: Vec<_> = o
            .steps
            .iter()
            .map(|s| s.http.as_ref().and_then(|h| h.version))
            .collect();
        assert_eq!(versions, [Some("2"), Some("1.1")]);
        t.sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn probe_http_version_is_exported_as_blackbox_does() {
    bounded(async {
        let t = target().await;
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(
            dir.path(),
            &config(&t.https, &t.ca, &t.plain),
            &[
                ("h2.toml", &probe("h2", "tls", "url = \"/health\"")),
                ("h1.toml", &probe("h1", "plain", "url = \"/health\"")),
                (
                    "down.toml",
                    &probe("down", "plain", "url = \"http://127.0.0.1:9/\""),
                ),
            ],
        );
        let config = load(&path);
        let metrics = synthmon::telemetry::metrics::Metrics::new(&config.daemon, &config.probes);
        for o in run_all(&config, &BTreeMap::new()).await {
            metrics.record(&o);
        }
        let body = metrics.render(0);
        let value = |probe: &str| {
            body.lines()
                .filter(|l| l.starts_with("probe_http_version{"))
                .find(|l| l.contains(&format!("probe=\"{probe}\"")))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
        };
        assert_eq!(value("h2"), Some(2.0), "{body}");
        assert_eq!(value("h1"), Some(1.1), "{body}");
        // No connection, no version.
        assert_eq!(value("down"), Some(0.0), "{body}");
        assert!(body.contains("# HELP probe_http_version "), "{body}");
        t.sb.shutdown().await;
    })
    .await;
}

/// A TCP relay on 127.0.0.1 in front of `target` that counts the
/// connections it accepts.
async fn counting_relay(target: SocketAddr) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    (addr, accepted)
}

/// A workload of `requests` to `/delay/100` (so many are in flight at
/// once), at most `max_concurrency` in flight, over `http_version`.
fn delayed_workload(env: &str, requests: u32, keep_alive: bool, http_version: &str) -> String {
    format!(
        "name = \"load\"\nenvironments = [\"{env}\"]\ntimeout = \"10s\"\n\n\
         [workload]\nrequests = {requests}\nrate = 100\nmax_concurrency = 64\nkeep_alive = {keep_alive}\nhttp_version = \"{http_version}\"\n\n\
         [http]\nurl = \"/delay/100\"\n"
    )
}

#[tokio::test]
async fn a_keep_alive_workload_over_http2_multiplexes_streams_on_one_connection() {
    bounded(async {
        let t = target().await;
        let https_port: u16 = t.https.rsplit(':').next().unwrap().parse().unwrap();
        let (tls_relay, tls_accepted) =
            counting_relay(SocketAddr::from(([127, 0, 0, 1], https_port))).await;
        let (plain_relay, plain_accepted) = counting_relay(t.sb.addr()).await;
        // The certificate is for `localhost`, which the relay is too.
        let config = config(
            &format!("https://localhost:{}", tls_relay.port()),
            &t.ca,
            &format!("http://{plain_relay}"),
        );
        for (env, version, accepted) in [
            ("tls", "auto", &tls_accepted),
            ("plain", "2", &plain_accepted),
        ] {
            let outcomes = run_config(
                &config,
                &[("load.toml", &delayed_workload(env, 60, true, version))],
            )
            .await;
            let o = &outcomes["load"];
            let w = o.workload.as_ref().unwrap();
            // 60 requests of 100 ms at 100/s: several in flight at once,
            // all on the one connection the first request opened.
            assert_eq!((w.failed, w.ok), (0, w.sent), "{env}: {w:?} {:?}", o.error);
            assert!(w.sent >= 30, "{env}: {w:?}");
            let opened = accepted.swap(0, Ordering::SeqCst);
            assert!(
                (1..=2).contains(&opened),
                "{env}: the server saw {opened} connections"
            );
            assert_eq!(w.connections, Some(opened), "{env}");
        }
        // Without keep_alive, every request has a connection of its own,
        // HTTP/2 or not.
        let outcomes = run_config(
            &config,
            &[("load.toml", &delayed_workload("plain", 10, false, "2"))],
        )
        .await;
        let w = outcomes["load"].workload.as_ref().unwrap();
        assert_eq!((w.failed, w.ok), (0, w.sent), "{w:?}");
        assert_eq!(plain_accepted.load(Ordering::SeqCst), w.sent);
        t.sb.shutdown().await;
    })
    .await;
}

/// `auto` with `keep_alive` against a server that picks HTTP/1.1: the
/// requests go over HTTP/1.1 connections (this server closes each after
/// its response), none waiting on an HTTP/2 connection that never comes.
#[tokio::test]
async fn a_keep_alive_workload_in_auto_falls_back_to_http1_connections() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (addr, pem) = http1_only_tls(&[b"http/1.1"]).await;
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, pem).unwrap();
        let https = format!("https://localhost:{}", addr.port());
        let workload = "name = \"load\"\nenvironments = [\"tls\"]\ntimeout = \"5s\"\n\n\
                        [workload]\nrequests = 20\nrate = 100\nmax_concurrency = 8\nkeep_alive = true\n\n\
                        [http]\nurl = \"/\"\n";
        let outcomes = run_config(
            &config(&https, &ca.display().to_string(), "http://127.0.0.1:9"),
            &[("load.toml", workload)],
        )
        .await;
        let o = &outcomes["load"];
        let w = o.workload.as_ref().unwrap();
        assert_eq!((w.sent, w.ok, w.failed), (20, 20, 0), "{w:?} {:?}", o.error);
        assert_eq!(w.connections, Some(20), "{w:?}");
    })
    .await;
}

#[test]
fn http_version_errors_name_the_file_the_line_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let number =
        "name = \"n\"\nenvironments = [\"target\"]\n\n[http]\nurl = \"/\"\nhttp_version = 2\n";
    let unknown = "name = \"u\"\nenvironments = [\"target\"]\n\n[[flow.steps]]\nurl = \"/\"\nhttp_version = \"3\"\n";
    let flow_workload = "name = \"w\"\nenvironments = [\"target\"]\n\n[workload]\nrequests = 1\nrate = 1\nhttp_version = \"2\"\n\n[[flow.steps]]\nurl = \"/\"\n";
    write_config(
        dir.path(),
        &common::config_with_target("http://127.0.0.1:9"),
        &[
            ("number.toml", number),
            ("unknown.toml", unknown),
            ("flow_workload.toml", flow_workload),
        ],
    );
    let run = synthmon(dir.path(), &["--config", "config.toml", "check"], &[]);
    run.assert_code(2);
    for (file, source, needle, message) in [
        (
            "number.toml",
            number,
            "2\n",
            "http.http_version: expected `\"auto\"`, `\"1.1\"` or `\"2\"` as a string, found the number 2 (write it in quotes: `http_version = \"2\"`)",
        ),
        (
            "unknown.toml",
            unknown,
            "\"3\"",
            "flow.steps[0].http_version: expected `\"auto\"`, `\"1.1\"` or `\"2\"`, found `\"3\"`",
        ),
        (
            "flow_workload.toml",
            flow_workload,
            "\"2\"",
            "workload.http_version: http_version applies to `[http]` workloads; a flow sets it on its steps",
        ),
    ] {
        let (line, column) = position_of(source, needle);
        let want = format!("probes/{file}:{line}:{column}: error: {message}");
        assert!(
            run.stderr.lines().any(|l| l == want),
            "no line\n  {want}\nin\n{}",
            run.stderr
        );
    }
}

/// `--output json` carries the negotiated version in each result's `http`.
#[test]
fn the_json_report_shows_the_negotiated_version() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "[daemon]\nprobes = [\"probes/*.toml\"]\n\n[environments.sandbox]\nbase_url = \"builtin:sandbox\"\n",
        &[
            (
                "h2c.toml",
                "name = \"h2c\"\nenvironments = [\"sandbox\"]\n\n[http]\nurl = \"/health\"\nhttp_version = \"2\"\n",
            ),
            (
                "h2.toml",
                "name = \"h2\"\nenvironments = [\"sandbox\"]\n\n[http]\nurl = \"{{ vars.sandbox_https }}/health\"\ntls = { ca_file = \"{{ vars.sandbox_ca_file }}\" }\n",
            ),
            (
                "h1.toml",
                "name = \"h1\"\nenvironments = [\"sandbox\"]\n\n[http]\nurl = \"/health\"\n",
            ),
        ],
    );
    let run = synthmon(
        dir.path(),
        &["--config", "config.toml", "--once", "--output", "json"],
        &[],
    );
    run.assert_code(0);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let versions: BTreeMap<&str, &str> = json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["probe"].as_str().unwrap(),
                r["http"]["version"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        versions,
        BTreeMap::from([("h1", "1.1"), ("h2", "2"), ("h2c", "2")]),
        "{}",
        run.stdout
    );
    // The keys of `http` as README's "JSON output" documents them.
    let keys: Vec<&str> = json["results"][0]["http"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "body_bytes",
            "method",
            "phases",
            "redirects",
            "status",
            "tls",
            "tls_earliest_cert_expiry",
            "url",
            "version"
        ],
        "{}",
        run.stdout
    );
}
