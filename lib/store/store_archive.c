/*
 * Archive segments (cqrs-archive(1)): old events moved out of the store
 * into compressed NDJSON files, one per range of sequences, which the
 * facade reads as if they had never left.
 *
 * A segment is a gzip file (`zcat SEG | cqrs-append` works) of events in
 * their stored form, one per line; its gzip header's comment is one JSON
 * object naming the range and the hash it continues from.  The store keeps,
 * in archive_segments, each file's range, the hashes at both ends, the
 * SHA-256 of its bytes and its signed head (when the owner signs), in
 * archived_events the ids it no longer holds, and in archived_versions each
 * archived aggregate's version and where its archived events lie.
 *
 * Archiving writes and syncs the segment first, then records it and
 * deletes its events in one transaction: a crash leaves either the store
 * as it was (and a file nobody refers to, replaced by the next run) or the
 * archived store, never events in neither place.
 *
 * The SQLite backend only (cqrs_sqlite_handle): the tables are the
 * store's, read and written in its transactions.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <nettle/sha2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cqrs.h"
#include "common/strbuf.h"
#include "store/store_impl.h"
#include "banned.h"

#define SEGMENT_EVENTS_DEFAULT 100000
#define GZ_BUF		       65536

/* Statements every read of an archived store runs, prepared once. */
struct cqrs_archive_cache {
	sqlite3_stmt *upto;	/* the last archived sequence */
	sqlite3_stmt *version;	/* an aggregate's archived version and range */
	sqlite3_stmt *event_id; /* an archived event's sequence */
};

struct segment {
	int64_t first, last;
	uint8_t prev_hash[CQRS_HASH_LEN], last_hash[CQRS_HASH_LEN], sha[CQRS_HASH_LEN];
	char *file;
};

struct segment_list {
	struct segment *v;
	size_t n;
};

/* --- the store's tables ---------------------------------------------------- */

static int db_fail(sqlite3 *db, int rc, const char *what, cqrs_error *err)
{
	return cqrs_sqlite_fail(db, rc, false, what, err);
}

/* A statement of the cache in *q: 1; 0 when the store has no archive
 * tables (a store of schema 3 or older, read as it is: the statement
 * names a table it lacks, SQLITE_ERROR); -1 with *err when it could not
 * be prepared for another reason (out of memory, I/O), which must not
 * pass for "nothing archived": a duplicate of an archived event would be
 * taken, an archived aggregate's version read as 0. */
static int cached(cqrs_store *st, sqlite3_stmt **slot, const char *sql, sqlite3_stmt **q,
		  cqrs_error *err)
{
	*q = NULL;
	sqlite3 *db = cqrs_sqlite_handle(st);
	if (db == NULL)
		return 0;
	if (*slot == NULL) {
		int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL);
		if (rc != SQLITE_OK) {
			*slot = NULL;
			return rc == SQLITE_ERROR ? 0
						  : db_fail(db, rc, "cannot read the archive", err);
		}
	}
	*q = *slot;
	return 1;
}

static struct cqrs_archive_cache *cache_of(cqrs_store *st)
{
	if (st->archive == NULL)
		st->archive = calloc(1, sizeof *st->archive);
	return st->archive;
}

void cqrs_archive_cache_free(cqrs_store *st)
{
	struct cqrs_archive_cache *c = st->archive;
	if (c == NULL)
		return;
	sqlite3_finalize(c->upto);
	sqlite3_finalize(c->version);
	sqlite3_finalize(c->event_id);
	free(c);
	st->archive = NULL;
}

/* The last archived sequence (0: none), or -1 with *err. */
static int64_t archived_upto(cqrs_store *st, cqrs_error *err)
{
	struct cqrs_archive_cache *c = cache_of(st);
	if (c == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	sqlite3_stmt *q;
	int got = cached(st, &c->upto,
			 "SELECT coalesce(max(last_sequence), 0) FROM archive_segments", &q, err);
	if (got <= 0)
		return got;
	int rc = sqlite3_step(q);
	int64_t upto = rc == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
	sqlite3_reset(q);
	if (rc != SQLITE_ROW)
		return db_fail(cqrs_sqlite_handle(st), rc, "cannot read the archive", err);
	return upto;
}

static void segments_free(struct segment_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].file);
	free(l->v);
	*l = (struct segment_list){ 0 };
}

static void blob_to(sqlite3_stmt *q, int col, uint8_t out[CQRS_HASH_LEN])
{
	memset(out, 0, CQRS_HASH_LEN);
	if (sqlite3_column_bytes(q, col) == CQRS_HASH_LEN)
		memcpy(out, sqlite3_column_blob(q, col), CQRS_HASH_LEN);
}

/* The segments holding sequences in (lo, hi], in order (newest first when
 * reverse), appended to *l. */
static int segments_load(cqrs_store *st, int64_t lo, int64_t hi, bool reverse,
			 struct segment_list *l, cqrs_error *err)
{
	sqlite3 *db = cqrs_sqlite_handle(st);
	sqlite3_stmt *q;
	int rc = sqlite3_prepare_v2(
		db,
		reverse ? "SELECT first_sequence, last_sequence, prev_hash, last_hash, file,"
			  " file_sha256 FROM archive_segments WHERE last_sequence > ?1"
			  " AND first_sequence <= ?2 ORDER BY first_sequence DESC"
			: "SELECT first_sequence, last_sequence, prev_hash, last_hash, file,"
			  " file_sha256 FROM archive_segments WHERE last_sequence > ?1"
			  " AND first_sequence <= ?2 ORDER BY first_sequence",
		-1, &q, NULL);
	if (rc != SQLITE_OK)
		return db_fail(db, rc, "cannot read the archive", err);
	sqlite3_bind_int64(q, 1, lo);
	sqlite3_bind_int64(q, 2, hi);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		struct segment *v = realloc(l->v, (l->n + 1) * sizeof *v);
		if (v == NULL)
			break;
		l->v = v;
		struct segment *s = &v[l->n];
		s->first = sqlite3_column_int64(q, 0);
		s->last = sqlite3_column_int64(q, 1);
		blob_to(q, 2, s->prev_hash);
		blob_to(q, 3, s->last_hash);
		blob_to(q, 5, s->sha);
		const char *file = (const char *)sqlite3_column_text(q, 4);
		if ((s->file = strdup(file != NULL ? file : "")) == NULL)
			break;
		l->n++;
	}
	sqlite3_finalize(q);
	if (rc == SQLITE_ROW)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	if (rc != SQLITE_DONE)
		return db_fail(db, rc, "cannot read the archive", err);
	return 0;
}

/* --- gzip, through stdio ------------------------------------------------------
 * A segment is read and written as a FILE (getline, cqrs_event_write) over
 * zlib; the raw bytes are hashed on the way, for the recorded SHA-256. */

struct gz {
	z_stream z;
	int fd;
	struct sha256_ctx sha;
	gz_header header;
	char comment[512];
	bool end, failed;
	int error; /* errno of a failed read or write; 0: zlib's */
	unsigned char buf[GZ_BUF];
};

static int gz_read_raw(struct gz *g)
{
	ssize_t n;
	do
		n = read(g->fd, g->buf, sizeof g->buf);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		g->error = errno;
		g->failed = true;
		return -1;
	}
	sha256_update(&g->sha, (size_t)n, g->buf);
	g->z.next_in = g->buf;
	g->z.avail_in = (uInt)n;
	return (int)(n > 0);
}

static ssize_t gz_cookie_read(void *cookie, char *out, size_t cap)
{
	struct gz *g = cookie;
	g->z.next_out = (unsigned char *)out;
	g->z.avail_out = (uInt)(cap > UINT_MAX ? UINT_MAX : cap);
	while (!g->end && g->z.avail_out == cap) {
		if (g->z.avail_in == 0) {
			int r = gz_read_raw(g);
			if (r < 0)
				return -1;
			if (r == 0)
				break; /* truncated: the caller sees !end */
		}
		int zr = inflate(&g->z, Z_NO_FLUSH);
		if (zr == Z_STREAM_END)
			g->end = true;
		else if (zr != Z_OK && zr != Z_BUF_ERROR) {
			g->failed = true;
			return -1;
		}
	}
	return (ssize_t)(cap - g->z.avail_out);
}

static int gz_write_raw(struct gz *g, size_t n)
{
	sha256_update(&g->sha, n, g->buf);
	for (size_t off = 0; off < n;) {
		ssize_t w = write(g->fd, g->buf + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			g->error = errno;
			g->failed = true;
			return -1;
		}
		off += (size_t)w;
	}
	return 0;
}

static int gz_deflate(struct gz *g, int flush)
{
	int zr;
	do {
		g->z.next_out = g->buf;
		g->z.avail_out = sizeof g->buf;
		zr = deflate(&g->z, flush);
		if (zr == Z_STREAM_ERROR) {
			g->failed = true;
			return -1;
		}
		if (gz_write_raw(g, sizeof g->buf - g->z.avail_out) < 0)
			return -1;
	} while (g->z.avail_out == 0 || (flush == Z_FINISH && zr != Z_STREAM_END));
	return 0;
}

static ssize_t gz_cookie_write(void *cookie, const char *in, size_t n)
{
	struct gz *g = cookie;
	g->z.next_in = (unsigned char *)(uintptr_t)in;
	g->z.avail_in = (uInt)n;
	return gz_deflate(g, Z_NO_FLUSH) < 0 ? -1 : (ssize_t)n;
}

static int gz_cookie_close(void *cookie)
{
	(void)cookie;
	return 0;
}

/* A segment open for reading on fd (the caller's, closed by gz_close):
 * the FILE to getline from; g->comment holds the header's comment once the
 * first byte was read. */
static FILE *gz_open_read(struct gz *g, int fd)
{
	memset(g, 0, sizeof *g);
	g->fd = fd;
	sha256_init(&g->sha);
	if (inflateInit2(&g->z, 15 + 16) != Z_OK)
		return NULL;
	g->header.comment = (Bytef *)g->comment;
	g->header.comm_max = sizeof g->comment - 1;
	inflateGetHeader(&g->z, &g->header);
	FILE *f = fopencookie(
		g, "r",
		(cookie_io_functions_t){ .read = gz_cookie_read, .close = gz_cookie_close });
	if (f == NULL)
		inflateEnd(&g->z);
	return f;
}

static FILE *gz_open_write(struct gz *g, int fd, const char *comment)
{
	memset(g, 0, sizeof *g);
	g->fd = fd;
	sha256_init(&g->sha);
	if (deflateInit2(&g->z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return NULL;
	snprintf(g->comment, sizeof g->comment, "%s", comment);
	g->header.comment = (Bytef *)g->comment;
	g->header.os = 3; /* Unix */
	deflateSetHeader(&g->z, &g->header);
	FILE *f = fopencookie(
		g, "w",
		(cookie_io_functions_t){ .write = gz_cookie_write, .close = gz_cookie_close });
	if (f == NULL)
		deflateEnd(&g->z);
	return f;
}

/* Reads what is left of the file into the hash (bytes after the gzip
 * stream are part of the file), then the digest. */
static int gz_read_rest(struct gz *g, uint8_t sha[CQRS_HASH_LEN])
{
	int r;
	g->z.avail_in = 0;
	while ((r = gz_read_raw(g)) > 0)
		;
	sha256_digest(&g->sha, CQRS_HASH_LEN, sha);
	return r;
}

/* --- events of a segment ------------------------------------------------------ */

/* One segment being read: its file, the line and the sequence it is at. */
struct seg_reader {
	struct gz gz;
	FILE *in;
	int fd;
	const struct segment *seg;
	char *line;
	size_t cap;
	int64_t lineno;
	bool oom; /* a line's buffer could not grow: no verdict on the file */
};

static void reader_close(struct seg_reader *r)
{
	if (r->in != NULL) {
		fclose(r->in);
		inflateEnd(&r->gz.z);
	}
	if (r->fd >= 0)
		close(r->fd);
	r->in = NULL;
	r->fd = -1;
	r->seg = NULL;
}

/* Opens a segment for reading, held to the rules for a file a reader
 * trusts (cqrs(7)): 0, or -1 with *err (66 missing, 77 untrusted). */
static int reader_open(struct seg_reader *r, const struct segment *s, cqrs_error *err)
{
	reader_close(r);
	if (cqrs_trust_dirs(s->file, false, err) < 0)
		return -1;
	int fd = open(s->file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return cqrs_fail(err, errno == ENOENT ? CQRS_EXIT_NOINPUT : CQRS_EXIT_NOPERM,
				 "%s: archive segment of sequences %lld to %lld: %s", s->file,
				 (long long)s->first, (long long)s->last, strerror(errno));
	if (cqrs_trust_fd(fd, s->file, false, err) < 0) {
		close(fd);
		return -1;
	}
	r->fd = fd;
	if ((r->in = gz_open_read(&r->gz, fd)) == NULL) {
		reader_close(r);
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	}
	r->seg = s;
	r->lineno = 0;
	r->oom = false;
	return 0;
}

/* Out of memory or an I/O error says nothing of what a file holds: never
 * reported as a damaged archive. */
static bool not_a_verdict(const cqrs_error *e)
{
	return e->code == CQRS_EXIT_OSERR || e->code == CQRS_EXIT_IOERR;
}

/* The segment's next line, without its newline: its length, or -1 at
 * the end of the file (reader_end says whether it ended well). */
static ssize_t reader_line(struct seg_reader *r)
{
	errno = 0;
	ssize_t n = getline(&r->line, &r->cap, r->in);
	if (n < 0) {
		r->oom = errno == ENOMEM;
		return -1;
	}
	/* a last line cut short by a truncated file: the end says so */
	if (r->line[n - 1] != '\n' && !r->gz.end)
		return -1;
	r->lineno++;
	if (r->line[n - 1] == '\n')
		r->line[--n] = '\0';
	return n;
}

/* At the end of the file: 0 when the gzip stream ended whole, else -1
 * with *err naming the file. */
static int reader_end(struct seg_reader *r, cqrs_error *err)
{
	if (r->oom)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	if (!r->gz.failed && r->gz.end)
		return 0;
	return cqrs_fail(err, r->gz.error ? CQRS_EXIT_IOERR : CQRS_EXIT_DATAERR,
			 "%s: %s after line %lld", r->seg->file,
			 r->gz.error	? strerror(r->gz.error)
			 : r->gz.failed ? "not a gzip file, or damaged"
					: "truncated",
			 (long long)r->lineno);
}

/* The line as an archived event: 0, or -1 with *err (65) naming the file
 * and line.  ev points into r->line. */
static int reader_parse(struct seg_reader *r, size_t n, cqrs_event *ev, cqrs_error *err)
{
	cqrs_error e = { 0 };
	if (cqrs_event_parse(ev, r->line, n, &e) < 0 || ev->sequence <= 0 || !ev->has_hash)
		return cqrs_fail(err, e.code == CQRS_EXIT_OSERR ? e.code : CQRS_EXIT_DATAERR,
				 "%s:%lld: %s", r->seg->file, (long long)r->lineno,
				 e.msg[0] ? e.msg : "an archived event has no sequence or hash");
	return 0;
}

/* --- the filter, in C ------------------------------------------------------------
 * The same conditions as the backend's SQL (store_sqlite.c filter_sql). */

static bool in_list(const char *const *list, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], s) == 0)
			return true;
	return false;
}

static bool matches(const cqrs_filter *f, const cqrs_event *ev)
{
	if (ev->sequence <= f->after || (f->to > 0 && ev->sequence > f->to))
		return false;
	if (f->aggregate_id != NULL && (memcmp(ev->aggregate_id, f->aggregate_id, CQRS_UUID_LEN) ||
					ev->aggregate_version <= f->after_version))
		return false;
	if (f->naggregate_ids > 0) {
		size_t i = 0;
		while (i < f->naggregate_ids &&
		       memcmp(f->aggregate_ids[i], ev->aggregate_id, CQRS_UUID_LEN) != 0)
			i++;
		if (i == f->naggregate_ids)
			return false;
	}
	if ((f->aggregate_type != NULL && strcmp(f->aggregate_type, ev->aggregate_type) != 0) ||
	    (f->naggregate_types > 0 &&
	     !in_list(f->aggregate_types, f->naggregate_types, ev->aggregate_type)) ||
	    (f->event_type != NULL && strcmp(f->event_type, ev->event_type) != 0) ||
	    (f->nevent_types > 0 && !in_list(f->event_types, f->nevent_types, ev->event_type)) ||
	    (f->until != NULL && strcmp(ev->timestamp, f->until) > 0))
		return false;
	if (f->correlation_id != NULL || f->ncorrelation_ids > 0) {
		char corr[CQRS_MAX_CORRELATION + 1];
		if (!cqrs_event_correlation(ev, corr, sizeof corr))
			return false;
		if (f->correlation_id != NULL && strcmp(f->correlation_id, corr) != 0)
			return false;
		if (f->ncorrelation_ids > 0 &&
		    !in_list(f->correlation_ids, f->ncorrelation_ids, corr))
			return false;
	}
	return true;
}

/* The cursor keeps its own copy of the filter: the backend binds its
 * values, so callers may free theirs once the read began. */
struct filter_copy {
	cqrs_filter f;
	uint8_t aggregate_id[CQRS_UUID_LEN];
	char *strings; /* every string and list, in one block */
};

static size_t list_size(const char *const *l, size_t n)
{
	size_t size = 0;
	for (size_t i = 0; i < n; i++)
		size += strlen(l[i]) + 1;
	return size;
}

static char *put_string(char **p, const char *s)
{
	if (s == NULL)
		return NULL;
	size_t n = strlen(s) + 1;
	char *out = memcpy(*p, s, n);
	*p += n;
	return out;
}

/* A list: its pointers at *slots, its strings at *p. */
static const char *const *put_list(const char ***slots, char **p, const char *const *l, size_t n)
{
	if (n == 0)
		return NULL;
	const char **out = *slots;
	*slots += n;
	for (size_t i = 0; i < n; i++)
		out[i] = put_string(p, l[i]);
	return out;
}

static int filter_copy(struct filter_copy *c, const cqrs_filter *f)
{
	c->f = *f;
	size_t nptr = f->nevent_types + f->naggregate_types + f->ncorrelation_ids;
	size_t size = nptr * sizeof(char *) + f->naggregate_ids * CQRS_UUID_LEN +
		      list_size(f->event_types, f->nevent_types) +
		      list_size(f->aggregate_types, f->naggregate_types) +
		      list_size(f->correlation_ids, f->ncorrelation_ids);
	const char *one[] = { f->aggregate_type, f->event_type, f->correlation_id, f->until };
	for (size_t i = 0; i < 4; i++)
		size += one[i] != NULL ? strlen(one[i]) + 1 : 0;
	/* the pointers first, where malloc aligned them; then ids and text */
	if ((c->strings = malloc(size + 1)) == NULL)
		return -1;
	const char **slots = (const char **)(void *)c->strings;
	char *p = c->strings + nptr * sizeof(char *);
	if (f->naggregate_ids > 0) {
		memcpy(p, f->aggregate_ids, f->naggregate_ids * CQRS_UUID_LEN);
		c->f.aggregate_ids = (const uint8_t(*)[CQRS_UUID_LEN])(void *)p;
		p += f->naggregate_ids * CQRS_UUID_LEN;
	}
	c->f.event_types = put_list(&slots, &p, f->event_types, f->nevent_types);
	c->f.aggregate_types = put_list(&slots, &p, f->aggregate_types, f->naggregate_types);
	c->f.correlation_ids = put_list(&slots, &p, f->correlation_ids, f->ncorrelation_ids);
	c->f.aggregate_type = put_string(&p, f->aggregate_type);
	c->f.event_type = put_string(&p, f->event_type);
	c->f.correlation_id = put_string(&p, f->correlation_id);
	c->f.until = put_string(&p, f->until);
	if (f->aggregate_id != NULL) {
		memcpy(c->aggregate_id, f->aggregate_id, CQRS_UUID_LEN);
		c->f.aggregate_id = c->aggregate_id;
	}
	return 0;
}

/* --- the cursor: segments, then the store ---------------------------------------- */

struct archive_cursor {
	struct cqrs_cursor base;
	struct filter_copy fc;
	struct segment_list segs;
	size_t next_seg;
	struct seg_reader r;
	int64_t expect;	    /* the next sequence of the open segment */
	int64_t lo, hi;	    /* the segments are read for sequences in (lo, hi] */
	int64_t upto;	    /* the archive's end when the segments were listed */
	bool segments_only; /* the filter ends inside the archive */
	int64_t emitted;
	cqrs_cursor *hot; /* the backend's cursor over the store */
	bool hot_open, hot_done, hot_pending;
	int64_t hot_min;    /* newest first: the oldest event the store gave */
	cqrs_event pending; /* the store's first event, read before the
			     * archive was looked at again */
	/* newest first: the matching lines of one segment, emitted backwards */
	char **rev;
	size_t *rev_len, nrev, rev_cap;
	char *emitted_line;
	struct cqrs_strbuf raw; /* the line being matched, as read */
	/* text every matching line holds, as cqrs_event_write writes the
	 * envelope ("aggregate_id":"ID"): lines without it are passed over
	 * unparsed; "" when the filter names no one aggregate or type */
	char needle[CQRS_MAX_TYPE_NAME + 32];
	size_t needle_len;
};

/* The "sequence" a stored line starts with (cqrs_event_write's order), to
 * pass over lines before the range without parsing them; 0: not at the
 * start. */
static int64_t line_sequence(const char *line, size_t n)
{
	static const char key[] = "{\"sequence\":";
	if (n < sizeof key || memcmp(line, key, sizeof key - 1) != 0)
		return 0;
	int64_t v = 0;
	for (size_t i = sizeof key - 1; i < n && line[i] >= '0' && line[i] <= '9'; i++) {
		if (v > (INT64_MAX - 9) / 10)
			return 0;
		v = v * 10 + (line[i] - '0');
	}
	return v;
}

/* The next event of the open segment that the filter matches: 1; 0 when
 * the segment (or the range) ended; -1 with *err. */
static int segment_next(struct archive_cursor *c, cqrs_event *ev, cqrs_error *err)
{
	for (;;) {
		ssize_t n = reader_line(&c->r);
		if (n < 0) {
			if (reader_end(&c->r, err) < 0)
				return -1;
			if (c->expect != c->r.seg->last + 1)
				return cqrs_fail(
					err, CQRS_EXIT_DATAERR,
					"%s: the segment ends before sequence %lld, the "
					"store recorded it to %lld (see cqrs-read --verify)",
					c->r.seg->file, (long long)c->expect,
					(long long)c->r.seg->last);
			reader_close(&c->r);
			return 0;
		}
		int64_t seq = line_sequence(c->r.line, (size_t)n);
		if (seq > 0 && seq == c->expect &&
		    (seq <= c->lo ||
		     (seq <= c->hi && c->needle_len > 0 &&
		      memmem(c->r.line, (size_t)n, c->needle, c->needle_len) == NULL))) {
			c->expect++;
			continue; /* before the range, or not a match: not parsed */
		}
		if (c->fc.f.reverse) { /* kept whole, to be parsed again when given */
			cqrs_strbuf_reset(&c->raw);
			cqrs_strbuf_put(&c->raw, c->r.line, (size_t)n);
			if (c->raw.oom)
				return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		}
		if (reader_parse(&c->r, (size_t)n, ev, err) < 0)
			return -1;
		if (ev->sequence != c->expect)
			return cqrs_fail(err, CQRS_EXIT_DATAERR,
					 "%s:%lld: sequence %lld where %lld belongs (see cqrs-read "
					 "--verify)",
					 c->r.seg->file, (long long)c->r.lineno,
					 (long long)ev->sequence, (long long)c->expect);
		c->expect++;
		if (ev->sequence > c->hi) {
			reader_close(&c->r);
			if (!c->fc.f.reverse)
				c->next_seg = c->segs.n; /* past the range: no more segments */
			return 0;
		}
		if (matches(&c->fc.f, ev))
			return 1;
	}
}

static bool limit_reached(const struct archive_cursor *c)
{
	return c->fc.f.limit > 0 && c->emitted >= c->fc.f.limit;
}

/* The next segment's events, until one matches: 1, 0 when no segment is
 * left, -1. */
static int segments_next(struct archive_cursor *c, cqrs_event *ev, cqrs_error *err)
{
	for (;;) {
		if (c->r.seg != NULL) {
			int r = segment_next(c, ev, err);
			if (r != 0)
				return r;
			continue;
		}
		if (c->next_seg >= c->segs.n)
			return 0;
		const struct segment *s = &c->segs.v[c->next_seg++];
		if (reader_open(&c->r, s, err) < 0)
			return -1;
		c->expect = s->first;
	}
}

/* The store's cursor, opened once the segments are read.  Its first event
 * is read at once: while its statement is active the archive is seen in
 * the same state, so segments an archive made meanwhile (whose events the
 * store no longer has) are read before it. */
static int open_hot(struct archive_cursor *c, cqrs_error *err)
{
	cqrs_store *st = c->base.store;
	/* the segments read may reach past the archive's end seen when the
	 * cursor was made: an archive committed in between */
	if (c->segs.n > 0 && c->segs.v[c->segs.n - 1].last > c->upto)
		c->upto = c->segs.v[c->segs.n - 1].last;
	cqrs_filter hf = c->fc.f;
	if (hf.limit > 0)
		hf.limit -= c->emitted;
	if (hf.after < c->upto)
		hf.after = c->upto; /* a copy that kept archived rows gives them once */
	c->hot_open = true;
	if ((c->hot = st->ops->read(st, &hf, err)) == NULL)
		return -1;
	int r = st->ops->cursor_next(c->hot, &c->pending, err);
	if (r < 0)
		return -1;
	c->hot_pending = r == 1;
	c->hot_done = r == 0;
	int64_t upto = archived_upto(st, err);
	if (upto < 0)
		return -1;
	if (upto > c->upto) {
		int64_t from = c->upto > c->lo ? c->upto : c->lo;
		c->upto = upto;
		/* an aggregate's range was its archived events then: its later
		 * events may be in these segments now */
		c->hi = c->fc.f.to > 0 ? c->fc.f.to : INT64_MAX;
		if (segments_load(st, from, c->hi, false, &c->segs, err) < 0)
			return -1;
	}
	return 0;
}

static int forward_next(cqrs_cursor *base, cqrs_event *ev, cqrs_error *err)
{
	struct archive_cursor *c = (struct archive_cursor *)base;
	cqrs_store *st = base->store;
	for (;;) {
		if (limit_reached(c))
			return 0;
		int r = segments_next(c, ev, err);
		if (r < 0)
			return -1;
		if (r == 1) {
			c->emitted++;
			return 1;
		}
		if (c->segments_only)
			return 0;
		if (!c->hot_open) {
			if (open_hot(c, err) < 0)
				return -1;
			continue; /* segments listed meanwhile come first */
		}
		if (c->hot_pending) {
			c->hot_pending = false;
			*ev = c->pending;
			c->emitted++;
			return 1;
		}
		if (c->hot_done)
			return 0;
		r = st->ops->cursor_next(c->hot, ev, err);
		if (r == 1)
			c->emitted++;
		return r;
	}
}

/* Newest first: the store's events, then each segment's, read whole and
 * given backwards (a segment's matching lines are held in memory). */
static int reverse_fill(struct archive_cursor *c, cqrs_error *err)
{
	const struct segment *s = &c->segs.v[c->next_seg++];
	if (reader_open(&c->r, s, err) < 0)
		return -1;
	c->expect = s->first;
	cqrs_event ev;
	int r;
	while ((r = segment_next(c, &ev, err)) == 1) {
		if (c->nrev == c->rev_cap) {
			size_t cap = c->rev_cap ? 2 * c->rev_cap : 64;
			char **v = realloc(c->rev, cap * sizeof *v);
			size_t *lens = v != NULL ? realloc(c->rev_len, cap * sizeof *lens) : NULL;
			if (v != NULL)
				c->rev = v;
			if (lens == NULL)
				return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
			c->rev_len = lens;
			c->rev_cap = cap;
		}
		size_t n = c->raw.len;
		if ((c->rev[c->nrev] = malloc(n + 1)) == NULL)
			return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		memcpy(c->rev[c->nrev], c->raw.p, n);
		c->rev[c->nrev][n] = '\0';
		c->rev_len[c->nrev++] = n;
	}
	return r < 0 ? -1 : 0;
}

static int reverse_next(cqrs_cursor *base, cqrs_event *ev, cqrs_error *err)
{
	struct archive_cursor *c = (struct archive_cursor *)base;
	cqrs_store *st = base->store;
	if (limit_reached(c))
		return 0;
	if (!c->hot_done) {
		if (!c->hot_open) {
			cqrs_filter hf = c->fc.f;
			if (hf.after < c->upto)
				hf.after = c->upto;
			c->hot_open = true;
			if ((c->hot = st->ops->read(st, &hf, err)) == NULL)
				return -1;
		}
		int r = st->ops->cursor_next(c->hot, ev, err);
		if (r == 1) {
			c->emitted++;
			c->hot_min = ev->sequence;
		}
		if (r != 0)
			return r;
		c->hot_done = true;
		/* the segments as they are now, below what the store gave: an
		 * archive that ran meanwhile moved events the store had then */
		if (c->hot_min > 0 && c->hi >= c->hot_min)
			c->hi = c->hot_min - 1;
		if (segments_load(st, c->lo, c->hi, true, &c->segs, err) < 0)
			return -1;
	}
	free(c->emitted_line);
	c->emitted_line = NULL;
	while (c->nrev == 0) {
		if (c->next_seg >= c->segs.n)
			return 0;
		if (reverse_fill(c, err) < 0)
			return -1;
	}
	c->emitted_line = c->rev[--c->nrev];
	cqrs_error e = { 0 };
	if (cqrs_event_parse(ev, c->emitted_line, c->rev_len[c->nrev], &e) < 0)
		return e.code == CQRS_EXIT_OSERR
			       ? cqrs_fail(err, e.code, "%s", e.msg)
			       : cqrs_fail(err, CQRS_EXIT_SOFTWARE,
					   "an archived line parsed twice: %s", e.msg);
	c->emitted++;
	return 1;
}

static void archive_cursor_close(cqrs_cursor *base)
{
	struct archive_cursor *c = (struct archive_cursor *)base;
	if (c->hot != NULL)
		base->store->ops->cursor_close(c->hot);
	reader_close(&c->r);
	free(c->r.line);
	segments_free(&c->segs);
	for (size_t i = 0; i < c->nrev; i++)
		free(c->rev[i]);
	free(c->rev);
	free(c->rev_len);
	free(c->emitted_line);
	cqrs_strbuf_free(&c->raw);
	free(c->fc.strings);
	free(c);
}

/* Where one aggregate's archived events lie: 1 with its archived version
 * and the sequences of its first and last archived events, 0 when none of
 * its events were archived, -1 with *err. */
static int aggregate_range(cqrs_store *st, const uint8_t id[CQRS_UUID_LEN], int64_t *version,
			   int64_t *first, int64_t *last, cqrs_error *err)
{
	struct cqrs_archive_cache *ac = cache_of(st);
	if (ac == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	sqlite3_stmt *q;
	int got = cached(st, &ac->version,
			 "SELECT aggregate_version, first_sequence, last_sequence"
			 " FROM archived_versions WHERE aggregate_id = ?1",
			 &q, err);
	if (got <= 0)
		return got;
	/* STATIC: id outlives the step, and a copy that failed would leave
	 * the parameter NULL and the read find nothing */
	sqlite3_bind_blob(q, 1, id, CQRS_UUID_LEN, SQLITE_STATIC);
	int rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		*version = sqlite3_column_int64(q, 0);
		*first = sqlite3_column_int64(q, 1);
		*last = sqlite3_column_int64(q, 2);
	}
	sqlite3_reset(q);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_fail(cqrs_sqlite_handle(st), rc, "cannot read the archive", err);
	return rc == SQLITE_ROW;
}

int cqrs_archive_read(cqrs_store *st, const cqrs_filter *f, cqrs_cursor **out, cqrs_error *err)
{
	*out = NULL;
	if (cqrs_sqlite_handle(st) == NULL)
		return 0;
	int64_t upto = archived_upto(st, err);
	if (upto < 0)
		return -1;
	if (cache_of(st)->upto == NULL)
		return 0; /* a store without archive tables (schema 3 or older) */
	int64_t lo = f->after, hi = f->to > 0 ? f->to : INT64_MAX;
	/* Nothing archived that the read wants, as of this look: no segment
	 * is read now, but the cursor is made all the same.  An archive can
	 * move the events it wants out of the store between this look and
	 * the store's statement; open_hot looks again from inside that
	 * statement, for segments after what was seen here. */
	bool none = lo >= upto;
	if (!none && f->aggregate_id != NULL) {
		int64_t version = 0, first = 0, last = 0;
		int r = aggregate_range(st, f->aggregate_id, &version, &first, &last, err);
		if (r < 0)
			return -1;
		if (r == 0 || version <= f->after_version) {
			/* what it wants of that aggregate came after upto */
			none = true;
			lo = upto;
		} else {
			/* only its last archived event (a snapshot's check of
			 * the event it was taken at): read from there */
			if (f->after_version == version - 1)
				first = last;
			lo = lo > first - 1 ? lo : first - 1;
			hi = hi < last ? hi : last;
		}
	}
	struct archive_cursor *c = calloc(1, sizeof *c);
	if (c == NULL || filter_copy(&c->fc, f) < 0) {
		free(c);
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	}
	c->base.store = st;
	c->base.next = f->reverse ? reverse_next : forward_next;
	c->base.close = archive_cursor_close;
	c->r.fd = -1;
	c->lo = lo;
	c->hi = hi;
	c->upto = upto;
	c->segments_only = f->to > 0 && f->to <= upto;
	if (f->aggregate_id != NULL) {
		char id[37];
		cqrs_uuid_format(f->aggregate_id, id);
		snprintf(c->needle, sizeof c->needle, "\"aggregate_id\":\"%s\"", id);
	} else if (f->event_type != NULL) {
		snprintf(c->needle, sizeof c->needle, "\"event_type\":\"%s\"", f->event_type);
	}
	c->needle_len = strlen(c->needle);
	/* newest first: listed once the store's events are read */
	if (!none && !f->reverse && segments_load(st, lo, hi, false, &c->segs, err) < 0) {
		archive_cursor_close(&c->base);
		return -1;
	}
	*out = &c->base;
	return 1;
}

/* --- verifying ------------------------------------------------------------------- */

static void verify_bad(cqrs_verify *v, int64_t seq, const char *fmt, ...) CQRS_PRINTF(3, 4);
static void verify_bad(cqrs_verify *v, int64_t seq, const char *fmt, ...)
{
	v->bad = seq;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(v->why, sizeof v->why, fmt, ap);
	va_end(ap);
}

/* One segment against the chain so far (v->checked, v->hash), which it
 * moves on: 0 (v->bad says whether it held), -1 with *err when it could
 * not be checked at all. */
static int verify_segment(struct seg_reader *r, const struct segment *s, cqrs_verify *v,
			  cqrs_error *err)
{
	if (s->first != v->checked + 1 || memcmp(s->prev_hash, v->hash, CQRS_HASH_LEN) != 0) {
		verify_bad(v, s->first,
			   "%s: the segment does not go on from the chain: it starts at sequence "
			   "%lld, after event %lld",
			   s->file, (long long)s->first, (long long)v->checked);
		return 0;
	}
	cqrs_error e = { 0 };
	if (reader_open(r, s, &e) < 0) {
		if (e.code != CQRS_EXIT_NOINPUT && e.code != CQRS_EXIT_NOPERM)
			return cqrs_fail(err, e.code, "%s", e.msg);
		verify_bad(v, s->first, "%s", e.msg);
		return 0;
	}
	cqrs_event ev;
	ssize_t n;
	while ((n = reader_line(r)) >= 0) {
		if (reader_parse(r, (size_t)n, &ev, &e) < 0) {
			if (not_a_verdict(&e))
				return cqrs_fail(err, e.code, "%s", e.msg);
			verify_bad(v, v->checked + 1, "%s", e.msg);
			return 0;
		}
		uint8_t h[CQRS_HASH_LEN];
		cqrs_event_hash(&ev, v->hash, h);
		if (ev.sequence != v->checked + 1 || ev.sequence > s->last ||
		    memcmp(h, ev.hash, CQRS_HASH_LEN) != 0) {
			verify_bad(v, v->checked + 1,
				   "%s:%lld: hash chain broken: an archived event was edited, "
				   "removed or reordered",
				   s->file, (long long)r->lineno);
			return 0;
		}
		memcpy(v->hash, ev.hash, CQRS_HASH_LEN);
		v->checked++;
	}
	uint8_t sha[CQRS_HASH_LEN];
	if (reader_end(r, &e) < 0 && not_a_verdict(&e))
		return cqrs_fail(err, e.code, "%s", e.msg);
	if (e.code != 0 || gz_read_rest(&r->gz, sha) < 0) {
		if (e.code == 0 && r->gz.error != 0)
			return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", s->file,
					 strerror(r->gz.error));
		verify_bad(v, v->checked + 1, "%s", e.msg[0] ? e.msg : "damaged");
		return 0;
	}
	if (v->checked != s->last)
		verify_bad(v, v->checked + 1,
			   "%s: the segment ends at sequence %lld; the store recorded it to %lld",
			   s->file, (long long)v->checked, (long long)s->last);
	else if (memcmp(sha, s->sha, CQRS_HASH_LEN) != 0)
		verify_bad(v, s->first,
			   "%s: the file's SHA-256 is not the one recorded when it was archived: "
			   "the segment was replaced or changed",
			   s->file);
	else if (memcmp(v->hash, s->last_hash, CQRS_HASH_LEN) != 0)
		verify_bad(v, s->last, "%s: its last hash is not the one the store recorded",
			   s->file);
	return 0;
}

int cqrs_archive_verify(cqrs_store *st, cqrs_verify *v, cqrs_error *err)
{
	if (cqrs_sqlite_handle(st) == NULL)
		return 0;
	int64_t upto = archived_upto(st, err);
	if (upto <= 0)
		return upto < 0 ? -1 : 0;
	struct segment_list l = { 0 };
	if (segments_load(st, 0, INT64_MAX, false, &l, err) < 0)
		return -1;
	struct seg_reader r = { .fd = -1 };
	int rc = 0;
	for (size_t i = 0; i < l.n && rc == 0 && v->bad == 0; i++) {
		rc = verify_segment(&r, &l.v[i], v, err);
		reader_close(&r);
	}
	free(r.line);
	segments_free(&l);
	return rc;
}

/* --- archived event ids ------------------------------------------------------------ */

static bool same_bytes(const char *a, size_t an, const char *b, size_t bn)
{
	return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

int cqrs_archive_duplicate(cqrs_store *st, cqrs_event *ev, cqrs_error *err)
{
	if (!ev->has_event_id || cqrs_sqlite_handle(st) == NULL)
		return 0;
	struct cqrs_archive_cache *ac = cache_of(st);
	if (ac == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	sqlite3_stmt *q;
	int got = cached(st, &ac->event_id,
			 "SELECT sequence FROM archived_events WHERE event_id = ?1", &q, err);
	if (got <= 0)
		return got;
	sqlite3_bind_blob(q, 1, ev->event_id, CQRS_UUID_LEN, SQLITE_STATIC); /* as above */
	int rc = sqlite3_step(q);
	int64_t seq = rc == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
	sqlite3_reset(q);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_fail(cqrs_sqlite_handle(st), rc, "cannot read the archive", err);
	if (rc == SQLITE_DONE)
		return 0;
	/* the archived event, from its segment: the same comparison as a
	 * stored one's (store_sqlite.c check_duplicate) */
	cqrs_filter f = { .after = seq - 1, .to = seq, .limit = 1 };
	cqrs_cursor *c;
	int r = cqrs_archive_read(st, &f, &c, err);
	if (r <= 0)
		return r < 0 ? -1 : cqrs_fail(err, CQRS_EXIT_SOFTWARE, "archived event lost");
	cqrs_event stored;
	r = c->next(c, &stored, err);
	char id[37];
	cqrs_uuid_format(ev->event_id, id);
	if (r == 1) {
		bool same = memcmp(stored.aggregate_id, ev->aggregate_id, CQRS_UUID_LEN) == 0 &&
			    strcmp(stored.aggregate_type, ev->aggregate_type) == 0 &&
			    strcmp(stored.event_type, ev->event_type) == 0 &&
			    stored.event_version == ev->event_version &&
			    same_bytes(stored.data, stored.data_len, ev->data, ev->data_len) &&
			    same_bytes(stored.metadata, stored.metadata_len, ev->metadata,
				       ev->metadata_len) &&
			    (ev->timestamp[0] == '\0' ||
			     strcmp(stored.timestamp, ev->timestamp) == 0) &&
			    (ev->aggregate_version == 0 ||
			     stored.aggregate_version == ev->aggregate_version);
		if (same) {
			const char *data = ev->data, *metadata = ev->metadata;
			size_t dl = ev->data_len, ml = ev->metadata_len;
			*ev = stored;
			ev->data = data;
			ev->data_len = dl;
			ev->metadata = metadata;
			ev->metadata_len = ml;
			r = CQRS_DUPLICATE;
		} else {
			r = cqrs_fail(
				err, CQRS_EXIT_DATAERR,
				"event_id %s is already stored (sequence %lld, archived) with "
				"different content",
				id, (long long)seq);
		}
	} else if (r == 0) {
		r = cqrs_fail(err, CQRS_EXIT_DATAERR,
			      "event_id %s is archived at sequence %lld, which its segment lacks "
			      "(see cqrs-read --verify)",
			      id, (long long)seq);
	}
	cqrs_cursor_close(c);
	return r;
}

/* --- archiving ---------------------------------------------------------------------- */

/* $CQRS_ARCHIVE_CRASH_AT=N, a testing aid: cqrs-archive kills itself
 * (SIGKILL) at its Nth step boundary (a segment written, renamed into
 * place, its events deleted but not committed, committed), so that tests
 * show that a crash anywhere leaves every event in the store or in a
 * recorded segment. */
static void crash_point(void)
{
	static int64_t at = -1, n;
	if (at < 0) {
		const char *e = getenv("CQRS_ARCHIVE_CRASH_AT");
		if (e == NULL || cqrs_parse_int64(e, &at) < 0)
			at = 0;
	}
	if (at > 0 && ++n == at)
		raise(SIGKILL);
}

static int io_fail(cqrs_error *err, const char *path, int e)
{
	return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", path, strerror(e));
}

static int sync_dir(const char *dir, cqrs_error *err)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return io_fail(err, dir, e);
	}
	close(fd);
	return 0;
}

/* The store's events a..b into g, checked against the chain from prev:
 * 0 with last set to the hash of b, or -1 with *err. */
static int copy_events(cqrs_store *st, FILE *f, int64_t a, int64_t b,
		       const uint8_t prev[CQRS_HASH_LEN], uint8_t last[CQRS_HASH_LEN],
		       cqrs_error *err)
{
	cqrs_filter fl = { .after = a - 1, .to = b };
	cqrs_cursor *c = st->ops->read(st, &fl, err);
	if (c == NULL)
		return -1;
	memcpy(last, prev, CQRS_HASH_LEN);
	int64_t expect = a;
	cqrs_event ev;
	int r;
	while ((r = st->ops->cursor_next(c, &ev, err)) == 1) {
		uint8_t h[CQRS_HASH_LEN];
		cqrs_event_hash(&ev, last, h);
		if (ev.sequence != expect || memcmp(h, ev.hash, CQRS_HASH_LEN) != 0) {
			r = cqrs_fail(err, CQRS_EXIT_DATAERR,
				      "the chain is broken at sequence %lld: nothing was archived "
				      "from there (see cqrs-read --verify)",
				      (long long)expect);
			break;
		}
		cqrs_event_write(f, &ev);
		memcpy(last, ev.hash, CQRS_HASH_LEN);
		expect++;
	}
	st->ops->cursor_close(c);
	if (r == 0 && expect != b + 1)
		r = cqrs_fail(err, CQRS_EXIT_DATAERR,
			      "the store lacks event %lld: nothing was archived from there",
			      (long long)expect);
	return r < 0 ? -1 : 0;
}

/* Writes events a..b into DIR/events-A-B.ndjson.gz: a temporary file,
 * synced, renamed into place, the directory synced.  s gets the range,
 * the file and its hashes. */
static int write_segment(cqrs_store *st, const char *dir, int64_t a, int64_t b,
			 const uint8_t prev[CQRS_HASH_LEN], struct segment *s, cqrs_error *err)
{
	char name[96], path[PATH_MAX], tmp[PATH_MAX];
	snprintf(name, sizeof name, "events-%012lld-%012lld.ndjson.gz", (long long)a, (long long)b);
	if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path ||
	    (size_t)snprintf(tmp, sizeof tmp, "%s/.%s.%ld.tmp", dir, name, (long)getpid()) >=
		    sizeof tmp)
		return cqrs_fail(err, CQRS_EXIT_USAGE, "%s: path too long", dir);
	char prev_hex[2 * CQRS_HASH_LEN + 1], comment[256];
	cqrs_hash_format(prev, prev_hex);
	snprintf(comment, sizeof comment,
		 "{\"cqrs_segment\":1,\"first_sequence\":%lld,\"last_sequence\":%lld,"
		 "\"prev_hash\":\"%s\"}",
		 (long long)a, (long long)b, prev_hex);
	unlink(tmp); /* left by a run of this pid that died */
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return cqrs_fail(err, errno == EACCES ? CQRS_EXIT_NOPERM : CQRS_EXIT_CANTCREAT,
				 "%s: %s", tmp, strerror(errno));
	struct gz *g = malloc(sizeof *g);
	FILE *f = g != NULL ? gz_open_write(g, fd, comment) : NULL;
	int rc = -1;
	if (f == NULL) {
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		goto out;
	}
	rc = copy_events(st, f, a, b, prev, s->last_hash, err);
	bool flushed = fflush(f) == 0 && !g->failed && gz_deflate(g, Z_FINISH) == 0;
	deflateEnd(&g->z);
	fclose(f);
	if (rc < 0)
		goto out;
	rc = -1;
	if (!flushed || fsync(fd) < 0) {
		io_fail(err, tmp, g->error ? g->error : errno ? errno : EIO);
		goto out;
	}
	sha256_digest(&g->sha, CQRS_HASH_LEN, s->sha);
	int e = close(fd) < 0 ? errno : 0;
	fd = -1;
	if (e != 0) {
		io_fail(err, tmp, e);
		goto out;
	}
	crash_point();
	if (rename(tmp, path) < 0) {
		io_fail(err, path, errno);
		goto out;
	}
	if (sync_dir(dir, err) < 0)
		goto out;
	crash_point();
	s->first = a;
	s->last = b;
	memcpy(s->prev_hash, prev, CQRS_HASH_LEN);
	rc = (s->file = strdup(path)) != NULL ? 0
					      : cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
out:
	if (fd >= 0)
		close(fd);
	if (rc < 0)
		unlink(tmp);
	free(g);
	return rc;
}

/* Reads the segment back as --verify will: what is deleted from the store
 * must be readable from the file first. */
static int read_back(const struct segment *s, cqrs_error *err)
{
	cqrs_verify v = { .checked = s->first - 1 };
	memcpy(v.hash, s->prev_hash, CQRS_HASH_LEN);
	struct seg_reader r = { .fd = -1 };
	int rc = verify_segment(&r, s, &v, err);
	reader_close(&r);
	free(r.line);
	if (rc == 0 && v.bad != 0)
		rc = cqrs_fail(err, CQRS_EXIT_IOERR,
			       "%s: the segment does not read back as written (sequence %lld: %s); "
			       "nothing was archived from there",
			       s->file, (long long)v.bad, v.why);
	return rc;
}

/* The statements of one archiving transaction: ?1 and ?2 are the range. */
static const char *const record_sql[] = {
	"INSERT INTO archive_in_progress (upto) VALUES (?2)",
	"INSERT INTO archived_events (event_id, sequence)"
	" SELECT event_id, sequence FROM events WHERE sequence BETWEEN ?1 AND ?2",
	"INSERT INTO archived_versions (aggregate_id, aggregate_version, first_sequence,"
	" last_sequence) SELECT aggregate_id, max(aggregate_version), min(sequence),"
	" max(sequence) FROM events WHERE sequence BETWEEN ?1 AND ?2 GROUP BY aggregate_id"
	" ON CONFLICT (aggregate_id) DO UPDATE SET aggregate_version = excluded.aggregate_version,"
	" last_sequence = excluded.last_sequence",
	"INSERT INTO archive_segments (first_sequence, last_sequence, prev_hash, last_hash, file,"
	" file_sha256, signed_head, archived_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
	"DELETE FROM events WHERE sequence BETWEEN ?1 AND ?2",
	"DELETE FROM archive_in_progress",
};

static int run_record(sqlite3 *db, const char *sql, const struct segment *s, const char *head,
		      const char *now, cqrs_error *err)
{
	sqlite3_stmt *q;
	int rc = sqlite3_prepare_v2(db, sql, -1, &q, NULL);
	if (rc != SQLITE_OK)
		return cqrs_sqlite_fail(db, rc, true, "cannot archive", err);
	int n = sqlite3_bind_parameter_count(q);
	if (n >= 2) {
		sqlite3_bind_int64(q, 1, s->first);
		sqlite3_bind_int64(q, 2, s->last);
	}
	if (n == 8) {
		sqlite3_bind_blob(q, 3, s->prev_hash, CQRS_HASH_LEN, SQLITE_STATIC);
		sqlite3_bind_blob(q, 4, s->last_hash, CQRS_HASH_LEN, SQLITE_STATIC);
		sqlite3_bind_text(q, 5, s->file, -1, SQLITE_STATIC);
		sqlite3_bind_blob(q, 6, s->sha, CQRS_HASH_LEN, SQLITE_STATIC);
		if (head != NULL)
			sqlite3_bind_text(q, 7, head, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 8, now, -1, SQLITE_STATIC);
	}
	rc = sqlite3_step(q);
	sqlite3_finalize(q);
	if (rc != SQLITE_DONE)
		return cqrs_sqlite_fail(db, rc, true, "cannot archive", err);
	return 0;
}

/* Records the segment and deletes its events, in one transaction. */
static int record_segment(cqrs_store *st, const struct segment *s, const char *head,
			  const char *now, cqrs_error *err)
{
	sqlite3 *db = cqrs_sqlite_handle(st);
	if (cqrs_store_begin(st, err) < 0)
		return -1;
	int64_t upto = archived_upto(st, err);
	if (upto != s->first - 1) {
		cqrs_store_rollback(st);
		if (upto < 0)
			return -1;
		return cqrs_fail(
			err, CQRS_EXIT_TEMPFAIL,
			"another cqrs-archive took the archive to sequence %lld meanwhile; "
			"run it again",
			(long long)upto);
	}
	for (size_t i = 0; i < sizeof record_sql / sizeof record_sql[0]; i++) {
		if (run_record(db, record_sql[i], s, head, now, err) < 0) {
			cqrs_store_rollback(st);
			return -1;
		}
		if (strncmp(record_sql[i], "DELETE FROM events", 18) == 0 &&
		    sqlite3_changes(db) != s->last - s->first + 1) {
			cqrs_store_rollback(st);
			return cqrs_fail(err, CQRS_EXIT_SOFTWARE,
					 "the store changed under the archive: nothing archived");
		}
	}
	crash_point();
	if (cqrs_store_commit(st, err) < 0)
		return -1;
	crash_point();
	return 0;
}

/* The segment as one NDJSON line (cqrs-archive(1)). */
static void print_segment(FILE *out, const struct segment *s, const char *head, const char *at)
{
	char prev[2 * CQRS_HASH_LEN + 1], last[2 * CQRS_HASH_LEN + 1], sha[2 * CQRS_HASH_LEN + 1];
	cqrs_hash_format(s->prev_hash, prev);
	cqrs_hash_format(s->last_hash, last);
	cqrs_hash_format(s->sha, sha);
	fputs("{\"segment\":", out);
	cqrs_json_write_string(out, s->file, strlen(s->file));
	fprintf(out,
		",\"first_sequence\":%lld,\"last_sequence\":%lld,\"events\":%lld,"
		"\"prev_hash\":\"%s\",\"last_hash\":\"%s\",\"file_sha256\":\"%s\","
		"\"signed_head\":%s,\"archived_at\":\"%s\"}\n",
		(long long)s->first, (long long)s->last, (long long)(s->last - s->first + 1), prev,
		last, sha, head != NULL ? head : "null", at);
}

/* The head at the segment's end, signed, as its JSON line: also written
 * beside the segment as SEGMENT.head, for checking it on another host. */
static int sign_segment(cqrs_store *st, const char *dir, const struct segment *s,
			const cqrs_signing_key *key, char line[CQRS_SIGNED_HEAD_MAX],
			cqrs_error *err)
{
	cqrs_verify v = { .checked = s->last };
	memcpy(v.hash, s->last_hash, CQRS_HASH_LEN);
	struct cqrs_signed_head h;
	if (cqrs_signed_head_make(st, &v, key, &h, err) < 0)
		return -1;
	size_t n = cqrs_signed_head_format(&h, line, CQRS_SIGNED_HEAD_MAX - 1);
	char text[CQRS_SIGNED_HEAD_MAX + 1], name[PATH_MAX];
	snprintf(text, sizeof text, "%.*s\n", (int)n, line);
	const char *base = strrchr(s->file, '/');
	snprintf(name, sizeof name, "%s.head", base != NULL ? base + 1 : s->file);
	return cqrs_textfile_replace(dir, name, text, n + 1, 0600, err);
}

/* Every consumer must have passed upto: the caller's (projections, named
 * checkpoints) and the store's saga runners. */
static int check_consumers(cqrs_store *st, const struct cqrs_archive_options *o, cqrs_error *err)
{
	const char *behind = NULL;
	int64_t at = 0;
	for (size_t i = 0; i < o->nconsumers && behind == NULL; i++)
		if (o->consumers[i].sequence < o->upto) {
			behind = o->consumers[i].name;
			at = o->consumers[i].sequence;
		}
	char saga[300] = "";
	sqlite3 *db = cqrs_sqlite_handle(st);
	sqlite3_stmt *q;
	if (behind == NULL &&
	    sqlite3_prepare_v2(db,
			       "SELECT name, sequence FROM checkpoints WHERE sequence < ?1"
			       " ORDER BY sequence, name LIMIT 1",
			       -1, &q, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(q, 1, o->upto);
		if (sqlite3_step(q) == SQLITE_ROW) {
			snprintf(saga, sizeof saga, "saga runner checkpoint '%s'",
				 (const char *)sqlite3_column_text(q, 0));
			behind = saga;
			at = sqlite3_column_int64(q, 1);
		}
		sqlite3_finalize(q);
	}
	if (behind == NULL)
		return 0;
	return cqrs_fail(err, CQRS_EXIT_TEMPFAIL,
			 "cannot archive up to sequence %lld: %s has taken the events up to %lld "
			 "only; nothing was archived (let it catch up, or archive up to %lld)",
			 (long long)o->upto, behind, (long long)at, (long long)at);
}

/* The segments' directory: made (0700) when missing, refused when others
 * could write it; its real path, which the store records. */
static int segment_dir(const char *store_path, const char *option, char real[PATH_MAX],
		       cqrs_error *err)
{
	char dir[PATH_MAX];
	if ((size_t)snprintf(dir, sizeof dir, "%s%s", option != NULL ? option : store_path,
			     option != NULL ? "" : ".archive") >= sizeof dir)
		return cqrs_fail(err, CQRS_EXIT_USAGE, "%s: path too long", dir);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return cqrs_fail(err, errno == EACCES ? CQRS_EXIT_NOPERM : CQRS_EXIT_CANTCREAT,
				 "%s: cannot create directory: %s", dir, strerror(errno));
	if (realpath(dir, real) == NULL)
		return cqrs_fail(err, CQRS_EXIT_CANTCREAT, "%s: %s", dir, strerror(errno));
	return cqrs_textfile_check_dir(real, err);
}

int cqrs_archive(cqrs_store *st, const char *store_path, const struct cqrs_archive_options *o,
		 cqrs_error *err)
{
	if (cqrs_sqlite_handle(st) == NULL)
		return cqrs_fail(err, CQRS_EXIT_CONFIG,
				 "%s: archiving needs the embedded SQLite store", store_path);
	int64_t head;
	uint8_t head_hash[CQRS_HASH_LEN];
	if (cqrs_store_head(st, &head, head_hash, err) < 0)
		return -1;
	if (o->upto >= head)
		return cqrs_fail(err, CQRS_EXIT_USAGE,
				 "--upto %lld: the store's last event (sequence %lld) stays in the "
				 "store; archive up to %lld at most",
				 (long long)o->upto, (long long)head, (long long)(head - 1));
	int64_t done = archived_upto(st, err);
	if (done < 0 || check_consumers(st, o, err) < 0)
		return -1;
	if (o->upto <= done)
		return 0; /* archived already */
	char dir[PATH_MAX];
	if (segment_dir(store_path, o->dir, dir, err) < 0)
		return -1;
	int64_t per = o->segment_events > 0 ? o->segment_events : SEGMENT_EVENTS_DEFAULT;
	uint8_t prev[CQRS_HASH_LEN] = { 0 };
	if (done > 0) {
		struct segment_list l = { 0 };
		if (segments_load(st, done - 1, done, false, &l, err) < 0)
			return -1;
		size_t found = l.n;
		if (found == 1)
			memcpy(prev, l.v[0].last_hash, CQRS_HASH_LEN);
		segments_free(&l);
		if (found != 1)
			return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "the archive's end is lost");
	}
	for (int64_t a = done + 1; a <= o->upto;) {
		int64_t b = o->upto - a + 1 > per ? a + per - 1 : o->upto;
		struct segment s = { 0 };
		char head_line[CQRS_SIGNED_HEAD_MAX], now[CQRS_TIMESTAMP_LEN + 1];
		int rc = write_segment(st, dir, a, b, prev, &s, err);
		if (rc == 0)
			rc = read_back(&s, err);
		if (rc == 0 && o->key != NULL)
			rc = sign_segment(st, dir, &s, o->key, head_line, err);
		cqrs_timestamp_now(now);
		if (rc == 0)
			rc = record_segment(st, &s, o->key != NULL ? head_line : NULL, now, err);
		if (rc == 0 && o->report != NULL)
			print_segment(o->report, &s, o->key != NULL ? head_line : NULL, now);
		memcpy(prev, s.last_hash, CQRS_HASH_LEN);
		free(s.file);
		if (rc < 0)
			return -1;
		a = b + 1;
	}
	/* deleted rows leave free pages, which later appends reuse; the file
	 * shrinks only when rewritten */
	sqlite3 *db = cqrs_sqlite_handle(st);
	int rc = o->vacuum ? sqlite3_exec(db, "VACUUM", NULL, NULL, NULL) : SQLITE_OK;
	return rc == SQLITE_OK ? 0 : cqrs_sqlite_fail(db, rc, true, "cannot vacuum the store", err);
}

int cqrs_archive_list(cqrs_store *st, FILE *out, cqrs_error *err)
{
	sqlite3 *db = cqrs_sqlite_handle(st);
	if (db == NULL || archived_upto(st, err) <= 0)
		return err->code ? -1 : 0;
	sqlite3_stmt *q;
	int rc = sqlite3_prepare_v2(
		db,
		"SELECT first_sequence, last_sequence, prev_hash, last_hash, file,"
		" file_sha256, signed_head, archived_at FROM archive_segments"
		" ORDER BY first_sequence",
		-1, &q, NULL);
	if (rc != SQLITE_OK)
		return db_fail(db, rc, "cannot read the archive", err);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		struct segment s = { .first = sqlite3_column_int64(q, 0),
				     .last = sqlite3_column_int64(q, 1),
				     .file = (char *)sqlite3_column_text(q, 4) };
		blob_to(q, 2, s.prev_hash);
		blob_to(q, 3, s.last_hash);
		blob_to(q, 5, s.sha);
		print_segment(out, &s, (const char *)sqlite3_column_text(q, 6),
			      (const char *)sqlite3_column_text(q, 7));
	}
	sqlite3_finalize(q);
	return rc == SQLITE_DONE ? 0 : db_fail(db, rc, "cannot read the archive", err);
}

/* --- a segment on its own ------------------------------------------------------------ */

/* The range and the hash the header's comment names: 0, or -1. */
static int parse_comment(const char *text, struct segment *s)
{
	size_t len = strlen(text);
	const char *v;
	size_t vn;
	char num[24];
	if (!cqrs_json_get(text, len, "cqrs_segment", &v, &vn) || vn != 1 || v[0] != '1')
		return -1;
	if (!cqrs_json_get(text, len, "first_sequence", &v, &vn) || vn >= sizeof num)
		return -1;
	memcpy(num, v, vn);
	num[vn] = '\0';
	if (cqrs_parse_int64(num, &s->first) < 0 || s->first < 1)
		return -1;
	if (!cqrs_json_get(text, len, "last_sequence", &v, &vn) || vn >= sizeof num)
		return -1;
	memcpy(num, v, vn);
	num[vn] = '\0';
	if (cqrs_parse_int64(num, &s->last) < 0 || s->last < s->first)
		return -1;
	if (!cqrs_json_get(text, len, "prev_hash", &v, &vn) || vn != 2 * CQRS_HASH_LEN + 2 ||
	    cqrs_hash_parse(v + 1, vn - 2, s->prev_hash) < 0)
		return -1;
	return 0;
}

/* The signed head beside the segment (SEGMENT.head) by pub, ending where
 * the segment ends; for the first segment, of the store that begins with
 * its first event. */
static int check_head_file(const struct segment *s, const uint8_t first_hash[CQRS_HASH_LEN],
			   const cqrs_public_key *pub, cqrs_error *err)
{
	char path[PATH_MAX];
	if ((size_t)snprintf(path, sizeof path, "%s.head", s->file) >= sizeof path)
		return cqrs_fail(err, CQRS_EXIT_USAGE, "%s: path too long", s->file);
	struct cqrs_signed_head h;
	cqrs_error e = { 0 };
	if (cqrs_signed_head_read(path, &h, err) < 0)
		return -1;
	if (cqrs_signed_head_verify(&h, pub, &e) < 0)
		return cqrs_fail(err, e.code, "%s: %s", path, e.msg);
	if (h.sequence != s->last || memcmp(h.hash, s->last_hash, CQRS_HASH_LEN) != 0 ||
	    (s->first == 1 && memcmp(h.store_id, first_hash, CQRS_HASH_LEN) != 0))
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "%s: the signed head is not the segment's end (sequence %lld)",
				 path, (long long)s->last);
	return 0;
}

int cqrs_archive_check(const char *segment, const cqrs_public_key *pub, FILE *out, cqrs_error *err)
{
	struct segment s = { .file = (char *)segment, .first = 1, .last = INT64_MAX };
	struct seg_reader r = { .fd = -1 };
	uint8_t first_hash[CQRS_HASH_LEN] = { 0 };
	int rc = reader_open(&r, &s, err);
	if (rc < 0)
		return -1;
	cqrs_verify v = { 0 };
	ssize_t n = reader_line(&r);
	/* the header is read with the first bytes */
	if (!r.gz.header.done || parse_comment(r.gz.comment, &s) < 0) {
		rc = cqrs_fail(err, CQRS_EXIT_DATAERR,
			       "%s: not an archive segment (no cqrs_segment header)", segment);
		goto out;
	}
	v.checked = s.first - 1;
	memcpy(v.hash, s.prev_hash, CQRS_HASH_LEN);
	for (; n >= 0; n = reader_line(&r)) {
		cqrs_event ev;
		uint8_t h[CQRS_HASH_LEN];
		if ((rc = reader_parse(&r, (size_t)n, &ev, err)) < 0)
			goto out;
		cqrs_event_hash(&ev, v.hash, h);
		if (ev.sequence != v.checked + 1 || ev.sequence > s.last ||
		    memcmp(h, ev.hash, CQRS_HASH_LEN) != 0) {
			rc = cqrs_fail(
				err, CQRS_EXIT_DATAERR,
				"%s:%lld: sequence %lld: hash chain broken: an archived event "
				"was edited, removed or reordered",
				segment, (long long)r.lineno, (long long)(v.checked + 1));
			goto out;
		}
		if (ev.sequence == 1)
			memcpy(first_hash, ev.hash, CQRS_HASH_LEN);
		memcpy(v.hash, ev.hash, CQRS_HASH_LEN);
		v.checked++;
	}
	if ((rc = reader_end(&r, err)) < 0)
		goto out;
	if (gz_read_rest(&r.gz, s.sha) < 0) {
		rc = io_fail(err, segment, r.gz.error);
		goto out;
	}
	if (v.checked != s.last) {
		rc = cqrs_fail(err, CQRS_EXIT_DATAERR,
			       "%s: sequence %lld: the segment ends there; its header says %lld",
			       segment, (long long)(v.checked + 1), (long long)s.last);
		goto out;
	}
	memcpy(s.last_hash, v.hash, CQRS_HASH_LEN);
	if (pub != NULL && (rc = check_head_file(&s, first_hash, pub, err)) < 0)
		goto out;
	char prev[2 * CQRS_HASH_LEN + 1], last[2 * CQRS_HASH_LEN + 1], sha[2 * CQRS_HASH_LEN + 1];
	cqrs_hash_format(s.prev_hash, prev);
	cqrs_hash_format(s.last_hash, last);
	cqrs_hash_format(s.sha, sha);
	fputs("{\"segment\":", out);
	cqrs_json_write_string(out, segment, strlen(segment));
	fprintf(out,
		",\"first_sequence\":%lld,\"last_sequence\":%lld,\"events\":%lld,"
		"\"prev_hash\":\"%s\",\"last_hash\":\"%s\",\"file_sha256\":\"%s\",\"signed\":%s}\n",
		(long long)s.first, (long long)s.last, (long long)(s.last - s.first + 1), prev,
		last, sha, pub != NULL ? "true" : "false");
out:
	reader_close(&r);
	free(r.line);
	return rc;
}

bool cqrs_archive_table(const char *name)
{
	static const char *const tables[] = { "archive_segments", "archived_events",
					      "archived_versions", "archive_in_progress" };
	for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
		if (strcmp(name, tables[i]) == 0)
			return true;
	return false;
}
