//! The Kubernetes manifests in `deploy/` and the `Dockerfile`, checked against the binary they
//! run (containers cannot be built here, so this is what proves them):
//!
//! * every manifest parses (YAML, several documents a file) and hangs together: selectors
//!   match the pods' labels, named ports exist, the PodDisruptionBudget leaves replicas up,
//!   the Indexed Job's shard count is its completions, secrets are mounted 0400, every
//!   container runs as the image's non-root user with a read-only root;
//! * the image is this version's, with the Dockerfile's entrypoint, user and ports;
//! * every flag in the containers' arguments is in `portal-backup <command> --help`, and every
//!   variable in their environment is one the binary reads, so a renamed flag or variable
//!   fails here;
//! * each container then runs as Kubernetes would run it (its arguments and environment, with
//!   only the secrets, volumes, ports and cloud KMS swapped for local ones): the webhook
//!   answers its liveness and readiness probes and serves metrics on the ports and paths the
//!   manifest names, and the Job's pod takes the shard of its `JOB_COMPLETION_INDEX` and
//!   writes its summary where the pod's termination message is read;
//! * `docs/deploy.md` shows each manifest as it is in `deploy/`;
//! * a Secret file as Kubernetes mounts it for a non-root pod is refused by `--secret-file`,
//!   which is why the webhook's secret is a variable.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    missing_docs
)] // test helpers: a broken fixture should panic

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize as _;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_portal-backup");
const IMAGE_REPOSITORY: &str = "ghcr.io/portal-backup/portal-backup";
/// Where Kubernetes reads a container's termination message unless told otherwise.
const DEFAULT_TERMINATION_LOG: &str = "/dev/termination-log";
/// The annotation Kubernetes sets to each pod's completion index in an Indexed Job.
const COMPLETION_INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";

fn root() -> PathBuf {
    test_services::workspace_root()
}

/// Every document of every `deploy/*.yaml`, with its file name.
fn manifests() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("deploy"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
            docs.push((name.clone(), value));
        }
    }
    docs
}

/// The one object of `kind` (in `file`).
fn one<'a>(docs: &'a [(String, Value)], file: &str, kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|(f, d)| f == file && d["kind"] == kind)
        .map(|(_, d)| d)
        .collect();
    assert_eq!(found.len(), 1, "{file}: one {kind}");
    found[0]
}

fn str_of(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
}

/// What `portal-backup <command> --help` lists: the long flags and the variables.
struct Help {
    flags: BTreeSet<String>,
    env: BTreeSet<String>,
}

fn help(command: &[String]) -> Help {
    let out = Command::new(BIN)
        .args(command)
        .arg("--help")
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success(), "{command:?} --help");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut flags = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim_start();
        if !line.starts_with('-') {
            continue;
        }
        for word in line.split([' ', ',']) {
            if let Some(name) = word.strip_prefix("--") {
                flags.insert(name.split(['=', '<']).next().unwrap().to_owned());
            } else if !word.is_empty() && !word.starts_with('-') {
                break;
            }
        }
    }
    // `[env: NAME=]` may be wrapped across lines.
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let env = flat
        .split("[env: ")
        .skip(1)
        .map(|rest| rest.split(['=', ']']).next().unwrap().to_owned())
        .collect();
    Help { flags, env }
}

/// The variables the binary reads that are not options of its own (each from the constant
/// the code reads, where there is one).
fn other_variables() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        (
            backup_flow::client_lines::JOB_COMPLETION_INDEX,
            "the Indexed Job's shard index (bulk backup)",
        ),
        (
            custodian_webhook::SECRET_ENV,
            "the webhook secret without --secret-file",
        ),
        ("RUST_LOG", "the log filter"),
        ("AWS_REGION", "the AWS SDK's region (aws-kms:, s3://)"),
    ])
}

/// Variables that hold a secret (or, for the store, a URI with a password).
const SECRET_VARIABLES: [&str; 4] = [
    custodian_webhook::SECRET_ENV,
    "PORTAL_BACKUP_STORE",
    "PORTAL_CLIENT_API_KEY",
    "PORTAL_CUSTODIAN_API_KEY",
];

/// A pod template's one container, with the pod spec.
struct Pod<'a> {
    file: &'a str,
    spec: &'a Value,
    labels: &'a Value,
    container: &'a Value,
}

impl<'a> Pod<'a> {
    fn of(file: &'a str, workload: &'a Value) -> Self {
        let template = &workload["spec"]["template"];
        let containers = template["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1, "{file}: one container");
        Self {
            file,
            spec: &template["spec"],
            labels: &template["metadata"]["labels"],
            container: &containers[0],
        }
    }

    fn args(&self) -> Vec<String> {
        self.container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| str_of(a).to_owned())
            .collect()
    }

    /// The subcommand: the arguments before the first flag.
    fn command(&self) -> Vec<String> {
        self.args()
            .into_iter()
            .take_while(|a| !a.starts_with('-'))
            .collect()
    }

    /// The value of `--flag value` or `--flag=value`.
    fn flag(&self, flag: &str) -> Option<String> {
        let args = self.args();
        let at = args
            .iter()
            .position(|a| a == flag || a.starts_with(&format!("{flag}=")))?;
        Some(match args[at].split_once('=') {
            Some((_, value)) => value.to_owned(),
            None => args[at + 1].clone(),
        })
    }

    fn env(&self) -> Vec<&'a Value> {
        self.container["env"]
            .as_array()
            .map(|e| e.iter().collect())
            .unwrap_or_default()
    }

    fn env_value(&self, name: &str) -> Option<&'a str> {
        self.env()
            .into_iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
    }

    /// The container port called `name`.
    fn port(&self, name: &str) -> u16 {
        let port = self.container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{}: no container port {name}", self.file));
        u16::try_from(port["containerPort"].as_u64().unwrap()).unwrap()
    }

    fn port_numbers(&self) -> BTreeSet<u16> {
        self.container["ports"]
            .as_array()
            .map(|ports| {
                ports
                    .iter()
                    .map(|p| u16::try_from(p["containerPort"].as_u64().unwrap()).unwrap())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A probe's or policy's port: a container port's name or number.
    fn resolve_port(&self, port: &Value) -> u16 {
        match port {
            Value::String(name) => self.port(name),
            number => u16::try_from(number.as_u64().unwrap()).unwrap(),
        }
    }

    /// The volume mounted at `mount_path`.
    fn volume(&self, mount_path: &str) -> &'a Value {
        let mount = self.container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == mount_path)
            .unwrap();
        self.spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap_or_else(|| panic!("{}: no volume {}", self.file, mount["name"]))
    }

    /// The mount paths with their volumes.
    fn mounts(&self) -> Vec<(String, &'a Value)> {
        self.container["volumeMounts"]
            .as_array()
            .map(|mounts| {
                mounts
                    .iter()
                    .map(|m| {
                        let path = str_of(&m["mountPath"]).to_owned();
                        let volume = self.volume(&path);
                        (path, volume)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The Dockerfile's final stage: its base image, user id, entrypoint and exposed ports.
struct Image {
    base: String,
    user: u64,
    entrypoint: Vec<String>,
    exposed: BTreeSet<u16>,
    features_arg: bool,
}

fn dockerfile() -> Image {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let last_stage = text.rsplit("\nFROM ").next().unwrap();
    let instruction = |name: &str| {
        last_stage
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{name} ")))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let user = instruction("USER");
    assert_eq!(user.len(), 1, "one USER in the final stage");
    Image {
        base: last_stage.split_whitespace().next().unwrap().to_owned(),
        user: user[0].split(':').next().unwrap().parse().unwrap(),
        entrypoint: serde_json::from_str(&instruction("ENTRYPOINT").concat()).unwrap(),
        exposed: instruction("EXPOSE")
            .iter()
            .flat_map(|l| l.split_whitespace().map(|p| p.parse().unwrap()))
            .collect(),
        features_arg: text.contains("ARG FEATURES") && text.contains("--features \"${FEATURES}\""),
    }
}

// ---- structure --------------------------------------------------------------------------

/// Checks every container against the binary's help and the image; returns nothing, panics
/// with the manifest's file on the first mismatch.
fn check_container(pod: &Pod<'_>, image: &Image) {
    let file = pod.file;
    let container = pod.container;
    assert!(
        container.get("command").is_none(),
        "{file}: the image's ENTRYPOINT runs the binary; give `args` only"
    );
    assert_eq!(
        str_of(&container["image"]),
        format!("{IMAGE_REPOSITORY}:{}", env!("CARGO_PKG_VERSION")),
        "{file}: this version's image"
    );
    let command = pod.command();
    let help = help(&command);
    for arg in pod.args() {
        if let Some(flag) = arg.strip_prefix("--") {
            let flag = flag.split('=').next().unwrap();
            assert!(
                help.flags.contains(flag),
                "{file}: `portal-backup {} --help` has no --{flag} (it has {:?})",
                command.join(" "),
                help.flags
            );
        }
    }
    let others = other_variables();
    let mut defined = BTreeSet::new();
    for var in pod.env() {
        let name = str_of(&var["name"]);
        assert!(
            help.env.contains(name) || others.contains_key(name),
            "{file}: `portal-backup {}` reads no variable {name} (options read {:?}, and the binary {:?})",
            command.join(" "),
            help.env,
            others.keys()
        );
        // $(NAME) expands only variables defined earlier in the list.
        if let Some(value) = var["value"].as_str() {
            for reference in value.split("$(").skip(1) {
                let referenced = reference.split(')').next().unwrap();
                assert!(
                    defined.contains(referenced),
                    "{file}: {name} uses $({referenced}) before it is defined"
                );
            }
        }
        if SECRET_VARIABLES.contains(&name) {
            assert!(
                var["valueFrom"].get("secretKeyRef").is_some(),
                "{file}: {name} holds a secret: from a Secret, never a value in the manifest"
            );
        }
        defined.insert(name.to_owned());
    }

    // Non-root, as the image's user, with nothing writable but its volumes.
    let pod_security = &pod.spec["securityContext"];
    assert_eq!(pod_security["runAsNonRoot"], true, "{file}");
    assert_eq!(
        pod_security["runAsUser"], image.user,
        "{file}: the image's user"
    );
    if pod.mounts().iter().any(|(_, v)| v.get("secret").is_some()) {
        assert_eq!(
            pod_security["fsGroup"], image.user,
            "{file}: fsGroup lets the user read its Secret files"
        );
    }
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false, "{file}");
    assert_eq!(security["readOnlyRootFilesystem"], true, "{file}");
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(pod.spec["automountServiceAccountToken"], false, "{file}");

    // Secrets are files mounted 0400, and the files the arguments name are in them.
    for (path, volume) in pod.mounts() {
        if let Some(secret) = volume.get("secret") {
            assert_eq!(
                secret["defaultMode"], 0o400,
                "{file}: Secret volume at {path} mounted 0400"
            );
        }
    }
    for arg in pod.args() {
        if arg.starts_with('/') && arg != DEFAULT_TERMINATION_LOG {
            let (mount, volume) = pod
                .mounts()
                .into_iter()
                .find(|(m, _)| Path::new(&arg).starts_with(m))
                .unwrap_or_else(|| panic!("{file}: {arg} is on no volume"));
            if let Some(items) = volume["secret"]["items"].as_array() {
                let item = Path::new(&arg).strip_prefix(&mount).unwrap();
                assert!(
                    items.iter().any(|i| Path::new(str_of(&i["path"])) == item),
                    "{file}: {arg} is not an item of the Secret at {mount}"
                );
            }
        }
    }
}

fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().unwrap();
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn the_dockerfile_builds_a_non_root_image_that_runs_the_binary() {
    let image = dockerfile();
    assert!(
        image.base.starts_with("gcr.io/distroless/cc"),
        "run on distroless (no shell): {}",
        image.base
    );
    assert!(image.user != 0, "a non-root user");
    assert_eq!(
        image.entrypoint.len(),
        1,
        "the binary alone: {:?}",
        image.entrypoint
    );
    assert_eq!(
        Path::new(&image.entrypoint[0]).file_name(),
        Path::new(BIN).file_name(),
        "ENTRYPOINT is the portal-backup binary"
    );
    assert!(image.features_arg, "cargo features as a build argument");
    // The features the Dockerfile and the docs name exist.
    let cargo = std::fs::read_to_string(root().join("crates/cli/Cargo.toml")).unwrap();
    let features = cargo
        .split("[features]")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap();
    let known: BTreeSet<&str> = features
        .lines()
        .filter_map(|l| l.split_once(" = ").map(|(name, _)| name.trim()))
        .collect();
    for text in [
        std::fs::read_to_string(root().join("Dockerfile")).unwrap(),
        std::fs::read_to_string(root().join("docs/deploy.md")).unwrap(),
    ] {
        for example in text.split("FEATURES=\"").skip(1) {
            // An empty list (the default) builds no optional feature.
            for feature in example
                .split('"')
                .next()
                .unwrap()
                .split(',')
                .filter(|f| !f.is_empty())
            {
                assert!(
                    known.contains(feature.trim()),
                    "no cargo feature {feature:?} (known: {known:?})"
                );
            }
        }
    }
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l.trim_matches('/') == "target"),
        "the build context leaves out target/"
    );
}

#[test]
fn the_webhook_manifests_match_the_binary() {
    let docs = manifests();
    let image = dockerfile();
    let file = "webhook.yaml";
    let deployment = one(&docs, file, "Deployment");
    let pod = Pod::of(file, deployment);
    check_container(&pod, &image);
    assert_eq!(pod.command(), ["serve-webhook"]);

    // Replicas over one store, behind a balancer: forwarded-for trusted, plain HTTP from the
    // TLS-terminating balancer allowed, and no per-peer connection cap on the balancer.
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap();
    assert!(replicas >= 2, "several replicas");
    let args = pod.args();
    for flag in ["--trust-forwarded-for", "--behind-tls-proxy"] {
        assert!(args.iter().any(|a| a == flag), "{file}: {flag}");
    }
    assert_eq!(pod.flag("--max-connections-per-peer").as_deref(), Some("0"));
    assert!(
        pod.flag("--secret-file").is_some()
            || pod
                .env()
                .iter()
                .any(|e| e["name"] == custodian_webhook::SECRET_ENV),
        "{file}: the webhook secret from a Secret (file or variable)"
    );

    // Ports: the flags' ports are the container's, the image exposes them, the probes and
    // Prometheus use the metrics port.
    let listen: SocketAddr = pod.flag("--listen").unwrap().parse().unwrap();
    let metrics: SocketAddr = pod.flag("--metrics-listen").unwrap().parse().unwrap();
    assert_eq!(listen.port(), pod.port("webhook"));
    assert_eq!(metrics.port(), pod.port("metrics"));
    assert_eq!(
        pod.port_numbers(),
        image.exposed,
        "EXPOSE in the Dockerfile"
    );
    let container = pod.container;
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(pod.resolve_port(&get["port"]), metrics.port(), "{probe}");
    }
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        str_of(&annotations["prometheus.io/port"]),
        metrics.port().to_string()
    );
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    // The Deployment, Service, budget and policy select these pods and name their ports.
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    assert!(selects(selector, pod.labels));
    let service = one(&docs, file, "Service");
    assert!(selects(&service["spec"]["selector"], pod.labels));
    for port in service["spec"]["ports"].as_array().unwrap() {
        assert_eq!(pod.resolve_port(&port["targetPort"]), listen.port());
    }
    let budget = one(&docs, file, "PodDisruptionBudget");
    assert_eq!(&budget["spec"]["selector"]["matchLabels"], selector);
    let unavailable = budget["spec"]["maxUnavailable"].as_u64().unwrap();
    assert!(unavailable >= 1 && unavailable < replicas);
    let policy = one(&docs, file, "NetworkPolicy");
    assert_eq!(&policy["spec"]["podSelector"]["matchLabels"], selector);
    let policed: BTreeSet<u16> = policy["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rule| rule["ports"].as_array().unwrap())
        .map(|p| pod.resolve_port(&p["port"]))
        .collect();
    assert_eq!(policed, pod.port_numbers(), "every port admits someone");
    let account = one(&docs, file, "ServiceAccount");
    assert_eq!(account["metadata"]["name"], pod.spec["serviceAccountName"]);
}

#[test]
fn the_bulk_job_manifest_matches_the_binary() {
    let docs = manifests();
    let image = dockerfile();
    let file = "bulk-job.yaml";
    let job = one(&docs, file, "Job");
    let pod = Pod::of(file, job);
    check_container(&pod, &image);
    assert_eq!(pod.command(), ["bulk", "backup"]);
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    let completions = spec["completions"].as_u64().unwrap();
    assert!(spec["parallelism"].as_u64().unwrap() <= completions);
    assert!(
        pod.flag("--shard").is_none(),
        "the shard comes from the Job"
    );
    let count = pod
        .flag("--shard-count")
        .or_else(|| {
            pod.env_value("PORTAL_BACKUP_SHARD_COUNT")
                .map(str::to_owned)
        })
        .expect("a shard count");
    assert_eq!(
        count,
        completions.to_string(),
        "the shard count is the completions"
    );
    let index = pod
        .env()
        .into_iter()
        .find(|e| e["name"] == backup_flow::client_lines::JOB_COMPLETION_INDEX);
    if let Some(index) = index {
        assert_eq!(
            str_of(&index["valueFrom"]["fieldRef"]["fieldPath"]),
            format!("metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"),
            "declared as Kubernetes sets it"
        );
    }
    // Retries per index, with the exit codes of the bulk run.
    assert_eq!(pod.spec["restartPolicy"], "Never");
    assert!(spec["backoffLimitPerIndex"].as_u64().unwrap() >= 1);
    let mut codes = BTreeMap::new();
    for rule in spec["podFailurePolicy"]["rules"].as_array().unwrap() {
        if let Some(on) = rule.get("onExitCodes") {
            assert_eq!(on["containerName"], pod.container["name"]);
            assert_eq!(on["operator"], "In");
            for code in on["values"].as_array().unwrap() {
                codes.insert(code.as_u64().unwrap(), str_of(&rule["action"]));
            }
        }
    }
    assert_eq!(
        codes,
        BTreeMap::from([(1, "FailIndex"), (2, "FailJob")]),
        "usage errors fail the Job, lines failed for good their index, and exit 3 is retried"
    );
    let summary = pod.flag("--summary").expect("--summary");
    let message = pod.container["terminationMessagePath"]
        .as_str()
        .unwrap_or(DEFAULT_TERMINATION_LOG);
    assert_eq!(summary, message, "the summary is the termination message");
    assert!(
        pod.env_value("PORTAL_BACKUP_STATE_DIR")
            .is_some_and(|dir| dir.contains("$(JOB_COMPLETION_INDEX)")),
        "a journal directory per shard"
    );
    let claim = one(&docs, file, "PersistentVolumeClaim");
    let state = pod.volume(
        &pod.mounts()
            .into_iter()
            .find(|(_, v)| v.get("persistentVolumeClaim").is_some())
            .unwrap()
            .0,
    );
    assert_eq!(
        state["persistentVolumeClaim"]["claimName"],
        claim["metadata"]["name"]
    );
    assert!(
        claim["spec"]["accessModes"]
            .as_array()
            .unwrap()
            .contains(&"ReadWriteMany".into()),
        "pods of several indexes at once"
    );
}

#[test]
fn docs_deploy_shows_the_manifests_as_they_are() {
    let doc = std::fs::read_to_string(root().join("docs/deploy.md")).unwrap();
    for name in ["webhook.yaml", "bulk-job.yaml"] {
        let text = std::fs::read_to_string(root().join("deploy").join(name)).unwrap();
        assert!(
            doc.contains(&format!("```yaml\n{text}```")),
            "docs/deploy.md shows deploy/{name} as it is"
        );
    }
    assert!(
        doc.contains(&format!("{IMAGE_REPOSITORY}:{}", env!("CARGO_PKG_VERSION"))),
        "docs/deploy.md builds the image the manifests run"
    );
    assert!(
        doc.contains("cannot be built"),
        "says containers were not built"
    );
}

// ---- running the containers -------------------------------------------------------------

/// A container's arguments and environment as Kubernetes would give them, with the secrets,
/// volumes, ports and cloud KMS swapped for local ones in `dir`.
struct Local {
    dir: tempfile::TempDir,
    /// Mount path in the manifest → local directory.
    mounts: Vec<(String, PathBuf)>,
    /// The Secrets' test contents, by key.
    secrets: BTreeMap<String, String>,
}

impl Local {
    /// `secrets`: the test contents of the Secrets' keys.
    fn new(pod: &Pod<'_>, secrets: &BTreeMap<&str, &str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut mounts = Vec::new();
        for (i, (path, volume)) in pod.mounts().into_iter().enumerate() {
            let local = dir.path().join(format!("volume-{i}"));
            std::fs::create_dir_all(&local).unwrap();
            if let Some(items) = volume["secret"]["items"].as_array() {
                for item in items {
                    let key = str_of(&item["key"]);
                    let content = secrets
                        .get(key)
                        .unwrap_or_else(|| panic!("no test content for {key}"));
                    let file = local.join(str_of(&item["path"]));
                    std::fs::write(&file, content).unwrap();
                    kubernetes_mode(pod, &volume["secret"], &file);
                }
            }
            mounts.push((path, local));
        }
        let local = Self {
            dir,
            mounts,
            secrets: secrets
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let out = Command::new(BIN)
            .env_clear()
            .args(["keygen", "--out"])
            .arg(local.kek())
            .output()
            .unwrap();
        assert!(out.status.success());
        local
    }

    fn kek(&self) -> PathBuf {
        self.dir.path().join("kek")
    }

    fn termination_log(&self) -> PathBuf {
        self.dir.path().join("termination-log")
    }

    /// A path of the manifest on this machine.
    fn path(&self, value: &str) -> String {
        if value == DEFAULT_TERMINATION_LOG {
            return self.termination_log().display().to_string();
        }
        for (mount, local) in &self.mounts {
            if let Ok(rest) = Path::new(value).strip_prefix(mount) {
                return local.join(rest).display().to_string();
            }
        }
        value.to_owned()
    }

    /// The command: the arguments, with `--kms` local and listen ports from `ports`.
    fn command(&self, pod: &Pod<'_>, ports: &BTreeMap<u16, u16>) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear().env("HOME", self.dir.path());
        let mut previous = String::new();
        for arg in pod.args() {
            let value = match previous.as_str() {
                "--kms" => format!("local:{}", self.kek().display()),
                "--listen" | "--metrics-listen" => {
                    let addr: SocketAddr = arg.parse().unwrap();
                    SocketAddr::new(addr.ip(), ports[&addr.port()]).to_string()
                }
                _ => self.path(&arg),
            };
            cmd.arg(&value);
            previous = arg;
        }
        // Never Portal itself: nothing here should call it, and nothing can leave loopback.
        cmd.env("PORTAL_API_URL", "http://127.0.0.1:9")
            .env("PORTAL_MPC_URL", "http://127.0.0.1:9");
        cmd
    }

    /// The environment as Kubernetes builds it: values, `$(NAME)` of earlier variables,
    /// `fieldRef`s from `annotations`, and the store's Secret as a local file store.
    fn environment(
        &self,
        pod: &Pod<'_>,
        annotations: &BTreeMap<&str, &str>,
    ) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = Vec::new();
        for var in pod.env() {
            let name = str_of(&var["name"]).to_owned();
            let value = if let Some(value) = var["value"].as_str() {
                let mut value = value.to_owned();
                for (earlier, earlier_value) in &env {
                    value = value.replace(&format!("$({earlier})"), earlier_value);
                }
                self.path(&value)
            } else if let Some(field) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                let annotation = field
                    .strip_prefix("metadata.annotations['")
                    .and_then(|f| f.strip_suffix("']"))
                    .unwrap_or_else(|| panic!("field {field}"));
                annotations[annotation].to_owned()
            } else if let Some(key) = var["valueFrom"]["secretKeyRef"]["key"].as_str() {
                if name == "PORTAL_BACKUP_STORE" {
                    format!("file:{}", self.dir.path().join("store").display())
                } else {
                    self.secrets
                        .get(key)
                        .unwrap_or_else(|| panic!("no test content for {key}"))
                        .clone()
                }
            } else {
                panic!("{name}: no value");
            };
            env.push((name, value));
        }
        env
    }
}

/// Gives a Secret file the mode Kubernetes gives it: `defaultMode`, plus group read when the
/// pod has an `fsGroup` (the kubelet adds it to every file of a read-only volume).
fn kubernetes_mode(pod: &Pod<'_>, secret: &Value, file: &Path) {
    let mut mode = u32::try_from(secret["defaultMode"].as_u64().unwrap_or(0o644)).unwrap();
    if pod.spec["securityContext"].get("fsGroup").is_some() {
        mode |= 0o440;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// The server, killed when the test ends, also by a panic.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Deployment's container, run with its own arguments: it starts, and its probes and
/// metrics answer on the ports and paths the manifest gives Kubernetes and Prometheus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_container_runs_and_answers_its_probes() {
    let docs = manifests();
    let deployment = one(&docs, "webhook.yaml", "Deployment");
    let pod = Pod::of("webhook.yaml", deployment);
    let local = Local::new(
        &pod,
        &BTreeMap::from([("secret", "deploy-test-webhook-secret")]),
    );
    let webhook = pod.port("webhook");
    let metrics = pod.port("metrics");
    let ports = BTreeMap::from([
        (webhook, test_services::free_port()),
        (metrics, test_services::free_port()),
    ]);
    let mut cmd = local.command(&pod, &ports);
    cmd.envs(local.environment(&pod, &BTreeMap::new()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut server = Running(cmd.spawn().unwrap());
    let mut line = String::new();
    // Kept open while the server runs: it may print more.
    let mut stdout = BufReader::new(server.0.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    assert!(
        line.contains("listening"),
        "serve-webhook did not start with the manifest's arguments: {line:?} (stderr above)"
    );

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let get = |port: u16, path: &str| {
        let url = format!("http://127.0.0.1:{}{path}", ports[&port]);
        let http = http.clone();
        async move { http.get(&url).send().await }
    };
    let container = pod.container;
    for probe in ["livenessProbe", "readinessProbe"] {
        let path = str_of(&container[probe]["httpGet"]["path"]);
        let port = pod.resolve_port(&container[probe]["httpGet"]["port"]);
        // Readiness may wait for the first store and KMS check.
        let started = Instant::now();
        let status = loop {
            match get(port, path).await {
                Ok(response) if response.status().is_success() => break response.status(),
                Ok(response) if started.elapsed() > Duration::from_secs(20) => {
                    break response.status();
                }
                Err(e) if started.elapsed() > Duration::from_secs(20) => {
                    panic!("{probe} {path} on port {port}: {e}");
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        if !status.is_success() {
            panic!("{probe} {path} on port {port}: http {status}");
        }
    }
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    let metrics_path = str_of(&annotations["prometheus.io/path"]);
    let response = get(metrics, metrics_path).await.unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    drop(server);
    assert!(status.is_success(), "{metrics_path}: http {status}");
    assert!(
        body.contains("# TYPE"),
        "Prometheus text from {metrics_path}"
    );
}

/// The Job's container, run as the last pod of the Indexed Job: it takes the shard of its
/// JOB_COMPLETION_INDEX, keeps its journal in the shard's directory and writes its summary
/// where Kubernetes reads the termination message.
#[test]
fn the_bulk_job_container_runs_its_shard() {
    let docs = manifests();
    let job = one(&docs, "bulk-job.yaml", "Job");
    let pod = Pod::of("bulk-job.yaml", job);
    let completions = job["spec"]["completions"].as_u64().unwrap();
    let last = (completions - 1).to_string();
    let local = Local::new(&pod, &BTreeMap::from([("clients.jsonl", "\n")]));
    let mut cmd = local.command(&pod, &BTreeMap::new());
    let mut env = local.environment(
        &pod,
        &BTreeMap::from([(COMPLETION_INDEX_ANNOTATION, last.as_str())]),
    );
    // Kubernetes adds the index itself when the manifest does not declare it.
    if !env
        .iter()
        .any(|(n, _)| n == backup_flow::client_lines::JOB_COMPLETION_INDEX)
    {
        env.push((
            backup_flow::client_lines::JOB_COMPLETION_INDEX.into(),
            last.clone(),
        ));
    }
    let out = cmd
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "exit {:?}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(local.termination_log()).unwrap()).unwrap();
    assert_eq!(summary["exitCode"], 0);
    assert_eq!(
        summary["shard"],
        serde_json::json!({"index": completions - 1, "count": completions, "from": "JOB_COMPLETION_INDEX"})
    );
    let state = &env
        .iter()
        .find(|(n, _)| n == "PORTAL_BACKUP_STATE_DIR")
        .unwrap()
        .1;
    assert!(
        state.ends_with(&format!("shard-{last}")) && Path::new(state).is_dir(),
        "the journal of shard {last} in its own directory: {state}"
    );
}

/// Why the Deployment passes the webhook secret as a variable: a Secret file as Kubernetes
/// mounts it for a non-root pod (`0400` plus the group read `fsGroup` adds) is refused by
/// `--secret-file`. If this ever passes, the manifest can mount the secret as a file instead.
#[test]
#[cfg(unix)]
fn a_secret_file_as_kubernetes_mounts_it_for_a_non_root_pod_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "deploy-test-webhook-secret\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o400 | 0o440)).unwrap();
    let out = Command::new(BIN)
        .env_clear()
        .env(
            "PORTAL_BACKUP_STORE",
            format!("file:{}", dir.path().join("store").display()),
        )
        .args(["serve-webhook", "--listen", "127.0.0.1:0", "--secret-file"])
        .arg(&secret)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("mode 440"), "{stderr}");
}
