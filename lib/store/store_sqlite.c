/*
 * The embedded backend: one SQLite file in WAL mode.
 *
 * Appends run inside BEGIN IMMEDIATE, so the write lock is held from the
 * first read of the stream's version to the commit: two writers can never
 * pick the same aggregate_version or sequence.  Sequences are assigned here
 * (last + 1), not by SQLite, so a rolled-back batch leaves no gap.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cqrs.h"
#include "common/sqlite_errors.h"
#include "common/strbuf.h"
#include "store/store_impl.h"
#include "banned.h"

#define APPLICATION_ID 0x43515253 /* "CQRS" */
#define SCHEMA_VERSION 5
/* The oldest layout that readers read as it is (see correlation_key). */
#define READABLE_VERSION     2
#define WAL_CHECKPOINT_PAGES 256
/* A writer that leaves more than this in the WAL folds it into the store
 * and truncates it on exit.  A new process is the only one to use the
 * store more often than not, and SQLite then rebuilds the WAL's index from
 * the WAL, one read per page, frames already folded in included: a WAL
 * kept up to 4 MiB made the 100th one-event process read a thousand pages,
 * and once past WAL_CHECKPOINT_PAGES every commit copied all of them into
 * the store again (the rebuilt index forgets what was folded).  256 KiB
 * (64 pages) bounds that read and keeps the WAL below the commits'
 * checkpoint, at the cost of one checkpoint every few one-event
 * processes. */
#define WAL_KEEP_BYTES (256 << 10)
/* Writers keep the random-key indexes hot; a reader streams, so a small
 * cache is enough and memory stays flat however large the store.
 * CQRS_CACHE_SIZE (MiB) sets a writer's: random ids in a large store. */
#define WRITER_CACHE_KIB 32768
#define READER_CACHE_KIB 2048
#define MAX_CACHE_MIB	 65536

/* uuid text from a 16-byte blob, for people querying with sqlite3 */
#define UUID_SQL(col)                                                                              \
	"substr(lower(hex(" col ")),1,8)||'-'||substr(lower(hex(" col                              \
	")),9,4)||'-'||substr(lower(hex(" col ")),13,4)||'-'||substr(lower(hex(" col               \
	")),17,4)||'-'||substr(lower(hex(" col ")),21)"

/* clang-format off */
static const char schema_v1[] =
	"CREATE TABLE events ("
	" sequence INTEGER PRIMARY KEY,"
	" event_id BLOB NOT NULL,"
	" aggregate_id BLOB NOT NULL,"
	" aggregate_type TEXT NOT NULL,"
	" aggregate_version INTEGER NOT NULL CHECK (aggregate_version >= 1),"
	" event_type TEXT NOT NULL,"
	" event_version INTEGER NOT NULL DEFAULT 1,"
	" data TEXT NOT NULL,"
	" metadata TEXT NOT NULL DEFAULT '{}',"
	" timestamp TEXT NOT NULL,"
	" hash BLOB NOT NULL,"
	" correlation_id TEXT,"
	" correlation_key INTEGER"
	");"
	"CREATE UNIQUE INDEX events_event_id ON events(event_id);"
	"CREATE UNIQUE INDEX events_aggregate ON events(aggregate_id, aggregate_version);"
	"CREATE INDEX events_aggregate_type ON events(aggregate_type);"
	"CREATE INDEX events_event_type ON events(event_type);"
	"CREATE INDEX events_timestamp ON events(timestamp);"
	/* a 64-bit hash of correlation_id: a third the size of the text key */
	"CREATE INDEX events_correlation ON events(correlation_key)"
	" WHERE correlation_key IS NOT NULL;"
	"CREATE TRIGGER events_no_update BEFORE UPDATE ON events"
	" BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;"
	"CREATE TRIGGER events_no_delete BEFORE DELETE ON events"
	" BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;"
	"CREATE TABLE snapshots ("
	" aggregate_id BLOB NOT NULL,"
	" aggregate_type TEXT NOT NULL,"
	" aggregate_version INTEGER NOT NULL,"
	" state TEXT NOT NULL,"
	" created_at TEXT NOT NULL,"
	" PRIMARY KEY (aggregate_id, aggregate_version)"
	") WITHOUT ROWID;"
	"CREATE TABLE saga_instances ("
	" saga_id TEXT PRIMARY KEY,"
	" saga_type TEXT NOT NULL,"
	" correlation_id TEXT,"
	" current_step INTEGER NOT NULL DEFAULT 0,"
	" state TEXT NOT NULL DEFAULT '{}',"
	" status TEXT NOT NULL CHECK (status IN"
	"  ('RUNNING', 'COMPLETED', 'COMPENSATING', 'FAILED')),"
	" created_at TEXT NOT NULL,"
	" updated_at TEXT NOT NULL"
	");"
	"CREATE INDEX saga_instances_status ON saga_instances(status);"
	"CREATE TABLE processed_messages ("
	" message_id TEXT PRIMARY KEY,"
	" handler TEXT NOT NULL,"
	" result TEXT,"
	" processed_at TEXT NOT NULL"
	");"
	"CREATE TABLE counters ("
	" name TEXT PRIMARY KEY,"
	" value INTEGER NOT NULL"
	");"
	"CREATE TABLE checkpoints ("
	" name TEXT PRIMARY KEY,"
	" sequence INTEGER NOT NULL,"
	" updated_at TEXT NOT NULL"
	");"
	"CREATE VIEW event_log AS SELECT sequence, "
	UUID_SQL("event_id") " AS event_id, "
	UUID_SQL("aggregate_id") " AS aggregate_id,"
	" aggregate_type, aggregate_version, event_type, event_version, data, metadata,"
	" timestamp, lower(hex(hash)) AS hash, correlation_id FROM events;";
/* Version 2: what the saga runner (saga_store.c) keeps between runs:
 * scheduling of retries and deadlines, an optimistic revision per instance,
 * the event that started it, and circuit breakers. */
static const char schema_v2[] =
	"ALTER TABLE saga_instances ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE saga_instances ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE saga_instances ADD COLUMN next_attempt_at TEXT;"
	"ALTER TABLE saga_instances ADD COLUMN deadline_at TEXT;"
	"ALTER TABLE saga_instances ADD COLUMN start_sequence INTEGER;"
	"ALTER TABLE saga_instances ADD COLUMN outcome TEXT;"
	"ALTER TABLE saga_instances ADD COLUMN last_error TEXT;"
	"CREATE UNIQUE INDEX saga_instances_start ON saga_instances(saga_type, start_sequence);"
	"CREATE INDEX saga_instances_due ON saga_instances(next_attempt_at)"
	" WHERE status IN ('RUNNING', 'COMPENSATING');"
	"CREATE TABLE saga_breakers ("
	" name TEXT PRIMARY KEY,"
	" state TEXT NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),"
	" failures INTEGER NOT NULL DEFAULT 0,"
	" opened_at TEXT,"
	" updated_at TEXT NOT NULL"
	");";
/* Version 3: the correlation keys of time-ordered (version 7 UUID)
 * correlation ids are time-ordered too (see correlation_key), so that
 * appending keeps to the end of their index instead of touching pages all
 * over it.  Only the key of those rows changes; the update trigger is
 * lifted for that, inside the migration's transaction. */
static const char schema_v3[] =
	"DROP TRIGGER events_no_update;"
	"UPDATE events SET correlation_key = cqrs_correlation_key(correlation_id)"
	" WHERE length(correlation_id) = 36 AND substr(correlation_id, 15, 1) = '7';"
	"CREATE TRIGGER events_no_update BEFORE UPDATE ON events"
	" BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;";
/* Version 4: erasure that keeps the chain (store_shred.c, cqrs-erase(1)).
 * The declarations of personal fields live in the store, with the shipped
 * domain's defaults, so that every writer applies them; a tool of an older
 * release refuses the store (its schema is newer) rather than write such
 * fields in plaintext.  subject_member NULL: the subject recorded for the
 * event's aggregate.  A key is a row until erased, then NULL with the time. */
static const char schema_v4[] =
	"CREATE TABLE personal_fields ("
	" event_type TEXT NOT NULL,"
	" field TEXT NOT NULL,"
	" subject_member TEXT,"
	" PRIMARY KEY (event_type, field)"
	") WITHOUT ROWID;"
	"INSERT INTO personal_fields VALUES"
	" ('OrderCreated', 'shipping_address', 'customer_id'),"
	" ('OrderConfirmed', 'note', NULL);"
	"CREATE TABLE subject_keys ("
	" subject TEXT PRIMARY KEY,"
	" key BLOB,"
	" created_at TEXT NOT NULL,"
	" erased_at TEXT,"
	" CHECK ((key IS NULL) = (erased_at IS NOT NULL))"
	") WITHOUT ROWID;"
	"CREATE TABLE aggregate_subjects ("
	" aggregate_id BLOB PRIMARY KEY,"
	" subject TEXT NOT NULL"
	") WITHOUT ROWID;";

/* Version 5: archive segments (store_archive.c, cqrs-archive(1)).  Old
 * events move into compressed files; the store keeps where they are
 * (archive_segments), the ids it no longer holds (archived_events, so that
 * an archived event appended again is still not stored twice) and each
 * archived aggregate's version and where its archived events lie
 * (archived_versions).  Deleting events is refused, as before, except for
 * the events up to the sequence of a row of archive_in_progress: the
 * archive inserts that row, deletes and removes the row inside one
 * transaction, so no other writer ever sees the exception open.  (IF NOT
 * EXISTS: a store whose user_version was set back runs it again.) */
static const char schema_v5[] =
	"CREATE TABLE IF NOT EXISTS archive_segments ("
	" first_sequence INTEGER PRIMARY KEY,"
	" last_sequence INTEGER NOT NULL UNIQUE,"
	" prev_hash BLOB NOT NULL,"
	" last_hash BLOB NOT NULL,"
	" file TEXT NOT NULL,"
	" file_sha256 BLOB NOT NULL,"
	" signed_head TEXT,"
	" archived_at TEXT NOT NULL"
	");"
	"CREATE TABLE IF NOT EXISTS archived_events ("
	" event_id BLOB PRIMARY KEY,"
	" sequence INTEGER NOT NULL"
	") WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS archived_versions ("
	" aggregate_id BLOB PRIMARY KEY,"
	" aggregate_version INTEGER NOT NULL,"
	" first_sequence INTEGER NOT NULL,"
	" last_sequence INTEGER NOT NULL"
	") WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS archive_in_progress (upto INTEGER NOT NULL);"
	"CREATE TRIGGER IF NOT EXISTS archive_segments_no_update BEFORE UPDATE ON archive_segments"
	" BEGIN SELECT RAISE(ABORT, 'archive segments are append-only'); END;"
	"CREATE TRIGGER IF NOT EXISTS archive_segments_no_delete BEFORE DELETE ON archive_segments"
	" BEGIN SELECT RAISE(ABORT, 'archive segments are append-only'); END;"
	"CREATE TRIGGER IF NOT EXISTS archived_events_no_delete BEFORE DELETE ON archived_events"
	" BEGIN SELECT RAISE(ABORT, 'archived event ids are kept'); END;"
	"DROP TRIGGER events_no_delete;"
	"CREATE TRIGGER events_no_delete BEFORE DELETE ON events"
	" WHEN NOT EXISTS (SELECT 1 FROM archive_in_progress WHERE old.sequence <= upto)"
	" BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;";
/* clang-format on */

/* The last applied migration is SCHEMA_VERSION; migrations[i] takes a store
 * from version i to i + 1. */
static const char *const migrations[SCHEMA_VERSION] = { schema_v1, schema_v2, schema_v3, schema_v4,
							schema_v5 };

struct sqlite_store {
	struct cqrs_store base;
	sqlite3 *db;
	char *path;
	bool writable;
	bool in_txn;
	struct cqrs_append_head head;  /* the last event, under the write lock */
	struct cqrs_versions versions; /* aggregates this transaction appended to */
	sqlite3_stmt *insert, *version, *by_event_id, *last;
	sqlite3_stmt *snap_load, *snap_save, *proc_get, *proc_put, *counter;
	/* one aggregate's events after a version: what every load of an
	 * aggregate reads; prepared once, lent to one cursor at a time */
	sqlite3_stmt *one_aggregate;
	bool one_aggregate_lent;
	int inotify_fd;
	int settle_rounds;
	int schema; /* the store's schema version: the correlation keys' kind */
};

struct sqlite_cursor {
	struct cqrs_cursor base;
	sqlite3_stmt *stmt;
	bool lent; /* stmt is the store's one_aggregate: reset, not finalized */
};

static int access_denied(const char *path, bool writer, cqrs_error *err);

static int db_error(struct sqlite_store *s, int rc, const char *what, cqrs_error *err)
{
	/* A file the guard refused, or one this user may not use: say so
	 * rather than SQLite's "unable to open database file". */
	if (cqrs_sqlite_guard_refused(err))
		return -1;
	int base = rc & 0xff;
	if ((base == SQLITE_CANTOPEN || base == SQLITE_READONLY || base == SQLITE_PERM) &&
	    access_denied(s->path, s->writable, err))
		return -1;
	if (cqrs_sqlite_exit_code(rc, s->writable) == CQRS_EXIT_TEMPFAIL)
		return cqrs_fail(err, CQRS_EXIT_TEMPFAIL,
				 "%s: store is busy (another process holds the lock); try again",
				 s->path);
	char where[4200];
	snprintf(where, sizeof where, "%s: %s", s->path, what);
	cqrs_sqlite_fail(s->db, rc, s->writable, where, err);
	/* A reader's store that is there, but one of its files (the -shm, a
	 * WAL) could not be opened, for a reason SQLite kept no errno of: not
	 * a missing store (66), an I/O error (make faultsweep, read-verify
	 * io 11: an open of the -shm that failed once) */
	if (base == SQLITE_CANTOPEN && !s->writable && err != NULL &&
	    err->code == CQRS_EXIT_NOINPUT && access(s->path, F_OK) == 0)
		err->code = CQRS_EXIT_IOERR;
	return -1;
}

static int exec(struct sqlite_store *s, const char *sql, cqrs_error *err)
{
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : db_error(s, rc, "query failed", err);
}

/* An aggregate's stored version, for the append path and the facade. */
#define SQL_VERSION "SELECT max(aggregate_version) FROM events WHERE aggregate_id = ?1"
/* From schema 4 on, an aggregate whose events were all archived keeps its
 * version in archived_versions. */
#define SQL_VERSION_ARCHIVED                                                                       \
	"SELECT max(v) FROM (SELECT max(aggregate_version) AS v FROM events"                       \
	" WHERE aggregate_id = ?1 UNION ALL SELECT aggregate_version FROM archived_versions"       \
	" WHERE aggregate_id = ?1)"
#define SQL_VERSION_OF(s) ((s)->schema >= 4 ? SQL_VERSION_ARCHIVED : SQL_VERSION)

/* Prepares *stmt once: a statement another path already prepared is kept
 * (preparing over it would leak it and keep the connection from closing). */
static int prepare(struct sqlite_store *s, sqlite3_stmt **stmt, const char *sql, cqrs_error *err)
{
	if (*stmt != NULL)
		return 0;
	int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt, NULL);
	return rc == SQLITE_OK ? 0 : db_error(s, rc, "prepare failed", err);
}

static int64_t pragma_int(struct sqlite_store *s, const char *sql, cqrs_error *err)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
		db_error(s, sqlite3_errcode(s->db), "cannot read the store", err);
		return -1;
	}
	int rc = sqlite3_step(st);
	int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		db_error(s, rc, "cannot read the store", err);
		return -1;
	}
	return v;
}

/* The key of a correlation id in its index: not a security property (the
 * query compares the text too).  FNV-1a folded to 63 bits; from schema 3
 * on, a version 7 UUID in canonical lowercase text (what the tools
 * generate) keys on its 48-bit millisecond time, then 15 bits of that
 * hash, so that new keys land at the end of the index as the store grows. */
static uint64_t fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* The millisecond time of a version 7 UUID in the canonical lowercase
 * text the tools write (cqrs_uuid_format), or -1 for any other text. */
static int64_t uuid7_ms(const char *s)
{
	uint8_t id[CQRS_UUID_LEN];
	char canon[37];
	if (strlen(s) != 36 || cqrs_uuid_parse(s, 36, id) < 0 || id[6] >> 4 != 7)
		return -1;
	cqrs_uuid_format(id, canon);
	if (memcmp(canon, s, 36) != 0)
		return -1;
	int64_t ms = 0;
	for (int i = 0; i < 6; i++)
		ms = ms << 8 | id[i];
	return ms;
}

static int64_t correlation_key_of(int schema, const char *s)
{
	uint64_t h = fnv1a(s);
	int64_t ms = schema >= 3 ? uuid7_ms(s) : -1;
	if (ms >= 0)
		return (int64_t)((uint64_t)ms << 15 | (h & 0x7fff));
	return (int64_t)(h >> 1);
}

static int64_t correlation_key(const struct sqlite_store *s, const char *corr)
{
	return correlation_key_of(s->schema, corr);
}

/* cqrs_correlation_key(text): the key of schema 3, for its migration. */
static void sql_correlation_key(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	(void)argc;
	const unsigned char *t = sqlite3_value_text(argv[0]);
	if (t == NULL)
		sqlite3_result_null(ctx);
	else
		sqlite3_result_int64(ctx, correlation_key_of(3, (const char *)t));
}

/* Creates the schema or migrates it, under the write lock, so that two
 * processes opening a new store at once do it only once. */
static int ensure_schema(struct sqlite_store *s, cqrs_error *err)
{
	/* One read transaction: the three reads see one state of the file,
	 * not a store that another process is creating meanwhile. */
	if (exec(s, "BEGIN", err) < 0)
		return -1;
	int64_t app = pragma_int(s, "PRAGMA application_id", err);
	int64_t ver = app < 0 ? -1 : pragma_int(s, "PRAGMA user_version", err);
	int64_t tables = ver < 0 ? -1 : pragma_int(s, "SELECT count(*) FROM sqlite_schema", err);
	/* a COMMIT that fails (out of memory) would leave the read
	 * transaction open, and the next BEGIN refused */
	int crc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
	if (crc != SQLITE_OK && !sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	if (tables < 0)
		return -1;
	if (crc != SQLITE_OK)
		return db_error(s, crc, "cannot read the store", err);
	s->schema = (int)ver;
	if (app == APPLICATION_ID && ver == SCHEMA_VERSION)
		return 0;
	/* A reader reads an older layout as it is; the next writer migrates. */
	if (app == APPLICATION_ID && !s->writable && ver >= READABLE_VERSION &&
	    ver < SCHEMA_VERSION)
		return 0;
	if (app != APPLICATION_ID && app != 0)
		return cqrs_fail(err, CQRS_EXIT_DATAERR, "%s: not a cqrs event store", s->path);
	if (ver > SCHEMA_VERSION)
		return cqrs_fail(err, CQRS_EXIT_CONFIG,
				 "%s: store schema version %lld is newer than this tool's (%d); "
				 "upgrade cqrs-tools",
				 s->path, (long long)ver, SCHEMA_VERSION);
	if (app == 0 && tables > 0)
		return cqrs_fail(err, CQRS_EXIT_DATAERR, "%s: not a cqrs event store", s->path);
	if (!s->writable)
		return cqrs_fail(err, CQRS_EXIT_NOINPUT, "%s: store is empty or needs an upgrade",
				 s->path);
	int rc = sqlite3_create_function_v2(s->db, "cqrs_correlation_key", 1,
					    SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY,
					    NULL, sql_correlation_key, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "cannot open store", err);
	if (exec(s, "BEGIN IMMEDIATE", err) < 0)
		return -1;
	ver = pragma_int(s, "PRAGMA user_version", err);
	if (ver < 0)
		goto fail;
	for (int64_t v = ver; v < SCHEMA_VERSION; v++)
		if (exec(s, migrations[v], err) < 0)
			goto fail;
	char sql[128];
	snprintf(sql, sizeof sql, "PRAGMA application_id = %d; PRAGMA user_version = %d",
		 APPLICATION_ID, SCHEMA_VERSION);
	if (exec(s, sql, err) < 0 || exec(s, "COMMIT", err) < 0)
		goto fail;
	s->schema = SCHEMA_VERSION;
	return 0;
fail:
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

static bool denied(const char *path, int how)
{
	return faccessat(AT_FDCWD, path, how, AT_EACCESS) < 0 &&
	       (errno == EACCES || errno == EPERM);
}

/* Why this user cannot use the store, when permissions are the reason:
 * true with *err set (77).  A diagnosis after a failure, not a check. */
static int access_denied(const char *path, bool writer, cqrs_error *err)
{
	int how = writer ? R_OK | W_OK : R_OK;
	const char *verb = writer ? "write" : "read";
	if (denied(path, R_OK) || (writer && denied(path, W_OK)))
		return cqrs_fail(err, CQRS_EXIT_NOPERM,
				 "%s: permission denied: this user cannot %s the store", path,
				 denied(path, R_OK) ? "read" : "write") < 0;
	char side[4096], dir[4096];
	bool missing = false;
	for (int i = 0; i < 2; i++) {
		snprintf(side, sizeof side, "%s%s", path, i ? "-shm" : "-wal");
		if (access(side, F_OK) < 0)
			missing = true;
		else if (denied(side, how))
			return cqrs_fail(err, CQRS_EXIT_NOPERM,
					 "%s: permission denied: this user cannot %s the store's "
					 "%s file",
					 side, verb, i ? "-shm" : "-wal") < 0;
	}
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash == NULL)
		snprintf(dir, sizeof dir, ".");
	else
		slash[slash == dir] = '\0';
	if ((missing || writer) && denied(dir, W_OK | X_OK))
		return cqrs_fail(err, CQRS_EXIT_NOPERM,
				 "%s: permission denied: the store's directory is not writable, "
				 "and SQLite keeps the store's -wal and -shm files there",
				 dir) < 0;
	return false;
}

/* The store and its -wal and -shm files are readable by the owner only:
 * SQLite gives the side files the main file's mode, so create it 0600. */
static int create_file(const char *path, cqrs_error *err)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return cqrs_fail(err, errno == EACCES ? CQRS_EXIT_NOPERM : CQRS_EXIT_CANTCREAT,
				 "%s: cannot create store: %s", path, strerror(errno));
	close(fd);
	return 0;
}

/* A writer's page cache: CQRS_CACHE_SIZE mebibytes (1 to MAX_CACHE_MIB),
 * else WRITER_CACHE_KIB. */
static long long writer_cache_kib(void)
{
	const char *e = getenv("CQRS_CACHE_SIZE");
	int64_t v;
	if (e != NULL && cqrs_parse_int64(e, &v) == 0 && v >= 1 && v <= MAX_CACHE_MIB)
		return (long long)v * 1024;
	return WRITER_CACHE_KIB;
}

static const struct cqrs_store_ops sqlite_ops;

cqrs_store *cqrs_sqlite_open(const char *path, enum cqrs_open_mode mode, cqrs_error *err)
{
	bool writer = mode == CQRS_OPEN_WRITE;
	cqrs_sqlite_setup();
	cqrs_sqlite_guard_policy(writer);
	cqrs_sqlite_guard_refused(NULL); /* nothing left from an earlier open */
	if (cqrs_trust_dirs(path, writer, err) < 0)
		return NULL;
	struct stat sb;
	bool exists = stat(path, &sb) == 0;
	if (!exists && errno == EACCES) {
		cqrs_fail(err, CQRS_EXIT_NOPERM,
			  "%s: permission denied: this user cannot reach the store", path);
		return NULL;
	}
	if (!exists && mode == CQRS_OPEN_READ) {
		cqrs_fail(err, CQRS_EXIT_NOINPUT, "%s: no such store", path);
		return NULL;
	}
	if (exists && S_ISDIR(sb.st_mode)) {
		cqrs_fail(err, CQRS_EXIT_NOINPUT, "%s: is a directory, not a store", path);
		return NULL;
	}
	if (!exists && create_file(path, err) < 0)
		return NULL;

	struct sqlite_store *s = calloc(1, sizeof *s);
	if (s == NULL || (s->path = strdup(path)) == NULL) {
		free(s);
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		return NULL;
	}
	s->base.ops = &sqlite_ops;
	s->inotify_fd = -1;
	s->writable = mode == CQRS_OPEN_WRITE;
	int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_READWRITE;
	const char *vfs = cqrs_sqlite_guard_vfs(true);
	int rc = sqlite3_open_v2(path, &s->db, flags, vfs);
	if (rc != SQLITE_OK && !s->writable) {
		sqlite3_close(s->db);
		rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_READONLY, vfs);
	}
	if (rc != SQLITE_OK) {
		db_error(s, rc, "cannot open store", err);
		goto fail;
	}
	sqlite3_extended_result_codes(s->db, 1);
	/* One process per append is the common case: checkpointing and
	 * deleting the WAL at every exit would cost three more fsyncs per
	 * process.  Commits checkpoint when the WAL passes
	 * WAL_CHECKPOINT_PAGES, so the WAL that the next process must scan
	 * on open stays small, and the WAL file is kept for it.  Readers keep
	 * the side files too: the last connection to close would otherwise
	 * delete them, and a user who may read the store but not write its
	 * directory cannot open it without them. */
	int persist = 1;
	sqlite3_db_config(s->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
	sqlite3_file_control(s->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
	if (s->writable) {
		sqlite3_wal_autocheckpoint(s->db, WAL_CHECKPOINT_PAGES);
		if (sqlite3_db_readonly(s->db, "main") == 1) {
			if (!access_denied(path, true, err))
				cqrs_fail(err, CQRS_EXIT_NOPERM,
					  "%s: permission denied: the store is read-only", path);
			goto fail;
		}
	}
	sqlite3_busy_timeout(s->db, (int)cqrs_sqlite_busy_timeout_ms());
	char pragmas[256];
	snprintf(pragmas, sizeof pragmas,
		 "PRAGMA synchronous = FULL; PRAGMA cache_size = -%lld; PRAGMA temp_store = MEMORY;"
		 " PRAGMA trusted_schema = OFF;",
		 s->writable ? writer_cache_kib() : (long long)READER_CACHE_KIB);
	if (exec(s, pragmas, err) < 0)
		goto fail;
	if (s->writable) {
		/* WAL is a property of the file, kept once set.  Switching a new
		 * file to it can fail busy without SQLite calling the busy
		 * handler, when several processes use a new store at once. */
		for (long waited = 0;; waited += 10) {
			rc = sqlite3_exec(s->db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
			if ((rc & 0xff) != SQLITE_BUSY || waited >= cqrs_sqlite_busy_timeout_ms())
				break;
			sqlite3_sleep(10);
		}
		if (rc != SQLITE_OK) {
			db_error(s, rc, "cannot open store", err);
			goto fail;
		}
	}
	if (ensure_schema(s, err) < 0)
		goto fail;
	if (!s->writable && exec(s, "PRAGMA query_only = ON", err) < 0)
		goto fail;
	return &s->base;
fail:
	sqlite3_close(s->db);
	free(s->path);
	free(s);
	return NULL;
}

/* After a bulk import the WAL can hold hundreds of megabytes of frames that
 * the next process would scan when it opens the store: fold them into the
 * database and truncate the WAL, if no reader is in the way right now. */
static void shrink_wal(struct sqlite_store *s)
{
	char wal[4096];
	struct stat sb;
	snprintf(wal, sizeof wal, "%s-wal", s->path);
	if (stat(wal, &sb) < 0 || sb.st_size <= WAL_KEEP_BYTES)
		return;
	sqlite3_busy_timeout(s->db, 0);
	sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
}

static void sqlite_close(cqrs_store *st)
{
	struct sqlite_store *s = (struct sqlite_store *)st;
	if (s->in_txn)
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	if (s->writable)
		shrink_wal(s);
	sqlite3_finalize(s->insert);
	sqlite3_finalize(s->version);
	sqlite3_finalize(s->by_event_id);
	sqlite3_finalize(s->last);
	sqlite3_finalize(s->snap_load);
	sqlite3_finalize(s->snap_save);
	sqlite3_finalize(s->proc_get);
	sqlite3_finalize(s->proc_put);
	sqlite3_finalize(s->counter);
	sqlite3_finalize(s->one_aggregate);
	sqlite3_close(s->db);
	if (s->inotify_fd >= 0)
		close(s->inotify_fd);
	cqrs_versions_free(&s->versions);
	free(s->path);
	free(s);
}

static void sqlite_set_durability(cqrs_store *st, enum cqrs_durability d)
{
	struct sqlite_store *s = (struct sqlite_store *)st;
	cqrs_sqlite_guard_vfs(d == CQRS_DURABLE_FULL);
	sqlite3_exec(s->db,
		     d == CQRS_DURABLE_FULL ? "PRAGMA synchronous = FULL"
					    : "PRAGMA synchronous = NORMAL",
		     NULL, NULL, NULL);
}

/* --- appending ----------------------------------------------------------- */

static void row_to_event(sqlite3_stmt *q, cqrs_event *ev);

/* The hash of the archived event seq when a segment ends there: 1, else 0. */
static int archived_hash(struct sqlite_store *s, int64_t seq, uint8_t hash[CQRS_HASH_LEN])
{
	sqlite3_stmt *q;
	if (sqlite3_prepare_v2(s->db,
			       "SELECT last_hash FROM archive_segments WHERE last_sequence = ?1",
			       -1, &q, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_int64(q, 1, seq);
	int found = sqlite3_step(q) == SQLITE_ROW && sqlite3_column_bytes(q, 0) == CQRS_HASH_LEN;
	if (found)
		memcpy(hash, sqlite3_column_blob(q, 0), CQRS_HASH_LEN);
	sqlite3_finalize(q);
	return found;
}

/* The event a new one chains from must be what its hash says: an edit of
 * the head (say, with sqlite3 and the triggers dropped) would otherwise
 * be sealed under the new event's hash.  One row and one SHA-256 more per
 * transaction; only cqrs-read --verify checks the rest of the chain. */
static int check_head(struct sqlite_store *s, cqrs_error *err)
{
	sqlite3_stmt *q = s->last;
	int rc = sqlite3_step(q);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(q);
		memset(&s->head, 0, sizeof s->head);
		return 0;
	}
	if (rc != SQLITE_ROW) {
		sqlite3_reset(q);
		return db_error(s, rc, "cannot read the store", err);
	}
	cqrs_event head;
	memset(&head, 0, sizeof head);
	row_to_event(q, &head);
	s->head.sequence = head.sequence;
	bool sized = sqlite3_column_bytes(q, 10) == CQRS_HASH_LEN;
	memcpy(s->head.hash, head.hash, CQRS_HASH_LEN);
	uint8_t prev[CQRS_HASH_LEN] = { 0 };
	/* the head's text is valid until the next step: hash it now */
	char *data = strndup(head.data ? head.data : "", head.data_len);
	char *meta = strndup(head.metadata ? head.metadata : "", head.metadata_len);
	/* A head whose text could not be had (out of memory), or an event
	 * before it that could not be read: nothing is known of the chain,
	 * which must not be reported as changed by someone else. */
	int unread = sqlite3_errcode(s->db) == SQLITE_NOMEM ? SQLITE_NOMEM : SQLITE_OK;
	rc = sqlite3_step(q);
	int64_t prev_seq = 0;
	if (rc == SQLITE_ROW && sqlite3_column_bytes(q, 10) == CQRS_HASH_LEN) {
		memcpy(prev, sqlite3_column_blob(q, 10), CQRS_HASH_LEN);
		prev_seq = sqlite3_column_int64(q, 0);
	}
	if (unread == SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
		unread = rc;
	if (unread != SQLITE_OK) {
		sqlite3_reset(q);
		free(data);
		free(meta);
		return db_error(s, unread, "cannot read the store", err);
	}
	sqlite3_reset(q);
	/* the event before the head was archived: its hash is the last
	 * segment's (store_archive.c) */
	if (rc == SQLITE_DONE && head.sequence > 1 && s->schema >= 4 &&
	    archived_hash(s, head.sequence - 1, prev) == 1)
		prev_seq = head.sequence - 1;
	if (data == NULL || meta == NULL) {
		free(data);
		free(meta);
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	}
	head.data = data;
	head.metadata = meta;
	int checked = cqrs_append_check_head(s->path, &head, prev, prev_seq, sized, err);
	free(data);
	free(meta);
	return checked;
}

static int sqlite_begin(cqrs_store *st, cqrs_error *err)
{
	struct sqlite_store *s = (struct sqlite_store *)st;
	if (s->insert == NULL) {
		if (prepare(s, &s->insert,
			    "INSERT INTO events (sequence, event_id, aggregate_id, aggregate_type,"
			    " aggregate_version, event_type, event_version, data, metadata,"
			    " timestamp, hash, correlation_id, correlation_key)"
			    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
			    " ON CONFLICT (event_id) DO NOTHING",
			    err) < 0 ||
		    prepare(s, &s->version, SQL_VERSION_OF(s), err) < 0 ||
		    prepare(s, &s->by_event_id,
			    "SELECT sequence, event_id, aggregate_id, aggregate_type,"
			    " aggregate_version, event_type, event_version, data, metadata,"
			    " timestamp, hash FROM events WHERE event_id = ?1",
			    err) < 0 ||
		    prepare(s, &s->last,
			    "SELECT sequence, event_id, aggregate_id, aggregate_type,"
			    " aggregate_version, event_type, event_version, data, metadata,"
			    " timestamp, hash FROM events ORDER BY sequence DESC LIMIT 2",
			    err) < 0)
			return -1;
	}
	int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "cannot start a write transaction", err);
	s->in_txn = true;
	cqrs_versions_forget(&s->versions);
	return check_head(s, err);
}

static int64_t stored_version(void *backend, const uint8_t id[CQRS_UUID_LEN], cqrs_error *err)
{
	struct sqlite_store *s = backend;
	sqlite3_bind_blob(s->version, 1, id, CQRS_UUID_LEN, SQLITE_STATIC);
	int rc = sqlite3_step(s->version);
	int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(s->version, 0) : 0;
	sqlite3_reset(s->version);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		db_error(s, rc, "cannot read the store", err);
		return -1;
	}
	return v;
}

/* A text column into a fixed field, cut to fit: by its length, not
 * snprintf's format (three per row read, a few percent of a rebuild). */
static void column_text_to(sqlite3_stmt *q, int col, char *to, size_t cap)
{
	const unsigned char *t = sqlite3_column_text(q, col);
	size_t n = t != NULL ? (size_t)sqlite3_column_bytes(q, col) : 0;
	if (n >= cap)
		n = cap - 1;
	if (n > 0)
		memcpy(to, t, n);
	to[n] = '\0';
}

static void row_to_event(sqlite3_stmt *q, cqrs_event *ev)
{
	ev->sequence = sqlite3_column_int64(q, 0);
	const void *b = sqlite3_column_blob(q, 1);
	if (b != NULL && sqlite3_column_bytes(q, 1) == CQRS_UUID_LEN)
		memcpy(ev->event_id, b, CQRS_UUID_LEN);
	ev->has_event_id = true;
	b = sqlite3_column_blob(q, 2);
	if (b != NULL && sqlite3_column_bytes(q, 2) == CQRS_UUID_LEN)
		memcpy(ev->aggregate_id, b, CQRS_UUID_LEN);
	column_text_to(q, 3, ev->aggregate_type, sizeof ev->aggregate_type);
	ev->aggregate_version = sqlite3_column_int64(q, 4);
	column_text_to(q, 5, ev->event_type, sizeof ev->event_type);
	ev->event_version = sqlite3_column_int64(q, 6);
	ev->data = (const char *)sqlite3_column_text(q, 7);
	ev->data_len = (size_t)sqlite3_column_bytes(q, 7);
	ev->metadata = (const char *)sqlite3_column_text(q, 8);
	ev->metadata_len = (size_t)sqlite3_column_bytes(q, 8);
	column_text_to(q, 9, ev->timestamp, sizeof ev->timestamp);
	b = sqlite3_column_blob(q, 10);
	if (b != NULL && sqlite3_column_bytes(q, 10) == CQRS_HASH_LEN)
		memcpy(ev->hash, b, CQRS_HASH_LEN);
	ev->has_hash = true;
	ev->expected_version = -1;
}

/* The append's find_stored (store_impl.h): the event stored under
 * ev's event_id, compared with ev. */
static int find_stored(void *backend, cqrs_event *ev, cqrs_error *err)
{
	struct sqlite_store *s = backend;
	sqlite3_stmt *q = s->by_event_id;
	sqlite3_bind_blob(q, 1, ev->event_id, CQRS_UUID_LEN, SQLITE_STATIC);
	int rc = sqlite3_step(q);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(q);
		return 0;
	}
	if (rc != SQLITE_ROW) {
		sqlite3_reset(q);
		return db_error(s, rc, "cannot read the store", err);
	}
	cqrs_event stored;
	memset(&stored, 0, sizeof stored);
	row_to_event(q, &stored);
	int same = cqrs_append_take_stored(&stored, ev, err);
	sqlite3_reset(q);
	return same;
}

static int insert_event(void *backend, const cqrs_event *ev, bool *inserted, cqrs_error *err)
{
	struct sqlite_store *s = backend;
	char corr[CQRS_MAX_CORRELATION + 1];
	bool has_corr = cqrs_event_correlation(ev, corr, sizeof corr);
	sqlite3_stmt *q = s->insert;
	sqlite3_bind_int64(q, 1, ev->sequence);
	sqlite3_bind_blob(q, 2, ev->event_id, CQRS_UUID_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(q, 3, ev->aggregate_id, CQRS_UUID_LEN, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, ev->aggregate_type, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 5, ev->aggregate_version);
	sqlite3_bind_text(q, 6, ev->event_type, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 7, ev->event_version);
	sqlite3_bind_text(q, 8, ev->data, (int)ev->data_len, SQLITE_STATIC);
	sqlite3_bind_text(q, 9, ev->metadata, (int)ev->metadata_len, SQLITE_STATIC);
	sqlite3_bind_text(q, 10, ev->timestamp, CQRS_TIMESTAMP_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(q, 11, ev->hash, CQRS_HASH_LEN, SQLITE_STATIC);
	if (has_corr) {
		sqlite3_bind_text(q, 12, corr, -1, SQLITE_STATIC);
		sqlite3_bind_int64(q, 13, correlation_key(s, corr));
	} else {
		sqlite3_bind_null(q, 12);
		sqlite3_bind_null(q, 13);
	}
	int rc = sqlite3_step(q);
	sqlite3_reset(q);
	if (rc != SQLITE_DONE)
		return db_error(s, rc, "cannot append", err);
	*inserted = sqlite3_changes(s->db) > 0;
	return 0;
}

static int sqlite_append(cqrs_store *st, cqrs_event *ev, cqrs_error *err)
{
	struct sqlite_store *s = (struct sqlite_store *)st;
	if (!s->in_txn)
		return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "append outside a transaction");

	const struct cqrs_append_backend backend = { s, stored_version, find_stored, insert_event };
	return cqrs_append_event(&backend, &s->versions, &s->head, ev, err);
}

static int sqlite_commit(cqrs_store *st, cqrs_error *err)
{
	struct sqlite_store *s = (struct sqlite_store *)st;
	int rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		/* Never retried: after a failed fsync the state of the file is
		 * unknown, and retrying could report a batch durable that is not. */
		db_error(s, rc, "commit failed", err);
		if (err != NULL && err->code == CQRS_EXIT_TEMPFAIL)
			err->code = CQRS_EXIT_IOERR;
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		s->in_txn = false;
		cqrs_versions_forget(&s->versions);
		return -1;
	}
	s->in_txn = false;
	cqrs_versions_forget(&s->versions);
	return 0;
}

static void sqlite_rollback(cqrs_store *st)
{
	struct sqlite_store *s = (struct sqlite_store *)st;
	if (s->in_txn)
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	s->in_txn = false;
	cqrs_versions_forget(&s->versions);
}

static int64_t sqlite_aggregate_version(cqrs_store *st, const uint8_t id[CQRS_UUID_LEN],
					cqrs_error *err)
{
	struct sqlite_store *s = (struct sqlite_store *)st;
	int64_t cached;
	if (s->in_txn && cqrs_versions_get(&s->versions, id, &cached) == 1)
		return cached;
	if (prepare(s, &s->version, SQL_VERSION_OF(s), err) < 0)
		return -1;
	return stored_version(s, id, err);
}

static int64_t sqlite_last_sequence(cqrs_store *st, cqrs_error *err)
{
	struct sqlite_store *s = (struct sqlite_store *)st;
	return pragma_int(s, "SELECT coalesce(max(sequence), 0) FROM events", err);
}

/* --- reading ------------------------------------------------------------- */

/* One filter's values, as "col IN (?n, ...)" from parameter *param on. */
static void add_list(struct cqrs_strbuf *sql, const char *col, size_t n, int *param)
{
	cqrs_strbuf_printf(sql, " AND %s IN (", col);
	for (size_t i = 0; i < n; i++)
		cqrs_strbuf_printf(sql, "%s?%d", i ? ", " : "", (*param)++);
	cqrs_strbuf_putc(sql, ')');
}

#define FIRST_LIST_PARAM 11

/* Keeps the first failure of a bind: a value SQLite could not copy (out
 * of memory) is left NULL, and a read would find nothing, silently (an
 * order "does not exist"; make faultsweep, command). */
static void bound(int *rc, int r)
{
	if (*rc == SQLITE_OK)
		*rc = r;
}

static int bind_lists(const struct sqlite_store *s, sqlite3_stmt *q, const cqrs_filter *f)
{
	int p = FIRST_LIST_PARAM, rc = SQLITE_OK;
	for (size_t i = 0; i < f->naggregate_ids; i++)
		bound(&rc, sqlite3_bind_blob(q, p++, f->aggregate_ids[i], CQRS_UUID_LEN,
					     SQLITE_TRANSIENT));
	for (size_t i = 0; i < f->naggregate_types; i++)
		bound(&rc, sqlite3_bind_text(q, p++, f->aggregate_types[i], -1, SQLITE_TRANSIENT));
	for (size_t i = 0; i < f->nevent_types; i++)
		bound(&rc, sqlite3_bind_text(q, p++, f->event_types[i], -1, SQLITE_TRANSIENT));
	for (size_t i = 0; i < f->ncorrelation_ids; i++)
		bound(&rc, sqlite3_bind_text(q, p++, f->correlation_ids[i], -1, SQLITE_TRANSIENT));
	for (size_t i = 0; i < f->ncorrelation_ids; i++)
		sqlite3_bind_int64(q, p++, correlation_key(s, f->correlation_ids[i]));
	return rc;
}

#define EVENT_COLUMNS                                                                              \
	"SELECT sequence, event_id, aggregate_id, aggregate_type, aggregate_version, event_type,"  \
	" event_version, data, metadata, timestamp, hash"

static void filter_sql(struct cqrs_strbuf *sql, const cqrs_filter *f)
{
	cqrs_strbuf_puts(sql, EVENT_COLUMNS " FROM events WHERE sequence > ?1");
	int p = FIRST_LIST_PARAM;
	if (f->to > 0)
		cqrs_strbuf_puts(sql, " AND sequence <= ?2");
	if (f->aggregate_id != NULL)
		cqrs_strbuf_puts(sql, " AND aggregate_id = ?3 AND aggregate_version > ?9");
	if (f->naggregate_ids > 0)
		add_list(sql, "aggregate_id", f->naggregate_ids, &p);
	if (f->aggregate_type != NULL)
		cqrs_strbuf_puts(sql, " AND aggregate_type = ?4");
	/* A list of types is looked for in sequence order, not through the
	 * type's index ('+' keeps SQLite from it): the index gives each
	 * type's events in order but not the list's, and SQLite would sort
	 * all of them in memory before the first came out (396 MB and 3x
	 * the time to read three types of a 1M-event store).  One type keeps
	 * its index, whose rows are in sequence order. */
	if (f->naggregate_types > 0)
		add_list(sql, "+aggregate_type", f->naggregate_types, &p);
	if (f->event_type != NULL)
		cqrs_strbuf_puts(sql, " AND event_type = ?5");
	if (f->nevent_types > 0)
		add_list(sql, "+event_type", f->nevent_types, &p);
	if (f->correlation_id != NULL)
		cqrs_strbuf_puts(sql, " AND correlation_key = ?10 AND correlation_id = ?6");
	if (f->ncorrelation_ids > 0) {
		add_list(sql, "correlation_id", f->ncorrelation_ids, &p);
		add_list(sql, "correlation_key", f->ncorrelation_ids, &p);
	}
	if (f->until != NULL)
		cqrs_strbuf_puts(sql, " AND timestamp <= ?7");
	/* An aggregate's versions follow its sequences (each event is its
	 * aggregate's next version, appended at the head), and in version
	 * order its index gives them as they are found; in sequence order
	 * SQLite would sort all of them in memory first. */
	if (f->aggregate_id != NULL)
		cqrs_strbuf_puts(sql, f->reverse ? " ORDER BY aggregate_version DESC"
						 : " ORDER BY aggregate_version");
	else
		cqrs_strbuf_puts(sql,
				 f->reverse ? " ORDER BY sequence DESC" : " ORDER BY sequence");
	if (f->limit > 0)
		cqrs_strbuf_puts(sql, " LIMIT ?8");
}

static struct sqlite_cursor *new_cursor(struct sqlite_store *s, const char *sql, cqrs_error *err)
{
	struct sqlite_cursor *c = calloc(1, sizeof *c);
	if (c == NULL) {
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		return NULL;
	}
	c->base.store = &s->base;
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &c->stmt, NULL);
	if (rc != SQLITE_OK) {
		db_error(s, rc, "cannot read the store", err);
		free(c);
		return NULL;
	}
	return c;
}

/* A reader of an older store computes its correlation keys the old way
 * until a writer migrates the store under it (a --follow opened before
 * the upgrade): before each search by correlation id it asks the store's
 * version again, so that it searches with the keys the rows now have. */
static void refresh_schema(struct sqlite_store *s)
{
	if (s->schema >= SCHEMA_VERSION)
		return;
	cqrs_error ignored = { 0 };
	int64_t ver = pragma_int(s, "PRAGMA user_version", &ignored);
	if (ver > s->schema && ver <= SCHEMA_VERSION)
		s->schema = (int)ver;
}

/* Only an aggregate's id and a version, in order, no bounds: loading an
 * aggregate, once per command.  Parsing that SQL each time cost more than
 * reading the few events it finds. */
static bool one_aggregate_only(const cqrs_filter *f)
{
	return f->aggregate_id != NULL && f->after == 0 && f->to == 0 && f->naggregate_ids == 0 &&
	       f->aggregate_type == NULL && f->naggregate_types == 0 && f->event_type == NULL &&
	       f->nevent_types == 0 && f->correlation_id == NULL && f->ncorrelation_ids == 0 &&
	       f->until == NULL && !f->reverse && f->limit == 0;
}

static void sqlite_cursor_close(cqrs_cursor *cur);

/* The cursor, or NULL with *err when one of its values was not bound. */
static cqrs_cursor *unless_unbound(struct sqlite_store *s, struct sqlite_cursor *c, int rc,
				   cqrs_error *err)
{
	if (rc == SQLITE_OK)
		return &c->base;
	sqlite_cursor_close(&c->base);
	db_error(s, rc, "cannot read the store", err);
	return NULL;
}

static cqrs_cursor *read_one_aggregate(struct sqlite_store *s, const cqrs_filter *f,
				       cqrs_error *err)
{
	if (prepare(s, &s->one_aggregate,
		    EVENT_COLUMNS " FROM events WHERE sequence > 0 AND aggregate_id = ?1"
				  " AND aggregate_version > ?2 ORDER BY aggregate_version",
		    err) < 0)
		return NULL;
	struct sqlite_cursor *c = calloc(1, sizeof *c);
	if (c == NULL) {
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		return NULL;
	}
	c->base.store = &s->base;
	c->stmt = s->one_aggregate;
	c->lent = true;
	s->one_aggregate_lent = true;
	int rc = sqlite3_bind_blob(c->stmt, 1, f->aggregate_id, CQRS_UUID_LEN, SQLITE_TRANSIENT);
	sqlite3_bind_int64(c->stmt, 2, f->after_version);
	return unless_unbound(s, c, rc, err);
}

static cqrs_cursor *sqlite_read(cqrs_store *st, const cqrs_filter *f, cqrs_error *err)
{
	struct sqlite_store *s = (struct sqlite_store *)st;
	if (one_aggregate_only(f) && !s->one_aggregate_lent)
		return read_one_aggregate(s, f, err);
	if (f->correlation_id != NULL || f->ncorrelation_ids > 0)
		refresh_schema(s);
	struct cqrs_strbuf sql = { 0 };
	filter_sql(&sql, f);
	if (sql.oom) {
		cqrs_strbuf_free(&sql);
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		return NULL;
	}
	struct sqlite_cursor *c = new_cursor(s, cqrs_strbuf_str(&sql), err);
	cqrs_strbuf_free(&sql);
	if (c == NULL)
		return NULL;
	int rc = SQLITE_OK;
	sqlite3_bind_int64(c->stmt, 1, f->after);
	if (f->to > 0)
		sqlite3_bind_int64(c->stmt, 2, f->to);
	if (f->aggregate_id != NULL) {
		bound(&rc, sqlite3_bind_blob(c->stmt, 3, f->aggregate_id, CQRS_UUID_LEN,
					     SQLITE_TRANSIENT));
		sqlite3_bind_int64(c->stmt, 9, f->after_version);
	}
	if (f->aggregate_type != NULL)
		bound(&rc, sqlite3_bind_text(c->stmt, 4, f->aggregate_type, -1, SQLITE_TRANSIENT));
	if (f->event_type != NULL)
		bound(&rc, sqlite3_bind_text(c->stmt, 5, f->event_type, -1, SQLITE_TRANSIENT));
	if (f->correlation_id != NULL) {
		bound(&rc, sqlite3_bind_text(c->stmt, 6, f->correlation_id, -1, SQLITE_TRANSIENT));
		sqlite3_bind_int64(c->stmt, 10, correlation_key(s, f->correlation_id));
	}
	if (f->until != NULL)
		bound(&rc, sqlite3_bind_text(c->stmt, 7, f->until, -1, SQLITE_TRANSIENT));
	if (f->limit > 0)
		sqlite3_bind_int64(c->stmt, 8, f->limit);
	bound(&rc, bind_lists(s, c->stmt, f));
	return unless_unbound(s, c, rc, err);
}

/* Every event, with the columns derived from its metadata after them. */
static cqrs_cursor *sqlite_verify_read(cqrs_store *st, cqrs_error *err)
{
	struct sqlite_cursor *c =
		new_cursor((struct sqlite_store *)st,
			   EVENT_COLUMNS ", correlation_id, correlation_key FROM events"
					 " ORDER BY sequence",
			   err);
	return c != NULL ? &c->base : NULL;
}

static int sqlite_verify_row(cqrs_cursor *cur, const cqrs_event *ev, cqrs_error *err)
{
	sqlite3_stmt *q = ((struct sqlite_cursor *)cur)->stmt;
	char corr[CQRS_MAX_CORRELATION + 1];
	bool has = cqrs_event_correlation(ev, corr, sizeof corr);
	const char *col = (const char *)sqlite3_column_text(q, 11);
	bool col_null = sqlite3_column_type(q, 11) == SQLITE_NULL;
	bool key_null = sqlite3_column_type(q, 12) == SQLITE_NULL;
	if (has != !col_null || (has && (col == NULL || strcmp(col, corr) != 0)))
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "column correlation_id (%s%s%s) does not match the hashed "
				 "metadata's (%s%s%s): the row was edited",
				 col_null ? "" : "'", col_null ? "NULL" : col, col_null ? "" : "'",
				 has ? "'" : "", has ? corr : "none", has ? "'" : "");
	if (has == key_null ||
	    (has && sqlite3_column_int64(q, 12) !=
			    correlation_key((struct sqlite_store *)cur->store, corr)))
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "column correlation_key does not match the hashed metadata's "
				 "correlation_id: the row was edited");
	return 0;
}

static int sqlite_head(cqrs_store *st, int64_t *sequence, uint8_t hash[CQRS_HASH_LEN],
		       cqrs_error *err)
{
	struct sqlite_store *s = (struct sqlite_store *)st;
	sqlite3_stmt *q;
	int rc = sqlite3_prepare_v2(
		s->db, "SELECT sequence, hash FROM events ORDER BY sequence DESC LIMIT 1", -1, &q,
		NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "cannot read the store", err);
	rc = sqlite3_step(q);
	*sequence = 0;
	memset(hash, 0, CQRS_HASH_LEN);
	if (rc == SQLITE_ROW) {
		*sequence = sqlite3_column_int64(q, 0);
		if (sqlite3_column_bytes(q, 1) == CQRS_HASH_LEN)
			memcpy(hash, sqlite3_column_blob(q, 1), CQRS_HASH_LEN);
	}
	sqlite3_finalize(q);
	return rc == SQLITE_ROW || rc == SQLITE_DONE
		       ? 0
		       : db_error(s, rc, "cannot read the store", err);
}

static int sqlite_cursor_next(cqrs_cursor *cur, cqrs_event *ev, cqrs_error *err)
{
	struct sqlite_cursor *c = (struct sqlite_cursor *)cur;
	int rc = sqlite3_step(c->stmt);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return db_error((struct sqlite_store *)cur->store, rc, "cannot read the store",
				err);
	row_to_event(c->stmt, ev);
	/* NOT NULL columns that read as NULL, or ids and hashes of the wrong
	 * size: a damaged page, which must not be printed as an event */
	if (ev->data == NULL || ev->metadata == NULL ||
	    sqlite3_column_bytes(c->stmt, 1) != CQRS_UUID_LEN ||
	    sqlite3_column_bytes(c->stmt, 2) != CQRS_UUID_LEN ||
	    sqlite3_column_bytes(c->stmt, 10) != CQRS_HASH_LEN)
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "%s: event %lld is damaged: a column is missing or malformed",
				 ((struct sqlite_store *)cur->store)->path,
				 (long long)ev->sequence);
	return 1;
}

static void sqlite_cursor_close(cqrs_cursor *cur)
{
	struct sqlite_cursor *c = (struct sqlite_cursor *)cur;
	if (c->lent) {
		struct sqlite_store *s = (struct sqlite_store *)cur->store;
		sqlite3_reset(c->stmt);
		sqlite3_clear_bindings(c->stmt);
		s->one_aggregate_lent = false;
	} else {
		sqlite3_finalize(c->stmt);
	}
	free(c);
}

/* --- snapshots, processed messages, counters ----------------------------- */

/* Steps a cached single-row statement; returns SQLITE_ROW or SQLITE_DONE,
 * or -1 with *err set.  The caller resets it. */
static int step_cached(struct sqlite_store *s, sqlite3_stmt **stmt, const char *sql,
		       int (*bind)(sqlite3_stmt *, const void *), const void *arg, cqrs_error *err)
{
	if (prepare(s, stmt, sql, err) < 0)
		return -1;
	bind(*stmt, arg);
	int rc = sqlite3_step(*stmt);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		sqlite3_reset(*stmt);
		return db_error(s, rc, "store query failed", err);
	}
	return rc;
}

static int bind_id(sqlite3_stmt *q, const void *id)
{
	return sqlite3_bind_blob(q, 1, id, CQRS_UUID_LEN, SQLITE_STATIC);
}

static int bind_text(sqlite3_stmt *q, const void *text)
{
	return sqlite3_bind_text(q, 1, text, -1, SQLITE_STATIC);
}

static char *column_dup(sqlite3_stmt *q, int col)
{
	const unsigned char *t = sqlite3_column_text(q, col);
	return strdup(t != NULL ? (const char *)t : "");
}

static int sqlite_snapshot_load(cqrs_store *st, const uint8_t id[CQRS_UUID_LEN], int64_t *version,
				char **state, cqrs_error *err)
{
	struct sqlite_store *s = (struct sqlite_store *)st;
	int rc =
		step_cached(s, &s->snap_load,
			    "SELECT aggregate_version, state FROM snapshots WHERE aggregate_id = ?1"
			    " ORDER BY aggregate_version DESC LIMIT 1",
			    bind_id, id, err);
	if (rc < 0)
		return -1;
	int found = 0;
	if (rc == SQLITE_ROW) {
		*version = sqlite3_column_int64(s->snap_load, 0);
		*state = column_dup(s->snap_load, 1);
		found = *state != NULL ? 1 : cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	}
	sqlite3_reset(s->snap_load);
	return found;
}

static int sqlite_snapshot_save(cqrs_store *st, const uint8_t id[CQRS_UUID_LEN], const char *type,
				int64_t version, const char *state, cqrs_error *err)
{
	struct sqlite_store *s = (struct sqlite_store *)st;
	if (prepare(s, &s->snap_save,
		    "INSERT OR REPLACE INTO snapshots (aggregate_id, aggregate_type,"
		    " aggregate_version, state, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
		    err) < 0)
		return -1;
	char now[CQRS_TIMESTAMP_LEN + 1];
	cqrs_timestamp_now(now);
	sqlite3_stmt *q = s->snap_save;
	sqlite3_bind_blob(q, 1, id, CQRS_UUID_LEN, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, type, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 3, version);
	sqlite3_bind_text(q, 4, state, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 5, now, -1, SQLITE_STATIC);
	int rc = sqlite3_step(q);
	sqlite3_reset(q);
	return rc == SQLITE_DONE ? 0 : db_error(s, rc, "cannot save snapshot", err);
}

static int sqlite_processed_get(cqrs_store *st, const char *message_id, char **result,
				cqrs_error *err)
{
	struct sqlite_store *s = (struct sqlite_store *)st;
	int rc = step_cached(s, &s->proc_get,
			     "SELECT result FROM processed_messages WHERE message_id = ?1",
			     bind_text, message_id, err);
	if (rc < 0)
		return -1;
	int found = 0;
	if (rc == SQLITE_ROW) {
		*result = column_dup(s->proc_get, 0);
		found = *result != NULL ? 1 : cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	}
	sqlite3_reset(s->proc_get);
	return found;
}

static int sqlite_processed_put(cqrs_store *st, const char *message_id, const char *handler,
				const char *result, cqrs_error *err)
{
	struct sqlite_store *s = (struct sqlite_store *)st;
	if (!s->in_txn)
		return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "processed_put outside a transaction");
	if (prepare(s, &s->proc_put,
		    "INSERT INTO processed_messages (message_id, handler, result, processed_at)"
		    " VALUES (?1, ?2, ?3, ?4)",
		    err) < 0)
		return -1;
	char now[CQRS_TIMESTAMP_LEN + 1];
	cqrs_timestamp_now(now);
	sqlite3_stmt *q = s->proc_put;
	sqlite3_bind_text(q, 1, message_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, handler, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, result, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, now, -1, SQLITE_STATIC);
	int rc = sqlite3_step(q);
	sqlite3_reset(q);
	return rc == SQLITE_DONE ? 0 : db_error(s, rc, "cannot record processed message", err);
}

static int64_t sqlite_counter_next(cqrs_store *st, const char *name, cqrs_error *err)
{
	struct sqlite_store *s = (struct sqlite_store *)st;
	if (!s->in_txn)
		return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "counter_next outside a transaction");
	int rc = step_cached(s, &s->counter,
			     "INSERT INTO counters (name, value) VALUES (?1, 1)"
			     " ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
			     bind_text, name, err);
	if (rc < 0)
		return -1;
	int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(s->counter, 0) : -1;
	sqlite3_reset(s->counter);
	return v > 0 ? v : cqrs_fail(err, CQRS_EXIT_SOFTWARE, "counter '%s' did not advance", name);
}

/* Once per batch that takes numbers, so not a cached statement. */
static int64_t sqlite_counter_set(cqrs_store *st, const char *name, int64_t value, cqrs_error *err)
{
	struct sqlite_store *s = (struct sqlite_store *)st;
	if (!s->in_txn)
		return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "counter_set outside a transaction");
	sqlite3_stmt *q;
	int rc = sqlite3_prepare_v2(s->db,
				    "INSERT INTO counters (name, value) VALUES (?1, ?2)"
				    " ON CONFLICT (name) DO UPDATE SET value = ?2"
				    " RETURNING value",
				    -1, &q, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "prepare failed", err);
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, value);
	rc = sqlite3_step(q);
	int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(q, 0) : -1;
	sqlite3_finalize(q);
	if (rc != SQLITE_ROW)
		return db_error(s, rc, "cannot update counter", err);
	return v;
}

/* relay ops (issue 14): a prefix compared as bytes (no LIKE: '_' and '%'
 * are ordinary in a stream's name) */
static int sqlite_counters_each(cqrs_store *st, const char *prefix, cqrs_counter_fn *fn, void *arg,
				cqrs_error *err)
{
	struct sqlite_store *s = (struct sqlite_store *)st;
	sqlite3_stmt *q;
	int rc = sqlite3_prepare_v2(s->db,
				    "SELECT name, value FROM counters"
				    " WHERE substr(name, 1, length(?1)) = ?1 ORDER BY name",
				    -1, &q, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "cannot read counters", err);
	sqlite3_bind_text(q, 1, prefix, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW)
		fn(arg, (const char *)sqlite3_column_text(q, 0), sqlite3_column_int64(q, 1));
	sqlite3_finalize(q);
	return rc == SQLITE_DONE ? 0 : db_error(s, rc, "cannot read counters", err);
}

/* --- following ----------------------------------------------------------- */

/* A commit writes to the -wal file, which inotify reports; but the
 * wal-index that makes the commit visible is updated through shared memory
 * a moment later, which it does not.  So after a wake-up the caller
 * re-queries a few times at short intervals before it sleeps long again. */
#define SETTLE_MS     20
#define SETTLE_ROUNDS 5

static int sqlite_wait(cqrs_store *st, int timeout_ms, const int *fds, int nfds, cqrs_error *err)
{
	struct sqlite_store *s = (struct sqlite_store *)st;
	if (s->inotify_fd < 0) {
		s->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (s->inotify_fd < 0)
			return cqrs_fail(err, CQRS_EXIT_OSERR, "inotify: %s", strerror(errno));
		char *copy = strdup(s->path);
		if (copy == NULL)
			return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		if (inotify_add_watch(s->inotify_fd, dirname(copy),
				      IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE) < 0) {
			free(copy);
			return cqrs_fail(err, CQRS_EXIT_OSERR, "inotify: %s", strerror(errno));
		}
		free(copy);
	}
	if (s->settle_rounds > 0) {
		s->settle_rounds--;
		if (timeout_ms < 0 || timeout_ms > SETTLE_MS)
			timeout_ms = SETTLE_MS;
	}
	int r = cqrs_store_poll(s->inotify_fd, fds, nfds, timeout_ms, err);
	if (r == 0)
		return s->settle_rounds > 0 ? 1 : 0;
	if (r != 1)
		return r;
	/* Drain: one wake-up per burst of writes is enough. */
	char buf[4096];
	while (read(s->inotify_fd, buf, sizeof buf) > 0)
		;
	s->settle_rounds = SETTLE_ROUNDS;
	return 1;
}

/* The saga runner's tables live in the same file and must change in the
 * same transactions as the events; saga_store.c reaches them here. */
struct sqlite3 *cqrs_sqlite_handle(cqrs_store *st)
{
	if (st == NULL || st->ops != &sqlite_ops)
		return NULL;
	return ((struct sqlite_store *)st)->db;
}

/* For cqrs-health: what the file says about itself.  quick_check reads
 * every page (but does not match indexes to tables): damage shows here
 * before a query trips over it. */
int cqrs_store_facts(cqrs_store *st, struct cqrs_store_facts *f, cqrs_error *err)
{
	/* issue 13: a PostgreSQL store's facts are its own */
	if (cqrs_pg_is(st))
		return cqrs_pg_facts(st, f, err);
	memset(f, 0, sizeof *f);
	if (st == NULL || st->ops != &sqlite_ops)
		return cqrs_fail(err, CQRS_EXIT_CONFIG,
				 "store facts need the embedded SQLite store");
	struct sqlite_store *s = (struct sqlite_store *)st;
	f->schema = s->schema;
	f->schema_current = SCHEMA_VERSION;
	char wal[4200];
	struct stat sb;
	if (stat(s->path, &sb) == 0)
		f->size_bytes = (int64_t)sb.st_size;
	snprintf(wal, sizeof wal, "%s-wal", s->path);
	if (stat(wal, &sb) == 0)
		f->wal_bytes = (int64_t)sb.st_size;
	sqlite3_stmt *q;
	int rc = sqlite3_prepare_v2(s->db, "PRAGMA quick_check(20)", -1, &q, NULL);
	if (rc != SQLITE_OK)
		return db_error(s, rc, "cannot check the store", err);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		const char *text = (const char *)sqlite3_column_text(q, 0);
		if (text == NULL || strcmp(text, "ok") == 0)
			continue;
		/* a row may hold several lines, under a "*** in database main
		 * ***" heading: one finding a line, the first one kept */
		for (const char *line = text; *line != '\0';) {
			size_t n = strcspn(line, "\n");
			if (strncmp(line, "*** ", 4) != 0 && f->problems++ == 0)
				snprintf(f->integrity, sizeof f->integrity, "%.*s", (int)n, line);
			line += n + (line[n] == '\n');
		}
	}
	sqlite3_finalize(q);
	if (rc != SQLITE_DONE) {
		/* a page so damaged that the check itself stops is a finding,
		 * not a failure to look; a read that failed (EIO) is not */
		int base = rc & 0xff;
		if ((base != SQLITE_CORRUPT && base != SQLITE_NOTADB) ||
		    cqrs_sqlite_read_failed(s->db, rc))
			return db_error(s, rc, "cannot check the store", err);
		f->problems++;
		snprintf(f->integrity, sizeof f->integrity, "%s", sqlite3_errstr(rc));
	}
	if (f->problems == 0)
		snprintf(f->integrity, sizeof f->integrity, "ok");
	/* a damaged store may not count its events: -1, the finding is above */
	cqrs_error ignored = { 0 };
	f->events = pragma_int(s, "SELECT count(*) FROM events", f->problems ? &ignored : err);
	return f->events < 0 && f->problems == 0 ? -1 : 0;
}

static const struct cqrs_store_ops sqlite_ops = {
	.close = sqlite_close,
	.set_durability = sqlite_set_durability,
	.begin = sqlite_begin,
	.append = sqlite_append,
	.commit = sqlite_commit,
	.rollback = sqlite_rollback,
	.aggregate_version = sqlite_aggregate_version,
	.last_sequence = sqlite_last_sequence,
	.read = sqlite_read,
	.cursor_next = sqlite_cursor_next,
	.cursor_close = sqlite_cursor_close,
	.snapshot_load = sqlite_snapshot_load,
	.snapshot_save = sqlite_snapshot_save,
	.processed_get = sqlite_processed_get,
	.processed_put = sqlite_processed_put,
	.counter_next = sqlite_counter_next,
	.counter_set = sqlite_counter_set,
	.counters_each = sqlite_counters_each,
	.wait = sqlite_wait,
	.head = sqlite_head,
	.verify_read = sqlite_verify_read,
	.verify_row = sqlite_verify_row,
};
