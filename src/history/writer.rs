//! The history's one writer: a thread of its own fed by a bounded channel,
//! so the async runtime never waits on the disk. It batches what arrives
//! within a second into one transaction, keeps the current minute of each
//! series in memory (rewritten with each batch, so a `kill -9` loses at
//! most the last batch), rolls finished hours up and enforces retention
//! with bounded work per pass.

use super::store::{self, Retention, RunRow, Tallies, Transition, Writer};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant};

/// Messages waiting for the writer; beyond this they are dropped and
/// counted (the daemon never waits on its history).
pub const QUEUE: usize = 8192;
/// How long the writer gathers messages into one transaction.
const BATCH: Duration = Duration::from_secs(1);
/// How long the writer sleeps between drains while gathering a batch: the
/// longest a flush (a reader's request) waits for it.
const GATHER_SLICE: Duration = Duration::from_millis(20);
/// How often the open minutes are written (runs are written every batch).
const MINUTES_EVERY: Duration = Duration::from_secs(5);
/// How often roll-ups and retention run.
const UPKEEP: Duration = Duration::from_secs(10);
/// How often retention runs (with every upkeep pass it cost 3 % of the
/// daemon at 1,000 pairs: three statements per series, mostly deleting
/// nothing), and at closing.
const PRUNE_EVERY: Duration = Duration::from_secs(300);
/// Rows deleted per table and series per retention pass.
const PRUNE_BUDGET: usize = 5_000;
/// A minute is rolled into its hour this long after the hour ends (runs
/// that started in it may still be finishing).
const GRACE_MINUTES: i64 = 5;

/// The wall clock in Unix milliseconds (tests pass a fast one).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// What one run adds: its rows and each series' tallies.
#[derive(Debug, Default)]
pub struct Entry {
    pub runs: Vec<RunRow>,
    /// (step, minute, tallies) of each series the run touched.
    pub minutes: Vec<(String, i64, Tallies)>,
    pub probe: String,
    pub environment: String,
}

/// A pair's state change.
pub struct Changed {
    pub probe: String,
    pub environment: String,
    pub transition: Transition,
}

/// The values a run kept for the next one.
pub struct Kept {
    pub probe: String,
    pub environment: String,
    pub values: BTreeMap<String, serde_json::Value>,
    pub at_ms: i64,
}

/// What the writer is sent. Every variant is small (a pointer or two):
/// the queue's [`QUEUE`] slots are allocated, and touched, when it is made,
/// so a 136-byte message would hold ~1.1 MiB resident from the start.
pub enum Msg {
    Run(Box<Entry>),
    Transition(Box<Changed>),
    Keep(Box<Kept>),
    /// Commits what is pending and answers.
    Flush(std::sync::mpsc::Sender<()>),
    /// Makes the connection refuse writes (tests).
    RefuseWrites,
}

/// Counters the daemon publishes.
#[derive(Debug, Default)]
pub struct Health {
    pub dropped: AtomicU64,
    pub write_failures: AtomicU64,
    pub written_runs: AtomicU64,
    /// The last commit failed (cleared by the next that succeeds).
    pub failing: AtomicBool,
}

/// The sending half; cheap to clone.
#[derive(Clone)]
pub struct Sender {
    tx: SyncSender<Msg>,
    pub health: Arc<Health>,
}

impl Sender {
    /// Hands `msg` to the writer without waiting; a full queue drops it.
    pub fn send(&self, msg: Msg) {
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.health.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits (blocking) until everything sent before is committed, or the
    /// writer is gone.
    pub fn flush_blocking(&self, timeout: Duration) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(timeout);
        }
    }
}

/// Starts the writer thread on an open store. The thread ends when every
/// [`Sender`] is dropped, after committing what it holds.
pub fn spawn(
    writer: Writer,
    retention: Retention,
    now_ms: Clock,
) -> std::io::Result<(Sender, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    let health = Arc::new(Health::default());
    let h = health.clone();
    let handle = std::thread::Builder::new()
        .name("synthmon-history".into())
        .spawn(move || run(writer, rx, &h, retention, now_ms))?;
    Ok((Sender { tx, health }, handle))
}

/// What of an open minute is not written yet.
#[derive(Debug, Clone, Copy, Default)]
struct Dirty {
    counts: bool,
    latencies: bool,
}

/// A minute still open: its number, tallies and what is not written yet.
type OpenMinute = (i64, (Tallies, Dirty));

struct State {
    /// Each series' minutes still open: minute → tallies, and what of them
    /// is not written yet.
    /// One or two minutes per series: a `Vec`, since a `BTreeMap`'s first
    /// node holds room for eleven (~0.8 KB a series).
    /// Keyed by the series' id in the store.
    open: HashMap<i64, Vec<OpenMinute>>,
    /// When the open minutes were last written.
    minutes_written: Instant,
}

fn run(
    mut writer: Writer,
    rx: Receiver<Msg>,
    health: &Health,
    retention: Retention,
    now_ms: Clock,
) {
    let mut state = State {
        open: HashMap::new(),
        minutes_written: Instant::now(),
    };
    let mut pending: Vec<Msg> = Vec::new();
    let mut last_upkeep = Instant::now();
    let mut last_prune: Option<Instant> = None;
    let mut closed = false;
    while !closed {
        // Gather for up to a second after the first message.
        match rx.recv_timeout(UPKEEP) {
            Ok(m) => pending.push(m),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => closed = true,
        }
        // Then in slices: sleeping and draining what came meanwhile, rather
        // than blocking on each message, spares the daemon a futex wake
        // per run (7 % of its CPU at 1,000 runs/s).
        let until = Instant::now() + BATCH;
        'gather: while !closed && !pending.is_empty() && pending.len() < QUEUE {
            loop {
                if matches!(pending.last(), Some(Msg::Flush(_))) || pending.len() >= QUEUE {
                    break 'gather;
                }
                match rx.try_recv() {
                    Ok(m) => pending.push(m),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        closed = true;
                        break 'gather;
                    }
                }
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(GATHER_SLICE));
        }
        let mut answers = Vec::new();
        match commit(
            &mut writer,
            &mut state,
            &mut pending,
            &mut answers,
            (now_ms(), closed),
        ) {
            Ok(n) => {
                health.written_runs.fetch_add(n, Ordering::Relaxed);
                if health.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("history: writing again");
                }
            }
            Err(e) => {
                health.write_failures.fetch_add(1, Ordering::Relaxed);
                if !health.failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(error = %crate::net::error::describe(&e), "history: a batch could not be written and is lost");
                }
            }
        }
        for a in answers {
            let _ = a.send(());
        }
        if last_upkeep.elapsed() >= UPKEEP || closed {
            last_upkeep = Instant::now();
            let prune = closed || last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY);
            if prune {
                last_prune = Some(Instant::now());
            }
            upkeep(&mut writer, &retention, now_ms(), prune);
        }
    }
}

/// Writes `pending` in one transaction; returns the number of runs written.
fn commit(
    writer: &mut Writer,
    state: &mut State,
    pending: &mut Vec<Msg>,
    answers: &mut Vec<std::sync::mpsc::Sender<()>>,
    (now_ms, closing): (i64, bool),
) -> Result<u64, store::Error> {
    let mut refuse = false;
    let mut runs = 0;
    let msgs: Vec<Msg> = std::mem::take(pending);
    // Answered once this batch is committed or counted as failed, even
    // when it fails before reaching them.
    answers.extend(msgs.iter().filter_map(|m| match m {
        Msg::Flush(answer) => Some(answer.clone()),
        _ => None,
    }));
    let current_minute = store::minute_of(now_ms);
    let mut batch = writer.batch()?;
    for msg in msgs {
        match msg {
            Msg::Run(entry) => {
                for r in &entry.runs {
                    batch.run(r)?;
                    runs += 1;
                }
                for (step, minute, t) in entry.minutes {
                    let series = batch.series_id(&entry.probe, &entry.environment, &step)?;
                    let open = state.open.entry(series).or_default();
                    if !open.iter().any(|(m, _)| *m == minute) {
                        // A minute this writer no longer holds (or never
                        // held, before a restart): add to what is stored.
                        let stored = batch.stored_minute(series, minute)?;
                        // Exactly: one minute open per series, two
                        // around a minute's turn.
                        open.reserve_exact(1);
                        open.push((minute, (stored, Dirty::default())));
                    }
                    if let Some((_, (held, dirty))) = open.iter_mut().find(|(m, _)| *m == minute) {
                        held.runs += t.runs;
                        held.failed += t.failed;
                        held.degraded += t.degraded;
                        held.latencies.merge(&t.latencies);
                        dirty.counts = true;
                        dirty.latencies |= !t.latencies.is_empty();
                    }
                }
            }
            Msg::Transition(c) => batch.transition(&c.probe, &c.environment, &c.transition)?,
            Msg::Keep(k) => batch.keep(&k.probe, &k.environment, &k.values, k.at_ms)?,
            Msg::Flush(_) => {}
            Msg::RefuseWrites => refuse = true,
        }
    }
    // Open minutes' counts are written with every batch; their latencies
    // (each write encodes a histogram) every few seconds, at once when
    // asked to flush, when closing, and for minutes about to be let go.
    let all = closing || !answers.is_empty() || state.minutes_written.elapsed() >= MINUTES_EVERY;
    if all {
        state.minutes_written = Instant::now();
    }
    for (series, minutes) in &mut state.open {
        for (minute, (t, dirty)) in minutes.iter_mut() {
            let final_ = *minute + 2 < current_minute;
            if dirty.latencies && (all || final_) {
                batch.series_minute(*series, *minute, t)?;
                *dirty = Dirty::default();
            } else if dirty.counts {
                batch.minute_counts(*series, *minute, t)?;
                dirty.counts = false;
            }
        }
        // Minutes more than two behind are final: stop holding them.
        minutes.retain(|(m, _)| *m + 2 >= current_minute);
    }
    state.open.retain(|_, m| !m.is_empty());
    batch.commit()?;
    if refuse {
        writer.refuse_writes();
    }
    Ok(runs)
}

fn upkeep(writer: &mut Writer, retention: &Retention, now_ms: i64, prune: bool) {
    let now_minute = store::minute_of(now_ms);
    // Catch up a few hours per pass after a long stop; one is the norm.
    for _ in 0..24 {
        match writer.roll_up(now_minute, GRACE_MINUTES) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                tracing::warn!(error = %crate::net::error::describe(&e), "history: roll-up failed");
                break;
            }
        }
    }
    if !prune {
        return;
    }
    match writer.prune(now_ms, retention, PRUNE_BUDGET) {
        Ok(0) => {}
        Ok(n) => {
            tracing::debug!(rows = n, "history: pruned");
            writer.vacuum_some();
        }
        Err(e) => {
            tracing::warn!(error = %crate::net::error::describe(&e), "history: pruning failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Msg, QUEUE};

    #[test]
    fn a_queued_message_is_a_pointer_or_two() {
        // The queue's slots are all allocated and touched when it is made:
        // a message that grows (a variant holding its fields inline) makes
        // every daemon's resident size grow by QUEUE times as much.
        let size = std::mem::size_of::<Msg>();
        assert!(size <= 24, "{size} bytes per message");
        assert!(QUEUE * (size + 8) <= 256 * 1024);
    }
}
