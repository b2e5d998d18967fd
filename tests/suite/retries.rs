//! Retries before failure (issue 18, item 5) against the real sandbox on
//! 127.0.0.1, its faults injected over `/_sandbox/faults` (a rule with
//! `remaining = 1` fails only the first request it matches): a first try
//! answered 500 and a second 200 passes *flaky* with two attempts, in the
//! outcome, every report, the history row and `/metrics`; a target that
//! fails every try fails with the last try's reason; a probe without
//! `retries` is not retried; a flow is retried whole, its teardown after
//! every try; and the load-time checks, each error located.

use crate::common;

use common::{http_request, load, position_of, run_one, synthmon, write_config};
use serde_json::Value;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};
use synthmon::daemon::Daemon;
use synthmon::outcome::{FailureReason, Outcome};
use synthmon::sandbox::{Sandbox, SandboxOptions};

const BOUND: Duration = Duration::from_secs(30);

async fn bounded<F: Future>(f: F) -> F::Output {
    common::within(BOUND, f).await
}

async fn sandbox() -> Sandbox {
    Sandbox::start("127.0.0.1:0".parse().unwrap(), SandboxOptions::default())
        .await
        .unwrap()
}

/// Adds a fault rule to the sandbox.
async fn fault(sb: &Sandbox, rule: &str) {
    let (status, body) = http_request(sb.addr(), "POST", "/_sandbox/faults", Some(rule)).await;
    assert_eq!(status, 201, "{body}");
}

/// The first request to `/health` answers 500, the next ones 200.
const FIRST_500: &str = r#"{"path_prefix": "/health", "status": 500, "remaining": 1}"#;

fn config_for(sb: &Sandbox) -> String {
    format!(
        "[daemon]\nprobes = [\"probes/*.toml\"]\n\n[environments.sandbox]\nbase_url = \"{}\"\n",
        sb.base_url()
    )
}

/// An http probe of `/health` with `extra` common keys.
fn health_probe(extra: &str) -> String {
    format!(
        "name = \"health\"\nschedule = \"every 30s\"\ntimeout = \"2s\"\nenvironments = [\"sandbox\"]\n{extra}\n\n[http]\nurl = \"/health\"\n"
    )
}

/// Loads `probe` against `sb` and runs it once, as `--once` does.
async fn run_probe(sb: &Sandbox, probe: &str) -> (Outcome, std::sync::Arc<synthmon::plan::Config>) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config_for(sb), &[("p.toml", probe)]);
    let config = load(&path);
    (run_one(&config).await, config)
}

#[tokio::test]
async fn a_500_then_a_200_passes_flaky_after_two_attempts_and_every_report_says_so() {
    bounded(async {
        let sb = sandbox().await;
        fault(&sb, FIRST_500).await;
        let probe = health_probe("retries = { attempts = 2, backoff = \"10ms\" }");
        let (o, config) = run_probe(&sb, &probe).await;

        // The outcome: a pass, flaky, two tries; the first one's failure kept.
        assert!(o.success && o.passed(), "{o:#?}");
        assert!(o.flaky, "{o:#?}");
        assert_eq!(o.attempts, 2);
        assert_eq!(o.http.as_ref().unwrap().status, Some(200));
        assert_eq!(o.retried.len(), 1, "{o:#?}");
        let first = &o.retried[0];
        assert_eq!(first.attempt, 1);
        assert_eq!(first.reason, Some(FailureReason::Status));
        assert_eq!(first.status, Some(500));
        assert!(first.error.is_some(), "{first:#?}");
        // Each try is a run of its own for the target's traces.
        assert_ne!(first.run_id, o.run_id);
        assert_ne!(first.trace_id, o.trace_id);

        // The terminal report: a pass that names the retry.
        let human = synthmon::report::human::render(std::slice::from_ref(&o), false);
        assert!(human.starts_with("PASS  health @ sandbox  200"), "{human}");
        assert!(
            human.contains("\n      flaky: 1 retry, first attempt: status\n"),
            "{human}"
        );
        assert!(human.contains("\n        attempt 1: status: "), "{human}");
        assert!(human.contains("(HTTP 500, "), "{human}");
        assert!(human.contains("1 passed (1 flaky), 0 failed"), "{human}");

        // JSON: fields added, none renamed.
        let json: Value =
            serde_json::from_str(&synthmon::report::json::render(std::slice::from_ref(&o)))
                .unwrap();
        let r = &json["results"][0];
        assert_eq!(r["success"], true);
        assert_eq!(r["attempts"], 2);
        assert_eq!(r["flaky"], true);
        assert_eq!(r["retried"][0]["attempt"], 1);
        assert_eq!(r["retried"][0]["reason"], "status");
        assert_eq!(r["retried"][0]["status"], 500);
        assert!(r["retried"][0]["duration"].is_f64(), "{r:#}");
        assert_eq!(json["summary"]["flaky"], 1);
        assert_eq!(json["summary"]["passed"], 1);

        // JUnit: a passed case with the tries as properties and output.
        let links = synthmon::report::ArtifactLinks::new();
        let junit = synthmon::report::junit::render(std::slice::from_ref(&o), None, &links);
        assert!(junit.contains("failures=\"0\""), "{junit}");
        assert!(
            junit.contains("<property name=\"attempts\" value=\"2\"/>"),
            "{junit}"
        );
        assert!(
            junit.contains("<property name=\"flaky\" value=\"true\"/>"),
            "{junit}"
        );
        assert!(
            junit.contains(
                "attempts: 2 (flaky: 1 retry, first attempt: status)\nattempt 1: status: "
            ),
            "{junit}"
        );

        // HTML: the run's section and the overview row say it.
        let html = synthmon::report::html::render(std::slice::from_ref(&o), None, &links);
        assert!(
            html.contains("<div class=\"tries flaky\" data-flaky=\"true\">"),
            "{html}"
        );
        assert!(html.contains("<dd class=\"attempts\">2</dd>"), "{html}");
        assert!(
            html.contains("flaky: 1 retry, first attempt: status</td>"),
            "{html}"
        );

        // The history row holds the real number of tries.
        let entry = synthmon::history::entry_of(&o);
        assert_eq!(entry.runs[0].attempts, 2);

        // `/metrics` as the daemon renders it: counted flaky, and a success.
        let metrics = synthmon::telemetry::metrics::Metrics::new(&config.daemon, &config.probes);
        let before = metrics.render(0);
        assert!(
            before
                .contains("synthmon_probe_flaky_total{probe=\"health\",environment=\"sandbox\"} 0"),
            "{before}"
        );
        metrics.record(&o);
        let after = metrics.render(0);
        assert!(
            after
                .contains("synthmon_probe_flaky_total{probe=\"health\",environment=\"sandbox\"} 1"),
            "{after}"
        );
        assert!(
            after.contains("probe_success{probe=\"health\",environment=\"sandbox\"} 1"),
            "{after}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_target_failing_every_try_fails_after_three_attempts_with_the_last_reason() {
    bounded(async {
        let sb = sandbox().await;
        // 503 twice, then 500 for good.
        fault(
            &sb,
            r#"{"path_prefix": "/health", "status": 503, "remaining": 2}"#,
        )
        .await;
        fault(&sb, r#"{"path_prefix": "/health", "status": 500}"#).await;
        let probe = health_probe("retries = { attempts = 2, backoff = \"10ms\" }");
        let (o, _) = run_probe(&sb, &probe).await;
        assert!(!o.success && !o.flaky, "{o:#?}");
        assert_eq!(o.attempts, 3);
        assert_eq!(o.reason, Some(FailureReason::Status));
        // The outcome is the last try's: its 500, after the two 503s.
        assert_eq!(o.http.as_ref().unwrap().status, Some(500));
        let statuses: Vec<Option<u16>> = o.retried.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [Some(503), Some(503)]);
        let numbers: Vec<u32> = o.retried.iter().map(|a| a.attempt).collect();
        assert_eq!(numbers, [1, 2]);

        let human = synthmon::report::human::render(std::slice::from_ref(&o), false);
        assert!(human.starts_with("FAIL  health @ sandbox  500"), "{human}");
        assert!(human.contains("\n      failed all 3 attempts\n"), "{human}");
        assert!(human.contains("\n        attempt 2: status: "), "{human}");
        let links = synthmon::report::ArtifactLinks::new();
        let junit = synthmon::report::junit::render(std::slice::from_ref(&o), None, &links);
        assert!(junit.contains("<failure type=\"status\""), "{junit}");
        assert!(
            junit.contains("<property name=\"flaky\" value=\"false\"/>"),
            "{junit}"
        );
        assert_eq!(synthmon::history::entry_of(&o).runs[0].attempts, 3);
    })
    .await;
}

#[tokio::test]
async fn without_retries_a_failure_is_not_tried_again() {
    bounded(async {
        let sb = sandbox().await;
        fault(&sb, FIRST_500).await;
        // Without the table, and with `attempts = 0`: the same.
        for extra in ["", "retries = { attempts = 0 }"] {
            let (o, config) = run_probe(&sb, &health_probe(extra)).await;
            assert!(config.probes[0].retries.is_none(), "{extra}");
            if extra.is_empty() {
                assert!(!o.success, "{o:#?}");
                assert_eq!(o.reason, Some(FailureReason::Status));
            } else {
                // The rule was used up by the first run.
                assert!(o.success, "{o:#?}");
            }
            assert_eq!(o.attempts, 1);
            assert!(!o.flaky && o.retried.is_empty(), "{o:#?}");
            let json: Value = serde_json::to_value(&o).unwrap();
            assert_eq!(json["attempts"], 1);
            assert_eq!(json["flaky"], false);
            assert!(json.get("retried").is_none(), "{json:#}");
            let human = synthmon::report::human::render(std::slice::from_ref(&o), false);
            assert!(
                !human.contains("flaky") && !human.contains("attempt"),
                "{human}"
            );
        }
        // A probe without retries exports no flaky series.
        let (_, config) = run_probe(&sb, &health_probe("")).await;
        let metrics = synthmon::telemetry::metrics::Metrics::new(&config.daemon, &config.probes);
        assert!(!metrics.render(0).contains("synthmon_probe_flaky_total{"));
    })
    .await;
}

#[tokio::test]
async fn a_flow_is_retried_whole_with_its_teardown_after_every_try() {
    bounded(async {
        let sb = sandbox().await;
        // The `verify` step fails on the first try only.
        fault(
            &sb,
            r#"{"path_prefix": "/api/orders/", "status": 500, "remaining": 1, "step": "verify"}"#,
        )
        .await;
        let flow = "name = \"orders\"\nschedule = \"every 1m\"\ntimeout = \"5s\"\n\
                    environments = [\"sandbox\"]\nretries = { attempts = 1, backoff = \"10ms\" }\n\n\
                    [flow]\nteardown_timeout = \"2s\"\n\n\
                    [[flow.steps]]\nname = \"create\"\nmethod = \"POST\"\nurl = \"/api/orders\"\n\
                    json = { item = \"widget\", quantity = 1 }\nexpect = [\"status == 201\"]\n\
                    capture = { order_id = \"json.id\" }\n\n\
                    [[flow.steps]]\nname = \"verify\"\nurl = \"/api/orders/{{ vars.order_id }}\"\n\
                    expect = [\"status == 200\"]\n\n\
                    [[flow.teardown]]\nname = \"delete\"\nmethod = \"DELETE\"\n\
                    url = \"/api/orders/{{ vars.order_id }}\"\nexpect = [\"status == 204\"]\n";
        let (o, _) = run_probe(&sb, flow).await;
        assert!(o.success && o.flaky, "{o:#?}");
        assert_eq!(o.attempts, 2);
        // A step with expectations fails them: `assertion`.
        assert_eq!(o.retried[0].reason, Some(FailureReason::Assertion));
        // The steps are the last try's: all of them passed.
        let names: Vec<&str> = o.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["create", "verify", "delete"]);
        assert!(o.steps.iter().all(|s| s.success), "{o:#?}");
        // Both tries created an order and both teardowns deleted it.
        let (status, body) = http_request(sb.addr(), "GET", "/api/orders", None).await;
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["count"], 0, "an order was left behind: {body}");
    })
    .await;
}

/// `synthmon check` in `dir`: exits 2, each `(source, needle, message)` is
/// one error line of `probes/p.toml` located at `needle`, and nothing else.
fn check_fails_with(dir: &Path, expected: &[(&str, &str, &str)]) {
    let run = synthmon(dir, &["--config", "config.toml", "check"], &[]);
    run.assert_code(2);
    for (source, needle, message) in expected {
        let (line, column) = position_of(source, needle);
        let want = format!("probes/p.toml:{line}:{column}: error: {message}");
        assert!(
            run.stderr.lines().any(|l| l == want),
            "no line\n  {want}\nin\n{}",
            run.stderr
        );
    }
    let count = match expected.len() {
        1 => "1 error".to_owned(),
        n => format!("{n} errors"),
    };
    assert_eq!(
        run.stderr.lines().last(),
        Some(count.as_str()),
        "{}",
        run.stderr
    );
}

const CHECK_CONFIG: &str = "[daemon]\nprobes = [\"probes/*.toml\"]\n\n\
                            [environments.target]\nbase_url = \"http://127.0.0.1:9\"\n";

fn check_probe(extra: &str, tables: &str) -> String {
    format!(
        "name = \"p\"\nschedule = \"every 30s\"\ntimeout = \"5s\"\nenvironments = [\"target\"]\n{extra}\n\n{tables}"
    )
}

const HTTP: &str = "[http]\nurl = \"/\"\n";

#[test]
fn bad_retries_are_located_errors() {
    let table: &[(&str, &str, &str, &str)] = &[
        (
            "retries = { attempts = 7, backoff = \"1s\" }",
            HTTP,
            "7,",
            "retries.attempts: expected 0 to 5 tries after the first failed one, found 7",
        ),
        (
            "retries = { attempts = -1 }",
            HTTP,
            "-1",
            "retries.attempts: expected 0 to 5 tries after the first failed one, found -1",
        ),
        (
            "retries = { attempts = 1, backoff = \"soon\" }",
            HTTP,
            "\"soon\"",
            "retries.backoff: expected a duration like `5s`, found `soon` (expected number at 0)",
        ),
        (
            "retries = { backoff = \"1s\" }",
            HTTP,
            "retries = { backoff",
            "retries: missing required key `attempts`",
        ),
        (
            "retries = { attempts = 1, backof = \"1s\" }",
            HTTP,
            "backof",
            "retries.backof: unknown key `backof` (expected one of `attempts`, `backoff`)",
        ),
        // 6 tries of 5s and 5 backoffs of 1s: 35s, over the 30s interval.
        (
            "retries = { attempts = 5, backoff = \"1s\" }",
            HTTP,
            "{ attempts = 5",
            "retries: with its retries a run may take 35s (6 tries of up to 5s each and 5 backoffs of 1s), \
             which must be shorter than the time between runs (30s): lower `attempts`, `backoff` or `timeout`",
        ),
        // A flow's try may run its teardown past the timeout.
        (
            "retries = { attempts = 1, backoff = \"1s\" }",
            "[flow]\nteardown_timeout = \"10s\"\n\n[[flow.steps]]\nurl = \"/\"\n",
            "{ attempts = 1",
            "retries: with its retries a run may take 31s (2 tries of up to 15s each and 1 backoff of 1s), \
             which must be shorter than the time between runs (30s): lower `attempts`, `backoff` or `timeout`",
        ),
        (
            "retries = { attempts = 1 }",
            "[http]\nurl = \"/\"\n\n[workload]\nrate = 5\nrequests = 10\n",
            "{ attempts",
            "retries: `retries` does not apply to a probe with `[workload]`: a workload counts its failed requests \
             (its thresholds judge them) instead of trying them again",
        ),
    ];
    for (extra, tables, needle, message) in table {
        let dir = tempfile::tempdir().unwrap();
        let source = check_probe(extra, tables);
        write_config(dir.path(), CHECK_CONFIG, &[("p.toml", &source)]);
        check_fails_with(dir.path(), &[(&source, needle, message)]);
    }
}

#[test]
fn retries_that_fit_the_interval_load() {
    let dir = tempfile::tempdir().unwrap();
    // 3 tries of 5s and 2 backoffs of 1s: 17s, under the 30s interval.
    let source = check_probe("retries = { attempts = 2, backoff = \"1s\" }", HTTP);
    let path = write_config(dir.path(), CHECK_CONFIG, &[("p.toml", &source)]);
    let config = load(&path);
    let retries = config.probes[0].retries.unwrap();
    assert_eq!(retries.attempts, 2);
    assert_eq!(retries.backoff, Duration::from_secs(1));
    // The backoff defaults to a second.
    let source = check_probe("retries = { attempts = 1 }", HTTP);
    let path = write_config(dir.path(), CHECK_CONFIG, &[("p.toml", &source)]);
    assert_eq!(
        load(&path).probes[0].retries.unwrap().backoff,
        Duration::from_secs(1)
    );
}

/// The daemon: a run that passed on its second try is counted in
/// `synthmon_probe_flaky_total` and stored with `attempts = 2`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_counts_a_flaky_run_and_stores_its_attempts() {
    bounded(async {
        let sb = sandbox().await;
        fault(&sb, FIRST_500).await;
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"state\"\nprobes = [\"probes/*.toml\"]\n\n\
             [environments.sb]\nbase_url = \"{}\"\n",
            sb.base_url()
        );
        let probe = "name = \"flaky\"\nschedule = \"every 1s\"\ntimeout = \"300ms\"\n\
                     environments = [\"sb\"]\nretries = { attempts = 1, backoff = \"10ms\" }\n\n\
                     [http]\nurl = \"/health\"\n";
        let path = write_config(dir.path(), &config, &[("flaky.toml", probe)]);
        let d = Daemon::start(common::quiet_daemon_options(path), None)
            .await
            .unwrap();
        let flaky = "synthmon_probe_flaky_total{probe=\"flaky\",environment=\"sb\"} 1";
        let body = wait_for(&d, "/metrics", |b| b.contains(flaky)).await;
        assert!(
            body.contains("synthmon_runs_total{probe=\"flaky\",environment=\"sb\",result=\"success\",reason=\"\"}"),
            "{body}"
        );
        assert!(!body.contains("result=\"failure\""), "{body}");
        let runs = wait_for(&d, "/api/v1/probes/flaky/sb/runs", |b| {
            serde_json::from_str::<Value>(b).is_ok_and(|v| {
                v["runs"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["attempts"] == 2))
            })
        })
        .await;
        let v: Value = serde_json::from_str(&runs).unwrap();
        // The later runs passed at once: one try each.
        let attempts: Vec<u64> = v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["attempts"].as_u64())
            .collect();
        assert_eq!(attempts.iter().filter(|a| **a == 2).count(), 1, "{v:#}");
        assert!(attempts.iter().all(|a| *a == 1 || *a == 2), "{v:#}");
        d.shutdown().await;
    })
    .await;
}

/// GETs `path` from the daemon until its 200 body satisfies `pred`.
async fn wait_for(d: &Daemon, path: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = http_request(d.addr(), "GET", path, None).await;
        if status == 200 && pred(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting on GET {path}: {status}\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
