//! Regressions in loading and checking values users write, each test named
//! after the bug it pins: durations too long for the clock (which panicked
//! on `Instant + Duration` overflow), bare numbers where a duration belongs,
//! and http urls that are not HTTP (`http//x`, `ftp://x`).

use crate::common;

use common::{config_with_target, load, position_of, run_one, synthmon, write_config};
use std::path::Path;
use std::time::Duration;
use synthmon::outcome::FailureReason;

/// `synthmon check` in `dir`: exits 2, and every `(file, source, needle,
/// message)` is an error line located at `needle` in `source`.
fn check_fails_with(dir: &Path, expected: &[(&str, &str, &str, &str)]) {
    let run = synthmon(dir, &["--config", "config.toml", "check"], &[]);
    run.assert_code(2);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    for (file, source, needle, message) in expected {
        let (line, column) = position_of(source, needle);
        let want = format!("{file}:{line}:{column}: error: {message}");
        assert!(
            run.stderr.lines().any(|l| l.starts_with(&want)),
            "no line starting with\n  {want}\nin\n{}",
            run.stderr
        );
    }
}

/// A config whose only environment is a closed port on loopback.
fn closed_port() -> String {
    config_with_target("http://127.0.0.1:9")
}

#[test]
fn a_huge_timeout_is_a_located_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    // The schedule is longer still, so the timeout is not caught as longer
    // than the interval: it used to pass `check` and panic in the run.
    let probe = "name = \"huge\"\nschedule = \"0 0 1 1 *\"\ntimeout = \"300000000000y\"\n\
                 environments = [\"target\"]\n\n[http]\nurl = \"/\"\n";
    write_config(dir.path(), &closed_port(), &[("huge.toml", probe)]);
    check_fails_with(
        dir.path(),
        &[(
            "probes/huge.toml",
            probe,
            "\"300000000000y\"",
            "timeout: expected a duration of at most 1day, found `300000000000y`",
        )],
    );
    // `--once` refuses the config the same way instead of panicking.
    let run = synthmon(dir.path(), &["--config", "config.toml", "--once"], &[]);
    run.assert_code(2);
    assert!(run.stderr.contains("at most 1day"), "{}", run.stderr);
}

#[test]
fn a_huge_interval_is_a_located_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let probe = "name = \"huge\"\nschedule = \"every 300000000000y\"\n\
                 timeout = \"299999999999y\"\nenvironments = [\"target\"]\n\n[http]\nurl = \"/\"\n";
    write_config(dir.path(), &closed_port(), &[("huge.toml", probe)]);
    check_fails_with(
        dir.path(),
        &[
            (
                "probes/huge.toml",
                probe,
                "\"every",
                "schedule: the interval must be at most 1year, found `every 300000000000y`",
            ),
            (
                "probes/huge.toml",
                probe,
                "\"299999999999y\"",
                "timeout: expected a duration of at most 1day",
            ),
        ],
    );
    // The bounds themselves are accepted.
    let probe = "name = \"yearly\"\nschedule = \"every 1y\"\ntimeout = \"1d\"\n\
                 environments = [\"target\"]\n\n[http]\nurl = \"/\"\n";
    write_config(dir.path(), &closed_port(), &[("huge.toml", probe)]);
    synthmon(dir.path(), &["--config", "config.toml", "check"], &[]).assert_code(0);
}

#[test]
fn every_user_duration_added_to_the_clock_is_bounded_at_load() {
    // Each of these is added to the monotonic clock at run time (a drain, a
    // flush, a delivery, a teardown, a poll); each too long a value is a
    // located error.
    let dir = tempfile::tempdir().unwrap();
    let config = "[daemon]\nprobes = [\"probes/*.toml\"]\ndrain_timeout = \"2h\"\n\n\
                  [environments.target]\nbase_url = \"http://127.0.0.1:9\"\n\n\
                  [telemetry]\notlp_timeout = \"1h\"\n\n\
                  [alerting]\ngroup_wait = \"300000000000y\"\ndefault_receivers = [\"hook\"]\n\n\
                  [alerting.receivers.hook]\nurl = \"http://127.0.0.1:9/hook\"\n\
                  timeout = \"310000000000y\"\n";
    let flow = "name = \"flow\"\nenvironments = [\"target\"]\n\n[flow]\n\
                teardown_timeout = \"320000000000y\"\n\n[[flow.steps]]\nurl = \"/\"\n\
                until = \"status == 200\"\nuntil_interval = \"330000000000y\"\n\
                until_timeout = \"340000000000y\"\n";
    write_config(dir.path(), config, &[("flow.toml", flow)]);
    let huge =
        |key: &str, d: &str| format!("{key}: expected a duration of at most 1year, found `{d}`");
    check_fails_with(
        dir.path(),
        &[
            (
                "config.toml",
                config,
                "\"2h\"",
                "daemon.drain_timeout: expected a duration of at most 1h, found `2h`",
            ),
            (
                "config.toml",
                config,
                "\"1h\"",
                "telemetry.otlp_timeout: expected a duration of at most 5m, found `1h`",
            ),
            (
                "config.toml",
                config,
                "\"300000000000y\"",
                &huge("alerting.group_wait", "300000000000y"),
            ),
            (
                "config.toml",
                config,
                "\"310000000000y\"",
                &huge("alerting.receivers.hook.timeout", "310000000000y"),
            ),
            (
                "probes/flow.toml",
                flow,
                "\"320000000000y\"",
                &huge("flow.teardown_timeout", "320000000000y"),
            ),
            (
                "probes/flow.toml",
                flow,
                "\"330000000000y\"",
                &huge("flow.steps[0].until_interval", "330000000000y"),
            ),
            (
                "probes/flow.toml",
                flow,
                "\"340000000000y\"",
                &huge("flow.steps[0].until_timeout", "340000000000y"),
            ),
        ],
    );
}

#[tokio::test]
async fn a_timeout_too_long_for_the_clock_set_in_code_fails_the_run_not_the_process() {
    // `check` refuses such a timeout; a `Probe` built or changed in code can
    // still carry one, and the run's deadline must saturate, not panic.
    let dir = tempfile::tempdir().unwrap();
    let probe =
        "name = \"p\"\ntimeout = \"2s\"\nenvironments = [\"target\"]\n\n[http]\nurl = \"/\"\n";
    let path = write_config(dir.path(), &closed_port(), &[("p.toml", probe)]);
    let mut config = std::sync::Arc::into_inner(load(&path)).unwrap();
    config.probes[0].timeout = Duration::MAX;
    let outcome = common::within(
        Duration::from_secs(10),
        run_one(&std::sync::Arc::new(config)),
    )
    .await;
    assert!(!outcome.success, "{outcome:#?}");
    assert_eq!(
        outcome.reason,
        Some(FailureReason::ConnectRefused),
        "{outcome:#?}"
    );
}

#[test]
fn a_bare_number_where_a_duration_belongs_asks_for_a_unit() {
    let dir = tempfile::tempdir().unwrap();
    let probe = "name = \"p\"\nschedule = \"every 30\"\ntimeout = \"5\"\nenvironments = [\"target\"]\n\n\
                 [flow]\nteardown_timeout = \"2.5\"\n\n[[flow.steps]]\nurl = \"/\"\n";
    write_config(dir.path(), &closed_port(), &[("p.toml", probe)]);
    check_fails_with(
        dir.path(),
        &[
            (
                "probes/p.toml",
                probe,
                "\"5\"",
                "timeout: expected a duration with a unit like `5s` or `500ms`, found the number 5",
            ),
            (
                "probes/p.toml",
                probe,
                "\"2.5\"",
                "flow.teardown_timeout: expected a duration with a unit like `5s` or `500ms`, found the number 2.5",
            ),
            (
                "probes/p.toml",
                probe,
                "\"every 30\"",
                "schedule: expected an interval with a unit like `every 30s` or `every 5m`, found the number 30",
            ),
        ],
    );
}

#[test]
fn http_urls_missing_their_colon_or_not_http_are_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let http =
        "name = \"h\"\nenvironments = [\"target\"]\n\n[http]\nurl = \"http//example.com/health\"\n";
    let ftp =
        "name = \"f\"\nenvironments = [\"target\"]\n\n[http]\nurl = \"ftp://example.com/x\"\n";
    let flow = "name = \"fl\"\nenvironments = [\"target\"]\n\n[flow]\n\n[[flow.steps]]\nurl = \"/ok\"\n\n\
                [[flow.steps]]\nurl = \"health\"\n\n[[flow.steps]]\nurl = \"https:/example.com\"\n";
    write_config(
        dir.path(),
        &closed_port(),
        &[("h.toml", http), ("f.toml", ftp), ("fl.toml", flow)],
    );
    let expected =
        "expected an http(s) URL like `https://api.example.com/health` or a path starting with `/`";
    check_fails_with(
        dir.path(),
        &[
            (
                "probes/h.toml",
                http,
                "\"http//",
                &format!(
                    "http.url: {expected}, found `http//example.com/health` (did you mean `http://example.com/health`?)"
                ),
            ),
            (
                "probes/f.toml",
                ftp,
                "\"ftp:",
                &format!(
                    "http.url: {expected}, found `ftp://example.com/x` (the `ftp` scheme is not HTTP)"
                ),
            ),
            (
                "probes/fl.toml",
                flow,
                "\"health\"",
                &format!("flow.steps[1].url: {expected}, found `health` (did you mean `/health`?)"),
            ),
            (
                "probes/fl.toml",
                flow,
                "\"https:/",
                &format!(
                    "flow.steps[2].url: {expected}, found `https:/example.com` (did you mean `https://example.com`?)"
                ),
            ),
        ],
    );
    let run = synthmon(dir.path(), &["--config", "config.toml", "check"], &[]);
    assert!(run.stderr.ends_with("4 errors\n"), "{}", run.stderr);
}

#[tokio::test]
async fn a_url_template_rendering_a_non_http_url_fails_the_run_with_reason_request() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[environments.target.variables]\nendpoint = \"ftp://example.com/x\"\n",
        closed_port()
    );
    let probe =
        "name = \"t\"\nenvironments = [\"target\"]\n\n[http]\nurl = \"{{ vars.endpoint }}\"\n";
    let path = write_config(dir.path(), &config, &[("t.toml", probe)]);
    let outcome = common::within(Duration::from_secs(10), run_one(&load(&path))).await;
    assert!(!outcome.success, "{outcome:#?}");
    assert_eq!(outcome.reason, Some(FailureReason::Request), "{outcome:#?}");
    let error = outcome.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("found `ftp://example.com/x` (the `ftp` scheme is not HTTP)"),
        "{error}"
    );
}
