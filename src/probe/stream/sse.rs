//! Cutting a body into events: [`Parser`] reads `text/event-stream` as
//! the WHATWG EventSource algorithm does (any line ending, comments, `data`
//! lines joined, the last event id buffer, a leading byte order mark), or
//! takes each piece of a `chunked` body as one event, bounded by
//! `max_event_bytes` per event and per line.

/// How the body is cut into events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `text/event-stream`, events separated by blank lines.
    Sse,
    /// Any body; each piece as it arrives is one event.
    Chunked,
}

impl Mode {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Mode::Sse => "sse",
            Mode::Chunked => "chunked",
        }
    }
}

/// One event as parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct Event {
    /// The last event id buffer at dispatch; `None` until an `id:` field on
    /// this connection set it (or when it was set to "").
    pub id: Option<String>,
    /// The event carried an `id:` field of its own (else `id` is an
    /// earlier event's, as the EventSource rules keep it).
    pub own_id: bool,
    pub data: String,
}

/// Cuts a body into events, bounded by `max` bytes per event (and per line).
pub struct Parser {
    mode: Mode,
    max: u64,
    /// The line being read.
    line: Vec<u8>,
    /// The `data` of the event being read, lines joined with `\n`.
    data: String,
    has_data: bool,
    /// The last event id buffer: it persists from event to event.
    id: Option<String>,
    /// The event being read has an `id:` field.
    own_id: bool,
    /// A CR ended the previous chunk: an LF first in this one belongs to it.
    after_cr: bool,
    /// The start of the stream, where a byte order mark is dropped.
    at_start: bool,
}

impl Parser {
    pub fn new(mode: Mode, max: u64) -> Self {
        Parser {
            mode,
            max,
            line: Vec::new(),
            data: String::new(),
            has_data: false,
            id: None,
            own_id: false,
            after_cr: false,
            at_start: true,
        }
    }

    /// Feeds a piece of body, pushing every completed event to `out`. Fails
    /// with the size reached when an event grows past the cap (the events
    /// completed before it are still pushed).
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> Result<(), u64> {
        if self.mode == Mode::Chunked {
            if bytes.len() as u64 > self.max {
                return Err(bytes.len() as u64);
            }
            out.push(Event {
                id: None,
                own_id: false,
                data: String::from_utf8_lossy(bytes).into_owned(),
            });
            return Ok(());
        }
        for &byte in bytes {
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                continue;
            }
            match byte {
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(out);
                }
                b'\n' => self.end_line(out),
                _ => {
                    self.line.push(byte);
                    let size = (self.line.len() + self.data.len()) as u64;
                    if size > self.max {
                        return Err(size);
                    }
                }
            }
        }
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<Event>) {
        let mut line = std::mem::take(&mut self.line);
        if std::mem::take(&mut self.at_start) && line.starts_with(b"\xEF\xBB\xBF") {
            line.drain(..3);
        }
        if line.is_empty() {
            if self.has_data {
                out.push(Event {
                    id: self.id.clone(),
                    own_id: self.own_id,
                    data: std::mem::take(&mut self.data),
                });
            }
            self.data.clear();
            self.has_data = false;
            self.own_id = false;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let line = String::from_utf8_lossy(&line);
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => {
                self.id = (!value.is_empty()).then(|| value.to_owned());
                self.own_id = true;
            }
            // `event`, `retry` and unknown fields do not change what is
            // measured.
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(pieces: &[&[u8]]) -> Vec<Event> {
        let mut p = Parser::new(Mode::Sse, 1024);
        let mut out = Vec::new();
        for piece in pieces {
            p.feed(piece, &mut out).unwrap();
        }
        out
    }

    fn ev(id: Option<&str>, data: &str) -> Event {
        Event {
            id: id.map(str::to_owned),
            own_id: id.is_some(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn events_are_cut_at_blank_lines_whatever_the_line_ending() {
        let whole = parse(&[b"id: 1\ndata: a\n\nid: 2\r\ndata: b\r\n\r\nid: 3\rdata: c\r\r"]);
        assert_eq!(
            whole,
            vec![ev(Some("1"), "a"), ev(Some("2"), "b"), ev(Some("3"), "c")]
        );
        // The same bytes one at a time, CR LF split across pieces.
        let text = b"id: 1\ndata: a\n\nid: 2\r\ndata: b\r\n\r\nid: 3\rdata: c\r\r";
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(parse(&bytes), whole);
    }

    #[test]
    fn fields_follow_the_eventsource_rules() {
        let events = parse(&[
            b"\xEF\xBB\xBF: a comment\ndata:x\ndata:  y\nevent: tick\nretry: 10\n\n",
            b"data\n\n",
            b"id: 7\n\n",
            b"data: after id\n\n",
            b"id\ndata: reset\n\n",
        ]);
        assert_eq!(
            events,
            vec![
                ev(None, "x\n y"),
                ev(None, ""),
                // The id of an event without data is kept for the next,
                // which has no `id:` of its own.
                Event {
                    own_id: false,
                    ..ev(Some("7"), "after id")
                },
                // `id` with no value resets the buffer: its own id, empty.
                Event {
                    own_id: true,
                    ..ev(None, "reset")
                },
            ]
        );
        // A byte order mark split over pieces is dropped too.
        assert_eq!(
            parse(&[b"\xEF", b"\xBB", b"\xBFdata: z\n\n"]),
            vec![ev(None, "z")]
        );
        // An event without a terminating blank line is not dispatched.
        assert_eq!(parse(&[b"data: unfinished\n"]), vec![]);
    }

    #[test]
    fn an_event_or_line_over_the_cap_fails() {
        let mut p = Parser::new(Mode::Sse, 16);
        let mut out = Vec::new();
        p.feed(b"data: ok\n\n", &mut out).unwrap();
        let err = p.feed(b"data: 0123456789abcdef\n\n", &mut out).unwrap_err();
        assert_eq!(err, 17);
        assert_eq!(out, vec![ev(None, "ok")]);
        // Many short data lines add up.
        let mut p = Parser::new(Mode::Sse, 16);
        assert!(
            p.feed(b"data: 12345\ndata: 12345\ndata: 12345\n", &mut out)
                .is_err()
        );
        let mut p = Parser::new(Mode::Chunked, 4);
        p.feed(b"abcd", &mut out).unwrap();
        assert_eq!(p.feed(b"abcde", &mut out).unwrap_err(), 5);
    }
}
