//! Workloads: an http probe sent at an arrival rate. STUB.

use super::RunContext;
use crate::outcome::Outcome;

#[derive(Debug)]
pub struct Workload {}

pub(crate) fn build(
    raw: crate::config::raw::RawWorkload,
    spec: &super::http::HttpSpec,
    timeout: std::time::Duration,
    c: &mut crate::config::build::Checker<'_>,
) -> Option<Workload> {
    let _ = (raw, spec, timeout, c);
    Some(Workload {})
}

pub async fn run(w: &Workload, ctx: &RunContext<'_>) -> Outcome {
    let _ = w;
    let mut o = Outcome::new(
        &ctx.probe.name,
        &ctx.env.name,
        "http",
        &crate::tagging::RunIds::generate(),
    );
    o.fail(crate::outcome::FailureReason::Request, "not built yet");
    o
}
