//! Regressions of how an `http` probe reads a body as JSON
//! (`src/probe/http.rs`), each named after its bug: real probes run
//! against the built-in sandbox's `/json/invalid` (a document cut short)
//! and `/json/deep?depth=N` (`N` nested arrays).

use crate::common;

use common::{load, run_all, write_config};
use std::collections::BTreeMap;
use std::time::Duration;
use synthmon::outcome::{AssertionResult, FailureReason, Outcome};

const CONFIG: &str = "[daemon]\nprobes = [\"probes/*.toml\"]\n\n[environments.sandbox]\nbase_url = \"builtin:sandbox\"\n";

/// Every test body runs under this bound; a parse that recursed without a
/// limit would overflow the stack long before, and one that took long
/// would hit it.
const BOUND: Duration = Duration::from_secs(20);

/// What CEL says when it reads a field of a null `json`; never shown once
/// the body is known not to be JSON.
const CEL_NOISE: [&str; 3] = ["no matching overload", "no such key", "evaluation failed"];

/// Runs every probe of `probes` once in the sandbox environment.
async fn run(probes: &[(&str, &str)]) -> Vec<Outcome> {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), CONFIG, probes);
    run_all(&load(&path), &BTreeMap::new()).await
}

fn outcome<'a>(outcomes: &'a [Outcome], probe: &str) -> &'a Outcome {
    outcomes
        .iter()
        .find(|o| o.probe == probe)
        .unwrap_or_else(|| panic!("no outcome for {probe}: {outcomes:#?}"))
}

fn result<'a>(o: &'a Outcome, expression: &str) -> &'a AssertionResult {
    o.assertions
        .iter()
        .chain(o.steps.iter().flat_map(|s| &s.assertions))
        .find(|a| a.expression == expression)
        .unwrap_or_else(|| panic!("no result for `{expression}`: {o:#?}"))
}

fn assert_no_cel_noise(text: &str) {
    for noise in CEL_NOISE {
        assert!(!text.contains(noise), "`{noise}` in {text:?}");
    }
}

/// `/json/invalid` cut short inside a string; the explanation must say so
/// and where, not what CEL thinks of `null.items`.
const INVALID: &str = r#"name = "invalid-json"
environments = ["sandbox"]

[http]
url = "/json/invalid"
expect = [
  "status == 200",
  "headers['content-type'] == 'application/json'",
  "json.items.size() > 0",
  "has(json.service)",
  "json != null",
  "json == null",
]
"#;

/// The same body read by a flow step: the step's error says why too.
const INVALID_IN_A_FLOW: &str = r#"name = "invalid-json-flow"
environments = ["sandbox"]

[[flow.steps]]
name = "read"
url = "/json/invalid"
expect = ["json.service.name == 'sandbox-orders'"]
"#;

/// The valid document still reads as before.
const VALID: &str = r#"name = "valid-json"
environments = ["sandbox"]

[http]
url = "/json"
expect = ["json.items.size() == 3", "has(json.service)", "json != null"]
"#;

#[tokio::test]
async fn invalid_json_explains_the_parse_error_instead_of_no_matching_overload() {
    common::within(BOUND, async {
        let outcomes = run(&[
            ("invalid.toml", INVALID),
            ("invalid-flow.toml", INVALID_IN_A_FLOW),
            ("valid.toml", VALID),
        ])
        .await;
        let why = "the body is not JSON: EOF while parsing a string at line 1 column 72";

        let o = outcome(&outcomes, "invalid-json");
        assert!(!o.success, "{o:#?}");
        assert_eq!(o.reason, Some(FailureReason::Assertion), "{o:#?}");
        assert!(result(o, "status == 200").passed, "{o:#?}");
        assert!(result(o, "json == null").passed, "json stays null: {o:#?}");
        for expression in ["json.items.size() > 0", "has(json.service)"] {
            let r = result(o, expression);
            assert!(!r.passed, "{r:#?}");
            assert_eq!(r.actual, why, "`{expression}`");
        }
        // An explained `false` keeps its operands and says why.
        assert_eq!(
            result(o, "json != null").actual,
            format!("json = null; {why}")
        );
        assert_eq!(
            o.error.as_deref(),
            Some(format!("3 of 6 expectations failed ({why})").as_str())
        );
        for a in &o.assertions {
            assert_no_cel_noise(&a.actual);
        }

        let flow = outcome(&outcomes, "invalid-json-flow");
        assert!(!flow.success, "{flow:#?}");
        let step = &flow.steps[0];
        assert_eq!(step.reason, Some(FailureReason::Assertion), "{step:#?}");
        assert_eq!(
            result(flow, "json.service.name == 'sandbox-orders'").actual,
            why
        );
        let error = step.error.as_deref().unwrap_or_default();
        assert!(error.contains(why), "{error}");
        assert_no_cel_noise(error);
        let error = flow.error.as_deref().unwrap_or_default();
        assert!(error.contains(why), "{error}");

        let valid = outcome(&outcomes, "valid-json");
        assert!(valid.success, "{valid:#?}");
    })
    .await;
}

/// 100,000 nested arrays: 200,000 bytes, well under the default body cap.
const DEEP: &str = r#"name = "deep-json"
environments = ["sandbox"]

[http]
url = "/json/deep?depth=100000"
expect = ["status == 200", "size(json) == 1"]
"#;

/// As deep as serde_json goes: it parses.
const AT_THE_LIMIT: &str = r#"name = "json-at-the-limit"
environments = ["sandbox"]

[http]
url = "/json/deep?depth=127"
expect = ["size(json) == 1", "size(json[0][0][0]) == 1"]
"#;

#[tokio::test]
async fn a_100k_deep_json_body_is_a_nesting_error_not_a_crash() {
    common::within(BOUND, async {
        let outcomes = run(&[("deep.toml", DEEP), ("limit.toml", AT_THE_LIMIT)]).await;

        let o = outcome(&outcomes, "deep-json");
        assert!(!o.success, "{o:#?}");
        assert_eq!(o.reason, Some(FailureReason::Assertion), "{o:#?}");
        assert_eq!(o.http.as_ref().map(|h| h.body_bytes), Some(200_000));
        assert!(result(o, "status == 200").passed, "{o:#?}");
        let why = "the body is not JSON: nesting deeper than 127 levels \
                   (recursion limit exceeded at line 1 column 128)";
        let r = result(o, "size(json) == 1");
        assert_eq!(r.actual, why, "{r:#?}");
        assert_no_cel_noise(&r.actual);
        assert_eq!(
            o.error.as_deref(),
            Some(format!("1 of 2 expectations failed ({why})").as_str())
        );
        // Judging the body took no time to speak of: the whole run, the
        // 200,000 bytes included, is far inside the bound.
        assert!(o.duration < Duration::from_secs(5), "{:?}", o.duration);

        let limit = outcome(&outcomes, "json-at-the-limit");
        assert!(limit.success, "{limit:#?}");
    })
    .await;
}

// A document that is not JSON read by the other kinds and by a flow's
// captures and `until`: each says why (it used to say only what CEL
// thought of a null `json`, or "gave null").

const NOT_JSON_ELSEWHERE: [(&str, &str); 4] = [
    (
        "command.toml",
        r#"name = "command-stdout"
environments = ["sandbox"]

[command]
program = "echo"
args = ["ready: yes"]
expect = ["json.ready == true"]
"#,
    ),
    (
        "websocket.toml",
        r#"name = "websocket-message"
environments = ["sandbox"]
timeout = "3s"

[websocket]
url = "/ws/echo"
send = [ { text = "{\"n\": 1" } ]
expect = ["messages[0].json.n == 1"]
"#,
    ),
    (
        "capture.toml",
        r#"name = "flow-capture"
environments = ["sandbox"]

[[flow.steps]]
name = "read"
url = "/json/invalid"
capture = { service = "json.service.name" }
"#,
    ),
    (
        "until.toml",
        r#"name = "flow-until"
environments = ["sandbox"]
timeout = "3s"

[[flow.steps]]
name = "poll"
url = "/json/invalid"
until = "json.service.name == 'sandbox-orders'"
until_interval = "100ms"
until_timeout = "300ms"
"#,
    ),
];

#[tokio::test]
async fn not_json_is_explained_for_command_stdout_websocket_messages_and_flow_captures_and_until() {
    common::within(BOUND, async {
        let outcomes = run(&NOT_JSON_ELSEWHERE).await;

        let o = outcome(&outcomes, "command-stdout");
        assert_eq!(o.reason, Some(FailureReason::Assertion), "{o:#?}");
        let r = result(o, "json.ready == true");
        assert!(
            r.actual
                .starts_with("stdout is not JSON: expected value at line 1 column 1"),
            "{r:#?}"
        );
        assert_no_cel_noise(&r.actual);
        assert!(
            o.error
                .as_deref()
                .unwrap_or("")
                .contains("stdout is not JSON"),
            "{o:#?}"
        );

        let o = outcome(&outcomes, "websocket-message");
        let r = result(o, "messages[0].json.n == 1");
        assert!(
            r.actual
                .starts_with("messages[0] is not JSON: EOF while parsing an object"),
            "{r:#?}"
        );
        assert_no_cel_noise(&r.actual);

        let o = outcome(&outcomes, "flow-capture");
        let step = &o.steps[0];
        let error = step.error.as_deref().unwrap_or("");
        assert!(error.starts_with("capture `service`:"), "{step:#?}");
        assert!(
            error.contains("(the body is not JSON: EOF while parsing"),
            "{step:#?}"
        );

        let o = outcome(&outcomes, "flow-until");
        assert_eq!(o.reason, Some(FailureReason::Until), "{o:#?}");
        let error = o.steps[0].error.as_deref().unwrap_or("");
        assert!(
            error.contains("(last: the body is not JSON: EOF while parsing"),
            "{error}"
        );
        assert_no_cel_noise(error);
    })
    .await;
}
