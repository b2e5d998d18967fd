//! The `--output json` document. Its shape is versioned by
//! `schema_version`; fields are only ever added within a version. The
//! schema is described in README.md ("JSON output").

use super::Summary;
use crate::outcome::Outcome;
use serde::Serialize;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Serialize)]
struct Document<'a> {
    schema_version: u32,
    synthmon_version: &'static str,
    summary: Summary,
    results: &'a [Outcome],
}

pub fn render(outcomes: &[Outcome]) -> String {
    let doc = Document {
        schema_version: SCHEMA_VERSION,
        synthmon_version: env!("CARGO_PKG_VERSION"),
        summary: Summary::of(outcomes),
        results: outcomes,
    };
    // Serializing plain data with string keys cannot fail.
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}
