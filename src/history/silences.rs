//! Runtime silences in the history file (`silences` table), so they
//! survive a restart. A connection of its own beside the writer's (WAL
//! lets both write; SQLite serializes them, the busy timeout waits): a
//! silence is written when the API call asks, not a second later with
//! the writer's batch, so a `POST` that answered has stored it. Every
//! function blocks on disk I/O: call it from `spawn_blocking`.
//!
//! Expired silences stay (listed as expired) for [`KEEP_EXPIRED`], then
//! [`SilenceStore::prune`] removes them; `expiry_logged` remembers that
//! the daemon logged an expiry, so a restart does not log it again.

use super::store::{Error, FILE};
use crate::hold::Silence;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, params};
use std::path::Path;
use std::sync::Mutex;

/// How long an expired silence stays listed.
pub const KEEP_EXPIRED: chrono::TimeDelta = chrono::TimeDelta::days(7);

fn query(what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |source| Error::Query { what, source }
}

/// A read-write connection on the silences table.
pub struct SilenceStore {
    conn: Mutex<Connection>,
}

/// A stored silence, and whether its expiry was logged.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub silence: Silence,
    pub expiry_logged: bool,
}

impl SilenceStore {
    /// Opens `dir/history.sqlite`, which the history's writer created and
    /// migrated (open the history first).
    pub fn open(dir: &Path) -> Result<SilenceStore, Error> {
        let path = dir.join(FILE);
        if !path.exists() {
            return Err(Error::Missing { path });
        }
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(
            |source| Error::Open {
                path: path.clone(),
                source,
            },
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(query("set the busy timeout"))?;
        super::store::stable_plans(&conn).map_err(query("keep query plans stable"))?;
        Ok(SilenceStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes a silence (a new one, or a changed one: expired early).
    pub fn put(&self, silence: &Silence, expiry_logged: bool) -> Result<(), Error> {
        let body = serde_json::to_string(silence).map_err(|e| Error::Query {
            what: "encode a silence",
            source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
        })?;
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO silences (id, created_ms, expires_ms, body, expiry_logged)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    silence.id,
                    silence.created_at.timestamp_millis(),
                    silence.expires_at.timestamp_millis(),
                    body,
                    expiry_logged
                ],
            )
            .map_err(query("store a silence"))?;
        Ok(())
    }

    /// Notes that a silence's expiry was logged.
    pub fn mark_logged(&self, id: &str) -> Result<(), Error> {
        self.conn()
            .execute(
                "UPDATE silences SET expiry_logged = 1 WHERE id = ?1",
                params![id],
            )
            .map_err(query("mark a silence's expiry as logged"))?;
        Ok(())
    }

    /// Every stored silence, oldest first. A row whose body cannot be read
    /// (written by a newer build) is skipped.
    pub fn all(&self) -> Result<Vec<Stored>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT body, expiry_logged FROM silences ORDER BY created_ms, id")
            .map_err(query("read the silences"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)))
            .map_err(query("read the silences"))?;
        let mut out = Vec::new();
        for row in rows {
            let (body, expiry_logged) = row.map_err(query("read a silence"))?;
            match serde_json::from_str::<Silence>(&body) {
                Ok(silence) => out.push(Stored {
                    silence,
                    expiry_logged,
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a stored silence that cannot be read")
                }
            }
        }
        Ok(out)
    }

    /// Removes silences expired more than [`KEEP_EXPIRED`] before `now`;
    /// returns how many went.
    pub fn prune(&self, now: DateTime<Utc>) -> Result<usize, Error> {
        let before = (now - KEEP_EXPIRED).timestamp_millis();
        self.conn()
            .execute(
                "DELETE FROM silences WHERE expires_ms < ?1",
                params![before],
            )
            .map_err(query("prune expired silences"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::hold::Matchers;

    #[test]
    fn silences_are_stored_updated_and_pruned_after_a_week() {
        let dir = tempfile::tempdir().unwrap();
        drop(super::super::store::Writer::open(dir.path()).unwrap());
        let store = SilenceStore::open(dir.path()).unwrap();
        let now = DateTime::from_timestamp(1_750_000_000, 0).unwrap();
        let mut s = Silence {
            id: "s1".into(),
            matchers: Matchers {
                probes: vec!["api".into()],
                ..Matchers::default()
            },
            created_at: now,
            expires_at: now + chrono::TimeDelta::hours(2),
            comment: "deploy".into(),
            created_by: "ops".into(),
        };
        store.put(&s, false).unwrap();
        assert_eq!(store.all().unwrap()[0].silence, s);
        s.expires_at = now + chrono::TimeDelta::minutes(5);
        store.put(&s, false).unwrap();
        store.mark_logged("s1").unwrap();
        let all = store.all().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].silence.expires_at, s.expires_at);
        assert!(all[0].expiry_logged);
        assert_eq!(store.prune(now + chrono::TimeDelta::days(7)).unwrap(), 0);
        assert_eq!(store.prune(now + chrono::TimeDelta::days(8)).unwrap(), 1);
        assert!(store.all().unwrap().is_empty());
    }
}
