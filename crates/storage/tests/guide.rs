//! The guide `storage::docs::writing_a_store` shows `examples/kv_store.rs` verbatim, and that
//! store passes the conformance kit.

#[allow(dead_code)] // the example's `main`
#[allow(unreachable_pub)] // the example's items are `pub` for its readers, not for this test
#[path = "../examples/kv_store.rs"]
mod kv_store;

mod kv_store_conformance {
    storage::store_conformance_tests!(super::kv_store::KvStore::new(
        super::kv_store::KvClient::default(),
        "backups/"
    ));
}

const GUIDE: &str = include_str!("../src/docs/writing_a_store.md");
const EXAMPLE: &str = include_str!("../examples/kv_store.rs");
const MARKER: &str = "<!-- The code block below is examples/kv_store.rs verbatim";

#[test]
fn the_guide_shows_the_example_verbatim() {
    let (_, after) = GUIDE.split_once(MARKER).expect("marker in the guide");
    let (_, block) = after
        .split_once("```rust\n")
        .expect("code block after the marker");
    let (code, _) = block.split_once("\n```\n").expect("end of the code block");
    let code = format!("{code}\n");
    assert!(
        code == EXAMPLE,
        "the guide's code block differs from examples/kv_store.rs: copy the example into the guide"
    );
}

#[test]
fn the_docs_pointer_names_the_guide() {
    // Outside the package: checked in the workspace, skipped in a packaged crate.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/writing-a-store.md");
    let Ok(pointer) = std::fs::read_to_string(path) else {
        return;
    };
    assert!(pointer.contains("crates/storage/src/docs/writing_a_store.md"));
    assert!(pointer.contains("examples/kv_store.rs"));
}

#[tokio::test]
async fn throttling_is_retryable() {
    use storage::BackupStore;
    let store = kv_store::KvStore::new(kv_store::KvClient::default(), "p/");
    let key = storage::BackupKey::custodian_backup("cl", "GDRIVE").unwrap();
    store.client().throttle_next(1);
    assert!(store.get(&key).await.unwrap_err().is_retryable());
    assert!(store.get(&key).await.unwrap_err().is_not_found());
}
