//! Probe files: finding them through the daemon's globs, checking each
//! one's common keys, handing its kind's table to the kind's builder (the
//! registry, [`crate::probe::KINDS`]) and its `[workload]` to the workload
//! builder, and the checks that span files (duplicate names, `depends_on`).

use crate::alert::receiver::AlertingConfig;
use crate::config::check::{
    Checker, Demand, display_path, min_gap, parse_duration, parse_m_of_k, parse_schedule,
    valid_label, valid_name,
};
use crate::config::load::MAX_TIMEOUT;
use crate::config::raw::{self, RawProbe};
use crate::config::{
    AlertPolicy, BaseUrl, DEFAULT_INTERVAL, DEFAULT_TIMEOUT, Environment, FireRule, Schedule,
    Severity,
};
use crate::diag::{self, Part, SourceDoc};
use crate::probe::http::HttpSpec;
use crate::probe::kind::{BuildInput, Kind, KindEntry, Probe};
use crate::probe::workload::{RawWorkload, Workload};
use crate::threshold::{self, Threshold, parse_condition};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The kinds a `[workload]` can drive.
const WORKLOAD_KINDS: &[&str] = &["http", "flow"];

/// A probe's common parts, checked, waiting for its kind.
struct ProbeParts<'a> {
    name: String,
    file: &'a Path,
    schedule: Schedule,
    envs: Vec<String>,
    timeout: Duration,
    tags: Vec<String>,
    severity: Option<Severity>,
    labels: BTreeMap<String, String>,
    thresholds: Vec<Threshold>,
    buckets: Option<Vec<Duration>>,
    alert: AlertPolicy,
    seed: Option<u64>,
    marker: String,
    workload: Option<Workload>,
    slo: Option<crate::slo::Slo>,
    baseline: Option<crate::slo::Baseline>,
    keep: Vec<crate::probe::kind::Keep>,
    retries: Option<crate::probe::retry::Retries>,
}

/// Alertmanager ends a firing alert at its `endsAt`, which synthmon sets to
/// three repeat intervals ahead and refreshes with every repeat; with
/// `repeat_interval = "never"` there is no refresh, and Alertmanager ends
/// the alert after its `resolve_timeout` (5 minutes by default). Say so.
pub(super) fn warn_alertmanager_timeout(alerting: &AlertingConfig, probes: &[Probe]) {
    let has_am = alerting
        .receivers
        .values()
        .any(|r| r.receiver.expires_alerts());
    if !has_am {
        return;
    }
    let never: Vec<&str> = probes
        .iter()
        .filter(|p| p.alert.rules.repeat_interval.is_none())
        .map(|p| p.name.as_str())
        .collect();
    if !never.is_empty() {
        tracing::warn!(
            probes = %never.join(", "),
            "an alertmanager receiver ends alerts that are never repeated after its resolve_timeout (default 5m): \
             give these probes an [alert] repeat_interval"
        );
    }
}

impl Checker<'_> {
    /// A workload must end (its arrivals, plus `tail` for the last one)
    /// before the schedule's next run.
    fn workload_fits(&mut self, workload: Option<&Workload>, schedule: &Schedule, tail: Duration) {
        if let (Some(w), Some(interval)) = (workload, min_gap(schedule)) {
            if w.span() + tail >= interval {
                self.err(
                    "workload",
                    format!(
                        "the workload ({} of arrivals plus {} for the last one) must end before the next run, {} later",
                        humantime::format_duration(w.span()),
                        humantime::format_duration(tail),
                        humantime::format_duration(interval)
                    ),
                );
            }
        }
    }

    pub(super) fn probes(
        &mut self,
        globs: &[String],
        environments: &BTreeMap<String, Environment>,
        uses: &super::Uses,
    ) -> Vec<Probe> {
        let mut files = Vec::new();
        for pattern in globs {
            match glob::glob(pattern) {
                Ok(paths) => {
                    // A directory is not a probe file (`probes = [""]` matched
                    // the config's own directory).
                    let mut matched: Vec<PathBuf> = paths
                        .filter_map(Result::ok)
                        .filter(|p| !p.is_dir())
                        .collect();
                    matched.sort();
                    if matched.is_empty() {
                        tracing::warn!(glob = %pattern, "probe glob matches no file");
                    }
                    files.extend(matched);
                }
                Err(e) => self.err("daemon.probes", format!("invalid glob `{pattern}`: {e}")),
            }
        }
        files.dedup();
        // One probe a file at most: sized once, so 10,000 probes are not
        // copied through doubling (the old and new buffers at once were
        // ~10 MB of the load's peak).
        let mut probes: Vec<Probe> = Vec::with_capacity(files.len());
        // Name → (file, line) of its first definition.
        let mut seen: BTreeMap<String, (String, usize)> = BTreeMap::new();
        let mut depends: Vec<(SourceDoc, Vec<String>)> = Vec::new();
        // Every probe name written, built or not: `depends_on` is checked
        // against these so a broken probe does not hide or cause errors.
        let mut declared: std::collections::BTreeSet<String> = Default::default();
        for file in files {
            let display = display_path(&file);
            let text = match diag::read_source(&file, &display, "probe file") {
                Ok(t) => t,
                Err(d) => {
                    self.diags.push(d);
                    continue;
                }
            };
            let doc = match SourceDoc::parse(&display, &text) {
                Ok(d) => d,
                Err(d) => {
                    self.diags.push(d);
                    continue;
                }
            };
            // The common keys here; the kind's table, `[workload]` and
            // `retries` are read by their owners.
            let skip: Vec<&str> = ["workload", "retries"]
                .into_iter()
                .chain(crate::probe::KINDS.iter().map(|k| k.name))
                .collect();
            let raw = diag::deserialize_part::<RawProbe>(
                &doc,
                Part {
                    table: "",
                    skip: &skip,
                },
                self.diags,
            );
            let Some(raw) = raw else { continue };
            declared.extend(raw.name.clone());
            let depends_on = raw
                .alert
                .as_ref()
                .map(|a| a.depends_on.clone())
                .unwrap_or_default();
            // A probe the run does not use is checked all the same, but
            // its secrets are not read (nor needed).
            let used = uses.probe(raw.name.as_deref().unwrap_or_default(), &raw.tags);
            let mut probe_checker = Checker {
                doc: &doc,
                diags: self.diags,
                redactor: self.redactor,
                base_dir: file.parent().unwrap_or(self.base_dir),
                secrets: if used {
                    Demand::Required
                } else {
                    Demand::Unused
                },
            };
            let built = probe_checker.probe(raw, &file, environments);
            // A file's parsed text is kept past its probe only to locate
            // an unknown `depends_on` name (10,000 probe files held at
            // once were ~25 MB of the load's peak).
            let Some(probe) = built else {
                if !depends_on.is_empty() {
                    depends.push((doc, depends_on));
                }
                continue;
            };
            if let Some((first_file, first_line)) = seen.get(&probe.name) {
                let d = doc.error_at(
                    "name",
                    format!(
                        "duplicate probe name `{}`: also defined at {first_file}:{first_line}",
                        probe.name
                    ),
                );
                self.diags.push(d);
                continue;
            }
            seen.insert(
                probe.name.clone(),
                (display.clone(), doc.value_position("name").0),
            );
            if !depends_on.is_empty() {
                depends.push((doc, depends_on));
            }
            probes.push(probe);
        }
        // `depends_on` names other probes, which may live in later files.
        for (doc, names) in depends {
            for (i, name) in names.iter().enumerate() {
                if !declared.contains(name) {
                    let mut d = doc.error_at(
                        &format!("alert.depends_on[{i}]"),
                        format!("unknown probe `{name}`"),
                    );
                    d.help = diag::nearest(name, declared.iter().map(String::as_str))
                        .map(|n| format!("did you mean `{n}`?"));
                    self.diags.push(d);
                }
            }
        }
        // Kept for the daemon's life: no growth slack (a probe is ~700 B,
        // so at 10,000 the doubling left ~4 MB unused).
        probes.shrink_to_fit();
        probes
    }

    fn probe(
        &mut self,
        raw: RawProbe,
        file: &Path,
        environments: &BTreeMap<String, Environment>,
    ) -> Option<Probe> {
        let errors_before = self.diags.len();
        let name = match raw.name {
            None => {
                self.diags.push(
                    self.doc
                        .error_at_key("", "missing required key `name`".to_owned()),
                );
                String::new()
            }
            Some(n) if !valid_name(&n) => {
                self.err(
                    "name",
                    format!("expected a name matching [A-Za-z0-9][A-Za-z0-9_.-]* (at most 128 characters), found `{n}`"),
                );
                n
            }
            Some(n) => n,
        };
        let schedule = match raw.schedule.as_deref() {
            None if raw.timezone.is_some() => {
                self.err("timezone", "`timezone` applies to cron schedules only");
                Schedule::Every(DEFAULT_INTERVAL)
            }
            None => Schedule::Every(DEFAULT_INTERVAL),
            Some(text) => match parse_schedule(text, raw.timezone.as_deref()) {
                Ok(s) => s,
                Err(msg) => {
                    let path = if msg.contains("time zone") || msg.contains("`timezone`") {
                        "timezone"
                    } else {
                        "schedule"
                    };
                    self.err(path, msg);
                    Schedule::Every(DEFAULT_INTERVAL)
                }
            },
        };
        let timeout = match raw.timeout.as_deref() {
            None => DEFAULT_TIMEOUT,
            Some(text) => match parse_duration(text, MAX_TIMEOUT) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    self.err(
                        "timeout",
                        format!("expected a duration above zero like `5s`, found `{text}`"),
                    );
                    DEFAULT_TIMEOUT
                }
                Err(msg) => {
                    self.err("timeout", msg);
                    DEFAULT_TIMEOUT
                }
            },
        };
        if let Some(interval) = min_gap(&schedule) {
            if timeout >= interval {
                let path = if raw.timeout.is_some() {
                    "timeout"
                } else {
                    "schedule"
                };
                self.err(
                    path,
                    format!(
                        "the timeout ({}) must be shorter than the time between runs ({})",
                        humantime::format_duration(timeout),
                        humantime::format_duration(interval)
                    ),
                );
            }
        }
        let envs = match raw.environments {
            None => {
                self.diags.push(
                    self.doc
                        .error_at_key("", "missing required key `environments`".to_owned()),
                );
                Vec::new()
            }
            Some(list) if list.is_empty() => {
                self.err("environments", "expected at least one environment");
                list
            }
            Some(list) => list,
        };
        for (i, env) in envs.iter().enumerate() {
            if !environments.contains_key(env) {
                let mut d = self.doc.error_at(
                    &format!("environments[{i}]"),
                    format!(
                        "unknown environment `{env}` (defined: {})",
                        environments
                            .keys()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                d.help = diag::nearest(env, environments.keys().map(String::as_str))
                    .map(|n| format!("did you mean `{n}`?"));
                self.diags.push(d);
            }
        }
        for key in raw.labels.keys() {
            if !valid_label(key) {
                self.diags.push(self.doc.error_at_key(
                    &format!("labels.{key}"),
                    format!("label name `{key}` must match [a-zA-Z_][a-zA-Z0-9_]*"),
                ));
            }
        }
        let thresholds = self.thresholds(&raw.thresholds);
        let buckets = raw.buckets.as_deref().map(|b| self.buckets(b));
        let alert = self.alert_policy(raw.alert.unwrap_or_default());
        if alert.depends_on.contains(&name) {
            self.err("alert.depends_on", "a probe cannot depend on itself");
        }
        // The variables templates may read: every environment's, plus the
        // sandbox's listener addresses.
        let mut known_vars: Vec<String> = Vec::new();
        for env in envs.iter().filter_map(|e| environments.get(e)) {
            known_vars.extend(env.variables.keys().cloned());
            if env.base_url == BaseUrl::Sandbox {
                known_vars.extend(crate::sandbox::VARIABLES.iter().map(|v| (*v).to_owned()));
            }
        }
        known_vars.sort();
        known_vars.dedup();
        let present: Vec<&'static KindEntry> = crate::probe::KINDS
            .iter()
            .filter(|k| self.doc.table().contains_key(k.name))
            .collect();
        if present.len() > 1 {
            self.err(
                present[1].name,
                format!(
                    "a probe has exactly one kind, but this file has {}",
                    present
                        .iter()
                        .map(|k| format!("`[{}]`", k.name))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            );
        }
        let marker = raw
            .marker
            .unwrap_or_else(|| crate::generate::DEFAULT_MARKER.to_owned());
        if marker.len() > 64 || marker.chars().any(|c| c.is_control() || c == '"') {
            self.err(
                "marker",
                "expected a short prefix of printable characters, like `synth-`",
            );
        }
        let kind = match present.first() {
            Some(entry) => (entry.build)(
                self,
                &BuildInput {
                    known_vars: &known_vars,
                    timeout,
                },
            ),
            None => {
                self.diags.push(self.doc.error_at_key(
                    "",
                    format!(
                        "missing the probe's body: expected one of the tables {}",
                        crate::probe::KINDS
                            .iter()
                            .map(|k| format!("`[{}]`", k.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
                None
            }
        };
        let mut workload = None;
        if self.doc.table().contains_key("workload") {
            let tail = kind.as_ref().and_then(|k| k.workload_tail());
            let supported = present
                .first()
                .is_some_and(|k| WORKLOAD_KINDS.contains(&k.name));
            if !supported {
                self.err(
                    "workload",
                    "`[workload]` applies to `[http]` and `[flow]` probes only",
                );
            } else if let (Some(kind), Some(tail)) = (kind.as_ref(), tail) {
                if let Some(raw_w) = self.table::<RawWorkload>("workload") {
                    let http = kind.as_any().downcast_ref::<HttpSpec>();
                    workload = crate::probe::workload::build(raw_w, http, self);
                    self.workload_fits(workload.as_ref(), &schedule, timeout + tail);
                }
            }
        }
        let slo = self.slo(raw.slo);
        let baseline = self.baseline(raw.baseline);
        let keep = self.keep(&raw.keep, kind.as_deref());
        let retries = self.retries(&schedule, timeout, kind.as_deref());
        self.finish_probe(
            errors_before,
            ProbeParts {
                name,
                file,
                schedule,
                envs,
                timeout,
                tags: raw.tags,
                severity: raw.severity,
                labels: raw.labels,
                thresholds,
                buckets,
                alert,
                seed: raw.seed,
                marker,
                workload,
                slo,
                baseline,
                keep,
                retries,
            },
            kind,
        )
    }

    fn finish_probe(
        &mut self,
        errors_before: usize,
        parts: ProbeParts<'_>,
        kind: Option<Box<dyn Kind>>,
    ) -> Option<Probe> {
        if self.diags.len() > errors_before {
            return None;
        }
        Some(Probe {
            name: parts.name,
            file: parts.file.to_path_buf(),
            schedule: parts.schedule,
            environments: exact(parts.envs),
            timeout: parts.timeout,
            tags: exact(parts.tags),
            severity: parts.severity.unwrap_or(Severity::Warning),
            labels: parts.labels,
            thresholds: exact(parts.thresholds),
            buckets: parts.buckets.map(exact),
            alert: parts.alert,
            seed: parts.seed,
            marker: parts.marker,
            workload: parts.workload.map(Box::new),
            slo: parts.slo.map(Box::new),
            baseline: parts.baseline.map(Box::new),
            keep: exact(parts.keep),
            retries: parts.retries,
            kind: kind?,
        })
    }

    /// `retries = { attempts, backoff }` (`crate::probe::retry`): never
    /// with `[workload]`, and the worst case (every try at the timeout,
    /// plus a flow's teardown bound, and the backoffs) before the next run.
    fn retries(
        &mut self,
        schedule: &Schedule,
        timeout: Duration,
        kind: Option<&dyn Kind>,
    ) -> Option<crate::probe::retry::Retries> {
        use crate::probe::retry;
        if !self.doc.table().contains_key("retries") {
            return None;
        }
        if self.doc.table().contains_key("workload") {
            self.err(
                "retries",
                "`retries` does not apply to a probe with `[workload]`: a workload counts its failed requests (its thresholds judge them) instead of trying them again",
            );
            return None;
        }
        let retries = retry::build(self.table::<retry::RawRetries>("retries")?, self)?;
        // A flow's teardown may run past the timeout, within its own bound
        // (the same tail a workload's last arrival is given).
        let tail = kind.and_then(|k| k.workload_tail()).unwrap_or_default();
        retry::check_fits(self, &retries, timeout.saturating_add(tail), schedule);
        Some(retries)
    }

    fn alert_policy(&mut self, raw: raw::RawAlert) -> AlertPolicy {
        let mut policy = AlertPolicy::default();
        match (raw.fire_after, raw.fire.as_deref()) {
            (Some(_), Some(_)) => self.err(
                "alert.fire",
                "write either `fire_after = N` or `fire = \"M of K\"`, not both",
            ),
            (Some(n), None) if (1..=100).contains(&n) => {
                policy.rules.fire = FireRule::Consecutive(n)
            }
            (Some(n), None) => self.err(
                "alert.fire_after",
                format!("expected 1 to 100 consecutive runs, found {n}"),
            ),
            (None, Some(text)) => match parse_m_of_k(text) {
                Ok((m, k)) => policy.rules.fire = FireRule::MOfK { m, k },
                Err(e) => self.err("alert.fire", e),
            },
            (None, None) => {}
        }
        if let Some(n) = raw.resolve_after {
            if (1..=100).contains(&n) {
                policy.rules.resolve_after = n;
            } else {
                self.err(
                    "alert.resolve_after",
                    format!("expected 1 to 100 consecutive runs, found {n}"),
                );
            }
        }
        match raw.repeat_interval.as_deref() {
            None => {}
            Some("never") => policy.rules.repeat_interval = None,
            Some(text) => {
                let d = self.duration(
                    "alert.repeat_interval",
                    Some(text),
                    Duration::from_secs(4 * 3600),
                );
                if d < Duration::from_secs(60) {
                    self.err(
                        "alert.repeat_interval",
                        "expected at least 1m (or \"never\")",
                    );
                }
                policy.rules.repeat_interval = Some(d);
            }
        }
        if let Some(b) = raw.notify_degraded {
            policy.rules.notify_degraded = b;
        }
        policy.depends_on = raw.depends_on;
        policy
    }

    /// `buckets = ["50ms", "100ms", …]`: the latency histogram's
    /// boundaries, each a duration from 1µs to the longest
    /// timeout, none twice, at most
    /// [`crate::telemetry::latency::MAX_WRITTEN_BUCKETS`] of them.
    fn buckets(&mut self, raw: &[String]) -> Vec<Duration> {
        use crate::telemetry::latency::MAX_WRITTEN_BUCKETS;
        if raw.is_empty() {
            self.err(
                "buckets",
                "expected at least one boundary like `100ms` (leave `buckets` out to derive them from the thresholds and the timeout)",
            );
        } else if raw.len() > MAX_WRITTEN_BUCKETS {
            self.err(
                "buckets",
                format!(
                    "expected at most {MAX_WRITTEN_BUCKETS} boundaries, found {} (each is a series per probe, environment and step)",
                    raw.len()
                ),
            );
        }
        let mut out: Vec<Duration> = Vec::new();
        for (i, text) in raw.iter().enumerate() {
            let path = format!("buckets[{i}]");
            match parse_duration(text, MAX_TIMEOUT) {
                // The histogram's resolution: a microsecond.
                Ok(d) if d.as_micros() == 0 => self.err(
                    &path,
                    format!("expected a duration of at least 1µs, like `100ms`, found `{text}`"),
                ),
                Ok(d) if out.iter().any(|o| o.as_micros() == d.as_micros()) => {
                    self.err(&path, format!("`{text}` is listed twice"));
                }
                Ok(d) => out.push(d),
                Err(msg) => self.err(&path, msg),
            }
        }
        out.sort();
        out
    }

    fn thresholds(&mut self, raw: &[raw::RawThreshold]) -> Vec<Threshold> {
        use raw::RawThreshold;
        let mut out = Vec::new();
        for (i, t) in raw.iter().enumerate() {
            let path = format!("thresholds[{i}]");
            let (failing_text, degraded_text, window_text, nested) = match t {
                RawThreshold::Short(s) => (s.as_str(), None, None, false),
                RawThreshold::Full(t) => (
                    t.failing.as_str(),
                    t.degraded.as_deref(),
                    t.window.as_deref(),
                    true,
                ),
            };
            let at = |field: &str| {
                if nested {
                    format!("{path}.{field}")
                } else {
                    path.clone()
                }
            };
            let failing = parse_condition(failing_text)
                .map_err(|e| self.err(&at("failing"), e))
                .ok();
            let degraded = match degraded_text.map(parse_condition) {
                None => None,
                Some(Ok(d)) => Some(d),
                Some(Err(e)) => {
                    self.err(&at("degraded"), e);
                    continue;
                }
            };
            let window = self.duration(&at("window"), window_text, threshold::DEFAULT_WINDOW);
            if window < threshold::SUB_WINDOW || window > threshold::MAX_WINDOW {
                self.err(
                    &at("window"),
                    format!(
                        "expected a window from {} to {}, found {}",
                        humantime::format_duration(threshold::SUB_WINDOW),
                        humantime::format_duration(threshold::MAX_WINDOW),
                        humantime::format_duration(window)
                    ),
                );
            }
            let Some(failing) = failing else { continue };
            if let Some(d) = &degraded {
                if d.metric != failing.metric {
                    self.err(
                        &at("degraded"),
                        format!(
                            "the degraded level must judge the same metric as the failing one (`{}`), found `{}`",
                            failing.source, d.source
                        ),
                    );
                    continue;
                }
            }
            out.push(Threshold {
                failing,
                degraded,
                window,
            });
        }
        out
    }

    /// `slo = { objective, window, sli, threshold, alerts }`: an objective
    /// below 100 %, a window from 1h to 400 days, a latency SLI with its
    /// threshold (an availability one without), and the burn-rate rules
    /// ([`crate::slo::default_rules`] unless written), each reachable under
    /// the objective and within the window.
    fn slo(&mut self, raw: Option<raw::RawSlo>) -> Option<crate::slo::Slo> {
        use crate::slo::{self, Sli};
        let raw = raw?;
        let errors_before = self.diags.len();
        let objective = match raw.objective.as_deref() {
            None => {
                self.missing("slo", "objective");
                None
            }
            Some(text) => slo::parse_objective(text)
                .map_err(|e| self.err("slo.objective", e))
                .ok(),
        };
        let window = self.window_between(
            "slo.window",
            raw.window.as_deref(),
            (
                slo::DEFAULT_SLO_WINDOW,
                slo::MIN_SLO_WINDOW,
                slo::MAX_SLO_WINDOW,
            ),
        );
        let sli = match (raw.sli.as_deref(), raw.threshold.as_deref()) {
            (None | Some("availability"), None) => Some(Sli::Availability),
            (None | Some("availability"), Some(_)) => {
                self.err(
                    "slo.threshold",
                    "`threshold` applies to `sli = \"latency\"` only: an availability SLI counts every passed run as good",
                );
                None
            }
            (Some("latency"), None) => {
                self.err(
                    "slo.sli",
                    "a latency SLI needs `threshold`, the latency a good run stays within, like `threshold = \"300ms\"`",
                );
                None
            }
            (Some("latency"), Some(text)) => match parse_duration(text, MAX_TIMEOUT) {
                Ok(d) if !d.is_zero() => Some(Sli::Latency { threshold: d }),
                Ok(_) => {
                    self.err(
                        "slo.threshold",
                        format!("expected a latency above zero like `300ms`, found `{text}`"),
                    );
                    None
                }
                Err(e) => {
                    self.err("slo.threshold", e);
                    None
                }
            },
            (Some(other), _) => {
                let mut d = self.doc.error_at(
                    "slo.sli",
                    format!("expected `availability` or `latency`, found `{other}`"),
                );
                d.help = diag::nearest(other, ["availability", "latency"])
                    .map(|n| format!("did you mean `{n}`?"));
                self.diags.push(d);
                None
            }
        };
        let rules = match raw.alerts {
            None => {
                let rules = slo::default_rules();
                let longest = rules.iter().map(|r| r.long).max().unwrap_or_default();
                if window < longest {
                    self.err(
                        "slo.window",
                        format!(
                            "the default burn-rate alerts read up to {}, longer than this window: write `alerts` for it (or `alerts = []` for none)",
                            slo::format_window(longest)
                        ),
                    );
                }
                if let Some(objective) = objective {
                    let max = 1.0 / (1.0 - objective);
                    if let Some(r) = rules.iter().find(|r| r.factor > max) {
                        self.err(
                            "slo.objective",
                            format!(
                                "with an objective of {}, the default {}× burn-rate alert can never fire (every run failing burns the budget at {max:.1}×): write `alerts` for this objective (or `alerts = []` for none)",
                                raw.objective.as_deref().unwrap_or_default(),
                                r.factor
                            ),
                        );
                    }
                }
                rules
            }
            Some(list) => {
                if list.len() > slo::MAX_RULES {
                    self.err(
                        "slo.alerts",
                        format!(
                            "expected at most {} burn-rate rules, found {}",
                            slo::MAX_RULES,
                            list.len()
                        ),
                    );
                }
                let mut rules = Vec::new();
                for (i, r) in list.iter().enumerate() {
                    let path = format!("slo.alerts[{i}]");
                    let factor = match r.burn {
                        None => {
                            self.missing(&path, "burn");
                            None
                        }
                        Some(b) if !b.is_finite() || b <= 0.0 => {
                            self.err(
                                &format!("{path}.burn"),
                                format!("expected a burn rate above 0, like `14.4`, found {b}"),
                            );
                            None
                        }
                        Some(b) => {
                            if let Some(objective) = objective {
                                let max = 1.0 / (1.0 - objective);
                                if b > max * (1.0 + 1e-9) {
                                    self.err(
                                        &format!("{path}.burn"),
                                        format!(
                                            "a burn rate of {b} can never be reached with an objective of {} (every run failing burns the budget at {max:.1}×)",
                                            raw.objective.as_deref().unwrap_or_default()
                                        ),
                                    );
                                }
                            }
                            Some(b)
                        }
                    };
                    let bounds = (Duration::ZERO, slo::MIN_RULE_WINDOW, window);
                    let rule_window = |checker: &mut Self, key: &str, text: Option<&str>| {
                        let at = format!("{path}.{key}");
                        match text {
                            None => {
                                checker.missing(&path, key);
                                None
                            }
                            Some(_) => {
                                let before = checker.diags.len();
                                let d = checker.window_between(&at, text, bounds);
                                (checker.diags.len() == before).then_some(d)
                            }
                        }
                    };
                    let long = rule_window(self, "long", r.long.as_deref());
                    let short = rule_window(self, "short", r.short.as_deref());
                    if let (Some(long), Some(short)) = (long, short) {
                        if short >= long {
                            self.err(
                                &format!("{path}.short"),
                                format!(
                                    "the short window ({}) must be shorter than the long one ({})",
                                    slo::format_window(short),
                                    slo::format_window(long)
                                ),
                            );
                        }
                    }
                    let severity = match r.severity.as_deref() {
                        None => {
                            self.missing(&path, "severity");
                            None
                        }
                        Some(text) => slo::BurnSeverity::parse(text)
                            .map_err(|e| self.err(&format!("{path}.severity"), e))
                            .ok(),
                    };
                    if let (Some(factor), Some(long), Some(short), Some(severity)) =
                        (factor, long, short, severity)
                    {
                        rules.push(slo::BurnRule {
                            factor,
                            long,
                            short,
                            severity,
                        });
                    }
                }
                rules
            }
        };
        if self.diags.len() > errors_before {
            return None;
        }
        Some(slo::Slo {
            objective: objective?,
            window,
            sli: sli?,
            rules,
        })
    }

    /// `baseline = { metric, window, tolerance, level, min_samples }`: a
    /// latency percentile or `avg`, a window from 1h to 30 days, a positive
    /// tolerance, `degraded` (default) or `failing`, at least one sample.
    fn baseline(&mut self, raw: Option<raw::RawBaseline>) -> Option<crate::slo::Baseline> {
        use crate::slo::{self, BaselineLevel, BaselineMetric};
        let raw = raw?;
        let errors_before = self.diags.len();
        let metric = match raw.metric.as_deref() {
            None => {
                self.missing("baseline", "metric");
                None
            }
            Some(text) => BaselineMetric::parse(text)
                .map_err(|e| self.err("baseline.metric", e))
                .ok(),
        };
        let window = self.window_between(
            "baseline.window",
            raw.window.as_deref(),
            (
                slo::DEFAULT_BASELINE_WINDOW,
                slo::MIN_BASELINE_WINDOW,
                slo::MAX_BASELINE_WINDOW,
            ),
        );
        let tolerance = match raw.tolerance.as_deref() {
            None => {
                self.missing("baseline", "tolerance");
                None
            }
            Some(text) => slo::parse_tolerance(text)
                .map_err(|e| self.err("baseline.tolerance", e))
                .ok(),
        };
        let level = match raw.level.as_deref() {
            None => Some(BaselineLevel::Degraded),
            Some(text) => BaselineLevel::parse(text)
                .map_err(|e| self.err("baseline.level", e))
                .ok(),
        };
        let min_samples = raw.min_samples.unwrap_or(slo::DEFAULT_MIN_SAMPLES);
        if min_samples == 0 {
            self.err(
                "baseline.min_samples",
                "expected at least 1 sample (the baseline of no samples is no baseline)",
            );
        }
        if self.diags.len() > errors_before {
            return None;
        }
        Some(slo::Baseline {
            metric: metric?,
            window,
            tolerance: tolerance?,
            min_samples,
            level: level?,
        })
    }

    /// A window written at `path`, `bounds` = (default, min, max): the
    /// default when unset, or after recording why it is not one.
    fn window_between(
        &mut self,
        path: &str,
        text: Option<&str>,
        (default, min, max): (Duration, Duration, Duration),
    ) -> Duration {
        let Some(text) = text else { return default };
        match parse_duration(text, Duration::MAX) {
            Ok(d) if d >= min && d <= max => d,
            Ok(_) => {
                self.err(
                    path,
                    format!(
                        "expected a window from {} to {}, found `{text}`",
                        crate::slo::format_window(min),
                        crate::slo::format_window(max)
                    ),
                );
                default
            }
            Err(e) => {
                self.err(path, e);
                default
            }
        }
    }

    /// `keep = { NAME = "expr" }`: each name an identifier (it is read as
    /// `prev.NAME`), each expression compiled in the kind's own scope,
    /// since it reads what the kind's expectations read.
    fn keep(
        &mut self,
        raw: &BTreeMap<String, String>,
        kind: Option<&dyn Kind>,
    ) -> Vec<crate::probe::kind::Keep> {
        /// Words CEL reserves: `prev.in` would not parse.
        const RESERVED: &[&str] = &[
            "as",
            "break",
            "const",
            "continue",
            "else",
            "false",
            "for",
            "function",
            "if",
            "import",
            "in",
            "let",
            "loop",
            "namespace",
            "null",
            "package",
            "return",
            "true",
            "var",
            "void",
            "while",
        ];
        if raw.is_empty() {
            return Vec::new();
        }
        if self.doc.table().contains_key("workload") {
            self.err(
                "keep",
                "`keep` does not apply to a `[workload]` probe: its run is many requests, and no one response is the run's",
            );
            return Vec::new();
        }
        // A kind that did not build has had its errors reported.
        let Some(kind) = kind else { return Vec::new() };
        let Some(scope) = kind.scope() else {
            self.err(
                "keep",
                "`keep` needs a kind whose expressions read a response",
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, source) in raw {
            let path = format!("keep.{name}");
            let mut chars = name.chars();
            let identifier = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            let problem = if !identifier {
                Some(format!(
                    "`{name}` is not a name expressions can read as `prev.{name}`: expected letters, digits and _, not starting with a digit"
                ))
            } else if RESERVED.contains(&name.as_str()) {
                Some(format!(
                    "`{name}` is a reserved word in expressions: `prev.{name}` could not be read"
                ))
            } else {
                None
            };
            if let Some(message) = problem {
                self.diags.push(self.doc.error_at_key(&path, message));
                continue;
            }
            if let Some(expr) = self.expr(&path, source, scope) {
                out.push(crate::probe::kind::Keep {
                    name: name.clone(),
                    expr: crate::probe::kind::Assertion {
                        expr,
                        location: self.location(&path),
                    },
                });
            }
        }
        out
    }
}

/// The list without growth slack: a loaded probe is kept for the daemon's
/// life, and 10,000 of them are held at once.
fn exact<T>(mut list: Vec<T>) -> Vec<T> {
    list.shrink_to_fit();
    list
}
