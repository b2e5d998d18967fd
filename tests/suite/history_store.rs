//! The run history's SQLite file on its own (issue 15): what `History`
//! writes comes back through `Reader` (runs newest first, exact minute
//! counts, percentiles within the histogram's precision); hourly roll-ups
//! equal their minutes and a window over hours and minutes counts each run
//! once; retention on an accelerated clock drops old runs and minutes and
//! keeps hours; three simulated days for 50 series keep the file bounded;
//! a foreign, garbage, damaged or newer file is refused by name and left
//! alone; a disk that refuses writes is counted, never a panic.
//!
//! Every file is a real SQLite file in a temp directory; time is chosen
//! (outcomes carry RFC 3339 starts in 2024, the writer's clock is a
//! counter the test moves), never waited for.

use rand::RngCore;
use rand::SeedableRng;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use synthmon::history::store::{self, FILE, Tallies, Writer};
use synthmon::history::{History, Reader, Retention, Transition, Verdict};
use synthmon::outcome::{
    FailureReason, HttpFacts, HttpPhases, Latencies, Outcome, ThresholdResult,
};
use synthmon::tagging::RunIds;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
const FLUSH: Duration = Duration::from_secs(10);

/// 2024-03-01T00:00:00Z: an hour (and day) boundary, in Unix ms.
fn t0() -> i64 {
    chrono::DateTime::parse_from_rfc3339("2024-03-01T00:00:00Z")
        .unwrap()
        .timestamp_millis()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An HTTP run of `probe` in `env` started at `at_ms` that took
/// `latency`: passed with status 200, or failed with status 500.
fn outcome(probe: &str, env: &str, at_ms: i64, passed: bool, latency: Duration) -> Outcome {
    let mut o = Outcome::new(probe, env, "http", &RunIds::generate());
    o.started_at = rfc3339(at_ms);
    o.duration = latency;
    o.responded = true;
    o.success = passed;
    o.http = Some(HttpFacts {
        method: "GET".to_owned(),
        url: "http://127.0.0.1:9/health".to_owned(),
        status: Some(if passed { 200 } else { 500 }),
        redirects: 0,
        phases: HttpPhases::default(),
        body_bytes: 2,
        tls: false,
        tls_earliest_cert_expiry: None,
        version: Some("1.1"),
    });
    if !passed {
        o.fail(FailureReason::Status, "expected a 2xx status, got 500");
    }
    o
}

/// `o` with a degraded threshold (it passed, but not well).
fn degraded(mut o: Outcome) -> Outcome {
    o.thresholds.push(ThresholdResult {
        threshold: "p(95) < 50ms".to_owned(),
        degraded: Some("p(95) < 20ms".to_owned()),
        state: synthmon::threshold::State::Degraded,
        observed: Some(0.03),
        unit: "seconds",
        window_seconds: 300.0,
        runs: 10,
    });
    o
}

/// A clock the test moves: the writer's roll-ups and retention read it.
fn clock(start: i64) -> (Arc<AtomicI64>, synthmon::history::writer::Clock) {
    let now = Arc::new(AtomicI64::new(start));
    let read = now.clone();
    (now, Arc::new(move || read.load(Ordering::SeqCst)))
}

fn count(db: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(2)).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// The error and its causes as one line, as the daemon logs it.
fn chain(e: &store::Error) -> String {
    synthmon::net::error::describe(e)
}

// ---------------------------------------------------------------------------
// Runs, minutes, percentiles
// ---------------------------------------------------------------------------

#[test]
fn runs_come_back_newest_first_with_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path(), Retention::default()).unwrap();
    let t = t0() + 10 * MIN;
    let first = outcome("api", "prod", t, true, Duration::from_micros(12_345));
    let mut second = outcome("api", "prod", t + 61_000, false, Duration::from_millis(800));
    second.intended_ms = Some(t + 60_000);
    let third = degraded(outcome(
        "api",
        "prod",
        t + 125_500,
        true,
        Duration::from_millis(30),
    ));
    // Another pair, and a flow step's rows, must not show among api@prod's runs.
    let other = outcome("api", "staging", t + 30_000, true, Duration::from_millis(5));
    let mut flow = outcome("api", "prod", t + 90_000, true, Duration::from_millis(40));
    let mut step = synthmon::outcome::StepOutcome::new("login", synthmon::outcome::Stage::Step);
    step.success = true;
    step.responded = true;
    step.duration = Duration::from_millis(15);
    step.span_id = "00f067aa0ba902b7".to_owned();
    step.offset = Duration::from_millis(3);
    flow.steps.push(step);
    for o in [&first, &second, &third, &other, &flow] {
        h.record(o);
    }
    h.flush_blocking(FLUSH);
    assert_eq!(
        h.health()
            .written_runs
            .load(std::sync::atomic::Ordering::Relaxed),
        6,
        "five runs and one flow step"
    );
    let reader = h.reader();
    let runs = reader.runs("api", "prod", i64::MIN, i64::MAX, 100).unwrap();
    let starts: Vec<i64> = runs.iter().map(|r| r.started_ms).collect();
    assert_eq!(
        starts,
        [t + 125_500, t + 90_000, t + 61_000, t],
        "newest first"
    );
    assert!(runs.iter().all(|r| r.step.is_empty()), "{runs:#?}");

    let r = &runs[3];
    assert_eq!((r.probe.as_str(), r.environment.as_str()), ("api", "prod"));
    assert_eq!(r.duration_us, 12_345);
    assert_eq!(r.result, Verdict::Pass);
    assert_eq!(r.status, Some(200));
    assert_eq!((r.reason.as_deref(), r.error.as_deref()), (None, None));
    assert_eq!(r.intended_ms, t, "no intended time: the start");
    assert_eq!(r.run_id, first.run_id);
    assert_eq!(r.trace_id, first.trace_id);
    assert_eq!(r.attempts, 1);

    let r = &runs[2];
    assert_eq!(r.result, Verdict::Fail);
    assert_eq!(r.status, Some(500));
    assert_eq!(r.reason.as_deref(), Some("status"));
    assert_eq!(r.error.as_deref(), Some("expected a 2xx status, got 500"));
    assert_eq!(r.intended_ms, t + 60_000);
    assert_eq!(r.duration_us, 800_000);
    assert_eq!(runs[0].result, Verdict::Degraded);

    // The range is [since, until) and the limit keeps the newest.
    let some = reader.runs("api", "prod", t, t + 90_000, 10).unwrap();
    assert_eq!(
        some.iter().map(|r| r.started_ms).collect::<Vec<_>>(),
        [t + 61_000, t]
    );
    let newest = reader.runs("api", "prod", i64::MIN, i64::MAX, 1).unwrap();
    assert_eq!(newest[0].started_ms, t + 125_500);
    assert_eq!(
        reader
            .runs("api", "staging", i64::MIN, i64::MAX, 10)
            .unwrap()
            .len(),
        1
    );
    assert!(
        reader
            .runs("nope", "prod", i64::MIN, i64::MAX, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        reader.pairs().unwrap(),
        [
            ("api".to_owned(), "prod".to_owned()),
            ("api".to_owned(), "staging".to_owned())
        ]
    );
    // The flow step has a series of its own, started at its offset.
    let w = reader
        .window(("api", "prod", "login"), t, t + 10 * MIN, true)
        .unwrap();
    assert_eq!((w.runs, w.failed), (1, 0));
    let p100 = w.latencies.percentile(100.0).unwrap();
    assert!(
        p100 >= Duration::from_millis(15) && p100 <= Duration::from_micros(15_150),
        "{p100:?}"
    );
    h.close();
}

#[test]
fn minute_rows_give_exact_counts_and_percentiles_within_the_histograms_precision() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path(), Retention::default()).unwrap();
    let m1 = t0() + 5 * MIN;
    let m2 = m1 + MIN;
    // 100 passing runs of 1..=100 ms (every tenth degraded): 1..=50 in the
    // first minute, 51..=100 in the second; 7 failures in the second,
    // whose latencies are not samples. Committed in two batches, so the
    // second minute is added to what the first batch stored.
    let run = |i: i64| {
        let at = if i <= 50 {
            m1 + i * 1000
        } else {
            m2 + (i - 50) * 1000
        };
        let o = outcome("api", "prod", at, true, Duration::from_millis(i as u64));
        if i % 10 == 0 { degraded(o) } else { o }
    };
    for i in 1..=60 {
        h.record(&run(i));
    }
    h.flush_blocking(FLUSH);
    for i in 61..=100 {
        h.record(&run(i));
    }
    for k in 0..7 {
        h.record(&outcome(
            "api",
            "prod",
            m2 + 55_000 + k * 100,
            false,
            Duration::from_secs(5),
        ));
    }
    h.flush_blocking(FLUSH);
    let reader = h.reader();

    let w = reader
        .window(("api", "prod", ""), m1, m2 + MIN, true)
        .unwrap();
    assert_eq!((w.runs, w.failed, w.degraded), (107, 7, 10));
    assert_eq!(
        w.latencies.len(),
        100,
        "failed runs are not latency samples"
    );
    let p = |w: &synthmon::history::Window, q: f64| w.latencies.percentile(q).unwrap();
    // Nearest rank over 1..=100 ms: p95 = 95 ms, p50 = 50 ms, p99 = 99 ms;
    // a stored snapshot reads a bucket's highest value (2 significant
    // digits: within 1 % above).
    for (q, ms) in [(95.0, 95u64), (50.0, 50), (99.0, 99), (100.0, 100)] {
        let got = p(&w, q);
        let exact = Duration::from_millis(ms);
        assert!(
            got >= exact && got <= exact + exact / 100,
            "p{q}: {got:?} for {exact:?}"
        );
    }

    // One minute alone.
    let first = reader.window(("api", "prod", ""), m1, m2, true).unwrap();
    assert_eq!((first.runs, first.failed, first.degraded), (50, 0, 5));
    let p95 = p(&first, 95.0);
    assert!(
        p95 >= Duration::from_millis(48) && p95 <= Duration::from_micros(48_480),
        "{p95:?}"
    );
    let second = reader
        .window(("api", "prod", ""), m2, m2 + MIN, false)
        .unwrap();
    assert_eq!((second.runs, second.failed, second.degraded), (57, 7, 5));
    assert!(second.latencies.is_empty(), "latencies not asked for");
    // Nothing before or after.
    let before = reader
        .window(("api", "prod", ""), m1 - HOUR, m1, true)
        .unwrap();
    assert_eq!((before.runs, before.latencies.len()), (0, 0));
    let unknown = reader
        .window(("nope", "prod", ""), m1, m2 + MIN, true)
        .unwrap();
    assert_eq!(unknown.runs, 0);
    h.close();
}

/// Writes minute `m` (Unix minutes) of `series` with the tallies of `f(m)`.
fn write_minutes(
    w: &mut Writer,
    series: (&str, &str, &str),
    minutes: impl Iterator<Item = i64>,
    f: impl Fn(i64) -> Tallies,
) {
    let mut batch = w.batch().unwrap();
    for m in minutes {
        batch.minute(series, m, &f(m)).unwrap();
    }
    batch.commit().unwrap();
}

/// A minute's tallies that vary with the minute: 10–16 runs, 0–2
/// failures, 0–1 degraded, one latency sample per passing run.
fn varied(m: i64) -> Tallies {
    let runs = 10 + m.rem_euclid(7) as u64;
    let failed = m.rem_euclid(3) as u64;
    let mut latencies = Latencies::default();
    for k in 0..runs - failed {
        latencies.record(Duration::from_millis(1 + (m.rem_euclid(50) as u64) + k));
    }
    Tallies {
        runs,
        failed,
        degraded: m.rem_euclid(2) as u64,
        latencies,
    }
}

/// A window reads the minutes around its rolled hours, not every minute:
/// counts alone agree with the full read, and an hour with no row inside
/// the rolled ones (the roll-up goes oldest first, so only a damaged file
/// has one) is still counted from its minutes.
#[test]
fn a_window_reads_minutes_only_around_its_hours_and_falls_back_on_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(FILE);
    let mut w = Writer::open(dir.path()).unwrap();
    let m0 = store::minute_of(t0());
    let h0 = m0 / 60;
    let series = ("api", "prod", "");
    write_minutes(&mut w, series, m0..m0 + 180, varied);
    let sum = |from: i64, to: i64| {
        (from..to).fold((0u64, 0u64, 0u64), |acc, m| {
            let t = varied(m);
            (acc.0 + t.runs, acc.1 + t.failed, acc.2 + t.degraded)
        })
    };
    while w.roll_up(m0 + 125, 5).unwrap() {}
    assert_eq!(count(&db, "SELECT count(*) FROM hours"), 2);
    let reader = Reader::open(dir.path()).unwrap();
    let tally = |from: i64, to: i64, latencies: bool| {
        let got = reader
            .window(series, from * MIN, to * MIN, latencies)
            .unwrap();
        (got.runs, got.failed, got.degraded)
    };
    for (from, to) in [(m0 + 30, m0 + 150), (m0, m0 + 180), (m0 + 59, m0 + 61)] {
        assert_eq!(tally(from, to, false), sum(from, to), "{from}..{to}");
        assert_eq!(tally(from, to, true), sum(from, to), "{from}..{to}");
    }
    // The first hour's row gone, the second's kept: a gap before it.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("DELETE FROM hours WHERE hour = ?1", [h0])
        .unwrap();
    drop(conn);
    assert_eq!(tally(m0, m0 + 180, false), sum(m0, m0 + 180));
}

#[test]
fn roll_ups_equal_their_minutes_and_a_window_counts_each_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(FILE);
    let mut w = Writer::open(dir.path()).unwrap();
    let m0 = store::minute_of(t0());
    let h0 = m0 / 60;
    let series = ("api", "prod", "");
    // Three hours of minutes.
    write_minutes(&mut w, series, m0..m0 + 180, varied);
    let sum = |from: i64, to: i64| {
        (from..to).fold((0u64, 0u64, 0u64, 0u64), |acc, m| {
            let t = varied(m);
            (
                acc.0 + t.runs,
                acc.1 + t.failed,
                acc.2 + t.degraded,
                acc.3 + t.latencies.len(),
            )
        })
    };

    // An hour rolls up five minutes after it ends: not at 4 past.
    assert!(!w.roll_up(m0 + 64, 5).unwrap(), "within the grace");
    assert_eq!(count(&db, "SELECT count(*) FROM hours"), 0);
    // Five minutes after the second hour ends, the first two roll up (one
    // per call); the third is still open.
    let now_minute = m0 + 120 + 5;
    assert!(w.roll_up(now_minute, 5).unwrap());
    assert!(w.roll_up(now_minute, 5).unwrap());
    assert!(!w.roll_up(now_minute, 5).unwrap());
    assert_eq!(count(&db, "SELECT count(*) FROM hours"), 2);
    let conn = rusqlite::Connection::open(&db).unwrap();
    for h in [h0, h0 + 1] {
        let (runs, failed, deg, blob): (i64, i64, i64, Vec<u8>) = conn
            .query_row(
                "SELECT runs, failed, degraded, hist FROM hours WHERE hour = ?1",
                [h],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        let want = sum(h * 60, h * 60 + 60);
        assert_eq!(
            (runs as u64, failed as u64, deg as u64),
            (want.0, want.1, want.2),
            "hour {h}"
        );
        let mut l = Latencies::default();
        synthmon::history::snapshot::decode_into(&blob, &mut l).unwrap();
        assert_eq!(l.len(), want.3, "hour {h}'s samples");
    }
    drop(conn);

    let reader = Reader::open(dir.path()).unwrap();
    let tally = |from: i64, to: i64| {
        let got = reader.window(series, from * MIN, to * MIN, true).unwrap();
        (got.runs, got.failed, got.degraded, got.latencies.len())
    };
    // Over a partial first hour (minutes), a rolled hour (its row, not
    // its minutes as well) and the open hour (minutes): each run once.
    assert_eq!(tally(m0 + 30, m0 + 150), sum(m0 + 30, m0 + 150));
    assert_eq!(tally(m0, m0 + 180), sum(m0, m0 + 180));
    assert_eq!(tally(m0 + 60, m0 + 120), sum(m0 + 60, m0 + 120));
    // A rolled hour's latencies: its p50 from the hour row matches the
    // same minutes read one by one.
    let whole = reader
        .window(series, (m0 + 60) * MIN, (m0 + 120) * MIN, true)
        .unwrap();
    let mut by_minute = Latencies::default();
    for m in m0 + 60..m0 + 120 {
        let one = reader.window(series, m * MIN, (m + 1) * MIN, true).unwrap();
        by_minute.merge(&one.latencies);
    }
    assert_eq!(whole.latencies.percentile(50.0), by_minute.percentile(50.0));

    // Minutes older than two hours go; hours stay and still answer.
    let retention = Retention {
        runs: Duration::from_secs(3600),
        minutes: Duration::from_secs(7200),
        hours: Duration::from_secs(400 * 86_400),
    };
    let now = (m0 + 240) * MIN;
    let deleted = w.prune(now, &retention, 5_000).unwrap();
    assert_eq!(deleted, 120, "the first two hours' minutes");
    assert_eq!(count(&db, "SELECT count(*) FROM minutes"), 60);
    assert_eq!(count(&db, "SELECT count(*) FROM hours"), 2);
    assert_eq!(tally(m0, m0 + 120), sum(m0, m0 + 120), "from hours alone");
    assert_eq!(tally(m0, m0 + 180), sum(m0, m0 + 180));
    // A partial hour whose minutes are gone is left out (documented).
    assert_eq!(tally(m0 + 30, m0 + 150), sum(m0 + 60, m0 + 150));
    // A second roll-up of the third hour, later.
    assert!(w.roll_up(m0 + 185, 5).unwrap());
    assert_eq!(tally(m0, m0 + 180), sum(m0, m0 + 180));
}

#[test]
fn an_accelerated_clock_drops_old_runs_and_minutes_and_keeps_hours() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(FILE);
    let start = t0();
    let (now, clock) = clock(start + 10 * MIN);
    let retention = Retention {
        runs: Duration::from_secs(3600),
        minutes: Duration::from_secs(2 * 3600),
        hours: Duration::from_secs(400 * 86_400),
    };
    let h = History::open_with_clock(dir.path(), retention, clock.clone()).unwrap();
    // Ten runs in the first ten minutes (one failed), a state change then
    // and one long ago.
    for m in 0..10 {
        h.record(&outcome(
            "api",
            "prod",
            start + m * MIN + 7_000,
            m != 4,
            Duration::from_millis(20),
        ));
    }
    let change = |at_ms, from: &str, to: &str| Transition {
        at_ms,
        from: from.to_owned(),
        to: to.to_owned(),
        reason: Some("status".to_owned()),
    };
    h.transition("api", "prod", change(start + 4 * MIN, "ok", "failing"));
    h.transition("api", "prod", change(start + 5 * MIN, "failing", "ok"));
    h.transition("api", "prod", change(start - 500 * DAY, "ok", "failing"));
    h.flush_blocking(FLUSH);
    // Three and a half hours later, one more run.
    now.store(start + 210 * MIN, Ordering::SeqCst);
    h.record(&outcome(
        "api",
        "prod",
        start + 210 * MIN,
        true,
        Duration::from_millis(20),
    ));
    h.flush_blocking(FLUSH);
    assert_eq!(count(&db, "SELECT count(*) FROM runs"), 11);
    assert_eq!(count(&db, "SELECT count(*) FROM minutes"), 11);
    assert_eq!(count(&db, "SELECT count(*) FROM hours"), 0);
    // Four hours after the start: closing runs the writer's upkeep at the
    // clock's time.
    now.store(start + 240 * MIN, Ordering::SeqCst);
    h.close();

    assert_eq!(
        count(&db, "SELECT count(*) FROM runs"),
        1,
        "runs older than 1h went"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM minutes"),
        1,
        "minutes older than 2h went"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM hours"),
        1,
        "the first hour, rolled up"
    );
    let reader = Reader::open(dir.path()).unwrap();
    let runs = reader.runs("api", "prod", i64::MIN, i64::MAX, 10).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].started_ms, start + 210 * MIN);
    let first_hour = reader
        .window(("api", "prod", ""), start, start + HOUR, true)
        .unwrap();
    assert_eq!(
        (first_hour.runs, first_hour.failed),
        (10, 1),
        "from the hour row"
    );
    assert_eq!(first_hour.latencies.len(), 9);
    let all = reader
        .window(("api", "prod", ""), start, start + 4 * HOUR, false)
        .unwrap();
    assert_eq!((all.runs, all.failed), (11, 1));
    // State changes are kept as long as hours: the two recent ones stay,
    // the one from 500 days ago went.
    let changes = reader.transitions("api", "prod", i64::MIN).unwrap();
    assert_eq!(
        changes.iter().map(|t| t.at_ms).collect::<Vec<_>>(),
        [start + 4 * MIN, start + 5 * MIN]
    );
    assert_eq!(
        reader
            .last_states()
            .unwrap()
            .get(&("api".to_owned(), "prod".to_owned())),
        Some(&"ok".to_owned())
    );

    // A restart on the same file and clock goes on from there.
    let h = History::open_with_clock(dir.path(), retention, clock).unwrap();
    h.record(&outcome(
        "api",
        "prod",
        start + 241 * MIN,
        false,
        Duration::from_millis(20),
    ));
    h.flush_blocking(FLUSH);
    let all = h
        .reader()
        .window(("api", "prod", ""), start, start + 5 * HOUR, false)
        .unwrap();
    assert_eq!((all.runs, all.failed), (12, 2));
    h.close();
}

/// The size of the database file after a checkpoint (WAL folded in).
fn checkpointed_size(db: &Path) -> u64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(2)).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(conn);
    std::fs::metadata(db).unwrap().len()
}

#[test]
fn three_simulated_days_for_fifty_series_keep_the_file_bounded() {
    const SERIES: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(FILE);
    let mut w = Writer::open(dir.path()).unwrap();
    let retention = Retention {
        runs: Duration::from_secs(2 * 3600),
        minutes: Duration::from_secs(3 * 3600),
        hours: Duration::from_secs(86_400),
    };
    let names: Vec<String> = (0..SERIES).map(|i| format!("probe-{i:02}")).collect();
    let m0 = store::minute_of(t0());
    let mut sizes = Vec::new();
    // One series in ten with latency snapshots (encoding one is most of
    // the time a minute row takes in a debug build), the rest counts only.
    let mut latencies = Latencies::default();
    latencies.record(Duration::from_millis(42));
    latencies.record(Duration::from_millis(87));
    let with_latencies = Tallies {
        runs: 2,
        failed: 0,
        degraded: 0,
        latencies,
    };
    let counts_only = Tallies {
        runs: 2,
        failed: 1,
        degraded: 0,
        latencies: Latencies::default(),
    };
    for day in 0..3i64 {
        for hour in 0..24i64 {
            let first = m0 + (day * 24 + hour) * 60;
            let mut batch = w.batch().unwrap();
            for m in first..first + 60 {
                for (i, name) in names.iter().enumerate() {
                    let tallies = if i % 10 == 0 {
                        &with_latencies
                    } else {
                        &counts_only
                    };
                    batch.minute((name, "prod", ""), m, tallies).unwrap();
                    batch
                        .run(&synthmon::history::RunRow {
                            probe: name.clone(),
                            environment: "prod".to_owned(),
                            step: String::new(),
                            started_ms: m * MIN + 1_000,
                            intended_ms: m * MIN + 1_000,
                            duration_us: 42_000,
                            result: Verdict::Pass,
                            reason: None,
                            status: Some(200),
                            attempts: 1,
                            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".to_owned(),
                            run_id: "00f067aa0ba902b7".to_owned(),
                            error: None,
                        })
                        .unwrap();
                }
            }
            batch.commit().unwrap();
            // The writer's upkeep at the end of the hour.
            let now_minute = first + 60;
            while w.roll_up(now_minute, 5).unwrap() {}
            w.prune(now_minute * MIN, &retention, 5_000).unwrap();
            w.vacuum_some();
        }
        let runs = count(&db, "SELECT count(*) FROM runs");
        let minutes = count(&db, "SELECT count(*) FROM minutes");
        let hours = count(&db, "SELECT count(*) FROM hours");
        let size = checkpointed_size(&db);
        eprintln!("day {day}: {runs} runs, {minutes} minutes, {hours} hours, {size} bytes");
        let n = SERIES as i64;
        assert_eq!(runs, n * 120, "two hours of runs");
        assert_eq!(minutes, n * 180, "three hours of minutes");
        assert!(hours <= n * 25, "at most a day of hours: {hours}");
        sizes.push(size);
    }
    assert_eq!(count(&db, "PRAGMA auto_vacuum"), 2, "incremental");
    // Day three holds no more than day two: freed pages are reused or
    // given back. (Three days unpruned would be ~20 times larger.)
    assert!(
        sizes[2] <= sizes[1] + sizes[1] / 20,
        "the file grew day over day: {sizes:?}"
    );
    assert!(sizes[2] < 8 << 20, "{sizes:?}");
}

// ---------------------------------------------------------------------------
// Files that are not a history
// ---------------------------------------------------------------------------

/// Asserts `History::open` refuses the file in `dir`, naming it and saying
/// `why`, and leaves its bytes as they were.
fn assert_refused(dir: &Path, why: &str) {
    let path = dir.join(FILE);
    let before = std::fs::read(&path).unwrap();
    let e = match History::open(dir, Retention::default()) {
        Ok(h) => {
            h.close();
            panic!("{} was opened as a history", path.display());
        }
        Err(e) => e,
    };
    let text = chain(&e);
    assert!(
        e.to_string().contains(&path.display().to_string()),
        "the error names the file: {text}"
    );
    assert!(text.contains(why), "{why:?} in {text:?}");
    let after = std::fs::read(&path).unwrap();
    let changed = before
        .iter()
        .zip(&after)
        .position(|(a, b)| a != b)
        .or((before.len() != after.len()).then_some(before.len().min(after.len())));
    assert_eq!(
        changed,
        None,
        "the refused file was changed ({} bytes before, {} after)",
        before.len(),
        after.len()
    );
    // The read side refuses it too, at the latest at its first query.
    assert!(Reader::open(dir).and_then(|r| r.pairs()).is_err());
}

#[test]
fn a_foreign_sqlite_file_is_refused_by_name_and_left_alone() {
    // Some other application's database, with its tables.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO photos (name) VALUES ('cat.jpg');",
    )
    .unwrap();
    drop(conn);
    assert_refused(dir.path(), "not a synthmon history database");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let name: String = conn
        .query_row("SELECT name FROM photos", [], |r| r.get(0))
        .unwrap();
    assert_eq!(name, "cat.jpg");

    // Another application's empty database that marked itself as its own.
    let dir = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join(FILE)).unwrap();
    conn.pragma_update(None, "application_id", 0x4750_4B47)
        .unwrap();
    drop(conn);
    assert_refused(dir.path(), "application_id 0x47504b47");

    // One that uses auto-vacuum (a pragma on it would rewrite its header).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "PRAGMA auto_vacuum = FULL;
         CREATE TABLE notes (body TEXT);
         INSERT INTO notes VALUES ('keep me');",
    )
    .unwrap();
    drop(conn);
    assert_refused(dir.path(), "not a synthmon history database");
    assert_eq!(count(&path, "PRAGMA auto_vacuum"), 1, "still FULL");
}

#[test]
fn a_garbage_file_is_refused_by_name_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = vec![0u8; 16 * 1024];
    rand_chacha::ChaCha8Rng::seed_from_u64(15).fill_bytes(&mut bytes);
    std::fs::write(dir.path().join(FILE), &bytes).unwrap();
    assert_refused(dir.path(), "cannot be read or migrated");
}

#[test]
fn a_history_with_damaged_pages_is_refused_by_name() {
    // A real history whose pages after the header were overwritten: the
    // header still says SQLite (and synthmon), the schema page does not.
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path(), Retention::default()).unwrap();
    h.record(&outcome(
        "api",
        "prod",
        t0(),
        true,
        Duration::from_millis(5),
    ));
    h.close();
    let path = dir.path().join(FILE);
    let _ = checkpointed_size(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 4096, "{} bytes", bytes.len());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
    rng.fill_bytes(&mut bytes[100..]);
    std::fs::write(&path, &bytes).unwrap();
    assert_refused(dir.path(), "cannot be read or migrated");
}

#[test]
fn a_newer_schema_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    History::open(dir.path(), Retention::default())
        .unwrap()
        .close();
    let conn = rusqlite::Connection::open(dir.path().join(FILE)).unwrap();
    conn.pragma_update(None, "user_version", synthmon::history::schema::VERSION + 1)
        .unwrap();
    drop(conn);
    let why = format!(
        "schema version {} is newer",
        synthmon::history::schema::VERSION + 1
    );
    assert_refused(dir.path(), &why);
    // The version this build writes opens (and an older one migrates).
    let conn = rusqlite::Connection::open(dir.path().join(FILE)).unwrap();
    conn.pragma_update(None, "user_version", synthmon::history::schema::VERSION)
        .unwrap();
    drop(conn);
    History::open(dir.path(), Retention::default())
        .unwrap()
        .close();
}

#[test]
fn a_disk_that_refuses_writes_is_counted_and_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path(), Retention::default()).unwrap();
    let health = |h: &History| {
        let x = h.health();
        (
            x.written_runs.load(Ordering::Relaxed),
            x.write_failures.load(Ordering::Relaxed),
            x.failing.load(Ordering::Relaxed),
        )
    };
    h.record(&outcome(
        "api",
        "prod",
        t0(),
        true,
        Duration::from_millis(5),
    ));
    h.flush_blocking(FLUSH);
    assert_eq!(health(&h), (1, 0, false));
    h.refuse_writes();
    h.flush_blocking(FLUSH);
    for k in 1..=3 {
        h.record(&outcome(
            "api",
            "prod",
            t0() + k * MIN,
            false,
            Duration::from_millis(5),
        ));
        h.transition(
            "api",
            "prod",
            Transition {
                at_ms: t0() + k * MIN,
                from: "ok".to_owned(),
                to: "failing".to_owned(),
                reason: None,
            },
        );
        h.flush_blocking(FLUSH);
    }
    let (written, failures, failing) = health(&h);
    assert_eq!(written, 1, "nothing more was written");
    assert!(failures >= 3, "each failed batch is counted: {failures}");
    assert!(failing, "the last commit failed");
    // Closing (a last commit and the upkeep, both failing) returns.
    h.close();
    let reader = Reader::open(dir.path()).unwrap();
    assert_eq!(
        reader
            .runs("api", "prod", i64::MIN, i64::MAX, 10)
            .unwrap()
            .len(),
        1
    );
    assert!(
        reader
            .transitions("api", "prod", i64::MIN)
            .unwrap()
            .is_empty()
    );
}
