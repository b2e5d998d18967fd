//! Reporters: render outcomes for people and machines. They only read
//! [`Outcome`]s; they never run anything. `baseline` holds the quality
//! gate's file and comparisons, which every rendering shows; `junit` and
//! `html` are the `--once --junit FILE` / `--html FILE` files for CI,
//! written with [`write_atomic`]; `markup` escapes text for both.

pub mod baseline;
pub mod html;
pub mod human;
pub mod json;
pub mod junit;
mod markup;

use crate::outcome::Outcome;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

/// Counts for a summary line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
    /// Of the passed, how many passed only after a retry.
    pub flaky: usize,
}

impl Summary {
    pub fn of(outcomes: &[Outcome]) -> Summary {
        let passed = outcomes.iter().filter(|o| o.passed()).count();
        Summary {
            total: outcomes.len(),
            passed,
            failed: outcomes.len() - passed,
            flaky: outcomes.iter().filter(|o| o.passed() && o.flaky).count(),
        }
    }
}

/// How a run's tries went, for a report's line, when it had more than one:
/// `flaky: 1 retry, first attempt: connect_refused` for a pass,
/// `failed all 3 attempts` for a failure.
pub fn tries_note(o: &Outcome) -> Option<String> {
    if o.retried.is_empty() {
        return None;
    }
    if o.success {
        let retries = o.retried.len();
        let first = o
            .retried
            .first()
            .and_then(|a| a.reason)
            .map_or("failed", |r| r.as_str());
        Some(format!(
            "flaky: {retries} retr{}, first attempt: {first}",
            if retries == 1 { "y" } else { "ies" }
        ))
    } else {
        Some(format!("failed all {} attempts", o.attempts))
    }
}

/// One failed try, on a line: `attempt 1: status: SENTENCE (HTTP 500,
/// 12.0ms)`.
pub fn retried_line(a: &crate::outcome::RetriedAttempt) -> String {
    let reason = a.reason.map_or("failed", |r| r.as_str());
    let ms = format!("{:.1}ms", a.duration.as_secs_f64() * 1000.0);
    let took = match a.status {
        Some(status) => format!("HTTP {status}, {ms}"),
        None => ms,
    };
    match &a.error {
        Some(e) => format!(
            "attempt {}: {reason}: {} ({took})",
            a.attempt,
            e.replace(['\n', '\r'], " ")
        ),
        None => format!("attempt {}: {reason} ({took})", a.attempt),
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory (`.NAME.tmp.PID`), flushed to disk, then renamed over
/// `path`, so a reader (a CI job collecting artifacts, or a crash) never
/// sees half a file. The temporary file is removed when anything fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path names no file"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename itself is durable once the directory is; best effort
    // (not every platform can open a directory).
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Where each failed run's artifact file was written (`--artifacts DIR`),
/// by run id, as a report names it: a path relative to the report for the
/// HTML page's links ([`relative_link`]), the path as written for JUnit.
pub type ArtifactLinks = BTreeMap<String, String>;

/// `to` as a relative link from the document written at `from`, with `/`
/// separators: `artifacts/probe/env/RUN.json` beside the report,
/// `../artifacts/…` from a sub-directory. Both paths are made absolute
/// against the working directory first (nothing need exist yet).
pub fn relative_link(from: &Path, to: &Path) -> String {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    let from_dir = absolute(from)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let to = absolute(to);
    let normal = |p: &Path| -> Vec<PathBuf> {
        p.components()
            .filter(|c| !matches!(c, Component::CurDir))
            .map(|c| PathBuf::from(c.as_os_str()))
            .collect()
    };
    let (from_parts, to_parts) = (normal(&from_dir), normal(&to));
    let common = from_parts
        .iter()
        .zip(&to_parts)
        .take_while(|(a, b)| a == b)
        .count();
    let ups = std::iter::repeat_n("..".to_owned(), from_parts.len() - common);
    let downs = to_parts[common..]
        .iter()
        .map(|p| p.to_string_lossy().into_owned());
    ups.chain(downs).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::relative_link;
    use std::path::Path;

    #[test]
    fn links_are_relative_to_the_report_directory() {
        let link = |from: &str, to: &str| relative_link(Path::new(from), Path::new(to));
        assert_eq!(
            link("/ci/out/report.html", "/ci/out/a/p/e/r.json"),
            "a/p/e/r.json"
        );
        assert_eq!(
            link("/ci/out/report.html", "/ci/art/p/e/r.json"),
            "../art/p/e/r.json"
        );
        assert_eq!(link("/ci/report.html", "/ci/./art/r.json"), "art/r.json");
    }
}
