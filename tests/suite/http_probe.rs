//! The http probe against real servers on 127.0.0.1: the built-in sandbox
//! (started in-process) and a tiny raw TCP server that records the exact
//! request head. Configs are written to temp dirs and loaded with
//! `config::load`, then run with `once::select` + `once::run`.

use crate::common;

use common::sandbox;

use common::{config_with_target, load, run_all, run_one, write_config};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::{Duration, Instant};
use synthmon::outcome::{FailureReason, Outcome};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Every test body runs under this bound.
const BOUND: Duration = Duration::from_secs(10);

async fn bounded<F: Future>(f: F) -> F::Output {
    common::within(BOUND, f).await
}

/// Loads a config with one environment `target` at `base_url` and the given
/// probe files, and runs every pair once.
async fn run_probes(base_url: &str, probes: &[(&str, &str)]) -> Vec<Outcome> {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config_with_target(base_url), probes);
    let config = load(&path);
    run_all(&config, &BTreeMap::new()).await
}

/// One probe file in `target` with the given `[http]` body.
fn probe(name: &str, extra_top: &str, http: &str) -> String {
    format!("name = \"{name}\"\nenvironments = [\"target\"]\n{extra_top}\n[http]\n{http}\n")
}

#[tokio::test]
async fn phase_timings_are_measured_and_add_up_to_the_duration() {
    bounded(async {
        let sb = sandbox().await;
        let base = format!("http://localhost:{}", sb.addr().port());
        let outcomes = run_probes(
            &base,
            &[(
                "delay.toml",
                &probe(
                    "delay",
                    "",
                    "url = \"/delay/100\"\nexpect = [\"status == 200\", \"timings.processing >= duration('100ms')\"]",
                ),
            )],
        )
        .await;
        let o = &outcomes[0];
        assert!(o.success, "{o:#?}");
        let http = o.http.as_ref().unwrap();
        assert!(!http.tls);
        assert!(http.url.starts_with("http://localhost:"), "{}", http.url);
        let p = http.phases;
        assert!(p.resolve > Duration::ZERO, "resolve: {p:?}");
        assert!(p.connect > Duration::ZERO, "connect: {p:?}");
        assert_eq!(p.tls, Duration::ZERO, "tls on plain http: {p:?}");
        assert!(p.processing >= Duration::from_millis(100), "processing: {p:?}");
        assert!(p.transfer > Duration::ZERO, "transfer: {p:?}");
        let sum = p.sum();
        let diff = sum.abs_diff(o.duration);
        // What the phases leave out (building the request, judging the
        // answer, closing) is small beside the exchange: a share of it, not
        // a fixed time, so a loaded machine (a debug build, the other tests
        // running) does not fail this; ~0.3 ms on an idle one.
        assert!(
            diff <= p.processing / 5,
            "phases sum to {sum:?} but the run took {:?}: {p:?}",
            o.duration
        );
        assert!(sum <= o.duration, "phases {sum:?} exceed the run {:?}", o.duration);
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_ip_literal_has_no_resolve_phase() {
    bounded(async {
        let sb = sandbox().await;
        let outcomes = run_probes(
            &sb.base_url(),
            &[("h.toml", &probe("health", "", "url = \"/health\""))],
        )
        .await;
        let o = &outcomes[0];
        assert!(o.success, "{o:#?}");
        let p = o.http.as_ref().unwrap().phases;
        assert_eq!(p.resolve, Duration::ZERO, "{p:?}");
        assert!(p.connect > Duration::ZERO, "{p:?}");
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_sandbox_sees_the_synthetic_tags() {
    bounded(async {
        let sb = sandbox().await;
        let outcomes = run_probes(
            &sb.base_url(),
            &[(
                "echo.toml",
                &probe(
                    "tagged-echo",
                    "",
                    r#"url = "/headers"
expect = [
  "status == 200",
  "json['x-synthetic'] == 'true'",
  "'x-synthetic-probe' in json",
  "json['x-synthetic-probe'] == 'tagged-echo'",
  "size(json['x-synthetic-run-id']) == 16",
  "json['user-agent'].startsWith('synthmon/')",
  "json.traceparent.matches('^00-[0-9a-f]{32}-[0-9a-f]{16}-01$')",
  "json.baggage.contains('synthetic=true')",
]"#,
                ),
            )],
        )
        .await;
        let o = &outcomes[0];
        assert!(o.success, "{o:#?}");
        assert_eq!(o.assertions.len(), 8, "{o:#?}");
        assert!(o.assertions.iter().all(|a| a.passed), "{o:#?}");
        sb.shutdown().await;
    })
    .await;
}

/// A one-shot HTTP server: records the request head of the first
/// connection and answers `200 ok`.
async fn recording_server() -> (u16, tokio::sync::oneshot::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before the end of the head");
            buf.extend_from_slice(&chunk[..n]);
            assert!(buf.len() < 64 * 1024, "head too long");
        }
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
        let _ = stream.shutdown().await;
    });
    (port, rx)
}

/// Header name (lowercase) → values, from a raw request head.
fn parse_head(head: &str) -> (String, HashMap<String, Vec<String>>) {
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap().to_owned();
    let mut headers: HashMap<String, Vec<String>> = HashMap::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').unwrap();
        headers
            .entry(name.trim().to_ascii_lowercase())
            .or_default()
            .push(value.trim().to_owned());
    }
    (request_line, headers)
}

#[tokio::test]
async fn exact_tag_headers_and_a_valid_traceparent_reach_the_target() {
    bounded(async {
        let (port, head) = recording_server().await;
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[environments.target]\nbase_url = \"http://127.0.0.1:{port}\"\nheaders = {{ Accept = \"application/json\" }}\n"
        );
        // The probe tries to set tag headers itself; the tags win.
        let p = probe(
            "raw-tags",
            "",
            "url = \"/tagged?x=1\"\nheaders = { X-Synthetic-Probe = \"spoofed\", User-Agent = \"curl/8\" }\nexpect = [\"body == 'ok'\"]",
        );
        let path = write_config(dir.path(), &config, &[("raw.toml", &p)]);
        let config = load(&path);
        let o = run_one(&config).await;
        assert!(o.success, "{o:#?}");
        let head = head.await.unwrap();
        let (request_line, h) = parse_head(&head);
        assert_eq!(request_line, "GET /tagged?x=1 HTTP/1.1", "{head}");
        let one = |name: &str| -> &str {
            let values = h.get(name).unwrap_or_else(|| panic!("no `{name}` header in\n{head}"));
            assert_eq!(values.len(), 1, "`{name}` sent {} times in\n{head}", values.len());
            &values[0]
        };
        assert_eq!(one("x-synthetic"), "true");
        assert_eq!(one("x-synthetic-probe"), "raw-tags");
        assert_eq!(one("x-synthetic-run-id"), o.run_id);
        assert_eq!(o.run_id.len(), 16);
        assert!(one("user-agent").starts_with("synthmon/"), "{head}");
        assert_eq!(one("accept"), "application/json");
        assert_eq!(one("host"), format!("127.0.0.1:{port}"));

        let traceparent = one("traceparent");
        assert!(synthmon::tagging::is_valid_traceparent(traceparent), "{traceparent}");
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1], o.trace_id, "trace id in traceparent vs outcome");
        assert_eq!(parts[1].len(), 32);
        assert_eq!(parts[2].len(), 16);
        assert_eq!(parts[3], "01");

        let baggage: Vec<&str> = one("baggage").split(',').map(str::trim).collect();
        assert!(baggage.contains(&"synthetic=true"), "{baggage:?}");
        assert!(baggage.contains(&"synthetic.probe=raw-tags"), "{baggage:?}");
        assert!(
            baggage.contains(&format!("synthetic.run_id={}", o.run_id).as_str()),
            "{baggage:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn every_run_gets_a_fresh_trace_and_run_id() {
    bounded(async {
        let sb = sandbox().await;
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(
            dir.path(),
            &config_with_target(&sb.base_url()),
            &[("h.toml", &probe("health", "", "url = \"/health\""))],
        );
        let config = load(&path);
        let a = run_one(&config).await;
        let b = run_one(&config).await;
        assert!(a.success && b.success, "{a:#?}\n{b:#?}");
        assert_ne!(a.run_id, b.run_id);
        assert_ne!(a.trace_id, b.trace_id);
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_huge_body_fails_fast_with_body_too_large() {
    bounded(async {
        let sb = sandbox().await;
        let started = Instant::now();
        let outcomes = run_probes(
            &sb.base_url(),
            &[(
                "big.toml",
                &probe(
                    "big",
                    "timeout = \"30s\"",
                    "url = \"/bytes/200000000\"\nmax_body_size = \"1 MiB\"",
                ),
            )],
        )
        .await;
        let elapsed = started.elapsed();
        let o = &outcomes[0];
        assert!(!o.success, "{o:#?}");
        assert_eq!(o.reason, Some(FailureReason::BodyTooLarge), "{o:#?}");
        assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
        assert!(o.duration < Duration::from_secs(2), "{o:#?}");
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn redirects_are_followed_and_loops_are_stopped() {
    bounded(async {
        let sb = sandbox().await;
        let outcomes = run_probes(
            &sb.base_url(),
            &[
                ("a.toml", &probe("loop", "", "url = \"/redirect-loop\"")),
                (
                    "b.toml",
                    &probe(
                        "three",
                        "",
                        "url = \"/redirect/3\"\nexpect = [\"status == 200\"]",
                    ),
                ),
            ],
        )
        .await;
        let by_name: HashMap<&str, &Outcome> =
            outcomes.iter().map(|o| (o.probe.as_str(), o)).collect();
        let lp = by_name["loop"];
        assert!(!lp.success, "{lp:#?}");
        assert_eq!(lp.reason, Some(FailureReason::TooManyRedirects), "{lp:#?}");
        assert_eq!(lp.http.as_ref().unwrap().redirects, 10, "{lp:#?}");
        let three = by_name["three"];
        assert!(three.success, "{three:#?}");
        let http = three.http.as_ref().unwrap();
        assert_eq!(http.redirects, 3, "{three:#?}");
        assert_eq!(http.status, Some(200));
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_stalled_body_times_out_at_the_probe_deadline() {
    bounded(async {
        let sb = sandbox().await;
        let outcomes = run_probes(
            &sb.base_url(),
            &[(
                "stall.toml",
                &probe("stall", "timeout = \"500ms\"", "url = \"/stall\""),
            )],
        )
        .await;
        let o = &outcomes[0];
        assert!(!o.success, "{o:#?}");
        assert_eq!(o.reason, Some(FailureReason::Timeout), "{o:#?}");
        let secs = o.duration.as_secs_f64();
        assert!((0.45..=1.5).contains(&secs), "duration {secs}s: {o:#?}");
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_refused_connection_is_connect_refused() {
    bounded(async {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let outcomes = run_probes(
            &format!("http://127.0.0.1:{port}"),
            &[("r.toml", &probe("refused", "", "url = \"/health\""))],
        )
        .await;
        let o = &outcomes[0];
        assert!(!o.success, "{o:#?}");
        assert_eq!(o.reason, Some(FailureReason::ConnectRefused), "{o:#?}");
        assert_eq!(o.http.as_ref().unwrap().status, None, "{o:#?}");
        assert!(
            o.error.as_deref().unwrap_or("").contains(&port.to_string()),
            "{o:#?}"
        );
    })
    .await;
}

/// An HTTPS server on 127.0.0.1 whose certificate (for `localhost`) expires
/// `days` days from now; returns its port and the certificate's PEM.
async fn tls_server_expiring_in(days: i64) -> (u16, String) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let not_after = chrono::Utc::now() + chrono::Duration::days(days);
    params.not_after = rcgen::date_time_ymd(
        chrono::Datelike::year(&not_after),
        chrono::Datelike::month(&not_after) as u8,
        chrono::Datelike::day(&not_after) as u8,
    );
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let mut buf = [0u8; 4096];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    (port, cert.pem())
}

/// `tls.days_left` reads the server certificate's expiry, and the outcome
/// carries it (exported as `probe_ssl_earliest_cert_expiry`).
#[tokio::test]
async fn certificate_expiry_is_measured_and_assertable() {
    bounded(async {
        let (port, pem) = tls_server_expiring_in(10).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), pem).unwrap();
        let config = format!(
            "{}tls = {{ ca_file = \"ca.pem\" }}\n",
            config_with_target(&format!("https://localhost:{port}"))
        );
        let probes = [
            ("ok.toml", "name = \"ok\"\nenvironments = [\"target\"]\n[http]\nurl = \"/\"\nexpect = [\"tls.days_left > 9.0 && tls.days_left < 11.0\", \"tls.earliest_cert_expiry > timestamp('2026-01-01T00:00:00Z')\"]\n"),
            ("soon.toml", "name = \"soon\"\nenvironments = [\"target\"]\n[http]\nurl = \"/\"\nexpect = [\"tls.days_left > 30.0\"]\n"),
        ];
        let path = write_config(dir.path(), &config, &probes);
        let outcomes = run_all(&load(&path), &BTreeMap::new()).await;
        let ok = outcomes.iter().find(|o| o.probe == "ok").unwrap();
        assert!(ok.success, "{ok:#?}");
        let http = ok.http.as_ref().unwrap();
        assert!(http.tls);
        let expiry = http.tls_earliest_cert_expiry.unwrap();
        let days = (expiry - chrono::Utc::now().timestamp()) as f64 / 86_400.0;
        assert!((9.0..11.0).contains(&days), "{days}");
        let soon = outcomes.iter().find(|o| o.probe == "soon").unwrap();
        assert_eq!(soon.reason, Some(FailureReason::Assertion));
        let failed = soon.assertions.iter().find(|a| !a.passed).unwrap();
        assert_eq!(failed.expression, "tls.days_left > 30.0");
        assert!(
            failed.actual.starts_with("tls.days_left = 9.")
                || failed.actual.starts_with("tls.days_left = 10."),
            "{failed:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_static_url_is_joined_onto_each_environments_own_base() {
    bounded(async {
        let sb = sandbox().await;
        let base = sb.base_url();
        let base = base.trim_end_matches('/');
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[daemon]\nprobes = [\"probes/*.toml\"]\n\n\
             [environments.up]\nbase_url = \"{base}/status\"\n\n\
             [environments.missing]\nbase_url = \"{base}/nothing-here\"\n"
        );
        let path = write_config(
            dir.path(),
            &config,
            &[(
                "p.toml",
                "name = \"p\"\nenvironments = [\"up\", \"missing\"]\n[http]\nurl = \"/200\"\n",
            )],
        );
        let config = load(&path);
        // Twice over: whatever the probe keeps between runs (a cache of
        // joined URLs was tried once) must not hand one environment's URL
        // to the other.
        for _ in 0..2 {
            let outcomes = run_all(&config, &BTreeMap::new()).await;
            let by_env: HashMap<&str, &Outcome> = outcomes
                .iter()
                .map(|o| (o.environment.as_str(), o))
                .collect();
            assert!(by_env["up"].success, "{:#?}", by_env["up"]);
            let missing = by_env["missing"];
            assert!(!missing.success, "{missing:#?}");
            assert_eq!(
                missing.http.as_ref().and_then(|h| h.status),
                Some(404),
                "{missing:#?}"
            );
        }
        sb.shutdown().await;
    })
    .await;
}
