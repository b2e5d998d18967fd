//! Checking the settings that let the monitor hold its own alerts:
//! `[[maintenance]]` windows and `[daemon] self_check`. Every error is
//! located at its key (`maintenance[1].cron`, `daemon.self_check.targets[0]`)
//! and all of them are reported in one run, like the rest of the file.

use super::check::{Checker, valid_name};
use super::raw::{RawMaintenance, RawSelfCheck};
use super::{SelfCheck, SelfCheckTarget};
use crate::hold::{Action, Maintenance, Matchers, Window};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use std::time::Duration;

/// The default `self_check.every`.
pub const DEFAULT_SELF_CHECK_EVERY: Duration = Duration::from_secs(30);
/// The default deadline of one self-check try.
pub const DEFAULT_SELF_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest cron window: a week (longer is a schedule, not maintenance).
const MAX_WINDOW: Duration = Duration::from_secs(7 * 86_400);

impl Checker<'_> {
    /// `[[maintenance]]`: each window's schedule, matchers and action.
    /// `environments`: the configured environment names, which a matcher
    /// must name (a typo would otherwise silently hold nothing).
    pub fn maintenance(
        &mut self,
        raw: Vec<RawMaintenance>,
        environments: &BTreeSet<String>,
    ) -> Vec<Maintenance> {
        let mut names = BTreeSet::new();
        let mut out = Vec::new();
        for (i, m) in raw.into_iter().enumerate() {
            let path = format!("maintenance[{i}]");
            let name = match m.name.as_deref() {
                None => {
                    self.missing(&path, "name");
                    None
                }
                Some(n) if !valid_name(n) => {
                    self.err(
                        &format!("{path}.name"),
                        format!(
                            "expected a name of letters, digits, `_`, `.` and `-`, found `{n}`"
                        ),
                    );
                    None
                }
                Some(n) if !names.insert(n.to_owned()) => {
                    self.err(
                        &format!("{path}.name"),
                        format!("another window is already named `{n}`"),
                    );
                    None
                }
                Some(n) => Some(n.to_owned()),
            };
            let window = self.window(&path, &m);
            for (j, e) in m.environments.iter().enumerate() {
                if !environments.contains(e) {
                    let known: Vec<&str> = environments.iter().map(String::as_str).collect();
                    self.err(
                        &format!("{path}.environments[{j}]"),
                        format!(
                            "unknown environment `{e}`; the config has {}",
                            if known.is_empty() {
                                "none".to_owned()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                }
            }
            let action = match m.action.as_deref() {
                None | Some("hold") => Action::Hold,
                Some("skip") => Action::Skip,
                Some(other) => {
                    self.err(
                        &format!("{path}.action"),
                        format!("expected `hold` or `skip`, found `{other}`"),
                    );
                    Action::Hold
                }
            };
            if let (Some(name), Some(window)) = (name, window) {
                out.push(Maintenance {
                    name,
                    window,
                    matchers: Matchers {
                        probes: m.probes,
                        environments: m.environments,
                        tags: m.tags,
                        labels: m.labels,
                    },
                    action,
                });
            }
        }
        out
    }

    /// A window's schedule: `cron` + `duration` (+ `timezone`), or `from`
    /// + `until`, never both.
    fn window(&mut self, path: &str, m: &RawMaintenance) -> Option<Window> {
        let fixed = m.from.is_some() || m.until.is_some();
        match (&m.cron, fixed) {
            (Some(_), true) => {
                self.err(
                    &format!("{path}.cron"),
                    "expected either `cron` + `duration` or `from` + `until`, not both",
                );
                None
            }
            (None, false) => {
                self.err(
                    path,
                    "a maintenance window needs a schedule: `cron` + `duration` \
                     (like `cron = \"0 2 * * SUN\"`, `duration = \"2h\"`) or `from` + `until` \
                     (RFC 3339 times)",
                );
                None
            }
            (Some(expression), false) => {
                let cron = crate::schedule::parse_cron(expression)
                    .map_err(|e| self.err(&format!("{path}.cron"), e))
                    .ok();
                let timezone =
                    crate::schedule::parse_timezone(m.timezone.as_deref().unwrap_or("UTC"))
                        .map_err(|e| self.err(&format!("{path}.timezone"), e))
                        .ok();
                let duration = match m.duration.as_deref() {
                    None => {
                        self.missing(path, "duration");
                        None
                    }
                    Some(text) => match super::check::parse_duration(text, MAX_WINDOW) {
                        Ok(d) if d.is_zero() => {
                            self.err(&format!("{path}.duration"), "expected more than 0s");
                            None
                        }
                        Ok(d) => Some(d),
                        Err(e) => {
                            self.err(&format!("{path}.duration"), e);
                            None
                        }
                    },
                };
                Some(Window::Cron {
                    cron: Box::new(cron?),
                    expression: expression.clone(),
                    timezone: timezone?,
                    duration: duration?,
                })
            }
            (None, true) => {
                if m.timezone.is_some() {
                    self.err(
                        &format!("{path}.timezone"),
                        "`timezone` applies to `cron` windows; `from` and `until` carry their offset",
                    );
                }
                if m.duration.is_some() {
                    self.err(
                        &format!("{path}.duration"),
                        "`duration` applies to `cron` windows; a `from` + `until` window ends at `until`",
                    );
                }
                let from = self.instant(path, "from", m.from.as_deref());
                let until = self.instant(path, "until", m.until.as_deref());
                let (from, until) = (from?, until?);
                if until <= from {
                    self.err(
                        &format!("{path}.until"),
                        format!(
                            "expected a time after `from` ({}), found {}",
                            from.to_rfc3339(),
                            until.to_rfc3339()
                        ),
                    );
                    return None;
                }
                Some(Window::Fixed { from, until })
            }
        }
    }

    /// An RFC 3339 time at `path.key`.
    fn instant(&mut self, path: &str, key: &str, raw: Option<&str>) -> Option<DateTime<Utc>> {
        let Some(text) = raw else {
            self.missing(path, key);
            return None;
        };
        match DateTime::parse_from_rfc3339(text.trim()) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(e) => {
                self.err(
                    &format!("{path}.{key}"),
                    format!(
                        "expected an RFC 3339 time like `2025-06-01T02:00:00Z`, found `{text}` ({e})"
                    ),
                );
                None
            }
        }
    }

    /// `[daemon] self_check`: `None` (off) when absent or without targets.
    /// Targets are `host:port` (a TCP connect) or `http(s)://` URLs (a GET).
    /// There is no default target: a monitor should not send traffic
    /// anywhere its operator did not name.
    pub fn self_check(&mut self, raw: Option<RawSelfCheck>) -> Option<SelfCheck> {
        const PATH: &str = "daemon.self_check";
        let raw = raw?;
        let every = self.duration_at_most(
            &format!("{PATH}.every"),
            raw.every.as_deref(),
            DEFAULT_SELF_CHECK_EVERY,
            Duration::from_secs(3600),
        );
        if every < Duration::from_secs(1) {
            self.err(&format!("{PATH}.every"), "expected at least `1s`");
        }
        let timeout = self.duration_at_most(
            &format!("{PATH}.timeout"),
            raw.timeout.as_deref(),
            DEFAULT_SELF_CHECK_TIMEOUT.min(every),
            Duration::from_secs(60),
        );
        let mut targets = Vec::new();
        for (i, t) in raw.targets.iter().enumerate() {
            let at = format!("{PATH}.targets[{i}]");
            if t.contains("://") {
                match url::Url::parse(t) {
                    Ok(u)
                        if matches!(u.scheme(), "http" | "https")
                            && u.host_str().is_some()
                            && u.username().is_empty()
                            && u.password().is_none() =>
                    {
                        targets.push(SelfCheckTarget::Http(u));
                    }
                    _ => self.err(
                        &at,
                        format!(
                            "expected `host:port` or an http(s) URL without credentials, found `{t}`"
                        ),
                    ),
                }
            } else {
                match crate::net::dial::parse_address(t) {
                    Ok(_) => targets.push(SelfCheckTarget::Tcp(t.trim().to_owned())),
                    Err(e) => self.err(&at, e),
                }
            }
        }
        if targets.is_empty() {
            if raw.targets.is_empty() {
                self.err(
                    &format!("{PATH}.targets"),
                    "expected at least one target (`host:port` or a URL): the self-check has no \
                     default, so it sends nothing anywhere unless told where",
                );
            }
            return None;
        }
        Some(SelfCheck {
            targets,
            every,
            timeout,
        })
    }
}
