//! `/metrics` of a running daemon: histogram buckets at configured
//! thresholds, removed probes' series disappearing at a reload, and the
//! overlap counter; its size per probe and the exactness of its
//! percentiles (issue 14). In-process daemon, real HTTP scrapes on
//! 127.0.0.1.

use crate::common;

use common::write_config;
use std::io::Read as _;
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
                (
                    "written.toml",
                    &probe(
                        "written",
                        "/health",
                        "thresholds = [\"p(95) < 200ms\"]\nbuckets = [\"40ms\", \"20ms\"]",
                    ),
                ),
            ],
        );
        let d = start(path).await;
        let body = scrape_until(&d, 10, "the probes' series", |b| {
            b.contains(r#"probe_success{probe="gone",environment="sb"} 1"#)
                && b.contains(r#"probe="keep",environment="sb",step="http",le="0.123"}"#)
                && b.contains(r#"probe="written",environment="sb",step="http",le="+Inf"}"#)
        })
        .await;
        // The threshold, the timeout and the spread points (250 ms; not
        // 100 ms, too near the threshold); the threshold gauges.
        let les = |probe: &str| -> Vec<f64> {
            buckets_of(&body, "synthmon_probe_duration_seconds", &[&format!("probe=\"{probe}\"")])
                .into_iter()
                .map(|b| b.0)
                .collect()
        };
        assert_eq!(
            les("keep"),
            [0.01, 0.025, 0.05, 0.123, 0.25, 0.5, 0.9, f64::INFINITY],
            "{body}"
        );
        // Written buckets, sorted, with the threshold added.
        assert_eq!(les("written"), [0.02, 0.04, 0.2, f64::INFINITY], "{body}");
        assert!(
            body.contains(r#"synthmon_threshold_failing{probe="keep",environment="sb",threshold="p(99) < 123ms"} 0"#),
            "{body}"
        );
        // A threshold without a degraded level has no degraded series.
        assert!(!body.contains("synthmon_threshold_degraded{"), "{body}");
        // `instance` and `location` are on one info series, on no other.
        assert!(
            body.contains("synthmon_location_info{instance_name=\"t1\"} 1"),
            "{body}"
        );
        assert!(!body.contains("instance=\""), "{body}");

        std::fs::remove_file(dir.path().join("probes/gone.toml")).unwrap();
        d.reload().await;
        let body = scrape_until(&d, 10, "the reload", |b| {
            b.contains(r#"synthmon_config_reloads_total{result="ok"} 1"#)
                && b.contains(r#"probe_success{probe="keep""#)
        })
        .await;
        assert!(!body.contains(r#"probe="gone""#), "removed probe still exported:\n{body}");
        d.shutdown().await;
    })
    .await
    .unwrap();
}

/// The schedule lag is one histogram for the process (issue 14: it was a
/// gauge per pair, the last run's lag only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_per_pair_and_the_schedule_lag_histogram_are_exported() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(
            dir.path(),
            CONFIG,
            &[("lag.toml", &probe("lag", "/delay/100", ""))],
        );
        let d = start(path).await;
        let body = scrape_until(&d, 15, "two runs and their lags", |b| {
            b.contains(
                r#"synthmon_runs_total{probe="lag",environment="sb",result="success",reason=""}"#,
            ) && value_of(b, "synthmon_schedule_lag_seconds_count", &[]).is_some_and(|n| n >= 2.0)
        })
        .await;
        assert!(
            body.contains("# TYPE synthmon_schedule_lag_seconds histogram"),
            "{body}"
        );
        let lags = buckets_of(&body, "synthmon_schedule_lag_seconds", &[]);
        assert_eq!(lags.len(), 17, "16 bounds and +Inf: {body}");
        assert!(
            body.lines()
                .filter(|l| l.starts_with("synthmon_schedule_lag_seconds"))
                .all(|l| !l.contains("probe=")),
            "{body}"
        );
        assert!(
            body.contains(
                r#"probe_http_duration_seconds{probe="lag",environment="sb",phase="processing"}"#
            ),
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

/// The soak (bench/soak.sh) watches the runtime's live tasks next to RSS and
/// open fds: the gauge is there at the first scrape, counts at least the
/// daemon's own tasks, and is a gauge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_runtime_tasks_are_a_gauge_on_metrics() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(
            dir.path(),
            CONFIG,
            &[("p.toml", &probe("quiet", "/health", ""))],
        );
        let d = start(path).await;
        let body = scrape(&d).await;
        assert!(
            body.contains("# TYPE synthmon_runtime_tasks gauge"),
            "synthmon_runtime_tasks is not a gauge:\n{body}"
        );
        let tasks = value_of(&body, "synthmon_runtime_tasks", &[])
            .unwrap_or_else(|| panic!("no synthmon_runtime_tasks in\n{body}"));
        // The listener, the scheduler and the reloader at least.
        assert!(tasks >= 3.0, "synthmon_runtime_tasks = {tasks}");
        d.shutdown().await;
    })
    .await
    .unwrap();
}

/// The series of `family` (a histogram's `_bucket` lines) for the labels in
/// `must_contain`, as (upper bound, cumulative count), in order.
fn buckets_of(body: &str, family: &str, must_contain: &[&str]) -> Vec<(f64, f64)> {
    let prefix = format!("{family}_bucket{{");
    let mut out: Vec<(f64, f64)> = body
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter(|l| must_contain.iter().all(|m| l.contains(m)))
        .map(|l| {
            let le = l.split("le=\"").nth(1).unwrap().split('"').next().unwrap();
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            (le, l.rsplit(' ').next().unwrap().parse().unwrap())
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// `histogram_quantile(q, …)` as Prometheus computes it
/// (promql/quantile.go, `bucketQuantile`): the bucket holding rank
/// `q × count`, linearly interpolated between its bounds; the highest
/// finite bound when the rank falls in `+Inf`.
fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
    let total = buckets.last().unwrap().1;
    let rank = q * total;
    let b = buckets.iter().position(|(_, c)| *c >= rank).unwrap();
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].0;
    }
    let (start, below) = if b == 0 { (0.0, 0.0) } else { buckets[b - 1] };
    let (end, upto) = buckets[b];
    start + (end - start) * ((rank - below) / (upto - below))
}

/// The nearest-rank `q` quantile of `samples` (sorted): what the HDR
/// windows and thresholds compute.
fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// What a seeded lognormal latency (median 200 ms, σ 0.3: p95 ≈ 330 ms),
/// ten runs of 2,000 requests, makes of `probe` (named `lognormal`, in
/// environment `sb`) through the pipeline's own steps (the window store,
/// then the metrics): the samples' true p95, `histogram_quantile(0.95)`
/// over its buckets, the `synthmon_latency_seconds{quantile="0.95"}`
/// summary, and the buckets.
fn lognormal_p95(probe: &str) -> (f64, f64, f64, Vec<(f64, f64)>) {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), CONFIG, &[("p.toml", probe)]);
    let config = common::load(&path);
    let metrics = synthmon::telemetry::metrics::Metrics::new(&config.daemon, &config.probes);
    let mut store = synthmon::telemetry::measure::Store::default();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(14);
    let dist = rand_distr::LogNormal::new(0.200f64.ln(), 0.3).unwrap();
    let mut all = Vec::new();
    // Beyond the exact samples a sub-window keeps, so the HDR histogram
    // answers.
    for _ in 0..10 {
        let ids = synthmon::tagging::RunIds::generate();
        let mut o = synthmon::outcome::Outcome::new("lognormal", "sb", "http", &ids);
        o.success = true;
        o.responded = true;
        let mut latencies = synthmon::outcome::Latencies::default();
        for _ in 0..2_000 {
            let secs: f64 = dist.sample(&mut rng);
            let latency = Duration::from_micros((secs * 1e6).round() as u64);
            all.push(latency.as_secs_f64());
            latencies.record(latency);
        }
        o.workload = Some(synthmon::outcome::WorkloadFacts {
            scheduled: 2_000,
            sent: 2_000,
            ok: 2_000,
            latencies,
            ..Default::default()
        });
        store.record(&mut o, &config.probes[0].thresholds);
        metrics.record(&o);
    }
    all.sort_by(f64::total_cmp);
    let truth = nearest_rank(&all, 0.95);
    let body = metrics.render(0);
    let buckets = buckets_of(
        &body,
        "synthmon_probe_duration_seconds",
        &["probe=\"lognormal\""],
    );
    assert_eq!(buckets.last().unwrap().1, 20_000.0, "{body}");
    let from_buckets = histogram_quantile(0.95, &buckets);
    let hdr = value_of(
        &body,
        "synthmon_latency_seconds",
        &["probe=\"lognormal\"", "quantile=\"0.95\""],
    );
    eprintln!(
        "true p95 {truth:.4}s; histogram_quantile {from_buckets:.4}s ({:.1} % off, buckets {:?}); summary {hdr:?}",
        (from_buckets - truth).abs() / truth * 100.0,
        buckets.iter().map(|b| b.0).collect::<Vec<_>>()
    );
    let hdr = hdr.unwrap_or_else(|| panic!("no synthmon_latency_seconds in\n{body}"));
    (truth, from_buckets, hdr, buckets)
}

/// Issue 14: percentiles read from /metrics must be exact. Under
/// `p(95) < 1s` with a 5 s timeout, a scheduled HTTP probe's
/// `synthmon_latency_seconds{quantile="0.95"}` summary is within 5 % of
/// the samples' true p95 (it is the window's nearest-rank p95, within the
/// HDR histogram's 1 %). `histogram_quantile(0.95)` over its coarse
/// buckets is only as good as a straight line through the bucket the rank
/// falls in, here 250–500 ms: 36 % high. That error is the buckets', not a
/// bug: the test pins it so the docs' figure stays true.
#[tokio::test]
async fn the_latency_summary_is_within_5_percent_of_the_true_p95() {
    let probe = "name = \"lognormal\"\nschedule = \"every 30s\"\ntimeout = \"5s\"\nenvironments = [\"sb\"]\nthresholds = [\"p(95) < 1s\", \"error_rate < 1%\"]\n[http]\nurl = \"/health\"\n";
    let (truth, from_buckets, hdr, buckets) = lognormal_p95(probe);
    assert!(
        (hdr - truth).abs() / truth <= 0.05,
        "summary p95 {hdr} vs true {truth}"
    );
    assert!(
        (from_buckets - truth).abs() / truth > 0.3,
        "the documented interpolation error moved"
    );
    // The interpolation stays inside the bucket that holds the rank.
    let holding = buckets
        .iter()
        .position(|(_, c)| *c >= 0.95 * 20_000.0)
        .unwrap();
    let low = if holding == 0 {
        0.0
    } else {
        buckets[holding - 1].0
    };
    assert!((low..=buckets[holding].0).contains(&truth), "{buckets:?}");
}

/// Issue 14: a workload probe's derived buckets are fine enough below its
/// highest threshold (twenty a decade) that `histogram_quantile(0.95)` is
/// within 5 % of the true p95 too, where the same latencies in an HTTP
/// probe's coarse buckets are 36 % off (above).
#[tokio::test]
async fn a_workloads_histogram_quantile_is_within_5_percent_of_the_true_p95() {
    let probe = "name = \"lognormal\"\nschedule = \"every 30s\"\ntimeout = \"5s\"\nenvironments = [\"sb\"]\nthresholds = [\"p(95) < 1s\", \"error_rate < 1%\"]\n[workload]\nrequests = 2000\nrate = 100\n[http]\nurl = \"/health\"\n";
    let (truth, from_buckets, hdr, buckets) = lognormal_p95(probe);
    assert!(
        (from_buckets - truth).abs() / truth <= 0.05,
        "histogram_quantile {from_buckets} vs true {truth}: {buckets:?}"
    );
    assert!(
        (hdr - truth).abs() / truth <= 0.05,
        "summary {hdr} vs {truth}"
    );
    // Twenty a decade from 25 ms to the 1 s threshold, then the timeout.
    assert_eq!(buckets.len(), 12 + 20 + 1 + 2 + 1, "{buckets:?}");
}

/// A scrape's body as sent, with `Accept-Encoding: gzip` when `gzip`.
async fn scrape_raw(d: &Daemon, gzip: bool) -> (String, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(d.addr()).await.unwrap();
    let accept = if gzip {
        "Accept-Encoding: gzip\r\n"
    } else {
        ""
    };
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{accept}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    (head, out[split + 4..].to_vec())
}

/// The body of a chunked answer, its framing removed.
fn dechunk(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = raw;
    loop {
        let line = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = std::str::from_utf8(&rest[..line]).unwrap();
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        rest = &rest[line + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Issue 14: /metrics per (probe, environment) in a realistic config: an
/// HTTP probe with a latency and an error-rate threshold, `instance` and
/// `location` set, 100 probes. Measured before the change: 5,382 B per
/// probe, always uncompressed (instance and location on every series, 16
/// buckets whatever the thresholds, a `_degraded` gauge that could only
/// say 0 per threshold, a lag gauge per pair); after it ~2.9 KiB, and
/// ~0.2 KiB gzipped, which Prometheus asks for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_stay_small_per_probe_and_environment() {
    const PROBES: usize = 100;
    tokio::time::timeout(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        let config = "[daemon]\nlisten = \"127.0.0.1:0\"\ninstance = \"vm-1\"\nlocation = \"eu-west\"\n[environments.production]\nbase_url = \"builtin:sandbox\"\n";
        let files: Vec<(String, String)> = (0..PROBES)
            .map(|i| {
                (
                    format!("p{i}.toml"),
                    format!(
                        "name = \"orders-api-{i:03}\"\nschedule = \"every 5s\"\ntimeout = \"2s\"\nenvironments = [\"production\"]\nthresholds = [\"p(95) < 300ms\", \"error_rate < 1%\"]\n[http]\nurl = \"/health\"\n"
                    ),
                )
            })
            .collect();
        let refs: Vec<(&str, &str)> = files.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
        let path = write_config(dir.path(), config, &refs);
        let d = start(path).await;
        scrape_until(&d, 30, "every probe's first run", |b| {
            b.lines()
                .filter(|l| l.starts_with("synthmon_runs_total{"))
                .count()
                == PROBES
        })
        .await;
        let (_, plain) = scrape_raw(&d, false).await;
        let per_probe = plain.len() / PROBES;
        let (head, gzipped) = scrape_raw(&d, true).await;
        let per_probe_gzip = gzipped.len() / PROBES;
        let text = String::from_utf8(plain).unwrap();
        let one: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("probe=\"orders-api-007\""))
            .collect();
        eprintln!(
            "/metrics: {per_probe} B per probe × environment, {per_probe_gzip} B gzipped; one probe's series:\n{}",
            one.join("\n")
        );
        assert!(
            head.to_ascii_lowercase().contains("content-encoding: gzip"),
            "{head}"
        );
        // Gzipped, the answer is streamed too: chunks that decompress to
        // the same series as the plain text.
        assert!(
            head.to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{head}"
        );
        let mut unpacked = String::new();
        flate2::read::GzDecoder::new(&dechunk(&gzipped)[..])
            .read_to_string(&mut unpacked)
            .unwrap();
        let plain_text = String::from_utf8(dechunk(text.as_bytes())).unwrap();
        let series = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| l.contains("probe=\"orders-api-007\""))
                .filter_map(|l| l.rsplit_once(' ').map(|(k, _)| k.to_owned()))
                .collect()
        };
        assert!(series(&unpacked).len() > 10, "{unpacked}");
        assert_eq!(series(&unpacked), series(&plain_text));
        // On the wire, as Prometheus scrapes: the issue's 1 KiB.
        assert!(per_probe_gzip <= 1024, "{per_probe_gzip} B gzipped per probe");
        // Uncompressed, 1 KiB is out of reach while the blackbox gauges stay
        // (probe_success, probe_duration_seconds, five phases and four
        // probe_http_* facts: ~0.95 KiB with these names alone); what
        // remains is the histogram (7 bounds and +Inf here), the three
        // percentiles, two thresholds' state and observed value, the runs
        // and overlaps counters.
        assert!(per_probe <= 3328, "{per_probe} B per probe uncompressed");
        assert!(!text.contains("instance=\""), "instance on a series");
        let buckets = one.iter().filter(|l| l.contains("_bucket{")).count();
        assert_eq!(buckets, 8, "{}", one.join("\n"));
        assert_eq!(
            one.iter().filter(|l| l.contains("quantile=")).count(),
            3,
            "{}",
            one.join("\n")
        );
        d.shutdown().await;
    })
    .await
    .unwrap();
}

/// `buckets = [...]` is checked like every key: each bad boundary is an
/// error at its own place in the file, all of them at once.
#[test]
fn bad_bucket_boundaries_are_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let text = probe(
        "b",
        "/health",
        "buckets = [\"50ms\", 5, \"0s\", \"50ms\", \"soon\", \"2d\"]",
    );
    let path = write_config(dir.path(), CONFIG, &[("b.toml", &text)]);
    let opts = synthmon::config::LoadOptions {
        config_path: Some(path),
        overrides: vec![],
    };
    let Err(diags) = synthmon::plan::load(&opts) else {
        panic!("bad buckets were accepted");
    };
    let out = diags.to_string();
    for (key, words) in [
        ("buckets[1]", "found the number 5"),
        ("buckets[2]", "at least 1µs"),
        ("buckets[3]", "`50ms` is listed twice"),
        ("buckets[4]", "`soon`"),
        ("buckets[5]", "at most"),
    ] {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("error: {key}: ")))
            .unwrap_or_else(|| panic!("no error at {key} in\n{out}"));
        assert!(line.contains(words), "{line}");
        assert!(line.contains("b.toml:5:"), "not located: {line}");
    }
    assert!(!out.contains("buckets[0]"), "{out}");
    // An empty list says what to do instead.
    let text = probe("b", "/health", "buckets = []");
    let path = write_config(dir.path(), CONFIG, &[("b.toml", &text)]);
    let opts = synthmon::config::LoadOptions {
        config_path: Some(path),
        overrides: vec![],
    };
    let Err(diags) = synthmon::plan::load(&opts) else {
        panic!("an empty bucket list was accepted");
    };
    assert!(
        diags
            .to_string()
            .contains("buckets: expected at least one boundary"),
        "{diags}"
    );
}
