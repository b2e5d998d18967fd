//! The alerting acceptance test, with the real binary and a real `kill -9`:
//!
//! A probe fails so an alert fires while the webhook receiver is down; the
//! daemon is killed with SIGKILL once the trigger sits in its outbox; the
//! receiver comes back and the daemon is restarted on the same config and
//! state directory: the receiver gets the trigger exactly once (the durable
//! outbox re-sends it; the restored engine does not page again). Then the
//! target recovers and the receiver gets exactly one resolve. Finally
//! SIGTERM stops the daemon with exit code 0.
//!
//! The target is an in-process sandbox with a fault rule injected over its
//! admin API; the receiver is an in-process axum server on a port chosen
//! up front and left closed (connection refused) until it is "back up".
//! Every wait polls against a deadline; the only fixed waits are the
//! windows in which nothing more may arrive. A Drop guard kills the daemon
//! however the test ends.

use crate::common;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use common::write_config;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often conditions are re-checked.
const POLL: Duration = Duration::from_millis(20);
/// The whole test must finish within this.
const BUDGET: Duration = Duration::from_secs(45);
/// How long a freshly spawned daemon may take to log that it started.
const START_DEADLINE: Duration = Duration::from_secs(15);
/// "Nothing more arrives" windows.
const QUIET: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------

/// Polls `cond` until it holds (true) or `deadline` passes (false).
fn wait_until(deadline: Instant, mut cond: impl FnMut() -> bool) -> bool {
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// A step's deadline: `timeout` from now, but never past the test's budget.
fn step(started: Instant, timeout: Duration) -> Instant {
    (Instant::now() + timeout).min(started + BUDGET)
}

// ---------------------------------------------------------------------------
// The daemon as a child process
// ---------------------------------------------------------------------------

/// A running `synthmon run`; its stderr (JSON log lines) is collected by a
/// reader thread. Killed on drop.
struct DaemonProc {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    raw: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl DaemonProc {
    fn spawn(config: &Path) -> DaemonProc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_synthmon"));
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .args(["--log-format", "json"])
            .current_dir(config.parent().unwrap())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars_os() {
            let k_str = k.to_string_lossy();
            if k_str.starts_with("SYNTHMON")
                || k_str == "NOTIFY_SOCKET"
                || k_str.starts_with("WATCHDOG_")
            {
                cmd.env_remove(&k);
            }
        }
        cmd.env("NO_COLOR", "1")
            .env("SYNTHMON_LOG", "synthmon=debug");
        let mut child = cmd.spawn().expect("spawn synthmon");
        let stderr = child.stderr.take().unwrap();
        let lines: Arc<Mutex<Vec<Value>>> = Arc::default();
        let raw: Arc<Mutex<Vec<String>>> = Arc::default();
        let (sink, raw_sink) = (lines.clone(), raw.clone());
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).split(b'\n') {
                let Ok(line) = line else { break };
                let text = String::from_utf8_lossy(&line).into_owned();
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_str(&text).unwrap_or(Value::Null));
                raw_sink.lock().unwrap().push(text);
            }
        });
        let d = DaemonProc {
            child,
            lines,
            raw,
            reader: Some(reader),
        };
        d.wait_line(
            Instant::now() + START_DEADLINE,
            "the daemon to start",
            |l| message(l) == "synthmon daemon started",
        );
        d
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Waits for a log line satisfying `pred`; returns it.
    fn wait_line(&self, deadline: Instant, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut found = None;
        let ok = wait_until(deadline, || {
            found = self.lines.lock().unwrap().iter().find(|l| pred(l)).cloned();
            found.is_some()
        });
        if !ok {
            self.fail(&format!("timed out waiting for {what}"));
        }
        found.unwrap()
    }

    fn count(&self, pred: impl Fn(&Value) -> bool) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| pred(l))
            .count()
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.pid()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} failed: {status}");
    }

    fn wait_exit(&mut self, deadline: Instant) -> ExitStatus {
        let mut status = None;
        let ok = wait_until(deadline, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        if !ok {
            self.fail("the daemon did not exit in time");
        }
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        status.unwrap()
    }

    fn log(&self) -> String {
        self.raw.lock().unwrap().join("\n")
    }

    fn fail(&self, msg: &str) -> ! {
        panic!("{msg}\n--- daemon stderr ---\n{}\n--- end ---", self.log());
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

fn message(l: &Value) -> &str {
    l["fields"]["message"].as_str().unwrap_or("")
}

fn field<'a>(l: &'a Value, key: &str) -> &'a str {
    l["fields"][key].as_str().unwrap_or("")
}

// ---------------------------------------------------------------------------
// The receiver and the sandbox's admin API
// ---------------------------------------------------------------------------

/// One body the receiver got: when, its `Idempotency-Key`, the JSON.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    key: String,
    body: Value,
}

type Inbox = Arc<Mutex<Vec<Received>>>;

/// A port on 127.0.0.1 with nothing listening on it (for now).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Starts the webhook receiver on exactly `port` (retrying the bind
/// briefly, in case something else grabbed the port meanwhile).
fn start_receiver(rt: &tokio::runtime::Runtime, port: u16, got: Inbox) {
    let app = axum::Router::new()
        .route(
            "/hook",
            post(
                |State(got): State<Inbox>, headers: HeaderMap, body: String| async move {
                    let key = headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
                    got.lock().unwrap().push(Received {
                        at: Instant::now(),
                        key,
                        body,
                    });
                    "ok"
                },
            ),
        )
        .with_state(got);
    let listener = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("binding the receiver to port {port}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot bind the receiver to port {port}: {e}"),
            }
        }
    });
    rt.spawn(async move { axum::serve(listener, app).await });
}

/// Every alert notice received so far, as (notice, probe).
fn notices(got: &Inbox) -> Vec<(String, String)> {
    got.lock()
        .unwrap()
        .iter()
        .flat_map(|r| r.body["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            (
                a["notice"].as_str().unwrap_or("?").to_owned(),
                a["probe"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

/// A blocking HTTP/1.1 request to the sandbox's fault admin API.
fn admin(sandbox: SocketAddr, method: &str, body: &str) {
    let mut s = TcpStream::connect_timeout(&sandbox, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    write!(
        s,
        "{method} /_sandbox/faults HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 20"), "{out}");
}

/// Pending deliveries for `receiver` in the outbox, read straight from the
/// SQLite file.
fn pending_rows(db: &Path, receiver: &str) -> Vec<(i64, String, i64)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(2)).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT id, batch, attempts FROM deliveries WHERE receiver = ?1 AND state = 'pending' ORDER BY id",
        )
        .unwrap();
    stmt.query_map([receiver], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

#[test]
fn kill_9_while_the_receiver_is_down_pages_exactly_once_and_resolves_once() {
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sandbox = rt.block_on(common::sandbox());
    let port = closed_port();
    let got: Inbox = Arc::default();

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
url = "http://127.0.0.1:{port}/hook"
timeout = "1s"
"#,
        sandbox.base_url()
    );
    let probe = r#"name = "api"
schedule = "every 1s"
timeout = "500ms"
environments = ["target"]

[alert]
fire_after = 2
resolve_after = 2
repeat_interval = "never"

[http]
url = "/health"
expect = ["status == 200"]
"#;
    let path = write_config(dir.path(), &config, &[("api.toml", probe)]);
    let db = dir.path().join("state").join("synthmon.sqlite");

    // 1. The target fails; the receiver is down. The trigger is committed
    //    to the outbox and its first delivery attempt fails.
    admin(
        sandbox.addr(),
        "POST",
        r#"{"path_prefix": "/health", "status": 500}"#,
    );
    let first = DaemonProc::spawn(&path);
    let failed = first.wait_line(
        step(started, Duration::from_secs(15)),
        "a failed delivery attempt to `hook`",
        |l| {
            message(l).starts_with("notification delivery failed, will retry")
                && field(l, "receiver") == "hook"
                && field(l, "receiver_kind") == "webhook"
        },
    );
    eprintln!(
        "[{:?}] first daemon: delivery to the downed receiver failed: {failed}",
        started.elapsed()
    );

    // 2. kill -9.
    first.signal("-9");
    let mut first = first;
    let status = first.wait_exit(step(started, Duration::from_secs(5)));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{status}"
    );
    let first_log = first.log();
    drop(first);
    assert!(
        got.lock().unwrap().is_empty(),
        "nothing can have been received while the receiver was down"
    );

    // What survived the kill: exactly one pending delivery, the trigger.
    let rows = pending_rows(&db, "hook");
    assert_eq!(
        rows.len(),
        1,
        "one pending delivery after kill -9: {rows:?}\n--- first daemon ---\n{first_log}"
    );
    let batch: Value = serde_json::from_str(&rows[0].1).unwrap();
    assert_eq!(batch[0]["notice"], "trigger", "{batch}");
    assert_eq!(batch[0]["probe"], "api", "{batch}");
    eprintln!(
        "[{:?}] after kill -9: pending row id={} attempts={}",
        started.elapsed(),
        rows[0].0,
        rows[0].2
    );

    // 3. The receiver comes back; the daemon restarts on the same state.
    start_receiver(&rt, port, got.clone());
    let mut second = DaemonProc::spawn(&path);
    let ok = wait_until(step(started, Duration::from_secs(10)), || {
        !got.lock().unwrap().is_empty()
    });
    if !ok {
        second.fail("timed out waiting for the trigger at the restarted receiver");
    }
    let trigger_at = got.lock().unwrap()[0].at;
    eprintln!(
        "[{:?}] trigger received after the restart",
        started.elapsed()
    );
    // Nothing else: the restarted engine knows the alert was announced.
    // It must have seen at least `fire_after` failing runs of its own (so
    // a fresh engine would have paged again) before the window closes.
    let failed_runs =
        |d: &DaemonProc| d.count(|l| message(l) == "run failed" && field(l, "probe") == "api");
    let ok = wait_until(step(started, Duration::from_secs(10)), || {
        failed_runs(&second) >= 2
    });
    if !ok {
        second.fail("the restarted daemon did not run the failing probe twice");
    }
    std::thread::sleep(QUIET);
    let n = notices(&got);
    if n != [("trigger".to_owned(), "api".to_owned())] {
        second.fail(&format!(
            "exactly one trigger across kill -9; received {n:?}"
        ));
    }
    let trigger = got.lock().unwrap()[0].clone();
    assert_eq!(trigger.body["version"], "1", "{}", trigger.body);
    assert_eq!(trigger.body["alerts"][0]["environment"], "target");
    assert!(
        !trigger.key.is_empty(),
        "the trigger carries an Idempotency-Key"
    );

    // 4. The target recovers: exactly one resolve.
    admin(sandbox.addr(), "DELETE", "");
    let recovered_at = Instant::now();
    let ok = wait_until(step(started, Duration::from_secs(10)), || {
        notices(&got).iter().any(|(notice, _)| notice == "resolve")
    });
    if !ok {
        second.fail(&format!(
            "timed out waiting for the resolve; received {:?}",
            notices(&got)
        ));
    }
    eprintln!(
        "[{:?}] resolve received {:?} after the recovery",
        started.elapsed(),
        Instant::now() - recovered_at
    );
    std::thread::sleep(QUIET);
    let n = notices(&got);
    let expected = [
        ("trigger".to_owned(), "api".to_owned()),
        ("resolve".to_owned(), "api".to_owned()),
    ];
    if n != expected {
        second.fail(&format!("one trigger, then one resolve; received {n:?}"));
    }
    let bodies = got.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_ne!(bodies[0].key, bodies[1].key, "distinct idempotency keys");
    assert!(bodies[1].at > trigger_at);
    assert!(
        pending_rows(&db, "hook").is_empty(),
        "nothing left pending in the outbox"
    );

    // 5. SIGTERM: a clean exit.
    second.signal("-TERM");
    let status = second.wait_exit(step(started, Duration::from_secs(10)));
    if status.code() != Some(0) {
        second.fail(&format!("SIGTERM should exit 0, got {status}"));
    }
    rt.block_on(sandbox.shutdown());
    assert!(
        started.elapsed() < BUDGET,
        "the test took {:?}",
        started.elapsed()
    );
    eprintln!("[{:?}] done", started.elapsed());
}
