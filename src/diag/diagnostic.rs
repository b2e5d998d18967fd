//! One located error ([`Diagnostic`]), every error of a run
//! ([`Diagnostics`], sorted and printed as the user sees them), and where
//! something was written ([`SourceLocation`]).

use std::fmt;

/// Where something was written: a file and a 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SourceLocation {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One error in a config or probe file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as given (a display path).
    pub file: String,
    /// The 1-based line, or 0 when unknown (for example when the value came
    /// from an environment variable).
    pub line: usize,
    /// The 1-based column in characters, or 0 when unknown.
    pub column: usize,
    /// The key path, like `http.expect[1]` or `environments.prod.base_url`;
    /// empty for whole-file errors.
    pub key: String,
    /// What was expected and what was found: lowercase, no trailing period.
    pub message: String,
    /// An optional hint, like "did you mean `headers`?".
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic without a known position or key.
    pub fn new(file: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: file.into(),
            line: 0,
            column: 0,
            key: String::new(),
            message: message.into(),
            help: None,
        }
    }

    /// Returns this diagnostic with the given help text.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.line != 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        f.write_str(": error: ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  = help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

/// Every error found, in file order then line order.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// An empty collection.
    pub fn new() -> Diagnostics {
        Diagnostics(Vec::new())
    }

    /// Adds one diagnostic.
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    /// Adds every diagnostic of `other`.
    pub fn extend(&mut self, other: impl IntoIterator<Item = Diagnostic>) {
        self.0.extend(other);
    }

    /// Whether no error was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many errors were found.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The diagnostics in their current order.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// Sorts by file, then line, then column; the sort is stable, so errors
    /// at the same place keep the order they were found in.
    pub fn sort(&mut self) {
        self.0
            .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for diagnostic in &self.0 {
            writeln!(f, "{diagnostic}")?;
        }
        let n = self.0.len();
        write!(f, "{n} error{}", if n == 1 { "" } else { "s" })
    }
}

impl std::error::Error for Diagnostics {}

impl From<Diagnostic> for Diagnostics {
    fn from(diagnostic: Diagnostic) -> Diagnostics {
        Diagnostics(vec![diagnostic])
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_helpers() {
        let mut diags = Diagnostics::new();
        assert!(diags.is_empty());
        let at = |file: &str, line| Diagnostic {
            line,
            column: 1,
            ..Diagnostic::new(file, "m")
        };
        diags.push(at("b", 1));
        diags.extend(vec![at("a", 9), at("a", 2)]);
        diags.sort();
        let order: Vec<_> = diags.iter().map(|d| (d.file.as_str(), d.line)).collect();
        assert_eq!(order, vec![("a", 2), ("a", 9), ("b", 1)]);
        assert_eq!(diags.len(), 3);
        assert!(diags.to_string().ends_with("\n3 errors"));
        let d = Diagnostic::new("f", "m").with_help("h");
        assert_eq!(d.to_string(), "f: error: m\n  = help: h");
    }
}
