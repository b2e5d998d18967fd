//! Seeded payloads through the real binary: the same seed sends the same
//! request body byte for byte across two `--once` runs, as the sandbox's
//! `POST /echo` shows (the probe's expectations fail on purpose so the JSON
//! report carries each echoed field as an observed value).

use crate::common;

use common::{synthmon, write_config};

const CONFIG: &str = "[daemon]\nprobes = [\"probes/*.toml\"]\n\n[environments.sandbox]\nbase_url = \"builtin:sandbox\"\n";

fn probe(extra_top: &str) -> String {
    format!(
        r#"name = "seeded"
environments = ["sandbox"]
{extra_top}

[http]
method = "POST"
url = "/echo"
json = {{ id = "{{{{ uuid() }}}}", order = "{{{{ synthetic_id() }}}}", n = "{{{{ int(1, 1000000) }}}}", who = "{{{{ email() }}}}", w = "{{{{ lognormal(0, 1) }}}}", pick = "{{{{ weighted({{'a': 3, 'b': 1}}) }}}}" }}
# Each expectation fails on purpose: the report then shows the echoed value.
expect = ["json.id == ''", "json.order == ''", "json.n == 0", "json.who == ''", "json.w == 0.0", "json.pick == ''"]
"#
    )
}

/// The echoed fields of one `--once` run, read from the failed
/// expectations' observed values in the JSON report.
fn echoed(dir: &std::path::Path, args: &[&str]) -> String {
    let mut all = vec!["--once", "--output", "json"];
    all.extend_from_slice(args);
    let run = synthmon(dir, &all, &[]);
    run.assert_code(1);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let assertions = report["results"][0]["assertions"].as_array().unwrap();
    let seen: Vec<&str> = assertions
        .iter()
        .filter(|a| a["passed"] == false)
        .map(|a| a["actual"].as_str().unwrap())
        .collect();
    assert_eq!(seen.len(), 6, "{report:#}");
    assert!(seen[0].starts_with("json.id = \""), "{seen:?}");
    seen.join("\n")
}

#[test]
fn the_same_seed_sends_the_same_bytes_and_no_seed_differs() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), CONFIG, &[("seeded.toml", &probe(""))]);
    let a = echoed(dir.path(), &["--seed", "42"]);
    let b = echoed(dir.path(), &["--seed", "42"]);
    assert_eq!(a, b, "same seed, same bytes");
    assert!(a.contains("synth-"), "generated ids carry the marker: {a}");
    let c = echoed(dir.path(), &["--seed", "43"]);
    assert_ne!(a, c, "another seed, other bytes");
    let d = echoed(dir.path(), &[]);
    let e = echoed(dir.path(), &[]);
    assert_ne!(d, e, "without a seed every run differs");
}

#[test]
fn a_probe_seed_is_reproducible_and_the_flag_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        CONFIG,
        &[("seeded.toml", &probe("seed = 7\nmarker = \"loadtest-\""))],
    );
    let a = echoed(dir.path(), &[]);
    let b = echoed(dir.path(), &[]);
    assert_eq!(a, b);
    assert!(a.contains("loadtest-"), "{a}");
    let c = echoed(dir.path(), &["--seed", "7"]);
    assert_eq!(a, c, "--seed 7 equals the probe's seed = 7");
    let d = echoed(dir.path(), &["--seed", "8"]);
    assert_ne!(a, d);
}
