/*
 * The exit code for an SQLite result code, and the busy timeout
 * (sqlite_errors.h).
 */
#include "config.h"

#include <limits.h>
#include <sqlite3.h>
#include <stdlib.h>

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

long cqrs_sqlite_busy_timeout_ms(void)
{
	const char *e = getenv("CQRS_BUSY_TIMEOUT");
	int64_t v;
	if (e != NULL && cqrs_parse_int64(e, &v) == 0 && v <= INT_MAX)
		return (long)v;
	return DEFAULT_BUSY_TIMEOUT_MS;
}
