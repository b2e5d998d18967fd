//! HTTP proxies against the sandbox's real CONNECT proxies on 127.0.0.1
//! (`sandbox_proxy`, and `sandbox_proxy_auth`, which wants credentials):
//! plain and TLS targets tunnelled (and the proxy saw the CONNECT, by its
//! `GET /connects`), phases that still add up, a proxy that is down, a
//! 407 and other refusals (reason `proxy`, the status in the sentence),
//! `no_proxy` and `proxy = "none"` going direct, `proxy = "env"` reading
//! `HTTPS_PROXY` in a child `synthmon --once` (and the variable ignored
//! without it), and the proxy's password in no output. Configs are
//! written to temp dirs; in-process runs through `plan::load`.

use crate::common;

use common::{run_by_probe, sandbox, synthmon_in, write_target_config};
use std::future::Future;
use std::path::Path;
use std::time::Duration;
use synthmon::outcome::{FailureReason, Outcome};
use synthmon::sandbox::proxy::{PASSWORD, USER};

/// Every test body runs under this bound.
const BOUND: Duration = Duration::from_secs(30);

async fn bounded<F: Future>(f: F) -> F::Output {
    common::within(BOUND, f).await
}

/// A probe file `NAME.toml` in `target` with the given kind table.
fn probe(name: &str, kind: &str, body: &str) -> (String, String) {
    (
        format!("{name}.toml"),
        format!(
            "name = \"{name}\"\nenvironments = [\"target\"]\ntimeout = \"3s\"\n\n[{kind}]\n{body}\n"
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

/// What the sandbox's proxies were asked (`GET /connects`): each entry's
/// proxy, target and status.
async fn connects(proxy_url: &str) -> Vec<(String, String, u64)> {
    let addr = proxy_url.trim_start_matches("http://").parse().unwrap();
    let (status, body) = common::http_request(addr, "GET", "/connects", None).await;
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    doc["connects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["proxy"].as_str().unwrap().to_owned(),
                c["target"].as_str().unwrap().to_owned(),
                c["status"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// `http://127.0.0.1:PORT` → `127.0.0.1:PORT`.
fn authority(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| {
            format!(
                "{}:{}",
                u.host_str().unwrap(),
                u.port_or_known_default().unwrap()
            )
        })
        .unwrap()
}

/// A port on 127.0.0.1 nobody listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn http_https_flow_and_websocket_targets_go_through_the_proxy() {
    bounded(async {
        let sb = sandbox().await;
        let vars = sb.variables().clone();
        let base = sb.base_url();
        let mtls = &vars["sandbox_mtls"];
        let tls = format!(
            "tls = {{ ca_file = \"{}\", client_cert = \"{}\", client_key = \"{}\" }}",
            vars["sandbox_ca_file"], vars["sandbox_client_cert"], vars["sandbox_client_key"]
        );
        let dir = tempfile::tempdir().unwrap();
        let probes = [
            probe("plain", "http", "url = \"/health\""),
            probe(
                "secure",
                "http",
                &format!("url = \"{mtls}/tunnelled\"\nexpect = [\"json.path == '/tunnelled'\"]"),
            ),
            probe(
                "journey",
                "flow",
                "[[flow.steps]]\nurl = \"/health\"\n\n[[flow.steps]]\nurl = \"/status/204\"",
            ),
            probe(
                "ws",
                "websocket",
                "url = \"/ws/echo\"\nsend = [{ text = \"hi\" }]\nexpect = [\"messages[0].text == 'hi'\"]",
            ),
        ];
        let env = format!("proxy = \"{}\"\n{tls}", vars["sandbox_proxy"]);
        let path = write_target_config(dir.path(), &base, &env, &probes);
        let out = run_by_probe(&path).await;
        for name in ["plain", "secure", "journey", "ws"] {
            assert_passed(&out[name]);
        }
        // The phases are the proxy's and the tunnel's, and still add up:
        // no resolve (the proxy is an IP literal), the CONNECT in connect.
        for name in ["plain", "secure"] {
            let o = &out[name];
            let p = o.http.as_ref().unwrap().phases;
            assert_eq!(p.resolve, Duration::ZERO, "{p:?}");
            assert!(p.connect > Duration::ZERO, "{p:?}");
            let sum = p.sum();
            assert!(sum <= o.duration, "phases {sum:?} exceed the run {:?}", o.duration);
            assert!(o.duration - sum <= Duration::from_millis(1), "{p:?} vs {:?}", o.duration);
        }
        assert!(out["secure"].http.as_ref().unwrap().phases.tls > Duration::ZERO);
        // The proxy saw a CONNECT for each connection: the HTTP target's
        // (plain, two flow steps, the upgrade) and the mTLS port's.
        let seen = connects(&vars["sandbox_proxy"]).await;
        let to = |target: &str| {
            seen.iter()
                .filter(|(proxy, t, status)| proxy == "sandbox_proxy" && t == target && *status == 200)
                .count()
        };
        assert_eq!(to(&authority(&base)), 4, "{seen:?}");
        assert_eq!(to(&authority(mtls)), 1, "{seen:?}");
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_proxy_that_is_down_or_refuses_fails_with_reason_proxy() {
    bounded(async {
        let sb = sandbox().await;
        let vars = sb.variables().clone();
        let base = sb.base_url();
        let down = closed_port();
        let nobody = closed_port();
        let dir = tempfile::tempdir().unwrap();
        let probes = [
            probe(
                "down",
                "http",
                &format!("url = \"/health\"\nproxy = \"http://127.0.0.1:{down}\""),
            ),
            // The proxy cannot reach the target: 502.
            probe(
                "bad-gateway",
                "http",
                &format!(
                    "url = \"http://127.0.0.1:{nobody}/\"\nproxy = \"{}\"",
                    vars["sandbox_proxy"]
                ),
            ),
            // Not a loopback target: the sandbox's proxy refuses, 403.
            probe(
                "forbidden",
                "http",
                &format!(
                    "url = \"https://192.0.2.1/\"\nproxy = \"{}\"",
                    vars["sandbox_proxy"]
                ),
            ),
        ];
        let path = write_target_config(dir.path(), &base, "", &probes);
        let out = run_by_probe(&path).await;
        assert_failed(
            &out["down"],
            FailureReason::Proxy,
            &format!(
                "cannot reach the proxy http://127.0.0.1:{down}: cannot connect to 127.0.0.1:{down}"
            ),
        );
        let proxy = &vars["sandbox_proxy"];
        assert_failed(
            &out["bad-gateway"],
            FailureReason::Proxy,
            &format!("the proxy {proxy} answered CONNECT 127.0.0.1:{nobody} with 502 Bad Gateway"),
        );
        assert_failed(
            &out["forbidden"],
            FailureReason::Proxy,
            &format!("the proxy {proxy} answered CONNECT 192.0.2.1:443 with 403 Forbidden"),
        );
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_proxy_that_wants_credentials_says_so_with_407() {
    bounded(async {
        let sb = sandbox().await;
        let vars = sb.variables().clone();
        let proxy = &vars["sandbox_proxy_auth"];
        let dir = tempfile::tempdir().unwrap();
        // The right password from a file (beside the probe files), as a
        // secret.
        std::fs::create_dir_all(dir.path().join("probes")).unwrap();
        std::fs::write(dir.path().join("probes/proxy-password"), format!("{PASSWORD}\n")).unwrap();
        let hostport = proxy.trim_start_matches("http://");
        let probes = [
            probe("none", "http", &format!("url = \"/health\"\nproxy = \"{proxy}\"")),
            probe(
                "wrong",
                "http",
                &format!(
                    "url = \"/health\"\nproxy = \"{proxy}\"\nproxy_auth = {{ user = \"{USER}\", password = \"not-the-password\" }}"
                ),
            ),
            probe(
                "right",
                "http",
                &format!(
                    "url = \"/health\"\nproxy = \"{proxy}\"\nproxy_auth = {{ user = \"{USER}\", password = \"${{file:proxy-password}}\" }}"
                ),
            ),
            probe(
                "in-url",
                "http",
                &format!("url = \"/health\"\nproxy = \"http://{USER}:${{file:proxy-password}}@{hostport}\""),
            ),
        ];
        let path = write_target_config(dir.path(), &sb.base_url(), "", &probes);
        let out = run_by_probe(&path).await;
        assert_failed(
            &out["none"],
            FailureReason::Proxy,
            &format!("the proxy {proxy} requires authentication for CONNECT "),
        );
        assert!(out["none"].error.as_deref().unwrap().contains("(407 Proxy Authentication Required, asking for Basic credentials): set proxy_auth"));
        assert_failed(
            &out["wrong"],
            FailureReason::Proxy,
            &format!("the proxy {proxy} refused the credentials it was sent for CONNECT "),
        );
        assert_passed(&out["right"]);
        assert_passed(&out["in-url"]);
        let statuses: Vec<u64> = connects(proxy)
            .await
            .into_iter()
            .filter(|(p, ..)| p == "sandbox_proxy_auth")
            .map(|(.., s)| s)
            .collect();
        assert_eq!(statuses.iter().filter(|s| **s == 407).count(), 2, "{statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 2, "{statuses:?}");
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn no_proxy_and_proxy_none_go_direct() {
    bounded(async {
        let sb = sandbox().await;
        let down = closed_port();
        let dir = tempfile::tempdir().unwrap();
        let probes = [
            probe("bypassed", "http", "url = \"/health\""),
            // A probe's own proxy replaces the environment's, `none` too.
            probe(
                "direct",
                "http",
                &format!(
                    "url = \"http://localhost:{}/health\"\nproxy = \"none\"",
                    sb.addr().port()
                ),
            ),
            probe(
                "still-proxied",
                "http",
                &format!("url = \"http://localhost:{}/health\"", sb.addr().port()),
            ),
        ];
        // Every host but 127.0.0.1 (and its names under `.internal`) goes
        // through a proxy that is down.
        let env = format!(
            "proxy = \"http://127.0.0.1:{down}\"\nno_proxy = [\"127.0.0.1\", \".internal\"]"
        );
        let path = write_target_config(dir.path(), &sb.base_url(), &env, &probes);
        let out = run_by_probe(&path).await;
        assert_passed(&out["bypassed"]);
        assert_passed(&out["direct"]);
        assert_failed(
            &out["still-proxied"],
            FailureReason::Proxy,
            "cannot reach the proxy",
        );
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_env_reads_https_proxy_and_nothing_reads_it_otherwise() {
    bounded(async {
        let sb = sandbox().await;
        let vars = sb.variables().clone();
        let mtls = vars["sandbox_mtls"].clone();
        let tls = format!(
            "tls = {{ ca_file = \"{}\", client_cert = \"{}\", client_key = \"{}\" }}",
            vars["sandbox_ca_file"], vars["sandbox_client_cert"], vars["sandbox_client_key"]
        );
        let probes = [
            probe("secure", "http", &format!("url = \"{mtls}/via-env\"")),
            probe("plain", "http", "url = \"/health\""),
        ];
        let once = |env_extra: String, envs: Vec<(&'static str, String)>| {
            let dir = tempfile::tempdir().unwrap();
            write_target_config(dir.path(), &sb.base_url(), &env_extra, &probes);
            tokio::task::spawn_blocking(move || {
                let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let run = synthmon_in(
                    dir.path(),
                    &["--config", "config.toml", "--once", "--output", "json"],
                    &envs,
                    Duration::from_secs(20),
                );
                drop(dir);
                run
            })
        };
        // `proxy = "env"`: HTTPS targets through HTTPS_PROXY; HTTP_PROXY is
        // unset, so the plain target goes direct.
        let run = once(
            format!("proxy = \"env\"\n{tls}"),
            vec![
                ("HTTPS_PROXY", vars["sandbox_proxy"].clone()),
                ("HTTP_PROXY", String::new()),
                ("http_proxy", String::new()),
                ("https_proxy", String::new()),
                ("NO_PROXY", String::new()),
                ("no_proxy", String::new()),
            ],
        )
        .await
        .unwrap();
        run.assert_code(0);
        let seen = connects(&vars["sandbox_proxy"]).await;
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].1, authority(&mtls), "{seen:?}");

        // Without `proxy = "env"` the variables are ignored: a proxy that
        // is down changes nothing.
        let down = format!("http://127.0.0.1:{}", closed_port());
        let run = once(
            tls.clone(),
            vec![
                ("HTTPS_PROXY", down.clone()),
                ("HTTP_PROXY", down.clone()),
                ("https_proxy", down.clone()),
                ("http_proxy", down),
            ],
        )
        .await
        .unwrap();
        run.assert_code(0);
        assert_eq!(connects(&vars["sandbox_proxy"]).await.len(), 1);
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_password_never_appears_in_any_output() {
    bounded(async {
        let sb = sandbox().await;
        let vars = sb.variables().clone();
        let proxy = vars["sandbox_proxy_auth"].clone();
        let hostport = proxy.trim_start_matches("http://").to_owned();
        const WRONG: &str = "wrong-proxy-canary-71c3";
        let probes = [
            // Through the proxy with the right password (in the URL), then a
            // failed expectation: the report, the artifact, the logs.
            probe(
                "through",
                "http",
                &format!(
                    "url = \"/headers\"\nproxy = \"http://{USER}:${{env:SYNTHMON_TEST_PROXY_PW}}@{hostport}\"\nexpect = [\"status == 599\"]"
                ),
            ),
            // The wrong password (from proxy_auth): a 407 the sentence explains.
            probe(
                "refused",
                "http",
                &format!(
                    "url = \"/headers\"\nproxy = \"{proxy}\"\nproxy_auth = {{ user = \"{USER}\", password = \"${{env:SYNTHMON_TEST_WRONG_PW}}\" }}"
                ),
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        write_target_config(dir.path(), &sb.base_url(), "", &probes);
        let path = dir.path().to_path_buf();
        let run = tokio::task::spawn_blocking(move || {
            synthmon_in(
                &path,
                &[
                    "--config",
                    "config.toml",
                    "--once",
                    "--output",
                    "json",
                    "--log-format",
                    "json",
                    "--artifacts",
                    "artifacts",
                ],
                &[
                    ("SYNTHMON_TEST_PROXY_PW", PASSWORD),
                    ("SYNTHMON_TEST_WRONG_PW", WRONG),
                    ("SYNTHMON_LOG", "trace"),
                ],
                Duration::from_secs(20),
            )
        })
        .await
        .unwrap();
        run.assert_code(1);
        let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let results = doc["results"].as_array().unwrap();
        let result = |name: &str| results.iter().find(|r| r["probe"] == name).unwrap();
        assert_eq!(result("through")["reason"], "assertion", "{doc:#}");
        assert_eq!(result("refused")["reason"], "proxy", "{doc:#}");
        assert!(
            result("refused")["error"].as_str().unwrap().contains("407"),
            "{doc:#}"
        );
        let b64 = |s: &str| synthmon::secret::base64(s.as_bytes());
        let forbidden = [
            PASSWORD.to_owned(),
            b64(&format!("{USER}:{PASSWORD}")),
            WRONG.to_owned(),
            b64(&format!("{USER}:{WRONG}")),
        ];
        let mut outputs = vec![
            ("the JSON report".to_owned(), run.stdout.clone()),
            ("the logs".to_owned(), run.stderr.clone()),
        ];
        let artifacts = dir.path().join("artifacts");
        for entry in walk(&artifacts) {
            let text = std::fs::read_to_string(&entry).unwrap();
            outputs.push((entry.display().to_string(), text));
        }
        assert!(outputs.len() >= 4, "no artifacts written: {outputs:?}");
        for (what, text) in &outputs {
            for form in &forbidden {
                assert!(!text.contains(form.as_str()), "`{form}` leaked into {what}:\n{text}");
            }
        }
        sb.shutdown().await;
    })
    .await;
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
