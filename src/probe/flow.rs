//! The `flow` probe: multi-step HTTP with setup and teardown. STUB.

use super::RunContext;
use crate::outcome::Outcome;

#[derive(Debug)]
pub struct FlowSpec {}

pub(crate) fn build(
    raw: crate::config::raw::RawFlow,
    known_vars: &[String],
    c: &mut crate::config::build::Checker<'_>,
) -> Option<FlowSpec> {
    let _ = (raw, known_vars, c);
    Some(FlowSpec {})
}

pub async fn run(spec: &FlowSpec, ctx: &RunContext<'_>) -> Outcome {
    let _ = spec;
    let mut o = Outcome::new(
        &ctx.probe.name,
        &ctx.env.name,
        "flow",
        &crate::tagging::RunIds::generate(),
    );
    o.fail(crate::outcome::FailureReason::Request, "not built yet");
    o
}
