//! The `command` probe against real programs (`sh`, `env`, `cat`, `yes`):
//! exit codes and signals, a cleared environment with the tagging
//! variables, stdin, capped output, secrets redacted, and the process group
//! killed at the deadline, at a shutdown and after a normal exit.

use crate::common;

use common::{config_with_target, load, position_of, run_one, write_config};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};
use synthmon::outcome::{FailureReason, Outcome};
use synthmon::probe::command::CommandFacts;

/// Every test body runs under this bound.
const BOUND: Duration = Duration::from_secs(15);

async fn bounded<F: Future>(f: F) -> F::Output {
    common::within(BOUND, f).await
}

/// The environment's base URL: a command probe does not dial it, but it
/// reaches the program as `SYNTHETIC_BASE_URL`.
const BASE: &str = "http://127.0.0.1:9";

fn probe_text(top: &str, body: &str) -> String {
    format!("name = \"p\"\nenvironments = [\"target\"]\n{top}\n[command]\n{body}\n")
}

/// Runs one command probe (`top` lines, `[command]` `body`) once, with the
/// probe file in `dir`.
async fn run_in(dir: &Path, top: &str, body: &str) -> Outcome {
    let path = write_config(
        dir,
        &config_with_target(BASE),
        &[("p.toml", &probe_text(top, body))],
    );
    run_one(&load(&path)).await
}

async fn run(top: &str, body: &str) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    run_in(dir.path(), top, body).await
}

fn facts(o: &Outcome) -> &CommandFacts {
    match o.details.as_ref() {
        Some(d) if d.get::<CommandFacts>().is_some() => d.get::<CommandFacts>().unwrap(),
        other => panic!("no command details: {other:?}"),
    }
}

fn gauge(o: &Outcome, name: &str) -> Option<f64> {
    o.details
        .as_ref()
        .unwrap()
        .gauges()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// Whether `pid` is gone: no such process, or a zombie waiting for a
/// reaper (it runs nothing any more).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Waits up to a second for `pid` to be gone.
async fn wait_gone(pid: u32) -> bool {
    for _ in 0..50 {
        if gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_passing_command_reads_json_from_stdout() {
    bounded(async {
        let o = run(
            "",
            r#"program = "sh"
args = ["-c", 'printf "{\"ok\": true, \"probe\": \"%s\", \"arg\": \"%s\"}" "$SYNTHETIC_PROBE" "$1"', "sh", "{{ environment }}"]
expect = ["json.ok", "json.probe == 'p'", "json.arg == 'target'", "stderr == ''", "timings.run < duration('5s')"]"#,
        )
        .await;
        assert!(o.success, "{o:#?}");
        assert!(o.responded);
        let f = facts(&o);
        assert_eq!((f.exit_code, f.signal), (Some(0), None));
        assert_eq!(f.args[3], "target");
        assert!(f.stdout.starts_with("{\"ok\": true"), "{f:?}");
        let names: Vec<&str> = o.phases.iter().map(|p| p.name).collect();
        assert_eq!(names, ["run"]);
        assert_eq!(o.phases[0].seconds, o.duration);
        assert_eq!(gauge(&o, "probe_command_exit_code"), Some(0.0));
        assert_eq!(o.assertions.len(), 5);
    })
    .await;
}

#[tokio::test]
async fn the_environment_is_cleared_but_for_path_the_probe_env_and_tagging() {
    bounded(async {
        let o = run(
            "",
            "program = \"env\"\nenv = { GREETING = \"hello {{ probe }}\" }",
        )
        .await;
        assert!(o.success, "{o:#?}");
        let vars: BTreeMap<&str, &str> = facts(&o)
            .stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .collect();
        let names: Vec<&str> = vars.keys().copied().collect();
        assert_eq!(
            names,
            [
                "BAGGAGE",
                "GREETING",
                "PATH",
                "SYNTHETIC",
                "SYNTHETIC_BASE_URL",
                "SYNTHETIC_ENVIRONMENT",
                "SYNTHETIC_PROBE",
                "SYNTHETIC_RUN_ID",
                "TRACEPARENT",
            ],
            "{vars:?}"
        );
        assert_eq!(vars["GREETING"], "hello p");
        assert_eq!(vars["SYNTHETIC"], "true");
        assert_eq!(vars["SYNTHETIC_PROBE"], "p");
        assert_eq!(vars["SYNTHETIC_ENVIRONMENT"], "target");
        assert_eq!(vars["SYNTHETIC_BASE_URL"], format!("{BASE}/"));
        assert_eq!(vars["SYNTHETIC_RUN_ID"], o.run_id);
        assert_eq!(
            vars["TRACEPARENT"],
            format!("00-{}-{}-01", o.trace_id, o.span_id)
        );
        assert!(synthmon::tagging::is_valid_traceparent(vars["TRACEPARENT"]));
        assert_eq!(
            vars["BAGGAGE"],
            format!(
                "synthetic=true,synthetic.probe=p,synthetic.run_id={}",
                o.run_id
            )
        );
    })
    .await;
}

#[tokio::test]
async fn a_non_zero_exit_fails_with_exit_unless_an_expectation_reads_it() {
    bounded(async {
        let body = "program = \"sh\"\nargs = [\"-c\", \"echo oops >&2; exit 3\"]";
        let o = run("", body).await;
        assert_eq!(o.reason, Some(FailureReason::Exit), "{o:#?}");
        assert_eq!(o.error.as_deref(), Some("sh exited with 3"));
        assert!(o.responded);
        assert_eq!(facts(&o).stderr, "oops\n");
        assert_eq!(gauge(&o, "probe_command_exit_code"), Some(3.0));

        // Reading exit_code hands the verdict to the expectations.
        let o = run("", &format!("{body}\nexpect = [\"exit_code == 3\"]")).await;
        assert!(o.success, "{o:#?}");
        let o = run("", &format!("{body}\nexpect = [\"exit_code == 0\"]")).await;
        assert_eq!(o.reason, Some(FailureReason::Assertion), "{o:#?}");
    })
    .await;
}

#[tokio::test]
async fn a_program_killed_by_a_signal_fails_with_exit() {
    bounded(async {
        let o = run("", "program = \"sh\"\nargs = [\"-c\", \"kill -TERM $$\"]").await;
        assert_eq!(o.reason, Some(FailureReason::Exit), "{o:#?}");
        assert_eq!(o.error.as_deref(), Some("sh was killed by signal 15"));
        let f = facts(&o);
        assert_eq!((f.exit_code, f.signal), (None, Some(15)));
        assert_eq!(gauge(&o, "probe_command_exit_code"), Some(143.0));
    })
    .await;
}

#[tokio::test]
async fn a_program_that_cannot_start_fails_with_exec() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        // Beside the probe file, which relative paths resolve against; not
        // executable: the permission bits say so.
        std::fs::create_dir_all(dir.path().join("probes")).unwrap();
        std::fs::write(
            dir.path().join("probes").join("script.sh"),
            "#!/bin/sh\necho hi\n",
        )
        .unwrap();
        for (program, words) in [
            ("./no-such-program", "No such file or directory"),
            ("./script.sh", "Permission denied"),
        ] {
            let o = run_in(dir.path(), "", &format!("program = \"{program}\"")).await;
            assert_eq!(o.reason, Some(FailureReason::Exec), "{o:#?}");
            let error = o.error.as_deref().unwrap();
            assert!(error.starts_with("cannot start "), "{error}");
            assert!(error.contains(words), "{error}");
            assert!(!o.responded);
        }
    })
    .await;
}

#[tokio::test]
async fn stdin_is_rendered_and_fed_to_the_program() {
    bounded(async {
        let o = run(
            "",
            "program = \"cat\"\nstdin = \"hello from {{ probe }}\"\nexpect = [\"stdout == 'hello from p'\"]",
        )
        .await;
        assert!(o.success, "{o:#?}");
        // Without `stdin` the program reads /dev/null and sees its end.
        let o = run("", "program = \"cat\"\nexpect = [\"stdout == ''\"]").await;
        assert!(o.success, "{o:#?}");
    })
    .await;
}

#[tokio::test]
async fn output_past_the_cap_is_counted_and_dropped() {
    bounded(async {
        let o = run(
            "",
            "program = \"sh\"\nargs = [\"-c\", \"yes | head -c 5000000; yes e | head -c 3000 >&2\"]\nmax_output_size = \"1 KiB\"",
        )
        .await;
        assert!(o.success, "{o:#?}");
        let f = facts(&o);
        assert_eq!(f.stdout.len(), 1024);
        assert_eq!((f.stdout_bytes, f.stdout_truncated), (5_000_000, true));
        assert_eq!(f.stderr.len(), 1024);
        assert_eq!((f.stderr_bytes, f.stderr_truncated), (3000, true));
    })
    .await;
}

#[tokio::test]
async fn secrets_in_the_environment_are_redacted_from_the_output() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("token");
        std::fs::write(&secret, "s3cr3t-t0ken").unwrap();
        let o = run_in(
            dir.path(),
            "",
            &format!(
                "program = \"sh\"\nargs = [\"-c\", \"echo token=$TOKEN; echo $TOKEN >&2; exit 1\"]\nenv = {{ TOKEN = \"${{file:{}}}\" }}",
                secret.display()
            ),
        )
        .await;
        assert_eq!(o.reason, Some(FailureReason::Exit), "{o:#?}");
        let f = facts(&o);
        assert_eq!(f.stdout, "token=***\n");
        assert_eq!(f.stderr, "***\n");
        let json = serde_json::to_string(&o).unwrap();
        assert!(!json.contains("s3cr3t"), "{json}");
    })
    .await;
}

#[tokio::test]
async fn the_deadline_kills_the_whole_process_group() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let started = Instant::now();
        let o = run_in(
            dir.path(),
            "timeout = \"500ms\"",
            &format!(
                "program = \"sh\"\nargs = [\"-c\", \"sleep 30 & echo $! > {}; wait\"]",
                pid_file.display()
            ),
        )
        .await;
        let elapsed = started.elapsed();
        assert_eq!(o.reason, Some(FailureReason::Timeout), "{o:#?}");
        let error = o.error.as_deref().unwrap();
        assert!(error.starts_with("deadline exceeded after 0.5"), "{error}");
        assert!(
            error.ends_with("the program's process group was killed"),
            "{error}"
        );
        assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
        assert_eq!(facts(&o).signal, Some(9), "{o:#?}");
        let grandchild: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            wait_gone(grandchild).await,
            "sleep {grandchild} outlived the run"
        );
    })
    .await;
}

#[tokio::test]
async fn a_normal_exit_leaves_no_background_process_behind() {
    bounded(async {
        let o = run(
            "",
            "program = \"sh\"\nargs = [\"-c\", \"sleep 30 >/dev/null 2>&1 & echo $!\"]",
        )
        .await;
        assert!(o.success, "{o:#?}");
        let background: u32 = facts(&o).stdout.trim().parse().unwrap();
        assert!(
            wait_gone(background).await,
            "sleep {background} outlived the run"
        );
    })
    .await;
}

#[tokio::test]
async fn a_shutdown_kills_the_process_group_promptly() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let path = write_config(
            dir.path(),
            &config_with_target(BASE),
            &[(
                "p.toml",
                &probe_text(
                    "timeout = \"10s\"",
                    &format!(
                        "program = \"sh\"\nargs = [\"-c\", \"sleep 30 & echo $! > {}; wait\"]",
                        pid_file.display()
                    ),
                ),
            )],
        );
        let config = load(&path);
        let (o, took) =
            common::run_cancelled_after(&config, "target", BASE, Duration::from_millis(300)).await;
        assert_eq!(o.reason, Some(FailureReason::Cancelled), "{o:#?}");
        assert!(took < Duration::from_secs(2), "the cancel was not prompt");
        let grandchild: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            wait_gone(grandchild).await,
            "sleep {grandchild} outlived the run"
        );
    })
    .await;
}

#[test]
fn load_errors_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let bad = r#"name = "bad"
environments = ["target"]

[command]
args = ["{{ nope }}"]
env = { TRACEPARENT = "x", "A=B" = "y" }
max_output_size = "1 GiB"
expect = ["exit_cod == 0"]
"#;
    let unknown = r#"name = "unknown"
environments = ["target"]

[command]
program = "true"
shell = true
"#;
    let path = write_config(
        dir.path(),
        &config_with_target(BASE),
        &[("bad.toml", bad), ("unknown.toml", unknown)],
    );
    let diags = synthmon::plan::load(&synthmon::config::LoadOptions {
        config_path: Some(path),
        overrides: vec![],
    })
    .unwrap_err()
    .to_string();
    let expect_at = |file: &str, text: &str, needle: &str, message: &str| {
        let (line, column) = position_of(text, needle);
        let at = format!("{file}:{line}:{column}: error: {message}");
        assert!(diags.contains(&at), "missing `{at}` in\n{diags}");
    };
    expect_at(
        "bad.toml",
        bad,
        "\"{{",
        "command.args[0]: unknown name `nope`",
    );
    expect_at(
        "bad.toml",
        bad,
        "\"x\"",
        "command.env.TRACEPARENT: `TRACEPARENT` is set by synthmon on every command (tagging)",
    );
    expect_at(
        "bad.toml",
        bad,
        "\"1 GiB\"",
        "command.max_output_size: expected a size from 1 B to 16 MiB, found 1073741824 bytes",
    );
    expect_at(
        "unknown.toml",
        unknown,
        "shell",
        "command.shell: unknown key",
    );
    for needle in [
        "bad.toml:4:2: error: command: missing required key `program`",
        "command.env.A=B: an environment variable name cannot be empty",
        "command.expect[0]",
        "exit_cod",
    ] {
        assert!(diags.contains(needle), "no `{needle}` in\n{diags}");
    }
}
