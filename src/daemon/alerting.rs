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
/// The most notifications held in memory while the outbox cannot be
/// written (disk full, read-only state directory); beyond it the oldest
/// are dropped, loudly. Days of flapping probes fit in it.
pub const MAX_UNWRITTEN: usize = 10_000;
/// The first wait before trying a failed outbox write again; it doubles up
/// to [`MAX_WRITE_RETRY`].
const FIRST_WRITE_RETRY: Duration = Duration::from_secs(1);
const MAX_WRITE_RETRY: Duration = Duration::from_secs(30);
/// How long delivered and dead rows stay in the outbox (for `status`
/// lookups and audits) before the hourly prune removes them; pending rows
/// always stay. The file then stays bounded by a week of notifications.
pub const KEEP_FINISHED_DAYS: i64 = 7;
/// How often finished rows are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub struct Alerting {
    engine: Engine,
    outbox: Arc<Outbox>,
    dispatcher: Dispatcher,
    pending: Vec<Notification>,
    /// When the open group must be committed.
    flush_at: Option<Instant>,
    /// Set while the outbox cannot be written: since when, and the wait
    /// before the next try.
    unwritable: Option<(Instant, Duration)>,
    /// Failed commits since start (for `synthmon_outbox_write_failures_total`).
    write_failures: u64,
    /// Notifications dropped because [`MAX_UNWRITTEN`] was reached.
    dropped: u64,
    /// When finished rows were last pruned (`None`: not yet).
    pruned_at: Option<Instant>,
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
            unwritable: None,
            write_failures: 0,
            dropped: 0,
            pruned_at: None,
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

    /// Sets the pairs whose alerts are held (maintenance, silences, the
    /// monitor offline); see `alert::state`'s module doc.
    pub fn set_held(&mut self, held: std::collections::BTreeSet<(String, String)>) {
        self.engine.set_held(held);
    }

    /// Holds or releases one pair, before its outcome is observed.
    pub fn hold(&mut self, probe: &str, environment: &str, held: bool) {
        self.engine.hold(probe, environment, held);
    }

    /// Feeds the connectivity self-check's verdict: the one "synthmon
    /// offline" alert (critical, repeated every 4 hours like a probe's by
    /// default) fires while the monitor is offline. It names this instance
    /// by its location, else its instance name, else `self_check`; its
    /// fingerprint is `fingerprint("synthmon", that name, monitor_offline)`.
    pub fn observe_offline(&mut self, offline: bool, detail: String, config: &Config) {
        let d = &config.daemon;
        let name = [d.location.as_str(), d.instance.as_str()]
            .into_iter()
            .find(|n| !n.is_empty())
            .unwrap_or("self_check")
            .to_owned();
        let mut labels = BTreeMap::new();
        if !d.location.is_empty() {
            labels.insert("location".to_owned(), d.location.clone());
        }
        let info = PairInfo {
            severity: crate::config::Severity::Critical,
            labels,
            tags: Vec::new(),
            depends_on: Vec::new(),
            rules: crate::alert::state::Rules::default(),
        };
        let notes = self
            .engine
            .observe_offline(offline, &name, detail, &info, Utc::now());
        self.add(notes, config);
    }

    /// Feeds one SLO's burn-rate findings: one alert per severity (page,
    /// ticket), firing while any rule of that severity fires.
    pub fn observe_burn(&mut self, status: &crate::history::slo::SloStatus, config: &Config) {
        let Some(probe) = config.probes.iter().find(|p| p.name == status.probe) else {
            return;
        };
        let Some(env) = config.environments.get(&status.environment) else {
            return;
        };
        let mut labels: BTreeMap<String, String> = env.labels.clone();
        labels.extend(probe.labels.clone());
        let info = PairInfo {
            severity: probe.severity,
            labels,
            tags: probe.tags.clone(),
            depends_on: Vec::new(),
            rules: probe.alert.rules.clone(),
        };
        let now = Utc::now();
        for (kind, severity) in [
            (crate::alert::AlertKind::SloPage, "page"),
            (crate::alert::AlertKind::SloTicket, "ticket"),
        ] {
            // A severity without rules (any more, after a reload) reports
            // not firing, so an alert it left open resolves.
            let rules: Vec<_> = status
                .rules
                .iter()
                .filter(|r| r.severity == severity)
                .collect();
            let firing = rules.iter().find(|r| r.firing);
            let shown = firing.copied().or_else(|| rules.first().copied());
            let detail = match shown {
                Some(r) => format!(
                    "the {} error budget of {} burns at {:.1}x over {} and {:.1}x over {} ({severity} at {}x; {:.1}% of the budget left)",
                    secs(status.window_seconds),
                    percent(status.objective),
                    r.long_rate,
                    secs(r.long_seconds),
                    r.short_rate,
                    secs(r.short_seconds),
                    r.factor,
                    status.budget_remaining * 100.0,
                ),
                None => format!("no {severity} rule is configured any more"),
            };
            let notes = self.engine.observe_burn(
                &crate::alert::state::BurnReport {
                    probe: &status.probe,
                    environment: &status.environment,
                    kind,
                    firing: firing.is_some(),
                    detail,
                    info: &info,
                },
                now,
            );
            self.add(notes, config);
        }
    }

    /// Time-driven work: repeats, and committing a group whose window
    /// closed.
    pub async fn tick(&mut self, config: &Config) {
        let notes = self.engine.tick(Utc::now());
        self.add(notes, config);
        if self.flush_at.is_some_and(|t| Instant::now() >= t) {
            self.flush(config).await;
        }
        if self.pruned_at.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            self.pruned_at = Some(Instant::now());
            self.prune(Utc::now()).await;
        }
    }

    /// Removes delivered and dead rows finished more than
    /// [`KEEP_FINISHED_DAYS`] before `now`, so the outbox file does not grow
    /// without end; returns how many went. A failure is logged and retried
    /// at the next prune.
    pub async fn prune(&self, now: chrono::DateTime<Utc>) -> u64 {
        let before = now - chrono::Duration::days(KEEP_FINISHED_DAYS);
        match blocking(&self.outbox, move |o| o.prune(before)).await {
            Ok(removed) => {
                if removed > 0 {
                    tracing::debug!(removed, "outbox: pruned finished deliveries");
                }
                removed
            }
            Err(e) => {
                tracing::warn!(error = %describe(&e), "cannot prune the outbox");
                0
            }
        }
    }

    /// Drops state of pairs no longer configured (resolving their alerts).
    pub fn retain(&mut self, config: &Config) {
        let burns = self.engine.retain_burns(
            |p, e| {
                config.probes.iter().any(|probe| {
                    probe.name == p
                        && probe.slo.is_some()
                        && probe.environments.iter().any(|x| x == e)
                })
            },
            Utc::now(),
        );
        self.add(burns, config);
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

    fn add(&mut self, mut notes: Vec<Notification>, config: &Config) {
        if notes.is_empty() {
            return;
        }
        if config.daemon.artifacts.enabled {
            for n in &mut notes {
                n.artifact_url = artifact_url(config, n);
            }
        }
        self.pending.extend(notes);
        if self.flush_at.is_none() {
            self.flush_at = Some(Instant::now() + config.alerting.group_wait);
        }
    }

    /// Commits the open group: one batch per receiver, plus the engine
    /// snapshot, in one transaction; then wakes the workers. When the
    /// outbox cannot be written (disk full, read-only state directory) the
    /// notifications stay in memory and the commit is tried again with a
    /// growing pause, so nothing is lost while the process lives; the first
    /// failure and the recovery are logged, and metrics show both.
    async fn flush(&mut self, config: &Config) {
        self.flush_at = None;
        let notes = std::mem::take(&mut self.pending);
        let groups = group(config, notes.clone());
        let snapshot = match serde_json::to_string(&self.engine.snapshot()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the alert state");
                self.keep_unwritten(notes);
                return;
            }
        };
        let now = Utc::now();
        let committed = blocking(&self.outbox, move |o| {
            o.commit_group(&groups, STATE_KEY, &snapshot, now)
        })
        .await;
        match committed {
            Ok(()) => {
                if let Some((since, _)) = self.unwritable.take() {
                    tracing::warn!(
                        written = notes.len(),
                        unwritable_for = ?since.elapsed(),
                        "outbox writable again: notifications held in memory are written"
                    );
                }
                self.dispatcher.nudge();
            }
            Err(e) => {
                self.write_failures += 1;
                let retry = match self.unwritable {
                    None => {
                        tracing::error!(
                            error = %describe(&e),
                            held = notes.len(),
                            "cannot write notifications to the outbox (disk full or state \
                             directory read-only?); holding them in memory and retrying"
                        );
                        self.unwritable = Some((Instant::now(), FIRST_WRITE_RETRY));
                        FIRST_WRITE_RETRY
                    }
                    Some((since, wait)) => {
                        tracing::debug!(error = %describe(&e), held = notes.len(), "outbox still not writable");
                        let next = (wait * 2).min(MAX_WRITE_RETRY);
                        self.unwritable = Some((since, next));
                        next
                    }
                };
                self.keep_unwritten(notes);
                self.flush_at = Some(Instant::now() + retry);
            }
        }
    }

    /// Puts `notes` (older) back in front of anything pending, within
    /// [`MAX_UNWRITTEN`].
    fn keep_unwritten(&mut self, mut notes: Vec<Notification>) {
        notes.append(&mut self.pending);
        if notes.len() > MAX_UNWRITTEN {
            let excess = notes.len() - MAX_UNWRITTEN;
            notes.drain(..excess);
            self.dropped += excess as u64;
            tracing::error!(
                dropped = excess,
                held = MAX_UNWRITTEN,
                "outbox unwritable for long: dropped the oldest notifications held in memory"
            );
        }
        self.pending = notes;
        if self.flush_at.is_none() {
            self.flush_at = Some(Instant::now() + FIRST_WRITE_RETRY);
        }
    }

    /// Failed outbox commits since start, notifications held in memory
    /// waiting for the outbox, and notifications dropped past
    /// [`MAX_UNWRITTEN`], for metrics.
    pub fn store_health(&self) -> (u64, u64, u64) {
        let held = if self.unwritable.is_some() {
            self.pending.len() as u64
        } else {
            0
        };
        (self.write_failures, held, self.dropped)
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
            if self.unwritable.is_some() {
                tracing::error!(
                    lost = self.pending.len(),
                    "stopping while the outbox cannot be written: these notifications are lost"
                );
            }
        }
        self.dispatcher.shutdown(deadline).await;
    }
}

/// Where the artifact of the run a notification tells of is served, when
/// that run failed (a failing or degraded alert's last bad run; never a
/// resolve's good run or an SLO's burn): under `[daemon] public_url`, else
/// the API path. Whether it is still kept when someone follows the link
/// depends on `[daemon.artifacts] keep`.
fn artifact_url(config: &Config, n: &Notification) -> Option<String> {
    use crate::alert::AlertKind;
    let run_failed = n.reason.is_some() && !n.run_id.is_empty();
    if !run_failed || !matches!(n.kind, AlertKind::Failing | AlertKind::Degraded) {
        return None;
    }
    let path = crate::history::artifacts::api_path(&n.probe, &n.environment, &n.run_id);
    Some(format!(
        "{}{path}",
        config.daemon.public_url.as_deref().unwrap_or_default()
    ))
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

/// A window in seconds as the config writes it (`30d`, `1h`, `5m`).
fn secs(seconds: u64) -> String {
    crate::slo::format_window(Duration::from_secs(seconds))
}

/// `0.999` → `99.9%`.
fn percent(ratio: f64) -> String {
    let p = format!("{:.6}", ratio * 100.0);
    format!("{}%", p.trim_end_matches('0').trim_end_matches('.'))
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
///
/// `artifacts`: each failed run's artifact file by run id (`--artifacts
/// DIR`), named in its notifications.
pub async fn send_once(
    config: &Config,
    outcomes: &[Outcome],
    artifacts: &BTreeMap<String, PathBuf>,
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
    for n in &mut notes {
        if n.reason.is_some() {
            n.artifact_url = artifacts.get(&n.run_id).map(|p| p.display().to_string());
        }
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
pub(super) fn state_dir(config: &Config) -> Result<PathBuf, String> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::LoadOptions;
    use crate::outcome::FailureReason;
    use crate::tagging::RunIds;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A webhook receiver on 127.0.0.1 that answers 200 to every request
    /// and keeps what it was sent.
    async fn webhook() -> (std::net::SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let count = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut seen = Vec::new();
                    // Headers, then the body by Content-Length.
                    loop {
                        let Ok(n) = conn.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&seen).to_string();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = text[..end]
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            if seen.len() >= end + 4 + length {
                                break;
                            }
                        }
                    }
                    count
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&seen).into_owned());
                    let _ = conn
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        (addr, hits)
    }

    fn config(dir: &Path, hook: std::net::SocketAddr) -> Config {
        std::fs::create_dir_all(dir.join("probes")).unwrap();
        std::fs::write(
            dir.join("config.toml"),
            format!(
                "[daemon]\nstate_dir = \"{}\"\n\n[environments.e]\nbase_url = \"http://127.0.0.1:9\"\n\n\
                 [alerting]\ngroup_wait = \"0s\"\n\n[alerting.receivers.hook]\ntype = \"webhook\"\nurl = \"http://{hook}/\"\n\n\
                 [[alerting.routes]]\nreceivers = [\"hook\"]\n",
                dir.join("state").display()
            ),
        )
        .unwrap();
        for name in ["a", "b", "c"] {
            std::fs::write(
                dir.join(format!("probes/{name}.toml")),
                format!("name = \"{name}\"\nenvironments = [\"e\"]\n\n[alert]\nfire_after = 1\n\n[http]\nurl = \"/\"\n"),
            )
            .unwrap();
        }
        crate::plan::load(&LoadOptions {
            config_path: Some(dir.join("config.toml")),
            overrides: vec![],
        })
        .unwrap()
    }

    fn failed(probe: &str) -> Outcome {
        let mut o = Outcome::new(probe, "e", "http", &RunIds::generate());
        o.fail(FailureReason::Status, "503");
        o
    }

    async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn an_unwritable_outbox_loses_no_notification_and_recovers_when_writable_again() {
        let dir = tempfile::tempdir().unwrap();
        let (hook, hits) = webhook().await;
        let config = config(dir.path(), hook);
        let stop = CancellationToken::new();
        let mut alerting = Alerting::start(&config, &stop).await.unwrap().unwrap();

        // The state directory turns read-only (or the disk fills up).
        alerting.outbox.refuse_writes(true).unwrap();
        alerting.observe(&failed("a"), &config);
        alerting.tick(&config).await;
        let (failures, held, dropped) = alerting.store_health();
        assert_eq!((failures, held, dropped), (1, 1, 0));
        // More notifications while it stays unwritable: held too, in order.
        alerting.observe(&failed("b"), &config);
        tokio::time::sleep(FIRST_WRITE_RETRY + Duration::from_millis(100)).await;
        alerting.tick(&config).await;
        let (failures, held, _) = alerting.store_health();
        assert_eq!((failures, held), (2, 2));
        assert!(
            hits.lock().unwrap().is_empty(),
            "nothing is sent before it is stored"
        );

        // Space returns: the next retry writes both, and they are delivered.
        alerting.outbox.refuse_writes(false).unwrap();
        let deadline = Instant::now() + MAX_WRITE_RETRY + Duration::from_secs(1);
        while alerting.store_health().1 > 0 {
            assert!(Instant::now() < deadline, "never written");
            tokio::time::sleep(Duration::from_millis(100)).await;
            alerting.tick(&config).await;
        }
        assert_eq!(alerting.store_health(), (2, 0, 0));
        // One group, one batch: both notifications in one request.
        wait_for("the delivery", || !hits.lock().unwrap().is_empty()).await;
        let sent = hits.lock().unwrap().join("\n");
        for probe in ["\"probe\":\"a\"", "\"probe\":\"b\""] {
            assert!(sent.contains(probe), "{probe} missing from {sent}");
        }
        alerting.shutdown(&config, Duration::from_secs(2)).await;
    }

    #[tokio::test]
    async fn finished_deliveries_are_pruned_after_a_week_and_pending_ones_never() {
        let dir = tempfile::tempdir().unwrap();
        let (hook, _) = webhook().await;
        let config = config(dir.path(), hook);
        let stop = CancellationToken::new();
        let alerting = Alerting::start(&config, &stop).await.unwrap().unwrap();
        // Stop delivery so the rows stay as this test leaves them.
        stop.cancel();
        let now = Utc::now();
        let note = |probe: &str| {
            let info = pair_info(&config, &failed(probe)).unwrap();
            Engine::new().observe(&failed(probe), &info, now).remove(0)
        };
        let receivers = vec!["hook".to_owned()];
        for probe in ["a", "b"] {
            let (receivers, batch) = (receivers.clone(), vec![note(probe)]);
            blocking(&alerting.outbox, move |o| {
                o.enqueue(&receivers, &batch, now)
            })
            .await
            .unwrap();
        }
        let due = blocking(&alerting.outbox, move |o| o.due("hook", now, 10))
            .await
            .unwrap();
        assert_eq!(due.len(), 2);
        // One delivered eight days ago, one an hour ago; a third stays pending.
        let (old, recent) = (due[0].id, due[1].id);
        let eight_days = now - chrono::Duration::days(8);
        let an_hour = now - chrono::Duration::hours(1);
        blocking(&alerting.outbox, move |o| {
            o.mark_delivered(old, eight_days)?;
            o.mark_delivered(recent, an_hour)
        })
        .await
        .unwrap();
        let (receivers, batch) = (receivers.clone(), vec![note("c")]);
        blocking(&alerting.outbox, move |o| {
            o.enqueue(&receivers, &batch, eight_days)
        })
        .await
        .unwrap();
        assert_eq!(alerting.prune(now).await, 1);
        assert_eq!(alerting.prune(now).await, 0);
        let pending: u64 = blocking(&alerting.outbox, Outbox::depth)
            .await
            .unwrap()
            .iter()
            .map(|(_, n, _)| n)
            .sum();
        assert_eq!(pending, 1, "the old pending row stays");
        alerting.shutdown(&config, Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn the_memory_hold_of_an_unwritable_outbox_is_bounded_and_counts_what_it_drops() {
        let dir = tempfile::tempdir().unwrap();
        let (hook, _) = webhook().await;
        let config = config(dir.path(), hook);
        let stop = CancellationToken::new();
        let mut alerting = Alerting::start(&config, &stop).await.unwrap().unwrap();
        alerting.outbox.refuse_writes(true).unwrap();
        let extra = 5;
        let notes: Vec<Notification> = (0..MAX_UNWRITTEN + extra)
            .map(|_| {
                let mut engine = Engine::new();
                let info = pair_info(&config, &failed("a")).unwrap();
                engine.observe(&failed("a"), &info, Utc::now()).remove(0)
            })
            .collect();
        alerting.keep_unwritten(notes);
        alerting.unwritable = Some((Instant::now(), FIRST_WRITE_RETRY));
        assert_eq!(
            alerting.store_health(),
            (0, MAX_UNWRITTEN as u64, extra as u64)
        );
        alerting.shutdown(&config, Duration::from_secs(1)).await;
    }
}
