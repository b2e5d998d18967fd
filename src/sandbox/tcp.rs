//! The sandbox's TCP banner/echo port and its TLS ports (valid, expired, wrong host).
//!
//! Every port speaks the same small line protocol: a greeting
//! (`220 synthmon-sandbox ready`), then each line it receives echoed back,
//! until the client closes, sends `QUIT` (answered `221 bye`), goes idle,
//! or sends a line longer than [`MAX_LINE`] (answered `500 line too long`
//! before the close). The TLS ports speak it after the handshake.
//!
//! The certificates come from a small PKI generated with rcgen at start: a
//! sandbox CA, a valid leaf for `localhost`, `127.0.0.1` and `::1`, an
//! expired leaf for the same names, a valid leaf for `wrong.example`, and
//! a client certificate (`CN=synthmon sandbox client`) for the mTLS port
//! (`mtls.rs`), which requires one signed by the CA. The CA's PEM is
//! written to a file of its own in the temp directory (`sandbox_ca_file`),
//! as are the client certificate and its key (`sandbox_client_cert`,
//! `sandbox_client_key`, the key readable by its owner only), removed when
//! the sandbox stops (or the runtime drops its tasks). The valid leaf also
//! serves the DNS-over-TLS port (`dns.rs`), so the same CA file vouches
//! for it.
//!
//! Bounded like the rest of the sandbox: at most [`MAX_CONNECTIONS`]
//! connections across the four ports and the mTLS port (further clients wait in the accept
//! backlog), a handshake deadline, an idle deadline, a lifetime cap per
//! connection, and every task ends when `stop` turns true.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

/// The greeting every connection gets first.
pub const BANNER: &[u8] = b"220 synthmon-sandbox ready\r\n";
/// The longest line echoed, line end included.
pub const MAX_LINE: usize = 1024;
/// Connections served at once, across the four ports and the mTLS port.
pub const MAX_CONNECTIONS: usize = 32;
/// A connection that sends nothing for this long is closed.
const IDLE: Duration = Duration::from_secs(10);
/// No connection lives longer than this.
const LIFETIME: Duration = Duration::from_secs(60);
/// The TLS handshake must finish within this.
const HANDSHAKE: Duration = Duration::from_secs(5);
/// How long each step of a close may take.
const CLOSE_GRACE: Duration = Duration::from_millis(500);
/// The most unread input taken in while closing.
const MAX_DRAIN: usize = 16 * 1024;
/// How long the valid leaves are valid for, from now (and were, before).
const LEAF_DAYS: u32 = 90;
/// The common name of the client certificate the mTLS port requires.
pub const CLIENT_NAME: &str = "synthmon sandbox client";
const DAY: Duration = Duration::from_secs(86_400);

/// Starts the listener(s) on `ip` (port 0), serving until `stop` turns
/// true; returns the [`super::VARIABLES`] entries it provides, and the
/// server config of the valid leaf for the sandbox's other TLS listeners
/// (DNS over TLS), so one CA file vouches for them all.
pub async fn start(
    ip: IpAddr,
    stop: watch::Receiver<bool>,
) -> std::io::Result<(Vec<(&'static str, String)>, ServerConfig)> {
    let pki = Pki::generate().map_err(io::Error::other)?;
    let shared = pki.valid.clone();
    let ca_file = Arc::new(PemFile::write("ca", &pki.ca_pem)?);
    let client_files = Arc::new((
        PemFile::write("client-cert", &pki.client_cert_pem)?,
        PemFile::write("client-key", &pki.client_key_pem)?,
    ));
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let shown = match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    };
    let mut vars = Vec::new();
    let ports = [
        ("sandbox_tcp", None),
        ("sandbox_tls", Some(pki.valid)),
        ("sandbox_tls_expired", Some(pki.expired)),
        ("sandbox_tls_wrong_host", Some(pki.wrong_host)),
    ];
    for (name, config) in ports {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
        let port = listener.local_addr()?.port();
        vars.push((name, SocketAddr::new(shown, port).to_string()));
        let tls = config.map(|c| TlsAcceptor::from(Arc::new(c)));
        // Every port holds the CA file, which is removed with the last.
        let ca_file = Arc::clone(&ca_file);
        tokio::spawn(super::accept::serve(
            listener,
            Arc::clone(&permits),
            stop.clone(),
            LIFETIME,
            "tcp",
            move |socket| {
                // Captured, so the file lives as long as the port serves.
                let _held = &ca_file;
                connection(socket, tls.clone())
            },
        ));
    }
    vars.push(("sandbox_ca_file", ca_file.path.display().to_string()));
    // The mTLS port shares the connection cap; it holds the client files.
    let mtls = super::mtls::start(
        SocketAddr::new(ip, 0),
        shown,
        pki.mtls,
        Arc::clone(&permits),
        stop.clone(),
        Arc::clone(&client_files),
    )
    .await?;
    vars.push(("sandbox_mtls", mtls));
    vars.push((
        "sandbox_client_cert",
        client_files.0.path.display().to_string(),
    ));
    vars.push((
        "sandbox_client_key",
        client_files.1.path.display().to_string(),
    ));
    tracing::debug!(?vars, "sandbox tcp and tls ports listening");
    Ok((vars, shared))
}

/// A PEM file of the sandbox's (its CA, the client certificate and key);
/// removed when the last port stops with it.
#[derive(Debug)]
struct PemFile {
    path: PathBuf,
}

impl PemFile {
    /// Writes `pem` to a new file with a unique name in the temp directory
    /// (never over an existing file or link), readable by its owner only
    /// (one holds a private key).
    fn write(what: &str, pem: &str) -> io::Result<PemFile> {
        use std::io::Write as _;
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(sweep_stale);
        let mut last = None;
        for _ in 0..4 {
            let path = std::env::temp_dir().join(format!(
                "synthmon-sandbox-{what}-{}-{:016x}.pem",
                std::process::id(),
                rand::random::<u64>()
            ));
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(&path) {
                Ok(mut file) => {
                    file.write_all(pem.as_bytes())?;
                    return Ok(PemFile { path });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("cannot name a sandbox PEM file")))
    }
}

/// Removes the PEM files of sandboxes whose process is gone: one killed
/// (SIGKILL, a crash) never ran the `Drop` below, and its files would
/// pile up in the temp directory. Only files named as [`PemFile::write`]
/// names them, owned by this user, whose process id no longer runs
/// (`/proc/PID` is gone) are removed; once per process, best effort.
fn sweep_stale() {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt as _;
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(rest) = name
                .strip_prefix("synthmon-sandbox-")
                .and_then(|r| r.strip_suffix(".pem"))
            else {
                continue;
            };
            // `WHAT-PID-RANDOM`: the process id is the second field from
            // the end (WHAT may hold dashes).
            let mut fields = rest.rsplit('-');
            let (Some(_), Some(pid)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Ok(pid) = pid.parse::<u32>() else {
                continue;
            };
            let gone = !std::path::Path::new("/proc").join(pid.to_string()).exists();
            let ours = entry
                .metadata()
                .is_ok_and(|m| Some(m.uid()) == uid && m.is_file());
            if gone && ours {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

impl Drop for PemFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The generated certificates: the CA's PEM, a server config per TLS
/// port, and the client certificate the mTLS port requires.
struct Pki {
    ca_pem: String,
    valid: ServerConfig,
    expired: ServerConfig,
    wrong_host: ServerConfig,
    /// The valid leaf, requiring a client certificate signed by the CA.
    mtls: ServerConfig,
    client_cert_pem: String,
    client_key_pem: String,
}

impl Pki {
    fn generate() -> Result<Pki, Box<dyn std::error::Error + Send + Sync>> {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        // rcgen takes `time` instants; this builds them without naming the crate.
        let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;

        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name
            .push(DnType::CommonName, "synthmon sandbox CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca.not_before = now - DAY;
        ca.not_after = now + 10 * 365 * DAY;
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;

        let local = ["localhost", "127.0.0.1", "::1"];
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone())?;
        let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&provider),
        )
        .build()?;
        type Error = Box<dyn std::error::Error + Send + Sync>;
        type Leaf = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);
        let leaf = |names: &[&str], from, until| -> Result<Leaf, Error> {
            let mut params =
                CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
            params.distinguished_name.push(
                DnType::CommonName,
                names.first().copied().unwrap_or("sandbox"),
            );
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            params.not_before = from;
            params.not_after = until;
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &ca)?;
            let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
            Ok((vec![cert.der().clone()], key))
        };
        let server = |(chain, key): Leaf| -> Result<ServerConfig, Error> {
            Ok(ServerConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(chain, key)?)
        };
        let (valid_chain, valid_key) = leaf(&local, now - DAY, now + DAY * LEAF_DAYS)?;
        // The valid leaf serves the mTLS port too, which wants a client
        // certificate the sandbox CA signed.
        let mtls = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(valid_chain.clone(), valid_key.clone_key())?;
        let valid = server((valid_chain, valid_key))?;
        let expired = server(leaf(&local, now - DAY * LEAF_DAYS, now - DAY)?)?;
        let wrong_host = server(leaf(&["wrong.example"], now - DAY, now + DAY * LEAF_DAYS)?)?;

        let mut client = CertificateParams::new(Vec::<String>::new())?;
        client
            .distinguished_name
            .push(DnType::CommonName, CLIENT_NAME);
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        client.not_before = now - DAY;
        client.not_after = now + DAY * LEAF_DAYS;
        let client_key = KeyPair::generate()?;
        let client_cert = client.signed_by(&client_key, &ca)?;
        Ok(Pki {
            valid,
            expired,
            wrong_host,
            mtls,
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
            ca_pem: ca.pem(),
        })
    }
}

/// One connection: the TLS handshake if any, then the line protocol.
async fn connection(socket: TcpStream, tls: Option<TlsAcceptor>) {
    let _ = socket.set_nodelay(true);
    match tls {
        None => converse(socket).await,
        Some(acceptor) => {
            if let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE, acceptor.accept(socket)).await {
                converse(stream).await;
            }
        }
    }
}

/// Greets, echoes lines, then closes politely.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let _ = echo(&mut stream).await;
    let _ = tokio::time::timeout(CLOSE_GRACE, stream.shutdown()).await;
    // Closing with unread input would reset the connection, and a reset can
    // discard our last line before the client reads it: take in what the
    // client still sends, for a moment and a few KiB.
    let _ = tokio::time::timeout(CLOSE_GRACE, drain(&mut stream)).await;
}

/// Reads and discards up to [`MAX_DRAIN`] bytes, until the client closes.
async fn drain<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut sink = [0u8; 1024];
    let mut left = MAX_DRAIN;
    while left > 0 {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> io::Result<()> {
    say(stream, BANNER).await?;
    let mut buf = Vec::with_capacity(MAX_LINE);
    let mut chunk = [0u8; 512];
    loop {
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            if line.trim_ascii().eq_ignore_ascii_case(b"QUIT") {
                return say(stream, b"221 bye\r\n").await;
            }
            say(stream, &line).await?;
        }
        if buf.len() >= MAX_LINE {
            return say(stream, b"500 line too long\r\n").await;
        }
        let room = (MAX_LINE - buf.len()).min(chunk.len());
        let n = match tokio::time::timeout(IDLE, stream.read(&mut chunk[..room])).await {
            Ok(read) => read?,
            // Idle for too long.
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Writes and flushes `bytes`; a client that stops reading is as idle as
/// one that stops writing.
async fn say<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> io::Result<()> {
    let write = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    tokio::time::timeout(IDLE, write)
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

#[cfg(all(test, target_os = "linux"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::sweep_stale;

    #[test]
    fn the_sweep_removes_a_dead_process_files_and_keeps_a_live_one() {
        let dir = std::env::temp_dir();
        // No process has this id (above the kernel's pid_max).
        let dead = dir.join("synthmon-sandbox-ca-4294967295-00000000deadbeef.pem");
        let live = dir.join(format!(
            "synthmon-sandbox-client-key-{}-00000000cafef00d.pem",
            std::process::id()
        ));
        let other = dir.join("synthmon-sandbox-notes-4294967295.txt");
        for path in [&dead, &live, &other] {
            std::fs::write(path, "x").unwrap();
        }
        sweep_stale();
        let (dead_left, live_left, other_left) = (dead.exists(), live.exists(), other.exists());
        for path in [&dead, &live, &other] {
            let _ = std::fs::remove_file(path);
        }
        assert!(!dead_left, "a dead process' PEM file was kept");
        assert!(live_left, "this process' PEM file was removed");
        assert!(other_left, "a file not named like a PEM file was removed");
    }
}
