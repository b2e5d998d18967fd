//! The `--output json` document. Its shape is versioned by
//! `schema_version`; fields are only ever added within a version. The
//! schema is described in README.md ("JSON output").

use super::Summary;
use super::baseline::GateReport;
use crate::diag::Diagnostics;
use crate::outcome::Outcome;
use serde::Serialize;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Serialize)]
struct Document<'a> {
    schema_version: u32,
    synthmon_version: &'static str,
    summary: Summary,
    results: &'a [Outcome],
    /// `--baseline FILE`: each selected pair compared with the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline: Option<&'a GateReport>,
}

pub fn render(outcomes: &[Outcome]) -> String {
    render_with_baseline(outcomes, None)
}

/// [`render`] with the quality gate's comparisons under `baseline`.
pub fn render_with_baseline(outcomes: &[Outcome], baseline: Option<&GateReport>) -> String {
    let doc = Document {
        schema_version: SCHEMA_VERSION,
        synthmon_version: env!("CARGO_PKG_VERSION"),
        summary: Summary::of(outcomes),
        results: outcomes,
        baseline,
    };
    // Serializing plain data with string keys cannot fail.
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// The document when nothing ran because the config (or the selection) is
/// wrong: the same envelope with `errors` instead of `results`, so a CI
/// job parsing stdout always gets JSON.
#[derive(Serialize)]
struct ErrorDocument<'a> {
    schema_version: u32,
    synthmon_version: &'static str,
    errors: Vec<ErrorEntry<'a>>,
}

/// One error: where (line and column 0 when unknown), which key, what.
#[derive(Serialize)]
struct ErrorEntry<'a> {
    file: &'a str,
    line: usize,
    column: usize,
    key: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    help: Option<&'a str>,
}

/// The error document for config diagnostics.
pub fn render_diagnostics(diags: &Diagnostics) -> String {
    let errors = diags
        .iter()
        .map(|d| ErrorEntry {
            file: &d.file,
            line: d.line,
            column: d.column,
            key: &d.key,
            message: &d.message,
            help: d.help.as_deref(),
        })
        .collect();
    render_error_document(errors)
}

/// The error document for one error that has no place in a file (a
/// selection that matches nothing).
pub fn render_error(message: &str) -> String {
    render_error_document(vec![ErrorEntry {
        file: "",
        line: 0,
        column: 0,
        key: "",
        message,
        help: None,
    }])
}

fn render_error_document(errors: Vec<ErrorEntry<'_>>) -> String {
    let doc = ErrorDocument {
        schema_version: SCHEMA_VERSION,
        synthmon_version: env!("CARGO_PKG_VERSION"),
        errors,
    };
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}
