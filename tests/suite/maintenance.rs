//! Maintenance windows, silences and the connectivity self-check, end to
//! end with an in-process daemon, the sandbox (a fault injected on
//! `/health`) and a webhook receiver: nothing pages while a pair is held,
//! a pair still failing when its window closes pages once, a silence
//! survives a restart and ends through the API or the CLI, and while every
//! self-check target fails the runs say `monitor_offline` and only the one
//! "synthmon offline" alert goes out. The engine's exact rules (a failure
//! that ends inside a window never pages, …) are pinned on chosen times in
//! `src/alert/state/tests.rs`.

use crate::common;

use axum::extract::State;
use axum::routing::post;
use common::{http_request, quiet_daemon_options, synthmon, write_config};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use synthmon::daemon::Daemon;
use synthmon::sandbox::Sandbox;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Received = Arc<Mutex<Vec<Value>>>;

const TOKEN: &str = "t0ken-for-silences";

/// A webhook receiver on 127.0.0.1 that keeps every alert it is sent.
async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hook",
            post(|State(got): State<Received>, body: String| async move {
                let body: Value = serde_json::from_str(&body).unwrap();
                got.lock()
                    .unwrap()
                    .extend(body["alerts"].as_array().cloned().unwrap_or_default());
                "ok"
            }),
        )
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), got)
}

/// (notice, probe, kind) of every alert received so far.
fn notices(got: &Received) -> Vec<(String, String, String)> {
    got.lock()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["notice"].as_str().unwrap_or_default().to_owned(),
                a["probe"].as_str().unwrap_or_default().to_owned(),
                a["kind"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Makes the sandbox answer 500 on `/health`.
async fn break_health(sandbox: &Sandbox) {
    let mut s = tokio::net::TcpStream::connect(sandbox.addr())
        .await
        .unwrap();
    let body = r#"{"path_prefix": "/health", "status": 500}"#;
    let req = format!(
        "POST /_sandbox/faults HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 20"), "{out}");
}

/// Waits (up to `secs`) until `cond` holds, saying what it waited for.
async fn until(secs: u64, what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One request with the bearer token (or none); status and JSON body.
async fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.unwrap_or("");
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// The `api` pair as `/api/v1/probes` shows it.
async fn pair(addr: std::net::SocketAddr, token: Option<&str>) -> Value {
    let (status, body) = call(addr, "GET", "/api/v1/probes", None, token).await;
    assert_eq!(status, 200, "{body}");
    body["probes"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["probe"] == "api").cloned())
        .unwrap_or(Value::Null)
}

fn config(sandbox: &Sandbox, hook: &str, extra: &str) -> String {
    format!(
        r#"[daemon]
listen = "127.0.0.1:0"
state_dir = "state"
{extra}

[environments.target]
base_url = "{}"

[alerting]
group_wait = "100ms"
default_receivers = ["hook"]

[alerting.receivers.hook]
type = "webhook"
url = "{hook}"
timeout = "2s"
"#,
        sandbox.base_url()
    )
}

const PROBE: &str = "name = \"api\"\nschedule = \"every 1s\"\ntimeout = \"500ms\"\nenvironments = [\"target\"]\n[alert]\nfire_after = 1\nresolve_after = 1\n[http]\nurl = \"/health\"\nexpect = [\"status == 200\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pair_sends_nothing_in_its_window_and_pages_once_after_it() {
    common::within(Duration::from_secs(90), async {
        let sandbox = common::sandbox().await;
        break_health(&sandbox).await;
        let (hook, got) = receiver().await;
        let dir = tempfile::tempdir().unwrap();
        let now = chrono::Utc::now();
        let closes = now + chrono::TimeDelta::seconds(6);
        let window = format!(
            "\n[[maintenance]]\nname = \"deploy\"\nfrom = \"{}\"\nuntil = \"{}\"\nprobes = [\"api\"]\nenvironments = [\"target\"]\n",
            (now - chrono::TimeDelta::hours(1)).to_rfc3339(),
            closes.to_rfc3339()
        );
        let text = config(&sandbox, &hook, "") + &window;
        let path = write_config(dir.path(), &text, &[("api.toml", PROBE)]);
        let daemon = Daemon::start(quiet_daemon_options(path), None).await.unwrap();
        let addr = daemon.addr();

        // Failing, and shown in maintenance.
        until(20, "the pair failing in its window", async || {
            let p = pair(addr, None).await;
            p["state"] == "failing" && p["hold"]["kind"] == "maintenance"
        })
        .await;
        let p = pair(addr, None).await;
        assert_eq!(p["hold"]["name"], "deploy", "{p:#}");
        assert_eq!(p["hold"]["action"], "hold", "{p:#}");
        // Runs in the window are kept but not counted: no uptime yet.
        assert_eq!(p["uptime"]["24h"], Value::Null, "{p:#}");
        let (_, page) = {
            let (s, b) = http_request(addr, "GET", "/", None).await;
            (s, b)
        };
        assert!(page.contains(">maintenance</span>"), "the status page shows it");

        // The window closes while it still fails: one page, then.
        until(30, "the page after the window", async || {
            !notices(&got).is_empty()
        })
        .await;
        let first = got.lock().unwrap()[0].clone();
        assert_eq!(first["notice"], "trigger", "{first:#}");
        let at = chrono::DateTime::parse_from_rfc3339(first["at"].as_str().unwrap()).unwrap();
        assert!(at >= closes, "paged at {at}, inside the window (closes {closes})");
        // More runs, still failing: still one page.
        let runs = daemon.stats().runs;
        until(20, "three more runs", async || daemon.stats().runs >= runs + 3).await;
        assert_eq!(
            notices(&got),
            vec![("trigger".into(), "api".into(), "failing".into())]
        );
        until(20, "uptime counted after the window", async || {
            pair(addr, None).await["uptime"]["24h"] == 0.0
        })
        .await;
        daemon.shutdown().await;
        sandbox.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_silence_needs_a_configured_token() {
    common::within(Duration::from_secs(60), async {
        let sandbox = common::sandbox().await;
        let (hook, _) = receiver().await;
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(
            dir.path(),
            &config(&sandbox, &hook, ""),
            &[("api.toml", PROBE)],
        );
        let daemon = Daemon::start(quiet_daemon_options(path), None)
            .await
            .unwrap();
        let body = r#"{"probes": ["api"], "duration": "1h", "comment": "deploy"}"#;
        let (status, answer) =
            call(daemon.addr(), "POST", "/api/v1/silences", Some(body), None).await;
        assert_eq!(status, 403, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("[daemon] token"),
            "{answer}"
        );
        // Listing stays open like the rest of the API.
        let (status, answer) = call(daemon.addr(), "GET", "/api/v1/silences", None, None).await;
        assert_eq!(
            (status, answer["silences"].clone()),
            (200, serde_json::json!([]))
        );
        daemon.shutdown().await;
        sandbox.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_holds_alerts_across_a_restart_and_ends_through_the_cli_and_the_api() {
    common::within(Duration::from_secs(120), async {
        let sandbox = common::sandbox().await;
        let (hook, got) = receiver().await;
        let dir = tempfile::tempdir().unwrap();
        let text = config(&sandbox, &hook, &format!("token = \"{TOKEN}\""));
        let path = write_config(dir.path(), &text, &[("api.toml", PROBE)]);
        let daemon = Daemon::start(quiet_daemon_options(path.clone()), None).await.unwrap();
        let addr = daemon.addr();
        let url = format!("http://{addr}");

        // Without the token: refused by the listener.
        let body = r#"{"probes": ["api"], "duration": "1h", "comment": "deploy"}"#;
        let (status, _) = call(addr, "POST", "/api/v1/silences", Some(body), None).await;
        assert_eq!(status, 401);
        // No end, or an unknown probe: refused, said why.
        let (status, answer) = call(addr, "POST", "/api/v1/silences", Some(r#"{"probes": ["api"], "comment": "x"}"#), Some(TOKEN)).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains("needs an end"), "{answer}");
        let (status, answer) = call(addr, "POST", "/api/v1/silences", Some(r#"{"probes": ["apj"], "duration": "1h", "comment": "x"}"#), Some(TOKEN)).await;
        assert_eq!(status, 400, "{answer}");

        // Added with the CLI, then the target fails.
        let cwd = dir.path().to_path_buf();
        let added = tokio::task::spawn_blocking({
            let (cwd, url) = (cwd.clone(), url.clone());
            move || {
                synthmon(
                    &cwd,
                    &["silence", "add", "--probe", "api", "--for", "2h", "--comment", "deploy", "--url", &url],
                    &[("SYNTHMON_TOKEN", TOKEN)],
                )
            }
        })
        .await
        .unwrap();
        added.assert_code(0);
        let id = added
            .stdout
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_owned();
        break_health(&sandbox).await;
        until(20, "the silenced pair failing", async || {
            let p = pair(addr, Some(TOKEN)).await;
            p["state"] == "failing" && p["hold"]["kind"] == "silence"
        })
        .await;
        // Restart: the silence is read back from the history.
        daemon.shutdown().await;
        let daemon = Daemon::start(quiet_daemon_options(path), None).await.unwrap();
        let addr = daemon.addr();
        let url = format!("http://{addr}");
        let (_, listed) = call(addr, "GET", "/api/v1/silences", None, Some(TOKEN)).await;
        assert_eq!(listed["persistent"], true, "{listed}");
        assert_eq!(listed["silences"][0]["id"], id.as_str(), "{listed}");
        assert_eq!(listed["silences"][0]["state"], "active", "{listed}");
        let runs = daemon.stats().runs;
        until(20, "three runs after the restart", async || daemon.stats().runs >= runs + 3).await;
        assert_eq!(notices(&got), vec![], "nothing pages while silenced");

        // Expired with the CLI: the pair, still failing, pages.
        let expired = tokio::task::spawn_blocking({
            let (cwd, url, id) = (cwd.clone(), url.clone(), id.clone());
            move || {
                synthmon(
                    &cwd,
                    &["silence", "expire", &id, "--url", &url, "--token", TOKEN],
                    &[],
                )
            }
        })
        .await
        .unwrap();
        expired.assert_code(0);
        until(20, "the page after the silence", async || {
            notices(&got).contains(&("trigger".into(), "api".into(), "failing".into()))
        })
        .await;
        let listed = tokio::task::spawn_blocking({
            let (cwd, url) = (cwd.clone(), url.clone());
            move || synthmon(&cwd, &["silence", "list", "--url", &url, "--token", TOKEN], &[])
        })
        .await
        .unwrap();
        listed.assert_code(0);
        assert!(listed.stdout.contains(&id) && listed.stdout.contains("expired"), "{}", listed.stdout);

        // Added and expired through the API.
        let body = r#"{"environments": ["target"], "duration": "30m", "comment": "db failover", "created_by": "ops"}"#;
        let (status, made) = call(addr, "POST", "/api/v1/silences", Some(body), Some(TOKEN)).await;
        assert_eq!(status, 201, "{made}");
        assert_eq!(made["state"], "active");
        let path = format!("/api/v1/silences/{}", made["id"].as_str().unwrap());
        let (status, gone) = call(addr, "DELETE", &path, None, Some(TOKEN)).await;
        assert_eq!((status, gone["state"].as_str()), (200, Some("expired")), "{gone}");
        let (status, _) = call(addr, "DELETE", "/api/v1/silences/nope", None, Some(TOKEN)).await;
        assert_eq!(status, 404);
        daemon.shutdown().await;
        sandbox.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_monitor_is_offline_runs_say_so_and_only_the_offline_alert_pages() {
    common::within(Duration::from_secs(90), async {
        let sandbox = common::sandbox().await;
        break_health(&sandbox).await;
        let (hook, got) = receiver().await;
        // A self-check target on a port where nothing listens (yet).
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let check = closed.local_addr().unwrap();
        drop(closed);
        let dir = tempfile::tempdir().unwrap();
        let extra = format!(
            "location = \"lab\"\nself_check = {{ targets = [\"{check}\"], every = \"1s\", timeout = \"500ms\" }}"
        );
        let path = write_config(dir.path(), &config(&sandbox, &hook, &extra), &[("api.toml", PROBE)]);
        let daemon = Daemon::start(quiet_daemon_options(path), None).await.unwrap();
        let addr = daemon.addr();

        until(20, "the offline alert", async || {
            notices(&got).contains(&("trigger".into(), "synthmon".into(), "monitor_offline".into()))
        })
        .await;
        until(20, "a run reported as monitor_offline", async || {
            pair(addr, None).await["last_run"]["reason"] == "monitor_offline"
        })
        .await;
        let p = pair(addr, None).await;
        assert_eq!(p["uptime"]["24h"], Value::Null, "offline runs are not counted: {p:#}");
        let (_, metrics) = http_request(addr, "GET", "/metrics", None).await;
        assert!(metrics.contains("synthmon_self_check_up 0"), "{metrics}");
        let runs = daemon.stats().runs;
        until(20, "three runs while offline", async || daemon.stats().runs >= runs + 3).await;
        assert!(
            notices(&got).iter().all(|(_, probe, _)| probe == "synthmon"),
            "no per-probe page while offline: {:?}",
            notices(&got)
        );

        // The network is back: the offline alert resolves, and the target's
        // own failure pages with its own reason.
        let back = tokio::net::TcpListener::bind(check).await.unwrap();
        let accept = tokio::spawn(async move {
            while let Ok((_conn, _)) = back.accept().await {}
        });
        until(20, "the offline alert's resolve", async || {
            notices(&got).contains(&("resolve".into(), "synthmon".into(), "monitor_offline".into()))
        })
        .await;
        until(20, "the probe's own page", async || {
            notices(&got).contains(&("trigger".into(), "api".into(), "failing".into()))
        })
        .await;
        let alerts = got.lock().unwrap().clone();
        let page = alerts.iter().find(|a| a["probe"] == "api").unwrap();
        assert_eq!(page["reason"], "assertion", "{page:#}");
        let offline = alerts.iter().filter(|a| a["probe"] == "synthmon" && a["notice"] == "trigger").count();
        assert_eq!(offline, 1, "one offline alert");
        let (_, metrics) = http_request(addr, "GET", "/metrics", None).await;
        assert!(metrics.contains("synthmon_self_check_up 1"), "{metrics}");
        daemon.shutdown().await;
        accept.abort();
        sandbox.shutdown().await;
    })
    .await;
}

#[test]
fn maintenance_and_self_check_errors_are_located_and_all_reported() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[daemon]\nself_check = { targets = [\"no-port\"], every = \"30s\" }\n\n[environments.target]\nbase_url = \"http://127.0.0.1:9\"\n\n[[maintenance]]\nname = \"nightly\"\ncron = \"0 61 * * *\"\n\n[[maintenance]]\nname = \"once\"\nfrom = \"2025-06-01T02:00:00Z\"\nuntil = \"yesterday\"\nenvironments = [\"prod\"]\naction = \"pause\"\n";
    let path = write_config(dir.path(), text, &[("api.toml", PROBE)]);
    let run = synthmon(
        dir.path(),
        &["--config", path.to_str().unwrap(), "check"],
        &[],
    );
    run.assert_code(2);
    for expected in [
        "daemon.self_check.targets[0]",
        "maintenance[0].cron",
        "missing required key `duration`",
        "maintenance[1].until",
        "maintenance[1].environments[0]",
        "unknown environment `prod`",
        "maintenance[1].action",
    ] {
        assert!(
            run.stderr.contains(expected),
            "{expected} missing from:\n{}",
            run.stderr
        );
    }
    assert!(
        run.stderr.contains("config.toml:9:"),
        "located at the cron line:\n{}",
        run.stderr
    );
}
