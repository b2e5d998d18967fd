//! Sinks at fault (the reliability issue's item 4): every place synthmon
//! sends something, with that something misbehaving. Most rows are pinned
//! where the sink is tested in full; this file adds the rest and lists
//! where each row lives, so the table is whole in one place:
//!
//! | sink at fault                          | test                                                                 |
//! |----------------------------------------|----------------------------------------------------------------------|
//! | webhook answers 500                    | outbox.rs `a_failing_receiver_is_retried_while_a_healthy_one_gets_it_on_time` |
//! | webhook answers 429 with Retry-After   | outbox.rs `retry_after_is_honoured`                                  |
//! | webhook answers 400                    | outbox.rs `a_client_error_is_a_dead_letter_after_one_attempt`         |
//! | webhook hangs                          | outbox.rs `a_hanging_receiver_times_out_and_delays_no_other`          |
//! | SMTP server never greets               | email.rs `a_silent_server_times_out_as_transient`                     |
//! | SMTP server without STARTTLS           | regressions_sinks.rs `a_starttls_receiver_against_a_server_without_starttls_fails_permanently` |
//! | SMTP server closes an idle dialogue    | here: `an_smtp_server_that_closes_mid_dialogue_is_a_transient_failure_that_names_it` |
//! | OTLP collector down for the whole run  | otlp.rs `a_collector_that_is_down_never_blocks_*`, `daemon_keeps_its_schedule_with_the_collector_down` |
//! | OTLP collector hangs                   | otlp.rs `a_hanging_collector_never_blocks_*`, `memory_stays_flat_while_the_collector_hangs` |
//! | nobody scrapes /metrics for hours      | here: `metrics_nobody_scrapes_for_hours_keep_memory_flat_and_lose_no_count` |
//! | state directory read-only or full      | src/daemon/alerting.rs `an_unwritable_outbox_loses_no_notification_and_recovers_when_writable_again` |
//! | the process killed mid-delivery        | kill9.rs                                                             |

use crate::email::{notification, receiver};
use std::time::Duration;
use synthmon::alert::email::{self, SmtpTls};
use synthmon::alert::outbox::Attempt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Every test body runs under this bound.
const BOUND: Duration = Duration::from_secs(30);

/// An SMTP server that greets and answers EHLO, then closes the connection
/// when the client goes on (as a server does on its idle timeout or when
/// it drops a client).
async fn closes_after_ehlo() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut conn = BufReader::new(conn);
                if conn
                    .get_mut()
                    .write_all(b"220 closing.test ESMTP\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let mut line = String::new();
                while conn.read_line(&mut line).await.is_ok_and(|n| n > 0) {
                    if line.to_ascii_uppercase().starts_with("EHLO") {
                        let _ = conn
                            .get_mut()
                            .write_all(b"250-closing.test\r\n250 8BITMIME\r\n")
                            .await;
                        line.clear();
                        continue;
                    }
                    // Anything after EHLO: hang up without a word.
                    return;
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn an_smtp_server_that_closes_mid_dialogue_is_a_transient_failure_that_names_it() {
    crate::common::within(BOUND, async {
        let port = closes_after_ehlo().await;
        let mut r = receiver(port, SmtpTls::None, None);
        r.settings.username = None;
        r.settings.password = None;
        let started = std::time::Instant::now();
        let attempt = email::send(&r, &[notification("api")]).await;
        // Retried later (a server restarting or shedding load), not a dead
        // letter; and said in words, within the receiver's timeout.
        let Attempt::Transient { error, .. } = &attempt else {
            panic!("expected a transient failure, got {attempt:?}");
        };
        assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
        assert!(
            !error.contains("Custom {") && !error.contains("Kind("),
            "Rust debug text in {error}"
        );
        assert!(started.elapsed() < r.timeout, "{:?}", started.elapsed());
    })
    .await;
}

/// The process' resident set, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_nobody_scrapes_for_hours_keep_memory_flat_and_lose_no_count() {
    crate::common::within(BOUND, async {
        let dir = tempfile::tempdir().unwrap();
        let probes: Vec<(String, String)> = (0..20)
            .map(|i| {
                (
                    format!("p{i}.toml"),
                    format!(
                        "name = \"p{i}\"\nenvironments = [\"target\"]\n\n[http]\nurl = \"/\"\n"
                    ),
                )
            })
            .collect();
        let refs: Vec<(&str, &str)> = probes
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        let path = crate::common::write_config(
            dir.path(),
            &crate::common::config_with_target("http://127.0.0.1:9"),
            &refs,
        );
        let config = crate::common::load(&path);
        let metrics = synthmon::telemetry::metrics::Metrics::new(&config.daemon, &config.probes);
        // A real outcome of each probe, with its phases and status.
        let sb = crate::common::sandbox().await;
        let path = crate::common::write_config(
            dir.path(),
            &crate::common::config_with_target(&sb.base_url()),
            &refs,
        );
        let outcomes =
            crate::common::run_all(&crate::common::load(&path), &Default::default()).await;
        sb.shutdown().await;
        assert_eq!(outcomes.len(), 20);
        // 20 probes every 5 s for 6 hours: 86,400 runs, nobody scraping;
        // the daemon's upkeep runs every 5 s of them (every 20 runs).
        let runs = 86_400;
        let warm = 8_640;
        for (i, o) in outcomes.iter().cycle().take(warm).enumerate() {
            metrics.record(o);
            if i % 20 == 19 {
                metrics.upkeep();
            }
        }
        let before = rss();
        for (i, o) in outcomes.iter().cycle().take(runs - warm).enumerate() {
            metrics.record(o);
            if i % 20 == 19 {
                metrics.upkeep();
            }
        }
        let grew = rss().saturating_sub(before);
        assert!(
            grew < 32 * 1024 * 1024,
            "RSS grew by {} MiB over 6 simulated hours unscraped",
            grew / (1024 * 1024)
        );
        // The first scrape after the hours: every run counted.
        let text = metrics.render(0);
        let total: f64 = text
            .lines()
            .filter(|l| l.starts_with("synthmon_runs_total{"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum();
        assert_eq!(
            total,
            runs as f64,
            "runs counted in:\n{}",
            &text[..text.len().min(3000)]
        );
    })
    .await;
}
