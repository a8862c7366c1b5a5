//! Builds the kernel programs: generates `vmlinux.h` from the running kernel's
//! BTF with bpftool, compiles `ebpf/sysql.bpf.c` with clang for the BPF target,
//! and leaves `sysql.bpf.o` in `OUT_DIR` for `include_bytes_aligned!`.
//!
//! Needs clang, libbpf's headers and bpftool:
//! `apt-get install -y clang libbpf-dev bpftool`.
use std::{env, path::PathBuf, process::Command};

const HINT: &str = "install them with: apt-get install -y clang libbpf-dev bpftool";

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let ebpf = manifest.join("../../ebpf");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    for f in ["sysql.bpf.c", "include/sysql_events.h"] {
        println!("cargo:rerun-if-changed={}", ebpf.join(f).display());
    }
    println!("cargo:rerun-if-env-changed=SYSQL_VMLINUX_H");
    println!("cargo:rerun-if-env-changed=CLANG");

    // vmlinux.h: the kernel's types, for CO-RE. Any BTF-enabled kernel will
    // do; relocations adapt the object to the kernel it is loaded on.
    let vmlinux = out.join("vmlinux.h");
    if let Ok(given) = env::var("SYSQL_VMLINUX_H") {
        std::fs::copy(&given, &vmlinux).unwrap_or_else(|e| panic!("copying SYSQL_VMLINUX_H={given}: {e}"));
    } else if !vmlinux.exists() {
        let dump = Command::new("bpftool")
            .args(["btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "c"])
            .output()
            .unwrap_or_else(|e| panic!("sysql-capture: cannot run bpftool ({e}); {HINT}"));
        assert!(
            dump.status.success(),
            "sysql-capture: bpftool could not dump /sys/kernel/btf/vmlinux: {}; the kernel needs BTF \
             (CONFIG_DEBUG_INFO_BTF=y), or set SYSQL_VMLINUX_H to a vmlinux.h",
            String::from_utf8_lossy(&dump.stderr).trim()
        );
        std::fs::write(&vmlinux, dump.stdout).unwrap();
    }

    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let object = out.join("sysql.bpf.o");
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").unwrap().as_str() {
        "x86_64" => "x86",
        "aarch64" => "arm64",
        other => panic!("sysql-capture: unsupported target architecture {other}"),
    };
    let status = Command::new(&clang)
        .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
        .arg(format!("-D__TARGET_ARCH_{arch}"))
        .arg("-I")
        .arg(&out)
        .arg("-I")
        .arg(ebpf.join("include"))
        .arg("-c")
        .arg(ebpf.join("sysql.bpf.c"))
        .arg("-o")
        .arg(&object)
        .status()
        .unwrap_or_else(|e| panic!("sysql-capture: cannot run {clang} ({e}); {HINT}"));
    assert!(status.success(), "sysql-capture: clang failed to compile ebpf/sysql.bpf.c");
}
