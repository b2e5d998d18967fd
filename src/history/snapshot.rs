//! A minute's or an hour's latencies as stored: the standard HDR histogram
//! V2 encoding with deflate (`hdrhistogram`'s own serializer), of the one
//! histogram shape every latency record of synthmon has, so a stored
//! snapshot merges into any other without losing precision.

use crate::outcome::{Latencies, latency_histogram};
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

/// `latencies` encoded; `None` when empty (nothing to store) or when the
/// encoder fails (it writes to memory; logged by the caller as lost).
pub fn encode(latencies: &Latencies) -> Option<Vec<u8>> {
    if latencies.is_empty() {
        return None;
    }
    let mut h = latency_histogram()?;
    for (d, count) in latencies.iter() {
        h.saturating_record_n(
            crate::outcome::latency_us(d).into(),
            u32::try_from(count).unwrap_or(u32::MAX),
        );
    }
    let mut out = Vec::with_capacity(64);
    V2DeflateSerializer::new().serialize(&h, &mut out).ok()?;
    Some(out)
}

/// Adds the latencies of a stored snapshot into `into`; an unreadable blob
/// is an error the caller reports (the rest of a window still counts).
pub fn decode_into(blob: &[u8], into: &mut Latencies) -> Result<(), String> {
    let h: hdrhistogram::Histogram<u32> = Deserializer::new()
        .deserialize(&mut std::io::Cursor::new(blob))
        .map_err(|e| format!("a stored latency histogram is unreadable: {e:?}"))?;
    for v in h.iter_recorded() {
        into.record_n(
            std::time::Duration::from_micros(v.value_iterated_to()),
            u64::from(v.count_at_value()),
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_snapshot_round_trips_within_the_histograms_precision() {
        let mut l = Latencies::default();
        for ms in 1..=200u64 {
            l.record(Duration::from_millis(ms));
        }
        let blob = encode(&l).unwrap();
        assert!(blob.len() < 600, "{} bytes", blob.len());
        let mut back = Latencies::default();
        decode_into(&blob, &mut back).unwrap();
        decode_into(&blob, &mut back).unwrap();
        assert_eq!(back.len(), 400);
        let p95 = back.percentile(95.0).unwrap();
        assert!(
            p95 >= Duration::from_millis(190) && p95 <= Duration::from_millis(192),
            "{p95:?}"
        );
        assert!(encode(&Latencies::default()).is_none());
        assert!(decode_into(b"not a histogram", &mut back).is_err());
    }
}
