//! The `grpc` probe: the standard gRPC health check (`grpc.health.v1.Health/Check`).
//!
//! STUB: being built; the shape (Raw/Spec/Facts/SCOPE/build/run) is fixed.

use super::{Assertion, RunContext};
use crate::config::build::Checker;
use crate::outcome::{FailureReason, Outcome};
use crate::tagging::RunIds;
use serde::{Deserialize, Serialize};

/// The variables a `grpc` expectation can read.
pub const SCOPE: &[&str] = &["vars"];

/// The `[grpc]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrpc {
    #[serde(default)]
    pub expect: Vec<String>,
}

/// The checked `[grpc]` table.
#[derive(Debug)]
pub struct GrpcSpec {
    pub expect: Vec<Assertion>,
}

/// What a `grpc` run saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GrpcFacts {}

impl GrpcFacts {
    /// Gauges for /metrics, labelled with probe and environment.
    pub fn gauges(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }
}

/// Checks the raw table; problems are recorded on `c` at `grpc.…` paths.
pub(crate) fn build(raw: RawGrpc, c: &mut Checker<'_>) -> Option<GrpcSpec> {
    let expect = c.expectations("grpc", &raw.expect, SCOPE);
    Some(GrpcSpec { expect })
}

pub async fn run(spec: &GrpcSpec, ctx: &RunContext<'_>) -> Outcome {
    let ids = RunIds::generate();
    let mut outcome = Outcome::new(&ctx.probe.name, &ctx.env.name, "grpc", &ids);
    let _ = &spec.expect;
    outcome.fail(FailureReason::Request, "the `grpc` probe is not built yet");
    outcome
}
