//! Secrets never reach the output: a canary passed in through
//! `${env:…}` is sent to the target (proved by a passing expectation over
//! the sandbox's header echo) yet appears in no report, error or log line,
//! in human or JSON output, even with `SYNTHMON_LOG=trace`.

use crate::common;

use common::{position_of, synthmon, write_config};

const CANARY: &str = "canary-7f3a9c1e5b";

const CONFIG: &str = r#"[environments.sandbox]
base_url = "builtin:sandbox"
"#;

/// Fails on purpose, so the report prints the echoed body and the header.
const LEAKY: &str = r#"name = "leak-check"
environments = ["sandbox"]

[http]
url = "/headers"
headers = { Authorization = "Bearer ${env:SYNTHMON_TEST_CANARY}" }
expect = [
  "status == 200",
  "body.contains('never-there')",
  "json.authorization == 'x'",
]
"#;

/// Passes only if the header arrived with the canary in it.
const SENT: &str = r#"name = "canary-sent"
environments = ["sandbox"]

[http]
url = "/headers"
headers = { Authorization = "Bearer ${env:SYNTHMON_TEST_CANARY}" }
expect = ["json.authorization == 'Bearer ' + vars.tok"]
"#;

#[test]
fn a_secret_is_sent_but_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        CONFIG,
        &[("leaky.toml", LEAKY), ("sent.toml", SENT)],
    );
    let var = format!("tok={CANARY}");
    let envs = [("SYNTHMON_TEST_CANARY", CANARY), ("SYNTHMON_LOG", "trace")];

    for output in ["human", "json"] {
        let run = synthmon(
            dir.path(),
            &[
                "--config",
                "config.toml",
                "--once",
                "--var",
                &var,
                "--output",
                output,
            ],
            &envs,
        );
        run.assert_code(1);
        assert!(
            !run.stdout.contains(CANARY),
            "the canary leaked to stdout ({output}):\n{}",
            run.stdout
        );
        assert!(
            !run.stderr.contains(CANARY),
            "the canary leaked to stderr ({output}):\n{}",
            run.stderr
        );
        // The value was there and was masked.
        assert!(
            run.stdout.contains("Bearer ***"),
            "no masked value in stdout ({output}):\n{}",
            run.stdout
        );
        match output {
            "human" => {
                let pass = run
                    .stdout
                    .lines()
                    .find(|l| l.contains("canary-sent @ sandbox"))
                    .unwrap_or_else(|| panic!("{}", run.stdout));
                assert!(
                    pass.starts_with("PASS"),
                    "the canary did not arrive:\n{}",
                    run.stdout
                );
                let fail = run
                    .stdout
                    .lines()
                    .find(|l| l.contains("leak-check @ sandbox"))
                    .unwrap();
                assert!(fail.starts_with("FAIL"), "{}", run.stdout);
                assert!(
                    run.stdout.contains("json.authorization = \"Bearer ***\""),
                    "{}",
                    run.stdout
                );
            }
            _ => {
                let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
                let results = doc["results"].as_array().unwrap();
                let sent = results
                    .iter()
                    .find(|r| r["probe"] == "canary-sent")
                    .unwrap();
                assert_eq!(sent["success"], true, "the canary did not arrive: {sent:#}");
                let leaky = results.iter().find(|r| r["probe"] == "leak-check").unwrap();
                assert_eq!(leaky["success"], false, "{leaky:#}");
                assert_eq!(leaky["reason"], "assertion", "{leaky:#}");
                let actuals: Vec<&str> = leaky["assertions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["actual"].as_str().unwrap())
                    .collect();
                assert!(
                    actuals.iter().any(|a| a.contains("Bearer ***")),
                    "{actuals:?}"
                );
            }
        }
        // Trace logging was on: the logs are not empty, so their silence
        // about the canary means something.
        assert!(!run.stderr.trim().is_empty(), "no logs at trace level");
    }
}

#[test]
fn an_unset_secret_variable_is_a_located_config_error_naming_only_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), CONFIG, &[("leaky.toml", LEAKY)]);
    let run = synthmon(dir.path(), &["--config", "config.toml", "check"], &[]);
    run.assert_code(2);
    let (line, column) = position_of(LEAKY, "\"Bearer ${env:");
    assert!(
        run.stderr.contains(&format!(
            "probes/leaky.toml:{line}:{column}: error: http.headers.Authorization: environment variable `SYNTHMON_TEST_CANARY` referenced by `${{env:SYNTHMON_TEST_CANARY}}` is not set"
        )),
        "{}",
        run.stderr
    );
}

/// A token with characters that URLs escape (`/`, `+`, `=`), as base64
/// tokens have.
const ESCAPED_CANARY: &str = "tok/3f9a+c1e5b==";

#[test]
fn a_secret_in_the_query_string_is_masked_in_the_reported_url() {
    let dir = tempfile::tempdir().unwrap();
    let probe = r#"name = "query-secret"
environments = ["sandbox"]

[http]
url = "/status/500"
query = { key = "${env:SYNTHMON_TEST_CANARY}" }
"#;
    write_config(dir.path(), CONFIG, &[("q.toml", probe)]);
    let run = synthmon(
        dir.path(),
        &["--config", "config.toml", "--once", "--output", "json"],
        &[("SYNTHMON_TEST_CANARY", ESCAPED_CANARY)],
    );
    run.assert_code(1);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let url = doc["results"][0]["http"]["url"].as_str().unwrap();
    // The request did carry the key, in its escaped form.
    let escaped: String = url::form_urlencoded::byte_serialize(ESCAPED_CANARY.as_bytes()).collect();
    assert_ne!(escaped, ESCAPED_CANARY);
    for form in [ESCAPED_CANARY, escaped.as_str()] {
        assert!(
            !run.stdout.contains(form) && !run.stderr.contains(form),
            "the secret leaked as `{form}`:\n{}\n{}",
            run.stdout,
            run.stderr
        );
    }
    assert!(url.contains("key=***"), "{url}");
}

// ------------------------------------------------------------ issue 13

/// A two-character PIN sent in a header: the report shows `"***"` where it
/// stands alone (the echoed header), and leaves words that merely contain
/// its letters alone (the probe's name).
#[test]
fn secrets_shorter_than_4_characters_are_masked_too() {
    const PIN: &str = "zq";
    let dir = tempfile::tempdir().unwrap();
    let probe = r#"name = "zquery"
environments = ["sandbox"]

[http]
url = "/headers"
headers = { X-Pin = "${env:SYNTHMON_TEST_PIN}" }
expect = ["json['x-pin'] == 'never'"]
"#;
    write_config(dir.path(), CONFIG, &[("pin.toml", probe)]);
    for output in ["human", "json"] {
        let run = synthmon(
            dir.path(),
            &["--config", "config.toml", "--once", "--output", output],
            &[("SYNTHMON_TEST_PIN", PIN), ("SYNTHMON_LOG", "trace")],
        );
        run.assert_code(1);
        let alone = format!("\"{PIN}\"");
        for text in [&run.stdout, &run.stderr] {
            assert!(!text.contains(&alone), "the PIN leaked ({output}):\n{text}");
            assert!(!text.contains(&format!("= {PIN}")), "{text}");
        }
        // The echoed value was there, masked; the probe name is intact.
        assert!(run.stdout.contains("zquery"), "{}", run.stdout);
        match output {
            "human" => assert!(
                run.stdout.contains(r#"json["x-pin"] = "***""#),
                "{}",
                run.stdout
            ),
            _ => {
                let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
                let actual = doc["results"][0]["assertions"][1]["actual"]
                    .as_str()
                    .unwrap();
                assert_eq!(actual, r#"json["x-pin"] = "***""#);
            }
        }
        // The loader says why short secrets are worth avoiding, without the value.
        assert!(
            run.stderr.contains(
                "a secret shorter than 4 characters is masked in output only where it stands alone"
            ),
            "{}",
            run.stderr
        );
    }
}

const SCOPED_CONFIG: &str = r#"[daemon]
state_dir = "state"

[environments.sandbox]
base_url = "builtin:sandbox"

[environments.other]
base_url = "builtin:sandbox"
headers = { X-Other = "${env:SYNTHMON_TEST_UNSET_ENV}" }

[alerting]
default_receivers = ["hook"]

[alerting.receivers.hook]
url = "${env:SYNTHMON_TEST_UNSET_HOOK}"
"#;

const PROBE_A: &str = r#"name = "a"
environments = ["sandbox"]
tags = ["smoke"]

[http]
url = "/health"
"#;

const PROBE_B: &str = r#"name = "b"
environments = ["sandbox", "other"]

[http]
url = "/health"
headers = { Authorization = "Bearer ${env:SYNTHMON_TEST_UNSET_B}" }
"#;

const PROBE_C: &str = r#"name = "c"
environments = ["other"]

[http]
url = "/health"
"#;

/// A run needs the secrets of what it runs: the selected probes, the
/// environments they run in, `[alerting]` with `--alert`. `check` (and the
/// daemon) still need every one, and everything is still checked.
#[test]
fn probe_x_demands_the_secrets_of_x_only_not_of_every_probe() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        SCOPED_CONFIG,
        &[
            ("a.toml", PROBE_A),
            ("b.toml", PROBE_B),
            ("c.toml", PROBE_C),
        ],
    );
    let b = "SYNTHMON_TEST_UNSET_B";
    let env = "SYNTHMON_TEST_UNSET_ENV";
    let hook = "SYNTHMON_TEST_UNSET_HOOK";
    let run = |args: &[&str]| {
        let mut all = vec!["--config", "config.toml"];
        all.extend_from_slice(args);
        synthmon(dir.path(), &all, &[])
    };
    let names = |run: &common::Run| -> Vec<&str> {
        [b, env, hook]
            .into_iter()
            .filter(|v| run.stderr.contains(&format!("`{v}`")))
            .collect()
    };

    for selection in [
        &["--probe", "a"][..],
        &["--tag", "smoke"],
        &["--probe", "a", "--env", "nowhere"],
    ] {
        let mut args = vec!["--once"];
        args.extend_from_slice(selection);
        let r = run(&args);
        if selection.contains(&"nowhere") {
            // Selecting nothing that exists is still a usage error, not
            // one about secrets.
            r.assert_code(2);
            assert!(
                r.stderr.contains("no environment named `nowhere`"),
                "{}",
                r.stderr
            );
            assert_eq!(names(&r), Vec::<&str>::new(), "{}", r.stderr);
            continue;
        }
        r.assert_code(0);
        assert!(r.stdout.contains("PASS  a @ sandbox"), "{}", r.stdout);
    }

    // b in `sandbox` only: b's own secret, not `other`'s.
    let r = run(&["--once", "--probe", "b", "--env", "sandbox"]);
    r.assert_code(2);
    assert_eq!(names(&r), vec![b], "{}", r.stderr);
    let (line, column) = position_of(PROBE_B, "\"Bearer ${env:");
    assert!(
        r.stderr.contains(&format!(
            "probes/b.toml:{line}:{column}: error: http.headers.Authorization: environment variable `{b}`"
        )),
        "{}",
        r.stderr
    );
    // c runs in `other`, whose header needs its secret.
    let r = run(&["--once", "--probe", "a", "--probe", "c"]);
    r.assert_code(2);
    assert_eq!(names(&r), vec![env], "{}", r.stderr);
    assert!(
        r.stderr
            .contains("error: environments.other.headers.X-Other: environment variable"),
        "{}",
        r.stderr
    );
    // --alert sends through the receivers: their secrets are needed.
    let r = run(&["--once", "--probe", "a", "--alert"]);
    r.assert_code(2);
    assert_eq!(names(&r), vec![hook], "{}", r.stderr);
    // Everything selected: every probe's and environment's, not alerting's.
    let r = run(&["--once"]);
    r.assert_code(2);
    assert_eq!(names(&r), vec![b, env], "{}", r.stderr);
    // check, like the daemon, needs them all.
    let r = run(&["check"]);
    r.assert_code(2);
    assert_eq!(names(&r), vec![b, env, hook], "{}", r.stderr);
    assert!(r.stderr.contains("3 errors"), "{}", r.stderr);

    // A mistake in a probe that is not run is still a mistake.
    let broken = PROBE_B.replace("url = ", "ulr = ");
    write_config(
        dir.path(),
        SCOPED_CONFIG,
        &[("a.toml", PROBE_A), ("b.toml", &broken)],
    );
    let r = run(&["--once", "--probe", "a"]);
    r.assert_code(2);
    assert!(r.stderr.contains("unknown key `ulr`"), "{}", r.stderr);
    assert_eq!(names(&r), Vec::<&str>::new(), "{}", r.stderr);
}

/// Credentials in a URL were silently dropped (and the URL, password and
/// all, shown in reports). They are refused where they are written, located,
/// with `basic_auth` as the way to send them; the message never repeats
/// the URL. A URL that a template renders at run time is refused then.
#[test]
fn url_userinfo_is_rejected_with_a_hint_to_use_basic_auth_not_silently_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"[environments.sandbox]
base_url = "builtin:sandbox"

[environments.creds]
base_url = "https://api:${env:SYNTHMON_TEST_CANARY}@api.example.com/v1"
"#;
    let http = r#"name = "userinfo"
environments = ["sandbox"]

[http]
url = "https://probe:${env:SYNTHMON_TEST_CANARY}@example.com/x"
"#;
    let flow = r#"name = "flow-userinfo"
environments = ["sandbox"]

[[flow.steps]]
url = "http://u:${env:SYNTHMON_TEST_CANARY}@example.com/"
"#;
    let stream = r#"name = "stream-userinfo"
environments = ["sandbox"]

[stream]
url = "http://u:${env:SYNTHMON_TEST_CANARY}@example.com/events"
min_events = 1
"#;
    let ws = r#"name = "ws-userinfo"
environments = ["sandbox"]

[websocket]
url = "ws://u:${env:SYNTHMON_TEST_CANARY}@example.com/ws/echo"
"#;
    write_config(
        dir.path(),
        config,
        &[
            ("http.toml", http),
            ("flow.toml", flow),
            ("stream.toml", stream),
            ("ws.toml", ws),
        ],
    );
    let run = synthmon(
        dir.path(),
        &["--config", "config.toml", "check"],
        &[("SYNTHMON_TEST_CANARY", CANARY)],
    );
    run.assert_code(2);
    assert!(!run.stderr.contains(CANARY), "{}", run.stderr);
    let refused = "the URL carries credentials (`user:password@`), which are not sent and would show in reports: remove them and write `basic_auth = { user = \"…\", password = \"${env:NAME}\" }`";
    let at = |text: &str, file: &str, key: &str, needle: &str| {
        let (line, column) = position_of(text, needle);
        format!("{file}:{line}:{column}: error: {key}: {refused}")
    };
    for expected in [
        at(
            config,
            "config.toml",
            "environments.creds.base_url",
            "\"https://api:",
        ),
        at(http, "probes/http.toml", "http.url", "\"https://probe:"),
        at(flow, "probes/flow.toml", "flow.steps[0].url", "\"http://u:"),
        at(stream, "probes/stream.toml", "stream.url", "\"http://u:"),
        at(ws, "probes/ws.toml", "websocket.url", "\"ws://u:"),
    ] {
        assert!(
            run.stderr.contains(&expected),
            "{expected}\nnot in\n{}",
            run.stderr
        );
    }
    assert!(run.stderr.contains("5 errors"), "{}", run.stderr);

    // Rendered at run time: the run fails, saying why, without the URL.
    let dir = tempfile::tempdir().unwrap();
    let templated = r#"name = "templated"
environments = ["sandbox"]

[http]
url = "{{ vars.target }}"
"#;
    let config = format!("{CONFIG}variables = {{ target = \"/health\" }}\n");
    write_config(dir.path(), &config, &[("t.toml", templated)]);
    let var = format!("target=http://user:{CANARY}@127.0.0.1:9/x");
    let run = synthmon(
        dir.path(),
        &[
            "--config",
            "config.toml",
            "--once",
            "--output",
            "json",
            "--var",
            &var,
        ],
        &[],
    );
    run.assert_code(1);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let result = &doc["results"][0];
    assert_eq!(result["reason"], "request", "{result:#}");
    assert_eq!(
        result["error"],
        format!("the url template rendered an unusable url: {refused}"),
        "{result:#}"
    );
    assert!(!run.stdout.contains(CANARY) && !run.stderr.contains(CANARY));
}

/// `basic_auth` (on a probe, a flow step or an environment) sends
/// `Authorization: Basic base64(user:password)`; the password and the
/// header's token are masked in reports, even for a password written in
/// clear. The `b64` filter builds the same header from a template.
#[test]
fn basic_auth_and_the_b64_filter_send_credentials_that_reports_mask() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"[environments.sandbox]
base_url = "builtin:sandbox"
variables = { user = "probe" }

[environments.guarded]
base_url = "builtin:sandbox"
basic_auth = { user = "env-user", password = "${env:SYNTHMON_TEST_CANARY}" }
"#;
    let token = |user: &str, password: &str| {
        synthmon::secret::base64(format!("{user}:{password}").as_bytes())
    };
    let sent = format!(
        r#"name = "basic-sent"
environments = ["sandbox"]

[http]
url = "/headers"
basic_auth = {{ user = "probe", password = "${{env:SYNTHMON_TEST_CANARY}}" }}
expect = ["json.authorization == 'Basic {}'"]
"#,
        token("probe", CANARY)
    );
    let env_sent = format!(
        r#"name = "env-sent"
environments = ["guarded"]

[http]
url = "/headers"
expect = ["json.authorization == 'Basic {}'"]
"#,
        token("env-user", CANARY)
    );
    let filtered = format!(
        r#"name = "b64-sent"
environments = ["sandbox"]

[http]
url = "/headers"
headers = {{ Authorization = "Basic {{{{ (vars.user ~ ':' ~ 'in-clear-pw') | b64 }}}}" }}
expect = ["json.authorization == 'Basic {}'"]
"#,
        token("probe", "in-clear-pw")
    );
    // Fails, so the report shows what was sent: masked.
    let shown = r#"name = "basic-shown"
environments = ["sandbox"]

[[flow.steps]]
url = "/headers"
basic_auth = { user = "probe", password = "written-in-clear" }
expect = ["json.authorization == 'x'"]
"#;
    write_config(
        dir.path(),
        config,
        &[
            ("sent.toml", &sent),
            ("env.toml", &env_sent),
            ("b64.toml", &filtered),
            ("shown.toml", shown),
        ],
    );
    let run = synthmon(
        dir.path(),
        &["--config", "config.toml", "--once", "--output", "json"],
        &[("SYNTHMON_TEST_CANARY", CANARY), ("SYNTHMON_LOG", "trace")],
    );
    run.assert_code(1);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let results = doc["results"].as_array().unwrap();
    let result = |name: &str| results.iter().find(|r| r["probe"] == name).unwrap();
    for name in ["basic-sent", "env-sent", "b64-sent"] {
        assert_eq!(result(name)["success"], true, "{:#}", result(name));
    }
    let shown = result("basic-shown");
    assert_eq!(shown["success"], false, "{shown:#}");
    let actual = shown["steps"][0]["assertions"][1]["actual"]
        .as_str()
        .unwrap();
    assert_eq!(actual, "json.authorization = \"Basic ***\"", "{shown:#}");
    for secret in [
        CANARY.to_owned(),
        token("probe", CANARY),
        token("env-user", CANARY),
        "written-in-clear".to_owned(),
        token("probe", "written-in-clear"),
    ] {
        assert!(
            !run.stdout.contains(&secret) && !run.stderr.contains(&secret),
            "`{secret}` leaked:\n{}\n{}",
            run.stdout,
            run.stderr
        );
    }
    // A password in clear in a file works, and is worth a warning.
    assert!(
        run.stderr
            .contains("a basic-auth password is written in clear in the file"),
        "{}",
        run.stderr
    );

    // Both ways of setting the header at once is a located error.
    let both = r#"name = "both"
environments = ["sandbox"]

[http]
url = "/headers"
headers = { authorization = "Bearer x" }
basic_auth = { user = "a:b" }
"#;
    write_config(dir.path(), config, &[("both.toml", both)]);
    std::fs::remove_file(dir.path().join("probes/sent.toml")).unwrap();
    std::fs::remove_file(dir.path().join("probes/env.toml")).unwrap();
    std::fs::remove_file(dir.path().join("probes/b64.toml")).unwrap();
    std::fs::remove_file(dir.path().join("probes/shown.toml")).unwrap();
    let run = synthmon(
        dir.path(),
        &["--config", "config.toml", "check"],
        &[("SYNTHMON_TEST_CANARY", CANARY)],
    );
    run.assert_code(2);
    let (line, column) = position_of(both, "basic_auth");
    for expected in [
        format!(
            "probes/both.toml:{line}:{column}: error: http.basic_auth: `basic_auth` and `http.headers.Authorization` both set the Authorization header: keep one"
        ),
        format!(
            "probes/both.toml:{line}:{column}: error: http.basic_auth: missing required key `password`"
        ),
        "error: http.basic_auth.user: a basic-auth user cannot contain `:` (RFC 7617)".to_owned(),
    ] {
        assert!(
            run.stderr.contains(&expected),
            "{expected}\nnot in\n{}",
            run.stderr
        );
    }
}

/// A filter that does not exist used to pass `check` and fail every run
/// when the template was rendered; it is a located error at load, with the
/// nearest filter that exists.
#[test]
fn unknown_template_filters_fail_check_not_the_runs() {
    let dir = tempfile::tempdir().unwrap();
    let probe = r#"name = "typo"
environments = ["sandbox"]

[http]
url = "/headers"
headers = { Authorization = "Basic {{ 'a:b' | b46 }}" }
"#;
    write_config(dir.path(), CONFIG, &[("typo.toml", probe)]);
    let run = synthmon(dir.path(), &["--config", "config.toml", "check"], &[]);
    run.assert_code(2);
    let (line, column) = position_of(probe, "\"Basic {{");
    let expected = format!(
        "probes/typo.toml:{line}:{column}: error: http.headers.Authorization: unknown filter `b46` in template `Basic {{{{ 'a:b' | b46 }}}}`; did you mean `b64`?"
    );
    assert!(
        run.stderr.contains(&expected),
        "{expected}\nnot in\n{}",
        run.stderr
    );
    // `--once` refuses it the same way, before sending anything.
    let run = synthmon(dir.path(), &["--config", "config.toml", "--once"], &[]);
    run.assert_code(2);
    assert!(run.stderr.contains(&expected), "{}", run.stderr);

    // A webhook's body template too, where a typo would have failed
    // every notification.
    let config = format!(
        "{CONFIG}[alerting]\ndefault_receivers = [\"hook\"]\n[alerting.receivers.hook]\nurl = \"http://127.0.0.1:9/hook\"\ntemplate = '{{{{ alerts | tojsn }}}}'\n"
    );
    write_config(dir.path(), &config, &[]);
    std::fs::remove_file(dir.path().join("probes/typo.toml")).unwrap();
    let run = synthmon(dir.path(), &["--config", "config.toml", "check"], &[]);
    run.assert_code(2);
    assert!(
        run.stderr.contains(
            "config.toml:7:12: error: alerting.receivers.hook.template: invalid body template: unknown filter `tojsn` in template `{{ alerts | tojsn }}`; did you mean `tojson`?"
        ),
        "{}",
        run.stderr
    );
}

/// A `stream` probe sends `basic_auth` too (checked by a server that reads
/// the request head), and its facts never show the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_probe_sends_basic_auth() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    common::within(std::time::Duration::from_secs(20), async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if socket.read(&mut byte).await.unwrap() == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\nid: 1\ndata: hi\n\n")
                .await
                .unwrap();
            String::from_utf8_lossy(&head).into_owned()
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, format!("{CANARY}\n")).unwrap();
        let probe = r#"name = "events"
environments = ["target"]

[stream]
url = "/events"
basic_auth = { user = "reader", password = "${file:../pw}" }
min_events = 1
"#;
        let config = common::write_config(
            dir.path(),
            &common::config_with_target(&format!("http://{addr}")),
            &[("events.toml", probe)],
        );
        let config = common::load(&config);
        let outcome = common::run_one(&config).await;
        let head = server.await.unwrap();
        let token = synthmon::secret::base64(format!("reader:{CANARY}").as_bytes());
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("authorization: basic {}", token.to_ascii_lowercase())),
            "{head}"
        );
        assert!(outcome.success, "{outcome:#?}");
        let shown = serde_json::to_string(&outcome).unwrap();
        assert!(!shown.contains(CANARY) && !shown.contains(&token), "{shown}");
    })
    .await;
}
