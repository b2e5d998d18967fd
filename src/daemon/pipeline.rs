//! The telemetry pipeline: the one consumer of run outcomes in the daemon.
//! For each outcome, in order: record it in its rolling window and evaluate
//! its thresholds (filling `outcome.thresholds`), update the Prometheus
//! series, export its trace, and hand it to whoever listens (tests now,
//! alerting later). Config changes arrive on the same channel, so an outcome
//! is always judged by the config that was current when it arrived.

use crate::config::Config;
use crate::outcome::Outcome;
use crate::telemetry::measure::Store;
use crate::telemetry::metrics::Metrics;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Outcomes waiting for the pipeline; beyond this they are dropped and
/// counted rather than holding up runs.
pub const QUEUE: usize = 4096;

pub enum Event {
    Outcome(Box<Outcome>),
    Config(Arc<Config>),
}

pub async fn run(
    mut events: mpsc::Receiver<Event>,
    mut config: Arc<Config>,
    metrics: Arc<Metrics>,
    listener: Option<mpsc::Sender<Outcome>>,
) {
    let mut store = Store::default();
    while let Some(event) = events.recv().await {
        match event {
            Event::Config(c) => {
                metrics.reconfigure(&c);
                store.retain(|probe, env| {
                    c.probes
                        .iter()
                        .any(|p| p.name == probe && p.environments.iter().any(|e| e == env))
                });
                config = c;
            }
            Event::Outcome(mut outcome) => {
                let thresholds = config
                    .probes
                    .iter()
                    .find(|p| p.name == outcome.probe)
                    .map(|p| p.thresholds.as_slice())
                    .unwrap_or_default();
                outcome.thresholds = store.record(&outcome, thresholds);
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
                if let Some(tx) = &listener {
                    let _ = tx.try_send(*outcome);
                }
            }
        }
    }
}
