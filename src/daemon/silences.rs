//! Runtime silences over HTTP: `GET /api/v1/silences`, `POST
//! /api/v1/silences` and `DELETE /api/v1/silences/{id}` (expire), and the
//! client `synthmon silence add|list|expire` uses to call them.
//!
//! A silence changes what pages, so creating or expiring one needs the
//! listener's bearer token: with no `[daemon] token` configured, `POST`
//! and `DELETE` are refused (403) rather than left open to anyone who can
//! reach the port; with one, the listener checks it as for the rest of
//! `/api/`. Every silence has an end (`expires_at` or `duration`, at most
//! [`MAX_SILENCE`]) and a comment. The state lives in
//! [`super::holds::Holds`].

use super::Shared;
use crate::hold::{Matchers, Silence};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The longest silence: past it, a silence is a config change, to be made
/// as a maintenance window.
pub const MAX_SILENCE: Duration = Duration::from_secs(90 * 86_400);

/// The routes, merged into the API's.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v1/silences", get(list).post(add))
        .route("/api/v1/silences/{id}", delete(expire))
}

/// `POST /api/v1/silences`'s body: matchers as in `[[maintenance]]`, an
/// end, and who and why.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// An RFC 3339 time in the future.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// From now, like `2h` (instead of `expires_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub created_by: String,
}

/// A silence as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SilenceView {
    pub id: String,
    /// `active`, or `expired`.
    pub state: String,
    pub matchers: Matchers,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub comment: String,
    pub created_by: String,
}

impl SilenceView {
    fn of(s: &Silence, now: DateTime<Utc>) -> SilenceView {
        SilenceView {
            id: s.id.clone(),
            state: if s.active(now) { "active" } else { "expired" }.to_owned(),
            matchers: s.matchers.clone(),
            created_at: s.created_at,
            expires_at: s.expires_at,
            comment: s.comment.clone(),
            created_by: s.created_by.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SilencesBody {
    /// Whether silences are stored in the history (else they end with
    /// the process).
    pub persistent: bool,
    pub silences: Vec<SilenceView>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// Creating or expiring silences needs a configured token (the listener
/// has already checked the request carries it).
fn refused(shared: &Shared) -> Option<Response> {
    if shared.config().daemon.token.is_none() {
        return Some(error(
            StatusCode::FORBIDDEN,
            "silences change what pages, so creating or expiring one needs a bearer token: \
             set [daemon] token and send `Authorization: Bearer TOKEN`",
        ));
    }
    None
}

async fn list(State(shared): State<Arc<Shared>>) -> Json<SilencesBody> {
    let now = Utc::now();
    Json(SilencesBody {
        persistent: shared.holds.persistent(),
        silences: shared
            .holds
            .silences()
            .iter()
            .map(|s| SilenceView::of(s, now))
            .collect(),
    })
}

async fn add(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<NewSilence>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Some(r) = refused(&shared) {
        return r;
    }
    let Json(new) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let now = Utc::now();
    let silence = match check(&shared.config(), new, now) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match shared.holds.add(silence.clone()).await {
        Ok(()) => (StatusCode::CREATED, Json(SilenceView::of(&silence, now))).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn expire(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    if let Some(r) = refused(&shared) {
        return r;
    }
    let now = Utc::now();
    match shared.holds.expire(&id, now).await {
        Ok(Some(s)) => Json(SilenceView::of(&s, now)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no silence `{id}`")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Checks a new silence against the config in effect: an end in the future
/// within [`MAX_SILENCE`] (one of `expires_at` and `duration`), a comment,
/// and probe and environment names that exist (a typo would silence
/// nothing).
pub fn check(
    config: &crate::plan::Config,
    new: NewSilence,
    now: DateTime<Utc>,
) -> Result<Silence, String> {
    let max = chrono::TimeDelta::from_std(MAX_SILENCE).unwrap_or(chrono::TimeDelta::MAX);
    let expires_at = match (&new.expires_at, &new.duration) {
        (None, None) => {
            return Err(
                "a silence needs an end: `expires_at` (RFC 3339) or `duration` (like `2h`)".into(),
            );
        }
        (Some(_), Some(_)) => {
            return Err("give `expires_at` or `duration`, not both".into());
        }
        (Some(at), None) => DateTime::parse_from_rfc3339(at.trim())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("expires_at: expected an RFC 3339 time, found `{at}` ({e})"))?,
        (None, Some(d)) => {
            let d = humantime::parse_duration(d.trim()).map_err(|e| {
                format!("duration: expected a duration like `2h`, found `{d}` ({e})")
            })?;
            let d = chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX);
            now.checked_add_signed(d.min(max + chrono::TimeDelta::seconds(1)))
                .ok_or("duration: too long")?
        }
    };
    if expires_at <= now {
        return Err(format!(
            "the silence would end at {}, which is not in the future",
            expires_at.to_rfc3339()
        ));
    }
    if expires_at - now > max {
        return Err(format!(
            "a silence lasts at most {} days; for longer, add a [[maintenance]] window to the config",
            MAX_SILENCE.as_secs() / 86_400
        ));
    }
    if new.comment.trim().is_empty() {
        return Err("comment: say why the alerts are silenced".into());
    }
    for p in &new.probes {
        if !config.probes.iter().any(|c| &c.name == p) {
            return Err(format!("probes: no probe `{p}` is configured"));
        }
    }
    for e in &new.environments {
        if !config.environments.contains_key(e) {
            return Err(format!("environments: no environment `{e}` is configured"));
        }
    }
    let id = uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string();
    Ok(Silence {
        id,
        matchers: Matchers {
            probes: new.probes,
            environments: new.environments,
            tags: new.tags,
            labels: new.labels,
        },
        created_at: now,
        expires_at,
        comment: new.comment.trim().to_owned(),
        created_by: match new.created_by.trim() {
            "" => "api".to_owned(),
            who => who.to_owned(),
        },
    })
}

/// The client of `synthmon silence`: the daemon's base URL and token.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Result<Client, String> {
        let tls = crate::net::tls::client_config(&crate::net::tls::TlsOptions::default())?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Client {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&NewSilence>,
    ) -> Result<String, String> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(t) = &self.token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            let json =
                serde_json::to_vec(b).map_err(|e| format!("cannot encode the silence: {e}"))?;
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json);
        }
        let response = request.send().await.map_err(|e| {
            format!(
                "cannot reach the daemon at {url}: {}",
                crate::net::error::describe(&e)
            )
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("cannot read the daemon's answer: {e}"))?;
        if status.is_success() {
            return Ok(text);
        }
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| text.trim().to_owned());
        Err(format!("the daemon answered {status}: {message}"))
    }

    pub async fn add(&self, new: &NewSilence) -> Result<SilenceView, String> {
        let text = self
            .call(reqwest::Method::POST, "/api/v1/silences", Some(new))
            .await?;
        serde_json::from_str(&text).map_err(|e| format!("unexpected answer: {e}"))
    }

    pub async fn list(&self) -> Result<SilencesBody, String> {
        let text = self
            .call(reqwest::Method::GET, "/api/v1/silences", None)
            .await?;
        serde_json::from_str(&text).map_err(|e| format!("unexpected answer: {e}"))
    }

    pub async fn expire(&self, id: &str) -> Result<SilenceView, String> {
        let path = format!("/api/v1/silences/{}", urlencoding(id));
        let text = self.call(reqwest::Method::DELETE, &path, None).await?;
        serde_json::from_str(&text).map_err(|e| format!("unexpected answer: {e}"))
    }
}

/// An id as one path segment.
fn urlencoding(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

/// One line per silence, for `synthmon silence list`.
pub fn render(body: &SilencesBody) -> String {
    let mut out = String::new();
    if body.silences.is_empty() {
        out.push_str("no silences\n");
    }
    for s in &body.silences {
        let m = &s.matchers;
        let mut what: Vec<String> = Vec::new();
        if !m.probes.is_empty() {
            what.push(format!("probe={}", m.probes.join(",")));
        }
        if !m.environments.is_empty() {
            what.push(format!("env={}", m.environments.join(",")));
        }
        if !m.tags.is_empty() {
            what.push(format!("tag={}", m.tags.join(",")));
        }
        what.extend(m.labels.iter().map(|(k, v)| format!("{k}={v}")));
        if what.is_empty() {
            what.push("everything".to_owned());
        }
        out.push_str(&format!(
            "{}  {:<7}  until {}  {}  by {}: {}\n",
            s.id,
            s.state,
            s.expires_at.to_rfc3339(),
            what.join(" "),
            s.created_by,
            s.comment
        ));
    }
    if !body.persistent {
        out.push_str("(the daemon's history is off: silences end with the process)\n");
    }
    out
}
