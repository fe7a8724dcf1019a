//! The conformance kit: proves that a [`BackupStore`] keeps the trait's contract.
//!
//! Call [`check_store`] once (it also works as a start-up self-test of a store's
//! configuration), or put [`store_conformance_tests!`](crate::store_conformance_tests) in a
//! test module for one test per check. Each check returns the [`Failure`] that names it,
//! instead of panicking.
//!
//! Every check works under its own random client ids (`conformance-<16 hex digits>`), and
//! deletes what it wrote when it ends, passed or failed, so the kit is safe to run against a
//! real bucket or database shared with other data. A store without
//! [`delete`](Capabilities::delete) keeps what the kit wrote.
//!
//! Checks honour [`Capabilities`]: what a store says it cannot do must return
//! [`StorageError::NotSupported`] and change nothing; what it says it can do must work.
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap().block_on(async {
//! let store = storage::memory::MemoryStore::new();
//! storage::conformance::check_store(&store).await.unwrap();
//! assert!(store.is_empty()); // nothing left behind
//! # });
//! ```

use std::sync::{Mutex, PoisonError};

use bytes::Bytes;

use crate::batch::ClientObjects;
use crate::error::{Report, StorageError};
use crate::key::{BackupKey, MAX_PART_LEN, ShareKind};
use crate::store::{BackupStore, Capabilities, ObjectVersion, PutMode, PutOptions};

/// A check that did not pass.
#[derive(Debug, thiserror::Error)]
#[error("conformance check `{check}` failed: {reason}")]
#[non_exhaustive]
pub struct Failure {
    /// The check's name (the function of this module that failed).
    pub check: &'static str,
    /// What went wrong.
    pub reason: String,
}

type Outcome = Result<(), Failure>;

fn fail(check: &'static str, reason: impl Into<String>) -> Failure {
    Failure {
        check,
        reason: reason.into(),
    }
}

/// The names of every check, in the order [`check_store`] runs them.
pub const CHECKS: &[&str] = &[
    "round_trip",
    "large_body",
    "not_found",
    "distinct_keys",
    "create_only",
    "overwrite",
    "delete",
    "list",
    "concurrent_writers",
    "concurrent_create",
    "compare_and_swap",
    "concurrent_update",
    "batches",
];

/// The size of the large body of [`large_body`]: 5 MiB and a few bytes.
pub const LARGE_BODY_LEN: usize = 5 * 1024 * 1024 + 17;

/// Runs every check in order and returns the first failure.
///
/// # Errors
/// The first [`Failure`].
pub async fn check_store(store: &dyn BackupStore) -> Outcome {
    round_trip(store).await?;
    large_body(store).await?;
    not_found(store).await?;
    distinct_keys(store).await?;
    create_only(store).await?;
    overwrite(store).await?;
    delete(store).await?;
    list(store).await?;
    concurrent_writers(store).await?;
    concurrent_create(store).await?;
    compare_and_swap(store).await?;
    concurrent_update(store).await?;
    batches(store).await
}

/// What [`store_conformance_tests!`](crate::store_conformance_tests) accepts: a store, or a
/// `(guard, store)` pair whose guard (a temporary directory, a server handle) must live as
/// long as the store is tested.
pub trait Fixture {
    /// The store under test.
    fn store(&self) -> &dyn BackupStore;
}

impl<S: BackupStore> Fixture for S {
    fn store(&self) -> &dyn BackupStore {
        self
    }
}

impl<G, S: BackupStore> Fixture for (G, S) {
    fn store(&self) -> &dyn BackupStore {
        &self.1
    }
}

/// One check's run: its random client ids, and the keys it wrote (to delete at the end).
struct Run<'a> {
    store: &'a dyn BackupStore,
    check: &'static str,
    caps: Capabilities,
    client: String,
    written: Mutex<Vec<BackupKey>>,
}

impl<'a> Run<'a> {
    fn new(store: &'a dyn BackupStore, check: &'static str) -> Result<Self, Failure> {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random)
            .map_err(|e| fail(check, format!("no randomness for the client id: {e}")))?;
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self {
            store,
            check,
            caps: store.capabilities(),
            client: format!("conformance-{hex}"),
            written: Mutex::new(Vec::new()),
        })
    }

    fn fail(&self, reason: impl Into<String>) -> Failure {
        fail(self.check, reason)
    }

    fn store_error(&self, what: &str, e: &StorageError) -> Failure {
        self.fail(format!("{what}: {}", Report(e)))
    }

    /// A key of this run's client (or of a client whose id is this run's followed by
    /// `suffix`).
    fn key(&self, suffix: &str, pair: &str) -> Result<BackupKey, Failure> {
        BackupKey::client_backup(format!("{}{suffix}", self.client), pair, "SECP256K1")
            .map_err(|e| self.store_error("cannot build a key", &e))
    }

    fn remember(&self, key: &BackupKey) {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        if !written.contains(key) {
            written.push(key.clone());
        }
    }

    /// A raw put, remembered for the clean-up.
    async fn put(&self, key: &BackupKey, body: &Bytes, mode: PutMode) -> Result<(), StorageError> {
        self.remember(key);
        self.store.put(key, body.clone(), mode.into()).await
    }

    /// [`BackupStore::get_versioned`] of `key`, whose body must be `expected`.
    async fn expect_version(
        &self,
        key: &BackupKey,
        expected: &Bytes,
        when: &str,
    ) -> Result<ObjectVersion, Failure> {
        let (got, version) = self
            .store
            .get_versioned(key)
            .await
            .map_err(|e| self.store_error(&format!("versioned get of {key} {when}"), &e))?;
        if got != *expected {
            return Err(self.fail(format!(
                "versioned get of {key} {when} returned {} other than the {} put{}",
                describe(&got),
                describe(expected),
                first_difference(&got, expected)
            )));
        }
        Ok(version)
    }

    /// A compare-and-swap put from `version` that must fail with
    /// [`StorageError::Conflict`].
    async fn expect_conflict(
        &self,
        key: &BackupKey,
        body: &Bytes,
        version: &ObjectVersion,
        what: &str,
    ) -> Outcome {
        match self.put(key, body, PutMode::Update(version.clone())).await {
            Err(StorageError::Conflict { .. }) => Ok(()),
            Ok(()) => Err(self.fail(format!("{what} succeeded"))),
            Err(e) => Err(self.store_error(&format!("{what}: expected Conflict"), &e)),
        }
    }

    /// The mode that stores unconditionally where the store can, else create-only.
    fn write_mode(&self) -> PutMode {
        if self.caps.overwrite {
            PutMode::Overwrite
        } else {
            PutMode::Create
        }
    }

    /// Stores `body` under `key` with whichever mode the store supports.
    async fn write(&self, key: &BackupKey, body: &Bytes) -> Outcome {
        let mode = self.write_mode();
        let operation = mode.operation();
        self.put(key, body, mode)
            .await
            .map_err(|e| self.store_error(&format!("{operation} of {key}"), &e))
    }

    /// Reads `key` and compares it with `expected`.
    async fn expect_body(&self, key: &BackupKey, expected: &Bytes, when: &str) -> Outcome {
        let got = self
            .store
            .get(key)
            .await
            .map_err(|e| self.store_error(&format!("get of {key} {when}"), &e))?;
        if got != *expected {
            return Err(self.fail(format!(
                "get of {key} {when} returned {} other than the {} put{}",
                describe(&got),
                describe(expected),
                first_difference(&got, expected)
            )));
        }
        Ok(())
    }

    /// Reads `key` and expects [`StorageError::NotFound`] for it.
    async fn expect_not_found(&self, key: &BackupKey, when: &str) -> Outcome {
        match self.store.get(key).await {
            Err(StorageError::NotFound { key: reported }) if reported == *key => Ok(()),
            Err(StorageError::NotFound { key: reported }) => Err(self.fail(format!(
                "get of {key} {when}: NotFound names another key, {reported}"
            ))),
            Ok(body) => Err(self.fail(format!(
                "get of {key} {when} returned {} instead of NotFound",
                describe(&body)
            ))),
            Err(e) => Err(self.store_error(&format!("get of {key} {when}: expected NotFound"), &e)),
        }
    }

    /// `list_clients`, where the store implements it, is sorted and holds these clients
    /// (a shared bucket or database may hold others too).
    async fn clients_listed(&self, clients: &[&str]) -> Result<(), Failure> {
        let listed = match self.store.list_clients().await {
            Err(StorageError::NotSupported { .. }) => return Ok(()),
            Err(e) => return Err(self.store_error("list clients", &e)),
            Ok(listed) => listed,
        };
        if !listed.is_sorted() {
            return Err(self.fail("list clients returned ids out of order"));
        }
        if let Some(missing) = clients
            .iter()
            .find(|c| listed.binary_search_by(|l| l.as_str().cmp(c)).is_err())
        {
            return Err(self.fail(format!("list clients left out {missing}")));
        }
        self.clients_streamed(clients).await
    }

    /// `stream_clients` holds these clients, each once, and ends.
    async fn clients_streamed(&self, clients: &[&str]) -> Result<(), Failure> {
        use futures_util::StreamExt as _;
        let mut streamed = std::collections::BTreeSet::new();
        let mut stream = self.store.stream_clients();
        while let Some(client) = stream.next().await {
            let client = client.map_err(|e| self.store_error("stream clients", &e))?;
            if !streamed.insert(client.clone()) {
                return Err(self.fail(format!("stream clients returned {client} twice")));
            }
        }
        match clients.iter().find(|c| !streamed.contains(**c)) {
            Some(missing) => Err(self.fail(format!("stream clients left out {missing}"))),
            None => Ok(()),
        }
    }

    async fn list_of(&self, client: &str) -> Result<Vec<BackupKey>, Failure> {
        self.store
            .list(client)
            .await
            .map_err(|e| self.store_error(&format!("list of {client}"), &e))
    }

    fn expect_not_supported(&self, what: &str, result: Result<(), StorageError>) -> Outcome {
        match result {
            Err(StorageError::NotSupported { .. }) => Ok(()),
            Ok(()) => Err(self.fail(format!(
                "{what} succeeded, but the capabilities say the store cannot do it"
            ))),
            Err(e) => Err(self.store_error(&format!("{what}: expected NotSupported"), &e)),
        }
    }

    /// Deletes what the run wrote (if the store can), then returns the check's outcome, or
    /// the clean-up's failure if the check passed.
    async fn finish(self, outcome: Outcome) -> Outcome {
        let written =
            std::mem::take(&mut *self.written.lock().unwrap_or_else(PoisonError::into_inner));
        let mut cleanup = Ok(());
        if self.caps.delete {
            for key in &written {
                if let Err(e) = self.store.delete(key).await
                    && cleanup.is_ok()
                {
                    cleanup = Err(self.store_error(&format!("clean-up delete of {key}"), &e));
                }
            }
        }
        outcome.and(cleanup)
    }
}

/// Deterministic bytes that differ for each `seed`, covering every byte value.
fn body(seed: &str, len: usize) -> Bytes {
    let mut state = seed.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        // xorshift64*: cheap and good enough to tell bodies apart.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let word = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        let room = len.saturating_sub(out.len()).min(word.len());
        out.extend_from_slice(word.get(..room).unwrap_or_default());
    }
    Bytes::from(out)
}

fn describe(b: &Bytes) -> String {
    format!("{} bytes", b.len())
}

fn first_difference(got: &[u8], expected: &[u8]) -> String {
    match got.iter().zip(expected).position(|(a, b)| a != b) {
        Some(i) => format!(" (first difference at byte {i})"),
        None if got.len() != expected.len() => " (one is a prefix of the other)".to_owned(),
        None => String::new(),
    }
}

/// A small body (every byte value) and a one-byte body come back as put.
///
/// # Errors
/// A [`Failure`] naming this check.
pub async fn round_trip(store: &dyn BackupStore) -> Outcome {
    let run = Run::new(store, "round_trip")?;
    let outcome = async {
        let all_bytes: Bytes = (0..=255u8).chain((0..=255u8).rev()).collect();
        for (pair, b) in [
            ("bsp_small", all_bytes),
            ("bsp_one", Bytes::from_static(b"\0")),
            ("bsp_text", body("round_trip", 1000)),
        ] {
            let key = run.key("", pair)?;
            run.write(&key, &b).await?;
            run.expect_body(&key, &b, "after a put").await?;
        }
        Ok(())
    }
    .await;
    run.finish(outcome).await
}

/// A body of [`LARGE_BODY_LEN`] (over 5 MiB) comes back whole.
///
/// # Errors
/// A [`Failure`] naming this check.
pub async fn large_body(store: &dyn BackupStore) -> Outcome {
    let run = Run::new(store, "large_body")?;
    let outcome = async {
        let key = run.key("", "bsp_large")?;
        let b = body("large_body", LARGE_BODY_LEN);
        run.write(&key, &b).await?;
        run.expect_body(&key, &b, "after a put").await
    }
    .await;
    run.finish(outcome).await
}

/// `get` of a key with nothing stored fails with [`StorageError::NotFound`] naming that key,
/// also when a neighbouring key (same client, another share pair, curve or kind) is stored.
///
/// # Errors
/// A [`Failure`] naming this check.
pub async fn not_found(store: &dyn BackupStore) -> Outcome {
    let run = Run::new(store, "not_found")?;
    let outcome = async {
        let never = run.key("", "bsp_never")?;
        run.expect_not_found(&never, "before anything was put")
            .await?;
        let stored = run.key("", "bsp_stored")?;
        run.write(&stored, &body("not_found", 64)).await?;
        let neighbours = [
            run.key("", "bsp_store"),
            run.key("", "bsp_stored0"),
            BackupKey::client_backup(&run.client, "bsp_stored", "ED25519")
                .map_err(|e| run.store_error("cannot build a key", &e)),
            BackupKey::client_signing(&run.client, "bsp_stored", "SECP256K1")
                .map_err(|e| run.store_error("cannot build a key", &e)),
            BackupKey::builder(ShareKind::ClientBackup, &run.client)
                .share_pair_id("bsp_stored")
                .curve("SECP256K1")
                .backup_method("GDRIVE")
                .build()
                .map_err(|e| run.store_error("cannot build a key", &e)),
            BackupKey::custodian_backup(&run.client, "bsp_stored")
                .map_err(|e| run.store_error("cannot build a key", &e)),
        ];
        for key in neighbours {
            let key = key?;
            run.expect_not_found(&key, "when only a neighbouring key is stored")
                .await?;
        }
        Ok(())
    }
    .await;
    run.finish(outcome).await
}

/// Keys that differ in one part only (kind, curve, share pair id, backup method, client, the
/// characters `.`, `-`, `_`, letter case, 128-byte parts) hold separate objects.
///
/// # Errors
/// A [`Failure`] naming this check.
pub async fn distinct_keys(store: &dyn BackupStore) -> Outcome {
    let run = Run::new(store, "distinct_keys")?;
    let outcome = async {
        let c = run.client.as_str();
        let long = "p".repeat(MAX_PART_LEN);
        let long_method = "M".repeat(MAX_PART_LEN);
        let keys = [
            BackupKey::client_backup(c, "pair", "SECP256K1"),
            BackupKey::client_backup(c, "pair", "ED25519"),
            BackupKey::client_backup(c, "pair2", "SECP256K1"),
            BackupKey::client_backup(c, "Pair", "SECP256K1"),
            BackupKey::client_backup(c, "pair.x", "SECP256K1"),
            BackupKey::client_backup(c, "pair-x", "SECP256K1"),
            BackupKey::client_backup(c, "pair_x", "SECP256K1"),
            BackupKey::client_backup(c, &long, "SECP256K1"),
            BackupKey::builder(ShareKind::ClientBackup, c)
                .share_pair_id("pair")
                .curve("SECP256K1")
                .backup_method("GDRIVE")
                .build(),
            BackupKey::client_signing(c, "pair", "SECP256K1"),
            BackupKey::custodian_backup(c, "GDRIVE"),
            BackupKey::custodian_backup(c, "GDRIVE-SECP256K1"),
            BackupKey::custodian_backup(c, &long_method),
            BackupKey::builder(ShareKind::CustodianBackup, c)
                .backup_method("GDRIVE")
                .curve("SECP256K1")
                .share_pair_id("pair")
                .build(),
            BackupKey::client_backup(format!("{c}0"), "pair", "SECP256K1"),
            BackupKey::client_backup(format!("{c}.x"), "pair", "SECP256K1"),
        ];
        let keys = keys
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| run.store_error("cannot build a key", &e))?;
        for key in &keys {
            run.write(key, &body(&key.to_path(), 100)).await?;
        }
        for key in &keys {
            run.expect_body(
                key,
                &body(&key.to_path(), 100),
                "after puts of similar keys",
            )
            .await?;
        }
        Ok(())
    }
    .await;
    run.finish(outcome).await
}

/// With [`Capabilities::conditional_create`]: a create-only put of a new key stores it; a
/// second one fails with [`StorageError::AlreadyExists`] and leaves the first body. Without:
/// a create-only put returns [`StorageError::NotSupported`] and stores nothing.
///
/// # Errors
/// A [`Failure`] naming this check.
pub async fn create_only(store: &dyn BackupStore) -> Outcome {
    let run = Run::new(store, "create_only")?;
    let outcome = async {
        let key = run.key("", "bsp_create")?;
        let (first, second) = (body("create 1", 300), body("create 2", 200));
        if !run.caps.conditional_create {
            run.expect_not_supported(
                "a create-only put",
                run.put(&key, &first, PutMode::Create).await,
            )?;
            return run
                .expect_not_found(&key, "after a refused create-only put")
                .await;
        }
        run.put(&key, &first, PutMode::Create)
            .await
            .map_err(|e| run.store_error("create-only put of a new key", &e))?;
        run.expect_body(&key, &first, "after a create-only put")
            .await?;
        match run.put(&key, &second, PutMode::Create).await {
            Err(StorageError::AlreadyExists { .. }) => {}
            Ok(()) => {
                return Err(run.fail("a create-only put of an existing key succeeded"));
            }
            Err(e) => {
                return Err(run.store_error(
                    "create-only put of an existing key: expected AlreadyExists",
                    &e,
                ));
            }
        }
        run.expect_body(&key, &first, "after a refused create-only put")
            .await
    }
    .await;
    run.finish(outcome).await
}

/// With [`Capabilities::overwrite`]: an overwriting put stores a new key, and replaces an
/// existing body with a shorter one and then a longer one. Without: it returns
/// [`StorageError::NotSupported`] and stores nothing.
///
/// # Errors
/// A [`Failure`] naming this check.
pub async fn overwrite(store: &dyn BackupStore) -> Outcome {
    let run = Run::new(store, "overwrite")?;
    let outcome = async {
        let key = run.key("", "bsp_overwrite")?;
        let bodies = [
            body("overwrite 1", 4000),
            body("overwrite 2", 100),
            body("overwrite 3", 9000),
        ];
        if !run.caps.overwrite {
            let first = bodies.first().cloned().unwrap_or_default();
            run.expect_not_supported(
                "an overwriting put",
                run.put(&key, &first, PutMode::Overwrite).await,
            )?;
            return run
                .expect_not_found(&key, "after a refused overwriting put")
                .await;
        }
        for (i, b) in bodies.iter().enumerate() {
            run.put(&key, b, PutMode::Overwrite)
                .await
                .map_err(|e| run.store_error(&format!("overwriting put #{i}"), &e))?;
            run.expect_body(&key, b, &format!("after overwriting put #{i}"))
                .await?;
        }
        Ok(())
    }
    .await;
    run.finish(outcome).await
}

/// With [`Capabilities::delete`]: after `delete`, `get` fails with
/// [`StorageError::NotFound`], other keys are untouched, deleting again succeeds, and the key
/// can be created again. Without: `delete` returns [`StorageError::NotSupported`] and the
/// object stays.
///
/// # Errors
/// A [`Failure`] naming this check.
pub async fn delete(store: &dyn BackupStore) -> Outcome {
    let run = Run::new(store, "delete")?;
    let outcome = async {
        let (gone, kept) = (run.key("", "bsp_gone")?, run.key("", "bsp_kept")?);
        let (b_gone, b_kept) = (body("delete gone", 500), body("delete kept", 500));
        run.write(&gone, &b_gone).await?;
        run.write(&kept, &b_kept).await?;
        if !run.caps.delete {
            run.expect_not_supported("delete", run.store.delete(&gone).await)?;
            return run
                .expect_body(&gone, &b_gone, "after a refused delete")
                .await;
        }
        run.store
            .delete(&gone)
            .await
            .map_err(|e| run.store_error("delete", &e))?;
        run.expect_not_found(&gone, "after delete").await?;
        run.expect_body(&kept, &b_kept, "after deleting another key")
            .await?;
        run.store
            .delete(&gone)
            .await
            .map_err(|e| run.store_error("delete of a key with nothing stored", &e))?;
        let again = body("delete again", 50);
        let mode = if run.caps.conditional_create {
            PutMode::Create
        } else {
            run.write_mode()
        };
        run.put(&gone, &again, mode)
            .await
            .map_err(|e| run.store_error("put after delete", &e))?;
        run.expect_body(&gone, &again, "put again after delete")
            .await
    }
    .await;
    run.finish(outcome).await
}

/// With [`Capabilities::list`]: `list` returns exactly the client's keys, sorted by path
/// form — not those of a client whose id extends it (`cl_1` vs `cl_10`, `cl_1-x`), not
/// deleted ones — an empty list for a client with nothing, and
/// [`StorageError::InvalidKey`] for a malformed client id; `list_clients`, unless it answers
/// [`StorageError::NotSupported`], includes the clients written, and so does
/// `stream_clients`, each once. Without: `list` returns
/// [`StorageError::NotSupported`].
///
/// # Errors
/// A [`Failure`] naming this check.
pub async fn list(store: &dyn BackupStore) -> Outcome {
    let run = Run::new(store, "list")?;
    let outcome = async {
        if !run.caps.list {
            return match run.store.list(&run.client).await {
                Err(StorageError::NotSupported { .. }) => Ok(()),
                Ok(_) => Err(run.fail("list succeeded, but the capabilities say it cannot")),
                Err(e) => Err(run.store_error("list: expected NotSupported", &e)),
            };
        }
        if let Some(k) = run.list_of(&run.client).await?.first() {
            return Err(run.fail(format!("list of a new client returned {k}")));
        }
        let c = run.client.as_str();
        let mine = [
            BackupKey::client_backup(c, "bsp_b", "SECP256K1"),
            BackupKey::client_backup(c, "bsp_a", "ED25519"),
            BackupKey::client_signing(c, "ssp_a", "SECP256K1"),
            BackupKey::custodian_backup(c, "GDRIVE"),
        ]
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| run.store_error("cannot build a key", &e))?;
        let others = [run.key("0", "bsp_a")?, run.key("-x", "bsp_a")?];
        for key in mine.iter().chain(&others) {
            run.write(key, &body(&key.to_path(), 10)).await?;
        }
        let mut expected = mine.clone();
        expected.sort_by_key(BackupKey::to_path);
        let got = run.list_of(&run.client).await?;
        if got != expected {
            return Err(run.fail(format!(
                "list returned [{}], expected [{}]",
                join(&got),
                join(&expected)
            )));
        }
        let other = others.first().cloned().ok_or_else(|| run.fail("no key"))?;
        let got = run.list_of(other.client_id()).await?;
        if got != [other.clone()] {
            return Err(run.fail(format!(
                "list of {} returned [{}], expected [{other}]",
                other.client_id(),
                join(&got)
            )));
        }
        run.clients_listed(&[run.client.as_str(), other.client_id()])
            .await?;
        if run.caps.delete {
            let removed = expected.remove(0);
            run.store
                .delete(&removed)
                .await
                .map_err(|e| run.store_error("delete", &e))?;
            let got = run.list_of(&run.client).await?;
            if got != expected {
                return Err(run.fail(format!(
                    "after deleting {removed}, list returned [{}], expected [{}]",
                    join(&got),
                    join(&expected)
                )));
            }
        }
        match run.store.list("not/a/client").await {
            Err(StorageError::InvalidKey { .. }) => Ok(()),
            Ok(keys) => Err(run.fail(format!(
                "list of a malformed client id returned {} keys",
                keys.len()
            ))),
            Err(e) => Err(run.store_error("list of a malformed client id", &e)),
        }
    }
    .await;
    run.finish(outcome).await
}

fn join(keys: &[BackupKey]) -> String {
    keys.iter()
        .map(BackupKey::to_path)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Many puts of distinct keys at once all succeed, and each key then holds its own body.
///
/// # Errors
/// A [`Failure`] naming this check.
pub async fn concurrent_writers(store: &dyn BackupStore) -> Outcome {
    const WRITERS: usize = 16;
    let run = Run::new(store, "concurrent_writers")?;
    let outcome = async {
        let keys = (0..WRITERS)
            .map(|i| run.key("", &format!("bsp_{i}")))
            .collect::<Result<Vec<_>, _>>()?;
        let bodies: Vec<Bytes> = keys.iter().map(|k| body(&k.to_path(), 64 * 1024)).collect();
        let writes = keys.iter().zip(&bodies).map(|(k, b)| run.write(k, b));
        futures_util::future::join_all(writes)
            .await
            .into_iter()
            .collect::<Result<Vec<()>, _>>()?;
        let reads = keys
            .iter()
            .zip(&bodies)
            .map(|(k, b)| run.expect_body(k, b, "after concurrent puts"));
        futures_util::future::join_all(reads)
            .await
            .into_iter()
            .collect::<Result<Vec<()>, _>>()?;
        Ok(())
    }
    .await;
    run.finish(outcome).await
}

/// With [`Capabilities::conditional_create`]: of many create-only puts of one key at once,
/// exactly one succeeds, the others fail with [`StorageError::AlreadyExists`], and the key
/// holds the winner's body (several rounds). Without: nothing to check.
///
/// # Errors
/// A [`Failure`] naming this check.
pub async fn concurrent_create(store: &dyn BackupStore) -> Outcome {
    const WRITERS: usize = 8;
    const ROUNDS: usize = 4;
    let run = Run::new(store, "concurrent_create")?;
    if !run.caps.conditional_create {
        return run.finish(Ok(())).await;
    }
    let outcome = async {
        for round in 0..ROUNDS {
            let key = run.key("", &format!("bsp_race_{round}"))?;
            let bodies: Vec<Bytes> = (0..WRITERS)
                .map(|i| body(&format!("race {round} {i}"), 2048))
                .collect();
            let puts = bodies.iter().map(|b| run.put(&key, b, PutMode::Create));
            let results = futures_util::future::join_all(puts).await;
            let mut winners = Vec::new();
            for (i, result) in results.into_iter().enumerate() {
                match result {
                    Ok(()) => winners.push(i),
                    Err(StorageError::AlreadyExists { .. }) => {}
                    Err(e) => {
                        return Err(run.store_error(&format!("racing create-only put #{i}"), &e));
                    }
                }
            }
            let [winner] = winners.as_slice() else {
                return Err(run.fail(format!(
                    "{} of {WRITERS} racing create-only puts of one key succeeded (round {round})",
                    winners.len()
                )));
            };
            let expected = bodies.get(*winner).cloned().unwrap_or_default();
            run.expect_body(&key, &expected, "after racing create-only puts")
                .await?;
        }
        Ok(())
    }
    .await;
    run.finish(outcome).await
}

/// With [`Capabilities::compare_and_swap`]: [`BackupStore::get_versioned`] returns the body
/// and a version; a [`PutMode::Update`] from that version replaces the body and changes the
/// version; an update from a stale version — after another update, or after the key was
/// deleted and written again (versions must not restart) — fails with [`StorageError::Conflict`] and leaves the stored
/// body; an update of a key with nothing stored fails the same way and stores nothing.
/// Without: `get_versioned` and an update return [`StorageError::NotSupported`] and change
/// nothing.
///
/// # Errors
/// A [`Failure`] naming this check.
pub async fn compare_and_swap(store: &dyn BackupStore) -> Outcome {
    let run = Run::new(store, "compare_and_swap")?;
    let outcome = async {
        let key = run.key("", "bsp_cas")?;
        let bodies: Vec<Bytes> = (1..=5)
            .map(|i| body(&format!("compare and swap {i}"), 700))
            .collect();
        let [b1, b2, b3, b4, b5] = bodies.as_slice() else {
            return Err(run.fail("five bodies"));
        };
        run.write(&key, b1).await?;
        if !run.caps.compare_and_swap {
            match run.store.get_versioned(&key).await {
                Err(StorageError::NotSupported { .. }) => {}
                Ok(_) => {
                    return Err(run.fail(
                        "versioned get succeeded, but the capabilities say the store cannot \
                         compare and swap",
                    ));
                }
                Err(e) => return Err(run.store_error("versioned get: expected NotSupported", &e)),
            }
            let made_up = ObjectVersion::from_version("1");
            run.expect_not_supported(
                "a compare-and-swap put",
                run.put(&key, b2, PutMode::Update(made_up)).await,
            )?;
            return run
                .expect_body(&key, b1, "after a refused compare-and-swap put")
                .await;
        }
        let v1 = run.expect_version(&key, b1, "after a put").await?;
        run.put(&key, b2, PutMode::Update(v1.clone()))
            .await
            .map_err(|e| run.store_error("compare-and-swap put from the current version", &e))?;
        run.expect_body(&key, b2, "after a compare-and-swap put")
            .await?;
        let v2 = run
            .expect_version(&key, b2, "after a compare-and-swap put")
            .await?;
        if v2 == v1 {
            return Err(run.fail("a compare-and-swap put left the version unchanged"));
        }
        run.expect_conflict(&key, b3, &v1, "a compare-and-swap put from a stale version")
            .await?;
        run.expect_body(&key, b2, "after a refused compare-and-swap put")
            .await?;

        let absent = run.key("", "bsp_cas_absent")?;
        run.expect_conflict(
            &absent,
            b3,
            &v2,
            "a compare-and-swap put of a key with nothing stored",
        )
        .await?;
        run.expect_not_found(&absent, "after a refused compare-and-swap put")
            .await?;
        match run.store.get_versioned(&absent).await {
            Err(StorageError::NotFound { .. }) => {}
            Ok(_) => return Err(run.fail("versioned get of a key with nothing stored succeeded")),
            Err(e) => {
                return Err(run.store_error(
                    "versioned get of a key with nothing stored: expected NotFound",
                    &e,
                ));
            }
        }

        if run.caps.delete {
            run.store
                .delete(&key)
                .await
                .map_err(|e| run.store_error("delete", &e))?;
            run.write(&key, b4).await?;
            // The first version read: a store whose versions restart after a delete would
            // give the new object that version again.
            run.expect_conflict(
                &key,
                b5,
                &v1,
                "a compare-and-swap put from the version of an object deleted since",
            )
            .await?;
            run.expect_body(&key, b4, "after a refused compare-and-swap put")
                .await?;
        }
        Ok(())
    }
    .await;
    run.finish(outcome).await
}

/// With [`Capabilities::compare_and_swap`]: of many compare-and-swap puts from one version
/// at once, exactly one succeeds, the others fail with [`StorageError::Conflict`], and the
/// key holds the winner's body (several rounds). Without: nothing to check.
///
/// # Errors
/// A [`Failure`] naming this check.
pub async fn concurrent_update(store: &dyn BackupStore) -> Outcome {
    const WRITERS: usize = 8;
    const ROUNDS: usize = 4;
    let run = Run::new(store, "concurrent_update")?;
    if !run.caps.compare_and_swap {
        return run.finish(Ok(())).await;
    }
    let outcome = async {
        let key = run.key("", "bsp_update_race")?;
        let mut current = body("update race start", 1024);
        run.write(&key, &current).await?;
        for round in 0..ROUNDS {
            let version = run
                .expect_version(&key, &current, &format!("before round {round}"))
                .await?;
            let bodies: Vec<Bytes> = (0..WRITERS)
                .map(|i| body(&format!("update race {round} {i}"), 2048))
                .collect();
            let puts = bodies
                .iter()
                .map(|b| run.put(&key, b, PutMode::Update(version.clone())));
            let results = futures_util::future::join_all(puts).await;
            let mut winners = Vec::new();
            for (i, result) in results.into_iter().enumerate() {
                match result {
                    Ok(()) => winners.push(i),
                    Err(StorageError::Conflict { .. }) => {}
                    Err(e) => {
                        return Err(
                            run.store_error(&format!("racing compare-and-swap put #{i}"), &e)
                        );
                    }
                }
            }
            let [winner] = winners.as_slice() else {
                return Err(run.fail(format!(
                    "{} of {WRITERS} racing compare-and-swap puts from one version succeeded \
                     (round {round})",
                    winners.len()
                )));
            };
            current = bodies.get(*winner).cloned().unwrap_or_default();
            run.expect_body(&key, &current, "after racing compare-and-swap puts")
                .await?;
        }
        Ok(())
    }
    .await;
    run.finish(outcome).await
}

/// The batch calls give what the single-item calls give. With [`Capabilities::list`]:
/// [`read_clients`](BackupStore::read_clients) returns one entry per client in the order
/// asked, each client's keys sorted with their bodies (and, with compare and swap, the
/// versions [`get_versioned`](BackupStore::get_versioned) reports), an empty list for a
/// client with nothing stored, and an error for an invalid client id alone.
/// [`put_many`](BackupStore::put_many) returns one result per put in order, each as
/// [`put`](BackupStore::put) would: a compare-and-swap put from a stale version fails with
/// [`StorageError::Conflict`] and changes nothing while the others of the batch succeed.
///
/// # Errors
/// A [`Failure`] naming this check.
pub async fn batches(store: &dyn BackupStore) -> Outcome {
    let run = Run::new(store, "batches")?;
    let outcome = async {
        let (a1, a2, b1) = (
            run.key("", "bsp_batch_1")?,
            run.key("", "bsp_batch_2")?,
            run.key("-b", "bsp_batch_1")?,
        );
        let bodies: Vec<Bytes> = (1..=6).map(|i| body(&format!("batch {i}"), 900)).collect();
        let [x1, x2, x3, y1, y2, y3] = bodies.as_slice() else {
            return Err(run.fail("six bodies"));
        };
        run.write(&a1, x1).await?;
        run.write(&a2, x2).await?;
        run.write(&b1, x3).await?;
        if run.caps.list {
            let (a, b, empty) = (
                run.client.clone(),
                format!("{}-b", run.client),
                format!("{}-c", run.client),
            );
            let asked = [a, empty, "not/a-client".to_owned(), b];
            let read = run.store.read_clients(&asked).await;
            run.expect_read(&read, &[&[(&a1, x1), (&a2, x2)], &[], &[], &[(&b1, x3)]])
                .await?;
            if !matches!(read.get(2), Some(Err(StorageError::InvalidKey { .. }))) {
                return Err(
                    run.fail("read clients of an invalid client id did not fail with InvalidKey")
                );
            }
        }
        if run.caps.conditional_create {
            // Create-only puts of a batch: the new key is created, the taken one refused
            // alone and left as it was.
            let fresh = run.key("-b", "bsp_batch_2")?;
            run.remember(&fresh);
            let results = run
                .store
                .put_many(vec![
                    (fresh.clone(), y2.clone(), PutOptions::create()),
                    (a1.clone(), y1.clone(), PutOptions::create()),
                ])
                .await;
            match results.as_slice() {
                [Ok(()), Err(StorageError::AlreadyExists { key })] if *key == a1 => {}
                other => {
                    return Err(run.fail(format!(
                        "put many of create-only puts of (a new key, a taken key) gave {other:?}, \
                         not (Ok, AlreadyExists for {a1})"
                    )));
                }
            }
            run.expect_body(&fresh, y2, "after a create-only put of put many")
                .await?;
            run.expect_body(&a1, x1, "after a refused create-only put of put many")
                .await?;
        }
        if run.caps.overwrite {
            // Overwrites of a batch: one over an object, one where nothing was.
            let (fresh, empty) = (run.key("-b", "bsp_batch_2")?, run.key("-b", "bsp_batch_3")?);
            run.remember(&fresh);
            run.remember(&empty);
            let results = run
                .store
                .put_many(vec![
                    (fresh.clone(), x1.clone(), PutOptions::overwrite()),
                    (empty.clone(), x2.clone(), PutOptions::overwrite()),
                ])
                .await;
            if !matches!(results.as_slice(), [Ok(()), Ok(())]) {
                return Err(run.fail(format!(
                    "put many of two overwrites gave {results:?}, not (Ok, Ok)"
                )));
            }
            run.expect_body(&fresh, x1, "after an overwrite of put many")
                .await?;
            run.expect_body(&empty, x2, "after an overwrite of put many")
                .await?;
        }
        if !run.caps.compare_and_swap {
            let mode = run.write_mode();
            let results = run
                .store
                .put_many(vec![
                    (a1.clone(), y1.clone(), PutOptions::from(mode.clone())),
                    (b1.clone(), y3.clone(), PutOptions::from(mode)),
                ])
                .await;
            let want_ok = run.caps.overwrite;
            for (result, key) in results.iter().zip([&a1, &b1]) {
                match result {
                    Ok(()) if want_ok => {}
                    Err(StorageError::AlreadyExists { .. }) if !want_ok => {}
                    other => {
                        return Err(run.fail(format!("put many, {key}: unexpected {other:?}")));
                    }
                }
            }
            if results.len() != 2 {
                return Err(run.fail(format!("put many of 2 puts gave {} results", results.len())));
            }
            return Ok(());
        }
        let v1 = run.expect_version(&a1, x1, "before a batch").await?;
        let stale = run.expect_version(&a2, x2, "before a batch").await?;
        run.put(&a2, x1, PutMode::Update(stale.clone()))
            .await
            .map_err(|e| run.store_error("compare-and-swap put", &e))?;
        let v3 = run.expect_version(&b1, x3, "before a batch").await?;
        let results = run
            .store
            .put_many(vec![
                (a1.clone(), y1.clone(), PutOptions::update(v1)),
                (a2.clone(), y2.clone(), PutOptions::update(stale)),
                (b1.clone(), y3.clone(), PutOptions::update(v3)),
            ])
            .await;
        match results.as_slice() {
            [Ok(()), Err(StorageError::Conflict { key }), Ok(())] if *key == a2 => {}
            other => {
                return Err(run.fail(format!(
                    "put many of (current, stale, current) versions gave {other:?}, not \
                     (Ok, Conflict for {a2}, Ok)"
                )));
            }
        }
        run.expect_body(&a1, y1, "after put many").await?;
        run.expect_body(&a2, x1, "after a refused put of put many")
            .await?;
        run.expect_body(&b1, y3, "after put many").await
    }
    .await;
    run.finish(outcome).await
}

impl Run<'_> {
    /// `read` holds, per client, exactly these keys with these bodies (and the versions
    /// `get_versioned` reports, where the store can compare and swap).
    async fn expect_read(
        &self,
        read: &[ClientObjects],
        want: &[&[(&BackupKey, &Bytes)]],
    ) -> Outcome {
        if read.len() != want.len() {
            return Err(self.fail(format!(
                "read clients of {} clients gave {} entries",
                want.len(),
                read.len()
            )));
        }
        for (entry, want) in read.iter().zip(want) {
            let objects = match entry {
                Ok(objects) => objects,
                // The invalid client id (checked by the caller); it wants nothing.
                Err(_) if want.is_empty() => continue,
                Err(e) => return Err(self.store_error("read clients", e)),
            };
            let keys: Vec<&BackupKey> = objects.iter().map(|(k, _)| k).collect();
            let want_keys: Vec<&BackupKey> = want.iter().map(|(k, _)| *k).collect();
            if keys != want_keys {
                return Err(self.fail(format!("read clients listed {keys:?}, not {want_keys:?}")));
            }
            for ((key, object), (_, body)) in objects.iter().zip(want.iter()) {
                let object = object
                    .as_ref()
                    .map_err(|e| self.store_error(&format!("read clients, {key}"), e))?;
                if object.body != **body {
                    return Err(self.fail(format!("read clients returned another body for {key}")));
                }
                if self.caps.compare_and_swap {
                    let version = self
                        .expect_version(key, body, "beside read clients")
                        .await?;
                    if object.version.as_ref() != Some(&version) {
                        return Err(self.fail(format!(
                            "read clients gave {key} the version {:?}, get_versioned {version:?}",
                            object.version
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Makes one `#[tokio::test]` per conformance check for the store that `$make` builds (an
/// expression, evaluated once per test, giving a store or a `(guard, store)` pair; see
/// [`Fixture`](crate::conformance::Fixture)). Needs `tokio` with `macros` and
/// `rt-multi-thread` among the caller's dev-dependencies.
///
/// ```
/// mod memory_store {
///     storage::store_conformance_tests!(storage::memory::MemoryStore::new());
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@one $make;
            round_trip, large_body, not_found, distinct_keys, create_only, overwrite,
            delete, list, concurrent_writers, concurrent_create, compare_and_swap,
            concurrent_update, batches);
    };
    (@one $make:expr; $($check:ident),*) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = $make;
                let store = $crate::conformance::Fixture::store(&fixture);
                if let Err(failure) = $crate::conformance::$check(store).await {
                    panic!("{failure}");
                }
            }
        )*
    };
}
