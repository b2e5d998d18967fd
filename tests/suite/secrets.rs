//! Secrets never reach the output: a canary passed in through
//! `${env:…}` is sent to the target (proved by a passing expectation over
//! the sandbox's header echo) yet appears in no report, error or log line,
//! in human or JSON output, even with `SYNTHMON_LOG=trace`.

use crate::common;

use common::{position_of, synthmon, write_config};

const CANARY: &str = "canary-7f3a9c1e5b";

const CONFIG: &str = r#"[environments.sandbox]
base_url = "builtin:sandbox"
"#;

/// Fails on purpose, so the report prints the echoed body and the header.
const LEAKY: &str = r#"name = "leak-check"
environments = ["sandbox"]

[http]
url = "/headers"
headers = { Authorization = "Bearer ${env:SYNTHMON_TEST_CANARY}" }
expect = [
  "status == 200",
  "body.contains('never-there')",
  "json.authorization == 'x'",
]
"#;

/// Passes only if the header arrived with the canary in it.
const SENT: &str = r#"name = "canary-sent"
environments = ["sandbox"]

[http]
url = "/headers"
headers = { Authorization = "Bearer ${env:SYNTHMON_TEST_CANARY}" }
expect = ["json.authorization == 'Bearer ' + vars.tok"]
"#;

#[test]
fn a_secret_is_sent_but_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        CONFIG,
        &[("leaky.toml", LEAKY), ("sent.toml", SENT)],
    );
    let var = format!("tok={CANARY}");
    let envs = [("SYNTHMON_TEST_CANARY", CANARY), ("SYNTHMON_LOG", "trace")];

    for output in ["human", "json"] {
        let run = synthmon(
            dir.path(),
            &[
                "--config",
                "config.toml",
                "--once",
                "--var",
                &var,
                "--output",
                output,
            ],
            &envs,
        );
        run.assert_code(1);
        assert!(
            !run.stdout.contains(CANARY),
            "the canary leaked to stdout ({output}):\n{}",
            run.stdout
        );
        assert!(
            !run.stderr.contains(CANARY),
            "the canary leaked to stderr ({output}):\n{}",
            run.stderr
        );
        // The value was there and was masked.
        assert!(
            run.stdout.contains("Bearer ***"),
            "no masked value in stdout ({output}):\n{}",
            run.stdout
        );
        match output {
            "human" => {
                let pass = run
                    .stdout
                    .lines()
                    .find(|l| l.contains("canary-sent @ sandbox"))
                    .unwrap_or_else(|| panic!("{}", run.stdout));
                assert!(
                    pass.starts_with("PASS"),
                    "the canary did not arrive:\n{}",
                    run.stdout
                );
                let fail = run
                    .stdout
                    .lines()
                    .find(|l| l.contains("leak-check @ sandbox"))
                    .unwrap();
                assert!(fail.starts_with("FAIL"), "{}", run.stdout);
                assert!(
                    run.stdout.contains("json.authorization = \"Bearer ***\""),
                    "{}",
                    run.stdout
                );
            }
            _ => {
                let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
                let results = doc["results"].as_array().unwrap();
                let sent = results
                    .iter()
                    .find(|r| r["probe"] == "canary-sent")
                    .unwrap();
                assert_eq!(sent["success"], true, "the canary did not arrive: {sent:#}");
                let leaky = results.iter().find(|r| r["probe"] == "leak-check").unwrap();
                assert_eq!(leaky["success"], false, "{leaky:#}");
                assert_eq!(leaky["reason"], "assertion", "{leaky:#}");
                let actuals: Vec<&str> = leaky["assertions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["actual"].as_str().unwrap())
                    .collect();
                assert!(
                    actuals.iter().any(|a| a.contains("Bearer ***")),
                    "{actuals:?}"
                );
            }
        }
        // Trace logging was on: the logs are not empty, so their silence
        // about the canary means something.
        assert!(!run.stderr.trim().is_empty(), "no logs at trace level");
    }
}

#[test]
fn an_unset_secret_variable_is_a_located_config_error_naming_only_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), CONFIG, &[("leaky.toml", LEAKY)]);
    let run = synthmon(dir.path(), &["--config", "config.toml", "check"], &[]);
    run.assert_code(2);
    let (line, column) = position_of(LEAKY, "\"Bearer ${env:");
    assert!(
        run.stderr.contains(&format!(
            "probes/leaky.toml:{line}:{column}: error: http.headers.Authorization: environment variable `SYNTHMON_TEST_CANARY` referenced by `${{env:SYNTHMON_TEST_CANARY}}` is not set"
        )),
        "{}",
        run.stderr
    );
}

/// A token with characters that URLs escape (`/`, `+`, `=`), as base64
/// tokens have.
const ESCAPED_CANARY: &str = "tok/3f9a+c1e5b==";

#[test]
fn a_secret_in_the_query_string_is_masked_in_the_reported_url() {
    let dir = tempfile::tempdir().unwrap();
    let probe = r#"name = "query-secret"
environments = ["sandbox"]

[http]
url = "/status/500"
query = { key = "${env:SYNTHMON_TEST_CANARY}" }
"#;
    write_config(dir.path(), CONFIG, &[("q.toml", probe)]);
    let run = synthmon(
        dir.path(),
        &["--config", "config.toml", "--once", "--output", "json"],
        &[("SYNTHMON_TEST_CANARY", ESCAPED_CANARY)],
    );
    run.assert_code(1);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let url = doc["results"][0]["http"]["url"].as_str().unwrap();
    // The request did carry the key, in its escaped form.
    let escaped: String = url::form_urlencoded::byte_serialize(ESCAPED_CANARY.as_bytes()).collect();
    assert_ne!(escaped, ESCAPED_CANARY);
    for form in [ESCAPED_CANARY, escaped.as_str()] {
        assert!(
            !run.stdout.contains(form) && !run.stderr.contains(form),
            "the secret leaked as `{form}`:\n{}\n{}",
            run.stdout,
            run.stderr
        );
    }
    assert!(url.contains("key=***"), "{url}");
}
