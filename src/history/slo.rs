//! SLO status from the persisted counts: the budget over the SLO window and
//! the burn rate of every window the rules read, computed from the history
//! (never from memory), so a restart loses nothing and changes nothing.

use super::store::{self, Reader};
use crate::slo::{Counts, Sli, Slo};
use serde::Serialize;
use std::time::Duration;

/// One rule's state, as the API and the alerts show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleStatus {
    pub severity: &'static str,
    pub factor: f64,
    pub long_seconds: u64,
    pub short_seconds: u64,
    pub long_rate: f64,
    pub short_rate: f64,
    pub firing: bool,
}

/// A (probe, environment)'s SLO now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloStatus {
    pub probe: String,
    pub environment: String,
    pub sli: &'static str,
    /// The latency a good event stays within (`latency` SLIs).
    pub threshold_seconds: Option<f64>,
    pub objective: f64,
    pub window_seconds: u64,
    /// Events and good events over the SLO window.
    pub total: u64,
    pub good: u64,
    /// good ÷ total over the window; `None` without events.
    pub attainment: Option<f64>,
    pub budget_remaining: f64,
    pub budget_consumed: f64,
    /// The burn rate over each window the rules read, shortest first.
    pub burn_rates: Vec<(u64, f64)>,
    pub rules: Vec<RuleStatus>,
}

/// The counts of `sli` for a pair over `[from_ms, to_ms)`. An event is a
/// run (a workload's request); a latency SLI's good events are those that
/// passed within the threshold (the stored latencies are the passing
/// events').
pub fn counts(
    reader: &Reader,
    probe: &str,
    environment: &str,
    sli: Sli,
    from_ms: i64,
    to_ms: i64,
) -> Result<Counts, store::Error> {
    let latency = matches!(sli, Sli::Latency { .. });
    let w = reader.window((probe, environment, ""), from_ms, to_ms, latency)?;
    let good = match sli {
        Sli::Availability => w.runs.saturating_sub(w.failed),
        Sli::Latency { threshold } => w
            .latencies
            .iter()
            .filter(|(d, _)| *d <= threshold)
            .map(|(_, n)| n)
            .sum(),
    };
    Ok(Counts {
        good: good.min(w.runs),
        total: w.runs,
    })
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The SLO status of a pair at `now_ms`.
pub fn status(
    reader: &Reader,
    probe: &str,
    environment: &str,
    slo: &Slo,
    now_ms: i64,
) -> Result<SloStatus, store::Error> {
    // Windows are read in whole minutes, their end's minute excluded: end
    // them after the current minute, so its runs count at once.
    let through = store::minute_of(now_ms)
        .saturating_add(1)
        .saturating_mul(60_000);
    let mut by_window = Vec::new();
    for w in slo.windows() {
        let c = counts(
            reader,
            probe,
            environment,
            slo.sli,
            now_ms.saturating_sub(ms(w)),
            through,
        )?;
        by_window.push((w, c));
    }
    let lookup = |w: Duration| {
        by_window
            .iter()
            .find(|(x, _)| *x == w)
            .map(|(_, c)| *c)
            .unwrap_or_default()
    };
    let over = lookup(slo.window);
    let budget = slo.budget(over);
    let rules = slo
        .evaluate(lookup)
        .into_iter()
        .map(|r| RuleStatus {
            severity: r.rule.severity.as_str(),
            factor: r.rule.factor,
            long_seconds: r.rule.long.as_secs(),
            short_seconds: r.rule.short.as_secs(),
            long_rate: r.long_rate,
            short_rate: r.short_rate,
            firing: r.firing,
        })
        .collect();
    Ok(SloStatus {
        probe: probe.to_owned(),
        environment: environment.to_owned(),
        sli: slo.sli.as_str(),
        threshold_seconds: match slo.sli {
            Sli::Latency { threshold } => Some(threshold.as_secs_f64()),
            Sli::Availability => None,
        },
        objective: slo.objective,
        window_seconds: slo.window.as_secs(),
        total: over.total,
        good: over.good,
        attainment: (over.total > 0).then(|| over.good as f64 / over.total as f64),
        budget_remaining: budget.remaining,
        budget_consumed: budget.consumed,
        burn_rates: by_window
            .iter()
            .filter(|(w, _)| {
                *w != slo.window || slo.rules.iter().any(|r| r.long == *w || r.short == *w)
            })
            .map(|(w, c)| (w.as_secs(), slo.burn_rate(*c)))
            .collect(),
        rules,
    })
}
