//! The sandbox's gRPC server with the standard health service.
//!
//! A plaintext HTTP/2 (h2c, prior knowledge) listener that answers
//! `grpc.health.v1.Health/Check`: the whole server ("") and `orders` are
//! SERVING, `payments` is NOT_SERVING, and any other service is NOT_FOUND,
//! as the health protocol specifies for `Check`. Every other method is
//! UNIMPLEMENTED, like a real server without it.
//!
//! It is built on the `h2` crate with the two tiny messages encoded by hand
//! (see `probe::grpc` for why); the integration tests check it against
//! tonic-health's client. Like the rest of the sandbox it is bounded against
//! hostile clients: at most [`MAX_CONNECTIONS`] connections and
//! [`MAX_STREAMS`] calls on each, small header and request caps, timeouts on
//! the handshake, on each request and on idle connections, and everything
//! ends when `stop` turns true.

use crate::probe::grpc::{HEALTH_CHECK_PATH, fields, frame, unframe};
use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

/// The services the health service knows, with their `ServingStatus`.
const SERVICES: &[(&str, u64)] = &[
    ("", SERVING),
    ("orders", SERVING),
    ("payments", NOT_SERVING),
];
const SERVING: u64 = 1;
const NOT_SERVING: u64 = 2;

/// Connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 64;
/// Calls in flight on one connection (HTTP/2 `MAX_CONCURRENT_STREAMS`).
const MAX_STREAMS: u32 = 16;
/// The largest header block a client may send.
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
/// The largest request body read (a `HealthCheckRequest` is tiny).
const MAX_REQUEST_BYTES: usize = 4 * 1024;
/// How long a client has to finish the HTTP/2 handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client has to send a whole request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may sit without a new call before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long closing connections may take to finish their calls.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// gRPC status codes the server answers with.
const NOT_FOUND: u32 = 5;
const INVALID_ARGUMENT: u32 = 3;
const RESOURCE_EXHAUSTED: u32 = 8;
const UNIMPLEMENTED: u32 = 12;
const DEADLINE_EXCEEDED: u32 = 4;

/// Starts the listener(s) on `ip` (port 0), serving until `stop` turns
/// true; returns the [`super::VARIABLES`] entries it provides.
pub async fn start(
    ip: IpAddr,
    stop: watch::Receiver<bool>,
) -> std::io::Result<Vec<(&'static str, String)>> {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, stop));
    // An unspecified bind address is reached through loopback.
    let reachable = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    tracing::debug!(%addr, "sandbox grpc listening");
    Ok(vec![(
        "sandbox_grpc",
        SocketAddr::new(reachable, addr.port()).to_string(),
    )])
}

/// Accepts connections until `stop`; the connection tasks are owned here
/// and end with it.
async fn serve(listener: TcpListener, stop: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    let mut stopped = stop.clone();
    let stopping = until_stopped(&mut stopped);
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            () = &mut stopping => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    // Over the cap, the connection is closed at once.
                    if let Ok(permit) = Arc::clone(&permits).try_acquire_owned() {
                        connections.spawn(connection(tcp, stop.clone(), permit));
                    }
                }
                // Out of file descriptors or similar: let it pass.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Each connection closes itself on `stop`; wait for them, then cut.
    let _ = tokio::time::timeout(CLOSE_GRACE * 2, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

/// Serves one HTTP/2 connection until the client leaves, it idles out, or
/// `stop` turns true.
async fn connection(
    tcp: TcpStream,
    mut stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let _ = tcp.set_nodelay(true);
    let handshake = h2::server::Builder::new()
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST_BYTES)
        .handshake::<_, Bytes>(tcp);
    let Ok(Ok(mut conn)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await else {
        return;
    };
    let mut calls = JoinSet::new();
    loop {
        tokio::select! {
            () = until_stopped(&mut stop) => break,
            next = tokio::time::timeout(IDLE_TIMEOUT, conn.accept()) => match next {
                Ok(Some(Ok((request, respond)))) => {
                    calls.spawn(call(request, respond));
                }
                Ok(Some(Err(_)) | None) => return,
                Err(_) if calls.is_empty() => break,
                Err(_) => {}
            },
            Some(_) = calls.join_next(), if !calls.is_empty() => {}
        }
    }
    // Say goodbye and let the calls in flight finish, briefly.
    conn.graceful_shutdown();
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(_)) = conn.accept().await {}
    })
    .await;
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// What to answer one call with.
#[derive(Debug, PartialEq)]
enum Reply {
    /// A plain HTTP error: the request is not a gRPC call.
    Http(StatusCode),
    /// A non-OK gRPC status, trailers only.
    Status(u32, String),
    /// A `HealthCheckResponse` with this serving status.
    Serving(u64),
}

async fn call(request: Request<RecvStream>, mut respond: SendResponse<Bytes>) {
    let reply = tokio::time::timeout(REQUEST_TIMEOUT, answer(request))
        .await
        .unwrap_or_else(|_| {
            Reply::Status(DEADLINE_EXCEEDED, "request not received in time".into())
        });
    // A client that went away cannot be answered; nothing else to do.
    let _ = send(&mut respond, reply);
}

/// Reads and judges one request.
async fn answer(request: Request<RecvStream>) -> Reply {
    if request.method() != http::Method::POST {
        return Reply::Http(StatusCode::METHOD_NOT_ALLOWED);
    }
    let is_grpc = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if !is_grpc {
        return Reply::Http(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    if request.uri().path() != HEALTH_CHECK_PATH {
        return Reply::Status(
            UNIMPLEMENTED,
            format!("unknown method {}", request.uri().path()),
        );
    }
    let mut body = request.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else {
            return Reply::Status(INVALID_ARGUMENT, "the request stream failed".into());
        };
        let _ = body.flow_control().release_capacity(chunk.len());
        if data.len() + chunk.len() > MAX_REQUEST_BYTES {
            return Reply::Status(
                RESOURCE_EXHAUSTED,
                format!("the request exceeds {MAX_REQUEST_BYTES} bytes"),
            );
        }
        data.extend_from_slice(&chunk);
    }
    match service_of(&data) {
        Err(why) => Reply::Status(INVALID_ARGUMENT, why),
        Ok(service) => match SERVICES.iter().find(|(name, _)| *name == service) {
            Some((_, status)) => Reply::Serving(*status),
            None => Reply::Status(NOT_FOUND, format!("unknown service {service}")),
        },
    }
}

/// The `service` field of a framed `HealthCheckRequest`.
fn service_of(body: &[u8]) -> Result<String, String> {
    let message = unframe(body)?;
    let mut service = Ok(String::new());
    fields(message, |number, _, bytes| {
        if number == 1 {
            service = String::from_utf8(bytes.to_vec())
                .map_err(|_| "the service name is not UTF-8".to_owned());
        }
    })?;
    service
}

fn send(respond: &mut SendResponse<Bytes>, reply: Reply) -> Result<(), h2::Error> {
    let grpc_response = || {
        let mut response = Response::new(());
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        response
    };
    match reply {
        Reply::Http(status) => {
            let mut response = Response::new(());
            *response.status_mut() = status;
            respond.send_response(response, true)?;
        }
        Reply::Status(code, message) => {
            let mut response = grpc_response();
            let headers = response.headers_mut();
            headers.insert("grpc-status", HeaderValue::from(code));
            if let Ok(v) = HeaderValue::from_str(&percent_encode(&message)) {
                headers.insert("grpc-message", v);
            }
            respond.send_response(response, true)?;
        }
        Reply::Serving(status) => {
            let mut stream = respond.send_response(grpc_response(), false)?;
            // Field 1, varint: the serving status.
            stream.send_data(frame(&[0x08, status as u8]), false)?;
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from(0));
            stream.send_trailers(trailers)?;
        }
    }
    Ok(())
}

/// `grpc-message` encoding: printable ASCII but `%` as is, the rest as
/// `%XX` of its UTF-8 bytes.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_decoded_and_judged() {
        assert_eq!(service_of(&frame(&[])).unwrap(), "");
        assert_eq!(
            service_of(&frame(&[0x0a, 6, b'o', b'r', b'd', b'e', b'r', b's'])).unwrap(),
            "orders"
        );
        assert!(service_of(&frame(&[0x0a, 2, 0xff, 0xfe])).is_err());
        assert!(service_of(&[0, 0]).is_err());
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(percent_encode("unknown service x"), "unknown service x");
        assert_eq!(percent_encode("100% café\n"), "100%25 caf%C3%A9%0A");
    }
}
