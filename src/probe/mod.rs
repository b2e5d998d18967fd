//! Probe kinds and the runner that turns one (probe, environment) pair into
//! an [`Outcome`].
//!
//! The set of kinds is a closed enum; adding a kind is adding a file here and
//! a variant to [`ProbeKind`]. A probe never imports alerting or telemetry:
//! it produces an `Outcome` and stops there.

pub mod http;
pub mod transport;

use crate::outcome::Outcome;

/// The kind-specific, checked body of a probe.
#[derive(Debug)]
pub enum ProbeKind {
    Http(http::HttpSpec),
}

impl ProbeKind {
    pub fn name(&self) -> &'static str {
        match self {
            ProbeKind::Http(_) => "http",
        }
    }
}

pub use http::RunContext;

/// Runs one probe against one environment once, within the probe's timeout.
pub async fn run(ctx: &RunContext<'_>) -> Outcome {
    match &ctx.probe.kind {
        ProbeKind::Http(spec) => http::run(spec, ctx).await,
    }
}
