//! Link-time settings for every target that links libtorch (this crate's tests and examples,
//! and the `factorexe` binary, whose manifest points here too).
//!
//! - An rpath to libtorch, so binaries run without `LD_LIBRARY_PATH`.
//! - When libtorch has CUDA, `libtorch_cuda` is linked with `--no-as-needed`: nothing references
//!   its symbols directly, so the default `--as-needed` would drop it and CUDA would silently be
//!   unavailable (tch-rs issues #907, #980).
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Ok(libtorch) = std::env::var("LIBTORCH") else {
        return;
    };
    let lib = Path::new(&libtorch).join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-L{}", lib.display());
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
