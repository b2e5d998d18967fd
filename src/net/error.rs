//! How network failures become a reason and a sentence.
//!
//! Every kind fails through [`Fail`]: a closed [`FailureReason`] (a metric
//! label) and a message for people. The wording of a fault lives here once,
//! so the same fault reads the same in every kind: [`describe`] turns an
//! error chain into one sentence (never a `Debug` dump), [`cert_failure`]
//! words a certificate verdict, [`handshake_failed`] looks through an
//! I/O error for the rustls verdict beneath it, and [`cut`] tells a peer
//! that reset a connection from one that closed it early.

use crate::outcome::FailureReason;
use rustls::CertificateError;
use rustls_pki_types::UnixTime;
use std::fmt::Display;
use std::io;

/// A failure with its reason and a sentence for people.
///
/// The steps of a run return it with `?`; the kind turns the first one into
/// the outcome's failure, so the reason is decided where the failure is
/// understood, not guessed later from an error's text.
#[derive(Debug, Clone, PartialEq)]
pub struct Fail {
    pub reason: FailureReason,
    pub message: String,
}

impl Fail {
    pub fn new(reason: FailureReason, message: impl Into<String>) -> Fail {
        Fail {
            reason,
            message: message.into(),
        }
    }
}

/// An error and its sources as one sentence: the outer error alone often
/// says only "connection error", and the cause is what a person can act on.
/// A cause is left out when the sentence already says it (errors that print
/// their cause and return it as the source too, like h2's and lettre's).
/// The one error-chain printer: probes, receivers and the daemon use it.
pub fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let more = inner.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = inner.source();
    }
    text
}

/// How a peer ended a connection before the exchange on it was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// A clean close (FIN): the stream simply ended early.
    Closed,
    /// A reset (TCP RST): the peer aborted the connection.
    Reset,
}

impl Cut {
    pub fn reason(self) -> FailureReason {
        match self {
            Cut::Closed => FailureReason::Closed,
            Cut::Reset => FailureReason::Reset,
        }
    }

    /// What the peer did, in words: `closed the connection`.
    pub fn words(self) -> &'static str {
        match self {
            Cut::Closed => "closed the connection",
            Cut::Reset => "reset the connection (TCP RST)",
        }
    }
}

/// Whether `error`'s chain says the peer cut the connection: a reset (or a
/// write into one, `EPIPE`) or an unexpected end of the stream. Library
/// errors that wrap an I/O error keep it in their chain (hyper's do), so
/// the verdict does not depend on their wording.
pub fn cut(error: &(dyn std::error::Error + 'static)) -> Option<Cut> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe => return Some(Cut::Reset),
                io::ErrorKind::UnexpectedEof => return Some(Cut::Closed),
                _ => {}
            }
        }
        current = e.source();
    }
    None
}

/// A body that went past its cap of `max` bytes, raw or after
/// decompression (`stage`): the same words on HTTP/1.1 and HTTP/2.
pub fn too_large(max: u64, stage: &str) -> Fail {
    Fail::new(
        FailureReason::BodyTooLarge,
        format!("body exceeds the {max}-byte cap ({stage})"),
    )
}

/// Whether a peer's first bytes are a TLS record (a handshake or an alert,
/// TLS 1.x): a plain-text client met a TLS port.
pub fn looks_like_tls(start: &[u8]) -> bool {
    matches!(start, [0x15 | 0x16, 0x03, 0x00..=0x04, ..])
}

/// An I/O failure of an established connection while `doing` something:
/// `closed` or `connection_reset` when the peer cut it (see [`cut`]),
/// `tls` when the server refused the client certificate after the
/// handshake (see [`client_auth_refused`]), else `protocol`; the message
/// says which, in words.
pub fn io_failure(doing: &str, error: &(dyn std::error::Error + 'static)) -> Fail {
    if let Some(fail) = client_auth_refused(error) {
        return fail;
    }
    match cut(error) {
        Some(how) => Fail::new(
            how.reason(),
            format!("{doing} failed: the peer {}", how.words()),
        ),
        None => Fail::new(
            FailureReason::Protocol,
            format!("{doing} failed: {}", describe(error)),
        ),
    }
}

/// The rustls error somewhere in `error`'s chain, if any.
pub fn rustls_error<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e rustls::Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(found) = inner.downcast_ref::<rustls::Error>() {
                    return Some(found);
                }
            }
        }
        current = e.source();
    }
    None
}

/// What the server's alert says about the client certificate, when it is
/// about it: none was presented and the server requires one, or the one
/// presented was refused. `None` for any other alert.
fn client_auth_alert(alert: rustls::AlertDescription) -> Option<String> {
    use rustls::AlertDescription as A;
    let name = match alert {
        A::CertificateRequired => {
            return Some(
                "the server requires a client certificate and none was presented \
                 (tls alert certificate_required; set tls.client_cert and tls.client_key)"
                    .to_owned(),
            );
        }
        A::BadCertificate => "bad_certificate",
        A::UnsupportedCertificate => "unsupported_certificate",
        A::CertificateRevoked => "certificate_revoked",
        A::CertificateExpired => "certificate_expired",
        A::CertificateUnknown => "certificate_unknown",
        A::UnknownCA => "unknown_ca",
        A::AccessDenied => "access_denied",
        _ => return None,
    };
    Some(format!(
        "the server refused the client certificate (tls alert {name}): \
         is it signed by a CA the server trusts, valid now, and meant for client authentication?"
    ))
}

/// A server that refused the client certificate after the handshake had
/// completed on the client's side: with TLS 1.3 the client's handshake
/// ends before the server has judged its certificate, so the verdict (an
/// alert) arrives with the first read. `tls`, in the words the handshake
/// would have used.
pub fn client_auth_refused(error: &(dyn std::error::Error + 'static)) -> Option<Fail> {
    let rustls::Error::AlertReceived(alert) = rustls_error(error)? else {
        return None;
    };
    client_auth_alert(*alert).map(|words| Fail::new(FailureReason::Tls, words))
}

/// A handshake that failed (no common version, not TLS, a bad signature or
/// certificate, a client certificate missing or refused), with `peer` as
/// the run knows it. A certificate verdict gets its own reason and sentence
/// ([`cert_failure`]); anything else is `tls`.
pub fn handshake_failed(peer: impl Display, error: &io::Error) -> Fail {
    let peer = peer.to_string();
    if let Some(rustls::Error::AlertReceived(alert)) = rustls_error(error) {
        if let Some(words) = client_auth_alert(*alert) {
            return Fail::new(
                FailureReason::Tls,
                format!("tls handshake with {peer} failed: {words}"),
            );
        }
    }
    if let Some(verdict @ rustls::Error::InvalidCertificate(_)) = rustls_error(error) {
        let (reason, message) = cert_failure(&peer, verdict);
        return Fail::new(reason, message);
    }
    if let Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)) =
        rustls_error(error)
    {
        // The first bytes back were not a TLS record: a plain-text port.
        return Fail::new(
            FailureReason::Tls,
            format!(
                "tls handshake with {peer} failed: the answer is not TLS (is the port a plain-text one?): {}",
                describe(error)
            ),
        );
    }
    Fail::new(
        FailureReason::Tls,
        format!("tls handshake with {peer} failed: {}", describe(error)),
    )
}

/// The reason and sentence for a certificate that did not verify, from
/// rustls' verdict alone (so a strict handshake, which keeps nothing else,
/// and a recording one say the same): `certificate of db.example expired
/// on 2020-01-02 (1069 days ago)`.
pub fn cert_failure(name: &str, error: &rustls::Error) -> (FailureReason, String) {
    let rustls::Error::InvalidCertificate(cert) = error else {
        return (
            FailureReason::Tls,
            format!("certificate of {name} cannot be used: {error}"),
        );
    };
    match cert {
        CertificateError::ExpiredContext { time, not_after } => (
            FailureReason::CertExpired,
            format!(
                "certificate of {name} expired on {} ({} ago)",
                day(*not_after),
                ago(*not_after, *time)
            ),
        ),
        CertificateError::Expired => (
            FailureReason::CertExpired,
            format!("certificate of {name} has expired"),
        ),
        CertificateError::NotValidYetContext { time, not_before } => (
            FailureReason::CertExpired,
            format!(
                "certificate of {name} is not valid before {} ({} from now)",
                day(*not_before),
                ago(*time, *not_before)
            ),
        ),
        CertificateError::NotValidYet => (
            FailureReason::CertExpired,
            format!("certificate of {name} is not valid yet"),
        ),
        CertificateError::NotValidForNameContext { presented, .. } => (
            FailureReason::CertHostname,
            format!(
                "certificate is not valid for {name}: it names {}",
                if presented.is_empty() {
                    "no host".to_owned()
                } else {
                    presented
                        .iter()
                        .map(|n| presented_name(n))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        ),
        CertificateError::NotValidForName => (
            FailureReason::CertHostname,
            format!("certificate is not valid for {name}"),
        ),
        CertificateError::UnknownIssuer => (
            FailureReason::CertUntrusted,
            format!(
                "certificate of {name} is not trusted: unknown issuer (self-signed, or a private CA: set ca_file to trust it)"
            ),
        ),
        CertificateError::Revoked => (
            FailureReason::CertUntrusted,
            format!("certificate of {name} is not trusted: it has been revoked"),
        ),
        CertificateError::BadSignature
        | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. }
        | CertificateError::InvalidPurpose
        | CertificateError::InvalidPurposeContext { .. }
        | CertificateError::UnhandledCriticalExtension => (
            FailureReason::CertUntrusted,
            format!("certificate of {name} is not trusted: {error}"),
        ),
        _ => (
            FailureReason::Tls,
            format!("certificate of {name} cannot be used: {error}"),
        ),
    }
}

/// A name as webpki presents it (`DnsName("a.example")`,
/// `IpAddress(127.0.0.1)`) without the wrapping.
fn presented_name(name: &str) -> &str {
    let inner = name
        .strip_prefix("DnsName(\"")
        .and_then(|n| n.strip_suffix("\")"))
        .or_else(|| {
            name.strip_prefix("IpAddress(")
                .and_then(|n| n.strip_suffix(')'))
        });
    inner.unwrap_or(name)
}

/// A time as its UTC date and time, e.g. `2020-01-02 00:00:00 UTC`.
fn day(t: UnixTime) -> String {
    i64::try_from(t.as_secs())
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map_or_else(
            || format!("{}s after the epoch", t.as_secs()),
            |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
}

/// The time from `earlier` to `later` in words: `3 days`, `5 hours`.
fn ago(earlier: UnixTime, later: UnixTime) -> String {
    let secs = later.as_secs().saturating_sub(earlier.as_secs());
    let (n, unit) = match secs {
        s if s >= 2 * 86_400 => (s / 86_400, "days"),
        s if s >= 2 * 3_600 => (s / 3_600, "hours"),
        s if s >= 2 * 60 => (s / 60, "minutes"),
        s => (s, "seconds"),
    };
    format!("{n} {unit}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(secs))
    }

    #[test]
    fn certificate_verdicts_are_worded_once() {
        let expired = rustls::Error::InvalidCertificate(CertificateError::ExpiredContext {
            time: at(1_700_000_000),
            not_after: at(1_700_000_000 - 3 * 86_400),
        });
        assert_eq!(
            cert_failure("db.example", &expired),
            (
                FailureReason::CertExpired,
                "certificate of db.example expired on 2023-11-11 22:13:20 UTC (3 days ago)"
                    .to_owned()
            )
        );
        let host = rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            expected: rustls_pki_types::ServerName::try_from("db.example").unwrap(),
            presented: vec!["DnsName(\"wrong.example\")".to_owned()],
        });
        assert_eq!(
            cert_failure("db.example", &host),
            (
                FailureReason::CertHostname,
                "certificate is not valid for db.example: it names wrong.example".to_owned()
            )
        );
        let untrusted = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(
            cert_failure("db.example", &untrusted).0,
            FailureReason::CertUntrusted
        );
        let other = rustls::Error::General("boom".to_owned());
        assert_eq!(cert_failure("db.example", &other).0, FailureReason::Tls);
    }

    #[test]
    fn resets_and_early_ends_are_found_in_an_error_chain() {
        #[derive(Debug)]
        struct Wrapper(io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("connection error")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let wrapped = |kind| Wrapper(io::Error::new(kind, "boom"));
        assert_eq!(
            cut(&wrapped(io::ErrorKind::ConnectionReset)),
            Some(Cut::Reset)
        );
        assert_eq!(cut(&wrapped(io::ErrorKind::BrokenPipe)), Some(Cut::Reset));
        assert_eq!(
            cut(&wrapped(io::ErrorKind::UnexpectedEof)),
            Some(Cut::Closed)
        );
        assert_eq!(cut(&wrapped(io::ErrorKind::InvalidData)), None);
        assert_eq!(Cut::Reset.reason().as_str(), "connection_reset");
        assert_eq!(Cut::Closed.reason().as_str(), "closed");
    }

    #[test]
    fn handshake_errors_find_the_verdict_inside_io_errors() {
        let io = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let fail = handshake_failed("localhost", &io);
        assert_eq!(fail.reason, FailureReason::CertUntrusted);
        let text = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        let fail = handshake_failed("localhost", &text);
        assert_eq!(fail.reason, FailureReason::Tls);
        assert!(
            fail.message
                .starts_with("tls handshake with localhost failed: the answer is not TLS"),
            "{}",
            fail.message
        );
        let required = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
        );
        let fail = handshake_failed("localhost", &required);
        assert_eq!(fail.reason, FailureReason::Tls);
        assert!(
            fail.message.starts_with(
                "tls handshake with localhost failed: the server requires a client certificate"
            ),
            "{}",
            fail.message
        );
        // After the handshake (TLS 1.3), the same words without the peer.
        let late = client_auth_refused(&required).unwrap();
        assert!(
            late.message
                .starts_with("the server requires a client certificate")
        );
        let refused = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA),
        );
        assert!(
            io_failure("reading", &refused)
                .message
                .starts_with("the server refused the client certificate (tls alert unknown_ca)")
        );
        let plain = io::Error::new(io::ErrorKind::UnexpectedEof, "eof");
        let fail = handshake_failed("localhost", &plain);
        assert_eq!(fail.reason, FailureReason::Tls);
        assert_eq!(fail.message, "tls handshake with localhost failed: eof");
    }
}
