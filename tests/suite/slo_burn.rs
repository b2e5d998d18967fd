//! SLO budgets and burn-rate alerts from the stored counts, on a simulated
//! clock (issue 15): minute rows are written at chosen minutes straight
//! through the history's writer, and `history::slo::status` is asked at
//! chosen instants. First the SRE workbook's scenarios for a 99.9 % 30-day
//! SLO with its three default rules, as a table with every rate computed
//! by hand; then the alert engine fed from those statuses minute by
//! minute: one Trigger when the page starts, Repeats at the repeat
//! interval, one Resolve when it stops; and the same with a restart in
//! the middle of the burn (engine snapshot through JSON, history reopened
//! from its file), which must not page again and must still resolve.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use synthmon::alert::state::{BurnReport, Engine, PairInfo, Rules};
use synthmon::alert::{AlertKind, Notice, Notification};
use synthmon::config::Severity;
use synthmon::history::slo::{SloStatus, status};
use synthmon::history::store::{self, Tallies, Writer};
use synthmon::history::{Reader, Retention};
use synthmon::slo::{Sli, Slo, default_rules};

const MIN: i64 = 60_000;
const HOUR_MIN: i64 = 60;
const DAY_MIN: i64 = 24 * HOUR_MIN;
const MONTH_MIN: i64 = 30 * DAY_MIN;

/// 2024-06-01T00:00:00Z in Unix minutes (an hour boundary).
fn m0() -> i64 {
    store::minute_of(
        chrono::DateTime::parse_from_rfc3339("2024-06-01T00:00:00Z")
            .unwrap()
            .timestamp_millis(),
    )
}

/// Half a minute into minute `m`: when the status is asked.
fn instant(m: i64) -> i64 {
    m * MIN + 30_000
}

fn slo() -> Slo {
    Slo {
        objective: 0.999,
        window: Duration::from_secs(30 * 86_400),
        sli: Sli::Availability,
        rules: default_rules(),
    }
}

/// `len` minutes from minute `from` with `runs` events each, `failed`
/// of them bad.
#[derive(Clone, Copy, Debug)]
struct Stretch {
    from: i64,
    len: i64,
    runs: u64,
    failed: u64,
}

/// Writes the stretches in order (a later one replaces the minutes of an
/// earlier one) as minute rows of `probe` @ `prod`.
fn write(w: &mut Writer, probe: &str, stretches: &[Stretch]) {
    let mut batch = w.batch().unwrap();
    for s in stretches {
        let t = Tallies {
            runs: s.runs,
            failed: s.failed,
            degraded: 0,
            latencies: Default::default(),
        };
        for m in s.from..s.from + s.len {
            batch.minute((probe, "prod", ""), m, &t).unwrap();
        }
    }
    batch.commit().unwrap();
}

/// A clean month of `runs` events a minute before minute `now`.
fn clean_month(now: i64, runs: u64) -> Stretch {
    Stretch {
        from: now - MONTH_MIN,
        len: MONTH_MIN,
        runs,
        failed: 0,
    }
}

/// The last `len` minutes before `now` with `failed` of `runs` bad.
fn last(now: i64, len: i64, runs: u64, failed: u64) -> Stretch {
    Stretch {
        from: now - len,
        len,
        runs,
        failed,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

// ---------------------------------------------------------------------------
// The workbook's scenarios
// ---------------------------------------------------------------------------

/// One row: what is stored, then each default rule's (long rate, short
/// rate, firing) and the budget left over 30 days.
struct Scenario {
    name: &'static str,
    stretches: Vec<Stretch>,
    /// 14.4× over 1h/5m (page), 6× over 6h/30m (page), 1× over 3d/6h
    /// (ticket).
    rules: [(f64, f64, bool); 3],
    total: u64,
    budget_remaining: f64,
}

#[test]
fn the_workbooks_scenarios_fire_exactly_the_rules_their_rates_reach() {
    // Every scenario is asked half a minute into minute `now`; what is
    // stored ends with the minute before (the current one holds nothing
    // yet), so a window of w minutes holds exactly the w minutes before.
    let now = m0() + 40 * DAY_MIN;
    let month = clean_month(now, 1000);
    let scenarios = [
        Scenario {
            // 2 % errors for the last 10 minutes: the 1h window has burnt
            // 2 % × 10/60 = 0.333 %, 3.33×, far from 14.4× (at 2 % the
            // page needs 43.2 minutes: the workbook's detection time).
            name: "2% errors for 10 minutes",
            stretches: vec![month, last(now, 10, 1000, 20)],
            rules: [
                (200.0 / 60_000.0 / 0.001, 20.0, false),
                (200.0 / 360_000.0 / 0.001, 200.0 / 30_000.0 / 0.001, false),
                (
                    200.0 / 4_320_000.0 / 0.001,
                    200.0 / 360_000.0 / 0.001,
                    false,
                ),
            ],
            total: 43_200_000,
            budget_remaining: 1.0 - 200.0 / 43_200.0,
        },
        Scenario {
            // 2 % errors for 43.2 minutes (43 minutes of 20 bad in 1,000
            // and 4 bad in the minute before): 864 bad of 60,000 over the
            // hour is 1.44 %, exactly 14.4×, and 2 % of the budget spent.
            name: "2% errors for 43.2 minutes",
            stretches: vec![month, last(now, 44, 1000, 4), last(now, 43, 1000, 20)],
            rules: [
                (14.4, 20.0, true),
                (864.0 / 360.0, 600.0 / 30_000.0 / 0.001, false),
                (864.0 / 4_320.0, 864.0 / 360.0, false),
            ],
            total: 43_200_000,
            budget_remaining: 0.98,
        },
        Scenario {
            // One bad event fewer: 14.383×, the page does not fire.
            name: "2% errors for just under 43.2 minutes",
            stretches: vec![month, last(now, 44, 1000, 3), last(now, 43, 1000, 20)],
            rules: [
                (863.0 / 60.0, 20.0, false),
                (863.0 / 360.0, 600.0 / 30_000.0 / 0.001, false),
                (863.0 / 4_320.0, 863.0 / 360.0, false),
            ],
            total: 43_200_000,
            budget_remaining: 1.0 - 863.0 / 43_200.0,
        },
        Scenario {
            // A total outage for the last 5 minutes: every window burns.
            name: "a 5-minute outage, still on",
            stretches: vec![month, last(now, 5, 1000, 1000)],
            rules: [
                (5_000.0 / 60.0, 1000.0, true),
                (5_000.0 / 360.0, 5_000.0 / 30.0, true),
                (5_000.0 / 4_320.0, 5_000.0 / 360.0, true),
            ],
            total: 43_200_000,
            budget_remaining: 1.0 - 5_000.0 / 43_200.0,
        },
        Scenario {
            // The same outage, over since 6 minutes: the 5m window is
            // clean, so the 1h/5m page has reset although the hour still
            // burns at 83×. The 6h/30m page still fires (its short window
            // holds the outage) and so does the ticket: 5 minutes of
            // outage spent 11.6 % of the month's budget.
            name: "a 5-minute outage that stopped 6 minutes ago",
            stretches: vec![
                month,
                Stretch {
                    from: now - 11,
                    len: 5,
                    runs: 1000,
                    failed: 1000,
                },
            ],
            rules: [
                (5_000.0 / 60.0, 0.0, false),
                (5_000.0 / 360.0, 5_000.0 / 30.0, true),
                (5_000.0 / 4_320.0, 5_000.0 / 360.0, true),
            ],
            total: 43_200_000,
            budget_remaining: 1.0 - 5_000.0 / 43_200.0,
        },
        Scenario {
            // 0.7 % errors for 7 hours: 7× over 6h and 30m pages; 7× is
            // below 14.4×, and over 3 days it is 7 × 7/72 = 0.68×.
            name: "0.7% errors for 7 hours",
            stretches: vec![month, last(now, 7 * HOUR_MIN, 1000, 7)],
            rules: [
                (7.0, 7.0, false),
                (7.0, 7.0, true),
                (7.0 * 420.0 / 4_320.0, 7.0, false),
            ],
            total: 43_200_000,
            budget_remaining: 1.0 - 2_940.0 / 43_200.0,
        },
        Scenario {
            // 0.15 % errors for 4 days: 1.5× everywhere, a ticket and no
            // page; 4/30 of the month at 1.5× is 20 % of the budget.
            name: "0.15% errors for 4 days",
            stretches: vec![clean_month(now, 2000), last(now, 4 * DAY_MIN, 2000, 3)],
            rules: [(1.5, 1.5, false), (1.5, 1.5, false), (1.5, 1.5, true)],
            total: 86_400_000,
            budget_remaining: 0.8,
        },
        Scenario {
            // No events at all: nothing burns, the whole budget is left.
            name: "no events",
            stretches: vec![],
            rules: [(0.0, 0.0, false), (0.0, 0.0, false), (0.0, 0.0, false)],
            total: 0,
            budget_remaining: 1.0,
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path()).unwrap();
    let names: Vec<String> = (0..scenarios.len()).map(|i| format!("s{i}")).collect();
    for (s, probe) in scenarios.iter().zip(&names) {
        write(&mut w, probe, &s.stretches);
    }
    // Roll every finished hour up (one per call) and keep 48 hours of
    // minutes, as the daemon does: windows older than that read hour rows.
    while w.roll_up(now, 5).unwrap() {}
    w.prune(instant(now), &Retention::default(), usize::MAX >> 1)
        .unwrap();
    let reader = Reader::open(dir.path()).unwrap();

    let mut failures = Vec::new();
    for (s, probe) in scenarios.iter().zip(&names) {
        let st = status(&reader, probe, "prod", &slo(), instant(now)).unwrap();
        let got: Vec<(f64, f64, bool)> = st
            .rules
            .iter()
            .map(|r| (r.long_rate, r.short_rate, r.firing))
            .collect();
        let rules_ok = got.len() == 3
            && got
                .iter()
                .zip(&s.rules)
                .all(|(g, want)| close(g.0, want.0) && close(g.1, want.1) && g.2 == want.2);
        let budget_ok = close(st.budget_remaining, s.budget_remaining)
            && close(st.budget_consumed, 1.0 - s.budget_remaining);
        let totals_ok = st.total == s.total
            && st.attainment.is_some() == (s.total > 0)
            && st.objective == 0.999
            && st.window_seconds == 30 * 86_400;
        if !(rules_ok && budget_ok && totals_ok) {
            failures.push(format!(
                "{}:\n  rules  got {got:?}\n         want {:?}\n  budget got {} want {}\n  total  got {} want {}",
                s.name, s.rules, st.budget_remaining, s.budget_remaining, st.total, s.total
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn errors_of_the_current_minute_count_at_once() {
    // A pair's first runs, all failed, in the minute the status is asked
    // in: they are events of every window (the daemon computes its SLOs
    // every 30 s; a run must not wait for its minute to end to count).
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path()).unwrap();
    let now = m0();
    write(
        &mut w,
        "api",
        &[Stretch {
            from: now,
            len: 1,
            runs: 10,
            failed: 4,
        }],
    );
    let reader = Reader::open(dir.path()).unwrap();
    let st = status(&reader, "api", "prod", &slo(), instant(now)).unwrap();
    assert_eq!((st.total, st.good), (10, 6), "{st:#?}");
    assert!(
        close(st.budget_remaining, 1.0 - 400.0),
        "{}",
        st.budget_remaining
    );
    assert!(st.rules[0].firing, "{:?}", st.rules[0]);
    // The minute after it has ended, still counted; a minute before it
    // started, nothing.
    let st = status(&reader, "api", "prod", &slo(), instant(now + 1)).unwrap();
    assert_eq!(st.total, 10);
    let st = status(&reader, "api", "prod", &slo(), instant(now - 1)).unwrap();
    assert_eq!(st.total, 0);
}

// ---------------------------------------------------------------------------
// The alert engine over time
// ---------------------------------------------------------------------------

const PROBE: &str = "checkout";

fn info() -> PairInfo {
    PairInfo {
        severity: Severity::Critical,
        labels: BTreeMap::from([("team".to_owned(), "payments".to_owned())]),
        tags: Vec::new(),
        depends_on: Vec::new(),
        rules: Rules {
            repeat_interval: Some(Duration::from_secs(600)),
            ..Rules::default()
        },
    }
}

fn utc(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap()
}

/// Feeds a status to the engine as the daemon does: one report per
/// severity with rules, firing while any rule of that severity fires;
/// then the engine's tick.
fn feed(engine: &mut Engine, st: &SloStatus, info: &PairInfo, now_ms: i64) -> Vec<Notification> {
    let mut out = Vec::new();
    for (kind, severity) in [
        (AlertKind::SloPage, "page"),
        (AlertKind::SloTicket, "ticket"),
    ] {
        let rules: Vec<_> = st.rules.iter().filter(|r| r.severity == severity).collect();
        let firing = rules.iter().find(|r| r.firing);
        let detail = match firing.or(rules.first()) {
            Some(r) => format!(
                "burns at {:.1}x over {}s and {:.1}x over {}s ({severity} at {}x)",
                r.long_rate, r.long_seconds, r.short_rate, r.short_seconds, r.factor
            ),
            None => continue,
        };
        out.extend(engine.observe_burn(
            &BurnReport {
                probe: &st.probe,
                environment: &st.environment,
                kind,
                firing: firing.is_some(),
                detail,
                info,
            },
            utc(now_ms),
        ));
    }
    out.extend(engine.tick(utc(now_ms)));
    out
}

/// The fault of the timeline: 10 % errors from minute `f` for 30 minutes,
/// 1,000 events a minute, after a clean month.
const FAULT_MINUTES: i64 = 30;

fn minute_of_timeline(f: i64, m: i64) -> Stretch {
    let bad = (f..f + FAULT_MINUTES).contains(&m);
    Stretch {
        from: m,
        len: 1,
        runs: 1000,
        failed: if bad { 100 } else { 0 },
    }
}

/// (minute after the fault's start, notice, kind, sequence).
type Row = (i64, Notice, AlertKind, u32);

fn rows(f: i64, notes: &[Notification]) -> Vec<Row> {
    notes
        .iter()
        .map(|n| {
            (
                store::minute_of(n.at.timestamp_millis()) - f,
                n.notice,
                n.kind,
                n.sequence,
            )
        })
        .collect()
}

/// What must be sent, worked out by hand. The page's 1h/5m rule fires
/// once 9 bad minutes are in the hour (10 % × 9/60 = 1.5 % ≥ 1.44 %) and
/// while a bad minute is in the last 5: minutes 9–34. Its 6h/30m rule
/// fires once 22 are in 6 hours (10 % × 22/360 = 0.61 % ≥ 0.6 %) and while
/// 2 are in the last 30 (0.67 % ≥ 0.6 %): minutes 22–58. So the page fires
/// from minute 9 to 58, repeats every 10 minutes and resolves at 59. The
/// ticket never fires: 30 bad minutes in 3 days burn 0.69×.
fn expected() -> Vec<Row> {
    use AlertKind::SloPage;
    use Notice::{Repeat, Resolve, Trigger};
    vec![
        (9, Trigger, SloPage, 0),
        (19, Repeat, SloPage, 1),
        (29, Repeat, SloPage, 2),
        (39, Repeat, SloPage, 3),
        (49, Repeat, SloPage, 4),
        (59, Resolve, SloPage, 5),
    ]
}

/// A history with the clean month before minute `f`.
fn history_before(dir: &Path, f: i64) -> Writer {
    let mut w = Writer::open(dir).unwrap();
    write(&mut w, PROBE, &[clean_month(f, 1000)]);
    w
}

#[test]
fn a_burn_triggers_once_repeats_at_its_interval_and_resolves_once() {
    let dir = tempfile::tempdir().unwrap();
    let f = m0() + 35 * DAY_MIN;
    let mut w = history_before(dir.path(), f);
    let reader = Reader::open(dir.path()).unwrap();
    let mut engine = Engine::new();
    let info = info();
    let mut sent = Vec::new();
    let mut last = None;
    for j in 0..=75 {
        // Minute f + j - 1 has just ended: the writer has stored it.
        write(&mut w, PROBE, &[minute_of_timeline(f, f + j - 1)]);
        let st = status(&reader, PROBE, "prod", &slo(), instant(f + j)).unwrap();
        sent.extend(feed(&mut engine, &st, &info, instant(f + j)));
        last = Some(st);
    }
    assert_eq!(rows(f, &sent), expected());
    // Every notification is about the one page that started at minute 9.
    for n in &sent {
        assert_eq!(n.probe, PROBE);
        assert_eq!(n.environment, "prod");
        assert_eq!(n.starts_at, utc(instant(f + 9)));
        assert_eq!(n.severity, Severity::Critical);
        assert_eq!(n.reason.as_deref(), Some("slo_burn"));
        assert_eq!(n.labels["team"], "payments");
        assert_eq!(n.fingerprint, sent[0].fingerprint);
    }
    let resolve = sent.last().unwrap();
    assert_eq!(resolve.ends_at, Some(utc(instant(f + 59))));
    assert_eq!(resolve.expires_at, None);
    assert!(
        resolve.summary.contains("no longer burning"),
        "{}",
        resolve.summary
    );
    assert_eq!(
        sent[0].expires_at,
        Some(utc(instant(f + 9) + 30 * MIN)),
        "three repeat intervals"
    );
    assert!(
        sent[0].summary.contains("page at 14.4x"),
        "{}",
        sent[0].summary
    );
    // 3,000 bad events of 43.2 million: 6.9 % of the budget spent.
    let st = last.unwrap();
    assert_eq!(st.total, 43_200_000);
    assert!(
        close(st.budget_remaining, 1.0 - 3_000.0 / 43_200.0),
        "{}",
        st.budget_remaining
    );
    assert!(st.rules.iter().all(|r| !r.firing));
}

#[test]
fn a_restart_in_the_middle_of_a_burn_neither_pages_again_nor_forgets_to_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let f = m0() + 35 * DAY_MIN;
    let info = info();
    let restart_at = 25;
    let mut sent = Vec::new();

    // Before the restart: the page triggered at 9 and repeated at 19.
    let snapshot = {
        let mut w = history_before(dir.path(), f);
        let reader = Reader::open(dir.path()).unwrap();
        let mut engine = Engine::new();
        for j in 0..restart_at {
            write(&mut w, PROBE, &[minute_of_timeline(f, f + j - 1)]);
            let st = status(&reader, PROBE, "prod", &slo(), instant(f + j)).unwrap();
            sent.extend(feed(&mut engine, &st, &info, instant(f + j)));
        }
        // The daemon stores the engine's state as JSON beside the outbox.
        serde_json::to_string(&engine.snapshot()).unwrap()
        // The writer and the reader close here, as in a process that ends.
    };
    assert_eq!(rows(f, &sent), expected()[..2]);

    // After it: a new process reopens the history from its file and
    // restores the engine.
    let mut w = Writer::open(dir.path()).unwrap();
    let reader = Reader::open(dir.path()).unwrap();
    let mut engine = Engine::restore(serde_json::from_str(&snapshot).unwrap());
    // An engine that forgot (a restart without the snapshot) would page
    // again at once: the stored counts still burn.
    write(&mut w, PROBE, &[minute_of_timeline(f, f + restart_at - 1)]);
    let st = status(&reader, PROBE, "prod", &slo(), instant(f + restart_at)).unwrap();
    let forgetful = feed(&mut Engine::new(), &st, &info, instant(f + restart_at));
    assert_eq!(
        rows(f, &forgetful),
        [(restart_at, Notice::Trigger, AlertKind::SloPage, 0)]
    );

    sent.extend(feed(&mut engine, &st, &info, instant(f + restart_at)));
    for j in restart_at + 1..=75 {
        write(&mut w, PROBE, &[minute_of_timeline(f, f + j - 1)]);
        let st = status(&reader, PROBE, "prod", &slo(), instant(f + j)).unwrap();
        sent.extend(feed(&mut engine, &st, &info, instant(f + j)));
    }
    assert_eq!(rows(f, &sent), expected(), "the same as without a restart");
    assert!(sent.iter().all(|n| n.starts_at == utc(instant(f + 9))));
}
