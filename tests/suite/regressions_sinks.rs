//! Regression tests for the reliability issue's sink defects, each named
//! after the bug it pins:
//!
//! - the `stream` kind reported a `max_gap` without the stall that failed
//!   the run (only the gaps between events it received);
//! - an email receiver with `tls = "starttls"` against a server without
//!   STARTTLS was retried forever, and the dispatcher logged every
//!   receiver's failure as a webhook's.
//!
//! The stream tests run against the sandbox (and a raw server that stalls a
//! reconnect); the email tests against the SMTP server of `email.rs`.

use crate::common::{self, config_with_target, load, run_one, sandbox, write_config};
use crate::email::{Behaviour, PASSWORD, notification, receiver, smtp_server};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use synthmon::alert::email::{self, SmtpTls};
use synthmon::alert::outbox::{
    Attempt, DeliveryState, DispatchOptions, Dispatcher, Outbox, idempotency_key,
};
use synthmon::outcome::{FailureReason, Outcome};
use synthmon::probe::stream::StreamFacts;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Every test body runs under this bound.
const BOUND: Duration = Duration::from_secs(20);

/// Runs one probe file (`name = "p"` in environment `target` at
/// `base_url`, with the `[stream]` table `body`) once.
async fn run_stream(base_url: &str, body: &str) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let probe = format!("name = \"p\"\nenvironments = [\"target\"]\n\n[stream]\n{body}\n");
    let path = write_config(
        dir.path(),
        &config_with_target(base_url),
        &[("p.toml", &probe)],
    );
    run_one(&load(&path)).await
}

fn stream_facts(o: &Outcome) -> &StreamFacts {
    match o.details.as_ref().and_then(|d| d.get::<StreamFacts>()) {
        Some(f) => f,
        None => panic!("no stream details: {o:#?}"),
    }
}

fn max_gap_gauge(o: &Outcome) -> f64 {
    let gauges = o.details.as_ref().unwrap().gauges();
    gauges
        .iter()
        .find(|(n, _)| *n == "probe_stream_max_gap_seconds")
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no probe_stream_max_gap_seconds in {gauges:?}"))
}

/// Regression: "SSE `max_gap` excludes the final stall that made the probe
/// fail". Events come 20 ms apart, then the stream stalls after event 2
/// for longer than `max_gap`: the run fails, and the `max_gap` it reports
/// is that stall (at least the configured 200 ms), not the 20 ms between
/// the events it received.
#[tokio::test]
async fn sse_max_gap_includes_the_final_stall_that_made_the_probe_fail() {
    common::within(BOUND, async {
        let sb = sandbox().await;
        let o = run_stream(
            &sb.base_url(),
            "url = \"/events?count=5&interval_ms=20&stall_after=2&stall_ms=3000\"\nmin_events = 5\nmax_gap = \"200ms\"",
        )
        .await;
        assert_eq!(o.reason, Some(FailureReason::StreamStalled), "{o:#?}");
        let f = stream_facts(&o);
        assert_eq!(f.events, 2, "{f:?}");
        assert!(f.max_gap_seconds >= 0.2, "max_gap without the stall: {f:?}");
        // The stall is cut at max_gap (plus scheduling slack), not at the
        // server's 3 s.
        assert!(f.max_gap_seconds < 1.0, "{f:?}");
        assert_eq!(max_gap_gauge(&o), f.max_gap_seconds);
        // The message and the fact tell the same gap.
        let error = o.error.as_deref().unwrap();
        assert!(
            error.starts_with(&format!("no event for {:.3}s after event 2", f.max_gap_seconds)),
            "{error} vs {f:?}"
        );
        sb.shutdown().await;
    })
    .await;
}

/// The same bug on the other stall path: the server ends the stream after
/// two events and then does not answer the reconnect, so the gap runs out
/// while connecting. That stall is the run's largest gap too.
#[tokio::test]
async fn sse_max_gap_includes_a_final_stall_while_reconnecting() {
    common::within(BOUND, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut first = true;
            while let Ok((mut tcp, _)) = listener.accept().await {
                let answer = std::mem::replace(&mut first, false);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tcp.read(&mut chunk).await {
                            Ok(n) if n > 0 => head.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    }
                    if !answer {
                        // Hold the reconnect without a response.
                        tokio::time::sleep(Duration::from_secs(10)).await;
                        return;
                    }
                    let mut out = String::from(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
                    );
                    for id in 1..=2 {
                        let event = format!("id: {id}\r\ndata: n{id}\r\n\r\n");
                        out.push_str(&format!("{:x}\r\n{event}\r\n", event.len()));
                    }
                    out.push_str("0\r\n\r\n");
                    let _ = tcp.write_all(out.as_bytes()).await;
                });
            }
        });
        let o = run_stream(
            &base,
            "url = \"/feed\"\nreconnect = true\nmax_gap = \"200ms\"",
        )
        .await;
        assert_eq!(o.reason, Some(FailureReason::StreamStalled), "{o:#?}");
        let error = o.error.as_deref().unwrap();
        assert!(error.contains("(while connecting)"), "{error}");
        let f = stream_facts(&o);
        assert_eq!(f.events, 2, "{f:?}");
        assert!(f.max_gap_seconds >= 0.2, "max_gap without the stall: {f:?}");
        assert!(f.max_gap_seconds < 1.0, "{f:?}");
        assert_eq!(max_gap_gauge(&o), f.max_gap_seconds);
    })
    .await;
}

/// Regression: "SMTP: a receiver configured for STARTTLS against a server
/// without it retries forever". The attempt is permanent, says why in
/// words naming the server and the setting, and nothing was sent in clear.
#[tokio::test]
async fn a_starttls_receiver_against_a_server_without_starttls_fails_permanently() {
    common::within(BOUND, async {
        // Offers no STARTTLS, but would take AUTH and DATA in clear text.
        let server = smtp_server(Behaviour::default()).await;
        let r = receiver(server.port, SmtpTls::StartTls, None);
        let attempt = email::send(&r, &[notification("api")]).await;
        assert_eq!(
            attempt,
            Attempt::Permanent {
                error: format!(
                    "SMTP 127.0.0.1:{}: the server does not offer STARTTLS (tls = \"starttls\"); refusing to send in clear",
                    server.port
                ),
            }
        );
        let sessions = recorded(&server.sessions, 1).await;
        assert_eq!(sessions.len(), 1, "{sessions:?}");
        assert!(sessions[0].auth.is_empty(), "AUTH in clear: {sessions:?}");
        assert!(sessions[0].mail_from.is_empty(), "MAIL in clear: {sessions:?}");
        assert!(sessions[0].data.is_empty(), "DATA in clear: {sessions:?}");
    })
    .await;
}

/// Regression: the same delivery through the dispatcher becomes a dead
/// letter after one attempt (it was retried forever), and the log line
/// names the receiver's type and name ("webhook delivery failed" was
/// logged for every receiver, an email one included).
#[tokio::test]
async fn a_starttls_receiver_without_starttls_is_a_dead_letter_logged_as_email_not_webhook() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(logs.clone())
        .finish();
    // This thread only: the dispatcher's workers run on this test's
    // current-thread runtime, other tests' logs never get here.
    let _logging = tracing::subscriber::set_default(subscriber);
    common::within(BOUND, async {
        let server = smtp_server(Behaviour::default()).await;
        let dir = tempfile::tempdir().unwrap();
        let outbox = Arc::new(Outbox::open(&dir.path().join("outbox.sqlite")).unwrap());
        // Fast retries: a transient verdict would show as many attempts.
        let options = DispatchOptions {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(20),
            ..DispatchOptions::default()
        };
        let dispatcher = Dispatcher::start_with(
            Arc::clone(&outbox),
            vec![receiver(server.port, SmtpTls::StartTls, None)],
            CancellationToken::new(),
            options,
        )
        .unwrap();
        let batch = vec![notification("api")];
        let key = idempotency_key(&batch);
        dispatcher.enqueue(vec!["mail".into()], batch).await.unwrap();
        let started = Instant::now();
        loop {
            let status = outbox.status("mail", &key).unwrap();
            if status.as_ref().is_some_and(|s| s.state == DeliveryState::Dead) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "not a dead letter after 5s: {status:?}, {:?}",
                dispatcher.stats()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Many backoff periods later, still one attempt, one connection.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let status = outbox.status("mail", &key).unwrap().unwrap();
        assert_eq!(status.attempts, 1, "{status:?}");
        let expected = format!(
            "SMTP 127.0.0.1:{}: the server does not offer STARTTLS (tls = \"starttls\"); refusing to send in clear",
            server.port
        );
        assert_eq!(status.last_error.as_deref(), Some(expected.as_str()));
        assert_eq!(outbox.dead_letters("mail").unwrap(), 1);
        let s = dispatcher.stats().receivers["mail"];
        assert_eq!(
            (s.delivered, s.retried, s.dead, s.failed_attempts),
            (0, 0, 1, 1)
        );
        assert_eq!(recorded(&server.sessions, 1).await.len(), 1);
        dispatcher.shutdown(Duration::from_secs(1)).await;

        let lines = logs.lines();
        let dead: Vec<&serde_json::Value> = lines
            .iter()
            .filter(|l| l["level"] == "ERROR")
            .collect();
        assert_eq!(dead.len(), 1, "{lines:#?}");
        let fields = &dead[0]["fields"];
        assert_eq!(fields["receiver_kind"], "email", "{fields}");
        assert_eq!(fields["receiver"], "mail", "{fields}");
        assert_eq!(
            fields["message"].as_str().unwrap_or_default(),
            format!("notification delivery failed permanently, dead letter: {expected}")
        );
        for line in &lines {
            let text = line.to_string();
            assert!(!text.contains("webhook"), "an email receiver logged as a webhook: {text}");
            assert!(!text.contains(PASSWORD), "{text}");
        }
    })
    .await;
}

/// Waits (bounded) until the SMTP server recorded at least `n` sessions;
/// returns them.
async fn recorded(
    sessions: &Arc<Mutex<Vec<crate::email::Session>>>,
    n: usize,
) -> Vec<crate::email::Session> {
    let started = Instant::now();
    loop {
        let s = sessions.lock().unwrap().clone();
        if s.len() >= n {
            return s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the SMTP server recorded {} of {n} sessions",
            s.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Log output captured in memory, one JSON document per line.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
