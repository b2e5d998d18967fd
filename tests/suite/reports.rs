//! `--once --junit FILE` and `--once --html FILE` end to end: the real
//! binary on a config of its own against the built-in sandbox, with a
//! passing probe, a failing one whose expectation carries hostile text, a
//! flow and a workload with a latency threshold. The JUnit file is
//! validated against tests/fixtures/junit.xsd with `xmllint` (Debian's
//! libxml2-utils; its absence fails the test) and both files are read back
//! with an XML parser (the HTML page is well-formed XML by design), their
//! ids checked against the JSON report of the same run.

use crate::common;

use common::{repo, synthmon, write_config};
use std::collections::BTreeMap;
use std::path::Path;

const CONFIG: &str = "[daemon]\nprobes = [\"probes/*.toml\"]\n\n[environments.sandbox]\nbase_url = \"builtin:sandbox\"\n";

const HEALTH: &str = "name = \"health\"\nenvironments = [\"sandbox\"]\n\n[http]\nurl = \"/health\"\nexpect = [\"status == 200\"]\n";

/// Fails: the sandbox answers 500. Its second expectation holds markup,
/// an ampersand and quotes, which every report must show as text.
const BROKEN: &str = r#"name = "broken"
environments = ["sandbox"]

[http]
url = "/status/500"
expect = [
  "status == 200",
  "body == '<script>alert(\"x\")</script> & more'",
]
"#;

/// The expression as the reports must show it, unescaped.
const HOSTILE: &str = "body == '<script>alert(\"x\")</script> & more'";

const JOURNEY: &str = r#"name = "journey"
environments = ["sandbox"]
timeout = "10s"

[[flow.steps]]
name = "create"
method = "POST"
url = "/api/orders"
json = { item = "widget", quantity = 1 }
expect = ["status == 201"]
capture = { order_id = "json.id" }

[[flow.steps]]
name = "verify"
url = "/api/orders/{{ vars.order_id }}"
expect = ["status == 200"]

[[flow.teardown]]
name = "delete"
method = "DELETE"
url = "/api/orders/{{ vars.order_id }}"
expect = ["status == 204"]
"#;

const LOAD: &str = r#"name = "load"
environments = ["sandbox"]
timeout = "2s"
thresholds = [{ failing = "p(99) < 1s", degraded = "p(99) < 500ms" }]

[workload]
requests = 30
rate = 30
max_concurrency = 15

[http]
url = "/health"
expect = ["status == 200"]
"#;

/// An element of a parsed document.
#[derive(Debug, Default)]
struct Node {
    name: String,
    attrs: BTreeMap<String, String>,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn attr(&self, name: &str) -> &str {
        self.attrs.get(name).unwrap_or_else(|| {
            panic!(
                "<{}> has no `{name}` attribute: {:?}",
                self.name, self.attrs
            )
        })
    }

    fn num(&self, name: &str) -> f64 {
        self.attr(name).parse().unwrap()
    }

    fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every element below this one, depth first.
    fn descendants(&self) -> Vec<&Node> {
        let mut all = Vec::new();
        for c in &self.children {
            all.push(c);
            all.extend(c.descendants());
        }
        all
    }

    /// The text of this element and all below it (its own first).
    fn all_text(&self) -> String {
        let mut t = self.text.clone();
        for c in &self.children {
            t.push_str(&c.all_text());
        }
        t
    }

    fn has_class(&self, class: &str) -> bool {
        self.attrs
            .get("class")
            .is_some_and(|c| c.split_whitespace().any(|w| w == class))
    }

    /// A `<properties>` child's name → value.
    fn properties(&self) -> BTreeMap<String, String> {
        self.child("properties")
            .map(|p| {
                p.children("property")
                    .map(|p| (p.attr("name").to_owned(), p.attr("value").to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Parses `text` with quick-xml into a tree: entities and character
/// references resolved (an unknown entity, such as an HTML-only one, fails),
/// end tags checked against their start tags.
fn parse(text: &str) -> Node {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack = vec![Node::default()];
    let element = |e: &quick_xml::events::BytesStart<'_>| Node {
        name: String::from_utf8(e.name().as_ref().to_vec()).unwrap(),
        attrs: e
            .attributes()
            .map(|a| {
                let a = a.unwrap();
                (
                    String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                    a.unescape_value().unwrap().into_owned(),
                )
            })
            .collect(),
        ..Node::default()
    };
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => stack.push(element(&e)),
            Ok(Event::Empty(e)) => {
                let node = element(&e);
                stack.last_mut().unwrap().children.push(node);
            }
            Ok(Event::End(_)) => {
                let node = stack.pop().unwrap();
                stack.last_mut().unwrap().children.push(node);
            }
            Ok(Event::Text(t)) => stack
                .last_mut()
                .unwrap()
                .text
                .push_str(&t.xml_content().unwrap()),
            Ok(Event::GeneralRef(r)) => {
                let name = r.decode().unwrap();
                let reference = format!("&{name};");
                let resolved = quick_xml::escape::unescape(&reference)
                    .unwrap_or_else(|e| panic!("entity `{reference}` is not XML's: {e}"));
                stack.last_mut().unwrap().text.push_str(&resolved);
            }
            Ok(Event::CData(_)) => panic!("no CDATA expected"),
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!(
                "not well-formed at byte {}: {e}\n{text}",
                reader.buffer_position()
            ),
        }
    }
    assert_eq!(stack.len(), 1, "unclosed elements");
    let mut root = stack.pop().unwrap();
    assert_eq!(root.children.len(), 1, "one root element");
    root.children.remove(0)
}

/// Validates `file` against the JUnit schema with xmllint; returns
/// xmllint's verdict and its output. Fails the test when xmllint is
/// missing: the schema check must not be skipped silently.
fn xmllint(file: &Path) -> (bool, String) {
    let schema = repo().join("tests/fixtures/junit.xsd");
    let out = std::process::Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&schema)
        .arg(file)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run xmllint ({e}): install libxml2-utils \
                 (apt-get install libxml2-utils) to validate the JUnit report"
            )
        });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_valid_junit(file: &Path) {
    let (ok, output) = xmllint(file);
    assert!(
        ok,
        "{} does not validate against tests/fixtures/junit.xsd:\n{output}\n{}",
        file.display(),
        std::fs::read_to_string(file).unwrap_or_default()
    );
}

/// A run of the four probes with JSON on stdout and both files written;
/// returns the JSON document, the JUnit tree, the HTML text and tree.
struct Reports {
    /// Holds the files while the checks run.
    _dir: tempfile::TempDir,
    /// Where the reports and `artifacts/` were written.
    out: std::path::PathBuf,
    json: serde_json::Value,
    junit: Node,
    html_text: String,
    html: Node,
}

fn run_reports() -> Reports {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        CONFIG,
        &[
            ("broken.toml", BROKEN),
            ("health.toml", HEALTH),
            ("journey.toml", JOURNEY),
            ("load.toml", LOAD),
        ],
    );
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let (junit, html) = (out.join("report.xml"), out.join("report.html"));
    let artifacts = out.join("artifacts");
    let run = synthmon(
        dir.path(),
        &[
            "--config",
            &config.display().to_string(),
            "--once",
            "--output",
            "json",
            "--junit",
            &junit.display().to_string(),
            "--html",
            &html.display().to_string(),
            "--artifacts",
            &artifacts.display().to_string(),
        ],
        &[],
    );
    run.assert_code(1);
    // Written atomically: the two files and nothing else (no temporary
    // file left behind).
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["artifacts", "report.html", "report.xml"]);
    assert_valid_junit(&junit);
    let json: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", run.stdout));
    let html_text = std::fs::read_to_string(&html).unwrap();
    Reports {
        _dir: dir,
        out,
        json,
        junit: parse(&std::fs::read_to_string(&junit).unwrap()),
        html: parse(&html_text),
        html_text,
    }
}

/// The JSON result of `probe`.
fn result<'a>(json: &'a serde_json::Value, probe: &str) -> &'a serde_json::Value {
    json["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["probe"] == probe)
        .unwrap_or_else(|| panic!("no result for {probe}"))
}

#[test]
fn junit_and_html_reports_of_a_run_with_a_failure_a_flow_and_a_workload() {
    let r = run_reports();

    // `--output json` keeps its documented schema beside the files.
    let keys: Vec<&str> = r
        .json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["results", "schema_version", "summary", "synthmon_version"],
        "{:#}",
        r.json
    );
    assert_eq!(r.json["schema_version"], 1);
    assert_eq!(r.json["summary"]["failed"], 1, "{:#}", r.json);

    check_junit(&r.junit, &r.json, &r.out);
    check_html(&r.html, &r.html_text, &r.json, &r.out);
}

fn check_junit(root: &Node, json: &serde_json::Value, out_dir: &Path) {
    assert_eq!(root.name, "testsuites");
    let suites: Vec<&Node> = root.children("testsuite").collect();
    let mut names: Vec<&str> = suites.iter().map(|s| s.attr("name")).collect();
    names.sort_unstable();
    assert_eq!(names, ["broken", "health", "journey", "load"]);
    // Every count is the count of what is there.
    let mut totals = [0usize; 4];
    for s in &suites {
        let cases: Vec<&Node> = s.children("testcase").collect();
        let count = |what: &str| cases.iter().filter(|c| c.child(what).is_some()).count();
        let these = [
            cases.len(),
            count("failure"),
            count("error"),
            count("skipped"),
        ];
        for (i, (attr, n)) in ["tests", "failures", "errors", "skipped"]
            .iter()
            .zip(these)
            .enumerate()
        {
            assert_eq!(s.num(attr) as usize, n, "{attr} of {}", s.attr("name"));
            totals[i] += n;
        }
        for c in &cases {
            assert_eq!(c.attr("classname"), s.attr("name"));
            assert!(c.num("time") >= 0.0);
        }
    }
    for (attr, n) in ["tests", "failures", "errors", "skipped"]
        .iter()
        .zip(totals)
    {
        assert_eq!(root.num(attr) as usize, n, "{attr} of testsuites");
    }
    assert_eq!(root.num("failures"), 1.0, "only `broken` fails");
    let suite = |name: &str| *suites.iter().find(|s| s.attr("name") == name).unwrap();
    let case = |suite_name: &str, name: &str| {
        suite(suite_name)
            .children("testcase")
            .find(|c| c.attr("name") == name)
            .unwrap_or_else(|| panic!("no testcase `{name}` in suite `{suite_name}`"))
    };

    // The failing probe: its reason, the failing expectations with what was
    // seen and where they were written, and the ids of its run.
    let broken = case("broken", "sandbox");
    let failure = broken.child("failure").expect("a <failure>");
    assert_eq!(failure.attr("type"), "assertion");
    assert!(
        failure.attr("message").starts_with("assertion: "),
        "{failure:?}"
    );
    let body = &failure.text;
    assert!(body.contains("expected: status == 200  ("), "{body}");
    assert!(body.contains("broken.toml:7:3)"), "{body}");
    assert!(body.contains("actual:   status = 500"), "{body}");
    assert!(body.contains(&format!("expected: {HOSTILE}")), "{body}");
    assert!(body.contains("→ 500"), "{body}");
    let json_broken = result(json, "broken");
    let props = broken.properties();
    assert_eq!(props["run_id"], json_broken["run_id"].as_str().unwrap());
    assert_eq!(props["trace_id"], json_broken["trace_id"].as_str().unwrap());
    assert_eq!(props["status"], "500");
    // The failure's artifact: a property naming the file, an attachment
    // line CI readers show, and the response quoted in the failure.
    let artifact = Path::new(&props["artifact"]);
    assert!(
        artifact.starts_with(out_dir.join("artifacts")),
        "{artifact:?}"
    );
    let kept = std::fs::read_to_string(artifact).unwrap();
    assert!(
        kept.contains(json_broken["run_id"].as_str().unwrap()),
        "{kept}"
    );
    assert!(
        body.contains(&format!("artifact: {}", props["artifact"])),
        "{body}"
    );
    assert!(body.contains("response: 500, "), "{body}");
    let out = &broken.child("system-out").expect("system-out").text;
    assert!(
        out.contains(&format!("[[ATTACHMENT|{}]]", props["artifact"])),
        "{out}"
    );
    assert!(
        out.contains(&format!("trace_id: {}", props["trace_id"])),
        "{out}"
    );

    // The flow: the run and a case per step, each with its own span id.
    let json_journey = result(json, "journey");
    let steps = json_journey["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "{json_journey:#}");
    assert!(case("journey", "sandbox").child("failure").is_none());
    for (name, step) in ["create", "verify", "teardown delete"].iter().zip(steps) {
        let c = case("journey", &format!("sandbox / {name}"));
        assert!(c.child("failure").is_none() && c.child("skipped").is_none());
        let p = c.properties();
        assert_eq!(p["span_id"], step["span_id"].as_str().unwrap());
        assert_eq!(p["run_id"], json_journey["run_id"].as_str().unwrap());
    }
    assert_eq!(suite("journey").num("tests"), 4.0);

    // The workload: its thresholds are cases (the implicit drop limit too).
    let threshold = case("load", "sandbox / threshold p(99) < 1s");
    assert!(threshold.child("failure").is_none());
    assert_eq!(threshold.properties()["unit"], "seconds");
    case("load", "sandbox / threshold dropped_rate < 1% (default)");
    let load_out = &case("load", "sandbox").child("system-out").unwrap().text;
    assert!(load_out.contains("workload: 30 sent"), "{load_out}");
}

fn check_html(root: &Node, text: &str, json: &serde_json::Value, out_dir: &Path) {
    assert!(text.starts_with("<!DOCTYPE html>\n"), "{text}");
    assert_eq!(root.name, "html");
    let all = root.descendants();

    // Self-contained: no script, no external resource of any kind, links
    // only to the page's own sections, and to artifact files beside it.
    let ids: Vec<&str> = all
        .iter()
        .filter_map(|n| n.attrs.get("id"))
        .map(String::as_str)
        .collect();
    for n in &all {
        assert!(
            ![
                "script", "link", "img", "iframe", "object", "embed", "image", "use", "base"
            ]
            .contains(&n.name.as_str()),
            "<{}> in a self-contained page",
            n.name
        );
        for (name, value) in &n.attrs {
            assert!(
                !name.starts_with("on"),
                "event handler {name} on <{}>",
                n.name
            );
            assert!(
                !value.contains("http://") && !value.contains("https://") && !value.contains("//"),
                "{name}=\"{value}\" on <{}> reaches the network",
                n.name
            );
            if name == "href" && n.has_class("artifact-file") {
                let file = out_dir.join(value);
                assert!(
                    !value.starts_with('/') && file.is_file(),
                    "href=\"{value}\" is not a relative link to a file beside the page"
                );
            } else if name == "href" {
                let target = value
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("href=\"{value}\" is not a link inside the page"));
                assert!(ids.contains(&target), "href=\"{value}\" names no element");
            }
            assert!(
                !["src", "srcset", "xlink:href", "action", "poster", "data"]
                    .contains(&name.as_str()),
                "{name}=\"{value}\" on <{}>",
                n.name
            );
        }
    }
    let style = all.iter().find(|n| n.name == "style").expect("inline CSS");
    assert!(
        !style.text.contains("url(") && !style.text.contains("@import"),
        "{}",
        style.text
    );
    // The hostile text is text: escaped in the file, intact when parsed.
    assert!(!text.to_lowercase().contains("<script"), "{text}");
    assert!(
        text.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more"),
        "{text}"
    );

    // A card per probe.
    let cards: Vec<&&Node> = all
        .iter()
        .filter(|n| n.name == "article" && n.has_class("card"))
        .collect();
    let mut probes: Vec<&str> = cards.iter().map(|c| c.attr("data-probe")).collect();
    probes.sort_unstable();
    assert_eq!(probes, ["broken", "health", "journey", "load"]);
    let card = |probe: &str| {
        **cards
            .iter()
            .find(|c| c.attr("data-probe") == probe)
            .unwrap()
    };
    assert!(card("broken").has_class("fail") && card("health").has_class("pass"));

    // The failure: the expectation as written, what was seen, the ids, and
    // the hook for its artifacts.
    let broken = card("broken").descendants();
    let expected: Vec<String> = broken
        .iter()
        .filter(|n| n.has_class("expected"))
        .map(|n| n.all_text())
        .collect();
    assert_eq!(expected, ["status == 200", HOSTILE]);
    let actual: Vec<String> = broken
        .iter()
        .filter(|n| n.has_class("actual"))
        .map(|n| n.all_text())
        .collect();
    assert_eq!(actual[0], "status = 500");
    let trace = broken.iter().find(|n| n.has_class("trace-id")).unwrap();
    assert_eq!(
        trace.all_text(),
        result(json, "broken")["trace_id"].as_str().unwrap()
    );
    assert!(
        broken.iter().any(|n| n
            .attrs
            .get("data-hook")
            .is_some_and(|h| h == "failure-artifacts")),
        "no artifacts section in the failed card"
    );
    // The artifact: its file linked, the redacted request and the response
    // with the start of its body.
    let link = broken
        .iter()
        .find(|n| n.has_class("artifact-file"))
        .expect("a link to the artifact file");
    let kept = std::fs::read_to_string(out_dir.join(link.attr("href"))).unwrap();
    assert!(kept.contains(result(json, "broken")["run_id"].as_str().unwrap()));
    let request = broken.iter().find(|n| n.has_class("request")).unwrap();
    assert!(request.all_text().starts_with("GET http://127.0.0.1:"));
    assert!(request.all_text().ends_with("/status/500"));
    let status = broken
        .iter()
        .find(|n| n.has_class("response-status"))
        .unwrap();
    assert_eq!(status.all_text(), "500");
    assert!(
        broken
            .iter()
            .any(|n| n.name == "pre" && n.has_class("body"))
    );

    // The workload's histogram: its samples, and the threshold lines at
    // their limits on the axis.
    let load = card("load").descendants();
    let histogram = load
        .iter()
        .find(|n| n.name == "svg" && n.has_class("histogram"))
        .expect("a latency histogram in the workload's card");
    let samples = result(json, "load")["latency"]["samples"].as_u64().unwrap();
    assert_eq!(histogram.num("data-samples") as u64, samples);
    let bins: f64 = histogram
        .children("rect")
        .filter(|r| r.has_class("bin"))
        .map(|r| r.num("height"))
        .sum();
    assert!(bins > 0.0, "no bars");
    // A logarithmic axis: x0 is data-axis-min, x1 data-axis-max.
    assert_eq!(histogram.attr("data-scale"), "log10");
    let (x0, x1, min, max) = (
        histogram.num("data-x0"),
        histogram.num("data-x1"),
        histogram.num("data-axis-min"),
        histogram.num("data-axis-max"),
    );
    let p99 = result(json, "load")["latency"]["p99"].as_f64().unwrap();
    assert!(min <= p99 && p99 <= max && max >= 1.0, "{min}..{max}");
    let lines: Vec<&Node> = histogram
        .children("line")
        .filter(|l| l.has_class("threshold"))
        .collect();
    assert_eq!(lines.len(), 2, "the failing and the degraded level");
    for (source, seconds, degraded) in [("p(99) < 1s", 1.0, false), ("p(99) < 500ms", 0.5, true)] {
        let line = lines
            .iter()
            .find(|l| l.attr("data-threshold") == source)
            .unwrap_or_else(|| panic!("no line for {source}"));
        assert_eq!(line.num("data-seconds"), seconds);
        assert_eq!(line.has_class("degraded"), degraded);
        let at = x0 + (seconds / min).log10() / (max / min).log10() * (x1 - x0);
        assert!(
            (line.num("x1") - at).abs() < 0.01,
            "{source} at {} not {at}",
            line.num("x1")
        );
        assert_eq!(line.num("x1"), line.num("x2"), "a vertical line");
    }

    // The flow's waterfall: one bar per step, in order, each at its place.
    let journey = card("journey").descendants();
    let waterfall = journey
        .iter()
        .find(|n| n.name == "svg" && n.has_class("waterfall"))
        .expect("a waterfall in the flow's card");
    let bars: Vec<&Node> = waterfall
        .children("rect")
        .filter(|r| r.has_class("step"))
        .collect();
    let names: Vec<&str> = bars.iter().map(|b| b.attr("data-step")).collect();
    assert_eq!(names, ["create", "verify", "delete"]);
    assert!(bars.iter().all(|b| b.has_class("pass")));
    assert!(bars[2].has_class("stage-teardown"));
    assert!(
        bars[0].num("x") <= bars[1].num("x") && bars[1].num("x") <= bars[2].num("x"),
        "steps start in order"
    );

    // The summary links every run.
    let rows = all
        .iter()
        .filter(|n| n.name == "table" && n.has_class("overview"))
        .flat_map(|t| t.descendants())
        .filter(|n| n.name == "tr")
        .count();
    assert_eq!(rows, 5, "a header and a row per run");
}

/// The files are written even when nothing can run: a config error is a
/// JUnit error case (valid against the schema) and an HTML page saying so.
#[test]
fn a_config_error_is_reported_in_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        CONFIG,
        &[(
            "bad.toml",
            "name = \"bad\"\nenvironments = [\"sandbox\"]\ntimout = \"1s\"\n\n[http]\nurl = \"/health\"\n",
        )],
    );
    let (junit, html) = (dir.path().join("j.xml"), dir.path().join("r.html"));
    let run = synthmon(
        dir.path(),
        &[
            "--config",
            &config.display().to_string(),
            "--once",
            "--junit",
            &junit.display().to_string(),
            "--html",
            &html.display().to_string(),
        ],
        &[],
    );
    run.assert_code(2);
    assert_valid_junit(&junit);
    let root = parse(&std::fs::read_to_string(&junit).unwrap());
    assert_eq!(root.num("errors"), 1.0);
    let case = root
        .children("testsuite")
        .flat_map(|s| s.children("testcase"))
        .next()
        .unwrap();
    assert!(
        case.attr("name").ends_with("bad.toml:3:1 timout"),
        "{case:?}"
    );
    let error = case.child("error").unwrap();
    assert_eq!(error.attr("type"), "config");
    assert!(error.text.contains("did you mean `timeout`?"), "{error:?}");
    let page = std::fs::read_to_string(&html).unwrap();
    let page_root = parse(&page);
    assert!(
        page_root.all_text().contains("unknown key `timout`"),
        "{page}"
    );
}

/// A file that cannot be written is an error (exit 2) naming it; the run's
/// report still reaches stdout.
#[test]
fn an_unwritable_report_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), CONFIG, &[("health.toml", HEALTH)]);
    let missing = dir.path().join("no-such-dir").join("report.xml");
    let run = synthmon(
        dir.path(),
        &[
            "--config",
            &config.display().to_string(),
            "--once",
            "--junit",
            &missing.display().to_string(),
        ],
        &[],
    );
    run.assert_code(2);
    assert!(
        run.stderr.contains("cannot write the JUnit report `")
            && run.stderr.contains("no-such-dir/report.xml"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("1 passed, 0 failed"), "{}", run.stdout);
}

/// The schema is not a formality: a report with a misplaced element, a
/// case without a name or a negative time does not validate.
#[test]
fn the_junit_schema_rejects_malformed_reports() {
    let dir = tempfile::tempdir().unwrap();
    let ok = "<testsuites><testsuite name=\"p\" tests=\"1\"><testcase name=\"e\" classname=\"p\" time=\"0.5\"><failure message=\"m\" type=\"t\">x</failure></testcase></testsuite></testsuites>";
    let bad = [
        ok.replace("<testcase name=\"e\" ", "<testcase "),
        ok.replace("time=\"0.5\"", "time=\"-1\""),
        ok.replace(
            "<failure message=\"m\" type=\"t\">x</failure></testcase>",
            "</testcase><failure/>",
        ),
        ok.replace("tests=\"1\"", "tests=\"one\""),
        ok.replace("<failure", "<properties/><failure"),
    ];
    let path = dir.path().join("r.xml");
    std::fs::write(&path, ok).unwrap();
    assert_valid_junit(&path);
    for doc in bad {
        std::fs::write(&path, &doc).unwrap();
        let (valid, _) = xmllint(&path);
        assert!(!valid, "validates but should not:\n{doc}");
    }
}

/// With `--baseline`, each pair's comparison is a case: a regression is a
/// failure naming both values and the tolerance, in both files.
#[test]
fn a_baseline_regression_is_a_failed_case() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), CONFIG, &[("health.toml", HEALTH)]);
    let config = config.display().to_string();
    let baseline = dir.path().join("baseline.json");
    let baseline_arg = baseline.display().to_string();
    synthmon(
        dir.path(),
        &[
            "--config",
            &config,
            "--once",
            "--save-baseline",
            &baseline_arg,
        ],
        &[],
    )
    .assert_code(0);
    // A baseline no real run can meet: 1 µs.
    let mut file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&baseline).unwrap()).unwrap();
    for metric in ["p50", "p90", "p95", "p99", "avg", "min", "max"] {
        file["probes"][0][metric] = serde_json::json!(0.000001);
    }
    std::fs::write(&baseline, file.to_string()).unwrap();
    let (junit, html) = (dir.path().join("j.xml"), dir.path().join("r.html"));
    let run = synthmon(
        dir.path(),
        &[
            "--config",
            &config,
            "--once",
            "--baseline",
            &baseline_arg,
            "--junit",
            &junit.display().to_string(),
            "--html",
            &html.display().to_string(),
        ],
        &[],
    );
    run.assert_code(1);
    assert_valid_junit(&junit);
    let root = parse(&std::fs::read_to_string(&junit).unwrap());
    assert_eq!(
        (root.num("tests"), root.num("failures")),
        (2.0, 1.0),
        "the run passes, its comparison fails"
    );
    let case = root
        .children("testsuite")
        .flat_map(|s| s.children("testcase"))
        .find(|c| c.attr("name") == "sandbox / baseline p95")
        .expect("a case for the comparison");
    let failure = case.child("failure").expect("a regression fails");
    assert_eq!(failure.attr("type"), "baseline");
    assert!(
        failure
            .attr("message")
            .contains("vs 0.0ms in the baseline, beyond the 20% tolerance"),
        "{failure:?}"
    );
    assert_eq!(case.properties()["verdict"], "regressed");
    let page = parse(&std::fs::read_to_string(&html).unwrap());
    let comparison = page
        .descendants()
        .into_iter()
        .find(|n| n.has_class("comparison"))
        .expect("the comparison in the card");
    assert_eq!(comparison.child("span").unwrap().text, "regressed");
    assert!(
        comparison.text.contains(" p95 ") && comparison.text.contains("vs 0.0ms baseline"),
        "{comparison:?}"
    );
}
