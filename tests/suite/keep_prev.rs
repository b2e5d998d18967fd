//! Run-to-run state (issue 15): `keep = { NAME = "expr" }` evaluated after
//! a run into `Outcome::kept`, handed to the next run as
//! `RunContext::prev` and read there as `prev.NAME`. Real probes against
//! the real sandbox on 127.0.0.1; each test feeds one run's `kept` into
//! the next run's `prev`, as the daemon does.

use crate::common;

use common::{load, position_of, within, write_config};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use synthmon::outcome::{AssertionResult, FailureReason, Outcome};

const BOUND: Duration = Duration::from_secs(20);

/// What a run keeps, as the daemon stores it.
pub(crate) type Kept = BTreeMap<String, Value>;

/// A config with one environment `target` at `base_url`, and `down`, on a
/// port nothing listens on (a refused connection: a run without facts).
fn config(base_url: &str) -> String {
    format!(
        "[daemon]\nprobes = [\"probes/*.toml\"]\n\n[environments.target]\nbase_url = \"{base_url}\"\n\n[environments.down]\nbase_url = \"http://127.0.0.1:9\"\n"
    )
}

/// Loads the probe file `probe` (its `name` is `p`, its environments
/// `target` and `down`).
fn probe_config(
    dir: &tempfile::TempDir,
    base_url: &str,
    probe: &str,
) -> std::sync::Arc<synthmon::plan::Config> {
    let text = format!("name = \"p\"\nenvironments = [\"target\", \"down\"]\n{probe}");
    let path = write_config(dir.path(), &config(base_url), &[("p.toml", &text)]);
    load(&path)
}

/// Runs the config's first probe once in `env` with `prev` as the
/// previous run's kept values, as the scheduler does.
pub(crate) async fn run_with_prev(
    config: &synthmon::plan::Config,
    env: &str,
    prev: Option<&Kept>,
) -> Outcome {
    let environment = &config.environments[env];
    let base_url = match &environment.base_url {
        synthmon::config::BaseUrl::Url(u) => u.clone(),
        other => panic!("not a URL environment: {other:?}"),
    };
    let vars = BTreeMap::new();
    let ctx = synthmon::probe::RunContext {
        probe: &config.probes[0],
        env: environment,
        base_url: &base_url,
        tagging: &config.tagging,
        redactor: &config.redactor,
        vars: &vars,
        cancel: tokio_util::sync::CancellationToken::new(),
        seed: None,
        progress: None,
        prev,
    };
    synthmon::probe::run(&ctx).await
}

/// The result of the expectation written `expression`.
fn result<'o>(o: &'o Outcome, expression: &str) -> &'o AssertionResult {
    o.assertions
        .iter()
        .find(|a| a.expression == expression)
        .unwrap_or_else(|| panic!("no assertion `{expression}` in {o:#?}"))
}

fn kept(pairs: &[(&str, Value)]) -> Kept {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// Adds an order carrying `marker` to the sandbox.
async fn add_order(sb: &synthmon::sandbox::Sandbox, marker: &str) {
    let body = format!(r#"{{"item": "{marker}-widget", "quantity": 1}}"#);
    let (status, reply) = common::http_request(sb.addr(), "POST", "/api/orders", Some(&body)).await;
    assert_eq!(status, 201, "{reply}");
}

#[tokio::test]
async fn keep_and_prev_compare_a_value_with_the_previous_runs() {
    within(BOUND, async {
        let sb = common::sandbox().await;
        let dir = tempfile::tempdir().unwrap();
        let config = probe_config(
            &dir,
            &sb.base_url(),
            "keep = { last_count = \"json.count\" }\n\n[http]\nurl = \"/api/orders/count?marker=kp1\"\nexpect = [\"status == 200\", \"json.count > prev.last_count\"]\n",
        );

        // The first run ever: nothing to compare with, which passes and
        // says so; the count is kept.
        let first = run_with_prev(&config, "target", None).await;
        assert!(first.success, "{first:#?}");
        let check = result(&first, "json.count > prev.last_count");
        assert!(check.passed);
        assert_eq!(check.actual, "no previous value of prev.last_count");
        assert_eq!(first.kept, kept(&[("last_count", json!(0))]));

        // The count went up: passes, and the new count is kept.
        add_order(&sb, "kp1").await;
        let second = run_with_prev(&config, "target", Some(&first.kept)).await;
        assert!(second.success, "{second:#?}");
        assert_eq!(result(&second, "json.count > prev.last_count").actual, "");
        assert_eq!(second.kept, kept(&[("last_count", json!(1))]));

        // It did not: fails, with both values shown; the value seen is
        // still kept (prev is the previous run's value).
        let third = run_with_prev(&config, "target", Some(&second.kept)).await;
        assert!(!third.success);
        assert_eq!(third.reason, Some(FailureReason::Assertion));
        let check = result(&third, "json.count > prev.last_count");
        assert!(!check.passed);
        assert_eq!(check.actual, "json.count = 1, prev.last_count = 1");
        assert_eq!(third.kept, kept(&[("last_count", json!(1))]));

        // A run that gets no response keeps nothing new: the previous
        // value is handed on, so the next comparison is with the latest
        // value there was.
        let down = run_with_prev(&config, "down", Some(&kept(&[("last_count", json!(7))]))).await;
        assert_eq!(down.reason, Some(FailureReason::ConnectRefused), "{down:#?}");
        assert_eq!(down.kept, kept(&[("last_count", json!(7))]));
        // ... and names the probe no longer keeps are dropped.
        let stale = kept(&[("last_count", json!(7)), ("gone", json!("x"))]);
        let down = run_with_prev(&config, "down", Some(&stale)).await;
        assert_eq!(down.kept, kept(&[("last_count", json!(7))]));

        // The JSON report carries what was kept.
        let report = serde_json::to_value(&second).unwrap();
        assert_eq!(report["kept"], json!({"last_count": 1}));
        let report = serde_json::to_value(&first).unwrap();
        assert_eq!(report["kept"], json!({"last_count": 0}));
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_kept_value_that_cannot_be_evaluated_fails_a_passing_run_and_hands_on_the_old_one() {
    within(BOUND, async {
        let sb = common::sandbox().await;
        let dir = tempfile::tempdir().unwrap();
        // `/json` has no `seq`: the run passes its expectations, but what
        // it was asked to keep is not there.
        let config = probe_config(
            &dir,
            &sb.base_url(),
            "keep = { seq = \"json.seq\" }\n\n[http]\nurl = \"/json\"\n",
        );
        let prev = kept(&[("seq", json!(41))]);
        let o = run_with_prev(&config, "target", Some(&prev)).await;
        assert_eq!(o.reason, Some(FailureReason::Assertion), "{o:#?}");
        let check = result(&o, "keep.seq = json.seq");
        assert!(!check.passed);
        assert!(
            check
                .actual
                .starts_with("cannot keep a value: `json.seq`: evaluation failed"),
            "{}",
            check.actual
        );
        assert!(
            o.error
                .as_deref()
                .unwrap()
                .starts_with("cannot keep `seq`: "),
            "{:?}",
            o.error
        );
        assert_eq!(o.kept, prev);

        // A run that already failed only keeps nothing: no second failure.
        let config = probe_config(
            &dir,
            &sb.base_url(),
            "keep = { seq = \"json.seq\" }\n\n[http]\nurl = \"/status/503\"\n",
        );
        let o = run_with_prev(&config, "target", Some(&prev)).await;
        assert_eq!(o.reason, Some(FailureReason::Status), "{o:#?}");
        assert_eq!(o.assertions.len(), 1, "{o:#?}");
        assert_eq!(o.kept, prev);
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_kept_value_can_build_on_the_previous_one() {
    within(BOUND, async {
        let sb = common::sandbox().await;
        let dir = tempfile::tempdir().unwrap();
        // A running total over runs, started by the first run itself.
        let config = probe_config(
            &dir,
            &sb.base_url(),
            "keep = { runs = \"has(prev.runs) ? prev.runs + 1 : 1\", unguarded = \"prev.unguarded + 1\" }\n\n[http]\nurl = \"/health\"\nexpect = [\"!has(prev.runs) || prev.runs >= 1\"]\n",
        );
        let mut prev: Option<Kept> = None;
        for want in 1..=3 {
            let o = run_with_prev(&config, "target", prev.as_ref()).await;
            assert!(o.success, "{o:#?}");
            // `prev.unguarded` never had a value: it keeps nothing, and
            // that is no failure.
            assert_eq!(o.kept, kept(&[("runs", json!(want))]));
            prev = Some(o.kept);
        }
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn prev_of_a_name_not_kept_fails_even_on_the_first_run() {
    within(BOUND, async {
        let sb = common::sandbox().await;
        let dir = tempfile::tempdir().unwrap();
        let config = probe_config(
            &dir,
            &sb.base_url(),
            "keep = { last_count = \"json.count\" }\n\n[http]\nurl = \"/api/orders/count?marker=kp2\"\nexpect = [\"json.count >= prev.last_cuont\"]\n",
        );
        let o = run_with_prev(&config, "target", None).await;
        assert_eq!(o.reason, Some(FailureReason::Assertion), "{o:#?}");
        assert_eq!(
            result(&o, "json.count >= prev.last_cuont").actual,
            "`prev.last_cuont` is not kept: this probe keeps `last_count`; did you mean `prev.last_count`?"
        );
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_flow_keeps_from_its_last_step_and_its_captures() {
    within(BOUND, async {
        let sb = common::sandbox().await;
        let dir = tempfile::tempdir().unwrap();
        let flow = r#"keep = { last_order = "vars.order_id", last_status = "status" }

[[flow.steps]]
name = "create"
method = "POST"
url = "/api/orders"
json = { item = "kp3-widget", quantity = 1 }
expect = ["status == 201", "json.id != prev.last_order"]
capture = { order_id = "json.id" }

[[flow.steps]]
name = "read"
url = "/api/orders/{{ vars.order_id }}"
expect = ["json.id == vars.order_id"]
"#;
        let config = probe_config(&dir, &sb.base_url(), flow);
        let first = run_with_prev(&config, "target", None).await;
        assert!(first.success, "{first:#?}");
        let id1 = first.kept["last_order"].as_str().unwrap().to_owned();
        assert!(id1.starts_with("ord_"), "{id1}");
        // `status` is the last step's: the read answers 200.
        assert_eq!(first.kept["last_status"], json!(200));
        let check = first.steps[0]
            .assertions
            .iter()
            .find(|a| a.expression == "json.id != prev.last_order")
            .unwrap();
        assert!(check.passed);
        assert_eq!(check.actual, "no previous value of prev.last_order");

        let second = run_with_prev(&config, "target", Some(&first.kept)).await;
        assert!(second.success, "{second:#?}");
        let id2 = second.kept["last_order"].as_str().unwrap();
        assert_ne!(id1, id2);

        // The same id again fails the step; a flow that fails part-way
        // hands on the previous values.
        let same = kept(&[("last_order", json!(id2)), ("last_status", json!(200))]);
        let flow_same = flow.replace(
            "expect = [\"status == 201\", \"json.id != prev.last_order\"]",
            "expect = [\"status == 201\", \"prev.last_order == 'nothing'\"]",
        );
        let config = probe_config(&dir, &sb.base_url(), &flow_same);
        let failed = run_with_prev(&config, "target", Some(&same)).await;
        assert_eq!(failed.reason, Some(FailureReason::Assertion), "{failed:#?}");
        assert_eq!(failed.kept, same);
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn other_kinds_keep_through_the_same_call() {
    within(BOUND, async {
        let sb = common::sandbox().await;
        let dir = tempfile::tempdir().unwrap();
        let tcp = &sb.variables()["sandbox_tcp"];
        let config = probe_config(
            &dir,
            &sb.base_url(),
            &format!(
                "keep = {{ banner = \"banner\" }}\n\n[tcp]\naddress = \"{tcp}\"\nbanner = true\nexpect = [\"banner == prev.banner\"]\n"
            ),
        );
        let first = run_with_prev(&config, "target", None).await;
        assert!(first.success, "{first:#?}");
        let banner = first.kept["banner"].clone();
        assert!(banner.as_str().is_some_and(|b| !b.is_empty()), "{banner}");
        let second = run_with_prev(&config, "target", Some(&first.kept)).await;
        assert!(second.success, "{second:#?}");
        let other = kept(&[("banner", json!("another server"))]);
        let third = run_with_prev(&config, "target", Some(&other)).await;
        assert_eq!(third.reason, Some(FailureReason::Assertion), "{third:#?}");
        assert_eq!(
            result(&third, "banner == prev.banner").actual,
            format!("banner = {banner}, prev.banner = \"another server\"")
        );

        // A stream probe, too.
        let config = probe_config(
            &dir,
            &sb.base_url(),
            "keep = { seen = \"events\" }\n\n[stream]\nurl = \"/events?count=3&interval_ms=5\"\nexpect = [\"events >= prev.seen\"]\n",
        );
        let o = run_with_prev(&config, "target", Some(&kept(&[("seen", json!(4))]))).await;
        assert_eq!(o.reason, Some(FailureReason::Assertion), "{o:#?}");
        assert_eq!(result(&o, "events >= prev.seen").actual, "events = 3, prev.seen = 4");
        assert_eq!(o.kept, kept(&[("seen", json!(3))]));
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn kept_values_are_bounded_and_never_hold_a_secret() {
    within(BOUND, async {
        let sb = common::sandbox().await;
        let dir = tempfile::tempdir().unwrap();
        let config = probe_config(
            &dir,
            &sb.base_url(),
            "keep = { body = \"body\" }\n\n[http]\nurl = \"/bytes/5000\"\n",
        );
        let o = run_with_prev(&config, "target", None).await;
        assert_eq!(o.reason, Some(FailureReason::Assertion), "{o:#?}");
        let check = result(&o, "keep.body = body");
        assert!(
            check.actual.contains("more than the 4096 a kept value may hold"),
            "{}",
            check.actual
        );
        assert!(o.kept.is_empty());

        // A secret the probe sends and the target echoes is scrubbed from
        // what is kept, as from everything else in an outcome.
        let path = dir.path().join("token");
        std::fs::write(&path, "kp-canary-9d1c").unwrap();
        let config = probe_config(
            &dir,
            &sb.base_url(),
            &format!(
                "keep = {{ echoed = \"json\" }}\n\n[http]\nurl = \"/headers\"\nheaders = {{ authorization = \"Bearer ${{file:{}}}\" }}\n",
                path.display()
            ),
        );
        let o = run_with_prev(&config, "target", None).await;
        assert!(o.success, "{o:#?}");
        let text = serde_json::to_string(&o.kept).unwrap();
        assert!(!text.contains("kp-canary-9d1c"), "{text}");
        assert!(text.contains("***"), "{text}");
        sb.shutdown().await;
    })
    .await;
}

#[test]
fn keep_errors_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let bad = r#"name = "bad"
environments = ["target"]
keep = { "1st" = "json.n", in = "json.n", typo = "jsno.n", ok = "json.n" }

[http]
url = "/json"
"#;
    let workload = r#"name = "w"
environments = ["target"]
keep = { n = "json.n" }

[http]
url = "/json"

[workload]
rate = 10
duration = "1s"
"#;
    let path = write_config(
        dir.path(),
        &config("http://127.0.0.1:9"),
        &[("bad.toml", bad), ("w.toml", workload)],
    );
    let opts = synthmon::config::LoadOptions {
        config_path: Some(path),
        overrides: vec![],
    };
    let diags = synthmon::plan::load(&opts).unwrap_err().to_string();
    let expect_at = |file: &str, text: &str, needle: &str, message: &str| {
        let (line, column) = position_of(text, needle);
        let at = format!("{file}:{line}:{column}: error: {message}");
        assert!(diags.contains(&at), "missing `{at}` in\n{diags}");
    };
    expect_at(
        "bad.toml",
        bad,
        "\"1st\"",
        "keep.1st: `1st` is not a name expressions can read as `prev.1st`",
    );
    expect_at(
        "bad.toml",
        bad,
        "in =",
        "keep.in: `in` is a reserved word in expressions",
    );
    expect_at(
        "bad.toml",
        bad,
        "\"jsno.n\"",
        "keep.typo: unknown variable `jsno` in `jsno.n`",
    );
    expect_at(
        "w.toml",
        workload,
        "{ n =",
        "keep: `keep` does not apply to a `[workload]` probe",
    );
    assert!(!diags.contains("keep.ok"), "{diags}");
}
