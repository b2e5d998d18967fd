//! The alert state machine: run outcomes in, notifications out.
//!
//! [`Engine`] keeps one small state per (probe, environment) pair and turns
//! each run's [`Outcome`] (thresholds already evaluated) into the
//! [`Notification`]s it causes. It is pure and deterministic: no I/O, no
//! tasks, no clock reads. Every method takes `now` explicitly, so the tests
//! (`tests.rs`) are exact tables of (time, outcome) → notifications. That is a
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
//! # Holds (maintenance, silences, the monitor offline)
//!
//! The daemon tells the engine which pairs are held right now
//! ([`Engine::set_held`]: a maintenance window or a silence covers them, or
//! the monitor itself is offline). A held pair is treated exactly as one
//! whose dependency is failing: its state is tracked, its Triggers and
//! Repeats (and those of its SLO burn alerts) are held back, and a
//! Resolve of an alert already announced is still sent. When the hold
//! ends and the alert still fires, the Trigger goes out on the next tick
//! or run (with the original `starts_at`): a pair still failing after a
//! window pages once, then. A failure that began and ended inside the
//! hold never pages, before or after: its alert was never announced, so
//! there is nothing to resolve either. Holds are not part of the snapshot:
//! the daemon recomputes them from the config, the silences and the
//! self-check before each call.
//!
//! The monitor's own offline alert ([`Engine::observe_offline`]) is kept
//! with the burn alerts (it has the same life: firing while a condition
//! holds) and is never held.
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
use std::collections::{BTreeMap, BTreeSet, VecDeque};
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
    pub(super) fn repeat_every(&self) -> Option<TimeDelta> {
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
pub(super) struct Alert {
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
    pub(super) fn new(kind: AlertKind, now: DateTime<Utc>) -> Alert {
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
            AlertKind::Degraded
            | AlertKind::SloPage
            | AlertKind::SloTicket
            | AlertKind::MonitorOffline => self.last_not_good.as_ref(),
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
                AlertKind::SloPage | AlertKind::MonitorOffline => Severity::Critical,
                AlertKind::Degraded | AlertKind::SloTicket => Severity::Warning,
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
            artifact_url: None,
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
    /// SLO burn-rate alerts (absent from snapshots written before them).
    #[serde(default)]
    burns: Vec<burn::Burn>,
}

/// Alert state of every (probe, environment) pair. See the module doc for
/// the rules.
#[derive(Debug, Default)]
pub struct Engine {
    pairs: BTreeMap<(String, String), Pair>,
    burns: Vec<burn::Burn>,
    /// Pairs whose alerts are held right now (see the module doc); set by
    /// the caller, not persisted.
    held: BTreeSet<(String, String)>,
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
        let held = self.is_held(&outcome.probe, &outcome.environment, &info.depends_on);
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
        let mut out = self.announce_all(now, false);
        let held = &self.held;
        out.extend(
            self.burns
                .iter_mut()
                .filter(|b| !b.held_by(held))
                .filter_map(|b| b.announce(now)),
        );
        out
    }

    /// Sets the pairs whose alerts are held from now on (maintenance,
    /// silences, the monitor offline). Held Triggers of pairs no longer in
    /// the set go out on the next [`Engine::tick`] or run.
    pub fn set_held(&mut self, held: BTreeSet<(String, String)>) {
        self.held = held;
    }

    /// Holds or releases one pair (see [`Engine::set_held`]).
    pub fn hold(&mut self, probe: &str, environment: &str, held: bool) {
        let key = (probe.to_owned(), environment.to_owned());
        if held {
            self.held.insert(key);
        } else {
            self.held.remove(&key);
        }
    }

    /// Feeds the connectivity self-check's verdict: the one "synthmon
    /// offline" alert fires while `offline` holds (Trigger at once,
    /// Repeats at `info`'s interval, one Resolve). `detail` says what
    /// failed; `instance` names this monitor in the alert (its location,
    /// else `self_check`), so its fingerprint is stable across restarts.
    pub fn observe_offline(
        &mut self,
        offline: bool,
        instance: &str,
        detail: String,
        info: &PairInfo,
        now: DateTime<Utc>,
    ) -> Vec<Notification> {
        burn::observe(
            &mut self.burns,
            &BurnReport {
                probe: burn::OFFLINE_PROBE,
                environment: instance,
                kind: AlertKind::MonitorOffline,
                firing: offline,
                detail,
                info,
            },
            false,
            now,
        )
    }

    /// Feeds one SLO burn-rate finding (see [`burn`]).
    pub fn observe_burn(
        &mut self,
        report: &BurnReport<'_>,
        now: DateTime<Utc>,
    ) -> Vec<Notification> {
        let held = self
            .held
            .contains(&(report.probe.to_owned(), report.environment.to_owned()));
        burn::observe(&mut self.burns, report, held, now)
    }

    /// Resolves and forgets the burn alerts of SLOs no longer configured
    /// (the monitor's offline alert is not an SLO's: it stays).
    pub fn retain_burns(
        &mut self,
        keep: impl Fn(&str, &str) -> bool,
        now: DateTime<Utc>,
    ) -> Vec<Notification> {
        let (kept, gone): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.burns).into_iter().partition(|b| {
                b.alert.kind == AlertKind::MonitorOffline || keep(&b.probe, &b.environment)
            });
        self.burns = kept;
        gone.iter()
            .filter(|b| b.alert.announced)
            .map(|b| b.resolve("its SLO was removed from the configuration", now))
            .collect()
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
            burns: self.burns.clone(),
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
            burns: snapshot.burns,
            held: BTreeSet::new(),
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

    /// Whether a pair's alerts are held: by the caller ([`Engine::set_held`])
    /// or because a dependency is failing.
    fn is_held(&self, probe: &str, environment: &str, depends_on: &[String]) -> bool {
        self.held
            .contains(&(probe.to_owned(), environment.to_owned()))
            || self.dependency_failing(probe, environment, depends_on)
    }

    /// Announces every firing alert that is not held back: Triggers, and
    /// Repeats that are due unless `triggers_only`. In pair order.
    fn announce_all(&mut self, now: DateTime<Utc>, triggers_only: bool) -> Vec<Notification> {
        let free: Vec<(String, String)> = self
            .pairs
            .iter()
            .filter(|(_, p)| {
                p.alert.is_some() && !self.is_held(&p.probe, &p.environment, &p.info.depends_on)
            })
            .map(|(k, _)| k.clone())
            .collect();
        free.iter()
            .filter_map(|key| self.pairs.get_mut(key)?.announce(now, triggers_only))
            .collect()
    }
}

mod burn;
pub use burn::BurnReport;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
