//! What a `stream` run reports ([`StreamFacts`]: its gauges and
//! certificate expiry), and the caps on the event data it keeps.

use crate::outcome::KindFacts;
use serde::Serialize;

/// How many event data strings are kept for `data`.
pub const MAX_DATA_KEPT: usize = 100;
/// How many characters of each kept data string.
pub const MAX_DATA_CHARS: usize = 1024;

/// What a `stream` run saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StreamFacts {
    pub url: String,
    pub mode: &'static str,
    /// The status of the last response.
    pub status: Option<u16>,
    pub events: u64,
    /// From the start of the run to the first event.
    pub first_event_seconds: Option<f64>,
    /// The largest gap between two consecutive events; when a stall
    /// failed the run (`max_gap`), the wait from the last event to it
    /// counts too.
    pub max_gap_seconds: f64,
    pub last_event_id: Option<String>,
    pub reconnected: bool,
    /// The `Last-Event-ID` sent when reconnecting.
    pub resumed_from: Option<String>,
    /// Body bytes read, over every connection.
    pub bytes: u64,
    /// The first events' data (capped, see the module docs).
    pub data: Vec<String>,
    /// With `sequence = "numeric"`: what the id numbering showed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<super::sequence::Sequence>,
    /// Over https: the earliest `notAfter` of the certificates presented on
    /// the last connection, Unix seconds (`probe_ssl_earliest_cert_expiry`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_expiry: Option<i64>,
}

impl StreamFacts {
    /// Gauges for /metrics, labelled with probe and environment.
    pub fn gauges(&self) -> Vec<(&'static str, f64)> {
        let mut out = vec![
            ("probe_stream_events", self.events as f64),
            ("probe_stream_max_gap_seconds", self.max_gap_seconds),
        ];
        if let Some(first) = self.first_event_seconds {
            out.push(("probe_stream_first_event_seconds", first));
        }
        if let Some(sequence) = &self.sequence {
            out.extend(sequence.gauges());
        }
        out
    }
}

/// `data` cut to [`MAX_DATA_CHARS`] characters.
pub(super) fn cut(mut data: String) -> String {
    if let Some((at, _)) = data.char_indices().nth(MAX_DATA_CHARS) {
        data.truncate(at);
    }
    data
}

impl KindFacts for StreamFacts {
    fn gauges(&self) -> Vec<(&'static str, f64)> {
        StreamFacts::gauges(self)
    }
    fn cert_expiry(&self) -> Option<i64> {
        self.cert_expiry
    }
}
