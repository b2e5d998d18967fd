//! The headers of one attempt: the receiver's own (minus the names
//! synthmon sets), `Idempotency-Key`, and with an HMAC secret the body's
//! signature and the attempt's timestamp.

use super::spec::WebhookReceiver;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the HMAC-SHA256 signature of the body.
pub const SIGNATURE_HEADER: &str = "X-Synthmon-Signature";

/// The header carrying the Unix time (seconds) of the attempt.
pub const TIMESTAMP_HEADER: &str = "X-Synthmon-Timestamp";

/// The header carrying the delivery's stable idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Header names a receiver's custom headers may not set: synthmon sets them.
const RESERVED_HEADERS: [&str; 6] = [
    "content-type",
    "content-length",
    "host",
    "idempotency-key",
    "x-synthmon-signature",
    "x-synthmon-timestamp",
];

/// The headers of one attempt: the receiver's custom headers (minus the
/// reserved names synthmon sets itself), `Idempotency-Key`, and when the
/// receiver has an HMAC secret, `X-Synthmon-Signature: sha256=<hex>` over
/// `body` and `X-Synthmon-Timestamp` (Unix seconds of `now`).
pub fn headers(
    receiver: &WebhookReceiver,
    idempotency_key: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = receiver
        .headers
        .iter()
        .filter(|(k, _)| !RESERVED_HEADERS.contains(&k.trim().to_ascii_lowercase().as_str()))
        .cloned()
        .collect();
    out.push((IDEMPOTENCY_HEADER.to_owned(), idempotency_key.to_owned()));
    if let Some(secret) = &receiver.hmac_secret {
        out.push((
            SIGNATURE_HEADER.to_owned(),
            format!("sha256={}", sign(secret.as_bytes(), body)),
        ));
        out.push((TIMESTAMP_HEADER.to_owned(), now.timestamp().to_string()));
    }
    out
}

/// Lowercase hex of HMAC-SHA256(`secret`, `body`).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length, so this cannot fail; an empty MAC
    // would only make the receiver reject the request.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::webhook::fixtures::{at, receiver};
    use crate::alert::webhook::spec::Preset;
    #[test]
    fn headers_sign_the_body_and_keep_reserved_names() {
        let r = receiver(Preset::Generic);
        let now = at("2025-01-02T03:14:05Z");
        let h = headers(&r, "key-1", b"{}", now);
        let get = |name: &str| {
            h.iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("idempotency-key"), ["key-1"]);
        assert_eq!(get("authorization"), ["Bearer s3cret-token"]);
        assert_eq!(get("x-synthmon-timestamp"), ["1735787645"]);
        // RFC 4231-style check against an independently computed value.
        assert_eq!(
            get("x-synthmon-signature"),
            [format!("sha256={}", sign(b"hmac-s3cret", b"{}"))]
        );
        assert_eq!(
            sign(b"key", b"The quick brown fox jumps over the lazy dog"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        let unsigned = WebhookReceiver {
            hmac_secret: None,
            ..r
        };
        assert_eq!(headers(&unsigned, "k", b"{}", now).len(), 2);
    }
}
