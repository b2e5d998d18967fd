//! The `stream` probe: Server-Sent Events and chunked streams: time to first event/byte, event count, largest gap, reconnect with `Last-Event-ID`.
//!
//! STUB: being built; the shape (Raw/Spec/Facts/SCOPE/build/run) is fixed.

use super::{Assertion, RunContext};
use crate::config::build::Checker;
use crate::outcome::{FailureReason, Outcome};
use crate::tagging::RunIds;
use serde::{Deserialize, Serialize};

/// The variables a `stream` expectation can read.
pub const SCOPE: &[&str] = &["vars"];

/// The `[stream]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStream {
    #[serde(default)]
    pub expect: Vec<String>,
}

/// The checked `[stream]` table.
#[derive(Debug)]
pub struct StreamSpec {
    pub expect: Vec<Assertion>,
}

/// What a `stream` run saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StreamFacts {}

impl StreamFacts {
    /// Gauges for /metrics, labelled with probe and environment.
    pub fn gauges(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }
}

/// Checks the raw table; problems are recorded on `c` at `stream.…` paths.
pub(crate) fn build(raw: RawStream, c: &mut Checker<'_>) -> Option<StreamSpec> {
    let expect = c.expectations("stream", &raw.expect, SCOPE);
    Some(StreamSpec { expect })
}

pub async fn run(spec: &StreamSpec, ctx: &RunContext<'_>) -> Outcome {
    let ids = RunIds::generate();
    let mut outcome = Outcome::new(&ctx.probe.name, &ctx.env.name, "stream", &ids);
    let _ = &spec.expect;
    outcome.fail(
        FailureReason::Request,
        "the `stream` probe is not built yet",
    );
    outcome
}
