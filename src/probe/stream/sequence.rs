//! Event-id sequence integrity (`sequence = "numeric"`): the ids of a
//! stream's events count up by one, across the reconnects of a run and,
//! when the run resumes from the previous run's last id, across runs.
//!
//! [`Sequence`] follows the ids as they come: an id more than one above
//! the highest so far is a gap (the ids between are missing), an id at or
//! below it is a duplicate (a stream delivers in order, so a late id is a
//! replay), an id that is not a number is counted apart. Only events that
//! carry an `id:` field of their own count: the others repeat the last id
//! by the EventSource rules and say nothing about the numbering. What is
//! listed is bounded ([`MAX_LISTED`] ids and gaps); the counts are exact.

use serde::Serialize;

/// How many missing ids, gaps and repeated ids are listed.
pub const MAX_LISTED: usize = 20;

/// The kept name of the highest id a run saw, which the next run resumes
/// from (`Outcome::kept`; not a `keep` name, which has no dot).
pub const KEPT_LAST_ID: &str = "stream.last_id";

/// What a run saw of the numbering.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Sequence {
    /// How many times the numbering jumped forward.
    pub gaps: u64,
    /// Ids skipped, in all.
    pub missing: u64,
    /// Events whose id was at or below the highest before it.
    pub duplicates: u64,
    /// The first missing ids, ascending.
    pub missing_ids: Vec<u64>,
    /// The first gaps, as the first and last id missing in each.
    pub missing_ranges: Vec<[u64; 2]>,
    /// The first repeated ids, as they came.
    pub repeated_ids: Vec<u64>,
    /// Events whose id was not a number.
    pub not_numeric: u64,
    /// The first such id (cut to 64 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_not_numeric: Option<String>,
    /// The first numeric id of this run.
    pub first_id: Option<u64>,
    /// The highest id seen, else the one the run resumed from: what the
    /// next run resumes from.
    pub last_id: Option<u64>,
    /// The previous run's last id, sent as `Last-Event-ID` when this run
    /// connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_run_id: Option<u64>,
}

impl Sequence {
    /// A run that resumes after `previous`, the previous run's last id:
    /// its first id should be `previous + 1`.
    pub fn resuming(previous: u64) -> Sequence {
        Sequence {
            last_id: Some(previous),
            previous_run_id: Some(previous),
            ..Sequence::default()
        }
    }

    /// Counts one event's own id.
    pub fn note(&mut self, id: &str) {
        let Ok(n) = id.trim().parse::<u64>() else {
            self.not_numeric += 1;
            if self.first_not_numeric.is_none() {
                self.first_not_numeric = Some(id.chars().take(64).collect());
            }
            return;
        };
        self.first_id.get_or_insert(n);
        let Some(high) = self.last_id else {
            // The first id ever: a stream may start anywhere.
            self.last_id = Some(n);
            return;
        };
        if n <= high {
            self.duplicates += 1;
            if self.repeated_ids.len() < MAX_LISTED {
                self.repeated_ids.push(n);
            }
            return;
        }
        if n > high + 1 {
            let (from, to) = (high + 1, n - 1);
            self.gaps += 1;
            self.missing += to - from + 1;
            if self.missing_ranges.len() < MAX_LISTED {
                self.missing_ranges.push([from, to]);
            }
            let room = MAX_LISTED.saturating_sub(self.missing_ids.len()) as u64;
            self.missing_ids
                .extend((from..=to).take(usize::try_from(room).unwrap_or(0)));
        }
        self.last_id = Some(n);
    }

    /// Whether the numbering broke: an id missing, repeated, or not a number.
    pub fn broken(&self) -> bool {
        self.missing > 0 || self.duplicates > 0 || self.not_numeric > 0
    }

    /// What broke, in words: `missing 6-7, 12 (3 ids in 2 gaps); repeated
    /// 3 (1 duplicate)`, with where the run began when that was the break
    /// at the boundary with the previous run. Empty when nothing broke.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.missing > 0 {
            let mut listed: Vec<String> = self
                .missing_ranges
                .iter()
                .map(|[from, to]| {
                    if from == to {
                        from.to_string()
                    } else {
                        format!("{from}-{to}")
                    }
                })
                .collect();
            if self.gaps > self.missing_ranges.len() as u64 {
                listed.push("…".to_owned());
            }
            parts.push(format!(
                "missing {} ({} in {})",
                listed.join(", "),
                count(self.missing, "id"),
                count(self.gaps, "gap")
            ));
        }
        if self.duplicates > 0 {
            let mut listed: Vec<String> = self.repeated_ids.iter().map(u64::to_string).collect();
            if self.duplicates > self.repeated_ids.len() as u64 {
                listed.push("…".to_owned());
            }
            parts.push(format!(
                "repeated {} ({})",
                listed.join(", "),
                count(self.duplicates, "duplicate")
            ));
        }
        if self.not_numeric > 0 {
            parts.push(format!(
                "{} not a number (first {:?})",
                count(self.not_numeric, "id"),
                self.first_not_numeric.as_deref().unwrap_or_default()
            ));
        }
        let mut text = parts.join("; ");
        if let (Some(previous), Some(first)) = (self.previous_run_id, self.first_id) {
            if previous.checked_add(1) != Some(first) && !text.is_empty() {
                text.push_str(&format!(
                    " (the previous run ended at id {previous}, this run resumed at id {first})"
                ));
            }
        }
        text
    }

    /// The gauges: ids missing and repeated in the last run.
    pub fn gauges(&self) -> [(&'static str, f64); 2] {
        [
            ("probe_stream_missing_ids", self.missing as f64),
            ("probe_stream_repeated_ids", self.duplicates as f64),
        ]
    }

    /// `sequence` as expressions read it.
    pub fn value(&self) -> cel::Value {
        let ids = |ids: &[u64]| {
            cel::Value::List(std::sync::Arc::new(
                ids.iter()
                    .map(|&n| i64::try_from(n).map_or(cel::Value::UInt(n), cel::Value::Int))
                    .collect(),
            ))
        };
        let number = |n: Option<u64>| {
            n.map_or(cel::Value::Null, |n| {
                i64::try_from(n).map_or(cel::Value::UInt(n), cel::Value::Int)
            })
        };
        let count = |n: u64| i64::try_from(n).map_or(cel::Value::UInt(n), cel::Value::Int);
        let fields: std::collections::HashMap<String, cel::Value> = [
            ("gaps", count(self.gaps)),
            ("missing", count(self.missing)),
            ("duplicates", count(self.duplicates)),
            ("not_numeric", count(self.not_numeric)),
            ("missing_ids", ids(&self.missing_ids)),
            ("repeated_ids", ids(&self.repeated_ids)),
            ("first_id", number(self.first_id)),
            ("last_id", number(self.last_id)),
            ("previous_run_id", number(self.previous_run_id)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        fields.into()
    }
}

/// `3 ids`, `1 gap`.
fn count(n: u64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn run(start: Option<u64>, ids: &[&str]) -> Sequence {
        let mut s = start.map_or_else(Sequence::default, Sequence::resuming);
        for id in ids {
            s.note(id);
        }
        s
    }

    #[test]
    fn consecutive_ids_pass_from_anywhere() {
        let s = run(None, &["41", "42", "43"]);
        assert!(!s.broken(), "{s:?}");
        assert_eq!((s.first_id, s.last_id), (Some(41), Some(43)));
        assert_eq!(s.describe(), "");
        let s = run(Some(40), &["41", "42"]);
        assert!(!s.broken(), "{s:?}");
    }

    #[test]
    fn gaps_duplicates_and_words_are_counted_and_listed() {
        let s = run(None, &["1", "2", "5", "6", "6", "3", "9", "x", "10"]);
        assert_eq!(
            (s.gaps, s.missing, s.duplicates, s.not_numeric),
            (2, 4, 2, 1)
        );
        assert_eq!(s.missing_ids, vec![3, 4, 7, 8]);
        assert_eq!(s.missing_ranges, vec![[3, 4], [7, 8]]);
        assert_eq!(s.repeated_ids, vec![6, 3]);
        assert_eq!(s.last_id, Some(10));
        assert_eq!(
            s.describe(),
            "missing 3-4, 7-8 (4 ids in 2 gaps); repeated 6, 3 (2 duplicates); 1 id not a number (first \"x\")"
        );
    }

    #[test]
    fn listing_is_bounded_and_counts_are_exact() {
        let s = run(None, &["1", "1000002"]);
        assert_eq!((s.gaps, s.missing), (1, 1_000_000));
        assert_eq!(s.missing_ids, (2..22).collect::<Vec<u64>>());
        assert_eq!(s.describe(), "missing 2-1000001 (1000000 ids in 1 gap)");
        let mut ids = vec!["0".to_owned()];
        for k in 0..30u64 {
            ids.push((k * 2 + 2).to_string());
        }
        for _ in 0..25 {
            ids.push("1".to_owned());
        }
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let s = run(None, &ids);
        assert_eq!((s.gaps, s.missing, s.duplicates), (30, 30, 25));
        assert_eq!(s.missing_ranges.len(), MAX_LISTED);
        assert_eq!(s.missing_ids.len(), MAX_LISTED);
        assert_eq!(s.repeated_ids.len(), MAX_LISTED);
        assert!(s.describe().contains(", …"), "{}", s.describe());
    }

    #[test]
    fn the_boundary_with_the_previous_run_is_named() {
        let s = run(Some(5), &["7", "8"]);
        assert_eq!(s.missing_ids, vec![6]);
        assert_eq!(
            s.describe(),
            "missing 6 (1 id in 1 gap) (the previous run ended at id 5, this run resumed at id 7)"
        );
        let s = run(Some(5), &["1", "2", "6"]);
        assert_eq!(s.repeated_ids, vec![1, 2]);
        assert_eq!(s.last_id, Some(6));
        // Nothing new: the previous run's id is handed on.
        let s = run(Some(5), &[]);
        assert_eq!((s.last_id, s.broken()), (Some(5), false));
    }
}
