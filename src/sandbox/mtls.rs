//! The sandbox's mTLS port (`sandbox_mtls`): TLS with the valid leaf of
//! the TLS ports, requiring a client certificate signed by the sandbox CA
//! (`sandbox_client_cert` and `sandbox_client_key` are one). A handshake
//! without one fails (rustls' `certificate_required` alert), as does one
//! with a certificate another CA signed (`unknown_ca`).
//!
//! Once the handshake is done it answers one HTTP/1.1 request, whatever
//! its method and path, with `200` and a JSON body naming the client
//! certificate it was shown (`{"path": "/", "client": "CN=synthmon
//! sandbox client", "tls_version": "TLSv1.3"}`), then closes. Bounded like
//! the TLS ports: it shares their connection cap, a handshake and a
//! request head have deadlines, and a head is at most [`MAX_HEAD`] bytes.

use rustls::ServerConfig;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

/// The TLS handshake must finish within this.
const HANDSHAKE: Duration = Duration::from_secs(5);
/// The request head must arrive within this.
const HEAD: Duration = Duration::from_secs(10);
/// The largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// No connection lives longer than this.
const LIFETIME: Duration = Duration::from_secs(30);
/// How long each step of a close may take.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Binds `bind` and serves until `stop`; returns the port's URL
/// (`https://IP:PORT`, `shown` being the address clients use). `files`
/// (the client certificate and key, removed when dropped) live as long as
/// the port.
pub(super) async fn start<F: Send + Sync + 'static>(
    bind: SocketAddr,
    shown: IpAddr,
    config: ServerConfig,
    permits: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    files: Arc<F>,
) -> io::Result<String> {
    let listener = TcpListener::bind(bind).await?;
    let port = listener.local_addr()?.port();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    tokio::spawn(super::accept::serve(
        listener,
        permits,
        stop,
        LIFETIME,
        "mtls",
        move |socket| {
            // Captured, so the files live as long as the port serves.
            let _held = &files;
            connection(socket, acceptor.clone())
        },
    ));
    Ok(format!("https://{}", SocketAddr::new(shown, port)))
}

/// One connection: the handshake (a client without an acceptable
/// certificate is refused there), then one request and its answer.
async fn connection(socket: TcpStream, acceptor: TlsAcceptor) {
    let _ = socket.set_nodelay(true);
    let Ok(Ok(mut stream)) = tokio::time::timeout(HANDSHAKE, acceptor.accept(socket)).await else {
        return;
    };
    let (_, session) = stream.get_ref();
    let client = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|der| x509_parser::parse_x509_certificate(der).ok())
        .map(|(_, cert)| cert.subject().to_string())
        .unwrap_or_default();
    let version = match session.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "",
    };
    let answer = match tokio::time::timeout(HEAD, read_head(&mut stream)).await {
        Ok(Ok(Some(path))) => {
            let body = serde_json::json!({
                "path": path,
                "client": client,
                "tls_version": version,
            })
            .to_string();
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-sandbox: synthmon\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        Ok(Ok(None)) => {
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned()
        }
        // Gone, or silent for too long.
        Ok(Err(_)) | Err(_) => return,
    };
    let _ = tokio::time::timeout(HEAD, stream.write_all(answer.as_bytes())).await;
    let _ = tokio::time::timeout(CLOSE_GRACE, stream.shutdown()).await;
    // Unread input would turn the close into a reset, which can discard
    // the answer before the client reads it: take in what remains.
    let _ = tokio::time::timeout(CLOSE_GRACE, drain(&mut stream)).await;
}

/// Reads a request head; its target, or `None` when it is not an
/// HTTP/1.x request or longer than [`MAX_HEAD`].
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut words = text.lines().next().unwrap_or_default().split(' ');
    let (Some(_method), Some(target), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return Ok(None);
    };
    Ok(version
        .starts_with("HTTP/1.")
        .then(|| target.chars().take(256).collect()))
}

/// Reads and discards what the client still sends, a few KiB at most.
async fn drain<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let mut sink = [0u8; 1024];
    let mut left = 16 * 1024usize;
    while left > 0 {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}
