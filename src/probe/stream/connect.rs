//! One fresh HTTP/1.1 connection (TLS through rustls when https) and its
//! tagged `GET`, lapped on the run's clock up to the response headers.

use crate::net::{AbortOnDrop, Clock, Fail, TlsSetup, describe, dial_via};
use crate::outcome::FailureReason;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use url::{Host, Url};

/// One open response.
pub(super) struct Connection {
    pub(super) body: Incoming,
    _sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    _driver: AbortOnDrop,
}

/// Opens a fresh connection to `url` and sends the GET; returns the
/// response head and the body to read. Every step before the headers is
/// lapped as `phase`.
pub(super) async fn connect(
    url: &Url,
    headers: &HeaderMap,
    tls: TlsSetup<'_>,
    proxy: Option<&crate::net::proxy::Proxy>,
    clock: &mut Clock,
    phase: &'static str,
    cert_expiry: &mut Option<i64>,
) -> Result<(http::response::Parts, Connection), Fail> {
    let bad = |m: String| Fail::new(FailureReason::Request, m);
    let secure = match url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err(bad(format!(
                "unsupported url scheme {other:?} in {url} (only http and https are supported)"
            )));
        }
    };
    let (Some(host), Some(port)) = (url.host(), url.port_or_known_default()) else {
        return Err(bad(format!("{url} has no host")));
    };
    let host: Host<String> = host.to_owned();
    let dialed = dial_via(&host, port, secure.then_some(tls), proxy, clock, [phase; 3]).await?;
    *cert_expiry = dialed.cert_expiry;
    let io = dialed.io;
    let protocol = |doing: &str, e: hyper::Error| {
        Fail::new(
            FailureReason::Protocol,
            format!("{doing} with {url} failed: {}", describe(&e)),
        )
    };
    let waiting = "while waiting for the response headers (connect)";
    let (mut sender, connection) = clock
        .within(
            waiting,
            hyper::client::conn::http1::handshake(TokioIo::new(io)),
        )
        .await?
        .map_err(|e| protocol("starting http/1.1", e))?;
    let driver = AbortOnDrop(tokio::spawn(async move {
        // The connection's error also reaches the body read.
        let _ = connection.await;
    }));
    let mut request = http::Request::new(Empty::<Bytes>::new());
    let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
    *request.uri_mut() = target.parse().map_err(|e: http::uri::InvalidUri| {
        bad(format!("cannot build the request for {url}: {e}"))
    })?;
    let mut headers = headers.clone();
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let authority = HeaderValue::try_from(authority)
        .map_err(|e| bad(format!("cannot build the Host header for {url}: {e}")))?;
    headers.insert(header::HOST, authority);
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    *request.headers_mut() = headers;
    let response = clock
        .within(waiting, sender.send_request(request))
        .await?
        .map_err(|e| protocol("the request", e))?;
    let (parts, body) = response.into_parts();
    Ok((
        parts,
        Connection {
            body,
            _sender: sender,
            _driver: driver,
        },
    ))
}
