//! The daemon end to end: probes on their schedules, `/healthz` and
//! `/readyz`, reloads (SIGHUP, broken configs, added and removed probes, a
//! Kubernetes ConfigMap `..data` swap), the bounded drain on SIGTERM, the
//! systemd notify protocol and watchdog, and refusing a bad config.
//!
//! Every daemon here is a real process (or, for the stalled-scheduler test,
//! an in-process `Daemon`) on 127.0.0.1. Its stderr (JSON log lines) is
//! collected by a reader thread with the instant each line arrived; every
//! wait polls a condition on those lines (or on a socket) against a
//! deadline, and a Drop guard kills the child however the test ends.

use crate::common;

use common::{position_of, synthmon, write_config};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use synthmon::config::LoadOptions;
use synthmon::daemon::{Daemon, DaemonOptions};

/// How often conditions are re-checked.
const POLL: Duration = Duration::from_millis(10);

/// How long a freshly spawned daemon may take to log that it started (a
/// debug build on a busy machine).
const START_DEADLINE: Duration = Duration::from_secs(15);

/// Polls `cond` until it holds (true) or `deadline` passes (false).
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

/// Lets an observation window run to `deadline`. Only for asserting that
/// something does *not* happen, which no condition can signal early.
fn observe_until(deadline: Instant) {
    let ok = wait_until(deadline, || false);
    debug_assert!(!ok);
}

// ---------------------------------------------------------------------------
// Config and probe files
// ---------------------------------------------------------------------------

/// A config with the built-in sandbox as environment `sandbox`.
const SANDBOX_CONFIG: &str = r#"[daemon]
probes = ["probes/*.toml"]
drain_timeout = "2s"

[environments.sandbox]
base_url = "builtin:sandbox"
"#;

/// A probe file (the `[http]` table comes last, so `expect = …` can be
/// appended to it).
fn probe(name: &str, schedule: &str, timeout: &str, env: &str, url: &str) -> String {
    format!(
        "name = \"{name}\"\nschedule = \"{schedule}\"\nenvironments = [\"{env}\"]\ntimeout = \"{timeout}\"\n\n[http]\nurl = \"{url}\"\n"
    )
}

/// A probe against the sandbox, every second.
fn sandbox_probe(name: &str, url: &str) -> String {
    probe(name, "every 1s", "500ms", "sandbox", url)
}

/// Writes `text` to `path` the way careful tools do (temp file + rename), so
/// a poll never sees a half-written file. The temp name (`x.toml.tmp`)
/// matches no `*.toml` glob.
fn write_atomic(path: &Path, text: &str) {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A probe name (`prefix-N`) whose first slot lands `offset` into its
/// interval, computed with the scheduler's own spread function, so a test
/// need not wait up to a whole interval for the first run. (Only a speed-up:
/// the tests' deadlines still allow a whole interval.)
fn name_with_offset(
    prefix: &str,
    env: &str,
    interval: Duration,
    offset: Range<Duration>,
) -> String {
    (0..100_000)
        .map(|i| format!("{prefix}-{i}"))
        .find(|name| {
            let o = synthmon::schedule::spread_offset(&format!("{name}@{env}"), interval);
            offset.contains(&o)
        })
        .expect("a name with a suitable offset")
}

// ---------------------------------------------------------------------------
// Log lines
// ---------------------------------------------------------------------------

/// One stderr line of the daemon and when the test read it.
#[derive(Debug, Clone)]
struct LogLine {
    at: Instant,
    raw: String,
    /// The parsed JSON (`Null` for a line that is not JSON).
    json: Value,
}

impl LogLine {
    fn level(&self) -> &str {
        self.json["level"].as_str().unwrap_or("")
    }

    fn message(&self) -> &str {
        self.str_field("message")
    }

    fn field(&self, key: &str) -> &Value {
        &self.json["fields"][key]
    }

    fn str_field(&self, key: &str) -> &str {
        self.field(key).as_str().unwrap_or("")
    }

    fn is(&self, message: &str) -> bool {
        self.message() == message
    }

    /// A per-run line (`run passed`, `run failed`, …) of `probe`.
    fn is_run(&self, message: &str, probe: &str) -> bool {
        self.is(message) && self.str_field("probe") == probe
    }
}

// ---------------------------------------------------------------------------
// The daemon as a child process
// ---------------------------------------------------------------------------

/// A running `synthmon run`; killed on drop.
struct DaemonProc {
    child: Child,
    lines: Arc<Mutex<Vec<LogLine>>>,
    reader: Option<JoinHandle<()>>,
    /// The listener's address, from the "synthmon daemon started" line.
    addr: SocketAddr,
}

impl DaemonProc {
    /// Starts the daemon on `config` (listening on a kernel-chosen port)
    /// and waits until it logs that it started.
    fn spawn(cwd: &Path, config: &Path, envs: &[(&str, &str)]) -> DaemonProc {
        DaemonProc::spawn_cmd(
            Command::new(env!("CARGO_BIN_EXE_synthmon")),
            cwd,
            config,
            envs,
        )
    }

    /// [`DaemonProc::spawn`] under `prlimit --nofile=N:N` (util-linux).
    fn spawn_with_nofile(cwd: &Path, config: &Path, nofile: u64) -> DaemonProc {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={nofile}:{nofile}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_synthmon"));
        DaemonProc::spawn_cmd(cmd, cwd, config, &[])
    }

    fn spawn_cmd(mut cmd: Command, cwd: &Path, config: &Path, envs: &[(&str, &str)]) -> DaemonProc {
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .args(["--set", "daemon.listen=127.0.0.1:0", "--log-format", "json"])
            .env("XDG_STATE_HOME", cwd.join(".state"))
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Nothing from the test's own environment: no config layers, and no
        // systemd socket if the tests themselves run under systemd.
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
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn synthmon");
        let stderr = child.stderr.take().unwrap();
        let lines: Arc<Mutex<Vec<LogLine>>> = Arc::default();
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).split(b'\n') {
                let Ok(line) = line else { break };
                let raw = String::from_utf8_lossy(&line).into_owned();
                let json = serde_json::from_str(&raw).unwrap_or(Value::Null);
                sink.lock().unwrap().push(LogLine {
                    at: Instant::now(),
                    raw,
                    json,
                });
            }
        });
        let mut d = DaemonProc {
            child,
            lines,
            reader: Some(reader),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let (_, started) = d.wait_line(0, START_DEADLINE, "the daemon to start", |l| {
            l.is("synthmon daemon started")
        });
        d.addr = started
            .str_field("listen")
            .parse()
            .unwrap_or_else(|e| d.fail(&format!("bad listen address in {}: {e}", started.raw)));
        d
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many lines were read so far (an index to search from later).
    fn mark(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// The lines at index `from` and after that satisfy `pred`, with their
    /// indices.
    fn matching(&self, from: usize, pred: impl Fn(&LogLine) -> bool) -> Vec<(usize, LogLine)> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .enumerate()
            .skip(from)
            .filter(|(_, l)| pred(l))
            .map(|(i, l)| (i, l.clone()))
            .collect()
    }

    /// Waits until `n` lines at index `from` or after satisfy `pred`;
    /// returns the first `n`.
    fn wait_count(
        &self,
        from: usize,
        n: usize,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&LogLine) -> bool,
    ) -> Vec<(usize, LogLine)> {
        let mut found = Vec::new();
        let ok = wait_until(Instant::now() + timeout, || {
            found = self.matching(from, &pred);
            found.len() >= n
        });
        if !ok {
            self.fail(&format!(
                "timed out after {timeout:?} waiting for {what} (saw {} of {n})",
                found.len()
            ));
        }
        found.truncate(n);
        found
    }

    /// Waits for the first line at index `from` or after that satisfies
    /// `pred`.
    fn wait_line(
        &self,
        from: usize,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&LogLine) -> bool,
    ) -> (usize, LogLine) {
        self.wait_count(from, 1, timeout, what, pred).remove(0)
    }

    /// Sends a signal (`"-HUP"`, `"-TERM"`) with kill(1).
    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} failed: {status}");
    }

    /// Waits for the process to exit; returns its status and when it was
    /// seen to exit.
    fn wait_exit(&mut self, timeout: Duration) -> (ExitStatus, Instant) {
        let mut status = None;
        let ok = wait_until(Instant::now() + timeout, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        if !ok {
            self.fail(&format!("the daemon did not exit within {timeout:?}"));
        }
        let seen = Instant::now();
        // Let the reader thread take the last lines.
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        (status.unwrap(), seen)
    }

    /// Everything the daemon logged so far.
    fn log(&self) -> String {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .map(|l| l.raw.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Fails the test with `msg` and the whole log.
    fn fail(&self, msg: &str) -> ! {
        panic!("{msg}\n--- daemon stderr ---\n{}\n--- end ---", self.log());
    }

    /// Asserts `cond`, failing with `msg` and the whole log.
    fn check(&self, cond: bool, msg: &str) {
        if !cond {
            self.fail(msg);
        }
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

// ---------------------------------------------------------------------------
// HTTP and a slow backend
// ---------------------------------------------------------------------------

/// A minimal HTTP/1.1 GET; returns the status code.
fn http_get(addr: SocketAddr, path: &str) -> u16 {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response from {addr}{path}: {response:?}"))
}

/// A backend on 127.0.0.1 that records when each request arrived and
/// answers `200 ok` only after holding it for `hold` — so a test knows
/// exactly when a probe run is in flight. Stopped on drop.
struct SlowBackend {
    addr: SocketAddr,
    arrivals: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SlowBackend {
    fn start(hold: Duration) -> SlowBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (arrived, stopping) = (arrivals.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut handlers = Vec::new();
            while !stopping.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (arrived, stopping) = (arrived.clone(), stopping.clone());
                        handlers.push(std::thread::spawn(move || {
                            serve_slowly(conn, hold, &arrived, &stopping);
                        }));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => break,
                }
            }
            for h in handlers {
                let _ = h.join();
            }
        });
        SlowBackend {
            addr,
            arrivals,
            stop,
            thread: Some(thread),
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits for the first request; returns when it arrived.
    fn wait_first_request(&self, timeout: Duration, d: &DaemonProc) -> Instant {
        let ok = wait_until(Instant::now() + timeout, || {
            !self.arrivals.lock().unwrap().is_empty()
        });
        if !ok {
            d.fail(&format!(
                "no probe request reached the backend within {timeout:?}"
            ));
        }
        self.arrivals.lock().unwrap()[0]
    }
}

fn serve_slowly(
    mut conn: TcpStream,
    hold: Duration,
    arrived: &Mutex<Vec<Instant>>,
    stop: &AtomicBool,
) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let start = Instant::now();
    arrived.lock().unwrap().push(start);
    // The slow part of the "backend": answer after `hold`, or never if the
    // test ends first.
    while start.elapsed() < hold {
        if stop.load(Ordering::Acquire) {
            return;
        }
        std::thread::sleep(POLL);
    }
    let _ =
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n");
}

impl Drop for SlowBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------
// systemd's notification socket
// ---------------------------------------------------------------------------

/// The receiving end of `NOTIFY_SOCKET`: every datagram with the instant it
/// was read.
struct NotifySocket {
    path: PathBuf,
    socket: UnixDatagram,
    got: Vec<(Instant, String)>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        NotifySocket {
            path,
            socket,
            got: Vec::new(),
        }
    }

    /// Reads every datagram waiting now.
    fn drain(&mut self) {
        let mut buf = [0u8; 512];
        loop {
            match self.socket.recv(&mut buf) {
                Ok(n) => self.got.push((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                )),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => panic!("notify socket: {e}"),
            }
        }
    }

    /// Indices of the messages whose first line is `msg` at index `from` or
    /// after (a state may carry more fields on later lines).
    fn positions(&self, from: usize, msg: &str) -> Vec<usize> {
        (from..self.got.len())
            .filter(|&i| self.got[i].1.lines().next() == Some(msg))
            .collect()
    }

    /// Waits (blocking the thread) until `n` messages equal to `msg` arrived
    /// at index `from` or after; returns the index of the `n`th.
    fn wait_msg(&mut self, from: usize, msg: &str, n: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            self.drain();
            if let Some(&i) = self.positions(from, msg).get(n - 1) {
                return i;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {n} × {msg:?}; got {:?}",
                self.messages()
            );
            std::thread::sleep(POLL);
        }
    }

    /// [`NotifySocket::wait_msg`] on the async runtime's clock.
    async fn wait_msg_async(
        &mut self,
        from: usize,
        msg: &str,
        n: usize,
        timeout: Duration,
    ) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            self.drain();
            if let Some(&i) = self.positions(from, msg).get(n - 1) {
                return i;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {n} × {msg:?}; got {:?}",
                self.messages()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    fn messages(&self) -> Vec<&str> {
        self.got.iter().map(|(_, m)| m.as_str()).collect()
    }
}

// ---------------------------------------------------------------------------
// 1. Probes run on schedule; /healthz and /readyz
// ---------------------------------------------------------------------------

#[test]
fn probes_run_on_their_schedule_and_the_daemon_reports_healthy_and_ready() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        SANDBOX_CONFIG,
        &[
            ("tick.toml", &sandbox_probe("tick", "/health")),
            ("down.toml", &sandbox_probe("down", "/status/503")),
        ],
    );
    let d = DaemonProc::spawn(dir.path(), &config, &[]);

    // Three runs of an `every 1s` probe: the first within a second of the
    // start, then one per second.
    let runs = d.wait_count(
        0,
        3,
        Duration::from_secs(5),
        "3 passed runs of `tick`",
        |l| l.is_run("run passed", "tick"),
    );
    for (_, run) in &runs {
        d.check(
            run.level() == "DEBUG" && run.str_field("environment") == "sandbox",
            &format!("unexpected run line {}", run.raw),
        );
    }
    // On the schedule, not in a burst.
    let span = runs[2].1.at - runs[0].1.at;
    d.check(
        span >= Duration::from_millis(1500),
        &format!("3 runs of an `every 1s` probe within {span:?}"),
    );
    // A failing target is a WARN line with its reason, and the daemon goes on.
    d.wait_line(0, Duration::from_secs(3), "a failed run of `down`", |l| {
        l.is_run("run failed", "down") && l.level() == "WARN" && l.str_field("reason") == "status"
    });

    assert_eq!(http_get(d.addr, "/healthz"), 200, "{}", d.log());
    assert_eq!(http_get(d.addr, "/readyz"), 200, "{}", d.log());
}

// ---------------------------------------------------------------------------
// 2. A broken config on SIGHUP is rejected; the old probes keep running
// ---------------------------------------------------------------------------

#[test]
fn sighup_with_a_broken_probe_file_keeps_the_running_config_and_logs_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let victim = sandbox_probe("victim", "/health");
    let config = write_config(
        dir.path(),
        SANDBOX_CONFIG,
        &[
            ("steady.toml", &sandbox_probe("steady", "/health")),
            ("victim.toml", &victim),
        ],
    );
    let d = DaemonProc::spawn(dir.path(), &config, &[]);
    for name in ["steady", "victim"] {
        d.wait_line(
            0,
            Duration::from_secs(3),
            &format!("a run of `{name}`"),
            |l| l.is_run("run passed", name),
        );
    }

    // Two mistakes in one file: a syntax error and an unknown variable.
    let broken = format!("{victim}expect = [\"status == = 200\", \"nosuch == 1\"]\n");
    let syntax = position_of(&broken, "= 200");
    // A value is located at its opening quote.
    let unknown = position_of(&broken, "\"nosuch");
    let mark = d.mark();
    write_atomic(&dir.path().join("probes/victim.toml"), &broken);
    d.signal("-HUP");

    // The file watcher may see the file first; SIGHUP reloads regardless.
    let (rejected_at, rejected) = d.wait_line(
        mark,
        Duration::from_secs(5),
        "the SIGHUP reload to be rejected",
        |l| {
            l.is("config reload rejected; the running config stays in effect")
                && l.str_field("cause") == "SIGHUP"
        },
    );
    d.check(
        rejected.level() == "ERROR" && rejected.field("errors") == 2,
        &format!("unexpected rejection line {}", rejected.raw),
    );
    let errors = d.matching(mark, |l| l.is("config error") && l.level() == "ERROR");
    for (line, column) in [syntax, unknown] {
        let location = format!("probes/victim.toml:{line}:{column}");
        d.check(
            errors
                .iter()
                .any(|(_, l)| l.str_field("error").contains(&location)),
            &format!("no ERROR `config error` line locating {location}"),
        );
    }
    d.check(
        d.matching(mark, |l| l.is("config reloaded")).is_empty(),
        "a broken config was applied",
    );

    // The running config stays in effect: both probes, the victim in its old
    // (valid) form, keep running after the rejection...
    for name in ["steady", "victim"] {
        d.wait_count(
            rejected_at,
            3,
            Duration::from_secs(5),
            &format!("3 runs of `{name}` after the rejection"),
            |l| l.is_run("run passed", name),
        );
    }
    // ...and the broken file is reported once, not on every poll of the
    // watcher (it polls every 2 s).
    let window_end = rejected.at + Duration::from_millis(2600);
    observe_until(window_end);
    let later = d.matching(rejected_at + 1, |l| {
        l.is("config reload rejected; the running config stays in effect")
    });
    d.check(
        later.is_empty(),
        "the same broken file was rejected again without a change",
    );
    assert_eq!(http_get(d.addr, "/healthz"), 200, "{}", d.log());
}

// ---------------------------------------------------------------------------
// 3. A valid change adds and removes probes
// ---------------------------------------------------------------------------

#[test]
fn a_valid_reload_adds_new_probes_and_stops_removed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        SANDBOX_CONFIG,
        &[
            ("keep.toml", &sandbox_probe("keep", "/health")),
            ("old.toml", &sandbox_probe("old", "/health")),
        ],
    );
    let d = DaemonProc::spawn(dir.path(), &config, &[]);
    for name in ["keep", "old"] {
        d.wait_line(
            0,
            Duration::from_secs(3),
            &format!("a run of `{name}`"),
            |l| l.is_run("run passed", name),
        );
    }

    let mark = d.mark();
    write_atomic(
        &dir.path().join("probes/new.toml"),
        &sandbox_probe("new", "/health"),
    );
    std::fs::remove_file(dir.path().join("probes/old.toml")).unwrap();
    d.signal("-HUP");

    // The watcher may catch the half-done edit (new added, old still there)
    // before SIGHUP; wait for the reload that has exactly `keep` and `new`.
    let (reload_at, reload) =
        d.wait_line(mark, Duration::from_secs(5), "a reload to 2 probes", |l| {
            l.is("config reloaded") && l.field("probes") == 2
        });
    d.check(
        reload.level() == "INFO"
            && ["SIGHUP", "files changed"].contains(&reload.str_field("cause")),
        &format!("unexpected reload line {}", reload.raw),
    );
    for name in ["new", "keep"] {
        d.wait_line(
            reload_at,
            Duration::from_secs(3),
            &format!("a run of `{name}` after the reload"),
            |l| l.is_run("run passed", name),
        );
    }
    // `old` stops: no run of it starts after the reload. A run in flight at
    // the reload may still finish, within its 500 ms timeout; give the
    // window 2 s after that.
    let quiet_from = reload.at + Duration::from_millis(600);
    observe_until(quiet_from + Duration::from_secs(2));
    let late = d.matching(reload_at, |l| {
        l.str_field("probe") == "old" && l.message().starts_with("run ") && l.at > quiet_from
    });
    d.check(
        late.is_empty(),
        &format!("the removed probe still runs: {late:?}"),
    );
}

// ---------------------------------------------------------------------------
// 4. Kubernetes ConfigMap swap, picked up by the file watcher
// ---------------------------------------------------------------------------

/// A ConfigMap volume as kubelet's atomic writer lays it out: each version
/// of the data in a timestamped directory, `..data` pointing at the current
/// one, and one top-level symlink per key through `..data`.
struct ConfigMapVolume {
    dir: PathBuf,
    current: Option<PathBuf>,
}

impl ConfigMapVolume {
    fn new(dir: PathBuf) -> ConfigMapVolume {
        std::fs::create_dir(&dir).unwrap();
        ConfigMapVolume { dir, current: None }
    }

    /// Publishes a new version of the data as kubelet does: write it into
    /// `..<timestamp>`, create the top-level symlinks of new keys (dangling
    /// until the swap), point `..data_tmp` at the new directory, rename it
    /// over `..data` (the atomic step), and remove the old directory.
    fn publish(&mut self, timestamp: &str, files: &[(&str, &str)]) {
        use std::os::unix::fs::symlink;
        let name = format!("..{timestamp}");
        let data = self.dir.join(&name);
        std::fs::create_dir(&data).unwrap();
        for (key, text) in files {
            std::fs::write(data.join(key), text).unwrap();
        }
        for (key, _) in files {
            let link = self.dir.join(key);
            if std::fs::symlink_metadata(&link).is_err() {
                symlink(format!("..data/{key}"), &link).unwrap();
            }
        }
        symlink(&name, self.dir.join("..data_tmp")).unwrap();
        std::fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data")).unwrap();
        if let Some(old) = self.current.replace(data) {
            std::fs::remove_dir_all(old).unwrap();
        }
    }
}

#[test]
fn a_kubernetes_configmap_symlink_swap_is_picked_up_without_sighup() {
    let tmp = tempfile::tempdir().unwrap();
    let config = r#"[daemon]
probes = ["probe-*.toml"]
drain_timeout = "2s"

[environments.sandbox]
base_url = "builtin:sandbox"
"#;
    let mut volume = ConfigMapVolume::new(tmp.path().join("config"));
    volume.publish(
        "2026_11_22_a",
        &[
            ("config.toml", config),
            ("probe-a.toml", &sandbox_probe("alpha", "/health")),
        ],
    );
    let d = DaemonProc::spawn(tmp.path(), &volume.dir.join("config.toml"), &[]);
    d.wait_line(0, Duration::from_secs(3), "a run of `alpha`", |l| {
        l.is_run("run passed", "alpha")
    });

    // Update 1, the same keys with new content: only the `..data` symlink
    // changes; every watched path (`config.toml`, `probe-a.toml`) is the
    // same symlink as before, so only following the symlinks sees it.
    let mark = d.mark();
    volume.publish(
        "2026_11_22_b",
        &[
            ("config.toml", config),
            ("probe-a.toml", &sandbox_probe("alpha", "/status/503")),
        ],
    );
    let (reload_at, reload) = d.wait_line(
        mark,
        Duration::from_secs(6),
        "the watcher to reload the swapped ConfigMap",
        |l| l.is("config reloaded"),
    );
    d.check(
        reload.str_field("cause") == "files changed" && reload.field("probes") == 1,
        &format!("unexpected reload line {}", reload.raw),
    );
    d.wait_line(
        reload_at,
        Duration::from_secs(3),
        "a failed run of `alpha`, which now probes /status/503",
        |l| l.is_run("run failed", "alpha") && l.str_field("reason") == "status",
    );

    // Update 2, a new key: `probe-b.toml` with probe `beta`.
    let mark = d.mark();
    volume.publish(
        "2026_11_22_c",
        &[
            ("config.toml", config),
            ("probe-a.toml", &sandbox_probe("alpha", "/status/503")),
            ("probe-b.toml", &sandbox_probe("beta", "/health")),
        ],
    );
    let (reload_at, reload) = d.wait_line(
        mark,
        Duration::from_secs(6),
        "the watcher to reload with the new key",
        |l| l.is("config reloaded") && l.field("probes") == 2,
    );
    d.check(
        reload.str_field("cause") == "files changed",
        &format!("unexpected reload line {}", reload.raw),
    );
    d.wait_line(
        reload_at,
        Duration::from_secs(3),
        "a run of the new probe `beta`",
        |l| l.is_run("run passed", "beta"),
    );
    d.check(
        d.matching(0, |l| l.str_field("cause") == "SIGHUP")
            .is_empty(),
        "a reload claims SIGHUP, which was never sent",
    );
}

// ---------------------------------------------------------------------------
// 5. SIGTERM drains in-flight runs within the drain deadline
// ---------------------------------------------------------------------------

/// Config with the slow backend as environment `backend`.
fn backend_config(base_url: &str, drain_timeout: &str) -> String {
    format!(
        "[daemon]\nprobes = [\"probes/*.toml\"]\ndrain_timeout = \"{drain_timeout}\"\n\n[environments.backend]\nbase_url = \"{base_url}\"\n"
    )
}

/// How the in-flight run is made certain: the probe targets a test-owned
/// backend that records each request's arrival and answers only after a
/// hold. Waiting for the arrival is a poll on a real condition, so SIGTERM
/// is sent while a run is provably in flight (the sandbox's `/delay/{ms}`
/// would only allow guessing from the schedule). The probe's name is chosen
/// so its first slot comes soon after start.
#[test]
fn sigterm_waits_for_an_in_flight_run_within_the_drain_deadline() {
    let backend = SlowBackend::start(Duration::from_millis(1500));
    let dir = tempfile::tempdir().unwrap();
    let interval = Duration::from_secs(5);
    let name = name_with_offset(
        "slow",
        "backend",
        interval,
        Duration::from_millis(200)..Duration::from_millis(700),
    );
    let config = write_config(
        dir.path(),
        &backend_config(&backend.base_url(), "5s"),
        &[(
            "slow.toml",
            &probe(&name, "every 5s", "3s", "backend", "/slow"),
        )],
    );
    let mut d = DaemonProc::spawn(dir.path(), &config, &[]);
    backend.wait_first_request(interval + Duration::from_secs(2), &d);

    let mark = d.mark();
    let sent = Instant::now();
    d.signal("-TERM");
    // Drain deadline + 1 s at most; in fact the rest of the 1.5 s hold.
    let (status, exited) = d.wait_exit(Duration::from_secs(6));
    let took = exited - sent;
    d.check(status.code() == Some(0), &format!("exit status {status}"));

    let (stop_at, stopping) = d.wait_line(mark, Duration::ZERO, "the drain to start", |l| {
        l.is("shutting down: draining in-flight runs")
    });
    d.check(
        stopping.field("in_flight") == 1,
        &format!("expected one run in flight at SIGTERM: {}", stopping.raw),
    );
    // The in-flight run finished and was logged after SIGTERM...
    d.wait_line(
        stop_at,
        Duration::ZERO,
        "the in-flight run to finish",
        |l| l.is_run("run passed", &name),
    );
    d.check(
        d.matching(mark, |l| l.message().starts_with("drain deadline passed"))
            .is_empty(),
        "the run was cancelled although it fit the drain deadline",
    );
    d.wait_line(stop_at, Duration::ZERO, "the daemon to stop", |l| {
        l.is("synthmon daemon stopped")
    });
    // ...so the exit waited for it, and no longer than needed.
    d.check(
        took >= Duration::from_millis(700) && took < Duration::from_secs(6),
        &format!("exited {took:?} after SIGTERM"),
    );
}

#[test]
fn sigterm_cancels_runs_still_in_flight_at_the_drain_deadline() {
    let backend = SlowBackend::start(Duration::from_secs(5));
    let dir = tempfile::tempdir().unwrap();
    let interval = Duration::from_secs(10);
    let name = name_with_offset(
        "stuck",
        "backend",
        interval,
        Duration::from_millis(200)..Duration::from_millis(700),
    );
    let config = write_config(
        dir.path(),
        &backend_config(&backend.base_url(), "1s"),
        &[(
            "stuck.toml",
            &probe(&name, "every 10s", "8s", "backend", "/slow"),
        )],
    );
    let mut d = DaemonProc::spawn(dir.path(), &config, &[]);
    backend.wait_first_request(interval + Duration::from_secs(2), &d);

    let mark = d.mark();
    let sent = Instant::now();
    d.signal("-TERM");
    let (status, exited) = d.wait_exit(Duration::from_secs(4));
    let took = exited - sent;
    d.check(status.code() == Some(0), &format!("exit status {status}"));
    // It waited the 1 s drain deadline, then cancelled: well before the
    // backend's 5 s or the probe's 8 s timeout.
    d.check(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        &format!("exited {took:?} after SIGTERM with drain_timeout = 1s"),
    );
    let (_, deadline) = d.wait_line(mark, Duration::ZERO, "the drain deadline to pass", |l| {
        l.is("drain deadline passed; cancelling the runs still in flight")
    });
    d.check(
        deadline.level() == "WARN" && deadline.field("cancelled") == 1,
        &format!("unexpected drain line {}", deadline.raw),
    );
    d.wait_line(mark, Duration::ZERO, "the cancelled run", |l| {
        l.is_run("run cancelled at the drain deadline", &name)
    });
    d.check(
        d.matching(mark, |l| {
            l.is_run("run passed", &name) || l.is_run("run failed", &name)
        })
        .is_empty(),
        "the cancelled run also reported an outcome",
    );
}

// ---------------------------------------------------------------------------
// 6. systemd notify (binary)
// ---------------------------------------------------------------------------

#[test]
fn the_binary_speaks_the_systemd_notify_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        SANDBOX_CONFIG,
        &[("pulse.toml", &sandbox_probe("pulse", "/health"))],
    );
    let mut sock = NotifySocket::bind(dir.path());
    let socket_path = sock.path.display().to_string();
    let mut d = DaemonProc::spawn(
        dir.path(),
        &config,
        &[("NOTIFY_SOCKET", &socket_path), ("WATCHDOG_USEC", "400000")],
    );

    sock.wait_msg(0, "READY=1", 1, Duration::from_secs(2));
    // Pinged at half the 400 ms watchdog period.
    sock.wait_msg(0, "WATCHDOG=1", 2, Duration::from_secs(2));

    let before_hup = sock.got.len();
    let mark = d.mark();
    d.signal("-HUP");
    let reloading = sock.wait_msg(before_hup, "RELOADING=1", 1, Duration::from_secs(5));
    // systemd >= 253 (Type=notify-reload) wants the reload's start time.
    let usec = sock.got[reloading]
        .1
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .map(|v| v.parse::<u64>());
    assert!(
        matches!(usec, Some(Ok(v)) if v > 0),
        "RELOADING=1 without a valid MONOTONIC_USEC: {:?}",
        sock.got[reloading].1
    );
    sock.wait_msg(reloading + 1, "READY=1", 1, Duration::from_secs(5));
    d.wait_line(mark, Duration::from_secs(2), "the SIGHUP reload", |l| {
        l.is("config reloaded") && l.str_field("cause") == "SIGHUP"
    });

    let before_term = sock.got.len();
    d.signal("-TERM");
    sock.wait_msg(before_term, "STOPPING=1", 1, Duration::from_secs(5));
    let (status, _) = d.wait_exit(Duration::from_secs(5));
    d.check(status.code() == Some(0), &format!("exit status {status}"));
}

// ---------------------------------------------------------------------------
// 7. A stalled scheduler fails /healthz and withholds the watchdog
// ---------------------------------------------------------------------------

/// `/healthz`'s status, off the async threads.
async fn healthz(addr: SocketAddr) -> u16 {
    tokio::task::spawn_blocking(move || http_get(addr, "/healthz"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_scheduler_fails_healthz_and_withholds_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        SANDBOX_CONFIG,
        &[("pulse.toml", &sandbox_probe("pulse", "/health"))],
    );
    let mut sock = NotifySocket::bind(dir.path());
    let tick = Duration::from_millis(50);
    let opts = DaemonOptions {
        load: LoadOptions {
            config_path: Some(config),
            overrides: vec![("daemon.listen".into(), "127.0.0.1:0".into())],
        },
        notify_socket: Some(sock.path.clone()),
        // Pinged every 150 ms; unhealthy after 5 ticks = 250 ms.
        watchdog: Some(Duration::from_millis(300)),
        tick,
        watch_interval: None,
        reload_on_sighup: false,
        shard: Default::default(),
    };
    let daemon = Daemon::start(opts, None).await.unwrap();
    let addr = daemon.addr();
    sock.wait_msg_async(0, "READY=1", 1, Duration::from_secs(2))
        .await;
    sock.wait_msg_async(0, "WATCHDOG=1", 2, Duration::from_secs(2))
        .await;
    assert_eq!(healthz(addr).await, 200);
    assert!(daemon.healthy());

    let stalled = Instant::now();
    let stall = Duration::from_secs(2);
    daemon.stall_scheduler(stall).await;

    // Within the stall: /healthz fails once the heartbeat is 5 ticks old...
    let deadline = stalled + Duration::from_millis(1500);
    loop {
        sock.drain();
        if healthz(addr).await == 503 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz stayed 200 during a stall"
        );
        tokio::time::sleep(POLL).await;
    }
    assert!(!daemon.healthy());
    // ...and no watchdog ping goes out from just past that threshold (plus
    // one ping period for a ping decided just before it) until well before
    // the stall ends.
    let window = (
        stalled + Duration::from_millis(400),
        stalled + Duration::from_millis(1600),
    );
    while Instant::now() < window.1 {
        sock.drain();
        tokio::time::sleep(POLL).await;
    }
    sock.drain();
    assert_eq!(
        healthz(addr).await,
        503,
        "/healthz recovered while still stalled"
    );
    let pings_in_stall: Vec<Duration> = sock
        .got
        .iter()
        .filter(|(at, m)| m == "WATCHDOG=1" && *at >= window.0 && *at <= window.1)
        .map(|(at, _)| *at - stalled)
        .collect();
    assert!(
        pings_in_stall.is_empty(),
        "watchdog pinged during the stall at {pings_in_stall:?} after it began"
    );

    // After the stall: pings resume and /healthz is 200 again.
    let resume_deadline = stalled + stall + Duration::from_secs(2);
    loop {
        sock.drain();
        let resumed = sock
            .got
            .iter()
            .any(|(at, m)| m == "WATCHDOG=1" && *at > stalled + stall);
        if resumed && healthz(addr).await == 200 {
            break;
        }
        assert!(
            Instant::now() < resume_deadline,
            "no recovery after the stall; notifications: {:?}",
            sock.messages()
        );
        tokio::time::sleep(POLL).await;
    }
    assert!(daemon.healthy());
    // The slots missed while frozen were skipped, not fired in a burst.
    assert!(daemon.stats().missed >= 1, "{:?}", daemon.stats());

    let before_stop = sock.got.len();
    daemon.shutdown().await;
    sock.wait_msg_async(before_stop, "STOPPING=1", 1, Duration::from_secs(2))
        .await;
}

// ---------------------------------------------------------------------------
// 8. A bad config refuses to start
// ---------------------------------------------------------------------------

#[test]
fn the_daemon_refuses_to_start_on_a_bad_config_or_a_taken_port() {
    let dir = tempfile::tempdir().unwrap();
    let bad = format!(
        "{}expect = [\"status == = 200\"]\n",
        sandbox_probe("bad", "/health")
    );
    let (line, column) = position_of(&bad, "= 200");
    let config = write_config(dir.path(), SANDBOX_CONFIG, &[("bad.toml", &bad)]);
    let config = config.display().to_string();
    let run = synthmon(
        dir.path(),
        &[
            "run",
            "--config",
            &config,
            "--set",
            "daemon.listen=127.0.0.1:0",
        ],
        &[],
    );
    run.assert_code(2);
    let location = format!("probes/bad.toml:{line}:{column}");
    assert!(
        run.stderr.contains(&location) && run.stderr.contains("invalid configuration"),
        "no located error {location} in\n{}",
        run.stderr
    );

    // A listener address already in use is a start-up error too.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    std::fs::write(
        dir.path().join("probes/bad.toml"),
        sandbox_probe("fine", "/health"),
    )
    .unwrap();
    let listen = format!("daemon.listen=127.0.0.1:{port}");
    let run = synthmon(
        dir.path(),
        &["run", "--config", &config, "--set", &listen],
        &[],
    );
    run.assert_code(2);
    assert!(
        run.stderr
            .contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{}",
        run.stderr
    );
}

// ---------------------------------------------------------------------------
// 8. The process exits promptly once the daemon has stopped
// ---------------------------------------------------------------------------

/// Regression: the daemon took 1–2 s to exit after logging "stopped". Here
/// every sink is busy at SIGTERM: a webhook that accepts and never answers
/// (a delivery in flight), an OTLP endpoint nobody listens on, a cron pair
/// and the built-in sandbox.
#[test]
fn the_daemon_exits_promptly_after_logging_stopped_with_every_sink_busy() {
    let hanging = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook = hanging.local_addr().unwrap();
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let keep = held.clone();
    std::thread::spawn(move || {
        for conn in hanging.incoming().flatten() {
            keep.lock().unwrap().push(conn);
        }
    });
    let dead_otlp = TcpListener::bind("127.0.0.1:0").unwrap();
    let otlp = dead_otlp.local_addr().unwrap();
    drop(dead_otlp);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[daemon]\nprobes = [\"probes/*.toml\"]\ndrain_timeout = \"2s\"\nstate_dir = \"state\"\n\n\
         [environments.sandbox]\nbase_url = \"builtin:sandbox\"\n\n\
         [telemetry]\notlp_endpoint = \"http://{otlp}\"\n\n\
         [alerting.receivers.hook]\ntype = \"webhook\"\nurl = \"http://{hook}/hook\"\n\n\
         [[alerting.routes]]\nreceivers = [\"hook\"]\n"
    );
    let failing = "name = \"down\"\nschedule = \"every 1s\"\nenvironments = [\"sandbox\"]\ntimeout = \"500ms\"\n\n[http]\nurl = \"/status/503\"\n";
    let cron = "name = \"tick\"\nschedule = \"* * * * * *\"\nenvironments = [\"sandbox\"]\ntimeout = \"500ms\"\n\n[http]\nurl = \"/health\"\n";
    let path = write_config(
        dir.path(),
        &config,
        &[("down.toml", failing), ("tick.toml", cron)],
    );
    let mut d = DaemonProc::spawn(dir.path(), &path, &[]);
    // Wait until an alert delivery is hanging on the webhook.
    let deadline = Instant::now() + Duration::from_secs(20);
    let delivering = wait_until(deadline, || !held.lock().unwrap().is_empty());
    d.check(delivering, "no webhook delivery started within 20 s");
    let mark = d.mark();
    d.signal("-TERM");
    let (status, exited) = d.wait_exit(Duration::from_secs(10));
    d.check(status.code() == Some(0), &format!("exit status {status}"));
    let (_, stopped) = d.wait_line(mark, Duration::ZERO, "the daemon to stop", |l| {
        l.is("synthmon daemon stopped")
    });
    let lag = exited.saturating_duration_since(stopped.at);
    d.check(
        lag < Duration::from_millis(500),
        &format!("the process exited {lag:?} after logging that it stopped"),
    );
}

// ---------------------------------------------------------------------------
// 9. A low RLIMIT_NOFILE and 1,000 slow targets
// ---------------------------------------------------------------------------

/// `RLIMIT_NOFILE` 256 and 1,000 probes on slow targets: the run cap is
/// fitted to the descriptors (runs wait for a slot instead of failing with
/// EMFILE), the process never holds more descriptors than it may, and
/// `/metrics` and `/healthz` keep answering.
#[test]
fn with_rlimit_nofile_256_and_1000_slow_probes_the_daemon_keeps_serving_and_runs_fit() {
    let dir = tempfile::tempdir().unwrap();
    let probes: Vec<(String, String)> = (0..1000)
        .map(|i| {
            (
                format!("p{i}.toml"),
                probe(
                    &format!("slow-{i}"),
                    "every 5s",
                    "2s",
                    "sandbox",
                    "/delay/400",
                ),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = probes
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    // A cap set higher than 256 descriptors can carry.
    let config_text = SANDBOX_CONFIG.replace("[daemon]\n", "[daemon]\nmax_concurrent_runs = 200\n");
    let config = write_config(dir.path(), &config_text, &refs);
    let d = DaemonProc::spawn_with_nofile(dir.path(), &config, 256);
    let (_, lowered) = d.wait_line(0, Duration::ZERO, "the run cap to be fitted", |l| {
        l.is("daemon.max_concurrent_runs lowered to fit RLIMIT_NOFILE (raise LimitNOFILE= to run more at once)")
    });
    d.check(
        lowered.field("nofile") == 256
            && lowered.field("configured") == 200
            && lowered.field("running_limit") == 64,
        &format!("unexpected cap line {}", lowered.raw),
    );
    // Six seconds of load: more than a round of 1,000 slots.
    let fd_dir = PathBuf::from(format!("/proc/{}/fd", d.pid()));
    let mut most_fds = 0;
    let end = Instant::now() + Duration::from_secs(6);
    while Instant::now() < end {
        most_fds = most_fds.max(std::fs::read_dir(&fd_dir).map_or(0, |e| e.count()));
        d.check(
            http_get(d.addr, "/healthz") == 200,
            "/healthz failed under load",
        );
        d.check(
            http_get(d.addr, "/metrics") == 200,
            "/metrics failed under load",
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    d.check(most_fds < 256, &format!("{most_fds} descriptors open"));
    let passed = d.matching(0, |l| l.message() == "run passed").len();
    let starved = d.matching(0, |l| {
        l.message() == "run failed" && l.str_field("reason") == "resource"
    });
    d.check(passed >= 100, &format!("only {passed} runs passed in 6 s"));
    d.check(
        starved.is_empty(),
        &format!(
            "{} runs ran out of descriptors, e.g. {}",
            starved.len(),
            starved.first().map_or("", |(_, l)| l.raw.as_str())
        ),
    );
}

// ---------------------------------------------------------------------------
// The daemon's async workers: one unless --threads / SYNTHMON_THREADS
// ---------------------------------------------------------------------------

#[test]
fn the_daemon_runs_one_async_worker_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        SANDBOX_CONFIG,
        &[("tick.toml", &sandbox_probe("tick", "/health"))],
    );
    // The start line says how many (tokio names its blocking threads as
    // it names its workers, so the process's threads cannot tell).
    let workers = |envs: &[(&str, &str)]| {
        let d = DaemonProc::spawn(dir.path(), &config, envs);
        let (_, started) = d.wait_line(0, Duration::from_secs(5), "the start line", |l| {
            l.is("synthmon daemon started")
        });
        d.wait_line(0, Duration::from_secs(5), "a passed run", |l| {
            l.is_run("run passed", "tick")
        });
        started.json["fields"]["async_workers"].as_u64()
    };
    assert_eq!(workers(&[]), Some(1));
    assert_eq!(workers(&[("SYNTHMON_THREADS", "3")]), Some(3));
}
