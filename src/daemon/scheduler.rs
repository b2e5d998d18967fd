//! The scheduler loop: one task that knows every (probe, environment) pair,
//! wakes when the next one is due (or at least every tick, which is its
//! heartbeat), and starts runs.
//!
//! Interval pairs are timed here on tokio's clock (so paused-clock tests are
//! exact); cron pairs are timed by tokio-cron-scheduler, whose jobs only
//! send "fire" messages back into this loop, so both kinds share one path
//! for overlap skipping, the concurrency cap and run ownership.
//!
//! Rules: a pair never has two runs at once (a due run while one is in
//! flight is skipped and counted); missed slots after a stall are skipped,
//! not fired in a burst; every run is owned by the `runs` tracker and
//! cancellable through `run_cancel`.

use super::Shared;
use crate::config::{BaseUrl, Config, Schedule};
use crate::outcome::Outcome;
use crate::probe::{self, RunContext};
use crate::sandbox::{Sandbox, SandboxOptions};
use crate::schedule::{IntervalClock, spread_offset};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Identifies a pair: (probe name, environment name).
pub type PairKey = (String, String);

/// Messages into the loop.
#[derive(Debug)]
pub enum Command {
    /// Switch to a new config (first load or reload).
    Apply(Arc<Config>),
    /// Hold the loop without ticking, as if it were frozen. For tests of
    /// the watchdog and `/healthz`.
    Stall(Duration),
}

/// Cron fire messages waiting for the loop; beyond this they are dropped
/// (and counted as missed).
const CRON_QUEUE: usize = 1024;

struct Entry {
    schedule: Schedule,
    /// Interval pairs: their slots.
    clock: Option<IntervalClock>,
    /// Cron pairs: the job in tokio-cron-scheduler.
    cron_job: Option<uuid::Uuid>,
    running: Arc<AtomicBool>,
    /// Bumped when the entry is re-created, so stale queue items are ignored.
    generation: u64,
}

pub struct Scheduler {
    shared: Arc<Shared>,
    config: Arc<Config>,
    entries: HashMap<PairKey, Entry>,
    queue: BinaryHeap<Reverse<(Instant, u64, PairKey)>>,
    next_generation: u64,
    anchor: Instant,
    runs: TaskTracker,
    run_cancel: CancellationToken,
    permits: Arc<Semaphore>,
    permits_total: usize,
    cron: JobScheduler,
    cron_tx: mpsc::Sender<PairKey>,
    cron_rx: mpsc::Receiver<PairKey>,
    /// Base URLs by environment (`builtin:sandbox` resolved).
    targets: BTreeMap<String, url::Url>,
    outcomes: Option<mpsc::Sender<Outcome>>,
}

impl Scheduler {
    pub async fn new(
        shared: Arc<Shared>,
        config: Arc<Config>,
        runs: TaskTracker,
        run_cancel: CancellationToken,
        outcomes: Option<mpsc::Sender<Outcome>>,
    ) -> anyhow::Result<Scheduler> {
        let cron = JobScheduler::new().await?;
        cron.start().await?;
        let (cron_tx, cron_rx) = mpsc::channel(CRON_QUEUE);
        let permits_total = config.daemon.max_concurrent_runs;
        Ok(Scheduler {
            shared,
            config: config.clone(),
            entries: HashMap::new(),
            queue: BinaryHeap::new(),
            next_generation: 0,
            anchor: Instant::now(),
            runs,
            run_cancel,
            permits: Arc::new(Semaphore::new(permits_total)),
            permits_total,
            cron,
            cron_tx,
            cron_rx,
            targets: BTreeMap::new(),
            outcomes,
        })
    }

    /// Runs the loop until `stop`; applies `initial` first and then marks
    /// the daemon ready.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>, stop: CancellationToken) {
        let initial = self.config.clone();
        if let Err(e) = self.apply(initial).await {
            tracing::error!(error = %format!("{e:#}"), "cannot arm the schedules");
        }
        self.shared.set_ready();
        let tick = self.shared.tick;
        loop {
            let now = Instant::now();
            self.shared.beat(now);
            let wake = self
                .queue
                .peek()
                .map_or(now + tick, |Reverse((due, _, _))| (*due).min(now + tick));
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                cmd = commands.recv() => match cmd {
                    Some(Command::Apply(config)) => {
                        if let Err(e) = self.apply(config).await {
                            tracing::error!(error = %format!("{e:#}"), "cannot apply the new config");
                        }
                    }
                    Some(Command::Stall(d)) => tokio::time::sleep(d).await,
                    None => break,
                },
                Some(key) = self.cron_rx.recv() => self.fire(&key),
                () = tokio::time::sleep_until(wake) => {}
            }
            self.fire_due(Instant::now());
        }
        for entry in self.entries.values() {
            if let Some(id) = entry.cron_job {
                let _ = self.cron.remove(&id).await;
            }
        }
        let _ = self.cron.shutdown().await;
    }

    /// Starts every interval pair whose slot has come.
    fn fire_due(&mut self, now: Instant) {
        while let Some(Reverse((due, generation, _))) = self.queue.peek() {
            if *due > now {
                break;
            }
            let (due, generation) = (*due, *generation);
            let Some(Reverse((_, _, key))) = self.queue.pop() else {
                break;
            };
            let Some(entry) = self.entries.get(&key) else {
                continue;
            };
            if entry.generation != generation {
                continue;
            }
            let Some(clock) = entry.clock else { continue };
            let (next, missed) = clock.after_fire(due, now);
            if missed > 0 {
                self.shared
                    .stats
                    .missed
                    .fetch_add(missed, Ordering::Relaxed);
                tracing::info!(
                    probe = %key.0, environment = %key.1, missed,
                    "skipped runs missed while the scheduler was stalled"
                );
            }
            self.queue.push(Reverse((next, generation, key.clone())));
            self.fire(&key);
        }
    }

    /// Starts one run of `key`, unless its previous run is still going.
    fn fire(&mut self, key: &PairKey) {
        let Some(entry) = self.entries.get(key) else {
            return;
        };
        if entry.running.swap(true, Ordering::AcqRel) {
            self.shared
                .stats
                .skipped_overlap
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(probe = %key.0, environment = %key.1, "skipped: the previous run is still in flight");
            return;
        }
        let Some(probe_index) = self.config.probes.iter().position(|p| p.name == key.0) else {
            entry.running.store(false, Ordering::Release);
            return;
        };
        let Some(base_url) = self.targets.get(&key.1).cloned() else {
            entry.running.store(false, Ordering::Release);
            return;
        };
        let running = RunningGuard(entry.running.clone());
        let config = self.config.clone();
        let env_name = key.1.clone();
        let permits = self.permits.clone();
        let cancel = self.run_cancel.clone();
        let shared = self.shared.clone();
        let outcomes = self.outcomes.clone();
        self.runs.spawn(async move {
            let _running = running;
            let _permit = tokio::select! {
                p = permits.acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                () = cancel.cancelled() => return,
            };
            let probe = &config.probes[probe_index];
            let Some(env) = config.environments.get(&env_name) else { return };
            let ctx = RunContext {
                probe,
                env,
                base_url: &base_url,
                tagging: &config.tagging,
                redactor: &config.redactor,
                vars: &env.variables,
            };
            let outcome = tokio::select! {
                o = probe::run(&ctx) => o,
                () = cancel.cancelled() => {
                    tracing::warn!(probe = %probe.name, environment = %env_name, "run cancelled at the drain deadline");
                    return;
                }
            };
            shared.stats.runs.fetch_add(1, Ordering::Relaxed);
            log_outcome(&outcome);
            if let Some(tx) = outcomes {
                // A full or closed consumer must not hold up runs.
                let _ = tx.try_send(outcome);
            }
        });
    }

    /// Switches to `config`: pairs whose schedule did not change keep their
    /// slots and in-flight state; new pairs are armed; removed ones stop.
    async fn apply(&mut self, config: Arc<Config>) -> anyhow::Result<()> {
        self.ensure_targets(&config).await?;
        if config.daemon.max_concurrent_runs != self.permits_total {
            tracing::warn!(
                running_limit = self.permits_total,
                "daemon.max_concurrent_runs changes take effect on restart"
            );
        }
        let mut wanted: HashMap<PairKey, Schedule> = HashMap::new();
        for p in &config.probes {
            for env in &p.environments {
                wanted.insert((p.name.clone(), env.clone()), p.schedule.clone());
            }
        }
        let mut stale: Vec<PairKey> = self
            .entries
            .iter()
            .filter(|(k, e)| wanted.get(*k) != Some(&e.schedule))
            .map(|(k, _)| k.clone())
            .collect();
        let removed = stale.iter().filter(|k| !wanted.contains_key(*k)).count();
        stale.sort();
        for key in &stale {
            if let Some(entry) = self.entries.remove(key) {
                if let Some(id) = entry.cron_job {
                    let _ = self.cron.remove(&id).await;
                }
            }
        }
        let kept = self.entries.len();
        let mut added = 0usize;
        for (key, schedule) in wanted {
            if self.entries.contains_key(&key) {
                continue;
            }
            self.arm(key, schedule).await?;
            added += 1;
        }
        tracing::info!(
            pairs = self.entries.len(),
            added,
            kept,
            removed,
            "schedules armed"
        );
        self.config = config;
        Ok(())
    }

    async fn arm(&mut self, key: PairKey, schedule: Schedule) -> anyhow::Result<()> {
        let generation = self.next_generation;
        self.next_generation += 1;
        let mut entry = Entry {
            schedule: schedule.clone(),
            clock: None,
            cron_job: None,
            running: Arc::new(AtomicBool::new(false)),
            generation,
        };
        match &schedule {
            Schedule::Every(interval) => {
                let clock = IntervalClock {
                    anchor: self.anchor,
                    offset: spread_offset(&format!("{}@{}", key.0, key.1), *interval),
                    interval: *interval,
                };
                let first = clock.first_at_or_after(Instant::now());
                self.queue.push(Reverse((first, generation, key.clone())));
                entry.clock = Some(clock);
            }
            Schedule::Cron {
                expression,
                timezone,
            } => {
                let tz = crate::schedule::parse_timezone(timezone).map_err(anyhow::Error::msg)?;
                let tx = self.cron_tx.clone();
                let shared = self.shared.clone();
                let fire_key = key.clone();
                let job = Job::new_async_tz(expression.as_str(), tz, move |_, _| {
                    let tx = tx.clone();
                    let key = fire_key.clone();
                    let shared = shared.clone();
                    Box::pin(async move {
                        if tx.try_send(key).is_err() {
                            shared.stats.missed.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })?;
                entry.cron_job = Some(self.cron.add(job).await?);
            }
        }
        self.entries.insert(key, entry);
        Ok(())
    }

    /// Resolves every environment's base URL, starting the built-in sandbox
    /// the first time an environment needs it.
    async fn ensure_targets(&mut self, config: &Config) -> anyhow::Result<()> {
        let mut targets = BTreeMap::new();
        for (name, env) in &config.environments {
            let url = match &env.base_url {
                BaseUrl::Url(u) => u.clone(),
                BaseUrl::Sandbox => {
                    let mut slot = self.shared.sandbox.lock().await;
                    let sandbox = match slot.as_ref() {
                        Some(s) => s,
                        None => {
                            let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
                            let s = Sandbox::start(listen, SandboxOptions::default()).await?;
                            tracing::info!(url = %s.base_url(), "built-in sandbox target started");
                            slot.insert(s)
                        }
                    };
                    url::Url::parse(&sandbox.base_url())?
                }
            };
            targets.insert(name.clone(), url);
        }
        self.targets = targets;
        Ok(())
    }
}

/// Clears a pair's in-flight flag when its run ends, however it ends.
struct RunningGuard(Arc<AtomicBool>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// One log line per run: debug for a pass, warn for a failure.
fn log_outcome(o: &Outcome) {
    let ms = o.duration.as_secs_f64() * 1000.0;
    if o.success {
        tracing::debug!(probe = %o.probe, environment = %o.environment, run_id = %o.run_id, duration_ms = ms, "run passed");
    } else {
        tracing::warn!(
            probe = %o.probe,
            environment = %o.environment,
            run_id = %o.run_id,
            duration_ms = ms,
            reason = o.reason.map_or("unknown", |r| r.as_str()),
            error = o.error.as_deref().unwrap_or(""),
            "run failed"
        );
    }
}
