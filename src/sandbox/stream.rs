//! The sandbox's streaming routes: Server-Sent Events and chunked bodies.
//!
//! STUB: being built.

use super::AppState;
use axum::Router;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
}
