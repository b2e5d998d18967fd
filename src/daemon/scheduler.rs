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
use super::pipeline::Event;
use crate::config::{BaseUrl, Schedule};
use crate::net::error::describe;
use crate::outcome::{AssertionResult, FailureReason, Outcome};
use crate::plan::Config;
use crate::probe::{self, RunContext};
use crate::sandbox::{Sandbox, SandboxOptions};
use crate::schedule::{IntervalClock, saturating_add, spread_offset};
use crate::telemetry::metrics::Metrics;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Identifies a pair: (probe name, environment name).
pub type PairKey = (String, String);

/// Why the scheduler could not start or arm a config. The cause, where
/// there is one, is the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start the cron scheduler")]
    CronStart(#[source] JobSchedulerError),
    /// The time zone was checked at load, so this means the two disagree.
    #[error("cannot arm `{probe}` in `{environment}`: {message}")]
    TimeZone {
        probe: String,
        environment: String,
        message: String,
    },
    #[error("cannot arm the cron schedule of `{probe}` in `{environment}`")]
    Cron {
        probe: String,
        environment: String,
        #[source]
        source: JobSchedulerError,
    },
    #[error("cannot start the built-in sandbox")]
    Sandbox(#[source] std::io::Error),
    #[error("the built-in sandbox's base URL does not parse")]
    SandboxUrl(#[source] url::ParseError),
}

/// Messages into the loop.
#[derive(Debug)]
pub enum Command {
    /// Switch to a new config (a reload), all or nothing; the answer says
    /// whether it was applied.
    Apply(Arc<Config>, Option<oneshot::Sender<Result<(), Error>>>),
    /// Hold the loop without ticking, as if it were frozen. For tests of
    /// the watchdog and `/healthz`.
    Stall(Duration),
}

/// Cron fire messages waiting for the loop; beyond this they are dropped
/// (and counted as missed).
const CRON_QUEUE: usize = 1024;

struct Entry {
    key: PairKey,
    /// Where its probe is in the config's `probes` (set again on apply).
    probe: usize,
    schedule: Schedule,
    /// Interval pairs: their slots.
    clock: Option<IntervalClock>,
    /// Cron pairs: the job in tokio-cron-scheduler.
    cron_job: Option<uuid::Uuid>,
    running: Arc<AtomicBool>,
    /// Bumped when the entry is re-created, so stale queue items are ignored.
    generation: u64,
}

/// The timer's granularity: how early [`Scheduler::fire_due`] may start a
/// slot.
const TIMER_SLACK: Duration = Duration::from_millis(1);

pub struct Scheduler {
    shared: Arc<Shared>,
    config: Arc<Config>,
    /// The armed pairs, by slot: the queue and the cron messages name a
    /// pair by its slot and generation, so a fire allocates nothing and
    /// hashes no names. A removed pair leaves its slot empty, reused.
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    /// (due, generation, slot).
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    next_generation: u64,
    anchor: Instant,
    runs: TaskTracker,
    run_cancel: CancellationToken,
    permits: Arc<Semaphore>,
    permits_total: usize,
    cron: JobScheduler,
    /// (slot, generation) of a cron pair whose time has come.
    cron_tx: mpsc::Sender<(usize, u64)>,
    cron_rx: mpsc::Receiver<(usize, u64)>,
    /// Base URLs by environment (`builtin:sandbox` resolved).
    targets: BTreeMap<String, Arc<Target>>,
    events: mpsc::Sender<Event>,
    metrics: Arc<Metrics>,
    launcher: Launcher,
}

/// What a fire starts. Tests record fires in virtual time instead of
/// running probes, so the loop's timing can be checked exactly.
#[derive(Clone)]
enum Launcher {
    Probes,
    #[cfg(test)]
    Record {
        fired: mpsc::UnboundedSender<(PairKey, Instant)>,
        hold: Duration,
    },
}

impl Scheduler {
    pub async fn new(
        shared: Arc<Shared>,
        config: Arc<Config>,
        runs: TaskTracker,
        run_cancel: CancellationToken,
        events: mpsc::Sender<Event>,
        metrics: Arc<Metrics>,
    ) -> Result<Scheduler, Error> {
        let cron = JobScheduler::new().await.map_err(Error::CronStart)?;
        cron.start().await.map_err(Error::CronStart)?;
        let (cron_tx, cron_rx) = mpsc::channel(CRON_QUEUE);
        let permits_total = fit_to_descriptors(config.daemon.max_concurrent_runs);
        Ok(Scheduler {
            shared,
            config: config.clone(),
            entries: Vec::new(),
            free: Vec::new(),
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
            events,
            metrics,
            launcher: Launcher::Probes,
        })
    }

    /// Runs the loop until `stop`; applies `initial` first and then marks
    /// the daemon ready.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>, stop: CancellationToken) {
        let initial = self.config.clone();
        if let Err(e) = self.apply(initial).await {
            tracing::error!(error = %describe(&e), "cannot arm the schedules");
        }
        self.shared.set_ready();
        let tick = self.shared.tick;
        loop {
            let now = Instant::now();
            self.shared.beat(now);
            // At least every tick (the heartbeat), whatever `tick` is.
            let beat = saturating_add(now, tick);
            // Woken up to a timer tick late (the wheel's millisecond and
            // the poll's timeout both round up), so asked one early;
            // `fire_due` takes what is due within that much.
            let wake = self.queue.peek().map_or(beat, |Reverse((due, _, _))| {
                due.checked_sub(TIMER_SLACK).unwrap_or(*due).min(beat)
            });
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                cmd = commands.recv() => match cmd {
                    Some(Command::Apply(config, done)) => {
                        let applied = self.apply(config).await;
                        match done {
                            Some(done) => { let _ = done.send(applied); }
                            None => if let Err(e) = applied {
                                tracing::error!(error = %describe(&e), "cannot apply the new config");
                            },
                        }
                    }
                    Some(Command::Stall(d)) => tokio::time::sleep(d).await,
                    None => break,
                },
                Some((slot, generation)) = self.cron_rx.recv() => {
                    if self.entry(slot, generation).is_some() {
                        self.fire(slot, Duration::ZERO);
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
            }
            self.fire_due(Instant::now());
        }
        for entry in self.entries.iter().flatten() {
            if let Some(id) = entry.cron_job {
                let _ = self.cron.remove(&id).await;
            }
        }
        let _ = self.cron.shutdown().await;
    }

    /// Starts every interval pair whose slot has come.
    fn fire_due(&mut self, now: Instant) {
        // tokio's timer wakes on whole milliseconds, up to one after the
        // instant asked: a slot due within that much fires now, at most
        // that early, rather than a tick late (which put the p99 lag at
        // 1,000 runs/s above 2 ms).
        let horizon = saturating_add(now, TIMER_SLACK);
        while let Some(Reverse((due, generation, _))) = self.queue.peek() {
            if *due > horizon {
                break;
            }
            let (due, generation) = (*due, *generation);
            let Some(Reverse((_, _, slot))) = self.queue.pop() else {
                break;
            };
            let Some(entry) = self.entry(slot, generation) else {
                continue;
            };
            let Some(clock) = entry.clock else { continue };
            let (next, missed) = clock.after_fire(due, now);
            self.metrics
                .schedule_lag(now.saturating_duration_since(due));
            if missed > 0 {
                self.metrics.missed(missed);
                self.shared
                    .stats
                    .missed
                    .fetch_add(missed, Ordering::Relaxed);
                tracing::info!(
                    probe = %entry.key.0, environment = %entry.key.1, missed,
                    "skipped runs missed while the scheduler was stalled"
                );
            }
            self.queue.push(Reverse((next, generation, slot)));
            self.fire(slot, now.saturating_duration_since(due));
        }
    }

    /// The entry in `slot`, if it is still the one of `generation` (a
    /// queue item or cron message of a removed or re-armed pair is stale).
    fn entry(&self, slot: usize, generation: u64) -> Option<&Entry> {
        self.entries
            .get(slot)?
            .as_ref()
            .filter(|e| e.generation == generation)
    }

    /// Starts one run of `key`, unless its previous run is still going.
    /// `lag`: how late the slot fires (its intended start is that long ago).
    fn fire(&mut self, slot: usize, lag: Duration) {
        let Some(Some(entry)) = self.entries.get(slot) else {
            return;
        };
        let key = &entry.key;
        if self.shared.holds.skips(&self.config, &key.0, &key.1) {
            tracing::debug!(probe = %key.0, environment = %key.1, "skipped: a maintenance window with action = \"skip\" covers it");
            return;
        }
        if entry.running.swap(true, Ordering::AcqRel) {
            self.shared
                .stats
                .skipped_overlap
                .fetch_add(1, Ordering::Relaxed);
            self.metrics.skipped_overlap(&key.0, &key.1);
            tracing::debug!(probe = %key.0, environment = %key.1, "skipped: the previous run is still in flight");
            return;
        }
        let probe_index = entry.probe;
        let Some(target) = self.targets.get(&key.1).cloned() else {
            entry.running.store(false, Ordering::Release);
            return;
        };
        let running = RunningGuard(entry.running.clone());
        let intended_ms = crate::history::now_ms()
            .saturating_sub(i64::try_from(lag.as_millis()).unwrap_or(i64::MAX));
        let prev = self.shared.kept(&key.0, &key.1);
        let config = self.config.clone();
        let permits = self.permits.clone();
        let cancel = self.run_cancel.clone();
        let shared = self.shared.clone();
        let events = self.events.clone();
        let metrics = self.metrics.clone();
        let launcher = self.launcher.clone();
        #[cfg(test)]
        let fired_key = key.clone();
        self.runs.spawn(async move {
            let _running = running;
            let _permit = tokio::select! {
                p = permits.acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                () = cancel.cancelled() => return,
            };
            match launcher {
                Launcher::Probes => {}
                #[cfg(test)]
                Launcher::Record { fired, hold } => {
                    let _ = fired.send((fired_key, Instant::now()));
                    tokio::time::sleep(hold).await;
                    return;
                }
            }
            let Some(probe) = config.probes.get(probe_index) else { return };
            let Some(env) = config.environments.get(&target.environment) else { return };
            let ctx = RunContext {
                probe,
                env,
                base_url: &target.url,
                tagging: &config.tagging,
                redactor: &config.redactor,
                vars: &target.vars,
                cancel: cancel.clone(),
                seed: None,
                progress: None,
                prev: prev.as_deref(),
            };
            // The run watches `cancel` itself (a flow's teardown still runs
            // after it fires, within its own bound).
            let mut outcome = probe::run(&ctx).await;
            outcome.intended_ms = Some(intended_ms);
            if cancel.is_cancelled() {
                // Our own shutdown is not a verdict on the target: the run
                // goes to no metric and no alert.
                tracing::warn!(probe = %probe.name, environment = %target.environment, "run cancelled at the drain deadline");
                return;
            }
            shared.stats.runs.fetch_add(1, Ordering::Relaxed);
            log_outcome(&outcome);
            // A full or closed pipeline must not hold up runs.
            if events.try_send(Event::Outcome(Box::new(outcome))).is_err() {
                metrics.dropped_outcome();
            }
        });
    }

    /// Switches to `config`, all or nothing: pairs whose schedule did not
    /// change keep their slots and in-flight state; new pairs are armed;
    /// removed ones stop. Everything that can fail (the targets, the cron
    /// jobs) is prepared before anything running is touched, and a failure
    /// undoes what was prepared, so a rejected config leaves every old
    /// schedule armed and no new one.
    async fn apply(&mut self, config: Arc<Config>) -> Result<(), Error> {
        let targets = self.resolve_targets(&config).await?;
        if config.daemon.max_concurrent_runs != self.permits_total {
            tracing::warn!(
                running_limit = self.permits_total,
                "daemon.max_concurrent_runs changes take effect on restart"
            );
        }
        let probe_index = config.probe_index();
        let mut wanted: Vec<(PairKey, Schedule)> = Vec::new();
        for p in &config.probes {
            for env in &p.environments {
                wanted.push(((p.name.clone(), env.clone()), p.schedule.clone()));
            }
        }
        let armed: HashMap<PairKey, usize> = self
            .entries
            .iter()
            .enumerate()
            .filter_map(|(slot, e)| Some((e.as_ref()?.key.clone(), slot)))
            .collect();
        let schedule_of = |entries: &[Option<Entry>], key: &PairKey| {
            let slot = *armed.get(key)?;
            entries.get(slot)?.as_ref().map(|e| e.schedule.clone())
        };
        // Prepare: arm every new or changed pair beside the running ones.
        // Each in a slot of its own, empty until the commit.
        let mut fresh: Vec<(usize, Entry)> = Vec::new();
        for (key, schedule) in &wanted {
            if schedule_of(&self.entries, key).as_ref() == Some(schedule) {
                continue;
            }
            let slot = match self.free.pop() {
                Some(slot) => slot,
                None => {
                    self.entries.push(None);
                    self.entries.len() - 1
                }
            };
            match self.arm(key, schedule, slot).await {
                Ok(entry) => fresh.push((slot, entry)),
                Err(e) => {
                    self.free.push(slot);
                    for (slot, entry) in fresh {
                        self.free.push(slot);
                        self.disarm(entry).await;
                    }
                    return Err(e);
                }
            }
        }
        // Commit: nothing below fails.
        let wanted: HashMap<PairKey, Schedule> = wanted.into_iter().collect();
        let mut removed = 0;
        for slot in 0..self.entries.len() {
            let stale = self.entries[slot]
                .as_ref()
                .is_some_and(|e| wanted.get(&e.key) != Some(&e.schedule));
            if !stale {
                continue;
            }
            if let Some(entry) = self.entries[slot].take() {
                removed += usize::from(!wanted.contains_key(&entry.key));
                self.free.push(slot);
                self.disarm(entry).await;
            }
        }
        let kept = self.entries.iter().flatten().count();
        let added = fresh.len();
        let now = Instant::now();
        for (slot, entry) in fresh {
            if let Some(clock) = &entry.clock {
                let first = clock.first_at_or_after(now);
                self.queue.push(Reverse((first, entry.generation, slot)));
            }
            self.entries[slot] = Some(entry);
        }
        // Kept pairs' probes may have moved in the new config's list.
        for entry in self.entries.iter_mut().flatten() {
            if let Some(i) = probe_index.get(&entry.key.0) {
                entry.probe = *i;
            }
        }
        // A config with fewer pairs leaves empty slots at the end.
        while self.entries.last().is_some_and(Option::is_none) {
            self.entries.pop();
            let last = self.entries.len();
            self.free.retain(|s| *s != last);
        }
        tracing::info!(
            pairs = kept + added,
            added,
            kept,
            removed,
            "schedules armed"
        );
        self.targets = targets;
        self.config = config;
        Ok(())
    }

    /// Builds the entry of a pair: its interval clock, or its cron job
    /// (added to the cron scheduler, so [`Self::disarm`] must undo it if the
    /// entry is not kept). Queue items for intervals are pushed on commit.
    async fn arm(
        &mut self,
        key: &PairKey,
        schedule: &Schedule,
        slot: usize,
    ) -> Result<Entry, Error> {
        let generation = self.next_generation;
        self.next_generation += 1;
        let mut entry = Entry {
            key: key.clone(),
            probe: 0,
            schedule: schedule.clone(),
            clock: None,
            cron_job: None,
            running: Arc::new(AtomicBool::new(false)),
            generation,
        };
        match schedule {
            Schedule::Every(interval) => {
                entry.clock = Some(IntervalClock {
                    anchor: self.anchor,
                    offset: spread_offset(&format!("{}@{}", key.0, key.1), *interval),
                    interval: *interval,
                });
            }
            Schedule::Cron {
                expression,
                timezone,
            } => {
                let tz = crate::schedule::parse_timezone(timezone).map_err(|message| {
                    Error::TimeZone {
                        probe: key.0.clone(),
                        environment: key.1.clone(),
                        message,
                    }
                })?;
                let tx = self.cron_tx.clone();
                let shared = self.shared.clone();
                let metrics = self.metrics.clone();
                let job = Job::new_async_tz(expression.as_str(), tz, move |_, _| {
                    let tx = tx.clone();
                    let key = (slot, generation);
                    let shared = shared.clone();
                    let metrics = metrics.clone();
                    Box::pin(async move {
                        if tx.try_send(key).is_err() {
                            shared.stats.missed.fetch_add(1, Ordering::Relaxed);
                            metrics.missed(1);
                        }
                    })
                });
                let cron_error = |source: JobSchedulerError| Error::Cron {
                    probe: key.0.clone(),
                    environment: key.1.clone(),
                    source,
                };
                let job = job.map_err(cron_error)?;
                entry.cron_job = Some(self.cron.add(job).await.map_err(cron_error)?);
            }
        }
        Ok(entry)
    }

    /// Stops an entry's cron job; its interval queue items go stale with
    /// its generation.
    async fn disarm(&mut self, entry: Entry) {
        if let Some(id) = entry.cron_job {
            let _ = self.cron.remove(&id).await;
        }
    }

    /// Resolves every environment's base URL, starting the built-in sandbox
    /// the first time an environment needs it.
    async fn resolve_targets(
        &self,
        config: &Config,
    ) -> Result<BTreeMap<String, Arc<Target>>, Error> {
        let mut targets = BTreeMap::new();
        for (name, env) in &config.environments {
            let mut vars = env.variables.clone();
            let url = match &env.base_url {
                BaseUrl::Url(u) => u.clone(),
                BaseUrl::Sandbox => {
                    let mut slot = self.shared.sandbox.lock().await;
                    let sandbox = match slot.as_ref() {
                        Some(s) => s,
                        None => {
                            let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
                            let s = Sandbox::start(listen, SandboxOptions::default())
                                .await
                                .map_err(Error::Sandbox)?;
                            tracing::info!(url = %s.base_url(), "built-in sandbox target started");
                            slot.insert(s)
                        }
                    };
                    for (k, v) in sandbox.variables() {
                        vars.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                    url::Url::parse(&sandbox.base_url()).map_err(Error::SandboxUrl)?
                }
            };
            let target = Target {
                environment: name.clone(),
                url,
                vars,
            };
            targets.insert(name.clone(), Arc::new(target));
        }
        Ok(targets)
    }
}

/// File descriptors kept for everything but runs: the listener and its
/// scrapes, the outbox, logs, the trace exporter, the config watcher.
const RESERVED_FDS: u64 = 64;
/// Descriptors one run may hold: its connection, the built-in sandbox's
/// side of it when the target is in this process, and one to spare.
const FDS_PER_RUN: u64 = 3;
/// How far the soft `RLIMIT_NOFILE` is raised (towards the hard limit).
const WANTED_NOFILE: u64 = 65_536;

/// The run cap: `configured`, lowered so that many runs fit in the file
/// descriptors this process may open (after raising the soft limit as far
/// as the hard one allows). Runs beyond the cap wait for a slot, so a low
/// `LimitNOFILE` slows probing down instead of failing runs with `EMFILE`
/// or starving `/metrics` and `/healthz` of sockets.
pub fn fit_to_descriptors(configured: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(WANTED_NOFILE) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read RLIMIT_NOFILE; keeping daemon.max_concurrent_runs");
            return configured;
        }
    };
    let fit = usize::try_from(limit.saturating_sub(RESERVED_FDS) / FDS_PER_RUN)
        .unwrap_or(usize::MAX)
        .max(1);
    if fit < configured {
        tracing::warn!(
            configured,
            running_limit = fit,
            nofile = limit,
            "daemon.max_concurrent_runs lowered to fit RLIMIT_NOFILE (raise LimitNOFILE= to run more at once)"
        );
        fit
    } else {
        configured
    }
}

/// Where an environment's runs go, and the variables they see. Shared by
/// its runs (a run holds an `Arc`, not a copy of the variables).
struct Target {
    environment: String,
    url: url::Url,
    vars: BTreeMap<String, String>,
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
    if o.flaky {
        // Passed after a retry: a pass, but not one to keep quiet about.
        let first = o.retried.first();
        tracing::info!(
            probe = %o.probe,
            environment = %o.environment,
            run_id = %o.run_id,
            duration_ms = ms,
            attempts = o.attempts,
            first_reason = first.and_then(|a| a.reason).map_or("unknown", |r| r.as_str()),
            first_error = first.and_then(|a| a.error.as_deref()).unwrap_or(""),
            "run passed after a retry (flaky)"
        );
    } else if o.success {
        tracing::debug!(probe = %o.probe, environment = %o.environment, run_id = %o.run_id, duration_ms = ms, "run passed");
    } else {
        // A run failed by an expectation names it, as written, with what
        // its operands were ("1 of 3 expectations failed" alone sends the
        // reader to the history for every failure); a flow's names the step.
        let failed = first_failed_expectation(o);
        tracing::warn!(
            probe = %o.probe,
            environment = %o.environment,
            run_id = %o.run_id,
            duration_ms = ms,
            reason = o.reason.map_or("unknown", |r| r.as_str()),
            error = o.error.as_deref().unwrap_or(""),
            attempts = o.attempts,
            step = failed.and_then(|(step, _)| step),
            expectation = failed.map(|(_, a)| a.expression.as_str()),
            actual = failed.map(|(_, a)| a.actual.as_str()),
            "run failed"
        );
    }
}

/// The first failed expectation of a run that failed with reason
/// `assertion`, and the flow step it belongs to (`None` for a run's own);
/// `None` for any other failure. The outcome is already redacted.
fn first_failed_expectation(o: &Outcome) -> Option<(Option<&str>, &AssertionResult)> {
    if o.reason != Some(FailureReason::Assertion) {
        return None;
    }
    let own = o.assertions.iter().find(|a| !a.passed).map(|a| (None, a));
    own.or_else(|| {
        o.steps.iter().find_map(|s| {
            s.assertions
                .iter()
                .find(|a| !a.passed)
                .map(|a| (Some(s.name.as_str()), a))
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::LoadOptions;

    const SECOND: Duration = Duration::from_secs(1);

    /// A config with one environment and the given (name, schedule) probes.
    fn config(probes: &[(&str, &str)]) -> (tempfile::TempDir, Arc<Config>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            "[environments.e]\nbase_url = \"http://127.0.0.1:9\"\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("probes")).unwrap();
        for (name, schedule) in probes {
            std::fs::write(
                dir.path().join(format!("probes/{name}.toml")),
                format!(
                    "name = \"{name}\"\nschedule = \"{schedule}\"\ntimeout = \"1s\"\nenvironments = [\"e\"]\n[http]\nurl = \"/\"\n"
                ),
            )
            .unwrap();
        }
        let config = crate::plan::load(&LoadOptions {
            config_path: Some(dir.path().join("config.toml")),
            overrides: vec![],
        })
        .unwrap();
        (dir, Arc::new(config))
    }

    fn shared(config: &Arc<Config>) -> Arc<Shared> {
        Arc::new(Shared {
            heartbeat: std::sync::Mutex::new(Instant::now()),
            tick: SECOND,
            ready: AtomicBool::new(false),
            stats: super::super::Stats::default(),
            metrics: Arc::new(Metrics::new(&config.daemon, &config.probes)),
            spans_dropped: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            sandbox: tokio::sync::Mutex::new(None),
            history: None,
            slo: std::sync::Mutex::new(Vec::new()),
            kept: std::sync::Mutex::new(super::super::Kept::new()),
            holds: Default::default(),
            config: std::sync::RwLock::new(config.clone()),
        })
    }

    struct Harness {
        shared: Arc<Shared>,
        commands: mpsc::Sender<Command>,
        stop: CancellationToken,
        fired: mpsc::UnboundedReceiver<(PairKey, Instant)>,
        start: Instant,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start(config: Arc<Config>, hold: Duration) -> Harness {
        let shared = shared(&config);
        let (tx, fired) = mpsc::unbounded_channel();
        let (events, _) = mpsc::channel(1);
        let metrics = shared.metrics.clone();
        let mut s = Scheduler::new(
            shared.clone(),
            config,
            TaskTracker::new(),
            CancellationToken::new(),
            events,
            metrics,
        )
        .await
        .unwrap();
        s.launcher = Launcher::Record { fired: tx, hold };
        let start = s.anchor;
        let (commands, rx) = mpsc::channel(4);
        let stop = CancellationToken::new();
        let task = tokio::spawn(s.run(rx, stop.clone()));
        Harness {
            shared,
            commands,
            stop,
            fired,
            start,
            task,
        }
    }

    impl Harness {
        /// Fires so far, as (probe, seconds since the anchor).
        fn drain(&mut self) -> Vec<(String, f64)> {
            let mut out = Vec::new();
            while let Ok(((probe, _), at)) = self.fired.try_recv() {
                out.push((probe, (at - self.start).as_secs_f64()));
            }
            out
        }

        async fn stop(self) {
            self.stop.cancel();
            self.task.await.unwrap();
        }
    }

    fn times(fires: &[(String, f64)], probe: &str) -> Vec<f64> {
        fires
            .iter()
            .filter(|(p, _)| p == probe)
            .map(|(_, t)| *t)
            .collect()
    }

    /// Every scheduled run's future is copied as the run is spawned, so
    /// it stays small: a kind's state, and a workload's, are boxed behind
    /// it. (Inline, a workload's state made an HTTP probe's run 6.6 KB in
    /// a release build and its spawned task 13.5 KB, 4 % of the daemon's
    /// CPU at 1,000 runs/s; in this test's build it was 3.9 KB. Boxed, the
    /// run's future is ~1.2 KB in either.)
    #[test]
    fn a_runs_future_stays_small() {
        let (_dir, cfg) = config(&[("a", "every 10s")]);
        let env = &cfg.environments["e"];
        let BaseUrl::Url(base_url) = &env.base_url else {
            panic!("the test's environment has a URL")
        };
        let vars = BTreeMap::new();
        let ctx = RunContext {
            probe: &cfg.probes[0],
            env,
            base_url,
            tagging: &cfg.tagging,
            redactor: &cfg.redactor,
            vars: &vars,
            cancel: CancellationToken::new(),
            seed: None,
            progress: None,
            prev: None,
        };
        let size = std::mem::size_of_val(&probe::run(&ctx));
        assert!(size <= 2048, "a run's future is {size} bytes");
    }

    #[tokio::test(start_paused = true)]
    async fn intervals_fire_on_their_spread_offsets_every_interval() {
        let (_dir, cfg) = config(&[("a", "every 10s"), ("b", "every 10s"), ("c", "every 10s")]);
        let mut h = start(cfg, Duration::ZERO).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        let fires = h.drain();
        let mut offsets = Vec::new();
        for probe in ["a", "b", "c"] {
            let t = times(&fires, probe);
            let offset = spread_offset(&format!("{probe}@e"), Duration::from_secs(10));
            offsets.push(offset);
            assert_eq!(t.len(), 6, "{probe}: {t:?}");
            for (k, at) in t.iter().enumerate() {
                let want = offset.as_secs_f64() + 10.0 * k as f64;
                // On the slot, or at most the timer's granularity early.
                let early = TIMER_SLACK.as_secs_f64();
                assert!(
                    *at <= want + 1e-6 && *at >= want - early - 1e-6,
                    "{probe} fire {k} at {at}, want {want} (at most {early} s early)"
                );
            }
        }
        offsets.dedup();
        assert_eq!(offsets.len(), 3, "offsets are spread: {offsets:?}");
        assert!(h.shared.is_ready());
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_still_in_flight_makes_the_next_slot_skip() {
        // Runs take 5 s on a 2 s schedule: of every three slots, two are
        // skipped while the run is in flight; runs never stack.
        let (_dir, cfg) = config(&[("slow", "every 2s")]);
        let mut h = start(cfg, Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        let t = times(&h.drain(), "slow");
        assert!(t.len() >= 4, "{t:?}");
        for w in t.windows(2) {
            assert!((w[1] - w[0] - 6.0).abs() < 1e-3, "runs 6 s apart: {t:?}");
        }
        let skipped = h.shared.stats.skipped_overlap.load(Ordering::Relaxed);
        // Two slots fall inside each run's 5 s (the last run's may fall
        // after the end of the test).
        let runs = t.len() as u64;
        assert!(
            (2 * runs - 2..=2 * runs).contains(&skipped),
            "{t:?}: {skipped} skipped"
        );
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_ten_minute_stall_missed_runs_are_skipped_not_burst() {
        let (_dir, cfg) = config(&[("p", "every 10s")]);
        let mut h = start(cfg, Duration::ZERO).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        let before = times(&h.drain(), "p");
        assert_eq!(before.len(), 3, "{before:?}");
        h.commands
            .send(Command::Stall(Duration::from_secs(600)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(600)).await;
        let after_stall = times(&h.drain(), "p");
        assert!(
            after_stall.len() <= 1,
            "at most one catch-up run: {after_stall:?}"
        );
        tokio::time::sleep(Duration::from_secs(30)).await;
        let resumed = times(&h.drain(), "p");
        assert!(
            (2..=4).contains(&resumed.len()),
            "cadence resumes: {resumed:?}"
        );
        let missed = h.shared.stats.missed.load(Ordering::Relaxed);
        assert!(
            (58..=61).contains(&missed),
            "{missed} slots reported missed"
        );
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_interval_too_long_for_the_clock_is_not_wrapped_into_a_short_one() {
        // `check` refuses such an interval; a config built in code may still
        // hold one. 2⁶⁴ ms + 5 s used to be truncated to 5 s (offset and
        // period both): the pair fired every 5 s instead of never.
        let (_dir, cfg) = config(&[("huge", "every 10s"), ("steady", "every 10s")]);
        let mut cfg = Arc::into_inner(cfg).unwrap();
        let wraps_to_5s = Duration::new(18_446_744_073_709_556, 616_000_000);
        assert_eq!(wraps_to_5s.as_millis(), (1u128 << 64) + 5_000);
        cfg.probes[0].schedule = Schedule::Every(wraps_to_5s);
        let mut h = start(Arc::new(cfg), Duration::ZERO).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        let fires = h.drain();
        assert!(times(&fires, "huge").is_empty(), "{fires:?}");
        assert_eq!(times(&fires, "steady").len(), 3, "{fires:?}");
        h.stop().await;

        // The longest interval `check` accepts arms and waits, too.
        let (_dir, cfg) = config(&[("yearly", "every 1y")]);
        let mut h = start(cfg, Duration::ZERO).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(h.drain().len() <= 1);
        assert!(!h.task.is_finished(), "the loop is still running");
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_that_fails_half_way_leaves_every_old_schedule_armed_and_no_new_one() {
        // The reload removes `gone`, changes `moved`'s interval, adds `new`
        // and a cron pair the cron scheduler refuses (load checks cron
        // expressions, so this stands for any arming failure): the whole
        // reload is refused and the old schedules go on as before.
        let (_dir, cfg) = config(&[
            ("keep", "every 10s"),
            ("gone", "every 10s"),
            ("moved", "every 10s"),
        ]);
        let mut h = start(cfg, Duration::ZERO).await;
        tokio::time::sleep(Duration::from_secs(20)).await;
        let before = h.drain();
        let (_dir2, next) = config(&[
            ("keep", "every 10s"),
            ("moved", "every 5s"),
            ("new", "every 10s"),
            ("zz-broken", "every 10s"),
        ]);
        let mut next = Arc::into_inner(next).unwrap();
        let broken = next
            .probes
            .iter_mut()
            .find(|p| p.name == "zz-broken")
            .unwrap();
        broken.schedule = Schedule::Cron {
            expression: "not a cron expression".into(),
            timezone: "UTC".into(),
        };
        let (done, answer) = oneshot::channel();
        h.commands
            .send(Command::Apply(Arc::new(next), Some(done)))
            .await
            .unwrap();
        let refused = answer.await.unwrap();
        assert!(
            matches!(refused, Err(Error::Cron { ref probe, .. }) if probe == "zz-broken"),
            "{refused:?}"
        );
        tokio::time::sleep(Duration::from_secs(30)).await;
        let after = h.drain();
        for probe in ["keep", "gone", "moved"] {
            assert_eq!(times(&before, probe).len(), 2, "{probe}: {before:?}");
            assert_eq!(
                times(&after, probe).len(),
                3,
                "{probe} still on 10 s: {after:?}"
            );
        }
        assert!(times(&after, "new").is_empty(), "{after:?}");
        assert!(times(&after, "zz-broken").is_empty(), "{after:?}");
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_keeps_unchanged_pairs_and_arms_new_ones() {
        let (_dir, cfg) = config(&[("keep", "every 10s"), ("gone", "every 10s")]);
        let mut h = start(cfg, Duration::ZERO).await;
        tokio::time::sleep(Duration::from_secs(20)).await;
        let first = times(&h.drain(), "keep");
        let (_dir2, next) = config(&[("keep", "every 10s"), ("new", "every 10s")]);
        h.commands.send(Command::Apply(next, None)).await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        let fires = h.drain();
        assert!(
            times(&fires, "gone").is_empty(),
            "removed probes stop: {fires:?}"
        );
        assert_eq!(times(&fires, "new").len(), 3, "{fires:?}");
        let kept = times(&fires, "keep");
        let phase = |t: f64| t % 10.0;
        assert!(
            (phase(kept[0]) - phase(first[0])).abs() < 1e-3,
            "the unchanged probe keeps its phase: {first:?} then {kept:?}"
        );
        h.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_freed_by_a_removed_pair_is_reused_without_its_old_queue_items() {
        let (_d1, first) = config(&[("x", "every 10s"), ("y", "every 10s")]);
        let mut h = start(first, Duration::ZERO).await;
        tokio::time::sleep(Duration::from_secs(15)).await;
        let (_d2, without_y) = config(&[("x", "every 10s")]);
        h.commands
            .send(Command::Apply(without_y, None))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        // `z` takes the slot `y` left; `y`'s queue items are still in the
        // heap and must not start `z`.
        let (_d3, with_z) = config(&[("x", "every 10s"), ("z", "every 7s")]);
        h.commands.send(Command::Apply(with_z, None)).await.unwrap();
        h.drain();
        tokio::time::sleep(Duration::from_secs(35)).await;
        let fires = h.drain();
        assert!(times(&fires, "y").is_empty(), "{fires:?}");
        let z = times(&fires, "z");
        assert_eq!(z.len(), 5, "every 7 s for 35 s, nothing else: {fires:?}");
        assert!(
            z.windows(2).all(|w| (w[1] - w[0] - 7.0).abs() < 1e-3),
            "{z:?}"
        );
        h.stop().await;
    }

    /// What the JSON log line of `o` says: its `fields`.
    fn logged(o: &Outcome) -> serde_json::Value {
        #[derive(Clone, Default)]
        struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
            type Writer = Buffer;
            fn make_writer(&'a self) -> Buffer {
                self.clone()
            }
        }
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(buffer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || log_outcome(o));
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        line["fields"].clone()
    }

    fn expectation(expression: &str, passed: bool, actual: &str) -> AssertionResult {
        AssertionResult {
            expression: expression.to_owned(),
            passed,
            actual: actual.to_owned(),
            location: None,
        }
    }

    fn failed_outcome(reason: FailureReason, error: &str) -> Outcome {
        let ids = crate::tagging::RunIds::generate();
        let mut o = Outcome::new("orders", "prod", "http", &ids);
        o.fail(reason, error);
        o
    }

    /// Regression (issue 16): the log line of a run failed by an
    /// expectation said "1 of 3 expectations failed" and not which.
    #[test]
    fn the_log_line_of_a_failed_run_names_its_first_failed_expectation() {
        let mut o = failed_outcome(FailureReason::Assertion, "2 of 3 expectations failed");
        o.assertions = vec![
            expectation("status == 201", true, "status = 201"),
            expectation("json.status == 'pending'", false, "json.status = \"held\""),
            expectation("size(json.items) > 0", false, "size(json.items) = 0"),
        ];
        let fields = logged(&o);
        assert_eq!(fields["message"], "run failed", "{fields}");
        assert_eq!(fields["reason"], "assertion", "{fields}");
        assert_eq!(fields["error"], "2 of 3 expectations failed", "{fields}");
        assert_eq!(
            fields["expectation"], "json.status == 'pending'",
            "{fields}"
        );
        assert_eq!(fields["actual"], "json.status = \"held\"", "{fields}");
        assert!(fields.get("step").is_none(), "{fields}");
    }

    #[test]
    fn a_failed_flow_step_is_named_beside_its_expectation() {
        let mut o = failed_outcome(
            FailureReason::Assertion,
            "step verify: 1 of 2 expectations failed",
        );
        let mut create = crate::outcome::StepOutcome::new("create", crate::outcome::Stage::Step);
        create.assertions = vec![expectation("status == 201", true, "status = 201")];
        let mut verify = crate::outcome::StepOutcome::new("verify", crate::outcome::Stage::Step);
        verify.assertions = vec![
            expectation("status == 200", true, "status = 200"),
            expectation("json.quantity >= 1", false, "json.quantity = 0"),
        ];
        o.steps = vec![create, verify];
        let fields = logged(&o);
        assert_eq!(fields["step"], "verify", "{fields}");
        assert_eq!(fields["expectation"], "json.quantity >= 1", "{fields}");
        assert_eq!(fields["actual"], "json.quantity = 0", "{fields}");
    }

    #[test]
    fn a_run_failed_for_another_reason_names_no_expectation() {
        let mut o = failed_outcome(FailureReason::Timeout, "no response within 2s");
        // An expectation judged before the deadline is not the reason.
        o.assertions = vec![expectation("status == 200", false, "status = 503")];
        let fields = logged(&o);
        assert_eq!(fields["reason"], "timeout", "{fields}");
        for key in ["expectation", "actual", "step"] {
            assert!(fields.get(key).is_none(), "{key}: {fields}");
        }
        // A passing run logs no failure at all.
        let ids = crate::tagging::RunIds::generate();
        let mut ok = Outcome::new("orders", "prod", "http", &ids);
        ok.success = true;
        assert_eq!(logged(&ok)["message"], "run passed");
    }
}
