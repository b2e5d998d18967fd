//! The sandbox's WebSocket routes, for rehearsing `websocket` probes.
//!
//! `GET /ws/echo` echoes text and binary messages and can close first after
//! a number of them; `GET /ws/ticker` sends numbered JSON messages at an
//! interval and can stall part-way to rehearse gap detection;
//! `GET /ws/reject` never upgrades. Messages over [`MAX_MESSAGE`] are
//! refused (close code 1009), a connection lives at most [`MAX_LIFETIME`],
//! and every connection is closed (code 1001) when the sandbox shuts down.
//!
//! An upgraded connection is served by a task axum spawns, outside the
//! server's graceful shutdown, so every wait in a session watches the
//! sandbox's shutdown signal and the connection's deadline itself.

use super::{ApiError, AppState, MAX_DELAY_MS, QueryParams, answerable_status, json_status};
use axum::Router;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::json;
use std::error::Error as _;
use std::time::{Duration, SystemTime};
use tokio::time::{Instant, sleep_until, timeout_at};
use tokio_tungstenite::tungstenite;

/// The largest message (and frame) a client may send.
const MAX_MESSAGE: usize = 64 * 1024;
/// The longest one connection lives, closing handshake included.
const MAX_LIFETIME: Duration = Duration::from_secs(60);
/// How long a closing handshake the sandbox starts may take.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// The most messages `/ws/ticker` sends.
const MAX_COUNT: u64 = 10_000;
/// The longest interval between two ticker messages.
const MAX_INTERVAL_MS: u64 = 10_000;
/// The subprotocol `/ws/echo` selects when the client offers it.
const ECHO_PROTOCOL: &str = "echo.v1";

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ws/echo", get(echo))
        .route("/ws/ticker", get(ticker))
        .route("/ws/reject", get(reject))
}

/// `GET /ws/echo?close_after=N&close_code=C`: echoes every text message as
/// text and every binary one as binary. After N echoes the server closes
/// with code C (default 1000) and reason "bye"; N = 0 closes at once.
/// Selects the subprotocol `echo.v1` when the client offers it.
async fn echo(
    State(state): State<AppState>,
    query: QueryParams,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let close_after = query.u64("close_after")?;
    let code = close_code(&query)?;
    let upgrade = accept(upgrade)?.protocols([ECHO_PROTOCOL]);
    Ok(serve(upgrade, state, move |mut session| async move {
        let mut echoed = 0;
        let end = loop {
            if close_after.is_some_and(|n| echoed >= n) {
                break End::Close(code, "bye");
            }
            let reply = match session.next(None).await {
                Event::Message(Message::Text(text)) => Message::Text(text),
                Event::Message(Message::Binary(data)) => Message::Binary(data),
                // Pings are answered, and a client's close frame is
                // answered by the next read, which then ends the stream.
                Event::Message(_) | Event::Tick => continue,
                Event::End(end) => break end,
            };
            if let Err(end) = session.send(reply).await {
                break end;
            }
            echoed += 1;
        };
        session.finish(end).await;
    }))
}

/// How `/ws/ticker` paces its messages.
#[derive(Clone, Copy, Debug)]
struct Pace {
    count: u64,
    interval: Duration,
    first_delay: Duration,
    /// Stop sending (but stay open) after this many messages.
    stall_after: Option<u64>,
    close_code: u16,
}

/// `GET /ws/ticker?count=N&interval_ms=M&first_delay_ms=D&stall_after=K&close_code=C`:
/// sends `{"seq": n, "at_ms": <unix ms>}` for n = 1 … N (default 5, at most
/// 10,000), M ms apart (default 100, 1 to 10,000), the first after D ms
/// (default 0, at most 60,000), then closes with code C (default 1000) and
/// reason "done". With K < N it goes quiet after message K and stays open
/// until the client leaves, the sandbox shuts down or the lifetime ends.
async fn ticker(
    State(state): State<AppState>,
    query: QueryParams,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let pace = Pace {
        count: query.u64("count")?.unwrap_or(5).clamp(1, MAX_COUNT),
        interval: Duration::from_millis(
            query
                .u64("interval_ms")?
                .unwrap_or(100)
                .clamp(1, MAX_INTERVAL_MS),
        ),
        first_delay: Duration::from_millis(
            query.u64("first_delay_ms")?.unwrap_or(0).min(MAX_DELAY_MS),
        ),
        stall_after: query.u64("stall_after")?,
        close_code: close_code(&query)?,
    };
    let upgrade = accept(upgrade)?;
    Ok(serve(upgrade, state, move |mut session| async move {
        let mut due = Instant::now() + pace.first_delay;
        let mut seq = 0;
        let end = loop {
            if seq >= pace.count {
                break End::Close(pace.close_code, "done");
            }
            let stalled = pace.stall_after.is_some_and(|k| seq >= k);
            match session.next((!stalled).then_some(due)).await {
                Event::Tick => {}
                // Client messages are read (so pings are answered and a
                // close is noticed) but otherwise ignored.
                Event::Message(_) => continue,
                Event::End(end) => break end,
            }
            seq += 1;
            if let Err(end) = session.send(Message::text(tick(seq))).await {
                break end;
            }
            due += pace.interval;
        };
        session.finish(end).await;
    }))
}

/// One ticker message.
fn tick(seq: u64) -> String {
    let at_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    json!({ "seq": seq, "at_ms": at_ms }).to_string()
}

/// `GET /ws/reject?status=S`: never upgrades; answers S (default 403,
/// 200 to 599) with a short JSON body.
async fn reject(query: QueryParams) -> Result<Response, ApiError> {
    let status = match query.u64("status")? {
        Some(code) => answerable_status("status", code)?,
        None => StatusCode::FORBIDDEN,
    };
    Ok(json_status(
        status,
        json!({ "error": "upgrade rejected", "status": status.as_u16() }),
    ))
}

/// The `close_code` parameter (default 1000): a code an endpoint may send,
/// 1000–1003, 1007–1013 or 3000–4999 (1004–1006 and 1015 are reserved,
/// the rest unassigned).
fn close_code(query: &QueryParams) -> Result<u16, ApiError> {
    let Some(code) = query.u64("close_code")? else {
        return Ok(close_code::NORMAL);
    };
    u16::try_from(code)
        .ok()
        .filter(|code| matches!(code, 1000..=1003 | 1007..=1013 | 3000..=4999))
        .ok_or_else(|| {
            ApiError::invalid(
                "close_code",
                "must be a close code in 1000-1003, 1007-1013 or 3000-4999",
            )
        })
}

/// The upgrade, or axum's reason to refuse it (a 4xx) as a sandbox error.
fn accept(
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<WebSocketUpgrade, ApiError> {
    upgrade
        .map(|upgrade| {
            upgrade
                .max_message_size(MAX_MESSAGE)
                .max_frame_size(MAX_MESSAGE)
        })
        .map_err(|rejection| ApiError::new(rejection.status(), rejection.body_text()))
}

/// Completes the upgrade and runs `session` on the connection, for at most
/// [`MAX_LIFETIME`].
fn serve<F, Fut>(upgrade: WebSocketUpgrade, state: AppState, session: F) -> Response
where
    F: FnOnce(Session) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    upgrade.on_upgrade(move |socket| async move {
        let deadline = Instant::now() + MAX_LIFETIME;
        let session = session(Session {
            socket,
            state,
            wind_down: deadline - CLOSE_GRACE,
            deadline,
        });
        // Every wait inside is bounded already; this is the backstop.
        let _ = timeout_at(deadline, session).await;
    })
}

/// Why a session ends.
#[derive(Debug)]
enum End {
    /// The client closed or went away, or the connection failed: nothing
    /// more to send.
    Gone,
    /// The server closes with this code and reason, and waits for the
    /// client's answer.
    Close(u16, &'static str),
    /// The server sends a close frame with this code and reason but reads
    /// nothing more: after a message over the limit the reader is mid-frame,
    /// and reading on would buffer the rest of that frame.
    Refuse(u16, &'static str),
}

/// What a session waits for.
#[derive(Debug)]
enum Event {
    Message(Message),
    /// The time asked for has come.
    Tick,
    End(End),
}

/// The reason of a close because the sandbox shuts down.
const SHUTTING_DOWN: &str = "sandbox is shutting down";
/// The reason of a close because the connection has lived long enough.
const LIFETIME: &str = "connection lifetime reached";

/// One upgraded connection with its bounds.
struct Session {
    socket: WebSocket,
    state: AppState,
    /// When the session stops so that its close fits before `deadline`.
    wind_down: Instant,
    deadline: Instant,
}

impl Session {
    /// The next message from the client, or [`Event::Tick`] at `tick`, or
    /// the end of the session.
    async fn next(&mut self, tick: Option<Instant>) -> Event {
        let tick = async move {
            match tick {
                Some(at) => sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = self.state.shutdown_signal() => {
                Event::End(End::Close(close_code::AWAY, SHUTTING_DOWN))
            }
            () = sleep_until(self.wind_down) => {
                Event::End(End::Close(close_code::AWAY, LIFETIME))
            }
            received = self.socket.recv() => match received {
                Some(Ok(message)) => Event::Message(message),
                Some(Err(err)) if too_big(&err) => {
                    Event::End(End::Refuse(close_code::SIZE, "message too big"))
                }
                Some(Err(_)) | None => Event::End(End::Gone),
            },
            () = tick => Event::Tick,
        }
    }

    /// Sends one message, unless the client is gone or the session ends
    /// first.
    async fn send(&mut self, message: Message) -> Result<(), End> {
        tokio::select! {
            biased;
            () = self.state.shutdown_signal() => {
                Err(End::Close(close_code::AWAY, SHUTTING_DOWN))
            }
            () = sleep_until(self.wind_down) => Err(End::Close(close_code::AWAY, LIFETIME)),
            sent = self.socket.send(message) => sent.map_err(|_| End::Gone),
        }
    }

    /// Ends the session: sends the close frame of [`End::Close`] and waits
    /// (briefly) for the client's answer, or sends that of [`End::Refuse`],
    /// then drops the connection.
    async fn finish(mut self, end: End) {
        let (code, reason, drain) = match end {
            End::Gone => return,
            End::Close(code, reason) => (code, reason, true),
            End::Refuse(code, reason) => (code, reason, false),
        };
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let until = self.deadline.min(Instant::now() + CLOSE_GRACE);
        let _ = timeout_at(until, async {
            if self.socket.send(Message::Close(Some(frame))).await.is_ok() && drain {
                // Messages sent before the client's close are dropped; the
                // stream ends once the close handshake is complete.
                while let Some(Ok(_)) = self.socket.recv().await {}
            }
        })
        .await;
    }
}

/// Whether a read failed because the client's message or frame was over
/// [`MAX_MESSAGE`].
fn too_big(err: &axum::Error) -> bool {
    err.source()
        .and_then(|source| source.downcast_ref::<tungstenite::Error>())
        .is_some_and(|err| matches!(err, tungstenite::Error::Capacity(_)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::{Sandbox, SandboxOptions};
    use futures_util::{SinkExt, StreamExt};
    use serde_json::Value;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::time::timeout;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::error::{ProtocolError, SubProtocolError};
    use tokio_tungstenite::tungstenite::handshake::client::Response;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
    use tokio_tungstenite::tungstenite::{Bytes, Error, Message};

    /// The longest any one test may run.
    const TEST_LIMIT: Duration = Duration::from_secs(10);
    /// The longest a test waits for one message it expects.
    const MESSAGE_LIMIT: Duration = Duration::from_secs(3);

    type Client = WebSocketStream<TcpStream>;

    /// Runs a test body, failing it if it takes longer than [`TEST_LIMIT`].
    async fn bounded<F: Future>(test: F) -> F::Output {
        timeout(TEST_LIMIT, test).await.expect("test timed out")
    }

    async fn start() -> Sandbox {
        Sandbox::start("127.0.0.1:0".parse().unwrap(), SandboxOptions::default())
            .await
            .unwrap()
    }

    /// Opens `path` over a fresh TCP connection, offering `protocols`.
    async fn connect(
        sandbox: &Sandbox,
        path: &str,
        protocols: &[&str],
    ) -> Result<(Client, Response), Error> {
        let addr = sandbox.addr();
        let mut request = format!("ws://{addr}{path}").into_client_request()?;
        if !protocols.is_empty() {
            request.headers_mut().insert(
                "sec-websocket-protocol",
                protocols.join(", ").parse().unwrap(),
            );
        }
        let stream = TcpStream::connect(addr).await.unwrap();
        tokio_tungstenite::client_async(request, stream).await
    }

    async fn open(sandbox: &Sandbox, path: &str) -> Client {
        connect(sandbox, path, &[]).await.unwrap().0
    }

    fn normal_close() -> CloseFrame {
        CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }
    }

    /// The next message, failing the test if none comes in time.
    async fn next(client: &mut Client) -> Message {
        timeout(MESSAGE_LIMIT, client.next())
            .await
            .expect("no message in time")
            .expect("stream ended")
            .expect("read failed")
    }

    /// The close frame the server sends next (messages before it fail the
    /// test); then the stream must end.
    async fn closed_with(client: &mut Client) -> CloseFrame {
        let frame = match next(client).await {
            Message::Close(Some(frame)) => frame,
            other => panic!("expected a close frame, got {other:?}"),
        };
        let end = timeout(MESSAGE_LIMIT, client.next())
            .await
            .expect("stream did not end");
        assert!(end.is_none(), "after close: {end:?}");
        frame
    }

    #[tokio::test]
    async fn echo_round_trips_text_and_binary_and_closes_cleanly() {
        bounded(async {
            let sandbox = start().await;
            let (mut client, response) = connect(&sandbox, "/ws/echo", &[]).await.unwrap();
            assert_eq!(response.status(), 101);
            assert!(response.headers().get("sec-websocket-protocol").is_none());
            assert_eq!(response.headers()["x-sandbox"], "synthmon");

            client.send(Message::text("hello")).await.unwrap();
            assert_eq!(next(&mut client).await, Message::text("hello"));
            let data = Bytes::from_static(&[0, 159, 146, 150, 255]);
            client.send(Message::binary(data.clone())).await.unwrap();
            assert_eq!(next(&mut client).await, Message::Binary(data));
            client.send(Message::Ping(Bytes::from("p"))).await.unwrap();
            assert_eq!(next(&mut client).await, Message::Pong(Bytes::from("p")));
            // The largest message allowed comes back whole.
            let large = "x".repeat(super::MAX_MESSAGE);
            client.send(Message::text(large.clone())).await.unwrap();
            assert_eq!(next(&mut client).await, Message::text(large));

            client.close(Some(normal_close())).await.unwrap();
            let frame = closed_with(&mut client).await;
            assert_eq!(frame.code, CloseCode::Normal);
            sandbox.shutdown().await;
        })
        .await;
    }

    #[tokio::test]
    async fn echo_close_after_uses_the_close_code() {
        bounded(async {
            let sandbox = start().await;
            let mut client = open(&sandbox, "/ws/echo?close_after=2&close_code=4001").await;
            for text in ["one", "two"] {
                client.send(Message::text(text)).await.unwrap();
                assert_eq!(next(&mut client).await, Message::text(text));
            }
            let frame = closed_with(&mut client).await;
            assert_eq!(u16::from(frame.code), 4001);
            assert_eq!(frame.reason.as_str(), "bye");

            let mut client = open(&sandbox, "/ws/echo?close_after=0").await;
            let frame = closed_with(&mut client).await;
            assert_eq!(frame.code, CloseCode::Normal);
            sandbox.shutdown().await;
        })
        .await;
    }

    #[tokio::test]
    async fn echo_refuses_a_message_over_the_limit() {
        bounded(async {
            let sandbox = start().await;
            let mut client = open(&sandbox, "/ws/echo").await;
            let big = "x".repeat(super::MAX_MESSAGE + 1);
            client.send(Message::text(big)).await.unwrap();
            match next(&mut client).await {
                Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Size),
                other => panic!("expected a close frame, got {other:?}"),
            }
            // The server drops the connection without reading the rest, so
            // the stream ends, possibly with a reset; no echo comes.
            let after = timeout(MESSAGE_LIMIT, client.next())
                .await
                .expect("stream did not end");
            assert!(matches!(after, None | Some(Err(_))), "{after:?}");

            // The same holds for a message split over several frames.
            let mut client = open(&sandbox, "/ws/echo").await;
            let half = "y".repeat(super::MAX_MESSAGE / 2 + 1);
            client
                .send(Message::Frame(Frame::message(
                    half.clone(),
                    OpCode::Data(Data::Text),
                    false,
                )))
                .await
                .unwrap();
            client
                .send(Message::Frame(Frame::message(
                    half,
                    OpCode::Data(Data::Continue),
                    true,
                )))
                .await
                .unwrap();
            match next(&mut client).await {
                Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Size),
                other => panic!("expected a close frame, got {other:?}"),
            }

            // The server is still up and serving.
            let mut client = open(&sandbox, "/ws/echo").await;
            client.send(Message::text("still here")).await.unwrap();
            assert_eq!(next(&mut client).await, Message::text("still here"));
            sandbox.shutdown().await;
        })
        .await;
    }

    #[tokio::test]
    async fn echo_selects_its_subprotocol() {
        bounded(async {
            let sandbox = start().await;
            let (_, response) = connect(&sandbox, "/ws/echo", &["chat", "echo.v1"])
                .await
                .unwrap();
            assert_eq!(response.headers()["sec-websocket-protocol"], "echo.v1");
            // A client offering only unknown protocols gets none; tungstenite
            // refuses a server that answers without one it asked for.
            let refused = connect(&sandbox, "/ws/echo", &["chat"]).await;
            assert!(
                matches!(
                    refused,
                    Err(Error::Protocol(
                        ProtocolError::SecWebSocketSubProtocolError(
                            SubProtocolError::NoSubProtocol
                        )
                    ))
                ),
                "{refused:?}"
            );
            sandbox.shutdown().await;
        })
        .await;
    }

    #[tokio::test]
    async fn ticker_sends_count_messages_in_order_then_closes() {
        bounded(async {
            let sandbox = start().await;
            let mut client = open(&sandbox, "/ws/ticker?count=4&interval_ms=20").await;
            let mut last_at = 0;
            for seq in 1..=4 {
                let Message::Text(text) = next(&mut client).await else {
                    panic!("expected a text message");
                };
                let tick: Value = serde_json::from_str(text.as_str()).unwrap();
                assert_eq!(tick["seq"], seq, "{tick}");
                let at = tick["at_ms"].as_u64().unwrap();
                assert!(at >= last_at && at > 1_600_000_000_000, "{tick}");
                last_at = at;
            }
            let frame = closed_with(&mut client).await;
            assert_eq!(frame.code, CloseCode::Normal);
            assert_eq!(frame.reason.as_str(), "done");

            let mut client = open(&sandbox, "/ws/ticker?count=1&close_code=1011").await;
            assert!(matches!(next(&mut client).await, Message::Text(_)));
            assert_eq!(closed_with(&mut client).await.code, CloseCode::Error);
            sandbox.shutdown().await;
        })
        .await;
    }

    #[tokio::test]
    async fn ticker_stalls_and_shutdown_closes_it() {
        bounded(async {
            let sandbox = start().await;
            let mut client =
                open(&sandbox, "/ws/ticker?count=10&interval_ms=50&stall_after=2").await;
            for seq in 1..=2 {
                let Message::Text(text) = next(&mut client).await else {
                    panic!("expected a text message");
                };
                let tick: Value = serde_json::from_str(text.as_str()).unwrap();
                assert_eq!(tick["seq"], seq);
            }
            // Quiet, but open: nothing for three intervals and more.
            let quiet = timeout(Duration::from_millis(300), client.next()).await;
            assert!(quiet.is_err(), "expected silence, got {quiet:?}");
            // The stalled connection still answers pings.
            client.send(Message::Ping(Bytes::from("p"))).await.unwrap();
            assert_eq!(next(&mut client).await, Message::Pong(Bytes::from("p")));

            sandbox.shutdown().await;
            let frame = closed_with(&mut client).await;
            assert_eq!(frame.code, CloseCode::Away);
        })
        .await;
    }

    #[tokio::test]
    async fn ticker_waits_for_the_first_delay() {
        bounded(async {
            let sandbox = start().await;
            let mut client = open(&sandbox, "/ws/ticker?count=1&first_delay_ms=400").await;
            let early = timeout(Duration::from_millis(200), client.next()).await;
            assert!(early.is_err(), "expected nothing yet, got {early:?}");
            assert!(matches!(next(&mut client).await, Message::Text(_)));
            assert_eq!(closed_with(&mut client).await.code, CloseCode::Normal);
            sandbox.shutdown().await;
        })
        .await;
    }

    #[tokio::test]
    async fn reject_answers_its_status() {
        bounded(async {
            let sandbox = start().await;
            for (path, status) in [("/ws/reject", 403), ("/ws/reject?status=503", 503)] {
                match connect(&sandbox, path, &[]).await {
                    Err(Error::Http(response)) => {
                        assert_eq!(response.status(), status, "{path}");
                        let body = response.body().as_deref().unwrap_or_default();
                        let body: Value = serde_json::from_slice(body).unwrap();
                        assert_eq!(body["status"], status, "{path}");
                    }
                    other => panic!("{path}: expected an HTTP error, got {other:?}"),
                }
            }
            sandbox.shutdown().await;
        })
        .await;
    }

    #[tokio::test]
    async fn bad_parameters_are_refused_before_the_upgrade() {
        bounded(async {
            let sandbox = start().await;
            for path in [
                "/ws/reject?status=99",
                "/ws/reject?status=abc",
                "/ws/echo?close_code=1005",
                "/ws/echo?close_code=999",
                "/ws/echo?close_after=-1",
                "/ws/ticker?count=x",
                "/ws/ticker?close_code=5000",
            ] {
                match connect(&sandbox, path, &[]).await {
                    Err(Error::Http(response)) => assert_eq!(response.status(), 400, "{path}"),
                    other => panic!("{path}: expected a 400, got {other:?}"),
                }
            }
            sandbox.shutdown().await;
        })
        .await;
    }

    #[tokio::test]
    async fn plain_get_is_not_upgraded() {
        bounded(async {
            let sandbox = start().await;
            let mut stream = TcpStream::connect(sandbox.addr()).await.unwrap();
            let request = "GET /ws/echo HTTP/1.1\r\nHost: sandbox\r\nConnection: close\r\n\r\n";
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            let status: u16 = response
                .strip_prefix("HTTP/1.1 ")
                .and_then(|rest| rest.get(..3))
                .and_then(|code| code.parse().ok())
                .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
            assert!((400..500).contains(&status), "{response}");
            sandbox.shutdown().await;
        })
        .await;
    }
}
