//! What every probe kind shares and the registry builds on: the checked
//! probe definition ([`Probe`]), the [`Kind`] trait a kind implements, the
//! registry entry ([`KindEntry`]), the per-run [`RunContext`], and the
//! helpers every kind uses to judge and finish an [`Outcome`].
//!
//! Run-to-run state lives here too: a probe's `keep = { NAME = "expr" }`
//! is evaluated with the facts its expectations read
//! ([`RunContext::check_expectations`], [`RunContext::keep`]) into
//! [`Outcome::kept`], which whoever runs the probe next time hands back as
//! [`RunContext::prev`] (`prev.NAME` in expressions). A kept value is the
//! one of the latest run that could evaluate it: a run that produced no
//! facts (a refused connection) or could not evaluate an entry hands on
//! the previous value ([`carry_kept`]).
//!
//! This file knows no kind; each kind file depends on it, never the
//! reverse, and `probe/mod.rs` lists the kinds.

use super::arrival::Workload;
use crate::config::check::Checker;
use crate::config::{AlertPolicy, Environment, Schedule, Severity, Tagging};
use crate::expr::{Facts, Prev};
use crate::net::Fail;
use crate::net::oauth2::{AccessToken, OAuth2, Via};
use crate::outcome::{AssertionResult, FailureReason, GaugeSpec, Outcome};
use crate::secret::Redactor;
use crate::tagging::RunIds;
use crate::template::{Scope, Text};
use std::any::Any;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use crate::expr::Assertion;

/// A kind's run, boxed so the registry can hold every kind behind one type.
pub type RunFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// A probe kind's checked body: what it is called and how it runs.
pub trait Kind: std::fmt::Debug + Send + Sync + Any {
    /// The kind's name: its table in a probe file, `kind` in reports.
    fn name(&self) -> &'static str;

    /// Runs once against `ctx`, within the probe's timeout; a failure is an
    /// [`Outcome`], never a panic or an `Err`.
    fn run<'a>(&'a self, ctx: &'a RunContext<'_>) -> RunFuture<'a>;

    /// The kind watches the cancel token itself and must run to its end
    /// (a flow's teardown); others are cut off at a shutdown.
    fn runs_to_the_end(&self) -> bool {
        false
    }

    /// `Some(tail)` when a `[workload]` can drive this kind: the time the
    /// last arrival may still take beyond the probe's timeout (a flow's
    /// teardown). `None`: workloads do not apply.
    fn workload_tail(&self) -> Option<Duration> {
        None
    }

    /// The names its expressions read and their types, to compile the
    /// probe's `keep` entries in; `None`: its expressions read no response
    /// (then `keep` is refused).
    fn scope(&self) -> Option<crate::expr::Scope<'static>> {
        None
    }

    /// For the few places that need the concrete spec (workloads).
    fn as_any(&self) -> &dyn Any;
}

/// What a kind's builder gets besides its own table.
pub struct BuildInput<'a> {
    /// The `vars.X` its templates may read.
    pub known_vars: &'a [String],
    /// The probe's `timeout`, for a kind whose table must fit in it (a
    /// ping's packets are all sent within it).
    pub timeout: Duration,
}

/// One line of the registry: a kind's table name and its builder, which
/// reads the table (through [`Checker::table`]), checks it with located
/// errors and returns the runnable spec.
pub struct KindEntry {
    pub name: &'static str,
    pub build: fn(&mut Checker<'_>, &BuildInput<'_>) -> Option<Box<dyn Kind>>,
    /// The gauges its facts export ([`crate::outcome::KindFacts::gauges`]),
    /// with their help text.
    pub gauges: &'static [GaugeSpec],
}

/// When a probe's alerts fire, which probes hold them back.
/// One checked probe definition.
#[derive(Debug)]
pub struct Probe {
    pub name: String,
    /// The file it came from, for messages.
    pub file: PathBuf,
    pub schedule: Schedule,
    pub environments: Vec<String>,
    /// One deadline for a whole run.
    pub timeout: Duration,
    pub tags: Vec<String>,
    pub severity: Severity,
    pub labels: BTreeMap<String, String>,
    pub thresholds: Vec<crate::threshold::Threshold>,
    /// `buckets = [...]`: the latency histogram's boundaries as written
    /// (the thresholds are added to them); `None` derives them from the
    /// thresholds and the timeout (`telemetry::latency::buckets`).
    pub buckets: Option<Vec<Duration>>,
    pub alert: AlertPolicy,
    /// Seeds the probe's generators: the same seed gives the same payloads
    /// byte for byte. `--seed` overrides it.
    pub seed: Option<u64>,
    /// The synthetic marker generated ids carry (`synth-` by default).
    pub marker: String,
    /// Sends the request at an arrival rate instead of once (http and flow).
    /// Boxed, like `slo` and `baseline`: most probes have none, and a
    /// probe is held for the daemon's life.
    pub workload: Option<Box<Workload>>,
    /// The probe's objective over a long window, judged from history.
    pub slo: Option<Box<crate::slo::Slo>>,
    /// Regression against its own trailing latency, judged from history.
    pub baseline: Option<Box<crate::slo::Baseline>>,
    /// `keep = { NAME = "expr" }`: values carried to the next run.
    pub keep: Vec<Keep>,
    /// `retries = { attempts, backoff }`: a failed run is tried again
    /// ([`super::retry`]); `None` without it (or with `attempts = 0`).
    pub retries: Option<super::retry::Retries>,
    pub kind: Box<dyn Kind>,
}

/// One `keep` entry: after a run, `expr` is evaluated in the kind's scope
/// and its value is the next run's `prev.NAME`.
#[derive(Debug)]
pub struct Keep {
    pub name: String,
    pub expr: crate::expr::Assertion,
}

/// The largest kept value, as JSON text: kept values are stored between
/// runs, so a `keep` of a whole body is refused rather than stored.
pub const MAX_KEPT_BYTES: usize = 4096;

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
    /// What the previous run of this (probe, environment) pair kept: its
    /// [`Outcome::kept`], read as `prev.NAME`. `None`: no previous run is
    /// known (the first run, `--once`). A kind's own entries (names with
    /// a dot, such as `stream.last_id`) are in it too.
    pub prev: Option<&'a BTreeMap<String, serde_json::Value>>,
}

impl RunContext<'_> {
    /// The deadline of a run that starts now.
    pub fn deadline(&self) -> Instant {
        self.deadline_from(Instant::now())
    }

    /// The deadline of a run that started at `start`. Saturates (at
    /// [`crate::schedule::FAR_FUTURE`]) rather than panic on a timeout too
    /// long for the clock, which `check` refuses but a `Probe` built in
    /// code may still carry.
    pub fn deadline_from(&self, start: Instant) -> Instant {
        crate::schedule::saturating_add(start, self.probe.timeout)
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

    /// The headers of a request a kind builds itself: the environment's,
    /// then `defaults` (the kind's own), then `extra` (the probe's, rendered
    /// for this run), each overriding the one before, then the synthetic
    /// tags. A value that is not valid in HTTP is an error naming the header.
    pub fn request_headers(
        &self,
        ids: &RunIds,
        defaults: &[(http::HeaderName, http::HeaderValue)],
        extra: &[(http::HeaderName, Text)],
    ) -> Result<http::HeaderMap, String> {
        let valid = |name: &http::HeaderName, value: &str| {
            http::HeaderValue::from_str(value)
                .map_err(|_| format!("header `{name}` has a value that is not valid in HTTP"))
        };
        let mut headers = http::HeaderMap::new();
        for (name, value) in &self.env.headers {
            headers.insert(name.clone(), valid(name, value)?);
        }
        for (name, value) in defaults {
            headers.insert(name.clone(), value.clone());
        }
        for (name, text) in extra {
            let value = self.render(text, ids)?;
            headers.insert(name.clone(), valid(name, &value)?);
        }
        ids.apply(self.tagging, &self.probe.name, &mut headers);
        Ok(headers)
    }

    /// The OAuth2 settings a request of this run uses: the kind's own
    /// (`own`), else the environment's, unless the kind sets an
    /// Authorization header of its own (`own_header`: its `headers`,
    /// `basic_auth` or `bearer_token`), which wins over the environment's
    /// as its other headers do.
    pub fn oauth2<'s>(&'s self, own: Option<&'s OAuth2>, own_header: bool) -> Option<&'s OAuth2> {
        own.or(if own_header {
            None
        } else {
            self.env.oauth2.as_deref()
        })
    }

    /// The bearer token of [`Self::oauth2`]'s settings, cached or fetched
    /// through the environment's TLS settings and proxy, before
    /// `deadline`; `Ok(None)` when no OAuth2 applies. A kind gets it
    /// before its measured part starts (the token is synthmon's errand,
    /// not the target's answer), fails the run with the [`Fail`] (reason
    /// `auth`), sends [`AccessToken::header`], adds the token to its run's
    /// redactor ([`Self::redactor_with`]) and calls
    /// [`AccessToken::rejected`] when the target answers 401.
    pub async fn oauth2_token(
        &self,
        own: Option<&OAuth2>,
        own_header: bool,
        deadline: Instant,
    ) -> Result<Option<AccessToken>, Fail> {
        match self.oauth2(own, own_header) {
            None => Ok(None),
            Some(oauth2) => {
                // Asked only when a fetch is due: the TLS files as they
                // are now, as every run takes them.
                let via = || async {
                    let tls = crate::net::tls::current(&self.env.tls).await.map_err(|e| {
                        Fail::new(FailureReason::Request, format!("cannot set up tls: {e}"))
                    })?;
                    Ok(Via {
                        tls,
                        proxy: self.env.proxy.clone(),
                    })
                };
                oauth2.token(self.base_url, via, deadline).await.map(Some)
            }
        }
    }

    /// The run's redactor, knowing `token` too (a target may echo it).
    pub fn redactor_with(&self, token: Option<&AccessToken>) -> Cow<'_, Redactor> {
        match token {
            None => Cow::Borrowed(self.redactor),
            Some(token) => {
                let mut redactor = self.redactor.clone();
                redactor.add(token.expose());
                Cow::Owned(redactor)
            }
        }
    }

    /// Renders a template value, for kinds whose fields take templates.
    pub fn render(&self, text: &crate::template::Text, ids: &RunIds) -> Result<String, String> {
        if text.is_literal() {
            return Ok(text.source().to_owned());
        }
        text.render(&self.scope(ids, 0))
    }

    /// `prev` as this run's expressions read it.
    pub fn prev_facts(&self) -> Prev {
        Prev::new(self.probe.keep.iter().map(|k| k.name.as_str()), self.prev)
    }

    /// A kind's own kept value from the previous run (`stream.last_id`).
    pub fn prev_value(&self, name: &str) -> Option<&serde_json::Value> {
        self.prev.and_then(|p| p.get(name))
    }

    /// [`check_expectations`] with `prev` readable in `facts`, then the
    /// probe's `keep` entries evaluated with the same facts ([`Self::keep`]):
    /// the one call a kind makes once it has its facts.
    pub fn check_expectations(
        &self,
        outcome: &mut Outcome,
        expect: &[Assertion],
        mut facts: Facts,
    ) -> usize {
        facts.set_prev(self.prev_facts());
        let failed = check_expectations(outcome, expect, &facts);
        self.keep(outcome, &facts);
        failed
    }

    /// [`check_expectations_with_json`] as [`Self::check_expectations`]
    /// does [`check_expectations`].
    pub fn check_expectations_with_json(
        &self,
        outcome: &mut Outcome,
        expect: &[Assertion],
        mut facts: Facts,
        not_json: Option<&str>,
    ) -> usize {
        facts.set_prev(self.prev_facts());
        let failed = check_expectations_with_json(outcome, expect, &facts, not_json);
        self.keep(outcome, &facts);
        failed
    }

    /// Evaluates the probe's `keep` entries against `facts` (which should
    /// read `prev`: [`Facts::set_prev`]) into `outcome.kept`. An entry
    /// that reads a `prev` value not there yet keeps nothing this run. An
    /// entry that cannot be evaluated (an error, null, a value larger than
    /// [`MAX_KEPT_BYTES`]) fails a run that had passed so far, since the
    /// next run would compare against a stale value; in a run that already
    /// failed it only keeps nothing. Either way [`carry_kept`] then hands
    /// on the previous value.
    pub fn keep(&self, outcome: &mut Outcome, facts: &Facts) {
        for keep in &self.probe.keep {
            let expr = &keep.expr.expr;
            if expr.lacks_prev(facts).is_some() {
                continue;
            }
            let problem = match expr.eval(facts) {
                Ok(serde_json::Value::Null) => format!("`{}` gave null", expr.source()),
                Ok(value) => {
                    let size = value.to_string().len();
                    if size <= MAX_KEPT_BYTES {
                        outcome.kept.insert(keep.name.clone(), value);
                        continue;
                    }
                    format!(
                        "`{}` gave {size} bytes of JSON, more than the {MAX_KEPT_BYTES} a kept value may hold",
                        expr.source()
                    )
                }
                Err(msg) => msg,
            };
            if outcome.reason.is_none() {
                outcome.reason = Some(FailureReason::Assertion);
                if outcome.error.is_none() {
                    outcome.error = Some(format!("cannot keep `{}`: {problem}", keep.name));
                }
                outcome.assertions.push(AssertionResult {
                    expression: format!("keep.{} = {}", keep.name, expr.source()),
                    passed: false,
                    actual: format!("cannot keep a value: {problem}"),
                    location: Some(keep.expr.location.clone()),
                });
            }
        }
    }
}

/// Hands on what the previous run kept of the probe's `keep` names and
/// this run did not keep anew (it produced no facts, or could not evaluate
/// the entry), so `prev.NAME` is always the latest value there was. Names
/// the probe no longer keeps are dropped; a kind's own entries (with a
/// dot) are the kind's to carry. [`super::run`] calls it after every run.
pub fn carry_kept(ctx: &RunContext<'_>, outcome: &mut Outcome) {
    let Some(prev) = ctx.prev else { return };
    for keep in &ctx.probe.keep {
        if let Some(value) = prev.get(&keep.name) {
            outcome
                .kept
                .entry(keep.name.clone())
                .or_insert_with(|| value.clone());
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

/// Puts `why` (a document that is not JSON: a body, stdout, a message)
/// into the failed results among `results` whose expectation reads JSON
/// (`json`, or a `.json` field such as `messages[0].json`): `results[i]`
/// is the result of `expect[i]`. An evaluation error (CEL's "no such key"
/// on a null `json`) is replaced by it; an explained `false` keeps its
/// operands and gets it appended. Returns whether any result was changed.
pub fn blame_not_json(results: &mut [AssertionResult], expect: &[Assertion], why: &str) -> bool {
    let mut blamed = false;
    for (result, assertion) in results.iter_mut().zip(expect) {
        if result.passed || !reads_json(&assertion.expr) {
            continue;
        }
        result.actual =
            if result.actual.is_empty() || result.actual.starts_with("evaluation failed") {
                why.to_owned()
            } else {
                format!("{}; {why}", result.actual)
            };
        blamed = true;
    }
    blamed
}

/// Whether `expr` reads a parsed JSON document: the `json` variable, or a
/// `json` field of another (`messages[0].json`).
pub fn reads_json(expr: &crate::expr::Expr) -> bool {
    expr.reads("json") || expr.source().contains(".json")
}

/// [`check_expectations`], then [`blame_not_json`] with `why` when a
/// document the expectations read was not JSON; the run's error says so.
pub fn check_expectations_with_json(
    outcome: &mut Outcome,
    expect: &[Assertion],
    facts: &Facts,
    not_json: Option<&str>,
) -> usize {
    let first = outcome.assertions.len();
    let failed = check_expectations(outcome, expect, facts);
    if let Some(why) = not_json {
        if failed > 0
            && outcome.error.is_none()
            && blame_not_json(&mut outcome.assertions[first..], expect, why)
        {
            outcome.error = expectation_summary(&outcome.assertions)
                .map(|summary| format!("{summary} ({why})"));
        }
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
    // Kept values are stored between runs: no secret goes there either.
    for value in outcome.kept.values_mut() {
        scrub_json(value, redactor);
    }
    // The artifact: the exchange's URLs, header values and bodies.
    if let Some(a) = outcome.artifact.as_mut() {
        super::artifact::redact(a, redactor);
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

/// Scrubs every string inside a JSON value.
fn scrub_json(value: &mut serde_json::Value, redactor: &Redactor) {
    match value {
        serde_json::Value::String(s) => redactor.scrub(s),
        serde_json::Value::Array(items) => {
            for item in items {
                scrub_json(item, redactor);
            }
        }
        serde_json::Value::Object(fields) => {
            *fields = std::mem::take(fields)
                .into_iter()
                .map(|(mut key, mut item)| {
                    redactor.scrub(&mut key);
                    scrub_json(&mut item, redactor);
                    (key, item)
                })
                .collect();
        }
        _ => {}
    }
}

/// Checks a required `address` of the table `table` (`tcp` or `tls`): a
/// template, or a literal `host:port` checked now.
pub fn address_text(c: &mut Checker<'_>, table: &str, raw: Option<&str>) -> Option<Text> {
    let path = format!("{table}.address");
    let Some(raw) = raw else {
        c.missing(table, "address");
        return None;
    };
    let text = c.text(&path, raw, None)?;
    if text.is_literal() {
        if let Err(msg) = crate::net::parse_address(text.source()) {
            c.err(&path, msg);
            return None;
        }
    }
    Some(text)
}

/// `vars` as expressions see it: the run's variables as strings.
pub fn vars_value(vars: &BTreeMap<String, String>) -> cel::Value {
    vars.iter()
        .map(|(k, v)| (k.clone(), cel::Value::from(v.clone())))
        .collect::<HashMap<String, cel::Value>>()
        .into()
}
