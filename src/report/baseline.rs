//! The baseline file of `--once --save-baseline FILE` / `--baseline FILE`
//! and the quality gate's results: plain data, the versioned JSON format,
//! reading it (every failure names the file) and writing it atomically.
//!
//! What the entries hold (a pair's latency over one invocation) is
//! measured, and a pair judged against its entry, by `once`; rendering the
//! comparisons is `human`'s and `json`'s. Entries are per (probe,
//! environment): a flow is compared as a whole run. An entry may carry a
//! `step`, which this version neither writes nor compares, so per-step
//! entries can be added within version 1 without breaking older readers.
//!
//! ```json
//! {"version": 1, "created_at": "2026-12-06T06:55:58Z", "synthmon_version": "0.1.0",
//!  "probes": [{"probe": "orders-api", "environment": "staging", "samples": 1,
//!              "p50": 0.0213, "p90": 0.0213, "p95": 0.0213, "p99": 0.0213,
//!              "avg": 0.0213, "min": 0.0213, "max": 0.0213}]}
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The version this synthmon writes and reads. Fields are only ever added
/// within a version; a reader ignores the ones it does not know.
pub const FILE_VERSION: u32 = 1;

/// A baseline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineFile {
    pub version: u32,
    /// When the file was written, RFC 3339 UTC.
    pub created_at: String,
    /// Which synthmon wrote it; informational.
    #[serde(default)]
    pub synthmon_version: String,
    pub probes: Vec<Entry>,
}

/// One (probe, environment)'s latency over one invocation, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub probe: String,
    pub environment: String,
    /// A flow step; absent for the whole run (the only entries this
    /// version writes and compares).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// How many latencies the figures summarize: 1 for a single run, the
    /// requests that got a response for a workload.
    pub samples: u64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub avg: f64,
    pub min: f64,
    pub max: f64,
}

impl BaselineFile {
    /// A file of `probes`, stamped now.
    pub fn new(probes: Vec<Entry>) -> BaselineFile {
        BaselineFile {
            version: FILE_VERSION,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            synthmon_version: env!("CARGO_PKG_VERSION").to_owned(),
            probes,
        }
    }

    /// The whole-run entry of (probe, environment).
    pub fn find(&self, probe: &str, environment: &str) -> Option<&Entry> {
        self.probes
            .iter()
            .find(|e| e.step.is_none() && e.probe == probe && e.environment == environment)
    }
}

/// Why a baseline file cannot be read or written: a usage error (exit 2).
/// Every message names the file; the cause is the source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read baseline file `{}`", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("baseline file `{}` is not JSON", .path.display())]
    NotJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "baseline file `{}` has {found}; this synthmon reads version {FILE_VERSION} (write a new one with --save-baseline)",
        .path.display()
    )]
    Version { path: PathBuf, found: String },
    #[error("baseline file `{}` is not a synthmon baseline: {message}", .path.display())]
    Shape { path: PathBuf, message: String },
    #[error("cannot write baseline file `{}`", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Reads and checks the baseline file at `path`.
pub fn read(path: &Path) -> Result<BaselineFile, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Parses a baseline file's text; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<BaselineFile, Error> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|source| Error::NotJson {
        path: path.to_owned(),
        source,
    })?;
    // The version first: a future format may differ in anything else.
    let found = match value.get("version") {
        None => {
            return Err(Error::Shape {
                path: path.to_owned(),
                message: "no `version` field".to_owned(),
            });
        }
        Some(v) if v.as_u64() == Some(u64::from(FILE_VERSION)) => None,
        Some(v) => Some(format!("version {v}")),
    };
    if let Some(found) = found {
        return Err(Error::Version {
            path: path.to_owned(),
            found,
        });
    }
    let file: BaselineFile = serde_path_to_error::deserialize(value).map_err(|e| {
        let at = e.path().to_string();
        Error::Shape {
            path: path.to_owned(),
            message: if at == "." {
                e.into_inner().to_string()
            } else {
                format!("{at}: {}", e.into_inner())
            },
        }
    })?;
    let shape = |message: String| Error::Shape {
        path: path.to_owned(),
        message,
    };
    let mut seen = BTreeSet::new();
    for (i, e) in file.probes.iter().enumerate() {
        if !seen.insert((&e.probe, &e.environment, &e.step)) {
            return Err(shape(format!(
                "probes[{i}]: a second entry for {} @ {}",
                e.probe, e.environment
            )));
        }
        for metric in Metric::ALL {
            if metric.of(e) < 0.0 {
                return Err(shape(format!(
                    "probes[{i}].{}: a latency cannot be negative",
                    metric.as_str()
                )));
            }
        }
    }
    Ok(file)
}

/// Writes `file` to `path` atomically ([`super::write_atomic`]: a
/// temporary file beside it, then a rename), so a reader (or a crash)
/// never sees half a file.
pub fn write(path: &Path, file: &BaselineFile) -> Result<(), Error> {
    // Serializing plain data with string keys cannot fail.
    let mut text = serde_json::to_string_pretty(file).unwrap_or_default();
    text.push('\n');
    super::write_atomic(path, text.as_bytes()).map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })
}

/// The aggregates a baseline file stores, which are the ones the gate can
/// compare (serialized as `p95`, `avg`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    P50,
    P90,
    P95,
    P99,
    Avg,
    Min,
    Max,
}

impl Metric {
    pub const ALL: [Metric; 7] = [
        Metric::P50,
        Metric::P90,
        Metric::P95,
        Metric::P99,
        Metric::Avg,
        Metric::Min,
        Metric::Max,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::P50 => "p50",
            Metric::P90 => "p90",
            Metric::P95 => "p95",
            Metric::P99 => "p99",
            Metric::Avg => "avg",
            Metric::Min => "min",
            Metric::Max => "max",
        }
    }

    /// The stored metric for percentile `q` (`p100` is the maximum), if
    /// the file stores it.
    pub fn percentile(q: f64) -> Option<Metric> {
        [
            (50.0, Metric::P50),
            (90.0, Metric::P90),
            (95.0, Metric::P95),
            (99.0, Metric::P99),
            (100.0, Metric::Max),
        ]
        .into_iter()
        .find(|(p, _)| (q - p).abs() < 1e-9)
        .map(|(_, m)| m)
    }

    /// This metric's value in `entry`, in seconds.
    pub fn of(self, entry: &Entry) -> f64 {
        match self {
            Metric::P50 => entry.p50,
            Metric::P90 => entry.p90,
            Metric::P95 => entry.p95,
            Metric::P99 => entry.p99,
            Metric::Avg => entry.avg,
            Metric::Min => entry.min,
            Metric::Max => entry.max,
        }
    }
}

/// What one comparison found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// At most the baseline × (1 + tolerance).
    Ok,
    /// Slower than the baseline beyond the tolerance: the gate fails.
    Regressed,
    /// The file has no entry for the pair (a new probe or environment).
    NoBaseline,
    /// Nothing to compare: the run failed (it fails the gate by itself;
    /// its latency, a fast error or a timeout, is not the service's),
    /// measured no latency, or the baseline value is zero.
    Skipped,
}

/// One (probe, environment) compared with its baseline; values in seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub probe: String,
    pub environment: String,
    pub metric: Metric,
    /// `0.2` is 20%.
    pub tolerance: f64,
    pub verdict: Verdict,
    pub current: Option<f64>,
    pub baseline: Option<f64>,
    /// `current / baseline`; absent when either is, or the baseline is 0.
    pub ratio: Option<f64>,
    /// The slowest value that passes: `baseline × (1 + tolerance)`.
    pub limit: Option<f64>,
    pub current_samples: Option<u64>,
    pub baseline_samples: Option<u64>,
}

/// The gate's result for a report: which file, when it was written, every
/// selected pair's comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateReport {
    pub file: String,
    pub created_at: String,
    pub comparisons: Vec<Comparison>,
    pub regressions: usize,
}

impl GateReport {
    pub fn new(path: &Path, file: &BaselineFile, comparisons: Vec<Comparison>) -> GateReport {
        GateReport {
            file: path.display().to_string(),
            created_at: file.created_at.clone(),
            regressions: comparisons
                .iter()
                .filter(|c| c.verdict == Verdict::Regressed)
                .count(),
            comparisons,
        }
    }

    /// Whether the gate passes (no regression).
    pub fn passed(&self) -> bool {
        self.regressions == 0
    }
}

/// `0.2` as `20%`, `0.125` as `12.5%`.
pub fn percent(ratio: f64) -> String {
    let p = ratio * 100.0;
    if (p - p.round()).abs() < 1e-6 {
        format!("{p:.0}%")
    } else {
        format!("{}%", (p * 1000.0).round() / 1000.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(probe: &str, p95: f64) -> Entry {
        Entry {
            probe: probe.to_owned(),
            environment: "env".to_owned(),
            step: None,
            samples: 1,
            p50: p95,
            p90: p95,
            p95,
            p99: p95,
            avg: p95,
            min: p95,
            max: p95,
        }
    }

    #[test]
    fn the_file_round_trips_and_bad_files_name_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("baseline.json");
        let file = BaselineFile::new(vec![entry("a", 0.1), entry("b", 0.2)]);
        write(&path, &file).unwrap();
        assert_eq!(read(&path).unwrap(), file);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let p = Path::new("ci/base.json");
        let msg = |text: &str| parse(p, text).unwrap_err().to_string();
        assert_eq!(
            msg("{\"version\": 2, \"probes\": []}"),
            "baseline file `ci/base.json` has version 2; this synthmon reads version 1 (write a new one with --save-baseline)"
        );
        assert_eq!(msg("not json"), "baseline file `ci/base.json` is not JSON");
        assert_eq!(
            msg("{\"probes\": []}"),
            "baseline file `ci/base.json` is not a synthmon baseline: no `version` field"
        );
        let m = msg("{\"version\": 1, \"created_at\": \"x\", \"probes\": [{\"probe\": \"a\"}]}");
        assert!(m.contains("probes[0]: missing field `environment`"), "{m}");
        let missing = read(&dir.path().join("nope.json")).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("cannot read baseline file `"),
            "{missing}"
        );
        // Unknown fields are a later writer's additions within version 1.
        let later = "{\"version\": 1, \"created_at\": \"x\", \"new\": 1, \"probes\": []}";
        assert!(parse(p, later).is_ok());
    }

    #[test]
    fn tolerances_print_as_percentages() {
        assert_eq!(percent(0.2), "20%");
        assert_eq!(percent(0.125), "12.5%");
        assert_eq!(percent(0.1), "10%");
    }
}
