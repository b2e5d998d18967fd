//! SLO burn-rate alerts: one alert per (probe, environment, page|ticket),
//! firing while any rule of that severity fires (the rule's two windows
//! are the smoothing, so there is no `fire_after` count), repeated at the
//! pair's repeat interval, resolved exactly once when no rule of that
//! severity fires any more. Kept in the engine's snapshot, so a restart
//! neither re-pages nor forgets to resolve.
//!
//! The monitor's own offline alert ([`AlertKind::MonitorOffline`]) has the
//! same life (firing while a condition holds) and is kept here too, as the
//! pair ([`OFFLINE_PROBE`], the instance's name).

use super::{Alert, PairInfo};
use crate::alert::{AlertKind, Notice, Notification, fingerprint};
use crate::config::Severity;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What the daemon found for one (probe, environment, severity) of an SLO.
#[derive(Debug, Clone)]
pub struct BurnReport<'a> {
    pub probe: &'a str,
    pub environment: &'a str,
    /// [`AlertKind::SloPage`] or [`AlertKind::SloTicket`].
    pub kind: AlertKind,
    pub firing: bool,
    /// What burns, for the summary: "the 30d error budget of 99.9% burns
    /// at 15.1× over 1h and 16.0× over 5m (page at 14.4×)".
    pub detail: String,
    pub info: &'a PairInfo,
}

/// The `probe` of the monitor's offline alert.
pub const OFFLINE_PROBE: &str = "synthmon";

/// One burn alert the engine holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Burn {
    pub probe: String,
    pub environment: String,
    pub info: PairInfo,
    pub alert: Alert,
    pub detail: String,
}

impl Burn {
    fn notification(
        &self,
        notice: Notice,
        sequence: u32,
        summary: String,
        now: DateTime<Utc>,
    ) -> Notification {
        let kind = self.alert.kind;
        Notification {
            fingerprint: fingerprint(&self.probe, &self.environment, kind),
            notice,
            kind,
            probe: self.probe.clone(),
            environment: self.environment.clone(),
            severity: match kind {
                AlertKind::SloPage | AlertKind::MonitorOffline => Severity::Critical,
                _ => Severity::Warning,
            },
            labels: self.info.labels.clone(),
            tags: self.info.tags.clone(),
            starts_at: self.alert.starts_at,
            ends_at: (notice == Notice::Resolve).then_some(now),
            expires_at: match notice {
                Notice::Resolve => None,
                _ => self
                    .info
                    .rules
                    .repeat_every()
                    .and_then(|every| every.checked_mul(3))
                    .and_then(|d| now.checked_add_signed(d)),
            },
            at: now,
            sequence,
            summary,
            reason: Some(
                match kind {
                    AlertKind::MonitorOffline => "monitor_offline",
                    _ => "slo_burn",
                }
                .to_owned(),
            ),
            error: None,
            failed_checks: Vec::new(),
            thresholds: Vec::new(),
            run_id: String::new(),
            trace_id: String::new(),
            artifact_url: None,
        }
    }

    /// The Trigger, or a Repeat when due.
    pub fn announce(&mut self, now: DateTime<Utc>) -> Option<Notification> {
        let every = self.info.rules.repeat_every();
        let notice = if !self.alert.announced {
            Notice::Trigger
        } else if every
            .and_then(|every| self.alert.last_sent?.checked_add_signed(every))
            .is_some_and(|due| due <= now)
        {
            Notice::Repeat
        } else {
            return None;
        };
        let sequence = self.alert.sent;
        self.alert.announced = true;
        self.alert.sent = self.alert.sent.saturating_add(1);
        self.alert.last_sent = Some(now);
        let summary = self.summary(&self.detail);
        Some(self.notification(notice, sequence, summary, now))
    }

    pub fn resolve(&self, note: &str, now: DateTime<Utc>) -> Notification {
        let summary = self.summary(note);
        self.notification(Notice::Resolve, self.alert.sent, summary, now)
    }

    /// `probe @ environment: what`; `synthmon (eu-west): what` for the
    /// offline alert.
    fn summary(&self, what: &str) -> String {
        match self.alert.kind {
            AlertKind::MonitorOffline => format!("{} ({}): {what}", self.probe, self.environment),
            _ => format!("{} @ {}: {what}", self.probe, self.environment),
        }
    }

    /// Whether the pair this alert is about is held.
    pub fn held_by(&self, held: &std::collections::BTreeSet<(String, String)>) -> bool {
        self.alert.kind != AlertKind::MonitorOffline
            && held.contains(&(self.probe.clone(), self.environment.clone()))
    }
}

/// Applies one report to the burn alerts; returns what it causes now.
/// `held`: the pair's alerts are held (a new alert starts unannounced; the
/// engine's tick announces it once the hold ends).
pub(super) fn observe(
    burns: &mut Vec<Burn>,
    report: &BurnReport<'_>,
    held: bool,
    now: DateTime<Utc>,
) -> Vec<Notification> {
    let at = burns.iter().position(|b| {
        b.probe == report.probe
            && b.environment == report.environment
            && b.alert.kind == report.kind
    });
    match (at, report.firing) {
        (None, false) => Vec::new(),
        (None, true) => {
            let mut b = Burn {
                probe: report.probe.to_owned(),
                environment: report.environment.to_owned(),
                info: report.info.clone(),
                alert: Alert::new(report.kind, now),
                detail: report.detail.clone(),
            };
            let out = if held {
                Vec::new()
            } else {
                b.announce(now).into_iter().collect()
            };
            burns.push(b);
            out
        }
        (Some(i), true) => {
            let b = &mut burns[i];
            b.detail.clone_from(&report.detail);
            if b.info != *report.info {
                b.info = report.info.clone();
            }
            Vec::new()
        }
        (Some(i), false) => {
            let b = burns.remove(i);
            if b.alert.announced {
                let note = match b.alert.kind {
                    AlertKind::MonitorOffline => format!("back online ({})", report.detail),
                    _ => format!("no longer burning its error budget ({})", report.detail),
                };
                vec![b.resolve(&note, now)]
            } else {
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! Burn alerts as tables of (minute, report or tick) → notifications,
    //! on times passed in.

    use super::super::Engine;
    use super::*;
    use crate::config::Rules;
    use AlertKind::{SloPage as Page, SloTicket as Ticket};
    use Notice::{Repeat, Resolve, Trigger};
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_750_000_000 + minute * 60, 0).unwrap()
    }

    fn minute_of(t: DateTime<Utc>) -> i64 {
        (t - at(0)).num_minutes()
    }

    fn info(repeat_minutes: Option<u64>) -> PairInfo {
        PairInfo {
            severity: Severity::Info,
            labels: BTreeMap::from([("team".to_owned(), "payments".to_owned())]),
            tags: vec!["slo".to_owned()],
            depends_on: Vec::new(),
            rules: Rules {
                repeat_interval: repeat_minutes.map(|m| Duration::from_secs(m * 60)),
                ..Rules::default()
            },
        }
    }

    fn report<'a>(
        probe: &'a str,
        kind: AlertKind,
        firing: bool,
        info: &'a PairInfo,
    ) -> BurnReport<'a> {
        BurnReport {
            probe,
            environment: "prod",
            kind,
            firing,
            detail: format!("burns at {}", if firing { "16.0x" } else { "2.0x" }),
            info,
        }
    }

    /// One step of a table.
    #[derive(Clone, Copy, Debug)]
    enum Step {
        /// A report for `api`'s page at this minute: firing or not.
        Burning(bool),
        /// `Engine::tick`.
        Tick,
    }
    use Step::{Burning, Tick};

    /// (minute, notice, sequence) of every notification the steps cause.
    fn run(info: &PairInfo, steps: &[(i64, Step)]) -> Vec<(i64, Notice, u32)> {
        let mut engine = Engine::new();
        let mut out = Vec::new();
        for (minute, step) in steps {
            let now = at(*minute);
            let notes = match step {
                Burning(firing) => engine.observe_burn(&report("api", Page, *firing, info), now),
                Tick => engine.tick(now),
            };
            for n in notes {
                assert_eq!(n.at, now);
                out.push((*minute, n.notice, n.sequence));
            }
        }
        out
    }

    #[test]
    fn a_burn_triggers_once_repeats_at_its_interval_and_resolves_once() {
        let steps = [
            (0, Burning(false)),
            (0, Tick),
            (1, Burning(true)),
            (2, Burning(true)),
            (10, Tick),
            (11, Tick),
            (12, Burning(true)),
            // A tick 25 minutes late sends one Repeat, not two; the next
            // is due an interval after it.
            (46, Tick),
            (55, Tick),
            (56, Tick),
            (57, Burning(false)),
            (57, Tick),
            (58, Burning(false)),
            (80, Tick),
        ];
        assert_eq!(
            run(&info(Some(10)), &steps),
            [
                (1, Trigger, 0),
                (11, Repeat, 1),
                (46, Repeat, 2),
                (56, Repeat, 3),
                (57, Resolve, 4)
            ]
        );
    }

    #[test]
    fn without_a_repeat_interval_a_burn_triggers_and_resolves_only() {
        for repeat in [None, Some(0)] {
            let steps = [
                (0, Burning(true)),
                (600, Tick),
                (6000, Tick),
                (6001, Burning(false)),
            ];
            assert_eq!(
                run(&info(repeat), &steps),
                [(0, Trigger, 0), (6001, Resolve, 1)],
                "{repeat:?}"
            );
        }
    }

    #[test]
    fn a_second_episode_is_a_new_alert() {
        let steps = [
            (0, Burning(true)),
            (5, Burning(false)),
            (6, Burning(true)),
            (7, Burning(false)),
        ];
        assert_eq!(
            run(&info(Some(60)), &steps),
            [
                (0, Trigger, 0),
                (5, Resolve, 1),
                (6, Trigger, 0),
                (7, Resolve, 1)
            ]
        );
    }

    #[test]
    fn what_a_burn_notification_says() {
        let info = info(Some(30));
        let mut engine = Engine::new();
        let page = engine.observe_burn(&report("api", Page, true, &info), at(0));
        let ticket = engine.observe_burn(&report("api", Ticket, true, &info), at(1));
        let [page] = page.as_slice() else {
            panic!("{page:?}")
        };
        let [ticket] = ticket.as_slice() else {
            panic!("{ticket:?}")
        };
        // A page is critical and a ticket a warning, whatever the probe's
        // severity; each is its own alert.
        assert_eq!((page.kind, page.severity), (Page, Severity::Critical));
        assert_eq!((ticket.kind, ticket.severity), (Ticket, Severity::Warning));
        assert_eq!(page.fingerprint, fingerprint("api", "prod", Page));
        assert_ne!(page.fingerprint, ticket.fingerprint);
        assert_eq!(page.summary, "api @ prod: burns at 16.0x");
        assert_eq!(page.reason.as_deref(), Some("slo_burn"));
        assert_eq!((page.starts_at, page.ends_at), (at(0), None));
        assert_eq!(page.expires_at, Some(at(90)), "three repeat intervals");
        assert_eq!(page.labels["team"], "payments");
        assert_eq!(page.tags, ["slo"]);
        assert!(page.error.is_none() && page.failed_checks.is_empty() && page.run_id.is_empty());

        // The latest report's detail and info are what a Repeat says.
        let mut relabelled = info.clone();
        relabelled
            .labels
            .insert("team".to_owned(), "checkout".to_owned());
        let later = BurnReport {
            detail: "burns at 30.0x".to_owned(),
            ..report("api", Page, true, &relabelled)
        };
        assert!(engine.observe_burn(&later, at(10)).is_empty());
        let repeats = engine.tick(at(30));
        let [repeat] = repeats.as_slice() else {
            panic!("{repeats:?}")
        };
        assert_eq!(repeat.notice, Repeat);
        assert_eq!(repeat.summary, "api @ prod: burns at 30.0x");
        assert_eq!(repeat.labels["team"], "checkout");
        assert_eq!(repeat.starts_at, at(0));

        // Resolving the page leaves the ticket firing.
        let resolved = engine.observe_burn(&report("api", Page, false, &info), at(40));
        let [resolve] = resolved.as_slice() else {
            panic!("{resolved:?}")
        };
        assert_eq!(resolve.notice, Resolve);
        assert_eq!(resolve.sequence, 2);
        assert_eq!((resolve.ends_at, resolve.expires_at), (Some(at(40)), None));
        assert_eq!(
            resolve.summary,
            "api @ prod: no longer burning its error budget (burns at 2.0x)"
        );
        let due = engine.tick(at(61));
        assert_eq!(
            due.iter().map(|n| (n.kind, n.notice)).collect::<Vec<_>>(),
            [(Ticket, Repeat)]
        );
    }

    #[test]
    fn pairs_burn_independently() {
        let info = info(Some(10));
        let mut engine = Engine::new();
        let mut triggered = Vec::new();
        for probe in ["api", "web"] {
            triggered.extend(engine.observe_burn(&report(probe, Page, true, &info), at(0)));
        }
        assert_eq!(triggered.len(), 2);
        let other_env = BurnReport {
            environment: "staging",
            ..report("api", Page, false, &info)
        };
        assert!(engine.observe_burn(&other_env, at(1)).is_empty());
        let resolved = engine.observe_burn(&report("web", Page, false, &info), at(2));
        assert_eq!(
            resolved
                .iter()
                .map(|n| (n.probe.as_str(), n.notice))
                .collect::<Vec<_>>(),
            [("web", Resolve)]
        );
        let repeats = engine.tick(at(10));
        assert_eq!(
            repeats
                .iter()
                .map(|n| (n.probe.as_str(), n.notice))
                .collect::<Vec<_>>(),
            [("api", Repeat)]
        );
    }

    #[test]
    fn a_restored_engine_neither_triggers_again_nor_forgets_to_resolve() {
        let info = info(Some(10));
        let mut engine = Engine::new();
        assert_eq!(
            engine
                .observe_burn(&report("api", Page, true, &info), at(0))
                .len(),
            1
        );
        assert_eq!(engine.tick(at(10)).len(), 1);
        let json = serde_json::to_string(&engine.snapshot()).unwrap();
        let mut engine = Engine::restore(serde_json::from_str(&json).unwrap());
        assert!(
            engine
                .observe_burn(&report("api", Page, true, &info), at(12))
                .is_empty()
        );
        assert!(
            engine.tick(at(19)).is_empty(),
            "the Repeat at 10 is remembered"
        );
        let repeat = engine.tick(at(20));
        assert_eq!(
            repeat
                .iter()
                .map(|n| (n.notice, n.sequence, minute_of(n.starts_at)))
                .collect::<Vec<_>>(),
            [(Repeat, 2, 0)]
        );
        let resolve = engine.observe_burn(&report("api", Page, false, &info), at(21));
        assert_eq!(
            resolve
                .iter()
                .map(|n| (n.notice, n.sequence))
                .collect::<Vec<_>>(),
            [(Resolve, 3)]
        );

        // A snapshot written before burn alerts existed restores without any.
        let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
        old.as_object_mut().unwrap().remove("burns");
        let mut engine = Engine::restore(serde_json::from_value(old).unwrap());
        assert!(
            engine
                .observe_burn(&report("api", Page, false, &info), at(21))
                .is_empty()
        );
    }

    #[test]
    fn a_removed_slo_resolves_its_announced_burns() {
        let info = info(Some(10));
        let mut engine = Engine::new();
        engine.observe_burn(&report("api", Page, true, &info), at(0));
        engine.observe_burn(&report("api", Ticket, true, &info), at(0));
        engine.observe_burn(&report("web", Page, true, &info), at(0));
        let gone = engine.retain_burns(|probe, _| probe == "web", at(5));
        let mut got: Vec<_> = gone
            .iter()
            .map(|n| (n.probe.as_str(), n.kind, n.notice, n.sequence))
            .collect();
        got.sort_by_key(|(_, kind, _, _)| *kind == Ticket);
        assert_eq!(
            got,
            [("api", Page, Resolve, 1), ("api", Ticket, Resolve, 1)]
        );
        assert!(gone.iter().all(|n| {
            n.summary
                .ends_with("its SLO was removed from the configuration")
        }));
        // Forgotten: nothing repeats or resolves for them any more.
        let later = engine.tick(at(10));
        assert_eq!(
            later.iter().map(|n| n.probe.as_str()).collect::<Vec<_>>(),
            ["web"]
        );
        assert!(
            engine
                .observe_burn(&report("api", Page, false, &info), at(11))
                .is_empty()
        );
    }
}
