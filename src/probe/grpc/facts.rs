//! What a `grpc` run reports ([`GrpcFacts`]: its gauges and certificate
//! expiry).

use crate::outcome::KindFacts;
use serde::Serialize;

/// What a `grpc` run saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GrpcFacts {
    /// `host:port` as called.
    pub address: String,
    pub service: String,
    pub tls: bool,
    /// SERVING, NOT_SERVING, UNKNOWN or SERVICE_UNKNOWN (a `Check` answered
    /// NOT_FOUND, the health protocol's way of saying the service is
    /// unknown); `None` when no answer came.
    pub status: Option<String>,
    pub grpc_code: Option<u32>,
    pub grpc_code_name: Option<String>,
    pub grpc_message: Option<String>,
    pub http_status: Option<u16>,
    /// With TLS: the earliest `notAfter` of the presented certificates,
    /// Unix seconds (exported as `probe_ssl_earliest_cert_expiry`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_expiry: Option<i64>,
}

impl GrpcFacts {
    /// Gauges for /metrics, labelled with probe and environment.
    pub fn gauges(&self) -> Vec<(&'static str, f64)> {
        let serving = self.status.as_deref() == Some("SERVING");
        let mut out = vec![(
            "probe_grpc_healthcheck_response",
            if serving { 1.0 } else { 0.0 },
        )];
        if let Some(code) = self.grpc_code {
            out.push(("probe_grpc_status_code", f64::from(code)));
        }
        out
    }
}

impl KindFacts for GrpcFacts {
    fn gauges(&self) -> Vec<(&'static str, f64)> {
        GrpcFacts::gauges(self)
    }
    fn cert_expiry(&self) -> Option<i64> {
        self.cert_expiry
    }
}
