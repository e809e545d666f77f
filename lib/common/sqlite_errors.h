/*
 * What an SQLite result code means to the user of a tool, and how long a
 * lock is waited for before "busy" is the answer: one place for the event
 * store and the views file.  Internal to libcqrs.
 */
#ifndef CQRS_SQLITE_ERRORS_H
#define CQRS_SQLITE_ERRORS_H

#include <sqlite3.h>
#include <stdbool.h>

/* The exit code (enum cqrs_exit) for rc, extended codes included.  writable
 * says whether a file that cannot be opened was to be created (73) or only
 * read (66).  CQRS_EXIT_TEMPFAIL means busy: the caller says "try again". */
int cqrs_sqlite_exit_code(int rc, bool writable);

/* A statement that SQLite refused or stopped: the environment's code when
 * the failure was the environment's (a lock 75, the disk 74, memory 71),
 * else own, the code of the statement's or its input's fault. */
int cqrs_sqlite_statement_code(int rc, int own);

/* The same for a failure of connection db: a read that failed with EIO,
 * which SQLite reports as a damaged database, is 74 (an I/O error), and
 * cqrs_sqlite_errmsg() then says so instead of "database disk image is
 * malformed". */
bool cqrs_sqlite_read_failed(sqlite3 *db, int rc);
/* cqrs_sqlite_statement_code for a statement of connection db, which
 * also knows a failed read (74) that SQLite reported as damage. */
int cqrs_sqlite_db_statement_code(sqlite3 *db, int rc, int own);
/* The VFS layers that see SQLite's reads (lib/store/vfs_guard.c) note a
 * read that failed here, for cqrs_sqlite_read_failed: SQLite keeps no
 * errno when it turns the failure into SQLITE_CORRUPT. */
void cqrs_sqlite_note_read_error(int e);
int cqrs_sqlite_db_exit_code(sqlite3 *db, int rc, bool writable);
const char *cqrs_sqlite_errmsg(sqlite3 *db, int rc);

/* Milliseconds to wait for another process's lock: CQRS_BUSY_TIMEOUT when
 * it is a whole number no larger than INT_MAX, else 5000. */
long cqrs_sqlite_busy_timeout_ms(void);

/* The process's SQLite settings, before its first connection: no memory
 * statistics (without them SQLite takes no global lock at each
 * allocation, and a writer or a rebuild makes millions) and a larger
 * lookaside per connection.  Once SQLite is in use it is too late, and
 * this does nothing, harmlessly.  Called by every open of a store or a
 * views file. */
void cqrs_sqlite_setup(void);
/* Keeps SQLite's memory statistics, which a heap limit needs: instead of
 * cqrs_sqlite_setup, before anything opens a database; -1 when too late. */
int cqrs_sqlite_keep_statistics(void);

#endif
