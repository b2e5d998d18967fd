//! The `tcp` and `tls` probes against real listeners on 127.0.0.1: the
//! sandbox's banner/echo port and its three TLS ports (started in-process
//! by `once::run` for a `builtin:sandbox` environment), plus listeners the
//! tests start themselves for the hostile cases (refusing, silent, endless).
//! Configs are written to temp dirs and loaded with `config::load`.

use crate::common;

use common::{config_with_target, load, position_of, run_all, write_config};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};
use synthmon::outcome::{FailureReason, Outcome};
use synthmon::probe::tcp::TcpFacts;
use synthmon::probe::tls::TlsFacts;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// Every test body runs under this bound.
const BOUND: Duration = Duration::from_secs(10);

async fn bounded<F: Future>(f: F) -> F::Output {
    common::within(BOUND, f).await
}

/// Loads a config with one environment `target` at `base_url` and the
/// given probe files, runs every pair once, and returns the outcomes by
/// probe name.
async fn run_probes(base_url: &str, probes: &[(String, String)]) -> BTreeMap<String, Outcome> {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(&str, &str)> = probes
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let path = write_config(dir.path(), &config_with_target(base_url), &files);
    let config = load(&path);
    run_all(&config, &BTreeMap::new())
        .await
        .into_iter()
        .map(|o| (o.probe.clone(), o))
        .collect()
}

/// A probe file `NAME.toml` in `target` with the given body table.
fn probe(name: &str, timeout: &str, kind: &str, body: &str) -> (String, String) {
    (
        format!("{name}.toml"),
        format!(
            "name = \"{name}\"\nenvironments = [\"target\"]\ntimeout = \"{timeout}\"\n\n[{kind}]\n{body}\n"
        ),
    )
}

fn tcp_facts(o: &Outcome) -> &TcpFacts {
    match o.details.as_ref() {
        Some(d) if d.get::<TcpFacts>().is_some() => d.get::<TcpFacts>().unwrap(),
        other => panic!("no tcp details: {other:?}"),
    }
}

fn tls_facts(o: &Outcome) -> &TlsFacts {
    match o.details.as_ref() {
        Some(d) if d.get::<TlsFacts>().is_some() => d.get::<TlsFacts>().unwrap(),
        other => panic!("no tls details: {other:?}"),
    }
}

/// The phases are contiguous: they add up to the run's duration.
fn assert_phases(o: &Outcome, names: &[&str]) {
    let got: Vec<&str> = o.phases.iter().map(|p| p.name).collect();
    assert_eq!(got, names, "{o:#?}");
    let sum: Duration = o.phases.iter().map(|p| p.seconds).sum();
    assert_eq!(sum, o.duration, "{o:#?}");
}

fn assert_failed(o: &Outcome, reason: FailureReason, message_part: &str) {
    assert!(!o.success, "{o:#?}");
    assert_eq!(o.reason, Some(reason), "{o:#?}");
    let error = o.error.as_deref().unwrap_or_default();
    assert!(
        error.contains(message_part),
        "{error:?} lacks {message_part:?}"
    );
}

#[tokio::test]
async fn sandbox_tcp_and_tls_ports_are_judged_precisely() {
    bounded(async {
        let ca = "ca_file = \"{{ vars.sandbox_ca_file }}\"";
        let probes = [
            probe(
                "echo",
                "2s",
                "tcp",
                "address = \"{{ vars.sandbox_tcp }}\"\nbanner = true\nsend = \"ping 1\\r\\n\"\n\
                 expect = [\"connected\", \"banner == '220 synthmon-sandbox ready'\", \"response == 'ping 1'\", \"timings.exchange < timings.total\"]",
            ),
            probe(
                "too-long",
                "2s",
                "tcp",
                &format!(
                    "address = \"{{{{ vars.sandbox_tcp }}}}\"\nbanner = true\nsend = \"{}\\n\"\n\
                     expect = [\"response == '500 line too long'\"]",
                    "a".repeat(2000)
                ),
            ),
            probe(
                "echo-tls",
                "2s",
                "tcp",
                &format!(
                    "address = \"{{{{ vars.sandbox_tls }}}}\"\ntls = true\n{ca}\nbanner = true\nsend = \"QUIT\\n\"\n\
                     expect = [\"response == '221 bye'\", \"tls.hostname_ok\", \"tls.days_left > 80.0\"]"
                ),
            ),
            probe(
                "echo-tls-expired",
                "2s",
                "tcp",
                &format!("address = \"{{{{ vars.sandbox_tls_expired }}}}\"\ntls = true\n{ca}\nbanner = true"),
            ),
            probe(
                "valid",
                "2s",
                "tls",
                &format!(
                    "address = \"{{{{ vars.sandbox_tls }}}}\"\nserver_name = \"localhost\"\n{ca}\n\
                     expect = [\"tls.days_left > 14\", \"tls.verified\", \"'127.0.0.1' in tls.sans\", \"tls.chain_length == 1\"]"
                ),
            ),
            probe(
                "expired",
                "2s",
                "tls",
                &format!("address = \"{{{{ vars.sandbox_tls_expired }}}}\"\n{ca}"),
            ),
            probe(
                "wrong-host",
                "2s",
                "tls",
                &format!("address = \"{{{{ vars.sandbox_tls_wrong_host }}}}\"\n{ca}"),
            ),
            probe(
                "unknown-ca",
                "2s",
                "tls",
                "address = \"{{ vars.sandbox_tls }}\"",
            ),
            probe(
                "expired-reported",
                "2s",
                "tls",
                &format!(
                    "address = \"{{{{ vars.sandbox_tls_expired }}}}\"\n{ca}\nallow_invalid = true\n\
                     expect = [\"tls.expired\", \"tls.trusted\", \"tls.hostname_ok\", \"!tls.verified\", \"tls.days_left < 0.0\"]"
                ),
            ),
            probe(
                "soon",
                "2s",
                "tls",
                &format!(
                    "address = \"{{{{ vars.sandbox_tls }}}}\"\n{ca}\nexpect = [\"tls.days_left > 120\"]"
                ),
            ),
        ];
        let outcomes = run_probes("builtin:sandbox", &probes).await;

        let o = &outcomes["echo"];
        assert!(o.success, "{o:#?}");
        assert!(o.responded);
        assert_phases(o, &["resolve", "connect", "exchange"]);
        let f = tcp_facts(o);
        assert_eq!(f.response.as_deref(), Some("ping 1"));
        assert_eq!((f.bytes_sent, f.bytes_read), (8, 28 + 8));
        assert!(f.tls.is_none());

        // The sandbox caps its lines too.
        let o = &outcomes["too-long"];
        assert!(o.success, "{o:#?}");

        let o = &outcomes["echo-tls"];
        assert!(o.success, "{o:#?}");
        assert_phases(o, &["resolve", "connect", "tls", "exchange"]);
        assert_eq!(
            tcp_facts(o).banner.as_deref(),
            Some("220 synthmon-sandbox ready")
        );
        assert!(o.cert_expiry().is_some());

        // Nothing is exchanged with a peer whose certificate is bad.
        let o = &outcomes["echo-tls-expired"];
        assert_failed(o, FailureReason::CertExpired, "expired");
        assert_phases(o, &["resolve", "connect", "tls"]);
        assert_eq!(tcp_facts(o).banner, None);

        let o = &outcomes["valid"];
        assert!(o.success, "{o:#?}");
        assert_phases(o, &["resolve", "connect", "tls"]);
        let info = tls_facts(o).tls.as_ref().unwrap();
        let days = info.days_left.unwrap();
        // The sandbox's leaf is valid for 90 days from its start.
        assert!((89.9..=90.0).contains(&days), "days_left = {days}");
        assert_eq!(info.subject, "CN=localhost");
        assert_eq!(info.issuer, "CN=synthmon sandbox CA");
        assert!(info.version == "TLSv1.3" || info.version == "TLSv1.2");
        let expiry = o.cert_expiry().unwrap();
        let now = chrono::Utc::now().timestamp();
        assert!((expiry - now - 90 * 86_400).abs() < 60, "{expiry} vs {now}");

        let o = &outcomes["expired"];
        assert_failed(o, FailureReason::CertExpired, "expired on ");
        assert!(o.error.as_deref().unwrap_or_default().ends_with("(24 hours ago)"), "{o:#?}");
        assert!(o.responded, "a bad certificate is still an answer");
        let info = tls_facts(o).tls.as_ref().unwrap();
        assert!(info.expired && info.trusted && info.hostname_ok && !info.verified);

        let o = &outcomes["wrong-host"];
        assert_failed(
            o,
            FailureReason::CertHostname,
            "is not valid for 127.0.0.1: it names wrong.example",
        );
        let info = tls_facts(o).tls.as_ref().unwrap();
        assert!(!info.hostname_ok && info.trusted && !info.expired);

        let o = &outcomes["unknown-ca"];
        assert_failed(
            o,
            FailureReason::CertUntrusted,
            "is not trusted: unknown issuer (self-signed, or a private CA: set ca_file to trust it)",
        );
        let info = tls_facts(o).tls.as_ref().unwrap();
        assert!(!info.trusted && info.hostname_ok && !info.expired);

        let o = &outcomes["expired-reported"];
        assert!(o.success, "allow_invalid leaves the verdict to expect: {o:#?}");
        assert_eq!(o.assertions.len(), 5);

        // The early warning: a valid certificate that expires too soon.
        let o = &outcomes["soon"];
        assert_failed(o, FailureReason::Assertion, "1 of 1 expectation failed");
        let shown = &o.assertions[0].actual;
        let days: f64 = shown
            .strip_prefix("tls.days_left = ")
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("{shown:?}"));
        assert!((89.9..=90.0).contains(&days), "{shown:?}");
    })
    .await;
}

#[tokio::test]
async fn a_refused_connection_is_connect_refused() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let probes = [
            probe("refused", "2s", "tcp", &format!("address = \"{addr}\"")),
            probe("refused-tls", "2s", "tls", &format!("address = \"{addr}\"")),
        ];
        let outcomes = run_probes("http://127.0.0.1:9", &probes).await;
        for o in outcomes.values() {
            assert_failed(
                o,
                FailureReason::ConnectRefused,
                &format!("cannot connect to {addr}"),
            );
            assert!(!o.responded);
            assert_phases(o, &["resolve", "connect"]);
        }
        // A name is resolved first; one that does not exist is a dns failure.
        let probes = [probe(
            "nxdomain",
            "2s",
            "tcp",
            "address = \"synthmon-test.invalid:25\"",
        )];
        let o = &run_probes("http://127.0.0.1:9", &probes).await["nxdomain"];
        assert_failed(
            o,
            FailureReason::Dns,
            "cannot resolve synthmon-test.invalid",
        );
    })
    .await;
}

#[tokio::test]
async fn a_silent_peer_times_out_at_the_deadline() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts and holds every connection without a word.
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let probes = [
            probe(
                "silent",
                "300ms",
                "tcp",
                &format!("address = \"{addr}\"\nbanner = true"),
            ),
            probe(
                "silent-tls",
                "300ms",
                "tls",
                &format!("address = \"{addr}\""),
            ),
        ];
        let started = Instant::now();
        let outcomes = run_probes("http://127.0.0.1:9", &probes).await;
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");

        let o = &outcomes["silent"];
        assert_failed(
            o,
            FailureReason::Timeout,
            "while waiting for the banner line (exchange); 0 bytes received",
        );
        assert!(
            o.error
                .as_deref()
                .unwrap()
                .starts_with("deadline exceeded after 0.3")
        );
        assert_phases(o, &["resolve", "connect", "exchange"]);
        assert!(o.duration >= Duration::from_millis(250), "{:?}", o.duration);
        assert!(o.duration < Duration::from_millis(500), "{:?}", o.duration);
        assert!(tcp_facts(o).connected);

        let o = &outcomes["silent-tls"];
        assert_failed(o, FailureReason::Timeout, "during the tls handshake (tls)");
        assert_phases(o, &["resolve", "connect", "tls"]);
        server.abort();
    })
    .await;
}

#[tokio::test]
async fn an_endless_line_is_cut_at_the_read_cap() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Streams bytes without a line end for as long as anyone reads.
        let server = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let chunk = [b'x'; 16 * 1024];
                    while socket.write_all(&chunk).await.is_ok() {}
                });
            }
        });
        let probes = [
            probe(
                "endless",
                "5s",
                "tcp",
                &format!("address = \"{addr}\"\nbanner = true\nmax_read_size = \"8 KiB\""),
            ),
            probe(
                "endless-close",
                "5s",
                "tcp",
                &format!("address = \"{addr}\"\nread = \"close\""),
            ),
        ];
        let started = Instant::now();
        let outcomes = run_probes("http://127.0.0.1:9", &probes).await;
        assert!(started.elapsed() < Duration::from_secs(2));

        let o = &outcomes["endless"];
        assert_failed(
            o,
            FailureReason::Protocol,
            "no line end within the first 8192 bytes of the banner line (max_read_size)",
        );
        // Bounded: not a byte more than the cap was read.
        assert_eq!(tcp_facts(o).bytes_read, 8192);
        assert_eq!(tcp_facts(o).banner, None);

        let o = &outcomes["endless-close"];
        assert_failed(
            o,
            FailureReason::Protocol,
            "more than 4096 bytes (max_read_size) arrived before the peer closed the connection",
        );
        assert_eq!(tcp_facts(o).bytes_read, 4097);
        server.abort();
    })
    .await;
}

#[tokio::test]
async fn the_sandbox_removes_its_ca_file_when_it_stops() {
    bounded(async {
        let sb = common::sandbox().await;
        let path = std::path::PathBuf::from(&sb.variables()["sandbox_ca_file"]);
        let pem = std::fs::read_to_string(&path).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        for var in [
            "sandbox_tcp",
            "sandbox_tls",
            "sandbox_tls_expired",
            "sandbox_tls_wrong_host",
        ] {
            assert!(sb.variables()[var].starts_with("127.0.0.1:"), "{var}");
        }
        sb.shutdown().await;
        let deadline = Instant::now() + Duration::from_secs(2);
        while path.exists() {
            assert!(
                Instant::now() < deadline,
                "{} is still there",
                path.display()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[test]
fn load_errors_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let no_address =
        "name = \"no-address\"\nenvironments = [\"target\"]\n\n[tcp]\nsend = \"hi\\n\"\n";
    let bad_timeout = "name = \"bad-timeout\"\nenvironments = [\"target\"]\ntimeout = \"5 parsecs\"\n\n[tls]\naddress = \"localhost:443\"\n";
    let bad_values = "name = \"bad-values\"\nenvironments = [\"target\"]\n\n[tcp]\naddress = \"localhost\"\nread = \"lines\"\nmax_read_size = \"1 MiB\"\nserver_name = \"x\"\nexpect = [\"reponse == 'x'\"]\n";
    let missing_ca = "name = \"missing-ca\"\nenvironments = [\"target\"]\n\n[tls]\naddress = \"localhost:443\"\nca_file = \"nowhere.pem\"\nallow_invalid = \"yes\"\n";
    let path = write_config(
        dir.path(),
        &config_with_target("http://127.0.0.1:9"),
        &[
            ("no-address.toml", no_address),
            ("bad-timeout.toml", bad_timeout),
            ("bad-values.toml", bad_values),
            ("missing-ca.toml", missing_ca),
        ],
    );
    let opts = synthmon::config::LoadOptions {
        config_path: Some(path),
        overrides: vec![],
    };
    let text = synthmon::plan::load(&opts).unwrap_err().to_string();
    let at = |file: &str, source: &str, needle: &str| {
        let (line, column) = position_of(source, needle);
        format!("probes/{file}:{line}:{column}: error: ")
    };
    let expect = [
        format!(
            "{}tcp: missing required key `address`",
            at("no-address.toml", no_address, "tcp]")
        ),
        format!(
            "{}timeout: expected a duration like `5s`, found `5 parsecs`",
            at("bad-timeout.toml", bad_timeout, "\"5 parsecs\"")
        ),
        format!(
            "{}tcp.address: expected an address like `db.example:5432`, found `localhost`: no port",
            at("bad-values.toml", bad_values, "\"localhost\"")
        ),
        format!(
            "{}tcp.read: expected `line`, `close` or `none`, found `lines`",
            at("bad-values.toml", bad_values, "\"lines\"")
        ),
        format!(
            "{}tcp.max_read_size: expected a size from 1 B to 64 KiB, found 1048576 bytes",
            at("bad-values.toml", bad_values, "\"1 MiB\"")
        ),
        format!(
            "{}tcp.server_name: `server_name` applies with `tls = true` only",
            at("bad-values.toml", bad_values, "\"x\"")
        ),
        format!(
            "{}tcp.expect[0]: unknown variable `reponse`",
            at("bad-values.toml", bad_values, "\"reponse")
        ),
        format!(
            "{}tls.ca_file: cannot read ca_file ",
            at("missing-ca.toml", missing_ca, "\"nowhere.pem\"")
        ),
        format!(
            "{}tls.allow_invalid: ",
            at("missing-ca.toml", missing_ca, "\"yes\"")
        ),
    ];
    for line in &expect {
        let found = text.lines().any(|l| {
            l.replace(&format!("{}/", dir.path().display()), "")
                .starts_with(line.as_str())
        });
        assert!(found, "no line starting with\n  {line}\nin\n{text}");
    }
}

/// Regression: a peer that hung up or reset the connection was reported by
/// the `tcp` kind as `protocol` (the `http` kind already told them apart).
/// The sandbox's raw fault port closes (`/close`) or resets (`/reset`)
/// after reading a request.
#[tokio::test]
async fn a_tcp_peer_that_closes_or_resets_is_closed_or_connection_reset_not_protocol() {
    bounded(async {
        let ask = |path: &str| {
            format!(
                "address = \"{{{{ vars.sandbox_raw }}}}\"\nsend = \"GET {path} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n\"\n\
                 expect = [\"response != ''\"]"
            )
        };
        let probes = [
            probe("closes", "2s", "tcp", &ask("/close")),
            probe("resets", "2s", "tcp", &ask("/reset")),
        ];
        let outcomes = run_probes("builtin:sandbox", &probes).await;
        assert_failed(
            &outcomes["closes"],
            FailureReason::Closed,
            "the peer closed the connection before sending",
        );
        assert_failed(
            &outcomes["resets"],
            FailureReason::Reset,
            "failed: the peer reset the connection (TCP RST)",
        );
    })
    .await;
}
