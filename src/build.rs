//! Build script: lays out the release binary's code so that what a running proxy executes
//! sits together (see `src/link.order`), which keeps its resident memory small.
//!
//! Start-up and the request path touch a few thousand functions spread over ~18 MB of
//! code; the kernel maps a whole 64 KiB window (a whole large folio on ext4) around each
//! one it faults in, so an idle proxy kept ~11 MiB of its binary resident. Listed first by
//! `--symbol-ordering-file`, they fit in ~3 MiB. The list comes from a callgrind run
//! (`bash benches/link_order.sh`); a stale list costs memory, never correctness: names
//! the linker does not find are skipped.

use std::env;
use std::path::Path;
use std::process::Command;

/// The file of symbol names, hottest first.
const ORDER_FILE: &str = "src/link.order";

fn main() {
    println!("cargo:rerun-if-changed={ORDER_FILE}");
    println!("cargo:rerun-if-env-changed=CUTOVER_LINK_ORDER");
    if env::var("CUTOVER_LINK_ORDER").as_deref() == Ok("0") {
        return;
    }
    if let Some(why_not) = why_not_ordered() {
        if env::var("PROFILE").as_deref() == Ok("release") {
            println!("cargo:warning=release binary not laid out by {ORDER_FILE}: {why_not}");
        }
        return;
    }
    let dir = env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_string());
    let order = Path::new(&dir).join(ORDER_FILE);
    println!(
        "cargo:rustc-link-arg-bin=cutover=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    // Names of functions that are gone or were inlined since the list was made.
    println!("cargo:rustc-link-arg-bin=cutover=-Wl,--no-warn-symbol-ordering");
}

/// Why this build cannot take the ordering: only LLD reads the file, and rustc links
/// x86_64-unknown-linux-gnu with its own LLD from 1.90 on unless a linker is configured.
fn why_not_ordered() -> Option<String> {
    if env::var("PROFILE").as_deref() != Ok("release") {
        return Some("not a release build".to_string());
    }
    let target = env::var("TARGET").unwrap_or_default();
    if target != "x86_64-unknown-linux-gnu" {
        return Some(format!("target {target} does not link with rustc's LLD"));
    }
    if env::var_os("RUSTC_LINKER").is_some() {
        return Some("a linker is configured (target.<triple>.linker)".to_string());
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    const LINKER_CHOICES: [&str; 5] = [
        "linker=",
        "linker-flavor",
        "linker-features",
        "link-self-contained",
        "fuse-ld",
    ];
    if LINKER_CHOICES.iter().any(|choice| flags.contains(choice)) {
        return Some("RUSTFLAGS choose the linker".to_string());
    }
    match rustc_minor() {
        Some(minor) if minor >= 90 => None,
        Some(minor) => Some(format!("rustc 1.{minor} links with the system linker")),
        None => Some("the rustc version is unknown".to_string()),
    }
}

/// The minor version of the rustc that builds this crate (`rustc 1.95.0 (...)` gives 95).
fn rustc_minor() -> Option<u32> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let output = Command::new(rustc).arg("--version").output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let version = text.split_whitespace().nth(1)?;
    version.split('.').nth(1)?.parse().ok()
}
