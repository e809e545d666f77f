/*
 * The exit code for an SQLite result code, and the busy timeout
 * (sqlite_errors.h).
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
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

/* SQLite reports a read that failed with EIO (or ENXIO, ERANGE) as a
 * damaged database (SQLITE_IOERR_CORRUPTFS becomes SQLITE_CORRUPT): the
 * errno it kept tells that case apart. */
bool cqrs_sqlite_read_failed(sqlite3 *db, int rc)
{
	if ((rc & 0xff) != SQLITE_CORRUPT || db == NULL)
		return false;
	int e = sqlite3_system_errno(db);
	return e == EIO || e == ENXIO || e == ERANGE;
}

int cqrs_sqlite_db_exit_code(sqlite3 *db, int rc, bool writable)
{
	return cqrs_sqlite_read_failed(db, rc) ? CQRS_EXIT_IOERR
					       : cqrs_sqlite_exit_code(rc, writable);
}

const char *cqrs_sqlite_errmsg(sqlite3 *db, int rc)
{
	if (cqrs_sqlite_read_failed(db, rc))
		return strerror(sqlite3_system_errno(db));
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
