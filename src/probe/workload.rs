//! Workloads: an `http` probe's request, or a whole `flow` (one iteration
//! per arrival), sent at an arrival rate: the open model of k6's constant-
//! and ramping-arrival-rate executors.
//!
//! Request `i` has an *intended* send time fixed by the rate alone. Up to
//! `max_concurrency` **slots** send: a free slot claims the next request
//! and sleeps until its intended time. A request that came due while every
//! slot was busy is **dropped and counted** when a slot frees up, never
//! delayed, so a slow target cannot lower the send rate (unless a slot
//! freed within [`SLACK`] of its time: the timer keeps time only to the
//! millisecond). One that came due while a slot was free but the sender
//! was late (this machine busy) is sent late, its lag charged to its
//! latency. Drops are not target errors (`error_rate` judges what was
//! sent), but they are judged: `dropped_rate` (dropped ÷ due), by default
//! `dropped_rate < 1%`, so a run that never sent its load does not pass.
//! A drop notes whether the sender was behind schedule (the last request
//! went out more than [`BEHIND_SCHEDULE`] late: this machine could not
//! keep up) or not (the target held every slot).
//!
//! The slots are futures of the run's one task, each polled only when its
//! own timer or I/O wakes it: a request is rendered, sent, read and judged
//! in the poll its readiness caused, with no hop between tasks (a hop cost
//! ~4 µs a request, a third of the whole, at 32 kept connections). A slot
//! is made when one begins to send while no other is free, so a slow rate
//! keeps one or two and memory follows the concurrency reached.
//!
//! One task is one CPU. An `http` workload whose peak rate is above
//! [`SHARD_RATE`] is **sharded**: up to one thread per CPU (and no more
//! than `max_concurrency`), each with a single-threaded runtime of its own
//! driving that shard's slots as above, and, with `keep_alive`, its own
//! pool (a connection belongs to the runtime that opened it). The shards
//! claim from the one ledger, so the arrival schedule, the drops and the
//! tallies are the run's, not a shard's; a new slot goes to the shard with
//! the fewest. Flows stay on one task: an iteration is a whole journey,
//! they run far below these rates, and they were not measured sharded.
//! The threads are scoped to the run (`std::thread::scope` inside
//! `block_in_place`), so they borrow the run context like the one task
//! does, and end with the run.
//!
//! Latency is measured from the intended time, not from when the request
//! actually left, so time the sender spent behind schedule is charged to
//! the target (no coordinated omission). Each request's deadline is its
//! intended time plus the probe's timeout. That latency is the one
//! thresholds judge; it includes the sender's lag behind the intended
//! time (tokio's timer fires on whole milliseconds, so up to ~1 ms at any
//! rate), the connection's setup and the time other slots' work held the
//! task when its answer arrived. Beside it
//! the run reports each request's **service time** (`service` in the
//! JSON report): from the request's first byte being written to the
//! arrival of its response's last byte, what a closed-loop tool such as
//! wrk times (see [`crate::net::http1`]'s `Progress`).
//!
//! A configured fraction of requests are **anomalies**: their JSON body is
//! mutated (missing field, wrong type, oversize value, invalid enum), they
//! carry `X-Synthetic-Anomaly`, and they are judged by the anomaly
//! expectations (a 4xx by default) and counted apart: a rejected anomaly is
//! the target doing its job, never a target error.
//!
//! Payloads are seeded per request index (see [`crate::generate`]), and the
//! anomaly draw uses a stream of its own, so enabling anomalies does not
//! change the bytes of the regular requests.
//!
//! With `keep_alive = true` an `http` workload sends on a bounded pool of
//! connections (at most `max_concurrency`, see
//! [`crate::net::http1::KeepAlive`]) instead of opening one per request:
//! the throughput of clients that keep their connections, not what a new
//! user sees (the default). Over HTTP/2 the requests to an origin share
//! one connection as concurrent streams. The pool lives as long as the
//! run. `http_version` in `[workload]` overrides the request's.
//!
//! Memory does not grow with the number of requests: arrival times are
//! computed as they come and latencies stream into a bounded record
//! ([`crate::outcome::Latencies`]) with counters beside it.
//!
//! For a `flow`, each arrival starts one iteration (setup, steps, teardown)
//! whose setup and steps end by its intended time plus the timeout. Its
//! sample runs from the intended time to the end of its last main step
//! (teardown is cleanup, not the journey); a failed iteration counts as a
//! failed request with its flow's reason. Anomalies apply to `http` only.
//! At a shutdown, the iterations in flight are awaited, not dropped: each
//! stops at its next step and still runs its teardown.

use super::flow::FlowSpec;
use super::http::{self as http_probe, Checks, HttpSpec, RenderedBody};
use super::kind::{Assertion, RunContext};
use super::mutate::{self, Mutation};
use crate::config::check::Checker;
use crate::config::raw::RawSize;
use crate::generate::Generator;
use crate::net::http1::{KeepAlive, Request};
use crate::outcome::{FailureReason, Outcome, Stage as StepStage, WorkloadFacts};
use crate::tagging::RunIds;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use futures_util::task::AtomicWaker;
use rand::Rng;
use serde::Deserialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::Duration;
use tokio::runtime::{Runtime, RuntimeFlavor};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// `[workload]`: an open-model arrival rate.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkload {
    /// Send this many requests…
    pub requests: Option<u64>,
    /// …or keep sending for this long.
    #[serde(default, deserialize_with = "crate::config::raw::duration")]
    pub duration: Option<String>,
    /// Requests per second (constant arrival rate).
    pub rate: Option<f64>,
    /// Or ramping stages; each moves the rate linearly to its target.
    #[serde(default)]
    pub stages: Vec<RawStage>,
    /// The rate the first stage ramps from (default 0).
    pub start_rate: Option<f64>,
    /// At most this many requests in flight; later ones are dropped.
    pub max_concurrency: Option<usize>,
    /// Reuse connections (at most `max_concurrency`) instead of opening a
    /// fresh one per request (the default, what a new user sees).
    pub keep_alive: Option<bool>,
    /// `"auto"`, `"1.1"` or `"2"` for every request, over `[http]`'s.
    pub http_version: Option<toml::Value>,
    pub anomalies: Option<RawAnomalies>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStage {
    #[serde(default, deserialize_with = "crate::config::raw::duration")]
    pub duration: Option<String>,
    pub target: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnomalies {
    /// The share of requests to mutate, 0–1.
    pub fraction: Option<f64>,
    /// Which mutations to draw from (default all).
    #[serde(default)]
    pub mutations: Vec<String>,
    /// Fields to mutate (default any top-level field).
    #[serde(default)]
    pub fields: Vec<String>,
    /// The size an oversize value grows to (default 64 KiB).
    pub oversize: Option<RawSize>,
    /// What a correct rejection looks like (default a 4xx status).
    #[serde(default)]
    pub expect: Vec<String>,
}

pub use super::arrival::{
    ANOMALY_STREAM, Anomalies, BEHIND_SCHEDULE, DEFAULT_MAX_CONCURRENCY, DEFAULT_OVERSIZE,
    MAX_RATE, MAX_REQUESTS, Stage, Workload,
};

/// Checks `[workload]` for an `http` probe (`spec`) or a flow (`None`).
pub(crate) fn build(
    raw: RawWorkload,
    spec: Option<&HttpSpec>,
    c: &mut Checker<'_>,
) -> Option<Workload> {
    let before = c.error_count();
    let rate_ok = |r: f64| r.is_finite() && (0.0..=MAX_RATE).contains(&r);
    let mut stages = Vec::new();
    if raw.stages.is_empty() {
        let rate = match raw.rate {
            None => {
                c.missing("workload", "rate");
                1.0
            }
            Some(r) if !rate_ok(r) || r == 0.0 => {
                c.err(
                    "workload.rate",
                    format!("expected requests per second above 0 and at most {MAX_RATE}"),
                );
                1.0
            }
            Some(r) => r,
        };
        let duration = match (&raw.duration, raw.requests) {
            (Some(d), _) => c.duration("workload.duration", Some(d), Duration::from_secs(1)),
            (None, Some(n)) => Duration::from_secs_f64(n as f64 / rate),
            (None, None) => {
                c.err(
                    "workload",
                    "a workload needs `requests`, `duration` or `stages`",
                );
                Duration::from_secs(1)
            }
        };
        stages.push(Stage {
            duration,
            from: rate,
            to: rate,
        });
    } else {
        if raw.rate.is_some() || raw.duration.is_some() {
            c.err(
                "workload.stages",
                "write either `rate` and `duration`/`requests`, or `stages`, not both",
            );
        }
        let mut from = raw.start_rate.unwrap_or(0.0);
        if !rate_ok(from) {
            c.err(
                "workload.start_rate",
                format!("expected a rate from 0 to {MAX_RATE}"),
            );
        }
        for (i, st) in raw.stages.iter().enumerate() {
            let path = format!("workload.stages[{i}]");
            let duration = match &st.duration {
                None => {
                    c.missing(&path, "duration");
                    Duration::from_secs(1)
                }
                Some(d) => c.duration(&format!("{path}.duration"), Some(d), Duration::from_secs(1)),
            };
            let to = match st.target {
                None => {
                    c.missing(&path, "target");
                    0.0
                }
                Some(t) if !rate_ok(t) => {
                    c.err(
                        &format!("{path}.target"),
                        format!("expected a rate from 0 to {MAX_RATE}"),
                    );
                    0.0
                }
                Some(t) => t,
            };
            stages.push(Stage { duration, from, to });
            from = to;
        }
    }
    if let Some(n) = raw.requests {
        if n == 0 || n > MAX_REQUESTS {
            c.err(
                "workload.requests",
                format!("expected 1 to {MAX_REQUESTS} requests"),
            );
        }
    }
    let max_concurrency = raw.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY);
    if max_concurrency == 0 || max_concurrency > 10_000 {
        c.err(
            "workload.max_concurrency",
            "expected 1 to 10000 requests in flight",
        );
    }
    let keep_alive = raw.keep_alive.unwrap_or(false);
    if keep_alive && spec.is_none() {
        c.err(
            "workload.keep_alive",
            "keep_alive applies to `[http]` workloads; a flow's iterations open their own connections",
        );
    }
    let http_version = match (raw.http_version.as_ref(), spec) {
        (None, _) => None,
        (Some(v), Some(_)) => http_probe::http_version(c, "workload.http_version", Some(v)),
        (Some(_), None) => {
            c.err(
                "workload.http_version",
                "http_version applies to `[http]` workloads; a flow sets it on its steps",
            );
            None
        }
    };
    let anomalies = match (raw.anomalies, spec) {
        (None, _) => None,
        (Some(a), Some(spec)) => anomalies(a, spec, c),
        (Some(_), None) => {
            c.err(
                "workload.anomalies",
                "anomalies mutate an http request's JSON body: they apply to `[http]` workloads, not flows",
            );
            None
        }
    };
    let workload = Workload {
        stages,
        requests: raw.requests,
        max_concurrency,
        keep_alive,
        http_version,
        anomalies,
    };
    // Counted from the rates, not by listing the arrivals: a mistyped rate
    // must not allocate millions of entries at load.
    let arriving: f64 = workload
        .stages
        .iter()
        .map(|s| (s.from + s.to) / 2.0 * s.duration.as_secs_f64())
        .sum();
    let scheduled = match raw.requests {
        Some(n) => (arriving.ceil() as u64).min(n),
        None => arriving.ceil() as u64,
    };
    if c.error_count() == before && scheduled == 0 {
        c.err("workload", "this workload schedules no request");
    }
    if c.error_count() == before && raw.requests.is_none() && scheduled >= MAX_REQUESTS {
        c.err(
            "workload",
            format!("this workload schedules more than {MAX_REQUESTS} requests in one run"),
        );
    }
    (c.error_count() == before).then_some(workload)
}

fn anomalies(raw: RawAnomalies, spec: &HttpSpec, c: &mut Checker<'_>) -> Option<Anomalies> {
    if !matches!(spec.body, http_probe::Body::Json(_)) {
        c.err(
            "workload.anomalies",
            "anomalies mutate a JSON body: the request needs `json`",
        );
    }
    let fraction = match raw.fraction {
        None => {
            c.missing("workload.anomalies", "fraction");
            0.0
        }
        Some(f) if !(0.0..=1.0).contains(&f) => {
            c.err(
                "workload.anomalies.fraction",
                "expected a share from 0 to 1",
            );
            0.0
        }
        Some(f) => f,
    };
    let mut mutations = Vec::new();
    for (i, m) in raw.mutations.iter().enumerate() {
        match Mutation::ALL.iter().find(|k| k.as_str() == m) {
            Some(k) => mutations.push(*k),
            None => c.err(
                &format!("workload.anomalies.mutations[{i}]"),
                format!(
                    "unknown mutation `{m}` (expected one of {})",
                    Mutation::ALL
                        .iter()
                        .map(|k| format!("`{}`", k.as_str()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }
    }
    if mutations.is_empty() {
        mutations = Mutation::ALL.to_vec();
    }
    let oversize_bytes = c.size(
        "workload.anomalies.oversize",
        raw.oversize.as_ref(),
        DEFAULT_OVERSIZE,
        16 * 1024 * 1024,
    );
    let mut expect = c.expectations("workload.anomalies", &raw.expect, http_probe::SCOPE);
    if raw.expect.is_empty() {
        if let Ok(expr) = crate::expr::Expr::compile("status >= 400 && status < 500", &["status"]) {
            expect.push(Assertion {
                expr,
                location: c.location("workload.anomalies"),
            });
        }
    }
    Some(Anomalies {
        fraction,
        mutations,
        fields: raw.fields,
        oversize_bytes: usize::try_from(oversize_bytes).unwrap_or(usize::MAX),
        expect,
    })
}

/// One request of a workload.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// From the request's intended send time to its answer (or to its
    /// timeout): `None` when there was no answer to time (a refused
    /// connection).
    latency: Option<Duration>,
    /// From the request's first byte being written to its answer (or to
    /// its timeout), when `latency` is timed and the request left: what a
    /// closed-loop tool such as wrk measures. `None` for a flow.
    service: Option<Duration>,
    success: bool,
}

/// What one request of a workload came to.
struct Done {
    sample: Sample,
    reason: Option<FailureReason>,
    /// `Some(mutation)` for an anomaly; then `sample.success` means
    /// "rejected as expected".
    anomaly: Option<Mutation>,
}

/// What a workload sends per arrival.
#[derive(Clone, Copy)]
enum Unit<'s> {
    Request(&'s HttpSpec),
    Iteration(&'s FlowSpec),
}

impl Unit<'_> {
    fn noun(self) -> &'static str {
        match self {
            Unit::Request(_) => "requests",
            Unit::Iteration(_) => "iterations",
        }
    }
}

/// How often the progress bar's rate is recomputed.
const PROGRESS_REFRESH: Duration = Duration::from_millis(100);
/// The progress bar shows no rate before this much time has passed since
/// the first send.
const RATE_SETTLES: Duration = Duration::from_secs(1);

/// The send rate the progress bar shows: `sent` requests (or iterations)
/// over the time since the first was sent, counted as intervals between
/// sends (`sent - 1`), as the outcome's own `rate` is. Before a second
/// has passed a few sends over a few milliseconds say nothing, so none is
/// shown (indicatif's `{per_sec}`, an estimate from the ticks it has seen,
/// read wrong there: issue 16).
fn shown_rate(sent: u64, since_first: Option<Duration>) -> String {
    match since_first {
        Some(elapsed) if elapsed >= RATE_SETTLES => {
            let rate = sent.saturating_sub(1) as f64 / elapsed.as_secs_f64();
            format!("{rate:.1}/s")
        }
        _ => "…/s".to_owned(),
    }
}

pub async fn run(w: &Workload, ctx: &RunContext<'_>) -> Outcome {
    let ids = RunIds::generate();
    let mut outcome = Outcome::new(&ctx.probe.name, &ctx.env.name, ctx.probe.kind.name(), &ids);
    let kind = ctx.probe.kind.as_any();
    let unit = match (
        kind.downcast_ref::<HttpSpec>(),
        kind.downcast_ref::<FlowSpec>(),
    ) {
        (Some(spec), _) => Unit::Request(spec),
        (None, Some(spec)) => Unit::Iteration(spec),
        (None, None) => {
            outcome.fail(
                FailureReason::Request,
                "a workload needs an http or flow probe",
            );
            return outcome;
        }
    };
    let scheduled = w.schedule().count() as u64;
    let arrivals = w.schedule();
    let bar = ctx.progress.as_ref().map(|multi| {
        // Drawn nowhere until it is whole: added first, it showed a frame
        // without its prefix and rate.
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(scheduled),
            indicatif::ProgressDrawTarget::hidden(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
            "{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {} · {{msg}} · eta {{eta}}",
            unit.noun()
        )) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(format!("{} @ {}", ctx.probe.name, ctx.env.name));
        bar.set_message(shown_rate(0, None));
        multi.add(bar)
    });
    let facts = WorkloadFacts {
        scheduled,
        max_concurrency: w.max_concurrency as u64,
        ..WorkloadFacts::default()
    };
    let (options, fixed);
    let sender = match unit {
        Unit::Request(spec) => {
            // The TLS config (files as they are now) and proxy, once per
            // run: a file that cannot be read would fail every request the
            // same way.
            options = match http_probe::options(spec, ctx).await {
                Ok(mut options) => {
                    if let Some(version) = w.http_version {
                        options.version = version;
                    }
                    options
                }
                Err(fail) => {
                    outcome.fail(fail.reason, fail.message);
                    return super::redact(outcome, ctx.redactor);
                }
            };
            // A request with no template in it is rendered once, with the
            // headers every hop would add; each slot copies it once and
            // sends every request from its copy with the request's own
            // span, judged in the run's scope.
            fixed = if spec.is_static() {
                let scope = ctx.scope(&ids, 0);
                http_probe::build_request(spec, ctx, &ids, &scope)
                    .ok()
                    .map(|mut request| {
                        request.prepare(&options);
                        (request, scope)
                    })
            } else {
                None
            };
            Sender::Request(
                spec,
                Transport {
                    options: &options,
                    keep: None,
                    fixed: fixed.as_ref(),
                },
            )
        }
        Unit::Iteration(spec) => Sender::Iteration(spec),
    };
    // The shards' runtimes, after the run's last await before its slots
    // (a runtime dropped in an async context would block it); one that
    // cannot be made leaves the run on fewer threads, or on this task.
    let mut runtimes = shard_runtimes(w, unit);
    if runtimes.len() < 2 {
        runtimes.drain(..).for_each(Runtime::shutdown_background);
    }
    let shards = runtimes.len().max(1);
    // Dropped when the run ends, closing its connections: one pool per
    // shard, since a connection belongs to the runtime that opened it.
    let keeps: Vec<KeepAlive> = if w.keep_alive && matches!(unit, Unit::Request(_)) {
        (0..shards)
            .map(|_| KeepAlive::new(w.max_concurrency))
            .collect()
    } else {
        Vec::new()
    };
    let runs: Vec<Run<'_>> = (0..shards)
        .map(|k| Run {
            sender: sender.keeping(keeps.get(k)),
            w,
            ctx,
            ids: &ids,
            shard: k,
        })
        .collect();
    let start = Instant::now();
    let shared = Shared {
        ledger: Mutex::new(Ledger::new(
            arrivals,
            start,
            w.max_concurrency,
            shards,
            facts,
            bar,
        )),
        shards: (0..shards).map(|_| Asked::default()).collect(),
        ended: AtomicBool::new(false),
    };
    match (unit, runs.as_slice()) {
        // A request in flight at a shutdown is dropped with its slot.
        (Unit::Request(_), [one]) => {
            tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => {}
                () = drive(one, &shared) => {}
            }
        }
        (Unit::Request(_), _) => tokio::task::block_in_place(|| {
            on_threads(runtimes, &runs, &shared, &ctx.cancel);
        }),
        // A flow's iterations in flight at a shutdown stop at their next
        // step and run their teardown: the slots stop claiming, and are
        // waited for rather than dropped.
        (Unit::Iteration(_), _) => {
            for run in &runs {
                drive(run, &shared).await;
            }
        }
    }
    drop(runs);
    let ledger = shared
        .ledger
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(b) = &ledger.bar {
        b.finish_and_clear();
    }
    let Ledger {
        mut facts,
        failures,
        last_send,
        ..
    } = ledger;
    let period = last_send.duration_since(start).as_secs_f64();
    facts.rate = if period > 0.0 {
        facts.sent.saturating_sub(1) as f64 / period
    } else {
        0.0
    };
    facts.failures = failures
        .iter()
        .map(|(r, n)| (r.as_str().to_owned(), *n))
        .collect();
    facts.connections = (!keeps.is_empty()).then(|| keeps.iter().map(KeepAlive::opened).sum());
    facts.threads = shards as u64;
    drop(keeps);
    outcome.duration = start.elapsed();
    outcome.responded = !facts.latencies.is_empty();
    if ctx.cancel.is_cancelled() {
        outcome.fail(
            FailureReason::Cancelled,
            "the workload was cancelled (shutdown or interrupt)",
        );
    }
    let regular = facts.ok + facts.failed;
    if facts.failed > 0 {
        let reason = failures
            .iter()
            .max_by_key(|(_, n)| **n)
            .map_or(FailureReason::Assertion, |(r, _)| *r);
        let detail = failures
            .iter()
            .map(|(r, n)| format!("{r}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        outcome.fail(
            reason,
            format!(
                "{} of {regular} {} failed ({detail})",
                facts.failed,
                unit.noun()
            ),
        );
    }
    if facts.anomalies.unexpected > 0 {
        outcome.fail(
            FailureReason::Assertion,
            format!(
                "{} of {} anomalies were not rejected as expected",
                facts.anomalies.unexpected, facts.anomalies.sent
            ),
        );
    }
    outcome.success = outcome.reason.is_none();
    outcome.workload = Some(facts);
    super::redact(outcome, ctx.redactor)
}

/// A request that came due this recently, while every slot was sending,
/// is still sent by the slot that comes free: tokio's timer wakes a
/// sleeping slot on whole milliseconds, so a request's time is kept only
/// to within one. Dropping these instead made a freed slot sleep until the
/// next request's time, rounded up to the next millisecond: 0.66× wrk's
/// rate at 32 kept connections, against 0.78–0.82× with them sent.
const SLACK: Duration = Duration::from_millis(1);

/// The most spans of a full cap a run remembers for the requests its slots
/// have not claimed yet.
const FULL_SPANS: usize = 1024;

/// An `http` workload whose peak rate is above this many requests a
/// second is sharded over up to one thread per CPU (one per this many).
/// One task sent ~11,000 fresh connections or ~65,000 kept-alive requests
/// a second on this project's 2-CPU machine, so a slower workload keeps
/// its one task: a thread and a runtime are not worth making for a run
/// that leaves the one CPU mostly idle.
pub const SHARD_RATE: f64 = 2_000.0;

/// The runtimes of a run's shards: none when it keeps to one task (a flow,
/// a rate up to [`SHARD_RATE`], one CPU, or a single-threaded runtime,
/// where the run's task cannot leave its thread to wait for them).
fn shard_runtimes(w: &Workload, unit: Unit<'_>) -> Vec<Runtime> {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if !multi_thread || !matches!(unit, Unit::Request(_)) {
        return Vec::new();
    }
    let peak = w
        .stages
        .iter()
        .map(|s| s.from.max(s.to))
        .fold(0.0, f64::max);
    // By rate first: reading the CPU count (and its cgroup limit) costs
    // system calls a slow workload need not make.
    let by_rate = (peak / SHARD_RATE).ceil() as usize;
    if by_rate < 2 || w.max_concurrency < 2 {
        return Vec::new();
    }
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let wanted = by_rate.min(cpus).min(w.max_concurrency);
    if wanted < 2 {
        return Vec::new();
    }
    (0..wanted)
        .map_while(|_| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()
        })
        .collect()
}

/// Runs shard 0 on this thread and the others on threads of their own,
/// each on its runtime, until every shard is done or `cancel` (the
/// requests in flight are then dropped with their slots). A shard whose
/// thread cannot be started is taken out of the ledger, so no slot is made
/// for it.
fn on_threads(
    runtimes: Vec<Runtime>,
    runs: &[Run<'_>],
    shared: &Shared<'_>,
    cancel: &CancellationToken,
) {
    let shard = |rt: &Runtime, run: &Run<'_>| {
        rt.block_on(async {
            tokio::select! {
                biased;
                () = cancel.cancelled() => {}
                () = drive(run, shared) => {}
            }
        });
    };
    std::thread::scope(|scope| {
        let mut pairs = runtimes.into_iter().zip(runs);
        let first = pairs.next();
        for (rt, run) in pairs {
            let started = std::thread::Builder::new()
                .name(format!("workload-{}", run.shard))
                .spawn_scoped(scope, move || {
                    shard(&rt, run);
                    // Dropped outside any async context, where it may block.
                    drop(rt);
                });
            if let Err(e) = started {
                tracing::warn!(error = %e, "cannot start a workload thread; its share goes to the others");
                lock(shared).lose_shard(run.shard);
            }
        }
        if let Some((rt, run)) = first {
            shard(&rt, run);
            drop(rt);
        }
    });
}

/// What a run's slots send, and how.
#[derive(Clone, Copy)]
enum Sender<'r> {
    Request(&'r HttpSpec, Transport<'r>),
    Iteration(&'r FlowSpec),
}

impl<'r> Sender<'r> {
    /// The same, sending on `keep`'s connections (a shard's pool).
    fn keeping(self, keep: Option<&'r KeepAlive>) -> Sender<'r> {
        match self {
            Sender::Request(spec, transport) => {
                Sender::Request(spec, Transport { keep, ..transport })
            }
            iteration @ Sender::Iteration(_) => iteration,
        }
    }
}

/// What every slot of a shard sends with: borrowed from the run.
struct Run<'r> {
    sender: Sender<'r>,
    w: &'r Workload,
    ctx: &'r RunContext<'r>,
    ids: &'r RunIds,
    /// The shard the slots belong to (0 when the run is one task).
    shard: usize,
}

impl Run<'_> {
    /// Sends request (or iteration) `i`, intended for `intended`; `kept`
    /// is the slot's own copy of a fixed request, made at its first.
    async fn send(&self, i: u64, intended: Instant, kept: &mut Option<Request>) -> Done {
        match self.sender {
            Sender::Request(spec, transport) => one(self, spec, transport, kept, i, intended).await,
            // A flow's iteration future is large: boxed, it does not make
            // every slot as large.
            Sender::Iteration(spec) => Box::pin(iteration(spec, self.ctx, i, intended)).await,
        }
    }
}

/// What the slots of a run share, across its shards.
struct Shared<'w> {
    ledger: Mutex<Ledger<'w>>,
    /// What the ledger asked of each shard, by shard.
    shards: Vec<Asked>,
    /// Every request has been claimed: a shard without slots is done.
    ended: AtomicBool,
}

impl Shared<'_> {
    /// Notes that the arrivals ran out, for shards waiting to be asked.
    fn end(&self) {
        if !self.ended.swap(true, Ordering::AcqRel) {
            self.shards.iter().for_each(|s| s.waker.wake());
        }
    }
}

/// The slots the ledger asked one shard for, and how to wake its loop.
#[derive(Default)]
struct Asked {
    /// Slots asked for, not yet made.
    want: AtomicUsize,
    /// Wakes the shard's loop when another shard asked it for a slot, or
    /// the arrivals ran out.
    waker: AtomicWaker,
}

/// The arrivals not yet claimed and the run's tallies. Its lock is taken
/// once or twice a request: uncontended when the run is one task, and
/// briefly by two or more threads when it is sharded.
struct Ledger<'w> {
    arrivals: super::arrival::Schedule<'w>,
    start: Instant,
    /// The index of the next request to claim.
    next: u64,
    /// Slots made (or asked for), of at most `max_slots`, and of them
    /// those not sending.
    slots: usize,
    max_slots: usize,
    idle: usize,
    /// Slots made (or asked for) in each shard; `usize::MAX` for a shard
    /// that could not start, so none is asked of it.
    per_shard: Vec<usize>,
    /// Since when every one of `max_concurrency` slots has been sending,
    /// while they are.
    full_since: Option<Instant>,
    /// The earlier spans when they all were, that a request not yet
    /// claimed may have come due in (a slot that sends late trails the
    /// arrivals), oldest first; at most [`FULL_SPANS`].
    full: VecDeque<(Instant, Instant)>,
    /// The last request went out later than [`BEHIND_SCHEDULE`] after its
    /// intended time: a slot sleeping until it woke that late, so this
    /// machine is behind.
    late: bool,
    facts: WorkloadFacts,
    failures: BTreeMap<FailureReason, u64>,
    first_send: Option<Instant>,
    last_send: Instant,
    bar: Option<indicatif::ProgressBar>,
    /// The bar's rate (sends since the first one) is refreshed a few times
    /// a second: a message per request would cost a lock and a string.
    next_message: Instant,
}

/// What a slot claimed.
struct Claim {
    i: u64,
    intended: Instant,
}

impl<'w> Ledger<'w> {
    /// The ledger of a run that starts at `start` with one slot (in shard
    /// 0) of at most `max_slots`, over `shards` shards.
    fn new(
        arrivals: super::arrival::Schedule<'w>,
        start: Instant,
        max_slots: usize,
        shards: usize,
        facts: WorkloadFacts,
        bar: Option<indicatif::ProgressBar>,
    ) -> Ledger<'w> {
        let mut per_shard = vec![0; shards.max(1)];
        per_shard[0] = 1;
        Ledger {
            arrivals,
            start,
            next: 0,
            slots: 1,
            max_slots,
            idle: 1,
            per_shard,
            full_since: None,
            full: VecDeque::new(),
            late: false,
            facts,
            failures: BTreeMap::new(),
            first_send: None,
            last_send: start,
            bar,
            next_message: start,
        }
    }

    /// Claims the next request for a slot free `now`. Those that came due
    /// while every slot was sending are dropped, but for the last
    /// [`SLACK`].
    fn claim(&mut self, now: Instant) -> Option<Claim> {
        loop {
            let i = self.next;
            let intended = self.start + self.arrivals.next()?;
            self.next += 1;
            while self.full.front().is_some_and(|&(_, end)| end <= intended) {
                self.full.pop_front();
            }
            let at_cap = self.full.front().is_some_and(|&(from, _)| from <= intended)
                || self.full_since.is_some_and(|from| from <= intended);
            if !at_cap || intended + SLACK >= now {
                return Some(Claim { i, intended });
            }
            self.facts.dropped += 1;
            if self.late {
                self.facts.dropped_behind += 1;
            }
            self.tick(now);
        }
    }

    /// Counts a slot's send of a request intended for `intended`, `now`;
    /// `Some(shard)` when the run should make another slot there.
    fn sending(&mut self, intended: Instant, now: Instant) -> Option<usize> {
        let lag = now.saturating_duration_since(intended);
        self.facts.max_lag = self.facts.max_lag.max(lag);
        self.late = lag > BEHIND_SCHEDULE;
        self.facts.sent += 1;
        self.last_send = now;
        self.first_send.get_or_insert(now);
        self.tick(now);
        self.idle = self.idle.saturating_sub(1);
        if self.idle > 0 {
            return None;
        }
        // The new slot goes to the shard with the fewest, so the shards'
        // threads share the work.
        let fewest = (self.per_shard.iter().enumerate())
            .filter(|(_, n)| **n != usize::MAX)
            .min_by_key(|(_, n)| **n)
            .map(|(k, _)| k);
        match fewest {
            Some(k) if self.slots < self.max_slots => {
                self.slots += 1;
                self.idle += 1;
                self.per_shard[k] += 1;
                Some(k)
            }
            _ => {
                self.full_since = Some(now);
                None
            }
        }
    }

    /// Takes shard `k` (whose thread could not start, before it was asked
    /// for a slot) out of the run.
    fn lose_shard(&mut self, k: usize) {
        if let Some(n) = self.per_shard.get_mut(k) {
            *n = usize::MAX;
        }
    }

    /// Moves the bar on by one request sent or dropped.
    fn tick(&mut self, now: Instant) {
        let Some(b) = &self.bar else { return };
        b.inc(1);
        if now >= self.next_message {
            let since_first = self.first_send.map(|t| now.duration_since(t));
            b.set_message(shown_rate(self.facts.sent, since_first));
            self.next_message = now + PROGRESS_REFRESH;
        }
    }

    /// Tallies what one request came to, `now`: its slot is free again.
    fn record(&mut self, d: Done, now: Instant) {
        self.idle += 1;
        if let Some(from) = self.full_since.take() {
            if self.full.len() == FULL_SPANS {
                // The two oldest become one: a few requests may be dropped
                // that a free slot could have taken, never the reverse.
                if let (Some((oldest, _)), Some(next)) =
                    (self.full.pop_front(), self.full.front_mut())
                {
                    next.0 = oldest;
                }
            }
            self.full.push_back((from, now));
        }
        let facts = &mut self.facts;
        match d.anomaly {
            Some(m) => {
                facts.anomalies.sent += 1;
                *facts
                    .anomalies
                    .by_mutation
                    .entry(m.as_str().to_owned())
                    .or_default() += 1;
                if d.sample.success {
                    facts.anomalies.rejected += 1;
                } else {
                    facts.anomalies.unexpected += 1;
                }
            }
            None => {
                if d.sample.success {
                    facts.ok += 1;
                } else {
                    facts.failed += 1;
                    *self
                        .failures
                        .entry(d.reason.unwrap_or(FailureReason::Assertion))
                        .or_default() += 1;
                }
                if let Some(latency) = d.sample.latency {
                    facts.latencies.record(latency);
                }
                if let Some(service) = d.sample.service {
                    facts.service.record(service);
                }
            }
        }
    }
}

fn lock<'l, 'w>(shared: &'l Shared<'w>) -> MutexGuard<'l, Ledger<'w>> {
    shared.ledger.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Drives one shard's slots: starts with one in shard 0 (none in the
/// others), makes those the ledger asks of this shard, and returns when
/// every one has ended.
async fn drive(run: &Run<'_>, shared: &Shared<'_>) {
    let k = run.shard;
    let Some(Asked { want, waker }) = shared.shards.get(k) else {
        return;
    };
    let sharded = shared.shards.len() > 1;
    // Every slot is a future of this one task (they borrow the run
    // context), polled only when its own timer or I/O wakes it. A slot
    // that begins to send while no other is idle asks for another, up to
    // `max_concurrency`: a slow rate keeps one or two.
    let mut slots = FuturesUnordered::new();
    if k == 0 {
        slots.push(slot(run, shared));
    }
    std::future::poll_fn(|cx| {
        loop {
            if sharded {
                // Before reading `want`: a slot asked for after the read
                // wakes this loop again.
                waker.register(cx.waker());
            }
            let polled = slots.poll_next_unpin(cx);
            let wanted = want.swap(0, Ordering::Relaxed);
            for _ in 0..wanted {
                slots.push(slot(run, shared));
            }
            match polled {
                _ if wanted > 0 => {}
                Poll::Ready(Some(())) => {}
                // A shard with no slot yet waits to be asked for one (or
                // for the run to end); shard 0 is done.
                Poll::Ready(None) if k > 0 && !shared.ended.load(Ordering::Acquire) => {
                    return Poll::Pending;
                }
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await;
}

/// One slot of a run: claims the next request, sleeps until it is due,
/// sends it and tallies it, until no request is left or the run is
/// cancelled. A request sent as soon as it is claimed takes one lock.
async fn slot(run: &Run<'_>, shared: &Shared<'_>) {
    let mut done: Option<Done> = None;
    let mut kept = None;
    loop {
        let now = Instant::now();
        let (claim, more) = {
            let mut ledger = lock(shared);
            if let Some(d) = done.take() {
                ledger.record(d, now);
            }
            if run.ctx.cancel.is_cancelled() {
                return;
            }
            let Some(claim) = ledger.claim(now) else {
                drop(ledger);
                shared.end();
                return;
            };
            let more = (claim.intended <= now).then(|| ledger.sending(claim.intended, now));
            (claim, more)
        };
        let more = match more {
            Some(more) => more,
            None => {
                tokio::select! {
                    biased;
                    () = run.ctx.cancel.cancelled() => return,
                    () = tokio::time::sleep_until(claim.intended) => {}
                }
                lock(shared).sending(claim.intended, Instant::now())
            }
        };
        if let Some(k) = more {
            if let Some(asked) = shared.shards.get(k) {
                asked.want.fetch_add(1, Ordering::Relaxed);
                if k != run.shard {
                    asked.waker.wake();
                }
            }
        }
        done = Some(run.send(claim.i, claim.intended, &mut kept).await);
    }
}

/// Runs iteration `i` of a flow, intended to start at `intended`.
async fn iteration(spec: &FlowSpec, ctx: &RunContext<'_>, i: u64, intended: Instant) -> Done {
    let began = Instant::now();
    let o = super::flow::iterate(spec, ctx, i, intended + ctx.probe.timeout).await;
    // Timed when the target answered a main step, or ran out the clock;
    // not when nothing reached it (a refused connection is no latency).
    let reached = o
        .steps
        .iter()
        .any(|s| s.responded && s.stage != StepStage::Teardown);
    let timed = reached || o.reason == Some(FailureReason::Timeout);
    Done {
        sample: Sample {
            latency: timed.then(|| (began + o.duration).saturating_duration_since(intended)),
            service: None,
            success: o.reason.is_none(),
        },
        reason: o.reason,
        anomaly: None,
    }
}

/// How a workload's requests go out: built once per run.
#[derive(Clone, Copy)]
struct Transport<'r> {
    options: &'r crate::net::http1::TransportOptions,
    /// The run's connections, with `keep_alive`.
    keep: Option<&'r KeepAlive>,
    /// The request, when it holds no template, and the scope to judge in.
    fixed: Option<&'r (Request, crate::template::Scope)>,
}

/// Sends request `i`, intended for `intended`, and judges it. A fixed
/// request is sent from the slot's copy of it (`kept`), with this
/// request's span: one clone per slot, not per request.
async fn one(
    run: &Run<'_>,
    spec: &HttpSpec,
    send: Transport<'_>,
    kept: &mut Option<Request>,
    i: u64,
    intended: Instant,
) -> Done {
    let (w, ctx, ids) = (run.w, run.ctx, run.ids);
    let deadline = intended + ctx.probe.timeout;
    let drawn = w.anomalies.as_ref().and_then(|a| {
        let mut g = Generator::new(
            ctx.effective_seed(),
            &ctx.probe.name,
            ANOMALY_STREAM + i,
            &ctx.probe.marker,
        );
        let rng = g.rng();
        if a.mutations.is_empty() || !rng.random_bool(a.fraction) {
            return None;
        }
        let m = a.mutations[rng.random_range(0..a.mutations.len())];
        Some((a, m, g))
    });
    // Rendering, the exchange and judging all happen here, in the slot's
    // polls; the exchange notes when its last byte arrived, so judging
    // never inflates a latency.
    let own_scope;
    // A request rendered for this one alone (templates, an anomaly).
    let mut built;
    let (request, checks, anomaly, scope) = match (drawn, send.fixed) {
        (None, Some((fixed, scope))) => {
            let request = kept.get_or_insert_with(|| fixed.clone());
            ids.apply_child_span(&mut request.headers);
            (Some(request), Checks::Spec, None, scope)
        }
        (drawn, _) => {
            let request_ids = ids.child();
            own_scope = {
                let mut scope = ctx.scope(ids, i);
                scope.iteration = i;
                scope
            };
            let scope = &own_scope;
            let (made, checks, anomaly) = match drawn {
                None => (
                    http_probe::build_request(spec, ctx, &request_ids, scope),
                    Checks::Spec,
                    None,
                ),
                Some((a, m, mut g)) => {
                    match mutated(spec, ctx, &request_ids, scope, a, m, &mut g) {
                        Ok(Some(request)) => (Ok(request), Checks::Other(&a.expect), Some(m)),
                        // Nothing to mutate in this body: send it as a regular
                        // request.
                        Ok(None) => (
                            http_probe::build_request(spec, ctx, &request_ids, scope),
                            Checks::Spec,
                            None,
                        ),
                        Err(msg) => (Err(msg), Checks::Other(&a.expect), Some(m)),
                    }
                }
            };
            built = made.ok();
            (built.as_mut(), checks, anomaly, scope)
        }
    };
    // The OAuth2 token, when one applies: from the cache after the first
    // request (a refresh is waited for by every request that needs it, as
    // any client would).
    let request = match request {
        Some(request) => match spec.oauth2_token(ctx, deadline).await {
            Ok(token) => {
                if let Some(token) = token {
                    request
                        .headers
                        .insert(http::header::AUTHORIZATION, token.header());
                }
                Ok(request)
            }
            Err(_) => Err(FailureReason::Auth),
        },
        None => Err(FailureReason::Request),
    };
    let (verdict, finished, service) = match request {
        Err(reason) => {
            let verdict = http_probe::Verdict {
                reason: Some(reason),
                responded: false,
            };
            (verdict, Instant::now(), None)
        }
        Ok(request) => {
            let exchanged = http_probe::exchange(request, send.options, send.keep, deadline).await;
            (
                http_probe::verdict(spec, &exchanged, scope, &checks),
                exchanged.finished,
                exchanged.service(),
            )
        }
    };
    let timed = verdict.responded || verdict.reason == Some(FailureReason::Timeout);
    Done {
        sample: Sample {
            latency: timed.then(|| finished.saturating_duration_since(intended)),
            service: service.filter(|_| timed),
            success: verdict.reason.is_none(),
        },
        reason: verdict.reason,
        anomaly,
    }
}

/// The request with its JSON body mutated and the anomaly header set;
/// `None` when the body has nothing `mutation` applies to.
fn mutated(
    spec: &HttpSpec,
    ctx: &RunContext<'_>,
    ids: &RunIds,
    scope: &crate::template::Scope,
    a: &Anomalies,
    mutation: Mutation,
    g: &mut Generator,
) -> Result<Option<Request>, String> {
    let http_probe::Body::Json(template) = &spec.body else {
        return Ok(None);
    };
    let mut body = template.tree.render(scope)?;
    let Some(description) =
        mutate::apply(&mut body, mutation, &a.fields, a.oversize_bytes, g.rng())
    else {
        return Ok(None);
    };
    let mut request = http_probe::build_request_with(
        spec,
        ctx,
        ids,
        scope,
        RenderedBody::Json(body.to_string().into_bytes()),
    )?;
    if let Ok(v) = http::HeaderValue::from_str(&description) {
        request.headers.insert(crate::tagging::ANOMALY_HEADER, v);
    }
    Ok(Some(request))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Regression (issue 16): the progress bar's rate was indicatif's
    /// estimate, wildly off in a run's first seconds.
    #[test]
    fn the_progress_rate_waits_a_second_then_counts_sends_since_the_first() {
        let ms = Duration::from_millis;
        // Nothing sent yet, or a burst of sends within milliseconds: no
        // rate (3 sends in 10 ms would have read as 200/s).
        assert_eq!(shown_rate(0, None), "…/s");
        assert_eq!(shown_rate(3, Some(ms(10))), "…/s");
        assert_eq!(shown_rate(10, Some(ms(999))), "…/s");
        // 100/s: the 101st send 1 s after the first, and on from there.
        assert_eq!(shown_rate(101, Some(ms(1_000))), "100.0/s");
        assert_eq!(shown_rate(251, Some(ms(2_500))), "100.0/s");
        // A ramp from 0 starts the clock at its first send, not at the
        // run's start: 2 sends 1 s apart are 1/s.
        assert_eq!(shown_rate(2, Some(ms(1_000))), "1.0/s");
        assert_eq!(shown_rate(1, Some(ms(1_500))), "0.0/s");
        assert_eq!(shown_rate(31, Some(ms(1_200))), "25.0/s");
    }

    fn workload(stages: Vec<Stage>, requests: Option<u64>) -> Workload {
        Workload {
            stages,
            requests,
            max_concurrency: 10,
            keep_alive: false,
            http_version: None,
            anomalies: None,
        }
    }

    /// 100/s for a second, 100 requests: request i is due at 10·i ms.
    fn steady_100() -> Workload {
        workload(
            vec![Stage {
                duration: secs(1.0),
                from: 100.0,
                to: 100.0,
            }],
            Some(100),
        )
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// A request that came due while every slot was sending is dropped,
    /// even when the slots claim it late; one that came due while a slot
    /// was free, or before every slot was made, is sent (late if need
    /// be); and drops after a late send are the sender's.
    #[test]
    fn a_request_is_dropped_only_when_every_slot_was_sending_at_its_time() {
        let ms = |n: u64| Duration::from_millis(n);
        let answered = || Done {
            sample: Sample {
                latency: Some(ms(1)),
                service: None,
                success: true,
            },
            reason: None,
            anomaly: None,
        };
        let w = steady_100();
        let start = Instant::now();
        let at = |n: u64| start + ms(n);
        let mut l = Ledger::new(w.schedule(), start, 2, 1, WorkloadFacts::default(), None);
        // Two slots: the first sends request 0 and asks for a second, which
        // sends request 1 on time; from 10 ms both are sending.
        let a = l.claim(at(0)).unwrap();
        assert_eq!((a.i, a.intended), (0, at(0)));
        assert_eq!(l.sending(a.intended, at(0)), Some(0));
        let b = l.claim(at(0)).unwrap();
        assert_eq!((b.i, b.intended), (1, at(10)));
        assert_eq!(l.sending(b.intended, at(10)), None);
        // The first is answered at 35 ms: requests 2 and 3 came due while
        // both were sending; 4 is due at 40 ms.
        l.record(answered(), at(35));
        let c = l.claim(at(35)).unwrap();
        assert_eq!((c.i, c.intended), (4, at(40)));
        assert_eq!((l.facts.dropped, l.facts.dropped_behind), (2, 0));
        assert_eq!(l.sending(c.intended, at(40)), None);
        assert_eq!(l.facts.max_lag, Duration::ZERO);
        // Answered 0.5 ms after request 5 came due (while both were
        // sending): within the timer's millisecond, 5 is sent, not dropped.
        l.record(answered(), at(50) + ms(1) / 2);
        let d = l.claim(at(50) + ms(1) / 2).unwrap();
        assert_eq!((d.i, l.facts.dropped), (5, 2));

        // Two slots again, the second waking 15 ms late: request 2 (20 ms)
        // came due before both were sending (25 ms) and is sent late, at
        // 50 ms; 3 and 4 came due while both were, as did 5 (50 ms, while
        // both sent again until 52 ms); 6 is sent. The late send marks the
        // drops behind it as the sender's.
        let mut l = Ledger::new(w.schedule(), start, 2, 1, WorkloadFacts::default(), None);
        let a = l.claim(at(0)).unwrap();
        assert_eq!(l.sending(a.intended, at(0)), Some(0));
        let b = l.claim(at(0)).unwrap();
        assert_eq!(l.sending(b.intended, at(25)), None);
        l.record(answered(), at(50));
        let late = l.claim(at(50)).unwrap();
        assert_eq!((late.i, l.facts.dropped), (2, 0));
        assert_eq!(l.sending(late.intended, at(50)), None);
        assert!(l.late);
        assert_eq!(l.facts.max_lag, ms(30));
        l.record(answered(), at(52));
        let next = l.claim(at(52)).unwrap();
        assert_eq!(next.i, 6);
        assert_eq!((l.facts.dropped, l.facts.dropped_behind), (3, 3));

        // With a third slot allowed, the cap is never full: nothing is
        // dropped, however late.
        let mut l = Ledger::new(w.schedule(), start, 3, 1, WorkloadFacts::default(), None);
        for n in 0..2 {
            let claim = l.claim(at(0)).unwrap();
            assert_eq!(l.sending(claim.intended, at(10 * n + 30)), Some(0));
        }
        l.record(answered(), at(90));
        let late = l.claim(at(90)).unwrap();
        assert_eq!((late.i, l.facts.dropped), (2, 0));
    }

    #[test]
    fn a_sharded_runs_new_slots_go_to_the_shard_with_the_fewest() {
        let w = steady_100();
        let start = Instant::now();
        // Every slot made so far starts sending at once: which shard is
        // asked for the next one, each time.
        let asked = |l: &mut Ledger<'_>, n: usize| -> Vec<Option<usize>> {
            (0..n)
                .map(|_| {
                    let claim = l.claim(start).unwrap();
                    l.sending(claim.intended, start)
                })
                .collect()
        };
        let mut l = Ledger::new(w.schedule(), start, 4, 2, WorkloadFacts::default(), None);
        // Shard 0 starts with the first slot; the cap is four.
        assert_eq!(asked(&mut l, 4), [Some(1), Some(0), Some(1), None]);
        assert_eq!(l.per_shard, [2, 2]);

        // A shard whose thread did not start is never asked.
        let mut l = Ledger::new(w.schedule(), start, 3, 2, WorkloadFacts::default(), None);
        l.lose_shard(1);
        assert_eq!(asked(&mut l, 3), [Some(0), Some(0), None]);
    }

    #[test]
    fn a_constant_rate_spaces_arrivals_evenly_and_stops_at_the_count() {
        let w = workload(
            vec![Stage {
                duration: secs(10.0),
                from: 200.0,
                to: 200.0,
            }],
            Some(2000),
        );
        let a = w.arrivals();
        assert_eq!(a.len(), 2000);
        assert_eq!(a[0], Duration::ZERO);
        assert!((a[1].as_secs_f64() - 0.005).abs() < 1e-9);
        assert!((a[1999].as_secs_f64() - 9.995).abs() < 1e-6);
        // A duration without a count sends rate × duration.
        let w = workload(
            vec![Stage {
                duration: secs(2.0),
                from: 50.0,
                to: 50.0,
            }],
            None,
        );
        assert_eq!(w.arrivals().len(), 100);
    }

    #[test]
    fn a_ramp_accumulates_arrivals_as_the_integral_of_its_rate() {
        // 0 → 100/s over 10 s: 500 arrivals, denser towards the end;
        // then 100/s for 5 s: 500 more.
        let w = workload(
            vec![
                Stage {
                    duration: secs(10.0),
                    from: 0.0,
                    to: 100.0,
                },
                Stage {
                    duration: secs(5.0),
                    from: 100.0,
                    to: 100.0,
                },
            ],
            None,
        );
        let a = w.arrivals();
        assert!((a.len() as i64 - 1000).abs() <= 1, "{}", a.len());
        assert!(a.windows(2).all(|p| p[0] <= p[1]), "arrivals are ordered");
        // n(t) = 5 t² in the ramp: 125 arrivals by t = 5 s.
        let by_5s = a.iter().filter(|t| **t < secs(5.0)).count();
        assert!((by_5s as i64 - 125).abs() <= 1, "{by_5s}");
        let in_last_second = a.iter().filter(|t| **t >= secs(14.0)).count();
        assert!((in_last_second as i64 - 100).abs() <= 1, "{in_last_second}");
        // A ramp down to zero ends the arrivals.
        let w = workload(
            vec![Stage {
                duration: secs(4.0),
                from: 50.0,
                to: 0.0,
            }],
            None,
        );
        let a = w.arrivals();
        assert!((a.len() as i64 - 100).abs() <= 1, "{}", a.len());
        assert!(a.last().unwrap() < &secs(4.0));
    }
}
