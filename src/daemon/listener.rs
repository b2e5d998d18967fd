//! The daemon's own HTTP listener: `/healthz`, `/readyz` and `/metrics`
//! (later also the status page).
//!
//! `/healthz` says only whether this process is alive and its scheduler loop
//! has ticked recently; never anything about targets or receivers, so a
//! failing target cannot get synthmon restarted. `/readyz` says whether the
//! config is loaded and the first schedule armed.

use super::Shared;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

async fn healthz(State(shared): State<Arc<Shared>>) -> (StatusCode, &'static str) {
    if shared.healthy() {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "scheduler loop has not ticked recently\n",
        )
    }
}

async fn readyz(State(shared): State<Arc<Shared>>) -> (StatusCode, &'static str) {
    if shared.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl axum::response::IntoResponse {
    let dropped = shared
        .spans_dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.render(dropped),
    )
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
