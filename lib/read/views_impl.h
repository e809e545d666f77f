/*
 * What the read-side files of libcqrs share (projection.c, projector.c,
 * views.c, query.c, rows.c, sqlfunc.c) and the tools do not see.
 */
#ifndef CQRS_VIEWS_IMPL_H
#define CQRS_VIEWS_IMPL_H

#include <sqlite3.h>
#include <stdatomic.h>

#include "cqrs.h"

#define VIEWS_APPLICATION_ID 0x43515256 /* "CQRV": not the store's "CQRS" */
#define VIEWS_SCHEMA_VERSION 2		/* 2: parked_events */

/* What a parameter such as :data.items or :sequence is bound from. */
enum cqrs_param_root {
	PARAM_SEQUENCE,
	PARAM_EVENT_ID,
	PARAM_AGGREGATE_ID,
	PARAM_AGGREGATE_TYPE,
	PARAM_AGGREGATE_VERSION,
	PARAM_EVENT_TYPE,
	PARAM_EVENT_VERSION,
	PARAM_TIMESTAMP,
	PARAM_DATA,
	PARAM_METADATA,
	PARAM_ROOT_COUNT
};

struct cqrs_param {
	char *name; /* as written, without the ':' */
	enum cqrs_param_root root;
	char **path; /* data.a.b -> {"a", "b"} */
	size_t npath;
};

/* One SQL statement of a projection file. */
struct cqrs_sql {
	char *sql;	  /* as rewritten: ?N for the N-th distinct parameter */
	const char *file; /* owned by the projection set */
	int line, column; /* where the statement's text starts */
	bool literal;	  /* a block scalar: newlines in sql count lines */
	bool plain;	  /* written without quotes: offsets are columns */
	size_t *params;	  /* global parameter index of ?1, ?2, ... */
	size_t nparams;
};

struct cqrs_handler {
	char *event_type; /* "*": every event */
	int line;
	struct cqrs_sql *sql;
	size_t nsql;
};

struct cqrs_projection {
	char *name;
	const char *file;
	int line;
	struct cqrs_sql *tables;
	size_t ntables;
	struct cqrs_handler *on;
	size_t non;
	char **owned; /* the tables its DDL creates, found by cqrs_projections_check */
	size_t nowned;
	char **views; /* the SQL views its DDL creates */
	size_t nviews;
	const struct cqrs_projections *set; /* the set it belongs to (for its sandbox) */
	char hash[65];			    /* of its definition: a changed one needs a rebuild */
};

struct cqrs_projections {
	char **files;
	size_t nfiles;
	struct cqrs_projection *p;
	size_t n;
	struct cqrs_param *params; /* distinct parameters of all statements */
	size_t nparams;
	bool checked;
};

/* Line of a byte offset in a statement (for SQLite's error offsets). */
int cqrs_sql_line(const struct cqrs_sql *s, int offset);
/* "FILE:LINE:COLUMN" of a byte offset in the statement's rewritten SQL
 * (SQLite's error offset; -1: its start): the line, and the column where
 * that line's text starts. */
void cqrs_sql_where(const struct cqrs_sql *s, int offset, char *buf, size_t cap);
/* Creates the projection's tables and indexes on db. */
int cqrs_projection_create(sqlite3 *db, const struct cqrs_projection *p, cqrs_error *err);
/* Prepares one event statement, refusing anything but data changes and
 * reads; *err names the file and line. */
int cqrs_projection_prepare(sqlite3 *db, const struct cqrs_projection *p,
			    const struct cqrs_handler *h, const struct cqrs_sql *s,
			    sqlite3_stmt **out, cqrs_error *err);

/* A projector on a database in memory with only the projection that
 * creates table, for the events of one aggregate (query.c). */
cqrs_projector *cqrs_projector_open_memory(cqrs_projections *ps, const char *table,
					   cqrs_error *err);
sqlite3 *cqrs_projector_db(cqrs_projector *p);
/* Only the projections keep[i] (i: their place in the set) go into the
 * file: the others are not created, registered nor applied (one task of
 * a parallel build). */
void cqrs_projector_only(cqrs_projector *p, const bool *keep);
/* Adds each applied event to *counter (another thread shows progress). */
void cqrs_projector_count_into(cqrs_projector *p, _Atomic int64_t *counter);
/* A parallel build's tasks apply the events one thread reads and checks
 * for them all (rebuild.c).  fed_begin: what cqrs_projector_catch_up
 * would apply up to (0: nothing, -1: err); fed_apply: one event of the
 * feed, its hash already checked (cqrs_event_check_hash): 0, -1, or 1
 * when the transaction was rolled back to be applied again event by event
 * (the rest of the feed is of no use then: fed_end reads it from st);
 * fed_end: the last commit, and the parked events that apply again. */
int64_t cqrs_projector_fed_begin(cqrs_projector *p, cqrs_store *st, int64_t to, const char *until,
				 cqrs_error *err);
int cqrs_projector_fed_apply(cqrs_projector *p, const cqrs_event *ev, cqrs_error *err);
int cqrs_projector_fed_end(cqrs_projector *p, cqrs_store *st, cqrs_error *err);
/* No feed for p after all (no thread): fed_end reads the events itself. */
void cqrs_projector_fed_skip(cqrs_projector *p);
/* Recomputes the hash of ev's stored form chained from prev: 0, or -1
 * (65, "changed after it was appended") when it is not ev's. */
int cqrs_event_check_hash(const cqrs_event *ev, const uint8_t prev[CQRS_HASH_LEN], cqrs_error *err);
/* Commits, and in a scratch file creates the indexes left for the end. */
int cqrs_projector_finish(cqrs_projector *p, cqrs_error *err);

/* Prints the rows of st; money and json name the columns printed as JSON
 * numbers and JSON values.  Returns the number of rows or -1. */
int64_t cqrs_rows_print(sqlite3_stmt *st, const char *const *money, const char *const *json,
			enum cqrs_format fmt, FILE *out, const char *what, cqrs_error *err);

/* minor_units(), money(), mean_minor() (sqlfunc.c) */
int cqrs_sql_register_functions(sqlite3 *db);

/* The views file (views.c). */
enum views_open {
	VIEWS_OPEN_READ,    /* must exist; read-only connection, query_only */
	VIEWS_OPEN_WRITE,   /* created on first use; WAL */
	VIEWS_OPEN_SCRATCH, /* must not exist: built by one process, no journal */
};
int cqrs_views_db_open(const char *path, enum views_open how, sqlite3 **out, cqrs_error *err);
/* A time limit on what a connection runs: between cqrs_deadline_start and
 * cqrs_deadline_stop, a statement that runs past timeout_ms fails with
 * SQLITE_INTERRUPT and expired is set (0 ms: no limit).  Outside them
 * (attached, not started; stopped) nothing is limited: the limit is that
 * of one event's statements, or one query's, not of what follows them
 * (a commit, the deferred indexes of a rebuild). */
struct cqrs_deadline {
	int64_t timeout_ms;
	int64_t at_ns;
	bool expired;
};
void cqrs_deadline_attach(sqlite3 *db, struct cqrs_deadline *d);
void cqrs_deadline_start(struct cqrs_deadline *d);
void cqrs_deadline_stop(struct cqrs_deadline *d);
/* The largest string or blob a query may build (SQLITE_LIMIT_LENGTH). */
#define CQRS_QUERY_MAX_LENGTH (64 * 1024 * 1024)

/* Defensive mode, untrusted schema, no fts3_tokenizer pointers, no
 * extensions: for every connection to a views file (after its pragmas). */
void cqrs_views_harden(sqlite3 *db);
/* The page size of scratch files opened from now on (0: SQLite's). */
void cqrs_views_set_scratch_page_size(int bytes);
/* cqrs-project's own tables (cqrs_checkpoints, parked_events) */
const char *cqrs_views_meta_schema(void);
int cqrs_views_db_error(sqlite3 *db, const char *path, int rc, const char *what, cqrs_error *err);

#endif
