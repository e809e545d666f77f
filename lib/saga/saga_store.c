/*
 * The saga runner's tables, whatever the backend: this file passes each
 * call to the implementation for the store's backend (saga_store_sqlite.c
 * in the SQLite file, saga_store_pg.c in the PostgreSQL schema).  The
 * engine (saga.c) and the reports (saga_report.c) see only these calls.
 */
#include "config.h"

#include <string.h>

#include "saga/saga_impl.h"
#include "store/store_impl.h"
#include "banned.h"

const char *const saga_status_names[4] = { "RUNNING", "COMPLETED", "COMPENSATING", "FAILED" };
const char *const saga_breaker_names[3] = { "closed", "open", "half_open" };

const char *saga_status_name(enum saga_status s)
{
	return saga_status_names[s];
}

enum saga_status saga_status_of(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (s != NULL && strcmp(s, saga_status_names[i]) == 0)
			return (enum saga_status)i;
	return SAGA_FAILED;
}

enum breaker_state saga_breaker_of(const char *s)
{
	for (int i = 0; i < 3; i++)
		if (s != NULL && strcmp(s, saga_breaker_names[i]) == 0)
			return (enum breaker_state)i;
	return BREAKER_CLOSED;
}

bool cqrs_saga_runners_share(cqrs_store *st)
{
	return cqrs_pg_handle(st) != NULL;
}

struct saga_db *saga_db_open(cqrs_store *st, cqrs_error *err)
{
	/* each backend's open says nothing when the store is not its own */
	cqrs_error e = { 0 };
	struct saga_db *db = saga_db_sqlite_open(st, &e);
	if (db == NULL && e.code == 0)
		db = saga_db_pg_open(st, &e);
	if (db == NULL && e.code == 0)
		cqrs_fail(&e, CQRS_EXIT_CONFIG, "sagas need a SQLite or PostgreSQL store");
	if (db == NULL) {
		*err = e;
		return NULL;
	}
	db->st = st;
	return db;
}

void saga_db_close(struct saga_db *db)
{
	if (db != NULL)
		db->ops->close(db);
}

int saga_db_set_lease(struct saga_db *db, int64_t lease_us, cqrs_error *err)
{
	return db->ops->set_lease(db, lease_us, err);
}

int saga_db_release(struct saga_db *db, cqrs_error *err)
{
	return db->ops->release(db, err);
}

int saga_db_insert(struct saga_db *db, struct saga_inst *in, cqrs_error *err)
{
	return db->ops->insert(db, in, err);
}

int saga_db_update(struct saga_db *db, struct saga_inst *in, cqrs_error *err)
{
	return db->ops->update(db, in, err);
}

int saga_db_load(struct saga_db *db, const char *id, struct saga_inst *in, cqrs_error *err)
{
	size_t n = strlen(id);
	if (n != 36 && (n < 8 || n > 36))
		return 0;
	return db->ops->load(db, id, in, err);
}

int saga_db_reload(struct saga_db *db, struct saga_inst *in, cqrs_error *err)
{
	return db->ops->reload(db, in, err);
}

int saga_db_candidates(struct saga_db *db, int64_t after_rowid, int64_t now, int64_t limit,
		       int64_t *rowids, size_t *n, cqrs_error *err)
{
	return db->ops->candidates(db, after_rowid, now, limit, rowids, n, err);
}

int saga_db_load_rowid(struct saga_db *db, int64_t rowid, int64_t now, struct saga_inst *in,
		       cqrs_error *err)
{
	return db->ops->load_rowid(db, rowid, now, in, err);
}

int64_t saga_db_checkpoint(struct saga_db *db, const char *name, cqrs_error *err)
{
	int64_t seq = 0;
	return db->ops->checkpoint_get(db, name, &seq, err) < 0 ? -1 : seq;
}

int saga_db_checkpoint_get(struct saga_db *db, const char *name, int64_t *seq, cqrs_error *err)
{
	return db->ops->checkpoint_get(db, name, seq, err);
}

int saga_db_load_start(struct saga_db *db, const char *type, int64_t start_sequence,
		       struct saga_inst *in, cqrs_error *err)
{
	return db->ops->load_start(db, type, start_sequence, in, err);
}

int saga_db_set_checkpoint(struct saga_db *db, const char *name, int64_t seq, int64_t now,
			   cqrs_error *err)
{
	return db->ops->set_checkpoint(db, name, seq, now, err);
}

int64_t saga_db_next_due(struct saga_db *db, int64_t now, cqrs_error *err)
{
	return db->ops->next_due(db, now, err);
}

int saga_db_breaker_get(struct saga_db *db, const char *name, struct breaker_row *b,
			cqrs_error *err)
{
	return db->ops->breaker_get(db, name, b, err);
}

int saga_db_breaker_put(struct saga_db *db, const char *name, const struct breaker_row *b,
			int64_t now, cqrs_error *err)
{
	return db->ops->breaker_put(db, name, b, now, err);
}

int saga_db_counts(struct saga_db *db, const char *stuck_before,
		   void (*fn)(void *, const struct saga_type_counts *), void *arg, cqrs_error *err)
{
	return db->ops->counts(db, stuck_before, fn, arg, err);
}

int saga_db_attention(struct saga_db *db, const char *stuck_before,
		      void (*fn)(void *, const struct saga_attention *), void *arg, cqrs_error *err)
{
	return db->ops->attention(db, stuck_before, fn, arg, err);
}

int saga_db_breakers(struct saga_db *db, void (*fn)(void *, const struct cqrs_saga_breaker *),
		     void *arg, cqrs_error *err)
{
	return db->ops->breakers(db, fn, arg, err);
}

int saga_db_read_begin(struct saga_db *db, cqrs_error *err)
{
	return db->ops->read_begin(db, err);
}

void saga_db_read_end(struct saga_db *db)
{
	db->ops->read_end(db);
}
