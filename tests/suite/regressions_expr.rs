//! Regressions of the expression language (CEL, `src/expr.rs`), each named
//! after its bug: real probes run against the built-in sandbox, and
//! `synthmon check` locating what the compiler now refuses.

use crate::common;

use common::{load, position_of, run_all, synthmon, write_config};
use std::collections::BTreeMap;
use std::time::Duration;

const CONFIG: &str = "[daemon]\nprobes = [\"probes/*.toml\"]\n\n[environments.sandbox]\nbase_url = \"builtin:sandbox\"\n";

/// Arithmetic with a literal on JSON numbers (`/json` is a fixed document:
/// three items with ids 1 to 3, the last priced 100) and on the status.
const JSON_ARITHMETIC: &str = r#"name = "json-arithmetic"
environments = ["sandbox"]

[http]
url = "/json"
expect = [
  "status + 1 == 201",
  "json.items.size() > 0",
  "json.items.size() + 1 == 4",
  "json.items[2].id + 1 == 4",
  "json.items[2].price - 1 == 99",
  "json.items.map(i, i.id * 10) == [10, 20, 30]",
  "json.items[2].id > 2",
  "json.items[0].price > 9",
]
"#;

/// The same on an order's fields, on a count, and on a captured number read
/// back from `vars` by a later step.
const ORDER_ARITHMETIC: &str = r#"name = "order-arithmetic"
environments = ["sandbox"]

[[flow.steps]]
name = "create"
method = "POST"
url = "/api/orders"
json = { item = "regrexpr-widget", quantity = 3 }
expect = ["status + 1 == 202", "json.quantity + 1 == 4"]
capture = { order_id = "json.id", quantity = "json.quantity", next = "json.quantity + 1" }

[[flow.steps]]
name = "count"
url = "/api/orders/count?marker=regrexpr-"
expect = [
  "json.count + 1 == 2",
  "json.count > 0",
  "vars.quantity + 1 == 4",
  "vars.next - 1 == vars.quantity",
]

[[flow.teardown]]
name = "delete"
method = "DELETE"
url = "/api/orders/{{ vars.order_id }}"
expect = ["status == 204"]
"#;

#[tokio::test]
async fn cel_arithmetic_mixing_uint_and_int_fails_on_json_numbers_and_captures() {
    common::within(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(
            dir.path(),
            CONFIG,
            &[
                ("json-arithmetic.toml", JSON_ARITHMETIC),
                ("order-arithmetic.toml", ORDER_ARITHMETIC),
            ],
        );
        let outcomes = run_all(&load(&path), &BTreeMap::new()).await;
        assert_eq!(outcomes.len(), 2, "{outcomes:#?}");
        for o in &outcomes {
            let assertions = o
                .assertions
                .iter()
                .chain(o.steps.iter().flat_map(|s| &s.assertions));
            let failed: Vec<String> = assertions
                .filter(|a| !a.passed)
                .map(|a| format!("{}: {}", a.expression, a.actual))
                .collect();
            assert!(failed.is_empty(), "{}: {failed:#?}", o.probe);
            assert!(o.success, "{o:#?}");
        }
        let flow = outcomes
            .iter()
            .find(|o| o.probe == "order-arithmetic")
            .unwrap();
        assert_eq!(flow.steps[0].captured, ["next", "order_id", "quantity"]);
        assert_eq!(flow.steps.len(), 3, "{flow:#?}");
    })
    .await;
}

/// One expectation per line, each with one mistake the compiler can see.
const BAD_LITERALS: &str = r#"name = "bad-literals"
environments = ["sandbox"]

[http]
url = "/json"
expect = [
  "timings.total < duration('300 ms')",
  "status == '200'",
  "json.healthy && timings.total < 300",
]
"#;

fn check_bad_literals() -> common::Run {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), CONFIG, &[("bad.toml", BAD_LITERALS)]);
    let run = synthmon(dir.path(), &["--config", "config.toml", "check"], &[]);
    run.assert_code(2);
    run
}

/// The located error `synthmon check` prints for the literal `literal` of
/// `BAD_LITERALS`, at its first character.
fn located(key: &str, literal: &str, message: &str) -> String {
    let (line, column) = position_of(BAD_LITERALS, literal);
    format!("probes/bad.toml:{line}:{column}: error: {key}: {message}")
}

#[test]
fn duration_300_ms_prints_a_raw_rust_debug_string() {
    let err = check_bad_literals().stderr;
    let want = located(
        "http.expect[0]",
        "'300 ms'",
        "invalid duration `300 ms`: expected a number and a unit like `300ms` or `1.5s`",
    );
    assert!(err.contains(&want), "want\n{want}\nin\n{err}");
    assert!(!err.contains("Error {"), "{err}");
}

#[test]
fn cel_type_errors_accepted_at_load_status_eq_string_timings_total_lt_number() {
    let err = check_bad_literals().stderr;
    for want in [
        located(
            "http.expect[1]",
            "'200'",
            "`status` is a number, compared with the string '200' (write 200)",
        ),
        located(
            "http.expect[2]",
            "300\"",
            "`timings.total` is a duration, compared with the number 300 (write duration('300ms'))",
        ),
    ] {
        assert!(err.contains(&want), "want\n{want}\nin\n{err}");
    }
    assert!(err.trim_end().ends_with("3 errors"), "{err}");
}
