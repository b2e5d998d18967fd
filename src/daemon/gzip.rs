//! The listener's large text answers (`/metrics`, the status page):
//! whether a client accepts gzip, the encoding at the fastest level, and
//! text streamed in chunks as it is written, gzipped or as it is.

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

/// What a render hands the body: a chunk of text, or the end of a whole
/// answer.
pub enum Piece {
    Chunk(Bytes),
    End,
}

/// Text sent on in chunks as it is written, to a body ([`body`]) that
/// streams them while the rest is still being rendered: as it is, in
/// chunks of about [`Streaming::CHUNK`] bytes, or gzipped (every
/// [`Streaming::CHUNK`] of text goes through the encoder, and its output
/// leaves once there is [`Streaming::PACKED`] of it). The answer is never
/// one allocation: a `String` grown by doubling left ~7 MiB more resident
/// after a plain scrape of 1,000 probes, and the whole compressed answer
/// +3.4 MiB after a gzip scrape of 10,000 (+1.9 MiB streamed; both
/// measured before the series table's backlog, `telemetry::metrics`). A
/// client that reads as fast as the text is written frees each chunk
/// before many more exist. The channel is unbounded on purpose:
/// the render holds the series table's lock, so it must never wait for a
/// client; a slow one at worst makes the chunks add up to the whole
/// answer, which is what an unstreamed answer held anyway.
pub struct Streaming {
    tx: tokio::sync::mpsc::UnboundedSender<Piece>,
    pending: String,
    /// `Some` for a gzipped answer: what it has compressed and not sent.
    gzip: Option<flate2::write::GzEncoder<Vec<u8>>>,
    /// The encoder failed (it writes to memory, so only a bug would): the
    /// answer then ends without [`Piece::End`], as a render that stops does.
    failed: bool,
}

impl Streaming {
    /// Text gathered before it is sent, or compressed.
    const CHUNK: usize = 64 * 1024;
    /// Compressed bytes gathered before they are sent.
    const PACKED: usize = 16 * 1024;

    /// The writer of a plain answer, and the receiver to give [`body`].
    pub fn new() -> (Streaming, tokio::sync::mpsc::UnboundedReceiver<Piece>) {
        Streaming::with(None)
    }

    /// The writer of a gzipped answer (the fastest level: a scrape is made
    /// every few seconds, and the text compresses well at any level).
    pub fn gzipped() -> (Streaming, tokio::sync::mpsc::UnboundedReceiver<Piece>) {
        Streaming::with(Some(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        )))
    }

    fn with(
        gzip: Option<flate2::write::GzEncoder<Vec<u8>>>,
    ) -> (Streaming, tokio::sync::mpsc::UnboundedReceiver<Piece>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let writer = Streaming {
            tx,
            pending: String::new(),
            gzip,
            failed: false,
        };
        (writer, rx)
    }

    /// Sends a chunk; a client that left drops the receiver: nothing to do.
    fn send(&self, chunk: Vec<u8>) {
        if !chunk.is_empty() {
            let _ = self.tx.send(Piece::Chunk(Bytes::from(chunk)));
        }
    }

    /// Sends (or compresses) what is pending; compressed output leaves
    /// once there is `at_least` of it.
    fn seal(&mut self, at_least: usize) {
        let Some(encoder) = self.gzip.as_mut() else {
            let full = std::mem::take(&mut self.pending);
            self.send(full.into_bytes());
            return;
        };
        if !self.failed && encoder.write_all(self.pending.as_bytes()).is_err() {
            self.failed = true;
        }
        // Kept for the next chunk of text.
        self.pending.clear();
        if encoder.get_ref().len() >= at_least {
            let packed = std::mem::take(encoder.get_mut());
            self.send(packed);
        }
    }

    /// Sends what is pending and the end: without this (a panic in the
    /// render), the body ends in an error rather than in a short answer.
    pub fn finish(mut self) {
        self.seal(0);
        if let Some(encoder) = self.gzip.take() {
            match encoder.finish() {
                Ok(rest) if !self.failed => self.send(rest),
                _ => return,
            }
        }
        let _ = self.tx.send(Piece::End);
    }
}

impl std::fmt::Write for Streaming {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(Streaming::CHUNK + 1024);
        }
        self.pending.push_str(s);
        if self.pending.len() >= Streaming::CHUNK {
            self.seal(Streaming::PACKED);
        }
        Ok(())
    }
}

/// A response body of the chunks `rx` receives, until [`Piece::End`]. If
/// the writer is gone without it, the body fails, so the client sees a
/// broken answer (hyper cuts the connection) and not a shorter text that
/// would parse as a whole one with families missing.
pub fn body(rx: tokio::sync::mpsc::UnboundedReceiver<Piece>) -> axum::body::Body {
    let pieces = futures_util::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Some(Piece::Chunk(chunk)) => Some((Ok(chunk), Some(rx))),
            Some(Piece::End) => None,
            None => Some((
                Err(std::io::Error::other("the text stopped before its end")),
                None,
            )),
        }
    });
    axum::body::Body::from_stream(pieces)
}

#[cfg(test)]
mod tests {
    use super::{Piece, Streaming, accepted, body};
    use axum::http::{HeaderMap, HeaderValue, header};
    use http_body_util::BodyExt as _;
    use std::fmt::Write as _;
    use std::io::Read as _;

    #[tokio::test]
    async fn text_gzipped_in_chunks_decompresses_to_what_was_written() {
        let (mut w, mut rx) = Streaming::gzipped();
        let mut written = String::new();
        // Many chunks' worth, in lines of uneven length that compress less
        // than a repeated line would.
        for i in 0..200_000u64 {
            let line = format!(
                "probe_duration_seconds{{probe=\"p{i}\",environment=\"e\"}} {}\n",
                i.wrapping_mul(2_654_435_761) % 1_000_003
            );
            let _ = w.write_str(&line);
            written.push_str(&line);
        }
        // Compressed chunks leave while the text is still being written.
        let mut early = Vec::new();
        while let Ok(Piece::Chunk(c)) = rx.try_recv() {
            early.extend_from_slice(&c);
        }
        assert!(
            early.len() >= Streaming::PACKED,
            "{} bytes sent early",
            early.len()
        );
        w.finish();
        let rest = body(rx).collect().await.map(|b| b.to_bytes());
        early.extend_from_slice(&rest.unwrap_or_default());
        assert!(early.len() < written.len() / 4, "{} bytes", early.len());
        let mut back = String::new();
        let read = flate2::read::GzDecoder::new(early.as_slice()).read_to_string(&mut back);
        assert!(read.is_ok(), "{read:?}");
        assert_eq!(back, written);
    }

    #[tokio::test]
    async fn a_gzipped_render_that_stops_before_its_end_breaks_the_body() {
        let (mut w, rx) = Streaming::gzipped();
        let _ = w.write_str("probe_success{probe=\"a\",environment=\"e\"} 1\n");
        drop(w); // no finish: as when the render panics
        assert!(body(rx).collect().await.is_err());

        // Nothing written, then the end: a whole (empty) gzip stream.
        let (w, rx) = Streaming::gzipped();
        w.finish();
        let packed = body(rx).collect().await.map(|b| b.to_bytes());
        let packed = packed.unwrap_or_default();
        let mut back = String::new();
        let read = flate2::read::GzDecoder::new(&packed[..]).read_to_string(&mut back);
        assert!(read.is_ok(), "{read:?}");
        assert_eq!(back, "");
    }

    #[tokio::test]
    async fn text_streamed_in_chunks_is_what_was_written() {
        let (mut w, mut rx) = Streaming::new();
        let mut written = String::new();
        for i in 0..20_000 {
            let line = format!("probe_success{{probe=\"p{i}\",environment=\"e\"}} 1\n");
            let _ = w.write_str(&line);
            written.push_str(&line);
        }
        // Chunks leave while the text is still being written.
        let mut early = 0;
        while let Ok(Piece::Chunk(c)) = rx.try_recv() {
            assert!(c.len() <= Streaming::CHUNK + 1024);
            early += c.len();
        }
        assert!(early > 3 * Streaming::CHUNK, "{early} bytes sent early");
        w.finish();
        let rest = body(rx).collect().await.map(|b| b.to_bytes());
        let rest = rest.unwrap_or_default();
        assert_eq!(early + rest.len(), written.len());
        assert_eq!(&rest[..], &written.as_bytes()[early..]);
    }

    #[tokio::test]
    async fn a_render_that_stops_before_its_end_breaks_the_body() {
        let (mut w, rx) = Streaming::new();
        let _ = w.write_str("probe_success{probe=\"a\",environment=\"e\"} 1\n");
        drop(w); // no finish: as when the render panics
        assert!(body(rx).collect().await.is_err());

        // Nothing written, then the end: an empty answer, not an error.
        let (w, rx) = Streaming::new();
        w.finish();
        let empty = body(rx).collect().await.map(|b| b.to_bytes());
        assert_eq!(empty.ok().as_deref(), Some(&b""[..]));
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
