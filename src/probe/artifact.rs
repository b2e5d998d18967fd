//! A failed run's debugging record ([`crate::outcome::Artifact`]): what an
//! HTTP exchange sent and got back, turned into plain data only when the
//! run (or flow step) failed.
//!
//! Rules the code keeps:
//! - the values of `Authorization`, `Proxy-Authorization`, `Cookie` and
//!   `Set-Cookie` are always masked, whatever the redactor knows (the
//!   authorization scheme and cookie names stay: they are not secret and
//!   often the clue); every other header value, the URLs and the bodies go
//!   through the config's [`Redactor`] in [`redact`], which
//!   `probe::kind::redact` calls like for the rest of the outcome;
//! - a body keeps its first [`EXCERPT_BYTES`]: as text when those bytes are
//!   UTF-8 (a character cut at the end is dropped), else as base64, which
//!   the redactor also scrubs (it knows a secret's base64 forms at every
//!   alignment);
//! - a captured value is never kept: its name, JSON type and length are.
//!
//! Recording costs one header map clone per request (the body is a shared
//! [`Bytes`]); a workload's requests record nothing.

use crate::outcome::{
    Artifact, BodyExcerpt, EXCERPT_BYTES, Exchange, ExchangeRequest, ExchangeResponse,
    MaskedCapture,
};
use crate::secret::Redactor;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method, StatusCode, header};

/// What went out and came back, still as wire data: cheap to keep for
/// every exchange, turned into an [`Exchange`] ([`Recorded::exchange`])
/// only when it is needed.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub url: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub response: Option<Received>,
}

/// The response part of a [`Recorded`] exchange.
#[derive(Debug, Clone)]
pub struct Received {
    pub status: StatusCode,
    pub url: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    /// The request that was sent, taken whole once the exchange is over:
    /// nothing of it is copied (a URL becomes its own serialised text).
    pub fn request(request: crate::net::http1::Request) -> Recorded {
        Recorded {
            method: request.method,
            url: request.url.into(),
            headers: request.headers,
            body: request.body,
            response: None,
        }
    }

    /// The plain-data exchange, credentials masked, bodies cut (not yet
    /// through the redactor: [`redact`] does that with the outcome).
    pub fn exchange(&self) -> Exchange {
        Exchange {
            request: ExchangeRequest {
                method: self.method.to_string(),
                url: self.url.clone(),
                headers: headers(&self.headers),
                body: (!self.body.is_empty()).then(|| excerpt(&self.body)),
            },
            response: self.response.as_ref().map(|r| ExchangeResponse {
                status: r.status.as_u16(),
                url: r.url.clone(),
                headers: headers(&r.headers),
                body: excerpt(&r.body),
            }),
        }
    }
}

/// The headers as `[name, value]` pairs, credentials masked.
fn headers(map: &HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(name, value)| {
            let text = String::from_utf8_lossy(value.as_bytes());
            (name.as_str().to_owned(), mask_credentials(name, &text))
        })
        .collect()
}

/// The mask every secret gets.
const MASK: &str = "***";

/// A header value with its credentials masked, for the headers that carry
/// them by definition; any other value unchanged.
pub fn mask_credentials(name: &HeaderName, value: &str) -> String {
    if name == header::AUTHORIZATION || name == header::PROXY_AUTHORIZATION {
        // `Bearer ***`: the scheme tells a wrong scheme from a wrong token.
        return match value.trim().split_once(' ') {
            Some((scheme, _)) => format!("{scheme} {MASK}"),
            None => MASK.to_owned(),
        };
    }
    if name == header::COOKIE {
        return value
            .split(';')
            .map(|pair| mask_cookie(pair.trim()))
            .collect::<Vec<_>>()
            .join("; ");
    }
    if name == header::SET_COOKIE {
        // The first pair is the cookie; the attributes (Path, Expires,
        // HttpOnly, …) are not secret.
        let mut parts = value.split(';');
        let cookie = mask_cookie(parts.next().unwrap_or_default().trim());
        return std::iter::once(cookie)
            .chain(parts.map(|p| p.trim().to_owned()))
            .collect::<Vec<_>>()
            .join("; ");
    }
    value.to_owned()
}

/// `name=***` (a value without a name is all masked).
fn mask_cookie(pair: &str) -> String {
    match pair.split_once('=') {
        Some((name, _)) => format!("{}={MASK}", name.trim()),
        None => MASK.to_owned(),
    }
}

/// The first [`EXCERPT_BYTES`] of `body`: text when they are UTF-8, else
/// base64.
pub fn excerpt(body: &[u8]) -> BodyExcerpt {
    let truncated = body.len() > EXCERPT_BYTES;
    let head = &body[..body.len().min(EXCERPT_BYTES)];
    let text = match std::str::from_utf8(head) {
        Ok(text) => Some(text),
        // A character cut by the excerpt's end is not a binary body.
        Err(e) if truncated && e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).ok()
        }
        Err(_) => None,
    };
    let (encoding, data) = match text {
        Some(text) => ("text", text.to_owned()),
        None => ("base64", crate::secret::base64(head)),
    };
    BodyExcerpt {
        bytes: body.len() as u64,
        encoding,
        data,
        truncated,
    }
}

/// A capture as an artifact shows it: its value masked.
pub fn masked_capture(name: &str, value: Option<&serde_json::Value>) -> MaskedCapture {
    use serde_json::Value;
    let (json_type, length) = match value {
        None | Some(Value::Null) => ("null", 0),
        Some(Value::String(s)) => ("string", s.chars().count()),
        Some(v @ Value::Number(_)) => ("number", v.to_string().len()),
        Some(v @ Value::Bool(_)) => ("bool", v.to_string().len()),
        Some(v @ Value::Array(_)) => ("array", v.to_string().len()),
        Some(v @ Value::Object(_)) => ("object", v.to_string().len()),
    };
    MaskedCapture {
        name: name.to_owned(),
        value: MASK,
        json_type,
        length,
    }
}

/// Scrubs every secret the redactor knows from an artifact: URLs, header
/// values, bodies (text or base64).
pub fn redact(artifact: &mut Artifact, redactor: &Redactor) {
    let exchanges = artifact.exchange.iter_mut().chain(
        artifact
            .steps
            .iter_mut()
            .filter_map(|s| s.exchange.as_mut()),
    );
    for x in exchanges {
        redactor.scrub(&mut x.request.url);
        for (_, value) in &mut x.request.headers {
            redactor.scrub(value);
        }
        if let Some(body) = &mut x.request.body {
            redactor.scrub(&mut body.data);
        }
        if let Some(r) = &mut x.response {
            redactor.scrub(&mut r.url);
            for (_, value) in &mut r.headers {
                redactor.scrub(value);
            }
            redactor.scrub(&mut r.body.data);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked_whatever_the_redactor_knows() {
        let m = |name: HeaderName, v: &str| mask_credentials(&name, v);
        assert_eq!(m(header::AUTHORIZATION, "Bearer abc.def"), "Bearer ***");
        assert_eq!(m(header::AUTHORIZATION, "token"), "***");
        assert_eq!(
            m(header::PROXY_AUTHORIZATION, "Basic dXM6cHc="),
            "Basic ***"
        );
        assert_eq!(m(header::COOKIE, "a=1; session=xyz"), "a=***; session=***");
        assert_eq!(
            m(header::SET_COOKIE, "session=xyz; Path=/; HttpOnly"),
            "session=***; Path=/; HttpOnly"
        );
        assert_eq!(m(header::CONTENT_TYPE, "text/plain"), "text/plain");
    }

    #[test]
    fn bodies_are_text_when_utf8_else_base64_and_cut_at_64_kib() {
        let small = excerpt(b"{\"status\":500}");
        assert_eq!(
            (small.encoding, small.data.as_str(), small.truncated),
            ("text", "{\"status\":500}", false)
        );
        let binary = excerpt(&[0xff, 0x00, 0x10]);
        assert_eq!((binary.encoding, binary.data.as_str()), ("base64", "/wAQ"));
        let big = excerpt(&vec![b'a'; 200 * 1024]);
        assert_eq!(
            (big.bytes, big.data.len(), big.truncated),
            (200 * 1024, EXCERPT_BYTES, true)
        );
        // A two-byte character across the cut is dropped, not turned binary.
        let mut cut = vec![b'a'; EXCERPT_BYTES - 1];
        cut.extend_from_slice("é and more".as_bytes());
        let cut = excerpt(&cut);
        assert_eq!(
            (cut.encoding, cut.data.len(), cut.truncated),
            ("text", EXCERPT_BYTES - 1, true)
        );
    }

    #[test]
    fn captures_keep_their_name_type_and_length_only() {
        let token = serde_json::json!("secret-token-value");
        let c = masked_capture("token", Some(&token));
        assert_eq!(
            (c.name.as_str(), c.value, c.json_type, c.length),
            ("token", "***", "string", 18)
        );
        let n = masked_capture("id", Some(&serde_json::json!(12345)));
        assert_eq!((n.json_type, n.length), ("number", 5));
        assert_eq!(masked_capture("gone", None).json_type, "null");
    }

    #[test]
    fn redact_scrubs_urls_headers_and_both_body_encodings() {
        let secret = "hunter2-the-password";
        let mut r = Redactor::default();
        r.add(secret);
        let mut headers = HeaderMap::new();
        headers.insert("x-token", secret.parse().unwrap());
        let recorded = Recorded {
            method: Method::GET,
            url: format!("http://h/x?t={secret}"),
            headers: headers.clone(),
            body: Bytes::from(format!("{{\"p\":\"{secret}\"}}")),
            response: Some(Received {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                url: "http://h/x".into(),
                headers,
                // Binary, with the secret inside at an odd offset.
                body: Bytes::from([&[0xff, 0xfe][..], secret.as_bytes(), &[0]].concat()),
            }),
        };
        let mut artifact = Artifact {
            exchange: Some(recorded.exchange()),
            steps: Vec::new(),
        };
        redact(&mut artifact, &r);
        let text = serde_json::to_string(&artifact).unwrap();
        assert!(!text.contains(secret), "{text}");
        assert!(
            !text.contains(&crate::secret::base64(secret.as_bytes())),
            "{text}"
        );
        let x = artifact.exchange.unwrap();
        assert_eq!(x.request.url, "http://h/x?t=***");
        assert_eq!(
            x.request.headers,
            [("x-token".to_owned(), "***".to_owned())]
        );
        let body = x.response.unwrap().body;
        assert_eq!(body.encoding, "base64");
        assert!(body.data.contains("***"), "{}", body.data);
    }
}
