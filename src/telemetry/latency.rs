//! The two latency families of `/metrics` that synthmon writes itself,
//! rather than through `metrics-exporter-prometheus`, because the exporter
//! can give a histogram one bucket set per metric name only, never one per
//! probe, and cannot drop a series whose window emptied:
//!
//! - `synthmon_probe_duration_seconds{probe,environment,step}`, a real
//!   histogram whose buckets are the probe's own ([`buckets`]): every
//!   latency threshold, the timeout and a few spread points, or the
//!   probe's `buckets = [...]` plus its thresholds;
//! - `synthmon_latency_seconds{probe,environment,quantile}`, the exact
//!   percentiles (nearest rank, within the HDR histogram's 1 %) of the
//!   window the probe's latency thresholds judge, as the measurement stage
//!   filled them into the outcome ([`crate::outcome::LatencySummary`]).
//!   Typed `summary` (a `quantile` label on a gauge fails `promtool check
//!   metrics`) without `_sum` and `_count`, which the histogram carries.
//!
//! Both belong to one config generation, like the rest of the probe
//! registry, and hold a fixed amount per series: memory does not grow
//! with runs or without scrapes.

use crate::outcome::{LatencySummary, Outcome};
use crate::probe::Probe;
use crate::threshold::Metric;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

pub const DURATION_HISTOGRAM: &str = "synthmon_probe_duration_seconds";
pub const LATENCY_SUMMARY: &str = "synthmon_latency_seconds";

/// The most boundaries a derived bucket set has (besides `+Inf`) unless
/// the thresholds alone are more: each boundary is one series per
/// (probe, environment, step).
pub const MAX_DERIVED_BUCKETS: usize = 10;
/// The most boundaries a probe's `buckets = [...]` may list.
pub const MAX_WRITTEN_BUCKETS: usize = 30;
/// The most boundaries a workload probe's derived set has: its fine
/// ladder spans up to ~2 decades.
pub const MAX_FINE_BUCKETS: usize = 40;
/// Spread points: 1, 2.5 and 5 times a power of ten (seconds).
const LADDER: [f64; 3] = [1.0, 2.5, 5.0];
/// A workload's spread points up to its highest threshold: the R20
/// preferred numbers (ISO 3), twenty a decade, each ~12 % above the last.
/// A straight line through a bucket that narrow is within ~2 % of a
/// smooth distribution's percentile, where 1–2.5–5 can be ~40 % off.
const FINE_LADDER: [f64; 20] = [
    1.0, 1.12, 1.25, 1.4, 1.6, 1.8, 2.0, 2.24, 2.5, 2.8, 3.15, 3.55, 4.0, 4.5, 5.0, 5.6, 6.3, 7.1,
    8.0, 9.0,
];
/// A fine spread point within this ratio of an anchor is left out (half
/// an R20 step).
const NEAR_FINE: f64 = 1.06;
/// Spread points start this many times below the lowest threshold (or
/// the timeout), and at 25 ms at the latest, so the body of the
/// distribution below the SLA is seen too.
const SPREAD_BELOW: f64 = 20.0;
const SPREAD_FROM: f64 = 0.025;
/// A spread point within this ratio of a threshold or the timeout adds
/// nothing beside it and is left out.
const NEAR: f64 = 1.5;
/// The quantiles of [`LATENCY_SUMMARY`].
const QUANTILES: [&str; 3] = ["0.5", "0.95", "0.99"];

/// Seconds at whole microseconds (the thresholds' resolution), so that
/// `0.025` prints as `0.025`.
fn at_us(seconds: f64) -> f64 {
    (seconds * 1e6).round() / 1e6
}

/// The latency limits of `probe`'s thresholds, failing and degraded
/// levels, in seconds (`min` thresholds aside: a floor says nothing about
/// where the distribution's tail is).
fn threshold_bounds(probe: &Probe) -> Vec<f64> {
    probe
        .thresholds
        .iter()
        .flat_map(|t| std::iter::once(&t.failing).chain(t.degraded.iter()))
        .filter(|c| c.metric.is_latency() && c.metric != Metric::Min && c.limit > 0.0)
        .map(|c| at_us(c.limit))
        .collect()
}

fn sort_dedup(v: &mut Vec<f64>) {
    v.retain(|x| x.is_finite() && *x > 0.0);
    v.sort_by(f64::total_cmp);
    v.dedup_by(|a, b| (*a - *b).abs() < 1e-7);
}

/// The histogram buckets of `probe`, in seconds, ascending (`+Inf`
/// implied):
///
/// - with `buckets = [...]` in the probe file: those, plus every latency
///   threshold;
/// - otherwise: every latency threshold and the timeout (the anchors),
///   plus spread points at 1, 2.5 and 5 × 10ⁿ from 1/20 of the lowest
///   anchor (25 ms at the latest) up to the highest, except where one
///   would sit within ×1.5 of an anchor; at most
///   [`MAX_DERIVED_BUCKETS`], spread points thinned where they are
///   densest, anchors always kept;
/// - for a workload probe, which records hundreds of latencies a run and
///   whose percentiles dashboards read with `histogram_quantile`, the
///   spread points up to its highest threshold (the timeout without one)
///   are the twenty-a-decade [`FINE_LADDER`] instead, leaving out any
///   within ×1.06 of an anchor; at most [`MAX_FINE_BUCKETS`].
pub fn buckets(probe: &Probe) -> Vec<f64> {
    let mut anchors = threshold_bounds(probe);
    if let Some(written) = &probe.buckets {
        anchors.extend(written.iter().map(|d| at_us(d.as_secs_f64())));
        sort_dedup(&mut anchors);
        return anchors;
    }
    let timeout = at_us(probe.timeout.as_secs_f64());
    let fine_to = probe
        .workload
        .as_ref()
        .map(|_| anchors.iter().copied().reduce(f64::max).unwrap_or(timeout));
    anchors.push(timeout);
    derive(anchors, fine_to)
}

/// The buckets of a probe the current config does not know (an outcome
/// that raced a reload): no thresholds, the default timeout.
fn fallback() -> Vec<f64> {
    derive(
        vec![at_us(crate::config::DEFAULT_TIMEOUT.as_secs_f64())],
        None,
    )
}

/// The derived set: the anchors and 1–2.5–5 spread points, at most
/// [`MAX_DERIVED_BUCKETS`]; with `fine_to` (a workload's), the
/// [`FINE_LADDER`] instead up to it and at most [`MAX_FINE_BUCKETS`].
fn derive(mut anchors: Vec<f64>, fine_to: Option<f64>) -> Vec<f64> {
    sort_dedup(&mut anchors);
    let (Some(&lowest), Some(&highest)) = (anchors.first(), anchors.last()) else {
        return anchors;
    };
    let from = (lowest / SPREAD_BELOW).min(SPREAD_FROM);
    let (mut spread, coarse_above, cap) = match fine_to {
        Some(to) => (
            ladder(&FINE_LADDER, from, to, &anchors, NEAR_FINE),
            to,
            MAX_FINE_BUCKETS,
        ),
        None => (Vec::new(), 0.0, MAX_DERIVED_BUCKETS),
    };
    spread.extend(
        ladder(&LADDER, from, highest, &anchors, NEAR)
            .into_iter()
            .filter(|x| *x > coarse_above),
    );
    assemble(&anchors, spread, cap)
}

/// `mantissas` × 10ⁿ within `from..=to`, except within ×`near` of an
/// anchor.
fn ladder(mantissas: &[f64], from: f64, to: f64, anchors: &[f64], near: f64) -> Vec<f64> {
    let is_near = |x: f64| anchors.iter().any(|a| x.max(*a) / x.min(*a) < near - 1e-9);
    let mut spread = Vec::new();
    let mut exponent = from.log10().floor() as i32;
    while 10f64.powi(exponent) <= to {
        for m in mantissas {
            // Through text, so 2.5e-2 is the double nearest 0.025.
            let x = format!("{m}e{exponent}").parse::<f64>().map_or(0.0, at_us);
            if x >= from && x <= to && !is_near(x) {
                spread.push(x);
            }
        }
        exponent += 1;
    }
    spread
}

/// Anchors and spread points in order, spread points thinned to `cap`.
fn assemble(anchors: &[f64], spread: Vec<f64>, cap: usize) -> Vec<f64> {
    let mut all: Vec<(f64, bool)> = anchors
        .iter()
        .map(|a| (*a, true))
        .chain(spread.into_iter().map(|s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    all.dedup_by(|a, b| {
        (a.0 - b.0).abs() < 1e-7 && {
            b.1 |= a.1;
            true
        }
    });
    // Thin: drop the spread point whose neighbours are closest together,
    // until the set fits (the lowest such point on a tie).
    while all.len() > cap {
        let span = |i: usize| {
            let below = if i == 0 { all[i].0 } else { all[i - 1].0 };
            let above = all.get(i + 1).map_or(all[i].0, |b| b.0);
            above / below
        };
        let Some(victim) = (0..all.len())
            .filter(|i| !all[*i].1)
            .min_by(|a, b| span(*a).total_cmp(&span(*b)))
        else {
            break;
        };
        all.remove(victim);
    }
    all.into_iter().map(|(x, _)| x).collect()
}

/// One histogram series: cumulative at render time, per bucket here.
struct Histogram {
    bounds: Arc<[f64]>,
    /// Per bucket (not cumulative); the last is `+Inf`.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: Arc<[f64]>) -> Histogram {
        Histogram {
            counts: vec![0; bounds.len() + 1],
            bounds,
            sum: 0.0,
            count: 0,
        }
    }

    fn record(&mut self, seconds: f64, n: u64) {
        // `le` is inclusive: a latency equal to a bound counts in it.
        let i = self.bounds.partition_point(|b| *b < seconds);
        if let Some(c) = self.counts.get_mut(i) {
            *c = c.saturating_add(n);
        }
        self.sum += seconds * n as f64;
        self.count = self.count.saturating_add(n);
    }
}

/// One pair's latency series: a histogram per step (the run as the step
/// named after its kind, a flow's steps), and the window's percentiles.
#[derive(Default)]
pub struct PairLatency {
    histograms: Vec<(Box<str>, Histogram)>,
    summary: Option<[f64; 3]>,
}

impl PairLatency {
    fn histogram(&mut self, step: &str, bounds: &Arc<[f64]>) -> &mut Histogram {
        let i = match self.histograms.iter().position(|(s, _)| **s == *step) {
            Some(i) => i,
            None => {
                // Exactly: most pairs have one step.
                self.histograms.reserve_exact(1);
                self.histograms
                    .push((step.into(), Histogram::new(bounds.clone())));
                self.histograms.len() - 1
            }
        };
        &mut self.histograms[i].1
    }
}

/// The latency families of one config generation: each probe's buckets.
/// The series themselves live with the pair's others
/// ([`crate::telemetry::series`]), as a [`PairLatency`].
pub struct Families {
    buckets: HashMap<String, Arc<[f64]>>,
    fallback: Arc<[f64]>,
}

impl Default for Families {
    fn default() -> Families {
        Families::new(&[])
    }
}

impl Families {
    pub fn new(probes: &[Probe]) -> Families {
        Families {
            buckets: probes
                .iter()
                .map(|p| (p.name.clone(), Arc::from(buckets(p))))
                .collect(),
            fallback: Arc::from(fallback()),
        }
    }

    /// Adds `o`'s latencies to its pair's series (the whole run as the
    /// step named after its kind, a workload's every request, a flow's
    /// steps that got a response) and replaces its percentiles.
    pub fn record(&self, pair: &mut PairLatency, o: &Outcome) {
        let bounds = self.buckets.get(&o.probe).unwrap_or(&self.fallback);
        let mut samples = crate::telemetry::measure::samples_of(o)
            .into_iter()
            .filter_map(|(tally, latency)| {
                let n = tally.latencies();
                Some((latency.filter(|_| n > 0)?, n))
            })
            .peekable();
        // The run's histogram is made on its first latency.
        if samples.peek().is_some() {
            let run = pair.histogram(o.kind, bounds);
            for (latency, n) in samples {
                run.record(latency.as_secs_f64(), n);
            }
        }
        for step in o.steps.iter().filter(|s| s.attempts > 0 && s.responded) {
            pair.histogram(&step.name, bounds)
                .record(step.duration.as_secs_f64(), 1);
        }
        pair.summary = o
            .latency
            .as_ref()
            .map(|LatencySummary { p50, p95, p99, .. }| [*p50, *p95, *p99]);
    }

    /// Both families in the text format, each under one `HELP`/`TYPE`;
    /// `pairs` in the order they are to be listed.
    pub fn render<'a>(
        pairs: impl Iterator<Item = (&'a str, &'a str, &'a PairLatency)> + Clone,
        out: &mut dyn Write,
    ) {
        let histograms = pairs.clone().flat_map(|(probe, env, l)| {
            l.histograms
                .iter()
                .map(move |(step, h)| (probe, env, &**step, h))
        });
        let summaries = pairs.filter_map(|(probe, env, l)| Some((probe, env, l.summary.as_ref()?)));
        if histograms.clone().next().is_some() {
            let _ = writeln!(
                out,
                "# HELP {DURATION_HISTOGRAM} Latency of runs that got a response; buckets at the probe's latency thresholds, its timeout and a few spread points (or its `buckets`)."
            );
            let _ = writeln!(out, "# TYPE {DURATION_HISTOGRAM} histogram");
        }
        for (probe, env, step, h) in histograms {
            let labels = format!(
                "probe=\"{}\",environment=\"{}\",step=\"{}\"",
                escape(probe),
                escape(env),
                escape(step)
            );
            let mut cumulative = 0u64;
            for (i, c) in h.counts.iter().enumerate() {
                cumulative = cumulative.saturating_add(*c);
                match h.bounds.get(i) {
                    Some(le) => {
                        let _ = writeln!(
                            out,
                            "{DURATION_HISTOGRAM}_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                        );
                    }
                    None => {
                        let _ = writeln!(
                            out,
                            "{DURATION_HISTOGRAM}_bucket{{{labels},le=\"+Inf\"}} {cumulative}"
                        );
                    }
                }
            }
            let _ = writeln!(out, "{DURATION_HISTOGRAM}_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "{DURATION_HISTOGRAM}_count{{{labels}}} {}", h.count);
        }
        if summaries.clone().next().is_some() {
            let _ = writeln!(
                out,
                "# HELP {LATENCY_SUMMARY} Exact latency percentiles (nearest rank) over the window of the probe's latency thresholds (5m without one)."
            );
            let _ = writeln!(out, "# TYPE {LATENCY_SUMMARY} summary");
        }
        for (probe, env, values) in summaries {
            for (q, v) in QUANTILES.iter().zip(values) {
                let _ = writeln!(
                    out,
                    "{LATENCY_SUMMARY}{{probe=\"{}\",environment=\"{}\",quantile=\"{q}\"}} {v}",
                    escape(probe),
                    escape(env)
                );
            }
        }
    }
}

/// A label value as the text format writes it.
pub(crate) fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn secs(v: &[f64]) -> Vec<f64> {
        v.to_vec()
    }

    #[test]
    fn derived_buckets_are_the_anchors_and_a_few_spread_points() {
        // `p(95) < 300ms`, timeout 2s: 250 ms is too near 300 ms.
        assert_eq!(
            derive(secs(&[0.3, 2.0]), None),
            [0.025, 0.05, 0.1, 0.3, 0.5, 1.0, 2.0]
        );
        // No threshold, the default 10 s timeout.
        assert_eq!(
            derive(secs(&[10.0]), None),
            [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
        );
        // `p(95) < 200ms`, `p(99) < 500ms`, timeout 5s.
        assert_eq!(
            derive(secs(&[0.2, 0.5, 5.0]), None),
            [0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0]
        );
    }

    #[test]
    fn spread_points_are_thinned_to_the_cap_and_anchors_stay() {
        // `p(99) < 10ms`, timeout 1s: eleven candidates from 0.5 ms; the
        // lowest goes, its neighbour being nearest (×2).
        assert_eq!(
            derive(secs(&[0.01, 1.0]), None),
            [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]
        );
        // Thresholds beyond the cap are all kept.
        let many: Vec<f64> = (1..=12).map(|i| f64::from(i) / 10.0).collect();
        assert_eq!(derive(many.clone(), None), many);
    }

    #[test]
    fn a_workload_gets_twenty_points_a_decade_up_to_its_highest_threshold() {
        // `p(95) < 1s`, timeout 2s: R20 from 25 ms to 1 s, nothing fine
        // between 1 s and the timeout.
        let fine = derive(secs(&[1.0, 2.0]), Some(1.0));
        let mut want = vec![0.025, 0.028, 0.0315, 0.0355, 0.04, 0.045, 0.05];
        want.extend([0.056, 0.063, 0.071, 0.08, 0.09]);
        want.extend(FINE_LADDER.iter().map(|m| at_us(m / 10.0)));
        want.extend([1.0, 2.0]);
        assert_eq!(fine, want);
        // Neighbours are at most one R20 step apart below the threshold.
        let below: Vec<f64> = fine.iter().copied().filter(|b| *b <= 1.0).collect();
        assert!(below.windows(2).all(|w| w[1] / w[0] < 1.15), "{below:?}");
        // A fine point within ×1.06 of a threshold gives way to it
        // (315 ms beside 300 ms, 1.12 s beside 1.1 s); above the highest
        // threshold the coarse ladder goes on to the timeout.
        let fine = derive(secs(&[0.3, 1.1, 10.0]), Some(1.1));
        assert!(!fine.contains(&0.315) && fine.contains(&0.355) && fine.contains(&1.0));
        assert!(!fine.contains(&1.12));
        assert!(fine.ends_with(&[1.1, 2.5, 5.0, 10.0]), "{fine:?}");
        // No threshold: fine up to the timeout.
        let fine = derive(secs(&[0.5]), Some(0.5));
        assert_eq!(fine.last(), Some(&0.5));
        assert!(fine.contains(&0.45));
        // A long timeout and a low threshold still fit the cap.
        let fine = derive(secs(&[0.001, 60.0]), Some(60.0));
        assert_eq!(fine.len(), MAX_FINE_BUCKETS);
        assert!(fine.contains(&0.001) && fine.contains(&60.0));
    }

    #[test]
    fn a_histogram_counts_a_latency_equal_to_a_bound_in_that_bound() {
        let mut h = Histogram::new(Arc::from(vec![0.1, 0.3]));
        h.record(0.1, 2);
        h.record(0.2, 1);
        h.record(0.5, 1);
        assert_eq!(h.counts, [2, 1, 1]);
        assert_eq!(h.count, 4);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape("plain"), "plain");
    }
}
