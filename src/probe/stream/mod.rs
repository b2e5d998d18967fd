//! The `stream` probe: Server-Sent Events and chunked streams: time to first event/byte, event count, largest gap, reconnect with `Last-Event-ID`.
//!
//! One run opens a fresh HTTP/1.1 connection (hyper, TLS through rustls),
//! sends a tagged `GET`, and reads the body as it arrives: SSE events
//! (parsed as the WHATWG EventSource algorithm does) or, in `chunked` mode,
//! each piece of body as it is delivered. It stops successfully once
//! `min_events` arrived, once `duration` has passed, or when the server ends
//! the stream; it fails at once when the gap after an event exceeds
//! `max_gap`, when the first event is later than `first_event_timeout`, or
//! when an event exceeds `max_event_bytes`. With `reconnect`, it drops the
//! connection half-way (after `min_events / 2` events, else after half of
//! `duration`, else when the server ends the first stream), reconnects with
//! `Last-Event-ID`, and checks that the stream resumes after that id.
//! With `sequence = "numeric"` the event ids must count up by one, across
//! its reconnects and, unless `sequence_across_runs = false`, across runs:
//! a run connects with `Last-Event-ID` set to the previous run's last id
//! (kept as `stream.last_id`) and its first id must follow it. Gaps and
//! duplicates fail the run (reason `assertion`) with the missing and
//! repeated ids listed, unless an expectation reads `sequence` itself.
//!
//! The phases are `connect` (start to response headers), `first_event`
//! (headers to the first event) and `stream` (the rest, a reconnect
//! included), contiguous, under the probe's one deadline. Memory is bounded:
//! one event at most `max_event_bytes`, and only the first
//! [`MAX_DATA_KEPT`] event data strings (each cut at [`MAX_DATA_CHARS`]) are
//! kept for expectations.
//!
//! The files: `spec.rs` the `[stream]` table and its checks; `sse.rs` the
//! event-stream parser (the WHATWG rules, and `chunked` pieces); `connect.rs`
//! one fresh connection and its `GET`; `session.rs` the run itself (reading,
//! the stall and gap limits, the reconnect and its resume check, the implicit
//! checks); `sequence.rs` the id numbering check; `facts.rs` what a run
//! reports. This file holds the registry
//! entry; no other file of the folder uses it.

mod connect;
mod facts;
mod sequence;
mod session;
mod spec;
mod sse;

use super::kind::{BuildInput, Kind, KindEntry, RunContext, RunFuture};
use crate::config::check::Checker;
use crate::outcome::GaugeSpec;

pub use facts::{MAX_DATA_CHARS, MAX_DATA_KEPT, StreamFacts};
pub use sequence::{KEPT_LAST_ID, MAX_LISTED, Sequence};
pub use session::run;
pub use spec::{RawStream, SCOPE, StreamSpec};
pub use sse::Mode;
/// The parser itself, for the fuzz tests (tests/suite/fuzz.rs).
#[doc(hidden)]
pub use sse::{Event, Parser};

/// The registry's line for `[stream]`.
pub const KIND: KindEntry = KindEntry {
    name: "stream",
    build: build_kind,
    gauges: GAUGES,
};

/// What this kind's facts export on /metrics.
const GAUGES: &[GaugeSpec] = &[
    GaugeSpec {
        name: "probe_stream_events",
        seconds: false,
        help: "Events (or chunks) the last stream run received.",
    },
    GaugeSpec {
        name: "probe_stream_first_event_seconds",
        seconds: true,
        help: "Time from the start of the run to the first event.",
    },
    GaugeSpec {
        name: "probe_stream_max_gap_seconds",
        seconds: true,
        help: "Largest gap between two events of the last run, a stall that failed it included.",
    },
    GaugeSpec {
        name: "probe_stream_missing_ids",
        seconds: false,
        help: "Event ids the last stream run found missing from a numeric sequence.",
    },
    GaugeSpec {
        name: "probe_stream_repeated_ids",
        seconds: false,
        help: "Events of the last stream run whose id repeated an earlier one of a numeric sequence.",
    },
];

fn build_kind(c: &mut Checker<'_>, _: &BuildInput<'_>) -> Option<Box<dyn Kind>> {
    let raw: RawStream = c.table("stream")?;
    spec::build(raw, c).map(|spec| Box::new(spec) as Box<dyn Kind>)
}

impl Kind for StreamSpec {
    fn name(&self) -> &'static str {
        "stream"
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
