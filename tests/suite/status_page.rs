//! The status page (issue 16) over real HTTP against an in-process daemon
//! probing the built-in sandbox: every configured pair with the JSON API's
//! state, the filters, the detail page and its links, hostile text
//! escaped (no script injection), the page complete without JavaScript,
//! and `[daemon] token` in front of `/`, `/api/` and `/metrics` but not of
//! `/healthz` and `/readyz`. The same page in a real headless Chromium is
//! `.ci/interop-browser.sh`.

use crate::common;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use synthmon::daemon::Daemon;

const CONFIG: &str = "[daemon]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"state\"\n\
                      [environments.sb]\nbase_url = \"builtin:sandbox\"\n\
                      [environments.sb2]\nbase_url = \"builtin:sandbox\"\n";

/// A script a hostile label or error text would smuggle in.
const HOSTILE: &str = "<script>window.pwned=1</script>";

fn probes() -> Vec<(&'static str, String)> {
    vec![
        (
            "good.toml",
            format!(
                "name = \"good\"\nschedule = \"every 1s\"\ntimeout = \"900ms\"\n\
                 environments = [\"sb\", \"sb2\"]\ntags = [\"web\"]\n\
                 slo = {{ objective = \"99%\" }}\nlabels = {{ team = \"{}\" }}\n\
                 [http]\nurl = \"/health\"\n",
                HOSTILE.replace('"', "\\\"")
            ),
        ),
        (
            "bad.toml",
            "name = \"bad\"\nschedule = \"every 1s\"\ntimeout = \"900ms\"\n\
             environments = [\"sb\"]\ntags = [\"api\"]\n[http]\nurl = \"/status/500\"\n"
                .to_owned(),
        ),
        (
            "journey.toml",
            "name = \"journey\"\nschedule = \"every 1s\"\ntimeout = \"900ms\"\n\
             environments = [\"sb\"]\n\
             [[flow.steps]]\nname = \"create\"\nmethod = \"POST\"\nurl = \"/api/orders\"\n\
             json = { item = \"widget\", quantity = 1 }\ncapture = { id = \"json.id\" }\n\
             [[flow.steps]]\nname = \"fetch\"\nurl = \"/api/orders/{{ vars.id }}\"\n\
             [[flow.teardown]]\nname = \"delete\"\nmethod = \"DELETE\"\n\
             url = \"/api/orders/{{ vars.id }}\"\n"
                .to_owned(),
        ),
        // The url template renders to the hostile text, which the run's
        // error sentence then quotes.
        (
            "hostile.toml",
            format!(
                "name = \"hostile\"\nschedule = \"every 1s\"\ntimeout = \"900ms\"\n\
                 environments = [\"sb\"]\n[http]\nurl = \"{{{{ '{HOSTILE}' }}}}\"\n"
            ),
        ),
    ]
}

fn write(dir: &Path, config: &str) -> std::path::PathBuf {
    let probes = probes();
    let files: Vec<(&str, &str)> = probes.iter().map(|(n, t)| (*n, t.as_str())).collect();
    common::write_config(dir, config, &files)
}

/// One answer: status, head (lowercase header names), body.
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

/// GET `path` with extra header lines, over a fresh connection.
async fn get(d: &Daemon, path: &str, headers: &[(&str, &str)]) -> Answer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(d.addr()).await.unwrap();
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n",
        d.addr()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn page(d: &Daemon, path: &str) -> String {
    let a = get(d, path, &[]).await;
    assert_eq!(a.status, 200, "GET {path}: {}", a.body);
    assert_eq!(
        a.headers.get("content-type").map(String::as_str),
        Some("text/html; charset=utf-8")
    );
    a.body
}

/// `/api/v1/probes`' (probe, environment) → state, once every pair has
/// one, `bad` and `hostile` are failing and the history has latency
/// samples of `good` (the writer stores them every few seconds).
async fn api_states(d: &Daemon) -> BTreeMap<(String, String), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = get(d, "/api/v1/probes/good/sb/latency?window=1h&step=1h", &[]).await;
        let body: Value = serde_json::from_str(&a.body).unwrap();
        if body["points"][0]["samples"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no latency samples: {body:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        let a = get(d, "/api/v1/probes", &[]).await;
        let body: Value = serde_json::from_str(&a.body).unwrap();
        let states: BTreeMap<(String, String), Option<String>> = body["probes"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        (
                            (
                                p["probe"].as_str().unwrap().to_owned(),
                                p["environment"].as_str().unwrap().to_owned(),
                            ),
                            p["state"].as_str().map(str::to_owned),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let failing = |p: &str| {
            states.get(&(p.to_owned(), "sb".to_owned())) == Some(&Some("failing".to_owned()))
        };
        if states.len() == 5
            && states.values().all(Option::is_some)
            && failing("bad")
            && failing("hostile")
        {
            return states
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect();
        }
        assert!(Instant::now() < deadline, "pairs without a state: {body:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The pairs a page lists: (probe, environment) → state, from the rows'
/// data attributes.
fn rows(html: &str) -> BTreeMap<(String, String), String> {
    let re = regex::Regex::new(
        r#"<tr class="r-[a-z]+" data-probe="([^"]*)" data-environment="([^"]*)" data-state="([^"]*)">"#,
    )
    .unwrap();
    re.captures_iter(html)
        .map(|c| ((c[1].to_owned(), c[2].to_owned()), c[3].to_owned()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(p, e)| ((*p).to_owned(), (*e).to_owned()))
        .collect()
}

/// No markup of the hostile text survives: it is there, escaped.
fn assert_escaped(html: &str, what: &str) {
    assert!(
        !html.contains("<script>window"),
        "{what}: an injected script:\n{html}"
    );
    assert!(
        html.contains("&lt;script&gt;window.pwned=1&lt;/script&gt;"),
        "{what}: the hostile text is not shown escaped:\n{html}"
    );
    // The page's own script is the only one.
    assert_eq!(html.matches("<script").count(), 1, "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_every_pair_as_the_api_does_filtered_and_in_detail() {
    common::within(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        let d = Daemon::start(
            common::quiet_daemon_options(write(dir.path(), CONFIG)),
            None,
        )
        .await
        .unwrap();
        let states = api_states(&d).await;

        // Every configured pair, with the API's state, as text in a badge.
        let a = get(&d, "/", &[]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let html = a.body;
        let shown = rows(&html);
        assert_eq!(
            shown.keys().collect::<Vec<_>>(),
            states.keys().collect::<Vec<_>>()
        );
        for (pair, state) in &states {
            // A pair may change state between the two reads; these do not.
            assert_eq!(shown[pair], *state, "{pair:?}");
        }
        assert!(html.contains(r#"<span class="badge s-failing">failing</span>"#));
        assert!(html.contains(r#"<span class="badge s-ok">ok</span>"#));
        // Uptime, the sparkline, the SLO, the failures with their links.
        assert!(html.contains("100% · 100% · 100%"), "{html}");
        assert!(html.contains("0.00% · 0.00% · 0.00%"), "{html}");
        assert!(html.contains(r#"<svg class="spark""#), "{html}");
        assert!(html.contains("of the budget left"), "{html}");
        // A failure links its artifact.
        assert!(
            html.replace("&#x2f;", "/")
                .contains(r#"href="./api/v1/artifacts/bad/sb/"#),
            "{html}"
        );
        assert_escaped(&html, "the overview");

        // Headers: the policy allows the page's own script and style only.
        let csp = &a.headers["content-security-policy"];
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        let script = html
            .split_once("<script>")
            .and_then(|(_, rest)| rest.split_once("</script>"))
            .map(|(s, _)| s)
            .unwrap();
        let hash = {
            use sha2::Digest;
            synthmon::secret::base64(&sha2::Sha256::digest(script.as_bytes()))
        };
        assert!(
            csp.contains(&format!("script-src 'sha256-{hash}'")),
            "{csp}"
        );

        // Complete with JavaScript off: without its one script the page
        // still lists every pair and reloads itself through <noscript>.
        let without_js = html.replace(script, "");
        assert_eq!(rows(&without_js), shown);
        assert!(
            without_js.contains(r#"<noscript><meta http-equiv="refresh" content="30"></noscript>"#)
        );
        for handler in ["onclick=", "onload=", "onerror=", "javascript:"] {
            assert!(!without_js.contains(handler), "{handler}");
        }

        // Filters, through the query string (as the form sends them).
        let only = |path: &'static str| {
            let d = &d;
            async move { rows(&page(d, path).await).into_keys().collect::<Vec<_>>() }
        };
        assert_eq!(only("/?env=sb2").await, pairs(&[("good", "sb2")]));
        assert_eq!(
            only("/?env=sb2&tag=&state=").await,
            pairs(&[("good", "sb2")])
        );
        assert_eq!(only("/?tag=api").await, pairs(&[("bad", "sb")]));
        assert_eq!(
            only("/?state=failing").await,
            pairs(&[("bad", "sb"), ("hostile", "sb")])
        );
        assert_eq!(
            only("/?env=sb&state=ok").await,
            pairs(&[("good", "sb"), ("journey", "sb")])
        );
        assert_eq!(only("/?tag=web&state=failing").await, pairs(&[]));
        assert!(
            page(&d, "/?tag=nothing")
                .await
                .contains("No pair matches these filters.")
        );
        for bad in ["/?state=broken", "/?colour=red", "/?env=sb&env=sb2"] {
            let a = get(&d, bad, &[]).await;
            assert_eq!(a.status, 400, "{bad}: {}", a.body);
            assert!(a.body.contains("<h1>400 Bad Request</h1>"), "{}", a.body);
        }

        // The detail page: the last run's waterfall (a flow's steps), the
        // chart's windows, the failures linking to their runs.
        let journey = page(&d, "/probes/journey/sb").await;
        for step in ["whole run", "create", "fetch", "delete"] {
            assert!(
                journey.contains(&format!("<th scope=\"row\">{step}</th>")),
                "{step}: {journey}"
            );
        }
        let at = |step: &str| {
            journey
                .find(&format!("<th scope=\"row\">{step}</th>"))
                .unwrap()
        };
        assert!(
            at("whole run") < at("create")
                && at("create") < at("fetch")
                && at("fetch") < at("delete"),
            "the waterfall is not in the order the steps ran: {journey}"
        );
        assert!(journey.contains(r#"<svg class="chart""#), "{journey}");
        let hour = page(&d, "/probes/journey/sb?window=1h").await;
        assert!(hour.contains(r#"<a href="?window=1h#latency" aria-current="page">1h</a>"#));
        let bad = page(&d, "/probes/bad/sb").await;
        assert!(
            bad.contains("<h2 id=\"failures\">Last failures</h2>"),
            "{bad}"
        );
        let re = regex::Regex::new(r#"<a href="\.\./\.\./(api/v1/artifacts/bad/sb/[^"]+)"><time"#)
            .unwrap();
        let decoded = bad.replace("&#x2f;", "/").replace("&amp;", "&");
        let link = re
            .captures(&decoded)
            .map(|c| c[1].to_owned())
            .unwrap_or_else(|| panic!("no failure link: {bad}"));
        // The link opens that run's failure artifact: the 500 it got.
        let artifact = get(&d, &format!("/{link}"), &[]).await;
        let artifact: Value = serde_json::from_str(&artifact.body).unwrap();
        assert_eq!(artifact["result"]["success"], false, "{artifact:#}");
        assert_eq!(
            artifact["result"]["artifact"]["exchange"]["response"]["status"], 500,
            "{artifact:#}"
        );

        // Hostile text on the detail page: the label and the error.
        assert_escaped(&page(&d, "/probes/good/sb").await, "good's detail page");
        assert_escaped(
            &page(&d, "/probes/hostile/sb").await,
            "hostile's detail page",
        );

        for (path, status) in [
            ("/probes/nope/sb", 404),
            ("/probes/good/nowhere", 404),
            ("/probes/good/sb?window=2h", 400),
        ] {
            let a = get(&d, path, &[]).await;
            assert_eq!(a.status, status, "{path}: {}", a.body);
        }
        d.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_the_page_the_api_and_metrics_but_not_health() {
    common::within(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let token = "page-token-3f9c2e";
        std::fs::write(dir.path().join("token"), format!("{token}\n")).unwrap();
        let config = CONFIG.replace("[daemon]\n", "[daemon]\ntoken = \"${file:token}\"\n");
        let d = Daemon::start(
            common::quiet_daemon_options(write(dir.path(), &config)),
            None,
        )
        .await
        .unwrap();
        let bearer = format!("Bearer {token}");
        for path in ["/", "/probes/good/sb", "/api/v1/probes", "/metrics"] {
            let a = get(&d, path, &[]).await;
            assert_eq!(a.status, 401, "{path} without a token: {}", a.body);
            assert_eq!(
                a.headers.get("www-authenticate").map(String::as_str),
                Some("Bearer realm=\"synthmon\""),
                "{path}"
            );
            assert!(!a.body.contains(token));
            for wrong in ["Bearer page-token-3f9c2", "Basic cGFnZQ==", token] {
                let a = get(&d, path, &[("authorization", wrong)]).await;
                assert_eq!(a.status, 401, "{path} with `{wrong}`");
            }
            for right in [bearer.as_str(), &format!("bearer  {token}")] {
                let a = get(&d, path, &[("authorization", right)]).await;
                assert_eq!(a.status, 200, "{path} with the token: {}", a.body);
            }
        }
        for path in ["/healthz", "/readyz"] {
            let a = get(&d, path, &[]).await;
            assert_eq!(a.status, 200, "{path} stays open: {}", a.body);
        }
        d.shutdown().await;
    })
    .await;
}

/// The token is the daemon's: `check` wants its reference resolved,
/// `--once` (which serves nothing) does not read it.
#[test]
fn only_the_daemon_and_check_need_the_token() {
    let dir = tempfile::tempdir().unwrap();
    common::write_config(
        dir.path(),
        "[daemon]\ntoken = \"${env:SYNTHMON_TEST_PAGE_TOKEN_UNSET}\"\n\
         [environments.sb]\nbase_url = \"builtin:sandbox\"\n",
        &[(
            "ok.toml",
            "name = \"ok\"\nenvironments = [\"sb\"]\n[http]\nurl = \"/health\"\n",
        )],
    );
    let check = common::synthmon(dir.path(), &["check"], &[]);
    assert_ne!(check.code, Some(0), "{check:?}");
    assert!(
        check.stderr.contains("daemon.token")
            && check.stderr.contains("SYNTHMON_TEST_PAGE_TOKEN_UNSET"),
        "{check:?}"
    );
    common::synthmon(dir.path(), &["--once"], &[]).assert_code(0);
    // An empty token is refused, never echoed.
    std::fs::write(
        dir.path().join("config.toml"),
        "[daemon]\ntoken = \"\"\n[environments.sb]\nbase_url = \"builtin:sandbox\"\n",
    )
    .unwrap();
    let check = common::synthmon(dir.path(), &["check"], &[]);
    assert!(
        check
            .stderr
            .contains("daemon.token: expected a non-empty token"),
        "{check:?}"
    );
}

/// Without a history the page still lists every configured pair, says
/// why it has nothing more, and the detail page answers too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_history_the_page_lists_the_pairs_and_says_why() {
    common::within(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let config = format!("{CONFIG}[daemon.history]\nenabled = false\n");
        let d = Daemon::start(
            common::quiet_daemon_options(write(dir.path(), &config)),
            None,
        )
        .await
        .unwrap();
        let html = page(&d, "/").await;
        assert_eq!(rows(&html).len(), 5, "{html}");
        assert!(rows(&html).values().all(|s| s == "none"), "{html}");
        assert!(html.contains("The run history is off"), "{html}");
        let detail = page(&d, "/probes/good/sb").await;
        assert!(detail.contains("The run history is off"), "{detail}");
        d.shutdown().await;
    })
    .await;
}
