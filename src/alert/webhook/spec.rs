//! A configured webhook receiver ([`WebhookReceiver`]) and how its body is
//! shaped ([`Preset`]); their `Debug` output hides every secret.

use crate::alert::deliver::SharedReceiver;
use std::fmt;
use std::time::Duration;

/// How a receiver's body is shaped.
#[derive(Clone, PartialEq, Eq)]
pub enum Preset {
    /// synthmon's versioned JSON document (`docs/webhook-v1.schema.json`).
    Generic,
    /// A Slack incoming webhook.
    Slack,
    /// PagerDuty Events API v2; the routing key is a secret.
    PagerDuty { routing_key: String },
    /// Prometheus Alertmanager's v2 API (`/api/v2/alerts`).
    Alertmanager,
    /// The generic v1 document rendered through a user's minijinja
    /// template (checked at load), sent with `content_type`.
    Template {
        source: String,
        content_type: String,
    },
}

impl Preset {
    /// The preset's name as configured.
    pub fn name(&self) -> &'static str {
        match self {
            Preset::Generic => "generic",
            Preset::Slack => "slack",
            Preset::PagerDuty { .. } => "pagerduty",
            Preset::Alertmanager => "alertmanager",
            Preset::Template { .. } => "template",
        }
    }

    /// Whether a batch goes out as one request per notification.
    pub fn one_request_per_notification(&self) -> bool {
        matches!(self, Preset::PagerDuty { .. })
    }
}

impl fmt::Debug for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The routing key is a secret.
        f.write_str(self.name())
    }
}

/// One configured webhook receiver.
#[derive(Clone)]
pub struct WebhookReceiver {
    /// Unique among receivers; names the outbox rows and the logs.
    pub name: String,
    /// Where to POST. May itself be a secret (Slack): never logged.
    pub url: url::Url,
    pub preset: Preset,
    /// Extra request headers (e.g. `Authorization`); values are never logged.
    pub headers: Vec<(String, String)>,
    /// Signs bodies with HMAC-SHA256 when set. A secret: never logged.
    pub hmac_secret: Option<String>,
    /// Bounds one whole attempt, connect to last response byte.
    pub timeout: Duration,
}

impl fmt::Debug for WebhookReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL, header values and the secret may all be secrets.
        f.debug_struct("WebhookReceiver")
            .field("name", &self.name)
            .field("preset", &self.preset)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("signed", &self.hmac_secret.is_some())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl From<WebhookReceiver> for SharedReceiver {
    fn from(r: WebhookReceiver) -> SharedReceiver {
        std::sync::Arc::new(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::webhook::fixtures::receiver;
    #[test]
    fn debug_output_hides_secrets() {
        let r = receiver(Preset::PagerDuty {
            routing_key: "R0UTING".into(),
        });
        let text = format!("{r:?}");
        for secret in ["R0UTING", "s3cret", "secret-path", "hmac-s3cret"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}
