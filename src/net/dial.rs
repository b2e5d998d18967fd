//! Reaching a peer: resolve, connect (judging every address tried), an
//! optional `CONNECT` tunnel through an HTTP proxy ([`dial_via`]), an
//! optional TLS handshake offering one ALPN protocol through a strict
//! client config, and a polite close.
//!
//! Every kind that dials (`tcp`, `tls`, `grpc`, `stream` and the rest; the
//! `http` kind through [`super::http1`]) reaches the network through here,
//! so every kind times its phases, honours its deadline and words a refused
//! connection the same way. What a kind says about its own protocol (a
//! banner, an HTTP/2 answer, a stalled stream) stays in its file.

use super::clock::Clock;
use super::error::{Fail, handshake_failed};
use super::proxy::Proxy;
use crate::outcome::FailureReason;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::fmt::Display;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use url::Host;

/// Resolves `host` (no lookup for an IP literal) and connects to the first
/// address that accepts, lapping the two steps as `phases` (resolve,
/// connect). A deadline passed in either is `connect_timeout`.
///
/// The addresses are tried in turn rather than raced: a probe wants the
/// verdict on each, and every error is kept for the message.
pub async fn open(
    host: &str,
    port: u16,
    clock: &mut Clock,
    phases: [&'static str; 2],
) -> Result<TcpStream, Fail> {
    let [resolve_phase, connect_phase] = phases;
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => {
            clock.skip(resolve_phase);
            vec![SocketAddr::new(ip, port)]
        }
        Err(_) => {
            let dns = |why: &dyn Display| {
                Fail::new(FailureReason::Dns, format!("cannot resolve {host}: {why}"))
            };
            let found: Vec<SocketAddr> = clock
                .step(
                    "resolve",
                    resolve_phase,
                    tokio::net::lookup_host((host, port)),
                )
                .await?
                .map_err(|e| dns(&e))?
                .collect();
            if found.is_empty() {
                return Err(dns(&"no address found"));
            }
            found
        }
    };
    let attempts = async {
        let mut errors = Vec::with_capacity(addrs.len());
        for &addr in &addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => errors.push((addr, e)),
            }
        }
        Err(errors)
    };
    match clock.step("connect", connect_phase, attempts).await? {
        Ok(stream) => {
            // Nagle's algorithm would only hold back the short writes a
            // probe makes.
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Err(errors) => Err(unreachable(&errors)),
    }
}

/// The failure when no address accepted: `connect_refused` only when every
/// address refused (nothing listens there, a clear verdict), else `connect`
/// (unreachable, reset, …); the message names each address and its error.
pub(super) fn unreachable(errors: &[(SocketAddr, io::Error)]) -> Fail {
    let refused = errors
        .iter()
        .all(|(_, e)| e.kind() == io::ErrorKind::ConnectionRefused);
    let tried = errors
        .iter()
        .map(|(addr, e)| format!("{addr}: {e}"))
        .collect::<Vec<_>>()
        .join("; ");
    if let Some((_, e)) = errors.iter().find(|(_, e)| out_of_descriptors(e)) {
        return Fail::new(
            FailureReason::Resource,
            format!(
                "cannot open a socket: {e} (synthmon's RLIMIT_NOFILE is {}; raise LimitNOFILE= or lower daemon.max_concurrent_runs)",
                nofile_limit().map_or_else(|| "unknown".to_owned(), |n| n.to_string())
            ),
        );
    }
    let reason = if refused {
        FailureReason::ConnectRefused
    } else {
        FailureReason::Connect
    };
    Fail::new(reason, format!("cannot connect to {tried}"))
}

/// EMFILE or ENFILE: this process (or the system) has no file descriptor
/// left for a socket.
pub fn out_of_descriptors(e: &io::Error) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    matches!(e.raw_os_error(), Some(ENFILE | EMFILE))
}

/// The process' soft limit on open files.
pub fn nofile_limit() -> Option<u64> {
    rlimit::Resource::NOFILE.get_soft().ok()
}

/// A plain or TLS stream.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// How [`dial`] wraps a connection in TLS.
pub struct TlsSetup<'a> {
    /// The environment's client config: its trust and client certificate.
    pub config: Arc<ClientConfig>,
    /// SNI and verification name instead of the host.
    pub server_name: Option<&'a str>,
    /// The one ALPN protocol to offer (`h2`, `http/1.1`).
    pub alpn: &'static [u8],
}

/// A connection as [`dial`] made it.
pub struct Dialed {
    pub io: Box<dyn Io>,
    /// The earliest `notAfter` of the certificates presented, Unix seconds
    /// (`probe_ssl_earliest_cert_expiry`); `None` without TLS.
    pub cert_expiry: Option<i64>,
}

/// [`open`] and, with `tls`, a handshake; each step is lapped on `clock`
/// under the names in `phases` (resolve, connect, tls). A deadline passed
/// while resolving or connecting is `connect_timeout`; during the
/// handshake, `timeout`.
pub async fn dial(
    host: &Host<String>,
    port: u16,
    tls: Option<TlsSetup<'_>>,
    clock: &mut Clock,
    phases: [&'static str; 3],
) -> Result<Dialed, Fail> {
    dial_via(host, port, tls, None, clock, phases).await
}

/// [`dial`] through `proxy` when it routes this target: resolve and
/// connect to the proxy (failures are reason `proxy`), then a `CONNECT`
/// tunnel charged to the connect phase, then the handshake with the
/// target through it (see [`super::proxy`]).
pub async fn dial_via(
    host: &Host<String>,
    port: u16,
    tls: Option<TlsSetup<'_>>,
    proxy: Option<&Proxy>,
    clock: &mut Clock,
    phases: [&'static str; 3],
) -> Result<Dialed, Fail> {
    let [resolve_phase, connect_phase, tls_phase] = phases;
    // An IPv6 host without its URL brackets, so `open` sees the literal.
    let bare = match host {
        Host::Domain(name) => name.clone(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => ip.to_string(),
    };
    let tcp = match proxy.and_then(|p| p.route(tls.is_some(), &bare)) {
        None => open(&bare, port, clock, [resolve_phase, connect_phase]).await?,
        Some(endpoint) => {
            let mut tcp = open(
                endpoint.host(),
                endpoint.port(),
                clock,
                [resolve_phase, connect_phase],
            )
            .await
            .map_err(|fail| super::proxy::unreachable(endpoint, fail))?;
            clock
                .step(
                    "connect",
                    connect_phase,
                    super::proxy::tunnel(&mut tcp, endpoint, &bare, port),
                )
                .await??;
            tcp
        }
    };
    let Some(tls) = tls else {
        return Ok(Dialed {
            io: Box::new(tcp),
            cert_expiry: None,
        });
    };
    let name = match (tls.server_name, host) {
        (Some(name), _) => ServerName::try_from(name.to_owned()),
        (None, Host::Domain(name)) => ServerName::try_from(name.clone()),
        (None, Host::Ipv4(ip)) => Ok(ServerName::from(IpAddr::V4(*ip))),
        (None, Host::Ipv6(ip)) => Ok(ServerName::from(IpAddr::V6(*ip))),
    }
    .map_err(|e| Fail::new(FailureReason::Tls, format!("invalid tls server name: {e}")))?;
    let handshake = tokio_rustls::TlsConnector::from(tls.config)
        .with_alpn(vec![tls.alpn.to_vec()])
        .connect(name, tcp);
    let stream = clock
        .step("tls", tls_phase, handshake)
        .await?
        // A verdict names the name that was checked: `server_name` when set.
        .map_err(|e| match tls.server_name {
            Some(name) => handshake_failed(name, &e),
            None => handshake_failed(host, &e),
        })?;
    let cert_expiry = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(super::tls::earliest_expiry);
    Ok(Dialed {
        io: Box::new(stream),
        cert_expiry,
    })
}

/// Aborts a connection task when the run ends, however it ends: hyper and
/// h2 drive a connection on a task of its own, which must not outlive the
/// run (a stalled peer would keep it, and the socket, forever).
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long a polite close may take at most: the run is already measured,
/// and a peer that never acknowledges must not hold the run up.
const CLOSE_GRACE: Duration = Duration::from_millis(200);

/// Shuts the stream down (TLS: with close_notify), within the deadline, so
/// the target sees a clean goodbye rather than a reset.
pub async fn close<S: AsyncWrite + Unpin>(mut stream: S, deadline: Instant) {
    let until = deadline.min(Instant::now() + CLOSE_GRACE);
    let _ = tokio::time::timeout_at(until, stream.shutdown()).await;
}

/// Splits `host:port` (`[v6]:port` for IPv6) into its host and port.
pub fn parse_address(address: &str) -> Result<(String, u16), String> {
    let bad =
        |why: &str| format!("expected an address like `db.example:5432`, found `{address}`: {why}");
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, port) = rest
            .split_once("]:")
            .ok_or_else(|| bad("an IPv6 address needs a port after `]:`"))?;
        (host, port)
    } else {
        let (host, port) = address.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        if host.contains(':') {
            return Err(bad("write an IPv6 address in brackets, like `[::1]:443`"));
        }
        (host, port)
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad("no host"));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?;
    Ok((host.to_owned(), port))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(
            parse_address("db.example:5432").unwrap(),
            ("db.example".to_owned(), 5432)
        );
        assert_eq!(
            parse_address("127.0.0.1:25").unwrap(),
            ("127.0.0.1".to_owned(), 25)
        );
        assert_eq!(parse_address("[::1]:443").unwrap(), ("::1".to_owned(), 443));
        for bad in [
            "db.example",
            ":80",
            "::1:443",
            "h:0",
            "h:70000",
            "h:http",
            "[::1]",
        ] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
        assert!(
            parse_address("db.example")
                .unwrap_err()
                .ends_with("found `db.example`: no port")
        );
    }
}
