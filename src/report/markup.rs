//! Escaping text for the markup reports (JUnit XML, HTML). What they
//! print is anything a target or a config can produce (error sentences,
//! response excerpts, expressions), so every piece of text goes through
//! here: the five XML entities escaped, and the characters XML 1.0 cannot
//! carry at all (control characters other than tab, LF and CR; U+FFFE and
//! U+FFFF) dropped, since no escape makes them legal. Also the few
//! number formats both reports share.

use crate::outcome::{HttpFacts, Stage, StepOutcome, ThresholdResult};
use std::fmt::Write as _;
use std::time::Duration;

/// Whether XML 1.0 allows `c` in a document (its `Char` production, less
/// the surrogates, which a Rust `char` cannot be).
fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// `text` for element content: `&`, `<`, `>`, `"` and `'` as entities
/// (the HTML report's text is XML too), forbidden characters dropped.
pub fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().filter(|c| allowed(*c)) {
        push(&mut out, c);
    }
    out
}

/// `text` for a double-quoted attribute value: as [`text`], and tab, LF
/// and CR as character references, which a parser keeps (it would turn
/// them into spaces when written as they are).
pub fn attr(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().filter(|c| allowed(*c)) {
        match c {
            '\t' | '\n' | '\r' => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
            c => push(&mut out, c),
        }
    }
    out
}

fn push(out: &mut String, c: char) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        '\'' => out.push_str("&apos;"),
        c => out.push(c),
    }
}

/// Seconds with microsecond resolution and no exponent (`0.001234`),
/// as JUnit's `time` and the reports' numbers are written.
pub fn seconds(secs: f64) -> String {
    if secs.is_finite() && secs > 0.0 {
        format!("{secs:.6}")
    } else {
        "0.000000".to_owned()
    }
}

/// A latency for people: `12.3ms`, like the terminal report.
pub fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

/// A threshold's observed value in its unit: `312.0ms`, `1.250%`, or
/// `no data`.
pub fn observed(t: &ThresholdResult) -> String {
    match (t.observed, t.unit) {
        (None, _) => "no data".to_owned(),
        (Some(v), "seconds") if v.is_finite() && v >= 0.0 => ms(Duration::from_secs_f64(v)),
        (Some(v), _) => format!("{:.3}%", v * 100.0),
    }
}

/// A request line and its answer: `GET https://… → 200`.
pub fn request(h: &HttpFacts) -> String {
    let status = h
        .status
        .map_or_else(|| "no response".to_owned(), |s| s.to_string());
    format!("{} {} → {status}", h.method, h.url)
}

/// A flow step as the reports name it: `create`, `teardown delete`.
pub fn step_label(s: &StepOutcome) -> String {
    match s.stage {
        Stage::Step => s.name.clone(),
        other => format!("{} {}", stage(other), s.name),
    }
}

pub fn stage(s: Stage) -> &'static str {
    match s {
        Stage::Setup => "setup",
        Stage::Step => "step",
        Stage::Teardown => "teardown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_five_entities_are_escaped_and_forbidden_characters_dropped() {
        assert_eq!(
            text("<script>alert('x' & \"y\")</script>"),
            "&lt;script&gt;alert(&apos;x&apos; &amp; &quot;y&quot;)&lt;/script&gt;"
        );
        // NUL, ESC, vertical tab, form feed and U+FFFE/U+FFFF cannot be in
        // an XML 1.0 document, escaped or not; tab, LF and CR can.
        assert_eq!(
            text("a\u{0}b\u{1b}[31mc\u{b}\u{c}d\u{fffe}\u{ffff}e\tf\ng\rh"),
            "ab[31mcde\tf\ng\rh"
        );
        assert_eq!(text("ünïcödé ✓ 𝄞"), "ünïcödé ✓ 𝄞");
        assert_eq!(attr("a\tb\nc\rd\u{7}<"), "a&#9;b&#10;c&#13;d&lt;");
    }

    #[test]
    fn seconds_have_no_exponent() {
        assert_eq!(seconds(0.0000012), "0.000001");
        assert_eq!(seconds(12.5), "12.500000");
        assert_eq!(seconds(f64::NAN), "0.000000");
        assert_eq!(seconds(-1.0), "0.000000");
    }
}
