//! Delivering: one POST of a batch within the receiver's timeout, the
//! response drained (bounded), `Retry-After` read, and the attempt
//! classified as delivered, transient or permanent; the [`Receiver`] the
//! outbox sees.

use super::payload::body;
use super::sign::headers;
use super::spec::{Preset, WebhookReceiver};
use crate::alert::Notification;
use crate::alert::deliver::{Attempt, Receiver, SendFuture};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// At most this many bytes of a response body are read (and discarded).
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// One attempt to deliver `batch` to `receiver`: builds the body and
/// headers, POSTs within the receiver's timeout (which bounds the whole
/// exchange, connect to the end of the response body) and classifies the
/// result. A 2xx counts as delivered even if the rest of the response body
/// does not arrive within the timeout.
pub async fn send(
    client: &reqwest::Client,
    receiver: &WebhookReceiver,
    batch: &[Notification],
    idempotency_key: &str,
) -> Attempt {
    let (content_type, bytes) = match body(receiver, batch) {
        Ok(b) => b,
        Err(error) => return Attempt::Permanent { error },
    };
    let mut request = client
        .post(receiver.url.clone())
        .header(reqwest::header::CONTENT_TYPE, content_type);
    for (name, value) in headers(receiver, idempotency_key, &bytes, Utc::now()) {
        let name = match reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()) {
            Ok(n) => n,
            Err(_) => {
                return Attempt::Permanent {
                    error: format!("invalid header name {name:?}"),
                };
            }
        };
        let Ok(value) = reqwest::header::HeaderValue::from_str(&value) else {
            // The value may be a secret: name the header only.
            return Attempt::Permanent {
                error: format!("invalid value for header {name}"),
            };
        };
        request = request.header(name, value);
    }
    let deadline = tokio::time::Instant::now() + receiver.timeout;
    let response = match tokio::time::timeout_at(deadline, request.body(bytes).send()).await {
        Err(_) => {
            return Attempt::Transient {
                error: format!("no response within {:?}", receiver.timeout),
                retry_after: None,
            };
        }
        Ok(Err(e)) => {
            return Attempt::Transient {
                error: error_chain(e),
                retry_after: None,
            };
        }
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, Utc::now()));
    // Read (and drop) the rest of the response, bounded, so the connection
    // can be reused; its content does not change the verdict.
    let _ = tokio::time::timeout_at(deadline, drain(response)).await;
    classify(status.as_u16(), retry_after)
}

/// Reads at most [`MAX_RESPONSE_BODY`] bytes of a response body.
async fn drain(mut response: reqwest::Response) {
    let mut read = 0;
    while let Ok(Some(chunk)) = response.chunk().await {
        read += chunk.len();
        if read >= MAX_RESPONSE_BODY {
            break;
        }
    }
}

/// The verdict for an HTTP status: 2xx delivered; 408, 429 and 5xx
/// transient; anything else (other 4xx, and 3xx since redirects are not
/// followed) permanent.
pub fn classify(status: u16, retry_after: Option<Duration>) -> Attempt {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" {r}"))
        .unwrap_or_default();
    match status {
        200..=299 => Attempt::Delivered,
        408 | 429 | 500..=599 => Attempt::Transient {
            error: format!("HTTP {status}{reason}"),
            retry_after,
        },
        _ => Attempt::Permanent {
            error: format!("HTTP {status}{reason}"),
        },
    }
}

/// A `Retry-After` value: delay-seconds or an HTTP-date (a date in the past
/// means no wait). `None` when it is neither.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) is an RFC 2822 date.
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// A request error as text, with its causes, without the URL (it may
/// carry a token).
fn error_chain(e: reqwest::Error) -> String {
    crate::net::describe(&e.without_url())
}

impl Receiver for WebhookReceiver {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        // The `type` the receiver was configured with: a template is the
        // generic type's body written by the user.
        match self.preset {
            Preset::Generic | Preset::Template { .. } => "webhook",
            Preset::Slack => "slack",
            Preset::PagerDuty { .. } => "pagerduty",
            Preset::Alertmanager => "alertmanager",
        }
    }

    fn one_request_per_notification(&self) -> bool {
        self.preset.one_request_per_notification()
    }

    fn expires_alerts(&self) -> bool {
        self.preset == Preset::Alertmanager
    }

    fn deliver<'a>(
        &'a self,
        client: &'a reqwest::Client,
        batch: &'a [Notification],
        idempotency_key: &'a str,
    ) -> SendFuture<'a> {
        Box::pin(send(client, self, batch, idempotency_key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::webhook::fixtures::{at, receiver};

    #[test]
    fn each_preset_is_named_by_its_receiver_type() {
        let template = Preset::Template {
            source: "{{ version }}".to_owned(),
            content_type: "text/plain".to_owned(),
        };
        let pagerduty = Preset::PagerDuty {
            routing_key: "key".to_owned(),
        };
        for (preset, kind) in [
            (Preset::Generic, "webhook"),
            (template, "webhook"),
            (Preset::Slack, "slack"),
            (pagerduty, "pagerduty"),
            (Preset::Alertmanager, "alertmanager"),
        ] {
            assert_eq!(receiver(preset).kind(), kind);
        }
    }

    #[test]
    fn statuses_are_classified() {
        assert!(matches!(classify(204, None), Attempt::Delivered));
        for transient in [408, 429, 500, 502, 503, 599] {
            assert!(
                matches!(classify(transient, None), Attempt::Transient { .. }),
                "{transient}"
            );
        }
        for permanent in [301, 400, 401, 404, 410, 422] {
            assert!(
                matches!(classify(permanent, None), Attempt::Permanent { .. }),
                "{permanent}"
            );
        }
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = at("2015-10-21T07:28:00Z");
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }
}
