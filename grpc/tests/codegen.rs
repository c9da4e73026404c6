//! The committed generated code is what `proto/inference.proto` generates.

use std::path::Path;

#[test]
fn the_generated_code_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let proto = root.join(preflight_grpc::PROTO);
    let descriptors = protox::compile([&proto], [proto.parent().expect("proto/")])
        .unwrap_or_else(|e| panic!("{}: {e}", proto.display()));
    let out = tempfile::tempdir().expect("a scratch folder");
    tonic_prost_build::configure()
        .build_transport(false)
        .out_dir(out.path())
        .compile_fds(descriptors)
        .expect("generating the code");
    let generated = std::fs::read_to_string(out.path().join("inference.rs"))
        .expect("the generated inference.rs");
    let path = root.join(preflight_grpc::GENERATED);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        // Write the fresh code so that a local run fixes it; the test still
        // fails, so that stale code never passes CI.
        std::fs::write(&path, &generated).expect("write the generated code");
        panic!(
            "{} was stale and has been regenerated from {}; review and commit it",
            path.display(),
            proto.display()
        );
    }
}
