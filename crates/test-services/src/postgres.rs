//! A throwaway PostgreSQL server on loopback, for the `postgres` store's tests, the CLI's
//! tests, the store latency benchmark, the webhook's load program and `cargo xtask ci`.
//!
//! The server binaries (`initdb`, `postgres`, `pg_isready`, `pg_dump`) are found in
//! [`BIN_ENV`], else next to an `initdb` on `PATH`, else in Debian's
//! `/usr/lib/postgresql/<newest version>/bin` (`apt-get install postgresql`; `cargo xtask ci`
//! installs it). Missing binaries make the caller skip loudly, or fail under `cargo xtask ci`
//! ([`tool_missing`]).
//!
//! `cargo xtask ci` starts one server for the whole test run and hands it to every test
//! process in [`URL_ENV`] ([`shared`] then uses it instead of starting one); tests that need a
//! database of their own make one with [`Postgres::create_database`].
//!
//! Each server gets a fresh directory under the system's temporary directory (data directory,
//! Unix socket, log), listens on `127.0.0.1` only on a free port, and requires a random
//! password (SCRAM) for its superuser [`USER`]. PostgreSQL refuses to run as root, so when
//! this process is root the server runs as the `postgres` user (which Debian's package
//! creates), else `nobody`. It runs under a small `sh` whose standard input is a pipe from
//! this process ([`Watched`]): when the pipe closes (on drop, or when this process dies in
//! any way) the shell stops the server (fast shutdown) and removes the directory.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{Watched, free_port, random_hex, scratch_dir, tool_missing};

/// A directory holding `initdb`, `postgres` and `pg_isready`.
pub const BIN_ENV: &str = "PORTAL_BACKUP_PG_BIN";
/// A running server to use instead of starting one:
/// `postgres://<superuser>:<password>@127.0.0.1:<port>/postgres`.
pub const URL_ENV: &str = "PORTAL_BACKUP_PG_URL";
/// The superuser of the throwaway cluster.
pub const USER: &str = "portal";

/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// The shell running the server, held for its drop (which stops the server); `None` for
    /// a server from [`URL_ENV`].
    _wrapper: Option<Watched>,
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

/// The directory of the server binaries, if any.
#[must_use]
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

/// (uid, gid) to run the server as: `None` (this process's own) unless this process is root.
fn server_user() -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt as _;
    let me = std::fs::metadata("/proc/self").map(|m| m.uid());
    if me.is_ok_and(|uid| uid != 0) {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let find = |name: &str| {
        passwd.lines().find_map(|line| {
            let mut fields = line.split(':');
            let (user, _, uid, gid) = (
                fields.next()?,
                fields.next()?,
                fields.next()?,
                fields.next()?,
            );
            (user == name).then_some(())?;
            Some((uid.parse().ok()?, gid.parse().ok()?))
        })
    };
    Some(
        find("postgres")
            .or_else(|| find("nobody"))
            .expect("running as root, and neither a postgres nor a nobody user exists"),
    )
}

fn as_server_user(cmd: &mut Command) -> &mut Command {
    if let Some((uid, gid)) = server_user() {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// Starts a server, or reports the binaries missing ([`tool_missing`]) and returns `None`.
///
/// # Panics
///
/// When the binaries are missing under `cargo xtask ci`, `initdb` fails, or the server does
/// not accept connections within 60 s (its log is in the message).
#[must_use]
pub fn start() -> Option<Postgres> {
    let Some(bin) = bin_dir() else {
        tool_missing(
            "PostgreSQL",
            &format!(
                "no initdb/postgres/pg_isready in ${BIN_ENV}, on PATH or in \
                 /usr/lib/postgresql/*/bin; `apt-get install postgresql`"
            ),
        );
        return None;
    };
    let dir = scratch_dir("pg");
    let password = random_hex();
    let pwfile = dir.join("pwfile");
    std::fs::write(&pwfile, &password).expect("writing the password file");
    if let Some((uid, gid)) = server_user() {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown of the directory");
        std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).expect("chown of the pwfile");
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
        .expect("running initdb");
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
    let wrapper = Watched::spawn(
        as_server_user(&mut Command::new("sh"))
            .args(["-c", WRAPPER])
            .env("PG_BIN", &bin)
            .env("PG_DIR", &dir)
            .env("PG_PORT", port.to_string())
            .current_dir(&dir),
        Duration::from_secs(30),
    )
    .expect("starting PostgreSQL's wrapper shell");
    let pg = Postgres {
        _wrapper: Some(wrapper),
        url: format!("postgres://{USER}:{password}@127.0.0.1:{port}/postgres"),
        bin: Some(bin),
        dir: Some(dir),
        port,
        user: USER.to_owned(),
        password,
    };
    let started = Instant::now();
    loop {
        let ready = pg
            .client("pg_isready")
            .args(["-q", "-t", "2"])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return Some(pg);
        }
        assert!(
            started.elapsed() < START_TIMEOUT,
            "PostgreSQL did not start on port {port} within 60 s; its log:\n{}",
            pg.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The server at `url` (`postgres://user:password@127.0.0.1:port/database`), not ours to stop.
///
/// # Panics
///
/// When `url` is not of that form.
#[must_use]
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
        _wrapper: None,
        bin: bin_dir(),
        dir: None,
        port,
        user: user.to_owned(),
        password: password.to_owned(),
        url: url.to_owned(),
    }
}

/// The server shared by this process: the one in [`URL_ENV`], else one started on first use
/// (stopped when the process exits). `None` after a loud skip.
#[must_use]
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
    #[must_use]
    pub fn data_dir(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|dir| dir.join("data"))
    }

    /// The server's log, when this process started the server (else empty).
    #[must_use]
    pub fn log(&self) -> String {
        self.dir
            .as_ref()
            .and_then(|dir| std::fs::read_to_string(dir.join("log")).ok())
            .unwrap_or_default()
    }

    /// The postmaster's process id (the first line of `postmaster.pid`), when this process
    /// started the server.
    #[must_use]
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
    #[must_use]
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
    ///
    /// # Panics
    ///
    /// When `psql` cannot run or fails.
    pub fn psql(&self, sql: &str) -> String {
        let out = self
            .client("psql")
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("running psql");
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("psql prints UTF-8")
    }

    /// Makes a fresh database named `{prefix}_{random}` and returns (its name, its URL): one
    /// per test keeps tests independent on a shared server.
    ///
    /// # Panics
    ///
    /// When `CREATE DATABASE` fails.
    #[must_use]
    pub fn create_database(&self, prefix: &str) -> (String, String) {
        let random = random_hex();
        let name = format!("{prefix}_{}", random.get(..12).unwrap_or(&random));
        self.psql(&format!("CREATE DATABASE \"{name}\""));
        let url = format!(
            "postgres://{}:{}@127.0.0.1:{}/{name}",
            self.user, self.password, self.port
        );
        (name, url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_external_url_gives_user_password_and_port() {
        let pg = external("postgres://u:p%3Aw@127.0.0.1:6543/db");
        assert_eq!((pg.user.as_str(), pg.password.as_str()), ("u", "p%3Aw"));
        assert_eq!(pg.port, 6543);
        assert_eq!(pg.data_dir(), None);
    }

    /// A server of its own: a database made on it, and its directory gone once dropped.
    #[test]
    fn starts_on_loopback_and_removes_its_directory_on_drop() {
        let Some(pg) = start() else { return };
        let (name, url) = pg.create_database("fixture");
        assert!(url.ends_with(&format!("@127.0.0.1:{}/{name}", pg.port)));
        assert_eq!(pg.psql("SELECT 1").trim(), "1");
        let dir = pg.dir.clone().unwrap();
        assert!(dir.join("data").is_dir());
        drop(pg);
        assert!(!dir.exists(), "the server's directory outlived it");
    }
}
