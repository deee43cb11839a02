//! Declares the `loom` cfg, so `#[cfg(loom)]` is a known name (`unexpected_cfgs`). It cannot go
//! in `[lints.rust]` of `hot/Cargo.toml`: a package with `[lints] workspace = true` may not add
//! lints of its own.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom)");
}
