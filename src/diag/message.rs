//! The words of a diagnostic: serde's error messages classified
//! ([`Problem`]) and rewritten as "expected X, found Y", values described
//! the way serde does, and the nearest-key suggestions ([`nearest`],
//! "did you mean …?").

/// What a serde error message says, in the shapes this module rewrites.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Problem {
    UnknownField { name: String, expected: Vec<String> },
    UnknownVariant { name: String, expected: Vec<String> },
    MissingField { name: String },
    Other { message: String },
}

/// The text between the first pair of backticks, and the rest after it.
fn first_backticked(s: &str) -> Option<(&str, &str)> {
    let s = s.strip_prefix('`')?;
    let end = s.find('`')?;
    Some((&s[..end], &s[end + 1..]))
}

/// Every backticked name in `s`.
fn backticked(s: &str) -> Vec<String> {
    s.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

pub(super) fn classify(message: &str) -> Problem {
    if let Some(rest) = message.strip_prefix("unknown field ")
        && let Some((name, rest)) = first_backticked(rest)
    {
        return Problem::UnknownField {
            name: name.to_owned(),
            expected: backticked(rest),
        };
    }
    if let Some(rest) = message.strip_prefix("unknown variant ")
        && let Some((name, rest)) = first_backticked(rest)
    {
        return Problem::UnknownVariant {
            name: name.to_owned(),
            expected: backticked(rest),
        };
    }
    if let Some(rest) = message.strip_prefix("missing field ")
        && let Some((name, _)) = first_backticked(rest)
    {
        return Problem::MissingField {
            name: name.to_owned(),
        };
    }
    Problem::Other {
        message: rephrase(message),
    }
}

/// Rewrites serde's "invalid type: X, expected Y" (and "invalid value",
/// "invalid length") as "expected Y, found X"; other messages are tidied.
fn rephrase(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some(split) = rest.rfind(", expected ")
        {
            let found = &rest[..split];
            let expected = &rest[split + ", expected ".len()..];
            return tidy_message(&format!("expected {expected}, found {found}"));
        }
    }
    if let Some(rest) = message.strip_prefix("invalid length ")
        && let Some(split) = rest.find(", expected ")
    {
        let found = &rest[..split];
        let expected = &rest[split + ", expected ".len()..];
        return tidy_message(&format!("expected {expected}, found length {found}"));
    }
    tidy_message(message)
}

/// Adds what was found to messages that only say what was expected: a
/// custom `expecting` text ("a number of bytes or …") and serde's "data did
/// not match any variant of untagged enum X".
pub(super) fn with_found(message: String, value: Option<&toml::Value>) -> String {
    let Some(value) = value else {
        return message;
    };
    if message.starts_with("a ") || message.starts_with("an ") {
        return format!("expected {message}, found {}", describe(value));
    }
    if let Some(name) = message.strip_prefix("data did not match any variant of untagged enum ") {
        return format!("expected {name}, found {}", describe(value));
    }
    message
}

/// A value described the way serde's `Unexpected` does, as in
/// "string \"abc\"" or "integer `3`".
pub(super) fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("string {s:?}"),
        toml::Value::Integer(i) => format!("integer `{i}`"),
        toml::Value::Float(x) => format!("floating point `{x}`"),
        toml::Value::Boolean(b) => format!("boolean `{b}`"),
        toml::Value::Datetime(d) => format!("datetime `{d}`"),
        toml::Value::Array(_) => "array".to_owned(),
        toml::Value::Table(_) => "table".to_owned(),
    }
}

/// Lowercases the first letter (unless the first word looks like an acronym)
/// and drops trailing periods and whitespace.
pub(super) fn tidy_message(message: &str) -> String {
    let trimmed = message.trim().trim_end_matches('.').trim_end();
    let mut chars = trimmed.chars();
    let Some(first) = chars.next() else {
        return String::new();
    };
    let acronym = chars.next().is_some_and(char::is_uppercase);
    if acronym {
        trimmed.to_owned()
    } else {
        first
            .to_lowercase()
            .chain(trimmed[first.len_utf8()..].chars())
            .collect()
    }
}

/// "`a`, `b`" for a list of names.
fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "(expected `a`)" or "(expected one of `a`, `b`)".
pub(super) fn expected_clause(expected: &[String]) -> String {
    match expected {
        [only] => format!("(expected `{only}`)"),
        names => format!("(expected one of {})", quoted_list(names)),
    }
}

pub(super) fn did_you_mean(word: &str, expected: &[String]) -> Option<String> {
    nearest(word, expected.iter().map(String::as_str)).map(|best| format!("did you mean `{best}`?"))
}

/// The candidate closest to `word`, if any is close enough to be a likely
/// typo: a normalized Damerau-Levenshtein similarity of at least 0.6 or a
/// Jaro-Winkler similarity of at least 0.8 (compared case-insensitively).
/// Ties go to the earlier candidate.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_lowercase();
    let mut best: Option<(f64, &'a str)> = None;
    for candidate in candidates {
        let lower = candidate.to_lowercase();
        let edit = strsim::normalized_damerau_levenshtein(&word, &lower);
        let jaro = strsim::jaro_winkler(&word, &lower);
        if edit < 0.6 && jaro < 0.8 {
            continue;
        }
        let score = edit.max(jaro);
        if best.is_none_or(|(top, _)| score > top) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn message_rewriting() {
        assert_eq!(
            rephrase("invalid type: string \"abc\", expected u32"),
            "expected u32, found string \"abc\""
        );
        assert_eq!(
            rephrase("invalid value: integer `-1`, expected u32"),
            "expected u32, found integer `-1`"
        );
        assert_eq!(
            rephrase("invalid length 2, expected 3 elements"),
            "expected 3 elements, found length 2"
        );
        assert_eq!(rephrase("Bad duration."), "bad duration");
        assert_eq!(rephrase("URL is bad."), "URL is bad");
        assert_eq!(
            classify("unknown field `x`, expected `a` or `b`"),
            Problem::UnknownField {
                name: "x".into(),
                expected: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(
            classify("unknown field `x`, there are no fields"),
            Problem::UnknownField {
                name: "x".into(),
                expected: vec![]
            }
        );
        assert_eq!(
            classify("missing field `url`"),
            Problem::MissingField { name: "url".into() }
        );
    }

    #[test]
    fn nearest_suggestions() {
        let keys = [
            "method",
            "url",
            "headers",
            "expect",
            "status",
            "environments",
            "timeout",
        ];
        assert_eq!(nearest("headrs", keys), Some("headers"));
        assert_eq!(nearest("stauts", keys), Some("status"));
        assert_eq!(nearest("enviroments", keys), Some("environments"));
        assert_eq!(nearest("timout", keys), Some("timeout"));
        assert_eq!(nearest("zzz", keys), None);
        assert_eq!(nearest("anything", []), None);
    }
}
