//! `bulk backup` run as the pods of a Kubernetes Indexed Job run it, against `portal-sim` on
//! loopback: the shard from `JOB_COMPLETION_INDEX` with `PORTAL_BACKUP_SHARD_COUNT` (or
//! `--shard-count`), the machine-readable summary (`--summary`, and stdout with `--output`)
//! that tells a job controller which shards to retry, and the usage error of an environment
//! that names no shard.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    missing_docs
)] // test helpers: a broken fixture should panic

#[path = "support/output.rs"]
mod output;
use output::text;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use portal_api::SharePairStatus;
use portal_sim::{PortalSim, SimConfig};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_portal-backup");

/// Portal-managed clients whose apps generated their wallets, one input line each, in a
/// working directory with a key file and a state directory.
struct Fleet {
    sim: PortalSim,
    dir: tempfile::TempDir,
    input: PathBuf,
    /// The client ids by input line number (`None` for a line that is not a client).
    by_line: Vec<Option<String>>,
}

/// `lines`: `Some(())` for a client, `None` for a line that cannot be used.
async fn fleet(lines: &[Option<()>]) -> Fleet {
    let sim = PortalSim::start(SimConfig::new()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut input, mut by_line) = (String::new(), Vec::new());
    for line in lines {
        match line {
            Some(()) => {
                let (keys, generate) = sim.generated_client().await.unwrap();
                input.push_str(
                    &json!({
                        "clientApiKey": keys.client_api_key.expose_secret(),
                        "generateResponse": generate,
                    })
                    .to_string(),
                );
                by_line.push(Some(keys.client_id.clone()));
            }
            None => {
                input.push_str("not a client");
                by_line.push(None);
            }
        }
        input.push('\n');
    }
    let input_path = dir.path().join("clients.jsonl");
    std::fs::write(&input_path, input).unwrap();
    let fleet = Fleet {
        sim,
        dir,
        input: input_path,
        by_line,
    };
    let kek = fleet.path("kek");
    let out = run(fleet.cmd().args(["keygen", "--out"]).arg(kek));
    assert!(out.status.success(), "{}", text(&out));
    fleet
}

impl Fleet {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The binary with a clean environment (no JOB_COMPLETION_INDEX of our own).
    fn cmd(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("HOME", self.dir.path())
            .env("PORTAL_BACKUP_STATE_DIR", self.path("state"))
            .env(
                "PORTAL_BACKUP_KMS",
                format!("local:{}", self.path("kek").display()),
            )
            .env("PORTAL_API_URL", self.sim.api_base_url())
            .env("PORTAL_MPC_URL", self.sim.mpc_base_url());
        cmd
    }

    /// `bulk backup` of the whole input with `env`, results to `results-<name>` and the
    /// summary to `summary-<name>`.
    fn bulk(&self, name: &str, env: &[(&str, &str)], args: &[&str]) -> Run {
        let results = self.path(&format!("results-{name}"));
        let summary = self.path(&format!("summary-{name}"));
        let mut cmd = self.cmd();
        cmd.envs(env.iter().copied())
            .args(["bulk", "backup", "--rate-limit", "off", "--input"])
            .arg(&self.input)
            .arg("--output")
            .arg(&results)
            .arg("--summary")
            .arg(&summary)
            .args(args);
        let out = run(&mut cmd);
        let summary_text = std::fs::read_to_string(&summary).unwrap_or_default();
        let results = std::fs::read_to_string(&results)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        Run {
            out,
            summary_text,
            results,
        }
    }

    /// Completed backup pairs by curve of the client of input line `line`.
    fn completed(&self, line: usize) -> Vec<usize> {
        let id = self.by_line[line - 1].as_ref().unwrap();
        self.sim
            .client_details(id)
            .unwrap()
            .wallets
            .iter()
            .map(|w| {
                w.backup_share_pairs
                    .iter()
                    .filter(|p| p.status == SharePairStatus::Completed)
                    .count()
            })
            .collect()
    }
}

struct Run {
    out: Output,
    summary_text: String,
    results: Vec<Value>,
}

impl Run {
    /// The summary, which must be one JSON line, the same in the file and on stdout, and
    /// carry the process's exit code.
    fn summary(&self) -> Value {
        let all = text(&self.out);
        assert_eq!(
            self.summary_text.lines().count(),
            1,
            "the summary is one line\n{all}"
        );
        assert_eq!(
            String::from_utf8_lossy(&self.out.stdout),
            self.summary_text,
            "stdout carries the summary with --output\n{all}"
        );
        let summary: Value = serde_json::from_str(&self.summary_text).unwrap();
        assert_eq!(
            summary["exitCode"],
            self.out.status.code().unwrap(),
            "{all}"
        );
        summary
    }

    /// The input line numbers of the result lines, sorted.
    fn lines(&self) -> Vec<u64> {
        let mut lines: Vec<u64> = self
            .results
            .iter()
            .map(|r| r["line"].as_u64().unwrap())
            .collect();
        lines.sort_unstable();
        lines
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

// ---- tests ------------------------------------------------------------------------------

/// Three pods of an Indexed Job (completions 3) over seven clients: each takes the lines its
/// JOB_COMPLETION_INDEX names, the three together back up every client exactly once, and
/// each summary says what its shard did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_completion_index_picks_the_shard_and_the_shards_cover_every_client_once() {
    const COUNT: u64 = 3;
    let fleet = fleet(&[Some(()); 7]).await;
    let mut seen: Vec<String> = Vec::new();
    for index in 0..COUNT {
        let index_text = index.to_string();
        // The count from the variable for two pods, from the flag for the third.
        let run = if index < 2 {
            fleet.bulk(
                &index_text,
                &[
                    ("JOB_COMPLETION_INDEX", &index_text),
                    ("PORTAL_BACKUP_SHARD_COUNT", "3"),
                ],
                &[],
            )
        } else {
            fleet.bulk(
                &index_text,
                &[("JOB_COMPLETION_INDEX", &index_text)],
                &["--shard-count", "3"],
            )
        };
        assert!(run.out.status.success(), "{}", text(&run.out));
        let expected: Vec<u64> = (1..=7).filter(|l| (l - 1) % COUNT == index).collect();
        assert_eq!(
            run.lines(),
            expected,
            "pod {index} took the lines of its shard"
        );
        let summary = run.summary();
        let taken = expected.len() as u64;
        assert_eq!(
            summary["shard"],
            json!({"index": index, "count": COUNT, "from": "JOB_COMPLETION_INDEX"})
        );
        assert_eq!(summary["outcome"], "succeeded");
        assert_eq!(summary["lines"], 7);
        assert_eq!(summary["selected"], taken);
        assert_eq!(summary["skippedByShard"], 7 - taken);
        assert_eq!(summary["backedUp"], taken);
        assert_eq!(summary["alreadyConfirmed"], 0);
        assert_eq!(summary["failed"], 0);
        for result in &run.results {
            assert_eq!(result["status"], "confirmed", "{result}");
            seen.push(result["clientId"].as_str().unwrap().to_owned());
        }
    }
    seen.sort_unstable();
    let mut all: Vec<String> = fleet.by_line.iter().flatten().cloned().collect();
    all.sort_unstable();
    assert_eq!(
        seen, all,
        "the shards together took every client exactly once"
    );
    for line in 1..=7 {
        assert_eq!(
            fleet.completed(line),
            [1, 1],
            "line {line}: one backup per curve"
        );
    }

    // A pod run again (a retried index) finds its clients done; `--shard` wins over the
    // environment.
    let again = fleet.bulk(
        "again",
        &[
            ("JOB_COMPLETION_INDEX", "1"),
            ("PORTAL_BACKUP_SHARD_COUNT", "3"),
        ],
        &[],
    );
    let summary = again.summary();
    assert_eq!(summary["alreadyConfirmed"], 2, "{}", text(&again.out));
    assert_eq!(summary["backedUp"], 0);
    let explicit = fleet.bulk(
        "explicit",
        &[("JOB_COMPLETION_INDEX", "0")],
        &["--shard", "2/3"],
    );
    assert_eq!(explicit.lines(), [3, 6]);
    assert_eq!(
        explicit.summary()["shard"],
        json!({"index": 2, "count": 3, "from": "--shard"})
    );
    let report = fleet.sim.report();
    assert!(report.is_clean(), "{report}");
}

/// A shard whose failures may all pass exits 3 and says so in its summary; a shard with a
/// line that fails for good exits 1; running only the retryable shard again completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_tells_the_shards_to_retry_from_those_that_need_a_fix() {
    // Indexes 0..5 over 3 shards: shard 0 takes clients 1 and 4, shard 1 client 2 and the
    // unusable line 5, shard 2 client 3.
    let fleet = fleet(&[Some(()), Some(()), Some(()), Some(()), None]).await;
    let shard = |index: &str, name: &str| {
        fleet.bulk(
            name,
            &[
                ("JOB_COMPLETION_INDEX", index),
                ("PORTAL_BACKUP_SHARD_COUNT", "3"),
            ],
            &[],
        )
    };

    fleet
        .sim
        .add_fault("POST /v1/backup: error=1, status=503".parse().unwrap())
        .unwrap();
    let down = shard("0", "0-down");
    assert_eq!(down.out.status.code(), Some(3), "{}", text(&down.out));
    let summary = down.summary();
    assert_eq!(summary["outcome"], "retryable");
    assert_eq!(summary["failed"], 2);
    assert_eq!(summary["retryableFailures"], 2);
    assert_eq!(summary["backedUp"], 0);
    fleet.sim.clear_faults();

    let broken = shard("1", "1");
    assert_eq!(broken.out.status.code(), Some(1), "{}", text(&broken.out));
    let summary = broken.summary();
    assert_eq!(summary["outcome"], "failed");
    assert_eq!(summary["failed"], 1);
    assert_eq!(summary["retryableFailures"], 0);
    assert_eq!(summary["backedUp"], 1);
    assert!(
        summary.get("error").is_none(),
        "failed lines say why in their results"
    );

    let fine = shard("2", "2");
    assert_eq!(fine.out.status.code(), Some(0), "{}", text(&fine.out));
    assert_eq!(fine.summary()["outcome"], "succeeded");

    let retried = shard("0", "0-retried");
    assert_eq!(retried.out.status.code(), Some(0), "{}", text(&retried.out));
    assert_eq!(retried.summary()["backedUp"], 2);
    for line in 1..=4 {
        assert_eq!(fleet.completed(line), [1, 1], "line {line}");
    }
}

/// An environment that names no shard is a usage error (exit 2) naming the variables, found
/// before anything is opened or asked of Portal; the summary still says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_that_names_no_shard_is_a_usage_error() {
    let fleet = fleet(&[Some(())]).await;
    // (environment, arguments, what stderr and the summary's error say)
    type Case = (
        &'static [(&'static str, &'static str)],
        &'static [&'static str],
        &'static str,
    );
    let cases: [Case; 6] = [
        (
            &[("JOB_COMPLETION_INDEX", "2")],
            &[],
            "JOB_COMPLETION_INDEX=2 names a shard index, but no shard count is given",
        ),
        (
            &[
                ("JOB_COMPLETION_INDEX", "3"),
                ("PORTAL_BACKUP_SHARD_COUNT", "3"),
            ],
            &[],
            "JOB_COMPLETION_INDEX=3 is not below the shard count 3",
        ),
        (
            &[("JOB_COMPLETION_INDEX", "1")],
            &["--shard-count", "1"],
            "JOB_COMPLETION_INDEX=1 is not below the shard count 1",
        ),
        (
            &[("PORTAL_BACKUP_SHARD_COUNT", "3")],
            &[],
            "a shard count (3) is given, but JOB_COMPLETION_INDEX is not set",
        ),
        (
            &[
                ("JOB_COMPLETION_INDEX", "one"),
                ("PORTAL_BACKUP_SHARD_COUNT", "3"),
            ],
            &[],
            r#"JOB_COMPLETION_INDEX="one" is not a shard index"#,
        ),
        (
            &[("PORTAL_BACKUP_SHARD_COUNT", "3")],
            &["--shard", "0/4"],
            "--shard 0/4 and a shard count of 3",
        ),
    ];
    for (i, (env, args, message)) in cases.into_iter().enumerate() {
        let run = fleet.bulk(&format!("bad-{i}"), env, args);
        let all = text(&run.out);
        assert_eq!(run.out.status.code(), Some(2), "{all}");
        let stderr = String::from_utf8_lossy(&run.out.stderr);
        assert!(stderr.contains(message), "{message:?}\n{all}");
        assert!(
            stderr.contains("PORTAL_BACKUP_SHARD_COUNT"),
            "the hint names the variable\n{all}"
        );
        assert!(run.results.is_empty(), "{all}");
        let summary = run.summary();
        assert_eq!(summary["outcome"], "stopped");
        assert!(
            summary["error"].as_str().unwrap().contains(message),
            "{summary}"
        );
        assert!(summary.get("selected").is_none(), "no counts: nothing ran");
    }
    assert_eq!(fleet.completed(1), [0, 0], "no client was backed up");
}

/// A run that cannot start still leaves its summary (outcome `stopped`, the error, the shard),
/// and a summary that cannot be written fails the run rather than leaving a controller to
/// guess.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_cannot_start_or_report_says_so() {
    let fleet = fleet(&[Some(())]).await;
    let job = [
        ("JOB_COMPLETION_INDEX", "0"),
        ("PORTAL_BACKUP_SHARD_COUNT", "1"),
    ];
    let missing_key = format!("local:{}", fleet.path("no-such-key").display());
    let stopped = fleet.bulk("no-kek", &job, &["--kms", &missing_key]);
    assert_eq!(stopped.out.status.code(), Some(1), "{}", text(&stopped.out));
    let summary = stopped.summary();
    assert_eq!(summary["outcome"], "stopped");
    assert_eq!(summary["shard"]["from"], "JOB_COMPLETION_INDEX");
    assert!(
        summary["error"]
            .as_str()
            .unwrap()
            .contains("cannot load the local key-encryption key"),
        "{summary}"
    );
    assert!(summary.get("selected").is_none(), "no counts: nothing ran");
    assert_eq!(fleet.completed(1), [0, 0]);

    let unwritable = fleet.path("no-such-dir").join("summary");
    let out = run(fleet
        .cmd()
        .envs(job)
        .args(["bulk", "backup", "--rate-limit", "off", "--input"])
        .arg(&fleet.input)
        .arg("--summary")
        .arg(&unwritable));
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("cannot write the summary"), "{all}");
    assert_eq!(fleet.completed(1), [1, 1], "the backup itself was done");
}
