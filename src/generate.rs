//! Seeded synthetic data: the generator behind the template functions
//! (`uuid()`, `int(1, 5)`, `normal(100, 15)`, `email()`, …).
//!
//! One [`Generator`] serves one rendering of one request. Its stream is
//! ChaCha8, chosen over `StdRng` because its output is specified and stable
//! across `rand` releases: the same seed gives the same bytes after an
//! upgrade. With a seed, a request's generator is derived from (seed, probe,
//! stream), where the stream numbers the request inside a run (workload
//! request index, flow step), so payloads do not depend on scheduling order.
//! Without a seed every generator starts from fresh OS entropy.
//!
//! Every generated identity carries the probe's synthetic marker (an id
//! prefix, `synth-` by default) so production can find and purge it.

use rand::{Rng, SeedableRng};
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
            None => ChaCha8Rng::from_os_rng(),
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

    /// A float in `lo..hi` (uniform).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> Result<f64, String> {
        if !(lo.is_finite() && hi.is_finite()) || lo >= hi {
            return Err(format!(
                "uniform({lo}, {hi}): expected finite bounds with low < high"
            ));
        }
        Ok(self.rng.random_range(lo..hi))
    }

    pub fn normal(&mut self, mean: f64, sd: f64) -> Result<f64, String> {
        let d =
            rand_distr::Normal::new(mean, sd).map_err(|e| format!("normal({mean}, {sd}): {e}"))?;
        Ok(d.sample(&mut self.rng))
    }

    /// Log-normal with the underlying normal's `mu` and `sigma`.
    pub fn lognormal(&mut self, mu: f64, sigma: f64) -> Result<f64, String> {
        let d = rand_distr::LogNormal::new(mu, sigma)
            .map_err(|e| format!("lognormal({mu}, {sigma}): {e}"))?;
        Ok(d.sample(&mut self.rng))
    }

    /// A rank in `1..=n`, Zipf-distributed with exponent `s`.
    pub fn zipf(&mut self, n: u64, s: f64) -> Result<u64, String> {
        let d = rand_distr::Zipf::new(n as f64, s).map_err(|e| format!("zipf({n}, {s}): {e}"))?;
        Ok(d.sample(&mut self.rng) as u64)
    }

    /// An index into `weights`, each drawn with probability proportional to
    /// its weight.
    pub fn weighted_index(&mut self, weights: &[f64]) -> Result<usize, String> {
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
        let n: u16 = self.rng.random_range(1000..10000);
        format!("{}{first}.{last}.{n}@example.com", self.marker)
    }

    /// A one-line street address.
    pub fn address(&mut self) -> String {
        let number: u16 = self.rng.random_range(1..2000);
        let street = pick(&mut self.rng, STREETS);
        let city = pick(&mut self.rng, CITIES);
        let zip: u32 = self.rng.random_range(10000..99999);
        format!("{number} {street}, {city} {zip}")
    }
}

fn pick<'a>(rng: &mut ChaCha8Rng, list: &[&'a str]) -> &'a str {
    list.get(rng.random_range(0..list.len().max(1)))
        .copied()
        .unwrap_or_default()
}

const FIRST_NAMES: &[&str] = &[
    "Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "John", "Margaret", "Ken",
];
const LAST_NAMES: &[&str] = &[
    "Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus", "Hamilton",
    "Thompson",
];
const STREETS: &[&str] = &["Main Street", "Oak Avenue", "Station Road", "Mill Lane"];
const CITIES: &[&str] = &["Springfield", "Riverton", "Fairview", "Lakewood"];
