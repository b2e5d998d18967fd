//! Alerting end to end with an in-process daemon: a fault injected into a
//! real sandbox fires an alert to a real webhook receiver; the daemon is
//! restarted while the alert fires (no second page); the target recovers
//! (exactly one resolve).

use crate::common;

use axum::extract::State;
use axum::routing::post;
use common::{quiet_daemon_options, synthmon, write_config};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use synthmon::daemon::Daemon;
use synthmon::sandbox::Sandbox;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Received = Arc<Mutex<Vec<serde_json::Value>>>;

/// A webhook receiver on 127.0.0.1 that stores every JSON body.
async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hook",
            post(|State(got): State<Received>, body: String| async move {
                got.lock()
                    .unwrap()
                    .push(serde_json::from_str(&body).unwrap());
                "ok"
            }),
        )
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), got)
}

/// A raw HTTP/1.1 request to the sandbox's admin API.
async fn admin(sandbox: &Sandbox, method: &str, body: &str) {
    let mut s = tokio::net::TcpStream::connect(sandbox.addr())
        .await
        .unwrap();
    let req = format!(
        "{method} /_sandbox/faults HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 20"), "{out}");
}

/// Every alert notice received so far, as (notice, probe).
fn notices(got: &Received) -> Vec<(String, String)> {
    got.lock()
        .unwrap()
        .iter()
        .flat_map(|body| body["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            (
                a["notice"].as_str().unwrap().to_owned(),
                a["probe"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn wait_for(
    got: &Received,
    secs: u64,
    what: &str,
    pred: impl Fn(&[(String, String)]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if pred(&notices(got)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; received {:?}",
            notices(got)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_pages_once_across_a_restart_and_resolves_once() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let sandbox = common::sandbox().await;
        let (hook, got) = receiver().await;
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            r#"[daemon]
listen = "127.0.0.1:0"
state_dir = "state"

[environments.target]
base_url = "{}"

[alerting]
group_wait = "200ms"
default_receivers = ["hook"]

[alerting.receivers.hook]
type = "webhook"
url = "{hook}"
timeout = "2s"
"#,
            sandbox.base_url()
        );
        let probe = "name = \"api\"\nschedule = \"every 1s\"\ntimeout = \"500ms\"\nenvironments = [\"target\"]\n[alert]\nfire_after = 2\nresolve_after = 2\n[http]\nurl = \"/health\"\nexpect = [\"status == 200\"]\n";
        let path = write_config(dir.path(), &config, &[("api.toml", probe)]);

        admin(&sandbox, "POST", r#"{"path_prefix": "/health", "status": 500}"#).await;
        let daemon = Daemon::start(quiet_daemon_options(path.clone()), None).await.unwrap();
        wait_for(&got, 15, "the trigger", |n| {
            n.iter().any(|(notice, _)| notice == "trigger")
        })
        .await;
        daemon.shutdown().await;

        // Restarted while the target still fails: the alert is known to be
        // announced, so no second trigger.
        let daemon = Daemon::start(quiet_daemon_options(path), None).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            notices(&got),
            vec![("trigger".to_owned(), "api".to_owned())],
            "exactly one page across the restart"
        );

        admin(&sandbox, "DELETE", "").await;
        wait_for(&got, 15, "the resolve", |n| {
            n.iter().any(|(notice, _)| notice == "resolve")
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            notices(&got),
            vec![
                ("trigger".to_owned(), "api".to_owned()),
                ("resolve".to_owned(), "api".to_owned())
            ]
        );
        let body = got.lock().unwrap()[0].clone();
        assert_eq!(body["version"], "1");
        assert_eq!(body["alerts"][0]["environment"], "target");
        assert!(
            body["alerts"][0]["summary"].as_str().unwrap().contains("api @ target is failing"),
            "{body}"
        );
        daemon.shutdown().await;
        sandbox.shutdown().await;
    })
    .await
    .unwrap();
}

/// `--once --alert`: a failing probe's alert goes out at once (no history
/// in a one-shot run), a passing one sends nothing, and the report's exit
/// code is unchanged; without receivers `--alert` is a usage error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_with_alert_delivers_the_failures() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let (hook, got) = receiver().await;
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[daemon]\nstate_dir = \"state\"\n[environments.sb]\nbase_url = \"builtin:sandbox\"\n[alerting]\ndefault_receivers = [\"hook\"]\n[alerting.receivers.hook]\nurl = \"{hook}\"\n"
        );
        let bad = "name = \"bad\"\nenvironments = [\"sb\"]\n[http]\nurl = \"/status/500\"\n";
        let good = "name = \"good\"\nenvironments = [\"sb\"]\n[http]\nurl = \"/health\"\n";
        write_config(dir.path(), &config, &[("bad.toml", bad), ("good.toml", good)]);
        let path = dir.path().to_path_buf();
        let run = tokio::task::spawn_blocking(move || {
            synthmon(&path, &["--config", "config.toml", "--once", "--alert"], &[])
        })
        .await
        .unwrap();
        run.assert_code(1);
        assert!(run.stderr.contains("alerts: 1 notification(s), 0 delivery(ies) still pending"), "{}", run.stderr);
        assert_eq!(notices(&got), vec![("trigger".to_owned(), "bad".to_owned())]);

        // Without receivers, --alert cannot do what it says.
        let plain = tempfile::tempdir().unwrap();
        write_config(
            plain.path(),
            "[environments.sb]\nbase_url = \"builtin:sandbox\"\n",
            &[("good.toml", good)],
        );
        let path = plain.path().to_path_buf();
        let run = tokio::task::spawn_blocking(move || {
            synthmon(&path, &["--config", "config.toml", "--once", "--alert"], &[])
        })
        .await
        .unwrap();
        run.assert_code(2);
        assert!(run.stderr.contains("--alert needs receivers"), "{}", run.stderr);
    })
    .await
    .unwrap();
}

/// A webhook `template` renders the generic v1 document into the receiver's
/// own format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_template_shapes_the_webhook() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let (hook, got) = receiver().await;
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[daemon]\nstate_dir = \"state\"\n[environments.sb]\nbase_url = \"builtin:sandbox\"\n[alerting]\ndefault_receivers = [\"hook\"]\n[alerting.receivers.hook]\nurl = \"{hook}\"\ntemplate = '{{\"text\": \"{{{{ status }}}}: {{{{ alerts[0].summary }}}}\", \"alerts\": {{{{ alerts | tojson }}}}}}'\n"
        );
        let bad = "name = \"bad\"\nenvironments = [\"sb\"]\n[http]\nurl = \"/status/500\"\n";
        write_config(dir.path(), &config, &[("bad.toml", bad)]);
        let path = dir.path().to_path_buf();
        let run = tokio::task::spawn_blocking(move || {
            synthmon(&path, &["--config", "config.toml", "--once", "--alert"], &[])
        })
        .await
        .unwrap();
        run.assert_code(1);
        let bodies = got.lock().unwrap().clone();
        assert_eq!(bodies.len(), 1, "{bodies:?}");
        let text = bodies[0]["text"].as_str().unwrap();
        assert!(text.starts_with("firing: bad @ sb is failing"), "{text}");
        assert_eq!(bodies[0]["alerts"][0]["notice"], "trigger");
    })
    .await
    .unwrap();
}
