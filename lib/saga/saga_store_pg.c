/*
 * The saga runner's tables in a PostgreSQL store's schema (store_pg.c
 * creates them): the same rows as saga_store_sqlite.c, run on the store's
 * own connection so that an instance's new state commits in the same
 * transaction as its step's events.
 *
 * Several runners (on several hosts) share the instances.  A runner holds
 * an instance it works on by a lease in its row: lease_owner (this
 * runner: "host:pid:random") until lease_until, by the server's clock.
 * It takes the lease when it loads the instance from its candidates
 * (UPDATE ... WHERE rowid = (SELECT ... FOR UPDATE SKIP LOCKED): a row
 * another runner's transaction holds is skipped, not waited for), renews
 * it before and after a step program runs, and gives it up when it saves
 * the instance.  A save checks the revision (as on SQLite) and that no
 * other runner's lease is live, so a step is applied once; a program runs
 * only under a live lease, which is longer than its timeout, so it never
 * runs twice at once.  A runner that dies leaves its leases to run out:
 * then the others take its instances.  Checkpoints are locked while read,
 * so that one runner at a time starts instances from events.
 */
#include "config.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "saga/saga_impl.h"
#include "store/pg_lib.h"
#include "store/store_impl.h"
#include "banned.h"

#define DEFAULT_LEASE_US (300LL * 1000000)

struct pg_saga_db {
	struct saga_db base;
	const struct cqrs_pq *pq;
	PGconn *conn;
	char owner[128];   /* this runner, as lease_owner */
	char lease_us[24]; /* the lease's length, as a parameter */
};

static const struct saga_db_ops pg_saga_ops;

#define COLS                                                                                       \
	"rowid, saga_id, saga_type, coalesce(correlation_id, ''), current_step, state, status,"    \
	" attempts, revision, next_attempt_at, deadline_at, coalesce(start_sequence, 0),"          \
	" coalesce(outcome, ''), coalesce(last_error, ''), created_at, updated_at"

/* A lease this runner may take: none, its own, or one that ran out. */
#define LEASE_FREE "(lease_owner IS NULL OR lease_owner = $2 OR lease_until <= clock_timestamp())"
/* Only an instance with work left is held: a finished one needs no runner. */
#define ACTIVE "status IN ('RUNNING', 'COMPENSATING')"
#define TAKE_LEASE                                                                                 \
	"lease_owner = $2, lease_until = clock_timestamp() + $3::bigint * interval '1 "            \
	"microsecond'"

/* Runs sql with text parameters (NULL: SQL NULL): the result when its
 * status is want, else NULL with *err. */
static PGresult *run(struct pg_saga_db *db, const char *sql, int n, const char *const *v,
		     ExecStatusType want, cqrs_error *err)
{
	PGresult *res = db->pq->exec_params(db->conn, sql, n, NULL, v, NULL, NULL, 0);
	if (res != NULL && db->pq->result_status(res) == want)
		return res;
	cqrs_pg_fail(db->base.st, res, "saga state", err);
	return NULL;
}

static int command(struct pg_saga_db *db, const char *sql, int n, const char *const *v,
		   cqrs_error *err)
{
	PGresult *res = run(db, sql, n, v, PGRES_COMMAND_OK, err);
	if (res == NULL)
		return -1;
	db->pq->clear(res);
	return 0;
}

struct saga_db *saga_db_pg_open(cqrs_store *st, cqrs_error *err)
{
	PGconn *conn = cqrs_pg_handle(st);
	if (conn == NULL)
		return NULL;
	const struct cqrs_pq *pq = cqrs_pq_load(err);
	if (pq == NULL)
		return NULL;
	struct pg_saga_db *db = calloc(1, sizeof *db);
	if (db == NULL) {
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		return NULL;
	}
	db->base.ops = &pg_saga_ops;
	db->base.st = st;
	db->pq = pq;
	db->conn = conn;
	char host[64] = "";
	if (gethostname(host, sizeof host) < 0)
		snprintf(host, sizeof host, "unknown");
	host[sizeof host - 1] = '\0';
	uint8_t rnd[4];
	if (cqrs_random_bytes(rnd, sizeof rnd, err) < 0) {
		free(db);
		return NULL;
	}
	snprintf(db->owner, sizeof db->owner, "%s:%ld:%02x%02x%02x%02x", host, (long)getpid(),
		 rnd[0], rnd[1], rnd[2], rnd[3]);
	snprintf(db->lease_us, sizeof db->lease_us, "%lld", (long long)DEFAULT_LEASE_US);
	return &db->base;
}

static void pg_close(struct saga_db *base)
{
	free(base);
}

static int pg_set_lease(struct saga_db *base, int64_t lease_us, cqrs_error *err)
{
	struct pg_saga_db *db = (struct pg_saga_db *)base;
	(void)err;
	snprintf(db->lease_us, sizeof db->lease_us, "%lld",
		 (long long)(lease_us > 0 ? lease_us : DEFAULT_LEASE_US));
	return 0;
}

static int pg_release(struct saga_db *base, cqrs_error *err)
{
	struct pg_saga_db *db = (struct pg_saga_db *)base;
	const char *v[1] = { db->owner };
	return command(db,
		       "UPDATE saga_instances SET lease_owner = NULL, lease_until = NULL"
		       " WHERE lease_owner = $1",
		       1, v, err);
}

/* --- values ----------------------------------------------------------------------------------- */

static void time_text(int64_t us, char out[CQRS_TIMESTAMP_LEN + 1], const char **param)
{
	if (us <= 0) {
		*param = NULL;
		return;
	}
	saga_time_format(us, out);
	*param = out;
}

static int64_t int_at(struct pg_saga_db *db, PGresult *r, int row, int col)
{
	int64_t v = 0;
	if (!db->pq->getisnull(r, row, col))
		cqrs_parse_int64(db->pq->getvalue(r, row, col), &v);
	return v;
}

static int64_t time_at(struct pg_saga_db *db, PGresult *r, int row, int col)
{
	if (db->pq->getisnull(r, row, col))
		return 0;
	int64_t v = saga_time_parse(db->pq->getvalue(r, row, col));
	return v < 0 ? 0 : v;
}

static void text_at(struct pg_saga_db *db, PGresult *r, int row, int col, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s", db->pq->getvalue(r, row, col));
}

static int row_to_inst(struct pg_saga_db *db, PGresult *r, int row, struct saga_inst *in)
{
	in->rowid = int_at(db, r, row, 0);
	text_at(db, r, row, 1, in->id, sizeof in->id);
	text_at(db, r, row, 2, in->type, sizeof in->type);
	text_at(db, r, row, 3, in->corr, sizeof in->corr);
	in->step = int_at(db, r, row, 4);
	cqrs_strbuf_reset(&in->state);
	cqrs_strbuf_put(&in->state, db->pq->getvalue(r, row, 5),
			(size_t)db->pq->getlength(r, row, 5));
	in->status = saga_status_of(db->pq->getvalue(r, row, 6));
	in->attempts = int_at(db, r, row, 7);
	in->revision = int_at(db, r, row, 8);
	in->next_at = time_at(db, r, row, 9);
	in->deadline = time_at(db, r, row, 10);
	in->start_sequence = int_at(db, r, row, 11);
	text_at(db, r, row, 12, in->outcome, sizeof in->outcome);
	text_at(db, r, row, 13, in->last_error, sizeof in->last_error);
	in->created = time_at(db, r, row, 14);
	in->updated = time_at(db, r, row, 15);
	return in->state.oom ? -1 : 0;
}

/* One instance from a statement returning COLS: 1, 0 none, -1 */
static int load_one(struct pg_saga_db *db, const char *sql, int n, const char *const *v,
		    bool unique_prefix, struct saga_inst *in, cqrs_error *err)
{
	PGresult *r = run(db, sql, n, v, PGRES_TUPLES_OK, err);
	if (r == NULL)
		return -1;
	int rows = db->pq->ntuples(r), found = rows > 0;
	if (rows > 1 && unique_prefix)
		found = cqrs_fail(err, CQRS_EXIT_USAGE, "saga id prefix is ambiguous");
	else if (found && row_to_inst(db, r, 0, in) < 0)
		found = cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	db->pq->clear(r);
	return found;
}

/* --- instances -------------------------------------------------------------------------------- */

static int pg_load(struct saga_db *base, const char *id, struct saga_inst *in, cqrs_error *err)
{
	struct pg_saga_db *db = (struct pg_saga_db *)base;
	const char *v[1] = { id };
	if (strlen(id) == 36)
		return load_one(db, "SELECT " COLS " FROM saga_instances WHERE saga_id = $1", 1, v,
				false, in, err);
	return load_one(db,
			"SELECT " COLS " FROM saga_instances WHERE saga_id >= $1::text"
			" AND saga_id < $1::text || 'g' ORDER BY saga_id LIMIT 2",
			1, v, true, in, err);
}

/* Still due at now, as pg_candidates chose it: the list is made before
 * the pass works through it, and another runner may have taken an
 * instance meanwhile, failed its step and set its retry (taken here, the
 * retry would run at once, whatever its backoff). */
static int pg_load_rowid(struct saga_db *base, int64_t rowid, int64_t now, struct saga_inst *in,
			 cqrs_error *err)
{
	struct pg_saga_db *db = (struct pg_saga_db *)base;
	char id[24], t[CQRS_TIMESTAMP_LEN + 1];
	snprintf(id, sizeof id, "%lld", (long long)rowid);
	const char *v[4] = { id, db->owner, db->lease_us, NULL };
	time_text(now, t, &v[3]);
	return load_one(db,
			"UPDATE saga_instances SET " TAKE_LEASE " WHERE rowid = (SELECT rowid FROM"
			" saga_instances WHERE rowid = $1::bigint AND " ACTIVE " AND " LEASE_FREE
			" AND (next_attempt_at IS NULL OR next_attempt_at <= $4 OR deadline_at IS"
			" NOT NULL) FOR UPDATE SKIP LOCKED) RETURNING " COLS,
			4, v, false, in, err);
}

static int pg_reload(struct saga_db *base, struct saga_inst *in, cqrs_error *err)
{
	struct pg_saga_db *db = (struct pg_saga_db *)base;
	char id[24];
	snprintf(id, sizeof id, "%lld", (long long)in->rowid);
	const char *v[3] = { id, db->owner, db->lease_us };
	return load_one(db,
			"UPDATE saga_instances SET " TAKE_LEASE
			" WHERE rowid = $1::bigint AND " ACTIVE " AND " LEASE_FREE
			" RETURNING " COLS,
			3, v, false, in, err);
}

static int pg_load_start(struct saga_db *base, const char *type, int64_t start_sequence,
			 struct saga_inst *in, cqrs_error *err)
{
	struct pg_saga_db *db = (struct pg_saga_db *)base;
	char seq[24];
	snprintf(seq, sizeof seq, "%lld", (long long)start_sequence);
	const char *v[2] = { type, seq };
	int found = load_one(db,
			     "SELECT " COLS " FROM saga_instances WHERE saga_type = $1 AND"
			     " start_sequence = $2::bigint",
			     2, v, false, in, err);
	if (found <= 0)
		return found;
	/* held, finished or not (a cancellation undoes a completed one), but
	 * never waited for: the runner whose transaction holds the row may
	 * be waiting for the append lock this transaction holds */
	char id[24];
	snprintf(id, sizeof id, "%lld", (long long)in->rowid);
	const char *h[3] = { id, db->owner, db->lease_us };
	int held =
		load_one(db,
			 "UPDATE saga_instances SET " TAKE_LEASE " WHERE rowid = (SELECT rowid FROM"
			 " saga_instances WHERE rowid = $1::bigint AND " LEASE_FREE
			 " FOR UPDATE SKIP LOCKED) RETURNING " COLS,
			 3, h, false, in, err);
	return held == 0 ? SAGA_HELD_ELSEWHERE : held;
}

/* What an insert and an update both write: $1-$10 of either statement. */
struct inst_params {
	char step[24], attempts[24], extra[24];
	char next[CQRS_TIMESTAMP_LEN + 1], deadline[CQRS_TIMESTAMP_LEN + 1],
		updated[CQRS_TIMESTAMP_LEN + 1];
	const char *v[13];
	int len[13], fmt[13];
};

static void bind_instance(struct inst_params *p, const struct saga_inst *in)
{
	snprintf(p->step, sizeof p->step, "%lld", (long long)in->step);
	snprintf(p->attempts, sizeof p->attempts, "%lld", (long long)in->attempts);
	p->v[0] = in->id;
	p->v[1] = p->step;
	p->v[2] = cqrs_strbuf_str(&in->state);
	p->v[3] = saga_status_names[in->status];
	p->v[4] = p->attempts;
	time_text(in->next_at, p->next, &p->v[5]);
	time_text(in->deadline, p->deadline, &p->v[6]);
	p->v[7] = in->outcome[0] ? in->outcome : NULL;
	p->v[8] = in->last_error[0] ? in->last_error : NULL;
	time_text(in->updated, p->updated, &p->v[9]);
}

static int pg_insert(struct saga_db *base, struct saga_inst *in, cqrs_error *err)
{
	struct pg_saga_db *db = (struct pg_saga_db *)base;
	struct inst_params p = { .extra = "" };
	bind_instance(&p, in);
	snprintf(p.extra, sizeof p.extra, "%lld", (long long)in->start_sequence);
	p.v[10] = in->type;
	p.v[11] = in->corr[0] ? in->corr : NULL;
	p.v[12] = p.extra;
	PGresult *r =
		run(db,
		    "INSERT INTO saga_instances (saga_id, current_step, state, status,"
		    " attempts, next_attempt_at, deadline_at, outcome, last_error, updated_at,"
		    " saga_type, correlation_id, start_sequence, revision, created_at)"
		    " VALUES ($1, $2::bigint, $3, $4, $5::bigint, $6, $7, $8, $9, $10, $11,"
		    " $12, $13::bigint, 0, $10)"
		    " ON CONFLICT (saga_type, start_sequence) DO NOTHING RETURNING rowid",
		    13, p.v, PGRES_TUPLES_OK, err);
	if (r == NULL)
		return -1;
	int inserted = db->pq->ntuples(r) > 0;
	if (inserted) {
		in->rowid = int_at(db, r, 0, 0);
		in->revision = 0;
	}
	db->pq->clear(r);
	return inserted;
}

static int pg_update(struct saga_db *base, struct saga_inst *in, cqrs_error *err)
{
	struct pg_saga_db *db = (struct pg_saga_db *)base;
	struct inst_params p = { .extra = "" };
	bind_instance(&p, in);
	snprintf(p.extra, sizeof p.extra, "%lld", (long long)in->revision);
	p.v[10] = p.extra;
	p.v[11] = db->owner;
	PGresult *r = run(db,
			  "UPDATE saga_instances SET current_step = $2::bigint, state = $3,"
			  " status = $4, attempts = $5::bigint, revision = revision + 1,"
			  " next_attempt_at = $6, deadline_at = $7, outcome = $8, last_error = $9,"
			  " updated_at = $10, lease_owner = NULL, lease_until = NULL"
			  " WHERE saga_id = $1 AND revision = $11::bigint AND (lease_owner IS NULL"
			  " OR lease_owner = $12 OR lease_until <= clock_timestamp())",
			  12, p.v, PGRES_COMMAND_OK, err);
	if (r == NULL)
		return -1;
	int written = strcmp(db->pq->cmd_tuples(r), "1") == 0;
	db->pq->clear(r);
	if (written)
		in->revision++;
	return written;
}

static int pg_candidates(struct saga_db *base, int64_t after_rowid, int64_t now, int64_t limit,
			 int64_t *rowids, size_t *n, cqrs_error *err)
{
	struct pg_saga_db *db = (struct pg_saga_db *)base;
	char after[24], lim[24], t[CQRS_TIMESTAMP_LEN + 1];
	snprintf(after, sizeof after, "%lld", (long long)after_rowid);
	snprintf(lim, sizeof lim, "%lld", (long long)limit);
	const char *v[4] = { after, db->owner, NULL, lim };
	time_text(now, t, &v[2]);
	/* $2 is the owner, as in LEASE_FREE */
	PGresult *r = run(db,
			  "SELECT rowid FROM saga_instances WHERE status IN ('RUNNING',"
			  " 'COMPENSATING') AND rowid > $1::bigint AND (next_attempt_at IS NULL OR"
			  " next_attempt_at <= $3 OR deadline_at IS NOT NULL) AND " LEASE_FREE
			  " ORDER BY rowid LIMIT $4::bigint",
			  4, v, PGRES_TUPLES_OK, err);
	*n = 0;
	if (r == NULL)
		return -1;
	int rows = db->pq->ntuples(r);
	for (int i = 0; i < rows && (int64_t)i < limit; i++)
		rowids[(*n)++] = int_at(db, r, i, 0);
	db->pq->clear(r);
	return 0;
}

static int64_t pg_next_due(struct saga_db *base, int64_t now, cqrs_error *err)
{
	struct pg_saga_db *db = (struct pg_saga_db *)base;
	char t[CQRS_TIMESTAMP_LEN + 1];
	const char *v[1];
	time_text(now, t, &v[0]);
	/* the next retry, and when the first live lease runs out: a runner
	 * that died leaves its instances to the others then */
	PGresult *r =
		run(db,
		    "SELECT min(next_attempt_at) FILTER (WHERE next_attempt_at > $1),"
		    " coalesce(ceil(extract(epoch FROM min(lease_until) FILTER (WHERE"
		    " lease_until > clock_timestamp()) - clock_timestamp()) * 1000000), 0)::bigint"
		    " FROM saga_instances WHERE status IN ('RUNNING', 'COMPENSATING')",
		    1, v, PGRES_TUPLES_OK, err);
	if (r == NULL)
		return -1;
	int64_t due = time_at(db, r, 0, 0), lease_left = int_at(db, r, 0, 1);
	db->pq->clear(r);
	if (lease_left > 0 && (due == 0 || now + lease_left < due))
		due = now + lease_left;
	return due;
}

/* --- checkpoints and breakers ------------------------------------------------------------------
 */

/* A transaction-level advisory lock on KIND:schema:NAME, for what has no
 * row to lock until it is first written (a checkpoint, a breaker). */
static int lock_name(struct pg_saga_db *db, const char *kind, const char *name, cqrs_error *err)
{
	const char *v[2] = { kind, name };
	PGresult *r = run(db,
			  "SELECT pg_advisory_xact_lock(hashtextextended("
			  "$1::text || ':' || current_schema() || ':' || $2, 0))",
			  2, v, PGRES_TUPLES_OK, err);
	if (r == NULL)
		return -1;
	db->pq->clear(r);
	return 0;
}

static int pg_checkpoint_get(struct saga_db *base, const char *name, int64_t *seq, cqrs_error *err)
{
	struct pg_saga_db *db = (struct pg_saga_db *)base;
	const char *v[1] = { name };
	/* Locked to the transaction's end: runners take turns starting
	 * instances and acting on cancellations.  By a lock on its name, as a
	 * breaker's, not by the row alone: before a saga type's first
	 * checkpoint there is no row to lock, and a runner that found none
	 * went on to insert instances, then waited to write the row that
	 * another runner had locked meanwhile while waiting for one of those
	 * instances: a deadlock.  Taken first in its transaction, before any
	 * instance or the append lock.  Its own statement: the read after it
	 * must see what the last holder committed. */
	if (lock_name(db, "cqrs.checkpoint", name, err) < 0)
		return -1;
	PGresult *r = run(db, "SELECT sequence FROM checkpoints WHERE name = $1 FOR UPDATE", 1, v,
			  PGRES_TUPLES_OK, err);
	*seq = 0;
	if (r == NULL)
		return -1;
	int found = db->pq->ntuples(r) > 0;
	if (found)
		*seq = int_at(db, r, 0, 0);
	db->pq->clear(r);
	return found;
}

static int pg_set_checkpoint(struct saga_db *base, const char *name, int64_t seq, int64_t now,
			     cqrs_error *err)
{
	struct pg_saga_db *db = (struct pg_saga_db *)base;
	char s[24], t[CQRS_TIMESTAMP_LEN + 1];
	snprintf(s, sizeof s, "%lld", (long long)seq);
	const char *v[3] = { name, s, NULL };
	time_text(now, t, &v[2]);
	return command(db,
		       "INSERT INTO checkpoints (name, sequence, updated_at)"
		       " VALUES ($1, $2::bigint, $3) ON CONFLICT (name) DO UPDATE SET"
		       " sequence = greatest(checkpoints.sequence, excluded.sequence),"
		       " updated_at = excluded.updated_at",
		       3, v, err);
}

static int pg_breaker_get(struct saga_db *base, const char *name, struct breaker_row *b,
			  cqrs_error *err)
{
	struct pg_saga_db *db = (struct pg_saga_db *)base;
	const char *v[1] = { name };
	/* Runners that share a breaker read, count and write it back in one
	 * transaction each: a lock on its name, held to the transaction's end,
	 * keeps two of them from counting over each other (a row lock would
	 * not do: the row may not exist yet).  Taken before the transaction
	 * appends, so always before the append lock.  Its own statement: the
	 * read after it must see what the last holder committed. */
	if (lock_name(db, "cqrs.breaker", name, err) < 0)
		return -1;
	PGresult *r =
		run(db, "SELECT state, failures, opened_at FROM saga_breakers WHERE name = $1", 1,
		    v, PGRES_TUPLES_OK, err);
	*b = (struct breaker_row){ BREAKER_CLOSED, 0, 0 };
	if (r == NULL)
		return -1;
	if (db->pq->ntuples(r) > 0) {
		b->state = saga_breaker_of(db->pq->getvalue(r, 0, 0));
		b->failures = int_at(db, r, 0, 1);
		b->opened_at = time_at(db, r, 0, 2);
	}
	db->pq->clear(r);
	return 0;
}

static int pg_breaker_put(struct saga_db *base, const char *name, const struct breaker_row *b,
			  int64_t now, cqrs_error *err)
{
	struct pg_saga_db *db = (struct pg_saga_db *)base;
	char failures[24], opened[CQRS_TIMESTAMP_LEN + 1], t[CQRS_TIMESTAMP_LEN + 1];
	snprintf(failures, sizeof failures, "%lld", (long long)b->failures);
	const char *v[5] = { name, saga_breaker_names[b->state], failures, NULL, NULL };
	time_text(b->opened_at, opened, &v[3]);
	time_text(now, t, &v[4]);
	return command(db,
		       "INSERT INTO saga_breakers (name, state, failures, opened_at, updated_at)"
		       " VALUES ($1, $2, $3::bigint, $4, $5) ON CONFLICT (name) DO UPDATE SET"
		       " state = $2, failures = $3::bigint, opened_at = $4, updated_at = $5",
		       5, v, err);
}

/* --- what saga_report.c shows ---------------------------------------------------------------- */

/* An active instance with no change since $1: stuck. */
#define SAGA_STUCK "status IN ('RUNNING', 'COMPENSATING') AND updated_at < $1"

static int pg_counts(struct saga_db *base, const char *stuck_before,
		     void (*fn)(void *, const struct saga_type_counts *), void *arg,
		     cqrs_error *err)
{
	struct pg_saga_db *db = (struct pg_saga_db *)base;
	const char *v[1] = { stuck_before };
	PGresult *r = run(db,
			  "SELECT saga_type, count(*),"
			  " count(*) FILTER (WHERE status = 'RUNNING'),"
			  " count(*) FILTER (WHERE status = 'COMPENSATING'),"
			  " count(*) FILTER (WHERE status = 'COMPLETED'),"
			  " count(*) FILTER (WHERE status = 'FAILED'),"
			  " count(*) FILTER (WHERE outcome = 'compensated'),"
			  " count(*) FILTER (WHERE outcome = 'compensation_failed'),"
			  " count(*) FILTER (WHERE outcome = 'left_to_person'),"
			  " count(*) FILTER (WHERE outcome = 'cancelled'),"
			  " count(*) FILTER (WHERE " SAGA_STUCK ")"
			  " FROM saga_instances GROUP BY saga_type ORDER BY saga_type",
			  1, v, PGRES_TUPLES_OK, err);
	if (r == NULL)
		return -1;
	for (int i = 0; i < db->pq->ntuples(r); i++) {
		struct saga_type_counts c = {
			.saga_type = db->pq->getvalue(r, i, 0),
			.total = int_at(db, r, i, 1),
			.running = int_at(db, r, i, 2),
			.compensating = int_at(db, r, i, 3),
			.completed = int_at(db, r, i, 4),
			.failed = int_at(db, r, i, 5),
			.compensated = int_at(db, r, i, 6),
			.compensation_failed = int_at(db, r, i, 7),
			.left_to_person = int_at(db, r, i, 8),
			.cancelled = int_at(db, r, i, 9),
			.stuck = int_at(db, r, i, 10),
		};
		fn(arg, &c);
	}
	db->pq->clear(r);
	return 0;
}

static int pg_attention(struct saga_db *base, const char *stuck_before,
			void (*fn)(void *, const struct saga_attention *), void *arg,
			cqrs_error *err)
{
	struct pg_saga_db *db = (struct pg_saga_db *)base;
	const char *v[1] = { stuck_before };
	PGresult *r = run(db,
			  "SELECT saga_id, saga_type, status, current_step, attempts,"
			  " updated_at, coalesce(next_attempt_at, ''), coalesce(last_error, ''),"
			  " CASE WHEN status <> 'FAILED' THEN 'no_progress' ELSE outcome END"
			  " FROM saga_instances WHERE (" SAGA_STUCK ")"
			  " OR outcome IN ('compensation_failed', 'left_to_person')"
			  " ORDER BY updated_at, saga_id LIMIT 1000",
			  1, v, PGRES_TUPLES_OK, err);
	if (r == NULL)
		return -1;
	for (int i = 0; i < db->pq->ntuples(r); i++) {
		struct saga_attention a = {
			.saga_id = db->pq->getvalue(r, i, 0),
			.saga_type = db->pq->getvalue(r, i, 1),
			.status = db->pq->getvalue(r, i, 2),
			.step = int_at(db, r, i, 3),
			.attempts = int_at(db, r, i, 4),
			.updated_at = db->pq->getvalue(r, i, 5),
			.next_attempt_at = db->pq->getvalue(r, i, 6),
			.last_error = db->pq->getvalue(r, i, 7),
			.why = db->pq->getvalue(r, i, 8),
		};
		fn(arg, &a);
	}
	db->pq->clear(r);
	return 0;
}

static int pg_breakers(struct saga_db *base, void (*fn)(void *, const struct cqrs_saga_breaker *),
		       void *arg, cqrs_error *err)
{
	struct pg_saga_db *db = (struct pg_saga_db *)base;
	PGresult *r = run(db,
			  "SELECT name, state, failures, coalesce(opened_at, '')"
			  " FROM saga_breakers ORDER BY name",
			  0, NULL, PGRES_TUPLES_OK, err);
	if (r == NULL)
		return -1;
	for (int i = 0; i < db->pq->ntuples(r); i++) {
		struct cqrs_saga_breaker b = {
			.name = db->pq->getvalue(r, i, 0),
			.state = db->pq->getvalue(r, i, 1),
			.failures = int_at(db, r, i, 2),
			.opened_at = db->pq->getvalue(r, i, 3),
		};
		/* half open lets one probe through: still not closed */
		b.open = strcmp(b.state, "closed") != 0;
		fn(arg, &b);
	}
	db->pq->clear(r);
	return 0;
}

static int pg_read_begin(struct saga_db *base, cqrs_error *err)
{
	return command((struct pg_saga_db *)base, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
		       0, NULL, err);
}

static void pg_read_end(struct saga_db *base)
{
	cqrs_error ignored = { 0 };
	command((struct pg_saga_db *)base, "COMMIT", 0, NULL, &ignored);
}

static const struct saga_db_ops pg_saga_ops = {
	.close = pg_close,
	.set_lease = pg_set_lease,
	.release = pg_release,
	.insert = pg_insert,
	.update = pg_update,
	.load = pg_load,
	.reload = pg_reload,
	.candidates = pg_candidates,
	.load_rowid = pg_load_rowid,
	.checkpoint_get = pg_checkpoint_get,
	.load_start = pg_load_start,
	.set_checkpoint = pg_set_checkpoint,
	.next_due = pg_next_due,
	.breaker_get = pg_breaker_get,
	.breaker_put = pg_breaker_put,
	.counts = pg_counts,
	.attention = pg_attention,
	.breakers = pg_breakers,
	.read_begin = pg_read_begin,
	.read_end = pg_read_end,
};
