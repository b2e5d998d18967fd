//! Webhook receivers: what goes on the wire for a batch of notifications,
//! and one HTTP attempt to deliver it.
//!
//! Four presets shape the body:
//!
//! - **Generic**: synthmon's own document, version `"1"`, described by
//!   `docs/webhook-v1.schema.json`. Fields are only ever added within a
//!   version; a removal or a change of meaning bumps `version`.
//! - **Slack**: an incoming-webhook message (`text` plus `blocks`).
//! - **PagerDuty** Events API v2: one event per notification, so a batch
//!   for this preset must hold exactly one notification ([`body`] refuses
//!   more); the outbox's delivery layer sends a larger batch as one request
//!   per notification, in order. The `dedup_key` is the alert's fingerprint,
//!   so a trigger, its repeats (sent as `trigger` again, which PagerDuty
//!   deduplicates) and its resolve all address the same incident.
//! - **Alertmanager** (`POST /api/v2/alerts`): an array of alerts labelled
//!   so that several synthmon instances sending the same alert deduplicate
//!   there. A firing alert's `endsAt` is its `expires_at` (three repeat
//!   intervals ahead, renewed by every repeat), so it stays active; with
//!   repeats off it has none, and Alertmanager ends it after its
//!   `resolve_timeout`.
//!
//! Every request carries an `Idempotency-Key` header that is the same for
//! every attempt of the same delivery (also across restarts). When the
//! receiver has an HMAC secret, `X-Synthmon-Signature: sha256=<hex>` is the
//! HMAC-SHA256 of the exact body bytes under that secret, and
//! `X-Synthmon-Timestamp` is the Unix time of the attempt in seconds (it is
//! informational: the signature covers the body only, which is identical
//! across retries).
//!
//! An attempt is classified as delivered (2xx), transient (408, 429, 5xx,
//! a network error or the receiver's timeout: retried) or permanent (any
//! other status, or a request that cannot be built: dead-lettered).
//! Header values, the HMAC secret, the PagerDuty routing key and the URL
//! (a Slack webhook URL is itself a secret) are never logged or stored in
//! an error message; errors name the receiver only.
//!
//! [`RECEIVER`] is the registry's line for the four types (`webhook`,
//! `slack`, `pagerduty`, `alertmanager`): it checks their tables and builds
//! the [`WebhookReceiver`].
//!
//! The files: `spec.rs` the configured receiver ([`WebhookReceiver`],
//! [`Preset`]); `payload.rs` the body of each preset (the generic v1
//! document, Slack, PagerDuty, Alertmanager, a user's template);
//! `sign.rs` the headers of an attempt (`Idempotency-Key`, the HMAC
//! signature); `delivery.rs` the POST, `Retry-After` and the verdict;
//! `check.rs` checking the receiver's table. This file holds the registry
//! entry; no other file of the folder uses it.

mod check;
mod delivery;
#[cfg(test)]
mod fixtures;
mod payload;
mod sign;
mod spec;

use super::receiver::ReceiverEntry;

pub use delivery::{classify, parse_retry_after, send};
pub use payload::{CONTENT_TYPE, GENERIC_VERSION, body, group_key, render_template};
pub use sign::{IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, headers, sign};
pub use spec::{Preset, WebhookReceiver};

/// The registry's line for the receivers that POST over HTTP.
pub const RECEIVER: ReceiverEntry = ReceiverEntry {
    types: &["webhook", "slack", "pagerduty", "alertmanager"],
    keys: &[
        "url",
        "headers",
        "hmac_secret",
        "template",
        "content_type",
        "routing_key",
        "timeout",
    ],
    build: check::build,
};
