/*
 * The exit code for an SQLite result code, the busy timeout and the
 * process's SQLite settings (sqlite_errors.h).
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "cqrs.h"
#include "common/sqlite_errors.h"
#include "banned.h"

#define DEFAULT_BUSY_TIMEOUT_MS 5000

int cqrs_sqlite_exit_code(int rc, bool writable)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
	case SQLITE_PROTOCOL: return CQRS_EXIT_TEMPFAIL; /* a lock that could not be taken */
	case SQLITE_IOERR:
	case SQLITE_FULL: return CQRS_EXIT_IOERR;
	case SQLITE_NOMEM: return CQRS_EXIT_OSERR;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB: return CQRS_EXIT_DATAERR;
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_AUTH: return CQRS_EXIT_NOPERM;
	case SQLITE_CANTOPEN: return writable ? CQRS_EXIT_CANTCREAT : CQRS_EXIT_NOINPUT;
	default: return CQRS_EXIT_SOFTWARE;
	}
}

int cqrs_sqlite_statement_code(int rc, int own)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
	case SQLITE_PROTOCOL:
	case SQLITE_IOERR:
	case SQLITE_FULL:
	case SQLITE_NOMEM: return cqrs_sqlite_exit_code(rc, false);
	default: return own;
	}
}

/* The errno of the last read of an SQLite file that failed in this
 * process (any thread), 0 when none did. */
static atomic_int last_read_errno;

void cqrs_sqlite_note_read_error(int e)
{
	atomic_store(&last_read_errno, e != 0 ? e : EIO);
}

/* The errno behind a failure that SQLite reports as a damaged database,
 * or 0 when it was one.  A read that failed with EIO (or ENXIO, ERANGE)
 * becomes SQLITE_CORRUPT: either SQLite kept the errno, or the VFS layer
 * that saw the read noted it. */
static int read_errno_behind(sqlite3 *db, int rc)
{
	if ((rc & 0xff) != SQLITE_CORRUPT)
		return 0;
	int e = db != NULL ? sqlite3_system_errno(db) : 0;
	if (e == EIO || e == ENXIO || e == ERANGE)
		return e;
	return atomic_load(&last_read_errno);
}

bool cqrs_sqlite_read_failed(sqlite3 *db, int rc)
{
	return read_errno_behind(db, rc) != 0;
}

/* A file SQLite could not open for want of permission (the -shm of a
 * store or views, say): SQLite says only "unable to open". */
static bool open_denied(sqlite3 *db, int rc)
{
	if ((rc & 0xff) != SQLITE_CANTOPEN || db == NULL)
		return false;
	int e = sqlite3_system_errno(db);
	return e == EACCES || e == EPERM;
}

int cqrs_sqlite_db_statement_code(sqlite3 *db, int rc, int own)
{
	return cqrs_sqlite_read_failed(db, rc) ? CQRS_EXIT_IOERR
					       : cqrs_sqlite_statement_code(rc, own);
}

int cqrs_sqlite_db_exit_code(sqlite3 *db, int rc, bool writable)
{
	if (cqrs_sqlite_read_failed(db, rc))
		return CQRS_EXIT_IOERR;
	if (open_denied(db, rc))
		return CQRS_EXIT_NOPERM;
	return cqrs_sqlite_exit_code(rc, writable);
}

const char *cqrs_sqlite_errmsg(sqlite3 *db, int rc)
{
	int e = read_errno_behind(db, rc);
	if (e != 0)
		return strerror(e);
	if (open_denied(db, rc))
		return "unable to open a file of the database: permission denied";
	/* the connection's own message, unless the failure was not its own */
	return db != NULL && sqlite3_errcode(db) != SQLITE_OK ? sqlite3_errmsg(db)
							      : sqlite3_errstr(rc);
}

long cqrs_sqlite_busy_timeout_ms(void)
{
	const char *e = getenv("CQRS_BUSY_TIMEOUT");
	int64_t v;
	if (e != NULL && cqrs_parse_int64(e, &v) == 0 && v <= INT_MAX)
		return (long)v;
	return DEFAULT_BUSY_TIMEOUT_MS;
}

static bool setup_done;

void cqrs_sqlite_setup(void)
{
	if (setup_done)
		return;
	setup_done = true;
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	sqlite3_config(SQLITE_CONFIG_LOOKASIDE, 1200, 400);
}

int cqrs_sqlite_keep_statistics(void)
{
	if (sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 1) != SQLITE_OK)
		return -1;
	setup_done = true;
	return 0;
}
