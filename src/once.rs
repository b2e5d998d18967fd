//! `synthmon --once`: run the selected (probe, environment) pairs once and
//! hand the outcomes to a reporter.
//!
//! Starts the built-in sandbox when a selected environment uses it, runs the
//! pairs concurrently (bounded), and returns outcomes in a stable order
//! (probe file order, then environment order).

use crate::config::BaseUrl;
use crate::diag;
use crate::outcome::Outcome;
use crate::plan::Config;
use crate::probe::{self, RunContext};
use crate::sandbox::{Sandbox, SandboxOptions};
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// How many runs may be in flight at once.
pub const CONCURRENCY: usize = 32;

/// Which pairs to run; empty lists select everything.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    pub probes: Vec<String>,
    pub tags: Vec<String>,
    pub environments: Vec<String>,
}

/// A (probe index, environment name) pair to run.
pub type Pair = (usize, String);

/// Why a `--once` invocation could not run. A failed probe is not an
/// error: it is an [`Outcome`]. The cause, where there is one, is the
/// [`source`](std::error::Error::source), not part of the message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start the built-in sandbox")]
    Sandbox(#[source] std::io::Error),
    #[error("the built-in sandbox's base URL does not parse")]
    SandboxUrl(#[source] url::ParseError),
    /// A run's task panicked: a bug in synthmon, not a probe failure.
    #[error("a probe run failed inside synthmon")]
    Run(#[source] tokio::task::JoinError),
    /// `[telemetry]` or the `OTEL_*` variables do not describe an exporter.
    #[error("cannot set up trace export: {0}")]
    Traces(String),
}

/// The pairs `sel` selects. Naming a probe or environment that does not
/// exist is a usage error, not an empty run; the error is the message to
/// show, with a suggestion when a name is close to one that exists.
pub fn select(config: &Config, sel: &Selection) -> Result<Vec<Pair>, String> {
    for name in &sel.probes {
        if !config.probes.iter().any(|p| &p.name == name) {
            let mut msg = format!("no probe named `{name}`");
            if let Some(n) = diag::nearest(name, config.probes.iter().map(|p| p.name.as_str())) {
                msg.push_str(&format!("; did you mean `{n}`?"));
            }
            return Err(msg);
        }
    }
    for name in &sel.environments {
        if !config.environments.contains_key(name) {
            let mut msg = format!("no environment named `{name}`");
            if let Some(n) = diag::nearest(name, config.environments.keys().map(String::as_str)) {
                msg.push_str(&format!("; did you mean `{n}`?"));
            }
            return Err(msg);
        }
    }
    let mut pairs = Vec::new();
    for (i, probe) in config.probes.iter().enumerate() {
        if !sel.probes.is_empty() && !sel.probes.contains(&probe.name) {
            continue;
        }
        if !sel.tags.is_empty() && !probe.tags.iter().any(|t| sel.tags.contains(t)) {
            continue;
        }
        for env in &probe.environments {
            if sel.environments.is_empty() || sel.environments.contains(env) {
                pairs.push((i, env.clone()));
            }
        }
    }
    if pairs.is_empty() {
        return Err("the selection matches no (probe, environment) pair".into());
    }
    Ok(pairs)
}

/// Runs `pairs` once each. `vars` overlay every environment's variables.
pub async fn run(
    config: &Arc<Config>,
    pairs: &[Pair],
    vars: &BTreeMap<String, String>,
    seed: Option<u64>,
) -> Result<Vec<Outcome>, Error> {
    run_until(config, pairs, vars, seed, &CancellationToken::new()).await
}

/// [`run`], stopped early when `cancel` fires (Ctrl-C): runs in flight
/// stop at their next step and run their teardowns (bounded by the flow's
/// teardown budget), runs not started yet end at once as cancelled, and
/// every pair still gets an outcome for the partial report.
pub async fn run_until(
    config: &Arc<Config>,
    pairs: &[Pair],
    vars: &BTreeMap<String, String>,
    seed: Option<u64>,
    cancel: &CancellationToken,
) -> Result<Vec<Outcome>, Error> {
    let needs_sandbox = pairs.iter().any(|(_, env)| {
        config
            .environments
            .get(env)
            .is_some_and(|e| e.base_url == BaseUrl::Sandbox)
    });
    let sandbox = if needs_sandbox {
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        Some(
            Sandbox::start(listen, SandboxOptions::default())
                .await
                .map_err(Error::Sandbox)?,
        )
    } else {
        None
    };
    let sandbox_url = sandbox
        .as_ref()
        .map(|s| url::Url::parse(&s.base_url()))
        .transpose()
        .map_err(Error::SandboxUrl)?;

    // Per environment: its base URL and its variables overlaid with --var.
    let mut targets = BTreeMap::new();
    for (name, env) in &config.environments {
        let base = match (&env.base_url, &sandbox_url) {
            (BaseUrl::Url(u), _) => u.clone(),
            (BaseUrl::Sandbox, Some(u)) => u.clone(),
            (BaseUrl::Sandbox, None) => continue,
        };
        let mut v = env.variables.clone();
        if env.base_url == BaseUrl::Sandbox {
            if let Some(s) = &sandbox {
                for (k, val) in s.variables() {
                    v.entry(k.clone()).or_insert_with(|| val.clone());
                }
            }
        }
        v.extend(vars.iter().map(|(k, val)| (k.clone(), val.clone())));
        targets.insert(name.clone(), (base, v));
    }

    // Workloads draw a progress bar when a person is watching.
    let progress = (pairs
        .iter()
        .any(|(i, _)| config.probes[*i].workload.is_some())
        && std::io::IsTerminal::is_terminal(&std::io::stderr()))
    .then(indicatif::MultiProgress::new);
    // Each run is a task of its own, so the CPU work of one (a TLS
    // handshake, rendering a payload) never delays another's wake-up and
    // skews its measured phases.
    let targets = Arc::new(targets);
    let outcomes = futures_util::stream::iter(pairs.iter())
        .map(|(i, env_name)| {
            let (config, targets, progress, cancel) = (
                config.clone(),
                targets.clone(),
                progress.clone(),
                cancel.clone(),
            );
            let (i, env_name) = (*i, env_name.clone());
            tokio::spawn(async move {
                let (base_url, vars) = &targets[env_name.as_str()];
                let ctx = RunContext {
                    probe: &config.probes[i],
                    env: &config.environments[&env_name],
                    base_url,
                    tagging: &config.tagging,
                    redactor: &config.redactor,
                    vars,
                    cancel,
                    seed,
                    progress,
                };
                probe::run(&ctx).await
            })
        })
        .buffered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<Outcome>, _>>()
        .map_err(Error::Run)?;

    if let Some(s) = sandbox {
        s.shutdown().await;
    }
    let mut outcomes = outcomes;
    for (outcome, (i, _)) in outcomes.iter_mut().zip(pairs) {
        judge(outcome, &config.probes[*i].thresholds);
    }
    export_traces(config, &outcomes).await?;
    Ok(outcomes)
}

/// Exports a trace per outcome when OTLP is configured, waiting a bounded
/// time for the collector.
async fn export_traces(config: &Config, outcomes: &[Outcome]) -> Result<(), Error> {
    use crate::telemetry::traces::{Resource, TraceExporter};
    let resource = Resource {
        instance: config.daemon.instance.clone(),
        location: config.daemon.location.clone(),
    };
    let exporter = TraceExporter::start(&config.telemetry, resource, &|k| std::env::var(k).ok())
        .map_err(Error::Traces)?;
    if let Some(exporter) = exporter {
        for o in outcomes {
            exporter.record(o);
        }
        let counts = exporter.shutdown(std::time::Duration::from_secs(5)).await;
        if counts.dropped > 0 {
            tracing::warn!(
                dropped = counts.dropped,
                "some trace spans could not be exported"
            );
        }
    }
    Ok(())
}

/// Evaluates thresholds and latency percentiles over this invocation's own
/// samples (a `--once` run has no history).
fn judge(outcome: &mut Outcome, thresholds: &[crate::threshold::Threshold]) {
    use crate::telemetry::measure::{self, Series};
    let now = tokio::time::Instant::now();
    let mut series = Series::new(now, measure::SUB_WINDOW, measure::MAX_WINDOW);
    for (success, latency) in measure::samples_of(outcome) {
        series.record(now, success, latency);
    }
    outcome.thresholds = measure::evaluate(&series, now, thresholds);
    outcome.latency = measure::summary(&series, now, measure::MAX_WINDOW);
}
