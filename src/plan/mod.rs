//! Assembly of the runtime plan: the one module that knows every probe kind
//! (through [`crate::probe::KINDS`]) and every receiver.
//!
//! [`load`] runs the low layer's loader ([`crate::config::load_settings`])
//! for `config.toml`, then checks every probe file (each kind building its
//! own table) and `[alerting]` with the same located document, diagnostics
//! and redactor, so one run reports every error of every file. The result,
//! [`Config`], is what the daemon and `--once` run; [`shard`] says which of
//! its (probe, environment) pairs one of several instances runs.

mod alerting;
mod probes;
pub mod shard;

use crate::alert::receiver::AlertingConfig;
use crate::config::check::{Checker, Demand};
use crate::config::{
    DaemonConfig, Diagnostics, Environment, LoadOptions, Loaded, Tagging, TelemetryConfig,
};
use crate::probe::Probe;
use crate::secret::Redactor;
pub use shard::Shard;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// The whole checked configuration: daemon settings, environments, probes,
/// alerting.
#[derive(Debug)]
pub struct Config {
    /// The config file this was loaded from, if any.
    pub file: Option<PathBuf>,
    pub daemon: DaemonConfig,
    pub tagging: Tagging,
    pub environments: BTreeMap<String, Environment>,
    pub probes: Vec<Probe>,
    pub telemetry: TelemetryConfig,
    pub alerting: AlertingConfig,
    /// Every secret value the config resolved, so that output can be
    /// scrubbed of them.
    pub redactor: Redactor,
    /// The shard whose pairs `probes` holds ([`Shard::ALL`] unless
    /// [`Config::retain_shard`] narrowed it).
    pub shard: Shard,
}

impl Config {
    /// Narrows the plan to the pairs `shard` owns: each probe keeps the
    /// environments it runs in on this shard, and a probe left with none
    /// is dropped, so everything downstream (schedules, metrics, alerts,
    /// the status page) sees only this shard's pairs. Environments stay:
    /// they are looked up by name.
    pub fn retain_shard(&mut self, shard: Shard) {
        self.shard = shard;
        if !shard.is_sharded() {
            return;
        }
        for p in &mut self.probes {
            p.environments.retain(|e| shard.owns(&p.name, e));
        }
        self.probes.retain(|p| !p.environments.is_empty());
    }

    /// Where each probe is in [`Config::probes`], by name: for the paths
    /// that find a run's probe on every run (a scan of 1,000 probes'
    /// names per run cost more than the rest of the lookup).
    pub fn probe_index(&self) -> HashMap<String, usize> {
        self.probes
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), i))
            .collect()
    }

    /// How many (probe, environment) pairs the plan runs.
    pub fn pairs(&self) -> usize {
        self.probes.iter().map(|p| p.environments.len()).sum()
    }
}

/// The parts of the config a run uses. Every part is checked either way;
/// the secret references of the parts in use must resolve, those of the
/// others are not read (a probe `--probe` did not select, `[alerting]`
/// without `--alert`) or not demanded (an environment no used probe runs
/// in), so a run needs only its own secrets.
#[derive(Debug, Clone, Default)]
pub enum Uses {
    /// Every part: the daemon, `check`, `list`.
    #[default]
    Everything,
    /// What one `--once` invocation runs; empty lists select everything,
    /// as `--probe`, `--tag` and `--env` do.
    Once {
        probes: Vec<String>,
        tags: Vec<String>,
        environments: Vec<String>,
        /// `--alert`: the receivers send.
        alerting: bool,
    },
}

impl Uses {
    /// Whether a probe with this name and tags is selected (`--env`
    /// narrows where it runs, not whether its own secrets are needed).
    fn probe(&self, name: &str, tags: &[String]) -> bool {
        match self {
            Uses::Everything => true,
            Uses::Once {
                probes,
                tags: wanted,
                ..
            } => {
                (probes.is_empty() || probes.iter().any(|p| p == name))
                    && (wanted.is_empty() || tags.iter().any(|t| wanted.contains(t)))
            }
        }
    }

    /// Whether a used probe runs in `environment`.
    fn environment(&self, environment: &str) -> bool {
        match self {
            Uses::Everything => true,
            Uses::Once { environments, .. } => {
                environments.is_empty() || environments.iter().any(|e| e == environment)
            }
        }
    }

    fn alerting(&self) -> bool {
        match self {
            Uses::Everything => true,
            Uses::Once { alerting, .. } => *alerting,
        }
    }
}

/// Loads and checks everything: the config file, its layers and every probe
/// file its globs name. Returns every error found, not just the first.
pub fn load(opts: &LoadOptions) -> Result<Config, Diagnostics> {
    load_for(opts, &Uses::Everything)
}

/// [`load`] for a run that uses only some parts of the config (see
/// [`Uses`]): everything is checked, but only the secrets of the parts in
/// use must be there.
pub fn load_for(opts: &LoadOptions, uses: &Uses) -> Result<Config, Diagnostics> {
    let Loaded {
        file,
        doc,
        mut diags,
        mut redactor,
        base_dir,
        settings,
        alerting,
    } = crate::config::load_settings(opts)?;
    let mut checker = Checker::new(&doc, &mut diags, &mut redactor, &base_dir);
    let probes = checker.probes(&settings.daemon.probe_globs, &settings.environments, uses);
    if !uses.alerting() {
        checker.secrets = Demand::Unused;
    }
    let alerting = checker.alerting(alerting);
    probes::warn_alertmanager_timeout(&alerting, &probes);
    // An environment's secrets are needed where a used probe runs (by the
    // daemon and `check`: everywhere).
    for env in settings.environments.values() {
        let used = matches!(uses, Uses::Everything)
            || probes.iter().any(|p| {
                uses.probe(&p.name, &p.tags)
                    && p.environments.contains(&env.name)
                    && uses.environment(&env.name)
            });
        if used {
            diags.extend(env.unresolved.iter().cloned());
        }
    }
    // The listener's token: the daemon's (and `check`'s), never `--once`'s.
    if matches!(uses, Uses::Everything) {
        diags.extend(settings.daemon.token_unresolved.iter().cloned());
    }
    if !diags.is_empty() {
        diags.sort();
        return Err(diags);
    }
    Ok(Config {
        file: Some(file),
        daemon: settings.daemon,
        tagging: settings.tagging,
        environments: settings.environments,
        probes,
        telemetry: settings.telemetry,
        alerting,
        redactor,
        shard: Shard::ALL,
    })
}
