//! Notices when the config file or any probe file changes on disk.
//!
//! Polling file metadata (following symlinks) rather than inotify: it sees
//! Kubernetes' ConfigMap update — an atomic swap of the `..data` symlink,
//! which changes no watched path itself — editors' rename-on-save, and
//! files appearing or disappearing under a glob, with no platform quirks.
//! The cost is a `stat` per file per poll. The sweep runs on the blocking
//! pool: at thousands of probe files it takes milliseconds (a glob and a
//! `stat` each), which the daemon's one runtime worker would otherwise
//! spend away from the runs it is timing.

use crate::plan::Config;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

pub struct Watcher {
    files: Arc<Files>,
    seen: u64,
}

/// What is watched: the config file and the probe globs.
struct Files {
    config_file: Option<PathBuf>,
    globs: Vec<String>,
}

impl Watcher {
    /// Watches the files of `config`, taking their state now as seen.
    pub async fn new(config: &Config) -> Watcher {
        let mut w = Watcher::with_seen(config, 0);
        w.seen = w.fingerprint().await;
        w
    }

    /// Watches the files of `config`, taking `seen` (a fingerprint taken
    /// *before* the config was read) as their last known state, so a change
    /// that lands while the config is being loaded is not missed.
    pub fn with_seen(config: &Config, seen: u64) -> Watcher {
        Watcher {
            files: Arc::new(Files {
                config_file: config.file.clone(),
                globs: config.daemon.probe_globs.clone(),
            }),
            seen,
        }
    }

    /// Whether anything changed since the last call (or `new`).
    pub async fn changed(&mut self) -> bool {
        let now = self.fingerprint().await;
        let changed = now != self.seen;
        self.seen = now;
        changed
    }

    /// Takes `fingerprint` as the last known state.
    pub fn set_seen(&mut self, fingerprint: u64) {
        self.seen = fingerprint;
    }

    /// The files' state now, swept on the blocking pool (here, should the
    /// pool be gone, as at a shutdown).
    pub async fn fingerprint(&self) -> u64 {
        let files = Arc::clone(&self.files);
        match tokio::task::spawn_blocking(move || files.fingerprint()).await {
            Ok(fingerprint) => fingerprint,
            Err(_) => self.files.fingerprint(),
        }
    }
}

impl Files {
    fn fingerprint(&self) -> u64 {
        let mut paths: Vec<PathBuf> = self.config_file.iter().cloned().collect();
        for pattern in &self.globs {
            if let Ok(found) = glob::glob(pattern) {
                paths.extend(found.filter_map(Result::ok));
            }
        }
        paths.sort();
        let mut text = String::new();
        for p in paths {
            let meta = std::fs::metadata(&p);
            let (ino, len, mtime, mtime_ns) = meta
                .map(|m| (m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
                .unwrap_or_default();
            text.push_str(&format!(
                "{}\0{ino}\0{len}\0{mtime}\0{mtime_ns}\n",
                p.display()
            ));
        }
        crate::schedule::stable_hash(text.as_bytes())
    }
}
