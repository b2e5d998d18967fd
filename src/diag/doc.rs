//! [`SourceDoc`]: a TOML file parsed once, with the line and column of
//! every key and value by key path, and diagnostics located there.

use super::diagnostic::Diagnostic;
use super::message::tidy_message;
use super::path::{join_key, parent_path};
use std::collections::BTreeMap;

/// Where a key and its value were written, as 1-based (line, column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Located {
    key: (usize, usize),
    value: (usize, usize),
    /// The value is a string written on one line, without escapes: its
    /// text sits in the file one column after `value`.
    verbatim: bool,
}

/// Converts byte offsets of one text into 1-based lines and character
/// columns.
struct LineIndex<'t> {
    text: &'t str,
    /// The byte offset at which each line starts.
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    fn new(text: &'t str) -> LineIndex<'t> {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex { text, starts }
    }

    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = self
            .starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let column = match self.text.get(start..offset) {
            Some(prefix) => prefix.chars().count(),
            None => offset - start,
        };
        (line.max(1), column + 1)
    }
}

/// Reads the config or probe file (`what`) at `path` as text. A file that
/// is not UTF-8 is an error located at its first bad byte; one that cannot
/// be read at all has no location.
pub fn read_source(path: &std::path::Path, file: &str, what: &str) -> Result<String, Diagnostic> {
    let unlocated = |message: String| Diagnostic::new(file, message);
    let bytes = std::fs::read(path).map_err(|e| unlocated(format!("cannot read {what}: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        // The bytes before the first bad one are UTF-8.
        let before = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
        let (line, column) = LineIndex::new(before).position(valid);
        Diagnostic {
            line,
            column,
            ..unlocated(format!(
                "expected UTF-8 text, found the byte {:#04x}",
                bytes[valid]
            ))
        }
        .with_help("save the file as UTF-8")
    })
}

/// A parsed TOML source that knows where every key path was written.
#[derive(Debug, Clone)]
pub struct SourceDoc {
    file: String,
    /// Key path (formatted like `serde_path_to_error::Path`) to positions.
    /// Like that format, a quoted key containing a dot prints the same as
    /// nested keys; when two entries print the same, the first one walked
    /// keeps the position.
    positions: BTreeMap<String, Located>,
    table: toml::Table,
}

impl SourceDoc {
    /// Parses `text`. A TOML syntax error becomes a located Diagnostic (line
    /// and column from the toml error's span).
    pub fn parse(file: &str, text: &str) -> Result<SourceDoc, Diagnostic> {
        let index = LineIndex::new(text);
        let syntax_error = |err: toml::de::Error| {
            let (line, column) = err.span().map_or((1, 1), |span| index.position(span.start));
            Diagnostic {
                file: file.to_owned(),
                line,
                column,
                key: String::new(),
                message: tidy_message(err.message()),
                help: None,
            }
        };
        let detable = toml::de::DeTable::parse(text).map_err(syntax_error)?;
        let table = text.parse::<toml::Table>().map_err(syntax_error)?;
        let mut positions = BTreeMap::new();
        record_table(detable.get_ref(), "", &index, &mut positions);
        Ok(SourceDoc {
            file: file.to_owned(),
            positions,
            table,
        })
    }

    /// The file name as given.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The parsed document.
    pub fn table(&self) -> &toml::Table {
        &self.table
    }

    /// Line and column of the KEY at `path` (for unknown-key and missing-key
    /// errors). If the exact path is absent, the nearest existing ancestor's
    /// position; if none, (1, 1).
    pub fn key_position(&self, path: &str) -> (usize, usize) {
        self.lookup(path, |located| located.key)
    }

    /// Line and column of the VALUE at `path` (for bad values; for array
    /// elements `a.b[2]` the element itself). If the exact path is absent,
    /// the nearest existing ancestor's value position; if none, (1, 1).
    pub fn value_position(&self, path: &str) -> (usize, usize) {
        self.lookup(path, |located| located.value)
    }

    /// Whether the value at exactly `path` is a string written on one line
    /// without escapes, so that a column inside it is one inside the file.
    pub fn is_verbatim(&self, path: &str) -> bool {
        self.positions.get(path).is_some_and(|l| l.verbatim)
    }

    /// A diagnostic located at the value of `path`.
    pub fn error_at(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let (line, column) = self.value_position(path);
        self.diagnostic(path, line, column, message.into())
    }

    /// A diagnostic located at the key of `path`.
    pub fn error_at_key(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let (line, column) = self.key_position(path);
        self.diagnostic(path, line, column, message.into())
    }

    pub(super) fn diagnostic(
        &self,
        path: &str,
        line: usize,
        column: usize,
        message: String,
    ) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            line,
            column,
            key: path.to_owned(),
            message,
            help: None,
        }
    }

    fn lookup(&self, path: &str, pick: impl Fn(&Located) -> (usize, usize)) -> (usize, usize) {
        let mut current = Some(path);
        while let Some(path) = current {
            if let Some(located) = self.positions.get(path) {
                return pick(located);
            }
            current = parent_path(path);
        }
        (1, 1)
    }
}

/// Records the key and value position of every entry of `table`, and of
/// everything nested in it, under `prefix`.
fn record_table(
    table: &toml::de::DeTable<'_>,
    prefix: &str,
    index: &LineIndex<'_>,
    positions: &mut BTreeMap<String, Located>,
) {
    for (key, value) in table.iter() {
        let path = join_key(prefix, key.get_ref());
        let located = Located {
            key: index.position(key.span().start),
            value: index.position(value.span().start),
            verbatim: verbatim(value, index.text),
        };
        positions.entry(path.clone()).or_insert(located);
        record_value(value.get_ref(), &path, index, positions);
    }
}

/// Whether `value` is a string whose text in the file is its content
/// between one pair of quotes (not a multi-line string, no escapes).
fn verbatim(value: &toml::Spanned<toml::de::DeValue<'_>>, text: &str) -> bool {
    let toml::de::DeValue::String(content) = value.get_ref() else {
        return false;
    };
    let raw = text.get(value.span()).unwrap_or_default();
    !raw.starts_with("\"\"\"")
        && !raw.starts_with("'''")
        && (raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')))
            .or_else(|| raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
            == Some(content.as_ref())
}

/// Records the positions of everything nested in `value`, which sits at
/// `path`.
fn record_value(
    value: &toml::de::DeValue<'_>,
    path: &str,
    index: &LineIndex<'_>,
    positions: &mut BTreeMap<String, Located>,
) {
    match value {
        toml::de::DeValue::Table(table) => record_table(table, path, index, positions),
        toml::de::DeValue::Array(array) => {
            for (i, element) in array.iter().enumerate() {
                let element_path = format!("{path}[{i}]");
                // An array element has no key of its own; both positions are
                // the element itself (for `[[steps]]` its header).
                let at = index.position(element.span().start);
                positions.entry(element_path.clone()).or_insert(Located {
                    key: at,
                    value: at,
                    verbatim: verbatim(element, index.text),
                });
                record_value(element.get_ref(), &element_path, index, positions);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::diag::Diagnostics;
    use crate::diag::collect::deserialize_collecting;
    use crate::diag::path::{Seg, format_path, segments};
    use serde::Deserialize;

    #[test]
    fn syntax_error_is_located() {
        let err = SourceDoc::parse("probe.toml", "name = \"a\"\nurl = \n").unwrap_err();
        assert_eq!(
            (err.file.as_str(), err.line, err.column),
            ("probe.toml", 2, 7)
        );
        assert_eq!(err.key, "");
        assert!(!err.message.is_empty());
        assert!(!err.message.ends_with('.'));
        assert!(
            err.message.starts_with(|c: char| !c.is_uppercase()),
            "{}",
            err.message
        );

        let err = SourceDoc::parse("p.toml", "a = 1\na = 2\n").unwrap_err();
        assert_eq!((err.line, err.column), (2, 1));
        assert_eq!(err.message, "duplicate key");
    }

    #[test]
    fn positions_with_multibyte_text_count_characters() {
        let doc = SourceDoc::parse("u.toml", "name = \"héllo\" ; x = 1\n").unwrap_err();
        assert_eq!((doc.line, doc.column), (1, 16));
        let doc = SourceDoc::parse("u.toml", "\"ключ\" = 1\nb = 2\r\nc = [1, 2]\n").unwrap();
        assert_eq!(doc.key_position("ключ"), (1, 1));
        assert_eq!(doc.value_position("ключ"), (1, 10));
        assert_eq!(doc.key_position("c"), (3, 1));
        assert_eq!(doc.value_position("c[1]"), (3, 9));
    }

    #[test]
    fn positions_fall_back_to_ancestors() {
        let text = "[http]\nurl = \"u\"\n\n[http.headers]\na = \"b\"\n[[steps]]\nurl = \"s\"\n";
        let doc = SourceDoc::parse("p.toml", text).unwrap();
        assert_eq!(doc.key_position("http"), (1, 2));
        assert_eq!(doc.value_position("http"), (1, 1));
        assert_eq!(doc.key_position("http.url"), (2, 1));
        assert_eq!(doc.value_position("http.url"), (2, 7));
        assert_eq!(doc.key_position("http.headers.a"), (5, 1));
        assert_eq!(doc.key_position("http.headers.missing"), (4, 7));
        assert_eq!(doc.key_position("steps[0]"), (6, 1));
        assert_eq!(doc.key_position("steps[0].url"), (7, 1));
        assert_eq!(doc.key_position("steps[3].url"), (6, 3));
        assert_eq!(doc.key_position("nothing.here"), (1, 1));
        assert_eq!(doc.key_position(""), (1, 1));
        let d = doc.error_at("http.url", "bad url");
        assert_eq!((d.line, d.column, d.key.as_str()), (2, 7, "http.url"));
        let d = doc.error_at_key("http.urls", "unknown");
        assert_eq!((d.line, d.column, d.key.as_str()), (1, 2, "http.urls"));
        assert_eq!(doc.file(), "p.toml");
        assert!(doc.table().contains_key("steps"));
    }

    #[test]
    fn recorded_paths_agree_with_serde_path_to_error() {
        // Every leaf of this document is given a wrong type, so
        // serde_path_to_error reports a path for each; each must be a key of
        // the position map.
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        enum Shape {
            Circle { r: u8 },
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Doc {
            a: BTreeMap<String, Vec<BTreeMap<String, u8>>>,
            shape: Shape,
        }
        let text = "shape = { Circle = { r = \"x\" } }\n[[a.\"dotted.key\"]]\nz = \"x\"\n";
        let doc = SourceDoc::parse("d.toml", text).unwrap();
        for (segs, want) in [
            (
                vec![
                    Seg::Key("a".into()),
                    Seg::Key("dotted.key".into()),
                    Seg::Index(0),
                    Seg::Key("z".into()),
                ],
                "a.dotted.key[0].z",
            ),
            (
                vec![
                    Seg::Key("shape".into()),
                    Seg::Key("Circle".into()),
                    Seg::Key("r".into()),
                ],
                "shape.Circle.r",
            ),
        ] {
            assert_eq!(format_path(&segs), want);
            assert!(doc.positions.contains_key(want), "{want}");
        }
        let value = toml::Value::Table(doc.table().clone());
        let err = serde_path_to_error::deserialize::<_, Doc>(value).unwrap_err();
        let segs = segments(err.path());
        assert_eq!(format_path(&segs), err.path().to_string());
        assert!(doc.positions.contains_key(&err.path().to_string()));

        let mut diags = Diagnostics::default();
        let _ = deserialize_collecting::<Doc>(&doc, &mut diags);
        assert!(!diags.is_empty());
        let keys: Vec<_> = diags.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, vec!["shape.Circle.r", "a.dotted.key[0].z"]);
        assert_eq!((diags.0[0].line, diags.0[0].column), (1, 26));
        assert_eq!((diags.0[1].line, diags.0[1].column), (3, 5));
    }
}
