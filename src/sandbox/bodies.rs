//! Routes with unusual bodies: large, gzip-compressed, stalled and dripped,
//! and JSON an `http` probe's `json` cannot read.
//!
//! - `GET /bytes/{n}`, `GET /gzip/{n}`: `n` bytes of `a` (at most 1 GiB),
//!   plain or gzip-compressed.
//! - `GET /stall`: announces 1,000 bytes, sends 10, then nothing.
//! - `GET /drip?bytes=&interval_ms=`: a byte at a time.
//! - `GET /json/invalid`: a JSON document cut short (`application/json`,
//!   status 200), so an expectation reading `json` fails with the parse
//!   error and where it happened.
//! - `GET /json/deep?depth=N`: `N` arrays nested in one another (default
//!   100,000, at most [`MAX_JSON_DEPTH`], i.e. a body of at most 1,000,000
//!   bytes), far beyond any JSON parser's recursion limit: the probe must
//!   report a nesting error, not crash or hang.
//!
//! Bodies are generated on the fly in chunks of at most [`CHUNK`] bytes, so
//! memory stays small whatever size is asked for (`/json/deep` included: it
//! is written by counting, never by recursion), and every body stream is
//! cut when the sandbox shuts down.

use super::{ApiError, AppState, QueryParams, Shared, parse_u64};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::get;
use flate2::Compression;
use flate2::write::GzEncoder;
use futures_util::stream::{self, Stream, StreamExt};
use std::io::{self, Write};
use std::time::Duration;

/// The size of one generated chunk.
const CHUNK: usize = 64 * 1024;
/// The largest body `/bytes` and `/gzip` produce (their decoded size).
const MAX_BODY_BYTES: u64 = 1 << 30;
/// How many chunks `/gzip` compresses at most before yielding, even if the
/// encoder has produced no output yet.
const GZIP_BATCH: usize = 16;
/// The body length `/stall` announces.
const STALL_ANNOUNCED: u64 = 1_000;
/// How many bytes `/stall` sends before it stalls.
const STALL_SENT: usize = 10;
/// The most bytes `/drip` sends.
const MAX_DRIP_BYTES: u64 = 10_000;
/// The longest interval between two of `/drip`'s bytes.
const MAX_DRIP_INTERVAL_MS: u64 = 10_000;

/// How deep `/json/deep` nests at most: a body of 1,000,000 bytes.
const MAX_JSON_DEPTH: u64 = 500_000;
/// How deep `/json/deep` nests when not told.
const DEFAULT_JSON_DEPTH: u64 = 100_000;
/// The size of one chunk of `/json/deep`'s brackets.
const BRACKETS: usize = 8 * 1024;
/// `/json/invalid`'s body: the start of a document, cut inside an array.
const TRUNCATED_JSON: &str =
    r#"{"service": {"name": "sandbox-orders"}, "items": [{"id": 1, "name": "wid"#;

/// The content of every generated body.
static FILL: [u8; CHUNK] = [b'a'; CHUNK];
/// `/json/deep`'s opening and closing brackets.
static OPEN: [u8; BRACKETS] = [b'['; BRACKETS];
static CLOSE: [u8; BRACKETS] = [b']'; BRACKETS];

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/bytes/{n}", get(bytes))
        .route("/gzip/{n}", get(gzip))
        .route("/stall", get(stall))
        .route("/drip", get(drip))
        .route("/json/invalid", get(invalid_json))
        .route("/json/deep", get(deep_json))
}

/// The length of the next chunk when `left` bytes remain.
fn chunk_len(left: u64) -> usize {
    usize::try_from(left).map_or(CHUNK, |left| left.min(CHUNK))
}

/// Parses a body size from the path, capped at [`MAX_BODY_BYTES`].
fn body_size(raw: &str) -> Result<u64, ApiError> {
    Ok(parse_u64("n", raw)?.min(MAX_BODY_BYTES))
}

/// A response streaming `body`, announcing `content_length` if given.
fn streamed<S>(state: &Shared, body: S, content_length: Option<u64>) -> Response
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    let mut response = Response::new(Body::from_stream(cut_on_shutdown(
        body,
        state.shutdown_signal(),
    )));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(length) = content_length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    response
}

/// Passes `body` through until `shutdown` resolves, then fails it, so that a
/// stalled or slow body never holds up a graceful shutdown.
fn cut_on_shutdown<S, F>(body: S, shutdown: F) -> impl Stream<Item = io::Result<Bytes>> + Send
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let running = Some((Box::pin(body), Box::pin(shutdown)));
    stream::unfold(running, |running| async move {
        let (mut body, mut shutdown) = running?;
        tokio::select! {
            item = body.next() => item.map(|item| (item, Some((body, shutdown)))),
            () = &mut shutdown => Some((Err(io::Error::other("sandbox is shutting down")), None)),
        }
    })
}

/// `n` bytes of 'a' with a Content-Length.
async fn bytes(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let n = body_size(&raw)?;
    let body = stream::unfold(n, |left| async move {
        let len = chunk_len(left);
        (len > 0).then(|| (Ok(Bytes::from_static(&FILL[..len])), left - len as u64))
    });
    Ok(streamed(&state, body, Some(n)))
}

/// A gzip body that decodes to `n` bytes of 'a', compressed chunk by chunk.
async fn gzip(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let n = body_size(&raw)?;
    let encoder = GzEncoder::new(Vec::new(), Compression::fast());
    let body = stream::unfold(Some((encoder, n)), |running| async move {
        running.map(|(encoder, left)| gzip_step(encoder, left))
    });
    let mut response = streamed(&state, body, None);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}

/// `/gzip`'s stream state: the encoder and how many input bytes are left.
type GzipState = (GzEncoder<Vec<u8>>, u64);

/// Compresses the next few chunks (until the encoder emits output) and
/// returns that output with the state for the next step; with nothing left
/// it finishes the gzip stream and returns no next state.
fn gzip_step(
    mut encoder: GzEncoder<Vec<u8>>,
    mut left: u64,
) -> (io::Result<Bytes>, Option<GzipState>) {
    if left == 0 {
        return (encoder.finish().map(Bytes::from), None);
    }
    for _ in 0..GZIP_BATCH {
        let len = chunk_len(left);
        if len == 0 || !encoder.get_ref().is_empty() {
            break;
        }
        if let Err(err) = encoder.write_all(&FILL[..len]) {
            return (Err(err), None);
        }
        left -= len as u64;
    }
    let output = Bytes::from(std::mem::take(encoder.get_mut()));
    (Ok(output), Some((encoder, left)))
}

/// Announces 1000 bytes, sends 10, then sends nothing more until the client
/// goes away (or the sandbox shuts down).
async fn stall(State(state): State<AppState>) -> Response {
    let head = stream::once(async { Ok(Bytes::from_static(&FILL[..STALL_SENT])) });
    streamed(&state, head.chain(stream::pending()), Some(STALL_ANNOUNCED))
}

/// Sends `bytes` bytes (default 10) one at a time, `interval_ms` apart
/// (default 100).
async fn drip(State(state): State<AppState>, query: QueryParams) -> Result<Response, ApiError> {
    let n = query.u64("bytes")?.unwrap_or(10).min(MAX_DRIP_BYTES);
    let interval_ms = query
        .u64("interval_ms")?
        .unwrap_or(100)
        .min(MAX_DRIP_INTERVAL_MS);
    let interval = Duration::from_millis(interval_ms);
    let body = stream::unfold(0, move |sent| async move {
        if sent == n {
            return None;
        }
        if sent > 0 {
            tokio::time::sleep(interval).await;
        }
        Some((Ok(Bytes::from_static(&FILL[..1])), sent + 1))
    });
    Ok(streamed(&state, body, Some(n)))
}

/// A JSON document cut short, announced as JSON.
async fn invalid_json() -> Response {
    let mut response = Response::new(Body::from(TRUNCATED_JSON));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `depth` arrays nested in one another (`[[[…]]]`), announced as JSON.
async fn deep_json(
    State(state): State<AppState>,
    query: QueryParams,
) -> Result<Response, ApiError> {
    let depth = query.u64("depth")?.unwrap_or(DEFAULT_JSON_DEPTH);
    if depth == 0 {
        return Err(ApiError::invalid("depth", "must be at least 1"));
    }
    let depth = depth.min(MAX_JSON_DEPTH);
    let mut response = streamed(&state, nested_arrays(depth), Some(2 * depth));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// `depth` opening brackets then as many closing ones, in chunks of at most
/// [`BRACKETS`] bytes.
fn nested_arrays(depth: u64) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    stream::unfold(0, move |sent| async move {
        let (fill, left) = if sent < depth {
            (&OPEN, depth - sent)
        } else {
            (&CLOSE, 2 * depth - sent)
        };
        let len = usize::try_from(left).map_or(BRACKETS, |left| left.min(BRACKETS));
        (len > 0).then(|| (Ok(Bytes::from_static(&fill[..len])), sent + len as u64))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn collect(depth: u64) -> Vec<u8> {
        let chunks: Vec<io::Result<Bytes>> = nested_arrays(depth).collect().await;
        chunks.into_iter().flat_map(|c| c.unwrap()).collect()
    }

    #[tokio::test]
    async fn nested_arrays_are_balanced_brackets() {
        assert_eq!(collect(1).await, b"[]");
        assert_eq!(collect(3).await, b"[[[]]]");
        let n = BRACKETS as u64 * 2 + 5;
        let body = collect(n).await;
        assert_eq!(body.len() as u64, 2 * n);
        let half = usize::try_from(n).unwrap();
        assert!(body[..half].iter().all(|b| *b == b'['));
        assert!(body[half..].iter().all(|b| *b == b']'));
        // Within serde_json's recursion limit the document parses.
        let doc: serde_json::Value = serde_json::from_slice(&collect(100).await).unwrap();
        assert!(doc.is_array());
    }

    #[test]
    fn the_truncated_document_is_not_json() {
        let err = serde_json::from_str::<serde_json::Value>(TRUNCATED_JSON).unwrap_err();
        assert!(err.is_eof(), "{err}");
    }
}
