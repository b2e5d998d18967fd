//! The secret canary: one secret value set in every place a secret can live
//! — a probe's headers, `basic_auth` (and URL userinfo, which is refused),
//! `bearer_token`, an OAuth2 client secret (which the sandbox's token
//! endpoint refuses), an environment's headers and variables, the SMTP
//! password, the webhook's HMAC key and headers, the OTLP headers — and
//! then looked for, with its
//! base64 forms, in everything synthmon writes or sends elsewhere: logs at
//! every level (human and JSON), the human and JSON reports, error
//! messages (a probe fails on purpose, one cannot connect), `/metrics` of a
//! running daemon, the exported spans, the alert payloads (webhook
//! bodies, the email) and the failure artifacts (`--once --artifacts DIR`
//! and the daemon's state directory: requests, responses, bodies, flow
//! steps). The tokens the sandbox's OAuth2 endpoint issues (to a probe
//! whose target echoes the one it got) are looked for the same way. Real
//! servers on 127.0.0.1 throughout; the binary itself, `--once` and the
//! daemon.
//!
//! Not covered because they do not exist yet: JUnit and HTML reports and
//! the status page (SPEC §1 lists the status page among the outputs that
//! must never show a secret; add it here when it lands).

use crate::common;
use crate::email::{Behaviour, PASSWORD as SMTP_CANARY, USER as SMTP_USER, smtp_server};
use crate::otlp::grpc_receiver;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use common::{synthmon, write_config};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CANARY: &str = "canary-5e2d8b1f7a";

/// What the webhook receiver got: each request's headers and body.
type Hooks = Arc<Mutex<Vec<(String, String)>>>;

async fn hook_receiver() -> (String, Hooks) {
    let got: Hooks = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hook",
            post(
                |State(got): State<Hooks>, headers: HeaderMap, body: String| async move {
                    let headers = headers
                        .iter()
                        .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v.as_bytes())))
                        .collect::<Vec<_>>()
                        .join("\n");
                    got.lock().unwrap().push((headers, body));
                    "ok"
                },
            ),
        )
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), got)
}

fn config(otlp: &str, hook: &str, smtp_port: u16) -> String {
    format!(
        r#"[daemon]
state_dir = "state"
instance = "canary"

[telemetry]
otlp_endpoint = "{otlp}"
otlp_headers = {{ authorization = "Bearer ${{env:SYNTHMON_TEST_CANARY}}" }}

[environments.sb]
base_url = "builtin:sandbox"
headers = {{ X-Env-Token = "${{env:SYNTHMON_TEST_CANARY}}" }}
variables = {{ token = "${{env:SYNTHMON_TEST_CANARY}}" }}

[alerting]
group_wait = "0s"
default_receivers = ["hook", "mail"]

[alerting.receivers.hook]
url = "{hook}"
hmac_secret = "${{env:SYNTHMON_TEST_CANARY}}"
headers = {{ X-Hook-Token = "${{env:SYNTHMON_TEST_CANARY}}" }}

[alerting.receivers.mail]
type = "email"
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
tls = "none"
username = "{SMTP_USER}"
password = "${{env:SYNTHMON_TEST_SMTP_CANARY}}"
from = "Synthmon <synthmon@example.test>"
to = ["oncall@example.test"]
timeout = "5s"
"#
    )
}

/// Every probe runs every 2 s in the daemon and pages at its first failure.
const COMMON: &str = "schedule = \"every 2s\"\ntimeout = \"1500ms\"\nenvironments = [\"sb\"]\n\n[alert]\nfire_after = 1\n";

/// The probes that fail on purpose (all but `arrives`).
const FAILING: [&str; 7] = [
    "bearer",
    "basic",
    "unreachable",
    "flow",
    "bearer-token",
    "oauth2-refused",
    "oauth2-echo",
];

fn probes() -> Vec<(&'static str, String)> {
    vec![
        // Sends the canary in a header, a base64 header (the `b64` filter
        // over a variable), the query and the environment's header; fails,
        // so the report explains each echoed value.
        (
            "bearer.toml",
            format!(
                r#"name = "bearer"
{COMMON}
[http]
url = "/headers"
headers = {{ Authorization = "Bearer ${{env:SYNTHMON_TEST_CANARY}}", X-B64 = "{{{{ vars.token | b64 }}}}" }}
query = {{ key = "{{{{ vars.token }}}}" }}
expect = [
  "json.authorization == 'x'",
  "json['x-env-token'] == 'x'",
  "json['x-b64'] == 'x'",
  "body.contains('never-there')",
]
"#
            ),
        ),
        (
            "basic.toml",
            format!(
                r#"name = "basic"
{COMMON}
[http]
url = "/headers"
basic_auth = {{ user = "probe", password = "${{env:SYNTHMON_TEST_CANARY}}" }}
expect = ["json.authorization == 'x'"]
"#
            ),
        ),
        // Cannot connect: the error message names the URL the canary is in.
        (
            "unreachable.toml",
            format!(
                r#"name = "unreachable"
{COMMON}
[http]
url = "http://127.0.0.1:1/{{{{ vars.token }}}}?t={{{{ vars.token }}}}"
"#
            ),
        ),
        // A flow step posts the variable and a captured secret comes back.
        (
            "flow.toml",
            format!(
                r#"name = "flow"
{COMMON}
[[flow.steps]]
method = "POST"
url = "/echo"
json = {{ t = "{{{{ vars.token }}}}" }}
capture = {{ echoed = {{ from = "json.t", secret = true }} }}
expect = ["status == 200"]

[[flow.steps]]
url = "/status/500?e={{{{ vars.echoed }}}}"
"#
            ),
        ),
        // `bearer_token`, echoed by the target; fails, so the report
        // explains the echoed value.
        (
            "bearer-token.toml",
            format!(
                r#"name = "bearer-token"
{COMMON}
[http]
url = "/headers"
bearer_token = "${{env:SYNTHMON_TEST_CANARY}}"
expect = ["json.authorization == 'x'"]
"#
            ),
        ),
        // The canary as an OAuth2 client secret: the token endpoint refuses
        // it, and the run fails with reason `auth`.
        (
            "oauth2-refused.toml",
            format!(
                r#"name = "oauth2-refused"
{COMMON}
[http]
url = "/protected"
oauth2 = {{ token_url = "/oauth/token", client_id = "probe", client_secret = "${{env:SYNTHMON_TEST_CANARY}}" }}
"#
            ),
        ),
        // A token the endpoint issued, echoed by the target: it is a
        // secret too (`sandbox-token-…` is forbidden everywhere).
        (
            "oauth2-echo.toml",
            format!(
                r#"name = "oauth2-echo"
{COMMON}
[http]
url = "/headers"
oauth2 = {{ token_url = "/oauth/token", client_id = "sandbox-client", client_secret = "${{env:SYNTHMON_TEST_OAUTH_SECRET}}" }}
expect = ["json.authorization == 'x'", "body.contains('never-there')"]
"#
            ),
        ),
        // Passes only if the canary arrived: the outputs' silence about it
        // means something.
        (
            "arrives.toml",
            format!(
                r#"name = "arrives"
{COMMON}
[http]
url = "/headers"
expect = [
  "json['x-env-token'] == vars.token",
  "json['x-env-token'].startsWith('canary-')",
]
"#
            ),
        ),
    ]
}

/// The forms the canary must never take in an output.
fn forbidden() -> Vec<String> {
    let b64 = |s: &str| synthmon::secret::base64(s.as_bytes());
    vec![
        CANARY.to_owned(),
        b64(CANARY),
        b64(&format!("probe:{CANARY}")),
        SMTP_CANARY.to_owned(),
        b64(SMTP_CANARY),
        // Every token the sandbox's OAuth2 endpoint issues starts so.
        "sandbox-token-".to_owned(),
    ]
}

#[track_caller]
fn assert_clean(what: &str, text: &str) {
    for form in forbidden() {
        assert!(
            !text.contains(&form),
            "the canary leaked as `{form}` into {what}:\n{text}"
        );
    }
}

/// The daemon as a child process, its stderr collected.
struct DaemonChild {
    child: std::process::Child,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl DaemonChild {
    fn start(dir: &std::path::Path, envs: &[(&str, &str)]) -> DaemonChild {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_synthmon"));
        cmd.args([
            "run",
            "--config",
            "config.toml",
            "--set",
            "daemon.listen=127.0.0.1:0",
            "--set",
            "daemon.state_dir=state-daemon",
            "--log-format",
            "json",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("SYNTHMON") || k == "NOTIFY_SOCKET" || k.starts_with("WATCHDOG_") {
                cmd.env_remove(&k);
            }
        }
        cmd.env("NO_COLOR", "1");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log: Arc<Mutex<String>> = Arc::default();
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        DaemonChild {
            child,
            log,
            reader: Some(reader),
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The listener's address, once the daemon says it started.
    fn addr(&self, deadline: Instant) -> std::net::SocketAddr {
        loop {
            let log = self.log();
            let started = log.lines().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                (v["fields"]["message"] == "synthmon daemon started")
                    .then(|| v["fields"]["listen"].as_str().map(str::to_owned))
                    .flatten()
            });
            if let Some(addr) = started {
                return addr.parse().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not start:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the daemon and returns everything it logged.
    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.log()
    }
}

impl Drop for DaemonChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file under `dir` (recursively): its path and its text.
fn artifact_files(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(read) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in read {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(artifact_files(&path));
        } else {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path.display().to_string(), text));
        }
    }
    out
}

fn scrape(addr: std::net::SocketAddr) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_never_appears_in_any_output() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let (otlp, spans) = grpc_receiver().await;
        let (hook, hooks) = hook_receiver().await;
        let smtp = smtp_server(Behaviour::default()).await;
        let dir = tempfile::tempdir().unwrap();
        let files = probes();
        let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
        write_config(dir.path(), &config(&otlp, &hook, smtp.port), &files);
        let envs = [
            ("SYNTHMON_TEST_CANARY", CANARY),
            ("SYNTHMON_TEST_SMTP_CANARY", SMTP_CANARY),
            // The sandbox's OAuth2 test client's (not a canary: it must work).
            ("SYNTHMON_TEST_OAUTH_SECRET", "sandbox-secret"),
            ("SYNTHMON_LOG", "trace"),
        ];

        // --once, human report and human logs, then JSON report and JSON
        // logs; alerts sent through both receivers.
        let mut runs = Vec::new();
        for output in [
            &["--output", "human", "--log-format", "human"][..],
            &["--output", "json", "--log-format", "json"],
        ] {
            let path = dir.path().to_path_buf();
            let mut args = vec![
                "--config",
                "config.toml",
                "--once",
                "--alert",
                "--artifacts",
                "artifacts-once",
            ];
            args.extend_from_slice(output);
            let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
            let run = tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                common::synthmon_in(&path, &args, &envs, Duration::from_secs(60))
            })
            .await
            .unwrap();
            run.assert_code(1);
            runs.push(run);
        }
        let (human, json) = (&runs[0], &runs[1]);
        for run in &runs {
            assert_clean("the report", &run.stdout);
            assert_clean("the logs", &run.stderr);
            // Trace logging was on, and the alerts went out.
            assert!(run.stderr.lines().count() > 20, "{}", run.stderr);
            assert!(
                run.stderr.contains("alerts: 7 notification(s), 0 delivery(ies) still pending"),
                "{}",
                run.stderr
            );
        }
        // The canary was there to leak: sent, echoed, failed on, masked.
        let line = |name: &str| {
            human
                .stdout
                .lines()
                .find(|l| l.contains(&format!("{name} @ sb")))
                .unwrap_or_else(|| panic!("no {name} in\n{}", human.stdout))
                .to_owned()
        };
        assert!(line("arrives").starts_with("PASS"), "{}", human.stdout);
        for name in FAILING {
            assert!(line(name).starts_with("FAIL"), "{}", human.stdout);
        }
        for masked in [
            "json.authorization = \"Bearer ***\"",
            "json[\"x-env-token\"] = \"***\"",
            "json[\"x-b64\"] = \"***\"",
            "json.authorization = \"Basic ***\"",
        ] {
            assert!(human.stdout.contains(masked), "no `{masked}` in\n{}", human.stdout);
        }
        let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        let results = doc["results"].as_array().unwrap();
        let unreachable = results.iter().find(|r| r["probe"] == "unreachable").unwrap();
        assert_eq!(unreachable["reason"], "connect_refused", "{unreachable:#}");
        let url = unreachable["http"]["url"].as_str().unwrap();
        assert_eq!(url, "http://127.0.0.1:1/***?t=***", "{unreachable:#}");
        let refused = results.iter().find(|r| r["probe"] == "oauth2-refused").unwrap();
        assert_eq!(refused["reason"], "auth", "{refused:#}");
        let echo = results.iter().find(|r| r["probe"] == "oauth2-echo").unwrap();
        assert_eq!(echo["reason"], "assertion", "{echo:#}");

        // The failure artifacts: the requests sent (headers, URLs, bodies)
        // and the responses that echoed the canary back.
        let once_artifacts = artifact_files(&dir.path().join("artifacts-once"));
        for name in FAILING {
            assert!(
                once_artifacts.iter().any(|(p, _)| p.contains(&format!("/{name}/sb/"))),
                "no artifact of {name}: {once_artifacts:?}"
            );
        }
        assert!(!once_artifacts.iter().any(|(p, _)| p.contains("/arrives/")));
        for (path, text) in &once_artifacts {
            assert_clean(path, text);
        }
        let bearer = &once_artifacts
            .iter()
            .find(|(p, _)| p.contains("/bearer/sb/"))
            .unwrap()
            .1;
        assert!(bearer.contains("\"Bearer ***\""), "{bearer}");

        // The daemon: logs, /metrics, and its own alerts.
        let hooks_before = hooks.lock().unwrap().len();
        let daemon = {
            let dir = dir.path().to_path_buf();
            tokio::task::spawn_blocking(move || DaemonChild::start(&dir, &envs))
                .await
                .unwrap()
        };
        let metrics = {
            let started = Instant::now();
            let deadline = started + Duration::from_secs(30);
            let addr = daemon.addr(deadline);
            let hooks = hooks.clone();
            tokio::task::spawn_blocking(move || {
                loop {
                    let body = scrape(addr);
                    let ran = ["bearer", "basic", "unreachable", "flow", "arrives"]
                        .iter()
                        .all(|p| body.contains(&format!("probe_success{{probe=\"{p}\"")));
                    if ran && hooks.lock().unwrap().len() > hooks_before {
                        return body;
                    }
                    assert!(Instant::now() < deadline, "the daemon did not run and page:\n{body}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
            .await
            .unwrap()
        };
        // Let a second round run, so every run's logs are in.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let daemon_log = tokio::task::spawn_blocking(move || daemon.stop()).await.unwrap();
        assert_clean("/metrics", &metrics);
        assert!(metrics.contains("probe_success"), "{metrics}");
        assert_clean("the daemon's logs", &daemon_log);
        assert!(daemon_log.lines().count() > 20, "{daemon_log}");
        let daemon_artifacts = artifact_files(&dir.path().join("state-daemon/artifacts"));
        assert!(daemon_artifacts.len() >= 4, "{daemon_artifacts:?}");
        for (path, text) in &daemon_artifacts {
            assert_clean(path, text);
        }

        // Alert payloads: the webhook bodies and the emails. The webhook's
        // own header carries the canary on purpose (it was sent), and the
        // body is signed with it; the email authenticated with its own.
        let hooks = hooks.lock().unwrap().clone();
        assert!(hooks.len() > hooks_before && hooks_before >= 2, "{hooks:?}");
        for (headers, body) in &hooks {
            assert_clean("a webhook body", body);
            assert!(headers.contains(&format!("x-hook-token: {CANARY}")), "{headers}");
            assert!(headers.contains("x-synthmon-signature: sha256="), "{headers}");
        }
        let bodies: String = hooks.iter().map(|(_, b)| b.as_str()).collect();
        for name in FAILING {
            assert!(bodies.contains(&format!("\"probe\":\"{name}\"")), "{bodies}");
        }
        // `--once --alert --artifacts DIR` names each failed run's file.
        assert!(bodies.contains("artifacts-once/bearer/sb/"), "{bodies}");
        let sessions = smtp.sessions.lock().unwrap().clone();
        assert!(!sessions.is_empty(), "no email was sent");
        for session in &sessions {
            assert_eq!(session.auth.len(), 1, "{session:?}");
            assert_clean("an email", &session.data);
            assert!(session.data.contains("is failing"), "{}", session.data);
        }

        // Spans: every exported request, attributes and all. The export's
        // own header carries the canary on purpose (it was sent).
        let exported = spans.received();
        assert!(!exported.is_empty(), "no spans were exported");
        for r in &exported {
            assert_clean("the spans", &format!("{:?}", r.request));
            assert_eq!(
                r.headers.get("authorization").map(String::as_str),
                Some(format!("Bearer {CANARY}").as_str())
            );
        }

        // A config error about a secret's place never quotes it: credentials
        // in a URL are refused by `check`, the URL left out of the message.
        let bad = tempfile::tempdir().unwrap();
        let userinfo = "name = \"userinfo\"\nenvironments = [\"sb\"]\n\n[http]\nurl = \"https://probe:${env:SYNTHMON_TEST_CANARY}@example.com/\"\n";
        let invalid = "name = \"invalid\"\nenvironments = [\"sb\"]\n\n[http]\nurl = \"/\"\nheaders = { X-Bad = \"${env:SYNTHMON_TEST_CANARY}\\n\" }\n";
        write_config(
            bad.path(),
            &config(&otlp, &hook, smtp.port),
            &[("userinfo.toml", userinfo), ("invalid.toml", invalid)],
        );
        let path = bad.path().to_path_buf();
        let run = tokio::task::spawn_blocking(move || {
            synthmon(&path, &["--config", "config.toml", "check"], &envs)
        })
        .await
        .unwrap();
        run.assert_code(2);
        assert!(run.stderr.contains("the URL carries credentials"), "{}", run.stderr);
        assert!(run.stderr.contains("header value is not valid"), "{}", run.stderr);
        assert_clean("the config errors", &run.stderr);
        assert_clean("the config errors", &run.stdout);
    })
    .await
    .expect("the canary test timed out");
}
