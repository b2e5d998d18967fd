//! The sandbox's streaming routes: Server-Sent Events and chunked bodies.
//!
//! `GET /events` sends numbered SSE events (`id: N`) and resumes after the
//! `Last-Event-ID` a reconnecting client sends; it can stall part-way to
//! rehearse stall detection. `GET /sse/numbered` numbers its events with
//! deliberate gaps and duplicates, to rehearse the `stream` probe's
//! sequence check. `GET /chunks` sends a chunked text body piece by piece.
//! Counts, sizes and intervals are capped, and every stream is cut when
//! the sandbox shuts down.

use super::{ApiError, AppState, MAX_DELAY_MS, QueryParams, parse_u64};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use axum::routing::get;
use futures_util::stream::{self, Stream, StreamExt};
use std::io;
use std::time::Duration;

/// The most events or chunks one stream sends.
const MAX_COUNT: u64 = 10_000;
/// The longest interval between two events or chunks.
const MAX_INTERVAL_MS: u64 = 10_000;
/// The largest `data` of one event (`size`).
const MAX_EVENT_SIZE: u64 = 1 << 20;
/// The most ids `skip` or `repeat` may list.
const MAX_LISTED_IDS: usize = 100;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/events", get(events))
        .route("/sse/numbered", get(numbered))
        .route("/chunks", get(chunks))
}

/// How `/events` paces its events.
#[derive(Clone, Copy, Debug)]
struct Pace {
    count: u64,
    interval: Duration,
    /// Stall once, after the event with this id, for `stall`.
    stall_after: Option<u64>,
    stall: Duration,
    /// Bytes of `data` per event; `None`: `event N`.
    size: Option<usize>,
}

/// `GET /events?count=N&interval_ms=M&stall_after=K&stall_ms=S&size=B`:
/// SSE events `id: 1` … `id: N` (default 5, 100 ms apart; the first at
/// once), `data: event N` (or B bytes of `a`). With `Last-Event-ID: X` it
/// starts at X+1. With `stall_after`, it waits `stall_ms` (default the
/// longest delay) after event K before going on.
async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: QueryParams,
) -> Result<Response, ApiError> {
    let pace = Pace {
        count: query.u64("count")?.unwrap_or(5).min(MAX_COUNT),
        interval: Duration::from_millis(
            query
                .u64("interval_ms")?
                .unwrap_or(100)
                .min(MAX_INTERVAL_MS),
        ),
        stall_after: query.u64("stall_after")?,
        stall: Duration::from_millis(
            query
                .u64("stall_ms")?
                .unwrap_or(MAX_DELAY_MS)
                .min(MAX_DELAY_MS),
        ),
        size: query
            .u64("size")?
            .map(|s| usize::try_from(s.min(MAX_EVENT_SIZE)).unwrap_or(0)),
    };
    let after = match headers.get("last-event-id") {
        None => 0,
        Some(v) => parse_u64("Last-Event-ID", v.to_str().unwrap_or_default().trim())?,
    };
    let body = stream::unfold(after + 1, move |id| async move {
        if id > pace.count {
            return None;
        }
        if id > after + 1 {
            let mut wait = pace.interval;
            if pace.stall_after == Some(id - 1) {
                wait += pace.stall;
            }
            tokio::time::sleep(wait).await;
        }
        Some((Ok(Bytes::from(event(id, pace.size))), id + 1))
    });
    let mut response = streamed(&state, body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// `GET /sse/numbered?count=N&interval_ms=M&skip=A,B&repeat=C&resume=false`:
/// N SSE events per connection (default 5, 10 ms apart; the first at
/// once), numbered on from the `Last-Event-ID` sent (else from 1), so a
/// client that resumes, within a run or run after run, sees one
/// numbering. The numbering jumps over the ids `skip` lists (never sent)
/// and sends the ids `repeat` lists twice; with `resume=false` it ignores
/// `Last-Event-ID` and starts at 1 again, like a server that lost its
/// place. Each list holds at most 100 ids.
async fn numbered(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: QueryParams,
) -> Result<Response, ApiError> {
    let count = query.u64("count")?.unwrap_or(5).min(MAX_COUNT);
    let interval =
        Duration::from_millis(query.u64("interval_ms")?.unwrap_or(10).min(MAX_INTERVAL_MS));
    let skip = id_list(&query, "skip")?;
    let repeat = id_list(&query, "repeat")?;
    let resume = match query.get("resume") {
        None | Some("true") => true,
        Some("false") => false,
        Some(_) => return Err(ApiError::invalid("resume", "must be true or false")),
    };
    let after = match headers.get("last-event-id").filter(|_| resume) {
        None => 0,
        Some(v) => parse_u64("Last-Event-ID", v.to_str().unwrap_or_default().trim())?,
    };
    // The ids to send, computed at once (at most MAX_COUNT of them).
    let mut ids = Vec::new();
    let mut next = after.checked_add(1);
    while let Some(id) = next.filter(|_| (ids.len() as u64) < count) {
        next = id.checked_add(1);
        if skip.contains(&id) {
            continue;
        }
        ids.push(id);
        if repeat.contains(&id) && (ids.len() as u64) < count {
            ids.push(id);
        }
    }
    let body = stream::unfold(0, move |i| {
        let id = ids.get(i).copied();
        async move {
            let id = id?;
            if i > 0 {
                tokio::time::sleep(interval).await;
            }
            Some((Ok(Bytes::from(event(id, None))), i + 1))
        }
    });
    let mut response = streamed(&state, body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// A comma-separated list of ids (`skip=5,7`), at most [`MAX_LISTED_IDS`].
fn id_list(query: &QueryParams, name: &str) -> Result<Vec<u64>, ApiError> {
    let Some(raw) = query.get(name).filter(|raw| !raw.is_empty()) else {
        return Ok(Vec::new());
    };
    let ids = raw
        .split(',')
        .map(|id| parse_u64(name, id.trim()))
        .collect::<Result<Vec<u64>, _>>()?;
    if ids.len() > MAX_LISTED_IDS {
        return Err(ApiError::invalid(
            name,
            format!("lists at most {MAX_LISTED_IDS} ids"),
        ));
    }
    Ok(ids)
}

/// One SSE event with its id.
fn event(id: u64, size: Option<usize>) -> String {
    match size {
        None => format!("id: {id}\ndata: event {id}\n\n"),
        Some(n) => format!("id: {id}\ndata: {}\n\n", "a".repeat(n)),
    }
}

/// `GET /chunks?count=N&interval_ms=M`: a chunked `text/plain` body of N
/// pieces `chunk K\n` (default 5, 100 ms apart; the first at once).
async fn chunks(State(state): State<AppState>, query: QueryParams) -> Result<Response, ApiError> {
    let count = query.u64("count")?.unwrap_or(5).min(MAX_COUNT);
    let interval = Duration::from_millis(
        query
            .u64("interval_ms")?
            .unwrap_or(100)
            .min(MAX_INTERVAL_MS),
    );
    let body = stream::unfold(1, move |n| async move {
        if n > count {
            return None;
        }
        if n > 1 {
            tokio::time::sleep(interval).await;
        }
        Some((Ok(Bytes::from(format!("chunk {n}\n"))), n + 1))
    });
    let mut response = streamed(&state, body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}

/// A response streaming `body` without a length (so chunked), cut when the
/// sandbox shuts down.
fn streamed<S>(state: &AppState, body: S) -> Response
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    let shutdown = state.shutdown_signal();
    let running = Some((Box::pin(body), Box::pin(shutdown)));
    let cut = stream::unfold(running, |running| async move {
        let (mut body, mut shutdown) = running?;
        tokio::select! {
            item = body.next() => item.map(|item| (item, Some((body, shutdown)))),
            () = &mut shutdown => Some((Err(io::Error::other("sandbox is shutting down")), None)),
        }
    });
    Response::new(Body::from_stream(cut))
}
