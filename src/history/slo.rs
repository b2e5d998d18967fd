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

const HOUR_MS: i64 = 3_600_000;

/// Latency-SLI counts of finished hours, which no longer change: decoding
/// a month of hourly histograms for every latency SLO every 30 s would cost
/// far more than keeping 12 bytes per hour. Per (probe, environment,
/// threshold): the first hour held and one entry per hour after it.
#[derive(Debug, Default)]
pub struct HourCache {
    pairs: std::collections::HashMap<(String, String, u128), Hours>,
}

/// The first hour held, then (good, total) per hour from it (`None`: not
/// read yet).
type Hours = (i64, Vec<Option<(u32, u32)>>);

impl HourCache {
    /// Forgets pairs `keep` rejects (SLOs removed by a reload).
    pub fn retain(&mut self, keep: impl Fn(&str, &str) -> bool) {
        self.pairs.retain(|(p, e, _), _| keep(p, e));
    }
}

/// [`counts`] with the finished hours of a latency SLI read from `cache`
/// (and added to it).
#[allow(clippy::too_many_arguments)]
fn counts_cached(
    reader: &Reader,
    probe: &str,
    environment: &str,
    sli: Sli,
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
    cache: &mut HourCache,
) -> Result<Counts, store::Error> {
    let Sli::Latency { threshold } = sli else {
        return counts(reader, probe, environment, sli, from_ms, to_ms);
    };
    // Hours wholly inside the window and final: rolled up (5 minutes after
    // they end) with a margin, so at least two hours old.
    let first = from_ms.div_euclid(HOUR_MS) + i64::from(from_ms.rem_euclid(HOUR_MS) != 0);
    let last = to_ms
        .div_euclid(HOUR_MS)
        .min(now_ms.div_euclid(HOUR_MS) - 1);
    if first >= last {
        return counts(reader, probe, environment, sli, from_ms, to_ms);
    }
    let key = (
        probe.to_owned(),
        environment.to_owned(),
        threshold.as_micros(),
    );
    let (start, hours) = cache
        .pairs
        .entry(key)
        .or_insert_with(|| (first, Vec::new()));
    if first < *start {
        let missing = usize::try_from(*start - first).unwrap_or(0);
        hours.splice(0..0, std::iter::repeat_n(None, missing));
        *start = first;
    }
    // Hours before the longest window an SLO may have are dropped.
    let oldest = now_ms.div_euclid(HOUR_MS) - 401 * 24;
    if *start < oldest {
        let drop = usize::try_from(oldest - *start)
            .unwrap_or(0)
            .min(hours.len());
        hours.drain(..drop);
        *start = oldest;
    }
    let mut total = counts(reader, probe, environment, sli, from_ms, first * HOUR_MS)?;
    for hour in first..last {
        let Ok(i) = usize::try_from(hour - *start) else {
            continue;
        };
        if hours.len() <= i {
            hours.resize(i + 1, None);
        }
        let c = match hours[i] {
            Some((good, all)) => Counts {
                good: u64::from(good),
                total: u64::from(all),
            },
            None => {
                let c = counts(
                    reader,
                    probe,
                    environment,
                    sli,
                    hour * HOUR_MS,
                    (hour + 1) * HOUR_MS,
                )?;
                let fit = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
                hours[i] = Some((fit(c.good), fit(c.total)));
                c
            }
        };
        total += c;
    }
    total += counts(reader, probe, environment, sli, last * HOUR_MS, to_ms)?;
    Ok(total)
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
    status_with(
        reader,
        probe,
        environment,
        slo,
        now_ms,
        &mut HourCache::default(),
    )
}

/// [`status`] with a cache of finished hours kept between computations.
pub fn status_with(
    reader: &Reader,
    probe: &str,
    environment: &str,
    slo: &Slo,
    now_ms: i64,
    cache: &mut HourCache,
) -> Result<SloStatus, store::Error> {
    // Windows are read in whole minutes, their end's minute excluded: end
    // them after the current minute, so its runs count at once.
    let through = store::minute_of(now_ms)
        .saturating_add(1)
        .saturating_mul(60_000);
    let mut by_window = Vec::new();
    for w in slo.windows() {
        let c = counts_cached(
            reader,
            probe,
            environment,
            slo.sli,
            now_ms.saturating_sub(ms(w)),
            through,
            now_ms,
            cache,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::history::store::{Tallies, Writer};

    #[test]
    fn cached_finished_hours_give_the_counts_a_fresh_read_gives() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::open(dir.path()).unwrap();
        let now_ms = 1_000 * HOUR_MS + 17 * 60_000;
        let now_minute = now_ms / 60_000;
        let mut batch = w.batch().unwrap();
        // Eight hours of minutes: 10 runs each, 1 failed, latencies 100 ms
        // and (every third minute) 400 ms.
        for m in (now_minute - 8 * 60)..=now_minute {
            let mut t = Tallies {
                runs: 10,
                failed: 1,
                ..Tallies::default()
            };
            let ms = if m % 3 == 0 { 400 } else { 100 };
            for _ in 0..9 {
                t.latencies.record(Duration::from_millis(ms));
            }
            batch.minute(("p", "e", ""), m, &t).unwrap();
        }
        batch.commit().unwrap();
        while w.roll_up(now_minute, 5).unwrap() {}
        let reader = Reader::open(dir.path()).unwrap();
        let slo = Slo {
            objective: 0.9,
            window: Duration::from_secs(6 * 3600),
            sli: Sli::Latency {
                threshold: Duration::from_millis(300),
            },
            rules: crate::slo::default_rules()
                .into_iter()
                .filter(|r| r.long <= Duration::from_secs(6 * 3600))
                .collect(),
        };
        let fresh = status(&reader, "p", "e", &slo, now_ms).unwrap();
        let mut cache = HourCache::default();
        let first = status_with(&reader, "p", "e", &slo, now_ms, &mut cache).unwrap();
        let held: usize = cache
            .pairs
            .values()
            .map(|(_, h)| h.iter().flatten().count())
            .sum();
        assert!(held >= 4, "finished hours are cached: {held}");
        let second = status_with(&reader, "p", "e", &slo, now_ms, &mut cache).unwrap();
        assert_eq!(fresh, first);
        assert_eq!(first, second);
        // 6 hours + the current minute's share: 361 minutes of 10 runs.
        assert_eq!(fresh.total, 3610);
        // Good: the 9 passing runs of every 100 ms minute.
        let slow_minutes = ((now_minute - 360)..=now_minute)
            .filter(|m| m % 3 == 0)
            .count() as u64;
        assert_eq!(fresh.good, (361 - slow_minutes) * 9);
    }
}
