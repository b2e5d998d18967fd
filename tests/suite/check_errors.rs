//! `synthmon check`: every error of every file reported at once, located
//! (file:line:column and key path), with "did you mean" help; whole stderr
//! compared to golden files. Also configuration layering through
//! `SYNTHMON_<TABLE>__<KEY>` variables and `--set`.

use crate::common;

use common::{golden, position_of, synthmon, write_config};
use std::path::Path;

const PROD_CONFIG: &str = r#"[daemon]
listen = "127.0.0.1:9464"
probes = ["probes/*.toml"]

[environments.prod]
base_url = "http://127.0.0.1:9"

[environments.staging]
base_url = "http://127.0.0.1:9"
"#;

const GOOD_PROBE: &str = r#"name = "good"
environments = ["prod"]

[http]
url = "/health"
expect = ["status == 200"]
"#;

/// A probe file with three independent mistakes: a key typo, an expression
/// that does not parse, and an environment that does not exist.
const THREE_ERRORS: &str = r#"name = "bad-probe"
environments = ["prdo"]
timout = "5s"

[http]
url = "/health"
expect = [
  "status ==",
]
"#;

fn check(dir: &Path, envs: &[(&str, &str)]) -> common::Run {
    synthmon(dir, &["--config", "config.toml", "check"], envs)
}

#[test]
fn a_valid_config_checks_ok() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), PROD_CONFIG, &[("good.toml", GOOD_PROBE)]);
    let run = check(dir.path(), &[]);
    run.assert_code(0);
    assert_eq!(
        run.stdout,
        "ok: 1 probes, 2 environments, 1 (probe, environment) pairs\n"
    );
    assert_eq!(run.stderr, "");
}

#[test]
fn the_repository_config_checks_ok() {
    let run = synthmon(&common::repo(), &["--config", "config.toml", "check"], &[]);
    run.assert_code(0);
    assert!(run.stdout.starts_with("ok: "), "{}", run.stdout);
}

#[test]
fn check_reports_a_typo_a_bad_expression_and_an_unknown_environment_at_once() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        PROD_CONFIG,
        &[("bad.toml", THREE_ERRORS), ("good.toml", GOOD_PROBE)],
    );
    let run = check(dir.path(), &[]);
    run.assert_code(2);
    assert_eq!(run.stdout, "");
    let err = &run.stderr;

    // The typo: located at the key, with the key path and a suggestion.
    let (l, c) = position_of(THREE_ERRORS, "timout");
    assert!(
        err.contains(&format!(
            "probes/bad.toml:{l}:{c}: error: timout: unknown key `timout`"
        )),
        "the key typo is not reported at {l}:{c}:\n{err}"
    );
    assert!(err.contains("= help: did you mean `timeout`?"), "{err}");

    // The expression: located inside the string, where the syntax error is
    // (the end of the input, just after `status ==`), with the key path.
    let (l, c) = position_of(THREE_ERRORS, "\"status ==\"");
    let c = c + 1 + "status ==".len();
    assert!(
        err.contains(&format!(
            "probes/bad.toml:{l}:{c}: error: http.expect[0]: invalid expression `status ==`"
        )),
        "the bad expression is not reported at {l}:{c}:\n{err}"
    );

    // The environment: located at the element, with a suggestion.
    let (l, c) = position_of(THREE_ERRORS, "\"prdo\"");
    assert!(
        err.contains(&format!(
            "probes/bad.toml:{l}:{c}: error: environments[0]: unknown environment `prdo`"
        )),
        "the unknown environment is not reported at {l}:{c}:\n{err}"
    );
    assert!(err.contains("= help: did you mean `prod`?"), "{err}");

    assert!(err.trim_end().ends_with("3 errors"), "{err}");
    golden("check_three_errors.txt", err);
}

#[test]
fn check_reports_an_unknown_daemon_key_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[daemon]\nlisten = \"127.0.0.1:9464\"\ndrain_timout = \"10s\"\n\n[environments.prod]\nbase_url = \"http://127.0.0.1:9\"\n";
    write_config(dir.path(), config, &[("good.toml", GOOD_PROBE)]);
    let run = check(dir.path(), &[]);
    run.assert_code(2);
    let (l, c) = position_of(config, "drain_timout");
    assert!(
        run.stderr.contains(&format!(
            "config.toml:{l}:{c}: error: daemon.drain_timout: unknown key `drain_timout`"
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("= help: did you mean `drain_timeout`?"),
        "{}",
        run.stderr
    );
    golden("check_config_unknown_key.txt", &run.stderr);
}

#[test]
fn check_reports_every_bad_value_of_the_config_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"[daemon]
listen = "localhost"

[environments.prod]
base_url = "http://127.0.0.1:9"
headers = { Authorization = "Bearer ${file:nope.txt}" }

[environments.staging]
labels = { tier = "staging" }
"#;
    write_config(dir.path(), config, &[("good.toml", GOOD_PROBE)]);
    let run = check(dir.path(), &[]);
    run.assert_code(2);
    let err = &run.stderr;
    let (l, c) = position_of(config, "\"localhost\"");
    assert!(
        err.contains(&format!("config.toml:{l}:{c}: error: daemon.listen: ")),
        "{err}"
    );
    assert!(err.contains("`localhost`"), "{err}");
    assert!(
        err.contains("error: environments.staging: missing required key `base_url`"),
        "{err}"
    );
    let (l, c) = position_of(config, "\"Bearer ${file:nope.txt}\"");
    assert!(
        err.contains(&format!(
            "config.toml:{l}:{c}: error: environments.prod.headers.Authorization: cannot read secret file `nope.txt`"
        )),
        "{err}"
    );
    assert!(err.trim_end().ends_with("3 errors"), "{err}");
    golden("check_config_values.txt", err);
}

#[test]
fn environment_variables_override_the_file_and_set_overrides_them() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), PROD_CONFIG, &[("good.toml", GOOD_PROBE)]);

    let run = check(dir.path(), &[("SYNTHMON_DAEMON__LISTEN", "not-an-address")]);
    run.assert_code(2);
    assert!(run.stderr.contains("daemon.listen"), "{}", run.stderr);
    assert!(run.stderr.contains("not-an-address"), "{}", run.stderr);
    assert_eq!(run.stdout, "");

    let run = check(dir.path(), &[("SYNTHMON_DAEMON__LISTEN", "127.0.0.1:9999")]);
    run.assert_code(0);
    assert!(run.stdout.starts_with("ok: "), "{}", run.stdout);

    // `--set` comes last: it wins over the environment variable.
    let run = synthmon(
        dir.path(),
        &[
            "--config",
            "config.toml",
            "--set",
            "daemon.listen=127.0.0.1:9998",
            "check",
        ],
        &[("SYNTHMON_DAEMON__LISTEN", "not-an-address")],
    );
    run.assert_code(0);
    let run = synthmon(
        dir.path(),
        &[
            "--config",
            "config.toml",
            "--set",
            "daemon.listen=nope",
            "check",
        ],
        &[],
    );
    run.assert_code(2);
    assert!(run.stderr.contains("nope"), "{}", run.stderr);

    // Variables without `__` (like SYNTHMON_LOG) are not config keys.
    let run = check(dir.path(), &[("SYNTHMON_LOG", "warn")]);
    run.assert_code(0);
}

#[test]
fn a_missing_config_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = check(dir.path(), &[]);
    run.assert_code(2);
    assert!(run.stderr.contains("config.toml"), "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot read config file"),
        "{}",
        run.stderr
    );
}

/// `[alerting]` and a probe's `[alert]` are checked like everything else:
/// every mistake at once, located, with suggestions.
#[test]
fn check_reports_alerting_mistakes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"[environments.prod]
base_url = "https://api.example.com"

[alerting]
group_wait = "5s"
default_receivers = ["oncal"]

[alerting.receivers.oncall]
type = "webhook"
url = "http://127.0.0.1:9/hook"

[alerting.receivers.pd]
type = "pagerduty"

[alerting.receivers.chat]
type = "slak"
url = "http://127.0.0.1:9/slack"

[[alerting.routes]]
severity = "critical"
receivers = ["oncall", "pager"]
continue = true
"#;
    let probe = r#"name = "api"
environments = ["prod"]

[alert]
fire = "6 of 5"
depends_on = ["api-helth"]

[http]
url = "/"
"#;
    let health = "name = \"api-health\"\nenvironments = [\"prod\"]\n[http]\nurl = \"/health\"\n";
    write_config(
        dir.path(),
        config,
        &[("api.toml", probe), ("health.toml", health)],
    );
    // Errors only: the "not yet active" warning carries a timestamp.
    let run = check(dir.path(), &[("SYNTHMON_LOG", "error")]);
    run.assert_code(2);
    golden("check_alerting.txt", &run.stderr);
}

#[test]
fn a_broken_body_template_is_a_located_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[environments.prod]\nbase_url = \"https://api.example.com\"\n[alerting]\ndefault_receivers = [\"hook\"]\n[alerting.receivers.hook]\nurl = \"http://127.0.0.1:9/hook\"\ntemplate = \"{{ alerts[0].summary \"\n";
    write_config(dir.path(), config, &[]);
    let run = check(dir.path(), &[("SYNTHMON_LOG", "error")]);
    run.assert_code(2);
    assert!(
        run.stderr.contains(
            "config.toml:7:12: error: alerting.receivers.hook.template: invalid body template"
        ),
        "{}",
        run.stderr
    );
}
