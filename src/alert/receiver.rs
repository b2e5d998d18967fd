//! Receivers and routes as checked at load: the settings each delivery
//! needs (the assembly in `crate::plan` builds them from `[alerting]`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// `[alerting]`, checked: every receiver a route names exists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertingConfig {
    pub group_wait: Duration,
    pub receivers: BTreeMap<String, ReceiverConfig>,
    pub routes: Vec<super::route::Route>,
    pub default_receivers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReceiverKind {
    Webhook,
    Slack,
    PagerDuty { routing_key: String },
    Alertmanager,
    Email(EmailSettings),
}

/// How an email receiver secures its SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS; fails if the server does
    /// not offer it.
    StartTls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Implicit,
    /// No TLS at all: loopback servers only.
    None,
}

/// A checked email receiver. The password (and user name) may be secrets:
/// `Debug` never shows the password.
#[derive(Clone, PartialEq)]
pub struct EmailSettings {
    pub smtp_host: String,
    pub smtp_port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<String>,
    /// A mailbox: `ops@example.com` or `Synthmon <ops@example.com>`.
    pub from: String,
    /// At least one mailbox.
    pub to: Vec<String>,
    /// Extra trust anchors (PEM) added to the system roots.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for EmailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSettings")
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("tls", &self.tls)
            .field("username", &self.username.as_ref().map(|_| "<set>"))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .field("to", &self.to)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// A checked receiver. Header values, the HMAC secret and the routing key
/// may be secrets: never log them.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverConfig {
    pub name: String,
    pub kind: ReceiverKind,
    /// Where to deliver; for email receivers `smtp://host:port`, for
    /// display only (the settings are in [`ReceiverKind::Email`]).
    pub url: url::Url,
    pub headers: Vec<(String, String)>,
    pub hmac_secret: Option<String>,
    pub timeout: Duration,
    /// A webhook's body template and its content type, checked at load.
    pub template: Option<(String, String)>,
}
