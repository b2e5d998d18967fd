//! The alert state machine: run outcomes in, notifications out.
//!
//! [`Engine`] keeps one small state per (probe, environment) pair and turns
//! each run's [`Outcome`] (thresholds already evaluated) into the
//! [`Notification`]s it causes. It is pure and deterministic: no I/O, no
//! tasks, no clock reads. Every method takes `now` explicitly, so the tests
//! below are exact tables of (time, outcome) → notifications. That is a
//! stronger form of "table-driven tests on a paused clock": nothing depends
//! on a runtime's timer at all, and the daemon passes `Utc::now()`.
//!
//! # Verdicts
//!
//! Each run gets one verdict:
//!
//! - **bad** when `!outcome.success` or any threshold is `Failing`;
//! - **degraded** when it is not bad and some threshold is `Degraded`;
//! - **good** otherwise (`NoData` thresholds count as ok).
//!
//! Per pair only the last `max(window, resolve_after)` verdicts are kept, in
//! a ring (the window is `n` for `Consecutive(n)`, `k` for `MOfK`), never a
//! history: memory per pair is that ring plus the details of the latest bad
//! and latest non-good run.
//!
//! # States and transitions
//!
//! A pair is `ok`, `degraded` or `failing` ([`PairState`]). The fire rule is
//! applied to the ring in two ways: **fail** holds when the rule holds over
//! bad runs, **worse** holds when it holds over non-good (degraded or bad)
//! runs. `Consecutive(n)`: the last `n` runs all count; `MOfK { m, k }`: at
//! least `m` of the last `k` runs count (fewer than `k` runs recorded: of
//! those). After each run, with `r = resolve_after`:
//!
//! | from | to | when |
//! |---|---|---|
//! | ok | failing | fail holds |
//! | ok | degraded | fail does not hold, worse holds |
//! | degraded | failing | fail holds |
//! | degraded | ok | the last `r` runs were all good |
//! | failing | ok | the last `r` runs were all good |
//! | failing | degraded | the last `r` runs were all not bad, but not all good |
//!
//! So a degraded run never helps resolve to ok, but it does end `failing`:
//! `r` runs in a row without a failure step the pair down to `degraded`,
//! which then needs `r` good runs in a row to become ok. (For example with
//! `Consecutive(3)` and `r = 2`, bad-bad-bad-degraded-good resolves the
//! failing alert and fires the degraded one at the fifth run; one more good
//! run resolves that.)
//!
//! When a pair steps down (to ok, or failing to degraded) the ring is cut to
//! its last `r` runs, the ones that proved the recovery: runs of the ended
//! episode never count toward the next one. Without this, `MOfK` would fire
//! again on the first bad run after a recovery because the old bad runs are
//! still within the last `k`.
//!
//! Rules are clamped rather than rejected (config checks them first):
//! `n ≥ 1`, `1 ≤ m ≤ k`, `resolve_after ≥ 1`, and a zero repeat interval
//! means never repeat.
//!
//! # Alerts and notifications
//!
//! Each state other than ok is its own alert, identified by
//! [`fingerprint`]`(probe, environment, kind)`. Entering a state starts its
//! alert (`starts_at` = the time of the run that caused it); leaving it ends
//! it. On one run the old alert's Resolve comes before the new alert's
//! Trigger (e.g. degraded → failing gives Resolve(degraded),
//! Trigger(failing)). With `notify_degraded = false` the pair still moves
//! through `degraded` (for metrics and status) but that state has no alert.
//!
//! - **Trigger** exactly once per alert, when it is announced (normally the
//!   run that started it), `sequence` 0.
//! - **Repeat** while the alert stays announced and firing, once
//!   `repeat_interval` has passed since the previous Trigger or Repeat;
//!   produced by [`Engine::tick`] and by [`Engine::observe`] when one is due.
//!   A late tick sends one Repeat, never a burst, and the next one is due an
//!   interval after it. `sequence` 1, 2, ….
//! - **Resolve** exactly once, when the alert ends, and only if its Trigger
//!   was sent; `ends_at = now`, `sequence` = the next number.
//!
//! Trigger and Repeat describe the latest run that counts against the alert
//! (the latest bad run for failing, the latest non-good run for degraded):
//! its reason, error, failed checks, non-ok thresholds, run id and trace id.
//! The summary is `"{probe} @ {environment} is failing: {reason}: {detail}"`
//! where the detail is the first failed check (`expression (actual)`), else
//! the error's first line, else the first threshold in the alert's state
//! (`p(99) < 500ms breached (observed 612.0ms)`); missing parts are left
//! out. A Resolve describes the run that ended the alert, with the summary
//! `"{probe} @ {environment} is no longer failing"`; a Resolve from
//! [`Engine::retain`] says `…: removed from the configuration` and carries
//! the ids of the pair's latest run. A degraded breach names the degraded
//! condition (the one that was crossed). Degraded alerts have severity
//! `Warning` whatever the probe's severity; failing alerts take the probe's.
//! Labels and tags are copied from [`PairInfo`] (the caller merges probe
//! and environment labels, probe winning).
//!
//! # depends_on
//!
//! While any probe named in `depends_on` is `failing` in the same
//! environment (its state, whether or not its own alert was sent), this
//! pair's Triggers and Repeats are held back; its state is tracked as
//! usual. When no dependency is failing any more and the pair's alert is
//! still firing, the held Trigger is sent (with the original `starts_at`),
//! at the latest on the dependency's recovering run, the next tick or the
//! pair's next run. If the pair recovers while held, nothing is ever sent
//! for that episode: no Resolve for an alert never announced. An alert that
//! was already announced when a dependency started failing only has its
//! Repeats held; its Resolve is always sent. A probe naming itself is
//! ignored, and a dependency the engine has never seen (or has forgotten via
//! `retain`) is not failing.
//!
//! # Not here
//!
//! Grouping (batching the notifications of one group window into one
//! message per receiver), routing and delivery are later stages: this
//! module only decides what is said about each alert and when.
//!
//! # Persistence
//!
//! [`Engine::snapshot`] and [`Engine::restore`] carry the whole state
//! (rings, alerts with their sequence numbers and announce times, the pair
//! info) through serde, so after a restart an alert already announced is
//! neither triggered again nor forgotten: the next runs repeat or resolve it.
//! The caller should store the snapshot together with the notifications it
//! enqueued, so that both survive or neither does.

use super::{AlertKind, FailedCheck, Notice, Notification, ThresholdBreach, fingerprint};
use crate::config::Severity;
use crate::outcome::Outcome;
use crate::threshold::State;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;

pub use crate::config::{FireRule, Rules};

impl FireRule {
    /// How many runs the rule looks at.
    fn window(self) -> usize {
        match self {
            FireRule::Consecutive(n) => n.max(1) as usize,
            FireRule::MOfK { m, k } => k.max(m).max(1) as usize,
        }
    }

    /// Whether the rule holds over the most recent verdicts, counting those
    /// for which `counts` is true.
    fn holds(self, ring: &VecDeque<Verdict>, counts: impl Fn(Verdict) -> bool) -> bool {
        match self {
            FireRule::Consecutive(n) => {
                let n = n.max(1) as usize;
                ring.len() >= n && ring.iter().rev().take(n).all(|v| counts(*v))
            }
            FireRule::MOfK { m, k } => {
                let m = m.max(1);
                let k = k.max(m);
                let counted = ring
                    .iter()
                    .rev()
                    .take(k as usize)
                    .filter(|v| counts(**v))
                    .count();
                counted >= m as usize
            }
        }
    }
}

impl Rules {
    fn resolve_after(&self) -> usize {
        self.resolve_after.max(1) as usize
    }

    /// The ring's size: enough for the fire rule and for resolving.
    fn capacity(&self) -> usize {
        self.fire.window().max(self.resolve_after())
    }

    /// The repeat interval as a time delta; `None` when repeats are off, the
    /// interval is zero, or it is too large to add to a time.
    fn repeat_every(&self) -> Option<TimeDelta> {
        self.repeat_interval
            .filter(|d| !d.is_zero())
            .and_then(|d| TimeDelta::from_std(d).ok())
    }
}

/// What the engine needs to know about a pair (from its probe and
/// environment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairInfo {
    pub severity: Severity,
    /// Probe labels, then environment labels (probe wins on a clash).
    pub labels: BTreeMap<String, String>,
    pub tags: Vec<String>,
    /// Names of probes (in the same environment) whose failing holds this
    /// pair's alerts back.
    pub depends_on: Vec<String>,
    pub rules: Rules,
}

/// Where a pair is, for metrics and status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairState {
    #[default]
    Ok,
    Degraded,
    Failing,
}

impl PairState {
    pub fn as_str(self) -> &'static str {
        match self {
            PairState::Ok => "ok",
            PairState::Degraded => "degraded",
            PairState::Failing => "failing",
        }
    }

    fn rank(self) -> u8 {
        match self {
            PairState::Ok => 0,
            PairState::Degraded => 1,
            PairState::Failing => 2,
        }
    }
}

impl fmt::Display for PairState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One run's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Verdict {
    Good,
    Degraded,
    Bad,
}

impl Verdict {
    fn of(outcome: &Outcome) -> Verdict {
        if !outcome.success || outcome.thresholds.iter().any(|t| t.state == State::Failing) {
            Verdict::Bad
        } else if outcome
            .thresholds
            .iter()
            .any(|t| t.state == State::Degraded)
        {
            Verdict::Degraded
        } else {
            Verdict::Good
        }
    }
}

/// What a notification says about one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct RunDetails {
    reason: Option<String>,
    error: Option<String>,
    failed_checks: Vec<FailedCheck>,
    thresholds: Vec<ThresholdBreach>,
    run_id: String,
    trace_id: String,
}

impl RunDetails {
    fn of(outcome: &Outcome) -> RunDetails {
        RunDetails {
            reason: outcome.reason.map(|r| r.as_str().to_owned()),
            error: outcome.error.clone(),
            failed_checks: outcome
                .assertions
                .iter()
                .filter(|a| !a.passed)
                .map(|a| FailedCheck {
                    expression: a.expression.clone(),
                    actual: a.actual.clone(),
                    location: a.location.as_ref().map(ToString::to_string),
                })
                .collect(),
            thresholds: outcome
                .thresholds
                .iter()
                .filter(|t| matches!(t.state, State::Degraded | State::Failing))
                .map(|t| ThresholdBreach {
                    // A degraded breach names the condition that was crossed.
                    threshold: match (&t.state, &t.degraded) {
                        (State::Degraded, Some(degraded)) => degraded.clone(),
                        _ => t.threshold.clone(),
                    },
                    state: t.state.as_str().to_owned(),
                    observed: t.observed,
                    unit: t.unit.to_owned(),
                    window_seconds: t.window_seconds,
                })
                .collect(),
            run_id: outcome.run_id.clone(),
            trace_id: outcome.trace_id.clone(),
        }
    }

    /// The part of a summary after "is failing": reason, then the first
    /// failed check, the error or a threshold in the alert's state.
    fn detail(&self, kind: AlertKind) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(reason) = &self.reason {
            parts.push(reason.clone());
        }
        if let Some(check) = self.failed_checks.first() {
            if check.actual.is_empty() {
                parts.push(check.expression.clone());
            } else {
                parts.push(format!("{} ({})", check.expression, check.actual));
            }
        } else if let Some(line) = self.error.as_deref().and_then(|e| e.lines().next()) {
            parts.push(line.to_owned());
        } else if let Some(breach) = self
            .thresholds
            .iter()
            .find(|t| t.state == kind.as_str())
            .or_else(|| self.thresholds.first())
        {
            parts.push(describe_breach(breach));
        }
        parts.iter().map(|p| format!(": {p}")).collect()
    }
}

/// `p(99) < 500ms breached (observed 612.0ms)`.
fn describe_breach(breach: &ThresholdBreach) -> String {
    match breach.observed {
        None => format!("{} breached", breach.threshold),
        Some(v) => {
            let observed = match breach.unit.as_str() {
                "seconds" => format!("{:.1}ms", v * 1000.0),
                "ratio" => format!("{:.2}%", v * 100.0),
                _ => format!("{v}"),
            };
            format!("{} breached (observed {observed})", breach.threshold)
        }
    }
}

/// One alert of a pair, from its start to its end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Alert {
    kind: AlertKind,
    starts_at: DateTime<Utc>,
    /// Whether its Trigger was sent.
    announced: bool,
    /// Notifications sent so far (Trigger and Repeats): the next sequence.
    sent: u32,
    /// When the Trigger or the latest Repeat was sent.
    last_sent: Option<DateTime<Utc>>,
}

impl Alert {
    fn new(kind: AlertKind, now: DateTime<Utc>) -> Alert {
        Alert {
            kind,
            starts_at: now,
            announced: false,
            sent: 0,
            last_sent: None,
        }
    }
}

/// Everything the engine keeps about one (probe, environment) pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pair {
    probe: String,
    environment: String,
    info: PairInfo,
    /// The most recent verdicts, oldest first; at most `rules.capacity()`.
    verdicts: VecDeque<Verdict>,
    state: PairState,
    /// The current state's alert; `None` when ok, or degraded without
    /// `notify_degraded`.
    alert: Option<Alert>,
    last_bad: Option<RunDetails>,
    last_not_good: Option<RunDetails>,
    /// The latest run's ids.
    run_id: String,
    trace_id: String,
}

impl Pair {
    fn new(probe: &str, environment: &str, info: &PairInfo) -> Pair {
        Pair {
            probe: probe.to_owned(),
            environment: environment.to_owned(),
            info: info.clone(),
            verdicts: VecDeque::new(),
            state: PairState::Ok,
            alert: None,
            last_bad: None,
            last_not_good: None,
            run_id: String::new(),
            trace_id: String::new(),
        }
    }

    /// Records one run and returns the notifications it causes. `held` says
    /// whether a dependency is failing.
    fn observe(&mut self, outcome: &Outcome, held: bool, now: DateTime<Utc>) -> Vec<Notification> {
        let verdict = Verdict::of(outcome);
        let details = RunDetails::of(outcome);
        self.run_id.clone_from(&details.run_id);
        self.trace_id.clone_from(&details.trace_id);
        if verdict != Verdict::Good {
            self.last_not_good = Some(details.clone());
        }
        if verdict == Verdict::Bad {
            self.last_bad = Some(details.clone());
        }
        self.verdicts.push_back(verdict);
        let capacity = self.info.rules.capacity();
        while self.verdicts.len() > capacity {
            self.verdicts.pop_front();
        }

        let mut out = Vec::new();
        let next = self.next_state();
        if next != self.state {
            if let Some(alert) = self.alert.take()
                && alert.announced
            {
                out.push(self.resolve(&alert, &details, None, now));
            }
            if next.rank() < self.state.rank() {
                // A step down starts a fresh count: keep only the runs that
                // proved the recovery.
                let keep = self.info.rules.resolve_after();
                while self.verdicts.len() > keep {
                    self.verdicts.pop_front();
                }
            }
            self.state = next;
            self.alert = match next {
                PairState::Ok => None,
                PairState::Failing => Some(Alert::new(AlertKind::Failing, now)),
                PairState::Degraded if self.info.rules.notify_degraded => {
                    Some(Alert::new(AlertKind::Degraded, now))
                }
                PairState::Degraded => None,
            };
        }
        if !held {
            out.extend(self.announce(now, false));
        }
        out
    }

    /// The state after the latest verdict (see the module doc's table).
    fn next_state(&self) -> PairState {
        let rules = &self.info.rules;
        let fail = rules.fire.holds(&self.verdicts, |v| v == Verdict::Bad);
        let worse = rules.fire.holds(&self.verdicts, |v| v != Verdict::Good);
        let r = rules.resolve_after();
        let trailing = |pred: fn(Verdict) -> bool| {
            self.verdicts.iter().rev().take_while(|v| pred(**v)).count()
        };
        let good = trailing(|v| v == Verdict::Good) >= r;
        let not_bad = trailing(|v| v != Verdict::Bad) >= r;
        match self.state {
            PairState::Ok if fail => PairState::Failing,
            PairState::Ok if worse => PairState::Degraded,
            PairState::Ok => PairState::Ok,
            PairState::Degraded if fail => PairState::Failing,
            PairState::Degraded if good => PairState::Ok,
            PairState::Degraded => PairState::Degraded,
            PairState::Failing if good => PairState::Ok,
            PairState::Failing if not_bad => PairState::Degraded,
            PairState::Failing => PairState::Failing,
        }
    }

    /// Sends the Trigger of a firing alert not yet announced, or a Repeat
    /// when one is due (unless `triggers_only`). The caller checks
    /// dependencies.
    fn announce(&mut self, now: DateTime<Utc>, triggers_only: bool) -> Option<Notification> {
        let every = self.info.rules.repeat_every();
        let alert = self.alert.as_mut()?;
        let notice = if !alert.announced {
            Notice::Trigger
        } else if !triggers_only
            && every
                .and_then(|every| alert.last_sent?.checked_add_signed(every))
                .is_some_and(|due| due <= now)
        {
            Notice::Repeat
        } else {
            return None;
        };
        let sequence = alert.sent;
        alert.announced = true;
        alert.sent = alert.sent.saturating_add(1);
        alert.last_sent = Some(now);
        let (kind, starts_at) = (alert.kind, alert.starts_at);
        let details = match kind {
            AlertKind::Failing => self.last_bad.as_ref(),
            AlertKind::Degraded => self.last_not_good.as_ref(),
        };
        let details = details.cloned().unwrap_or_else(|| self.bare_details());
        let summary = format!(
            "{} @ {} is {}{}",
            self.probe,
            self.environment,
            kind.as_str(),
            details.detail(kind)
        );
        Some(self.notification(kind, notice, sequence, starts_at, &details, summary, now))
    }

    /// The Resolve of an alert that was announced.
    fn resolve(
        &self,
        alert: &Alert,
        details: &RunDetails,
        note: Option<&str>,
        now: DateTime<Utc>,
    ) -> Notification {
        let mut summary = format!(
            "{} @ {} is no longer {}",
            self.probe,
            self.environment,
            alert.kind.as_str()
        );
        if let Some(note) = note {
            summary.push_str(": ");
            summary.push_str(note);
        }
        self.notification(
            alert.kind,
            Notice::Resolve,
            alert.sent,
            alert.starts_at,
            details,
            summary,
            now,
        )
    }

    /// Details with only the latest run's ids.
    fn bare_details(&self) -> RunDetails {
        RunDetails {
            run_id: self.run_id.clone(),
            trace_id: self.trace_id.clone(),
            ..RunDetails::default()
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn notification(
        &self,
        kind: AlertKind,
        notice: Notice,
        sequence: u32,
        starts_at: DateTime<Utc>,
        details: &RunDetails,
        summary: String,
        now: DateTime<Utc>,
    ) -> Notification {
        Notification {
            fingerprint: fingerprint(&self.probe, &self.environment, kind),
            notice,
            kind,
            probe: self.probe.clone(),
            environment: self.environment.clone(),
            severity: match kind {
                AlertKind::Failing => self.info.severity,
                AlertKind::Degraded => Severity::Warning,
            },
            labels: self.info.labels.clone(),
            tags: self.info.tags.clone(),
            starts_at,
            ends_at: (notice == Notice::Resolve).then_some(now),
            expires_at: match notice {
                Notice::Resolve => None,
                Notice::Trigger | Notice::Repeat => self
                    .info
                    .rules
                    .repeat_every()
                    .and_then(|every| every.checked_mul(3))
                    .and_then(|d| now.checked_add_signed(d)),
            },
            at: now,
            sequence,
            summary,
            reason: details.reason.clone(),
            error: details.error.clone(),
            failed_checks: details.failed_checks.clone(),
            thresholds: details.thresholds.clone(),
            run_id: details.run_id.clone(),
            trace_id: details.trace_id.clone(),
        }
    }
}

/// The version of [`EngineSnapshot`]'s layout.
const SNAPSHOT_VERSION: u32 = 1;

/// The engine's whole state, for persistence across restarts: plain serde
/// data, opaque to its store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineSnapshot {
    /// Bumped when the layout changes; [`Engine::restore`] starts empty on
    /// another version (an incompatible layout fails to deserialize first).
    version: u32,
    pairs: Vec<Pair>,
}

/// Alert state of every (probe, environment) pair. See the module doc for
/// the rules.
#[derive(Debug, Default)]
pub struct Engine {
    pairs: BTreeMap<(String, String), Pair>,
}

impl Engine {
    pub fn new() -> Engine {
        Engine::default()
    }

    /// Feeds one run's outcome (thresholds already evaluated). Returns the
    /// notifications it causes now: this pair's, then Triggers of other
    /// pairs released because this pair stopped failing. `info` replaces
    /// what was stored for the pair, so a reload's rules apply from this run.
    pub fn observe(
        &mut self,
        outcome: &Outcome,
        info: &PairInfo,
        now: DateTime<Utc>,
    ) -> Vec<Notification> {
        let held = self.dependency_failing(&outcome.probe, &outcome.environment, &info.depends_on);
        let pair = self
            .pairs
            .entry((outcome.probe.clone(), outcome.environment.clone()))
            .or_insert_with(|| Pair::new(&outcome.probe, &outcome.environment, info));
        if pair.info != *info {
            pair.info = info.clone();
        }
        let before = pair.state;
        let mut out = pair.observe(outcome, held, now);
        if before == PairState::Failing && pair.state != PairState::Failing {
            out.extend(self.announce_all(now, true));
        }
        out
    }

    /// Notifications that come due with time alone: Repeats of firing alerts
    /// at their interval, and Triggers no longer held back. Call
    /// periodically.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Notification> {
        self.announce_all(now, false)
    }

    /// Current state of a pair; ok for a pair never seen.
    pub fn state(&self, probe: &str, environment: &str) -> PairState {
        self.pairs
            .get(&(probe.to_owned(), environment.to_owned()))
            .map_or(PairState::Ok, |p| p.state)
    }

    /// Forgets pairs that no longer exist (after a reload). A firing alert
    /// of a removed pair is resolved, if it was announced; Triggers held
    /// back by a removed dependency are released.
    pub fn retain(
        &mut self,
        keep: impl Fn(&str, &str) -> bool,
        now: DateTime<Utc>,
    ) -> Vec<Notification> {
        let removed: Vec<(String, String)> = self
            .pairs
            .keys()
            .filter(|(probe, environment)| !keep(probe, environment))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for key in removed {
            if let Some(pair) = self.pairs.remove(&key)
                && let Some(alert) = &pair.alert
                && alert.announced
            {
                out.push(pair.resolve(
                    alert,
                    &pair.bare_details(),
                    Some("removed from the configuration"),
                    now,
                ));
            }
        }
        out.extend(self.announce_all(now, true));
        out
    }

    /// Snapshot for persistence across restarts.
    pub fn snapshot(&self) -> EngineSnapshot {
        EngineSnapshot {
            version: SNAPSHOT_VERSION,
            pairs: self.pairs.values().cloned().collect(),
        }
    }

    /// Rebuilds an engine from a snapshot.
    pub fn restore(snapshot: EngineSnapshot) -> Engine {
        if snapshot.version != SNAPSHOT_VERSION {
            return Engine::new();
        }
        Engine {
            pairs: snapshot
                .pairs
                .into_iter()
                .map(|p| ((p.probe.clone(), p.environment.clone()), p))
                .collect(),
        }
    }

    /// Whether a probe this pair depends on is failing in its environment.
    fn dependency_failing(&self, probe: &str, environment: &str, depends_on: &[String]) -> bool {
        depends_on.iter().filter(|d| *d != probe).any(|d| {
            self.pairs
                .get(&(d.clone(), environment.to_owned()))
                .is_some_and(|p| p.state == PairState::Failing)
        })
    }

    /// Announces every firing alert that is not held back: Triggers, and
    /// Repeats that are due unless `triggers_only`. In pair order.
    fn announce_all(&mut self, now: DateTime<Utc>, triggers_only: bool) -> Vec<Notification> {
        let free: Vec<(String, String)> = self
            .pairs
            .iter()
            .filter(|(_, p)| {
                p.alert.is_some()
                    && !self.dependency_failing(&p.probe, &p.environment, &p.info.depends_on)
            })
            .map(|(k, _)| k.clone())
            .collect();
        free.iter()
            .filter_map(|key| self.pairs.get_mut(key)?.announce(now, triggers_only))
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::outcome::{AssertionResult, FailureReason, SourceLocation, ThresholdResult};
    use AlertKind::{Degraded as Deg, Failing as Fail};
    use Notice::{Repeat, Resolve, Trigger};
    use std::time::Duration;

    /// One step of a table: a run with a verdict, or a tick.
    #[derive(Clone, Copy, Debug)]
    enum V {
        /// Good run.
        G,
        /// Degraded: a degraded threshold.
        D,
        /// Bad: a failed assertion.
        B,
        /// Bad by a failing threshold alone (the run itself succeeded).
        T,
        /// No run: `Engine::tick`.
        Tick,
    }
    use V::{B, D, G, T, Tick};

    const HOUR: i64 = 3600;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_750_000_000 + secs, 0).unwrap()
    }

    fn secs_of(t: DateTime<Utc>) -> i64 {
        (t - at(0)).num_seconds()
    }

    fn rules(fire: FireRule, repeat: Option<i64>) -> Rules {
        Rules {
            fire,
            repeat_interval: repeat.map(|s| Duration::from_secs(s as u64)),
            ..Rules::default()
        }
    }

    fn info(rules: Rules) -> PairInfo {
        PairInfo {
            severity: Severity::Critical,
            labels: BTreeMap::from([("team".to_owned(), "payments".to_owned())]),
            tags: vec!["smoke".to_owned()],
            depends_on: Vec::new(),
            rules,
        }
    }

    fn outcome(probe: &str, environment: &str, v: V, secs: i64) -> Outcome {
        let threshold = |state| ThresholdResult {
            threshold: "p(99) < 500ms".to_owned(),
            degraded: Some("p(99) < 300ms".to_owned()),
            state,
            observed: Some(if state == State::Failing { 0.612 } else { 0.35 }),
            unit: "seconds",
            window_seconds: 300.0,
            runs: 10,
        };
        let mut o = Outcome {
            probe: probe.to_owned(),
            environment: environment.to_owned(),
            kind: "http",
            run_id: format!("run-{secs}"),
            trace_id: format!("trace-{secs}"),
            span_id: "00f067aa0ba902b7".to_owned(),
            started_at: at(secs).to_rfc3339(),
            success: true,
            reason: None,
            error: None,
            duration: Duration::from_millis(120),
            http: None,
            phases: Vec::new(),
            details: None,
            steps: Vec::new(),
            workload: None,
            responded: true,
            assertions: vec![AssertionResult {
                expression: "status == 200".to_owned(),
                passed: true,
                actual: "status = 200".to_owned(),
                location: Some(SourceLocation {
                    file: "probes/api.toml".to_owned(),
                    line: 7,
                    column: 12,
                }),
            }],
            thresholds: vec![threshold(State::Ok)],
            latency: None,
        };
        match v {
            G | Tick => {}
            D => o.thresholds = vec![threshold(State::Degraded)],
            B => {
                o.success = false;
                o.reason = Some(FailureReason::Assertion);
                o.assertions[0].passed = false;
                o.assertions[0].actual = "status = 503".to_owned();
            }
            T => o.thresholds = vec![threshold(State::Failing)],
        }
        o
    }

    /// What a table compares: (secs, probe, notice, kind, sequence).
    type Row = (i64, String, Notice, AlertKind, u32);

    /// Feeds steps of several pairs (environment `prod`) and returns every
    /// notification as a row, checking the invariants every notification
    /// keeps on the way.
    fn run_pairs(
        engine: &mut Engine,
        infos: &[(&str, PairInfo)],
        steps: &[(i64, &str, V)],
    ) -> Vec<Row> {
        let mut rows = Vec::new();
        for &(secs, probe, v) in steps {
            let now = at(secs);
            let got = match v {
                Tick => engine.tick(now),
                _ => {
                    let info = &infos.iter().find(|(p, _)| *p == probe).unwrap().1;
                    engine.observe(&outcome(probe, "prod", v, secs), info, now)
                }
            };
            for n in got {
                assert_eq!(n.at, now);
                assert_eq!(n.ends_at.is_some(), n.notice == Notice::Resolve);
                assert_eq!(n.fingerprint, fingerprint(&n.probe, "prod", n.kind));
                rows.push((secs, n.probe.clone(), n.notice, n.kind, n.sequence));
            }
        }
        rows
    }

    /// The single-pair table: probe `api` with `rules`.
    fn run(
        engine: &mut Engine,
        rules: Rules,
        steps: &[(i64, V)],
    ) -> Vec<(i64, Notice, AlertKind, u32)> {
        let steps: Vec<(i64, &str, V)> = steps.iter().map(|&(s, v)| (s, "api", v)).collect();
        run_pairs(engine, &[("api", info(rules))], &steps)
            .into_iter()
            .map(|(s, _, n, k, q)| (s, n, k, q))
            .collect()
    }

    /// Runs every 10 s: `(0, v0), (10, v1), …`.
    fn every10(vs: &[V]) -> Vec<(i64, V)> {
        vs.iter()
            .enumerate()
            .map(|(i, v)| (i as i64 * 10, *v))
            .collect()
    }

    #[test]
    fn fires_after_n_consecutive_bad_runs_and_resolves_after_r_goods() {
        let mut e = Engine::new();
        let got = run(
            &mut e,
            rules(FireRule::Consecutive(3), None),
            &every10(&[G, B, B, B, B, G, B, G, G, G]),
        );
        assert_eq!(got, vec![(30, Trigger, Fail, 0), (80, Resolve, Fail, 1)]);
        assert_eq!(e.state("api", "prod"), PairState::Ok);
    }

    #[test]
    fn a_blip_never_fires() {
        let mut e = Engine::new();
        let got = run(
            &mut e,
            rules(FireRule::Consecutive(3), Some(60)),
            &every10(&[G, B, G, B, B, G, T, G, B, B, G, G, Tick]),
        );
        assert_eq!(got, vec![]);
        assert_eq!(e.state("api", "prod"), PairState::Ok);
    }

    #[test]
    fn a_failing_threshold_alone_is_bad() {
        let mut e = Engine::new();
        let got = run(
            &mut e,
            rules(FireRule::Consecutive(2), None),
            &every10(&[T, T, G, G]),
        );
        assert_eq!(got, vec![(10, Trigger, Fail, 0), (30, Resolve, Fail, 1)]);
    }

    #[test]
    fn m_of_k_fires_once_on_flapping_and_resolves_after_r_goods() {
        let mut e = Engine::new();
        let flapping = [B, G, B, G, B, G, B, G, B, G, B, G, G, G];
        let got = run(
            &mut e,
            rules(FireRule::MOfK { m: 3, k: 5 }, None),
            &every10(&flapping),
        );
        assert_eq!(got, vec![(40, Trigger, Fail, 0), (120, Resolve, Fail, 1)]);
    }

    #[test]
    fn m_of_k_does_not_count_runs_of_an_ended_episode() {
        // Without the cut on resolve, the bad run at 50 would be the third
        // bad of the last five and fire at once.
        let mut e = Engine::new();
        let got = run(
            &mut e,
            rules(FireRule::MOfK { m: 3, k: 5 }, None),
            &every10(&[B, B, B, G, G, B, G, B, G, B]),
        );
        assert_eq!(
            got,
            vec![
                (20, Trigger, Fail, 0),
                (40, Resolve, Fail, 1),
                (90, Trigger, Fail, 0)
            ]
        );
    }

    #[test]
    fn repeats_at_the_interval_from_ticks_then_resolves_once() {
        let mut e = Engine::new();
        let got = run(
            &mut e,
            rules(FireRule::Consecutive(3), Some(HOUR)),
            &[
                (0, B),
                (10, B),
                (20, B),
                (30, Tick),
                (HOUR + 19, Tick),
                (HOUR + 20, Tick),
                (HOUR + 21, Tick),
                // A late tick sends one repeat, and the next is due an
                // interval after it.
                (3 * HOUR + 500, Tick),
                (4 * HOUR + 499, Tick),
                (4 * HOUR + 500, Tick),
                (4 * HOUR + 600, G),
                (4 * HOUR + 610, G),
                (4 * HOUR + 620, G),
                (9 * HOUR, Tick),
            ],
        );
        assert_eq!(
            got,
            vec![
                (20, Trigger, Fail, 0),
                (HOUR + 20, Repeat, Fail, 1),
                (3 * HOUR + 500, Repeat, Fail, 2),
                (4 * HOUR + 500, Repeat, Fail, 3),
                (4 * HOUR + 610, Resolve, Fail, 4),
            ]
        );
    }

    #[test]
    fn repeats_come_from_runs_too() {
        let mut e = Engine::new();
        let got = run(
            &mut e,
            rules(FireRule::Consecutive(3), Some(60)),
            &every10(&[B, B, B, B, B, B, B, B, B, B, B, B, B, B, G, G]),
        );
        assert_eq!(
            got,
            vec![
                (20, Trigger, Fail, 0),
                (80, Repeat, Fail, 1),
                (140, Repeat, Fail, 2),
                (150, Resolve, Fail, 3),
            ]
        );
    }

    #[test]
    fn exactly_one_resolve() {
        let mut e = Engine::new();
        let got = run(
            &mut e,
            rules(FireRule::Consecutive(1), Some(60)),
            &[
                (0, B),
                (10, G),
                (20, G),
                (30, G),
                (40, Tick),
                (200, Tick),
                (210, G),
                (220, G),
            ],
        );
        assert_eq!(got, vec![(0, Trigger, Fail, 0), (20, Resolve, Fail, 1)]);
        assert_eq!(e.retain(|_, _| false, at(300)), vec![]);
    }

    #[test]
    fn degraded_is_its_own_alert() {
        let mut e = Engine::new();
        let got = run(
            &mut e,
            rules(FireRule::Consecutive(3), Some(HOUR)),
            &[
                (0, D),
                (10, G),
                (20, D),
                (30, D),
                (40, D),
                (50, D),
                (60, G),
                (70, D),
                (80, G),
                (90, G),
            ],
        );
        assert_eq!(got, vec![(40, Trigger, Deg, 0), (90, Resolve, Deg, 1)]);

        // Bad runs count toward degraded when they do not make it fail.
        let mut e = Engine::new();
        let got = run(
            &mut e,
            rules(FireRule::Consecutive(3), None),
            &every10(&[B, B, D, G, G]),
        );
        assert_eq!(got, vec![(20, Trigger, Deg, 0), (40, Resolve, Deg, 1)]);
    }

    #[test]
    fn degraded_escalates_to_failing_and_steps_back_down() {
        let mut e = Engine::new();
        let r = rules(FireRule::Consecutive(3), None);
        let got = run(
            &mut e,
            r.clone(),
            &every10(&[D, D, D, B, B, B, D, D, G, D, G, G, G]),
        );
        assert_eq!(
            got,
            vec![
                (20, Trigger, Deg, 0),
                (50, Resolve, Deg, 1),
                (50, Trigger, Fail, 0),
                // Two runs without a failure end failing; they were
                // degraded, so the pair is degraded, not ok.
                (70, Resolve, Fail, 1),
                (70, Trigger, Deg, 0),
                (110, Resolve, Deg, 1),
            ]
        );

        // Stepping down needs a degraded run among the last r; otherwise
        // failing resolves straight to ok. A degraded then a good run step
        // down, and one more good run resolves.
        let mut e = Engine::new();
        let got = run(&mut e, r.clone(), &every10(&[B, B, B, D, G, G]));
        assert_eq!(
            got,
            vec![
                (20, Trigger, Fail, 0),
                (40, Resolve, Fail, 1),
                (40, Trigger, Deg, 0),
                (50, Resolve, Deg, 1),
            ]
        );
        let mut e = Engine::new();
        let got = run(&mut e, r, &every10(&[B, B, B, G, G]));
        assert_eq!(got, vec![(20, Trigger, Fail, 0), (40, Resolve, Fail, 1)]);
    }

    #[test]
    fn a_degraded_run_never_resolves_failing_to_ok() {
        let mut e = Engine::new();
        let got = run(
            &mut e,
            Rules {
                resolve_after: 3,
                ..rules(FireRule::Consecutive(2), None)
            },
            &every10(&[B, B, G, G, B, G, D, G, G, G, G]),
        );
        // Two goods (20, 30) are fewer than r = 3. Good, degraded, good
        // (50-70) end failing, but only as far as degraded; the goods at 70,
        // 80 and 90 resolve that.
        assert_eq!(
            got,
            vec![
                (10, Trigger, Fail, 0),
                (70, Resolve, Fail, 1),
                (70, Trigger, Deg, 0),
                (90, Resolve, Deg, 1),
            ]
        );
    }

    #[test]
    fn without_notify_degraded_the_state_moves_silently() {
        let mut e = Engine::new();
        let r = Rules {
            notify_degraded: false,
            ..rules(FireRule::Consecutive(2), Some(60))
        };
        let got = run(&mut e, r.clone(), &every10(&[D, D, D]));
        assert_eq!(got, vec![]);
        assert_eq!(e.state("api", "prod"), PairState::Degraded);
        let got = run(
            &mut e,
            r,
            &[
                (100, B),
                (110, B),
                (120, D),
                (130, D),
                (200, Tick),
                (210, G),
                (220, G),
            ],
        );
        assert_eq!(got, vec![(110, Trigger, Fail, 0), (130, Resolve, Fail, 1)]);
        assert_eq!(e.state("api", "prod"), PairState::Ok);
    }

    fn with_dependency(r: Rules) -> Vec<(&'static str, PairInfo)> {
        vec![
            ("health", info(r.clone())),
            (
                "api",
                PairInfo {
                    depends_on: vec!["health".to_owned()],
                    ..info(r)
                },
            ),
        ]
    }

    fn row(secs: i64, probe: &str, notice: Notice, kind: AlertKind, seq: u32) -> Row {
        (secs, probe.to_owned(), notice, kind, seq)
    }

    #[test]
    fn depends_on_holds_back_until_the_dependency_recovers() {
        let mut e = Engine::new();
        let infos = with_dependency(rules(FireRule::Consecutive(2), Some(HOUR)));
        let got = run_pairs(
            &mut e,
            &infos,
            &[
                (0, "health", B),
                (10, "health", B),
                (20, "api", B),
                (30, "api", B),
                (40, "api", B),
                (2 * HOUR, "", Tick),
                (2 * HOUR + 10, "health", G),
                // The dependency's recovering run releases the held Trigger.
                (2 * HOUR + 20, "health", G),
                (2 * HOUR + 30, "api", B),
                (3 * HOUR + 20, "", Tick),
                (3 * HOUR + 30, "api", G),
                (3 * HOUR + 40, "api", G),
            ],
        );
        assert_eq!(
            got,
            vec![
                row(10, "health", Trigger, Fail, 0),
                row(2 * HOUR, "health", Repeat, Fail, 1),
                row(2 * HOUR + 20, "health", Resolve, Fail, 2),
                row(2 * HOUR + 20, "api", Trigger, Fail, 0),
                row(3 * HOUR + 20, "api", Repeat, Fail, 1),
                row(3 * HOUR + 40, "api", Resolve, Fail, 2),
            ]
        );
    }

    #[test]
    fn a_released_trigger_keeps_its_original_start() {
        let mut e = Engine::new();
        let infos = with_dependency(rules(FireRule::Consecutive(2), None));
        let info_of = |probe: &str| &infos.iter().find(|(p, _)| *p == probe).unwrap().1;
        let mut sent = Vec::new();
        for (secs, probe, v) in [
            (0, "health", B),
            (10, "health", B),
            (20, "api", B),
            (30, "api", B),
            (40, "health", G),
            (50, "health", G),
        ] {
            sent = e.observe(&outcome(probe, "prod", v, secs), info_of(probe), at(secs));
        }
        let api = sent.iter().find(|n| n.probe == "api").unwrap();
        assert_eq!(
            (api.notice, api.starts_at, api.at),
            (Trigger, at(30), at(50))
        );
        assert_eq!((api.sequence, api.run_id.as_str()), (0, "run-30"));
    }

    #[test]
    fn depends_on_never_sends_an_episode_that_recovered_while_held() {
        let mut e = Engine::new();
        let infos = with_dependency(rules(FireRule::Consecutive(2), Some(60)));
        let got = run_pairs(
            &mut e,
            &infos,
            &[
                (0, "health", B),
                (10, "health", B),
                (20, "api", B),
                (30, "api", B),
                (40, "api", G),
                (50, "api", G),
                (60, "health", G),
                (70, "health", G),
                (200, "", Tick),
            ],
        );
        assert_eq!(
            got,
            vec![
                row(10, "health", Trigger, Fail, 0),
                row(70, "health", Resolve, Fail, 1),
            ]
        );
        assert_eq!(e.state("api", "prod"), PairState::Ok);
    }

    #[test]
    fn depends_on_holds_repeats_of_an_announced_alert_but_not_its_resolve() {
        let mut e = Engine::new();
        let infos = with_dependency(rules(FireRule::Consecutive(2), Some(100)));
        let got = run_pairs(
            &mut e,
            &infos,
            &[
                (0, "api", B),
                (10, "api", B),
                (20, "health", B),
                (30, "health", B),
                (200, "", Tick),
                (210, "api", G),
                (220, "api", G),
            ],
        );
        assert_eq!(
            got,
            vec![
                row(10, "api", Trigger, Fail, 0),
                row(30, "health", Trigger, Fail, 0),
                row(200, "health", Repeat, Fail, 1),
                row(220, "api", Resolve, Fail, 1),
            ]
        );
    }

    #[test]
    fn depends_on_is_per_environment_and_ignores_itself() {
        let mut e = Engine::new();
        let r = rules(FireRule::Consecutive(1), None);
        let health = info(r.clone());
        let api = PairInfo {
            depends_on: vec!["health".to_owned(), "api".to_owned()],
            ..info(r)
        };
        assert_eq!(
            e.observe(&outcome("health", "staging", B, 0), &health, at(0))
                .len(),
            1
        );
        let got = e.observe(&outcome("api", "prod", B, 10), &api, at(10));
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].notice, got[0].environment.as_str()),
            (Trigger, "prod")
        );
    }

    #[test]
    fn retain_resolves_removed_pairs_and_releases_their_dependents() {
        let mut e = Engine::new();
        let infos = with_dependency(rules(FireRule::Consecutive(1), None));
        let got = run_pairs(&mut e, &infos, &[(0, "health", B), (10, "api", B)]);
        assert_eq!(got, vec![row(0, "health", Trigger, Fail, 0)]);
        let got = e.retain(|probe, _| probe != "health", at(20));
        let rows: Vec<_> = got
            .iter()
            .map(|n| (secs_of(n.at), n.probe.as_str(), n.notice, n.sequence))
            .collect();
        assert_eq!(
            rows,
            vec![(20, "health", Resolve, 1), (20, "api", Trigger, 0)]
        );
        assert_eq!(
            got[0].summary,
            "health @ prod is no longer failing: removed from the configuration"
        );
        assert_eq!(got[0].ends_at, Some(at(20)));
        assert_eq!(got[0].run_id, "run-0");
        assert_eq!(got[1].starts_at, at(10));
        assert_eq!(e.state("health", "prod"), PairState::Ok);

        // Removing a pair whose alert was held back sends nothing.
        let mut e = Engine::new();
        run_pairs(&mut e, &infos, &[(0, "health", B), (10, "api", B)]);
        let got = e.retain(|probe, _| probe != "api", at(20));
        assert_eq!(got, vec![]);
        assert_eq!(e.state("api", "prod"), PairState::Ok);
        assert_eq!(e.state("health", "prod"), PairState::Failing);
    }

    #[test]
    fn a_restart_neither_pages_again_nor_forgets_to_resolve() {
        let r = rules(FireRule::Consecutive(3), Some(HOUR));
        let mut e = Engine::new();
        let got = run(&mut e, r.clone(), &every10(&[B, B, B, B]));
        assert_eq!(got, vec![(20, Trigger, Fail, 0)]);

        let json = serde_json::to_string(&e.snapshot()).unwrap();
        let snapshot: EngineSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(snapshot, e.snapshot());
        let mut e = Engine::restore(snapshot);
        assert_eq!(e.state("api", "prod"), PairState::Failing);
        // The ring survived too: one good run is not enough.
        let got = run(
            &mut e,
            r,
            &[
                (100, B),
                (200, G),
                (300, B),
                (HOUR + 20, Tick),
                (HOUR + 30, G),
                (HOUR + 40, G),
            ],
        );
        assert_eq!(
            got,
            vec![(HOUR + 20, Repeat, Fail, 1), (HOUR + 40, Resolve, Fail, 2)]
        );

        // A snapshot of another layout version starts empty.
        let mut other = Engine::new().snapshot();
        other.version += 1;
        assert_eq!(Engine::restore(other).snapshot().pairs, vec![]);
    }

    #[test]
    fn notifications_describe_the_run_that_counts() {
        let mut e = Engine::new();
        let r = rules(FireRule::Consecutive(2), Some(HOUR));
        let i = info(r);
        let mut got = Vec::new();
        for (secs, v) in [(0, B), (10, B), (20, G), (30, B), (40, G), (50, G)] {
            got.extend(e.observe(&outcome("api", "prod", v, secs), &i, at(secs)));
        }
        let [trigger, resolve] = got.as_slice() else {
            panic!("{got:#?}")
        };
        assert_eq!(
            trigger,
            &Notification {
                fingerprint: fingerprint("api", "prod", AlertKind::Failing),
                notice: Trigger,
                kind: AlertKind::Failing,
                probe: "api".to_owned(),
                environment: "prod".to_owned(),
                severity: Severity::Critical,
                labels: BTreeMap::from([("team".to_owned(), "payments".to_owned())]),
                tags: vec!["smoke".to_owned()],
                starts_at: at(10),
                ends_at: None,
                expires_at: Some("2025-06-15T18:06:50Z".parse().unwrap()),
                at: at(10),
                sequence: 0,
                summary: "api @ prod is failing: assertion: status == 200 (status = 503)"
                    .to_owned(),
                reason: Some("assertion".to_owned()),
                error: None,
                failed_checks: vec![FailedCheck {
                    expression: "status == 200".to_owned(),
                    actual: "status = 503".to_owned(),
                    location: Some("probes/api.toml:7:12".to_owned()),
                }],
                thresholds: vec![],
                run_id: "run-10".to_owned(),
                trace_id: "trace-10".to_owned(),
            }
        );
        assert_eq!(
            trigger.idempotency_key(),
            format!(
                "{}-{}-trigger-0",
                trigger.fingerprint,
                at(10).timestamp_millis()
            )
        );
        assert_eq!(resolve.summary, "api @ prod is no longer failing");
        assert_eq!(
            (resolve.starts_at, resolve.ends_at, resolve.at),
            (at(10), Some(at(50)), at(50))
        );
        assert_eq!(
            (
                resolve.run_id.as_str(),
                resolve.reason.clone(),
                resolve.failed_checks.len()
            ),
            ("run-50", None, 0)
        );

        // A Repeat describes the latest bad run, not a good run in between.
        let mut e = Engine::new();
        for (secs, v) in [(0, B), (10, B), (20, B), (30, G)] {
            e.observe(&outcome("api", "prod", v, secs), &i, at(secs));
        }
        let repeat = e.tick(at(HOUR + 10));
        assert_eq!(repeat.len(), 1);
        assert_eq!(
            (repeat[0].notice, repeat[0].run_id.as_str()),
            (Repeat, "run-20")
        );
    }

    #[test]
    fn threshold_and_degraded_content() {
        let mut e = Engine::new();
        let i = info(rules(FireRule::Consecutive(1), None));
        let got = e.observe(&outcome("api", "prod", T, 0), &i, at(0));
        assert_eq!(
            got[0].summary,
            "api @ prod is failing: p(99) < 500ms breached (observed 612.0ms)"
        );
        assert_eq!(
            got[0].thresholds,
            vec![ThresholdBreach {
                threshold: "p(99) < 500ms".to_owned(),
                state: "failing".to_owned(),
                observed: Some(0.612),
                unit: "seconds".to_owned(),
                window_seconds: 300.0,
            }]
        );

        // A degraded alert warns whatever the probe's severity, and names
        // the degraded condition that was crossed.
        let mut e = Engine::new();
        let got = e.observe(&outcome("api", "prod", D, 0), &i, at(0));
        assert_eq!(got.len(), 1);
        let n = &got[0];
        assert_eq!(
            (n.kind, n.severity),
            (AlertKind::Degraded, Severity::Warning)
        );
        assert_eq!(
            n.summary,
            "api @ prod is degraded: p(99) < 300ms breached (observed 350.0ms)"
        );
        assert_eq!(n.thresholds[0].threshold, "p(99) < 300ms");
        assert_eq!(n.thresholds[0].state, "degraded");

        // An error without a failed check is the detail (its first line).
        let mut o = outcome("api", "prod", G, 10);
        o.success = false;
        o.reason = Some(FailureReason::Timeout);
        o.error = Some("deadline of 10s passed\nwhile reading the body".to_owned());
        let got = Engine::new().observe(&o, &i, at(10));
        assert_eq!(
            got[0].summary,
            "api @ prod is failing: timeout: deadline of 10s passed"
        );
        assert_eq!(
            describe_breach(&ThresholdBreach {
                threshold: "error_rate < 1%".to_owned(),
                state: "failing".to_owned(),
                observed: Some(0.05),
                unit: "ratio".to_owned(),
                window_seconds: 300.0,
            }),
            "error_rate < 1% breached (observed 5.00%)"
        );
    }

    #[test]
    fn memory_is_a_small_ring_per_pair() {
        for (fire, resolve_after, cap) in [
            (FireRule::Consecutive(3), 2, 3),
            (FireRule::MOfK { m: 3, k: 5 }, 2, 5),
            (FireRule::Consecutive(2), 4, 4),
        ] {
            let mut e = Engine::new();
            let r = Rules {
                resolve_after,
                ..rules(fire, Some(60))
            };
            let steps: Vec<(i64, V)> = (0..1000)
                .map(|i| (i * 10, [B, G, D, B, B, G][i as usize % 6]))
                .collect();
            run(&mut e, r, &steps);
            let snapshot = e.snapshot();
            assert_eq!(snapshot.pairs.len(), 1);
            assert!(snapshot.pairs[0].verdicts.len() <= cap, "{fire:?}");
        }
    }

    #[test]
    fn degenerate_rules_are_clamped() {
        let mut e = Engine::new();
        let r = Rules {
            resolve_after: 0,
            ..rules(FireRule::MOfK { m: 0, k: 0 }, Some(0))
        };
        let got = run(&mut e, r, &every10(&[G, B, B, G, Tick]));
        assert_eq!(got, vec![(10, Trigger, Fail, 0), (30, Resolve, Fail, 1)]);
        let got = run(&mut e, rules(FireRule::Consecutive(0), None), &[(100, B)]);
        assert_eq!(got, vec![(100, Trigger, Fail, 0)]);
    }
}
