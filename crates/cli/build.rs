//! Links the `schedulezero` binary as a position-dependent executable on Linux.
//!
//! A position-independent one (the toolchain's default) carries ~55,000 relative relocations that
//! the loader applies at every start: it reads 1.3 MB of relocation records and copies 1.4 MB of
//! tables it rewrites, which is 2.6 MB of an idle server's 18 MB (BENCHMARKS.md, "Memory"). The
//! price is that the executable's own code is not placed at a random address (libraries, heap and
//! stacks still are), as with Go's default builds. `SCHEDULEZERO_PIE=1` at build time keeps a
//! position-independent executable, with packed relocations (DT_RELR) to save the first 1.3 MB.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SCHEDULEZERO_PIE");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let pie = std::env::var("SCHEDULEZERO_PIE").is_ok_and(|v| v == "1");
    let arg = if pie { "-Wl,-z,pack-relative-relocs" } else { "-no-pie" };
    println!("cargo:rustc-link-arg-bin=schedulezero={arg}");
}
