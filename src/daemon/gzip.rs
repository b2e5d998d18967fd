//! gzip for the listener's text answers (`/metrics`, the status page):
//! whether a client accepts it, and the encoding at the fastest level.

use axum::http::{HeaderMap, header};
use std::io::Write;

/// Whether `Accept-Encoding` lists `gzip` (or `*`) with a weight above 0.
pub fn accepted(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// `bytes` gzipped at the fastest level (a scrape is made every few
/// seconds; the text compresses well at any level). `None` on a failure
/// of the encoder, which then sends the text as it is.
pub fn encode(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 8),
        flate2::Compression::fast(),
    );
    encoder.write_all(bytes).ok()?;
    encoder.finish().ok()
}

#[cfg(test)]
mod tests {
    use super::accepted;
    use axum::http::{HeaderMap, HeaderValue, header};

    fn accepts(value: &str) -> bool {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("")),
        );
        accepted(&h)
    }

    #[test]
    fn gzip_is_sent_only_to_who_accepts_it() {
        // What Prometheus sends.
        assert!(accepts("gzip"));
        assert!(accepts("deflate, GZIP;q=0.5"));
        assert!(accepts("*"));
        assert!(!accepts("identity"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepted(&HeaderMap::new()));
    }
}
