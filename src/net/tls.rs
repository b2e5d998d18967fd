//! TLS for every kind that dials: the one client-config builder, the one
//! trust store cache, the one certificate verifier, and the facts of a
//! handshake.
//!
//! Two ways to shake hands share everything here. A *strict* client
//! ([`client_config`], built once per environment at load) aborts the
//! handshake on a bad certificate, as `http`, `grpc`, `stream` and the others
//! and outgoing notifications do; the failure is classified by
//! [`super::error::classify`]. A *recording* client ([`Client`], one per run,
//! for the `tls` kind and `tcp` with TLS) runs the same webpki checks but
//! records the verdict and lets the handshake finish, so the chain can be
//! described. Either way the verdict is rustls' own error, and
//! [`super::error::cert_failure`] words it: the same fault gets the same
//! reason and sentence whatever the kind.
//!
//! A strict config is built from files (`ca_file`, `client_cert`,
//! `client_key`) that are rotated while synthmon runs, so runs take theirs
//! from [`current`]: a small cache keyed by the options and each file's
//! modification time, length and inode, rebuilt when one of them changed.
//! A file that became unreadable fails the run that needs it, in words.

use super::error::{Fail, handshake_failed};
use crate::outcome::{FailureReason, GaugeSpec};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// TLS settings of an environment (or a probe, or a receiver): trust,
/// client certificate, verification, the lowest version offered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsOptions {
    /// Extra trust anchors (PEM) added to the system roots.
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Skip certificate verification. Logged loudly at load.
    pub insecure_skip_verify: bool,
    /// Name to verify and send as SNI instead of the URL's host.
    pub server_name: Option<String>,
    /// The lowest version offered (default 1.2: rustls speaks 1.2 and 1.3).
    pub min_version: Option<TlsVersion>,
}

/// The lowest TLS version a client offers (`min_version`). rustls speaks
/// no version before 1.2, so these are the only two choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

impl TlsVersion {
    /// `1.2` or `1.3`, as a user writes it.
    pub fn parse(text: &str) -> Result<TlsVersion, String> {
        match text.trim() {
            "1.2" => Ok(TlsVersion::V1_2),
            "1.3" => Ok(TlsVersion::V1_3),
            other => Err(format!(
                "expected `1.2` or `1.3` (the versions rustls speaks), found `{other}`"
            )),
        }
    }

    /// The versions a client with this minimum offers.
    fn offered(
        version: Option<TlsVersion>,
    ) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
        match version {
            Some(TlsVersion::V1_3) => TLS13_ONLY,
            Some(TlsVersion::V1_2) | None => rustls::DEFAULT_VERSIONS,
        }
    }
}

/// Builds the client TLS config: system roots (rustls-native-certs) plus an
/// optional extra CA bundle, optional client cert+key, or a verifier that
/// accepts anything when `insecure_skip_verify`. It reads the files every
/// time: runs take theirs from [`current`], which reads them again only
/// when they changed.
pub fn client_config(opts: &TlsOptions) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(TlsVersion::offered(opts.min_version))
        .map_err(|e| format!("cannot set up tls: {e}"))?;
    let builder = if opts.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier {
                algorithms,
                judging: Judging::AcceptAny,
            }))
    } else {
        builder.with_root_certificates(roots(opts.ca_file.as_deref())?)
    };
    with_client_auth(builder, opts).map(Arc::new)
}

/// What a file was like when it was read: a new modification time,
/// length or inode (a file replaced by a rename) means it changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    inode: u64,
}

/// The stamps of `opts`' files, in the order `ca_file`, `client_cert`,
/// `client_key`; a file that cannot be read is an error naming it.
fn stamps(opts: &TlsOptions) -> Result<Stamps, String> {
    let stamp = |path: Option<&Path>, field: &str| -> Result<Option<Stamp>, String> {
        let Some(path) = path else {
            return Ok(None);
        };
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("cannot read {field} {}: {e}", path.display()))?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Ok(Some(Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode,
        }))
    };
    Ok([
        stamp(opts.ca_file.as_deref(), "ca_file")?,
        stamp(opts.client_cert.as_deref(), "client_cert")?,
        stamp(opts.client_key.as_deref(), "client_key")?,
    ])
}

/// The stamps of a config's files: `ca_file`, `client_cert`, `client_key`.
type Stamps = [Option<Stamp>; 3];

/// A strict config and the stamps of the files it was built from.
struct Built {
    stamps: Stamps,
    config: Arc<ClientConfig>,
}

/// At most this many configs are kept (one per environment and per probe
/// that overrides its `tls`, and the ones a reload left behind); past it
/// the cache starts over, which costs one rebuild each.
const CACHE_MAX: usize = 256;

fn cache() -> std::sync::MutexGuard<'static, HashMap<TlsOptions, Built>> {
    static CACHE: OnceLock<Mutex<HashMap<TlsOptions, Built>>> = OnceLock::new();
    CACHE
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// The strict config for `opts` as its files are now, if it was built
/// from the same files (same stamps) before.
fn cached(opts: &TlsOptions) -> Result<(Option<Arc<ClientConfig>>, Stamps), String> {
    let stamps = stamps(opts)?;
    let hit = cache()
        .get(opts)
        .filter(|b| b.stamps == stamps)
        .map(|b| Arc::clone(&b.config));
    Ok((hit, stamps))
}

/// Builds `opts`' config and keeps it with `stamps`, taken before the
/// files were read: a file written meanwhile is read again next time.
fn build_and_keep(opts: &TlsOptions, stamps: Stamps) -> Result<Arc<ClientConfig>, String> {
    let config = client_config(opts)?;
    let mut cache = cache();
    if cache.len() >= CACHE_MAX && !cache.contains_key(opts) {
        cache.clear();
    }
    cache.insert(
        opts.clone(),
        Built {
            stamps,
            config: Arc::clone(&config),
        },
    );
    Ok(config)
}

/// The strict client config for `opts` with the files as they are now:
/// the one built before when no file changed (a `stat` each), else built
/// anew from the files. Blocking: for load time and the blocking pool.
pub fn current_blocking(opts: &TlsOptions) -> Result<Arc<ClientConfig>, String> {
    match cached(opts)? {
        (Some(config), _) => Ok(config),
        (None, stamps) => build_and_keep(opts, stamps),
    }
}

/// [`current_blocking`] for a run: the files are only `stat`ed on the
/// runtime thread; reading and parsing them (and, the first time, the
/// system's trust store) happens on the blocking pool.
pub async fn current(opts: &TlsOptions) -> Result<Arc<ClientConfig>, String> {
    let (hit, stamps) = cached(opts)?;
    if let Some(config) = hit {
        return Ok(config);
    }
    let opts = opts.clone();
    tokio::task::spawn_blocking(move || build_and_keep(&opts, stamps))
        .await
        .map_err(|e| format!("cannot set up tls: {e}"))?
}

/// Finishes a client config with `opts`' client certificate, if any: the
/// one place both TLS clients (strict and recording) present it.
fn with_client_auth(
    builder: rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>,
    opts: &TlsOptions,
) -> Result<ClientConfig, String> {
    match (&opts.client_cert, &opts.client_key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_certs(cert, "client_cert")?, read_key(key)?)
            .map_err(|e| {
                format!(
                    "client_cert {} and client_key {} cannot be used: {e}",
                    cert.display(),
                    key.display()
                )
            }),
        (Some(_), None) => Err("client_cert is set without client_key".to_owned()),
        (None, Some(_)) => Err("client_key is set without client_cert".to_owned()),
    }
}

/// The system roots plus every certificate in `ca_file`: the one trust
/// store of every TLS client synthmon makes.
pub fn roots(ca_file: Option<&Path>) -> Result<Arc<RootCertStore>, String> {
    let Some(path) = ca_file else {
        return Ok(Arc::clone(system_roots()));
    };
    let mut roots = RootCertStore::clone(system_roots());
    for cert in read_certs(path, "ca_file")? {
        roots.add(cert).map_err(|e| {
            format!(
                "ca_file {} holds an unusable certificate: {e}",
                path.display()
            )
        })?;
    }
    Ok(Arc::new(roots))
}

/// The platform's trust anchors as loaded (DER), once per process because
/// loading them can mean parsing a large file.
fn system_certs() -> &'static [CertificateDer<'static>] {
    static CERTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    CERTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!("cannot load a system root certificate: {error}");
        }
        found.certs
    })
}

/// [`system_certs`] as a rustls trust store, built once.
fn system_roots() -> &'static Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(system_certs().iter().cloned());
        Arc::new(roots)
    })
}

/// The same trust as [`roots`], as certificates, for TLS stacks that take
/// their anchors one by one (lettre's SMTP client builds its own rustls
/// config): the system's plus every certificate in `ca_file`.
pub fn trusted_certificates(
    ca_file: Option<&Path>,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut certs = system_certs().to_vec();
    if let Some(path) = ca_file {
        certs.extend(read_certs(path, "ca_file")?);
    }
    Ok(certs)
}

/// Every certificate in the PEM file at `path`, which must hold at least one.
pub fn read_certs(path: &Path, field: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(field, path, e))?;
    if certs.is_empty() {
        return Err(format!(
            "no certificate found in {field} {}",
            path.display()
        ));
    }
    Ok(certs)
}

/// The first private key in the PEM file at `path`.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error("client_key", path, e))
}

fn pem_error(field: &str, path: &Path, error: pem::Error) -> String {
    let path = path.display();
    match error {
        pem::Error::Io(e) => format!("cannot read {field} {path}: {e}"),
        pem::Error::NoItemsFound if field == "client_key" => {
            format!("no private key found in {field} {path}")
        }
        pem::Error::NoItemsFound => format!("no certificate found in {field} {path}"),
        other => format!("{field} {path} is not valid pem: {other}"),
    }
}

/// The name to verify: `server_name` if set, else the address's host.
pub fn name_for(server_name: Option<&str>, host: &str) -> Result<ServerName<'static>, String> {
    let name = server_name.unwrap_or(host);
    ServerName::try_from(name.to_owned())
        .map_err(|e| format!("`{name}` cannot be a tls server name: {e}"))
}

/// The TLS client of one run: its config and the verifier that records
/// what it found. A fresh one per run, so nothing is resumed and every run
/// sees the full handshake and certificate.
pub struct Client {
    config: Arc<ClientConfig>,
    verifier: Arc<Verifier>,
}

impl Client {
    /// [`Client::new`] on the blocking pool: the first call parses the
    /// system's trust store and every call reads PEM files, which must not
    /// hold up the other runs polled on the same task.
    pub async fn build(ca_file: Option<PathBuf>, env: &TlsOptions) -> Result<Client, String> {
        let env = env.clone();
        tokio::task::spawn_blocking(move || Client::new(ca_file.as_deref(), &env))
            .await
            .map_err(|e| format!("cannot set up tls: {e}"))?
    }

    /// Trusts the system roots plus `ca_file`, or else the environment's
    /// `ca_file`; presents the environment's client certificate, if any.
    pub fn new(ca_file: Option<&Path>, env: &TlsOptions) -> Result<Client, String> {
        let roots = roots(ca_file.or(env.ca_file.as_deref()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(Verifier {
            algorithms: provider.signature_verification_algorithms,
            judging: Judging::Record {
                roots,
                verdict: Mutex::new(None),
            },
        });
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(TlsVersion::offered(env.min_version))
            .map_err(|e| format!("cannot set up tls: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone());
        Ok(Client {
            config: Arc::new(with_client_auth(builder, env)?),
            verifier,
        })
    }
}

/// The one certificate verifier of synthmon's own (the strict clients use
/// rustls' webpki verifier, which gives the same verdicts). It either
/// judges the server's certificate like rustls' own (webpki chain to a
/// trust anchor, then the name) but records the verdict and lets the
/// handshake go on, so a bad certificate can be described; or, for
/// `insecure_skip_verify`, accepts any. Handshake signatures are verified
/// against the presented key either way, so the session keys are bound to
/// it.
#[derive(Debug)]
struct Verifier {
    algorithms: WebPkiSupportedAlgorithms,
    judging: Judging,
}

/// What [`Verifier`] does with the certificate itself.
#[derive(Debug)]
enum Judging {
    /// `insecure_skip_verify`: nothing.
    AcceptAny,
    /// Judge against `roots` and keep the verdict for [`Client`].
    Record {
        roots: Arc<RootCertStore>,
        verdict: Mutex<Option<Verdict>>,
    },
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

impl Verifier {
    fn judge(
        &self,
        roots: &RootCertStore,
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
                roots,
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

    /// The last verdict recorded (none when accepting any).
    fn take(&self) -> Option<Verdict> {
        match &self.judging {
            Judging::AcceptAny => None,
            Judging::Record { verdict, .. } => verdict
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        }
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

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Judging::Record { roots, verdict } = &self.judging {
            let judged = self.judge(roots, end_entity, intermediates, server_name, now);
            *verdict.lock().unwrap_or_else(PoisonError::into_inner) = Some(judged);
        }
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
pub async fn handshake(
    tcp: TcpStream,
    name: ServerName<'static>,
    client: &Client,
) -> Result<(TlsStream<TcpStream>, TlsInfo), Fail> {
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&client.config));
    let stream = connector
        .connect(name.clone(), tcp)
        .await
        .map_err(|e| handshake_failed(name.to_str(), &e))?;
    let info = TlsInfo::new(stream.get_ref().1, &name, client.verifier.take());
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
    pub fn failure(&self) -> Option<(FailureReason, String)> {
        let error = self.verdict.as_ref()?;
        Some(super::error::cert_failure(&self.server_name, error))
    }

    /// `tls` as expressions see it.
    pub fn value(&self) -> cel::Value {
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
    pub fn gauges(&self) -> Vec<(&'static str, f64)> {
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
/// The earliest `notAfter` among `chain`, as Unix seconds; certificates that
/// do not parse are skipped.
pub fn earliest_expiry(chain: &[CertificateDer<'_>]) -> Option<i64> {
    chain
        .iter()
        .filter_map(|der| x509_parser::parse_x509_certificate(der).ok())
        .map(|(_, cert)| cert.validity().not_after.timestamp())
        .min()
}

/// The gauges [`TlsInfo::gauges`] exports, for the kinds that report a
/// handshake's facts (`tls`, `tcp` with TLS).
pub const GAUGES: &[GaugeSpec] = &[
    GaugeSpec {
        name: "probe_tls_verified",
        seconds: false,
        help: "Whether the peer's certificate chain and host name verified (1) or not (0).",
    },
    GaugeSpec {
        name: "probe_tls_version",
        seconds: false,
        help: "TLS version of the last handshake (1.2 or 1.3).",
    },
];

/// The types of the `tls` facts ([`TlsInfo::value`]) for expressions, for
/// the kinds that put them in scope.
pub const EXPR_TYPES: crate::expr::Types<'static> = &[
    ("tls.days_left", crate::expr::Type::Number),
    ("tls.chain_length", crate::expr::Type::Number),
    ("tls.earliest_cert_expiry", crate::expr::Type::Timestamp),
    ("tls.not_before", crate::expr::Type::Timestamp),
    ("tls.not_after", crate::expr::Type::Timestamp),
    ("tls.version", crate::expr::Type::String),
    ("tls.cipher", crate::expr::Type::String),
    ("tls.server_name", crate::expr::Type::String),
    ("tls.subject", crate::expr::Type::String),
    ("tls.issuer", crate::expr::Type::String),
    ("tls.verify_error", crate::expr::Type::String),
    ("tls.verified", crate::expr::Type::Bool),
    ("tls.trusted", crate::expr::Type::Bool),
    ("tls.hostname_ok", crate::expr::Type::Bool),
    ("tls.expired", crate::expr::Type::Bool),
];
