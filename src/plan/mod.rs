//! Assembly of the runtime plan: the one module that knows every probe kind
//! (through [`crate::probe::KINDS`]) and every receiver.
//!
//! [`load`] runs the low layer's loader ([`crate::config::load_settings`])
//! for `config.toml`, then checks every probe file (each kind building its
//! own table) and `[alerting]` with the same located document, diagnostics
//! and redactor, so one run reports every error of every file. The result,
//! [`Config`], is what the daemon and `--once` run.

mod alerting;
mod probes;

use crate::alert::receiver::AlertingConfig;
use crate::config::check::Checker;
use crate::config::{
    DaemonConfig, Diagnostics, Environment, LoadOptions, Loaded, Tagging, TelemetryConfig,
};
use crate::probe::Probe;
use crate::secret::Redactor;
use std::collections::BTreeMap;
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
}

/// Loads and checks everything: the config file, its layers and every probe
/// file its globs name. Returns every error found, not just the first.
pub fn load(opts: &LoadOptions) -> Result<Config, Diagnostics> {
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
    let probes = checker.probes(&settings.daemon.probe_globs, &settings.environments);
    let alerting = checker.alerting(alerting);
    probes::warn_alertmanager_timeout(&alerting, &probes);
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
    })
}
