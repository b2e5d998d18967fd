//! The gRPC wire, by hand: length-prefixed messages ([`frame`],
//! [`unframe`]), protobuf varints and fields, the health `Check` request
//! and response, status codes and their names, the HTTP-to-gRPC status
//! mapping, and `grpc-message` percent-decoding. The sandbox's server uses
//! the same framing, so client and server agree.

use bytes::{BufMut, Bytes, BytesMut};

/// The method every run calls.
pub const HEALTH_CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// The longest `grpc-message` kept in facts and messages.
const MAX_MESSAGE_CHARS: usize = 512;

/// The framed `HealthCheckRequest { service }`: field 1, a string, left out
/// when empty (proto3).
pub(super) fn health_request(service: &str) -> Bytes {
    let mut message = BytesMut::new();
    if !service.is_empty() {
        message.put_u8(0x0a);
        put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    frame(&message)
}

/// A gRPC length-prefixed message, uncompressed.
pub fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(0);
    out.put_u32(message.len() as u32);
    out.extend_from_slice(message);
    out.freeze()
}

/// The one message of a length-prefixed body; `Err` says what is wrong.
pub fn unframe(body: &[u8]) -> Result<&[u8], String> {
    let [flag, a, b, c, d, rest @ ..] = body else {
        return Err(format!(
            "expected a length-prefixed message, got {} bytes",
            body.len()
        ));
    };
    if *flag != 0 {
        return Err("the message is compressed, but no compression was offered".to_owned());
    }
    let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
    if rest.len() != len {
        return Err(format!(
            "the message announces {len} bytes, the body holds {}",
            rest.len()
        ));
    }
    Ok(rest)
}

fn put_varint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// Reads a varint at the start of `input`, returning it and the rest.
fn varint(input: &[u8]) -> Result<(u64, &[u8]), String> {
    let mut value = 0u64;
    for (i, byte) in input.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, &input[i + 1..]));
        }
    }
    Err("truncated or overlong varint".to_owned())
}

/// Walks the fields of a protobuf message, calling `on_field` with each
/// field number and its varint value (or `None` for other wire types, which
/// are skipped).
pub fn fields(
    mut input: &[u8],
    mut on_field: impl FnMut(u64, Option<u64>, &[u8]),
) -> Result<(), String> {
    while !input.is_empty() {
        let (key, rest) = varint(input)?;
        let (number, wire) = (key >> 3, key & 7);
        input = match wire {
            0 => {
                let (v, rest) = varint(rest)?;
                on_field(number, Some(v), &[]);
                rest
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                rest.get(n..).ok_or("truncated fixed-width field")?
            }
            2 => {
                let (len, rest) = varint(rest)?;
                let len = usize::try_from(len).map_err(|_| "field too long")?;
                let bytes = rest.get(..len).ok_or("truncated length-delimited field")?;
                on_field(number, None, bytes);
                &rest[len..]
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
    }
    Ok(())
}

/// The `status` of a framed `HealthCheckResponse` (0, UNKNOWN, when the
/// field is absent, as proto3 defines).
pub fn decode_health_response(body: &[u8]) -> Result<u64, String> {
    let message = unframe(body)?;
    let mut status = 0;
    fields(message, |number, value, _| {
        if let (1, Some(v)) = (number, value) {
            status = v;
        }
    })?;
    Ok(status)
}

/// The name of a `ServingStatus` value.
pub(crate) fn serving_status_name(value: u64) -> String {
    match value {
        0 => "UNKNOWN".to_owned(),
        1 => "SERVING".to_owned(),
        2 => "NOT_SERVING".to_owned(),
        3 => "SERVICE_UNKNOWN".to_owned(),
        other => format!("UNKNOWN({other})"),
    }
}

/// gRPC's NOT_FOUND: a `Check` for a service the server does not know.
pub(super) const NOT_FOUND: u32 = 5;

/// The canonical name of a gRPC status code.
pub fn code_name(code: u32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNRECOGNIZED",
    }
}

/// The gRPC code for an HTTP status that came without a `grpc-status`
/// (gRPC's "HTTP to gRPC status code mapping").
pub(super) fn http_to_grpc(status: u16) -> u32 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        _ => 2,
    }
}

/// Decodes a percent-encoded `grpc-message`, capped in length.
pub fn percent_decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (raw[i], raw.get(i + 1).copied(), raw.get(i + 2).copied()) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    let text = String::from_utf8_lossy(&out);
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_encoded_like_protobuf_does() {
        // protoc --encode: service "orders" is 0a 06 "orders".
        assert_eq!(&health_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &health_request("orders")[..],
            &[0, 0, 0, 0, 8, 0x0a, 6, b'o', b'r', b'd', b'e', b'r', b's']
        );
        let long = "s".repeat(200);
        let framed = health_request(&long);
        // 200 needs a two-byte varint: c8 01.
        assert_eq!(&framed[5..8], &[0x0a, 0xc8, 0x01]);
        assert_eq!(framed.len(), 5 + 3 + 200);
    }

    #[test]
    fn the_response_is_decoded_and_unknown_fields_skipped() {
        assert_eq!(decode_health_response(&frame(&[0x08, 0x01])).unwrap(), 1);
        assert_eq!(decode_health_response(&frame(&[])).unwrap(), 0);
        // An unknown string field 2 and a fixed32 field 3 around the status.
        let msg = [0x12, 2, b'h', b'i', 0x08, 0x02, 0x1d, 1, 2, 3, 4];
        assert_eq!(decode_health_response(&frame(&msg)).unwrap(), 2);
        assert!(
            decode_health_response(&[1, 0, 0, 0, 0])
                .unwrap_err()
                .contains("compressed")
        );
        assert!(
            decode_health_response(&[0, 0, 0, 0, 3, 0x08])
                .unwrap_err()
                .contains("announces 3 bytes")
        );
        assert!(decode_health_response(&frame(&[0x08])).is_err());
        assert!(decode_health_response(&frame(&[0x08, 0xff])).is_err());
        assert!(decode_health_response(&frame(&[0x0a, 9, 1])).is_err());
    }

    #[test]
    fn grpc_messages_are_percent_decoded_and_capped() {
        assert_eq!(
            percent_decode(b"unknown%20service%3A x"),
            "unknown service: x"
        );
        assert_eq!(percent_decode(b"100%"), "100%");
        assert_eq!(percent_decode(b"caf%C3%A9"), "café");
        let long = percent_decode("x".repeat(2000).as_bytes());
        assert_eq!(long.chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn http_statuses_map_to_grpc_codes() {
        assert_eq!(code_name(http_to_grpc(404)), "UNIMPLEMENTED");
        assert_eq!(code_name(http_to_grpc(503)), "UNAVAILABLE");
        assert_eq!(code_name(http_to_grpc(401)), "UNAUTHENTICATED");
        assert_eq!(code_name(http_to_grpc(418)), "UNKNOWN");
    }
}
