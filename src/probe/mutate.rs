//! Anomaly mutations for workloads: a valid JSON payload turned into one the
//! target should reject (a missing field, a wrong type, an oversize value,
//! an invalid enum value).
//!
//! Only top-level fields of a JSON object are mutated: that is where a
//! request schema names its fields, and it keeps the description a plain
//! field name. The field is drawn with the caller's generator among the
//! candidates in a fixed order, so a seeded workload mutates the same field
//! of the same request every time.
//!
//! This module knows nothing of the target's schema. A free-text field
//! given an "invalid enum" value is still valid text, and an optional field
//! may be left out; a workload whose anomalies must all be rejected lists in
//! `fields` the fields its target validates that way.

use rand::Rng;
use serde::Deserialize;
use serde_json::Value;

/// The value an `invalid_enum` mutation writes: no schema lists it, and it
/// names its origin when it shows up in a target's logs.
pub const INVALID_ENUM_VALUE: &str = "__synthmon_invalid__";

/// The mutations a workload can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mutation {
    /// The field is removed.
    MissingField,
    /// The field's value is replaced by one of another JSON type.
    WrongType,
    /// A field (a string field when there is one) gets a string of
    /// `oversize_bytes` bytes.
    Oversize,
    /// A string field gets [`INVALID_ENUM_VALUE`].
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
/// as `missing_field: qty`, or `None` when the body offers nothing to mutate:
/// not an object, none of `fields` present, or (for `invalid_enum`) no string
/// among them. Nothing is drawn from `rng` and `body` is untouched then.
pub fn apply(
    body: &mut Value,
    mutation: Mutation,
    fields: &[String],
    oversize_bytes: usize,
    rng: &mut impl Rng,
) -> Option<String> {
    let object = body.as_object_mut()?;
    let is_string = |name: &String| object.get(name).is_some_and(Value::is_string);
    let mut pool = candidates(object, fields);
    match mutation {
        Mutation::MissingField | Mutation::WrongType => {}
        // Any field can be made too large by turning it into a long string,
        // but a string field keeps its type, so only the size is wrong.
        Mutation::Oversize => {
            if pool.iter().any(is_string) {
                pool.retain(is_string);
            }
        }
        Mutation::InvalidEnum => pool.retain(is_string),
    }
    if pool.is_empty() {
        return None;
    }
    let field = pool.get(rng.random_range(0..pool.len()))?.clone();
    match mutation {
        Mutation::MissingField => {
            object.remove(&field);
        }
        Mutation::WrongType => {
            let value = object.get_mut(&field)?;
            *value = other_type(value);
        }
        Mutation::Oversize => {
            object.insert(field.clone(), Value::String("x".repeat(oversize_bytes)));
        }
        Mutation::InvalidEnum => {
            object.insert(field.clone(), Value::String(INVALID_ENUM_VALUE.to_owned()));
        }
    }
    Some(format!("{}: {field}", mutation.as_str()))
}

/// The fields a mutation may pick, in a fixed order: `fields` as listed
/// (present ones only, first mention kept), or every key sorted, so the draw
/// does not depend on the map's iteration order.
fn candidates(object: &serde_json::Map<String, Value>, fields: &[String]) -> Vec<String> {
    if fields.is_empty() {
        let mut all: Vec<String> = object.keys().cloned().collect();
        all.sort();
        return all;
    }
    let mut out: Vec<String> = Vec::new();
    for field in fields {
        if object.contains_key(field) && !out.contains(field) {
            out.push(field.clone());
        }
    }
    out
}

/// A value of another JSON type carrying the same information where it
/// can: the classic mistakes are a number sent as text and text sent where
/// a number belongs.
fn other_type(value: &Value) -> Value {
    match value {
        // Its length, so the number is not arbitrary.
        Value::String(text) => Value::from(text.len()),
        Value::Number(n) => Value::String(n.to_string()),
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Null => Value::from(0),
        Value::Array(_) | Value::Object(_) => Value::String(value.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use serde_json::json;
    use std::collections::BTreeSet;

    fn order() -> Value {
        json!({
            "item": "widget",
            "quantity": 2,
            "express": true,
            "customer": "synth-ada",
            "tags": ["a", "b"],
            "address": {"city": "Riverton"},
            "note": null,
        })
    }

    fn rng(seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed)
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    /// The field named by a description, checked against its mutation.
    fn field_of(description: &str, mutation: Mutation) -> String {
        let (kind, field) = description.split_once(": ").unwrap();
        assert_eq!(kind, mutation.as_str());
        field.to_owned()
    }

    #[test]
    fn missing_field_removes_exactly_the_named_field() {
        let original = order();
        let mut body = original.clone();
        let fields = names(&["quantity"]);
        let d = apply(&mut body, Mutation::MissingField, &fields, 10, &mut rng(1)).unwrap();
        assert_eq!(d, "missing_field: quantity");
        let mut expected = original;
        expected.as_object_mut().unwrap().remove("quantity");
        assert_eq!(body, expected);
    }

    #[test]
    fn wrong_type_changes_the_json_type_of_every_kind_of_value() {
        let cases = [
            ("item", json!(6)),
            ("quantity", json!("2")),
            ("express", json!("true")),
            ("tags", json!(r#"["a","b"]"#)),
            ("address", json!(r#"{"city":"Riverton"}"#)),
            ("note", json!(0)),
        ];
        for (field, expected) in cases {
            let mut body = order();
            let d = apply(
                &mut body,
                Mutation::WrongType,
                &names(&[field]),
                10,
                &mut rng(2),
            );
            assert_eq!(d.unwrap(), format!("wrong_type: {field}"));
            assert_eq!(body[field], expected, "{field}");
            let before = &order()[field];
            assert_ne!(
                std::mem::discriminant(before),
                std::mem::discriminant(&body[field]),
                "{field}"
            );
            // Every other field is untouched.
            for (key, value) in order().as_object().unwrap() {
                if key != field {
                    assert_eq!(&body[key], value, "{key}");
                }
            }
        }
    }

    #[test]
    fn oversize_writes_exactly_the_requested_bytes_into_a_string_field() {
        for seed in 0..50 {
            let mut body = order();
            let d = apply(&mut body, Mutation::Oversize, &[], 4096, &mut rng(seed)).unwrap();
            let field = field_of(&d, Mutation::Oversize);
            // Only string fields are candidates while the body has one.
            assert!(order()[&field].is_string(), "{field}");
            assert_eq!(body[&field].as_str().unwrap().len(), 4096);
            assert!(body[&field].as_str().unwrap().bytes().all(|b| b == b'x'));
        }
        // Without a string field, any field becomes the long string.
        let mut body = json!({"quantity": 2});
        let d = apply(&mut body, Mutation::Oversize, &[], 3000, &mut rng(3)).unwrap();
        assert_eq!(d, "oversize: quantity");
        assert_eq!(body["quantity"].as_str().unwrap().len(), 3000);
    }

    #[test]
    fn invalid_enum_only_touches_string_fields() {
        let fields = names(&["quantity", "customer", "express"]);
        for seed in 0..20 {
            let mut body = order();
            let d = apply(
                &mut body,
                Mutation::InvalidEnum,
                &fields,
                10,
                &mut rng(seed),
            )
            .unwrap();
            assert_eq!(d, "invalid_enum: customer");
            assert_eq!(body["customer"], INVALID_ENUM_VALUE);
        }
        let mut body = order();
        let numbers = names(&["quantity", "express"]);
        assert_eq!(
            apply(&mut body, Mutation::InvalidEnum, &numbers, 10, &mut rng(1)),
            None
        );
        assert_eq!(body, order());
    }

    #[test]
    fn nothing_to_mutate_is_none_and_leaves_the_body_alone() {
        for mutation in Mutation::ALL {
            for mut body in [json!([1, 2]), json!("text"), json!(null), json!({})] {
                let before = body.clone();
                assert_eq!(apply(&mut body, mutation, &[], 10, &mut rng(1)), None);
                assert_eq!(body, before);
            }
            let mut body = order();
            let absent = names(&["colour", "size"]);
            assert_eq!(apply(&mut body, mutation, &absent, 10, &mut rng(1)), None);
            assert_eq!(body, order());
        }
    }

    #[test]
    fn the_field_is_drawn_among_the_candidates_only() {
        let fields = names(&["quantity", "colour", "item", "quantity"]);
        let mut seen = BTreeSet::new();
        for seed in 0..100 {
            let mut body = order();
            let d = apply(
                &mut body,
                Mutation::MissingField,
                &fields,
                10,
                &mut rng(seed),
            )
            .unwrap();
            seen.insert(field_of(&d, Mutation::MissingField));
        }
        assert_eq!(
            seen,
            BTreeSet::from(["item".to_owned(), "quantity".to_owned()])
        );

        // With no list, every top-level field comes up.
        let mut seen = BTreeSet::new();
        for seed in 0..300 {
            let mut body = order();
            let d = apply(&mut body, Mutation::WrongType, &[], 10, &mut rng(seed)).unwrap();
            seen.insert(field_of(&d, Mutation::WrongType));
        }
        let all: BTreeSet<String> = order().as_object().unwrap().keys().cloned().collect();
        assert_eq!(seen, all);
    }

    #[test]
    fn the_same_rng_state_mutates_the_same_way() {
        for mutation in Mutation::ALL {
            let run = |seed: u64| {
                let mut r = rng(seed);
                (0..30)
                    .map(|_| {
                        let mut body = order();
                        let d = apply(&mut body, mutation, &[], 64, &mut r);
                        (d, body)
                    })
                    .collect::<Vec<_>>()
            };
            let a = run(7);
            assert_eq!(a, run(7), "{mutation:?}");
            // The draw really depends on the state: other seeds pick other fields.
            let fields = |runs: &[(Option<String>, Value)]| {
                runs.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>()
            };
            assert_ne!(fields(&a), fields(&run(8)), "{mutation:?}");
        }
    }

    #[test]
    fn the_draw_does_not_depend_on_key_order() {
        // The same object built in two insertion orders.
        let a: Value = serde_json::from_str(r#"{"b":"1","a":"2","c":"3"}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"c":"3","a":"2","b":"1"}"#).unwrap();
        for seed in 0..20 {
            let (mut x, mut y) = (a.clone(), b.clone());
            let dx = apply(&mut x, Mutation::InvalidEnum, &[], 1, &mut rng(seed));
            let dy = apply(&mut y, Mutation::InvalidEnum, &[], 1, &mut rng(seed));
            assert_eq!(dx, dy);
            assert_eq!(x, y);
        }
    }

    #[test]
    fn names_round_trip_through_serde() {
        for mutation in Mutation::ALL {
            let parsed: Mutation =
                serde_json::from_value(Value::String(mutation.as_str().to_owned())).unwrap();
            assert_eq!(parsed, mutation);
        }
    }
}
