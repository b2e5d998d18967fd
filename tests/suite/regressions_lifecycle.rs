//! Regression tests for the reliability issue's lifecycle defects, each
//! named after the bug it pins:
//!
//! - `--once` on SIGINT/SIGTERM exited at once with no teardown and no
//!   output (an interrupted order flow left its orders on the target);
//! - (more below as they are fixed).
//!
//! The `--once` tests run the real binary against a sandbox of the test's
//! own (so the test can count the orders left behind) and signal it with
//! `kill`, as a terminal or a CI runner would.

use crate::common::{self, http_request, sandbox, write_config};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A flow that creates an order, then waits on a slow step (10 s) that
/// the signal interrupts; its teardown deletes the order.
const SLOW_ORDER_FLOW: &str = r#"name = "slow-order"
environments = ["target"]
timeout = "20s"

[[flow.steps]]
name = "create"
method = "POST"
url = "/api/orders"
json = { item = "widget", quantity = 1 }
capture = { order_id = "json.id" }

[[flow.steps]]
name = "slow"
url = "/delay/10000"

[[flow.teardown]]
name = "delete"
method = "DELETE"
url = "/api/orders/{{ vars.order_id }}"
expect = ["status == 204"]
"#;

/// A probe that never starts its work in time: with `slow-order` it shows
/// that every pair gets a line in the partial report.
const PLAIN_PROBE: &str = r#"name = "plain"
environments = ["target"]
timeout = "20s"

[http]
url = "/delay/10000"
"#;

async fn order_count(sb: &synthmon::sandbox::Sandbox) -> u64 {
    let (status, body) = http_request(sb.addr(), "GET", "/api/orders", None).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["count"].as_u64().unwrap()
}

fn spawn_once(dir: &std::path::Path, extra: &[&str]) -> Child {
    let mut args = vec!["--once", "--config", "config.toml"];
    args.extend_from_slice(extra);
    Command::new(env!("CARGO_BIN_EXE_synthmon"))
        .args(&args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("SYNTHMON_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn kill(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} failed");
}

/// Waits (polling, off the async runtime's workers) until the child exits
/// or `bound` passes; returns its exit code, stdout and stderr.
async fn finish(mut child: Child, bound: Duration) -> (Option<i32>, String, String, Duration) {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > bound {
                let _ = child.kill();
                let _ = child.wait();
                panic!("synthmon --once did not exit within {bound:?} of the signal");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let (mut out, mut err) = (String::new(), String::new());
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status.code(), out, err, started.elapsed())
    })
    .await
    .unwrap()
}

/// Waits until the flow has created its order (so the signal lands while
/// the slow step is in flight).
async fn wait_for_an_order(sb: &synthmon::sandbox::Sandbox) {
    let started = Instant::now();
    while order_count(sb).await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the flow never created its order"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn interrupted_run(signal: &str, expected_code: i32) {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &common::config_with_target(&sb.base_url()),
        &[("a.toml", SLOW_ORDER_FLOW), ("b.toml", PLAIN_PROBE)],
    );
    let child = spawn_once(dir.path(), &["--output", "json"]);
    wait_for_an_order(&sb).await;
    kill(&child, signal);
    let (code, stdout, stderr, after_signal) = finish(child, Duration::from_secs(10)).await;
    assert_eq!(
        code,
        Some(expected_code),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // The teardown ran: nothing left on the target.
    assert_eq!(order_count(&sb).await, 0, "stderr:\n{stderr}");
    // Well before the slow step would have ended on its own.
    assert!(after_signal < Duration::from_secs(5), "{after_signal:?}");
    // The partial report: a JSON document with both runs, cancelled.
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}):\n{stdout}\nstderr:\n{stderr}"));
    let text = report.to_string();
    assert!(
        text.contains("slow-order") && text.contains("plain"),
        "{text}"
    );
    assert!(text.contains("\"cancelled\""), "{text}");
    assert!(
        text.contains("\"delete\""),
        "the teardown step is reported: {text}"
    );
    assert!(stderr.contains("partial"), "{stderr}");
    sb.shutdown().await;
}

#[tokio::test]
async fn once_on_sigint_runs_teardowns_prints_a_partial_report_and_exits_130() {
    interrupted_run("-INT", 130).await;
}

#[tokio::test]
async fn once_on_sigterm_runs_teardowns_prints_a_partial_report_and_exits_143() {
    interrupted_run("-TERM", 143).await;
}

/// A workload fast enough to be sent from threads of its own stops at a
/// Ctrl-C as one on the run's task does: its threads end, the run is
/// reported cancelled with what it sent, and the exit is prompt.
#[tokio::test]
async fn once_on_sigint_stops_a_sharded_workload_promptly() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let probe = r#"name = "fast"
environments = ["target"]
timeout = "5s"
schedule = "every 1m"

[workload]
duration = "30s"
rate = 4000
max_concurrency = 16

[http]
url = "/health"
"#;
    write_config(
        dir.path(),
        &common::config_with_target(&sb.base_url()),
        &[("a.toml", probe)],
    );
    let child = spawn_once(dir.path(), &["--output", "json"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    kill(&child, "-INT");
    let (code, stdout, stderr, after) = finish(child, Duration::from_secs(10)).await;
    let context = format!("after {after:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(code, Some(130), "{context}");
    assert!(after < Duration::from_secs(5), "{context}");
    let report: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("no JSON report ({e}): {context}"));
    let result = &report["results"][0];
    assert!(result.to_string().contains("\"cancelled\""), "{context}");
    let w = &result["workload"];
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(w["threads"], cpus.min(2) as u64, "{context}");
    // Stopped about 1.5 s into 30 s of arrivals.
    let sent = w["sent"].as_u64().unwrap();
    assert!(sent > 0 && sent < 60_000, "{context}");
    sb.shutdown().await;
}

#[tokio::test]
async fn a_second_ctrl_c_during_once_exits_at_once_without_waiting_for_teardowns() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    // The teardown itself is slow: only a second Ctrl-C gets out early.
    let flow = SLOW_ORDER_FLOW.replace(
        "method = \"DELETE\"\nurl = \"/api/orders/{{ vars.order_id }}\"",
        "url = \"/delay/10000\"",
    );
    let flow = flow.replace("expect = [\"status == 204\"]\n", "").replacen(
        "[[flow.steps]]",
        "[flow]\nteardown_timeout = \"15s\"\n\n[[flow.steps]]",
        1,
    );
    write_config(
        dir.path(),
        &common::config_with_target(&sb.base_url()),
        &[("a.toml", &flow)],
    );
    let child = spawn_once(dir.path(), &[]);
    wait_for_an_order(&sb).await;
    kill(&child, "-INT");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        Command::new("kill")
            .args(["-0", &child.id().to_string()])
            .status()
            .unwrap()
            .success(),
        "one Ctrl-C must wait for the slow teardown"
    );
    kill(&child, "-INT");
    let (code, stdout, stderr, after) = finish(child, Duration::from_secs(5)).await;
    let context = format!("after {after:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(code, Some(130), "{context}");
    assert!(after < Duration::from_secs(2), "{context}");
    assert!(stderr.contains("without waiting"), "{context}");
    sb.shutdown().await;
}
