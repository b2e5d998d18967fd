//! The `--once --html FILE` report: one self-contained page for people
//! (a CI artifact, a file opened from a mail) that needs no network: its
//! CSS is inline, its charts inline SVG, it has no script, no `src`, and
//! no `href` but to its own sections and to artifact files beside it. It only reads outcomes.
//!
//! The page: a summary (counts, a row per run linking to its card, the
//! quality gate's counts with `--baseline`), then a card per probe with a
//! section per environment: the verdict, the ids (run, trace), the failure
//! (reason, sentence, each failing expectation with what was seen and
//! where it was written), the phases as a stacked bar, the latencies as a
//! histogram with a line at each latency threshold's limit (and its
//! degraded level), the thresholds, a flow's steps as a waterfall (a bar
//! per step at its offset from the run's start) and their table, a
//! workload's totals, the baseline comparison, and for a failed run its
//! artifacts (`write_artifacts`: the redacted request and response, a
//! flow's steps, and a relative link to the artifact file when
//! `--artifacts DIR` wrote one; the only `href` that leaves the page).
//!
//! The page is well-formed XML as well as HTML (every element closed,
//! attributes quoted, only XML's entities), so a test can read it with
//! an XML parser; all text goes through [`super::markup`].

use super::ArtifactLinks;
use super::Summary;
use super::baseline::{Comparison, GateReport, Verdict as GateVerdict, percent};
use super::markup::{attr, ms, observed, request, stage, step_label, text};
use crate::diag::Diagnostics;
use crate::outcome::{AssertionResult, BodyExcerpt, Details, Exchange, Outcome, StepOutcome};
use crate::threshold::State;
use std::fmt::Write as _;
use std::time::Duration;

/// The report for a run's `outcomes` (and the quality gate's comparisons,
/// with `--baseline`).
pub fn render(outcomes: &[Outcome], gate: Option<&GateReport>, links: &ArtifactLinks) -> String {
    let s = Summary::of(outcomes);
    let title = format!("synthmon: {} passed, {} failed", s.passed, s.failed);
    let mut out = head(&title);
    // Probes in the run's order, each with its runs.
    let mut probes: Vec<(&str, Vec<&Outcome>)> = Vec::new();
    for o in outcomes {
        match probes.iter_mut().find(|(name, _)| *name == o.probe) {
            Some((_, runs)) => runs.push(o),
            None => probes.push((&o.probe, vec![o])),
        }
    }
    write_summary(&mut out, outcomes, &probes, gate);
    out.push_str("<main>\n");
    let mut run_index = 0;
    for (i, (name, runs)) in probes.iter().enumerate() {
        let passed = runs.iter().all(|o| o.passed());
        let _ = writeln!(
            out,
            "<article class=\"card {}\" id=\"probe-{i}\" data-probe=\"{}\">",
            class(passed),
            attr(name)
        );
        let kind = runs.first().map_or("", |o| o.kind);
        let _ = writeln!(
            out,
            "<h2>{} {} <span class=\"kind\">{}</span></h2>",
            badge(passed),
            text(name),
            text(kind)
        );
        for o in runs {
            let comparison = gate.and_then(|g| {
                g.comparisons
                    .iter()
                    .find(|c| c.probe == o.probe && c.environment == o.environment)
            });
            let link = links.get(&o.run_id).map(String::as_str);
            write_run(&mut out, o, run_index, comparison, link);
            run_index += 1;
        }
        out.push_str("</article>\n");
    }
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// The page when nothing ran because the config has errors: each error
/// where it was found.
pub fn render_diagnostics(diags: &Diagnostics) -> String {
    let lines: Vec<String> = diags.iter().map(ToString::to_string).collect();
    error_page(&lines)
}

/// The page when nothing ran because of a usage error with no place in a
/// file (a selection that matches nothing, a bad baseline file).
pub fn render_error(message: &str) -> String {
    error_page(&[message.to_owned()])
}

fn error_page(errors: &[String]) -> String {
    let mut out = head("synthmon: nothing ran");
    out.push_str("<header class=\"summary fail\" id=\"summary\">\n<h1>synthmon report</h1>\n");
    let _ = writeln!(
        out,
        "<p class=\"verdict fail\">nothing ran: {} error{}</p>",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
    out.push_str("<ul class=\"errors\">\n");
    for e in errors {
        let _ = writeln!(out, "<li><pre>{}</pre></li>", text(e));
    }
    out.push_str("</ul>\n</header>\n</body>\n</html>\n");
    out
}

fn head(title: &str) -> String {
    let mut out =
        String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n");
    let _ = writeln!(
        out,
        "<meta name=\"generator\" content=\"synthmon {}\"/>",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(out, "<title>{}</title>", text(title));
    let _ = writeln!(out, "<style>{CSS}</style>");
    out.push_str("</head>\n<body>\n");
    out
}

/// Inline, so the page needs nothing else; no `url()`, no `@import`.
const CSS: &str = "
:root { --pass: #1a7f37; --fail: #cf222e; --warn: #9a6700; --dim: #6e7781; --bg: #ffffff;
  --card: #f6f8fa; --line: #d0d7de; --text: #1f2328; --bar: #0969da; }
@media (prefers-color-scheme: dark) { :root { --pass: #3fb950; --fail: #f85149; --warn: #d29922;
  --dim: #8b949e; --bg: #0d1117; --card: #161b22; --line: #30363d; --text: #e6edf3; --bar: #58a6ff; } }
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0 auto; padding: 1em;
  max-width: 72em; background: var(--bg); color: var(--text); }
h1 { font-size: 1.5em; margin: 0.2em 0; } h2 { font-size: 1.2em; margin: 0 0 0.5em; }
h3 { font-size: 1em; margin: 0.8em 0 0.4em; } h4 { font-size: 0.95em; margin: 0.8em 0 0.3em; }
code, pre { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { white-space: pre-wrap; word-break: break-word; margin: 0; }
table { border-collapse: collapse; margin: 0.3em 0; }
th, td { text-align: left; padding: 0.15em 0.6em; border-bottom: 1px solid var(--line); vertical-align: top; }
a { color: var(--bar); }
.card { background: var(--card); border: 1px solid var(--line); border-left: 6px solid var(--pass);
  border-radius: 6px; padding: 0.8em 1em; margin: 1em 0; }
.card.fail { border-left-color: var(--fail); }
.run { border-top: 1px solid var(--line); padding-top: 0.3em; }
.badge { display: inline-block; font-size: 0.8em; font-weight: 700; color: #fff; border-radius: 3px;
  padding: 0 0.4em; background: var(--pass); }
.badge.fail { background: var(--fail); } .badge.warn { background: var(--warn); }
.badge.skip { background: var(--dim); }
.kind, .dim, .meta { color: var(--dim); font-weight: normal; }
.verdict.pass { color: var(--pass); font-weight: 700; } .verdict.fail { color: var(--fail); font-weight: 700; }
tr.fail td:first-child, .state-failing { color: var(--fail); font-weight: 700; }
.state-degraded { color: var(--warn); font-weight: 700; } .state-ok { color: var(--pass); }
.state-no_data { color: var(--dim); }
.failure { border-left: 3px solid var(--fail); padding: 0.2em 0.8em; margin: 0.5em 0; }
dl.ids { display: grid; grid-template-columns: max-content auto; gap: 0 1em; margin: 0.3em 0; }
dl.ids dt { color: var(--dim); } dl.ids dd { margin: 0; }
svg { display: block; max-width: 100%; height: auto; margin: 0.3em 0; }
svg text { font: 11px system-ui, sans-serif; fill: var(--text); }
svg .axis { stroke: var(--dim); stroke-width: 1; }
svg .bin { fill: var(--bar); }
svg .threshold { stroke: var(--fail); stroke-width: 2; stroke-dasharray: 6 3; }
svg .threshold.degraded { stroke: var(--warn); }
svg .phase-0 { fill: #8250df; } svg .phase-1 { fill: #0969da; } svg .phase-2 { fill: #1a7f37; }
svg .phase-3 { fill: #bf8700; } svg .phase-4 { fill: #cf222e; } svg .phase-5 { fill: #6e7781; }
svg .step.pass { fill: var(--pass); } svg .step.fail { fill: var(--fail); }
svg .step.skipped { fill: var(--dim); }
svg .step.stage-teardown { fill-opacity: 0.6; }
svg text.inside { fill: #ffffff; }
.artifacts { border: 1px dashed var(--line); padding: 0.3em 0.8em; margin: 0.5em 0; }
.tries { border-left: 3px solid var(--warn); padding: 0.2em 0.8em; margin: 0.5em 0; }
.tries.fail { border-left-color: var(--fail); } .tries ol { margin: 0.2em 0; padding-left: 1.5em; }
";

fn class(passed: bool) -> &'static str {
    if passed { "pass" } else { "fail" }
}

fn badge(passed: bool) -> &'static str {
    if passed {
        "<span class=\"badge pass\">PASS</span>"
    } else {
        "<span class=\"badge fail\">FAIL</span>"
    }
}

fn write_summary(
    out: &mut String,
    outcomes: &[Outcome],
    probes: &[(&str, Vec<&Outcome>)],
    gate: Option<&GateReport>,
) {
    let s = Summary::of(outcomes);
    let passed = s.failed == 0 && gate.is_none_or(GateReport::passed);
    let _ = writeln!(
        out,
        "<header class=\"summary {}\" id=\"summary\">\n<h1>synthmon report</h1>",
        class(passed)
    );
    let _ = writeln!(
        out,
        "<p class=\"verdict {}\">{} passed, {} failed</p>",
        class(passed),
        s.passed,
        s.failed
    );
    let started = outcomes.iter().map(|o| o.started_at.as_str()).min();
    let _ = writeln!(
        out,
        "<p class=\"meta\">{} probe{}, {} run{}{} · written {} by synthmon {}</p>",
        probes.len(),
        if probes.len() == 1 { "" } else { "s" },
        outcomes.len(),
        if outcomes.len() == 1 { "" } else { "s" },
        started.map_or_else(String::new, |t| format!(" · started {}", text(t))),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        env!("CARGO_PKG_VERSION")
    );
    out.push_str(
        "<table class=\"overview\">\n<thead><tr><th>result</th><th>probe</th><th>environment</th>\
         <th>kind</th><th>duration</th><th>why</th></tr></thead>\n<tbody>\n",
    );
    let mut index = 0;
    for (i, (_, runs)) in probes.iter().enumerate() {
        for o in runs {
            let why = if o.passed() {
                // A flaky pass is a pass that says so.
                super::tries_note(o).unwrap_or_default()
            } else if !o.success {
                format!(
                    "{}: {}",
                    o.reason.map_or("failed", |r| r.as_str()),
                    o.error.as_deref().unwrap_or("")
                )
            } else {
                let failing: Vec<&str> = o
                    .thresholds
                    .iter()
                    .filter(|t| t.state == State::Failing)
                    .map(|t| t.threshold.as_str())
                    .collect();
                format!("threshold failing: {}", failing.join(", "))
            };
            let _ = writeln!(
                out,
                "<tr class=\"{}\"><td>{}</td><td><a href=\"#probe-{i}\">{}</a></td>\
                 <td><a href=\"#run-{index}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                class(o.passed()),
                if o.passed() { "PASS" } else { "FAIL" },
                text(&o.probe),
                text(&o.environment),
                text(o.kind),
                ms(o.duration),
                text(&why)
            );
            index += 1;
        }
    }
    out.push_str("</tbody>\n</table>\n");
    if let Some(g) = gate {
        let count = |v: GateVerdict| g.comparisons.iter().filter(|c| c.verdict == v).count();
        let _ = writeln!(
            out,
            "<p class=\"baseline verdict {}\">baseline {} (written {}): {} ok, {} regressed, {} without a baseline, {} skipped</p>",
            class(g.passed()),
            text(&g.file),
            text(&g.created_at),
            count(GateVerdict::Ok),
            g.regressions,
            count(GateVerdict::NoBaseline),
            count(GateVerdict::Skipped)
        );
    }
    out.push_str("</header>\n");
}

/// One (probe, environment)'s section of its probe's card.
fn write_run(
    out: &mut String,
    o: &Outcome,
    index: usize,
    comparison: Option<&Comparison>,
    link: Option<&str>,
) {
    let status = o
        .http
        .as_ref()
        .and_then(|h| h.status)
        .map_or_else(String::new, |s| format!(" · {s}"));
    let _ = writeln!(
        out,
        "<section class=\"run {}\" id=\"run-{index}\" data-environment=\"{}\">",
        class(o.passed()),
        attr(&o.environment)
    );
    let _ = writeln!(
        out,
        "<h3>{} @ {} <span class=\"dim\">· {}{}</span></h3>",
        badge(o.passed()),
        text(&o.environment),
        ms(o.duration),
        text(&status)
    );
    out.push_str("<dl class=\"ids\">");
    let _ = write!(
        out,
        "<dt>run id</dt><dd><code class=\"run-id\">{}</code></dd>",
        text(&o.run_id)
    );
    let _ = write!(
        out,
        "<dt>trace id</dt><dd><code class=\"trace-id\">{}</code></dd>",
        text(&o.trace_id)
    );
    let _ = write!(out, "<dt>started</dt><dd>{}</dd>", text(&o.started_at));
    if let Some(h) = &o.http {
        let _ = write!(
            out,
            "<dt>request</dt><dd><code>{}</code></dd>",
            text(&request(h))
        );
    }
    let _ = write!(
        out,
        "<dt>attempts</dt><dd class=\"attempts\">{}</dd>",
        o.attempts
    );
    out.push_str("</dl>\n");
    write_tries(out, o);
    if !o.success {
        out.push_str("<div class=\"failure\">\n");
        let _ = writeln!(
            out,
            "<p class=\"reason\"><b>{}</b>: {}</p>",
            text(o.reason.map_or("failed", |r| r.as_str())),
            text(o.error.as_deref().unwrap_or(""))
        );
        write_failed(out, &o.assertions);
        out.push_str("</div>\n");
    }
    match &o.http {
        Some(h) => {
            let phases: Vec<(&str, Duration)> = h.phases.named().to_vec();
            write_phases(out, &phases);
        }
        None => {
            let phases: Vec<(&str, Duration)> =
                o.phases.iter().map(|p| (p.name, p.seconds)).collect();
            write_phases(out, &phases);
        }
    }
    write_latency(out, o);
    write_thresholds(out, o);
    if !o.steps.is_empty() {
        write_waterfall(out, o);
        write_steps(out, &o.steps);
    }
    if let Some(w) = &o.workload {
        let noun = if o.kind == "flow" {
            "iterations"
        } else {
            "requests"
        };
        let _ = writeln!(
            out,
            "<h4>workload</h4>\n<p class=\"workload\">{} {noun} sent ({} scheduled, {} dropped) at {:.1}/s · {} ok · {} failed{}</p>",
            w.sent,
            w.scheduled,
            w.dropped,
            w.rate,
            w.ok,
            w.failed,
            w.connections
                .map_or_else(String::new, |c| format!(" · {c} connections"))
        );
        if !w.failures.is_empty() {
            let failures: Vec<String> = w
                .failures
                .iter()
                .map(|(r, n)| format!("{r} × {n}"))
                .collect();
            let _ = writeln!(
                out,
                "<p class=\"workload-failures\">failures: {}</p>",
                text(&failures.join(", "))
            );
        }
        if w.anomalies.sent > 0 {
            let _ = writeln!(
                out,
                "<p class=\"anomalies\">anomalies {} sent · {} rejected as expected · {} unexpected</p>",
                w.anomalies.sent, w.anomalies.rejected, w.anomalies.unexpected
            );
        }
    }
    if let Some(c) = comparison {
        write_comparison(out, c);
    }
    if !o.passed() {
        write_artifacts(out, o, index, link);
    }
    out.push_str("</section>\n");
}

/// A run tried more than once: whether it passed after a retry (flaky)
/// or failed every try, and each failed try.
fn write_tries(out: &mut String, o: &Outcome) {
    let Some(note) = super::tries_note(o) else {
        return;
    };
    let _ = writeln!(
        out,
        "<div class=\"tries {}\" data-flaky=\"{}\">\n<p><b>{}</b></p>\n<ol>",
        if o.success { "flaky" } else { "fail" },
        o.flaky,
        text(&note)
    );
    for a in &o.retried {
        let _ = writeln!(
            out,
            "<li value=\"{}\">{}</li>",
            a.attempt,
            text(&super::retried_line(a))
        );
    }
    out.push_str("</ol>\n</div>\n");
}

/// Each failed expectation: what was expected, what was seen, and where
/// it was written.
fn write_failed(out: &mut String, assertions: &[AssertionResult]) {
    let failed: Vec<&AssertionResult> = assertions.iter().filter(|a| !a.passed).collect();
    if failed.is_empty() {
        return;
    }
    out.push_str(
        "<table class=\"assertions\">\n<thead><tr><th>expected</th><th>actual</th><th>where</th></tr></thead>\n<tbody>\n",
    );
    for a in failed {
        let at = a
            .location
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<tr><td><code class=\"expected\">{}</code></td><td><code class=\"actual\">{}</code></td><td>{}</td></tr>",
            text(&a.expression),
            text(&a.actual),
            text(&at)
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

/// What a failed run left for the person who reads the report: a link to
/// its artifact file (`--artifacts DIR`), the redacted request and the
/// response it got (status, headers, the start of the body), a flow's
/// steps with their masked captures and failed exchanges, and what the
/// run kept for the next one. Without an artifact (a kind that sends no
/// HTTP request), the request line of the outcome's facts.
fn write_artifacts(out: &mut String, o: &Outcome, index: usize, link: Option<&str>) {
    let _ = writeln!(
        out,
        "<section class=\"artifacts\" id=\"artifacts-{index}\" data-hook=\"failure-artifacts\">\n<h4>artifacts</h4>"
    );
    let mut any = false;
    if let Some(link) = link {
        let _ = writeln!(
            out,
            "<p>kept in <a class=\"artifact-file\" href=\"{}\">{}</a></p>",
            attr(&href(link)),
            text(link)
        );
        any = true;
    }
    let artifact = o.artifact.as_deref();
    match artifact.and_then(|a| a.exchange.as_ref()) {
        Some(x) => {
            write_exchange(out, x);
            any = true;
        }
        None => {
            if let Some(h) = &o.http {
                let _ = writeln!(
                    out,
                    "<div class=\"artifact request\"><code>{}</code> <span class=\"dim\">· {} body bytes</span></div>",
                    text(&request(h)),
                    h.body_bytes
                );
                any = true;
            }
        }
    }
    for step in artifact.map_or(&[][..], |a| &a.steps[..]) {
        let _ = write!(
            out,
            "<div class=\"artifact step\">{} {} {}",
            badge(step.success),
            text(stage(step.stage)),
            text(&step.name)
        );
        for c in &step.captures {
            let _ = write!(
                out,
                " <span class=\"dim\">· captured <code>{}</code> ({}, {})</span>",
                text(&c.name),
                c.json_type,
                c.length
            );
        }
        out.push('\n');
        if let Some(x) = &step.exchange {
            write_exchange(out, x);
        }
        out.push_str("</div>\n");
        any = true;
    }
    if !o.kept.is_empty() {
        out.push_str("<div class=\"artifact kept\">kept for the next run:<table>\n");
        for (name, value) in &o.kept {
            let _ = writeln!(
                out,
                "<tr><td><code>{}</code></td><td><code>{}</code></td></tr>",
                text(name),
                text(&value.to_string())
            );
        }
        out.push_str("</table></div>\n");
        any = true;
    }
    if !any {
        out.push_str("<p class=\"dim\">none kept</p>\n");
    }
    out.push_str("</section>\n");
}

/// The most of a response body the page shows; the artifact file keeps
/// up to [`crate::outcome::EXCERPT_BYTES`].
const PAGE_BODY_BYTES: usize = 4 * 1024;

/// One redacted exchange: the request line and headers, the response's
/// status, headers and the start of its body.
fn write_exchange(out: &mut String, x: &Exchange) {
    let r = &x.request;
    let _ = writeln!(
        out,
        "<div class=\"artifact exchange\"><p><code class=\"request\">{} {}</code></p>",
        text(&r.method),
        text(&r.url)
    );
    write_headers(out, "request headers", &r.headers);
    if let Some(body) = &r.body {
        write_body(out, "request body", body);
    }
    match &x.response {
        Some(resp) => {
            let _ = writeln!(
                out,
                "<p>response <strong class=\"response-status\">{}</strong> from <code>{}</code></p>",
                resp.status,
                text(&resp.url)
            );
            write_headers(out, "response headers", &resp.headers);
            write_body(out, "response body", &resp.body);
        }
        None => out.push_str("<p class=\"dim\">no response arrived</p>\n"),
    }
    out.push_str("</div>\n");
}

fn write_headers(out: &mut String, what: &str, headers: &[(String, String)]) {
    let _ = writeln!(
        out,
        "<details><summary>{what} ({})</summary><table class=\"headers\">",
        headers.len()
    );
    for (name, value) in headers {
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td><code>{}</code></td></tr>",
            text(name),
            text(value)
        );
    }
    out.push_str("</table></details>\n");
}

fn write_body(out: &mut String, what: &str, body: &BodyExcerpt) {
    if body.encoding != "text" {
        let _ = writeln!(
            out,
            "<p class=\"dim\">{what}: {} bytes, not text (base64 in the artifact file)</p>",
            body.bytes
        );
        return;
    }
    let mut end = body.data.len().min(PAGE_BODY_BYTES);
    while !body.data.is_char_boundary(end) {
        end -= 1;
    }
    let shown = if end < body.data.len() || body.truncated {
        format!(", the first {end} shown")
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "<details open=\"open\"><summary>{what} ({} bytes{shown})</summary><pre class=\"body\">{}</pre></details>",
        body.bytes,
        text(&body.data[..end])
    );
}

/// A relative file path as an `href`: each segment percent-encoded but
/// for unreserved characters, so a space or `#` in a directory name
/// cannot turn into a fragment or break the attribute.
fn href(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The phases as one stacked bar, with their names and times beside it.
fn write_phases(out: &mut String, phases: &[(&str, Duration)]) {
    let total: f64 = phases.iter().map(|(_, d)| d.as_secs_f64()).sum();
    if total <= 0.0 {
        return;
    }
    const W: f64 = 600.0;
    let _ = writeln!(
        out,
        "<svg class=\"phases\" viewBox=\"0 0 {W} 40\" width=\"{W}\" height=\"40\" role=\"img\" aria-label=\"phases\">"
    );
    let mut x = 0.0;
    let mut legend = Vec::new();
    for (i, (name, d)) in phases.iter().enumerate() {
        let share = d.as_secs_f64() / total * W;
        legend.push(format!("{name} {}", ms(*d)));
        if share <= 0.0 {
            continue;
        }
        let _ = writeln!(
            out,
            "<rect class=\"phase phase-{}\" x=\"{x:.2}\" y=\"2\" width=\"{share:.2}\" height=\"16\"><title>{} {}</title></rect>",
            i % 6,
            text(name),
            ms(*d)
        );
        x += share;
    }
    let _ = writeln!(
        out,
        "<text x=\"0\" y=\"34\">{}</text>\n</svg>",
        text(&legend.join(" · "))
    );
}

/// The samples a run's latency figures are made of, as (latency, how
/// many): a workload's requests, a kind's own exchanges (a ping's round
/// trips), else the run itself when the target answered.
fn samples(o: &Outcome) -> Vec<(Duration, u64)> {
    if let Some(w) = &o.workload {
        return w.latencies.iter().collect();
    }
    if let Some(each) = o.details.as_ref().and_then(Details::latencies) {
        return each.into_iter().map(|d| (d, 1)).collect();
    }
    if o.responded {
        vec![(o.duration, 1)]
    } else {
        Vec::new()
    }
}

/// A line across the histogram: a latency threshold's limit.
struct Limit {
    label: String,
    seconds: f64,
    degraded: bool,
}

/// The limits of `o`'s latency thresholds: each failing level, and the
/// degraded level where there is one.
fn limits(o: &Outcome) -> Vec<Limit> {
    let mut lines = Vec::new();
    for t in o.thresholds.iter().filter(|t| t.unit == "seconds") {
        let levels =
            std::iter::once((&t.threshold, false)).chain(t.degraded.as_ref().map(|d| (d, true)));
        for (source, degraded) in levels {
            if let Ok(c) = crate::threshold::parse_condition(source) {
                if c.metric.is_latency() && c.limit.is_finite() && c.limit >= 0.0 {
                    lines.push(Limit {
                        label: source.clone(),
                        seconds: c.limit,
                        degraded,
                    });
                }
            }
        }
    }
    lines
}

/// A round axis from 0 to at least some value: `ticks` steps of 1, 2,
/// 2.5 or 5 × 10ⁿ.
struct Axis {
    ticks: u32,
    /// The step is `mantissa × 10^exponent`.
    mantissa: f64,
    exponent: i32,
}

impl Axis {
    /// The axis for values up to `v` (> 0), in at most about 5 steps.
    fn new(v: f64) -> Axis {
        let v = if v.is_finite() && v > 0.0 { v } else { 1e-6 };
        let raw = v / 5.0;
        let exponent = raw.log10().floor() as i32;
        let magnitude = 10f64.powi(exponent);
        let mantissa = [1.0, 2.0, 2.5, 5.0, 10.0]
            .into_iter()
            .find(|m| m * magnitude >= raw * (1.0 - 1e-9))
            .unwrap_or(10.0);
        let ticks = (v / (mantissa * magnitude) - 1e-9).ceil().max(1.0) as u32;
        Axis {
            ticks,
            mantissa,
            exponent,
        }
    }

    /// The value at tick `k`, computed so that round values stay round
    /// (`0.3`, not `0.30000000000000004`).
    fn at(&self, k: u32) -> f64 {
        let m = f64::from(k) * self.mantissa;
        if self.exponent < 0 {
            m / 10f64.powi(-self.exponent)
        } else {
            m * 10f64.powi(self.exponent)
        }
    }

    /// The axis' end.
    fn max(&self) -> f64 {
        self.at(self.ticks)
    }
}

/// The histogram's plot area: left and right x of its axis, top and
/// bottom y.
const PLOT: (f64, f64, f64, f64) = (48.0, 588.0, 20.0, 150.0);
/// Histogram bins per decade of latency.
const BINS_PER_DECADE: f64 = 16.0;

/// A logarithmic latency axis from `10^lo` to `10^hi` seconds: latencies
/// spread over decades, and a fast service's samples would be one bar
/// beside a threshold two decades up on a linear axis.
struct LogAxis {
    lo: i32,
    hi: i32,
}

impl LogAxis {
    /// The decades around `min` and `max` (seconds, > 0).
    fn new(min: f64, max: f64) -> LogAxis {
        let exp = |v: f64| {
            if v.is_finite() && v > 0.0 {
                v.log10()
            } else {
                -6.0
            }
        };
        let lo = exp(min).floor() as i32;
        let hi = (exp(max).ceil() as i32).max(lo + 1);
        LogAxis { lo, hi }
    }

    /// `10^k`, exactly as written (`0.001`, not `0.0010000000000000002`).
    fn decade(k: i32) -> f64 {
        if k < 0 {
            1.0 / 10f64.powi(-k)
        } else {
            10f64.powi(k)
        }
    }

    fn min(&self) -> f64 {
        LogAxis::decade(self.lo)
    }

    fn max(&self) -> f64 {
        LogAxis::decade(self.hi)
    }

    /// Where `secs` sits along the axis, 0 to 1.
    fn fraction(&self, secs: f64) -> f64 {
        if secs.is_nan() || secs <= 0.0 {
            return 0.0;
        }
        ((secs.log10() - f64::from(self.lo)) / f64::from(self.hi - self.lo)).clamp(0.0, 1.0)
    }

    /// The value at `fraction` of the axis.
    fn value(&self, fraction: f64) -> f64 {
        10f64.powf(f64::from(self.lo) + fraction * f64::from(self.hi - self.lo))
    }

    /// Tick values: each decade, and its 2× and 5× when the axis spans
    /// few decades.
    fn ticks(&self) -> Vec<f64> {
        let fine = self.hi - self.lo <= 3;
        let mut ticks = Vec::new();
        for k in self.lo..=self.hi {
            let d = LogAxis::decade(k);
            ticks.push(d);
            if fine && k < self.hi {
                ticks.extend([2.0 * d, 5.0 * d]);
            }
        }
        ticks
    }
}

/// The latency histogram (a logarithmic axis) with a dashed line at each
/// latency threshold's limit, and the percentiles under it. Drawn when
/// there is more than one sample, or a threshold to place the one sample
/// against.
fn write_latency(out: &mut String, o: &Outcome) {
    let samples = samples(o);
    let count: u64 = samples.iter().map(|(_, n)| n).sum();
    let limits = limits(o);
    if count == 0 || (count == 1 && limits.is_empty()) {
        return;
    }
    let values = || {
        samples
            .iter()
            .map(|(d, _)| d.as_secs_f64())
            .chain(limits.iter().map(|l| l.seconds))
            .filter(|v| *v > 0.0)
    };
    let axis = LogAxis::new(
        values().fold(f64::INFINITY, f64::min),
        values().fold(0.0, f64::max),
    );
    let (left, right, top, bottom) = PLOT;
    let x_of = |secs: f64| left + axis.fraction(secs) * (right - left);
    let bins = ((f64::from(axis.hi - axis.lo) * BINS_PER_DECADE) as usize).max(1);
    let mut counts = vec![0u64; bins];
    for (d, n) in &samples {
        let at = (axis.fraction(d.as_secs_f64()) * bins as f64).floor() as usize;
        counts[at.min(bins - 1)] += n;
    }
    let tallest = counts.iter().copied().max().unwrap_or(1).max(1);
    out.push_str("<h4>latency</h4>\n");
    let _ = writeln!(
        out,
        "<svg class=\"histogram\" viewBox=\"0 0 600 180\" width=\"600\" height=\"180\" role=\"img\" \
         aria-label=\"latency histogram\" data-samples=\"{count}\" data-scale=\"log10\" \
         data-axis-min=\"{}\" data-axis-max=\"{}\" data-x0=\"{left}\" data-x1=\"{right}\">",
        axis.min(),
        axis.max()
    );
    let width = (right - left) / bins as f64;
    for (i, n) in counts.iter().enumerate().filter(|(_, n)| **n > 0) {
        let h = (*n as f64 / tallest as f64 * (bottom - top)).max(1.0);
        let from = axis.value(i as f64 / bins as f64);
        let to = axis.value((i + 1) as f64 / bins as f64);
        let _ = writeln!(
            out,
            "<rect class=\"bin\" x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{h:.2}\"><title>{}–{}: {n}</title></rect>",
            left + i as f64 * width + 0.5,
            bottom - h,
            (width - 1.0).max(0.5),
            tick(from),
            tick(to)
        );
    }
    // Axes: the tallest bar's count at the top left, ticks along the
    // bottom.
    let _ = writeln!(
        out,
        "<line class=\"axis\" x1=\"{left}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\"/>\n\
         <line class=\"axis\" x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{bottom}\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{tallest}</text>",
        left - 4.0,
        top + 8.0
    );
    for secs in axis.ticks() {
        let x = x_of(secs);
        let _ = writeln!(
            out,
            "<line class=\"axis\" x1=\"{x:.2}\" y1=\"{bottom}\" x2=\"{x:.2}\" y2=\"{}\"/>\
             <text x=\"{x:.2}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            bottom + 4.0,
            bottom + 16.0,
            tick(secs)
        );
    }
    for (i, l) in limits.iter().enumerate() {
        let x = x_of(l.seconds);
        // The label on the side of the line with room for it.
        let (label_x, anchor) = if x > (left + right) / 2.0 {
            (x - 3.0, "end")
        } else {
            (x + 3.0, "start")
        };
        let _ = writeln!(
            out,
            "<line class=\"threshold{}\" x1=\"{x:.2}\" y1=\"{}\" x2=\"{x:.2}\" y2=\"{bottom}\" \
             data-threshold=\"{}\" data-seconds=\"{}\"><title>{}</title></line>\
             <text x=\"{label_x:.2}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>",
            if l.degraded { " degraded" } else { "" },
            top - 6.0,
            attr(&l.label),
            l.seconds,
            text(&l.label),
            top + 4.0 + 12.0 * i as f64,
            text(&l.label)
        );
    }
    out.push_str("</svg>\n");
    if let Some(l) = &o.latency {
        let at = |v: f64| ms(Duration::from_secs_f64(v.max(0.0)));
        let _ = writeln!(
            out,
            "<p class=\"percentiles\">p50 {} · p90 {} · p95 {} · p99 {} · max {} ({} sample{})</p>",
            at(l.p50),
            at(l.p90),
            at(l.p95),
            at(l.p99),
            at(l.max),
            l.samples,
            if l.samples == 1 { "" } else { "s" }
        );
    }
}

/// An axis label: `250ms`, `1.5s`, `500µs`.
fn tick(secs: f64) -> String {
    let trim = |v: f64| {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    };
    if secs == 0.0 {
        "0".to_owned()
    } else if secs >= 1.0 {
        format!("{}s", trim(secs))
    } else if secs >= 0.001 {
        format!("{}ms", trim(secs * 1e3))
    } else {
        format!("{}µs", trim(secs * 1e6))
    }
}

fn write_thresholds(out: &mut String, o: &Outcome) {
    if o.thresholds.is_empty() {
        return;
    }
    out.push_str(
        "<h4>thresholds</h4>\n<table class=\"thresholds\">\n<thead><tr><th>threshold</th><th>state</th><th>observed</th><th>over</th></tr></thead>\n<tbody>\n",
    );
    for t in &o.thresholds {
        let degraded = t.degraded.as_ref().map_or_else(String::new, |d| {
            format!(" <span class=\"dim\">(degraded: {})</span>", text(d))
        });
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code>{degraded}</td><td class=\"state-{}\">{}</td><td>{}</td><td>{} in {}</td></tr>",
            text(&t.threshold),
            t.state.as_str(),
            t.state.as_str(),
            text(&observed(t)),
            t.runs,
            humantime::format_duration(Duration::from_secs_f64(t.window_seconds.max(0.0)))
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

/// The flow's steps as a waterfall: a row per step, its bar from its
/// offset from the run's start for its duration (a skipped step is a
/// sliver at its place), the axis in the run's time.
fn write_waterfall(out: &mut String, o: &Outcome) {
    const LABEL: f64 = 190.0;
    const RIGHT: f64 = 520.0;
    const ROW: f64 = 22.0;
    /// About how wide a character of the 11px labels is.
    const CHAR: f64 = 6.5;
    let end = o
        .steps
        .iter()
        .map(|s| (s.offset + s.duration).as_secs_f64())
        .chain(std::iter::once(o.duration.as_secs_f64()))
        .fold(0.0, f64::max);
    let axis = Axis::new(end);
    let x_max = axis.max();
    let x_of = |secs: f64| LABEL + secs / x_max * (RIGHT - LABEL);
    let height = ROW * o.steps.len() as f64 + 28.0;
    out.push_str("<h4>steps</h4>\n");
    let _ = writeln!(
        out,
        "<svg class=\"waterfall\" viewBox=\"0 0 600 {height}\" width=\"600\" height=\"{height}\" role=\"img\" \
         aria-label=\"step waterfall\" data-axis-max=\"{x_max}\">"
    );
    for (i, s) in o.steps.iter().enumerate() {
        let y = 4.0 + ROW * i as f64;
        let state = match (s.success, s.attempts) {
            (true, 0) => "skipped",
            (true, _) => "pass",
            (false, _) => "fail",
        };
        let x = x_of(s.offset.as_secs_f64());
        let w = (s.duration.as_secs_f64() / x_max * (RIGHT - LABEL)).max(1.5);
        let attempts = if s.attempts > 1 {
            format!(" ({} attempts)", s.attempts)
        } else {
            String::new()
        };
        let label = format!("{}{attempts}", ms(s.duration));
        // The duration right of the bar, else left of it, else inside it.
        let room = label.chars().count() as f64 * CHAR + 4.0;
        let (label_x, anchor, inside) = if x + w + room <= 600.0 {
            (x + w + 4.0, "start", "")
        } else if x - LABEL >= room {
            (x - 4.0, "end", "")
        } else {
            (x + w - 4.0, "end", " class=\"inside\"")
        };
        let _ = writeln!(
            out,
            "<text x=\"4\" y=\"{:.2}\">{}</text>\
             <rect class=\"step {state} stage-{}\" x=\"{x:.2}\" y=\"{y:.2}\" width=\"{w:.2}\" height=\"{}\" data-step=\"{}\">\
             <title>{} {state} at +{} for {}{attempts}</title></rect>\
             <text x=\"{label_x:.2}\" y=\"{:.2}\" text-anchor=\"{anchor}\"{inside}>{}</text>",
            y + 13.0,
            text(&step_label(s)),
            stage(s.stage),
            ROW - 6.0,
            attr(&s.name),
            text(&step_label(s)),
            ms(s.offset),
            ms(s.duration),
            y + 13.0,
            text(&label)
        );
    }
    let base = ROW * o.steps.len() as f64 + 6.0;
    let _ = writeln!(
        out,
        "<line class=\"axis\" x1=\"{LABEL}\" y1=\"{base}\" x2=\"{RIGHT}\" y2=\"{base}\"/>"
    );
    for k in 0..=axis.ticks {
        let secs = axis.at(k);
        let _ = writeln!(
            out,
            "<text x=\"{:.2}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x_of(secs),
            base + 16.0,
            tick(secs)
        );
    }
    out.push_str("</svg>\n");
}

fn write_steps(out: &mut String, steps: &[StepOutcome]) {
    out.push_str(
        "<table class=\"steps\">\n<thead><tr><th>step</th><th>result</th><th>status</th><th>attempts</th><th>duration</th><th></th></tr></thead>\n<tbody>\n",
    );
    for s in steps {
        let (result, cls) = match (s.success, s.attempts) {
            (true, 0) => ("skipped", "skip"),
            (true, _) => ("passed", "pass"),
            (false, _) => ("failed", "fail"),
        };
        let status = s
            .http
            .as_ref()
            .and_then(|h| h.status)
            .map_or_else(|| "---".to_owned(), |c| c.to_string());
        let note = match (&s.error, s.reason) {
            (Some(e), Some(r)) => format!("{r}: {e}"),
            (Some(e), None) => e.clone(),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "<tr class=\"{cls}\"><td>{}</td><td><span class=\"badge {cls}\">{result}</span></td><td>{status}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            text(&step_label(s)),
            s.attempts,
            ms(s.duration),
            text(&note)
        );
        if !s.success {
            out.push_str("<tr><td></td><td colspan=\"5\">");
            write_failed(out, &s.assertions);
            out.push_str("</td></tr>\n");
        }
    }
    out.push_str("</tbody>\n</table>\n");
}

fn write_comparison(out: &mut String, c: &Comparison) {
    let at = |v: f64| ms(Duration::from_secs_f64(v.max(0.0)));
    let (label, cls) = match c.verdict {
        GateVerdict::Ok => ("ok", "pass"),
        GateVerdict::Regressed => ("regressed", "fail"),
        GateVerdict::NoBaseline => ("no baseline", "warn"),
        GateVerdict::Skipped => ("skipped", "skip"),
    };
    let detail = match (c.current, c.baseline) {
        (Some(now), Some(then)) => format!(
            "{} {} vs {} baseline ({}, tolerance {})",
            c.metric.as_str(),
            at(now),
            at(then),
            c.ratio
                .map_or_else(|| "no ratio".to_owned(), |r| format!("×{r:.2}")),
            percent(c.tolerance)
        ),
        (_, None) => "not in the baseline file".to_owned(),
        (None, Some(_)) => "the run failed or measured no latency: not compared".to_owned(),
    };
    let _ = writeln!(
        out,
        "<h4>baseline</h4>\n<p class=\"comparison\"><span class=\"badge {cls}\">{label}</span> {}</p>",
        text(&detail)
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn axis_ends_are_round() {
        let ends = |v: f64| {
            let a = Axis::new(v);
            (a.max(), a.at(1))
        };
        assert_eq!(ends(0.262), (0.3, 0.1));
        assert_eq!(ends(0.0213), (0.025, 0.005));
        assert_eq!(ends(1.9), (2.0, 0.5));
        assert_eq!(ends(0.5), (0.5, 0.1));
        assert_eq!(ends(0.0), (0.000001, 0.0000002));
        assert_eq!(tick(0.25), "250ms");
        assert_eq!(tick(1.5), "1.5s");
        assert_eq!(tick(0.0005), "500µs");
    }

    #[test]
    fn a_threshold_line_sits_at_its_limit_on_the_axis() {
        let ids = crate::tagging::RunIds::generate();
        let mut o = Outcome::new("p", "e", "http", &ids);
        o.success = true;
        o.responded = true;
        o.duration = Duration::from_millis(120);
        o.thresholds.push(crate::outcome::ThresholdResult {
            threshold: "p(99) < 250ms".to_owned(),
            degraded: Some("p(99) < 200ms".to_owned()),
            state: State::Ok,
            observed: Some(0.12),
            unit: "seconds",
            window_seconds: 300.0,
            runs: 1,
        });
        let html = render(&[o], None, &ArtifactLinks::new());
        // 120 ms to 250 ms: the decade from 100 ms to 1 s, on 48..588.
        assert!(
            html.contains("data-axis-min=\"0.1\" data-axis-max=\"1\""),
            "{html}"
        );
        // x = 48 + (log10(0.25) + 1) × 540.
        assert!(
            html.contains("<line class=\"threshold\" x1=\"262.89\""),
            "{html}"
        );
        // x = 48 + (log10(0.2) + 1) × 540.
        assert!(
            html.contains("<line class=\"threshold degraded\" x1=\"210.56\""),
            "{html}"
        );
        // The one sample is one bar, in the bin of 120 ms.
        assert_eq!(html.matches("<rect class=\"bin\"").count(), 1, "{html}");
    }

    #[test]
    fn a_log_axis_spans_whole_decades() {
        let a = LogAxis::new(0.0032, 0.25);
        assert_eq!((a.min(), a.max()), (0.001, 1.0));
        assert_eq!(a.fraction(0.01), 1.0 / 3.0);
        assert_eq!(a.fraction(0.0), 0.0);
        assert_eq!(a.ticks().len(), 3 * 3 + 1);
        let one = LogAxis::new(0.001, 0.001);
        assert_eq!((one.lo, one.hi), (-3, -2));
    }
}
