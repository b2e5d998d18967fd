//! Rolling windows of latency and success counts per (probe, environment,
//! step), and threshold evaluation over them.
//!
//! A workload's run adds its requests' counts at once ([`Tally::Runs`]),
//! its latencies as (value, count) pairs from its bounded record
//! ([`Tally::Latency`]; at most a histogram's buckets, however many
//! requests it sent) and one [`Tally::Arrivals`] with the requests that
//! came due and those dropped at the concurrency cap, which
//! `dropped_rate` reads. A series that holds arrivals is judged by
//! `dropped_rate < 1%` (default) unless one of its thresholds names
//! `dropped_rate`: a run that never sent most of its load must not pass.
//!
//! A series is a ring of sub-windows ([`SUB_WINDOW`] wide) covering the
//! longest window any of its thresholds asks for; a window is read by
//! merging its sub-windows. A sub-window keeps up to [`EXACT_SAMPLES`]
//! latencies exactly (4 KB; a probe every 30 s never needs more) and switches to
//! an HDR histogram beyond that (workloads). Reads are exact while every
//! sub-window read is exact, and within 1 % (two significant digits)
//! otherwise. Percentiles use the nearest-rank definition.
//!
//! Memory (measured by the tests below): an empty series is ~100 B; a
//! sub-window with a few exact samples ~50 B; one holding 1,024 exact
//! samples 4 KB; a histogram sub-window ~12.9 KB. See ARCHITECTURE.md for the totals.

use crate::outcome::{EXACT_LATENCIES, LatencySummary, Outcome, ThresholdResult, latency_us};
use crate::threshold::{DEFAULT_WINDOW, Metric, Threshold, WindowStats};
use hdrhistogram::Histogram;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

pub use crate::threshold::{MAX_WINDOW, SUB_WINDOW};
/// Latencies kept exactly per sub-window before switching to a histogram.
pub const EXACT_SAMPLES: usize = EXACT_LATENCIES;

enum Latencies {
    Exact(Vec<u32>),
    Hist(Box<Histogram<u32>>),
}

/// Counts are `u32`, saturating: a sub-window holds at most 30 s of a
/// pair's runs (a workload's run sends at most a million), and four
/// `u32`s keep a sub-window at the size the memory figures state.
struct Sub {
    index: u64,
    runs: u32,
    failures: u32,
    /// A workload's requests that came due, and those of them dropped.
    due: u32,
    dropped: u32,
    latencies: Latencies,
}

impl Sub {
    fn new(index: u64) -> Sub {
        Sub {
            index,
            runs: 0,
            failures: 0,
            due: 0,
            dropped: 0,
            latencies: Latencies::Exact(Vec::new()),
        }
    }

    /// Records `count` latencies of `us` microseconds.
    fn record_latency(&mut self, us: u32, count: u64) {
        let n = u32::try_from(count).unwrap_or(u32::MAX);
        match &mut self.latencies {
            Latencies::Exact(v) if v.len().saturating_add(n as usize) <= EXACT_SAMPLES => {
                v.extend(std::iter::repeat_n(us, n as usize));
            }
            Latencies::Exact(v) => {
                let Some(mut h) = new_histogram() else { return };
                for x in v.iter() {
                    h.saturating_record(u64::from(*x));
                }
                h.saturating_record_n(u64::from(us), n);
                self.latencies = Latencies::Hist(Box::new(h));
            }
            Latencies::Hist(h) => h.saturating_record_n(u64::from(us), n),
        }
    }
}

fn new_histogram() -> Option<Histogram<u32>> {
    crate::outcome::latency_histogram()
}

/// What a run adds to its series, beside a latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tally {
    /// One run, or one request a workload sent: counts in `error_rate`
    /// and `availability`; its latency, if any, is recorded once.
    Run { success: bool },
    /// A workload's requests sent, counted at once (`ok` passed, `failed`
    /// did not); their latencies come as [`Tally::Latency`].
    Runs { ok: u64, failed: u64 },
    /// `count` latencies of one value, whose runs were counted apart.
    Latency { count: u64 },
    /// A workload's arrivals: `due` requests came due, `dropped` of them
    /// were never sent (the concurrency cap was full). Counts in
    /// `dropped_rate` only, never as a run.
    Arrivals { due: u64, dropped: u64 },
    /// A run's packets (`ping`): `sent`, `lost` of them. Counts in `loss`
    /// only; the run itself comes as a [`Tally::Run`], its round trips as
    /// [`Tally::Latency`].
    Packets { sent: u64, lost: u64 },
}

impl Tally {
    /// How many latencies an entry with this tally records.
    pub fn latencies(self) -> u64 {
        match self {
            Tally::Run { .. } => 1,
            Tally::Latency { count } => count,
            Tally::Runs { .. } | Tally::Arrivals { .. } | Tally::Packets { .. } => 0,
        }
    }
}

impl From<bool> for Tally {
    fn from(success: bool) -> Tally {
        Tally::Run { success }
    }
}

/// One (probe, environment, step) series.
pub struct Series {
    origin: Instant,
    width: Duration,
    /// Sub-windows kept: the longest window / width.
    keep: u64,
    subs: VecDeque<Sub>,
    /// The packets of the runs of kinds that count them (`ping`), per
    /// sub-window: kept beside the sub-windows, not in them, and boxed, so
    /// that the series of every other kind stay at the size the figures
    /// state (8 bytes more).
    #[allow(
        clippy::box_collection,
        reason = "the box keeps the series 8 bytes larger rather than 32 for the kinds that never count packets"
    )]
    packets: Option<Box<VecDeque<PacketSub>>>,
}

/// One sub-window's packets: sent, and lost of them.
struct PacketSub {
    index: u64,
    sent: u32,
    lost: u32,
}

impl Series {
    pub fn new(origin: Instant, width: Duration, longest: Duration) -> Series {
        let keep = longest.as_nanos().div_ceil(width.as_nanos().max(1)).max(1) as u64;
        Series {
            origin,
            width,
            keep,
            subs: VecDeque::new(),
            packets: None,
        }
    }

    fn index(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.origin).as_nanos() / self.width.as_nanos().max(1)) as u64
    }

    /// Records one run (its success, or a workload's arrivals) and, if it
    /// got a response, its latency.
    pub fn record(&mut self, at: Instant, tally: impl Into<Tally>, latency: Option<Duration>) {
        let index = self.index(at);
        if self.subs.back().is_none_or(|s| s.index != index) {
            self.subs.push_back(Sub::new(index));
        }
        while self
            .subs
            .front()
            .is_some_and(|s| s.index + self.keep <= index)
        {
            self.subs.pop_front();
        }
        if let Some(packets) = self.packets.as_deref_mut() {
            while packets
                .front()
                .is_some_and(|p| p.index + self.keep <= index)
            {
                packets.pop_front();
            }
        }
        let Some(sub) = self.subs.back_mut() else {
            return;
        };
        let count = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        let tally = tally.into();
        match tally {
            Tally::Run { success } => {
                sub.runs = sub.runs.saturating_add(1);
                if !success {
                    sub.failures = sub.failures.saturating_add(1);
                }
            }
            Tally::Runs { ok, failed } => {
                sub.runs = sub.runs.saturating_add(count(ok.saturating_add(failed)));
                sub.failures = sub.failures.saturating_add(count(failed));
            }
            Tally::Latency { .. } => {}
            Tally::Arrivals { due, dropped } => {
                sub.due = sub.due.saturating_add(count(due));
                sub.dropped = sub.dropped.saturating_add(count(dropped));
            }
            Tally::Packets { sent, lost } => {
                let packets = self.packets.get_or_insert_default();
                if packets.back().is_none_or(|p| p.index != index) {
                    packets.push_back(PacketSub {
                        index,
                        sent: 0,
                        lost: 0,
                    });
                }
                if let Some(p) = packets.back_mut() {
                    p.sent = p.sent.saturating_add(count(sent));
                    p.lost = p.lost.saturating_add(count(lost));
                }
            }
        }
        if let Some(d) = latency {
            let n = tally.latencies();
            if n > 0 {
                sub.record_latency(latency_us(d), n);
            }
        }
    }

    /// The last `window` (rounded up to whole sub-windows) as of `now`.
    pub fn window(&self, now: Instant, window: Duration) -> View {
        let now_index = self.index(now);
        let span = window
            .as_nanos()
            .div_ceil(self.width.as_nanos().max(1))
            .max(1) as u64;
        let first = (now_index + 1).saturating_sub(span);
        let mut view = View::default();
        let mut exact: Vec<u32> = Vec::new();
        let mut hist: Option<Histogram<u32>> = None;
        for sub in self
            .subs
            .iter()
            .filter(|s| s.index >= first && s.index <= now_index)
        {
            view.stats.runs += u64::from(sub.runs);
            view.stats.failures += u64::from(sub.failures);
            view.stats.due += u64::from(sub.due);
            view.stats.dropped += u64::from(sub.dropped);
            match &sub.latencies {
                Latencies::Exact(v) => exact.extend_from_slice(v),
                Latencies::Hist(h) => {
                    let merged = hist
                        .get_or_insert_with(|| new_histogram().unwrap_or_else(|| (**h).clone()));
                    let _ = merged.add(&**h);
                }
            }
        }
        for p in self
            .packets
            .iter()
            .flat_map(|packets| packets.iter())
            .filter(|p| p.index >= first && p.index <= now_index)
        {
            view.stats.packets += u64::from(p.sent);
            view.stats.lost += u64::from(p.lost);
        }
        match hist {
            Some(mut h) => {
                for x in exact {
                    h.saturating_record(u64::from(x));
                }
                view.stats.samples = h.len();
                view.latencies = Some(Merged::Hist(h));
            }
            None if !exact.is_empty() => {
                exact.sort_unstable();
                view.stats.samples = exact.len() as u64;
                view.latencies = Some(Merged::Exact(exact));
            }
            None => {}
        }
        view
    }

    /// Heap bytes held, for the memory figures.
    pub fn heap_bytes(&self) -> usize {
        self.subs.capacity() * std::mem::size_of::<Sub>()
            + self.packets.as_ref().map_or(0, |p| {
                std::mem::size_of::<VecDeque<PacketSub>>()
                    + p.capacity() * std::mem::size_of::<PacketSub>()
            })
            + self
                .subs
                .iter()
                .map(|s| match &s.latencies {
                    Latencies::Exact(v) => v.capacity() * 4,
                    Latencies::Hist(h) => {
                        std::mem::size_of::<Histogram<u32>>() + h.distinct_values() * 4
                    }
                })
                .sum::<usize>()
    }
}

enum Merged {
    /// Sorted.
    Exact(Vec<u32>),
    Hist(Histogram<u32>),
}

/// A window's aggregates.
#[derive(Default)]
pub struct View {
    pub stats: WindowStats,
    latencies: Option<Merged>,
}

impl View {
    /// The value of `metric` in this window: seconds for latencies, a ratio
    /// for rates; `None` without data.
    pub fn observe(&self, metric: Metric) -> Option<f64> {
        let runs = self.stats.runs as f64;
        match metric {
            Metric::ErrorRate => (runs > 0.0).then(|| self.stats.failures as f64 / runs),
            Metric::Availability => {
                (runs > 0.0).then(|| (self.stats.runs - self.stats.failures) as f64 / runs)
            }
            Metric::Loss => {
                (self.stats.packets > 0).then(|| self.stats.lost as f64 / self.stats.packets as f64)
            }
            Metric::DroppedRate => {
                (self.stats.due > 0).then(|| self.stats.dropped as f64 / self.stats.due as f64)
            }
            _ => self.latency(metric).map(|us| us as f64 / 1e6),
        }
    }

    fn latency(&self, metric: Metric) -> Option<u64> {
        match self.latencies.as_ref()? {
            Merged::Exact(v) => {
                let n = v.len();
                match metric {
                    Metric::Min => v.first().map(|x| u64::from(*x)),
                    Metric::Max => v.last().map(|x| u64::from(*x)),
                    Metric::Avg => {
                        let sum: u64 = v.iter().map(|x| u64::from(*x)).sum();
                        Some((sum as f64 / n as f64).round() as u64)
                    }
                    Metric::Percentile(q) => {
                        let rank = ((q / 100.0) * n as f64).ceil().max(1.0) as usize;
                        v.get(rank.min(n) - 1).map(|x| u64::from(*x))
                    }
                    Metric::ErrorRate
                    | Metric::Availability
                    | Metric::DroppedRate
                    | Metric::Loss => None,
                }
            }
            Merged::Hist(h) => match metric {
                Metric::Min => Some(h.min()),
                Metric::Max => Some(h.max()),
                Metric::Avg => Some(h.mean().round() as u64),
                Metric::Percentile(q) => Some(h.value_at_quantile(q / 100.0)),
                Metric::ErrorRate | Metric::Availability | Metric::DroppedRate | Metric::Loss => {
                    None
                }
            },
        }
    }
}

/// Latency percentiles of the last `window`, if it holds any latency.
pub fn summary(series: &Series, now: Instant, window: Duration) -> Option<LatencySummary> {
    let view = series.window(now, window);
    let q = |m: Metric| view.observe(m);
    Some(LatencySummary {
        samples: view.stats.samples,
        window_seconds: window.as_secs_f64(),
        min: q(Metric::Min)?,
        p50: q(Metric::Percentile(50.0))?,
        p90: q(Metric::Percentile(90.0))?,
        p95: q(Metric::Percentile(95.0))?,
        p99: q(Metric::Percentile(99.0))?,
        max: q(Metric::Max)?,
    })
}

/// Evaluates `thresholds` over `series` as of `now`, followed by the
/// default `dropped_rate` threshold when the series holds a workload's
/// arrivals and no threshold names `dropped_rate`.
pub fn evaluate(series: &Series, now: Instant, thresholds: &[Threshold]) -> Vec<ThresholdResult> {
    let implicit = implicit_thresholds(series, now, thresholds);
    thresholds
        .iter()
        .chain(&implicit)
        .map(|t| {
            let view = series.window(now, t.window);
            let (state, observed) = t.evaluate(|m| view.observe(m));
            ThresholdResult {
                threshold: t.failing.source.clone(),
                degraded: t.degraded.as_ref().map(|d| d.source.clone()),
                state,
                observed,
                unit: if t.failing.metric.is_latency() {
                    "seconds"
                } else {
                    "ratio"
                },
                window_seconds: t.window.as_secs_f64(),
                // A drop rate is over the requests that came due, not over
                // the ones sent.
                runs: if t.failing.metric == Metric::DroppedRate {
                    view.stats.due
                } else {
                    view.stats.runs
                },
            }
        })
        .collect()
}

/// The thresholds a series is judged by beyond the configured ones: a
/// workload's series (one that holds arrivals) gets `dropped_rate < 1%`
/// unless a configured threshold already names `dropped_rate`.
fn implicit_thresholds(series: &Series, now: Instant, thresholds: &[Threshold]) -> Vec<Threshold> {
    let named = thresholds.iter().any(|t| t.names(Metric::DroppedRate));
    let workload = series.window(now, DEFAULT_WINDOW).stats.due > 0;
    if workload && !named {
        vec![Threshold::default_dropped_rate()]
    } else {
        Vec::new()
    }
}

/// The window a pair's latency summary covers (and `/metrics` shows as
/// `synthmon_latency_seconds`): the one its latency thresholds judge, the
/// longest if they differ; the default window without one.
pub fn latency_window(thresholds: &[Threshold]) -> Duration {
    thresholds
        .iter()
        .filter(|t| t.failing.metric.is_latency())
        .map(|t| t.window)
        .max()
        .unwrap_or(DEFAULT_WINDOW)
}

/// Every series of a daemon, keyed by (probe, environment).
pub struct Store {
    origin: Instant,
    /// By probe, then environment: looked up by `&str`, so a run
    /// allocates no key; most probes have one or two environments.
    series: std::collections::HashMap<Box<str>, Vec<(Box<str>, Series)>>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            origin: Instant::now(),
            series: std::collections::HashMap::new(),
        }
    }
}

impl Store {
    /// Records `outcome`, then fills in its threshold states and its
    /// latency summary over [`latency_window`].
    pub fn record(&mut self, outcome: &mut Outcome, thresholds: &[Threshold]) {
        let latency_window = latency_window(thresholds);
        // A workload is also judged by the default `dropped_rate`
        // threshold, over the default window.
        let longest = thresholds
            .iter()
            .map(|t| t.window)
            .chain(outcome.workload.as_ref().map(|_| DEFAULT_WINDOW))
            .chain(std::iter::once(latency_window))
            .max()
            .unwrap_or(DEFAULT_WINDOW);
        let now = Instant::now();
        let origin = self.origin;
        let envs = match self.series.get_mut(outcome.probe.as_str()) {
            Some(envs) => envs,
            None => self
                .series
                .entry(outcome.probe.as_str().into())
                .or_default(),
        };
        let i = match envs.iter().position(|(e, _)| **e == *outcome.environment) {
            Some(i) => i,
            None => {
                envs.reserve_exact(1);
                envs.push((
                    outcome.environment.as_str().into(),
                    Series::new(origin, SUB_WINDOW, longest),
                ));
                envs.len() - 1
            }
        };
        let series = &mut envs[i].1;
        series.keep = series
            .keep
            .max(longest.as_nanos().div_ceil(SUB_WINDOW.as_nanos()) as u64);
        for (tally, latency) in samples_of(outcome) {
            series.record(now, tally, latency);
        }
        outcome.thresholds = evaluate(series, now, thresholds);
        outcome.latency = summary(series, now, latency_window);
    }

    /// Drops the series of pairs `keep` rejects (removed probes).
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.series.retain(|p, envs| {
            envs.retain(|(e, _)| keep(p, e));
            !envs.is_empty()
        });
    }

    /// How many pairs have series.
    pub fn len(&self) -> usize {
        self.series.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// What a run contributes to its series: for a workload, its requests'
/// counts, one entry per distinct latency (with how many had it) and its
/// arrivals (sent and dropped, no latency), so the list is bounded by a
/// histogram's size whatever the number of requests; else the run itself.
/// [`Tally::latencies`] says how many latencies an entry stands for.
pub fn samples_of(outcome: &Outcome) -> Vec<(Tally, Option<Duration>)> {
    match &outcome.workload {
        Some(w) => std::iter::once((
            Tally::Runs {
                ok: w.ok,
                failed: w.failed,
            },
            None,
        ))
        .chain(
            w.latencies
                .iter()
                .map(|(d, count)| (Tally::Latency { count }, Some(d))),
        )
        .chain(std::iter::once((
            Tally::Arrivals {
                due: w.sent + w.dropped,
                dropped: w.dropped,
            },
            None,
        )))
        .collect(),
        None => {
            let details = outcome.details.as_ref();
            // A kind that times its own exchanges (a ping's round trips)
            // gives their latencies rather than the run's duration.
            let mut samples = match details.and_then(crate::outcome::Details::latencies) {
                Some(each) => std::iter::once((Tally::from(outcome.success), None))
                    .chain(
                        each.into_iter()
                            .map(|d| (Tally::Latency { count: 1 }, Some(d))),
                    )
                    .collect(),
                None => vec![(Tally::from(outcome.success), latency_of(outcome))],
            };
            if let Some((sent, lost)) = details.and_then(crate::outcome::Details::packets) {
                samples.push((Tally::Packets { sent, lost }, None));
            }
            samples
        }
    }
}

/// The latency a run contributes: its duration, when it got a response (a
/// refused connection is an error, not a fast request).
pub fn latency_of(outcome: &Outcome) -> Option<Duration> {
    outcome.responded.then_some(outcome.duration)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::threshold::{DEFAULT_WINDOW, State, parse_condition};

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    fn threshold(src: &str, window: Duration) -> Threshold {
        Threshold {
            failing: parse_condition(src).unwrap(),
            degraded: None,
            window,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn exact_percentiles_use_nearest_rank() {
        let t0 = Instant::now();
        let mut s = Series::new(t0, SUB_WINDOW, DEFAULT_WINDOW);
        for n in 1..=100 {
            s.record(t0, true, ms(n));
        }
        let v = s.window(t0, DEFAULT_WINDOW);
        assert_eq!(v.observe(Metric::Percentile(50.0)), Some(0.050));
        assert_eq!(v.observe(Metric::Percentile(99.0)), Some(0.099));
        assert_eq!(v.observe(Metric::Percentile(100.0)), Some(0.100));
        assert_eq!(v.observe(Metric::Min), Some(0.001));
        assert_eq!(v.observe(Metric::Max), Some(0.100));
        assert_eq!(v.observe(Metric::Avg), Some(0.0505));
        assert_eq!(v.observe(Metric::ErrorRate), Some(0.0));
    }

    #[tokio::test(start_paused = true)]
    async fn histogram_sub_windows_stay_within_one_percent() {
        let t0 = Instant::now();
        let mut s = Series::new(t0, SUB_WINDOW, DEFAULT_WINDOW);
        for n in 1..=10_000u64 {
            s.record(t0, true, Some(Duration::from_micros(n * 100)));
        }
        let v = s.window(t0, DEFAULT_WINDOW);
        assert_eq!(v.stats.samples, 10_000);
        assert!(matches!(v.latencies, Some(Merged::Hist(_))));
        let p99 = v.observe(Metric::Percentile(99.0)).unwrap();
        assert!((p99 - 0.99).abs() / 0.99 < 0.01, "{p99}");
        let heap = s.heap_bytes();
        assert!(
            heap < 16 * 1024,
            "a histogram sub-window costs {heap} bytes"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn windows_roll_and_old_sub_windows_are_dropped() {
        let t0 = Instant::now();
        let mut s = Series::new(t0, SUB_WINDOW, Duration::from_secs(120));
        // One slow failing run, then four minutes of fast successes.
        s.record(t0, false, ms(900));
        for k in 1..=8u64 {
            s.record(t0 + SUB_WINDOW * k as u32, true, ms(10));
        }
        let now = t0 + SUB_WINDOW * 8;
        let last2m = s.window(now, Duration::from_secs(120));
        assert_eq!(last2m.stats.runs, 4);
        assert_eq!(last2m.observe(Metric::Max), Some(0.010));
        assert_eq!(last2m.observe(Metric::ErrorRate), Some(0.0));
        assert!(s.subs.len() <= 4, "kept {} sub-windows", s.subs.len());
    }

    #[tokio::test(start_paused = true)]
    async fn thresholds_from_a_known_sequence() {
        // 197 runs at 100 ms, one at 500 ms, two failures with no response.
        let t0 = Instant::now();
        let mut s = Series::new(t0, SUB_WINDOW, DEFAULT_WINDOW);
        for _ in 0..197 {
            s.record(t0, true, ms(100));
        }
        s.record(t0, true, ms(500));
        s.record(t0, false, None);
        s.record(t0, false, None);
        let w = DEFAULT_WINDOW;
        let check = |src: &str| evaluate(&s, t0, &[threshold(src, w)])[0].state;
        // 198 latency samples: p99 is rank ceil(0.99 × 198) = 197, 100 ms.
        assert_eq!(check("p(99) < 500ms"), State::Ok);
        assert_eq!(check("p(99) < 100ms"), State::Failing, "equal fails `<`");
        assert_eq!(check("p(99) <= 100ms"), State::Ok, "equal passes `<=`");
        assert_eq!(
            check("p(100) < 500ms"),
            State::Failing,
            "max is exactly 500 ms"
        );
        assert_eq!(check("max <= 500ms"), State::Ok);
        assert_eq!(check("min >= 100ms"), State::Ok);
        assert_eq!(check("min > 100ms"), State::Failing);
        // 2 of 200 runs failed: exactly 1 %.
        assert_eq!(check("error_rate < 1%"), State::Failing);
        assert_eq!(check("error_rate <= 1%"), State::Ok);
        assert_eq!(check("availability >= 99%"), State::Ok);
        assert_eq!(check("availability > 99%"), State::Failing);
        let avg = evaluate(&s, t0, &[threshold("avg < 105ms", w)])[0].clone();
        assert_eq!(avg.state, State::Ok);
        // (197 × 100 + 500) / 198 = 102.0202 ms, kept at µs resolution.
        assert_eq!(avg.observed, Some(0.102_020));
        assert_eq!(avg.runs, 200);
    }

    /// Regression: a workload that dropped 75 % of its requests at the
    /// concurrency cap passed with an error rate of 0 %. Its arrivals now
    /// reach the window, and with no threshold naming `dropped_rate` the
    /// default `dropped_rate < 1%` judges them.
    #[tokio::test(start_paused = true)]
    async fn a_workload_that_drops_most_of_its_requests_fails_the_default_dropped_rate() {
        let t0 = Instant::now();
        let mut s = Series::new(t0, SUB_WINDOW, DEFAULT_WINDOW);
        // 100 sent, all fast and fine; 300 more came due and were dropped.
        for _ in 0..100 {
            s.record(t0, true, ms(5));
        }
        s.record(
            t0,
            Tally::Arrivals {
                due: 400,
                dropped: 300,
            },
            None,
        );
        let written = [threshold("error_rate < 1%", DEFAULT_WINDOW)];
        let results = evaluate(&s, t0, &written);
        assert_eq!(results.len(), 2, "{results:?}");
        // The error rate stays about the requests sent…
        assert_eq!(results[0].state, State::Ok);
        assert_eq!(results[0].observed, Some(0.0));
        assert_eq!(results[0].runs, 100);
        // …and the default threshold fails on the drops, over the 400 due.
        let d = &results[1];
        assert_eq!(d.threshold, "dropped_rate < 1% (default)");
        assert_eq!(d.state, State::Failing);
        assert_eq!(d.observed, Some(0.75));
        assert_eq!(d.unit, "ratio");
        assert_eq!(d.runs, 400);
        // Dropped requests are not runs: nothing else moved.
        let v = s.window(t0, DEFAULT_WINDOW);
        assert_eq!(
            (v.stats.runs, v.stats.failures, v.stats.samples),
            (100, 0, 100)
        );
        assert_eq!(v.observe(Metric::Availability), Some(1.0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_written_dropped_rate_threshold_replaces_the_default() {
        let t0 = Instant::now();
        let mut s = Series::new(t0, SUB_WINDOW, DEFAULT_WINDOW);
        s.record(t0, true, ms(5));
        s.record(
            t0,
            Tally::Arrivals {
                due: 50,
                dropped: 2,
            },
            None,
        );
        let check = |src: &str| evaluate(&s, t0, &[threshold(src, DEFAULT_WINDOW)]);
        // 2 of 50 dropped: 4 %.
        let r = check("dropped_rate < 5%");
        assert_eq!(r.len(), 1, "the default is not added: {r:?}");
        assert_eq!((r[0].state, r[0].observed), (State::Ok, Some(0.04)));
        assert_eq!(check("dropped_rate < 4%")[0].state, State::Failing);
        assert_eq!(check("dropped_rate <= 4%")[0].state, State::Ok);
        // Without one, the default fails at 4 %.
        let r = check("p(99) < 1s");
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[1].state, State::Failing);
    }

    #[tokio::test(start_paused = true)]
    async fn runs_without_a_workload_get_no_dropped_rate_threshold() {
        let t0 = Instant::now();
        let mut s = Series::new(t0, SUB_WINDOW, DEFAULT_WINDOW);
        s.record(t0, true, ms(5));
        assert!(evaluate(&s, t0, &[]).is_empty());
        // Named anyway, it has nothing to judge.
        let r = evaluate(&s, t0, &[threshold("dropped_rate < 1%", DEFAULT_WINDOW)]);
        assert_eq!((r[0].state, r[0].observed), (State::NoData, None));
        // A workload that dropped nothing passes the default.
        s.record(t0, Tally::Arrivals { due: 1, dropped: 0 }, None);
        let r = evaluate(&s, t0, &[]);
        assert_eq!((r[0].state, r[0].observed), (State::Ok, Some(0.0)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_store_judges_a_workload_outcome_by_its_drops() {
        let ids = crate::tagging::RunIds::generate();
        let mut o = Outcome::new("w", "env", "http", &ids);
        o.success = true;
        let mut latencies = crate::outcome::Latencies::default();
        latencies.record(Duration::from_millis(5));
        o.workload = Some(crate::outcome::WorkloadFacts {
            scheduled: 4,
            sent: 1,
            dropped: 3,
            ok: 1,
            latencies,
            ..Default::default()
        });
        let mut store = Store::default();
        store.record(&mut o, &[threshold("p(99) < 1s", Duration::from_secs(60))]);
        assert_eq!(o.thresholds.len(), 2, "{:?}", o.thresholds);
        assert_eq!(o.thresholds[1].state, State::Failing);
        assert_eq!(o.thresholds[1].observed, Some(0.75));
        assert!(
            o.success,
            "error_rate and success stay about the sent requests"
        );
        assert!(!o.passed(), "a failing dropped_rate fails the verdict");
    }

    #[test]
    fn memory_per_series_is_small() {
        let t0 = Instant::now();
        let mut s = Series::new(t0, SUB_WINDOW, DEFAULT_WINDOW);
        // A probe every 30 s fills each sub-window with one sample.
        for k in 0..10u32 {
            s.record(t0 + SUB_WINDOW * k, true, ms(20));
        }
        let heap = s.heap_bytes() + std::mem::size_of::<Series>();
        assert!(
            heap < 1024,
            "{heap} bytes for a 5-minute window at one run per 30 s"
        );
    }

    /// Facts of a kind that times its own exchanges and counts packets,
    /// as `ping` does.
    #[derive(Debug, serde::Serialize)]
    struct Echoes {
        rtts: Vec<Duration>,
        sent: u64,
        lost: u64,
    }

    impl crate::outcome::KindFacts for Echoes {
        fn latencies(&self) -> Option<Vec<Duration>> {
            Some(self.rtts.clone())
        }
        fn packets(&self) -> Option<(u64, u64)> {
            Some((self.sent, self.lost))
        }
    }

    /// A ping run's round trips are its latency samples (not its
    /// duration, mostly pacing) and its packets feed `loss`, which has no
    /// data for runs that count none.
    #[tokio::test(start_paused = true)]
    async fn round_trips_are_samples_and_packets_feed_loss() {
        let ids = crate::tagging::RunIds::generate();
        let mut o = Outcome::new("p", "e", "ping", &ids);
        o.success = true;
        o.responded = true;
        o.duration = Duration::from_millis(400);
        o.details = Some(crate::outcome::Details::new(Echoes {
            rtts: vec![Duration::from_millis(2), Duration::from_millis(4)],
            sent: 4,
            lost: 2,
        }));
        let samples = samples_of(&o);
        assert_eq!(
            samples,
            vec![
                (Tally::Run { success: true }, None),
                (Tally::Latency { count: 1 }, ms(2)),
                (Tally::Latency { count: 1 }, ms(4)),
                (Tally::Packets { sent: 4, lost: 2 }, None),
            ]
        );
        let mut store = Store::default();
        let thresholds = [
            threshold("loss < 1%", DEFAULT_WINDOW),
            threshold("p(95) < 5ms", DEFAULT_WINDOW),
        ];
        store.record(&mut o, &thresholds);
        let observed: Vec<(State, Option<f64>)> =
            o.thresholds.iter().map(|t| (t.state, t.observed)).collect();
        assert_eq!(
            observed,
            [(State::Failing, Some(0.5)), (State::Ok, Some(0.004))]
        );
        assert_eq!(o.latency.unwrap().samples, 2);

        // The packets leave the window with their sub-window.
        let t0 = Instant::now();
        let mut s = Series::new(t0, SUB_WINDOW, DEFAULT_WINDOW);
        s.record(t0, Tally::Packets { sent: 10, lost: 1 }, None);
        assert_eq!(
            s.window(t0, DEFAULT_WINDOW).observe(Metric::Loss),
            Some(0.1)
        );
        let later = t0 + DEFAULT_WINDOW + SUB_WINDOW;
        s.record(later, true, ms(1));
        assert_eq!(s.window(later, DEFAULT_WINDOW).observe(Metric::Loss), None);
        assert_eq!(s.packets.as_ref().map(|p| p.len()), Some(0));
    }
}
