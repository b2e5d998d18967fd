//! The sandbox's DNS server, authoritative for `sandbox.test.`: on UDP and
//! TCP at the same port (`sandbox_dns`), over TLS (DNS over TLS, RFC 7858,
//! `sandbox_dot`, with the valid leaf of the sandbox's PKI, so
//! `sandbox_ca_file` vouches for it, offering ALPN `dot`) and over HTTP on
//! the sandbox's own port (DNS over HTTPS's wire format, RFC 8484, in
//! clear: `POST /dns-query` with an `application/dns-message` body, or
//! `GET /dns-query?dns=` with the message in base64url; `sandbox_doh`).
//!
//! A small responder on hickory-proto's message types rather than
//! hickory-server: the sandbox needs names that misbehave on purpose (one
//! that answers SERVFAIL, one that never answers) and hard bounds on what a
//! client can make it hold (connections, time per connection, message
//! sizes), which a catalog of authorities would not give without wrapping
//! most of it, for a zone of a dozen records.
//!
//! The zone (TTL 300):
//!
//! ```text
//! sandbox.test.       SOA   ns.sandbox.test. hostmaster.sandbox.test. 1 3600 600 86400 60
//! sandbox.test.       NS    ns.sandbox.test.
//! sandbox.test.       MX    10 mail.sandbox.test.
//! sandbox.test.       TXT   "synthmon sandbox"
//! ns.sandbox.test.    A     127.0.0.1
//! mail.sandbox.test.  A     127.0.0.1
//! api.sandbox.test.   A     127.0.0.1
//! api.sandbox.test.   AAAA  ::1
//! api.sandbox.test.   TXT   "synthmon sandbox"
//! www.sandbox.test.   CNAME api.sandbox.test.
//! big.sandbox.test.   TXT   × 40, about 2.5 KB: truncated over UDP (TC), whole over TCP
//! ```
//!
//! `servfail.sandbox.test.` answers SERVFAIL and `slow.sandbox.test.` never
//! answers (over HTTP: not before [`DOH_SLOW`], then 504); other names in
//! the zone are NXDOMAIN (with the SOA in the authority section), names
//! outside it REFUSED. UDP answers stop at 512 bytes (the server does no
//! EDNS); longer ones go out truncated. The server never sets the AD bit
//! (the zone is not signed).
//!
//! Hostile input: datagrams over 512 bytes, garbage, and messages that are
//! not queries get no answer (over HTTP: 400; another content type: 415; a
//! body over [`MAX_TCP_MESSAGE`]: 413); TCP and TLS take at most
//! [`MAX_TCP_CONNECTIONS`] at once between them (more are closed at once),
//! each for at most [`TCP_CONNECTION_TIME`] (the TLS handshake included),
//! with messages of at most [`MAX_TCP_MESSAGE`] bytes. Every task ends when
//! the sandbox stops.

use super::{AppState, QueryParams};
use crate::probe::dns::counts_fit;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use rustls::ServerConfig;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

/// The zone's TTL for every record.
const TTL: u32 = 300;

/// The largest UDP message either way (RFC 1035 without EDNS).
const MAX_UDP: usize = 512;

/// The largest TCP query read; a longer one closes the connection.
pub const MAX_TCP_MESSAGE: usize = 4096;

/// TCP connections served at once, plain and TLS together.
pub const MAX_TCP_CONNECTIONS: usize = 64;

/// How long one TCP connection may stay open, queries (and the TLS
/// handshake) included.
pub const TCP_CONNECTION_TIME: Duration = Duration::from_secs(10);

/// How long a DNS-over-HTTP query for the slow name waits before its 504
/// (unless the sandbox stops first): the HTTP form of never answering.
pub const DOH_SLOW: Duration = Duration::from_secs(30);

/// The media type of a DNS message over HTTP (RFC 8484 §6).
const DNS_MESSAGE: &str = "application/dns-message";

/// How many TXT records `big.sandbox.test.` holds.
pub const BIG_TXT_RECORDS: usize = 40;

/// How often to try for a port free on both UDP and TCP.
const BIND_TRIES: usize = 8;

/// How many CNAMEs an answer follows (the zone has one; this bounds a loop).
const MAX_CNAME_CHAIN: usize = 8;

/// Starts the listeners on `ip` (port 0), DNS over TLS with `tls` (the
/// sandbox's valid leaf), serving until `stop` turns true; returns the
/// [`super::VARIABLES`] entries it provides.
pub async fn start(
    ip: IpAddr,
    mut tls: ServerConfig,
    stop: watch::Receiver<bool>,
) -> std::io::Result<Vec<(&'static str, String)>> {
    let (udp, tcp) = bind_pair(ip).await?;
    let port = udp.local_addr()?.port();
    let dot = TcpListener::bind((ip, 0)).await?;
    let dot_port = dot.local_addr()?.port();
    tls.alpn_protocols = vec![b"dot".to_vec()];
    let zone = Arc::new(Zone::sandbox()?);
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    tokio::spawn(serve_udp(udp, zone.clone(), stop.clone()));
    tokio::spawn(serve_tcp(
        tcp,
        None,
        zone.clone(),
        slots.clone(),
        stop.clone(),
    ));
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    tokio::spawn(serve_tcp(dot, Some(acceptor), zone, slots, stop));
    // An unspecified bind address is reachable at loopback.
    let shown = match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    tracing::debug!(%port, %dot_port, "sandbox dns listening");
    Ok(vec![
        ("sandbox_dns", SocketAddr::new(shown, port).to_string()),
        ("sandbox_dot", SocketAddr::new(shown, dot_port).to_string()),
    ])
}

/// A UDP socket and a TCP listener on the same port: UDP takes an
/// ephemeral port and TCP follows it, again on a fresh port when another
/// program holds that one over TCP.
async fn bind_pair(ip: IpAddr) -> io::Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..BIND_TRIES {
        let udp = UdpSocket::bind((ip, 0)).await?;
        let port = udp.local_addr()?.port();
        match TcpListener::bind((ip, port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no port free on both UDP and TCP")))
}

/// Resolves once the sandbox stops (or its owner is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Answers datagrams one at a time: an answer is computed from memory
/// without waiting, so one task serves them all.
async fn serve_udp(socket: UdpSocket, zone: Arc<Zone>, mut stop: watch::Receiver<bool>) {
    // One byte more than a query may have, to tell an oversized one.
    let mut buffer = vec![0u8; MAX_UDP + 1];
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buffer) => received,
            () = stopped(&mut stop) => return,
        };
        let Ok((length, peer)) = received else {
            // An error from the socket (an ICMP report of an earlier
            // answer's peer gone): wait a moment so it cannot spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if length > MAX_UDP {
            continue;
        }
        let Reply::Answer(answer) = zone.answer(&buffer[..length]) else {
            continue;
        };
        if let Some(bytes) = udp_bytes(&answer) {
            let _ = socket.send_to(&bytes, peer).await;
        }
    }
}

/// The answer as one datagram: whole when it fits in 512 bytes, else its
/// header and question with TC set, so the client asks again over TCP.
fn udp_bytes(answer: &Message) -> Option<Vec<u8>> {
    let bytes = answer.to_vec().ok()?;
    if bytes.len() <= MAX_UDP {
        return Some(bytes);
    }
    answer.truncate().to_vec().ok()
}

/// Accepts connections up to the cap (`slots`, shared by the plain and the
/// TLS listener); each is served in its own task for at most
/// [`TCP_CONNECTION_TIME`], its TLS handshake first with `tls`.
async fn serve_tcp(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    zone: Arc<Zone>,
    slots: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut stop) => return,
        };
        let Ok((stream, _)) = accepted else {
            // Out of file descriptors, most likely: let some close.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        // An answer written after the TLS session tickets would otherwise
        // wait for the client's delayed ACK (Nagle's algorithm), ~40 ms that
        // no real server adds.
        let _ = stream.set_nodelay(true);
        let zone = zone.clone();
        let tls = tls.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let serve = async {
                match tls {
                    None => serve_connection(stream, &zone).await,
                    Some(acceptor) => serve_connection(acceptor.accept(stream).await?, &zone).await,
                }
            };
            tokio::select! {
                _ = tokio::time::timeout(TCP_CONNECTION_TIME, serve) => {}
                () = stopped(&mut stop) => {}
            }
        });
    }
}

/// Answers length-prefixed queries on one connection until the client
/// closes it, sends something too long, or fails.
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    zone: &Zone,
) -> io::Result<()> {
    loop {
        let length = usize::from(stream.read_u16().await?);
        if length > MAX_TCP_MESSAGE {
            return Ok(());
        }
        let mut query = vec![0u8; length];
        stream.read_exact(&mut query).await?;
        // Silence (the slow name, garbage) leaves the client waiting; the
        // connection's time limit still holds.
        let Reply::Answer(answer) = zone.answer(&query) else {
            continue;
        };
        let bytes = answer.to_vec().map_err(io::Error::other)?;
        let Ok(length) = u16::try_from(bytes.len()) else {
            return Ok(());
        };
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&length.to_be_bytes());
        framed.extend_from_slice(&bytes);
        stream.write_all(&framed).await?;
        stream.flush().await?;
    }
}

/// `/dns-query`: the zone over HTTP (RFC 8484's wire format).
pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/dns-query", get(doh_get).post(doh_post))
}

/// The zone for the HTTP routes, built on first use (the routes have no
/// listener of their own to build it at start).
fn shared_zone() -> Option<&'static Zone> {
    static ZONE: OnceLock<Option<Zone>> = OnceLock::new();
    ZONE.get_or_init(|| Zone::sandbox().ok()).as_ref()
}

/// `POST /dns-query`: the query is the body, `application/dns-message`.
async fn doh_post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if media.as_deref() != Some(DNS_MESSAGE) {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the query as application/dns-message",
        );
    }
    doh_answer(&state, &body).await
}

/// `GET /dns-query?dns=…`: the query in base64url without padding.
async fn doh_get(State(state): State<AppState>, params: QueryParams) -> Response {
    let Some(encoded) = params.get("dns") else {
        return plain(StatusCode::BAD_REQUEST, "the `dns` parameter is required");
    };
    match base64url_decode(encoded) {
        Some(query) => doh_answer(&state, &query).await,
        None => plain(StatusCode::BAD_REQUEST, "`dns` is not base64url"),
    }
}

/// The zone's reply to one query as an HTTP response.
async fn doh_answer(state: &AppState, query: &[u8]) -> Response {
    if query.len() > MAX_TCP_MESSAGE {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "the query is too long");
    }
    let Some(zone) = shared_zone() else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "the zone is unavailable");
    };
    let answer = match zone.answer(query) {
        Reply::Answer(answer) => answer,
        Reply::Silence => return plain(StatusCode::BAD_REQUEST, "not a DNS query"),
        Reply::Withheld => {
            if let Err(e) = state.sleep(DOH_SLOW).await {
                return e.into_response();
            }
            return plain(
                StatusCode::GATEWAY_TIMEOUT,
                "no answer (slow.sandbox.test.)",
            );
        }
    };
    match answer.to_vec() {
        Ok(bytes) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE))],
            bytes,
        )
            .into_response(),
        Err(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the answer",
        ),
    }
}

/// A short text answer.
fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

/// Decodes base64url without padding (RFC 4648 §5; RFC 8484 §4.1 leaves
/// the padding out, and it is accepted here too); `None` for anything else.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut bits: u32 = 0;
    let mut count = 0;
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push(((bits >> count) & 0xff) as u8);
        }
    }
    Some(out)
}

/// What to do with one message.
#[derive(Debug)]
enum Reply {
    Answer(Message),
    /// No answer: garbage or a response.
    Silence,
    /// No answer, on purpose: the slow name.
    Withheld,
}

/// The zone's records and its special names.
#[derive(Debug)]
struct Zone {
    origin: Name,
    soa: Record,
    records: Vec<Record>,
    servfail: Name,
    slow: Name,
}

fn name(text: &str) -> io::Result<Name> {
    Name::from_ascii(text).map_err(io::Error::other)
}

impl Zone {
    /// The zone described in the module docs.
    fn sandbox() -> io::Result<Zone> {
        let origin = name("sandbox.test.")?;
        let ns = name("ns.sandbox.test.")?;
        let mail = name("mail.sandbox.test.")?;
        let api = name("api.sandbox.test.")?;
        let big = name("big.sandbox.test.")?;
        let record = |owner: &Name, data: RData| Record::from_rdata(owner.clone(), TTL, data);
        let banner = || RData::TXT(TXT::new(vec!["synthmon sandbox".to_owned()]));
        let soa = record(
            &origin,
            RData::SOA(SOA::new(
                ns.clone(),
                name("hostmaster.sandbox.test.")?,
                1,
                3600,
                600,
                86_400,
                60,
            )),
        );
        let mut records = vec![
            soa.clone(),
            record(&origin, RData::NS(NS(ns.clone()))),
            record(&origin, RData::MX(MX::new(10, mail.clone()))),
            record(&origin, banner()),
            record(&ns, RData::A(A(Ipv4Addr::LOCALHOST))),
            record(&mail, RData::A(A(Ipv4Addr::LOCALHOST))),
            record(&api, RData::A(A(Ipv4Addr::LOCALHOST))),
            record(&api, RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))),
            record(&api, banner()),
            record(&name("www.sandbox.test.")?, RData::CNAME(CNAME(api))),
        ];
        for i in 0..BIG_TXT_RECORDS {
            let text = format!("synthmon sandbox big record {i:02}: padding to overflow 512 bytes");
            records.push(record(&big, RData::TXT(TXT::new(vec![text]))));
        }
        Ok(Zone {
            soa,
            records,
            servfail: name("servfail.sandbox.test.")?,
            slow: name("slow.sandbox.test.")?,
            origin,
        })
    }

    /// The reply to the message in `bytes`.
    fn answer(&self, bytes: &[u8]) -> Reply {
        if !counts_fit(bytes) {
            return Reply::Silence;
        }
        let Ok(request) = Message::from_vec(bytes) else {
            return Reply::Silence;
        };
        // Never answer a response: two servers would echo forever.
        if request.message_type() != MessageType::Query {
            return Reply::Silence;
        }
        let mut answer = Message::new();
        answer
            .set_id(request.id())
            .set_message_type(MessageType::Response)
            .set_op_code(request.op_code())
            .set_recursion_desired(request.recursion_desired());
        if request.op_code() != OpCode::Query {
            answer.set_response_code(ResponseCode::NotImp);
            return Reply::Answer(answer);
        }
        let [question] = request.queries() else {
            answer.set_response_code(ResponseCode::FormErr);
            return Reply::Answer(answer);
        };
        answer.add_query(question.clone());
        let qname = question.name().to_lowercase();
        if question.query_class() != DNSClass::IN || !self.origin.zone_of(&qname) {
            answer.set_response_code(ResponseCode::Refused);
            return Reply::Answer(answer);
        }
        if qname == self.slow {
            return Reply::Withheld;
        }
        answer.set_authoritative(true);
        if qname == self.servfail {
            answer.set_response_code(ResponseCode::ServFail);
            return Reply::Answer(answer);
        }
        self.lookup(qname, question.query_type(), &mut answer);
        Reply::Answer(answer)
    }

    /// Fills in the answer for `qname`/`qtype`, following in-zone CNAMEs.
    fn lookup(&self, qname: Name, qtype: RecordType, answer: &mut Message) {
        let mut current = qname;
        for _ in 0..MAX_CNAME_CHAIN {
            let owned: Vec<&Record> = self
                .records
                .iter()
                .filter(|r| *r.name() == current)
                .collect();
            if owned.is_empty() {
                if answer.answers().is_empty() {
                    answer.set_response_code(ResponseCode::NXDomain);
                    answer.add_name_server(self.soa.clone());
                }
                return;
            }
            let alias = owned.iter().find_map(|r| match r.data() {
                RData::CNAME(target) if !matches!(qtype, RecordType::CNAME | RecordType::ANY) => {
                    Some((*r, target.0.clone()))
                }
                _ => None,
            });
            if let Some((record, target)) = alias {
                answer.add_answer(record.clone());
                current = target;
                continue;
            }
            let matching: Vec<Record> = owned
                .into_iter()
                .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
                .cloned()
                .collect();
            if matching.is_empty() {
                // The name exists without this type: NOERROR, no data.
                answer.add_name_server(self.soa.clone());
                return;
            }
            self.add_glue(&matching, answer);
            answer.add_answers(matching);
            return;
        }
    }

    /// Addresses of the hosts that MX and NS answers name, in the
    /// additional section.
    fn add_glue(&self, answers: &[Record], answer: &mut Message) {
        for record in answers {
            let host = match record.data() {
                RData::MX(mx) => mx.exchange(),
                RData::NS(ns) => &ns.0,
                _ => continue,
            };
            let glue = self.records.iter().filter(|r| {
                r.name() == host && matches!(r.record_type(), RecordType::A | RecordType::AAAA)
            });
            answer.add_additionals(glue.cloned());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    fn ask(zone: &Zone, qname: &str, qtype: RecordType) -> Reply {
        let mut query = Message::new();
        query
            .set_id(7)
            .add_query(Query::query(Name::from_ascii(qname).unwrap(), qtype));
        zone.answer(&query.to_vec().unwrap())
    }

    fn answered(reply: Reply) -> Message {
        match reply {
            Reply::Answer(m) => m,
            Reply::Silence | Reply::Withheld => panic!("no answer"),
        }
    }

    #[test]
    fn the_zone_answers_as_documented() {
        let zone = Zone::sandbox().unwrap();
        let m = answered(ask(&zone, "API.sandbox.test.", RecordType::A));
        assert_eq!(m.id(), 7);
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.authoritative());
        assert_eq!(m.answers().len(), 1);
        assert_eq!(m.answers()[0].data().to_string(), "127.0.0.1");

        let m = answered(ask(&zone, "www.sandbox.test.", RecordType::A));
        let types: Vec<_> = m.answers().iter().map(|r| r.record_type()).collect();
        assert_eq!(types, [RecordType::CNAME, RecordType::A]);

        let m = answered(ask(&zone, "sandbox.test.", RecordType::MX));
        assert_eq!(m.answers()[0].data().to_string(), "10 mail.sandbox.test.");
        assert_eq!(m.additionals().len(), 1);

        let m = answered(ask(&zone, "mail.sandbox.test.", RecordType::TXT));
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.answers().is_empty());
        assert_eq!(m.name_servers().len(), 1);

        let m = answered(ask(&zone, "nope.sandbox.test.", RecordType::A));
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        assert_eq!(m.name_servers()[0].record_type(), RecordType::SOA);

        let m = answered(ask(&zone, "example.com.", RecordType::A));
        assert_eq!(m.response_code(), ResponseCode::Refused);
        assert!(!m.authoritative());

        let m = answered(ask(&zone, "servfail.sandbox.test.", RecordType::A));
        assert_eq!(m.response_code(), ResponseCode::ServFail);

        assert!(matches!(
            ask(&zone, "slow.sandbox.test.", RecordType::A),
            Reply::Withheld
        ));
    }

    #[test]
    fn big_answers_are_truncated_over_udp_only() {
        let zone = Zone::sandbox().unwrap();
        let m = answered(ask(&zone, "big.sandbox.test.", RecordType::TXT));
        assert_eq!(m.answers().len(), BIG_TXT_RECORDS);
        assert!(m.to_vec().unwrap().len() > MAX_UDP);
        let datagram = udp_bytes(&m).unwrap();
        assert!(datagram.len() <= MAX_UDP);
        let sent = Message::from_vec(&datagram).unwrap();
        assert!(sent.truncated());
        assert_eq!(sent.queries().len(), 1);
    }

    #[test]
    fn base64url_decodes_with_or_without_padding_and_refuses_other_alphabets() {
        assert_eq!(base64url_decode("").unwrap(), b"");
        assert_eq!(base64url_decode("Zg").unwrap(), b"f");
        assert_eq!(base64url_decode("Zm8").unwrap(), b"fo");
        assert_eq!(base64url_decode("Zm9v").unwrap(), b"foo");
        assert_eq!(base64url_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64url_decode("-_8").unwrap(), [0xfb, 0xff]);
        assert!(base64url_decode("+/8").is_none());
        assert!(base64url_decode("Z").is_none());
        assert!(base64url_decode("Zm 9v").is_none());
    }

    #[test]
    fn garbage_and_responses_get_no_answer() {
        let zone = Zone::sandbox().unwrap();
        for bytes in [&b""[..], b"\x00\x01", &[0xff; 12], &[0x41; 300]] {
            assert!(matches!(zone.answer(bytes), Reply::Silence), "{bytes:?}");
        }
        let m = answered(ask(&zone, "api.sandbox.test.", RecordType::A));
        assert!(matches!(zone.answer(&m.to_vec().unwrap()), Reply::Silence));
    }
}
