//! The command line: parses arguments, sets up logging and the runtime, and
//! dispatches to `--once`, `check`, `list`, `sandbox` or `history`. Exit
//! codes: 0 all passed, 1 a probe failed (or, with `--baseline`,
//! regressed), 2 a config or usage error (a bad baseline file included, no
//! history to show), 130/143 a `--once` run stopped by SIGINT/SIGTERM
//! (after its teardowns and partial report).

use crate::config::{self, LoadOptions};
use crate::once::{self, Selection};
use crate::outcome::Outcome;
use crate::plan::shard::ShardSpec;
use crate::plan::{self, Config, Shard};
use crate::report;
use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Exit code when every probe passed.
pub const EXIT_OK: u8 = 0;
/// Exit code when a probe or threshold failed, or a probe regressed
/// against `--baseline`.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for a config or usage error.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "synthmon",
    version,
    about = "Synthetic production monitor: probes, tagged synthetic workloads, SLA thresholds, alerts",
    after_help = "Exit codes: 0 all passed, 1 a probe failed (or regressed against --baseline), \
                  2 config or usage error, \
                  130/143 a --once run interrupted by SIGINT/SIGTERM (teardowns run, partial report; \
                  a second signal exits at once)."
)]
pub struct Cli {
    /// Config file (default: ./config.toml, then /etc/synthmon/config.toml).
    #[arg(short, long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Override a config key, e.g. `--set daemon.listen=0.0.0.0:9464` (applied last).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE", value_parser = key_value)]
    pub set: Vec<(String, String)>,

    /// Log format on stderr; `auto` is human on a terminal.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    /// Run only this shard's (probe, environment) pairs: I/N with shards
    /// numbered from 0 (0/3, 1/3, 2/3), or auto/N to take I from a
    /// StatefulSet pod name's ordinal (POD_NAME, else HOSTNAME: synthmon-2
    /// is 2). For the daemon, --once and list.
    #[arg(long, global = true, env = "SYNTHMON_SHARD", value_name = "I/N",
          value_parser = clap::value_parser!(ShardSpec))]
    pub shard: Option<ShardSpec>,

    /// Async worker threads. Default 1: a scheduled run takes ~0.1 ms of
    /// CPU, and the heavy work (status page, API, /metrics, SQLite) runs
    /// on blocking threads, so a second worker mostly adds wake-ups, for
    /// --once workloads too. Raise it for thousands of TLS handshakes a
    /// second across probes (one workload runs on one worker). `sandbox`
    /// defaults to one per CPU.
    #[arg(long, global = true, env = "SYNTHMON_THREADS", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,

    /// Run the selected probes once, print a summary and exit.
    #[arg(long)]
    pub once: bool,

    /// Only this probe (repeatable).
    #[arg(long = "probe", value_name = "NAME", requires = "once")]
    pub probes: Vec<String>,

    /// Only probes with this tag (repeatable).
    #[arg(long = "tag", value_name = "TAG", requires = "once")]
    pub tags: Vec<String>,

    /// Only this environment (repeatable).
    #[arg(long = "env", value_name = "ENV", requires = "once")]
    pub envs: Vec<String>,

    /// Set a variable for expressions, overriding the environment's (repeatable).
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = key_value, requires = "once")]
    pub vars: Vec<(String, String)>,

    /// Seed every probe's generators: the same seed sends the same payloads
    /// byte for byte (overrides each probe's `seed`).
    #[arg(long, value_name = "N", requires = "once")]
    pub seed: Option<u64>,

    /// Report format.
    #[arg(long, value_enum, default_value_t = Output::Human, requires = "once")]
    pub output: Output,

    /// Send alerts for failed probes through [alerting] (waits up to 30 s
    /// for delivery; anything undelivered stays in the outbox).
    #[arg(long, requires = "once")]
    pub alert: bool,

    /// Compare each probe's latency with FILE (written by --save-baseline);
    /// exit 1 when one is slower than the baseline beyond the tolerance.
    #[arg(long, value_name = "FILE", requires = "once")]
    pub baseline: Option<PathBuf>,

    /// Write each probe's latency percentiles to FILE after the run
    /// (atomically; may be the --baseline file, which is read first).
    #[arg(long, value_name = "FILE", requires = "once")]
    pub save_baseline: Option<PathBuf>,

    /// How much slower than the baseline still passes, for every probe
    /// (default: the probe's `baseline.tolerance`, else 20%).
    #[arg(long, value_name = "PCT", requires = "baseline", value_parser = crate::slo::parse_tolerance)]
    pub baseline_tolerance: Option<f64>,

    /// Also write the results as JUnit XML to FILE for CI test reporters
    /// (a testsuite per probe; a testcase per environment, flow step,
    /// threshold and baseline comparison), atomically.
    #[arg(long, value_name = "FILE", requires = "once")]
    pub junit: Option<PathBuf>,

    /// Also write a self-contained HTML report to FILE (inline CSS and
    /// SVG, nothing fetched), atomically.
    #[arg(long, value_name = "FILE", requires = "once")]
    pub html: Option<PathBuf>,

    /// Write each failed run's artifact (its redacted request, response,
    /// timings, a flow's steps) as JSON under DIR/PROBE/ENVIRONMENT/.
    #[arg(long, value_name = "DIR", requires = "once")]
    pub artifacts: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default): probes on their schedules, until SIGTERM.
    Run,
    /// Validate the config and every probe file; exit 2 on any error.
    Check,
    /// List probes × environments with their schedules (with --shard,
    /// the pairs that shard runs).
    List(ListArgs),
    /// Serve the built-in sandbox target alone, to rehearse probes.
    Sandbox {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Show a probe's stored runs, newest first, with a summary, from the
    /// daemon's history in its state directory (no running daemon needed).
    History(HistoryArgs),
    /// Add, list or expire silences on a running daemon (over its HTTP
    /// API; adding and expiring need its bearer token).
    Silence(SilenceArgs),
}

/// `synthmon silence`'s arguments.
#[derive(Debug, clap::Args)]
pub struct SilenceArgs {
    #[command(subcommand)]
    pub action: SilenceAction,
    /// The daemon's base URL (default: `http://` + `[daemon] listen` of
    /// the config, a wildcard address read as 127.0.0.1).
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// The daemon's bearer token (`[daemon] token`).
    #[arg(long, global = true, env = "SYNTHMON_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum SilenceAction {
    /// Hold the alerts of the matching pairs until the silence expires.
    Add {
        /// Only this probe (repeatable).
        #[arg(long = "probe", value_name = "PROBE")]
        probes: Vec<String>,
        /// Only this environment (repeatable).
        #[arg(long = "env", value_name = "ENV")]
        environments: Vec<String>,
        /// Only probes with this tag (repeatable; any of them).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Only pairs with this label (`key=value`, repeatable; all of them).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// How long, from now (`2h`, `30m`).
        #[arg(
            long = "for",
            value_name = "DURATION",
            required_unless_present = "until"
        )]
        duration: Option<String>,
        /// Until this RFC 3339 time (instead of --for).
        #[arg(long, value_name = "TIME", conflicts_with = "duration")]
        until: Option<String>,
        /// Why (required).
        #[arg(long)]
        comment: String,
        /// Who (default: $USER).
        #[arg(long, value_name = "NAME")]
        created_by: Option<String>,
    },
    /// Every silence the daemon keeps (active and recently expired).
    List {
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
    },
    /// End a silence now (it stays listed as expired).
    Expire {
        /// The silence's id, as `add` and `list` show it.
        id: String,
    },
}

/// `synthmon list`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Output format (`json`: one document, see README "Running several
    /// instances").
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
}

/// `synthmon history`'s arguments.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The probe's name.
    pub probe: String,
    /// Only this environment (default: every one it runs in or has history in).
    #[arg(long = "env", value_name = "ENV")]
    pub env: Option<String>,
    /// From this time on: a duration before now (24h, 7d) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", default_value = "24h")]
    pub since: String,
    /// At most this many runs (1 to 1000).
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub limit: u16,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Auto,
    Human,
    Json,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, found `{s}`")),
    }
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    // Only the daemon (`run`, or no subcommand without --once) is long-lived.
    let one_shot = cli.once || !matches!(cli.command, None | Some(Command::Run));
    init_logging(cli.log_format, one_shot);
    let threads = cli.threads.map_or_else(
        || match cli.command {
            // A target serving load (the bench's): one worker per CPU.
            Some(Command::Sandbox { .. }) => {
                std::thread::available_parallelism().map_or(1, usize::from)
            }
            _ => DEFAULT_THREADS,
        },
        usize::from,
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    ExitCode::from(runtime.block_on(dispatch(cli)))
}

/// Async worker threads unless `--threads` says otherwise, for every
/// command but `sandbox`. One: at 1,000 runs/s (loopback HTTP, 2 CPUs)
/// the daemon took ~135 CPU-µs a run with two workers and ~105 with one,
/// the difference being the workers parking and waking each other, with
/// no better schedule lag. (A `--once` workload on 32 kept connections
/// also sent 8–16 % more requests a second at ~25 % less CPU a request with
/// one, when each exchange was a task of its own, handed to the other
/// worker and back. A workload is one task now; a fast one is sharded over
/// threads of its own, whatever this says: see `probe::workload`.)
const DEFAULT_THREADS: usize = 1;

/// Runs the parsed command line; returns the exit code.
pub async fn dispatch(cli: Cli) -> u8 {
    let load = LoadOptions {
        config_path: cli.config.clone(),
        overrides: cli.set.clone(),
    };
    if cli.once && cli.command.is_some() {
        eprintln!("error: --once runs probes; it cannot be combined with a subcommand");
        return EXIT_USAGE;
    }
    // The shard is resolved only for the commands that use it, so an
    // `auto/N` that cannot be (no pod name) never stops `sandbox` or
    // `history`.
    let shard = || -> Result<Shard, u8> {
        let spec = cli.shard.unwrap_or(ShardSpec::Fixed(Shard::ALL));
        spec.resolve(|k| std::env::var(k).ok()).map_err(|e| {
            let msg = e.to_string();
            if cli.once {
                if cli.output == Output::Json {
                    println!("{}", report::json::render_error(&msg));
                }
                write_reports(
                    &cli,
                    || report::junit::render_error(&msg),
                    || report::html::render_error(&msg),
                );
            }
            eprintln!("error: {msg}");
            EXIT_USAGE
        })
    };
    match &cli.command {
        Some(Command::Sandbox { listen }) => return sandbox(*listen).await,
        Some(Command::History(args)) => return history(&load, args).await,
        Some(Command::Silence(args)) => return silence(&load, args).await,
        Some(Command::Run) => {
            return match shard() {
                Ok(shard) => daemon(load, shard).await,
                Err(code) => code,
            };
        }
        Some(Command::Check) => {
            let shard = match shard() {
                Ok(s) => s,
                Err(code) => return code,
            };
            return match plan::load(&load) {
                Ok(mut c) => {
                    let pairs = c.pairs();
                    println!(
                        "ok: {} probes, {} environments, {pairs} (probe, environment) pairs",
                        c.probes.len(),
                        c.environments.len()
                    );
                    if shard.is_sharded() {
                        c.retain_shard(shard);
                        println!("shard {shard} runs {} of them", c.pairs());
                    }
                    EXIT_OK
                }
                Err(diags) => print_diagnostics(&diags),
            };
        }
        Some(Command::List(args)) => {
            let shard = match shard() {
                Ok(s) => s,
                Err(code) => return code,
            };
            return match plan::load(&load) {
                Ok(c) => {
                    let text = match args.output {
                        Output::Human => list(&c, shard),
                        Output::Json => list_json(&c, shard) + "\n",
                    };
                    // A closed pipe (`| head`) is not an error of `list`.
                    let mut stdout = std::io::stdout().lock();
                    let _ = stdout.write_all(text.as_bytes());
                    let _ = stdout.flush();
                    drop(stdout);
                    if args.output == Output::Human && shard.is_sharded() {
                        let total = c.pairs();
                        let mut mine = c;
                        mine.retain_shard(shard);
                        eprintln!(
                            "shard {shard} runs {} of {total} (probe, environment) pairs",
                            mine.pairs()
                        );
                    }
                    EXIT_OK
                }
                Err(diags) => {
                    if args.output == Output::Json {
                        println!("{}", report::json::render_diagnostics(&diags));
                    }
                    print_diagnostics(&diags)
                }
            };
        }
        None => {}
    }
    let shard = match shard() {
        Ok(s) => s,
        Err(code) => return code,
    };
    if !cli.once {
        return daemon(load, shard).await;
    }
    // Only the secrets of what this run uses must be there.
    let uses = plan::Uses::Once {
        probes: cli.probes.clone(),
        tags: cli.tags.clone(),
        environments: cli.envs.clone(),
        alerting: cli.alert,
    };
    let config = match plan::load_for(&load, &uses) {
        Ok(c) => std::sync::Arc::new(c),
        Err(diags) => {
            if cli.output == Output::Json {
                println!("{}", report::json::render_diagnostics(&diags));
            }
            write_reports(
                &cli,
                || report::junit::render_diagnostics(&diags),
                || report::html::render_diagnostics(&diags),
            );
            return print_diagnostics(&diags);
        }
    };
    let selection = Selection {
        probes: cli.probes.clone(),
        tags: cli.tags.clone(),
        environments: cli.envs.clone(),
        shard,
    };
    let pairs = match once::select(&config, &selection) {
        Ok(p) => {
            if shard.is_sharded() {
                let every = Selection {
                    shard: Shard::ALL,
                    ..selection.clone()
                };
                let selected = once::select(&config, &every).map_or(0, |all| all.len());
                eprintln!(
                    "shard {shard}: running {} of the {selected} selected (probe, environment) pairs",
                    p.len()
                );
            }
            p
        }
        Err(msg) => {
            if cli.output == Output::Json {
                println!("{}", report::json::render_error(&msg));
            }
            write_reports(
                &cli,
                || report::junit::render_error(&msg),
                || report::html::render_error(&msg),
            );
            eprintln!("error: {msg}");
            return EXIT_USAGE;
        }
    };
    // A bad baseline file is a usage error before anything runs.
    let gate = match &cli.baseline {
        Some(path) => match once::Gate::prepare(&config, &pairs, path, cli.baseline_tolerance) {
            Ok(g) => Some(g),
            Err(e) => {
                let e = anyhow::Error::new(e);
                let msg = format!("{e:#}");
                if cli.output == Output::Json {
                    println!("{}", report::json::render_error(&msg));
                }
                write_reports(
                    &cli,
                    || report::junit::render_error(&msg),
                    || report::html::render_error(&msg),
                );
                return fail(e);
            }
        },
        None => None,
    };
    let vars: BTreeMap<String, String> = cli.vars.iter().cloned().collect();
    let interrupt = Interrupt::arm();
    let outcomes = match once::run_until(&config, &pairs, &vars, cli.seed, &interrupt.cancel).await
    {
        Ok(o) => o,
        Err(e) => return fail(e.into()),
    };
    let interrupted = interrupt.signal();
    // Before the alerts, which name the files.
    let artifacts = match &cli.artifacts {
        Some(dir) => match once::write_artifacts(&config, dir, &outcomes).await {
            Ok(written) => {
                if !written.is_empty() {
                    eprintln!(
                        "artifacts: {} failed run(s) written under {}",
                        written.len(),
                        dir.display()
                    );
                }
                written
            }
            Err(e) => return fail(e.into()),
        },
        None => BTreeMap::new(),
    };
    if let Some(signal) = interrupted {
        eprintln!(
            "interrupted by {}: teardowns ran; the report below is partial{}",
            signal.name(),
            if cli.alert {
                "; no alerts were sent"
            } else {
                ""
            }
        );
    } else if cli.alert {
        match crate::daemon::alerting::send_once(
            &config,
            &outcomes,
            &artifacts,
            Duration::from_secs(30),
        )
        .await
        {
            Ok(sent) => eprintln!(
                "alerts: {} notification(s), {} delivery(ies) still pending",
                sent.notifications, sent.pending
            ),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_USAGE;
            }
        }
    }
    let gate = gate.map(|g| g.judge(&outcomes));
    let text = match cli.output {
        Output::Json => report::json::render_with_baseline(&outcomes, gate.as_ref()) + "\n",
        Output::Human => {
            let mut text = report::human::render(&outcomes, use_color());
            if let Some(g) = &gate {
                text.push_str(&report::human::render_baseline(g, use_color()));
            }
            text
        }
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
    drop(stdout);
    // An interrupted run's files are partial, like the report above.
    let reports_written = write_reports(
        &cli,
        || {
            let files = artifacts
                .iter()
                .map(|(run, path)| (run.clone(), path.display().to_string()))
                .collect();
            report::junit::render(&outcomes, gate.as_ref(), &files)
        },
        || {
            let html = cli.html.as_deref().unwrap_or(Path::new("."));
            let links = artifacts
                .iter()
                .map(|(run, path)| (run.clone(), report::relative_link(html, path)))
                .collect();
            report::html::render(&outcomes, gate.as_ref(), &links)
        },
    );
    if let Some(path) = &cli.save_baseline {
        if interrupted.is_some() {
            eprintln!(
                "baseline: not written to {}: the run was interrupted",
                path.display()
            );
        } else {
            match once::save_baseline(path, &outcomes) {
                Ok(saved) => eprintln!(
                    "baseline: wrote {} (probe, environment) pair(s) to {}{}",
                    saved.entries,
                    path.display(),
                    if saved.left_out > 0 {
                        format!(
                            "; {} left out: their run failed or measured no latency",
                            saved.left_out
                        )
                    } else {
                        String::new()
                    }
                ),
                Err(e) => return fail(e.into()),
            }
        }
    }
    if let Some(signal) = interrupted {
        signal.exit_code()
    } else if !reports_written {
        EXIT_USAGE
    } else if outcomes.iter().all(Outcome::passed) && gate.as_ref().is_none_or(|g| g.passed()) {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// Writes the `--junit` and `--html` files that were asked for, each
/// atomically (a temporary file beside it, then a rename); the documents
/// are rendered only when asked for. Returns false when one could not be
/// written (the error is printed; the other is still written).
fn write_reports(cli: &Cli, junit: impl FnOnce() -> String, html: impl FnOnce() -> String) -> bool {
    let junit = write_report(cli.junit.as_deref(), "JUnit", junit);
    let html = write_report(cli.html.as_deref(), "HTML", html);
    junit && html
}

/// One of [`write_reports`]' files, when `path` is given.
fn write_report(
    path: Option<&std::path::Path>,
    what: &str,
    render: impl FnOnce() -> String,
) -> bool {
    let Some(path) = path else { return true };
    match report::write_atomic(path, render().as_bytes()) {
        Ok(()) => true,
        Err(e) => {
            let e = anyhow::Error::new(e).context(format!(
                "cannot write the {what} report `{}`",
                path.display()
            ));
            eprintln!("error: {e:#}");
            false
        }
    }
}

fn print_diagnostics(diags: &config::Diagnostics) -> u8 {
    eprintln!("{diags}");
    EXIT_USAGE
}

/// Prints `error` with its causes on one line (`error: what: why`) and
/// returns the exit code for an invocation that could not run.
fn fail(error: anyhow::Error) -> u8 {
    eprintln!("error: {error:#}");
    EXIT_USAGE
}

fn use_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The `list` table: the pairs `shard` runs.
pub fn list(config: &Config, shard: Shard) -> String {
    let mut rows = vec![[
        "PROBE".to_owned(),
        "ENVIRONMENT".to_owned(),
        "KIND".to_owned(),
        "SCHEDULE".to_owned(),
        "TIMEOUT".to_owned(),
        "TAGS".to_owned(),
    ]];
    for p in &config.probes {
        let schedule = match &p.schedule {
            config::Schedule::Every(d) => format!("every {}", humantime::format_duration(*d)),
            config::Schedule::Cron {
                expression,
                timezone,
            } => format!("cron {expression} ({timezone})"),
        };
        for env in p.environments.iter().filter(|e| shard.owns(&p.name, e)) {
            rows.push([
                p.name.clone(),
                env.clone(),
                match p.workload {
                    Some(_) => format!("{}+workload", p.kind.name()),
                    None => p.kind.name().to_owned(),
                },
                schedule.clone(),
                humantime::format_duration(p.timeout).to_string(),
                p.tags.join(","),
            ]);
        }
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `list --output json`'s `schema_version`: fields are only added within
/// a version.
pub const LIST_SCHEMA_VERSION: u32 = 1;

/// `synthmon list --output json`: the pairs `shard` runs, in `list`'s
/// order (probe files, then each probe's environments), versioned as
/// `--once`'s report is (its own version):
///
/// ```json
/// { "schema_version": 1, "synthmon_version": "0.1.0",
///   "shard": { "index": 1, "count": 3 }, "total_pairs": 50,
///   "pairs": [ { "probe": "orders-health", "environment": "prod", "kind": "http",
///                "workload": false, "schedule": { "every": 30.0 }, "timeout": 5.0,
///                "tags": ["smoke"] } ] }
/// ```
///
/// `total_pairs` counts every shard's pairs; a cron schedule is
/// `{ "cron": EXPRESSION, "timezone": ZONE }`; durations are seconds.
pub fn list_json(config: &Config, shard: Shard) -> String {
    /// The document, fields in the order shown.
    #[derive(serde::Serialize)]
    struct ListJson<'a> {
        schema_version: u32,
        synthmon_version: &'static str,
        shard: ShardJson,
        total_pairs: usize,
        pairs: Vec<PairJson<'a>>,
    }
    #[derive(serde::Serialize)]
    struct ShardJson {
        index: u32,
        count: u32,
    }
    #[derive(serde::Serialize)]
    struct PairJson<'a> {
        probe: &'a str,
        environment: &'a str,
        kind: &'a str,
        workload: bool,
        schedule: serde_json::Value,
        timeout: f64,
        tags: &'a [String],
    }
    let mut pairs = Vec::new();
    for p in &config.probes {
        let schedule = match &p.schedule {
            config::Schedule::Every(d) => serde_json::json!({ "every": d.as_secs_f64() }),
            config::Schedule::Cron {
                expression,
                timezone,
            } => serde_json::json!({ "cron": expression, "timezone": timezone }),
        };
        for env in p.environments.iter().filter(|e| shard.owns(&p.name, e)) {
            pairs.push(PairJson {
                probe: &p.name,
                environment: env,
                kind: p.kind.name(),
                workload: p.workload.is_some(),
                schedule: schedule.clone(),
                timeout: p.timeout.as_secs_f64(),
                tags: &p.tags,
            });
        }
    }
    let doc = ListJson {
        schema_version: LIST_SCHEMA_VERSION,
        synthmon_version: env!("CARGO_PKG_VERSION"),
        shard: ShardJson {
            index: shard.index(),
            count: shard.count(),
        },
        total_pairs: config.pairs(),
        pairs,
    };
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// `synthmon silence`: calls the daemon's silences API; exit 1 when the
/// daemon refused or could not be reached.
async fn silence(load: &LoadOptions, args: &SilenceArgs) -> u8 {
    use crate::daemon::silences::{Client, NewSilence, render};
    let base = match &args.url {
        Some(u) => u.clone(),
        None => {
            // Only `[daemon] listen` is needed: the settings, not the probes.
            let listen = crate::config::load_settings(load)
                .ok()
                .map(|l| l.settings.daemon.listen)
                .unwrap_or_else(|| ([127, 0, 0, 1], 9464).into());
            let host = if listen.ip().is_unspecified() {
                "127.0.0.1".to_owned()
            } else if listen.is_ipv6() {
                format!("[{}]", listen.ip())
            } else {
                listen.ip().to_string()
            };
            format!("http://{host}:{}", listen.port())
        }
    };
    let client = match Client::new(&base, args.token.clone()) {
        Ok(c) => c,
        Err(e) => return fail(anyhow::anyhow!(e)),
    };
    let done = match &args.action {
        SilenceAction::Add {
            probes,
            environments,
            tags,
            labels,
            duration,
            until,
            comment,
            created_by,
        } => {
            let mut parsed = std::collections::BTreeMap::new();
            for l in labels {
                let Some((k, v)) = l.split_once('=') else {
                    eprintln!("error: --label: expected KEY=VALUE, found `{l}`");
                    return EXIT_USAGE;
                };
                parsed.insert(k.trim().to_owned(), v.trim().to_owned());
            }
            let new = NewSilence {
                probes: probes.clone(),
                environments: environments.clone(),
                tags: tags.clone(),
                labels: parsed,
                expires_at: until.clone(),
                duration: duration.clone(),
                comment: comment.clone(),
                created_by: created_by
                    .clone()
                    .or_else(|| std::env::var("USER").ok())
                    .unwrap_or_default(),
            };
            client.add(&new).await.map(|s| {
                format!(
                    "silence {} added, until {}\n",
                    s.id,
                    s.expires_at.to_rfc3339()
                )
            })
        }
        SilenceAction::List { output } => client.list().await.and_then(|body| match output {
            Output::Human => Ok(render(&body)),
            Output::Json => serde_json::to_string_pretty(&body)
                .map(|t| t + "\n")
                .map_err(|e| e.to_string()),
        }),
        SilenceAction::Expire { id } => client.expire(id).await.map(|s| {
            format!(
                "silence {} expired at {}\n",
                s.id,
                s.expires_at.to_rfc3339()
            )
        }),
    };
    match done {
        Ok(text) => {
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_FAILED
        }
    }
}

/// `synthmon history`: reads the history file in the state directory the
/// daemon would use; exit 2 when there is none or it is not a history.
async fn history(load: &LoadOptions, args: &HistoryArgs) -> u8 {
    use crate::daemon::api;
    // Only this probe's secrets (and its environments') must resolve.
    let uses = plan::Uses::Once {
        probes: vec![args.probe.clone()],
        tags: vec![],
        environments: args.env.iter().cloned().collect(),
        alerting: false,
    };
    let config = match plan::load_for(load, &uses) {
        Ok(c) => c,
        Err(diags) => return print_diagnostics(&diags),
    };
    let dir = match crate::daemon::state_dir(&config) {
        Ok(d) => d,
        Err(e) => return fail(anyhow::anyhow!(e)),
    };
    let now = crate::history::now_ms();
    let since = match api::parse_instant(&args.since, now) {
        Ok(t) => t,
        Err(e) => return fail(anyhow::anyhow!("--since: {e}")),
    };
    let configured: Vec<String> = config
        .probes
        .iter()
        .find(|p| p.name == args.probe)
        .map(|p| p.environments.clone())
        .unwrap_or_default();
    let (probe, env, limit) = (
        args.probe.clone(),
        args.env.clone(),
        usize::from(args.limit),
    );
    let read = tokio::task::spawn_blocking(move || -> anyhow::Result<api::HistoryReport> {
        let reader = crate::history::Reader::open(&dir)?;
        let mut envs: Vec<String> = reader
            .pairs()?
            .into_iter()
            .filter(|(p, _)| *p == probe)
            .map(|(_, e)| e)
            .chain(configured)
            .collect();
        envs.sort();
        envs.dedup();
        if envs.is_empty() {
            anyhow::bail!(
                "probe `{probe}` is not configured and has no history in {}",
                dir.display()
            );
        }
        if let Some(e) = &env {
            if !envs.contains(e) {
                anyhow::bail!(
                    "probe `{probe}` has no environment `{e}` (it has {})",
                    envs.join(", ")
                );
            }
            envs = vec![e.clone()];
        }
        Ok(api::history_report(
            &reader, &probe, &envs, since, now, limit,
        )?)
    })
    .await;
    let report = match read {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return fail(e),
        Err(e) => return fail(anyhow::anyhow!("reading the history failed: {e}")),
    };
    let text = match args.output {
        Output::Json => match serde_json::to_string_pretty(&report) {
            Ok(j) => j + "\n",
            Err(e) => return fail(e.into()),
        },
        Output::Human => api::render_history(&report),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
    EXIT_OK
}

/// The daemon, until SIGTERM or SIGINT; exit 0 after a clean drain, 2 if
/// it could not start (bad config, listener in use).
async fn daemon(load: LoadOptions, shard: Shard) -> u8 {
    let mut opts = crate::daemon::DaemonOptions::from_env(load);
    opts.shard = shard;
    match crate::daemon::run(opts, terminate()).await {
        Ok(()) => EXIT_OK,
        Err(e) => {
            let e = anyhow::Error::new(e);
            tracing::error!(error = %format_args!("{e:#}"), "synthmon cannot start");
            fail(e)
        }
    }
}

/// A signal that stops a `--once` run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopSignal {
    Interrupt,
    Terminate,
}

impl StopSignal {
    fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
        }
    }

    /// 128 + the signal number, as a shell reports a process it killed.
    fn exit_code(self) -> u8 {
        match self {
            StopSignal::Interrupt => 130,
            StopSignal::Terminate => 143,
        }
    }
}

/// Ctrl-C (or SIGTERM) during `--once`: the first one cancels the run, so
/// flows stop at their next step and run their teardowns, and the partial
/// report is still printed; a second one exits at once, teardowns or not.
struct Interrupt {
    cancel: tokio_util::sync::CancellationToken,
    received: std::sync::Arc<std::sync::OnceLock<StopSignal>>,
    _watcher: tokio_util::task::AbortOnDropHandle<()>,
}

impl Interrupt {
    /// Installs the handlers now, so a signal that arrives while the run
    /// starts is not lost.
    fn arm() -> Interrupt {
        use tokio::signal::unix::{SignalKind, signal};
        let cancel = tokio_util::sync::CancellationToken::new();
        let received = std::sync::Arc::new(std::sync::OnceLock::new());
        let (term, int) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        let watcher = {
            let (cancel, received) = (cancel.clone(), received.clone());
            tokio::spawn(async move {
                let (Ok(mut term), Ok(mut int)) = (term, int) else {
                    tracing::warn!("cannot install signal handlers; Ctrl-C ends the run at once");
                    return;
                };
                loop {
                    let signal = tokio::select! {
                        _ = int.recv() => StopSignal::Interrupt,
                        _ = term.recv() => StopSignal::Terminate,
                    };
                    if received.set(signal).is_ok() {
                        eprintln!(
                            "{}: stopping; running teardowns (send it again to exit at once)",
                            signal.name()
                        );
                        cancel.cancel();
                    } else {
                        eprintln!("{}: exiting without waiting for teardowns", signal.name());
                        let first = received.get().copied().unwrap_or(signal);
                        std::process::exit(i32::from(first.exit_code()));
                    }
                }
            })
        };
        Interrupt {
            cancel,
            received,
            _watcher: tokio_util::task::AbortOnDropHandle::new(watcher),
        }
    }

    /// The signal that cancelled the run, if one did.
    fn signal(&self) -> Option<StopSignal> {
        self.received.get().copied()
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are registered when this is
/// called, not when the future is first polled, so a SIGTERM during start-up
/// is not lost: it ends the daemon cleanly once it is up.
fn terminate() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// `synthmon sandbox`: serves until SIGTERM or SIGINT, then shuts down
/// cleanly (exit 0), as a service manager or a terminal stops it.
async fn sandbox(listen: SocketAddr) -> u8 {
    let stop = terminate();
    let sandbox =
        match crate::sandbox::Sandbox::start(listen, crate::sandbox::SandboxOptions::default())
            .await
            .with_context(|| format!("cannot start the sandbox on {listen}"))
        {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
    // Every listener, one per line, so a person can try them by hand: the
    // variables as probe templates name them (`{{ vars.sandbox_tcp }}`).
    let base = sandbox.base_url();
    println!("sandbox listening on {base} (HTTP/1.1, and HTTP/2 with prior knowledge)");
    let ws = base.replacen("http://", "ws://", 1);
    println!("  {:<28} {ws}/ws/echo, {ws}/ws/ticker", "ws");
    for (name, value) in sandbox.variables() {
        let hint = if name == "sandbox_raw" {
            format!("  (raw HTTP faults: GET http://{value}/ lists them)")
        } else if name == "sandbox_https" {
            "  (HTTP/2 or HTTP/1.1 by ALPN; trust vars.sandbox_ca_file)".to_owned()
        } else if name == "sandbox_mtls" {
            "  (requires vars.sandbox_client_cert and _key; trust vars.sandbox_ca_file)".to_owned()
        } else if name == "sandbox_proxy" {
            "  (CONNECT to loopback targets; GET /connects lists what it was asked)".to_owned()
        } else if name == "sandbox_proxy_auth" {
            format!(
                "  (the same, wants user {}, password {})",
                crate::sandbox::proxy::USER,
                crate::sandbox::proxy::PASSWORD
            )
        } else {
            String::new()
        };
        println!("  {:<28} {value}{hint}", format!("vars.{name}"));
    }
    stop.await;
    sandbox.shutdown().await;
    EXIT_OK
}

/// Logs go to stderr. The filter comes from `SYNTHMON_LOG` (tracing's
/// env-filter syntax); by default one-shot commands log warnings only.
fn init_logging(format: LogFormat, one_shot: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if one_shot { "warn" } else { "info" };
    let filter =
        EnvFilter::try_from_env("SYNTHMON_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Human => false,
        LogFormat::Auto => !one_shot && !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn key_value_parsing() {
        assert_eq!(key_value("a.b=c=d"), Ok(("a.b".into(), "c=d".into())));
        assert!(key_value("novalue").is_err());
        assert!(key_value("=x").is_err());
    }
}
