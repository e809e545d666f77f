/*
 * Whole views files built from the history: a rebuild of the live views,
 * a history file as of a past moment, a scratch rebuild compared with the
 * live views.
 *
 * A rebuild does not rename a new file over the live one: readers that
 * have the old file open would keep using its -wal and -shm files by name,
 * and a reader opening the new file could apply the old file's WAL frames
 * to it.  The new views are built in a scratch file without a journal and
 * then copied into the live file with SQLite's backup API, in one write
 * transaction: readers see the old views until it commits, the new ones
 * after, and the live file keeps its identity.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cqrs.h"
#include "common/strbuf.h"
#include "read/views_impl.h"
#include "banned.h"

static int scratch_name(char *buf, size_t cap, const char *path, const char *what)
{
	if ((size_t)snprintf(buf, cap, "%s.%s-%ld", path, what, (long)getpid()) >= cap)
		return -1;
	return 0;
}

static void remove_db_files(const char *path)
{
	char side[PATH_MAX];
	unlink(path);
	static const char *const sfx[] = { "-journal", "-wal", "-shm" };
	for (size_t i = 0; i < 3; i++)
		if ((size_t)snprintf(side, sizeof side, "%s%s", path, sfx[i]) < sizeof side)
			unlink(side);
}

/* Scratch files of runs that were killed: the caller holds the lock, so
 * no other rebuild of these views is running. */
static void remove_stale_scratch(const char *views_path, const char *what)
{
	char dcopy[PATH_MAX], bcopy[PATH_MAX], prefix[PATH_MAX + 32];
	snprintf(dcopy, sizeof dcopy, "%s", views_path);
	snprintf(bcopy, sizeof bcopy, "%s", views_path);
	const char *dir = dirname(dcopy), *base = basename(bcopy);
	int n = snprintf(prefix, sizeof prefix, "%s.%s-", base, what);
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, prefix, (size_t)n) != 0)
			continue;
		/* NAME.what-PID, or NAME.what-PID-TASK of a parallel build */
		const char *rest = e->d_name + n;
		size_t digits = strspn(rest, "0123456789");
		if (digits > 0 && rest[digits] == '-')
			rest += digits + 1, digits = strspn(rest, "0123456789");
		if (digits == 0 || rest[digits] != '\0')
			continue;
		char full[PATH_MAX];
		if ((size_t)snprintf(full, sizeof full, "%s/%s", dir, e->d_name) < sizeof full)
			remove_db_files(full);
	}
	closedir(d);
}

/* replayed: when not NULL, the events each projection applied */
static int build_serial(const char *path, cqrs_store *st, cqrs_projections *ps,
			const cqrs_build_opts *o, const char *what, const int64_t *stops,
			int64_t *replayed, cqrs_error *err)
{
	cqrs_projector *p = cqrs_projector_open(path, ps, CQRS_PROJECT_SCRATCH, err);
	if (p == NULL)
		return -1;
	cqrs_projector_set_batch(p, o->batch);
	cqrs_projector_set_timeout(p, o->timeout_ms);
	cqrs_projector_set_progress(p, o->progress, what);
	if (stops != NULL)
		for (size_t i = 0; i < cqrs_projections_count(ps); i++)
			cqrs_projector_set_stop(p, cqrs_projections_name(ps, i), stops[i]);
	int rc = cqrs_projector_sync(p, err);
	if (rc == 0)
		rc = cqrs_projector_catch_up(p, st, o->to, o->until, err);
	if (rc == 0)
		rc = cqrs_projector_finish(p, err);
	/* one pass: every projection went through the events it applied */
	for (size_t i = 0; replayed != NULL && i < cqrs_projections_count(ps); i++)
		replayed[i] = cqrs_projector_applied(p);
	cqrs_projector_close(p);
	return rc;
}

/* --- a parallel build: the projections in as many groups as threads, a
 * file per group, then the files merged into one.  Projections are
 * independent (each writes only its own tables), so they can be built
 * apart.  The events are read, decoded and their hashes recomputed once,
 * by the calling thread, into a feed that every group applies: read by
 * each group, that work was a third of the CPU time of a 1M-event
 * rebuild on two CPUs.  There are no more groups than threads (one per
 * projection cost twice the CPU time of a serial build, and took
 * longer). -------------------------------------------------------------- */

/* The feed: a ring of batches of decoded events, each freed for the next
 * batch once every group still reading has applied it.  Its memory is
 * bounded by FEED_SLOTS * FEED_BATCH events. */
#define FEED_SLOTS 16
#define FEED_BATCH 256

struct feed_batch {
	cqrs_event ev[FEED_BATCH];
	size_t n;
	struct cqrs_strbuf text; /* the data and metadata of its events */
	int left;		 /* groups yet to apply it */
};

struct feed {
	pthread_mutex_t mu;
	pthread_cond_t more, room;
	struct feed_batch slot[FEED_SLOTS];
	int64_t published; /* batches so far */
	bool ended;
	int reading; /* groups still taking batches */
};

struct task {
	bool *keep;	/* the projections of its group, by their place in the set */
	cqrs_store *st; /* its own connection, opened before the threads start */
	cqrs_projector *p;
	struct feed *feed;
	char path[PATH_MAX];
	int64_t to; /* the last event it applies; 0: none */
	int rc;
	cqrs_error err;
	off_t size;
	int64_t applied;
};

/* The group leaves the feed at batch k: what it has not applied is not
 * waited for. */
static void feed_leave(struct feed *f, int64_t k)
{
	pthread_mutex_lock(&f->mu);
	f->reading--;
	for (; k < f->published; k++)
		if (--f->slot[k % FEED_SLOTS].left == 0)
			pthread_cond_signal(&f->room);
	pthread_mutex_unlock(&f->mu);
}

static void apply_feed(struct feed *f, struct task *t)
{
	int64_t k = 0;
	for (;; k++) {
		pthread_mutex_lock(&f->mu);
		while (k >= f->published && !f->ended)
			pthread_cond_wait(&f->more, &f->mu);
		bool none = k >= f->published;
		pthread_mutex_unlock(&f->mu);
		if (none)
			break;
		/* the batch stays as it is until this group releases it */
		const struct feed_batch *b = &f->slot[k % FEED_SLOTS];
		int r = 0;
		for (size_t i = 0; i < b->n && r == 0; i++)
			r = cqrs_projector_fed_apply(t->p, &b->ev[i], &t->err);
		bool past = b->n > 0 && b->ev[b->n - 1].sequence >= t->to;
		if (r != 0 || past) {
			/* failed; rolled back to read from its store; or done */
			t->rc = r < 0 ? -1 : 0;
			feed_leave(f, k);
			return;
		}
		pthread_mutex_lock(&f->mu);
		if (--f->slot[k % FEED_SLOTS].left == 0)
			pthread_cond_signal(&f->room);
		pthread_mutex_unlock(&f->mu);
	}
	feed_leave(f, k);
}

/* A task's end: its projector closed as soon as it is done, so that its
 * page cache is not held while another builds its indexes. */
static void task_close(struct task *t)
{
	if (t->p == NULL)
		return;
	t->applied = cqrs_projector_applied(t->p);
	cqrs_projector_close(t->p);
	t->p = NULL;
	struct stat sb;
	t->size = stat(t->path, &sb) == 0 ? sb.st_size : 0;
}

static void *worker(void *arg)
{
	struct task *t = arg;
	if (t->feed != NULL)
		apply_feed(t->feed, t);
	else /* no thread of its own: run after the feed, from the store */
		cqrs_projector_fed_skip(t->p);
	if (t->rc == 0)
		t->rc = cqrs_projector_fed_end(t->p, t->st, &t->err);
	if (t->rc == 0)
		t->rc = cqrs_projector_finish(t->p, &t->err);
	task_close(t);
	return NULL;
}

static void quote_ident(char *buf, size_t cap, const char *prefix, const char *name);

static int exec_sql(sqlite3 *db, const char *path, const char *sql, cqrs_error *err)
{
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : cqrs_views_db_error(db, path, rc, "cannot merge", err);
}

/* Copies projection p's tables and checkpoint from the attached "src"
 * into main: its DDL first, without the triggers and the indexes that are
 * not unique (created after the rows, and the triggers must not fire on
 * the copy), and without the rows its DDL may insert. */
static int merge_projection(sqlite3 *db, const char *path, const struct cqrs_projection *p,
			    cqrs_error *err)
{
	if (cqrs_projection_create(db, p, err) < 0)
		return -1;
	char sql[8192], qt[300];
	char *later[256];
	size_t nlater = 0;
	int rc = 0;
	sqlite3_stmt *q;
	for (size_t t = 0; t < p->nowned && rc == 0; t++) {
		if (sqlite3_prepare_v2(
			    db,
			    "SELECT s.name, s.sql, s.type FROM main.sqlite_schema AS s"
			    " WHERE s.tbl_name = ?1 AND s.sql IS NOT NULL AND (s.type ="
			    " 'trigger' OR (s.type = 'index' AND NOT EXISTS (SELECT 1 FROM"
			    " pragma_index_list(?1) AS l WHERE l.name = s.name AND"
			    " l.\"unique\")))",
			    -1, &q, NULL) != SQLITE_OK)
			return cqrs_views_db_error(db, path, sqlite3_errcode(db), "cannot merge",
						   err);
		sqlite3_bind_text(q, 1, p->owned[t], -1, SQLITE_STATIC);
		char *drops[256];
		size_t ndrops = 0;
		int step;
		while ((step = sqlite3_step(q)) == SQLITE_ROW && nlater < 256 && ndrops < 256) {
			const char *type = (const char *)sqlite3_column_text(q, 2);
			quote_ident(qt, sizeof qt, "", (const char *)sqlite3_column_text(q, 0));
			snprintf(sql, sizeof sql, "DROP %s %s",
				 type[0] == 't' ? "TRIGGER" : "INDEX", qt);
			drops[ndrops++] = strdup(sql);
			later[nlater++] = strdup((const char *)sqlite3_column_text(q, 1));
		}
		/* a schema read that failed (out of memory) is not an empty one */
		if (step != SQLITE_ROW && step != SQLITE_DONE)
			rc = cqrs_views_db_error(db, path, step, "cannot merge", err);
		sqlite3_finalize(q);
		for (size_t i = 0; i < ndrops; i++) {
			if (rc == 0)
				rc = drops[i] ? exec_sql(db, path, drops[i], err)
					      : cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
			free(drops[i]);
		}
	}
	for (size_t t = 0; t < p->nowned && rc == 0; t++) {
		/* the columns that can be inserted (not generated), and the
		 * rowid where there is one, so that it is the same */
		char cols[6000] = "";
		size_t n = 0;
		bool rowid = true;
		int step = SQLITE_ERROR;
		if (sqlite3_prepare_v2(db,
				       "SELECT wr FROM pragma_table_list(?1) WHERE schema = 'main'",
				       -1, &q, NULL) == SQLITE_OK) {
			sqlite3_bind_text(q, 1, p->owned[t], -1, SQLITE_STATIC);
			if ((step = sqlite3_step(q)) == SQLITE_ROW)
				rowid = sqlite3_column_int(q, 0) == 0;
			sqlite3_finalize(q);
		}
		if (step != SQLITE_ROW && step != SQLITE_DONE) {
			rc = cqrs_views_db_error(db, path, sqlite3_errcode(db), "cannot merge",
						 err);
			break;
		}
		if (rowid)
			n += (size_t)snprintf(cols, sizeof cols, "_rowid_");
		step = SQLITE_ERROR;
		if (sqlite3_prepare_v2(
			    db,
			    "SELECT name FROM pragma_table_xinfo(?1, 'main') WHERE hidden = 0"
			    " ORDER BY cid",
			    -1, &q, NULL) == SQLITE_OK) {
			sqlite3_bind_text(q, 1, p->owned[t], -1, SQLITE_STATIC);
			while ((step = sqlite3_step(q)) == SQLITE_ROW && n + 300 < sizeof cols) {
				quote_ident(qt, sizeof qt, "",
					    (const char *)sqlite3_column_text(q, 0));
				n += (size_t)snprintf(cols + n, sizeof cols - n, "%s%s",
						      n ? ", " : "", qt);
			}
			sqlite3_finalize(q);
		}
		if (step != SQLITE_ROW && step != SQLITE_DONE) {
			rc = cqrs_views_db_error(db, path, sqlite3_errcode(db), "cannot merge",
						 err);
			break;
		}
		quote_ident(qt, sizeof qt, "", p->owned[t]);
		snprintf(sql, sizeof sql,
			 "DELETE FROM main.%s; INSERT INTO main.%s (%s) SELECT %s FROM src.%s", qt,
			 qt, cols, cols, qt);
		rc = exec_sql(db, path, sql, err);
	}
	if (rc == 0) {
		/* AUTOINCREMENT counters, when the projection has them (without
		 * them neither file has the table: no error but that) */
		int seq = sqlite3_exec(
			db,
			"INSERT INTO main.sqlite_sequence SELECT * FROM src.sqlite_sequence"
			" WHERE name NOT IN (SELECT name FROM main.sqlite_sequence)",
			NULL, NULL, NULL);
		if (seq == SQLITE_NOMEM || (seq & 0xff) == SQLITE_IOERR)
			rc = cqrs_views_db_error(db, path, seq, "cannot merge", err);
		else if (sqlite3_prepare_v2(db,
					    "INSERT INTO main.cqrs_checkpoints SELECT * FROM"
					    " src.cqrs_checkpoints WHERE projection = ?1",
					    -1, &q, NULL) != SQLITE_OK)
			rc = cqrs_views_db_error(db, path, sqlite3_errcode(db), "cannot merge",
						 err);
		else {
			sqlite3_bind_text(q, 1, p->name, -1, SQLITE_STATIC);
			if (sqlite3_step(q) != SQLITE_DONE)
				rc = cqrs_views_db_error(db, path, sqlite3_errcode(db),
							 "cannot merge", err);
			sqlite3_finalize(q);
		}
	}
	if (rc == 0) {
		/* and the events it parked */
		char *copy = sqlite3_mprintf("INSERT INTO main.parked_events SELECT * FROM"
					     " src.parked_events WHERE projection = %Q",
					     p->name);
		rc = copy ? exec_sql(db, path, copy, err)
			  : cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		sqlite3_free(copy);
	}
	for (size_t i = 0; i < nlater; i++) {
		if (rc == 0)
			rc = later[i] ? exec_sql(db, path, later[i], err)
				      : cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		free(later[i]);
	}
	return rc;
}

static int merge(const char *path, struct task *tasks, size_t n, cqrs_projections *ps,
		 cqrs_error *err)
{
	size_t base = 0;
	for (size_t i = 1; i < n; i++)
		if (tasks[i].size > tasks[base].size)
			base = i;
	/* a scratch file without a journal, open by nobody: a rename is safe */
	if (rename(tasks[base].path, path) < 0)
		return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", path, strerror(errno));
	sqlite3 *db;
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
				 cqrs_sqlite_watch_vfs());
	if (rc != SQLITE_OK || cqrs_sql_register_functions(db) < 0 ||
	    sqlite3_db_readonly(db, "main") != 0) {
		if (rc != SQLITE_OK)
			cqrs_views_db_error(db, path, rc, "cannot merge", err);
		else if (sqlite3_db_readonly(db, "main") != 0)
			/* SQLite opens read-only what it could not open to write
			 * (EACCES): the projections' DDL would be blamed (78) */
			cqrs_fail(err, CQRS_EXIT_NOPERM, "%s: cannot merge: it opens read-only",
				  path);
		else
			cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		sqlite3_close(db);
		return -1;
	}
	rc = exec_sql(db, path,
		      "PRAGMA trusted_schema = OFF; PRAGMA journal_mode = OFF;"
		      " PRAGMA synchronous = OFF; PRAGMA locking_mode = EXCLUSIVE;"
		      " PRAGMA cache_size = -65536",
		      err);
	cqrs_views_harden(db);
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (i == base)
			continue;
		sqlite3_stmt *q;
		if (sqlite3_prepare_v2(db, "ATTACH ?1 AS src", -1, &q, NULL) != SQLITE_OK) {
			rc = cqrs_views_db_error(db, path, sqlite3_errcode(db), "cannot merge",
						 err);
			break;
		}
		sqlite3_bind_text(q, 1, tasks[i].path, -1, SQLITE_STATIC);
		int r = sqlite3_step(q);
		sqlite3_finalize(q);
		if (r != SQLITE_DONE) {
			rc = cqrs_views_db_error(db, path, r, "cannot merge", err);
			break;
		}
		rc = exec_sql(db, path, "BEGIN", err);
		for (size_t j = 0; j < ps->n && rc == 0; j++)
			if (tasks[i].keep[j])
				rc = merge_projection(db, path, &ps->p[j], err);
		if (rc == 0)
			rc = exec_sql(db, path, "COMMIT", err);
		sqlite3_exec(db, "DETACH src", NULL, NULL, NULL);
		remove_db_files(tasks[i].path);
	}
	sqlite3_close(db);
	return rc;
}

/* What each projection costs to build, roughly: how many of the store's
 * last SAMPLE_EVENTS events it handles (a store's mix of events changes
 * slowly), plus one.  Measured on a store of orders: the projection of
 * orders handles most events and costs as much as the three others
 * together; weighed by its statements instead, it was paired with one of
 * them, and two threads took longer than one. */
#define SAMPLE_EVENTS 10000

static void sample_weights(cqrs_store *st, const cqrs_projections *ps, size_t *w)
{
	for (size_t i = 0; i < ps->n; i++)
		w[i] = 1;
	cqrs_filter f = { .reverse = true, .limit = SAMPLE_EVENTS };
	cqrs_error ignored = { 0 };
	cqrs_cursor *c = cqrs_store_read(st, &f, &ignored);
	if (c == NULL)
		return; /* by turns, below: the build itself says what is wrong */
	cqrs_event ev;
	while (cqrs_cursor_next(c, &ev, &ignored) == 1)
		for (size_t i = 0; i < ps->n; i++)
			for (size_t h = 0; h < ps->p[i].non; h++) {
				const char *type = ps->p[i].on[h].event_type;
				if (strcmp(type, "*") == 0 || strcmp(type, ev.event_type) == 0) {
					w[i]++;
					break;
				}
			}
	cqrs_cursor_close(c);
}

/* Shares the projections among n groups, the heaviest first into the
 * lightest group so far: tasks[g].keep[i] when projection i is in group g. */
static void make_groups(cqrs_store *st, const cqrs_projections *ps, struct task *tasks, size_t n)
{
	size_t *w = calloc(ps->n, sizeof *w), *load = calloc(n, sizeof *load);
	bool *placed = calloc(ps->n, sizeof *placed);
	if (w == NULL || load == NULL || placed == NULL) {
		for (size_t i = 0; i < ps->n; i++) /* out of memory: by turns */
			tasks[i % n].keep[i] = true;
	} else {
		sample_weights(st, ps, w);
		for (size_t k = 0; k < ps->n; k++) {
			size_t heaviest = 0, most = 0;
			for (size_t i = 0; i < ps->n; i++)
				if (!placed[i] && w[i] > most) {
					heaviest = i;
					most = w[i];
				}
			size_t g = 0;
			for (size_t j = 1; j < n; j++)
				if (load[j] < load[g])
					g = j;
			placed[heaviest] = true;
			tasks[g].keep[heaviest] = true;
			load[g] += most;
		}
	}
	free(w);
	free(load);
	free(placed);
}

/* Copies ev into the batch: its text into the batch's buffer, at an
 * offset made a pointer once the batch is full (the buffer moves as it
 * grows). */
static void batch_add(struct feed_batch *b, const cqrs_event *ev, size_t *at)
{
	cqrs_event *e = &b->ev[b->n];
	*e = *ev;
	at[2 * b->n] = b->text.len;
	cqrs_strbuf_put(&b->text, ev->data, ev->data_len);
	at[2 * b->n + 1] = b->text.len;
	cqrs_strbuf_put(&b->text, ev->metadata, ev->metadata_len);
	b->n++;
}

/* The calling thread's part: reads the events after `after` up to `to`,
 * checks each one's hash, brings it to its current form, and feeds it in
 * batches to the groups, until the last or until no group reads. */
static int feed_events(struct feed *f, cqrs_store *st, int64_t after, int64_t to,
		       _Atomic int64_t *done, size_t groups, bool progress, const char *what,
		       cqrs_error *err)
{
	/* chained from zeros, or from the event before the first fed */
	uint8_t prev[CQRS_HASH_LEN] = { 0 };
	int known = after > 0 ? cqrs_store_hash_at(st, after, prev, err) : 1;
	if (known < 0)
		return -1;
	bool chained = known == 1;
	cqrs_upcaster *up = cqrs_upcaster_new(err);
	if (up == NULL)
		return -1;
	cqrs_filter flt = { .after = after, .to = to };
	cqrs_cursor *c = cqrs_store_read(st, &flt, err);
	if (c == NULL) {
		cqrs_upcaster_free(up);
		return -1;
	}
	size_t at[2 * FEED_BATCH];
	time_t last_shown = 0;
	int64_t total = to - after;
	int r = 1;
	while (r == 1) {
		struct feed_batch *b = &f->slot[f->published % FEED_SLOTS];
		pthread_mutex_lock(&f->mu);
		while (b->left > 0)
			pthread_cond_wait(&f->room, &f->mu);
		bool nobody = f->reading == 0;
		pthread_mutex_unlock(&f->mu);
		if (nobody)
			break;
		b->n = 0;
		cqrs_strbuf_reset(&b->text);
		cqrs_event ev;
		while (b->n < FEED_BATCH && (r = cqrs_cursor_next(c, &ev, err)) == 1) {
			/* the stored form is this thread's until the next event */
			if (ev.has_hash && chained && cqrs_event_check_hash(&ev, prev, err) < 0) {
				r = -1;
				break;
			}
			chained = ev.has_hash;
			memcpy(prev, ev.hash, CQRS_HASH_LEN);
			if (cqrs_upcaster_apply(up, &ev, err) < 0) {
				r = -1;
				break;
			}
			batch_add(b, &ev, at);
		}
		if (b->text.oom) {
			r = cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
			b->n = 0;
		}
		for (size_t i = 0; i < b->n; i++) {
			b->ev[i].data = b->text.p + at[2 * i];
			b->ev[i].metadata = b->text.p + at[2 * i + 1];
		}
		pthread_mutex_lock(&f->mu);
		b->left = f->reading;
		f->published++;
		pthread_cond_broadcast(&f->more);
		pthread_mutex_unlock(&f->mu);
		time_t now = progress && total > 0 ? time(NULL) : last_shown;
		if (now != last_shown) {
			last_shown = now;
			/* each group applies every event: show the average */
			cqrs_progress_show(what, atomic_load(done) / (int64_t)groups, total, false);
		}
	}
	cqrs_cursor_close(c);
	cqrs_upcaster_free(up);
	return r < 0 ? -1 : 0;
}

/* No more batches: the groups end with what was published. */
static void feed_end(struct feed *f)
{
	pthread_mutex_lock(&f->mu);
	f->ended = true;
	pthread_cond_broadcast(&f->more);
	pthread_mutex_unlock(&f->mu);
}

static int build_parallel(const char *path, const char *store_path, cqrs_projections *ps,
			  const cqrs_build_opts *o, const char *what, const int64_t *stops,
			  int nthreads, cqrs_store *st, int64_t *replayed, cqrs_error *err)
{
	size_t n = (size_t)nthreads; /* groups, one per thread */
	struct task *tasks = calloc(n, sizeof *tasks);
	bool *keep = calloc(n * ps->n, sizeof *keep);
	struct feed *f = calloc(1, sizeof *f);
	if (tasks == NULL || keep == NULL || f == NULL) {
		free(tasks);
		free(keep);
		free(f);
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		tasks[i].keep = keep + i * ps->n;
		tasks[i].feed = f;
	}
	make_groups(st, ps, tasks, n);
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->more, NULL);
	pthread_cond_init(&f->room, NULL);
	_Atomic int64_t done;
	atomic_init(&done, 0);
	int rc = 0;
	/* The stores and the files are opened here, one after the other:
	 * opening one is not safe from several threads at once.  The feed's
	 * store is one more connection, with the tasks' decoding. */
	cqrs_store *feed_st = cqrs_store_open(store_path, CQRS_OPEN_READ, err);
	if (feed_st == NULL || cqrs_store_decrypt(feed_st, err) < 0)
		rc = -1;
	int64_t from = INT64_MAX, to = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct task *t = &tasks[i];
		if ((size_t)snprintf(t->path, sizeof t->path, "%s-%zu", path, i) >= sizeof t->path)
			rc = cqrs_fail(err, CQRS_EXIT_USAGE, "%s: path too long", path);
		else if ((t->st = cqrs_store_open(store_path, CQRS_OPEN_READ, err)) == NULL)
			rc = -1;
		/* projections consume the current form (erasure: decrypted) */
		else if (cqrs_store_decrypt(t->st, err) < 0)
			rc = -1;
		else if ((t->p = cqrs_projector_open(t->path, ps, CQRS_PROJECT_SCRATCH, err)) ==
			 NULL)
			rc = -1;
		if (rc < 0)
			break;
		cqrs_projector_set_batch(t->p, o->batch);
		cqrs_projector_set_timeout(t->p, o->timeout_ms);
		for (size_t j = 0; stops != NULL && j < ps->n; j++)
			if (t->keep[j])
				cqrs_projector_set_stop(t->p, cqrs_projections_name(ps, j),
							stops[j]);
		cqrs_projector_only(t->p, t->keep);
		cqrs_projector_count_into(t->p, &done);
		if (cqrs_projector_sync(t->p, err) < 0 ||
		    (t->to = cqrs_projector_fed_begin(t->p, t->st, o->to, o->until, err)) < 0) {
			rc = -1;
			break;
		}
		int64_t pos = cqrs_projector_position(t->p);
		if (t->to > 0 && pos < from)
			from = pos;
		if (t->to > to)
			to = t->to;
	}
	pthread_t th[8];
	size_t started = 0;
	for (; rc == 0 && started < n && started < 8; started++) {
		pthread_mutex_lock(&f->mu);
		f->reading++;
		pthread_mutex_unlock(&f->mu);
		if (pthread_create(&th[started], NULL, worker, &tasks[started]) != 0) {
			pthread_mutex_lock(&f->mu);
			f->reading--;
			pthread_mutex_unlock(&f->mu);
			break;
		}
	}
	/* a group without a thread reads the store itself, after */
	for (size_t i = started; i < n; i++)
		tasks[i].feed = NULL;
	int feed_rc = 0;
	if (rc == 0 && to > 0 && from < to)
		feed_rc = feed_events(f, feed_st, from, to, &done, n, o->progress, what, err);
	feed_end(f);
	cqrs_error feed_err = { 0 };
	if (feed_rc < 0)
		feed_err = *err;
	for (size_t i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	for (size_t i = started; rc == 0 && i < n; i++)
		worker(&tasks[i]);
	if (rc == 0 && o->progress && to > from)
		cqrs_progress_show(what, to - from, to - from, true);
	/* the first event that failed: a group's (the feed went further), or
	 * the feed's */
	for (size_t i = 0; i < n && rc == 0; i++)
		if (tasks[i].rc != 0) {
			*err = tasks[i].err;
			rc = -1;
		}
	if (rc == 0 && feed_rc < 0) {
		*err = feed_err;
		rc = -1;
	}
	for (size_t i = 0; i < n; i++)
		task_close(&tasks[i]); /* those that did not run */
	if (rc == 0)
		rc = merge(path, tasks, n, ps, err);
	/* each projection went through its group's events */
	for (size_t i = 0; replayed != NULL && i < n; i++)
		for (size_t j = 0; j < ps->n; j++)
			if (tasks[i].keep[j])
				replayed[j] = tasks[i].applied;
	for (size_t i = 0; i < n; i++) {
		cqrs_store_close(tasks[i].st);
		remove_db_files(tasks[i].path);
	}
	cqrs_store_close(feed_st);
	for (size_t i = 0; i < FEED_SLOTS; i++)
		cqrs_strbuf_free(&f->slot[i].text);
	pthread_cond_destroy(&f->more);
	pthread_cond_destroy(&f->room);
	pthread_mutex_destroy(&f->mu);
	free(f);
	free(tasks);
	free(keep);
	return rc;
}

/* How many threads a build may use: CQRS_BUILD_THREADS, else the CPUs,
 * at most 8; 1 when SQLite is not built for threads. */
static int build_threads(size_t projections)
{
	if (!sqlite3_threadsafe() || projections < 2)
		return 1;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	const char *e = getenv("CQRS_BUILD_THREADS");
	int64_t v;
	if (e != NULL && cqrs_parse_int64(e, &v) == 0 && v >= 1)
		n = (long)v;
	if (n < 1)
		n = 1;
	if (n > 8)
		n = 8;
	if ((size_t)n > projections)
		n = (long)projections;
	return (int)n;
}

static int build_scratch(const char *path, cqrs_store *st, cqrs_projections *ps,
			 const cqrs_build_opts *o, const char *what, const int64_t *stops,
			 int64_t *replayed, cqrs_error *err)
{
	int threads = o->store_path != NULL ? build_threads(cqrs_projections_count(ps)) : 1;
	if (threads > 1)
		return build_parallel(path, o->store_path, ps, o, what, stops, threads, st,
				      replayed, err);
	return build_serial(path, st, ps, o, what, stops, replayed, err);
}

/* cqrs_replay_*: a rebuild that succeeded, per projection (cqrs-metrics(7)) */
static void replay_metrics(const cqrs_projections *ps, const int64_t *replayed, double seconds)
{
	for (size_t i = 0; replayed != NULL && i < cqrs_projections_count(ps); i++) {
		const char *name = cqrs_projections_name(ps, i);
		cqrs_metrics_add(cqrs_metrics_series(CQRS_METRIC_REPLAY_EVENTS, name, NULL),
				 (double)replayed[i]);
		cqrs_metrics_add(cqrs_metrics_series(CQRS_METRIC_REPLAY_DURATION, name, NULL),
				 seconds);
		if (seconds > 0)
			cqrs_metrics_set(cqrs_metrics_series(CQRS_METRIC_REPLAY_SPEED, name, NULL),
					 (double)replayed[i] / seconds);
	}
}

/* Projections in the live views that this run does not load: dropped
 * with a warning when force, else counted (the rebuild then replaces
 * only the loaded projections). */
static int64_t count_unloaded(sqlite3 *db, const char *views_path, cqrs_projections *ps, bool force,
			      cqrs_error *err)
{
	sqlite3_stmt *q;
	int rc = sqlite3_prepare_v2(db, "SELECT projection, source FROM cqrs_checkpoints", -1, &q,
				    NULL);
	if (rc != SQLITE_OK)
		return cqrs_views_db_error(db, views_path, rc, "cannot read checkpoints", err);
	int64_t n = 0;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(q, 0);
		bool loaded = false;
		for (size_t i = 0; i < cqrs_projections_count(ps) && !loaded; i++)
			loaded = strcmp(cqrs_projections_name(ps, i), name) == 0;
		if (loaded)
			continue;
		if (force)
			cqrs_warn("dropping projection '%s' (from %s): it is not loaded", name,
				  (const char *)sqlite3_column_text(q, 1));
		else
			n++;
	}
	if (rc != SQLITE_DONE)
		n = cqrs_views_db_error(db, views_path, rc, "cannot read checkpoints", err);
	sqlite3_finalize(q);
	return n;
}

/* Drops what projection p has in the live views: the tables its
 * checkpoint lists (their indexes and triggers go with them), the views
 * its definition creates, and its checkpoint. */
static int drop_projection(sqlite3 *db, const char *path, const struct cqrs_projection *p,
			   cqrs_error *err)
{
	sqlite3_stmt *q;
	char sql[400], qt[300];
	if (sqlite3_prepare_v2(db,
			       "SELECT s.type, s.name FROM main.sqlite_schema AS s,"
			       " main.cqrs_checkpoints AS c WHERE c.projection = ?1 AND"
			       " ((s.type = 'table' AND (' ' || c.tables || ' ') LIKE"
			       " ('% ' || s.name || ' %')) OR (s.type = 'view' AND s.name IN"
			       " (SELECT value FROM json_each(?2))))"
			       " AND s.name NOT LIKE 'cqrs\\_%' ESCAPE '\\'"
			       " AND s.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
			       -1, &q, NULL) != SQLITE_OK)
		return cqrs_views_db_error(db, path, sqlite3_errcode(db), "cannot rebuild", err);
	char views[4096];
	size_t n = (size_t)snprintf(views, sizeof views, "[");
	for (size_t i = 0; i < p->nviews && n + 80 < sizeof views; i++)
		n += (size_t)snprintf(views + n, sizeof views - n, "%s\"%s\"", i ? "," : "",
				      p->views[i]);
	snprintf(views + n, sizeof views - n, "]");
	sqlite3_bind_text(q, 1, p->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, views, -1, SQLITE_STATIC);
	char *drops[256];
	size_t ndrops = 0;
	while (sqlite3_step(q) == SQLITE_ROW && ndrops < 256) {
		const char *type = (const char *)sqlite3_column_text(q, 0);
		quote_ident(qt, sizeof qt, "main.", (const char *)sqlite3_column_text(q, 1));
		snprintf(sql, sizeof sql, "DROP %s %s", type[0] == 't' ? "TABLE" : "VIEW", qt);
		drops[ndrops++] = strdup(sql);
	}
	sqlite3_finalize(q);
	int rc = 0;
	/* views first: they may read the tables */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < ndrops; i++) {
			if (drops[i] == NULL) {
				rc = rc ? rc : cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
				continue;
			}
			bool view = strncmp(drops[i], "DROP VIEW", 9) == 0;
			if (rc == 0 && view == (pass == 0))
				rc = exec_sql(db, path, drops[i], err);
		}
	for (size_t i = 0; i < ndrops; i++)
		free(drops[i]);
	if (rc == 0 &&
	    sqlite3_prepare_v2(db, "DELETE FROM main.cqrs_checkpoints WHERE projection = ?1", -1,
			       &q, NULL) == SQLITE_OK) {
		sqlite3_bind_text(q, 1, p->name, -1, SQLITE_STATIC);
		if (sqlite3_step(q) != SQLITE_DONE)
			rc = cqrs_views_db_error(db, path, sqlite3_errcode(db), "cannot rebuild",
						 err);
		sqlite3_finalize(q);
	}
	return rc;
}

/* Replaces the loaded projections in the live views with those of the
 * scratch file, in one transaction, and leaves every other projection
 * (its tables, its checkpoint) as it is. */
static int replace_loaded(sqlite3 *live, const char *path, const char *scratch,
			  cqrs_projections *ps, cqrs_error *err)
{
	sqlite3_stmt *q;
	if (sqlite3_prepare_v2(live, "ATTACH ?1 AS src", -1, &q, NULL) != SQLITE_OK)
		return cqrs_views_db_error(live, path, sqlite3_errcode(live), "cannot rebuild",
					   err);
	sqlite3_bind_text(q, 1, scratch, -1, SQLITE_STATIC);
	int r = sqlite3_step(q);
	sqlite3_finalize(q);
	if (r != SQLITE_DONE)
		return cqrs_views_db_error(live, path, r, "cannot rebuild", err);
	int rc = exec_sql(live, path, "BEGIN IMMEDIATE", err);
	for (size_t i = 0; i < ps->n && rc == 0; i++) {
		rc = drop_projection(live, path, &ps->p[i], err);
		if (rc == 0)
			rc = merge_projection(live, path, &ps->p[i], err);
	}
	if (rc == 0)
		rc = exec_sql(live, path, "COMMIT", err);
	if (rc != 0)
		sqlite3_exec(live, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_exec(live, "DETACH src", NULL, NULL, NULL);
	return rc;
}

/* Writes the WAL into the views file, its result checked: a failed write
 * or fsync is 74; readers that hold old frames only delay it. */
static int checkpoint(sqlite3 *db, const char *path, int mode, cqrs_error *err)
{
	int rc = sqlite3_wal_checkpoint_v2(db, "main", mode, NULL, NULL);
	if (rc == SQLITE_OK || (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
		return 0;
	cqrs_views_db_error(db, path, rc, "cannot write the views", err);
	if (err != NULL && err->code != CQRS_EXIT_OSERR)
		err->code = CQRS_EXIT_IOERR;
	return -1;
}

int cqrs_views_rebuild(const char *views_path, cqrs_store *st, cqrs_projections *ps,
		       const cqrs_build_opts *o, cqrs_error *err)
{
	char scratch[PATH_MAX];
	if (scratch_name(scratch, sizeof scratch, views_path, "rebuild") < 0)
		return cqrs_fail(err, CQRS_EXIT_USAGE, "%s: path too long", views_path);
	if (!ps->checked && cqrs_projections_check(ps, err) < 0)
		return -1;
	remove_stale_scratch(views_path, "rebuild");

	/* with metrics: the rebuild's time and events (no allocation without) */
	double started = cqrs_metrics_clock();
	int64_t *replayed =
		cqrs_metrics_on() ? calloc(cqrs_projections_count(ps) + 1, sizeof *replayed) : NULL;
	sqlite3 *live = NULL, *src = NULL;
	if (cqrs_views_db_open(views_path, VIEWS_OPEN_WRITE, &live, err) < 0) {
		free(replayed);
		return -1;
	}
	int64_t unloaded = count_unloaded(live, views_path, ps, o->force, err);
	int rc = unloaded < 0 ? -1 : 0;
	sqlite3_stmt *q;
	if (rc == 0 && sqlite3_prepare_v2(live, "PRAGMA page_size", -1, &q, NULL) == SQLITE_OK) {
		if (sqlite3_step(q) == SQLITE_ROW)
			cqrs_views_set_scratch_page_size(sqlite3_column_int(q, 0));
		sqlite3_finalize(q);
	}
	if (rc == 0)
		rc = build_scratch(scratch, st, ps, o, "rebuild", NULL, replayed, err);
	cqrs_views_set_scratch_page_size(0);
	if (rc < 0)
		goto out;
	int src_rc = sqlite3_open_v2(scratch, &src, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
				     cqrs_sqlite_watch_vfs());
	if (src_rc != SQLITE_OK) {
		rc = cqrs_views_db_error(src, scratch, src_rc, "cannot open", err);
		goto out;
	}
	if (o->progress)
		fprintf(stderr, "%s: rebuild: replacing the views\n", cqrs_tool_name());
	if (unloaded > 0) {
		rc = replace_loaded(live, views_path, scratch, ps, err);
		if (rc == 0)
			rc = checkpoint(live, views_path, SQLITE_CHECKPOINT_PASSIVE, err);
		goto out;
	}
	sqlite3_backup *b = sqlite3_backup_init(live, "main", src, "main");
	if (b == NULL) {
		rc = cqrs_views_db_error(live, views_path, sqlite3_errcode(live),
					 "cannot replace the views", err);
		goto out;
	}
	int step = sqlite3_backup_step(b, -1);
	int fin = sqlite3_backup_finish(b);
	if (step != SQLITE_DONE || fin != SQLITE_OK) {
		rc = cqrs_views_db_error(live, views_path, step != SQLITE_DONE ? step : fin,
					 "cannot replace the views", err);
		goto out;
	}
	/* Gives the disk space of the copy's WAL frames back when no reader
	 * still needs them; a reader of the old views only delays that (no
	 * busy wait here: the next checkpoint does it). */
	sqlite3_busy_timeout(live, 0);
	rc = checkpoint(live, views_path, SQLITE_CHECKPOINT_TRUNCATE, err);
out:
	sqlite3_close(src);
	sqlite3_close(live);
	remove_db_files(scratch);
	if (rc == 0)
		replay_metrics(ps, replayed, cqrs_metrics_clock() - started);
	free(replayed);
	return rc;
}

static int sync_dir_of(const char *path)
{
	char copy[PATH_MAX];
	snprintf(copy, sizeof copy, "%s", path);
	int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int r = fsync(fd);
	int e = errno;
	close(fd);
	errno = e;
	return r;
}

int cqrs_views_build(const char *output, cqrs_store *st, cqrs_projections *ps,
		     const cqrs_build_opts *o, cqrs_error *err)
{
	char tmp[PATH_MAX];
	if (scratch_name(tmp, sizeof tmp, output, "tmp") < 0)
		return cqrs_fail(err, CQRS_EXIT_USAGE, "%s: path too long", output);
	if (access(output, F_OK) == 0)
		return cqrs_fail(err, CQRS_EXIT_CANTCREAT,
				 "%s: already exists (a history file is never overwritten)",
				 output);
	int rc = build_scratch(tmp, st, ps, o, "history", NULL, NULL, err);
	if (rc == 0) {
		/* built without fsync: make it durable before it gets its name */
		int fd = open(tmp, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fsync(fd) < 0)
			rc = cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
	}
	if (rc == 0 && link(tmp, output) < 0)
		rc = cqrs_fail(err, errno == EEXIST ? CQRS_EXIT_CANTCREAT : CQRS_EXIT_IOERR,
			       "%s: cannot create: %s", output, strerror(errno));
	remove_db_files(tmp);
	/* the new name is durable only once its directory is synced: without
	 * this a power cut soon after the success could lose the file */
	if (rc == 0 && sync_dir_of(output) < 0)
		rc = cqrs_fail(err, CQRS_EXIT_IOERR, "%s: cannot sync its directory: %s", output,
			       strerror(errno));
	return rc;
}

/* --- diff ----------------------------------------------------------------- */

static void quote_ident(char *buf, size_t cap, const char *prefix, const char *name)
{
	size_t n = (size_t)snprintf(buf, cap, "%s\"", prefix);
	for (const char *s = name; *s != '\0' && n + 3 < cap; s++) {
		if (*s == '"')
			buf[n++] = '"';
		buf[n++] = *s;
	}
	if (n + 2 <= cap) {
		buf[n++] = '"';
		buf[n] = '\0';
	}
}

static int64_t count_sql(sqlite3 *db, const char *sql, cqrs_error *err)
{
	sqlite3_stmt *q;
	int rc = sqlite3_prepare_v2(db, sql, -1, &q, NULL);
	if (rc != SQLITE_OK) {
		cqrs_fail(err, CQRS_EXIT_SOFTWARE, "diff: %s: %s", sqlite3_errmsg(db), sql);
		return -1;
	}
	rc = sqlite3_step(q);
	int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(q, 0) : -1;
	if (rc != SQLITE_ROW)
		cqrs_fail(err, CQRS_EXIT_SOFTWARE, "diff: %s", sqlite3_errmsg(db));
	sqlite3_finalize(q);
	return v;
}

struct columns {
	char names[64][128];
	int pk[64]; /* position in the primary key, 0: not in it */
	int n;
};

static int table_columns(sqlite3 *db, const char *schema, const char *table, struct columns *c)
{
	sqlite3_stmt *q;
	c->n = 0;
	if (sqlite3_prepare_v2(db, "SELECT name, pk FROM pragma_table_info(?1, ?2) ORDER BY cid",
			       -1, &q, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(q, 1, table, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, schema, -1, SQLITE_STATIC);
	while (sqlite3_step(q) == SQLITE_ROW && c->n < 64) {
		snprintf(c->names[c->n], sizeof c->names[0], "%s", sqlite3_column_text(q, 0));
		c->pk[c->n] = sqlite3_column_int(q, 1);
		c->n++;
	}
	sqlite3_finalize(q);
	return 0;
}

static bool same_columns(const struct columns *a, const struct columns *b)
{
	if (a->n != b->n)
		return false;
	for (int i = 0; i < a->n; i++)
		if (strcmp(a->names[i], b->names[i]) != 0 || a->pk[i] != b->pk[i])
			return false;
	return true;
}

/* "a.k1 = b.k1 AND ..." over the key columns, or over all when all */
static void join_cond(char *buf, size_t cap, const struct columns *c, bool key, const char *op)
{
	size_t n = 0;
	buf[0] = '\0';
	for (int i = 0; i < c->n && n < cap; i++) {
		if (key != (c->pk[i] > 0))
			continue;
		char qa[300], qb[300];
		quote_ident(qa, sizeof qa, "a.", c->names[i]);
		quote_ident(qb, sizeof qb, "b.", c->names[i]);
		n += (size_t)snprintf(buf + n, cap - n, "%s%s %s %s", n ? " AND " : "", qa, op, qb);
	}
	if (n == 0)
		snprintf(buf, cap, "1");
}

static int diff_table(sqlite3 *db, const char *projection, const char *table, FILE *out,
		      bool *differs, cqrs_error *err)
{
	char qt[300], sql[40000], cond[16000], vals[16000];
	quote_ident(qt, sizeof qt, "", table);
	struct columns nc, lc;
	table_columns(db, "rebuilt", table, &nc);
	table_columns(db, "main", table, &lc);
	int64_t rebuilt, live = 0, added, removed, changed = 0;
	snprintf(sql, sizeof sql, "SELECT count(*) FROM rebuilt.%s", qt);
	if ((rebuilt = count_sql(db, sql, err)) < 0)
		return -1;
	bool has_live = lc.n > 0, comparable = has_live && same_columns(&nc, &lc);
	if (has_live) {
		snprintf(sql, sizeof sql, "SELECT count(*) FROM main.%s", qt);
		if ((live = count_sql(db, sql, err)) < 0)
			return -1;
	}
	if (!comparable) {
		added = rebuilt;
		removed = live;
	} else {
		bool keyed = false;
		for (int i = 0; i < nc.n; i++)
			keyed = keyed || nc.pk[i] > 0;
		if (keyed) {
			join_cond(cond, sizeof cond, &nc, true, "=");
			snprintf(sql, sizeof sql,
				 "SELECT count(*) FROM rebuilt.%s a WHERE NOT EXISTS"
				 " (SELECT 1 FROM main.%s b WHERE %s)",
				 qt, qt, cond);
			if ((added = count_sql(db, sql, err)) < 0)
				return -1;
			snprintf(sql, sizeof sql,
				 "SELECT count(*) FROM main.%s a WHERE NOT EXISTS"
				 " (SELECT 1 FROM rebuilt.%s b WHERE %s)",
				 qt, qt, cond);
			if ((removed = count_sql(db, sql, err)) < 0)
				return -1;
			join_cond(vals, sizeof vals, &nc, false, "IS");
			snprintf(sql, sizeof sql,
				 "SELECT count(*) FROM rebuilt.%s a JOIN main.%s b ON %s"
				 " WHERE NOT (%s)",
				 qt, qt, cond, vals);
			if ((changed = count_sql(db, sql, err)) < 0)
				return -1;
		} else {
			snprintf(sql, sizeof sql,
				 "SELECT count(*) FROM (SELECT * FROM rebuilt.%s EXCEPT"
				 " SELECT * FROM main.%s)",
				 qt, qt);
			if ((added = count_sql(db, sql, err)) < 0)
				return -1;
			snprintf(sql, sizeof sql,
				 "SELECT count(*) FROM (SELECT * FROM main.%s EXCEPT"
				 " SELECT * FROM rebuilt.%s)",
				 qt, qt);
			if ((removed = count_sql(db, sql, err)) < 0)
				return -1;
		}
	}
	bool d = added || removed || changed || !comparable;
	*differs = *differs || d;
	fputs("{\"projection\":", out);
	cqrs_json_write_string(out, projection, strlen(projection));
	fputs(",\"table\":", out);
	cqrs_json_write_string(out, table, strlen(table));
	fprintf(out,
		",\"live_rows\":%lld,\"rebuilt_rows\":%lld,\"added\":%lld,\"removed\":%lld,"
		"\"changed\":%lld,\"same\":%s",
		(long long)live, (long long)rebuilt, (long long)added, (long long)removed,
		(long long)changed, d ? "false" : "true");
	if (!has_live)
		fputs(",\"note\":\"not in the live views\"", out);
	else if (!comparable)
		fputs(",\"note\":\"columns differ\"", out);
	fputs("}\n", out);
	return 0;
}

int cqrs_views_diff(const char *views_path, cqrs_store *st, cqrs_projections *ps,
		    const cqrs_build_opts *o, FILE *out, cqrs_error *err)
{
	if (!ps->checked && cqrs_projections_check(ps, err) < 0)
		return -1;
	char scratch[PATH_MAX];
	if (scratch_name(scratch, sizeof scratch, views_path, "diff") < 0)
		return cqrs_fail(err, CQRS_EXIT_USAGE, "%s: path too long", views_path);
	remove_stale_scratch(views_path, "diff");
	sqlite3 *live;
	if (cqrs_views_db_open(views_path, VIEWS_OPEN_READ, &live, err) < 0)
		return -1;
	size_t n = cqrs_projections_count(ps);
	int64_t *stops = calloc(n ? n : 1, sizeof *stops);
	sqlite3_stmt *q = NULL;
	int rc = -1;
	if (stops == NULL) {
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		goto out;
	}
	/* A projection the live views do not have yet is built as far as the
	 * others are. */
	int64_t furthest = 0;
	if (sqlite3_prepare_v2(live, "SELECT coalesce(max(sequence), 0) FROM cqrs_checkpoints", -1,
			       &q, NULL) == SQLITE_OK &&
	    sqlite3_step(q) == SQLITE_ROW)
		furthest = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	q = NULL;
	if (sqlite3_prepare_v2(live, "SELECT sequence FROM cqrs_checkpoints WHERE projection = ?1",
			       -1, &q, NULL) != SQLITE_OK) {
		cqrs_views_db_error(live, views_path, sqlite3_errcode(live),
				    "cannot read checkpoints", err);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		sqlite3_bind_text(q, 1, cqrs_projections_name(ps, i), -1, SQLITE_STATIC);
		stops[i] = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : furthest;
		sqlite3_reset(q);
	}
	sqlite3_finalize(q);
	q = NULL;
	cqrs_build_opts bo = *o;
	bo.to = 0;
	bo.until = NULL;
	if (build_scratch(scratch, st, ps, &bo, "diff", stops, NULL, err) < 0)
		goto out;
	if (sqlite3_prepare_v2(live, "ATTACH ?1 AS rebuilt", -1, &q, NULL) != SQLITE_OK) {
		cqrs_views_db_error(live, scratch, sqlite3_errcode(live), "cannot attach", err);
		goto out;
	}
	sqlite3_bind_text(q, 1, scratch, -1, SQLITE_STATIC);
	if (sqlite3_step(q) != SQLITE_DONE) {
		cqrs_views_db_error(live, scratch, sqlite3_errcode(live), "cannot attach", err);
		goto out;
	}
	sqlite3_finalize(q);
	q = NULL;
	bool differs = false;
	for (size_t i = 0; i < n; i++) {
		const struct cqrs_projection *p = &ps->p[i];
		for (size_t t = 0; t < p->nowned; t++)
			if (diff_table(live, p->name, p->owned[t], out, &differs, err) < 0)
				goto out;
	}
	rc = differs ? 1 : 0;
out:
	sqlite3_finalize(q);
	sqlite3_close(live);
	free(stops);
	remove_db_files(scratch);
	return rc;
}
