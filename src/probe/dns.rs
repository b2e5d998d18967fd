//! The `dns` probe: query a chosen DNS server for a record type: rcode, answers, latency.
//!
//! STUB: being built; the shape (Raw/Spec/Facts/SCOPE/build/run) is fixed.

use super::{Assertion, RunContext};
use crate::config::build::Checker;
use crate::outcome::{FailureReason, Outcome};
use crate::tagging::RunIds;
use serde::{Deserialize, Serialize};

/// The variables a `dns` expectation can read.
pub const SCOPE: &[&str] = &["vars"];

/// The `[dns]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    #[serde(default)]
    pub expect: Vec<String>,
}

/// The checked `[dns]` table.
#[derive(Debug)]
pub struct DnsSpec {
    pub expect: Vec<Assertion>,
}

/// What a `dns` run saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DnsFacts {}

impl DnsFacts {
    /// Gauges for /metrics, labelled with probe and environment.
    pub fn gauges(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }
}

/// Checks the raw table; problems are recorded on `c` at `dns.…` paths.
pub(crate) fn build(raw: RawDns, c: &mut Checker<'_>) -> Option<DnsSpec> {
    let expect = c.expectations("dns", &raw.expect, SCOPE);
    Some(DnsSpec { expect })
}

pub async fn run(spec: &DnsSpec, ctx: &RunContext<'_>) -> Outcome {
    let ids = RunIds::generate();
    let mut outcome = Outcome::new(&ctx.probe.name, &ctx.env.name, "dns", &ids);
    let _ = &spec.expect;
    outcome.fail(FailureReason::Request, "the `dns` probe is not built yet");
    outcome
}
