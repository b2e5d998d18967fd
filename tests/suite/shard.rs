//! Sharding through the real binary (`list --shard I/N --output json`,
//! `--once --shard`, `auto/N` from a pod name, usage errors) and through an
//! in-process daemon (`/metrics` and `/healthz` name the shard and the
//! location; no `instance` label of synthmon's own).

use crate::common;

use common::{synthmon, write_config};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;
use synthmon::daemon::Daemon;

const PROBES: usize = 50;

/// Two locations' worth of environments, both the built-in sandbox.
const CONFIG: &str = "[daemon]\nprobes = [\"probes/*.toml\"]\n\n\
                      [environments.eu]\nbase_url = \"builtin:sandbox\"\n\n\
                      [environments.us]\nbase_url = \"builtin:sandbox\"\n";

type Pairs = BTreeSet<(String, String)>;
type Args<'a> = &'a [&'a str];
/// Environment variables, as `(name, value)`.
type Vars<'a> = &'a [(&'a str, &'a str)];

/// A config of [`PROBES`] probes, each in both environments.
fn fleet(dir: &Path) {
    let probes: Vec<(String, String)> = (0..PROBES)
        .map(|i| {
            (
                format!("p{i:02}.toml"),
                format!(
                    "name = \"check-{i:02}\"\nschedule = \"every 1h\"\ntimeout = \"2s\"\n\
                     environments = [\"eu\", \"us\"]\ntags = [\"t{}\"]\n\n[http]\nurl = \"/health\"\n",
                    i % 2
                ),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = probes
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    write_config(dir, CONFIG, &refs);
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

/// `list --output json` with `args` and `envs`: the document and its pairs.
fn list(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> (Value, Pairs) {
    let mut all = vec!["list", "--output", "json"];
    all.extend_from_slice(args);
    let run = synthmon(dir, &all, envs);
    run.assert_code(0);
    let doc = json(&run.stdout);
    let pairs = doc["pairs"]
        .as_array()
        .unwrap_or_else(|| panic!("no pairs: {doc}"))
        .iter()
        .map(|p| {
            (
                p["probe"].as_str().unwrap().to_owned(),
                p["environment"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (doc, pairs)
}

fn shard_pairs(dir: &Path, shard: &str) -> Pairs {
    list(dir, &["--shard", shard], &[]).1
}

#[test]
fn list_shards_partition_every_pair_and_three_to_four_moves_a_quarter() {
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path());
    let (doc, all) = list(dir.path(), &[], &[]);
    assert_eq!(all.len(), 2 * PROBES, "{doc}");
    assert_eq!(doc["shard"], serde_json::json!({ "index": 0, "count": 1 }));
    assert_eq!(doc["schema_version"], 1);
    let first = &doc["pairs"][0];
    assert_eq!(
        *first,
        serde_json::json!({
            "probe": "check-00", "environment": "eu", "kind": "http", "workload": false,
            "schedule": { "every": 3600.0 }, "timeout": 2.0, "tags": ["t0"],
        })
    );

    let mut owners = std::collections::BTreeMap::new();
    for n in [3_u32, 4] {
        let mut union = Pairs::new();
        for i in 0..n {
            let (doc, pairs) = list(dir.path(), &["--shard", &format!("{i}/{n}")], &[]);
            assert_eq!(doc["shard"], serde_json::json!({ "index": i, "count": n }));
            assert_eq!(doc["total_pairs"], 2 * PROBES);
            assert!(
                !pairs.is_empty(),
                "shard {i}/{n} owns nothing of {}",
                all.len()
            );
            for pair in pairs {
                assert!(all.contains(&pair), "{pair:?} is no configured pair");
                owners.insert((n, pair.clone()), i);
                assert!(
                    union.insert(pair.clone()),
                    "{pair:?} runs twice with {n} shards"
                );
            }
        }
        assert_eq!(union, all, "{n} shards leave pairs out");
    }
    // Rendezvous hashing: from 3 to 4 shards only the new shard takes
    // pairs, about a quarter of them.
    let moved: Vec<&(String, String)> = all
        .iter()
        .filter(|p| owners[&(3, (*p).clone())] != owners[&(4, (*p).clone())])
        .collect();
    for p in &moved {
        assert_eq!(
            owners[&(4, (*p).clone())],
            3,
            "{p:?} moved between old shards"
        );
    }
    let fraction = moved.len() as f64 / all.len() as f64;
    assert!(
        (0.1..=0.4).contains(&fraction),
        "3 → 4 shards moved {} of {} pairs ({:.0} %)",
        moved.len(),
        all.len(),
        fraction * 100.0
    );

    // The table shows the same pairs.
    let table = synthmon(dir.path(), &["list", "--shard", "1/3"], &[]);
    table.assert_code(0);
    let rows: Pairs = table
        .stdout
        .lines()
        .skip(1)
        .map(|l| {
            let mut cells = l.split_whitespace();
            let probe = cells.next().unwrap().to_owned();
            (probe, cells.next().unwrap().to_owned())
        })
        .collect();
    assert_eq!(rows, shard_pairs(dir.path(), "1/3"));
}

#[test]
fn auto_takes_the_statefulset_ordinal_and_the_env_variable_works_too() {
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path());
    let one = shard_pairs(dir.path(), "1/3");
    let auto = list(
        dir.path(),
        &["--shard", "auto/3"],
        &[("POD_NAME", "synthmon-1"), ("HOSTNAME", "synthmon-2")],
    );
    assert_eq!(
        auto.0["shard"],
        serde_json::json!({ "index": 1, "count": 3 })
    );
    assert_eq!(auto.1, one);
    // HOSTNAME when there is no POD_NAME.
    let host = list(
        dir.path(),
        &["--shard", "auto/3"],
        &[("HOSTNAME", "synthmon-1")],
    );
    assert_eq!(host.1, one);
    // SYNTHMON_SHARD, in either form; the flag wins over it.
    assert_eq!(list(dir.path(), &[], &[("SYNTHMON_SHARD", "1/3")]).1, one);
    let from_env = list(
        dir.path(),
        &[],
        &[("SYNTHMON_SHARD", "auto/3"), ("POD_NAME", "synthmon-1")],
    );
    assert_eq!(from_env.1, one);
    assert_eq!(
        list(
            dir.path(),
            &["--shard", "1/3"],
            &[("SYNTHMON_SHARD", "0/3")]
        )
        .1,
        one
    );
}

#[test]
fn bad_shards_are_usage_errors_that_name_the_value() {
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path());
    let cases: [(Args, Vars, &str); 7] = [
        (
            &["list", "--shard", "3/3"],
            &[],
            "invalid value '3/3' for '--shard <I/N>': shard 3 of 3 does not exist: shards are numbered from 0 to 2",
        ),
        (&["list", "--shard", "one/3"], &[], "found `one/3`"),
        (
            &["list", "--shard", "0/0"],
            &[],
            "expected a shard count from 1 to 1024, found 0",
        ),
        (
            &["list"],
            &[("SYNTHMON_SHARD", "5/2")],
            "invalid value '5/2' for '--shard <I/N>': shard 5 of 2 does not exist",
        ),
        (
            &["list", "--shard", "auto/3"],
            &[("POD_NAME", "synthmon-3")],
            "--shard auto/3: POD_NAME `synthmon-3` has ordinal 3, but shards are numbered from 0 to 2",
        ),
        (
            &["--once", "--shard", "auto/3"],
            &[("POD_NAME", "web")],
            "--shard auto/3: POD_NAME `web` does not end in a StatefulSet ordinal (expected a name like `synthmon-2`)",
        ),
        (
            &["run", "--shard", "auto/3"],
            &[("POD_NAME", "web-x")],
            "POD_NAME `web-x` does not end in a StatefulSet ordinal",
        ),
    ];
    for (args, envs, message) in cases {
        let run = synthmon(dir.path(), args, envs);
        run.assert_code(2);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
        assert!(
            run.stderr.contains(message),
            "{args:?} {envs:?}: expected `{message}` in:\n{}",
            run.stderr
        );
    }
    // `check` says what the shard would run.
    let check = synthmon(
        dir.path(),
        &["check", "--shard", "auto/3"],
        &[("POD_NAME", "synthmon-2")],
    );
    check.assert_code(0);
    let owned = shard_pairs(dir.path(), "2/3").len();
    assert!(
        check
            .stdout
            .contains(&format!("shard 2/3 runs {owned} of them")),
        "{}",
        check.stdout
    );
}

#[test]
fn once_with_a_shard_runs_only_the_pairs_it_owns() {
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path());
    let owned = shard_pairs(dir.path(), "2/3");
    let run = synthmon(
        dir.path(),
        &["--once", "--shard", "2/3", "--output", "json"],
        &[],
    );
    run.assert_code(0);
    let doc = json(&run.stdout);
    let ran: Pairs = doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["probe"].as_str().unwrap().to_owned(),
                r["environment"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(ran, owned);
    assert_eq!(
        doc["results"].as_array().unwrap().len(),
        owned.len(),
        "a pair ran twice"
    );
    assert!(
        run.stderr.contains(&format!(
            "shard 2/3: running {} of the {} selected (probe, environment) pairs",
            owned.len(),
            2 * PROBES
        )),
        "{}",
        run.stderr
    );

    // A selection this shard owns none of is its share of nothing: no run,
    // exit 0. A name that exists nowhere is still a usage error.
    let (probe, env) = shard_pairs(dir.path(), "0/3").into_iter().next().unwrap();
    let run = synthmon(
        dir.path(),
        &[
            "--once", "--shard", "2/3", "--probe", &probe, "--env", &env, "--output", "json",
        ],
        &[],
    );
    run.assert_code(0);
    assert_eq!(json(&run.stdout)["results"], serde_json::json!([]));
    assert!(
        run.stderr
            .contains("shard 2/3: running 0 of the 1 selected"),
        "{}",
        run.stderr
    );
    let run = synthmon(
        dir.path(),
        &["--once", "--shard", "2/3", "--probe", "check-99"],
        &[],
    );
    run.assert_code(2);
    assert!(
        run.stderr.contains("no probe named `check-99`"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_names_its_shard_and_location_in_metrics_and_healthz() {
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path());
    let owned = shard_pairs(dir.path(), "1/3");
    let mut opts = common::quiet_daemon_options(dir.path().join("config.toml"));
    opts.load.overrides.extend([
        ("daemon.listen".to_owned(), "127.0.0.1:0".to_owned()),
        ("daemon.location".to_owned(), "eu-west".to_owned()),
    ]);
    opts.shard = synthmon::plan::Shard::new(1, 3).unwrap();
    common::within(Duration::from_secs(30), async {
        let d = Daemon::start(opts, None).await.unwrap();
        let (status, body) = common::http_request(d.addr(), "GET", "/metrics", None).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("synthmon_location_info{location=\"eu-west\",shard=\"1/3\"} 1"),
            "{body}"
        );
        assert!(
            body.contains(&format!("synthmon_shard_pairs {}\n", owned.len())),
            "{body}"
        );
        // Prometheus' target label is never one of synthmon's own.
        assert!(!body.contains("instance=\""), "{body}");
        // Only this shard's pairs have series.
        for (probe, env) in [("check-00", "eu"), ("check-00", "us"), ("check-01", "eu")] {
            let series = format!(
                "synthmon_skipped_overlaps_total{{probe=\"{probe}\",environment=\"{env}\"}}"
            );
            let owns = owned.contains(&(probe.to_owned(), env.to_owned()));
            assert_eq!(body.contains(&series), owns, "{series}:\n{body}");
        }

        let (status, body) = common::http_request(d.addr(), "GET", "/healthz", None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            json(&body),
            serde_json::json!({
                "status": "ok",
                "location": "eu-west",
                "shard": { "index": 1, "count": 3 },
                "pairs": owned.len(),
            })
        );
        d.shutdown().await;
    })
    .await;
}
