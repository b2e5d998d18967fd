//! The `grpc` and `stream` probes against real servers on 127.0.0.1: the
//! built-in sandbox (its gRPC health server and its SSE/chunked routes),
//! tonic-health (the reference gRPC health implementation, to check both
//! the probe and the sandbox server against it), and tiny raw servers that
//! misbehave on purpose or record what they were sent.

use crate::common;

use common::sandbox;

use common::{config_with_target, load, position_of, run_one, write_config};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use synthmon::outcome::{FailureReason, Outcome};
use synthmon::probe::grpc::GrpcFacts;
use synthmon::probe::stream::StreamFacts;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every test body runs under this bound.
const BOUND: Duration = Duration::from_secs(10);
const MS: Duration = Duration::from_millis(1);

async fn bounded<F: Future>(f: F) -> F::Output {
    common::within(BOUND, f).await
}

/// Runs one probe file (`name = "p"` in environment `target` at
/// `base_url`, with `top` lines and the `body` table) once.
async fn run_probe(base_url: &str, top: &str, body: &str) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let probe = format!("name = \"p\"\nenvironments = [\"target\"]\n{top}\n{body}\n");
    let path = write_config(
        dir.path(),
        &config_with_target(base_url),
        &[("p.toml", &probe)],
    );
    run_one(&load(&path)).await
}

fn grpc_facts(o: &Outcome) -> &GrpcFacts {
    match o.details.as_ref() {
        Some(d) if d.get::<GrpcFacts>().is_some() => d.get::<GrpcFacts>().unwrap(),
        other => panic!("no grpc details: {other:?}"),
    }
}

fn stream_facts(o: &Outcome) -> &StreamFacts {
    match o.details.as_ref() {
        Some(d) if d.get::<StreamFacts>().is_some() => d.get::<StreamFacts>().unwrap(),
        other => panic!("no stream details: {other:?}"),
    }
}

/// The phases are named as documented and add up to the duration.
fn assert_phases(o: &Outcome, names: &[&str]) {
    let got: Vec<&str> = o.phases.iter().map(|p| p.name).collect();
    assert_eq!(got, names, "{o:#?}");
    let sum: Duration = o.phases.iter().map(|p| p.seconds).sum();
    assert!(
        sum <= o.duration,
        "phases {sum:?} > duration {:?}",
        o.duration
    );
    assert!(
        o.duration - sum <= MS,
        "phases {sum:?} vs duration {:?}",
        o.duration
    );
}

fn gauge(gauges: &[(&'static str, f64)], name: &str) -> Option<f64> {
    gauges.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------
// grpc

fn grpc(address: &str, rest: &str) -> String {
    format!("[grpc]\naddress = \"{address}\"\n{rest}")
}

#[tokio::test]
async fn grpc_serving_passes_with_phases_and_gauges() {
    bounded(async {
        let sb = sandbox().await;
        let address = sb.variables()["sandbox_grpc"].clone();
        for service in ["", "orders"] {
            let o = run_probe(
                &sb.base_url(),
                "",
                &grpc(
                    &address,
                    &format!(
                        "service = \"{service}\"\nexpect = [\"status == 'SERVING'\", \"grpc_code == 0\", \"timings.call < duration('1s')\"]"
                    ),
                ),
            )
            .await;
            assert!(o.success, "{o:#?}");
            assert!(o.responded);
            assert_phases(&o, &["resolve", "connect", "tls", "call"]);
            assert_eq!(o.phases[0].seconds, Duration::ZERO, "an IP needs no lookup");
            assert_eq!(o.phases[2].seconds, Duration::ZERO, "no tls");
            let f = grpc_facts(&o);
            assert_eq!(f.status.as_deref(), Some("SERVING"));
            assert_eq!((f.grpc_code, f.http_status), (Some(0), Some(200)));
            assert_eq!(f.address, address);
            let gauges = o.details.as_ref().unwrap().gauges();
            assert_eq!(gauge(&gauges, "probe_grpc_healthcheck_response"), Some(1.0));
            assert_eq!(gauge(&gauges, "probe_grpc_status_code"), Some(0.0));
        }
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn grpc_not_serving_and_unknown_services_are_not_serving() {
    bounded(async {
        let sb = sandbox().await;
        let address = sb.variables()["sandbox_grpc"].clone();

        let o = run_probe(
            &sb.base_url(),
            "",
            &grpc(&address, "service = \"payments\""),
        )
        .await;
        assert_eq!(o.reason, Some(FailureReason::NotServing), "{o:#?}");
        assert_eq!(
            o.error.as_deref(),
            Some(format!("service `payments` on {address} is NOT_SERVING").as_str())
        );
        assert!(o.responded);
        let gauges = o.details.as_ref().unwrap().gauges();
        assert_eq!(gauge(&gauges, "probe_grpc_healthcheck_response"), Some(0.0));

        // The health protocol answers a Check for an unknown service with
        // NOT_FOUND: the probe reports it as SERVICE_UNKNOWN.
        let o = run_probe(&sb.base_url(), "", &grpc(&address, "service = \"nope\"")).await;
        assert_eq!(o.reason, Some(FailureReason::NotServing), "{o:#?}");
        let error = o.error.as_deref().unwrap();
        assert!(
            error.starts_with(&format!("service `nope` on {address} is SERVICE_UNKNOWN")),
            "{error}"
        );
        assert!(error.contains("NOT_FOUND"), "{error}");
        let f = grpc_facts(&o);
        assert_eq!(f.status.as_deref(), Some("SERVICE_UNKNOWN"));
        assert_eq!(f.grpc_code, Some(5));

        // An expectation on `status` replaces the implicit check.
        let o = run_probe(
            &sb.base_url(),
            "",
            &grpc(
                &address,
                "service = \"payments\"\nexpect = [\"status == 'NOT_SERVING'\"]",
            ),
        )
        .await;
        assert!(o.success, "{o:#?}");
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn grpc_through_the_sandbox_environment_template() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let config = "[daemon]\nprobes = [\"probes/*.toml\"]\n\n[environments.sandbox]\nbase_url = \"builtin:sandbox\"\n";
        let probe = "name = \"g\"\nenvironments = [\"sandbox\"]\n[grpc]\naddress = \"http://{{ vars.sandbox_grpc }}\"\nservice = \"orders\"\n";
        let path = write_config(dir.path(), config, &[("g.toml", probe)]);
        let o = run_one(&load(&path)).await;
        assert!(o.success, "{o:#?}");
        assert_eq!(grpc_facts(&o).status.as_deref(), Some("SERVING"));
    })
    .await;
}

/// A raw TCP server on 127.0.0.1 that reads what comes, then writes
/// `reply` (if any) and closes; returns its address.
async fn raw_server(reply: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut preface = [0u8; 24];
                let _ = tcp.read_exact(&mut preface).await;
                let _ = tcp.write_all(reply).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    addr
}

/// An HTTP/2 web server that is not gRPC: 404 `text/html` for anything.
async fn h2_web_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut conn = h2::server::handshake(tcp).await.unwrap();
                while let Some(Ok((_, mut respond))) = conn.accept().await {
                    let response = http::Response::builder()
                        .status(404)
                        .header("content-type", "text/html")
                        .body(())
                        .unwrap();
                    let mut body = respond.send_response(response, false).unwrap();
                    body.send_data(bytes::Bytes::from_static(b"<h1>no</h1>"), true)
                        .unwrap();
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn grpc_against_servers_that_are_not_health_services() {
    bounded(async {
        let nowhere = "http://127.0.0.1:9";

        // An HTTP/1 server answers the HTTP/2 preface in HTTP/1.
        let http1 =
            raw_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
        let o = run_probe(nowhere, "", &grpc(&http1, "")).await;
        assert_eq!(o.reason, Some(FailureReason::Protocol), "{o:#?}");
        assert_eq!(
            o.error.as_deref(),
            Some(
                format!(
                    "{http1} answered in HTTP/1 (`HTTP/1.1 400 Bad Request`), not HTTP/2: it is not a gRPC endpoint"
                )
                .as_str()
            )
        );
        assert!(!o.responded);

        // One that hangs up without a word (as hyper's HTTP/1 server does).
        let mute = raw_server(b"").await;
        let o = run_probe(nowhere, "", &grpc(&mute, "")).await;
        assert_eq!(o.reason, Some(FailureReason::Protocol), "{o:#?}");
        let error = o.error.as_deref().unwrap();
        assert!(
            error.starts_with(&format!("the HTTP/2 exchange with {mute} failed: "))
                && error.ends_with(&format!(
                    "; {mute} sent nothing back: it does not seem to speak HTTP/2 (gRPC)"
                )),
            "{error}"
        );

        // An HTTP/2 web server: its 404 maps to UNIMPLEMENTED.
        let web = h2_web_server().await;
        let o = run_probe(nowhere, "", &grpc(&web, "service = \"orders\"")).await;
        assert_eq!(o.reason, Some(FailureReason::Grpc), "{o:#?}");
        assert_eq!(
            o.error.as_deref(),
            Some(
                format!(
                    "Health/Check for service `orders` on {web} answered HTTP 404 without a gRPC status (UNIMPLEMENTED by the gRPC HTTP mapping)"
                )
                .as_str()
            )
        );
        let f = grpc_facts(&o);
        assert_eq!((f.http_status, f.grpc_code), (Some(404), Some(12)));

        // A gRPC server without the health service: UNIMPLEMENTED.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bare = listener.local_addr().unwrap().to_string();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_optional_service(
                    None::<
                        tonic_health::pb::health_server::HealthServer<
                            tonic_health::server::HealthService,
                        >,
                    >,
                )
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        let o = run_probe(nowhere, "", &grpc(&bare, "")).await;
        assert_eq!(o.reason, Some(FailureReason::Grpc), "{o:#?}");
        assert_eq!(
            o.error.as_deref(),
            Some(
                format!(
                    "Health/Check for the server on {bare} ended with gRPC status UNIMPLEMENTED (12)"
                )
                .as_str()
            )
        );
        assert!(o.responded);
        let f = grpc_facts(&o);
        assert_eq!((f.http_status, f.grpc_code_name.as_deref()), (Some(200), Some("UNIMPLEMENTED")));
        let gauges = o.details.as_ref().unwrap().gauges();
        assert_eq!(gauge(&gauges, "probe_grpc_status_code"), Some(12.0));

        // Nothing listening.
        let refused = format!("127.0.0.1:{}", free_port());
        let o = run_probe(nowhere, "", &grpc(&refused, "")).await;
        assert_eq!(o.reason, Some(FailureReason::ConnectRefused), "{o:#?}");
        assert!(o.error.as_deref().unwrap().contains(&refused), "{o:#?}");
        assert!(!o.responded);
    })
    .await;
}

#[tokio::test]
async fn grpc_a_silent_server_times_out_within_the_deadline() {
    bounded(async {
        // Accepts, reads whatever comes, never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut sink = [0u8; 1024];
                    while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
                });
            }
        });
        let started = Instant::now();
        let o = run_probe(
            "http://127.0.0.1:9",
            "timeout = \"300ms\"",
            &grpc(&addr, ""),
        )
        .await;
        let elapsed = started.elapsed();
        assert_eq!(o.reason, Some(FailureReason::Timeout), "{o:#?}");
        assert!(
            o.error
                .as_deref()
                .unwrap()
                .starts_with("deadline exceeded after 0.3"),
            "{o:#?}"
        );
        assert!(o.error.as_deref().unwrap().ends_with("(call)"), "{o:#?}");
        assert!(elapsed < 300 * MS + 500 * MS, "{elapsed:?}");
        assert_phases(&o, &["resolve", "connect", "tls", "call"]);
    })
    .await;
}

/// Over TLS, the handshake's certificate expiry is reported whatever the
/// protocol after it: here the sandbox's TLS line port (its valid leaf is
/// good for 90 days, trusted through the environment's `ca_file`), which
/// answers HTTP/2 and HTTP/1 with its banner, so both kinds fail as
/// `protocol` after a handshake that succeeded.
#[tokio::test]
async fn grpc_and_stream_over_tls_report_the_certificate_expiry() {
    bounded(async {
        let sb = sandbox().await;
        let vars = sb.variables();
        let tls_port = vars["sandbox_tls"].clone();
        let config = format!(
            "{}tls = {{ ca_file = \"{}\" }}\n",
            config_with_target(&sb.base_url()),
            vars["sandbox_ca_file"]
        );
        let in_90_days = chrono::Utc::now().timestamp() + 90 * 86_400;
        let bodies = [
            grpc(&tls_port, "tls = true"),
            stream(&format!("https://{tls_port}/events"), ""),
        ];
        for body in bodies {
            let dir = tempfile::tempdir().unwrap();
            let probe =
                format!("name = \"p\"\nenvironments = [\"target\"]\ntimeout = \"3s\"\n{body}\n");
            let path = write_config(dir.path(), &config, &[("p.toml", &probe)]);
            let o = run_one(&load(&path)).await;
            assert_eq!(o.reason, Some(FailureReason::Protocol), "{o:#?}");
            let expiry = match o.details.as_ref() {
                Some(d) if d.get::<GrpcFacts>().is_some() || d.get::<StreamFacts>().is_some() => {
                    d.cert_expiry()
                }
                other => panic!("no grpc or stream details: {other:?}"),
            };
            let expiry = expiry.unwrap_or_else(|| panic!("no cert expiry: {o:#?}"));
            assert!(
                (expiry - in_90_days).abs() < 600,
                "expiry {expiry} is not 90 days from now ({in_90_days})"
            );
            assert_eq!(o.cert_expiry(), Some(expiry));
            let json = serde_json::to_value(o.details.as_ref().unwrap()).unwrap();
            assert_eq!(json.to_string().matches("cert_expiry").count(), 1, "{json}");
        }
        // Without TLS there is no certificate to report.
        let o = run_probe(&sb.base_url(), "", &grpc(&vars["sandbox_grpc"], "")).await;
        assert!(o.success, "{o:#?}");
        assert_eq!(o.cert_expiry(), None);
        sb.shutdown().await;
    })
    .await;
}

/// What the reference server saw of one call.
type SeenMetadata = Arc<Mutex<Vec<tonic::metadata::MetadataMap>>>;

/// tonic-health on 127.0.0.1 recording each call's metadata: the server
/// and `orders` are SERVING, `billing` NOT_SERVING.
async fn reference_server() -> (String, SeenMetadata) {
    let (reporter, _) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("orders", tonic_health::ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("billing", tonic_health::ServingStatus::NotServing)
        .await;
    let seen = SeenMetadata::default();
    let record = Arc::clone(&seen);
    let service = tonic_health::pb::health_server::HealthServer::with_interceptor(
        tonic_health::server::HealthService::from_health_reporter(reporter),
        move |request: tonic::Request<()>| {
            record.lock().unwrap().push(request.metadata().clone());
            Ok(request)
        },
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (addr, seen)
}

#[tokio::test]
async fn grpc_the_reference_server_answers_and_sees_the_tagging_metadata() {
    bounded(async {
        let (addr, seen) = reference_server().await;
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "{}variables = {{ tenant = \"acme\" }}\n[environments.target.headers]\nAuthorization = \"Bearer t0ken-value\"\n",
            config_with_target("http://127.0.0.1:9")
        );
        let probe = format!(
            "name = \"tagged\"\nenvironments = [\"target\"]\n[grpc]\naddress = \"{addr}\"\nservice = \"orders\"\nmetadata = {{ x-tenant = \"{{{{ vars.tenant }}}}\" }}\n"
        );
        let path = write_config(dir.path(), &config, &[("t.toml", &probe)]);
        let config = load(&path);
        let o = run_one(&config).await;
        assert!(o.success, "{o:#?}");

        let calls = seen.lock().unwrap().clone();
        assert_eq!(calls.len(), 1);
        let md = &calls[0];
        let get = |k: &str| md.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert_eq!(get("x-synthetic"), "true");
        assert_eq!(get("x-synthetic-probe"), "tagged");
        assert_eq!(get("x-synthetic-run-id"), o.run_id);
        assert_eq!(
            get("traceparent"),
            format!("00-{}-{}-01", o.trace_id, o.span_id)
        );
        assert!(get("baggage").contains("synthetic=true"), "{md:?}");
        assert!(get("user-agent").starts_with("synthmon/"), "{md:?}");
        assert_eq!(get("x-tenant"), "acme");
        assert_eq!(get("authorization"), "Bearer t0ken-value");
        // The deadline travels with the call.
        assert!(get("grpc-timeout").ends_with('m'), "{md:?}");

        // NOT_SERVING and an unknown service, as tonic-health says them.
        for (service, status) in [("billing", "NOT_SERVING"), ("ghost", "SERVICE_UNKNOWN")] {
            let o = run_probe(
                "http://127.0.0.1:9",
                "",
                &grpc(&addr, &format!("service = \"{service}\"")),
            )
            .await;
            assert_eq!(o.reason, Some(FailureReason::NotServing), "{o:#?}");
            assert_eq!(grpc_facts(&o).status.as_deref(), Some(status), "{o:#?}");
        }
    })
    .await;
}

#[tokio::test]
async fn grpc_the_sandbox_server_answers_tonic_health_clients() {
    bounded(async {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_client::HealthClient;
        let sb = sandbox().await;
        let url = format!("http://{}", sb.variables()["sandbox_grpc"]);
        let channel = tonic::transport::Endpoint::from_shared(url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = HealthClient::new(channel);
        let check = |service: &str| HealthCheckRequest {
            service: service.to_owned(),
        };
        for (service, status) in [("", 1), ("orders", 1), ("payments", 2)] {
            let answer = client.check(check(service)).await.unwrap().into_inner();
            assert_eq!(answer.status, status, "{service}");
        }
        let error = client.check(check("ghost")).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::NotFound);
        assert_eq!(error.message(), "unknown service ghost");
        // Watch is not offered.
        let error = client.watch(check("")).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unimplemented);
        sb.shutdown().await;
    })
    .await;
}

/// Sends one HTTP/2 request to `addr` on a fresh connection; returns the
/// HTTP status and the grpc-status (from headers or trailers).
async fn h2_call(
    addr: &str,
    method: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Option<String>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header("content-type", content_type)
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(request, false).unwrap();
    send.send_data(bytes::Bytes::from(body), true).unwrap();
    let response = response.await.unwrap();
    let status = response.status().as_u16();
    let grpc_status =
        |h: &http::HeaderMap| h.get("grpc-status").map(|v| v.to_str().unwrap().to_owned());
    let from_headers = grpc_status(response.headers());
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let _ = chunk;
    }
    let trailers = body.trailers().await.unwrap_or_default();
    (
        status,
        from_headers.or_else(|| trailers.as_ref().and_then(grpc_status)),
    )
}

#[tokio::test]
async fn grpc_the_sandbox_server_refuses_odd_requests_and_keeps_serving() {
    bounded(async {
        let sb = sandbox().await;
        let addr = sb.variables()["sandbox_grpc"].clone();
        let framed = |message: &[u8]| {
            let mut out = vec![0];
            out.extend_from_slice(&(message.len() as u32).to_be_bytes());
            out.extend_from_slice(message);
            out
        };
        assert_eq!(
            h2_call(&addr, "POST", "text/plain", framed(&[])).await,
            (415, None)
        );
        assert_eq!(
            h2_call(&addr, "GET", "application/grpc", Vec::new()).await,
            (405, None)
        );
        // Too large, not length-prefixed, compressed: gRPC errors.
        let huge = framed(&vec![b'x'; 64 * 1024]);
        assert_eq!(
            h2_call(&addr, "POST", "application/grpc", huge).await,
            (200, Some("8".to_owned()))
        );
        assert_eq!(
            h2_call(&addr, "POST", "application/grpc", vec![0, 0]).await,
            (200, Some("3".to_owned()))
        );
        assert_eq!(
            h2_call(&addr, "POST", "application/grpc", vec![1, 0, 0, 0, 0]).await,
            (200, Some("3".to_owned()))
        );
        // HTTP/1 garbage is dropped without harm.
        let mut tcp = TcpStream::connect(&addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut sink = Vec::new();
        let _ = tcp.read_to_end(&mut sink).await;
        // Still serving.
        assert_eq!(
            h2_call(&addr, "POST", "application/grpc", framed(&[])).await,
            (200, Some("0".to_owned()))
        );
        sb.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------
// stream

fn stream(url: &str, rest: &str) -> String {
    format!("[stream]\nurl = \"{url}\"\n{rest}")
}

#[tokio::test]
async fn stream_five_events_pass_with_count_first_event_and_gaps() {
    bounded(async {
        let sb = sandbox().await;
        let o = run_probe(
            &sb.base_url(),
            "",
            &stream(
                "/events?count=5&interval_ms=20",
                "min_events = 5\nmax_gap = \"500ms\"\nexpect = [\"events == 5\", \"max_gap >= duration('15ms') && max_gap < duration('500ms')\", \"first_event < duration('500ms')\", \"status == 200\", \"last_event_id == '5'\", \"!reconnected\", \"size(data) == 5 && data[4] == 'event 5'\", \"timings.stream > duration('60ms')\"]",
            ),
        )
        .await;
        assert!(o.success, "{o:#?}");
        assert_phases(&o, &["connect", "first_event", "stream"]);
        let f = stream_facts(&o);
        assert_eq!(f.events, 5);
        assert!(f.max_gap_seconds >= 0.015, "{f:?}");
        assert!(f.first_event_seconds.unwrap() < 0.5, "{f:?}");
        let gauges = o.details.as_ref().unwrap().gauges();
        assert_eq!(gauge(&gauges, "probe_stream_events"), Some(5.0));
        assert!(gauge(&gauges, "probe_stream_first_event_seconds").is_some());
        assert!(gauge(&gauges, "probe_stream_max_gap_seconds").unwrap() >= 0.015);

        // Chunked mode counts the pieces of a chunked body.
        let o = run_probe(
            &sb.base_url(),
            "",
            &stream(
                "/chunks?count=4&interval_ms=10",
                "mode = \"chunked\"\nexpect = [\"events == 4\", \"data[0] == 'chunk 1\\\\n'\"]",
            ),
        )
        .await;
        assert!(o.success, "{o:#?}");

        // `duration` stops an endless stream successfully.
        let o = run_probe(
            &sb.base_url(),
            "",
            &stream(
                "/events?count=1000&interval_ms=20",
                "duration = \"150ms\"\nexpect = [\"events >= 3\"]",
            ),
        )
        .await;
        assert!(o.success, "{o:#?}");
        assert!(o.duration >= 150 * MS && o.duration < 400 * MS, "{o:#?}");
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn stream_a_stall_fails_within_max_gap() {
    bounded(async {
        let sb = sandbox().await;
        let started = Instant::now();
        let o = run_probe(
            &sb.base_url(),
            "",
            &stream(
                "/events?count=5&interval_ms=10&stall_after=2&stall_ms=5000",
                "min_events = 5\nmax_gap = \"200ms\"",
            ),
        )
        .await;
        let elapsed = started.elapsed();
        assert_eq!(o.reason, Some(FailureReason::StreamStalled), "{o:#?}");
        let error = o.error.as_deref().unwrap();
        assert!(
            error.starts_with("no event for 0.2")
                && error.ends_with("after event 2 (id `2`); max_gap is 200ms"),
            "{error}"
        );
        assert!(o.responded);
        assert_eq!(stream_facts(&o).events, 2);
        // Two events 10 ms apart, then the 200 ms gap, then a little slack.
        assert!(o.duration >= 200 * MS, "{o:#?}");
        assert!(elapsed < 200 * MS + 300 * MS, "{elapsed:?}");
        assert_phases(&o, &["connect", "first_event", "stream"]);

        // A stream whose first event is late.
        let late = silent_sse_server().await;
        let o = run_probe(&late, "", &stream("/", "first_event_timeout = \"150ms\"")).await;
        assert_eq!(o.reason, Some(FailureReason::StreamStalled), "{o:#?}");
        let error = o.error.as_deref().unwrap();
        assert!(
            error.starts_with("no event within 0.1")
                && error.ends_with("of the start; first_event_timeout is 150ms"),
            "{error}"
        );
        // An endless stream with no stop condition runs into the deadline.
        let o = run_probe(
            &sb.base_url(),
            "timeout = \"300ms\"",
            &stream("/events?count=1000&interval_ms=20", ""),
        )
        .await;
        assert_eq!(o.reason, Some(FailureReason::Timeout), "{o:#?}");
        assert!(
            o.error
                .as_deref()
                .unwrap()
                .starts_with("deadline exceeded after 0.3"),
            "{o:#?}"
        );
        sb.shutdown().await;
    })
    .await;
}

/// Answers every request with SSE headers and then nothing.
async fn silent_sse_server() -> String {
    serve(|_head, mut tcp| async move {
        let _ = tcp
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        tokio::time::sleep(BOUND).await;
    })
    .await
}

/// A raw HTTP/1.1 server: reads each request head, records it (lowercase)
/// and lets `answer` write the response.
async fn serve_recording<F, Fut>(answer: F) -> (String, Arc<Mutex<Vec<String>>>)
where
    F: Fn(String, TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&heads);
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let (record, answer) = (Arc::clone(&record), Arc::clone(&answer));
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65_536 {
                    match tcp.read(&mut chunk).await {
                        Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                record.lock().unwrap().push(head.clone());
                answer(head, tcp).await;
            });
        }
    });
    (base, heads)
}

async fn serve<F, Fut>(answer: F) -> String
where
    F: Fn(String, TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    serve_recording(answer).await.0
}

/// The value of header `name` in a lowercased request head.
fn header_of(head: &str, name: &str) -> Option<String> {
    head.split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim().to_owned())
}

/// SSE events `from..=to` as one chunked body, then the end.
fn sse_response(from: u64, to: u64) -> String {
    let mut out = String::from(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    for id in from..=to {
        let event = format!("id: {id}\r\ndata: n{id}\r\n\r\n");
        out.push_str(&format!("{:x}\r\n{event}\r\n", event.len()));
    }
    out.push_str("0\r\n\r\n");
    out
}

#[tokio::test]
async fn stream_reconnect_sends_last_event_id_and_checks_the_resume() {
    bounded(async {
        // Honours Last-Event-ID: starts after it.
        let (base, heads) = serve_recording(|head, mut tcp| async move {
            let after: u64 = header_of(&head, "last-event-id")
                .map_or(0, |v| v.parse().unwrap());
            let _ = tcp.write_all(sse_response(after + 1, 6).as_bytes()).await;
        })
        .await;
        let o = run_probe(
            &base,
            "",
            &stream(
                "/feed",
                "reconnect = true\nmin_events = 6\nexpect = [\"reconnected\", \"resumed_from == '3'\", \"data == ['n1', 'n2', 'n3', 'n4', 'n5', 'n6']\"]",
            ),
        )
        .await;
        assert!(o.success, "{o:#?}");
        let f = stream_facts(&o);
        assert_eq!((f.events, f.reconnected), (6, true));
        assert_eq!(f.resumed_from.as_deref(), Some("3"));
        let heads = heads.lock().unwrap().clone();
        assert_eq!(heads.len(), 2, "{heads:?}");
        assert_eq!(header_of(&heads[0], "last-event-id"), None);
        assert_eq!(header_of(&heads[1], "last-event-id").as_deref(), Some("3"));
        for head in &heads {
            assert!(head.starts_with("get /feed http/1.1\r\n"), "{head}");
            assert_eq!(header_of(head, "accept").as_deref(), Some("text/event-stream"));
            assert_eq!(header_of(head, "x-synthetic").as_deref(), Some("true"));
            assert_eq!(header_of(head, "x-synthetic-probe").as_deref(), Some("p"));
            assert!(header_of(head, "traceparent").is_some(), "{head}");
        }

        // On an endless stream with `duration`, it reconnects half-way.
        let sb = sandbox().await;
        let o = run_probe(
            &sb.base_url(),
            "",
            &stream(
                "/events?count=1000&interval_ms=20",
                "reconnect = true\nduration = \"200ms\"\nmax_gap = \"150ms\"\nexpect = [\"reconnected\", \"int(last_event_id) == events\"]",
            ),
        )
        .await;
        assert!(o.success, "{o:#?}");
        let resumed: u64 = stream_facts(&o).resumed_from.as_deref().unwrap().parse().unwrap();
        assert!((1..=6).contains(&resumed), "{o:#?}");
        sb.shutdown().await;

        // Ignores it: replays from the start, which the probe catches.
        let replaying = serve(|_head, mut tcp| async move {
            let _ = tcp.write_all(sse_response(1, 6).as_bytes()).await;
        })
        .await;
        let o = run_probe(
            &replaying,
            "",
            &stream("/", "reconnect = true\nmin_events = 6"),
        )
        .await;
        assert_eq!(o.reason, Some(FailureReason::Assertion), "{o:#?}");
        let resume = o
            .assertions
            .iter()
            .find(|a| a.expression.contains("implicit: reconnect"))
            .unwrap();
        assert!(!resume.passed);
        assert_eq!(
            resume.actual,
            "after reconnecting with Last-Event-ID \"3\" the first event has id \"1\": the stream did not resume after it"
        );
        assert!(resume.location.as_ref().unwrap().line > 0);
        // Without min_events the first stream is read to its end first.
        let o = run_probe(&replaying, "", &stream("/", "reconnect = true")).await;
        assert_eq!(o.reason, Some(FailureReason::Assertion), "{o:#?}");
        assert_eq!(stream_facts(&o).resumed_from.as_deref(), Some("6"));
    })
    .await;
}

#[tokio::test]
async fn stream_protocol_status_and_size_failures() {
    bounded(async {
        let sb = sandbox().await;
        let o = run_probe(&sb.base_url(), "", &stream("/json", "min_events = 1")).await;
        assert_eq!(o.reason, Some(FailureReason::Protocol), "{o:#?}");
        assert!(
            o.error
                .as_deref()
                .unwrap()
                .ends_with("answered with content type `application/json`, not text/event-stream"),
            "{o:#?}"
        );

        // The sandbox refuses a Last-Event-ID it cannot resume from.
        let o = run_probe(
            &sb.base_url(),
            "",
            &stream("/events", "headers = { Last-Event-ID = \"abc\" }"),
        )
        .await;
        assert_eq!(o.reason, Some(FailureReason::Status), "{o:#?}");
        assert_eq!(stream_facts(&o).status, Some(400));

        let o = run_probe(&sb.base_url(), "", &stream("/status/503", "")).await;
        assert_eq!(o.reason, Some(FailureReason::Status), "{o:#?}");
        assert!(
            o.error
                .as_deref()
                .unwrap()
                .ends_with("answered 503 (expected 2xx)"),
            "{o:#?}"
        );
        assert_eq!(stream_facts(&o).status, Some(503));

        let o = run_probe(
            &sb.base_url(),
            "",
            &stream("/events?count=3&size=2048", "max_event_bytes = \"1 KiB\""),
        )
        .await;
        assert_eq!(o.reason, Some(FailureReason::BodyTooLarge), "{o:#?}");
        assert!(
            o.error
                .as_deref()
                .unwrap()
                .starts_with("event 1 exceeds the 1024-byte cap (max_event_bytes)"),
            "{o:#?}"
        );

        // A line that never ends is cut at the cap, not buffered.
        let endless = serve(|_head, mut tcp| async move {
            let _ = tcp
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: ")
                .await;
            let block = [b'x'; 4096];
            while tcp.write_all(&block).await.is_ok() {}
        })
        .await;
        let o = run_probe(&endless, "", &stream("/", "max_event_bytes = 65536")).await;
        assert_eq!(o.reason, Some(FailureReason::BodyTooLarge), "{o:#?}");
        assert!(stream_facts(&o).bytes < 1 << 20, "{o:#?}");
        sb.shutdown().await;
    })
    .await;
}

#[test]
fn load_errors_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let grpc_probe = r#"name = "g"
environments = ["target"]

[grpc]
address = "localhost"
metadata = { grpc-timeout = "1s", "x-ok" = "fine" }
expect = ["stauts == 'SERVING'"]
"#;
    let stream_probe = r#"name = "s"
environments = ["target"]

[stream]
mode = "websocket"
max_gap = "soon"
reconnect = true
max_event_bytes = "1 GiB"
min_events = 0
expect = ["events > 'x' ||"]
"#;
    let plaintext_probe = r#"name = "g2"
environments = ["target"]

[grpc]
address = "http://localhost:50051"
server_name = "x.example"
"#;
    let chunked_probe = r#"name = "c"
environments = ["target"]

[stream]
url = "/x"
mode = "chunked"
reconnect = true
"#;
    let path = write_config(
        dir.path(),
        &config_with_target("http://127.0.0.1:9"),
        &[
            ("g.toml", grpc_probe),
            ("s.toml", stream_probe),
            ("c.toml", chunked_probe),
            ("g2.toml", plaintext_probe),
        ],
    );
    let opts = synthmon::config::LoadOptions {
        config_path: Some(path),
        overrides: vec![],
    };
    let diags = synthmon::plan::load(&opts).unwrap_err().to_string();
    let expect_at = |file: &str, text: &str, needle: &str, message: &str| {
        let (line, column) = position_of(text, needle);
        let at = format!("{file}:{line}:{column}: error: {message}");
        assert!(diags.contains(&at), "missing `{at}` in\n{diags}");
    };
    expect_at(
        "g.toml",
        grpc_probe,
        "\"localhost\"",
        "grpc.address: expected `host:port` or an http(s) URL, found `localhost`: no port",
    );
    expect_at(
        "g.toml",
        grpc_probe,
        "\"1s\"",
        "grpc.metadata.grpc-timeout: `grpc-timeout`: `grpc-` keys are reserved by gRPC",
    );
    expect_at("g.toml", grpc_probe, "\"stauts", "grpc.expect[0]: ");
    expect_at(
        "s.toml",
        stream_probe,
        "\"websocket\"",
        "stream.mode: expected `sse` or `chunked`, found `websocket`",
    );
    expect_at(
        "s.toml",
        stream_probe,
        "\"soon\"",
        "stream.max_gap: expected a duration",
    );
    expect_at(
        "s.toml",
        stream_probe,
        "\"1 GiB\"",
        "stream.max_event_bytes: expected a size from 1 B to 64 MiB",
    );
    expect_at(
        "s.toml",
        stream_probe,
        "0\n",
        "stream.min_events: expected at least 1 event",
    );
    expect_at(
        "s.toml",
        stream_probe,
        "stream]",
        "stream: missing required key `url`",
    );
    expect_at(
        "c.toml",
        chunked_probe,
        "true",
        "stream.reconnect: `reconnect` resumes with Last-Event-ID",
    );
    expect_at(
        "g2.toml",
        plaintext_probe,
        "\"x.example\"",
        "grpc.server_name: `server_name` applies to TLS only",
    );
}
