//! Located diagnostics for config and probe files.
//!
//! Every error in a TOML config or probe file is reported with its file,
//! line and column, the key path it concerns, what was expected and what was
//! found, and for unknown keys or values the nearest valid one. [`SourceDoc`]
//! parses a file once and remembers where every key path was written;
//! [`deserialize_collecting`] runs serde over the document repeatedly,
//! removing each offending entry from a working copy, so that all errors of
//! a file are reported in one pass instead of only the first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// The most deserialization rounds [`deserialize_collecting`] runs on one
/// document before giving up on finding further errors.
const MAX_ROUNDS: usize = 100;

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

/// Where a key and its value were written, as 1-based (line, column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Located {
    key: (usize, usize),
    value: (usize, usize),
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

    fn diagnostic(&self, path: &str, line: usize, column: usize, message: String) -> Diagnostic {
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

/// The path one segment up: `a.b[2]` → `a.b` → `a` → none.
fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    if path.ends_with(']')
        && let Some(open) = path.rfind('[')
    {
        return Some(&path[..open]);
    }
    Some(path.rfind('.').map_or("", |dot| &path[..dot]))
}

/// Whether `path` lies strictly inside `ancestor` (`a.b[1]` inside `a.b`,
/// `a.b` inside `a`, everything non-empty inside the root "").
fn is_within(path: &str, ancestor: &str) -> bool {
    if ancestor.is_empty() {
        return !path.is_empty();
    }
    path.strip_prefix(ancestor)
        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// Appends a map key to a path the way `serde_path_to_error::Path` prints it.
fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
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
        };
        positions.entry(path.clone()).or_insert(located);
        record_value(value.get_ref(), &path, index, positions);
    }
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
                positions
                    .entry(element_path.clone())
                    .or_insert(Located { key: at, value: at });
                record_value(element.get_ref(), &element_path, index, positions);
            }
        }
        _ => {}
    }
}

/// One step of a path through a TOML document.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
    /// A segment serde_path_to_error could not name (a non-string map key).
    Unknown,
}

/// Formats segments exactly like `serde_path_to_error::Path`'s Display, except
/// that the empty path is "" rather than ".".
fn format_path(segs: &[Seg]) -> String {
    let mut out = String::new();
    for (i, seg) in segs.iter().enumerate() {
        match seg {
            Seg::Index(index) => out.push_str(&format!("[{index}]")),
            Seg::Key(key) => {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(key);
            }
            Seg::Unknown => {
                if i > 0 {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

/// Converts a serde_path_to_error path. Enum variants become keys, since
/// TOML writes an externally tagged variant as a table key.
fn segments(path: &serde_path_to_error::Path) -> Vec<Seg> {
    path.iter()
        .map(|segment| match segment {
            serde_path_to_error::Segment::Seq { index } => Seg::Index(*index),
            serde_path_to_error::Segment::Map { key } => Seg::Key(key.clone()),
            serde_path_to_error::Segment::Enum { variant } => Seg::Key(variant.clone()),
            _ => Seg::Unknown,
        })
        .collect()
}

/// The value at `segs` in `table`, if there is one.
fn get<'t>(table: &'t toml::Table, segs: &[Seg]) -> Option<&'t toml::Value> {
    let (first, rest) = segs.split_first()?;
    let Seg::Key(key) = first else {
        return None;
    };
    let mut value = table.get(key)?;
    for seg in rest {
        value = match (seg, value) {
            (Seg::Key(key), toml::Value::Table(table)) => table.get(key)?,
            (Seg::Index(i), toml::Value::Array(array)) => array.get(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Removes the entry at `segs` from `table` (a key from its table or an
/// element from its array). Returns whether something was removed.
fn remove(table: &mut toml::Table, segs: &[Seg]) -> bool {
    let Some((last, parents)) = segs.split_last() else {
        return false;
    };
    let container = if parents.is_empty() {
        None
    } else {
        match get_mut(table, parents) {
            Some(value) => Some(value),
            None => return false,
        }
    };
    match (last, container) {
        (Seg::Key(key), None) => table.remove(key).is_some(),
        (Seg::Key(key), Some(toml::Value::Table(table))) => table.remove(key).is_some(),
        (Seg::Index(i), Some(toml::Value::Array(array))) if *i < array.len() => {
            array.remove(*i);
            true
        }
        _ => false,
    }
}

/// The value at `segs` in `table`, mutably.
fn get_mut<'t>(table: &'t mut toml::Table, segs: &[Seg]) -> Option<&'t mut toml::Value> {
    let (first, rest) = segs.split_first()?;
    let Seg::Key(key) = first else {
        return None;
    };
    let mut value = table.get_mut(key)?;
    for seg in rest {
        value = match (seg, value) {
            (Seg::Key(key), toml::Value::Table(table)) => table.get_mut(key)?,
            (Seg::Index(i), toml::Value::Array(array)) => array.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Maps paths in the working copy back to paths in the original document.
///
/// Removing an array element shifts the later elements down, so a working
/// index no longer names the element the user wrote. For every array (by its
/// original path) this remembers which original indices were removed, and
/// maps a working index to the n-th original index that is still present.
#[derive(Debug, Default)]
struct IndexMap {
    removed: HashMap<String, Vec<usize>>,
}

impl IndexMap {
    /// The original segments for working-copy segments `segs`.
    fn original(&self, segs: &[Seg]) -> Vec<Seg> {
        let mut out: Vec<Seg> = Vec::with_capacity(segs.len());
        for seg in segs {
            let mapped = match seg {
                Seg::Index(working) => {
                    let array = format_path(&out);
                    Seg::Index(self.original_index(&array, *working))
                }
                other => other.clone(),
            };
            out.push(mapped);
        }
        out
    }

    fn original_index(&self, array: &str, working: usize) -> usize {
        let Some(removed) = self.removed.get(array) else {
            return working;
        };
        (0..)
            .filter(|i| !removed.contains(i))
            .nth(working)
            .unwrap_or(working)
    }

    /// Notes that the element at original path `original` (ending in an
    /// index) was removed from the working copy.
    fn note_removed(&mut self, original: &[Seg]) {
        if let Some((Seg::Index(i), array)) = original.split_last() {
            self.removed.entry(format_path(array)).or_default().push(*i);
        }
    }
}

/// What a serde error message says, in the shapes this module rewrites.
#[derive(Debug, PartialEq, Eq)]
enum Problem {
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

fn classify(message: &str) -> Problem {
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
fn with_found(message: String, value: Option<&toml::Value>) -> String {
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
fn describe(value: &toml::Value) -> String {
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
fn tidy_message(message: &str) -> String {
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
fn expected_clause(expected: &[String]) -> String {
    match expected {
        [only] => format!("(expected `{only}`)"),
        names => format!("(expected one of {})", quoted_list(names)),
    }
}

fn did_you_mean(word: &str, expected: &[String]) -> Option<String> {
    nearest(word, expected.iter().map(String::as_str)).map(|best| format!("did you mean `{best}`?"))
}

/// Deserializes the whole document into `T`, collecting every serde error
/// instead of stopping at the first.
///
/// On an error at path P (from serde_path_to_error) this records a located
/// diagnostic, removes P from a working copy of the table and tries again,
/// for at most [`MAX_ROUNDS`] rounds. Removing an array element shifts the
/// later ones, so indices are mapped back to the original document (see
/// [`IndexMap`]). A missing required key cannot be fixed by removal: it is
/// reported, and then the table that lacks it is removed in turn (an array
/// element, or a key whose own field is hopefully optional) so that the rest
/// of the document is still checked; at the top level the search stops. A
/// missing key that only went missing because this function removed a bad
/// value is not reported twice. The search also stops when a path fails a
/// second time, when the error's path cannot be found in the working copy,
/// or when the error concerns the whole document.
///
/// Returns `Some(T)` when deserialization finally succeeds, even if errors
/// were recorded on the way: the value is the document without its offending
/// entries, so that the caller's semantic checks can still report the rest
/// of the file's errors in the same run. Callers must treat any pushed
/// diagnostic as fatal. `None` means no round succeeded. (After an array
/// element was removed, later elements of that array sit at lower indices in
/// the returned value; that only shifts locations of errors found later in
/// the same array.)
pub fn deserialize_collecting<T: serde::de::DeserializeOwned>(
    doc: &SourceDoc,
    diags: &mut Diagnostics,
) -> Option<T> {
    deserialize_part(doc, Part::default(), diags)
}

/// Which part of a document [`deserialize_part`] reads.
#[derive(Debug, Default, Clone, Copy)]
pub struct Part<'a> {
    /// The top-level table to read (`http`, `workload`); empty: the whole
    /// document.
    pub table: &'a str,
    /// Top-level keys to leave out (the tables read by other parts). They
    /// are still named as valid keys in unknown-key messages.
    pub skip: &'a [&'a str],
}

/// [`deserialize_collecting`] over a part of the document: one top-level
/// table, or the document without some top-level tables. Errors are located
/// in the whole document, their paths starting with the table's key. This
/// is how a probe file's common keys and its kind's table are read by
/// different owners without either knowing the other's schema.
pub fn deserialize_part<T: serde::de::DeserializeOwned>(
    doc: &SourceDoc,
    part: Part<'_>,
    diags: &mut Diagnostics,
) -> Option<T> {
    let prefix: Vec<Seg> = if part.table.is_empty() {
        Vec::new()
    } else {
        vec![Seg::Key(part.table.to_owned())]
    };
    let prefixed = |segs: &[Seg]| -> Vec<Seg> {
        let mut all = prefix.clone();
        all.extend_from_slice(segs);
        all
    };
    let mut working = if part.table.is_empty() {
        let mut whole = doc.table().clone();
        for key in part.skip {
            whole.remove(*key);
        }
        whole
    } else {
        match doc.table().get(part.table) {
            Some(toml::Value::Table(t)) => t.clone(),
            Some(other) => {
                diags.push(doc.error_at(
                    part.table,
                    format!("expected a table, found {}", describe(other)),
                ));
                return None;
            }
            None => toml::Table::new(),
        }
    };
    let mut found: Vec<Diagnostic> = Vec::new();
    let mut failed: HashSet<String> = HashSet::new();
    let mut removed: HashSet<String> = HashSet::new();
    let mut indices = IndexMap::default();

    let mut result = None;
    for _ in 0..MAX_ROUNDS {
        let err =
            match serde_path_to_error::deserialize::<_, T>(toml::Value::Table(working.clone())) {
                Ok(value) => {
                    result = Some(value);
                    break;
                }
                Err(err) => err,
            };
        let mut segs = segments(err.path());
        let kind = classify(err.inner().message());

        // Where the offending entry is in the working copy, and what to
        // report.
        let diagnostic = match kind {
            Problem::UnknownField { name, mut expected } => {
                let at_root = match segs.as_slice() {
                    [] => true,
                    [Seg::Key(k)] => *k == name,
                    _ => false,
                };
                if at_root && part.table.is_empty() {
                    expected.extend(part.skip.iter().map(|k| (*k).to_owned()));
                }
                // The path may name the unknown key itself or its parent
                // table; make it name the key.
                let mut with_key = segs.clone();
                with_key.push(Seg::Key(name.clone()));
                if get(&working, &with_key).is_some()
                    || segs.last() != Some(&Seg::Key(name.clone()))
                {
                    segs = with_key;
                }
                let path = format_path(&prefixed(&indices.original(&segs)));
                let message = if expected.is_empty() {
                    format!("unknown key `{name}` (no keys are allowed here)")
                } else {
                    format!("unknown key `{name}` {}", expected_clause(&expected))
                };
                let mut diagnostic = doc.error_at_key(&path, message);
                diagnostic.help = did_you_mean(&name, &expected);
                Some(diagnostic)
            }
            Problem::UnknownVariant { name, expected } => {
                let path = format_path(&prefixed(&indices.original(&segs)));
                let message = if expected.is_empty() {
                    format!("unknown value `{name}` (no values are allowed here)")
                } else {
                    format!("unknown value `{name}` {}", expected_clause(&expected))
                };
                let mut diagnostic = doc.error_at(&path, message);
                diagnostic.help = did_you_mean(&name, &expected);
                Some(diagnostic)
            }
            Problem::MissingField { name } => {
                // The path names the table that lacks the key (or, in the
                // other shape, the missing key itself).
                let is_table =
                    segs.is_empty() || matches!(get(&working, &segs), Some(toml::Value::Table(_)));
                if !is_table && segs.last() == Some(&Seg::Key(name.clone())) {
                    segs.pop();
                }
                let parent = format_path(&prefixed(&indices.original(&segs)));
                let key = join_key(&parent, &name);
                if removed.contains(&key) {
                    None
                } else {
                    let (line, column) = doc.key_position(&parent);
                    Some(doc.diagnostic(
                        &key,
                        line,
                        column,
                        format!("missing required key `{name}`"),
                    ))
                }
            }
            Problem::Other { message } => {
                let path = format_path(&prefixed(&indices.original(&segs)));
                // An error at a table or array that lost entries to earlier
                // removals (an enum table left empty, a tuple now too short)
                // is a consequence of those removals, not a new error.
                if removed.iter().any(|r| is_within(r, &path)) {
                    None
                } else {
                    let message = with_found(message, get(&working, &segs));
                    Some(doc.error_at(&path, message))
                }
            }
        };

        let original = indices.original(&segs);
        let path = format_path(&prefixed(&original));
        if !failed.insert(path.clone()) {
            // The same path failed again: removing it did not help.
            break;
        }
        if let Some(diagnostic) = diagnostic {
            found.push(diagnostic);
        }
        if segs.is_empty() || segs.contains(&Seg::Unknown) || !remove(&mut working, &segs) {
            break;
        }
        indices.note_removed(&original);
        removed.insert(path);
    }

    found.sort_by_key(|d| (d.line, d.column));
    diags.extend(found);
    result
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
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Probe {
        name: Option<String>,
        timeout: Option<String>,
        http: Option<Http>,
        #[serde(default)]
        steps: Vec<Step>,
        kind: Option<Kind>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Http {
        method: Option<String>,
        url: Option<String>,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        #[serde(default)]
        expect: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Step {
        url: String,
        status: Option<u16>,
    }

    #[derive(Debug, Deserialize, PartialEq, Eq)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Http,
        Tcp,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Empty {}

    fn collect(text: &str) -> (Option<Probe>, Diagnostics) {
        let doc = SourceDoc::parse("probe.toml", text).unwrap();
        let mut diags = Diagnostics::default();
        let probe = deserialize_collecting::<Probe>(&doc, &mut diags);
        (probe, diags)
    }

    /// (line, column, key, message, help) of every diagnostic.
    fn summary(diags: &Diagnostics) -> Vec<(usize, usize, String, String, Option<String>)> {
        diags
            .iter()
            .map(|d| {
                (
                    d.line,
                    d.column,
                    d.key.clone(),
                    d.message.clone(),
                    d.help.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn valid_document_deserializes() {
        let text = "name = \"a\"\nkind = \"tcp\"\n[http]\nurl = \"u\"\nexpect = [\"200\"]\n\
                    [http.headers]\nx = \"y\"\n[[steps]]\nurl = \"s\"\nstatus = 204\n";
        let (probe, diags) = collect(text);
        assert!(diags.is_empty(), "{diags}");
        let probe = probe.unwrap();
        assert_eq!(probe.name.as_deref(), Some("a"));
        assert_eq!(probe.kind, Some(Kind::Tcp));
        let http = probe.http.unwrap();
        assert_eq!(http.url.as_deref(), Some("u"));
        assert_eq!(http.method, None);
        assert_eq!(http.expect, vec!["200".to_owned()]);
        assert_eq!(http.headers.get("x").map(String::as_str), Some("y"));
        assert_eq!(probe.steps.len(), 1);
        assert_eq!(probe.steps[0].url, "s");
        assert_eq!(probe.steps[0].status, Some(204));
        assert_eq!(probe.timeout, None);
    }

    #[test]
    fn two_typos_in_different_tables() {
        let text =
            "name = \"a\"\ntimout = \"5s\"\n\n[http]\nurl = \"u\"\n  headrs = { a = \"b\" }\n";
        let (probe, diags) = collect(text);
        assert!(!diags.is_empty());
        // The rest of the document still comes back, for the semantic checks.
        let probe = probe.unwrap();
        assert_eq!(probe.name.as_deref(), Some("a"));
        assert_eq!(probe.http.and_then(|h| h.url).as_deref(), Some("u"));
        assert_eq!(
            summary(&diags),
            vec![
                (
                    2,
                    1,
                    "timout".to_owned(),
                    "unknown key `timout` (expected one of `name`, `timeout`, `http`, `steps`, `kind`)"
                        .to_owned(),
                    Some("did you mean `timeout`?".to_owned()),
                ),
                (
                    6,
                    3,
                    "http.headrs".to_owned(),
                    "unknown key `headrs` (expected one of `method`, `url`, `headers`, `expect`)"
                        .to_owned(),
                    Some("did you mean `headers`?".to_owned()),
                ),
            ]
        );
    }

    #[test]
    fn type_error_and_typo_are_both_reported() {
        let text = "[http]\nexpect = [\"200\", 3]\nmethd = \"GET\"\n";
        let (_, diags) = collect(text);
        assert!(!diags.is_empty());
        assert_eq!(
            summary(&diags),
            vec![
                (
                    2,
                    18,
                    "http.expect[1]".to_owned(),
                    "expected a string, found integer `3`".to_owned(),
                    None,
                ),
                (
                    3,
                    1,
                    "http.methd".to_owned(),
                    "unknown key `methd` (expected one of `method`, `url`, `headers`, `expect`)"
                        .to_owned(),
                    Some("did you mean `method`?".to_owned()),
                ),
            ]
        );
    }

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
    fn array_of_tables_paths_are_located() {
        let text = "[[steps]]\nurl = \"a\"\n\n[[steps]]\nurl = \"b\"\nstauts = 200\n\n\
                    [[steps]]\nurl = \"c\"\nstatus = \"ok\"\n";
        let (_, diags) = collect(text);
        assert!(!diags.is_empty());
        assert_eq!(
            summary(&diags),
            vec![
                (
                    6,
                    1,
                    "steps[1].stauts".to_owned(),
                    "unknown key `stauts` (expected one of `url`, `status`)".to_owned(),
                    Some("did you mean `status`?".to_owned()),
                ),
                (
                    10,
                    10,
                    "steps[2].status".to_owned(),
                    "expected u16, found string \"ok\"".to_owned(),
                    None,
                ),
            ]
        );
    }

    #[test]
    fn removed_array_elements_keep_original_indices() {
        // The first step lacks its required url, so the element is reported
        // and then dropped; the later errors must still name steps[1] and
        // steps[2]. The bad url of steps[1] must not also be reported as
        // missing.
        let text = "[[steps]]\nstatus = 1\n[[steps]]\nurl = 5\n[[steps]]\nurl = \"c\"\nsttus = 1\n";
        let (_, diags) = collect(text);
        assert!(!diags.is_empty());
        assert_eq!(
            summary(&diags),
            vec![
                (
                    1,
                    1,
                    "steps[0].url".to_owned(),
                    "missing required key `url`".to_owned(),
                    None,
                ),
                (
                    4,
                    7,
                    "steps[1].url".to_owned(),
                    "expected a string, found integer `5`".to_owned(),
                    None,
                ),
                (
                    7,
                    1,
                    "steps[2].sttus".to_owned(),
                    "unknown key `sttus` (expected one of `url`, `status`)".to_owned(),
                    Some("did you mean `status`?".to_owned()),
                ),
            ]
        );
    }

    #[test]
    fn missing_key_at_top_level_is_at_one_one() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Needs {
            name: String,
            other: Option<u8>,
        }
        let doc = SourceDoc::parse("f.toml", "other = \"x\"\n").unwrap();
        let mut diags = Diagnostics::default();
        let _ = deserialize_collecting::<Needs>(&doc, &mut diags);
        assert!(!diags.is_empty());
        assert_eq!(
            summary(&diags),
            vec![
                (
                    1,
                    1,
                    "name".to_owned(),
                    "missing required key `name`".to_owned(),
                    None
                ),
                (
                    1,
                    9,
                    "other".to_owned(),
                    "expected u8, found string \"x\"".to_owned(),
                    None
                ),
            ]
        );
    }

    #[test]
    fn unknown_top_level_key_without_close_match_has_no_help() {
        let (_, diags) = collect("zzz = 1\n");
        assert!(!diags.is_empty());
        assert_eq!(diags.len(), 1);
        let d = &diags.0[0];
        assert_eq!((d.line, d.column, d.key.as_str()), (1, 1, "zzz"));
        assert_eq!(d.help, None);
    }

    #[test]
    fn table_without_fields() {
        let doc = SourceDoc::parse("e.toml", "x = 1\n").unwrap();
        let mut diags = Diagnostics::default();
        let _ = deserialize_collecting::<Empty>(&doc, &mut diags);
        assert!(!diags.is_empty());
        assert_eq!(
            diags.0[0].message,
            "unknown key `x` (no keys are allowed here)"
        );
        assert_eq!(diags.0[0].help, None);
    }

    #[test]
    fn unknown_variant_is_located_at_the_value() {
        let (_, diags) = collect("name = \"n\"\nkind =   \"htp\"\n");
        assert!(!diags.is_empty());
        assert_eq!(
            summary(&diags),
            vec![(
                2,
                10,
                "kind".to_owned(),
                "unknown value `htp` (expected one of `http`, `tcp`)".to_owned(),
                Some("did you mean `http`?".to_owned()),
            )]
        );
    }

    #[test]
    fn nested_map_values_and_inline_tables() {
        let text = "http = { url = \"u\", headers = { a = \"b\", c = 1 } }\n";
        let (_, diags) = collect(text);
        assert_eq!(
            summary(&diags),
            vec![(
                1,
                46,
                "http.headers.c".to_owned(),
                "expected a string, found integer `1`".to_owned(),
                None,
            )]
        );
    }

    #[test]
    fn display_matches_exactly() {
        let (_, mut diags) = collect("[http]\nheadrs = 1\nexpect = 7\n");
        diags.sort();
        assert_eq!(
            diags.to_string(),
            "probe.toml:2:1: error: http.headrs: unknown key `headrs` (expected one of `method`, \
             `url`, `headers`, `expect`)\n  = help: did you mean `headers`?\n\
             probe.toml:3:10: error: http.expect: expected a sequence, found integer `7`\n\
             2 errors"
        );
        let one = Diagnostics::from(Diagnostic::new("env", "bad value"));
        assert_eq!(one.to_string(), "env: error: bad value\n1 error");
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

    #[test]
    fn unknown_key_paths_include_the_key() {
        let value: toml::Table = toml::from_str("[http]\nheadrs = 1\n").unwrap();
        let err =
            serde_path_to_error::deserialize::<_, Probe>(toml::Value::Table(value)).unwrap_err();
        assert_eq!(err.path().to_string(), "http.headrs");
    }

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
    fn untagged_enums_say_what_was_found() {
        #[derive(Debug, Deserialize)]
        #[serde(untagged, expecting = "a number of bytes or a size like \"4 MiB\"")]
        #[allow(dead_code)]
        enum Size {
            Bytes(u64),
            Text(String),
        }
        #[derive(Debug, Deserialize)]
        #[serde(untagged)]
        #[allow(dead_code)]
        enum Plain {
            Bytes(u64),
        }
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Limits {
            size: Option<Size>,
            plain: Option<Plain>,
        }
        let doc = SourceDoc::parse("l.toml", "size = true\nplain = \"x\"\n").unwrap();
        let mut diags = Diagnostics::default();
        let _ = deserialize_collecting::<Limits>(&doc, &mut diags);
        assert!(!diags.is_empty());
        let messages: Vec<_> = diags.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            vec![
                "expected a number of bytes or a size like \"4 MiB\", found boolean `true`",
                "expected Plain, found string \"x\"",
            ]
        );
    }

    #[test]
    fn ancestry() {
        assert!(is_within("a.b[1]", "a.b"));
        assert!(is_within("a.b", "a"));
        assert!(is_within("a", ""));
        assert!(!is_within("ab", "a"));
        assert!(!is_within("a", "a"));
        assert!(!is_within("", ""));
    }

    #[test]
    fn errors_caused_by_removals_are_not_reported() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Pair {
            pair: Option<(u8, u8)>,
            n: Option<u8>,
        }
        let doc = SourceDoc::parse("t.toml", "pair = [1, \"x\"]\nn = \"y\"\n").unwrap();
        let mut diags = Diagnostics::default();
        let _ = deserialize_collecting::<Pair>(&doc, &mut diags);
        assert!(!diags.is_empty());
        let keys: Vec<_> = diags.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, vec!["pair[1]", "n"]);
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
