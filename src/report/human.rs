//! The terminal report: one line per (probe, environment) with the result,
//! total latency and phase breakdown, then each failed expectation with what
//! was expected, what was seen and where it was written.

use super::Summary;
use crate::outcome::{AssertionResult, Outcome, Stage};
use crate::threshold::State;
use anstyle::{AnsiColor, Style};
use std::fmt::Write as _;
use std::time::Duration;

const PASS: Style = AnsiColor::Green.on_default().bold();
const FAIL: Style = AnsiColor::Red.on_default().bold();
const DIM: Style = Style::new().dimmed();
const WARN: Style = AnsiColor::Yellow.on_default().bold();

/// Renders the report. With `color`, ANSI styles are included (the caller
/// decides: a TTY without `NO_COLOR`).
pub fn render(outcomes: &[Outcome], color: bool) -> String {
    let paint = |style: Style, text: &str| {
        if color {
            format!("{style}{text}{style:#}")
        } else {
            text.to_owned()
        }
    };
    let name_width = outcomes
        .iter()
        .map(|o| o.probe.len() + o.environment.len() + 3)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for o in outcomes {
        let mark = if o.passed() {
            paint(PASS, "PASS")
        } else {
            paint(FAIL, "FAIL")
        };
        let target = format!("{} @ {}", o.probe, o.environment);
        let status = o
            .http
            .as_ref()
            .and_then(|h| h.status)
            .map_or_else(|| "---".to_owned(), |s| s.to_string());
        let _ = write!(
            out,
            "{mark}  {target:<name_width$}  {status}  {:>9}",
            ms(o.duration)
        );
        if let Some(h) = &o.http {
            let phases = h
                .phases
                .named()
                .iter()
                .map(|(name, d)| format!("{name} {}", ms(*d)))
                .collect::<Vec<_>>()
                .join(" · ");
            let _ = write!(out, "  {}", paint(DIM, &phases));
        } else if !o.phases.is_empty() {
            let phases = o
                .phases
                .iter()
                .map(|p| format!("{} {}", p.name, ms(p.seconds)))
                .collect::<Vec<_>>()
                .join(" · ");
            let _ = write!(out, "  {}", paint(DIM, &phases));
        }
        out.push('\n');
        for s in &o.steps {
            let (mark, style) = match (s.success, s.attempts) {
                (true, 0) => ("-", DIM),
                (true, _) => ("✓", PASS),
                (false, _) => ("✗", FAIL),
            };
            let stage = match s.stage {
                Stage::Setup => "setup ",
                Stage::Step => "",
                Stage::Teardown => "teardown ",
            };
            let status = s
                .http
                .as_ref()
                .and_then(|h| h.status)
                .map_or_else(|| "---".to_owned(), |c| c.to_string());
            let attempts = if s.attempts > 1 {
                format!(" ({} attempts)", s.attempts)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "      {} {stage}{}  {status}  {}{attempts}",
                paint(style, mark),
                s.name,
                ms(s.duration)
            );
            if !s.success || s.attempts == 0 {
                if let Some(e) = &s.error {
                    let label = s.reason.map_or("note", |r| r.as_str());
                    let _ = writeln!(out, "          {}: {e}", paint(style, label));
                }
                write_failed(&mut out, &s.assertions, "          ", &paint);
            }
        }
        if let Some(w) = &o.workload {
            let _ = writeln!(
                out,
                "      workload {} sent ({} scheduled, {} dropped) at {:.1}/s · {} ok · {} failed",
                w.sent, w.scheduled, w.dropped, w.rate, w.ok, w.failed
            );
            if w.anomalies.sent > 0 {
                let _ = writeln!(
                    out,
                    "      anomalies {} sent · {} rejected as expected · {} unexpected",
                    w.anomalies.sent, w.anomalies.rejected, w.anomalies.unexpected
                );
            }
        }
        if !o.success {
            if let (Some(reason), Some(error)) = (o.reason, &o.error) {
                let _ = writeln!(out, "      {}: {error}", paint(FAIL, reason.as_str()));
            }
            write_failed(&mut out, &o.assertions, "      ", &paint);
        }
        if let Some(l) = o.latency.filter(|l| l.samples > 1) {
            let at = |v: f64| ms(Duration::from_secs_f64(v));
            let _ = writeln!(
                out,
                "      latency p50 {} · p90 {} · p95 {} · p99 {} · max {} ({} samples)",
                at(l.p50),
                at(l.p90),
                at(l.p95),
                at(l.p99),
                at(l.max),
                l.samples
            );
        }
        // A workload's thresholds count its requests (or a flow's
        // iterations); a single run's count the pair's runs.
        let counted = match (&o.workload, o.kind) {
            (Some(_), "flow") => "iteration",
            (Some(_), _) => "request",
            (None, _) => "run",
        };
        for t in &o.thresholds {
            let style = match t.state {
                State::Failing => FAIL,
                State::Degraded => WARN,
                State::Ok | State::NoData => DIM,
            };
            let observed = match (t.observed, t.unit) {
                (None, _) => "no data".to_owned(),
                (Some(v), "seconds") => ms(Duration::from_secs_f64(v)),
                (Some(v), _) => format!("{:.3}%", v * 100.0),
            };
            let _ = writeln!(
                out,
                "      threshold {}: {} (observed {observed} over {} {counted}{})",
                t.threshold,
                paint(style, t.state.as_str()),
                t.runs,
                if t.runs == 1 { "" } else { "s" }
            );
        }
    }
    let s = Summary::of(outcomes);
    let line = format!("{} passed, {} failed", s.passed, s.failed);
    let _ = writeln!(
        out,
        "\n{}",
        paint(if s.failed == 0 { PASS } else { FAIL }, &line)
    );
    out
}

/// Each failed expectation: what was expected, where, and what was seen.
fn write_failed(
    out: &mut String,
    assertions: &[AssertionResult],
    indent: &str,
    paint: &dyn Fn(Style, &str) -> String,
) {
    for a in assertions.iter().filter(|a| !a.passed) {
        let at = a
            .location
            .as_ref()
            .map(|l| format!("  ({l})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{indent}✗ expected {}{}",
            a.expression,
            paint(DIM, &at)
        );
        let _ = writeln!(out, "{indent}  actual   {}", a.actual);
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}
