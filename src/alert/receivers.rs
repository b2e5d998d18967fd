//! The receiver registry: one line per receiver file. A file handles its
//! `type` values end to end — checking `[alerting.receivers.NAME]` into
//! its settings and building the receiver that delivers — so adding a
//! receiver type is its file plus a line here (and its keys in
//! `config::raw::RawReceiver`, the one serde mirror of the table).

use super::receiver::ReceiverEntry;
use super::{email, webhook};

/// Every receiver file's entry, one line each. The assembly lists their
/// types, in this order, when a `type` is unknown.
pub const RECEIVERS: &[ReceiverEntry] = &[webhook::RECEIVER, email::RECEIVER];

/// The `type` of a receiver that names none.
pub const DEFAULT_TYPE: &str = "webhook";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::RawReceiver;
    use std::collections::BTreeSet;

    #[test]
    fn every_type_is_listed_once_and_the_default_is_one() {
        let types: Vec<&str> = RECEIVERS
            .iter()
            .flat_map(|e| e.types.iter().copied())
            .collect();
        let distinct: BTreeSet<&str> = types.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            types.len(),
            "a type is listed twice: {types:?}"
        );
        assert!(types.contains(&DEFAULT_TYPE), "{types:?}");
        assert!(!types.contains(&"type"));
    }

    /// Every key of the raw table is read by some entry (or it would be
    /// silently ignored), and every key an entry reads exists.
    #[test]
    fn every_key_has_an_owner() {
        // serde names every field in its unknown-field message.
        let err = match toml::from_str::<RawReceiver>("no_such_key = 1") {
            Ok(_) => panic!("an unknown key was accepted"),
            Err(e) => e.to_string(),
        };
        let expected = err
            .split_once("expected one of")
            .map(|(_, list)| list)
            .unwrap_or_else(|| panic!("{err}"));
        let raw: BTreeSet<&str> = expected.split('`').skip(1).step_by(2).collect();
        assert!(raw.contains("url") && raw.contains("smtp_host"), "{raw:?}");
        let read: BTreeSet<&str> = RECEIVERS
            .iter()
            .flat_map(|e| e.keys.iter().copied())
            .chain(["type"])
            .collect();
        assert_eq!(raw, read);
        // And `set_keys` sees every field (a new field breaks this literal).
        let s = || Some(String::new());
        let all = RawReceiver {
            kind: s(),
            url: s(),
            headers: [(String::new(), String::new())].into(),
            hmac_secret: s(),
            template: s(),
            content_type: s(),
            routing_key: s(),
            timeout: s(),
            smtp_host: s(),
            smtp_port: Some(25),
            tls: s(),
            username: s(),
            password: s(),
            from: s(),
            to: Some(Vec::new()),
            ca_file: s(),
        };
        let set: BTreeSet<&str> = all.set_keys().into_iter().chain(["type"]).collect();
        assert_eq!(set, read);
    }
}
