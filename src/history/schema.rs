//! The history database's schema and its migrations.
//!
//! `PRAGMA application_id` marks the file as synthmon's history, so a
//! foreign SQLite file in its place is refused rather than written into;
//! `PRAGMA user_version` is the schema version. Each migration takes the
//! schema from one version to the next inside one transaction; a file of a
//! newer version than this build knows is refused.

use rusqlite::Connection;

/// "SYNH": the `application_id` of a synthmon history file.
pub const APPLICATION_ID: i64 = 0x5359_4E48;

/// Each entry takes version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 → 1
    "CREATE TABLE series (
        id INTEGER PRIMARY KEY,
        probe TEXT NOT NULL,
        environment TEXT NOT NULL,
        step TEXT NOT NULL,
        UNIQUE (probe, environment, step)
    );
    -- The bulk of the file: kept small. Clustered by series and time (no
    -- second index), the intended start as the lag behind it, hex ids as
    -- their bytes.
    CREATE TABLE runs (
        series INTEGER NOT NULL,
        started_ms INTEGER NOT NULL,
        run_id BLOB NOT NULL,
        lag_ms INTEGER NOT NULL,
        duration_us INTEGER NOT NULL,
        result INTEGER NOT NULL,
        reason TEXT,
        status INTEGER,
        attempts INTEGER NOT NULL,
        trace_id BLOB NOT NULL,
        error TEXT,
        PRIMARY KEY (series, started_ms, run_id)
    ) WITHOUT ROWID;
    CREATE TABLE minutes (
        series INTEGER NOT NULL,
        minute INTEGER NOT NULL,
        runs INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        degraded INTEGER NOT NULL,
        hist BLOB,
        PRIMARY KEY (series, minute)
    ) WITHOUT ROWID;
    CREATE INDEX minutes_by_minute ON minutes (minute);
    CREATE TABLE hours (
        series INTEGER NOT NULL,
        hour INTEGER NOT NULL,
        runs INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        degraded INTEGER NOT NULL,
        hist BLOB,
        PRIMARY KEY (series, hour)
    ) WITHOUT ROWID;
    CREATE TABLE transitions (
        probe TEXT NOT NULL,
        environment TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        from_state TEXT NOT NULL,
        to_state TEXT NOT NULL,
        reason TEXT
    );
    CREATE INDEX transitions_by_pair ON transitions (probe, environment, at_ms);
    CREATE TABLE kept (
        probe TEXT NOT NULL,
        environment TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        PRIMARY KEY (probe, environment, name)
    ) WITHOUT ROWID;
    CREATE TABLE marks (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );",
    // 1 → 2: runtime silences (`history::silences`), the silence as JSON
    // beside the columns the queries use.
    "CREATE TABLE silences (
        id TEXT PRIMARY KEY,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        body TEXT NOT NULL,
        expiry_logged INTEGER NOT NULL DEFAULT 0
    );",
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Why a file cannot be used as the history.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("it is not a synthmon history database (application_id {0:#x})")]
    Foreign(i64),
    #[error("its schema version {found} is newer than this synthmon knows ({VERSION})")]
    Newer { found: i64 },
    #[error("it cannot be read or migrated")]
    Sqlite(#[from] rusqlite::Error),
}

/// Brings `conn`'s schema to [`VERSION`], or says why it cannot.
pub fn migrate(conn: &mut Connection) -> Result<(), SchemaError> {
    let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let tables: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
        [],
        |r| r.get(0),
    )?;
    if app != APPLICATION_ID && (app != 0 || tables > 0) {
        return Err(SchemaError::Foreign(app));
    }
    if version > VERSION {
        return Err(SchemaError::Newer { found: version });
    }
    if tables == 0 {
        // A new file: freed pages can then be given back
        // (`Writer::vacuum_some`). Only here: on a file with tables the
        // pragma writes its header, and a refused file is left untouched.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", from as i64 + 1)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.commit()?;
    }
    Ok(())
}
