//! Small stateless routes: health, status codes, a fixed JSON document, a
//! header echo and redirects.

use super::{ApiError, AppState, QueryParams, answerable_status, json_status, parse_u64};
use axum::Json;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/status/{code}", any(status))
        .route("/json", get(document))
        .route("/headers", get(headers))
        .route("/redirect/{n}", get(redirect))
        .route("/redirect-loop", get(redirect_loop))
        .route("/redirect-to", get(redirect_to))
}

/// The answer for any path no route serves.
pub(super) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not found")
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Answers with the status code named in the path, whatever the method.
async fn status(Path(raw): Path<String>) -> Result<Response, ApiError> {
    let code = answerable_status("code", parse_u64("code", &raw)?)?;
    Ok(json_status(code, json!({ "status": code.as_u16() })))
}

/// A fixed document with every kind of JSON value, for extraction tests.
///
/// The example probe `catalog-json` expects `service.name` to be "sandbox-orders".
async fn document() -> Json<Value> {
    Json(json!({
        "service": { "name": "sandbox-orders", "version": "1.0.0" },
        "items": [
            { "id": 1, "name": "widget", "price": 9.99 },
            { "id": 2, "name": "gadget", "price": 24.5 },
            { "id": 3, "name": "gizmo", "price": 100 }
        ],
        "tags": ["alpha", "beta"],
        "healthy": true,
        "region": null
    }))
}

/// Echoes the request headers: lowercase names, repeated values joined with ", ".
async fn headers(headers: HeaderMap) -> Json<BTreeMap<String, String>> {
    let echo = headers
        .keys()
        .map(|name| {
            let values: Vec<_> = headers
                .get_all(name)
                .iter()
                .map(|value| String::from_utf8_lossy(value.as_bytes()))
                .collect();
            (name.as_str().to_owned(), values.join(", "))
        })
        .collect();
    Json(echo)
}

/// A 302 to `location`, which callers have made a valid header value.
fn found(location: String) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// Redirects `n` times before answering 200.
async fn redirect(Path(raw): Path<String>) -> Result<Response, ApiError> {
    Ok(match parse_u64("n", &raw)? {
        0 => Json(json!({ "redirected": true })).into_response(),
        n => found(format!("/redirect/{}", n - 1)),
    })
}

async fn redirect_loop() -> Response {
    found("/redirect-loop".to_owned())
}

/// Redirects to the absolute URL in `?url=`.
async fn redirect_to(query: QueryParams) -> Result<Response, ApiError> {
    let raw = query
        .get("url")
        .ok_or_else(|| ApiError::invalid("url", "is required"))?;
    let url = url::Url::parse(raw)
        .map_err(|err| ApiError::invalid("url", format!("must be an absolute URL ({err})")))?;
    // A parsed URL is serialized percent-encoded, so it is a valid header value.
    Ok(found(url.into()))
}
