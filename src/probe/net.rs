//! Connection plumbing for the kinds that dial for themselves: `tcp`, `tls`,
//! `grpc` and `stream`.
//!
//! These kinds own their sockets (ARCHITECTURE.md, "Kinds own their
//! sockets"): each measures its phases on a fresh connection, so none can
//! hand resolving, connecting and the handshake to a client library that
//! would hide them. What that takes does not depend on the protocol spoken
//! afterwards, and lives here once, so that every kind times its phases,
//! honours its deadline and words a refused connection the same way:
//!
//! - [`Clock`]: the run's one deadline and its contiguous phases;
//! - [`Fail`]: a failure with its reason, as the kinds pass it up to `run`;
//! - [`open`]: resolve and connect, judging every address tried;
//! - [`dial`]: [`open`] plus a TLS handshake that offers one ALPN protocol
//!   through the environment's client config (`grpc`, `stream`). The `tcp`
//!   and `tls` kinds shake hands with the recording verifier of
//!   [`super::tls`] instead, since they report on the certificate;
//! - [`close`], [`describe`], [`AbortOnDrop`], the `host:port` syntax of
//!   `tcp` and `tls` ([`parse_address`]) and `vars` for expectations.
//!
//! What a kind says about its own protocol (a banner, an HTTP/2 answer, a
//! stalled stream) stays in its file.

use crate::config::build::Checker;
use crate::expr::duration_value;
use crate::outcome::{FailureReason, Outcome, Phase};
use crate::template::Text;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use url::Host;

/// A failure with its reason and a sentence for people.
///
/// The steps of a run return it with `?`; `run` turns the first one into
/// the outcome's failure, so the reason is decided where the failure is
/// understood, not guessed later from an error's text.
#[derive(Debug)]
pub(crate) struct Fail {
    pub reason: FailureReason,
    pub message: String,
}

impl Fail {
    pub(crate) fn new(reason: FailureReason, message: impl Into<String>) -> Fail {
        Fail {
            reason,
            message: message.into(),
        }
    }
}

/// The clock of one run: its deadline and its phases.
///
/// A phase ends at the instant its work finished, failed or ran out of
/// time, and the next one starts there, so the phases add up to
/// [`Clock::elapsed`] exactly (the "phases are contiguous" invariant). Work
/// runs under the one deadline of the run through [`Clock::within`], so a
/// trickling peer cannot stretch a run by answering each step just in time.
pub(crate) struct Clock {
    /// When the run began: deadline messages count from here, since that
    /// is what the probe's `timeout` counts from too.
    origin: Instant,
    /// When the measured part began (see [`Clock::begin`]).
    start: Instant,
    /// The end of the last phase.
    mark: Instant,
    deadline: Instant,
    phases: Vec<Phase>,
}

impl Clock {
    /// A clock started now, with `phases` listed in order at zero. A kind
    /// that always reports the same phases lists them here, and one that
    /// does not apply (`tls` over plaintext) stays zero; a kind that
    /// reports only the phases it went through lists none.
    pub(crate) fn new(deadline: Instant, phases: &[&'static str]) -> Clock {
        let now = Instant::now();
        Clock {
            origin: now,
            start: now,
            mark: now,
            deadline,
            phases: phases
                .iter()
                .map(|&name| Phase {
                    name,
                    seconds: Duration::ZERO,
                })
                .collect(),
        }
    }

    /// Starts the measured part now: the work before (rendering templates,
    /// reading a CA bundle) is synthmon's, not the target's. The deadline
    /// still counts from the start of the run.
    pub(crate) fn begin(&mut self) {
        let now = Instant::now();
        self.start = now;
        self.mark = now;
    }

    /// When the measured part began.
    pub(crate) fn start(&self) -> Instant {
        self.start
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Ends the phase in progress now, charging its time to `name`; a
    /// phase lapped again (a reconnect's time in `stream`) adds up.
    pub(crate) fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        let spent = now.saturating_duration_since(self.mark);
        self.mark = now;
        match self.phases.iter_mut().find(|p| p.name == name) {
            Some(phase) => phase.seconds += spent,
            None => self.phases.push(Phase {
                name,
                seconds: spent,
            }),
        }
    }

    /// Lists phase `name` at zero where it took no time (`resolve` for an
    /// IP literal), unless it is listed already.
    fn skip(&mut self, name: &'static str) {
        if !self.phases.iter().any(|p| p.name == name) {
            self.phases.push(Phase {
                name,
                seconds: Duration::ZERO,
            });
        }
    }

    /// Runs `work` as phase `name` within the deadline and laps it, whether
    /// the work finished, failed or ran out of time. The deadline's reason
    /// and words follow the phase (see [`Clock::step`]).
    pub(crate) async fn phase<F: Future>(
        &mut self,
        name: &'static str,
        work: F,
    ) -> Result<F::Output, Fail> {
        self.step(name, name, work).await
    }

    /// [`Clock::phase`] for a kind whose phases are coarser than its steps
    /// (`stream` charges resolving, connecting and the handshake all to
    /// `connect`): `step` (`resolve`, `connect`, `tls` or another name)
    /// decides the deadline's reason and words, `phase` gets the time.
    async fn step<F: Future>(
        &mut self,
        step: &str,
        phase: &'static str,
        work: F,
    ) -> Result<F::Output, Fail> {
        let (reason, doing) = match step {
            // Nothing reached the target yet: a connect timeout, as the
            // `http` kind says too.
            "resolve" => (
                FailureReason::ConnectTimeout,
                "while resolving the host (resolve)".to_owned(),
            ),
            "connect" => (
                FailureReason::ConnectTimeout,
                "while connecting (connect)".to_owned(),
            ),
            "tls" => (
                FailureReason::Timeout,
                "during the tls handshake (tls)".to_owned(),
            ),
            other => (
                FailureReason::Timeout,
                format!("during the {other} ({other})"),
            ),
        };
        let out = self.within_as(reason, &doing, work).await;
        self.lap(phase);
        out
    }

    /// Runs `fut` within the deadline; past it, a `timeout` that says what
    /// was being done (`doing`, e.g. "during the call (call)"). A deadline
    /// already passed fails before `fut` is polled. The caller laps.
    pub(crate) async fn within<F: Future>(&self, doing: &str, fut: F) -> Result<F::Output, Fail> {
        self.within_as(FailureReason::Timeout, doing, fut).await
    }

    /// [`Clock::within`] with the reason to give when the deadline passes.
    async fn within_as<F: Future>(
        &self,
        reason: FailureReason,
        doing: &str,
        fut: F,
    ) -> Result<F::Output, Fail> {
        let expired = || {
            Fail::new(
                reason,
                format!(
                    "deadline exceeded after {:.3}s {doing}",
                    self.origin.elapsed().as_secs_f64()
                ),
            )
        };
        if Instant::now() >= self.deadline {
            return Err(expired());
        }
        tokio::time::timeout_at(self.deadline, fut)
            .await
            .map_err(|_| expired())
    }

    /// From the start of the measured part to the end of the last phase:
    /// the sum of the phases.
    fn elapsed(&self) -> Duration {
        self.mark.saturating_duration_since(self.start)
    }

    /// `timings` for expectations: each phase by name, plus `total`.
    pub(crate) fn timings(&self) -> cel::Value {
        let mut m: HashMap<String, cel::Value> = self
            .phases
            .iter()
            .map(|p| (p.name.to_owned(), duration_value(p.seconds)))
            .collect();
        m.insert("total".to_owned(), duration_value(self.elapsed()));
        m.into()
    }

    /// Writes the phases and the run's duration (their sum) into `outcome`.
    pub(crate) fn record(&self, outcome: &mut Outcome) {
        outcome.phases = self.phases.clone();
        outcome.duration = self.elapsed();
    }
}

/// Resolves `host` (no lookup for an IP literal) and connects to the first
/// address that accepts, lapping the two steps as `phases` (resolve,
/// connect). A deadline passed in either is `connect_timeout`.
///
/// The addresses are tried in turn rather than raced: a probe wants the
/// verdict on each, and every error is kept for the message.
pub(crate) async fn open(
    host: &str,
    port: u16,
    clock: &mut Clock,
    phases: [&'static str; 2],
) -> Result<TcpStream, Fail> {
    let [resolve_phase, connect_phase] = phases;
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => {
            clock.skip(resolve_phase);
            vec![SocketAddr::new(ip, port)]
        }
        Err(_) => {
            let dns = |why: &dyn Display| {
                Fail::new(FailureReason::Dns, format!("cannot resolve {host}: {why}"))
            };
            let found: Vec<SocketAddr> = clock
                .step(
                    "resolve",
                    resolve_phase,
                    tokio::net::lookup_host((host, port)),
                )
                .await?
                .map_err(|e| dns(&e))?
                .collect();
            if found.is_empty() {
                return Err(dns(&"no address found"));
            }
            found
        }
    };
    let attempts = async {
        let mut errors = Vec::with_capacity(addrs.len());
        for &addr in &addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => errors.push((addr, e)),
            }
        }
        Err(errors)
    };
    match clock.step("connect", connect_phase, attempts).await? {
        Ok(stream) => {
            // Nagle's algorithm would only hold back the short writes a
            // probe makes.
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Err(errors) => Err(unreachable(&errors)),
    }
}

/// The failure when no address accepted: `connect_refused` only when every
/// address refused (nothing listens there, a clear verdict), else `connect`
/// (unreachable, reset, …); the message names each address and its error.
fn unreachable(errors: &[(SocketAddr, io::Error)]) -> Fail {
    let refused = errors
        .iter()
        .all(|(_, e)| e.kind() == io::ErrorKind::ConnectionRefused);
    let tried = errors
        .iter()
        .map(|(addr, e)| format!("{addr}: {e}"))
        .collect::<Vec<_>>()
        .join("; ");
    let reason = if refused {
        FailureReason::ConnectRefused
    } else {
        FailureReason::Connect
    };
    Fail::new(reason, format!("cannot connect to {tried}"))
}

/// A plain or TLS stream.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// How [`dial`] wraps a connection in TLS.
pub(crate) struct TlsSetup<'a> {
    /// The environment's client config: its trust and client certificate.
    pub config: Arc<ClientConfig>,
    /// SNI and verification name instead of the host.
    pub server_name: Option<&'a str>,
    /// The one ALPN protocol to offer (`h2`, `http/1.1`).
    pub alpn: &'static [u8],
}

/// A connection as [`dial`] made it.
pub(crate) struct Dialed {
    pub io: Box<dyn Io>,
    /// The earliest `notAfter` of the certificates presented, Unix seconds
    /// (`probe_ssl_earliest_cert_expiry`); `None` without TLS.
    pub cert_expiry: Option<i64>,
}

/// [`open`] and, with `tls`, a handshake; each step is lapped on `clock`
/// under the names in `phases` (resolve, connect, tls). A deadline passed
/// while resolving or connecting is `connect_timeout`; during the
/// handshake, `timeout`.
pub(crate) async fn dial(
    host: &Host<String>,
    port: u16,
    tls: Option<TlsSetup<'_>>,
    clock: &mut Clock,
    phases: [&'static str; 3],
) -> Result<Dialed, Fail> {
    let [resolve_phase, connect_phase, tls_phase] = phases;
    // An IPv6 host without its URL brackets, so `open` sees the literal.
    let bare = match host {
        Host::Domain(name) => name.clone(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => ip.to_string(),
    };
    let tcp = open(&bare, port, clock, [resolve_phase, connect_phase]).await?;
    let Some(tls) = tls else {
        return Ok(Dialed {
            io: Box::new(tcp),
            cert_expiry: None,
        });
    };
    let name = match (tls.server_name, host) {
        (Some(name), _) => ServerName::try_from(name.to_owned()),
        (None, Host::Domain(name)) => ServerName::try_from(name.clone()),
        (None, Host::Ipv4(ip)) => Ok(ServerName::from(IpAddr::V4(*ip))),
        (None, Host::Ipv6(ip)) => Ok(ServerName::from(IpAddr::V6(*ip))),
    }
    .map_err(|e| Fail::new(FailureReason::Tls, format!("invalid tls server name: {e}")))?;
    let handshake = tokio_rustls::TlsConnector::from(tls.config)
        .with_alpn(vec![tls.alpn.to_vec()])
        .connect(name, tcp);
    let stream = clock
        .step("tls", tls_phase, handshake)
        .await?
        .map_err(|e| handshake_failed(host, &e))?;
    let cert_expiry = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(super::transport::earliest_expiry);
    Ok(Dialed {
        io: Box::new(stream),
        cert_expiry,
    })
}

/// A handshake that failed in itself (no common version, not TLS, a bad
/// signature or certificate), with `peer` as the run knows it.
pub(crate) fn handshake_failed(peer: impl Display, error: &io::Error) -> Fail {
    Fail::new(
        FailureReason::Tls,
        format!("tls handshake with {peer} failed: {}", describe(error)),
    )
}

/// An error and its sources as one sentence: the outer error alone often
/// says only "connection error", and the cause is what a person can act on.
/// A cause is left out when the sentence already ends with it (errors that
/// print their cause and return it as the source too, like h2's).
pub(crate) fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let more = inner.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = inner.source();
    }
    text
}

/// Aborts a connection task when the run ends, however it ends: hyper and
/// h2 drive a connection on a task of its own, which must not outlive the
/// run (a stalled peer would keep it, and the socket, forever).
pub(crate) struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long a polite close may take at most: the run is already measured,
/// and a peer that never acknowledges must not hold the run up.
const CLOSE_GRACE: Duration = Duration::from_millis(200);

/// Shuts the stream down (TLS: with close_notify), within the deadline, so
/// the target sees a clean goodbye rather than a reset.
pub(crate) async fn close<S: AsyncWrite + Unpin>(mut stream: S, deadline: Instant) {
    let until = deadline.min(Instant::now() + CLOSE_GRACE);
    let _ = tokio::time::timeout_at(until, stream.shutdown()).await;
}

/// Checks a required `address` of the table `table` (`tcp` or `tls`): a
/// template, or a literal `host:port` checked now.
pub(crate) fn address_text(c: &mut Checker<'_>, table: &str, raw: Option<&str>) -> Option<Text> {
    let path = format!("{table}.address");
    let Some(raw) = raw else {
        c.missing(table, "address");
        return None;
    };
    let text = c.text(&path, raw, None)?;
    if text.is_literal() {
        if let Err(msg) = parse_address(text.source()) {
            c.err(&path, msg);
            return None;
        }
    }
    Some(text)
}

/// Splits `host:port` (`[v6]:port` for IPv6) into its host and port.
pub(crate) fn parse_address(address: &str) -> Result<(String, u16), String> {
    let bad =
        |why: &str| format!("expected an address like `db.example:5432`, found `{address}`: {why}");
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, port) = rest
            .split_once("]:")
            .ok_or_else(|| bad("an IPv6 address needs a port after `]:`"))?;
        (host, port)
    } else {
        let (host, port) = address.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        if host.contains(':') {
            return Err(bad("write an IPv6 address in brackets, like `[::1]:443`"));
        }
        (host, port)
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad("no host"));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?;
    Ok((host.to_owned(), port))
}

/// `vars` as expressions see it: the run's variables as strings.
pub(crate) fn vars_value(vars: &BTreeMap<String, String>) -> cel::Value {
    vars.iter()
        .map(|(k, v)| (k.clone(), cel::Value::from(v.clone())))
        .collect::<HashMap<String, cel::Value>>()
        .into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(
            parse_address("db.example:5432").unwrap(),
            ("db.example".to_owned(), 5432)
        );
        assert_eq!(
            parse_address("127.0.0.1:25").unwrap(),
            ("127.0.0.1".to_owned(), 25)
        );
        assert_eq!(parse_address("[::1]:443").unwrap(), ("::1".to_owned(), 443));
        for bad in [
            "db.example",
            ":80",
            "::1:443",
            "h:0",
            "h:70000",
            "h:http",
            "[::1]",
        ] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
        assert!(
            parse_address("db.example")
                .unwrap_err()
                .ends_with("found `db.example`: no port")
        );
    }
}
