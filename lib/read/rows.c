/*
 * Printing query results: NDJSON (one object per row, for programs), an
 * aligned table (for people), or CSV (RFC 4180, for spreadsheets).
 *
 * Money columns hold exact decimal text ("59.98"): NDJSON prints it as a
 * string, which survives jq and every JSON parser digit for digit (a JSON
 * number 30.00 comes back from jq as 30); the table aligns it as a number.
 * JSON columns (an order's items) are printed as JSON, not as a string.
 */
#include "config.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "cqrs.h"
#include "common/sqlite_errors.h"
#include "read/views_impl.h"
#include "banned.h"

static bool in_list(const char *const *list, const char *name)
{
	for (; list != NULL && *list != NULL; list++)
		if (strcmp(*list, name) == 0)
			return true;
	return false;
}

static void real_text(double d, char *buf, size_t cap)
{
	snprintf(buf, cap, "%.15g", d);
	if (strtod(buf, NULL) != d)
		snprintf(buf, cap, "%.17g", d);
}

enum kind { K_PLAIN, K_MONEY, K_JSON };

struct cell {
	char *text; /* NULL: SQL NULL */
	bool number;
};

struct table {
	int ncol;
	char **names;
	enum kind *kinds;
	struct cell *cells; /* row-major */
	size_t nrows, cap;
	size_t *width;
};

static size_t display_width(const char *s)
{
	size_t w = 0;
	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			w++;
	return w;
}

/* One row as a JSON object: 0, or -1 when memory ran out (SQLite's copy of
 * a text; the row is then cut short, and the caller fails). */
static int ndjson_row(sqlite3_stmt *st, int ncol, const enum kind *kinds, FILE *out)
{
	putc('{', out);
	for (int i = 0; i < ncol; i++) {
		const char *name = sqlite3_column_name(st, i);
		if (i > 0)
			putc(',', out);
		cqrs_json_write_string(out, name, strlen(name));
		putc(':', out);
		int type = sqlite3_column_type(st, i);
		const char *t =
			type == SQLITE_TEXT ? (const char *)sqlite3_column_text(st, i) : NULL;
		if (type == SQLITE_TEXT && t == NULL)
			return -1;
		int n = sqlite3_column_bytes(st, i);
		char buf[64];
		switch (type) {
		case SQLITE_NULL: fputs("null", out); break;
		case SQLITE_INTEGER:
			fprintf(out, "%lld", (long long)sqlite3_column_int64(st, i));
			break;
		case SQLITE_FLOAT:
			real_text(sqlite3_column_double(st, i), buf, sizeof buf);
			fputs(buf, out);
			break;
		case SQLITE_BLOB: {
			const unsigned char *b = sqlite3_column_blob(st, i);
			putc('"', out);
			for (int k = 0; k < sqlite3_column_bytes(st, i); k++)
				fprintf(out, "%02x", b[k]);
			putc('"', out);
			break;
		}
		default:
			if (kinds[i] == K_JSON && n > 0 && (t[0] == '{' || t[0] == '['))
				fwrite(t, 1, (size_t)n, out);
			else
				cqrs_json_write_string(out, t, (size_t)n);
		}
	}
	fputs("}\n", out);
	return 0;
}

/* RFC 4180 allows in a field only printable text, and CR, LF, commas and
 * quotes inside double quotes.  Other control characters (C0 but TAB, CR
 * and LF; DEL) would reach a terminal or a spreadsheet raw: the field is
 * quoted and each is written as \xHH, as the table format shows them. */
static bool csv_control(unsigned char c)
{
	return (c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f;
}

static void csv_field(FILE *out, const char *s)
{
	if (s == NULL)
		return;
	bool quote = false;
	for (const char *p = s; *p != '\0' && !quote; p++)
		quote = *p == ',' || *p == '"' || *p == '\r' || *p == '\n' ||
			csv_control((unsigned char)*p);
	if (!quote) {
		fputs(s, out);
		return;
	}
	putc('"', out);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"')
			putc('"', out);
		if (csv_control(c))
			fprintf(out, "\\x%02x", c);
		else
			putc(c, out);
	}
	putc('"', out);
}

/* A cell's text for the table and CSV in *out, NULL for SQL NULL: 0, or -1
 * when memory ran out (never taken for a NULL). */
static int cell_text(sqlite3_stmt *st, int i, bool table, bool *number, char **out)
{
	int type = sqlite3_column_type(st, i);
	*number = type == SQLITE_INTEGER || type == SQLITE_FLOAT;
	*out = NULL;
	if (type == SQLITE_NULL)
		return 0;
	char buf[64];
	if (type == SQLITE_FLOAT) {
		real_text(sqlite3_column_double(st, i), buf, sizeof buf);
		return (*out = strdup(buf)) != NULL ? 0 : -1;
	}
	if (type == SQLITE_BLOB) {
		int n = sqlite3_column_bytes(st, i);
		const unsigned char *b = sqlite3_column_blob(st, i);
		char *s = malloc((size_t)n * 2 + 1);
		if (s == NULL || (n > 0 && b == NULL)) {
			free(s);
			return -1;
		}
		for (int k = 0; k < n; k++)
			snprintf(s + 2 * k, 3, "%02x", b[k]);
		s[2 * n] = '\0';
		*out = s;
		return 0;
	}
	const char *t = (const char *)sqlite3_column_text(st, i);
	if (t == NULL)
		return -1;
	if (!table)
		return (*out = strdup(t)) != NULL ? 0 : -1;
	/* one line per row: control characters shown as \n, \t, ... */
	size_t n = strlen(t), o = 0;
	char *s = malloc(n * 4 + 1);
	if (s == NULL)
		return -1;
	for (size_t k = 0; k < n; k++) {
		unsigned char c = (unsigned char)t[k];
		if (c == '\n') {
			s[o++] = '\\';
			s[o++] = 'n';
		} else if (c == '\t') {
			s[o++] = '\\';
			s[o++] = 't';
		} else if (c < 0x20 || c == 0x7f) {
			o += (size_t)snprintf(s + o, 5, "\\x%02x", c);
		} else {
			s[o++] = (char)c;
		}
	}
	s[o] = '\0';
	*out = s;
	return 0;
}

static void table_free(struct table *t)
{
	for (size_t i = 0; i < t->nrows * (size_t)t->ncol; i++)
		free(t->cells[i].text);
	free(t->cells);
	free(t->width);
}

static void pad(FILE *out, size_t n)
{
	while (n-- > 0)
		putc(' ', out);
}

static void table_print(const struct table *t, sqlite3_stmt *st, FILE *out)
{
	for (int c = 0; c < t->ncol; c++) {
		const char *name = sqlite3_column_name(st, c);
		bool right = false;
		for (size_t r = 0; r < t->nrows && !right; r++)
			right = t->cells[r * (size_t)t->ncol + (size_t)c].number;
		size_t w = display_width(name);
		if (c > 0)
			fputs("  ", out);
		if (right)
			pad(out, t->width[c] - w);
		fputs(name, out);
		if (!right && c + 1 < t->ncol)
			pad(out, t->width[c] - w);
	}
	putc('\n', out);
	for (size_t r = 0; r < t->nrows; r++) {
		for (int c = 0; c < t->ncol; c++) {
			const struct cell *cl = &t->cells[r * (size_t)t->ncol + (size_t)c];
			bool right = false;
			for (size_t k = 0; k < t->nrows && !right; k++)
				right = t->cells[k * (size_t)t->ncol + (size_t)c].number;
			const char *s = cl->text ? cl->text : "";
			size_t w = display_width(s);
			if (c > 0)
				fputs("  ", out);
			if (right)
				pad(out, t->width[c] - w);
			fputs(s, out);
			if (!right && c + 1 < t->ncol)
				pad(out, t->width[c] - w);
		}
		putc('\n', out);
	}
}

int64_t cqrs_rows_print(sqlite3_stmt *st, const char *const *money, const char *const *json,
			enum cqrs_format fmt, FILE *out, const char *what, cqrs_error *err)
{
	int ncol = sqlite3_column_count(st);
	enum kind kinds[256];
	if (ncol > 256)
		return cqrs_fail(err, CQRS_EXIT_USAGE, "%s: more than 256 columns", what);
	for (int i = 0; i < ncol; i++) {
		const char *name = sqlite3_column_name(st, i);
		kinds[i] = in_list(money, name) ? K_MONEY : in_list(json, name) ? K_JSON : K_PLAIN;
	}
	struct table t = { .ncol = ncol };
	if (fmt == CQRS_FORMAT_TABLE) {
		t.width = calloc(ncol > 0 ? (size_t)ncol : 1, sizeof *t.width);
		if (t.width == NULL)
			return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		for (int i = 0; i < ncol; i++)
			t.width[i] = display_width(sqlite3_column_name(st, i));
	}
	if (fmt == CQRS_FORMAT_CSV) {
		for (int i = 0; i < ncol; i++) {
			if (i > 0)
				putc(',', out);
			csv_field(out, sqlite3_column_name(st, i));
		}
		fputs("\r\n", out);
	}
	int64_t n = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		n++;
		if (fmt == CQRS_FORMAT_NDJSON) {
			if (ndjson_row(st, ncol, kinds, out) < 0)
				return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		} else if (fmt == CQRS_FORMAT_CSV) {
			for (int i = 0; i < ncol; i++) {
				bool num;
				char *s;
				if (cell_text(st, i, false, &num, &s) < 0)
					return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
				if (i > 0)
					putc(',', out);
				csv_field(out, s);
				free(s);
			}
			fputs("\r\n", out);
		} else {
			/* the widths need every row: a table is for a page a
			 * person reads, bounded by the query's limit */
			if (t.nrows == t.cap) {
				size_t cap = t.cap ? t.cap * 2 : 64;
				struct cell *c = realloc(t.cells, cap * (size_t)ncol * sizeof *c);
				if (c == NULL) {
					table_free(&t);
					return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
				}
				t.cells = c;
				t.cap = cap;
			}
			for (int i = 0; i < ncol; i++) {
				struct cell *c = &t.cells[t.nrows * (size_t)ncol + (size_t)i];
				if (cell_text(st, i, true, &c->number, &c->text) < 0) {
					t.nrows++; /* its cells so far are freed with it */
					for (int k = i + 1; k < ncol; k++)
						t.cells[(t.nrows - 1) * (size_t)ncol + (size_t)k]
							.text = NULL;
					table_free(&t);
					return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
				}
				if (kinds[i] == K_MONEY && c->text != NULL)
					c->number = true;
				size_t w = display_width(c->text ? c->text : "");
				if (w > t.width[i])
					t.width[i] = w;
			}
			t.nrows++;
		}
		if (cqrs_stdout_gone())
			break;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		table_free(&t);
		sqlite3 *db = sqlite3_db_handle(st);
		switch (rc & 0xff) {
		case SQLITE_INTERRUPT:
			return cqrs_fail(err, CQRS_EXIT_LIMIT,
					 "%s: stopped: the time limit was reached (--timeout)",
					 what);
		case SQLITE_AUTH:
			return cqrs_fail(err, CQRS_EXIT_NOPERM, "%s: not allowed: %s", what,
					 sqlite3_errmsg(db));
		case SQLITE_NOMEM:
			/* SQLite says NOMEM for its heap limit and for a malloc
			 * that failed alike: the limit when the heap is near it */
			if (sqlite3_hard_heap_limit64(-1) <= 0 ||
			    sqlite3_memory_used() < sqlite3_hard_heap_limit64(-1) / 2)
				return cqrs_fail(err, CQRS_EXIT_OSERR, "%s: out of memory", what);
			/* fall through */
		case SQLITE_TOOBIG:
			return cqrs_fail(err, CQRS_EXIT_LIMIT,
					 "%s: stopped: the memory limit was "
					 "reached (%s)",
					 what, sqlite3_errmsg(db));
		default:
			/* bad SQL or data is the input's fault (65); a lock, the
			 * disk or a failed read is not */
			return cqrs_fail(err,
					 cqrs_sqlite_db_statement_code(db, rc, CQRS_EXIT_DATAERR),
					 "%s: %s%s", what,
					 cqrs_sqlite_read_failed(db, rc) ? "a read failed: " : "",
					 cqrs_sqlite_errmsg(db, rc));
		}
	}
	if (fmt == CQRS_FORMAT_TABLE) {
		table_print(&t, st, out);
		table_free(&t);
	}
	return n;
}
