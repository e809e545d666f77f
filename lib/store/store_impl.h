/*
 * The narrow interface between the store facade (store.c) and a backend.
 * A second backend (PostgreSQL) is a new file that fills in these
 * operations; the tools do not change.
 */
#ifndef CQRS_STORE_IMPL_H
#define CQRS_STORE_IMPL_H

#include <sqlite3.h>

#include "common/strbuf.h"
#include "store/decode.h"
#include "cqrs.h"

struct cqrs_store_ops {
	void (*close)(cqrs_store *st);
	void (*set_durability)(cqrs_store *st, enum cqrs_durability d);
	int (*begin)(cqrs_store *st, cqrs_error *err);
	int (*append)(cqrs_store *st, cqrs_event *ev, cqrs_error *err);
	/* Optional (NULL: each event goes to the server by append alone): a
	 * window of events appended together.  window_open sees them first
	 * (to look up what they need at once); then each goes through the
	 * facade and append, which may only buffer its row; window_close
	 * writes the rows buffered (or starts to: its outcome may come with
	 * the next statement), then forgets the window.  0, or -1 with *err
	 * (the transaction is then rolled back); window_open's -2: the
	 * failure is an earlier window's write. */
	int (*window_open)(cqrs_store *st, const cqrs_event *evs, size_t n, cqrs_error *err);
	int (*window_close)(cqrs_store *st, cqrs_error *err);
	/* Optional (NULL: begin takes the write lock, as SQLite's BEGIN
	 * IMMEDIATE does): the append lock taken now, in the transaction,
	 * for a decision that reads aggregates it does not write. */
	int (*lock)(cqrs_store *st, cqrs_error *err);
	int (*commit)(cqrs_store *st, cqrs_error *err);
	void (*rollback)(cqrs_store *st);
	int64_t (*aggregate_version)(cqrs_store *st, const uint8_t id[CQRS_UUID_LEN],
				     cqrs_error *err);
	int64_t (*last_sequence)(cqrs_store *st, cqrs_error *err);
	cqrs_cursor *(*read)(cqrs_store *st, const cqrs_filter *f, cqrs_error *err);
	int (*cursor_next)(cqrs_cursor *c, cqrs_event *ev, cqrs_error *err);
	void (*cursor_close)(cqrs_cursor *c);
	int (*snapshot_load)(cqrs_store *st, const uint8_t id[CQRS_UUID_LEN], int64_t *version,
			     char **state, cqrs_error *err);
	int (*snapshot_save)(cqrs_store *st, const uint8_t id[CQRS_UUID_LEN], const char *type,
			     int64_t version, const char *state, cqrs_error *err);
	int (*processed_get)(cqrs_store *st, const char *message_id, char **result,
			     cqrs_error *err);
	int (*processed_put)(cqrs_store *st, const char *message_id, const char *handler,
			     const char *result, cqrs_error *err);
	int64_t (*counter_next)(cqrs_store *st, const char *name, cqrs_error *err);
	int64_t (*counter_set)(cqrs_store *st, const char *name, int64_t value, cqrs_error *err);
	/* relay ops (issue 14): cqrs_store_counters_each */
	int (*counters_each)(cqrs_store *st, const char *prefix, cqrs_counter_fn *fn, void *arg,
			     cqrs_error *err);
	int (*wait)(cqrs_store *st, int timeout_ms, const int *fds, int nfds, cqrs_error *err);
	/* The last event's sequence (0: none) and hash: 0, or -1 with *err. */
	int (*head)(cqrs_store *st, int64_t *sequence, uint8_t hash[CQRS_HASH_LEN],
		    cqrs_error *err);
	/* For --verify: every event in order, and a check of what the row
	 * stores beside the hashed fields (the correlation columns) against
	 * the hashed fields; 0, or -1 with *err saying what differs. */
	cqrs_cursor *(*verify_read)(cqrs_store *st, cqrs_error *err);
	int (*verify_row)(cqrs_cursor *c, const cqrs_event *ev, cqrs_error *err);
};

/* Every backend's store and cursor start with these.  The backend
 * allocates the store zeroed; the facade (store.c) owns the fields after
 * ops, and frees what they hold before the backend's close. */
struct cqrs_store {
	const struct cqrs_store_ops *ops;
	char *witness; /* STORE.witness; NULL for a reader */
	bool durable;  /* commits are synced: the witness follows them */
	bool appended; /* the open transaction appended events */
	char *meta;    /* metadata of the last new event, with os_user */
	size_t meta_cap;
	/* events the open transaction appended: cqrs_events_appended_total */
	int64_t nappended;
	enum cqrs_event_form form; /* what cursors give: stored or current */
	struct cqrs_decoder decoders[CQRS_DECODE_STAGES];
	/* erasure (store_shred.c): the personal fields declared in the store,
	 * read again in each write transaction; NULL until the first append */
	struct cqrs_shred *shred;
	/* what cqrs_store_decode wrote, per stage */
	struct cqrs_strbuf decoded[CQRS_DECODE_STAGES];
	struct cqrs_archive_cache *archive; /* store_archive.c's statements */
};

/* The facade owns scratch (the decoded bytes of the cursor's last event)
 * and frees it before the backend's cursor_close. */
struct cqrs_cursor {
	cqrs_store *store;
	struct cqrs_strbuf scratch[CQRS_DECODE_STAGES];
	/* a cursor of the facade's own (store_archive.c: archive segments,
	 * then the store); NULL: the backend's cursor_next and cursor_close */
	int (*next)(cqrs_cursor *c, cqrs_event *ev, cqrs_error *err);
	void (*close)(cqrs_cursor *c);
};

/* --- archive segments (store_archive.c) ----------------------------------
 * Reads that reach events moved into archive segments: 1 with *out, a
 * cursor over the segments and then the store; 0 when the store alone
 * holds every event f can match; -1 with *err. */
int cqrs_archive_read(cqrs_store *st, const cqrs_filter *f, cqrs_cursor **out, cqrs_error *err);
/* The segments' part of cqrs_store_verify: v->checked and v->hash move
 * over every archived event, or v->bad and v->why say where it broke. */
int cqrs_archive_verify(cqrs_store *st, cqrs_verify *v, cqrs_error *err);
/* An event whose id was archived: CQRS_DUPLICATE (ev becomes the archived
 * one, its payload pointers kept) when it is the same event, 0 when the id
 * was not archived, -1 with *err (65: other content under that id). */
int cqrs_archive_duplicate(cqrs_store *st, cqrs_event *ev, cqrs_error *err);
void cqrs_archive_cache_free(cqrs_store *st);
/* The tables where the store records its archive (schema 5), as an SQL
 * list.  An NDJSON backup carries every event, archived ones included,
 * and not these: what it restores is a whole, unarchived store. */
#define CQRS_ARCHIVE_TABLES                                                                        \
	"'archive_segments', 'archived_events', 'archived_versions', 'archive_in_progress'"
bool cqrs_archive_table(const char *name);

/* A backend's wait (ops->wait): polls own (the backend's descriptor) and
 * the caller's fds for up to timeout_ms.  0 on timeout, 1 when own is
 * readable, 2 when a caller's fd is (or a signal interrupted), -1 with
 * *err. */
int cqrs_store_poll(int own, const int *fds, int nfds, int timeout_ms, cqrs_error *err);

/* The name of the fsync-guard VFS (vfs_guard.c), registered on first use. */
const char *cqrs_sqlite_guard_vfs(bool enabled);

/* Fails err for rc on connection db as "what: reason": a read that failed
 * (cqrs_sqlite_read_failed) is 74 "a read failed", else
 * the code and message of common/sqlite_errors.h.  Returns -1. */
int cqrs_sqlite_fail(sqlite3 *db, int rc, bool writable, const char *what, cqrs_error *err);

/* The multi-user rules (store_trust.c): the guard refuses store files
 * that break them, as a writer sees them once the process opened a store
 * for writing.  A refusal makes SQLite fail with "unable to open"; the
 * reason is kept for the caller, which takes it (and clears it) here. */
void cqrs_sqlite_guard_policy(bool writer);
bool cqrs_sqlite_guard_refused(cqrs_error *err);

/* store_trust.c: 0, or -1 with *err (77) saying who could have changed
 * the file open on fd, or a directory from / down to path's. */
#include <sys/types.h>
int cqrs_trust_fd(int fd, const char *path, bool writer, cqrs_error *err);
int cqrs_trust_dirs(const char *path, bool writer, cqrs_error *err);
/* A user's login name, or the uid in decimal when it has none. */
const char *cqrs_user_name(uid_t uid, char *buf, size_t cap);

/* store_witness.c: compare the store with STORE.witness (no witness: 0),
 * and move the witness to an event (forward only, unless force). */
int cqrs_witness_check(cqrs_store *st, const char *store_path, const char *wpath, bool writer,
		       cqrs_error *err);
int cqrs_witness_update(const char *wpath, int64_t seq, const uint8_t hash[CQRS_HASH_LEN],
			bool force, cqrs_error *err);

/* n bytes from getrandom(2) (signed_head.c): 0, or -1 with *err (71). */
int cqrs_random_bytes(uint8_t *buf, size_t n, cqrs_error *err);

/* --- appending (store_append.c, issue 13: one set of rules, two backends)
 * A backend calls cqrs_append_event under its write lock, with the store's
 * head and the aggregate's version, and passes what only it can do. */
struct cqrs_append_backend {
	void *backend;
	/* the aggregate's version as stored (0: none), or -1 with *err */
	int64_t (*stored_version)(void *backend, const uint8_t id[CQRS_UUID_LEN], cqrs_error *err);
	/* ev's event_id is stored: 1 when it is the same event (ev becomes
	 * the stored one through cqrs_append_take_stored), 0 when the id is
	 * not stored, -1 with *err (65: other content under that id). */
	int (*find_stored)(void *backend, cqrs_event *ev, cqrs_error *err);
	/* Writes ev's row; *inserted false when its event_id was there. */
	int (*insert)(void *backend, const cqrs_event *ev, bool *inserted, cqrs_error *err);
};
/* The last event: what the next one's sequence and hash follow. */
struct cqrs_append_head {
	int64_t sequence; /* 0: none */
	uint8_t hash[CQRS_HASH_LEN];
};
/* The versions of the aggregates the write transaction appended to, so
 * that each is read from the store once (under the write lock no one else
 * appends): open addressing on the id.  A cache, not the truth: at its
 * size limit it starts over.  Zeroed: empty. */
struct cqrs_version_slot {
	uint8_t id[CQRS_UUID_LEN];
	int64_t version; /* 0: empty slot */
};
struct cqrs_versions {
	struct cqrs_version_slot *slots;
	size_t n, cap;
};
/* The version of aggregate id the transaction gave it: 1 with *version,
 * 0 when it is not cached. */
int cqrs_versions_get(struct cqrs_versions *v, const uint8_t id[CQRS_UUID_LEN], int64_t *version);
/* at each transaction's start and end */
void cqrs_versions_forget(struct cqrs_versions *v);
void cqrs_versions_free(struct cqrs_versions *v);
/* Checks ev's expected version against its aggregate's (cached in
 * versions, else b->stored_version), fills in event id, timestamp,
 * sequence, aggregate_version and hash, inserts it and moves head and
 * versions: CQRS_APPENDED, CQRS_DUPLICATE (a retry of a stored event), or
 * -1 with *err (3: a version conflict; 65: an edited replay). */
int cqrs_append_event(const struct cqrs_append_backend *b, struct cqrs_versions *versions,
		      struct cqrs_append_head *head, cqrs_event *ev, cqrs_error *err);
/* For find_stored: 1 with ev the stored event (its payload pointers
 * kept: the stored row's bytes go with the row), or -1 with *err when
 * stored holds other content than ev under the same event_id. */
int cqrs_append_take_stored(const cqrs_event *stored, cqrs_event *ev, cqrs_error *err);
/* The head the next event chains from must be what its hash says, or an
 * edit of it would be sealed under the new event's hash: 0, or -1 with
 * *err (65) naming store_name and the head's sequence.  prev_sequence and
 * prev_hash are the event before the head's (0 and zeros: none);
 * well_formed false when a stored hash had the wrong size. */
int cqrs_append_check_head(const char *store_name, const cqrs_event *head,
			   const uint8_t prev_hash[CQRS_HASH_LEN], int64_t prev_sequence,
			   bool well_formed, cqrs_error *err);

cqrs_store *cqrs_sqlite_open(const char *path, enum cqrs_open_mode mode, cqrs_error *err);
/* store_pg.c (issue 13, PostgreSQL): path is postgres://..., postgresql://...
 * or postgresql: and a libpq connection string. */
cqrs_store *cqrs_pg_open(const char *path, enum cqrs_open_mode mode, cqrs_error *err);
/* The SQLite connection of an embedded store, NULL for another backend:
 * for saga_store.c, whose tables share the store's transactions. */
struct sqlite3 *cqrs_sqlite_handle(cqrs_store *st);
/* The same for a PostgreSQL store (issue 13, sagas): its connection (a
 * PGconn), NULL for another backend; and its errors as the store words
 * them ("store: what: reason", the exit code by SQLSTATE), res cleared:
 * -1. */
struct pg_conn;
struct pg_result;
struct pg_conn *cqrs_pg_handle(cqrs_store *st);
int cqrs_pg_fail(cqrs_store *st, struct pg_result *res, const char *what, cqrs_error *err);

/* --- operations on a PostgreSQL store (issue 13: cqrs-health, cqrs-backup)
 * store_pg.c.  cqrs_pg_is says whether st is one; the others expect one. */
bool cqrs_pg_is(const cqrs_store *st);
/* The store as messages name it: host, database, user, schema; never a
 * password. */
const char *cqrs_pg_name(const cqrs_store *st);
/* What cqrs-health judges: schema version, the tables and the append-only
 * triggers there, sequences 1..count, sizes.  0, or -1 with *err. */
int cqrs_pg_facts(cqrs_store *st, struct cqrs_store_facts *f, cqrs_error *err);
/* A read-only transaction over one moment of the store (REPEATABLE READ),
 * which the store's cursors then read in: begin true starts it, false
 * ends it.  0, or -1 with *err. */
int cqrs_pg_read_moment(cqrs_store *st, bool begin, cqrs_error *err);
/* The tables both backends keep with the same columns, which a backup
 * carries across: their rows go between the backends as text (at most
 * CQRS_PORTABLE_COLUMNS columns a row). */
#define CQRS_PORTABLE_TABLES                                                                       \
	"checkpoints", "counters", "processed_messages", "saga_breakers", "saga_instances"
#define CQRS_PORTABLE_COLUMNS 15
/* Each row of table (a portable one) in its key's order: row(arg, n,
 * names, values, numeric) with values[i] NULL for SQL NULL and numeric[i]
 * true for an integer column; a row that returns -1 stops it.  0, or -1
 * with *err. */
typedef int (*cqrs_pg_row_fn)(void *arg, int n, const char *const *names, const char *const *values,
			      const bool *numeric, cqrs_error *err);
int cqrs_pg_table_rows(cqrs_store *st, const char *table, cqrs_pg_row_fn row, void *arg,
		       cqrs_error *err);
/* In the open write transaction: empties table, or inserts one row of it
 * (values as text, NULL for SQL NULL).  0, or -1 with *err. */
int cqrs_pg_clear_table(cqrs_store *st, const char *table, cqrs_error *err);
int cqrs_pg_insert_row(cqrs_store *st, const char *table, int n, const char *const *names,
		       const char *const *values, cqrs_error *err);

#endif
