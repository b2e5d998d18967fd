//! The README's first examples, run as a newcomer would: the "Two commands"
//! sample, the five-minute tour's probe pasted into `probes/` with the
//! commands the tour gives, and the failed-run sample. Each command's output
//! must read as the README shows it, timings aside.
//!
//! These tests are about the shipped README, `config.toml` and examples, so
//! they read them; they run in a temp copy so nothing is written to the
//! repository.

use crate::common;

use common::{repo, synthmon};
use regex::Regex;
use std::path::Path;

/// The README, whole.
fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).unwrap()
}

/// The fenced blocks from `marker` on, in order: (info string, body).
fn blocks_after(text: &str, marker: &str) -> Vec<(String, String)> {
    let from = text
        .find(marker)
        .unwrap_or_else(|| panic!("README has no `{marker}`"));
    let mut found = Vec::new();
    let mut lines = text[from..].lines();
    while let Some(line) = lines.next() {
        if let Some(info) = line.strip_prefix("```") {
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            found.push((info.trim().to_owned(), body.join("\n")));
        }
    }
    found
}

/// The body of the first fenced block at or after `marker` whose info
/// string is `lang` (`""` for a bare fence).
fn block_after(text: &str, marker: &str, lang: &str) -> String {
    blocks_after(text, marker)
        .into_iter()
        .find(|(info, _)| info == lang)
        .map(|(_, body)| body)
        .unwrap_or_else(|| panic!("no ```{lang} block after `{marker}` in README"))
}

/// Output as compared: blank lines dropped, runs of spaces (column
/// padding, which depends on the longest probe name) made one, measured
/// numbers (`1.9ms`, `0.000%`) and the counts that grow with the shipped
/// examples made `#`. Status codes, expectation counts and `line:col`
/// positions stay exact.
fn shape(text: &str) -> Vec<String> {
    let decimal = Regex::new(r"\d+\.\d+").unwrap();
    let counts = Regex::new(r"^ok: \d+ probes, \d+ environments, \d+ ").unwrap();
    let passed = Regex::new(r"^\d+ passed,").unwrap();
    let spaces = Regex::new(r" +").unwrap();
    text.lines()
        .map(str::trim_end)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let line = spaces.replace_all(line, " ");
            let line = decimal.replace_all(&line, "#");
            let line = counts.replace(&line, "ok: # probes, # environments, # ");
            passed.replace(&line, "# passed,").into_owned()
        })
        .collect()
}

/// A temp copy of the shipped `config.toml` and `probes/` (with what the
/// examples read beside them, such as `probes/secrets/`), as a person's
/// checkout would be.
fn checkout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join("config.toml"), dir.path().join("config.toml")).unwrap();
    copy_tree(&repo().join("probes"), &dir.path().join("probes"));
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// The tour's probe saved where the tour says.
fn paste_tour(dir: &Path) {
    let probe = block_after(&readme(), "## Five-minute tour", "toml");
    std::fs::write(dir.join("probes").join("orders-api.toml"), probe).unwrap();
}

/// The arguments of a README command line `cargo run --release -- ARGS`.
fn arguments(command: &str) -> Vec<&str> {
    command
        .strip_prefix("cargo run --release -- ")
        .unwrap_or_else(|| panic!("README command `{command}` is not `cargo run --release -- …`"))
        .split_whitespace()
        .collect()
}

#[test]
fn the_two_commands_sample_shows_lines_a_real_run_prints() {
    let dir = checkout();
    let readme = readme();
    let command = block_after(&readme, "## Two commands", "sh");
    let first = command.lines().next().unwrap();
    let command = first.split('#').next().unwrap().trim();
    let run = synthmon(dir.path(), &arguments(command), &[]);
    run.assert_code(0);
    let actual = shape(&run.stdout);
    let sample = shape(&block_after(
        &readme,
        "runs every probe once and prints",
        "",
    ));
    for line in sample.iter().filter(|line| *line != "…") {
        assert!(
            actual.contains(line),
            "README line `{line}` is not in the real output:\n{}",
            run.stdout
        );
    }
    assert_eq!(
        sample.last(),
        actual.last(),
        "the summary line differs:\n{}",
        run.stdout
    );
}

#[test]
fn the_tour_probe_pasted_passes_and_its_commands_print_what_the_readme_shows() {
    let dir = checkout();
    paste_tour(dir.path());
    let readme = readme();
    let commands = block_after(&readme, "Try it:", "sh");
    let mut stdout = String::new();
    for command in commands.lines() {
        let run = synthmon(dir.path(), &arguments(command), &[]);
        run.assert_code(0);
        stdout.push_str(&run.stdout);
    }
    let sample = block_after(&readme, "Try it:", "");
    assert_eq!(shape(&stdout), shape(&sample), "real output:\n{stdout}");
    assert!(
        stdout.contains("PASS  orders-api @ sandbox  201"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failed_run_sample_is_what_the_tour_probe_prints_against_a_500() {
    common::within(std::time::Duration::from_secs(30), async {
        let sb = common::sandbox().await;
        let rule = r#"{"method":"POST","path_prefix":"/api/orders","status":500}"#;
        let (status, body) =
            common::http_request(sb.addr(), "POST", "/_sandbox/faults", Some(rule)).await;
        assert_eq!(status, 201, "{body}");
        // The tour's probe alone: the shipped examples that read the
        // built-in sandbox's own listeners (`vars.sandbox_https`, …) do
        // not load against another base URL.
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(repo().join("config.toml"), dir.path().join("config.toml")).unwrap();
        std::fs::create_dir(dir.path().join("probes")).unwrap();
        paste_tour(dir.path());
        let base_url = format!("environments.sandbox.base_url={}", sb.base_url());
        let cwd = dir.path().to_owned();
        let run = tokio::task::spawn_blocking(move || {
            synthmon(&cwd, &["--once", "--set", &base_url], &[])
        })
        .await
        .unwrap();
        run.assert_code(1);
        let sample = block_after(&readme(), "A failed run says which expectations failed", "");
        assert_eq!(
            shape(&run.stdout),
            shape(&sample),
            "real output:\n{}",
            run.stdout
        );
    })
    .await;
}
