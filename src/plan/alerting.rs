//! `[alerting]`: receivers and routes, checked into the alerting stage's
//! settings. Each receiver table goes to the registry entry of its `type`
//! ([`crate::alert::receivers::RECEIVERS`]), which checks it and builds the
//! receiver; this file knows no receiver type.

use crate::alert::receiver::{
    AlertingConfig, Misplaced, ReceiverConfig, ReceiverEntry, ReceiverInput,
};
use crate::alert::receivers::{DEFAULT_TYPE, RECEIVERS};
use crate::config::DEFAULT_GROUP_WAIT;
use crate::config::check::Checker;
use crate::config::raw;
use crate::diag;
use std::collections::BTreeMap;

impl Checker<'_> {
    pub(super) fn alerting(&mut self, raw: raw::RawAlerting) -> AlertingConfig {
        let group_wait = self.duration(
            "alerting.group_wait",
            raw.group_wait.as_deref(),
            DEFAULT_GROUP_WAIT,
        );
        // Routes are checked against every receiver written, built or not:
        // one that failed (its own errors are reported) or whose secrets
        // were not read (`--once` without `--alert`) is still not unknown.
        let declared: Vec<String> = raw.receivers.keys().cloned().collect();
        let mut receivers = BTreeMap::new();
        for (name, r) in raw.receivers {
            if let Some(built) = self.receiver(&name, r) {
                receivers.insert(name, built);
            }
        }
        let check_names = |checker: &mut Self, path: &str, names: &[String]| {
            for (i, name) in names.iter().enumerate() {
                if !declared.contains(name) {
                    let mut d = checker.doc.error_at(
                        &format!("{path}[{i}]"),
                        format!("unknown receiver `{name}`"),
                    );
                    d.help = diag::nearest(name, declared.iter().map(String::as_str))
                        .map(|n| format!("did you mean `{n}`?"));
                    checker.diags.push(d);
                }
            }
        };
        check_names(self, "alerting.default_receivers", &raw.default_receivers);
        let mut routes = Vec::new();
        for (i, r) in raw.routes.into_iter().enumerate() {
            let path = format!("alerting.routes[{i}]");
            if r.receivers.is_empty() {
                self.diags.push(
                    self.doc
                        .error_at_key(&path, "a route needs at least one receiver".to_owned()),
                );
            }
            check_names(self, &format!("{path}.receivers"), &r.receivers);
            routes.push(crate::alert::route::Route {
                min_severity: r.severity,
                environments: r.environments,
                labels: r.labels,
                tags: r.tags,
                receivers: r.receivers,
                continue_: r.continue_,
            });
        }
        AlertingConfig {
            group_wait,
            receivers,
            routes,
            default_receivers: raw.default_receivers,
        }
    }

    /// Hands `[alerting.receivers.NAME]` to the registry entry of its
    /// `type`, with the keys it holds that the entry does not read.
    fn receiver(&mut self, name: &str, raw: raw::RawReceiver) -> Option<ReceiverConfig> {
        let path = format!("alerting.receivers.{name}");
        let written = raw.kind.as_deref().unwrap_or(DEFAULT_TYPE);
        let Some((entry, type_name)) = entry_for(written) else {
            let types = || RECEIVERS.iter().flat_map(|e| e.types.iter().copied());
            let expected = types().map(|t| format!("`{t}`")).collect::<Vec<_>>();
            let mut d = self.doc.error_at(
                &format!("{path}.type"),
                format!(
                    "unknown receiver type `{written}` (expected one of {})",
                    expected.join(", ")
                ),
            );
            d.help = diag::nearest(written, types()).map(|n| format!("did you mean `{n}`?"));
            self.diags.push(d);
            return None;
        };
        let misplaced: Vec<Misplaced> = raw
            .set_keys()
            .into_iter()
            .filter(|key| !entry.keys.contains(key))
            .map(|key| Misplaced {
                key,
                owners: RECEIVERS
                    .iter()
                    .filter(|e| e.keys.contains(&key))
                    .flat_map(|e| e.types.iter().copied())
                    .collect(),
            })
            .collect();
        let input = ReceiverInput {
            name,
            path: &path,
            type_name,
            misplaced: &misplaced,
        };
        let receiver = (entry.build)(self, &input, raw)?;
        Some(ReceiverConfig {
            type_name,
            receiver,
        })
    }
}

/// The registry entry handling `type_name`, and the type as it lists it.
fn entry_for(type_name: &str) -> Option<(&'static ReceiverEntry, &'static str)> {
    RECEIVERS
        .iter()
        .find_map(|e| e.types.iter().find(|t| **t == type_name).map(|t| (e, *t)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::diag::{Diagnostics, SourceDoc};
    use crate::secret::Redactor;
    use std::path::Path;

    fn check(text: &str) -> (AlertingConfig, Diagnostics) {
        let doc = SourceDoc::parse("config.toml", text).unwrap();
        let raw: raw::RawConfig = toml::from_str(text).unwrap();
        let mut diags = Diagnostics::default();
        let mut redactor = Redactor::default();
        let alerting =
            Checker::new(&doc, &mut diags, &mut redactor, Path::new(".")).alerting(raw.alerting);
        diags.sort();
        (alerting, diags)
    }

    #[test]
    fn an_unknown_type_is_located_and_lists_the_registry() {
        let (alerting, diags) = check(
            "[alerting]\ndefault_receivers = [\"chat\"]\n\n[alerting.receivers.chat]\ntype = \"slakc\"\nurl = \"http://127.0.0.1:9/\"\n",
        );
        let types: Vec<String> = RECEIVERS
            .iter()
            .flat_map(|e| e.types.iter().map(|t| format!("`{t}`")))
            .collect();
        // Not built, but written: the route naming it is not an error too.
        assert_eq!(diags.len(), 1, "{diags}");
        assert!(alerting.receivers.is_empty());
        let d = &diags.0[0];
        assert_eq!(
            (d.line, d.column, d.key.as_str()),
            (5, 8, "alerting.receivers.chat.type")
        );
        assert_eq!(
            d.message,
            format!(
                "unknown receiver type `slakc` (expected one of {})",
                types.join(", ")
            )
        );
        assert_eq!(d.help.as_deref(), Some("did you mean `slack`?"));
    }

    #[test]
    fn types_reach_their_entries_and_foreign_keys_are_reported() {
        let (alerting, diags) = check(
            "[alerting.receivers.hook]\nurl = \"http://127.0.0.1:9/\"\n\n[alerting.receivers.am]\ntype = \"alertmanager\"\nurl = \"http://127.0.0.1:9093\"\n",
        );
        assert!(diags.is_empty(), "{diags}");
        let hook = &alerting.receivers["hook"];
        assert_eq!(hook.type_name, DEFAULT_TYPE);
        assert_eq!(hook.receiver.name(), "hook");
        assert!(!hook.receiver.expires_alerts());
        assert!(alerting.receivers["am"].receiver.expires_alerts());

        let (alerting, diags) = check(
            "[alerting.receivers.hook]\nurl = \"http://127.0.0.1:9/\"\nsmtp_port = 25\n\n[alerting.receivers.mail]\ntype = \"email\"\nsmtp_host = \"127.0.0.1\"\ntls = \"none\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\nhmac_secret = \"x\"\n",
        );
        let got: Vec<(&str, &str)> = diags
            .iter()
            .map(|d| (d.key.as_str(), d.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "alerting.receivers.hook.smtp_port",
                    "`smtp_port` applies to email receivers only"
                ),
                (
                    "alerting.receivers.mail.hmac_secret",
                    "`hmac_secret` does not apply to email receivers"
                ),
            ]
        );
        // A misplaced key does not stop a webhook from being built; it
        // does an email receiver (as before the registry).
        assert!(alerting.receivers.contains_key("hook"));
        assert!(!alerting.receivers.contains_key("mail"));
    }
}
