//! Tests that start a real sandbox on a loopback port and talk to it over a
//! socket with hyper's client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::{Sandbox, SandboxOptions};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The longest any one test may run.
const TEST_LIMIT: Duration = Duration::from_secs(10);

/// Runs a test body, failing it if it takes longer than [`TEST_LIMIT`].
async fn bounded<F: Future>(test: F) -> F::Output {
    timeout(TEST_LIMIT, test).await.expect("test timed out")
}

pub(super) async fn start(opts: SandboxOptions) -> Sandbox {
    Sandbox::start("127.0.0.1:0".parse().unwrap(), opts)
        .await
        .unwrap()
}

/// Sends one request on a fresh connection and returns the response head,
/// with the body still to be read.
async fn open(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> hyper::Response<Incoming> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    sender.send_request(request).await.unwrap()
}

/// A complete response.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

impl Reply {
    pub(super) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub(super) fn header(&self, name: &str) -> &str {
        self.headers.get(name).unwrap().to_str().unwrap()
    }
}

/// Sends one request and reads the whole response.
async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let (parts, body) = open(addr, method, path, headers, body).await.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(addr, Method::GET, path, &[], "").await
}

#[tokio::test]
async fn order_lifecycle() {
    bounded(async {
        let opts = SandboxOptions {
            process_delay: Duration::from_millis(100),
            ..SandboxOptions::default()
        };
        let sandbox = start(opts).await;
        let addr = sandbox.addr();
        let body = r#"{"item":"widget","quantity":3,"customer":"ada"}"#;
        let created = send(addr, Method::POST, "/api/orders", &[], body).await;
        assert_eq!(created.status, StatusCode::CREATED);
        let order = created.json();
        let id = order["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("ord_"));
        assert_eq!(created.header("location"), format!("/api/orders/{id}"));
        assert_eq!(order["status"], "pending");
        assert_eq!(order["quantity"], 3);
        assert_eq!(order["customer"], "ada");

        let path = format!("/api/orders/{id}");
        assert_eq!(get(addr, &path).await.json()["status"], "pending");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let fetched = get(addr, &path).await;
        assert_eq!(fetched.status, StatusCode::OK);
        assert_eq!(fetched.json()["status"], "processed");

        let listed = get(addr, "/api/orders").await.json();
        assert_eq!(listed["count"], 1);
        assert_eq!(listed["orders"][0]["id"], id.as_str());

        let deleted = send(addr, Method::DELETE, &path, &[], "").await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        let gone = get(addr, &path).await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND);
        assert_eq!(gone.json(), json!({ "error": "order not found" }));
        let again = send(addr, Method::DELETE, &path, &[], "").await;
        assert_eq!(again.status, StatusCode::NOT_FOUND);
        sandbox.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn order_validation_names_the_field() {
    bounded(async {
        let sandbox = start(SandboxOptions::default()).await;
        let cases = [
            (r#"{"quantity":1}"#, "item"),
            (r#"{"item":"  ","quantity":1}"#, "item"),
            (r#"{"item":"x","quantity":0}"#, "quantity"),
            (r#"{"item":"x","quantity":"3"}"#, "quantity"),
            (r#"{"item":"x","quantity":1,"colour":"red"}"#, "colour"),
            ("[1", "body"),
        ];
        for (body, field) in cases {
            let reply = send(sandbox.addr(), Method::POST, "/api/orders", &[], body).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
            let error = reply.json();
            assert_eq!(error["field"], field, "{body}: {error}");
            assert!(
                error["error"].as_str().unwrap().contains(field),
                "{body}: {error}"
            );
        }
        assert_eq!(get(sandbox.addr(), "/api/orders").await.json()["count"], 0);
        sandbox.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn order_store_is_bounded() {
    bounded(async {
        let opts = SandboxOptions {
            max_orders: 1,
            ..SandboxOptions::default()
        };
        let sandbox = start(opts).await;
        let body = r#"{"item":"x","quantity":1}"#;
        let first = send(sandbox.addr(), Method::POST, "/api/orders", &[], body).await;
        assert_eq!(first.status, StatusCode::CREATED);
        let second = send(sandbox.addr(), Method::POST, "/api/orders", &[], body).await;
        assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE);
        sandbox.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn fixed_routes_answer_and_are_tagged() {
    bounded(async {
        let sandbox = start(SandboxOptions::default()).await;
        let addr = sandbox.addr();
        assert_eq!(
            sandbox.base_url(),
            format!("http://127.0.0.1:{}", addr.port())
        );

        let health = get(addr, "/health").await;
        assert_eq!(health.json(), json!({ "status": "ok" }));
        assert_eq!(health.header("x-sandbox"), "synthmon");

        let document = get(addr, "/json").await.json();
        assert_eq!(document["service"]["name"], "sandbox-orders");
        assert_eq!(document["items"].as_array().unwrap().len(), 3);
        assert_eq!(document["healthy"], true);
        assert!(document["region"].is_null());

        let missing = get(addr, "/no/such/route").await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(missing.header("x-sandbox"), "synthmon");
        sandbox.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn status_route_answers_the_asked_code() {
    bounded(async {
        let sandbox = start(SandboxOptions::default()).await;
        let addr = sandbox.addr();
        let reply = get(addr, "/status/503").await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(reply.json(), json!({ "status": 503 }));
        let posted = send(addr, Method::POST, "/status/201", &[], "").await;
        assert_eq!(posted.status, StatusCode::CREATED);
        let empty = get(addr, "/status/204").await;
        assert_eq!(empty.status, StatusCode::NO_CONTENT);
        assert!(empty.body.is_empty());
        for bad in ["/status/600", "/status/100", "/status/abc"] {
            let reply = get(addr, bad).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(reply.json()["field"], "code");
        }
        sandbox.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn headers_are_echoed() {
    bounded(async {
        let sandbox = start(SandboxOptions::default()).await;
        let headers = [("X-Synthetic", "true"), ("x-multi", "a"), ("x-multi", "b")];
        let echo = send(sandbox.addr(), Method::GET, "/headers", &headers, "")
            .await
            .json();
        assert_eq!(echo["x-synthetic"], "true");
        assert_eq!(echo["x-multi"], "a, b");
        assert!(echo["host"].is_string());
        sandbox.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn redirects_count_down_to_200() {
    bounded(async {
        let sandbox = start(SandboxOptions::default()).await;
        let mut path = "/redirect/2".to_owned();
        for expected in ["/redirect/1", "/redirect/0"] {
            let reply = get(sandbox.addr(), &path).await;
            assert_eq!(reply.status, StatusCode::FOUND);
            assert_eq!(reply.header("location"), expected);
            path = expected.to_owned();
        }
        let last = get(sandbox.addr(), &path).await;
        assert_eq!(last.status, StatusCode::OK);
        assert_eq!(last.json(), json!({ "redirected": true }));

        let looped = get(sandbox.addr(), "/redirect-loop").await;
        assert_eq!(looped.header("location"), "/redirect-loop");
        let away = get(
            sandbox.addr(),
            "/redirect-to?url=https%3A%2F%2Fexample.com%2Fa%3Fb%3D1",
        )
        .await;
        assert_eq!(away.status, StatusCode::FOUND);
        assert_eq!(away.header("location"), "https://example.com/a?b=1");
        let relative = get(sandbox.addr(), "/redirect-to?url=/relative").await;
        assert_eq!(relative.json()["field"], "url");
        sandbox.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn bytes_have_the_asked_length() {
    bounded(async {
        let sandbox = start(SandboxOptions::default()).await;
        let reply = get(sandbox.addr(), "/bytes/100000").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("content-length"), "100000");
        assert_eq!(reply.body.len(), 100_000);
        assert!(get(sandbox.addr(), "/bytes/0").await.body.is_empty());
        sandbox.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn gzip_decodes_to_the_asked_length() {
    bounded(async {
        let sandbox = start(SandboxOptions::default()).await;
        let n = 3 * 1024 * 1024 + 17;
        let reply = get(sandbox.addr(), &format!("/gzip/{n}")).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("content-encoding"), "gzip");
        assert!(
            reply.body.len() < n / 100,
            "compressed to {}",
            reply.body.len()
        );
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&reply.body[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded.len(), n);
        assert!(decoded.iter().all(|byte| *byte == b'a'));
        sandbox.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn stall_sends_headers_then_stalls() {
    bounded(async {
        let sandbox = start(SandboxOptions::default()).await;
        let response = open(sandbox.addr(), Method::GET, "/stall", &[], "").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_LENGTH], "1000");
        let mut body = response.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first.len(), 10);
        let rest = timeout(Duration::from_millis(500), body.frame()).await;
        assert!(rest.is_err(), "the stalled body went on");
        sandbox.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_is_not_held_up_by_a_stalled_client() {
    bounded(async {
        let sandbox = start(SandboxOptions::default()).await;
        let response = open(sandbox.addr(), Method::GET, "/stall", &[], "").await;
        let delayed = tokio::spawn(get(sandbox.addr(), "/delay/60000"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        sandbox.shutdown().await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "shutdown took {:?}",
            started.elapsed()
        );
        assert!(response.into_body().collect().await.is_err());
        assert_eq!(
            delayed.await.unwrap().status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    })
    .await;
}

#[tokio::test]
async fn drip_and_delay_take_their_time() {
    bounded(async {
        let sandbox = start(SandboxOptions::default()).await;
        let started = Instant::now();
        let dripped = get(sandbox.addr(), "/drip?bytes=3&interval_ms=20").await;
        assert_eq!(dripped.body.len(), 3);
        assert!(started.elapsed() >= Duration::from_millis(40));

        let started = Instant::now();
        let delayed = get(sandbox.addr(), "/delay/30").await;
        assert_eq!(delayed.json(), json!({ "delayed_ms": 30 }));
        assert!(started.elapsed() >= Duration::from_millis(30));
        // Shorter than the part a blocking thread sleeps: no coarse sleep.
        let started = Instant::now();
        let delayed = get(sandbox.addr(), "/delay/2").await;
        assert_eq!(delayed.json(), json!({ "delayed_ms": 2 }));
        assert!(started.elapsed() >= Duration::from_millis(2));
        assert_eq!(
            get(sandbox.addr(), "/delay/soon").await.json()["field"],
            "ms"
        );
        sandbox.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn latency_samples_and_injects_errors() {
    bounded(async {
        let sandbox = start(SandboxOptions::default()).await;
        let addr = sandbox.addr();
        let ok = get(addr, "/latency?dist=fixed&ms=5").await;
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(ok.json(), json!({ "latency_ms": 5.0 }));

        let failed = get(addr, "/latency?dist=fixed&ms=5&error_rate=1.0").await;
        assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(failed.json(), json!({ "error": "injected" }));

        let sampled = get(addr, "/latency?dist=uniform&min_ms=1&max_ms=3")
            .await
            .json();
        let ms = sampled["latency_ms"].as_f64().unwrap();
        assert!((1.0..=3.0).contains(&ms), "{ms}");
        for path in [
            "/latency?dist=normal&mean_ms=2&stddev_ms=1",
            "/latency?dist=lognormal&median_ms=2&sigma=0.5",
        ] {
            assert_eq!(get(addr, path).await.status, StatusCode::OK, "{path}");
        }

        let bad = [
            ("/latency?dist=fixed", "ms"),
            ("/latency?dist=bogus", "dist"),
            ("/latency?dist=normal&mean_ms=5", "stddev_ms"),
            ("/latency?dist=uniform&min_ms=5&max_ms=1", "max_ms"),
            ("/latency?ms=5&error_rate=2", "error_rate"),
            ("/latency?ms=NaN", "ms"),
        ];
        for (path, field) in bad {
            let reply = get(addr, path).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
            assert_eq!(reply.json()["field"], field, "{path}");
        }
        sandbox.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn fault_rules_hit_then_expire() {
    bounded(async {
        let sandbox = start(SandboxOptions::default()).await;
        let addr = sandbox.addr();
        let rule = r#"{"method":"get","path_prefix":"/api/orders","status":500,"remaining":2}"#;
        let added = send(addr, Method::POST, "/_sandbox/faults", &[], rule).await;
        assert_eq!(added.status, StatusCode::CREATED);
        assert_eq!(added.json()["method"], "GET");

        // Another method does not match, and neither does the fault API itself.
        let posted = send(
            addr,
            Method::POST,
            "/api/orders",
            &[],
            r#"{"item":"x","quantity":1}"#,
        )
        .await;
        assert_eq!(posted.status, StatusCode::CREATED);
        assert_eq!(get(addr, "/_sandbox/faults").await.json()["count"], 1);

        for _ in 0..2 {
            let faulted = get(addr, "/api/orders").await;
            assert_eq!(faulted.status, StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(faulted.json(), json!({ "error": "fault injected" }));
            assert_eq!(faulted.header("x-sandbox"), "synthmon");
        }
        assert_eq!(get(addr, "/api/orders").await.status, StatusCode::OK);
        assert_eq!(get(addr, "/_sandbox/faults").await.json()["count"], 0);

        let forever = r#"{"path_prefix":"/health","status":503}"#;
        send(addr, Method::POST, "/_sandbox/faults", &[], forever).await;
        assert_eq!(
            get(addr, "/health").await.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let cleared = send(addr, Method::DELETE, "/_sandbox/faults", &[], "").await;
        assert_eq!(cleared.json(), json!({ "cleared": 1 }));
        assert_eq!(get(addr, "/health").await.status, StatusCode::OK);

        let invalid = r#"{"path_prefix":"/x","status":500,"remaining":0}"#;
        let rejected = send(addr, Method::POST, "/_sandbox/faults", &[], invalid).await;
        assert_eq!(rejected.json()["field"], "remaining");
        sandbox.shutdown().await;
    })
    .await;
}
