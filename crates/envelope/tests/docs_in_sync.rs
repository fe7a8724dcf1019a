//! `docs/writing-a-kms-backend.md` at the repository root is a copy of the guide that lives in
//! the crate (where its code blocks run as doctests).

#[test]
fn the_kms_backend_guide_at_the_root_is_identical_to_the_crate_copy() {
    let crate_copy = include_str!("../src/docs/writing_a_kms_backend.md");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/writing-a-kms-backend.md");
    let root_copy = std::fs::read_to_string(&root)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", root.display()));
    assert!(
        root_copy == crate_copy,
        "docs/writing-a-kms-backend.md differs from crates/envelope/src/docs/writing_a_kms_backend.md; \
         copy the crate's file over it"
    );
}
