//! The terminal report: one line per (probe, environment) with the result,
//! total latency and phase breakdown, then each failed expectation with what
//! was expected, what was seen and where it was written. A workload adds its
//! totals and, when it dropped requests, how many and why.

use super::Summary;
use super::baseline::{Comparison, GateReport, Verdict, percent};
use crate::outcome::{AssertionResult, Outcome, Stage, WorkloadFacts};
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
        // A pass after a retry says so, and every failed try is listed.
        if let Some(note) = super::tries_note(o) {
            let style = if o.success { WARN } else { FAIL };
            let _ = writeln!(out, "      {}", paint(style, &note));
            for a in &o.retried {
                let _ = writeln!(out, "        {}", paint(DIM, &super::retried_line(a)));
            }
        }
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
            let noun = if o.kind == "flow" {
                "iterations"
            } else {
                "requests"
            };
            // A sharded workload says from how many threads it sent.
            let threads = if w.threads > 1 {
                format!(" · {} threads", w.threads)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "      workload {} sent ({} scheduled, {} dropped) at {:.1}/s · {} ok · {} failed{threads}",
                w.sent, w.scheduled, w.dropped, w.rate, w.ok, w.failed
            );
            if let Some(why) = dropped(w, noun) {
                let _ = writeln!(out, "      {}: {why}", paint(WARN, "dropped"));
            }
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
    let flaky = if s.flaky > 0 {
        format!(" ({} flaky)", s.flaky)
    } else {
        String::new()
    };
    let line = format!("{} passed{flaky}, {} failed", s.passed, s.failed);
    let _ = writeln!(
        out,
        "\n{}",
        paint(if s.failed == 0 { PASS } else { FAIL }, &line)
    );
    out
}

/// The quality gate's section (`--baseline FILE`), printed after the
/// report: a line per selected pair (its metric now and in the baseline,
/// the ratio and the tolerance), a failure line per regression naming
/// everything a CI log reader needs, and the counts.
pub fn render_baseline(gate: &GateReport, color: bool) -> String {
    let paint = |style: Style, text: &str| {
        if color {
            format!("{style}{text}{style:#}")
        } else {
            text.to_owned()
        }
    };
    let at = |v: f64| ms(Duration::from_secs_f64(v));
    let target = |c: &Comparison| format!("{} @ {}", c.probe, c.environment);
    let width = gate
        .comparisons
        .iter()
        .map(|c| target(c).len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nbaseline {} (written {})",
        gate.file, gate.created_at
    );
    for c in &gate.comparisons {
        let (label, style) = match c.verdict {
            Verdict::Ok => ("ok", PASS),
            Verdict::Regressed => ("REGRESSED", FAIL),
            Verdict::NoBaseline => ("no baseline", WARN),
            Verdict::Skipped => ("skipped", DIM),
        };
        let label = paint(style, &format!("{label:<11}"));
        let detail = match (c.current, c.baseline) {
            (Some(now), Some(then)) => format!(
                "{} {} vs {} baseline ({}, tolerance {})",
                c.metric.as_str(),
                at(now),
                at(then),
                times(c.ratio),
                percent(c.tolerance)
            ),
            (_, None) => "not in the file: not compared".to_owned(),
            (None, Some(then)) => format!(
                "the run failed or measured no latency: not compared ({} baseline {})",
                c.metric.as_str(),
                at(then)
            ),
        };
        let _ = writeln!(out, "  {label}  {:<width$}  {detail}", target(c));
    }
    for c in gate
        .comparisons
        .iter()
        .filter(|c| c.verdict == Verdict::Regressed)
    {
        let (Some(now), Some(then), Some(limit)) = (c.current, c.baseline, c.limit) else {
            continue;
        };
        let _ = writeln!(
            out,
            "{}  baseline regression: {} {} {} vs {} in the baseline ({}), beyond the {} tolerance (at most {})",
            paint(FAIL, "FAIL"),
            target(c),
            c.metric.as_str(),
            at(now),
            at(then),
            times(c.ratio),
            percent(c.tolerance),
            at(limit)
        );
    }
    let count = |v: Verdict| gate.comparisons.iter().filter(|c| c.verdict == v).count();
    let line = format!(
        "baseline: {} ok, {} regressed, {} without a baseline, {} skipped",
        count(Verdict::Ok),
        gate.regressions,
        count(Verdict::NoBaseline),
        count(Verdict::Skipped)
    );
    let _ = writeln!(
        out,
        "{}",
        paint(if gate.passed() { PASS } else { FAIL }, &line)
    );
    out
}

/// How many of a workload's requests were dropped and why, when any were:
/// the target held every slot of the cap, or the sender itself fell behind.
fn dropped(w: &WorkloadFacts, noun: &str) -> Option<String> {
    if w.dropped == 0 {
        return None;
    }
    let due = w.sent + w.dropped;
    let share = w.dropped as f64 / due.max(1) as f64 * 100.0;
    let mut why = Vec::new();
    let at_cap = w.dropped.saturating_sub(w.dropped_behind);
    if at_cap > 0 {
        why.push(format!(
            "{at_cap} came due on time with all {} slots of max_concurrency in flight \
             (the target is slower than the rate allows: raise max_concurrency or lower the rate)",
            w.max_concurrency
        ));
    }
    if w.dropped_behind > 0 {
        why.push(format!(
            "{} came due while the sender ran behind schedule (by up to {}) with all {} slots in flight \
             (this machine could not keep up with the rate)",
            w.dropped_behind,
            ms(w.max_lag),
            w.max_concurrency
        ));
    }
    Some(format!(
        "{} of {due} {noun} ({share:.1}%) never sent: {}",
        w.dropped,
        why.join("; ")
    ))
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

/// A ratio to a baseline: `×4.45`.
fn times(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "no ratio".to_owned(), |r| format!("×{r:.2}"))
}

fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn workload(dropped: u64, dropped_behind: u64) -> WorkloadFacts {
        WorkloadFacts {
            scheduled: 400,
            sent: 400 - dropped,
            dropped,
            dropped_behind,
            max_concurrency: 2,
            max_lag: Duration::from_millis(350),
            ok: 400 - dropped,
            ..WorkloadFacts::default()
        }
    }

    /// Regression: a workload that dropped 75 % of its requests showed
    /// only a count on its totals line; the report now says how many were
    /// never sent and why.
    #[test]
    fn dropped_requests_are_counted_and_explained() {
        assert_eq!(dropped(&workload(0, 0), "requests"), None);
        let at_cap = dropped(&workload(300, 0), "requests").unwrap();
        assert!(
            at_cap.starts_with("300 of 400 requests (75.0%) never sent: 300 came due on time with all 2 slots of max_concurrency in flight"),
            "{at_cap}"
        );
        assert!(!at_cap.contains("behind"), "{at_cap}");
        let both = dropped(&workload(300, 120), "iterations").unwrap();
        assert!(
            both.contains("180 came due on time with all 2 slots"),
            "{both}"
        );
        assert!(
            both.contains("120 came due while the sender ran behind schedule (by up to 350.0ms)"),
            "{both}"
        );
        assert!(both.contains("300 of 400 iterations"), "{both}");
    }

    #[test]
    fn the_workload_lines_show_the_drops() {
        let ids = crate::tagging::RunIds::generate();
        let mut o = Outcome::new("w", "env", "http", &ids);
        o.success = true;
        o.workload = Some(workload(300, 0));
        let text = render(&[o], false);
        assert!(
            text.contains("workload 100 sent (400 scheduled, 300 dropped)"),
            "{text}"
        );
        assert!(
            text.contains("\n      dropped: 300 of 400 requests (75.0%) never sent: "),
            "{text}"
        );
        assert!(!text.contains("threads"), "one task says nothing: {text}");
    }

    #[test]
    fn a_sharded_workload_says_how_many_threads_sent() {
        let ids = crate::tagging::RunIds::generate();
        let mut o = Outcome::new("w", "env", "http", &ids);
        o.success = true;
        o.workload = Some(WorkloadFacts {
            threads: 2,
            ..workload(0, 0)
        });
        let text = render(&[o], false);
        assert!(text.contains(" · 0 failed · 2 threads\n"), "{text}");
    }
}
