//! Shared build script of every crate whose binaries or tests link libtorch.
//!
//! torch-sys gives its dependants `DEP_TCH_LIBTORCH_LIB`. Two things are added here:
//! an rpath, so binaries find libtorch at run time without `LD_LIBRARY_PATH`, and
//! `--no-as-needed -ltorch`, so `libtorch_cuda.so` stays linked and CUDA is found on GPU hosts.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let lib_path = std::path::Path::new(&lib_dir);
    let lib_dir = lib_path
        .canonicalize()
        .map(|p| p.display().to_string())
        .unwrap_or(lib_dir);
    println!(
        "cargo:rerun-if-changed={}",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../build-support/link_libtorch.rs"
        )
    );
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-L{lib_dir}");
    println!("cargo:rustc-link-arg=-ltorch");
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
}
