//! The keep-alive floor: how many requests a second a bare hyper HTTP/1.1
//! client gets from a target over kept connections, in the open model
//! synthmon's workloads use (request `i` is due at `i / rate` seconds; one
//! due while every connection is busy is dropped, not delayed), with
//! nothing else per request: no tagging, phases, judging or latency record.
//!
//!     floor ADDR CONNECTIONS SECONDS RATE SHAPE
//!
//! SHAPE is how the due requests reach the connections:
//!
//! - `tasks`: each connection is a task that claims the next due request
//!   itself when its last one is answered (dropping those already missed)
//!   and sleeps until it is due;
//! - `slots`: one task holds every connection, each a future that claims
//!   its next due request in the same way and drives its connection
//!   itself (synthmon's shape: a workload's slots in its run's task).
//!
//! Prints requests answered a second, then requests dropped, on one line.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::error::Error;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;
type Sender = SendRequest<Empty<Bytes>>;

/// How late a claimed request may be before it counts as missed: tokio's
/// timer wakes on whole milliseconds, so a connection waiting for its next
/// request wakes up to ~1 ms after it was due; later than this, every
/// connection was busy when it came due.
const SLACK: Duration = Duration::from_millis(2);

struct Args {
    addr: String,
    connections: usize,
    seconds: u64,
    rate: f64,
    slots: bool,
}

fn args() -> Result<Args> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [addr, connections, seconds, rate, shape] = a.as_slice() else {
        return Err("usage: floor ADDR CONNECTIONS SECONDS RATE tasks|slots".into());
    };
    Ok(Args {
        addr: addr.clone(),
        connections: connections.parse()?,
        seconds: seconds.parse()?,
        rate: rate.parse()?,
        slots: match shape.as_str() {
            "tasks" => false,
            "slots" => true,
            other => return Err(format!("unknown shape {other:?}").into()),
        },
    })
}

fn main() -> Result<()> {
    let args = args()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let mut connections = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let tcp = tokio::net::TcpStream::connect(&args.addr).await?;
        tcp.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        connections.push((sender, Box::pin(connection)));
    }
    let start = Instant::now();
    let end = start + Duration::from_secs(args.seconds);
    let due = move |i: u64| start + Duration::from_secs_f64(i as f64 / args.rate);
    let claims = Arc::new(Claims {
        next: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
    });
    let answered = if args.slots {
        let (claims, host) = (Arc::clone(&claims), args.addr.clone());
        tokio::spawn(async move { slots(connections, &host, &claims, due, end).await }).await??
    } else {
        tasks(connections, &args.addr, &claims, due, end).await?
    };
    let dropped = claims.dropped.load(Ordering::Relaxed);
    println!("{:.0} {dropped}", answered as f64 / args.seconds as f64);
    Ok(())
}

/// The next request to claim, and those dropped.
struct Claims {
    next: AtomicU64,
    dropped: AtomicU64,
}

impl Claims {
    /// The time the next request is due, for a connection free now,
    /// dropping those it is too late for; `None` past the run's end.
    fn claim(&self, due: impl Fn(u64) -> Instant, end: Instant) -> Option<Instant> {
        let now = Instant::now();
        loop {
            let at = due(self.next.fetch_add(1, Ordering::Relaxed));
            if at >= end {
                return None;
            }
            if at + SLACK >= now {
                return Some(at);
            }
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// hyper's side of a connection: the future that does its I/O.
type Connection =
    Pin<Box<hyper::client::conn::http1::Connection<TokioIo<TcpStream>, Empty<Bytes>>>>;

/// One request on `sender`, its body read whole, within [`TIMEOUT`].
async fn get(sender: &mut Sender, host: &str) -> Result<()> {
    let exchange = async {
        sender.ready().await?;
        let request = http::Request::get("/health")
            .header(http::header::HOST, host)
            .body(Empty::new())?;
        let response = sender.send_request(request).await?;
        response.into_body().collect().await?;
        Ok(())
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer from {host} within {TIMEOUT:?}"))?
}

/// A request's deadline: a target that stops answering ends the run.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Each connection is a task claiming its own due requests; hyper's side
/// of it another.
async fn tasks(
    connections: Vec<(Sender, Connection)>,
    addr: &str,
    claims: &Arc<Claims>,
    due: impl Fn(u64) -> Instant + Copy + Send + 'static,
    end: Instant,
) -> Result<u64> {
    let workers: Vec<_> = connections
        .into_iter()
        .map(|(mut sender, connection)| {
            tokio::spawn(connection);
            let (claims, host) = (Arc::clone(claims), addr.to_owned());
            tokio::spawn(async move {
                let mut answered = 0u64;
                while let Some(at) = claims.claim(due, end) {
                    tokio::time::sleep_until(at).await;
                    get(&mut sender, &host).await?;
                    answered += 1;
                }
                Ok::<u64, Box<dyn Error + Send + Sync>>(answered)
            })
        })
        .collect();
    let mut answered = 0;
    for worker in workers {
        answered += worker.await??;
    }
    Ok(answered)
}

/// Every connection a future of this one task, claiming its own due
/// requests and driving hyper's side of the connection itself.
async fn slots(
    connections: Vec<(Sender, Connection)>,
    host: &str,
    claims: &Claims,
    due: impl Fn(u64) -> Instant + Copy,
    end: Instant,
) -> Result<u64> {
    let mut all: FuturesUnordered<_> = connections
        .into_iter()
        .map(|(mut sender, mut connection)| async move {
            let mut answered = 0u64;
            while let Some(at) = claims.claim(due, end) {
                if at > Instant::now() {
                    tokio::time::sleep_until(at).await;
                }
                drive(&mut connection, get(&mut sender, host)).await??;
                answered += 1;
            }
            Ok::<u64, Box<dyn Error + Send + Sync>>(answered)
        })
        .collect();
    let mut answered = 0;
    while let Some(n) = all.next().await {
        answered += n?;
    }
    Ok(answered)
}

/// Polls `exchange`, and the connection it is sent on, until the exchange
/// is done.
async fn drive<F: Future>(connection: &mut Connection, exchange: F) -> Result<F::Output> {
    let mut exchange = pin!(exchange);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = exchange.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        if let Poll::Ready(ended) = connection.as_mut().poll(cx) {
            return Poll::Ready(Err(match ended {
                Ok(()) => "the connection closed".into(),
                Err(e) => e.into(),
            }));
        }
        // The connection's I/O may have finished the exchange.
        exchange.as_mut().poll(cx).map(Ok)
    })
    .await
}
