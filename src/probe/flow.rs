//! The `flow` probe: a user journey as a list of HTTP steps.
//!
//! `setup` steps, then `steps`, then `teardown` steps. Each step is an
//! `[http]` request plus a name, `capture` (variable → expression over the
//! response) and optionally `until` (repeat the request until an expression
//! holds, for asynchronous processing). Captured values feed later steps'
//! templates as `vars.NAME`.
//!
//! Rules the code keeps:
//! - the main stages (setup, steps) share the probe's one deadline and stop
//!   at the first failing step, which the outcome names;
//! - teardown **always** runs — after a failure, a timeout or a shutdown —
//!   with a budget of its own (`teardown_timeout`), every teardown step is
//!   tried even when an earlier one failed, and a teardown step that needs a
//!   value never captured (its creating step failed) is skipped, not failed;
//! - a teardown failure never replaces the main failure: the main reason
//!   stays, and the teardown's is reported beside it; when only the
//!   teardown failed, the run fails with reason `teardown` (leftover test
//!   data is a fault worth knowing about);
//! - a capture marked `secret` is added to the run's redactor, so its value
//!   never reaches a report, a log or a trace;
//! - a step's OAuth2 token (its own `oauth2`, else its environment's) is
//!   taken from the cache or fetched before its first attempt, carried by
//!   every attempt and added to the run's redactor; failing to get one
//!   fails the step with reason `auth`;
//! - `[flow]`'s `tls` and `proxy` (`super::reach`) apply to every step,
//!   which cannot set its own;
//! - a step is one client span: every request it sends (each `until`
//!   attempt) carries the step's own span id in `traceparent`, the id its
//!   outcome reports; the run's own id is the root span's, so every id the
//!   target saw is in the exported trace;
//! - every step's expectations may read `prev`; the probe's `keep` entries
//!   are evaluated once the main steps all passed, against the last main
//!   step's response with `vars` holding every capture (a flow that failed
//!   part-way hands on the previous values);
//! - a run that fails keeps an artifact (`super::artifact`): every step's
//!   captures (names, values masked) and each failed step's exchange; a
//!   workload's iterations keep none.

use super::artifact;
use super::http::{self as http_probe, Checks, HttpSpec, Performed};
use super::http::{RawCapture, RawHttp};
use super::kind::{BuildInput, Kind, KindEntry, RunContext, RunFuture};
use crate::config::check::Checker;
use crate::expr::Expr;
use crate::outcome::{
    Artifact, Exchange, FailureReason, Outcome, Stage, StepArtifact, StepOutcome,
};
use crate::tagging::RunIds;
use crate::template::Scope;
use serde::Deserialize;
use std::time::Duration;
use tokio::time::Instant;

/// How long a step in flight when the run is cancelled may still take to
/// finish (within the run's deadline and the teardown's budget): enough
/// for a create whose order would otherwise be left behind uncaptured,
/// short enough that a cancel stays prompt.
const CANCEL_GRACE: Duration = Duration::from_secs(1);

/// The default pause between `until` attempts.
pub const DEFAULT_UNTIL_INTERVAL: Duration = Duration::from_millis(500);
/// The default budget of the teardown.
pub const DEFAULT_TEARDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest teardown budget a flow may ask for; also how long a daemon
/// shutdown waits for cancelled flows to clean up. With the default drain
/// (10 s) it keeps a shutdown inside the unit's `TimeoutStopSec=30s` and
/// Kubernetes' default 30 s grace period.
pub const MAX_TEARDOWN_TIMEOUT: Duration = Duration::from_secs(15);

/// `[flow]`: setup, steps and teardown, each a list of requests.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFlow {
    #[serde(default)]
    pub setup: Vec<RawHttp>,
    #[serde(default)]
    pub steps: Vec<RawHttp>,
    #[serde(default)]
    pub teardown: Vec<RawHttp>,
    /// Time the teardown gets of its own, after the run's deadline if need be.
    #[serde(default, deserialize_with = "crate::config::raw::duration")]
    pub teardown_timeout: Option<String>,
    /// Every step's `tls` over the environment's (see `super::reach`).
    pub tls: Option<crate::config::raw::RawTls>,
    /// Every step's proxy instead of the environment's.
    pub proxy: Option<String>,
    pub proxy_auth: Option<crate::config::raw::RawBasicAuth>,
    pub no_proxy: Option<Vec<String>>,
}

#[derive(Debug)]
pub struct FlowSpec {
    pub setup: Vec<Step>,
    pub steps: Vec<Step>,
    pub teardown: Vec<Step>,
    pub teardown_timeout: Duration,
}

#[derive(Debug)]
pub struct Step {
    pub name: String,
    pub request: HttpSpec,
    pub captures: Vec<Capture>,
    pub until: Option<Until>,
    /// Captured variables this step's templates read: a teardown step is
    /// skipped when one of them was never captured.
    pub needs: Vec<String>,
}

#[derive(Debug)]
pub struct Capture {
    pub name: String,
    pub expr: Expr,
    pub secret: bool,
}

#[derive(Debug)]
pub struct Until {
    pub expr: Expr,
    pub interval: Duration,
    /// Bounded by the run's deadline in any case.
    pub timeout: Option<Duration>,
}

/// Checks `[flow]`. `env_vars` are the variables the probe's environments
/// define; each step may also read what earlier steps capture.
pub(crate) fn build(raw: RawFlow, env_vars: &[String], c: &mut Checker<'_>) -> Option<FlowSpec> {
    let before = c.error_count();
    if raw.steps.is_empty() {
        c.missing("flow", "steps");
    }
    let teardown_timeout = c.duration(
        "flow.teardown_timeout",
        raw.teardown_timeout.as_deref(),
        DEFAULT_TEARDOWN_TIMEOUT,
    );
    if teardown_timeout.is_zero() || teardown_timeout > MAX_TEARDOWN_TIMEOUT {
        c.err(
            "flow.teardown_timeout",
            format!(
                "expected a duration from 1ms to {}",
                humantime::format_duration(MAX_TEARDOWN_TIMEOUT)
            ),
        );
    }
    // One `tls` and proxy for the whole flow: every step inherits them.
    let reach = std::sync::Arc::new(super::reach::Reach::build(
        c,
        "flow",
        raw.tls.as_ref(),
        &crate::config::check::ProxyKeys {
            proxy: raw.proxy.as_deref(),
            proxy_auth: raw.proxy_auth.as_ref(),
            no_proxy: raw.no_proxy.as_deref(),
        },
    ));
    let mut known: Vec<String> = env_vars.to_vec();
    let mut captured: Vec<String> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut stages = Vec::new();
    for (stage, list) in [
        ("setup", raw.setup),
        ("steps", raw.steps),
        ("teardown", raw.teardown),
    ] {
        let mut built = Vec::new();
        for (i, step) in list.into_iter().enumerate() {
            let prefix = format!("flow.{stage}[{i}]");
            if let Some(mut s) = build_step(&prefix, step, &mut known, &mut captured, &mut names, c)
            {
                s.request.reach = std::sync::Arc::clone(&reach);
                built.push(s);
            }
        }
        stages.push(built);
    }
    if c.error_count() > before {
        return None;
    }
    let teardown = stages.pop().unwrap_or_default();
    let steps = stages.pop().unwrap_or_default();
    let setup = stages.pop().unwrap_or_default();
    Some(FlowSpec {
        setup,
        steps,
        teardown,
        teardown_timeout,
    })
}

fn build_step(
    prefix: &str,
    raw: RawHttp,
    known: &mut Vec<String>,
    captured: &mut Vec<String>,
    names: &mut Vec<String>,
    c: &mut Checker<'_>,
) -> Option<Step> {
    let name = match &raw.name {
        Some(n) if !crate::config::check::valid_name(n) => {
            c.err(
                &format!("{prefix}.name"),
                format!("expected a name matching [A-Za-z0-9][A-Za-z0-9_.-]*, found `{n}`"),
            );
            n.clone()
        }
        Some(n) => n.clone(),
        None => format!(
            "{}-{}",
            prefix
                .trim_start_matches("flow.")
                .split('[')
                .next()
                .unwrap_or("step"),
            names.len() + 1
        ),
    };
    if names.contains(&name) {
        c.err(
            &format!("{prefix}.name"),
            format!("duplicate step name `{name}`: step names label metrics and must be unique"),
        );
    }
    names.push(name.clone());
    for (key, set) in [
        ("tls", raw.tls.is_some()),
        ("proxy", raw.proxy.is_some()),
        ("proxy_auth", raw.proxy_auth.is_some()),
        ("no_proxy", raw.no_proxy.is_some()),
    ] {
        if set {
            c.err(
                &format!("{prefix}.{key}"),
                format!(
                    "`{key}` applies to the whole flow: set it in `[flow]`, every step inherits it"
                ),
            );
        }
    }
    let request = http_probe::request(c, prefix, &raw, known);
    let mut captures = Vec::new();
    for (var, capture) in &raw.capture {
        let path = format!("{prefix}.capture.{var}");
        if !valid_var(var) {
            c.err(
                &path,
                format!("`{var}` is not a variable name (letters, digits and _)"),
            );
            continue;
        }
        let (source, secret) = match capture {
            RawCapture::Expr(s) => (s.as_str(), false),
            RawCapture::Full(t) => (t.from.as_str(), t.secret),
        };
        if let Some(expr) = c.expr(&path, source, http_probe::SCOPE) {
            captures.push(Capture {
                name: var.clone(),
                expr,
                secret,
            });
        }
    }
    let until = match &raw.until {
        None => {
            for (key, set) in [
                ("until_interval", raw.until_interval.is_some()),
                ("until_timeout", raw.until_timeout.is_some()),
            ] {
                if set {
                    c.err(&format!("{prefix}.{key}"), format!("`{key}` needs `until`"));
                }
            }
            None
        }
        Some(source) => {
            let expr = c.expr(&format!("{prefix}.until"), source, http_probe::SCOPE);
            let interval = c.duration(
                &format!("{prefix}.until_interval"),
                raw.until_interval.as_deref(),
                DEFAULT_UNTIL_INTERVAL,
            );
            if interval < Duration::from_millis(10) {
                c.err(
                    &format!("{prefix}.until_interval"),
                    "expected at least 10ms between attempts",
                );
            }
            let timeout = raw
                .until_timeout
                .as_deref()
                .map(|t| c.duration(&format!("{prefix}.until_timeout"), Some(t), Duration::ZERO));
            expr.map(|expr| Until {
                expr,
                interval,
                timeout,
            })
        }
    };
    let request = request?;
    let needs = vars_read(&request)
        .into_iter()
        .filter(|v| captured.contains(v))
        .collect();
    for cap in &captures {
        if !known.contains(&cap.name) {
            known.push(cap.name.clone());
        }
        if !captured.contains(&cap.name) {
            captured.push(cap.name.clone());
        }
    }
    Some(Step {
        name,
        request,
        captures,
        until,
        needs,
    })
}

fn valid_var(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Every `vars.X` a request's templates read.
fn vars_read(spec: &HttpSpec) -> Vec<String> {
    let mut out = spec.url.vars_read();
    for (_, t) in &spec.headers {
        out.extend(t.vars_read());
    }
    for (_, t) in &spec.query {
        out.extend(t.vars_read());
    }
    match &spec.body {
        http_probe::Body::Empty => {}
        http_probe::Body::Raw(t) => out.extend(t.vars_read()),
        http_probe::Body::Json(t) => out.extend(t.tree.vars_read()),
        http_probe::Body::Form(pairs) => {
            for (_, t) in pairs {
                out.extend(t.vars_read());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

pub async fn run(spec: &FlowSpec, ctx: &RunContext<'_>) -> Outcome {
    pass(spec, ctx, 0, ctx.deadline(), true).await
}

/// One pass through the flow: iteration `iteration` of a workload (0 for
/// a single run), whose setup and steps end by `deadline`. Its generators
/// draw from the iteration's own stream, and `iteration` reads it. The
/// outcome's duration covers setup and steps; teardown comes after it.
/// A workload's iteration keeps no artifact.
pub(crate) async fn iterate(
    spec: &FlowSpec,
    ctx: &RunContext<'_>,
    iteration: u64,
    deadline: Instant,
) -> Outcome {
    pass(spec, ctx, iteration, deadline, false).await
}

/// [`iterate`]; `keep_artifact`: a failed pass keeps its artifact.
async fn pass(
    spec: &FlowSpec,
    ctx: &RunContext<'_>,
    iteration: u64,
    deadline: Instant,
    keep_artifact: bool,
) -> Outcome {
    let ids = RunIds::generate();
    let start = Instant::now();
    let mut outcome = Outcome::new(&ctx.probe.name, &ctx.env.name, "flow", &ids);
    let mut scope = ctx.scope(&ids, iteration);
    scope.iteration = iteration;
    let mut redactor = ctx.redactor.clone();

    // Setup and steps: stop at the first failure, the deadline or a cancel.
    let mut failed_at: Option<usize> = None;
    let mut last_facts = None;
    // Each step's exchange when it failed, beside `outcome.steps`.
    let mut exchanges: Vec<Option<Exchange>> = Vec::new();
    let mut index: u64 = 0;
    'main: for (stage, list) in [(Stage::Setup, &spec.setup), (Stage::Step, &spec.steps)] {
        for step in list {
            index += 1;
            let step_ids = ids.child();
            let step_started = Instant::now();
            if ctx.cancel.is_cancelled() {
                // Cancelled between steps: the next one never starts.
                let mut s = skipped(step, stage, "cancelled (shutdown or interrupt)");
                s.reason = Some(FailureReason::Cancelled);
                s.offset = step_started.duration_since(start);
                outcome.steps.push(s);
                exchanges.push(None);
                failed_at = Some(outcome.steps.len() - 1);
                break 'main;
            }
            let mut exchange = None;
            let result = {
                let run = run_step(
                    step,
                    stage,
                    ctx,
                    &step_ids,
                    &mut scope,
                    &mut redactor,
                    deadline,
                    index,
                    start,
                    (&mut last_facts, &mut exchange),
                );
                tokio::pin!(run);
                tokio::select! {
                    r = &mut run => r,
                    () = ctx.cancel.cancelled() => {
                        // The step's request may have gone out and changed the
                        // target (an order created): it gets a short grace to
                        // finish, so that what it captures reaches the
                        // teardown; a slow step is cut after it.
                        let grace = (Instant::now() + CANCEL_GRACE.min(spec.teardown_timeout))
                            .min(deadline);
                        match tokio::time::timeout_at(grace, &mut run).await {
                            Ok(r) => r,
                            Err(_) => {
                                // The id the target saw stays reported, and so
                                // exported.
                                let mut s =
                                    skipped(step, stage, "cancelled (shutdown or interrupt)");
                                s.reason = Some(FailureReason::Cancelled);
                                s.span_id.clone_from(&step_ids.span_id);
                                s.offset = step_started.duration_since(start);
                                s.duration = step_started.elapsed();
                                s
                            }
                        }
                    }
                }
            };
            let ok = result.success;
            outcome.steps.push(result);
            exchanges.push(exchange);
            if !ok {
                failed_at = Some(outcome.steps.len() - 1);
                break 'main;
            }
        }
    }
    outcome.duration = start.elapsed();
    outcome.responded = failed_at.is_none();
    if let (None, Some(mut facts)) = (failed_at, last_facts) {
        facts.set("vars", http_probe::vars_value(&scope.vars));
        ctx.keep(&mut outcome, &facts);
    }
    if let Some(i) = failed_at {
        let step = &outcome.steps[i];
        let reason = step.reason.unwrap_or(FailureReason::Assertion);
        let what = match step.stage {
            Stage::Setup => "setup step",
            _ => "step",
        };
        let msg = format!(
            "{what} `{}` failed: {}",
            step.name,
            step.error.as_deref().unwrap_or("failed")
        );
        outcome.fail(reason, msg);
    }

    // Teardown: always, with its own budget, every step tried.
    let teardown_deadline = Instant::now() + spec.teardown_timeout;
    let mut teardown_errors = Vec::new();
    for step in &spec.teardown {
        index += 1;
        if let Some(missing) = step.needs.iter().find(|v| !scope.vars.contains_key(*v)) {
            let note = format!("skipped: `{missing}` was never captured");
            outcome.steps.push(skipped(step, Stage::Teardown, &note));
            exchanges.push(None);
            continue;
        }
        let mut exchange = None;
        let result = run_step(
            step,
            Stage::Teardown,
            ctx,
            &ids.child(),
            &mut scope,
            &mut redactor,
            teardown_deadline,
            index,
            start,
            (&mut None, &mut exchange),
        )
        .await;
        if !result.success {
            teardown_errors.push(format!(
                "teardown `{}` failed: {}",
                result.name,
                result.error.as_deref().unwrap_or("failed")
            ));
        }
        outcome.steps.push(result);
        exchanges.push(exchange);
    }
    if !teardown_errors.is_empty() {
        let joined = teardown_errors.join("; ");
        match &mut outcome.error {
            // The main failure stays first; the teardown's is added beside it.
            Some(main) => {
                main.push_str("; also ");
                main.push_str(&joined);
            }
            None => outcome.fail(FailureReason::Teardown, joined),
        }
    }
    outcome.success = outcome.reason.is_none();
    if keep_artifact && !outcome.success {
        let steps = outcome
            .steps
            .iter()
            .zip(exchanges)
            .map(|(s, exchange)| StepArtifact {
                name: s.name.clone(),
                stage: s.stage,
                success: s.success,
                captures: s
                    .captured
                    .iter()
                    .map(|name| artifact::masked_capture(name, scope.vars.get(name)))
                    .collect(),
                exchange,
            })
            .collect();
        outcome.artifact = Some(Box::new(Artifact {
            exchange: None,
            steps,
        }));
    }
    super::redact(outcome, &redactor)
}

/// A step that did not run.
fn skipped(step: &Step, stage: Stage, note: &str) -> StepOutcome {
    let mut out = StepOutcome::new(&step.name, stage);
    // A skipped teardown step has nothing to clean up: not a failure.
    out.success = stage == Stage::Teardown;
    out.error = Some(note.to_owned());
    out
}

/// Runs one step (with its `until` polling) and applies its captures to
/// `scope`. Every request of the step carries `ids`: the step is one
/// client span, whose id the target sees in each attempt's `traceparent`
/// and the outcome reports. The facts of its response go to `last_facts`
/// (for the flow's `keep`), and, when the step failed, its (last)
/// exchange to `exchange` (for the artifact).
#[allow(clippy::too_many_arguments)]
async fn run_step(
    step: &Step,
    stage: Stage,
    ctx: &RunContext<'_>,
    ids: &RunIds,
    scope: &mut Scope,
    redactor: &mut crate::secret::Redactor,
    deadline: Instant,
    index: u64,
    run_start: Instant,
    (last_facts, exchange): (&mut Option<crate::expr::Facts>, &mut Option<Exchange>),
) -> StepOutcome {
    let started = Instant::now();
    let mut out = StepOutcome::new(&step.name, stage);
    out.offset = started.duration_since(run_start);
    out.span_id.clone_from(&ids.span_id);
    let prev = ctx.prev_facts();
    let until_deadline = match step.until.as_ref().and_then(|u| u.timeout) {
        Some(t) => deadline.min(started + t),
        None => deadline,
    };
    // One token for the step's attempts; a target may echo it back.
    let token = match step.request.oauth2_token(ctx, deadline).await {
        Ok(token) => token,
        Err(fail) => {
            out.reason = Some(fail.reason);
            out.error = Some(fail.message);
            out.duration = started.elapsed();
            out.success = false;
            return out;
        }
    };
    if let Some(token) = &token {
        redactor.add(token.expose());
    }
    let performed: Performed = loop {
        out.attempts += 1;
        // Each step draws from its own seeded stream, so adding a step does
        // not change the payloads of the others; every `until` attempt sends
        // the same generated values.
        let step_scope = scope
            .clone()
            .with_generator(crate::generate::Generator::new(
                ctx.effective_seed(),
                &ctx.probe.name,
                index,
                &ctx.probe.marker,
            ));
        let done = match http_probe::build_request(&step.request, ctx, ids, &step_scope) {
            Ok(mut request) => {
                if let Ok(v) = http::HeaderValue::from_str(&step.name) {
                    request.headers.insert(crate::tagging::STEP_HEADER, v);
                }
                if let Some(token) = &token {
                    request
                        .headers
                        .insert(http::header::AUTHORIZATION, token.header());
                }
                http_probe::send(
                    &step.request,
                    ctx,
                    request,
                    &step_scope,
                    deadline,
                    &Checks::SpecWith(&prev),
                )
                .await
            }
            Err(msg) => Performed::failed(FailureReason::Request, msg),
        };
        let Some(until) = &step.until else { break done };
        let Some(facts) = done.facts.as_ref() else {
            break done;
        };
        let check = until.expr.check(facts);
        if check.passed {
            break done;
        }
        let check_actual = match &done.not_json {
            Some(why) if super::kind::reads_json(&until.expr) => {
                if check.actual.is_empty() || check.actual.starts_with("evaluation failed") {
                    why.clone()
                } else {
                    format!("{}; {why}", check.actual)
                }
            }
            _ => check.actual,
        };
        let next = Instant::now() + until.interval;
        if next >= until_deadline {
            out.reason = Some(FailureReason::Until);
            out.error = Some(format!(
                "`until {}` did not hold after {} attempt{} in {:.1}s (last: {})",
                until.expr.source(),
                out.attempts,
                if out.attempts == 1 { "" } else { "s" },
                started.elapsed().as_secs_f64(),
                if check_actual.is_empty() {
                    "false".to_owned()
                } else {
                    check_actual
                }
            ));
            break done;
        }
        tokio::time::sleep_until(next).await;
    };
    out.duration = started.elapsed();
    if let Some(token) = &token {
        // Refused: the next run asks for a new token; this one goes on.
        if performed.http.as_ref().and_then(|h| h.status) == Some(401) {
            token.rejected();
        }
    }
    out.http = performed.http;
    out.assertions = performed.assertions;
    out.responded = performed.responded;
    if out.reason.is_none() {
        out.reason = performed.reason;
        out.error = performed.error;
    }
    if out.reason.is_none() {
        if let Some(facts) = &performed.facts {
            // A capture that reads a body that is not JSON says so.
            let because = |expr: &Expr| match &performed.not_json {
                Some(why) if super::kind::reads_json(expr) => format!(" ({why})"),
                _ => String::new(),
            };
            for cap in &step.captures {
                match cap.expr.eval(facts) {
                    Ok(serde_json::Value::Null) => {
                        out.reason = Some(FailureReason::Assertion);
                        out.error = Some(format!(
                            "capture `{}`: `{}` gave null{}",
                            cap.name,
                            cap.expr.source(),
                            because(&cap.expr)
                        ));
                        break;
                    }
                    Ok(value) => {
                        if cap.secret {
                            match &value {
                                serde_json::Value::String(s) => redactor.add(s),
                                other => redactor.add(&other.to_string()),
                            }
                        }
                        scope.vars.insert(cap.name.clone(), value);
                        out.captured.push(cap.name.clone());
                    }
                    Err(msg) => {
                        out.reason = Some(FailureReason::Assertion);
                        out.error = Some(format!(
                            "capture `{}`: {msg}{}",
                            cap.name,
                            because(&cap.expr)
                        ));
                        break;
                    }
                }
            }
        }
    }
    out.success = out.reason.is_none();
    if !out.success {
        *exchange = performed.exchange.map(|x| x.exchange());
    }
    *last_facts = performed.facts;
    out
}

/// The registry's line for `[flow]`.
pub const KIND: KindEntry = KindEntry {
    name: "flow",
    build: build_kind,
    gauges: &[],
};

fn build_kind(c: &mut Checker<'_>, input: &BuildInput<'_>) -> Option<Box<dyn Kind>> {
    let raw: RawFlow = c.table("flow")?;
    build(raw, input.known_vars, c).map(|spec| Box::new(spec) as Box<dyn Kind>)
}

impl Kind for FlowSpec {
    fn name(&self) -> &'static str {
        "flow"
    }

    fn run<'a>(&'a self, ctx: &'a RunContext<'_>) -> RunFuture<'a> {
        Box::pin(run(self, ctx))
    }

    fn runs_to_the_end(&self) -> bool {
        true
    }

    fn workload_tail(&self) -> Option<std::time::Duration> {
        Some(self.teardown_timeout)
    }

    /// `keep` reads what the last step's expectations read, with `vars`
    /// holding every capture.
    fn scope(&self) -> Option<crate::expr::Scope<'static>> {
        Some(http_probe::SCOPE)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
