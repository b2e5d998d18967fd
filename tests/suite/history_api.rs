//! The read-only history API of a running daemon (issue 15): every
//! endpoint over real HTTP on 127.0.0.1 against an in-process daemon
//! probing the built-in sandbox, its 400/404/503 errors as JSON; and
//! `synthmon history` (the binary) on the state directory a daemon left.

use crate::common;

use common::write_config;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use synthmon::daemon::Daemon;

const CONFIG: &str = "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"state\"\n\
                      [environments.sb]\nbase_url = \"builtin:sandbox\"\n";

fn probe(name: &str, url: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\nschedule = \"every 1s\"\ntimeout = \"900ms\"\nenvironments = [\"sb\"]\n{extra}\n[http]\nurl = \"{url}\"\n"
    )
}

/// `good` passes (with an SLO), `bad` answers 500.
fn write(dir: &Path, config: &str) -> std::path::PathBuf {
    write_config(
        dir,
        config,
        &[
            (
                "good.toml",
                &probe("good", "/health", "slo = { objective = \"99%\" }"),
            ),
            ("bad.toml", &probe("bad", "/status/500", "")),
        ],
    )
}

async fn start(path: std::path::PathBuf) -> Daemon {
    Daemon::start(common::quiet_daemon_options(path), None)
        .await
        .unwrap()
}

/// GET `path`; the status and the body as JSON (every API answer is).
async fn get(d: &Daemon, path: &str) -> (u16, Value) {
    let (status, body) = common::http_request(d.addr(), "GET", path, None).await;
    let json = serde_json::from_str(&body).unwrap_or_else(|e| {
        panic!("GET {path}: {status} with a body that is not JSON ({e}): {body}")
    });
    (status, json)
}

/// GET `path` until `pred` holds of its 200 answer, for at most `secs`.
async fn get_until(d: &Daemon, path: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (status, body) = get(d, path).await;
        if status == 200 && pred(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting on GET {path}: {status} {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn runs_of(body: &Value) -> usize {
    body["runs"].as_array().map_or(0, Vec::len)
}

/// The error sentence of a JSON error answer with `status`.
async fn error(d: &Daemon, path: &str, status: u16) -> String {
    let (got, body) = get(d, path).await;
    assert_eq!(got, status, "GET {path}: {body:#}");
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("GET {path}: no error sentence: {body:#}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_from_the_history_of_a_running_daemon() {
    common::within(Duration::from_secs(40), async {
        let dir = tempfile::tempdir().unwrap();
        let d = start(write(dir.path(), CONFIG)).await;

        // A few runs of each probe reach the history.
        get_until(&d, "/api/v1/probes/good/sb/runs", 15, |b| runs_of(b) >= 3).await;
        let bad = get_until(&d, "/api/v1/probes/bad/sb/runs", 15, |b| runs_of(b) >= 3).await;

        // Runs: newest first, the failure's reason and status kept.
        let runs = bad["runs"].as_array().unwrap();
        for r in runs {
            assert_eq!(r["result"], "fail", "{r:#}");
            assert_eq!(r["reason"], "status", "{r:#}");
            assert_eq!(r["status"], 500, "{r:#}");
            assert_eq!(r["trace_id"].as_str().unwrap().len(), 32, "{r:#}");
        }
        let starts: Vec<&str> = runs
            .iter()
            .map(|r| r["started_at"].as_str().unwrap())
            .collect();
        assert!(
            starts.windows(2).all(|w| w[0] > w[1]),
            "not newest first: {starts:?}"
        );
        assert!(
            chrono::DateTime::parse_from_rfc3339(starts[0]).is_ok(),
            "{}",
            starts[0]
        );
        assert_eq!(
            (bad["limit"].as_u64(), bad["more"].as_bool()),
            (Some(100), Some(false))
        );

        let (status, two) = get(&d, "/api/v1/probes/bad/sb/runs?limit=2&since=1h").await;
        assert_eq!(status, 200, "{two:#}");
        assert_eq!(
            (runs_of(&two), two["more"].as_bool()),
            (2, Some(true)),
            "{two:#}"
        );
        assert_eq!(
            two["runs"][0], runs[0],
            "the newest run comes first whatever the limit"
        );
        let (_, old) = get(
            &d,
            "/api/v1/probes/bad/sb/runs?since=2020-01-01T00:00:00Z&until=2020-01-02T00:00:00Z",
        )
        .await;
        assert_eq!(runs_of(&old), 0, "{old:#}");

        // Probes: every configured pair with its state, last run, uptime
        // and SLO (once computed: every 30 s, the first one at start).
        let body = get_until(&d, "/api/v1/probes", 10, |b| {
            b["probes"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["probe"] == "good" && p["slo"].is_object())
            })
        })
        .await;
        let probes = body["probes"].as_array().unwrap();
        assert_eq!(probes.len(), 2, "{body:#}");
        let pair = |name: &str| probes.iter().find(|p| p["probe"] == name).unwrap();
        let (good, bad) = (pair("good"), pair("bad"));
        assert_eq!(
            (&good["environment"], &good["kind"]),
            (&"sb".into(), &"http".into())
        );
        assert_eq!(good["state"], "ok", "{good:#}");
        assert_eq!(good["last_run"]["result"], "pass", "{good:#}");
        assert_eq!(good["last_run"]["status"], 200, "{good:#}");
        assert!(good["last_run"]["duration_seconds"].as_f64().unwrap() > 0.0);
        for w in ["24h", "7d", "30d"] {
            assert_eq!(good["uptime"][w], 1.0, "{good:#}");
            assert_eq!(bad["uptime"][w], 0.0, "{bad:#}");
        }
        assert_eq!(good["slo"]["objective"], 0.99, "{good:#}");
        assert_eq!(bad["state"], "failing", "{bad:#}");
        assert_eq!(bad["last_run"]["result"], "fail", "{bad:#}");
        assert_eq!(bad["last_run"]["reason"], "status", "{bad:#}");
        assert_eq!(bad["last_run"]["status"], 500, "{bad:#}");
        assert!(bad["slo"].is_null(), "{bad:#}");

        // Latency: a point per step over the window, percentiles of the
        // runs that passed (a failed run has none). The latency snapshots
        // are written every 5 s (the counts with every batch).
        let lat = get_until(
            &d,
            "/api/v1/probes/good/sb/latency?window=1h&step=5m",
            10,
            |b| {
                b["points"].as_array().is_some_and(|ps| {
                    ps.iter()
                        .map(|p| p["samples"].as_u64().unwrap_or(0))
                        .sum::<u64>()
                        >= 3
                })
            },
        )
        .await;
        assert_eq!(
            (&lat["window_seconds"], &lat["step_seconds"]),
            (&3600.into(), &300.into())
        );
        assert!(lat["step_name"].is_null());
        let points = lat["points"].as_array().unwrap();
        assert_eq!(points.len(), 12, "{lat:#}");
        let samples: u64 = points.iter().map(|p| p["samples"].as_u64().unwrap()).sum();
        assert!(samples >= 3, "{lat:#}");
        for p in points {
            if p["samples"] == 0 {
                assert!(p["p50"].is_null() && p["p99"].is_null(), "{p:#}");
            } else {
                let q = |k: &str| p[k].as_f64().unwrap();
                assert!(
                    q("p50") > 0.0 && q("p50") <= q("p95") && q("p95") <= q("p99"),
                    "{p:#}"
                );
            }
        }
        let (_, lat) = get(&d, "/api/v1/probes/bad/sb/latency").await;
        let points = lat["points"].as_array().unwrap();
        assert_eq!(points.len(), 12, "the default is an hour at 5m: {lat:#}");
        let sum = |k: &str| points.iter().map(|p| p[k].as_u64().unwrap()).sum::<u64>();
        assert!(
            sum("runs") >= 3 && sum("failed") == sum("runs") && sum("samples") == 0,
            "{lat:#}"
        );

        // SLOs: the configured one, with its budget, burn rates and rules.
        let (status, slos) = get(&d, "/api/v1/slos").await;
        assert_eq!(status, 200, "{slos:#}");
        let slos = slos["slos"].as_array().unwrap();
        assert_eq!(slos.len(), 1, "{slos:#?}");
        let s = &slos[0];
        assert_eq!(
            (&s["probe"], &s["environment"], &s["sli"]),
            (&"good".into(), &"sb".into(), &"availability".into())
        );
        assert_eq!(
            (&s["objective"], &s["window"]),
            (&0.99.into(), &"30d".into())
        );
        assert!(s["budget"]["remaining"].as_f64().is_some(), "{s:#}");
        assert!(!s["burn_rates"].as_array().unwrap().is_empty(), "{s:#}");
        let rules = s["rules"].as_array().unwrap();
        assert!(
            !rules.is_empty() && rules.iter().all(|r| r["firing"] == false),
            "{s:#}"
        );

        // Bad parameters: 400 naming the parameter.
        for (path, param) in [
            ("/api/v1/probes/bad/sb/runs?since=yesterday", "since:"),
            ("/api/v1/probes/bad/sb/runs?until=soon", "until:"),
            ("/api/v1/probes/bad/sb/runs?since=1h&until=2h", "since:"),
            ("/api/v1/probes/bad/sb/runs?limit=0", "limit:"),
            ("/api/v1/probes/bad/sb/runs?limit=5000", "limit:"),
            (
                "/api/v1/probes/bad/sb/runs?lmit=5",
                "lmit: unknown parameter",
            ),
            (
                "/api/v1/probes/good/sb/latency?window=30d&step=1m",
                "window:",
            ),
            ("/api/v1/probes/good/sb/latency?step=30s", "step:"),
            ("/api/v1/probes/good/sb/latency?window=5m&step=1h", "step:"),
            ("/api/v1/probes?x=1", "x: unknown parameter"),
        ] {
            let e = error(&d, path, 400).await;
            assert!(e.starts_with(param), "GET {path}: {e}");
        }
        let e = error(&d, "/api/v1/probes/good/sb/latency?window=30d&step=1m", 400).await;
        assert!(e.contains("43200 points") && e.contains("1000"), "{e}");

        // What is not configured: 404, as JSON.
        let e = error(&d, "/api/v1/probes/nope/sb/runs", 404).await;
        assert!(e.contains("`nope`"), "{e}");
        let e = error(&d, "/api/v1/probes/good/prod/latency", 404).await;
        assert!(e.contains("`prod`") && e.contains("sb"), "{e}");
        let e = error(&d, "/api/v1/nothing", 404).await;
        assert!(e.contains("/api/v1/probes"), "{e}");

        d.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_history_the_api_says_so_with_503() {
    common::within(Duration::from_secs(20), async {
        let dir = tempfile::tempdir().unwrap();
        let config = format!("{CONFIG}[daemon.history]\nenabled = false\n");
        let d = start(write(dir.path(), &config)).await;
        for path in [
            "/api/v1/probes",
            "/api/v1/probes/good/sb/runs",
            "/api/v1/probes/good/sb/latency",
            "/api/v1/slos",
        ] {
            let e = error(&d, path, 503).await;
            assert!(e.contains("history is off"), "GET {path}: {e}");
        }
        // The rest of the listener is unaffected.
        let (status, _) = common::http_request(d.addr(), "GET", "/healthz", None).await;
        assert_eq!(status, 200);
        d.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthmon_history_reads_the_state_directory_a_daemon_left() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), CONFIG);
    common::within(Duration::from_secs(30), async {
        let d = start(config.clone()).await;
        get_until(&d, "/api/v1/probes/bad/sb/runs", 15, |b| runs_of(b) >= 3).await;
        d.shutdown().await;
    })
    .await;
    let cfg = config.to_str().unwrap();
    let cwd = dir.path();

    let human = common::synthmon(cwd, &["-c", cfg, "history", "bad"], &[]);
    human.assert_code(0);
    let lines: Vec<&str> = human.stdout.lines().collect();
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("TRACE ID"),
        "{}",
        human.stdout
    );
    let row = lines[1];
    for word in ["sb", "fail", "500", "status", "ms"] {
        assert!(row.contains(word), "`{word}` missing from {row:?}");
    }
    let summary = lines.iter().find(|l| l.starts_with("sb: ")).unwrap();
    assert!(
        summary.contains("availability 0.000%") && summary.contains("p50 -"),
        "{summary}"
    );

    let json = common::synthmon(
        cwd,
        &[
            "-c", cfg, "history", "bad", "--env", "sb", "--limit", "2", "--output", "json",
        ],
        &[],
    );
    json.assert_code(0);
    let report: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["runs"].as_array().unwrap().len(), 2, "{report:#}");
    assert_eq!(report["more"], true, "{report:#}");
    assert_eq!(report["runs"][0]["environment"], "sb");
    assert_eq!(report["runs"][0]["reason"], "status");
    let s = &report["summary"][0];
    assert!(
        s["runs"].as_u64().unwrap() >= 3 && s["failed"] == s["runs"],
        "{s:#}"
    );
    assert_eq!(s["availability"], 0.0, "{s:#}");

    let good = common::synthmon(
        cwd,
        &["-c", cfg, "history", "good", "--output", "json"],
        &[],
    );
    good.assert_code(0);
    let report: Value = serde_json::from_str(&good.stdout).unwrap();
    let s = &report["summary"][0];
    assert_eq!(s["availability"], 1.0, "{s:#}");
    assert!(s["p50"].as_f64().unwrap() > 0.0, "{s:#}");

    // Mistakes and missing history: exit 2 with a sentence.
    let run = common::synthmon(cwd, &["-c", cfg, "history", "bad", "--env", "prod"], &[]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("no environment `prod`"),
        "{}",
        run.stderr
    );
    let run = common::synthmon(cwd, &["-c", cfg, "history", "bad", "--since", "soon"], &[]);
    run.assert_code(2);
    assert!(run.stderr.contains("--since"), "{}", run.stderr);

    let empty = tempfile::tempdir().unwrap();
    let other = write(empty.path(), CONFIG);
    let run = common::synthmon(
        empty.path(),
        &["-c", other.to_str().unwrap(), "history", "bad"],
        &[],
    );
    run.assert_code(2);
    assert!(
        run.stderr.contains("history.sqlite does not exist"),
        "{}",
        run.stderr
    );
    std::fs::create_dir_all(empty.path().join("state")).unwrap();
    std::fs::write(
        empty.path().join("state/history.sqlite"),
        "not a database, only text",
    )
    .unwrap();
    let run = common::synthmon(
        empty.path(),
        &["-c", other.to_str().unwrap(), "history", "bad"],
        &[],
    );
    run.assert_code(2);
    assert!(run.stderr.contains("cannot be used"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_which_pairs_the_api_serves() {
    common::within(Duration::from_secs(20), async {
        let dir = tempfile::tempdir().unwrap();
        let d = start(write(dir.path(), CONFIG)).await;
        let names = |b: &Value| -> Vec<String> {
            b["probes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["probe"].as_str().unwrap().to_owned())
                .collect()
        };
        let (_, before) = get(&d, "/api/v1/probes").await;
        assert_eq!(names(&before), ["bad", "good"]);
        std::fs::remove_file(dir.path().join("probes/bad.toml")).unwrap();
        std::fs::write(
            dir.path().join("probes/new.toml"),
            probe("new", "/health", ""),
        )
        .unwrap();
        d.reload().await;
        let after = get_until(&d, "/api/v1/probes", 10, |b| names(b) == ["good", "new"]).await;
        let new = &after["probes"][1];
        assert!(new["state"].is_null() || new["state"] == "ok", "{new:#}");
        let e = error(&d, "/api/v1/probes/bad/sb/runs", 404).await;
        assert!(e.contains("`bad`"), "{e}");
        d.shutdown().await;
    })
    .await;
}
