//! Marks every synthetic request so production can recognise, filter and
//! purge it: the configured synthetic header, `X-Synthetic-Probe`,
//! `X-Synthetic-Run-Id`, a synthmon `User-Agent`, and W3C `traceparent` and
//! `baggage` so the target's own traces join the probe's trace.

use http::{HeaderMap, HeaderName, HeaderValue};
use rand::Rng;

/// How synthetic requests are marked so production can recognise them.
#[derive(Debug, Clone)]
pub struct Tagging {
    pub header: http::HeaderName,
    pub value: http::HeaderValue,
    pub user_agent: http::HeaderValue,
}

pub const PROBE_HEADER: HeaderName = HeaderName::from_static("x-synthetic-probe");
pub const RUN_ID_HEADER: HeaderName = HeaderName::from_static("x-synthetic-run-id");
/// The flow step a request belongs to.
pub const STEP_HEADER: HeaderName = HeaderName::from_static("x-synthetic-step");
/// The mutation a workload anomaly request carries.
pub const ANOMALY_HEADER: HeaderName = HeaderName::from_static("x-synthetic-anomaly");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const BAGGAGE: HeaderName = HeaderName::from_static("baggage");

impl Default for Tagging {
    /// `X-Synthetic: true` and synthmon's own `User-Agent`.
    fn default() -> Tagging {
        Tagging {
            header: HeaderName::from_static("x-synthetic"),
            value: HeaderValue::from_static("true"),
            user_agent: HeaderValue::from_str(&default_user_agent())
                .unwrap_or_else(|_| HeaderValue::from_static("synthmon")),
        }
    }
}

/// The default `User-Agent`.
pub fn default_user_agent() -> String {
    format!(
        "synthmon/{} (synthetic monitoring; +https://github.com/synthmon)",
        env!("CARGO_PKG_VERSION")
    )
}

/// Identity of one run: its run id and W3C trace context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunIds {
    /// 16 hex digits, unique per run.
    pub run_id: String,
    /// 32 hex digits, never all zero.
    pub trace_id: String,
    /// 16 hex digits, the parent span the target's server span hangs under.
    pub span_id: String,
}

impl RunIds {
    pub fn generate() -> RunIds {
        let mut rng = rand::rng();
        RunIds {
            run_id: hex(&rng.random::<[u8; 8]>()),
            trace_id: hex(&nonzero::<16>(&mut rng)),
            span_id: hex(&nonzero::<8>(&mut rng)),
        }
    }

    /// The same run and trace with a new span id: one request of a
    /// multi-request run (a flow step, a workload request).
    pub fn child(&self) -> RunIds {
        RunIds {
            run_id: self.run_id.clone(),
            trace_id: self.trace_id.clone(),
            span_id: hex(&nonzero::<8>(&mut rand::rng())),
        }
    }

    /// `traceparent` version 00, sampled.
    /// Built at its exact length, so it becomes a header's bytes without
    /// another allocation.
    pub fn traceparent(&self) -> String {
        let mut value = String::with_capacity(self.trace_id.len() + self.span_id.len() + 7);
        for part in ["00-", &self.trace_id, "-", &self.span_id, "-01"] {
            value.push_str(part);
        }
        value
    }

    /// The W3C `baggage` value of a synthetic request (or a command's
    /// `BAGGAGE` variable) from probe `probe` in this run.
    /// Built at its exact length, as [`RunIds::traceparent`].
    pub fn baggage(&self, probe: &str) -> String {
        const PARTS: [&str; 2] = ["synthetic=true,synthetic.probe=", ",synthetic.run_id="];
        let mut value = String::with_capacity(
            PARTS[0].len() + probe.len() + PARTS[1].len() + self.run_id.len(),
        );
        for part in [PARTS[0], probe, PARTS[1], &self.run_id] {
            value.push_str(part);
        }
        value
    }

    /// Sets every tagging header on `headers` (replacing any the probe set).
    /// Probe names are restricted at load to characters that need no
    /// escaping in headers or baggage.
    pub fn apply(&self, tagging: &Tagging, probe: &str, headers: &mut HeaderMap) {
        headers.insert(tagging.header.clone(), tagging.value.clone());
        headers.insert(http::header::USER_AGENT, tagging.user_agent.clone());
        // Each value is copied once, into the header's own bytes; a
        // formatted one becomes them without a second copy.
        for (name, value) in [(PROBE_HEADER, probe), (RUN_ID_HEADER, self.run_id.as_str())] {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name, v);
            }
        }
        for (name, value) in [
            (TRACEPARENT, self.traceparent()),
            (BAGGAGE, self.baggage(probe)),
        ] {
            if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
                headers.insert(name, v);
            }
        }
    }

    /// Retags `headers`, which [`RunIds::apply`] tagged for another request
    /// of this run, as [`RunIds::child`]'s would be: a new span in
    /// `traceparent` (nothing else differs), without building the child.
    /// A workload sends this per request, so the value is written into one
    /// buffer that becomes the header's own bytes (one allocation, not
    /// four formatted strings).
    pub fn apply_child_span(&self, headers: &mut HeaderMap) {
        let mut value = String::with_capacity(self.trace_id.len() + 23);
        value.push_str("00-");
        value.push_str(&self.trace_id);
        value.push('-');
        push_hex(&mut value, &nonzero::<8>(&mut rand::rng()));
        value.push_str("-01");
        if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
            headers.insert(TRACEPARENT, v);
        }
    }
}

fn nonzero<const N: usize>(rng: &mut impl Rng) -> [u8; N] {
    loop {
        let bytes: [u8; N] = std::array::from_fn(|_| rng.random());
        if bytes.iter().any(|b| *b != 0) {
            return bytes;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out
}

/// Appends `bytes` to `out` as lowercase hex.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

/// Whether `s` is a valid W3C `traceparent` (version 00).
pub fn is_valid_traceparent(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let is_hex = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    parts.len() == 4
        && parts[0] == "00"
        && is_hex(parts[1], 32)
        && parts[1].bytes().any(|b| b != b'0')
        && is_hex(parts[2], 16)
        && parts[2].bytes().any(|b| b != b'0')
        && is_hex(parts[3], 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_span_on_an_id_from_elsewhere_still_carries_its_trace() {
        let mut ids = RunIds::generate();
        ids.trace_id = "abc".to_owned();
        let mut headers = HeaderMap::new();
        ids.apply_child_span(&mut headers);
        let traceparent = headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(traceparent.starts_with("00-abc-"), "{traceparent:?}");
        assert!(traceparent.ends_with("-01"), "{traceparent:?}");
    }

    #[test]
    fn a_child_span_retags_like_a_child() {
        let ids = RunIds::generate();
        let mut headers = HeaderMap::new();
        ids.apply(&Tagging::default(), "p", &mut headers);
        let mut retagged = headers.clone();
        ids.apply_child_span(&mut retagged);
        let mut child = HeaderMap::new();
        ids.child().apply(&Tagging::default(), "p", &mut child);
        for (name, value) in &child {
            if name == TRACEPARENT {
                continue;
            }
            assert_eq!(retagged.get(name), Some(value), "{name}");
        }
        let traceparent = retagged[TRACEPARENT].to_str().unwrap_or_default();
        assert!(is_valid_traceparent(traceparent), "{traceparent}");
        assert_ne!(headers[TRACEPARENT], retagged[TRACEPARENT]);
        assert!(traceparent.starts_with(&format!("00-{}-", ids.trace_id)));
        assert_eq!(retagged.len(), child.len());
    }

    #[test]
    fn generated_ids_are_valid_and_fresh() {
        let a = RunIds::generate();
        let b = RunIds::generate();
        assert!(
            is_valid_traceparent(&a.traceparent()),
            "{}",
            a.traceparent()
        );
        assert_ne!(a.trace_id, b.trace_id);
        assert_ne!(a.run_id, b.run_id);
        assert_eq!(a.run_id.len(), 16);
    }

    #[test]
    fn traceparent_validation_rejects_bad_forms() {
        let zero = format!("00-{}-{}-01", "0".repeat(32), "1".repeat(16));
        assert!(!is_valid_traceparent(&zero));
        assert!(!is_valid_traceparent("00-abc-def-01"));
        let upper = format!("00-{}-{}-01", "A".repeat(32), "1".repeat(16));
        assert!(!is_valid_traceparent(&upper));
    }

    #[test]
    fn apply_sets_every_tag() {
        let tagging = Tagging {
            header: HeaderName::from_static("x-synthetic"),
            value: HeaderValue::from_static("true"),
            user_agent: HeaderValue::from_static("synthmon/test"),
        };
        let ids = RunIds::generate();
        let mut h = HeaderMap::new();
        h.insert(http::header::USER_AGENT, HeaderValue::from_static("curl"));
        ids.apply(&tagging, "api-health", &mut h);
        assert_eq!(h["x-synthetic"], "true");
        assert_eq!(h["user-agent"], "synthmon/test");
        assert_eq!(h["x-synthetic-probe"], "api-health");
        assert_eq!(h["x-synthetic-run-id"], ids.run_id.as_str());
        assert_eq!(h["traceparent"], ids.traceparent().as_str());
        let baggage = h["baggage"].to_str().unwrap_or_default();
        assert!(baggage.contains("synthetic=true"), "{baggage}");
        assert!(baggage.contains(&format!("synthetic.run_id={}", ids.run_id)));
        // The exact W3C forms, built at their exact length (so they become
        // header bytes without another allocation).
        let traceparent = ids.traceparent();
        assert_eq!(
            traceparent,
            format!("00-{}-{}-01", ids.trace_id, ids.span_id)
        );
        assert!(is_valid_traceparent(&traceparent));
        assert_eq!(traceparent.capacity(), traceparent.len());
        assert_eq!(
            baggage,
            format!(
                "synthetic=true,synthetic.probe=api-health,synthetic.run_id={}",
                ids.run_id
            )
        );
        assert_eq!(ids.baggage("api-health").capacity(), baggage.len());
    }
}
