-- storage::postgres::PostgresStore: one row per stored object.
--
-- `path` is the key's path form (client/kind/curve/share-pair-id/backup-method); `client_id`
-- is its first segment, kept in a column of its own so that listing a client's objects is an
-- index range scan with no LIKE pattern to escape. Both use the "C" collation: key parts are
-- ASCII, so ORDER BY path is the byte order that BackupStore::list promises.
--
-- `version` starts at 1 on create and every overwrite adds 1 in the same statement, under
-- the row's lock: concurrent overwrites are applied one after the other and each gets its own
-- version; the stored body is always the one with the highest version.
CREATE TABLE IF NOT EXISTS portal_backup_objects (
    client_id  text COLLATE "C" NOT NULL,
    path       text COLLATE "C" NOT NULL,
    body       bytea            NOT NULL,
    version    bigint           NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at timestamptz      NOT NULL DEFAULT now(),
    updated_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, path),
    CHECK (left(path, length(client_id) + 1) = client_id || '/')
);
