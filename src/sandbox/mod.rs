//! The built-in sandbox target: a small in-process HTTP service behind
//! `builtin:sandbox` and `synthmon sandbox --listen ADDR`.
//!
//! This module owns the sandbox's routes, its bounded in-memory state (orders
//! and fault-injection rules) and its lifecycle ([`Sandbox::start`] and
//! [`Sandbox::shutdown`]). It is a rehearsal and test target for example
//! probes, tests and benchmarks, not a service to expose: callers bind it to
//! loopback (`127.0.0.1:0` for an ephemeral port) unless told otherwise.
//!
//! Hostile input must never panic it or make it grow without bound, so every
//! size, count and duration taken from a request is validated or capped, large
//! bodies are generated on the fly in chunks, and everything that waits or
//! streams for long is cut short when the sandbox shuts down.
//!
//! The routes live in submodules by theme: `basic` (health, status codes,
//! fixed JSON, header echo, redirects), `orders` (a small order API),
//! `timing` (fixed and sampled delays), `bodies` (large, compressed, stalled
//! and dripped bodies), `faults` (rule-based fault injection) and `ws`
//! (echo, ticker and rejecting upgrade endpoints); `dns` adds `/dns-query`
//! (its zone over HTTP) beside its own listeners; `auth` is an OAuth2
//! token endpoint and a route that wants its tokens. Faults HTTP cannot be
//! made to commit through axum (resets, broken heads, lying lengths) are
//! served by `raw` on a port of their own; `mtls` is an HTTPS port that
//! requires a client certificate, `proxy` two HTTP CONNECT proxies.
//!
//! The HTTP port speaks HTTP/1.1 and HTTP/2 with prior knowledge (h2c);
//! `https` serves the same routes over TLS, HTTP/2 or HTTP/1.1 as ALPN
//! picks.

mod accept;
mod auth;
mod basic;
mod bodies;
mod dns;
mod faults;
mod grpc;
mod https;
mod mtls;
mod orders;
pub mod proxy;
mod raw;
mod stream;
mod tcp;
mod timing;
mod ws;

#[cfg(test)]
mod tests;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The longest any route waits before answering.
const MAX_DELAY_MS: u64 = 60_000;

/// The largest request body the sandbox reads (orders and fault rules are
/// small JSON documents).
const MAX_REQUEST_BODY: usize = 64 * 1024;

/// How long [`Sandbox::shutdown`] lets connections drain before it aborts the
/// server task.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Variables a `builtin:sandbox` environment gets: the addresses of the
/// sandbox's listeners besides HTTP, for probes of the other kinds
/// (`address = "{{ vars.sandbox_tcp }}"`).
pub const VARIABLES: &[&str] = &[
    // A TCP port that greets with a banner line and echoes lines back.
    "sandbox_tcp",
    // TLS ports: a valid certificate for `localhost` (trusted through
    // `sandbox_ca_file`), an expired one, and one for another host name.
    "sandbox_tls",
    "sandbox_tls_expired",
    "sandbox_tls_wrong_host",
    // The PEM file of the sandbox's own certificate authority.
    "sandbox_ca_file",
    // An HTTPS port (`https://IP:PORT`) that requires a client certificate
    // signed by the sandbox CA, and the PEM files of one it accepts.
    "sandbox_mtls",
    "sandbox_client_cert",
    "sandbox_client_key",
    // HTTP CONNECT proxies to loopback targets (`http://IP:PORT`): one
    // open, one that wants user `synth`, password `sandbox-proxy-pass`.
    "sandbox_proxy",
    "sandbox_proxy_auth",
    // The HTTP routes over TLS (`https://localhost:PORT`, trusted through
    // `sandbox_ca_file`), HTTP/2 or HTTP/1.1 as ALPN picks.
    "sandbox_https",
    // A gRPC server with the standard health service.
    "sandbox_grpc",
    // A DNS server (UDP and TCP) authoritative for `sandbox.test.`.
    "sandbox_dns",
    // The same zone over TLS (DNS over TLS; trusted through `sandbox_ca_file`).
    "sandbox_dot",
    // The same zone over HTTP (DNS over HTTPS's wire format, in clear): the
    // URL of `/dns-query` on the sandbox's HTTP port.
    "sandbox_doh",
    // Raw HTTP/1.1 faults by path (`/reset`, `/garbage`, …; `GET /` lists them).
    "sandbox_raw",
];

/// Tunables of one sandbox instance.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// How long after creation an order reports status "processed".
    pub process_delay: Duration,
    /// Upper bound on stored orders (memory stays bounded); beyond it POST answers 503.
    pub max_orders: usize,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            process_delay: Duration::from_millis(200),
            max_orders: 10_000,
        }
    }
}

/// A running sandbox server, owned by its caller.
///
/// Dropping it without [`Sandbox::shutdown`] still asks the server to stop,
/// but does not wait for it.
#[derive(Debug)]
pub struct Sandbox {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    /// [`VARIABLES`] → their values, from the extra listeners.
    variables: std::collections::BTreeMap<String, String>,
}

impl Sandbox {
    /// Binds `listen` (use 127.0.0.1:0 for an ephemeral port) and serves until shut down.
    pub async fn start(listen: SocketAddr, opts: SandboxOptions) -> std::io::Result<Sandbox> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Shared::new(opts));
        let shutdown = state.shutdown.clone();
        let signal = state.shutdown_signal();
        // Small writes go out at once: with Nagle's algorithm a second
        // short answer on a connection (a streamed message, an echo) waits
        // for the client's delayed ACK, ~40 ms that no real service adds.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server =
            axum::serve(listener, build_router(state.clone())).with_graceful_shutdown(signal);
        let task = tokio::spawn(server.into_future());
        tracing::debug!(%addr, "sandbox listening");
        let mut variables = std::collections::BTreeMap::new();
        let ip = addr.ip();
        // The valid certificate of the TLS ports serves DNS over TLS too.
        let (tcp_ports, valid_tls) = tcp::start(ip, state.shutdown.subscribe()).await?;
        let https = https::start(
            ip,
            valid_tls.clone(),
            build_router(state.clone()),
            state.shutdown.subscribe(),
            state.shutdown_signal(),
        )
        .await?;
        for extra in [
            tcp_ports,
            https,
            grpc::start(ip, state.shutdown.subscribe()).await?,
            dns::start(ip, valid_tls, state.shutdown.subscribe()).await?,
            raw::start(ip, state.shutdown.subscribe()).await?,
            proxy::start(ip, state.shutdown.subscribe()).await?,
        ] {
            variables.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v)));
        }
        let mut sandbox = Sandbox {
            addr,
            shutdown,
            task: Some(task),
            variables,
        };
        let doh = format!("{}/dns-query", sandbox.base_url());
        sandbox.variables.insert("sandbox_doh".to_owned(), doh);
        Ok(sandbox)
    }

    /// The sandbox's [`VARIABLES`] and their values.
    pub fn variables(&self) -> &std::collections::BTreeMap<String, String> {
        &self.variables
    }

    /// The address the server is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// "http://127.0.0.1:PORT"
    ///
    /// An unspecified bind address (`0.0.0.0` or `::`) is reported as the
    /// loopback address of the same family, so the URL is always reachable.
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// Graceful stop; waits for the server task.
    ///
    /// Long waits and endless bodies are cut at once; connections that still
    /// have not finished after a few seconds are aborted.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        let Some(mut task) = self.task.take() else {
            return;
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => tracing::warn!(%err, "sandbox server failed"),
            Ok(Err(err)) => tracing::warn!(%err, "sandbox server task failed"),
            Err(_) => {
                tracing::warn!("sandbox did not drain in time; aborting it");
                task.abort();
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// The routes, for embedding.
///
/// An embedded router is never told to shut down, so its long waits and
/// endless bodies end only when their clients go away.
pub fn router(opts: SandboxOptions) -> Router {
    build_router(Arc::new(Shared::new(opts)))
}

/// The state every handler shares.
type AppState = Arc<Shared>;

struct Shared {
    opts: SandboxOptions,
    orders: Mutex<orders::OrderStore>,
    faults: Mutex<faults::FaultTable>,
    /// Turns `true` once the sandbox shuts down.
    shutdown: watch::Sender<bool>,
}

impl Shared {
    fn new(opts: SandboxOptions) -> Self {
        Self {
            opts,
            orders: Mutex::default(),
            faults: Mutex::default(),
            shutdown: watch::Sender::new(false),
        }
    }

    /// A future that resolves once the sandbox shuts down.
    fn shutdown_signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stop = self.shutdown.subscribe();
        async move {
            // An error means the sender is gone, which is a stop as well.
            let _ = stop.wait_for(|stopped| *stopped).await;
        }
    }

    /// Sleeps for `duration`, or fails with 503 if the sandbox shuts down first.
    async fn sleep(&self, duration: Duration) -> Result<(), ApiError> {
        tokio::select! {
            () = precise_sleep(duration) => Ok(()),
            () = self.shutdown_signal() => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "sandbox is shutting down",
            )),
        }
    }
}

/// Sleeps for `duration` to within the kernel's timer slack (~50 µs).
///
/// tokio's timer wakes on whole milliseconds, after the tick that follows
/// the deadline: its 50 ms sleep ends 50 to 52 ms later, by where in the
/// millisecond it began. The sandbox's delays are the yardstick that
/// clients' timings are compared against (bench row 7 compares synthmon's
/// p50 on `/delay/50` with wrk's), so a delay ends on time: the runtime's
/// timer covers all but the last [`PRECISE_TAIL`], which a blocking thread
/// sleeps.
async fn precise_sleep(duration: Duration) {
    let until = std::time::Instant::now() + duration;
    if let Some(coarse) = duration.checked_sub(PRECISE_TAIL) {
        tokio::time::sleep(coarse).await;
    }
    let left = until.saturating_duration_since(std::time::Instant::now());
    if !left.is_zero() {
        // Only a panic or a runtime shutdown makes this an error; either
        // way the delay is over.
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(left)).await;
    }
}

/// The end of a delay slept on a blocking thread: longer than the runtime
/// timer's overshoot (up to 2 ms), so the coarse part never ends late.
const PRECISE_TAIL: Duration = Duration::from_millis(3);

fn build_router(state: AppState) -> Router {
    Router::new()
        .merge(basic::routes())
        .merge(auth::routes())
        .merge(orders::routes())
        .merge(timing::routes())
        .merge(bodies::routes())
        .merge(faults::routes())
        .merge(stream::routes())
        .merge(ws::routes())
        .merge(dns::routes())
        .fallback(basic::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            faults::inject,
        ))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY))
        .layer(axum::middleware::map_response(tag_response))
        .with_state(state)
}

/// Marks every response as coming from the sandbox.
async fn tag_response(mut response: Response) -> Response {
    response.headers_mut().insert(
        HeaderName::from_static("x-sandbox"),
        HeaderValue::from_static("synthmon"),
    );
    response
}

/// Locks a mutex, recovering the data if a panicking holder poisoned it (the
/// guarded data stays consistent because no holder panics mid-update).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An error answer: `{"error": "...", "field": "..."}` with its status.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    /// The request field or parameter at fault, when there is one.
    field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            field: None,
        }
    }

    /// A 400 blaming one field or parameter; the message starts with its name.
    fn invalid(field: &str, why: impl Display) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: format!("{field}: {why}"),
            field: Some(field.to_owned()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(field) = self.field {
            body["field"] = Value::String(field);
        }
        (self.status, Json(body)).into_response()
    }
}

/// Answers `status` with a JSON body, leaving the body out where HTTP forbids one.
fn json_status(status: StatusCode, body: Value) -> Response {
    if matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED) {
        status.into_response()
    } else {
        (status, Json(body)).into_response()
    }
}

/// Validates a status code that a route is asked to answer with.
///
/// hyper cannot send an informational (1xx) status as a final response, so
/// the valid range is 200..=599.
fn answerable_status(field: &str, code: u64) -> Result<StatusCode, ApiError> {
    u16::try_from(code)
        .ok()
        .filter(|code| (200..=599).contains(code))
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| ApiError::invalid(field, "must be a status code between 200 and 599"))
}

/// Parses a path segment or parameter as a non-negative integer.
fn parse_u64(field: &str, raw: &str) -> Result<u64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::invalid(field, "must be a non-negative integer"))
}

/// Parses a JSON request body into `T`, naming the offending field on error.
///
/// Types used here deny unknown fields, so a stray field is an error too.
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // serde would also accept a struct written as a positional array.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::invalid("body", "must be a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path != "." {
            return ApiError::invalid(&path, inner);
        }
        // Missing and unknown fields are reported at the root, with the field
        // name in backticks inside serde's message.
        let message = inner.to_string();
        match backticked(&message) {
            Some(field) if inner.is_data() => ApiError {
                status: StatusCode::BAD_REQUEST,
                field: Some(field.to_owned()),
                message,
            },
            _ => ApiError::invalid("body", message),
        }
    })?;
    de.end().map_err(|err| ApiError::invalid("body", err))?;
    Ok(value)
}

/// The first `backticked` word of a serde message.
fn backticked(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once('`')?;
    let (name, _) = rest.split_once('`')?;
    Some(name)
}

/// Query parameters, decoded; a repeated name keeps its last value.
struct QueryParams(HashMap<String, String>);

impl QueryParams {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn u64(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.get(name).map(|raw| parse_u64(name, raw)).transpose()
    }

    fn f64(&self, name: &str) -> Result<Option<f64>, ApiError> {
        self.get(name)
            .map(|raw| {
                raw.parse::<f64>()
                    .ok()
                    .filter(|value| value.is_finite())
                    .ok_or_else(|| ApiError::invalid(name, "must be a finite number"))
            })
            .transpose()
    }

    fn required_f64(&self, name: &str) -> Result<f64, ApiError> {
        self.f64(name)?
            .ok_or_else(|| ApiError::invalid(name, "is required"))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        let query = parts.uri.query().unwrap_or_default();
        Ok(Self(
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        ))
    }
}
