//! OAuth2 client credentials (RFC 6749 §4.4): getting a bearer token for a
//! run, and keeping it while it is good.
//!
//! [`OAuth2`] is the checked `oauth2 = { token_url, client_id,
//! client_secret, scopes, audience }` of an environment or a request (the
//! config layer builds it); [`OAuth2::token`] hands a run an
//! [`AccessToken`] from a process-wide cache, or asks the token endpoint
//! for one: a `POST` of `grant_type=client_credentials` (form-encoded, the
//! scopes space-joined), the client authenticated with HTTP Basic
//! (§2.3.1: id and secret form-encoded, then base64), through
//! [`super::http1::exchange`] with the TLS client config and the proxy of
//! the run's environment and under the run's deadline. No other HTTP
//! client is involved.
//!
//! Rules the cache keeps:
//! - one entry per (token URL, client id, client secret, scopes,
//!   audience): probes that share the settings share the token, and a
//!   probe with a wrong secret never borrows the token another probe got
//!   with the right one (the secret is part of the key, held like the
//!   settings themselves, never printed);
//! - a token is reused until shortly before it expires: `expires_in` less
//!   a tenth of it, at most a minute ([`refresh_margin`]); without
//!   `expires_in`, for [`DEFAULT_LIFETIME`];
//! - one fetch at a time per entry: runs that find the token stale while
//!   another run fetches wait for that fetch and share its token, or its
//!   failure, rather than each asking again;
//! - a failure is not cached beyond the runs that waited for it: the next
//!   run asks again;
//! - a token the target refused (a 401) is forgotten by whoever saw it
//!   ([`AccessToken::rejected`]), so the next run fetches a new one; the
//!   run that saw the 401 does not retry, so a target that refuses every
//!   token costs one fetch per run, never a loop;
//! - the cache holds at most [`MAX_ENTRIES`] entries (each a few hundred
//!   bytes): when full, entries no run is using and whose token is stale
//!   go first.
//!
//! Every failure is reason `auth`, worded with the token URL and what the
//! endpoint said (its status and the OAuth `error` field): never the
//! secret, the credentials header or a token. The token itself is a
//! [`Secret`]; a kind that sends it adds it to its run's redactor, since
//! a target may echo it back.

use super::error::Fail;
use super::http1::{self, TransportOptions};
use super::proxy::Proxy;
use crate::outcome::FailureReason;
use crate::secret::{self, Secret};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use rustls::ClientConfig;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

/// How long a token whose endpoint gave no `expires_in` is reused. RFC
/// 6749 leaves that to the server's documentation; five minutes bounds
/// the use of a token that has in fact expired (and a 401 from the target
/// makes the next run fetch anew anyway).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// The longest a token is reused, whatever `expires_in` says (a lifetime
/// of years is refreshed daily; it also keeps every instant far from the
/// clock's limit).
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The most a token is refreshed ahead of its expiry.
pub const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The largest token response read (a JWT with many claims is a few KiB).
pub const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// The most cache entries kept (see the module's rules).
pub const MAX_ENTRIES: usize = 1024;

/// The most characters of the endpoint's `error` and `error_description`
/// repeated in a message.
const MAX_ERROR_CHARS: usize = 200;

/// Client-credentials settings, checked at load.
#[derive(Debug)]
pub struct OAuth2 {
    pub token_url: TokenUrl,
    pub client_id: String,
    pub client_secret: Secret<String>,
    /// Sent space-joined as `scope`; none: no `scope` parameter.
    pub scopes: Vec<String>,
    /// Sent as `audience` (Auth0, Okta and others ask for one).
    pub audience: Option<String>,
    /// The cache entry last used, and the token URL it is for: a run
    /// finds it without building a key.
    entry: Mutex<Option<(Url, Arc<Entry>)>>,
}

/// How the token endpoint is reached: the run's environment's TLS client
/// config and proxy (a probe's own `tls` and `proxy` are for its target).
pub struct Via {
    pub tls: Arc<ClientConfig>,
    pub proxy: Option<Arc<Proxy>>,
}

/// Where the token endpoint is.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenUrl {
    /// An `http(s)` URL.
    Absolute(Url),
    /// A path (starting with `/`) on the run's base URL, appended to its
    /// path as a probe's relative `url` is (the built-in sandbox's
    /// address is known only when it starts).
    Path(String),
}

impl TokenUrl {
    /// The endpoint for a run whose base URL is `base`.
    pub fn resolve(&self, base: &Url) -> Result<Url, String> {
        match self {
            TokenUrl::Absolute(url) => Ok(url.clone()),
            TokenUrl::Path(path) => {
                let joined = format!(
                    "{}/{}",
                    base.as_str().trim_end_matches('/'),
                    path.trim_start_matches('/')
                );
                Url::parse(&joined).map_err(|e| {
                    format!("cannot build the OAuth2 token URL from `{path}` on {base}: {e}")
                })
            }
        }
    }
}

impl OAuth2 {
    pub fn new(
        token_url: TokenUrl,
        client_id: String,
        client_secret: Secret<String>,
        scopes: Vec<String>,
        audience: Option<String>,
    ) -> OAuth2 {
        OAuth2 {
            token_url,
            client_id,
            client_secret,
            scopes,
            audience,
            entry: Mutex::new(None),
        }
    }

    /// A token for a run whose base URL is `base`: the cached one while it
    /// is good, else a new one from the endpoint (see the module's rules),
    /// all before `deadline`. `via` says how the endpoint is reached (the
    /// TLS config and proxy of the run's environment); it is asked only
    /// when a fetch is due.
    pub async fn token<V, Fut>(
        &self,
        base: &Url,
        via: V,
        deadline: Instant,
    ) -> Result<AccessToken, Fail>
    where
        V: FnOnce() -> Fut,
        Fut: Future<Output = Result<Via, Fail>>,
    {
        let url = self
            .token_url
            .resolve(base)
            .map_err(|m| Fail::new(FailureReason::Auth, m))?;
        let entry = self.entry_for(&url);
        obtain(&entry, &url, deadline, || async {
            let via = via().await?;
            self.fetch(&url, via, deadline).await
        })
        .await
    }

    /// The cache entry of these settings at `url`.
    fn entry_for(&self, url: &Url) -> Arc<Entry> {
        let mut last = self.entry.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, entry)) = last.as_ref() {
            if at == url {
                return Arc::clone(entry);
            }
        }
        let entry = shared_entry(Key {
            url: url.to_string(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.expose().clone(),
            scopes: self.scopes.clone(),
            audience: self.audience.clone(),
        });
        *last = Some((url.clone(), Arc::clone(&entry)));
        entry
    }

    /// One request to the token endpoint: the token and how long it is
    /// good for.
    async fn fetch(
        &self,
        url: &Url,
        via: Via,
        deadline: Instant,
    ) -> Result<(AccessToken, Duration), Fail> {
        let request = self.request(url)?;
        let options = TransportOptions {
            follow_redirects: false,
            max_redirects: 0,
            max_body_bytes: MAX_RESPONSE_BYTES,
            decompress: true,
            tls: via.tls,
            server_name: None,
            proxy: via.proxy,
            version: crate::net::http2::HttpVersion::Auto,
        };
        match http1::exchange(request, &options, deadline).await {
            Ok(response) => read_response(url, response.status, &response.body),
            Err(failure) => Err(Fail::new(
                FailureReason::Auth,
                format!("cannot get an OAuth2 token from {url}: {}", failure.message),
            )),
        }
    }

    /// The token request (RFC 6749 §4.4.2).
    fn request(&self, url: &Url) -> Result<http1::Request, Fail> {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if !self.scopes.is_empty() {
            form.append_pair("scope", &self.scopes.join(" "));
        }
        if let Some(audience) = &self.audience {
            form.append_pair("audience", audience);
        }
        let encode =
            |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let credentials = secret::base64(
            format!(
                "{}:{}",
                encode(&self.client_id),
                encode(self.client_secret.expose())
            )
            .as_bytes(),
        );
        let mut authorization =
            HeaderValue::from_str(&format!("Basic {credentials}")).map_err(|_| {
                Fail::new(
                    FailureReason::Auth,
                    "cannot encode the OAuth2 client credentials",
                )
            })?;
        authorization.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, authorization);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("synthmon/", env!("CARGO_PKG_VERSION"))),
        );
        Ok(http1::Request {
            method: Method::POST,
            url: url.clone(),
            headers,
            body: Bytes::from(form.finish()),
        })
    }
}

/// A bearer token, as a run sends it. Its `Debug` shows `***`.
#[derive(Clone, Debug)]
pub struct AccessToken {
    value: Secret<String>,
    /// The cache entry it came from, to forget it when the target refuses it.
    entry: Arc<Entry>,
}

impl AccessToken {
    /// The token in clear, for the run's redactor.
    pub fn expose(&self) -> &str {
        self.value.expose()
    }

    /// `Authorization: Bearer …` (RFC 6750 §2.1), marked sensitive.
    pub fn header(&self) -> HeaderValue {
        // Checked when it arrived (`valid_token`).
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.value.expose()))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
        value.set_sensitive(true);
        value
    }

    /// The target answered 401 to this token: the cache forgets it if it
    /// still holds it, so the next run asks for a new one. Nothing is
    /// retried now.
    pub fn rejected(&self) {
        // A run fetching right now will replace it anyway.
        if let Ok(mut state) = self.entry.state.try_lock() {
            if state
                .token
                .as_ref()
                .is_some_and(|(cached, _)| cached.value == self.value)
            {
                state.token = None;
            }
        }
    }
}

/// What identifies a cache entry. Never printed (it holds the secret).
#[derive(PartialEq, Eq)]
struct Key {
    url: String,
    client_id: String,
    client_secret: String,
    scopes: Vec<String>,
    audience: Option<String>,
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The secret is left out of the hash (it still decides equality).
        self.url.hash(state);
        self.client_id.hash(state);
        self.scopes.hash(state);
        self.audience.hash(state);
    }
}

/// One cache entry: the token, and the fetch in progress (its lock).
#[derive(Default)]
struct Entry {
    state: tokio::sync::Mutex<State>,
    /// Fetches finished, written under the lock: a run that waited for
    /// the lock tells from it whether a fetch ended while it waited.
    finished: AtomicU64,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Entry")
    }
}

#[derive(Default)]
struct State {
    /// The token and when to fetch the next one.
    token: Option<(AccessToken, Instant)>,
    /// The last fetch's failure and its number (in `finished`).
    failure: Option<(u64, Fail)>,
}

/// The process-wide cache.
static ENTRIES: LazyLock<Mutex<HashMap<Key, Arc<Entry>>>> = LazyLock::new(Mutex::default);

/// The entry for `key`, made when there is none.
fn shared_entry(key: Key) -> Arc<Entry> {
    let mut entries = ENTRIES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(entry) = entries.get(&key) {
        return Arc::clone(entry);
    }
    if entries.len() >= MAX_ENTRIES {
        evict(&mut entries);
    }
    let entry = Arc::new(Entry::default());
    entries.insert(key, Arc::clone(&entry));
    entry
}

/// Makes room: drops the entries nobody holds (no settings, no token in
/// use) whose token is stale or missing; if none is, every entry nobody
/// holds. Entries in use stay, so the map may exceed the bound by as
/// many as are in use.
fn evict(entries: &mut HashMap<Key, Arc<Entry>>) {
    let now = Instant::now();
    let idle = |entry: &Arc<Entry>| Arc::strong_count(entry) == 1;
    let stale = |entry: &Arc<Entry>| match entry.state.try_lock() {
        Ok(state) => state.token.as_ref().is_none_or(|(_, at)| *at <= now),
        Err(_) => false,
    };
    entries.retain(|_, entry| !(idle(entry) && stale(entry)));
    if entries.len() >= MAX_ENTRIES {
        entries.retain(|_, entry| !idle(entry));
    }
}

/// When to refresh a token good for `lifetime`: a tenth of it early, at
/// most [`MAX_REFRESH_MARGIN`].
pub fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(MAX_REFRESH_MARGIN)
}

/// The cached token of `entry` while it is good, else `fetch`'s, shared
/// with the runs that waited meanwhile (see the module's rules).
async fn obtain<F, Fut>(
    entry: &Arc<Entry>,
    url: &Url,
    deadline: Instant,
    fetch: F,
) -> Result<AccessToken, Fail>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(AccessToken, Duration), Fail>>,
{
    let finished_before = entry.finished.load(Ordering::Acquire);
    let Ok(mut state) = tokio::time::timeout_at(deadline, entry.state.lock()).await else {
        return Err(Fail::new(
            FailureReason::Auth,
            format!("the deadline passed while waiting for an OAuth2 token from {url}"),
        ));
    };
    if let Some((token, refresh_at)) = &state.token {
        if Instant::now() < *refresh_at {
            return Ok(token.clone());
        }
    }
    if let Some((number, fail)) = &state.failure {
        if *number > finished_before {
            // A fetch ended while this run waited, and failed: its answer
            // is this run's too.
            return Err(fail.clone());
        }
    }
    let asked = Instant::now();
    let result = fetch().await;
    let number = entry.finished.fetch_add(1, Ordering::AcqRel) + 1;
    match result {
        Ok((token, lifetime)) => {
            let lifetime = lifetime.min(MAX_LIFETIME);
            // Counted from when it was asked for: the server's clock
            // started no earlier.
            let refresh_at = asked + (lifetime - refresh_margin(lifetime));
            let token = AccessToken {
                value: token.value,
                entry: Arc::clone(entry),
            };
            state.token = Some((token.clone(), refresh_at));
            state.failure = None;
            Ok(token)
        }
        Err(fail) => {
            state.token = None;
            state.failure = Some((number, fail.clone()));
            Err(fail)
        }
    }
}

/// The token endpoint's answer, judged (RFC 6749 §5.1, §5.2).
fn read_response(
    url: &Url,
    status: StatusCode,
    body: &[u8],
) -> Result<(AccessToken, Duration), Fail> {
    let fail = |m: String| Fail::new(FailureReason::Auth, m);
    let answered = format!(
        "the OAuth2 token endpoint {url} answered {}",
        status_words(status)
    );
    let document: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    if !status.is_success() {
        let said = document.as_ref().and_then(oauth_error);
        return Err(fail(match said {
            Some(said) => format!("{answered}: {said}"),
            None => answered,
        }));
    }
    let Some(serde_json::Value::Object(fields)) = document else {
        return Err(fail(format!(
            "{answered} with a body that is not a JSON object"
        )));
    };
    let token = match fields.get("access_token") {
        Some(serde_json::Value::String(token)) if valid_token(token) => token.clone(),
        Some(serde_json::Value::String(token)) if token.is_empty() => {
            return Err(fail(format!("{answered} with an empty access_token")));
        }
        // Never repeat it: it may be a token after all.
        Some(serde_json::Value::String(_)) => {
            return Err(fail(format!(
                "{answered} with an access_token that cannot be sent in a header (RFC 6750 allows letters, digits and -._~+/ then =)"
            )));
        }
        Some(_) => {
            return Err(fail(format!(
                "{answered} with an access_token that is not a string"
            )));
        }
        None => return Err(fail(format!("{answered} without an access_token"))),
    };
    match fields.get("token_type") {
        // Some servers leave it out; Bearer is what client credentials give.
        None => {}
        Some(serde_json::Value::String(kind)) if kind.eq_ignore_ascii_case("bearer") => {}
        Some(other) => {
            return Err(fail(format!(
                "{answered} with token_type {}, not Bearer (the only type synthmon sends)",
                clip(&other.to_string())
            )));
        }
    }
    let lifetime = match fields.get("expires_in") {
        None | Some(serde_json::Value::Null) => DEFAULT_LIFETIME,
        Some(value) => seconds(value).ok_or_else(|| {
            fail(format!(
                "{answered} with expires_in {}, not a number of seconds",
                clip(&value.to_string())
            ))
        })?,
    };
    Ok((
        AccessToken {
            value: Secret::new(token),
            entry: Arc::default(),
        },
        lifetime,
    ))
}

/// `401 Unauthorized`.
fn status_words(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(words) => format!("{} {words}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// `invalid_client (client authentication failed)`: the `error` and
/// `error_description` of an error answer (RFC 6749 §5.2), kept to the
/// characters the RFC allows and cut short.
fn oauth_error(document: &serde_json::Value) -> Option<String> {
    let text = |key: &str| {
        document
            .get(key)
            .and_then(serde_json::Value::as_str)
            .map(|s| {
                let kept: String = s.chars().filter(|c| (' '..='~').contains(c)).collect();
                clip(kept.trim())
            })
            .filter(|s| !s.is_empty())
    };
    let error = text("error")?;
    Some(match text("error_description") {
        Some(description) => format!("{error} ({description})"),
        None => error,
    })
}

/// At most [`MAX_ERROR_CHARS`] characters of `text`.
fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// RFC 6750's `b64token`: letters, digits and `-._~+/`, then any `=`.
fn valid_token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// `expires_in` as a duration: a non-negative number, or one written as
/// a string (some servers do).
fn seconds(value: &serde_json::Value) -> Option<Duration> {
    let n = match value {
        serde_json::Value::Number(n) => n.as_f64()?,
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (n.is_finite() && n >= 0.0).then(|| Duration::from_secs_f64(n.min(MAX_LIFETIME.as_secs_f64())))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn url() -> Url {
        Url::parse("https://auth.example/oauth/token").unwrap()
    }

    fn issued(value: &str, lifetime: Duration) -> Result<(AccessToken, Duration), Fail> {
        Ok((
            AccessToken {
                value: Secret::new(value.to_owned()),
                entry: Arc::default(),
            },
            lifetime,
        ))
    }

    /// A fetch that counts its calls and answers `answer` after `delay`.
    async fn counted(
        calls: &AtomicUsize,
        delay: Duration,
        answer: Result<(AccessToken, Duration), Fail>,
    ) -> Result<(AccessToken, Duration), Fail> {
        calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(delay).await;
        answer
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    #[test]
    fn the_margin_is_a_tenth_at_most_a_minute() {
        assert_eq!(
            refresh_margin(Duration::from_secs(3600)),
            MAX_REFRESH_MARGIN
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(300)),
            Duration::from_secs(30)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(1)),
            Duration::from_millis(100)
        );
        assert_eq!(refresh_margin(Duration::ZERO), Duration::ZERO);
    }

    /// The token is reused until its lifetime less the margin, then
    /// fetched anew: a table of (time since the first fetch, fetches so
    /// far) for a 100 s token (refreshed 10 s early).
    #[tokio::test(start_paused = true)]
    async fn a_token_is_reused_until_shortly_before_it_expires() {
        let entry = Arc::new(Entry::default());
        let endpoint = url();
        let calls = AtomicUsize::new(0);
        let start = Instant::now();
        for (at, fetches, value) in [
            (0, 1, "t1"),
            (1, 1, "t1"),
            (89, 1, "t1"),
            (90, 2, "t2"),
            (91, 2, "t2"),
            (179, 2, "t2"),
            (180, 3, "t3"),
        ] {
            tokio::time::sleep_until(start + Duration::from_secs(at)).await;
            let next = format!("t{}", calls.load(Ordering::SeqCst) + 1);
            let token = obtain(&entry, &endpoint, far(), || {
                counted(
                    &calls,
                    Duration::ZERO,
                    issued(&next, Duration::from_secs(100)),
                )
            })
            .await
            .unwrap();
            assert_eq!(calls.load(Ordering::SeqCst), fetches, "at {at}s");
            assert_eq!(token.expose(), value, "at {at}s");
        }
    }

    /// `expires_in: 0` is never reused.
    #[tokio::test(start_paused = true)]
    async fn a_token_that_expires_at_once_is_fetched_every_time() {
        let entry = Arc::new(Entry::default());
        let endpoint = url();
        let calls = AtomicUsize::new(0);
        for _ in 0..3 {
            obtain(&entry, &endpoint, far(), || {
                counted(&calls, Duration::ZERO, issued("t", Duration::ZERO))
            })
            .await
            .unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    /// Many runs needing a token at once share one fetch.
    #[tokio::test(start_paused = true)]
    async fn concurrent_runs_share_one_fetch() {
        let entry = Arc::new(Entry::default());
        let endpoint = url();
        let calls = AtomicUsize::new(0);
        let runs = (0..20).map(|_| {
            obtain(&entry, &endpoint, far(), || {
                counted(
                    &calls,
                    Duration::from_millis(50),
                    issued("t", Duration::from_secs(60)),
                )
            })
        });
        let tokens = futures_util::future::join_all(runs).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(tokens.iter().all(|t| t.as_ref().unwrap().expose() == "t"));
    }

    /// Runs that waited for a fetch that failed share its failure; a run
    /// that comes later asks again.
    #[tokio::test(start_paused = true)]
    async fn a_failure_is_shared_by_the_waiting_runs_and_not_kept() {
        let entry = Arc::new(Entry::default());
        let endpoint = url();
        let calls = AtomicUsize::new(0);
        let refused = || Err(Fail::new(FailureReason::Auth, "refused"));
        let runs = (0..5).map(|_| {
            obtain(&entry, &endpoint, far(), || {
                counted(&calls, Duration::from_millis(50), refused())
            })
        });
        let results = futures_util::future::join_all(runs).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(
            results
                .iter()
                .all(|r| r.as_ref().unwrap_err().message == "refused")
        );
        let later = obtain(&entry, &endpoint, far(), || {
            counted(&calls, Duration::ZERO, issued("t", Duration::from_secs(60)))
        })
        .await;
        assert_eq!(later.unwrap().expose(), "t");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    /// A 401 from the target forgets the token: the next run fetches.
    #[tokio::test(start_paused = true)]
    async fn a_rejected_token_is_forgotten_once() {
        let entry = Arc::new(Entry::default());
        let endpoint = url();
        let calls = AtomicUsize::new(0);
        let get = |value: &'static str| {
            obtain(&entry, &endpoint, far(), || {
                counted(
                    &calls,
                    Duration::ZERO,
                    issued(value, Duration::from_secs(600)),
                )
            })
        };
        let first = get("t1").await.unwrap();
        first.rejected();
        let second = get("t2").await.unwrap();
        assert_eq!(second.expose(), "t2");
        // A late 401 to the old token does not drop the new one.
        first.rejected();
        assert_eq!(get("t3").await.unwrap().expose(), "t2");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    /// A run whose deadline passes while another fetches gives up in time.
    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_fetch_is_bounded_by_the_deadline() {
        let entry = Arc::new(Entry::default());
        let endpoint = url();
        let calls = AtomicUsize::new(0);
        let slow = obtain(&entry, &endpoint, far(), || {
            counted(
                &calls,
                Duration::from_secs(10),
                issued("t", Duration::from_secs(60)),
            )
        });
        let hurried = async {
            tokio::task::yield_now().await;
            obtain(
                &entry,
                &url(),
                Instant::now() + Duration::from_secs(1),
                || counted(&calls, Duration::ZERO, issued("u", Duration::from_secs(60))),
            )
            .await
        };
        let (slow, hurried) = tokio::join!(slow, hurried);
        assert_eq!(slow.unwrap().expose(), "t");
        let fail = hurried.unwrap_err();
        assert_eq!(fail.reason, FailureReason::Auth);
        assert_eq!(
            fail.message,
            "the deadline passed while waiting for an OAuth2 token from https://auth.example/oauth/token"
        );
    }

    #[test]
    fn answers_are_read_as_rfc_6749_says() {
        let read = |status: u16, body: &str| {
            read_response(
                &url(),
                StatusCode::from_u16(status).unwrap(),
                body.as_bytes(),
            )
        };
        let (token, lifetime) = read(
            200,
            r#"{"access_token":"abc.DEF-1_~+/==","token_type":"bearer","expires_in":120}"#,
        )
        .unwrap();
        assert_eq!(token.expose(), "abc.DEF-1_~+/==");
        assert_eq!(lifetime, Duration::from_secs(120));
        assert_eq!(token.header().to_str().unwrap(), "Bearer abc.DEF-1_~+/==");
        assert!(token.header().is_sensitive());
        let (_, lifetime) = read(200, r#"{"access_token":"x","expires_in":"60"}"#).unwrap();
        assert_eq!(lifetime, Duration::from_secs(60));
        let (_, lifetime) = read(200, r#"{"access_token":"x"}"#).unwrap();
        assert_eq!(lifetime, DEFAULT_LIFETIME);
        let (_, lifetime) = read(200, r#"{"access_token":"x","expires_in":1e30}"#).unwrap();
        assert_eq!(lifetime, MAX_LIFETIME);

        let message = |status: u16, body: &str| read(status, body).unwrap_err().message;
        let at = "the OAuth2 token endpoint https://auth.example/oauth/token answered";
        assert_eq!(
            message(
                401,
                r#"{"error":"invalid_client","error_description":"client authentication failed"}"#
            ),
            format!("{at} 401 Unauthorized: invalid_client (client authentication failed)")
        );
        assert_eq!(
            message(400, r#"{"error":"invalid_scope"}"#),
            format!("{at} 400 Bad Request: invalid_scope")
        );
        assert_eq!(
            message(503, "<html>down</html>"),
            format!("{at} 503 Service Unavailable")
        );
        assert_eq!(
            message(200, "<html>"),
            format!("{at} 200 OK with a body that is not a JSON object")
        );
        assert_eq!(
            message(200, "{}"),
            format!("{at} 200 OK without an access_token")
        );
        assert_eq!(
            message(200, r#"{"access_token":"has space"}"#),
            format!(
                "{at} 200 OK with an access_token that cannot be sent in a header (RFC 6750 allows letters, digits and -._~+/ then =)"
            )
        );
        assert_eq!(
            message(200, r#"{"access_token":"x","token_type":"mac"}"#),
            format!(
                "{at} 200 OK with token_type \"mac\", not Bearer (the only type synthmon sends)"
            )
        );
        assert_eq!(
            message(200, r#"{"access_token":"x","expires_in":-5}"#),
            format!("{at} 200 OK with expires_in -5, not a number of seconds")
        );
        // The endpoint's words are kept to printable ASCII and cut short.
        let long = "x".repeat(500);
        let said = message(400, &format!(r#"{{"error":"bad\u0007\n{long}"}}"#));
        assert!(said.ends_with('…') && !said.contains('\u{7}'), "{said}");
        assert!(said.chars().count() < 300, "{said}");
    }

    #[test]
    fn a_path_token_url_joins_the_base_url() {
        let base = Url::parse("http://127.0.0.1:8080/v1/").unwrap();
        let path = TokenUrl::Path("/oauth/token?expires_in=5".into());
        assert_eq!(
            path.resolve(&base).unwrap().as_str(),
            "http://127.0.0.1:8080/v1/oauth/token?expires_in=5"
        );
        assert_eq!(TokenUrl::Absolute(url()).resolve(&base).unwrap(), url());
    }

    /// The request: form-encoded grant and scopes, Basic client auth of
    /// the form-encoded id and secret (RFC 6749 §2.3.1).
    #[test]
    fn the_request_authenticates_the_client_with_basic() {
        let o = OAuth2::new(
            TokenUrl::Absolute(url()),
            "my client".into(),
            Secret::new("s3cr:t&".into()),
            vec!["read".into(), "write:all".into()],
            Some("https://api.example".into()),
        );
        let r = o.request(&url()).unwrap();
        assert_eq!(r.method, Method::POST);
        assert_eq!(
            std::str::from_utf8(&r.body).unwrap(),
            "grant_type=client_credentials&scope=read+write%3Aall&audience=https%3A%2F%2Fapi.example"
        );
        let auth = r.headers.get(header::AUTHORIZATION).unwrap();
        assert!(auth.is_sensitive());
        assert_eq!(
            auth.to_str().unwrap(),
            format!("Basic {}", secret::base64(b"my+client:s3cr%3At%26"))
        );
        assert_eq!(
            r.headers.get(header::CONTENT_TYPE).unwrap(),
            "application/x-www-form-urlencoded"
        );
        // The settings print no secret.
        assert!(!format!("{o:?}").contains("s3cr"), "{o:?}");
    }
}
