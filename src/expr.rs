//! Expressions: CEL, compiled at load time, evaluated against the facts of a
//! run.
//!
//! One language serves every place a user writes logic (`expect` now;
//! captures, `until` and threshold operands later). Compilation checks syntax
//! and that every variable the expression reads exists in its scope, so a
//! typo fails `synthmon check` rather than a probe at 3 a.m. When an
//! assertion fails, [`Expr::check`] explains it by evaluating the operands of
//! the failing comparison, so reports show what was actually seen.

use cel::common::ast::{CallExpr, Expr as Node, IdedExpr, operators};
use cel::{Context, Env, Value};
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

/// A compiled expression and the text it came from.
#[derive(Debug)]
pub struct Expr {
    source: String,
    program: cel::Program,
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
    /// Compiles `source`; `scope` names the variables it may read.
    pub fn compile(source: &str, scope: &[&str]) -> Result<Expr, ExprError> {
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
                    .map(|p| p.pos.1.unsigned_abs()),
            }
        })?;
        let mut bound = Vec::new();
        bound_variables(program.expression(), &mut bound);
        for var in program.references().variables() {
            if !scope.contains(&var) && !bound.iter().any(|b| b == var) {
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
        Ok(Expr {
            source: source.to_owned(),
            program,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression reads `var`.
    pub fn reads(&self, var: &str) -> bool {
        self.program.references().has_variable(var)
    }

    /// Evaluates the expression as an assertion.
    pub fn check(&self, facts: &Facts) -> Check {
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
                actual: format!("evaluation failed: {e}"),
            },
        }
    }
}

impl Expr {
    /// Evaluates the expression to a JSON value (captures, `until`
    /// operands). Errors say what went wrong, for reports.
    pub fn eval(&self, facts: &Facts) -> Result<serde_json::Value, String> {
        let ctx = facts.context();
        let value = self
            .program
            .execute(&ctx)
            .map_err(|e| format!("`{}`: evaluation failed: {e}", self.source))?;
        value
            .json()
            .map_err(|e| format!("`{}` gave a value JSON cannot hold: {e:?}", self.source))
    }
}

/// Named values an expression can read.
#[derive(Default)]
pub struct Facts {
    values: Vec<(&'static str, Value)>,
}

impl Facts {
    pub fn set(&mut self, name: &'static str, value: impl Into<Value>) {
        self.values.push((name, value.into()));
    }

    fn context(&self) -> Context<'_, '_> {
        let mut ctx = Context::with_env(ENV.clone());
        // `find(text, regex)`: the first capture group of the first match
        // (the whole match when the regex has no group), or "" when none.
        let _ = ctx.add_function("find", find);
        for (name, value) in &self.values {
            ctx.add_variable_from_value(*name, value.clone());
        }
        ctx
    }
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

/// Converts JSON into a CEL value (numbers that fit stay integers).
pub fn json_value(v: &serde_json::Value) -> Value {
    cel::to_value(v).unwrap_or(Value::Null)
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

    const SCOPE: &[&str] = &["status", "headers", "body", "json", "timings", "vars"];

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
        let json: serde_json::Value =
            serde_json::from_str(r#"{"id":"ord_1","items":[1,2],"ok":true,"n":0}"#).unwrap();
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

    #[test]
    fn long_values_are_truncated() {
        let s = show(&Value::String(Arc::new("x".repeat(1000))));
        assert!(s.chars().count() <= MAX_SHOWN + 1);
        assert!(s.ends_with('…'));
    }
}
