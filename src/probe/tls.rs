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
//! The handshake itself, the recording verifier and the facts of the chain
//! are the net layer's ([`crate::net::tls`]), shared with `tcp` and worded
//! like every other kind's certificate failures.

use super::kind::{Assertion, BuildInput, Kind, KindEntry, RunContext, RunFuture};
use crate::config::check::Checker;
use crate::expr::Facts;
use crate::expr::Scope;
use crate::net::tls::{Client, TlsInfo, handshake, name_for, read_certs};
use crate::net::{self, Clock, Fail};
use crate::outcome::{Details, FailureReason, KindFacts, Outcome};
use crate::tagging::RunIds;
use crate::template::Text;
use rustls_pki_types::ServerName;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The variables a `tls` expectation can read.
pub const SCOPE: Scope<'static> = Scope {
    names: &["tls", "timings", "vars"],
    types: &[crate::net::tls::EXPR_TYPES],
};

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
    let address = super::kind::address_text(c, "tls", raw.address.as_deref());
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

/// The strict client config of a kind that aborts on a bad certificate
/// (`dns` over TLS or HTTPS): the environment's, or, with `ca_file`, the
/// same settings trusting the system roots plus that file instead of the
/// environment's `ca_file` (as [`Client::new`] does), from
/// [`crate::net::tls::current`]: rebuilt, on the blocking pool, only when a
/// file changed.
pub(crate) async fn strict_config(
    ca_file: Option<&CaFile>,
    ctx: &RunContext<'_>,
    ids: &RunIds,
) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    // The files as they are now: changed ones are read again.
    let Some(file) = ca_file else {
        return crate::net::tls::current(&ctx.env.tls).await;
    };
    let options = crate::net::tls::TlsOptions {
        ca_file: Some(file.path(ctx, ids)?),
        ..ctx.env.tls.clone()
    };
    crate::net::tls::current(&options).await
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
            f.set("vars", super::kind::vars_value(ctx.vars));
            ctx.check_expectations(&mut outcome, &spec.expect, f);
        }
    }
    outcome.details = Some(Details::new(facts));
    super::kind::finish(&mut outcome);
    super::kind::redact(outcome, ctx.redactor)
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

/// The registry's line for `[tls]`.
pub const KIND: KindEntry = KindEntry {
    name: "tls",
    build: build_kind,
    gauges: crate::net::tls::GAUGES,
};

fn build_kind(c: &mut Checker<'_>, _: &BuildInput<'_>) -> Option<Box<dyn Kind>> {
    let raw: RawTls = c.table("tls")?;
    build(raw, c).map(|spec| Box::new(spec) as Box<dyn Kind>)
}

impl Kind for TlsSpec {
    fn name(&self) -> &'static str {
        "tls"
    }

    fn run<'a>(&'a self, ctx: &'a RunContext<'_>) -> RunFuture<'a> {
        Box::pin(run(self, ctx))
    }

    fn scope(&self) -> Option<crate::expr::Scope<'static>> {
        Some(SCOPE)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl KindFacts for TlsFacts {
    fn gauges(&self) -> Vec<(&'static str, f64)> {
        TlsFacts::gauges(self)
    }
    fn cert_expiry(&self) -> Option<i64> {
        TlsFacts::cert_expiry(self)
    }
}
