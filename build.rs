//! Lays out the functions a running synthmon calls together at the start of
//! the release binary's code, from `build/symbol-order.txt` (written by
//! `build/symbol_order.py`; see its header for why and how).
//!
//! The kernel maps code 64 KiB around every page a process touches, so the
//! few MiB an idle daemon runs, scattered through 17 MiB of `.text`, kept
//! most of it resident. The order is only a layout: a name the file lists
//! and the build no longer defines is skipped, and a build without the
//! order is the same program.
//!
//! It is passed only where the linker is known to be LLD: release builds for
//! `x86_64-unknown-linux-gnu` with rustc 1.90 or later (whose default linker
//! there is its own `rust-lld`), when no other linker is configured.
//! `SYNTHMON_SYMBOL_ORDER=off` leaves it out.

use std::env;
use std::path::Path;
use std::process::Command;

const ORDER: &str = "build/symbol-order.txt";

fn main() {
    println!("cargo:rerun-if-changed={ORDER}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SYNTHMON_SYMBOL_ORDER");
    if let Some(why) = skipped() {
        // Not a warning: most of these are ordinary builds (debug, tests).
        eprintln!("symbol order not applied: {why}");
        return;
    }
    let order = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join(ORDER);
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// Why the order is not passed to this build's linker, if it is not.
fn skipped() -> Option<String> {
    let var = |name: &str| env::var(name).unwrap_or_default();
    if var("SYNTHMON_SYMBOL_ORDER") == "off" {
        return Some("SYNTHMON_SYMBOL_ORDER=off".into());
    }
    if var("PROFILE") != "release" {
        return Some("not a release build".into());
    }
    if var("TARGET") != "x86_64-unknown-linux-gnu" {
        return Some(format!("target {} may not link with LLD", var("TARGET")));
    }
    if !var("RUSTC_LINKER").is_empty() {
        return Some("a linker is configured".into());
    }
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    if ["linker", "link-self-contained", "fuse-ld"]
        .iter()
        .any(|f| flags.contains(f))
    {
        return Some("the rustflags choose the linker".into());
    }
    let minor = rustc_minor();
    if minor.is_none_or(|m| m < 90) {
        return Some("rustc before 1.90 links with the system's linker".into());
    }
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join(ORDER);
    let Ok(listed) = std::fs::metadata(order) else {
        return Some(format!("{ORDER} is missing"));
    };
    if listed.len() == 0 {
        return Some(format!("{ORDER} is empty"));
    }
    None
}

/// The minor version of the rustc building this (1.MINOR.patch).
fn rustc_minor() -> Option<u32> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc).arg("--version").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let version = text.split_whitespace().nth(1)?;
    let mut parts = version.split('.');
    if parts.next()? != "1" {
        return None;
    }
    parts.next()?.parse().ok()
}
