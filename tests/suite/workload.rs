//! Workloads against the real sandbox on 127.0.0.1: the arrival rate is
//! kept, percentiles match the sandbox's configured latency distribution,
//! a stalled target inflates the recorded latencies (measured from each
//! request's intended send time) instead of lowering the send rate, the
//! concurrency cap drops rather than delays, and anomalies are rejected and
//! counted apart.

use crate::common;

use common::sandbox;

use common::{config_with_target, load, run_one, write_config};
use std::future::Future;
use std::time::{Duration, Instant};
use synthmon::outcome::Outcome;
use synthmon::sandbox::Sandbox;

const BOUND: Duration = Duration::from_secs(40);

async fn bounded<F: Future>(f: F) -> F::Output {
    common::within(BOUND, f).await
}

async fn run_probe(sb: &Sandbox, probe: &str) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &config_with_target(&sb.base_url()),
        &[("w.toml", probe)],
    );
    run_one(&load(&path)).await
}

/// Nearest-rank percentile of the recorded latencies, in milliseconds
/// (exact up to 1,024 requests, within 1 % beyond).
fn percentile(o: &Outcome, p: f64) -> f64 {
    let w = o.workload.as_ref().unwrap();
    w.latencies.percentile(p).unwrap().as_secs_f64() * 1000.0
}

#[tokio::test]
async fn two_thousand_requests_at_200_per_second_match_the_latency_distribution() {
    bounded(async {
        let sb = sandbox().await;
        let probe = r#"name = "w"
environments = ["target"]
timeout = "2s"
schedule = "every 1m"
thresholds = ["p(99) < 500ms"]

[workload]
requests = 2000
rate = 200
max_concurrency = 200

[http]
url = "/latency?dist=uniform&min_ms=10&max_ms=30"
"#;
        let started = Instant::now();
        let o = run_probe(&sb, probe).await;
        let took = started.elapsed();
        let w = o.workload.as_ref().unwrap();
        assert!(o.success, "{:?} {:?}", o.error, w.failures);
        assert_eq!((w.scheduled, w.sent, w.dropped), (2000, 2000, 0));
        assert_eq!(w.ok, 2000);
        // 2,000 at 200/s: the last request leaves at 9.995 s.
        assert!(
            took >= Duration::from_millis(9_900) && took < Duration::from_secs(13),
            "took {took:?}"
        );
        assert!((w.rate - 200.0).abs() < 10.0, "rate {}", w.rate);
        // Uniform 10–30 ms: median 20, p99 29.8; allow for the client's own
        // overhead on a busy 2-core machine.
        let (p50, p99) = (percentile(&o, 50.0), percentile(&o, 99.0));
        assert!((18.0..=27.0).contains(&p50), "p50 {p50} ms");
        assert!((28.0..=45.0).contains(&p99), "p99 {p99} ms");
        // The samples fed the thresholds: one sample per request.
        let l = o.latency.unwrap();
        assert_eq!(l.samples, 2000);
        assert!((l.p50 * 1000.0 - p50).abs() < 2.0, "{l:?} vs {p50}");
        sb.shutdown().await;
    })
    .await;
}

/// 400 requests at 200/s; requests 100–199 (half a second of arrivals)
/// meet a target that takes 600 ms.
fn stalled(max_concurrency: usize) -> String {
    format!(
        r#"name = "w"
environments = ["target"]
timeout = "2s"
schedule = "every 1m"

[workload]
requests = 400
rate = 200
max_concurrency = {max_concurrency}

[http]
url = "/delay/{{{{ 600 if iteration >= 100 and iteration < 200 else 2 }}}}"
"#
    )
}

#[tokio::test]
async fn a_stalled_target_inflates_latencies_instead_of_lowering_the_send_rate() {
    bounded(async {
        let sb = sandbox().await;
        let o = run_probe(&sb, &stalled(400)).await;
        let w = o.workload.as_ref().unwrap();
        assert!(o.success, "{:?}", o.error);
        // Every request left on schedule: nothing waited for the stall.
        assert_eq!((w.sent, w.dropped), (400, 0));
        assert!((w.rate - 200.0).abs() < 12.0, "rate {}", w.rate);
        assert_eq!(w.latencies.len(), 400);
        let slow: u64 = w
            .latencies
            .iter()
            .filter(|(d, _)| *d >= Duration::from_millis(600))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(slow, 100);
        assert!(percentile(&o, 99.0) >= 600.0);
        // A closed-loop client would have sent the stalled quarter
        // one at a time and recorded ~2 ms for most of the run; here the
        // median stays honest and the tail shows the stall.
        assert!(percentile(&o, 75.0) >= 600.0 || percentile(&o, 80.0) >= 600.0);
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_concurrency_cap_drops_late_requests_and_counts_them() {
    bounded(async {
        let sb = sandbox().await;
        let started = Instant::now();
        let o = run_probe(&sb, &stalled(20)).await;
        let took = started.elapsed();
        let w = o.workload.as_ref().unwrap();
        // 20 slots fill within 0.1 s of the stall and stay full for 0.6 s:
        // the arrivals meanwhile are dropped, not queued.
        assert!(w.dropped >= 60, "dropped {}", w.dropped);
        assert_eq!(w.sent + w.dropped, 400);
        assert_eq!(w.latencies.len(), w.sent);
        // Dropping keeps the schedule: the run ends when the last arrival
        // is due plus the last requests' time, not later.
        assert!(took < Duration::from_millis(3_500), "took {took:?}");
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn anomalies_are_rejected_and_counted_apart_from_target_errors() {
    bounded(async {
        let sb = sandbox().await;
        let probe = r#"name = "w"
environments = ["target"]
timeout = "2s"
schedule = "every 1m"
seed = 7
thresholds = ["error_rate < 1%"]

[workload]
requests = 1000
rate = 250
max_concurrency = 100

[workload.anomalies]
fraction = 0.05
fields = ["quantity", "email", "priority", "currency"]
oversize = "4 KiB"

[http]
method = "POST"
url = "/api/orders?strict=true"
json = { item = "{{ choice(['widget', 'gadget']) }}", quantity = "{{ int(1, 9) }}", customer = "{{ name() }}", email = "{{ email() }}", priority = "{{ choice(['standard', 'express']) }}", currency = "EUR" }
expect = ["status == 201"]
"#;
        let o = run_probe(&sb, probe).await;
        let w = o.workload.as_ref().unwrap();
        let a = &w.anomalies;
        assert!(o.success, "{:?} {a:?}", o.error);
        // 5% of 1,000 with a fixed seed; binomial sd ≈ 7.
        assert!((30..=70).contains(&a.sent), "{a:?}");
        assert_eq!(a.rejected, a.sent, "{a:?}");
        assert_eq!(a.unexpected, 0);
        assert_eq!(a.by_mutation.len(), 4, "{a:?}");
        // Anomalies are not target errors and are not latency samples.
        assert_eq!(w.failed, 0);
        assert_eq!(w.ok + a.sent, 1000);
        assert_eq!(w.latencies.len(), w.ok);
        assert!(o.thresholds.iter().all(|t| t.observed == Some(0.0)));
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_accepted_anomaly_fails_the_run() {
    bounded(async {
        let sb = sandbox().await;
        // GET /health ignores bodies, so every anomaly is "accepted".
        let probe = r#"name = "w"
environments = ["target"]
timeout = "2s"
schedule = "every 1m"
seed = 3

[workload]
requests = 100
rate = 500

[workload.anomalies]
fraction = 0.2
mutations = ["missing_field"]

[http]
method = "GET"
url = "/health"
json = { item = "widget", quantity = 1 }
expect = ["status == 200"]
"#;
        let o = run_probe(&sb, probe).await;
        let w = o.workload.as_ref().unwrap();
        assert!(!o.success);
        assert!(w.anomalies.sent > 0);
        assert_eq!(w.anomalies.unexpected, w.anomalies.sent);
        assert!(
            o.error
                .as_deref()
                .unwrap()
                .contains("anomalies were not rejected"),
            "{:?}",
            o.error
        );
        sb.shutdown().await;
    })
    .await;
}

#[test]
fn workload_mistakes_are_reported_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let probe = r#"name = "w"
environments = ["target"]

[workload]
rate = -3
max_concurrency = 0

[workload.anomalies]
fraction = 1.5
mutations = ["missing_feild"]

[http]
url = "/health"
"#;
    let path = write_config(
        dir.path(),
        &config_with_target("http://127.0.0.1:9"),
        &[("w.toml", probe)],
    );
    let opts = synthmon::config::LoadOptions {
        config_path: Some(path),
        overrides: vec![],
    };
    let text = synthmon::plan::load(&opts).unwrap_err().to_string();
    for expected in [
        "probes/w.toml:5:8: error: workload.rate: expected requests per second above 0",
        "workload.max_concurrency: expected 1 to 10000",
        "workload.anomalies.fraction: expected a share from 0 to 1",
        "unknown mutation `missing_feild`",
        "anomalies mutate a JSON body",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

/// A flow with a workload: create an order, read it back, delete it in
/// teardown, `requests` times at `rate`; the read step runs `read`.
fn order_journey(requests: u32, rate: u32, read: &str) -> String {
    format!(
        r#"name = "journey"
environments = ["target"]
timeout = "2s"
schedule = "every 1m"
thresholds = ["p(99) < 1500ms"]

[workload]
requests = {requests}
rate = {rate}
max_concurrency = 20

[[flow.steps]]
name = "create"
method = "POST"
url = "/api/orders"
json = {{ item = "widget", quantity = 1, customer = "{{{{ synthetic_id() }}}}" }}
capture = {{ order_id = "json.id" }}
expect = ["status == 201"]

[[flow.steps]]
name = "read"
url = "{read}"

[[flow.teardown]]
name = "delete"
method = "DELETE"
url = "/api/orders/{{{{ vars.order_id }}}}"
expect = ["status == 204"]
"#
    )
}

async fn order_count(sb: &Sandbox) -> u64 {
    let (status, body) = common::http_request(sb.addr(), "GET", "/api/orders", None).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["count"].as_u64().unwrap()
}

#[tokio::test]
async fn a_flow_workload_runs_iterations_at_the_rate_and_cleans_up_after_each() {
    bounded(async {
        let sb = sandbox().await;
        let started = Instant::now();
        let o = run_probe(
            &sb,
            &order_journey(40, 20, "/api/orders/{{ vars.order_id }}"),
        )
        .await;
        let took = started.elapsed();
        assert_eq!(o.kind, "flow");
        let w = o.workload.as_ref().unwrap();
        assert!(o.success, "{:?} {:?}", o.error, w.failures);
        assert_eq!((w.scheduled, w.sent, w.dropped), (40, 40, 0));
        assert_eq!((w.ok, w.failed), (40, 0));
        assert_eq!(w.latencies.len(), 40);
        // 40 at 20/s: the last iteration starts at 1.95 s.
        assert!(
            took >= Duration::from_millis(1_900) && took < Duration::from_secs(6),
            "took {took:?}"
        );
        assert_eq!(order_count(&sb).await, 0, "an iteration left its order");
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn failed_iterations_count_with_their_reason_and_still_tear_down() {
    bounded(async {
        let sb = sandbox().await;
        let o = run_probe(&sb, &order_journey(10, 20, "/status/503")).await;
        let w = o.workload.as_ref().unwrap();
        assert_eq!((w.sent, w.ok, w.failed), (10, 0, 10), "{:?}", w.failures);
        assert_eq!(w.failures.get("status"), Some(&10), "{:?}", w.failures);
        assert_eq!(
            o.reason,
            Some(synthmon::outcome::FailureReason::Status),
            "{o:?}"
        );
        assert!(
            o.error
                .as_deref()
                .unwrap()
                .starts_with("10 of 10 iterations failed"),
            "{:?}",
            o.error
        );
        // The target answered every iteration: each is a latency sample.
        assert_eq!(w.latencies.len(), 10);
        assert_eq!(order_count(&sb).await, 0);
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_shutdown_mid_workload_still_tears_down_every_iteration_in_flight() {
    bounded(async {
        let sb = sandbox().await;
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(
            dir.path(),
            &config_with_target(&sb.base_url()),
            &[("w.toml", &order_journey(40, 20, "/delay/400"))],
        );
        let config = load(&path);
        let (o, took) = common::run_cancelled_after(
            &config,
            "target",
            &sb.base_url(),
            Duration::from_millis(700),
        )
        .await;
        assert_eq!(
            o.reason,
            Some(synthmon::outcome::FailureReason::Cancelled),
            "{:?}",
            o.error
        );
        let w = o.workload.as_ref().unwrap();
        assert!(w.sent >= 10 && w.sent < 40, "sent {}", w.sent);
        assert!(took < Duration::from_secs(3), "took {took:?}");
        assert_eq!(
            order_count(&sb).await,
            0,
            "a cancelled iteration left its order"
        );
        sb.shutdown().await;
    })
    .await;
}

#[test]
fn flow_workload_mistakes_are_reported_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let journey = order_journey(10, 20, "/health");
    let anomalies = journey.replace(
        "max_concurrency = 20\n",
        "max_concurrency = 20\n\n[workload.anomalies]\nfraction = 0.1\n",
    );
    let too_long = journey
        .replace("name = \"journey\"", "name = \"too-long\"")
        .replace("schedule = \"every 1m\"", "schedule = \"every 5s\"")
        .replace("requests = 10\n", "duration = \"4s\"\n");
    let path = write_config(
        dir.path(),
        &config_with_target("http://127.0.0.1:9"),
        &[("a.toml", &anomalies), ("t.toml", &too_long)],
    );
    let opts = synthmon::config::LoadOptions {
        config_path: Some(path),
        overrides: vec![],
    };
    let text = synthmon::plan::load(&opts).unwrap_err().to_string();
    for expected in [
        "a.toml:12:1: error: workload.anomalies: anomalies mutate an http request's JSON body: they apply to `[http]` workloads, not flows",
        "t.toml:7:1: error: workload: the workload (4s of arrivals plus 12s for the last one) must end before the next run, 5s later",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}
