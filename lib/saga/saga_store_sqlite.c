/*
 * The saga runner's tables in the event store's SQLite file: instances,
 * the runner's checkpoints and circuit breakers.  The statements run on
 * the store's own connection, so that an instance's new state commits in
 * the same transaction as the events of the step that changed it.  One
 * runner at a time works on a SQLite store (it holds STORE.saga.lock):
 * there are no leases here.
 */
#include "config.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "common/sqlite_errors.h"
#include "saga/saga_impl.h"
#include "store/store_impl.h"
#include "banned.h"

enum {
	Q_INSERT,
	Q_UPDATE,
	Q_LOAD_ID,
	Q_LOAD_PREFIX,
	Q_LOAD_ROWID,
	Q_LOAD_START,
	Q_CANDIDATES,
	Q_CHECKPOINT,
	Q_SET_CHECKPOINT,
	Q_NEXT_DUE,
	Q_BREAKER_GET,
	Q_BREAKER_PUT,
	Q_COUNT
};

#define COLS                                                                                       \
	"rowid, saga_id, saga_type, coalesce(correlation_id, ''), current_step, state, status,"    \
	" attempts, revision, next_attempt_at, deadline_at, coalesce(start_sequence, 0),"          \
	" coalesce(outcome, ''), coalesce(last_error, ''), created_at, updated_at"

static const char *const sql[Q_COUNT] = {
	/* ?1-?10 are the same in Q_INSERT and Q_UPDATE: bind_instance() */
	[Q_INSERT] = "INSERT INTO saga_instances (saga_id, current_step, state, status, attempts,"
		     " next_attempt_at, deadline_at, outcome, last_error, updated_at, saga_type,"
		     " correlation_id, start_sequence, revision, created_at)"
		     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 0, ?10)"
		     " ON CONFLICT (saga_type, start_sequence) DO NOTHING",
	[Q_UPDATE] = "UPDATE saga_instances SET current_step = ?2, state = ?3, status = ?4,"
		     " attempts = ?5, revision = revision + 1, next_attempt_at = ?6,"
		     " deadline_at = ?7, outcome = ?8, last_error = ?9, updated_at = ?10"
		     " WHERE saga_id = ?1 AND revision = ?11",
	[Q_LOAD_ID] = "SELECT " COLS " FROM saga_instances WHERE saga_id = ?1",
	[Q_LOAD_PREFIX] = "SELECT " COLS " FROM saga_instances WHERE saga_id >= ?1 AND"
			  " saga_id < ?1 || 'g' LIMIT 2",
	[Q_LOAD_ROWID] = "SELECT " COLS " FROM saga_instances WHERE rowid = ?1",
	[Q_LOAD_START] = "SELECT " COLS " FROM saga_instances WHERE saga_type = ?1 AND"
			 " start_sequence = ?2",
	[Q_CANDIDATES] = "SELECT rowid FROM saga_instances WHERE status IN ('RUNNING',"
			 " 'COMPENSATING') AND rowid > ?1 AND (next_attempt_at IS NULL OR"
			 " next_attempt_at <= ?2 OR deadline_at IS NOT NULL)"
			 " ORDER BY rowid LIMIT ?3",
	[Q_CHECKPOINT] = "SELECT sequence FROM checkpoints WHERE name = ?1",
	[Q_SET_CHECKPOINT] = "INSERT INTO checkpoints (name, sequence, updated_at)"
			     " VALUES (?1, ?2, ?3) ON CONFLICT (name) DO UPDATE SET"
			     " sequence = ?2, updated_at = ?3",
	[Q_NEXT_DUE] = "SELECT min(next_attempt_at) FROM saga_instances WHERE status IN"
		       " ('RUNNING', 'COMPENSATING') AND next_attempt_at > ?1",
	[Q_BREAKER_GET] = "SELECT state, failures, opened_at FROM saga_breakers WHERE name = ?1",
	[Q_BREAKER_PUT] = "INSERT INTO saga_breakers (name, state, failures, opened_at,"
			  " updated_at) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO"
			  " UPDATE SET state = ?2, failures = ?3, opened_at = ?4, updated_at = ?5",
};

struct sqlite_saga_db {
	struct saga_db base;
	sqlite3 *db;
	sqlite3_stmt *q[Q_COUNT];
};

static const struct saga_db_ops sqlite_saga_ops;

static int db_fail(struct sqlite_saga_db *db, int rc, cqrs_error *err)
{
	return cqrs_sqlite_fail(db->db, rc, true, "saga state", err);
}

static void sq_close(struct saga_db *base)
{
	struct sqlite_saga_db *db = (struct sqlite_saga_db *)base;
	for (int i = 0; i < Q_COUNT; i++)
		sqlite3_finalize(db->q[i]);
	free(db);
}

struct saga_db *saga_db_sqlite_open(cqrs_store *st, cqrs_error *err)
{
	sqlite3 *h = cqrs_sqlite_handle(st);
	if (h == NULL)
		return NULL;
	struct sqlite_saga_db *db = calloc(1, sizeof *db);
	if (db == NULL) {
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		return NULL;
	}
	db->base.ops = &sqlite_saga_ops;
	db->db = h;
	for (int i = 0; i < Q_COUNT; i++) {
		int rc = sqlite3_prepare_v3(h, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &db->q[i],
					    NULL);
		if (rc != SQLITE_OK) {
			db_fail(db, rc, err);
			sq_close(&db->base);
			return NULL;
		}
	}
	return &db->base;
}

/* One runner at a time (the lock file): nothing to lease or release. */
static int sq_release(struct saga_db *db, cqrs_error *err)
{
	(void)db;
	(void)err;
	return 0;
}

static int sq_set_lease(struct saga_db *db, int64_t lease_us, cqrs_error *err)
{
	(void)db;
	(void)lease_us;
	(void)err;
	return 0;
}

/* A time, copied by SQLite (the text is on our stack): its result code,
 * which the caller checks, for a copy that failed (out of memory) would
 * leave the parameter NULL: a retry or deadline lost, a due instance
 * not found.  into_rc keeps the first failure of several binds. */
static int bind_time(sqlite3_stmt *q, int col, int64_t us)
{
	if (us <= 0)
		return sqlite3_bind_null(q, col);
	char t[CQRS_TIMESTAMP_LEN + 1];
	saga_time_format(us, t);
	return sqlite3_bind_text(q, col, t, -1, SQLITE_TRANSIENT);
}

static void into_rc(int *rc, int r)
{
	if (*rc == SQLITE_OK)
		*rc = r;
}

/* The caller's names and ids are bound SQLITE_STATIC: they outlive the
 * step that follows, and a copy SQLite could not make (out of memory)
 * would leave the value NULL and a read find nothing. */
static void bind_opt_text(sqlite3_stmt *q, int col, const char *s)
{
	if (s == NULL || *s == '\0')
		sqlite3_bind_null(q, col);
	else
		sqlite3_bind_text(q, col, s, -1, SQLITE_STATIC);
}

static int64_t col_time(sqlite3_stmt *q, int col)
{
	const unsigned char *t = sqlite3_column_text(q, col);
	if (t == NULL)
		return 0;
	int64_t v = saga_time_parse((const char *)t);
	return v < 0 ? 0 : v;
}

static void text_col(sqlite3_stmt *q, int col, char *buf, size_t cap)
{
	const unsigned char *t = sqlite3_column_text(q, col);
	snprintf(buf, cap, "%s", t ? (const char *)t : "");
}

static int row_to_inst(sqlite3_stmt *q, struct saga_inst *in)
{
	in->rowid = sqlite3_column_int64(q, 0);
	text_col(q, 1, in->id, sizeof in->id);
	text_col(q, 2, in->type, sizeof in->type);
	text_col(q, 3, in->corr, sizeof in->corr);
	in->step = sqlite3_column_int64(q, 4);
	cqrs_strbuf_reset(&in->state);
	const unsigned char *st = sqlite3_column_text(q, 5);
	cqrs_strbuf_put(&in->state, st ? (const char *)st : "{}",
			st ? (size_t)sqlite3_column_bytes(q, 5) : 2);
	in->status = saga_status_of((const char *)sqlite3_column_text(q, 6));
	in->attempts = sqlite3_column_int64(q, 7);
	in->revision = sqlite3_column_int64(q, 8);
	in->next_at = col_time(q, 9);
	in->deadline = col_time(q, 10);
	in->start_sequence = sqlite3_column_int64(q, 11);
	text_col(q, 12, in->outcome, sizeof in->outcome);
	text_col(q, 13, in->last_error, sizeof in->last_error);
	in->created = col_time(q, 14);
	in->updated = col_time(q, 15);
	return in->state.oom ? -1 : 0;
}

static int load_one(struct sqlite_saga_db *db, sqlite3_stmt *q, struct saga_inst *in,
		    cqrs_error *err)
{
	int rc = sqlite3_step(q);
	int found = 0;
	if (rc == SQLITE_ROW) {
		found = 1;
		if (row_to_inst(q, in) < 0)
			found = cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		else if (q == db->q[Q_LOAD_PREFIX] && sqlite3_step(q) == SQLITE_ROW)
			found = cqrs_fail(err, CQRS_EXIT_USAGE, "saga id prefix is ambiguous");
	} else if (rc != SQLITE_DONE) {
		found = db_fail(db, rc, err);
	}
	sqlite3_reset(q);
	return found;
}

static int sq_load(struct saga_db *base, const char *id, struct saga_inst *in, cqrs_error *err)
{
	struct sqlite_saga_db *db = (struct sqlite_saga_db *)base;
	bool whole = strlen(id) == 36;
	if (!whole && strlen(id) < 8)
		return 0;
	sqlite3_stmt *q = db->q[whole ? Q_LOAD_ID : Q_LOAD_PREFIX];
	sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
	return load_one(db, q, in, err);
}

static int load_by_rowid(struct saga_db *base, int64_t rowid, struct saga_inst *in,
			 cqrs_error *err);

static int sq_reload(struct saga_db *base, struct saga_inst *in, cqrs_error *err)
{
	return load_by_rowid(base, in->rowid, in, err);
}

/* now is not needed: one runner at a time (the lock file), so the
 * candidates it listed are as it left them */
static int sq_load_rowid(struct saga_db *base, int64_t rowid, int64_t now, struct saga_inst *in,
			 cqrs_error *err)
{
	(void)now;
	return load_by_rowid(base, rowid, in, err);
}

static int load_by_rowid(struct saga_db *base, int64_t rowid, struct saga_inst *in, cqrs_error *err)
{
	struct sqlite_saga_db *db = (struct sqlite_saga_db *)base;
	sqlite3_stmt *q = db->q[Q_LOAD_ROWID];
	sqlite3_bind_int64(q, 1, rowid);
	return load_one(db, q, in, err);
}

/* What an insert and an update both write: ?1-?10 of either statement. */
static int bind_instance(sqlite3_stmt *q, const struct saga_inst *in)
{
	int rc = SQLITE_OK;
	sqlite3_bind_text(q, 1, in->id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, in->step);
	sqlite3_bind_text(q, 3, cqrs_strbuf_str(&in->state), (int)in->state.len, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, saga_status_names[in->status], -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 5, in->attempts);
	into_rc(&rc, bind_time(q, 6, in->next_at));
	into_rc(&rc, bind_time(q, 7, in->deadline));
	bind_opt_text(q, 8, in->outcome);
	bind_opt_text(q, 9, in->last_error);
	into_rc(&rc, bind_time(q, 10, in->updated));
	return rc;
}

/* Runs a bound write (bound: the binds' result code; a write whose values
 * could not all be bound is not run): 1 when it changed a row, 0 when not,
 * -1 on error. */
static int write_row(struct sqlite_saga_db *db, sqlite3_stmt *q, int bound, cqrs_error *err)
{
	int rc = bound == SQLITE_OK ? sqlite3_step(q) : bound;
	sqlite3_reset(q);
	if (rc != SQLITE_DONE)
		return db_fail(db, rc, err);
	return sqlite3_changes(db->db) > 0;
}

static int sq_insert(struct saga_db *base, struct saga_inst *in, cqrs_error *err)
{
	struct sqlite_saga_db *db = (struct sqlite_saga_db *)base;
	sqlite3_stmt *q = db->q[Q_INSERT];
	int bound = bind_instance(q, in);
	sqlite3_bind_text(q, 11, in->type, -1, SQLITE_STATIC);
	bind_opt_text(q, 12, in->corr);
	sqlite3_bind_int64(q, 13, in->start_sequence);
	int r = write_row(db, q, bound, err);
	if (r == 1) {
		in->rowid = sqlite3_last_insert_rowid(db->db);
		in->revision = 0;
	}
	return r;
}

static int sq_update(struct saga_db *base, struct saga_inst *in, cqrs_error *err)
{
	struct sqlite_saga_db *db = (struct sqlite_saga_db *)base;
	sqlite3_stmt *q = db->q[Q_UPDATE];
	int bound = bind_instance(q, in);
	sqlite3_bind_int64(q, 11, in->revision);
	int r = write_row(db, q, bound, err);
	if (r == 1)
		in->revision++;
	return r;
}

static int sq_candidates(struct saga_db *base, int64_t after_rowid, int64_t now, int64_t limit,
			 int64_t *rowids, size_t *n, cqrs_error *err)
{
	struct sqlite_saga_db *db = (struct sqlite_saga_db *)base;
	sqlite3_stmt *q = db->q[Q_CANDIDATES];
	sqlite3_bind_int64(q, 1, after_rowid);
	int rc = bind_time(q, 2, now);
	sqlite3_bind_int64(q, 3, limit);
	*n = 0;
	if (rc == SQLITE_OK)
		while ((rc = sqlite3_step(q)) == SQLITE_ROW)
			rowids[(*n)++] = sqlite3_column_int64(q, 0);
	sqlite3_reset(q);
	return rc == SQLITE_DONE ? 0 : db_fail(db, rc, err);
}

static int sq_checkpoint_get(struct saga_db *base, const char *name, int64_t *seq, cqrs_error *err)
{
	struct sqlite_saga_db *db = (struct sqlite_saga_db *)base;
	sqlite3_stmt *q = db->q[Q_CHECKPOINT];
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(q);
	*seq = rc == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
	sqlite3_reset(q);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_fail(db, rc, err);
	return rc == SQLITE_ROW;
}

static int sq_load_start(struct saga_db *base, const char *type, int64_t start_sequence,
			 struct saga_inst *in, cqrs_error *err)
{
	struct sqlite_saga_db *db = (struct sqlite_saga_db *)base;
	sqlite3_stmt *q = db->q[Q_LOAD_START];
	sqlite3_bind_text(q, 1, type, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, start_sequence);
	return load_one(db, q, in, err);
}

static int sq_set_checkpoint(struct saga_db *base, const char *name, int64_t seq, int64_t now,
			     cqrs_error *err)
{
	struct sqlite_saga_db *db = (struct sqlite_saga_db *)base;
	sqlite3_stmt *q = db->q[Q_SET_CHECKPOINT];
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, seq);
	int rc = bind_time(q, 3, now);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(q);
	sqlite3_reset(q);
	return rc == SQLITE_DONE ? 0 : db_fail(db, rc, err);
}

static int64_t sq_next_due(struct saga_db *base, int64_t now, cqrs_error *err)
{
	struct sqlite_saga_db *db = (struct sqlite_saga_db *)base;
	sqlite3_stmt *q = db->q[Q_NEXT_DUE];
	int rc = bind_time(q, 1, now);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(q);
	int64_t v = rc == SQLITE_ROW ? col_time(q, 0) : 0;
	sqlite3_reset(q);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_fail(db, rc, err);
	return v;
}

static int sq_breaker_get(struct saga_db *base, const char *name, struct breaker_row *b,
			  cqrs_error *err)
{
	struct sqlite_saga_db *db = (struct sqlite_saga_db *)base;
	sqlite3_stmt *q = db->q[Q_BREAKER_GET];
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(q);
	*b = (struct breaker_row){ BREAKER_CLOSED, 0, 0 };
	if (rc == SQLITE_ROW) {
		b->state = saga_breaker_of((const char *)sqlite3_column_text(q, 0));
		b->failures = sqlite3_column_int64(q, 1);
		b->opened_at = col_time(q, 2);
	}
	sqlite3_reset(q);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_fail(db, rc, err);
	return 0;
}

static int sq_breaker_put(struct saga_db *base, const char *name, const struct breaker_row *b,
			  int64_t now, cqrs_error *err)
{
	struct sqlite_saga_db *db = (struct sqlite_saga_db *)base;
	sqlite3_stmt *q = db->q[Q_BREAKER_PUT];
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, saga_breaker_names[b->state], -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 3, b->failures);
	int rc = bind_time(q, 4, b->opened_at);
	into_rc(&rc, bind_time(q, 5, now));
	if (rc == SQLITE_OK)
		rc = sqlite3_step(q);
	sqlite3_reset(q);
	return rc == SQLITE_DONE ? 0 : db_fail(db, rc, err);
}

/* --- what saga_report.c shows ---------------------------------------------------------------- */

static const char *col(sqlite3_stmt *q, int i)
{
	const unsigned char *t = sqlite3_column_text(q, i);
	return t ? (const char *)t : "";
}

/* An active instance with no change since ?1: stuck. */
#define SAGA_STUCK "status IN ('RUNNING', 'COMPENSATING') AND updated_at < ?1"

/* Runs q (prepared, bound) to its end, calling row for each row. */
static int each_row(struct sqlite_saga_db *db, sqlite3_stmt *q,
		    void (*row)(sqlite3_stmt *q, void *fn, void *arg), void *fn, void *arg,
		    cqrs_error *err)
{
	int s;
	while ((s = sqlite3_step(q)) == SQLITE_ROW)
		row(q, fn, arg);
	int rc = s == SQLITE_DONE ? 0 : db_fail(db, s, err);
	sqlite3_finalize(q);
	return rc;
}

static sqlite3_stmt *prepare(struct sqlite_saga_db *db, const char *text, cqrs_error *err)
{
	sqlite3_stmt *q = NULL;
	int rc = sqlite3_prepare_v2(db->db, text, -1, &q, NULL);
	if (rc != SQLITE_OK) {
		db_fail(db, rc, err);
		return NULL;
	}
	return q;
}

static void counts_row(sqlite3_stmt *q, void *fn, void *arg)
{
	struct saga_type_counts c = {
		.saga_type = col(q, 0),
		.total = sqlite3_column_int64(q, 1),
		.running = sqlite3_column_int64(q, 2),
		.compensating = sqlite3_column_int64(q, 3),
		.completed = sqlite3_column_int64(q, 4),
		.failed = sqlite3_column_int64(q, 5),
		.compensated = sqlite3_column_int64(q, 6),
		.compensation_failed = sqlite3_column_int64(q, 7),
		.left_to_person = sqlite3_column_int64(q, 8),
		.cancelled = sqlite3_column_int64(q, 9),
		.stuck = sqlite3_column_int64(q, 10),
	};
	((void (*)(void *, const struct saga_type_counts *))fn)(arg, &c);
}

static int sq_counts(struct saga_db *base, const char *stuck_before,
		     void (*fn)(void *, const struct saga_type_counts *), void *arg,
		     cqrs_error *err)
{
	struct sqlite_saga_db *db = (struct sqlite_saga_db *)base;
	sqlite3_stmt *q =
		prepare(db,
			"SELECT saga_type, count(*),"
			" sum(status = 'RUNNING'), sum(status = 'COMPENSATING'),"
			" sum(status = 'COMPLETED'), sum(status = 'FAILED'),"
			" sum(outcome = 'compensated'), sum(outcome = 'compensation_failed'),"
			" sum(outcome = 'left_to_person'), sum(outcome = 'cancelled'),"
			" sum(" SAGA_STUCK ")"
			" FROM saga_instances GROUP BY saga_type ORDER BY saga_type",
			err);
	if (q == NULL)
		return -1;
	sqlite3_bind_text(q, 1, stuck_before, -1, SQLITE_STATIC);
	return each_row(db, q, counts_row, (void *)fn, arg, err);
}

static void attention_row(sqlite3_stmt *q, void *fn, void *arg)
{
	struct saga_attention a = {
		.saga_id = col(q, 0),
		.saga_type = col(q, 1),
		.status = col(q, 2),
		.step = sqlite3_column_int64(q, 3),
		.attempts = sqlite3_column_int64(q, 4),
		.updated_at = col(q, 5),
		.next_attempt_at = col(q, 6),
		.last_error = col(q, 7),
		.why = col(q, 8),
	};
	((void (*)(void *, const struct saga_attention *))fn)(arg, &a);
}

static int sq_attention(struct saga_db *base, const char *stuck_before,
			void (*fn)(void *, const struct saga_attention *), void *arg,
			cqrs_error *err)
{
	struct sqlite_saga_db *db = (struct sqlite_saga_db *)base;
	sqlite3_stmt *q =
		prepare(db,
			"SELECT saga_id, saga_type, status, current_step, attempts,"
			" updated_at, coalesce(next_attempt_at, ''), coalesce(last_error, ''),"
			" CASE WHEN status != 'FAILED' THEN 'no_progress' ELSE outcome END"
			" FROM saga_instances WHERE (" SAGA_STUCK ")"
			" OR outcome IN ('compensation_failed', 'left_to_person')"
			" ORDER BY updated_at, saga_id LIMIT 1000",
			err);
	if (q == NULL)
		return -1;
	sqlite3_bind_text(q, 1, stuck_before, -1, SQLITE_STATIC);
	return each_row(db, q, attention_row, (void *)fn, arg, err);
}

static void breaker_list_row(sqlite3_stmt *q, void *fn, void *arg)
{
	struct cqrs_saga_breaker b = {
		.name = col(q, 0),
		.state = col(q, 1),
		.failures = sqlite3_column_int64(q, 2),
		.opened_at = col(q, 3),
	};
	/* half open lets one probe through: still not closed */
	b.open = strcmp(b.state, "closed") != 0;
	((void (*)(void *, const struct cqrs_saga_breaker *))fn)(arg, &b);
}

static int sq_breakers(struct saga_db *base, void (*fn)(void *, const struct cqrs_saga_breaker *),
		       void *arg, cqrs_error *err)
{
	struct sqlite_saga_db *db = (struct sqlite_saga_db *)base;
	sqlite3_stmt *q = prepare(db,
				  "SELECT name, state, failures, coalesce(opened_at, '')"
				  " FROM saga_breakers ORDER BY name",
				  err);
	if (q == NULL)
		return -1;
	return each_row(db, q, breaker_list_row, (void *)fn, arg, err);
}

static int sq_read_begin(struct saga_db *base, cqrs_error *err)
{
	struct sqlite_saga_db *db = (struct sqlite_saga_db *)base;
	int rc = sqlite3_exec(db->db, "BEGIN", NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : db_fail(db, rc, err);
}

static void sq_read_end(struct saga_db *base)
{
	struct sqlite_saga_db *db = (struct sqlite_saga_db *)base;
	sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL);
}

static const struct saga_db_ops sqlite_saga_ops = {
	.close = sq_close,
	.set_lease = sq_set_lease,
	.release = sq_release,
	.insert = sq_insert,
	.update = sq_update,
	.load = sq_load,
	.reload = sq_reload,
	.candidates = sq_candidates,
	.load_rowid = sq_load_rowid,
	.checkpoint_get = sq_checkpoint_get,
	.load_start = sq_load_start,
	.set_checkpoint = sq_set_checkpoint,
	.next_due = sq_next_due,
	.breaker_get = sq_breaker_get,
	.breaker_put = sq_breaker_put,
	.counts = sq_counts,
	.attention = sq_attention,
	.breakers = sq_breakers,
	.read_begin = sq_read_begin,
	.read_end = sq_read_end,
};
