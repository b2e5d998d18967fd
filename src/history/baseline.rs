//! Baselines from history: a pair's latency metric over its trailing
//! window (whole hours, leaving out every hour the pair spent failing), and
//! the same metric over the recent window, for `slo::Baseline::judge`.

use super::store::{self, Reader};
use crate::outcome::Latencies;
use crate::slo::{Baseline, BaselineMetric};

const HOUR_MS: i64 = 3_600_000;

/// A metric's value (seconds) and the samples it was taken over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Value {
    pub seconds: f64,
    pub samples: u64,
}

/// `metric` over `latencies`; `None` without samples.
pub fn metric_of(metric: BaselineMetric, latencies: &Latencies) -> Option<Value> {
    let samples = latencies.len();
    if samples == 0 {
        return None;
    }
    let seconds = match metric {
        BaselineMetric::Percentile(q) => latencies.percentile(q)?.as_secs_f64(),
        BaselineMetric::Avg => {
            let sum: f64 = latencies
                .iter()
                .map(|(d, n)| d.as_secs_f64() * n as f64)
                .sum();
            sum / samples as f64
        }
    };
    Some(Value { seconds, samples })
}

/// Failing stretches of a pair as `[from, to)` in Unix milliseconds, from
/// its state changes since `since_ms` (a stretch still open ends at
/// `now_ms`).
fn failing_periods(
    reader: &Reader,
    probe: &str,
    environment: &str,
    since_ms: i64,
    now_ms: i64,
) -> Result<Vec<(i64, i64)>, store::Error> {
    let changes = reader.transitions(probe, environment, 0)?;
    let mut out = Vec::new();
    let mut open: Option<i64> = None;
    for t in changes {
        if t.to == "failing" && open.is_none() {
            open = Some(t.at_ms);
        } else if t.to != "failing" {
            if let Some(start) = open.take() {
                out.push((start, t.at_ms));
            }
        }
    }
    if let Some(start) = open {
        out.push((start, now_ms));
    }
    out.retain(|(_, end)| *end > since_ms);
    Ok(out)
}

/// The baseline: `baseline.metric` over the whole hours of the trailing
/// `baseline.window` before the current hour, without the hours that
/// overlap a failing stretch.
pub fn trailing(
    reader: &Reader,
    probe: &str,
    environment: &str,
    baseline: &Baseline,
    now_ms: i64,
) -> Result<Option<Value>, store::Error> {
    let end = now_ms.div_euclid(HOUR_MS) * HOUR_MS;
    let window_ms = i64::try_from(baseline.window.as_millis()).unwrap_or(i64::MAX);
    let start = end.saturating_sub(window_ms).div_euclid(HOUR_MS) * HOUR_MS;
    let failing = failing_periods(reader, probe, environment, start, now_ms)?;
    let mut latencies = Latencies::default();
    let mut hour = start;
    while hour < end {
        let next = hour + HOUR_MS;
        let spoiled = failing.iter().any(|(from, to)| *from < next && *to > hour);
        if !spoiled {
            let w = reader.window((probe, environment, ""), hour, next, true)?;
            latencies.merge(&w.latencies);
        }
        hour = next;
    }
    Ok(metric_of(baseline.metric, &latencies))
}

/// `baseline.metric` over the last `window_ms` (the probe's threshold
/// window) up to `now_ms`.
pub fn recent(
    reader: &Reader,
    probe: &str,
    environment: &str,
    baseline: &Baseline,
    window_ms: i64,
    now_ms: i64,
) -> Result<Option<Value>, store::Error> {
    // Up to and with the current minute.
    let end = (store::minute_of(now_ms) + 1) * 60_000;
    let w = reader.window(
        (probe, environment, ""),
        now_ms.saturating_sub(window_ms),
        end,
        true,
    )?;
    Ok(metric_of(baseline.metric, &w.latencies))
}
