//! Secret references (`${env:NAME}`, `${file:PATH}`) and their redaction.
//!
//! A config string may reference secrets instead of holding them in clear.
//! They are resolved once, at load, and every resolved value is remembered by
//! a [`Redactor`] so that outcomes, reports and logs can be scrubbed of it.
//! `$${` writes a literal `${`.
//!
//! The masking rule: a secret of [`MIN_ANYWHERE_LEN`] characters or more is
//! masked wherever it occurs, and so are the forms it takes when sent
//! (percent-encoded in a URL query or path, base64 as in a basic-auth header
//! or the `b64` template filter). A shorter secret (a PIN, a two-letter
//! key) is masked where it stands alone: bounded on both sides by the start
//! or end of the text or by a character that is not a letter or a digit.
//! `Bearer ab`, `"ab"`, `pin=ab` and a field whose whole value is `ab` are
//! masked; `tab` and `abc` are not, since masking every `ab` inside words
//! would garble a report while protecting nothing. The loader warns about
//! such short secrets.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

/// Secrets (and forms of them) this long or longer, in characters, are
/// masked wherever they occur; shorter ones only where they stand alone.
pub const MIN_ANYWHERE_LEN: usize = 4;

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

/// Every secret value resolved from the config; replaces them with `***`
/// (see the module's masking rule).
#[derive(Clone, Default)]
pub struct Redactor {
    /// Masked wherever they occur. Longest first, so a secret that contains
    /// another is masked whole.
    anywhere: Vec<Secret<String>>,
    /// Shorter than [`MIN_ANYWHERE_LEN`]: masked where they stand alone.
    /// Longest first.
    alone: Vec<Secret<String>>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Redactor({} secrets)",
            self.anywhere.len() + self.alone.len()
        )
    }
}

impl Redactor {
    /// Remembers `value`, and the forms it takes once percent-encoded in a
    /// URL query or path or encoded in base64, so a secret sent in a URL or
    /// in an encoded header is masked there too.
    pub fn add(&mut self, value: &str) {
        if value.is_empty() {
            return;
        }
        let query: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
        let path = url::Url::parse("http://redact.invalid/")
            .map(|mut u| {
                u.set_path(value);
                u.path().trim_start_matches('/').to_owned()
            })
            .unwrap_or_default();
        let mut forms = vec![value.to_owned(), query, path];
        if is_anywhere(value) {
            forms.extend(base64_forms(value.as_bytes()));
        }
        for form in forms {
            if form.is_empty() {
                continue;
            }
            let list = if is_anywhere(&form) {
                &mut self.anywhere
            } else {
                &mut self.alone
            };
            if !list.iter().any(|v| *v.expose() == form) {
                list.push(Secret::new(form));
            }
        }
        for list in [&mut self.anywhere, &mut self.alone] {
            list.sort_by_key(|v| std::cmp::Reverse(v.expose().len()));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.anywhere.is_empty() && self.alone.is_empty()
    }

    /// How many short secrets (masked only where they stand alone) are
    /// known, so a caller can tell that a value it added was one.
    pub fn short_count(&self) -> usize {
        self.alone.len()
    }

    /// `text` with every known secret value replaced by `***`.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.anywhere {
            if out.contains(secret.expose().as_str()) {
                out = Cow::Owned(out.replace(secret.expose().as_str(), MASK));
            }
        }
        for secret in &self.alone {
            if let Some(masked) = mask_alone(&out, secret.expose()) {
                out = Cow::Owned(masked);
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

/// Long enough to be masked wherever it occurs.
fn is_anywhere(value: &str) -> bool {
    value.chars().count() >= MIN_ANYWHERE_LEN
}

/// `text` with each occurrence of `secret` that stands alone (no letter or
/// digit right before or after it) replaced by the mask; `None` when there
/// is none.
fn mask_alone(text: &str, secret: &str) -> Option<String> {
    let mut out = String::new();
    let mut copied = 0;
    for (at, _) in text.match_indices(secret) {
        let end = at + secret.len();
        let before = text[..at].chars().next_back();
        let after = text[end..].chars().next();
        if before.is_some_and(char::is_alphanumeric) || after.is_some_and(char::is_alphanumeric) {
            continue;
        }
        out.push_str(&text[copied..at]);
        out.push_str(MASK);
        copied = end;
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

/// The standard base64 alphabet (RFC 4648, section 4).
const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `bytes` in standard base64 with `=` padding, as HTTP basic auth and the
/// `b64` template filter write it.
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(BASE64[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The base64 text a secret leaves inside any longer base64 text: the
/// encoding of the secret alone, and for each of the three byte alignments
/// the secret can have inside a longer message, the run of characters that
/// depend on the secret's bytes only (`user:secret` encoded has one of
/// them as a substring, whatever the user).
fn base64_forms(secret: &[u8]) -> Vec<String> {
    let mut forms = vec![base64(secret)];
    for offset in 0..3 {
        let mut message = vec![0u8; offset];
        message.extend_from_slice(secret);
        let encoded = base64(&message);
        let inside = |byte: usize| (offset..offset + secret.len()).contains(&byte);
        // Character `i` of a group `g` depends on bytes 3g (i = 0), 3g and
        // 3g+1 (i = 1), 3g+1 and 3g+2 (i = 2), 3g+2 (i = 3).
        let own: String = encoded
            .char_indices()
            .filter(|(i, _)| {
                let (g, p) = (i / 4 * 3, i % 4);
                let (first, last) = match p {
                    0 => (g, g),
                    1 => (g, g + 1),
                    2 => (g + 1, g + 2),
                    _ => (g + 2, g + 2),
                };
                inside(first) && inside(last)
            })
            .map(|(_, c)| c)
            .collect();
        if is_anywhere(&own) {
            forms.push(own);
        }
    }
    forms
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
    substitute(input, |reference| {
        let value = resolve(reference, base_dir)?;
        redactor.add(&value);
        Ok(value)
    })
}

/// How many references `input` holds, without resolving any (nothing is
/// read), or why one is malformed: unterminated, or neither `env:` nor
/// `file:`. For a part of the config the run at hand does not use, whose
/// secrets need not be there but whose mistakes are still mistakes.
pub fn references(input: &str) -> Result<usize, String> {
    let mut count = 0;
    substitute(input, |reference| {
        parse(reference)?;
        count += 1;
        Ok(String::new())
    })?;
    Ok(count)
}

/// `input` with each `${…}` replaced by what `value_of` makes of its
/// body, and `$${` by `${`; whether there was any reference.
fn substitute(
    input: &str,
    mut value_of: impl FnMut(&str) -> Result<String, String>,
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
        out.push_str(&value_of(&body_start[..end])?);
        sensitive = true;
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok((out, sensitive))
}

/// Where a reference points.
enum Reference<'a> {
    Env(&'a str),
    File(&'a str),
}

fn parse(reference: &str) -> Result<Reference<'_>, String> {
    if let Some(name) = reference.strip_prefix("env:") {
        return Ok(Reference::Env(name));
    }
    if let Some(path) = reference.strip_prefix("file:") {
        return Ok(Reference::File(path));
    }
    Err(format!(
        "unknown reference `${{{reference}}}`: expected `${{env:NAME}}` or `${{file:PATH}}`"
    ))
}

fn resolve(reference: &str, base_dir: &Path) -> Result<String, String> {
    match parse(reference)? {
        Reference::Env(name) => std::env::var(name).map_err(|e| match e {
            std::env::VarError::NotPresent => {
                format!("environment variable `{name}` referenced by `${{env:{name}}}` is not set")
            }
            std::env::VarError::NotUnicode(_) => {
                format!("environment variable `{name}` is not valid UTF-8")
            }
        }),
        Reference::File(path) => {
            let full = base_dir.join(path);
            match std::fs::read_to_string(&full) {
                Ok(text) => Ok(text.strip_suffix('\n').unwrap_or(&text).to_owned()),
                Err(e) => Err(format!("cannot read secret file `{}`: {e}", full.display())),
            }
        }
    }
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
    fn longest_wins() {
        let mut r = Redactor::default();
        r.add("token");
        r.add("token-long");
        assert_eq!(r.redact("token token-long"), "*** ***");
    }

    #[test]
    fn short_secrets_are_masked_where_they_stand_alone() {
        let mut r = Redactor::default();
        r.add("ab");
        r.add("7");
        assert_eq!(r.short_count(), 2);
        assert_eq!(
            r.redact("ab Bearer ab, \"ab\" pin=ab/ab. tab abc ab7 7 17 x7 7s"),
            "*** Bearer ***, \"***\" pin=***/***. tab abc ab7 *** 17 x7 7s"
        );
        assert_eq!(r.redact("ab"), "***");
        assert_eq!(r.redact("nothing here"), "nothing here");
        // Next to a long secret's mask, it still stands alone.
        r.add("hunter22");
        assert_eq!(r.redact("hunter22ab"), "******");
    }

    #[test]
    fn base64_is_standard_and_padded() {
        for (clear, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("user:pass", "dXNlcjpwYXNz"),
        ] {
            assert_eq!(base64(clear.as_bytes()), encoded, "{clear}");
        }
    }

    /// A secret encoded inside a longer text (`user:secret` in a basic-auth
    /// header, `{{ x | b64 }}`) is masked whatever precedes it.
    #[test]
    fn base64_forms_are_masked_at_every_alignment() {
        let secret = "canary-7f3a9c1e5b";
        let mut r = Redactor::default();
        r.add(secret);
        for prefix in ["", "u:", "us:", "use:", "a-longer-user:"] {
            for suffix in ["", "!", "!!", "!!!"] {
                let encoded = base64(format!("{prefix}{secret}{suffix}").as_bytes());
                let masked = r.redact(&encoded);
                assert!(masked.contains(MASK), "{prefix}|{suffix}: {masked}");
                // What is left shows at most the bytes around the secret.
                let left = masked.replace(MASK, "");
                assert!(
                    left.len() <= (prefix.len() + suffix.len()) * 4 / 3 + 8,
                    "{prefix}|{suffix}: {masked}"
                );
            }
        }
        assert_eq!(r.redact(&base64(secret.as_bytes())), MASK);
    }

    #[test]
    fn references_are_counted_without_being_read() {
        assert_eq!(references("plain $5"), Ok(0));
        assert_eq!(
            references("${env:SYNTHMON_TEST_SURELY_UNSET} ${file:/nonexistent/x}"),
            Ok(2)
        );
        assert_eq!(references("$${env:X}"), Ok(0));
        assert!(
            references("${vault:x}")
                .unwrap_err()
                .contains("unknown reference")
        );
        assert!(references("${env:X").is_err());
    }
}
