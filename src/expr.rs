//! Expressions: CEL, compiled at load time, evaluated against the facts of a
//! run.
//!
//! One language serves every place a user writes logic (`expect` now;
//! captures, `until` and threshold operands later). Compilation checks syntax
//! and that every variable the expression reads exists in its scope, so a
//! typo fails `synthmon check` rather than a probe at 3 a.m. It also checks
//! what can be known before a run: `duration('…')` and `timestamp('…')`
//! literals are parsed, and a value whose type the scope declares ([`Scope`]:
//! each kind declares its own, e.g. `status` is a number for `http`;
//! `timings.*` are durations everywhere) compared with a literal of another
//! type is an error with the literal to write instead. Integers
//! synthmon feeds in (JSON numbers, counts) are CEL `int`s, like the
//! literals they meet (`json.count + 1`). When an assertion fails,
//! [`Expr::check`] explains it by evaluating the operands of the failing
//! comparison, so reports show what was actually seen.
//!
//! One name is known in every scope: [`PREV`], the values the probe's
//! previous run kept (`keep = { NAME = "expr" }`), read as `prev.NAME`.
//! Reading a name the probe does not keep fails the expectation (a typo
//! is heard on the first run); reading a kept name that has no value yet
//! (the first run ever, `--once`) passes, with `no previous value of
//! prev.NAME` as its actual value, unless the expression tests
//! `has(prev.NAME)`, and so handles the first run itself ([`Prev`]).

use cel::common::ast::{CallExpr, EntryExpr, Expr as Node, IdedExpr, LiteralValue, operators};
use cel::objects::{Key, Map};
use cel::{Context, Env, Value};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

/// A compiled `expect` entry and where it was written.
#[derive(Debug)]
pub struct Assertion {
    pub expr: Expr,
    pub location: crate::diag::SourceLocation,
}

/// The standard CEL environment plus the strings extension, built once.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // The strings extension only adds functions; if it ever failed to
    // register, expressions would still run without it.
    let _ = env.add_extension(cel::extensions::strings);
    Arc::new(env)
});

/// Longest rendering of one value in an explanation.
const MAX_SHOWN: usize = 160;

/// The name every scope knows: the previous run's kept values.
pub const PREV: &str = "prev";

/// A compiled expression and the text it came from.
#[derive(Debug)]
pub struct Expr {
    source: String,
    program: cel::Program,
    /// What it reads of `prev`.
    prev: PrevReads,
}

/// The fields of `prev` an expression reads (`prev.X`, `prev['X']`,
/// `has(prev.X)`), and whether it copes with one being absent itself: it
/// tests one with `has()` or reads `prev` as a whole.
#[derive(Debug, Default)]
struct PrevReads {
    fields: Vec<String>,
    guarded: bool,
}

/// Why an expression did not compile.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    pub message: String,
    /// 1-based column of the problem inside a one-line expression.
    pub column: Option<usize>,
}

impl std::fmt::Display for ExprError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The outcome of checking one expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub passed: bool,
    /// What the operands were, e.g. `status = 500`.
    pub actual: String,
}

impl Expr {
    /// Compiles `source`; `scope` names the variables it may read (their
    /// types unknown but for the universal ones, like `timings`).
    pub fn compile(source: &str, scope: &[&str]) -> Result<Expr, ExprError> {
        Expr::compile_in(
            source,
            Scope {
                names: scope,
                types: &[],
            },
        )
    }

    /// Compiles `source` in `scope`: the variables it may read and, where
    /// the kind that fills them knows, their types (a literal of another
    /// type compared with one is a compile error with a hint).
    pub fn compile_in(source: &str, typed: Scope<'_>) -> Result<Expr, ExprError> {
        let scope = typed.names;
        let program = ENV.compile(source).map_err(|e| {
            let first = e.errors.first();
            // ANTLR's "expecting {…}" lists every token class; it is noise
            // to a person fixing a probe.
            let msg = first.map_or("syntax error", |p| {
                p.msg.split(" expecting {").next().unwrap_or(&p.msg)
            });
            let mut chars = msg.chars();
            let msg: String = chars
                .next()
                .map(|c| c.to_lowercase().chain(chars).collect())
                .unwrap_or_default();
            ExprError {
                message: format!("invalid expression `{source}`: {msg}"),
                column: first
                    .filter(|p| p.pos.0 == 1 && p.pos.1 >= 1)
                    .and_then(|p| {
                        let at = p.pos.1.unsigned_abs();
                        // ANTLR's syntax errors count characters, cel's
                        // macro errors (`has(1)`) bytes.
                        if p.msg.starts_with("Syntax error") {
                            Some(at)
                        } else {
                            column_at(source, at - 1)
                        }
                    }),
            }
        })?;
        let mut bound = Vec::new();
        bound_variables(program.expression(), &mut bound);
        for var in program.references().variables() {
            if !scope.contains(&var) && !bound.iter().any(|b| b == var) && var != PREV {
                let mut msg = format!(
                    "unknown variable `{var}` in `{source}` (expected one of {})",
                    scope
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                if let Some(near) = crate::diag::nearest(var, scope.iter().copied()) {
                    let _ = write!(msg, "; did you mean `{near}`?");
                }
                return Err(ExprError {
                    message: msg,
                    column: None,
                });
            }
        }
        if let Some(e) = check_literals(&program, &typed, &bound) {
            return Err(e);
        }
        let prev = prev_reads(program.expression(), &bound);
        Ok(Expr {
            source: source.to_owned(),
            program,
            prev,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression reads `var`.
    pub fn reads(&self, var: &str) -> bool {
        self.program.references().has_variable(var)
    }

    /// The first kept name this expression reads from `prev` without
    /// testing it that has no previous value in `facts` (the first run):
    /// it is then not evaluated. Names the probe does not keep are not
    /// considered here ([`Expr::check`] fails on them).
    pub fn lacks_prev(&self, facts: &Facts) -> Option<&str> {
        if self.prev.guarded {
            return None;
        }
        self.prev
            .fields
            .iter()
            .find(|f| facts.prev.kept.contains(*f) && !facts.prev.has(f))
            .map(String::as_str)
    }

    /// Why reading `prev` cannot work whatever the previous run kept: the
    /// probe keeps no such name (`prev.lst_seq` for `prev.last_seq`).
    fn prev_mistake(&self, facts: &Facts) -> Option<String> {
        let kept = &facts.prev.kept;
        let name = self.prev.fields.iter().find(|f| !kept.contains(*f))?;
        let mut msg = format!("`prev.{name}` is not kept: ");
        if kept.is_empty() {
            let _ = write!(
                msg,
                "this probe keeps nothing (keep = {{ {name} = \"…\" }} would keep it)"
            );
        } else {
            let _ = write!(
                msg,
                "this probe keeps {}",
                kept.iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if let Some(near) = crate::diag::nearest(name, kept.iter().map(String::as_str)) {
                let _ = write!(msg, "; did you mean `prev.{near}`?");
            }
        }
        Some(msg)
    }

    /// Evaluates the expression as an assertion.
    pub fn check(&self, facts: &Facts) -> Check {
        if let Some(why) = self.prev_mistake(facts) {
            return Check {
                passed: false,
                actual: why,
            };
        }
        if let Some(name) = self.lacks_prev(facts) {
            return Check {
                passed: true,
                actual: format!("no previous value of prev.{name}"),
            };
        }
        let ctx = facts.context();
        match self.program.execute(&ctx) {
            Ok(Value::Bool(true)) => Check {
                passed: true,
                actual: String::new(),
            },
            Ok(Value::Bool(false)) => Check {
                passed: false,
                actual: explain(self.program.expression(), &ctx),
            },
            Ok(other) => Check {
                passed: false,
                actual: format!("the expression gave {}, not a bool", show(&other)),
            },
            Err(e) => Check {
                passed: false,
                actual: format!("evaluation failed: {}", execution_error(&e)),
            },
        }
    }
}

impl Expr {
    /// Evaluates the expression to a JSON value (captures, `until`
    /// operands). Errors say what went wrong, for reports.
    pub fn eval(&self, facts: &Facts) -> Result<serde_json::Value, String> {
        if let Some(why) = self.prev_mistake(facts) {
            return Err(format!("`{}`: {why}", self.source));
        }
        if let Some(name) = self.lacks_prev(facts) {
            return Err(format!(
                "`{}`: no previous value of prev.{name} (test it with has(prev.{name}) to give the first run a value)",
                self.source
            ));
        }
        let ctx = facts.context();
        let value = self.program.execute(&ctx).map_err(|e| {
            format!(
                "`{}`: evaluation failed: {}",
                self.source,
                execution_error(&e)
            )
        })?;
        value
            .json()
            .map_err(|e| format!("`{}` gave a value JSON cannot hold: {e:?}", self.source))
    }
}

/// Named values an expression can read.
#[derive(Default)]
pub struct Facts {
    values: Vec<(&'static str, Value)>,
    /// What `prev` reads; nothing kept unless [`Facts::set_prev`] says.
    prev: Prev,
}

impl Facts {
    /// Makes `name` readable as `value`; a `uint` in it that fits an `int`
    /// becomes one (see `plain_ints`).
    pub fn set(&mut self, name: &'static str, value: impl Into<Value>) {
        self.values.push((name, plain_ints(value.into())));
    }

    /// Makes the previous run's kept values readable as `prev`.
    pub fn set_prev(&mut self, prev: Prev) {
        self.prev = prev;
    }

    fn context(&self) -> Context<'_, '_> {
        let mut ctx = Context::with_env(ENV.clone());
        // `find(text, regex)`: the first capture group of the first match
        // (the whole match when the regex has no group), or "" when none.
        let _ = ctx.add_function("find", find);
        ctx.add_variable_from_value(PREV, self.prev.value.clone());
        for (name, value) in &self.values {
            ctx.add_variable_from_value(*name, value.clone());
        }
        ctx
    }
}

/// `prev` as expressions read it: the names a probe keeps and the values
/// its previous run kept of them (values of names no longer kept are left
/// out). Cheap to clone: the values are one CEL map.
#[derive(Clone, Debug)]
pub struct Prev {
    kept: Vec<String>,
    value: Value,
}

impl Default for Prev {
    fn default() -> Self {
        Prev {
            kept: Vec::new(),
            value: Value::Map(Map {
                map: Arc::new(HashMap::new()),
            }),
        }
    }
}

impl Prev {
    /// `kept`: the probe's `keep` names; `values`: what the previous run
    /// kept (`None`: there was no previous run, or it is not known).
    pub fn new<'a>(
        kept: impl IntoIterator<Item = &'a str>,
        values: Option<&BTreeMap<String, serde_json::Value>>,
    ) -> Prev {
        let kept: Vec<String> = kept.into_iter().map(str::to_owned).collect();
        let map: HashMap<String, Value> = values
            .into_iter()
            .flatten()
            .filter(|(name, _)| kept.contains(name))
            .map(|(name, v)| (name.clone(), json_value(v)))
            .collect();
        Prev {
            kept,
            value: map.into(),
        }
    }

    /// Whether the previous run kept a value of `name`.
    fn has(&self, name: &str) -> bool {
        match &self.value {
            Value::Map(m) => m.map.contains_key(&Key::String(Arc::new(name.to_owned()))),
            _ => false,
        }
    }
}

/// What `node` reads of `prev` (see [`PrevReads`]). A comprehension
/// variable named `prev` shadows it: nothing is then known, so nothing is
/// checked.
fn prev_reads(node: &IdedExpr, bound: &[String]) -> PrevReads {
    let mut reads = PrevReads::default();
    if bound.iter().any(|b| b == PREV) {
        reads.guarded = true;
        return reads;
    }
    let is_prev = |n: &IdedExpr| matches!(&n.expr, Node::Ident(name) if name == PREV);
    let mut nodes = Vec::new();
    every_node(node, &mut nodes);
    let mut fields_read = 0;
    for n in &nodes {
        match &n.expr {
            Node::Select(sel) if is_prev(&sel.operand) => {
                fields_read += 1;
                reads.guarded |= sel.test;
                reads.fields.push(sel.field.clone());
            }
            Node::Call(call) if call.func_name == operators::INDEX => {
                if let [operand, key] = call.args.as_slice() {
                    if is_prev(operand) {
                        if let Node::Literal(LiteralValue::String(key)) = &key.expr {
                            fields_read += 1;
                            reads.fields.push(key.inner().to_owned());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    // `prev` read as a whole (`size(prev)`, `prev[vars.name]`): the
    // expression deals with what is there.
    let whole = nodes.iter().filter(|n| is_prev(n)).count();
    reads.guarded |= whole > fields_read;
    reads.fields.sort();
    reads.fields.dedup();
    reads
}

fn find(text: Arc<String>, pattern: Arc<String>) -> Result<Value, cel::ExecutionError> {
    let re = regex::Regex::new(&pattern)
        .map_err(|e| cel::ExecutionError::function_error("find", e.to_string()))?;
    let found = re
        .captures(&text)
        .and_then(|c| c.get(1).or_else(|| c.get(0)))
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    Ok(Value::String(Arc::new(found)))
}

/// How deep serde_json nests before it gives up with "recursion limit
/// exceeded": its parser allows 128 levels of recursion, the outermost
/// array or object included, so 127 nested ones parse. Pinned by a test.
pub const JSON_MAX_DEPTH: usize = 127;

/// `text` as an expression's `json` reads it, or why it is not JSON, in
/// words and located: `{what} is not JSON: expected value at line 1 column
/// 1` (`what`: "the body", "stdout", "message 2").
///
/// serde_json's recursion limit bounds the parse, so a document nested
/// 100,000 deep fails after [`JSON_MAX_DEPTH`] levels without recursing
/// further, and [`json_value`] (which recurses) only ever sees a document
/// within that depth.
pub fn parse_json(text: &[u8], what: &str) -> Result<Value, String> {
    if text.trim_ascii().is_empty() {
        return Err(format!("{what} is not JSON: it is empty"));
    }
    match serde_json::from_slice::<serde_json::Value>(text) {
        Ok(doc) => Ok(json_value(&doc)),
        // serde_json has no public error code for this one, only its text.
        Err(e) if e.to_string().starts_with("recursion limit exceeded") => Err(format!(
            "{what} is not JSON: nesting deeper than {JSON_MAX_DEPTH} levels ({e})"
        )),
        Err(e) => Err(format!("{what} is not JSON: {e}")),
    }
}

/// Converts JSON into a CEL value. An integer is an `int`, like the
/// literals it meets (`json.count + 1`), or a `uint` above `i64::MAX`; any
/// other number is a `double`. (`cel::to_value` makes every non-negative
/// integer a `uint`, and CEL has no arithmetic between `uint` and `int`.)
pub fn json_value(v: &serde_json::Value) -> Value {
    use serde_json::Value as Json;
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            (None, None) => n.as_f64().map_or(Value::Null, Value::Float),
        },
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(items) => Value::List(Arc::new(items.iter().map(json_value).collect())),
        Json::Object(fields) => fields
            .iter()
            .map(|(k, v)| (k.clone(), json_value(v)))
            .collect::<HashMap<String, Value>>()
            .into(),
    }
}

/// `value` with every `uint` that fits an `int` made one, in lists and maps
/// (keys included) too: CEL has no arithmetic between the two and literals
/// are `int`s, so `count + 1` would otherwise fail on a count given as `u64`.
/// Untouched (not copied) when it holds no such `uint`.
fn plain_ints(value: Value) -> Value {
    if !has_small_uint(&value) {
        return value;
    }
    match value {
        Value::UInt(u) => i64::try_from(u).map_or(Value::UInt(u), Value::Int),
        Value::List(items) => {
            Value::List(Arc::new(items.iter().cloned().map(plain_ints).collect()))
        }
        Value::Map(m) => Value::Map(Map {
            map: Arc::new(
                m.map
                    .iter()
                    .map(|(k, v)| (plain_key(k.clone()), plain_ints(v.clone())))
                    .collect(),
            ),
        }),
        other => other,
    }
}

fn plain_key(key: Key) -> Key {
    match key {
        Key::Uint(u) => i64::try_from(u).map_or(Key::Uint(u), Key::Int),
        other => other,
    }
}

/// Whether [`plain_ints`] would change `value`.
fn has_small_uint(value: &Value) -> bool {
    match value {
        Value::UInt(u) => i64::try_from(*u).is_ok(),
        Value::List(items) => items.iter().any(has_small_uint),
        Value::Map(m) => m.map.iter().any(|(k, v)| {
            matches!(k, Key::Uint(u) if i64::try_from(*u).is_ok()) || has_small_uint(v)
        }),
        _ => false,
    }
}

/// A CEL duration from a std duration.
pub fn duration_value(d: std::time::Duration) -> Value {
    Value::Duration(chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX))
}

/// Names bound by comprehensions (`all(i, …)`, `map(x, …)`): they are
/// local to the expression, not variables it needs from outside.
fn bound_variables(node: &IdedExpr, out: &mut Vec<String>) {
    match &node.expr {
        Node::Comprehension(c) => {
            out.push(c.iter_var.clone());
            out.extend(c.iter_var2.clone());
            out.push(c.accu_var.clone());
            for child in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                bound_variables(child, out);
            }
        }
        Node::Call(call) => {
            call.target.iter().for_each(|t| bound_variables(t, out));
            call.args.iter().for_each(|a| bound_variables(a, out));
        }
        Node::Select(sel) => bound_variables(&sel.operand, out),
        Node::List(list) => list.elements.iter().for_each(|e| bound_variables(e, out)),
        _ => {}
    }
}

/// The type of a value, as far as comparing it with a literal goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    /// `int`, `uint` or `double`: CEL compares them with each other.
    Number,
    String,
    Bool,
    Bytes,
    Duration,
    Timestamp,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Number => "number",
            Type::String => "string",
            Type::Bool => "bool",
            Type::Bytes => "bytes",
            Type::Duration => "duration",
            Type::Timestamp => "timestamp",
        }
    }
}

/// Typed names: `(path, type)`, a `*` in a path standing for any field of
/// a map (`headers.*`). Each kind declares the types of what it puts in
/// scope next to its scope, so this module knows no kind.
pub type Types<'a> = &'a [(&'a str, Type)];

/// Where an expression is compiled: the names it may read and the types
/// known of them (several tables: a kind's own and shared ones, like the
/// net layer's `tls` facts). Values may also be null (no TLS, no close
/// frame yet); a `null` literal is never a mismatch.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    pub names: &'a [&'a str],
    pub types: &'a [Types<'a>],
}

/// Types every kind shares: the phase timings of `net::clock::Clock` (and
/// `http`'s own phases) are durations.
const UNIVERSAL: Types<'static> = &[("timings.*", Type::Duration)];

/// The type `scope` gives `path`, if it knows one.
fn known_type(path: &[&str], scope: &Scope<'_>) -> Option<Type> {
    scope
        .types
        .iter()
        .chain(std::iter::once(&UNIVERSAL))
        .flat_map(|table| table.iter())
        .find(|(row, _)| {
            row.split('.').count() == path.len()
                && row.split('.').zip(path).all(|(r, p)| r == "*" || r == *p)
        })
        .map(|&(_, ty)| ty)
}

/// `timings.total`, `headers['server']`: a variable of the scope and the
/// fields or constant keys read from it. `None` for anything else, a name
/// a comprehension binds included (it may shadow a variable).
fn path_of<'a>(node: &'a IdedExpr, scope: &[&str], bound: &[String]) -> Option<Vec<&'a str>> {
    match &node.expr {
        Node::Ident(name) => (scope.contains(&name.as_str()) && !bound.iter().any(|b| b == name))
            .then(|| vec![name.as_str()]),
        Node::Select(sel) if !sel.test => {
            let mut path = path_of(&sel.operand, scope, bound)?;
            path.push(&sel.field);
            Some(path)
        }
        Node::Call(call) if call.func_name == operators::INDEX => match call.args.as_slice() {
            [operand, key] => {
                let Node::Literal(LiteralValue::String(key)) = &key.expr else {
                    return None;
                };
                let mut path = path_of(operand, scope, bound)?;
                path.push(key.inner());
                Some(path)
            }
            _ => None,
        },
        _ => None,
    }
}

/// A literal operand: its type, how it is written in a message, and its
/// bare value (a string's content, a number's digits) for a hint.
struct Literal {
    ty: Type,
    text: String,
    bare: String,
}

fn literal_of(node: &IdedExpr) -> Option<Literal> {
    let lit = |ty, text: String, bare: String| Some(Literal { ty, text, bare });
    match &node.expr {
        Node::Literal(value) => match value {
            LiteralValue::Int(i) => lit(Type::Number, i.inner().to_string(), i.inner().to_string()),
            LiteralValue::UInt(u) => lit(
                Type::Number,
                format!("{}u", u.inner()),
                u.inner().to_string(),
            ),
            LiteralValue::Double(f) => lit(
                Type::Number,
                format!("{:?}", f.inner()),
                format!("{:?}", f.inner()),
            ),
            LiteralValue::String(s) => lit(Type::String, quote(s.inner()), s.inner().to_owned()),
            LiteralValue::Boolean(b) => {
                lit(Type::Bool, b.inner().to_string(), b.inner().to_string())
            }
            LiteralValue::Bytes(b) => {
                let text = String::from_utf8_lossy(b.inner()).into_owned();
                lit(Type::Bytes, format!("b{}", quote(&text)), text)
            }
            LiteralValue::Null => None,
        },
        Node::Call(call) if call.target.is_none() => {
            match (call.func_name.as_str(), call.args.as_slice()) {
                (operators::NEGATE, [arg]) => {
                    let inner = literal_of(arg).filter(|l| l.ty == Type::Number)?;
                    lit(
                        Type::Number,
                        format!("-{}", inner.text),
                        format!("-{}", inner.bare),
                    )
                }
                (name @ ("duration" | "timestamp"), [arg]) => {
                    let inner = literal_of(arg)?;
                    let ty = if name == "duration" {
                        Type::Duration
                    } else {
                        Type::Timestamp
                    };
                    lit(ty, format!("{name}({})", inner.text), inner.bare)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// `'text'` as CEL writes it.
fn quote(text: &str) -> String {
    if text.contains('\'') {
        format!("{text:?}")
    } else {
        format!("'{text}'")
    }
}

/// What to write instead of `lit` where a `known` value is expected.
fn hint(known: Type, lit: &Literal) -> Option<String> {
    let bare = lit.bare.as_str();
    let numeric = !bare.is_empty()
        && bare
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-'))
        && bare.parse::<f64>().is_ok();
    match (known, lit.ty) {
        (Type::Number, Type::String) if numeric => Some(bare.to_owned()),
        (Type::String, Type::Number) => Some(quote(bare)),
        (Type::Bool, Type::String) if matches!(bare, "true" | "false") => Some(bare.to_owned()),
        (Type::Duration, Type::Number) => Some(format!("duration('{bare}ms')")),
        (Type::Duration, Type::String) if is_duration_text(bare) => {
            Some(format!("duration({})", quote(bare)))
        }
        (Type::Duration, Type::String) if numeric => Some(format!("duration('{bare}ms')")),
        (Type::Timestamp, Type::String) => Some(format!("timestamp({})", quote(bare))),
        _ => None,
    }
}

/// The mistake in comparing `value` with `literal`, when `value` has a type
/// the scope knows and the literal is clearly of another.
fn mismatch(
    value: &IdedExpr,
    literal: &IdedExpr,
    scope: &Scope<'_>,
    bound: &[String],
) -> Option<String> {
    let known = known_type(&path_of(value, scope.names, bound)?, scope)?;
    let lit = literal_of(literal)?;
    if lit.ty == known {
        return None;
    }
    let mut msg = format!(
        "`{}` is a {}, compared with the {} {}",
        render(value),
        known.name(),
        lit.ty.name(),
        lit.text
    );
    if let Some(h) = hint(known, &lit) {
        let _ = write!(msg, " (write {h})");
    }
    Some(msg)
}

/// Whether all of `text` is a duration in CEL's syntax: `0`, or an
/// optional `-` and number–unit pairs (`1h30m`, `1.5s`, `300ms`). The
/// numbers are read as CEL's parser reads them (a float, exponent
/// allowed); CEL itself ignores what follows the last pair, which is a
/// mistake here (`300ms junk`).
fn is_duration_text(text: &str) -> bool {
    let rest = text.strip_prefix('-').unwrap_or(text);
    if rest == "0" {
        return true;
    }
    let mut rest = rest.as_bytes();
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let mut i = usize::from(matches!(rest.first(), Some(b'+' | b'-')));
        let int = rest[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        i += int;
        let mut frac = 0;
        if rest.get(i) == Some(&b'.') {
            frac = rest[i + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            i += 1 + frac;
        }
        if int + frac == 0 {
            return false;
        }
        if matches!(rest.get(i), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(rest.get(i + 1), Some(b'+' | b'-')));
            let exp = rest[(i + 1 + sign).min(rest.len())..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            if exp > 0 {
                i += 1 + sign + exp;
            }
        }
        rest = &rest[i..];
        match [&b"ns"[..], b"us", b"ms", b"h", b"m", b"s"]
            .into_iter()
            .find(|unit| rest.starts_with(unit))
        {
            Some(unit) => rest = &rest[unit.len()..],
            None => return false,
        }
    }
    true
}

/// Why a `duration('…')` or `timestamp('…')` of a constant `text` cannot be
/// evaluated, judged by CEL's own functions (and, for a duration, by
/// [`is_duration_text`], since CEL ignores trailing text).
fn constant_error(name: &str, text: &str, call: &IdedExpr) -> Option<String> {
    let evaluated = Context::with_env(ENV.clone()).resolve(call);
    match name {
        "duration" if !is_duration_text(text) => Some(format!(
            "invalid duration `{text}`: expected a number and a unit like `300ms` or `1.5s`"
        )),
        "duration" => evaluated
            .is_err()
            .then(|| format!("invalid duration `{text}`: out of range")),
        _ => evaluated.is_err().then(|| {
            format!(
                "invalid timestamp `{text}`: expected an RFC 3339 time like `2030-01-31T00:00:00Z`"
            )
        }),
    }
}

/// Mistakes in a program's literals that need no run to see: a
/// `duration('…')` or `timestamp('…')` that cannot be parsed, then a value
/// of a known type compared with a literal of another (`status == '200'`).
/// The leftmost of the first sort is reported, at its column.
fn check_literals(
    program: &cel::Program,
    scope: &Scope<'_>,
    bound: &[String],
) -> Option<ExprError> {
    let source = &program.source_info().source;
    let column = |node: &IdedExpr| {
        let mut nodes = Vec::new();
        every_node(node, &mut nodes);
        nodes
            .iter()
            .filter_map(|n| start_of(n, program.source_info()))
            .min()
            .and_then(|start| column_at(source, start))
    };
    let mut nodes = Vec::new();
    every_node(program.expression(), &mut nodes);
    let mut constants = Vec::new();
    let mut mismatches = Vec::new();
    for node in nodes {
        let Node::Call(call) = &node.expr else {
            continue;
        };
        match (call.func_name.as_str(), call.args.as_slice()) {
            (name @ ("duration" | "timestamp"), [arg]) if call.target.is_none() => {
                if let Node::Literal(LiteralValue::String(text)) = &arg.expr {
                    if let Some(msg) = constant_error(name, text.inner(), node) {
                        constants.push((column(arg), msg));
                    }
                }
            }
            (
                operators::EQUALS
                | operators::NOT_EQUALS
                | operators::LESS
                | operators::LESS_EQUALS
                | operators::GREATER
                | operators::GREATER_EQUALS,
                [a, b],
            ) => {
                for (value, literal) in [(a, b), (b, a)] {
                    if let Some(msg) = mismatch(value, literal, scope, bound) {
                        mismatches.push((column(literal), msg));
                    }
                }
            }
            (operators::IN, [value, list]) => {
                if let Node::List(list) = &list.expr {
                    for element in &list.elements {
                        if let Some(msg) = mismatch(value, element, scope, bound) {
                            mismatches.push((column(element), msg));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let leftmost = |found: Vec<(Option<usize>, String)>| {
        found
            .into_iter()
            .min_by_key(|(column, _)| column.unwrap_or(usize::MAX))
            .map(|(column, message)| ExprError { message, column })
    };
    leftmost(constants).or_else(|| leftmost(mismatches))
}

/// The byte offset where `node` itself starts. A call of a global
/// function is recorded at its `(`; its name comes before.
fn start_of(node: &IdedExpr, info: &cel::common::ast::SourceInfo) -> Option<usize> {
    let (start, _) = info.offset_for(node.id)?;
    let start = start as usize;
    if let Node::Call(call) = &node.expr {
        let before = info.source.get(..start)?;
        if call.target.is_none() && before.ends_with(call.func_name.as_str()) {
            return Some(start - call.func_name.len());
        }
    }
    Some(start)
}

/// The 1-based column (in characters) of byte `offset` of a one-line
/// `source` (`None` past a line break: the column would be on another
/// line).
fn column_at(source: &str, offset: usize) -> Option<usize> {
    let before = source.get(..offset)?;
    (!before.contains('\n')).then(|| before.chars().count() + 1)
}

/// `node` and everything under it, parents first.
fn every_node<'a>(node: &'a IdedExpr, out: &mut Vec<&'a IdedExpr>) {
    out.push(node);
    match &node.expr {
        Node::Call(call) => {
            call.target.iter().for_each(|t| every_node(t, out));
            call.args.iter().for_each(|a| every_node(a, out));
        }
        Node::Comprehension(c) => {
            for child in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                every_node(child, out);
            }
        }
        Node::Select(sel) => every_node(&sel.operand, out),
        Node::List(list) => list.elements.iter().for_each(|e| every_node(e, out)),
        Node::Map(map) => map.entries.iter().for_each(|e| entry_nodes(&e.expr, out)),
        Node::Struct(st) => st.entries.iter().for_each(|e| entry_nodes(&e.expr, out)),
        Node::Ident(_) | Node::Literal(_) | Node::Unspecified => {}
    }
}

fn entry_nodes<'a>(entry: &'a EntryExpr, out: &mut Vec<&'a IdedExpr>) {
    match entry {
        EntryExpr::MapEntry(e) => {
            every_node(&e.key, out);
            every_node(&e.value, out);
        }
        EntryExpr::StructField(f) => every_node(&f.value, out),
    }
}

/// An evaluation error in words: CEL's duration parser reports a bad text
/// as a Rust debug string (`Parsing Error: Error { input: " ms", … }`).
fn execution_error(e: &cel::ExecutionError) -> String {
    match e {
        cel::ExecutionError::FunctionError { function, .. } if function == "duration" => {
            "duration(): expected a number and a unit like `300ms` or `1.5s`".into()
        }
        other => other.to_string(),
    }
}

/// Says why a false expression is false, in terms of the values involved.
fn explain(node: &IdedExpr, ctx: &Context) -> String {
    let Node::Call(call) = &node.expr else {
        return describe(node, ctx);
    };
    match (call.func_name.as_str(), call.args.as_slice()) {
        (operators::LOGICAL_AND, [a, b]) => {
            // Explain the operand that is false.
            if matches!(ctx.resolve(a), Ok(Value::Bool(false))) {
                explain(a, ctx)
            } else {
                explain(b, ctx)
            }
        }
        (operators::LOGICAL_OR, [a, b]) => format!("{}; {}", explain(a, ctx), explain(b, ctx)),
        (operators::LOGICAL_NOT, [a]) => describe(a, ctx),
        (
            operators::EQUALS
            | operators::NOT_EQUALS
            | operators::LESS
            | operators::LESS_EQUALS
            | operators::GREATER
            | operators::GREATER_EQUALS
            | operators::IN,
            [left, right],
        ) => {
            let mut out = describe(left, ctx);
            if !is_literal(right) {
                let _ = write!(out, ", {}", describe(right, ctx));
            }
            out
        }
        _ => match &call.target {
            Some(target) => describe(target, ctx),
            None => call
                .args
                .iter()
                .filter(|a| !is_literal(a))
                .map(|a| describe(a, ctx))
                .collect::<Vec<_>>()
                .join(", "),
        },
    }
}

/// `text = value` for one sub-expression.
fn describe(node: &IdedExpr, ctx: &Context) -> String {
    let value = match ctx.resolve(node) {
        Ok(v) => show(&v),
        Err(e) => format!("<{e}>"),
    };
    format!("{} = {value}", render(node))
}

fn is_literal(node: &IdedExpr) -> bool {
    match &node.expr {
        Node::Literal(_) => true,
        Node::List(list) => list.elements.iter().all(is_literal),
        // A function of constants, like `duration('100ms')`, is a constant.
        Node::Call(call) => call.target.is_none() && call.args.iter().all(is_literal),
        _ => false,
    }
}

/// Writes a sub-expression back as CEL text (for the common node kinds;
/// others become `…`).
fn render(node: &IdedExpr) -> String {
    match &node.expr {
        Node::Ident(name) => name.clone(),
        Node::Select(sel) if sel.test => format!("has({}.{})", render(&sel.operand), sel.field),
        Node::Select(sel) => format!("{}.{}", render(&sel.operand), sel.field),
        Node::Literal(_) => {
            // Literals print as their value.
            match cel::Context::default().resolve(node) {
                Ok(v) => show(&v),
                Err(_) => "…".into(),
            }
        }
        Node::List(list) => format!(
            "[{}]",
            list.elements
                .iter()
                .map(render)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Node::Call(call) => render_call(call),
        _ => "…".into(),
    }
}

fn render_call(call: &CallExpr) -> String {
    let args = call.args.iter().map(render).collect::<Vec<_>>();
    match (call.func_name.as_str(), args.as_slice()) {
        (operators::INDEX, [a, b]) => format!("{a}[{b}]"),
        (operators::LOGICAL_NOT, [a]) => format!("!{a}"),
        (op, [a, b]) if op.starts_with('_') && op.ends_with('_') => {
            format!("{a} {} {b}", op.trim_matches('_'))
        }
        (operators::IN, [a, b]) => format!("{a} in {b}"),
        (name, _) => match &call.target {
            Some(t) => format!("{}.{name}({})", render(t), args.join(", ")),
            None => format!("{name}({})", args.join(", ")),
        },
    }
}

/// A short, readable rendering of a value.
pub fn show(v: &Value) -> String {
    let full = match v {
        Value::String(s) => format!("{:?}", s.as_str()),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        Value::Duration(d) => {
            let ms = d
                .num_microseconds()
                .map_or(f64::INFINITY, |us| us as f64 / 1000.0);
            format!("{ms:.3}ms")
        }
        Value::List(items) => format!(
            "[{}]",
            items.iter().map(show).collect::<Vec<_>>().join(", ")
        ),
        Value::Map(map) => {
            let mut entries: Vec<String> = map
                .map
                .iter()
                .map(|(k, v)| format!("{}: {}", show(&Value::from(k.clone())), show(v)))
                .collect();
            entries.sort();
            format!("{{{}}}", entries.join(", "))
        }
        other => format!("{other:?}"),
    };
    truncate(full, MAX_SHOWN)
}

fn truncate(mut s: String, max: usize) -> String {
    if s.chars().count() > max {
        let cut = s.char_indices().nth(max).map_or(s.len(), |(i, _)| i);
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SCOPE: &[&str] = &[
        "status", "headers", "body", "json", "timings", "tls", "vars",
    ];

    fn facts() -> Facts {
        let mut f = Facts::default();
        f.set("status", 500i64);
        f.set(
            "headers",
            std::collections::HashMap::from([(
                "content-type".to_string(),
                "application/json; charset=utf-8".to_string(),
            )]),
        );
        f.set(
            "body",
            r#"{"id":"ord_1","items":[1,2],"ok":true}"#.to_string(),
        );
        let json: serde_json::Value = serde_json::from_str(
            r#"{"id":"ord_1","items":[1,2],"ok":true,"n":0,"count":3,"price":9.5,"big":18446744073709551615}"#,
        )
        .unwrap();
        f.set("json", json_value(&json));
        f.set(
            "timings",
            std::collections::HashMap::from([(
                "total".to_string(),
                duration_value(std::time::Duration::from_millis(250)),
            )]),
        );
        f
    }

    fn check(src: &str) -> Check {
        Expr::compile(src, SCOPE).unwrap().check(&facts())
    }

    #[test]
    fn issue_examples_evaluate() {
        for (src, want) in [
            ("status == 200", false),
            ("status == 500", true),
            ("status in [500, 503]", true),
            ("headers['content-type'].contains('json')", true),
            ("body.contains('ord_1')", true),
            ("json.id == 'ord_1'", true),
            ("has(json.id)", true),
            ("has(json.missing)", false),
            ("size(json.items) > 0", true),
            ("json.items.size() > 0", true),
            ("timings.total < duration('300ms')", true),
            ("timings.total < duration('100ms')", false),
            ("json.ok && json.n == 0", true),
            ("json.id.startsWith('ord_')", true),
        ] {
            assert_eq!(check(src).passed, want, "{src}");
        }
    }

    #[test]
    fn failure_explains_the_operands() {
        assert_eq!(check("status == 200").actual, "status = 500");
        assert_eq!(check("status in [200, 201]").actual, "status = 500");
        assert_eq!(check("json.n > 0").actual, "json.n = 0");
        assert_eq!(
            check("timings.total < duration('100ms')").actual,
            "timings.total = 250.000ms"
        );
        assert_eq!(
            check("json.ok && status < 400").actual,
            "status = 500",
            "the false side of && is explained"
        );
        assert!(
            check("body.contains('nope')")
                .actual
                .starts_with("body = \"{")
        );
    }

    #[test]
    fn evaluation_error_is_a_failed_check() {
        let c = check("json.nothing.deeper == 1");
        assert!(!c.passed);
        assert!(c.actual.starts_with("evaluation failed"), "{}", c.actual);
        let c = check("status");
        assert!(!c.passed);
        assert!(c.actual.contains("not a bool"), "{}", c.actual);
    }

    #[test]
    fn compile_errors_are_clear() {
        let e = Expr::compile("status ==", SCOPE).unwrap_err();
        assert_eq!(
            e.message,
            "invalid expression `status ==`: syntax error: mismatched input '<EOF>'"
        );
        assert_eq!(e.column, Some(10));
        let e = Expr::compile("stauts == 200", SCOPE).unwrap_err().message;
        assert!(e.contains("unknown variable `stauts`"), "{e}");
        assert!(e.contains("did you mean `status`?"), "{e}");
        assert!(Expr::compile("json.items.all(i, i > 0)", SCOPE).is_ok());
    }

    /// Types like the kinds declare them (`probe::*::SCOPE`), picked by a
    /// name only that kind's scope has, for the type-checking tests.
    fn typed<'a>(names: &'a [&'a str]) -> Scope<'a> {
        const HTTP: Types<'static> = &[
            ("status", Type::Number),
            ("headers.*", Type::String),
            ("body", Type::String),
        ];
        const MESSAGES: Types<'static> = &[
            ("count", Type::Number),
            ("first_message", Type::Duration),
            ("max_gap", Type::Duration),
            ("status", Type::Number),
            ("close.code", Type::Number),
        ];
        const STREAM: Types<'static> = &[
            ("events", Type::Number),
            ("first_event", Type::Duration),
            ("max_gap", Type::Duration),
            ("reconnected", Type::Bool),
            ("status", Type::Number),
        ];
        const DNS: Types<'static> = &[("rcode", Type::String)];
        const GRPC: Types<'static> = &[("status", Type::String), ("grpc_code", Type::Number)];
        const TLS: Types<'static> = &[
            ("tls.days_left", Type::Number),
            ("tls.not_after", Type::Timestamp),
        ];
        let kinds: [(&str, &'static [Types<'static>]); 5] = [
            ("headers", &[HTTP, TLS]),
            ("messages", &[MESSAGES]),
            ("events", &[STREAM]),
            ("rcode", &[DNS]),
            ("grpc_code", &[GRPC]),
        ];
        let table = kinds
            .into_iter()
            .find(|(marker, _)| names.contains(marker))
            .map_or(&[] as &[Types<'static>], |(_, tables)| tables);
        Scope {
            names,
            types: table,
        }
    }

    fn compile_error(src: &str, scope: &[&str]) -> ExprError {
        match Expr::compile_in(src, typed(scope)) {
            Ok(_) => panic!("`{src}` compiled"),
            Err(e) => e,
        }
    }

    /// The 1-based column of `needle` in `src`.
    fn column_of(src: &str, needle: &str) -> Option<usize> {
        src.find(needle).map(|i| src[..i].chars().count() + 1)
    }

    #[test]
    fn cel_arithmetic_mixing_uint_and_int_fails_on_json_numbers_and_captures() {
        for src in [
            "json.count + 1 == 4",
            "json.count - 1 == 2",
            "json.count * 2 == 6",
            "json.items[0] + json.items[1] == 3",
            "json.items.map(i, i + 1) == [2, 3]",
            "status + 1 == 501",
            "json.items.size() > 0",
            "size(json.items) + 1 == 3",
            "json.count > 2",
            "json.count == 3",
            "json.count == 3u",
            "json.count < 3.5",
            "json.price + 0.5 == 10.0",
        ] {
            let c = check(src);
            assert!(c.passed, "{src}: {}", c.actual);
        }
        // Each JSON number keeps what it is: an `int`, a `double`, or a
        // `uint` when no `int` holds it.
        let json: serde_json::Value =
            serde_json::from_str(r#"[3, -3, 2.5, 18446744073709551615]"#).unwrap();
        assert_eq!(
            json_value(&json),
            Value::List(Arc::new(vec![
                Value::Int(3),
                Value::Int(-3),
                Value::Float(2.5),
                Value::UInt(u64::MAX),
            ]))
        );
        // A capture is evaluated to JSON and read back as `vars.NAME`.
        let count = Expr::compile("json.count", SCOPE)
            .unwrap()
            .eval(&facts())
            .unwrap();
        let mut f = Facts::default();
        f.set(
            "vars",
            std::collections::HashMap::from([("count".to_string(), json_value(&count))]),
        );
        let c = Expr::compile("vars.count + 1 == 4", &["vars"])
            .unwrap()
            .check(&f);
        assert!(c.passed, "{}", c.actual);
        // Whatever a kind sets as a `uint` (a status, a size, a count) is
        // an `int` too, inside lists and maps included.
        let mut f = Facts::default();
        f.set("status", Value::UInt(200));
        f.set("sizes", Value::List(Arc::new(vec![Value::UInt(7)])));
        f.set(
            "counts",
            std::collections::HashMap::from([("events".to_string(), Value::UInt(2))]),
        );
        f.set("huge", Value::UInt(u64::MAX));
        for src in [
            "status + 1 == 201",
            "sizes[0] + 1 == 8",
            "counts.events + 1 == 3",
            "huge == 18446744073709551615u",
        ] {
            let c = Expr::compile(src, &["status", "sizes", "counts", "huge"])
                .unwrap()
                .check(&f);
            assert!(c.passed, "{src}: {}", c.actual);
        }
    }

    #[test]
    fn duration_300_ms_prints_a_raw_rust_debug_string() {
        let src = "timings.total < duration('300 ms')";
        let e = compile_error(src, SCOPE);
        assert_eq!(
            e.message,
            "invalid duration `300 ms`: expected a number and a unit like `300ms` or `1.5s`"
        );
        assert_eq!(e.column, column_of(src, "'300 ms'"));
        for bad in ["300", "ms", "", "1.5 s", "300ms junk", "1s5", "5d", "-"] {
            let src = format!("timings.total < duration('{bad}')");
            let e = compile_error(&src, SCOPE);
            assert_eq!(
                e.message,
                format!(
                    "invalid duration `{bad}`: expected a number and a unit like `300ms` or `1.5s`"
                ),
                "{src}"
            );
            assert!(!e.message.contains("Error {"), "{}", e.message);
        }
        let e = compile_error("timings.total < duration('9999999999h')", SCOPE);
        assert_eq!(e.message, "invalid duration `9999999999h`: out of range");
        let src = "tls.not_after > timestamp('2030-01-31')";
        let e = compile_error(src, SCOPE);
        assert_eq!(
            e.message,
            "invalid timestamp `2030-01-31`: expected an RFC 3339 time like `2030-01-31T00:00:00Z`"
        );
        assert_eq!(e.column, column_of(src, "'2030"));
        // Inside a comprehension and a list, too.
        assert!(Expr::compile("[duration('1 s')].size() == 1", SCOPE).is_err());
        assert!(Expr::compile("json.items.all(i, duration('x') > duration('1s'))", SCOPE).is_err());
        for good in [
            "300ms", "1.5s", "1h30m", "0", "-1.5s", "2m", "10us", "5ns", "0.5h",
        ] {
            let src = format!("timings.total < duration('{good}') || true");
            assert!(Expr::compile(&src, SCOPE).is_ok(), "{src}");
        }
        assert!(Expr::compile("tls.not_after > timestamp('2030-01-31T00:00:00Z')", SCOPE).is_ok());
        // A duration the text only shows at run time fails in words.
        let mut f = facts();
        f.set(
            "vars",
            std::collections::HashMap::from([("limit".to_string(), "300 ms".to_string())]),
        );
        let c = Expr::compile("timings.total < duration(vars.limit)", SCOPE)
            .unwrap()
            .check(&f);
        assert!(!c.passed);
        assert_eq!(
            c.actual,
            "evaluation failed: duration(): expected a number and a unit like `300ms` or `1.5s`"
        );
    }

    #[test]
    fn cel_type_errors_accepted_at_load_status_eq_string_timings_total_lt_number() {
        for (src, literal, message) in [
            (
                "status == '200'",
                "'200'",
                "`status` is a number, compared with the string '200' (write 200)",
            ),
            (
                "timings.total < 300",
                "300",
                "`timings.total` is a duration, compared with the number 300 (write duration('300ms'))",
            ),
            (
                "'200' != status",
                "'200'",
                "`status` is a number, compared with the string '200' (write 200)",
            ),
            (
                "json.ok && timings.connect >= 1.5",
                "1.5",
                "`timings.connect` is a duration, compared with the number 1.5 (write duration('1.5ms'))",
            ),
            (
                "timings.total < '300ms'",
                "'300ms'",
                "`timings.total` is a duration, compared with the string '300ms' (write duration('300ms'))",
            ),
            (
                "status in [200, '201']",
                "'201'",
                "`status` is a number, compared with the string '201' (write 201)",
            ),
            (
                "body != 'héllo wörld' && status == '200'",
                "'200'",
                "`status` is a number, compared with the string '200' (write 200)",
            ),
            (
                "status == 'OK'",
                "'OK'",
                "`status` is a number, compared with the string 'OK'",
            ),
            (
                "status < duration('1s')",
                "duration",
                "`status` is a number, compared with the duration duration('1s')",
            ),
            (
                "headers['content-type'] == 1",
                "1",
                "`headers[\"content-type\"]` is a string, compared with the number 1 (write '1')",
            ),
            (
                "tls.days_left > '14'",
                "'14'",
                "`tls.days_left` is a number, compared with the string '14' (write 14)",
            ),
            (
                "tls.not_after > '2030-01-31T00:00:00Z'",
                "'2030",
                "`tls.not_after` is a timestamp, compared with the string '2030-01-31T00:00:00Z' (write timestamp('2030-01-31T00:00:00Z'))",
            ),
        ] {
            let e = compile_error(src, SCOPE);
            assert_eq!(e.message, message, "{src}");
            assert_eq!(e.column, column_of(src, literal), "{src}");
        }
        // Other kinds' names, by their kinds' scopes.
        let ws = &[
            "messages",
            "count",
            "first_message",
            "max_gap",
            "status",
            "close",
            "timings",
        ];
        let e = compile_error("first_message < 500", ws);
        assert_eq!(
            e.message,
            "`first_message` is a duration, compared with the number 500 (write duration('500ms'))"
        );
        assert!(
            compile_error("close.code == '1000'", ws)
                .message
                .contains("(write 1000)")
        );
        let stream = &[
            "events",
            "first_event",
            "max_gap",
            "reconnected",
            "status",
            "timings",
        ];
        assert!(
            compile_error("max_gap < 2000", stream)
                .message
                .contains("duration('2000ms')")
        );
        assert!(
            compile_error("reconnected == 'true'", stream)
                .message
                .contains("(write true)")
        );
        let dns = &[
            "rcode",
            "answers",
            "authority",
            "additional",
            "timings",
            "vars",
        ];
        assert!(
            compile_error("rcode == 0", dns)
                .message
                .contains("(write '0')")
        );

        // Never an expression that could be right.
        let grpc = &["status", "grpc_code", "grpc_message", "timings", "vars"];
        for (src, scope) in [
            ("status == 'SERVING'", grpc as &[&str]),
            ("grpc_code == 0", grpc),
            ("status == 200", SCOPE),
            ("status == 200.0 || status == 200u", SCOPE),
            ("status != null", SCOPE),
            ("-1 < status", SCOPE),
            ("status in [200, 201]", SCOPE),
            ("json.status == '200'", SCOPE),
            ("vars.status == '200'", SCOPE),
            ("json.items.all(status, status == 'ok')", SCOPE),
            ("string(status) == '200'", SCOPE),
            ("timings.total < duration('300ms')", SCOPE),
            ("has(timings.total) == true", SCOPE),
            ("tls.days_left > 14 && tls.days_left > 13.5", SCOPE),
            ("headers['content-type'] == 'application/json'", SCOPE),
            ("body == ''", SCOPE),
            ("status == '200'", &["status"]),
            ("anything == '200'", &["anything", "headers"]),
        ] {
            let compiled = Expr::compile_in(src, typed(scope));
            assert!(compiled.is_ok(), "{src}: {:?}", compiled.err());
        }
    }

    /// `facts()` with `prev` keeping `names`, the previous run's values
    /// given as JSON (`None`: no previous run).
    fn with_prev(names: &[&str], values: Option<&str>) -> Facts {
        let values: Option<BTreeMap<String, serde_json::Value>> =
            values.map(|v| serde_json::from_str(v).unwrap());
        let mut f = facts();
        f.set_prev(Prev::new(names.iter().copied(), values.as_ref()));
        f
    }

    fn check_prev(src: &str, f: &Facts) -> Check {
        Expr::compile(src, SCOPE).unwrap().check(f)
    }

    #[test]
    fn prev_is_known_in_every_scope_and_compared_like_any_value() {
        assert!(Expr::compile("prev.x == 1", &[]).is_ok());
        assert!(Expr::compile("json.count > prev.last", SCOPE).is_ok());
        let f = with_prev(&["last"], Some(r#"{"last": 2}"#));
        assert!(check_prev("json.count > prev.last", &f).passed);
        let f = with_prev(&["last"], Some(r#"{"last": 3}"#));
        let c = check_prev("json.count > prev.last", &f);
        assert!(!c.passed);
        assert_eq!(c.actual, "json.count = 3, prev.last = 3");
        // `prev['last']` reads the same value.
        assert!(!check_prev("json.count > prev['last']", &f).passed);
    }

    #[test]
    fn prev_without_a_previous_value_passes_and_says_so() {
        for values in [None, Some("{}"), Some(r#"{"other": 1}"#)] {
            let f = with_prev(&["last"], values);
            let c = check_prev("json.count > prev.last", &f);
            assert_eq!(
                c,
                Check {
                    passed: true,
                    actual: "no previous value of prev.last".into()
                },
                "{values:?}"
            );
            // An expression that tests for it handles the first run itself.
            let c = check_prev("has(prev.last) && json.count > prev.last", &f);
            assert!(!c.passed, "{values:?}");
            assert!(
                check_prev("!has(prev.last) || json.count > prev.last", &f).passed,
                "{values:?}"
            );
            // Captures and kept values evaluate to an error, in words.
            let e = Expr::compile("prev.last + 1", SCOPE)
                .unwrap()
                .eval(&f)
                .unwrap_err();
            assert!(e.contains("no previous value of prev.last"), "{e}");
            assert_eq!(
                Expr::compile("has(prev.last) ? prev.last + 1 : 1", SCOPE)
                    .unwrap()
                    .eval(&f),
                Ok(serde_json::json!(1))
            );
        }
    }

    #[test]
    fn prev_of_a_name_not_kept_fails_with_the_names_kept() {
        let f = with_prev(&["last_seq"], Some(r#"{"last_seq": 1}"#));
        let c = check_prev("json.count > prev.lst_seq", &f);
        assert_eq!(
            c.actual,
            "`prev.lst_seq` is not kept: this probe keeps `last_seq`; did you mean `prev.last_seq`?"
        );
        assert!(!c.passed);
        // Even guarded, and even on a first run: a typo is heard at once.
        let f = with_prev(&["last_seq"], None);
        assert!(!check_prev("!has(prev.lst_seq) || true", &f).passed);
        let c = check_prev("prev.seq == 1", &facts());
        assert_eq!(
            c.actual,
            "`prev.seq` is not kept: this probe keeps nothing (keep = { seq = \"…\" } would keep it)"
        );
        // Values of names no longer kept are not readable either.
        let f = with_prev(&["a"], Some(r#"{"a": 1, "b": 2}"#));
        assert!(check_prev("size(prev) == 1", &f).passed);
    }

    #[test]
    fn long_values_are_truncated() {
        let s = show(&Value::String(Arc::new("x".repeat(1000))));
        assert!(s.chars().count() <= MAX_SHOWN + 1);
        assert!(s.ends_with('…'));
    }
}
