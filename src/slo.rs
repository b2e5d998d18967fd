//! Service level objectives and baselines: what a probe promises over a
//! long window (`slo = { objective = "99.9%", window = "30d" }`) and how it
//! compares with its own past (`baseline = { metric = "p95", window = "7d",
//! tolerance = "20%" }`). Plain data and pure arithmetic on counts: the
//! history store supplies the counts, the daemon the time. The value
//! syntaxes of both keys (percentages, metrics, names) are parsed here; the
//! config checker locates their errors.
//!
//! An SLO's alerts are multiwindow, multi-burn-rate alerts (the Google SRE
//! workbook, chapter 5): a rule fires when the error budget burns at least
//! `factor` times as fast as the objective allows over both its long window
//! (enough of the budget is gone to matter) and its short one (it is still
//! burning, so the alert resets soon after the fault ends).

use std::fmt;
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// An SLO's window when none is written.
pub const DEFAULT_SLO_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);
/// The shortest SLO window: the history keeps hourly counts.
pub const MIN_SLO_WINDOW: Duration = HOUR;
/// The longest SLO window: the history keeps hourly counts for 400 days.
pub const MAX_SLO_WINDOW: Duration = Duration::from_secs(400 * 24 * 3600);
/// The shortest window a burn-rate rule may use.
pub const MIN_RULE_WINDOW: Duration = Duration::from_secs(60);
/// At most this many burn-rate rules per SLO (each is evaluated after
/// every run).
pub const MAX_RULES: usize = 10;

/// A baseline's window when none is written.
pub const DEFAULT_BASELINE_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// The shortest baseline window.
pub const MIN_BASELINE_WINDOW: Duration = HOUR;
/// The longest baseline window.
pub const MAX_BASELINE_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);
/// A baseline judges nothing until its window holds this many latency
/// samples, unless `min_samples` says otherwise.
pub const DEFAULT_MIN_SAMPLES: u64 = 100;

/// Ratios (objectives, tolerances) are kept at this resolution, so that
/// `99.9%` is the double nearest 0.999 and `1 − 99.9%` the one nearest
/// 0.001, as written.
const RATIO_RESOLUTION: f64 = 1e12;
/// Rates are compared with their limits at this relative resolution, so
/// float noise cannot move a rate written exactly at a limit across it
/// (`1.44% / 0.1%` is 14.399999999999999 in doubles).
const COMPARE_RESOLUTION: f64 = 1e-9;

fn round_ratio(x: f64) -> f64 {
    (x * RATIO_RESOLUTION).round() / RATIO_RESOLUTION
}

/// `value ≥ limit`, at [`COMPARE_RESOLUTION`].
fn at_least(value: f64, limit: f64) -> bool {
    value >= limit - limit.abs() * COMPARE_RESOLUTION
}

/// `value > limit`, at [`COMPARE_RESOLUTION`].
fn above(value: f64, limit: f64) -> bool {
    value > limit + limit.abs() * COMPARE_RESOLUTION
}

/// What a good event is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sli {
    /// A run that passed.
    Availability,
    /// A run that passed in at most `threshold`.
    Latency { threshold: Duration },
}

impl Sli {
    /// Whether a run is a good event. A latency SLI counts a run that
    /// took exactly `threshold` as good, as a Prometheus histogram's `le`
    /// bucket does; a failed run is bad whatever its latency.
    pub fn good(&self, passed: bool, latency: Duration) -> bool {
        match self {
            Sli::Availability => passed,
            Sli::Latency { threshold } => passed && latency <= *threshold,
        }
    }

    /// `availability` or `latency`: the name written in `sli = "…"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Sli::Availability => "availability",
            Sli::Latency { .. } => "latency",
        }
    }
}

/// Events counted over one window: runs, and the good ones among them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counts {
    pub good: u64,
    pub total: u64,
}

impl Counts {
    /// Events that were not good (never negative, even for inconsistent
    /// counts with `good > total`).
    pub fn bad(self) -> u64 {
        self.total.saturating_sub(self.good)
    }
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        self.good = self.good.saturating_add(other.good);
        self.total = self.total.saturating_add(other.total);
    }
}

impl std::iter::Sum for Counts {
    fn sum<I: Iterator<Item = Counts>>(iter: I) -> Counts {
        let mut sum = Counts::default();
        for c in iter {
            sum += c;
        }
        sum
    }
}

/// Who a burn-rate rule alerts: a page needs someone now, a ticket within
/// days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BurnSeverity {
    Page,
    Ticket,
}

impl BurnSeverity {
    pub fn as_str(self) -> &'static str {
        match self {
            BurnSeverity::Page => "page",
            BurnSeverity::Ticket => "ticket",
        }
    }

    /// `page` or `ticket`.
    pub fn parse(text: &str) -> Result<BurnSeverity, String> {
        match text.trim() {
            "page" => Ok(BurnSeverity::Page),
            "ticket" => Ok(BurnSeverity::Ticket),
            _ => Err(format!("expected `page` or `ticket`, found `{text}`")),
        }
    }
}

impl fmt::Display for BurnSeverity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One multiwindow burn-rate rule: fires while the budget burns at least
/// `factor` times as fast as the objective allows over both `long` and
/// `short`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnRule {
    /// The burn rate that fires the rule: 1 spends the budget exactly over
    /// the SLO window, 14.4 spends 2 % of a 30-day budget in an hour.
    pub factor: f64,
    /// The window that says enough of the budget is gone to matter.
    pub long: Duration,
    /// The window that says it is still burning (the workbook's 1/12 of
    /// `long`): the rule stops firing soon after the fault ends.
    pub short: Duration,
    pub severity: BurnSeverity,
}

/// The SRE workbook's rules for a 30-day SLO: 14.4× over 1h and 5m pages
/// (2 % of the budget in an hour), 6× over 6h and 30m pages (5 % in six
/// hours), 1× over 3 days and 6h opens a ticket (10 % in three days).
pub fn default_rules() -> Vec<BurnRule> {
    let minutes = |m: u64| Duration::from_secs(m * 60);
    vec![
        BurnRule {
            factor: 14.4,
            long: HOUR,
            short: minutes(5),
            severity: BurnSeverity::Page,
        },
        BurnRule {
            factor: 6.0,
            long: 6 * HOUR,
            short: minutes(30),
            severity: BurnSeverity::Page,
        },
        BurnRule {
            factor: 1.0,
            long: 3 * DAY,
            short: 6 * HOUR,
            severity: BurnSeverity::Ticket,
        },
    ]
}

/// `slo = { … }` of a probe, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    /// The share of good events promised, in (0, 1): `99.9%` is 0.999.
    pub objective: f64,
    /// The window the objective holds over (default 30 days).
    pub window: Duration,
    pub sli: Sli,
    /// The burn-rate alert rules ([`default_rules`] unless `alerts` is
    /// written; `alerts = []` leaves none).
    pub rules: Vec<BurnRule>,
}

/// The error budget over the SLO window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// `1 − consumed`: the share of the budget left; negative once the
    /// objective is missed over the window.
    pub remaining: f64,
    /// Bad events / the bad events the objective allows among `total`
    /// (which is the window's burn rate); 0 when there are no events.
    pub consumed: f64,
    /// The bad events the objective allows among `total`: 43.2 of 43,200
    /// at 99.9 %.
    pub allowed: f64,
    pub good: u64,
    pub total: u64,
}

/// One burn-rate rule after an evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleState {
    pub rule: BurnRule,
    /// The burn rate over the rule's long window.
    pub long_rate: f64,
    /// The burn rate over the rule's short window.
    pub short_rate: f64,
    pub firing: bool,
}

impl Slo {
    /// The share of events that may be bad, `1 − objective` (0.001 for
    /// 99.9 %, rounded to 1e-12 so it is the share as written).
    pub fn error_budget(&self) -> f64 {
        round_ratio(1.0 - self.objective)
    }

    /// How fast the budget burns over a window: its error rate over the
    /// error rate the objective allows, `(bad / total) / (1 − objective)`.
    /// 1 spends the budget exactly over the SLO window. 0 when there are no
    /// events: no runs burn nothing. (An objective of 100 %, which the
    /// config refuses, gives infinity for any bad event.)
    pub fn burn_rate(&self, c: Counts) -> f64 {
        if c.total == 0 {
            return 0.0;
        }
        let error_rate = c.bad() as f64 / c.total as f64;
        let budget = self.error_budget();
        if budget <= 0.0 {
            return if c.bad() == 0 { 0.0 } else { f64::INFINITY };
        }
        error_rate / budget
    }

    /// The error budget over `over_window`, the counts of the SLO window.
    ///
    /// The budget counts the events that exist: over a window the history
    /// has only partly filled (a new probe, a new SLO) the allowed bad
    /// events are the objective's share of the events recorded so far, not
    /// of the events a full window would hold. So early on a few failures
    /// consume a large share (one failure in the first 1,000 runs is the
    /// whole budget of 99.9 %), and `consumed` is the error rate against
    /// the objective, whatever the window's fill. No events: nothing
    /// consumed, the whole budget remains.
    pub fn budget(&self, over_window: Counts) -> Budget {
        let consumed = self.burn_rate(over_window);
        Budget {
            remaining: 1.0 - consumed,
            consumed,
            allowed: over_window.total as f64 * self.error_budget(),
            good: over_window.good.min(over_window.total),
            total: over_window.total,
        }
    }

    /// Every distinct window the rules and the budget read, shortest first:
    /// the counts [`Slo::evaluate`] and [`Slo::budget`] ask for.
    pub fn windows(&self) -> Vec<Duration> {
        let mut windows: Vec<Duration> = self
            .rules
            .iter()
            .flat_map(|r| [r.long, r.short])
            .chain(std::iter::once(self.window))
            .collect();
        windows.sort();
        windows.dedup();
        windows
    }

    /// Each rule's state, in the rules' order, given the counts of the
    /// trailing window of each length. A rule fires when the long window
    /// holds events and the burn rates over both windows reach its factor
    /// (a rate exactly at the factor fires; compared at 1e-9 relative
    /// resolution so `1.44%` against 99.9 % is exactly 14.4×). A short
    /// window with no events burns nothing, so the rule does not fire.
    pub fn evaluate(&self, counts: impl Fn(Duration) -> Counts) -> Vec<RuleState> {
        self.rules
            .iter()
            .map(|rule| {
                let long = counts(rule.long);
                let short = counts(rule.short);
                let long_rate = self.burn_rate(long);
                let short_rate = self.burn_rate(short);
                let firing = long.total > 0
                    && at_least(long_rate, rule.factor)
                    && at_least(short_rate, rule.factor);
                RuleState {
                    rule: *rule,
                    long_rate,
                    short_rate,
                    firing,
                }
            })
            .collect()
    }
}

/// Which aggregate a baseline compares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BaselineMetric {
    /// Latency percentile, 0 < q ≤ 100.
    Percentile(f64),
    Avg,
}

impl BaselineMetric {
    /// `p50`, `p90`, `p95`, `p99` (any `pN` with a whole N), `p(99.9)`
    /// (the thresholds' syntax) or `avg`.
    pub fn parse(text: &str) -> Result<BaselineMetric, String> {
        let t = text.replace(' ', "");
        if t == "avg" {
            return Ok(BaselineMetric::Avg);
        }
        let q = match t.strip_prefix("p(").and_then(|r| r.strip_suffix(')')) {
            Some(q) => Some(q),
            None => t
                .strip_prefix('p')
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        };
        match q.map(str::parse::<f64>) {
            Some(Ok(q)) if q > 0.0 && q <= 100.0 => Ok(BaselineMetric::Percentile(q)),
            Some(_) => Err(format!(
                "expected a percentile from 0 (exclusive) to 100, found `{text}` (write `p(99.9)` for a fraction)"
            )),
            None => Err(format!(
                "expected `p50`, `p90`, `p95`, `p99`, `p(N)` or `avg`, found `{text}`"
            )),
        }
    }
}

impl fmt::Display for BaselineMetric {
    /// As written in the config: `p95`, `p(99.9)`, `avg`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BaselineMetric::Percentile(q) if q.fract() == 0.0 => write!(f, "p{q}"),
            BaselineMetric::Percentile(q) => write!(f, "p({q})"),
            BaselineMetric::Avg => f.write_str("avg"),
        }
    }
}

/// What a regression beyond the tolerance makes the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaselineLevel {
    Degraded,
    Failing,
}

impl BaselineLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            BaselineLevel::Degraded => "degraded",
            BaselineLevel::Failing => "failing",
        }
    }

    /// `degraded` or `failing`.
    pub fn parse(text: &str) -> Result<BaselineLevel, String> {
        match text.trim() {
            "degraded" => Ok(BaselineLevel::Degraded),
            "failing" => Ok(BaselineLevel::Failing),
            _ => Err(format!("expected `degraded` or `failing`, found `{text}`")),
        }
    }
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

/// A current latency aggregate judged against its baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BaselineVerdict {
    /// Too few samples in the baseline window, or no baseline to compare
    /// with (zero or not a number).
    NotEnoughData,
    /// `ratio = current / baseline − 1` is at most the tolerance (negative
    /// when faster than the baseline).
    Within { ratio: f64 },
    /// `ratio` is above the tolerance: the pair is `level`.
    Regressed { ratio: f64 },
}

impl Baseline {
    /// Judges `current` (the metric over the recent window) against
    /// `baseline` (the metric over the baseline window, which held
    /// `baseline_samples` latency samples); both in the same unit. A ratio
    /// exactly at the tolerance is within it (compared at 1e-9 relative
    /// resolution). Without enough samples, or with a baseline that is not
    /// a positive number, there is no verdict; a `current` that is not a
    /// number has none either.
    pub fn judge(&self, current: f64, baseline: f64, baseline_samples: u64) -> BaselineVerdict {
        if baseline_samples < self.min_samples
            || !baseline.is_finite()
            || baseline <= 0.0
            || !current.is_finite()
        {
            return BaselineVerdict::NotEnoughData;
        }
        let ratio = current / baseline - 1.0;
        if above(ratio, self.tolerance) {
            BaselineVerdict::Regressed { ratio }
        } else {
            BaselineVerdict::Within { ratio }
        }
    }
}

/// A window the way it is written in the config: `400d`, `6h`, `5m`
/// (`humantime` would print 400 days as `1year 1month 4days 7h 26m 24s`);
/// anything not a whole number of minutes as `humantime` prints it.
pub fn format_window(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || secs == 0 || secs % 60 != 0 {
        return humantime::format_duration(d).to_string();
    }
    for (unit, size) in [("d", 24 * 3600), ("h", 3600), ("m", 60)] {
        if secs % size == 0 {
            return format!("{}{unit}", secs / size);
        }
    }
    humantime::format_duration(d).to_string()
}

/// A percentage as written (`99.9%`, `20 %`) as a share (0.999, 0.2),
/// rounded to 1e-12. The `%` sign is required: `0.999` and `99.9` would
/// each be a plausible reading of the other.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let wrong = || format!("expected a percentage with a `%` sign like `99.9%`, found `{text}`");
    let number = text.trim().strip_suffix('%').ok_or_else(wrong)?;
    match number.trim().parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(round_ratio(n / 100.0)),
        _ => Err(wrong()),
    }
}

/// An SLO's `objective`: a percentage strictly between 0 and 100 %.
pub fn parse_objective(text: &str) -> Result<f64, String> {
    let share = parse_percent(text)?;
    if share >= 1.0 {
        return Err(format!(
            "an objective of `{text}` leaves no error budget (no failure allowed, so no burn rate): expected less than 100%, like `99.9%`"
        ));
    }
    if share <= 0.0 {
        return Err(format!(
            "expected an objective above 0% and below 100%, like `99.9%`, found `{text}`"
        ));
    }
    Ok(share)
}

/// A baseline's `tolerance`: a percentage above zero.
pub fn parse_tolerance(text: &str) -> Result<f64, String> {
    let share = parse_percent(text)?;
    if share <= 0.0 {
        return Err(format!(
            "expected a tolerance above 0%, like `20%`, found `{text}`"
        ));
    }
    Ok(share)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn slo(objective: &str) -> Slo {
        Slo {
            objective: parse_objective(objective).unwrap(),
            window: DEFAULT_SLO_WINDOW,
            sli: Sli::Availability,
            rules: default_rules(),
        }
    }

    /// `bad` of `total` events.
    fn bad(bad: u64, total: u64) -> Counts {
        Counts {
            good: total - bad,
            total,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn burn_rate_is_the_error_rate_over_the_allowed_one() {
        let s = slo("99.9%");
        for (counts, want) in [
            (bad(0, 0), 0.0),
            (bad(0, 1000), 0.0),
            (bad(1, 1000), 1.0),
            (bad(144, 10_000), 14.4),
            (bad(6, 1000), 6.0),
            (bad(1000, 1000), 1000.0),
            // Inconsistent counts never give a negative rate.
            (
                Counts {
                    good: 20,
                    total: 10,
                },
                0.0,
            ),
        ] {
            let got = s.burn_rate(counts);
            assert!(close(got, want), "{counts:?}: {got} want {want}");
        }
        assert!(close(slo("99%").burn_rate(bad(1, 100)), 1.0));
        assert!(close(slo("99.99%").burn_rate(bad(1, 1000)), 10.0));
        assert!(close(slo("50%").burn_rate(bad(1, 2)), 1.0));
    }

    #[test]
    fn the_error_budget_is_the_share_as_written() {
        assert_eq!(slo("99.9%").error_budget(), 0.001);
        assert_eq!(slo("99%").error_budget(), 0.01);
        assert_eq!(slo("99.95%").error_budget(), 0.0005);
        assert_eq!(slo("99.999%").error_budget(), 0.00001);
    }

    /// The SRE workbook's table, with a 99.9 % objective and the default
    /// rules: (error rate over each window as bad per 10,000) → which of
    /// the three rules fire.
    #[test]
    fn the_workbook_rules_fire_as_the_workbook_says() {
        let s = slo("99.9%");
        // Bad events per 10,000 over 5m, 30m, 1h, 6h, 6h (ticket's short),
        // 3d.
        struct Case {
            what: &'static str,
            m5: u64,
            m30: u64,
            h1: u64,
            h6: u64,
            d3: u64,
            want: [bool; 3],
        }
        let cases = [
            Case {
                what: "no errors",
                m5: 0,
                m30: 0,
                h1: 0,
                h6: 0,
                d3: 0,
                want: [false, false, false],
            },
            Case {
                what: "1.44% over 1h and 5m fires the fast page",
                m5: 144,
                m30: 144,
                h1: 144,
                h6: 0,
                d3: 0,
                want: [true, false, false],
            },
            Case {
                what: "1.44% over 1h but nothing over the last 5m: reset",
                m5: 0,
                m30: 144,
                h1: 144,
                h6: 0,
                d3: 0,
                want: [false, false, false],
            },
            Case {
                what: "just under 14.4x over 1h does not page",
                m5: 144,
                m30: 144,
                h1: 143,
                h6: 0,
                d3: 0,
                want: [false, false, false],
            },
            Case {
                what: "0.6% over 6h and 30m fires the slow page",
                m5: 0,
                m30: 60,
                h1: 60,
                h6: 60,
                d3: 0,
                want: [false, true, false],
            },
            Case {
                what: "0.6% over 6h, 0.59% over 30m does not",
                m5: 0,
                m30: 59,
                h1: 60,
                h6: 60,
                d3: 0,
                want: [false, false, false],
            },
            Case {
                what: "0.1% over 3d and 6h opens a ticket",
                m5: 0,
                m30: 10,
                h1: 10,
                h6: 10,
                d3: 10,
                want: [false, false, true],
            },
            Case {
                what: "a hard outage fires all three",
                m5: 10_000,
                m30: 10_000,
                h1: 10_000,
                h6: 10_000,
                d3: 10_000,
                want: [true, true, true],
            },
        ];
        for case in cases {
            let counts = |w: Duration| {
                let per_10k = match w {
                    w if w == 5 * MIN => case.m5,
                    w if w == 30 * MIN => case.m30,
                    w if w == HOUR => case.h1,
                    w if w == 6 * HOUR => case.h6,
                    w if w == 3 * DAY => case.d3,
                    other => panic!("unexpected window {other:?}"),
                };
                bad(per_10k, 10_000)
            };
            let states = s.evaluate(counts);
            let firing: Vec<bool> = states.iter().map(|r| r.firing).collect();
            assert_eq!(firing, case.want, "{}", case.what);
            assert_eq!(states[0].rule, default_rules()[0]);
        }
    }

    #[test]
    fn evaluate_reports_both_rates() {
        let s = slo("99.9%");
        let states = s.evaluate(|w| {
            if w == HOUR {
                bad(144, 10_000)
            } else {
                bad(288, 10_000)
            }
        });
        assert!(close(states[0].long_rate, 14.4));
        assert!(close(states[0].short_rate, 28.8));
        assert!(states[0].firing);
        assert!(close(states[1].long_rate, 28.8));
    }

    #[test]
    fn no_events_fire_nothing() {
        let s = slo("99.9%");
        let states = s.evaluate(|_| Counts::default());
        assert_eq!(states.len(), 3);
        assert!(states.iter().all(|r| !r.firing && r.long_rate == 0.0));
        // Errors in the short window but an empty long one (inconsistent
        // history): nothing fires.
        let states = s.evaluate(|w| {
            if w == 5 * MIN {
                bad(10, 10)
            } else {
                Counts::default()
            }
        });
        assert!(!states[0].firing);
        // A long window that burns with an empty short one: the short one
        // burns nothing, so the rule has reset.
        let states = s.evaluate(|w| {
            if w == HOUR {
                bad(10, 10)
            } else {
                Counts::default()
            }
        });
        assert!(!states[0].firing);
    }

    #[test]
    fn no_rules_evaluate_to_nothing() {
        let s = Slo {
            rules: Vec::new(),
            ..slo("99.9%")
        };
        assert!(s.evaluate(|_| bad(10, 10)).is_empty());
        assert_eq!(s.windows(), vec![DEFAULT_SLO_WINDOW]);
    }

    #[test]
    fn a_custom_rule_fires_at_its_factor() {
        let s = Slo {
            rules: vec![BurnRule {
                factor: 2.0,
                long: 2 * HOUR,
                short: 10 * MIN,
                severity: BurnSeverity::Ticket,
            }],
            ..slo("99%")
        };
        // 2 % errors against a 1 % budget: 2×, exactly the factor.
        assert!(s.evaluate(|_| bad(2, 100))[0].firing);
        assert!(!s.evaluate(|_| bad(199, 10_000))[0].firing);
    }

    #[test]
    fn budget_over_thirty_days() {
        let s = slo("99.9%");
        // One run a minute for 30 days: 43,200 runs, 43.2 bad allowed.
        for (bad_runs, consumed) in [
            (0, 0.0),
            (1, 1.0 / 43.2),
            (21, 21.0 / 43.2),
            (43, 43.0 / 43.2),
            (44, 44.0 / 43.2),
            (432, 10.0),
        ] {
            let b = s.budget(bad(bad_runs, 43_200));
            assert!(close(b.allowed, 43.2), "{}", b.allowed);
            assert!(close(b.consumed, consumed), "{bad_runs}: {}", b.consumed);
            assert!(close(b.remaining, 1.0 - consumed), "{bad_runs}");
            assert_eq!((b.good, b.total), (43_200 - bad_runs, 43_200));
        }
        // 44 bad of 43,200 misses the objective: the budget goes negative.
        assert!(s.budget(bad(44, 43_200)).remaining < 0.0);
        assert!(s.budget(bad(43, 43_200)).remaining > 0.0);
    }

    #[test]
    fn budget_counts_the_events_that_exist() {
        let s = slo("99.9%");
        // No events yet: the whole budget remains.
        let b = s.budget(Counts::default());
        assert_eq!((b.consumed, b.remaining, b.allowed), (0.0, 1.0, 0.0));
        // Three days of a 30-day window filled (4,320 runs): 4.32 bad
        // allowed so far, so 2 bad runs are 46 % of it.
        let b = s.budget(bad(2, 4_320));
        assert!(close(b.allowed, 4.32));
        assert!(close(b.consumed, 2.0 / 4.32));
        // One failure among the first 1,000 runs is the whole budget.
        assert!(close(s.budget(bad(1, 1000)).remaining, 0.0));
    }

    #[test]
    fn windows_are_distinct_and_sorted() {
        let s = slo("99.9%");
        assert_eq!(
            s.windows(),
            vec![
                5 * MIN,
                30 * MIN,
                HOUR,
                6 * HOUR,
                3 * DAY,
                DEFAULT_SLO_WINDOW
            ]
        );
        let s = Slo {
            window: 3 * DAY,
            ..s
        };
        assert_eq!(s.windows().len(), 5);
    }

    #[test]
    fn an_objective_of_100_percent_has_no_budget() {
        // The config refuses it; a hand-built one does not divide by zero.
        let s = Slo {
            objective: 1.0,
            ..slo("99.9%")
        };
        assert_eq!(s.burn_rate(bad(0, 10)), 0.0);
        assert_eq!(s.burn_rate(bad(1, 10)), f64::INFINITY);
        assert!(s.evaluate(|_| bad(1, 10)).iter().all(|r| r.firing));
        assert!(
            parse_objective("100%")
                .unwrap_err()
                .contains("no error budget")
        );
    }

    #[test]
    fn objectives_and_tolerances_parse_as_written() {
        for (text, want) in [
            ("99.9%", 0.999),
            ("99%", 0.99),
            (" 99.95 % ", 0.9995),
            ("50%", 0.5),
            ("0.5%", 0.005),
        ] {
            assert_eq!(parse_objective(text).unwrap(), want, "{text}");
        }
        for (text, needle) in [
            ("0.999", "`%` sign"),
            ("99.9", "`%` sign"),
            ("lots%", "`%` sign"),
            ("inf%", "`%` sign"),
            ("100%", "no error budget"),
            ("150%", "no error budget"),
            ("99.99999999999999%", "no error budget"),
            ("0%", "above 0%"),
            ("-1%", "above 0%"),
        ] {
            let e = parse_objective(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
        assert_eq!(parse_tolerance("20%").unwrap(), 0.2);
        assert_eq!(parse_tolerance("150%").unwrap(), 1.5);
        assert!(parse_tolerance("0%").unwrap_err().contains("above 0%"));
        assert!(parse_tolerance("0.2").unwrap_err().contains("`%` sign"));
    }

    #[test]
    fn baseline_metrics_parse_and_print_as_written() {
        for (text, want, printed) in [
            ("p50", BaselineMetric::Percentile(50.0), "p50"),
            ("p95", BaselineMetric::Percentile(95.0), "p95"),
            ("p99", BaselineMetric::Percentile(99.0), "p99"),
            ("p(99.9)", BaselineMetric::Percentile(99.9), "p(99.9)"),
            ("p(95)", BaselineMetric::Percentile(95.0), "p95"),
            ("p100", BaselineMetric::Percentile(100.0), "p100"),
            ("avg", BaselineMetric::Avg, "avg"),
        ] {
            let m = BaselineMetric::parse(text).unwrap();
            assert_eq!(m, want, "{text}");
            assert_eq!(m.to_string(), printed);
        }
        for (text, needle) in [
            ("p0", "percentile from 0"),
            ("p999", "percentile from 0"),
            ("p(101)", "percentile from 0"),
            ("p(x)", "percentile from 0"),
            ("p", "expected `p50`"),
            ("p9.5", "expected `p50`"),
            ("median", "expected `p50`"),
            ("max", "expected `p50`"),
        ] {
            let e = BaselineMetric::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn baseline_judges_the_ratio_against_the_tolerance() {
        let b = Baseline {
            metric: BaselineMetric::Percentile(95.0),
            window: DEFAULT_BASELINE_WINDOW,
            tolerance: 0.2,
            min_samples: 100,
            level: BaselineLevel::Degraded,
        };
        use BaselineVerdict::*;
        for (current, baseline, samples, want) in [
            (0.120, 0.100, 100, Within { ratio: 0.2 }),
            (0.121, 0.100, 100, Regressed { ratio: 0.21 }),
            (0.300, 0.100, 1000, Regressed { ratio: 2.0 }),
            (0.050, 0.100, 100, Within { ratio: -0.5 }),
            (0.100, 0.100, 100, Within { ratio: 0.0 }),
            (0.300, 0.100, 99, NotEnoughData),
            (0.300, 0.0, 1000, NotEnoughData),
            (0.300, f64::NAN, 1000, NotEnoughData),
            (f64::NAN, 0.1, 1000, NotEnoughData),
        ] {
            let got = b.judge(current, baseline, samples);
            match (got, want) {
                (Within { ratio: a }, Within { ratio: w })
                | (Regressed { ratio: a }, Regressed { ratio: w }) => {
                    assert!(close(a, w), "{current} vs {baseline}: {got:?}")
                }
                _ => assert_eq!(got, want, "{current} vs {baseline} ({samples})"),
            }
        }
    }

    #[test]
    fn a_latency_sli_counts_runs_at_the_threshold_as_good() {
        let sli = Sli::Latency {
            threshold: Duration::from_millis(300),
        };
        assert!(sli.good(true, Duration::from_millis(300)));
        assert!(!sli.good(true, Duration::from_millis(301)));
        assert!(!sli.good(false, Duration::from_millis(10)));
        assert!(Sli::Availability.good(true, Duration::from_secs(60)));
        assert!(!Sli::Availability.good(false, Duration::ZERO));
    }

    #[test]
    fn windows_print_as_written() {
        for (d, want) in [
            (MAX_SLO_WINDOW, "400d"),
            (DEFAULT_SLO_WINDOW, "30d"),
            (36 * HOUR, "36h"),
            (90 * MIN, "90m"),
            (Duration::from_secs(90), "1m 30s"),
            (Duration::from_millis(1500), "1s 500ms"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(format_window(d), want);
        }
    }

    #[test]
    fn counts_add_up() {
        let sum: Counts = [bad(1, 10), bad(2, 20)].into_iter().sum();
        assert_eq!(sum, bad(3, 30));
        assert_eq!(sum.bad(), 3);
    }

    #[test]
    fn names_parse_and_print() {
        assert_eq!(BurnSeverity::parse("page").unwrap(), BurnSeverity::Page);
        assert_eq!(BurnSeverity::Ticket.as_str(), "ticket");
        assert!(BurnSeverity::parse("pager").unwrap_err().contains("`page`"));
        assert_eq!(
            BaselineLevel::parse("failing").unwrap(),
            BaselineLevel::Failing
        );
        assert_eq!(BaselineLevel::Degraded.as_str(), "degraded");
        assert!(BaselineLevel::parse("warn").is_err());
    }
}
