//! The daemon's own HTTP listener: `/healthz`, `/readyz`, `/metrics`, the
//! read-only history API under `/api/v1/` ([`super::api`]) and the status
//! page at `/` ([`super::page`]). With `[daemon] token` set, `/metrics`,
//! the API and the page answer only requests with `Authorization: Bearer
//! TOKEN` (compared in constant time; 401 otherwise); `/healthz` and
//! `/readyz` stay open for orchestrators and load balancers.
//!
//! `/healthz` says only whether this process is alive and its scheduler loop
//! has ticked recently; never anything about targets or receivers, so a
//! failing target cannot get synthmon restarted. Its JSON body also says
//! who this instance is among several: its location, its shard and how
//! many pairs it runs. `/readyz` says whether the
//! config is loaded and the first schedule armed. `/metrics` is gzipped
//! when the scraper accepts it (Prometheus does): its text repeats every
//! probe's labels line after line, so it shrinks ~20×.

use super::Shared;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub fn router(shared: Arc<Shared>) -> Router {
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .merge(super::api::routes())
        .merge(super::api::artifact_routes())
        .merge(super::page::routes(shared.clone()))
        .route_layer(axum::middleware::from_fn_with_state(shared.clone(), bearer));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(guarded)
        .fallback(super::api::fallback)
        .with_state(shared)
}

/// Lets a request through when no token is configured, or when it carries
/// `Authorization: Bearer TOKEN`; a 401 with `WWW-Authenticate` otherwise.
/// The token is read from the config in effect, so a reload changes it.
async fn bearer(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let config = shared.config();
    let Some(token) = config.daemon.token.as_ref() else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    match given {
        Some(given) if same_token(given.as_bytes(), token.expose().as_bytes()) => {
            next.run(request).await
        }
        _ => {
            let why = if given.is_some() {
                "invalid_token"
            } else {
                "missing_token"
            };
            tracing::debug!(path = %request.uri().path(), why, "refused a request without the listener's token");
            (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"synthmon\""),
                )],
                "this listener asks for a bearer token: send `Authorization: Bearer TOKEN` \
                 ([daemon] token)\n",
            )
                .into_response()
        }
    }
}

/// Whether two tokens are equal, in time that depends on neither's
/// content nor length: their SHA-256 digests are compared with every byte
/// looked at.
fn same_token(given: &[u8], expected: &[u8]) -> bool {
    use sha2::Digest;
    let (a, b) = (sha2::Sha256::digest(given), sha2::Sha256::digest(expected));
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0_u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// `/healthz`'s body.
#[derive(serde::Serialize)]
struct Health {
    /// `ok`, or `stalled` with a 503.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    /// `[daemon] location`; null when unset.
    location: Option<String>,
    shard: HealthShard,
    /// The (probe, environment) pairs this instance runs.
    pairs: usize,
}

#[derive(serde::Serialize)]
struct HealthShard {
    /// From 0, as StatefulSet ordinals.
    index: u32,
    count: u32,
}

async fn healthz(State(shared): State<Arc<Shared>>) -> (StatusCode, axum::Json<Health>) {
    let config = shared.config();
    let (code, status, error) = if shared.healthy() {
        (StatusCode::OK, "ok", None)
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "stalled",
            Some("scheduler loop has not ticked recently"),
        )
    };
    let location = &config.daemon.location;
    let health = Health {
        status,
        error,
        location: (!location.is_empty()).then(|| location.clone()),
        shard: HealthShard {
            index: config.shard.index(),
            count: config.shard.count(),
        },
        pairs: config.pairs(),
    };
    (code, axum::Json(health))
}

async fn readyz(State(shared): State<Arc<Shared>>) -> (StatusCode, &'static str) {
    if shared.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(shared): State<Arc<Shared>>, request: HeaderMap) -> Response {
    let dropped = shared
        .spans_dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    let content_type = (
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    // At 10,000 probes the text is ~25 MB: written (and compressed) on the
    // blocking pool, not on a runtime worker the runs need, and streamed
    // while the render goes on (gzipped for a client that takes it, as
    // Prometheus does), never held whole.
    let gzipped = super::gzip::accepted(&request);
    let (mut streaming, rx) = if gzipped {
        super::gzip::Streaming::gzipped()
    } else {
        super::gzip::Streaming::new()
    };
    tokio::task::spawn_blocking(move || {
        shared.metrics.render_to(dropped, &mut streaming);
        streaming.finish();
    });
    let body = super::gzip::body(rx);
    if gzipped {
        let encoding = (header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        return ([content_type, encoding], body).into_response();
    }
    ([content_type], body).into_response()
}

/// Serves until `stop` is cancelled, then finishes open requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let app = router(shared);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "the daemon's HTTP listener failed");
    }
}

#[cfg(test)]
mod tests {
    use super::same_token;

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token(b"s3cret-token", b"s3cret-token"));
        assert!(!same_token(b"s3cret-token", b"s3cret-tokeN"));
        assert!(!same_token(b"s3cret", b"s3cret-token"));
        assert!(!same_token(b"", b"s3cret-token"));
    }
}
