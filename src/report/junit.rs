//! The `--once --junit FILE` report: JUnit XML as CI test reporters read
//! it (Jenkins' JUnit plugin, GitLab's `artifacts:reports:junit`, the
//! GitHub actions that publish test results). It only reads outcomes.
//!
//! The mapping, one check one `<testcase>`:
//!
//! - `<testsuites name="synthmon">` with the totals;
//! - a `<testsuite>` per probe (in the run's order), `classname` = the
//!   probe on each of its cases;
//! - per (probe, environment): the run, `name` = the environment, failed
//!   when the run failed; for a flow, each step that ran or was skipped,
//!   `ENV / STEP` (`ENV / setup STEP`, `ENV / teardown STEP`); each
//!   threshold, `ENV / threshold p(99) < 250ms`, failed when failing,
//!   skipped without data (a degraded one passes, with a note); with
//!   `--baseline`, the comparison, `ENV / baseline p95`, failed when it
//!   regressed, skipped when there was nothing to compare;
//! - `<failure type="REASON" message="REASON: SENTENCE">` with the request,
//!   each failing expectation as `expected:` / `actual:` lines and where it
//!   was written; a run that synthmon or its host could not carry out
//!   (`request`, `resource`, `permission`, `cancelled`) is an `<error>`
//!   instead: it says nothing about the target;
//! - `<properties>` on each case: `run_id`, `trace_id`, `span_id` (and the
//!   step's stage, the request's URL and status; a run's `attempts` and
//!   `flaky`); the same ids are in its `<system-out>` for readers that show
//!   only that, with a run's tries (`attempts: 2 (flaky: 1 retry, first
//!   attempt: status)` and a line per failed try). A flaky run passes:
//!   JUnit has no third verdict, so the property and the line say it.
//!
//! Text is escaped by [`super::markup`]: error sentences and response
//! excerpts can hold anything. The schema the tests validate against is
//! `tests/fixtures/junit.xsd`.

use super::ArtifactLinks;
use super::baseline::{Comparison, GateReport, Verdict as GateVerdict, percent};
use super::markup::{self, attr, ms, request, stage, step_label, text};
use crate::diag::Diagnostics;
use crate::outcome::{AssertionResult, FailureReason, Outcome, StepOutcome};
use crate::threshold::State;
use std::fmt::Write as _;
use std::time::Duration;

/// What one case came to.
enum Verdict {
    Passed,
    /// The target did not do what the probe expects.
    Failed(Fault),
    /// synthmon (or its host) could not carry the check out.
    Errored(Fault),
    /// Not carried out; the message says why.
    Skipped(String),
}

/// A failure's or an error's `type`, one-line `message` and full text.
struct Fault {
    kind: String,
    message: String,
    body: String,
}

/// One `<testcase>`.
struct Case {
    name: String,
    classname: String,
    time: f64,
    properties: Vec<(&'static str, String)>,
    verdict: Verdict,
    /// `<system-out>`: the facts of the check, failed or not.
    out: String,
}

/// One `<testsuite>`: a probe.
struct Suite {
    name: String,
    /// The earliest start of its runs, RFC 3339.
    timestamp: String,
    /// The sum of its runs' durations (they may have overlapped).
    time: f64,
    properties: Vec<(&'static str, String)>,
    cases: Vec<Case>,
}

/// The document for a run's `outcomes` (and the quality gate's
/// comparisons, with `--baseline`).
pub fn render(outcomes: &[Outcome], gate: Option<&GateReport>, links: &ArtifactLinks) -> String {
    let mut suites: Vec<Suite> = Vec::new();
    for o in outcomes {
        let at = match suites.iter().position(|s| s.name == o.probe) {
            Some(i) => i,
            None => {
                suites.push(Suite {
                    name: o.probe.clone(),
                    timestamp: o.started_at.clone(),
                    time: 0.0,
                    properties: vec![
                        ("kind", o.kind.to_owned()),
                        ("synthmon_version", env!("CARGO_PKG_VERSION").to_owned()),
                    ],
                    cases: Vec::new(),
                });
                suites.len() - 1
            }
        };
        let suite = &mut suites[at];
        if o.started_at < suite.timestamp {
            suite.timestamp.clone_from(&o.started_at);
        }
        suite.time += o.duration.as_secs_f64();
        suite
            .cases
            .push(run_case(o, links.get(&o.run_id).map(String::as_str)));
        suite.cases.extend(o.steps.iter().map(|s| step_case(o, s)));
        suite
            .cases
            .extend(o.thresholds.iter().map(|t| threshold_case(o, t)));
        let compared = gate
            .iter()
            .flat_map(|g| &g.comparisons)
            .filter(|c| c.probe == o.probe && c.environment == o.environment);
        suite.cases.extend(compared.map(|c| baseline_case(o, c)));
    }
    document(&suites)
}

/// The document when nothing ran because the config has errors: a case
/// per diagnostic, each an `<error>`, so a CI test report shows why
/// rather than an empty run.
pub fn render_diagnostics(diags: &Diagnostics) -> String {
    let cases = diags
        .iter()
        .map(|d| {
            let mut name = d.file.clone();
            if d.line != 0 {
                let _ = write!(name, ":{}:{}", d.line, d.column);
            }
            if !d.key.is_empty() {
                let _ = write!(name, " {}", d.key);
            }
            usage_case(name, "config", &d.message, &d.to_string())
        })
        .collect();
    usage_document(cases)
}

/// The document when nothing ran because of a usage error that has no
/// place in a file (a selection that matches nothing, a bad baseline
/// file).
pub fn render_error(message: &str) -> String {
    usage_document(vec![usage_case(
        "synthmon --once".to_owned(),
        "usage",
        message,
        message,
    )])
}

fn usage_case(name: String, kind: &str, message: &str, body: &str) -> Case {
    Case {
        name,
        classname: "synthmon".to_owned(),
        time: 0.0,
        properties: Vec::new(),
        verdict: Verdict::Errored(Fault {
            kind: kind.to_owned(),
            message: message.to_owned(),
            body: body.to_owned(),
        }),
        out: String::new(),
    }
}

fn usage_document(cases: Vec<Case>) -> String {
    document(&[Suite {
        name: "synthmon".to_owned(),
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        time: 0.0,
        properties: vec![("synthmon_version", env!("CARGO_PKG_VERSION").to_owned())],
        cases,
    }])
}

/// The run of one (probe, environment) as a whole.
/// The case of a run; `artifact` is its artifact file, when one was
/// written: a property, and a `[[ATTACHMENT|…]]` line in its output, which
/// Jenkins' and GitLab's JUnit readers show as an attachment.
fn run_case(o: &Outcome, artifact: Option<&str>) -> Case {
    let mut out = ids(o, &o.span_id);
    if let Some(file) = artifact {
        let _ = writeln!(out, "[[ATTACHMENT|{file}]]");
    }
    let _ = writeln!(out, "started_at: {}", o.started_at);
    let _ = writeln!(out, "duration: {}", ms(o.duration));
    match super::tries_note(o) {
        Some(note) => {
            let _ = writeln!(out, "attempts: {} ({note})", o.attempts);
        }
        None => {
            let _ = writeln!(out, "attempts: {}", o.attempts);
        }
    }
    for a in &o.retried {
        let _ = writeln!(out, "{}", super::retried_line(a));
    }
    if let Some(h) = &o.http {
        let _ = writeln!(out, "request: {}", request(h));
        let phases: Vec<String> = h
            .phases
            .named()
            .iter()
            .map(|(name, d)| format!("{name} {}", ms(*d)))
            .collect();
        let _ = writeln!(out, "phases: {}", phases.join(" · "));
    } else if !o.phases.is_empty() {
        let phases: Vec<String> = o
            .phases
            .iter()
            .map(|p| format!("{} {}", p.name, ms(p.seconds)))
            .collect();
        let _ = writeln!(out, "phases: {}", phases.join(" · "));
    }
    for s in &o.steps {
        let verdict = match (s.success, s.attempts) {
            (true, 0) => "skipped",
            (true, _) => "passed",
            (false, _) => "failed",
        };
        let _ = writeln!(
            out,
            "step {}: {verdict} in {}",
            step_label(s),
            ms(s.duration)
        );
    }
    if let Some(w) = &o.workload {
        let _ = writeln!(
            out,
            "workload: {} sent ({} scheduled, {} dropped) at {:.1}/s, {} ok, {} failed",
            w.sent, w.scheduled, w.dropped, w.rate, w.ok, w.failed
        );
        for (reason, n) in &w.failures {
            let _ = writeln!(out, "workload failures: {reason} × {n}");
        }
        if w.anomalies.sent > 0 {
            let _ = writeln!(
                out,
                "anomalies: {} sent, {} rejected as expected, {} unexpected",
                w.anomalies.sent, w.anomalies.rejected, w.anomalies.unexpected
            );
        }
    }
    if let Some(l) = &o.latency {
        let at = |v: f64| ms(Duration::from_secs_f64(v.max(0.0)));
        let _ = writeln!(
            out,
            "latency: p50 {} · p90 {} · p95 {} · p99 {} · max {} ({} sample{})",
            at(l.p50),
            at(l.p90),
            at(l.p95),
            at(l.p99),
            at(l.max),
            l.samples,
            if l.samples == 1 { "" } else { "s" }
        );
    }
    let mut properties = run_properties(o, &o.span_id);
    if let Some(file) = artifact {
        properties.push(("artifact", file.to_owned()));
    }
    properties.push(("kind", o.kind.to_owned()));
    properties.push(("started_at", o.started_at.clone()));
    properties.push(("attempts", o.attempts.to_string()));
    properties.push(("flaky", o.flaky.to_string()));
    if let Some(h) = &o.http {
        properties.push(("url", h.url.clone()));
        if let Some(status) = h.status {
            properties.push(("status", status.to_string()));
        }
    }
    let verdict = if o.success {
        Verdict::Passed
    } else {
        let mut body = String::new();
        if let Some(h) = &o.http {
            let _ = writeln!(body, "request: {}", request(h));
        }
        write_failed(&mut body, &o.assertions);
        // The failed tries before the last, whose failure this is.
        for a in &o.retried {
            let _ = writeln!(body, "{}", super::retried_line(a));
        }
        for s in o.steps.iter().filter(|s| !s.success) {
            let _ = writeln!(
                body,
                "step {}: {}",
                step_label(s),
                sentence(s.reason, s.error.as_deref())
            );
            write_failed(&mut body, &s.assertions);
        }
        write_artifact(&mut body, o, artifact);
        fault(o.reason, o.error.as_deref(), body)
    };
    Case {
        name: o.environment.clone(),
        classname: o.probe.clone(),
        time: o.duration.as_secs_f64(),
        properties,
        verdict,
        out,
    }
}

/// A flow step that ran (or was skipped).
fn step_case(o: &Outcome, s: &StepOutcome) -> Case {
    let mut out = ids(o, &s.span_id);
    let _ = writeln!(out, "stage: {}", stage(s.stage));
    let _ = writeln!(out, "attempts: {}", s.attempts);
    if let Some(h) = &s.http {
        let _ = writeln!(out, "request: {}", request(h));
    }
    if !s.captured.is_empty() {
        let _ = writeln!(out, "captured: {}", s.captured.join(", "));
    }
    let mut properties = run_properties(o, &s.span_id);
    properties.push(("stage", stage(s.stage).to_owned()));
    properties.push(("attempts", s.attempts.to_string()));
    if let Some(h) = &s.http {
        properties.push(("url", h.url.clone()));
        if let Some(status) = h.status {
            properties.push(("status", status.to_string()));
        }
    }
    let verdict = match (s.success, s.attempts) {
        (true, 0) => Verdict::Skipped(s.error.clone().unwrap_or_else(|| "not run".to_owned())),
        (true, _) => Verdict::Passed,
        (false, _) => {
            let mut body = String::new();
            if let Some(h) = &s.http {
                let _ = writeln!(body, "request: {}", request(h));
            }
            write_failed(&mut body, &s.assertions);
            fault(s.reason, s.error.as_deref(), body)
        }
    };
    Case {
        name: format!("{} / {}", o.environment, step_label(s)),
        classname: o.probe.clone(),
        time: s.duration.as_secs_f64(),
        properties,
        verdict,
        out,
    }
}

/// A threshold after the run.
fn threshold_case(o: &Outcome, t: &crate::outcome::ThresholdResult) -> Case {
    let counted = match (&o.workload, o.kind) {
        (Some(_), "flow") => "iteration",
        (Some(_), _) => "request",
        (None, _) => "run",
    };
    let seen = format!(
        "observed {} over {} {counted}{} (window {})",
        markup::observed(t),
        t.runs,
        if t.runs == 1 { "" } else { "s" },
        humantime::format_duration(Duration::from_secs_f64(t.window_seconds.max(0.0)))
    );
    let mut out = ids(o, &o.span_id);
    let _ = writeln!(out, "threshold: {}", t.threshold);
    if let Some(d) = &t.degraded {
        let _ = writeln!(out, "degraded level: {d}");
    }
    let _ = writeln!(out, "state: {}", t.state.as_str());
    let _ = writeln!(out, "{seen}");
    let mut properties = run_properties(o, &o.span_id);
    properties.push(("state", t.state.as_str().to_owned()));
    if let Some(v) = t.observed {
        properties.push(("observed", v.to_string()));
        properties.push(("unit", t.unit.to_owned()));
    }
    let verdict = match t.state {
        State::Failing => Verdict::Failed(Fault {
            kind: "threshold".to_owned(),
            message: format!("threshold {} failing: {seen}", t.threshold),
            body: format!("expected: {}\nactual:   {seen}\n", t.threshold),
        }),
        State::NoData => Verdict::Skipped(format!("threshold {}: no data", t.threshold)),
        State::Ok | State::Degraded => Verdict::Passed,
    };
    Case {
        name: format!("{} / threshold {}", o.environment, t.threshold),
        classname: o.probe.clone(),
        time: 0.0,
        properties,
        verdict,
        out,
    }
}

/// The quality gate's comparison of one pair with its baseline entry.
fn baseline_case(o: &Outcome, c: &Comparison) -> Case {
    let at = |v: f64| ms(Duration::from_secs_f64(v.max(0.0)));
    let metric = c.metric.as_str();
    let mut out = ids(o, &o.span_id);
    let _ = writeln!(out, "verdict: {}", verdict_name(c.verdict));
    if let Some(v) = c.current {
        let _ = writeln!(out, "current {metric}: {}", at(v));
    }
    if let Some(v) = c.baseline {
        let _ = writeln!(out, "baseline {metric}: {}", at(v));
    }
    let _ = writeln!(out, "tolerance: {}", percent(c.tolerance));
    let mut properties = run_properties(o, &o.span_id);
    properties.push(("verdict", verdict_name(c.verdict).to_owned()));
    properties.push(("tolerance", c.tolerance.to_string()));
    let verdict = match (c.verdict, c.current, c.baseline, c.limit) {
        (GateVerdict::Regressed, Some(now), Some(then), Some(limit)) => Verdict::Failed(Fault {
            kind: "baseline".to_owned(),
            message: format!(
                "baseline regression: {metric} {} vs {} in the baseline, beyond the {} tolerance (at most {})",
                at(now),
                at(then),
                percent(c.tolerance),
                at(limit)
            ),
            body: format!(
                "expected: {metric} <= {} (baseline {} + {})\nactual:   {metric} = {}\n",
                at(limit),
                at(then),
                percent(c.tolerance),
                at(now)
            ),
        }),
        (GateVerdict::Ok, ..) => Verdict::Passed,
        (GateVerdict::NoBaseline, ..) => {
            Verdict::Skipped("no baseline: the pair is not in the file".to_owned())
        }
        _ => Verdict::Skipped("not compared: the run failed or measured no latency".to_owned()),
    };
    Case {
        name: format!("{} / baseline {metric}", o.environment),
        classname: o.probe.clone(),
        time: 0.0,
        properties,
        verdict,
        out,
    }
}

fn verdict_name(v: GateVerdict) -> &'static str {
    match v {
        GateVerdict::Ok => "ok",
        GateVerdict::Regressed => "regressed",
        GateVerdict::NoBaseline => "no_baseline",
        GateVerdict::Skipped => "skipped",
    }
}

/// A failed run or step: an `<error>` when synthmon or its host could not
/// carry it out, else a `<failure>`.
fn fault(reason: Option<FailureReason>, error: Option<&str>, mut body: String) -> Verdict {
    let message = sentence(reason, error);
    body.insert_str(0, &format!("{message}\n"));
    let f = Fault {
        kind: reason.map_or("failed", FailureReason::as_str).to_owned(),
        message,
        body,
    };
    match reason {
        Some(
            FailureReason::Request
            | FailureReason::Resource
            | FailureReason::Permission
            | FailureReason::Cancelled
            | FailureReason::MonitorOffline,
        ) => Verdict::Errored(f),
        _ => Verdict::Failed(f),
    }
}

/// `reason: sentence`, on one line.
fn sentence(reason: Option<FailureReason>, error: Option<&str>) -> String {
    let reason = reason.map_or("failed", FailureReason::as_str);
    match error {
        Some(e) => format!("{reason}: {}", e.replace(['\n', '\r'], " ")),
        None => reason.to_owned(),
    }
}

/// Each failed expectation: what was expected, where, and what was seen.
fn write_failed(out: &mut String, assertions: &[AssertionResult]) {
    for a in assertions.iter().filter(|a| !a.passed) {
        let at = a
            .location
            .as_ref()
            .map(|l| format!("  ({l})"))
            .unwrap_or_default();
        let _ = writeln!(out, "expected: {}{at}", a.expression);
        let _ = writeln!(out, "actual:   {}", a.actual);
    }
}

/// The ids of a check, for its `<system-out>`.
fn ids(o: &Outcome, span_id: &str) -> String {
    let mut out = format!("run_id: {}\ntrace_id: {}\n", o.run_id, o.trace_id);
    if !span_id.is_empty() {
        let _ = writeln!(out, "span_id: {span_id}");
    }
    out
}

fn run_properties(o: &Outcome, span_id: &str) -> Vec<(&'static str, String)> {
    let mut p = vec![
        ("environment", o.environment.clone()),
        ("run_id", o.run_id.clone()),
        ("trace_id", o.trace_id.clone()),
    ];
    if !span_id.is_empty() {
        p.push(("span_id", span_id.to_owned()));
    }
    p
}

/// Counts of a list of cases: (tests, failures, errors, skipped).
fn counts(cases: &[&Case]) -> (usize, usize, usize, usize) {
    let count = |f: fn(&Verdict) -> bool| cases.iter().filter(|c| f(&c.verdict)).count();
    (
        cases.len(),
        count(|v| matches!(v, Verdict::Failed(_))),
        count(|v| matches!(v, Verdict::Errored(_))),
        count(|v| matches!(v, Verdict::Skipped(_))),
    )
}

fn document(suites: &[Suite]) -> String {
    let all: Vec<&Case> = suites.iter().flat_map(|s| &s.cases).collect();
    let (tests, failures, errors, skipped) = counts(&all);
    let time: f64 = suites.iter().map(|s| s.time).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = write!(
        x,
        "<testsuites name=\"synthmon\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" \
         skipped=\"{skipped}\" time=\"{}\"",
        markup::seconds(time)
    );
    if let Some(first) = suites.iter().map(|s| s.timestamp.as_str()).min() {
        let _ = write!(x, " timestamp=\"{}\"", attr(first));
    }
    x.push_str(">\n");
    for s in suites {
        let cases: Vec<&Case> = s.cases.iter().collect();
        let (tests, failures, errors, skipped) = counts(&cases);
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" \
             skipped=\"{skipped}\" time=\"{}\" timestamp=\"{}\">",
            attr(&s.name),
            markup::seconds(s.time),
            attr(&s.timestamp)
        );
        write_properties(&mut x, "    ", &s.properties);
        for c in &s.cases {
            write_case(&mut x, c);
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

fn write_properties(x: &mut String, indent: &str, properties: &[(&str, String)]) {
    if properties.is_empty() {
        return;
    }
    let _ = writeln!(x, "{indent}<properties>");
    for (name, value) in properties {
        let _ = writeln!(
            x,
            "{indent}  <property name=\"{}\" value=\"{}\"/>",
            attr(name),
            attr(value)
        );
    }
    let _ = writeln!(x, "{indent}</properties>");
}

fn write_case(x: &mut String, c: &Case) {
    let _ = writeln!(
        x,
        "    <testcase name=\"{}\" classname=\"{}\" time=\"{}\">",
        attr(&c.name),
        attr(&c.classname),
        markup::seconds(c.time)
    );
    write_properties(x, "      ", &c.properties);
    match &c.verdict {
        Verdict::Passed => {}
        Verdict::Skipped(message) => {
            let _ = writeln!(x, "      <skipped message=\"{}\"/>", attr(message));
        }
        Verdict::Failed(f) | Verdict::Errored(f) => {
            let tag = if matches!(c.verdict, Verdict::Failed(_)) {
                "failure"
            } else {
                "error"
            };
            let _ = writeln!(
                x,
                "      <{tag} type=\"{}\" message=\"{}\">{}</{tag}>",
                attr(&f.kind),
                attr(&f.message),
                text(&f.body)
            );
        }
    }
    if !c.out.is_empty() {
        let _ = writeln!(x, "      <system-out>{}</system-out>", text(&c.out));
    }
    x.push_str("    </testcase>\n");
}

/// The most of a response body a failure's text quotes; the artifact
/// file keeps up to [`crate::outcome::EXCERPT_BYTES`].
const QUOTED_BODY_BYTES: usize = 1024;

/// After a failure's expectations: where its artifact file is and what
/// the response was (status and the start of its body, when text).
fn write_artifact(body: &mut String, o: &Outcome, file: Option<&str>) {
    if let Some(file) = file {
        let _ = writeln!(body, "artifact: {file}");
    }
    let response = o
        .artifact
        .as_deref()
        .and_then(|a| a.exchange.as_ref())
        .and_then(|x| x.response.as_ref());
    if let Some(r) = response {
        let _ = write!(body, "response: {}, {} body bytes", r.status, r.body.bytes);
        if r.body.encoding == "text" && !r.body.data.is_empty() {
            let mut end = r.body.data.len().min(QUOTED_BODY_BYTES);
            while !r.body.data.is_char_boundary(end) {
                end -= 1;
            }
            let more = if end < r.body.data.len() || r.body.truncated {
                " …"
            } else {
                ""
            };
            let _ = write!(body, ": {}{more}", &r.body.data[..end]);
        }
        body.push('\n');
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::outcome::{AssertionResult, SourceLocation, Stage, StepOutcome, ThresholdResult};

    fn outcome(probe: &str, env: &str) -> Outcome {
        let ids = crate::tagging::RunIds::generate();
        let mut o = Outcome::new(probe, env, "http", &ids);
        o.success = true;
        o.duration = Duration::from_millis(12);
        o
    }

    #[test]
    fn a_failed_run_names_its_reason_the_expectation_and_what_was_seen() {
        let mut o = outcome("orders", "prod");
        o.fail(
            FailureReason::Assertion,
            "1 of 1 expectation failed\u{1b}[0m",
        );
        o.assertions.push(AssertionResult {
            expression: "json.name == '<b>&\"x\"'".to_owned(),
            passed: false,
            actual: "json.name = \"\u{0}bob\"".to_owned(),
            location: Some(SourceLocation {
                file: "probes/orders.toml".to_owned(),
                line: 9,
                column: 3,
            }),
        });
        let x = render(&[o.clone()], None, &ArtifactLinks::new());
        assert!(
            x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
            "{x}"
        );
        assert!(
            x.contains("<testsuites name=\"synthmon\" tests=\"1\" failures=\"1\" errors=\"0\" skipped=\"0\""),
            "{x}"
        );
        assert!(
            x.contains(
                "<failure type=\"assertion\" message=\"assertion: 1 of 1 expectation failed[0m\">"
            ),
            "{x}"
        );
        assert!(
            x.contains("expected: json.name == &apos;&lt;b&gt;&amp;&quot;x&quot;&apos;  (probes/orders.toml:9:3)\nactual:   json.name = &quot;bob&quot;\n"),
            "{x}"
        );
        assert!(
            x.contains(&format!(
                "<property name=\"run_id\" value=\"{}\"/>",
                o.run_id
            )),
            "{x}"
        );
        assert!(!x.contains('\u{0}') && !x.contains('\u{1b}'), "{x}");
    }

    #[test]
    fn runs_synthmon_could_not_carry_out_are_errors_not_failures() {
        let mut o = outcome("a", "e");
        o.fail(FailureReason::Permission, "the kernel does not allow it");
        let x = render(&[o], None, &ArtifactLinks::new());
        assert!(x.contains("errors=\"1\""), "{x}");
        assert!(x.contains("<error type=\"permission\""), "{x}");
        assert!(!x.contains("<failure"), "{x}");
    }

    #[test]
    fn steps_thresholds_and_probes_map_to_cases_and_suites() {
        let mut flow = outcome("journey", "staging");
        flow.kind = "flow";
        let mut create = StepOutcome::new("create", Stage::Step);
        create.success = true;
        create.attempts = 1;
        let mut verify = StepOutcome::new("verify", Stage::Step);
        verify.reason = Some(FailureReason::Status);
        verify.error = Some("status 500".to_owned());
        verify.attempts = 1;
        let mut delete = StepOutcome::new("delete", Stage::Teardown);
        delete.success = true;
        delete.error = Some("skipped: `id` was never captured".to_owned());
        flow.steps = vec![create, verify, delete];
        flow.fail(FailureReason::Status, "step `verify` failed: status 500");
        let mut other = outcome("journey", "prod");
        other.thresholds.push(ThresholdResult {
            threshold: "p(99) < 250ms".to_owned(),
            degraded: None,
            state: State::Failing,
            observed: Some(0.3125),
            unit: "seconds",
            window_seconds: 300.0,
            runs: 1,
        });
        let x = render(
            &[flow, other, outcome("health", "prod")],
            None,
            &ArtifactLinks::new(),
        );
        // Two suites, in the run's order; the flow's suite holds both
        // environments.
        let journey = x.find(
            "<testsuite name=\"journey\" tests=\"6\" failures=\"3\" errors=\"0\" skipped=\"1\"",
        );
        let health = x.find("<testsuite name=\"health\" tests=\"1\" failures=\"0\"");
        assert!(journey.is_some() && health > journey, "{x}");
        for name in [
            "staging",
            "staging / create",
            "staging / verify",
            "staging / teardown delete",
            "prod",
            "prod / threshold p(99) &lt; 250ms",
        ] {
            assert!(
                x.contains(&format!("<testcase name=\"{name}\" classname=\"journey\"")),
                "no case {name} in {x}"
            );
        }
        assert!(
            x.contains("<skipped message=\"skipped: `id` was never captured\"/>"),
            "{x}"
        );
        assert!(
            x.contains("message=\"threshold p(99) &lt; 250ms failing: observed 312.5ms over 1 run (window 5m)\""),
            "{x}"
        );
    }

    #[test]
    fn config_errors_are_error_cases() {
        let diags = Diagnostics(vec![
            crate::diag::Diagnostic::new("probes/bad.toml", "unknown key `timout`")
                .with_help("did you mean `timeout`?"),
        ]);
        let x = render_diagnostics(&diags);
        assert!(x.contains("tests=\"1\" failures=\"0\" errors=\"1\""), "{x}");
        assert!(
            x.contains("<error type=\"config\" message=\"unknown key `timout`\">"),
            "{x}"
        );
        assert!(x.contains("did you mean `timeout`?"), "{x}");
    }
}
