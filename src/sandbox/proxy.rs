//! The sandbox's HTTP proxies, for rehearsing `proxy = …`: two `CONNECT`
//! proxies on loopback, one open (`sandbox_proxy`) and one that wants
//! Basic credentials (`sandbox_proxy_auth`: user [`USER`], password
//! [`PASSWORD`], a fixed test value), answering `407` without them.
//!
//! Each tunnels only to loopback addresses (an IP literal, or
//! `localhost`): anything else is refused with `403`, a port nobody
//! listens on gets `502`, a request other than `CONNECT` gets `405`. What
//! they were asked is kept, the last [`LOG`] requests across both, and
//! shown by `GET /connects` on either port (JSON: `{"connects": [{"proxy":
//! "sandbox_proxy", "method": "CONNECT", "target": "127.0.0.1:8443",
//! "status": 200}]}`), so a test can see that its probe went through.
//!
//! Bounded like the other hand-written ports: at most [`MAX_CONNECTIONS`]
//! connections across both (further clients wait in the backlog), a
//! deadline on the request head and on reaching the target, a head of at
//! most [`MAX_HEAD`] bytes, a lifetime per tunnel, and every task ends
//! when the sandbox stops.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// The user `sandbox_proxy_auth` wants.
pub const USER: &str = "synth";
/// The password `sandbox_proxy_auth` wants: a fixed test value, not a
/// secret (the proxy tunnels only to loopback).
pub const PASSWORD: &str = "sandbox-proxy-pass";
/// Connections served at once, across both proxies.
pub const MAX_CONNECTIONS: usize = 32;
/// The requests `GET /connects` shows, the newest last.
pub const LOG: usize = 64;
/// The largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// The request head must arrive within this.
const HEAD: Duration = Duration::from_secs(10);
/// Connecting to the target must finish within this.
const DIAL: Duration = Duration::from_secs(5);
/// No tunnel lives longer than this.
const LIFETIME: Duration = Duration::from_secs(60);

/// What the proxies were asked: which proxy (its variable's name), the
/// method and target, the status answered.
type Log = Arc<Mutex<VecDeque<serde_json::Value>>>;

/// Starts both proxies on `ip` (port 0), serving until `stop` turns true;
/// returns the [`super::VARIABLES`] entries they provide.
pub async fn start(
    ip: IpAddr,
    stop: watch::Receiver<bool>,
) -> io::Result<Vec<(&'static str, String)>> {
    let shown = match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    };
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let log: Log = Arc::default();
    let expected = format!(
        "Basic {}",
        crate::secret::base64(format!("{USER}:{PASSWORD}").as_bytes())
    );
    let mut vars = Vec::new();
    for (name, wants) in [
        ("sandbox_proxy", None),
        ("sandbox_proxy_auth", Some(expected)),
    ] {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
        let port = listener.local_addr()?.port();
        vars.push((name, format!("http://{}", SocketAddr::new(shown, port))));
        let log = Arc::clone(&log);
        tokio::spawn(super::accept::serve(
            listener,
            Arc::clone(&permits),
            stop.clone(),
            LIFETIME,
            "proxy",
            move |socket| connection(socket, name, wants.clone(), Arc::clone(&log)),
        ));
    }
    tracing::debug!(?vars, "sandbox proxies listening");
    Ok(vars)
}

/// One client: its request, then a tunnel or a refusal.
async fn connection(mut client: TcpStream, proxy: &'static str, wants: Option<String>, log: Log) {
    let _ = client.set_nodelay(true);
    let head = match tokio::time::timeout(HEAD, read_head(&mut client)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) => {
            let _ = answer(&mut client, "431 Request Header Fields Too Large", "").await;
            return;
        }
        _ => return,
    };
    let mut lines = head.lines();
    let mut words = lines.next().unwrap_or_default().split(' ');
    let (method, target) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    if method == "GET" && target == "/connects" {
        let body = {
            let log = log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            serde_json::json!({ "connects": log.iter().collect::<Vec<_>>() }).to_string()
        };
        let _ = answer(&mut client, "200 OK", &body).await;
        return;
    }
    let note = |status: u16| {
        let mut log = log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if log.len() >= LOG {
            log.pop_front();
        }
        log.push_back(serde_json::json!({
            "method": method.chars().take(16).collect::<String>(),
            "target": target.chars().take(128).collect::<String>(),
            "proxy": proxy,
            "status": status,
        }));
    };
    if method != "CONNECT" {
        note(405);
        let _ = answer(
            &mut client,
            "405 Method Not Allowed",
            "this proxy only tunnels (CONNECT host:port)",
        )
        .await;
        return;
    }
    if let Some(wants) = &wants {
        let given = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("proxy-authorization"))
            .map(|(_, value)| value.trim());
        if given != Some(wants.as_str()) {
            note(407);
            let _ = client
                .write_all(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                      Proxy-Authenticate: Basic realm=\"synthmon-sandbox\"\r\n\
                      Content-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            return;
        }
    }
    let Some(address) = loopback(target) else {
        note(403);
        let _ = answer(
            &mut client,
            "403 Forbidden",
            "the sandbox proxy tunnels only to loopback addresses",
        )
        .await;
        return;
    };
    let mut upstream = match tokio::time::timeout(DIAL, TcpStream::connect(address)).await {
        Ok(Ok(upstream)) => upstream,
        _ => {
            note(502);
            let _ = answer(
                &mut client,
                "502 Bad Gateway",
                "cannot connect to the target",
            )
            .await;
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    note(200);
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// `host:port` when the host is a loopback address (`localhost` being
/// 127.0.0.1).
fn loopback(target: &str) -> Option<SocketAddr> {
    let (host, port) = target.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse().ok()?
    };
    ip.is_loopback().then(|| SocketAddr::new(ip, port))
}

/// Reads a request head, one byte at a time (a client may follow its
/// `CONNECT` with the tunnel's first bytes, which belong to the target);
/// `None` past [`MAX_HEAD`].
async fn read_head(stream: &mut TcpStream) -> io::Result<Option<String>> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Ok(None);
        }
        if stream.read(&mut byte).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    Ok(Some(String::from_utf8_lossy(&head).into_owned()))
}

/// A short answer that closes the connection.
async fn answer(stream: &mut TcpStream, status: &str, body: &str) -> io::Result<()> {
    let kind = if body.starts_with('{') {
        "application/json"
    } else {
        "text/plain"
    };
    let text = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(text.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_tunnelled() {
        assert!(loopback("127.0.0.1:443").is_some());
        assert!(loopback("localhost:80").is_some());
        assert!(loopback("[::1]:8443").is_some());
        assert!(loopback("10.0.0.1:443").is_none());
        assert!(loopback("example.com:443").is_none());
        assert!(loopback("127.0.0.1").is_none());
    }
}
