//! The outbox's SQLite store: the schema, enqueueing batches (alone or in
//! one transaction with the alert engine's snapshot), the deliveries due
//! per receiver, recording results, depth, dead letters and pruning.
//!
//! # Blocking
//!
//! Every method of [`Outbox`] (and [`Outbox::open`]) blocks on disk I/O:
//! SQLite with `synchronous = FULL` fsyncs on every commit. Call them from
//! `tokio::task::spawn_blocking` or a thread of your own, never directly on
//! an async task. The dispatcher runs every call it makes on tokio's
//! blocking pool.
//!
//! This file knows nothing of delivery: the dispatcher (`dispatch.rs`)
//! builds on it, never the other way round.

use crate::alert::Notification;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

/// A fault of the outbox itself: its directory, its database, or the
/// blocking task a call ran on. A receiver that fails is not an error here
/// but an [`Attempt`](super::Attempt) recorded on its row.
///
/// Messages say what the outbox was doing; the cause (SQLite's or the
/// OS's message) is the [`source`](std::error::Error::source), so print the
/// whole chain (as `cli` does, or with [`crate::net::error::describe`]).
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox: cannot create {}", dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("outbox: cannot open {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("outbox: {} does not support WAL (journal mode {mode})", path.display())]
    NoWal { path: PathBuf, mode: String },
    #[error("outbox: cannot create the schema")]
    Schema(#[source] rusqlite::Error),
    #[error(
        "outbox: {} has schema version {found}, newer than this synthmon knows ({known})",
        path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("outbox: cannot enqueue an empty batch")]
    EmptyBatch,
    #[error("outbox: cannot encode a batch")]
    Encode(#[source] serde_json::Error),
    /// A statement failed; `what` says which, as "cannot {what}".
    #[error("outbox: cannot {what}")]
    Query {
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("outbox: cannot commit")]
    Commit(#[source] rusqlite::Error),
    /// The blocking task a store call ran on failed (it panicked, or the
    /// runtime is shutting down).
    #[error("outbox: a storage task failed")]
    Store(#[source] tokio::task::JoinError),
    #[error("two receivers are named {0:?}")]
    DuplicateReceiver(String),
    /// The HTTP client the receivers share could not be built.
    #[error("outbox: cannot set up the delivery client: {0}")]
    Client(String),
}

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
/// Every method blocks on disk I/O (an fsync per commit): call it from
/// `tokio::task::spawn_blocking` or a blocking thread, never directly on an
/// async task (the dispatcher's workers run every call on tokio's blocking
/// pool).
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

fn db_error(what: &'static str) -> impl Fn(rusqlite::Error) -> OutboxError {
    move |source| OutboxError::Query { what, source }
}

impl Outbox {
    /// Opens (creating if needed) the outbox database at `path` and brings
    /// its schema to the current version. Refuses a database written by a
    /// newer synthmon.
    ///
    /// Blocking: call from `spawn_blocking` or a blocking thread.
    pub fn open(path: &Path) -> Result<Outbox, OutboxError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| OutboxError::CreateDir {
                dir: dir.to_owned(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|source| OutboxError::Open {
            path: path.to_owned(),
            source,
        })?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(db_error("set the busy timeout"))?;
        // A statement with `LIMIT ?` is planned once, not at every binding
        // (see `history::store::stable_plans`).
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(db_error("keep query plans stable"))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(db_error("switch to WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(OutboxError::NoWal {
                path: path.to_owned(),
                mode,
            });
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
                .map_err(OutboxError::Schema)?,
            SCHEMA_VERSION => {}
            newer => {
                return Err(OutboxError::NewerSchema {
                    path: path.to_owned(),
                    found: newer,
                    known: SCHEMA_VERSION,
                });
            }
        }
        Ok(Outbox {
            conn: Mutex::new(conn),
        })
    }

    /// Makes every later write fail as on a read-only state directory
    /// (`true`), or lifts that (`false`): SQLite's own `query_only` mode,
    /// so the errors are the real ones. For fault tests of the callers.
    #[doc(hidden)]
    pub fn refuse_writes(&self, refuse: bool) -> Result<(), OutboxError> {
        self.conn()
            .pragma_update(None, "query_only", refuse)
            .map_err(db_error("switch query_only"))
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no half-done transaction
        // (rusqlite rolls back on drop), so the connection is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `batch` once for each of `receivers`, in one transaction,
    /// due at `now`. Enqueuing the same batch for the same receiver again is
    /// a no-op. Errs on an empty batch.
    ///
    /// Blocking: call from `spawn_blocking` or a blocking thread.
    pub fn enqueue(
        &self,
        receivers: &[String],
        batch: &[Notification],
        now: DateTime<Utc>,
    ) -> Result<(), OutboxError> {
        if batch.is_empty() {
            return Err(OutboxError::EmptyBatch);
        }
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(db_error("begin a transaction"))?;
        insert_batch(&tx, receivers, batch, now)?;
        tx.commit().map_err(OutboxError::Commit)
    }

    /// The deliveries of `receiver` due at `now`, oldest first, at most
    /// `limit`. Keeps order: a pending delivery that is not due yet (it
    /// waits for a retry) holds back every younger one of the same
    /// receiver. A row whose batch cannot be decoded (which only a corrupt
    /// file could cause) is made a dead letter here and skipped.
    ///
    /// Blocking: call from `spawn_blocking` or a blocking thread.
    pub fn due(
        &self,
        receiver: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Delivery>, OutboxError> {
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
    ///
    /// Blocking: call from `spawn_blocking` or a blocking thread.
    pub fn next_due(&self, receiver: &str) -> Result<Option<DateTime<Utc>>, OutboxError> {
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
    ) -> Result<(), OutboxError> {
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
    ///
    /// Blocking: call from `spawn_blocking` or a blocking thread.
    pub fn mark_delivered(&self, id: i64, now: DateTime<Utc>) -> Result<(), OutboxError> {
        self.finish(id, "delivered", None, now)
    }

    /// Records a failed attempt: `attempts` made so far, and when to try
    /// next (never earlier than `next_at`).
    ///
    /// Blocking: call from `spawn_blocking` or a blocking thread.
    pub fn mark_retry(
        &self,
        id: i64,
        attempts: u32,
        next_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), OutboxError> {
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
    ///
    /// Blocking: call from `spawn_blocking` or a blocking thread.
    pub fn mark_dead(&self, id: i64, error: &str, now: DateTime<Utc>) -> Result<(), OutboxError> {
        self.finish(id, "dead", Some(error), now)
    }

    /// Records that the first `parts_done` notifications of a
    /// one-request-per-notification delivery were accepted, so a retry
    /// resumes after them.
    ///
    /// Blocking: call from `spawn_blocking` or a blocking thread.
    pub fn mark_progress(&self, id: i64, parts_done: u32) -> Result<(), OutboxError> {
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
    ///
    /// Blocking: call from `spawn_blocking` or a blocking thread.
    pub fn depth(&self) -> Result<Vec<ReceiverDepth>, OutboxError> {
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
    ///
    /// Blocking: call from `spawn_blocking` or a blocking thread.
    pub fn dead_letters(&self, receiver: &str) -> Result<u64, OutboxError> {
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
    ///
    /// Blocking: call from `spawn_blocking` or a blocking thread.
    pub fn status(
        &self,
        receiver: &str,
        idempotency_key: &str,
    ) -> Result<Option<DeliveryStatus>, OutboxError> {
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
    ///
    /// Blocking: call from `spawn_blocking` or a blocking thread.
    pub fn prune(&self, older_than: DateTime<Utc>) -> Result<u64, OutboxError> {
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
    ///
    /// Blocking: call from `spawn_blocking` or a blocking thread.
    pub fn commit_group(
        &self,
        groups: &[(Vec<String>, Vec<Notification>)],
        state_key: &str,
        state_json: &str,
        now: DateTime<Utc>,
    ) -> Result<(), OutboxError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(db_error("begin a transaction"))?;
        for (receivers, batch) in groups.iter().filter(|(_, b)| !b.is_empty()) {
            insert_batch(&tx, receivers, batch, now)?;
        }
        tx.execute(
            "INSERT INTO kv (key, json, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET json = excluded.json, updated_at = excluded.updated_at",
            params![state_key, state_json, ms(now)],
        )
        .map_err(db_error("save state"))?;
        tx.commit().map_err(OutboxError::Commit)
    }

    /// Stores `json` under `key` (the alert engine's snapshot), replacing
    /// what was there.
    ///
    /// Blocking: call from `spawn_blocking` or a blocking thread.
    pub fn save_state(&self, key: &str, json: &str) -> Result<(), OutboxError> {
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
    ///
    /// Blocking: call from `spawn_blocking` or a blocking thread.
    pub fn load_state(&self, key: &str) -> Result<Option<String>, OutboxError> {
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
) -> Result<(), OutboxError> {
    let key = idempotency_key(batch);
    let json = serde_json::to_string(batch).map_err(OutboxError::Encode)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertKind, Notice, fingerprint};
    use crate::config::Severity;
    use std::collections::BTreeMap;

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
            artifact_url: None,
        }
    }

    fn open() -> (tempfile::TempDir, Outbox) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let outbox =
            Outbox::open(&dir.path().join("state/outbox.db")).unwrap_or_else(|e| panic!("{e}"));
        (dir, outbox)
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
        assert!(matches!(
            outbox.enqueue(&["r".into()], &[], Utc::now()),
            Err(OutboxError::EmptyBatch)
        ));
        assert!(outbox.enqueue(&["r".into()], &[], Utc::now()).is_err());
        drop(outbox);
        let path = dir.path().join("state/outbox.db");
        let conn = Connection::open(&path).unwrap_or_else(|e| panic!("{e}"));
        conn.pragma_update(None, "user_version", 99)
            .unwrap_or_else(|e| panic!("{e}"));
        drop(conn);
        match Outbox::open(&path) {
            Err(OutboxError::NewerSchema {
                found: 99,
                known: SCHEMA_VERSION,
                ..
            }) => {}
            other => panic!("expected a newer schema error, got {other:?}"),
        }
        let error = Outbox::open(&path)
            .err()
            .map(|e| crate::net::describe(&e))
            .unwrap_or_default();
        assert!(error.contains("schema version 99"), "{error}");
    }

    #[test]
    fn a_database_error_keeps_its_cause_as_the_source() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        // A directory where the database file should be: SQLite cannot
        // open it.
        let path = dir.path().join("outbox.db");
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("{e}"));
        let error = match Outbox::open(&path) {
            Err(e) => e,
            Ok(_) => panic!("opened a directory as a database"),
        };
        let cause = std::error::Error::source(&error)
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(!cause.is_empty(), "{error:?}");
        let top = error.to_string();
        assert!(top.starts_with("outbox: cannot"), "{top}");
        assert!(!top.contains(&cause), "the cause is printed twice: {top}");
        // The one-line form still carries the cause.
        let text = crate::net::describe(&error);
        assert!(text.starts_with(&top) && text.contains(&cause), "{text}");
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
