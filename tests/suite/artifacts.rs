//! Failure artifacts (issue 16): a failed run leaves its redacted
//! request, response, timings and a flow's steps as a JSON file, in
//! `--artifacts DIR` for `--once` and in the state directory for the
//! daemon (bounded per pair, oldest dropped), listed and served by the
//! API, linked from the runs and from alerts. Real sandbox throughout.

use crate::common;

use axum::extract::State;
use axum::routing::post;
use common::write_config;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use synthmon::daemon::Daemon;

/// A secret, set in the environment and referenced as `${env:…}`.
const SECRET: &str = "art-secret-7c1f9e2b";

const ONCE_CONFIG: &str = "[environments.sb]\nbase_url = \"builtin:sandbox\"\n\
                           variables = { key = \"${env:SYNTHMON_TEST_ART_SECRET}\" }\n";

fn probes() -> Vec<(&'static str, String)> {
    let http = |name: &str, table: &str| {
        format!("name = \"{name}\"\nenvironments = [\"sb\"]\ntimeout = \"5s\"\n\n[http]\n{table}")
    };
    vec![
        // A 500 with a JSON body; credentials and the secret in headers.
        (
            "boom.toml",
            http(
                "boom",
                "url = \"/status/500\"\nheaders = { X-Api-Key = \"{{ vars.key }}\", \
                 Authorization = \"Bearer not-a-config-secret\", \
                 Cookie = \"session=abc123; theme=dark\" }\n",
            ),
        ),
        // The body echoes the secret back: masked there too.
        (
            "echo.toml",
            http(
                "echo",
                "url = \"/headers\"\nheaders = { X-Api-Key = \"{{ vars.key }}\" }\n\
                 expect = [\"json['x-api-key'] == 'nope'\"]\n",
            ),
        ),
        // 200 KiB: cut at 64 KiB.
        (
            "big.toml",
            http(
                "big",
                "url = \"/bytes/204800\"\nexpect = [\"body.size() < 10\"]\n",
            ),
        ),
        // Nothing answers: the request alone.
        (
            "down.toml",
            http("down", "url = \"http://127.0.0.1:1/x\"\n"),
        ),
        // Passes: no artifact.
        ("fine.toml", http("fine", "url = \"/health\"\n")),
        // A flow whose second step fails after the first captured.
        (
            "journey.toml",
            "name = \"journey\"\nenvironments = [\"sb\"]\ntimeout = \"5s\"\n\n\
             [[flow.steps]]\nname = \"create\"\nmethod = \"POST\"\nurl = \"/echo\"\n\
             json = { id = \"order-42\", token = \"{{ vars.key }}\" }\n\
             capture = { id = \"json.id\", token = { from = \"json.token\", secret = true } }\n\n\
             [[flow.steps]]\nname = \"fetch\"\nurl = \"/status/404?id={{ vars.id }}\"\n"
                .to_owned(),
        ),
    ]
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(read) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in read {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The one artifact of `probe` in `sb` under `root`, parsed.
fn only_artifact(root: &Path, probe: &str) -> Value {
    let files = files_under(&root.join(probe).join("sb"));
    assert_eq!(files.len(), 1, "{probe}: {files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.ends_with(".json") && name.matches('-').count() == 2,
        "{name}"
    );
    serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap()
}

fn header<'a>(headers: &'a Value, name: &str) -> Option<&'a str> {
    headers
        .as_array()?
        .iter()
        .find(|h| h[0] == name)
        .and_then(|h| h[1].as_str())
}

fn assert_no_secret(what: &str, text: &str) {
    for form in [
        SECRET.to_owned(),
        synthmon::secret::base64(SECRET.as_bytes()),
    ] {
        assert!(
            !text.contains(&form),
            "the secret leaked into {what}:\n{text}"
        );
    }
}

#[test]
fn once_with_artifacts_writes_one_file_per_failed_pair_with_the_exchange_masked() {
    let dir = tempfile::tempdir().unwrap();
    let files = probes();
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    write_config(dir.path(), ONCE_CONFIG, &files);
    let run = common::synthmon_in(
        dir.path(),
        &[
            "--config",
            "config.toml",
            "--once",
            "--artifacts",
            "out",
            "--output",
            "json",
        ],
        &[("SYNTHMON_TEST_ART_SECRET", SECRET)],
        Duration::from_secs(60),
    );
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("artifacts: 5 failed run(s) written under out"),
        "{}",
        run.stderr
    );
    let out = dir.path().join("out");
    // One file per failed pair, none for the passing one.
    assert!(!out.join("fine").exists());
    let all = files_under(&out);
    assert_eq!(all.len(), 5, "{all:?}");
    for f in &all {
        assert_no_secret(
            &f.display().to_string(),
            &std::fs::read_to_string(f).unwrap(),
        );
    }

    // The 500: request headers masked, the JSON body kept.
    let boom = only_artifact(&out, "boom");
    assert_eq!(boom["schema_version"], 1);
    let r = &boom["result"];
    assert_eq!(
        (r["probe"].as_str(), r["reason"].as_str()),
        (Some("boom"), Some("status"))
    );
    assert_eq!(r["trace_id"].as_str().unwrap().len(), 32);
    assert!(
        r["http"]["phases"]["processing"].as_f64().is_some(),
        "{r:#}"
    );
    let x = &r["artifact"]["exchange"];
    assert_eq!(x["request"]["method"], "GET");
    assert!(
        x["request"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/status/500")
    );
    let sent = &x["request"]["headers"];
    assert_eq!(header(sent, "x-api-key"), Some("***"), "{sent}");
    assert_eq!(header(sent, "authorization"), Some("Bearer ***"), "{sent}");
    assert_eq!(
        header(sent, "cookie"),
        Some("session=***; theme=***"),
        "{sent}"
    );
    assert!(header(sent, "traceparent").is_some(), "{sent}");
    let resp = &x["response"];
    assert_eq!(resp["status"], 500);
    assert_eq!(
        header(&resp["headers"], "content-type"),
        Some("application/json")
    );
    assert_eq!(resp["body"]["encoding"], "text");
    assert_eq!(resp["body"]["data"], "{\"status\":500}");
    assert_eq!(resp["body"]["truncated"], false);

    // The echo: the secret the body carried is masked in the excerpt.
    let echo = only_artifact(&out, "echo");
    let body = echo["result"]["artifact"]["exchange"]["response"]["body"]["data"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(body.contains("\"x-api-key\":\"***\""), "{body}");

    // 200 KiB: the first 64 KiB, flagged.
    let big = only_artifact(&out, "big");
    let b = &big["result"]["artifact"]["exchange"]["response"]["body"];
    assert_eq!(b["bytes"], 204_800);
    assert_eq!(b["truncated"], true);
    assert_eq!(b["data"].as_str().unwrap().len(), 64 * 1024);

    // Refused: the request, no response; the reason says why.
    let down = only_artifact(&out, "down");
    assert_eq!(down["result"]["reason"], "connect_refused");
    let x = &down["result"]["artifact"]["exchange"];
    assert_eq!(x["request"]["url"], "http://127.0.0.1:1/x");
    assert!(x["response"].is_null(), "{x:#}");

    // The flow: every step with its capture names (values masked), the
    // failed step's exchange.
    let journey = only_artifact(&out, "journey");
    let steps = journey["result"]["artifact"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{steps:#?}");
    assert_eq!(
        (steps[0]["name"].as_str(), steps[0]["success"].as_bool()),
        (Some("create"), Some(true))
    );
    let captures = steps[0]["captures"].as_array().unwrap();
    let by_name = |n: &str| captures.iter().find(|c| c["name"] == n).unwrap();
    assert_eq!(by_name("id")["value"], "***");
    assert_eq!(by_name("id")["type"], "string");
    assert_eq!(by_name("id")["length"], 8);
    assert_eq!(by_name("token")["value"], "***");
    assert!(
        steps[0].get("exchange").is_none(),
        "a passed step keeps none"
    );
    assert_eq!(
        (steps[1]["name"].as_str(), steps[1]["success"].as_bool()),
        (Some("fetch"), Some(false))
    );
    let x = &steps[1]["exchange"];
    assert!(
        x["request"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/status/404?id=order-42"),
        "{x:#}"
    );
    assert_eq!(x["response"]["status"], 404);

    // The JSON report carries the same artifact inline, only for failures.
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    for result in doc["results"].as_array().unwrap() {
        let failed = result["success"] == false;
        assert_eq!(result.get("artifact").is_some(), failed, "{result:#}");
    }
    assert_no_secret("the JSON report", &run.stdout);

    // Without --artifacts nothing is written.
    let again = common::synthmon_in(
        dir.path(),
        &["--config", "config.toml", "--once", "--probe", "boom"],
        &[("SYNTHMON_TEST_ART_SECRET", SECRET)],
        Duration::from_secs(60),
    );
    again.assert_code(1);
    assert_eq!(files_under(&out).len(), 5);
}

/// What the webhook receiver got: each body.
type Hooks = Arc<Mutex<Vec<Value>>>;

async fn hook_receiver() -> (String, Hooks) {
    let got: Hooks = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hook",
            post(|State(got): State<Hooks>, body: String| async move {
                if let Ok(v) = serde_json::from_str(&body) {
                    got.lock().unwrap().push(v);
                }
                "ok"
            }),
        )
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), got)
}

/// GET `path`: the status and the body as JSON.
async fn get(d: &Daemon, path: &str) -> (u16, Value) {
    let (status, body) = common::http_request(d.addr(), "GET", path, None).await;
    let json = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("GET {path}: {status}, not JSON ({e}): {body}"));
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_keeps_the_newest_artifacts_per_pair_serves_them_and_links_them() {
    common::within(Duration::from_secs(60), async {
        let (hook, hooks) = hook_receiver().await;
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"state\"\n\
             public_url = \"https://synthmon.example.com/\"\n\n\
             [daemon.artifacts]\nkeep = 2\n\n\
             [environments.sb]\nbase_url = \"builtin:sandbox\"\n\n\
             [alerting]\ngroup_wait = \"0s\"\ndefault_receivers = [\"hook\"]\n\n\
             [alerting.receivers.hook]\nurl = \"{hook}\"\n"
        );
        let probe = |name: &str, url: &str| {
            format!(
                "name = \"{name}\"\nschedule = \"every 1s\"\ntimeout = \"900ms\"\n\
                 environments = [\"sb\"]\n\n[alert]\nfire_after = 1\n\n[http]\nurl = \"{url}\"\n"
            )
        };
        let path = write_config(
            dir.path(),
            &config,
            &[
                ("bad.toml", &probe("bad", "/status/503")),
                ("good.toml", &probe("good", "/health")),
            ],
        );
        let d = Daemon::start(common::quiet_daemon_options(path), None)
            .await
            .unwrap();

        // Runs go on; only the newest two artifacts stay.
        let deadline = Instant::now() + Duration::from_secs(30);
        let runs = loop {
            let (status, body) = get(&d, "/api/v1/probes/bad/sb/runs").await;
            assert_eq!(status, 200, "{body:#}");
            if body["runs"].as_array().map_or(0, Vec::len) >= 4 {
                break body;
            }
            assert!(Instant::now() < deadline, "too few runs: {body:#}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let root = dir.path().join("state/artifacts");
        let deadline = Instant::now() + Duration::from_secs(10);
        let listed = loop {
            let (status, body) = get(&d, "/api/v1/probes/bad/sb/artifacts").await;
            assert_eq!(status, 200, "{body:#}");
            if body["artifacts"].as_array().map_or(0, Vec::len) == 2 {
                break body;
            }
            assert!(Instant::now() < deadline, "{body:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            (listed["keep"].as_u64(), listed["max_bytes"].as_u64()),
            (Some(2), Some(2 * 1024 * 1024))
        );
        let kept = listed["artifacts"].as_array().unwrap();
        assert!(
            kept[0]["started_at"].as_str() > kept[1]["started_at"].as_str(),
            "newest first: {listed:#}"
        );
        assert!(files_under(&root.join("bad/sb")).len() <= 2);
        assert!(!root.join("good").exists(), "a passing pair keeps nothing");

        // The file, served by run id.
        let id = kept[0]["id"].as_str().unwrap();
        let url = kept[0]["url"].as_str().unwrap();
        assert_eq!(url, format!("/api/v1/artifacts/bad/sb/{id}"));
        let (status, doc) = get(&d, url).await;
        assert_eq!(status, 200, "{doc:#}");
        assert_eq!(doc["result"]["run_id"], id);
        assert_eq!(
            doc["result"]["artifact"]["exchange"]["response"]["status"],
            503
        );
        assert_eq!(kept[0]["reason"], "status");

        // Each run links its artifact while it is kept; older ones are null.
        let links: Vec<&Value> = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["artifact"])
            .collect();
        assert!(
            links.iter().all(|l| l.is_null()
                || l.as_str()
                    .is_some_and(|s| s.starts_with("/api/v1/artifacts/bad/sb/"))),
            "{runs:#}"
        );
        assert!(
            links.iter().any(|l| l.is_null()),
            "pruned runs link nothing: {runs:#}"
        );
        let (_, good) = get(&d, "/api/v1/probes/good/sb/runs").await;
        assert!(
            good["runs"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["artifact"].is_null()),
            "{good:#}"
        );

        // Errors: a pruned or unknown run, a bad id, an unknown probe.
        let (status, body) = get(&d, "/api/v1/artifacts/bad/sb/0123456789abcdef").await;
        assert_eq!(status, 404, "{body:#}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("no artifact of run"),
            "{body:#}"
        );
        let (status, body) = get(&d, "/api/v1/artifacts/bad/sb/..%2Fx").await;
        assert_eq!(status, 400, "{body:#}");
        let (status, _) = get(&d, "/api/v1/artifacts/nope/sb/0123").await;
        assert_eq!(status, 404);
        let (status, _) = get(&d, "/api/v1/probes/nope/sb/artifacts").await;
        assert_eq!(status, 404);

        // The alert links the failed run's artifact, absolute under
        // public_url.
        let deadline = Instant::now() + Duration::from_secs(15);
        let alert = loop {
            let found = hooks.lock().unwrap().iter().find_map(|b| {
                b["alerts"]
                    .as_array()?
                    .iter()
                    .find(|a| a["probe"] == "bad" && a["notice"] == "trigger")
                    .cloned()
            });
            if let Some(a) = found {
                break a;
            }
            assert!(Instant::now() < deadline, "no alert for bad");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let run_id = alert["run_id"].as_str().unwrap();
        assert_eq!(
            alert["artifact_url"],
            format!("https://synthmon.example.com/api/v1/artifacts/bad/sb/{run_id}"),
            "{alert:#}"
        );
        d.shutdown().await;
    })
    .await;
}

#[test]
fn emails_name_the_artifact() {
    let mut n = crate::email::notification("api");
    n.artifact_url = Some("https://synthmon.example.com/api/v1/artifacts/api/prod/ab12".into());
    let plain = synthmon::alert::email::plain_body(std::slice::from_ref(&n));
    assert!(
        plain.contains("Artifact: https://synthmon.example.com/api/v1/artifacts/api/prod/ab12"),
        "{plain}"
    );
    let html = synthmon::alert::email::html_body(std::slice::from_ref(&n));
    assert!(
        html.contains("<a href=\"https://synthmon.example.com/api/v1/artifacts/api/prod/ab12\">"),
        "{html}"
    );
    n.artifact_url = None;
    assert!(!synthmon::alert::email::plain_body(&[n]).contains("Artifact:"));
}

#[test]
fn public_url_must_be_an_http_url_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    for (value, message) in [
        (
            "synthmon.example.com",
            "expected the URL people reach this daemon at",
        ),
        (
            "https://u:p@synthmon.example.com",
            "without `user:password@`",
        ),
        ("https://synthmon.example.com/?x=1", "no query or fragment"),
    ] {
        write_config(
            dir.path(),
            &format!(
                "[daemon]\npublic_url = \"{value}\"\n\n[environments.sb]\nbase_url = \"builtin:sandbox\"\n"
            ),
            &[],
        );
        let run = common::synthmon(dir.path(), &["--config", "config.toml", "check"], &[]);
        run.assert_code(2);
        assert!(run.stderr.contains("daemon.public_url"), "{}", run.stderr);
        assert!(run.stderr.contains(message), "{value}: {}", run.stderr);
        assert!(!run.stderr.contains("u:p@"), "{}", run.stderr);
    }
}
