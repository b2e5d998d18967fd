//! Secret references (`${env:NAME}`, `${file:PATH}`) and their redaction.
//!
//! A config string may reference secrets instead of holding them in clear.
//! They are resolved once, at load, and every resolved value is remembered by
//! a [`Redactor`] so that outcomes, reports and logs can be scrubbed of it.
//! `$${` writes a literal `${`.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

/// Shorter secret values are not redacted: masking every `a` or `42` in a
/// report would garble it while protecting nothing.
pub const MIN_REDACTED_LEN: usize = 4;

/// The text that replaces a secret value.
pub const MASK: &str = "***";

/// A value that must not be printed. `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The clear value, for the one place that needs it (sending it).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// Every secret value resolved from the config; replaces them with `***`.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is masked whole.
    values: Vec<Secret<String>>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.values.len())
    }
}

impl Redactor {
    /// Remembers `value`, and the forms it takes once percent-encoded in a
    /// URL query or path, so a secret sent in a URL is masked there too.
    pub fn add(&mut self, value: &str) {
        if value.len() < MIN_REDACTED_LEN {
            return;
        }
        let query: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
        let path = url::Url::parse("http://redact.invalid/")
            .map(|mut u| {
                u.set_path(value);
                u.path().trim_start_matches('/').to_owned()
            })
            .unwrap_or_default();
        for form in [value.to_owned(), query, path] {
            if form.len() >= MIN_REDACTED_LEN && !self.values.iter().any(|v| *v.expose() == form) {
                self.values.push(Secret::new(form));
            }
        }
        self.values
            .sort_by_key(|v| std::cmp::Reverse(v.expose().len()));
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every known secret value replaced by `***`.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.values {
            if out.contains(secret.expose().as_str()) {
                out = Cow::Owned(out.replace(secret.expose().as_str(), MASK));
            }
        }
        out
    }

    /// Redacts a string in place.
    pub fn scrub(&self, text: &mut String) {
        if let Cow::Owned(clean) = self.redact(text) {
            *text = clean;
        }
    }
}

/// Expands `${env:NAME}` and `${file:PATH}` in `input`, recording each
/// resolved value in `redactor`. Returns whether any reference was found, so
/// callers know the result is sensitive. A file's trailing newline is
/// dropped, as secret files written by `echo` or Kubernetes usually end in one.
pub fn expand(
    input: &str,
    base_dir: &Path,
    redactor: &mut Redactor,
) -> Result<(String, bool), String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    let mut sensitive = false;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
            continue;
        }
        let Some(body_start) = tail.strip_prefix("${") else {
            out.push('$');
            rest = &tail[1..];
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err("unterminated `${` (write `$${` for a literal)".into());
        };
        let reference = &body_start[..end];
        let value = resolve(reference, base_dir)?;
        redactor.add(&value);
        out.push_str(&value);
        sensitive = true;
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok((out, sensitive))
}

fn resolve(reference: &str, base_dir: &Path) -> Result<String, String> {
    if let Some(name) = reference.strip_prefix("env:") {
        return std::env::var(name).map_err(|e| match e {
            std::env::VarError::NotPresent => {
                format!("environment variable `{name}` referenced by `${{env:{name}}}` is not set")
            }
            std::env::VarError::NotUnicode(_) => {
                format!("environment variable `{name}` is not valid UTF-8")
            }
        });
    }
    if let Some(path) = reference.strip_prefix("file:") {
        let full = base_dir.join(path);
        return match std::fs::read_to_string(&full) {
            Ok(text) => Ok(text.strip_suffix('\n').unwrap_or(&text).to_owned()),
            Err(e) => Err(format!("cannot read secret file `{}`: {e}", full.display())),
        };
    }
    Err(format!(
        "unknown reference `${{{reference}}}`: expected `${{env:NAME}}` or `${{file:PATH}}`"
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_and_display_are_masked() {
        let s = Secret::new("hunter22".to_string());
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "hunter22");
    }

    #[test]
    fn expands_env_and_file_and_records_values() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "file-secret-1\n").unwrap();
        let mut r = Redactor::default();
        // PATH is always set; it stands in for a secret here.
        let path = std::env::var("PATH").unwrap();
        let (out, sensitive) = expand("a ${file:tok} b ${env:PATH}", dir.path(), &mut r).unwrap();
        assert!(sensitive);
        assert_eq!(out, format!("a file-secret-1 b {path}"));
        assert_eq!(r.redact(&out), "a *** b ***");
    }

    #[test]
    fn literal_dollar_and_escape() {
        let mut r = Redactor::default();
        let (out, sensitive) = expand("cost $5 $${env:X}", Path::new("."), &mut r).unwrap();
        assert_eq!(out, "cost $5 ${env:X}");
        assert!(!sensitive);
    }

    #[test]
    fn errors_name_the_reference() {
        let mut r = Redactor::default();
        let err = expand("${env:SYNTHMON_TEST_SURELY_UNSET}", Path::new("."), &mut r).unwrap_err();
        assert!(err.contains("SYNTHMON_TEST_SURELY_UNSET"), "{err}");
        let err = expand("${file:/nonexistent/x}", Path::new("."), &mut r).unwrap_err();
        assert!(err.contains("/nonexistent/x"), "{err}");
        let err = expand("${vault:x}", Path::new("."), &mut r).unwrap_err();
        assert!(err.contains("unknown reference"), "{err}");
        assert!(expand("${env:X", Path::new("."), &mut r).is_err());
    }

    #[test]
    fn percent_encoded_forms_are_redacted() {
        let mut r = Redactor::default();
        r.add("tok/3f9a+c1e5b==");
        assert_eq!(r.redact("u?key=tok%2F3f9a%2Bc1e5b%3D%3D"), "u?key=***");
        r.add("a b/c d");
        assert_eq!(r.redact("/x/a%20b/c%20d"), "/x/***");
    }

    #[test]
    fn short_values_are_not_redacted_and_longest_wins() {
        let mut r = Redactor::default();
        r.add("ab");
        r.add("token");
        r.add("token-long");
        assert_eq!(r.redact("ab token token-long"), "ab *** ***");
    }
}
