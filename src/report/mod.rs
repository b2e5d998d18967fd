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
use std::io::Write as _;
use std::path::Path;

/// Counts for a summary line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
}

impl Summary {
    pub fn of(outcomes: &[Outcome]) -> Summary {
        let passed = outcomes.iter().filter(|o| o.passed()).count();
        Summary {
            total: outcomes.len(),
            passed,
            failed: outcomes.len() - passed,
        }
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
