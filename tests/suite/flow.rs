//! Flow probes against the real sandbox on 127.0.0.1: the shipped
//! order-lifecycle example, step failures injected with the sandbox's fault
//! rules (matched on the `X-Synthetic-Step` header flows send), teardown
//! after a failure, a timeout and a shutdown, secret captures, and the
//! load-time checks.

use crate::common;

use common::{http_request, load, run_one, write_config};
use std::future::Future;
use std::time::{Duration, Instant};
use synthmon::outcome::{FailureReason, Outcome, Stage};
use synthmon::sandbox::{Sandbox, SandboxOptions};

const BOUND: Duration = Duration::from_secs(20);

async fn bounded<F: Future>(f: F) -> F::Output {
    common::within(BOUND, f).await
}

async fn sandbox() -> Sandbox {
    let opts = SandboxOptions {
        process_delay: Duration::from_millis(150),
        ..SandboxOptions::default()
    };
    Sandbox::start("127.0.0.1:0".parse().unwrap(), opts)
        .await
        .unwrap()
}

/// A config whose `sandbox` environment is the given sandbox, so the
/// shipped examples run unchanged.
fn config_for(sb: &Sandbox) -> String {
    format!(
        "[daemon]\nprobes = [\"probes/*.toml\"]\n\n[environments.sandbox]\nbase_url = \"{}\"\n",
        sb.base_url()
    )
}

fn example(name: &str) -> String {
    std::fs::read_to_string(common::repo().join("probes").join(name)).unwrap()
}

async fn run_flow(sb: &Sandbox, probe: &str) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config_for(sb), &[("flow.toml", probe)]);
    run_one(&load(&path)).await
}

async fn order_count(sb: &Sandbox) -> u64 {
    let (status, body) = http_request(sb.addr(), "GET", "/api/orders", None).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["count"].as_u64().unwrap()
}

async fn fault(sb: &Sandbox, rule: &str) {
    let (status, body) = http_request(sb.addr(), "POST", "/_sandbox/faults", Some(rule)).await;
    assert_eq!(status, 201, "{body}");
}

fn step<'a>(o: &'a Outcome, name: &str) -> &'a synthmon::outcome::StepOutcome {
    o.steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step `{name}` in {:#?}", o.steps))
}

#[tokio::test]
async fn the_order_lifecycle_example_passes_and_leaves_no_order_behind() {
    bounded(async {
        let sb = sandbox().await;
        let o = run_flow(&sb, &example("order-lifecycle.toml")).await;
        assert!(o.success, "{o:#?}");
        let names: Vec<&str> = o.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["create", "wait-processed", "verify", "delete"]);
        assert_eq!(step(&o, "create").captured, ["order_id"]);
        // 150 ms of processing polled every 100 ms: more than one attempt.
        assert!(step(&o, "wait-processed").attempts >= 2, "{o:#?}");
        let delete = step(&o, "delete");
        assert_eq!(delete.stage, Stage::Teardown);
        assert_eq!(delete.http.as_ref().unwrap().status, Some(204));
        assert_eq!(order_count(&sb).await, 0);
        sb.shutdown().await;
    })
    .await;
}

/// An order flow of the tests' own (create, wait until processed, verify,
/// delete), so fault tests do not depend on the shipped example.
const ORDER_FLOW: &str = r#"name = "order-flow"
environments = ["sandbox"]
timeout = "10s"

[flow]
teardown_timeout = "5s"

[[flow.steps]]
name = "create"
method = "POST"
url = "/api/orders"
json = { item = "widget", quantity = 2 }
expect = ["status == 201"]
capture = { order_id = "json.id" }

[[flow.steps]]
name = "wait-processed"
url = "/api/orders/{{ vars.order_id }}"
until = "status == 200 && json.status == 'processed'"
until_interval = "100ms"
until_timeout = "5s"

[[flow.steps]]
name = "verify"
url = "/api/orders/{{ vars.order_id }}"
expect = ["status == 200", "json.id == vars.order_id"]

[[flow.teardown]]
name = "delete"
method = "DELETE"
url = "/api/orders/{{ vars.order_id }}"
expect = ["status == 204"]
"#;

#[tokio::test]
async fn a_failing_verify_step_fails_the_flow_there_and_teardown_still_deletes() {
    bounded(async {
        let sb = sandbox().await;
        fault(
            &sb,
            r#"{"step": "verify", "path_prefix": "/api/orders", "status": 500}"#,
        )
        .await;
        let o = run_flow(&sb, ORDER_FLOW).await;
        assert!(!o.success);
        assert_eq!(o.reason, Some(FailureReason::Assertion), "{o:#?}");
        let error = o.error.as_deref().unwrap();
        assert!(error.starts_with("step `verify` failed"), "{error}");
        let verify = step(&o, "verify");
        assert!(!verify.success);
        assert_eq!(verify.http.as_ref().unwrap().status, Some(500));
        assert!(step(&o, "wait-processed").success);
        let delete = step(&o, "delete");
        assert!(delete.success, "{delete:#?}");
        assert_eq!(delete.attempts, 1);
        assert_eq!(order_count(&sb).await, 0);
        sb.shutdown().await;
    })
    .await;
}

/// A flow that creates an order, then runs `then` as its second step.
fn create_then(extra_top: &str, then: &str) -> String {
    format!(
        r#"name = "f"
environments = ["sandbox"]
{extra_top}

[[flow.steps]]
name = "create"
method = "POST"
url = "/api/orders"
json = {{ item = "widget", quantity = 1 }}
capture = {{ order_id = "json.id" }}

[[flow.steps]]
name = "then"
{then}

[[flow.teardown]]
name = "delete"
method = "DELETE"
url = "/api/orders/{{{{ vars.order_id }}}}"
expect = ["status == 204"]
"#
    )
}

#[tokio::test]
async fn teardown_runs_after_the_run_deadline() {
    bounded(async {
        let sb = sandbox().await;
        let started = Instant::now();
        let o = run_flow(
            &sb,
            &create_then("timeout = \"500ms\"", "url = \"/delay/5000\""),
        )
        .await;
        assert_eq!(o.reason, Some(FailureReason::Timeout), "{o:#?}");
        assert!(step(&o, "delete").success, "{o:#?}");
        assert_eq!(order_count(&sb).await, 0);
        assert!(started.elapsed() < Duration::from_secs(3));
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn teardown_runs_after_a_shutdown_cancels_the_run() {
    bounded(async {
        let sb = sandbox().await;
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(
            dir.path(),
            &config_for(&sb),
            &[(
                "flow.toml",
                &create_then("timeout = \"8s\"", "url = \"/delay/5000\""),
            )],
        );
        let config = load(&path);
        let (o, took) = common::run_cancelled_after(
            &config,
            "sandbox",
            &sb.base_url(),
            Duration::from_millis(300),
        )
        .await;
        assert_eq!(o.reason, Some(FailureReason::Cancelled), "{o:#?}");
        assert!(took < Duration::from_secs(2), "the cancel was not prompt");
        assert!(step(&o, "delete").success, "{o:#?}");
        assert_eq!(order_count(&sb).await, 0);
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_teardown_failure_is_reported_beside_the_main_failure() {
    bounded(async {
        let sb = sandbox().await;
        fault(
            &sb,
            r#"{"step": "then", "path_prefix": "/", "status": 503}"#,
        )
        .await;
        fault(
            &sb,
            r#"{"step": "delete", "path_prefix": "/", "status": 500}"#,
        )
        .await;
        let o = run_flow(&sb, &create_then("", "url = \"/health\"")).await;
        // The main failure keeps its reason and comes first.
        assert_eq!(o.reason, Some(FailureReason::Status), "{o:#?}");
        let error = o.error.as_deref().unwrap();
        assert!(error.starts_with("step `then` failed"), "{error}");
        assert!(error.contains("teardown `delete` failed"), "{error}");
        assert!(!step(&o, "delete").success);
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_teardown_failure_alone_fails_the_run_with_reason_teardown() {
    bounded(async {
        let sb = sandbox().await;
        fault(
            &sb,
            r#"{"step": "delete", "path_prefix": "/", "status": 500}"#,
        )
        .await;
        let o = run_flow(&sb, &create_then("", "url = \"/health\"")).await;
        assert!(!o.success);
        assert_eq!(o.reason, Some(FailureReason::Teardown), "{o:#?}");
        assert!(step(&o, "then").success);
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_teardown_step_whose_capture_never_happened_is_skipped() {
    bounded(async {
        let sb = sandbox().await;
        fault(
            &sb,
            r#"{"method": "POST", "path_prefix": "/api/orders", "status": 500}"#,
        )
        .await;
        let o = run_flow(&sb, &create_then("", "url = \"/health\"")).await;
        assert_eq!(o.reason, Some(FailureReason::Status), "{o:#?}");
        assert!(
            o.error
                .as_deref()
                .unwrap()
                .starts_with("step `create` failed")
        );
        let delete = step(&o, "delete");
        assert_eq!(delete.attempts, 0, "{delete:#?}");
        assert!(delete.success);
        assert_eq!(
            delete.error.as_deref(),
            Some("skipped: `order_id` was never captured")
        );
        // `then` never ran: the flow stops at the first failing step.
        assert!(o.steps.iter().all(|s| s.name != "then"));
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn until_gives_up_at_its_timeout_and_says_what_it_last_saw() {
    bounded(async {
        let sb = sandbox().await;
        let o = run_flow(
            &sb,
            &create_then(
                "",
                "url = \"/api/orders/{{ vars.order_id }}\"\nuntil = \"json.status == 'shipped'\"\nuntil_interval = \"50ms\"\nuntil_timeout = \"400ms\"",
            ),
        )
        .await;
        assert_eq!(o.reason, Some(FailureReason::Until), "{o:#?}");
        let then = step(&o, "then");
        assert!(then.attempts >= 3, "{then:#?}");
        let error = then.error.as_deref().unwrap();
        assert!(error.contains("json.status == 'shipped'"), "{error}");
        assert!(error.contains("processed") || error.contains("pending"), "{error}");
        assert_eq!(order_count(&sb).await, 0);
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_secret_capture_never_reaches_the_report() {
    bounded(async {
        let sb = sandbox().await;
        let probe = r#"name = "f"
environments = ["sandbox"]

[[flow.steps]]
name = "create"
method = "POST"
url = "/api/orders"
json = { item = "widget", quantity = 1 }
capture = { token = { from = "json.id", secret = true } }

[[flow.steps]]
name = "use"
url = "/api/orders/{{ vars.token }}"
expect = ["status == 404"]
"#;
        let o = run_flow(&sb, probe).await;
        let (_, body) = http_request(sb.addr(), "GET", "/api/orders", None).await;
        let list: serde_json::Value = serde_json::from_str(&body).unwrap();
        let id = list["orders"][0]["id"].as_str().unwrap().to_owned();
        // The step failed (the order exists), and its URL and explanation
        // would name the id: they must not.
        assert!(!o.success);
        let report = serde_json::to_string(&o).unwrap();
        assert!(!report.contains(&id), "{report}");
        assert!(report.contains("***"), "{report}");
        sb.shutdown().await;
    })
    .await;
}

#[test]
fn flow_mistakes_are_reported_at_load_with_their_location() {
    let dir = tempfile::tempdir().unwrap();
    let probe = r#"name = "f"
environments = ["target"]

[[flow.steps]]
name = "create"
method = "POST"
url = "/api/orders"
capture = { order_id = "json.id" }

[[flow.steps]]
name = "create"
url = "/api/orders/{{ vars.ordr_id }}"
until_interval = "1s"

[[flow.teardown]]
url = "/x"
capture = { bad = "json.id ==" }
"#;
    let path = write_config(
        dir.path(),
        &common::config_with_target("http://127.0.0.1:9"),
        &[("f.toml", probe)],
    );
    let opts = synthmon::config::LoadOptions {
        config_path: Some(path),
        overrides: vec![],
    };
    let text = synthmon::plan::load(&opts).unwrap_err().to_string();
    for expected in [
        "probes/f.toml:11:8: error: flow.steps[1].name: duplicate step name `create`",
        "probes/f.toml:12:7: error: flow.steps[1].url: unknown variable `vars.ordr_id`",
        "did you mean `vars.order_id`?",
        "probes/f.toml:13:18: error: flow.steps[1].until_interval: `until_interval` needs `until`",
        "flow.teardown[0].capture.bad: invalid expression `json.id ==`",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

/// The orders on `sb` in all, and those whose texts start with `marker`.
async fn orders_and_marked(sb: &Sandbox, marker: &str) -> (u64, u64) {
    let path = format!("/api/orders/count?marker={marker}");
    let (status, body) = http_request(sb.addr(), "GET", &path, None).await;
    assert_eq!(status, 200, "{body}");
    let marked: serde_json::Value = serde_json::from_str(&body).unwrap();
    (order_count(sb).await, marked["count"].as_u64().unwrap())
}

/// Regression (issue 16): the shipped `order-create` example left every
/// order it created on the target, and none carried the synthetic marker
/// (its item was "synthetic-widget"), so nothing could find or purge them.
#[tokio::test]
async fn the_order_create_example_deletes_its_order_and_marks_one_it_cannot() {
    bounded(async {
        let sb = sandbox().await;
        let probe = example("order-create.toml");
        let file: toml::Table = toml::from_str(&probe).unwrap();
        let marker = file["marker"].as_str().unwrap().to_owned();
        assert!(!marker.is_empty());

        let o = run_flow(&sb, &probe).await;
        assert!(o.success, "{o:#?}");
        let names: Vec<&str> = o.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["create", "delete"]);
        assert_eq!(orders_and_marked(&sb, &marker).await, (0, 0));

        // When its teardown cannot delete, the order left behind carries
        // the marker (no unmarked order remains) and a purge by it clears
        // the target.
        fault(
            &sb,
            r#"{"step": "delete", "path_prefix": "/api/orders", "status": 500}"#,
        )
        .await;
        let o = run_flow(&sb, &probe).await;
        assert_eq!(o.reason, Some(FailureReason::Teardown), "{o:#?}");
        assert_eq!(orders_and_marked(&sb, &marker).await, (1, 1));
        let (status, body) = http_request(sb.addr(), "GET", "/api/orders", None).await;
        assert_eq!(status, 200, "{body}");
        let list: serde_json::Value = serde_json::from_str(&body).unwrap();
        let order = &list["orders"][0];
        for field in ["item", "note"] {
            let text = order[field].as_str().unwrap();
            assert!(text.starts_with(&marker), "{field}: {order}");
        }
        let purge = format!("/api/orders?marker={marker}");
        let (status, body) = http_request(sb.addr(), "DELETE", &purge, None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(orders_and_marked(&sb, &marker).await, (0, 0));
        sb.shutdown().await;
    })
    .await;
}
