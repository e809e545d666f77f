/* The store facade: which backend a path means, and the calls every tool
 * makes, forwarded to that backend. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cqrs.h"
#include "store/store_impl.h"
#include "banned.h"

static const char *default_path(const char *file)
{
	static char buf[2][4096];
	static int which;
	char *out = buf[which++ & 1];
	const char *xdg = getenv("XDG_DATA_HOME");
	const char *home = getenv("HOME");
	if (xdg != NULL && *xdg == '/')
		snprintf(out, sizeof buf[0], "%s/cqrs/%s", xdg, file);
	else if (home != NULL && *home != '\0')
		snprintf(out, sizeof buf[0], "%s/.local/share/cqrs/%s", home, file);
	else
		snprintf(out, sizeof buf[0], "%s", file);
	return out;
}

static const char *resolve(const char *option, const char *env, const char *file)
{
	if (option != NULL && *option != '\0')
		return option;
	const char *e = getenv(env);
	if (e != NULL && *e != '\0')
		return e;
	return default_path(file);
}

const char *cqrs_store_path(const char *option)
{
	return resolve(option, "CQRS_STORE", "events.db");
}

const char *cqrs_views_path(const char *option)
{
	return resolve(option, "CQRS_VIEWS", "views.db");
}

/* The default location is ours to create (like git creating .git); a path
 * the user named must have its directory already. */
static int make_default_dir(const char *path, cqrs_error *err)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return 0;
	*slash = '\0';
	for (char *p = dir + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			goto fail;
		*p = '/';
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		goto fail;
	return 0;
fail:
	return cqrs_fail(err, CQRS_EXIT_CANTCREAT, "%s: cannot create directory: %s", dir,
			 strerror(errno));
}

cqrs_store *cqrs_store_open(const char *path, enum cqrs_open_mode mode, cqrs_error *err)
{
	if (mode == CQRS_OPEN_WRITE && strcmp(path, default_path("events.db")) == 0 &&
	    make_default_dir(path, err) < 0)
		return NULL;
	if (strncmp(path, "postgres://", 11) == 0 || strncmp(path, "postgresql://", 13) == 0) {
		cqrs_fail(err, CQRS_EXIT_CONFIG, "%s: the PostgreSQL backend is not built in",
			  path);
		return NULL;
	}
	return cqrs_sqlite_open(path, mode, err);
}

void cqrs_store_close(cqrs_store *st)
{
	if (st != NULL)
		st->ops->close(st);
}

void cqrs_store_set_durability(cqrs_store *st, enum cqrs_durability d)
{
	st->ops->set_durability(st, d);
}

int cqrs_store_begin(cqrs_store *st, cqrs_error *err)
{
	return st->ops->begin(st, err);
}

int cqrs_store_append(cqrs_store *st, cqrs_event *ev, cqrs_error *err)
{
	/* Bad events stop at the door (event_schema.c), whoever appends them;
	 * history copied with its sequence and hash is checked by its chain. */
	if (!(ev->sequence > 0 && ev->has_hash) && cqrs_event_schema_check(ev, err) < 0)
		return -1;
	return st->ops->append(st, ev, err);
}

int cqrs_store_commit(cqrs_store *st, cqrs_error *err)
{
	return st->ops->commit(st, err);
}

void cqrs_store_rollback(cqrs_store *st)
{
	st->ops->rollback(st);
}

int64_t cqrs_store_aggregate_version(cqrs_store *st, const uint8_t id[CQRS_UUID_LEN],
				     cqrs_error *err)
{
	return st->ops->aggregate_version(st, id, err);
}

int64_t cqrs_store_last_sequence(cqrs_store *st, cqrs_error *err)
{
	return st->ops->last_sequence(st, err);
}

cqrs_cursor *cqrs_store_read(cqrs_store *st, const cqrs_filter *f, cqrs_error *err)
{
	return st->ops->read(st, f, err);
}

int cqrs_cursor_next(cqrs_cursor *c, cqrs_event *ev, cqrs_error *err)
{
	return c->store->ops->cursor_next(c, ev, err);
}

void cqrs_cursor_close(cqrs_cursor *c)
{
	if (c != NULL)
		c->store->ops->cursor_close(c);
}

int cqrs_store_snapshot_load(cqrs_store *st, const uint8_t id[CQRS_UUID_LEN], int64_t *version,
			     char **state, cqrs_error *err)
{
	return st->ops->snapshot_load(st, id, version, state, err);
}

int cqrs_store_snapshot_save(cqrs_store *st, const uint8_t id[CQRS_UUID_LEN], const char *type,
			     int64_t version, const char *state, cqrs_error *err)
{
	return st->ops->snapshot_save(st, id, type, version, state, err);
}

int cqrs_store_processed_get(cqrs_store *st, const char *message_id, char **result, cqrs_error *err)
{
	return st->ops->processed_get(st, message_id, result, err);
}

int cqrs_store_processed_put(cqrs_store *st, const char *message_id, const char *handler,
			     const char *result, cqrs_error *err)
{
	return st->ops->processed_put(st, message_id, handler, result, err);
}

int64_t cqrs_store_counter_next(cqrs_store *st, const char *name, cqrs_error *err)
{
	return st->ops->counter_next(st, name, err);
}

int64_t cqrs_store_counter_raise(cqrs_store *st, const char *name, int64_t floor, cqrs_error *err)
{
	return st->ops->counter_raise(st, name, floor, err);
}

int cqrs_store_wait(cqrs_store *st, int timeout_ms, const int *fds, int nfds, cqrs_error *err)
{
	return st->ops->wait(st, timeout_ms, fds, nfds, err);
}

/* The chain is checked through the public read path, so that it holds for
 * every backend alike. */
int cqrs_store_verify(cqrs_store *st, int64_t *checked, int64_t *bad_sequence, cqrs_error *err)
{
	cqrs_filter all = { 0 };
	cqrs_cursor *c = cqrs_store_read(st, &all, err);
	if (c == NULL)
		return -1;
	uint8_t prev[CQRS_HASH_LEN] = { 0 };
	cqrs_event ev;
	int r;
	*checked = 0;
	*bad_sequence = 0;
	while ((r = cqrs_cursor_next(c, &ev, err)) == 1) {
		uint8_t h[CQRS_HASH_LEN];
		cqrs_event_hash(&ev, prev, h);
		if (ev.sequence != *checked + 1 || memcmp(h, ev.hash, CQRS_HASH_LEN) != 0) {
			*bad_sequence = ev.sequence;
			break;
		}
		memcpy(prev, ev.hash, CQRS_HASH_LEN);
		(*checked)++;
	}
	cqrs_cursor_close(c);
	return r < 0 ? -1 : 0;
}
