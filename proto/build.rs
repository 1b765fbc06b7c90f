//! Generates the tonic/prost code of `proto/prime.proto` with the vendored `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // tonic-prost-build runs `protoc` from the PROTOC variable.
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/prime.proto");
    tonic_prost_build::configure().compile_protos(&["proto/prime.proto"], &["proto"])?;
    Ok(())
}
