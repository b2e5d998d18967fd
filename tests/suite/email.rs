//! The email receiver against a real SMTP peer: a small SMTP server written
//! here on tokio + tokio-rustls, listening on 127.0.0.1, speaking EHLO,
//! STARTTLS (with a self-signed certificate made by rcgen), AUTH PLAIN and
//! LOGIN (refused before STARTTLS), MAIL, RCPT, DATA and QUIT. It records
//! what it was told so the tests can check the envelope and the message.
//! Also: a server that never answers (timeout), one that rejects RCPT (550)
//! and one without STARTTLS. The server and the fixtures are `pub(super)`
//! for the regression tests in `regressions_sinks.rs`.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use synthmon::alert::email::{self, EmailReceiver, EmailSettings, SmtpTls};
use synthmon::alert::outbox::{Attempt, Dispatcher, Outbox};
use synthmon::alert::{AlertKind, FailedCheck, Notice, Notification, ThresholdBreach, fingerprint};
use synthmon::config::Severity;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub(super) const USER: &str = "alerts@example.test";
pub(super) const PASSWORD: &str = "s3cr3t-pa55";
/// Bounds every test.
const TEST_LIMIT: Duration = Duration::from_secs(30);

/// How the test server behaves.
#[derive(Clone, Copy, Default)]
pub(super) struct Behaviour {
    /// Offer STARTTLS (and AUTH only after it).
    pub(super) starttls: bool,
    /// Reject every RCPT with 550.
    pub(super) reject_rcpt: bool,
    /// Accept connections and never say anything.
    pub(super) silent: bool,
    /// Speak TLS from the first byte (SMTPS).
    pub(super) implicit: bool,
}

/// What one SMTP session told the server.
#[derive(Debug, Default, Clone)]
pub(super) struct Session {
    pub(super) tls: bool,
    /// `(mechanism, user, over TLS)` for each successful AUTH.
    pub(super) auth: Vec<(String, String, bool)>,
    /// AUTH commands refused because the connection was still plain.
    pub(super) auth_refused_plain: u32,
    pub(super) mail_from: String,
    pub(super) rcpt_to: Vec<String>,
    pub(super) data: String,
    pub(super) quit: bool,
}

pub(super) struct Server {
    pub(super) port: u16,
    pub(super) sessions: Arc<Mutex<Vec<Session>>>,
    pub(super) ca_pem: String,
}

fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, String) {
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        cert.pem(),
    )
}

pub(super) async fn smtp_server(behaviour: Behaviour) -> Server {
    let (acceptor, ca_pem) = tls_acceptor();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sessions = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&sessions);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let recorded = Arc::clone(&recorded);
            tokio::spawn(async move {
                if behaviour.silent {
                    // Hold the connection open without a greeting.
                    let _tcp = tcp;
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return;
                }
                let mut session = Session::default();
                if behaviour.implicit {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        session.tls = true;
                        let mut tls = BufReader::new(tls);
                        if reply(&mut tls, "220 test.local ESMTP\r\n").await {
                            dialogue(&mut tls, behaviour, &mut session).await;
                        }
                    }
                    recorded.lock().unwrap().push(session);
                    return;
                }
                let mut plain = BufReader::new(tcp);
                if plain.write_all(b"220 test.local ESMTP\r\n").await.is_err() {
                    return;
                }
                let upgrade = dialogue(&mut plain, behaviour, &mut session).await;
                if upgrade {
                    if let Ok(tls) = acceptor.accept(plain.into_inner()).await {
                        session.tls = true;
                        let mut tls = BufReader::new(tls);
                        dialogue(&mut tls, behaviour, &mut session).await;
                    }
                }
                recorded.lock().unwrap().push(session);
            });
        }
    });
    Server {
        port,
        sessions,
        ca_pem,
    }
}

async fn reply<S: AsyncWrite + Unpin>(stream: &mut S, text: &str) -> bool {
    stream.write_all(text.as_bytes()).await.is_ok() && stream.flush().await.is_ok()
}

async fn read_line<S: AsyncRead + Unpin>(stream: &mut BufReader<S>) -> Option<String> {
    let mut line = String::new();
    match stream.read_line(&mut line).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_owned()),
    }
}

/// Runs commands until QUIT, EOF or an accepted STARTTLS (returns true).
async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    behaviour: Behaviour,
    session: &mut Session,
) -> bool {
    while let Some(line) = read_line(stream).await {
        let upper = line.to_ascii_uppercase();
        let ok = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            let mut text = String::from("250-test.local\r\n");
            if behaviour.starttls && !session.tls {
                text.push_str("250-STARTTLS\r\n");
            }
            if session.tls || !behaviour.starttls {
                text.push_str("250-AUTH PLAIN LOGIN\r\n");
            }
            text.push_str("250 8BITMIME\r\n");
            reply(stream, &text).await
        } else if upper == "STARTTLS" {
            if behaviour.starttls && !session.tls {
                let _ = reply(stream, "220 2.0.0 Ready to start TLS\r\n").await;
                return true;
            }
            reply(stream, "502 5.5.1 STARTTLS not available\r\n").await
        } else if upper.starts_with("AUTH ") {
            if behaviour.starttls && !session.tls {
                session.auth_refused_plain += 1;
                reply(stream, "530 5.7.0 Must issue a STARTTLS command first\r\n").await
            } else {
                let parts: Vec<&str> = line.split_whitespace().collect();
                let mechanism = parts.get(1).copied().unwrap_or("").to_ascii_uppercase();
                let credentials = match mechanism.as_str() {
                    "PLAIN" => {
                        let initial = match parts.get(2) {
                            Some(i) => Some((*i).to_owned()),
                            None => {
                                let _ = reply(stream, "334 \r\n").await;
                                read_line(stream).await
                            }
                        };
                        initial.and_then(|i| b64(&i)).and_then(|raw| {
                            let fields: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
                            match fields.as_slice() {
                                [_, user, pass] => Some((
                                    String::from_utf8_lossy(user).into_owned(),
                                    String::from_utf8_lossy(pass).into_owned(),
                                )),
                                _ => None,
                            }
                        })
                    }
                    "LOGIN" => {
                        let _ = reply(stream, "334 VXNlcm5hbWU6\r\n").await;
                        let user = read_line(stream).await.and_then(|l| b64(&l));
                        let _ = reply(stream, "334 UGFzc3dvcmQ6\r\n").await;
                        let pass = read_line(stream).await.and_then(|l| b64(&l));
                        user.zip(pass).map(|(u, p)| {
                            (
                                String::from_utf8_lossy(&u).into_owned(),
                                String::from_utf8_lossy(&p).into_owned(),
                            )
                        })
                    }
                    _ => None,
                };
                match credentials {
                    Some((user, pass)) if user == USER && pass == PASSWORD => {
                        session.auth.push((mechanism, user, session.tls));
                        reply(stream, "235 2.7.0 Authentication successful\r\n").await
                    }
                    _ => reply(stream, "535 5.7.8 Authentication credentials invalid\r\n").await,
                }
            }
        } else if upper.starts_with("MAIL FROM:") {
            if session.auth.is_empty() {
                reply(stream, "530 5.7.0 Authentication required\r\n").await
            } else {
                session.mail_from = address(&line);
                reply(stream, "250 2.1.0 OK\r\n").await
            }
        } else if upper.starts_with("RCPT TO:") {
            if behaviour.reject_rcpt {
                reply(stream, "550 5.1.1 No such user here\r\n").await
            } else {
                session.rcpt_to.push(address(&line));
                reply(stream, "250 2.1.5 OK\r\n").await
            }
        } else if upper == "DATA" {
            if session.rcpt_to.is_empty() {
                reply(stream, "554 5.5.1 No valid recipients\r\n").await
            } else {
                let _ = reply(stream, "354 End data with <CR><LF>.<CR><LF>\r\n").await;
                let mut data = String::new();
                while let Some(l) = read_line(stream).await {
                    if l == "." {
                        break;
                    }
                    data.push_str(l.strip_prefix('.').unwrap_or(&l));
                    data.push_str("\r\n");
                }
                session.data = data;
                reply(stream, "250 2.0.0 Queued\r\n").await
            }
        } else if upper == "QUIT" {
            session.quit = true;
            let _ = reply(stream, "221 2.0.0 Bye\r\n").await;
            return false;
        } else if upper == "RSET" || upper == "NOOP" {
            reply(stream, "250 2.0.0 OK\r\n").await
        } else {
            reply(stream, "500 5.5.2 Unknown command\r\n").await
        };
        if !ok {
            return false;
        }
    }
    false
}

/// The address between `<` and `>` of a MAIL/RCPT line.
fn address(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line.rfind('>').unwrap_or(line.len());
    line[start..end].to_owned()
}

/// Decodes standard base64.
fn b64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.trim().bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub(super) fn notification(probe: &str) -> Notification {
    Notification {
        fingerprint: fingerprint(probe, "prod", AlertKind::Failing),
        notice: Notice::Trigger,
        kind: AlertKind::Failing,
        probe: probe.into(),
        environment: "prod".into(),
        severity: Severity::Critical,
        labels: BTreeMap::from([("team".into(), "orders".into())]),
        tags: vec!["api".into()],
        starts_at: at("2025-03-04T05:06:07Z"),
        ends_at: None,
        expires_at: None,
        at: at("2025-03-04T05:06:07Z"),
        sequence: 0,
        summary: format!("{probe} @ prod failing: 3 of 3 runs failed (assertion)"),
        reason: Some("assertion".into()),
        error: None,
        failed_checks: vec![FailedCheck {
            expression: "status == 201 && body.name != \"<script>\"".into(),
            actual: "status = 500".into(),
            location: Some("probes/orders.toml:9:3".into()),
        }],
        thresholds: vec![ThresholdBreach {
            threshold: "p(99) < 500ms".into(),
            state: "failing".into(),
            observed: Some(812.0),
            unit: "ms".into(),
            window_seconds: 300.0,
        }],
        run_id: "run-0123456789".into(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        artifact_url: None,
    }
}

pub(super) fn receiver(
    port: u16,
    tls: SmtpTls,
    ca_file: Option<&std::path::Path>,
) -> EmailReceiver {
    EmailReceiver {
        name: "mail".into(),
        settings: EmailSettings {
            smtp_host: "127.0.0.1".into(),
            smtp_port: port,
            tls,
            username: Some(USER.into()),
            password: Some(PASSWORD.into()),
            from: "Synthmon <synthmon@example.test>".into(),
            to: vec![
                "oncall@example.test".into(),
                "Ops Team <ops@example.test>".into(),
            ],
            ca_file: ca_file.map(std::path::Path::to_path_buf),
        },
        timeout: Duration::from_secs(5),
    }
}

fn write_ca(dir: &tempfile::TempDir, pem: &str) -> std::path::PathBuf {
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, pem).unwrap();
    path
}

/// Unfolds quoted-printable soft line breaks and `=3D`, enough to search
/// the decoded text.
fn unqp(text: &str) -> String {
    text.replace("=\r\n", "").replace("=3D", "=")
}

#[tokio::test]
async fn delivers_over_starttls_with_auth_to_every_recipient() {
    tokio::time::timeout(TEST_LIMIT, async {
        let server = smtp_server(Behaviour {
            starttls: true,
            ..Behaviour::default()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let ca = write_ca(&dir, &server.ca_pem);
        let r = receiver(server.port, SmtpTls::StartTls, Some(&ca));
        let attempt = email::send(&r, &[notification("api")]).await;
        assert_eq!(attempt, Attempt::Delivered);

        // The session is recorded once the client quits.
        let session = loop {
            if let Some(s) = server.sessions.lock().unwrap().first().cloned() {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(session.tls, "the session was upgraded with STARTTLS");
        assert_eq!(session.auth_refused_plain, 0);
        assert_eq!(session.auth.len(), 1, "{:?}", session.auth);
        assert_eq!(session.auth[0].1, USER);
        assert!(session.auth[0].2, "AUTH happened over TLS");
        assert_eq!(session.mail_from, "synthmon@example.test");
        assert_eq!(
            session.rcpt_to,
            vec!["oncall@example.test", "ops@example.test"]
        );
        let data = &session.data;
        let decoded = unqp(data);
        assert!(
            data.contains("Subject: [FIRING] api @ prod is failing"),
            "{data}"
        );
        assert!(data.contains("multipart/alternative"), "{data}");
        assert!(data.contains("Content-Type: text/plain"), "{data}");
        assert!(data.contains("Content-Type: text/html"), "{data}");
        // The failed check, in the plain part as is and escaped in HTML.
        assert!(
            decoded.contains("expected status == 201 && body.name != \"<script>\", actual status = 500 (probes/orders.toml:9:3)"),
            "{decoded}"
        );
        assert!(
            decoded.contains("status == 201 &amp;&amp; body.name != &quot;&lt;script&gt;&quot;"),
            "{decoded}"
        );
        assert!(!decoded.contains("<code><script>"), "{decoded}");
        assert!(decoded.contains("observed 812ms"), "{decoded}");
        assert!(decoded.contains("Since:    2025-03-04T05:06:07Z"), "{decoded}");
        assert!(decoded.contains("run-0123456789"), "{decoded}");
        assert!(decoded.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{decoded}");
        // The password is not in the message.
        assert!(!data.contains(PASSWORD));
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn delivers_over_implicit_tls_and_in_clear_to_loopback() {
    tokio::time::timeout(TEST_LIMIT, async {
        let server = smtp_server(Behaviour {
            implicit: true,
            ..Behaviour::default()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let ca = write_ca(&dir, &server.ca_pem);
        let r = receiver(server.port, SmtpTls::Implicit, Some(&ca));
        assert_eq!(
            email::send(&r, &[notification("api")]).await,
            Attempt::Delivered
        );
        let session = loop {
            if let Some(s) = server.sessions.lock().unwrap().first().cloned() {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(session.tls, "{session:?}");
        assert_eq!(session.auth.len(), 1, "{session:?}");
        assert!(session.auth[0].2, "AUTH over TLS: {session:?}");
        assert!(
            session
                .data
                .contains("Subject: [FIRING] api @ prod is failing")
        );

        // `tls = "none"` (loopback only): no STARTTLS asked for.
        let server = smtp_server(Behaviour::default()).await;
        let r = receiver(server.port, SmtpTls::None, None);
        assert_eq!(
            email::send(&r, &[notification("api")]).await,
            Attempt::Delivered
        );
        let session = loop {
            if let Some(s) = server.sessions.lock().unwrap().first().cloned() {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(!session.tls, "{session:?}");
        assert_eq!(session.rcpt_to.len(), 2, "{session:?}");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn a_batch_is_one_message() {
    tokio::time::timeout(TEST_LIMIT, async {
        let server = smtp_server(Behaviour {
            starttls: true,
            ..Behaviour::default()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let ca = write_ca(&dir, &server.ca_pem);
        let r = receiver(server.port, SmtpTls::StartTls, Some(&ca));
        let batch = [notification("api"), notification("web")];
        assert_eq!(email::send(&r, &batch).await, Attempt::Delivered);
        let sessions = loop {
            let s = server.sessions.lock().unwrap().clone();
            if !s.is_empty() {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(sessions.len(), 1);
        let data = &sessions[0].data;
        assert!(
            data.contains(
                "Subject: [FIRING] 2 alerts (2 firing, 0 resolved): api @ prod, web @ prod"
            ),
            "{data}"
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn a_silent_server_times_out_as_transient() {
    tokio::time::timeout(TEST_LIMIT, async {
        let server = smtp_server(Behaviour {
            silent: true,
            ..Behaviour::default()
        })
        .await;
        let mut r = receiver(server.port, SmtpTls::StartTls, None);
        r.timeout = Duration::from_millis(800);
        let started = std::time::Instant::now();
        let attempt = email::send(&r, &[notification("api")]).await;
        let elapsed = started.elapsed();
        assert!(matches!(&attempt, Attempt::Transient { .. }), "{attempt:?}");
        assert!(elapsed >= Duration::from_millis(750), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn a_rejected_recipient_is_permanent() {
    tokio::time::timeout(TEST_LIMIT, async {
        let server = smtp_server(Behaviour {
            starttls: true,
            reject_rcpt: true,
            ..Behaviour::default()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let ca = write_ca(&dir, &server.ca_pem);
        let r = receiver(server.port, SmtpTls::StartTls, Some(&ca));
        let attempt = email::send(&r, &[notification("api")]).await;
        match &attempt {
            Attempt::Permanent { error } => {
                assert!(error.contains("550"), "{error}");
                assert!(!error.contains(PASSWORD), "{error}");
            }
            other => panic!("expected a permanent failure, got {other:?}"),
        }
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn starttls_is_required_when_configured() {
    tokio::time::timeout(TEST_LIMIT, async {
        // This server offers no STARTTLS but would take AUTH in clear text.
        let server = smtp_server(Behaviour::default()).await;
        let r = receiver(server.port, SmtpTls::StartTls, None);
        let attempt = email::send(&r, &[notification("api")]).await;
        match &attempt {
            Attempt::Transient { error, .. } | Attempt::Permanent { error } => {
                assert!(error.contains("STARTTLS"), "{error}");
            }
            Attempt::Delivered => panic!("sent without STARTTLS"),
        }
        // Give the server a moment to record the session, then check that
        // nothing secret or alerting went over the plain connection.
        tokio::time::sleep(Duration::from_millis(200)).await;
        for s in server.sessions.lock().unwrap().iter() {
            assert!(s.auth.is_empty(), "AUTH in clear text: {s:?}");
            assert!(s.data.is_empty(), "DATA in clear text: {s:?}");
        }
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn a_wrong_certificate_is_not_delivered() {
    tokio::time::timeout(TEST_LIMIT, async {
        let server = smtp_server(Behaviour {
            starttls: true,
            ..Behaviour::default()
        })
        .await;
        // No ca_file: the self-signed certificate is not trusted.
        let r = receiver(server.port, SmtpTls::StartTls, None);
        let attempt = email::send(&r, &[notification("api")]).await;
        let Attempt::Transient { error, .. } = &attempt else {
            panic!("{attempt:?}");
        };
        // Worded by the net layer, as every probe kind words it.
        assert!(
            error.ends_with(
                "certificate of 127.0.0.1 is not trusted: unknown issuer (self-signed, or a private CA: set ca_file to trust it)"
            ),
            "{error}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        for s in server.sessions.lock().unwrap().iter() {
            assert!(s.auth.is_empty(), "{s:?}");
        }
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn the_dispatcher_delivers_to_an_email_receiver() {
    tokio::time::timeout(TEST_LIMIT, async {
        let server = smtp_server(Behaviour {
            starttls: true,
            ..Behaviour::default()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let ca = write_ca(&dir, &server.ca_pem);
        let outbox = Arc::new(Outbox::open(&dir.path().join("outbox.sqlite")).unwrap());
        let stop = CancellationToken::new();
        let dispatcher = Dispatcher::start(
            Arc::clone(&outbox),
            vec![receiver(server.port, SmtpTls::StartTls, Some(&ca))],
            stop.clone(),
        )
        .unwrap();
        dispatcher
            .enqueue(vec!["mail".into()], vec![notification("api")])
            .await
            .unwrap();
        loop {
            let stats = dispatcher.stats();
            if stats
                .receivers
                .get("mail")
                .is_some_and(|s| s.delivered == 1)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let sessions = loop {
            let s = server.sessions.lock().unwrap().clone();
            if !s.is_empty() {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(sessions.len(), 1);
        assert!(
            sessions[0]
                .data
                .contains("Subject: [FIRING] api @ prod is failing")
        );
        dispatcher.shutdown(Duration::from_secs(1)).await;
    })
    .await
    .expect("test timed out");
}

fn load(config: &str) -> Result<synthmon::plan::Config, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    std::fs::write(dir.path().join("smtp-password"), "hunter2-from-file\n").unwrap();
    synthmon::plan::load(&synthmon::config::LoadOptions {
        config_path: Some(path),
        overrides: Vec::new(),
    })
    .map_err(|d| d.to_string())
}

const ENV: &str = "[environments.prod]\nbase_url = \"https://api.example.com\"\n\n";

#[test]
fn email_receivers_are_configured_and_checked() {
    let config = format!(
        r#"{ENV}[alerting.receivers.mail]
type = "email"
smtp_host = "smtp.example.com"
username = "alerts"
password = "${{file:smtp-password}}"
from = "Synthmon <synthmon@example.com>"
to = ["oncall@example.com", "Ops <ops@example.com>"]
ca_file = "ca.pem"
timeout = "7s"
"#
    );
    let c = load(&config).unwrap();
    let r = &c.alerting.receivers["mail"];
    assert_eq!(r.type_name, "email");
    let any: &dyn std::any::Any = r.receiver.as_ref();
    let Some(EmailReceiver {
        settings: s,
        timeout,
        ..
    }) = any.downcast_ref::<EmailReceiver>()
    else {
        panic!("not an email receiver: {r:?}");
    };
    assert_eq!(s.smtp_host, "smtp.example.com");
    assert_eq!(s.smtp_port, 587);
    assert_eq!(s.tls, SmtpTls::StartTls);
    assert_eq!(s.username.as_deref(), Some("alerts"));
    assert!(
        s.password
            .as_deref()
            .is_some_and(|p| p.starts_with("hunter2-from-file"))
    );
    assert_eq!(s.to, vec!["oncall@example.com", "Ops <ops@example.com>"]);
    assert!(s.ca_file.as_ref().is_some_and(|f| f.ends_with("ca.pem")));
    assert_eq!(*timeout, Duration::from_secs(7));
    // Debug output never shows the password.
    assert!(!format!("{r:?}").contains("hunter2"), "{r:?}");

    let bad = format!(
        r#"{ENV}[alerting.receivers.mail]
type = "email"
smtp_host = "smtp.example.com"
tls = "startls"
to = ["oncall@example.com", "not an address"]

[alerting.receivers.plain]
type = "email"
smtp_host = "smtp.example.com"
tls = "none"
from = "a@example.com"
to = ["b@example.com"]

[alerting.receivers.local]
type = "email"
smtp_host = "127.0.0.1"
smtp_port = 25
tls = "none"
from = "a@example.com"
to = ["b@example.com"]

[alerting.receivers.hook]
type = "webhook"
smtp_host = "smtp.example.com"
"#
    );
    let e = load(&bad).unwrap_err();
    assert!(e.contains("unknown tls mode `startls`"), "{e}");
    assert!(e.contains("did you mean `starttls`?"), "{e}");
    assert!(
        e.contains("`not an address` is not an email address"),
        "{e}"
    );
    assert!(e.contains("missing required key `from`"), "{e}");
    assert!(e.contains("allowed for loopback hosts only"), "{e}");
    // Only the webhook needs a URL.
    assert_eq!(e.matches("missing required key `url`").count(), 1, "{e}");
    assert!(
        e.contains("`smtp_host` applies to email receivers only"),
        "{e}"
    );
    // The loopback receiver with tls = "none" is fine.
    assert!(!e.contains("receivers.local"), "{e}");
}
