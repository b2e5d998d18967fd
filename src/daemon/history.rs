//! The pipeline's history stage: records every outcome and every state
//! change in the history, keeps the pairs' kept values, and every
//! [`SLO_EVERY`] computes the SLOs from the stored counts (on the blocking
//! pool) and hands their burn-rate findings to the alerting stage. A
//! failed run's artifact goes to the artifact writer
//! ([`crate::history::artifacts::ArtifactStore`], a thread of its own
//! beside the history's, so it works with the history off too).

use super::Shared;
use super::alerting::Alerting;
use crate::history::artifacts::ArtifactStore;
use crate::history::baseline;
use crate::history::slo::SloStatus;
use crate::history::{History, Retention, Transition};
use crate::outcome::Outcome;
use crate::outcome::ThresholdResult;
use crate::plan::Config;
use crate::telemetry::metrics::Metrics;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How often SLOs and baselines are computed from the history.
pub const SLO_EVERY: Duration = Duration::from_secs(30);
/// When the first computation comes after start.
const FIRST_SLO: Duration = Duration::from_secs(3);
/// How often a baseline's trailing value is recomputed.
const TRAILING_EVERY: Duration = Duration::from_secs(600);

/// What one periodic computation found.
pub struct Computed {
    slos: Vec<SloStatus>,
    /// (pair, trailing value if recomputed, recent value).
    baselines: Vec<BaselineFinding>,
}

struct BaselineFinding {
    key: (String, String),
    trailing: Option<Option<baseline::Value>>,
    recent: Option<baseline::Value>,
}

pub struct HistoryStage {
    history: Option<History>,
    /// Each pair's latest state, to record changes.
    states: HashMap<(String, String), String>,
    slo_job: Option<JoinHandle<Computed>>,
    /// Latency SLIs' finished hours, kept between computations.
    hours: std::sync::Arc<std::sync::Mutex<crate::history::slo::HourCache>>,
    /// Each baselined pair's latest verdict, added to its outcomes'
    /// thresholds.
    baselines: HashMap<(String, String), ThresholdResult>,
    /// Each baselined pair's trailing value and when it was computed (the
    /// trailing window moves slowly: recomputed every [`TRAILING_EVERY`]).
    trailing: HashMap<(String, String), (Instant, Option<baseline::Value>)>,
    slo_at: Option<Instant>,
    /// The history could not be opened: `synthmon_history_up` stays 0.
    off: bool,
    /// Writes failed runs' artifacts; `None` when they are off.
    artifacts: Option<ArtifactStore>,
}

/// Starts the artifact writer for `STATE_DIR/artifacts` unless
/// `[daemon.artifacts] enabled = false`; a failure is logged and the
/// daemon runs without artifacts.
pub fn open_artifacts(config: &Config) -> Option<ArtifactStore> {
    let a = &config.daemon.artifacts;
    if !a.enabled {
        tracing::info!("failure artifacts off ([daemon.artifacts] enabled = false)");
        return None;
    }
    let root = match super::alerting::state_dir(config) {
        Ok(d) => d.join(crate::history::artifacts::DIR),
        Err(e) => {
            tracing::error!(error = %e, "failure artifacts off");
            return None;
        }
    };
    let limits = crate::history::artifacts::Limits {
        keep: a.keep,
        max_bytes: a.max_bytes,
    };
    match ArtifactStore::start(root, limits) {
        Ok(store) => Some(store),
        Err(e) => {
            tracing::error!(error = %e, "failure artifacts off: cannot start their writer");
            None
        }
    }
}

/// Opens the history in the state directory (blocking work on the
/// blocking pool). A failure (a corrupt or foreign file, an unwritable
/// directory) is logged: the daemon keeps probing without history.
pub async fn open(config: &Config) -> Option<History> {
    if !config.daemon.history.enabled {
        tracing::info!("run history off ([daemon.history] enabled = false)");
        return None;
    }
    let dir = match super::alerting::state_dir(config) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "run history off");
            return None;
        }
    };
    let h = &config.daemon.history;
    let retention = Retention {
        runs: h.keep_runs,
        minutes: h.keep_minutes,
        hours: h.keep_hours,
    };
    let opened =
        tokio::task::spawn_blocking(move || History::open(&dir, retention).map(|h| (h, dir))).await;
    match opened {
        Ok(Ok((h, dir))) => {
            tracing::info!(file = %dir.join(crate::history::store::FILE).display(), "run history on");
            Some(h)
        }
        Ok(Err(e)) => {
            tracing::error!(error = %crate::net::error::describe(&e), "run history off: probing goes on without it");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "run history off");
            None
        }
    }
}

impl HistoryStage {
    /// `states`: each pair's latest stored state, read at start.
    pub fn new(
        history: Option<History>,
        wanted: bool,
        states: HashMap<(String, String), String>,
    ) -> HistoryStage {
        let off = wanted && history.is_none();
        HistoryStage {
            history,
            states,
            slo_job: None,
            hours: std::sync::Arc::default(),
            // The first computation comes [`FIRST_SLO`] after start,
            // once the first runs are in; then every [`SLO_EVERY`].
            slo_at: Instant::now().checked_sub(SLO_EVERY.saturating_sub(FIRST_SLO)),
            baselines: HashMap::new(),
            trailing: HashMap::new(),
            off,
            artifacts: None,
        }
    }

    /// Hands failed runs' artifacts to `store` from now on.
    pub fn with_artifacts(mut self, store: Option<ArtifactStore>) -> HistoryStage {
        self.artifacts = store;
        self
    }

    /// Records one outcome, after the alerting stage (whose state, when
    /// alerting is on, is the pair's state; else the run's verdict).
    /// `counted`: whether the run counts against SLOs and uptime (not when
    /// its pair was held or the monitor offline: its row is kept, its
    /// counts are not, see [`History::record_uncounted`]).
    pub fn observe(&mut self, outcome: &Outcome, state: &str, counted: bool, shared: &Shared) {
        shared.set_kept(&outcome.probe, &outcome.environment, &outcome.kept);
        if let Some(a) = &self.artifacts {
            a.record(outcome);
        }
        let Some(h) = &self.history else { return };
        if counted {
            h.record(outcome);
        } else {
            h.record_uncounted(outcome);
        }
        h.keep(&outcome.probe, &outcome.environment, &outcome.kept);
        let key = (outcome.probe.clone(), outcome.environment.clone());
        let before = self.states.get(&key).map(String::as_str).unwrap_or("ok");
        if before != state {
            h.transition(
                &key.0,
                &key.1,
                Transition {
                    at_ms: crate::history::now_ms(),
                    from: before.to_owned(),
                    to: state.to_owned(),
                    reason: outcome.reason.map(|r| r.as_str().to_owned()),
                },
            );
            self.states.insert(key, state.to_owned());
        }
    }

    /// Publishes health; starts an SLO computation when one is due, and
    /// applies one that finished.
    pub async fn tick(
        &mut self,
        config: &Config,
        metrics: &Metrics,
        shared: &Arc<Shared>,
        alerting: Option<&mut Alerting>,
    ) {
        match &self.history {
            Some(h) => {
                let health = h.health();
                use std::sync::atomic::Ordering::Relaxed;
                metrics.history(
                    !health.failing.load(Relaxed),
                    health.written_runs.load(Relaxed),
                    health.write_failures.load(Relaxed),
                    health.dropped.load(Relaxed),
                );
            }
            None => {
                if self.off {
                    metrics.history(false, 0, 0, 0);
                }
            }
        }
        if let Some(job) = &self.slo_job {
            if job.is_finished() {
                if let Some(job) = self.slo_job.take() {
                    match job.await {
                        Ok(found) => {
                            self.apply_baselines(found.baselines, config);
                            apply(found.slos, config, metrics, shared, alerting);
                        }
                        Err(e) => tracing::warn!(error = %e, "SLO computation failed"),
                    }
                }
            }
            return;
        }
        if self.slo_at.is_some_and(|t| t.elapsed() < SLO_EVERY) {
            return;
        }
        let Some(reader) = shared.history.clone() else {
            return;
        };
        let specs: Vec<(String, String, crate::slo::Slo)> = config
            .probes
            .iter()
            .filter_map(|p| p.slo.as_deref().map(|s| (p, s)))
            .flat_map(|(p, s)| {
                p.environments
                    .iter()
                    .map(move |e| (p.name.clone(), e.clone(), s.clone()))
            })
            .collect();
        let baselined: Vec<BaselineJob> = config
            .probes
            .iter()
            .filter_map(|p| p.baseline.as_deref().map(|b| (p, b)))
            .flat_map(|(p, b)| {
                let window = crate::telemetry::measure::latency_window(&p.thresholds);
                p.environments.iter().map(move |e| {
                    let key = (p.name.clone(), e.clone());
                    BaselineJob {
                        trailing_due: true,
                        key,
                        baseline: b.clone(),
                        window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
                    }
                })
            })
            .map(|mut job| {
                job.trailing_due = self
                    .trailing
                    .get(&job.key)
                    .is_none_or(|(at, _)| at.elapsed() >= TRAILING_EVERY);
                job
            })
            .collect();
        self.slo_at = Some(Instant::now());
        if specs.is_empty() && baselined.is_empty() {
            return;
        }
        let hours = self.hours.clone();
        self.slo_job = Some(tokio::task::spawn_blocking(move || {
            let now = crate::history::now_ms();
            let mut hours = hours
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            hours.retain(|p, e| specs.iter().any(|(sp, se, _)| sp == p && se == e));
            let warn = |p: &str, e: &str, err: &crate::history::store::Error| {
                tracing::warn!(probe = %p, environment = %e, error = %crate::net::error::describe(err), "cannot read the history for an SLO or a baseline");
            };
            let slos = specs
                .iter()
                .filter_map(|(p, e, slo)| {
                    crate::history::slo::status_with(&reader, p, e, slo, now, &mut hours)
                        .map_err(|err| warn(p, e, &err))
                        .ok()
                })
                .collect();
            let baselines = baselined
                .into_iter()
                .filter_map(|job| {
                    let (p, e) = (&job.key.0, &job.key.1);
                    let trailing = if job.trailing_due {
                        Some(
                            baseline::trailing(&reader, p, e, &job.baseline, now)
                                .map_err(|err| warn(p, e, &err))
                                .ok()?,
                        )
                    } else {
                        None
                    };
                    let recent = baseline::recent(&reader, p, e, &job.baseline, job.window_ms, now)
                        .map_err(|err| warn(p, e, &err))
                        .ok()?;
                    Some(BaselineFinding {
                        key: job.key,
                        trailing,
                        recent,
                    })
                })
                .collect();
            Computed { slos, baselines }
        }));
    }

    /// Adds the pair's baseline verdict to a run's thresholds (after the
    /// measurement stage, before metrics and alerts see them).
    pub fn judge(&self, outcome: &mut Outcome) {
        if self.baselines.is_empty() {
            return;
        }
        if let Some(t) = self
            .baselines
            .get(&(outcome.probe.clone(), outcome.environment.clone()))
        {
            outcome.thresholds.push(t.clone());
        }
    }

    fn apply_baselines(&mut self, found: Vec<BaselineFinding>, config: &Config) {
        self.baselines.clear();
        for f in found {
            if let Some(t) = f.trailing {
                self.trailing.insert(f.key.clone(), (Instant::now(), t));
            }
            let Some(probe) = config.probes.iter().find(|p| p.name == f.key.0) else {
                continue;
            };
            let Some(b) = &probe.baseline else { continue };
            let trailing = self.trailing.get(&f.key).and_then(|(_, t)| *t);
            let window = crate::telemetry::measure::latency_window(&probe.thresholds);
            self.baselines
                .insert(f.key, baseline_result(b, trailing, f.recent, window));
        }
        self.trailing.retain(|k, _| {
            config
                .probes
                .iter()
                .any(|p| p.name == k.0 && p.baseline.is_some())
        });
    }

    /// Commits what is pending and stops the writers.
    pub async fn close(self) {
        if let Some(h) = self.history {
            let _ = tokio::task::spawn_blocking(move || h.close()).await;
        }
        if let Some(a) = self.artifacts {
            let _ = tokio::task::spawn_blocking(move || a.close()).await;
        }
    }
}

struct BaselineJob {
    key: (String, String),
    baseline: crate::slo::Baseline,
    window_ms: i64,
    trailing_due: bool,
}

/// A baseline's verdict as a threshold result: its text is stable (a
/// metric label), the values are in `observed` and the message.
fn baseline_result(
    b: &crate::slo::Baseline,
    trailing: Option<baseline::Value>,
    recent: Option<baseline::Value>,
    window: Duration,
) -> ThresholdResult {
    use crate::slo::{BaselineLevel, BaselineVerdict};
    use crate::threshold::State;
    let metric = match b.metric {
        crate::slo::BaselineMetric::Percentile(q) => format!("p({q})"),
        crate::slo::BaselineMetric::Avg => "avg".to_owned(),
    };
    let text = format!(
        "{metric} <= {} baseline + {}%",
        crate::slo::format_window(b.window),
        (b.tolerance * 100.0 * 1e6).round() / 1e6
    );
    let state = match (trailing, recent) {
        (Some(t), Some(r)) => match b.judge(r.seconds, t.seconds, t.samples) {
            BaselineVerdict::NotEnoughData => State::NoData,
            BaselineVerdict::Within { .. } => State::Ok,
            BaselineVerdict::Regressed { .. } => match b.level {
                BaselineLevel::Degraded => State::Degraded,
                BaselineLevel::Failing => State::Failing,
            },
        },
        _ => State::NoData,
    };
    ThresholdResult {
        degraded: (b.level == BaselineLevel::Degraded).then(|| text.clone()),
        threshold: text,
        state,
        observed: recent.map(|r| r.seconds),
        unit: "seconds",
        window_seconds: window.as_secs_f64(),
        runs: recent.map_or(0, |r| r.samples),
    }
}

fn apply(
    statuses: Vec<SloStatus>,
    config: &Config,
    metrics: &Metrics,
    shared: &Shared,
    mut alerting: Option<&mut Alerting>,
) {
    for s in &statuses {
        let burn: Vec<(String, f64)> = s
            .burn_rates
            .iter()
            .map(|(w, r)| (window_label(*w), *r))
            .collect();
        metrics.slo(
            &s.probe,
            &s.environment,
            s.objective,
            s.budget_remaining,
            &burn,
        );
        if let Some(a) = alerting.as_deref_mut() {
            a.observe_burn(s, config);
        }
    }
    if let Ok(mut slo) = shared.slo.lock() {
        *slo = statuses;
    }
}

/// A window in seconds as the config writes it and as the `window` label
/// shows it: `5m`, `1h`, `3d`.
pub fn window_label(seconds: u64) -> String {
    crate::slo::format_window(Duration::from_secs(seconds))
}
