//! The `tcp` probe: connect to a host:port, optionally over TLS, optionally send a line and expect a reply (banner check).
//!
//! STUB: being built; the shape (Raw/Spec/Facts/SCOPE/build/run) is fixed.

use super::{Assertion, RunContext};
use crate::config::build::Checker;
use crate::outcome::{FailureReason, Outcome};
use crate::tagging::RunIds;
use serde::{Deserialize, Serialize};

/// The variables a `tcp` expectation can read.
pub const SCOPE: &[&str] = &["vars"];

/// The `[tcp]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTcp {
    #[serde(default)]
    pub expect: Vec<String>,
}

/// The checked `[tcp]` table.
#[derive(Debug)]
pub struct TcpSpec {
    pub expect: Vec<Assertion>,
}

/// What a `tcp` run saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TcpFacts {}

impl TcpFacts {
    /// Gauges for /metrics, labelled with probe and environment.
    pub fn gauges(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }

    /// Earliest `notAfter` of the peer's certificates, Unix seconds.
    pub fn cert_expiry(&self) -> Option<i64> {
        None
    }
}

/// Checks the raw table; problems are recorded on `c` at `tcp.…` paths.
pub(crate) fn build(raw: RawTcp, c: &mut Checker<'_>) -> Option<TcpSpec> {
    let expect = c.expectations("tcp", &raw.expect, SCOPE);
    Some(TcpSpec { expect })
}

pub async fn run(spec: &TcpSpec, ctx: &RunContext<'_>) -> Outcome {
    let ids = RunIds::generate();
    let mut outcome = Outcome::new(&ctx.probe.name, &ctx.env.name, "tcp", &ids);
    let _ = &spec.expect;
    outcome.fail(FailureReason::Request, "the `tcp` probe is not built yet");
    outcome
}
