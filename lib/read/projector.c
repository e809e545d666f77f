/*
 * Applying events to the read models, exactly once.
 *
 * Each projection has a checkpoint: the last sequence it applied.  Events
 * are applied in batches inside one views transaction, and the batch's
 * checkpoints are written in that same transaction, so a crash at any
 * moment leaves either the whole batch with its checkpoints or neither: an
 * event is never applied twice nor skipped.  A projection applies only the
 * sequence that follows its checkpoint; anything else is an error, never a
 * silent gap.
 */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cqrs.h"
#include "common/sqlite_errors.h"
#include "read/views_impl.h"
#include "banned.h"

#define DEFAULT_BATCH 10000

struct rt_stmt {
	sqlite3_stmt *st;
	const struct cqrs_sql *sql;
};

struct rt_handler {
	const struct cqrs_handler *h;
	struct rt_stmt *stmts;
	uint64_t type_hash; /* of h->event_type; 0 for "*" */
};

struct rt_proj {
	const struct cqrs_projection *def;
	struct rt_handler *handlers;
	size_t nhandlers;
	int64_t checkpoint; /* committed */
	uint8_t ckpt_hash[CQRS_HASH_LEN];
	bool ckpt_has_hash;
	char ckpt_ts[CQRS_TIMESTAMP_LEN + 1];
	int64_t applied; /* in the open transaction */
	uint8_t hash[CQRS_HASH_LEN];
	bool has_hash;
	char ts[CQRS_TIMESTAMP_LEN + 1];
	int64_t stop; /* apply nothing after this sequence; INT64_MAX: no limit */
	bool verified;
	bool absent; /* not in this file at all (a parallel build's other tasks) */
	/* the aggregates that have parked events, sorted by id, with the
	 * first one's sequence: their later events are parked behind it */
	struct parked_agg *parked;
	size_t nparked, capparked;
	/* metrics: the timestamps (seconds) of the events of the open
	 * transaction, timed at its commit, and how many it applied, parked */
	double *event_times;
	size_t ntimes, captimes;
	int64_t m_applied, m_parked;
};

struct parked_agg {
	uint8_t id[CQRS_UUID_LEN];
	int64_t first;
};

/* A parameter's value for the current event. */
struct pval {
	unsigned gen;
	int type; /* SQLITE_NULL, SQLITE_INTEGER, SQLITE_TEXT */
	int64_t i;
	const char *text;
	size_t len;
	char *buf; /* decoded strings, uuids */
	size_t cap;
};

struct cqrs_projector {
	/* old event versions to the current form, after the chain check
	 * (cqrs-upcasters(5)); made on first use */
	cqrs_upcaster *upcaster;
	sqlite3 *db;
	char *path;
	const cqrs_projections *ps;
	struct rt_proj *p;
	size_t np;
	struct pval *vals;
	unsigned gen;
	int64_t batch, in_batch, applied_total;
	bool in_txn, prepared, scratch;
	bool sparse;		      /* the events of one aggregate: sequences have gaps */
	const char *until;	      /* events after this time are passed over, not applied */
	_Atomic int64_t *shared_done; /* events read, for a parallel build's progress */
	/* events fed by a parallel build: their hashes were recomputed by
	 * the thread that read them (cqrs_event_check_hash) */
	bool fed;
	int64_t fed_to, fed_applied_before;
	/* a scratch file's indexes that no statement uses: created at the
	 * end, in one sorted pass each, rather than kept up to date event
	 * by event */
	char **deferred;
	size_t ndeferred;
	sqlite3_stmt *ckpt_save;
	/* parking: SAVEPOINT, RELEASE, ROLLBACK TO, and the INSERT */
	sqlite3_stmt *sp[3], *park_put;
	int64_t parked_new, parked_committed;
	/* replayed once per process at the first catch-up (a --follow
	 * replays again only after applying new events, not when idle) */
	bool replayed;
	/* a savepoint around every event of several statements; otherwise
	 * an event that fails after its first statement changed something
	 * sets redo, and its batch is rolled back and applied again so */
	bool careful, redo;
	struct cqrs_deadline deadline; /* of the statements of one event */
	/* the hash of the event being applied, recomputed once for all the
	 * projections that stand at the same previous event */
	int64_t hv_seq;
	uint8_t hv_prev[CQRS_HASH_LEN], hv[CQRS_HASH_LEN];
	/* progress on a terminal */
	bool progress;
	int64_t progress_total, progress_done;
	time_t progress_last;
	const char *progress_what;
	bool metrics; /* a live run with metrics asked (cqrs-metrics(7)) */
};

static uint64_t type_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return h | 1;
}

static int oom(cqrs_error *err)
{
	return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
}

static int db_error(cqrs_projector *p, int rc, const char *what, cqrs_error *err)
{
	return cqrs_views_db_error(p->db, p->path, rc, what, err);
}

static cqrs_projector *projector_new(const char *views_path, cqrs_projections *ps, unsigned flags,
				     cqrs_error *err);
static int reset_projection(cqrs_projector *p, const struct cqrs_projection *d,
			    const char *old_tables, cqrs_error *err);
static int prepare_parking(cqrs_projector *p, cqrs_error *err);
static int parked_load(cqrs_projector *p, cqrs_error *err);
static bool parked_any(const cqrs_projector *p);
static int apply_or_park(cqrs_projector *p, struct rt_proj *rp, const cqrs_event *ev, uint64_t th,
			 cqrs_error *err);
static void next_event(cqrs_projector *p);

cqrs_projector *cqrs_projector_open(const char *views_path, cqrs_projections *ps, unsigned flags,
				    cqrs_error *err)
{
	cqrs_projector *p = projector_new(views_path, ps, flags, err);
	if (p == NULL)
		return NULL;
	if (cqrs_views_db_open(views_path, p->scratch ? VIEWS_OPEN_SCRATCH : VIEWS_OPEN_WRITE,
			       &p->db, err) < 0) {
		cqrs_projector_close(p);
		return NULL;
	}
	/* rebuilds count as replays (rebuild.c), not as lag */
	p->metrics = !p->scratch && cqrs_metrics_on();
	return p;
}

/* The projection that creates table in a database of its own in memory,
 * for folding the events of one aggregate (a temporal query). */
cqrs_projector *cqrs_projector_open_memory(cqrs_projections *ps, const char *table, cqrs_error *err)
{
	cqrs_projector *p = projector_new(":memory:", ps, 0, err);
	if (p == NULL)
		return NULL;
	const struct cqrs_projection *owner = NULL;
	for (size_t i = 0; i < ps->n; i++)
		for (size_t k = 0; k < ps->p[i].nowned; k++)
			if (strcmp(ps->p[i].owned[k], table) == 0)
				owner = &ps->p[i];
	if (owner == NULL) {
		cqrs_fail(err, CQRS_EXIT_CONFIG, "no projection creates the table '%s'", table);
		goto fail;
	}
	for (size_t i = 0; i < p->np; i++)
		if (p->p[i].def != owner)
			p->p[i].stop = 0;
	p->sparse = true;
	int rc = sqlite3_open_v2(":memory:", &p->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
				 NULL);
	if (rc == SQLITE_OK)
		cqrs_views_harden(p->db);
	if (rc != SQLITE_OK || cqrs_sql_register_functions(p->db) < 0 ||
	    sqlite3_exec(p->db, cqrs_views_meta_schema(), NULL, NULL, NULL) != SQLITE_OK) {
		cqrs_fail(err, CQRS_EXIT_OSERR, "cannot open a database in memory");
		goto fail;
	}
	if (cqrs_projector_sync(p, err) < 0)
		goto fail;
	return p;
fail:
	cqrs_projector_close(p);
	return NULL;
}

sqlite3 *cqrs_projector_db(cqrs_projector *p)
{
	return p->db;
}

static cqrs_projector *projector_new(const char *views_path, cqrs_projections *ps, unsigned flags,
				     cqrs_error *err)
{
	if (!ps->checked && cqrs_projections_check(ps, err) < 0)
		return NULL;
	cqrs_projector *p = calloc(1, sizeof *p);
	if (p == NULL || (p->path = strdup(views_path)) == NULL ||
	    (p->p = calloc(ps->n ? ps->n : 1, sizeof *p->p)) == NULL ||
	    (p->vals = calloc(ps->nparams ? ps->nparams : 1, sizeof *p->vals)) == NULL) {
		oom(err);
		goto fail;
	}
	p->ps = ps;
	p->np = ps->n;
	p->scratch = flags & CQRS_PROJECT_SCRATCH;
	p->batch = p->scratch ? INT64_MAX : DEFAULT_BATCH;
	for (size_t i = 0; i < ps->n; i++) {
		struct rt_proj *rp = &p->p[i];
		rp->def = &ps->p[i];
		rp->stop = INT64_MAX;
		rp->nhandlers = rp->def->non;
		rp->handlers = calloc(rp->nhandlers ? rp->nhandlers : 1, sizeof *rp->handlers);
		if (rp->handlers == NULL) {
			oom(err);
			goto fail;
		}
		for (size_t h = 0; h < rp->nhandlers; h++) {
			rp->handlers[h].h = &rp->def->on[h];
			rp->handlers[h].type_hash = strcmp(rp->def->on[h].event_type, "*") == 0
							    ? 0
							    : type_hash(rp->def->on[h].event_type);
			rp->handlers[h].stmts =
				calloc(rp->def->on[h].nsql, sizeof *rp->handlers[h].stmts);
			if (rp->handlers[h].stmts == NULL) {
				oom(err);
				goto fail;
			}
		}
	}
	return p;
fail:
	cqrs_projector_close(p);
	return NULL;
}

/* Commits, then copies the WAL into the views file and syncs it, as SQLite
 * would do when the last connection closes, but with its result checked: a
 * failed write or fsync there is an I/O error (74), not a silent success. */
int cqrs_projector_flush(cqrs_projector *p, cqrs_error *err)
{
	if (cqrs_projector_commit(p, err) < 0)
		return -1;
	if (p->scratch)
		return 0;
	int rc = sqlite3_wal_checkpoint_v2(p->db, "main", SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) {
		db_error(p, rc, "cannot write the views", err);
		if (err != NULL && err->code != CQRS_EXIT_OSERR)
			err->code = CQRS_EXIT_IOERR;
		return -1;
	}
	return 0;
}

void cqrs_projector_close(cqrs_projector *p)
{
	if (p == NULL)
		return;
	if (p->in_txn && p->db != NULL)
		sqlite3_exec(p->db, "ROLLBACK", NULL, NULL, NULL);
	cqrs_upcaster_free(p->upcaster);
	for (size_t i = 0; p->p != NULL && i < p->np; i++) {
		struct rt_proj *rp = &p->p[i];
		for (size_t h = 0; rp->handlers != NULL && h < rp->nhandlers; h++) {
			for (size_t k = 0; rp->handlers[h].stmts && k < rp->def->on[h].nsql; k++)
				sqlite3_finalize(rp->handlers[h].stmts[k].st);
			free(rp->handlers[h].stmts);
		}
		free(rp->handlers);
		free(rp->parked);
		free(rp->event_times);
	}
	free(p->p);
	for (size_t i = 0; p->vals != NULL && i < p->ps->nparams; i++)
		free(p->vals[i].buf);
	free(p->vals);
	sqlite3_finalize(p->ckpt_save);
	for (size_t i = 0; i < 3; i++)
		sqlite3_finalize(p->sp[i]);
	sqlite3_finalize(p->park_put);
	sqlite3_close(p->db);
	for (size_t i = 0; i < p->ndeferred; i++)
		free(p->deferred[i]);
	free(p->deferred);
	free(p->path);
	free(p);
}

/* The query plans of every statement, one detail per line. */
static char *all_plans(cqrs_projector *p)
{
	size_t n = 0, cap = 4096;
	char *plans = malloc(cap);
	if (plans == NULL)
		return NULL;
	plans[0] = '\0';
	for (size_t i = 0; i < p->np; i++) {
		const struct cqrs_projection *d = p->p[i].def;
		if (p->p[i].absent)
			continue;
		for (size_t h = 0; h < d->non; h++)
			for (size_t k = 0; k < d->on[h].nsql; k++) {
				const char *sql = d->on[h].sql[k].sql;
				size_t len = strlen(sql) + 32;
				char *e = malloc(len);
				sqlite3_stmt *q = NULL;
				if (e == NULL)
					continue;
				snprintf(e, len, "EXPLAIN QUERY PLAN %s", sql);
				if (sqlite3_prepare_v2(p->db, e, -1, &q, NULL) == SQLITE_OK) {
					while (sqlite3_step(q) == SQLITE_ROW) {
						const char *detail =
							(const char *)sqlite3_column_text(q, 3);
						size_t dl = detail ? strlen(detail) : 0;
						if (n + dl + 2 > cap) {
							char *np = realloc(plans, (n + dl + 2) * 2);
							if (np == NULL)
								break;
							plans = np;
							cap = (n + dl + 2) * 2;
						}
						memcpy(plans + n, detail, dl);
						n += dl;
						plans[n++] = '\n';
						plans[n] = '\0';
					}
				}
				sqlite3_finalize(q);
				free(e);
			}
	}
	return plans;
}

static bool plan_uses(const char *plans, const char *index)
{
	size_t il = strlen(index);
	for (const char *s = plans; (s = strstr(s, "INDEX ")) != NULL; s += 6)
		if (strncmp(s + 6, index, il) == 0 && (s[6 + il] == ' ' || s[6 + il] == '\n'))
			return true;
	return false;
}

/* In a new scratch file: drops the indexes that are not unique and that
 * no statement's plan uses, to create them again at the end. */
static int defer_indexes(cqrs_projector *p, cqrs_error *err)
{
	char *plans = all_plans(p);
	if (plans == NULL)
		return oom(err);
	sqlite3_stmt *q;
	int rc = sqlite3_prepare_v2(
		p->db,
		"SELECT s.name, s.sql FROM sqlite_schema AS s,"
		" pragma_index_list(s.tbl_name) AS l WHERE s.type = 'index'"
		" AND s.sql IS NOT NULL AND l.name = s.name AND l.\"unique\" = 0",
		-1, &q, NULL);
	if (rc != SQLITE_OK) {
		free(plans);
		return db_error(p, rc, "cannot read the schema", err);
	}
	char **names = NULL;
	while (sqlite3_step(q) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(q, 0);
		const char *sql = (const char *)sqlite3_column_text(q, 1);
		if (plan_uses(plans, name))
			continue;
		char **nd = realloc(p->deferred, (p->ndeferred + 1) * sizeof *nd);
		char **nn = nd == NULL ? NULL : realloc(names, (p->ndeferred + 1) * sizeof *nn);
		if (nd != NULL)
			p->deferred = nd;
		if (nn == NULL)
			break;
		names = nn;
		names[p->ndeferred] = strdup(name);
		p->deferred[p->ndeferred] = strdup(sql);
		if (names[p->ndeferred] == NULL || p->deferred[p->ndeferred] == NULL) {
			free(names[p->ndeferred]);
			free(p->deferred[p->ndeferred]);
			break;
		}
		p->ndeferred++;
	}
	sqlite3_finalize(q);
	free(plans);
	/* dropped once the schema is no longer being read */
	for (size_t i = 0; i < p->ndeferred; i++) {
		size_t len = strlen(names[i]) * 2 + 32, o;
		char *drop = malloc(len);
		if (drop != NULL) {
			o = (size_t)snprintf(drop, len, "DROP INDEX \"");
			for (const char *c = names[i]; *c != '\0'; c++) {
				if (*c == '"')
					drop[o++] = '"';
				drop[o++] = *c;
			}
			drop[o++] = '"';
			drop[o] = '\0';
			rc = sqlite3_exec(p->db, drop, NULL, NULL, NULL);
			free(drop);
		}
		free(names[i]);
		if (drop == NULL || rc != SQLITE_OK) {
			for (size_t k = i + 1; k < p->ndeferred; k++)
				free(names[k]);
			free(names);
			return drop == NULL ? oom(err)
					    : db_error(p, rc, "cannot drop an index", err);
		}
	}
	free(names);
	return 0;
}

int cqrs_projector_finish(cqrs_projector *p, cqrs_error *err)
{
	if (cqrs_projector_commit(p, err) < 0)
		return -1;
	if (p->ndeferred > 0 && p->progress)
		fprintf(stderr, "%s: %s%sindexing\n", cqrs_tool_name(),
			p->progress_what ? p->progress_what : "", p->progress_what ? ": " : "");
	for (size_t i = 0; i < p->ndeferred; i++) {
		int rc = sqlite3_exec(p->db, p->deferred[i], NULL, NULL, NULL);
		if (rc != SQLITE_OK)
			return db_error(p, rc, "cannot create an index", err);
	}
	return 0;
}

void cqrs_projector_set_batch(cqrs_projector *p, int64_t batch)
{
	/* A scratch file is of use only once complete: one transaction,
	 * its memory bounded by the page cache, which spills. */
	p->batch = batch > 0 ? batch : p->scratch ? INT64_MAX : DEFAULT_BATCH;
}

void cqrs_projector_set_timeout(cqrs_projector *p, int64_t ms)
{
	p->deadline.timeout_ms = ms > 0 ? ms : 0;
}

void cqrs_projector_set_progress(cqrs_projector *p, bool on, const char *what)
{
	p->progress = on;
	p->progress_what = what;
}

int cqrs_projector_set_stop(cqrs_projector *p, const char *projection, int64_t stop)
{
	for (size_t i = 0; i < p->np; i++)
		if (projection == NULL || strcmp(p->p[i].def->name, projection) == 0)
			p->p[i].stop = stop < 0 ? INT64_MAX : stop;
	return 0;
}

void cqrs_projector_only(cqrs_projector *p, const bool *keep)
{
	for (size_t i = 0; i < p->np; i++)
		if (!keep[i]) {
			p->p[i].absent = true;
			p->p[i].stop = 0;
		}
}

void cqrs_projector_count_into(cqrs_projector *p, _Atomic int64_t *counter)
{
	p->shared_done = counter;
}

int64_t cqrs_projector_applied(const cqrs_projector *p)
{
	return p->applied_total;
}

static void owned_tables(const struct cqrs_projection *d, char *buf, size_t cap)
{
	size_t n = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < d->nowned && n < cap; i++)
		n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? " " : "", d->owned[i]);
}

/* Under the write lock: registers new projections (creating their
 * tables), refuses changed ones, and loads every checkpoint. */
int cqrs_projector_sync(cqrs_projector *p, cqrs_error *err)
{
	if (p->in_txn)
		return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "sync inside a transaction");
	int rc = sqlite3_exec(p->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return db_error(p, rc, "cannot start a transaction", err);
	sqlite3_stmt *get = NULL, *put = NULL;
	rc = sqlite3_prepare_v2(p->db,
				"SELECT sequence, event_hash, event_timestamp, definition, source,"
				" tables FROM cqrs_checkpoints WHERE projection = ?1",
				-1, &get, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(
			p->db,
			"INSERT INTO cqrs_checkpoints (projection, sequence, definition, source,"
			" tables, updated_at) VALUES (?1, 0, ?2, ?3, ?4, ?5)",
			-1, &put, NULL);
	if (rc != SQLITE_OK) {
		db_error(p, rc, "cannot read checkpoints", err);
		goto fail;
	}
	char now[CQRS_TIMESTAMP_LEN + 1];
	cqrs_timestamp_now(now);
	for (size_t i = 0; i < p->np; i++) {
		struct rt_proj *rp = &p->p[i];
		const struct cqrs_projection *d = rp->def;
		if (rp->absent)
			continue;
		sqlite3_bind_text(get, 1, d->name, -1, SQLITE_STATIC);
		rc = sqlite3_step(get);
		if (rc == SQLITE_ROW) {
			const char *def = (const char *)sqlite3_column_text(get, 3);
			if (def == NULL || strcmp(def, d->hash) != 0) {
				/* changed: built again from the first event (no
				 * statement may be pending while tables are dropped) */
				const char *t = (const char *)sqlite3_column_text(get, 5);
				char *tables = strdup(t ? t : "");
				sqlite3_reset(get);
				rc = tables ? reset_projection(p, d, tables, err) : oom(err);
				free(tables);
				if (rc < 0)
					goto fail;
				rc = SQLITE_DONE;
			}
		}
		if (rc == SQLITE_ROW) {
			rp->checkpoint = sqlite3_column_int64(get, 0);
			const char *hash = (const char *)sqlite3_column_text(get, 1);
			rp->ckpt_has_hash = hash != NULL &&
					    cqrs_hash_parse(hash, strlen(hash), rp->ckpt_hash) == 0;
			const char *ts = (const char *)sqlite3_column_text(get, 2);
			snprintf(rp->ckpt_ts, sizeof rp->ckpt_ts, "%s", ts ? ts : "");
		} else if (rc == SQLITE_DONE) {
			if (cqrs_projection_create(p->db, d, err) < 0)
				goto fail;
			char source[4200], tables[4096];
			snprintf(source, sizeof source, "%s:%d", d->file, d->line);
			owned_tables(d, tables, sizeof tables);
			sqlite3_bind_text(put, 1, d->name, -1, SQLITE_STATIC);
			sqlite3_bind_text(put, 2, d->hash, -1, SQLITE_STATIC);
			sqlite3_bind_text(put, 3, source, -1, SQLITE_STATIC);
			sqlite3_bind_text(put, 4, tables, -1, SQLITE_STATIC);
			sqlite3_bind_text(put, 5, now, -1, SQLITE_STATIC);
			rc = sqlite3_step(put);
			sqlite3_reset(put);
			if (rc != SQLITE_DONE) {
				db_error(p, rc, "cannot register projection", err);
				goto fail;
			}
			rp->checkpoint = 0;
			rp->ckpt_has_hash = false;
			rp->ckpt_ts[0] = '\0';
		} else {
			db_error(p, rc, "cannot read checkpoints", err);
			goto fail;
		}
		sqlite3_reset(get);
		rp->applied = rp->checkpoint;
		memcpy(rp->hash, rp->ckpt_hash, CQRS_HASH_LEN);
		rp->has_hash = rp->ckpt_has_hash;
		memcpy(rp->ts, rp->ckpt_ts, sizeof rp->ts);
		rp->verified = false;
	}
	sqlite3_finalize(get);
	sqlite3_finalize(put);
	get = put = NULL;
	rc = sqlite3_exec(p->db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		db_error(p, rc, "cannot register projections", err);
		goto fail;
	}
	if (!p->prepared) {
		cqrs_deadline_attach(p->db, &p->deadline);
		if (p->scratch && defer_indexes(p, err) < 0)
			return -1;
		for (size_t i = 0; i < p->np; i++) {
			struct rt_proj *rp = &p->p[i];
			if (rp->absent)
				continue;
			for (size_t h = 0; h < rp->nhandlers; h++)
				for (size_t k = 0; k < rp->handlers[h].h->nsql; k++) {
					rp->handlers[h].stmts[k].sql = &rp->handlers[h].h->sql[k];
					if (cqrs_projection_prepare(
						    p->db, rp->def, rp->handlers[h].h,
						    &rp->handlers[h].h->sql[k],
						    &rp->handlers[h].stmts[k].st, err) < 0)
						return -1;
				}
		}
		rc = sqlite3_prepare_v3(
			p->db,
			"UPDATE cqrs_checkpoints SET sequence = ?2, event_hash = ?3,"
			" event_timestamp = ?4, updated_at = ?5 WHERE projection = ?1",
			-1, SQLITE_PREPARE_PERSISTENT, &p->ckpt_save, NULL);
		if (rc != SQLITE_OK)
			return db_error(p, rc, "cannot prepare", err);
		if (prepare_parking(p, err) < 0)
			return -1;
		p->prepared = true;
	}
	return parked_load(p, err);
fail:
	sqlite3_finalize(get);
	sqlite3_finalize(put);
	sqlite3_exec(p->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

/* The lowest checkpoint of the projections that still want events. */
int64_t cqrs_projector_position(const cqrs_projector *p)
{
	int64_t pos = -1;
	for (size_t i = 0; i < p->np; i++) {
		const struct rt_proj *rp = &p->p[i];
		if (rp->applied >= rp->stop)
			continue;
		if (pos < 0 || rp->applied < pos)
			pos = rp->applied;
	}
	return pos;
}

/* The highest sequence any projection still wants; 0 when unbounded. */
static int64_t projector_stop(const cqrs_projector *p)
{
	int64_t stop = 0;
	for (size_t i = 0; i < p->np; i++) {
		if (p->p[i].stop == INT64_MAX)
			return 0;
		if (p->p[i].stop > stop)
			stop = p->p[i].stop;
	}
	return stop;
}

/* cqrs_projection_event_lag_seconds and cqrs_projection_events_total of
 * what a transaction did: committed, or forgotten (rolled back). */
static void metrics_end(cqrs_projector *p, bool committed)
{
	double now = committed ? cqrs_metrics_wall_clock() : 0;
	for (size_t i = 0; i < p->np; i++) {
		struct rt_proj *rp = &p->p[i];
		if (committed && rp->ntimes > 0) {
			const char *name = rp->def->name;
			cqrs_metric_series *lag =
				cqrs_metrics_series(CQRS_METRIC_PROJECTION_LAG, name, NULL);
			for (size_t k = 0; k < rp->ntimes; k++)
				cqrs_metrics_observe(lag, now - rp->event_times[k]);
			if (rp->m_applied > 0)
				cqrs_metrics_add(cqrs_metrics_series(CQRS_METRIC_PROJECTION_EVENTS,
								     name, "applied"),
						 (double)rp->m_applied);
			if (rp->m_parked > 0)
				cqrs_metrics_add(cqrs_metrics_series(CQRS_METRIC_PROJECTION_EVENTS,
								     name, "parked"),
						 (double)rp->m_parked);
		}
		rp->ntimes = 0;
		rp->m_applied = rp->m_parked = 0;
	}
}

/* One event through rp, to be timed at the commit. */
static void metrics_event(struct rt_proj *rp, double event_time, bool parked)
{
	if (rp->ntimes == rp->captimes) {
		size_t cap = rp->captimes ? 2 * rp->captimes : 256;
		double *t = realloc(rp->event_times, cap * sizeof *t);
		if (t == NULL)
			return; /* not counted: metrics never fail the run */
		rp->event_times = t;
		rp->captimes = cap;
	}
	rp->event_times[rp->ntimes++] = event_time;
	if (parked)
		rp->m_parked++;
	else
		rp->m_applied++;
}

static void rollback_memory(cqrs_projector *p)
{
	if (p->metrics)
		metrics_end(p, false);
	for (size_t i = 0; i < p->np; i++) {
		struct rt_proj *rp = &p->p[i];
		rp->applied = rp->checkpoint;
		memcpy(rp->hash, rp->ckpt_hash, CQRS_HASH_LEN);
		rp->has_hash = rp->ckpt_has_hash;
		memcpy(rp->ts, rp->ckpt_ts, sizeof rp->ts);
	}
	p->in_batch = 0;
}

void cqrs_projector_rollback(cqrs_projector *p)
{
	if (p->in_txn)
		sqlite3_exec(p->db, "ROLLBACK", NULL, NULL, NULL);
	p->in_txn = false;
	rollback_memory(p);
	p->parked_new = p->parked_committed;
	if (p->prepared)
		parked_load(p, NULL);
}

int cqrs_projector_commit(cqrs_projector *p, cqrs_error *err)
{
	if (!p->in_txn)
		return 0;
	char now[CQRS_TIMESTAMP_LEN + 1];
	cqrs_timestamp_now(now);
	for (size_t i = 0; i < p->np; i++) {
		struct rt_proj *rp = &p->p[i];
		if (rp->applied == rp->checkpoint)
			continue;
		char hex[2 * CQRS_HASH_LEN + 1];
		sqlite3_stmt *q = p->ckpt_save;
		sqlite3_bind_text(q, 1, rp->def->name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(q, 2, rp->applied);
		/* STATIC, not a copy SQLite could fail to make (out of memory):
		 * the values outlive the step, and are unbound after it */
		if (rp->has_hash) {
			cqrs_hash_format(rp->hash, hex);
			sqlite3_bind_text(q, 3, hex, -1, SQLITE_STATIC);
		} else {
			sqlite3_bind_null(q, 3);
		}
		sqlite3_bind_text(q, 4, rp->ts, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 5, now, -1, SQLITE_STATIC);
		int rc = sqlite3_step(q);
		sqlite3_reset(q);
		sqlite3_clear_bindings(q);
		if (rc != SQLITE_DONE || sqlite3_changes(p->db) != 1) {
			db_error(p, rc == SQLITE_DONE ? SQLITE_ERROR : rc, "cannot save checkpoint",
				 err);
			cqrs_projector_rollback(p);
			return -1;
		}
	}
	int rc = sqlite3_exec(p->db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		db_error(p, rc, "commit failed", err);
		if (err != NULL && err->code == CQRS_EXIT_TEMPFAIL)
			err->code = CQRS_EXIT_IOERR;
		cqrs_projector_rollback(p);
		return -1;
	}
	p->in_txn = false;
	p->parked_committed = p->parked_new;
	if (p->metrics)
		metrics_end(p, true);
	for (size_t i = 0; i < p->np; i++) {
		struct rt_proj *rp = &p->p[i];
		rp->checkpoint = rp->applied;
		memcpy(rp->ckpt_hash, rp->hash, CQRS_HASH_LEN);
		rp->ckpt_has_hash = rp->has_hash;
		memcpy(rp->ckpt_ts, rp->ts, sizeof rp->ts);
	}
	p->in_batch = 0;
	return 0;
}

/* --- parameters ----------------------------------------------------------- */

static bool json_index(const char *arr, size_t len, const char *seg, const char **v, size_t *vl)
{
	int64_t want;
	if (cqrs_parse_int64(seg, &want) < 0)
		return false;
	size_t pos = 0, en;
	const char *e;
	for (int64_t k = 0; cqrs_json_next_element(arr, len, &pos, &e, &en) == 1; k++) {
		if (k == want) {
			*v = e;
			*vl = en;
			return true;
		}
	}
	return false;
}

static int set_text(struct pval *pv, const char *s, size_t n, bool copy)
{
	pv->type = SQLITE_TEXT;
	if (!copy) {
		pv->text = s;
		pv->len = n;
		return 0;
	}
	if (pv->cap < n + 1) {
		char *b = realloc(pv->buf, n + 1);
		if (b == NULL)
			return -1;
		pv->buf = b;
		pv->cap = n + 1;
	}
	memcpy(pv->buf, s, n);
	pv->buf[n] = '\0';
	pv->text = pv->buf;
	pv->len = n;
	return 0;
}

/* A JSON value as SQL: strings decoded, integers as INTEGER, any other
 * number as the TEXT of its exact digits (money stays exact), true and
 * false as 1 and 0, objects and arrays as their JSON text. */
static int json_to_pval(struct pval *pv, const char *v, size_t n)
{
	if (n == 0 || (n == 4 && memcmp(v, "null", 4) == 0)) {
		pv->type = SQLITE_NULL;
		return 0;
	}
	if (v[0] == '"') {
		if (memchr(v, '\\', n) == NULL)
			return set_text(pv, v + 1, n - 2, false);
		if (pv->cap < n) {
			char *b = realloc(pv->buf, n);
			if (b == NULL)
				return -1;
			pv->buf = b;
			pv->cap = n;
		}
		long dl = cqrs_json_string(v, n, pv->buf, pv->cap);
		if (dl < 0)
			return set_text(pv, v + 1, n - 2, false);
		pv->type = SQLITE_TEXT;
		pv->text = pv->buf;
		pv->len = (size_t)dl;
		return 0;
	}
	if (v[0] == 't' || v[0] == 'f') {
		pv->type = SQLITE_INTEGER;
		pv->i = v[0] == 't';
		return 0;
	}
	if (v[0] == '-' || (v[0] >= '0' && v[0] <= '9')) {
		size_t digits = 0;
		bool integral = true;
		for (size_t k = 0; k < n; k++) {
			if (v[k] >= '0' && v[k] <= '9')
				digits++;
			else if (!(k == 0 && v[k] == '-'))
				integral = false;
		}
		if (integral && digits <= 18) {
			int64_t x = 0;
			for (size_t k = v[0] == '-'; k < n; k++)
				x = x * 10 + (v[k] - '0');
			pv->type = SQLITE_INTEGER;
			pv->i = v[0] == '-' ? -x : x;
			return 0;
		}
	}
	return set_text(pv, v, n, false);
}

static struct pval *resolve(cqrs_projector *p, size_t gi, const cqrs_event *ev, cqrs_error *err)
{
	struct pval *pv = &p->vals[gi];
	if (pv->gen == p->gen)
		return pv;
	const struct cqrs_param *prm = &p->ps->params[gi];
	int rc = 0;
	char uuid[37];
	switch (prm->root) {
	case PARAM_SEQUENCE:
		pv->type = SQLITE_INTEGER;
		pv->i = ev->sequence;
		break;
	case PARAM_AGGREGATE_VERSION:
		pv->type = SQLITE_INTEGER;
		pv->i = ev->aggregate_version;
		break;
	case PARAM_EVENT_VERSION:
		pv->type = SQLITE_INTEGER;
		pv->i = ev->event_version;
		break;
	case PARAM_EVENT_ID:
	case PARAM_AGGREGATE_ID:
		if (prm->root == PARAM_EVENT_ID && !ev->has_event_id) {
			pv->type = SQLITE_NULL;
			break;
		}
		cqrs_uuid_format(prm->root == PARAM_EVENT_ID ? ev->event_id : ev->aggregate_id,
				 uuid);
		rc = set_text(pv, uuid, 36, true);
		break;
	case PARAM_AGGREGATE_TYPE:
		rc = set_text(pv, ev->aggregate_type, strlen(ev->aggregate_type), false);
		break;
	case PARAM_EVENT_TYPE:
		rc = set_text(pv, ev->event_type, strlen(ev->event_type), false);
		break;
	case PARAM_TIMESTAMP:
		if (ev->timestamp[0] == '\0')
			pv->type = SQLITE_NULL;
		else
			rc = set_text(pv, ev->timestamp, strlen(ev->timestamp), false);
		break;
	case PARAM_DATA:
	case PARAM_METADATA: {
		const char *v = prm->root == PARAM_DATA ? ev->data : ev->metadata;
		size_t n = prm->root == PARAM_DATA ? ev->data_len : ev->metadata_len;
		bool found = true;
		for (size_t k = 0; k < prm->npath && found; k++) {
			if (n > 0 && v[0] == '{')
				found = cqrs_json_get(v, n, prm->path[k], &v, &n);
			else if (n > 0 && v[0] == '[')
				found = json_index(v, n, prm->path[k], &v, &n);
			else
				found = false;
		}
		if (!found)
			pv->type = SQLITE_NULL;
		else
			rc = json_to_pval(pv, v, n);
		break;
	}
	case PARAM_ROOT_COUNT: break;
	}
	if (rc < 0) {
		oom(err);
		return NULL;
	}
	pv->gen = p->gen;
	return pv;
}

static int run_statement(cqrs_projector *p, struct rt_proj *rp, const struct rt_handler *h,
			 const struct rt_stmt *s, const cqrs_event *ev, cqrs_error *err)
{
	sqlite3_stmt *st = s->st;
	for (size_t k = 0; k < s->sql->nparams; k++) {
		struct pval *pv = resolve(p, s->sql->params[k], ev, err);
		if (pv == NULL)
			return -1;
		int idx = (int)k + 1;
		if (pv->type == SQLITE_INTEGER)
			sqlite3_bind_int64(st, idx, pv->i);
		else if (pv->type == SQLITE_TEXT)
			sqlite3_bind_text(st, idx, pv->text, (int)pv->len, SQLITE_STATIC);
		else
			sqlite3_bind_null(st, idx);
	}
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	if (rc == SQLITE_DONE) {
		sqlite3_reset(st);
		return 0;
	}
	rc = sqlite3_reset(st);
	if ((rc & 0xff) == SQLITE_INTERRUPT && p->deadline.expired)
		return cqrs_fail(
			err, CQRS_EXIT_LIMIT,
			"event %lld (%s): %s:%d: projection '%s', on %s: stopped after %lld "
			"ms, the time limit of one event (--timeout)",
			(long long)ev->sequence, ev->event_type, s->sql->file,
			cqrs_sql_line(s->sql, -1), rp->def->name, h->h->event_type,
			(long long)p->deadline.timeout_ms);
	int code = (rc & 0xff) == SQLITE_READONLY || (rc & 0xff) == SQLITE_PERM
			   ? CQRS_EXIT_NOPERM
			   : cqrs_sqlite_db_statement_code(p->db, rc, CQRS_EXIT_DATAERR);
	return cqrs_fail(err, code, "event %lld (%s): %s:%d: projection '%s', on %s: %s",
			 (long long)ev->sequence, ev->event_type, s->sql->file,
			 cqrs_sql_line(s->sql, -1), rp->def->name, h->h->event_type,
			 cqrs_sqlite_errmsg(p->db, rc));
}

static void show_progress(cqrs_projector *p, bool done)
{
	if (!p->progress)
		return;
	time_t now = time(NULL);
	if (!done && now == p->progress_last)
		return;
	p->progress_last = now;
	cqrs_progress_show(p->progress_what, p->progress_done, p->progress_total, done);
}

static int changed_event(const cqrs_event *ev, cqrs_error *err)
{
	return cqrs_fail(err, CQRS_EXIT_DATAERR,
			 "event %lld (%s): its bytes do not match its hash: it was changed "
			 "after it was appended (cqrs-read --verify checks the store); "
			 "nothing of this batch was applied",
			 (long long)ev->sequence, ev->event_type);
}

int cqrs_event_check_hash(const cqrs_event *ev, const uint8_t prev[CQRS_HASH_LEN], cqrs_error *err)
{
	uint8_t h[CQRS_HASH_LEN];
	/* the hash covers the stored form (decrypted fields: erasure) */
	cqrs_event_hash(cqrs_event_stored_form(ev), prev, h);
	return memcmp(h, ev->hash, CQRS_HASH_LEN) == 0 ? 0 : changed_event(ev, err);
}

/* Recomputes the event's hash from its bytes and the hash of the event
 * before it: an event changed in the store after it was appended, or one
 * of another store, is never applied. */
static int verify_event(cqrs_projector *p, struct rt_proj *rp, const cqrs_event *ev,
			cqrs_error *err)
{
	static const uint8_t genesis[CQRS_HASH_LEN];
	const uint8_t *prev = rp->has_hash ? rp->hash : rp->applied == 0 ? genesis : NULL;
	if (prev == NULL) /* a checkpoint written without its hash */
		return 0;
	if (p->hv_seq != ev->sequence || memcmp(p->hv_prev, prev, CQRS_HASH_LEN) != 0) {
		/* the hash covers the stored form (decrypted fields: erasure) */
		cqrs_event_hash(cqrs_event_stored_form(ev), prev, p->hv);
		memcpy(p->hv_prev, prev, CQRS_HASH_LEN);
		p->hv_seq = ev->sequence;
	}
	if (memcmp(p->hv, ev->hash, CQRS_HASH_LEN) == 0)
		return 0;
	if (rp->verified || rp->applied == 0)
		return changed_event(ev, err);
	return cqrs_fail(err, CQRS_EXIT_DATAERR,
			 "event %lld does not follow event %lld that projection '%s' applied "
			 "last (the hash chain differs): were these views built from another "
			 "store?  Rebuild them with cqrs-project --rebuild",
			 (long long)ev->sequence, (long long)rp->applied, rp->def->name);
}

static int apply_event(cqrs_projector *p, const cqrs_event *ev, cqrs_error *err);

/* What is logged while an event is applied names it (sequence, aggregate,
 * correlation); the context costs a few stores when nothing is. */
int cqrs_projector_apply(cqrs_projector *p, const cqrs_event *ev, cqrs_error *err)
{
	cqrs_log_context_event(ev);
	int r = apply_event(p, ev, err);
	cqrs_log_context_event(NULL);
	return r;
}

static int apply_event(cqrs_projector *p, const cqrs_event *ev, cqrs_error *err)
{
	if (!p->prepared)
		return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "apply before sync");
	if (ev->sequence <= 0)
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "event has no 'sequence': cqrs-project applies stored events "
				 "(the output of cqrs-read or cqrs-append)");
	if (!p->in_txn) {
		int rc = sqlite3_exec(p->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
		if (rc != SQLITE_OK)
			return db_error(p, rc, "cannot start a transaction", err);
		p->in_txn = true;
	}
	next_event(p);
	/* The hash covers the stored form, which verify_event checks; the
	 * projections read the current form (cqrs-upcasters(5)), made here
	 * for events from the store and from input alike. */
	cqrs_event current = *ev;
	if ((p->upcaster == NULL && (p->upcaster = cqrs_upcaster_new(err)) == NULL) ||
	    cqrs_upcaster_apply(p->upcaster, &current, err) < 0)
		goto fail;
	bool any = false;
	uint64_t th = type_hash(ev->event_type);
	double event_time = p->metrics ? cqrs_metrics_timestamp_seconds(ev->timestamp) : 0;
	cqrs_deadline_start(&p->deadline);
	for (size_t i = 0; i < p->np; i++) {
		struct rt_proj *rp = &p->p[i];
		if (ev->sequence <= rp->applied || ev->sequence > rp->stop)
			continue;
		if (!p->sparse && ev->sequence != rp->applied + 1) {
			cqrs_fail(err, CQRS_EXIT_DATAERR,
				  "event %lld follows sequence %lld, where projection '%s' stands: "
				  "events %lld to %lld are missing",
				  (long long)ev->sequence, (long long)rp->applied, rp->def->name,
				  (long long)rp->applied + 1, (long long)ev->sequence - 1);
			goto fail;
		}
		if (!p->sparse && !p->fed && ev->has_hash && verify_event(p, rp, ev, err) < 0)
			goto fail;
		rp->verified = true;
		/* timestamps need not grow with the sequence: a history as of
		 * a time passes over a later event, and goes on */
		bool later = p->until != NULL && strcmp(ev->timestamp, p->until) > 0;
		int64_t parked_before = p->parked_new;
		if (!later && apply_or_park(p, rp, &current, th, err) < 0)
			goto fail;
		if (p->metrics)
			metrics_event(rp, event_time, p->parked_new > parked_before);
		rp->applied = ev->sequence;
		if (ev->has_hash)
			memcpy(rp->hash, ev->hash, CQRS_HASH_LEN);
		rp->has_hash = ev->has_hash;
		memcpy(rp->ts, ev->timestamp, sizeof rp->ts);
		any = true;
	}
	cqrs_deadline_stop(&p->deadline);
	if (any) {
		p->applied_total++;
		p->progress_done++;
		if (p->shared_done != NULL)
			atomic_fetch_add_explicit(p->shared_done, 1, memory_order_relaxed);
		show_progress(p, false);
	}
	if (++p->in_batch >= p->batch)
		return cqrs_projector_commit(p, err);
	return 0;
fail:
	cqrs_deadline_stop(&p->deadline);
	cqrs_projector_rollback(p);
	return -1;
}

/* The sequence of the last event whose time is until or earlier; 0: none. */
static int64_t last_at_or_before(cqrs_store *st, const char *until, cqrs_error *err)
{
	cqrs_filter f = { .until = until, .reverse = true, .limit = 1 };
	cqrs_cursor *c = cqrs_store_read(st, &f, err);
	if (c == NULL)
		return -1;
	cqrs_event ev;
	int r = cqrs_cursor_next(c, &ev, err);
	int64_t seq = r == 1 ? ev.sequence : r == 0 ? 0 : -1;
	cqrs_cursor_close(c);
	return seq;
}

/* The checkpoints are witnesses of how far the store went: a store that
 * no longer holds the event the furthest checkpoint names, with its hash,
 * was rolled back (CQRS_EXIT_BEHIND), and nothing is applied. */
static int check_witness(cqrs_projector *p, cqrs_store *st, cqrs_error *err)
{
	const struct rt_proj *far = NULL;
	for (size_t i = 0; i < p->np; i++) {
		const struct rt_proj *rp = &p->p[i];
		if (!rp->absent && rp->ckpt_has_hash && rp->checkpoint > 0 &&
		    (far == NULL || rp->checkpoint > far->checkpoint))
			far = rp;
	}
	if (far == NULL)
		return 0;
	char what[300];
	snprintf(what, sizeof what, "the checkpoint of projection '%s'", far->def->name);
	return cqrs_store_expect(st, p->path, far->checkpoint, far->ckpt_hash, what, err);
}

/* Reads from the store what follows the lowest checkpoint, up to to and
 * until (0 and NULL: the end), until nothing new is left. */
/* What a catch-up applies up to: stop, the store's last event, until;
 * 0: nothing.  Also takes the parked events that apply again. */
static int64_t catch_up_begin(cqrs_projector *p, cqrs_store *st, int64_t to, const char *until,
			      cqrs_error *err)
{
	if (check_witness(p, st, err) < 0)
		return -1;
	int64_t stop = projector_stop(p);
	if (stop > 0 && (to == 0 || stop < to))
		to = stop;
	/* What the store holds now, and no further: a writer faster than
	 * the projections must not keep a run from cron going for ever. */
	int64_t last = cqrs_store_last_sequence(st, err);
	if (last <= 0)
		return last;
	if (to == 0 || to > last)
		to = last;
	if (until != NULL) {
		/* up to the last event of that time or earlier, whatever the
		 * times of the events before it */
		int64_t upto = last_at_or_before(st, until, err);
		if (upto <= 0)
			return upto;
		if (upto < to)
			to = upto;
	}
	p->until = until;
	if (!p->replayed && cqrs_projector_replay(p, st, err) < 0)
		return -1;
	if (p->progress) {
		int64_t pos = cqrs_projector_position(p);
		p->progress_total = pos >= 0 && to > pos ? to - pos : 0;
		p->progress_done = 0;
	}
	return to;
}

/* After the last batch: what was parked may apply now that later events
 * are in (a customer registered after its order). */
static int catch_up_end(cqrs_projector *p, cqrs_store *st, int64_t applied_before, cqrs_error *err)
{
	if (p->progress && p->progress_done > 0)
		show_progress(p, true);
	if (p->applied_total > applied_before && parked_any(p))
		return cqrs_projector_replay(p, st, err);
	return 0;
}

static int catch_up_from(cqrs_projector *p, cqrs_store *st, int64_t to, cqrs_error *err)
{
	for (;;) {
		int64_t pos = cqrs_projector_position(p);
		if (pos < 0 || (to > 0 && pos >= to))
			break;
		cqrs_filter f = { .after = pos, .to = to };
		cqrs_cursor *c = cqrs_store_read(st, &f, err);
		if (c == NULL)
			return -1;
		cqrs_event ev;
		int r;
		int64_t n = 0;
		while ((r = cqrs_cursor_next(c, &ev, err)) == 1) {
			if (cqrs_projector_apply(p, &ev, err) < 0) {
				cqrs_cursor_close(c);
				if (!p->redo)
					return -1;
				/* rolled back: the batch again, each event in a
				 * savepoint (parked events, next_event) */
				p->redo = false;
				p->careful = true;
				break;
			}
			n++;
		}
		if (r == 1)
			continue;
		cqrs_cursor_close(c);
		if (r < 0) {
			cqrs_projector_rollback(p);
			return -1;
		}
		if (cqrs_projector_commit(p, err) < 0)
			return -1;
		if (n == 0)
			break;
	}
	return 0;
}

int cqrs_projector_catch_up(cqrs_projector *p, cqrs_store *st, int64_t to, const char *until,
			    cqrs_error *err)
{
	to = catch_up_begin(p, st, to, until, err);
	if (to <= 0)
		return (int)to;
	int64_t applied_before = p->applied_total;
	if (catch_up_from(p, st, to, err) < 0)
		return -1;
	return catch_up_end(p, st, applied_before, err);
}

/* --- a parallel build's feed ------------------------------------------------ */

int64_t cqrs_projector_fed_begin(cqrs_projector *p, cqrs_store *st, int64_t to, const char *until,
				 cqrs_error *err)
{
	p->fed_to = catch_up_begin(p, st, to, until, err);
	if (p->fed_to > 0 && cqrs_projector_position(p) < 0)
		p->fed_to = 0; /* every projection is at its stop already */
	p->fed = p->fed_to > 0;
	p->fed_applied_before = p->applied_total;
	return p->fed_to;
}

int cqrs_projector_fed_apply(cqrs_projector *p, const cqrs_event *ev, cqrs_error *err)
{
	if (!p->fed || ev->sequence > p->fed_to)
		return 0;
	if (cqrs_projector_apply(p, ev, err) == 0)
		return 0;
	if (!p->redo)
		return -1;
	/* rolled back: again from the store, each event in a savepoint,
	 * each hash recomputed here */
	p->redo = false;
	p->careful = true;
	p->fed = false;
	return 1;
}

void cqrs_projector_fed_skip(cqrs_projector *p)
{
	p->fed = false;
}

int cqrs_projector_fed_end(cqrs_projector *p, cqrs_store *st, cqrs_error *err)
{
	bool from_store = !p->fed && p->fed_to > 0;
	p->fed = false;
	if (p->fed_to <= 0)
		return 0;
	if (from_store ? catch_up_from(p, st, p->fed_to, err) < 0
		       : cqrs_projector_commit(p, err) < 0)
		return -1;
	return catch_up_end(p, st, p->fed_applied_before, err);
}

/* One event from the input: what a projection already has is skipped,
 * what is missing before it is read from the store first. */
int cqrs_projector_feed(cqrs_projector *p, const cqrs_event *ev, const char *store_path,
			cqrs_store **st, cqrs_error *err)
{
	if (ev->sequence <= 0)
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "event has no 'sequence': cqrs-project applies stored events "
				 "(the output of cqrs-read or cqrs-append)");
	/* input cannot be read again: every event in a savepoint */
	p->careful = true;
	if (!p->replayed && parked_any(p)) {
		if (*st == NULL && (*st = cqrs_store_open(store_path, CQRS_OPEN_READ, err)) == NULL)
			return -1;
		/* projections consume the current form (erasure: decrypted) */
		if (cqrs_store_decrypt(*st, err) < 0)
			return -1;
		if (cqrs_projector_replay(p, *st, err) < 0)
			return -1;
	}
	int64_t pos = cqrs_projector_position(p);
	if (pos >= 0 && ev->sequence > pos + 1) {
		if (*st == NULL) {
			*st = cqrs_store_open(store_path, CQRS_OPEN_READ, err);
			if (*st == NULL) {
				cqrs_error e2 = *err;
				return cqrs_fail(err, e2.code,
						 "events %lld to %lld are missing from the input "
						 "and cannot be read from the store: %s",
						 (long long)pos + 1, (long long)ev->sequence - 1,
						 e2.msg);
			}
			if (cqrs_store_decrypt(*st, err) < 0)
				return -1;
		}
		cqrs_filter f = { .after = pos, .to = ev->sequence - 1 };
		cqrs_cursor *c = cqrs_store_read(*st, &f, err);
		if (c == NULL)
			return -1;
		cqrs_event gap;
		int r;
		while ((r = cqrs_cursor_next(c, &gap, err)) == 1)
			if (cqrs_projector_apply(p, &gap, err) < 0) {
				r = -1;
				break;
			}
		cqrs_cursor_close(c);
		if (r < 0)
			return -1;
	}
	return cqrs_projector_apply(p, ev, err);
}

/* --- parked events -----------------------------------------------------------
 *
 * A projection that cannot apply an event (its SQL fails on the event's
 * data: a constraint, a type, an overflow, RAISE) parks it: the event is
 * recorded in parked_events with the error, the projection's changes for
 * it are undone (a savepoint when more than one statement ran) and its
 * checkpoint moves on, so that the other projections and the other
 * aggregates go on.  Later events of the same aggregate are parked behind
 * it, in order, since they would be applied to a state that misses it.
 * Each run first retries the parked events, per aggregate in order, and
 * removes those that apply now.  Errors that are not the event's
 * (busy, I/O, memory) still stop the run. */

static void next_event(cqrs_projector *p)
{
	p->gen++;
	if (p->gen == 0) { /* wrapped: forget every cached value */
		for (size_t i = 0; i < p->ps->nparams; i++)
			p->vals[i].gen = 0;
		p->gen = 1;
	}
}

static int prepare_parking(cqrs_projector *p, cqrs_error *err)
{
	static const char *const sql[] = { "SAVEPOINT cqrs_event", "RELEASE cqrs_event",
					   "ROLLBACK TO cqrs_event" };
	for (size_t i = 0; i < 3; i++) {
		int rc = sqlite3_prepare_v3(p->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &p->sp[i],
					    NULL);
		if (rc != SQLITE_OK)
			return db_error(p, rc, "cannot prepare", err);
	}
	int rc =
		sqlite3_prepare_v3(p->db,
				   "INSERT INTO parked_events (projection, sequence, aggregate_id,"
				   " event_type, error, parked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
				   -1, SQLITE_PREPARE_PERSISTENT, &p->park_put, NULL);
	return rc == SQLITE_OK ? 0 : db_error(p, rc, "cannot prepare", err);
}

static int step_once(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int cmp_agg(const void *a, const void *b)
{
	return memcmp(a, b, CQRS_UUID_LEN);
}

static struct parked_agg *parked_find(const struct rt_proj *rp, const uint8_t id[CQRS_UUID_LEN])
{
	if (rp->nparked == 0)
		return NULL;
	return bsearch(id, rp->parked, rp->nparked, sizeof *rp->parked, cmp_agg);
}

static int parked_add(struct rt_proj *rp, const uint8_t id[CQRS_UUID_LEN], int64_t seq)
{
	if (parked_find(rp, id) != NULL)
		return 0;
	if (rp->nparked == rp->capparked) {
		size_t cap = rp->capparked ? rp->capparked * 2 : 8;
		struct parked_agg *n = realloc(rp->parked, cap * sizeof *n);
		if (n == NULL)
			return -1;
		rp->parked = n;
		rp->capparked = cap;
	}
	size_t at = 0;
	while (at < rp->nparked && memcmp(rp->parked[at].id, id, CQRS_UUID_LEN) < 0)
		at++;
	memmove(rp->parked + at + 1, rp->parked + at, (rp->nparked - at) * sizeof *rp->parked);
	memcpy(rp->parked[at].id, id, CQRS_UUID_LEN);
	rp->parked[at].first = seq;
	rp->nparked++;
	return 0;
}

static bool parked_any(const cqrs_projector *p)
{
	for (size_t i = 0; i < p->np; i++)
		if (p->p[i].nparked > 0)
			return true;
	return false;
}

/* What parked_events holds, in memory: the aggregates per projection. */
static int parked_load(cqrs_projector *p, cqrs_error *err)
{
	for (size_t i = 0; i < p->np; i++)
		p->p[i].nparked = 0;
	sqlite3_stmt *q;
	int rc = sqlite3_prepare_v2(p->db,
				    "SELECT projection, aggregate_id, min(sequence) FROM"
				    " parked_events GROUP BY projection, aggregate_id",
				    -1, &q, NULL);
	if (rc != SQLITE_OK)
		return err ? db_error(p, rc, "cannot read the parked events", err) : -1;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(q, 0);
		const char *agg = (const char *)sqlite3_column_text(q, 1);
		uint8_t id[CQRS_UUID_LEN];
		if (name == NULL || agg == NULL || cqrs_uuid_parse(agg, strlen(agg), id) < 0)
			continue;
		for (size_t i = 0; i < p->np; i++)
			if (strcmp(p->p[i].def->name, name) == 0 &&
			    parked_add(&p->p[i], id, sqlite3_column_int64(q, 2)) < 0) {
				sqlite3_finalize(q);
				return err ? oom(err) : -1;
			}
	}
	sqlite3_finalize(q);
	if (rc != SQLITE_DONE)
		return err ? db_error(p, rc, "cannot read the parked events", err) : -1;
	return 0;
}

static bool handler_matches(const struct rt_handler *hd, const cqrs_event *ev, uint64_t th)
{
	return hd->type_hash == 0 ||
	       (hd->type_hash == th && strcmp(hd->h->event_type, ev->event_type) == 0);
}

static bool handles(const struct rt_proj *rp, const cqrs_event *ev, uint64_t th)
{
	for (size_t h = 0; h < rp->nhandlers; h++)
		if (handler_matches(&rp->handlers[h], ev, th))
			return true;
	return false;
}

/* Runs rp's statements for ev.  1: the event's data made one fail (code
 * 65), its changes undone, *err says why; -1: any other failure. */
static int run_handlers(cqrs_projector *p, struct rt_proj *rp, const cqrs_event *ev, uint64_t th,
			bool savepoint, cqrs_error *err)
{
	size_t nst = 0;
	for (size_t h = 0; h < rp->nhandlers; h++)
		if (handler_matches(&rp->handlers[h], ev, th))
			nst += rp->handlers[h].h->nsql;
	if (nst == 0)
		return 0;
	/* One statement undoes itself when it fails; more need a savepoint,
	 * which costs (SQLite copies each page the event touches): taken
	 * only when an event failed half-way in this batch before. */
	savepoint = savepoint || (p->careful && nst > 1);
	size_t ran = 0;
	int rc;
	if (savepoint && (rc = step_once(p->sp[0])) != SQLITE_OK)
		return db_error(p, rc, "cannot start a savepoint", err);
	for (size_t h = 0; h < rp->nhandlers; h++) {
		const struct rt_handler *hd = &rp->handlers[h];
		if (!handler_matches(hd, ev, th))
			continue;
		for (size_t k = 0; k < hd->h->nsql; k++) {
			if (run_statement(p, rp, hd, &hd->stmts[k], ev, err) == 0) {
				ran++;
				continue;
			}
			if (err->code != CQRS_EXIT_DATAERR)
				return -1;
			if (!savepoint && ran > 0 && !p->sparse) {
				p->redo = true; /* half applied: the batch again */
				return -1;
			}
			if (savepoint && ((rc = step_once(p->sp[2])) != SQLITE_OK ||
					  (rc = step_once(p->sp[1])) != SQLITE_OK))
				return db_error(p, rc, "cannot undo a parked event", err);
			return 1;
		}
	}
	if (savepoint && (rc = step_once(p->sp[1])) != SQLITE_OK)
		return db_error(p, rc, "cannot release a savepoint", err);
	return 0;
}

static int park(cqrs_projector *p, struct rt_proj *rp, const cqrs_event *ev, const char *why,
		cqrs_error *err)
{
	char id[37], now[CQRS_TIMESTAMP_LEN + 1];
	cqrs_uuid_format(ev->aggregate_id, id);
	cqrs_timestamp_now(now);
	sqlite3_stmt *q = p->park_put;
	sqlite3_bind_text(q, 1, rp->def->name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, ev->sequence);
	sqlite3_bind_text(q, 3, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, ev->event_type, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 5, why, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 6, now, -1, SQLITE_STATIC);
	int rc = step_once(q);
	sqlite3_clear_bindings(q);
	if (rc != SQLITE_OK)
		return db_error(p, rc, "cannot park an event", err);
	if (parked_add(rp, ev->aggregate_id, ev->sequence) < 0)
		return oom(err);
	p->parked_new++;
	/* -v names each one, with its ids in the JSON form */
	if (cqrs_log_verbose())
		cqrs_warn("projection '%s' parked event %lld (%s): %s", rp->def->name,
			  (long long)ev->sequence, ev->event_type, why);
	return 0;
}

/* The error without the "event N (Type): " that parked_events has apart. */
static const char *park_reason(const cqrs_error *err)
{
	const char *s = strstr(err->msg, "): ");
	return s != NULL && strncmp(err->msg, "event ", 6) == 0 ? s + 3 : err->msg;
}

static int apply_or_park(cqrs_projector *p, struct rt_proj *rp, const cqrs_event *ev, uint64_t th,
			 cqrs_error *err)
{
	/* the events of one aggregate in memory (a temporal query): an
	 * error is the query's */
	bool parking = !p->sparse;
	const struct parked_agg *pa = parking ? parked_find(rp, ev->aggregate_id) : NULL;
	if (pa != NULL && !handles(rp, ev, th))
		return 0; /* nothing to apply, nothing to keep in order */
	if (pa != NULL) {
		char why[96];
		snprintf(why, sizeof why, "behind parked event %lld of the same aggregate",
			 (long long)pa->first);
		return park(p, rp, ev, why, err);
	}
	int r = run_handlers(p, rp, ev, th, false, err);
	if (r <= 0 || !parking)
		return r < 0 || r == 1 ? -1 : 0;
	char why[sizeof err->msg];
	snprintf(why, sizeof why, "%s", park_reason(err));
	return park(p, rp, ev, why, err);
}

int64_t cqrs_projector_parked_new(const cqrs_projector *p)
{
	return p->parked_new;
}

/* The parked events of rp, per aggregate in order: read from the store and
 * applied; the first that fails again stops its aggregate. */
static int replay_projection(cqrs_projector *p, struct rt_proj *rp, cqrs_store *st, cqrs_error *err)
{
	sqlite3_stmt *list = NULL, *done = NULL, *again = NULL;
	int rc = sqlite3_prepare_v2(p->db,
				    "SELECT sequence, aggregate_id FROM parked_events"
				    " WHERE projection = ?1 ORDER BY aggregate_id, sequence",
				    -1, &list, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(p->db,
					"DELETE FROM parked_events WHERE projection = ?1"
					" AND sequence = ?2",
					-1, &done, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(p->db,
					"UPDATE parked_events SET error = ?3 WHERE projection = ?1"
					" AND sequence = ?2 AND error <> ?3",
					-1, &again, NULL);
	int result = rc == SQLITE_OK ? 0 : db_error(p, rc, "cannot read the parked events", err);
	if (result == 0) {
		sqlite3_bind_text(list, 1, rp->def->name, -1, SQLITE_STATIC);
		sqlite3_bind_text(done, 1, rp->def->name, -1, SQLITE_STATIC);
		sqlite3_bind_text(again, 1, rp->def->name, -1, SQLITE_STATIC);
	}
	/* the list is read to its end before anything changes */
	int64_t *seqs = NULL;
	char(*aggs)[37] = NULL;
	size_t n = 0, cap = 0;
	while (result == 0 && (rc = sqlite3_step(list)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			int64_t *ns = realloc(seqs, cap * sizeof *ns);
			if (ns != NULL)
				seqs = ns;
			char(*na)[37] = ns ? realloc(aggs, cap * sizeof *na) : NULL;
			if (na == NULL) {
				result = oom(err);
				break;
			}
			aggs = na;
		}
		seqs[n] = sqlite3_column_int64(list, 0);
		snprintf(aggs[n], sizeof aggs[n], "%s", (const char *)sqlite3_column_text(list, 1));
		n++;
	}
	if (result == 0 && rc != SQLITE_DONE)
		result = db_error(p, rc, "cannot read the parked events", err);
	const char *stuck = "";
	for (size_t i = 0; i < n && result == 0; i++) {
		if (strcmp(aggs[i], stuck) == 0)
			continue;
		cqrs_filter f = { .after = seqs[i] - 1, .to = seqs[i], .limit = 1 };
		cqrs_cursor *c = cqrs_store_read(st, &f, err);
		cqrs_event ev;
		int r = c == NULL ? -1 : cqrs_cursor_next(c, &ev, err);
		if (r == 1) {
			next_event(p);
			r = run_handlers(p, rp, &ev, type_hash(ev.event_type), true, err);
			if (r == 0)
				r = 2;
		} else if (r == 0) {
			/* not in the store (another store's views): stays parked */
			r = 1;
			cqrs_fail(err, CQRS_EXIT_DATAERR, "event %lld is not in the store",
				  (long long)seqs[i]);
		}
		cqrs_cursor_close(c);
		if (r < 0) {
			result = -1;
		} else if (r == 1) {
			stuck = aggs[i];
			sqlite3_bind_int64(again, 2, seqs[i]);
			/* not a copy that could fail: err outlives the step */
			sqlite3_bind_text(again, 3, park_reason(err), -1, SQLITE_STATIC);
			if ((rc = step_once(again)) != SQLITE_OK)
				result = db_error(p, rc, "cannot park an event", err);
		} else {
			sqlite3_bind_int64(done, 2, seqs[i]);
			if ((rc = step_once(done)) != SQLITE_OK)
				result = db_error(p, rc, "cannot unpark an event", err);
		}
	}
	free(seqs);
	free(aggs);
	sqlite3_finalize(list);
	sqlite3_finalize(done);
	sqlite3_finalize(again);
	return result;
}

int cqrs_projector_replay(cqrs_projector *p, cqrs_store *st, cqrs_error *err)
{
	p->replayed = true;
	if (p->sparse || !parked_any(p))
		return 0;
	if (!p->in_txn) {
		int rc = sqlite3_exec(p->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
		if (rc != SQLITE_OK)
			return db_error(p, rc, "cannot start a transaction", err);
		p->in_txn = true;
	}
	for (size_t i = 0; i < p->np; i++) {
		struct rt_proj *rp = &p->p[i];
		if (rp->nparked == 0 || rp->absent)
			continue;
		if (replay_projection(p, rp, st, err) < 0) {
			cqrs_projector_rollback(p);
			return -1;
		}
	}
	if (cqrs_projector_commit(p, err) < 0)
		return -1;
	return parked_load(p, err);
}

/* --- a changed projection ------------------------------------------------------ */

/* In sync's transaction: drops what the old definition of d created, its
 * parked events and its checkpoint, so that it is registered again and
 * applies every event from the first (cqrs-project(1), CHANGED
 * PROJECTIONS). */
static int reset_projection(cqrs_projector *p, const struct cqrs_projection *d,
			    const char *old_tables, cqrs_error *err)
{
	const char *t = old_tables ? old_tables : "";
	int rc = SQLITE_OK;
	while (*t != '\0' && rc == SQLITE_OK) {
		size_t len = strcspn(t, " ");
		char name[256];
		if (len > 0 && len < sizeof name) {
			memcpy(name, t, len);
			name[len] = '\0';
			/* a table or a view; its indexes and triggers go with it */
			char *sql = sqlite3_mprintf(
				"SELECT CASE type WHEN 'view' THEN 'DROP VIEW \"' ELSE 'DROP TABLE "
				"\"' END || replace(name, '\"', '\"\"') || '\"' FROM sqlite_schema "
				"WHERE name = %Q AND type IN ('table', 'view')",
				name);
			sqlite3_stmt *q = NULL;
			rc = sql ? sqlite3_prepare_v2(p->db, sql, -1, &q, NULL) : SQLITE_NOMEM;
			sqlite3_free(sql);
			char *drop = NULL;
			if (rc == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
				drop = sqlite3_mprintf("%s", sqlite3_column_text(q, 0));
			sqlite3_finalize(q);
			if (rc == SQLITE_OK && drop != NULL)
				rc = sqlite3_exec(p->db, drop, NULL, NULL, NULL);
			sqlite3_free(drop);
		}
		t += len;
		t += strspn(t, " ");
	}
	char *sql = sqlite3_mprintf("DELETE FROM parked_events WHERE projection = %Q;"
				    " DELETE FROM cqrs_checkpoints WHERE projection = %Q",
				    d->name, d->name);
	if (rc == SQLITE_OK)
		rc = sql ? sqlite3_exec(p->db, sql, NULL, NULL, NULL) : SQLITE_NOMEM;
	sqlite3_free(sql);
	return rc == SQLITE_OK ? 0 : db_error(p, rc, "cannot rebuild a changed projection", err);
}
