//! How a request reaches its target beyond what its environment says: a
//! probe's own `tls = { … }` and `proxy`, for `http` (its `[http]` table),
//! a `flow` (its `[flow]` table: every step inherits it) and the
//! workloads that send them.
//!
//! A probe's `tls` is merged over its environment's key by key (the
//! probe's keys win): `ca_file`, `server_name`, `min_version` and
//! `insecure_skip_verify` each on their own, `client_cert` and
//! `client_key` together. Its files are templates (the sandbox's are only
//! known once it starts: `{{ vars.sandbox_client_cert }}`), relative to
//! the probe file; a literal one is read at load, so a missing file is a
//! load error. A probe's `proxy` replaces its environment's (`proxy =
//! "none"` goes direct whatever the environment says).
//!
//! Every run takes its TLS config through [`crate::net::tls::current`], so
//! a certificate or key rotated on disk is used by the next run without a
//! restart; a file that became unreadable fails the run (reason
//! `request`: synthmon could not carry it out) with the file named.

use super::kind::RunContext;
use crate::config::check::{Checker, ProxyKeys};
use crate::config::raw::RawTls;
use crate::net::proxy::Proxy;
use crate::net::tls::{TlsOptions, TlsVersion};
use crate::net::{Fail, tls};
use crate::outcome::FailureReason;
use crate::tagging::RunIds;
use crate::template::Text;
use rustls::ClientConfig;
use std::path::PathBuf;
use std::sync::Arc;

/// A probe's own `tls` and `proxy`; empty when it sets neither.
#[derive(Debug, Default)]
pub struct Reach {
    /// Boxed: most probes set no `tls`, and every probe holds a `Reach`.
    tls: Option<Box<ProbeTls>>,
    /// Replaces the environment's proxy; a direct one for `"none"`.
    proxy: Option<Arc<Proxy>>,
}

/// The `tls` keys a probe set.
#[derive(Debug, Default)]
struct ProbeTls {
    ca_file: Option<TlsFile>,
    /// `client_cert` and `client_key`, which come together.
    client: Option<(TlsFile, TlsFile)>,
    insecure_skip_verify: Option<bool>,
    server_name: Option<String>,
    min_version: Option<TlsVersion>,
}

/// A file key: a path template, relative to the probe file's directory.
#[derive(Debug)]
struct TlsFile {
    path: Text,
    base_dir: PathBuf,
}

/// What a request of this run is sent with.
pub struct Reached {
    pub tls: Arc<ClientConfig>,
    pub server_name: Option<String>,
    pub proxy: Option<Arc<Proxy>>,
}

impl Reach {
    /// Checks `tls` and the proxy keys of the table at `table` (`http`,
    /// `flow`), every error located.
    pub fn build(
        c: &mut Checker<'_>,
        table: &str,
        tls: Option<&RawTls>,
        proxy: &ProxyKeys<'_>,
    ) -> Reach {
        Reach {
            tls: tls.map(|raw| Box::new(ProbeTls::build(c, &format!("{table}.tls"), raw))),
            proxy: c.proxy(table, proxy),
        }
    }

    /// Whether the probe changes nothing of its environment's.
    pub fn is_empty(&self) -> bool {
        self.tls.is_none() && self.proxy.is_none()
    }

    /// The TLS config, server name and proxy of a request of this run:
    /// the environment's with the probe's over them, the config as its
    /// files are now. A file that cannot be read or used fails the run.
    pub async fn resolve(&self, ctx: &RunContext<'_>) -> Result<Reached, Fail> {
        let options = self.tls_options(ctx)?;
        let config = tls::current(&options)
            .await
            .map_err(|e| Fail::new(FailureReason::Request, format!("cannot set up tls: {e}")))?;
        let proxy = match &self.proxy {
            Some(own) => Some(Arc::clone(own)),
            None => ctx.env.proxy.clone(),
        };
        Ok(Reached {
            tls: config,
            server_name: options.server_name,
            proxy: proxy.filter(|p| !p.is_direct()),
        })
    }

    /// The environment's TLS options with the probe's keys over them, its
    /// file templates rendered for this run.
    fn tls_options(&self, ctx: &RunContext<'_>) -> Result<TlsOptions, Fail> {
        let mut options = ctx.env.tls.clone();
        let Some(own) = &self.tls else {
            return Ok(options);
        };
        // File names read only `vars`; the ids only give them a scope.
        let ids = RunIds::generate();
        let path = |file: &TlsFile, key: &str| {
            file.render(ctx, &ids).map_err(|e| {
                Fail::new(
                    FailureReason::Request,
                    format!("cannot render tls.{key}: {e}"),
                )
            })
        };
        if let Some(file) = &own.ca_file {
            options.ca_file = Some(path(file, "ca_file")?);
        }
        if let Some((cert, key)) = &own.client {
            options.client_cert = Some(path(cert, "client_cert")?);
            options.client_key = Some(path(key, "client_key")?);
        }
        if let Some(skip) = own.insecure_skip_verify {
            options.insecure_skip_verify = skip;
        }
        if let Some(name) = &own.server_name {
            options.server_name = Some(name.clone());
        }
        if let Some(version) = own.min_version {
            options.min_version = Some(version);
        }
        Ok(options)
    }
}

impl ProbeTls {
    fn build(c: &mut Checker<'_>, path: &str, raw: &RawTls) -> ProbeTls {
        let file = |c: &mut Checker<'_>, key: &str, value: Option<&String>| {
            let value = value?;
            TlsFile::build(c, &format!("{path}.{key}"), key, value)
        };
        let ca_file = file(c, "ca_file", raw.ca_file.as_ref());
        let cert = file(c, "client_cert", raw.client_cert.as_ref());
        let key = file(c, "client_key", raw.client_key.as_ref());
        // A certificate goes with its own key: taking the other from the
        // environment would pair two strangers.
        let client = match (raw.client_cert.is_some(), raw.client_key.is_some()) {
            (true, false) | (false, true) => {
                let (set, missing) = if raw.client_cert.is_some() {
                    ("client_cert", "client_key")
                } else {
                    ("client_key", "client_cert")
                };
                c.err(
                    &format!("{path}.{set}"),
                    format!("`{set}` is set without `{missing}`: a probe sets both or neither"),
                );
                None
            }
            _ => cert.zip(key),
        };
        let min_version = raw.min_version.as_deref().and_then(|v| {
            TlsVersion::parse(v)
                .map_err(|msg| c.err(&format!("{path}.min_version"), msg))
                .ok()
        });
        let server_name =
            raw.server_name
                .as_ref()
                .and_then(
                    |name| match rustls_pki_types::ServerName::try_from(name.as_str()) {
                        Ok(_) => Some(name.clone()),
                        Err(_) => {
                            c.err(
                                &format!("{path}.server_name"),
                                format!("expected a DNS name or an IP address, found `{name}`"),
                            );
                            None
                        }
                    },
                );
        if raw.insecure_skip_verify == Some(true) {
            tracing::warn!(
                file = c.doc.file(),
                key = %format!("{path}.insecure_skip_verify"),
                "tls.insecure_skip_verify is on: certificates this probe meets are NOT verified"
            );
        }
        ProbeTls {
            ca_file,
            client,
            insecure_skip_verify: raw.insecure_skip_verify,
            server_name,
            min_version,
        }
    }
}

impl TlsFile {
    /// Checks the file key at `path`: a template; a literal file is read
    /// now (certificates for `ca_file` and `client_cert`, a private key for
    /// `client_key`), so a missing or empty one is a load error.
    fn build(c: &mut Checker<'_>, path: &str, key: &str, raw: &str) -> Option<TlsFile> {
        let text = c.text(path, raw, None)?;
        let file = TlsFile {
            path: text,
            base_dir: c.base_dir().to_path_buf(),
        };
        if file.path.is_literal() {
            let on_disk = file.base_dir.join(file.path.source());
            let read = match key {
                "client_key" => tls::read_key(&on_disk).map(|_| ()),
                _ => tls::read_certs(&on_disk, key).map(|_| ()),
            };
            if let Err(msg) = read {
                c.err(path, msg);
                return None;
            }
        }
        Some(file)
    }

    /// The file for this run.
    fn render(&self, ctx: &RunContext<'_>, ids: &RunIds) -> Result<PathBuf, String> {
        Ok(self.base_dir.join(ctx.render(&self.path, ids)?))
    }
}

/// The environment's strict TLS config as its files are now, for the kinds
/// that take the environment's TLS as it is and dial themselves (gRPC,
/// streams, DNS over TLS and HTTPS, …): a file that cannot be read fails
/// the run, like [`Reach::resolve`].
pub async fn environment_tls(ctx: &RunContext<'_>) -> Result<Arc<ClientConfig>, Fail> {
    tls::current(&ctx.env.tls)
        .await
        .map_err(|e| Fail::new(FailureReason::Request, format!("cannot set up tls: {e}")))
}
