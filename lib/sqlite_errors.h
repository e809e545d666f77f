/*
 * What an SQLite result code means to the user of a tool: one mapping for
 * the event store and the views file.  Internal to libcqrs.
 */
#ifndef CQRS_SQLITE_ERRORS_H
#define CQRS_SQLITE_ERRORS_H

#include <stdbool.h>

/* The exit code (enum cqrs_exit) for rc, extended codes included.  writable
 * says whether a file that cannot be opened was to be created (73) or only
 * read (66).  CQRS_EXIT_TEMPFAIL means busy: the caller says "try again". */
int cqrs_sqlite_exit_code(int rc, bool writable);

#endif
