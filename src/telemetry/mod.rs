//! Telemetry out: latency histograms and thresholds (`measure`), Prometheus
//! metrics (`metrics`, with the latency families in `latency`) and OTLP
//! traces (`traces`). Everything here consumes
//! [`crate::outcome::Outcome`]s; nothing here runs probes.

pub mod latency;
pub mod measure;
pub mod metrics;
pub mod series;
pub mod traces;
