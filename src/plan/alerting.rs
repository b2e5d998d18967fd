//! `[alerting]`: receivers (webhook presets and email) and routes, checked
//! into the alerting stage's settings. The one place that knows every
//! receiver type.

use crate::alert::receiver::{
    AlertingConfig, EmailSettings, ReceiverConfig, ReceiverKind, SmtpTls,
};
use crate::config::DEFAULT_GROUP_WAIT;
use crate::config::DEFAULT_RECEIVER_TIMEOUT;
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
        let mut receivers = BTreeMap::new();
        for (name, r) in raw.receivers {
            if let Some(built) = self.receiver(&name, r) {
                receivers.insert(name, built);
            }
        }
        let check_names = |checker: &mut Self, path: &str, names: &[String]| {
            for (i, name) in names.iter().enumerate() {
                if !receivers.contains_key(name) {
                    let mut d = checker.doc.error_at(
                        &format!("{path}[{i}]"),
                        format!("unknown receiver `{name}`"),
                    );
                    d.help = diag::nearest(name, receivers.keys().map(String::as_str))
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

    fn receiver(&mut self, name: &str, raw: raw::RawReceiver) -> Option<ReceiverConfig> {
        let path = format!("alerting.receivers.{name}");
        if raw.kind.as_deref() == Some("email") {
            return self.email_receiver(name, &path, raw);
        }
        let email_only = [
            ("smtp_host", raw.smtp_host.is_some()),
            ("smtp_port", raw.smtp_port.is_some()),
            ("tls", raw.tls.is_some()),
            ("username", raw.username.is_some()),
            ("password", raw.password.is_some()),
            ("from", raw.from.is_some()),
            ("to", raw.to.is_some()),
            ("ca_file", raw.ca_file.is_some()),
        ];
        for (key, set) in email_only {
            if set {
                self.err(
                    &format!("{path}.{key}"),
                    format!("`{key}` applies to email receivers only"),
                );
            }
        }
        let default_url = match raw.kind.as_deref() {
            Some("pagerduty") => Some("https://events.pagerduty.com/v2/enqueue"),
            _ => None,
        };
        let url_text = match raw.url.as_deref().or(default_url) {
            Some(u) => self.expand(&format!("{path}.url"), u)?,
            None => {
                self.diags.push(
                    self.doc
                        .error_at_key(&path, "missing required key `url`".to_owned()),
                );
                return None;
            }
        };
        let url = match url::Url::parse(&url_text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            _ => {
                // Never echo the value: it may hold a secret token.
                self.err(&format!("{path}.url"), "expected an http(s) URL");
                return None;
            }
        };
        let kind = match raw.kind.as_deref() {
            None | Some("webhook") => ReceiverKind::Webhook,
            Some("slack") => ReceiverKind::Slack,
            Some("alertmanager") => ReceiverKind::Alertmanager,
            Some("pagerduty") => match raw.routing_key.as_deref() {
                Some(k) => ReceiverKind::PagerDuty {
                    routing_key: self.expand(&format!("{path}.routing_key"), k)?,
                },
                None => {
                    self.diags.push(self.doc.error_at_key(
                        &path,
                        "missing required key `routing_key` for a pagerduty receiver".to_owned(),
                    ));
                    return None;
                }
            },
            Some(other) => {
                let kinds = ["webhook", "slack", "pagerduty", "alertmanager", "email"];
                let mut d = self.doc.error_at(
                    &format!("{path}.type"),
                    format!(
                        "unknown receiver type `{other}` (expected one of `webhook`, `slack`, `pagerduty`, `alertmanager`, `email`)"
                    ),
                );
                d.help = diag::nearest(other, kinds).map(|n| format!("did you mean `{n}`?"));
                self.diags.push(d);
                return None;
            }
        };
        if raw.routing_key.is_some() && !matches!(kind, ReceiverKind::PagerDuty { .. }) {
            self.err(
                &format!("{path}.routing_key"),
                "`routing_key` applies to pagerduty receivers only",
            );
        }
        let mut headers = Vec::new();
        for (k, v) in raw.headers {
            if let Some(v) = self.expand(&format!("{path}.headers.{k}"), &v) {
                headers.push((k, v));
            }
        }
        let hmac_secret = match raw.hmac_secret {
            Some(s) => Some(self.expand(&format!("{path}.hmac_secret"), &s)?),
            None => None,
        };
        let timeout = self.duration(
            &format!("{path}.timeout"),
            raw.timeout.as_deref(),
            DEFAULT_RECEIVER_TIMEOUT,
        );
        let template = match (&kind, raw.template) {
            (_, None) => {
                if raw.content_type.is_some() {
                    self.err(
                        &format!("{path}.content_type"),
                        "`content_type` goes with `template`",
                    );
                }
                None
            }
            (ReceiverKind::Webhook, Some(source)) => {
                if let Err(e) = minijinja::Environment::new().template_from_str(&source) {
                    self.err(
                        &format!("{path}.template"),
                        format!("invalid body template: {e}"),
                    );
                }
                let content_type = raw
                    .content_type
                    .unwrap_or_else(|| "application/json".to_owned());
                Some((source, content_type))
            }
            (_, Some(_)) => {
                self.err(
                    &format!("{path}.template"),
                    "`template` applies to webhook receivers only",
                );
                None
            }
        };
        Some(ReceiverConfig {
            name: name.to_owned(),
            kind,
            url,
            headers,
            hmac_secret,
            timeout,
            template,
        })
    }

    /// A `type = "email"` receiver: SMTP settings instead of a URL.
    fn email_receiver(
        &mut self,
        name: &str,
        path: &str,
        raw: raw::RawReceiver,
    ) -> Option<ReceiverConfig> {
        let mut ok = true;
        for (key, set) in [
            ("url", raw.url.is_some()),
            ("routing_key", raw.routing_key.is_some()),
            ("hmac_secret", raw.hmac_secret.is_some()),
            ("headers", !raw.headers.is_empty()),
            ("template", raw.template.is_some()),
            ("content_type", raw.content_type.is_some()),
        ] {
            if set {
                self.err(
                    &format!("{path}.{key}"),
                    format!("`{key}` does not apply to email receivers"),
                );
                ok = false;
            }
        }
        let missing = |checker: &mut Self, key: &str| {
            checker.diags.push(checker.doc.error_at_key(
                path,
                format!("missing required key `{key}` for an email receiver"),
            ));
        };
        let host = match raw.smtp_host.as_deref().map(str::trim) {
            Some(h) if !h.is_empty() => Some(h.trim_matches(['[', ']']).to_owned()),
            Some(_) => {
                self.err(
                    &format!("{path}.smtp_host"),
                    "expected a host name or address",
                );
                None
            }
            None => {
                missing(self, "smtp_host");
                None
            }
        };
        let port = raw.smtp_port.unwrap_or(587);
        if port == 0 {
            self.err(
                &format!("{path}.smtp_port"),
                "expected a port from 1 to 65535",
            );
            ok = false;
        }
        let tls = match raw.tls.as_deref() {
            None | Some("starttls") => Some(SmtpTls::StartTls),
            Some("implicit") => Some(SmtpTls::Implicit),
            Some("none") => Some(SmtpTls::None),
            Some(other) => {
                let modes = ["starttls", "implicit", "none"];
                let mut d = self.doc.error_at(
                    &format!("{path}.tls"),
                    format!(
                        "unknown tls mode `{other}` (expected one of `starttls`, `implicit`, `none`)"
                    ),
                );
                d.help = diag::nearest(other, modes).map(|n| format!("did you mean `{n}`?"));
                self.diags.push(d);
                None
            }
        };
        if let (Some(SmtpTls::None), Some(h)) = (tls, host.as_deref()) {
            let loopback = h.eq_ignore_ascii_case("localhost")
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                let mut d = self.doc.error_at(
                    &format!("{path}.tls"),
                    format!(
                        "`tls = \"none\"` would send the password and alerts in clear text to `{h}`; it is allowed for loopback hosts only"
                    ),
                );
                d.help = Some("use `starttls` (port 587) or `implicit` (port 465)".to_owned());
                self.diags.push(d);
                ok = false;
            }
        }
        let username = match raw.username.as_deref() {
            Some(u) => Some(self.expand(&format!("{path}.username"), u)?),
            None => None,
        };
        let password = match raw.password.as_deref() {
            Some(p) => Some(self.expand(&format!("{path}.password"), p)?),
            None => None,
        };
        if username.is_some() != password.is_some() {
            self.diags.push(self.doc.error_at_key(
                path,
                "`username` and `password` go together: set both or neither".to_owned(),
            ));
            ok = false;
        }
        let from = match raw.from.as_deref() {
            Some(f) => match f.parse::<lettre::message::Mailbox>() {
                Ok(_) => Some(f.to_owned()),
                Err(e) => {
                    self.err(
                        &format!("{path}.from"),
                        format!("`{f}` is not an email address: {e}"),
                    );
                    None
                }
            },
            None => {
                missing(self, "from");
                None
            }
        };
        let to = match raw.to {
            Some(to) if to.is_empty() => {
                self.err(&format!("{path}.to"), "expected at least one recipient");
                None
            }
            Some(to) => {
                let mut good = true;
                for (i, t) in to.iter().enumerate() {
                    if let Err(e) = t.parse::<lettre::message::Mailbox>() {
                        self.err(
                            &format!("{path}.to[{i}]"),
                            format!("`{t}` is not an email address: {e}"),
                        );
                        good = false;
                    }
                }
                good.then_some(to)
            }
            None => {
                missing(self, "to");
                None
            }
        };
        let timeout = self.duration(
            &format!("{path}.timeout"),
            raw.timeout.as_deref(),
            DEFAULT_RECEIVER_TIMEOUT,
        );
        let (Some(host), Some(tls), Some(from), Some(to), true) = (host, tls, from, to, ok) else {
            return None;
        };
        let display = if host.contains(':') {
            format!("smtp://[{host}]:{port}")
        } else {
            format!("smtp://{host}:{port}")
        };
        let Ok(url) = url::Url::parse(&display) else {
            self.err(
                &format!("{path}.smtp_host"),
                format!("`{host}` is not a valid host"),
            );
            return None;
        };
        Some(ReceiverConfig {
            name: name.to_owned(),
            kind: ReceiverKind::Email(EmailSettings {
                smtp_host: host,
                smtp_port: port,
                tls,
                username,
                password,
                from,
                to,
                ca_file: raw.ca_file.map(|f| self.base_dir.join(f)),
            }),
            url,
            headers: Vec::new(),
            hmac_secret: None,
            timeout,
            template: None,
        })
    }
}
