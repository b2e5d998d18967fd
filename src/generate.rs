//! Seeded synthetic data: the generator behind the template functions
//! (`uuid()`, `int(1, 5)`, `normal(100, 15)`, `email()`, …).
//!
//! One [`Generator`] serves one rendering of one request. With a seed, a
//! request's generator is derived from (seed, probe, stream), where the
//! stream numbers the request inside a run (workload request index, flow
//! step), so payloads do not depend on scheduling order. Without a seed
//! every generator starts from fresh entropy.
//!
//! # What "the same seed gives the same bytes" rests on
//!
//! - The bit stream is ChaCha8, chosen over `StdRng` because its output is
//!   specified: `StdRng` may switch algorithms in any `rand` release.
//! - The seed derivation ([`mix`], then `seed_from_u64`) and the samplers
//!   (`random_range` for integers and indices, `rand_distr`'s Normal,
//!   LogNormal, Zipf and WeightedIndex) are `rand`'s and `rand_distr`'s.
//!   Their policy is that a value-changing algorithm is a breaking (minor)
//!   release, so values hold under `cargo update` within `rand 0.9` /
//!   `rand_distr 0.5`; a deliberate bump may change them, and the
//!   `seeded_values_are_pinned` test then fails and says so.
//! - `uniform` is sampled here from 53 raw bits, because `rand`'s float
//!   range may return its exclusive upper end after rounding and panics on
//!   a width that overflows.
//! - Floating-point samplers call `ln`/`exp`, whose last bit may differ
//!   between platforms' math libraries; integers, choices, names and ids do
//!   not depend on them.
//!
//! The fake names, streets and cities are small static lists rather than
//! the `fake` crate: its locale lists change between releases, which would
//! change seeded payloads on a dependency update, and it brings far more
//! data than a synthetic order needs.
//!
//! Every generated identity carries the probe's synthetic marker (an id
//! prefix, `synth-` by default) so production can find and purge it.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::Distribution;

/// The default synthetic marker.
pub const DEFAULT_MARKER: &str = "synth-";

pub struct Generator {
    rng: ChaCha8Rng,
    marker: String,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("marker", &self.marker)
            .finish_non_exhaustive()
    }
}

/// FNV-1a over the parts, for deriving per-stream seeds.
///
/// The seed is folded into the offset basis and every FNV-1a step is a
/// bijection of the state, so two seeds never give the same result for the
/// same (probe, stream); the stream's eight bytes always come last, so the
/// byte string (and with it the result) tells (probe, stream) pairs apart
/// up to 64-bit collisions.
fn mix(seed: u64, probe: &str, stream: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in probe.as_bytes().iter().copied().chain(stream.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Generator {
    /// A generator for request `stream` of `probe`: reproducible when
    /// `seed` is set, fresh otherwise.
    pub fn new(seed: Option<u64>, probe: &str, stream: u64, marker: &str) -> Generator {
        let rng = match seed {
            Some(seed) => ChaCha8Rng::seed_from_u64(mix(seed, probe, stream)),
            // The thread's generator is seeded from the OS once and reseeds
            // itself, so a workload does not pay a system call per request.
            None => ChaCha8Rng::from_rng(&mut rand::rng()),
        };
        Generator {
            rng,
            marker: marker.to_owned(),
        }
    }

    /// The underlying stream, for callers that draw their own values
    /// (anomaly mutation).
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    pub fn marker(&self) -> &str {
        &self.marker
    }

    /// A version-4 UUID drawn from the stream (so seeded runs repeat it).
    pub fn uuid(&mut self) -> String {
        let bytes: [u8; 16] = self.rng.random();
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .hyphenated()
            .to_string()
    }

    /// The marker followed by 12 random hex digits: `synth-3f9c0a1b22de`.
    pub fn synthetic_id(&mut self) -> String {
        let n: u64 = self.rng.random();
        format!("{}{:012x}", self.marker, n & 0xffff_ffff_ffff)
    }

    /// An integer in `lo..=hi`.
    pub fn int(&mut self, lo: i64, hi: i64) -> Result<i64, String> {
        if lo > hi {
            return Err(format!(
                "int({lo}, {hi}): the low end is above the high end"
            ));
        }
        Ok(self.rng.random_range(lo..=hi))
    }

    /// A float in `lo..hi` (uniform, never `hi`).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> Result<f64, String> {
        let width = hi - lo;
        if !(lo.is_finite() && hi.is_finite() && width.is_finite()) || lo >= hi {
            return Err(format!(
                "uniform({lo}, {hi}): expected finite bounds with low < high and a finite difference"
            ));
        }
        // The top 53 bits as a multiple of 2^-53: every value in [0, 1) that
        // an f64 spaced at 2^-53 can hold, equally likely.
        let unit = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let x = lo + unit * width;
        // Rounding can land on `hi` when `unit` is just below 1.
        Ok(if x < hi { x } else { float_below(hi) })
    }

    /// A normal deviate with `mean` and standard deviation `sd`.
    pub fn normal(&mut self, mean: f64, sd: f64) -> Result<f64, String> {
        // rand_distr accepts a negative deviation (and mirrors the samples)
        // and any mean; both are mistakes in a template.
        if !mean.is_finite() || !sd.is_finite() || sd < 0.0 {
            return Err(format!(
                "normal({mean}, {sd}): expected a finite mean and a finite standard deviation >= 0"
            ));
        }
        let d =
            rand_distr::Normal::new(mean, sd).map_err(|e| format!("normal({mean}, {sd}): {e}"))?;
        Ok(d.sample(&mut self.rng))
    }

    /// Log-normal with the underlying normal's `mu` and `sigma`.
    pub fn lognormal(&mut self, mu: f64, sigma: f64) -> Result<f64, String> {
        if !mu.is_finite() || !sigma.is_finite() || sigma < 0.0 {
            return Err(format!(
                "lognormal({mu}, {sigma}): expected a finite mu and a finite sigma >= 0"
            ));
        }
        let d = rand_distr::LogNormal::new(mu, sigma)
            .map_err(|e| format!("lognormal({mu}, {sigma}): {e}"))?;
        Ok(d.sample(&mut self.rng))
    }

    /// A rank in `1..=n`, Zipf-distributed with exponent `s`: rank k has
    /// probability proportional to `k^-s`.
    pub fn zipf(&mut self, n: u64, s: f64) -> Result<u64, String> {
        if n == 0 {
            return Err(format!("zipf({n}, {s}): n must be at least 1"));
        }
        if !s.is_finite() || s < 0.0 {
            return Err(format!(
                "zipf({n}, {s}): the exponent must be finite and >= 0"
            ));
        }
        let d = rand_distr::Zipf::new(n as f64, s).map_err(|e| format!("zipf({n}, {s}): {e}"))?;
        // The sampler returns a whole number in [1, n] as a float; the clamp
        // only guards the conversion of ranks beyond 2^53.
        Ok((d.sample(&mut self.rng) as u64).clamp(1, n))
    }

    /// An index into `weights`, each drawn with probability proportional to
    /// its weight.
    pub fn weighted_index(&mut self, weights: &[f64]) -> Result<usize, String> {
        // rand draws below the weights' sum with a `Uniform` it unwraps: a
        // sum too large for one (`weighted({'a': 1e308 * 2})`) panicked.
        let total: f64 = weights.iter().sum();
        if total > 0.0 && rand_distr::Uniform::new(0.0, total).is_err() {
            return Err("weighted choice: the weights add up to more than a float holds".into());
        }
        let d = rand_distr::weighted::WeightedIndex::new(weights)
            .map_err(|e| format!("weighted choice: {e}"))?;
        Ok(d.sample(&mut self.rng))
    }

    /// An index in `0..len`, `len > 0`.
    pub fn index(&mut self, len: usize) -> Result<usize, String> {
        if len == 0 {
            return Err("choice from an empty list".into());
        }
        Ok(self.rng.random_range(0..len))
    }

    pub fn first_name(&mut self) -> String {
        pick(&mut self.rng, FIRST_NAMES).to_owned()
    }

    pub fn last_name(&mut self) -> String {
        pick(&mut self.rng, LAST_NAMES).to_owned()
    }

    pub fn name(&mut self) -> String {
        let first = self.first_name();
        let last = self.last_name();
        format!("{first} {last}")
    }

    /// An address on a reserved domain (`example.com`, RFC 2606) whose
    /// local part carries the marker: `synth-ada.lovelace.4821@example.com`.
    pub fn email(&mut self) -> String {
        let first = self.first_name().to_ascii_lowercase();
        let last = self.last_name().to_ascii_lowercase();
        let n: u16 = self.rng.random_range(1000..=9999);
        format!("{}{first}.{last}.{n}@example.com", self.marker)
    }

    /// A one-line street address: `1742 Maple Avenue, Riverton 40213`.
    pub fn address(&mut self) -> String {
        let number: u16 = self.rng.random_range(1..=1999);
        let street = pick(&mut self.rng, STREET_NAMES);
        let kind = pick(&mut self.rng, STREET_KINDS);
        let city = pick(&mut self.rng, CITIES);
        let zip: u32 = self.rng.random_range(10000..=99999);
        format!("{number} {street} {kind}, {city} {zip}")
    }
}

/// The largest float below the finite `x` (`f64::next_down`, which is newer
/// than the crate's minimum Rust version).
fn float_below(x: f64) -> f64 {
    if x > 0.0 {
        f64::from_bits(x.to_bits() - 1)
    } else if x == 0.0 {
        -f64::from_bits(1)
    } else {
        f64::from_bits(x.to_bits() + 1)
    }
}

fn pick<'a>(rng: &mut ChaCha8Rng, list: &[&'a str]) -> &'a str {
    list.get(rng.random_range(0..list.len().max(1)))
        .copied()
        .unwrap_or_default()
}

// The lists hold ASCII letters only (and single spaces in street and city
// names), so an email's local part needs no escaping.

const FIRST_NAMES: &[&str] = &[
    "Ada",
    "Alan",
    "Grace",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "John",
    "Margaret",
    "Ken",
    "Katherine",
    "Radia",
    "Tim",
    "Hedy",
    "Shafi",
    "Leslie",
    "Annie",
    "Dennis",
    "Bjarne",
    "Guido",
    "Linus",
    "Yukihiro",
    "Sophie",
    "Ivan",
    "Karen",
    "Lynn",
    "Mary",
    "Niklaus",
    "Jean",
    "Claude",
    "Evelyn",
    "Kathleen",
    "Betty",
    "Vint",
    "Robert",
    "Edgar",
    "Anita",
    "Joan",
    "Lois",
    "Marian",
    "Cynthia",
    "Elena",
    "Amir",
    "Priya",
    "Kwame",
    "Mei",
    "Omar",
    "Ines",
    "Tomas",
    "Yara",
];
const LAST_NAMES: &[&str] = &[
    "Lovelace",
    "Turing",
    "Hopper",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Backus",
    "Hamilton",
    "Thompson",
    "Ritchie",
    "Johnson",
    "Perlman",
    "Lamarr",
    "Goldwasser",
    "Lamport",
    "Easley",
    "Stroustrup",
    "Torvalds",
    "Matsumoto",
    "Wilson",
    "Sutherland",
    "Wirth",
    "Sammet",
    "Shannon",
    "Borg",
    "Booth",
    "Holberton",
    "Cerf",
    "Kahn",
    "Codd",
    "Bartik",
    "Clarke",
    "Spector",
    "Okafor",
    "Nakamura",
    "Haddad",
    "Novak",
    "Silva",
    "Moreau",
    "Lindqvist",
    "Kowalski",
    "Mensah",
    "Patel",
    "Chen",
    "Garcia",
    "Rossi",
    "Schmidt",
    "Dubois",
    "Murphy",
];
const STREET_NAMES: &[&str] = &[
    "Main", "Oak", "Maple", "Cedar", "Pine", "Elm", "Willow", "Birch", "Station", "Mill", "Church",
    "High", "Park", "Lake", "Hill", "River", "Spring", "Meadow", "Orchard", "Harbor", "Market",
    "Bridge", "Garden", "Forest", "Sunset", "Highland", "Chestnut", "Walnut", "Juniper", "Lincoln",
];
const STREET_KINDS: &[&str] = &[
    "Street",
    "Avenue",
    "Road",
    "Lane",
    "Drive",
    "Court",
    "Way",
    "Boulevard",
    "Place",
    "Terrace",
];
const CITIES: &[&str] = &[
    "Springfield",
    "Riverton",
    "Fairview",
    "Lakewood",
    "Greenville",
    "Franklin",
    "Clinton",
    "Madison",
    "Georgetown",
    "Salem",
    "Bristol",
    "Arlington",
    "Ashland",
    "Burlington",
    "Dover",
    "Hudson",
    "Kingston",
    "Milford",
    "Newport",
    "Oxford",
    "Clayton",
    "Dayton",
    "Marion",
    "Winchester",
    "Auburn",
    "Centerville",
    "Lexington",
    "Manchester",
    "Mount Vernon",
    "Glen Ellen",
];

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// The sample size of the goodness-of-fit tests: large enough that a
    /// deviation of a fraction of a percent in a CDF shows, small enough to
    /// draw in milliseconds. The seeds are fixed, so the tests are exact
    /// computations, not chances.
    const N: usize = 20_000;

    /// The significance level of every goodness-of-fit test.
    const ALPHA: f64 = 0.001;

    /// Upper 0.1 % points of the chi-square distribution (NIST/SEMATECH
    /// e-Handbook of Statistical Methods, table 1.3.6.7.4), by degrees of
    /// freedom.
    const CHI2_CRITICAL_3: f64 = 16.266;
    const CHI2_CRITICAL_9: f64 = 27.877;

    fn seeded(seed: u64, probe: &str, stream: u64) -> Generator {
        Generator::new(Some(seed), probe, stream, DEFAULT_MARKER)
    }

    /// One draw of every generator, as text.
    fn draw_all(g: &mut Generator) -> Vec<String> {
        vec![
            g.uuid(),
            g.synthetic_id(),
            g.int(-1000, 1000).unwrap().to_string(),
            g.uniform(0.0, 1.0).unwrap().to_string(),
            g.normal(100.0, 15.0).unwrap().to_string(),
            g.lognormal(3.0, 0.5).unwrap().to_string(),
            g.zipf(1000, 1.1).unwrap().to_string(),
            g.weighted_index(&[1.0, 2.0, 3.0]).unwrap().to_string(),
            g.index(7).unwrap().to_string(),
            g.first_name(),
            g.last_name(),
            g.name(),
            g.email(),
            g.address(),
        ]
    }

    /// Twenty rounds of every generator.
    fn sequence(g: &mut Generator) -> Vec<String> {
        (0..20).flat_map(|_| draw_all(g)).collect()
    }

    /// The Kolmogorov–Smirnov statistic of `samples` against `cdf`: the
    /// largest distance between the empirical and the exact CDF, taken on
    /// both sides of every step.
    fn ks_statistic(mut samples: Vec<f64>, cdf: impl Fn(f64) -> f64) -> f64 {
        samples.sort_by(f64::total_cmp);
        let n = samples.len() as f64;
        samples
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let f = cdf(x);
                (f - i as f64 / n).max((i + 1) as f64 / n - f)
            })
            .fold(0.0, f64::max)
    }

    /// The KS critical value for `n` samples at [`ALPHA`]: the asymptotic
    /// `c(α) / √n` with `c(α) = √(−ln(α/2) / 2)` (1.949 at α = 0.001), whose
    /// error is far below the statistic's resolution at this `n`.
    fn ks_critical(n: usize) -> f64 {
        (-(ALPHA / 2.0).ln() / 2.0).sqrt() / (n as f64).sqrt()
    }

    /// The error function, Abramowitz and Stegun 7.1.26 (absolute error
    /// below 1.5e-7, three orders under the KS critical value).
    fn erf(x: f64) -> f64 {
        let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
        let poly = t
            * (0.254_829_592
                + t * (-0.284_496_736
                    + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
        let y = 1.0 - poly * (-x * x).exp();
        if x < 0.0 { -y } else { y }
    }

    fn normal_cdf(mean: f64, sd: f64) -> impl Fn(f64) -> f64 {
        move |x| 0.5 * (1.0 + erf((x - mean) / (sd * std::f64::consts::SQRT_2)))
    }

    /// Pearson's chi-square statistic of observed counts against exact
    /// cell probabilities.
    fn chi_square(observed: &[u64], probabilities: &[f64]) -> f64 {
        let total: u64 = observed.iter().sum();
        observed
            .iter()
            .zip(probabilities)
            .map(|(&o, &p)| {
                let expected = p * total as f64;
                (o as f64 - expected).powi(2) / expected
            })
            .sum()
    }

    /// Exact Zipf probabilities of ranks 1..=n.
    fn zipf_probabilities(n: u64, s: f64) -> Vec<f64> {
        let weights: Vec<f64> = (1..=n).map(|k| (k as f64).powf(-s)).collect();
        let total: f64 = weights.iter().sum();
        weights.iter().map(|w| w / total).collect()
    }

    fn zipf_counts(g: &mut Generator, n: u64, s: f64) -> Vec<u64> {
        let mut counts = vec![0u64; n as usize];
        for _ in 0..N {
            let rank = g.zipf(n, s).unwrap();
            assert!((1..=n).contains(&rank), "rank {rank} outside 1..={n}");
            counts[rank as usize - 1] += 1;
        }
        counts
    }

    #[test]
    fn same_seed_probe_and_stream_repeat_every_generator() {
        let a = sequence(&mut seeded(42, "checkout", 3));
        let b = sequence(&mut seeded(42, "checkout", 3));
        assert_eq!(a, b);
    }

    #[test]
    fn other_streams_seeds_and_probes_differ() {
        let base = sequence(&mut seeded(42, "checkout", 3));
        for other in [
            seeded(42, "checkout", 4),
            seeded(43, "checkout", 3),
            seeded(42, "checkout2", 3),
        ] {
            let mut other = other;
            let seq = sequence(&mut other);
            // The first draw (a UUID, 122 random bits) already differs.
            assert_ne!(base[0], seq[0]);
            assert_ne!(base, seq);
        }
    }

    #[test]
    fn unseeded_generators_differ() {
        let a = sequence(&mut Generator::new(None, "checkout", 0, DEFAULT_MARKER));
        let b = sequence(&mut Generator::new(None, "checkout", 0, DEFAULT_MARKER));
        assert_ne!(a[0], b[0]);
        assert_ne!(a, b);
    }

    /// Pins the first values of seed 42 so that a dependency bump that
    /// changes seeded payloads fails here rather than silently in users'
    /// reproductions. Floats are compared at 9 significant digits, which
    /// survives a last-bit difference between math libraries.
    #[test]
    fn seeded_values_are_pinned() {
        let mut g = seeded(42, "checkout", 0);
        let got = [
            g.uuid(),
            g.synthetic_id(),
            g.int(1, 1000).unwrap().to_string(),
            format!("{:.9e}", g.uniform(0.0, 1.0).unwrap()),
            format!("{:.9e}", g.normal(100.0, 15.0).unwrap()),
            format!("{:.9e}", g.lognormal(3.0, 0.5).unwrap()),
            g.zipf(10, 1.1).unwrap().to_string(),
            g.weighted_index(&[1.0, 2.0, 3.0]).unwrap().to_string(),
            g.index(7).unwrap().to_string(),
            g.name(),
            g.email(),
            g.address(),
        ];
        assert_eq!(got, PINNED);
    }

    const PINNED: [&str; 12] = [
        "dbe45951-421c-4a91-bcd4-24ee32ba73fe",
        "synth-89a92736b9e5",
        "330",
        "3.263379309e-1",
        "8.601048175e1",
        "3.703519947e1",
        "4",
        "2",
        "6",
        "Margaret Bartik",
        "synth-yukihiro.moreau.7375@example.com",
        "668 Main Boulevard, Greenville 86888",
    ];

    #[test]
    fn ranges_are_respected() {
        let mut g = seeded(7, "ranges", 0);
        let mut seen = BTreeSet::new();
        for _ in 0..5_000 {
            let v = g.int(-3, 3).unwrap();
            assert!((-3..=3).contains(&v), "{v}");
            seen.insert(v);
        }
        // Inclusive: both ends come up.
        assert_eq!(seen, (-3..=3).collect::<BTreeSet<_>>());
        assert_eq!(g.int(5, 5).unwrap(), 5);
        g.int(i64::MIN, i64::MAX).unwrap();

        for _ in 0..5_000 {
            let v = g.uniform(2.0, 2.5).unwrap();
            assert!((2.0..2.5).contains(&v), "{v}");
        }
        // A range one float wide can only give its low end, never `hi`.
        for hi in [1.0, 0.0, -2.5, 1e300] {
            let lo = float_below(hi);
            assert!(lo < hi);
            for _ in 0..200 {
                assert_eq!(g.uniform(lo, hi).unwrap(), lo);
            }
        }
        assert_eq!(float_below(1.0), 1.0 - f64::EPSILON / 2.0);
        assert_eq!(float_below(-1.0), -1.0 - f64::EPSILON);
        for _ in 0..1_000 {
            assert!(g.index(3).unwrap() < 3);
            assert_eq!(g.zipf(1, 2.0).unwrap(), 1);
            assert!(g.normal(5.0, 0.0).unwrap() == 5.0);
            assert!(g.lognormal(0.0, 1.0).unwrap() > 0.0);
        }
    }

    #[test]
    fn bad_parameters_are_reported() {
        let mut g = seeded(1, "bad", 0);
        let cases: [(Result<String, String>, &str); 13] = [
            (
                g.int(5, 1).map(|v| v.to_string()),
                "int(5, 1): the low end is above the high end",
            ),
            (
                g.uniform(1.0, 1.0).map(|v| v.to_string()),
                "uniform(1, 1): expected finite bounds",
            ),
            (
                g.uniform(f64::NAN, 1.0).map(|v| v.to_string()),
                "uniform(NaN, 1)",
            ),
            (
                g.uniform(-f64::MAX, f64::MAX).map(|v| v.to_string()),
                "a finite difference",
            ),
            (
                g.normal(0.0, -1.0).map(|v| v.to_string()),
                "normal(0, -1): expected a finite mean and a finite standard deviation >= 0",
            ),
            (
                g.normal(f64::INFINITY, 1.0).map(|v| v.to_string()),
                "normal(inf, 1)",
            ),
            (
                g.lognormal(0.0, -0.5).map(|v| v.to_string()),
                "lognormal(0, -0.5): expected a finite mu and a finite sigma >= 0",
            ),
            (
                g.zipf(0, 1.1).map(|v| v.to_string()),
                "zipf(0, 1.1): n must be at least 1",
            ),
            (
                g.zipf(10, -1.0).map(|v| v.to_string()),
                "zipf(10, -1): the exponent must be finite and >= 0",
            ),
            (
                g.weighted_index(&[]).map(|v| v.to_string()),
                "weighted choice: ",
            ),
            (
                g.weighted_index(&[1.0, -1.0]).map(|v| v.to_string()),
                "weighted choice: ",
            ),
            (
                g.weighted_index(&[0.0, 0.0]).map(|v| v.to_string()),
                "weighted choice: ",
            ),
            (
                g.index(0).map(|v| v.to_string()),
                "choice from an empty list",
            ),
        ];
        for (result, message) in cases {
            let err = result.unwrap_err();
            assert!(
                err.contains(message),
                "{err:?} does not contain {message:?}"
            );
        }
    }

    #[test]
    fn generated_identities_carry_the_marker() {
        for marker in [DEFAULT_MARKER, "qa-load-"] {
            let mut g = Generator::new(Some(9), "ids", 0, marker);
            assert_eq!(g.marker(), marker);
            for _ in 0..200 {
                let id = g.synthetic_id();
                let hex = id.strip_prefix(marker).unwrap();
                assert_eq!(hex.len(), 12, "{id}");
                assert!(hex.chars().all(|c| c.is_ascii_hexdigit()), "{id}");

                let email = g.email();
                let (local, domain) = email.split_once('@').unwrap();
                assert_eq!(domain, "example.com", "{email}");
                let rest = local.strip_prefix(marker).unwrap();
                assert!(
                    rest.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.'),
                    "{email}"
                );
                assert_eq!(rest.split('.').count(), 3, "{email}");

                let uuid = uuid::Uuid::parse_str(&g.uuid()).unwrap();
                assert_eq!(uuid.get_version_num(), 4);
            }
        }
    }

    #[test]
    fn fake_data_is_varied() {
        let mut g = seeded(5, "fake", 0);
        let mut first = BTreeSet::new();
        let mut last = BTreeSet::new();
        let mut cities = BTreeSet::new();
        let mut streets = BTreeSet::new();
        for _ in 0..3_000 {
            let name = g.name();
            let (f, l) = name.split_once(' ').unwrap();
            first.insert(f.to_owned());
            last.insert(l.to_owned());
            let address = g.address();
            let (street, place) = address.split_once(", ").unwrap();
            let (number, street) = street.split_once(' ').unwrap();
            assert!(
                (1..=1999).contains(&number.parse::<u32>().unwrap()),
                "{address}"
            );
            streets.insert(street.to_owned());
            let (city, zip) = place.rsplit_once(' ').unwrap();
            assert_eq!(zip.len(), 5, "{address}");
            cities.insert(city.to_owned());
        }
        assert_eq!(first.len(), FIRST_NAMES.len());
        assert_eq!(last.len(), LAST_NAMES.len());
        assert_eq!(cities.len(), CITIES.len());
        assert!(streets.len() > 200, "{}", streets.len());
        assert!(first.len() >= 40 && last.len() >= 40 && cities.len() >= 30);
    }

    #[test]
    fn uniform_passes_kolmogorov_smirnov() {
        let mut g = seeded(11, "ks", 0);
        let (lo, hi) = (-5.0, 3.0);
        let samples: Vec<f64> = (0..N).map(|_| g.uniform(lo, hi).unwrap()).collect();
        let d = ks_statistic(samples, |x| ((x - lo) / (hi - lo)).clamp(0.0, 1.0));
        assert!(d < ks_critical(N), "D = {d}, critical {}", ks_critical(N));
    }

    #[test]
    fn normal_passes_kolmogorov_smirnov() {
        let mut g = seeded(12, "ks", 0);
        let samples: Vec<f64> = (0..N).map(|_| g.normal(100.0, 15.0).unwrap()).collect();
        let d = ks_statistic(samples, normal_cdf(100.0, 15.0));
        assert!(d < ks_critical(N), "D = {d}, critical {}", ks_critical(N));
    }

    #[test]
    fn lognormal_logarithms_pass_kolmogorov_smirnov() {
        let mut g = seeded(13, "ks", 0);
        let samples: Vec<f64> = (0..N)
            .map(|_| {
                let x = g.lognormal(1.5, 0.4).unwrap();
                assert!(x > 0.0);
                x.ln()
            })
            .collect();
        let d = ks_statistic(samples, normal_cdf(1.5, 0.4));
        assert!(d < ks_critical(N), "D = {d}, critical {}", ks_critical(N));
    }

    #[test]
    fn weighted_index_passes_chi_square() {
        let mut g = seeded(14, "chi2", 0);
        let weights = [1.0, 0.0, 2.0, 3.0, 4.0];
        let mut counts = BTreeMap::new();
        for _ in 0..N {
            *counts
                .entry(g.weighted_index(&weights).unwrap())
                .or_insert(0u64) += 1;
        }
        assert_eq!(counts.get(&1), None, "a zero weight was drawn");
        // Four non-zero cells: 3 degrees of freedom.
        let observed: Vec<u64> = [0, 2, 3, 4].iter().map(|i| counts[i]).collect();
        let chi2 = chi_square(&observed, &[0.1, 0.2, 0.3, 0.4]);
        assert!(chi2 < CHI2_CRITICAL_3, "chi2 = {chi2}, counts {counts:?}");
    }

    #[test]
    fn zipf_ranks_pass_chi_square() {
        let mut g = seeded(15, "chi2", 0);
        let counts = zipf_counts(&mut g, 10, 1.1);
        // Ten ranks: 9 degrees of freedom.
        let chi2 = chi_square(&counts, &zipf_probabilities(10, 1.1));
        assert!(chi2 < CHI2_CRITICAL_9, "chi2 = {chi2}, counts {counts:?}");
    }

    /// The goodness-of-fit checks above can fail: the same helpers reject
    /// samples held against a slightly wrong distribution.
    #[test]
    fn goodness_of_fit_checks_reject_a_wrong_distribution() {
        let mut g = seeded(12, "ks", 0);
        let samples: Vec<f64> = (0..N).map(|_| g.normal(100.0, 15.0).unwrap()).collect();
        // A shift of 0.05 standard deviations.
        let d = ks_statistic(samples, normal_cdf(100.75, 15.0));
        assert!(d > ks_critical(N), "D = {d}");

        let mut g = seeded(11, "ks", 0);
        let samples: Vec<f64> = (0..N).map(|_| g.uniform(0.0, 1.0).unwrap()).collect();
        let d = ks_statistic(samples, |x| (x / 1.05).clamp(0.0, 1.0));
        assert!(d > ks_critical(N), "D = {d}");

        let mut g = seeded(15, "chi2", 0);
        let counts = zipf_counts(&mut g, 10, 1.1);
        let chi2 = chi_square(&counts, &zipf_probabilities(10, 1.0));
        assert!(chi2 > CHI2_CRITICAL_9, "chi2 = {chi2}");
    }
}
