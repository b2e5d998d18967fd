//! SLA thresholds, k6-style: `p(99) < 500ms`, `avg < 100ms`,
//! `error_rate < 1%`, `availability >= 99.9%`, `dropped_rate < 1%`,
//! `loss < 1%` (ping), each over a window, each optionally with a
//! *degraded* level beside the *failing* one.
//!
//! The syntax is `METRIC OP VALUE`, deliberately not CEL: thresholds are
//! one comparison of one aggregate, and `500ms` / `1%` literals read as the
//! SLA is written. A threshold holds when the comparison is true of the
//! observed value: `p(99) < 500ms` fails at exactly 500 ms, `p(99) <= 500ms`
//! passes there. Latency values are compared at microsecond resolution.

use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// Width of one sub-window: the granularity of every window.
pub const SUB_WINDOW: Duration = Duration::from_secs(30);
/// The longest window a threshold may use.
pub const MAX_WINDOW: Duration = Duration::from_secs(3600);

/// What a threshold aggregates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// Latency percentile, 0 < q ≤ 100.
    Percentile(f64),
    Avg,
    Min,
    Max,
    /// Failed runs / all runs.
    ErrorRate,
    /// Successful runs / all runs.
    Availability,
    /// Workload requests dropped at the concurrency cap / requests that
    /// came due (sent or dropped): the share of the configured load that
    /// never went out. Requests never sent are not in `error_rate`, which
    /// judges the target on what it was sent.
    DroppedRate,
    /// Packets lost / packets sent, for kinds that count packets (`ping`);
    /// no data for the others.
    Loss,
}

impl Metric {
    pub fn is_latency(self) -> bool {
        !matches!(
            self,
            Metric::ErrorRate | Metric::Availability | Metric::DroppedRate | Metric::Loss
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

impl Op {
    fn holds(self, observed: f64, limit: f64) -> bool {
        match self {
            Op::Lt => observed < limit,
            Op::Le => observed <= limit,
            Op::Gt => observed > limit,
            Op::Ge => observed >= limit,
        }
    }
}

/// One comparison, e.g. `p(99) < 500ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub metric: Metric,
    pub op: Op,
    /// Seconds for latency metrics, a ratio (0..=1) for rates.
    pub limit: f64,
    pub source: String,
}

/// A checked threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub failing: Condition,
    pub degraded: Option<Condition>,
    pub window: Duration,
}

pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);

/// The limit a workload's drops are held to when none of its thresholds
/// names `dropped_rate`: more than 1 % of the load not sent means the
/// percentiles and error rate describe a lighter load than the one
/// configured, so the run must not pass; below it, a rare scheduler hiccup
/// does not fail a long run. The same figure as the usual `error_rate < 1%`.
pub const DEFAULT_DROPPED_RATE: &str = "dropped_rate < 1%";

impl Threshold {
    /// The implicit `dropped_rate < 1%` over the default window, labelled
    /// `(default)` in reports and metrics so nobody looks for it in a file.
    pub fn default_dropped_rate() -> Threshold {
        Threshold {
            failing: Condition {
                metric: Metric::DroppedRate,
                op: Op::Lt,
                limit: 0.01,
                source: format!("{DEFAULT_DROPPED_RATE} (default)"),
            },
            degraded: None,
            window: DEFAULT_WINDOW,
        }
    }

    /// Whether the failing or the degraded condition judges `metric`.
    pub fn names(&self, metric: Metric) -> bool {
        self.failing.metric == metric || self.degraded.as_ref().is_some_and(|d| d.metric == metric)
    }
}

/// The aggregates of one window, as [`Threshold::evaluate`] needs them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct WindowStats {
    pub runs: u64,
    pub failures: u64,
    /// Latency samples (runs that got a response).
    pub samples: u64,
    /// Workload requests that came due (sent or dropped); zero for a
    /// series that never ran a workload.
    pub due: u64,
    /// Workload requests dropped at the concurrency cap.
    pub dropped: u64,
    /// Packets sent by runs that count packets (`ping`), and those lost.
    pub packets: u64,
    pub lost: u64,
}

/// The state of a threshold after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Ok,
    Degraded,
    Failing,
    /// Nothing in the window to judge.
    NoData,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Degraded => "degraded",
            State::Failing => "failing",
            State::NoData => "no_data",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Threshold {
    /// Judges the threshold given a way to read an aggregate (`None` when
    /// the window has no data for it).
    pub fn evaluate(&self, observe: impl Fn(Metric) -> Option<f64>) -> (State, Option<f64>) {
        let Some(observed) = observe(self.failing.metric) else {
            return (State::NoData, None);
        };
        let holds = |c: &Condition| {
            let value = if c.metric == self.failing.metric {
                Some(observed)
            } else {
                observe(c.metric)
            };
            value.is_none_or(|v| {
                c.op.holds(round_latency(c.metric, v), round_latency(c.metric, c.limit))
            })
        };
        let state = if !holds(&self.failing) {
            State::Failing
        } else if self.degraded.as_ref().is_some_and(|d| !holds(d)) {
            State::Degraded
        } else {
            State::Ok
        };
        (state, Some(observed))
    }
}

/// Compares at a fixed resolution — microseconds for latencies (they are
/// recorded in µs), 1e-9 for rates — so float noise cannot move a value
/// across an exactly-equal limit.
fn round_latency(metric: Metric, v: f64) -> f64 {
    let scale = if metric.is_latency() { 1e6 } else { 1e9 };
    (v * scale).round() / scale
}

/// Parses `METRIC OP VALUE`.
pub fn parse_condition(text: &str) -> Result<Condition, String> {
    let source = text.trim();
    let ops = ["<=", ">=", "<", ">"];
    let (pos, op_text) = ops
        .iter()
        .filter_map(|op| source.find(op).map(|p| (p, *op)))
        .min_by_key(|(p, op)| (*p, std::cmp::Reverse(op.len())))
        .ok_or_else(|| {
            format!("expected `METRIC OP VALUE` like `p(99) < 500ms`, found `{source}` (no comparison: use <, <=, > or >=)")
        })?;
    let op = match op_text {
        "<=" => Op::Le,
        ">=" => Op::Ge,
        "<" => Op::Lt,
        _ => Op::Gt,
    };
    let metric_text = source[..pos].trim();
    let value_text = source[pos + op_text.len()..].trim();
    let metric = parse_metric(metric_text)?;
    let limit = if metric.is_latency() {
        parse_latency(value_text)?
    } else {
        parse_ratio(value_text)?
    };
    Ok(Condition {
        metric,
        op,
        limit,
        source: source.to_owned(),
    })
}

fn parse_metric(text: &str) -> Result<Metric, String> {
    let t = text.replace(' ', "");
    match t.as_str() {
        "avg" => return Ok(Metric::Avg),
        "min" => return Ok(Metric::Min),
        "max" => return Ok(Metric::Max),
        "med" => return Ok(Metric::Percentile(50.0)),
        "error_rate" => return Ok(Metric::ErrorRate),
        "availability" => return Ok(Metric::Availability),
        "dropped_rate" => return Ok(Metric::DroppedRate),
        "loss" => return Ok(Metric::Loss),
        _ => {}
    }
    if let Some(q) = t.strip_prefix("p(").and_then(|r| r.strip_suffix(')')) {
        return match q.parse::<f64>() {
            Ok(q) if q > 0.0 && q <= 100.0 => Ok(Metric::Percentile(q)),
            _ => Err(format!(
                "expected a percentile from 0 (exclusive) to 100 in `p(…)`, found `{q}`"
            )),
        };
    }
    Err(format!(
        "unknown metric `{text}` (expected p(N), avg, min, max, med, error_rate, availability, dropped_rate or loss)"
    ))
}

fn parse_latency(text: &str) -> Result<f64, String> {
    let d = humantime::parse_duration(text.replace(' ', "").as_str()).map_err(|_| {
        format!(
            "expected a latency like `500ms` or `1.5s`… found `{text}` (write a unit: us, ms, s, m)"
        )
    });
    match d {
        Ok(d) => Ok(d.as_secs_f64()),
        Err(e) => {
            // humantime has no fractions: accept `1.5s` and `0.5ms` too.
            let (num, unit) = text.trim().split_at(
                text.trim()
                    .find(|c: char| c.is_ascii_alphabetic())
                    .unwrap_or(text.len()),
            );
            let n: f64 = num.trim().parse().map_err(|_| e.clone())?;
            let scale = match unit.trim() {
                "us" | "µs" => 1e-6,
                "ms" => 1e-3,
                "s" => 1.0,
                "m" => 60.0,
                _ => return Err(e),
            };
            Ok(n * scale)
        }
    }
}

fn parse_ratio(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let (num, divisor) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), 100.0),
        None => (t, 1.0),
    };
    match num.parse::<f64>().map(|n| n / divisor) {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "expected a rate like `1%` or `0.01` (between 0 and 100%), found `{text}`"
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(failing: &str, degraded: Option<&str>) -> Threshold {
        Threshold {
            failing: parse_condition(failing).unwrap(),
            degraded: degraded.map(|d| parse_condition(d).unwrap()),
            window: DEFAULT_WINDOW,
        }
    }

    #[test]
    fn parses_every_kind() {
        for (src, metric, op, limit) in [
            ("p(99) < 500ms", Metric::Percentile(99.0), Op::Lt, 0.5),
            ("p(99.9)<=1s", Metric::Percentile(99.9), Op::Le, 1.0),
            ("p(50) < 1.5s", Metric::Percentile(50.0), Op::Lt, 1.5),
            ("avg < 100ms", Metric::Avg, Op::Lt, 0.1),
            ("min > 0.5ms", Metric::Min, Op::Gt, 0.0005),
            ("max <= 2s", Metric::Max, Op::Le, 2.0),
            ("med < 20ms", Metric::Percentile(50.0), Op::Lt, 0.02),
            ("error_rate < 1%", Metric::ErrorRate, Op::Lt, 0.01),
            ("error_rate <= 0.05", Metric::ErrorRate, Op::Le, 0.05),
            ("availability >= 99.9%", Metric::Availability, Op::Ge, 0.999),
            ("dropped_rate < 1%", Metric::DroppedRate, Op::Lt, 0.01),
            ("dropped_rate<=0", Metric::DroppedRate, Op::Le, 0.0),
            ("loss < 1%", Metric::Loss, Op::Lt, 0.01),
            ("loss <= 0.2", Metric::Loss, Op::Le, 0.2),
        ] {
            let c = parse_condition(src).unwrap();
            assert_eq!(c.metric, metric, "{src}");
            assert_eq!(c.op, op, "{src}");
            assert!((c.limit - limit).abs() < 1e-12, "{src}: {}", c.limit);
        }
    }

    #[test]
    fn rejects_nonsense_with_reasons() {
        for (src, needle) in [
            ("p(99) 500ms", "no comparison"),
            ("p(101) < 1s", "percentile"),
            ("p99 < 1s", "unknown metric"),
            ("latency < 1s", "unknown metric"),
            ("p(99) < 500", "unit"),
            ("error_rate < 150%", "rate"),
            ("availability >= lots", "rate"),
            // A rate, not a latency: `1ms` of drops means nothing.
            ("dropped_rate < 1ms", "rate"),
            ("dropped_rate < 200%", "rate"),
            ("drop_rate < 1%", "dropped_rate"),
        ] {
            let e = parse_condition(src).unwrap_err();
            assert!(e.contains(needle), "{src}: {e}");
        }
    }

    /// The boundary table: equal to the limit fails `<` and passes `<=`.
    #[test]
    fn boundaries_follow_the_operator_as_written() {
        let at = |v: f64| move |_m: Metric| Some(v);
        for (threshold, observed, want) in [
            ("p(99) < 500ms", 0.499_999, State::Ok),
            ("p(99) < 500ms", 0.5, State::Failing),
            ("p(99) <= 500ms", 0.5, State::Ok),
            ("p(99) <= 500ms", 0.500_001, State::Failing),
            ("avg < 100ms", 0.1, State::Failing),
            ("min > 1ms", 0.001, State::Failing),
            ("max >= 1ms", 0.001, State::Ok),
            ("error_rate < 1%", 0.01, State::Failing),
            ("error_rate <= 1%", 0.01, State::Ok),
            ("availability >= 99.9%", 0.999, State::Ok),
            ("availability >= 99.9%", 0.998_999, State::Failing),
            ("availability > 99.9%", 0.999, State::Failing),
        ] {
            let (state, obs) = t(threshold, None).evaluate(at(observed));
            assert_eq!(state, want, "{threshold} at {observed}");
            assert_eq!(obs, Some(observed));
        }
    }

    #[test]
    fn degraded_sits_between_ok_and_failing() {
        let th = t("p(95) < 200ms", Some("p(95) < 150ms"));
        let at = |v: f64| move |_m: Metric| Some(v);
        assert_eq!(th.evaluate(at(0.100)).0, State::Ok);
        assert_eq!(th.evaluate(at(0.150)).0, State::Degraded);
        assert_eq!(th.evaluate(at(0.199)).0, State::Degraded);
        assert_eq!(th.evaluate(at(0.200)).0, State::Failing);
    }

    /// Regression: a workload that dropped 75 % of its requests passed,
    /// because nothing judged the drops. `dropped_rate` is a rate compared
    /// at the boundary like any other.
    #[test]
    fn dropped_rate_is_a_rate_judged_at_its_boundary() {
        assert!(!Metric::DroppedRate.is_latency());
        let at = |v: f64| move |_m: Metric| Some(v);
        for (threshold, observed, want) in [
            ("dropped_rate < 1%", 0.0, State::Ok),
            ("dropped_rate < 1%", 0.009_999, State::Ok),
            ("dropped_rate < 1%", 0.01, State::Failing),
            ("dropped_rate <= 1%", 0.01, State::Ok),
            ("dropped_rate < 1%", 0.75, State::Failing),
            ("dropped_rate <= 0", 0.000_1, State::Failing),
        ] {
            assert_eq!(
                t(threshold, None).evaluate(at(observed)).0,
                want,
                "{threshold} at {observed}"
            );
        }
        // Only the drops are read: a perfect error rate does not help.
        let th = t("dropped_rate < 1%", None);
        let observe = |m: Metric| match m {
            Metric::DroppedRate => Some(0.75),
            _ => Some(0.0),
        };
        assert_eq!(th.evaluate(observe), (State::Failing, Some(0.75)));
    }

    #[test]
    fn the_default_dropped_rate_threshold_fails_at_one_percent_and_says_it_is_the_default() {
        let d = Threshold::default_dropped_rate();
        // The same condition as writing it, over the default window.
        let written = parse_condition(DEFAULT_DROPPED_RATE).unwrap();
        assert_eq!(
            (d.failing.metric, d.failing.op, d.failing.limit),
            (written.metric, written.op, written.limit)
        );
        assert_eq!(d.window, DEFAULT_WINDOW);
        assert_eq!(d.failing.source, "dropped_rate < 1% (default)");
        let at = |v: f64| move |_m: Metric| Some(v);
        assert_eq!(d.evaluate(at(0.0)).0, State::Ok);
        assert_eq!(d.evaluate(at(0.01)).0, State::Failing);
        assert_eq!(d.evaluate(at(0.75)).0, State::Failing);
        assert!(d.names(Metric::DroppedRate));
        // A threshold names a metric by its failing or its degraded level.
        assert!(!t("error_rate < 1%", None).names(Metric::DroppedRate));
        assert!(t("p(99) < 1s", Some("dropped_rate < 1%")).names(Metric::DroppedRate));
    }

    #[test]
    fn no_data_is_its_own_state() {
        let th = t("p(99) < 1s", None);
        assert_eq!(th.evaluate(|_| None), (State::NoData, None));
    }
}
