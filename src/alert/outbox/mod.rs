//! The durable outbox and the delivery workers.
//!
//! # Guarantees
//!
//! - **Written before sent.** [`Outbox::enqueue`] stores one delivery row
//!   per receiver, all in one SQLite transaction, and returns only once it
//!   is committed; nothing is sent for a notification that is not stored.
//! - **At least once, per receiver.** A row stays `pending` until its
//!   receiver answers 2xx, and is then marked `delivered`. A crash (even
//!   `kill -9`) between sending and marking means it is sent again after
//!   restart, with the same `Idempotency-Key`, so receivers can drop the
//!   duplicate (PagerDuty does, by `dedup_key`).
//! - **Idempotent enqueue.** A row is unique per (receiver, idempotency
//!   key): enqueuing the same batch twice, e.g. when the alert engine
//!   replays after a restart, stores it once.
//! - **Transient vs permanent.** 408, 429, 5xx, network errors and the
//!   receiver's timeout are transient: retried with exponential backoff and
//!   full jitter ([`DispatchOptions::backoff`]), never sooner than a
//!   `Retry-After` says (capped at one hour), forever. Any other status is
//!   permanent: the row becomes a dead letter (logged at error, counted).
//!   A resolve is retried exactly like a trigger.
//! - **Receivers are independent.** Each receiver has its own rows and its
//!   own worker task, so a receiver that is down or hangs delays nothing
//!   for the others and never causes a re-send to them.
//! - **In order, per receiver.** A receiver's deliveries go out oldest
//!   first, and a delivery waiting for its retry holds back the younger
//!   ones of the same receiver (see [`Outbox::due`]), so a resolve never
//!   overtakes its trigger.
//! - **What survives `kill -9`:** every committed row, with its attempt
//!   count and next retry time; the alert engine's snapshot saved with
//!   [`Outbox::save_state`]. Only in-memory counters ([`DispatchStats`]) and
//!   in-flight attempts are lost, and an in-flight attempt is simply made
//!   again.
//! - **Bounded disk.** Delivered and dead rows are removed by
//!   [`Outbox::prune`]; pending rows are never pruned.

use super::Notification;
pub use super::deliver::{Attempt, Receiver, SharedReceiver};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

/// How long a worker waits after the outbox itself failed (disk full, I/O
/// error) before trying again, so a broken store is not hammered and a
/// receiver is not re-sent to in a tight loop.
const STORE_RETRY: Duration = Duration::from_secs(5);

/// One receiver's queue: its name, how many deliveries are pending, and
/// when the oldest of them was enqueued.
pub type ReceiverDepth = (String, u64, Option<DateTime<Utc>>);

/// One pending delivery: a batch for one receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: i64,
    pub receiver: String,
    /// The same for every attempt, also across restarts.
    pub idempotency_key: String,
    pub batch: Vec<Notification>,
    /// Attempts made so far.
    pub attempts: u32,
    /// For receivers that take one request per notification (PagerDuty):
    /// how many of the batch's notifications were already accepted.
    pub parts_done: u32,
    pub created_at: DateTime<Utc>,
}

/// Where a delivery row is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Delivered,
    Dead,
}

/// What the outbox knows about one delivery row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryStatus {
    pub state: DeliveryState,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// The idempotency key of a batch: the notification's own key for a batch
/// of one, else `batch-` and 16 hex digits of FNV-1a over the sorted keys
/// of its notifications (so the same group has the same key, whatever its
/// order).
pub fn idempotency_key(batch: &[Notification]) -> String {
    match batch {
        [one] => one.idempotency_key(),
        _ => {
            let mut keys: Vec<String> = batch.iter().map(Notification::idempotency_key).collect();
            keys.sort_unstable();
            format!(
                "batch-{:016x}",
                crate::schedule::stable_hash(keys.join("\n").as_bytes())
            )
        }
    }
}

/// The durable outbox: an SQLite database in the state directory.
///
/// Calls block on disk I/O; from async code, call them through
/// `tokio::task::spawn_blocking` (the [`Dispatcher`] does).
#[derive(Debug)]
pub struct Outbox {
    conn: Mutex<Connection>,
}

/// Milliseconds since the epoch, rounded down.
fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Milliseconds since the epoch, rounded up: a retry time stored this way
/// is never earlier than asked for.
fn ms_ceil(t: DateTime<Utc>) -> i64 {
    let floor = t.timestamp_millis();
    if t.timestamp_subsec_nanos() % 1_000_000 == 0 {
        floor
    } else {
        floor.saturating_add(1)
    }
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH)
}

fn db_error(what: &str) -> impl Fn(rusqlite::Error) -> String + '_ {
    move |e| format!("outbox: cannot {what}: {e}")
}

impl Outbox {
    /// Opens (creating if needed) the outbox database at `path` and brings
    /// its schema to the current version. Refuses a database written by a
    /// newer synthmon.
    pub fn open(path: &Path) -> Result<Outbox, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("outbox: cannot create {}: {e}", dir.display()))?;
        }
        let conn = Connection::open(path)
            .map_err(|e| format!("outbox: cannot open {}: {e}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(db_error("set the busy timeout"))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(db_error("switch to WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(format!(
                "outbox: {} does not support WAL (journal mode {mode})",
                path.display()
            ));
        }
        // Killing the process (even with SIGKILL) loses nothing under
        // `synchronous = NORMAL` in WAL mode: a commit is in the WAL file,
        // i.e. in the OS page cache, before it returns. FULL adds an fsync
        // per commit, which makes "written before sent" hold across a power
        // loss or kernel crash too (a VM host reboot is a real way to lose
        // an alert otherwise). The outbox sees a few writes per
        // notification, so the fsyncs are cheap.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db_error("set synchronous"))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db_error("read the schema version"))?;
        match version {
            0 => conn
                .execute_batch(&format!(
                    "BEGIN;
                     CREATE TABLE deliveries (
                         id              INTEGER PRIMARY KEY AUTOINCREMENT,
                         receiver        TEXT    NOT NULL,
                         idempotency_key TEXT    NOT NULL,
                         batch           TEXT    NOT NULL,
                         state           TEXT    NOT NULL DEFAULT 'pending'
                                         CHECK (state IN ('pending', 'delivered', 'dead')),
                         attempts        INTEGER NOT NULL DEFAULT 0,
                         parts_done      INTEGER NOT NULL DEFAULT 0,
                         created_at      INTEGER NOT NULL,
                         next_at         INTEGER NOT NULL,
                         finished_at     INTEGER,
                         last_error      TEXT,
                         UNIQUE (receiver, idempotency_key)
                     );
                     CREATE INDEX deliveries_due ON deliveries (receiver, state, next_at);
                     CREATE INDEX deliveries_finished ON deliveries (state, finished_at);
                     CREATE TABLE kv (
                         key        TEXT    PRIMARY KEY,
                         json       TEXT    NOT NULL,
                         updated_at INTEGER NOT NULL
                     );
                     PRAGMA user_version = {SCHEMA_VERSION};
                     COMMIT;"
                ))
                .map_err(db_error("create the schema"))?,
            SCHEMA_VERSION => {}
            newer => {
                return Err(format!(
                    "outbox: {} has schema version {newer}, newer than this synthmon knows ({SCHEMA_VERSION})",
                    path.display()
                ));
            }
        }
        Ok(Outbox {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no half-done transaction
        // (rusqlite rolls back on drop), so the connection is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `batch` once for each of `receivers`, in one transaction,
    /// due at `now`. Enqueuing the same batch for the same receiver again is
    /// a no-op. Errs on an empty batch.
    pub fn enqueue(
        &self,
        receivers: &[String],
        batch: &[Notification],
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        if batch.is_empty() {
            return Err("outbox: cannot enqueue an empty batch".to_owned());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_error("begin"))?;
        insert_batch(&tx, receivers, batch, now)?;
        tx.commit().map_err(db_error("commit"))
    }

    /// The deliveries of `receiver` due at `now`, oldest first, at most
    /// `limit`. Keeps order: a pending delivery that is not due yet (it
    /// waits for a retry) holds back every younger one of the same
    /// receiver. A row whose batch cannot be decoded (which only a corrupt
    /// file could cause) is made a dead letter here and skipped.
    pub fn due(
        &self,
        receiver: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Delivery>, String> {
        let conn = self.conn();
        let rows: Vec<(i64, String, String, i64, i64, i64)> = {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, idempotency_key, batch, attempts, parts_done, created_at
                     FROM deliveries
                     WHERE receiver = ?1 AND state = 'pending' AND next_at <= ?2
                       AND id < COALESCE(
                           (SELECT MIN(id) FROM deliveries
                            WHERE receiver = ?1 AND state = 'pending' AND next_at > ?2),
                           9223372036854775807)
                     ORDER BY id
                     LIMIT ?3",
                )
                .map_err(db_error("prepare a query"))?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            stmt.query_map(params![receiver, ms(now), limit], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .and_then(|rows| rows.collect::<Result<_, _>>())
            .map_err(db_error("read due deliveries"))?
        };
        let mut out = Vec::with_capacity(rows.len());
        for (id, idempotency_key, batch, attempts, parts_done, created_at) in rows {
            match serde_json::from_str::<Vec<Notification>>(&batch) {
                Ok(batch) => out.push(Delivery {
                    id,
                    receiver: receiver.to_owned(),
                    idempotency_key,
                    batch,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    parts_done: u32::try_from(parts_done).unwrap_or(0),
                    created_at: from_ms(created_at),
                }),
                Err(e) => {
                    let error = format!("stored batch cannot be decoded: {e}");
                    tracing::error!(receiver, id, "outbox: dead letter: {error}");
                    conn.execute(
                        "UPDATE deliveries SET state = 'dead', finished_at = ?2, last_error = ?3
                         WHERE id = ?1",
                        params![id, ms(now), error],
                    )
                    .map_err(db_error("mark a delivery dead"))?;
                }
            }
        }
        Ok(out)
    }

    /// When [`Outbox::due`] will next return something for `receiver`: the
    /// due time of its oldest pending delivery (younger ones wait behind
    /// it), or `None` when nothing is pending.
    pub fn next_due(&self, receiver: &str) -> Result<Option<DateTime<Utc>>, String> {
        self.conn()
            .query_row(
                "SELECT next_at FROM deliveries WHERE receiver = ?1 AND state = 'pending'
                 ORDER BY id LIMIT 1",
                params![receiver],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|t| t.map(from_ms))
            .map_err(db_error("read the next due time"))
    }

    fn finish(
        &self,
        id: i64,
        state: &str,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        self.conn()
            .execute(
                "UPDATE deliveries
                 SET state = ?2, attempts = attempts + 1, finished_at = ?3,
                     last_error = COALESCE(?4, last_error)
                 WHERE id = ?1 AND state = 'pending'",
                params![id, state, ms(now), error],
            )
            .map(|_| ())
            .map_err(db_error("finish a delivery"))
    }

    /// Marks a delivery as accepted by its receiver (counting that attempt).
    pub fn mark_delivered(&self, id: i64, now: DateTime<Utc>) -> Result<(), String> {
        self.finish(id, "delivered", None, now)
    }

    /// Records a failed attempt: `attempts` made so far, and when to try
    /// next (never earlier than `next_at`).
    pub fn mark_retry(
        &self,
        id: i64,
        attempts: u32,
        next_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), String> {
        self.conn()
            .execute(
                "UPDATE deliveries SET attempts = ?2, next_at = ?3, last_error = ?4
                 WHERE id = ?1 AND state = 'pending'",
                params![id, attempts, ms_ceil(next_at), error],
            )
            .map(|_| ())
            .map_err(db_error("schedule a retry"))
    }

    /// Makes a delivery a dead letter after a permanent failure (counting
    /// that attempt).
    pub fn mark_dead(&self, id: i64, error: &str, now: DateTime<Utc>) -> Result<(), String> {
        self.finish(id, "dead", Some(error), now)
    }

    /// Records that the first `parts_done` notifications of a
    /// one-request-per-notification delivery were accepted, so a retry
    /// resumes after them.
    pub fn mark_progress(&self, id: i64, parts_done: u32) -> Result<(), String> {
        self.conn()
            .execute(
                "UPDATE deliveries SET parts_done = ?2 WHERE id = ?1 AND state = 'pending'",
                params![id, parts_done],
            )
            .map(|_| ())
            .map_err(db_error("record progress"))
    }

    /// Pending deliveries per receiver: how many, and when the oldest was
    /// enqueued. Receivers with nothing pending are not listed.
    pub fn depth(&self) -> Result<Vec<ReceiverDepth>, String> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT receiver, COUNT(*), MIN(created_at) FROM deliveries
                 WHERE state = 'pending' GROUP BY receiver ORDER BY receiver",
            )
            .map_err(db_error("prepare a query"))?;
        stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                r.get::<_, Option<i64>>(2)?.map(from_ms),
            ))
        })
        .and_then(|rows| rows.collect())
        .map_err(db_error("count pending deliveries"))
    }

    /// How many dead letters `receiver` has (until they are pruned).
    pub fn dead_letters(&self, receiver: &str) -> Result<u64, String> {
        self.conn()
            .query_row(
                "SELECT COUNT(*) FROM deliveries WHERE receiver = ?1 AND state = 'dead'",
                params![receiver],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(db_error("count dead letters"))
    }

    /// The state of the delivery of `idempotency_key` to `receiver`.
    pub fn status(
        &self,
        receiver: &str,
        idempotency_key: &str,
    ) -> Result<Option<DeliveryStatus>, String> {
        self.conn()
            .query_row(
                "SELECT state, attempts, last_error FROM deliveries
                 WHERE receiver = ?1 AND idempotency_key = ?2",
                params![receiver, idempotency_key],
                |r| {
                    let state = match r.get::<_, String>(0)?.as_str() {
                        "delivered" => DeliveryState::Delivered,
                        "dead" => DeliveryState::Dead,
                        _ => DeliveryState::Pending,
                    };
                    Ok(DeliveryStatus {
                        state,
                        attempts: u32::try_from(r.get::<_, i64>(1)?).unwrap_or(u32::MAX),
                        last_error: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(db_error("read a delivery"))
    }

    /// Removes delivered and dead rows finished before `older_than`;
    /// pending rows always stay. Returns how many were removed.
    pub fn prune(&self, older_than: DateTime<Utc>) -> Result<u64, String> {
        self.conn()
            .execute(
                "DELETE FROM deliveries WHERE state != 'pending' AND finished_at < ?1",
                params![ms(older_than)],
            )
            .map(|n| n as u64)
            .map_err(db_error("prune"))
    }

    /// Enqueues every (receivers, batch) of one notification group and
    /// stores the alert engine's snapshot under `state_key`, all in one
    /// transaction: after a crash either both the notifications and the
    /// state that produced them are on disk, or neither is — so a restart
    /// neither loses a page nor sends one twice.
    pub fn commit_group(
        &self,
        groups: &[(Vec<String>, Vec<Notification>)],
        state_key: &str,
        state_json: &str,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_error("begin"))?;
        for (receivers, batch) in groups.iter().filter(|(_, b)| !b.is_empty()) {
            insert_batch(&tx, receivers, batch, now)?;
        }
        tx.execute(
            "INSERT INTO kv (key, json, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET json = excluded.json, updated_at = excluded.updated_at",
            params![state_key, state_json, ms(now)],
        )
        .map_err(db_error("save state"))?;
        tx.commit().map_err(db_error("commit"))
    }

    /// Stores `json` under `key` (the alert engine's snapshot), replacing
    /// what was there.
    pub fn save_state(&self, key: &str, json: &str) -> Result<(), String> {
        self.conn()
            .execute(
                "INSERT INTO kv (key, json, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET json = excluded.json, updated_at = excluded.updated_at",
                params![key, json, ms(Utc::now())],
            )
            .map(|_| ())
            .map_err(db_error("save state"))
    }

    /// What [`Outbox::save_state`] last stored under `key`.
    pub fn load_state(&self, key: &str) -> Result<Option<String>, String> {
        self.conn()
            .query_row("SELECT json FROM kv WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db_error("load state"))
    }
}

/// Inserts one delivery of `batch` per receiver, due at `now`, inside
/// `tx`; an existing (receiver, idempotency key) is left as it is.
fn insert_batch(
    tx: &rusqlite::Transaction<'_>,
    receivers: &[String],
    batch: &[Notification],
    now: DateTime<Utc>,
) -> Result<(), String> {
    let key = idempotency_key(batch);
    let json =
        serde_json::to_string(batch).map_err(|e| format!("outbox: cannot encode a batch: {e}"))?;
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO deliveries (receiver, idempotency_key, batch, created_at, next_at)
             VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT (receiver, idempotency_key) DO NOTHING",
        )
        .map_err(db_error("prepare an insert"))?;
    for receiver in receivers {
        insert
            .execute(params![receiver, key, json, ms(now)])
            .map_err(db_error("insert a delivery"))?;
    }
    Ok(())
}

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
async fn blocking<T, F>(outbox: &Arc<Outbox>, f: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce(&Outbox) -> Result<T, String> + Send + 'static,
{
    let outbox = Arc::clone(outbox);
    tokio::task::spawn_blocking(move || f(&outbox))
        .await
        .map_err(|e| format!("outbox: a storage task failed: {e}"))?
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
    ) -> Result<Dispatcher, String> {
        Self::start_with(outbox, receivers, stop, DispatchOptions::default())
    }

    /// [`Dispatcher::start`] with explicit retry options. Errs when two
    /// receivers share a name or the HTTP client cannot be built.
    pub fn start_with<R: Into<SharedReceiver>>(
        outbox: Arc<Outbox>,
        receivers: Vec<R>,
        stop: CancellationToken,
        options: DispatchOptions,
    ) -> Result<Dispatcher, String> {
        let receivers: Vec<SharedReceiver> = receivers.into_iter().map(Into::into).collect();
        let mut names = BTreeSet::new();
        for r in &receivers {
            if !names.insert(r.name()) {
                return Err(format!("two receivers are named {:?}", r.name()));
            }
        }
        let client = super::deliver::client()?;
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
    ) -> Result<(), String> {
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
                "webhook deliveries still in flight after {deadline:?}; abandoning them (they are sent again after restart)"
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
                    tracing::error!(receiver = %name, "{error}");
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
                        tracing::error!(receiver = %name, "{error}");
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
        F: FnOnce(&Outbox) -> Result<(), String> + Send + 'static,
    {
        match blocking(&self.outbox, f).await {
            Ok(()) => None,
            Err(error) => {
                tracing::error!(receiver = %self.receiver.name(), "{error}");
                Some(Next::StoreFailed)
            }
        }
    }

    /// Makes the attempts one delivery needs (one, or one per notification
    /// for PagerDuty, resuming after those already accepted) and records
    /// the result.
    async fn deliver(&self, delivery: Delivery) -> Next {
        let name = self.receiver.name();
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
                        receiver = name,
                        id,
                        attempts = delivery.attempts + 1,
                        "webhook delivered"
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
                        receiver = name,
                        id,
                        attempts,
                        retry_in = ?wait,
                        "webhook delivery failed, will retry: {error}"
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
                        receiver = name,
                        id,
                        idempotency_key = %delivery.idempotency_key,
                        "webhook delivery failed permanently, dead letter: {error}"
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
    use crate::alert::{AlertKind, Notice, fingerprint};
    use crate::config::Severity;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .unwrap_or_else(|e| panic!("{e}"))
            .with_timezone(&Utc)
    }

    fn notification(probe: &str, notice: Notice, sequence: u32) -> Notification {
        Notification {
            fingerprint: fingerprint(probe, "prod", AlertKind::Failing),
            notice,
            kind: AlertKind::Failing,
            probe: probe.into(),
            environment: "prod".into(),
            severity: Severity::Warning,
            labels: BTreeMap::new(),
            tags: vec![],
            starts_at: at("2025-01-01T00:00:00Z"),
            ends_at: None,
            expires_at: None,
            at: at("2025-01-01T00:00:00Z"),
            sequence,
            summary: format!("{probe} failing"),
            reason: None,
            error: None,
            failed_checks: vec![],
            thresholds: vec![],
            run_id: "r".into(),
            trace_id: "t".into(),
        }
    }

    fn open() -> (tempfile::TempDir, Outbox) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let outbox =
            Outbox::open(&dir.path().join("state/outbox.db")).unwrap_or_else(|e| panic!("{e}"));
        (dir, outbox)
    }

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

    #[test]
    fn batch_keys_are_stable_and_order_free() {
        let a = notification("a", Notice::Trigger, 0);
        let b = notification("b", Notice::Trigger, 0);
        assert_eq!(
            idempotency_key(std::slice::from_ref(&a)),
            a.idempotency_key()
        );
        let ab = idempotency_key(&[a.clone(), b.clone()]);
        assert!(ab.starts_with("batch-"));
        assert_eq!(ab, idempotency_key(&[b, a]));
    }

    #[test]
    fn due_keeps_order_behind_a_waiting_retry() {
        let (_dir, outbox) = open();
        let t0 = at("2025-01-01T00:00:00Z");
        let r = vec!["r".to_owned()];
        for i in 0..3 {
            outbox
                .enqueue(&r, &[notification("p", Notice::Repeat, i)], t0)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let due = outbox.due("r", t0, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            due.iter().map(|d| d.batch[0].sequence).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(
            outbox
                .due("r", t0, 2)
                .unwrap_or_else(|e| panic!("{e}"))
                .len(),
            2
        );
        assert!(
            outbox
                .due("other", t0, 10)
                .unwrap_or_else(|e| panic!("{e}"))
                .is_empty()
        );
        // The oldest waits for its retry: nothing younger overtakes it.
        let later = t0 + chrono::Duration::seconds(10);
        outbox
            .mark_retry(due[0].id, 1, later, "HTTP 503")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            outbox
                .due("r", t0, 10)
                .unwrap_or_else(|e| panic!("{e}"))
                .is_empty()
        );
        // The younger ones are due at t0 but wait: the worker must sleep
        // until the head's retry, not spin on them.
        assert_eq!(
            outbox.next_due("r").unwrap_or_else(|e| panic!("{e}")),
            Some(later)
        );
        assert_eq!(
            outbox.next_due("other").unwrap_or_else(|e| panic!("{e}")),
            None
        );
        let again = outbox.due("r", later, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.len(), 3);
        assert_eq!(again[0].attempts, 1);
        // A retry time is never rounded earlier.
        let odd = t0 + chrono::Duration::microseconds(1_500);
        outbox
            .mark_retry(due[0].id, 2, odd, "HTTP 503")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            outbox
                .due("r", t0 + chrono::Duration::milliseconds(1), 10)
                .unwrap_or_else(|e| panic!("{e}"))
                .is_empty()
        );
    }

    #[test]
    fn a_newer_schema_is_refused_and_an_empty_batch_too() {
        let (dir, outbox) = open();
        assert!(outbox.enqueue(&["r".into()], &[], Utc::now()).is_err());
        drop(outbox);
        let path = dir.path().join("state/outbox.db");
        let conn = Connection::open(&path).unwrap_or_else(|e| panic!("{e}"));
        conn.pragma_update(None, "user_version", 99)
            .unwrap_or_else(|e| panic!("{e}"));
        drop(conn);
        let error = Outbox::open(&path).err().unwrap_or_default();
        assert!(error.contains("schema version 99"), "{error}");
    }

    #[test]
    fn state_round_trips() {
        let (_dir, outbox) = open();
        assert_eq!(
            outbox
                .load_state("alerts")
                .unwrap_or_else(|e| panic!("{e}")),
            None
        );
        outbox
            .save_state("alerts", "{\"a\":1}")
            .unwrap_or_else(|e| panic!("{e}"));
        outbox
            .save_state("alerts", "{\"a\":2}")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            outbox
                .load_state("alerts")
                .unwrap_or_else(|e| panic!("{e}"))
                .as_deref(),
            Some("{\"a\":2}")
        );
    }
}
