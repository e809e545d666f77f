/*
 * The one YAML loader (yaml.h): libyaml's event parser builds a small tree
 * that keeps where each node starts, so that each problem is reported as
 * FILE:LINE:COLUMN.  The file is read whole first: a block scalar's text
 * starts on the line after its indicator, at an indentation that only the
 * text itself shows.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "cqrs.h"
#include "common/yaml.h"
#include "banned.h"

#define MAX_DEPTH    32
#define MAX_FILE_LEN (16 * 1024 * 1024)

struct loader {
	yaml_parser_t y;
	const char *file;
	const unsigned char *buf;
	size_t len;
	cqrs_error *err;
};

static int oom(cqrs_error *err)
{
	return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
}

static int vfail_at(cqrs_error *err, const char *file, int line, int column, const char *fmt,
		    va_list ap)
{
	char msg[sizeof err->msg];
	vsnprintf(msg, sizeof msg, fmt, ap);
	return cqrs_fail(err, CQRS_EXIT_CONFIG, "%s:%d:%d: %s", file, line, column, msg);
}

int cqrs_yaml_fail_at(cqrs_error *err, const char *file, int line, int column, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfail_at(err, file, line, column, fmt, ap);
	va_end(ap);
	return -1;
}

int cqrs_yaml_fail(cqrs_error *err, const char *file, const struct cqrs_yaml_node *n,
		   const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfail_at(err, file, n != NULL ? n->line : 1, n != NULL ? n->column : 1, fmt, ap);
	va_end(ap);
	return -1;
}

static int syntax_error(struct loader *l)
{
	yaml_parser_t *y = &l->y;
	int line = (int)y->problem_mark.line + 1, column = (int)y->problem_mark.column + 1;
	if (y->error == YAML_MEMORY_ERROR)
		return oom(l->err);
	if (y->error == YAML_READER_ERROR)
		return cqrs_yaml_fail_at(l->err, l->file, line, column, "%s",
					 y->problem != NULL ? y->problem : "cannot read the file");
	if (y->context != NULL)
		return cqrs_yaml_fail_at(l->err, l->file, line, column, "%s (%s on line %zu)",
					 y->problem, y->context, y->context_mark.line + 1);
	return cqrs_yaml_fail_at(l->err, l->file, line, column, "%s",
				 y->problem != NULL ? y->problem : "YAML syntax error");
}

static int next_event(struct loader *l, yaml_event_t *ev)
{
	if (!yaml_parser_parse(&l->y, ev))
		return syntax_error(l);
	return 0;
}

void cqrs_yaml_free(struct cqrs_yaml_node *n)
{
	if (n == NULL)
		return;
	for (size_t i = 0; i < n->nkids; i++)
		cqrs_yaml_free(n->kids[i]);
	free(n->kids);
	free(n->text);
	free(n);
}

static int add_kid(struct cqrs_yaml_node *n, struct cqrs_yaml_node *kid, cqrs_error *err)
{
	struct cqrs_yaml_node **k = realloc(n->kids, (n->nkids + 1) * sizeof *k);
	if (k == NULL) {
		cqrs_yaml_free(kid);
		return oom(err);
	}
	n->kids = k;
	n->kids[n->nkids++] = kid;
	return 0;
}

/* Where a block scalar's text starts: the line after the indicator, at
 * the indentation of its first line that is not blank. */
static void block_start(const struct loader *l, size_t index, int *line, int *column)
{
	size_t i = index;
	while (i < l->len && l->buf[i] != '\n')
		i++;
	(*line)++;
	for (;;) {
		if (i >= l->len)
			return;
		i++; /* past the newline */
		size_t s = i;
		while (i < l->len && l->buf[i] == ' ')
			i++;
		if (i < l->len && l->buf[i] != '\n' && l->buf[i] != '\r') {
			*column = (int)(i - s) + 1;
			return;
		}
		while (i < l->len && l->buf[i] != '\n')
			i++;
	}
}

static struct cqrs_yaml_node *scalar_node(struct loader *l, struct cqrs_yaml_node *n,
					  yaml_event_t *ev)
{
	yaml_scalar_style_t style = ev->data.scalar.style;
	n->kind = CQRS_YAML_SCALAR;
	n->plain = style == YAML_PLAIN_SCALAR_STYLE;
	n->literal = style == YAML_LITERAL_SCALAR_STYLE;
	n->block = n->literal || style == YAML_FOLDED_SCALAR_STYLE;
	if (n->block)
		block_start(l, ev->start_mark.index, &n->line, &n->column);
	size_t len = ev->data.scalar.length;
	n->text = malloc(len + 1);
	if (n->text == NULL) {
		yaml_event_delete(ev);
		free(n);
		oom(l->err);
		return NULL;
	}
	memcpy(n->text, ev->data.scalar.value, len);
	n->text[len] = '\0';
	yaml_event_delete(ev);
	if (strlen(n->text) != len) {
		cqrs_yaml_fail(l->err, l->file, n, "NUL character in text");
		cqrs_yaml_free(n);
		return NULL;
	}
	return n;
}

static int check_key(struct loader *l, const struct cqrs_yaml_node *n,
		     const struct cqrs_yaml_node *k)
{
	if (k->kind != CQRS_YAML_SCALAR)
		return cqrs_yaml_fail(l->err, l->file, k, "a key must be plain text");
	for (size_t i = 0; i < n->nkids; i += 2)
		if (strcmp(n->kids[i]->text, k->text) == 0)
			return cqrs_yaml_fail(l->err, l->file, k,
					      "duplicate key '%s' (first on line %d)", k->text,
					      n->kids[i]->line);
	return 0;
}

/* Builds the node that starts with ev (which this call deletes). */
static struct cqrs_yaml_node *parse_node(struct loader *l, yaml_event_t *ev, int depth)
{
	struct cqrs_yaml_node where = { .line = (int)ev->start_mark.line + 1,
					.column = (int)ev->start_mark.column + 1 };
	const char *refused = ev->type == YAML_ALIAS_EVENT ? "aliases (*name) are not supported"
			      : depth > MAX_DEPTH	   ? "nested too deeply"
							   : NULL;
	enum cqrs_yaml_kind kind = ev->type == YAML_SEQUENCE_START_EVENT  ? CQRS_YAML_SEQ
				   : ev->type == YAML_MAPPING_START_EVENT ? CQRS_YAML_MAP
									  : CQRS_YAML_SCALAR;
	if (refused == NULL && kind == CQRS_YAML_SCALAR && ev->type != YAML_SCALAR_EVENT)
		refused = "unexpected YAML event";
	struct cqrs_yaml_node *n = refused == NULL ? calloc(1, sizeof *n) : NULL;
	if (n == NULL) {
		yaml_event_delete(ev);
		if (refused != NULL)
			cqrs_yaml_fail(l->err, l->file, &where, "%s", refused);
		else
			oom(l->err);
		return NULL;
	}
	*n = where;
	if (kind == CQRS_YAML_SCALAR)
		return scalar_node(l, n, ev);
	n->kind = kind;
	yaml_event_type_t end =
		kind == CQRS_YAML_SEQ ? YAML_SEQUENCE_END_EVENT : YAML_MAPPING_END_EVENT;
	yaml_event_delete(ev);
	for (;;) {
		yaml_event_t kid;
		if (next_event(l, &kid) < 0)
			break;
		if (kid.type == end) {
			yaml_event_delete(&kid);
			return n;
		}
		bool is_key = kind == CQRS_YAML_MAP && n->nkids % 2 == 0;
		struct cqrs_yaml_node *k = parse_node(l, &kid, depth + 1);
		if (k == NULL)
			break;
		if (is_key && check_key(l, n, k) < 0) {
			cqrs_yaml_free(k);
			break;
		}
		if (add_kid(n, k, l->err) < 0)
			break;
	}
	cqrs_yaml_free(n);
	return NULL;
}

/* Stream start, document start, the root, document end, stream end. */
static struct cqrs_yaml_node *parse_document(struct loader *l, const char *empty_what)
{
	yaml_event_t ev;
	if (next_event(l, &ev) < 0) /* stream start */
		return NULL;
	yaml_event_delete(&ev);
	if (next_event(l, &ev) < 0)
		return NULL;
	if (ev.type == YAML_STREAM_END_EVENT) {
		yaml_event_delete(&ev);
		cqrs_yaml_fail_at(l->err, l->file, 1, 1, "empty file: expected %s", empty_what);
		return NULL;
	}
	yaml_event_delete(&ev); /* document start */
	if (next_event(l, &ev) < 0)
		return NULL;
	struct cqrs_yaml_node *root = parse_node(l, &ev, 0);
	if (root == NULL)
		return NULL;
	if (next_event(l, &ev) < 0) { /* document end */
		cqrs_yaml_free(root);
		return NULL;
	}
	yaml_event_delete(&ev);
	if (next_event(l, &ev) < 0) {
		cqrs_yaml_free(root);
		return NULL;
	}
	if (ev.type != YAML_STREAM_END_EVENT) {
		cqrs_yaml_fail_at(l->err, l->file, (int)ev.start_mark.line + 1,
				  (int)ev.start_mark.column + 1, "one YAML document per file");
		yaml_event_delete(&ev);
		cqrs_yaml_free(root);
		return NULL;
	}
	yaml_event_delete(&ev);
	return root;
}

static unsigned char *slurp(FILE *f, const char *file, size_t *len, cqrs_error *err)
{
	size_t cap = 8192, n = 0;
	unsigned char *buf = malloc(cap);
	while (buf != NULL) {
		n += fread(buf + n, 1, cap - n, f);
		if (n < cap)
			break;
		if (cap >= MAX_FILE_LEN) {
			free(buf);
			cqrs_fail(err, CQRS_EXIT_CONFIG, "%s: larger than %d MiB", file,
				  MAX_FILE_LEN / (1024 * 1024));
			return NULL;
		}
		unsigned char *nb = realloc(buf, cap * 2);
		if (nb == NULL) {
			free(buf);
			buf = NULL;
			break;
		}
		buf = nb;
		cap *= 2;
	}
	if (buf == NULL) {
		oom(err);
		return NULL;
	}
	if (ferror(f)) {
		free(buf);
		cqrs_fail(err, CQRS_EXIT_IOERR, "%s: cannot read: %s", file, strerror(errno));
		return NULL;
	}
	*len = n;
	return buf;
}

FILE *cqrs_yaml_open(const char *path, const char *what, cqrs_error *err)
{
	FILE *f = fopen(path, "re");
	if (f != NULL)
		return f;
	int e = errno, code;
	switch (e) {
	case ENOENT:
	case ENOTDIR: code = CQRS_EXIT_NOINPUT; break;
	case EACCES:
	case EPERM: code = CQRS_EXIT_NOPERM; break;
	case ENOMEM:
	case EMFILE:
	case ENFILE: code = CQRS_EXIT_OSERR; break;
	default: code = CQRS_EXIT_IOERR; break;
	}
	cqrs_fail(err, code, "%s: cannot read %s: %s", path, what, strerror(e));
	return NULL;
}

struct cqrs_yaml_node *cqrs_yaml_load(FILE *f, const char *file, const char *empty_what,
				      cqrs_error *err)
{
	struct loader l = { .file = file, .err = err };
	unsigned char *buf = slurp(f, file, &l.len, err);
	if (buf == NULL)
		return NULL;
	l.buf = buf;
	if (!yaml_parser_initialize(&l.y)) {
		free(buf);
		oom(err);
		return NULL;
	}
	yaml_parser_set_input_string(&l.y, buf, l.len);
	struct cqrs_yaml_node *root = parse_document(&l, empty_what);
	yaml_parser_delete(&l.y);
	free(buf);
	return root;
}

const char *cqrs_yaml_kind_name(enum cqrs_yaml_kind k)
{
	return k == CQRS_YAML_SCALAR ? "text" : k == CQRS_YAML_SEQ ? "a list" : "a mapping";
}

int cqrs_yaml_want(const struct cqrs_yaml_node *n, enum cqrs_yaml_kind k, const char *file,
		   const char *what, cqrs_error *err)
{
	if (n->kind == k)
		return 0;
	return cqrs_yaml_fail(err, file, n, "%s must be %s, not %s", what, cqrs_yaml_kind_name(k),
			      cqrs_yaml_kind_name(n->kind));
}

const struct cqrs_yaml_node *cqrs_yaml_get(const struct cqrs_yaml_node *map, const char *key)
{
	if (map == NULL || map->kind != CQRS_YAML_MAP)
		return NULL;
	for (size_t i = 0; i + 1 < map->nkids; i += 2)
		if (strcmp(map->kids[i]->text, key) == 0)
			return map->kids[i + 1];
	return NULL;
}
