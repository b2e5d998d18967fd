//! The command line end to end: `--once` on the repository's own config
//! (human and JSON), a failing probe's report, probe selection errors, and
//! `list`. Every run is the built binary, bounded by a deadline.

use crate::common;

use common::{position_of, repo, synthmon, write_config};

/// The `name = "…"` and kind (the one kind table present) of every
/// example probe in the repository, sorted by name. The kinds come from the
/// registry, so a new kind without an example fails here.
fn example_probes() -> Vec<(String, String)> {
    let kinds: Vec<&str> = synthmon::probe::KINDS.iter().map(|k| k.name).collect();
    let mut probes = Vec::new();
    for entry in std::fs::read_dir(repo().join("probes")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let table: toml::Table = text.parse().unwrap();
            let kind = kinds
                .iter()
                .find(|k| table.contains_key(**k))
                .unwrap_or_else(|| panic!("no kind table in {}", path.display()));
            probes.push((
                table["name"].as_str().unwrap().to_owned(),
                (*kind).to_owned(),
            ));
        }
    }
    probes.sort();
    // Every kind has an example.
    for kind in kinds {
        assert!(
            probes.iter().any(|(_, k)| k == kind),
            "no example probe of kind `{kind}`: {probes:?}"
        );
    }
    probes
}

fn example_probe_names() -> Vec<String> {
    example_probes().into_iter().map(|(n, _)| n).collect()
}

/// The names of the example probes that carry a `workload` table.
fn example_workload_names() -> Vec<String> {
    std::fs::read_dir(repo().join("probes"))
        .unwrap()
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.unwrap().path()).ok()?;
            let table: toml::Table = text.parse().ok()?;
            table
                .contains_key("workload")
                .then(|| table["name"].as_str().unwrap().to_owned())
        })
        .collect()
}

/// The example probe that needs unprivileged ICMP, which the kernel may
/// forbid (`net.ipv4.ping_group_range`): where it does, the probe fails
/// with the sysctl's name instead of passing, and the tests expect that.
const PING_EXAMPLE: &str = "ping-loopback";

/// Whether every example probe can pass on this machine.
fn ping_allowed() -> bool {
    crate::probe_icmp::unprivileged_ping_allowed()
}

fn repo_config() -> String {
    repo().join("config.toml").display().to_string()
}

/// A config of the test's own: environment `sandbox` (the built-in
/// sandbox) with a health probe, a second probe and a small workload, for
/// tests about the command line rather than about the shipped examples.
const OWN_CONFIG: &str = "[daemon]\nprobes = [\"probes/*.toml\"]\n\n[environments.sandbox]\nbase_url = \"builtin:sandbox\"\n";
const OWN_HEALTH: &str = "name = \"sandbox-health\"\nenvironments = [\"sandbox\"]\ntags = [\"smoke\"]\n\n[http]\nurl = \"/health\"\nexpect = [\"status == 200\"]\n";
const OWN_JSON: &str =
    "name = \"json-api\"\nenvironments = [\"sandbox\"]\n\n[http]\nurl = \"/json\"\n";
const OWN_LOAD: &str = "name = \"order-load\"\nschedule = \"every 5m\"\nenvironments = [\"sandbox\"]\ntimeout = \"2s\"\nthresholds = [\"p(99) < 250ms\", \"error_rate < 1%\"]\n\n[workload]\nrequests = 40\nrate = 20\nmax_concurrency = 20\n\n[http]\nmethod = \"POST\"\nurl = \"/api/orders\"\njson = { item = \"widget\", quantity = 1 }\nexpect = [\"status == 201\"]\n";

/// Writes [`OWN_CONFIG`] and its probes into `dir`; returns the config path.
fn own_config(dir: &std::path::Path) -> String {
    write_config(
        dir,
        OWN_CONFIG,
        &[
            ("health.toml", OWN_HEALTH),
            ("json.toml", OWN_JSON),
            ("load.toml", OWN_LOAD),
        ],
    )
    .display()
    .to_string()
}

#[test]
fn once_on_the_repository_config_passes_every_example_probe() {
    let run = synthmon(&repo(), &["--config", &repo_config(), "--once"], &[]);
    run.assert_code(if ping_allowed() { 0 } else { 1 });
    for (name, kind) in example_probes() {
        let line = run
            .stdout
            .lines()
            .find(|l| l.contains(&format!(" {name} @ sandbox ")))
            .unwrap_or_else(|| panic!("no line for `{name}` in\n{}", run.stdout));
        if name == PING_EXAMPLE && !ping_allowed() {
            assert!(line.starts_with("FAIL"), "{}", run.stdout);
            assert!(
                run.stdout
                    .contains("permission: the kernel does not allow unprivileged ICMP"),
                "{}",
                run.stdout
            );
            continue;
        }
        assert!(
            line.starts_with("PASS"),
            "`{name}` did not pass:\n{}",
            run.stdout
        );
        // The phase breakdown is on the line (a workload's totals are on
        // the next).
        let phases: &[&str] = match kind.as_str() {
            "http" if line.contains(" --- ") => &[],
            "http" => &["resolve", "connect", "tls", "processing", "transfer"],
            "flow" => &[],
            "dns" => &["resolve", "query"],
            "grpc" => &["connect", "call"],
            "stream" => &["connect", "first_event"],
            "command" => &["run"],
            "websocket" => &["upgrade", "first_message", "close"],
            "icmp" => &["resolve", "ping"],
            _ => &["resolve", "connect"],
        };
        for phase in phases {
            assert!(line.contains(phase), "no `{phase}` on `{line}`");
        }
    }
    let n = example_probe_names().len();
    let summary = if ping_allowed() {
        format!("{n} passed, 0 failed")
    } else {
        format!("{} passed, 1 failed", n - 1)
    };
    assert!(run.stdout.contains(&summary), "{}", run.stdout);
}

#[test]
fn once_json_output_is_versioned_and_complete() {
    let run = synthmon(
        &repo(),
        &["--config", &repo_config(), "--once", "--output", "json"],
        &[],
    );
    let failing = usize::from(!ping_allowed());
    run.assert_code(if failing == 0 { 0 } else { 1 });
    let doc: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", run.stdout));
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["synthmon_version"], env!("CARGO_PKG_VERSION"));
    let probes = example_probes();
    assert_eq!(doc["summary"]["total"], probes.len());
    assert_eq!(doc["summary"]["passed"], probes.len() - failing);
    assert_eq!(doc["summary"]["failed"], failing);
    let results = doc["results"].as_array().unwrap();
    let mut seen: Vec<(String, String)> = Vec::new();
    for r in results {
        if r["probe"] == PING_EXAMPLE && failing == 1 {
            assert_eq!(r["reason"], "permission", "{r:#}");
            seen.push((PING_EXAMPLE.to_owned(), "icmp".to_owned()));
            continue;
        }
        assert_eq!(r["success"], true, "{r:#}");
        assert_eq!(r["reason"], serde_json::Value::Null, "{r:#}");
        assert_eq!(r["environment"], "sandbox");
        assert_eq!(r["run_id"].as_str().unwrap().len(), 16, "{r:#}");
        assert_eq!(r["trace_id"].as_str().unwrap().len(), 32, "{r:#}");
        assert!(r["duration"].as_f64().unwrap() > 0.0, "{r:#}");
        let kind = r["kind"].as_str().unwrap().to_owned();
        match kind.as_str() {
            // A workload's requests or flow iterations are counted, not
            // listed.
            "http" | "flow" if !r["workload"].is_null() => {
                let w = &r["workload"];
                assert!(w["ok"].as_u64().unwrap() > 0, "{r:#}");
                assert_eq!(w["failed"], 0, "{r:#}");
                assert_eq!(w["anomalies"]["unexpected"], 0, "{r:#}");
            }
            "http" => {
                let phases = r["http"]["phases"]
                    .as_object()
                    .unwrap_or_else(|| panic!("no http.phases: {r:#}"));
                for phase in ["resolve", "connect", "tls", "processing", "transfer"] {
                    let v = phases[phase]
                        .as_f64()
                        .unwrap_or_else(|| panic!("no `{phase}` in {r:#}"));
                    assert!(v >= 0.0, "{r:#}");
                }
                assert!(r["http"]["status"].as_u64().is_some(), "{r:#}");
                assert!(!r["assertions"].as_array().unwrap().is_empty(), "{r:#}");
            }
            "flow" => {
                let steps = r["steps"].as_array().unwrap();
                assert!(steps.len() >= 2, "{r:#}");
                assert!(steps.iter().all(|s| s["success"] == true), "{r:#}");
            }
            _ => {
                let phases = r["phases"].as_array().unwrap();
                assert!(!phases.is_empty(), "{r:#}");
                let sum: f64 = phases.iter().map(|p| p["seconds"].as_f64().unwrap()).sum();
                assert!(sum <= r["duration"].as_f64().unwrap() + 1e-6, "{r:#}");
                assert!(r["details"].is_object(), "{r:#}");
            }
        }
        seen.push((r["probe"].as_str().unwrap().to_owned(), kind));
    }
    seen.sort();
    assert_eq!(seen, probes);
}

#[test]
fn a_failing_probe_exits_1_and_names_the_expression_its_value_and_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let probe = r#"# A probe that must fail: the sandbox answers 500.
name = "orders-broken"
environments = ["sandbox"]
timeout = "5s"

[http]
url = "/status/500"
expect = [
  "status == 200",
]
"#;
    write_config(
        dir.path(),
        "[environments.sandbox]\nbase_url = \"builtin:sandbox\"\n",
        &[("broken.toml", probe)],
    );
    let run = synthmon(dir.path(), &["--config", "config.toml", "--once"], &[]);
    run.assert_code(1);
    let (line, column) = position_of(probe, "\"status == 200\"");
    assert_eq!((line, column), (9, 3));
    let out = &run.stdout;
    assert!(
        out.lines().any(|l| l.starts_with("FAIL")
            && l.contains("orders-broken @ sandbox")
            && l.contains("500")),
        "{out}"
    );
    assert!(out.contains("expected status == 200"), "{out}");
    assert!(out.contains("actual   status = 500"), "{out}");
    assert!(
        out.contains(&format!("(probes/broken.toml:{line}:{column})")),
        "no location probes/broken.toml:{line}:{column} in\n{out}"
    );
    assert!(out.contains("0 passed, 1 failed"), "{out}");

    // The same in JSON: reason, assertion and location.
    let run = synthmon(
        dir.path(),
        &["--config", "config.toml", "--once", "--output", "json"],
        &[],
    );
    run.assert_code(1);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["summary"]["failed"], 1);
    let r = &doc["results"][0];
    assert_eq!(r["success"], false);
    assert_eq!(r["reason"], "assertion");
    assert_eq!(r["http"]["status"], 500);
    let a = &r["assertions"][0];
    assert_eq!(a["expression"], "status == 200");
    assert_eq!(a["passed"], false);
    assert_eq!(a["actual"], "status = 500");
    assert_eq!(a["location"]["file"], "probes/broken.toml");
    assert_eq!(a["location"]["line"], line);
    assert_eq!(a["location"]["column"], column);
}

#[test]
fn a_non_2xx_status_without_a_status_expectation_fails_with_reason_status() {
    let dir = tempfile::tempdir().unwrap();
    let probe = "name = \"implicit\"\nenvironments = [\"sandbox\"]\n\n[http]\nurl = \"/status/503\"\nexpect = [\"size(body) >= 0\"]\n";
    write_config(
        dir.path(),
        "[environments.sandbox]\nbase_url = \"builtin:sandbox\"\n",
        &[("implicit.toml", probe)],
    );
    let run = synthmon(
        dir.path(),
        &["--config", "config.toml", "--once", "--output", "json"],
        &[],
    );
    run.assert_code(1);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let r = &doc["results"][0];
    assert_eq!(r["reason"], "status", "{r:#}");
    assert_eq!(r["http"]["status"], 503, "{r:#}");
}

#[test]
fn a_thread_count_of_zero_is_a_usage_error_that_says_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let config = own_config(dir.path());
    for (args, envs) in [
        (
            vec!["--config", &config, "--once", "--threads", "0"],
            vec![],
        ),
        (
            vec!["--config", &config, "--once"],
            vec![("SYNTHMON_THREADS", "0")],
        ),
    ] {
        let run = synthmon(dir.path(), &args, &envs);
        run.assert_code(2);
        assert!(
            run.stderr.contains("--threads") && run.stderr.contains("1..=1024"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn an_unknown_probe_is_a_usage_error_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let config = own_config(dir.path());
    let run = synthmon(
        dir.path(),
        &["--config", &config, "--once", "--probe", "nosuch"],
        &[],
    );
    run.assert_code(2);
    assert!(
        run.stderr.contains("no probe named `nosuch`"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);

    let run = synthmon(
        dir.path(),
        &["--config", &config, "--once", "--probe", "sandbox-helth"],
        &[],
    );
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("no probe named `sandbox-helth`; did you mean `sandbox-health`?"),
        "{}",
        run.stderr
    );

    let run = synthmon(
        dir.path(),
        &["--config", &config, "--once", "--env", "sandbx"],
        &[],
    );
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("no environment named `sandbx`; did you mean `sandbox`?"),
        "{}",
        run.stderr
    );
}

/// Regression: `--output json` printed no JSON document when the config
/// had errors, so a CI job parsing stdout got nothing to parse.
#[test]
fn once_json_on_a_bad_config_prints_an_error_document_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "[daemon]\nprobes = [\"probes/*.toml\"]\n\n[environments.sandbox]\nbase_url = \"builtin:sandbox\"\n",
        &[(
            "bad.toml",
            "name = \"bad\"\nenvironments = [\"sandbox\"]\ntimout = \"1s\"\n\n[http]\nurl = \"/health\"\n",
        )],
    );
    let run = synthmon(dir.path(), &["--once", "--output", "json"], &[]);
    run.assert_code(2);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", run.stdout));
    assert_eq!(doc["schema_version"], 1, "{doc:#}");
    let errors = doc["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{doc:#}");
    let e = &errors[0];
    assert!(e["file"].as_str().unwrap().ends_with("bad.toml"), "{e:#}");
    assert_eq!(
        (e["line"].as_u64(), e["column"].as_u64()),
        (Some(3), Some(1)),
        "{e:#}"
    );
    assert_eq!(e["key"], "timout");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("unknown key `timout`"),
        "{e:#}"
    );
    assert_eq!(e["help"], "did you mean `timeout`?");
    // People reading the terminal still get the located text on stderr.
    assert!(
        run.stderr.contains("bad.toml:3:1: error: timout"),
        "{}",
        run.stderr
    );

    // A selection that matches nothing is an error document too.
    let own = tempfile::tempdir().unwrap();
    let config = own_config(own.path());
    let run = synthmon(
        own.path(),
        &[
            "--config", &config, "--once", "--output", "json", "--probe", "nosuch",
        ],
        &[],
    );
    run.assert_code(2);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(
        doc["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no probe named `nosuch`"),
        "{doc:#}"
    );
}

#[test]
fn probe_selection_runs_only_the_named_probe() {
    let dir = tempfile::tempdir().unwrap();
    let config = own_config(dir.path());
    let run = synthmon(
        dir.path(),
        &["--config", &config, "--once", "--probe", "sandbox-health"],
        &[],
    );
    run.assert_code(0);
    let lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("PASS") || l.starts_with("FAIL"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", run.stdout);
    assert!(
        lines[0].contains("sandbox-health @ sandbox"),
        "{}",
        run.stdout
    );
}

#[test]
fn list_prints_a_row_per_probe_and_environment() {
    let run = synthmon(&repo(), &["--config", &repo_config(), "list"], &[]);
    run.assert_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("PROBE"), "{}", run.stdout);
    for header in ["ENVIRONMENT", "KIND", "SCHEDULE", "TIMEOUT", "TAGS"] {
        assert!(lines[0].contains(header), "{}", run.stdout);
    }
    let names = example_probe_names();
    let workloads = example_workload_names();
    assert!(!workloads.is_empty(), "no example workload probe");
    assert_eq!(lines.len(), 1 + names.len(), "{}", run.stdout);
    for name in &names {
        let row = lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("no row for `{name}`:\n{}", run.stdout));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[1], "sandbox", "{row}");
        let kind = &example_probes()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1;
        // A workload is its kind sending at a rate: `http+workload`.
        let expected = if workloads.contains(name) {
            format!("{kind}+workload")
        } else {
            kind.clone()
        };
        assert_eq!(cells[2], expected, "{row}");
    }

    let health = lines
        .iter()
        .find(|l| l.starts_with("sandbox-health "))
        .unwrap();
    assert!(health.contains("every 30s"), "{health}");
    assert!(health.contains("5s"), "{health}");
    assert!(health.contains("smoke"), "{health}");

    // A probe in two environments gets two rows.
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "[environments.staging]\nbase_url = \"http://127.0.0.1:9\"\n\n[environments.prod]\nbase_url = \"http://127.0.0.1:9\"\n",
        &[
            (
                "a.toml",
                "name = \"two-envs\"\nschedule = \"every 2m\"\nenvironments = [\"staging\", \"prod\"]\ntags = [\"x\", \"y\"]\n[http]\nurl = \"/\"\n",
            ),
            (
                "b.toml",
                "name = \"one-env\"\nenvironments = [\"prod\"]\n[http]\nurl = \"/\"\n",
            ),
        ],
    );
    let run = synthmon(dir.path(), &["--config", "config.toml", "list"], &[]);
    run.assert_code(0);
    let rows: Vec<Vec<&str>> = run
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let pairs: Vec<(&str, &str)> = rows.iter().map(|r| (r[0], r[1])).collect();
    assert_eq!(
        pairs,
        vec![
            ("two-envs", "staging"),
            ("two-envs", "prod"),
            ("one-env", "prod")
        ],
        "{}",
        run.stdout
    );
    assert!(rows[0].contains(&"x,y"), "{}", run.stdout);
}

/// Thresholds in `--once` judge the invocation's own samples: a failing one
/// fails the run (exit 1) even though the request itself passed; a
/// degraded one warns and passes.
#[test]
fn once_reports_thresholds_and_a_failing_one_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let probe = |name: &str, thresholds: &str| {
        format!(
            "name = \"{name}\"\nenvironments = [\"sandbox\"]\ntimeout = \"2s\"\nthresholds = [{thresholds}]\n[http]\nurl = \"/delay/60\"\n"
        )
    };
    write_config(
        dir.path(),
        "[environments.sandbox]\nbase_url = \"builtin:sandbox\"\n",
        &[
            ("slow.toml", &probe("slow", "\"p(99) < 50ms\"")),
            (
                "meh.toml",
                &probe(
                    "meh",
                    "{ failing = \"p(95) < 1s\", degraded = \"p(95) < 50ms\" }, \"error_rate < 1%\"",
                ),
            ),
        ],
    );
    let failing = synthmon(
        dir.path(),
        &["--config", "config.toml", "--once", "--probe", "slow"],
        &[],
    );
    failing.assert_code(1);
    assert!(
        failing.stdout.contains("FAIL  slow @ sandbox"),
        "{}",
        failing.stdout
    );
    assert!(
        failing
            .stdout
            .contains("threshold p(99) < 50ms: failing (observed "),
        "{}",
        failing.stdout
    );

    let degraded = synthmon(
        dir.path(),
        &[
            "--config",
            "config.toml",
            "--once",
            "--probe",
            "meh",
            "--output",
            "json",
        ],
        &[],
    );
    degraded.assert_code(0);
    let doc: serde_json::Value = serde_json::from_str(&degraded.stdout).unwrap();
    let result = &doc["results"][0];
    assert_eq!(result["thresholds"][0]["state"], "degraded");
    assert_eq!(result["thresholds"][0]["threshold"], "p(95) < 1s");
    assert_eq!(result["thresholds"][0]["degraded"], "p(95) < 50ms");
    assert_eq!(result["thresholds"][1]["state"], "ok");
    assert_eq!(result["thresholds"][1]["observed"], 0.0);
    let p99 = result["latency"]["p99"].as_f64().unwrap();
    assert!((0.06..1.0).contains(&p99), "{result}");
    assert_eq!(result["latency"]["samples"], 1);
}

/// A workload draws its progress bar when stderr is a terminal, and only
/// then: the same run through `script(1)` (a real pseudo-terminal) shows
/// the bar's frames, through a pipe it shows none.
#[test]
fn a_workload_draws_a_progress_bar_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = own_config(dir.path());
    let args = ["--config", &config, "--once", "--probe", "order-load"];
    let piped = synthmon(dir.path(), &args, &[]);
    piped.assert_code(0);
    // A workload's thresholds count its requests.
    let counted = regex::Regex::new(
        r"threshold p\(99\) < 250ms: ok \(observed [0-9.]+ms over \d+ requests\)",
    )
    .unwrap();
    assert!(counted.is_match(&piped.stdout), "{}", piped.stdout);
    assert!(
        !piped.stderr.contains("requests ·") && !piped.stdout.contains("requests ·"),
        "a bar drawn into a pipe:\n{}",
        piped.stderr
    );

    let command = std::iter::once(env!("CARGO_BIN_EXE_synthmon"))
        .chain(args)
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    // `script` is util-linux's (Debian's essential bsdutils): never skipped.
    let out = std::process::Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script(1) from util-linux runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{:?}\n{text}", out.status);
    let frame = regex::Regex::new(r"order-load @ sandbox \[[=> ]{30}\] \d+/40 requests").unwrap();
    assert!(frame.is_match(&text), "no progress bar frame:\n{text:?}");
    assert!(text.contains("PASS"), "{text}");
}
