//! The sandbox's gRPC server with the standard health service.
//!
//! STUB: being built.

use std::net::IpAddr;
use tokio::sync::watch;

/// Starts the listener(s) on `ip` (port 0), serving until `stop` turns
/// true; returns the [`super::VARIABLES`] entries it provides.
pub async fn start(
    ip: IpAddr,
    stop: watch::Receiver<bool>,
) -> std::io::Result<Vec<(&'static str, String)>> {
    let _ = (ip, stop);
    Ok(Vec::new())
}
