//! Service level objectives and baselines: what a probe promises over a
//! long window (`slo = { objective = "99.9%", window = "30d" }`) and how it
//! compares with its own past (`baseline = { metric = "p95", window = "7d",
//! tolerance = "20%" }`). Plain data and pure arithmetic on counts: the
//! history store supplies the counts, the daemon the time.

use std::time::Duration;

/// What a good event is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sli {
    /// A run that passed.
    Availability,
    /// A run that passed faster than `threshold`.
    Latency { threshold: Duration },
}

/// `slo = { … }` of a probe, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    /// The share of good events promised, in (0, 1): `99.9%` is 0.999.
    pub objective: f64,
    /// The window the objective holds over (default 30 days).
    pub window: Duration,
    pub sli: Sli,
}

/// Which aggregate a baseline compares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BaselineMetric {
    /// Latency percentile, 0 < q ≤ 100.
    Percentile(f64),
    Avg,
}

/// What a regression beyond the tolerance makes the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaselineLevel {
    Degraded,
    Failing,
}

/// `baseline = { … }` of a probe, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    pub metric: BaselineMetric,
    /// The trailing window the baseline is taken over (default 7 days).
    pub window: Duration,
    /// How much worse than the baseline is still fine: `20%` is 0.2.
    pub tolerance: f64,
    /// Fewer latency samples than this in the baseline window: no verdict.
    pub min_samples: u64,
    pub level: BaselineLevel,
}
