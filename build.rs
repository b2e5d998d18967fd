//! Two link-time choices for the release binary, each where the linker is
//! known to be LLD: release builds for `x86_64-unknown-linux-gnu` with
//! rustc 1.90 or later (whose default linker there is its own `rust-lld`),
//! when no other linker is configured. Neither changes what the program
//! does; both change how much of it stays resident.
//!
//! **The code laid out by what runs.** The functions a running synthmon
//! calls go together at the start of the code, from
//! `build/symbol-order.txt` (written by `build/symbol_order.py`; see its
//! header for why and how). The kernel maps code 64 KiB around every page a
//! process touches, so the few MiB an idle daemon runs, scattered through
//! 17 MiB of `.text`, kept most of it resident. A name the file lists and
//! the build no longer defines is skipped. `SYNTHMON_SYMBOL_ORDER=off`
//! leaves it out.
//!
//! **Packed relocations** (`-z pack-relative-relocs`, DT_RELR). A
//! position-independent binary carries a relocation for every pointer in
//! its data (~60,000 here, mostly panic locations and vtables): 1.6 MiB of
//! `.rela.dyn` that the loader reads at start and that then stays resident.
//! Packed, they are 25 KiB. glibc reads them from 2.36 on, and the binary
//! then requires it (`GLIBC_ABI_DT_RELR`), so they are packed only when the
//! build is native (host = target) and the building machine's glibc is 2.36
//! or later: a binary runs where it was built, and the Dockerfile builds on
//! the Debian 12 its image runs. `SYNTHMON_PACKED_RELOCS=off` leaves them
//! unpacked, for a binary copied to an older glibc.

use std::env;
use std::path::Path;
use std::process::Command;

const ORDER: &str = "build/symbol-order.txt";

fn main() {
    println!("cargo:rerun-if-changed={ORDER}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SYNTHMON_SYMBOL_ORDER");
    println!("cargo:rerun-if-env-changed=SYNTHMON_PACKED_RELOCS");
    // Not warnings: most of these are ordinary builds (debug, tests).
    if let Some(why) = not_lld() {
        eprintln!("symbol order and packed relocations not applied: {why}");
        return;
    }
    match order_skipped() {
        Some(why) => eprintln!("symbol order not applied: {why}"),
        None => {
            let order = Path::new(&var("CARGO_MANIFEST_DIR")).join(ORDER);
            println!(
                "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
                order.display()
            );
            println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
        }
    }
    match packing_skipped() {
        Some(why) => eprintln!("relocations not packed: {why}"),
        None => println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs"),
    }
}

fn var(name: &str) -> String {
    env::var(name).unwrap_or_default()
}

/// Why this build's linker may not be LLD, if it may not.
fn not_lld() -> Option<String> {
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
    if rustc_minor().is_none_or(|m| m < 90) {
        return Some("rustc before 1.90 links with the system's linker".into());
    }
    None
}

/// Why the order is not passed to the linker, if it is not.
fn order_skipped() -> Option<String> {
    if var("SYNTHMON_SYMBOL_ORDER") == "off" {
        return Some("SYNTHMON_SYMBOL_ORDER=off".into());
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

/// Why the relocations are not packed, if they are not.
fn packing_skipped() -> Option<String> {
    if var("SYNTHMON_PACKED_RELOCS") == "off" {
        return Some("SYNTHMON_PACKED_RELOCS=off".into());
    }
    if var("HOST") != var("TARGET") {
        return Some("a cross build cannot know the target's glibc".into());
    }
    match glibc_minor() {
        Some(minor) if minor >= 36 => None,
        Some(minor) => Some(format!(
            "this machine's glibc 2.{minor} predates DT_RELR (2.36)"
        )),
        None => Some("this machine's glibc version is unknown".into()),
    }
}

/// The minor version of the building machine's glibc (2.MINOR), from
/// `getconf GNU_LIBC_VERSION` ("glibc 2.36").
fn glibc_minor() -> Option<u32> {
    minor_version("getconf", &["GNU_LIBC_VERSION"], "2")
}

/// The minor version of the rustc building this ("rustc 1.MINOR.patch").
fn rustc_minor() -> Option<u32> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    minor_version(&rustc, &["--version"], "1")
}

/// MINOR of the MAJOR.MINOR[.patch] that is the second word `program`
/// prints, if its major version is `major`.
fn minor_version(program: &str, args: &[&str], major: &str) -> Option<u32> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let version = text.split_whitespace().nth(1)?;
    let mut parts = version.split('.');
    if parts.next()? != major {
        return None;
    }
    parts.next()?.parse().ok()
}
