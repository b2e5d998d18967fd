//! A workload's checked arrival schedule: constant and linear-ramp stages,
//! the concurrency cap and the anomaly settings, with the arithmetic of
//! when the n-th request is due. Data only, so the probe definition can hold
//! it without depending on the code that drives a workload.

use super::mutate::Mutation;
use crate::expr::Assertion;
use std::time::Duration;

/// The most requests one run may schedule. A run's memory does not grow
/// with them (arrivals are computed as they come, latencies streamed into
/// a histogram); this bounds how long one run's verdict waits.
pub const MAX_REQUESTS: u64 = 1_000_000;
/// The highest rate a stage may ask for, per second: a guard against a
/// mistyped rate, above what one core sends (one run sends at most
/// [`MAX_REQUESTS`] anyway).
pub const MAX_RATE: f64 = 1_000_000.0;
/// Default in-flight cap.
pub const DEFAULT_MAX_CONCURRENCY: usize = 100;
/// Default size of an `oversize` anomaly's value.
pub const DEFAULT_OVERSIZE: u64 = 64 * 1024;
/// Stream numbers at and above this are the anomaly draws'.
pub const ANOMALY_STREAM: u64 = 1 << 62;
/// A request sent later than this after its intended time shows the sender
/// behind schedule: drops until the next request sent on time are charged
/// to this machine falling behind, not only to the target holding the
/// slots. Ten times the timer's millisecond granularity, so ordinary
/// wake-up jitter never counts.
pub const BEHIND_SCHEDULE: Duration = Duration::from_millis(10);

#[derive(Debug)]
pub struct Workload {
    /// Rate segments, in order.
    pub stages: Vec<Stage>,
    /// Stop after this many requests even if stages remain.
    pub requests: Option<u64>,
    pub max_concurrency: usize,
    /// Reuse connections (at most `max_concurrency`) instead of opening
    /// one per request.
    pub keep_alive: bool,
    /// `http_version` for the workload's requests, over the request's own.
    pub http_version: Option<crate::net::http2::HttpVersion>,
    pub anomalies: Option<Anomalies>,
}

/// The rate moves linearly from `from` to `to` over `duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    pub from: f64,
    pub to: f64,
}

#[derive(Debug)]
pub struct Anomalies {
    pub fraction: f64,
    pub mutations: Vec<Mutation>,
    pub fields: Vec<String>,
    pub oversize_bytes: usize,
    pub expect: Vec<Assertion>,
}

impl Workload {
    /// The longest a run can last: every stage plus the last request's
    /// timeout.
    pub fn span(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }

    /// The intended offsets of every request, from the run's start, in
    /// order, computed as they are asked for: a million-request run holds
    /// no list of them.
    pub fn schedule(&self) -> Schedule<'_> {
        Schedule {
            stages: &self.stages,
            stage: 0,
            base: Duration::ZERO,
            done: 0.0,
            emitted: 0,
            limit: self.requests.unwrap_or(MAX_REQUESTS).min(MAX_REQUESTS),
        }
    }

    /// Every intended offset at once (tests, small runs).
    pub fn arrivals(&self) -> Vec<Duration> {
        self.schedule().collect()
    }
}

/// The arrival offsets of a [`Workload`], one at a time.
pub struct Schedule<'w> {
    stages: &'w [Stage],
    /// The stage in progress and when it began.
    stage: usize,
    base: Duration,
    /// Arrivals accrued by the stages before this one, carried as a
    /// fraction so the boundary between stages loses nothing.
    done: f64,
    emitted: u64,
    limit: u64,
}

impl Iterator for Schedule<'_> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        while self.emitted < self.limit {
            let stage = self.stages.get(self.stage)?;
            let d = stage.duration.as_secs_f64();
            let total = (stage.from + stage.to) / 2.0 * d;
            // Request k (counting from 1 across stages) is due when the
            // cumulative arrivals reach k - 1: request 1 leaves at once.
            let need = self.emitted as f64 - self.done;
            // An arrival due exactly at the stage's end belongs to the next
            // stage (or, after the last, to no run).
            if need >= total - 1e-9 {
                self.done += total;
                self.base += stage.duration;
                self.stage += 1;
                continue;
            }
            self.emitted += 1;
            let t = time_for(stage.from, stage.to, d, need.max(0.0));
            return Some(self.base + Duration::from_secs_f64(t));
        }
        None
    }
}

/// Within a stage whose rate goes linearly from `r0` to `r1` over `d`
/// seconds, the time at which `n` arrivals have accumulated:
/// n = r0·t + (r1 − r0)·t² / (2d).
fn time_for(r0: f64, r1: f64, d: f64, n: f64) -> f64 {
    let a = (r1 - r0) / (2.0 * d);
    if a.abs() < 1e-12 {
        return if r0 > 0.0 { n / r0 } else { d };
    }
    let disc = (r0 * r0 + 4.0 * a * n).max(0.0);
    ((-r0 + disc.sqrt()) / (2.0 * a)).clamp(0.0, d)
}
