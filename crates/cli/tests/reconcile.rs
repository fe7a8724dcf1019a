//! `reconcile --credentials` end to end against `portal-sim` (Portal-Managed Backups): a
//! backup stored with Portal whose confirmation was refused is confirmed from a fresh state
//! directory with no new `/v1/backup`, a client never backed up is reported (exit 4), a bad
//! line fails alone, nothing secret is printed, a rerun has nothing left to do, and a plan
//! that is not a dry run's output deletes nothing.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)] // tests: a broken fixture should panic

#[path = "support/output.rs"]
mod output;
use output::text;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use portal_api::SharePairStatus;
use portal_sim::{FaultRule, PortalSim, SimClient, SimConfig};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_portal-backup");

/// The binary with a clean environment: the sim's URLs, a key file, a state directory.
fn cmd(sim: &PortalSim, dir: &Path, state: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("HOME", dir)
        .env("PORTAL_BACKUP_STATE_DIR", dir.join(state))
        .env(
            "PORTAL_BACKUP_KMS",
            format!("local:{}", dir.join("kek").display()),
        )
        .env("PORTAL_API_URL", sim.api_base_url())
        .env("PORTAL_MPC_URL", sim.mpc_base_url())
        .stdin(Stdio::null());
    cmd
}

fn output(cmd: &mut Command) -> Output {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// A client whose app generated its wallet; its generate response as JSON text.
async fn app_client(sim: &PortalSim) -> (SimClient, String) {
    let (keys, generate) = sim.generated_client().await.unwrap();
    (keys, serde_json::to_string(&generate).unwrap())
}

fn backup(sim: &PortalSim, dir: &Path, keys: &SimClient, generate: &str) -> Output {
    let file = dir.join(format!("{}.json", keys.client_id));
    std::fs::write(&file, generate).unwrap();
    output(
        cmd(sim, dir, "state")
            .env("PORTAL_CLIENT_API_KEY", keys.client_api_key.expose_secret())
            .args(["backup", "--generate-response"])
            .arg(&file),
    )
}

fn completed(sim: &PortalSim, client_id: &str) -> usize {
    sim.client_details(client_id)
        .unwrap()
        .wallets
        .iter()
        .flat_map(|w| w.backup_share_pairs.iter())
        .filter(|p| p.status == SharePairStatus::Completed)
        .count()
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_confirms_what_is_stored_and_reports_the_rest() {
    let sim = PortalSim::start(SimConfig::new()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keygen = output(
        cmd(&sim, dir.path(), "state")
            .args(["keygen", "--out"])
            .arg(dir.path().join("kek")),
    );
    assert!(keygen.status.success(), "{}", text(&keygen));

    // Backed up; stored with Portal but the confirmation refused; never backed up.
    let (whole, generate) = app_client(&sim).await;
    assert!(backup(&sim, dir.path(), &whole, &generate).status.success());
    let (half, generate) = app_client(&sim).await;
    sim.add_fault(
        "PATCH /api/v3/clients/me/backup-share-pairs: error=1.0, status=503"
            .parse::<FaultRule>()
            .unwrap(),
    )
    .unwrap();
    let refused = backup(&sim, dir.path(), &half, &generate);
    sim.clear_faults();
    assert!(!refused.status.success(), "{}", text(&refused));
    assert_eq!(completed(&sim, &half.client_id), 0);
    let (never, _) = app_client(&sim).await;

    let credentials: PathBuf = dir.path().join("clients.jsonl");
    let input = [
        json!({"clientApiKey": whole.client_api_key.expose_secret()}).to_string(),
        json!({"clientSessionToken": half.client_session_token.expose_secret()}).to_string(),
        "not json at all".to_owned(),
        json!({"clientApiKey": never.client_api_key.expose_secret()}).to_string(),
    ]
    .join("\n");
    std::fs::write(&credentials, &input).unwrap();
    let mpc_before = sim.report().traffic.mpc.requests;

    // A fresh state directory: what Portal and the store say decides.
    let reconcile = || {
        output(
            cmd(&sim, dir.path(), "state-elsewhere")
                .args(["reconcile", "--rate-limit", "off", "--credentials"])
                .arg(&credentials),
        )
    };
    let out = reconcile();
    // A line failed for good (exit 1) beats clients left open (exit 4).
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let results = lines(&out);
    assert_eq!(results.len(), 4, "{}", text(&out));
    let by_line = |n: u64| results.iter().find(|r| r["line"] == n).unwrap();
    assert_eq!(by_line(1)["status"], "whole");
    assert_eq!(by_line(2)["status"], "whole");
    let done: Vec<&str> = by_line(2)["done"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["action"].as_str().unwrap())
        .collect();
    assert_eq!(done, ["confirmed", "confirmed"]);
    assert_eq!(by_line(3)["status"], "failed");
    assert_eq!(by_line(4)["status"], "open");
    assert_eq!(by_line(4)["open"][0]["reason"], "not-backed-up");
    assert_eq!(completed(&sim, &half.client_id), 2);
    assert_eq!(sim.report().traffic.mpc.requests, mpc_before, "no MPC call");
    let all = text(&out);
    assert!(all.contains("1 failed"), "{all}");
    for keys in [&whole, &half, &never] {
        assert!(!all.contains(keys.client_api_key.expose_secret()));
        assert!(!all.contains(keys.client_session_token.expose_secret()));
    }

    // Without the bad line: only the never-backed-up client is left, exit 4; a rerun
    // confirms nothing new.
    let good: Vec<&str> = input.lines().filter(|l| l.starts_with('{')).collect();
    std::fs::write(&credentials, good.join("\n")).unwrap();
    let out = reconcile();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        lines(&out).iter().all(|r| r.get("done").is_none()),
        "{}",
        text(&out)
    );

    // A plan that is not a dry run's output is refused before anything is done.
    let plan = dir.path().join("plan.jsonl");
    std::fs::write(&plan, "{\"wouldPrune\": [\"x\"]}\nnot a result line\n").unwrap();
    let out = output(
        cmd(&sim, dir.path(), "state-elsewhere")
            .args(["reconcile", "--prune-orphans", "--plan"])
            .arg(&plan)
            .arg("--credentials")
            .arg(&credentials),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("is not the output of a reconcile dry run"),
        "{}",
        text(&out)
    );
    assert!(out.stdout.is_empty(), "no client was reconciled");

    // --plan without --prune-orphans is a usage error.
    let out = output(
        cmd(&sim, dir.path(), "state-elsewhere")
            .args(["reconcile", "--plan"])
            .arg(&plan)
            .arg("--credentials")
            .arg(&credentials),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let report = sim.report();
    assert!(report.is_clean(), "{report}");
}
