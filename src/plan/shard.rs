//! Sharding: which (probe, environment) pairs one of N instances runs.
//!
//! Assignment is rendezvous (highest-random-weight) hashing: every shard
//! `i` in `0..N` gives a pair the weight `SHA-256(i, probe, environment)`
//! (its first 8 bytes), and the shard with the highest weight owns it.
//! Every pair therefore has exactly one owner among `0..N`, whatever N is,
//! and going from N to N + 1 shards moves only the pairs the new shard
//! wins: about 1/(N + 1) of them (a quarter from 3 to 4), never one
//! between two old shards. The weight depends on nothing but the bytes
//! hashed, so every instance, build and platform agrees; std's
//! `DefaultHasher` promises neither. FNV-1a (`schedule::stable_hash`) is
//! stable but too weak here: hashing the shard number last, the weights of
//! neighbouring shards differ only by small multiples of its prime, which
//! would hand most pairs to one shard.
//!
//! Shards are numbered from 0, as StatefulSet pods are: `--shard auto/N`
//! takes the index from the pod name's ordinal (`synthmon-2` → 2).
//!
//! This module only answers "who owns this pair" and parses the flag;
//! narrowing a plan to a shard is [`super::Config::retain_shard`].

use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// The most shards an instance may be told there are. Deciding a pair's
/// owner weighs it once per shard, so this bounds that work (1,000 pairs
/// × 1,024 shards is a million hashes, a fraction of a second) and
/// catches a count typed with a digit too many.
pub const MAX_SHARDS: u32 = 1024;

/// Where `--shard auto/N` reads the pod name, in this order: the downward
/// API's `POD_NAME`, then `HOSTNAME` (a StatefulSet pod's host name is its
/// name).
pub const POD_NAME_VARIABLES: [&str; 2] = ["POD_NAME", "HOSTNAME"];

/// One shard of N: this instance runs the pairs [`Shard::owns`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Default for Shard {
    fn default() -> Shard {
        Shard::ALL
    }
}

impl Shard {
    /// Shard 0 of 1: every pair (no `--shard`).
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` (0-based) of `count`.
    pub fn new(index: u32, count: u32) -> Result<Shard, ShardError> {
        if count == 0 || count > MAX_SHARDS {
            return Err(ShardError::Count(count));
        }
        if index >= count {
            return Err(ShardError::Index { index, count });
        }
        Ok(Shard { index, count })
    }

    /// This shard's number, from 0.
    pub fn index(self) -> u32 {
        self.index
    }

    /// How many shards there are.
    pub fn count(self) -> u32 {
        self.count
    }

    /// Whether this is one of several shards (not [`Shard::ALL`]).
    pub fn is_sharded(self) -> bool {
        self.count > 1
    }

    /// Whether this shard runs the pair.
    pub fn owns(self, probe: &str, environment: &str) -> bool {
        owner(self.count, probe, environment) == self.index
    }
}

impl fmt::Display for Shard {
    /// `I/N`, as `--shard` takes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard in `0..count` that owns the pair: the one of highest weight
/// (the lowest index on a tie). A `count` of 0 is taken as 1.
pub fn owner(count: u32, probe: &str, environment: &str) -> u32 {
    let mut best = (0, weight(0, probe, environment));
    for i in 1..count {
        let w = weight(i, probe, environment);
        if w > best.1 {
            best = (i, w);
        }
    }
    best.0
}

/// Shard `index`'s weight for the pair: the first 8 bytes of SHA-256 over
/// the index, the probe name's length and the two names, all fixed-width
/// big-endian, so no two (probe, environment) pairs hash the same bytes.
fn weight(index: u32, probe: &str, environment: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(index.to_be_bytes());
    h.update(u64::try_from(probe.len()).unwrap_or(u64::MAX).to_be_bytes());
    h.update(probe.as_bytes());
    h.update(environment.as_bytes());
    let digest = h.finalize();
    let mut first = [0_u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// `--shard` as given: a shard, or `auto/N` to be resolved from the pod
/// name once the command is known to need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSpec {
    Fixed(Shard),
    /// `auto/N`: the index is the ordinal of the StatefulSet pod name.
    Auto {
        count: u32,
    },
}

impl FromStr for ShardSpec {
    type Err = String;

    /// `I/N` (0 ≤ I < N) or `auto/N`.
    fn from_str(s: &str) -> Result<ShardSpec, String> {
        let syntax = || {
            format!("expected I/N with shards numbered from 0 (e.g. 1/3) or auto/N, found `{s}`")
        };
        let (index, count) = s.split_once('/').ok_or_else(syntax)?;
        let count = number(count).ok_or_else(syntax)?;
        if index == "auto" {
            Shard::new(0, count).map_err(|e| e.to_string())?;
            return Ok(ShardSpec::Auto { count });
        }
        let index = number(index).ok_or_else(syntax)?;
        Shard::new(index, count)
            .map(ShardSpec::Fixed)
            .map_err(|e| e.to_string())
    }
}

/// Digits only (no sign, no space), as a `u32`.
fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl ShardSpec {
    /// The shard: as given, or for `auto/N` the ordinal of the first of
    /// [`POD_NAME_VARIABLES`] that is set and not empty, read with `var`.
    pub fn resolve(self, var: impl Fn(&str) -> Option<String>) -> Result<Shard, ShardError> {
        let count = match self {
            ShardSpec::Fixed(shard) => return Ok(shard),
            ShardSpec::Auto { count } => count,
        };
        let (variable, name) = POD_NAME_VARIABLES
            .iter()
            .find_map(|v| var(v).filter(|n| !n.is_empty()).map(|n| (*v, n)))
            .ok_or(ShardError::NoPodName { count })?;
        let ordinal = name
            .rsplit_once('-')
            .and_then(|(_, ordinal)| number(ordinal))
            .ok_or_else(|| ShardError::NoOrdinal {
                count,
                variable,
                name: name.clone(),
            })?;
        if ordinal >= count {
            return Err(ShardError::OrdinalOutOfRange {
                count,
                variable,
                name,
                ordinal,
            });
        }
        Shard::new(ordinal, count)
    }
}

/// Why a shard could not be taken: the messages name the value given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("expected a shard count from 1 to {MAX_SHARDS}, found {0}")]
    Count(u32),
    #[error(
        "shard {index} of {count} does not exist: shards are numbered from 0 to {}",
        count.saturating_sub(1)
    )]
    Index { index: u32, count: u32 },
    #[error(
        "--shard auto/{count} takes the shard from the pod name, but neither POD_NAME nor \
         HOSTNAME is set"
    )]
    NoPodName { count: u32 },
    #[error(
        "--shard auto/{count}: {variable} `{name}` does not end in a StatefulSet ordinal \
         (expected a name like `synthmon-2`)"
    )]
    NoOrdinal {
        count: u32,
        variable: &'static str,
        name: String,
    },
    #[error(
        "--shard auto/{count}: {variable} `{name}` has ordinal {ordinal}, but shards are \
         numbered from 0 to {}",
        count.saturating_sub(1)
    )]
    OrdinalOutOfRange {
        count: u32,
        variable: &'static str,
        name: String,
        ordinal: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("probe-{i:04}")).collect()
    }

    fn shard(index: u32, count: u32) -> Shard {
        Shard::new(index, count).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_pair_has_exactly_one_owner_for_any_shard_count() {
        // Asking every shard is count² weights a pair: kept small for
        // debug builds.
        let names = probes(200);
        for count in (1..=8).chain([16, 31]) {
            for p in &names {
                for env in ["prod", "staging"] {
                    let owners: Vec<u32> = (0..count)
                        .filter(|&i| shard(i, count).owns(p, env))
                        .collect();
                    assert_eq!(owners.len(), 1, "{p}@{env} with {count} shards: {owners:?}");
                }
            }
        }
    }

    #[test]
    fn shards_get_an_even_share() {
        let names = probes(1000);
        for count in [2_u32, 3, 4, 5, 8] {
            let mut per = vec![0_usize; count as usize];
            for p in &names {
                per[owner(count, p, "prod") as usize] += 1;
            }
            let fair = 1000 / count as usize;
            for (i, n) in per.iter().enumerate() {
                assert!(
                    n.abs_diff(fair) * 5 < fair,
                    "shard {i}/{count} owns {n} of 1000 pairs (fair share {fair}): {per:?}"
                );
            }
        }
    }

    #[test]
    fn three_to_four_shards_moves_about_a_quarter_of_1000_probes_and_only_to_the_new_one() {
        let names = probes(1000);
        let mut moved = 0;
        for p in &names {
            let (before, after) = (owner(3, p, "prod"), owner(4, p, "prod"));
            if before != after {
                assert_eq!(after, 3, "{p} moved between old shards {before} → {after}");
                moved += 1;
            }
        }
        let fraction = f64::from(moved) / 1000.0;
        println!(
            "3 → 4 shards moved {moved} of 1000 probes ({:.1} %)",
            fraction * 100.0
        );
        assert!(
            (0.15..=0.35).contains(&fraction),
            "3 → 4 shards moved {moved} of 1000 probes ({:.1} %), expected about 25 % and at most 35 %",
            fraction * 100.0
        );
    }

    /// A change of hash (or of what it hashes) re-assigns most pairs of
    /// every fleet at its next deploy: this table catches it. The values
    /// were computed apart, with Python's hashlib (the weight below is
    /// `sha256(bytes(4) + (13).to_bytes(8, "big") + b"orders-healthprod")`'s
    /// first 8 bytes).
    #[test]
    fn assignment_is_stable_across_builds() {
        // (probe, environment): its owner among 2, 3 and 4 shards.
        let table = [
            ("orders-health", "prod", [0, 2, 2]),
            ("orders-health", "staging", [0, 0, 3]),
            ("signup", "eu-west", [1, 2, 2]),
            ("cart", "prod", [0, 2, 2]),
            ("payments", "prod", [1, 1, 3]),
            ("payments", "eu-west", [0, 2, 3]),
            ("dns-mx", "eu-west", [0, 0, 3]),
            ("status-page", "eu-west", [1, 1, 1]),
        ];
        for (probe, env, expected) in table {
            let actual = [2, 3, 4].map(|n| owner(n, probe, env));
            assert_eq!(actual, expected, "{probe}@{env} among 2, 3, 4 shards");
        }
        assert_eq!(weight(0, "orders-health", "prod"), 0xd719_87ff_430e_85c1);
    }

    #[test]
    fn the_names_are_hashed_apart() {
        // The probe's length is hashed, so moving the boundary between the
        // names gives another pair, not the same bytes.
        assert_ne!(weight(0, "ab", "c"), weight(0, "a", "bc"));
        assert_ne!(weight(0, "a", "b"), weight(1, "a", "b"));
    }

    #[test]
    fn one_shard_owns_everything() {
        assert!(Shard::ALL.owns("anything", "anywhere"));
        assert_eq!(Shard::default(), Shard::ALL);
        assert!(!Shard::ALL.is_sharded());
        assert_eq!(owner(0, "p", "e"), 0);
    }

    #[test]
    fn the_flag_takes_i_of_n_or_auto() {
        assert_eq!("1/3".parse(), Ok(ShardSpec::Fixed(shard(1, 3))));
        assert_eq!("0/1".parse(), Ok(ShardSpec::Fixed(Shard::ALL)));
        assert_eq!("auto/3".parse(), Ok(ShardSpec::Auto { count: 3 }));
        assert_eq!(shard(2, 5).to_string(), "2/5");
        let refused = [
            (
                "3/3",
                "shard 3 of 3 does not exist: shards are numbered from 0 to 2",
            ),
            ("0/0", "expected a shard count from 1 to 1024, found 0"),
            ("auto/0", "expected a shard count from 1 to 1024, found 0"),
            (
                "0/5000",
                "expected a shard count from 1 to 1024, found 5000",
            ),
        ];
        for (given, message) in refused {
            assert_eq!(
                given.parse::<ShardSpec>(),
                Err(message.to_owned()),
                "{given}"
            );
        }
        for given in [
            "", "1", "1/", "/3", "a/3", "-1/3", "+1/3", " 1/3", "1/3/4", "1.0/3", "AUTO/3",
        ] {
            assert_eq!(
                given.parse::<ShardSpec>(),
                Err(format!(
                    "expected I/N with shards numbered from 0 (e.g. 1/3) or auto/N, found `{given}`"
                )),
                "{given:?}"
            );
        }
    }

    /// Environment variables, as `(name, value)`.
    type Vars<'a> = &'a [(&'a str, &'a str)];

    fn env<'a>(vars: Vars<'a>) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn auto_takes_the_statefulset_ordinal() {
        let auto = ShardSpec::Auto { count: 3 };
        let cases: [(Vars, Result<Shard, ShardError>); 8] = [
            (&[("POD_NAME", "synthmon-2")], Ok(shard(2, 3))),
            (&[("POD_NAME", "synthmon-eu-west-0")], Ok(shard(0, 3))),
            // POD_NAME first; HOSTNAME when it is unset or empty.
            (
                &[("POD_NAME", "synthmon-1"), ("HOSTNAME", "synthmon-2")],
                Ok(shard(1, 3)),
            ),
            (
                &[("POD_NAME", ""), ("HOSTNAME", "synthmon-2")],
                Ok(shard(2, 3)),
            ),
            (
                &[("HOSTNAME", "laptop")],
                Err(ShardError::NoOrdinal {
                    count: 3,
                    variable: "HOSTNAME",
                    name: "laptop".into(),
                }),
            ),
            (
                &[("POD_NAME", "synthmon-7f9c")],
                Err(ShardError::NoOrdinal {
                    count: 3,
                    variable: "POD_NAME",
                    name: "synthmon-7f9c".into(),
                }),
            ),
            (
                &[("POD_NAME", "synthmon-3")],
                Err(ShardError::OrdinalOutOfRange {
                    count: 3,
                    variable: "POD_NAME",
                    name: "synthmon-3".into(),
                    ordinal: 3,
                }),
            ),
            (&[], Err(ShardError::NoPodName { count: 3 })),
        ];
        for (vars, expected) in cases {
            assert_eq!(auto.resolve(env(vars)), expected, "{vars:?}");
        }
        assert_eq!(
            ShardSpec::Fixed(shard(1, 2)).resolve(env(&[("POD_NAME", "synthmon-0")])),
            Ok(shard(1, 2))
        );
    }

    #[test]
    fn auto_errors_name_the_value() {
        let e = ShardSpec::Auto { count: 3 }
            .resolve(env(&[("POD_NAME", "synthmon-5")]))
            .map_err(|e| e.to_string());
        assert_eq!(
            e,
            Err(
                "--shard auto/3: POD_NAME `synthmon-5` has ordinal 5, but shards are numbered \
                 from 0 to 2"
                    .to_owned()
            )
        );
    }
}
