//! The `tls` probe: a TLS handshake: chain and hostname validity, days until the earliest certificate expires.
//!
//! STUB: being built; the shape (Raw/Spec/Facts/SCOPE/build/run) is fixed.

use super::{Assertion, RunContext};
use crate::config::build::Checker;
use crate::outcome::{FailureReason, Outcome};
use crate::tagging::RunIds;
use serde::{Deserialize, Serialize};

/// The variables a `tls` expectation can read.
pub const SCOPE: &[&str] = &["vars"];

/// The `[tls]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    #[serde(default)]
    pub expect: Vec<String>,
}

/// The checked `[tls]` table.
#[derive(Debug)]
pub struct TlsSpec {
    pub expect: Vec<Assertion>,
}

/// What a `tls` run saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TlsFacts {}

impl TlsFacts {
    /// Gauges for /metrics, labelled with probe and environment.
    pub fn gauges(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }

    /// Earliest `notAfter` of the peer's certificates, Unix seconds.
    pub fn cert_expiry(&self) -> Option<i64> {
        None
    }
}

/// Checks the raw table; problems are recorded on `c` at `tls.…` paths.
pub(crate) fn build(raw: RawTls, c: &mut Checker<'_>) -> Option<TlsSpec> {
    let expect = c.expectations("tls", &raw.expect, SCOPE);
    Some(TlsSpec { expect })
}

pub async fn run(spec: &TlsSpec, ctx: &RunContext<'_>) -> Outcome {
    let ids = RunIds::generate();
    let mut outcome = Outcome::new(&ctx.probe.name, &ctx.env.name, "tls", &ids);
    let _ = &spec.expect;
    outcome.fail(FailureReason::Request, "the `tls` probe is not built yet");
    outcome
}
