/*
 * The views file: the read models in their own SQLite file, separate from
 * the event store, identified by its own application_id and schema
 * version, and thrown away and rebuilt from the events at will.
 *
 * One table of cqrs-project's own, cqrs_checkpoints, holds one row per
 * projection: the last sequence applied, committed in the same
 * transaction as the changes it made.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cqrs.h"
#include "common/sqlite_errors.h"
#include "read/views_impl.h"
#include "banned.h"

#define STORE_APPLICATION_ID 0x43515253

/* clang-format off */
#define SCHEMA_CHECKPOINTS \
	"CREATE TABLE cqrs_checkpoints (" \
	" projection TEXT PRIMARY KEY," \
	" sequence INTEGER NOT NULL DEFAULT 0," \
	" event_hash TEXT," \
	" event_timestamp TEXT," \
	" definition TEXT NOT NULL," \
	" source TEXT NOT NULL," \
	" tables TEXT NOT NULL," \
	" updated_at TEXT NOT NULL" \
	");"
/* Version 2: the events a projection could not apply (cqrs-project(1),
 * PARKED EVENTS).  A version 1 file gets the table on its first write. */
#define SCHEMA_PARKED \
	"CREATE TABLE IF NOT EXISTS parked_events (" \
	" projection TEXT NOT NULL," \
	" sequence INTEGER NOT NULL," \
	" aggregate_id TEXT NOT NULL," \
	" event_type TEXT NOT NULL," \
	" error TEXT NOT NULL," \
	" parked_at TEXT NOT NULL," \
	" PRIMARY KEY (projection, sequence)" \
	");" \
	"CREATE INDEX IF NOT EXISTS parked_events_aggregate" \
	" ON parked_events (projection, aggregate_id, sequence);"
static const char schema_v2[] = SCHEMA_CHECKPOINTS SCHEMA_PARKED;
/* clang-format on */

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Called by SQLite every few thousand virtual machine steps. */
static int deadline_check(void *arg)
{
	struct cqrs_deadline *d = arg;
	if (d->timeout_ms <= 0 || d->expired)
		return d->expired;
	d->expired = now_ns() > d->at_ns;
	return d->expired;
}

void cqrs_deadline_attach(sqlite3 *db, struct cqrs_deadline *d)
{
	cqrs_deadline_stop(d);
	sqlite3_progress_handler(db, 4000, deadline_check, d);
}

void cqrs_deadline_start(struct cqrs_deadline *d)
{
	d->expired = false;
	if (d->timeout_ms > 0)
		d->at_ns = now_ns() + d->timeout_ms * 1000000;
}

void cqrs_deadline_stop(struct cqrs_deadline *d)
{
	d->expired = false;
	d->at_ns = INT64_MAX;
}

int cqrs_views_memory_limit(int64_t bytes)
{
	/* the heap limit needs SQLite's memory statistics, which
	 * cqrs_sqlite_setup turns off for speed: set up first */
	if (cqrs_sqlite_keep_statistics() < 0)
		return -1;
	sqlite3_hard_heap_limit64(bytes);
	return 0;
}

void cqrs_views_harden(sqlite3 *db)
{
	sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
	sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
	sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, 0, NULL);
	sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, NULL);
}

const char *cqrs_views_meta_schema(void)
{
	return schema_v2;
}

int cqrs_views_db_error(sqlite3 *db, const char *path, int rc, const char *what, cqrs_error *err)
{
	/* a views file that cannot be opened is 73 (CANTCREAT), read or written;
	 * but one that is there, whose -shm or -wal could not be opened for a
	 * reason SQLite kept no errno of (it tried again read-only and found
	 * none), is an I/O error, as the store's is (make faultsweep,
	 * query-orders io 24: the -shm's first open failed once) */
	int code = cqrs_sqlite_db_exit_code(db, rc, true);
	struct stat sb;
	if (code == CQRS_EXIT_CANTCREAT && (rc & 0xff) == SQLITE_CANTOPEN && stat(path, &sb) == 0 &&
	    S_ISREG(sb.st_mode))
		code = CQRS_EXIT_IOERR;
	if (code == CQRS_EXIT_TEMPFAIL)
		return cqrs_fail(err, code,
				 "%s: views are busy (another process holds the lock); try again",
				 path);
	return cqrs_fail(err, code, "%s: %s: %s%s", path, what,
			 cqrs_sqlite_read_failed(db, rc) ? "a read failed: " : "",
			 db ? cqrs_sqlite_errmsg(db, rc) : "error");
}

static int64_t one_int(sqlite3 *db, const char *sql, int *rc)
{
	sqlite3_stmt *st;
	int64_t v = 0;
	*rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (*rc != SQLITE_OK)
		return -1;
	*rc = sqlite3_step(st);
	if (*rc == SQLITE_ROW) {
		v = sqlite3_column_int64(st, 0);
		*rc = SQLITE_OK;
	} else if (*rc == SQLITE_DONE) {
		*rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return v;
}

/* Release 0.1's views: the same, without parked_events. */
static int migrate_v1(sqlite3 *db, const char *path, cqrs_error *err)
{
	int rc = sqlite3_exec(db,
			      "BEGIN IMMEDIATE; " SCHEMA_PARKED " PRAGMA user_version = 2; COMMIT",
			      NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		cqrs_views_db_error(db, path, rc, "cannot upgrade the views", err);
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}

static int ensure_schema(sqlite3 *db, const char *path, bool writable, cqrs_error *err)
{
	int rc;
	int64_t app = one_int(db, "PRAGMA application_id", &rc);
	if (rc != SQLITE_OK)
		return cqrs_views_db_error(db, path, rc, "cannot read the views", err);
	int64_t ver = one_int(db, "PRAGMA user_version", &rc);
	if (rc != SQLITE_OK)
		return cqrs_views_db_error(db, path, rc, "cannot read the views", err);
	if (app == VIEWS_APPLICATION_ID && ver == VIEWS_SCHEMA_VERSION)
		return 0;
	if (app == VIEWS_APPLICATION_ID && ver == 1 && writable)
		return migrate_v1(db, path, err);
	if (app == VIEWS_APPLICATION_ID && ver == 1)
		return cqrs_fail(err, CQRS_EXIT_NOINPUT,
				 "%s: views of an older release (schema version 1): run "
				 "cqrs-project to upgrade them",
				 path);
	if (app == STORE_APPLICATION_ID)
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "%s: is an event store, not a views file (--views and --store "
				 "name different files)",
				 path);
	if (app != VIEWS_APPLICATION_ID && app != 0)
		return cqrs_fail(err, CQRS_EXIT_DATAERR, "%s: not a cqrs views file", path);
	if (ver > VIEWS_SCHEMA_VERSION)
		return cqrs_fail(err, CQRS_EXIT_CONFIG,
				 "%s: views schema version %lld is newer than this tool's (%d); "
				 "upgrade cqrs-tools or rebuild the views",
				 path, (long long)ver, VIEWS_SCHEMA_VERSION);
	if (!writable)
		return cqrs_fail(err, CQRS_EXIT_NOINPUT,
				 "%s: views are empty (run cqrs-project to build them)", path);
	rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return cqrs_views_db_error(db, path, rc, "cannot create the views", err);
	app = one_int(db, "PRAGMA application_id", &rc);
	if (rc == SQLITE_OK && app == 0) {
		int64_t tables = one_int(db, "SELECT count(*) FROM sqlite_schema", &rc);
		if (rc == SQLITE_OK && tables > 0) {
			sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
			return cqrs_fail(err, CQRS_EXIT_DATAERR, "%s: not a cqrs views file", path);
		}
		char sql[2048];
		snprintf(sql, sizeof sql, "%s PRAGMA application_id = %d; PRAGMA user_version = %d",
			 schema_v2, VIEWS_APPLICATION_ID, VIEWS_SCHEMA_VERSION);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		cqrs_views_db_error(db, path, rc, "cannot create the views", err);
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}

/* A rebuild copies pages into the live file, whose page size the
 * scratch file must share (SQLite's backup into a WAL file needs it). */
static int scratch_page_size;

void cqrs_views_set_scratch_page_size(int bytes)
{
	scratch_page_size = bytes;
}

/* Permission problems said as such (77), before SQLite reports them as
 * "unable to open" or "attempt to write a readonly database".  A writer
 * also needs its directory: the -wal and -shm files go next to the views. */
static int check_access(const char *path, bool exists, bool writable, cqrs_error *err)
{
	if (exists) {
		int fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY);
		if (fd < 0 && (errno == EACCES || errno == EPERM))
			return cqrs_fail(err, CQRS_EXIT_NOPERM, "%s: cannot %s the views: %s", path,
					 writable ? "write" : "read", "permission denied");
		if (fd >= 0)
			close(fd);
	}
	if (!writable)
		return 0;
	char copy[PATH_MAX];
	snprintf(copy, sizeof copy, "%s", path);
	const char *dir = dirname(copy);
	if (faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) < 0 && errno == EACCES)
		return cqrs_fail(err, CQRS_EXIT_NOPERM,
				 "%s: cannot write in %s, the directory of the views (their -wal "
				 "and -shm files go next to them): permission denied",
				 path, dir);
	return 0;
}

/* A views file this run created and could not set up holds nothing: it
 * goes, with what SQLite left beside it (a rollback journal left by a
 * failed first write would make every reader fail "readonly database"
 * until a writer rolled it back).  The views lock (or O_EXCL for a
 * scratch file) means nobody else is creating it. */
static void remove_new_views(const char *path)
{
	static const char *const suffixes[] = { "-journal", "-wal", "-shm", "" };
	for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
		char f[PATH_MAX];
		if ((size_t)snprintf(f, sizeof f, "%s%s", path, suffixes[i]) < sizeof f)
			unlink(f);
	}
}

int cqrs_views_db_open(const char *path, enum views_open how, sqlite3 **out, cqrs_error *err)
{
	struct stat sb;
	*out = NULL;
	cqrs_sqlite_setup();
	/* read models stay SQLite files, also beside a store on a server */
	if (cqrs_store_on_server(path))
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "%s: is an event store, not a views file (--views and --store "
				 "name different files)",
				 path);
	bool writable = how != VIEWS_OPEN_READ;
	bool exists = stat(path, &sb) == 0;
	if (exists && S_ISDIR(sb.st_mode))
		return cqrs_fail(err, CQRS_EXIT_NOINPUT, "%s: is a directory, not a views file",
				 path);
	if (!exists && how == VIEWS_OPEN_READ)
		return cqrs_fail(err, CQRS_EXIT_NOINPUT,
				 "%s: no such views file (cqrs-project builds it)", path);
	if (check_access(path, exists, writable, err) < 0)
		return -1;
	/* cqrs(7) "Who may use a store": views someone else could have
	 * planted or changed are refused like a store (77). */
	static const char *const suffixes[] = { "", "-wal", "-shm" };
	for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
		char f[PATH_MAX];
		if ((size_t)snprintf(f, sizeof f, "%s%s", path, suffixes[i]) >= sizeof f)
			return cqrs_fail(err, CQRS_EXIT_USAGE, "%s: path too long", path);
		if ((i == 0 || exists) && cqrs_trust_path(f, writable, err) < 0)
			return -1;
	}
	bool created = false;
	if (!exists || how == VIEWS_OPEN_SCRATCH) {
		/* SQLite gives -wal and -shm the main file's mode. */
		int fd = open(path,
			      O_RDWR | O_CREAT | O_CLOEXEC |
				      (how == VIEWS_OPEN_SCRATCH ? O_EXCL : 0),
			      0600);
		if (fd < 0)
			return cqrs_fail(err,
					 errno == EACCES ? CQRS_EXIT_NOPERM : CQRS_EXIT_CANTCREAT,
					 "%s: cannot create: %s", path, strerror(errno));
		close(fd);
		created = true;
	}
	sqlite3 *db = NULL;
	int flags = SQLITE_OPEN_NOMUTEX | (writable ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY);
	int rc = sqlite3_open_v2(path, &db, flags, cqrs_sqlite_watch_vfs());
	if (rc != SQLITE_OK) {
		cqrs_views_db_error(db, path, rc, "cannot open views", err);
		sqlite3_close(db);
		if (created)
			remove_new_views(path);
		return -1;
	}
	sqlite3_extended_result_codes(db, 1);
	sqlite3_busy_timeout(db, (int)cqrs_sqlite_busy_timeout_ms());
	if (cqrs_sql_register_functions(db) < 0) {
		sqlite3_close(db);
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	}
	static const char *const pragmas[] = {
		[VIEWS_OPEN_READ] = "PRAGMA trusted_schema = OFF; PRAGMA query_only = ON",
		/* The views can be rebuilt: a power cut may lose the last
		 * commits (they are applied again), never mix a batch with
		 * another checkpoint. */
		[VIEWS_OPEN_WRITE] = "PRAGMA trusted_schema = OFF; PRAGMA cache_size = -32768;"
				     " PRAGMA temp_store = MEMORY; PRAGMA journal_mode = WAL;"
				     " PRAGMA synchronous = NORMAL",
		/* Discarded on any failure: no fsync, the journal in memory
		 * (a parked event's changes are undone: without a journal,
		 * SQLite cannot undo a statement). */
		[VIEWS_OPEN_SCRATCH] = "PRAGMA trusted_schema = OFF; PRAGMA cache_size = -65536;"
				       " PRAGMA temp_store = MEMORY; PRAGMA journal_mode = MEMORY;"
				       " PRAGMA synchronous = OFF; PRAGMA locking_mode = EXCLUSIVE",
	};
	if (how == VIEWS_OPEN_SCRATCH && scratch_page_size > 0) {
		char ps[64];
		snprintf(ps, sizeof ps, "PRAGMA page_size = %d", scratch_page_size);
		sqlite3_exec(db, ps, NULL, NULL, NULL);
	}
	rc = sqlite3_exec(db, pragmas[how], NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		cqrs_views_db_error(db, path, rc, "cannot open views", err);
		sqlite3_close(db);
		if (created)
			remove_new_views(path);
		return -1;
	}
	/* after the pragmas: defensive mode refuses journal_mode = OFF */
	cqrs_views_harden(db);
	if (ensure_schema(db, path, writable, err) < 0) {
		sqlite3_close(db);
		if (created)
			remove_new_views(path);
		return -1;
	}
	*out = db;
	return 0;
}

/* --- the lock that serialises cqrs-project runs ----------------------------
 *
 * An flock on VIEWS.lock, which the holder removes when it lets go, also
 * when it fails (atexit): the file's presence means nothing either way (a
 * run killed by SIGKILL leaves it, and the next run takes it as usual).
 * A run that waited for the lock may find it held on a file that was
 * removed meanwhile: it checks that the file it holds is the one at the
 * path, and otherwise tries again. */

static struct {
	int fd;
	char path[PATH_MAX];
} held = { .fd = -1 };

static void unlock_at_exit(void)
{
	cqrs_views_unlock(held.fd);
}

static bool same_file(int fd, const char *path)
{
	struct stat a, b;
	return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

int cqrs_views_lock(const char *views_path, bool wait, cqrs_error *err)
{
	static bool registered;
	char path[PATH_MAX];
	if ((size_t)snprintf(path, sizeof path, "%s.lock", views_path) >= sizeof path)
		return cqrs_fail(err, CQRS_EXIT_USAGE, "%s: path too long", views_path);
	for (;;) {
		int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 && errno == EACCES) { /* flock needs no write access */
			fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0 && errno == ENOENT)
				errno = EACCES;
		}
		if (fd < 0 && errno == ELOOP)
			return cqrs_fail(err, CQRS_EXIT_NOPERM,
					 "%s: a symbolic link where the lock file belongs: refused",
					 path);
		if (fd < 0 && errno == EACCES)
			return cqrs_fail(err, CQRS_EXIT_NOPERM,
					 "%s: cannot create the lock file: permission denied (the "
					 "directory of the views is not writable)",
					 path);
		if (fd < 0)
			return cqrs_fail(err, CQRS_EXIT_CANTCREAT,
					 "%s: cannot create lock file: %s", path, strerror(errno));
		int r;
		while ((r = flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB))) < 0 && errno == EINTR)
			;
		if (r < 0) {
			int e = errno;
			close(fd);
			if (e == EWOULDBLOCK)
				return cqrs_fail(
					err, CQRS_EXIT_TEMPFAIL,
					"another cqrs-project is running on %s (--wait waits "
					"for it)",
					views_path);
			return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: cannot lock: %s", path,
					 strerror(e));
		}
		cqrs_error trust = { 0 };
		if (cqrs_trust_path(path, true, &trust) < 0) {
			close(fd);
			*err = trust;
			return -1;
		}
		if (!same_file(fd, path)) { /* removed by the run that held it */
			close(fd);
			continue;
		}
		if (held.fd < 0) {
			held.fd = fd;
			memcpy(held.path, path, sizeof path);
			if (!registered && atexit(unlock_at_exit) == 0)
				registered = true;
		}
		return fd;
	}
}

void cqrs_views_unlock(int fd)
{
	if (fd < 0)
		return;
	if (fd == held.fd) {
		/* removed while still held: nobody can take the old file */
		unlink(held.path);
		held.fd = -1;
	}
	close(fd); /* releases the flock */
}

/* --- lag ------------------------------------------------------------------ */

/* Microseconds since the epoch of a normalised timestamp; 0 when empty. */
static int64_t ts_micros(const char *ts)
{
	char norm[CQRS_TIMESTAMP_LEN + 1];
	if (ts == NULL || cqrs_timestamp_normalize(ts, strlen(ts), norm) < 0)
		return 0;
	int64_t y = (norm[0] - '0') * 1000 + (norm[1] - '0') * 100 + (norm[2] - '0') * 10 +
		    (norm[3] - '0');
	unsigned m = (unsigned)((norm[5] - '0') * 10 + (norm[6] - '0'));
	unsigned d = (unsigned)((norm[8] - '0') * 10 + (norm[9] - '0'));
	/* days from civil (Howard Hinnant) */
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	int64_t days = era * 146097 + (int64_t)doe - 719468;
	int64_t secs = days * 86400 + ((norm[11] - '0') * 10 + (norm[12] - '0')) * 3600 +
		       ((norm[14] - '0') * 10 + (norm[15] - '0')) * 60 +
		       ((norm[17] - '0') * 10 + (norm[18] - '0'));
	int64_t us = 0;
	for (int i = 20; i < 26; i++)
		us = us * 10 + (norm[i] - '0');
	return secs * 1000000 + us;
}

/* The timestamp of event seq ("" when there is none). */
static int event_at(cqrs_store *st, int64_t seq, char ts[CQRS_TIMESTAMP_LEN + 1], cqrs_error *err)
{
	cqrs_filter f = { .limit = 1, .after = seq - 1, .to = seq };
	cqrs_cursor *c = cqrs_store_read(st, &f, err);
	if (c == NULL)
		return -1;
	cqrs_event ev;
	int r = cqrs_cursor_next(c, &ev, err);
	ts[0] = '\0';
	if (r == 1)
		memcpy(ts, ev.timestamp, CQRS_TIMESTAMP_LEN + 1);
	cqrs_cursor_close(c);
	return r < 0 ? -1 : 0;
}

/* A views file of release 0.1 opened for reading has no parked_events. */
static bool has_parked_table(sqlite3 *db)
{
	int rc;
	return one_int(db,
		       "SELECT count(*) FROM sqlite_schema WHERE type = 'table'"
		       " AND name = 'parked_events'",
		       &rc) > 0 &&
	       rc == SQLITE_OK;
}

int cqrs_views_lag_each(const char *views_path, cqrs_store *st,
			void (*each)(void *arg, const struct cqrs_view_lag *lag), void *arg,
			cqrs_error *err)
{
	sqlite3 *db;
	if (cqrs_views_db_open(views_path, VIEWS_OPEN_READ, &db, err) < 0)
		return -1;
	int64_t last = cqrs_store_last_sequence(st, err);
	cqrs_test_pause("CQRS_TEST_PAUSE_AFTER_HEAD");
	char newest[CQRS_TIMESTAMP_LEN + 1], first[CQRS_TIMESTAMP_LEN + 1];
	/* the time of event `last` itself, not of the newest when read: an
	 * event appended meanwhile would count as lag the views do not have */
	if (last < 0 || event_at(st, last, newest, err) < 0 || event_at(st, 1, first, err) < 0) {
		sqlite3_close(db);
		return -1;
	}
	sqlite3_stmt *q;
	int rc = sqlite3_prepare_v2(db,
				    has_parked_table(db)
					    ? "SELECT projection, sequence, event_timestamp,"
					      " (SELECT count(*) FROM parked_events AS e"
					      " WHERE e.projection = c.projection)"
					      " FROM cqrs_checkpoints AS c ORDER BY projection"
					    : "SELECT projection, sequence, event_timestamp, 0"
					      " FROM cqrs_checkpoints ORDER BY projection",
				    -1, &q, NULL);
	if (rc != SQLITE_OK) {
		cqrs_views_db_error(db, views_path, rc, "cannot read checkpoints", err);
		sqlite3_close(db);
		return -1;
	}
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		const char *ts = (const char *)sqlite3_column_text(q, 2);
		struct cqrs_view_lag lag = {
			.projection = (const char *)sqlite3_column_text(q, 0),
			.checkpoint = sqlite3_column_int64(q, 1),
			.store_sequence = last,
			.parked = sqlite3_column_int64(q, 3),
		};
		lag.events_behind = last > lag.checkpoint ? last - lag.checkpoint : 0;
		if (lag.events_behind > 0) {
			int64_t from = ts_micros(lag.checkpoint > 0 ? ts : first),
				to = ts_micros(newest);
			lag.seconds_behind = to > from ? (to - from) / 1000000 : 0;
		}
		each(arg, &lag);
	}
	int result = 0;
	if (rc != SQLITE_DONE)
		result = cqrs_views_db_error(db, views_path, rc, "cannot read checkpoints", err);
	sqlite3_finalize(q);
	sqlite3_close(db);
	return result;
}

static void print_lag(void *arg, const struct cqrs_view_lag *lag)
{
	FILE *out = arg;
	fputs("{\"projection\":", out);
	cqrs_json_write_string(out, lag->projection, strlen(lag->projection));
	fprintf(out,
		",\"checkpoint\":%lld,\"store_sequence\":%lld,\"events_behind\":%lld,"
		"\"seconds_behind\":%lld,\"parked\":%lld}\n",
		(long long)lag->checkpoint, (long long)lag->store_sequence,
		(long long)lag->events_behind, (long long)lag->seconds_behind,
		(long long)lag->parked);
}

int cqrs_views_lag(const char *views_path, cqrs_store *st, FILE *out, cqrs_error *err)
{
	return cqrs_views_lag_each(views_path, st, print_lag, out, err);
}

/* --- parked events ---------------------------------------------------------- */

/* Opens the views to read parked_events with sql: 1 with *db and *q set,
 * 0 when the views have no parked events table (nothing was ever parked),
 * -1 with *err. */
static int parked_query(const char *views_path, const char *sql, sqlite3 **db, sqlite3_stmt **q,
			cqrs_error *err)
{
	if (cqrs_views_db_open(views_path, VIEWS_OPEN_READ, db, err) < 0)
		return -1;
	if (!has_parked_table(*db)) {
		sqlite3_close(*db);
		return 0;
	}
	int rc = sqlite3_prepare_v2(*db, sql, -1, q, NULL);
	if (rc != SQLITE_OK) {
		cqrs_views_db_error(*db, views_path, rc, "cannot read the parked events", err);
		sqlite3_close(*db);
		return -1;
	}
	return 1;
}

int cqrs_views_parked(const char *views_path, FILE *out, cqrs_error *err)
{
	sqlite3 *db;
	sqlite3_stmt *q;
	int rc = parked_query(views_path,
			      "SELECT projection, sequence, aggregate_id, event_type, error,"
			      " parked_at FROM parked_events ORDER BY projection, sequence",
			      &db, &q, err);
	if (rc <= 0)
		return rc;
	static const char *const keys[] = { "projection", "sequence", "aggregate_id",
					    "event_type", "error",    "parked_at" };
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		for (int i = 0; i < 6; i++) {
			fprintf(out, "%s\"%s\":", i ? "," : "{", keys[i]);
			if (i == 1) {
				fprintf(out, "%lld", (long long)sqlite3_column_int64(q, i));
				continue;
			}
			const char *v = (const char *)sqlite3_column_text(q, i);
			cqrs_json_write_string(out, v ? v : "", v ? strlen(v) : 0);
		}
		fputs("}\n", out);
	}
	int result = 0;
	if (rc != SQLITE_DONE)
		result = cqrs_views_db_error(db, views_path, rc, "cannot read the parked events",
					     err);
	sqlite3_finalize(q);
	sqlite3_close(db);
	return result;
}

int64_t cqrs_views_parked_summary(const char *views_path, const cqrs_projections *ps, char *buf,
				  size_t cap, cqrs_error *err)
{
	sqlite3 *db;
	sqlite3_stmt *q;
	buf[0] = '\0';
	int rc = parked_query(views_path,
			      "SELECT projection, count(*), min(sequence) FROM parked_events"
			      " GROUP BY projection ORDER BY projection",
			      &db, &q, err);
	if (rc <= 0)
		return rc;
	int64_t total = 0;
	size_t n = 0;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		/* only the projections of this run: another job's are its own */
		const char *name = (const char *)sqlite3_column_text(q, 0);
		bool loaded = false;
		for (size_t i = 0; i < cqrs_projections_count(ps) && !loaded; i++)
			loaded = name != NULL && strcmp(cqrs_projections_name(ps, i), name) == 0;
		if (!loaded)
			continue;
		int64_t k = sqlite3_column_int64(q, 1);
		total += k;
		if (n < cap)
			n += (size_t)snprintf(buf + n, cap - n, "%s%s %lld from event %lld",
					      n ? ", " : "",
					      (const char *)sqlite3_column_text(q, 0), (long long)k,
					      (long long)sqlite3_column_int64(q, 2));
	}
	int64_t result = total;
	if (rc != SQLITE_DONE)
		result = cqrs_views_db_error(db, views_path, rc, "cannot read the parked events",
					     err);
	sqlite3_finalize(q);
	sqlite3_close(db);
	return result;
}
