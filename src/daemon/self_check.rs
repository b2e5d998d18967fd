//! The connectivity self-check (`[daemon] self_check`): every `every`, each
//! target is tried at once (a TCP connect to `host:port`, or a GET of a URL
//! whose answer, any status, proves the way there works), each under
//! `timeout`. While **every** target fails, the monitor takes itself to be
//! offline: [`super::holds::Holds::set_offline`] makes the pipeline report
//! failed runs with reason `monitor_offline`, hold every pair's alerts,
//! leave those runs out of SLO counts and raise the one "synthmon offline"
//! alert. One target answering is enough to be online: the check asks
//! whether the monitor can reach anything, not whether a target is up.
//!
//! The check is a reachability test of the monitor's own host, so it does
//! not go through the probes' network layer (no phases, no verdict on a
//! target): a plain connect, and reqwest (the outbound client) for URLs.
//! With no target configured it does nothing and sends nothing.

use super::Shared;
use crate::config::{SelfCheck, SelfCheckTarget};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the loop looks at the config while the self-check is off.
const IDLE: Duration = Duration::from_secs(1);

/// Runs until `stop`: checks at each `every` of the config in effect
/// (reloads apply from the next check).
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let client = match client() {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "self-check: URL targets cannot be checked");
            None
        }
    };
    loop {
        let config = shared.config();
        let wait = match &config.daemon.self_check {
            None => {
                if shared.holds.offline() {
                    shared
                        .holds
                        .set_offline(false, "the self-check was turned off".into());
                }
                IDLE
            }
            Some(check) => {
                tokio::select! {
                    () = once(&shared, check, client.as_ref()) => {}
                    () = stop.cancelled() => return,
                }
                check.every
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// The first check, before the first run, so that runs at start are
/// judged knowing whether the monitor is offline. Bounded by the targets'
/// timeout.
pub async fn first(shared: &Shared) {
    let config = shared.config();
    if let Some(check) = &config.daemon.self_check {
        once(shared, check, client().ok().as_ref()).await;
    }
}

/// One check of every target; records the verdict, logs a change and
/// sets `synthmon_self_check_up`.
pub async fn once(shared: &Shared, check: &SelfCheck, client: Option<&reqwest::Client>) {
    let results = futures_util::future::join_all(
        check
            .targets
            .iter()
            .map(|t| async move { (t, try_target(t, check.timeout, client).await) }),
    )
    .await;
    let offline = results.iter().all(|(_, r)| r.is_err());
    let detail = if offline {
        let each: Vec<String> = results
            .iter()
            .filter_map(|(t, r)| r.as_ref().err().map(|e| format!("{t}: {e}")))
            .collect();
        format!(
            "the monitor is offline: every self-check target fails ({})",
            each.join("; ")
        )
    } else {
        let up: Vec<String> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(t, _)| t.to_string())
            .collect();
        format!("self-check targets answer: {}", up.join(", "))
    };
    let was = shared.holds.offline();
    if offline != was {
        if offline {
            tracing::error!(detail = %detail, "monitor offline: failed runs are reported as monitor_offline and their alerts held");
        } else {
            tracing::warn!(detail = %detail, "monitor back online");
        }
    }
    shared.holds.set_offline(offline, detail);
    shared.metrics.self_check(!offline);
}

/// One target: `Ok` when it answered within `timeout`, else why not.
async fn try_target(
    target: &SelfCheckTarget,
    timeout: Duration,
    client: Option<&reqwest::Client>,
) -> Result<(), String> {
    match target {
        SelfCheckTarget::Tcp(address) => {
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address.as_str()))
                .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(crate::net::error::describe(&e)),
                Err(_) => Err(format!("no connection within {timeout:?}")),
            }
        }
        SelfCheckTarget::Http(url) => {
            let client = client.ok_or("no HTTP client")?;
            let sent = client.get(url.clone()).timeout(timeout).send();
            match tokio::time::timeout(timeout, sent).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(crate::net::error::describe(&e)),
                Err(_) => Err(format!("no answer within {timeout:?}")),
            }
        }
    }
}

/// The client for URL targets: the probes' rustls config (reqwest has no
/// crypto provider of its own here), no redirects (an answer is enough).
fn client() -> Result<reqwest::Client, String> {
    let tls = crate::net::tls::client_config(&crate::net::tls::TlsOptions::default())
        .map_err(|e| e.to_string())?;
    reqwest::Client::builder()
        .tls_backend_preconfigured((*tls).clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build the self-check's HTTP client: {e}"))
}
