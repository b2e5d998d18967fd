//! A probe's `slo` and `baseline` keys through the real loader
//! (`plan::load`) and `synthmon check`: what they accept (and their
//! defaults), and every mistake reported at file:line:column with its key
//! path, all of them at once.

use crate::common;

use common::{position_of, synthmon, write_config};
use std::time::Duration;
use synthmon::slo::{
    BaselineLevel, BaselineMetric, BurnRule, BurnSeverity, DEFAULT_MIN_SAMPLES, Sli, default_rules,
};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// A probe file with `line` as its third line.
fn probe(name: &str, line: &str) -> String {
    format!("name = \"{name}\"\nenvironments = [\"target\"]\n{line}\n\n[http]\nurl = \"/health\"\n")
}

fn load_dir(
    dir: &std::path::Path,
    probes: &[(&str, &str)],
) -> Result<synthmon::plan::Config, String> {
    let path = write_config(
        dir,
        &common::config_with_target("http://127.0.0.1:9"),
        probes,
    );
    synthmon::plan::load(&synthmon::config::LoadOptions {
        config_path: Some(path),
        overrides: vec![],
    })
    .map_err(|d| d.to_string())
}

/// The loader's whole error text for a probe whose third line is `line`.
fn errors(line: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let text = probe("p", line);
    let err = load_dir(dir.path(), &[("p.toml", &text)]).unwrap_err();
    (text, err)
}

#[test]
fn the_documented_forms_load_with_their_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        (
            "a.toml",
            probe(
                "a",
                r#"slo = { objective = "99.9%", window = "30d", sli = "availability" }"#,
            ),
        ),
        (
            "b.toml",
            probe(
                "b",
                r#"slo = { objective = "99%", window = "7d", sli = "latency", threshold = "300ms" }"#,
            ),
        ),
        (
            "c.toml",
            probe(
                "c",
                r#"baseline = { metric = "p95", window = "7d", tolerance = "20%" }"#,
            ),
        ),
        (
            "d.toml",
            probe(
                "d",
                r#"baseline = { metric = "p(99)", window = "24h", tolerance = "50%", level = "failing", min_samples = 20 }"#,
            ),
        ),
        (
            "e.toml",
            probe(
                "e",
                r#"slo = { objective = "99.95%", alerts = [{ burn = 14.4, long = "1h", short = "5m", severity = "page" }, { burn = 2, long = "1d", short = "2h", severity = "ticket" }] }"#,
            ),
        ),
        (
            "f.toml",
            probe(
                "f",
                r#"slo = { objective = "90%", window = "1h", alerts = [] }"#,
            ),
        ),
        ("g.toml", probe("g", r#"slo = { objective = "99.5 %" }"#)),
        ("h.toml", probe("h", "")),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let config = load_dir(dir.path(), &files).unwrap_or_else(|e| panic!("{e}"));
    let by_name = |name: &str| {
        config
            .probes
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no probe {name}"))
    };

    let a = by_name("a").slo.clone().unwrap();
    assert_eq!(a.objective, 0.999);
    assert_eq!(a.error_budget(), 0.001);
    assert_eq!(a.window, 30 * DAY);
    assert_eq!(a.sli, Sli::Availability);
    assert_eq!(a.rules, default_rules());
    assert!(by_name("a").baseline.is_none());

    let b = by_name("b").slo.clone().unwrap();
    assert_eq!(b.objective, 0.99);
    assert_eq!(b.window, 7 * DAY);
    assert_eq!(
        b.sli,
        Sli::Latency {
            threshold: Duration::from_millis(300)
        }
    );

    let c = by_name("c").baseline.clone().unwrap();
    assert_eq!(c.metric, BaselineMetric::Percentile(95.0));
    assert_eq!(c.window, 7 * DAY);
    assert_eq!(c.tolerance, 0.2);
    assert_eq!(c.level, BaselineLevel::Degraded);
    assert_eq!(c.min_samples, DEFAULT_MIN_SAMPLES);
    assert!(by_name("c").slo.is_none());

    let d = by_name("d").baseline.clone().unwrap();
    assert_eq!(d.metric, BaselineMetric::Percentile(99.0));
    assert_eq!(d.window, 24 * HOUR);
    assert_eq!(d.tolerance, 0.5);
    assert_eq!(d.level, BaselineLevel::Failing);
    assert_eq!(d.min_samples, 20);

    let e = by_name("e").slo.clone().unwrap();
    assert_eq!(
        e.rules,
        vec![
            BurnRule {
                factor: 14.4,
                long: HOUR,
                short: Duration::from_secs(300),
                severity: BurnSeverity::Page,
            },
            BurnRule {
                factor: 2.0,
                long: DAY,
                short: 2 * HOUR,
                severity: BurnSeverity::Ticket,
            },
        ]
    );
    assert_eq!(e.window, 30 * DAY);

    // `alerts = []`: no burn alerts, so neither the 3-day window of the
    // default rules nor their 14.4× (out of reach at 90%) is in the way.
    let f = by_name("f").slo.clone().unwrap();
    assert!(f.rules.is_empty());
    assert_eq!(f.windows(), vec![HOUR]);

    assert_eq!(by_name("g").slo.clone().unwrap().objective, 0.995);
    assert!(by_name("h").slo.is_none() && by_name("h").baseline.is_none());
}

/// Each mistake: the probe's third line, the key path, the start of the
/// message, and the text at whose first character the error is located.
#[test]
fn every_mistake_is_located_with_its_key_path() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            r#"slo = { objective = "99.9" }"#,
            "slo.objective",
            "expected a percentage with a `%` sign like `99.9%`, found `99.9`",
            r#""99.9""#,
        ),
        (
            r#"slo = { objective = 0.999 }"#,
            "slo.objective",
            "expected a percentage with a `%` sign like `99.9%`, found `0.999`",
            "0.999",
        ),
        (
            r#"slo = { objective = "100%" }"#,
            "slo.objective",
            "an objective of `100%` leaves no error budget",
            r#""100%""#,
        ),
        (
            r#"slo = { objective = "0%" }"#,
            "slo.objective",
            "expected an objective above 0% and below 100%",
            r#""0%""#,
        ),
        (
            r#"slo = { objective = "90%" }"#,
            "slo.objective",
            "with an objective of 90%, the default 14.4× burn-rate alert can never fire (every run failing burns the budget at 10.0×)",
            r#""90%""#,
        ),
        (
            r#"slo = { window = "30d" }"#,
            "slo",
            "missing required key `objective`",
            "slo",
        ),
        (
            r#"slo = { objective = "99.9%", window = "30m" }"#,
            "slo.window",
            "expected a window from 1h to 400d, found `30m`",
            r#""30m""#,
        ),
        (
            r#"slo = { objective = "99.9%", window = "401d", alerts = [] }"#,
            "slo.window",
            "expected a window from 1h to 400d, found `401d`",
            r#""401d""#,
        ),
        (
            r#"slo = { objective = "99.9%", window = 30 }"#,
            "slo.window",
            "expected a duration with a unit like `5s` or `500ms`, found the number 30",
            "30 }",
        ),
        (
            r#"slo = { objective = "99.9%", window = "1d" }"#,
            "slo.window",
            "the default burn-rate alerts read up to 3d, longer than this window",
            r#""1d""#,
        ),
        (
            r#"slo = { objective = "99.9%", sli = "latency" }"#,
            "slo.sli",
            "a latency SLI needs `threshold`",
            r#""latency""#,
        ),
        (
            r#"slo = { objective = "99.9%", threshold = "300ms" }"#,
            "slo.threshold",
            "`threshold` applies to `sli = \"latency\"` only",
            r#""300ms""#,
        ),
        (
            r#"slo = { objective = "99.9%", sli = "latency", threshold = "0ms" }"#,
            "slo.threshold",
            "expected a latency above zero like `300ms`, found `0ms`",
            r#""0ms""#,
        ),
        (
            r#"slo = { objective = "99.9%", sli = "availabilty" }"#,
            "slo.sli",
            "expected `availability` or `latency`, found `availabilty`\n  = help: did you mean `availability`?",
            r#""availabilty""#,
        ),
        (
            r#"slo = { objective = "99.9%", windw = "30d" }"#,
            "slo.windw",
            "unknown key `windw` (expected one of `objective`, `window`, `sli`, `threshold`, `alerts`)\n  = help: did you mean `window`?",
            "windw",
        ),
        (
            r#"slo = { objective = "99.9%", alerts = [{ burn = 14.4, long = "5m", short = "1h", severity = "page" }] }"#,
            "slo.alerts[0].short",
            "the short window (1h) must be shorter than the long one (5m)",
            r#""1h""#,
        ),
        (
            r#"slo = { objective = "99.9%", window = "7d", alerts = [{ burn = 1, long = "8d", short = "6h", severity = "ticket" }] }"#,
            "slo.alerts[0].long",
            "expected a window from 1m to 7d, found `8d`",
            r#""8d""#,
        ),
        (
            r#"slo = { objective = "99.9%", alerts = [{ burn = 6, long = "6h", short = "30s", severity = "page" }] }"#,
            "slo.alerts[0].short",
            "expected a window from 1m to 30d, found `30s`",
            r#""30s""#,
        ),
        (
            r#"slo = { objective = "99.9%", alerts = [{ burn = 0, long = "1h", short = "5m", severity = "page" }] }"#,
            "slo.alerts[0].burn",
            "expected a burn rate above 0, like `14.4`, found 0",
            "0,",
        ),
        (
            r#"slo = { objective = "99.9%", alerts = [{ burn = 1001, long = "1h", short = "5m", severity = "page" }] }"#,
            "slo.alerts[0].burn",
            "a burn rate of 1001 can never be reached with an objective of 99.9% (every run failing burns the budget at 1000.0×)",
            "1001",
        ),
        (
            r#"slo = { objective = "99.9%", alerts = [{ burn = 6, long = "6h", short = "30m", severity = "pager" }] }"#,
            "slo.alerts[0].severity",
            "expected `page` or `ticket`, found `pager`",
            r#""pager""#,
        ),
        (
            r#"slo = { objective = "99.9%", alerts = [{ burn = 6, long = "6h", short = "30m", severity = "page", shrot = "1m" }] }"#,
            "slo.alerts[0].shrot",
            "unknown key `shrot` (expected one of `burn`, `long`, `short`, `severity`)\n  = help: did you mean `short`?",
            "shrot",
        ),
        (
            r#"baseline = { metric = "p95" }"#,
            "baseline",
            "missing required key `tolerance`",
            "baseline",
        ),
        (
            r#"baseline = { metric = "p999", tolerance = "20%" }"#,
            "baseline.metric",
            "expected a percentile from 0 (exclusive) to 100, found `p999`",
            r#""p999""#,
        ),
        (
            r#"baseline = { metric = "median", tolerance = "20%" }"#,
            "baseline.metric",
            "expected `p50`, `p90`, `p95`, `p99`, `p(N)` or `avg`, found `median`",
            r#""median""#,
        ),
        (
            r#"baseline = { metric = "p95", tolerance = "0.2" }"#,
            "baseline.tolerance",
            "expected a percentage with a `%` sign like `99.9%`, found `0.2`",
            r#""0.2""#,
        ),
        (
            r#"baseline = { metric = "p95", tolerance = "0%" }"#,
            "baseline.tolerance",
            "expected a tolerance above 0%, like `20%`, found `0%`",
            r#""0%""#,
        ),
        (
            r#"baseline = { metric = "avg", tolerance = "20%", window = "60d" }"#,
            "baseline.window",
            "expected a window from 1h to 30d, found `60d`",
            r#""60d""#,
        ),
        (
            r#"baseline = { metric = "avg", tolerance = "20%", window = "5m" }"#,
            "baseline.window",
            "expected a window from 1h to 30d, found `5m`",
            r#""5m""#,
        ),
        (
            r#"baseline = { metric = "p95", tolerance = "20%", level = "warning" }"#,
            "baseline.level",
            "expected `degraded` or `failing`, found `warning`",
            r#""warning""#,
        ),
        (
            r#"baseline = { metric = "p95", tolerance = "20%", min_samples = 0 }"#,
            "baseline.min_samples",
            "expected at least 1 sample",
            "0 }",
        ),
        (
            r#"baseline = { metric = "p95", tolerance = "20%", levle = "failing" }"#,
            "baseline.levle",
            "unknown key `levle` (expected one of `metric`, `window`, `tolerance`, `min_samples`, `level`)\n  = help: did you mean `level`?",
            "levle",
        ),
    ];
    let mut failures = Vec::new();
    for (line, path, message, at) in cases {
        let (text, err) = errors(line);
        let (l, c) = position_of(&text, at);
        let want = format!("probes/p.toml:{l}:{c}: error: {path}: {message}");
        if !err.contains(&want) {
            failures.push(format!("{line}\n  want: {want}\n  got:  {err}"));
        }
        // The mistake is the only one reported.
        if !err.trim_end().ends_with("\n1 error") {
            failures.push(format!("{line}\n  want one error, got:\n{err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Every mistake in both keys of one file comes out in one load, each at
/// its own place.
#[test]
fn all_slo_and_baseline_mistakes_are_reported_at_once() {
    let text = r#"name = "p"
environments = ["target"]
slo = { objective = "99.9", sli = "latency", alerts = [
  { burn = 14.4, long = "1h", short = "5m", severity = "page" },
  { burn = -1, long = "6h", short = "30m" },
] }
baseline = { metric = "p(0)", tolerance = "20", min_samples = 0 }

[http]
url = "/health"
"#;
    let dir = tempfile::tempdir().unwrap();
    let err = load_dir(dir.path(), &[("p.toml", text)]).unwrap_err();
    let at = |needle: &str| {
        let (l, c) = position_of(text, needle);
        format!("probes/p.toml:{l}:{c}: error: ")
    };
    for want in [
        format!("{}slo.objective: expected a percentage", at("\"99.9\"")),
        format!(
            "{}slo.sli: a latency SLI needs `threshold`",
            at("\"latency\"")
        ),
        format!(
            "{}slo.alerts[1].burn: expected a burn rate above 0",
            at("-1")
        ),
        "probes/p.toml:5:3: error: slo.alerts[1]: missing required key `severity`".to_owned(),
        format!("{}baseline.metric: expected a percentile", at("\"p(0)\"")),
        format!("{}baseline.tolerance: expected a percentage", at("\"20\"")),
        format!("{}baseline.min_samples: expected at least 1", at("0 }")),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    assert!(err.trim_end().ends_with("\n7 errors"), "{err}");
}

/// `synthmon check` prints the same located errors and exits 2; a good
/// `slo` and `baseline` check clean.
#[test]
fn check_reports_slo_errors_and_passes_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let bad = probe("bad", r#"slo = { objective = "99.9%", windw = "30d" }"#);
    write_config(
        dir.path(),
        &common::config_with_target("http://127.0.0.1:9"),
        &[("bad.toml", &bad)],
    );
    let run = synthmon(dir.path(), &["--config", "config.toml", "check"], &[]);
    run.assert_code(2);
    let (l, c) = position_of(&bad, "windw");
    assert!(
        run.stderr.contains(&format!(
            "probes/bad.toml:{l}:{c}: error: slo.windw: unknown key `windw`"
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("= help: did you mean `window`?"),
        "{}",
        run.stderr
    );

    let dir = tempfile::tempdir().unwrap();
    let good = probe(
        "good",
        "slo = { objective = \"99.9%\" }\nbaseline = { metric = \"p95\", tolerance = \"20%\" }",
    );
    write_config(
        dir.path(),
        &common::config_with_target("http://127.0.0.1:9"),
        &[("good.toml", &good)],
    );
    let run = synthmon(dir.path(), &["--config", "config.toml", "check"], &[]);
    run.assert_code(0);
    assert_eq!(run.stderr, "");
}
