//! An OAuth2 token endpoint and a route that wants its tokens, for the
//! auth tests and the `oauth2-sandbox` example probe.
//!
//! - `POST /oauth/token`: client credentials (RFC 6749 §4.4). The client
//!   authenticates with HTTP Basic as [`CLIENT_ID`] / [`CLIENT_SECRET`]
//!   (each form-encoded, then base64: §2.3.1); the form body must say
//!   `grant_type=client_credentials`; `scope` is granted as asked.
//!   `?expires_in=N` (0 to 86,400; default 3,600) sets the lifetime the
//!   answer states. Answers `{access_token, token_type: "Bearer",
//!   expires_in, scope}`, or an error as §5.2 has them: `invalid_client`
//!   (401, `WWW-Authenticate: Basic`), `invalid_request` or
//!   `unsupported_grant_type` (400).
//! - `GET /oauth/issued`: `{"issued": N}`, the tokens issued so far, so a
//!   test can tell a cached token from a fetched one.
//! - `GET /protected`: 200 `{"authorized": true, "client_id", "scope"}`
//!   for a bearer token this sandbox issued, 401 with `WWW-Authenticate:
//!   Bearer` without one or with another (RFC 6750 §3); `?scope=S` also
//!   wants `S` among the token's scopes (403 `insufficient_scope`).
//!
//! Tokens do not expire here: the client's cache is under test, not this
//! server's clock. The sandbox remembers the last [`MAX_TOKENS`] it issued
//! (the oldest forgotten first), so no client can make it grow.

use super::{ApiError, AppState, QueryParams, lock};
use axum::Extension;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::Rng;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The sandbox's test client: public, fixed credentials.
pub const CLIENT_ID: &str = "sandbox-client";
pub const CLIENT_SECRET: &str = "sandbox-secret";

/// How many issued tokens are remembered.
pub const MAX_TOKENS: usize = 1024;

/// The longest lifetime `?expires_in=` may ask for, in seconds.
const MAX_EXPIRES_IN: u64 = 86_400;

/// The default lifetime stated, in seconds.
const DEFAULT_EXPIRES_IN: u64 = 3_600;

/// The longest `scope` granted, in bytes.
const MAX_SCOPE_BYTES: usize = 1_024;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/oauth/token", post(token))
        .route("/oauth/issued", get(issued))
        .route("/protected", get(protected))
        .layer(Extension(Arc::new(Tokens::default())))
}

/// The tokens issued, newest last.
#[derive(Default)]
struct Tokens {
    issued: AtomicU64,
    known: Mutex<Known>,
}

#[derive(Default)]
struct Known {
    order: VecDeque<String>,
    scopes: HashMap<String, String>,
}

impl Tokens {
    /// A new token granting `scope`, remembered (forgetting the oldest
    /// beyond [`MAX_TOKENS`]).
    fn issue(&self, scope: &str) -> String {
        let token = format!("sandbox-token-{:032x}", rand::rng().random::<u128>());
        let mut known = lock(&self.known);
        if known.order.len() >= MAX_TOKENS {
            if let Some(old) = known.order.pop_front() {
                known.scopes.remove(&old);
            }
        }
        known.order.push_back(token.clone());
        known.scopes.insert(token.clone(), scope.to_owned());
        self.issued.fetch_add(1, Ordering::Relaxed);
        token
    }

    /// The scope granted to `token`, if this sandbox issued it.
    fn scope_of(&self, token: &str) -> Option<String> {
        lock(&self.known).scopes.get(token).cloned()
    }
}

/// An error answer of the token endpoint (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"sandbox\""),
        );
    }
    no_store(response)
}

/// Token answers must not be cached (RFC 6749 §5.1).
fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The value of an `Authorization` header with scheme `scheme` (any case).
fn credentials<'h>(headers: &'h HeaderMap, scheme: &str) -> Option<&'h str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (given, rest) = value.split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| rest.trim())
        .filter(|rest| !rest.is_empty())
}

/// The Basic credentials of the test client, as §2.3.1 encodes them.
fn client_basic() -> String {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    crate::secret::base64(format!("{}:{}", encode(CLIENT_ID), encode(CLIENT_SECRET)).as_bytes())
}

async fn token(
    Extension(tokens): Extension<Arc<Tokens>>,
    query: QueryParams,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let expires_in = match query.u64("expires_in")? {
        None => DEFAULT_EXPIRES_IN,
        Some(n) if n <= MAX_EXPIRES_IN => n,
        Some(_) => {
            return Err(ApiError::invalid(
                "expires_in",
                format!("must be at most {MAX_EXPIRES_IN}"),
            ));
        }
    };
    if credentials(&headers, "basic") != Some(client_basic().as_str()) {
        return Ok(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        ));
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        None => {
            return Ok(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            ));
        }
        Some(_) => {
            return Ok(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
            ));
        }
    }
    let scope = form.get("scope").map(String::as_str).unwrap_or_default();
    if scope.len() > MAX_SCOPE_BYTES {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "the scope is too long",
        ));
    }
    let access_token = tokens.issue(scope);
    Ok(no_store(
        Json(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": scope,
        }))
        .into_response(),
    ))
}

async fn issued(Extension(tokens): Extension<Arc<Tokens>>) -> Json<Value> {
    Json(json!({ "issued": tokens.issued.load(Ordering::Relaxed) }))
}

async fn protected(
    Extension(tokens): Extension<Arc<Tokens>>,
    query: QueryParams,
    headers: HeaderMap,
) -> Response {
    let refuse = |status: StatusCode, challenge: &'static str, error: &str| {
        let mut response = (status, Json(json!({ "error": error }))).into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        response
    };
    let Some(token) = credentials(&headers, "bearer") else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "Bearer realm=\"sandbox\"",
            "a bearer token is required",
        );
    };
    let Some(scope) = tokens.scope_of(token) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "Bearer realm=\"sandbox\", error=\"invalid_token\"",
            "invalid_token",
        );
    };
    if let Some(wanted) = query.get("scope") {
        if !scope.split(' ').any(|s| s == wanted) {
            return refuse(
                StatusCode::FORBIDDEN,
                "Bearer realm=\"sandbox\", error=\"insufficient_scope\"",
                "insufficient_scope",
            );
        }
    }
    Json(json!({ "authorized": true, "client_id": CLIENT_ID, "scope": scope })).into_response()
}
