//! Email receivers: one message per batch over SMTP (via `lettre`), with a
//! plain-text and an HTML part, and one attempt to deliver it.
//!
//! TLS is rustls with the ring provider (no aws-lc or OpenSSL): `starttls`
//! (the default) upgrades a plain connection and fails when the server does
//! not offer STARTTLS (it never falls back to clear text), `implicit` speaks
//! TLS from the first byte, `none` is for loopback servers only (the config
//! refuses it for anything else). The trust is the net layer's (the system
//! roots plus the receiver's `ca_file`), and a bad certificate is worded as
//! for every probe kind.
//!
//! The whole attempt (connect, TLS, AUTH, MAIL/RCPT/DATA) is bounded by the
//! receiver's timeout. An attempt is classified as delivered, permanent (a
//! 5xx SMTP reply, a server that does not offer STARTTLS to a `starttls`
//! receiver, or a message that cannot be built: dead-lettered) or
//! transient (anything else: a timeout, a connection or TLS failure, a 4xx
//! reply: retried). The password is never logged or put in an error.
//!
//! [`RECEIVER`] is the registry's line for `type = "email"`: it checks the
//! table into [`EmailSettings`] and builds the [`EmailReceiver`].

use super::deliver::{Attempt, Receiver, SendFuture, SharedReceiver};
use super::receiver::{ReceiverEntry, ReceiverInput};
use super::{AlertKind, Notice, Notification};
use crate::config::DEFAULT_RECEIVER_TIMEOUT;
use crate::config::check::Checker;
use crate::config::raw::RawReceiver;
use crate::diag;
use chrono::SecondsFormat;
use lettre::message::{Mailbox, Message, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use std::fmt;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

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

impl fmt::Debug for EmailSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

/// One configured email receiver.
#[derive(Clone)]
pub struct EmailReceiver {
    /// Unique among receivers; names the outbox rows and the logs.
    pub name: String,
    pub settings: EmailSettings,
    /// Bounds one whole attempt, connect to the server's reply to DATA.
    pub timeout: Duration,
}

impl fmt::Debug for EmailReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // EmailSettings' Debug redacts the password.
        f.debug_struct("EmailReceiver")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The subject line for a batch: `[FIRING] api @ prod is failing`,
/// `[RESOLVED] api @ prod was failing`, or `[FIRING] 3 alerts: …`.
pub fn subject(batch: &[Notification]) -> String {
    let firing = batch.iter().any(|n| n.notice != Notice::Resolve);
    let status = if firing { "FIRING" } else { "RESOLVED" };
    match batch {
        [n] => {
            let verb = if n.notice == Notice::Resolve {
                "was"
            } else {
                "is"
            };
            format!(
                "[{status}] {} @ {} {verb} {}",
                n.probe,
                n.environment,
                n.kind.as_str()
            )
        }
        _ => {
            let resolved = batch.iter().filter(|n| n.notice == Notice::Resolve).count();
            let mut names: Vec<String> = batch
                .iter()
                .take(3)
                .map(|n| format!("{} @ {}", n.probe, n.environment))
                .collect();
            if batch.len() > 3 {
                names.push("…".to_owned());
            }
            format!(
                "[{status}] {} alerts ({} firing, {resolved} resolved): {}",
                batch.len(),
                batch.len() - resolved,
                names.join(", ")
            )
        }
    }
}

fn notice_word(n: &Notification) -> &'static str {
    match (n.notice, n.kind) {
        (Notice::Resolve, _) => "RESOLVED",
        (_, AlertKind::Failing) => "FAILING",
        (_, AlertKind::Degraded) => "DEGRADED",
        (_, AlertKind::SloPage | AlertKind::SloTicket) => "SLO BURN",
        (_, AlertKind::MonitorOffline) => "OFFLINE",
    }
}

fn severity(s: crate::config::Severity) -> &'static str {
    match s {
        crate::config::Severity::Info => "info",
        crate::config::Severity::Warning => "warning",
        crate::config::Severity::Critical => "critical",
    }
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// A threshold's observed value as people read it: latencies in
/// milliseconds, rates in percent, anything else with its unit.
fn observed(t: &crate::alert::ThresholdBreach) -> String {
    match (t.observed, t.unit.as_str()) {
        (None, _) => "no data".to_owned(),
        (Some(v), "seconds") => format!("{}ms", number(v * 1000.0)),
        (Some(v), "ratio") => format!("{}%", number(v * 100.0)),
        (Some(v), unit) => format!("{}{unit}", number(v)),
    }
}

/// The plain-text body.
pub fn plain_body(batch: &[Notification]) -> String {
    let mut out = String::new();
    for (i, n) in batch.iter().enumerate() {
        if i > 0 {
            out.push_str("\n----------------------------------------\n\n");
        }
        let _ = writeln!(
            out,
            "{} {} @ {} ({})",
            notice_word(n),
            n.probe,
            n.environment,
            severity(n.severity)
        );
        let _ = writeln!(out, "{}", n.summary);
        out.push('\n');
        let _ = writeln!(out, "Since:    {}", time(n.starts_at));
        if let Some(end) = n.ends_at {
            let _ = writeln!(out, "Resolved: {}", time(end));
        }
        if let Some(reason) = &n.reason {
            let _ = writeln!(out, "Reason:   {reason}");
        }
        if let Some(error) = &n.error {
            let _ = writeln!(out, "Error:    {error}");
        }
        if !n.failed_checks.is_empty() {
            out.push_str("\nFailed checks:\n");
            for c in &n.failed_checks {
                let _ = write!(out, "  - expected {}, actual {}", c.expression, c.actual);
                if let Some(loc) = &c.location {
                    let _ = write!(out, " ({loc})");
                }
                out.push('\n');
            }
        }
        if !n.thresholds.is_empty() {
            out.push_str("\nThresholds:\n");
            for t in &n.thresholds {
                let _ = writeln!(
                    out,
                    "  - {} is {}: observed {} (window {}s)",
                    t.threshold,
                    t.state,
                    observed(t),
                    number(t.window_seconds)
                );
            }
        }
        if !n.labels.is_empty() {
            let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(out, "\nLabels:   {}", labels.join(", "));
        }
        if !n.tags.is_empty() {
            let _ = writeln!(out, "Tags:     {}", n.tags.join(", "));
        }
        let _ = writeln!(out, "\nRun id:   {}", n.run_id);
        let _ = writeln!(out, "Trace id: {}", n.trace_id);
        if let Some(url) = &n.artifact_url {
            let _ = writeln!(out, "Artifact: {url}");
        }
        let _ = writeln!(out, "Alert:    {} (#{})", n.fingerprint, n.sequence);
    }
    out.push_str("\n-- \nsynthmon\n");
    out
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The HTML body. Every piece of user text goes through [`escape_html`].
pub fn html_body(batch: &[Notification]) -> String {
    let e = escape_html;
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body style=\"font-family:sans-serif\">\n",
    );
    for n in batch {
        let color = match (n.notice, n.kind) {
            (Notice::Resolve, _) => "#2e7d32",
            (_, AlertKind::Failing) => "#c62828",
            (_, AlertKind::Degraded) => "#ef6c00",
            (_, AlertKind::SloPage) => "#c62828",
            (_, AlertKind::SloTicket) => "#ef6c00",
            (_, AlertKind::MonitorOffline) => "#c62828",
        };
        let _ = writeln!(
            out,
            "<h2 style=\"color:{color}\">{} {} @ {} <small>({})</small></h2>",
            notice_word(n),
            e(&n.probe),
            e(&n.environment),
            severity(n.severity)
        );
        let _ = writeln!(out, "<p>{}</p>", e(&n.summary));
        out.push_str("<table>\n");
        let mut row = |k: &str, v: &str| {
            let _ = writeln!(out, "<tr><th align=\"left\">{k}</th><td>{}</td></tr>", e(v));
        };
        row("Since", &time(n.starts_at));
        if let Some(end) = n.ends_at {
            row("Resolved", &time(end));
        }
        if let Some(reason) = &n.reason {
            row("Reason", reason);
        }
        if let Some(error) = &n.error {
            row("Error", error);
        }
        if !n.labels.is_empty() {
            let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            row("Labels", &labels.join(", "));
        }
        if !n.tags.is_empty() {
            row("Tags", &n.tags.join(", "));
        }
        row("Run id", &n.run_id);
        row("Trace id", &n.trace_id);
        row("Alert", &format!("{} (#{})", n.fingerprint, n.sequence));
        if let Some(url) = &n.artifact_url {
            // A link only to an http(s) URL; a bare path or file as text.
            if url.starts_with("https://") || url.starts_with("http://") {
                let _ = writeln!(
                    out,
                    "<tr><th align=\"left\">Artifact</th><td><a href=\"{0}\">{0}</a></td></tr>",
                    e(url)
                );
            } else {
                let _ = writeln!(
                    out,
                    "<tr><th align=\"left\">Artifact</th><td>{}</td></tr>",
                    e(url)
                );
            }
        }
        out.push_str("</table>\n");
        if !n.failed_checks.is_empty() {
            out.push_str("<h3>Failed checks</h3>\n<table border=\"1\" cellpadding=\"4\" style=\"border-collapse:collapse\">\n<tr><th>Expected</th><th>Actual</th><th>Where</th></tr>\n");
            for c in &n.failed_checks {
                let _ = writeln!(
                    out,
                    "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
                    e(&c.expression),
                    e(&c.actual),
                    e(c.location.as_deref().unwrap_or(""))
                );
            }
            out.push_str("</table>\n");
        }
        if !n.thresholds.is_empty() {
            out.push_str("<h3>Thresholds</h3>\n<table border=\"1\" cellpadding=\"4\" style=\"border-collapse:collapse\">\n<tr><th>Threshold</th><th>State</th><th>Observed</th><th>Window</th></tr>\n");
            for t in &n.thresholds {
                let _ = writeln!(
                    out,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}s</td></tr>",
                    e(&t.threshold),
                    e(&t.state),
                    e(&observed(t)),
                    number(t.window_seconds)
                );
            }
            out.push_str("</table>\n");
        }
        out.push_str("<hr>\n");
    }
    out.push_str("<p style=\"color:#777\">synthmon</p>\n</body></html>\n");
    out
}

/// The message for `batch`: envelope and headers from the receiver, one
/// subject, a multipart/alternative body.
pub fn message(receiver: &EmailReceiver, batch: &[Notification]) -> Result<Message, String> {
    if batch.is_empty() {
        return Err("nothing to send: empty batch".to_owned());
    }
    let s = &receiver.settings;
    let from: Mailbox = s
        .from
        .parse()
        .map_err(|e| format!("invalid from address: {e}"))?;
    let mut builder = Message::builder().from(from).subject(subject(batch));
    for to in &s.to {
        let to: Mailbox = to
            .parse()
            .map_err(|e| format!("invalid recipient {to:?}: {e}"))?;
        builder = builder.to(to);
    }
    builder
        .multipart(MultiPart::alternative_plain_html(
            plain_body(batch),
            html_body(batch),
        ))
        .map_err(|e| format!("cannot build the message: {e}"))
}

/// The TLS parameters: the trust every synthmon TLS client has
/// (`net::tls`: the system roots plus `ca_file`), ring via rustls.
async fn tls_parameters(s: &EmailSettings) -> Result<TlsParameters, String> {
    let ca_file = s.ca_file.clone();
    let certs = tokio::task::spawn_blocking(move || {
        crate::net::tls::trusted_certificates(ca_file.as_deref())
    })
    .await
    .map_err(|e| format!("cannot set up tls: {e}"))??;
    let mut builder =
        TlsParameters::builder(s.smtp_host.clone()).certificate_store(CertificateStore::None);
    for der in certs {
        // A system certificate lettre cannot use is skipped, as rustls'
        // own store skips unparsable ones.
        if let Ok(cert) = Certificate::from_der(der.to_vec()) {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build_rustls()
        .map_err(|e| format!("cannot set up tls: {e}"))
}

/// One attempt to deliver `batch` to `receiver`, bounded as a whole by the
/// receiver's timeout.
pub async fn send(receiver: &EmailReceiver, batch: &[Notification]) -> Attempt {
    let message = match message(receiver, batch) {
        Ok(m) => m,
        Err(error) => return Attempt::Permanent { error },
    };
    let s = &receiver.settings;
    let tls = match s.tls {
        SmtpTls::None => None,
        SmtpTls::StartTls | SmtpTls::Implicit => match tls_parameters(s).await {
            Ok(parameters) => Some(parameters),
            // A CA file may be fixed or appear: retry.
            Err(error) => {
                return Attempt::Transient {
                    error,
                    retry_after: None,
                };
            }
        },
    };
    match tokio::time::timeout(receiver.timeout, session(receiver, tls, &message)).await {
        Err(_) => Attempt::Transient {
            error: format!(
                "the SMTP exchange with {}:{} did not finish within {:?}",
                s.smtp_host, s.smtp_port, receiver.timeout
            ),
            retry_after: None,
        },
        Ok(Ok(())) => Attempt::Delivered,
        // The server's configuration, not a passing fault: retrying would
        // knock on the same door forever.
        Ok(Err(Stopped::NoStartTls)) => Attempt::Permanent {
            error: format!(
                "SMTP {}:{}: the server does not offer STARTTLS (tls = \"starttls\"); refusing to send in clear",
                s.smtp_host, s.smtp_port
            ),
        },
        Ok(Err(Stopped::Smtp(e))) => classify(&e, s),
    }
}

/// Why a session ended without the message accepted.
#[derive(Debug)]
enum Stopped {
    /// `tls = "starttls"`, and the server's EHLO reply does not offer it.
    NoStartTls,
    /// lettre's error: a reply, the connection, TLS.
    Smtp(lettre::transport::smtp::Error),
}

impl From<lettre::transport::smtp::Error> for Stopped {
    fn from(e: lettre::transport::smtp::Error) -> Self {
        Stopped::Smtp(e)
    }
}

/// One SMTP session on a fresh connection (no pooling): greeting and EHLO
/// (over TLS from the first byte for `implicit`), STARTTLS for `starttls`,
/// AUTH, MAIL/RCPT/DATA, QUIT. `tls` is set unless `tls = "none"`.
///
/// The STARTTLS step is taken here rather than by lettre's transport,
/// whose refusal is a generic client error shared with unrelated faults
/// (no common AUTH mechanism, non-ASCII without SMTPUTF8): asking the
/// connection whether the server offers STARTTLS tells that case apart
/// without reading error text. Nothing (no AUTH, no envelope) is sent
/// before the upgrade.
async fn session(
    receiver: &EmailReceiver,
    tls: Option<TlsParameters>,
    message: &Message,
) -> Result<(), Stopped> {
    let s = &receiver.settings;
    let hello = ClientId::default();
    let (implicit, starttls) = match s.tls {
        SmtpTls::Implicit => (tls, None),
        SmtpTls::StartTls => (None, tls),
        SmtpTls::None => (None, None),
    };
    let mut connection = AsyncSmtpConnection::connect_tokio1(
        (s.smtp_host.as_str(), s.smtp_port),
        Some(receiver.timeout),
        &hello,
        implicit,
        None,
    )
    .await?;
    if let Some(parameters) = starttls {
        if !connection.can_starttls() {
            // QUIT and close; nothing else was said.
            connection.abort().await;
            return Err(Stopped::NoStartTls);
        }
        connection.starttls(parameters, &hello).await?;
    }
    if let (Some(user), Some(password)) = (&s.username, &s.password) {
        let credentials = Credentials::new(user.clone(), password.clone());
        connection.auth(DEFAULT_MECHANISMS, &credentials).await?;
    }
    let sent = connection
        .send(message.envelope(), &message.formatted())
        .await;
    // QUIT without waiting for its reply, then close, as lettre's own
    // transport ends a session.
    connection.abort().await;
    sent?;
    Ok(())
}

/// The verdict for an SMTP error: a permanent (5xx) reply is permanent,
/// everything else (4xx, connection, TLS, timeouts) transient. lettre's
/// errors hold server replies and I/O causes, never the credentials.
pub fn classify(e: &lettre::transport::smtp::Error, s: &EmailSettings) -> Attempt {
    // A certificate verdict reads as it does for every probe kind.
    let cause = match crate::net::error::rustls_error(e) {
        Some(verdict @ rustls::Error::InvalidCertificate(_)) => {
            crate::net::error::cert_failure(&s.smtp_host, verdict).1
        }
        _ => crate::net::describe(e),
    };
    let error = format!("SMTP {}:{}: {cause}", s.smtp_host, s.smtp_port);
    if e.is_permanent() {
        Attempt::Permanent { error }
    } else {
        Attempt::Transient {
            error,
            retry_after: None,
        }
    }
}

/// The registry's line for `type = "email"`.
pub const RECEIVER: ReceiverEntry = ReceiverEntry {
    types: &["email"],
    keys: &[
        "timeout",
        "smtp_host",
        "smtp_port",
        "tls",
        "username",
        "password",
        "from",
        "to",
        "ca_file",
    ],
    build,
};

/// Checks an email receiver's table: SMTP settings instead of a URL.
fn build(
    c: &mut Checker<'_>,
    input: &ReceiverInput<'_>,
    raw: RawReceiver,
) -> Option<SharedReceiver> {
    let path = input.path;
    let mut ok = input.report_misplaced(c, |key, _| {
        format!("`{key}` does not apply to email receivers")
    });
    let missing = |c: &mut Checker<'_>, key: &str| {
        c.diags.push(c.doc.error_at_key(
            path,
            format!("missing required key `{key}` for an email receiver"),
        ));
    };
    let host = match raw.smtp_host.as_deref().map(str::trim) {
        Some(h) if !h.is_empty() => Some(h.trim_matches(['[', ']']).to_owned()),
        Some(_) => {
            c.err(
                &format!("{path}.smtp_host"),
                "expected a host name or address",
            );
            None
        }
        None => {
            missing(c, "smtp_host");
            None
        }
    };
    let port = raw.smtp_port.unwrap_or(587);
    if port == 0 {
        c.err(
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
            let mut d = c.doc.error_at(
                &format!("{path}.tls"),
                format!(
                    "unknown tls mode `{other}` (expected one of `starttls`, `implicit`, `none`)"
                ),
            );
            d.help = diag::nearest(other, modes).map(|n| format!("did you mean `{n}`?"));
            c.diags.push(d);
            None
        }
    };
    if let (Some(SmtpTls::None), Some(h)) = (tls, host.as_deref()) {
        let loopback = h.eq_ignore_ascii_case("localhost")
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            let mut d = c.doc.error_at(
                &format!("{path}.tls"),
                format!(
                    "`tls = \"none\"` would send the password and alerts in clear text to `{h}`; it is allowed for loopback hosts only"
                ),
            );
            d.help = Some("use `starttls` (port 587) or `implicit` (port 465)".to_owned());
            c.diags.push(d);
            ok = false;
        }
    }
    let username = match raw.username.as_deref() {
        Some(u) => Some(c.expand(&format!("{path}.username"), u)?),
        None => None,
    };
    let password = match raw.password.as_deref() {
        Some(p) => Some(c.secret(&format!("{path}.password"), p)?),
        None => None,
    };
    if username.is_some() != password.is_some() {
        c.diags.push(c.doc.error_at_key(
            path,
            "`username` and `password` go together: set both or neither".to_owned(),
        ));
        ok = false;
    }
    let from = match raw.from.as_deref() {
        Some(f) => match f.parse::<Mailbox>() {
            Ok(_) => Some(f.to_owned()),
            Err(e) => {
                c.err(
                    &format!("{path}.from"),
                    format!("`{f}` is not an email address: {e}"),
                );
                None
            }
        },
        None => {
            missing(c, "from");
            None
        }
    };
    let to = match raw.to {
        Some(to) if to.is_empty() => {
            c.err(&format!("{path}.to"), "expected at least one recipient");
            None
        }
        Some(to) => {
            let mut good = true;
            for (i, t) in to.iter().enumerate() {
                if let Err(e) = t.parse::<Mailbox>() {
                    c.err(
                        &format!("{path}.to[{i}]"),
                        format!("`{t}` is not an email address: {e}"),
                    );
                    good = false;
                }
            }
            good.then_some(to)
        }
        None => {
            missing(c, "to");
            None
        }
    };
    let timeout = c.duration(
        &format!("{path}.timeout"),
        raw.timeout.as_deref(),
        DEFAULT_RECEIVER_TIMEOUT,
    );
    let (Some(host), Some(tls), Some(from), Some(to), true) = (host, tls, from, to, ok) else {
        return None;
    };
    // The host must make a valid `smtp://host:port` address.
    let display = if host.contains(':') {
        format!("smtp://[{host}]:{port}")
    } else {
        format!("smtp://{host}:{port}")
    };
    if url::Url::parse(&display).is_err() {
        c.err(
            &format!("{path}.smtp_host"),
            format!("`{host}` is not a valid host"),
        );
        return None;
    }
    Some(std::sync::Arc::new(EmailReceiver {
        name: input.name.to_owned(),
        settings: EmailSettings {
            smtp_host: host,
            smtp_port: port,
            tls,
            username,
            password,
            from,
            to,
            ca_file: raw.ca_file.map(|f| c.base_dir.join(f)),
        },
        timeout,
    }))
}

impl Receiver for EmailReceiver {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "email"
    }

    fn deliver<'a>(
        &'a self,
        _client: &'a reqwest::Client,
        batch: &'a [Notification],
        _idempotency_key: &'a str,
    ) -> SendFuture<'a> {
        Box::pin(send(self, batch))
    }
}

impl From<EmailReceiver> for SharedReceiver {
    fn from(r: EmailReceiver) -> SharedReceiver {
        std::sync::Arc::new(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }
}
