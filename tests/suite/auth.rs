//! Bearer tokens and OAuth2 client credentials against the real sandbox on
//! 127.0.0.1: its token endpoint (`POST /oauth/token`, which counts the
//! tokens it issues at `GET /oauth/issued`) and `GET /protected`, which
//! wants one of its tokens. Tokens are fetched once and shared by every run
//! and probe with the same settings, fetched again once expired or refused
//! by the target (never in a loop), a token endpoint's refusal fails the
//! run with reason `auth` and a sentence naming the endpoint and its
//! `error`, and neither the client secret, the bearer token nor an issued
//! token shows in any output. Conflicting ways of setting Authorization
//! are located config errors.
//!
//! The token cache is process-wide, keyed by the token URL among others:
//! every test here starts its own sandbox, so none sees another's tokens.

use crate::common::{self, position_of, synthmon, write_config};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use synthmon::outcome::{FailureReason, Outcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Not a real secret: the sandbox's test client's, and a wrong one.
const SECRET: &str = "sandbox-secret";
const WRONG: &str = "wrong-canary-4c1f9e";

const BOUND: Duration = Duration::from_secs(60);

/// How many tokens the sandbox at `addr` has issued.
async fn issued(addr: SocketAddr) -> u64 {
    let (status, body) = common::http_request(addr, "GET", "/oauth/issued", None).await;
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    doc["issued"].as_u64().unwrap()
}

/// A token straight from the sandbox's endpoint (as the test client).
async fn token_from(addr: SocketAddr) -> String {
    let credentials = synthmon::secret::base64(b"sandbox-client:sandbox-secret");
    let body = "grant_type=client_credentials";
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /oauth/token HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\nauthorization: Basic {credentials}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    let doc: serde_json::Value = serde_json::from_str(body).unwrap();
    doc["access_token"].as_str().unwrap().to_owned()
}

/// A config whose environment `target` is at `base_url`, with `extra`
/// lines in its table.
fn config(base_url: &str, extra: &str) -> String {
    format!(
        "[daemon]\nprobes = [\"probes/*.toml\"]\n\n[environments.target]\nbase_url = \"{base_url}\"\n{extra}\n"
    )
}

/// `oauth2 = { … }` for the sandbox's client, the secret read from the
/// file `secret_file` (relative to the file that says it).
fn oauth2(token_url: &str, secret_file: &str, scopes: &str) -> String {
    format!(
        "oauth2 = {{ token_url = \"{token_url}\", client_id = \"sandbox-client\", client_secret = \"${{file:{secret_file}}}\", scopes = [{scopes}] }}"
    )
}

fn by_name<'o>(outcomes: &'o [Outcome], name: &str) -> &'o Outcome {
    outcomes
        .iter()
        .find(|o| o.probe == name)
        .unwrap_or_else(|| panic!("no {name} in {outcomes:#?}"))
}

/// Loads `config` with `probes` from a fresh directory holding the
/// secret files, and runs every pair once, `rounds` times.
async fn run_rounds(
    config: &str,
    probes: &[(&str, &str)],
    rounds: usize,
) -> (tempfile::TempDir, Vec<Vec<Outcome>>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), format!("{SECRET}\n")).unwrap();
    std::fs::write(dir.path().join("wrong"), WRONG).unwrap();
    let path = write_config(dir.path(), config, probes);
    let config = common::load(&path);
    let mut all = Vec::new();
    for _ in 0..rounds {
        all.push(common::run_all(&config, &BTreeMap::new()).await);
    }
    (dir, all)
}

/// `bearer_token` sends `Authorization: Bearer …`: the protected route
/// lets it in; without it the route answers 401 and the run fails with
/// reason `status`. The token shows in no outcome, even where the target
/// echoes it.
#[tokio::test]
async fn a_bearer_token_passes_the_protected_route_and_none_gets_a_401() {
    common::within(BOUND, async {
        let sb = common::sandbox().await;
        let token = token_from(sb.addr()).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), &token).unwrap();
        let with = r#"name = "with"
environments = ["target"]

[http]
url = "/protected"
bearer_token = "${file:../token}"
expect = ["status == 200", "json.authorized == true"]
"#;
        let without = r#"name = "without"
environments = ["target"]

[http]
url = "/protected"
"#;
        let echoed = r#"name = "echoed"
environments = ["target"]

[http]
url = "/headers"
bearer_token = "${file:../token}"
expect = ["json.authorization == 'x'"]
"#;
        let path = write_config(
            dir.path(),
            &config(&sb.base_url(), ""),
            &[
                ("with.toml", with),
                ("without.toml", without),
                ("echoed.toml", echoed),
            ],
        );
        let config = common::load(&path);
        let outcomes = common::run_all(&config, &BTreeMap::new()).await;
        let with = by_name(&outcomes, "with");
        assert!(with.success, "{with:#?}");
        let without = by_name(&outcomes, "without");
        assert_eq!(without.reason, Some(FailureReason::Status), "{without:#?}");
        assert_eq!(without.http.as_ref().unwrap().status, Some(401));
        assert_eq!(without.assertions[0].actual, "status = 401");
        let echoed = by_name(&outcomes, "echoed");
        let read = echoed
            .assertions
            .iter()
            .find(|a| a.expression == "json.authorization == 'x'")
            .unwrap();
        assert_eq!(read.actual, "json.authorization = \"Bearer ***\"");
        let shown = serde_json::to_string(&outcomes).unwrap();
        assert!(!shown.contains(&token), "{shown}");
        sb.shutdown().await;
    })
    .await;
}

/// Probes that share an environment's `oauth2` share one token across
/// runs: nine runs of three probes (one a two-step flow), one fetch. A
/// probe's own `oauth2` with other scopes is another token; a probe with
/// its own Authorization (`basic_auth`) uses none. The scopes go
/// space-joined.
#[tokio::test]
async fn oauth2_fetches_one_token_for_every_run_and_probe_that_share_it() {
    common::within(BOUND, async {
        let sb = common::sandbox().await;
        let env = oauth2("/oauth/token", "secret", "\"read\", \"write\"");
        let plain = |name: &str| {
            format!(
                "name = \"{name}\"\nenvironments = [\"target\"]\n\n[http]\nurl = \"/protected?scope=write\"\nexpect = [\"json.scope == 'read write'\", \"json.client_id == 'sandbox-client'\"]\n"
            )
        };
        let flow = r#"name = "journey"
environments = ["target"]

[[flow.steps]]
url = "/protected?scope=read"

[[flow.steps]]
url = "/protected?scope=write"
"#;
        let own = format!(
            "name = \"own\"\nenvironments = [\"target\"]\n\n[http]\nurl = \"/protected?scope=admin\"\n{}\n",
            oauth2("/oauth/token", "../secret", "\"admin\"")
        );
        let basic = r#"name = "basic"
environments = ["target"]

[http]
url = "/headers"
basic_auth = { user = "u", password = "p-long-enough" }
expect = ["json.authorization.startsWith('Basic ')"]
"#;
        let (a, b) = (plain("a"), plain("b"));
        let (_dir, rounds) = run_rounds(
            &config(&sb.base_url(), &env),
            &[
                ("a.toml", &a),
                ("b.toml", &b),
                ("journey.toml", flow),
                ("own.toml", &own),
                ("basic.toml", basic),
            ],
            3,
        )
        .await;
        for outcomes in &rounds {
            assert_eq!(outcomes.len(), 5);
            for o in outcomes {
                assert!(o.success, "{o:#?}");
            }
        }
        // One token for the environment's settings, one for `own`'s.
        assert_eq!(issued(sb.addr()).await, 2);
        sb.shutdown().await;
    })
    .await;
}

/// A token is fetched again once it is past its lifetime (here
/// `expires_in` 0: every run), and not before (an hour: once).
#[tokio::test]
async fn oauth2_fetches_again_once_the_token_expired() {
    common::within(BOUND, async {
        let sb = common::sandbox().await;
        let probe = |name: &str, expires_in: u32| {
            format!(
                "name = \"{name}\"\nenvironments = [\"target\"]\n\n[http]\nurl = \"/protected\"\n{}\n",
                oauth2(
                    &format!("/oauth/token?expires_in={expires_in}"),
                    "../secret",
                    ""
                )
            )
        };
        let (short, long) = (probe("short", 0), probe("long", 3600));
        let (_dir, rounds) = run_rounds(
            &config(&sb.base_url(), ""),
            &[("short.toml", &short), ("long.toml", &long)],
            4,
        )
        .await;
        for o in rounds.iter().flatten() {
            assert!(o.success, "{o:#?}");
        }
        assert_eq!(issued(sb.addr()).await, 4 + 1);
        sb.shutdown().await;
    })
    .await;
}

/// A target that refuses the token (a 401) fails the run without a retry,
/// and the next run fetches a new token: one fetch per run, no loop. The
/// target here is a second sandbox, which knows none of the first one's
/// tokens.
#[tokio::test]
async fn a_token_the_target_refuses_is_fetched_anew_by_the_next_run_only() {
    common::within(BOUND, async {
        let issuer = common::sandbox().await;
        let target = common::sandbox().await;
        let probe = format!(
            "name = \"refused\"\nenvironments = [\"target\"]\n\n[http]\nurl = \"/protected\"\n{}\n",
            oauth2(
                &format!("{}/oauth/token", issuer.base_url()),
                "../secret",
                ""
            )
        );
        let (_dir, rounds) =
            run_rounds(&config(&target.base_url(), ""), &[("p.toml", &probe)], 3).await;
        for o in rounds.iter().flatten() {
            assert_eq!(o.reason, Some(FailureReason::Status), "{o:#?}");
            assert_eq!(o.http.as_ref().unwrap().status, Some(401));
        }
        assert_eq!(issued(issuer.addr()).await, 3);
        issuer.shutdown().await;
        target.shutdown().await;
    })
    .await;
}

/// A wrong client secret: the run fails with reason `auth`, the message
/// names the token URL, the endpoint's status and its OAuth `error`, the
/// target is never asked, and the secret shows nowhere. An endpoint that
/// cannot be reached fails the same way, with the network's sentence.
#[tokio::test]
async fn a_refused_client_fails_the_run_with_reason_auth_naming_the_endpoint() {
    common::within(BOUND, async {
        let sb = common::sandbox().await;
        let wrong = format!(
            "name = \"wrong\"\nenvironments = [\"target\"]\n\n[http]\nurl = \"/protected\"\n{}\n",
            oauth2("/oauth/token", "../wrong", "")
        );
        let unreachable = format!(
            "name = \"unreachable\"\nenvironments = [\"target\"]\n\n[http]\nurl = \"/protected\"\n{}\n",
            oauth2("http://127.0.0.1:1/oauth/token", "../secret", "")
        );
        let flow = format!(
            "name = \"flow\"\nenvironments = [\"target\"]\n\n[[flow.steps]]\nname = \"first\"\nurl = \"/protected\"\n{}\n",
            oauth2("/oauth/token", "../wrong", "")
        );
        let (_dir, rounds) = run_rounds(
            &config(&sb.base_url(), ""),
            &[
                ("wrong.toml", &wrong),
                ("unreachable.toml", &unreachable),
                ("flow.toml", &flow),
            ],
            1,
        )
        .await;
        let outcomes = &rounds[0];
        let endpoint = format!("{}/oauth/token", sb.base_url());
        let wrong = by_name(outcomes, "wrong");
        assert_eq!(wrong.reason, Some(FailureReason::Auth), "{wrong:#?}");
        assert_eq!(
            wrong.error.as_deref(),
            Some(
                format!(
                    "the OAuth2 token endpoint {endpoint} answered 401 Unauthorized: invalid_client (client authentication failed)"
                )
                .as_str()
            )
        );
        assert!(wrong.http.is_none(), "the target was asked: {wrong:#?}");
        let unreachable = by_name(outcomes, "unreachable");
        assert_eq!(unreachable.reason, Some(FailureReason::Auth));
        let error = unreachable.error.as_deref().unwrap();
        assert!(
            error.starts_with("cannot get an OAuth2 token from http://127.0.0.1:1/oauth/token: "),
            "{error}"
        );
        let flow = by_name(outcomes, "flow");
        assert_eq!(flow.reason, Some(FailureReason::Auth), "{flow:#?}");
        assert_eq!(
            flow.error.as_deref(),
            Some(
                format!(
                    "step `first` failed: the OAuth2 token endpoint {endpoint} answered 401 Unauthorized: invalid_client (client authentication failed)"
                )
                .as_str()
            )
        );
        let shown = serde_json::to_string(outcomes).unwrap();
        assert!(!shown.contains(WRONG), "{shown}");
        // Nothing was issued to a client that could not authenticate.
        assert_eq!(issued(sb.addr()).await, 0);
        sb.shutdown().await;
    })
    .await;
}

/// The binary's JSON report and logs (at trace level) against the
/// built-in sandbox: a passing OAuth2 probe, one whose target echoes the
/// token it got (masked), and one with a wrong secret (reason `auth`).
/// Neither secret nor any issued token is printed.
#[test]
fn the_json_report_shows_no_secret_and_no_issued_token() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    std::fs::write(dir.path().join("wrong"), WRONG).unwrap();
    let config = format!(
        "[environments.sandbox]\nbase_url = \"builtin:sandbox\"\n{}\n",
        oauth2("/oauth/token", "secret", "\"read\"")
    );
    let passes = r#"name = "passes"
environments = ["sandbox"]

[http]
url = "/protected?scope=read"
"#;
    let echoed = r#"name = "echoed"
environments = ["sandbox"]

[http]
url = "/headers"
expect = ["json.authorization == 'x'", "body.contains('never-there')"]
"#;
    let wrong = format!(
        "name = \"wrong\"\nenvironments = [\"sandbox\"]\n\n[http]\nurl = \"/protected\"\n{}\n",
        oauth2("/oauth/token", "../wrong", "")
    );
    write_config(
        dir.path(),
        &config,
        &[
            ("passes.toml", passes),
            ("echoed.toml", echoed),
            ("wrong.toml", &wrong),
        ],
    );
    let run = synthmon(
        dir.path(),
        &[
            "--config",
            "config.toml",
            "--once",
            "--output",
            "json",
            "--artifacts",
            "artifacts",
        ],
        &[("SYNTHMON_LOG", "trace")],
    );
    run.assert_code(1);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let results = doc["results"].as_array().unwrap();
    let result = |name: &str| results.iter().find(|r| r["probe"] == name).unwrap();
    assert_eq!(result("passes")["success"], true, "{:#}", result("passes"));
    let echoed = result("echoed");
    let read = echoed["assertions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["expression"] == "json.authorization == 'x'")
        .unwrap();
    assert_eq!(
        read["actual"], "json.authorization = \"Bearer ***\"",
        "{echoed:#}"
    );
    let wrong = result("wrong");
    assert_eq!(wrong["reason"], "auth", "{wrong:#}");
    assert!(
        wrong["error"].as_str().unwrap().ends_with(
            "/oauth/token answered 401 Unauthorized: invalid_client (client authentication failed)"
        ),
        "{wrong:#}"
    );
    let mut outputs = vec![
        ("the report".to_owned(), run.stdout.clone()),
        ("the logs".to_owned(), run.stderr.clone()),
    ];
    for entry in walk(&dir.path().join("artifacts")) {
        let text = std::fs::read_to_string(&entry).unwrap();
        outputs.push((entry.display().to_string(), text));
    }
    assert!(outputs.len() > 2, "no artifact written");
    for (what, text) in &outputs {
        for secret in [
            SECRET,
            WRONG,
            "sandbox-token-",
            &synthmon::secret::base64(format!("sandbox-client:{SECRET}").as_bytes()),
            &synthmon::secret::base64(format!("sandbox-client:{WRONG}").as_bytes()),
        ] {
            assert!(!text.contains(secret), "`{secret}` in {what}:\n{text}");
        }
    }
    // A secret written in a file is read; one in clear would be warned about.
    assert!(!run.stderr.contains("written in clear"), "{}", run.stderr);
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A `stream` and a `websocket` probe carry the environment's OAuth2 token
/// too (checked by a server that lets in only a sandbox-issued bearer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_and_websocket_probes_carry_the_token() {
    use axum::extract::ws::{Message, WebSocketUpgrade};
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;
    common::within(BOUND, async {
        let sb = common::sandbox().await;
        let bearer = |headers: &HeaderMap| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("Bearer sandbox-token-"))
        };
        let app = axum::Router::new()
            .route(
                "/events",
                axum::routing::get(move |headers: HeaderMap| async move {
                    if !bearer(&headers) {
                        return StatusCode::UNAUTHORIZED.into_response();
                    }
                    (
                        [(header::CONTENT_TYPE, "text/event-stream")],
                        "id: 1\ndata: in\n\n",
                    )
                        .into_response()
                }),
            )
            .route(
                "/ws",
                axum::routing::get(move |headers: HeaderMap, ws: WebSocketUpgrade| async move {
                    if !bearer(&headers) {
                        return StatusCode::UNAUTHORIZED.into_response();
                    }
                    ws.on_upgrade(|mut socket| async move {
                        let _ = socket.send(Message::Text("in".into())).await;
                    })
                    .into_response()
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let env = oauth2(&format!("{}/oauth/token", sb.base_url()), "secret", "");
        let stream = r#"name = "events"
environments = ["target"]

[stream]
url = "/events"
min_events = 1
"#;
        let websocket = r#"name = "socket"
environments = ["target"]

[websocket]
url = "/ws"
messages = 1
close = false
expect = ["messages[0].text == 'in'"]
"#;
        let (_dir, rounds) = run_rounds(
            &config(&format!("http://{addr}"), &env),
            &[("events.toml", stream), ("socket.toml", websocket)],
            1,
        )
        .await;
        for o in &rounds[0] {
            assert!(o.success, "{o:#?}");
        }
        assert_eq!(issued(sb.addr()).await, 1);
        server.abort();
        sb.shutdown().await;
    })
    .await;
}

/// Two ways of setting Authorization in one table are located errors at
/// the later key, and so are a missing or malformed `oauth2` key; every
/// error is reported in one `check`.
#[test]
fn conflicting_or_incomplete_auth_is_a_located_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"[environments.e]
base_url = "http://127.0.0.1:9"
basic_auth = { user = "u", password = "${env:SYNTHMON_TEST_UNSET_NEVER}" }
oauth2 = { token_url = "ftp://auth.example/token", client_id = "c", client_secret = "${env:SYNTHMON_TEST_UNSET_NEVER}" }
"#;
    let header_and_bearer = r#"name = "header-and-bearer"
environments = ["e"]

[http]
url = "/x"
headers = { Authorization = "Bearer a-token" }
bearer_token = "${env:SYNTHMON_TEST_UNSET_NEVER}"
"#;
    let incomplete = r#"name = "incomplete"
environments = ["e"]

[[flow.steps]]
url = "/x"
bearer_token = "has space"
oauth2 = { client_id = "c", scopes = ["read", "bad scope"] }
"#;
    write_config(
        dir.path(),
        config,
        &[
            ("header-and-bearer.toml", header_and_bearer),
            ("incomplete.toml", incomplete),
        ],
    );
    let run = synthmon(dir.path(), &["--config", "config.toml", "check"], &[]);
    run.assert_code(2);
    let at = |text: &str, needle: &str| {
        let (line, column) = position_of(text, needle);
        format!("{line}:{column}")
    };
    let step = "flow.steps[0]";
    for expected in [
        format!(
            "config.toml:{}: error: environments.e.oauth2: `oauth2` and `basic_auth` both set the Authorization header: keep one",
            at(config, "oauth2")
        ),
        format!(
            "config.toml:{}: error: environments.e.oauth2.token_url: expected an http(s) URL like `https://auth.example.com/oauth/token`, or a path starting with `/` on the environment's base URL, found `ftp://auth.example/token`",
            at(config, "\"ftp:")
        ),
        format!(
            "probes/header-and-bearer.toml:{}: error: http.bearer_token: `bearer_token` and `http.headers.Authorization` both set the Authorization header: keep one",
            at(header_and_bearer, "bearer_token")
        ),
        format!(
            "probes/incomplete.toml:{}: error: {step}.oauth2: `oauth2` and `bearer_token` both set the Authorization header: keep one",
            at(incomplete, "oauth2")
        ),
        format!(
            "probes/incomplete.toml:{}: error: {step}.bearer_token: expected a bearer token of visible ASCII characters without spaces (RFC 6750)",
            at(incomplete, "\"has space\"")
        ),
        format!(
            "probes/incomplete.toml:{}: error: {step}.oauth2: missing required key `token_url`",
            at(incomplete, "oauth2")
        ),
        format!(
            "probes/incomplete.toml:{}: error: {step}.oauth2: missing required key `client_secret`",
            at(incomplete, "oauth2")
        ),
        format!(
            "probes/incomplete.toml:{}: error: {step}.oauth2.scopes[1]: expected a scope of visible ASCII characters without spaces, `\"` or `\\` (RFC 6749 §3.3), found `bad scope`",
            at(incomplete, "\"bad scope\"")
        ),
    ] {
        assert!(
            run.stderr.contains(&expected),
            "{expected}\nnot in\n{}",
            run.stderr
        );
    }
    // The unset secrets are reported too, by name.
    assert!(
        run.stderr.contains("SYNTHMON_TEST_UNSET_NEVER"),
        "{}",
        run.stderr
    );
}
