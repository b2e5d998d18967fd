//! synthmon's integration suite: one test binary for every file here.
//!
//! Each module was once a binary of its own; linking twenty copies of the
//! dependency graph took most of a CI disk and a minute of link time, so
//! they share one. Nothing in synthmon keeps process-global state (the
//! metrics registries are local recorders, the tracer is passed around)
//! but the OAuth2 token cache, keyed by the token URL (each test's own
//! sandbox port), so the modules cannot see each other's runs. Run one module with
//! `cargo test --test suite flow::`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod alerting;
mod artifacts;
mod auth;
mod baseline_daemon;
mod baseline_gate;
mod cert_verdicts;
mod check_errors;
mod daemon;
mod email;
mod fault_table;
mod flow;
mod fuzz;
mod history_api;
mod history_restart;
mod history_store;
mod http2;
mod http_probe;
mod keep_prev;
mod kill9;
mod maintenance;
mod metrics;
mod once_cli;
mod otlp;
mod outbox;
mod probe_command;
mod probe_dns;
mod probe_grpc_stream;
mod probe_icmp;
mod probe_tcp_tls;
mod probe_websocket;
mod proxy;
mod readme_tour;
mod regressions_config;
mod regressions_expr;
mod regressions_json;
mod regressions_lifecycle;
mod regressions_load;
mod regressions_sinks;
mod regressions_workload;
mod reports;
mod retries;
mod secret_canary;
mod secrets;
mod seed;
mod shard;
mod sinks_at_fault;
mod slo_burn;
mod slo_config;
mod sse_sequence;
mod status_page;
mod tls_options;
mod workload;
mod workload_keepalive;
