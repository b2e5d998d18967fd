//! The history's SQLite file: the writer's statements (runs, minute
//! snapshots, transitions, kept values, roll-ups, retention) and the
//! readers' queries. Every function blocks on disk I/O: the writer runs on
//! its own thread ([`super::writer`]), readers from `spawn_blocking` or a
//! command-line program.

use super::schema;
use super::snapshot;
use crate::outcome::Latencies;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The history file's name in the state directory.
pub const FILE: &str = "history.sqlite";

/// Milliseconds in a minute and in an hour.
const MINUTE_MS: i64 = 60_000;
const HOUR_MINUTES: i64 = 60;

/// Why the history cannot be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("history: cannot create {}", dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("history: cannot open {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("history: {} cannot be used", path.display())]
    Schema {
        path: PathBuf,
        #[source]
        source: schema::SchemaError,
    },
    #[error("history: {} does not exist (no daemon has written history there yet)", path.display())]
    Missing { path: PathBuf },
    #[error("history: cannot {what}")]
    Query {
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
}

fn query(what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |source| Error::Query { what, source }
}

/// What a run was: passed, passed with a threshold not ok, or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Degraded,
    Fail,
}

impl Verdict {
    fn code(self) -> i64 {
        match self {
            Verdict::Pass => 0,
            Verdict::Degraded => 1,
            Verdict::Fail => 2,
        }
    }

    fn from_code(code: i64) -> Verdict {
        match code {
            0 => Verdict::Pass,
            1 => Verdict::Degraded,
            _ => Verdict::Fail,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Degraded => "degraded",
            Verdict::Fail => "fail",
        }
    }
}

/// One stored run (or one step of a flow's run).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunRow {
    pub probe: String,
    pub environment: String,
    /// Empty for the whole run; a flow step's name otherwise.
    pub step: String,
    /// Unix milliseconds.
    pub started_ms: i64,
    /// When the schedule meant it to start (Unix milliseconds).
    pub intended_ms: i64,
    pub duration_us: i64,
    pub result: Verdict,
    pub reason: Option<String>,
    pub status: Option<u16>,
    pub attempts: u32,
    pub trace_id: String,
    pub run_id: String,
    pub error: Option<String>,
}

/// What one run adds to its series' minute.
#[derive(Debug, Default)]
pub struct Tallies {
    /// Events: a run, or a workload's requests.
    pub runs: u64,
    pub failed: u64,
    pub degraded: u64,
    /// Latencies of the events that passed.
    pub latencies: Latencies,
}

/// A series' totals over a window.
#[derive(Debug, Default)]
pub struct Window {
    pub runs: u64,
    pub failed: u64,
    pub degraded: u64,
    pub latencies: Latencies,
}

impl Window {
    fn add(&mut self, runs: i64, failed: i64, degraded: i64) {
        self.runs += runs.max(0) as u64;
        self.failed += failed.max(0) as u64;
        self.degraded += degraded.max(0) as u64;
    }
}

/// A state change of a pair.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Transition {
    pub at_ms: i64,
    pub from: String,
    pub to: String,
    pub reason: Option<String>,
}

/// How long each kind of row is kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    pub runs: std::time::Duration,
    pub minutes: std::time::Duration,
    pub hours: std::time::Duration,
}

impl Default for Retention {
    fn default() -> Retention {
        const DAY: u64 = 86_400;
        Retention {
            runs: std::time::Duration::from_secs(7 * DAY),
            minutes: std::time::Duration::from_secs(2 * DAY),
            hours: std::time::Duration::from_secs(400 * DAY),
        }
    }
}

fn open_conn(path: &Path, flags: OpenFlags) -> Result<Connection, Error> {
    let conn = Connection::open_with_flags(path, flags).map_err(|source| Error::Open {
        path: path.to_owned(),
        source,
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(query("set the busy timeout"))?;
    stable_plans(&conn).map_err(query("keep query plans stable"))?;
    Ok(conn)
}

/// Plans a statement once for whatever its parameters are bound to.
/// Without this (the query planner stability guarantee), SQLite plans
/// `LIMIT ?` for the value bound at the time and marks the statement
/// expired whenever that parameter is bound again, so a cached statement
/// was parsed and planned anew at every execution: a retention pass (three
/// such `DELETE`s per series) cost ~4 % of the daemon's CPU at 1,000
/// runs/s. synthmon never runs `ANALYZE`, so a stable plan loses nothing.
pub fn stable_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map(|_| ())
}

/// The writer's page cache, in KiB. It appends runs and rewrites the open
/// minutes, so few pages are read twice, and a page it lacks is in the
/// kernel's page cache: SQLite's default (2,000 KiB, allocated by the C
/// library's malloc and kept) held ~1.5 MiB more resident at 1,000 runs/s
/// than this, for no more CPU per run (alternating runs, same sitting).
const WRITER_CACHE_KIB: i64 = 256;

/// The writer's connection and its caches.
pub struct Writer {
    conn: Connection,
    series: SeriesIds,
}

/// The ids of the series written so far, by (probe, environment, step),
/// looked up without allocating: the key is built in a reused buffer.
#[derive(Default)]
struct SeriesIds {
    ids: HashMap<Box<[u8]>, i64>,
    key: Vec<u8>,
}

impl SeriesIds {
    /// The series' id if known. Builds the key, each part length-prefixed
    /// so no two triples share one, for [`SeriesIds::insert_last`].
    fn get(&mut self, parts: [&str; 3]) -> Option<i64> {
        self.key.clear();
        for part in parts {
            self.key
                .extend_from_slice(&(part.len() as u64).to_le_bytes());
            self.key.extend_from_slice(part.as_bytes());
        }
        self.ids.get(self.key.as_slice()).copied()
    }

    /// Adds the id of the series last asked for.
    fn insert_last(&mut self, id: i64) {
        self.ids.insert(self.key.as_slice().into(), id);
    }
}

impl Writer {
    /// Opens (creating) `dir/history.sqlite` and migrates it.
    pub fn open(dir: &Path) -> Result<Writer, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
            dir: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE);
        let mut conn = open_conn(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )?;
        let schema_error = |source| Error::Schema {
            path: path.clone(),
            source,
        };
        // A file that is not SQLite fails here, at its first read.
        schema::migrate(&mut conn).map_err(schema_error)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(query("switch to WAL"))?;
        // History may lose the last second on a power cut, never its
        // consistency; the outbox, which must not, syncs fully.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(query("set synchronous"))?;
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
            .map_err(query("set the cache size"))?;
        Ok(Writer {
            conn,
            series: SeriesIds::default(),
        })
    }

    /// Makes the connection refuse writes (tests: a disk that fails).
    pub fn refuse_writes(&self) {
        let _ = self.conn.pragma_update(None, "query_only", true);
    }

    /// Starts a transaction; the batch's statements follow, then [`Batch::commit`].
    pub fn batch(&mut self) -> Result<Batch<'_>, Error> {
        let tx = self
            .conn
            .transaction()
            .map_err(query("begin a transaction"))?;
        Ok(Batch {
            tx,
            series: &mut self.series,
        })
    }

    /// Rolls the minutes of the oldest hour not yet rolled up into hour
    /// rows, if that hour ended at least `grace_minutes` before `now_minute`.
    /// One hour per call (bounded work); returns whether it rolled one.
    pub fn roll_up(&mut self, now_minute: i64, grace_minutes: i64) -> Result<bool, Error> {
        let tx = self.conn.transaction().map_err(query("begin a roll-up"))?;
        let next: Option<i64> = tx
            .query_row(
                "SELECT value FROM marks WHERE name = 'rolled_to'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(query("read the roll-up mark"))?;
        let hour = match next {
            Some(h) => h,
            None => {
                let first: Option<i64> = tx
                    .query_row("SELECT min(minute) FROM minutes", [], |r| r.get(0))
                    .map_err(query("find the first minute"))?;
                match first {
                    Some(m) => m.div_euclid(HOUR_MINUTES),
                    None => return Ok(false),
                }
            }
        };
        if (hour + 1) * HOUR_MINUTES + grace_minutes > now_minute {
            return Ok(false);
        }
        // Skip empty stretches (a daemon that was stopped for days) at once.
        let first_after: Option<i64> = tx
            .query_row(
                "SELECT min(minute) FROM minutes WHERE minute >= ?1",
                [hour * HOUR_MINUTES],
                |r| r.get(0),
            )
            .map_err(query("find the next minute"))?;
        let hour = match first_after {
            Some(m) if m.div_euclid(HOUR_MINUTES) > hour => {
                let h = m.div_euclid(HOUR_MINUTES);
                if (h + 1) * HOUR_MINUTES + grace_minutes > now_minute {
                    tx.execute(
                        "INSERT OR REPLACE INTO marks (name, value) VALUES ('rolled_to', ?1)",
                        [h],
                    )
                    .map_err(query("move the roll-up mark"))?;
                    tx.commit().map_err(query("commit a roll-up"))?;
                    return Ok(false);
                }
                h
            }
            Some(_) => hour,
            None => {
                tx.commit().map_err(query("commit a roll-up"))?;
                return Ok(false);
            }
        };
        let mut sums: BTreeMap<i64, (Window, bool)> = BTreeMap::new();
        {
            let mut stmt = tx
                .prepare(
                    "SELECT series, runs, failed, degraded, hist FROM minutes
                     WHERE minute >= ?1 AND minute < ?2",
                )
                .map_err(query("read an hour's minutes"))?;
            let mut rows = stmt
                .query([hour * HOUR_MINUTES, (hour + 1) * HOUR_MINUTES])
                .map_err(query("read an hour's minutes"))?;
            while let Some(row) = rows.next().map_err(query("read an hour's minutes"))? {
                let series: i64 = row.get(0).map_err(query("read a minute"))?;
                let entry = sums.entry(series).or_default();
                entry.0.add(
                    row.get(1).map_err(query("read a minute"))?,
                    row.get(2).map_err(query("read a minute"))?,
                    row.get(3).map_err(query("read a minute"))?,
                );
                let blob: Option<Vec<u8>> = row.get(4).map_err(query("read a minute"))?;
                if let Some(blob) = blob {
                    if let Err(e) = snapshot::decode_into(&blob, &mut entry.0.latencies) {
                        entry.1 = true;
                        tracing::warn!(error = %e, "history: a minute's latencies are lost from its hour");
                    }
                }
            }
        }
        for (series, (w, _)) in &sums {
            tx.execute(
                "INSERT OR REPLACE INTO hours (series, hour, runs, failed, degraded, hist)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    series,
                    hour,
                    w.runs as i64,
                    w.failed as i64,
                    w.degraded as i64,
                    snapshot::encode(&w.latencies)
                ],
            )
            .map_err(query("write an hour"))?;
        }
        tx.execute(
            "INSERT OR REPLACE INTO marks (name, value) VALUES ('rolled_to', ?1)",
            [hour + 1],
        )
        .map_err(query("move the roll-up mark"))?;
        tx.commit().map_err(query("commit a roll-up"))?;
        Ok(true)
    }

    /// Deletes rows older than `retention` allows, at most `budget` per
    /// table and series per call; returns how many were deleted.
    pub fn prune(
        &mut self,
        now_ms: i64,
        retention: &Retention,
        budget: usize,
    ) -> Result<u64, Error> {
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let runs_before = now_ms.saturating_sub(ms(retention.runs));
        let minutes_before = now_ms
            .saturating_sub(ms(retention.minutes))
            .div_euclid(MINUTE_MS);
        let hours_before = now_ms
            .saturating_sub(ms(retention.hours))
            .div_euclid(MINUTE_MS * HOUR_MINUTES);
        let budget = budget as i64;
        let tx = self.conn.transaction().map_err(query("begin pruning"))?;
        let mut deleted = 0;
        let ids: Vec<i64> = {
            let mut stmt = tx
                .prepare("SELECT id FROM series")
                .map_err(query("list series"))?;
            stmt.query_map([], |r| r.get(0))
                .map_err(query("list series"))?
                .collect::<Result<_, _>>()
                .map_err(query("list series"))?
        };
        // Per series, through each table's (series, time) key: bounded
        // work, no scan of a table by time.
        let tables: [(&str, &str, i64, &'static str); 3] = [
            ("runs", "started_ms", runs_before, "prune runs"),
            ("minutes", "minute", minutes_before, "prune minutes"),
            ("hours", "hour", hours_before, "prune hours"),
        ];
        for id in ids {
            for (table, time, before, what) in tables {
                let sql = format!(
                    "DELETE FROM {table} WHERE series = ?1 AND {time} IN
                     (SELECT {time} FROM {table} WHERE series = ?1 AND {time} < ?2 LIMIT ?3)"
                );
                deleted += tx
                    .prepare_cached(&sql)
                    .and_then(|mut s| s.execute(params![id, before, budget]))
                    .map_err(query(what))? as u64;
            }
        }
        deleted += tx
            .execute(
                "DELETE FROM transitions WHERE rowid IN
                 (SELECT rowid FROM transitions WHERE at_ms < ?1 LIMIT ?2)",
                params![now_ms.saturating_sub(ms(retention.hours)), budget],
            )
            .map_err(query("prune transitions"))? as u64;
        tx.commit().map_err(query("commit pruning"))?;
        Ok(deleted)
    }

    /// Gives freed pages back to the file system, a little at a time.
    pub fn vacuum_some(&self) {
        let _ = self.conn.execute_batch("PRAGMA incremental_vacuum(256)");
    }
}

/// One transaction of the writer.
pub struct Batch<'a> {
    tx: rusqlite::Transaction<'a>,
    series: &'a mut SeriesIds,
}

impl Batch<'_> {
    /// The series' id, adding the series on its first write.
    pub fn series_id(&mut self, probe: &str, environment: &str, step: &str) -> Result<i64, Error> {
        if let Some(id) = self.series.get([probe, environment, step]) {
            return Ok(id);
        }
        self.tx
            .execute(
                "INSERT OR IGNORE INTO series (probe, environment, step) VALUES (?1, ?2, ?3)",
                params![probe, environment, step],
            )
            .map_err(query("add a series"))?;
        let id: i64 = self
            .tx
            .query_row(
                "SELECT id FROM series WHERE probe = ?1 AND environment = ?2 AND step = ?3",
                params![probe, environment, step],
                |r| r.get(0),
            )
            .map_err(query("find a series"))?;
        self.series.insert_last(id);
        Ok(id)
    }

    pub fn run(&mut self, run: &RunRow) -> Result<(), Error> {
        let series = self.series_id(&run.probe, &run.environment, &run.step)?;
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO runs (series, started_ms, lag_ms, duration_us, result,
                 reason, status, attempts, trace_id, run_id, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    series,
                    run.started_ms,
                    run.started_ms.saturating_sub(run.intended_ms),
                    run.duration_us,
                    run.result.code(),
                    run.reason,
                    run.status,
                    run.attempts,
                    id_value(&run.trace_id),
                    id_value(&run.run_id),
                    run.error
                ])
            })
            .map_err(query("write a run"))?;
        Ok(())
    }

    /// Writes a series' minute as it stands now (replacing what an
    /// earlier batch wrote for the same minute).
    pub fn minute(
        &mut self,
        (probe, environment, step): (&str, &str, &str),
        minute: i64,
        t: &Tallies,
    ) -> Result<(), Error> {
        let series = self.series_id(probe, environment, step)?;
        self.series_minute(series, minute, t)
    }

    /// [`Batch::minute`] of a series known by its id ([`Batch::series_id`]).
    pub fn series_minute(&mut self, series: i64, minute: i64, t: &Tallies) -> Result<(), Error> {
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO minutes (series, minute, runs, failed, degraded, hist)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    series,
                    minute,
                    t.runs as i64,
                    t.failed as i64,
                    t.degraded as i64,
                    snapshot::encode(&t.latencies)
                ])
            })
            .map_err(query("write a minute"))?;
        Ok(())
    }

    /// Writes a series' minute's counts, leaving its stored latencies as
    /// they are (the writer encodes those less often).
    pub fn minute_counts(&mut self, series: i64, minute: i64, t: &Tallies) -> Result<(), Error> {
        self.tx
            .prepare_cached(
                "INSERT INTO minutes (series, minute, runs, failed, degraded, hist)
                 VALUES (?1, ?2, ?3, ?4, ?5, NULL)
                 ON CONFLICT (series, minute) DO UPDATE SET
                 runs = excluded.runs, failed = excluded.failed, degraded = excluded.degraded",
            )
            .and_then(|mut s| {
                s.execute(params![
                    series,
                    minute,
                    t.runs as i64,
                    t.failed as i64,
                    t.degraded as i64
                ])
            })
            .map_err(query("write a minute's counts"))?;
        Ok(())
    }

    /// Reads a stored minute back (a run that arrives for a minute the
    /// writer no longer holds adds to what is stored).
    pub fn stored_minute(&mut self, series: i64, minute: i64) -> Result<Tallies, Error> {
        let row: Option<(i64, i64, i64, Option<Vec<u8>>)> = self
            .tx
            .query_row(
                "SELECT runs, failed, degraded, hist FROM minutes WHERE series = ?1 AND minute = ?2",
                params![series, minute],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(query("read a minute"))?;
        let mut t = Tallies::default();
        if let Some((runs, failed, degraded, hist)) = row {
            t.runs = runs.max(0) as u64;
            t.failed = failed.max(0) as u64;
            t.degraded = degraded.max(0) as u64;
            if let Some(blob) = hist {
                let _ = snapshot::decode_into(&blob, &mut t.latencies);
            }
        }
        Ok(t)
    }

    pub fn transition(
        &mut self,
        probe: &str,
        environment: &str,
        t: &Transition,
    ) -> Result<(), Error> {
        self.tx
            .execute(
                "INSERT INTO transitions (probe, environment, at_ms, from_state, to_state, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![probe, environment, t.at_ms, t.from, t.to, t.reason],
            )
            .map_err(query("write a state change"))?;
        Ok(())
    }

    pub fn keep(
        &mut self,
        probe: &str,
        environment: &str,
        values: &BTreeMap<String, serde_json::Value>,
        at_ms: i64,
    ) -> Result<(), Error> {
        for (name, value) in values {
            self.tx
                .execute(
                    "INSERT OR REPLACE INTO kept (probe, environment, name, value, at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![probe, environment, name, value.to_string(), at_ms],
                )
                .map_err(query("write a kept value"))?;
        }
        Ok(())
    }

    pub fn commit(self) -> Result<(), Error> {
        self.tx.commit().map_err(query("commit a batch"))
    }
}

/// What a pair kept: name → value.
pub type KeptValues = BTreeMap<String, serde_json::Value>;

fn read_kept(
    conn: &Connection,
    pair: Option<(&str, &str)>,
) -> Result<BTreeMap<(String, String), KeptValues>, Error> {
    let mut out: BTreeMap<(String, String), KeptValues> = BTreeMap::new();
    let (sql, args): (&str, Vec<&str>) = match pair {
        Some((p, e)) => (
            "SELECT probe, environment, name, value FROM kept WHERE probe = ?1 AND environment = ?2",
            vec![p, e],
        ),
        None => ("SELECT probe, environment, name, value FROM kept", vec![]),
    };
    let mut stmt = conn.prepare(sql).map_err(query("read kept values"))?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .map_err(query("read kept values"))?;
    for row in rows {
        let (probe, env, name, value) = row.map_err(query("read kept values"))?;
        // A value is written as JSON by this file; anything else is skipped.
        if let Ok(v) = serde_json::from_str(&value) {
            out.entry((probe, env)).or_default().insert(name, v);
        }
    }
    Ok(out)
}

/// A read-only connection for queries (the API, `synthmon history`),
/// beside the writer thanks to WAL.
pub struct Reader {
    conn: Mutex<Connection>,
}

impl Reader {
    /// Opens `dir/history.sqlite` read-only; the file must exist and be a
    /// history of a schema this build reads.
    pub fn open(dir: &Path) -> Result<Reader, Error> {
        let path = dir.join(FILE);
        if !path.exists() {
            return Err(Error::Missing { path });
        }
        let conn = open_conn(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let schema_error = |source| Error::Schema {
            path: path.clone(),
            source,
        };
        let app: i64 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(|e| schema_error(schema::SchemaError::Sqlite(e)))?;
        if app != schema::APPLICATION_ID {
            return Err(schema_error(schema::SchemaError::Foreign(app)));
        }
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| schema_error(schema::SchemaError::Sqlite(e)))?;
        if version > schema::VERSION {
            return Err(schema_error(schema::SchemaError::Newer { found: version }));
        }
        Ok(Reader {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every (probe, environment) with history.
    pub fn pairs(&self) -> Result<Vec<(String, String)>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT DISTINCT probe, environment FROM series ORDER BY probe, environment")
            .map_err(query("list pairs"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(query("list pairs"))?
            .collect::<Result<_, _>>()
            .map_err(query("list pairs"))?;
        Ok(rows)
    }

    /// Whole runs of a pair started in `[since_ms, until_ms)`, newest first.
    pub fn runs(
        &self,
        probe: &str,
        environment: &str,
        since_ms: i64,
        until_ms: i64,
        limit: usize,
    ) -> Result<Vec<RunRow>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT r.started_ms, r.started_ms - r.lag_ms, r.duration_us, r.result, r.reason, r.status,
                        r.attempts, r.trace_id, r.run_id, r.error, s.step
                 FROM runs r JOIN series s ON s.id = r.series
                 WHERE s.probe = ?1 AND s.environment = ?2 AND s.step = ''
                   AND r.started_ms >= ?3 AND r.started_ms < ?4
                 ORDER BY r.started_ms DESC LIMIT ?5",
            )
            .map_err(query("read runs"))?;
        let rows = stmt
            .query_map(
                params![probe, environment, since_ms, until_ms, limit as i64],
                |r| run_row((probe, environment), r),
            )
            .map_err(query("read runs"))?
            .collect::<Result<_, _>>()
            .map_err(query("read runs"))?;
        Ok(rows)
    }

    /// Every pair's latest whole run, in one query: the status page lists
    /// 1,000 pairs, and a query per pair took ~35 µs where this takes ~4.
    pub fn last_runs(&self) -> Result<HashMap<(String, String), RunRow>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT r.started_ms, r.started_ms - r.lag_ms, r.duration_us, r.result, r.reason,
                        r.status, r.attempts, r.trace_id, r.run_id, r.error, s.step,
                        s.probe, s.environment
                 FROM series s JOIN runs r ON r.series = s.id
                 WHERE s.step = ''
                   AND r.started_ms = (SELECT max(started_ms) FROM runs WHERE series = s.id)",
            )
            .map_err(query("read the latest runs"))?;
        let mut rows = stmt.query([]).map_err(query("read the latest runs"))?;
        let mut out = HashMap::new();
        while let Some(r) = rows.next().map_err(query("read the latest runs"))? {
            let pair: (String, String) = (
                r.get(11).map_err(query("read the latest runs"))?,
                r.get(12).map_err(query("read the latest runs"))?,
            );
            let run = run_row((&pair.0, &pair.1), r).map_err(query("read the latest runs"))?;
            out.entry(pair).or_insert(run);
        }
        Ok(out)
    }

    /// Whole runs of a pair that failed, started in `[since_ms, until_ms)`,
    /// newest first (the status page's last failures).
    pub fn failed_runs(
        &self,
        (probe, environment): (&str, &str),
        since_ms: i64,
        until_ms: i64,
        limit: usize,
    ) -> Result<Vec<RunRow>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT r.started_ms, r.started_ms - r.lag_ms, r.duration_us, r.result, r.reason,
                        r.status, r.attempts, r.trace_id, r.run_id, r.error, s.step
                 FROM runs r JOIN series s ON s.id = r.series
                 WHERE s.probe = ?1 AND s.environment = ?2 AND s.step = ''
                   AND r.started_ms >= ?3 AND r.started_ms < ?4 AND r.result = ?5
                 ORDER BY r.started_ms DESC LIMIT ?6",
            )
            .map_err(query("read failed runs"))?;
        let rows = stmt
            .query_map(
                params![
                    probe,
                    environment,
                    since_ms,
                    until_ms,
                    Verdict::Fail.code(),
                    limit as i64
                ],
                |r| run_row((probe, environment), r),
            )
            .map_err(query("read failed runs"))?
            .collect::<Result<_, _>>()
            .map_err(query("read failed runs"))?;
        Ok(rows)
    }

    /// The flow-step rows of one run (`run_id`) of a pair, in the order the
    /// steps ran (steps started in the same millisecond in the order their
    /// series were first written, which is the flow's). Steps start inside
    /// their run, so only rows started in `[since_ms, until_ms)` (the run's
    /// start and end) are looked at.
    pub fn run_steps(
        &self,
        (probe, environment): (&str, &str),
        run_id: &str,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<RunRow>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT r.started_ms, r.started_ms - r.lag_ms, r.duration_us, r.result, r.reason, r.status,
                        r.attempts, r.trace_id, r.run_id, r.error, s.step
                 FROM runs r JOIN series s ON s.id = r.series
                 WHERE s.probe = ?1 AND s.environment = ?2 AND s.step <> ''
                   AND r.started_ms >= ?3 AND r.started_ms < ?4 AND r.run_id = ?5
                 ORDER BY r.started_ms, s.id",
            )
            .map_err(query("read a run's steps"))?;
        let rows = stmt
            .query_map(
                params![probe, environment, since_ms, until_ms, id_value(run_id)],
                |r| run_row((probe, environment), r),
            )
            .map_err(query("read a run's steps"))?
            .collect::<Result<_, _>>()
            .map_err(query("read a run's steps"))?;
        Ok(rows)
    }

    /// A series' totals over `[from_ms, to_ms)`: complete hours from the
    /// hour rows, the rest from minute rows (minutes are kept 48 hours, so
    /// an older partial hour at the window's start is counted from its
    /// hour row if it lies wholly inside, else left out). `latencies`:
    /// whether to decode the latency snapshots (counts alone are cheap).
    pub fn window(
        &self,
        (probe, environment, step): (&str, &str, &str),
        from_ms: i64,
        to_ms: i64,
        latencies: bool,
    ) -> Result<Window, Error> {
        let conn = self.conn();
        let mut w = Window::default();
        let Some(series): Option<i64> = conn
            .prepare_cached(
                "SELECT id FROM series WHERE probe = ?1 AND environment = ?2 AND step = ?3",
            )
            .and_then(|mut s| {
                s.query_row(params![probe, environment, step], |r| r.get(0))
                    .optional()
            })
            .map_err(query("find a series"))?
        else {
            return Ok(w);
        };
        let from_min = from_ms.div_euclid(MINUTE_MS);
        let to_min = to_ms.div_euclid(MINUTE_MS);
        // Hours wholly inside the window.
        let first_hour =
            from_min.div_euclid(HOUR_MINUTES) + i64::from(from_min.rem_euclid(HOUR_MINUTES) != 0);
        let end_hour = to_min.div_euclid(HOUR_MINUTES);
        let mut covered = HashSet::new();
        let add_row = |w: &mut Window, r: &rusqlite::Row<'_>| -> rusqlite::Result<()> {
            w.add(r.get(1)?, r.get(2)?, r.get(3)?);
            if latencies {
                if let Some(blob) = r.get::<_, Option<Vec<u8>>>(4)? {
                    if let Err(e) = snapshot::decode_into(&blob, &mut w.latencies) {
                        tracing::warn!(error = %e, "history: a snapshot is left out of a window");
                    }
                }
            }
            Ok(())
        };
        // Counts alone (uptime, SLO status) leave the histogram blobs
        // unread: SQLite then never loads their pages.
        let (hours_sql, minutes_sql) = if latencies {
            (
                "SELECT hour, runs, failed, degraded, hist FROM hours
                 WHERE series = ?1 AND hour >= ?2 AND hour < ?3",
                "SELECT minute, runs, failed, degraded, hist FROM minutes
                 WHERE series = ?1 AND minute >= ?2 AND minute < ?3",
            )
        } else {
            (
                "SELECT hour, runs, failed, degraded FROM hours
                 WHERE series = ?1 AND hour >= ?2 AND hour < ?3",
                "SELECT minute, runs, failed, degraded FROM minutes
                 WHERE series = ?1 AND minute >= ?2 AND minute < ?3",
            )
        };
        if first_hour < end_hour {
            let mut stmt = conn
                .prepare_cached(hours_sql)
                .map_err(query("read hours"))?;
            let mut rows = stmt
                .query(params![series, first_hour, end_hour])
                .map_err(query("read hours"))?;
            while let Some(r) = rows.next().map_err(query("read hours"))? {
                covered.insert(r.get::<_, i64>(0).map_err(query("read hours"))?);
                add_row(&mut w, r).map_err(query("read hours"))?;
            }
        }
        // Minute rows count only outside the hours read above. When those
        // hours run without a gap from the window's first whole hour (the
        // roll-up goes oldest first), only the minutes before that hour
        // and after the last one are read, not a month's minutes skipped
        // one by one; otherwise every minute of the window is.
        let ranges = match covered.iter().max() {
            Some(&last) if covered.len() as i64 == last - first_hour + 1 => [
                (from_min, (first_hour * HOUR_MINUTES).min(to_min)),
                ((last + 1) * HOUR_MINUTES, to_min),
            ],
            _ => [(from_min, to_min), (to_min, to_min)],
        };
        let mut stmt = conn
            .prepare_cached(minutes_sql)
            .map_err(query("read minutes"))?;
        for (from, to) in ranges.into_iter().filter(|(from, to)| from < to) {
            let mut rows = stmt
                .query(params![series, from, to])
                .map_err(query("read minutes"))?;
            while let Some(r) = rows.next().map_err(query("read minutes"))? {
                let minute: i64 = r.get(0).map_err(query("read minutes"))?;
                if covered.contains(&minute.div_euclid(HOUR_MINUTES)) {
                    continue;
                }
                add_row(&mut w, r).map_err(query("read minutes"))?;
            }
        }
        Ok(w)
    }

    /// State changes of a pair since `since_ms`, oldest first.
    pub fn transitions(
        &self,
        probe: &str,
        environment: &str,
        since_ms: i64,
    ) -> Result<Vec<Transition>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT at_ms, from_state, to_state, reason FROM transitions
                 WHERE probe = ?1 AND environment = ?2 AND at_ms >= ?3 ORDER BY at_ms",
            )
            .map_err(query("read state changes"))?;
        let rows = stmt
            .query_map(params![probe, environment, since_ms], |r| {
                Ok(Transition {
                    at_ms: r.get(0)?,
                    from: r.get(1)?,
                    to: r.get(2)?,
                    reason: r.get(3)?,
                })
            })
            .map_err(query("read state changes"))?
            .collect::<Result<_, _>>()
            .map_err(query("read state changes"))?;
        Ok(rows)
    }

    /// Every pair's latest stored state (the `to` of its last change).
    pub fn last_states(&self) -> Result<HashMap<(String, String), String>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT probe, environment, to_state FROM transitions t
                 WHERE rowid = (SELECT rowid FROM transitions
                                WHERE probe = t.probe AND environment = t.environment
                                ORDER BY at_ms DESC, rowid DESC LIMIT 1)",
            )
            .map_err(query("read the latest states"))?;
        let rows = stmt
            .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
            .map_err(query("read the latest states"))?
            .collect::<Result<_, _>>()
            .map_err(query("read the latest states"))?;
        Ok(rows)
    }

    /// Every pair's kept values, in one read (the daemon's start).
    pub fn all_kept(&self) -> Result<BTreeMap<(String, String), KeptValues>, Error> {
        read_kept(&self.conn(), None)
    }

    /// A pair's kept values.
    pub fn kept(&self, probe: &str, environment: &str) -> Result<KeptValues, Error> {
        let conn = self.conn();
        Ok(read_kept(&conn, Some((probe, environment)))?
            .into_values()
            .next()
            .unwrap_or_default())
    }
}

/// A run row of `SELECT started_ms, intended_ms, duration_us, result,
/// reason, status, attempts, trace_id, run_id, error, step`.
fn run_row((probe, environment): (&str, &str), r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        probe: probe.to_owned(),
        environment: environment.to_owned(),
        started_ms: r.get(0)?,
        intended_ms: r.get(1)?,
        duration_us: r.get(2)?,
        result: Verdict::from_code(r.get(3)?),
        reason: r.get(4)?,
        status: r.get(5)?,
        attempts: r.get(6)?,
        trace_id: id_text(r.get_ref(7)?),
        run_id: id_text(r.get_ref(8)?),
        error: r.get(9)?,
        step: r.get(10)?,
    })
}

/// A trace or run id as stored: its bytes when it is lowercase hex (as
/// synthmon makes them: half the size), else its text.
fn id_value(id: &str) -> rusqlite::types::Value {
    let hex = id.len() % 2 == 0
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex {
        return rusqlite::types::Value::Text(id.to_owned());
    }
    let digit = |b: u8| {
        if b.is_ascii_digit() {
            b - b'0'
        } else {
            b - b'a' + 10
        }
    };
    rusqlite::types::Value::Blob(
        id.as_bytes()
            .chunks(2)
            .map(|p| (digit(p[0]) << 4) | digit(p[1]))
            .collect(),
    )
}

/// An id as [`id_value`] stored it, back as text.
fn id_text(v: rusqlite::types::ValueRef<'_>) -> String {
    match v {
        rusqlite::types::ValueRef::Blob(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
        rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        _ => String::new(),
    }
}

/// The minute (Unix minutes) of a Unix-milliseconds instant.
pub fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(MINUTE_MS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{WRITER_CACHE_KIB, Writer};

    #[test]
    fn a_cached_statement_with_a_bound_limit_is_planned_once() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Writer::open(dir.path()).unwrap();
        let reprepared = |conn: &rusqlite::Connection| {
            let mut stmt = conn
                .prepare_cached("SELECT id FROM series WHERE id > ?1 LIMIT ?2")
                .unwrap();
            for limit in 1..=5 {
                let rows: Vec<i64> = stmt
                    .query_map([0, limit], |r| r.get(0))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                assert!(rows.is_empty());
            }
            stmt.get_status(rusqlite::StatementStatus::RePrepare)
        };
        assert_eq!(reprepared(&writer.conn), 0);
        // What it guards against: the same statement on a connection
        // without the guarantee is planned again at every binding.
        writer
            .conn
            .set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
                false,
            )
            .unwrap();
        writer.conn.flush_prepared_statement_cache();
        assert!(reprepared(&writer.conn) >= 4);
    }

    #[test]
    fn the_writer_keeps_a_small_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Writer::open(dir.path()).unwrap();
        let size: i64 = writer
            .conn
            .query_row("PRAGMA cache_size", [], |r| r.get(0))
            .unwrap();
        // Negative: KiB, not pages. SQLite's default would read -2000.
        assert_eq!(size, -WRITER_CACHE_KIB);
    }
}
