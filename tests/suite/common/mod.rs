//! Helpers shared by the integration tests: temp configs, running the built
//! binary with a deadline, golden files, and loading/running probes
//! in-process.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The longest any single run of the binary may take in these tests.
pub const BIN_DEADLINE: Duration = Duration::from_secs(20);

/// The repository root (where `config.toml` and `probes/` live).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Writes `config.toml` and `probes/<name>` files into `dir`; returns the
/// config file's path.
pub fn write_config(dir: &Path, config: &str, probes: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir_all(dir.join("probes")).unwrap();
    for (name, text) in probes {
        std::fs::write(dir.join("probes").join(name), text).unwrap();
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// What a finished run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// Panics with the whole output unless the exit code is `code`.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit code\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs the synthmon binary with `args` in `cwd`. The child's environment
/// is the test's minus every `SYNTHMON_*` variable and plus `envs` and
/// `NO_COLOR=1`. Killed (and the test failed) if it runs past `deadline`.
pub fn synthmon_in(cwd: &Path, args: &[&str], envs: &[(&str, &str)], deadline: Duration) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_synthmon"));
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SYNTHMON") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("NO_COLOR", "1");
    // State (the outbox, the history) stays in the test's directory unless
    // its config names one.
    cmd.env("XDG_STATE_HOME", cwd.join(".state"));
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn synthmon");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = String::from_utf8_lossy(&out_reader.join().unwrap()).into_owned();
            let stderr = String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned();
            panic!(
                "synthmon {args:?} ran past {deadline:?} and was killed\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&out_reader.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned(),
        elapsed,
    }
}

/// [`synthmon_in`] with the default deadline.
pub fn synthmon(cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> Run {
    synthmon_in(cwd, args, envs, BIN_DEADLINE)
}

/// Compares `actual` with `tests/golden/<name>`; with `UPDATE_GOLDEN=1`
/// writes it instead.
pub fn golden(name: &str, actual: &str) {
    let path = repo().join("tests").join("golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read golden file {}: {e}\n(run with UPDATE_GOLDEN=1 to create it)\n--- actual ---\n{actual}",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "output differs from golden file {}\n(review, then refresh with UPDATE_GOLDEN=1)\n--- expected ---\n{expected}\n--- actual ---\n{actual}\n--- end ---",
            path.display()
        );
    }
}

/// The 1-based (line, column) at which `needle` first occurs in `text`
/// (column in characters).
pub fn position_of(text: &str, needle: &str) -> (usize, usize) {
    let offset = text
        .find(needle)
        .unwrap_or_else(|| panic!("`{needle}` not in\n{text}"));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Loads the config at `path` (no overrides), panicking with the
/// diagnostics if it does not load.
pub fn load(path: &Path) -> std::sync::Arc<synthmon::plan::Config> {
    let opts = synthmon::config::LoadOptions {
        config_path: Some(path.to_path_buf()),
        overrides: vec![],
    };
    match synthmon::plan::load(&opts) {
        Ok(c) => std::sync::Arc::new(c),
        Err(d) => panic!("config does not load:\n{d}"),
    }
}

/// Runs every (probe, environment) pair of `config` once, in-process.
pub async fn run_all(
    config: &std::sync::Arc<synthmon::plan::Config>,
    vars: &BTreeMap<String, String>,
) -> Vec<synthmon::outcome::Outcome> {
    let pairs = synthmon::once::select(config, &synthmon::once::Selection::default()).unwrap();
    synthmon::once::run(config, &pairs, vars, None)
        .await
        .unwrap()
}

/// Runs the first probe of `config` in environment `env` at `base_url`,
/// cancelling the run as a daemon shutdown does after `after`; returns the
/// outcome and how long the run took in all.
pub async fn run_cancelled_after(
    config: &synthmon::plan::Config,
    env: &str,
    base_url: &str,
    after: Duration,
) -> (synthmon::outcome::Outcome, Duration) {
    let base_url = url::Url::parse(base_url).unwrap();
    let vars = BTreeMap::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    let ctx = synthmon::probe::RunContext {
        probe: &config.probes[0],
        env: &config.environments[env],
        base_url: &base_url,
        tagging: &config.tagging,
        redactor: &config.redactor,
        vars: &vars,
        cancel: cancel.clone(),
        seed: None,
        progress: None,
        prev: None,
    };
    let trigger = async {
        tokio::time::sleep(after).await;
        cancel.cancel();
    };
    let started = Instant::now();
    let (outcome, ()) = tokio::join!(synthmon::probe::run(&ctx), trigger);
    (outcome, started.elapsed())
}

/// The single outcome of a config with one (probe, environment) pair.
pub async fn run_one(
    config: &std::sync::Arc<synthmon::plan::Config>,
) -> synthmon::outcome::Outcome {
    let mut outcomes = run_all(config, &BTreeMap::new()).await;
    assert_eq!(outcomes.len(), 1, "{outcomes:#?}");
    outcomes.remove(0)
}

/// A config with one environment `target` at `base_url` and nothing else.
pub fn config_with_target(base_url: &str) -> String {
    format!(
        "[daemon]\nprobes = [\"probes/*.toml\"]\n\n[environments.target]\nbase_url = \"{base_url}\"\n"
    )
}

/// Writes `config.toml` (the `target` environment of
/// [`config_with_target`], its table holding `env_extra` besides
/// `base_url`) and `probes` (file name, text) into `dir`; returns the
/// config file's path.
pub fn write_target_config(
    dir: &Path,
    base_url: &str,
    env_extra: &str,
    probes: &[(String, String)],
) -> PathBuf {
    let config = format!("{}{env_extra}\n", config_with_target(base_url));
    let files: Vec<(&str, &str)> = probes
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    write_config(dir, &config, &files)
}

/// Loads the config at `path`, runs every pair once, and returns the
/// outcomes by probe name.
pub async fn run_by_probe(path: &Path) -> BTreeMap<String, synthmon::outcome::Outcome> {
    run_all(&load(path), &BTreeMap::new())
        .await
        .into_iter()
        .map(|o| (o.probe.clone(), o))
        .collect()
}

/// Daemon options for an in-process daemon on the config at `path`, with
/// nothing from the test process' environment: no systemd socket or
/// watchdog, no file watching, no SIGHUP handler.
pub fn quiet_daemon_options(path: PathBuf) -> synthmon::daemon::DaemonOptions {
    // State (the outbox, the history) stays beside the test's config
    // unless the config names a directory of its own.
    let names_state_dir = std::fs::read_to_string(&path).is_ok_and(|c| c.contains("state_dir"));
    let overrides = match path.parent() {
        Some(dir) if !names_state_dir => vec![(
            "daemon.state_dir".to_owned(),
            dir.join(".state").display().to_string(),
        )],
        _ => vec![],
    };
    let mut opts = synthmon::daemon::DaemonOptions::from_env(synthmon::config::LoadOptions {
        config_path: Some(path),
        overrides,
    });
    opts.notify_socket = None;
    opts.watchdog = None;
    opts.watch_interval = None;
    opts.reload_on_sighup = false;
    opts
}

/// One HTTP/1.1 request to `addr` over a fresh connection (`Connection:
/// close`), for tests that inspect a server directly. Returns the status
/// and the body (bodies here are small and not chunked).
pub async fn http_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    json_body: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = json_body.unwrap_or("");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Runs `f`, failing the test if it takes longer than `bound`: every test
/// that talks to a server has a ceiling.
pub async fn within<F: std::future::Future>(bound: Duration, f: F) -> F::Output {
    tokio::time::timeout(bound, f)
        .await
        .expect("test exceeded its time bound")
}

/// The built-in sandbox on an ephemeral loopback port, default options.
pub async fn sandbox() -> synthmon::sandbox::Sandbox {
    synthmon::sandbox::Sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        synthmon::sandbox::SandboxOptions::default(),
    )
    .await
    .unwrap()
}
