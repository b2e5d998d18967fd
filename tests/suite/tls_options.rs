//! TLS options of environments and probes against real servers on
//! 127.0.0.1: the sandbox's mTLS port (a client certificate signed by the
//! sandbox CA required), and a TLS 1.2-only server a test starts itself.
//! A probe's `tls` merged over its environment's, `min_version`, client
//! certificates missing or present, flows inheriting `[flow] tls`, and TLS
//! files changed on disk between two runs of one loaded config (no
//! restart). Configs are written to temp dirs and loaded with
//! `plan::load`, then run in-process.

use crate::common;

use common::{
    load, position_of, run_all, run_by_probe, sandbox, write_config, write_target_config,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;
use synthmon::outcome::{FailureReason, Outcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Every test body runs under this bound.
const BOUND: Duration = Duration::from_secs(15);

async fn bounded<F: Future>(f: F) -> F::Output {
    common::within(BOUND, f).await
}

/// The sandbox's variables: its mTLS URL, CA, client certificate and key.
struct Sandbox {
    sb: synthmon::sandbox::Sandbox,
}

impl Sandbox {
    async fn start() -> Sandbox {
        Sandbox {
            sb: sandbox().await,
        }
    }

    fn var(&self, name: &str) -> &str {
        &self.sb.variables()[name]
    }
}

/// An `http` probe file `NAME.toml` in `target`.
fn http(name: &str, body: &str) -> (String, String) {
    (
        format!("{name}.toml"),
        format!(
            "name = \"{name}\"\nenvironments = [\"target\"]\ntimeout = \"3s\"\n\n[http]\n{body}\n"
        ),
    )
}

#[track_caller]
fn assert_passed(o: &Outcome) {
    assert!(o.success, "{o:#?}");
}

#[track_caller]
fn assert_failed(o: &Outcome, reason: FailureReason, part: &str) {
    assert!(!o.success, "{o:#?}");
    assert_eq!(o.reason, Some(reason), "{o:#?}");
    let error = o.error.as_deref().unwrap_or_default();
    assert!(error.contains(part), "{error:?} lacks {part:?}");
}

/// A CA of the test's own: valid PEM that vouches for nothing the sandbox
/// serves.
fn stranger_ca() -> String {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "a stranger CA");
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().pem()
}

#[tokio::test]
async fn mtls_passes_with_the_client_certificate_and_fails_without() {
    bounded(async {
        let sb = Sandbox::start().await;
        let (url, ca) = (sb.var("sandbox_mtls"), sb.var("sandbox_ca_file"));
        let (cert, key) = (sb.var("sandbox_client_cert"), sb.var("sandbox_client_key"));
        let dir = tempfile::tempdir().unwrap();
        let probes = [
            http(
                "with-cert",
                &format!(
                    "url = \"{url}/whoami\"\ntls = {{ ca_file = \"{ca}\", client_cert = \"{cert}\", client_key = \"{key}\" }}\n\
                     expect = [\"json.client == 'CN=synthmon sandbox client'\", \"json.path == '/whoami'\"]"
                ),
            ),
            http(
                "without-cert",
                &format!("url = \"{url}/\"\ntls = {{ ca_file = \"{ca}\" }}"),
            ),
        ];
        let path = write_target_config(dir.path(), &sb.sb.base_url(), "", &probes);
        let out = run_by_probe(&path).await;
        assert_passed(&out["with-cert"]);
        // TLS 1.3: the refusal arrives after the client's handshake, with
        // the first read; worded as the handshake would have been.
        assert_failed(
            &out["without-cert"],
            FailureReason::Tls,
            "the server requires a client certificate and none was presented",
        );
        let o = &out["without-cert"];
        let phases = o.http.as_ref().unwrap().phases;
        assert!(phases.tls > Duration::ZERO, "{o:#?}");
        sb.sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_probes_tls_keys_win_over_its_environments_one_by_one() {
    bounded(async {
        let sb = Sandbox::start().await;
        let (url, ca) = (sb.var("sandbox_mtls"), sb.var("sandbox_ca_file"));
        let (cert, key) = (sb.var("sandbox_client_cert"), sb.var("sandbox_client_key"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stranger.pem"), stranger_ca()).unwrap();
        // The environment presents the client certificate but trusts the
        // wrong CA, and names the wrong host.
        let env = format!(
            "tls = {{ ca_file = \"stranger.pem\", client_cert = \"{cert}\", client_key = \"{key}\", server_name = \"wrong.example\" }}"
        );
        let probes = [
            http("env-alone", &format!("url = \"{url}/\"")),
            // Only the probe's CA: the name is still the environment's.
            http(
                "ca-only",
                &format!("url = \"{url}/\"\ntls = {{ ca_file = \"{ca}\" }}"),
            ),
            // CA and name: the environment's client certificate is kept.
            http(
                "ca-and-name",
                &format!(
                    "url = \"{url}/\"\ntls = {{ ca_file = \"{ca}\", server_name = \"localhost\" }}\nexpect = [\"json.client == 'CN=synthmon sandbox client'\"]"
                ),
            ),
            // Verification off for this probe alone.
            http(
                "insecure",
                &format!("url = \"{url}/\"\ntls = {{ insecure_skip_verify = true }}"),
            ),
        ];
        let path = write_target_config(dir.path(), &sb.sb.base_url(), &env, &probes);
        let out = run_by_probe(&path).await;
        assert_failed(&out["env-alone"], FailureReason::CertUntrusted, "is not trusted");
        assert_failed(
            &out["ca-only"],
            FailureReason::CertHostname,
            "certificate is not valid for wrong.example",
        );
        assert_passed(&out["ca-and-name"]);
        assert_passed(&out["insecure"]);
        sb.sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_flows_steps_inherit_its_tls() {
    bounded(async {
        let sb = Sandbox::start().await;
        let (url, ca) = (sb.var("sandbox_mtls"), sb.var("sandbox_ca_file"));
        let (cert, key) = (sb.var("sandbox_client_cert"), sb.var("sandbox_client_key"));
        let dir = tempfile::tempdir().unwrap();
        let flow = format!(
            "name = \"journey\"\nenvironments = [\"target\"]\ntimeout = \"3s\"\n\n[flow]\n\
             tls = {{ ca_file = \"{ca}\", client_cert = \"{cert}\", client_key = \"{key}\" }}\n\n\
             [[flow.steps]]\nurl = \"{url}/one\"\nexpect = [\"json.path == '/one'\"]\n\n\
             [[flow.steps]]\nurl = \"/health\"\n\n\
             [[flow.steps]]\nurl = \"{url}/two\"\nexpect = [\"json.client == 'CN=synthmon sandbox client'\"]\n"
        );
        let path = write_target_config(
            dir.path(),
            &sb.sb.base_url(),
            "",
            &[("journey.toml".to_owned(), flow)],
        );
        let out = run_by_probe(&path).await;
        let o = &out["journey"];
        assert_passed(o);
        assert_eq!(o.steps.len(), 3, "{o:#?}");
        sb.sb.shutdown().await;
    })
    .await;
}

/// An HTTPS server on 127.0.0.1 that speaks TLS 1.2 only, its certificate
/// for `localhost` signed by a CA of its own; returns its port and the
/// CA's PEM.
async fn tls12_only_server() -> (u16, String) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap()).unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
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
    (port, ca.pem())
}

#[tokio::test]
async fn min_version_1_3_refuses_a_server_that_speaks_only_1_2() {
    bounded(async {
        let (port, ca) = tls12_only_server().await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca).unwrap();
        let url = format!("https://localhost:{port}/");
        let probes = [
            http("default", &format!("url = \"{url}\"")),
            http(
                "at-least-1-2",
                &format!("url = \"{url}\"\ntls = {{ min_version = 1.2 }}"),
            ),
            http(
                "at-least-1-3",
                &format!("url = \"{url}\"\ntls = {{ min_version = \"1.3\" }}"),
            ),
        ];
        let path = write_target_config(
            dir.path(),
            &format!("https://localhost:{port}"),
            "tls = { ca_file = \"ca.pem\" }",
            &probes,
        );
        let out = run_by_probe(&path).await;
        assert_passed(&out["default"]);
        assert_passed(&out["at-least-1-2"]);
        let o = &out["at-least-1-3"];
        assert_failed(o, FailureReason::Tls, "tls handshake with localhost failed");
        assert!(
            o.error
                .as_deref()
                .unwrap_or_default()
                .contains("ProtocolVersion"),
            "{o:#?}"
        );
    })
    .await;
}

#[test]
fn bad_tls_and_proxy_keys_are_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let env = "tls = { min_version = \"1.1\" }";
    let probe = "name = \"bad\"\nenvironments = [\"target\"]\n\n[http]\nurl = \"/\"\n\
                 tls = { min_version = \"TLS1.3\", client_cert = \"cert.pem\" }\n\
                 proxy = \"socks5://proxy.example:1080\"\nno_proxy = [\"ok.example\", \"a b\"]\n";
    let path = write_target_config(
        dir.path(),
        "http://127.0.0.1:1",
        env,
        &[("bad.toml".to_owned(), probe.to_owned())],
    );
    let config = std::fs::read_to_string(&path).unwrap();
    let opts = synthmon::config::LoadOptions {
        config_path: Some(path),
        overrides: vec![],
    };
    let text = synthmon::plan::load(&opts).unwrap_err().to_string();
    let at = |file: &str, source: &str, needle: &str| {
        let (line, column) = position_of(source, needle);
        format!("{file}:{line}:{column}: error: ")
    };
    let config_file = dir.path().join("config.toml").display().to_string();
    let probe_file = dir.path().join("probes/bad.toml").display().to_string();
    for expected in [
        format!(
            "{}environments.target.tls.min_version: expected `1.2` or `1.3` (the versions rustls speaks), found `1.1`",
            at(&config_file, &config, "\"1.1\"")
        ),
        format!(
            "{}http.tls.min_version: expected `1.2` or `1.3` (the versions rustls speaks), found `TLS1.3`",
            at(&probe_file, probe, "\"TLS1.3\"")
        ),
        format!(
            "{}http.tls.client_cert: cannot read client_cert ",
            at(&probe_file, probe, "\"cert.pem\"")
        ),
        format!(
            "{}http.tls.client_cert: `client_cert` is set without `client_key`: a probe sets both or neither",
            at(&probe_file, probe, "\"cert.pem\"")
        ),
        format!(
            "{}http.proxy: expected a proxy URL like `http://proxy.example:3128`, found `socks5://proxy.example:1080`: the `socks5` scheme is not supported (HTTP proxies with CONNECT only)",
            at(&probe_file, probe, "\"socks5")
        ),
        format!(
            "{}http.no_proxy[1]: expected a host like `internal.example`, a domain like `.example.com`, an IP address or a network like `10.0.0.0/8`, found `a b`",
            at(&probe_file, probe, "\"a b\"")
        ),
    ] {
        assert!(text.contains(&expected), "no `{expected}` in\n{text}");
    }
}

#[tokio::test]
async fn tls_files_changed_on_disk_are_read_again_by_the_next_run() {
    bounded(async {
        let sb = Sandbox::start().await;
        let url = sb.var("sandbox_mtls");
        let (cert, key) = (sb.var("sandbox_client_cert"), sb.var("sandbox_client_key"));
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("ca.pem");
        let stranger = stranger_ca();
        std::fs::write(&ca_path, &stranger).unwrap();
        let env = format!(
            "tls = {{ ca_file = \"ca.pem\", client_cert = \"{cert}\", client_key = \"{key}\" }}"
        );
        let path = write_target_config(
            dir.path(),
            &sb.sb.base_url(),
            &env,
            &[http("rotated", &format!("url = \"{url}/\""))],
        );
        // One config, loaded once, as the daemon holds it between reloads.
        let config = load(&path);
        let once = || async {
            let outcomes = run_all(&config, &BTreeMap::new()).await;
            outcomes
                .into_iter()
                .map(|o| (o.probe.clone(), o))
                .collect::<BTreeMap<_, _>>()
        };
        assert_failed(
            &once().await["rotated"],
            FailureReason::CertUntrusted,
            "is not trusted",
        );

        // The right CA in the same file (a longer text, so the change shows
        // in its length even on a coarse clock): the next run trusts it.
        let mut right = std::fs::read_to_string(sb.var("sandbox_ca_file")).unwrap();
        while right.len() <= stranger.len() {
            right.push('\n');
        }
        std::fs::write(&ca_path, right).unwrap();
        assert_passed(&once().await["rotated"]);

        // Gone: the run fails in words, and nothing panics.
        std::fs::remove_file(&ca_path).unwrap();
        let o = &once().await["rotated"];
        assert_failed(
            o,
            FailureReason::Request,
            "cannot set up tls: cannot read ca_file ",
        );
        assert!(o.error.as_deref().unwrap().contains("ca.pem"), "{o:#?}");
        sb.sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_example_probe_passes_against_the_builtin_sandbox() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let example = std::fs::read_to_string(common::repo().join("probes/mtls-sandbox.toml")).unwrap();
        let path = write_config(
            dir.path(),
            "[daemon]\nprobes = [\"probes/*.toml\"]\n\n[environments.sandbox]\nbase_url = \"builtin:sandbox\"\n",
            &[("mtls-sandbox.toml", &example)],
        );
        let out = run_by_probe(&path).await;
        assert_passed(&out["mtls-sandbox"]);
    })
    .await;
}
