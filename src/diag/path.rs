//! Key paths: their text form (as `serde_path_to_error::Path` prints
//! them), their steps ([`Seg`]), the value a path names in a working copy
//! of the document (found, or removed), and [`IndexMap`], which maps a
//! working copy's array indices back to the ones the user wrote.

use std::collections::HashMap;

/// The path one segment up: `a.b[2]` → `a.b` → `a` → none.
pub(super) fn parent_path(path: &str) -> Option<&str> {
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
pub(super) fn is_within(path: &str, ancestor: &str) -> bool {
    if ancestor.is_empty() {
        return !path.is_empty();
    }
    path.strip_prefix(ancestor)
        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// Appends a map key to a path the way `serde_path_to_error::Path` prints it.
pub(super) fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// One step of a path through a TOML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
    /// A segment serde_path_to_error could not name (a non-string map key).
    Unknown,
}

/// Formats segments exactly like `serde_path_to_error::Path`'s Display, except
/// that the empty path is "" rather than ".".
pub(super) fn format_path(segs: &[Seg]) -> String {
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
pub(super) fn segments(path: &serde_path_to_error::Path) -> Vec<Seg> {
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
pub(super) fn get<'t>(table: &'t toml::Table, segs: &[Seg]) -> Option<&'t toml::Value> {
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
pub(super) fn remove(table: &mut toml::Table, segs: &[Seg]) -> bool {
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
pub(super) struct IndexMap {
    removed: HashMap<String, Vec<usize>>,
}

impl IndexMap {
    /// The original segments for working-copy segments `segs`.
    pub(super) fn original(&self, segs: &[Seg]) -> Vec<Seg> {
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

    /// Whether any array lost an element.
    pub(super) fn any_removed(&self) -> bool {
        !self.removed.is_empty()
    }

    /// The lowest original index removed from the array at original path
    /// `array`, if any was.
    pub(super) fn first_removed(&self, array: &str) -> Option<usize> {
        self.removed.get(array)?.iter().min().copied()
    }

    /// Notes that the element at original path `original` (ending in an
    /// index) was removed from the working copy.
    pub(super) fn note_removed(&mut self, original: &[Seg]) {
        if let Some((Seg::Index(i), array)) = original.split_last() {
            self.removed.entry(format_path(array)).or_default().push(*i);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ancestry() {
        assert!(is_within("a.b[1]", "a.b"));
        assert!(is_within("a.b", "a"));
        assert!(is_within("a", ""));
        assert!(!is_within("ab", "a"));
        assert!(!is_within("a", "a"));
        assert!(!is_within("", ""));
    }
}
