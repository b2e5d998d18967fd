//! The outbox's dispatcher: one worker task per receiver taking due
//! deliveries from the store, sending them, and recording the result;
//! retries with exponential backoff and full jitter, `Retry-After`, and the
//! per-receiver counters.
//!
//! Every call into the store goes through [`blocking`], i.e. runs on
//! tokio's blocking pool, never on a worker's async task.

use super::store::{Delivery, Outbox, OutboxError, idempotency_key};
use crate::alert::Notification;
use crate::alert::deliver::{Attempt, SharedReceiver};
use crate::net::error::describe;
use chrono::Utc;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a worker waits after the outbox itself failed (disk full, I/O
/// error) before trying again, so a broken store is not hammered and a
/// receiver is not re-sent to in a tight loop.
const STORE_RETRY: Duration = Duration::from_secs(5);

/// How the dispatcher retries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DispatchOptions {
    /// The first retry's backoff ceiling; it doubles per attempt.
    pub base: Duration,
    /// The largest backoff ceiling.
    pub cap: Duration,
    /// The longest `Retry-After` honoured; a longer one is cut to this.
    pub max_retry_after: Duration,
    /// How many due deliveries a worker takes from the outbox at once.
    pub batch: usize,
    /// How long an idle worker sleeps before looking again without a nudge.
    pub idle_recheck: Duration,
}

impl Default for DispatchOptions {
    fn default() -> Self {
        DispatchOptions {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
            max_retry_after: Duration::from_secs(3600),
            batch: 16,
            idle_recheck: Duration::from_secs(30),
        }
    }
}

impl DispatchOptions {
    /// The wait before the next attempt after `attempts` failed ones:
    /// "full jitter", i.e. `jitter × min(cap, base × 2^(attempts-1))` with
    /// `jitter` drawn uniformly from [0, 1), but never less than
    /// `retry_after` (itself cut to `max_retry_after`).
    pub fn backoff(&self, attempts: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        let doublings = attempts.saturating_sub(1).min(31);
        let ceiling = self.base.saturating_mul(1_u32 << doublings).min(self.cap);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let delay = ceiling.mul_f64(jitter);
        match retry_after {
            Some(wait) => delay.max(wait.min(self.max_retry_after)),
            None => delay,
        }
    }
}

/// [`DispatchOptions::backoff`] with the default options (base 1 s, cap
/// 5 min, `Retry-After` honoured up to 1 h).
pub fn backoff(attempts: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
    DispatchOptions::default().backoff(attempts, retry_after, jitter)
}

/// Delivery counters of one receiver since the dispatcher started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Deliveries accepted.
    pub delivered: u64,
    /// Retries scheduled after a transient failure.
    pub retried: u64,
    /// Deliveries made dead letters.
    pub dead: u64,
    /// Attempts that failed, transiently or permanently.
    pub failed_attempts: u64,
}

/// Delivery counters per receiver name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DispatchStats {
    pub receivers: BTreeMap<String, ReceiverStats>,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    retried: AtomicU64,
    dead: AtomicU64,
    failed_attempts: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ReceiverStats {
        ReceiverStats {
            delivered: self.delivered.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dead: self.dead.load(Ordering::Relaxed),
            failed_attempts: self.failed_attempts.load(Ordering::Relaxed),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What a worker shares with the dispatcher.
#[derive(Debug)]
struct WorkerHandle {
    name: String,
    wake: Arc<Notify>,
    counters: Arc<Counters>,
}

/// Everything one worker task owns.
struct Worker {
    outbox: Arc<Outbox>,
    receiver: SharedReceiver,
    client: reqwest::Client,
    options: DispatchOptions,
    wake: Arc<Notify>,
    counters: Arc<Counters>,
    /// Stop taking new deliveries.
    stop: CancellationToken,
    /// Abandon an attempt in flight (it stays pending).
    abort: CancellationToken,
}

/// What a worker does after one delivery.
enum Next {
    /// Go on with the next due delivery.
    Continue,
    /// A retry was scheduled: younger deliveries wait behind it.
    HoldBack,
    /// The outbox could not record the result: pause before anything else.
    StoreFailed,
    /// Shutdown abandoned the attempt.
    Abandoned,
}

/// Runs `f` on the outbox on tokio's blocking pool.
pub async fn blocking<T, F>(outbox: &Arc<Outbox>, f: F) -> Result<T, OutboxError>
where
    T: Send + 'static,
    F: FnOnce(&Outbox) -> Result<T, OutboxError> + Send + 'static,
{
    let outbox = Arc::clone(outbox);
    tokio::task::spawn_blocking(move || f(&outbox))
        .await
        .map_err(OutboxError::Store)?
}

/// The delivery workers: one task per receiver.
#[derive(Debug)]
pub struct Dispatcher {
    outbox: Arc<Outbox>,
    workers: Vec<WorkerHandle>,
    tracker: TaskTracker,
    stop: CancellationToken,
    abort: CancellationToken,
}

impl Dispatcher {
    /// Starts one worker per receiver (on the current tokio runtime) with
    /// the default options. The workers stop when `stop` is cancelled, on
    /// [`Dispatcher::shutdown`], or when the dispatcher is dropped; what
    /// they were sending then stays pending.
    pub fn start<R: Into<SharedReceiver>>(
        outbox: Arc<Outbox>,
        receivers: Vec<R>,
        stop: CancellationToken,
    ) -> Result<Dispatcher, OutboxError> {
        Self::start_with(outbox, receivers, stop, DispatchOptions::default())
    }

    /// [`Dispatcher::start`] with explicit retry options. Errs when two
    /// receivers share a name or the HTTP client cannot be built.
    pub fn start_with<R: Into<SharedReceiver>>(
        outbox: Arc<Outbox>,
        receivers: Vec<R>,
        stop: CancellationToken,
        options: DispatchOptions,
    ) -> Result<Dispatcher, OutboxError> {
        let receivers: Vec<SharedReceiver> = receivers.into_iter().map(Into::into).collect();
        let mut names = BTreeSet::new();
        for r in &receivers {
            if !names.insert(r.name()) {
                return Err(OutboxError::DuplicateReceiver(r.name().to_owned()));
            }
        }
        let client = crate::alert::deliver::client().map_err(OutboxError::Client)?;
        let stop = stop.child_token();
        let abort = CancellationToken::new();
        let tracker = TaskTracker::new();
        let mut workers = Vec::with_capacity(receivers.len());
        for receiver in receivers {
            let wake = Arc::new(Notify::new());
            let counters = Arc::new(Counters::default());
            workers.push(WorkerHandle {
                name: receiver.name().to_owned(),
                wake: Arc::clone(&wake),
                counters: Arc::clone(&counters),
            });
            let worker = Worker {
                outbox: Arc::clone(&outbox),
                receiver,
                client: client.clone(),
                options,
                wake,
                counters,
                stop: stop.clone(),
                abort: abort.clone(),
            };
            tracker.spawn(worker.run());
        }
        tracker.close();
        Ok(Dispatcher {
            outbox,
            workers,
            tracker,
            stop,
            abort,
        })
    }

    /// Tells every worker that new deliveries were enqueued.
    pub fn nudge(&self) {
        for w in &self.workers {
            // A stored permit: a worker that is busy now looks again after.
            w.wake.notify_one();
        }
    }

    /// Enqueues `batch` for `receivers` (on the blocking pool) and nudges
    /// the workers.
    pub async fn enqueue(
        &self,
        receivers: Vec<String>,
        batch: Vec<Notification>,
    ) -> Result<(), OutboxError> {
        let now = Utc::now();
        blocking(&self.outbox, move |o| o.enqueue(&receivers, &batch, now)).await?;
        self.nudge();
        Ok(())
    }

    /// Delivery counters per receiver since start.
    pub fn stats(&self) -> DispatchStats {
        DispatchStats {
            receivers: self
                .workers
                .iter()
                .map(|w| (w.name.clone(), w.counters.snapshot()))
                .collect(),
        }
    }

    /// Stops taking new deliveries and waits up to `deadline` for attempts
    /// in flight; past it, abandons them (they stay pending and are sent
    /// again after the next start).
    pub async fn shutdown(self, deadline: Duration) {
        self.stop.cancel();
        if tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "notification deliveries still in flight after {deadline:?}; abandoning them (they are sent again after restart)"
            );
            self.abort.cancel();
            self.tracker.wait().await;
        }
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        // Without a shutdown, workers stop at once; what they were sending
        // stays pending.
        self.stop.cancel();
        self.abort.cancel();
    }
}

impl Worker {
    async fn run(self) {
        let name = self.receiver.name().to_owned();
        let kind = self.receiver.kind();
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            let now = Utc::now();
            let limit = self.options.batch.max(1);
            let receiver = name.clone();
            let due = blocking(&self.outbox, move |o| o.due(&receiver, now, limit)).await;
            let due = match due {
                Ok(due) => due,
                Err(error) => {
                    tracing::error!(receiver_kind = kind, receiver = %name, "{}", describe(&error));
                    if self.pause(STORE_RETRY).await {
                        return;
                    }
                    continue;
                }
            };
            if due.is_empty() {
                let receiver = name.clone();
                let wait = match blocking(&self.outbox, move |o| o.next_due(&receiver)).await {
                    Ok(Some(at)) => (at - Utc::now())
                        .to_std()
                        .unwrap_or(Duration::ZERO)
                        .min(self.options.idle_recheck),
                    Ok(None) => self.options.idle_recheck,
                    Err(error) => {
                        tracing::error!(receiver_kind = kind, receiver = %name, "{}", describe(&error));
                        STORE_RETRY
                    }
                };
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            for delivery in due {
                if self.stop.is_cancelled() {
                    return;
                }
                match self.deliver(delivery).await {
                    Next::Continue => {}
                    Next::HoldBack => break,
                    Next::StoreFailed => {
                        if self.pause(STORE_RETRY).await {
                            return;
                        }
                        break;
                    }
                    Next::Abandoned => return,
                }
            }
        }
    }

    /// Sleeps for `wait`; true if the dispatcher stopped meanwhile.
    async fn pause(&self, wait: Duration) -> bool {
        tokio::select! {
            () = self.stop.cancelled() => true,
            () = tokio::time::sleep(wait) => false,
        }
    }

    /// Stores a result; on failure logs it and tells the loop to pause.
    async fn record<F>(&self, f: F) -> Option<Next>
    where
        F: FnOnce(&Outbox) -> Result<(), OutboxError> + Send + 'static,
    {
        match blocking(&self.outbox, f).await {
            Ok(()) => None,
            Err(error) => {
                tracing::error!(
                    receiver_kind = self.receiver.kind(),
                    receiver = %self.receiver.name(),
                    "{}",
                    describe(&error)
                );
                Some(Next::StoreFailed)
            }
        }
    }

    /// Makes the attempts one delivery needs (one, or one per notification
    /// for PagerDuty, resuming after those already accepted) and records
    /// the result.
    async fn deliver(&self, delivery: Delivery) -> Next {
        let name = self.receiver.name();
        let kind = self.receiver.kind();
        let id = delivery.id;
        let parts: Vec<&[Notification]> = if self.receiver.one_request_per_notification() {
            delivery.batch.chunks(1).collect()
        } else {
            vec![delivery.batch.as_slice()]
        };
        let first = usize::try_from(delivery.parts_done).unwrap_or(usize::MAX);
        for (index, part) in parts.iter().enumerate().skip(first) {
            let key = if parts.len() == 1 {
                delivery.idempotency_key.clone()
            } else {
                idempotency_key(part)
            };
            let attempt = tokio::select! {
                biased;
                () = self.abort.cancelled() => return Next::Abandoned,
                a = self.receiver.deliver(&self.client, part, &key) => a,
            };
            match attempt {
                Attempt::Delivered if index + 1 < parts.len() => {
                    let done = u32::try_from(index + 1).unwrap_or(u32::MAX);
                    if let Some(next) = self.record(move |o| o.mark_progress(id, done)).await {
                        return next;
                    }
                }
                Attempt::Delivered => {
                    bump(&self.counters.delivered);
                    tracing::debug!(
                        receiver_kind = kind,
                        receiver = name,
                        id,
                        attempts = delivery.attempts + 1,
                        "notification delivered"
                    );
                    let now = Utc::now();
                    return self
                        .record(move |o| o.mark_delivered(id, now))
                        .await
                        .unwrap_or(Next::Continue);
                }
                Attempt::Transient { error, retry_after } => {
                    bump(&self.counters.failed_attempts);
                    bump(&self.counters.retried);
                    let attempts = delivery.attempts.saturating_add(1);
                    let wait = self
                        .options
                        .backoff(attempts, retry_after, rand::random::<f64>());
                    let next_at = Utc::now()
                        + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
                    tracing::warn!(
                        receiver_kind = kind,
                        receiver = name,
                        id,
                        attempts,
                        retry_in = ?wait,
                        "notification delivery failed, will retry: {error}"
                    );
                    return self
                        .record(move |o| o.mark_retry(id, attempts, next_at, &error))
                        .await
                        .unwrap_or(Next::HoldBack);
                }
                Attempt::Permanent { error } => {
                    bump(&self.counters.failed_attempts);
                    bump(&self.counters.dead);
                    tracing::error!(
                        receiver_kind = kind,
                        receiver = name,
                        id,
                        idempotency_key = %delivery.idempotency_key,
                        "notification delivery failed permanently, dead letter: {error}"
                    );
                    let now = Utc::now();
                    return self
                        .record(move |o| o.mark_dead(id, &error, now))
                        .await
                        .unwrap_or(Next::Continue);
                }
            }
        }
        // Every part was already accepted (a crash came between the last
        // part and marking the row): nothing left to send.
        bump(&self.counters.delivered);
        let now = Utc::now();
        self.record(move |o| o.mark_delivered(id, now))
            .await
            .unwrap_or(Next::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_table() {
        let o = DispatchOptions::default();
        let s = Duration::from_secs;
        // (attempts, retry-after, jitter) → wait
        let table = [
            (1, None, 1.0, s(1)),
            (1, None, 0.5, Duration::from_millis(500)),
            (1, None, 0.0, s(0)),
            (2, None, 1.0, s(2)),
            (4, None, 1.0, s(8)),
            (9, None, 1.0, s(256)),
            (10, None, 1.0, s(300)),
            (1_000, None, 1.0, s(300)),
            (u32::MAX, None, 0.5, s(150)),
            (0, None, 1.0, s(1)),
            (3, None, f64::NAN, s(4)),
            (3, None, 7.0, s(4)),
            (1, Some(s(10)), 0.1, s(10)),
            (9, Some(s(10)), 1.0, s(256)),
            (1, Some(s(7_200)), 0.0, s(3_600)),
        ];
        for (attempts, retry_after, jitter, want) in table {
            assert_eq!(
                o.backoff(attempts, retry_after, jitter),
                want,
                "backoff({attempts}, {retry_after:?}, {jitter})"
            );
        }
        assert_eq!(backoff(2, None, 1.0), s(2));
    }
}
