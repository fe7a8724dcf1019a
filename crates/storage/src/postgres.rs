//! A store in PostgreSQL: one row per key, over `sqlx`.
//!
//! # Schema
//! One table, `portal_backup_objects`, created by the migrations embedded in this crate
//! (`migrations/postgres/`), which [`PostgresStore::connect`] applies on first use:
//!
//! | column | type | what |
//! |---|---|---|
//! | `client_id` | `text` | the key's client id (its first path segment) |
//! | `path` | `text` | the key's [path form](crate::BackupKey#path-form) |
//! | `body` | `bytea` | the stored bytes (ciphertext; at most 1 GiB, PostgreSQL's limit) |
//! | `version` | `bigint` | 1 when created, plus 1 on every overwrite |
//! | `created_at`, `updated_at` | `timestamptz` | when the row was created and last written |
//!
//! The primary key is `(client_id, path)`; listing a client is a range scan of it, with no
//! `LIKE` pattern to escape. Both columns use the `"C"` collation, so rows come back in the
//! byte order of the path form. The migrations' own bookkeeping lives in the table
//! `_portal_backup_storage_migrations`, apart from an application's own `sqlx` migrations
//! in the same database. Migrations run under PostgreSQL's advisory lock, so processes that
//! start at the same time apply them once.
//!
//! # Semantics
//! * Every operation is one SQL statement in its own transaction: a put that returned `Ok`
//!   is committed, and durable as far as the server's settings make commits durable (the
//!   defaults, `fsync = on` and `synchronous_commit = on`, do).
//! * [`PutMode::Create`] is `INSERT … ON CONFLICT DO NOTHING`: the primary key decides, so of
//!   many concurrent creates of one key (from any number of processes) exactly one inserts
//!   and the others get [`StorageError::AlreadyExists`].
//! * [`PutMode::Overwrite`] is `INSERT … ON CONFLICT DO UPDATE SET version = version + 1`: an
//!   upsert under the row's lock. Concurrent overwrites of one key are applied one after the
//!   other, in commit order, and each gets its own version; none is lost in between (no
//!   read-modify-write), and the stored body is always the one with the highest version.
//!   [`PostgresStore::put_versioned`] returns the version a put got, and
//!   [`BackupStore::get_versioned`] the version of what is stored. A key deleted and
//!   created again starts at version 1.
//! * [`PutMode::Update`] (compare and swap) is `UPDATE … WHERE version = $v AND` the row's
//!   creation time (in microseconds) is the one read: the row's lock decides, so of many
//!   concurrent updates from one version exactly one matches a row and the others get
//!   [`StorageError::Conflict`]. The creation time tells apart a row deleted and created
//!   again after the read, whose version restarts at 1. The [`ObjectVersion`] is
//!   `version` = the version column, `e_tag` = the creation time in microseconds since the
//!   Unix epoch.
//! * Readers see the old or the new body, never a mix (MVCC).
//!
//! # Errors
//! Connection failures, pool time-outs, and server states worth retrying (SQLSTATE class
//! `08`, `40001`, `40P01`, `53300`, `55P03`, `57014`, `57P01`–`57P03`) are
//! [`StorageError::Unavailable`]; everything else is [`StorageError::Backend`]. Errors carry
//! the server's SQLSTATE and message only, never a statement's parameters (the body) or the
//! row PostgreSQL quotes in a constraint violation's detail; neither errors nor `Debug` show
//! the connection URL's password.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
pub use sqlx::postgres::{PgConnectOptions, PgPool};

use crate::batch::{ClientObjects, Put, StoredObject, spread_error};
use crate::error::StorageError;
use crate::key::BackupKey;
use crate::store::{BackupStore, Capabilities, ObjectVersion, PutMode, PutOptions};

/// The table that holds the objects.
pub const TABLE: &str = "portal_backup_objects";

/// The table where the migrations of this store record what they applied.
pub const MIGRATIONS_TABLE: &str = "_portal_backup_storage_migrations";

/// Connections a pool opens at most, unless [`PostgresStoreBuilder::max_connections`] says
/// otherwise.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// How long an operation waits for a free connection (or for the server, when connecting)
/// before it fails with [`StorageError::Unavailable`], unless
/// [`PostgresStoreBuilder::acquire_timeout`] says otherwise.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

const NAME: &str = "postgres";

static MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

const INSERT_NEW: &str = "INSERT INTO portal_backup_objects (client_id, path, body) \
     VALUES ($1, $2, $3) ON CONFLICT (client_id, path) DO NOTHING RETURNING version";
const UPSERT: &str = "INSERT INTO portal_backup_objects (client_id, path, body) \
     VALUES ($1, $2, $3) ON CONFLICT (client_id, path) DO UPDATE \
     SET body = EXCLUDED.body, version = portal_backup_objects.version + 1, updated_at = now() \
     RETURNING version";
const UPDATE_IF_VERSION: &str = "UPDATE portal_backup_objects \
     SET body = $3, version = version + 1, updated_at = now() \
     WHERE client_id = $1 AND path = $2 AND version = $4 \
     AND (extract(epoch FROM created_at) * 1000000)::bigint = $5 \
     RETURNING version";
const SELECT: &str = "SELECT body, version, (extract(epoch FROM created_at) * 1000000)::bigint \
     FROM portal_backup_objects WHERE client_id = $1 AND path = $2";
/// Every object of a batch of clients ([`BackupStore::read_clients`]).
const READ_CLIENTS: &str = "SELECT client_id, path, body, version, \
     (extract(epoch FROM created_at) * 1000000)::bigint \
     FROM portal_backup_objects WHERE client_id = ANY($1) ORDER BY client_id, path";
/// A batch of compare-and-swap updates ([`BackupStore::put_many`]): `UPDATE_IF_VERSION` for
/// each row of the arrays at once; the rows it returns are the ones that matched.
const UPDATE_MANY_IF_VERSION: &str = "UPDATE portal_backup_objects AS o \
     SET body = u.body, version = o.version + 1, updated_at = now() \
     FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int8[], $5::int8[]) \
     AS u(client_id, path, body, version, created) \
     WHERE o.client_id = u.client_id AND o.path = u.path AND o.version = u.version \
     AND (extract(epoch FROM o.created_at) * 1000000)::bigint = u.created \
     RETURNING o.path";
/// A batch of create-only puts ([`BackupStore::put_many`]): `INSERT_NEW` for each row of the
/// arrays at once; the rows it returns are the ones it created.
const INSERT_MANY_NEW: &str = "INSERT INTO portal_backup_objects (client_id, path, body) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]) \
     ON CONFLICT (client_id, path) DO NOTHING RETURNING path";
/// A batch of overwrites ([`BackupStore::put_many`]): `UPSERT` for each row of the arrays at
/// once (a key comes at most once in it: `ON CONFLICT DO UPDATE` may touch a row only once).
const UPSERT_MANY: &str = "INSERT INTO portal_backup_objects (client_id, path, body) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]) \
     ON CONFLICT (client_id, path) DO UPDATE \
     SET body = EXCLUDED.body, version = portal_backup_objects.version + 1, updated_at = now() \
     RETURNING path";
/// Clients of one [`BackupStore::read_clients`] call, or objects of one
/// [`BackupStore::put_many`] call, that a store-wide run should send at once.
pub const BATCH_SIZE: usize = 64;
const DELETE: &str = "DELETE FROM portal_backup_objects WHERE client_id = $1 AND path = $2";
const LIST: &str = "SELECT path FROM portal_backup_objects WHERE client_id = $1 ORDER BY path";
const LIST_CLIENTS: &str =
    "SELECT DISTINCT client_id FROM portal_backup_objects ORDER BY client_id";
/// One page of [`BackupStore::stream_clients`]: the clients after the last one of the page
/// before (keyset pagination over the primary key's leading column, so a page costs the same
/// however deep into the table it is, and a page sees rows written since the one before).
const CLIENTS_AFTER: &str = "SELECT DISTINCT client_id FROM portal_backup_objects WHERE client_id > $1 ORDER BY client_id LIMIT $2";
/// Clients per page of [`BackupStore::stream_clients`].
const CLIENTS_PAGE: i64 = 1_000;

/// A [`BackupStore`] in a PostgreSQL table; see the [module docs](self).
///
/// Cheap to clone: clones share one connection pool.
///
/// ```no_run
/// use storage::{BackupKey, BackupStore, BackupStoreExt, postgres::PostgresStore};
///
/// # async fn example() -> Result<(), storage::StorageError> {
/// // Connects, and creates or updates the table if needed.
/// let store = PostgresStore::connect("postgres://backup:secret@db.internal/backups").await?;
/// let key = BackupKey::client_backup("cl_1", "bsp_1", "ED25519")?;
/// store.put_new(&key, "ciphertext".into()).await?;
/// assert_eq!(store.get(&key).await?, "ciphertext");
///
/// // The version column: 1 on create, plus 1 per overwrite.
/// let version = store.put_versioned(&key, "newer".into(), storage::PutMode::Overwrite).await?;
/// assert_eq!(version, 2);
///
/// // Compare and swap: replace only what was read.
/// let (_, read) = store.get_versioned(&key).await?;
/// store.put(&key, "newest".into(), storage::PutOptions::update(read.clone())).await?;
/// let stale = store.put(&key, "late".into(), storage::PutOptions::update(read)).await;
/// assert!(stale.unwrap_err().is_conflict());
///
/// // Or with a pool of your own size:
/// let store = PostgresStore::builder()
///     .max_connections(32)
///     .connect("postgres://backup:secret@db.internal/backups")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// The connection target without its password, for `Debug`.
    target: String,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .field(
                "max_connections",
                &self.pool.options().get_max_connections(),
            )
            .finish_non_exhaustive()
    }
}

/// Options of a [`PostgresStore`]'s connection pool; made by [`PostgresStore::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct PostgresStoreBuilder {
    max_connections: u32,
    acquire_timeout: Duration,
}

impl Default for PostgresStoreBuilder {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
        }
    }
}

impl PostgresStoreBuilder {
    /// Connections the pool opens at most ([`DEFAULT_MAX_CONNECTIONS`]; at least 1). Keep the
    /// sum over every process below the server's `max_connections`.
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long to wait for a connection ([`DEFAULT_ACQUIRE_TIMEOUT`]).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Connects to the database at `url` (`postgres://user:password@host:port/database`, with
    /// the query parameters `sqlx` accepts, such as `sslmode=verify-full`) and applies the
    /// migrations.
    ///
    /// # Errors
    /// As [`PostgresStore::connect`].
    pub async fn connect(self, url: &str) -> Result<PostgresStore, StorageError> {
        let options = PgConnectOptions::from_str(url).map_err(|e| url_error(url, &e))?;
        self.connect_with(options).await
    }

    /// Connects with `options` and applies the migrations.
    ///
    /// # Errors
    /// As [`PostgresStore::connect`].
    pub async fn connect_with(
        self,
        options: PgConnectOptions,
    ) -> Result<PostgresStore, StorageError> {
        let target = describe(&options);
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| db_error("cannot connect to the database", e))?;
        PostgresStore::with_target(pool, target).await
    }
}

impl PostgresStore {
    /// Connects to the database at `url` with a pool of [`DEFAULT_MAX_CONNECTIONS`], and
    /// creates or updates the table (the migrations are embedded in this crate). Safe when
    /// several processes connect at once.
    ///
    /// `url` is `postgres://user:password@host:port/database`, with the query parameters
    /// `sqlx` accepts (for example `sslmode=verify-full`); missing parts come from the `PG*`
    /// environment variables as with `libpq`.
    ///
    /// # Errors
    /// [`StorageError::Unavailable`] when the server cannot be reached within
    /// [`DEFAULT_ACQUIRE_TIMEOUT`] or refuses connections for now;
    /// [`StorageError::Backend`] for a malformed URL, failed authentication, or a migration
    /// that cannot be applied. The error never contains the password.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        PostgresStoreBuilder::default().connect(url).await
    }

    /// Options for the pool; end with [`PostgresStoreBuilder::connect`].
    pub fn builder() -> PostgresStoreBuilder {
        PostgresStoreBuilder::default()
    }

    /// A store over a pool of your own, after applying the migrations through it.
    ///
    /// # Errors
    /// As [`PostgresStore::connect`].
    pub async fn from_pool(pool: PgPool) -> Result<Self, StorageError> {
        let target = describe(pool.connect_options().as_ref());
        Self::with_target(pool, target).await
    }

    async fn with_target(pool: PgPool, target: String) -> Result<Self, StorageError> {
        let mut migrator = Migrator {
            migrations: MIGRATIONS.migrations.clone(),
            ..Migrator::DEFAULT
        };
        migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
        migrator
            .run(&pool)
            .await
            .map_err(|e| db_error("cannot apply the migrations", sqlx::Error::from(e)))?;
        Ok(Self { pool, target })
    }

    /// The connection pool (to share it, or to close it with [`PgPool::close`]).
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Stores `body` under `key` as [`BackupStore::put`] does, and returns the version the
    /// row got: 1 when created, the previous version plus 1 when overwritten or updated.
    ///
    /// # Errors
    /// As [`BackupStore::put`].
    pub async fn put_versioned(
        &self,
        key: &BackupKey,
        body: Bytes,
        mode: PutMode,
    ) -> Result<i64, StorageError> {
        let path = key.to_path();
        let query = match &mode {
            PutMode::Create => sqlx::query_scalar(INSERT_NEW),
            PutMode::Overwrite => sqlx::query_scalar(UPSERT),
            PutMode::Update(_) => sqlx::query_scalar(UPDATE_IF_VERSION),
        }
        .bind(key.client_id())
        .bind(&path)
        .bind(body.as_ref());
        let query = match &mode {
            PutMode::Update(expected) => {
                // A version this store never made matches no row: a conflict, as the
                // object is not (any more) the one that version names.
                let Some((version, created)) = parse_version(expected) else {
                    return Err(StorageError::Conflict { key: key.clone() });
                };
                query.bind(version).bind(created)
            }
            _ => query,
        };
        let version: Option<i64> = query
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| db_error("cannot store the object", e))?;
        version.ok_or_else(|| match mode {
            PutMode::Update(_) => StorageError::Conflict { key: key.clone() },
            _ => StorageError::AlreadyExists { key: key.clone() },
        })
    }

    /// One `INSERT … SELECT … FROM unnest(…)` statement (`sql`) of `rows`: the paths of the
    /// rows it wrote.
    async fn insert_many(
        &self,
        sql: &'static str,
        rows: &[BatchRow],
    ) -> Result<Vec<String>, sqlx::Error> {
        let clients: Vec<&str> = rows.iter().map(|row| row.key.client_id()).collect();
        let paths: Vec<&str> = rows.iter().map(|row| row.path.as_str()).collect();
        let bodies: Vec<&[u8]> = rows.iter().map(|row| row.body.as_ref()).collect();
        sqlx::query_scalar(sql)
            .bind(&clients)
            .bind(&paths)
            .bind(&bodies)
            .fetch_all(&self.pool)
            .await
    }

    /// The version column of an [`ObjectVersion`] this store reported (`None` for one it
    /// did not make).
    #[must_use]
    pub fn version_number(version: &ObjectVersion) -> Option<i64> {
        parse_version(version).map(|(number, _)| number)
    }
}

/// The version column and creation time (µs since the epoch) of a version this store made.
fn parse_version(version: &ObjectVersion) -> Option<(i64, i64)> {
    let number = version.version()?.parse().ok()?;
    let created = version.e_tag()?.parse().ok()?;
    Some((number, created))
}

#[async_trait::async_trait]
impl BackupStore for PostgresStore {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    async fn put(
        &self,
        key: &BackupKey,
        body: Bytes,
        options: PutOptions,
    ) -> Result<(), StorageError> {
        self.put_versioned(key, body, options.mode).await.map(drop)
    }

    async fn get(&self, key: &BackupKey) -> Result<Bytes, StorageError> {
        self.get_versioned(key).await.map(|(body, _)| body)
    }

    async fn get_versioned(&self, key: &BackupKey) -> Result<(Bytes, ObjectVersion), StorageError> {
        let path = key.to_path();
        let row: Option<(Vec<u8>, i64, i64)> = sqlx::query_as(SELECT)
            .bind(key.client_id())
            .bind(&path)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| db_error("cannot read the object", e))?;
        match row {
            Some((body, version, created)) => Ok((
                Bytes::from(body),
                ObjectVersion::new(Some(created.to_string()), Some(version.to_string())),
            )),
            None => Err(StorageError::NotFound { key: key.clone() }),
        }
    }

    async fn delete(&self, key: &BackupKey) -> Result<(), StorageError> {
        let path = key.to_path();
        sqlx::query(DELETE)
            .bind(key.client_id())
            .bind(&path)
            .execute(&self.pool)
            .await
            .map_err(|e| db_error("cannot delete the object", e))?;
        Ok(())
    }

    async fn list(&self, client_id: &str) -> Result<Vec<BackupKey>, StorageError> {
        BackupKey::check_client_id(client_id)?;
        let paths: Vec<String> = sqlx::query_scalar(LIST)
            .bind(client_id)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_error("cannot list the objects", e))?;
        paths
            .iter()
            .map(|path| {
                BackupKey::from_path(path).map_err(|e| StorageError::Backend {
                    backend: NAME,
                    source: Box::new(e),
                })
            })
            .collect()
    }

    /// [`BATCH_SIZE`]: a batch is one statement.
    fn batch_size(&self) -> usize {
        BATCH_SIZE
    }

    /// One `SELECT … WHERE client_id = ANY(…)` for the whole batch.
    async fn read_clients(&self, client_ids: &[String]) -> Vec<ClientObjects> {
        type Row = (String, String, Vec<u8>, i64, i64);
        let valid: Vec<&str> = client_ids
            .iter()
            .filter(|id| BackupKey::check_client_id(id).is_ok())
            .map(String::as_str)
            .collect();
        let rows: Result<Vec<Row>, _> = if valid.is_empty() {
            Ok(Vec::new())
        } else {
            sqlx::query_as(READ_CLIENTS)
                .bind(&valid)
                .fetch_all(&self.pool)
                .await
        };
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                let error = db_error("cannot read the objects", e);
                return spread_error(error, client_ids.len())
                    .into_iter()
                    .map(Err)
                    .collect();
            }
        };
        let mut by_client: std::collections::HashMap<String, ClientObjects> =
            std::collections::HashMap::new();
        for (client_id, path, body, version, created) in rows {
            let entry = by_client.entry(client_id).or_insert_with(|| Ok(Vec::new()));
            let Ok(objects) = entry else { continue };
            match BackupKey::from_path(&path) {
                Ok(key) => {
                    let version =
                        ObjectVersion::new(Some(created.to_string()), Some(version.to_string()));
                    objects.push((key, Ok(StoredObject::new(Bytes::from(body), Some(version)))));
                }
                Err(e) => {
                    *entry = Err(StorageError::Backend {
                        backend: NAME,
                        source: Box::new(e),
                    });
                }
            }
        }
        client_ids
            .iter()
            .map(|id| match BackupKey::check_client_id(id) {
                Err(e) => Err(e),
                Ok(()) => by_client.remove(id).unwrap_or_else(|| Ok(Vec::new())),
            })
            .collect()
    }

    /// The compare-and-swap updates in one `UPDATE … FROM unnest(…)`, the create-only puts in
    /// one `INSERT … SELECT … FROM unnest(…)`, the overwrites in one `INSERT … ON CONFLICT DO
    /// UPDATE`; a key met again in the batch one at a time after them.
    async fn put_many(&self, puts: Vec<Put>) -> Vec<Result<(), StorageError>> {
        let mut done: Vec<(usize, Result<(), StorageError>)> = Vec::with_capacity(puts.len());
        let mut updates: Vec<(BatchRow, (i64, i64))> = Vec::new();
        let mut creates: Vec<BatchRow> = Vec::new();
        let mut overwrites: Vec<BatchRow> = Vec::new();
        let mut alone: Vec<(usize, Put)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (index, (key, body, options)) in puts.into_iter().enumerate() {
            let path = key.to_path();
            if seen.contains(&path) {
                alone.push((index, (key, body, options)));
                continue;
            }
            seen.insert(path.clone());
            let row = BatchRow {
                index,
                key,
                path,
                body,
            };
            match &options.mode {
                PutMode::Update(expected) => match parse_version(expected) {
                    Some(version) => updates.push((row, version)),
                    None => alone.push((index, (row.key, row.body, options))),
                },
                PutMode::Create => creates.push(row),
                PutMode::Overwrite => overwrites.push(row),
            }
        }
        if !updates.is_empty() {
            let clients: Vec<&str> = updates.iter().map(|(r, _)| r.key.client_id()).collect();
            let paths: Vec<&str> = updates.iter().map(|(r, _)| r.path.as_str()).collect();
            let bodies: Vec<&[u8]> = updates.iter().map(|(r, _)| r.body.as_ref()).collect();
            let versions: Vec<i64> = updates.iter().map(|(_, (v, _))| *v).collect();
            let created: Vec<i64> = updates.iter().map(|(_, (_, c))| *c).collect();
            let updated: Result<Vec<String>, _> = sqlx::query_scalar(UPDATE_MANY_IF_VERSION)
                .bind(&clients)
                .bind(&paths)
                .bind(&bodies)
                .bind(&versions)
                .bind(&created)
                .fetch_all(&self.pool)
                .await;
            let rows = updates.into_iter().map(|(row, _)| row);
            done.extend(rows_written(rows, updated, |key| StorageError::Conflict {
                key,
            }));
        }
        if !creates.is_empty() {
            let inserted = self.insert_many(INSERT_MANY_NEW, &creates).await;
            done.extend(rows_written(creates.into_iter(), inserted, |key| {
                StorageError::AlreadyExists { key }
            }));
        }
        if !overwrites.is_empty() {
            let written = self.insert_many(UPSERT_MANY, &overwrites).await;
            // Every row comes back from an upsert; one that did not was not written.
            done.extend(rows_written(overwrites.into_iter(), written, |key| {
                StorageError::Backend {
                    backend: NAME,
                    source: format!("the overwrite of {key} returned no row").into(),
                }
            }));
        }
        for (index, (key, body, options)) in alone {
            done.push((index, self.put(&key, body, options).await));
        }
        done.sort_by_key(|(index, _)| *index);
        done.into_iter().map(|(_, result)| result).collect()
    }

    async fn list_clients(&self) -> Result<Vec<String>, StorageError> {
        sqlx::query_scalar(LIST_CLIENTS)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_error("cannot list the clients", e))
    }

    /// The clients in ascending order, a page of 1,000 at a time, each page asked
    /// for when the one before has been read.
    fn stream_clients(&self) -> crate::ClientStream<'_> {
        /// Where the listing is: the last client returned, or the end.
        struct Page {
            after: Option<String>,
        }
        futures_util::stream::unfold(
            Page {
                after: Some(String::new()),
            },
            move |page| async move {
                let after = page.after?;
                let clients: Result<Vec<String>, _> = sqlx::query_scalar(CLIENTS_AFTER)
                    .bind(&after)
                    .bind(CLIENTS_PAGE)
                    .fetch_all(&self.pool)
                    .await;
                let next = match &clients {
                    Ok(clients)
                        if i64::try_from(clients.len()).is_ok_and(|n| n == CLIENTS_PAGE) =>
                    {
                        clients.last().cloned()
                    }
                    _ => None,
                };
                let items = match clients {
                    Ok(clients) => clients.into_iter().map(Ok).collect::<Vec<_>>(),
                    Err(e) => vec![Err(db_error("cannot list the clients", e))],
                };
                Some((futures_util::stream::iter(items), Page { after: next }))
            },
        )
        .flatten()
        .boxed()
    }
}

/// `postgres://user@host:port/database`: the target without the password.
fn describe(options: &PgConnectOptions) -> String {
    let database = options.get_database().unwrap_or_default();
    match options.get_socket() {
        Some(socket) => format!(
            "postgres://{}@/{database}?host={}",
            options.get_username(),
            socket.display()
        ),
        None => format!(
            "postgres://{}@{}:{}/{database}",
            options.get_username(),
            options.get_host(),
            options.get_port()
        ),
    }
}

/// A malformed connection URL: `sqlx`'s message (which may quote a parameter's value),
/// with the URL's password replaced by `***` wherever it appears.
fn url_error(url: &str, e: &sqlx::Error) -> StorageError {
    let mut message = crate::Report(e).to_string();
    for secret in url_passwords(url) {
        message = message.replace(secret, "***");
    }
    StorageError::Backend {
        backend: NAME,
        source: Box::new(PgError {
            context: "the connection URL is not valid",
            cause: message.into(),
        }),
    }
}

/// The password of `scheme://user:password@host/…` and of a `password=` query parameter.
fn url_passwords(url: &str) -> Vec<&str> {
    let mut found = Vec::new();
    if let Some((_, rest)) = url.split_once("://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && let Some((_, password)) = userinfo.split_once(':')
        {
            found.push(password);
        }
    }
    if let Some((_, query)) = url.split_once('?') {
        found.extend(
            query
                .split('&')
                .filter_map(|pair| pair.strip_prefix("password=")),
        );
    }
    found.retain(|p| !p.is_empty());
    found
}

/// SQLSTATEs after which the same statement may succeed later.
fn retryable_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || matches!(
            code,
            "40001" | "40P01" | "53300" | "55P03" | "57014" | "57P01" | "57P02" | "57P03"
        )
}

fn db_error(context: &'static str, e: sqlx::Error) -> StorageError {
    let (retryable, cause): (bool, crate::error::BoxError) = match e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let retryable = retryable_sqlstate(&code);
            // The message only: a constraint violation's detail quotes the failing row.
            let cause = ServerError {
                code,
                message: db.message().to_owned(),
            };
            (retryable, Box::new(cause))
        }
        e @ (sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed) => (true, Box::new(e)),
        e => (false, Box::new(e)),
    };
    let source = Box::new(PgError { context, cause });
    if retryable {
        StorageError::Unavailable {
            backend: NAME,
            source,
        }
    } else {
        StorageError::Backend {
            backend: NAME,
            source,
        }
    }
}

/// What the store was doing when the database failed.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
struct PgError {
    context: &'static str,
    #[source]
    cause: crate::error::BoxError,
}

/// An error the server reported: its SQLSTATE and message, without detail or hint.
#[derive(Debug, thiserror::Error)]
#[error("{message} (SQLSTATE {code})")]
struct ServerError {
    code: String,
    message: String,
}

/// One put of a batch statement: its place in the batch, its key, the key's path (the
/// table's key, computed once) and its body.
struct BatchRow {
    index: usize,
    key: BackupKey,
    path: String,
    body: Bytes,
}

/// The result of each put of a batch statement (`rows`) from the paths of the rows it wrote:
/// a put whose row was not written failed with `missed` (another version was there, or an
/// object already was); a failed statement failed them all.
fn rows_written(
    rows: impl ExactSizeIterator<Item = BatchRow>,
    written: Result<Vec<String>, sqlx::Error>,
    missed: impl Fn(BackupKey) -> StorageError,
) -> Vec<(usize, Result<(), StorageError>)> {
    match written {
        Ok(written) => {
            let written: std::collections::HashSet<String> = written.into_iter().collect();
            rows.map(|row| {
                let result = if written.contains(&row.path) {
                    Ok(())
                } else {
                    Err(missed(row.key))
                };
                (row.index, result)
            })
            .collect()
        }
        Err(e) => {
            let errors = spread_error(db_error("cannot store the objects", e), rows.len());
            rows.zip(errors)
                .map(|(row, error)| (row.index, Err(error)))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_drops_the_password() {
        let options =
            PgConnectOptions::from_str("postgres://u:hunter2@db.example:6543/backups").unwrap();
        let target = describe(&options);
        assert_eq!(target, "postgres://u@db.example:6543/backups");
        assert!(!format!("{:?}", describe(&options)).contains("hunter2"));
    }

    #[test]
    fn retryable_states() {
        for code in [
            "08006", "08001", "40001", "40P01", "53300", "57P01", "57P03",
        ] {
            assert!(retryable_sqlstate(code), "{code}");
        }
        for code in ["23505", "23514", "42P01", "28P01", "22001", ""] {
            assert!(!retryable_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn malformed_urls_are_backend_errors_without_the_password() {
        for url in [
            "postgres://u:hunter2@db.example:notaport/backups",
            "postgres://u:hunter2@db.example/backups?sslmode=hunter2",
            "postgres://u@db.example/backups?password=hunter2&sslmode=hunter2",
            "not a url hunter2",
        ] {
            let e = PgConnectOptions::from_str(url)
                .map(drop)
                .map_err(|e| url_error(url, &e))
                .unwrap_err();
            assert!(!e.is_retryable());
            let shown = format!("{} {:?} {}", e, e, crate::Report(&e));
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("the connection URL is not valid"), "{shown}");
        }
    }
}
