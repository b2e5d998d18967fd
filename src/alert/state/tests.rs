//! The tables that pin the engine's rules: (time, verdict) rows in,
//! notifications out, exactly (the engine is pure, so nothing here waits on a
//! clock); also `depends_on`, `retain`, a restart from a snapshot, what the
//! notifications say, the memory per pair and clamped rules.

use super::*;
use crate::outcome::{AssertionResult, FailureReason, SourceLocation, ThresholdResult};
use AlertKind::{Degraded as Deg, Failing as Fail};
use Notice::{Repeat, Resolve, Trigger};
use std::time::Duration;

/// One step of a table: a run with a verdict, or a tick.
#[derive(Clone, Copy, Debug)]
enum V {
    /// Good run.
    G,
    /// Degraded: a degraded threshold.
    D,
    /// Bad: a failed assertion.
    B,
    /// Bad by a failing threshold alone (the run itself succeeded).
    T,
    /// No run: `Engine::tick`.
    Tick,
}
use V::{B, D, G, T, Tick};

const HOUR: i64 = 3600;

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000 + secs, 0).unwrap()
}

fn secs_of(t: DateTime<Utc>) -> i64 {
    (t - at(0)).num_seconds()
}

fn rules(fire: FireRule, repeat: Option<i64>) -> Rules {
    Rules {
        fire,
        repeat_interval: repeat.map(|s| Duration::from_secs(s as u64)),
        ..Rules::default()
    }
}

fn info(rules: Rules) -> PairInfo {
    PairInfo {
        severity: Severity::Critical,
        labels: BTreeMap::from([("team".to_owned(), "payments".to_owned())]),
        tags: vec!["smoke".to_owned()],
        depends_on: Vec::new(),
        rules,
    }
}

fn outcome(probe: &str, environment: &str, v: V, secs: i64) -> Outcome {
    let threshold = |state| ThresholdResult {
        threshold: "p(99) < 500ms".to_owned(),
        degraded: Some("p(99) < 300ms".to_owned()),
        state,
        observed: Some(if state == State::Failing { 0.612 } else { 0.35 }),
        unit: "seconds",
        window_seconds: 300.0,
        runs: 10,
    };
    let mut o = Outcome {
        probe: probe.to_owned(),
        environment: environment.to_owned(),
        kind: "http",
        run_id: format!("run-{secs}"),
        trace_id: format!("trace-{secs}"),
        span_id: "00f067aa0ba902b7".to_owned(),
        started_at: at(secs).to_rfc3339(),
        success: true,
        reason: None,
        error: None,
        duration: Duration::from_millis(120),
        http: None,
        phases: Vec::new(),
        details: None,
        steps: Vec::new(),
        workload: None,
        responded: true,
        assertions: vec![AssertionResult {
            expression: "status == 200".to_owned(),
            passed: true,
            actual: "status = 200".to_owned(),
            location: Some(SourceLocation {
                file: "probes/api.toml".to_owned(),
                line: 7,
                column: 12,
            }),
        }],
        thresholds: vec![threshold(State::Ok)],
        latency: None,
        kept: Default::default(),
        intended_ms: None,
        artifact: None,
        attempts: 1,
        flaky: false,
        retried: Vec::new(),
    };
    match v {
        G | Tick => {}
        D => o.thresholds = vec![threshold(State::Degraded)],
        B => {
            o.success = false;
            o.reason = Some(FailureReason::Assertion);
            o.assertions[0].passed = false;
            o.assertions[0].actual = "status = 503".to_owned();
        }
        T => o.thresholds = vec![threshold(State::Failing)],
    }
    o
}

/// What a table compares: (secs, probe, notice, kind, sequence).
type Row = (i64, String, Notice, AlertKind, u32);

/// Feeds steps of several pairs (environment `prod`) and returns every
/// notification as a row, checking the invariants every notification
/// keeps on the way.
fn run_pairs(
    engine: &mut Engine,
    infos: &[(&str, PairInfo)],
    steps: &[(i64, &str, V)],
) -> Vec<Row> {
    let mut rows = Vec::new();
    for &(secs, probe, v) in steps {
        let now = at(secs);
        let got = match v {
            Tick => engine.tick(now),
            _ => {
                let info = &infos.iter().find(|(p, _)| *p == probe).unwrap().1;
                engine.observe(&outcome(probe, "prod", v, secs), info, now)
            }
        };
        for n in got {
            assert_eq!(n.at, now);
            assert_eq!(n.ends_at.is_some(), n.notice == Notice::Resolve);
            assert_eq!(n.fingerprint, fingerprint(&n.probe, "prod", n.kind));
            rows.push((secs, n.probe.clone(), n.notice, n.kind, n.sequence));
        }
    }
    rows
}

/// The single-pair table: probe `api` with `rules`.
fn run(
    engine: &mut Engine,
    rules: Rules,
    steps: &[(i64, V)],
) -> Vec<(i64, Notice, AlertKind, u32)> {
    let steps: Vec<(i64, &str, V)> = steps.iter().map(|&(s, v)| (s, "api", v)).collect();
    run_pairs(engine, &[("api", info(rules))], &steps)
        .into_iter()
        .map(|(s, _, n, k, q)| (s, n, k, q))
        .collect()
}

/// Runs every 10 s: `(0, v0), (10, v1), …`.
fn every10(vs: &[V]) -> Vec<(i64, V)> {
    vs.iter()
        .enumerate()
        .map(|(i, v)| (i as i64 * 10, *v))
        .collect()
}

#[test]
fn fires_after_n_consecutive_bad_runs_and_resolves_after_r_goods() {
    let mut e = Engine::new();
    let got = run(
        &mut e,
        rules(FireRule::Consecutive(3), None),
        &every10(&[G, B, B, B, B, G, B, G, G, G]),
    );
    assert_eq!(got, vec![(30, Trigger, Fail, 0), (80, Resolve, Fail, 1)]);
    assert_eq!(e.state("api", "prod"), PairState::Ok);
}

#[test]
fn a_blip_never_fires() {
    let mut e = Engine::new();
    let got = run(
        &mut e,
        rules(FireRule::Consecutive(3), Some(60)),
        &every10(&[G, B, G, B, B, G, T, G, B, B, G, G, Tick]),
    );
    assert_eq!(got, vec![]);
    assert_eq!(e.state("api", "prod"), PairState::Ok);
}

#[test]
fn a_failing_threshold_alone_is_bad() {
    let mut e = Engine::new();
    let got = run(
        &mut e,
        rules(FireRule::Consecutive(2), None),
        &every10(&[T, T, G, G]),
    );
    assert_eq!(got, vec![(10, Trigger, Fail, 0), (30, Resolve, Fail, 1)]);
}

#[test]
fn m_of_k_fires_once_on_flapping_and_resolves_after_r_goods() {
    let mut e = Engine::new();
    let flapping = [B, G, B, G, B, G, B, G, B, G, B, G, G, G];
    let got = run(
        &mut e,
        rules(FireRule::MOfK { m: 3, k: 5 }, None),
        &every10(&flapping),
    );
    assert_eq!(got, vec![(40, Trigger, Fail, 0), (120, Resolve, Fail, 1)]);
}

#[test]
fn m_of_k_does_not_count_runs_of_an_ended_episode() {
    // Without the cut on resolve, the bad run at 50 would be the third
    // bad of the last five and fire at once.
    let mut e = Engine::new();
    let got = run(
        &mut e,
        rules(FireRule::MOfK { m: 3, k: 5 }, None),
        &every10(&[B, B, B, G, G, B, G, B, G, B]),
    );
    assert_eq!(
        got,
        vec![
            (20, Trigger, Fail, 0),
            (40, Resolve, Fail, 1),
            (90, Trigger, Fail, 0)
        ]
    );
}

#[test]
fn repeats_at_the_interval_from_ticks_then_resolves_once() {
    let mut e = Engine::new();
    let got = run(
        &mut e,
        rules(FireRule::Consecutive(3), Some(HOUR)),
        &[
            (0, B),
            (10, B),
            (20, B),
            (30, Tick),
            (HOUR + 19, Tick),
            (HOUR + 20, Tick),
            (HOUR + 21, Tick),
            // A late tick sends one repeat, and the next is due an
            // interval after it.
            (3 * HOUR + 500, Tick),
            (4 * HOUR + 499, Tick),
            (4 * HOUR + 500, Tick),
            (4 * HOUR + 600, G),
            (4 * HOUR + 610, G),
            (4 * HOUR + 620, G),
            (9 * HOUR, Tick),
        ],
    );
    assert_eq!(
        got,
        vec![
            (20, Trigger, Fail, 0),
            (HOUR + 20, Repeat, Fail, 1),
            (3 * HOUR + 500, Repeat, Fail, 2),
            (4 * HOUR + 500, Repeat, Fail, 3),
            (4 * HOUR + 610, Resolve, Fail, 4),
        ]
    );
}

#[test]
fn repeats_come_from_runs_too() {
    let mut e = Engine::new();
    let got = run(
        &mut e,
        rules(FireRule::Consecutive(3), Some(60)),
        &every10(&[B, B, B, B, B, B, B, B, B, B, B, B, B, B, G, G]),
    );
    assert_eq!(
        got,
        vec![
            (20, Trigger, Fail, 0),
            (80, Repeat, Fail, 1),
            (140, Repeat, Fail, 2),
            (150, Resolve, Fail, 3),
        ]
    );
}

#[test]
fn exactly_one_resolve() {
    let mut e = Engine::new();
    let got = run(
        &mut e,
        rules(FireRule::Consecutive(1), Some(60)),
        &[
            (0, B),
            (10, G),
            (20, G),
            (30, G),
            (40, Tick),
            (200, Tick),
            (210, G),
            (220, G),
        ],
    );
    assert_eq!(got, vec![(0, Trigger, Fail, 0), (20, Resolve, Fail, 1)]);
    assert_eq!(e.retain(|_, _| false, at(300)), vec![]);
}

#[test]
fn degraded_is_its_own_alert() {
    let mut e = Engine::new();
    let got = run(
        &mut e,
        rules(FireRule::Consecutive(3), Some(HOUR)),
        &[
            (0, D),
            (10, G),
            (20, D),
            (30, D),
            (40, D),
            (50, D),
            (60, G),
            (70, D),
            (80, G),
            (90, G),
        ],
    );
    assert_eq!(got, vec![(40, Trigger, Deg, 0), (90, Resolve, Deg, 1)]);

    // Bad runs count toward degraded when they do not make it fail.
    let mut e = Engine::new();
    let got = run(
        &mut e,
        rules(FireRule::Consecutive(3), None),
        &every10(&[B, B, D, G, G]),
    );
    assert_eq!(got, vec![(20, Trigger, Deg, 0), (40, Resolve, Deg, 1)]);
}

#[test]
fn degraded_escalates_to_failing_and_steps_back_down() {
    let mut e = Engine::new();
    let r = rules(FireRule::Consecutive(3), None);
    let got = run(
        &mut e,
        r.clone(),
        &every10(&[D, D, D, B, B, B, D, D, G, D, G, G, G]),
    );
    assert_eq!(
        got,
        vec![
            (20, Trigger, Deg, 0),
            (50, Resolve, Deg, 1),
            (50, Trigger, Fail, 0),
            // Two runs without a failure end failing; they were
            // degraded, so the pair is degraded, not ok.
            (70, Resolve, Fail, 1),
            (70, Trigger, Deg, 0),
            (110, Resolve, Deg, 1),
        ]
    );

    // Stepping down needs a degraded run among the last r; otherwise
    // failing resolves straight to ok. A degraded then a good run step
    // down, and one more good run resolves.
    let mut e = Engine::new();
    let got = run(&mut e, r.clone(), &every10(&[B, B, B, D, G, G]));
    assert_eq!(
        got,
        vec![
            (20, Trigger, Fail, 0),
            (40, Resolve, Fail, 1),
            (40, Trigger, Deg, 0),
            (50, Resolve, Deg, 1),
        ]
    );
    let mut e = Engine::new();
    let got = run(&mut e, r, &every10(&[B, B, B, G, G]));
    assert_eq!(got, vec![(20, Trigger, Fail, 0), (40, Resolve, Fail, 1)]);
}

#[test]
fn a_degraded_run_never_resolves_failing_to_ok() {
    let mut e = Engine::new();
    let got = run(
        &mut e,
        Rules {
            resolve_after: 3,
            ..rules(FireRule::Consecutive(2), None)
        },
        &every10(&[B, B, G, G, B, G, D, G, G, G, G]),
    );
    // Two goods (20, 30) are fewer than r = 3. Good, degraded, good
    // (50-70) end failing, but only as far as degraded; the goods at 70,
    // 80 and 90 resolve that.
    assert_eq!(
        got,
        vec![
            (10, Trigger, Fail, 0),
            (70, Resolve, Fail, 1),
            (70, Trigger, Deg, 0),
            (90, Resolve, Deg, 1),
        ]
    );
}

#[test]
fn without_notify_degraded_the_state_moves_silently() {
    let mut e = Engine::new();
    let r = Rules {
        notify_degraded: false,
        ..rules(FireRule::Consecutive(2), Some(60))
    };
    let got = run(&mut e, r.clone(), &every10(&[D, D, D]));
    assert_eq!(got, vec![]);
    assert_eq!(e.state("api", "prod"), PairState::Degraded);
    let got = run(
        &mut e,
        r,
        &[
            (100, B),
            (110, B),
            (120, D),
            (130, D),
            (200, Tick),
            (210, G),
            (220, G),
        ],
    );
    assert_eq!(got, vec![(110, Trigger, Fail, 0), (130, Resolve, Fail, 1)]);
    assert_eq!(e.state("api", "prod"), PairState::Ok);
}

fn with_dependency(r: Rules) -> Vec<(&'static str, PairInfo)> {
    vec![
        ("health", info(r.clone())),
        (
            "api",
            PairInfo {
                depends_on: vec!["health".to_owned()],
                ..info(r)
            },
        ),
    ]
}

fn row(secs: i64, probe: &str, notice: Notice, kind: AlertKind, seq: u32) -> Row {
    (secs, probe.to_owned(), notice, kind, seq)
}

#[test]
fn depends_on_holds_back_until_the_dependency_recovers() {
    let mut e = Engine::new();
    let infos = with_dependency(rules(FireRule::Consecutive(2), Some(HOUR)));
    let got = run_pairs(
        &mut e,
        &infos,
        &[
            (0, "health", B),
            (10, "health", B),
            (20, "api", B),
            (30, "api", B),
            (40, "api", B),
            (2 * HOUR, "", Tick),
            (2 * HOUR + 10, "health", G),
            // The dependency's recovering run releases the held Trigger.
            (2 * HOUR + 20, "health", G),
            (2 * HOUR + 30, "api", B),
            (3 * HOUR + 20, "", Tick),
            (3 * HOUR + 30, "api", G),
            (3 * HOUR + 40, "api", G),
        ],
    );
    assert_eq!(
        got,
        vec![
            row(10, "health", Trigger, Fail, 0),
            row(2 * HOUR, "health", Repeat, Fail, 1),
            row(2 * HOUR + 20, "health", Resolve, Fail, 2),
            row(2 * HOUR + 20, "api", Trigger, Fail, 0),
            row(3 * HOUR + 20, "api", Repeat, Fail, 1),
            row(3 * HOUR + 40, "api", Resolve, Fail, 2),
        ]
    );
}

#[test]
fn a_released_trigger_keeps_its_original_start() {
    let mut e = Engine::new();
    let infos = with_dependency(rules(FireRule::Consecutive(2), None));
    let info_of = |probe: &str| &infos.iter().find(|(p, _)| *p == probe).unwrap().1;
    let mut sent = Vec::new();
    for (secs, probe, v) in [
        (0, "health", B),
        (10, "health", B),
        (20, "api", B),
        (30, "api", B),
        (40, "health", G),
        (50, "health", G),
    ] {
        sent = e.observe(&outcome(probe, "prod", v, secs), info_of(probe), at(secs));
    }
    let api = sent.iter().find(|n| n.probe == "api").unwrap();
    assert_eq!(
        (api.notice, api.starts_at, api.at),
        (Trigger, at(30), at(50))
    );
    assert_eq!((api.sequence, api.run_id.as_str()), (0, "run-30"));
}

#[test]
fn depends_on_never_sends_an_episode_that_recovered_while_held() {
    let mut e = Engine::new();
    let infos = with_dependency(rules(FireRule::Consecutive(2), Some(60)));
    let got = run_pairs(
        &mut e,
        &infos,
        &[
            (0, "health", B),
            (10, "health", B),
            (20, "api", B),
            (30, "api", B),
            (40, "api", G),
            (50, "api", G),
            (60, "health", G),
            (70, "health", G),
            (200, "", Tick),
        ],
    );
    assert_eq!(
        got,
        vec![
            row(10, "health", Trigger, Fail, 0),
            row(70, "health", Resolve, Fail, 1),
        ]
    );
    assert_eq!(e.state("api", "prod"), PairState::Ok);
}

#[test]
fn depends_on_holds_repeats_of_an_announced_alert_but_not_its_resolve() {
    let mut e = Engine::new();
    let infos = with_dependency(rules(FireRule::Consecutive(2), Some(100)));
    let got = run_pairs(
        &mut e,
        &infos,
        &[
            (0, "api", B),
            (10, "api", B),
            (20, "health", B),
            (30, "health", B),
            (200, "", Tick),
            (210, "api", G),
            (220, "api", G),
        ],
    );
    assert_eq!(
        got,
        vec![
            row(10, "api", Trigger, Fail, 0),
            row(30, "health", Trigger, Fail, 0),
            row(200, "health", Repeat, Fail, 1),
            row(220, "api", Resolve, Fail, 1),
        ]
    );
}

#[test]
fn depends_on_is_per_environment_and_ignores_itself() {
    let mut e = Engine::new();
    let r = rules(FireRule::Consecutive(1), None);
    let health = info(r.clone());
    let api = PairInfo {
        depends_on: vec!["health".to_owned(), "api".to_owned()],
        ..info(r)
    };
    assert_eq!(
        e.observe(&outcome("health", "staging", B, 0), &health, at(0))
            .len(),
        1
    );
    let got = e.observe(&outcome("api", "prod", B, 10), &api, at(10));
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].notice, got[0].environment.as_str()),
        (Trigger, "prod")
    );
}

#[test]
fn retain_resolves_removed_pairs_and_releases_their_dependents() {
    let mut e = Engine::new();
    let infos = with_dependency(rules(FireRule::Consecutive(1), None));
    let got = run_pairs(&mut e, &infos, &[(0, "health", B), (10, "api", B)]);
    assert_eq!(got, vec![row(0, "health", Trigger, Fail, 0)]);
    let got = e.retain(|probe, _| probe != "health", at(20));
    let rows: Vec<_> = got
        .iter()
        .map(|n| (secs_of(n.at), n.probe.as_str(), n.notice, n.sequence))
        .collect();
    assert_eq!(
        rows,
        vec![(20, "health", Resolve, 1), (20, "api", Trigger, 0)]
    );
    assert_eq!(
        got[0].summary,
        "health @ prod is no longer failing: removed from the configuration"
    );
    assert_eq!(got[0].ends_at, Some(at(20)));
    assert_eq!(got[0].run_id, "run-0");
    assert_eq!(got[1].starts_at, at(10));
    assert_eq!(e.state("health", "prod"), PairState::Ok);

    // Removing a pair whose alert was held back sends nothing.
    let mut e = Engine::new();
    run_pairs(&mut e, &infos, &[(0, "health", B), (10, "api", B)]);
    let got = e.retain(|probe, _| probe != "api", at(20));
    assert_eq!(got, vec![]);
    assert_eq!(e.state("api", "prod"), PairState::Ok);
    assert_eq!(e.state("health", "prod"), PairState::Failing);
}

#[test]
fn a_restart_neither_pages_again_nor_forgets_to_resolve() {
    let r = rules(FireRule::Consecutive(3), Some(HOUR));
    let mut e = Engine::new();
    let got = run(&mut e, r.clone(), &every10(&[B, B, B, B]));
    assert_eq!(got, vec![(20, Trigger, Fail, 0)]);

    let json = serde_json::to_string(&e.snapshot()).unwrap();
    let snapshot: EngineSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(snapshot, e.snapshot());
    let mut e = Engine::restore(snapshot);
    assert_eq!(e.state("api", "prod"), PairState::Failing);
    // The ring survived too: one good run is not enough.
    let got = run(
        &mut e,
        r,
        &[
            (100, B),
            (200, G),
            (300, B),
            (HOUR + 20, Tick),
            (HOUR + 30, G),
            (HOUR + 40, G),
        ],
    );
    assert_eq!(
        got,
        vec![(HOUR + 20, Repeat, Fail, 1), (HOUR + 40, Resolve, Fail, 2)]
    );

    // A snapshot of another layout version starts empty.
    let mut other = Engine::new().snapshot();
    other.version += 1;
    assert_eq!(Engine::restore(other).snapshot().pairs, vec![]);
}

#[test]
fn notifications_describe_the_run_that_counts() {
    let mut e = Engine::new();
    let r = rules(FireRule::Consecutive(2), Some(HOUR));
    let i = info(r);
    let mut got = Vec::new();
    for (secs, v) in [(0, B), (10, B), (20, G), (30, B), (40, G), (50, G)] {
        got.extend(e.observe(&outcome("api", "prod", v, secs), &i, at(secs)));
    }
    let [trigger, resolve] = got.as_slice() else {
        panic!("{got:#?}")
    };
    assert_eq!(
        trigger,
        &Notification {
            fingerprint: fingerprint("api", "prod", AlertKind::Failing),
            notice: Trigger,
            kind: AlertKind::Failing,
            probe: "api".to_owned(),
            environment: "prod".to_owned(),
            severity: Severity::Critical,
            labels: BTreeMap::from([("team".to_owned(), "payments".to_owned())]),
            tags: vec!["smoke".to_owned()],
            starts_at: at(10),
            ends_at: None,
            expires_at: Some("2025-06-15T18:06:50Z".parse().unwrap()),
            at: at(10),
            sequence: 0,
            summary: "api @ prod is failing: assertion: status == 200 (status = 503)".to_owned(),
            reason: Some("assertion".to_owned()),
            error: None,
            failed_checks: vec![FailedCheck {
                expression: "status == 200".to_owned(),
                actual: "status = 503".to_owned(),
                location: Some("probes/api.toml:7:12".to_owned()),
            }],
            thresholds: vec![],
            run_id: "run-10".to_owned(),
            trace_id: "trace-10".to_owned(),
            artifact_url: None,
        }
    );
    assert_eq!(
        trigger.idempotency_key(),
        format!(
            "{}-{}-trigger-0",
            trigger.fingerprint,
            at(10).timestamp_millis()
        )
    );
    assert_eq!(resolve.summary, "api @ prod is no longer failing");
    assert_eq!(
        (resolve.starts_at, resolve.ends_at, resolve.at),
        (at(10), Some(at(50)), at(50))
    );
    assert_eq!(
        (
            resolve.run_id.as_str(),
            resolve.reason.clone(),
            resolve.failed_checks.len()
        ),
        ("run-50", None, 0)
    );

    // A Repeat describes the latest bad run, not a good run in between.
    let mut e = Engine::new();
    for (secs, v) in [(0, B), (10, B), (20, B), (30, G)] {
        e.observe(&outcome("api", "prod", v, secs), &i, at(secs));
    }
    let repeat = e.tick(at(HOUR + 10));
    assert_eq!(repeat.len(), 1);
    assert_eq!(
        (repeat[0].notice, repeat[0].run_id.as_str()),
        (Repeat, "run-20")
    );
}

#[test]
fn threshold_and_degraded_content() {
    let mut e = Engine::new();
    let i = info(rules(FireRule::Consecutive(1), None));
    let got = e.observe(&outcome("api", "prod", T, 0), &i, at(0));
    assert_eq!(
        got[0].summary,
        "api @ prod is failing: p(99) < 500ms breached (observed 612.0ms)"
    );
    assert_eq!(
        got[0].thresholds,
        vec![ThresholdBreach {
            threshold: "p(99) < 500ms".to_owned(),
            state: "failing".to_owned(),
            observed: Some(0.612),
            unit: "seconds".to_owned(),
            window_seconds: 300.0,
        }]
    );

    // A degraded alert warns whatever the probe's severity, and names
    // the degraded condition that was crossed.
    let mut e = Engine::new();
    let got = e.observe(&outcome("api", "prod", D, 0), &i, at(0));
    assert_eq!(got.len(), 1);
    let n = &got[0];
    assert_eq!(
        (n.kind, n.severity),
        (AlertKind::Degraded, Severity::Warning)
    );
    assert_eq!(
        n.summary,
        "api @ prod is degraded: p(99) < 300ms breached (observed 350.0ms)"
    );
    assert_eq!(n.thresholds[0].threshold, "p(99) < 300ms");
    assert_eq!(n.thresholds[0].state, "degraded");

    // An error without a failed check is the detail (its first line).
    let mut o = outcome("api", "prod", G, 10);
    o.success = false;
    o.reason = Some(FailureReason::Timeout);
    o.error = Some("deadline of 10s passed\nwhile reading the body".to_owned());
    let got = Engine::new().observe(&o, &i, at(10));
    assert_eq!(
        got[0].summary,
        "api @ prod is failing: timeout: deadline of 10s passed"
    );
    assert_eq!(
        describe_breach(&ThresholdBreach {
            threshold: "error_rate < 1%".to_owned(),
            state: "failing".to_owned(),
            observed: Some(0.05),
            unit: "ratio".to_owned(),
            window_seconds: 300.0,
        }),
        "error_rate < 1% breached (observed 5.00%)"
    );
}

#[test]
fn memory_is_a_small_ring_per_pair() {
    for (fire, resolve_after, cap) in [
        (FireRule::Consecutive(3), 2, 3),
        (FireRule::MOfK { m: 3, k: 5 }, 2, 5),
        (FireRule::Consecutive(2), 4, 4),
    ] {
        let mut e = Engine::new();
        let r = Rules {
            resolve_after,
            ..rules(fire, Some(60))
        };
        let steps: Vec<(i64, V)> = (0..1000)
            .map(|i| (i * 10, [B, G, D, B, B, G][i as usize % 6]))
            .collect();
        run(&mut e, r, &steps);
        let snapshot = e.snapshot();
        assert_eq!(snapshot.pairs.len(), 1);
        assert!(snapshot.pairs[0].verdicts.len() <= cap, "{fire:?}");
    }
}

#[test]
fn degenerate_rules_are_clamped() {
    let mut e = Engine::new();
    let r = Rules {
        resolve_after: 0,
        ..rules(FireRule::MOfK { m: 0, k: 0 }, Some(0))
    };
    let got = run(&mut e, r, &every10(&[G, B, B, G, Tick]));
    assert_eq!(got, vec![(10, Trigger, Fail, 0), (30, Resolve, Fail, 1)]);
    let got = run(&mut e, rules(FireRule::Consecutive(0), None), &[(100, B)]);
    assert_eq!(got, vec![(100, Trigger, Fail, 0)]);
}

/// A maintenance window or silence over `api`: steps `(secs, V)` before
/// `opens`, between and from `closes` on, with the pair held in between
/// (the daemon recomputes holds before every run and tick).
fn run_held(
    rules: Rules,
    steps: &[(i64, V)],
    opens: i64,
    closes: i64,
) -> Vec<(i64, Notice, AlertKind, u32)> {
    let mut e = Engine::new();
    let info = info(rules);
    let mut out = Vec::new();
    for &(secs, v) in steps {
        e.hold("api", "prod", (opens..closes).contains(&secs));
        let now = at(secs);
        let got = match v {
            Tick => e.tick(now),
            _ => e.observe(&outcome("api", "prod", v, secs), &info, now),
        };
        out.extend(got.into_iter().map(|n| {
            assert_eq!(n.fingerprint, fingerprint("api", "prod", n.kind));
            (secs, n.notice, n.kind, n.sequence)
        }));
    }
    out
}

#[test]
fn a_failing_pair_in_a_maintenance_window_sends_nothing_then_pages_once_after_it() {
    // Held from 0 s to 100 s; failing from the first run, repeats every 30 s.
    let steps = every10(&[
        B, B, B, Tick, B, B, Tick, B, B, B, Tick, B, Tick, Tick, Tick,
    ]);
    let got = run_held(rules(FireRule::Consecutive(3), Some(30)), &steps, 0, 100);
    // The window closes at 100 s: the tick then sends the held Trigger,
    // once (its start is the run that began the episode), and Repeats
    // follow at the interval from it.
    assert_eq!(got, vec![(100, Trigger, Fail, 0), (130, Repeat, Fail, 1)]);
}

#[test]
fn a_released_trigger_after_a_window_keeps_the_episode_start() {
    let mut e = Engine::new();
    let info = info(rules(FireRule::Consecutive(2), None));
    e.set_held(BTreeSet::from([("api".to_owned(), "prod".to_owned())]));
    assert!(
        e.observe(&outcome("api", "prod", B, 0), &info, at(0))
            .is_empty()
    );
    assert!(
        e.observe(&outcome("api", "prod", B, 10), &info, at(10))
            .is_empty()
    );
    assert!(e.tick(at(20)).is_empty());
    assert_eq!(
        e.state("api", "prod"),
        PairState::Failing,
        "state is tracked while held"
    );
    e.set_held(BTreeSet::new());
    let got = e.tick(at(30));
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].notice, secs_of(got[0].starts_at)), (Trigger, 10));
    assert!(e.tick(at(40)).is_empty(), "one page, not one per tick");
}

#[test]
fn a_failure_that_began_and_ended_inside_a_window_never_pages() {
    let steps = every10(&[G, B, B, B, Tick, G, G, Tick, G, Tick, Tick]);
    let got = run_held(rules(FireRule::Consecutive(3), Some(30)), &steps, 0, 80);
    assert_eq!(got, vec![], "nothing during the window, nothing after it");
}

#[test]
fn a_window_holds_the_repeats_of_an_alert_announced_before_it_but_not_its_resolve() {
    // Fires at 20 s, the window opens at 30 s; it recovers inside.
    let steps = every10(&[B, B, B, Tick, Tick, Tick, B, G, G, Tick, Tick]);
    let got = run_held(rules(FireRule::Consecutive(3), Some(20)), &steps, 30, 200);
    assert_eq!(got, vec![(20, Trigger, Fail, 0), (80, Resolve, Fail, 1)]);
}

#[test]
fn a_held_pair_holds_its_slo_burn_alert_until_released() {
    let mut e = Engine::new();
    let info = info(rules(FireRule::Consecutive(1), None));
    let report = |firing| BurnReport {
        probe: "api",
        environment: "prod",
        kind: AlertKind::SloPage,
        firing,
        detail: "burns".to_owned(),
        info: &info,
    };
    e.hold("api", "prod", true);
    assert!(e.observe_burn(&report(true), at(0)).is_empty());
    assert!(e.tick(at(10)).is_empty());
    e.hold("api", "prod", false);
    let got = e.tick(at(20));
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].notice, got[0].kind), (Trigger, AlertKind::SloPage));
}

#[test]
fn the_offline_alert_fires_once_resolves_once_and_outlives_reloads() {
    let mut e = Engine::new();
    let info = info(rules(FireRule::Consecutive(1), Some(3600)));
    let offline = |e: &mut Engine, on: bool, secs| {
        e.observe_offline(
            on,
            "eu-west",
            "every self-check target fails".into(),
            &info,
            at(secs),
        )
    };
    let got = offline(&mut e, true, 0);
    assert_eq!(got.len(), 1);
    let n = &got[0];
    assert_eq!(
        (n.notice, n.kind, n.severity),
        (Trigger, AlertKind::MonitorOffline, Severity::Critical)
    );
    assert_eq!(
        n.fingerprint,
        fingerprint("synthmon", "eu-west", AlertKind::MonitorOffline)
    );
    assert_eq!(n.reason.as_deref(), Some("monitor_offline"));
    assert_eq!(
        n.summary,
        "synthmon (eu-west): every self-check target fails"
    );
    // Held pairs do not hold it; a reload's retain keeps it.
    e.set_held(BTreeSet::from([(
        "synthmon".to_owned(),
        "eu-west".to_owned(),
    )]));
    assert!(offline(&mut e, true, 10).is_empty());
    assert!(e.retain_burns(|_, _| false, at(20)).is_empty());
    assert!(e.tick(at(30)).is_empty());
    let got = offline(&mut e, false, 40);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].notice, got[0].sequence), (Resolve, 1));
    assert!(offline(&mut e, false, 50).is_empty());
}
