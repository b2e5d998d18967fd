//! The sandbox's DNS server, authoritative for `sandbox.test.`, on UDP and
//! TCP at the same port (`sandbox_dns`).
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
//! answers; other names in the zone are NXDOMAIN (with the SOA in the
//! authority section), names outside it REFUSED. UDP answers stop at 512
//! bytes (the server does no EDNS); longer ones go out truncated.
//!
//! Hostile input: datagrams over 512 bytes, garbage, and messages that are
//! not queries get no answer; TCP takes at most [`MAX_TCP_CONNECTIONS`] at
//! once (more are closed at once), each for at most [`TCP_CONNECTION_TIME`],
//! with messages of at most [`MAX_TCP_MESSAGE`] bytes. Every task ends when
//! the sandbox stops.

use crate::probe::dns::counts_fit;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};

/// The zone's TTL for every record.
const TTL: u32 = 300;

/// The largest UDP message either way (RFC 1035 without EDNS).
const MAX_UDP: usize = 512;

/// The largest TCP query read; a longer one closes the connection.
pub const MAX_TCP_MESSAGE: usize = 4096;

/// TCP connections served at once.
pub const MAX_TCP_CONNECTIONS: usize = 64;

/// How long one TCP connection may stay open, queries included.
pub const TCP_CONNECTION_TIME: Duration = Duration::from_secs(10);

/// How many TXT records `big.sandbox.test.` holds.
pub const BIG_TXT_RECORDS: usize = 40;

/// How often to try for a port free on both UDP and TCP.
const BIND_TRIES: usize = 8;

/// How many CNAMEs an answer follows (the zone has one; this bounds a loop).
const MAX_CNAME_CHAIN: usize = 8;

/// Starts the listener(s) on `ip` (port 0), serving until `stop` turns
/// true; returns the [`super::VARIABLES`] entries it provides.
pub async fn start(
    ip: IpAddr,
    stop: watch::Receiver<bool>,
) -> std::io::Result<Vec<(&'static str, String)>> {
    let (udp, tcp) = bind_pair(ip).await?;
    let port = udp.local_addr()?.port();
    let zone = Arc::new(Zone::sandbox()?);
    tokio::spawn(serve_udp(udp, zone.clone(), stop.clone()));
    tokio::spawn(serve_tcp(tcp, zone, stop));
    // An unspecified bind address is reachable at loopback.
    let shown = match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    tracing::debug!(%port, "sandbox dns listening");
    Ok(vec![(
        "sandbox_dns",
        SocketAddr::new(shown, port).to_string(),
    )])
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

/// Accepts connections up to the cap; each is served in its own task for
/// at most [`TCP_CONNECTION_TIME`].
async fn serve_tcp(listener: TcpListener, zone: Arc<Zone>, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
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
        let zone = zone.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = tokio::time::timeout(TCP_CONNECTION_TIME, serve_connection(stream, &zone)) => {}
                () = stopped(&mut stop) => {}
            }
        });
    }
}

/// Answers length-prefixed queries on one connection until the client
/// closes it, sends something too long, or fails.
async fn serve_connection(mut stream: TcpStream, zone: &Zone) -> io::Result<()> {
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
    }
}

/// What to do with one message.
#[derive(Debug)]
enum Reply {
    Answer(Message),
    /// No answer: garbage, a response, or the slow name.
    Silence,
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
            return Reply::Silence;
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
            Reply::Silence => panic!("no answer"),
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
            Reply::Silence
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
    fn garbage_and_responses_get_no_answer() {
        let zone = Zone::sandbox().unwrap();
        for bytes in [&b""[..], b"\x00\x01", &[0xff; 12], &[0x41; 300]] {
            assert!(matches!(zone.answer(bytes), Reply::Silence), "{bytes:?}");
        }
        let m = answered(ask(&zone, "api.sandbox.test.", RecordType::A));
        assert!(matches!(zone.answer(&m.to_vec().unwrap()), Reply::Silence));
    }
}
