//! Probe kinds and the runner that turns one (probe, environment) pair into
//! an [`Outcome`].
//!
//! The set of kinds is a closed enum; adding a kind is adding a file here and
//! a variant to [`ProbeKind`]. A probe never imports alerting or telemetry:
//! it produces an `Outcome` and stops there.
//!
//! Every kind file has the same shape: `RawX` (the `[x]` table as written),
//! `XSpec` (checked at load by `build`), `XFacts` (what a run saw, with
//! `gauges()` for /metrics), `SCOPE` (the names its `expect` expressions may
//! read) and `run`.

pub mod command;
pub mod dns;
pub mod flow;
pub mod grpc;
pub mod http;
pub mod mutate;
pub mod net;
pub mod stream;
pub mod tcp;
pub mod tls;
pub mod transport;
pub mod workload;

use crate::config::secret::Redactor;
use crate::config::{Environment, Probe, Tagging};
use crate::expr::Facts;
use crate::outcome::{AssertionResult, FailureReason, Outcome, SourceLocation};
use crate::tagging::RunIds;
use crate::template::Scope;
use std::collections::BTreeMap;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The kind-specific, checked body of a probe.
#[derive(Debug)]
pub enum ProbeKind {
    Http(http::HttpSpec),
    Flow(flow::FlowSpec),
    Tcp(tcp::TcpSpec),
    Dns(dns::DnsSpec),
    Tls(tls::TlsSpec),
    Grpc(grpc::GrpcSpec),
    Stream(stream::StreamSpec),
    Command(command::CommandSpec),
}

impl ProbeKind {
    pub fn name(&self) -> &'static str {
        match self {
            ProbeKind::Http(_) => "http",
            ProbeKind::Flow(_) => "flow",
            ProbeKind::Tcp(_) => "tcp",
            ProbeKind::Dns(_) => "dns",
            ProbeKind::Tls(_) => "tls",
            ProbeKind::Grpc(_) => "grpc",
            ProbeKind::Stream(_) => "stream",
            ProbeKind::Command(_) => "command",
        }
    }
}

/// A compiled `expect` entry and where it was written.
#[derive(Debug)]
pub struct Assertion {
    pub expr: crate::expr::Expr,
    pub location: SourceLocation,
}

/// Everything one run needs besides the probe's own body.
pub struct RunContext<'a> {
    pub probe: &'a Probe,
    pub env: &'a Environment,
    /// The environment's base URL, `builtin:sandbox` already replaced by the
    /// sandbox's real address.
    pub base_url: &'a url::Url,
    pub tagging: &'a Tagging,
    pub redactor: &'a Redactor,
    /// The environment's variables overlaid with `--var` (and, for the
    /// sandbox, the addresses of its extra listeners).
    pub vars: &'a BTreeMap<String, String>,
    /// Cancelled when the daemon gives up on in-flight runs: a run stops
    /// what it is doing, and a flow still runs its teardown.
    pub cancel: CancellationToken,
    /// `--seed`, which overrides the probe's own `seed`.
    pub seed: Option<u64>,
    /// Where a workload draws its progress bar (`--once` on a terminal).
    pub progress: Option<indicatif::MultiProgress>,
}

impl RunContext<'_> {
    /// The deadline of a run that starts now.
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.probe.timeout
    }

    /// The seed in force: `--seed`, else the probe's.
    pub fn effective_seed(&self) -> Option<u64> {
        self.seed.or(self.probe.seed)
    }

    /// A template scope for this run; `stream` numbers the request inside
    /// the run so seeded payloads do not depend on timing.
    pub fn scope(&self, ids: &RunIds, stream: u64) -> Scope {
        let generator = crate::generate::Generator::new(
            self.effective_seed(),
            &self.probe.name,
            stream,
            &self.probe.marker,
        );
        let vars = self
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        Scope::new(
            generator,
            vars,
            &ids.run_id,
            &self.probe.name,
            &self.env.name,
        )
    }

    /// Renders a template value, for kinds whose fields take templates.
    pub fn render(&self, text: &crate::template::Text, ids: &RunIds) -> Result<String, String> {
        if text.is_literal() {
            return Ok(text.source().to_owned());
        }
        text.render(&self.scope(ids, 0))
    }
}

/// Runs one probe against one environment once, within the probe's timeout.
pub async fn run(ctx: &RunContext<'_>) -> Outcome {
    // Workloads and flows watch the cancel token themselves: a workload
    // stops sending, a flow still runs its teardown.
    if let Some(w) = &ctx.probe.workload {
        return workload::run(w, ctx).await;
    }
    let kind = async {
        match &ctx.probe.kind {
            ProbeKind::Flow(spec) => flow::run(spec, ctx).await,
            ProbeKind::Http(spec) => http::run(spec, ctx).await,
            ProbeKind::Tcp(spec) => tcp::run(spec, ctx).await,
            ProbeKind::Dns(spec) => dns::run(spec, ctx).await,
            ProbeKind::Tls(spec) => tls::run(spec, ctx).await,
            ProbeKind::Grpc(spec) => grpc::run(spec, ctx).await,
            ProbeKind::Stream(spec) => stream::run(spec, ctx).await,
            ProbeKind::Command(spec) => command::run(spec, ctx).await,
        }
    };
    if let ProbeKind::Flow(_) = &ctx.probe.kind {
        return kind.await;
    }
    tokio::select! {
        o = kind => o,
        () = ctx.cancel.cancelled() => {
            let mut o = Outcome::new(&ctx.probe.name, &ctx.env.name, ctx.probe.kind.name(), &RunIds::generate());
            o.fail(FailureReason::Cancelled, "the run was cancelled at shutdown");
            o
        }
    }
}

/// Checks `expect` against `facts`, appending one result per expectation;
/// the first failure sets the outcome's reason to `assertion` unless a
/// reason is already set. Returns how many failed.
pub fn check_expectations(outcome: &mut Outcome, expect: &[Assertion], facts: &Facts) -> usize {
    let failed = check_into(&mut outcome.assertions, expect, facts);
    if failed > 0 && outcome.reason.is_none() {
        outcome.reason = Some(FailureReason::Assertion);
    }
    failed
}

/// Checks `expect` against `facts` into `results`; returns how many failed.
pub fn check_into(
    results: &mut Vec<AssertionResult>,
    expect: &[Assertion],
    facts: &Facts,
) -> usize {
    let mut failed = 0;
    for assertion in expect {
        let check = assertion.expr.check(facts);
        if !check.passed {
            failed += 1;
        }
        results.push(AssertionResult {
            expression: assertion.expr.source().to_owned(),
            passed: check.passed,
            actual: check.actual,
            location: Some(assertion.location.clone()),
        });
    }
    failed
}

/// "2 of 3 expectations failed", or `None` when all passed.
pub fn expectation_summary(results: &[AssertionResult]) -> Option<String> {
    let failed = results.iter().filter(|a| !a.passed).count();
    (failed > 0).then(|| {
        format!(
            "{failed} of {} expectation{} failed",
            results.len(),
            if results.len() == 1 { "" } else { "s" }
        )
    })
}

/// Sets `success` from the reason and, when expectations failed and no
/// other error was recorded, the summary as the error.
pub fn finish(outcome: &mut Outcome) {
    if outcome.error.is_none() {
        outcome.error = expectation_summary(&outcome.assertions);
    }
    outcome.success = outcome.reason.is_none();
}

/// Scrubs every secret value from the user-visible strings of an outcome.
pub fn redact(mut outcome: Outcome, redactor: &Redactor) -> Outcome {
    if redactor.is_empty() {
        return outcome;
    }
    let scrub_http = |h: &mut crate::outcome::HttpFacts| redactor.scrub(&mut h.url);
    if let Some(e) = outcome.error.as_mut() {
        redactor.scrub(e);
    }
    if let Some(h) = outcome.http.as_mut() {
        scrub_http(h);
    }
    for a in &mut outcome.assertions {
        redactor.scrub(&mut a.actual);
        redactor.scrub(&mut a.expression);
    }
    for s in &mut outcome.steps {
        if let Some(e) = s.error.as_mut() {
            redactor.scrub(e);
        }
        if let Some(h) = s.http.as_mut() {
            scrub_http(h);
        }
        for a in &mut s.assertions {
            redactor.scrub(&mut a.actual);
            redactor.scrub(&mut a.expression);
        }
    }
    outcome
}
