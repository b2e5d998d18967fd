//! The telemetry pipeline: the one consumer of run outcomes in the daemon.
//! For each outcome, in order: record it in its rolling window and evaluate
//! its thresholds (filling `outcome.thresholds`), update the Prometheus
//! series, export its trace, and hand it to whoever listens (tests now,
//! alerting later). Config changes arrive on the same channel, so an outcome
//! is always judged by the config that was current when it arrived.

use super::alerting::Alerting;
use crate::alert::state::PairState;
use crate::outcome::Outcome;
use crate::plan::Config;
use crate::telemetry::measure::Store;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::traces::TraceExporter;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a shutdown waits for queued spans to reach the collector.
pub const TRACE_FLUSH: Duration = Duration::from_secs(3);

/// Outcomes waiting for the pipeline; beyond this they are dropped and
/// counted rather than holding up runs.
pub const QUEUE: usize = 4096;

pub enum Event {
    Outcome(Box<Outcome>),
    Config(Arc<Config>),
}

pub struct Sinks {
    pub metrics: Arc<Metrics>,
    pub traces: Option<TraceExporter>,
    /// Where the trace exporter's drop count is published for `/metrics`.
    pub spans_dropped: Arc<AtomicU64>,
    pub alerting: Option<Alerting>,
    pub listener: Option<mpsc::Sender<Outcome>>,
    pub history: super::history::HistoryStage,
    pub shared: Arc<super::Shared>,
}

/// Runs until every sender of `events` is gone (after the drain), then
/// flushes traces within [`TRACE_FLUSH`].
pub async fn run(mut events: mpsc::Receiver<Event>, mut config: Arc<Config>, sinks: Sinks) {
    let Sinks {
        metrics,
        traces,
        spans_dropped,
        mut alerting,
        listener,
        mut history,
        shared,
    } = sinks;
    let mut store = Store::default();
    let mut probe_index = config.probe_index();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let event = tokio::select! {
            e = events.recv() => match e {
                Some(e) => e,
                None => break,
            },
            _ = ticker.tick() => {
                history.tick(&config, &metrics, &shared, alerting.as_mut()).await;
                if let Some(a) = alerting.as_mut() {
                    a.set_held(shared.holds.held_pairs(&config, chrono::Utc::now()));
                    a.observe_offline(shared.holds.offline(), shared.holds.offline_detail(), &config);
                    a.tick(&config).await;
                    publish_delivery(a, &metrics).await;
                }
                continue;
            }
        };
        match event {
            Event::Config(c) => {
                if c.telemetry != config.telemetry {
                    tracing::warn!("[telemetry] changes take effect on restart");
                }
                metrics.reconfigure(&c.probes);
                if let Some(a) = alerting.as_mut() {
                    a.retain(&c);
                }
                store.retain(|probe, env| {
                    c.probes
                        .iter()
                        .any(|p| p.name == probe && p.environments.iter().any(|e| e == env))
                });
                probe_index = c.probe_index();
                config = c;
            }
            Event::Outcome(mut outcome) => {
                let thresholds = probe_index
                    .get(&outcome.probe)
                    .and_then(|i| config.probes.get(*i))
                    .map(|p| p.thresholds.as_slice())
                    .unwrap_or_default();
                store.record(&mut outcome, thresholds);
                history.judge(&mut outcome);
                let hold = shared.holds.hold_of(
                    &config,
                    &outcome.probe,
                    &outcome.environment,
                    chrono::Utc::now(),
                );
                let offline = shared.holds.offline();
                if offline && !outcome.success {
                    blame_the_monitor(&mut outcome);
                }
                // Held runs and runs the monitor could not judge do not
                // count against SLOs and uptime.
                let counted = hold.is_none()
                    && outcome.reason != Some(crate::outcome::FailureReason::MonitorOffline);
                for t in &outcome.thresholds {
                    if t.state == crate::threshold::State::Failing {
                        tracing::warn!(
                            probe = %outcome.probe,
                            environment = %outcome.environment,
                            threshold = %t.threshold,
                            observed = t.observed,
                            "threshold failing"
                        );
                    }
                }
                metrics.record(&outcome);
                if let Some(t) = &traces {
                    t.record(&outcome);
                    spans_dropped.store(t.dropped(), Ordering::Relaxed);
                }
                let state = match alerting.as_mut() {
                    Some(a) => {
                        a.hold(
                            &outcome.probe,
                            &outcome.environment,
                            hold.is_some() || offline,
                        );
                        a.observe(&outcome, &config);
                        let state = a.state(&outcome.probe, &outcome.environment);
                        let value = match state {
                            PairState::Ok => 0.0,
                            PairState::Degraded => 1.0,
                            PairState::Failing => 2.0,
                        };
                        metrics.alert_state(&outcome.probe, &outcome.environment, value);
                        state.as_str()
                    }
                    // Without alerting, a pair's state is its latest run's.
                    None => match crate::history::verdict_of(&outcome) {
                        crate::history::Verdict::Pass => "ok",
                        crate::history::Verdict::Degraded => "degraded",
                        crate::history::Verdict::Fail => "failing",
                    },
                };
                history.observe(&outcome, state, counted, &shared);
                if let Some(tx) = &listener {
                    let _ = tx.try_send(*outcome);
                }
            }
        }
    }
    if let Some(a) = alerting {
        a.shutdown(&config, Duration::from_secs(2)).await;
    }
    history.close().await;
    if let Some(t) = traces {
        let counts = t.shutdown(TRACE_FLUSH).await;
        spans_dropped.store(counts.dropped, Ordering::Relaxed);
        tracing::info!(
            exported = counts.exported,
            dropped = counts.dropped,
            "trace export finished"
        );
    }
}

/// A run that failed while every self-check target failed too: the
/// failure says nothing about the target, so its reason becomes
/// `monitor_offline`; the original reason and sentence stay in the error.
fn blame_the_monitor(outcome: &mut Outcome) {
    let was = outcome.reason.map_or("failed", |r| r.as_str());
    let error = outcome.error.as_deref().unwrap_or("no detail");
    outcome.error = Some(format!(
        "the monitor was offline (every self-check target failed); the run failed with {was}: {error}"
    ));
    outcome.reason = Some(crate::outcome::FailureReason::MonitorOffline);
}

/// Publishes delivery totals and outbox depth per receiver.
async fn publish_delivery(alerting: &Alerting, metrics: &Metrics) {
    let (stats, depth) = alerting.delivery().await;
    let (write_failures, unwritten, dropped) = alerting.store_health();
    metrics.outbox_store(write_failures, unwritten, dropped);
    let now = chrono::Utc::now();
    for (name, s) in &stats.receivers {
        let (pending, oldest) = depth
            .iter()
            .find(|(r, _, _)| r == name)
            .map_or((0, None), |(_, n, o)| (*n, *o));
        let age = oldest.map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
        metrics.receiver(
            name,
            [
                ("delivered", s.delivered),
                ("retried", s.retried),
                ("dead", s.dead),
                ("failed", s.failed_attempts),
            ],
            pending,
            age,
        );
    }
}
