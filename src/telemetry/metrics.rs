//! Prometheus metrics via `metrics` + `metrics-exporter-prometheus`, served
//! by the daemon at `/metrics`.
//!
//! Two registries, rendered one after the other:
//! - the **process** registry lives as long as the process: config reloads,
//!   missed runs, dropped outcomes and spans, build info, and the standard
//!   `process_*` series (CPU, RSS, open fds) and the runtime's live task
//!   count (`synthmon_runtime_tasks`) collected at scrape time;
//! - the **probe** registry belongs to one config generation: every series
//!   labelled by probe and environment. A reload starts a new one, so the
//!   series of removed probes disappear at once; the counters and
//!   histograms of the others restart from zero, which Prometheus' `rate()`
//!   and `increase()` treat as a counter reset, as after a restart. Its
//!   histogram buckets are the defaults plus every latency threshold of
//!   that config, so `histogram_quantile` is exact at the SLA boundaries.
//!
//! Core probe series keep blackbox_exporter's names (`probe_success`,
//! `probe_duration_seconds`, `probe_http_duration_seconds{phase}`, …). Labels
//! are bounded: probe, environment, step, phase, result, reason and the
//! threshold as written — never a run id, error text or URL.
//!
//! Memory stays flat without scrapes: `upkeep` (run every few seconds by
//! the daemon) drains histogram samples into their buckets.

use crate::config::DaemonConfig;
use crate::outcome::Outcome;
use crate::probe::Probe;
use crate::threshold::{Metric, State};
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Histogram buckets before thresholds are added, in seconds.
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

pub const DURATION_HISTOGRAM: &str = "synthmon_probe_duration_seconds";

struct Registry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Registry {
    fn new(builder: PrometheusBuilder) -> Registry {
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        Registry { recorder, handle }
    }

    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }
}

pub struct Metrics {
    process: Registry,
    collector: metrics_process::Collector,
    probes: RwLock<Arc<Registry>>,
    /// Instance and location labels added to every series.
    labels: Vec<(String, String)>,
}

impl Metrics {
    /// The registries for a daemon with `daemon`'s labels and `probes`.
    pub fn new(daemon: &DaemonConfig, probes: &[Probe]) -> Metrics {
        let mut labels = Vec::new();
        for (k, v) in [
            ("instance", &daemon.instance),
            ("location", &daemon.location),
        ] {
            if !v.is_empty() {
                labels.push((k.to_owned(), v.clone()));
            }
        }
        let process = Registry::new(with_labels(PrometheusBuilder::new(), &labels));
        let collector = metrics_process::Collector::default();
        process.with(|| {
            collector.describe();
            describe_counter!("synthmon_config_reloads_total", "Config reloads by result (ok, failed).");
            describe_counter!("synthmon_missed_runs_total", "Schedule slots skipped because the scheduler was stalled or a cron fire could not be queued.");
            describe_counter!("synthmon_dropped_outcomes_total", "Run outcomes the telemetry pipeline could not take in time.");
            describe_counter!("synthmon_spans_dropped_total", "Trace spans dropped since start (export queue full, collector down or slow).");
            describe_gauge!("synthmon_build_info", "Build information; always 1.");
            describe_gauge!("synthmon_runtime_tasks", "Tokio tasks alive in the daemon's runtime at scrape time (runs, their connections, listeners, workers).");
            describe_counter!("synthmon_notifications_total", "Notification delivery attempts by receiver and result: delivered, retried (transient failure, retry scheduled), dead (permanent failure, dead letter), failed (every failed attempt).");
            describe_gauge!("synthmon_outbox_pending", "Notifications waiting in the outbox, by receiver.");
            describe_gauge!("synthmon_outbox_oldest_age_seconds", Unit::Seconds, "Age of the oldest pending notification, by receiver (0 when none).");
            describe_counter!("synthmon_outbox_write_failures_total", "Commits of new notifications to the outbox that failed (disk full, read-only state directory); they are retried.");
            describe_gauge!("synthmon_outbox_unwritten", "Notifications held in memory because the outbox cannot be written; written when it can be.");
            describe_counter!("synthmon_outbox_dropped_total", "Notifications dropped because the outbox stayed unwritable until the in-memory hold was full.");
            gauge!("synthmon_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            counter!("synthmon_config_reloads_total", "result" => "ok").absolute(0);
            counter!("synthmon_config_reloads_total", "result" => "failed").absolute(0);
            // Present from the start, so rate() and alert rules see a zero
            // rather than no series until the first event.
            counter!("synthmon_missed_runs_total").absolute(0);
            counter!("synthmon_dropped_outcomes_total").absolute(0);
            counter!("synthmon_spans_dropped_total").absolute(0);
        });
        let metrics = Metrics {
            process,
            collector,
            probes: RwLock::new(Arc::new(Registry::new(PrometheusBuilder::new()))),
            labels,
        };
        metrics.reconfigure(probes);
        metrics
    }

    /// Starts a new probe registry for `probes` (see the module docs).
    pub fn reconfigure(&self, probes: &[Probe]) {
        let mut buckets: Vec<f64> = DEFAULT_BUCKETS.to_vec();
        for p in probes {
            for t in &p.thresholds {
                for c in std::iter::once(&t.failing).chain(t.degraded.iter()) {
                    if c.metric.is_latency() && !matches!(c.metric, Metric::Min) && c.limit > 0.0 {
                        buckets.push(c.limit);
                    }
                }
            }
        }
        buckets.sort_by(f64::total_cmp);
        buckets.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
        let builder = with_labels(PrometheusBuilder::new(), &self.labels);
        let builder = builder
            .set_buckets_for_metric(Matcher::Full(DURATION_HISTOGRAM.into()), &buckets)
            .unwrap_or_else(|_| with_labels(PrometheusBuilder::new(), &self.labels));
        let registry = Registry::new(builder);
        registry.with(describe_probe_series);
        registry.with(|| {
            for p in probes {
                for e in &p.environments {
                    counter!("synthmon_skipped_overlaps_total", "probe" => p.name.clone(), "environment" => e.clone())
                        .absolute(0);
                }
            }
        });
        if let Ok(mut slot) = self.probes.write() {
            *slot = Arc::new(registry);
        }
    }

    fn probes(&self) -> Option<Arc<Registry>> {
        self.probes.read().ok().map(|r| r.clone())
    }

    /// Records one run's outcome (thresholds already evaluated).
    pub fn record(&self, o: &Outcome) {
        let Some(reg) = self.probes() else { return };
        reg.with(|| {
            let (p, e) = (o.probe.clone(), o.environment.clone());
            gauge!("probe_success", "probe" => p.clone(), "environment" => e.clone())
                .set(if o.success { 1.0 } else { 0.0 });
            gauge!("probe_duration_seconds", "probe" => p.clone(), "environment" => e.clone())
                .set(o.duration.as_secs_f64());
            let result = if o.success { "success" } else { "failure" };
            let reason = o.reason.map_or("", |r| r.as_str());
            counter!("synthmon_runs_total", "probe" => p.clone(), "environment" => e.clone(), "result" => result, "reason" => reason)
                .increment(1);
            if let Some(h) = &o.http {
                for (phase, d) in h.phases.named() {
                    gauge!("probe_http_duration_seconds", "probe" => p.clone(), "environment" => e.clone(), "phase" => phase)
                        .set(d.as_secs_f64());
                }
                gauge!("probe_http_status_code", "probe" => p.clone(), "environment" => e.clone())
                    .set(f64::from(h.status.unwrap_or(0)));
                gauge!("probe_http_redirects", "probe" => p.clone(), "environment" => e.clone())
                    .set(f64::from(h.redirects));
                gauge!("probe_http_ssl", "probe" => p.clone(), "environment" => e.clone())
                    .set(if h.tls { 1.0 } else { 0.0 });
                gauge!("probe_http_uncompressed_body_length", "probe" => p.clone(), "environment" => e.clone())
                    .set(h.body_bytes as f64);
            }
            if let Some(expiry) = o.cert_expiry() {
                gauge!("probe_ssl_earliest_cert_expiry", "probe" => p.clone(), "environment" => e.clone())
                    .set(expiry as f64);
            }
            for phase in &o.phases {
                gauge!("probe_phase_duration_seconds", "probe" => p.clone(), "environment" => e.clone(), "phase" => phase.name)
                    .set(phase.seconds.as_secs_f64());
            }
            if let Some(d) = &o.details {
                for (name, value) in d.gauges() {
                    gauge!(name, "probe" => p.clone(), "environment" => e.clone()).set(value);
                }
            }
            // The whole run is the step named after its kind; a flow adds
            // one series per step.
            for (_, latency) in crate::telemetry::measure::samples_of(o) {
                if let Some(latency) = latency {
                    histogram!(DURATION_HISTOGRAM, "probe" => p.clone(), "environment" => e.clone(), "step" => o.kind)
                        .record(latency.as_secs_f64());
                }
            }
            for step in &o.steps {
                let labels = [
                    ("probe", p.clone()),
                    ("environment", e.clone()),
                    ("step", step.name.clone()),
                ];
                if step.attempts == 0 {
                    continue;
                }
                gauge!("probe_step_success", &labels).set(if step.success { 1.0 } else { 0.0 });
                gauge!("probe_step_duration_seconds", &labels).set(step.duration.as_secs_f64());
                if step.responded {
                    histogram!(DURATION_HISTOGRAM, &labels).record(step.duration.as_secs_f64());
                }
            }
            if let Some(w) = &o.workload {
                for (kind, n) in [
                    ("sent", w.sent),
                    ("dropped", w.dropped),
                    ("ok", w.ok),
                    ("failed", w.failed),
                ] {
                    counter!("synthmon_workload_requests_total", "probe" => p.clone(), "environment" => e.clone(), "result" => kind)
                        .increment(n);
                }
                gauge!("synthmon_workload_rate", "probe" => p.clone(), "environment" => e.clone())
                    .set(w.rate);
                for (result, n) in [
                    ("rejected", w.anomalies.rejected),
                    ("unexpected", w.anomalies.unexpected),
                ] {
                    counter!("synthmon_anomalies_total", "probe" => p.clone(), "environment" => e.clone(), "result" => result)
                        .increment(n);
                }
            }
            for t in &o.thresholds {
                let labels = [
                    ("probe", p.clone()),
                    ("environment", e.clone()),
                    ("threshold", t.threshold.clone()),
                ];
                gauge!("synthmon_threshold_failing", &labels)
                    .set(if t.state == State::Failing { 1.0 } else { 0.0 });
                gauge!("synthmon_threshold_degraded", &labels)
                    .set(if t.state == State::Degraded { 1.0 } else { 0.0 });
                if let Some(v) = t.observed {
                    gauge!("synthmon_threshold_observed", &labels).set(v);
                }
            }
        });
    }

    /// A slot skipped because the pair's previous run was still in flight.
    pub fn skipped_overlap(&self, probe: &str, environment: &str) {
        let Some(reg) = self.probes() else { return };
        reg.with(|| {
            counter!("synthmon_skipped_overlaps_total", "probe" => probe.to_owned(), "environment" => environment.to_owned())
                .increment(1);
        });
    }

    /// How late a run started against its slot.
    pub fn schedule_lag(&self, probe: &str, environment: &str, lag: Duration) {
        let Some(reg) = self.probes() else { return };
        reg.with(|| {
            gauge!("synthmon_schedule_lag_seconds", "probe" => probe.to_owned(), "environment" => environment.to_owned())
                .set(lag.as_secs_f64());
        });
    }

    /// A pair's alert state: 0 ok, 1 degraded, 2 failing.
    pub fn alert_state(&self, probe: &str, environment: &str, state: f64) {
        let Some(reg) = self.probes() else { return };
        reg.with(|| {
            gauge!("synthmon_alert_state", "probe" => probe.to_owned(), "environment" => environment.to_owned())
                .set(state);
        });
    }

    /// Delivery totals of one receiver (counters since start) and its
    /// outbox: pending notifications and the age of the oldest.
    pub fn receiver(
        &self,
        name: &str,
        totals: [(&'static str, u64); 4],
        pending: u64,
        oldest_age: f64,
    ) {
        self.process.with(|| {
            for (result, n) in totals {
                counter!("synthmon_notifications_total", "receiver" => name.to_owned(), "result" => result)
                    .absolute(n);
            }
            gauge!("synthmon_outbox_pending", "receiver" => name.to_owned()).set(pending as f64);
            gauge!("synthmon_outbox_oldest_age_seconds", "receiver" => name.to_owned()).set(oldest_age);
        });
    }

    /// The outbox's own health: failed commits, notifications held in
    /// memory meanwhile, and those dropped past the hold's bound.
    pub fn outbox_store(&self, write_failures: u64, unwritten: u64, dropped: u64) {
        self.process.with(|| {
            counter!("synthmon_outbox_write_failures_total").absolute(write_failures);
            gauge!("synthmon_outbox_unwritten").set(unwritten as f64);
            counter!("synthmon_outbox_dropped_total").absolute(dropped);
        });
    }

    pub fn reload(&self, ok: bool) {
        self.process.with(|| {
            counter!("synthmon_config_reloads_total", "result" => if ok { "ok" } else { "failed" })
                .increment(1);
        });
    }

    pub fn missed(&self, n: u64) {
        self.process
            .with(|| counter!("synthmon_missed_runs_total").increment(n));
    }

    pub fn dropped_outcome(&self) {
        self.process
            .with(|| counter!("synthmon_dropped_outcomes_total").increment(1));
    }

    /// The exposition text: process series (collected now) then probe series.
    pub fn render(&self, spans_dropped: u64) -> String {
        self.process.with(|| {
            self.collector.collect();
            counter!("synthmon_spans_dropped_total").absolute(spans_dropped);
            // Outside a runtime (never the case when the daemon serves
            // /metrics) the gauge keeps its last value.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                gauge!("synthmon_runtime_tasks").set(rt.metrics().num_alive_tasks() as f64);
            }
        });
        let mut out = self.process.handle.render();
        // The `metrics` crate's counters are whole numbers, so the process
        // collector truncates CPU time to seconds and a daemon using less
        // than a second showed 0. Write the sample with its fraction.
        if let Some(cpu) = metrics_process::collector::collect().cpu_seconds_total {
            out = with_sample(&out, "process_cpu_seconds_total", cpu);
        }
        if let Some(reg) = self.probes() {
            out.push_str(&reg.handle.render());
        }
        out
    }

    /// Drains pending histogram samples into buckets (keeps memory flat
    /// when nobody scrapes).
    pub fn upkeep(&self) {
        self.process.handle.run_upkeep();
        if let Some(reg) = self.probes() {
            reg.handle.run_upkeep();
        }
    }
}

/// `text` with the value of every sample of `name` (any labels) replaced
/// by `value`.
fn with_sample(text: &str, name: &str, value: f64) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let is_sample = line
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'));
        match line.rsplit_once(' ') {
            Some((series, _)) if is_sample => {
                out.push_str(series);
                out.push(' ');
                out.push_str(&format!("{value:.3}"));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn with_labels(mut b: PrometheusBuilder, labels: &[(String, String)]) -> PrometheusBuilder {
    for (k, v) in labels {
        b = b.add_global_label(k.clone(), v.clone());
    }
    b
}

fn describe_probe_series() {
    describe_gauge!(
        "probe_success",
        "Whether the last run of the probe succeeded (1) or not (0)."
    );
    describe_gauge!(
        "probe_duration_seconds",
        Unit::Seconds,
        "How long the last run took."
    );
    describe_gauge!(
        "probe_http_duration_seconds",
        Unit::Seconds,
        "Duration of the last run's HTTP phases: resolve, connect, tls, processing, transfer."
    );
    describe_gauge!(
        "probe_http_status_code",
        "Status code of the last response (0 without one)."
    );
    describe_gauge!(
        "probe_http_redirects",
        "Redirects followed by the last run."
    );
    describe_gauge!(
        "probe_http_ssl",
        "Whether the last run's final response came over TLS."
    );
    describe_gauge!(
        "probe_http_uncompressed_body_length",
        Unit::Bytes,
        "Length of the last response body after decompression."
    );
    describe_gauge!(
        "probe_ssl_earliest_cert_expiry",
        Unit::Seconds,
        "Earliest notAfter of the certificates the peer showed, Unix seconds."
    );
    // Each kind declares the gauges its facts export.
    for gauge in crate::probe::KINDS.iter().flat_map(|k| k.gauges) {
        if gauge.seconds {
            describe_gauge!(gauge.name, Unit::Seconds, gauge.help);
        } else {
            describe_gauge!(gauge.name, gauge.help);
        }
    }
    describe_gauge!(
        "probe_phase_duration_seconds",
        Unit::Seconds,
        "Duration of the last run's phases, for the kinds other than http."
    );
    describe_gauge!(
        "probe_step_success",
        "Whether a flow step succeeded (1) in the last run."
    );
    describe_gauge!(
        "probe_step_duration_seconds",
        Unit::Seconds,
        "How long a flow step took in the last run, until-polling included."
    );
    describe_counter!(
        "synthmon_workload_requests_total",
        "Workload requests by result: sent, dropped at the concurrency cap, ok, failed."
    );
    describe_gauge!(
        "synthmon_workload_rate",
        "Achieved send rate of the last workload run, per second."
    );
    describe_counter!(
        "synthmon_anomalies_total",
        "Injected anomalies: rejected as expected, or not."
    );
    describe_counter!(
        "synthmon_runs_total",
        "Probe runs by result and failure reason."
    );
    describe_histogram!(
        DURATION_HISTOGRAM,
        Unit::Seconds,
        "Latency of runs that got a response, with buckets at every configured threshold."
    );
    describe_gauge!(
        "synthmon_threshold_failing",
        "Whether the threshold is failing (1) over its window."
    );
    describe_gauge!(
        "synthmon_threshold_degraded",
        "Whether the threshold is degraded (1) over its window."
    );
    describe_gauge!(
        "synthmon_threshold_observed",
        "The aggregate the threshold judges: seconds for latencies, a ratio for rates."
    );
    describe_counter!(
        "synthmon_skipped_overlaps_total",
        "Slots skipped because the previous run of the pair was still in flight."
    );
    describe_gauge!(
        "synthmon_schedule_lag_seconds",
        Unit::Seconds,
        "How late the last run started against its slot."
    );
    describe_gauge!(
        "synthmon_alert_state",
        "Alert state of the pair: 0 ok, 1 degraded, 2 failing."
    );
}

#[cfg(test)]
mod tests {
    use super::with_sample;

    #[test]
    fn cpu_seconds_keep_their_fraction() {
        let text = "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total{instance=\"a\"} 0\nprocess_cpu_seconds_total_other 7\nprocess_open_fds 9\n";
        assert_eq!(
            with_sample(text, "process_cpu_seconds_total", 0.25),
            "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total{instance=\"a\"} 0.250\nprocess_cpu_seconds_total_other 7\nprocess_open_fds 9\n"
        );
    }
}
