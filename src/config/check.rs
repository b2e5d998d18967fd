//! The located checker every part of a config or probe file is built with.
//!
//! [`Checker`] walks one file's raw values against its located document and
//! records every problem (file, line, column, key path, what was expected)
//! instead of stopping at the first. The file's owners — the daemon
//! settings here, each probe kind in its own file, the assembly in
//! `plan` — build their tables through its methods, each taking a dotted
//! key path (`tcp.address`, `flow.steps[2].url`). It knows no kind and no
//! receiver; the free functions are the shared value syntaxes (sizes,
//! names, schedules).

use super::Schedule;
use super::raw::RawSize;
use crate::diag::{self, Diagnostic, Diagnostics, SourceDoc, SourceLocation};
use crate::expr::{Assertion, Expr, Scope};
use crate::net::oauth2::{OAuth2, TokenUrl};
use crate::secret::{self, Redactor};
use crate::template::Text;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Checks one file's raw values against its located document, recording
/// every problem, and builds the runtime values that pass.
pub struct Checker<'a> {
    pub doc: &'a SourceDoc,
    pub diags: &'a mut Diagnostics,
    pub redactor: &'a mut Redactor,
    pub base_dir: &'a Path,
    /// What a secret reference that cannot be resolved does.
    pub secrets: Demand,
}

/// What becomes of a secret reference (`${env:…}`, `${file:…}`) that
/// cannot be resolved in the part being checked. A malformed reference is
/// an error in every case: it is a mistake in the file.
#[derive(Debug, Default)]
pub enum Demand {
    /// An error: the part is used (the daemon, `check`, a selected probe).
    #[default]
    Required,
    /// Set aside, for the assembly to report once it knows whether the
    /// part is used (an environment, checked before the probes that name
    /// it); the value is left out meanwhile.
    Deferred(Vec<Diagnostic>),
    /// Not read at all, and the value left out: the part is not used by the
    /// run at hand (a probe `--probe` did not select, `[alerting]` without
    /// `--alert`).
    Unused,
}

impl<'a> Checker<'a> {
    pub fn new(
        doc: &'a SourceDoc,
        diags: &'a mut Diagnostics,
        redactor: &'a mut Redactor,
        base_dir: &'a Path,
    ) -> Checker<'a> {
        Checker {
            doc,
            diags,
            redactor,
            base_dir,
            secrets: Demand::Required,
        }
    }

    /// Reads the top-level table `key` of this file into its owner's raw
    /// type (a probe kind's `[tcp]`, `[workload]`), every error located.
    pub fn table<T: serde::de::DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        diag::deserialize_part(
            self.doc,
            diag::Part {
                table: key,
                skip: &[],
            },
            self.diags,
        )
    }

    /// Records a diagnostic made elsewhere.
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.diags.push(diagnostic);
    }
}

impl Checker<'_> {
    /// An error at the value of `path`.
    pub fn err(&mut self, path: &str, message: impl Into<String>) {
        let d = self.doc.error_at(path, message);
        self.diags.push(d);
    }

    /// A required key missing from the table at `table`.
    pub fn missing(&mut self, table: &str, key: &str) {
        self.diags.push(
            self.doc
                .error_at_key(table, format!("missing required key `{key}`")),
        );
    }

    /// A size written at `path` (`4096` or `"4 KiB"`), from 1 byte to
    /// `max`; `default` when unset, or after recording why it is not one.
    pub fn size(&mut self, path: &str, raw: Option<&RawSize>, default: u64, max: u64) -> u64 {
        match raw.map(parse_size) {
            None => default,
            Some(Ok(n)) if (1..=max).contains(&n) => n,
            Some(Ok(n)) => {
                self.err(
                    path,
                    format!(
                        "expected a size from 1 B to {}, found {n} bytes",
                        size_words(max)
                    ),
                );
                default
            }
            Some(Err(msg)) => {
                self.err(path, msg);
                default
            }
        }
    }

    /// How many errors were recorded so far (to tell whether a part built).
    pub fn error_count(&self) -> usize {
        self.diags.len()
    }

    /// The directory relative paths in this file resolve against.
    pub fn base_dir(&self) -> &Path {
        self.base_dir
    }

    /// Compiles the `expect` list of the table at `table`.
    pub fn expectations(
        &mut self,
        table: &str,
        sources: &[String],
        scope: Scope<'_>,
    ) -> Vec<Assertion> {
        let mut out = Vec::new();
        for (i, source) in sources.iter().enumerate() {
            let path = format!("{table}.expect[{i}]");
            if let Some(expr) = self.expr(&path, source, scope) {
                out.push(Assertion {
                    expr,
                    location: self.location(&path),
                });
            }
        }
        out
    }

    /// Compiles one expression written at `path`.
    pub fn expr(&mut self, path: &str, source: &str, scope: Scope<'_>) -> Option<Expr> {
        match Expr::compile_in(source, scope) {
            Ok(expr) => Some(expr),
            Err(e) => {
                let mut d = self.doc.error_at(path, e.message);
                if let Some(col) = e.column.filter(|_| self.doc.is_verbatim(path)) {
                    // Past the opening quote of a one-line string.
                    d.column += col;
                }
                self.diags.push(d);
                None
            }
        }
    }

    /// Expands secrets in a string value and compiles it as a template.
    /// `known_vars` lists the `vars.X` it may read (`None`: any).
    pub fn text(&mut self, path: &str, value: &str, known_vars: Option<&[String]>) -> Option<Text> {
        let expanded = self.expand(path, value)?;
        match Text::compile(&expanded, known_vars) {
            Ok(t) => Some(t),
            Err(e) => {
                // The message quotes the template: keep secrets out of it.
                let mut msg = e.message;
                self.redactor.scrub(&mut msg);
                self.err(path, msg);
                None
            }
        }
    }

    /// A duration written at `path` (`30s`, `1m 30s`, `500ms`), at most
    /// [`MAX_DURATION`]; `default` when unset, or after recording why it
    /// is not one.
    pub fn duration(&mut self, path: &str, value: Option<&str>, default: Duration) -> Duration {
        self.duration_at_most(path, value, default, MAX_DURATION)
    }

    /// [`Checker::duration`] with a tighter bound, `max`, for keys whose
    /// sane range is known (a probe's timeout, the drain).
    pub fn duration_at_most(
        &mut self,
        path: &str,
        value: Option<&str>,
        default: Duration,
        max: Duration,
    ) -> Duration {
        match value.map(|text| parse_duration(text, max)) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(msg)) => {
                self.err(path, msg);
                default
            }
        }
    }

    pub fn header_value(&mut self, path: &str, value: &str) -> Option<http::HeaderValue> {
        http::HeaderValue::from_str(value)
            .map_err(|_| {
                self.err(
                    path,
                    "expected a header value of visible ASCII characters".to_owned(),
                )
            })
            .ok()
    }

    /// Expands secret references in a string value, reporting failures as
    /// [`Checker::secrets`] says. `None` when the value is not available:
    /// after an error, or when its secrets are deferred or not needed.
    pub fn expand(&mut self, path: &str, value: &str) -> Option<String> {
        let references = match secret::references(value) {
            Ok(n) => n,
            Err(msg) => {
                self.err(path, msg);
                return None;
            }
        };
        if references > 0 && matches!(self.secrets, Demand::Unused) {
            return None;
        }
        let short_before = self.redactor.short_count();
        match secret::expand(value, self.base_dir, self.redactor) {
            Ok((out, _)) => {
                if self.redactor.short_count() > short_before {
                    warn_short(self.doc, path);
                }
                Some(out)
            }
            Err(msg) => {
                let d = self.doc.error_at(path, msg);
                match &mut self.secrets {
                    Demand::Deferred(set_aside) => set_aside.push(d),
                    Demand::Required | Demand::Unused => self.diags.push(d),
                }
                None
            }
        }
    }

    /// A value that is a secret wherever it came from (a password, a
    /// signing key): expanded like any value, and then masked in every
    /// output even when it was written in clear.
    pub fn secret(&mut self, path: &str, value: &str) -> Option<String> {
        let expanded = self.expand(path, value)?;
        let short_before = self.redactor.short_count();
        self.redactor.add(&expanded);
        if self.redactor.short_count() > short_before {
            warn_short(self.doc, path);
        }
        Some(expanded)
    }

    /// `basic_auth = { user = "…", password = "…" }` in the table at
    /// `table`: the value of its `Authorization: Basic base64(user:password)`
    /// header, to add to the table's headers (`names`), which must not set
    /// that header too. The password and the header's token are secrets
    /// (masked in every output) even when the password is written in
    /// clear; neither key is a template.
    pub fn basic_auth<'n>(
        &mut self,
        table: &str,
        raw: Option<&super::raw::RawBasicAuth>,
        names: impl IntoIterator<Item = &'n http::HeaderName>,
    ) -> Option<String> {
        let raw = raw?;
        let path = format!("{table}.basic_auth");
        let errors = self.error_count();
        if names
            .into_iter()
            .any(|name| name == http::header::AUTHORIZATION)
        {
            self.diags.push(self.doc.error_at_key(
                &path,
                format!(
                    "`basic_auth` and `{table}.headers.Authorization` both set the Authorization header: keep one"
                ),
            ));
        }
        let user = match raw.user.as_deref() {
            None => {
                self.missing(&path, "user");
                None
            }
            Some(u) => self.expand(&format!("{path}.user"), u),
        };
        if user.as_deref().is_some_and(|u| u.contains(':')) {
            // Never echo the value: it may come from a secret.
            self.err(
                &format!("{path}.user"),
                "a basic-auth user cannot contain `:` (RFC 7617)",
            );
        }
        let password = match raw.password.as_deref() {
            None => {
                self.missing(&path, "password");
                None
            }
            Some(p) => {
                let key = format!("{path}.password");
                if secret::references(p) == Ok(0) {
                    tracing::warn!(
                        file = self.doc.file(),
                        key = %key,
                        "a basic-auth password is written in clear in the file; reference it with `${{env:NAME}}` or `${{file:PATH}}`"
                    );
                }
                self.secret(&key, p)
            }
        };
        if self.error_count() > errors {
            return None;
        }
        let token = secret::base64(format!("{}:{}", user?, password?).as_bytes());
        self.redactor.add(&token);
        Some(format!("Basic {token}"))
    }

    /// The keys that set a request's `Authorization` header besides its
    /// `headers` (`basic_auth`, `bearer_token`, `oauth2`) in the table at
    /// `table`, whose headers are named by `names`. At most one of the four
    /// may be set: each key names every one before it that is set too
    /// (headers, then `basic_auth`, `bearer_token`, `oauth2`), at the key.
    pub fn auth<'n>(
        &mut self,
        table: &str,
        raw: RawAuth<'_>,
        names: impl IntoIterator<Item = &'n http::HeaderName>,
    ) -> Auth {
        let names: Vec<&http::HeaderName> = names.into_iter().collect();
        let basic = self.basic_auth(table, raw.basic_auth, names.iter().copied());
        let mut earlier = Vec::new();
        if names
            .iter()
            .any(|name| **name == http::header::AUTHORIZATION)
        {
            earlier.push(format!("{table}.headers.Authorization"));
        }
        if raw.basic_auth.is_some() {
            earlier.push("basic_auth".to_owned());
        }
        let bearer = raw.bearer_token.and_then(|token| {
            self.same_header(table, "bearer_token", &earlier);
            self.bearer_token(table, token)
        });
        if raw.bearer_token.is_some() {
            earlier.push("bearer_token".to_owned());
        }
        let oauth2 = raw.oauth2.and_then(|o| {
            self.same_header(table, "oauth2", &earlier);
            self.oauth2(table, o)
        });
        Auth {
            header: basic.or(bearer),
            oauth2,
        }
    }

    /// `key` of the table at `table` and each of `earlier` set the
    /// Authorization header: an error at `key` for each.
    fn same_header(&mut self, table: &str, key: &str, earlier: &[String]) {
        for other in earlier {
            self.diags.push(self.doc.error_at_key(
                &format!("{table}.{key}"),
                format!("`{key}` and `{other}` both set the Authorization header: keep one"),
            ));
        }
    }

    /// `bearer_token = "${env:…}"` in the table at `table`: the value of its
    /// `Authorization: Bearer …` header. The token is a secret (masked in
    /// every output) even when written in clear; it is not a template.
    fn bearer_token(&mut self, table: &str, value: &str) -> Option<String> {
        let key = format!("{table}.bearer_token");
        if secret::references(value) == Ok(0) {
            tracing::warn!(
                file = self.doc.file(),
                key = %key,
                "a bearer token is written in clear in the file; reference it with `${{env:NAME}}` or `${{file:PATH}}`"
            );
        }
        let token = self.secret(&key, value)?;
        let header = format!("Bearer {token}");
        if token.is_empty()
            || token.contains(|c: char| c.is_ascii_whitespace())
            || http::HeaderValue::from_str(&header).is_err()
        {
            // Never echo the value: it is a secret.
            self.err(
                &key,
                "expected a bearer token of visible ASCII characters without spaces (RFC 6750)",
            );
            return None;
        }
        Some(header)
    }

    /// `oauth2 = { token_url, client_id, client_secret, scopes, audience }`
    /// in the table at `table`: OAuth2 client credentials. The secret is
    /// masked in every output even when written in clear; no key is a
    /// template.
    fn oauth2(&mut self, table: &str, raw: &super::raw::RawOAuth2) -> Option<Arc<OAuth2>> {
        let path = format!("{table}.oauth2");
        let errors = self.error_count();
        let token_url = match raw.token_url.as_deref() {
            None => {
                self.missing(&path, "token_url");
                None
            }
            Some(text) => {
                let key = format!("{path}.token_url");
                self.expand(&key, text)
                    .and_then(|url| match token_url(&url) {
                        Ok(url) => Some(url),
                        Err(mut msg) => {
                            // The URL may hold an expanded secret.
                            self.redactor.scrub(&mut msg);
                            self.err(&key, msg);
                            None
                        }
                    })
            }
        };
        let client_id = match raw.client_id.as_deref() {
            None => {
                self.missing(&path, "client_id");
                None
            }
            Some(id) => {
                let key = format!("{path}.client_id");
                let id = self.expand(&key, id);
                if id.as_deref() == Some("") {
                    self.err(&key, "expected a client id, found an empty string");
                }
                id
            }
        };
        let client_secret = match raw.client_secret.as_deref() {
            None => {
                self.missing(&path, "client_secret");
                None
            }
            Some(value) => {
                let key = format!("{path}.client_secret");
                if secret::references(value) == Ok(0) {
                    tracing::warn!(
                        file = self.doc.file(),
                        key = %key,
                        "an OAuth2 client secret is written in clear in the file; reference it with `${{env:NAME}}` or `${{file:PATH}}`"
                    );
                }
                self.secret(&key, value)
            }
        };
        for (i, scope) in raw.scopes.iter().enumerate() {
            if !valid_scope(scope) {
                self.err(
                    &format!("{path}.scopes[{i}]"),
                    format!(
                        "expected a scope of visible ASCII characters without spaces, `\"` or `\\` (RFC 6749 §3.3), found `{scope}`"
                    ),
                );
            }
        }
        let audience = match raw.audience.as_deref() {
            None => Some(None),
            Some(a) => self.expand(&format!("{path}.audience"), a).map(Some),
        };
        if self.error_count() > errors {
            return None;
        }
        Some(Arc::new(OAuth2::new(
            token_url?,
            client_id?,
            secret::Secret::new(client_secret?),
            raw.scopes.clone(),
            audience?,
        )))
    }

    /// Header name/value pairs with secrets expanded.
    pub fn headers(
        &mut self,
        path: &str,
        raw: BTreeMap<String, String>,
    ) -> Vec<(http::HeaderName, String)> {
        let mut out = Vec::new();
        for (name, value) in raw {
            let key = format!("{path}.{name}");
            let Ok(header) = http::HeaderName::from_bytes(name.as_bytes()) else {
                self.diags.push(
                    self.doc
                        .error_at_key(&key, format!("`{name}` is not a valid HTTP header name")),
                );
                continue;
            };
            if let Some(v) = self.expand(&key, &value) {
                if http::HeaderValue::from_str(&v).is_err() {
                    // Never echo the value: it may hold a secret.
                    self.err(
                        &key,
                        "the header value is not valid in HTTP (control characters or non-ASCII)",
                    );
                    continue;
                }
                out.push((header, v));
            }
        }
        out
    }

    pub fn location(&self, path: &str) -> SourceLocation {
        let (line, column) = self.doc.value_position(path);
        SourceLocation {
            file: self.doc.file().to_owned(),
            line,
            column,
        }
    }

    /// Compiles the templates in a JSON body; a bad leaf is located at its key.
    pub fn json_template(
        &mut self,
        path: &str,
        value: &serde_json::Value,
        known: Option<&[String]>,
    ) -> Option<crate::template::JsonTemplate> {
        match crate::template::JsonTemplate::compile(value, known) {
            Ok(t) => Some(t),
            Err((leaf, e)) => {
                let mut msg = e.message;
                self.redactor.scrub(&mut msg);
                let at = if leaf.is_empty() {
                    path.to_owned()
                } else {
                    format!("{path}.{leaf}")
                };
                self.err(&at, msg);
                None
            }
        }
    }
}

/// The keys of a request's table that set its `Authorization` header
/// besides `headers` (see [`Checker::auth`]).
#[derive(Clone, Copy, Default)]
pub struct RawAuth<'r> {
    pub basic_auth: Option<&'r super::raw::RawBasicAuth>,
    pub bearer_token: Option<&'r str>,
    pub oauth2: Option<&'r super::raw::RawOAuth2>,
}

/// What a request's auth keys come to (see [`Checker::auth`]).
#[derive(Debug, Default)]
pub struct Auth {
    /// The `Authorization` value of `basic_auth` or `bearer_token`, to add
    /// to the table's headers.
    pub header: Option<String>,
    /// `oauth2`: the run fetches (or reuses) a token and sends it.
    pub oauth2: Option<Arc<OAuth2>>,
}

/// An OAuth2 `token_url`: an absolute `http(s)` URL with a host and no
/// credentials, or a path starting with `/` on the run's base URL.
pub fn token_url(text: &str) -> Result<TokenUrl, String> {
    if text.starts_with('/') {
        return Ok(TokenUrl::Path(text.to_owned()));
    }
    let expected = "expected an http(s) URL like `https://auth.example.com/oauth/token`, or a path starting with `/` on the environment's base URL";
    match url::Url::parse(text) {
        Ok(url)
            if matches!(url.scheme(), "http" | "https")
                && url.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            no_credentials(&url)?;
            Ok(TokenUrl::Absolute(url))
        }
        Ok(_) => Err(format!("{expected}, found `{text}`")),
        Err(e) => Err(format!("{expected}, found `{text}` ({e})")),
    }
}

/// A scope token (RFC 6749 §3.3): `%x21 / %x23-5B / %x5D-7E`, at least one.
fn valid_scope(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

/// What a table's `proxy` key says.
pub struct ProxyKeys<'r> {
    pub proxy: Option<&'r str>,
    pub proxy_auth: Option<&'r super::raw::RawBasicAuth>,
    pub no_proxy: Option<&'r [String]>,
}

impl Checker<'_> {
    /// `proxy`, `proxy_auth` and `no_proxy` of the table at `table` (an
    /// environment, `http`, `flow`): `None` when `proxy` is not set (or
    /// after an error); a direct [`Proxy`] for `proxy = "none"`. The
    /// proxy's password and the token sent for it are secrets, masked in
    /// every output, whether they come from `proxy_auth`, from the URL's
    /// `user:password@` (allowed here, unlike in a target's URL: a proxy
    /// URL is never reported) or from `HTTP(S)_PROXY`. With `proxy =
    /// "env"` the process environment is read now, at load.
    ///
    /// [`Proxy`]: crate::net::proxy::Proxy
    pub fn proxy(
        &mut self,
        table: &str,
        keys: &ProxyKeys<'_>,
    ) -> Option<std::sync::Arc<crate::net::proxy::Proxy>> {
        use crate::net::proxy::{NoProxy, Proxy};
        let at = |key: &str| {
            if table.is_empty() {
                key.to_owned()
            } else {
                format!("{table}.{key}")
            }
        };
        let Some(raw) = keys.proxy else {
            for (key, set) in [
                ("proxy_auth", keys.proxy_auth.is_some()),
                ("no_proxy", keys.no_proxy.is_some()),
            ] {
                if set {
                    self.err(&at(key), format!("`{key}` needs `proxy`"));
                }
            }
            return None;
        };
        let errors = self.error_count();
        let no_proxy = match keys.no_proxy {
            None => NoProxy::default(),
            Some(list) => {
                let mut entries = Vec::new();
                for (i, entry) in list.iter().enumerate() {
                    match NoProxy::parse([entry.as_str()]) {
                        Ok(one) => entries.push(one),
                        Err(msg) => self.err(&format!("{}[{i}]", at("no_proxy")), msg),
                    }
                }
                entries.into_iter().fold(NoProxy::default(), NoProxy::and)
            }
        };
        let auth = self.proxy_auth(&at("proxy_auth"), keys.proxy_auth);
        let path = at("proxy");
        let proxy = match raw.trim() {
            "none" => {
                for (key, set) in [
                    ("proxy_auth", keys.proxy_auth.is_some()),
                    ("no_proxy", keys.no_proxy.is_some()),
                ] {
                    if set {
                        self.err(
                            &at(key),
                            format!("`{key}` has no use with `proxy = \"none\"`"),
                        );
                    }
                }
                Proxy::default()
            }
            "env" => {
                let read = |names: [&'static str; 2]| {
                    names.iter().find_map(|name| {
                        std::env::var(name)
                            .ok()
                            .filter(|v| !v.trim().is_empty())
                            .map(|v| (*name, v))
                    })
                };
                let mut endpoint = |found: Option<(&str, String)>| {
                    let (name, value) = found?;
                    self.proxy_endpoint(&path, &value, auth.as_ref(), Some(name))
                };
                let https = endpoint(read(["https_proxy", "HTTPS_PROXY"]));
                let http = endpoint(read(["http_proxy", "HTTP_PROXY"]));
                if https.is_none() && http.is_none() && self.error_count() == errors {
                    tracing::warn!(
                        file = self.doc.file(),
                        key = %path,
                        "proxy = \"env\" but neither HTTPS_PROXY nor HTTP_PROXY is set: connections go direct"
                    );
                }
                let from_env = read(["no_proxy", "NO_PROXY"])
                    .map(|(_, v)| NoProxy::from_env(&v))
                    .unwrap_or_default();
                Proxy::per_scheme(http, https, no_proxy.and(from_env))
            }
            _ => {
                let expanded = self.expand(&path, raw)?;
                let endpoint = self.proxy_endpoint(&path, &expanded, auth.as_ref(), None)?;
                if secret::references(raw) == Ok(0) && expanded.contains('@') {
                    tracing::warn!(
                        file = self.doc.file(),
                        key = %path,
                        "a proxy password is written in clear in the file; reference it with `${{env:NAME}}` or use proxy_auth"
                    );
                }
                Proxy::all(endpoint, no_proxy)
            }
        };
        (self.error_count() == errors).then(|| std::sync::Arc::new(proxy))
    }

    /// `proxy_auth = { user, password }`: the user and the password (a
    /// secret, masked in every output).
    fn proxy_auth(
        &mut self,
        path: &str,
        raw: Option<&super::raw::RawBasicAuth>,
    ) -> Option<(String, String)> {
        let raw = raw?;
        let user = match raw.user.as_deref() {
            None => {
                self.missing(path, "user");
                None
            }
            Some(u) => self.expand(&format!("{path}.user"), u),
        };
        if user.as_deref().is_some_and(|u| u.contains(':')) {
            self.err(
                &format!("{path}.user"),
                "a proxy user cannot contain `:` (RFC 7617)",
            );
            return None;
        }
        let password = match raw.password.as_deref() {
            None => {
                self.missing(path, "password");
                None
            }
            Some(p) => self.secret(&format!("{path}.password"), p),
        };
        Some((user?, password?))
    }

    /// One proxy URL (`from`: the variable it was read from, for `env`),
    /// with `auth` or the URL's own credentials registered as secrets.
    fn proxy_endpoint(
        &mut self,
        path: &str,
        text: &str,
        auth: Option<&(String, String)>,
        from: Option<&str>,
    ) -> Option<crate::net::proxy::Endpoint> {
        use crate::net::proxy::Endpoint;
        let (endpoint, in_url) = match Endpoint::parse(text) {
            Ok(parsed) => parsed,
            Err(mut msg) => {
                self.redactor.scrub(&mut msg);
                match from {
                    Some(name) => self.err(
                        path,
                        format!("`proxy = \"env\"`: {name} holds no usable proxy: {msg}"),
                    ),
                    None => self.err(path, msg),
                }
                return None;
            }
        };
        let (user, password) = match (auth, in_url) {
            (Some(_), Some(_)) if from.is_none() => {
                self.err(
                    path,
                    "the proxy URL carries credentials and `proxy_auth` is set too: keep one",
                );
                return None;
            }
            (Some((user, password)), _) => (user.clone(), password.clone()),
            (None, Some(creds)) => {
                self.redactor.add(&creds.password);
                (creds.user, creds.password)
            }
            (None, None) => return Some(endpoint),
        };
        self.redactor.add(&Endpoint::token(&user, &password));
        Some(endpoint.with_credentials(&user, &password))
    }
}

/// Warns that the secret at `path` is short, so masked only where it
/// stands alone (never naming the value).
fn warn_short(doc: &SourceDoc, path: &str) {
    tracing::warn!(
        file = doc.file(),
        key = %path,
        "a secret shorter than {} characters is masked in output only where it stands alone (not inside words); use a longer one",
        secret::MIN_ANYWHERE_LEN
    );
}

/// Refuses a URL that carries credentials (`https://user:pass@host/`):
/// synthmon does not send them and they would be shown wherever the URL
/// is, so they belong in `basic_auth`. The message never repeats the URL.
pub fn no_credentials(url: &url::Url) -> Result<(), String> {
    if url.username().is_empty() && url.password().is_none() {
        return Ok(());
    }
    Err(
        "the URL carries credentials (`user:password@`), which are not sent and would show in reports: \
         remove them and write `basic_auth = { user = \"…\", password = \"${env:NAME}\" }`"
            .to_owned(),
    )
}

/// A path as the user would write it: relative to the working directory
/// when it is below it.
pub fn display_path(p: &Path) -> String {
    let rel = std::env::current_dir()
        .ok()
        .and_then(|cwd| p.strip_prefix(cwd).ok().map(Path::to_path_buf));
    rel.unwrap_or_else(|| p.to_path_buf()).display().to_string()
}

/// Probe and environment names become metric labels, header values and
/// baggage entries, so they are kept to characters that need no escaping.
pub fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && s.len() <= 128
}

pub fn valid_label(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One year as humantime reads `1y` (365.25 days), so that `1y` itself is
/// within the bounds below and they print as `1year`.
const YEAR: Duration = Duration::from_secs(31_557_600);

/// The longest duration any key accepts unless its owner asks for less.
/// Every duration a user writes ends up added to the monotonic clock (a
/// deadline, a flush time, a pause); a year is beyond any sane setting and
/// far from the clock's limit, where `Instant + Duration` panics
/// (`300000000000y` did).
pub const MAX_DURATION: Duration = YEAR;

/// The longest interval of an `every …` schedule. A probe that runs less
/// than once a year is no longer monitoring, so anything longer is a typo
/// (`every 1y` for `every 1m`?); slots are computed on the monotonic clock,
/// which a bound keeps far from its limit.
pub const MAX_INTERVAL: Duration = YEAR;

/// Parses a duration a user wrote (`30s`, `1m 30s`, `500ms`), at most
/// `max`. A bare number is refused with a hint about units: `"5"` is not
/// five seconds.
pub fn parse_duration(text: &str, max: Duration) -> Result<Duration, String> {
    let trimmed = text.trim();
    let d = match humantime::parse_duration(trimmed) {
        Ok(d) => d,
        Err(_) if is_plain_number(trimmed) => return Err(unit_needed(trimmed)),
        Err(e) => {
            return Err(format!(
                "expected a duration like `5s`, found `{text}` ({e})"
            ));
        }
    };
    if d > max {
        return Err(format!(
            "expected a duration of at most {}, found `{text}`",
            humantime::format_duration(max)
        ));
    }
    Ok(d)
}

/// `5`, `1.5`: a number with no unit after it.
fn is_plain_number(text: &str) -> bool {
    !text.is_empty() && text.parse::<f64>().is_ok_and(f64::is_finite)
}

/// What a number written where a duration belongs is told.
fn unit_needed(number: &str) -> String {
    format!("expected a duration with a unit like `5s` or `500ms`, found the number {number}")
}

/// Parses `every 30s`, or a cron expression (5 fields, or 6 with seconds)
/// evaluated in `timezone` (an IANA name, default UTC). An interval is from
/// 1s to [`MAX_INTERVAL`].
pub fn parse_schedule(text: &str, timezone: Option<&str>) -> Result<Schedule, String> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix("every ") {
        if timezone.is_some() {
            return Err("`timezone` applies to cron schedules only".into());
        }
        let rest = rest.trim();
        let d = match humantime::parse_duration(rest) {
            Ok(d) => d,
            Err(_) if is_plain_number(rest) => {
                return Err(format!(
                    "expected an interval with a unit like `every 30s` or `every 5m`, found the number {rest}"
                ));
            }
            Err(e) => return Err(format!("expected `every <duration>` like `every 30s`: {e}")),
        };
        if d < Duration::from_secs(1) {
            return Err(format!("the interval must be at least 1s, found `{text}`"));
        }
        if d > MAX_INTERVAL {
            return Err(format!(
                "the interval must be at most {}, found `{text}`",
                humantime::format_duration(MAX_INTERVAL)
            ));
        }
        return Ok(Schedule::Every(d));
    }
    let tz = timezone.unwrap_or("UTC");
    crate::schedule::parse_timezone(tz)?;
    crate::schedule::parse_cron(text).map_err(|e| {
        // With a wrong count of fields it may not be meant as cron at all.
        if (5..=7).contains(&text.split_whitespace().count()) {
            e
        } else {
            format!("{e}; for an interval write `every <duration>` like `every 30s`")
        }
    })?;
    Ok(Schedule::Cron {
        expression: crate::schedule::normalize_cron(text),
        timezone: tz.to_owned(),
    })
}

/// The shortest time between two runs of a schedule, if it can be known.
pub fn min_gap(schedule: &Schedule) -> Option<Duration> {
    match schedule {
        Schedule::Every(d) => Some(*d),
        Schedule::Cron {
            expression,
            timezone,
        } => {
            let cron = crate::schedule::parse_cron(expression).ok()?;
            let tz = crate::schedule::parse_timezone(timezone).ok()?;
            crate::schedule::cron_min_gap(&cron, &tz, chrono::Utc::now())
        }
    }
}

/// Parses `"3 of 5"`.
pub fn parse_m_of_k(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("expected `M of K` like `3 of 5` (1 ≤ M ≤ K ≤ 100), found `{text}`");
    let (m, k) = text.split_once(" of ").ok_or_else(bad)?;
    let m: u32 = m.trim().parse().map_err(|_| bad())?;
    let k: u32 = k.trim().parse().map_err(|_| bad())?;
    if m == 0 || m > k || k > 100 {
        return Err(bad());
    }
    Ok((m, k))
}

/// Parses `4194304`, `512 KiB`, `4MiB`, `1 MB`, …
pub fn parse_size(raw: &RawSize) -> Result<u64, String> {
    let text = match raw {
        RawSize::Bytes(n) => return Ok(*n),
        RawSize::Text(t) => t.trim(),
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("expected a size like `4 MiB`, found `{text}`"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1024,
        "mb" => 1000 * 1000,
        "mib" | "m" => 1024 * 1024,
        "gb" => 1000 * 1000 * 1000,
        "gib" | "g" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}` (expected B, KB, KiB, MB, MiB, GB or GiB)"
            ));
        }
    };
    Ok((num * mult as f64) as u64)
}

/// `n` bytes in the largest binary unit that divides it: `64 KiB`.
pub fn size_words(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    UNITS.iter().find(|(unit, _)| n % unit == 0).map_or_else(
        || format!("{n} B"),
        |(unit, name)| format!("{} {name}", n / unit),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn size_limits_are_worded_in_their_unit() {
        assert_eq!(size_words(1 << 30), "1 GiB");
        assert_eq!(size_words(64 * 1024 * 1024), "64 MiB");
        assert_eq!(size_words(64 * 1024), "64 KiB");
        assert_eq!(size_words(1536), "1536 B");
        assert_eq!(size_words(1000), "1000 B");
    }

    #[test]
    fn schedules() {
        assert_eq!(
            parse_schedule("every 30s", None).unwrap(),
            Schedule::Every(Duration::from_secs(30))
        );
        assert_eq!(
            parse_schedule(" every 2m ", None).unwrap(),
            Schedule::Every(Duration::from_secs(120))
        );
        assert!(parse_schedule("every 100ms", None).is_err());
        assert!(parse_schedule("every soon", None).is_err());
        assert!(parse_schedule("every 1m", Some("UTC")).is_err());
        assert_eq!(
            parse_schedule("*/5 * * * *", Some("Europe/Berlin")).unwrap(),
            Schedule::Cron {
                expression: "0 */5 * * * *".into(),
                timezone: "Europe/Berlin".into()
            }
        );
        assert!(parse_schedule("*/5 * * * *", Some("Mars/Base")).is_err());
        assert!(parse_schedule("99 * * * *", None).is_err());
        assert_eq!(
            min_gap(&parse_schedule("0 */10 * * * *", None).unwrap()),
            Some(Duration::from_secs(600))
        );
    }

    #[test]
    fn durations_are_bounded_and_a_bare_number_asks_for_a_unit() {
        let day = Duration::from_secs(86_400);
        assert_eq!(
            parse_duration("1m 30s", day).unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(parse_duration("1d", day).unwrap(), day);
        assert_eq!(parse_duration("0", day).unwrap(), Duration::ZERO);
        assert_eq!(
            parse_duration("25h", day).unwrap_err(),
            "expected a duration of at most 1day, found `25h`"
        );
        // Used to parse, then overflow `Instant + Duration` at run time.
        assert_eq!(
            parse_duration("300000000000y", MAX_DURATION).unwrap_err(),
            "expected a duration of at most 1year, found `300000000000y`"
        );
        assert_eq!(parse_duration("1y", MAX_DURATION).unwrap(), MAX_DURATION);
        assert_eq!(
            parse_duration("5", day).unwrap_err(),
            "expected a duration with a unit like `5s` or `500ms`, found the number 5"
        );
        assert!(
            parse_duration("5 parsecs", day)
                .unwrap_err()
                .starts_with("expected a duration like `5s`, found `5 parsecs` (")
        );
        assert_eq!(
            parse_schedule("every 300000000000y", None).unwrap_err(),
            "the interval must be at most 1year, found `every 300000000000y`"
        );
        assert_eq!(
            parse_schedule("every 1y", None).unwrap(),
            Schedule::Every(MAX_INTERVAL)
        );
        assert_eq!(
            parse_schedule("every 30", None).unwrap_err(),
            "expected an interval with a unit like `every 30s` or `every 5m`, found the number 30"
        );
    }

    #[test]
    fn m_of_k() {
        assert_eq!(parse_m_of_k("3 of 5").unwrap(), (3, 5));
        assert_eq!(parse_m_of_k(" 1 of 1 ").unwrap(), (1, 1));
        assert!(parse_m_of_k("6 of 5").is_err());
        assert!(parse_m_of_k("0 of 5").is_err());
        assert!(parse_m_of_k("3/5").is_err());
        assert!(parse_m_of_k("1 of 101").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size(&RawSize::Bytes(10)).unwrap(), 10);
        assert_eq!(parse_size(&RawSize::Text("4 MiB".into())).unwrap(), 4 << 20);
        assert_eq!(
            parse_size(&RawSize::Text("512KiB".into())).unwrap(),
            512 << 10
        );
        assert_eq!(
            parse_size(&RawSize::Text("1 MB".into())).unwrap(),
            1_000_000
        );
        assert!(parse_size(&RawSize::Text("4 parsecs".into())).is_err());
        assert!(parse_size(&RawSize::Text("lots".into())).is_err());
    }

    #[test]
    fn names() {
        assert!(valid_name("api-health.v2_x"));
        assert!(!valid_name("-lead"));
        assert!(!valid_name("has space"));
        assert!(!valid_name(""));
        assert!(valid_label("team_name"));
        assert!(!valid_label("team-name"));
    }
}
