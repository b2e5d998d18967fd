//! The contract between the outbox and the receivers: one attempt's
//! result ([`Attempt`]) and the [`Receiver`] trait each receiver type
//! implements in its own file. The outbox knows receivers only through it,
//! the assembly only through it and the registry
//! ([`super::receivers::RECEIVERS`]).

use super::Notification;
use crate::config::TlsOptions;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The result of one attempt to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver accepted it (2xx).
    Delivered,
    /// Worth retrying: 408, 429, 5xx, a network error, a timeout.
    /// `retry_after` is the receiver's `Retry-After`, if it sent one.
    Transient {
        error: String,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help: any other status, or an unbuildable request.
    Permanent { error: String },
}

/// One attempt in flight.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Attempt> + Send + 'a>>;

/// A receiver a worker delivers to (webhook presets, email). `Any`, so
/// that tests can look at the concrete receiver a config built.
pub trait Receiver: std::any::Any + std::fmt::Debug + Send + Sync {
    /// Unique among receivers; names the outbox rows and the logs.
    fn name(&self) -> &str;

    /// The receiver's type as configured (`webhook`, `slack`, `pagerduty`,
    /// `alertmanager`, `email`): the logs name a receiver by its type and
    /// its name, so an SMTP failure never reads as a webhook's.
    fn kind(&self) -> &'static str;

    /// Whether a batch goes out as one attempt per notification.
    fn one_request_per_notification(&self) -> bool {
        false
    }

    /// Whether the receiver ends a firing alert by itself when nothing
    /// refreshes it (Alertmanager, after `expires_at`): alerts that never
    /// repeat end there early.
    fn expires_alerts(&self) -> bool {
        false
    }

    /// One attempt to deliver `batch`, bounded by the receiver's own
    /// timeout; `client` is the shared HTTP client for receivers that
    /// speak HTTP.
    fn deliver<'a>(
        &'a self,
        client: &'a reqwest::Client,
        batch: &'a [Notification],
        idempotency_key: &'a str,
    ) -> SendFuture<'a>;
}

/// A receiver as the dispatcher holds it.
pub type SharedReceiver = Arc<dyn Receiver>;

/// The HTTP client shared by the receivers that speak HTTP: rustls with the probes' ring
/// provider (no aws-lc or OpenSSL), no redirects (a POST must not turn into
/// a GET somewhere else), a synthmon user agent. Timeouts are per receiver,
/// applied around each attempt.
pub fn client() -> Result<reqwest::Client, String> {
    let tls = crate::net::tls::client_config(&TlsOptions::default())?;
    reqwest::Client::builder()
        .tls_backend_preconfigured((*tls).clone())
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("synthmon/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the webhook HTTP client: {e}"))
}
