//! Workloads with `keep_alive = true` against real servers on 127.0.0.1:
//! connections are counted where they arrive (a counting TCP relay in
//! front of the sandbox, or a test server that counts its own), so reuse
//! is seen from the server's side, not taken from the client's word.
//! Also: the fresh-connection default still opens one per request, servers
//! that close after every response (with `Connection: close`, or silently
//! as an idle timeout would) still get every request answered, and a
//! workload's facts stay the same size whatever its number of requests.

use crate::common;

use common::{config_with_target, load, run_one, sandbox, write_config};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use synthmon::outcome::{Outcome, WorkloadFacts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BOUND: Duration = Duration::from_secs(60);

async fn bounded<F: Future>(f: F) -> F::Output {
    common::within(BOUND, f).await
}

async fn run_probe(base_url: &str, probe: &str) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &config_with_target(base_url),
        &[("w.toml", probe)],
    );
    run_one(&load(&path)).await
}

/// A `/health` workload of `requests` at `rate` with at most
/// `max_concurrency` in flight, keeping connections or not.
fn health(requests: u32, rate: u32, max_concurrency: u32, keep_alive: Option<bool>) -> String {
    let keep = keep_alive.map_or(String::new(), |k| format!("keep_alive = {k}\n"));
    format!(
        r#"name = "w"
environments = ["target"]
timeout = "5s"
schedule = "every 1m"

[workload]
requests = {requests}
rate = {rate}
max_concurrency = {max_concurrency}
{keep}
[http]
url = "/health"
"#
    )
}

/// A TCP relay on 127.0.0.1 in front of `target` that counts the
/// connections it accepts.
async fn counting_relay(target: SocketAddr) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    (addr, accepted)
}

fn facts(o: &Outcome) -> &WorkloadFacts {
    o.workload.as_ref().unwrap()
}

#[tokio::test]
async fn a_keep_alive_workload_reuses_at_most_max_concurrency_connections() {
    bounded(async {
        let sb = sandbox().await;
        let (relay, accepted) = counting_relay(sb.addr()).await;
        let o = run_probe(&format!("http://{relay}"), &health(300, 300, 8, Some(true))).await;
        let w = facts(&o);
        assert!(o.success, "{:?} {:?}", o.error, w.failures);
        assert_eq!((w.sent, w.ok, w.failed), (300, 300, 0), "{w:?}");
        let opened = accepted.load(Ordering::SeqCst);
        assert!(
            (1..=8).contains(&opened),
            "the server saw {opened} connections"
        );
        // The run's own count agrees with the server's.
        assert_eq!(w.connections, Some(opened));
        assert_eq!(w.latencies.len(), 300);
        sb.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn without_keep_alive_every_request_opens_its_own_connection() {
    bounded(async {
        let sb = sandbox().await;
        let (relay, accepted) = counting_relay(sb.addr()).await;
        for keep_alive in [None, Some(false)] {
            accepted.store(0, Ordering::SeqCst);
            let o = run_probe(&format!("http://{relay}"), &health(60, 200, 8, keep_alive)).await;
            let w = facts(&o);
            assert!(o.success, "{:?} {:?}", o.error, w.failures);
            assert_eq!(w.ok, 60);
            assert_eq!(
                accepted.load(Ordering::SeqCst),
                60,
                "keep_alive {keep_alive:?}"
            );
            assert_eq!(w.connections, None);
        }
        sb.shutdown().await;
    })
    .await;
}

/// A workload fast enough to be sharded (above 2,000/s) sends from one
/// thread per CPU (on the multi-threaded runtime the binary uses; here
/// with one worker, as `--once` has), and every request is counted once:
/// what was sent and what was dropped add up to the schedule, every request
/// sent was answered, and the server saw one connection per request
/// (fresh) or as many as the run says it opened (kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_fast_workload_is_sharded_over_the_cpus_and_counts_every_request_once() {
    bounded(async {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let sb = sandbox().await;
        let (relay, accepted) = counting_relay(sb.addr()).await;
        for keep_alive in [None, Some(true)] {
            accepted.store(0, Ordering::SeqCst);
            let o = run_probe(
                &format!("http://{relay}"),
                &health(2000, 4000, 16, keep_alive),
            )
            .await;
            let w = facts(&o);
            // ceil(4,000 / 2,000) shards, at most one per CPU.
            assert_eq!(w.threads, cpus.min(2) as u64, "keep_alive {keep_alive:?}");
            assert_eq!(w.sent + w.dropped, 2000, "{w:?}");
            // Drops depend on the machine's load; the counts must not.
            assert!(w.sent >= 100, "{w:?}");
            assert_eq!((w.ok, w.failed), (w.sent, 0), "{:?}", w.failures);
            assert_eq!(w.latencies.len(), w.sent);
            let opened = accepted.load(Ordering::SeqCst);
            match keep_alive {
                None => assert_eq!(opened, w.sent, "one connection a request"),
                Some(_) => {
                    assert_eq!(w.connections, Some(opened));
                    assert!(
                        opened <= 16,
                        "{opened} connections for at most 16 in flight"
                    );
                }
            }
        }
        sb.shutdown().await;
    })
    .await;
}

/// A workload below the sharding rate stays on the run's one task,
/// however many workers the runtime has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_workload_stays_on_one_task() {
    bounded(async {
        let sb = sandbox().await;
        let o = run_probe(
            &format!("http://{}", sb.addr()),
            &health(100, 1000, 8, None),
        )
        .await;
        let w = facts(&o);
        assert_eq!(w.threads, 1);
        assert_eq!((w.sent + w.dropped, w.ok), (100, w.sent));
        sb.shutdown().await;
    })
    .await;
}

/// How a test server ends each exchange.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// `Connection: close`, then closes.
    Announced,
    /// Closes without saying so, as if its idle timeout were zero: the
    /// client learns it only from the closed socket, perhaps too late.
    Silent,
}

/// An HTTP/1.1 server on 127.0.0.1 that answers one request per
/// connection with a 200 and then closes; it counts its connections.
async fn one_request_per_connection(ending: Ending) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let close = match ending {
                    Ending::Announced => "Connection: close\r\n",
                    Ending::Silent => "",
                };
                let response = format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n{close}\r\nok");
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn servers_that_close_after_each_response_still_answer_every_request() {
    bounded(async {
        for ending in [Ending::Announced, Ending::Silent] {
            let (addr, accepted) = one_request_per_connection(ending).await;
            let o = run_probe(&format!("http://{addr}"), &health(100, 200, 4, Some(true))).await;
            let w = facts(&o);
            assert!(o.success, "{ending:?}: {:?} {:?}", o.error, w.failures);
            assert_eq!((w.ok, w.failed), (100, 0), "{ending:?}: {:?}", w.failures);
            // Every request needed a connection of its own (a silent close
            // may cost a second one when it races the next request).
            let seen = accepted.load(Ordering::SeqCst);
            assert!(
                (100..=200).contains(&seen),
                "{ending:?}: {seen} connections"
            );
            assert_eq!(w.connections, Some(seen), "{ending:?}");
        }
    })
    .await;
}

/// What a run's facts hold on the heap at most: one latency histogram
/// (1 µs to 1 h, two significant digits: 3,328 four-byte counters).
const FACTS_BOUND: usize = 16 * 1024;

#[tokio::test]
async fn a_workload_s_facts_do_not_grow_with_its_number_of_requests() {
    bounded(async {
        let sb = sandbox().await;
        let mut seen = Vec::new();
        for (requests, rate) in [(200, 1_000), (20_000, 4_000)] {
            let o = run_probe(&sb.base_url(), &health(requests, rate, 64, Some(true))).await;
            let w = facts(&o);
            // Every request sent left its latency (a busy machine may
            // drop some at the cap: not judged here).
            assert_eq!(w.latencies.len(), w.ok + w.failed, "{w:?}");
            let heap = w.latencies.heap_bytes();
            seen.push((requests, w.sent, heap));
            assert!(heap <= FACTS_BOUND, "{seen:?}");
        }
        // The large run went past the latencies kept exactly, into the
        // histogram, and still fits the bound.
        assert!(seen[1].1 > 1_024, "{seen:?}");
        sb.shutdown().await;
    })
    .await;
}

#[test]
fn keep_alive_is_for_http_workloads() {
    let dir = tempfile::tempdir().unwrap();
    let flow = r#"name = "journey"
environments = ["target"]

[workload]
requests = 10
rate = 10
keep_alive = true

[[flow.steps]]
name = "read"
url = "/health"
"#;
    let typo =
        health(10, 10, 4, None).replace("[workload]\n", "[workload]\nkeep_alive = \"yes\"\n");
    let path = write_config(
        dir.path(),
        &config_with_target("http://127.0.0.1:9"),
        &[("flow.toml", flow), ("typo.toml", &typo)],
    );
    let opts = synthmon::config::LoadOptions {
        config_path: Some(path),
        overrides: vec![],
    };
    let text = synthmon::plan::load(&opts).unwrap_err().to_string();
    for expected in [
        "flow.toml:7:14: error: workload.keep_alive: keep_alive applies to `[http]` workloads",
        "typo.toml:7:14: error: workload.keep_alive: expected a boolean",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}
