//! Probe kinds: the registry, and the runner that turns one (probe,
//! environment) pair into an [`Outcome`].
//!
//! A kind is one file: its `[table]` (serde, `deny_unknown_fields`), its
//! checked spec and builder, its run, and the facts it reports (as data:
//! [`crate::outcome::KindFacts`]). [`KINDS`] lists them, one line each;
//! `check`, `list`, reports and `/metrics` treat every kind alike through
//! the [`Kind`] trait and the outcome. What the kinds share lives in
//! [`kind`]; a probe never imports alerting, telemetry or the daemon: it
//! produces an `Outcome` and stops there.

pub mod arrival;
pub mod artifact;
pub mod command;
pub mod dns;
pub mod flow;
pub mod grpc;
pub mod http;
pub mod icmp;
pub mod kind;
pub mod mutate;
pub mod reach;
pub mod retry;
pub mod stream;
pub mod tcp;
pub mod tls;
pub mod websocket;
pub mod workload;

use crate::outcome::{FailureReason, Outcome};
use crate::tagging::RunIds;

pub use kind::{
    Assertion, BuildInput, Kind, KindEntry, Probe, RunContext, check_expectations, check_into,
    expectation_summary, finish, redact,
};

/// Every probe kind, one line each: the table name a probe file uses and
/// the kind's builder.
pub const KINDS: &[KindEntry] = &[
    http::KIND,
    flow::KIND,
    tcp::KIND,
    dns::KIND,
    tls::KIND,
    grpc::KIND,
    stream::KIND,
    command::KIND,
    websocket::KIND,
    icmp::KIND,
];

/// The registry entry for a table name.
pub fn kind_named(name: &str) -> Option<&'static KindEntry> {
    KINDS.iter().find(|k| k.name == name)
}

/// Runs one probe against one environment once, within the probe's
/// timeout, and again while it fails as far as its `retries` allow
/// ([`retry::run`]: each try within the timeout, the last try's outcome
/// with the record of the others). Its `kept` values are what the next
/// run reads as `prev` ([`kind::carry_kept`]: a value this run did not
/// keep anew is handed on); every try reads the same `prev`.
pub async fn run(ctx: &RunContext<'_>) -> Outcome {
    let mut outcome = retry::run(ctx.probe.retries, &ctx.cancel, || run_kind(ctx)).await;
    kind::carry_kept(ctx, &mut outcome);
    outcome
}

async fn run_kind(ctx: &RunContext<'_>) -> Outcome {
    // Workloads and flows watch the cancel token themselves: a workload
    // stops sending, a flow still runs its teardown.
    if let Some(w) = &ctx.probe.workload {
        // Boxed: inline, a workload's state (~5.5 KB) made every run's
        // future that big, and the scheduler's spawn copied ~13.5 KB a
        // run of HTTP probes (4 % of the daemon's CPU at 1,000 runs/s).
        return Box::pin(workload::run(w, ctx)).await;
    }
    let kind = ctx.probe.kind.run(ctx);
    if ctx.probe.kind.runs_to_the_end() {
        return kind.await;
    }
    tokio::select! {
        o = kind => o,
        () = ctx.cancel.cancelled() => {
            let mut o = Outcome::new(&ctx.probe.name, &ctx.env.name, ctx.probe.kind.name(), &RunIds::generate());
            o.fail(FailureReason::Cancelled, "the run was cancelled (shutdown or interrupt)");
            o
        }
    }
}
