//! synthmon: a synthetic production monitor.
//!
//! See ARCHITECTURE.md for the data flow and the code map. The binary's
//! `main` only calls [`cli::main`].

#![forbid(unsafe_code)]

pub mod alert;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod diag;
pub mod expr;
pub mod generate;
pub mod history;
pub mod hold;
pub mod net;
pub mod once;
pub mod outcome;
pub mod plan;
pub mod probe;
pub mod report;
pub mod sandbox;
pub mod schedule;
pub mod secret;
pub mod slo;
pub mod tagging;
pub mod telemetry;
pub mod template;
pub mod threshold;
