//! One certificate fault reads the same in every kind that shakes hands:
//! the `http`, `tls`, `tcp` (with TLS) and `websocket` kinds, pointed at the
//! sandbox's TLS ports, must fail an expired, an untrusted (self-signed
//! chain: the sandbox's private CA, not trusted) and a wrong-host
//! certificate with the same reason and the same sentence. This pins the
//! net layer's one verifier and one error classifier.

use crate::common;

use common::{load, run_all, write_config};
use std::collections::BTreeMap;
use std::time::Duration;
use synthmon::outcome::FailureReason;

/// The kinds, each as a probe body aimed at `localhost:PORT`.
fn bodies(port: &str) -> [(&'static str, String); 4] {
    [
        (
            "http",
            format!("[http]\nurl = \"https://localhost:{port}/\"\n"),
        ),
        ("tls", format!("[tls]\naddress = \"localhost:{port}\"\n")),
        (
            "tcp",
            format!("[tcp]\naddress = \"localhost:{port}\"\ntls = true\nbanner = true\n"),
        ),
        (
            "websocket",
            format!("[websocket]\nurl = \"wss://localhost:{port}/ws/echo\"\n"),
        ),
    ]
}

#[tokio::test]
async fn every_kind_reports_a_bad_certificate_with_the_same_reason_and_sentence() {
    common::within(Duration::from_secs(20), async {
        let sandbox = common::sandbox().await;
        let vars = sandbox.variables().clone();
        let port = |var: &str| {
            let addr = &vars[var];
            addr.rsplit_once(':').unwrap().1.to_owned()
        };
        let ca = vars["sandbox_ca_file"].clone();
        // (fault, port variable, environment, reason, sentence start)
        let faults = [
            (
                "expired",
                "sandbox_tls_expired",
                "trusting",
                FailureReason::CertExpired,
                "certificate of localhost expired on ",
            ),
            (
                "wrong-host",
                "sandbox_tls_wrong_host",
                "trusting",
                FailureReason::CertHostname,
                "certificate is not valid for localhost: it names wrong.example",
            ),
            (
                "untrusted",
                "sandbox_tls",
                "default-trust",
                FailureReason::CertUntrusted,
                "certificate of localhost is not trusted: unknown issuer",
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[daemon]\nprobes = [\"probes/*.toml\"]\n\n\
             [environments.trusting]\nbase_url = \"{base}\"\ntls = {{ ca_file = \"{ca}\" }}\n\n\
             [environments.default-trust]\nbase_url = \"{base}\"\n",
            base = sandbox.base_url(),
        );
        let mut files = Vec::new();
        for (fault, var, env, _, _) in &faults {
            for (kind, body) in bodies(&port(var)) {
                files.push((
                    format!("{fault}-{kind}.toml"),
                    format!(
                        "name = \"{fault}-{kind}\"\nenvironments = [\"{env}\"]\ntimeout = \"5s\"\n\n{body}"
                    ),
                ));
            }
        }
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        let path = write_config(dir.path(), &config, &refs);
        let config = load(&path);
        let outcomes: BTreeMap<String, _> = run_all(&config, &BTreeMap::new())
            .await
            .into_iter()
            .map(|o| (o.probe.clone(), o))
            .collect();
        assert_eq!(outcomes.len(), 12, "{:#?}", outcomes.keys());
        for (fault, _, _, reason, sentence) in &faults {
            let mut messages = BTreeMap::new();
            for (kind, _) in bodies("0") {
                let o = &outcomes[&format!("{fault}-{kind}")];
                assert!(!o.success, "{fault}/{kind} passed: {o:#?}");
                assert_eq!(o.reason, Some(*reason), "{fault}/{kind}: {o:#?}");
                let message = o.error.clone().unwrap_or_default();
                assert!(
                    message.starts_with(sentence),
                    "{fault}/{kind}: {message:?} does not start with {sentence:?}"
                );
                messages.insert(kind, message);
            }
            let first = messages.values().next().unwrap().clone();
            assert!(
                messages.values().all(|m| *m == first),
                "{fault}: the kinds word it differently: {messages:#?}"
            );
        }
        sandbox.shutdown().await;
    })
    .await;
}
