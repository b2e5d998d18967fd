//! The `tls` probe: a TLS handshake: chain and hostname validity, days until
//! the earliest certificate expires.
//!
//! Unlike the `http` probe, which can only say that a handshake failed, a
//! `tls` probe reports on a bad certificate. Its verifier *records* the
//! verdict (expired, wrong host, untrusted) instead of aborting, so the
//! handshake completes and the facts of the chain (days left, subject,
//! names) are known either way. The run then fails with the precise reason
//! (`cert_expired`, `cert_hostname`, `cert_untrusted`) unless
//! `allow_invalid = true` leaves the judgement to `expect` (`tls.verified`,
//! `tls.hostname_ok`, `tls.trusted`, `tls.expired`). Nothing is sent over
//! the connection: it is closed with close_notify right after the handshake.
//! Handshake signatures are always checked, so the facts belong to whoever
//! holds the certificate's key.
//!
//! Trust is the system's roots plus `ca_file` (else the environment's
//! `ca_file`); the environment's client certificate is presented. An
//! environment with `insecure_skip_verify` acts as `allow_invalid`; its
//! `server_name` belongs to its base URL and does not apply here.
//!
//! An expiry that warns ahead is an expectation, `tls.days_left > 14`,
//! rather than a key of its own: one language for every check, and the
//! failure shows the number of days.
//!
//! This file also owns the TLS inspection the `tcp` probe shares: the
//! per-run client with its recording verifier ([`Client`]), the handshake
//! ([`handshake`]), the facts ([`TlsInfo`]) and the verdict
//! ([`TlsInfo::failure`]).

use super::net::{self, Clock, Fail};
use super::{Assertion, RunContext};
use crate::config::TlsOptions;
use crate::config::build::Checker;
use crate::expr::Facts;
use crate::outcome::{Details, FailureReason, Outcome};
use crate::tagging::RunIds;
use crate::template::Text;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The variables a `tls` expectation can read.
pub const SCOPE: &[&str] = &["tls", "timings", "vars"];

/// The `[tls]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// `host:port` (`[::1]:443` for IPv6); a template.
    pub address: Option<String>,
    /// The name to verify and send as SNI (default: the host).
    pub server_name: Option<String>,
    /// Extra trust anchors (PEM) instead of the environment's; a template.
    pub ca_file: Option<String>,
    /// Report a bad certificate without failing on it; `expect` judges.
    pub allow_invalid: Option<bool>,
    #[serde(default)]
    pub expect: Vec<String>,
}

/// The checked `[tls]` table.
#[derive(Debug)]
pub struct TlsSpec {
    pub address: Text,
    pub server_name: Option<String>,
    pub ca_file: Option<CaFile>,
    pub allow_invalid: bool,
    pub expect: Vec<Assertion>,
}

/// What a `tls` run saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TlsFacts {
    /// The address as rendered for this run.
    pub address: String,
    /// The handshake's facts, once it completed.
    #[serde(flatten)]
    pub tls: Option<TlsInfo>,
}

impl TlsFacts {
    /// Gauges for /metrics, labelled with probe and environment.
    pub fn gauges(&self) -> Vec<(&'static str, f64)> {
        self.tls.as_ref().map(TlsInfo::gauges).unwrap_or_default()
    }

    /// Earliest `notAfter` of the peer's certificates, Unix seconds.
    pub fn cert_expiry(&self) -> Option<i64> {
        self.tls.as_ref().and_then(|t| t.earliest_cert_expiry)
    }
}

/// Checks the raw table; problems are recorded on `c` at `tls.…` paths.
pub(crate) fn build(raw: RawTls, c: &mut Checker<'_>) -> Option<TlsSpec> {
    let errors = c.error_count();
    let address = net::address_text(c, "tls", raw.address.as_deref());
    let server_name = server_name(c, "tls.server_name", raw.server_name);
    let ca_file = raw
        .ca_file
        .as_deref()
        .and_then(|f| CaFile::build(c, "tls.ca_file", f));
    let expect = c.expectations("tls", &raw.expect, SCOPE);
    if c.error_count() > errors {
        return None;
    }
    Some(TlsSpec {
        address: address?,
        server_name,
        ca_file,
        allow_invalid: raw.allow_invalid.unwrap_or(false),
        expect,
    })
}

/// Checks a `server_name` key: a DNS name or an IP address.
pub(crate) fn server_name(c: &mut Checker<'_>, path: &str, raw: Option<String>) -> Option<String> {
    let raw = raw?;
    match ServerName::try_from(raw.as_str()) {
        Ok(_) => Some(raw),
        Err(_) => {
            c.err(
                path,
                format!("expected a DNS name or an IP address, found `{raw}`"),
            );
            None
        }
    }
}

/// A `ca_file` key: a path, possibly a template (the sandbox's CA file is
/// only known once it starts), relative to the probe file's directory.
#[derive(Debug)]
pub struct CaFile {
    path: Text,
    base_dir: PathBuf,
}

impl CaFile {
    /// Checks the key at `path`; a literal file is read now, so a missing
    /// or empty bundle is a load error.
    pub(crate) fn build(c: &mut Checker<'_>, path: &str, raw: &str) -> Option<CaFile> {
        let text = c.text(path, raw, None)?;
        let file = CaFile {
            path: text,
            base_dir: c.base_dir().to_path_buf(),
        };
        if file.path.is_literal() {
            if let Err(msg) = read_certs(&file.base_dir.join(file.path.source()), "ca_file") {
                c.err(path, msg);
                return None;
            }
        }
        Some(file)
    }

    /// The file for this run.
    pub(crate) fn path(&self, ctx: &RunContext<'_>, ids: &RunIds) -> Result<PathBuf, String> {
        let rendered = ctx
            .render(&self.path, ids)
            .map_err(|e| format!("cannot render ca_file: {e}"))?;
        Ok(self.base_dir.join(rendered))
    }
}

/// Every certificate in the PEM file at `path` (the value of `field`),
/// which must hold one.
fn read_certs(path: &Path, field: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| match e {
            rustls_pki_types::pem::Error::Io(e) => format!("cannot read {field} {shown}: {e}"),
            other => format!("{field} {shown} is not valid pem: {other}"),
        })?;
    if certs.is_empty() {
        return Err(format!("no certificate found in {field} {shown}"));
    }
    Ok(certs)
}

/// The name to verify: `server_name` if set, else the address's host.
pub(crate) fn name_for(
    server_name: Option<&str>,
    host: &str,
) -> Result<ServerName<'static>, String> {
    let name = server_name.unwrap_or(host);
    ServerName::try_from(name.to_owned())
        .map_err(|e| format!("`{name}` cannot be a tls server name: {e}"))
}

pub async fn run(spec: &TlsSpec, ctx: &RunContext<'_>) -> Outcome {
    let ids = RunIds::generate();
    let mut outcome = Outcome::new(&ctx.probe.name, &ctx.env.name, "tls", &ids);
    let mut facts = TlsFacts::default();
    let mut clock = Clock::new(ctx.deadline(), &[]);
    let result = inspect(spec, ctx, &ids, &mut clock, &mut facts).await;
    clock.record(&mut outcome);
    ctx.redactor.scrub(&mut facts.address);
    match result {
        Err(fail) => outcome.fail(fail.reason, fail.message),
        Ok(()) => {
            outcome.responded = true;
            let allowed = spec.allow_invalid || ctx.env.tls.insecure_skip_verify;
            if let Some((reason, message)) = facts.tls.as_ref().and_then(TlsInfo::failure) {
                if !allowed {
                    outcome.fail(reason, message);
                }
            }
            // Checked even after a certificate failure: a report that also
            // says `days_left` is under 14 tells more.
            let mut f = Facts::default();
            f.set(
                "tls",
                facts.tls.as_ref().map_or(cel::Value::Null, TlsInfo::value),
            );
            f.set("timings", clock.timings());
            f.set("vars", net::vars_value(ctx.vars));
            super::check_expectations(&mut outcome, &spec.expect, &f);
        }
    }
    outcome.details = Some(Details::Tls(facts));
    super::finish(&mut outcome);
    super::redact(outcome, ctx.redactor)
}

/// Resolve, connect and handshake; the facts land in `facts.tls`.
async fn inspect(
    spec: &TlsSpec,
    ctx: &RunContext<'_>,
    ids: &RunIds,
    clock: &mut Clock,
    facts: &mut TlsFacts,
) -> Result<(), Fail> {
    let request = |e: String| Fail::new(FailureReason::Request, e);
    facts.address = ctx
        .render(&spec.address, ids)
        .map_err(|e| request(format!("cannot render tls.address: {e}")))?;
    let (host, port) = net::parse_address(&facts.address).map_err(request)?;
    let ca = spec
        .ca_file
        .as_ref()
        .map(|f| f.path(ctx, ids))
        .transpose()
        .map_err(request)?;
    let client = Client::build(ca, &ctx.env.tls).await.map_err(request)?;
    let name = name_for(spec.server_name.as_deref(), &host).map_err(request)?;
    clock.begin();
    let stream = net::open(&host, port, clock, ["resolve", "connect"]).await?;
    let (stream, info) = clock
        .phase("tls", handshake(stream, name, &client))
        .await??;
    facts.tls = Some(info);
    net::close(stream, clock.deadline()).await;
    Ok(())
}

/// The TLS client of one run: its config and the verifier that records
/// what it found. A fresh one per run, so nothing is resumed and every run
/// sees the full handshake and certificate.
pub(crate) struct Client {
    config: Arc<ClientConfig>,
    recorder: Arc<Recorder>,
}

impl Client {
    /// [`Client::new`] on the blocking pool: the first call parses the
    /// system's trust store and every call reads PEM files, which must not
    /// hold up the other runs polled on the same task.
    pub(crate) async fn build(
        ca_file: Option<PathBuf>,
        env: &TlsOptions,
    ) -> Result<Client, String> {
        let env = env.clone();
        tokio::task::spawn_blocking(move || Client::new(ca_file.as_deref(), &env))
            .await
            .map_err(|e| format!("cannot set up tls: {e}"))?
    }

    /// Trusts the system roots plus `ca_file`, or else the environment's
    /// `ca_file`; presents the environment's client certificate, if any.
    pub(crate) fn new(ca_file: Option<&Path>, env: &TlsOptions) -> Result<Client, String> {
        let roots = match ca_file.or(env.ca_file.as_deref()) {
            None => Arc::clone(system_roots()),
            Some(path) => {
                let mut roots = RootCertStore::clone(system_roots());
                for cert in read_certs(path, "ca_file")? {
                    roots.add(cert).map_err(|e| {
                        format!(
                            "ca_file {} holds an unusable certificate: {e}",
                            path.display()
                        )
                    })?;
                }
                Arc::new(roots)
            }
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let recorder = Arc::new(Recorder {
            roots,
            algorithms: provider.signature_verification_algorithms,
            verdict: Mutex::new(None),
        });
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up tls: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(recorder.clone());
        let config = match (&env.client_cert, &env.client_key) {
            (Some(cert), Some(key)) => {
                let certs = read_certs(cert, "client_cert")?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("cannot read client_key {}: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| format!("the client certificate cannot be used: {e}"))?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Client {
            config: Arc::new(config),
            recorder,
        })
    }
}

/// The platform's trust anchors, parsed once per process.
fn system_roots() -> &'static Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!("cannot load a system root certificate: {error}");
        }
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(found.certs);
        Arc::new(roots)
    })
}

/// A verifier that judges the server's certificate like rustls' own
/// (webpki chain to a trust anchor, then the name) but records the verdict
/// and lets the handshake go on, so a bad certificate can be described.
/// Handshake signatures are still verified, against the presented key.
#[derive(Debug)]
struct Recorder {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
    verdict: Mutex<Option<Verdict>>,
}

/// What the verifier found.
#[derive(Clone, Debug)]
struct Verdict {
    /// rustls' own answer: the chain's problem first, then the name's.
    result: Result<(), rustls::Error>,
    /// The chain leads to a trust anchor, times aside.
    trusted: bool,
    /// The leaf names the server name.
    hostname_ok: bool,
}

impl Recorder {
    fn judge(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Verdict {
        let leaf = match ParsedCertificate::try_from(end_entity) {
            Ok(leaf) => leaf,
            Err(e) => {
                return Verdict {
                    result: Err(e),
                    trusted: false,
                    hostname_ok: false,
                };
            }
        };
        let chain_at = |at: UnixTime| {
            verify_server_cert_signed_by_trust_anchor(
                &leaf,
                &self.roots,
                intermediates,
                at,
                self.algorithms.all,
            )
        };
        let chain = chain_at(now);
        // A chain that fails only on time still leads to a trusted root:
        // check again at an instant when every presented certificate was
        // valid, so `trusted` and `expired` are separate facts.
        let trusted = chain.is_ok()
            || validity_overlap(end_entity, intermediates).is_some_and(|at| chain_at(at).is_ok());
        let name = verify_server_name(&leaf, server_name);
        Verdict {
            hostname_ok: name.is_ok(),
            result: chain.and(name),
            trusted,
        }
    }

    fn take(&self) -> Option<Verdict> {
        self.verdict
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// The middle of the time every certificate in the chain was valid, if
/// there is such a time.
fn validity_overlap(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Option<UnixTime> {
    let mut from = i64::MIN;
    let mut until = i64::MAX;
    for der in std::iter::once(end_entity).chain(intermediates) {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        from = from.max(cert.validity().not_before.timestamp());
        until = until.min(cert.validity().not_after.timestamp());
    }
    let middle = from.checked_add(until.checked_sub(from)? / 2)?;
    (from <= until && middle >= 0)
        .then(|| UnixTime::since_unix_epoch(Duration::from_secs(middle.unsigned_abs())))
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.judge(end_entity, intermediates, server_name, now);
        *self.verdict.lock().unwrap_or_else(PoisonError::into_inner) = Some(verdict);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The handshake on `tcp` as `name`, with `client`'s recording verifier;
/// fails only when the handshake itself does (no common version, not TLS,
/// a bad signature), never on the certificate's verdict.
pub(crate) async fn handshake(
    tcp: TcpStream,
    name: ServerName<'static>,
    client: &Client,
) -> Result<(TlsStream<TcpStream>, TlsInfo), Fail> {
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&client.config));
    let stream = connector
        .connect(name.clone(), tcp)
        .await
        .map_err(|e| net::handshake_failed(name.to_str(), &e))?;
    let info = TlsInfo::new(stream.get_ref().1, &name, client.recorder.take());
    Ok((stream, info))
}

/// What a handshake showed: the session, the leaf certificate, the chain's
/// earliest expiry and the verifier's verdict.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
    /// The IANA name, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// The name verified (and sent as SNI when it is not an IP address).
    pub server_name: String,
    /// The leaf's subject and issuer, e.g. `CN=localhost`.
    pub subject: String,
    pub issuer: String,
    /// The leaf's DNS names and IP addresses.
    pub sans: Vec<String>,
    #[serde(serialize_with = "ser_time")]
    pub not_before: Option<i64>,
    #[serde(serialize_with = "ser_time")]
    pub not_after: Option<i64>,
    /// Earliest `notAfter` of the presented chain, Unix seconds (kept as a
    /// number: it is blackbox_exporter's `probe_ssl_earliest_cert_expiry`).
    pub earliest_cert_expiry: Option<i64>,
    /// Days until `earliest_cert_expiry` (negative once expired).
    pub days_left: Option<f64>,
    /// Certificates the server presented.
    pub chain_length: usize,
    /// Everything checked out: trusted, in its validity period, right name.
    pub verified: bool,
    /// The chain leads to a trusted root (times aside).
    pub trusted: bool,
    /// The leaf names `server_name`.
    pub hostname_ok: bool,
    /// A presented certificate is past its `notAfter`.
    pub expired: bool,
    /// Why verification failed, as rustls says it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_error: Option<String>,
    #[serde(skip)]
    verdict: Option<rustls::Error>,
}

fn ser_time<S: serde::Serializer>(t: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match t.and_then(|t| chrono::DateTime::from_timestamp(t, 0)) {
        Some(t) => s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        None => s.serialize_none(),
    }
}

impl TlsInfo {
    fn new(
        conn: &rustls::ClientConnection,
        name: &ServerName<'_>,
        verdict: Option<Verdict>,
    ) -> TlsInfo {
        let chain = conn.peer_certificates().unwrap_or_default();
        let parsed: Vec<_> = chain
            .iter()
            .filter_map(|der| x509_parser::parse_x509_certificate(der).ok())
            .map(|(_, cert)| cert)
            .collect();
        let now = chrono::Utc::now().timestamp();
        let earliest = parsed
            .iter()
            .map(|c| c.validity().not_after.timestamp())
            .min();
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
            Some(other) => format!("{other:?}"),
            None => String::new(),
        };
        let cipher = conn
            .negotiated_cipher_suite()
            .map(|s| {
                let suite = s.suite();
                suite
                    .as_str()
                    .map_or_else(|| format!("{suite:?}"), str::to_owned)
            })
            .unwrap_or_default();
        let verdict = verdict.unwrap_or(Verdict {
            result: Err(rustls::Error::General(
                "the certificate was not verified".to_owned(),
            )),
            trusted: false,
            hostname_ok: false,
        });
        let mut info = TlsInfo {
            version,
            cipher,
            server_name: name.to_str().into_owned(),
            earliest_cert_expiry: earliest,
            days_left: earliest.map(|e| (e - now) as f64 / 86_400.0),
            chain_length: chain.len(),
            verified: verdict.result.is_ok(),
            trusted: verdict.trusted,
            hostname_ok: verdict.hostname_ok,
            expired: earliest.is_some_and(|e| e < now),
            verify_error: verdict.result.as_ref().err().map(ToString::to_string),
            verdict: verdict.result.err(),
            ..TlsInfo::default()
        };
        if let Some(leaf) = parsed.first() {
            info.subject = leaf.subject().to_string();
            info.issuer = leaf.issuer().to_string();
            info.not_before = Some(leaf.validity().not_before.timestamp());
            info.not_after = Some(leaf.validity().not_after.timestamp());
            if let Ok(Some(san)) = leaf.subject_alternative_name() {
                info.sans = san
                    .value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
                        x509_parser::extensions::GeneralName::IPAddress(ip) => ip_text(ip),
                        _ => None,
                    })
                    .collect();
            }
        }
        info
    }

    /// The reason and message a run fails with when the certificate did not
    /// verify; `None` when it did.
    pub(crate) fn failure(&self) -> Option<(FailureReason, String)> {
        let error = self.verdict.as_ref()?;
        let name = &self.server_name;
        let day = |t: Option<i64>| {
            t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                .map_or_else(String::new, |t| {
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                })
        };
        let rustls::Error::InvalidCertificate(cert) = error else {
            return Some((
                FailureReason::Tls,
                format!("the certificate of {name} cannot be used: {error}"),
            ));
        };
        Some(match cert {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                let ago = self.days_left.map_or(0.0, |d| -d);
                (
                    FailureReason::CertExpired,
                    format!(
                        "the certificate of {name} expired {ago:.1} days ago (notAfter {})",
                        day(self.earliest_cert_expiry)
                    ),
                )
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => (
                FailureReason::CertExpired,
                format!(
                    "the certificate of {name} is not valid yet (notBefore {})",
                    day(self.not_before)
                ),
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                (
                    FailureReason::CertHostname,
                    format!(
                        "the certificate is not valid for {name}: it names {}",
                        if self.sans.is_empty() {
                            format!("no host (subject {})", self.subject)
                        } else {
                            self.sans.join(", ")
                        }
                    ),
                )
            }
            CertificateError::UnknownIssuer => (
                FailureReason::CertUntrusted,
                format!(
                    "the certificate of {name} is not trusted: its issuer `{}` is not a trusted root (set ca_file to trust it)",
                    self.issuer
                ),
            ),
            CertificateError::BadSignature
            | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
            | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. }
            | CertificateError::InvalidPurpose
            | CertificateError::InvalidPurposeContext { .. }
            | CertificateError::Revoked
            | CertificateError::UnhandledCriticalExtension => (
                FailureReason::CertUntrusted,
                format!("the certificate of {name} is not trusted: {error}"),
            ),
            _ => (
                FailureReason::Tls,
                format!("the certificate of {name} cannot be used: {error}"),
            ),
        })
    }

    /// `tls` as expressions see it.
    pub(crate) fn value(&self) -> cel::Value {
        let time = |t: Option<i64>| {
            t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                .map_or(cel::Value::Null, |t| {
                    cel::Value::Timestamp(t.fixed_offset())
                })
        };
        let mut m: HashMap<String, cel::Value> = HashMap::new();
        let mut put = |k: &str, v: cel::Value| {
            m.insert(k.to_owned(), v);
        };
        put("version", self.version.clone().into());
        put("cipher", self.cipher.clone().into());
        put("server_name", self.server_name.clone().into());
        put("subject", self.subject.clone().into());
        put("issuer", self.issuer.clone().into());
        put("sans", self.sans.clone().into());
        put("not_before", time(self.not_before));
        put("not_after", time(self.not_after));
        put("earliest_cert_expiry", time(self.earliest_cert_expiry));
        put(
            "days_left",
            self.days_left.map_or(cel::Value::Null, cel::Value::Float),
        );
        put(
            "chain_length",
            cel::Value::Int(i64::try_from(self.chain_length).unwrap_or(i64::MAX)),
        );
        put("verified", self.verified.into());
        put("trusted", self.trusted.into());
        put("hostname_ok", self.hostname_ok.into());
        put("expired", self.expired.into());
        put(
            "verify_error",
            self.verify_error.clone().unwrap_or_default().into(),
        );
        m.into()
    }

    /// `probe_tls_verified` and `probe_tls_version` (1.2 or 1.3;
    /// blackbox_exporter has it as an info label, which a gauge labelled
    /// only by probe and environment cannot carry). Days left are
    /// `probe_ssl_earliest_cert_expiry - time()` in PromQL: Prometheus
    /// wants base units, so no gauge counts days.
    pub(crate) fn gauges(&self) -> Vec<(&'static str, f64)> {
        let mut out = Vec::new();
        out.push(("probe_tls_verified", if self.verified { 1.0 } else { 0.0 }));
        match self.version.as_str() {
            "TLSv1.3" => out.push(("probe_tls_version", 1.3)),
            "TLSv1.2" => out.push(("probe_tls_version", 1.2)),
            _ => {}
        }
        out
    }
}

/// An IP address SAN as text (4 or 16 bytes).
fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| std::net::IpAddr::from(b).to_string()),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| std::net::IpAddr::from(b).to_string()),
        _ => None,
    }
}
