//! `synthmon --once`: run the selected (probe, environment) pairs once and
//! hand the outcomes to a reporter.
//!
//! Starts the built-in sandbox when a selected environment uses it, runs the
//! pairs concurrently (bounded), and returns outcomes in a stable order
//! (probe file order, then environment order).
//!
//! The quality gate: `--save-baseline FILE` writes each passed pair's
//! latency over this invocation ([`save_baseline`]); `--baseline FILE` is
//! read before anything runs ([`Gate::prepare`]) and each pair is compared
//! with its entry after the run ([`Gate::judge`]), by its probe's
//! `baseline.metric` and `tolerance` (else p95 and 20%, the tolerance
//! overridden by `--baseline-tolerance`). `min_samples` does not apply:
//! the gate compares one invocation with one earlier invocation of the same
//! probes, whose sample counts the report shows side by side. A flow is
//! compared as a whole run (its latency summary is the run's).
//!
//! `--artifacts DIR` writes each failed run's artifact there
//! ([`write_artifacts`]), as the daemon keeps them in its state directory.

use crate::config::BaseUrl;
use crate::diag;
use crate::outcome::Outcome;
use crate::plan::Config;
use crate::probe::{self, Probe, RunContext};
use crate::report::baseline::{self, BaselineFile, Comparison, Entry, GateReport, Verdict};
use crate::sandbox::{Sandbox, SandboxOptions};
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
    /// `--shard`: of the pairs the lists select, only those this shard
    /// owns.
    pub shard: crate::plan::Shard,
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
    /// `--baseline` / `--save-baseline`: the file cannot be read or written.
    #[error(transparent)]
    Baseline(#[from] baseline::Error),
    /// `--baseline`: a probe's `baseline.metric` is not one a baseline file
    /// stores.
    #[error(
        "probe `{probe}`: its baseline metric {metric} cannot be compared with a baseline file, \
         which holds p50, p90, p95, p99, avg, min and max"
    )]
    BaselineMetric { probe: String, metric: String },
    /// `--artifacts DIR`: a file cannot be written.
    #[error("cannot write failure artifacts under {}", dir.display())]
    Artifacts {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The pairs `sel` selects. Naming a probe or environment that does not
/// exist is a usage error, not an empty run; the error is the message to
/// show, with a suggestion when a name is close to one that exists. Names
/// are checked against every probe, so a probe of another shard is no
/// typo: a shard that owns none of the selected pairs gets an empty list
/// (its part of the work is nothing), not an error.
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
    pairs.retain(|(i, env)| sel.shard.owns(&config.probes[*i].name, env));
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
                    // `--once` keeps no state between invocations: every
                    // run is a first run (`prev.NAME` has no value yet).
                    prev: None,
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

/// `--artifacts DIR`: writes each failed outcome's artifact under
/// `DIR/PROBE/ENVIRONMENT/` (the daemon's layout and per-pair limits,
/// `crate::history::artifacts`), on the blocking pool; returns the file
/// of each run id written.
pub async fn write_artifacts(
    config: &Config,
    dir: &Path,
    outcomes: &[Outcome],
) -> Result<BTreeMap<String, PathBuf>, Error> {
    use crate::history::artifacts;
    let a = &config.daemon.artifacts;
    let limits = artifacts::Limits {
        keep: a.keep,
        max_bytes: a.max_bytes,
    };
    let failed: Vec<Outcome> = outcomes.iter().filter(|o| !o.success).cloned().collect();
    let root = dir.to_owned();
    let written = tokio::task::spawn_blocking(move || {
        let mut written = BTreeMap::new();
        for o in &failed {
            if let Some(path) = artifacts::write(&root, o, limits)? {
                written.insert(o.run_id.clone(), path);
            }
        }
        Ok(written)
    })
    .await
    .map_err(|e| Error::Artifacts {
        dir: dir.to_owned(),
        source: std::io::Error::other(e.to_string()),
    })?;
    written.map_err(|source| Error::Artifacts {
        dir: dir.to_owned(),
        source,
    })
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
    use crate::telemetry::measure;
    let (series, now) = series_of(outcome);
    outcome.thresholds = measure::evaluate(&series, now, thresholds);
    outcome.latency = measure::summary(&series, now, measure::MAX_WINDOW);
}

/// A series holding exactly `outcome`'s samples, as of the returned instant.
fn series_of(outcome: &Outcome) -> (crate::telemetry::measure::Series, tokio::time::Instant) {
    use crate::telemetry::measure::{self, Series};
    let now = tokio::time::Instant::now();
    let mut series = Series::new(now, measure::SUB_WINDOW, measure::MAX_WINDOW);
    for (tally, latency) in measure::samples_of(outcome) {
        series.record(now, tally, latency);
    }
    (series, now)
}

/// The baseline entry of a measured outcome: its latency summary and
/// average. None for a run that failed (its latency, a fast error or a
/// timeout, is not the service's) or measured no latency.
pub fn baseline_entry(outcome: &Outcome) -> Option<Entry> {
    use crate::telemetry::measure::MAX_WINDOW;
    use crate::threshold::Metric;
    if !outcome.success {
        return None;
    }
    let l = outcome.latency?;
    let (series, now) = series_of(outcome);
    let avg = series.window(now, MAX_WINDOW).observe(Metric::Avg)?;
    Some(Entry {
        probe: outcome.probe.clone(),
        environment: outcome.environment.clone(),
        step: None,
        samples: l.samples,
        p50: l.p50,
        p90: l.p90,
        p95: l.p95,
        p99: l.p99,
        avg,
        min: l.min,
        max: l.max,
    })
}

/// What [`save_baseline`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    /// Pairs written.
    pub entries: usize,
    /// Pairs left out: their run failed or measured no latency.
    pub left_out: usize,
}

/// `--save-baseline FILE`: writes every measured pair of `outcomes` to
/// `path`, atomically, replacing the file.
pub fn save_baseline(path: &Path, outcomes: &[Outcome]) -> Result<Saved, Error> {
    let entries: Vec<Entry> = outcomes.iter().filter_map(baseline_entry).collect();
    let saved = Saved {
        entries: entries.len(),
        left_out: outcomes.len() - entries.len(),
    };
    baseline::write(path, &BaselineFile::new(entries))?;
    Ok(saved)
}

/// The tolerance when the probe sets none: "no more than 20% slower".
pub const DEFAULT_TOLERANCE: f64 = 0.2;

/// How one pair is judged against a baseline file: which stored metric,
/// and the daemon's rule (`slo::Baseline::judge`) with its tolerance.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub metric: baseline::Metric,
    pub judge: crate::slo::Baseline,
}

/// `probe`'s [`Rule`]: its `baseline.metric` and `tolerance`, else p95
/// and 20%; `tolerance` (`--baseline-tolerance`) overrides either. Its
/// `min_samples` does not apply (see the module's documentation) and a
/// regression fails whatever its `level`: the gate was asked for.
pub fn baseline_rule(probe: &Probe, tolerance: Option<f64>) -> Result<Rule, Error> {
    rule_of(&probe.name, probe.baseline.as_deref(), tolerance)
}

fn rule_of(
    probe: &str,
    configured: Option<&crate::slo::Baseline>,
    tolerance: Option<f64>,
) -> Result<Rule, Error> {
    use crate::slo::{Baseline, BaselineLevel, BaselineMetric};
    let mut judge = configured.cloned().unwrap_or(Baseline {
        metric: BaselineMetric::Percentile(95.0),
        window: std::time::Duration::ZERO,
        tolerance: DEFAULT_TOLERANCE,
        min_samples: 0,
        level: BaselineLevel::Failing,
    });
    judge.min_samples = 0;
    judge.level = BaselineLevel::Failing;
    if let Some(t) = tolerance {
        judge.tolerance = t;
    }
    let metric = match judge.metric {
        BaselineMetric::Avg => Some(baseline::Metric::Avg),
        BaselineMetric::Percentile(q) => baseline::Metric::percentile(q),
    }
    .ok_or_else(|| Error::BaselineMetric {
        probe: probe.to_owned(),
        metric: judge.metric.to_string(),
    })?;
    Ok(Rule { metric, judge })
}

/// Compares `outcome` with its entry in `file` under `rule`. A regression
/// is `current > baseline × (1 + tolerance)`.
pub fn compare(outcome: &Outcome, file: &BaselineFile, rule: &Rule) -> Comparison {
    use crate::slo::BaselineVerdict;
    let current = baseline_entry(outcome);
    let base = file.find(&outcome.probe, &outcome.environment);
    let now = current.as_ref().map(|e| rule.metric.of(e));
    let then = base.map(|e| rule.metric.of(e));
    let tolerance = rule.judge.tolerance;
    let verdict = match (now, base) {
        (_, None) => Verdict::NoBaseline,
        (None, Some(_)) => Verdict::Skipped,
        (Some(c), Some(b)) => match rule.judge.judge(c, rule.metric.of(b), b.samples) {
            BaselineVerdict::NotEnoughData => Verdict::Skipped,
            BaselineVerdict::Within { .. } => Verdict::Ok,
            BaselineVerdict::Regressed { .. } => Verdict::Regressed,
        },
    };
    Comparison {
        probe: outcome.probe.clone(),
        environment: outcome.environment.clone(),
        metric: rule.metric,
        tolerance,
        verdict,
        current: now,
        baseline: then,
        ratio: now.zip(then).filter(|(_, b)| *b > 0.0).map(|(c, b)| c / b),
        // At the file's resolution (µs), without the float's noise.
        limit: then.map(|b| (b * (1.0 + tolerance) * 1e9).round() / 1e9),
        current_samples: current.map(|e| e.samples),
        baseline_samples: base.map(|e| e.samples),
    }
}

/// `--baseline FILE`: the file and how each selected pair is judged,
/// prepared before anything runs so a bad file or metric costs no run.
#[derive(Debug)]
pub struct Gate {
    path: PathBuf,
    file: BaselineFile,
    /// One per pair, in the pairs' order.
    rules: Vec<Rule>,
}

impl Gate {
    /// Reads the file at `path` and each pair's rule; `tolerance` is
    /// `--baseline-tolerance`.
    pub fn prepare(
        config: &Config,
        pairs: &[Pair],
        path: &Path,
        tolerance: Option<f64>,
    ) -> Result<Gate, Error> {
        let file = baseline::read(path)?;
        let rules = pairs
            .iter()
            .map(|(i, _)| baseline_rule(&config.probes[*i], tolerance))
            .collect::<Result<_, _>>()?;
        Ok(Gate {
            path: path.to_owned(),
            file,
            rules,
        })
    }

    /// Compares each outcome (in the pairs' order, as [`run`] returns
    /// them) with its baseline entry.
    pub fn judge(&self, outcomes: &[Outcome]) -> GateReport {
        let comparisons = outcomes
            .iter()
            .zip(&self.rules)
            .map(|(o, rule)| compare(o, &self.file, rule))
            .collect();
        GateReport::new(&self.path, &self.file, comparisons)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A passed single run that took `ms`, measured as `--once` does.
    fn outcome(probe: &str, ms: u64) -> Outcome {
        let ids = crate::tagging::RunIds::generate();
        let mut o = Outcome::new(probe, "env", "http", &ids);
        o.success = true;
        o.responded = true;
        o.duration = Duration::from_millis(ms);
        judge(&mut o, &[]);
        o
    }

    fn rule(tolerance: f64) -> Rule {
        Rule {
            metric: baseline::Metric::P95,
            judge: crate::slo::Baseline {
                metric: crate::slo::BaselineMetric::Percentile(95.0),
                window: Duration::ZERO,
                tolerance,
                min_samples: 0,
                level: crate::slo::BaselineLevel::Failing,
            },
        }
    }

    #[test]
    fn a_regression_is_beyond_baseline_times_one_plus_tolerance() {
        let file = BaselineFile::new(vec![baseline_entry(&outcome("a", 100)).unwrap()]);
        let at = |ms: u64| compare(&outcome("a", ms), &file, &rule(0.2));
        assert_eq!(at(100).verdict, Verdict::Ok);
        assert_eq!(at(120).verdict, Verdict::Ok, "at the limit is within it");
        assert_eq!(at(121).verdict, Verdict::Regressed);
        let c = at(150);
        assert_eq!(
            (c.current, c.baseline, c.limit),
            (Some(0.15), Some(0.1), Some(0.12))
        );
        assert!((c.ratio.unwrap() - 1.5).abs() < 1e-9);
        assert_eq!(
            compare(&outcome("a", 150), &file, &rule(1.0)).verdict,
            Verdict::Ok
        );
    }

    #[test]
    fn missing_entries_and_failed_runs_do_not_fail_the_gate() {
        let file = BaselineFile::new(vec![baseline_entry(&outcome("a", 100)).unwrap()]);
        let new = compare(&outcome("b", 900), &file, &rule(0.2));
        assert_eq!(new.verdict, Verdict::NoBaseline);
        let mut failed = outcome("a", 900);
        failed.success = false;
        assert_eq!(baseline_entry(&failed), None);
        let failed = compare(&failed, &file, &rule(0.2));
        assert_eq!(failed.verdict, Verdict::Skipped);
        let report = GateReport::new(Path::new("f.json"), &file, vec![new, failed]);
        assert!(report.passed());
    }

    #[test]
    fn the_probes_metric_and_tolerance_apply_and_the_flag_overrides_the_tolerance() {
        use crate::slo::{BaselineLevel, BaselineMetric};
        let default = rule_of("p", None, None).unwrap();
        assert_eq!(default.metric, baseline::Metric::P95);
        assert_eq!(default.judge.tolerance, DEFAULT_TOLERANCE);
        let mut configured = rule(0.5).judge;
        configured.metric = BaselineMetric::Avg;
        configured.min_samples = 100;
        configured.level = BaselineLevel::Degraded;
        let r = rule_of("p", Some(&configured), None).unwrap();
        assert_eq!(r.metric, baseline::Metric::Avg);
        assert_eq!(r.judge.tolerance, 0.5);
        // A single run has one sample: min_samples would disable the gate.
        assert_eq!(r.judge.min_samples, 0);
        let r = rule_of("p", Some(&configured), Some(0.05)).unwrap();
        assert_eq!(r.judge.tolerance, 0.05);
        configured.metric = BaselineMetric::Percentile(99.9);
        let e = rule_of("p", Some(&configured), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("probe `p`: its baseline metric p(99.9) cannot be compared"),
            "{e}"
        );
    }
}
