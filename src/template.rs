//! One template syntax for every value synthmon sends: minijinja's
//! `{{ … }}` in URLs, query values, headers, bodies and addresses.
//!
//! A template sees `vars` (the environment's variables, `--var`, and what
//! earlier flow steps captured), `run_id`, `probe`, `environment`,
//! `iteration` (a workload request's index, else 0) and `marker`, and calls
//! the generator functions of [`crate::generate`]. Templates are checked at
//! load (syntax, unknown functions, unknown top-level names) and rendered
//! with strict undefined values, so a missing variable is a clear error
//! rather than an empty string in a URL.
//!
//! In a JSON body, a string that is exactly one `{{ expression }}` takes the
//! expression's type (`qty = "{{ int(1, 5) }}"` sends a number); any other
//! string is rendered as text.

use crate::generate::Generator;
use minijinja::value::{Object, Value};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior};
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, Mutex};

/// The functions a template may call.
pub const FUNCTIONS: &[&str] = &[
    "uuid",
    "synthetic_id",
    "int",
    "float",
    "uniform",
    "normal",
    "lognormal",
    "zipf",
    "choice",
    "weighted",
    "name",
    "first_name",
    "last_name",
    "email",
    "address",
    "now",
    "unix",
    "unix_ms",
];

/// The filters a template may apply: synthmon's `b64` and minijinja's
/// built-ins. The environment itself decides what exists; this list words
/// the suggestions for a name that does not.
pub const FILTERS: &[&str] = &[
    "b64",
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "chain",
    "count",
    "d",
    "default",
    "dictsort",
    "e",
    "escape",
    "first",
    "float",
    "format",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "tojson",
    "trim",
    "unique",
    "upper",
    "zip",
];

/// The tests (`x is defined`) a template may apply, for suggestions as
/// [`FILTERS`] is.
pub const TESTS: &[&str] = &[
    "boolean",
    "defined",
    "divisibleby",
    "endingwith",
    "eq",
    "even",
    "false",
    "float",
    "ge",
    "gt",
    "in",
    "integer",
    "iterable",
    "le",
    "lower",
    "lt",
    "mapping",
    "ne",
    "none",
    "number",
    "odd",
    "sameas",
    "sequence",
    "startingwith",
    "string",
    "true",
    "undefined",
    "upper",
];

/// The top-level names a template may read besides the functions.
pub const NAMES: &[&str] = &[
    "vars",
    "run_id",
    "probe",
    "environment",
    "iteration",
    "marker",
];

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Values go into JSON, URLs and headers, never HTML.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.add_function("uuid", |s: &State| with_gen(s, |g| Ok(g.uuid())));
    env.add_function("synthetic_id", |s: &State| {
        with_gen(s, |g| Ok(g.synthetic_id()))
    });
    env.add_function("int", |s: &State, lo: i64, hi: i64| {
        with_gen(s, |g| g.int(lo, hi))
    });
    env.add_function("float", |s: &State, lo: f64, hi: f64| {
        with_gen(s, |g| g.uniform(lo, hi))
    });
    env.add_function("uniform", |s: &State, lo: f64, hi: f64| {
        with_gen(s, |g| g.uniform(lo, hi))
    });
    env.add_function("normal", |s: &State, mean: f64, sd: f64| {
        with_gen(s, |g| g.normal(mean, sd))
    });
    env.add_function("lognormal", |s: &State, mu: f64, sigma: f64| {
        with_gen(s, |g| g.lognormal(mu, sigma))
    });
    env.add_function("zipf", |s: &State, n: u64, exp: f64| {
        with_gen(s, |g| g.zipf(n, exp))
    });
    env.add_function("choice", |s: &State, items: Vec<Value>| {
        let i = with_gen(s, |g| g.index(items.len()))?;
        Ok(items.get(i).cloned().unwrap_or_default())
    });
    env.add_function("weighted", weighted);
    env.add_function("name", |s: &State| with_gen(s, |g| Ok(g.name())));
    env.add_function("first_name", |s: &State| {
        with_gen(s, |g| Ok(g.first_name()))
    });
    env.add_function("last_name", |s: &State| with_gen(s, |g| Ok(g.last_name())));
    env.add_function("email", |s: &State| with_gen(s, |g| Ok(g.email())));
    env.add_function("address", |s: &State| with_gen(s, |g| Ok(g.address())));
    env.add_function("now", |fmt: Option<String>| {
        let now = chrono::Utc::now();
        Ok::<_, Error>(match fmt {
            None => now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            Some(f) => {
                use std::fmt::Write as _;
                let mut out = String::new();
                write!(out, "{}", now.format(&f)).map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        format!("now(): bad format `{f}`"),
                    )
                })?;
                out
            }
        })
    });
    // `{{ (vars.user ~ ':' ~ vars.password) | b64 }}`: standard base64 of
    // the value's text, as an `Authorization: Basic` header wants it.
    env.add_filter("b64", |value: Value| {
        let text = match value.as_str() {
            Some(s) => s.to_owned(),
            None => value.to_string(),
        };
        crate::secret::base64(text.as_bytes())
    });
    env.add_function("unix", || Ok::<_, Error>(chrono::Utc::now().timestamp()));
    env.add_function("unix_ms", || {
        Ok::<_, Error>(chrono::Utc::now().timestamp_millis())
    });
    env
});

/// `weighted({"a": 3, "b": 1})`: a key drawn with probability proportional
/// to its weight.
fn weighted(s: &State, choices: Value) -> Result<Value, Error> {
    let mut keys = Vec::new();
    let mut weights = Vec::new();
    let iter = choices.try_iter().map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            "weighted() takes a map of value → weight",
        )
    })?;
    for key in iter {
        let w = choices
            .get_item(&key)
            .ok()
            .and_then(|w| f64::try_from(w).ok())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("weighted(): the weight of `{key}` is not a number"),
                )
            })?;
        keys.push(key);
        weights.push(w);
    }
    let i = with_gen(s, |g| g.weighted_index(&weights))?;
    Ok(keys.get(i).cloned().unwrap_or_default())
}

/// The generator of the rendering in progress.
#[derive(Debug)]
struct GenSlot(Mutex<Generator>);

impl Object for GenSlot {}

fn with_gen<T>(
    state: &State,
    f: impl FnOnce(&mut Generator) -> Result<T, String>,
) -> Result<T, Error> {
    let slot = state
        .lookup("__generator")
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "no generator in scope"))?;
    let slot = slot
        .downcast_object_ref::<GenSlot>()
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "no generator in scope"))?;
    let mut g = slot
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut g).map_err(|msg| Error::new(ErrorKind::InvalidOperation, msg))
}

/// What one rendering sees. Cheap to clone; the generator is shared, so
/// renderings through clones draw from one stream in order.
#[derive(Clone, Debug)]
pub struct Scope {
    pub vars: BTreeMap<String, serde_json::Value>,
    pub run_id: String,
    pub probe: String,
    pub environment: String,
    pub iteration: u64,
    generator: Arc<GenSlot>,
}

impl Scope {
    pub fn new(
        generator: Generator,
        vars: BTreeMap<String, serde_json::Value>,
        run_id: &str,
        probe: &str,
        environment: &str,
    ) -> Scope {
        Scope {
            vars,
            run_id: run_id.to_owned(),
            probe: probe.to_owned(),
            environment: environment.to_owned(),
            iteration: 0,
            generator: Arc::new(GenSlot(Mutex::new(generator))),
        }
    }

    /// Replaces the generator (a workload gives each request its own).
    pub fn with_generator(mut self, generator: Generator) -> Scope {
        self.generator = Arc::new(GenSlot(Mutex::new(generator)));
        self
    }

    /// Draws from the scope's generator directly.
    pub fn generate<T>(&self, f: impl FnOnce(&mut Generator) -> T) -> T {
        let mut g = self
            .generator
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g)
    }

    fn context(&self) -> Value {
        let marker = self.generate(|g| g.marker().to_owned());
        minijinja::context! {
            vars => Value::from_serialize(&self.vars),
            run_id => self.run_id.clone(),
            probe => self.probe.clone(),
            environment => self.environment.clone(),
            iteration => self.iteration,
            marker => marker,
            __generator => Value::from_dyn_object(self.generator.clone()),
        }
    }
}

/// A string value that may hold template tags, checked at load.
#[derive(Clone, Debug, PartialEq)]
pub struct Text {
    source: String,
    /// Holds `{{` or `{%`: needs rendering.
    dynamic: bool,
    /// Exactly one `{{ expression }}` and nothing else: the expression,
    /// compiled once at load (a workload renders it per request).
    whole: Option<Compiled>,
}

/// A compiled expression owned by its [`Text`].
#[derive(Clone)]
struct Compiled(Arc<minijinja::Expression<'static, 'static>>);

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Compiled")
    }
}

impl PartialEq for Compiled {
    /// Texts with equal sources compile to the same expression, and
    /// [`Text`]'s equality compares the sources.
    fn eq(&self, _: &Compiled) -> bool {
        true
    }
}

/// Why a template was rejected at load.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError {
    pub message: String,
}

impl Text {
    /// Checks `source`: syntax, and that every top-level name it reads is a
    /// function or one of [`NAMES`], and every `vars.X` it reads is in
    /// `known_vars` (when given).
    pub fn compile(source: &str, known_vars: Option<&[String]>) -> Result<Text, TemplateError> {
        let dynamic = source.contains("{{") || source.contains("{%") || source.contains("{#");
        if !dynamic {
            return Ok(Text::literal(source));
        }
        let tmpl = ENV.template_from_str(source).map_err(|e| TemplateError {
            message: format!("invalid template `{source}`: {}", describe(&e)),
        })?;
        check_applied(source)?;
        for name in tmpl.undeclared_variables(true) {
            let mut parts = name.splitn(2, '.');
            let top = parts.next().unwrap_or_default();
            if FUNCTIONS.contains(&top) {
                continue;
            }
            if !NAMES.contains(&top) {
                let mut msg = format!(
                    "unknown name `{top}` in template `{source}` (functions: {}; values: {})",
                    FUNCTIONS.join(", "),
                    NAMES.join(", ")
                );
                if let Some(near) =
                    crate::diag::nearest(top, FUNCTIONS.iter().chain(NAMES.iter()).copied())
                {
                    msg.push_str(&format!("; did you mean `{near}`?"));
                }
                return Err(TemplateError { message: msg });
            }
            if let (Some(known), "vars", Some(var)) = (known_vars, top, parts.next()) {
                let var = var.split('.').next().unwrap_or(var);
                if !known.iter().any(|k| k == var) {
                    let mut msg = format!(
                        "unknown variable `vars.{var}` in template `{source}`: define it in the environment's `variables` or capture it in an earlier step"
                    );
                    if let Some(near) = crate::diag::nearest(var, known.iter().map(String::as_str))
                    {
                        msg.push_str(&format!("; did you mean `vars.{near}`?"));
                    }
                    return Err(TemplateError { message: msg });
                }
            }
        }
        let whole = whole_expression(source)
            .map(|inner| {
                ENV.compile_expression_owned(inner.to_owned())
                    .map(|e| Compiled(Arc::new(e)))
                    .map_err(|e| TemplateError {
                        message: format!("invalid template `{source}`: {}", describe(&e)),
                    })
            })
            .transpose()?;
        Ok(Text {
            source: source.to_owned(),
            dynamic,
            whole,
        })
    }

    /// A fixed string.
    pub fn literal(source: &str) -> Text {
        Text {
            source: source.to_owned(),
            dynamic: false,
            whole: None,
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The `X` of every `vars.X` the template reads.
    pub fn vars_read(&self) -> Vec<String> {
        if !self.dynamic {
            return Vec::new();
        }
        let Ok(tmpl) = ENV.template_from_str(&self.source) else {
            return Vec::new();
        };
        let mut out: Vec<String> = tmpl
            .undeclared_variables(true)
            .into_iter()
            .filter_map(|n| {
                n.strip_prefix("vars.")
                    .map(|v| v.split('.').next().unwrap_or(v).to_owned())
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    pub fn is_literal(&self) -> bool {
        !self.dynamic
    }

    /// Renders to a string.
    pub fn render(&self, scope: &Scope) -> Result<String, String> {
        if !self.dynamic {
            return Ok(self.source.clone());
        }
        self.render_in(scope.context())
    }

    /// Renders to a JSON value: typed when the string is one whole
    /// expression, else a string.
    pub fn render_json(&self, scope: &Scope) -> Result<serde_json::Value, String> {
        self.render_json_in(scope.context())
    }

    /// [`Text::render`] with the scope's context already built.
    fn render_in(&self, context: Value) -> Result<String, String> {
        contained(&self.source, || self.render_unguarded(context))
    }

    fn render_unguarded(&self, context: Value) -> Result<String, String> {
        let rendered = match &self.whole {
            // Printed as a template prints a value; strict, like a template,
            // about printing an undefined one.
            Some(Compiled(expr)) => expr.eval(context).and_then(|v| {
                if v.is_undefined() {
                    Err(Error::from(ErrorKind::UndefinedError))
                } else {
                    Ok(v.to_string())
                }
            }),
            None => ENV.render_str(&self.source, context),
        };
        rendered.map_err(|e| format!("cannot render `{}`: {}", self.source, describe(&e)))
    }

    /// [`Text::render_json`] with the scope's context already built.
    fn render_json_in(&self, context: Value) -> Result<serde_json::Value, String> {
        let Some(Compiled(expr)) = &self.whole else {
            return self.render_in(context).map(serde_json::Value::String);
        };
        contained(&self.source, || {
            let value = expr
                .eval(context)
                .map_err(|e| format!("cannot render `{}`: {}", self.source, describe(&e)))?;
            serde_json::to_value(&value)
                .map_err(|e| format!("cannot render `{}` as JSON: {e}", self.source))
        })
    }
}

/// Runs a render, turning a panic inside the template engine into the
/// render's error, so no template, however absurd, takes a run (or the
/// daemon's worker) down with it. minijinja 2.24 panics, for one, on
/// `[1, 2] * 9223372036854775807` (an unchecked multiplication of the
/// sequence's length).
fn contained<T>(source: &str, render: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(render)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".to_owned());
        Err(format!(
            "cannot render `{source}`: the template engine failed ({why})"
        ))
    })
}

/// What a template applies to a value: a filter (`x | upper`,
/// `{% filter upper %}`) or a test (`x is defined`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Applied {
    Filter,
    Test,
}

/// Checks that every filter and test `source` applies exists: minijinja
/// looks them up only when rendering, which would turn a typo into a
/// failed run instead of a load error. `source` has parsed.
fn check_applied(source: &str) -> Result<(), TemplateError> {
    check_applied_in(&ENV, source).map_err(|message| TemplateError { message })
}

/// [`check_applied`] against another environment (a webhook's body
/// template has minijinja's built-ins only); the message names the
/// template and the nearest name `env` has.
pub fn check_applied_in(env: &Environment<'_>, source: &str) -> Result<(), String> {
    let state = env.empty_state();
    let exists = |applied: Applied, name: &str| match applied {
        Applied::Filter => !state
            .apply_filter(name, &[])
            .is_err_and(|e| e.kind() == ErrorKind::UnknownFilter),
        Applied::Test => !state
            .perform_test(name, &[])
            .is_err_and(|e| e.kind() == ErrorKind::UnknownTest),
    };
    for (applied, name) in applied(source) {
        if exists(applied, &name) {
            continue;
        }
        let (what, known) = match applied {
            Applied::Filter => ("filter", FILTERS),
            Applied::Test => ("test", TESTS),
        };
        let mut message = format!("unknown {what} `{name}` in template `{source}`");
        let candidates = known.iter().copied().filter(|n| exists(applied, n));
        if let Some(near) = crate::diag::nearest(&name, candidates) {
            message.push_str(&format!("; did you mean `{near}`?"));
        }
        return Err(message);
    }
    Ok(())
}

/// A token of a template's tags, as far as finding filters and tests
/// needs: names, `|`, `.`, and anything else.
#[derive(Debug, PartialEq)]
enum Token<'a> {
    Name(&'a str),
    Pipe,
    Dot,
    Other,
}

/// The filters and tests `source` applies, in order, outside string
/// literals, comments and `{% raw %}` blocks (minijinja's default syntax).
fn applied(source: &str) -> Vec<(Applied, String)> {
    let mut found = Vec::new();
    let mut rest = source;
    while let Some(open) = rest.find('{') {
        let tag = &rest[open..];
        if let Some(comment) = tag.strip_prefix("{#") {
            rest = comment.find("#}").map_or("", |end| &comment[end + 2..]);
        } else if let Some(expr) = tag.strip_prefix("{{") {
            let (tokens, after) = tokenize(expr, "}}");
            names_applied(&tokens, false, &mut found);
            rest = after;
        } else if let Some(block) = tag.strip_prefix("{%") {
            let (tokens, after) = tokenize(block, "%}");
            if first_name(&tokens) == Some("raw") {
                rest = skip_raw(after);
            } else {
                names_applied(&tokens, true, &mut found);
                rest = after;
            }
        } else {
            rest = &tag[1..];
        }
    }
    found
}

/// The tokens of a tag's inside up to its `end` (`}}` or `%}`) outside
/// brackets and strings, and the text after it.
fn tokenize<'a>(text: &'a str, end: &str) -> (Vec<Token<'a>>, &'a str) {
    let mut tokens = Vec::new();
    let mut depth = 0usize;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if depth == 0 && bytes[i..].starts_with(end.as_bytes()) {
            return (tokens, &text[i + end.len()..]);
        }
        match c {
            b'\'' | b'"' => {
                // A string literal, with backslash escapes.
                i += 1;
                while i < bytes.len() && bytes[i] != c {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                tokens.push(Token::Other);
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let start = i;
                while i + 1 < bytes.len()
                    && (bytes[i + 1].is_ascii_alphanumeric() || bytes[i + 1] == b'_')
                {
                    i += 1;
                }
                tokens.push(Token::Name(&text[start..=i]));
            }
            b'|' => tokens.push(Token::Pipe),
            b'.' => tokens.push(Token::Dot),
            b'(' | b'[' | b'{' => {
                depth += 1;
                tokens.push(Token::Other);
            }
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                tokens.push(Token::Other);
            }
            c if c.is_ascii_whitespace() => {}
            _ => tokens.push(Token::Other),
        }
        i += 1;
    }
    (tokens, "")
}

/// The first name of a block tag (`{%- raw %}`: `raw`), its keyword.
fn first_name<'a>(tokens: &[Token<'a>]) -> Option<&'a str> {
    tokens.iter().find_map(|t| match t {
        Token::Name(name) => Some(*name),
        _ => None,
    })
}

/// The text after the `{% endraw %}` that closes a raw block.
fn skip_raw(mut rest: &str) -> &str {
    while let Some(open) = rest.find("{%") {
        let (tokens, after) = tokenize(&rest[open + 2..], "%}");
        if first_name(&tokens) == Some("endraw") {
            return after;
        }
        rest = after;
    }
    ""
}

/// Adds the filters (after `|`, or first in a `{% filter %}` block) and
/// tests (after `is` or `is not`) that `tokens` apply to `found`; dotted
/// names whole.
fn names_applied(tokens: &[Token<'_>], block: bool, found: &mut Vec<(Applied, String)>) {
    let dotted = |from: usize| -> Option<String> {
        let Some(Token::Name(first)) = tokens.get(from) else {
            return None;
        };
        let mut name = (*first).to_owned();
        let mut at = from + 1;
        while let (Some(Token::Dot), Some(Token::Name(next))) = (tokens.get(at), tokens.get(at + 1))
        {
            name.push('.');
            name.push_str(next);
            at += 2;
        }
        Some(name)
    };
    // `{%- filter upper %}`: the whitespace marker is not a name.
    let keyword = tokens.iter().position(|t| matches!(t, Token::Name(_)));
    if let Some(at) = keyword.filter(|at| block && tokens[*at] == Token::Name("filter")) {
        if let Some(name) = dotted(at + 1) {
            found.push((Applied::Filter, name));
        }
    }
    for (at, token) in tokens.iter().enumerate() {
        match token {
            Token::Pipe => {
                if let Some(name) = dotted(at + 1) {
                    found.push((Applied::Filter, name));
                }
            }
            Token::Name("is") if at == 0 || tokens[at - 1] != Token::Dot => {
                let from = if tokens.get(at + 1) == Some(&Token::Name("not")) {
                    at + 2
                } else {
                    at + 1
                };
                if let Some(name) = dotted(from) {
                    found.push((Applied::Test, name));
                }
            }
            _ => {}
        }
    }
}

fn describe(e: &Error) -> String {
    let mut msg = e.kind().to_string();
    if let Some(detail) = e.detail() {
        msg.push_str(": ");
        msg.push_str(detail);
    }
    msg
}

/// A JSON body whose string leaves (and object keys, as text) may be
/// templates.
#[derive(Clone, Debug)]
pub enum JsonTemplate {
    Value(serde_json::Value),
    Text(Text),
    Array(Vec<JsonTemplate>),
    Object(Vec<(String, JsonTemplate)>),
}

impl JsonTemplate {
    /// Compiles every string leaf; errors carry the leaf's path.
    pub fn compile(
        value: &serde_json::Value,
        known_vars: Option<&[String]>,
    ) -> Result<JsonTemplate, (String, TemplateError)> {
        fn walk(
            v: &serde_json::Value,
            path: &str,
            known: Option<&[String]>,
        ) -> Result<JsonTemplate, (String, TemplateError)> {
            Ok(match v {
                serde_json::Value::String(s) => {
                    let t = Text::compile(s, known).map_err(|e| (path.to_owned(), e))?;
                    if t.is_literal() {
                        JsonTemplate::Value(v.clone())
                    } else {
                        JsonTemplate::Text(t)
                    }
                }
                serde_json::Value::Array(items) => JsonTemplate::Array(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| walk(item, &format!("{path}[{i}]"), known))
                        .collect::<Result<_, _>>()?,
                ),
                serde_json::Value::Object(map) => JsonTemplate::Object(
                    map.iter()
                        .map(|(k, item)| {
                            let p = if path.is_empty() {
                                k.clone()
                            } else {
                                format!("{path}.{k}")
                            };
                            Ok((k.clone(), walk(item, &p, known)?))
                        })
                        .collect::<Result<_, _>>()?,
                ),
                other => JsonTemplate::Value(other.clone()),
            })
        }
        walk(value, "", known_vars)
    }

    /// The `X` of every `vars.X` any leaf reads.
    pub fn vars_read(&self) -> Vec<String> {
        match self {
            JsonTemplate::Value(_) => Vec::new(),
            JsonTemplate::Text(t) => t.vars_read(),
            JsonTemplate::Array(items) => items.iter().flat_map(JsonTemplate::vars_read).collect(),
            JsonTemplate::Object(fields) => {
                fields.iter().flat_map(|(_, v)| v.vars_read()).collect()
            }
        }
    }

    /// Renders every leaf; the scope's context is built once for the
    /// whole body (its generator still draws in leaf order).
    pub fn render(&self, scope: &Scope) -> Result<serde_json::Value, String> {
        match self {
            JsonTemplate::Value(v) => Ok(v.clone()),
            _ => self.render_in(&scope.context()),
        }
    }

    fn render_in(&self, context: &Value) -> Result<serde_json::Value, String> {
        Ok(match self {
            JsonTemplate::Value(v) => v.clone(),
            JsonTemplate::Text(t) => t.render_json_in(context.clone())?,
            JsonTemplate::Array(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|i| i.render_in(context))
                    .collect::<Result<_, _>>()?,
            ),
            JsonTemplate::Object(fields) => {
                let mut map = serde_json::Map::new();
                for (k, v) in fields {
                    map.insert(k.clone(), v.render_in(context)?);
                }
                serde_json::Value::Object(map)
            }
        })
    }
}

/// A JSON request body's template, ready to be sent many times.
///
/// When every templated leaf is one whole `{{ expression }}` (a generated
/// payload's usual shape), the leaves are also compiled into one list
/// expression, `[(e1), (e2), …]`, evaluated once per body, and the JSON
/// text around them is written at load: one evaluation instead of one
/// per leaf, and no JSON tree built and serialised per request. The text
/// is byte for byte what rendering [`JsonBody::tree`] and serialising it
/// gives, and its leaves draw from the generator in the same order.
#[derive(Clone, Debug)]
pub struct JsonBody {
    pub tree: JsonTemplate,
    flat: Option<Flat>,
}

/// The leaves of a body, as one expression, and the text between them.
#[derive(Clone, Debug)]
struct Flat {
    leaves: Compiled,
    /// The JSON text before each leaf and after the last: one more
    /// than there are leaves.
    between: Vec<String>,
}

impl JsonBody {
    pub fn new(tree: JsonTemplate) -> JsonBody {
        let flat = Flat::of(&tree);
        JsonBody { tree, flat }
    }

    /// The body as JSON text.
    ///
    /// A body whose one evaluation fails is rendered again leaf by leaf,
    /// so that the error names the leaf, as it always has.
    pub fn render_text(&self, scope: &Scope) -> Result<Vec<u8>, String> {
        let Some(flat) = &self.flat else {
            return self.tree.render(scope).map(|v| v.to_string().into_bytes());
        };
        let context = scope.context();
        match contained("", || flat.render(context.clone())) {
            Ok(text) => Ok(text),
            Err(_) => self
                .tree
                .render_in(&context)
                .map(|v| v.to_string().into_bytes()),
        }
    }
}

impl Flat {
    /// `None` when a leaf is a template other than one whole expression,
    /// or nothing is templated.
    fn of(tree: &JsonTemplate) -> Option<Flat> {
        // `parts` alternates: the text before a leaf, the leaf's expression.
        fn walk(t: &JsonTemplate, text: &mut String, parts: &mut Vec<String>) -> Option<()> {
            match t {
                JsonTemplate::Value(v) => text.push_str(&v.to_string()),
                JsonTemplate::Text(t) => {
                    t.whole.as_ref()?;
                    parts.push(text.split_off(0));
                    parts.push(whole_expression(&t.source)?.to_owned());
                }
                JsonTemplate::Array(items) => {
                    text.push('[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            text.push(',');
                        }
                        walk(item, text, parts)?;
                    }
                    text.push(']');
                }
                JsonTemplate::Object(fields) => {
                    text.push('{');
                    for (i, (key, item)) in fields.iter().enumerate() {
                        if i > 0 {
                            text.push(',');
                        }
                        text.push_str(&serde_json::Value::from(key.as_str()).to_string());
                        text.push(':');
                        walk(item, text, parts)?;
                    }
                    text.push('}');
                }
            }
            Some(())
        }
        let mut text = String::new();
        let mut parts = Vec::new();
        walk(tree, &mut text, &mut parts)?;
        if parts.is_empty() {
            return None;
        }
        let mut between = Vec::with_capacity(parts.len() / 2 + 1);
        let mut expressions = Vec::with_capacity(parts.len() / 2);
        for pair in parts.chunks(2) {
            between.push(pair[0].clone());
            expressions.push(format!("({})", pair.get(1)?));
        }
        between.push(text);
        let list = format!("[{}]", expressions.join(", "));
        let leaves = ENV.compile_expression_owned(list).ok()?;
        Some(Flat {
            leaves: Compiled(Arc::new(leaves)),
            between,
        })
    }

    fn render(&self, context: Value) -> Result<Vec<u8>, String> {
        let values = self.leaves.0.eval(context).map_err(|e| describe(&e))?;
        let mut values = values.try_iter().map_err(|e| describe(&e))?;
        let size = self.between.iter().map(String::len).sum::<usize>() + 24 * self.between.len();
        let mut out = Vec::with_capacity(size);
        let (last, before) = self.between.split_last().ok_or("an empty body")?;
        for text in before {
            out.extend_from_slice(text.as_bytes());
            let value = values.next().ok_or("a leaf without a value")?;
            // A string as is; anything else through serde_json's own value,
            // as the tree's rendering does (a map's keys sorted alike).
            let written = match value.as_str() {
                Some(s) => serde_json::to_writer(&mut out, s),
                None => {
                    serde_json::to_value(&value).and_then(|v| serde_json::to_writer(&mut out, &v))
                }
            };
            written.map_err(|e| e.to_string())?;
        }
        out.extend_from_slice(last.as_bytes());
        Ok(out)
    }
}

/// The expression inside a template that is exactly one `{{ … }}`, as
/// [`Text::compile`] finds it.
fn whole_expression(source: &str) -> Option<&str> {
    source
        .trim()
        .strip_prefix("{{")
        .and_then(|r| r.strip_suffix("}}"))
        .filter(|inner| !inner.contains("{{") && !inner.contains("}}"))
        .map(str::trim)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_the_template_engine_is_the_renders_error() {
        let failed: Result<(), String> = contained("{{ x }}", || panic!("boom"));
        assert_eq!(
            failed.unwrap_err(),
            "cannot render `{{ x }}`: the template engine failed (boom)"
        );
    }

    fn scope(seed: Option<u64>) -> Scope {
        let mut vars = BTreeMap::new();
        vars.insert("user".to_owned(), serde_json::json!("ada"));
        vars.insert("order".to_owned(), serde_json::json!({"id": 7}));
        Scope::new(
            Generator::new(seed, "p", 0, "synth-"),
            vars,
            "00112233aabbccdd",
            "p",
            "sandbox",
        )
    }

    #[test]
    fn literals_pass_through_untouched() {
        let t = Text::compile("/orders?x={y}", None).unwrap();
        assert!(t.is_literal());
        assert_eq!(t.render(&scope(None)).unwrap(), "/orders?x={y}");
    }

    #[test]
    fn variables_and_generators_render() {
        let t = Text::compile("/u/{{ vars.user }}/{{ vars.order.id }}/{{ run_id }}", None).unwrap();
        assert_eq!(t.render(&scope(None)).unwrap(), "/u/ada/7/00112233aabbccdd");
        let t = Text::compile("{{ synthetic_id() }}", None).unwrap();
        assert!(t.render(&scope(None)).unwrap().starts_with("synth-"));
    }

    #[test]
    fn whole_expressions_keep_their_type_in_json() {
        let body =
            serde_json::json!({"qty": "{{ int(3, 3) }}", "who": "x-{{ vars.user }}", "n": 1});
        let t = JsonTemplate::compile(&body, None).unwrap();
        let out = t.render(&scope(None)).unwrap();
        assert_eq!(out, serde_json::json!({"qty": 3, "who": "x-ada", "n": 1}));
    }

    #[test]
    fn a_body_of_whole_expressions_is_one_evaluation_with_the_trees_bytes() {
        let body = serde_json::json!({
            "item": "{{ choice(['widget', 'gadget', 'gizmo']) }}",
            "quantity": "{{ zipf(10, 1.2) }}",
            "who": {"name": "{{ name() }}", "email": "{{ email() }}", "tags": ["a\"b", 7, null, true]},
            "ratio": "{{ normal(0, 1) }}",
            "ref": "{{ synthetic_id() }}",
            "map": "{{ {'z': 1, 'a': [1, 2.5, none]} }}",
            "quoted \"key\"": "{{ vars.user ~ '\\n<&>' }}",
            "empty": {}, "none": [], "n": -1.5e300
        });
        let t = JsonBody::new(JsonTemplate::compile(&body, None).unwrap());
        assert!(t.flat.is_some());
        for seed in [1, 42, 7_000] {
            let tree = t.tree.render(&scope(Some(seed))).unwrap().to_string();
            let text = String::from_utf8(t.render_text(&scope(Some(seed))).unwrap()).unwrap();
            assert_eq!(text, tree);
        }
        // The whole body is a template too.
        let t = JsonBody::new(
            JsonTemplate::compile(&serde_json::json!("{{ int(3, 3) }}"), None).unwrap(),
        );
        assert_eq!(t.render_text(&scope(None)).unwrap(), b"3");
    }

    #[test]
    fn a_body_with_a_text_leaf_or_nothing_templated_renders_as_the_tree() {
        let mixed = serde_json::json!({"id": "{{ uuid() }}", "who": "x-{{ vars.user }}"});
        let t = JsonBody::new(JsonTemplate::compile(&mixed, None).unwrap());
        assert!(t.flat.is_none());
        let text = t.render_text(&scope(Some(3))).unwrap();
        assert_eq!(
            text,
            t.tree
                .render(&scope(Some(3)))
                .unwrap()
                .to_string()
                .into_bytes()
        );
        let fixed = serde_json::json!({"a": [1, "b"]});
        let t = JsonBody::new(JsonTemplate::compile(&fixed, None).unwrap());
        assert!(t.flat.is_none());
        assert_eq!(t.render_text(&scope(None)).unwrap(), br#"{"a":[1,"b"]}"#);
    }

    #[test]
    fn a_failing_leaf_of_one_evaluation_is_named_as_the_tree_names_it() {
        let body =
            serde_json::json!({"a": "{{ int(1, 2) }}", "b": "{{ vars.order.missing.deeper }}"});
        let t = JsonBody::new(JsonTemplate::compile(&body, None).unwrap());
        assert!(t.flat.is_some());
        let flat = t.render_text(&scope(None)).unwrap_err();
        let tree = t.tree.render(&scope(None)).unwrap_err();
        assert_eq!(flat, tree);
        assert!(flat.contains("vars.order.missing.deeper"), "{flat}");
    }

    #[test]
    fn same_seed_same_bytes_and_no_seed_differs() {
        let body = serde_json::json!({"id": "{{ uuid() }}", "email": "{{ email() }}", "v": "{{ normal(0, 1) }}"});
        let t = JsonTemplate::compile(&body, None).unwrap();
        let a = t.render(&scope(Some(42))).unwrap().to_string();
        let b = t.render(&scope(Some(42))).unwrap().to_string();
        let c = t.render(&scope(None)).unwrap().to_string();
        let d = t.render(&scope(None)).unwrap().to_string();
        assert_eq!(a, b);
        assert_ne!(c, d);
    }

    #[test]
    fn load_time_checks_name_the_problem() {
        let e = Text::compile("{{ uuidd() }}", None).unwrap_err();
        assert!(e.message.contains("did you mean `uuid`"), "{}", e.message);
        let e = Text::compile("{{ vars.ordr_id }}", Some(&["order_id".to_owned()])).unwrap_err();
        assert!(e.message.contains("vars.order_id"), "{}", e.message);
        let e = Text::compile("{{ 1 + }}", None).unwrap_err();
        assert!(e.message.contains("invalid template"), "{}", e.message);
    }

    #[test]
    fn b64_encodes_the_text_of_a_value() {
        let t = Text::compile("Basic {{ (vars.user ~ ':' ~ 'pw') | b64 }}", None).unwrap();
        assert_eq!(t.render(&scope(None)).unwrap(), "Basic YWRhOnB3");
        let t = Text::compile("{{ vars.order.id | b64 }}", None).unwrap();
        assert_eq!(t.render(&scope(None)).unwrap(), "Nw==");
    }

    #[test]
    fn unknown_filters_and_tests_fail_at_load() {
        let e = Text::compile("{{ vars.user | b46 }}", None).unwrap_err();
        assert_eq!(
            e.message,
            "unknown filter `b46` in template `{{ vars.user | b46 }}`; did you mean `b64`?"
        );
        let e = Text::compile("{% if vars.user is defnied %}x{% endif %}", None).unwrap_err();
        assert!(
            e.message.starts_with("unknown test `defnied`") && e.message.contains("`defined`"),
            "{}",
            e.message
        );
        let e = Text::compile("{% filter uper %}x{% endfilter %}", None).unwrap_err();
        assert!(
            e.message.starts_with("unknown filter `uper`"),
            "{}",
            e.message
        );
        let e = Text::compile("a{{ vars.user | trim | nope(1) }}b", None).unwrap_err();
        assert!(
            e.message.starts_with("unknown filter `nope`"),
            "{}",
            e.message
        );
        // Known ones, and look-alikes that are not filters, pass.
        for ok in [
            "{{ vars.user | upper | default('a|b') }}",
            "{{ vars.user|b64 }}",
            "{%- filter upper -%}x{% endfilter %}",
            "{% if vars.user is not none and vars.user is string %}y{% endif %}",
            "{{ {'a': {'b': '}} | nope'}} | tojson }}",
            "{# a | nope #}{{ vars.user }}",
            "{% raw %}{{ x | nope }}{% endraw %}{{ vars.user | lower }}",
            "{{ vars.this | length }} {{ 'x is nope' }}",
            "é{{ vars.user | title }}ü",
        ] {
            assert!(Text::compile(ok, None).is_ok(), "{ok}");
        }
    }

    /// The suggestion lists name only what the environment has.
    #[test]
    fn every_listed_filter_and_test_exists() {
        let state = ENV.empty_state();
        for name in FILTERS {
            let e = state.apply_filter(name, &[]);
            assert!(
                !e.is_err_and(|e| e.kind() == ErrorKind::UnknownFilter),
                "{name}"
            );
        }
        for name in TESTS {
            let e = state.perform_test(name, &[]);
            assert!(
                !e.is_err_and(|e| e.kind() == ErrorKind::UnknownTest),
                "{name}"
            );
        }
    }

    #[test]
    fn missing_values_fail_at_render() {
        for source in [
            "{{ vars.nope }}",
            "id-{{ vars.nope }}",
            "{{ vars.order.nope }}",
        ] {
            let t = Text::compile(source, None).unwrap();
            let e = t.render(&scope(None)).unwrap_err();
            assert!(e.contains("undefined"), "{source}: {e}");
        }
    }

    /// A whole expression is evaluated from its compiled form, and prints
    /// exactly as the same expression inside a larger template does.
    #[test]
    fn whole_expressions_print_as_templates_do() {
        let s = scope(Some(3));
        for expr in [
            "vars.user",
            "vars.order.id",
            "vars.order",
            "1.5",
            "true",
            "none",
            "[1, 'a']",
            "probe ~ '-' ~ iteration",
        ] {
            let whole = Text::compile(&format!("{{{{ {expr} }}}}"), None).unwrap();
            let inside = Text::compile(&format!("<{{{{ {expr} }}}}>"), None).unwrap();
            assert!(whole.whole.is_some() && inside.whole.is_none(), "{expr}");
            assert_eq!(
                format!("<{}>", whole.render(&s).unwrap()),
                inside.render(&s).unwrap(),
                "{expr}"
            );
        }
    }
}
