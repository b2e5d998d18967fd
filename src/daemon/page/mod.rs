//! The status page: `/` (every probe × environment, filtered by
//! environment, tag and state through the query string) and
//! `/probes/PROBE/ENVIRONMENT` (one pair, larger charts), server-rendered
//! HTML from minijinja templates compiled into the binary (`*.html` here,
//! auto-escaped), with inline CSS and a few lines of JavaScript that only
//! reload the page (a `<noscript>` refresh does it with JavaScript off).
//! Charts are inline SVG computed here ([`svg`]); nothing is loaded from
//! anywhere else, and the Content-Security-Policy allows exactly the page's
//! own style and script (by hash), so an injected `<script>` could not run
//! even if escaping failed.
//!
//! Every figure is the JSON API's ([`super::api`]): the same state, last
//! run, uptime, latency points and SLO views, from the same functions. The
//! queries run on the blocking pool. What is slow to read for many pairs,
//! the uptimes (30 days of hour rows) and the sparklines (a p95 per hour
//! over 24 hours, decoded from the latency snapshots), is kept between
//! requests and refreshed in the background, through a connection of the
//! page's own, once older than [`MIN_FIGURES_AGE`] or ten times as long as
//! its last computation took (so refreshing costs at most a tenth of one
//! blocking thread while someone watches, and nothing while nobody does);
//! a complete hour's point is read once. The state, the last runs (one
//! query for every pair), a failing pair's last failures and the state
//! changes are read on every request. With 1,000 probes and a month of
//! history, `/` takes ~30 ms to read and render (`bench/status_page.py`).
//!
//! Failed runs link their failure artifacts through [`artifact_href`]. The listener puts the page behind `[daemon] token`
//! with the API.

mod svg;

use super::Shared;
use super::api::{self, RunView, Uptime};
use crate::history::store::{self, Reader, RunRow};
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use minijinja::{Environment, UndefinedBehavior, Value};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// Hourly points of the overview's sparklines.
const SPARK_HOURS: i64 = 24;
/// An hour's point is read once it ended this long ago (runs that started
/// in it have been written by then).
const FINAL_AFTER_MS: i64 = 5 * MINUTE_MS;
/// At most this many failures (of a failing pair, over the last 24 hours)
/// and state changes per pair on the overview.
const OVERVIEW_FAILURES: usize = 3;
const OVERVIEW_CHANGES: usize = 3;
/// The detail page: failures over the last 7 days, state changes over 30.
const DETAIL_FAILURES: usize = 20;
const DETAIL_CHANGES: usize = 100;
/// Kept uptimes and sparklines are refreshed once older than this (or ten
/// times their last computation).
pub const MIN_FIGURES_AGE: Duration = Duration::from_secs(30);
/// How often the page reloads itself (script, or `<noscript>` refresh).
pub const REFRESH_SECONDS: u32 = 30;

const CSS: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("refresh.js");

/// The page's routes (the listener puts them behind its token).
pub fn routes(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route("/", get(overview))
        .route("/probes/{probe}/{environment}", get(detail))
        .with_state(Arc::new(Page::new(shared)))
}

/// The page's state: the daemon's, its templates, the kept figures.
struct Page {
    shared: Arc<Shared>,
    /// The compiled templates, or why they did not compile (a build
    /// mistake the unit tests catch; every page is then a 500 saying so).
    templates: Result<Environment<'static>, String>,
    /// `Content-Security-Policy`: the page's own style and script only.
    csp: String,
    figures: Mutex<Figures>,
    /// Held while figures are computed, so only one computation runs.
    computing: Mutex<()>,
    /// The history's directory, as at start (where the daemon opened it).
    state_dir: Option<std::path::PathBuf>,
    /// A connection of the page's own for computing figures: the shared
    /// reader serializes its queries on one connection, and thousands of
    /// them in a row would starve the requests that use it meanwhile.
    reader: Mutex<Option<Arc<Reader>>>,
    /// A background refresh is queued or running.
    refreshing: AtomicBool,
}

/// Every pair's slowly changing figures, by (probe, environment).
type SlowMap = Arc<HashMap<(String, String), Slow>>;

/// The uptimes and sparkline points of every pair, as last computed.
#[derive(Default)]
struct Figures {
    at: Option<std::time::Instant>,
    took: Duration,
    pairs: SlowMap,
}

/// A pair's slowly changing figures.
#[derive(Debug, Clone)]
struct Slow {
    uptime: Uptime,
    /// The p95 of each of the last [`SPARK_HOURS`] hours, oldest first.
    hours: Vec<HourPoint>,
}

#[derive(Debug, Clone, Copy)]
struct HourPoint {
    start_ms: i64,
    p95: Option<f64>,
    /// The hour ended long enough ago that its point will not change.
    done: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `sha256-…` of an inline element's text, for the CSP.
fn csp_hash(text: &str) -> String {
    use sha2::Digest;
    format!(
        "'sha256-{}'",
        crate::secret::base64(&sha2::Sha256::digest(text.as_bytes()))
    )
}

impl Page {
    fn new(shared: Arc<Shared>) -> Page {
        let csp = format!(
            "default-src 'none'; style-src {}; script-src {}; img-src data:; \
             form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            csp_hash(CSS),
            csp_hash(SCRIPT)
        );
        let state_dir = super::state_dir(&shared.config()).ok();
        Page {
            shared,
            templates: templates().map_err(|e| format!("{e:#}")),
            csp,
            figures: Mutex::new(Figures::default()),
            computing: Mutex::new(()),
            state_dir,
            reader: Mutex::new(None),
            refreshing: AtomicBool::new(false),
        }
    }

    /// The page's own connection to the history (opened on first use),
    /// else the shared one.
    fn own_reader(&self, shared: &Arc<Reader>) -> Arc<Reader> {
        let mut own = lock(&self.reader);
        if let Some(r) = own.as_ref() {
            return r.clone();
        }
        match self.state_dir.as_deref().map(Reader::open) {
            Some(Ok(r)) => {
                let r = Arc::new(r);
                *own = Some(r.clone());
                r
            }
            _ => shared.clone(),
        }
    }

    /// The kept figures; computed here when there are none yet, refreshed
    /// in the background when old or missing a configured pair.
    fn figures(
        self: &Arc<Self>,
        reader: &Arc<Reader>,
    ) -> Result<(SlowMap, Duration), store::Error> {
        let config = self.shared.config();
        let pairs = api::configured_pairs(&config);
        let kept = |f: &Figures| {
            f.at.map(|at| {
                let fresh = at.elapsed() < MIN_FIGURES_AGE.max(f.took * 10);
                let complete = pairs
                    .iter()
                    .all(|(p, e, _)| f.pairs.contains_key(&(p.clone(), e.clone())));
                (f.pairs.clone(), at.elapsed(), fresh && complete)
            })
        };
        let now_kept = kept(&lock(&self.figures));
        if let Some((pairs, age, fresh)) = now_kept {
            if !fresh {
                self.refresh_in_background(reader.clone());
            }
            return Ok((pairs, age));
        }
        // None yet: the first request computes them (once).
        let _computing = lock(&self.computing);
        let meanwhile = kept(&lock(&self.figures));
        if let Some((pairs, age, _)) = meanwhile {
            return Ok((pairs, age));
        }
        Ok((self.compute(&self.own_reader(reader))?, Duration::ZERO))
    }

    fn refresh_in_background(self: &Arc<Self>, reader: Arc<Reader>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.refreshing.store(false, Ordering::Release);
            return;
        };
        let page = self.clone();
        // Bounded work on the blocking pool, like any query; it holds no
        // lock a request waits for.
        runtime.spawn_blocking(move || {
            {
                let _computing = lock(&page.computing);
                let reader = page.own_reader(&reader);
                if let Err(e) = page.compute(&reader) {
                    tracing::warn!(
                        error = %crate::net::error::describe(&e),
                        "the status page's figures could not be refreshed"
                    );
                }
            }
            page.refreshing.store(false, Ordering::Release);
        });
    }

    /// Computes every configured pair's figures (reusing the points of
    /// complete hours) and keeps them. The caller holds `computing`.
    fn compute(&self, reader: &Reader) -> Result<SlowMap, store::Error> {
        let started = std::time::Instant::now();
        let old = lock(&self.figures).pairs.clone();
        let config = self.shared.config();
        let now = crate::history::now_ms();
        let end = (now.div_euclid(HOUR_MS) + 1) * HOUR_MS;
        let start = end - SPARK_HOURS * HOUR_MS;
        let mut out = HashMap::new();
        let mut uptimes = Duration::ZERO;
        for (probe, environment, _) in api::configured_pairs(&config) {
            let key = (probe, environment);
            let t = std::time::Instant::now();
            let uptime = api::uptime(reader, (&key.0, &key.1), now)?;
            uptimes += t.elapsed();
            let before = old.get(&key).map(|s| s.hours.as_slice()).unwrap_or(&[]);
            let mut hours = Vec::with_capacity(SPARK_HOURS as usize);
            for i in 0..SPARK_HOURS {
                let h = start + i * HOUR_MS;
                if let Some(done) = before.iter().find(|p| p.start_ms == h && p.done) {
                    hours.push(*done);
                    continue;
                }
                let point = api::latency_series(reader, (&key.0, &key.1, ""), h, HOUR_MS, 1)?;
                hours.push(HourPoint {
                    start_ms: h,
                    p95: point.first().and_then(|p| p.p95),
                    done: h + HOUR_MS + FINAL_AFTER_MS <= now,
                });
            }
            out.insert(key, Slow { uptime, hours });
        }
        let pairs = Arc::new(out);
        let mut f = lock(&self.figures);
        f.at = Some(std::time::Instant::now());
        f.took = started.elapsed();
        f.pairs = pairs.clone();
        tracing::debug!(pairs = pairs.len(), took = ?f.took, uptimes = ?uptimes, "status page figures computed");
        Ok(pairs)
    }

    /// Renders `name` with `ctx` inside the layout.
    fn render(&self, name: &str, title: &str, root: &str, ctx: Value) -> Result<String, String> {
        let env = self.templates.as_ref().map_err(Clone::clone)?;
        let body = env
            .get_template(name)
            .and_then(|t| t.render(minijinja::context! { root => root, ..ctx }))
            .map_err(|e| format!("{e:#}"))?;
        let config = self.shared.config();
        env.get_template("layout.html")
            .and_then(|t| {
                t.render(minijinja::context! {
                    title => title,
                    root => root,
                    body => Value::from_safe_string(body),
                    css => Value::from_safe_string(CSS.to_owned()),
                    script => Value::from_safe_string(SCRIPT.to_owned()),
                    refresh_seconds => REFRESH_SECONDS,
                    instance => config.daemon.instance.clone(),
                    location => config.daemon.location.clone(),
                    generated_at => api::rfc3339(crate::history::now_ms()),
                })
            })
            .map_err(|e| format!("{e:#}"))
    }

    /// An HTML answer with the page's headers, gzipped for who accepts it.
    fn respond(&self, status: StatusCode, html: String, request: &HeaderMap) -> Response {
        let headers = [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_str(&self.csp)
                    .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'")),
            ),
        ];
        if super::gzip::accepted(request) {
            if let Some(body) = super::gzip::encode(html.as_bytes()) {
                let encoding = (header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                return (status, headers, [encoding], body).into_response();
            }
        }
        (status, headers, html).into_response()
    }

    /// An error page: `status` and one sentence.
    fn error(
        &self,
        status: StatusCode,
        message: &str,
        root: &str,
        request: &HeaderMap,
    ) -> Response {
        let ctx = minijinja::context! {
            status => status.as_u16(),
            reason => status.canonical_reason().unwrap_or_default(),
            message => message,
        };
        let title = status.canonical_reason().unwrap_or("error");
        match self.render("error.html", title, root, ctx) {
            Ok(html) => self.respond(status, html, request),
            Err(e) => {
                tracing::warn!(error = %e, "the status page's error template failed");
                (status, format!("{message}\n")).into_response()
            }
        }
    }
}

/// The templates, compiled once. Auto-escaping is on for every template
/// (they are all `.html`); a name a template does not know is an error,
/// not an empty string.
fn templates() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.add_template("layout.html", include_str!("layout.html"))?;
    env.add_template("overview.html", include_str!("overview.html"))?;
    env.add_template("detail.html", include_str!("detail.html"))?;
    env.add_template("error.html", include_str!("error.html"))?;
    env.set_formatter(html_formatter);
    env.add_filter("pct", pct);
    env.add_filter("secs", secs);
    env.add_filter("when", when);
    env.add_filter("enc", enc);
    env.add_filter("clip", clip);
    Ok(env)
}

/// minijinja's formatter, but text is escaped as MarkupSafe does, `&`,
/// `<`, `>`, `"` and `'` only: that is enough in text and in a quoted
/// attribute (every attribute here is quoted, and nothing is written into
/// a script), and minijinja's `/` → `&#x2f;` made every link a third
/// longer.
fn html_formatter(
    out: &mut minijinja::Output<'_>,
    state: &minijinja::State<'_, '_>,
    value: &Value,
) -> Result<(), minijinja::Error> {
    match value.as_str() {
        Some(text) if state.auto_escape() == minijinja::AutoEscape::Html && !value.is_safe() => out
            .write_str(&escape_html(text))
            .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string())),
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// `text` with `&`, `<`, `>`, `"` and `'` as character references.
fn escape_html(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A share as a percentage that never rounds a shortfall up to 100%
/// (`99.99%` for 0.99996), `—` for none.
fn pct(v: Option<f64>) -> String {
    match v {
        None => "—".to_owned(),
        Some(v) if v >= 1.0 => "100%".to_owned(),
        Some(v) => {
            let floored = (v * 10_000.0).floor() / 100.0;
            format!("{floored:.2}%")
        }
    }
}

/// Seconds as a latency reads (`12.3ms`, `1.204s`), `—` for none.
fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_owned(), api::human_seconds)
}

/// An RFC 3339 time, shorter: `08:00:01Z` today (UTC), else
/// `2025-01-31 08:00Z`.
fn when(v: String) -> String {
    let Ok(at) = chrono::DateTime::parse_from_rfc3339(&v) else {
        return v;
    };
    let at = at.with_timezone(&chrono::Utc);
    if at.date_naive() == chrono::Utc::now().date_naive() {
        at.format("%H:%M:%SZ").to_string()
    } else {
        at.format("%Y-%m-%d %H:%MZ").to_string()
    }
}

/// At most `n` characters of `v`, `…` marking a cut.
fn clip(v: String, n: usize) -> String {
    match v.char_indices().nth(n) {
        Some((at, _)) => format!("{}…", &v[..at]),
        None => v,
    }
}

/// A state as the page words it (`none`: no runs yet).
fn state_text(state: &str) -> String {
    match state {
        "none" => "no runs yet".to_owned(),
        other => other.to_owned(),
    }
}

/// A value percent-encoded for a URL's path segment or query.
fn enc(v: String) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// Where the page links a run: a failed one to its failure artifact in
/// the JSON API (`/api/v1/artifacts/…`), any other to itself in the runs
/// API (`…/runs` narrowed to its start).
pub fn artifact_href(run: &RunRow) -> String {
    // A failed run's artifact (its request, response and timings); the
    // API answers 404 once the pair's newest `keep` have pushed it out.
    if run.result == crate::history::Verdict::Fail {
        return api::artifact_path(&run.probe, &run.environment, &run.run_id)
            .trim_start_matches('/')
            .to_owned();
    }
    format!(
        "api/v1/probes/{}/{}/runs?since={}&until={}&limit=1",
        enc(run.probe.clone()),
        enc(run.environment.clone()),
        enc(api::rfc3339(run.started_ms)),
        enc(api::rfc3339(run.started_ms.saturating_add(1)))
    )
}

/// The overview's filters: `env`, `tag`, `state` (each one value; empty
/// or absent means all).
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
struct Filters {
    env: String,
    tag: String,
    state: String,
}

/// The states a filter can name: the API's, and `none` for no runs yet.
const STATES: [&str; 4] = ["ok", "degraded", "failing", "none"];

impl Filters {
    fn parse(raw: Option<&str>) -> Result<Filters, String> {
        let mut f = Filters::default();
        let mut seen = BTreeSet::new();
        for (key, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            let slot = match key.as_ref() {
                "env" => &mut f.env,
                "tag" => &mut f.tag,
                "state" => &mut f.state,
                other => {
                    return Err(format!(
                        "{other}: unknown parameter; the page takes env, tag and state"
                    ));
                }
            };
            if !seen.insert(key.to_string()) {
                return Err(format!("{key}: given more than once"));
            }
            *slot = value.trim().to_owned();
        }
        if !f.state.is_empty() && !STATES.contains(&f.state.as_str()) {
            return Err(format!(
                "state: expected one of {}, found `{}`",
                STATES.join(", "),
                f.state
            ));
        }
        Ok(f)
    }

    fn any(&self) -> bool {
        !(self.env.is_empty() && self.tag.is_empty() && self.state.is_empty())
    }
}

/// A state change as the page shows it.
#[derive(Debug, Serialize)]
struct Change {
    at: String,
    from: String,
    to: String,
    reason: Option<String>,
}

impl From<&store::Transition> for Change {
    fn from(t: &store::Transition) -> Change {
        Change {
            at: api::rfc3339(t.at_ms),
            from: t.from.clone(),
            to: t.to.clone(),
            reason: t.reason.clone(),
        }
    }
}

/// A failed run and where it links.
#[derive(Debug, Serialize)]
struct Failure {
    run: RunView,
    href: String,
}

impl From<&RunRow> for Failure {
    fn from(r: &RunRow) -> Failure {
        Failure {
            run: RunView::from(r),
            href: artifact_href(r),
        }
    }
}

/// One pair on the overview.
#[derive(Debug, Serialize)]
struct Row {
    probe: String,
    environment: String,
    kind: &'static str,
    tags: Vec<String>,
    /// `ok`, `degraded`, `failing`, or `none` before any run.
    state: String,
    state_text: String,
    last_run: Option<RunView>,
    last_href: Option<String>,
    uptime: Option<Uptime>,
    slo: Option<api::SloView>,
    spark: Option<svg::Spark>,
    changes: Vec<Change>,
    failures: Vec<Failure>,
    /// `maintenance` or `silenced` while something holds the pair's
    /// alerts, with the sentence saying what and until when.
    hold: Option<(&'static str, String)>,
}

#[derive(Debug, Default, Serialize)]
struct Counts {
    ok: usize,
    degraded: usize,
    failing: usize,
    none: usize,
}

#[derive(Debug, Serialize)]
struct Overview {
    rows: Vec<Row>,
    /// Every configured pair.
    total: usize,
    /// The pairs the environment and tag filters let through, by state.
    counts: Counts,
    environments: Vec<String>,
    tags: Vec<String>,
    filters: Filters,
    filtered: bool,
    history: bool,
    /// How old the uptimes and sparklines are, in seconds.
    figures_age: u64,
    /// Every self-check target fails: the sentence saying so.
    offline: Option<String>,
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("the status page's query failed: {e}"))
}

async fn overview(
    State(page): State<Arc<Page>>,
    RawQuery(query): RawQuery,
    request: HeaderMap,
) -> Response {
    let root = "./";
    let filters = match Filters::parse(query.as_deref()) {
        Ok(f) => f,
        Err(e) => return page.error(StatusCode::BAD_REQUEST, &e, root, &request),
    };
    let slos = api::slo_views(&page.shared);
    let p = page.clone();
    let html = blocking(move || {
        let t = std::time::Instant::now();
        let ctx = overview_data(&p, filters, slos).map_err(|e| crate::net::error::describe(&e))?;
        let read = t.elapsed();
        let html = p.render("overview.html", "Status", root, Value::from_serialize(&ctx));
        tracing::debug!(pairs = ctx.rows.len(), read = ?read, render = ?(t.elapsed() - read), "status page served");
        html
    })
    .await
    .and_then(|r| r);
    match html {
        Ok(html) => page.respond(StatusCode::OK, html, &request),
        Err(e) => {
            tracing::warn!(error = %e, "the status page failed");
            page.error(StatusCode::INTERNAL_SERVER_ERROR, &e, root, &request)
        }
    }
}

/// The overview's data: every configured pair the filters let through.
fn overview_data(
    page: &Arc<Page>,
    filters: Filters,
    mut slos: BTreeMap<(String, String), api::SloView>,
) -> Result<Overview, store::Error> {
    let config = page.shared.config();
    let reader = page.shared.history.clone();
    let now = crate::history::now_ms();
    let total = api::configured_pairs(&config).len();
    let environments: Vec<String> = config.environments.keys().cloned().collect();
    let tags: Vec<String> = config
        .probes
        .iter()
        .flat_map(|p| p.tags.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let (states, mut last_runs, figures) = match &reader {
        Some(r) => {
            let (figures, age) = page.figures(r)?;
            (r.last_states()?, r.last_runs()?, Some((figures, age)))
        }
        None => (HashMap::new(), HashMap::new(), None),
    };
    let mut counts = Counts::default();
    let mut rows = Vec::new();
    for p in &config.probes {
        if !filters.tag.is_empty() && !p.tags.contains(&filters.tag) {
            continue;
        }
        for environment in &p.environments {
            if !filters.env.is_empty() && *environment != filters.env {
                continue;
            }
            let pair = (p.name.as_str(), environment.as_str());
            let last = last_runs.remove(&(p.name.clone(), environment.clone()));
            let state =
                api::state_of(&states, pair, last.is_some()).unwrap_or_else(|| "none".to_owned());
            match state.as_str() {
                "ok" => counts.ok += 1,
                "degraded" => counts.degraded += 1,
                "failing" => counts.failing += 1,
                _ => counts.none += 1,
            }
            if !filters.state.is_empty() && state != filters.state {
                continue;
            }
            let changes: Vec<Change> = match &reader {
                Some(r) => r
                    .transitions(pair.0, pair.1, now - DAY_MS)?
                    .iter()
                    .rev()
                    .take(OVERVIEW_CHANGES)
                    .map(Change::from)
                    .collect(),
                None => Vec::new(),
            };
            // A pair failing now shows its last failures (reading back
            // from the newest run, they are found at once); any other
            // pair's are on its detail page.
            let last_failed = last
                .as_ref()
                .is_some_and(|r| r.result == store::Verdict::Fail);
            let failures: Vec<Failure> = match &reader {
                Some(r) if state == "failing" || last_failed => r
                    .failed_runs(pair, now - DAY_MS, now.saturating_add(1), OVERVIEW_FAILURES)?
                    .iter()
                    .map(Failure::from)
                    .collect(),
                _ => Vec::new(),
            };
            let key = (p.name.clone(), environment.clone());
            let slow = figures.as_ref().and_then(|(f, _)| f.get(&key));
            let hold = page
                .shared
                .holds
                .hold_of(&config, &key.0, &key.1, chrono::Utc::now())
                .map(|h| {
                    let badge = match h {
                        crate::hold::Hold::Maintenance { .. } => "maintenance",
                        crate::hold::Hold::Silence { .. } => "silenced",
                    };
                    (badge, h.describe())
                });
            rows.push(Row {
                hold,
                kind: p.kind.name(),
                tags: p.tags.clone(),
                state_text: state_text(&state),
                state,
                last_run: last.as_ref().map(RunView::from),
                last_href: last.as_ref().map(artifact_href),
                uptime: slow.map(|s| s.uptime.clone()),
                slo: slos.remove(&key),
                spark: slow.map(|s| svg::spark(&s.hours.iter().map(|h| h.p95).collect::<Vec<_>>())),
                changes,
                failures,
                probe: key.0,
                environment: key.1,
            });
        }
    }
    Ok(Overview {
        rows,
        total,
        counts,
        environments,
        tags,
        filtered: filters.any(),
        filters,
        history: reader.is_some(),
        figures_age: figures.map_or(0, |(_, age)| age.as_secs()),
        offline: page
            .shared
            .holds
            .offline()
            .then(|| page.shared.holds.offline_detail()),
    })
}

/// The detail page's chart windows: (name, window, step).
const WINDOWS: [(&str, i64, i64); 4] = [
    ("1h", HOUR_MS, MINUTE_MS),
    ("24h", DAY_MS, HOUR_MS),
    ("7d", 7 * DAY_MS, 6 * HOUR_MS),
    ("30d", 30 * DAY_MS, DAY_MS),
];

/// One point of the detail chart's data table.
#[derive(Debug, Serialize)]
struct PointRow {
    start: String,
    runs: u64,
    failed: u64,
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
}

/// One bar of the last run's waterfall: the run itself, then its steps.
#[derive(Debug, Serialize)]
struct StepRow {
    name: String,
    result: &'static str,
    reason: Option<String>,
    status: Option<u16>,
    attempts: u32,
    offset_seconds: f64,
    duration_seconds: f64,
    error: Option<String>,
    bar: svg::Bar,
}

#[derive(Debug, Serialize)]
struct Detail {
    probe: String,
    environment: String,
    kind: &'static str,
    tags: Vec<String>,
    labels: Vec<(String, String)>,
    schedule: String,
    timeout: String,
    state: String,
    state_text: String,
    last_run: Option<RunView>,
    last_href: Option<String>,
    steps: Vec<StepRow>,
    uptime: Option<Uptime>,
    slo: Option<api::SloView>,
    window: &'static str,
    windows: Vec<&'static str>,
    chart: svg::Chart,
    points: Vec<PointRow>,
    changes: Vec<Change>,
    changes_more: bool,
    failures: Vec<Failure>,
    history: bool,
}

async fn detail(
    State(page): State<Arc<Page>>,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
    request: HeaderMap,
) -> Response {
    let root = "../../";
    let Ok(Path((probe, environment))) = path else {
        return page.error(StatusCode::BAD_REQUEST, "malformed path", root, &request);
    };
    let config = page.shared.config();
    let Some(p) = config.probes.iter().find(|p| p.name == probe) else {
        let msg = format!("unknown probe `{probe}`: no probe of that name is configured");
        return page.error(StatusCode::NOT_FOUND, &msg, root, &request);
    };
    if !p.environments.contains(&environment) {
        let msg = format!(
            "unknown environment `{environment}` for probe `{probe}`: it runs in {}",
            p.environments.join(", ")
        );
        return page.error(StatusCode::NOT_FOUND, &msg, root, &request);
    }
    let mut window = "24h";
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match (key.as_ref(), WINDOWS.iter().find(|w| w.0 == value)) {
            ("window", Some(w)) => window = w.0,
            ("window", None) => {
                let msg = format!("window: expected 1h, 24h, 7d or 30d, found `{value}`");
                return page.error(StatusCode::BAD_REQUEST, &msg, root, &request);
            }
            (other, _) => {
                let msg = format!("{other}: unknown parameter; the page takes window");
                return page.error(StatusCode::BAD_REQUEST, &msg, root, &request);
            }
        }
    }
    let base = Detail {
        probe: probe.clone(),
        environment: environment.clone(),
        kind: p.kind.name(),
        tags: p.tags.clone(),
        labels: p
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        schedule: schedule_text(&p.schedule),
        timeout: humantime::format_duration(p.timeout).to_string(),
        state: "none".to_owned(),
        state_text: state_text("none"),
        last_run: None,
        last_href: None,
        steps: Vec::new(),
        uptime: None,
        slo: api::slo_views(&page.shared).remove(&(probe.clone(), environment.clone())),
        window,
        windows: WINDOWS.iter().map(|w| w.0).collect(),
        chart: svg::chart(&[], &[], |v| v.to_string()),
        points: Vec::new(),
        changes: Vec::new(),
        changes_more: false,
        failures: Vec::new(),
        history: page.shared.history.is_some(),
    };
    drop(config);
    let p2 = page.clone();
    let title = format!("{probe} in {environment}");
    let html = blocking(move || {
        let ctx = match p2.shared.history.clone() {
            Some(reader) => {
                detail_data(&reader, base).map_err(|e| crate::net::error::describe(&e))?
            }
            None => base,
        };
        p2.render("detail.html", &title, root, Value::from_serialize(&ctx))
    })
    .await
    .and_then(|r| r);
    match html {
        Ok(html) => page.respond(StatusCode::OK, html, &request),
        Err(e) => {
            tracing::warn!(error = %e, "the status page failed");
            page.error(StatusCode::INTERNAL_SERVER_ERROR, &e, root, &request)
        }
    }
}

fn ms_of(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn schedule_text(s: &crate::config::Schedule) -> String {
    match s {
        crate::config::Schedule::Every(d) => {
            format!("every {}", humantime::format_duration(*d))
        }
        crate::config::Schedule::Cron {
            expression,
            timezone,
        } => format!("cron {expression} ({timezone})"),
    }
}

/// One pair's figures, read now.
fn detail_data(reader: &Reader, mut d: Detail) -> Result<Detail, store::Error> {
    let now = crate::history::now_ms();
    let pair = (d.probe.clone(), d.environment.clone());
    let pair = (pair.0.as_str(), pair.1.as_str());
    let last = reader.runs(pair.0, pair.1, i64::MIN, i64::MAX, 1)?;
    let states = reader.last_states()?;
    d.state = api::state_of(&states, pair, !last.is_empty()).unwrap_or_else(|| "none".to_owned());
    d.state_text = state_text(&d.state);
    if let Some(run) = last.first() {
        // A flow's teardown runs after the run's duration, within its own
        // budget: its steps start before this.
        let end = run
            .started_ms
            .saturating_add(run.duration_us.max(0) / 1000)
            .saturating_add(ms_of(crate::probe::flow::MAX_TEARDOWN_TIMEOUT) + 1000);
        let steps = reader.run_steps(pair, &run.run_id, run.started_ms, end)?;
        let spans: Vec<(i64, i64)> = std::iter::once((0, run.duration_us))
            .chain(
                steps
                    .iter()
                    .map(|s| ((s.started_ms - run.started_ms) * 1000, s.duration_us)),
            )
            .collect();
        let bars = svg::bars(&spans, run.duration_us);
        d.steps = std::iter::once(run)
            .chain(steps.iter())
            .zip(spans.iter().zip(bars))
            .map(|(r, ((offset, duration), bar))| StepRow {
                name: if r.step.is_empty() {
                    "whole run".to_owned()
                } else {
                    r.step.clone()
                },
                result: r.result.as_str(),
                reason: r.reason.clone(),
                status: r.status,
                attempts: r.attempts,
                offset_seconds: *offset as f64 / 1e6,
                duration_seconds: (*duration).max(0) as f64 / 1e6,
                error: r.error.clone(),
                bar,
            })
            .collect();
        d.last_run = Some(RunView::from(run));
        d.last_href = Some(artifact_href(run));
    }
    d.uptime = Some(api::uptime(reader, pair, now)?);
    let (_, window, step) = WINDOWS
        .iter()
        .find(|w| w.0 == d.window)
        .copied()
        .unwrap_or(WINDOWS[1]);
    let points = window / step;
    let end = (now.div_euclid(step) + 1) * step;
    let series = api::latency_series(
        reader,
        (pair.0, pair.1, ""),
        end - points * step,
        step,
        points,
    )?;
    let label = |rfc: &str| -> String {
        let at = chrono::DateTime::parse_from_rfc3339(rfc).map(|t| t.with_timezone(&chrono::Utc));
        match at {
            Ok(t) if step >= DAY_MS => t.format("%m-%d").to_string(),
            Ok(t) if window > DAY_MS => t.format("%m-%d %H:%M").to_string(),
            Ok(t) => t.format("%H:%MZ").to_string(),
            Err(_) => rfc.to_owned(),
        }
    };
    let labels: Vec<String> = series.iter().map(|p| label(&p.start)).collect();
    let of = |f: fn(&api::Point) -> Option<f64>| series.iter().map(f).collect::<Vec<_>>();
    d.chart = svg::chart(
        &[
            ("p50", of(|p| p.p50)),
            ("p95", of(|p| p.p95)),
            ("p99", of(|p| p.p99)),
        ],
        &labels,
        api::human_seconds,
    );
    d.points = series
        .iter()
        .rev()
        .map(|p| PointRow {
            start: p.start.clone(),
            runs: p.runs,
            failed: p.failed,
            p50: p.p50,
            p95: p.p95,
            p99: p.p99,
        })
        .collect();
    let changes = reader.transitions(pair.0, pair.1, now - 30 * DAY_MS)?;
    d.changes_more = changes.len() > DETAIL_CHANGES;
    d.changes = changes
        .iter()
        .rev()
        .take(DETAIL_CHANGES)
        .map(Change::from)
        .collect();
    d.failures = reader
        .failed_runs(
            pair,
            now - 7 * DAY_MS,
            now.saturating_add(1),
            DETAIL_FAILURES,
        )?
        .iter()
        .map(Failure::from)
        .collect();
    Ok(d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_compile() {
        templates().unwrap();
    }

    #[test]
    fn text_is_escaped_in_every_template() {
        let env = templates().unwrap();
        let t = env
            .template_from_named_str(
                "t.html",
                r#"<p title="{{ v }}">{{ v }}</p><a href="{{ root }}x/{{ v|enc }}">{{ n }}</a>"#,
            )
            .unwrap();
        let html = t
            .render(
                minijinja::context! { v => "<script>'x'&\"y\"</script>", root => "../", n => 3 },
            )
            .unwrap();
        assert_eq!(
            html,
            "<p title=\"&lt;script&gt;&#39;x&#39;&amp;&quot;y&quot;&lt;/script&gt;\">\
             &lt;script&gt;&#39;x&#39;&amp;&quot;y&quot;&lt;/script&gt;</p>\
             <a href=\"../x/%3Cscript%3E%27x%27%26%22y%22%3C%2Fscript%3E\">3</a>"
        );
    }

    #[test]
    fn long_text_is_clipped_on_a_character() {
        assert_eq!(clip("héllo".into(), 2), "hé…");
        assert_eq!(clip("hé".into(), 2), "hé");
    }

    #[test]
    fn percentages_never_round_up_to_whole() {
        assert_eq!(pct(Some(1.0)), "100%");
        assert_eq!(pct(Some(0.99996)), "99.99%");
        assert_eq!(pct(Some(0.5)), "50.00%");
        assert_eq!(pct(None), "—");
    }

    #[test]
    fn filters_are_checked_by_name_and_value() {
        assert_eq!(
            Filters::parse(Some("env=prod&tag=&state=failing")).unwrap(),
            Filters {
                env: "prod".into(),
                tag: String::new(),
                state: "failing".into()
            }
        );
        assert!(!Filters::parse(None).unwrap().any());
        assert!(
            Filters::parse(Some("state=bad"))
                .unwrap_err()
                .starts_with("state:")
        );
        assert!(
            Filters::parse(Some("nope=1"))
                .unwrap_err()
                .starts_with("nope:")
        );
        assert!(
            Filters::parse(Some("env=a&env=b"))
                .unwrap_err()
                .contains("more than once")
        );
    }

    #[test]
    fn a_failure_links_to_its_artifact_and_a_pass_to_its_run_in_the_api() {
        let run = RunRow {
            probe: "p".into(),
            environment: "e".into(),
            step: String::new(),
            started_ms: 1_700_000_000_000,
            intended_ms: 1_700_000_000_000,
            duration_us: 1000,
            result: store::Verdict::Pass,
            reason: None,
            status: None,
            attempts: 1,
            trace_id: String::new(),
            run_id: "r".into(),
            error: None,
        };
        assert_eq!(
            artifact_href(&run),
            "api/v1/probes/p/e/runs?since=2023-11-14T22%3A13%3A20.000Z\
             &until=2023-11-14T22%3A13%3A20.001Z&limit=1"
        );
        let failed = RunRow {
            result: store::Verdict::Fail,
            ..run
        };
        assert_eq!(artifact_href(&failed), "api/v1/artifacts/p/e/r");
    }

    #[test]
    fn the_policy_names_the_inline_style_and_script() {
        let page_csp = format!("style-src {};", csp_hash(CSS));
        assert!(page_csp.starts_with("style-src 'sha256-"), "{page_csp}");
        // No inline style attribute anywhere: the policy would block it;
        // the one script is the layout's.
        let layout = include_str!("layout.html");
        assert!(!layout.contains("style="));
        assert_eq!(layout.matches("<script").count(), 1);
        for t in [
            include_str!("overview.html"),
            include_str!("detail.html"),
            include_str!("error.html"),
        ] {
            assert!(!t.contains("style="), "a style attribute in a template");
            assert!(!t.contains("<script"), "a script outside the layout");
        }
    }
}
