//! The `websocket` probe against the sandbox's `/ws/*` endpoints (started
//! in-process by `once::run` for a `builtin:sandbox` environment) and a few
//! listeners of the test's own: a clean round trip, the precise reasons
//! (upgrade refused, early or abnormal close, stall, deadline, not the
//! protocol), contiguous phases, and the facts expressions read.

use crate::common;

use common::{load, run_all, write_config};
use std::collections::BTreeMap;
use std::time::Duration;
use synthmon::outcome::{FailureReason, Outcome};
use synthmon::probe::websocket::WebsocketFacts;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const BOUND: Duration = Duration::from_secs(15);

/// Runs each probe body (a `[websocket]` table) once in an environment on
/// the built-in sandbox; outcomes by probe name.
async fn run(probes: &[(&str, &str, &str)]) -> BTreeMap<String, Outcome> {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(String, String)> = probes
        .iter()
        .map(|(name, timeout, body)| {
            (
                format!("{name}.toml"),
                format!(
                    "name = \"{name}\"\nenvironments = [\"sandbox\"]\ntimeout = \"{timeout}\"\n\n[websocket]\n{body}\n"
                ),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let config = "[daemon]\nprobes = [\"probes/*.toml\"]\n\n[environments.sandbox]\nbase_url = \"builtin:sandbox\"\n";
    let path = write_config(dir.path(), config, &refs);
    let config = load(&path);
    run_all(&config, &BTreeMap::new())
        .await
        .into_iter()
        .map(|o| (o.probe.clone(), o))
        .collect()
}

fn facts(o: &Outcome) -> &WebsocketFacts {
    o.details
        .as_ref()
        .and_then(|d| d.get::<WebsocketFacts>())
        .unwrap_or_else(|| panic!("no websocket facts: {o:#?}"))
}

fn assert_failed(o: &Outcome, reason: FailureReason, message: &str) {
    assert!(!o.success, "{o:#?}");
    assert_eq!(o.reason, Some(reason), "{o:#?}");
    let error = o.error.as_deref().unwrap_or_default();
    assert!(error.contains(message), "{error:?} lacks {message:?}");
}

#[tokio::test]
async fn a_round_trip_passes_with_contiguous_phases_and_readable_facts() {
    common::within(BOUND, async {
        let outcomes = run(&[(
            "echo",
            "3s",
            "url = \"/ws/echo\"\nsubprotocols = [\"echo.v1\"]\n\
             send = [ { text = \"hi {{ probe }}\" }, { json = { n = 2, id = \"{{ run_id }}\" } }, { binary = \"raw\" } ]\n\
             expect = [\"count == 3\", \"messages[0].text == 'hi echo'\", \"messages[1].json.n == 2\", \
             \"messages[2].kind == 'binary' && messages[2].text == 'raw'\", \"subprotocol == 'echo.v1'\", \
             \"status == 101\", \"close.code == 1000 && close.by == 'client'\", \"first_message < duration('1s')\", \
             \"timings.upgrade > duration('0s')\"]",
        )])
        .await;
        let o = &outcomes["echo"];
        assert!(o.success, "{o:#?}");
        assert_eq!(o.kind, "websocket");
        assert_eq!(o.assertions.len(), 9);
        let names: Vec<&str> = o.phases.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                "resolve",
                "connect",
                "tls",
                "upgrade",
                "first_message",
                "messages",
                "close"
            ]
        );
        let sum: Duration = o.phases.iter().map(|p| p.seconds).sum();
        assert_eq!(sum, o.duration, "the phases add up to the run");
        let f = facts(o);
        assert_eq!((f.sent, f.received), (3, 3));
        assert_eq!(f.close_code, Some(1000));
        assert!(f.url.starts_with("ws://127.0.0.1:"), "{}", f.url);
        let gauges = o.details.as_ref().unwrap().gauges();
        assert!(gauges.contains(&("probe_websocket_messages", 3.0)), "{gauges:?}");
        // The JSON report carries the facts as the kind's own fields.
        let json = serde_json::to_value(o).unwrap();
        assert_eq!(json["details"]["received"], 3, "{json:#}");
    })
    .await;
}

#[tokio::test]
async fn each_fault_has_its_own_reason_and_sentence() {
    common::within(BOUND, async {
        let outcomes = run(&[
            ("refused", "2s", "url = \"/ws/reject?status=403\""),
            ("not-upgradable", "2s", "url = \"/health\""),
            (
                "early-close",
                "2s",
                "url = \"/ws/echo?close_after=1&close_code=4001\"\n\
                 send = [ { text = \"a\" }, { text = \"b\" }, { text = \"c\" } ]\nmessages = 3",
            ),
            (
                "stalled",
                "3s",
                "url = \"/ws/ticker?count=5&interval_ms=20&stall_after=2\"\nmessages = 5\nmax_gap = \"300ms\"",
            ),
            (
                "late-first",
                "3s",
                "url = \"/ws/ticker?first_delay_ms=2000\"\nfirst_message_timeout = \"200ms\"",
            ),
            (
                "deadline",
                "500ms",
                "url = \"/ws/ticker?first_delay_ms=5000\"",
            ),
            (
                "ticker-done",
                "3s",
                "url = \"/ws/ticker?count=3&interval_ms=20\"\nduration = \"2s\"\n\
                 expect = [\"count == 3\", \"messages[2].json.seq == 3\", \"close.by == 'server' && close.code == 1000\"]",
            ),
        ])
        .await;
        assert_failed(
            &outcomes["refused"],
            FailureReason::Status,
            "the server refused the upgrade: 403 Forbidden",
        );
        assert_eq!(facts(&outcomes["refused"]).status, Some(403));
        assert_failed(
            &outcomes["not-upgradable"],
            FailureReason::Status,
            "the server refused the upgrade: 200 OK",
        );
        assert_failed(
            &outcomes["early-close"],
            FailureReason::Closed,
            "the server closed the connection with code 4001 (bye) after 1 of 3 messages",
        );
        let stalled = &outcomes["stalled"];
        assert_failed(
            stalled,
            FailureReason::StreamStalled,
            "no message for longer than max_gap (300ms) after 2 messages",
        );
        // The stall that failed the run counts as the largest gap.
        assert!(facts(stalled).max_gap_seconds >= 0.3, "{stalled:#?}");
        assert_failed(
            &outcomes["late-first"],
            FailureReason::StreamStalled,
            "no message within first_message_timeout (200ms)",
        );
        assert_failed(
            &outcomes["deadline"],
            FailureReason::Timeout,
            "waiting for the first message (first_message)",
        );
        let done = &outcomes["ticker-done"];
        assert!(done.success, "a server's normal close after the stream is fine: {done:#?}");
    })
    .await;
}

#[tokio::test]
async fn a_peer_that_does_not_speak_http_is_a_protocol_failure() {
    common::within(BOUND, async {
        // Greets like an SMTP server and closes: no HTTP response at all.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.write_all(b"220 not a web server\r\n").await;
                let _ = socket.shutdown().await;
            }
        });
        let outcomes = run(&[("smtp", "2s", &format!("url = \"ws://{addr}/\""))]).await;
        server.abort();
        let o = &outcomes["smtp"];
        assert_failed(o, FailureReason::Protocol, "the upgrade failed: ");
        assert!(!o.responded || facts(o).status.is_none(), "{o:#?}");
    })
    .await;
}

#[tokio::test]
async fn a_bad_table_is_reported_at_load_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[daemon]\nprobes = [\"probes/*.toml\"]\n\n[environments.sandbox]\nbase_url = \"builtin:sandbox\"\n",
        &[(
            "bad.toml",
            "name = \"bad\"\nenvironments = [\"sandbox\"]\n\n[websocket]\nurl = \"http://example.test/\"\nsend = [ { text = \"a\", binary = \"b\" } ]\nsubprotocol = [\"x\"]\n",
        )],
    );
    let opts = synthmon::config::LoadOptions {
        config_path: Some(path),
        overrides: vec![],
    };
    let diags = synthmon::plan::load(&opts).unwrap_err().to_string();
    assert!(
        diags.contains("bad.toml:7:1: error: websocket.subprotocol: unknown key `subprotocol`"),
        "{diags}"
    );
    assert!(diags.contains("did you mean `subprotocols`?"), "{diags}");
    assert!(
        diags.contains("websocket.url: expected a ws:// or wss:// URL or a path"),
        "{diags}"
    );
    assert!(
        diags.contains("websocket.send[0]: expected exactly one of `text`, `json` or `binary`"),
        "{diags}"
    );
}
