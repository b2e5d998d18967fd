//! Prometheus metrics, served by the daemon at `/metrics`. Two parts,
//! rendered one after the other:
//! - the **process** registry (`metrics` + `metrics-exporter-prometheus`)
//!   lives as long as the process: config reloads, missed runs, dropped
//!   outcomes and spans, build info, the schedule-lag histogram, delivery
//!   and history health, and the standard `process_*` series (CPU, RSS,
//!   open fds) and the runtime's live task count (`synthmon_runtime_tasks`)
//!   collected at scrape time;
//! - the **probe** series belong to one config generation: every series
//!   labelled by probe and environment, kept as plain fields per pair by
//!   [`crate::telemetry::series`] (the exporter's registry cost 6 KB and
//!   ~15 label-keyed lookups per probe and run) and the latency families
//!   of [`crate::telemetry::latency`] (buckets per probe, at its
//!   thresholds). A reload starts a new generation, so the series of
//!   removed probes disappear at once; the counters and histograms of the
//!   others restart from zero, which Prometheus' `rate()` and `increase()`
//!   treat as a counter reset, as after a restart.
//!
//! Core probe series keep blackbox_exporter's names (`probe_success`,
//! `probe_duration_seconds`, `probe_http_duration_seconds{phase}`, …). Labels
//! are bounded: probe, environment, step, phase, result, reason and the
//! threshold as written — never a run id, error text or URL. The daemon's
//! `instance` and `location` are not on every series (Prometheus' target
//! labels carry them at no cost per series); they are the labels of one
//! `synthmon_location_info` series, with the shard (`shard="1/3"`) when the
//! daemon runs one of several. Nothing is exported that is constant
//! by construction: a threshold without a degraded level has no
//! `synthmon_threshold_degraded` series.
//!
//! Memory stays flat without scrapes: `upkeep` (run every few seconds by
//! the daemon) drains the schedule-lag histogram's samples into its
//! buckets; the latency families count into fixed buckets as they go.

use crate::config::DaemonConfig;
use crate::outcome::Outcome;
use crate::probe::Probe;
use crate::telemetry::series::Table;
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub use crate::telemetry::latency::DURATION_HISTOGRAM;

/// How late runs start against their slots: one histogram for the
/// process. The lag is the scheduler's and the runtime's (a busy runtime
/// delays every pair alike), and per pair its buckets would cost more
/// than all of a probe's other series.
pub const SCHEDULE_LAG: &str = "synthmon_schedule_lag_seconds";

/// [`SCHEDULE_LAG`]'s buckets, in seconds: 100 µs (a healthy loop; a
/// p99 under 1 ms can be read off them) to 10 s (a stalled one).
pub const SCHEDULE_LAG_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

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

/// The series of one config generation.
#[derive(Default)]
struct Generation {
    series: Mutex<Table>,
    /// Updates made while a scrape held `series`, in the order they came:
    /// applied by whoever takes the table next (the next update or
    /// render), so a run's update never waits for a render. At most a
    /// render's worth of updates: the render only writes to memory.
    backlog: Mutex<Vec<Deferred>>,
}

/// An update that found the series table held.
enum Deferred {
    Record(Box<Outcome>),
    SkippedOverlap(String, String),
    AlertState(String, String, f64),
    Slo {
        probe: String,
        environment: String,
        objective: f64,
        remaining: f64,
        burn: Vec<(String, f64)>,
    },
}

impl Deferred {
    fn apply(self, table: &mut Table) {
        match self {
            Deferred::Record(o) => table.record(&o),
            Deferred::SkippedOverlap(p, e) => table.skipped_overlap(&p, &e),
            Deferred::AlertState(p, e, state) => table.alert_state(&p, &e, state),
            Deferred::Slo {
                probe,
                environment,
                objective,
                remaining,
                burn,
            } => table.slo(&probe, &environment, objective, remaining, &burn),
        }
    }
}

impl Generation {
    /// Applies an update to the table, or, while a scrape holds it, leaves
    /// it (made by `defer`) in the backlog. Never waits for a render: the
    /// daemon runs one async worker, and waiting on it stalled every run
    /// due meanwhile; waiting off it (`block_in_place`) handed the worker
    /// to another thread each time, whose allocator pages stayed resident
    /// (at 1,000 probes, four scrapes left +3.5 MiB of anonymous memory;
    /// with the backlog, +1.2 MiB).
    fn update(&self, apply: impl FnOnce(&mut Table), defer: impl FnOnce() -> Deferred) {
        let Ok(mut backlog) = self.backlog.lock() else {
            return;
        };
        match self.series.try_lock() {
            Ok(mut table) => {
                // What waited goes first, so a pair's last value is its
                // latest.
                for d in backlog.drain(..) {
                    d.apply(&mut table);
                }
                drop(backlog);
                apply(&mut table);
            }
            Err(std::sync::TryLockError::WouldBlock) => backlog.push(defer()),
            Err(std::sync::TryLockError::Poisoned(_)) => {}
        }
    }

    /// The table for a render (off the async worker: it may wait for an
    /// update to finish), with the backlog applied.
    fn for_render(&self) -> Option<std::sync::MutexGuard<'_, Table>> {
        let mut table = self.series.lock().ok()?;
        if let Ok(mut backlog) = self.backlog.lock() {
            for d in backlog.drain(..) {
                d.apply(&mut table);
            }
        }
        Some(table)
    }
}

pub struct Metrics {
    /// The length of the last scrape's text.
    last_len: std::sync::atomic::AtomicUsize,
    process: Registry,
    /// [`SCHEDULE_LAG`], registered once: a run records into it without a
    /// lookup in the registry by name.
    schedule_lag: metrics::Histogram,
    collector: metrics_process::Collector,
    probes: RwLock<Arc<Generation>>,
}

impl Metrics {
    /// The registries for a daemon with `daemon`'s labels and `probes`.
    pub fn new(daemon: &DaemonConfig, probes: &[Probe]) -> Metrics {
        Metrics::with_shard(daemon, probes, None)
    }

    /// [`Metrics::new`] for one shard of several: `shard` (`I/N`) is a
    /// label of `synthmon_location_info`; `probes` are the shard's.
    pub fn with_shard(daemon: &DaemonConfig, probes: &[Probe], shard: Option<String>) -> Metrics {
        // Named apart from `instance`: Prometheus' own target label, which
        // joins this series to the others (`* on (instance) group_left
        // (location)`) and which `honor_labels` would let it overwrite.
        let mut location: Vec<(&'static str, String)> = Vec::new();
        for (k, v) in [
            ("instance_name", &daemon.instance),
            ("location", &daemon.location),
            ("shard", &shard.unwrap_or_default()),
        ] {
            if !v.is_empty() {
                location.push((k, v.clone()));
            }
        }
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(SCHEDULE_LAG.into()), SCHEDULE_LAG_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let process = Registry::new(builder);
        let collector = metrics_process::Collector::default();
        process.with(|| {
            collector.describe();
            describe_counter!("synthmon_config_reloads_total", "Config reloads by result (ok, failed).");
            describe_counter!("synthmon_missed_runs_total", "Schedule slots skipped because the scheduler was stalled or a cron fire could not be queued.");
            describe_counter!("synthmon_dropped_outcomes_total", "Run outcomes the telemetry pipeline could not take in time.");
            describe_counter!("synthmon_spans_dropped_total", "Trace spans dropped since start (export queue full, collector down or slow).");
            describe_gauge!("synthmon_build_info", "Build information; always 1.");
            describe_gauge!("synthmon_location_info", "The daemon's [daemon] instance (as instance_name) and location, and its --shard (I/N, from 0) when it runs one of several; always 1. Join on Prometheus' instance label, or set them as target labels.");
            describe_gauge!("synthmon_shard_pairs", "(probe, environment) pairs this daemon runs: its shard's, or every pair without --shard.");
            describe_histogram!(SCHEDULE_LAG, Unit::Seconds, "How late runs started against their schedule slots, all pairs together.");
            describe_gauge!("synthmon_runtime_tasks", "Tokio tasks alive in the daemon's runtime at scrape time (runs, their connections, listeners, workers).");
            describe_counter!("synthmon_notifications_total", "Notification delivery attempts by receiver and result: delivered, retried (transient failure, retry scheduled), dead (permanent failure, dead letter), failed (every failed attempt).");
            describe_gauge!("synthmon_outbox_pending", "Notifications waiting in the outbox, by receiver.");
            describe_gauge!("synthmon_outbox_oldest_age_seconds", Unit::Seconds, "Age of the oldest pending notification, by receiver (0 when none).");
            describe_counter!("synthmon_outbox_write_failures_total", "Commits of new notifications to the outbox that failed (disk full, read-only state directory); they are retried.");
            describe_gauge!("synthmon_outbox_unwritten", "Notifications held in memory because the outbox cannot be written; written when it can be.");
            describe_counter!("synthmon_outbox_dropped_total", "Notifications dropped because the outbox stayed unwritable until the in-memory hold was full.");
            describe_gauge!("synthmon_history_up", "1 while the run history is being written; 0 when it is off, could not be opened (corrupt or foreign file) or its last write failed.");
            describe_gauge!("synthmon_self_check_up", "1 while at least one connectivity self-check target ([daemon] self_check) answers; 0 while every one fails and the monitor takes itself to be offline. Absent when the self-check is off.");
            describe_counter!("synthmon_history_runs_written_total", "Runs and flow steps written to the history.");
            describe_counter!("synthmon_history_write_failures_total", "History batches that could not be written (and are lost).");
            describe_counter!("synthmon_history_dropped_total", "History entries dropped because the writer's queue was full.");
            gauge!("synthmon_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            if !location.is_empty() {
                gauge!("synthmon_location_info", &location).set(1.0);
            }
            counter!("synthmon_config_reloads_total", "result" => "ok").absolute(0);
            counter!("synthmon_config_reloads_total", "result" => "failed").absolute(0);
            // Present from the start, so rate() and alert rules see a zero
            // rather than no series until the first event.
            counter!("synthmon_missed_runs_total").absolute(0);
            counter!("synthmon_dropped_outcomes_total").absolute(0);
            counter!("synthmon_spans_dropped_total").absolute(0);
        });
        let schedule_lag = process.with(|| histogram!(SCHEDULE_LAG));
        let metrics = Metrics {
            last_len: std::sync::atomic::AtomicUsize::new(0),
            process,
            schedule_lag,
            collector,
            probes: RwLock::new(Arc::new(Generation::default())),
        };
        metrics.reconfigure(probes);
        metrics
    }

    /// Starts a new probe registry for `probes` (see the module docs).
    pub fn reconfigure(&self, probes: &[Probe]) {
        let pairs: usize = probes.iter().map(|p| p.environments.len()).sum();
        self.process
            .with(|| gauge!("synthmon_shard_pairs").set(pairs as f64));
        let generation = Generation {
            series: Mutex::new(Table::new(probes)),
            backlog: Mutex::default(),
        };
        if let Ok(mut slot) = self.probes.write() {
            *slot = Arc::new(generation);
        }
    }

    fn generation(&self) -> Option<Arc<Generation>> {
        self.probes.read().ok().map(|r| r.clone())
    }

    /// Records one run's outcome (thresholds already evaluated).
    pub fn record(&self, o: &Outcome) {
        if let Some(generation) = self.generation() {
            generation.update(|t| t.record(o), || Deferred::Record(Box::new(o.clone())));
        }
    }

    /// A slot skipped because the pair's previous run was still in flight.
    pub fn skipped_overlap(&self, probe: &str, environment: &str) {
        if let Some(generation) = self.generation() {
            generation.update(
                |t| t.skipped_overlap(probe, environment),
                || Deferred::SkippedOverlap(probe.into(), environment.into()),
            );
        }
    }

    /// How late a run started against its slot (see [`SCHEDULE_LAG`]).
    pub fn schedule_lag(&self, lag: Duration) {
        self.schedule_lag.record(lag.as_secs_f64());
    }

    /// A pair's alert state: 0 ok, 1 degraded, 2 failing.
    pub fn alert_state(&self, probe: &str, environment: &str, state: f64) {
        if let Some(generation) = self.generation() {
            generation.update(
                |t| t.alert_state(probe, environment, state),
                || Deferred::AlertState(probe.into(), environment.into(), state),
            );
        }
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

    /// The history writer's health: up, runs written, failed batches,
    /// entries dropped at a full queue.
    pub fn history(&self, up: bool, written: u64, failures: u64, dropped: u64) {
        self.process.with(|| {
            gauge!("synthmon_history_up").set(if up { 1.0 } else { 0.0 });
            counter!("synthmon_history_runs_written_total").absolute(written);
            counter!("synthmon_history_write_failures_total").absolute(failures);
            counter!("synthmon_history_dropped_total").absolute(dropped);
        });
    }

    /// The connectivity self-check's verdict: 1 online, 0 offline.
    pub fn self_check(&self, up: bool) {
        self.process.with(|| {
            gauge!("synthmon_self_check_up").set(if up { 1.0 } else { 0.0 });
        });
    }

    /// A pair's SLO: its objective, the error budget left over its window,
    /// and the burn rate over each window its rules read (`window` in
    /// Prometheus' duration syntax, e.g. `1h`, `5m`, `3d`).
    pub fn slo(
        &self,
        probe: &str,
        environment: &str,
        objective: f64,
        remaining: f64,
        burn: &[(String, f64)],
    ) {
        if let Some(generation) = self.generation() {
            generation.update(
                |t| t.slo(probe, environment, objective, remaining, burn),
                || Deferred::Slo {
                    probe: probe.into(),
                    environment: environment.into(),
                    objective,
                    remaining,
                    burn: burn.to_vec(),
                },
            );
        }
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
        // Sized for the last scrape: at 10,000 probes the text is ~25 MB,
        // and growing it by doubling held up to twice that at once.
        let last = self.last_len.load(std::sync::atomic::Ordering::Relaxed);
        let mut out = String::with_capacity(last + last / 16);
        self.render_to(spans_dropped, &mut out);
        self.last_len
            .store(out.len(), std::sync::atomic::Ordering::Relaxed);
        out
    }

    /// [`Metrics::render`] into `out` as it is written (a compressing
    /// writer never holds the whole text).
    pub fn render_to(&self, spans_dropped: u64, out: &mut dyn std::fmt::Write) {
        self.process.with(|| {
            self.collector.collect();
            counter!("synthmon_spans_dropped_total").absolute(spans_dropped);
            // Outside a runtime (never the case when the daemon serves
            // /metrics) the gauge keeps its last value.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                gauge!("synthmon_runtime_tasks").set(rt.metrics().num_alive_tasks() as f64);
            }
        });
        let mut process = self.process.handle.render();
        // The `metrics` crate's counters are whole numbers, so the process
        // collector truncates CPU time to seconds and a daemon using less
        // than a second showed 0. Write the sample with its fraction.
        if let Some(cpu) = metrics_process::collector::collect().cpu_seconds_total {
            process = with_sample(&process, "process_cpu_seconds_total", cpu);
        }
        let _ = out.write_str(&process);
        if let Some(generation) = self.generation()
            && let Some(series) = generation.for_render()
        {
            series.render(out);
        }
    }

    /// Drains pending histogram samples into buckets (keeps memory flat
    /// when nobody scrapes).
    pub fn upkeep(&self) {
        self.process.handle.run_upkeep();
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::with_sample;

    /// Updates made while a scrape holds the series table return at once
    /// (they never wait for a render, on the async worker or off it), and
    /// show in the next render in the order they were made: the next
    /// update applies them before itself, and so does a render.
    #[test]
    fn updates_made_during_a_scrape_do_not_wait_and_land_in_order() {
        use std::sync::Arc;
        use std::sync::mpsc::channel;
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            "[environments.e]\nbase_url = \"http://127.0.0.1:9\"\n",
        )
        .unwrap();
        let Ok(loaded) = crate::config::load_settings(&crate::config::LoadOptions {
            config_path: Some(dir.path().join("config.toml")),
            overrides: vec![],
        }) else {
            panic!("the test's config does not load");
        };
        let metrics = Arc::new(super::Metrics::new(&loaded.settings.daemon, &[]));
        // A "scrape" that holds the table while `during` runs on another
        // thread, which must finish while the table is still held.
        let while_held = |during: Box<dyn FnOnce(&super::Metrics) + Send>| {
            let generation = metrics.generation().unwrap();
            let (held_tx, held_rx) = channel();
            let (release_tx, release_rx) = channel::<()>();
            let scrape = std::thread::spawn(move || {
                let _table = generation.series.lock().unwrap();
                held_tx.send(()).unwrap();
                let _ = release_rx.recv_timeout(Duration::from_secs(30));
            });
            held_rx.recv().unwrap();
            let (done_tx, done_rx) = channel();
            let m = metrics.clone();
            std::thread::spawn(move || {
                during(&m);
                let _ = done_tx.send(());
            });
            let returned = done_rx.recv_timeout(Duration::from_secs(10));
            release_tx.send(()).unwrap();
            scrape.join().unwrap();
            assert!(
                returned.is_ok(),
                "an update waited for the scrape holding the table"
            );
        };
        let ids = crate::tagging::RunIds::generate();
        let outcome = crate::outcome::Outcome::new("p", "e", "http", &ids);
        while_held(Box::new(move |m| {
            m.record(&outcome);
            m.skipped_overlap("p", "e");
            m.alert_state("p", "e", 1.0);
        }));
        // Made after the scrape let go: it goes after what waited.
        metrics.alert_state("p", "e", 2.0);
        let text = metrics.render(0);
        assert!(
            text.contains("synthmon_runs_total{probe=\"p\",environment=\"e\","),
            "{text}"
        );
        assert!(
            text.contains("synthmon_skipped_overlaps_total{probe=\"p\",environment=\"e\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("synthmon_alert_state{probe=\"p\",environment=\"e\"} 2\n"),
            "{text}"
        );
        // Waiting with no update after it: the next render applies it.
        while_held(Box::new(|m| {
            m.alert_state("p", "e", 0.0);
            m.slo("p", "e", 0.99, 0.5, &[("1h".into(), 3.0)]);
        }));
        let text = metrics.render(0);
        assert!(
            text.contains("synthmon_alert_state{probe=\"p\",environment=\"e\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "synthmon_slo_burn_rate{probe=\"p\",environment=\"e\",window=\"1h\"} 3\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("synthmon_skipped_overlaps_total{probe=\"p\",environment=\"e\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn cpu_seconds_keep_their_fraction() {
        let text = "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total{instance=\"a\"} 0\nprocess_cpu_seconds_total_other 7\nprocess_open_fds 9\n";
        assert_eq!(
            with_sample(text, "process_cpu_seconds_total", 0.25),
            "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total{instance=\"a\"} 0.250\nprocess_cpu_seconds_total_other 7\nprocess_open_fds 9\n"
        );
    }
}
