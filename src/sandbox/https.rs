//! The sandbox's HTTPS port: the same routes and state as its HTTP port,
//! over TLS with the valid certificate of the TLS ports (for `localhost`,
//! `127.0.0.1` and `::1`, trusted through `sandbox_ca_file`), offering
//! `h2` and `http/1.1` by ALPN, so a probe meets HTTP/2 negotiated the way
//! a real service offers it (`sandbox_https`).
//!
//! Handshakes run beside the accept loop, at most [`MAX_HANDSHAKES`] at
//! once and each within [`HANDSHAKE`], so a client that stalls in its
//! handshake holds up no other; a finished one is handed to axum's server
//! through a bounded channel. axum serves each connection as HTTP/1.1 or
//! HTTP/2 by its first bytes (an HTTP/2 client sends the preface after
//! ALPN picked `h2`), and stops with the sandbox.

use axum::Router;
use rustls::ServerConfig;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Handshakes in progress at once; further clients wait in the backlog.
const MAX_HANDSHAKES: usize = 32;
/// A handshake must finish within this.
const HANDSHAKE: Duration = Duration::from_secs(5);

/// Starts the port on `ip` (port 0) serving `router` with `tls` (the
/// valid leaf's config, ALPN added here) until `stop` turns true, when
/// `signal` (the sandbox's shutdown) lets axum drain; returns the
/// [`super::VARIABLES`] entry it provides.
pub async fn start(
    ip: IpAddr,
    mut tls: ServerConfig,
    router: Router,
    stop: watch::Receiver<bool>,
    signal: impl Future<Output = ()> + Send + 'static,
) -> io::Result<Vec<(&'static str, String)>> {
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
    let local = listener.local_addr()?;
    let (handed, accepted) = mpsc::channel(MAX_HANDSHAKES);
    tokio::spawn(handshakes(
        listener,
        TlsAcceptor::from(Arc::new(tls)),
        handed,
        stop,
    ));
    let server = axum::serve(Handshaken { accepted, local }, router)
        .with_graceful_shutdown(signal)
        .into_future();
    tokio::spawn(async move {
        if let Err(err) = server.await {
            tracing::warn!(%err, "sandbox https server failed");
        }
    });
    // The certificate is for `localhost` (and the loopback addresses): a
    // URL with that name verifies without a `server_name`.
    let url = if ip.is_loopback() || ip.is_unspecified() {
        format!("https://localhost:{}", local.port())
    } else {
        format!("https://{local}")
    };
    tracing::debug!(%url, "sandbox https port listening");
    Ok(vec![("sandbox_https", url)])
}

/// Accepts connections and shakes hands with each on a task of its own
/// (at most [`MAX_HANDSHAKES`]), handing the finished ones on, until `stop`.
async fn handshakes(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handed: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let mut running = JoinSet::new();
    loop {
        while running.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off a little.
                tracing::debug!(%e, "sandbox https accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Small writes go out at once, as on the HTTP port.
        let _ = tcp.set_nodelay(true);
        let (acceptor, handed) = (acceptor.clone(), handed.clone());
        running.spawn(async move {
            let _permit = permit;
            if let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
                let _ = handed.send((tls, peer)).await;
            }
        });
    }
    running.shutdown().await;
}

/// The connections whose handshake finished, as axum's listener.
struct Handshaken {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for Handshaken {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(pair) => pair,
            // The handshakes stopped with the sandbox; axum's graceful
            // shutdown ends the server.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}
