//! Fault injection: rules, added over `/_sandbox/faults`, that answer
//! matching requests with an error status instead of the normal handler.
//!
//! A rule matches on an optional method, a path prefix and optionally the
//! flow step a request belongs to (its `X-Synthetic-Step` header, so a test
//! can fail one step of a flow whose steps share a path); the first matching
//! rule (in the order added) wins. A rule with `remaining` set is used up
//! after that many hits. New kinds of faults go into [`FaultRule::respond`].

use super::{ApiError, AppState, answerable_status, json_status, lock, parse_json, parse_u64};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The most rules kept at once.
const MAX_RULES: usize = 100;
/// The longest accepted `path_prefix`, in bytes.
const MAX_PREFIX_LEN: usize = 1_000;
/// Paths under this prefix (the fault API itself) are never faulted.
const ADMIN_PREFIX: &str = "/_sandbox";

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/_sandbox/faults", get(list).post(add).delete(clear))
        .route("/_sandbox/faults/{id}", delete(remove))
}

/// The body of `POST /_sandbox/faults`, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRule {
    #[serde(default)]
    method: Option<String>,
    path_prefix: String,
    status: u64,
    #[serde(default)]
    remaining: Option<u64>,
    #[serde(default)]
    step: Option<String>,
}

impl NewRule {
    fn validate(self, id: u64) -> Result<FaultRule, ApiError> {
        let method = self
            .method
            .map(|method| {
                Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                    .map_err(|_| ApiError::invalid("method", "must be an HTTP method"))
            })
            .transpose()?;
        if !self.path_prefix.starts_with('/') || self.path_prefix.len() > MAX_PREFIX_LEN {
            return Err(ApiError::invalid(
                "path_prefix",
                format!("must start with '/' and be at most {MAX_PREFIX_LEN} bytes"),
            ));
        }
        let status = answerable_status("status", self.status)?;
        if self.remaining == Some(0) {
            return Err(ApiError::invalid("remaining", "must be at least 1"));
        }
        Ok(FaultRule {
            id,
            method: method.map(|method| method.to_string()),
            path_prefix: self.path_prefix,
            status: status.as_u16(),
            remaining: self.remaining,
            step: self.step,
        })
    }
}

/// One fault-injection rule, as the API shows it.
#[derive(Clone, Serialize)]
struct FaultRule {
    id: u64,
    /// Uppercase; `None` matches every method.
    method: Option<String>,
    path_prefix: String,
    status: u16,
    /// Hits left before the rule is removed; `None` never runs out.
    remaining: Option<u64>,
    /// Only requests whose `X-Synthetic-Step` header has this value.
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<String>,
}

impl FaultRule {
    fn matches(&self, method: &Method, path: &str, step: Option<&str>) -> bool {
        self.method
            .as_deref()
            .is_none_or(|wanted| wanted == method.as_str())
            && path.starts_with(&self.path_prefix)
            && self
                .step
                .as_deref()
                .is_none_or(|wanted| Some(wanted) == step)
    }

    /// The answer a matching request gets.
    fn respond(&self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_status(status, json!({ "error": "fault injected" }))
    }
}

/// The active rules, bounded by [`MAX_RULES`].
#[derive(Default)]
pub(super) struct FaultTable {
    rules: Vec<FaultRule>,
    next_id: u64,
}

impl FaultTable {
    /// Uses up one hit of the first rule matching the request, if any, and
    /// returns its answer.
    fn hit(&mut self, method: &Method, path: &str, step: Option<&str>) -> Option<Response> {
        let index = self
            .rules
            .iter()
            .position(|rule| rule.matches(method, path, step))?;
        let rule = self.rules.get_mut(index)?;
        let response = rule.respond();
        if let Some(remaining) = rule.remaining.as_mut() {
            *remaining -= 1;
            if *remaining == 0 {
                self.rules.remove(index);
            }
        }
        Some(response)
    }
}

/// Middleware: answers requests that a rule matches, except the fault API's own.
pub(super) async fn inject(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let admin = path == ADMIN_PREFIX || path.starts_with(&format!("{ADMIN_PREFIX}/"));
    if !admin {
        let step = request
            .headers()
            .get(crate::tagging::STEP_HEADER)
            .and_then(|v| v.to_str().ok());
        let hit = lock(&state.faults).hit(request.method(), path, step);
        if let Some(response) = hit {
            return response;
        }
    }
    next.run(request).await
}

async fn add(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let request: NewRule = parse_json(&body)?;
    let mut table = lock(&state.faults);
    let rule = request.validate(table.next_id)?;
    if table.rules.len() >= MAX_RULES {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("at most {MAX_RULES} fault rules can be active"),
        ));
    }
    table.next_id += 1;
    table.rules.push(rule.clone());
    Ok((StatusCode::CREATED, Json(rule)).into_response())
}

/// The body of `GET /_sandbox/faults`.
#[derive(Serialize)]
struct RuleList {
    count: usize,
    rules: Vec<FaultRule>,
}

async fn list(State(state): State<AppState>) -> Json<RuleList> {
    let rules = lock(&state.faults).rules.clone();
    Json(RuleList {
        count: rules.len(),
        rules,
    })
}

async fn clear(State(state): State<AppState>) -> Response {
    let cleared = std::mem::take(&mut lock(&state.faults).rules).len();
    Json(json!({ "cleared": cleared })).into_response()
}

async fn remove(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_u64("id", &raw)?;
    let mut table = lock(&state.faults);
    let index = table
        .rules
        .iter()
        .position(|rule| rule.id == id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "fault rule not found"))?;
    table.rules.remove(index);
    Ok(StatusCode::NO_CONTENT)
}
