//! Holding alerts back on purpose: maintenance windows (planned, in the
//! config), silences (at runtime, through the API) and what they match.
//!
//! Pure data and wall-clock arithmetic, no I/O and no clock reads: every
//! question takes `now`. The daemon asks [`hold_of`] which hold, if any,
//! covers a (probe, environment) pair at a time; the alert engine only
//! learns *that* a pair is held (see `alert::state`), the scheduler whether
//! a window's `action = "skip"` skips its runs, and the history whether a
//! run counts against the SLO (a held run does not).
//!
//! Not here: checking `[[maintenance]]` tables (`config`), storing
//! silences (`history::silences`), the API (`daemon`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Which pairs a maintenance window or a silence covers. Every condition
/// given must hold; a condition left empty matches anything, so no
/// condition at all matches every pair.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matchers {
    /// The probe is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<String>,
    /// The environment is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
    /// The probe has at least one of these tags (as routes read tags).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Every label is set to this value (probe labels over environment
    /// labels, as alerts carry them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// What a matcher looks at: one pair, as alerts describe it.
#[derive(Debug, Clone, Copy)]
pub struct Pair<'a> {
    pub probe: &'a str,
    pub environment: &'a str,
    pub tags: &'a [String],
    pub labels: &'a BTreeMap<String, String>,
}

impl Matchers {
    pub fn matches(&self, pair: &Pair<'_>) -> bool {
        (self.probes.is_empty() || self.probes.iter().any(|p| p == pair.probe))
            && (self.environments.is_empty()
                || self.environments.iter().any(|e| e == pair.environment))
            && (self.tags.is_empty() || self.tags.iter().any(|t| pair.tags.contains(t)))
            && self
                .labels
                .iter()
                .all(|(k, v)| pair.labels.get(k) == Some(v))
    }

    /// Whether no condition is set (everything matches).
    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
            && self.environments.is_empty()
            && self.tags.is_empty()
            && self.labels.is_empty()
    }
}

/// What a maintenance window does to the pairs it covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Probes keep running; their alerts are held and their runs do not
    /// count against SLOs.
    #[default]
    Hold,
    /// The runs are not started at all.
    Skip,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Hold => "hold",
            Action::Skip => "skip",
        }
    }
}

/// When a maintenance window is open.
#[derive(Debug, Clone, PartialEq)]
pub enum Window {
    /// Opens at each fire of a cron expression (in a time zone) and stays
    /// open for `duration`.
    Cron {
        cron: Box<croner::Cron>,
        expression: String,
        timezone: chrono_tz::Tz,
        duration: Duration,
    },
    /// Open once, from `from` (included) to `until` (excluded).
    Fixed {
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    },
}

impl Window {
    /// When the window that is open at `now` closes; `None` when no window
    /// is open at `now`. A cron window that fired at `t` is open over
    /// `[t, t + duration)`; windows that overlap are one long window.
    pub fn open_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Window::Fixed { from, until } => (*from <= now && now < *until).then_some(*until),
            Window::Cron {
                cron,
                timezone,
                duration,
                ..
            } => {
                let length = chrono::TimeDelta::from_std(*duration).ok()?;
                // The first fire in (now - duration, now], then any later
                // fire that starts before the window it is in closes.
                let mut fire = crate::schedule::cron_next(cron, timezone, now - length)?;
                if fire > now {
                    return None;
                }
                let mut end = fire + length;
                for _ in 0..64 {
                    match crate::schedule::cron_next(cron, timezone, fire) {
                        Some(next) if next < end => {
                            fire = next;
                            end = next + length;
                        }
                        _ => break,
                    }
                }
                Some(end)
            }
        }
    }
}

/// One `[[maintenance]]` window, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Maintenance {
    pub name: String,
    pub window: Window,
    pub matchers: Matchers,
    pub action: Action,
}

/// A silence: held alerts for the pairs it matches, from its start until
/// it expires (or is expired early through the API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Matchers,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub comment: String,
    pub created_by: String,
}

impl Silence {
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        self.created_at <= now && now < self.expires_at
    }
}

/// Why a pair is held.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Hold {
    /// In a maintenance window, until it closes.
    Maintenance {
        name: String,
        until: DateTime<Utc>,
        action: Action,
    },
    /// Silenced, until the silence expires.
    Silence { id: String, until: DateTime<Utc> },
}

impl Hold {
    /// Whether the pair's runs are skipped (not merely their alerts held).
    pub fn skips(&self) -> bool {
        matches!(
            self,
            Hold::Maintenance {
                action: Action::Skip,
                ..
            }
        )
    }

    /// `maintenance "db-upgrade" until 2025-06-01T04:00:00Z`.
    pub fn describe(&self) -> String {
        match self {
            Hold::Maintenance { name, until, .. } => {
                format!("maintenance \"{name}\" until {}", until.to_rfc3339())
            }
            Hold::Silence { id, until } => format!("silenced ({id}) until {}", until.to_rfc3339()),
        }
    }
}

/// The hold covering `pair` at `now`: a maintenance window first (a
/// skipping one before a holding one, so a run is skipped whenever any
/// window says so), else a silence (the one that lasts longest).
pub fn hold_of(
    maintenance: &[Maintenance],
    silences: &[Silence],
    pair: &Pair<'_>,
    now: DateTime<Utc>,
) -> Option<Hold> {
    let windows = maintenance
        .iter()
        .filter(|m| m.matchers.matches(pair))
        .filter_map(|m| m.window.open_until(now).map(|until| (m, until)));
    let window = windows.max_by_key(|(m, until)| (m.action == Action::Skip, *until));
    if let Some((m, until)) = window {
        return Some(Hold::Maintenance {
            name: m.name.clone(),
            until,
            action: m.action,
        });
    }
    silences
        .iter()
        .filter(|s| s.active(now) && s.matchers.matches(pair))
        .max_by_key(|s| s.expires_at)
        .map(|s| Hold::Silence {
            id: s.id.clone(),
            until: s.expires_at,
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cron(expression: &str, tz: &str, hours: u64) -> Window {
        Window::Cron {
            cron: Box::new(crate::schedule::parse_cron(expression).unwrap()),
            expression: expression.to_owned(),
            timezone: crate::schedule::parse_timezone(tz).unwrap(),
            duration: Duration::from_secs(hours * 3600),
        }
    }

    fn pair<'a>(
        probe: &'a str,
        environment: &'a str,
        tags: &'a [String],
        labels: &'a BTreeMap<String, String>,
    ) -> Pair<'a> {
        Pair {
            probe,
            environment,
            tags,
            labels,
        }
    }

    #[test]
    fn a_cron_window_is_open_from_each_fire_for_its_duration() {
        // Sundays at 02:00 in Berlin (CEST in June: 00:00 UTC), two hours.
        let w = cron("0 2 * * SUN", "Europe/Berlin", 2);
        // 2025-06-01 is a Sunday.
        assert_eq!(w.open_until(utc("2025-05-31T23:59:59Z")), None);
        assert_eq!(
            w.open_until(utc("2025-06-01T00:00:00Z")),
            Some(utc("2025-06-01T02:00:00Z"))
        );
        assert_eq!(
            w.open_until(utc("2025-06-01T01:59:59Z")),
            Some(utc("2025-06-01T02:00:00Z"))
        );
        assert_eq!(w.open_until(utc("2025-06-01T02:00:00Z")), None);
        assert_eq!(w.open_until(utc("2025-06-04T01:00:00Z")), None);
    }

    #[test]
    fn overlapping_cron_windows_are_one_window() {
        // Every hour for an hour: open until the next fire, which opens
        // the next window. For 90 minutes, the windows overlap: one window
        // whose end (the search is bounded) lies well beyond the next fire.
        let mut w = cron("0 * * * *", "UTC", 1);
        let now = utc("2025-06-01T10:30:00Z");
        assert_eq!(w.open_until(now), Some(utc("2025-06-01T11:00:00Z")));
        let Window::Cron { duration, .. } = &mut w else {
            unreachable!()
        };
        *duration = Duration::from_secs(5400);
        assert!(w.open_until(now).unwrap() > utc("2025-06-01T11:30:00Z"));
    }

    #[test]
    fn a_fixed_window_includes_its_start_and_excludes_its_end() {
        let w = Window::Fixed {
            from: utc("2025-06-01T10:00:00Z"),
            until: utc("2025-06-01T12:00:00Z"),
        };
        assert_eq!(w.open_until(utc("2025-06-01T09:59:59Z")), None);
        assert_eq!(
            w.open_until(utc("2025-06-01T10:00:00Z")),
            Some(utc("2025-06-01T12:00:00Z"))
        );
        assert_eq!(w.open_until(utc("2025-06-01T12:00:00Z")), None);
    }

    #[test]
    fn every_given_matcher_must_hold_and_none_matches_everything() {
        let tags = vec!["db".to_owned(), "smoke".to_owned()];
        let labels = BTreeMap::from([("team".to_owned(), "payments".to_owned())]);
        let p = pair("api", "prod", &tags, &labels);
        assert!(Matchers::default().matches(&p));
        let m = Matchers {
            probes: vec!["api".into(), "web".into()],
            environments: vec!["prod".into()],
            tags: vec!["db".into()],
            labels: labels.clone(),
        };
        assert!(m.matches(&p));
        for wrong in [
            Matchers {
                probes: vec!["web".into()],
                ..m.clone()
            },
            Matchers {
                environments: vec!["staging".into()],
                ..m.clone()
            },
            Matchers {
                tags: vec!["cache".into()],
                ..m.clone()
            },
            Matchers {
                labels: BTreeMap::from([("team".to_owned(), "search".to_owned())]),
                ..m.clone()
            },
        ] {
            assert!(!wrong.matches(&p), "{wrong:?}");
        }
    }

    #[test]
    fn a_skipping_window_wins_then_windows_then_the_longest_silence() {
        let (tags, labels) = (Vec::new(), BTreeMap::new());
        let p = pair("api", "prod", &tags, &labels);
        let now = utc("2025-06-01T10:00:00Z");
        let open = |hours: i64| Window::Fixed {
            from: now - chrono::TimeDelta::hours(1),
            until: now + chrono::TimeDelta::hours(hours),
        };
        let m = |name: &str, hours, action| Maintenance {
            name: name.into(),
            window: open(hours),
            matchers: Matchers::default(),
            action,
        };
        let silence = |id: &str, hours| Silence {
            id: id.into(),
            matchers: Matchers::default(),
            created_at: now - chrono::TimeDelta::hours(1),
            expires_at: now + chrono::TimeDelta::hours(hours),
            comment: String::new(),
            created_by: String::new(),
        };
        let silences = [silence("a", 1), silence("b", 3), silence("c", 0)];
        assert_eq!(
            hold_of(&[], &silences, &p, now),
            Some(Hold::Silence {
                id: "b".into(),
                until: now + chrono::TimeDelta::hours(3)
            })
        );
        let windows = [m("long", 5, Action::Hold), m("skip", 1, Action::Skip)];
        let hold = hold_of(&windows, &silences, &p, now).unwrap();
        assert!(hold.skips());
        assert!(hold.describe().starts_with("maintenance \"skip\""));
        assert_eq!(hold_of(&[], &[silence("c", 0)], &p, now), None);
    }
}
