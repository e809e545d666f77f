/* The store facade: which backend a path means, and the calls every tool
 * makes, forwarded to that backend. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cqrs.h"
#include "common/strbuf.h"
#include "store/store_impl.h"
#include "store/store_shred.h"
#include "banned.h"

/* The default place of file, in out: each caller keeps its own buffer,
 * so that the store's path stays what it was when the views' path (or
 * any other) is asked for after it. */
static const char *default_path(const char *file, char *out, size_t cap)
{
	const char *xdg = getenv("XDG_DATA_HOME");
	const char *home = getenv("HOME");
	if (xdg != NULL && *xdg == '/')
		snprintf(out, cap, "%s/cqrs/%s", xdg, file);
	else if (home != NULL && *home != '\0')
		snprintf(out, cap, "%s/.local/share/cqrs/%s", home, file);
	else
		snprintf(out, cap, "%s", file);
	return out;
}

static const char *resolve(const char *option, const char *env, const char *file, char *out,
			   size_t cap)
{
	if (option != NULL && *option != '\0')
		return option;
	const char *e = getenv(env);
	if (e != NULL && *e != '\0')
		return e;
	return default_path(file, out, cap);
}

const char *cqrs_store_path(const char *option)
{
	static char buf[4096];
	return resolve(option, "CQRS_STORE", "events.db", buf, sizeof buf);
}

const char *cqrs_views_path(const char *option)
{
	static char buf[4096];
	return resolve(option, "CQRS_VIEWS", "views.db", buf, sizeof buf);
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

bool cqrs_store_on_server(const char *path)
{
	return strncmp(path, "postgres://", 11) == 0 || strncmp(path, "postgresql:", 11) == 0;
}

static cqrs_store *open_backend(const char *path, enum cqrs_open_mode mode, cqrs_error *err)
{
	char def[4096];
	if (mode == CQRS_OPEN_WRITE &&
	    strcmp(path, default_path("events.db", def, sizeof def)) == 0 &&
	    make_default_dir(path, err) < 0)
		return NULL;
	/* PostgreSQL (store_pg.c): a URI, or postgresql: and a connection
	 * string.  No witness file: the server keeps the history. */
	if (cqrs_store_on_server(path))
		return cqrs_pg_open(path, mode, err);
	cqrs_store *st = cqrs_sqlite_open(path, mode, err);
	if (st == NULL || mode != CQRS_OPEN_WRITE)
		return st;
	st->durable = true;
	size_t n = strlen(path) + sizeof ".witness";
	if ((st->witness = malloc(n)) == NULL) {
		cqrs_store_close(st);
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		return NULL;
	}
	snprintf(st->witness, n, "%s.witness", path);
	return st;
}

cqrs_store *cqrs_store_open(const char *path, enum cqrs_open_mode mode, cqrs_error *err)
{
	cqrs_store *st = open_backend(path, mode, err);
	/* Before the first write: a store behind its witness was rolled back,
	 * and writing on top of it would bury the evidence. */
	if (st != NULL && st->witness != NULL &&
	    cqrs_witness_check(st, path, st->witness, true, err) < 0) {
		cqrs_store_close(st);
		return NULL;
	}
	return st;
}

int cqrs_store_check_witness(cqrs_store *st, const char *path, cqrs_error *err)
{
	char wpath[4200];
	snprintf(wpath, sizeof wpath, "%s.witness", path);
	return cqrs_witness_check(st, path, wpath, st->witness != NULL, err);
}

int cqrs_store_reset_witness(const char *path, int64_t *sequence, uint8_t hash[CQRS_HASH_LEN],
			     cqrs_error *err)
{
	cqrs_store *st = open_backend(path, CQRS_OPEN_WRITE, err);
	if (st == NULL)
		return -1;
	/* a PostgreSQL store has none: the server keeps its history (and its
	 * name may hold a password: not repeated here) */
	if (st->witness == NULL) {
		cqrs_store_close(st);
		return cqrs_fail(err, CQRS_EXIT_USAGE,
				 "this store has no witness file: its server keeps its history");
	}
	int rc = cqrs_store_head(st, sequence, hash, err);
	if (rc == 0)
		rc = cqrs_witness_update(st->witness, *sequence, hash, true, err);
	cqrs_store_close(st);
	return rc;
}

static void drop_decoder(struct cqrs_decoder *d)
{
	if (d->free != NULL)
		d->free(d->ctx);
	*d = (struct cqrs_decoder){ 0 };
}

void cqrs_store_set_decoder(cqrs_store *st, enum cqrs_decode_stage stage,
			    const struct cqrs_decoder *d)
{
	drop_decoder(&st->decoders[stage]);
	if (d != NULL && d->decode != NULL)
		st->decoders[stage] = *d;
}

void cqrs_store_set_form(cqrs_store *st, enum cqrs_event_form form)
{
	st->form = form;
}

void cqrs_store_close(cqrs_store *st)
{
	if (st == NULL)
		return;
	for (int i = 0; i < CQRS_DECODE_STAGES; i++)
		drop_decoder(&st->decoders[i]);
	cqrs_shred_free(st->shred);
	for (int i = 0; i < CQRS_DECODE_STAGES; i++)
		cqrs_strbuf_free(&st->decoded[i]);
	cqrs_archive_cache_free(st);
	free(st->witness);
	free(st->meta);
	st->ops->close(st);
}

void cqrs_store_set_durability(cqrs_store *st, enum cqrs_durability d)
{
	st->durable = d == CQRS_DURABLE_FULL;
	st->ops->set_durability(st, d);
}

int cqrs_store_begin(cqrs_store *st, cqrs_error *err)
{
	st->appended = false;
	st->nappended = 0;
	cqrs_shred_begin(st);
	return st->ops->begin(st, err);
}

int cqrs_store_lock(cqrs_store *st, cqrs_error *err)
{
	return st->ops->lock != NULL ? st->ops->lock(st, err) : 0;
}

/* The OS user that runs the tool, as a JSON string, found once by the
 * first event prepared in any thread; NULL when memory ran out (not kept:
 * every later event would record "?", hashed into the chain for ever;
 * the next event tries again).  Written only before os_user_found is
 * set, read only after. */
static char os_user[600];
static atomic_bool os_user_found;
static pthread_mutex_t os_user_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *os_user_json(void)
{
	if (atomic_load_explicit(&os_user_found, memory_order_acquire))
		return os_user;
	pthread_mutex_lock(&os_user_lock);
	if (!atomic_load_explicit(&os_user_found, memory_order_relaxed)) {
		char name[256];
		cqrs_user_name(getuid(), name, sizeof name);
		struct cqrs_strbuf b = { 0 };
		cqrs_strbuf_json_string(&b, name, strlen(name));
		if (!b.oom) {
			snprintf(os_user, sizeof os_user, "%s", cqrs_strbuf_str(&b));
			atomic_store_explicit(&os_user_found, true, memory_order_release);
		}
		cqrs_strbuf_free(&b);
	}
	bool found = atomic_load_explicit(&os_user_found, memory_order_relaxed);
	pthread_mutex_unlock(&os_user_lock);
	return found ? os_user : NULL;
}

size_t cqrs_store_prepare_growth(void)
{
	return sizeof os_user + sizeof ",\"os_user\":}";
}

/* A new event's metadata records who ran the tool (metadata.os_user), in
 * place of any os_user the input claims; the rest is kept as written.
 * Written to out, which has room for the metadata and the growth. */
static int add_os_user(cqrs_event *ev, char *out, cqrs_error *err)
{
	const char *user = os_user_json();
	if (user == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	size_t n = 0, pos = 0;
	cqrs_json_member m;
	out[n++] = '{';
	/* every member but a claimed os_user, copied as it is: "key":value, */
	while (cqrs_json_next_member(ev->metadata, ev->metadata_len, &pos, &m) == 1) {
		if (m.key_len == 7 && memcmp(m.key, "os_user", 7) == 0)
			continue;
		const char *from = m.key - 1; /* the key's opening quote */
		size_t k = (size_t)(m.value + m.value_len - from);
		memcpy(out + n, from, k);
		n += k;
		out[n++] = ',';
	}
	size_t room = strlen(user) + sizeof "\"os_user\":}";
	n += (size_t)snprintf(out + n, room, "\"os_user\":%s}", user);
	ev->metadata = out;
	ev->metadata_len = n;
	return 0;
}

int cqrs_store_prepare(cqrs_event *ev, char *metadata, cqrs_error *err)
{
	if (ev->prepared)
		return 0;
	/* History copied with its sequence and hash is kept as it was, and
	 * checked by its chain. */
	if (!(ev->sequence > 0 && ev->has_hash)) {
		/* bad events stop at the door (event_schema.c), whoever appends */
		if (cqrs_event_schema_check(ev, err) < 0 || add_os_user(ev, metadata, err) < 0)
			return -1;
	}
	ev->prepared = true;
	return 0;
}

int cqrs_store_append(cqrs_store *st, cqrs_event *ev, cqrs_error *err)
{
	if (!ev->prepared) {
		size_t need = ev->metadata_len + cqrs_store_prepare_growth();
		if (need > st->meta_cap) {
			char *p = realloc(st->meta, need);
			if (p == NULL)
				return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
			st->meta = p;
			st->meta_cap = need;
		}
		if (cqrs_store_prepare(ev, st->meta, err) < 0)
			return -1;
	}
	/* personal fields encrypted before the hash covers them (erasure),
	 * and before an event given again is compared with its stored form */
	if (cqrs_shred_encrypt(st, ev, err) < 0)
		return -1;
	/* an archived event is still stored: not twice */
	int r = cqrs_archive_duplicate(st, ev, err);
	if (r != 0)
		return r;
	r = st->ops->append(st, ev, err);
	if (r == CQRS_APPENDED) {
		st->appended = true;
		st->nappended++;
	}
	return r;
}

int cqrs_store_append_many(cqrs_store *st, cqrs_event *evs, size_t n, int *results, size_t *failed,
			   cqrs_error *err)
{
	const struct cqrs_store_ops *ops = st->ops;
	*failed = 0;
	if (n == 0)
		return 0;
	int opened = ops->window_open != NULL ? ops->window_open(st, evs, n, err) : 0;
	if (opened < 0) {
		*failed = opened == -2 ? CQRS_APPEND_FAILED_EARLIER : 0;
		return -1;
	}
	/* the facade's steps and the rules per event, as cqrs_store_append */
	for (size_t i = 0; i < n; i++) {
		int r = cqrs_store_append(st, &evs[i], err);
		if (r < 0) {
			*failed = i;
			/* the events before it stay in the transaction, as they
			 * would have one at a time; the error is the event's */
			cqrs_error ignored = { 0 };
			if (ops->window_close != NULL)
				ops->window_close(st, &ignored);
			return -1;
		}
		results[i] = r;
	}
	return ops->window_close != NULL ? ops->window_close(st, err) : 0;
}

int cqrs_store_commit(cqrs_store *st, cqrs_error *err)
{
	if (st->ops->commit(st, err) < 0)
		return -1;
	if (st->nappended > 0)
		cqrs_metrics_add(
			cqrs_metrics_series(CQRS_METRIC_EVENTS_APPENDED, cqrs_tool_name(), NULL),
			(double)st->nappended);
	st->nappended = 0;
	/* Only synced commits move the witness: after a power cut a --no-sync
	 * store may lose its last commits, and must not look rolled back. */
	if (!st->appended || !st->durable || st->witness == NULL)
		return 0;
	st->appended = false;
	int64_t seq;
	uint8_t hash[CQRS_HASH_LEN];
	cqrs_error e = { 0 };
	if (cqrs_store_head(st, &seq, hash, &e) < 0 ||
	    cqrs_witness_update(st->witness, seq, hash, false, &e) < 0)
		/* the events are stored: say so, and that the witness lags */
		cqrs_warn("%s; the events are stored, the witness lags behind them", e.msg);
	return 0;
}

void cqrs_store_rollback(cqrs_store *st)
{
	st->appended = false;
	st->nappended = 0;
	st->ops->rollback(st);
}

int cqrs_store_head(cqrs_store *st, int64_t *sequence, uint8_t hash[CQRS_HASH_LEN], cqrs_error *err)
{
	return st->ops->head(st, sequence, hash, err);
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

/* $CQRS_TEST_READ_GATE=FIFO, a testing aid: the first read of the process
 * stops between its look at the archive and its first look at the
 * store's rows (a verify: after the store's first row), so that a test
 * can run an archive there.  It says so by
 * writing a line to the FIFO, then waits until the FIFO is opened for
 * writing again and closed. */
static void read_gate(void)
{
	static bool passed;
	const char *gate = getenv("CQRS_TEST_READ_GATE");
	if (gate == NULL || passed)
		return;
	passed = true;
	int fd = open(gate, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	(void)!write(fd, "at the gate\n", 12);
	close(fd);
	if ((fd = open(gate, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	char b[64];
	while (read(fd, b, sizeof b) > 0)
		;
	close(fd);
}

/* Archived events first (their segments), then the store's: one order. */
cqrs_cursor *cqrs_store_read(cqrs_store *st, const cqrs_filter *f, cqrs_error *err)
{
	cqrs_cursor *c;
	int r = cqrs_archive_read(st, f, &c, err);
	read_gate();
	if (r != 0)
		return r > 0 ? c : NULL;
	return st->ops->read(st, f, err);
}

/* The stored form of the event that a cursor of this thread decoded last
 * (see cqrs_event_stored_form); sequence 0 when it was not changed. */
static _Thread_local cqrs_event last_stored;
static _Thread_local const char *last_current;

const cqrs_event *cqrs_event_stored_form(const cqrs_event *ev)
{
	if (ev->sequence > 0 && ev->sequence == last_stored.sequence && ev->data == last_current)
		return &last_stored;
	return ev;
}

/* The stages on ev, each writing into its scratch buffer. */
static int decode_stages(cqrs_store *st, cqrs_event *ev, struct cqrs_strbuf *scratch,
			 cqrs_error *err)
{
	last_stored = *ev;
	for (int i = 0; i < CQRS_DECODE_STAGES; i++) {
		const struct cqrs_decoder *d = &st->decoders[i];
		if (d->decode == NULL)
			continue;
		cqrs_strbuf_reset(&scratch[i]);
		if (d->decode(d->ctx, st, ev, &scratch[i], err) < 0)
			return -1;
	}
	if (ev->data == last_stored.data && ev->event_version == last_stored.event_version)
		last_stored.sequence = 0; /* no stage changed it */
	last_current = ev->data;
	return 0;
}

int cqrs_store_decode(cqrs_store *st, cqrs_event *ev, cqrs_error *err)
{
	if (st->form != CQRS_FORM_CURRENT)
		return 0;
	return decode_stages(st, ev, st->decoded, err);
}

int cqrs_cursor_next(cqrs_cursor *c, cqrs_event *ev, cqrs_error *err)
{
	cqrs_store *st = c->store;
	int r = c->next != NULL ? c->next(c, ev, err) : st->ops->cursor_next(c, ev, err);
	if (r != 1 || st->form != CQRS_FORM_CURRENT)
		return r;
	return decode_stages(st, ev, c->scratch, err) < 0 ? -1 : 1;
}

void cqrs_cursor_close(cqrs_cursor *c)
{
	if (c == NULL)
		return;
	for (int i = 0; i < CQRS_DECODE_STAGES; i++)
		cqrs_strbuf_free(&c->scratch[i]);
	if (c->close != NULL)
		c->close(c);
	else
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

int64_t cqrs_store_counter_set(cqrs_store *st, const char *name, int64_t value, cqrs_error *err)
{
	return st->ops->counter_set(st, name, value, err);
}

int cqrs_store_counters_each(cqrs_store *st, const char *prefix, cqrs_counter_fn *fn, void *arg,
			     cqrs_error *err)
{
	return st->ops->counters_each(st, prefix, fn, arg, err);
}

int cqrs_store_poll(int own, const int *fds, int nfds, int timeout_ms, cqrs_error *err)
{
	struct pollfd p[9];
	int n = 0;
	p[n++] = (struct pollfd){ .fd = own, .events = POLLIN };
	for (int i = 0; i < nfds && n < 9; i++)
		p[n++] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
	int r = poll(p, (nfds_t)n, timeout_ms);
	if (r < 0 && errno == EINTR)
		return 2;
	if (r < 0)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "poll: %s", strerror(errno));
	for (int i = 1; i < n; i++)
		if (p[i].revents != 0)
			return 2;
	return r == 0 ? 0 : 1;
}

int cqrs_store_wait(cqrs_store *st, int timeout_ms, const int *fds, int nfds, cqrs_error *err)
{
	return st->ops->wait(st, timeout_ms, fds, nfds, err);
}

static void verify_failed(cqrs_verify *v, const cqrs_event *ev, const char *why)
{
	v->bad = ev != NULL ? ev->sequence : v->checked + 1;
	snprintf(v->why, sizeof v->why, "%s", why);
}

/* The chain is checked through the public read path, so that it holds for
 * every backend alike; the backend checks the columns it derives.  The
 * head is read first: a scan that ends before it (a damaged file whose
 * b-tree lost pages reads as a shorter store) is a failure too. */
int cqrs_store_verify(cqrs_store *st, cqrs_verify *v, cqrs_error *err)
{
	memset(v, 0, sizeof *v);
	uint8_t head_hash[CQRS_HASH_LEN];
	if (cqrs_store_head(st, &v->head, head_hash, err) < 0)
		return -1;
	/* The store's first row is read before the archive is looked at:
	 * while its statement is active the connection keeps its snapshot,
	 * so the segments listed are those of the same moment.  Looked at
	 * first, an archive committed in between would have moved the events
	 * after them out of the store: a gap, reported as a broken chain. */
	cqrs_cursor *c = st->ops->verify_read(st, err);
	if (c == NULL)
		return -1;
	cqrs_event ev;
	cqrs_error e = { 0 };
	/* the backend's own next: the chain covers the stored form, whatever
	 * form the store was told to give */
	int r = st->ops->cursor_next(c, &ev, &e);
	read_gate();
	/* the archived events first: the store's go on from their hash */
	if (cqrs_archive_verify(st, v, err) < 0) {
		cqrs_cursor_close(c);
		return -1;
	}
	if (v->bad != 0) {
		cqrs_cursor_close(c);
		return 0;
	}
	for (; r == 1; r = st->ops->cursor_next(c, &ev, &e)) {
		uint8_t h[CQRS_HASH_LEN];
		cqrs_event_hash(&ev, v->hash, h);
		if (ev.sequence != v->checked + 1 || memcmp(h, ev.hash, CQRS_HASH_LEN) != 0) {
			verify_failed(
				v, &ev,
				"hash chain broken: an event was edited, removed or reordered");
			break;
		}
		if (st->ops->verify_row(c, &ev, &e) < 0) {
			verify_failed(v, &ev, e.msg);
			break;
		}
		memcpy(v->hash, ev.hash, CQRS_HASH_LEN);
		v->checked++;
	}
	cqrs_cursor_close(c);
	if (r < 0) {
		if (e.code != CQRS_EXIT_DATAERR)
			return cqrs_fail(err, e.code, "%s", e.msg);
		verify_failed(v, NULL, e.msg);
	} else if (v->bad == 0 && v->checked < v->head) {
		char why[256];
		snprintf(why, sizeof why,
			 "the store is damaged: its events end here, but its last event is "
			 "sequence %lld",
			 (long long)v->head);
		verify_failed(v, NULL, why);
	}
	return 0;
}
