//! The daemon's alerting stage: outcomes → alert state machine → group
//! window → routes → durable outbox → one delivery worker per receiver.
//!
//! Notifications produced within `[alerting] group_wait` of the first one
//! are committed together: one batch per receiver, written to the outbox
//! in the same transaction as the engine snapshot that produced them, so a
//! crash (even `kill -9`) neither loses a page nor sends one twice. The
//! engine is restored from that snapshot at start. Receiver changes take
//! effect on restart; routes and probe policies follow reloads. Every call
//! into the SQLite store runs on tokio's blocking pool
//! ([`crate::alert::outbox::blocking`]), so an fsync never stalls a runtime
//! thread.

use crate::alert::Notification;
use crate::alert::outbox::{Dispatcher, Outbox, OutboxError, SharedReceiver, blocking};
use crate::alert::route::receivers_for;
use crate::alert::state::{Engine, EngineSnapshot, FireRule, PairInfo};
use crate::net::describe;
use crate::outcome::Outcome;
use crate::plan::Config;
use chrono::Utc;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The key of the engine snapshot in the outbox database.
const STATE_KEY: &str = "alert_engine";
/// The database file in the state directory.
pub const DB_FILE: &str = "synthmon.sqlite";

pub struct Alerting {
    engine: Engine,
    outbox: Arc<Outbox>,
    dispatcher: Dispatcher,
    pending: Vec<Notification>,
    /// When the open group must be committed.
    flush_at: Option<Instant>,
}

impl Alerting {
    /// Opens the outbox in the state directory and starts delivery, when
    /// any receiver is configured; `Ok(None)` otherwise.
    pub async fn start(
        config: &Config,
        stop: &CancellationToken,
    ) -> Result<Option<Alerting>, String> {
        if config.alerting.receivers.is_empty() {
            return Ok(None);
        }
        let dir = state_dir(config)?;
        let (outbox, saved) = open(dir.join(DB_FILE), true).await?;
        let engine = match saved {
            Some(json) => match serde_json::from_str::<EngineSnapshot>(&json) {
                Ok(snapshot) => Engine::restore(snapshot),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the saved alert state; starting fresh");
                    Engine::new()
                }
            },
            None => Engine::new(),
        };
        let dispatcher = Dispatcher::start(outbox.clone(), receivers(config), stop.clone())
            .map_err(|e| describe(&e))?;
        tracing::info!(state_dir = %dir.display(), receivers = config.alerting.receivers.len(), "alerting active");
        Ok(Some(Alerting {
            engine,
            outbox,
            dispatcher,
            pending: Vec::new(),
            flush_at: None,
        }))
    }

    /// Feeds one outcome to the state machine.
    pub fn observe(&mut self, outcome: &Outcome, config: &Config) {
        let Some(info) = pair_info(config, outcome) else {
            return;
        };
        let notes = self.engine.observe(outcome, &info, Utc::now());
        self.add(notes, config);
    }

    /// Time-driven work: repeats, and committing a group whose window
    /// closed.
    pub async fn tick(&mut self, config: &Config) {
        let notes = self.engine.tick(Utc::now());
        self.add(notes, config);
        if self.flush_at.is_some_and(|t| Instant::now() >= t) {
            self.flush(config).await;
        }
    }

    /// Drops state of pairs no longer configured (resolving their alerts).
    pub fn retain(&mut self, config: &Config) {
        let notes = self.engine.retain(
            |p, e| {
                config
                    .probes
                    .iter()
                    .any(|probe| probe.name == p && probe.environments.iter().any(|x| x == e))
            },
            Utc::now(),
        );
        self.add(notes, config);
    }

    fn add(&mut self, notes: Vec<Notification>, config: &Config) {
        if notes.is_empty() {
            return;
        }
        self.pending.extend(notes);
        if self.flush_at.is_none() {
            self.flush_at = Some(Instant::now() + config.alerting.group_wait);
        }
    }

    /// Commits the open group: one batch per receiver, plus the engine
    /// snapshot, in one transaction; then wakes the workers.
    async fn flush(&mut self, config: &Config) {
        self.flush_at = None;
        let groups = group(config, std::mem::take(&mut self.pending));
        let snapshot = match serde_json::to_string(&self.engine.snapshot()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the alert state");
                return;
            }
        };
        let now = Utc::now();
        let committed = blocking(&self.outbox, move |o| {
            o.commit_group(&groups, STATE_KEY, &snapshot, now)
        })
        .await;
        match committed {
            Ok(()) => self.dispatcher.nudge(),
            Err(e) => {
                tracing::error!(error = %describe(&e), "cannot write notifications to the outbox");
            }
        }
    }

    /// The alert state of a pair, for metrics.
    pub fn state(&self, probe: &str, environment: &str) -> crate::alert::state::PairState {
        self.engine.state(probe, environment)
    }

    /// Delivery counters per receiver, and the outbox's pending depth and
    /// oldest pending notification per receiver, for metrics.
    pub async fn delivery(
        &self,
    ) -> (
        crate::alert::outbox::DispatchStats,
        Vec<crate::alert::outbox::ReceiverDepth>,
    ) {
        let depth = blocking(&self.outbox, Outbox::depth)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %describe(&e), "cannot read the outbox depth");
                Vec::new()
            });
        (self.dispatcher.stats(), depth)
    }

    /// Commits what is pending and stops delivery within `deadline`
    /// (undelivered notifications stay in the outbox for the next start).
    pub async fn shutdown(mut self, config: &Config, deadline: Duration) {
        if !self.pending.is_empty() {
            self.flush(config).await;
        }
        self.dispatcher.shutdown(deadline).await;
    }
}

/// What the state machine needs to know about the pair of `outcome`.
fn pair_info(config: &Config, outcome: &Outcome) -> Option<PairInfo> {
    let probe = config.probes.iter().find(|p| p.name == outcome.probe)?;
    let env = config.environments.get(&outcome.environment)?;
    let mut labels: BTreeMap<String, String> = env.labels.clone();
    labels.extend(probe.labels.clone());
    Some(PairInfo {
        severity: probe.severity,
        labels,
        tags: probe.tags.clone(),
        depends_on: probe.alert.depends_on.clone(),
        rules: probe.alert.rules.clone(),
    })
}

/// One batch per receiver, as the routes decide.
fn group(config: &Config, notes: Vec<Notification>) -> Vec<(Vec<String>, Vec<Notification>)> {
    let mut per_receiver: BTreeMap<String, Vec<Notification>> = BTreeMap::new();
    for n in notes {
        let receivers = receivers_for(
            &config.alerting.routes,
            &config.alerting.default_receivers,
            &n,
        );
        for r in receivers {
            if config.alerting.receivers.contains_key(&r) {
                per_receiver.entry(r).or_default().push(n.clone());
            }
        }
    }
    per_receiver
        .into_iter()
        .map(|(r, batch)| (vec![r], batch))
        .collect()
}

/// What `--once --alert` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnceAlerts {
    pub notifications: usize,
    /// Deliveries still pending when the wait ended (a daemon sharing the
    /// state directory delivers them later).
    pub pending: u64,
}

/// `--once --alert`: a one-shot run has no history, so every bad run fires
/// at once (degraded runs warn) and nothing resolves or repeats. The
/// notifications go through the same routes and durable outbox as the
/// daemon's, and this waits up to `wait` for their delivery.
pub async fn send_once(
    config: &Config,
    outcomes: &[Outcome],
    wait: Duration,
) -> Result<OnceAlerts, String> {
    if config.alerting.receivers.is_empty() {
        return Err("--alert needs receivers in [alerting]".into());
    }
    let dir = state_dir(config)?;
    let (outbox, _) = open(dir.join(DB_FILE), false).await?;
    let mut engine = Engine::new();
    let now = Utc::now();
    let mut notes = Vec::new();
    for o in outcomes {
        let Some(mut info) = pair_info(config, o) else {
            continue;
        };
        info.rules.fire = FireRule::Consecutive(1);
        info.rules.repeat_interval = None;
        notes.extend(engine.observe(o, &info, now));
    }
    let notifications = notes.len();
    let groups = group(config, notes);
    blocking(&outbox, move |o| {
        groups
            .iter()
            .try_for_each(|(receivers, batch)| o.enqueue(receivers, batch, now))
    })
    .await
    .map_err(|e| describe(&e))?;
    let dispatcher = Dispatcher::start(outbox.clone(), receivers(config), CancellationToken::new())
        .map_err(|e| describe(&e))?;
    dispatcher.nudge();
    let deadline = Instant::now() + wait;
    let pending = loop {
        let pending: u64 = blocking(&outbox, Outbox::depth)
            .await
            .map_err(|e| describe(&e))?
            .iter()
            .map(|(_, n, _)| n)
            .sum();
        if pending == 0 || Instant::now() >= deadline {
            break pending;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    dispatcher.shutdown(Duration::from_secs(2)).await;
    Ok(OnceAlerts {
        notifications,
        pending,
    })
}

/// Opens the outbox at `path` (creating its directory) on the blocking
/// pool, with the saved engine snapshot when `load` is set.
async fn open(path: PathBuf, load: bool) -> Result<(Arc<Outbox>, Option<String>), String> {
    let opened = tokio::task::spawn_blocking(move || {
        let outbox = Outbox::open(&path)?;
        let saved = if load {
            outbox.load_state(STATE_KEY)?
        } else {
            None
        };
        Ok::<_, OutboxError>((Arc::new(outbox), saved))
    })
    .await
    .map_err(|e| describe(&OutboxError::Store(e)))?;
    opened.map_err(|e| describe(&e))
}

/// The configured receivers, built at load by their files.
fn receivers(config: &Config) -> Vec<SharedReceiver> {
    config
        .alerting
        .receivers
        .values()
        .map(|r| r.receiver.clone())
        .collect()
}

/// `[daemon] state_dir`, else systemd's `STATE_DIRECTORY` (already folded
/// into `state_dir` at load), else the user's state directory
/// (`$XDG_STATE_HOME/synthmon` or `~/.local/state/synthmon`).
fn state_dir(config: &Config) -> Result<PathBuf, String> {
    if let Some(d) = &config.daemon.state_dir {
        return Ok(d.clone());
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return Ok(Path::new(&x).join("synthmon"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(Path::new(&home).join(".local/state/synthmon")),
        None => Err("no state directory: set [daemon] state_dir".into()),
    }
}
