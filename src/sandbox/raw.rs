//! The sandbox's raw HTTP fault port (`sandbox_raw`): HTTP/1.1 written by
//! hand on a bare TCP socket, so it can misbehave in ways no framework
//! lets a server misbehave.
//!
//! It reads a request head (at most [`MAX_HEAD`] bytes, within
//! [`HEAD_TIME`]), picks a fault by the request path (the query is
//! ignored) and acts it out: a close or a TCP reset without a response, a
//! reset in the middle of the body, bytes that are not HTTP, a broken
//! status line or head, lengths that lie, a broken chunk, a megabyte of
//! headers, interim responses, unknown status codes, a body that is not
//! UTF-8, a head or a body trickled a byte at a time, a body without end
//! and a body that claims to be gzip. [`FAULTS`] lists the paths; `GET /`
//! answers that list as text, anything else not in it a 404.
//!
//! Bounded like the sandbox's other listeners: at most [`MAX_CONNECTIONS`]
//! connections at once (further clients wait in the accept backlog), a
//! deadline on every write (a client that stops reading is dropped), a
//! lifetime cap per connection, an endless body that ends after
//! [`ENDLESS_CAP`] bytes, no buffer that grows with what a client sends,
//! and every task ends when `stop` turns true.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// The largest request head read; a longer one is answered 431.
const MAX_HEAD: usize = 16 * 1024;
/// The request head must arrive within this.
const HEAD_TIME: Duration = Duration::from_secs(5);
/// A write the client does not take in within this ends the connection.
const WRITE_TIME: Duration = Duration::from_secs(10);
/// No connection lives longer than this.
const LIFETIME: Duration = Duration::from_secs(60);
/// How long each step of a polite close may take.
const CLOSE_GRACE: Duration = Duration::from_millis(500);
/// The most unread input taken in while closing.
const MAX_DRAIN: usize = 16 * 1024;
/// The pause between two bytes of a trickled head or body.
const TRICKLE: Duration = Duration::from_millis(100);
/// How long `/reset-mid-body` lets its first bytes reach the client before
/// the reset (a reset discards what is still unsent).
const BEFORE_RESET: Duration = Duration::from_millis(100);
/// The body length `/reset-mid-body` announces, and the bytes it sends.
const MID_BODY_ANNOUNCED: usize = 100_000;
const MID_BODY_SENT: usize = 1_000;
/// The body length `/long-length` announces, and the bytes it sends.
const LONG_ANNOUNCED: usize = 100;
const LONG_SENT: &[u8] = b"only twenty bytes...";
/// How many bytes of headers `/huge-headers` sends.
const HUGE_HEADERS: usize = 1 << 20;
/// Where `/endless` stops, should a client read that far.
const ENDLESS_CAP: u64 = 1 << 30;
/// The size of one written piece of a generated body or head.
const CHUNK: usize = 16 * 1024;
/// The content of every generated body and header value.
static FILL: [u8; CHUNK] = [b'a'; CHUNK];

/// The paths of the fault port and what each does, in the order `GET /`
/// lists them.
pub const FAULTS: &[(&str, &str)] = &[
    ("/close", "reads the request, closes without a response"),
    (
        "/reset",
        "reads the request, resets the connection (TCP RST)",
    ),
    (
        "/reset-mid-body",
        "announces 100000 body bytes, sends 1000, resets",
    ),
    ("/garbage", "answers binary bytes that are not HTTP"),
    ("/http09", "answers HTTP/0.9 style: a body, no status line"),
    ("/bad-status-line", "answers `HTTP/1.1 2OO OK`"),
    ("/truncated-head", "sends half a response head, closes"),
    (
        "/short-length",
        "Content-Length: 5 with a 12-byte body (the rest is ignored)",
    ),
    (
        "/long-length",
        "Content-Length: 100 with a 20-byte body, then closes",
    ),
    ("/duplicate-length", "two different Content-Length headers"),
    ("/length-and-chunked", "Content-Length and chunked together"),
    ("/bad-chunk", "a chunk size that is not hexadecimal"),
    ("/huge-headers", "1 MiB of response headers"),
    (
        "/interim",
        "100 Continue and 103 Early Hints before the 200",
    ),
    ("/status/NNN", "any three-digit status, e.g. /status/799"),
    ("/non-utf8", "a 200 whose text body is Latin-1, not UTF-8"),
    ("/trickle-head", "the response head a byte every 100 ms"),
    ("/trickle-body", "a 100-byte body a byte every 100 ms"),
    ("/endless", "a body without length that never ends"),
    (
        "/invalid-gzip",
        "Content-Encoding: gzip on a body that is not gzip",
    ),
];

/// Starts the listener on `ip` (port 0), serving until `stop` turns true;
/// returns the [`super::VARIABLES`] entry it provides.
pub async fn start(
    ip: IpAddr,
    stop: watch::Receiver<bool>,
) -> io::Result<Vec<(&'static str, String)>> {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
    let port = listener.local_addr()?.port();
    let shown = match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    };
    tokio::spawn(super::accept::serve(
        listener,
        Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        stop,
        LIFETIME,
        "raw",
        connection,
    ));
    let address = SocketAddr::new(shown, port).to_string();
    tracing::debug!(%address, "sandbox raw http fault port listening");
    Ok(vec![("sandbox_raw", address)])
}

/// What the client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Index,
    NotFound,
    HeadTooLarge,
    Close,
    Reset,
    ResetMidBody,
    Garbage,
    Http09,
    BadStatusLine,
    TruncatedHead,
    ShortLength,
    LongLength,
    DuplicateLength,
    LengthAndChunked,
    BadChunk,
    HugeHeaders,
    Interim,
    /// Three ASCII digits.
    Status([u8; 3]),
    NonUtf8,
    TrickleHead,
    TrickleBody,
    Endless,
    InvalidGzip,
}

impl Fault {
    /// The fault a request target names (its query ignored).
    fn from_target(target: &str) -> Fault {
        let path = target.split_once('?').map_or(target, |(path, _)| path);
        if let Some(code) = path.strip_prefix("/status/") {
            return match code.as_bytes() {
                &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_digit) => Fault::Status([a, b, c]),
                _ => Fault::NotFound,
            };
        }
        match path {
            "/" => Fault::Index,
            "/close" => Fault::Close,
            "/reset" => Fault::Reset,
            "/reset-mid-body" => Fault::ResetMidBody,
            "/garbage" => Fault::Garbage,
            "/http09" => Fault::Http09,
            "/bad-status-line" => Fault::BadStatusLine,
            "/truncated-head" => Fault::TruncatedHead,
            "/short-length" => Fault::ShortLength,
            "/long-length" => Fault::LongLength,
            "/duplicate-length" => Fault::DuplicateLength,
            "/length-and-chunked" => Fault::LengthAndChunked,
            "/bad-chunk" => Fault::BadChunk,
            "/huge-headers" => Fault::HugeHeaders,
            "/interim" => Fault::Interim,
            "/non-utf8" => Fault::NonUtf8,
            "/trickle-head" => Fault::TrickleHead,
            "/trickle-body" => Fault::TrickleBody,
            "/endless" => Fault::Endless,
            "/invalid-gzip" => Fault::InvalidGzip,
            _ => Fault::NotFound,
        }
    }
}

/// One connection: read the head, act the fault out, then close politely
/// unless the fault was the way it closed.
async fn connection(mut socket: TcpStream) {
    let _ = socket.set_nodelay(true);
    let fault = match tokio::time::timeout(HEAD_TIME, read_head(&mut socket)).await {
        Ok(Ok(Some(fault))) => fault,
        // Silence, a client that went away, or bytes that are not a request.
        Ok(Ok(None) | Err(_)) | Err(_) => return,
    };
    match misbehave(&mut socket, fault).await {
        Ok(Ending::Close) => close(socket).await,
        Ok(Ending::Reset) => reset(socket),
        // The client went away or stopped reading: nothing left to do.
        Err(_) => {}
    }
}

/// How a connection ends once its fault is acted out.
enum Ending {
    /// FIN, after taking in what the client still sends.
    Close,
    /// RST.
    Reset,
}

/// Reads a request head and names its fault; `None` when the client
/// closed first or sent no request line.
async fn read_head(socket: &mut TcpStream) -> io::Result<Option<Fault>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Ok(Some(Fault::HeadTooLarge));
        }
        let room = (MAX_HEAD - head.len()).min(chunk.len());
        let n = socket.read(&mut chunk[..room]).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_ascii_whitespace();
    Ok(match (words.next(), words.next()) {
        (Some(_method), Some(target)) => Some(Fault::from_target(target)),
        _ => None,
    })
}

/// Acts `fault` out on `socket`; says how the connection ends.
async fn misbehave(socket: &mut TcpStream, fault: Fault) -> io::Result<Ending> {
    match fault {
        Fault::Index => {
            let mut text =
                String::from("synthmon sandbox: raw HTTP faults (GET any path below)\n\n");
            for (path, what) in FAULTS {
                text.push_str(&format!("{path:<22} {what}\n"));
            }
            say(socket, &response("200 OK", "text/plain", text.as_bytes())).await?;
        }
        Fault::NotFound => {
            let body = b"no such fault: GET / lists them\n";
            say(socket, &response("404 Not Found", "text/plain", body)).await?;
        }
        Fault::HeadTooLarge => {
            let body = b"request head too large\n";
            let text = response("431 Request Header Fields Too Large", "text/plain", body);
            say(socket, &text).await?;
        }
        Fault::Close => {}
        Fault::Reset => return Ok(Ending::Reset),
        Fault::ResetMidBody => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {MID_BODY_ANNOUNCED}\r\n\r\n"
            );
            say(socket, head.as_bytes()).await?;
            say(socket, &FILL[..MID_BODY_SENT]).await?;
            tokio::time::sleep(BEFORE_RESET).await;
            return Ok(Ending::Reset);
        }
        Fault::Garbage => {
            say(
                socket,
                b"\x00\xff\x13\x37 synthmon \xfe\xfd garbage\r\n\r\n",
            )
            .await?;
        }
        Fault::Http09 => {
            say(socket, b"<html><body>hello from HTTP/0.9</body></html>\n").await?;
        }
        Fault::BadStatusLine => {
            let text = b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok";
            say(socket, text).await?;
        }
        Fault::TruncatedHead => {
            say(socket, b"HTTP/1.1 200 OK\r\nContent-Type: text/pl").await?;
        }
        Fault::ShortLength => {
            let text = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello, world";
            say(socket, text).await?;
        }
        Fault::LongLength => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {LONG_ANNOUNCED}\r\n\r\n");
            say(socket, head.as_bytes()).await?;
            say(socket, LONG_SENT).await?;
        }
        Fault::DuplicateLength => {
            let text =
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 12\r\n\r\nhello, world";
            say(socket, text).await?;
        }
        Fault::LengthAndChunked => {
            let text = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
            say(socket, text).await?;
        }
        Fault::BadChunk => {
            let text =
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
            say(socket, text).await?;
        }
        Fault::HugeHeaders => huge_headers(socket).await?,
        Fault::Interim => {
            let text = b"HTTP/1.1 100 Continue\r\n\r\n\
                HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
                HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nafter 100/103";
            say(socket, text).await?;
        }
        Fault::Status(code) => {
            let code = String::from_utf8_lossy(&code).into_owned();
            let body = format!("status {code}\n");
            let status = format!("{code} Whatever");
            say(socket, &response(&status, "text/plain", body.as_bytes())).await?;
        }
        Fault::NonUtf8 => {
            let body = b"caf\xe9 cr\xe8me \xff\n";
            let text = response("200 OK", "text/plain; charset=iso-8859-1", body);
            say(socket, &text).await?;
        }
        Fault::TrickleHead => {
            let text = response("200 OK", "text/plain", b"trickled\n");
            for byte in text.chunks(1) {
                say(socket, byte).await?;
                tokio::time::sleep(TRICKLE).await;
            }
        }
        Fault::TrickleBody => {
            let body = [b'a'; 100];
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            say(socket, head.as_bytes()).await?;
            for byte in body.chunks(1) {
                tokio::time::sleep(TRICKLE).await;
                say(socket, byte).await?;
            }
        }
        Fault::Endless => {
            let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n";
            say(socket, head).await?;
            let mut sent = 0u64;
            while sent < ENDLESS_CAP {
                say(socket, &FILL).await?;
                sent += FILL.len() as u64;
            }
        }
        Fault::InvalidGzip => {
            let body = b"this is not gzip data";
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            say(socket, head.as_bytes()).await?;
            say(socket, body).await?;
        }
    }
    Ok(Ending::Close)
}

/// A whole response with `status` (code and phrase), a length and `body`.
fn response(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    [head.as_bytes(), body].concat()
}

/// A 200 whose head holds [`HUGE_HEADERS`] bytes of `X-Filler-N` headers
/// of 1,000 bytes each, written line by line.
async fn huge_headers(socket: &mut TcpStream) -> io::Result<()> {
    say(socket, b"HTTP/1.1 200 OK\r\n").await?;
    let mut sent = 0;
    let mut n = 0u32;
    while sent < HUGE_HEADERS {
        let line = format!(
            "X-Filler-{n:05}: {}\r\n",
            String::from_utf8_lossy(&FILL[..1_000])
        );
        say(socket, line.as_bytes()).await?;
        sent += line.len();
        n += 1;
    }
    say(socket, b"Content-Length: 2\r\n\r\nok").await
}

/// Writes and flushes `bytes` within [`WRITE_TIME`].
async fn say(socket: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    let write = async {
        socket.write_all(bytes).await?;
        socket.flush().await
    };
    tokio::time::timeout(WRITE_TIME, write)
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

/// Ends the connection with a FIN. Closing with unread input would reset
/// it instead, and a reset can discard the last bytes before the client
/// reads them: take in what the client still sends, for a moment and a
/// few KiB.
async fn close(mut socket: TcpStream) {
    let _ = tokio::time::timeout(CLOSE_GRACE, socket.shutdown()).await;
    let drain = async {
        let mut sink = [0u8; 1024];
        let mut left = MAX_DRAIN;
        while left > 0 {
            match socket.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
}

/// Ends the connection with a reset: `SO_LINGER` 0, then the close.
fn reset(socket: TcpStream) {
    if let Err(e) = socket.set_zero_linger() {
        tracing::debug!(%e, "sandbox raw: cannot set SO_LINGER 0");
    }
    drop(socket);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_path_names_a_fault() {
        for (path, _) in FAULTS {
            let target = path.replace("NNN", "799");
            assert_ne!(Fault::from_target(&target), Fault::NotFound, "{path}");
        }
        assert_eq!(Fault::from_target("/reset?x=1"), Fault::Reset);
        assert_eq!(Fault::from_target("/status/79"), Fault::NotFound);
        assert_eq!(Fault::from_target("/status/7a9"), Fault::NotFound);
        assert_eq!(Fault::from_target("/nope"), Fault::NotFound);
    }

    #[tokio::test]
    async fn a_head_too_large_is_refused_and_memory_stays_bounded() {
        let (_stop_tx, stop) = watch::channel(false);
        let vars = start(IpAddr::V4(Ipv4Addr::LOCALHOST), stop).await.unwrap();
        let addr: SocketAddr = vars[0].1.parse().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let long = vec![b'x'; 2 * MAX_HEAD];
        // The server stops reading at the cap, so the write may fail.
        let _ = client.write_all(b"GET / HTTP/1.1\r\nX-Long: ").await;
        let _ = client.write_all(&long).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer)).await;
        assert!(
            answer.starts_with(b"HTTP/1.1 431 "),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
}
