//! What holds the daemon's alerts right now: maintenance windows (the
//! config), silences (the API; stored in the history file through
//! [`crate::history::silences`]) and the connectivity self-check's verdict
//! (the monitor offline). The pipeline asks [`Holds::hold_of`] for each
//! outcome and [`Holds::held_pairs`] every tick and tells the alert engine;
//! the scheduler asks [`Holds::skips`] before a run; the API and the status
//! page show [`Holds::hold_of`]. The matching rules are [`crate::hold`]'s.

use crate::history::silences::SilenceStore;
use crate::hold::{Hold, Pair, Silence};
use crate::plan::Config;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The daemon's holds, shared by the pipeline, the scheduler and the
/// listener.
#[derive(Default)]
pub struct Holds {
    /// Every silence (active, future and recently expired), in memory: the
    /// store is written through, never read on the hot path.
    silences: std::sync::RwLock<Vec<Silence>>,
    /// The ids of silences whose expiry was logged (or that were expired
    /// through the API, which logs it then).
    logged: std::sync::Mutex<BTreeSet<String>>,
    store: Option<Arc<SilenceStore>>,
    /// Set while every self-check target fails.
    offline: AtomicBool,
    /// What the self-check found last (for the offline alert's summary).
    offline_detail: std::sync::Mutex<String>,
}

impl Holds {
    /// Opens the silences stored in the history file in `dir` (the history
    /// must be open: it creates and migrates the file). Without a history
    /// silences are kept in memory only, and say so in the log.
    pub async fn open(dir: Option<&Path>) -> Holds {
        let Some(dir) = dir.map(Path::to_path_buf) else {
            return Holds::default();
        };
        let opened = tokio::task::spawn_blocking(move || {
            let store = SilenceStore::open(&dir)?;
            let all = store.all()?;
            Ok::<_, crate::history::store::Error>((store, all))
        })
        .await;
        match opened {
            Ok(Ok((store, all))) => {
                if !all.is_empty() {
                    tracing::info!(silences = all.len(), "silences restored from the history");
                }
                let logged = all
                    .iter()
                    .filter(|s| s.expiry_logged)
                    .map(|s| s.silence.id.clone())
                    .collect();
                Holds {
                    silences: std::sync::RwLock::new(all.into_iter().map(|s| s.silence).collect()),
                    logged: std::sync::Mutex::new(logged),
                    store: Some(Arc::new(store)),
                    ..Holds::default()
                }
            }
            Ok(Err(e)) => {
                tracing::error!(error = %crate::net::error::describe(&e), "cannot open the stored silences: silences are kept in memory only");
                Holds::default()
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot open the stored silences: silences are kept in memory only");
                Holds::default()
            }
        }
    }

    /// Whether silences survive a restart.
    pub fn persistent(&self) -> bool {
        self.store.is_some()
    }

    /// The hold covering a configured pair at `now`, if any.
    pub fn hold_of(
        &self,
        config: &Config,
        probe: &str,
        environment: &str,
        now: DateTime<Utc>,
    ) -> Option<Hold> {
        let silences = self.silences.read().ok()?;
        // The common case, asked on every run: nothing can hold it, so
        // the pair's tags and labels need not be gathered.
        if config.daemon.maintenance.is_empty() && silences.is_empty() {
            return None;
        }
        let (tags, labels) = facts(config, probe, environment)?;
        let pair = Pair {
            probe,
            environment,
            tags: &tags,
            labels: &labels,
        };
        crate::hold::hold_of(&config.daemon.maintenance, &silences, &pair, now)
    }

    /// Whether a maintenance window with `action = "skip"` covers the pair.
    pub fn skips(&self, config: &Config, probe: &str, environment: &str) -> bool {
        if config.daemon.maintenance.is_empty() {
            return false;
        }
        self.hold_of(config, probe, environment, Utc::now())
            .is_some_and(|h| h.skips())
    }

    /// Every configured pair whose alerts are held at `now`: all of them
    /// while the monitor is offline.
    pub fn held_pairs(&self, config: &Config, now: DateTime<Utc>) -> BTreeSet<(String, String)> {
        let offline = self.offline();
        let none = self.silences.read().map(|s| s.is_empty()).unwrap_or(true);
        if !offline && none && config.daemon.maintenance.is_empty() {
            return BTreeSet::new();
        }
        config
            .probes
            .iter()
            .flat_map(|p| {
                p.environments
                    .iter()
                    .map(move |e| (p.name.as_str(), e.as_str()))
            })
            .filter(|(p, e)| offline || self.hold_of(config, p, e, now).is_some())
            .map(|(p, e)| (p.to_owned(), e.to_owned()))
            .collect()
    }

    pub fn offline(&self) -> bool {
        self.offline.load(Ordering::Acquire)
    }

    /// Records the self-check's verdict and what it found.
    pub fn set_offline(&self, offline: bool, detail: String) {
        self.offline.store(offline, Ordering::Release);
        if let Ok(mut d) = self.offline_detail.lock() {
            *d = detail;
        }
    }

    /// What the self-check found last.
    pub fn offline_detail(&self) -> String {
        self.offline_detail
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
    }

    /// Every silence kept (active, future and expired within
    /// [`crate::history::silences::KEEP_EXPIRED`]), oldest first.
    pub fn silences(&self) -> Vec<Silence> {
        self.silences
            .read()
            .map(|all| all.clone())
            .unwrap_or_default()
    }

    /// Adds a silence: stored first (when the history is on), so a silence
    /// the API confirmed survives a restart.
    pub async fn add(&self, silence: Silence) -> Result<(), String> {
        self.write(&silence, false).await?;
        tracing::info!(
            id = %silence.id,
            expires_at = %silence.expires_at.to_rfc3339(),
            created_by = %silence.created_by,
            comment = %silence.comment,
            "silence added"
        );
        if let Ok(mut all) = self.silences.write() {
            all.push(silence);
        }
        Ok(())
    }

    /// Expires a silence now (it stays listed, as expired); `Ok(None)` for
    /// an unknown id. Expiring an expired silence changes nothing.
    pub async fn expire(&self, id: &str, now: DateTime<Utc>) -> Result<Option<Silence>, String> {
        let Some(mut silence) = self
            .silences
            .read()
            .ok()
            .and_then(|all| all.iter().find(|s| s.id == id).cloned())
        else {
            return Ok(None);
        };
        if silence.expires_at <= now {
            return Ok(Some(silence));
        }
        silence.expires_at = now;
        // Expired at someone's request: logged here, not again by upkeep.
        self.write(&silence, true).await?;
        tracing::info!(id = %id, created_by = %silence.created_by, "silence expired through the API");
        if let Ok(mut logged) = self.logged.lock() {
            logged.insert(id.to_owned());
        }
        if let Ok(mut all) = self.silences.write() {
            if let Some(s) = all.iter_mut().find(|s| s.id == id) {
                s.clone_from(&silence);
            }
        }
        Ok(Some(silence))
    }

    /// Silences that expired since the last look (each once), after
    /// forgetting those expired long ago.
    fn newly_expired(&self, now: DateTime<Utc>) -> Vec<Silence> {
        let (Ok(mut all), Ok(mut logged)) = (self.silences.write(), self.logged.lock()) else {
            return Vec::new();
        };
        all.retain(|s| s.expires_at >= now - crate::history::silences::KEEP_EXPIRED);
        logged.retain(|id| all.iter().any(|s| &s.id == id));
        all.iter()
            .filter(|s| s.expires_at <= now && logged.insert(s.id.clone()))
            .cloned()
            .collect()
    }

    async fn write(&self, silence: &Silence, logged: bool) -> Result<(), String> {
        let Some(store) = self.store.clone() else {
            return Ok(());
        };
        let s = silence.clone();
        match tokio::task::spawn_blocking(move || store.put(&s, logged)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(crate::net::error::describe(&e)),
            Err(e) => Err(format!("cannot store the silence: {e}")),
        }
    }

    /// Logs each silence that expired on its own, once (across restarts),
    /// and forgets those expired long ago.
    pub async fn upkeep(&self, now: DateTime<Utc>) {
        let expired = self.newly_expired(now);
        for s in &expired {
            tracing::info!(
                id = %s.id,
                expired_at = %s.expires_at.to_rfc3339(),
                created_by = %s.created_by,
                comment = %s.comment,
                "silence expired"
            );
        }
        let Some(store) = self.store.clone() else {
            return;
        };
        let ids: Vec<String> = expired.into_iter().map(|s| s.id).collect();
        let done = tokio::task::spawn_blocking(move || {
            for id in &ids {
                store.mark_logged(id)?;
            }
            store.prune(now)
        })
        .await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %crate::net::error::describe(&e), "cannot update the stored silences");
        }
    }
}

/// How often expired silences are looked for (and logged).
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs [`Holds::upkeep`] every [`UPKEEP_EVERY`] until `stop`.
pub async fn upkeep(shared: Arc<super::Shared>, stop: tokio_util::sync::CancellationToken) {
    loop {
        shared.holds.upkeep(Utc::now()).await;
        tokio::select! {
            () = tokio::time::sleep(UPKEEP_EVERY) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// A configured pair's tags and labels (probe labels over environment
/// labels, as its alerts carry them); `None` for a pair not configured.
fn facts(
    config: &Config,
    probe: &str,
    environment: &str,
) -> Option<(Vec<String>, BTreeMap<String, String>)> {
    let p = config.probes.iter().find(|p| p.name == probe)?;
    let mut labels = config
        .environments
        .get(environment)
        .map(|e| e.labels.clone())
        .unwrap_or_default();
    labels.extend(p.labels.clone());
    Some((p.tags.clone(), labels))
}
