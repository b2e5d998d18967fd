//! The one way synthmon reaches the network.
//!
//! Resolve, connect, TLS (one client-config builder, one trust store cache,
//! one certificate verifier), phase timing under one deadline, and the
//! classification of errors into a [`crate::outcome::FailureReason`] and a
//! sentence. Every probe kind and every outgoing notification uses it, so the
//! same fault gets the same reason and words whatever asked.
//!
//! - [`clock`]: a run's deadline and its contiguous phases;
//! - [`dial`]: resolve, connect, optional TLS with ALPN, close;
//! - [`tls`]: client configs, the verifier, the facts of a handshake;
//! - [`error`]: [`error::Fail`], error chains in words, certificate verdicts;
//! - [`http1`]: one HTTP/1.1 exchange with real phase timings, on a fresh
//!   connection or a kept-alive one;
//! - [`pool`]: keep-alive's bounded set of idle connections per origin.
//!
//! This layer knows nothing of probes, config files or reports: it takes
//! settings as plain values and returns facts and [`error::Fail`]s.

pub mod clock;
pub mod dial;
pub mod error;
pub mod http1;
pub mod pool;
pub mod tls;

pub use clock::Clock;
pub use dial::{AbortOnDrop, Dialed, Io, TlsSetup, close, dial, open, parse_address};
pub use error::{Fail, describe};
