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
//! - `central`: one task sends every due request (synthmon's shape), each
//!   on an idle connection, as a task of its own that it awaits.
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
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
    central: bool,
}

fn args() -> Result<Args> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [addr, connections, seconds, rate, shape] = a.as_slice() else {
        return Err("usage: floor ADDR CONNECTIONS SECONDS RATE tasks|central".into());
    };
    Ok(Args {
        addr: addr.clone(),
        connections: connections.parse()?,
        seconds: seconds.parse()?,
        rate: rate.parse()?,
        central: match shape.as_str() {
            "tasks" => false,
            "central" => true,
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
    let mut senders = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let tcp = tokio::net::TcpStream::connect(&args.addr).await?;
        tcp.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(connection);
        senders.push(sender);
    }
    let start = Instant::now();
    let end = start + Duration::from_secs(args.seconds);
    let due = move |i: u64| start + Duration::from_secs_f64(i as f64 / args.rate);
    let (answered, dropped) = if args.central {
        central(senders, &args.addr, due, end).await?
    } else {
        tasks(senders, &args.addr, due, end).await?
    };
    println!("{:.0} {dropped}", answered as f64 / args.seconds as f64);
    Ok(())
}

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

/// Each connection's task claims its own due requests.
async fn tasks(
    senders: Vec<Sender>,
    addr: &str,
    due: impl Fn(u64) -> Instant + Copy + Send + 'static,
    end: Instant,
) -> Result<(u64, u64)> {
    let next = Arc::new(Mutex::new(0u64));
    let dropped = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = senders
        .into_iter()
        .map(|mut sender| {
            let (next, dropped, host) = (Arc::clone(&next), Arc::clone(&dropped), addr.to_owned());
            tokio::spawn(async move {
                let mut answered = 0u64;
                loop {
                    let at = {
                        let mut i = next.lock().unwrap_or_else(PoisonError::into_inner);
                        let now = Instant::now();
                        loop {
                            let at = due(*i);
                            *i += 1;
                            if at + SLACK >= now {
                                break at;
                            }
                            dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    };
                    if at >= end {
                        return Ok::<u64, Box<dyn Error + Send + Sync>>(answered);
                    }
                    tokio::time::sleep_until(at).await;
                    get(&mut sender, &host).await?;
                    answered += 1;
                }
            })
        })
        .collect();
    let mut answered = 0;
    for worker in workers {
        answered += worker.await??;
    }
    Ok((answered, dropped.load(Ordering::Relaxed)))
}

/// One task sends every due request, each as a task of its own.
async fn central(
    senders: Vec<Sender>,
    addr: &str,
    due: impl Fn(u64) -> Instant,
    end: Instant,
) -> Result<(u64, u64)> {
    let cap = senders.len();
    let idle = Arc::new(Mutex::new(senders));
    let mut in_flight = FuturesUnordered::new();
    let (mut answered, mut dropped, mut i) = (0u64, 0u64, 0u64);
    let timer = tokio::time::sleep_until(due(0));
    tokio::pin!(timer);
    loop {
        let at = due(i);
        if at >= end {
            while let Some(done) = in_flight.next().await {
                done?;
                answered += 1;
            }
            return Ok((answered, dropped));
        }
        let due_now = at <= Instant::now();
        if !due_now && at != timer.deadline() {
            timer.as_mut().reset(at);
        }
        tokio::select! {
            biased;
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                done?;
                answered += 1;
                continue;
            }
            () = tokio::task::coop::consume_budget(), if due_now => {}
            () = &mut timer, if !due_now => {}
        }
        i += 1;
        if in_flight.len() >= cap {
            dropped += 1;
            continue;
        }
        let (idle, host) = (Arc::clone(&idle), addr.to_owned());
        in_flight.push(async move {
            let exchange = tokio::spawn(async move {
                let taken = idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
                let mut sender = taken.ok_or("no idle connection")?;
                let got = get(&mut sender, &host).await;
                idle.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(sender);
                got
            });
            exchange.await?
        });
    }
}
