//! The `tcp` probe: connect to a host:port, optionally over TLS, optionally
//! send a line and expect a reply (banner check).
//!
//! A run is four contiguous phases: `resolve` (zero for an IP literal),
//! `connect`, `tls` (with `tls = true`) and `exchange` (reading the banner,
//! writing `send`, reading the response), all under the probe's one
//! deadline. The phases end at real instants, so they add up to the run's
//! duration exactly; closing the connection afterwards is not measured.
//!
//! Reads are bounded by `max_read_size` (default 4 KiB, at most 64 KiB): a
//! peer that streams bytes without ever ending a line fails the run with
//! reason `protocol` once that much has arrived, whatever the deadline. With
//! `tls = true` the certificate is checked as the `tls` probe checks it
//! (see [`super::tls`]), and a bad one fails the run with its precise reason
//! before anything is sent.
//!
//! Parsing `host:port`, connecting with phase timings and closing are
//! [`super::net`]'s, shared with `tls`; the certificate checks are
//! [`super::tls`]'s.

use super::kind::address_text;
use super::kind::{Assertion, BuildInput, Kind, KindEntry, RunContext, RunFuture};
use super::tls::{self as tls_probe, CaFile};
use crate::config::check::Checker;
use crate::config::raw::RawSize;
use crate::expr::Facts;
use crate::expr::{Scope, Type, Types};
use crate::net::tls::TlsInfo;
use crate::net::{self, Clock, Fail, close, parse_address};
use crate::outcome::{Details, FailureReason, KindFacts, Outcome};
use crate::tagging::RunIds;
use crate::template::Text;
use serde::{Deserialize, Serialize};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The variables a `tcp` expectation can read.
pub const SCOPE: Scope<'static> = Scope {
    names: &["connected", "banner", "response", "timings", "tls", "vars"],
    types: &[TYPES, crate::net::tls::EXPR_TYPES],
};

/// The types of what this kind puts in scope, so `synthmon check` catches
/// a literal of another type compared with them.
const TYPES: Types<'static> = &[
    ("connected", Type::Bool),
    ("banner", Type::String),
    ("response", Type::String),
];

/// What one read may hold when `max_read_size` is not set.
pub const DEFAULT_MAX_READ: u64 = 4 * 1024;
/// The largest `max_read_size`: a banner check reads lines, not files.
pub const MAX_READ_LIMIT: u64 = 64 * 1024;

/// The `[tcp]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTcp {
    /// `host:port` (`[::1]:25` for IPv6); a template.
    pub address: Option<String>,
    /// Speak TLS after connecting.
    pub tls: Option<bool>,
    /// TLS only: the name to verify and send as SNI (default: the host).
    pub server_name: Option<String>,
    /// TLS only: extra trust anchors (PEM); a template.
    pub ca_file: Option<String>,
    /// TLS only: go on with the exchange even if the certificate is bad.
    pub insecure_skip_verify: Option<bool>,
    /// Read one line the server sends first (SMTP, FTP, SSH greetings).
    pub banner: Option<bool>,
    /// Text to write after the banner; a template.
    pub send: Option<String>,
    /// What to read after sending: `line`, `close` or `none`.
    pub read: Option<String>,
    /// Cap on each read, bytes or a size like "4 KiB".
    pub max_read_size: Option<RawSize>,
    #[serde(default)]
    pub expect: Vec<String>,
}

/// How the response is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Nothing is read after sending.
    None,
    /// One line, up to `\n` (a `\r` before it is dropped too).
    Line,
    /// Everything until the peer closes the connection.
    Close,
}

/// The checked `[tcp]` table.
#[derive(Debug)]
pub struct TcpSpec {
    pub address: Text,
    pub tls: Option<TlsSettings>,
    pub banner: bool,
    pub send: Option<Text>,
    pub read: ReadMode,
    pub max_read: usize,
    pub expect: Vec<Assertion>,
}

/// The TLS part of a `tcp` probe.
#[derive(Debug)]
pub struct TlsSettings {
    pub server_name: Option<String>,
    pub ca_file: Option<CaFile>,
    /// Certificate problems are reported in `tls.*` but do not fail the run.
    pub insecure_skip_verify: bool,
}

/// What a `tcp` run saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TcpFacts {
    /// The address as rendered for this run.
    pub address: String,
    pub connected: bool,
    /// The handshake's facts, with `tls = true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    /// The banner line, without its line end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub banner: Option<String>,
    /// The response: a line without its line end, or all that arrived
    /// before the peer closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    pub bytes_sent: u64,
    pub bytes_read: u64,
}

impl TcpFacts {
    /// Gauges for /metrics, labelled with probe and environment.
    pub fn gauges(&self) -> Vec<(&'static str, f64)> {
        self.tls.as_ref().map(TlsInfo::gauges).unwrap_or_default()
    }

    /// Earliest `notAfter` of the peer's certificates, Unix seconds.
    pub fn cert_expiry(&self) -> Option<i64> {
        self.tls.as_ref().and_then(|t| t.earliest_cert_expiry)
    }
}

/// Checks the raw table; problems are recorded on `c` at `tcp.…` paths.
pub(crate) fn build(raw: RawTcp, c: &mut Checker<'_>) -> Option<TcpSpec> {
    let errors = c.error_count();
    let address = address_text(c, "tcp", raw.address.as_deref());
    let tls = raw.tls.unwrap_or(false);
    if !tls {
        for (key, set) in [
            ("server_name", raw.server_name.is_some()),
            ("ca_file", raw.ca_file.is_some()),
            ("insecure_skip_verify", raw.insecure_skip_verify.is_some()),
        ] {
            if set {
                c.err(
                    &format!("tcp.{key}"),
                    format!("`{key}` applies with `tls = true` only"),
                );
            }
        }
    }
    let server_name = tls_probe::server_name(c, "tcp.server_name", raw.server_name);
    let ca_file = raw
        .ca_file
        .as_deref()
        .and_then(|f| CaFile::build(c, "tcp.ca_file", f));
    let insecure_skip_verify = raw.insecure_skip_verify.unwrap_or(false);
    if tls && insecure_skip_verify {
        tracing::warn!(
            at = %c.location("tcp.insecure_skip_verify"),
            "tcp.insecure_skip_verify = true: a bad certificate will not fail this probe"
        );
    }
    let send = raw
        .send
        .as_deref()
        .and_then(|s| c.text("tcp.send", s, None));
    let read = match raw.read.as_deref() {
        None if raw.send.is_some() => ReadMode::Line,
        None | Some("none") => ReadMode::None,
        Some("line") => ReadMode::Line,
        Some("close") => ReadMode::Close,
        Some(other) => {
            c.err(
                "tcp.read",
                format!("expected `line`, `close` or `none`, found `{other}`"),
            );
            ReadMode::None
        }
    };
    let max_read = c.size(
        "tcp.max_read_size",
        raw.max_read_size.as_ref(),
        DEFAULT_MAX_READ,
        MAX_READ_LIMIT,
    );
    let expect = c.expectations("tcp", &raw.expect, SCOPE);
    if c.error_count() > errors {
        return None;
    }
    Some(TcpSpec {
        address: address?,
        tls: tls.then_some(TlsSettings {
            server_name,
            ca_file,
            insecure_skip_verify,
        }),
        banner: raw.banner.unwrap_or(false),
        send,
        read,
        max_read: usize::try_from(max_read).unwrap_or(usize::MAX),
        expect,
    })
}

pub async fn run(spec: &TcpSpec, ctx: &RunContext<'_>) -> Outcome {
    let ids = RunIds::generate();
    let mut outcome = Outcome::new(&ctx.probe.name, &ctx.env.name, "tcp", &ids);
    let deadline = ctx.deadline();
    let mut facts = TcpFacts::default();
    let mut clock = Clock::new(deadline, &[]);
    let result = probe(spec, ctx, &ids, &mut clock, &mut facts).await;
    clock.record(&mut outcome);
    for text in [&mut facts.address]
        .into_iter()
        .chain(facts.banner.as_mut())
        .chain(facts.response.as_mut())
    {
        ctx.redactor.scrub(text);
    }
    match result {
        Err(fail) => outcome.fail(fail.reason, fail.message),
        Ok(()) => {
            outcome.responded = true;
            let mut f = Facts::default();
            f.set("connected", facts.connected);
            f.set("banner", facts.banner.clone().unwrap_or_default());
            f.set("response", facts.response.clone().unwrap_or_default());
            f.set("timings", clock.timings());
            f.set(
                "tls",
                facts.tls.as_ref().map_or(cel::Value::Null, TlsInfo::value),
            );
            f.set("vars", super::kind::vars_value(ctx.vars));
            ctx.check_expectations(&mut outcome, &spec.expect, f);
        }
    }
    outcome.details = Some(Details::new(facts));
    super::kind::finish(&mut outcome);
    super::kind::redact(outcome, ctx.redactor)
}

/// One run: render, connect, handshake, exchange, close.
async fn probe(
    spec: &TcpSpec,
    ctx: &RunContext<'_>,
    ids: &RunIds,
    clock: &mut Clock,
    facts: &mut TcpFacts,
) -> Result<(), Fail> {
    let render = |text: &Text, what: &str| {
        ctx.render(text, ids)
            .map_err(|e| Fail::new(FailureReason::Request, format!("cannot render {what}: {e}")))
    };
    facts.address = render(&spec.address, "tcp.address")?;
    let (host, port) =
        parse_address(&facts.address).map_err(|e| Fail::new(FailureReason::Request, e))?;
    let send = spec
        .send
        .as_ref()
        .map(|t| render(t, "tcp.send"))
        .transpose()?;
    let client = match &spec.tls {
        Some(settings) => {
            let ca = settings
                .ca_file
                .as_ref()
                .map(|f| f.path(ctx, ids))
                .transpose()
                .map_err(|e| Fail::new(FailureReason::Request, e))?;
            let client = crate::net::tls::Client::build(ca, &ctx.env.tls)
                .await
                .map_err(|e| Fail::new(FailureReason::Request, e))?;
            let name = crate::net::tls::name_for(settings.server_name.as_deref(), &host)
                .map_err(|e| Fail::new(FailureReason::Request, e))?;
            Some((client, name, settings.insecure_skip_verify))
        }
        None => None,
    };
    clock.begin();
    let tcp = net::open(&host, port, clock, ["resolve", "connect"]).await?;
    facts.connected = true;
    match client {
        None => converse(tcp, spec, send.as_deref(), clock, facts).await,
        Some((client, name, insecure)) => {
            let (stream, info) = clock
                .phase("tls", crate::net::tls::handshake(tcp, name, &client))
                .await??;
            let failure = info.failure();
            facts.tls = Some(info);
            match failure {
                // Nothing goes to a peer whose certificate does not check
                // out, unless told otherwise.
                Some((reason, message)) if !insecure && !ctx.env.tls.insecure_skip_verify => {
                    close(stream, clock.deadline()).await;
                    Err(Fail::new(reason, message))
                }
                _ => converse(stream, spec, send.as_deref(), clock, facts).await,
            }
        }
    }
}

/// The `exchange` phase on an open stream, then a bounded close.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    spec: &TcpSpec,
    send: Option<&str>,
    clock: &mut Clock,
    facts: &mut TcpFacts,
) -> Result<(), Fail> {
    if !spec.banner && send.is_none() && spec.read == ReadMode::None {
        close(stream, clock.deadline()).await;
        return Ok(());
    }
    let mut doing = match (spec.banner, send) {
        (true, _) => Doing::Banner,
        (false, Some(_)) => Doing::Sending,
        (false, None) => Doing::Response,
    };
    let mut reader = Reader::new(spec.max_read);
    let result = clock
        .phase(
            "exchange",
            exchange(&mut stream, &mut reader, spec, send, facts, &mut doing),
        )
        .await;
    facts.bytes_read = reader.total;
    let result = match result {
        Ok(inner) => inner,
        Err(mut fail) => {
            // Say what the exchange was waiting for when time ran out.
            fail.message = format!(
                "{} {}; {} bytes received",
                fail.message
                    .trim_end_matches(" during the exchange (exchange)"),
                doing.describe(),
                reader.total
            );
            Err(fail)
        }
    };
    close(stream, clock.deadline()).await;
    result
}

/// Where the exchange is, for a precise timeout message.
#[derive(Clone, Copy, Debug)]
enum Doing {
    Banner,
    Sending,
    Response,
}

impl Doing {
    fn describe(self) -> &'static str {
        match self {
            Doing::Banner => "while waiting for the banner line (exchange)",
            Doing::Sending => "while sending (exchange)",
            Doing::Response => "while waiting for the response (exchange)",
        }
    }
}

/// Banner, send, response, in that order; each only if asked for.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    reader: &mut Reader,
    spec: &TcpSpec,
    send: Option<&str>,
    facts: &mut TcpFacts,
    doing: &mut Doing,
) -> Result<(), Fail> {
    if spec.banner {
        *doing = Doing::Banner;
        facts.banner = Some(reader.line(stream, "the banner line").await?);
    }
    if let Some(text) = send {
        *doing = Doing::Sending;
        let written = async {
            stream.write_all(text.as_bytes()).await?;
            stream.flush().await
        };
        written
            .await
            .map_err(|e| net::error::io_failure(&format!("sending {} bytes", text.len()), &e))?;
        facts.bytes_sent = text.len() as u64;
    }
    *doing = Doing::Response;
    match spec.read {
        ReadMode::None => {}
        ReadMode::Line => facts.response = Some(reader.line(stream, "the response line").await?),
        ReadMode::Close => facts.response = Some(reader.until_close(stream).await?),
    }
    Ok(())
}

/// Reads lines or everything, never holding more than `cap` bytes.
struct Reader {
    /// Bytes read but not yet returned (the start of the next line).
    pending: Vec<u8>,
    cap: usize,
    /// Bytes read off the stream in all.
    total: u64,
}

impl Reader {
    fn new(cap: usize) -> Reader {
        Reader {
            pending: Vec::new(),
            cap,
            total: 0,
        }
    }

    /// Reads into `pending` at most up to `limit` bytes held; returns how
    /// many arrived (0: the peer closed).
    async fn fill<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        limit: usize,
    ) -> io::Result<usize> {
        let held = self.pending.len();
        let room = limit.saturating_sub(held).clamp(1, 8 * 1024);
        self.pending.resize(held + room, 0);
        let read = stream.read(&mut self.pending[held..]).await;
        let n = *read.as_ref().unwrap_or(&0);
        self.pending.truncate(held + n);
        self.total += n as u64;
        read
    }

    /// One line without its `\n` (or `\r\n`); the line end must come within
    /// `cap` bytes.
    async fn line<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        what: &str,
    ) -> Result<String, Fail> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            if self.pending.len() >= self.cap {
                return Err(Fail::new(
                    FailureReason::Protocol,
                    format!(
                        "no line end within the first {} bytes of {what} (max_read_size)",
                        self.cap
                    ),
                ));
            }
            let n = self
                .fill(stream, self.cap)
                .await
                .map_err(|e| net::error::io_failure(&format!("reading {what}"), &e))?;
            if n == 0 {
                return Err(Fail::new(
                    FailureReason::Closed,
                    if self.pending.is_empty() {
                        format!("the peer closed the connection before sending {what}")
                    } else {
                        format!(
                            "the peer closed the connection in the middle of {what} ({} bytes without a line end)",
                            self.pending.len()
                        )
                    },
                ));
            }
        }
    }

    /// Everything until the peer closes, which must be at most `cap` bytes.
    async fn until_close<S: AsyncRead + Unpin>(&mut self, stream: &mut S) -> Result<String, Fail> {
        loop {
            // One byte of room past the cap tells "exactly cap" from "more".
            let n = self
                .fill(stream, self.cap + 1)
                .await
                .map_err(|e| net::error::io_failure("reading the response", &e))?;
            if self.pending.len() > self.cap {
                return Err(Fail::new(
                    FailureReason::Protocol,
                    format!(
                        "more than {} bytes (max_read_size) arrived before the peer closed the connection",
                        self.cap
                    ),
                ));
            }
            if n == 0 {
                let all = std::mem::take(&mut self.pending);
                return Ok(String::from_utf8_lossy(&all).into_owned());
            }
        }
    }
}

/// The registry's line for `[tcp]`.
pub const KIND: KindEntry = KindEntry {
    name: "tcp",
    build: build_kind,
    gauges: crate::net::tls::GAUGES,
};

fn build_kind(c: &mut Checker<'_>, _: &BuildInput<'_>) -> Option<Box<dyn Kind>> {
    let raw: RawTcp = c.table("tcp")?;
    build(raw, c).map(|spec| Box::new(spec) as Box<dyn Kind>)
}

impl Kind for TcpSpec {
    fn name(&self) -> &'static str {
        "tcp"
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

impl KindFacts for TcpFacts {
    fn gauges(&self) -> Vec<(&'static str, f64)> {
        TcpFacts::gauges(self)
    }
    fn cert_expiry(&self) -> Option<i64> {
        TcpFacts::cert_expiry(self)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_split_and_capped() {
        let (mut client, mut server) = tokio::io::duplex(64);
        server.write_all(b"220 hi\r\nsecond\npart").await.unwrap();
        drop(server);
        let mut reader = Reader::new(16);
        assert_eq!(reader.line(&mut client, "x").await.unwrap(), "220 hi");
        assert_eq!(reader.line(&mut client, "x").await.unwrap(), "second");
        let fail = reader
            .line(&mut client, "the response line")
            .await
            .unwrap_err();
        assert_eq!(fail.reason, FailureReason::Closed);
        assert_eq!(
            fail.message,
            "the peer closed the connection in the middle of the response line (4 bytes without a line end)"
        );

        let (mut client, mut server) = tokio::io::duplex(64);
        server.write_all(&[b'x'; 40]).await.unwrap();
        let mut reader = Reader::new(16);
        let fail = reader
            .line(&mut client, "the banner line")
            .await
            .unwrap_err();
        assert_eq!(
            fail.message,
            "no line end within the first 16 bytes of the banner line (max_read_size)"
        );
        assert_eq!(reader.total, 16);

        let (mut client, mut server) = tokio::io::duplex(64);
        server.write_all(&[b'y'; 16]).await.unwrap();
        drop(server);
        let mut reader = Reader::new(16);
        assert_eq!(
            reader.until_close(&mut client).await.unwrap(),
            "y".repeat(16)
        );
        let (mut client, mut server) = tokio::io::duplex(64);
        server.write_all(&[b'y'; 17]).await.unwrap();
        let mut reader = Reader::new(16);
        assert!(reader.until_close(&mut client).await.is_err());
    }
}
