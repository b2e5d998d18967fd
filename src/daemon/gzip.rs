//! The listener's large text answers (`/metrics`, the status page):
//! whether a client accepts gzip, the encoding at the fastest level, and,
//! for a client that does not, the text in chunks.

use axum::http::{HeaderMap, header};
use bytes::Bytes;
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

/// Text gzipped as it is written, in chunks: a large answer (`/metrics`
/// at 10,000 probes is ~25 MB of text) is never held whole uncompressed.
pub struct Compressing {
    pending: String,
    encoder: flate2::write::GzEncoder<Vec<u8>>,
    failed: bool,
}

impl Compressing {
    /// Text gathered before it goes through the encoder.
    const CHUNK: usize = 64 * 1024;

    pub fn new() -> Compressing {
        Compressing {
            pending: String::with_capacity(Compressing::CHUNK + 1024),
            encoder: flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()),
            failed: false,
        }
    }

    fn drain(&mut self) {
        if !self.failed && self.encoder.write_all(self.pending.as_bytes()).is_err() {
            self.failed = true;
        }
        self.pending.clear();
    }

    /// The compressed bytes; `None` if the encoder failed (the caller then
    /// sends the text as it is).
    pub fn finish(mut self) -> Option<Vec<u8>> {
        self.drain();
        if self.failed {
            return None;
        }
        self.encoder.finish().ok()
    }
}

impl std::fmt::Write for Compressing {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.pending.push_str(s);
        if self.pending.len() >= Compressing::CHUNK {
            self.drain();
        }
        Ok(())
    }
}

/// Text written in chunks of about [`Chunked::CHUNK`] bytes, sent as a
/// streamed body: the answer is never one allocation, which a `String`
/// grown by doubling would make up to twice the text's size (~7 MiB more
/// resident after a plain scrape of 1,000 probes), and each chunk is freed
/// once it is on the wire. The render still ends before the first byte
/// leaves, so a slow client holds no lock.
pub struct Chunked {
    chunks: Vec<Bytes>,
    pending: String,
    len: usize,
}

impl Chunked {
    const CHUNK: usize = 64 * 1024;

    pub fn new() -> Chunked {
        Chunked {
            chunks: Vec::new(),
            pending: String::new(),
            len: 0,
        }
    }

    fn seal(&mut self) {
        if !self.pending.is_empty() {
            let full = std::mem::take(&mut self.pending);
            self.len += full.len();
            self.chunks.push(Bytes::from(full));
        }
    }

    /// The chunks in order, and their total length.
    pub fn finish(mut self) -> (Vec<Bytes>, usize) {
        self.seal();
        (self.chunks, self.len)
    }
}

impl std::fmt::Write for Chunked {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(Chunked::CHUNK + 1024);
        }
        self.pending.push_str(s);
        if self.pending.len() >= Chunked::CHUNK {
            self.seal();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{Chunked, Compressing, accepted};
    use axum::http::{HeaderMap, HeaderValue, header};
    use std::fmt::Write as _;
    use std::io::Read as _;

    #[test]
    fn text_compressed_in_chunks_decompresses_to_what_was_written() {
        let mut z = Compressing::new();
        let mut written = String::new();
        // Several chunks' worth, in lines of uneven length.
        for i in 0..20_000 {
            let line = format!(
                "probe_success{{probe=\"p{i}\",environment=\"e\"}} {}\n",
                i % 2
            );
            let _ = z.write_str(&line);
            written.push_str(&line);
        }
        assert!(written.len() > 3 * Compressing::CHUNK);
        let body = z.finish().unwrap_or_default();
        assert!(body.len() < written.len() / 4, "{} bytes", body.len());
        let mut back = String::new();
        let read = flate2::read::GzDecoder::new(body.as_slice()).read_to_string(&mut back);
        assert!(read.is_ok(), "{read:?}");
        assert_eq!(back, written);
    }

    #[test]
    fn text_in_chunks_joins_back_to_what_was_written() {
        let mut c = Chunked::new();
        let mut written = String::new();
        for i in 0..20_000 {
            let line = format!("probe_success{{probe=\"p{i}\",environment=\"e\"}} 1\n");
            let _ = c.write_str(&line);
            written.push_str(&line);
        }
        let (chunks, len) = c.finish();
        assert!(chunks.len() > 3, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|c| c.len() <= Chunked::CHUNK + 1024));
        assert_eq!(len, written.len());
        assert_eq!(chunks.concat(), written.as_bytes());
        // Nothing written: no chunk, not an empty one.
        assert_eq!(Chunked::new().finish(), (Vec::new(), 0));
    }

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
