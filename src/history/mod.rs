//! The monitor's memory: every run, per-minute and per-hour latency
//! snapshots, state changes and kept values, in `history.sqlite` in the
//! state directory, so availability, percentiles over any window, SLO
//! budgets and incident timelines survive a restart.
//!
//! One writer thread owns the file ([`writer`]); the daemon hands it
//! entries without waiting ([`History::record`]), and readers query beside
//! it ([`store::Reader`]). `store.rs` holds the SQL, `schema.rs` the
//! migrations, `snapshot.rs` the histogram encoding.

pub mod artifacts;
pub mod baseline;
pub mod schema;
pub mod silences;
pub mod slo;
pub mod snapshot;
pub mod store;
pub mod writer;

pub use store::{Reader, Retention, RunRow, Transition, Verdict, Window};

use crate::outcome::{Latencies, Outcome};
use crate::threshold::State;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use store::Tallies;
use writer::{Changed, Entry, Kept, Msg};

/// The daemon's handle on its history: a sender to the writer thread and
/// a reader for queries.
pub struct History {
    sender: writer::Sender,
    reader: Arc<Reader>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The wall clock, in Unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl History {
    /// Opens (creating or migrating) the history in `dir` and starts its
    /// writer. A file that is not a synthmon history, or of a newer
    /// schema, is an error: the caller runs without history.
    pub fn open(dir: &Path, retention: Retention) -> Result<History, store::Error> {
        History::open_with_clock(dir, retention, Arc::new(now_ms))
    }

    /// [`History::open`] with the clock the writer's roll-ups and
    /// retention read (tests run it fast).
    pub fn open_with_clock(
        dir: &Path,
        retention: Retention,
        clock: writer::Clock,
    ) -> Result<History, store::Error> {
        let w = store::Writer::open(dir)?;
        let reader = Arc::new(Reader::open(dir)?);
        let (sender, thread) =
            writer::spawn(w, retention, clock).map_err(|source| store::Error::CreateDir {
                dir: dir.to_owned(),
                source,
            })?;
        Ok(History {
            sender,
            reader,
            thread: Some(thread),
        })
    }

    pub fn reader(&self) -> Arc<Reader> {
        self.reader.clone()
    }

    pub fn health(&self) -> &writer::Health {
        &self.sender.health
    }

    /// Records a finished run (after the measurement stage filled its
    /// thresholds). Never waits: a full queue drops it and counts.
    pub fn record(&self, outcome: &Outcome) {
        self.sender.send(Msg::Run(Box::new(entry_of(outcome))));
    }

    /// Records a run that does not count against SLOs and uptime (its pair
    /// was in maintenance, silenced, or the monitor was offline): its rows
    /// are kept (the runs list shows it), its minute counts and latencies
    /// are not, so every figure computed from them leaves it out.
    pub fn record_uncounted(&self, outcome: &Outcome) {
        let mut entry = entry_of(outcome);
        entry.minutes.clear();
        self.sender.send(Msg::Run(Box::new(entry)));
    }

    /// Records a state change of a pair.
    pub fn transition(&self, probe: &str, environment: &str, transition: Transition) {
        self.sender.send(Msg::Transition(Box::new(Changed {
            probe: probe.to_owned(),
            environment: environment.to_owned(),
            transition,
        })));
    }

    /// Stores the values a run kept for the next one.
    pub fn keep(
        &self,
        probe: &str,
        environment: &str,
        values: &BTreeMap<String, serde_json::Value>,
    ) {
        if values.is_empty() {
            return;
        }
        self.sender.send(Msg::Keep(Box::new(Kept {
            probe: probe.to_owned(),
            environment: environment.to_owned(),
            values: values.clone(),
            at_ms: now_ms(),
        })));
    }

    /// Waits (blocking) until everything recorded so far is committed.
    pub fn flush_blocking(&self, timeout: Duration) {
        self.sender.flush_blocking(timeout);
    }

    /// Makes the file refuse writes from now on (tests of a failing disk).
    pub fn refuse_writes(&self) {
        self.sender.send(Msg::RefuseWrites);
    }

    /// Commits what is pending and stops the writer (blocking).
    pub fn close(self) {
        let History { sender, thread, .. } = self;
        sender.flush_blocking(Duration::from_secs(5));
        // Dropping the last sender ends the thread after its final commit.
        drop(sender);
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// Parses an outcome's RFC 3339 start into Unix milliseconds.
fn started_ms(outcome: &Outcome) -> i64 {
    chrono::DateTime::parse_from_rfc3339(&outcome.started_at)
        .map(|t| t.timestamp_millis())
        .unwrap_or_else(|_| now_ms())
}

/// Pass, degraded (passed with a threshold not ok) or fail.
pub fn verdict_of(outcome: &Outcome) -> Verdict {
    if !outcome.success {
        Verdict::Fail
    } else if outcome
        .thresholds
        .iter()
        .any(|t| matches!(t.state, State::Degraded | State::Failing))
    {
        Verdict::Degraded
    } else {
        Verdict::Pass
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The rows and minute tallies of one outcome: the whole run (step `""`)
/// and, for a flow, each step that ran.
pub fn entry_of(outcome: &Outcome) -> Entry {
    let started = started_ms(outcome);
    let minute = store::minute_of(started);
    let verdict = verdict_of(outcome);
    // A row and a minute for the run and each step: sized once (a `Vec`
    // grown by a push makes room for four).
    let rows = 1 + outcome.steps.len();
    let mut entry = Entry {
        probe: outcome.probe.clone(),
        environment: outcome.environment.clone(),
        runs: Vec::with_capacity(rows),
        minutes: Vec::with_capacity(rows),
    };
    entry.runs.push(RunRow {
        probe: outcome.probe.clone(),
        environment: outcome.environment.clone(),
        step: String::new(),
        started_ms: started,
        intended_ms: outcome.intended_ms.unwrap_or(started),
        duration_us: micros(outcome.duration),
        result: verdict,
        reason: outcome.reason.map(|r| r.as_str().to_owned()),
        status: outcome.http.as_ref().and_then(|h| h.status),
        attempts: outcome.attempts,
        trace_id: outcome.trace_id.clone(),
        run_id: outcome.run_id.clone(),
        error: outcome.error.clone(),
    });
    let degraded = u64::from(verdict == Verdict::Degraded);
    let tallies = match &outcome.workload {
        Some(w) => Tallies {
            runs: w.ok + w.failed,
            failed: w.failed,
            degraded: if degraded > 0 { w.ok } else { 0 },
            latencies: w.latencies.clone(),
        },
        None => {
            let mut latencies = Latencies::default();
            if outcome.success {
                match outcome
                    .details
                    .as_ref()
                    .and_then(crate::outcome::Details::latencies)
                {
                    Some(each) => each.into_iter().for_each(|d| latencies.record(d)),
                    None if outcome.responded => latencies.record(outcome.duration),
                    None => {}
                }
            }
            Tallies {
                runs: 1,
                failed: u64::from(!outcome.success),
                degraded,
                latencies,
            }
        }
    };
    entry.minutes.push((String::new(), minute, tallies));
    for step in &outcome.steps {
        if step.span_id.is_empty() {
            continue; // never ran
        }
        let step_started = started.saturating_add(micros(step.offset) / 1000);
        entry.runs.push(RunRow {
            probe: outcome.probe.clone(),
            environment: outcome.environment.clone(),
            step: step.name.clone(),
            started_ms: step_started,
            intended_ms: step_started,
            duration_us: micros(step.duration),
            result: if step.success {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            reason: step.reason.map(|r| r.as_str().to_owned()),
            status: step.http.as_ref().and_then(|h| h.status),
            attempts: step.attempts,
            trace_id: outcome.trace_id.clone(),
            run_id: outcome.run_id.clone(),
            error: step.error.clone(),
        });
        let mut latencies = Latencies::default();
        if step.success && step.responded {
            latencies.record(step.duration);
        }
        entry.minutes.push((
            step.name.clone(),
            store::minute_of(step_started),
            Tallies {
                runs: 1,
                failed: u64::from(!step.success),
                degraded: 0,
                latencies,
            },
        ));
    }
    entry
}
