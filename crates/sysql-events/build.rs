//! Compiles layout.c against the C event header and writes its sizes and
//! offsets to `$OUT_DIR/c_layout.rs`, so `src/lib.rs` can assert at compile
//! time that the Rust mirror matches the kernel side byte for byte.
use std::{env, path::PathBuf, process::Command};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let include = manifest.join("../../ebpf/include");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let exe = out.join("layout");
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    println!("cargo:rerun-if-changed=layout.c");
    println!("cargo:rerun-if-changed={}", include.join("sysql_events.h").display());
    println!("cargo:rerun-if-env-changed=CC");

    let status = Command::new(&cc)
        .arg("-I")
        .arg(&include)
        .arg(manifest.join("layout.c"))
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap_or_else(|e| panic!("sysql-events: cannot run the C compiler `{cc}`: {e}; install gcc or set CC"));
    assert!(status.success(), "sysql-events: compiling layout.c failed");
    let output = Command::new(&exe).output().expect("sysql-events: running layout failed");
    assert!(output.status.success(), "sysql-events: layout exited with {}", output.status);
    std::fs::write(out.join("c_layout.rs"), output.stdout).unwrap();
}
