//! Failure artifacts on disk: one JSON file per failed run, holding the
//! redacted outcome with its artifact (the exchange, a flow's steps), so a
//! person can see what the target answered when it failed.
//!
//! Layout: `ROOT/PROBE/ENVIRONMENT/<started>-<run_id>-<reason>.json`, where
//! `<started>` is the run's start in Unix milliseconds on 13 digits (names
//! sort by time) and the id a run is looked up by is its run id. `ROOT` is
//! `STATE_DIR/artifacts` for the daemon and `--artifacts DIR` for
//! `--once`. A file is written whole (a temporary name, then a rename), and
//! each pair's directory is then pruned to the newest [`Limits::keep`]
//! files within [`Limits::max_bytes`], oldest first; the newest file is
//! kept whatever its size. Probe and environment names are checked to be
//! the config's names (`[A-Za-z0-9][A-Za-z0-9_.-]*`), so a name can never
//! reach outside `ROOT`.
//!
//! The daemon writes through [`ArtifactStore`]: a thread of its own fed by
//! a bounded channel, so the runtime never waits on the disk (a full queue
//! drops the artifact and counts it). Reading ([`list`], [`find`]) is
//! plain blocking file I/O for the blocking pool.
//!
//! What a file holds is versioned: `{"schema_version": 1,
//! "synthmon_version": …, "result": OUTCOME}`, where `OUTCOME` is a result
//! of `--output json` (fields are only added within a version).

use crate::outcome::Outcome;
use serde::Serialize;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

/// The folder of the state directory the daemon keeps artifacts in.
pub const DIR: &str = "artifacts";
/// The version of a file's layout.
pub const SCHEMA_VERSION: u32 = 1;
/// Files kept per (probe, environment) unless configured otherwise.
pub const DEFAULT_KEEP: usize = 20;
/// Bytes kept per (probe, environment) unless configured otherwise.
pub const DEFAULT_MAX_BYTES: u64 = 2 * 1024 * 1024;
/// Artifacts waiting for the writer; beyond this they are dropped and
/// counted (each may be a few hundred KiB).
pub const QUEUE: usize = 32;

/// How much each (probe, environment) pair keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// At most this many files.
    pub keep: usize,
    /// At most this many bytes in all (the newest file is kept anyway).
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            keep: DEFAULT_KEEP,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// The document a file holds.
#[derive(Serialize)]
struct Document<'a> {
    schema_version: u32,
    synthmon_version: &'static str,
    result: &'a Outcome,
}

/// Whether `name` is a probe or environment name as the config allows
/// them, and so a safe path component (never `.`, `..` or a separator).
pub fn safe_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Whether `id` can be a run id (letters and digits).
pub fn safe_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric())
}

/// The directory of a pair under `root`; `None` for a name that is not a
/// config name.
pub fn pair_dir(root: &Path, probe: &str, environment: &str) -> Option<PathBuf> {
    (safe_name(probe) && safe_name(environment)).then(|| root.join(probe).join(environment))
}

/// The path the daemon serves run `run_id`'s artifact at (config names
/// need no escaping in a path: letters, digits, `_`, `.` and `-`).
pub fn api_path(probe: &str, environment: &str, run_id: &str) -> String {
    format!("/api/v1/artifacts/{probe}/{environment}/{run_id}")
}

/// The file name of a failed outcome's artifact; `None` for a run that
/// passed, or whose run id is not letters and digits.
pub fn file_name(outcome: &Outcome) -> Option<String> {
    if outcome.success || !safe_id(&outcome.run_id) {
        return None;
    }
    let started = chrono::DateTime::parse_from_rfc3339(&outcome.started_at)
        .map(|t| t.timestamp_millis())
        .unwrap_or_else(|_| super::now_ms())
        .max(0);
    let reason = outcome.reason.map_or("failed", |r| r.as_str());
    Some(format!("{started:013}-{}-{reason}.json", outcome.run_id))
}

/// Where a failed outcome's artifact goes under `root`.
pub fn path_of(root: &Path, outcome: &Outcome) -> Option<PathBuf> {
    Some(pair_dir(root, &outcome.probe, &outcome.environment)?.join(file_name(outcome)?))
}

/// Writes a failed outcome's artifact under `root` and prunes its pair's
/// directory to `limits`; returns the file written, `None` for an outcome
/// that passed (or whose names cannot be a path).
pub fn write(root: &Path, outcome: &Outcome, limits: Limits) -> io::Result<Option<PathBuf>> {
    let Some(path) = path_of(root, outcome) else {
        return Ok(None);
    };
    let Some(dir) = path.parent() else {
        return Ok(None);
    };
    std::fs::create_dir_all(dir)?;
    let doc = Document {
        schema_version: SCHEMA_VERSION,
        synthmon_version: env!("CARGO_PKG_VERSION"),
        result: outcome,
    };
    let mut bytes = serde_json::to_vec_pretty(&doc).map_err(io::Error::other)?;
    bytes.push(b'\n');
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{}.tmp", name.unwrap_or_default()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.flush()?;
    }
    std::fs::rename(&tmp, &path)?;
    prune(dir, limits)?;
    Ok(Some(path))
}

/// One stored artifact, as the listing shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The run id: what [`find`] looks the file up by.
    pub id: String,
    /// The run's start, Unix milliseconds.
    pub started_ms: i64,
    pub reason: String,
    /// The file's size.
    pub bytes: u64,
    /// The file's name in its pair's directory.
    pub file: String,
}

/// Parses `<started>-<run_id>-<reason>.json`.
fn parse_name(name: &str) -> Option<(i64, &str, &str)> {
    let stem = name.strip_suffix(".json")?;
    let (started, rest) = stem.split_once('-')?;
    let (id, reason) = rest.split_once('-')?;
    let started = started.parse().ok()?;
    (safe_id(id) && !reason.is_empty()).then_some((started, id, reason))
}

/// The artifacts in one pair's directory, oldest first; none when it does
/// not exist.
fn entries(dir: &Path) -> io::Result<Vec<Entry>> {
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for item in read {
        let item = item?;
        let name = item.file_name().to_string_lossy().into_owned();
        let Some((started_ms, id, reason)) = parse_name(&name) else {
            continue;
        };
        let meta = item.metadata()?;
        if !meta.is_file() {
            continue;
        }
        out.push(Entry {
            id: id.to_owned(),
            started_ms,
            reason: reason.to_owned(),
            bytes: meta.len(),
            file: name,
        });
    }
    out.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(out)
}

/// Deletes the oldest artifacts of a pair's directory until at most
/// `limits.keep` files of at most `limits.max_bytes` in all remain (the
/// newest always stays); returns how many went.
pub fn prune(dir: &Path, limits: Limits) -> io::Result<usize> {
    let all = entries(dir)?;
    let (mut count, mut bytes) = (0usize, 0u64);
    let mut keep_from = all.len();
    for (i, e) in all.iter().enumerate().rev() {
        count += 1;
        bytes = bytes.saturating_add(e.bytes);
        let first = count == 1;
        if !first && (count > limits.keep || bytes > limits.max_bytes) {
            break;
        }
        keep_from = i;
    }
    let mut removed = 0;
    for e in &all[..keep_from] {
        match std::fs::remove_file(dir.join(&e.file)) {
            Ok(()) => removed += 1,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    Ok(removed)
}

/// A pair's artifacts under `root`, newest first.
pub fn list(root: &Path, probe: &str, environment: &str) -> io::Result<Vec<Entry>> {
    let Some(dir) = pair_dir(root, probe, environment) else {
        return Ok(Vec::new());
    };
    let mut all = entries(&dir)?;
    all.reverse();
    Ok(all)
}

/// The file of run `id`'s artifact under `root`, if it is still kept.
pub fn find(root: &Path, probe: &str, environment: &str, id: &str) -> io::Result<Option<PathBuf>> {
    let Some(dir) = pair_dir(root, probe, environment) else {
        return Ok(None);
    };
    if !safe_id(id) {
        return Ok(None);
    }
    Ok(entries(&dir)?
        .into_iter()
        .find(|e| e.id == id)
        .map(|e| dir.join(e.file)))
}

/// The daemon's artifact writer: a thread of its own, fed without waiting.
pub struct ArtifactStore {
    tx: Option<SyncSender<Box<Outcome>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    dropped: Arc<AtomicU64>,
    root: PathBuf,
}

impl ArtifactStore {
    /// Starts the writer for `root` (created on the first write).
    pub fn start(root: PathBuf, limits: Limits) -> io::Result<ArtifactStore> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let thread_root = root.clone();
        let thread = std::thread::Builder::new()
            .name("synthmon-artifacts".into())
            .spawn(move || run(&thread_root, &rx, limits))?;
        Ok(ArtifactStore {
            tx: Some(tx),
            thread: Some(thread),
            dropped: Arc::default(),
            root,
        })
    }

    /// Where the files go.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Hands a failed outcome's artifact to the writer without waiting; a
    /// passed outcome is ignored, a full queue drops it and counts.
    pub fn record(&self, outcome: &Outcome) {
        if outcome.success {
            return;
        }
        let Some(tx) = &self.tx else { return };
        match tx.try_send(Box::new(outcome.clone())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(
                        "artifacts: the writer is behind; failure artifacts are being dropped"
                    );
                }
            }
        }
    }

    /// Artifacts dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes what is queued and stops the writer (blocking).
    pub fn close(mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(root: &Path, rx: &Receiver<Box<Outcome>>, limits: Limits) {
    let failing = AtomicBool::new(false);
    while let Ok(outcome) = rx.recv() {
        match write(root, &outcome, limits) {
            Ok(_) => {
                if failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(dir = %root.display(), "artifacts: writing again");
                }
            }
            Err(e) => {
                if !failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        dir = %root.display(),
                        probe = %outcome.probe,
                        environment = %outcome.environment,
                        error = %e,
                        "artifacts: cannot write a failure artifact"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::outcome::FailureReason;

    fn failed(probe: &str, ms: i64, id: &str) -> Outcome {
        let ids = crate::tagging::RunIds::generate();
        let mut o = Outcome::new(probe, "prod", "http", &ids);
        o.run_id = id.to_owned();
        o.started_at = chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        o.fail(FailureReason::Status, "status = 500");
        o
    }

    #[test]
    fn names_that_are_not_config_names_never_become_paths() {
        for ok in ["api", "orders-api", "a.b_c", "A1"] {
            assert!(safe_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "-a", ".hidden", "a\\b", "é"] {
            assert!(!safe_name(bad), "{bad}");
        }
        assert!(pair_dir(Path::new("/r"), "..", "prod").is_none());
        assert!(!safe_id("../x") && !safe_id("") && safe_id("0af3"));
    }

    #[test]
    fn a_passed_run_leaves_nothing_and_a_failed_one_a_named_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut passed = failed("api", 1_000, "aa01");
        passed.success = true;
        passed.reason = None;
        assert_eq!(write(dir.path(), &passed, Limits::default()).unwrap(), None);
        let path = write(dir.path(), &failed("api", 1_000, "aa02"), Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            path,
            dir.path().join("api/prod/0000000001000-aa02-status.json")
        );
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(doc["schema_version"], 1);
        assert_eq!(doc["result"]["reason"], "status");
        assert_eq!(doc["result"]["run_id"], "aa02");
        let listed = list(dir.path(), "api", "prod").unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (
                listed[0].id.as_str(),
                listed[0].started_ms,
                listed[0].reason.as_str()
            ),
            ("aa02", 1_000, "status")
        );
        assert_eq!(find(dir.path(), "api", "prod", "aa02").unwrap(), Some(path));
        assert_eq!(find(dir.path(), "api", "prod", "aa01").unwrap(), None);
        assert_eq!(list(dir.path(), "nope", "prod").unwrap(), Vec::new());
    }

    #[test]
    fn pruning_keeps_the_newest_within_count_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            keep: 3,
            max_bytes: u64::MAX,
        };
        for i in 0..7 {
            write(
                dir.path(),
                &failed("api", 1_000 + i, &format!("r{i}")),
                limits,
            )
            .unwrap();
        }
        // A stray file is left alone.
        std::fs::write(dir.path().join("api/prod/notes.txt"), "x").unwrap();
        let ids: Vec<String> = list(dir.path(), "api", "prod")
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, ["r6", "r5", "r4"]);
        // Bytes: one file's worth keeps only the newest, even if bigger.
        let one = list(dir.path(), "api", "prod").unwrap()[0].bytes;
        let removed = prune(
            &dir.path().join("api/prod"),
            Limits {
                keep: 10,
                max_bytes: one + one / 2,
            },
        )
        .unwrap();
        assert_eq!(removed, 2);
        assert_eq!(
            prune(
                &dir.path().join("api/prod"),
                Limits {
                    keep: 10,
                    max_bytes: 1
                }
            )
            .unwrap(),
            0
        );
        let left = list(dir.path(), "api", "prod").unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, "r6");
        assert!(dir.path().join("api/prod/notes.txt").exists());
    }

    #[test]
    fn the_store_writes_on_its_own_thread_and_drains_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::start(dir.path().to_owned(), Limits::default()).unwrap();
        for i in 0..5 {
            store.record(&failed("api", 2_000 + i, &format!("s{i}")));
        }
        let mut passed = failed("api", 3_000, "ok");
        passed.success = true;
        store.record(&passed);
        store.close();
        assert_eq!(list(dir.path(), "api", "prod").unwrap().len(), 5);
    }
}
