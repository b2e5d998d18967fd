//! The long-running daemon: the scheduler loop, the HTTP listener, reloads
//! (SIGHUP, changed files, or a call), the systemd protocol, and a bounded
//! drain on shutdown.
//!
//! Lifecycle: load (refuse to start on a bad config) → bind the listener →
//! arm schedules → `READY=1` → run until the shutdown future resolves →
//! `STOPPING=1` → stop scheduling → wait for in-flight runs up to
//! `daemon.drain_timeout` → cancel what is left → exit. Only this module
//! spawns long-lived tasks, and each has an owner that waits for it.

pub mod alerting;
pub mod api;
mod gzip;
pub mod history;
pub mod holds;
pub mod listener;
pub mod notify;
pub mod page;
pub mod pipeline;
pub mod scheduler;
pub mod self_check;
pub mod silences;
mod watch;

use crate::config::{self, Diagnostics, LoadOptions};
use crate::outcome::Outcome;
use crate::plan::{self, Config};
use crate::sandbox::Sandbox;
use crate::telemetry::metrics::Metrics;
use notify::Notifier;
use scheduler::{Command, Scheduler};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How the daemon runs, beyond its config file.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub load: LoadOptions,
    /// systemd's notification socket (`NOTIFY_SOCKET`).
    pub notify_socket: Option<PathBuf>,
    /// systemd's watchdog period (`WATCHDOG_USEC`); pinged at half of it,
    /// only while the scheduler loop ticks.
    pub watchdog: Option<Duration>,
    /// The scheduler loop's heartbeat period. `/healthz` fails once no
    /// heartbeat was seen for [`STALE_TICKS`] ticks.
    pub tick: Duration,
    /// How often the config and probe files are checked for changes
    /// (covers Kubernetes' ConfigMap `..data` symlink swap); `None` turns
    /// watching off.
    pub watch_interval: Option<Duration>,
    /// Reload on SIGHUP.
    pub reload_on_sighup: bool,
    /// `--shard`: the pairs this instance runs, at start and after every
    /// reload ([`Config::retain_shard`]).
    pub shard: plan::Shard,
}

/// Ticks without a heartbeat before `/healthz` turns unhealthy.
pub const STALE_TICKS: u32 = 5;

impl DaemonOptions {
    /// The defaults, with systemd's settings from the environment.
    pub fn from_env(load: LoadOptions) -> DaemonOptions {
        DaemonOptions {
            load,
            notify_socket: Notifier::socket_from_env(),
            watchdog: Notifier::watchdog_from_env(),
            tick: Duration::from_secs(1),
            watch_interval: Some(Duration::from_secs(2)),
            reload_on_sighup: true,
            shard: plan::Shard::ALL,
        }
    }
}

/// Counters of what the scheduler did (exported as metrics later).
#[derive(Debug, Default)]
pub struct Stats {
    pub runs: AtomicU64,
    pub skipped_overlap: AtomicU64,
    pub missed: AtomicU64,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
}

/// A copy of [`Stats`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub runs: u64,
    pub skipped_overlap: u64,
    pub missed: u64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
}

/// State shared by the daemon's tasks.
pub struct Shared {
    heartbeat: std::sync::Mutex<Instant>,
    tick: Duration,
    ready: AtomicBool,
    pub stats: Stats,
    pub metrics: Arc<Metrics>,
    /// Spans the trace exporter dropped, for `/metrics`.
    pub spans_dropped: Arc<AtomicU64>,
    /// The built-in sandbox, started when an environment first needs it and
    /// stopped after the drain.
    sandbox: tokio::sync::Mutex<Option<Sandbox>>,
    /// Queries on the run history (the API); `None` when it is off or
    /// could not be opened.
    pub history: Option<Arc<crate::history::Reader>>,
    /// The SLO status of every pair with an SLO, as last computed.
    pub slo: std::sync::Mutex<Vec<crate::history::slo::SloStatus>>,
    /// The config in effect (the API's probes and environments); replaced
    /// when a reload is applied.
    pub config: std::sync::RwLock<Arc<Config>>,
    /// What each pair's latest run kept (`prev` of its next run).
    kept: std::sync::Mutex<Kept>,
    /// Maintenance windows, silences and the self-check's verdict: what
    /// holds alerts right now.
    pub holds: holds::Holds,
}

/// Kept values per (probe, environment).
pub type Kept = std::collections::HashMap<
    (String, String),
    Arc<std::collections::BTreeMap<String, serde_json::Value>>,
>;

impl Shared {
    /// What the latest run of a pair kept.
    pub fn kept(
        &self,
        probe: &str,
        environment: &str,
    ) -> Option<Arc<std::collections::BTreeMap<String, serde_json::Value>>> {
        self.kept
            .lock()
            .ok()?
            .get(&(probe.to_owned(), environment.to_owned()))
            .cloned()
    }

    /// Records what a run kept (merged over what earlier runs kept).
    pub fn set_kept(
        &self,
        probe: &str,
        environment: &str,
        values: &std::collections::BTreeMap<String, serde_json::Value>,
    ) {
        if values.is_empty() {
            return;
        }
        if let Ok(mut all) = self.kept.lock() {
            let key = (probe.to_owned(), environment.to_owned());
            let mut merged = all.get(&key).map(|m| (**m).clone()).unwrap_or_default();
            merged.extend(values.iter().map(|(k, v)| (k.clone(), v.clone())));
            all.insert(key, Arc::new(merged));
        }
    }

    /// The config in effect.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn beat(&self, now: Instant) {
        if let Ok(mut h) = self.heartbeat.lock() {
            *h = now;
        }
    }

    /// Alive: the scheduler loop ticked within the last few ticks.
    pub fn healthy(&self) -> bool {
        let last = self.heartbeat.lock().map(|h| *h).ok();
        last.is_some_and(|t| t.elapsed() < self.tick * STALE_TICKS)
    }

    fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// How long start-up waits for the scheduler to arm the first schedules.
const ARM_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the daemon could not start. The cause, where there is one, is the
/// [`source`](std::error::Error::source), not part of the message: print
/// the chain (as `cli` does, or with [`crate::net::error::describe`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config did not load: every diagnostic, located.
    #[error("invalid configuration:\n{0}")]
    Config(Diagnostics),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// `[telemetry]` or the `OTEL_*` variables do not describe an exporter.
    #[error("cannot set up trace export: {0}")]
    Traces(String),
    /// The state directory, the outbox or the delivery workers.
    #[error("cannot set up alerting: {0}")]
    Alerting(String),
    #[error(transparent)]
    Scheduler(#[from] scheduler::Error),
    #[error("the scheduler did not arm its schedules within {0:?}")]
    NotArmed(Duration),
}

/// A running daemon.
pub struct Daemon {
    addr: SocketAddr,
    shared: Arc<Shared>,
    notifier: Notifier,
    drain: Duration,
    stop: CancellationToken,
    tasks: TaskTracker,
    runs: TaskTracker,
    run_cancel: CancellationToken,
    commands: mpsc::Sender<Command>,
    reloads: mpsc::Sender<()>,
}

impl Daemon {
    /// Loads the config, binds the listener, arms the schedules and tells
    /// systemd it is ready. `outcomes`, if given, receives every run's
    /// outcome (dropped when full).
    pub async fn start(
        opts: DaemonOptions,
        outcomes: Option<mpsc::Sender<Outcome>>,
    ) -> Result<Daemon, Error> {
        // Take SIGHUP over before anything slow: its default action would
        // kill the process if it came during start-up.
        let hup = if opts.reload_on_sighup {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGHUP"))
                .ok()
        } else {
            None
        };
        let config = Arc::new(load(&opts.load, opts.shard).await.map_err(Error::Config)?);
        let watcher = watch::Watcher::new(&config).await;
        let traces = crate::telemetry::traces::TraceExporter::start(
            &config.telemetry,
            crate::telemetry::traces::Resource {
                instance: config.daemon.instance.clone(),
                location: config.daemon.location.clone(),
            },
            &|k| std::env::var(k).ok(),
        )
        .map_err(Error::Traces)?;
        let alerting = alerting::Alerting::start(&config, &CancellationToken::new())
            .await
            .map_err(Error::Alerting)?;
        let listen = config.daemon.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| Error::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: listen,
            source,
        })?;
        let history = history::open(&config).await;
        // What the pairs kept and where they stood, read back at start.
        let (kept, states) = match &history {
            Some(h) => {
                let reader = h.reader();
                tokio::task::spawn_blocking(move || {
                    let kept: Kept = reader
                        .all_kept()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(pair, values)| (pair, Arc::new(values)))
                        .collect();
                    (kept, reader.last_states().unwrap_or_default())
                })
                .await
                .unwrap_or_default()
            }
            None => Default::default(),
        };
        let holds = match (&history, state_dir(&config)) {
            (Some(_), Ok(dir)) => holds::Holds::open(Some(&dir)).await,
            _ => holds::Holds::open(None).await,
        };
        let shared = Arc::new(Shared {
            heartbeat: std::sync::Mutex::new(Instant::now()),
            tick: opts.tick,
            ready: AtomicBool::new(false),
            stats: Stats::default(),
            metrics: Arc::new(Metrics::with_shard(
                &config.daemon,
                &config.probes,
                config.shard.is_sharded().then(|| config.shard.to_string()),
            )),
            spans_dropped: Arc::new(AtomicU64::new(0)),
            sandbox: tokio::sync::Mutex::new(None),
            history: history.as_ref().map(|h| h.reader()),
            slo: std::sync::Mutex::new(Vec::new()),
            config: std::sync::RwLock::new(config.clone()),
            kept: std::sync::Mutex::new(kept),
            holds,
        });
        let notifier = Notifier::new(opts.notify_socket.clone());
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let runs = TaskTracker::new();
        let run_cancel = CancellationToken::new();
        let (commands, command_rx) = mpsc::channel(16);
        let (reloads, reload_rx) = mpsc::channel(4);
        let (events, event_rx) = mpsc::channel(pipeline::QUEUE);

        self_check::first(&shared).await;
        let scheduler = Scheduler::new(
            shared.clone(),
            config.clone(),
            runs.clone(),
            run_cancel.clone(),
            events.clone(),
            shared.metrics.clone(),
        )
        .await?;
        tasks.spawn(pipeline::run(
            event_rx,
            config.clone(),
            pipeline::Sinks {
                metrics: shared.metrics.clone(),
                traces,
                spans_dropped: shared.spans_dropped.clone(),
                alerting,
                listener: outcomes,
                history: history::HistoryStage::new(history, config.daemon.history.enabled, states)
                    .with_artifacts(history::open_artifacts(&config)),
                shared: shared.clone(),
            },
        ));
        tasks.spawn(upkeep(shared.metrics.clone(), stop.clone()));
        tasks.spawn(self_check::run(shared.clone(), stop.clone()));
        tasks.spawn(holds::upkeep(shared.clone(), stop.clone()));
        tasks.spawn(scheduler.run(command_rx, stop.clone()));
        tasks.spawn(listener::serve(listener, shared.clone(), stop.clone()));
        tasks.spawn(reloader(
            opts.clone(),
            (config.clone(), watcher, hup),
            shared.clone(),
            notifier.clone(),
            (commands.clone(), events),
            reload_rx,
            stop.clone(),
        ));
        if let (Some(period), true) = (opts.watchdog, notifier.enabled()) {
            tasks.spawn(watchdog(
                period / 2,
                shared.clone(),
                notifier.clone(),
                stop.clone(),
            ));
        }

        // Ready once the first schedules are armed.
        let armed = async {
            while !shared.is_ready() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        if tokio::time::timeout(ARM_TIMEOUT, armed).await.is_err() {
            return Err(Error::NotArmed(ARM_TIMEOUT));
        }
        notifier.notify("READY=1");
        tracing::info!(
            listen = %addr,
            probes = config.probes.len(),
            environments = config.environments.len(),
            pairs = config.pairs(),
            shard = %config.shard,
            async_workers = tokio::runtime::Handle::current().metrics().num_workers(),
            "synthmon daemon started"
        );
        Ok(Daemon {
            addr,
            shared,
            notifier,
            drain: config.daemon.drain_timeout,
            stop,
            tasks,
            runs,
            run_cancel,
            commands,
            reloads,
        })
    }

    /// The address the listener is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.shared.stats;
        StatsSnapshot {
            runs: s.runs.load(Ordering::Relaxed),
            skipped_overlap: s.skipped_overlap.load(Ordering::Relaxed),
            missed: s.missed.load(Ordering::Relaxed),
            reloads_ok: s.reloads_ok.load(Ordering::Relaxed),
            reloads_failed: s.reloads_failed.load(Ordering::Relaxed),
        }
    }

    pub fn healthy(&self) -> bool {
        self.shared.healthy()
    }

    /// Asks for a reload, as SIGHUP does.
    pub async fn reload(&self) {
        let _ = self.reloads.send(()).await;
    }

    /// Freezes the scheduler loop for `d` (for tests of health checking).
    #[doc(hidden)]
    pub async fn stall_scheduler(&self, d: Duration) {
        let _ = self.commands.send(Command::Stall(d)).await;
    }

    /// Stops scheduling, lets in-flight runs finish within the drain
    /// deadline, cancels the rest and waits for every task.
    pub async fn shutdown(self) {
        self.notifier.notify("STOPPING=1");
        tracing::info!(
            in_flight = self.runs.len(),
            "shutting down: draining in-flight runs"
        );
        self.stop.cancel();
        self.runs.close();
        if tokio::time::timeout(self.drain, self.runs.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                cancelled = self.runs.len(),
                drain_timeout = ?self.drain,
                "drain deadline passed; cancelling the runs still in flight"
            );
            self.run_cancel.cancel();
            // Cancelled runs return at once, except flows, which still run
            // their teardown within its own (bounded) budget.
            let grace = crate::probe::flow::MAX_TEARDOWN_TIMEOUT + Duration::from_secs(2);
            let _ = tokio::time::timeout(grace, self.runs.wait()).await;
        }
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some daemon tasks did not stop within 5s");
        }
        if let Some(sandbox) = self.shared.sandbox.lock().await.take() {
            sandbox.shutdown().await;
        }
        tracing::info!("synthmon daemon stopped");
    }
}

/// The state directory (the outbox, the history): `[daemon] state_dir`,
/// else `$XDG_STATE_HOME/synthmon`, else `~/.local/state/synthmon`.
pub fn state_dir(config: &Config) -> Result<PathBuf, String> {
    alerting::state_dir(config)
}

/// Runs the daemon until `shutdown` resolves, then drains and returns.
pub async fn run(opts: DaemonOptions, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let daemon = Daemon::start(opts, None).await?;
    shutdown.await;
    daemon.shutdown().await;
    Ok(())
}

/// Loads the config off the async threads (it reads files and builds TLS
/// settings), narrowed to `shard`'s pairs.
async fn load(opts: &LoadOptions, shard: plan::Shard) -> Result<Config, Diagnostics> {
    let opts = opts.clone();
    let load = move || {
        plan::load(&opts).map(|mut c| {
            c.retain_shard(shard);
            c
        })
    };
    match tokio::task::spawn_blocking(load).await {
        Ok(result) => result,
        Err(e) => Err(Diagnostics(vec![config::Diagnostic::new(
            "config",
            format!("the config loader panicked: {e}"),
        )])),
    }
}

/// Reloads on SIGHUP, on a call, or when the watched files change. A config
/// that fails validation is rejected whole: the running one stays, and
/// every error is logged.
async fn reloader(
    opts: DaemonOptions,
    (initial, mut watcher, mut hup): (
        Arc<Config>,
        watch::Watcher,
        Option<tokio::signal::unix::Signal>,
    ),
    shared: Arc<Shared>,
    notifier: Notifier,
    (commands, events): (mpsc::Sender<Command>, mpsc::Sender<pipeline::Event>),
    mut calls: mpsc::Receiver<()>,
    stop: CancellationToken,
) {
    let poll = opts.watch_interval.unwrap_or(Duration::from_secs(3600));
    let mut current = initial;
    loop {
        let cause = tokio::select! {
            () = stop.cancelled() => return,
            Some(()) = calls.recv() => "request",
            Some(()) = async { match hup.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => "SIGHUP",
            () = tokio::time::sleep(poll), if opts.watch_interval.is_some() => {
                if !watcher.changed().await { continue }
                "files changed"
            }
        };
        notifier.reloading();
        // The files' state before reading them: a change that lands during
        // the load is seen by the next poll.
        let before = watcher.fingerprint().await;
        match load(&opts.load, opts.shard).await {
            Ok(config) => {
                if config.daemon.listen != current.daemon.listen {
                    tracing::warn!(
                        running = %current.daemon.listen,
                        configured = %config.daemon.listen,
                        "daemon.listen changes take effect on restart"
                    );
                }
                let config = Arc::new(config);
                // The scheduler switches all or nothing; only a config it
                // armed reaches the pipeline and becomes the current one.
                let (done, applied) = tokio::sync::oneshot::channel();
                if commands
                    .send(Command::Apply(config.clone(), Some(done)))
                    .await
                    .is_err()
                {
                    return;
                }
                let Ok(applied) = applied.await else { return };
                match applied {
                    Ok(()) => {
                        watcher = watch::Watcher::with_seen(&config, before);
                        current = config.clone();
                        *shared
                            .config
                            .write()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = config.clone();
                        if events.send(pipeline::Event::Config(config)).await.is_err() {
                            return;
                        }
                        shared.stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
                        shared.metrics.reload(true);
                        tracing::info!(
                            cause,
                            probes = current.probes.len(),
                            pairs = current.pairs(),
                            "config reloaded"
                        );
                    }
                    Err(e) => {
                        watcher.set_seen(before);
                        shared.stats.reloads_failed.fetch_add(1, Ordering::Relaxed);
                        shared.metrics.reload(false);
                        tracing::error!(
                            cause,
                            error = %crate::net::error::describe(&e),
                            "config reload rejected: the new schedules could not be armed; \
                             the running config stays in effect, every schedule unchanged"
                        );
                    }
                }
            }
            Err(diags) => {
                // Remember what was read so a broken file is reported once,
                // not every poll.
                watcher.set_seen(before);
                shared.stats.reloads_failed.fetch_add(1, Ordering::Relaxed);
                shared.metrics.reload(false);
                for d in diags.iter() {
                    tracing::error!(error = %d, "config error");
                }
                tracing::error!(
                    cause,
                    errors = diags.len(),
                    "config reload rejected; the running config stays in effect"
                );
            }
        }
        notifier.notify("READY=1");
    }
}

/// Drains histogram samples into buckets every few seconds, so memory stays
/// flat however long nobody scrapes.
async fn upkeep(metrics: Arc<Metrics>, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => metrics.upkeep(),
        }
    }
}

/// Pings systemd's watchdog, but only while the scheduler loop is alive: a
/// frozen loop stops the pings and gets the process restarted.
async fn watchdog(
    every: Duration,
    shared: Arc<Shared>,
    notifier: Notifier,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {
                if shared.healthy() {
                    notifier.notify("WATCHDOG=1");
                } else {
                    tracing::error!("scheduler loop stalled: withholding the systemd watchdog ping");
                }
            }
        }
    }
}
