//! Anomaly mutations for workloads: a valid JSON payload turned into one the
//! target should reject (a missing field, a wrong type, an oversize value,
//! an invalid enum value).
//!
//! STUB: being built.

use rand::Rng;
use serde::Deserialize;

/// The mutations a workload can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mutation {
    MissingField,
    WrongType,
    Oversize,
    InvalidEnum,
}

impl Mutation {
    pub const ALL: [Mutation; 4] = [
        Mutation::MissingField,
        Mutation::WrongType,
        Mutation::Oversize,
        Mutation::InvalidEnum,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Mutation::MissingField => "missing_field",
            Mutation::WrongType => "wrong_type",
            Mutation::Oversize => "oversize",
            Mutation::InvalidEnum => "invalid_enum",
        }
    }
}

/// Applies `mutation` to `body` (a JSON object), choosing among `fields`
/// (all top-level fields when empty) with `rng`. Returns a description such
/// as `missing_field: qty`, or `None` when the body offers nothing to mutate.
pub fn apply(
    body: &mut serde_json::Value,
    mutation: Mutation,
    fields: &[String],
    oversize_bytes: usize,
    rng: &mut impl Rng,
) -> Option<String> {
    let _ = (body, fields, oversize_bytes, rng.random::<u8>());
    Some(mutation.as_str().to_owned())
}
