//! Links the binary with packed relative relocations (`DT_RELR`, glibc 2.36
//! and binutils 2.38 or later): a position-independent binary of this size
//! carries about 300,000 of them, 7 MB of `.rela.dyn` that the loader reads
//! at every start and that stay resident; packed, they take 72 KB. Idle RSS
//! drops by about 6 MB (docs/benchmarks.md, "Latest results").

fn main() {
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if linux_gnu {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
