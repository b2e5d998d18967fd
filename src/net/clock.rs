//! The clock of one run: its one deadline and its contiguous phases.

use super::error::Fail;
use crate::expr::duration_value;
use crate::outcome::{FailureReason, Outcome, Phase};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// The clock of one run: its deadline and its phases.
///
/// A phase ends at the instant its work finished, failed or ran out of
/// time, and the next one starts there, so the phases add up to
/// [`Clock::elapsed`] exactly (the "phases are contiguous" invariant). Work
/// runs under the one deadline of the run through [`Clock::within`], so a
/// trickling peer cannot stretch a run by answering each step just in time.
pub struct Clock {
    /// When the run began: deadline messages count from here, since that
    /// is what the probe's `timeout` counts from too.
    origin: Instant,
    /// When the measured part began (see [`Clock::begin`]).
    start: Instant,
    /// The end of the last phase.
    mark: Instant,
    deadline: Instant,
    phases: Vec<Phase>,
}

impl Clock {
    /// A clock started now, with `phases` listed in order at zero. A kind
    /// that always reports the same phases lists them here, and one that
    /// does not apply (`tls` over plaintext) stays zero; a kind that
    /// reports only the phases it went through lists none.
    pub fn new(deadline: Instant, phases: &[&'static str]) -> Clock {
        let now = Instant::now();
        Clock {
            origin: now,
            start: now,
            mark: now,
            deadline,
            phases: phases
                .iter()
                .map(|&name| Phase {
                    name,
                    seconds: Duration::ZERO,
                })
                .collect(),
        }
    }

    /// Starts the measured part now: the work before (rendering templates,
    /// reading a CA bundle) is synthmon's, not the target's. The deadline
    /// still counts from the start of the run.
    pub fn begin(&mut self) {
        let now = Instant::now();
        self.start = now;
        self.mark = now;
    }

    /// When the measured part began.
    pub fn start(&self) -> Instant {
        self.start
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Ends the phase in progress now, charging its time to `name`; a
    /// phase lapped again (a reconnect's time in `stream`) adds up.
    pub fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        let spent = now.saturating_duration_since(self.mark);
        self.mark = now;
        match self.phases.iter_mut().find(|p| p.name == name) {
            Some(phase) => phase.seconds += spent,
            None => self.phases.push(Phase {
                name,
                seconds: spent,
            }),
        }
    }

    /// Charges `spent` to phase `name` as the next stretch of the run, for
    /// work timed by someone else (an HTTP/1.1 exchange's resolve, connect
    /// and tls, measured by [`super::http1`]): the phase in progress then
    /// starts `spent` later. The caller charges only time that has passed
    /// since the last lap, so the phases still add up to
    /// [`Clock::elapsed`].
    pub fn charge(&mut self, name: &'static str, spent: Duration) {
        self.mark += spent;
        match self.phases.iter_mut().find(|p| p.name == name) {
            Some(phase) => phase.seconds += spent,
            None => self.phases.push(Phase {
                name,
                seconds: spent,
            }),
        }
    }

    /// Lists phase `name` at zero where it took no time (`resolve` for an
    /// IP literal), unless it is listed already.
    pub fn skip(&mut self, name: &'static str) {
        if !self.phases.iter().any(|p| p.name == name) {
            self.phases.push(Phase {
                name,
                seconds: Duration::ZERO,
            });
        }
    }

    /// Runs `work` as phase `name` within the deadline and laps it, whether
    /// the work finished, failed or ran out of time. The deadline's reason
    /// and words follow the phase (see [`Clock::step`]).
    pub async fn phase<F: Future>(
        &mut self,
        name: &'static str,
        work: F,
    ) -> Result<F::Output, Fail> {
        self.step(name, name, work).await
    }

    /// [`Clock::phase`] for a kind whose phases are coarser than its steps
    /// (`stream` charges resolving, connecting and the handshake all to
    /// `connect`): `step` (`resolve`, `connect`, `tls` or another name)
    /// decides the deadline's reason and words, `phase` gets the time.
    pub async fn step<F: Future>(
        &mut self,
        step: &str,
        phase: &'static str,
        work: F,
    ) -> Result<F::Output, Fail> {
        let (reason, doing) = match step {
            // Nothing reached the target yet: a connect timeout, as the
            // `http` kind says too.
            "resolve" => (
                FailureReason::ConnectTimeout,
                "while resolving the host (resolve)".to_owned(),
            ),
            "connect" => (
                FailureReason::ConnectTimeout,
                "while connecting (connect)".to_owned(),
            ),
            "tls" => (
                FailureReason::Timeout,
                "during the tls handshake (tls)".to_owned(),
            ),
            other => (
                FailureReason::Timeout,
                format!("during the {other} ({other})"),
            ),
        };
        let out = self.within_as(reason, &doing, work).await;
        self.lap(phase);
        out
    }

    /// Runs `fut` within the deadline; past it, a `timeout` that says what
    /// was being done (`doing`, e.g. "during the call (call)"). A deadline
    /// already passed fails before `fut` is polled. The caller laps.
    pub async fn within<F: Future>(&self, doing: &str, fut: F) -> Result<F::Output, Fail> {
        self.within_as(FailureReason::Timeout, doing, fut).await
    }

    /// [`Clock::within`] with the reason to give when the deadline passes.
    pub async fn within_as<F: Future>(
        &self,
        reason: FailureReason,
        doing: &str,
        fut: F,
    ) -> Result<F::Output, Fail> {
        let expired = || {
            Fail::new(
                reason,
                format!(
                    "deadline exceeded after {:.3}s {doing}",
                    self.origin.elapsed().as_secs_f64()
                ),
            )
        };
        if Instant::now() >= self.deadline {
            return Err(expired());
        }
        tokio::time::timeout_at(self.deadline, fut)
            .await
            .map_err(|_| expired())
    }

    /// From the start of the measured part to the end of the last phase:
    /// the sum of the phases.
    pub fn elapsed(&self) -> Duration {
        self.mark.saturating_duration_since(self.start)
    }

    /// `timings` for expectations: each phase by name, plus `total`.
    pub fn timings(&self) -> cel::Value {
        let mut m: HashMap<String, cel::Value> = self
            .phases
            .iter()
            .map(|p| (p.name.to_owned(), duration_value(p.seconds)))
            .collect();
        m.insert("total".to_owned(), duration_value(self.elapsed()));
        m.into()
    }

    /// Writes the phases and the run's duration (their sum) into `outcome`.
    pub fn record(&self, outcome: &mut Outcome) {
        outcome.phases = self.phases.clone();
        outcome.duration = self.elapsed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn charged_time_moves_the_next_phase_start_so_phases_still_add_up() {
        let mut clock = Clock::new(Instant::now() + Duration::from_secs(10), &["resolve"]);
        tokio::time::advance(Duration::from_millis(30)).await;
        clock.lap("resolve");
        tokio::time::advance(Duration::from_millis(50)).await;
        // Someone else timed 20 ms of connecting within those 50 ms.
        clock.charge("connect", Duration::from_millis(20));
        clock.lap("query");
        let phases: Vec<_> = clock
            .phases
            .iter()
            .map(|p| (p.name, p.seconds.as_millis()))
            .collect();
        assert_eq!(phases, [("resolve", 30), ("connect", 20), ("query", 30)]);
        assert_eq!(clock.elapsed(), Duration::from_millis(80));
    }
}
