//! The `grpc` probe: the standard gRPC health check (`grpc.health.v1.Health/Check`).
//!
//! One run opens a fresh connection (plaintext HTTP/2 with prior knowledge,
//! or TLS with ALPN `h2`), sends one `Check` for the configured service and
//! reads the serving status and the gRPC status from the trailers. The phases
//! are `resolve`, `connect`, `tls` and `call` (the HTTP/2 handshake and the
//! exchange), contiguous, under the probe's one deadline.
//!
//! The exchange is spoken with the `h2` crate directly and the two tiny
//! messages are encoded by hand, rather than through tonic and
//! tonic-health: the probe needs the resolve/connect/TLS steps in its own
//! hands for phase timings (tonic's channel hides them), it must see exactly
//! what a broken peer sent (an HTTP/1 answer, a missing `grpc-status`, a
//! non-gRPC HTTP status) to name the failure, and `HealthCheckRequest` is
//! one optional string field while `HealthCheckResponse` is one enum field.
//! The sandbox's server is built the same way; the integration tests check
//! both against tonic-health, the reference implementation.
//!
//! Resolving, connecting and the TLS handshake are [`crate::net`]'s
//! ([`dial`](crate::net::dial)), shared with the `stream` kind.
//!
//! The files: `spec.rs` the `[grpc]` table, its checks and the address;
//! `wire.rs` the gRPC framing and the two health messages in protobuf (the
//! sandbox's server uses them too), gRPC status codes and `grpc-message`
//! decoding; `call.rs` the HTTP/2 request and exchange; `facts.rs` what a run
//! reports. This file holds the run (its implicit checks and expectations)
//! and the registry entry; no other file of the folder uses it.

mod call;
mod facts;
mod spec;
mod wire;

use super::kind::{BuildInput, Kind, KindEntry, RunContext, RunFuture};
use crate::config::check::Checker;
use crate::expr::Facts;
use crate::net::Clock;
use crate::outcome::{Details, FailureReason, GaugeSpec, Outcome};
use crate::tagging::RunIds;
use call::call;
use wire::NOT_FOUND;

pub use facts::GrpcFacts;
pub use spec::{GrpcSpec, RawGrpc, SCOPE};
pub use wire::{HEALTH_CHECK_PATH, code_name};
/// The wire parsers, for the fuzz tests (tests/suite/fuzz.rs).
#[doc(hidden)]
pub use wire::{decode_health_response, fields, frame, percent_decode, unframe};

pub async fn run(spec: &GrpcSpec, ctx: &RunContext<'_>) -> Outcome {
    let ids = RunIds::generate();
    let mut outcome = Outcome::new(&ctx.probe.name, &ctx.env.name, "grpc", &ids);
    let mut clock = Clock::new(ctx.deadline(), &["resolve", "connect", "tls", "call"]);
    let mut facts = GrpcFacts {
        service: spec.service.clone(),
        ..GrpcFacts::default()
    };
    let result = call(spec, ctx, &ids, &mut clock, &mut facts).await;
    clock.record(&mut outcome);
    match result {
        Err(fail) => outcome.fail(fail.reason, fail.message),
        Ok(()) => {
            outcome.responded = true;
            judge(spec, &facts, &mut outcome);
            let mut f = Facts::default();
            f.set("status", facts.status.clone().unwrap_or_default());
            f.set("grpc_code", facts.grpc_code.map_or(-1, i64::from));
            f.set(
                "grpc_message",
                facts.grpc_message.clone().unwrap_or_default(),
            );
            f.set("timings", clock.timings());
            f.set("vars", super::kind::vars_value(ctx.vars));
            ctx.check_expectations(&mut outcome, &spec.expect, f);
        }
    }
    ctx.redactor.scrub(&mut facts.address);
    if let Some(m) = facts.grpc_message.as_mut() {
        ctx.redactor.scrub(m);
    }
    outcome.details = Some(Details::new(facts));
    super::kind::finish(&mut outcome);
    super::kind::redact(outcome, ctx.redactor)
}

/// The implicit checks: a non-OK gRPC status, then a status other than
/// SERVING, unless expectations read them.
fn judge(spec: &GrpcSpec, facts: &GrpcFacts, outcome: &mut Outcome) {
    let code = facts.grpc_code.unwrap_or(0);
    let detail = match facts.grpc_message.as_deref() {
        Some(m) if !m.is_empty() => format!(": {m}"),
        _ => String::new(),
    };
    let what = if spec.service.is_empty() {
        "the server".to_owned()
    } else {
        format!("service `{}`", spec.service)
    };
    if code != 0 && code != NOT_FOUND {
        if spec.implicit_code {
            let name = code_name(code);
            let how = match facts.http_status {
                Some(s) if s != 200 => format!(
                    "answered HTTP {s} without a gRPC status ({name} by the gRPC HTTP mapping)"
                ),
                _ => format!("ended with gRPC status {name} ({code})"),
            };
            outcome.fail(
                FailureReason::Grpc,
                format!("Health/Check for {what} on {} {how}{detail}", facts.address),
            );
        }
        return;
    }
    match facts.status.as_deref() {
        Some("SERVING") | None => {}
        Some(status) if spec.implicit_serving => {
            let how = if code == NOT_FOUND {
                format!(" (Check answered NOT_FOUND{detail})")
            } else {
                String::new()
            };
            outcome.fail(
                FailureReason::NotServing,
                format!("{what} on {} is {status}{how}", facts.address),
            );
        }
        Some(_) => {}
    }
}

/// The registry's line for `[grpc]`.
pub const KIND: KindEntry = KindEntry {
    name: "grpc",
    build: build_kind,
    gauges: GAUGES,
};

/// What this kind's facts export on /metrics.
const GAUGES: &[GaugeSpec] = &[
    GaugeSpec {
        name: "probe_grpc_healthcheck_response",
        seconds: false,
        help: "Whether the health service answered SERVING (1) or not (0).",
    },
    GaugeSpec {
        name: "probe_grpc_status_code",
        seconds: false,
        help: "gRPC status code of the last health check call (0 OK).",
    },
];

fn build_kind(c: &mut Checker<'_>, _: &BuildInput<'_>) -> Option<Box<dyn Kind>> {
    let raw: RawGrpc = c.table("grpc")?;
    spec::build(raw, c).map(|spec| Box::new(spec) as Box<dyn Kind>)
}

impl Kind for GrpcSpec {
    fn name(&self) -> &'static str {
        "grpc"
    }

    fn run<'a>(&'a self, ctx: &'a RunContext<'_>) -> RunFuture<'a> {
        Box::pin(run(self, ctx))
    }

    fn scope(&self) -> Option<crate::expr::Scope<'static>> {
        Some(SCOPE)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
