//! The per-(probe, environment) series of `/metrics`, kept as plain fields
//! of one struct per pair and written as text at scrape time.
//!
//! Not through `metrics-exporter-prometheus` (which keeps the process
//! series): its registry holds each series as a hash-map key of label
//! strings, about 360 bytes a series and 6 KB a probe, and a run updating
//! its ~15 series paid a label-keyed lookup (hashing and comparing every
//! label, cloning the names into a new key) for each. Here a run finds its
//! pair once, by `&str`, and sets fields; a pair costs a few hundred bytes.
//!
//! Semantics are the registry's: a gauge keeps its last value until a run
//! sets it again (a kind gauge or a flow step a later run does not report
//! stays at its last value), counters count from the generation's start,
//! and a series appears with its first value. Families are written in a
//! fixed order, each under one `HELP`/`TYPE` and only when a pair has a
//! sample; pairs in probe, then environment order.

use crate::outcome::Outcome;
use crate::probe::Probe;
use crate::telemetry::latency::{Families, PairLatency, escape};
use crate::threshold::State;
use std::fmt::{Display, Write};

/// The series of one pair.
#[derive(Default)]
struct PairSeries {
    success: Option<f64>,
    duration: Option<f64>,
    /// `synthmon_runs_total` by (result, reason).
    runs: Vec<(&'static str, &'static str, u64)>,
    /// Present from the start for a probe that may retry.
    flaky: Option<u64>,
    skipped: u64,
    /// Boxed, like the other parts only some kinds have: a pair holds a
    /// pointer where it has none (10,000 pairs are held at once).
    http: Option<Box<Http>>,
    cert_expiry: Option<f64>,
    /// `probe_phase_duration_seconds` by phase.
    phases: Vec<(&'static str, f64)>,
    /// The kinds' own gauges, by name.
    gauges: Vec<(&'static str, f64)>,
    /// A flow step's success and duration, by step.
    steps: Vec<(Box<str>, f64, f64)>,
    workload: Option<Box<Workload>>,
    thresholds: Vec<Threshold>,
    alert_state: Option<f64>,
    slo: Option<Box<Slo>>,
    latency: PairLatency,
}

struct Http {
    /// resolve, connect, tls, processing, transfer.
    phases: [(&'static str, f64); 5],
    status: f64,
    redirects: f64,
    ssl: f64,
    version: f64,
    body: f64,
}

#[derive(Default)]
struct Workload {
    /// sent, dropped, ok, failed.
    requests: [u64; 4],
    rate: f64,
    /// rejected, unexpected.
    anomalies: [u64; 2],
}

struct Threshold {
    name: Box<str>,
    failing: f64,
    /// Only for a threshold with a degraded level.
    degraded: Option<f64>,
    observed: Option<f64>,
}

struct Slo {
    objective: f64,
    remaining: f64,
    burn: Vec<(String, f64)>,
}

const REQUESTS: [&str; 4] = ["sent", "dropped", "ok", "failed"];
const ANOMALIES: [&str; 2] = ["rejected", "unexpected"];

/// The value for `key` in a small list kept in first-seen order.
fn entry<K: PartialEq + Copy, V>(list: &mut Vec<(K, V)>, key: K, new: V) -> &mut V {
    let i = match list.iter().position(|(k, _)| *k == key) {
        Some(i) => i,
        None => {
            // Exactly: these lists stay a few entries long, and 10,000
            // pairs hold one each (doubling would leave half unused).
            list.reserve_exact(1);
            list.push((key, new));
            list.len() - 1
        }
    };
    &mut list[i].1
}

fn bit(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// The series of every pair of one config generation.
#[derive(Default)]
pub struct Table {
    /// Index into `series` by (probe, environment), sorted: searched by
    /// `&str`, so a run allocates no key, and in order for the scrape.
    /// A sorted `Vec` rather than maps: a map per probe costs a node of
    /// room for eleven environments (~0.4 KB a pair).
    index: Vec<(Box<str>, Box<str>, usize)>,
    series: Vec<PairSeries>,
    /// Each probe's latency buckets.
    families: Families,
}

impl Table {
    /// The counters Prometheus should see at zero before their first
    /// event: skipped overlaps of every pair, flaky runs of a probe that
    /// may retry.
    pub fn new(probes: &[Probe]) -> Table {
        let mut index: Vec<(Box<str>, Box<str>, usize)> = probes
            .iter()
            .flat_map(|p| {
                p.environments
                    .iter()
                    .map(|e| (p.name.as_str().into(), e.as_str().into(), 0))
            })
            .collect();
        index.sort_unstable();
        index.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        let mut series = Vec::with_capacity(index.len());
        for (i, slot) in index.iter_mut().enumerate() {
            slot.2 = i;
            series.push(PairSeries::default());
        }
        let mut table = Table {
            families: Families::new(probes),
            index,
            series,
        };
        for p in probes.iter().filter(|p| p.retries.is_some()) {
            for e in &p.environments {
                table.pair(&p.name, e).flaky = Some(0);
            }
        }
        table
    }

    /// The pair's series, added on its first use.
    fn pair(&mut self, probe: &str, environment: &str) -> &mut PairSeries {
        let i = self.slot(probe, environment);
        &mut self.series[i]
    }

    /// Where the pair's series are in `series`, added on its first use.
    fn slot(&mut self, probe: &str, environment: &str) -> usize {
        let found = self
            .index
            .binary_search_by(|(p, e, _)| (&**p, &**e).cmp(&(probe, environment)));
        match found {
            Ok(at) => self.index[at].2,
            Err(at) => {
                self.series.push(PairSeries::default());
                let i = self.series.len() - 1;
                self.index.insert(at, (probe.into(), environment.into(), i));
                i
            }
        }
    }

    /// One run's outcome (thresholds already evaluated).
    pub fn record(&mut self, o: &Outcome) {
        let i = self.slot(&o.probe, &o.environment);
        let s = &mut self.series[i];
        self.families.record(&mut s.latency, o);
        s.success = Some(bit(o.success));
        s.duration = Some(o.duration.as_secs_f64());
        let result = if o.success { "success" } else { "failure" };
        let reason = o.reason.map_or("", |r| r.as_str());
        match s
            .runs
            .iter_mut()
            .find(|(r, why, _)| *r == result && *why == reason)
        {
            Some((_, _, n)) => *n += 1,
            None => {
                s.runs.reserve_exact(1);
                s.runs.push((result, reason, 1));
            }
        }
        if o.flaky {
            *s.flaky.get_or_insert(0) += 1;
        }
        if let Some(h) = &o.http {
            let now = Http {
                phases: h.phases.named().map(|(phase, d)| (phase, d.as_secs_f64())),
                status: f64::from(h.status.unwrap_or(0)),
                redirects: f64::from(h.redirects),
                ssl: bit(h.tls),
                // As blackbox_exporter: 1.1 or 2, 0 before any connection.
                version: h.version.and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0),
                body: h.body_bytes as f64,
            };
            match &mut s.http {
                Some(known) => **known = now,
                None => s.http = Some(Box::new(now)),
            }
        }
        if let Some(expiry) = o.cert_expiry() {
            s.cert_expiry = Some(expiry as f64);
        }
        for phase in &o.phases {
            *entry(&mut s.phases, phase.name, 0.0) = phase.seconds.as_secs_f64();
        }
        if let Some(d) = &o.details {
            for (name, value) in d.gauges() {
                *entry(&mut s.gauges, name, 0.0) = value;
            }
        }
        for step in o.steps.iter().filter(|step| step.attempts > 0) {
            let (ok, took) = (bit(step.success), step.duration.as_secs_f64());
            match s.steps.iter_mut().find(|(name, _, _)| **name == *step.name) {
                Some(known) => (known.1, known.2) = (ok, took),
                None => {
                    s.steps.reserve_exact(1);
                    s.steps.push((step.name.as_str().into(), ok, took));
                }
            }
        }
        if let Some(w) = &o.workload {
            let series = s.workload.get_or_insert_with(Box::default);
            for (n, add) in series
                .requests
                .iter_mut()
                .zip([w.sent, w.dropped, w.ok, w.failed])
            {
                *n = n.saturating_add(add);
            }
            series.rate = w.rate;
            for (n, add) in series
                .anomalies
                .iter_mut()
                .zip([w.anomalies.rejected, w.anomalies.unexpected])
            {
                *n = n.saturating_add(add);
            }
        }
        if s.thresholds.is_empty() {
            s.thresholds.reserve_exact(o.thresholds.len());
        }
        for t in &o.thresholds {
            let i = match s.thresholds.iter().position(|k| *k.name == *t.threshold) {
                Some(i) => i,
                None => {
                    s.thresholds.push(Threshold {
                        name: t.threshold.as_str().into(),
                        failing: 0.0,
                        degraded: None,
                        observed: None,
                    });
                    s.thresholds.len() - 1
                }
            };
            let known = &mut s.thresholds[i];
            known.failing = bit(t.state == State::Failing);
            // Without a degraded level it could only ever say 0.
            if t.degraded.is_some() {
                known.degraded = Some(bit(t.state == State::Degraded));
            }
            if let Some(v) = t.observed {
                known.observed = Some(v);
            }
        }
    }

    pub fn skipped_overlap(&mut self, probe: &str, environment: &str) {
        self.pair(probe, environment).skipped += 1;
    }

    pub fn alert_state(&mut self, probe: &str, environment: &str, state: f64) {
        self.pair(probe, environment).alert_state = Some(state);
    }

    pub fn slo(
        &mut self,
        probe: &str,
        environment: &str,
        objective: f64,
        remaining: f64,
        burn: &[(String, f64)],
    ) {
        self.pair(probe, environment).slo = Some(Box::new(Slo {
            objective,
            remaining,
            burn: burn.to_vec(),
        }));
    }

    /// Every family in the text format.
    pub fn render(&self, out: &mut dyn Write) {
        let pairs: Vec<(&str, &str, &PairSeries)> = self
            .index
            .iter()
            .filter_map(|(p, e, i)| Some((&**p, &**e, self.series.get(*i)?)))
            .collect();
        let gauge = |out: &mut dyn Write,
                     name: &str,
                     help: &str,
                     get: &dyn Fn(&PairSeries) -> Option<f64>| {
            let mut f = Family::new(out, name, "gauge", help);
            for (p, e, s) in &pairs {
                if let Some(v) = get(s) {
                    f.sample(p, e, &[], Value(v));
                }
            }
        };
        let counter = |out: &mut dyn Write,
                       name: &str,
                       help: &str,
                       get: &dyn Fn(&PairSeries) -> Option<u64>| {
            let mut f = Family::new(out, name, "counter", help);
            for (p, e, s) in &pairs {
                if let Some(v) = get(s) {
                    f.sample(p, e, &[], v);
                }
            }
        };
        gauge(
            out,
            "probe_success",
            "Whether the last run of the probe succeeded (1) or not (0).",
            &|s| s.success,
        );
        gauge(
            out,
            "probe_duration_seconds",
            "How long the last run took.",
            &|s| s.duration,
        );
        {
            let mut f = Family::new(
                out,
                "synthmon_runs_total",
                "counter",
                "Probe runs by result and failure reason.",
            );
            for (p, e, s) in &pairs {
                for (result, reason, n) in &s.runs {
                    f.sample(p, e, &[("result", result), ("reason", reason)], n);
                }
            }
        }
        counter(
            out,
            "synthmon_probe_flaky_total",
            "Runs that passed only after a retry (the probe's `retries`); they count as successes in synthmon_runs_total.",
            &|s| s.flaky,
        );
        counter(
            out,
            "synthmon_skipped_overlaps_total",
            "Slots skipped because the previous run of the pair was still in flight.",
            &|s| Some(s.skipped),
        );
        {
            let mut f = Family::new(
                out,
                "probe_http_duration_seconds",
                "gauge",
                "Duration of the last run's HTTP phases: resolve, connect, tls, processing, transfer.",
            );
            for (p, e, s) in &pairs {
                for (phase, v) in s.http.iter().flat_map(|h| h.phases) {
                    f.sample(p, e, &[("phase", phase)], Value(v));
                }
            }
        }
        gauge(
            out,
            "probe_http_status_code",
            "Status code of the last response (0 without one).",
            &|s| s.http.as_ref().map(|h| h.status),
        );
        gauge(
            out,
            "probe_http_redirects",
            "Redirects followed by the last run.",
            &|s| s.http.as_ref().map(|h| h.redirects),
        );
        gauge(
            out,
            "probe_http_ssl",
            "Whether the last run's final response came over TLS.",
            &|s| s.http.as_ref().map(|h| h.ssl),
        );
        gauge(
            out,
            "probe_http_version",
            "HTTP version of the last response: 1.1 or 2 (0 without a connection).",
            &|s| s.http.as_ref().map(|h| h.version),
        );
        gauge(
            out,
            "probe_http_uncompressed_body_length",
            "Length of the last response body after decompression.",
            &|s| s.http.as_ref().map(|h| h.body),
        );
        gauge(
            out,
            "probe_ssl_earliest_cert_expiry",
            "Earliest notAfter of the certificates the peer showed, Unix seconds.",
            &|s| s.cert_expiry,
        );
        // Each kind declares the gauges its facts export, with their help.
        let mut written: Vec<&str> = Vec::new();
        for spec in crate::probe::KINDS.iter().flat_map(|k| k.gauges) {
            // Kinds that shake hands share the TLS gauges: one family each.
            if written.contains(&spec.name) {
                continue;
            }
            written.push(spec.name);
            let mut f = Family::new(out, spec.name, "gauge", spec.help);
            for (p, e, s) in &pairs {
                for (_, v) in s.gauges.iter().filter(|(n, _)| *n == spec.name) {
                    f.sample(p, e, &[], Value(*v));
                }
            }
        }
        {
            let mut f = Family::new(
                out,
                "probe_phase_duration_seconds",
                "gauge",
                "Duration of the last run's phases, for the kinds other than http.",
            );
            for (p, e, s) in &pairs {
                for (phase, v) in &s.phases {
                    f.sample(p, e, &[("phase", phase)], Value(*v));
                }
            }
        }
        for (name, help, which) in [
            (
                "probe_step_success",
                "Whether a flow step succeeded (1) in the last run.",
                0,
            ),
            (
                "probe_step_duration_seconds",
                "How long a flow step took in the last run, until-polling included.",
                1,
            ),
        ] {
            let mut f = Family::new(out, name, "gauge", help);
            for (p, e, s) in &pairs {
                for (step, ok, took) in &s.steps {
                    f.sample(
                        p,
                        e,
                        &[("step", step)],
                        Value(if which == 0 { *ok } else { *took }),
                    );
                }
            }
        }
        {
            let mut f = Family::new(
                out,
                "synthmon_workload_requests_total",
                "counter",
                "Workload requests by result: sent, dropped at the concurrency cap, ok, failed.",
            );
            for (p, e, s) in &pairs {
                for (result, n) in s
                    .workload
                    .iter()
                    .flat_map(|w| REQUESTS.iter().zip(w.requests))
                {
                    f.sample(p, e, &[("result", result)], n);
                }
            }
        }
        gauge(
            out,
            "synthmon_workload_rate",
            "Achieved send rate of the last workload run, per second.",
            &|s| s.workload.as_ref().map(|w| w.rate),
        );
        {
            let mut f = Family::new(
                out,
                "synthmon_anomalies_total",
                "counter",
                "Injected anomalies: rejected as expected, or not.",
            );
            for (p, e, s) in &pairs {
                for (result, n) in s
                    .workload
                    .iter()
                    .flat_map(|w| ANOMALIES.iter().zip(w.anomalies))
                {
                    f.sample(p, e, &[("result", result)], n);
                }
            }
        }
        for (name, help, which) in [
            (
                "synthmon_threshold_failing",
                "Whether the threshold is failing (1) over its window.",
                0,
            ),
            (
                "synthmon_threshold_degraded",
                "Whether the threshold is degraded (1) over its window.",
                1,
            ),
            (
                "synthmon_threshold_observed",
                "The aggregate the threshold judges: seconds for latencies, a ratio for rates.",
                2,
            ),
        ] {
            let mut f = Family::new(out, name, "gauge", help);
            for (p, e, s) in &pairs {
                for t in &s.thresholds {
                    let v = match which {
                        0 => Some(t.failing),
                        1 => t.degraded,
                        _ => t.observed,
                    };
                    if let Some(v) = v {
                        f.sample(p, e, &[("threshold", &t.name)], Value(v));
                    }
                }
            }
        }
        gauge(
            out,
            "synthmon_alert_state",
            "Alert state of the pair: 0 ok, 1 degraded, 2 failing.",
            &|s| s.alert_state,
        );
        gauge(
            out,
            "synthmon_slo_objective_ratio",
            "The SLO's objective: the share of good events promised over its window.",
            &|s| s.slo.as_ref().map(|o| o.objective),
        );
        gauge(
            out,
            "synthmon_slo_error_budget_remaining_ratio",
            "Share of the SLO's error budget left over its window (1 untouched, 0 spent, below 0 overspent), from the persisted history.",
            &|s| s.slo.as_ref().map(|o| o.remaining),
        );
        {
            let mut f = Family::new(
                out,
                "synthmon_slo_burn_rate",
                "gauge",
                "How fast the error budget burns over the window: error rate over (1 - objective); 1 spends exactly the budget over the SLO window.",
            );
            for (p, e, s) in &pairs {
                for (window, rate) in s.slo.iter().flat_map(|o| &o.burn) {
                    f.sample(p, e, &[("window", window)], Value(*rate));
                }
            }
        }
        Families::render(pairs.iter().map(|(p, e, s)| (*p, *e, &s.latency)), out);
    }
}

/// A float sample as Prometheus reads it (`+Inf`, not Rust's `inf`).
struct Value(f64);

impl Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            v if v.is_nan() => f.write_str("NaN"),
            v if v == f64::INFINITY => f.write_str("+Inf"),
            v if v == f64::NEG_INFINITY => f.write_str("-Inf"),
            v => write!(f, "{v}"),
        }
    }
}

/// One family being written: its `HELP` and `TYPE` go out with its first
/// sample, so a family without samples writes nothing.
struct Family<'a> {
    out: &'a mut dyn Write,
    name: &'a str,
    kind: &'static str,
    help: &'a str,
    started: bool,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut dyn Write, name: &'a str, kind: &'static str, help: &'a str) -> Family<'a> {
        Family {
            out,
            name,
            kind,
            help,
            started: false,
        }
    }

    fn sample(
        &mut self,
        probe: &str,
        environment: &str,
        extra: &[(&str, &str)],
        value: impl Display,
    ) {
        if !self.started {
            self.started = true;
            let _ = writeln!(self.out, "# HELP {} {}", self.name, self.help);
            let _ = writeln!(self.out, "# TYPE {} {}", self.name, self.kind);
        }
        let _ = write!(
            self.out,
            "{}{{probe=\"{}\",environment=\"{}\"",
            self.name,
            escape(probe),
            escape(environment)
        );
        for (k, v) in extra {
            let _ = write!(self.out, ",{k}=\"{}\"", escape(v));
        }
        let _ = writeln!(self.out, "}} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Outcome, StepOutcome};
    use crate::tagging::RunIds;
    use std::time::Duration;

    fn run(probe: &str, environment: &str, success: bool) -> Outcome {
        let mut o = Outcome::new(probe, environment, "flow", &RunIds::generate());
        o.success = success;
        o.duration = Duration::from_millis(250);
        o
    }

    fn step(name: &str) -> StepOutcome {
        let mut s = StepOutcome::new(name, crate::outcome::Stage::Step);
        s.attempts = 1;
        s.success = true;
        s.duration = Duration::from_millis(20);
        s
    }

    #[test]
    fn families_are_written_once_in_pair_order_and_counters_count() {
        let mut table = Table::default();
        let mut first = run("b", "prod", true);
        first.steps = vec![step("create"), step("delete")];
        table.record(&first);
        table.record(&run("a", "x\"y", false));
        // A later run without the steps keeps their last values, as a
        // registry gauge would.
        table.record(&run("b", "prod", true));
        table.skipped_overlap("a", "x\"y");
        let mut out = String::new();
        table.render(&mut out);
        assert_eq!(
            out.matches("# TYPE probe_success gauge").count(),
            1,
            "{out}"
        );
        let a = out
            .find(r#"probe_success{probe="a",environment="x\"y"} 0"#)
            .unwrap_or(usize::MAX);
        let b = out
            .find(r#"probe_success{probe="b",environment="prod"} 1"#)
            .unwrap_or(0);
        assert!(a < b, "sorted by probe, label values escaped: {out}");
        assert!(
            out.contains(
                r#"synthmon_runs_total{probe="b",environment="prod",result="success",reason=""} 2"#
            ),
            "{out}"
        );
        assert!(
            out.contains(r#"synthmon_skipped_overlaps_total{probe="a",environment="x\"y"} 1"#),
            "{out}"
        );
        assert!(
            out.contains(
                r#"probe_step_duration_seconds{probe="b",environment="prod",step="delete"} 0.02"#
            ),
            "{out}"
        );
        // No HTTP run, no workload, no threshold: no such family at all.
        for absent in [
            "probe_http_status_code",
            "synthmon_workload_rate",
            "synthmon_threshold_failing",
        ] {
            assert!(!out.contains(absent), "{absent} in {out}");
        }
    }

    #[test]
    fn non_finite_values_are_written_as_prometheus_reads_them() {
        assert_eq!(Value(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(Value(f64::NEG_INFINITY).to_string(), "-Inf");
        assert_eq!(Value(f64::NAN).to_string(), "NaN");
        assert_eq!(Value(0.5).to_string(), "0.5");
        assert_eq!(Value(200.0).to_string(), "200");
    }
}
