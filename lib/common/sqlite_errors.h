/*
 * What an SQLite result code means to the user of a tool, and how long a
 * lock is waited for before "busy" is the answer: one place for the event
 * store and the views file.  Internal to libcqrs.
 */
#ifndef CQRS_SQLITE_ERRORS_H
#define CQRS_SQLITE_ERRORS_H

#include <stdbool.h>

/* The exit code (enum cqrs_exit) for rc, extended codes included.  writable
 * says whether a file that cannot be opened was to be created (73) or only
 * read (66).  CQRS_EXIT_TEMPFAIL means busy: the caller says "try again". */
int cqrs_sqlite_exit_code(int rc, bool writable);

/* Milliseconds to wait for another process's lock: CQRS_BUSY_TIMEOUT when
 * it is a whole number no larger than INT_MAX, else 5000. */
long cqrs_sqlite_busy_timeout_ms(void);

#endif
