//! Kill test for `FsStore`: writer processes are killed with SIGKILL at random moments, and
//! afterwards every file holds a complete body (the old one or a new one, never torn or
//! empty), and of two processes racing to create one key, never both win.
//!
//! The writer processes are this test binary itself, started with `STORAGE_FS_KILL_CHILD`
//! set and told to run only the `child_writer` test, which does nothing in a normal run.
//! Every body is self-validating: magic, writer tag, generation, length and a SHA-256 of the
//! rest, so a torn, truncated or empty file cannot pass for a real one.
#![allow(clippy::unwrap_used)] // helper fns of this test file, outside #[test] fns
#![allow(clippy::indexing_slicing)] // fixed-layout frames whose length is checked first
#![allow(clippy::arithmetic_side_effects)] // counters and sizes far below any overflow
#![allow(clippy::cast_possible_truncation)] // test-pattern bytes and sizes, truncation intended

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use storage::fs::{FsStore, TEMP_PREFIX};
use storage::{BackupKey, BackupStore, PutOptions, StorageError};

const CHILD_ENV: &str = "STORAGE_FS_KILL_CHILD";
const ROOT_ENV: &str = "STORAGE_FS_KILL_ROOT";
const TAG_ENV: &str = "STORAGE_FS_KILL_TAG";
const ROUND_ENV: &str = "STORAGE_FS_KILL_ROUND";
const GO_ENV: &str = "STORAGE_FS_KILL_GO";
/// With `GO_ENV`: increment a counter by compare-and-swap puts instead of creating keys.
const CAS_ENV: &str = "STORAGE_FS_KILL_CAS";
/// Increments each writer of the compare-and-swap race makes.
const CAS_INCREMENTS: u64 = 100;

/// Rounds of the kill test; each kills two writers.
const ROUNDS: u64 = 40;
/// Keys every round's writers overwrite, shared across rounds.
const SHARED_KEYS: u64 = 4;
/// Keys the two processes of the race test both try to create.
const RACE_KEYS: u64 = 200;
/// A writer stops by itself after this long, in case its parent is gone.
const CHILD_LIFETIME: Duration = Duration::from_secs(15);

const MAGIC: &[u8; 4] = b"KT01";
const HEADER: usize = 4 + 1 + 8 + 8;
const HASH: usize = 32;

/// A self-validating body: magic, tag, generation, payload length, payload, SHA-256.
fn frame(tag: u8, generation: u64, len: usize) -> Bytes {
    let mut out = Vec::with_capacity(HEADER + len + HASH);
    out.extend_from_slice(MAGIC);
    out.push(tag);
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&(len as u64).to_le_bytes());
    let seed = generation.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(tag);
    out.extend((0..len as u64).map(|i| (seed.wrapping_add(i.wrapping_mul(31)) >> 3) as u8));
    let hash = Sha256::digest(&out);
    out.extend_from_slice(&hash);
    Bytes::from(out)
}

/// The tag and generation of a valid body, or why it is not one.
fn validate(body: &[u8]) -> Result<(u8, u64), String> {
    if body.len() < HEADER + HASH {
        return Err(format!("{} bytes: shorter than a frame", body.len()));
    }
    if &body[..4] != MAGIC {
        return Err("bad magic".into());
    }
    let tag = body[4];
    let generation = u64::from_le_bytes(body[5..13].try_into().unwrap());
    let len = u64::from_le_bytes(body[13..21].try_into().unwrap());
    if body.len() as u64 != HEADER as u64 + len + HASH as u64 {
        return Err(format!(
            "{} bytes, but the frame says {len} of payload",
            body.len()
        ));
    }
    let (data, hash) = body.split_at(body.len() - HASH);
    if Sha256::digest(data).as_slice() != hash {
        return Err("hash mismatch (torn write)".into());
    }
    Ok((tag, generation))
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    u64::from_le_bytes(b)
}

fn shared_key(k: u64) -> BackupKey {
    BackupKey::client_backup("shared", format!("bsp_{k}"), "SECP256K1").unwrap()
}

fn race_key(round: u64, i: u64) -> BackupKey {
    BackupKey::client_backup("race", format!("r{round}_{i}"), "ED25519").unwrap()
}

/// The writer process. In a normal test run the variable is unset and this does nothing.
#[test]
fn child_writer() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let root = std::env::var(ROOT_ENV).unwrap();
    let tag = std::env::var(TAG_ENV).unwrap().as_bytes()[0];
    let round: u64 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let go = std::env::var_os(GO_ENV);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = FsStore::new(&root).unwrap();
        let mut out = std::io::stdout().lock();
        // On a line of its own: libtest has printed `test child_writer ... ` without a newline.
        writeln!(out, "\nREADY").unwrap();
        out.flush().unwrap();
        let started = Instant::now();
        if let Some(go) = go {
            // Race mode: wait for the start signal, then create every race key, or (CAS mode)
            // add 1 to a counter key by compare and swap until this writer made
            // `CAS_INCREMENTS` of them; exit.
            while !Path::new(&go).exists() {
                std::thread::sleep(Duration::from_millis(1));
            }
            if std::env::var_os(CAS_ENV).is_some() {
                let key = race_key(round, 0);
                let (mut wins, mut conflicts) = (0u64, 0u64);
                while wins < CAS_INCREMENTS {
                    let (body, version) = store.get_versioned(&key).await.unwrap();
                    let (_, n) = validate(&body).unwrap();
                    match store
                        .put(&key, frame(tag, n + 1, 64), PutOptions::update(version))
                        .await
                    {
                        Ok(()) => wins += 1,
                        Err(StorageError::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("update: {}", storage::Report(&e)),
                    }
                }
                writeln!(out, "W {wins} {conflicts}").unwrap();
                return;
            }
            for i in 0..RACE_KEYS {
                let result = store
                    .put(&race_key(round, i), frame(tag, i, 64), PutOptions::create())
                    .await;
                report(&mut out, i, result);
            }
            return;
        }
        let (mut i, offset) = (0u64, random_u64() % SHARED_KEYS);
        while started.elapsed() < CHILD_LIFETIME {
            // Overwrite a shared key with a body of 1 KiB to 256 KiB...
            let size = 1024 + (random_u64() % (255 * 1024)) as usize;
            let generation = round * 1_000_000 + i;
            store
                .put(
                    &shared_key((i + offset) % SHARED_KEYS),
                    frame(tag, generation, size),
                    PutOptions::overwrite(),
                )
                .await
                .unwrap();
            writeln!(out, "O {generation}").unwrap();
            // ...then race the other writer to create this round's next key.
            let result = store
                .put(
                    &race_key(round, i),
                    frame(tag, i, 512),
                    PutOptions::create(),
                )
                .await;
            report(&mut out, i, result);
            i += 1;
        }
    });
}

fn report(out: &mut impl Write, i: u64, result: Result<(), StorageError>) {
    match result {
        Ok(()) => writeln!(out, "C {i} won").unwrap(),
        Err(StorageError::AlreadyExists { .. } | StorageError::Conflict { .. }) => {
            writeln!(out, "C {i} lost").unwrap();
        }
        Err(e) => panic!("create {i}: {}", storage::Report(&e)),
    }
    out.flush().unwrap();
}

/// A writer process, killed when dropped (so a failing test leaves none behind).
struct Writer {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Writer {
    fn spawn(root: &Path, tag: u8, round: u64, go: Option<&Path>) -> Self {
        Self::spawn_with(root, tag, round, go, false)
    }

    fn spawn_with(root: &Path, tag: u8, round: u64, go: Option<&Path>, cas: bool) -> Self {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["child_writer", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .env(ROOT_ENV, root)
            .env(TAG_ENV, String::from(char::from(tag)))
            .env(ROUND_ENV, round.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(go) = go {
            cmd.env(GO_ENV, go);
        }
        if cas {
            cmd.env(CAS_ENV, "1");
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut writer = Self { child, stdout };
        // Wait until it has a runtime and a store.
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                writer.stdout.read_line(&mut line).unwrap() > 0,
                "writer died before READY"
            );
            if line.trim() == "READY" {
                break;
            }
        }
        writer
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then what it reported.
    fn kill(mut self) -> (BTreeMap<u64, bool>, usize) {
        let _ = self.child.kill();
        self.finish()
    }

    /// Waits for the exit, then what it reported: the creates (index → won) and how many
    /// overwrites completed.
    fn finish(mut self) -> (BTreeMap<u64, bool>, usize) {
        self.child.wait().unwrap();
        let mut rest = String::new();
        let _ = self.stdout.read_to_string(&mut rest);
        let overwrites = rest.lines().filter(|l| l.starts_with("O ")).count();
        let creates = rest
            .lines()
            .filter_map(|l| {
                let mut parts = l.strip_prefix("C ")?.split(' ');
                let i = parts.next()?.parse().ok()?;
                match parts.next()? {
                    "won" => Some((i, true)),
                    "lost" => Some((i, false)),
                    _ => None,
                }
            })
            .collect();
        (creates, overwrites)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Checks the race keys of one round against what both writers reported. Returns how many
/// keys were created.
async fn check_races(
    store: &FsStore,
    round: u64,
    reports: &[(u8, BTreeMap<u64, bool>)],
    upto: u64,
) -> u64 {
    let mut created = 0;
    for i in 0..upto {
        let key = race_key(round, i);
        let stored = match store.get(&key).await {
            Ok(body) => Some(validate(&body).unwrap_or_else(|e| panic!("{key}: {e}")).0),
            Err(e) if e.is_not_found() => None,
            Err(e) => panic!("{key}: {e}"),
        };
        let winners: Vec<u8> = reports
            .iter()
            .filter(|(_, r)| r.get(&i) == Some(&true))
            .map(|(t, _)| *t)
            .collect();
        assert!(winners.len() <= 1, "{key}: both writers won");
        if let Some(winner) = winners.first() {
            assert_eq!(
                stored,
                Some(*winner),
                "{key}: the winner's body is not stored"
            );
        }
        for (tag, r) in reports {
            if r.get(&i) == Some(&false) {
                assert!(
                    stored.is_some() && stored != Some(*tag),
                    "{key}: {} lost, but the store holds {stored:?}",
                    char::from(*tag)
                );
            }
        }
        created += u64::from(stored.is_some());
    }
    created
}

fn count_temp_files(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            n += count_temp_files(&entry.path());
        } else if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writers_never_leave_torn_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::new(dir.path()).unwrap();
    let started = Instant::now();
    let mut last_generation: BTreeMap<u64, u64> = BTreeMap::new();
    let (mut kills, mut interrupted, mut temps, mut created, mut decided) = (0, 0, 0, 0, 0);
    let mut overwrites = 0;
    for round in 0..ROUNDS {
        let a = Writer::spawn(dir.path(), b'A', round, None);
        let b = Writer::spawn(dir.path(), b'B', round, None);
        std::thread::sleep(Duration::from_micros(random_u64() % 60_000));
        let (reports_a, overwrites_a) = a.kill();
        std::thread::sleep(Duration::from_micros(random_u64() % 30_000));
        let (reports_b, overwrites_b) = b.kill();
        overwrites += overwrites_a + overwrites_b;
        kills += 2;

        // Stray temporary files: a kill caught a write in flight. get/list must ignore them.
        let stray = count_temp_files(dir.path());
        temps += stray;
        interrupted += usize::from(stray > 0);

        for k in 0..SHARED_KEYS {
            let key = shared_key(k);
            match store.get(&key).await {
                Ok(body) => {
                    let (tag, generation) =
                        validate(&body).unwrap_or_else(|e| panic!("round {round}, {key}: {e}"));
                    assert!(tag == b'A' || tag == b'B');
                    let before = last_generation.insert(k, generation).unwrap_or(0);
                    assert!(generation >= before, "{key} went back to an older body");
                    assert!(generation < (round + 1) * 1_000_000);
                }
                Err(e) if e.is_not_found() => {
                    assert!(
                        !last_generation.contains_key(&k),
                        "{key} vanished in round {round}"
                    );
                }
                Err(e) => panic!("{key}: {e}"),
            }
        }
        let upto = reports_a
            .keys()
            .chain(reports_b.keys())
            .max()
            // A writer may have created one key past its last report (or key 0 unreported).
            .map_or(1, |m| m + 2);
        let reports = [(b'A', reports_a), (b'B', reports_b)];
        created += check_races(&store, round, &reports, upto).await;
        decided += (0..upto)
            .filter(|i| reports.iter().all(|(_, r)| r.contains_key(i)))
            .count();
        for key in store.list("shared").await.unwrap() {
            validate(&store.get(&key).await.unwrap()).unwrap();
        }
        // Nobody writes now: sweep what the kills left.
        store.clean_temp_files(Duration::ZERO).await.unwrap();
        assert_eq!(count_temp_files(dir.path()), 0);
    }
    let listed = store.list("race").await.unwrap().len();
    assert_eq!(listed as u64, created);
    println!(
        "fs kill test: {kills} SIGKILLs in {ROUNDS} rounds, {:.1} s; {overwrites} overwrites \
         acknowledged; {interrupted} rounds left {temps} stray temporary files (writes caught in \
         flight), all ignored and swept; {} shared keys valid, newest generations {:?}; {created} create-only keys, {decided} \
         races reported by both writers, never two winners; 0 torn or empty files",
        started.elapsed().as_secs_f64(),
        last_generation.len(),
        last_generation.values().collect::<Vec<_>>(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_racing_to_create_never_both_win() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = FsStore::new(&root).unwrap();
    let go = dir.path().join("go");
    let round = 1_000_000; // apart from the kill test's rounds
    let a = Writer::spawn(&root, b'A', round, Some(&go));
    let b = Writer::spawn(&root, b'B', round, Some(&go));
    std::fs::write(&go, b"go").unwrap();
    let reports = [(b'A', a.finish().0), (b'B', b.finish().0)];
    for (tag, r) in &reports {
        assert_eq!(
            r.len() as u64,
            RACE_KEYS,
            "writer {} did not finish",
            char::from(*tag)
        );
    }
    let created = check_races(&store, round, &reports, RACE_KEYS).await;
    assert_eq!(created, RACE_KEYS);
    let wins: Vec<usize> = reports
        .iter()
        .map(|(_, r)| r.values().filter(|w| **w).count())
        .collect();
    assert_eq!(wins.iter().sum::<usize>() as u64, RACE_KEYS);
    println!("fs create race: {RACE_KEYS} keys, wins A/B = {wins:?}, never both");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_incrementing_by_compare_and_swap_lose_no_update() {
    const WRITERS: [u8; 3] = [b'A', b'B', b'C'];
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = FsStore::new(&root).unwrap();
    let go = dir.path().join("go");
    let round = 2_000_000; // apart from the other tests' rounds
    let key = race_key(round, 0);
    store
        .put(&key, frame(b'I', 0, 64), PutOptions::create())
        .await
        .unwrap();
    let writers: Vec<Writer> = WRITERS
        .into_iter()
        .map(|tag| Writer::spawn_with(&root, tag, round, Some(&go), true))
        .collect();
    std::fs::write(&go, b"go").unwrap();
    let mut conflicts = 0u64;
    for mut writer in writers {
        writer.child.wait().unwrap();
        let mut rest = String::new();
        let _ = writer.stdout.read_to_string(&mut rest);
        let line = rest
            .lines()
            .find_map(|l| l.strip_prefix("W "))
            .unwrap_or_else(|| panic!("a writer did not finish: {rest:?}"));
        let (wins, lost) = line.split_once(' ').unwrap();
        assert_eq!(wins.parse::<u64>().unwrap(), CAS_INCREMENTS);
        conflicts += lost.parse::<u64>().unwrap();
    }
    // Every successful update was applied on top of the one before: none was lost.
    let (_, counter) = validate(&store.get(&key).await.unwrap()).unwrap();
    assert_eq!(counter, CAS_INCREMENTS * WRITERS.len() as u64);
    println!(
        "fs compare-and-swap counter: {counter} increments from {} processes, {conflicts} conflicts retried",
        WRITERS.len()
    );
}
