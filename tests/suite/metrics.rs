//! `/metrics` of a running daemon: histogram buckets at configured
//! thresholds, removed probes' series disappearing at a reload, and the
//! overlap counter. In-process daemon, real HTTP scrapes on 127.0.0.1.

use crate::common;

use common::write_config;
use std::time::{Duration, Instant};
use synthmon::daemon::Daemon;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIG: &str = "[daemon]\nlisten = \"127.0.0.1:0\"\ninstance = \"t1\"\n[environments.sb]\nbase_url = \"builtin:sandbox\"\n";

fn probe(name: &str, url: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\nschedule = \"every 1s\"\ntimeout = \"900ms\"\nenvironments = [\"sb\"]\n{extra}\n[http]\nurl = \"{url}\"\n"
    )
}

async fn start(path: std::path::PathBuf) -> Daemon {
    Daemon::start(common::quiet_daemon_options(path), None)
        .await
        .unwrap()
}

async fn scrape(d: &Daemon) -> String {
    let mut s = tokio::net::TcpStream::connect(d.addr()).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split_once("\r\n\r\n").unwrap().1.to_owned()
}

/// Scrapes until `pred` holds, for at most `secs` seconds.
async fn scrape_until(d: &Daemon, secs: u64, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let body = scrape(d).await;
        if pred(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_sit_at_thresholds_and_removed_probes_vanish_on_reload() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(
            dir.path(),
            CONFIG,
            &[
                ("keep.toml", &probe("keep", "/health", "thresholds = [\"p(99) < 123ms\"]")),
                ("gone.toml", &probe("gone", "/health", "")),
            ],
        );
        let d = start(path).await;
        let body = scrape_until(&d, 10, "both probes' series", |b| {
            b.contains(r#"probe_success{instance="t1",probe="gone",environment="sb"} 1"#)
                && b.contains(r#"probe="keep",environment="sb",step="http",le="0.123"}"#)
        })
        .await;
        // The default buckets are there too, and the threshold gauge.
        assert!(body.contains(r#"le="0.25"}"#), "{body}");
        assert!(
            body.contains(r#"synthmon_threshold_failing{instance="t1",probe="keep",environment="sb",threshold="p(99) < 123ms"} 0"#),
            "{body}"
        );

        std::fs::remove_file(dir.path().join("probes/gone.toml")).unwrap();
        d.reload().await;
        let body = scrape_until(&d, 10, "the reload", |b| {
            b.contains(r#"synthmon_config_reloads_total{instance="t1",result="ok"} 1"#)
                && b.contains(r#"probe_success{instance="t1",probe="keep""#)
        })
        .await;
        assert!(!body.contains(r#"probe="gone""#), "removed probe still exported:\n{body}");
        d.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_and_schedule_lag_are_exported_per_pair() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(
            dir.path(),
            CONFIG,
            &[("lag.toml", &probe("lag", "/delay/100", ""))],
        );
        let d = start(path).await;
        let body = scrape_until(&d, 15, "two runs and the lag gauge", |b| {
            b.contains(r#"synthmon_runs_total{instance="t1",probe="lag",environment="sb",result="success",reason=""}"#)
                && b.contains(r#"synthmon_schedule_lag_seconds{instance="t1",probe="lag",environment="sb"}"#)
        })
        .await;
        let lag: f64 = body
            .lines()
            .find(|l| l.starts_with("synthmon_schedule_lag_seconds{"))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        assert!((0.0..0.5).contains(&lag), "lag {lag}");
        assert!(
            body.contains(r#"probe_http_duration_seconds{instance="t1",probe="lag",environment="sb",phase="processing"}"#),
            "{body}"
        );
        d.shutdown().await;
    })
    .await
    .unwrap();
}

/// The value of the series whose line starts with `prefix` (name and
/// labels as rendered), if present.
fn value_of(body: &str, name: &str, must_contain: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .find(|l| must_contain.iter().all(|m| l.contains(m)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_flows_and_workloads_export_their_series() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let tls = r#"name = "cert"
schedule = "every 1s"
timeout = "900ms"
environments = ["sb"]

[tls]
address = "{{ vars.sandbox_tls }}"
server_name = "localhost"
ca_file = "{{ vars.sandbox_ca_file }}"
"#;
        let flow = r#"name = "journey"
schedule = "every 2s"
timeout = "1s"
environments = ["sb"]

[[flow.steps]]
name = "create"
method = "POST"
url = "/api/orders"
json = { item = "widget", quantity = 1 }
capture = { id = "json.id" }

[[flow.teardown]]
name = "delete"
method = "DELETE"
url = "/api/orders/{{ vars.id }}"
"#;
        let load = r#"name = "load"
schedule = "every 2s"
timeout = "500ms"
environments = ["sb"]

[workload]
requests = 20
rate = 100

[http]
url = "/health"
"#;
        let path = write_config(
            dir.path(),
            CONFIG,
            &[
                ("cert.toml", tls),
                ("journey.toml", flow),
                ("load.toml", load),
            ],
        );
        let d = start(path).await;
        let body = scrape_until(&d, 20, "all three probes' series", |b| {
            b.contains("probe=\"cert\"")
                && b.contains("probe_step_success")
                && b.contains("synthmon_workload_requests_total")
        })
        .await;
        // tls: the expiry of the sandbox's 90-day certificate, its phases.
        let expiry = value_of(&body, "probe_ssl_earliest_cert_expiry", &["probe=\"cert\""])
            .expect("probe_ssl_earliest_cert_expiry for the tls probe");
        let days = (expiry - chrono::Utc::now().timestamp() as f64) / 86_400.0;
        assert!((89.0..=90.1).contains(&days), "{days} days");
        assert_eq!(
            value_of(&body, "probe_tls_verified", &["probe=\"cert\""]),
            Some(1.0)
        );
        assert!(
            value_of(
                &body,
                "probe_phase_duration_seconds",
                &["probe=\"cert\"", "phase=\"tls\""]
            )
            .is_some(),
            "{body}"
        );
        // flow: one series per step, in the gauges and the histogram.
        for step in ["create", "delete"] {
            let step_label = format!("step=\"{step}\"");
            assert_eq!(
                value_of(
                    &body,
                    "probe_step_success",
                    &["probe=\"journey\"", &step_label]
                ),
                Some(1.0),
                "{body}"
            );
            assert!(
                value_of(
                    &body,
                    "synthmon_probe_duration_seconds_count",
                    &["probe=\"journey\"", &step_label]
                )
                .is_some_and(|n| n >= 1.0),
                "{body}"
            );
        }
        // workload: every request is a histogram sample.
        let sent = value_of(
            &body,
            "synthmon_workload_requests_total",
            &["probe=\"load\"", "result=\"sent\""],
        )
        .unwrap();
        assert!(sent >= 20.0, "{sent}");
        let samples = value_of(
            &body,
            "synthmon_probe_duration_seconds_count",
            &["probe=\"load\"", "step=\"http\""],
        )
        .unwrap();
        assert!(samples >= 20.0, "{samples}");
        d.shutdown().await;
    })
    .await
    .unwrap();
}

/// Regression: the counters the docs name (missed runs, dropped outcomes,
/// skipped overlaps, dropped spans) were absent until their first event, so
/// a rule on them saw no series; and dropped spans were a gauge without
/// `_total`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_counters_are_present_at_zero_before_their_first_event() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(
            dir.path(),
            CONFIG,
            &[("p.toml", &probe("quiet", "/health", ""))],
        );
        let d = start(path).await;
        let body = scrape(&d).await;
        for (name, labels) in [
            ("synthmon_missed_runs_total", ""),
            ("synthmon_dropped_outcomes_total", ""),
            ("synthmon_spans_dropped_total", ""),
            ("synthmon_skipped_overlaps_total", "probe=\"quiet\""),
        ] {
            let line = body
                .lines()
                .find(|l| l.starts_with(name) && l.contains(labels))
                .unwrap_or_else(|| panic!("no {name}{{{labels}}} in\n{body}"));
            assert!(line.ends_with(" 0"), "{line}");
            assert!(
                body.contains(&format!("# TYPE {name} counter")),
                "{name} is not a counter:\n{body}"
            );
        }
        assert!(!body.contains("synthmon_spans_dropped "), "{body}");
        // Regression: process_cpu_seconds_total was truncated to whole
        // seconds, so a daemon that had used less than a second showed 0.
        let cpu = body
            .lines()
            .find(|l| l.starts_with("process_cpu_seconds_total"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no process_cpu_seconds_total in\n{body}"));
        assert!(cpu > 0.0, "process_cpu_seconds_total = {cpu}");
        d.shutdown().await;
    })
    .await
    .unwrap();
}
