//! Regressions in judging workloads, each test named after the bug it pins.
//!
//! The bug: requests a workload dropped at its concurrency cap (or because
//! the sender fell behind) were counted but judged by nothing; with 75 % of
//! the requests never sent the verdict was PASS and `error_rate` 0 %. Drops
//! are now `dropped_rate` (dropped ÷ due), which thresholds can name and
//! which is `dropped_rate < 1%` by default, in every report.
//!
//! Every workload here sends 40 requests at 100/s (0.4 s of arrivals) to a
//! route that takes 200 ms, with 2 in flight at most: at most 2 can leave
//! per 200 ms, so at least 34 of 40 are dropped, whatever the machine's
//! load, and each run ends within about a second.

use crate::common;

use common::{load, run_one, synthmon, write_config};
use std::time::Duration;
use synthmon::outcome::Outcome;
use synthmon::threshold::State;

const BOUND: Duration = Duration::from_secs(30);

const CONFIG: &str = "[environments.sandbox]\nbase_url = \"builtin:sandbox\"\n";

/// An http workload far above what 2 slots of a 200 ms route can carry,
/// judged by `thresholds` (TOML array items).
fn overloaded(thresholds: &str) -> String {
    format!(
        r#"name = "overloaded"
environments = ["sandbox"]
timeout = "2s"
schedule = "every 1m"
thresholds = [{thresholds}]

[workload]
requests = 40
rate = 100
max_concurrency = 2

[http]
url = "/delay/200"
"#
    )
}

async fn run(probe: &str) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), CONFIG, &[("w.toml", probe)]);
    common::within(BOUND, run_one(&load(&path))).await
}

/// The default threshold's result, which must be there.
fn default_dropped_rate(o: &Outcome) -> &synthmon::outcome::ThresholdResult {
    o.thresholds
        .iter()
        .find(|t| t.threshold == "dropped_rate < 1% (default)")
        .unwrap_or_else(|| panic!("no default dropped_rate threshold in {:#?}", o.thresholds))
}

#[test]
fn a_workload_that_drops_most_of_its_requests_does_not_pass() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        CONFIG,
        &[("w.toml", &overloaded("\"error_rate < 1%\""))],
    );

    // The terminal report: FAIL, how many were dropped and why, the default
    // threshold failing while the error rate of what was sent stays 0 %.
    let run = synthmon(dir.path(), &["--config", "config.toml", "--once"], &[]);
    run.assert_code(1);
    let out = &run.stdout;
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("overloaded @ sandbox")),
        "{out}"
    );
    let dropped = regex::Regex::new(
        r"(?m)^      dropped: (\d+) of 40 requests \([0-9.]+%\) never sent: .*all 2 slots",
    )
    .unwrap();
    let n: u64 = dropped
        .captures(out)
        .unwrap_or_else(|| panic!("no dropped line in\n{out}"))[1]
        .parse()
        .unwrap();
    assert!(n >= 34, "{out}");
    let failing = regex::Regex::new(
        r"threshold dropped_rate < 1% \(default\): failing \(observed (\d+\.\d+)% over 40 requests\)",
    )
    .unwrap();
    let observed: f64 = failing
        .captures(out)
        .unwrap_or_else(|| panic!("no failing dropped_rate threshold in\n{out}"))[1]
        .parse()
        .unwrap();
    assert!(observed >= 85.0, "{out}");
    assert!(
        out.contains("threshold error_rate < 1%: ok (observed 0.000% over"),
        "{out}"
    );
    assert!(out.contains("0 passed, 1 failed"), "{out}");

    // The JSON report: the same counts, the threshold failing, the summary
    // failed; the run itself (the requests sent) succeeded.
    let run = synthmon(
        dir.path(),
        &["--config", "config.toml", "--once", "--output", "json"],
        &[],
    );
    run.assert_code(1);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["summary"]["passed"], 0, "{doc:#}");
    assert_eq!(doc["summary"]["failed"], 1, "{doc:#}");
    let r = &doc["results"][0];
    let w = &r["workload"];
    let (sent, dropped) = (w["sent"].as_u64().unwrap(), w["dropped"].as_u64().unwrap());
    assert_eq!(sent + dropped, 40, "{w:#}");
    assert!(dropped >= 34, "{w:#}");
    assert_eq!(w["max_concurrency"], 2, "{w:#}");
    assert!(w["dropped_behind"].as_u64().unwrap() <= dropped, "{w:#}");
    assert!(w["max_lag"].as_f64().is_some(), "{w:#}");
    assert_eq!(w["failed"], 0, "{w:#}");
    assert_eq!(r["success"], true, "error_rate is about the requests sent");
    let thresholds = r["thresholds"].as_array().unwrap();
    let t = thresholds
        .iter()
        .find(|t| t["threshold"] == "dropped_rate < 1% (default)")
        .unwrap_or_else(|| panic!("{r:#}"));
    assert_eq!(t["state"], "failing", "{t:#}");
    assert_eq!(t["unit"], "ratio", "{t:#}");
    assert_eq!(t["runs"], 40, "{t:#}");
    let observed = t["observed"].as_f64().unwrap();
    assert!((observed - dropped as f64 / 40.0).abs() < 1e-9, "{t:#}");
}

#[tokio::test]
async fn a_flow_workload_that_drops_most_of_its_iterations_does_not_pass() {
    let probe = r#"name = "journeys"
environments = ["sandbox"]
timeout = "2s"
schedule = "every 1m"

[workload]
requests = 40
rate = 100
max_concurrency = 2

[[flow.steps]]
name = "slow"
url = "/delay/200"
"#;
    let o = run(probe).await;
    let w = o.workload.as_ref().unwrap();
    assert!(o.success, "{:?}", o.error);
    assert_eq!(w.sent + w.dropped, 40);
    assert!(w.dropped >= 34, "{w:?}");
    let t = default_dropped_rate(&o);
    assert_eq!(t.state, State::Failing, "{t:?}");
    assert!(!o.passed(), "{:#?}", o.thresholds);
    let text = synthmon::report::human::render(std::slice::from_ref(&o), false);
    assert!(text.contains("of 40 iterations ("), "{text}");
    assert!(text.contains("over 40 iterations"), "{text}");
}

#[tokio::test]
async fn a_dropped_rate_threshold_the_probe_names_replaces_the_default() {
    // At most 38 of 40 can be dropped (2 leave at once): 95 %.
    let o = run(&overloaded("\"dropped_rate <= 95%\", \"error_rate < 1%\"")).await;
    let w = o.workload.as_ref().unwrap();
    assert!(w.dropped >= 34, "{w:?}");
    assert_eq!(
        o.thresholds.len(),
        2,
        "no default beside it: {:#?}",
        o.thresholds
    );
    let t = &o.thresholds[0];
    assert_eq!(t.threshold, "dropped_rate <= 95%");
    assert_eq!(t.state, State::Ok, "{t:?}");
    assert_eq!(t.observed, Some(w.dropped as f64 / 40.0));
    assert!(o.passed(), "{:#?}", o.thresholds);
    // Tightened, it fails.
    let o = run(&overloaded("\"dropped_rate < 50%\"")).await;
    assert_eq!(o.thresholds.len(), 1, "{:#?}", o.thresholds);
    assert_eq!(o.thresholds[0].state, State::Failing);
    assert!(!o.passed());
}

#[tokio::test]
async fn dropped_requests_show_in_metrics_as_a_failing_dropped_rate() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), CONFIG, &[("w.toml", &overloaded(""))]);
    let config = load(&path);
    let mut o = common::within(BOUND, run_one(&config)).await;
    // The daemon's pipeline: the rolling windows, then /metrics.
    let mut store = synthmon::telemetry::measure::Store::default();
    store.record(&mut o, &config.probes[0].thresholds);
    assert_eq!(default_dropped_rate(&o).state, State::Failing);
    let metrics = synthmon::telemetry::metrics::Metrics::new(&config.daemon, &config.probes);
    metrics.record(&o);
    let body = metrics.render(0);
    let line = |name: &str, label: &str| {
        body.lines()
            .find(|l| l.starts_with(name) && l.contains(label))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name}{{{label}}} in\n{body}"))
    };
    let w = o.workload.as_ref().unwrap();
    assert_eq!(
        line("synthmon_workload_requests_total", "result=\"dropped\""),
        w.dropped as f64
    );
    let default = "threshold=\"dropped_rate < 1% (default)\"";
    assert_eq!(line("synthmon_threshold_failing", default), 1.0);
    assert_eq!(
        line("synthmon_threshold_observed", default),
        w.dropped as f64 / 40.0
    );
}
