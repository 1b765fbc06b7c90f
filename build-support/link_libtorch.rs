//! Shared build script of every crate whose binaries or tests link libtorch.
//!
//! torch-sys gives its dependants `DEP_TCH_LIBTORCH_LIB`. Two things are added here:
//! an rpath, so binaries find libtorch at run time without `LD_LIBRARY_PATH`, and
//! `--no-as-needed -ltorch`, so `libtorch_cuda.so` stays linked and CUDA is found on GPU hosts.
//!
//! For prime-nas it also embeds the build's facts that run manifests and `prime --version`
//! report: the torch variant `scripts/setup.sh` recorded in `.torch-variant` (`PRIME_TORCH_*`)
//! and the git commit (`PRIME_GIT_COMMIT`), each "unknown" when not known.

fn main() {
    if std::env::var("CARGO_PKG_NAME").as_deref() == Ok("prime-nas") {
        embed_build_facts();
    }
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

/// Emits `PRIME_TORCH_VARIANT`, `PRIME_TORCH_VERSION`, `PRIME_TORCH_ARCH_LIST` from the
/// workspace's `.torch-variant` record and `PRIME_GIT_COMMIT` from `git rev-parse`.
fn embed_build_facts() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let root = std::path::Path::new(&manifest_dir).join("..");
    let record_path = root.join(".torch-variant");
    let record = std::fs::read_to_string(&record_path).unwrap_or_default();
    if !record.is_empty() {
        println!("cargo:rerun-if-changed={}", record_path.display());
    }
    let field = |key: &str| {
        record
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(str::to_string)
    };
    let unknown = || "unknown".to_string();
    println!(
        "cargo:rustc-env=PRIME_TORCH_VARIANT={}",
        field("variant").unwrap_or_else(unknown)
    );
    println!(
        "cargo:rustc-env=PRIME_TORCH_VERSION={}",
        field("torch").unwrap_or_else(unknown)
    );
    println!(
        "cargo:rustc-env=PRIME_TORCH_ARCH_LIST={}",
        field("arch_list").unwrap_or_default()
    );

    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(&root)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .map(|text| text.trim().to_string())
            .filter(|text| !text.is_empty())
    };
    let commit = git(&["rev-parse", "HEAD"]);
    // Rerun when HEAD moves: HEAD itself, the branch it names, and packed refs (if present).
    let mut watched = vec!["HEAD".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    watched.push("packed-refs".to_string());
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", &name]) {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    println!(
        "cargo:rustc-env=PRIME_GIT_COMMIT={}",
        commit.unwrap_or_else(unknown)
    );
}
