//! A throwaway PostgreSQL server on loopback, for the `postgres` store's tests and the
//! webhook's load program (which includes this file by path; it uses `std` only).
//!
//! The server binaries (`initdb`, `postgres`, `pg_isready`, `pg_dump`) are found in
//! `PORTAL_BACKUP_PG_BIN`, else next to an `initdb` on `PATH`, else in Debian's
//! `/usr/lib/postgresql/<newest version>/bin` (`apt-get install postgresql`; `cargo xtask ci`
//! installs it). Missing binaries make the caller skip loudly, or fail under `cargo xtask ci`
//! (`PORTAL_BACKUP_XTASK=1`).
//!
//! `cargo xtask ci` starts one server for the whole test run and hands it to every test
//! process in `PORTAL_BACKUP_PG_URL` ([`shared`] then uses it instead of starting one); tests
//! that need a database of their own make one with [`Postgres::create_database`].
//!
//! Each server gets a fresh directory under the system's temporary directory (data directory,
//! Unix socket, log), listens on `127.0.0.1` only on a free port, and requires a random
//! password (SCRAM) for its superuser `portal`. PostgreSQL refuses to run as root, so when
//! this process is root the server runs as the `postgres` user (which Debian's package
//! creates), else `nobody`. It runs under a small `sh` whose standard input is a pipe from
//! this process: when the pipe closes (on drop, or when this process dies in any way) the
//! shell stops the server (fast shutdown) and removes the directory.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "test fixture: a panic is a test failure"
)]

use std::hash::{BuildHasher as _, Hasher as _};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Set by `cargo xtask ci`: missing PostgreSQL binaries are a failure, not a skip.
pub const XTASK_ENV: &str = "PORTAL_BACKUP_XTASK";
/// A directory holding `initdb`, `postgres` and `pg_isready`.
pub const BIN_ENV: &str = "PORTAL_BACKUP_PG_BIN";
/// A running server to use instead of starting one:
/// `postgres://<superuser>:<password>@127.0.0.1:<port>/postgres`.
pub const URL_ENV: &str = "PORTAL_BACKUP_PG_URL";
/// The superuser of the throwaway cluster.
pub const USER: &str = "portal";

/// Stops the server when standard input closes, then removes its directory.
const WRAPPER: &str = r#"
"$PG_BIN/postgres" -D "$PG_DIR/data" -p "$PG_PORT" -c listen_addresses=127.0.0.1 \
    -c unix_socket_directories="$PG_DIR" -c max_connections=200 \
    >"$PG_DIR/log" 2>&1 </dev/null &
pid=$!
cat >/dev/null
kill -INT "$pid" 2>/dev/null
wait "$pid"
rm -rf "$PG_DIR"
"#;

/// A running server; stopped and its directory removed on drop.
#[derive(Debug)]
pub struct Postgres {
    /// The shell running the server; `None` for a server from [`URL_ENV`].
    wrapper: Option<Child>,
    /// Where the server binaries (and `psql`, `pg_dump`) are, if known.
    bin: Option<PathBuf>,
    /// The server's directory (data, socket, log); `None` for a server from [`URL_ENV`].
    dir: Option<PathBuf>,
    /// The loopback port.
    pub port: u16,
    /// The superuser.
    pub user: String,
    /// The superuser's password.
    pub password: String,
    /// `postgres://portal:<password>@127.0.0.1:<port>/postgres`.
    pub url: String,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let Some(wrapper) = &mut self.wrapper else {
            return;
        };
        drop(wrapper.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = wrapper.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = wrapper.kill();
        let _ = wrapper.wait();
    }
}

/// Reports missing binaries: panics under xtask, prints a loud skip line otherwise.
pub fn tool_missing(detail: &str) {
    if std::env::var(XTASK_ENV).is_ok_and(|v| v == "1") {
        panic!("PostgreSQL is required under `cargo xtask ci` but is not usable: {detail}");
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: PostgreSQL server binaries not installed; run cargo xtask ci or \
         `apt-get install postgresql` ({detail})"
    );
}

/// The directory of the server binaries, if any.
pub fn bin_dir() -> Option<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "postgres", "pg_isready"]
            .iter()
            .all(|tool| dir.join(tool).is_file())
    };
    if let Some(dir) = std::env::var_os(BIN_ENV) {
        let dir = PathBuf::from(dir);
        return has_all(&dir).then_some(dir);
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("initdb"))
        .find(|initdb| initdb.is_file())
        .and_then(|initdb| std::fs::canonicalize(initdb).ok())
        .and_then(|initdb| initdb.parent().map(Path::to_path_buf));
    if let Some(dir) = on_path.filter(|dir| has_all(dir)) {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_all(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

/// (uid, gid) to run the server as: this process's own, unless it is root.
fn server_user() -> Option<(u32, u32)> {
    let me = std::fs::metadata("/proc/self").map(|m| {
        use std::os::unix::fs::MetadataExt as _;
        m.uid()
    });
    if me.is_ok_and(|uid| uid != 0) {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let find = |name: &str| {
        passwd.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() > 3 && f[0] == name {
                Some((f[2].parse().ok()?, f[3].parse().ok()?))
            } else {
                None
            }
        })
    };
    Some(
        find("postgres")
            .or_else(|| find("nobody"))
            .expect("running as root, and neither a postgres nor a nobody user exists"),
    )
}

/// 32 random hex digits (std's per-process random SipHash keys; good enough for a throwaway
/// test password).
fn random_hex() -> String {
    let mut out = String::new();
    for i in 0..2u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn as_server_user(cmd: &mut Command) -> &mut Command {
    if let Some((uid, gid)) = server_user() {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// Starts a server, or reports the binaries missing (`None`).
pub fn start() -> Option<Postgres> {
    let Some(bin) = bin_dir() else {
        tool_missing(&format!(
            "no initdb/postgres/pg_isready in ${BIN_ENV}, on PATH or in /usr/lib/postgresql/*/bin"
        ));
        return None;
    };
    let dir = std::env::temp_dir().join(format!(
        "portal-backup-pg-{}-{}",
        std::process::id(),
        &random_hex()[..12]
    ));
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let password = random_hex();
    let pwfile = dir.join("pwfile");
    std::fs::write(&pwfile, &password).unwrap();
    if let Some((uid, gid)) = server_user() {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).unwrap();
    }
    let output = as_server_user(&mut Command::new(bin.join("initdb")))
        .arg("-D")
        .arg(dir.join("data"))
        .args([
            "-U",
            USER,
            "-A",
            "scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .args(["--no-sync", "--no-instructions"])
        .arg(format!("--pwfile={}", pwfile.display()))
        .current_dir(&dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&pwfile);
    if !output.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        panic!(
            "initdb failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let port = free_port();
    let wrapper = as_server_user(&mut Command::new("sh"))
        .args(["-c", WRAPPER])
        .env("PG_BIN", &bin)
        .env("PG_DIR", &dir)
        .env("PG_PORT", port.to_string())
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pg = Postgres {
        wrapper: Some(wrapper),
        url: format!("postgres://{USER}:{password}@127.0.0.1:{port}/postgres"),
        bin: Some(bin),
        dir: Some(dir),
        port,
        user: USER.to_owned(),
        password,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = pg
            .client("pg_isready")
            .args(["-q", "-t", "2"])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return Some(pg);
        }
        if Instant::now() > deadline {
            panic!(
                "PostgreSQL did not start on port {port} within 60 s; its log:\n{}",
                pg.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The server at `url` (`postgres://user:password@127.0.0.1:port/database`), not ours to stop.
pub fn external(url: &str) -> Postgres {
    let rest = url.strip_prefix("postgres://").expect("a postgres:// URL");
    let (userinfo, hostpart) = rest.split_once('@').expect("user:password@ in the URL");
    let (user, password) = userinfo.split_once(':').expect("a password in the URL");
    let authority = hostpart.split('/').next().unwrap_or_default();
    let port = authority
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(5432);
    Postgres {
        wrapper: None,
        bin: bin_dir(),
        dir: None,
        port,
        user: user.to_owned(),
        password: password.to_owned(),
        url: url.to_owned(),
    }
}

/// The server shared by this process: the one in [`URL_ENV`], else one started on first use
/// (stopped when the process exits).
pub fn shared() -> Option<&'static Postgres> {
    static SERVER: OnceLock<Option<Postgres>> = OnceLock::new();
    SERVER
        .get_or_init(|| match std::env::var(URL_ENV) {
            Ok(url) => Some(external(&url)),
            Err(_) => start(),
        })
        .as_ref()
}

impl Postgres {
    /// The server's data directory, when this process started the server.
    pub fn data_dir(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|dir| dir.join("data"))
    }

    /// The server's log, when this process started the server.
    pub fn log(&self) -> String {
        self.dir
            .as_ref()
            .and_then(|dir| std::fs::read_to_string(dir.join("log")).ok())
            .unwrap_or_default()
    }

    /// The postmaster's process id (the first line of `postmaster.pid`), when this process
    /// started the server.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data_dir()?.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// A client tool of the server (`pg_dump`, `psql`, …), connected to the server as its
    /// superuser (the password in the environment, never on the command line).
    pub fn client(&self, tool: &str) -> Command {
        let program = self
            .bin
            .as_ref()
            .map(|bin| bin.join(tool))
            .filter(|path| path.is_file())
            .unwrap_or_else(|| PathBuf::from(tool));
        let mut cmd = Command::new(program);
        cmd.env("PGHOST", "127.0.0.1")
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", &self.user)
            .env("PGDATABASE", "postgres")
            .env("PGPASSWORD", &self.password);
        cmd
    }

    /// Runs `sql` with `psql` and returns its unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        let out = self
            .client("psql")
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Makes a fresh database named `{prefix}_{random}` and returns (its name, its URL): one
    /// per test keeps tests independent on a shared server.
    pub fn create_database(&self, prefix: &str) -> (String, String) {
        let name = format!("{prefix}_{}", &random_hex()[..12]);
        self.psql(&format!("CREATE DATABASE \"{name}\""));
        let url = format!(
            "postgres://{}:{}@127.0.0.1:{}/{name}",
            self.user, self.password, self.port
        );
        (name, url)
    }
}
