//! HTTP proxies: which proxy a connection goes through, and the `CONNECT`
//! tunnel through it.
//!
//! A proxy is opt-in (`proxy = "http://host:port"`, or `proxy = "env"` for
//! `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`); nothing here reads the process
//! environment by itself, so a monitor measures the path it says it
//! measures. Every connection through a proxy is a `CONNECT host:port`
//! tunnel, for `http://` targets as well as `https://` ones (and for the
//! other kinds that dial through [`super::dial::dial_via`]): the exchange
//! on the tunnel is the same bytes as on a direct connection, TLS runs end
//! to end with the target, and the credentials for the proxy travel in the
//! `CONNECT` alone, never in a request a report could show.
//!
//! Phases: `resolve` is the proxy's name (the target's name is resolved by
//! the proxy), `connect` is the TCP connection to the proxy plus its answer
//! to `CONNECT` (which includes the proxy's own connection to the target),
//! `tls` is the handshake with the target through the tunnel. A proxy
//! that cannot be reached or answers `CONNECT` with anything but 2xx fails
//! with reason `proxy`; the sentence names the proxy (never its
//! credentials) and, for an answer, its status.

use super::error::{Cut, Fail, cut};
use crate::outcome::FailureReason;
use crate::secret::Secret;
use std::fmt;
use std::net::IpAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest answer to `CONNECT` (its head) read before giving up.
const MAX_ANSWER: usize = 16 * 1024;

/// The proxies of an environment or a probe: one for `http://` targets and
/// one for `https://` ones (the same one unless they come from
/// `HTTP_PROXY` and `HTTPS_PROXY`), and the hosts reached directly.
#[derive(Clone, Debug, Default)]
pub struct Proxy {
    http: Option<Endpoint>,
    https: Option<Endpoint>,
    no_proxy: NoProxy,
}

impl Proxy {
    /// Every target through `endpoint`, except those `no_proxy` names.
    pub fn all(endpoint: Endpoint, no_proxy: NoProxy) -> Proxy {
        Proxy {
            http: Some(endpoint.clone()),
            https: Some(endpoint),
            no_proxy,
        }
    }

    /// Plain targets through `http`, TLS ones through `https` (either may
    /// be absent: those go direct), except those `no_proxy` names.
    pub fn per_scheme(http: Option<Endpoint>, https: Option<Endpoint>, no_proxy: NoProxy) -> Proxy {
        Proxy {
            http,
            https,
            no_proxy,
        }
    }

    /// No target goes through a proxy.
    pub fn is_direct(&self) -> bool {
        self.http.is_none() && self.https.is_none()
    }

    /// The proxy for a connection to `host` (a name or an IP literal,
    /// without brackets), over TLS or not; `None`: direct.
    pub fn route(&self, tls: bool, host: &str) -> Option<&Endpoint> {
        let endpoint = if tls { &self.https } else { &self.http };
        endpoint.as_ref().filter(|_| !self.no_proxy.matches(host))
    }
}

/// One proxy: where it listens and the credentials it is sent.
#[derive(Clone)]
pub struct Endpoint {
    /// A name or an IP literal, without brackets.
    host: String,
    port: u16,
    /// `Basic base64(user:password)`, sent as `Proxy-Authorization`.
    authorization: Option<Secret<String>>,
}

/// Credentials found in a proxy URL's `user:password@`, decoded.
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl Endpoint {
    /// Parses `http://[user:password@]host[:port]` (`host:port` alone is
    /// taken as `http://`; the port defaults to 80). The credentials, if
    /// any, are returned decoded, for the caller to register as secrets
    /// and hand back through [`Endpoint::with_credentials`]. An error never
    /// repeats the credentials.
    pub fn parse(text: &str) -> Result<(Endpoint, Option<Credentials>), String> {
        const EXPECTED: &str = "expected a proxy URL like `http://proxy.example:3128`";
        let text = text.trim();
        let with_scheme = if text.contains("://") {
            text.to_owned()
        } else {
            format!("http://{text}")
        };
        let shown = || shown_without_credentials(text);
        let url = url::Url::parse(&with_scheme)
            .map_err(|e| format!("{EXPECTED}, found {} ({e})", shown()))?;
        match url.scheme() {
            "http" => {}
            "https" => {
                return Err(format!(
                    "{EXPECTED}, found {}: a proxy spoken to over TLS (https://) is not supported; \
                     an http:// proxy still carries TLS to an https target end to end (CONNECT)",
                    shown()
                ));
            }
            other => {
                return Err(format!(
                    "{EXPECTED}, found {}: the `{other}` scheme is not supported (HTTP proxies with CONNECT only)",
                    shown()
                ));
            }
        }
        let host = match url.host() {
            Some(url::Host::Domain(name)) if !name.is_empty() => name.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(format!("{EXPECTED}, found {}, which has no host", shown())),
        };
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "{EXPECTED}, found {}: a proxy URL has no path, query or fragment",
                shown()
            ));
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let credentials = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let decode = |s: &str| {
                percent_decode(s).ok_or_else(|| {
                    format!(
                        "{EXPECTED}: the credentials in {} are not valid percent-encoded UTF-8",
                        shown()
                    )
                })
            };
            Some(Credentials {
                user: decode(url.username())?,
                password: decode(url.password().unwrap_or_default())?,
            })
        };
        Ok((
            Endpoint {
                host,
                port,
                authorization: None,
            },
            credentials,
        ))
    }

    /// This proxy, sent `user` and `password` as `Proxy-Authorization:
    /// Basic …`. The caller has registered both (and the token) as secrets.
    pub fn with_credentials(mut self, user: &str, password: &str) -> Endpoint {
        let token = crate::secret::base64(format!("{user}:{password}").as_bytes());
        self.authorization = Some(Secret::new(format!("Basic {token}")));
        self
    }

    /// The base64 token [`Endpoint::with_credentials`] sends for `user`
    /// and `password`, for the caller to register as a secret.
    pub fn token(user: &str, password: &str) -> String {
        crate::secret::base64(format!("{user}:{password}").as_bytes())
    }

    /// The proxy's host: a name or an IP literal, without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether credentials are sent.
    pub fn authenticates(&self) -> bool {
        self.authorization.is_some()
    }
}

/// `http://host:port`, never the credentials.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}", authority(&self.host, self.port))
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.to_string())
            .field("authenticates", &self.authenticates())
            .finish()
    }
}

/// A URL as written, without its `user:password@` (or nothing of it, when
/// it cannot be told where the credentials are).
fn shown_without_credentials(text: &str) -> String {
    match text.rsplit_once('@') {
        None => format!("`{text}`"),
        Some((before, after)) => match before.split_once("://") {
            Some((scheme, _)) => format!("`{scheme}://…@{after}`"),
            None => format!("`…@{after}`"),
        },
    }
}

/// Percent-decoding of a URL's user or password.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `host:port`, an IPv6 host in brackets.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The hosts reached without the proxy (`no_proxy`, `NO_PROXY`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NoProxy {
    entries: Vec<Bypass>,
}

/// One `no_proxy` entry.
#[derive(Clone, Debug, PartialEq)]
enum Bypass {
    /// `*`: every host.
    All,
    /// `example.com` or `.example.com`: that name and every name under it.
    Domain(String),
    /// An IP address, or a network in CIDR notation (`10.0.0.0/8`).
    Net(IpAddr, u8),
}

impl NoProxy {
    /// Checked entries (`no_proxy = [...]` in a file): `*`, a host name or
    /// `.domain` (the name and every name under it), an IP address, or a
    /// network like `10.0.0.0/8`. The first bad entry is the error.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<NoProxy, String> {
        let entries = entries
            .into_iter()
            .map(Bypass::parse)
            .collect::<Result<_, _>>()?;
        Ok(NoProxy { entries })
    }

    /// `NO_PROXY` as tools read it: a comma-separated list, a port after a
    /// name ignored, entries that mean nothing skipped.
    pub fn from_env(text: &str) -> NoProxy {
        let entries = text
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .filter_map(|e| {
                Bypass::parse(e)
                    .or_else(|_| {
                        let (host, _port) = e.rsplit_once(':').ok_or(())?;
                        Bypass::parse(host.trim_matches(['[', ']'])).map_err(|_| ())
                    })
                    .ok()
            })
            .collect();
        NoProxy { entries }
    }

    /// Both lists' entries.
    pub fn and(mut self, other: NoProxy) -> NoProxy {
        self.entries.extend(other.entries);
        self
    }

    /// Whether `host` (a name or an IP literal, brackets allowed) is reached
    /// directly.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_matches(['[', ']']).trim_end_matches('.');
        let ip = host.parse::<IpAddr>().ok();
        let host = host.to_ascii_lowercase();
        self.entries.iter().any(|entry| match entry {
            Bypass::All => true,
            Bypass::Domain(domain) => {
                host == *domain
                    || host
                        .strip_suffix(domain.as_str())
                        .is_some_and(|rest| rest.ends_with('.'))
            }
            Bypass::Net(net, bits) => ip.is_some_and(|ip| in_network(ip, *net, *bits)),
        })
    }
}

impl Bypass {
    fn parse(entry: &str) -> Result<Bypass, String> {
        let entry = entry.trim();
        let bad = |why: &str| {
            format!(
                "expected a host like `internal.example`, a domain like `.example.com`, an IP address or a network like `10.0.0.0/8`, found `{entry}`{why}"
            )
        };
        if entry == "*" {
            return Ok(Bypass::All);
        }
        if let Some((net, bits)) = entry.split_once('/') {
            let net: IpAddr = net.parse().map_err(|_| bad(""))?;
            let max = if net.is_ipv4() { 32 } else { 128 };
            let bits: u8 = bits
                .parse()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| bad(&format!(" (the prefix length is 0 to {max})")))?;
            return Ok(Bypass::Net(net, bits));
        }
        let bare = entry.trim_matches(['[', ']']);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            return Ok(Bypass::Net(ip, bits));
        }
        let domain = entry
            .strip_prefix("*.")
            .or_else(|| entry.strip_prefix('.'))
            .unwrap_or(entry)
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let valid = !domain.is_empty()
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !valid {
            return Err(bad(if entry.contains(':') {
                " (ports are not part of a no_proxy entry)"
            } else {
                ""
            }));
        }
        Ok(Bypass::Domain(domain))
    }
}

/// Whether `ip` is in the network `net/bits` (families must agree).
fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (ip, net, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let bits = u32::from(bits).min(width);
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (ip >> shift) == (net >> shift)
}

/// A failure reaching the proxy itself (its name did not resolve, it
/// refused or could not be reached): `proxy`, naming it. Running out of
/// descriptors and the deadline keep their own reasons.
pub fn unreachable(endpoint: &Endpoint, fail: Fail) -> Fail {
    match fail.reason {
        FailureReason::Dns | FailureReason::ConnectRefused | FailureReason::Connect => Fail::new(
            FailureReason::Proxy,
            format!("cannot reach the proxy {endpoint}: {}", fail.message),
        ),
        _ => fail,
    }
}

/// Asks the proxy on `stream` for a tunnel to `host:port` (`CONNECT`) and
/// reads its answer; on a 2xx the stream is the tunnel. Reads no byte
/// past the answer's head, so the target's first bytes stay in the stream.
/// The caller bounds it with the run's deadline.
pub async fn tunnel<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    endpoint: &Endpoint,
    host: &str,
    port: u16,
) -> Result<(), Fail> {
    let target = authority(host.trim_matches(['[', ']']), port);
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(value) = &endpoint.authorization {
        head.push_str("Proxy-Authorization: ");
        head.push_str(value.expose());
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let io = |doing: &str, e: &std::io::Error| {
        let what = match cut(e) {
            Some(Cut::Reset) => "reset the connection".to_owned(),
            Some(Cut::Closed) => "closed the connection".to_owned(),
            None => format!("failed: {}", super::error::describe(e)),
        };
        Fail::new(
            FailureReason::Proxy,
            format!("the proxy {endpoint} {what} {doing} CONNECT {target}"),
        )
    };
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| io("before taking", &e))?;
    stream.flush().await.map_err(|e| io("before taking", &e))?;
    let answer = read_head(stream)
        .await
        .map_err(|e| io("before answering", &e))?;
    let Some(answer) = answer else {
        return Err(Fail::new(
            FailureReason::Proxy,
            format!(
                "the proxy {endpoint} answered CONNECT {target} with a head larger than {} KiB",
                MAX_ANSWER / 1024
            ),
        ));
    };
    judge(&answer, endpoint, &target)
}

/// The answer's head, up to its blank line (`None` past [`MAX_ANSWER`]).
/// One byte per read: the head is short, and a byte too many would be
/// the target's.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(128);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        if head.len() >= MAX_ANSWER {
            return Ok(None);
        }
        if stream.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    Ok(Some(head))
}

/// A 2xx opens the tunnel; anything else is the proxy's refusal, worded.
fn judge(answer: &[u8], endpoint: &Endpoint, target: &str) -> Result<(), Fail> {
    let text = String::from_utf8_lossy(answer);
    let mut lines = text.lines();
    let status_line = lines.next().unwrap_or_default().trim();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..))
        .and_then(|rest| {
            let code = rest.get(..3)?;
            code.parse::<u16>()
                .ok()
                .map(|c| (c, rest.get(3..).unwrap_or_default().trim()))
        });
    let Some((code, phrase)) = status else {
        let start: String = status_line.chars().take(40).collect();
        return Err(Fail::new(
            FailureReason::Proxy,
            format!(
                "the proxy {endpoint} answered CONNECT {target} with something that is not HTTP (it begins with \"{}\")",
                start.escape_default()
            ),
        ));
    };
    if (200..300).contains(&code) {
        return Ok(());
    }
    let status = if phrase.is_empty() {
        code.to_string()
    } else {
        format!("{code} {}", phrase.chars().take(80).collect::<String>())
    };
    let message = if code == 407 {
        let asks = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("proxy-authenticate"))
            .map(|(_, v)| {
                let scheme = v.split_whitespace().next().unwrap_or_default();
                format!(
                    ", asking for {} credentials",
                    scheme.chars().take(20).collect::<String>()
                )
            })
            .unwrap_or_default();
        if endpoint.authenticates() {
            format!(
                "the proxy {endpoint} refused the credentials it was sent for CONNECT {target} ({status}{asks}): check proxy_auth"
            )
        } else {
            format!(
                "the proxy {endpoint} requires authentication for CONNECT {target} ({status}{asks}): set proxy_auth = {{ user = \"…\", password = \"${{env:NAME}}\" }}"
            )
        }
    } else {
        format!("the proxy {endpoint} answered CONNECT {target} with {status}")
    };
    Err(Fail::new(FailureReason::Proxy, message))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_parse_and_never_echo_credentials() {
        let (e, creds) = Endpoint::parse("http://proxy.example:3128").unwrap();
        assert_eq!((e.host(), e.port()), ("proxy.example", 3128));
        assert!(creds.is_none());
        assert_eq!(e.to_string(), "http://proxy.example:3128");
        let (e, _) = Endpoint::parse("10.0.0.1:8080").unwrap();
        assert_eq!(e.to_string(), "http://10.0.0.1:8080");
        let (e, _) = Endpoint::parse("http://[::1]:3128/").unwrap();
        assert_eq!(
            (e.host(), e.to_string().as_str()),
            ("::1", "http://[::1]:3128")
        );
        let (e, creds) = Endpoint::parse("http://us%40er:p%3Ass@h:1").unwrap();
        let creds = creds.unwrap();
        assert_eq!(
            (creds.user.as_str(), creds.password.as_str()),
            ("us@er", "p:ss")
        );
        let e = e.with_credentials(&creds.user, &creds.password);
        assert!(!format!("{e:?} {e}").contains("p:ss"));
        for bad in [
            "https://u:hunter2@h:1",
            "socks5://u:hunter2@h:1",
            "http://u:hunter2@h:1/path",
            "http://u:hunter2@:1",
        ] {
            let err = Endpoint::parse(bad).err().unwrap();
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn no_proxy_matches_names_domains_and_networks() {
        let list = NoProxy::parse([
            "internal.example",
            ".corp.example",
            "127.0.0.1",
            "10.0.0.0/8",
            "::1",
        ])
        .unwrap();
        for direct in [
            "internal.example",
            "api.internal.example",
            "corp.example",
            "a.b.corp.example",
            "127.0.0.1",
            "10.20.30.40",
            "[::1]",
            "INTERNAL.example.",
        ] {
            assert!(list.matches(direct), "{direct}");
        }
        for proxied in [
            "notinternal.example",
            "example",
            "127.0.0.2",
            "11.0.0.1",
            "::2",
        ] {
            assert!(!list.matches(proxied), "{proxied}");
        }
        assert!(NoProxy::parse(["*"]).unwrap().matches("anything"));
        assert!(NoProxy::parse(["host:80"]).unwrap_err().contains("ports"));
        assert!(NoProxy::parse(["10.0.0.0/33"]).is_err());
        let env = NoProxy::from_env("localhost, .svc:8080,,bad host,192.168.0.0/16");
        assert!(env.matches("localhost") && env.matches("a.svc") && env.matches("192.168.1.1"));
    }

    #[test]
    fn only_the_scheme_in_use_goes_through_its_proxy() {
        let (e, _) = Endpoint::parse("http://p:1").unwrap();
        let proxy = Proxy::per_scheme(None, Some(e), NoProxy::parse(["skip.example"]).unwrap());
        assert!(proxy.route(false, "a.example").is_none());
        assert!(proxy.route(true, "a.example").is_some());
        assert!(proxy.route(true, "skip.example").is_none());
        assert!(!proxy.is_direct());
        assert!(Proxy::default().is_direct());
    }

    #[tokio::test]
    async fn connect_answers_are_judged() {
        let (endpoint, _) = Endpoint::parse("http://127.0.0.1:3128").unwrap();
        let endpoint = endpoint.with_credentials("synth", "s3cret-pass");
        let answer = |text: &'static [u8]| {
            let (mut client, mut server) = tokio::io::duplex(4096);
            let endpoint = endpoint.clone();
            async move {
                // The proxy answers, then goes away (its end dropped).
                let serve = async move {
                    let mut got = vec![0u8; 512];
                    let n = server.read(&mut got).await.unwrap();
                    server.write_all(text).await.unwrap();
                    String::from_utf8_lossy(&got[..n]).into_owned()
                };
                let (result, asked) =
                    tokio::join!(tunnel(&mut client, &endpoint, "::1", 443), serve);
                let mut rest = Vec::new();
                let _ = tokio::time::timeout(
                    std::time::Duration::from_millis(20),
                    client.read_to_end(&mut rest),
                )
                .await;
                (result, asked, rest)
            }
        };
        let (ok, asked, rest) = answer(b"HTTP/1.1 200 Connection established\r\n\r\nBANNER").await;
        assert_eq!(ok, Ok(()));
        assert!(asked.starts_with("CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n"));
        assert!(asked.contains("Proxy-Authorization: Basic "));
        // The target's first bytes are left in the tunnel.
        assert_eq!(rest, b"BANNER");
        let (refused, ..) = answer(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\n\r\n",
        )
        .await;
        let refused = refused.unwrap_err();
        assert_eq!(refused.reason, FailureReason::Proxy);
        assert_eq!(
            refused.message,
            "the proxy http://127.0.0.1:3128 refused the credentials it was sent for CONNECT [::1]:443 (407 Proxy Authentication Required, asking for Basic credentials): check proxy_auth"
        );
        let (bad_gateway, ..) = answer(b"HTTP/1.0 502 Bad Gateway\r\n\r\n").await;
        assert_eq!(
            bad_gateway.unwrap_err().message,
            "the proxy http://127.0.0.1:3128 answered CONNECT [::1]:443 with 502 Bad Gateway"
        );
        let (garbage, ..) = answer(b"SSH-2.0-OpenSSH\r\n\r\n").await;
        assert!(garbage.unwrap_err().message.contains("not HTTP"));
        let (closed, ..) = answer(b"HTTP/1.1 200").await;
        let closed = closed.unwrap_err();
        assert_eq!(closed.reason, FailureReason::Proxy);
        assert!(
            closed
                .message
                .contains("closed the connection before answering"),
            "{}",
            closed.message
        );
    }
}
