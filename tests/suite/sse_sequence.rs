//! The `stream` probe's event-id sequence check (`sequence = "numeric"`,
//! issue 15) against the sandbox's `/sse/numbered`, which numbers its
//! events with deliberate gaps (`skip`) and duplicates (`repeat`) and
//! resumes after the `Last-Event-ID` it is sent: a gap, a duplicate, a
//! reconnect, and the numbering across two runs (run 1's `kept` fed to
//! run 2 as `prev`, as the daemon does).

use crate::common;
use crate::keep_prev::{Kept, run_with_prev};

use common::{load, position_of, within, write_config};
use serde_json::json;
use std::time::Duration;
use synthmon::outcome::{AssertionResult, FailureReason, Outcome};
use synthmon::probe::stream::{Sequence, StreamFacts};

const BOUND: Duration = Duration::from_secs(20);
const IMPLICIT: &str = "event ids count up by one (implicit: sequence)";

/// A config with `target` at `base_url` and `down` (nothing listens).
fn config(base_url: &str) -> String {
    format!(
        "[daemon]\nprobes = [\"probes/*.toml\"]\n\n[environments.target]\nbase_url = \"{base_url}\"\n\n[environments.down]\nbase_url = \"http://127.0.0.1:9\"\n"
    )
}

/// A stream probe on `url` with `rest` lines in `[stream]`.
fn probe(
    dir: &tempfile::TempDir,
    base_url: &str,
    url: &str,
    rest: &str,
) -> std::sync::Arc<synthmon::plan::Config> {
    let text = format!(
        "name = \"s\"\nenvironments = [\"target\", \"down\"]\n\n[stream]\nurl = \"{url}\"\nsequence = \"numeric\"\n{rest}\n"
    );
    let path = write_config(dir.path(), &config(base_url), &[("s.toml", &text)]);
    load(&path)
}

fn sequence(o: &Outcome) -> &Sequence {
    o.details
        .as_ref()
        .and_then(|d| d.get::<StreamFacts>())
        .and_then(|f| f.sequence.as_ref())
        .unwrap_or_else(|| panic!("no sequence facts in {o:#?}"))
}

fn implicit(o: &Outcome) -> &AssertionResult {
    o.assertions
        .iter()
        .find(|a| a.expression == IMPLICIT)
        .unwrap_or_else(|| panic!("no implicit sequence check in {o:#?}"))
}

fn last_id(n: u64) -> Kept {
    Kept::from([("stream.last_id".to_owned(), json!(n))])
}

#[tokio::test]
async fn a_gap_fails_the_run_with_the_missing_ids() {
    within(BOUND, async {
        let sb = common::sandbox().await;
        let dir = tempfile::tempdir().unwrap();
        let config = probe(
            &dir,
            &sb.base_url(),
            "/sse/numbered?count=10&skip=4,7,8",
            "min_events = 6",
        );
        let o = run_with_prev(&config, "target", None).await;
        // Ids 1 2 3 5 6 9: 4, 7 and 8 missing, in two gaps.
        assert_eq!(o.reason, Some(FailureReason::Assertion), "{o:#?}");
        let check = implicit(&o);
        assert!(!check.passed);
        assert_eq!(check.actual, "missing 4, 7-8 (3 ids in 2 gaps)");
        assert_eq!(
            o.error.as_deref(),
            Some("1 of 2 expectations failed: event ids missing 4, 7-8 (3 ids in 2 gaps)")
        );
        let s = sequence(&o);
        assert_eq!((s.gaps, s.missing, s.duplicates), (2, 3, 0));
        assert_eq!(s.missing_ids, vec![4, 7, 8]);
        assert_eq!(s.missing_ranges, vec![[4, 4], [7, 8]]);
        assert_eq!((s.first_id, s.last_id), (Some(1), Some(9)));
        // The highest id is kept for the next run, failed or not.
        assert_eq!(o.kept, last_id(9));
        let gauges = o.details.as_ref().unwrap().gauges();
        assert!(
            gauges.contains(&("probe_stream_missing_ids", 3.0)),
            "{gauges:?}"
        );
        assert!(
            gauges.contains(&("probe_stream_repeated_ids", 0.0)),
            "{gauges:?}"
        );

        // The same stream without the gaps passes.
        let config = probe(
            &dir,
            &sb.base_url(),
            "/sse/numbered?count=10",
            "min_events = 6",
        );
        let o = run_with_prev(&config, "target", None).await;
        assert!(o.success, "{o:#?}");
        assert!(implicit(&o).passed);
        assert_eq!(implicit(&o).actual, "");
        assert_eq!(o.kept, last_id(6));
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_duplicate_fails_the_run_with_the_repeated_ids() {
    within(BOUND, async {
        let sb = common::sandbox().await;
        let dir = tempfile::tempdir().unwrap();
        let config = probe(
            &dir,
            &sb.base_url(),
            "/sse/numbered?count=10&repeat=2,5",
            "min_events = 7",
        );
        // Ids 1 2 2 3 4 5 5.
        let o = run_with_prev(&config, "target", None).await;
        assert_eq!(o.reason, Some(FailureReason::Assertion), "{o:#?}");
        assert_eq!(implicit(&o).actual, "repeated 2, 5 (2 duplicates)");
        let s = sequence(&o);
        assert_eq!((s.gaps, s.duplicates), (0, 2));
        assert_eq!(s.repeated_ids, vec![2, 5]);
        assert_eq!(o.kept, last_id(5));
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn expectations_on_sequence_replace_the_implicit_check() {
    within(BOUND, async {
        let sb = common::sandbox().await;
        let dir = tempfile::tempdir().unwrap();
        let config = probe(
            &dir,
            &sb.base_url(),
            "/sse/numbered?count=10&skip=4&repeat=6",
            "min_events = 6\nexpect = [\"sequence.missing <= 1\", \"sequence.duplicates == 1\", \"sequence.missing_ids == [4]\", \"sequence.repeated_ids == [6]\", \"sequence.last_id == 6\", \"sequence.previous_run_id == null\"]",
        );
        let o = run_with_prev(&config, "target", None).await;
        assert!(o.success, "{o:#?}");
        assert!(o.assertions.iter().all(|a| a.expression != IMPLICIT), "{o:#?}");
        let config = probe(
            &dir,
            &sb.base_url(),
            "/sse/numbered?count=10&skip=4,5",
            "min_events = 6\nexpect = [\"sequence.missing <= 1\"]",
        );
        let o = run_with_prev(&config, "target", None).await;
        assert_eq!(o.reason, Some(FailureReason::Assertion), "{o:#?}");
        let check = o
            .assertions
            .iter()
            .find(|a| a.expression == "sequence.missing <= 1")
            .unwrap();
        assert!(!check.passed);
        assert_eq!(check.actual, "sequence.missing = 2");
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_numbering_is_followed_across_a_reconnect() {
    within(BOUND, async {
        let sb = common::sandbox().await;
        let dir = tempfile::tempdir().unwrap();
        // Reconnects after 3 events with Last-Event-ID 3; the server
        // resumes at 4.
        let config = probe(
            &dir,
            &sb.base_url(),
            "/sse/numbered?count=10",
            "min_events = 6\nreconnect = true",
        );
        let o = run_with_prev(&config, "target", None).await;
        assert!(o.success, "{o:#?}");
        assert_eq!(sequence(&o).last_id, Some(6));

        // A gap right where it resumed: 4 never comes.
        let config = probe(
            &dir,
            &sb.base_url(),
            "/sse/numbered?count=10&skip=4",
            "min_events = 6\nreconnect = true",
        );
        let o = run_with_prev(&config, "target", None).await;
        assert_eq!(o.reason, Some(FailureReason::Assertion), "{o:#?}");
        assert_eq!(implicit(&o).actual, "missing 4 (1 id in 1 gap)");
        let facts = o.details.as_ref().unwrap().get::<StreamFacts>().unwrap();
        assert_eq!(facts.resumed_from.as_deref(), Some("3"));

        // A server that starts over after the reconnect repeats 1-3.
        let config = probe(
            &dir,
            &sb.base_url(),
            "/sse/numbered?count=10&resume=false",
            "min_events = 6\nreconnect = true",
        );
        let o = run_with_prev(&config, "target", None).await;
        assert_eq!(o.reason, Some(FailureReason::Assertion), "{o:#?}");
        assert_eq!(implicit(&o).actual, "repeated 1, 2, 3 (3 duplicates)");
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_numbering_is_followed_across_runs() {
    within(BOUND, async {
        let sb = common::sandbox().await;
        let dir = tempfile::tempdir().unwrap();
        // Each connection sends 3 events after the Last-Event-ID it gets;
        // 4 is never sent.
        let config = probe(
            &dir,
            &sb.base_url(),
            "/sse/numbered?count=3&skip=4",
            "min_events = 3",
        );
        let first = run_with_prev(&config, "target", None).await;
        assert!(first.success, "{first:#?}");
        assert_eq!(first.kept, last_id(3));

        // Run 2 resumes after 3 and gets 5: the gap between the runs.
        let second = run_with_prev(&config, "target", Some(&first.kept)).await;
        assert_eq!(second.reason, Some(FailureReason::Assertion), "{second:#?}");
        assert_eq!(
            implicit(&second).actual,
            "missing 4 (1 id in 1 gap) (the previous run ended at id 3, this run resumed at id 5)"
        );
        let s = sequence(&second);
        assert_eq!(s.previous_run_id, Some(3));
        assert_eq!((s.first_id, s.last_id), (Some(5), Some(7)));
        assert_eq!(second.kept, last_id(7));

        // Run 3 goes on from 7 without a break.
        let third = run_with_prev(&config, "target", Some(&second.kept)).await;
        assert!(third.success, "{third:#?}");
        assert_eq!(sequence(&third).first_id, Some(8));
        assert_eq!(third.kept, last_id(10));

        // A run that reaches nothing hands the last id on.
        let down = run_with_prev(&config, "down", Some(&third.kept)).await;
        assert_eq!(
            down.reason,
            Some(FailureReason::ConnectRefused),
            "{down:#?}"
        );
        assert_eq!(down.kept, last_id(10));
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_server_that_starts_over_between_runs_repeats_ids() {
    within(BOUND, async {
        let sb = common::sandbox().await;
        let dir = tempfile::tempdir().unwrap();
        let config = probe(
            &dir,
            &sb.base_url(),
            "/sse/numbered?count=3&resume=false",
            "min_events = 3",
        );
        let o = run_with_prev(&config, "target", Some(&last_id(3))).await;
        assert_eq!(o.reason, Some(FailureReason::Assertion), "{o:#?}");
        assert_eq!(
            implicit(&o).actual,
            "repeated 1, 2, 3 (3 duplicates) (the previous run ended at id 3, this run resumed at id 1)"
        );
        // The last id stays the highest seen: the next run resumes there.
        assert_eq!(o.kept, last_id(3));

        // `sequence_across_runs = false`: each run starts afresh and
        // keeps nothing.
        let config = probe(
            &dir,
            &sb.base_url(),
            "/sse/numbered?count=3&resume=false",
            "min_events = 3\nsequence_across_runs = false",
        );
        let o = run_with_prev(&config, "target", Some(&last_id(3))).await;
        assert!(o.success, "{o:#?}");
        assert_eq!(sequence(&o).previous_run_id, None);
        assert!(o.kept.is_empty(), "{:?}", o.kept);
        sb.shutdown().await;
    })
    .await;
}

#[test]
fn sequence_errors_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let bad = r#"name = "a"
environments = ["target"]

[stream]
url = "/x"
sequence = "alphabetic"
"#;
    let chunked = r#"name = "b"
environments = ["target"]

[stream]
url = "/x"
mode = "chunked"
sequence = "numeric"
"#;
    let unset = r#"name = "c"
environments = ["target"]

[stream]
url = "/x"
sequence_across_runs = false
expect = ["events > 1", "sequence.gaps == 0"]
"#;
    let typed = r#"name = "d"
environments = ["target"]

[stream]
url = "/x"
sequence = "numeric"
expect = ["sequence.gaps == '0'"]
"#;
    let path = write_config(
        dir.path(),
        &config("http://127.0.0.1:9"),
        &[
            ("a.toml", bad),
            ("b.toml", chunked),
            ("c.toml", unset),
            ("d.toml", typed),
        ],
    );
    let opts = synthmon::config::LoadOptions {
        config_path: Some(path),
        overrides: vec![],
    };
    let diags = synthmon::plan::load(&opts).unwrap_err().to_string();
    let expect_at = |file: &str, text: &str, needle: &str, message: &str| {
        let (line, column) = position_of(text, needle);
        let at = format!("{file}:{line}:{column}: error: {message}");
        assert!(diags.contains(&at), "missing `{at}` in\n{diags}");
    };
    expect_at(
        "a.toml",
        bad,
        "\"alphabetic\"",
        "stream.sequence: expected `numeric` (event ids that count up by one), found `alphabetic`",
    );
    expect_at(
        "b.toml",
        chunked,
        "\"numeric\"",
        "stream.sequence: `sequence` checks the ids of SSE events",
    );
    expect_at(
        "c.toml",
        unset,
        "false",
        "stream.sequence_across_runs: `sequence_across_runs` needs `sequence = \"numeric\"`",
    );
    expect_at(
        "c.toml",
        unset,
        "\"sequence.gaps",
        "stream.expect[1]: `sequence` is only measured with `sequence = \"numeric\"` in [stream]",
    );
    assert!(
        !diags
            .lines()
            .any(|l| l.contains("c.toml") && l.contains("stream.expect[0]")),
        "{diags}"
    );
    expect_at(
        "d.toml",
        typed,
        "'0'",
        "stream.expect[0]: `sequence.gaps` is a number, compared with the string '0' (write 0)",
    );
}
