//! How the `sysql` binary is linked.
//!
//! - **Packed relative relocations** (`DT_RELR`, glibc 2.36 and binutils 2.38
//!   or later): a position-independent binary of this size carries about
//!   300,000 of them, 7 MB of `.rela.dyn` that the loader reads at every start
//!   and that stay resident; packed, they take 72 KB.
//! - **No symbols** in a release build, stripped at link time rather than by
//!   the profile's `strip`: the profile's settings are part of every symbol's
//!   name (its hash), so a build with `SYSQL_KEEP_SYMBOLS=1` keeps them and has
//!   the very names of the stripped build. `bench/text-order` reads them there.
//!   The `profiling` profile (line tables) keeps its symbols too.
//! - **Hot code first.** `text-order.gz` lists the functions sysql runs when it
//!   starts and answers the usual queries; lld places them first, together.
//!   The kernel maps code 64 KiB around each page a process faults in, so code
//!   run in scattered places keeps far more of the binary resident than its
//!   size: grouped, the idle RSS falls by about 15 MB (docs/benchmarks.md,
//!   "Code layout"). Symbol names depend on the compiler, on the versions in
//!   `Cargo.lock` and, for functions LLVM renamed (`.llvm.` suffixes, about
//!   15% of the list), on where the crates' sources are (`CARGO_HOME`); a
//!   stale list only leaves code where it was, and the build says so
//!   (regenerate it with `bench/text-order`).

use std::path::{Path, PathBuf};
use std::process::Command;

const ORDER: &str = "text-order.gz";

fn main() {
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let linux_gnu = env("CARGO_CFG_TARGET_OS") == "linux" && env("CARGO_CFG_TARGET_ENV") == "gnu";
    if !linux_gnu {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");

    println!("cargo:rerun-if-env-changed=SYSQL_KEEP_SYMBOLS");
    // DEBUG is true when the profile has debug info (`profiling`), false in `release`.
    let release = env("PROFILE") == "release" && env("DEBUG") == "false";
    if !release {
        return;
    }
    if env("SYSQL_KEEP_SYMBOLS").is_empty() {
        println!("cargo:rustc-link-arg-bin=sysql=-Wl,--strip-all");
    }

    let manifest = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let order = manifest.join(ORDER);
    let lock = manifest.join("../../Cargo.lock");
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-changed={}", lock.display());
    let rustc = rustc_version(&env("RUSTC"));
    if let Err(why) = lld_is_the_linker(&env("CARGO_CFG_TARGET_ARCH"), &rustc) {
        println!("cargo:warning=code not grouped by {ORDER}: {why}");
        return;
    }
    match unpack(&order, &PathBuf::from(env("OUT_DIR")).join("text-order.txt")) {
        Ok((list, header)) => {
            println!("cargo:rustc-link-arg-bin=sysql=-Wl,--symbol-ordering-file={}", list.display());
            // Names the build does not have (cold code changed since) are skipped.
            println!("cargo:rustc-link-arg-bin=sysql=-Wl,--no-warn-symbol-ordering");
            for why in stale(&header, &rustc, &lock) {
                println!("cargo:warning={ORDER} is stale ({why}): part of the code it lists is not grouped; run bench/text-order");
            }
        }
        Err(why) => println!("cargo:warning=code not grouped by {ORDER}: {why}"),
    }
}

/// `rustc -V`, e.g. "rustc 1.95.0 (59807616e 2026-04-14)".
fn rustc_version(rustc: &str) -> String {
    let rustc = if rustc.is_empty() { "rustc" } else { rustc };
    Command::new(rustc)
        .arg("-V")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `--symbol-ordering-file` is lld's: rustc links x86_64 Linux with its own
/// lld since 1.90, unless a linker is chosen.
fn lld_is_the_linker(arch: &str, rustc: &str) -> Result<(), String> {
    if arch != "x86_64" {
        return Err(format!("the linker for {arch} may not be lld"));
    }
    let minor = rustc.split_whitespace().nth(1).and_then(|v| v.split('.').nth(1)?.parse::<u32>().ok());
    if minor.is_none_or(|m| m < 90) {
        return Err(format!("{rustc:?} may not link with lld"));
    }
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if std::env::var_os("RUSTC_LINKER").is_some() || flags.contains("linker") {
        return Err("a linker is configured".into());
    }
    Ok(())
}

/// Writes the list without its header to `out`; returns its path and the header.
fn unpack(order: &Path, out: &Path) -> Result<(PathBuf, Vec<String>), String> {
    let o = Command::new("gzip").arg("-dc").arg(order).output().map_err(|e| format!("gzip: {e}"))?;
    if !o.status.success() {
        return Err(format!("gzip -dc {}: {}", order.display(), String::from_utf8_lossy(&o.stderr).trim()));
    }
    let text = String::from_utf8(o.stdout).map_err(|_| "not UTF-8".to_string())?;
    let (header, names): (Vec<&str>, Vec<&str>) = text.lines().partition(|l| l.starts_with('#'));
    let mut list = names.join("\n");
    list.push('\n');
    std::fs::write(out, list).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok((out.to_path_buf(), header.into_iter().map(str::to_string).collect()))
}

/// What differs from the build the list was made from.
fn stale(header: &[String], rustc: &str, lock: &Path) -> Vec<String> {
    let field = |k: &str| header.iter().find_map(|l| l.strip_prefix(k)).map(str::trim).unwrap_or("");
    let mut why = Vec::new();
    if field("# rustc:") != rustc {
        why.push(format!("made with {:?}, this is {rustc:?}", field("# rustc:")));
    }
    let lock_hash = std::fs::read(lock).map(|b| format!("{:016x}", fnv1a64(&b))).unwrap_or_default();
    if field("# Cargo.lock fnv1a64:") != lock_hash {
        why.push("Cargo.lock changed".into());
    }
    // Functions LLVM renamed when it inlined them across codegen units carry
    // a hash of their module, whose file paths name the crate's sources.
    let home = cargo_home();
    if field("# cargo home:") != home {
        why.push(format!("made with the crates in {:?}, these are in {home:?}", field("# cargo home:")));
    }
    why
}

/// Where cargo keeps the crates' sources: $CARGO_HOME, or ~/.cargo.
fn cargo_home() -> String {
    println!("cargo:rerun-if-env-changed=CARGO_HOME");
    let home =
        std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap_or_default()));
    std::fs::canonicalize(&home).map(|p| p.display().to_string()).unwrap_or(home)
}

/// FNV-1a, 64 bits: bench/text-order computes the same.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}
