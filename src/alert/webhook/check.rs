//! Checking a `webhook`, `slack`, `pagerduty` or `alertmanager` table
//! (`[alerting.receivers.NAME]`) into the receiver that delivers it; keys
//! meant for another type are reported in this type's words.

use super::payload::CONTENT_TYPE;
use super::spec::{Preset, WebhookReceiver};
use crate::alert::deliver::SharedReceiver;
use crate::alert::receiver::ReceiverInput;
use crate::config::DEFAULT_RECEIVER_TIMEOUT;
use crate::config::check::Checker;
use crate::config::raw::RawReceiver;

/// PagerDuty's Events API v2, where a `pagerduty` receiver without `url`
/// sends.
const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// Checks a `webhook`, `slack`, `pagerduty` or `alertmanager` table into
/// the receiver that delivers it.
pub(super) fn build(
    c: &mut Checker<'_>,
    input: &ReceiverInput<'_>,
    raw: RawReceiver,
) -> Option<SharedReceiver> {
    let path = input.path;
    input.report_misplaced(c, |key, owners| {
        format!("`{key}` applies to {} receivers only", owners.join(", "))
    });
    let default_url = (input.type_name == "pagerduty").then_some(PAGERDUTY_URL);
    let url_text = match raw.url.as_deref().or(default_url) {
        Some(u) => c.expand(&format!("{path}.url"), u)?,
        None => {
            c.diags.push(
                c.doc
                    .error_at_key(path, "missing required key `url`".to_owned()),
            );
            return None;
        }
    };
    let mut url = match url::Url::parse(&url_text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u,
        _ => {
            // Never echo the value: it may hold a secret token.
            c.err(&format!("{path}.url"), "expected an http(s) URL");
            return None;
        }
    };
    let mut preset = match input.type_name {
        "slack" => Preset::Slack,
        "alertmanager" => Preset::Alertmanager,
        "pagerduty" => match raw.routing_key.as_deref() {
            Some(k) => Preset::PagerDuty {
                routing_key: c.secret(&format!("{path}.routing_key"), k)?,
            },
            None => {
                c.diags.push(c.doc.error_at_key(
                    path,
                    "missing required key `routing_key` for a pagerduty receiver".to_owned(),
                ));
                return None;
            }
        },
        _ => Preset::Generic,
    };
    if raw.routing_key.is_some() && !matches!(preset, Preset::PagerDuty { .. }) {
        c.err(
            &format!("{path}.routing_key"),
            "`routing_key` applies to pagerduty receivers only",
        );
    }
    let mut headers = Vec::new();
    for (k, v) in raw.headers {
        if let Some(v) = c.expand(&format!("{path}.headers.{k}"), &v) {
            headers.push((k, v));
        }
    }
    let hmac_secret = match raw.hmac_secret {
        Some(s) => Some(c.secret(&format!("{path}.hmac_secret"), &s)?),
        None => None,
    };
    let timeout = c.duration(
        &format!("{path}.timeout"),
        raw.timeout.as_deref(),
        DEFAULT_RECEIVER_TIMEOUT,
    );
    match (&preset, raw.template) {
        (_, None) => {
            if raw.content_type.is_some() {
                c.err(
                    &format!("{path}.content_type"),
                    "`content_type` goes with `template`",
                );
            }
        }
        (Preset::Generic, Some(source)) => {
            let env = minijinja::Environment::new();
            if let Err(e) = env.template_from_str(&source) {
                c.err(
                    &format!("{path}.template"),
                    format!("invalid body template: {e}"),
                );
            } else if let Err(e) = crate::template::check_applied_in(&env, &source) {
                // A filter is looked up only when a notification renders.
                c.err(
                    &format!("{path}.template"),
                    format!("invalid body template: {e}"),
                );
            }
            let content_type = raw.content_type.unwrap_or_else(|| CONTENT_TYPE.to_owned());
            preset = Preset::Template {
                source,
                content_type,
            };
        }
        (_, Some(_)) => {
            c.err(
                &format!("{path}.template"),
                "`template` applies to webhook receivers only",
            );
        }
    }
    // A bare Alertmanager address gets the v2 alerts path.
    if preset == Preset::Alertmanager && (url.path() == "/" || url.path().is_empty()) {
        url.set_path("/api/v2/alerts");
    }
    Some(std::sync::Arc::new(WebhookReceiver {
        name: input.name.to_owned(),
        url,
        preset,
        headers,
        hmac_secret,
        timeout,
    }))
}
