//! Collect-all deserialization: [`deserialize_collecting`] reads a whole
//! document, [`deserialize_part`] one part of it (a kind's table, or the
//! common keys with the kinds' tables left to their owners), and both
//! report every serde error of the part, located, instead of the first.

use super::diagnostic::{Diagnostic, Diagnostics};
use super::doc::SourceDoc;
use super::message::{Problem, classify, describe, did_you_mean, expected_clause, with_found};
use super::path::{IndexMap, Seg, format_path, get, is_within, join_key, remove, segments};
use std::collections::HashSet;

/// The most deserialization rounds [`deserialize_collecting`] runs on one
/// document before giving up on finding further errors.
const MAX_ROUNDS: usize = 100;

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
/// diagnostic as fatal. `None` means no round succeeded. An array that lost
/// an element comes back cut before it: the later elements would sit at
/// lower indices, and the caller's errors about them would name (and be
/// located at) the wrong element.
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
    if result.is_some() && indices.any_removed() {
        for (key, value) in working.iter_mut() {
            cut_shifted(value, key, &indices);
        }
        result = serde_path_to_error::deserialize::<_, T>(toml::Value::Table(working)).ok();
    }
    result
}

/// Cuts every array in `value` (at original path `path`) that lost an
/// element before that element, so that what is left sits at the indices
/// it was written at.
fn cut_shifted(value: &mut toml::Value, path: &str, indices: &IndexMap) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table.iter_mut() {
                cut_shifted(value, &join_key(path, key), indices);
            }
        }
        toml::Value::Array(array) => {
            if let Some(first) = indices.first_removed(path) {
                array.truncate(first);
            }
            for (i, value) in array.iter_mut().enumerate() {
                cut_shifted(value, &format!("{path}[{i}]"), indices);
            }
        }
        _ => {}
    }
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
    fn an_array_that_lost_an_element_comes_back_cut_before_it() {
        // Found by fuzzing: `expect[2]` was removed, so the expression
        // written as `expect[3]` came back as `expect[2]`, and its own error
        // was located at the removed element's line.
        let text = "[http]\nexpect = [\n  \"a\",\n  \"b\",\n  { },\n  \"d\",\n]\n";
        let (probe, diags) = collect(text);
        assert_eq!(diags.len(), 1, "{diags}");
        assert_eq!(diags.0[0].key, "http.expect[2]");
        let expect = probe.and_then(|p| p.http).map(|h| h.expect);
        assert_eq!(expect, Some(vec!["a".to_owned(), "b".to_owned()]));
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
    fn unknown_key_paths_include_the_key() {
        let value: toml::Table = toml::from_str("[http]\nheadrs = 1\n").unwrap();
        let err =
            serde_path_to_error::deserialize::<_, Probe>(toml::Value::Table(value)).unwrap_err();
        assert_eq!(err.path().to_string(), "http.headrs");
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
}
