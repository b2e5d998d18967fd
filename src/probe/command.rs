//! The `command` probe: runs a local program with a timeout and judges its
//! exit status and output.
//!
//! It is for checks that only a program on the host can make (a backup's
//! age, a queue's depth read by a vendor CLI, a script that exercises a
//! protocol synthmon does not speak). The program is executed directly,
//! never through a shell: `program` and each of `args` are exactly what the
//! program receives (`args` are templates).
//!
//! - **Environment.** The child's environment is cleared: it gets `PATH`
//!   from synthmon, the probe's `env` entries, and the tagging variables —
//!   `SYNTHETIC` (the tagging value), `SYNTHETIC_PROBE`, `SYNTHETIC_RUN_ID`,
//!   `SYNTHETIC_ENVIRONMENT`, `SYNTHETIC_BASE_URL`, and W3C `TRACEPARENT` and
//!   `BAGGAGE` (OpenTelemetry's environment carriers), which replace any the
//!   probe sets. Nothing else of synthmon's environment (where `${env:…}`
//!   secrets live) leaks to the program.
//! - **One deadline.** The program runs in a process group of its own. At
//!   the deadline, or when the run is dropped (a shutdown), the whole group
//!   is killed with SIGKILL, grandchildren included; after a normal exit the
//!   group is killed too, so a probe never leaves processes behind.
//! - **Bounded output.** stdout and stderr are kept up to
//!   `max_output_size` each (default 64 KiB, at most 16 MiB); the rest is
//!   read and counted but dropped, so a program that floods cannot bloat the
//!   daemon, nor block on a full pipe.
//! - **Verdict.** The run has one phase, `run`: from the start of the
//!   program to its exit and the end of its output (a background child
//!   still holding stdout open keeps the run going until the deadline). A program that cannot
//!   be started fails with `exec`; a non-zero exit or a death by signal fails
//!   with `exit` unless an expectation reads `exit_code` (then the
//!   expectations decide). Expectations read `exit_code`, `signal`,
//!   `stdout`, `stderr`, `json` (stdout parsed, or null), `timings` and
//!   `vars`.

use super::kind::{Assertion, BuildInput, Kind, KindEntry, RunContext, RunFuture};
use crate::config::check::Checker;
use crate::config::raw::RawSize;
use crate::expr::Facts;
use crate::expr::{Scope, Type, Types};
use crate::net::{Clock, Fail};
use crate::outcome::{Details, FailureReason, GaugeSpec, KindFacts, Outcome};
use crate::tagging::RunIds;
use crate::template::Text;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// The variables a `command` expectation can read.
pub const SCOPE: Scope<'static> = Scope {
    names: &[
        "exit_code",
        "signal",
        "stdout",
        "stderr",
        "json",
        "timings",
        "vars",
    ],
    types: &[TYPES],
};

/// The types of what this kind puts in scope, so `synthmon check` catches
/// a literal of another type compared with them.
const TYPES: Types<'static> = &[
    ("exit_code", Type::Number),
    ("signal", Type::Number),
    ("stdout", Type::String),
    ("stderr", Type::String),
];

/// What each of stdout and stderr may keep when `max_output_size` is not set.
pub const DEFAULT_MAX_OUTPUT: u64 = 64 * 1024;
/// The largest `max_output_size`.
pub const MAX_OUTPUT_LIMIT: u64 = 16 * 1024 * 1024;
/// How long a killed group may take to be reaped before the run gives up
/// waiting (the kernel reaps it; the run only stops watching).
const REAP_GRACE: Duration = Duration::from_secs(2);
/// Set by synthmon on every child; an `env` entry cannot replace them.
const TAGGING_VARS: &[&str] = &[
    "SYNTHETIC",
    "SYNTHETIC_PROBE",
    "SYNTHETIC_RUN_ID",
    "SYNTHETIC_ENVIRONMENT",
    "SYNTHETIC_BASE_URL",
    "TRACEPARENT",
    "BAGGAGE",
];

/// The `[command]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommand {
    /// A path (relative ones resolve against the probe file's directory) or
    /// a name looked up on `PATH`.
    pub program: Option<String>,
    /// The arguments, each a template.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment variables, values are templates.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The working directory (default: synthmon's).
    pub dir: Option<String>,
    /// Text written to the program's standard input, then closed; a
    /// template. Without it, stdin is `/dev/null`.
    pub stdin: Option<String>,
    /// Cap on what is kept of each of stdout and stderr.
    pub max_output_size: Option<RawSize>,
    #[serde(default)]
    pub expect: Vec<String>,
}

/// The checked `[command]` table.
#[derive(Debug)]
pub struct CommandSpec {
    pub program: PathBuf,
    pub args: Vec<Text>,
    pub env: Vec<(String, Text)>,
    pub dir: Option<PathBuf>,
    pub stdin: Option<Text>,
    pub max_output: usize,
    pub expect: Vec<Assertion>,
    /// No expectation reads `exit_code`: anything but a zero exit fails the
    /// run with `exit`.
    pub implicit_exit: bool,
}

/// What a `command` run saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CommandFacts {
    pub program: String,
    /// The arguments as rendered for this run.
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The exit code; `None` when a signal ended the program.
    pub exit_code: Option<i32>,
    /// The signal that ended the program, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// What was kept of each stream (lossy UTF-8), and how many bytes came.
    pub stdout: String,
    pub stderr: String,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
}

impl CommandFacts {
    /// Gauges for /metrics, labelled with probe and environment.
    pub fn gauges(&self) -> Vec<(&'static str, f64)> {
        match (self.exit_code, self.signal) {
            (Some(code), _) => vec![("probe_command_exit_code", f64::from(code))],
            // As shells report a death by signal.
            (None, Some(signal)) => vec![("probe_command_exit_code", f64::from(128 + signal))],
            (None, None) => Vec::new(),
        }
    }

    fn record_exit(&mut self, status: ExitStatus) {
        self.exit_code = status.code();
        self.signal = status.signal();
    }

    /// "exited with 3" or "was killed by signal 9".
    fn exit_words(&self) -> String {
        match (self.exit_code, self.signal) {
            (Some(code), _) => format!("exited with {code}"),
            (None, Some(signal)) => format!("was killed by signal {signal}"),
            (None, None) => "ended without a status".to_owned(),
        }
    }
}

/// Checks the raw table; problems are recorded on `c` at `command.…` paths.
pub(crate) fn build(raw: RawCommand, c: &mut Checker<'_>) -> Option<CommandSpec> {
    let errors = c.error_count();
    let program = match raw.program.as_deref() {
        None => {
            c.missing("command", "program");
            None
        }
        Some(p) if p.trim().is_empty() || p.contains('\0') => {
            c.err("command.program", "expected a program path or name");
            None
        }
        Some(p) => {
            let program = program_path(c.base_dir(), p);
            if let Some(problem) = unusable(&program) {
                // Where the check runs may not be where the daemon runs (a
                // CI job checking config): a warning, and the run says `exec`.
                tracing::warn!(at = %c.location("command.program"), "{problem}");
            }
            Some(program)
        }
    };
    let args: Vec<Text> = raw
        .args
        .iter()
        .enumerate()
        .filter_map(|(i, a)| c.text(&format!("command.args[{i}]"), a, None))
        .collect();
    let mut env = Vec::new();
    for (name, value) in &raw.env {
        let path = format!("command.env.{name}");
        if name.is_empty() || name.contains(['=', '\0']) {
            c.err(
                &path,
                "an environment variable name cannot be empty or hold `=`",
            );
        } else if TAGGING_VARS.contains(&name.as_str()) {
            c.err(
                &path,
                format!("`{name}` is set by synthmon on every command (tagging)"),
            );
        } else if let Some(text) = c.text(&path, value, None) {
            env.push((name.clone(), text));
        }
    }
    let dir = raw.dir.as_deref().map(|d| {
        let dir = c.base_dir().join(d);
        if !dir.is_dir() {
            tracing::warn!(
                at = %c.location("command.dir"),
                "{} is not a directory here",
                dir.display()
            );
        }
        dir
    });
    let stdin = raw
        .stdin
        .as_deref()
        .and_then(|s| c.text("command.stdin", s, None));
    let max_output = c.size(
        "command.max_output_size",
        raw.max_output_size.as_ref(),
        DEFAULT_MAX_OUTPUT,
        MAX_OUTPUT_LIMIT,
    );
    let expect = c.expectations("command", &raw.expect, SCOPE);
    let implicit_exit = !expect.iter().any(|a| a.expr.reads("exit_code"));
    if c.error_count() > errors {
        return None;
    }
    Some(CommandSpec {
        program: program?,
        args,
        env,
        dir,
        stdin,
        max_output: usize::try_from(max_output).unwrap_or(usize::MAX),
        expect,
        implicit_exit,
    })
}

/// A name without a slash stays a name (looked up on `PATH` at run time);
/// a relative path resolves against the probe file's directory.
fn program_path(base: &Path, program: &str) -> PathBuf {
    if program.contains('/') {
        base.join(program)
    } else {
        PathBuf::from(program)
    }
}

/// Why `program` could not be run from here, if it could not.
fn unusable(program: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 || program.is_absolute() {
        return (!executable(program))
            .then(|| format!("{} is not an executable file here", program.display()));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| executable(&dir.join(program)));
    (!found).then(|| format!("`{}` is not found on PATH here", program.display()))
}

pub async fn run(spec: &CommandSpec, ctx: &RunContext<'_>) -> Outcome {
    let ids = RunIds::generate();
    let mut outcome = Outcome::new(&ctx.probe.name, &ctx.env.name, "command", &ids);
    let mut clock = Clock::new(ctx.deadline(), &["run"]);
    let mut facts = CommandFacts {
        program: spec.program.display().to_string(),
        ..CommandFacts::default()
    };
    let result = execute(spec, ctx, &ids, &mut clock, &mut facts).await;
    clock.record(&mut outcome);
    for text in facts
        .args
        .iter_mut()
        .chain([&mut facts.stdout, &mut facts.stderr])
    {
        ctx.redactor.scrub(text);
    }
    match result {
        Err(fail) => outcome.fail(fail.reason, fail.message),
        Ok(()) => {
            outcome.responded = true;
            if spec.implicit_exit && facts.exit_code != Some(0) {
                outcome.fail(
                    FailureReason::Exit,
                    format!("{} {}", facts.program, facts.exit_words()),
                );
            }
            let mut f = Facts::default();
            f.set(
                "exit_code",
                facts
                    .exit_code
                    .map_or(cel::Value::Null, |c| i64::from(c).into()),
            );
            f.set(
                "signal",
                facts
                    .signal
                    .map_or(cel::Value::Null, |s| i64::from(s).into()),
            );
            f.set("stdout", facts.stdout.clone());
            f.set("stderr", facts.stderr.clone());
            let (json, not_json) = match crate::expr::parse_json(facts.stdout.as_bytes(), "stdout")
            {
                Ok(json) => (json, None),
                Err(why) => (cel::Value::Null, Some(why)),
            };
            f.set("json", json);
            f.set("timings", clock.timings());
            f.set("vars", super::kind::vars_value(ctx.vars));
            ctx.check_expectations_with_json(&mut outcome, &spec.expect, f, not_json.as_deref());
        }
    }
    outcome.details = Some(Details::new(facts));
    super::kind::finish(&mut outcome);
    super::kind::redact(outcome, ctx.redactor)
}

/// Kills the process group it names when dropped: at the end of every run,
/// at its deadline, and when a shutdown drops the run.
struct Group(Option<rustix::process::Pid>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            // ESRCH (nothing left in the group) is the usual answer.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

/// One run: render, start, feed stdin, collect output and status.
async fn execute(
    spec: &CommandSpec,
    ctx: &RunContext<'_>,
    ids: &RunIds,
    clock: &mut Clock,
    facts: &mut CommandFacts,
) -> Result<(), Fail> {
    let render = |text: &Text, what: &str| {
        ctx.render(text, ids)
            .map_err(|e| Fail::new(FailureReason::Request, format!("cannot render {what}: {e}")))
    };
    for (i, arg) in spec.args.iter().enumerate() {
        facts.args.push(render(arg, &format!("command.args[{i}]"))?);
    }
    let stdin = spec
        .stdin
        .as_ref()
        .map(|t| render(t, "command.stdin"))
        .transpose()?;
    let mut cmd = Command::new(&spec.program);
    cmd.args(&facts.args)
        .env_clear()
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    for (name, value) in &spec.env {
        cmd.env(name, render(value, &format!("command.env.{name}"))?);
    }
    let tagging_value = String::from_utf8_lossy(ctx.tagging.value.as_bytes()).into_owned();
    let baggage = ids.baggage(&ctx.probe.name);
    for (name, value) in [
        ("SYNTHETIC", tagging_value.as_str()),
        ("SYNTHETIC_PROBE", &ctx.probe.name),
        ("SYNTHETIC_RUN_ID", &ids.run_id),
        ("SYNTHETIC_ENVIRONMENT", &ctx.env.name),
        ("SYNTHETIC_BASE_URL", ctx.base_url.as_str()),
        ("TRACEPARENT", &ids.traceparent()),
        ("BAGGAGE", &baggage),
    ] {
        cmd.env(name, value);
    }
    if let Some(dir) = &spec.dir {
        cmd.current_dir(dir);
    }

    clock.begin();
    let mut child = cmd.spawn().map_err(|e| {
        Fail::new(
            FailureReason::Exec,
            format!("cannot start {}: {e}", spec.program.display()),
        )
    })?;
    facts.pid = child.id();
    let group = Group(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw),
    );
    let pipe = child.stdin.take();
    let feed = async {
        if let (Some(mut pipe), Some(text)) = (pipe, stdin) {
            // A program that exits without reading is not an error here;
            // its exit status says what it thought.
            let _ = pipe.write_all(text.as_bytes()).await;
        }
    };
    let out = Capture::read(child.stdout.take(), spec.max_output);
    let err = Capture::read(child.stderr.take(), spec.max_output);
    let ran = clock
        .phase("run", async {
            let ((), out, err) = tokio::join!(feed, out, err);
            (out, err, child.wait().await)
        })
        .await;
    match ran {
        Ok((out, err, status)) => {
            out.into_facts(
                &mut facts.stdout,
                &mut facts.stdout_bytes,
                &mut facts.stdout_truncated,
            );
            err.into_facts(
                &mut facts.stderr,
                &mut facts.stderr_bytes,
                &mut facts.stderr_truncated,
            );
            let status = status.map_err(|e| {
                Fail::new(
                    FailureReason::Exec,
                    format!("cannot wait for {}: {e}", spec.program.display()),
                )
            })?;
            facts.record_exit(status);
            Ok(())
        }
        Err(mut fail) => {
            drop(group);
            if let Ok(Ok(status)) = tokio::time::timeout(REAP_GRACE, child.wait()).await {
                facts.record_exit(status);
            }
            fail.message
                .push_str("; the program's process group was killed");
            Err(fail)
        }
    }
}

/// What was read of one output stream.
#[derive(Default)]
struct Capture {
    kept: Vec<u8>,
    total: u64,
}

impl Capture {
    /// Reads `stream` to its end, keeping the first `max` bytes.
    async fn read(stream: Option<impl AsyncRead + Unpin>, max: usize) -> Capture {
        let mut capture = Capture::default();
        let Some(mut stream) = stream else {
            return capture;
        };
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    capture.total += n as u64;
                    let room = max.saturating_sub(capture.kept.len());
                    capture.kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        capture
    }

    fn into_facts(self, text: &mut String, bytes: &mut u64, truncated: &mut bool) {
        *truncated = self.total > self.kept.len() as u64;
        *bytes = self.total;
        *text = String::from_utf8_lossy(&self.kept).into_owned();
    }
}

/// The registry's line for `[command]`.
pub const KIND: KindEntry = KindEntry {
    name: "command",
    build: build_kind,
    gauges: GAUGES,
};

/// What this kind's facts export on /metrics.
const GAUGES: &[GaugeSpec] = &[GaugeSpec {
    name: "probe_command_exit_code",
    seconds: false,
    help: "Exit code of the last command run (128 + the signal when a signal ended it).",
}];

fn build_kind(c: &mut Checker<'_>, _: &BuildInput<'_>) -> Option<Box<dyn Kind>> {
    let raw: RawCommand = c.table("command")?;
    build(raw, c).map(|spec| Box::new(spec) as Box<dyn Kind>)
}

impl Kind for CommandSpec {
    fn name(&self) -> &'static str {
        "command"
    }

    fn run<'a>(&'a self, ctx: &'a RunContext<'_>) -> RunFuture<'a> {
        Box::pin(run(self, ctx))
    }

    fn scope(&self) -> Option<crate::expr::Scope<'static>> {
        Some(SCOPE)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl KindFacts for CommandFacts {
    fn gauges(&self) -> Vec<(&'static str, f64)> {
        CommandFacts::gauges(self)
    }
}
