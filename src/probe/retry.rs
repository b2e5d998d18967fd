//! Retries before failure: a probe's `retries = { attempts = 2, backoff =
//! "1s" }`, checked here ([`build`], [`check_fits`]), and the one loop that
//! tries a run again ([`run`]), which [`super::run`] goes through for the
//! daemon's scheduler and `--once` alike.
//!
//! A run that failed is tried again, up to `attempts` more times (0 to
//! [`MAX_ATTEMPTS`]), `backoff` apart (fixed, 1s by default). Each try is a
//! whole run: its own deadline (the probe's full `timeout`), its own run
//! and trace ids, and for a flow its setup, steps and teardown, so the
//! teardown runs after every try. The outcome is the last try's, plus
//! [`Outcome::attempts`] (tries in all), [`Outcome::retried`] (each failed
//! try before it: reason, sentence, duration, status, ids) and
//! [`Outcome::flaky`] when it passed only after a retry: a pass, never a
//! plain one. Its latency (duration, phases) is the last try's: for a
//! flaky pass, the try that succeeded, so a retry never inflates the
//! latency windows and a failed try is never a fast sample.
//!
//! Because each try gets the full timeout, a probe loads only if its worst
//! case (every try at its timeout, a flow's teardown bound included, and
//! the backoffs between) ends before its next run. Not retried: a run cut
//! short by a shutdown (nor is one retried after the cancel fires: a
//! backoff ends at it), and workloads, which count their failed requests
//! instead (`retries` with `[workload]` is refused at load).

use crate::config::Schedule;
use crate::config::check::{Checker, min_gap, parse_duration};
use crate::outcome::{FailureReason, Outcome, RetriedAttempt};
use serde::Deserialize;
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The most tries after the first: a target that fails six times in a row
/// is failing, not flaky.
pub const MAX_ATTEMPTS: u32 = 5;

/// The pause between tries when `backoff` is not written.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);

/// The longest `backoff`: the schedule's interval bounds it in practice.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// `retries = { … }` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetries {
    /// Tries after the first failed one, 0 to [`MAX_ATTEMPTS`]. A signed
    /// integer, so a negative one is told the range rather than a type.
    pub attempts: Option<i64>,
    /// The pause before each retry, `"1s"`.
    #[serde(default, deserialize_with = "crate::config::raw::duration")]
    pub backoff: Option<String>,
}

/// A probe's checked `retries`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retries {
    /// Tries after the first failed one, 1 to [`MAX_ATTEMPTS`]
    /// (`attempts = 0` builds no `Retries`).
    pub attempts: u32,
    pub backoff: Duration,
}

impl Retries {
    /// The longest a run with its retries can take when one try takes at
    /// most `attempt`: every try failing at its limit, and the backoffs.
    pub fn worst_case(&self, attempt: Duration) -> Duration {
        attempt
            .saturating_mul(self.attempts + 1)
            .saturating_add(self.backoff.saturating_mul(self.attempts))
    }
}

/// Checks a probe's `retries` table; `None` for `attempts = 0` (no retry,
/// as without the table) and after recording what is wrong.
pub(crate) fn build(raw: RawRetries, c: &mut Checker<'_>) -> Option<Retries> {
    let attempts = match raw.attempts {
        None => {
            c.missing("retries", "attempts");
            None
        }
        Some(n) => match u32::try_from(n) {
            Ok(n) if n <= MAX_ATTEMPTS => Some(n),
            _ => {
                c.err(
                    "retries.attempts",
                    format!(
                        "expected 0 to {MAX_ATTEMPTS} tries after the first failed one, found {n}"
                    ),
                );
                None
            }
        },
    };
    let backoff = match raw.backoff.as_deref() {
        None => Some(DEFAULT_BACKOFF),
        Some(text) => parse_duration(text, MAX_BACKOFF)
            .map_err(|msg| c.err("retries.backoff", msg))
            .ok(),
    };
    match (attempts?, backoff?) {
        (0, _) => None,
        (attempts, backoff) => Some(Retries { attempts, backoff }),
    }
}

/// A run with its retries must end before the schedule's next run: one
/// try takes at most `attempt` (the timeout, plus a flow's teardown bound).
pub(crate) fn check_fits(
    c: &mut Checker<'_>,
    retries: &Retries,
    attempt: Duration,
    schedule: &Schedule,
) {
    let Some(interval) = min_gap(schedule) else {
        return;
    };
    // A timeout at or over the interval is its own error already.
    if attempt >= interval {
        return;
    }
    let worst = retries.worst_case(attempt);
    if worst >= interval {
        let tries = retries.attempts + 1;
        let backoffs = retries.attempts;
        c.err(
            "retries",
            format!(
                "with its retries a run may take {} ({tries} tries of up to {} each and {backoffs} backoff{} of {}), \
                 which must be shorter than the time between runs ({}): lower `attempts`, `backoff` or `timeout`",
                humantime::format_duration(worst),
                humantime::format_duration(attempt),
                if backoffs == 1 { "" } else { "s" },
                humantime::format_duration(retries.backoff),
                humantime::format_duration(interval)
            ),
        );
    }
}

/// Runs `attempt` once, and again while it fails and `retries` (the
/// probe's) allow, `backoff` apart; the last try's outcome with the record
/// of the tries before it. A try that was cancelled, or `cancel` firing
/// during a backoff, ends the retries: the last finished try stands.
pub async fn run<F, Fut>(
    retries: Option<Retries>,
    cancel: &CancellationToken,
    mut attempt: F,
) -> Outcome
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Outcome>,
{
    let mut outcome = attempt().await;
    let Some(retries) = retries else {
        return outcome;
    };
    let mut retried: Vec<RetriedAttempt> = Vec::new();
    while retried.len() < retries.attempts as usize && worth_retrying(&outcome, cancel) {
        let cancelled = tokio::select! {
            () = tokio::time::sleep(retries.backoff) => false,
            () = cancel.cancelled() => true,
        };
        if cancelled {
            break;
        }
        let next = attempt().await;
        let failed = std::mem::replace(&mut outcome, next);
        retried.push(record(count(retried.len() + 1), failed));
    }
    outcome.attempts = count(retried.len() + 1);
    outcome.flaky = outcome.success && !retried.is_empty();
    outcome.retried = retried;
    outcome
}

/// A failed try is tried again unless a shutdown is under way.
fn worth_retrying(outcome: &Outcome, cancel: &CancellationToken) -> bool {
    !outcome.success && outcome.reason != Some(FailureReason::Cancelled) && !cancel.is_cancelled()
}

/// What is kept of a failed try.
fn record(attempt: u32, o: Outcome) -> RetriedAttempt {
    RetriedAttempt {
        attempt,
        reason: o.reason,
        error: o.error,
        duration: o.duration,
        started_at: o.started_at,
        status: o.http.as_ref().and_then(|h| h.status),
        run_id: o.run_id,
        trace_id: o.trace_id,
    }
}

/// Tries are at most `MAX_ATTEMPTS + 1`; saturating all the same.
fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::tagging::RunIds;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// A try's result: `None` passes, `Some(reason)` fails with it.
    type Try = Option<FailureReason>;

    /// (retries, scripted tries, tries that ran, success, flaky, reason
    /// of the outcome, reasons of the retried tries).
    type Row<'a> = (
        Option<Retries>,
        &'a [Try],
        usize,
        bool,
        bool,
        Try,
        &'a [Try],
    );

    fn outcome(result: Try) -> Outcome {
        let mut o = Outcome::new("p", "e", "http", &RunIds::generate());
        match result {
            None => o.success = true,
            Some(reason) => o.fail(reason, format!("{reason} happened")),
        }
        o
    }

    /// Runs the loop over `tries` (taken in order) with `retries`;
    /// returns the outcome and how many tries ran.
    async fn run_tries(
        retries: Option<Retries>,
        cancel: &CancellationToken,
        tries: &[Try],
    ) -> (Outcome, usize) {
        let left = Mutex::new(tries.iter().copied().collect::<VecDeque<Try>>());
        let o = run(retries, cancel, || {
            let next = left.lock().unwrap().pop_front();
            async move { outcome(next.expect("no more tries scripted")) }
        })
        .await;
        let ran = tries.len() - left.lock().unwrap().len();
        (o, ran)
    }

    const REFUSED: Try = Some(FailureReason::ConnectRefused);
    const STATUS: Try = Some(FailureReason::Status);
    const CANCELLED: Try = Some(FailureReason::Cancelled);

    #[tokio::test(start_paused = true)]
    async fn tries_until_a_pass_or_the_attempts_are_spent() {
        let two = Some(Retries {
            attempts: 2,
            backoff: Duration::from_secs(1),
        });
        let table: &[Row<'_>] = &[
            (None, &[STATUS], 1, false, false, STATUS, &[]),
            (None, &[None], 1, true, false, None, &[]),
            (two, &[None], 1, true, false, None, &[]),
            (two, &[REFUSED, None], 2, true, true, None, &[REFUSED]),
            (
                two,
                &[REFUSED, STATUS, None],
                3,
                true,
                true,
                None,
                &[REFUSED, STATUS],
            ),
            (
                two,
                &[STATUS, STATUS, REFUSED],
                3,
                false,
                false,
                REFUSED,
                &[STATUS, STATUS],
            ),
            // A cancelled try is not tried again.
            (two, &[CANCELLED], 1, false, false, CANCELLED, &[]),
            (
                two,
                &[STATUS, CANCELLED],
                2,
                false,
                false,
                CANCELLED,
                &[STATUS],
            ),
        ];
        for (i, (retries, tries, ran, success, flaky, reason, retried)) in table.iter().enumerate()
        {
            let started = tokio::time::Instant::now();
            let (o, n) = run_tries(*retries, &CancellationToken::new(), tries).await;
            assert_eq!(n, *ran, "row {i}: tries run");
            assert_eq!(o.attempts as usize, *ran, "row {i}: attempts");
            assert_eq!(o.success, *success, "row {i}: success");
            assert_eq!(o.flaky, *flaky, "row {i}: flaky");
            assert_eq!(o.reason, *reason, "row {i}: reason");
            let seen: Vec<Try> = o.retried.iter().map(|a| a.reason).collect();
            assert_eq!(seen, *retried, "row {i}: retried");
            let numbers: Vec<u32> = o.retried.iter().map(|a| a.attempt).collect();
            assert_eq!(numbers, (1..*ran as u32).collect::<Vec<_>>(), "row {i}");
            assert!(o.retried.iter().all(|a| a.error.is_some()), "row {i}");
            // The paused clock moved by the backoffs alone.
            let backoffs = u32::try_from(ran - 1).unwrap();
            assert_eq!(
                started.elapsed(),
                Duration::from_secs(1) * backoffs,
                "row {i}: backoffs"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_during_the_backoff_ends_the_retries_with_the_last_try() {
        let retries = Some(Retries {
            attempts: 3,
            backoff: Duration::from_secs(10),
        });
        let cancel = CancellationToken::new();
        let trigger = {
            let cancel = cancel.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(15)).await;
                cancel.cancel();
            }
        };
        let ((o, ran), ()) = tokio::join!(
            run_tries(retries, &cancel, &[STATUS, REFUSED, None, None]),
            trigger
        );
        // The first retry ran at 10s; the cancel at 15s cut the second
        // backoff short.
        assert_eq!(ran, 2);
        assert_eq!(o.attempts, 2);
        assert_eq!(o.reason, REFUSED);
        assert!(!o.flaky);
        assert_eq!(o.retried.len(), 1);
    }

    #[test]
    fn the_worst_case_is_every_try_at_its_limit_and_the_backoffs() {
        let r = Retries {
            attempts: 2,
            backoff: Duration::from_secs(1),
        };
        assert_eq!(
            r.worst_case(Duration::from_secs(5)),
            Duration::from_secs(17)
        );
        let huge = Retries {
            attempts: MAX_ATTEMPTS,
            backoff: Duration::MAX,
        };
        assert_eq!(huge.worst_case(Duration::MAX), Duration::MAX);
    }
}
