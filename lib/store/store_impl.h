/*
 * The narrow interface between the store facade (store.c) and a backend.
 * A second backend (PostgreSQL) is a new file that fills in these
 * operations; the tools do not change.
 */
#ifndef CQRS_STORE_IMPL_H
#define CQRS_STORE_IMPL_H

#include "cqrs.h"

struct cqrs_store_ops {
	void (*close)(cqrs_store *st);
	void (*set_durability)(cqrs_store *st, enum cqrs_durability d);
	int (*begin)(cqrs_store *st, cqrs_error *err);
	int (*append)(cqrs_store *st, cqrs_event *ev, cqrs_error *err);
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
	int64_t (*counter_raise)(cqrs_store *st, const char *name, int64_t floor, cqrs_error *err);
	int (*wait)(cqrs_store *st, int timeout_ms, const int *fds, int nfds, cqrs_error *err);
};

/* Every backend's store and cursor start with these. */
struct cqrs_store {
	const struct cqrs_store_ops *ops;
};

struct cqrs_cursor {
	cqrs_store *store;
};

/* The name of the fsync-guard VFS (vfs_guard.c), registered on first use. */
const char *cqrs_sqlite_guard_vfs(bool enabled);

cqrs_store *cqrs_sqlite_open(const char *path, enum cqrs_open_mode mode, cqrs_error *err);
/* The SQLite connection of an embedded store, NULL for another backend:
 * for saga_store.c, whose tables share the store's transactions. */
struct sqlite3 *cqrs_sqlite_handle(cqrs_store *st);

#endif
