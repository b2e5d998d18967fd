//! The daemon's baseline verdict: a pair whose recent p95 is beyond its
//! trailing baseline by more than the tolerance carries a degraded (or
//! failing) baseline threshold on its next outcomes, and one within the
//! tolerance an ok one. The trailing hour is written into the history file
//! before the daemon starts, as an earlier daemon would have left it.

use crate::common;
use std::time::Duration;
use synthmon::daemon::Daemon;
use synthmon::history::store::{Tallies, Writer};
use synthmon::outcome::Outcome;
use synthmon::threshold::State;

/// Writes 10 minutes of `ms`-millisecond runs (20 a minute) into the
/// previous hour of `probe`'s history in `state`, and rolls it up.
fn trailing_hour(state: &std::path::Path, probe: &str, ms: u64) {
    let mut w = Writer::open(state).unwrap();
    let now_minute = synthmon::history::now_ms() / 60_000;
    let hour_start = (now_minute / 60 - 1) * 60;
    let mut batch = w.batch().unwrap();
    for m in 0..10 {
        let mut t = Tallies {
            runs: 20,
            ..Tallies::default()
        };
        for _ in 0..20 {
            t.latencies.record(Duration::from_millis(ms));
        }
        batch.minute((probe, "sb", ""), hour_start + m, &t).unwrap();
    }
    batch.commit().unwrap();
    while w.roll_up(now_minute, 0).unwrap() {}
}

fn probe(name: &str, delay_ms: u64, level: &str) -> String {
    format!(
        "name = \"{name}\"\nschedule = \"every 1s\"\ntimeout = \"900ms\"\nenvironments = [\"sb\"]\n\
         baseline = {{ metric = \"p95\", window = \"1h\", tolerance = \"50%\", min_samples = 50, level = \"{level}\" }}\n\
         [http]\nurl = \"/delay/{delay_ms}\"\n"
    )
}

/// The baseline threshold on an outcome, once it has a verdict.
fn verdict(o: &Outcome) -> Option<State> {
    o.thresholds
        .iter()
        .find(|t| t.threshold.contains("baseline"))
        .map(|t| t.state)
        .filter(|s| *s != State::NoData)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regression_beyond_the_tolerance_degrades_or_fails_the_pair_and_one_within_it_does_not() {
    common::within(Duration::from_secs(40), async {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        // `slow` regresses from 20 ms to 150 ms; `same` stays at 150 ms;
        // `worse` regresses and is configured to fail.
        trailing_hour(&state, "slow", 20);
        trailing_hour(&state, "same", 150);
        trailing_hour(&state, "worse", 20);
        let path = common::write_config(
            dir.path(),
            "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"state\"\nprobes = [\"probes/*.toml\"]\n\
             [environments.sb]\nbase_url = \"builtin:sandbox\"\n",
            &[
                ("slow.toml", &probe("slow", 150, "degraded")),
                ("same.toml", &probe("same", 150, "degraded")),
                ("worse.toml", &probe("worse", 150, "failing")),
            ],
        );
        let (tx, mut rx) = tokio::sync::mpsc::channel(256);
        let daemon = Daemon::start(common::quiet_daemon_options(path), Some(tx))
            .await
            .unwrap();
        let mut seen = std::collections::BTreeMap::new();
        while seen.len() < 3 {
            let o = rx.recv().await.unwrap();
            if let Some(v) = verdict(&o) {
                seen.entry(o.probe.clone()).or_insert((v, o.success, o.passed()));
            }
        }
        daemon.shutdown().await;
        assert_eq!(seen["slow"].0, State::Degraded, "{seen:?}");
        // Degraded warns: the run still passes.
        assert!(seen["slow"].2, "{seen:?}");
        assert_eq!(seen["same"].0, State::Ok, "{seen:?}");
        assert_eq!(seen["worse"].0, State::Failing, "{seen:?}");
        assert!(!seen["worse"].2, "a failing baseline fails the run's verdict: {seen:?}");
    })
    .await;
}
