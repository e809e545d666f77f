/*
 * Backup and restore of a live store (issue 12), cqrs-backup(1).
 *
 * A backup is one consistent state of the store, read while writers go on
 * (WAL: a reader keeps its snapshot): either a SQLite file made with
 * SQLite's online backup API, or NDJSON, the events in their stored form
 * (the bytes the hash covers, as cqrs-read prints them) and every other
 * table of the store as rows, between a header and a trailer that make a
 * truncated stream visible.  Whatever is written or restored goes to a
 * temporary file beside the target, is checked (the hash chain, and that
 * the other tables name only events the copy holds), made durable and
 * renamed into place; a failure leaves nothing behind.
 *
 * A PostgreSQL store (issue 13) has the NDJSON form alone: its events read
 * in one REPEATABLE READ transaction, and the rows of the tables both
 * backends keep (CQRS_PORTABLE_TABLES); its restore is one transaction
 * into a store with no events.  Backups go between the backends both ways,
 * every hash kept.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cqrs.h"
#include "common/strbuf.h"
#include "store/store_impl.h"
#include "banned.h"

#define FORMAT_VERSION 1
#define SQLITE_MAGIC   "SQLite format 3"

/* --- heads: SEQ:HASH ------------------------------------------------------ */

void cqrs_head_format(const struct cqrs_head *h, char out[CQRS_HEAD_TEXT_LEN + 1])
{
	char hex[2 * CQRS_HASH_LEN + 1];
	cqrs_hash_format(h->hash, hex);
	snprintf(out, CQRS_HEAD_TEXT_LEN + 1, "%lld:%s", (long long)h->sequence, hex);
}

int cqrs_head_parse(const char *text, size_t len, struct cqrs_head *h)
{
	const char *colon = memchr(text, ':', len);
	char num[21];
	size_t n = colon != NULL ? (size_t)(colon - text) : 0;
	if (colon == NULL || n == 0 || n >= sizeof num)
		return -1;
	memcpy(num, text, n);
	num[n] = '\0';
	if (cqrs_parse_int64(num, &h->sequence) < 0 ||
	    cqrs_hash_parse(colon + 1, len - n - 1, h->hash) < 0)
		return -1;
	static const uint8_t zero[CQRS_HASH_LEN];
	/* an empty store's head, and only it, has sequence 0 and no hash */
	if ((h->sequence == 0) != (memcmp(h->hash, zero, CQRS_HASH_LEN) == 0))
		return -1;
	return 0;
}

/* --- files: the target, the temporary file beside it ---------------------- */

struct place {
	char target[PATH_MAX], dir[PATH_MAX], temp[PATH_MAX];
	bool have_temp;
};

static void remove_temp(struct place *p)
{
	if (!p->have_temp)
		return;
	static const char *const sides[] = { "", "-wal", "-shm", "-journal", ".witness" };
	char path[PATH_MAX + 16];
	for (size_t i = 0; i < sizeof sides / sizeof *sides; i++) {
		snprintf(path, sizeof path, "%s%s", p->temp, sides[i]);
		unlink(path);
	}
	p->have_temp = false;
}

static bool exists(const char *path)
{
	struct stat sb;
	return lstat(path, &sb) == 0 || errno != ENOENT;
}

/* The directory of target must be one nobody else could have filled
 * (cqrs_textfile_check_dir); what is there already: replace says whether
 * it may be replaced (a file backup with --force), store whether it is a
 * store whose stale -wal, left from a lost store, SQLite would replay onto
 * the new one. */
static int prepare_target(struct place *p, const char *target, bool replace, bool store,
			  cqrs_error *err)
{
	memset(p, 0, sizeof *p);
	if ((size_t)snprintf(p->target, sizeof p->target, "%s", target) >= sizeof p->target)
		return cqrs_fail(err, CQRS_EXIT_USAGE, "%s: path too long", target);
	snprintf(p->dir, sizeof p->dir, "%s", target);
	char *slash = strrchr(p->dir, '/');
	const char *base = slash != NULL ? slash + 1 : target;
	if (slash == NULL)
		snprintf(p->dir, sizeof p->dir, ".");
	else
		slash[slash == p->dir] = '\0';
	if (*base == '\0')
		return cqrs_fail(err, CQRS_EXIT_USAGE, "%s: not a file name", target);
	if (cqrs_textfile_check_dir(p->dir, err) < 0) {
		if (err != NULL && err->code == CQRS_EXIT_NOINPUT)
			err->code = CQRS_EXIT_CANTCREAT;
		return -1;
	}
	struct stat sb;
	if (lstat(target, &sb) == 0) {
		if (!replace)
			return cqrs_fail(err, CQRS_EXIT_CANTCREAT,
					 store ? "%s: a store exists there; a restore never "
						 "replaces one"
					       : "%s: exists; not replaced (--force replaces it)",
					 target);
		if (!S_ISREG(sb.st_mode))
			return cqrs_fail(err, CQRS_EXIT_CANTCREAT, "%s: not a regular file",
					 target);
	}
	for (int i = 0; store && i < 2; i++) {
		char side[PATH_MAX + 8];
		snprintf(side, sizeof side, "%s%s", target, i ? "-shm" : "-wal");
		if (exists(side))
			return cqrs_fail(err, CQRS_EXIT_CANTCREAT,
					 "%s: left from an earlier store; SQLite would apply it to "
					 "the restored one: move it away first",
					 side);
	}
	if ((size_t)snprintf(p->temp, sizeof p->temp, "%s/.%s.XXXXXX", p->dir, base) >=
	    sizeof p->temp)
		return cqrs_fail(err, CQRS_EXIT_USAGE, "%s: path too long", target);
	int fd = mkstemp(p->temp); /* 0600 */
	if (fd < 0)
		return cqrs_fail(err, errno == EACCES ? CQRS_EXIT_NOPERM : CQRS_EXIT_CANTCREAT,
				 "%s: cannot create a file there: %s", p->dir, strerror(errno));
	close(fd);
	p->have_temp = true;
	return 0;
}

static int sync_path(const char *path, int flags, cqrs_error *err)
{
	int fd = open(path, flags | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: cannot sync: %s", path, strerror(e));
	}
	close(fd);
	return 0;
}

/* The checked temporary file becomes the target: durable first, then
 * renamed (never over an existing file unless replace), then the rename
 * made durable. */
static int place_temp(struct place *p, bool replace, cqrs_error *err)
{
	if (sync_path(p->temp, O_RDONLY, err) < 0)
		return -1;
	int rc = replace ? rename(p->temp, p->target)
			 : renameat2(AT_FDCWD, p->temp, AT_FDCWD, p->target, RENAME_NOREPLACE);
	if (rc < 0 && !replace && errno == EINVAL) {
		/* a file system without RENAME_NOREPLACE: a hard link fails just
		 * as surely when the name is taken */
		rc = link(p->temp, p->target);
		if (rc == 0)
			unlink(p->temp);
	}
	if (rc < 0)
		return cqrs_fail(err, errno == EEXIST ? CQRS_EXIT_CANTCREAT : CQRS_EXIT_IOERR,
				 "%s: %s", p->target,
				 errno == EEXIST ? "appeared meanwhile; not replaced"
						 : strerror(errno));
	p->have_temp = false;
	return sync_path(p->dir, O_RDONLY | O_DIRECTORY, err);
}

/* --- checks of a copy ------------------------------------------------------- */

static int db_fail(sqlite3 *db, int rc, const char *path, const char *what, cqrs_error *err)
{
	char where[PATH_MAX + 128];
	snprintf(where, sizeof where, "%s: %s", path, what);
	return cqrs_sqlite_fail(db, rc, true, where, err);
}

/* One row of a query with ?1 = head: 1 with the first two columns as text
 * in a and b, 0 when none, -1 with *err. */
static int first_row(sqlite3 *db, const char *path, const char *sql, int64_t head, char *a, char *b,
		     size_t cap, cqrs_error *err)
{
	sqlite3_stmt *q;
	int rc = sqlite3_prepare_v2(db, sql, -1, &q, NULL);
	if (rc != SQLITE_OK)
		return db_fail(db, rc, path, "cannot read the backup", err);
	sqlite3_bind_int64(q, 1, head);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(q, 0);
		snprintf(a, cap, "%s", t != NULL ? (const char *)t : "");
		t = sqlite3_column_text(q, 1);
		snprintf(b, cap, "%s", t != NULL ? (const char *)t : "");
	}
	sqlite3_finalize(q);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_fail(db, rc, path, "cannot read the backup", err);
	return rc == SQLITE_ROW;
}

/* The other tables may name only events the copy holds: a snapshot its
 * aggregate's event at that version, a processed command, a saga and the
 * saga runner's checkpoint sequences up to the head.  A backup stitched
 * together from two moments (or edited) fails here. */
static int check_tables(sqlite3 *db, const char *path, int64_t head, cqrs_error *err)
{
	static const struct {
		const char *sql, *pre, *mid, *post;
	} checks[] = {
		{ "SELECT lower(hex(aggregate_id)), aggregate_version FROM snapshots AS s"
		  " WHERE NOT EXISTS (SELECT 1 FROM events AS e WHERE e.aggregate_id ="
		  " s.aggregate_id AND e.aggregate_version = s.aggregate_version) LIMIT 1",
		  "a snapshot of aggregate ", " at version ", " names no event it holds" },
		{ "SELECT message_id, json_extract(result, '$.last') FROM processed_messages"
		  " WHERE json_valid(result) AND json_extract(result, '$.last') > ?1 LIMIT 1",
		  "processed command '", "' names event ", ", after its last event" },
		{ "SELECT saga_id, start_sequence FROM saga_instances WHERE start_sequence > ?1"
		  " LIMIT 1",
		  "saga ", " started at event ", ", after its last event" },
		{ "SELECT name, sequence FROM checkpoints WHERE sequence > ?1 LIMIT 1",
		  "checkpoint '", "' is at event ", ", after its last event" },
	};
	char a[300], b[300];
	for (size_t i = 0; i < sizeof checks / sizeof *checks; i++) {
		int r = first_row(db, path, checks[i].sql, head, a, b, sizeof a, err);
		if (r < 0)
			return -1;
		if (r == 0)
			continue;
		return cqrs_fail(err, CQRS_EXIT_DATAERR, "%s: %s%s%s%s%s (head %lld)", path,
				 checks[i].pre, a, checks[i].mid, b, checks[i].post,
				 (long long)head);
	}
	return 0;
}

/* The hash chain from the first event to the last, the store's derived
 * columns, and the tables that refer to events; *head is where it ends. */
static int check_store(cqrs_store *st, const char *path, struct cqrs_head *head, cqrs_error *err)
{
	cqrs_verify v;
	if (cqrs_store_verify(st, &v, err) < 0)
		return -1;
	if (v.bad != 0)
		return cqrs_fail(err, CQRS_EXIT_DATAERR, "%s: sequence %lld: %s", path,
				 (long long)v.bad, v.why);
	head->sequence = v.checked;
	memcpy(head->hash, v.hash, CQRS_HASH_LEN);
	/* a PostgreSQL store: its copy is one transaction's, and the rows it
	 * keeps name no event but by checkpoint */
	if (cqrs_pg_is(st))
		return 0;
	return check_tables(cqrs_sqlite_handle(st), path, head->sequence, err);
}

/* Opens the file at path as a store and checks it; shown as label. */
static int check_file(const char *path, const char *label, struct cqrs_head *head, cqrs_error *err)
{
	cqrs_store *st = cqrs_store_open(path, CQRS_OPEN_READ, err);
	if (st == NULL) {
		if (err != NULL && strncmp(err->msg, path, strlen(path)) == 0) {
			char msg[sizeof err->msg];
			snprintf(msg, sizeof msg, "%s%s", label, err->msg + strlen(path));
			snprintf(err->msg, sizeof err->msg, "%s", msg);
		}
		return -1;
	}
	int rc = check_store(st, label, head, err);
	cqrs_store_close(st);
	return rc;
}

/* --- the SQLite file form -------------------------------------------------- */

/* The whole of src, as one read transaction sees it, into the empty file
 * temp, left as a single file (rollback journal, not WAL) so that it can
 * be copied, moved and opened read-only like any file. */
static int copy_database(sqlite3 *src, const char *from, const char *temp, cqrs_error *err)
{
	sqlite3 *dst = NULL;
	int rc = sqlite3_open_v2(temp, &dst, SQLITE_OPEN_READWRITE, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(dst, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		db_fail(dst, rc, temp, "cannot open the copy", err);
		sqlite3_close(dst);
		return -1;
	}
	sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
	if (b == NULL) {
		db_fail(dst, sqlite3_errcode(dst), temp, "cannot start the copy", err);
		sqlite3_close(dst);
		return -1;
	}
	/* -1: every page in one step, inside one read transaction on src */
	rc = sqlite3_backup_step(b, -1);
	int frc = sqlite3_backup_finish(b);
	if (rc == SQLITE_DONE)
		rc = frc;
	if (rc != SQLITE_OK) {
		int base = rc & 0xff;
		if (base == SQLITE_BUSY || base == SQLITE_LOCKED)
			cqrs_fail(err, CQRS_EXIT_TEMPFAIL,
				  "%s: store is busy (another process holds the lock); try again",
				  from);
		else
			db_fail(dst, rc, temp, "cannot copy the store", err);
		sqlite3_close(dst);
		return -1;
	}
	rc = sqlite3_exec(dst, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		db_fail(dst, rc, temp, "cannot write the copy", err);
		sqlite3_close(dst);
		return -1;
	}
	rc = sqlite3_close(dst);
	return rc == SQLITE_OK ? 0 : cqrs_fail(err, CQRS_EXIT_IOERR, "%s: cannot close", temp);
}

/* --- the NDJSON form -------------------------------------------------------- */

static int put(FILE *out, const struct cqrs_strbuf *b, cqrs_error *err)
{
	if (b->oom)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	if (fwrite(b->p, 1, b->len, out) != b->len && !cqrs_stdout_gone())
		return cqrs_fail(err, CQRS_EXIT_IOERR, "cannot write the backup: %s",
				 strerror(errno));
	return 0;
}

static void put_hex(struct cqrs_strbuf *b, const char *key, const unsigned char *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	cqrs_strbuf_printf(b, "{\"%s\":\"", key);
	if (!cqrs_strbuf_grow(b, 2 * n))
		return;
	for (size_t i = 0; i < n; i++) {
		b->p[b->len++] = hex[p[i] >> 4];
		b->p[b->len++] = hex[p[i] & 15];
	}
	b->p[b->len] = '\0';
	cqrs_strbuf_puts(b, "\"}");
}

/* A column's value as JSON, exactly: integers as numbers, text that is
 * UTF-8 as strings, anything else as an object that says what it is. */
static void put_value(struct cqrs_strbuf *b, sqlite3_stmt *q, int i)
{
	const unsigned char *p;
	size_t n;
	switch (sqlite3_column_type(q, i)) {
	case SQLITE_NULL: cqrs_strbuf_puts(b, "null"); break;
	case SQLITE_INTEGER: cqrs_strbuf_printf(b, "%lld", sqlite3_column_int64(q, i)); break;
	case SQLITE_FLOAT:
		cqrs_strbuf_printf(b, "{\"real\":\"%.17g\"}", sqlite3_column_double(q, i));
		break;
	case SQLITE_TEXT:
		p = sqlite3_column_text(q, i);
		n = (size_t)sqlite3_column_bytes(q, i);
		if (cqrs_utf8_valid_prefix((const char *)p, n) == n && memchr(p, '\0', n) == NULL)
			cqrs_strbuf_json_string(b, (const char *)p, n);
		else
			put_hex(b, "text_hex", p, n);
		break;
	default:
		p = sqlite3_column_blob(q, i);
		put_hex(b, "blob", p, (size_t)sqlite3_column_bytes(q, i));
	}
}

/* The tables of the store other than the events, by name: every one is
 * carried, so that what later releases keep in the store travels too;
 * but not the archive's (the backup holds the archived events themselves,
 * and segment files need not outlive the machine the backup is for). */
#define STATE_TABLES                                                                               \
	"SELECT name FROM sqlite_schema WHERE type = 'table' AND name <> 'events'"                 \
	" AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"                                              \
	" AND name NOT IN (" CQRS_ARCHIVE_TABLES ") ORDER BY name"

static int write_table(sqlite3 *db, const char *path, const char *table, FILE *out, int64_t *rows,
		       cqrs_error *err)
{
	char sql[300];
	sqlite3_stmt *q;
	/* rowid order where there is one (the saga runner takes instances in
	 * that order), else the primary key's */
	snprintf(sql, sizeof sql, "SELECT * FROM main.\"%s\" ORDER BY rowid", table);
	if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) {
		snprintf(sql, sizeof sql, "SELECT * FROM main.\"%s\"", table);
		int rc = sqlite3_prepare_v2(db, sql, -1, &q, NULL);
		if (rc != SQLITE_OK)
			return db_fail(db, rc, path, "cannot read the store", err);
	}
	struct cqrs_strbuf b = { 0 };
	int rc, ncol = sqlite3_column_count(q);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		cqrs_strbuf_reset(&b);
		cqrs_strbuf_puts(&b, "{\"table\":");
		cqrs_strbuf_json_string(&b, table, strlen(table));
		cqrs_strbuf_puts(&b, ",\"row\":{");
		for (int i = 0; i < ncol; i++) {
			const char *col = sqlite3_column_name(q, i);
			cqrs_strbuf_puts(&b, i ? "," : "");
			cqrs_strbuf_json_string(&b, col, strlen(col));
			cqrs_strbuf_putc(&b, ':');
			put_value(&b, q, i);
		}
		cqrs_strbuf_puts(&b, "}}\n");
		if (b.len > CQRS_MAX_LINE) {
			rc = SQLITE_ROW;
			cqrs_fail(err, CQRS_EXIT_DATAERR,
				  "%s: a row of table %s is longer than a line may be (%d "
				  "bytes): back it up as a SQLite file",
				  path, table, CQRS_MAX_LINE);
			break;
		}
		if (put(out, &b, err) < 0)
			break;
		(*rows)++;
	}
	cqrs_strbuf_free(&b);
	sqlite3_finalize(q);
	if (rc == SQLITE_DONE)
		return 0;
	return rc == SQLITE_ROW ? -1 : db_fail(db, rc, path, "cannot read the store", err);
}

static int write_tables(sqlite3 *db, const char *path, FILE *out, int64_t *rows, cqrs_error *err)
{
	sqlite3_stmt *q;
	int rc = sqlite3_prepare_v2(db, STATE_TABLES, -1, &q, NULL);
	if (rc != SQLITE_OK)
		return db_fail(db, rc, path, "cannot read the store", err);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(q, 0);
		if (name == NULL || strchr(name, '"') != NULL)
			continue; /* not one of ours: no quoting games */
		if (write_table(db, path, name, out, rows, err) < 0) {
			sqlite3_finalize(q);
			return -1;
		}
	}
	sqlite3_finalize(q);
	return rc == SQLITE_DONE ? 0 : db_fail(db, rc, path, "cannot read the store", err);
}

static void head_json(struct cqrs_strbuf *b, const char *key, const struct cqrs_head *h)
{
	char text[CQRS_HEAD_TEXT_LEN + 1];
	cqrs_head_format(h, text);
	cqrs_strbuf_printf(b, ",\"%s\":\"%s\"", key, text);
}

static int write_events(cqrs_store *st, const struct cqrs_head *since, const struct cqrs_head *head,
			FILE *out, int64_t *events, cqrs_error *err)
{
	if (head->sequence <= since->sequence)
		return 0;
	cqrs_filter f = { .after = since->sequence, .to = head->sequence };
	cqrs_cursor *c = cqrs_store_read(st, &f, err);
	if (c == NULL)
		return -1;
	cqrs_event ev;
	int r;
	/* the chain checked as it is written: a backup that a signed head
	 * vouches for, or that a restore will refuse, is not made */
	uint8_t prev[CQRS_HASH_LEN], h[CQRS_HASH_LEN];
	memcpy(prev, since->hash, CQRS_HASH_LEN);
	while ((r = cqrs_cursor_next(c, &ev, err)) == 1) {
		cqrs_event_hash(&ev, prev, h);
		if (!ev.has_hash || memcmp(h, ev.hash, CQRS_HASH_LEN) != 0) {
			r = cqrs_fail(err, CQRS_EXIT_DATAERR,
				      "sequence %lld: hash chain broken: the store is damaged "
				      "(cqrs-read --verify); no backup was made",
				      (long long)ev.sequence);
			break;
		}
		memcpy(prev, h, CQRS_HASH_LEN);
		cqrs_event_write(out, &ev);
		(*events)++;
		if (ferror(out) && !cqrs_stdout_gone()) {
			r = cqrs_fail(err, CQRS_EXIT_IOERR, "cannot write the backup: %s",
				      strerror(errno));
			break;
		}
	}
	cqrs_cursor_close(c);
	return r;
}

/* The head the backup ends at, signed with key: its JSON line into line
 * (no newline).  The store's first event names the store. */
static int sign_head(cqrs_store *st, const struct cqrs_head *head, const cqrs_signing_key *key,
		     char line[CQRS_SIGNED_HEAD_MAX], cqrs_error *err)
{
	cqrs_verify v = { .checked = head->sequence };
	memcpy(v.hash, head->hash, CQRS_HASH_LEN);
	struct cqrs_signed_head h;
	if (cqrs_signed_head_make(st, &v, key, &h, err) < 0)
		return -1;
	cqrs_signed_head_format(&h, line, CQRS_SIGNED_HEAD_MAX);
	return 0;
}

/* --- the NDJSON form of a PostgreSQL store (issue 13) ---------------------- */

struct pg_rows {
	FILE *out;
	const char *table;
	int64_t *rows;
	struct cqrs_strbuf b;
};

/* One row of a portable table as put_value writes a SQLite row. */
static int put_pg_row(void *arg, int n, const char *const *names, const char *const *values,
		      const bool *numeric, cqrs_error *err)
{
	struct pg_rows *pr = arg;
	struct cqrs_strbuf *b = &pr->b;
	cqrs_strbuf_reset(b);
	cqrs_strbuf_puts(b, "{\"table\":");
	cqrs_strbuf_json_string(b, pr->table, strlen(pr->table));
	cqrs_strbuf_puts(b, ",\"row\":{");
	for (int i = 0; i < n; i++) {
		cqrs_strbuf_puts(b, i ? "," : "");
		cqrs_strbuf_json_string(b, names[i], strlen(names[i]));
		cqrs_strbuf_putc(b, ':');
		size_t len = values[i] != NULL ? strlen(values[i]) : 0;
		if (values[i] == NULL)
			cqrs_strbuf_puts(b, "null");
		else if (numeric[i])
			cqrs_strbuf_puts(b, values[i]);
		else if (cqrs_utf8_valid_prefix(values[i], len) == len)
			cqrs_strbuf_json_string(b, values[i], len);
		else
			put_hex(b, "text_hex", (const unsigned char *)values[i], len);
	}
	cqrs_strbuf_puts(b, "}}\n");
	if (put(pr->out, b, err) < 0)
		return -1;
	(*pr->rows)++;
	return 0;
}

static int write_pg_tables(cqrs_store *st, FILE *out, int64_t *rows, cqrs_error *err)
{
	static const char *const tables[] = { CQRS_PORTABLE_TABLES };
	struct pg_rows pr = { .out = out, .rows = rows };
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < sizeof tables / sizeof *tables; i++) {
		pr.table = tables[i];
		rc = cqrs_pg_table_rows(st, tables[i], put_pg_row, &pr, err);
	}
	cqrs_strbuf_free(&pr.b);
	return rc;
}

/* One moment of the store for the whole backup: SQLite's read
 * transaction, PostgreSQL's REPEATABLE READ one. */
static int read_moment(cqrs_store *st, const char *path, bool begin, cqrs_error *err)
{
	if (cqrs_pg_is(st))
		return cqrs_pg_read_moment(st, begin, err);
	sqlite3 *db = cqrs_sqlite_handle(st);
	int rc = sqlite3_exec(db, begin ? "BEGIN" : "COMMIT", NULL, NULL, NULL);
	return rc == SQLITE_OK || !begin ? 0 : db_fail(db, rc, path, "cannot read the store", err);
}

/* The store's schema version, for the header: SQLite's from the file
 * itself (no quick_check for that), PostgreSQL's from its facts. */
static int store_schema(cqrs_store *st)
{
	if (cqrs_pg_is(st)) {
		struct cqrs_store_facts f;
		cqrs_error ignored = { 0 };
		return cqrs_pg_facts(st, &f, &ignored) == 0 ? f.schema : 0;
	}
	sqlite3_stmt *q;
	int schema = 0;
	if (sqlite3_prepare_v2(cqrs_sqlite_handle(st), "PRAGMA user_version", -1, &q, NULL) ==
		    SQLITE_OK &&
	    sqlite3_step(q) == SQLITE_ROW)
		schema = sqlite3_column_int(q, 0);
	sqlite3_finalize(q);
	return schema;
}

/* Header, events after since, every other table, trailer: all read in one
 * read transaction, so at one state of the store. */
static int write_ndjson(cqrs_store *st, const char *path, const struct cqrs_head *since,
			const cqrs_signing_key *key, FILE *out, struct cqrs_head *head,
			cqrs_error *err)
{
	sqlite3 *db = cqrs_sqlite_handle(st);
	if (read_moment(st, path, true, err) < 0)
		return -1;
	int64_t events = 0, rows = 0;
	struct cqrs_strbuf b = { 0 };
	int r = cqrs_store_head(st, &head->sequence, head->hash, err);
	if (r == 0 && since->sequence > 0)
		r = cqrs_store_expect(st, cqrs_pg_is(st) ? cqrs_pg_name(st) : path, since->sequence,
				      since->hash, "--since", err);
	if (r == 0) {
		char now[CQRS_TIMESTAMP_LEN + 1];
		cqrs_timestamp_now(now);
		cqrs_strbuf_printf(&b, "{\"cqrs_backup\":%d,\"schema\":%d", FORMAT_VERSION,
				   store_schema(st));
		if (since->sequence > 0)
			head_json(&b, "since", since);
		head_json(&b, "head", head);
		cqrs_strbuf_printf(&b, ",\"created_at\":\"%s\"}\n", now);
		r = put(out, &b, err);
	}
	if (r == 0)
		r = write_events(st, since, head, out, &events, err);
	if (r == 0)
		r = db != NULL ? write_tables(db, path, out, &rows, err)
			       : write_pg_tables(st, out, &rows, err);
	if (r == 0) {
		cqrs_strbuf_reset(&b);
		cqrs_strbuf_printf(&b, "{\"cqrs_backup_end\":%d,\"events\":%lld,\"rows\":%lld",
				   FORMAT_VERSION, (long long)events, (long long)rows);
		head_json(&b, "head", head);
		char line[CQRS_SIGNED_HEAD_MAX];
		if (key != NULL && (r = sign_head(st, head, key, line, err)) == 0)
			cqrs_strbuf_printf(&b, ",\"signed_head\":%s", line);
		cqrs_strbuf_puts(&b, "}\n");
		if (r == 0)
			r = put(out, &b, err);
	}
	cqrs_strbuf_free(&b);
	read_moment(st, path, false, NULL);
	return r < 0 ? -1 : 0;
}

/* --- backup ----------------------------------------------------------------- */

/* TARGET.head: the head a SQLite backup ends at, signed, beside it. */
static int sign_file(cqrs_store *st, const char *target, const struct cqrs_head *head,
		     const cqrs_signing_key *key, cqrs_error *err)
{
	char line[CQRS_SIGNED_HEAD_MAX + 1], dir[PATH_MAX], name[PATH_MAX];
	if (sign_head(st, head, key, line, err) < 0)
		return -1;
	size_t n = strlen(line);
	line[n++] = '\n';
	const char *slash = strrchr(target, '/');
	snprintf(dir, sizeof dir, "%.*s",
		 slash == NULL	   ? 1
		 : slash == target ? 1
				   : (int)(slash - target),
		 slash == NULL ? "." : target);
	if ((size_t)snprintf(name, sizeof name, "%s.head", slash == NULL ? target : slash + 1) >=
	    sizeof name)
		return cqrs_fail(err, CQRS_EXIT_USAGE, "%s: path too long", target);
	return cqrs_textfile_replace(dir, name, line, n, 0600, err);
}

static int backup_to_file(cqrs_store *st, const char *store_path, const char *target,
			  const struct cqrs_backup_options *o, struct cqrs_head *head,
			  cqrs_error *err)
{
	struct place p;
	if (prepare_target(&p, target, o->force, false, err) < 0)
		return -1;
	int rc = -1;
	if (o->format == CQRS_BACKUP_SQLITE) {
		if (copy_database(cqrs_sqlite_handle(st), store_path, p.temp, err) < 0 ||
		    check_file(p.temp, target, head, err) < 0)
			goto out;
	} else {
		FILE *f = fopen(p.temp, "w");
		if (f == NULL) {
			cqrs_fail(err, CQRS_EXIT_CANTCREAT, "%s: %s", p.temp, strerror(errno));
			goto out;
		}
		int w = write_ndjson(st, store_path, o->since, o->key, f, head, err);
		if (fclose(f) != 0 && w == 0)
			w = cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", p.temp, strerror(errno));
		if (w < 0)
			goto out;
	}
	rc = place_temp(&p, o->force, err);
	if (rc == 0 && o->key != NULL && o->format == CQRS_BACKUP_SQLITE)
		rc = sign_file(st, target, head, o->key, err);
out:
	remove_temp(&p);
	return rc;
}

int cqrs_backup(const char *store_path, const char *target, FILE *out,
		const struct cqrs_backup_options *o, struct cqrs_head *head, cqrs_error *err)
{
	static const struct cqrs_head none;
	struct cqrs_backup_options opt = *o;
	if (opt.since == NULL)
		opt.since = &none;
	if (opt.format == CQRS_BACKUP_SQLITE && (target == NULL || opt.since->sequence > 0))
		return cqrs_fail(err, CQRS_EXIT_USAGE,
				 "a SQLite backup is a whole file: it needs a target file and "
				 "takes no --since");
	/* the file copy is SQLite's own: refused before any connection */
	if (opt.format == CQRS_BACKUP_SQLITE && cqrs_store_on_server(store_path))
		return cqrs_fail(err, CQRS_EXIT_CONFIG,
				 "a SQLite-file backup copies a SQLite store's file; back up a "
				 "PostgreSQL store with -f ndjson (or pg_dump: cqrs-postgres(7))");
	cqrs_store *st = cqrs_store_open(store_path, CQRS_OPEN_READ, err);
	if (st == NULL)
		return -1;
	int rc;
	if (cqrs_sqlite_handle(st) == NULL && !cqrs_pg_is(st))
		rc = cqrs_fail(err, CQRS_EXIT_CONFIG, "a backup needs the embedded SQLite store");
	else if (target != NULL)
		rc = backup_to_file(st, store_path, target, &opt, head, err);
	else
		rc = write_ndjson(st, store_path, opt.since, opt.key, out, head, err);
	cqrs_store_close(st);
	return rc;
}

/* --- restore: NDJSON ----------------------------------------------------- */

struct restore {
	cqrs_store *st;
	sqlite3 *db;
	cqrs_input *in;
	const char *label;		  /* the backup, for messages */
	const cqrs_public_key *pub;	  /* the trailer's signed head must be its */
	struct cqrs_head since, head, at; /* from the header; where the store is */
	bool incremental;
	int64_t events, rows;
	int64_t keys_left_out; /* erasure keys a PostgreSQL store does not keep */
	sqlite3_stmt *insert;  /* the last table's insert, reused while its keys are */
	char insert_keys[2048];
};

/* "backup:LINE: what", 65 unless code says otherwise */
static int bad_line(struct restore *r, cqrs_error *err, int code, const char *fmt, ...)
	CQRS_PRINTF(4, 5);
static int bad_line(struct restore *r, cqrs_error *err, int code, const char *fmt, ...)
{
	char what[900];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	return cqrs_fail(err, code, "%s:%ld: %s", r->label, cqrs_input_lineno(r->in), what);
}

static bool plain_name(const char *s, size_t n)
{
	if (n == 0 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(s[i] == '_' || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9')))
			return false;
	return true;
}

static int head_member(struct restore *r, const char *obj, size_t len, const char *key,
		       struct cqrs_head *h, cqrs_error *err)
{
	const char *v;
	size_t vn;
	char text[CQRS_HEAD_TEXT_LEN + 2];
	if (!cqrs_json_get(obj, len, key, &v, &vn))
		return 0;
	long n = cqrs_json_string(v, vn, text, sizeof text);
	if (n < 0 || cqrs_head_parse(text, (size_t)n, h) < 0)
		return bad_line(r, err, CQRS_EXIT_DATAERR, "'%s' is not SEQ:HASH", key);
	return 1;
}

static int read_header(struct restore *r, cqrs_error *err)
{
	char *line;
	size_t len;
	int got = cqrs_input_next(r->in, &line, &len, err);
	if (got < 0)
		return -1;
	if (got == 0)
		return cqrs_fail(err, CQRS_EXIT_DATAERR, "%s: empty: not a cqrs backup", r->label);
	const char *v;
	size_t vn;
	cqrs_error jerr = { 0 };
	if (cqrs_json_compact(line, &len, &jerr) < 0 && jerr.code == CQRS_EXIT_OSERR)
		return *err = jerr, -1; /* not a verdict */
	if (jerr.code != 0 || !cqrs_json_get(line, len, "cqrs_backup", &v, &vn))
		return bad_line(r, err, CQRS_EXIT_DATAERR,
				"not a cqrs backup (it starts with a cqrs_backup header)");
	if (vn != 1 || *v != '0' + FORMAT_VERSION)
		return bad_line(r, err, CQRS_EXIT_DATAERR,
				"backup format %.*s is not one this "
				"release reads (%d)",
				(int)(vn > 20 ? 20 : vn), v, FORMAT_VERSION);
	int s = head_member(r, line, len, "since", &r->since, err);
	if (s < 0)
		return -1;
	r->incremental = s == 1 && r->since.sequence > 0;
	int h = head_member(r, line, len, "head", &r->head, err);
	if (h <= 0)
		return h < 0 ? -1 : bad_line(r, err, CQRS_EXIT_DATAERR, "the header has no head");
	return 0;
}

static int restore_event(struct restore *r, char *line, size_t len, cqrs_error *err)
{
	cqrs_event ev;
	cqrs_error e = { 0 };
	if (cqrs_event_parse(&ev, line, len, &e) < 0)
		return bad_line(r, err, e.code, "%s", e.msg);
	if (!ev.has_hash || ev.sequence != r->at.sequence + 1)
		return bad_line(r, err, CQRS_EXIT_DATAERR,
				"event %lld where event %lld belongs: events are missing or out of "
				"order",
				(long long)ev.sequence, (long long)r->at.sequence + 1);
	int a = cqrs_store_append(r->st, &ev, &e);
	if (a != CQRS_APPENDED)
		return bad_line(r, err, a < 0 ? e.code : CQRS_EXIT_DATAERR, "%s",
				a < 0 ? e.msg : "an event_id the backup holds twice");
	r->at.sequence = ev.sequence;
	memcpy(r->at.hash, ev.hash, CQRS_HASH_LEN);
	r->events++;
	return 0;
}

static int hex_value(const char *s, size_t n, unsigned char *out)
{
	for (size_t i = 0; i < n; i++) {
		int d = s[i] >= '0' && s[i] <= '9'   ? s[i] - '0'
			: s[i] >= 'a' && s[i] <= 'f' ? s[i] - 'a' + 10
						     : -1;
		if (d < 0)
			return -1;
		out[i / 2] = (unsigned char)(i % 2 ? out[i / 2] << 4 | d : d);
	}
	return n % 2 ? -1 : 0;
}

/* What bind_value and pg_value say of a value that is one but could not be
 * kept: memory ran out (-1 is a value that is none a backup holds). */
#define VALUE_NO_MEMORY (-2)

/* SQLite's answer to a bind: 0, VALUE_NO_MEMORY, or -1 (too big, say). */
static int bound(int rc)
{
	return rc == SQLITE_OK ? 0 : rc == SQLITE_NOMEM ? VALUE_NO_MEMORY : -1;
}

/* Binds one value as put_value wrote it: 0, -1 when it is none of them, or
 * VALUE_NO_MEMORY. */
static int bind_value(sqlite3_stmt *q, int i, const char *v, size_t vn)
{
	if (vn == 4 && memcmp(v, "null", 4) == 0)
		return bound(sqlite3_bind_null(q, i));
	if (*v == '"') {
		char *buf = malloc(vn);
		if (buf == NULL)
			return VALUE_NO_MEMORY;
		long n = cqrs_json_string(v, vn, buf, vn);
		if (n < 0) {
			free(buf);
			return -1;
		}
		return bound(sqlite3_bind_text(q, i, buf, (int)n, free));
	}
	if (*v == '-' || (*v >= '0' && *v <= '9')) {
		char num[24], *end;
		if (vn >= sizeof num)
			return -1;
		memcpy(num, v, vn);
		num[vn] = '\0';
		errno = 0;
		long long x = strtoll(num, &end, 10);
		if (errno != 0 || *end != '\0')
			return -1;
		return bound(sqlite3_bind_int64(q, i, x));
	}
	size_t pos = 0;
	cqrs_json_member m;
	if (*v != '{' || cqrs_json_next_member(v, vn, &pos, &m) != 1 || m.value_len < 2 ||
	    *m.value != '"')
		return -1;
	const char *s = m.value + 1;
	size_t n = m.value_len - 2;
	if (m.key_len == 4 && memcmp(m.key, "real", 4) == 0) {
		char num[64], *end;
		if (n >= sizeof num)
			return -1;
		memcpy(num, s, n);
		num[n] = '\0';
		double d = strtod(num, &end);
		return *end == '\0' ? bound(sqlite3_bind_double(q, i, d)) : -1;
	}
	unsigned char *bytes = malloc(n / 2 + 1);
	if (bytes == NULL)
		return VALUE_NO_MEMORY;
	if (hex_value(s, n, bytes) < 0) {
		free(bytes);
		return -1;
	}
	if (m.key_len == 4 && memcmp(m.key, "blob", 4) == 0)
		return bound(sqlite3_bind_blob(q, i, bytes, (int)(n / 2), free));
	if (m.key_len == 8 && memcmp(m.key, "text_hex", 8) == 0)
		return bound(sqlite3_bind_text(q, i, (char *)bytes, (int)(n / 2), free));
	free(bytes);
	return -1;
}

/* The insert for table with the row's columns, prepared again only when
 * the table or its columns change (they do not, within a table). */
static int prepare_insert(struct restore *r, const char *table, const char *row, size_t rn,
			  cqrs_error *err)
{
	struct cqrs_strbuf keys = { 0 }, sql = { 0 };
	cqrs_strbuf_printf(&keys, "%s:", table);
	cqrs_strbuf_printf(&sql, "INSERT INTO main.\"%s\" (", table);
	size_t pos = 0;
	cqrs_json_member m;
	int n = 0, rc = 0;
	while (cqrs_json_next_member(row, rn, &pos, &m) == 1) {
		char col[64];
		if (!plain_name(m.key, m.key_len)) {
			rc = bad_line(r, err, CQRS_EXIT_DATAERR, "a column name that is not one");
			break;
		}
		snprintf(col, sizeof col, "%.*s", (int)m.key_len, m.key);
		if (sqlite3_table_column_metadata(r->db, "main", table, col, NULL, NULL, NULL, NULL,
						  NULL) != SQLITE_OK) {
			rc = bad_line(r, err, CQRS_EXIT_DATAERR, "table %s has no column %s", table,
				      col);
			break;
		}
		cqrs_strbuf_printf(&keys, "%s,", col);
		cqrs_strbuf_printf(&sql, "%s\"%s\"", n++ ? "," : "", col);
	}
	cqrs_strbuf_puts(&sql, ") VALUES (");
	for (int i = 1; i <= n; i++)
		cqrs_strbuf_printf(&sql, "%s?%d", i > 1 ? "," : "", i);
	cqrs_strbuf_putc(&sql, ')');
	if (rc == 0 && (keys.oom || sql.oom))
		rc = cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	if (rc == 0 && strcmp(cqrs_strbuf_str(&keys), r->insert_keys) != 0) {
		sqlite3_finalize(r->insert);
		r->insert = NULL;
		r->insert_keys[0] = '\0';
		int prc = sqlite3_prepare_v2(r->db, cqrs_strbuf_str(&sql), -1, &r->insert, NULL);
		if (prc != SQLITE_OK)
			rc = db_fail(r->db, prc, r->label, "cannot restore a row", err);
		else
			snprintf(r->insert_keys, sizeof r->insert_keys, "%s",
				 cqrs_strbuf_str(&keys));
	}
	cqrs_strbuf_free(&keys);
	cqrs_strbuf_free(&sql);
	return rc;
}

/* One value of a row for a PostgreSQL store, as text in *out (NULL: SQL
 * NULL; the caller frees it): 0, -1 when it is none a backup holds or none
 * a PostgreSQL store keeps, or VALUE_NO_MEMORY. */
static int pg_value(const char *v, size_t vn, char **out)
{
	*out = NULL;
	if (vn == 4 && memcmp(v, "null", 4) == 0)
		return 0;
	if (*v == '-' || (*v >= '0' && *v <= '9')) {
		if ((*out = malloc(vn + 1)) == NULL)
			return VALUE_NO_MEMORY;
		memcpy(*out, v, vn);
		(*out)[vn] = '\0';
		return 0;
	}
	size_t pos = 0;
	cqrs_json_member m;
	const char *s = v;
	size_t n = vn;
	bool hex = false;
	if (*v == '{') {
		/* text a SQLite store kept as bytes that are not UTF-8 */
		if (cqrs_json_next_member(v, vn, &pos, &m) != 1 || m.key_len != 8 ||
		    memcmp(m.key, "text_hex", 8) != 0 || m.value_len < 2 || *m.value != '"')
			return -1;
		s = m.value + 1, n = m.value_len - 2, hex = true;
	} else if (*v != '"')
		return -1;
	char *buf = malloc(n + 1);
	if (buf == NULL)
		return VALUE_NO_MEMORY;
	long got = -1;
	if (hex && hex_value(s, n, (unsigned char *)buf) == 0)
		got = (long)(n / 2);
	else if (!hex)
		got = cqrs_json_string(v, vn, buf, n + 1);
	if (got < 0 || memchr(buf, '\0', (size_t)got) != NULL) {
		free(buf);
		return -1;
	}
	buf[got] = '\0';
	*out = buf;
	return 0;
}

/* What check_tables holds a SQLite copy to, for a row on its way into a
 * PostgreSQL store (the events are in by then): a checkpoint, a processed
 * command or a saga may name no event after the backup's last.  A backup
 * stitched together from two moments (or edited) fails here. */
static int check_pg_row(struct restore *r, const char *table, int n, const char *const *names,
			char *const *values, cqrs_error *err)
{
	const char *name = NULL, *seq = NULL, *result = NULL;
	for (int i = 0; i < n; i++) {
		if (strcmp(names[i], "name") == 0 || strcmp(names[i], "message_id") == 0 ||
		    strcmp(names[i], "saga_id") == 0)
			name = values[i];
		else if (strcmp(names[i], "sequence") == 0 ||
			 strcmp(names[i], "start_sequence") == 0)
			seq = values[i];
		else if (strcmp(names[i], "result") == 0)
			result = values[i];
	}
	int64_t at = 0;
	const char *v;
	size_t vn;
	char last[32];
	if (strcmp(table, "checkpoints") == 0 && seq != NULL && cqrs_parse_int64(seq, &at) == 0 &&
	    at > r->at.sequence)
		return bad_line(r, err, CQRS_EXIT_DATAERR,
				"checkpoint '%s' is at event %lld, after the backup's last event "
				"(head %lld); nothing was restored",
				name != NULL ? name : "", (long long)at, (long long)r->at.sequence);
	if (strcmp(table, "saga_instances") == 0 && seq != NULL &&
	    cqrs_parse_int64(seq, &at) == 0 && at > r->at.sequence)
		return bad_line(r, err, CQRS_EXIT_DATAERR,
				"saga %s started at event %lld, after the backup's last event "
				"(head %lld); nothing was restored",
				name != NULL ? name : "", (long long)at, (long long)r->at.sequence);
	if (strcmp(table, "processed_messages") == 0 && result != NULL &&
	    cqrs_json_get(result, strlen(result), "last", &v, &vn) && vn < sizeof last) {
		memcpy(last, v, vn);
		last[vn] = '\0';
		if (cqrs_parse_int64(last, &at) == 0 && at > r->at.sequence)
			return bad_line(r, err, CQRS_EXIT_DATAERR,
					"processed command '%s' names event %lld, after the "
					"backup's last event (head %lld); nothing was restored",
					name != NULL ? name : "", (long long)at,
					(long long)r->at.sequence);
	}
	return 0;
}

/* A row for a PostgreSQL store: a portable table's, inserted; a snapshot
 * (a cache, built again at the next load) and erasure's declarations and
 * keys (erasure is SQLite's alone, cqrs-postgres(7): fields the SQLite
 * store encrypted stay so, as in a copy by cqrs-read | cqrs-append) left
 * out, the keys counted for the warning; any other table's refused, so that
 * nothing else a restore would lose is lost. */
static int restore_pg_row(struct restore *r, const char *table, const char *row, size_t rn,
			  cqrs_error *err)
{
	static const char *const tables[] = { CQRS_PORTABLE_TABLES };
	size_t t = 0;
	while (t < sizeof tables / sizeof *tables && strcmp(tables[t], table) != 0)
		t++;
	static const char *const left_out[] = { "snapshots", "personal_fields", "subject_keys",
						"aggregate_subjects" };
	for (size_t i = 0; i < sizeof left_out / sizeof *left_out; i++)
		if (strcmp(table, left_out[i]) == 0) {
			r->rows++;
			r->keys_left_out += strcmp(table, "subject_keys") == 0;
			return 0;
		}
	if (t == sizeof tables / sizeof *tables)
		return bad_line(r, err, CQRS_EXIT_CONFIG,
				"table %s: a PostgreSQL store keeps no such table; nothing was "
				"restored (cqrs-read | cqrs-append copies the events alone)",
				table);
	char names[CQRS_PORTABLE_COLUMNS][64];
	const char *name_p[CQRS_PORTABLE_COLUMNS];
	char *values[CQRS_PORTABLE_COLUMNS] = { NULL };
	int n = 0, rc = 0, vrc;
	size_t pos = 0;
	cqrs_json_member m;
	while (rc == 0 && cqrs_json_next_member(row, rn, &pos, &m) == 1) {
		if (n == CQRS_PORTABLE_COLUMNS || !plain_name(m.key, m.key_len))
			rc = bad_line(r, err, CQRS_EXIT_DATAERR, "table %s: a column it has not",
				      table);
		else if ((vrc = pg_value(m.value, m.value_len, &values[n])) == VALUE_NO_MEMORY)
			rc = cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		else if (vrc < 0)
			rc = bad_line(r, err, CQRS_EXIT_DATAERR,
				      "column %.*s: not a value a PostgreSQL store keeps",
				      (int)m.key_len, m.key);
		else {
			snprintf(names[n], sizeof names[n], "%.*s", (int)m.key_len, m.key);
			name_p[n] = names[n];
			n++;
		}
	}
	if (rc == 0)
		rc = check_pg_row(r, table, n, name_p, values, err);
	cqrs_error e = { 0 };
	if (rc == 0 &&
	    cqrs_pg_insert_row(r->st, table, n, name_p, (const char *const *)values, &e) < 0)
		rc = bad_line(r, err, e.code, "%s", e.msg);
	for (int i = 0; i < CQRS_PORTABLE_COLUMNS; i++)
		free(values[i]);
	if (rc == 0)
		r->rows++;
	return rc;
}

static int restore_row(struct restore *r, const char *line, size_t len, cqrs_error *err)
{
	const char *v, *row;
	size_t vn, rn;
	char table[64];
	long tn = cqrs_json_get(line, len, "table", &v, &vn)
			  ? cqrs_json_string(v, vn, table, sizeof table)
			  : -1;
	if (r->db == NULL) {
		if (tn < 0 || !plain_name(table, (size_t)tn))
			return bad_line(r, err, CQRS_EXIT_DATAERR,
					"not a table of the store: '%.*s'",
					(int)(vn > 64 ? 64 : vn), v);
		if (!cqrs_json_get(line, len, "row", &row, &rn) || *row != '{')
			return bad_line(r, err, CQRS_EXIT_DATAERR, "a table line without its row");
		return restore_pg_row(r, table, row, rn, err);
	}
	if (tn < 0 || !plain_name(table, (size_t)tn) || strcmp(table, "events") == 0 ||
	    strncmp(table, "sqlite_", 7) == 0 || cqrs_archive_table(table) ||
	    sqlite3_table_column_metadata(r->db, "main", table, NULL, NULL, NULL, NULL, NULL,
					  NULL) != SQLITE_OK)
		return bad_line(r, err, CQRS_EXIT_DATAERR, "not a table of the store: '%.*s'",
				(int)(vn > 64 ? 64 : vn), v);
	if (!cqrs_json_get(line, len, "row", &row, &rn) || *row != '{')
		return bad_line(r, err, CQRS_EXIT_DATAERR, "a table line without its row");
	if (prepare_insert(r, table, row, rn, err) < 0)
		return -1;
	size_t pos = 0;
	cqrs_json_member m;
	for (int i = 1; cqrs_json_next_member(row, rn, &pos, &m) == 1; i++) {
		int b = bind_value(r->insert, i, m.value, m.value_len);
		if (b == VALUE_NO_MEMORY)
			return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		if (b < 0)
			return bad_line(r, err, CQRS_EXIT_DATAERR,
					"column %.*s: not a value a backup holds", (int)m.key_len,
					m.key);
	}
	int rc = sqlite3_step(r->insert);
	sqlite3_reset(r->insert);
	sqlite3_clear_bindings(r->insert);
	if (rc != SQLITE_DONE) {
		int code = (rc & 0xff) == SQLITE_CONSTRAINT ? CQRS_EXIT_DATAERR : 0;
		if (code == 0)
			return db_fail(r->db, rc, r->label, "cannot restore a row", err);
		return bad_line(r, err, code, "table %s: %s", table, sqlite3_errmsg(r->db));
	}
	r->rows++;
	return 0;
}

/* A head signed by pub that names the store being restored and the head
 * the backup ends at: 0, or -1 with *err (65, 66 without one, 6). */
static int check_signed(cqrs_store *st, const char *label, const struct cqrs_signed_head *h,
			const cqrs_public_key *pub, const struct cqrs_head *end, cqrs_error *err)
{
	if (cqrs_signed_head_verify(h, pub, err) < 0 ||
	    cqrs_signed_head_check_store(st, label, h, "the backup's signed head", err) < 0)
		return -1;
	if (h->sequence != end->sequence)
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "%s: the signed head is at event %lld, the backup ends at %lld",
				 label, (long long)h->sequence, (long long)end->sequence);
	return 0;
}

static int check_trailer_signed(struct restore *r, const char *line, size_t len, cqrs_error *err)
{
	const char *v;
	size_t vn;
	struct cqrs_signed_head h;
	if (!cqrs_json_get(line, len, "signed_head", &v, &vn))
		return cqrs_fail(err, CQRS_EXIT_NOINPUT,
				 "%s: the backup carries no signed head (made without "
				 "--signing-key); nothing was restored",
				 r->label);
	if (cqrs_signed_head_parse(v, vn, &h, err) < 0)
		return bad_line(r, err, CQRS_EXIT_DATAERR, "%s", err->msg);
	return check_signed(r->st, r->label, &h, r->pub, &r->head, err);
}

static int check_trailer(struct restore *r, const char *line, size_t len, cqrs_error *err)
{
	const char *v;
	size_t vn;
	struct cqrs_head h;
	long long events = -1, rows = -1;
	if (cqrs_json_get(line, len, "events", &v, &vn))
		events = strtoll(v, NULL, 10);
	if (cqrs_json_get(line, len, "rows", &v, &vn))
		rows = strtoll(v, NULL, 10);
	int got = head_member(r, line, len, "head", &h, err);
	if (got < 0)
		return -1;
	if (got == 0 || events != r->events || rows != r->rows || h.sequence != r->head.sequence ||
	    memcmp(h.hash, r->head.hash, CQRS_HASH_LEN) != 0)
		return bad_line(r, err, CQRS_EXIT_DATAERR,
				"the trailer does not match what came before it (%lld events, "
				"%lld rows)",
				(long long)r->events, (long long)r->rows);
	if (r->at.sequence != r->head.sequence || memcmp(r->at.hash, r->head.hash, CQRS_HASH_LEN))
		return bad_line(r, err, CQRS_EXIT_DATAERR,
				"the events end at %lld, not at the head the header names (%lld)",
				(long long)r->at.sequence, (long long)r->head.sequence);
	return r->pub != NULL ? check_trailer_signed(r, line, len, err) : 0;
}

/* Every line after the header, inside the store's open transaction. */
static int restore_lines(struct restore *r, cqrs_error *err)
{
	char *line;
	size_t len;
	int got;
	bool ended = false;
	while ((got = cqrs_input_next(r->in, &line, &len, err)) == 1) {
		cqrs_error e = { 0 };
		if (ended)
			return bad_line(r, err, CQRS_EXIT_DATAERR, "a line after the trailer");
		if (cqrs_json_compact(line, &len, &e) < 0)
			return bad_line(r, err, CQRS_EXIT_DATAERR, "%s", e.msg);
		size_t pos = 0;
		cqrs_json_member m;
		if (cqrs_json_next_member(line, len, &pos, &m) != 1)
			return bad_line(r, err, CQRS_EXIT_DATAERR, "an empty object");
#define KEY_IS(k) (m.key_len == sizeof k - 1 && memcmp(m.key, k, sizeof k - 1) == 0)
		int rc;
		if (KEY_IS("sequence"))
			rc = restore_event(r, line, len, err);
		else if (KEY_IS("table"))
			rc = restore_row(r, line, len, err);
		else if (KEY_IS("cqrs_backup_end"))
			rc = check_trailer(r, line, len, err), ended = true;
		else
			rc = bad_line(r, err, CQRS_EXIT_DATAERR, "not a line of a backup");
#undef KEY_IS
		if (rc < 0)
			return -1;
	}
	if (got < 0)
		return -1;
	if (!ended)
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "%s: ends before its trailer: the backup is truncated", r->label);
	return 0;
}

/* An incremental backup goes onto the store whose head is its since. */
static int check_since(struct restore *r, const char *store_path, cqrs_error *err)
{
	struct cqrs_head now;
	if (cqrs_pg_is(r->st))
		store_path = cqrs_pg_name(r->st);
	if (cqrs_store_expect(r->st, store_path, r->since.sequence, r->since.hash,
			      "the incremental backup's since", err) < 0 ||
	    cqrs_store_head(r->st, &now.sequence, now.hash, err) < 0)
		return -1;
	if (now.sequence != r->since.sequence)
		return cqrs_fail(err, CQRS_EXIT_CONFLICT,
				 "%s: the store went on to event %lld after the incremental "
				 "backup's since (%lld); nothing was restored",
				 store_path, (long long)now.sequence, (long long)r->since.sequence);
	r->at = now;
	return 0;
}

/* Empties every table but the events: the backup brings them whole. */
static int clear_tables(struct restore *r, cqrs_error *err)
{
	if (r->db == NULL) {
		static const char *const tables[] = { CQRS_PORTABLE_TABLES };
		for (size_t i = 0; i < sizeof tables / sizeof *tables; i++)
			if (cqrs_pg_clear_table(r->st, tables[i], err) < 0)
				return -1;
		return 0;
	}
	sqlite3_stmt *q;
	int rc = sqlite3_prepare_v2(r->db, STATE_TABLES, -1, &q, NULL);
	if (rc != SQLITE_OK)
		return db_fail(r->db, rc, r->label, "cannot restore", err);
	struct cqrs_strbuf sql = { 0 };
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(q, 0);
		if (name != NULL && strchr(name, '"') == NULL)
			cqrs_strbuf_printf(&sql, "DELETE FROM main.\"%s\";", name);
	}
	sqlite3_finalize(q);
	if (sql.oom) { /* some tables would be left as they were */
		cqrs_strbuf_free(&sql);
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	}
	if (rc == SQLITE_DONE && sql.len > 0)
		rc = sqlite3_exec(r->db, cqrs_strbuf_str(&sql), NULL, NULL, NULL) == SQLITE_OK
			     ? SQLITE_DONE
			     : sqlite3_errcode(r->db);
	cqrs_strbuf_free(&sql);
	return rc == SQLITE_DONE ? 0 : db_fail(r->db, rc, r->label, "cannot restore", err);
}

/* The store at path as a single file, for its rename into place. */
static int to_single_file(const char *path, cqrs_error *err)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		db_fail(db, rc, path, "cannot finish the store", err);
	if (sqlite3_close(db) != SQLITE_OK && rc == SQLITE_OK)
		rc = cqrs_fail(err, CQRS_EXIT_IOERR, "%s: cannot close", path);
	return rc == SQLITE_OK ? 0 : -1;
}

/* A restore into a PostgreSQL store goes into one with no events: it
 * never replaces one (as on SQLite, where the file must not exist). */
static int check_no_events(struct restore *r, cqrs_error *err)
{
	struct cqrs_head now;
	if (cqrs_store_head(r->st, &now.sequence, now.hash, err) < 0)
		return -1;
	if (now.sequence > 0)
		return cqrs_fail(err, CQRS_EXIT_CANTCREAT,
				 "%s: a store with events is there; a restore never replaces one",
				 cqrs_pg_name(r->st));
	return 0;
}

static int restore_ndjson(const char *backup, const char *label, const char *store_path,
			  const cqrs_public_key *pub, struct cqrs_head *head, cqrs_error *err)
{
	struct restore r = { .label = label != NULL    ? label
				      : backup != NULL ? backup
						       : "stdin",
			     .pub = pub };
	bool server = cqrs_store_on_server(store_path);
	struct place p = { .have_temp = false };
	char *const paths[1] = { (char *)backup };
	r.in = cqrs_input_open(paths, backup != NULL ? 1 : 0);
	if (r.in == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	int rc = -1;
	if (read_header(&r, err) < 0)
		goto out;
	/* an incremental backup needs its store: a PostgreSQL one is looked
	 * for as a reader, which creates nothing (66 when it is not there) */
	cqrs_store *probe =
		r.incremental && server ? cqrs_store_open(store_path, CQRS_OPEN_READ, err) : NULL;
	if (r.incremental && server && probe == NULL)
		goto out;
	cqrs_store_close(probe);
	if (r.incremental) {
		if (!server && !exists(store_path)) {
			cqrs_fail(err, CQRS_EXIT_NOINPUT,
				  "%s: no such store to apply an incremental backup to",
				  store_path);
			goto out;
		}
		r.st = cqrs_store_open(store_path, CQRS_OPEN_WRITE, err);
	} else if (server) {
		r.st = cqrs_store_open(store_path, CQRS_OPEN_WRITE, err);
	} else if (prepare_target(&p, store_path, false, true, err) == 0) {
		r.st = cqrs_store_open(p.temp, CQRS_OPEN_WRITE, err);
		/* the new file is synced as a whole before its rename */
		if (r.st != NULL)
			cqrs_store_set_durability(r.st, CQRS_DURABLE_NORMAL);
	}
	if (r.st == NULL)
		goto out;
	r.db = cqrs_sqlite_handle(r.st);
	/* the store's lock before its head is looked at: on PostgreSQL an
	 * append between the check and the first restored event would make
	 * the check a lie (SQLite's BEGIN IMMEDIATE already holds it) */
	if (cqrs_store_begin(r.st, err) < 0 || cqrs_store_lock(r.st, err) < 0 ||
	    (r.incremental && check_since(&r, store_path, err) < 0) ||
	    (server && !r.incremental && check_no_events(&r, err) < 0)) {
		cqrs_store_rollback(r.st);
		goto out;
	}
	cqrs_test_pause("CQRS_TEST_PAUSE_AFTER_CHECK");
	if (clear_tables(&r, err) < 0 || restore_lines(&r, err) < 0 ||
	    check_store(r.st, r.label, head, err) < 0) {
		cqrs_store_rollback(r.st);
		goto out;
	}
	sqlite3_finalize(r.insert);
	r.insert = NULL;
	if (cqrs_store_commit(r.st, err) < 0)
		goto out;
	cqrs_store_close(r.st);
	r.st = NULL;
	if (r.keys_left_out > 0)
		cqrs_warn(
			"%s: %lld erasure keys left out: the fields they encrypted stay encrypted "
			"in a PostgreSQL store (cqrs-postgres(7))",
			r.label, (long long)r.keys_left_out);
	/* a PostgreSQL store has no file to put in place, nor a witness */
	if (r.incremental || server) {
		rc = 0;
		goto out;
	}
	if (to_single_file(p.temp, err) < 0 || place_temp(&p, false, err) < 0)
		goto out;
	rc = cqrs_store_reset_witness(store_path, &head->sequence, head->hash, err);
out:
	sqlite3_finalize(r.insert);
	cqrs_store_close(r.st);
	cqrs_input_close(r.in);
	remove_temp(&p);
	return rc;
}

/* --- restore: a SQLite file -------------------------------------------------- */

/* BACKUP.head, signed by pub, for the copy at temp. */
static int check_file_signed(const char *backup, const char *temp, const cqrs_public_key *pub,
			     const struct cqrs_head *end, cqrs_error *err)
{
	char path[PATH_MAX];
	if ((size_t)snprintf(path, sizeof path, "%s.head", backup) >= sizeof path)
		return cqrs_fail(err, CQRS_EXIT_USAGE, "%s: path too long", backup);
	struct cqrs_signed_head h;
	if (cqrs_signed_head_read(path, &h, err) < 0)
		return -1;
	cqrs_store *st = cqrs_store_open(temp, CQRS_OPEN_READ, err);
	if (st == NULL)
		return -1;
	int rc = check_signed(st, backup, &h, pub, end, err);
	cqrs_store_close(st);
	return rc;
}

static int restore_file(const char *backup, const char *store_path, const cqrs_public_key *pub,
			struct cqrs_head *head, cqrs_error *err)
{
	struct place p;
	if (prepare_target(&p, store_path, false, true, err) < 0)
		return -1;
	int rc = -1;
	/* the backup becomes the store: held to a writer's rules */
	cqrs_store *src = cqrs_trust_path(backup, true, err) == 0
				  ? cqrs_store_open(backup, CQRS_OPEN_READ, err)
				  : NULL;
	if (src == NULL)
		goto out;
	int copied = cqrs_sqlite_handle(src) != NULL
			     ? copy_database(cqrs_sqlite_handle(src), backup, p.temp, err)
			     : cqrs_fail(err, CQRS_EXIT_CONFIG, "%s: not a SQLite store", backup);
	cqrs_store_close(src);
	if (copied < 0 || check_file(p.temp, backup, head, err) < 0 ||
	    (pub != NULL && check_file_signed(backup, p.temp, pub, head, err) < 0) ||
	    place_temp(&p, false, err) < 0)
		goto out;
	rc = cqrs_store_reset_witness(store_path, &head->sequence, head->hash, err);
out:
	remove_temp(&p);
	return rc;
}

/* A SQLite-file backup into a PostgreSQL store: its NDJSON form, made in
 * a private temporary file, restored as any NDJSON backup is. */
static int restore_file_to_server(const char *backup, const char *store_path,
				  const cqrs_public_key *pub, struct cqrs_head *head,
				  cqrs_error *err)
{
	const char *tmpdir = getenv("TMPDIR");
	char temp[PATH_MAX];
	snprintf(temp, sizeof temp, "%s/cqrs-restore.XXXXXX",
		 tmpdir != NULL && *tmpdir == '/' ? tmpdir : "/tmp");
	cqrs_store *src = cqrs_trust_path(backup, true, err) == 0
				  ? cqrs_store_open(backup, CQRS_OPEN_READ, err)
				  : NULL;
	if (src == NULL)
		return -1;
	int fd = mkstemp(temp); /* 0600 */
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (f == NULL) {
		if (fd >= 0) {
			close(fd);
			unlink(temp);
		}
		cqrs_store_close(src);
		return cqrs_fail(err, CQRS_EXIT_CANTCREAT, "%s: %s", temp, strerror(errno));
	}
	static const struct cqrs_head none;
	struct cqrs_head end;
	int rc = write_ndjson(src, backup, &none, NULL, f, &end, err);
	if (fclose(f) != 0 && rc == 0)
		rc = cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", temp, strerror(errno));
	if (rc == 0 && pub != NULL)
		rc = check_file_signed(backup, backup, pub, &end, err);
	cqrs_store_close(src);
	if (rc == 0)
		rc = restore_ndjson(temp, backup, store_path, NULL, head, err);
	unlink(temp);
	return rc;
}

int cqrs_restore(const char *backup, const char *store_path, struct cqrs_head *head,
		 cqrs_error *err)
{
	return cqrs_restore_signed(backup, store_path, NULL, head, err);
}

int cqrs_restore_signed(const char *backup, const char *store_path, const cqrs_public_key *pub,
			struct cqrs_head *head, cqrs_error *err)
{
	if (backup != NULL && strcmp(backup, "-") == 0)
		backup = NULL;
	if (backup == NULL)
		return restore_ndjson(NULL, NULL, store_path, pub, head, err);
	int fd = open(backup, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cqrs_fail(err,
				 errno == ENOENT   ? CQRS_EXIT_NOINPUT
				 : errno == EACCES ? CQRS_EXIT_NOPERM
						   : CQRS_EXIT_IOERR,
				 "%s: %s", backup, strerror(errno));
	char magic[sizeof SQLITE_MAGIC];
	ssize_t n = read(fd, magic, sizeof magic);
	close(fd);
	if (n == (ssize_t)sizeof magic && memcmp(magic, SQLITE_MAGIC, sizeof magic) == 0)
		return cqrs_store_on_server(store_path)
			       ? restore_file_to_server(backup, store_path, pub, head, err)
			       : restore_file(backup, store_path, pub, head, err);
	return restore_ndjson(backup, NULL, store_path, pub, head, err);
}
