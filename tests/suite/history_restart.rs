//! The run history across a `kill -9` (issue 15's integration test): the
//! real binary runs probes against its built-in sandbox with a state
//! directory in a temp dir, is killed with SIGKILL, and is restarted on the
//! same directory. What was committed before the kill is still there (runs,
//! state changes, kept values), the restarted daemon goes on from it (no
//! second state change for a state that did not change, a kept counter
//! continues) and its SLO budget on `/metrics` counts the runs from
//! before the kill. A corrupt `history.sqlite` turns the history off,
//! says so naming the file, and probing goes on.
//!
//! Every wait polls a condition against a deadline; the history file is
//! read with the history's own `Reader` beside the running daemon (WAL).

use crate::common;

use common::write_config;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use synthmon::history::{Reader, Transition};

const POLL: Duration = Duration::from_millis(50);
const START_DEADLINE: Duration = Duration::from_secs(15);

fn wait_until(deadline: Instant, mut cond: impl FnMut() -> bool) -> bool {
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// A running `synthmon run` whose stderr (JSON log lines) is collected;
/// killed on drop.
struct DaemonProc {
    child: Child,
    raw: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl DaemonProc {
    fn spawn(config: &Path) -> DaemonProc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_synthmon"));
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .args(["--log-format", "json"])
            .current_dir(config.parent().unwrap())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars_os() {
            let k_str = k.to_string_lossy();
            if k_str.starts_with("SYNTHMON")
                || k_str == "NOTIFY_SOCKET"
                || k_str.starts_with("WATCHDOG_")
            {
                cmd.env_remove(&k);
            }
        }
        cmd.env("NO_COLOR", "1")
            .env("SYNTHMON_LOG", "synthmon=debug");
        let mut child = cmd.spawn().expect("spawn synthmon");
        let stderr = child.stderr.take().unwrap();
        let raw: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = raw.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).split(b'\n') {
                let Ok(line) = line else { break };
                sink.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&line).into_owned());
            }
        });
        let mut d = DaemonProc {
            child,
            raw,
            reader: Some(reader),
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        let started = d.wait_line(
            Instant::now() + START_DEADLINE,
            "the daemon to start",
            |l| message(l) == "synthmon daemon started",
        );
        d.addr = started["fields"]["listen"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| d.fail(&format!("no listen address in {started}")));
        d
    }

    fn lines(&self) -> Vec<Value> {
        self.raw
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
            .collect()
    }

    fn wait_line(&self, deadline: Instant, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut found = None;
        if !wait_until(deadline, || {
            found = self.lines().into_iter().find(|l| pred(l));
            found.is_some()
        }) {
            self.fail(&format!("timed out waiting for {what}"));
        }
        found.unwrap()
    }

    fn count(&self, pred: impl Fn(&Value) -> bool) -> usize {
        self.lines().iter().filter(|l| pred(l)).count()
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} failed: {status}");
    }

    fn wait_exit(&mut self, deadline: Instant) -> ExitStatus {
        let mut status = None;
        if !wait_until(deadline, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        }) {
            self.fail("the daemon did not exit in time");
        }
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        status.unwrap()
    }

    /// `GET /metrics` (plain text).
    fn metrics(&self) -> String {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    }

    fn log(&self) -> String {
        self.raw.lock().unwrap().join("\n")
    }

    fn fail(&self, msg: &str) -> ! {
        panic!("{msg}\n--- daemon stderr ---\n{}\n--- end ---", self.log());
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

fn message(l: &Value) -> &str {
    l["fields"]["message"].as_str().unwrap_or("")
}

/// The value of the first sample of `name` whose labels include every one
/// of `labels` (`key="value"`).
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

const CONFIG: &str = r#"[daemon]
listen = "127.0.0.1:0"
state_dir = "state"
drain_timeout = "2s"

[environments.sandbox]
base_url = "builtin:sandbox"
"#;

/// A probe every second against the sandbox at `url`, with an SLO and
/// `extra` keys.
fn probe(name: &str, url: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\nschedule = \"every 1s\"\ntimeout = \"500ms\"\nenvironments = [\"sandbox\"]\nslo = {{ objective = \"99%\", window = \"30d\" }}\n{extra}\n[http]\nurl = \"{url}\"\n"
    )
}

/// Always passes.
fn healthy() -> String {
    probe("healthy", "/health", "")
}
/// Always fails: its state is failing before and after the restart.
fn broken() -> String {
    probe("broken", "/status/500", "")
}
/// Fails before the restart and passes after it.
fn flaky(url: &str) -> String {
    probe("flaky", url, "")
}
/// Counts its runs in a kept value.
fn counter() -> String {
    probe(
        "counter",
        "/health",
        "keep = { runs = \"has(prev.runs) ? prev.runs + 1 : 1\" }\n",
    )
}

const PAIRS: [&str; 4] = ["healthy", "broken", "flaky", "counter"];

/// What the history file holds for the test's pairs.
#[derive(Debug)]
struct Stored {
    run_ids: BTreeMap<&'static str, HashSet<String>>,
    failed: BTreeMap<&'static str, usize>,
    transitions: BTreeMap<&'static str, Vec<Transition>>,
    kept_runs: Option<i64>,
}

fn read_history(state: &Path) -> Option<Stored> {
    let reader = Reader::open(state).ok()?;
    let mut stored = Stored {
        run_ids: BTreeMap::new(),
        failed: BTreeMap::new(),
        transitions: BTreeMap::new(),
        kept_runs: None,
    };
    for p in PAIRS {
        let runs = reader
            .runs(p, "sandbox", i64::MIN, i64::MAX, 100_000)
            .ok()?;
        stored.failed.insert(
            p,
            runs.iter()
                .filter(|r| r.result == synthmon::history::Verdict::Fail)
                .count(),
        );
        stored
            .run_ids
            .insert(p, runs.into_iter().map(|r| r.run_id).collect());
        stored
            .transitions
            .insert(p, reader.transitions(p, "sandbox", i64::MIN).ok()?);
    }
    stored.kept_runs = reader
        .kept("counter", "sandbox")
        .ok()?
        .get("runs")
        .and_then(Value::as_i64);
    Some(stored)
}

fn changes(t: &[Transition]) -> Vec<(&str, &str)> {
    t.iter().map(|t| (t.from.as_str(), t.to.as_str())).collect()
}

#[test]
fn a_kill_9_keeps_runs_state_changes_kept_values_and_slo_counts() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        CONFIG,
        &[
            ("healthy.toml", &healthy()),
            ("broken.toml", &broken()),
            ("flaky.toml", &flaky("/status/500")),
            ("counter.toml", &counter()),
        ],
    );
    let state = dir.path().join("state");

    // 1. Run until the file holds a few runs of every pair and the two
    //    failing pairs' state changes, then kill -9.
    let first = DaemonProc::spawn(&path);
    let mut before = None;
    let enough = wait_until(Instant::now() + Duration::from_secs(20), || {
        before = read_history(&state).filter(|s| {
            PAIRS.iter().all(|p| s.run_ids[p].len() >= 3)
                && !s.transitions["broken"].is_empty()
                && !s.transitions["flaky"].is_empty()
                && s.kept_runs.is_some()
        });
        before.is_some()
    });
    if !enough {
        first.fail(&format!(
            "the history did not fill: {:?}",
            read_history(&state)
        ));
    }
    first.signal("-9");
    let mut first = first;
    let status = first.wait_exit(Instant::now() + Duration::from_secs(5));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let killed_at = synthmon::history::now_ms();
    let first_log = first.log();
    drop(first);

    // What survived: runs, one state change each for the failing pairs,
    // none for the passing ones, the kept counter.
    let before = read_history(&state).expect("the history opens after kill -9");
    for p in PAIRS {
        assert!(before.run_ids[p].len() >= 3, "{p}: {before:?}");
    }
    assert_eq!(changes(&before.transitions["broken"]), [("ok", "failing")]);
    assert_eq!(changes(&before.transitions["flaky"]), [("ok", "failing")]);
    assert!(before.transitions["healthy"].is_empty() && before.transitions["counter"].is_empty());
    let flaky_failed = before.failed["flaky"];
    assert_eq!(
        flaky_failed,
        before.run_ids["flaky"].len(),
        "every flaky run failed"
    );
    let kept_before = before.kept_runs.unwrap();
    assert!(kept_before >= 1, "{before:?}");
    eprintln!(
        "[{:?}] after kill -9: {:?} runs, counter kept {kept_before}",
        started.elapsed(),
        before
            .run_ids
            .iter()
            .map(|(p, r)| (p, r.len()))
            .collect::<Vec<_>>()
    );

    // 2. The target of `flaky` recovers; the daemon restarts on the same
    //    state directory.
    std::fs::write(
        dir.path().join("probes").join("flaky.toml"),
        flaky("/health"),
    )
    .unwrap();
    let mut second = DaemonProc::spawn(&path);
    // Its first SLO computation (at its first tick) counts the runs from
    // before the kill: every flaky run stored then failed, and since the
    // restart only passing ones (a few at most by then) were added.
    let mut budget = None;
    let computed = wait_until(Instant::now() + Duration::from_secs(10), || {
        budget = sample(
            &second.metrics(),
            "synthmon_slo_error_budget_remaining_ratio",
            &["probe=\"flaky\"", "environment=\"sandbox\""],
        );
        budget.is_some()
    });
    if !computed {
        second.fail("no SLO budget for flaky on /metrics");
    }
    let budget = budget.unwrap();
    // 99 %: budget left = 1 − (failed / total) / 1 %.
    let left = |passed_since: usize| {
        let failed = flaky_failed as f64;
        1.0 - failed / (failed + passed_since as f64) / 0.01
    };
    let passed_since = (0..=5).find(|n| (left(*n) - budget).abs() < 1e-6);
    if passed_since.is_none() {
        second.fail(&format!(
            "flaky's budget {budget} is not 1 − {flaky_failed}/({flaky_failed} + n)/1% for a few passing runs n \
             (budget from the restarted daemon's runs alone: 1)"
        ));
    }
    let metrics = second.metrics();
    assert_eq!(
        sample(&metrics, "synthmon_history_up", &[]),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "synthmon_slo_error_budget_remaining_ratio",
            &["probe=\"broken\""]
        ),
        Some(1.0 - 1.0 / 0.01)
    );

    // 3. Let it run, then stop it cleanly so all it wrote is committed.
    let new_runs = |s: &Stored, p: &str| s.run_ids[p].difference(&before.run_ids[p]).count();
    let ran = wait_until(Instant::now() + Duration::from_secs(20), || {
        read_history(&state).is_some_and(|s| PAIRS.iter().all(|p| new_runs(&s, p) >= 3))
    });
    if !ran {
        second.fail("the restarted daemon did not run every probe three times");
    }
    second.signal("-TERM");
    let status = second.wait_exit(Instant::now() + Duration::from_secs(10));
    if status.code() != Some(0) {
        second.fail(&format!("SIGTERM should exit 0, got {status}"));
    }
    let after = read_history(&state).unwrap();
    let second_log = second.log();

    // The runs went on: every run from before the kill is still there,
    // new ones beside them.
    for p in PAIRS {
        assert!(
            after.run_ids[p].is_superset(&before.run_ids[p]),
            "{p}: runs from before the kill are gone"
        );
        assert!(new_runs(&after, p) >= 3, "{p}");
    }
    // `broken` stayed failing: still one state change. `flaky` recovered:
    // its state went from the stored `failing` to `ok`, after the restart.
    let check = |ok: bool, what: &str| {
        if !ok {
            panic!(
                "{what}\nbefore: {before:#?}\nafter: {after:#?}\n--- first daemon ---\n{first_log}\n--- second daemon ---\n{second_log}"
            );
        }
    };
    check(
        changes(&after.transitions["broken"]) == [("ok", "failing")],
        "broken's state did not change: one state change",
    );
    check(
        changes(&after.transitions["flaky"]) == [("ok", "failing"), ("failing", "ok")]
            && after.transitions["flaky"][1].at_ms >= killed_at,
        "flaky: failing (stored) → ok after the restart",
    );
    check(
        after.transitions["healthy"].is_empty() && after.transitions["counter"].is_empty(),
        "no state changes for pairs that were always ok",
    );
    // The kept counter continued from its stored value: each run adds one.
    let kept_after = after.kept_runs.unwrap();
    check(
        kept_after == kept_before + new_runs(&after, "counter") as i64,
        &format!(
            "the counter kept {kept_after}: {kept_before} from before the kill + {} runs since",
            new_runs(&after, "counter")
        ),
    );
    eprintln!("[{:?}] done", started.elapsed());
}

#[test]
fn a_corrupt_history_file_turns_history_off_and_probing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), CONFIG, &[("healthy.toml", &healthy())]);
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let file = state.join(synthmon::history::store::FILE);
    let garbage: Vec<u8> = (0..16_384u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &garbage).unwrap();

    let mut d = DaemonProc::spawn(&path);
    let off = d.wait_line(
        Instant::now() + Duration::from_secs(5),
        "the history to be turned off",
        |l| message(l).starts_with("run history off"),
    );
    let error = off["fields"]["error"].as_str().unwrap_or("");
    assert!(
        error.contains(&file.display().to_string()),
        "the log names the file: {off}"
    );
    assert_eq!(off["level"].as_str(), Some("ERROR"), "{off}");
    // Probing goes on.
    let ran = wait_until(Instant::now() + Duration::from_secs(10), || {
        d.count(|l| message(l) == "run passed" && l["fields"]["probe"] == "healthy") >= 2
    });
    if !ran {
        d.fail("the probe did not run twice");
    }
    let mut metrics = String::new();
    let down = wait_until(Instant::now() + Duration::from_secs(5), || {
        metrics = d.metrics();
        sample(&metrics, "synthmon_history_up", &[]) == Some(0.0)
    });
    if !down {
        d.fail(&format!("synthmon_history_up is not 0:\n{metrics}"));
    }
    assert!(
        sample(&metrics, "synthmon_runs_total", &["probe=\"healthy\""]).is_some_and(|n| n >= 2.0),
        "{metrics}"
    );
    d.signal("-TERM");
    let status = d.wait_exit(Instant::now() + Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", d.log());
    assert_eq!(
        std::fs::read(&file).unwrap(),
        garbage,
        "the corrupt file was left alone"
    );
}
