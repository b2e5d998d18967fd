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
//! - [`http2`]: the HTTP version asked for, an HTTP/2 connection (ALPN or
//!   prior knowledge) and the ones a workload's requests share;
//! - [`pool`]: keep-alive's bounded set of idle connections per origin;
//! - [`oauth2`]: client-credentials bearer tokens, fetched through
//!   [`http1`] and cached process-wide until shortly before they expire.
//!
//! This layer knows nothing of probes, config files or reports: it takes
//! settings as plain values and returns facts and [`error::Fail`]s.

pub mod clock;
pub mod dial;
pub mod error;
pub mod http1;
pub mod http2;
pub mod oauth2;
pub mod pool;
pub mod proxy;
pub mod tls;

pub use clock::Clock;
pub use dial::{AbortOnDrop, Dialed, Io, TlsSetup, close, dial, dial_via, open, parse_address};
pub use error::{Fail, describe};
