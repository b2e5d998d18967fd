//! The durable outbox and webhook delivery against real receivers: axum
//! servers on 127.0.0.1 started by each test, scripted to fail, hang or
//! rate-limit. Also the webhook payloads: golden files per preset and the
//! generic payload checked against `docs/webhook-v1.schema.json`.

use crate::common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use synthmon::alert::outbox::{
    DeliveryState, DispatchOptions, Dispatcher, Outbox, idempotency_key,
};
use synthmon::alert::webhook::{self, Preset, WebhookReceiver};
use synthmon::alert::{AlertKind, FailedCheck, Notice, Notification, ThresholdBreach, fingerprint};
use synthmon::config::Severity;
use tokio_util::sync::CancellationToken;

/// No test here may take longer.
const TEST_DEADLINE: Duration = Duration::from_secs(20);

/// Runs `f` or fails the test after [`TEST_DEADLINE`].
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_DEADLINE, f)
        .await
        .expect("test ran past its deadline")
}

/// Polls `check` every 10 ms until it holds.
async fn until(what: &str, check: impl Fn() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < TEST_DEADLINE,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------
// A scripted receiver.

/// What the receiver answers to its n-th request (0-based).
#[derive(Clone, Copy, Debug)]
enum Reply {
    Status(u16),
    /// 429 with `Retry-After: <seconds>`.
    RateLimited(u64),
    /// Accepts the request and never answers.
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Hit {
    at: Instant,
    headers: HeaderMap,
    body: Bytes,
    /// The status it answered (None while hanging).
    status: Option<u16>,
}

impl Hit {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

type Script = Arc<dyn Fn(usize) -> Reply + Send + Sync>;

#[derive(Clone)]
struct Receiver {
    hits: Arc<Mutex<Vec<Hit>>>,
    script: Script,
}

impl Receiver {
    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.hits.lock().unwrap().len()
    }

    /// How many 2xx answers each idempotency key got.
    fn accepted_per_key(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for hit in self.hits() {
            if hit.status.is_some_and(|s| (200..300).contains(&s)) {
                *out.entry(hit.header("idempotency-key").unwrap())
                    .or_default() += 1;
            }
        }
        out
    }
}

async fn handle(State(rx): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    let reply = {
        let mut hits = rx.hits.lock().unwrap();
        let reply = (rx.script)(hits.len());
        hits.push(Hit {
            at: Instant::now(),
            headers,
            body,
            status: match reply {
                Reply::Status(s) => Some(s),
                Reply::RateLimited(_) => Some(429),
                Reply::Hang => None,
            },
        });
        reply
    };
    match reply {
        Reply::Status(s) => StatusCode::from_u16(s).unwrap().into_response(),
        Reply::RateLimited(seconds) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", seconds.to_string())],
        )
            .into_response(),
        Reply::Hang => std::future::pending::<Response>().await,
    }
}

/// Starts a receiver on `listener` following `script`.
fn serve_on(
    listener: tokio::net::TcpListener,
    script: impl Fn(usize) -> Reply + Send + Sync + 'static,
) -> Receiver {
    let rx = Receiver {
        hits: Arc::default(),
        script: Arc::new(script),
    };
    let app = axum::Router::new().fallback(handle).with_state(rx.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    rx
}

/// Starts a receiver on a free loopback port.
async fn serve(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> (SocketAddr, Receiver) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, serve_on(listener, script))
}

fn receiver(name: &str, addr: SocketAddr) -> WebhookReceiver {
    WebhookReceiver {
        name: name.into(),
        url: url::Url::parse(&format!("http://{addr}/hook")).unwrap(),
        preset: Preset::Generic,
        headers: vec![("Authorization".into(), "Bearer t0ken-value".into())],
        hmac_secret: None,
        timeout: Duration::from_secs(2),
    }
}

/// Small backoffs so retries happen within a test.
fn fast() -> DispatchOptions {
    DispatchOptions {
        base: Duration::from_millis(20),
        cap: Duration::from_millis(100),
        ..DispatchOptions::default()
    }
}

fn open(dir: &Path) -> Arc<Outbox> {
    Arc::new(Outbox::open(&dir.join("outbox.db")).unwrap())
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A fixed notification.
fn notification(probe: &str, notice: Notice) -> Notification {
    let resolved = notice == Notice::Resolve;
    Notification {
        fingerprint: fingerprint(probe, "prod", AlertKind::Failing),
        notice,
        kind: AlertKind::Failing,
        probe: probe.into(),
        environment: "prod".into(),
        severity: Severity::Critical,
        labels: BTreeMap::from([
            ("team".into(), "orders".into()),
            ("app.kubernetes.io/name".into(), "orders".into()),
        ]),
        tags: vec!["api".into(), "edge".into()],
        starts_at: at("2025-03-04T05:06:07.123Z"),
        ends_at: resolved.then(|| at("2025-03-04T05:16:07Z")),
        expires_at: None,
        at: if resolved {
            at("2025-03-04T05:16:07Z")
        } else {
            at("2025-03-04T05:06:07.123Z")
        },
        sequence: if resolved { 3 } else { 0 },
        summary: if resolved {
            format!("{probe} @ prod recovered")
        } else {
            format!("{probe} @ prod failing: 3 of 3 runs failed (assertion)")
        },
        reason: (!resolved).then(|| "assertion".to_owned()),
        error: None,
        failed_checks: if resolved {
            vec![]
        } else {
            vec![FailedCheck {
                expression: "status == 201".into(),
                actual: "status = 500".into(),
                location: Some("probes/orders.toml:9:3".into()),
            }]
        },
        thresholds: vec![ThresholdBreach {
            threshold: "p(99) < 500ms".into(),
            state: "failing".into(),
            observed: if resolved { None } else { Some(812.5) },
            unit: "ms".into(),
            window_seconds: 300.0,
        }],
        run_id: "01JNKQ3M4Z8T5V6W7X8Y9Z0ABC".into(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        artifact_url: None,
    }
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Checks a hit's signature the way a receiver would: HMAC-SHA256 of the
/// raw body under the shared secret.
fn signature_verifies(hit: &Hit, secret: &str) -> bool {
    let Some(header) = hit.header("x-synthmon-signature") else {
        return false;
    };
    let Some(hex) = header.strip_prefix("sha256=") else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&hit.body);
    mac.verify_slice(&hex_decode(hex)).is_ok()
}

// ---------------------------------------------------------------------------
// Delivery.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_is_retried_while_a_healthy_one_gets_it_on_time() {
    bounded(async {
        let (flaky_addr, flaky) = serve(|n| Reply::Status(if n < 3 { 500 } else { 200 })).await;
        let (healthy_addr, healthy) = serve(|_| Reply::Status(204)).await;
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path());
        let mut flaky_receiver = receiver("flaky", flaky_addr);
        flaky_receiver.hmac_secret = Some("shared-s3cret".into());
        let dispatcher = Dispatcher::start_with(
            Arc::clone(&outbox),
            vec![flaky_receiver, receiver("healthy", healthy_addr)],
            CancellationToken::new(),
            fast(),
        )
        .unwrap();

        let batch = vec![notification("orders-api", Notice::Trigger)];
        let key = idempotency_key(&batch);
        let enqueued = Instant::now();
        dispatcher
            .enqueue(vec!["flaky".into(), "healthy".into()], batch)
            .await
            .unwrap();

        until("the flaky receiver's delivery is marked delivered", || {
            outbox
                .status("flaky", &key)
                .unwrap()
                .is_some_and(|s| s.state == DeliveryState::Delivered)
        })
        .await;

        // The healthy receiver did not wait for the failing one.
        let healthy_hits = healthy.hits();
        assert_eq!(healthy_hits.len(), 1);
        let lag = healthy_hits[0].at - enqueued;
        assert!(
            lag < Duration::from_millis(300),
            "healthy receiver got it after {lag:?}"
        );

        // Four attempts, one success, one key, each signed.
        let hits = flaky.hits();
        assert_eq!(hits.len(), 4, "{hits:#?}");
        for hit in &hits {
            assert_eq!(hit.header("idempotency-key").as_deref(), Some(key.as_str()));
            assert!(signature_verifies(hit, "shared-s3cret"), "bad signature");
            assert!(!signature_verifies(hit, "wrong-secret"));
            assert!(hit.header("x-synthmon-timestamp").is_some());
            assert_eq!(
                hit.header("authorization").as_deref(),
                Some("Bearer t0ken-value")
            );
            assert_eq!(
                hit.header("content-type").as_deref(),
                Some("application/json")
            );
        }
        assert_eq!(flaky.accepted_per_key(), BTreeMap::from([(key.clone(), 1)]));
        assert_eq!(
            healthy.accepted_per_key(),
            BTreeMap::from([(key.clone(), 1)])
        );
        // Unsigned receivers get no signature.
        assert!(healthy_hits[0].header("x-synthmon-signature").is_none());

        let status = outbox.status("flaky", &key).unwrap().unwrap();
        assert_eq!(status.attempts, 4);
        assert_eq!(
            status.last_error.as_deref(),
            Some("HTTP 500 Internal Server Error")
        );
        let stats = dispatcher.stats();
        let f = stats.receivers["flaky"];
        assert_eq!(
            (f.delivered, f.retried, f.dead, f.failed_attempts),
            (1, 3, 0, 3)
        );
        let h = stats.receivers["healthy"];
        assert_eq!((h.delivered, h.retried, h.failed_attempts), (1, 0, 0));
        assert!(outbox.depth().unwrap().is_empty());
        dispatcher.shutdown(Duration::from_secs(1)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    bounded(async {
        let (addr, rx) = serve(|n| {
            if n == 0 {
                Reply::RateLimited(1)
            } else {
                Reply::Status(200)
            }
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path());
        let dispatcher = Dispatcher::start_with(
            Arc::clone(&outbox),
            vec![receiver("limited", addr)],
            CancellationToken::new(),
            fast(),
        )
        .unwrap();
        dispatcher
            .enqueue(
                vec!["limited".into()],
                vec![notification("api", Notice::Trigger)],
            )
            .await
            .unwrap();
        until("the retry arrives", || rx.count() >= 2).await;
        let hits = rx.hits();
        let gap = hits[1].at - hits[0].at;
        assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
        assert!(gap < Duration::from_secs(3), "retried only after {gap:?}");
        dispatcher.shutdown(Duration::from_secs(1)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_error_is_a_dead_letter_after_one_attempt() {
    bounded(async {
        let (addr, rx) = serve(|_| Reply::Status(400)).await;
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path());
        let dispatcher = Dispatcher::start_with(
            Arc::clone(&outbox),
            vec![receiver("strict", addr)],
            CancellationToken::new(),
            fast(),
        )
        .unwrap();
        let batch = vec![notification("api", Notice::Trigger)];
        let key = idempotency_key(&batch);
        dispatcher
            .enqueue(vec!["strict".into()], batch)
            .await
            .unwrap();
        until("the delivery is dead", || {
            outbox
                .status("strict", &key)
                .unwrap()
                .is_some_and(|s| s.state == DeliveryState::Dead)
        })
        .await;
        // Many backoff periods later, still one attempt.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(rx.count(), 1);
        assert_eq!(outbox.dead_letters("strict").unwrap(), 1);
        let status = outbox.status("strict", &key).unwrap().unwrap();
        assert_eq!(status.attempts, 1);
        assert_eq!(status.last_error.as_deref(), Some("HTTP 400 Bad Request"));
        let s = dispatcher.stats().receivers["strict"];
        assert_eq!(
            (s.delivered, s.retried, s.dead, s.failed_attempts),
            (0, 0, 1, 1)
        );
        assert!(outbox.depth().unwrap().is_empty());
        dispatcher.shutdown(Duration::from_secs(1)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_times_out_and_delays_no_other() {
    bounded(async {
        let (hang_addr, hanging) = serve(|_| Reply::Hang).await;
        let (ok_addr, healthy) = serve(|_| Reply::Status(200)).await;
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path());
        let mut slow = receiver("hanging", hang_addr);
        slow.timeout = Duration::from_millis(300);
        let dispatcher = Dispatcher::start_with(
            Arc::clone(&outbox),
            vec![slow, receiver("healthy", ok_addr)],
            CancellationToken::new(),
            fast(),
        )
        .unwrap();
        let receivers = || vec!["hanging".to_owned(), "healthy".to_owned()];

        let first = vec![notification("a", Notice::Trigger)];
        let key = idempotency_key(&first);
        let t0 = Instant::now();
        dispatcher.enqueue(receivers(), first).await.unwrap();
        until("the healthy receiver has the first", || {
            healthy.count() == 1
        })
        .await;
        assert!(healthy.hits()[0].at - t0 < Duration::from_millis(300));

        // While the hanging receiver's attempt is in flight, more arrives.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t1 = Instant::now();
        dispatcher
            .enqueue(receivers(), vec![notification("b", Notice::Trigger)])
            .await
            .unwrap();
        until("the healthy receiver has the second", || {
            healthy.count() == 2
        })
        .await;
        assert!(healthy.hits()[1].at - t1 < Duration::from_millis(300));

        until("the hanging receiver was retried", || hanging.count() >= 2).await;
        let hits = hanging.hits();
        let gap = hits[1].at - hits[0].at;
        assert!(
            gap >= Duration::from_millis(300),
            "retried after {gap:?}: before the timeout"
        );
        let status = outbox.status("hanging", &key).unwrap().unwrap();
        assert_eq!(status.state, DeliveryState::Pending);
        assert!(status.attempts >= 1);
        assert_eq!(
            status.last_error.as_deref(),
            Some("no response within 300ms")
        );
        // The second waits behind the first: order is kept per receiver.
        assert!(
            hits.iter()
                .all(|h| h.header("idempotency-key").as_deref() == Some(key.as_str()))
        );
        assert_eq!(healthy.count(), 2, "the healthy receiver got no re-send");
        let depth = outbox.depth().unwrap();
        assert_eq!(depth.len(), 1);
        assert_eq!((depth[0].0.as_str(), depth[0].1), ("hanging", 2));

        // Shutdown abandons the hanging attempt within its deadline.
        let stopping = Instant::now();
        dispatcher.shutdown(Duration::from_millis(50)).await;
        assert!(stopping.elapsed() < Duration::from_millis(250));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_deliveries_survive_a_restart_and_go_out_once() {
    bounded(async {
        // A port with nothing listening: the receiver is down.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let batch = vec![
            notification("orders-api", Notice::Resolve),
            notification("cart-api", Notice::Trigger),
        ];
        let key = idempotency_key(&batch);
        {
            let outbox = open(dir.path());
            let dispatcher = Dispatcher::start_with(
                Arc::clone(&outbox),
                vec![receiver("down", addr)],
                CancellationToken::new(),
                fast(),
            )
            .unwrap();
            dispatcher
                .enqueue(vec!["down".into()], batch.clone())
                .await
                .unwrap();
            until("a failed attempt is recorded", || {
                outbox
                    .status("down", &key)
                    .unwrap()
                    .is_some_and(|s| s.attempts >= 1)
            })
            .await;
            assert!(dispatcher.stats().receivers["down"].failed_attempts >= 1);
            // The error is stored, without the URL (which may be a secret).
            let error = outbox
                .status("down", &key)
                .unwrap()
                .unwrap()
                .last_error
                .unwrap();
            assert!(
                !error.contains("/hook") && !error.contains("http:"),
                "{error}"
            );
            // The "crash": everything in memory goes.
            drop(dispatcher);
            drop(outbox);
        }

        // The receiver comes back; so does synthmon.
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let rx = serve_on(listener, |_| Reply::Status(202));
        for _restart in 0..2 {
            let outbox = open(dir.path());
            // The engine replays what it had sent: stored once all the same.
            outbox
                .enqueue(&["down".into()], &batch, Utc::now())
                .unwrap();
            let dispatcher = Dispatcher::start_with(
                Arc::clone(&outbox),
                vec![receiver("down", addr)],
                CancellationToken::new(),
                fast(),
            )
            .unwrap();
            until("the delivery is delivered", || {
                outbox
                    .status("down", &key)
                    .unwrap()
                    .is_some_and(|s| s.state == DeliveryState::Delivered)
            })
            .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            dispatcher.shutdown(Duration::from_secs(1)).await;
        }
        assert_eq!(rx.count(), 1, "delivered once across two restarts");
        assert_eq!(rx.accepted_per_key(), BTreeMap::from([(key, 1)]));
        let body: Value = serde_json::from_slice(&rx.hits()[0].body).unwrap();
        assert_eq!(body["alerts"].as_array().unwrap().len(), 2);
        assert_eq!(body["status"], "firing");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_gets_one_request_per_notification_and_resumes_after_the_accepted_ones() {
    bounded(async {
        // The first event is accepted; the second fails once.
        let (addr, rx) = serve(|n| Reply::Status(if n == 1 { 503 } else { 202 })).await;
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path());
        let mut pd = receiver("pagerduty", addr);
        pd.preset = Preset::PagerDuty {
            routing_key: "R0UTING-KEY".into(),
        };
        let dispatcher = Dispatcher::start_with(
            Arc::clone(&outbox),
            vec![pd],
            CancellationToken::new(),
            fast(),
        )
        .unwrap();
        let batch = vec![
            notification("orders-api", Notice::Trigger),
            notification("cart-api", Notice::Resolve),
        ];
        let key = idempotency_key(&batch);
        dispatcher
            .enqueue(vec!["pagerduty".into()], batch.clone())
            .await
            .unwrap();
        until("the delivery is delivered", || {
            outbox
                .status("pagerduty", &key)
                .unwrap()
                .is_some_and(|s| s.state == DeliveryState::Delivered)
        })
        .await;
        let hits = rx.hits();
        let keys: Vec<_> = hits
            .iter()
            .map(|h| h.header("idempotency-key").unwrap())
            .collect();
        let (first, second) = (batch[0].idempotency_key(), batch[1].idempotency_key());
        assert_eq!(keys, [first.clone(), second.clone(), second.clone()]);
        assert_eq!(
            rx.accepted_per_key(),
            BTreeMap::from([(first, 1), (second, 1)])
        );
        let actions: Vec<_> = hits
            .iter()
            .map(|h| serde_json::from_slice::<Value>(&h.body).unwrap()["event_action"].clone())
            .collect();
        assert_eq!(actions, ["trigger", "resolve", "resolve"]);
        dispatcher.shutdown(Duration::from_secs(1)).await;
    })
    .await;
}

// ---------------------------------------------------------------------------
// The outbox alone.

#[test]
fn enqueue_is_idempotent_per_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(dir.path());
    let now = at("2025-03-04T05:06:07Z");
    let receivers = ["a".to_owned(), "b".to_owned()];
    let a = notification("one", Notice::Trigger);
    let b = notification("two", Notice::Trigger);
    outbox
        .enqueue(&receivers, std::slice::from_ref(&a), now)
        .unwrap();
    outbox
        .enqueue(&receivers, std::slice::from_ref(&a), now)
        .unwrap();
    // A group is the same group whatever its order.
    outbox
        .enqueue(&receivers, &[a.clone(), b.clone()], now)
        .unwrap();
    outbox.enqueue(&receivers, &[b, a], now).unwrap();
    let depth = outbox.depth().unwrap();
    assert_eq!(
        depth,
        vec![
            ("a".to_owned(), 2, Some(now)),
            ("b".to_owned(), 2, Some(now))
        ]
    );
    let due = outbox.due("a", now, 10).unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!(due[0].batch.len(), 1);
    assert_eq!(due[1].batch.len(), 2);
    assert_eq!(due[0].created_at, now);
    assert_eq!(due[0].attempts, 0);
}

#[test]
fn pruning_keeps_pending_rows() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(dir.path());
    let t0 = at("2025-03-04T00:00:00Z");
    let r = ["r".to_owned()];
    for probe in ["delivered", "dead", "pending", "retrying"] {
        outbox
            .enqueue(&r, &[notification(probe, Notice::Trigger)], t0)
            .unwrap();
    }
    let due = outbox.due("r", t0, 10).unwrap();
    assert_eq!(due.len(), 4);
    outbox.mark_delivered(due[0].id, t0).unwrap();
    outbox
        .mark_dead(due[1].id, "HTTP 400 Bad Request", t0)
        .unwrap();
    outbox
        .mark_retry(due[3].id, 5, t0 + chrono::Duration::days(30), "HTTP 503")
        .unwrap();
    // Nothing finished before t0.
    assert_eq!(outbox.prune(t0).unwrap(), 0);
    let day = t0 + chrono::Duration::days(1);
    assert_eq!(outbox.prune(day).unwrap(), 2);
    assert_eq!(outbox.prune(day).unwrap(), 0);
    assert_eq!(outbox.dead_letters("r").unwrap(), 0);
    assert_eq!(outbox.depth().unwrap(), vec![("r".to_owned(), 2, Some(t0))]);
    // Pruned rows are gone; pending ones are intact and still ordered.
    let left = outbox
        .due("r", t0 + chrono::Duration::days(31), 10)
        .unwrap();
    assert_eq!(
        left.iter()
            .map(|d| d.batch[0].probe.as_str())
            .collect::<Vec<_>>(),
        ["pending", "retrying"]
    );
    assert_eq!(left[1].attempts, 5);
    assert!(
        outbox
            .status("r", &due[0].idempotency_key)
            .unwrap()
            .is_none()
    );
}

#[test]
fn state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path())
        .save_state("alerts", r#"{"pairs":[]}"#)
        .unwrap();
    assert_eq!(
        open(dir.path()).load_state("alerts").unwrap().as_deref(),
        Some(r#"{"pairs":[]}"#)
    );
    assert_eq!(open(dir.path()).load_state("other").unwrap(), None);
}

// ---------------------------------------------------------------------------
// Payloads.

fn preset_receiver(preset: Preset) -> WebhookReceiver {
    WebhookReceiver {
        name: "ops".into(),
        url: url::Url::parse("https://hooks.example/").unwrap(),
        preset,
        headers: vec![],
        hmac_secret: None,
        timeout: Duration::from_secs(5),
    }
}

fn golden_batch() -> Vec<Notification> {
    vec![
        notification("orders-api", Notice::Trigger),
        notification("cart-api", Notice::Resolve),
    ]
}

fn payload(preset: Preset, batch: &[Notification]) -> Value {
    let (content_type, bytes) = webhook::body(&preset_receiver(preset), batch).unwrap();
    assert_eq!(content_type, "application/json");
    serde_json::from_slice(&bytes).unwrap()
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap() + "\n"
}

#[test]
fn payloads_match_their_golden_files() {
    let batch = golden_batch();
    common::golden(
        "webhook_generic.json",
        &pretty(&payload(Preset::Generic, &batch)),
    );
    common::golden(
        "webhook_slack.json",
        &pretty(&payload(Preset::Slack, &batch)),
    );
    common::golden(
        "webhook_alertmanager.json",
        &pretty(&payload(Preset::Alertmanager, &batch)),
    );
    let pd = Preset::PagerDuty {
        routing_key: "R0UTING-KEY-EXAMPLE".into(),
    };
    // PagerDuty takes one event per request: the golden file lists both.
    let events: Vec<Value> = batch
        .iter()
        .map(|n| payload(pd.clone(), std::slice::from_ref(n)))
        .collect();
    common::golden("webhook_pagerduty.json", &pretty(&Value::Array(events)));
}

/// Fails with `message` unless `condition` holds.
fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if condition { Ok(()) } else { Err(message()) }
}

/// A validator for the subset of JSON Schema 2020-12 the v1 schema uses.
/// It panics on any keyword it does not know (a schema problem, not a
/// payload problem), so it cannot silently skip a constraint; a payload
/// that breaks the schema is an `Err`.
fn validate(root: &Value, schema: &Value, value: &Value, path: &str) -> Result<(), String> {
    let schema = schema
        .as_object()
        .unwrap_or_else(|| panic!("schema at {path} is not an object"));
    for (keyword, rule) in schema {
        match keyword.as_str() {
            "$schema" | "$id" | "$defs" | "title" | "description" | "minimum" => {}
            "format" => {
                assert_eq!(rule, "date-time", "the validator knows one format");
                let s = value.as_str().unwrap_or_default();
                ensure(DateTime::parse_from_rfc3339(s).is_ok(), || {
                    format!("{path}: {value} is not an RFC 3339 date-time")
                })?;
            }
            "$ref" => {
                let name = rule.as_str().unwrap().strip_prefix("#/$defs/").unwrap();
                validate(root, &root["$defs"][name], value, path)?;
            }
            "type" => {
                let types: Vec<&str> = match rule {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
                    _ => panic!("bad type rule at {path}"),
                };
                let ok = types.iter().any(|t| match *t {
                    "object" => value.is_object(),
                    "array" => value.is_array(),
                    "string" => value.is_string(),
                    "number" => value.is_number(),
                    "integer" => value.is_u64() || value.is_i64(),
                    "null" => value.is_null(),
                    "boolean" => value.is_boolean(),
                    other => panic!("unknown type {other}"),
                });
                ensure(ok, || format!("{path}: {value} is not of type {rule}"))?;
            }
            "const" => ensure(value == rule, || format!("{path}: {value} is not {rule}"))?,
            "enum" => ensure(rule.as_array().unwrap().contains(value), || {
                format!("{path}: {value} is not one of {rule}")
            })?,
            "pattern" => {
                assert_eq!(rule, "^[0-9a-f]{16}$", "the validator knows one pattern");
                let s = value.as_str().unwrap_or_default();
                ensure(
                    s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                    || format!("{path}: {value} is not 16 hex digits"),
                )?;
            }
            "minItems" => ensure(
                value.as_array().map_or(0, Vec::len) as u64 >= rule.as_u64().unwrap(),
                || format!("{path}: fewer than {rule} items"),
            )?,
            "required" => {
                for name in rule.as_array().unwrap() {
                    let name = name.as_str().unwrap();
                    ensure(value.get(name).is_some(), || {
                        format!("{path}: missing {name}")
                    })?;
                }
            }
            "properties" => {
                for (name, sub) in rule.as_object().unwrap() {
                    if let Some(v) = value.get(name) {
                        validate(root, sub, v, &format!("{path}.{name}"))?;
                    }
                }
            }
            "additionalProperties" => {
                let known = schema.get("properties").and_then(Value::as_object);
                for (name, v) in value.as_object().into_iter().flatten() {
                    if known.is_some_and(|k| k.contains_key(name)) {
                        continue;
                    }
                    match rule {
                        Value::Bool(false) => {
                            return Err(format!("{path}: undocumented property {name}"));
                        }
                        sub => validate(root, sub, v, &format!("{path}.{name}"))?,
                    }
                }
            }
            "items" => {
                for (i, v) in value.as_array().into_iter().flatten().enumerate() {
                    validate(root, rule, v, &format!("{path}[{i}]"))?;
                }
            }
            "oneOf" => {
                let matching = rule
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|sub| validate(root, sub, value, path).is_ok())
                    .count();
                ensure(matching == 1, || {
                    format!("{path}: {value} matches {matching} of oneOf")
                })?;
            }
            other => panic!("the test validator does not know the keyword {other}"),
        }
    }
    Ok(())
}

/// Every object schema lists all its properties as required, so a
/// payload that validates carries every documented field.
fn assert_all_required(schema: &Value, path: &str) {
    match schema {
        Value::Object(map) => {
            if let Some(props) = map.get("properties").and_then(Value::as_object) {
                let mut listed: Vec<&str> = props.keys().map(String::as_str).collect();
                let mut required: Vec<&str> = map["required"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap())
                    .collect();
                listed.sort_unstable();
                required.sort_unstable();
                assert_eq!(listed, required, "{path}: documented but not required");
            }
            for (k, v) in map {
                assert_all_required(v, &format!("{path}/{k}"));
            }
        }
        Value::Array(items) => {
            for v in items {
                assert_all_required(v, path);
            }
        }
        _ => {}
    }
}

#[test]
fn the_generic_payload_follows_its_schema() {
    let path = common::repo().join("docs/webhook-v1.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_all_required(&schema, "#");
    let mut errored = notification("dns-check", Notice::Repeat);
    errored.error = Some("dns: no such host".into());
    errored.failed_checks.clear();
    errored.thresholds.clear();
    errored.ends_at = None;
    for batch in [
        golden_batch(),
        vec![notification("cart-api", Notice::Resolve)],
        vec![errored],
    ] {
        let v = payload(Preset::Generic, &batch);
        if let Err(e) = validate(&schema, &schema, &v, "$") {
            panic!("{e}\n{}", pretty(&v));
        }
    }
    // The validator does catch a wrong payload.
    let mut wrong = payload(Preset::Generic, &golden_batch());
    wrong["alerts"][0]["severity"] = "urgent".into();
    assert_eq!(
        validate(&schema, &schema, &wrong, "$"),
        Err(r#"$.alerts[0].severity: "urgent" is not one of ["info","warning","critical"]"#.into())
    );
    let mut extra = payload(Preset::Generic, &golden_batch());
    extra["alerts"][0]["undocumented"] = 1.into();
    assert_eq!(
        validate(&schema, &schema, &extra, "$"),
        Err("$.alerts[0]: undocumented property undocumented".into())
    );
    let mut no_time = payload(Preset::Generic, &golden_batch());
    no_time["alerts"][1]["ends_at"] = "yesterday".into();
    assert!(validate(&schema, &schema, &no_time, "$").is_err());
}
