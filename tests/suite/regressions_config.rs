//! Regressions in the words `synthmon check` finds for values users
//! write, each test named after the bug it pins: a duration written as a
//! TOML number (`timeout = 5`) was only "expected a string, found integer
//! `5`", with no hint that a unit was missing; a refused cron expression
//! said "Component error: Number out of bounds." (or "must have 6 or 7
//! fields") without naming the field at fault.

use crate::common;

use common::{config_with_target, position_of, synthmon, write_config};
use std::path::Path;

/// `synthmon check` in `dir` with `envs`: exits 2, every `(file, source,
/// needle, message)` is exactly one error line located at `needle` in
/// `source`, and there are no other errors.
fn check_fails_with_exactly(
    dir: &Path,
    envs: &[(&str, &str)],
    expected: &[(&str, &str, &str, &str)],
) {
    let run = synthmon(dir, &["--config", "config.toml", "check"], envs);
    run.assert_code(2);
    for (file, source, needle, message) in expected {
        let (line, column) = position_of(source, needle);
        let want = format!("{file}:{line}:{column}: error: {message}");
        assert!(
            run.stderr.lines().any(|l| l == want),
            "no line\n  {want}\nin\n{}",
            run.stderr
        );
    }
    let count = match expected.len() {
        1 => "1 error".to_owned(),
        n => format!("{n} errors"),
    };
    assert_eq!(
        run.stderr.lines().last(),
        Some(count.as_str()),
        "{}",
        run.stderr
    );
}

/// What every duration written as a number is told.
fn unit_needed(key: &str, number: &str) -> String {
    format!(
        "{key}: expected a duration with a unit like `5s` or `500ms`, found the number {number}"
    )
}

#[test]
fn timeout_5_as_a_toml_number_gives_a_hint_that_a_unit_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    // Every duration key of config.toml, as a bare TOML number.
    let config = "[daemon]\nprobes = [\"probes/*.toml\"]\ndrain_timeout = 30\n\n\
                  [environments.target]\nbase_url = \"http://127.0.0.1:9\"\n\n\
                  [telemetry]\notlp_timeout = 11\n\n\
                  [alerting]\ngroup_wait = 12\ndefault_receivers = [\"hook\"]\n\n\
                  [alerting.receivers.hook]\nurl = \"http://127.0.0.1:9/hook\"\ntimeout = 13\n\n\
                  [alerting.receivers.mail]\ntype = \"email\"\nsmtp_host = \"127.0.0.1\"\n\
                  tls = \"none\"\nfrom = \"synthmon@example.com\"\nto = [\"ops@example.com\"]\n\
                  timeout = 14.5\n";
    // And of the probe files: the common keys, and the kinds' tables.
    let http = "name = \"h\"\nenvironments = [\"target\"]\ntimeout = 5\n\n\
                [alert]\nrepeat_interval = 3600\n\n\
                [[thresholds]]\nfailing = \"p(99) < 500ms\"\nwindow = 300\n\n\
                [http]\nurl = \"/\"\n";
    let flow = "name = \"f\"\nenvironments = [\"target\"]\n\n[flow]\nteardown_timeout = 2\n\n\
                [[flow.steps]]\nurl = \"/\"\n";
    let stream = "name = \"s\"\nenvironments = [\"target\"]\n\n[stream]\nurl = \"/events\"\n\
                  duration = 20\nmax_gap = 21\nfirst_event_timeout = 2.5\n";
    let ws = "name = \"w\"\nenvironments = [\"target\"]\n\n[websocket]\nurl = \"/ws\"\n\
              duration = 22\nfirst_message_timeout = 23\nmax_gap = 24\n";
    write_config(
        dir.path(),
        config,
        &[
            ("h.toml", http),
            ("f.toml", flow),
            ("s.toml", stream),
            ("w.toml", ws),
        ],
    );
    let c = "config.toml";
    check_fails_with_exactly(
        dir.path(),
        &[],
        &[
            (
                c,
                config,
                "30\n",
                &unit_needed("daemon.drain_timeout", "30"),
            ),
            (
                c,
                config,
                "11\n",
                &unit_needed("telemetry.otlp_timeout", "11"),
            ),
            (c, config, "12\n", &unit_needed("alerting.group_wait", "12")),
            (
                c,
                config,
                "13\n",
                &unit_needed("alerting.receivers.hook.timeout", "13"),
            ),
            (
                c,
                config,
                "14.5\n",
                &unit_needed("alerting.receivers.mail.timeout", "14.5"),
            ),
            ("probes/h.toml", http, "5\n", &unit_needed("timeout", "5")),
            (
                "probes/h.toml",
                http,
                "3600",
                &unit_needed("alert.repeat_interval", "3600"),
            ),
            (
                "probes/h.toml",
                http,
                "300",
                &unit_needed("thresholds[0].window", "300"),
            ),
            (
                "probes/f.toml",
                flow,
                "2\n",
                &unit_needed("flow.teardown_timeout", "2"),
            ),
            (
                "probes/s.toml",
                stream,
                "20",
                &unit_needed("stream.duration", "20"),
            ),
            (
                "probes/s.toml",
                stream,
                "21",
                &unit_needed("stream.max_gap", "21"),
            ),
            (
                "probes/s.toml",
                stream,
                "2.5",
                &unit_needed("stream.first_event_timeout", "2.5"),
            ),
            (
                "probes/w.toml",
                ws,
                "22",
                &unit_needed("websocket.duration", "22"),
            ),
            (
                "probes/w.toml",
                ws,
                "23",
                &unit_needed("websocket.first_message_timeout", "23"),
            ),
            (
                "probes/w.toml",
                ws,
                "24",
                &unit_needed("websocket.max_gap", "24"),
            ),
        ],
    );

    // A value of another type says what a duration looks like.
    let http = "name = \"h\"\nenvironments = [\"target\"]\ntimeout = true\n\n[http]\nurl = \"/\"\n";
    write_config(
        dir.path(),
        &config_with_target("http://127.0.0.1:9"),
        &[("h.toml", http)],
    );
    for file in ["f.toml", "s.toml", "w.toml"] {
        std::fs::remove_file(dir.path().join("probes").join(file)).unwrap();
    }
    check_fails_with_exactly(
        dir.path(),
        &[],
        &[(
            "probes/h.toml",
            http,
            "true",
            "timeout: expected a duration with a unit like \"5s\" or \"500ms\", found boolean `true`",
        )],
    );

    // The same keys written with units pass, and overrides, which arrive as
    // text (or as a number when they look like one), are checked the same.
    let http =
        "name = \"h\"\nenvironments = [\"target\"]\ntimeout = \"5s\"\n\n[http]\nurl = \"/\"\n";
    write_config(
        dir.path(),
        &config_with_target("http://127.0.0.1:9"),
        &[("h.toml", http)],
    );
    let ok = |envs: &[(&str, &str)], args: &[&str]| {
        let mut all = vec!["--config", "config.toml"];
        all.extend(args);
        all.push("check");
        synthmon(dir.path(), &all, envs).assert_code(0);
    };
    ok(&[], &[]);
    ok(&[("SYNTHMON_DAEMON__DRAIN_TIMEOUT", "5s")], &[]);
    ok(&[("SYNTHMON_DAEMON__DRAIN_TIMEOUT", "0")], &[]);
    ok(&[], &["--set", "telemetry.otlp_timeout=7s"]);
    for (envs, set) in [
        (&[("SYNTHMON_DAEMON__DRAIN_TIMEOUT", "5")][..], None),
        (&[][..], Some("daemon.drain_timeout=5")),
    ] {
        let mut args = vec!["--config", "config.toml"];
        args.extend(set.iter().flat_map(|s| ["--set", *s]));
        args.push("check");
        let run = synthmon(dir.path(), &args, envs);
        run.assert_code(2);
        assert!(
            run.stderr
                .contains(&unit_needed("error: daemon.drain_timeout", "5")),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn cron_errors_name_the_field_that_is_wrong_not_just_6_7_fields() {
    let dir = tempfile::tempdir().unwrap();
    let every = "; for an interval write `every <duration>` like `every 30s`";
    let cases: &[(&str, String)] = &[
        (
            "0 61 * * * *",
            "the minute field `61` is out of range 0–59".to_owned(),
        ),
        // Five fields: the first is the minute, not the second.
        (
            "30 25 * * *",
            "the hour field `25` is out of range 0–23".to_owned(),
        ),
        (
            "0 0 9 1,32 * *",
            "the day-of-month field `1,32`: `32` is out of range 1–31".to_owned(),
        ),
        (
            "0 0 * 0-13/2 *",
            "the month field `0-13/2`: `0` is out of range 1–12".to_owned(),
        ),
        (
            "0 9 * * MON-FRY",
            "the day-of-week field `MON-FRY`: `FRY` is not a day of the week (0–7 or SUN–SAT)"
                .to_owned(),
        ),
        (
            "0 9 * * 1#6",
            "the day-of-week field `1#6` asks for occurrence `#6` of the weekday in the month, which is 1 to 5"
                .to_owned(),
        ),
        (
            "*/0 * * * *",
            "the minute field `*/0` has a step of 0; a step is at least 1".to_owned(),
        ),
        (
            "0 22-2 * * *",
            "the hour field `22-2` runs backwards; a range does not wrap around (write `22-23,0-2`)"
                .to_owned(),
        ),
        (
            "0 0 0 1 1 * 0",
            "the year field `0` is out of range 1–5000".to_owned(),
        ),
        (
            "*/5 * * *",
            format!(
                "has 4 fields, expected 5 (minute hour day-of-month month day-of-week), \
                 6 with seconds first, or 7 with seconds first and a year last{every}"
            ),
        ),
    ];
    let probes: Vec<(String, String)> = cases
        .iter()
        .enumerate()
        .map(|(i, (cron, _))| {
            (
                format!("c{i}.toml"),
                format!(
                    "name = \"c{i}\"\nschedule = \"{cron}\"\nenvironments = [\"target\"]\n\n\
                     [http]\nurl = \"/\"\n"
                ),
            )
        })
        .collect();
    let files: Vec<(&str, &str)> = probes
        .iter()
        .map(|(name, text)| (name.as_str(), text.as_str()))
        .collect();
    write_config(
        dir.path(),
        &config_with_target("http://127.0.0.1:9"),
        &files,
    );
    let paths: Vec<String> = probes
        .iter()
        .map(|(name, _)| format!("probes/{name}"))
        .collect();
    let messages: Vec<String> = cases
        .iter()
        .map(|(cron, why)| {
            let sep = if why.starts_with("has ") { " " } else { ": " };
            format!("schedule: cron `{cron}`{sep}{why}")
        })
        .collect();
    let needles: Vec<String> = cases
        .iter()
        .map(|(cron, _)| format!("\"{cron}\""))
        .collect();
    let expected: Vec<(&str, &str, &str, &str)> = probes
        .iter()
        .zip(&paths)
        .zip(&needles)
        .zip(&messages)
        .map(|((((_, text), path), needle), message)| {
            (
                path.as_str(),
                text.as_str(),
                needle.as_str(),
                message.as_str(),
            )
        })
        .collect();
    check_fails_with_exactly(dir.path(), &[], &expected);

    // Valid forms still pass: five fields, six with seconds, seven with a
    // year, names, `L`, `W`, `#` and `?`.
    let good = [
        "*/5 * * * *",
        "30 */10 * * * *",
        "0 0 3 * * * 2030",
        "0 9 * JAN-MAR MON-FRI",
        "0 0 L * ?",
        "0 0 15W * *",
        "0 0 * * 5#2",
    ];
    std::fs::remove_dir_all(dir.path().join("probes")).unwrap();
    let probes: Vec<(String, String)> = good
        .iter()
        .enumerate()
        .map(|(i, cron)| {
            (
                format!("g{i}.toml"),
                format!(
                    "name = \"g{i}\"\nschedule = \"{cron}\"\nenvironments = [\"target\"]\n\n\
                     [http]\nurl = \"/\"\n"
                ),
            )
        })
        .collect();
    let files: Vec<(&str, &str)> = probes
        .iter()
        .map(|(name, text)| (name.as_str(), text.as_str()))
        .collect();
    write_config(
        dir.path(),
        &config_with_target("http://127.0.0.1:9"),
        &files,
    );
    let run = synthmon(dir.path(), &["--config", "config.toml", "check"], &[]);
    run.assert_code(0);
}
