//! Routing: which receivers hear about a notification.
//!
//! Routes are checked in order. A route matches when every condition it
//! sets holds (unset conditions match anything): severity at least its
//! minimum, environment in its list, every label it names equal, and at
//! least one of its tags present. The first matching route's receivers get
//! the notification; a route with `continue = true` lets evaluation go on
//! to later routes, whose receivers are added. When no route matched, the
//! default receivers get it. Each receiver appears once in the result, in
//! the order first reached.

use super::Notification;
use crate::config::Severity;
use std::collections::BTreeMap;

/// One route: conditions, receivers, and whether to keep looking.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Route {
    /// Matches notifications of this severity or higher.
    pub min_severity: Option<Severity>,
    pub environments: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub tags: Vec<String>,
    pub receivers: Vec<String>,
    pub continue_: bool,
}

impl Route {
    pub fn matches(&self, n: &Notification) -> bool {
        self.min_severity.is_none_or(|min| n.severity >= min)
            && (self.environments.is_empty() || self.environments.contains(&n.environment))
            && self.labels.iter().all(|(k, v)| n.labels.get(k) == Some(v))
            && (self.tags.is_empty() || self.tags.iter().any(|t| n.tags.contains(t)))
    }
}

/// The receivers for `n`.
pub fn receivers_for(routes: &[Route], defaults: &[String], n: &Notification) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut matched = false;
    for route in routes {
        if !route.matches(n) {
            continue;
        }
        matched = true;
        for r in &route.receivers {
            if !out.contains(r) {
                out.push(r.clone());
            }
        }
        if !route.continue_ {
            break;
        }
    }
    if !matched {
        for r in defaults {
            if !out.contains(r) {
                out.push(r.clone());
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::alert::{AlertKind, Notice, fingerprint};

    fn note(severity: Severity, env: &str, labels: &[(&str, &str)], tags: &[&str]) -> Notification {
        let now = chrono::Utc::now();
        Notification {
            fingerprint: fingerprint("p", env, AlertKind::Failing),
            notice: Notice::Trigger,
            kind: AlertKind::Failing,
            probe: "p".into(),
            environment: env.into(),
            severity,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            starts_at: now,
            ends_at: None,
            expires_at: None,
            at: now,
            sequence: 0,
            summary: String::new(),
            reason: None,
            error: None,
            failed_checks: vec![],
            thresholds: vec![],
            run_id: String::new(),
            trace_id: String::new(),
            artifact_url: None,
        }
    }

    fn route(f: impl FnOnce(&mut Route), receivers: &[&str], cont: bool) -> Route {
        let mut r = Route {
            receivers: receivers.iter().map(|s| (*s).to_owned()).collect(),
            continue_: cont,
            ..Route::default()
        };
        f(&mut r);
        r
    }

    #[test]
    fn first_match_wins_continue_adds_defaults_only_when_nothing_matched() {
        let routes = vec![
            route(
                |r| r.min_severity = Some(Severity::Critical),
                &["pager"],
                true,
            ),
            route(
                |r| r.environments = vec!["prod".into()],
                &["prod-chat", "pager"],
                false,
            ),
            route(|r| r.tags = vec!["api".into()], &["api-team"], false),
        ];
        let defaults = vec!["catch-all".to_owned()];
        let cases: Vec<(Notification, Vec<&str>)> = vec![
            // Critical in prod: the first route continues into the second,
            // which stops; `pager` appears once.
            (
                note(Severity::Critical, "prod", &[], &["api"]),
                vec!["pager", "prod-chat"],
            ),
            // Warning in prod: the second route.
            (
                note(Severity::Warning, "prod", &[], &["api"]),
                vec!["prod-chat", "pager"],
            ),
            // Staging with the api tag: the third.
            (
                note(Severity::Warning, "staging", &[], &["api"]),
                vec!["api-team"],
            ),
            // Nothing matched: the defaults.
            (note(Severity::Info, "staging", &[], &[]), vec!["catch-all"]),
            // Critical in staging: first route only (continue, then nothing).
            (note(Severity::Critical, "staging", &[], &[]), vec!["pager"]),
        ];
        for (n, want) in cases {
            assert_eq!(
                receivers_for(&routes, &defaults, &n),
                want,
                "{:?} {} {:?}",
                n.severity,
                n.environment,
                n.tags
            );
        }
    }

    #[test]
    fn labels_must_all_match() {
        let r = route(
            |r| {
                r.labels = [("team", "orders"), ("tier", "1")]
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect()
            },
            &["orders"],
            false,
        );
        assert!(r.matches(&note(
            Severity::Info,
            "e",
            &[("team", "orders"), ("tier", "1")],
            &[]
        )));
        assert!(!r.matches(&note(Severity::Info, "e", &[("team", "orders")], &[])));
        assert!(!r.matches(&note(
            Severity::Info,
            "e",
            &[("team", "search"), ("tier", "1")],
            &[]
        )));
    }
}
