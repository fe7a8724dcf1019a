//! SoftHSM2 with a fresh token per test run.
//!
//! SoftHSM reads `SOFTHSM2_CONF` when the module is initialized, and a test cannot safely set
//! its own process environment. So a driver test makes the token (in a temp dir under the
//! target dir, removed on drop) and runs this same test binary again as a child, filtered to
//! the tests that need the token, with `SOFTHSM2_CONF` and the `PORTAL_BACKUP_PKCS11_*`
//! variables set. Those tests do nothing in the parent run; in the child they create their
//! AES keys with cryptoki and build the KEK with `Pkcs11KekBuilder::from_env()`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use envelope::pkcs11::{
    ENV_KEY_LABEL, ENV_MODULE, ENV_PIN, ENV_TOKEN_LABEL, Pkcs11Kek, Pkcs11KekBuilder,
};

use test_services::tool_missing;

/// Set in the child run.
pub const CHILD_ENV: &str = "PORTAL_BACKUP_TEST_IN_SOFTHSM_TOKEN";
/// Overrides the SoftHSM2 module path.
pub const MODULE_ENV: &str = "PORTAL_BACKUP_SOFTHSM2_MODULE";
/// Overrides the `softhsm2-util` command.
pub const UTIL_ENV: &str = "PORTAL_BACKUP_SOFTHSM2_UTIL";

const TOKEN_LABEL: &str = "envelope-test";
const CANDIDATES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
];

/// Whether this process is the child run inside a fresh token.
pub fn inside() -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|v| v == "1")
}

fn module_path() -> Option<PathBuf> {
    if let Ok(path) = std::env::var(MODULE_ENV) {
        return Some(PathBuf::from(path)).filter(|p| p.exists());
    }
    CANDIDATES.iter().map(PathBuf::from).find(|p| p.exists())
}

fn util() -> String {
    std::env::var(UTIL_ENV).unwrap_or_else(|_| "softhsm2-util".into())
}

/// The driver: makes a fresh token and runs the tests matching `filter` in a child process
/// inside it. Fails if the child fails or runs fewer than `min_tests` tests.
pub fn run_in_fresh_token(filter: &str, min_tests: usize, env: &[(&str, &str)]) {
    assert!(!inside(), "the driver must not run inside the child");
    let Some(module) = module_path() else {
        tool_missing(
            "SoftHSM2",
            &format!("no libsofthsm2.so found (apt-get install -y softhsm2, or set {MODULE_ENV})"),
        );
        return;
    };
    if Command::new(util()).arg("--version").output().is_err() {
        tool_missing(
            "SoftHSM2",
            "softhsm2-util is not on PATH (apt-get install -y softhsm2)",
        );
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("softhsm-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )
    .unwrap();
    let pin = format!("pin-{}", std::process::id());
    let init = Command::new(util())
        .env("SOFTHSM2_CONF", &conf)
        .args(["--init-token", "--free", "--label", TOKEN_LABEL])
        .args(["--so-pin", "so-pin-0000", "--pin", &pin])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "softhsm2-util --init-token failed: {}",
        String::from_utf8_lossy(&init.stderr)
    );

    // One test at a time: SoftHSM2's file-backed token fails token-object creation
    // (CKR_GENERAL_ERROR) when another session works on the token at the same moment, which
    // made a test fail about once in twenty runs. Concurrency *within* a test (the conformance
    // kit's concurrent check, the 32-task stress test) is what those tests exercise.
    let child = Command::new(std::env::current_exe().unwrap())
        .args([filter, "--test-threads=1"])
        .env("SOFTHSM2_CONF", &conf)
        .env(CHILD_ENV, "1")
        .env(ENV_MODULE, &module)
        .env(ENV_TOKEN_LABEL, TOKEN_LABEL)
        .env(ENV_PIN, &pin)
        .env_remove(ENV_KEY_LABEL)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&child.stdout);
    let stderr = String::from_utf8_lossy(&child.stderr);
    eprintln!("--- tests run inside a fresh SoftHSM2 token ---\n{stdout}{stderr}---");
    assert!(
        child.status.success(),
        "tests inside the SoftHSM2 token failed"
    );
    let ran = stdout
        .lines()
        .find_map(|l| {
            let n = l.strip_prefix("running ")?;
            let n = n
                .strip_suffix(" tests")
                .or_else(|| n.strip_suffix(" test"))?;
            n.parse::<usize>().ok()
        })
        .unwrap_or(0);
    assert!(
        ran >= min_tests,
        "expected at least {min_tests} tests inside the token, ran {ran}"
    );
}

fn context() -> &'static Pkcs11 {
    static CTX: OnceLock<Pkcs11> = OnceLock::new();
    CTX.get_or_init(|| {
        let ctx = Pkcs11::new(std::env::var(ENV_MODULE).unwrap()).unwrap();
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => panic!("C_Initialize: {e}"),
        }
        ctx
    })
}

/// Loads and initializes the module for the test's own use, before any KEK does (SoftHSM's
/// `C_Initialize` must not race with another).
pub fn init() {
    let _ = context();
}

/// Creates an AES-256 secret key on the test token.
pub fn create_key(label: &str, extractable: bool) {
    // SoftHSM's file store fails (CKR_GENERAL_ERROR) on concurrent token-object creation.
    static CREATE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = CREATE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let ctx = context();
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == TOKEN_LABEL)
        .expect("the test token");
    let session = ctx.open_rw_session(slot).unwrap();
    let pin = AuthPin::from(std::env::var(ENV_PIN).unwrap());
    match session.login(UserType::User, Some(&pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("login: {e}"),
    }
    session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::ValueLen(32.into()),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Extractable(extractable),
                Attribute::Sensitive(true),
            ],
        )
        .unwrap();
}

/// A unique key label.
pub fn fresh_label() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "kek-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// Inside the child: a KEK over a fresh non-extractable key. In the parent: `None` (the driver
/// runs the test in the child).
pub fn kek() -> Option<Pkcs11Kek> {
    if !inside() {
        eprintln!("runs inside a fresh SoftHSM2 token, from the driver test of this binary");
        return None;
    }
    let label = fresh_label();
    create_key(&label, false);
    Some(
        Pkcs11KekBuilder::from_env()
            .with_key_label(label)
            .build()
            .unwrap(),
    )
}
