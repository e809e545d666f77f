/*
 * Upcasting (cqrs-upcasters(5)): old versions of an event, as stored,
 * brought to the newest version of their type when they are consumed.
 * The store's bytes never change (the chain hashes them); the current form
 * is made on the way out, by the store's UPCAST decode stage
 * (cqrs_upcast_attach) or, for events that come from input rather than a
 * store, by cqrs_upcaster_apply.
 *
 * What an upcaster does is declared in YAML, step by step, and each step
 * works on the compact JSON text of the data with json.c's member
 * iteration: a value moves as its bytes, so 0.10 stays 0.10.  A jq step
 * (upcast_jq.c) is there for what the steps cannot say.
 *
 * The declarations of a process are one set, loaded once (the shipped
 * domain's file, then the user's) and read-only after, so that every
 * store and thread of the process upcasts alike; what a use needs to
 * itself (buffers, compiled jq programs) is a cqrs_upcaster.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/yaml.h"
#include "domain/domain.h"
#include "domain/upcast_impl.h"
#include "store/decode.h"
#include "banned.h"

#define MAX_PATH_DEPTH 8

struct path {
	char *text; /* as declared: "shipment.carrier" */
	char *seg[MAX_PATH_DEPTH];
	size_t n;
};

enum op {
	OP_RENAME,   /* from: PATH, to: NAME (in place) */
	OP_MOVE,     /* from: PATH, to: PATH */
	OP_ADD,	     /* field: PATH, value: VALUE (when absent) */
	OP_REMOVE,   /* field: PATH */
	OP_SPLIT,    /* field: PATH, separator: TEXT, into: [PATH...] */
	OP_TEMPLATE, /* compute: field: PATH, template: "TEXT {PATH} ..." */
	OP_SUM,	     /* compute: field: PATH, sum: [PATH...] */
	OP_CONVERT,  /* field: PATH, to: string | number | boolean */
	OP_JQ,	     /* program: TEXT, numbers: exact | reprinted */
};

enum json_type { JT_STRING, JT_NUMBER, JT_BOOLEAN };

struct step {
	enum op op;
	int line, col;
	struct path from, to; /* from: the field a step reads */
	bool optional;	      /* rename, move, convert: a missing field is no error */
	char *value;	      /* add: compact JSON */
	char *separator;      /* split */
	struct path *parts;   /* split: into; sum: the addends */
	size_t nparts;
	char *template;	       /* compute */
	enum json_type type;   /* convert */
	char *program;	       /* jq */
	bool accept_reprinted; /* jq: numbers may change their text */
	size_t jq_index;       /* jq: its compiled program in a cqrs_upcaster */
};

struct upcaster {
	char *event_type;
	int64_t from; /* reads this version, writes from + 1 */
	const char *file;
	int line;
	struct step *steps;
	size_t nsteps;
};

struct upcast_set {
	struct upcaster *u;
	size_t n;
	char **files; /* the names the declarations keep pointers to */
	size_t nfiles;
	size_t njq; /* jq steps, numbered by jq_index */
	struct step **jq_steps;
	/* The shipped file, when it is not there (a build that was not
	 * installed, CQRS_SHAREDIR unset): not an error until an old event
	 * needs it, so that tools that meet none still run. */
	char *shipped_missing;
};

static struct upcast_set the_set;
static bool set_ready;
static pthread_mutex_t set_lock = PTHREAD_MUTEX_INITIALIZER;

/* --- the declarations -------------------------------------------------- */

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

static int parse_path(const struct cqrs_yaml_node *n, const char *file, const char *what,
		      bool single, struct path *p, cqrs_error *err)
{
	if (cqrs_yaml_want(n, CQRS_YAML_SCALAR, file, what, err) < 0)
		return -1;
	const char *t = n->text;
	size_t len = strlen(t);
	bool ok = len > 0 && t[0] != '.' && t[len - 1] != '.' && strstr(t, "..") == NULL;
	for (size_t i = 0; ok && i < len; i++)
		ok = name_char(t[i]) || t[i] == '.';
	if (!ok)
		return cqrs_yaml_fail(err, file, n,
				      "%s must be a field name, or names joined by '.' (letters, "
				      "digits, '_', '-'), not '%s'",
				      what, t);
	if ((p->text = strdup(t)) == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	for (char *s = p->text;;) {
		char *dot = strchr(s, '.');
		size_t k = dot ? (size_t)(dot - s) : strlen(s);
		if (p->n == MAX_PATH_DEPTH)
			return cqrs_yaml_fail(err, file, n, "%s is nested deeper than %d", what,
					      MAX_PATH_DEPTH);
		if ((p->seg[p->n++] = strndup(s, k)) == NULL)
			return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		if (dot == NULL)
			break;
		s = dot + 1;
	}
	if (single && p->n != 1)
		return cqrs_yaml_fail(err, file, n, "%s is a name in the same object, not a path",
				      what);
	return 0;
}

static void free_path(struct path *p)
{
	free(p->text);
	for (size_t i = 0; i < p->n; i++)
		free(p->seg[i]);
}

/* A declared value as JSON: a plain scalar that is a JSON number, true,
 * false or null is that (its text kept: 0.10 stays 0.10); any other
 * scalar is a string; value_json: gives any JSON text. */
static int parse_value(const struct cqrs_yaml_node *n, bool is_json, const char *file, char **out,
		       cqrs_error *err)
{
	if (cqrs_yaml_want(n, CQRS_YAML_SCALAR, file, is_json ? "value_json" : "value", err) < 0)
		return -1;
	const char *t = n->text;
	size_t len = strlen(t);
	char *copy = malloc(len + 1);
	if (copy == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	memcpy(copy, t, len + 1);
	size_t clen = len;
	cqrs_error e = { 0 };
	bool json = (is_json || n->plain) && cqrs_json_compact(copy, &clen, &e) == 0 &&
		    (is_json || copy[0] == '-' || (copy[0] >= '0' && copy[0] <= '9') ||
		     strcmp(copy, "true") == 0 || strcmp(copy, "false") == 0 ||
		     strcmp(copy, "null") == 0);
	if (is_json && !json) {
		free(copy);
		return cqrs_yaml_fail(err, file, n, "value_json is not JSON: %s", e.msg);
	}
	if (json) {
		copy[clen] = '\0';
		*out = copy;
		return 0;
	}
	free(copy);
	struct cqrs_strbuf b = { 0 };
	cqrs_strbuf_json_string(&b, t, len);
	if (b.oom)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	*out = b.p;
	return 0;
}

static const struct cqrs_yaml_node *need(const struct cqrs_yaml_node *map, const char *key,
					 const char *file, const char *op, cqrs_error *err)
{
	const struct cqrs_yaml_node *v = cqrs_yaml_get(map, key);
	if (v == NULL)
		cqrs_yaml_fail(err, file, map, "%s needs '%s'", op, key);
	return v;
}

/* Only the keys an operation knows: a misspelt one is an error, not a
 * default silently taken. */
static int only_keys(const struct cqrs_yaml_node *map, const char *const *keys, const char *file,
		     const char *op, cqrs_error *err)
{
	for (size_t i = 0; i < map->nkids; i += 2) {
		const char *k = map->kids[i]->text;
		bool known = false;
		for (const char *const *p = keys; *p != NULL && !known; p++)
			known = strcmp(*p, k) == 0;
		if (!known)
			return cqrs_yaml_fail(err, file, map->kids[i], "%s has no '%s'", op, k);
	}
	return 0;
}

static int parse_bool(const struct cqrs_yaml_node *n, const char *file, const char *what, bool *out,
		      cqrs_error *err)
{
	if (n == NULL)
		return 0;
	if (n->kind == CQRS_YAML_SCALAR && strcmp(n->text, "true") == 0)
		*out = true;
	else if (n->kind == CQRS_YAML_SCALAR && strcmp(n->text, "false") == 0)
		*out = false;
	else
		return cqrs_yaml_fail(err, file, n, "%s must be true or false", what);
	return 0;
}

static int parse_paths(const struct cqrs_yaml_node *n, const char *file, const char *what,
		       struct step *s, cqrs_error *err)
{
	if (cqrs_yaml_want(n, CQRS_YAML_SEQ, file, what, err) < 0)
		return -1;
	if (n->nkids == 0)
		return cqrs_yaml_fail(err, file, n, "%s is empty", what);
	if ((s->parts = calloc(n->nkids, sizeof *s->parts)) == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	s->nparts = n->nkids;
	for (size_t i = 0; i < n->nkids; i++)
		if (parse_path(n->kids[i], file, what, false, &s->parts[i], err) < 0)
			return -1;
	return 0;
}

/* Places in a template: "{path}" each names a field; no other braces. */
static int check_template(const struct cqrs_yaml_node *n, const char *file, cqrs_error *err)
{
	if (cqrs_yaml_want(n, CQRS_YAML_SCALAR, file, "template", err) < 0)
		return -1;
	for (const char *t = n->text; *t; t++) {
		if (*t == '}')
			return cqrs_yaml_fail(err, file, n, "template has a '}' without its '{'");
		if (*t != '{')
			continue;
		const char *end = strchr(t, '}');
		bool ok = end != NULL && end > t + 1;
		for (const char *c = t + 1; ok && c < end; c++)
			ok = name_char(*c) || *c == '.';
		if (!ok)
			return cqrs_yaml_fail(err, file, n,
					      "template: '{' must start a field's name and '}' end "
					      "it");
		t = end;
	}
	return 0;
}

static int parse_step_body(struct step *s, const char *opname, const struct cqrs_yaml_node *a,
			   const char *file, cqrs_error *err)
{
	const struct cqrs_yaml_node *v;
	switch (s->op) {
	case OP_RENAME:
	case OP_MOVE: {
		static const char *const keys[] = { "from", "to", "optional", NULL };
		if (only_keys(a, keys, file, opname, err) < 0 ||
		    (v = need(a, "from", file, opname, err)) == NULL ||
		    parse_path(v, file, "from", false, &s->from, err) < 0 ||
		    (v = need(a, "to", file, opname, err)) == NULL ||
		    parse_path(v, file, "to", s->op == OP_RENAME, &s->to, err) < 0 ||
		    parse_bool(cqrs_yaml_get(a, "optional"), file, "optional", &s->optional, err) <
			    0)
			return -1;
		if (s->op == OP_RENAME) { /* to: a name beside from */
			struct path full = { 0 };
			for (size_t i = 0; i + 1 < s->from.n; i++)
				full.seg[full.n++] = strdup(s->from.seg[i]);
			full.seg[full.n++] = strdup(s->to.seg[0]);
			full.text = strdup(s->to.text);
			free_path(&s->to);
			s->to = full;
			for (size_t i = 0; i < full.n; i++)
				if (full.seg[i] == NULL || full.text == NULL)
					return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		}
		return 0;
	}
	case OP_ADD: {
		static const char *const keys[] = { "field", "value", "value_json", NULL };
		if (only_keys(a, keys, file, opname, err) < 0 ||
		    (v = need(a, "field", file, opname, err)) == NULL ||
		    parse_path(v, file, "field", false, &s->from, err) < 0)
			return -1;
		const struct cqrs_yaml_node *val = cqrs_yaml_get(a, "value");
		const struct cqrs_yaml_node *js = cqrs_yaml_get(a, "value_json");
		if ((val == NULL) == (js == NULL))
			return cqrs_yaml_fail(err, file, a,
					      "add needs one of 'value' or 'value_json'");
		return parse_value(val ? val : js, js != NULL, file, &s->value, err);
	}
	case OP_REMOVE: {
		static const char *const keys[] = { "field", NULL };
		if (only_keys(a, keys, file, opname, err) < 0 ||
		    (v = need(a, "field", file, opname, err)) == NULL)
			return -1;
		return parse_path(v, file, "field", false, &s->from, err);
	}
	case OP_SPLIT: {
		static const char *const keys[] = { "field", "separator", "into", NULL };
		if (only_keys(a, keys, file, opname, err) < 0 ||
		    (v = need(a, "field", file, opname, err)) == NULL ||
		    parse_path(v, file, "field", false, &s->from, err) < 0 ||
		    (v = need(a, "separator", file, opname, err)) == NULL ||
		    cqrs_yaml_want(v, CQRS_YAML_SCALAR, file, "separator", err) < 0)
			return -1;
		if (v->text[0] == '\0')
			return cqrs_yaml_fail(err, file, v, "separator is empty");
		if ((s->separator = strdup(v->text)) == NULL)
			return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		if ((v = need(a, "into", file, opname, err)) == NULL)
			return -1;
		return parse_paths(v, file, "into", s, err);
	}
	case OP_TEMPLATE: {
		static const char *const keys[] = { "field", "template", "sum", NULL };
		if (only_keys(a, keys, file, opname, err) < 0 ||
		    (v = need(a, "field", file, opname, err)) == NULL ||
		    parse_path(v, file, "field", false, &s->from, err) < 0)
			return -1;
		const struct cqrs_yaml_node *t = cqrs_yaml_get(a, "template");
		const struct cqrs_yaml_node *sum = cqrs_yaml_get(a, "sum");
		if ((t == NULL) == (sum == NULL))
			return cqrs_yaml_fail(err, file, a,
					      "compute needs one of 'template' or 'sum'");
		if (sum != NULL) {
			s->op = OP_SUM;
			return parse_paths(sum, file, "sum", s, err);
		}
		if (check_template(t, file, err) < 0)
			return -1;
		if ((s->template = strdup(t->text)) == NULL)
			return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		return 0;
	}
	case OP_SUM: return 0; /* compute: made by OP_TEMPLATE's parse */
	case OP_CONVERT: {
		static const char *const keys[] = { "field", "to", "optional", NULL };
		if (only_keys(a, keys, file, opname, err) < 0 ||
		    (v = need(a, "field", file, opname, err)) == NULL ||
		    parse_path(v, file, "field", false, &s->from, err) < 0 ||
		    parse_bool(cqrs_yaml_get(a, "optional"), file, "optional", &s->optional, err) <
			    0 ||
		    (v = need(a, "to", file, opname, err)) == NULL ||
		    cqrs_yaml_want(v, CQRS_YAML_SCALAR, file, "to", err) < 0)
			return -1;
		if (strcmp(v->text, "string") == 0)
			s->type = JT_STRING;
		else if (strcmp(v->text, "number") == 0)
			s->type = JT_NUMBER;
		else if (strcmp(v->text, "boolean") == 0)
			s->type = JT_BOOLEAN;
		else
			return cqrs_yaml_fail(err, file, v,
					      "to must be string, number or boolean, not '%s'",
					      v->text);
		return 0;
	}
	case OP_JQ: {
		static const char *const keys[] = { "program", "numbers", NULL };
		if (only_keys(a, keys, file, opname, err) < 0 ||
		    (v = need(a, "program", file, opname, err)) == NULL ||
		    cqrs_yaml_want(v, CQRS_YAML_SCALAR, file, "program", err) < 0)
			return -1;
		if ((s->program = strdup(v->text)) == NULL)
			return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		if (upcast_jq_check(s->program, file, v->line, v->column, err) < 0)
			return -1;
		const struct cqrs_yaml_node *num = cqrs_yaml_get(a, "numbers");
		if (num == NULL)
			return 0;
		if (num->kind == CQRS_YAML_SCALAR && strcmp(num->text, "exact") == 0)
			s->accept_reprinted = false;
		else if (num->kind == CQRS_YAML_SCALAR && strcmp(num->text, "reprinted") == 0)
			s->accept_reprinted = true;
		else
			return cqrs_yaml_fail(err, file, num, "numbers must be exact or reprinted");
		return 0;
	}
	}
	return 0;
}

static int parse_step(struct step *s, const struct cqrs_yaml_node *n, const char *file,
		      cqrs_error *err)
{
	static const struct {
		const char *name;
		enum op op;
	} ops[] = { { "rename", OP_RENAME },   { "move", OP_MOVE },   { "add", OP_ADD },
		    { "remove", OP_REMOVE },   { "split", OP_SPLIT }, { "compute", OP_TEMPLATE },
		    { "convert", OP_CONVERT }, { "jq", OP_JQ } };
	if (cqrs_yaml_want(n, CQRS_YAML_MAP, file, "a step", err) < 0)
		return -1;
	if (n->nkids != 2)
		return cqrs_yaml_fail(err, file, n,
				      "a step is one operation: rename, move, add, remove, split, "
				      "compute, convert or jq");
	const struct cqrs_yaml_node *key = n->kids[0], *body = n->kids[1];
	s->line = key->line;
	s->col = key->column;
	for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
		if (strcmp(ops[i].name, key->text) != 0)
			continue;
		s->op = ops[i].op;
		if (cqrs_yaml_want(body, CQRS_YAML_MAP, file, ops[i].name, err) < 0)
			return -1;
		return parse_step_body(s, ops[i].name, body, file, err);
	}
	return cqrs_yaml_fail(err, file, key,
			      "unknown operation '%s' (rename, move, add, remove, split, compute, "
			      "convert or jq)",
			      key->text);
}

static void free_upcaster(struct upcaster *u)
{
	for (size_t i = 0; i < u->nsteps; i++) {
		struct step *s = &u->steps[i];
		free_path(&s->from);
		free_path(&s->to);
		for (size_t j = 0; j < s->nparts; j++)
			free_path(&s->parts[j]);
		free(s->parts);
		free(s->value);
		free(s->separator);
		free(s->template);
		free(s->program);
	}
	free(u->steps);
	free(u->event_type);
}

static const struct upcaster *find(const struct upcast_set *set, const char *type, int64_t from)
{
	for (size_t i = 0; i < set->n; i++)
		if (set->u[i].from == from && strcmp(set->u[i].event_type, type) == 0)
			return &set->u[i];
	return NULL;
}

static int parse_upcaster(struct upcast_set *set, const struct cqrs_yaml_node *n, const char *file,
			  cqrs_error *err)
{
	static const char *const keys[] = { "event_type", "from", "steps", NULL };
	if (cqrs_yaml_want(n, CQRS_YAML_MAP, file, "an upcaster", err) < 0 ||
	    only_keys(n, keys, file, "an upcaster", err) < 0)
		return -1;
	const struct cqrs_yaml_node *type = need(n, "event_type", file, "an upcaster", err);
	const struct cqrs_yaml_node *from = type ? need(n, "from", file, "an upcaster", err) : NULL;
	const struct cqrs_yaml_node *steps =
		from ? need(n, "steps", file, "an upcaster", err) : NULL;
	if (steps == NULL || cqrs_yaml_want(type, CQRS_YAML_SCALAR, file, "event_type", err) < 0 ||
	    cqrs_yaml_want(from, CQRS_YAML_SCALAR, file, "from", err) < 0 ||
	    cqrs_yaml_want(steps, CQRS_YAML_SEQ, file, "steps", err) < 0)
		return -1;
	if (!cqrs_type_name_valid(type->text, strlen(type->text)))
		return cqrs_yaml_fail(err, file, type, "'%s' is not an event type name",
				      type->text);
	int64_t v;
	if (cqrs_parse_int64(from->text, &v) < 0 || v < 1 || v >= INT32_MAX)
		return cqrs_yaml_fail(
			err, file, from,
			"from must be the event_version it reads (1, 2, ...), not '%s'",
			from->text);
	if (steps->nkids == 0)
		return cqrs_yaml_fail(err, file, steps, "steps is empty");
	const struct upcaster *dup = find(set, type->text, v);
	if (dup != NULL)
		return cqrs_yaml_fail(err, file, from,
				      "%s from event_version %lld is declared already at %s:%d",
				      type->text, (long long)v, dup->file, dup->line);
	struct upcaster *grown = realloc(set->u, (set->n + 1) * sizeof *set->u);
	if (grown == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	set->u = grown;
	struct upcaster *u = &set->u[set->n++];
	*u = (struct upcaster){ .from = v, .file = file, .line = n->line };
	if ((u->event_type = strdup(type->text)) == NULL ||
	    (u->steps = calloc(steps->nkids, sizeof *u->steps)) == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	for (size_t i = 0; i < steps->nkids; i++) {
		u->nsteps++;
		if (parse_step(&u->steps[i], steps->kids[i], file, err) < 0)
			return -1;
	}
	return 0;
}

/* One file's upcasters into set; FILE:LINE:COL and 78 for what is wrong. */
static int load_file(struct upcast_set *set, const char *path, cqrs_error *err)
{
	char **names = realloc(set->files, (set->nfiles + 1) * sizeof *names);
	if (names == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	set->files = names;
	if ((names[set->nfiles] = strdup(path)) == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	const char *file = names[set->nfiles++];
	FILE *f = cqrs_yaml_open(file, "upcasters", err);
	if (f == NULL)
		return -1;
	struct cqrs_yaml_node *root = cqrs_yaml_load(f, file, "'upcasters:'", err);
	fclose(f);
	if (root == NULL)
		return -1;
	int rc = cqrs_yaml_want(root, CQRS_YAML_MAP, file, "an upcasters file", err);
	const struct cqrs_yaml_node *list = NULL;
	if (rc == 0) {
		static const char *const keys[] = { "upcasters", NULL };
		rc = only_keys(root, keys, file, "an upcasters file", err);
	}
	if (rc == 0 && (list = need(root, "upcasters", file, "an upcasters file", err)) == NULL)
		rc = -1;
	if (rc == 0)
		rc = cqrs_yaml_want(list, CQRS_YAML_SEQ, file, "upcasters", err);
	for (size_t i = 0; rc == 0 && i < list->nkids; i++)
		rc = parse_upcaster(set, list->kids[i], file, err);
	cqrs_yaml_free(root);
	return rc;
}

/* A chain has no gap: from each declared version but the first, the one
 * before it is declared too (the oldest may start above 1: a type that
 * came into the domain at version 2). */
static int check_chains(struct upcast_set *set, cqrs_error *err)
{
	for (size_t i = 0; i < set->n; i++) {
		const struct upcaster *u = &set->u[i];
		int64_t lowest = u->from;
		for (size_t j = 0; j < set->n; j++)
			if (set->u[j].from < lowest &&
			    strcmp(set->u[j].event_type, u->event_type) == 0)
				lowest = set->u[j].from;
		if (u->from > lowest && find(set, u->event_type, u->from - 1) == NULL)
			return cqrs_fail(err, CQRS_EXIT_CONFIG,
					 "%s:%d: %s from event_version %lld: no upcaster brings "
					 "event_version %lld to it",
					 u->file, u->line, u->event_type, (long long)u->from,
					 (long long)u->from - 1);
	}
	return 0;
}

static int number_jq_steps(struct upcast_set *set, cqrs_error *err)
{
	for (size_t i = 0; i < set->n; i++)
		for (size_t j = 0; j < set->u[i].nsteps; j++) {
			struct step *s = &set->u[i].steps[j];
			if (s->op != OP_JQ)
				continue;
			struct step **grown =
				realloc(set->jq_steps, (set->njq + 1) * sizeof *grown);
			if (grown == NULL)
				return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
			set->jq_steps = grown;
			s->jq_index = set->njq;
			set->jq_steps[set->njq++] = s;
		}
	return 0;
}

static void free_set(struct upcast_set *set)
{
	for (size_t i = 0; i < set->n; i++)
		free_upcaster(&set->u[i]);
	free(set->u);
	for (size_t i = 0; i < set->nfiles; i++)
		free(set->files[i]);
	free(set->files);
	free(set->jq_steps);
	free(set->shipped_missing);
	*set = (struct upcast_set){ 0 };
}

static int load_set(char *const *files, int nfiles, cqrs_error *err)
{
	struct upcast_set set = { 0 };
	char shipped[4096];
	cqrs_share_path("upcasters/orders.yaml", shipped, sizeof shipped);
	int rc = 0;
	if (access(shipped, F_OK) < 0 && errno == ENOENT)
		rc = (set.shipped_missing = strdup(shipped)) == NULL
			     ? cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory")
			     : 0;
	else
		rc = load_file(&set, shipped, err);
	for (int i = 0; rc == 0 && i < nfiles; i++)
		rc = load_file(&set, files[i], err);
	if (rc == 0)
		rc = check_chains(&set, err);
	if (rc == 0)
		rc = number_jq_steps(&set, err);
	if (rc < 0) {
		free_set(&set);
		return -1;
	}
	free_set(&the_set);
	the_set = set;
	set_ready = true;
	return 0;
}

int cqrs_upcasters_init(char *const *files, int nfiles, cqrs_error *err)
{
	pthread_mutex_lock(&set_lock);
	int rc = load_set(files, nfiles, err);
	pthread_mutex_unlock(&set_lock);
	return rc;
}

/* The set, loaded with the shipped file alone when the tool did not. */
static const struct upcast_set *get_set(cqrs_error *err)
{
	pthread_mutex_lock(&set_lock);
	int rc = set_ready ? 0 : load_set(NULL, 0, err);
	pthread_mutex_unlock(&set_lock);
	return rc == 0 ? &the_set : NULL;
}

int64_t cqrs_upcast_newest(const char *event_type)
{
	cqrs_error e = { 0 };
	const struct upcast_set *set = get_set(&e);
	int64_t newest = dom_event_version(event_type);
	for (size_t i = 0; set != NULL && i < set->n; i++)
		if (set->u[i].from >= newest && strcmp(set->u[i].event_type, event_type) == 0)
			newest = set->u[i].from + 1;
	return newest;
}

/* --- the steps, on compact JSON text ----------------------------------- */

struct cqrs_upcaster {
	const struct upcast_set *set;
	struct cqrs_strbuf buf[2];	 /* one step reads one, writes the other */
	struct cqrs_strbuf tmp, scratch; /* inside a step */
	upcast_jq **jq;			 /* set->njq, compiled on first use */
};

static int hex_digit(char c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
				      : -1;
}

/* The member's key is name: its bytes, or what they decode to when it is
 * written with escapes ("k\u0065y", which the store keeps as written), so
 * that a step never writes a key twice.  A name is letters, digits, '_'
 * and '-' (parse_path, check_template): only a \u00XX escape below 0x80
 * can be one of its characters. */
static bool key_is(const cqrs_json_member *m, const char *name)
{
	size_t n = strlen(name);
	if (memchr(m->key, '\\', m->key_len) == NULL)
		return m->key_len == n && memcmp(m->key, name, n) == 0;
	size_t j = 0;
	for (size_t i = 0; i < m->key_len; i++, j++) {
		char c = m->key[i];
		if (c == '\\') {
			if (i + 5 >= m->key_len || m->key[i + 1] != 'u')
				return false;
			int v = 0;
			for (size_t k = 2; k <= 5; k++) {
				int d = hex_digit(m->key[i + k]);
				if (d < 0)
					return false;
				v = v * 16 + d;
			}
			if (v >= 0x80)
				return false;
			c = (char)v;
			i += 5;
		}
		if (j == n || name[j] != c)
			return false;
	}
	return j == n;
}

/* The value at path in the object, or NULL (a part of the way that is not
 * an object ends it too). */
static const char *get_path(const char *obj, size_t len, const struct path *p, size_t *vlen)
{
	const char *v = obj;
	size_t n = len;
	for (size_t i = 0; i < p->n; i++) {
		if (n == 0 || v[0] != '{')
			return NULL;
		size_t pos = 0;
		cqrs_json_member m;
		bool found = false;
		while (!found && cqrs_json_next_member(v, n, &pos, &m) == 1)
			found = key_is(&m, p->seg[i]);
		if (!found)
			return NULL;
		v = m.value;
		n = m.value_len;
	}
	*vlen = n;
	return v;
}

static void put_member(struct cqrs_strbuf *b, bool *first, const char *key, size_t klen,
		       const char *v, size_t vn)
{
	if (!*first)
		cqrs_strbuf_putc(b, ',');
	*first = false;
	cqrs_strbuf_putc(b, '"');
	cqrs_strbuf_put(b, key, klen);
	cqrs_strbuf_puts(b, "\":");
	cqrs_strbuf_put(b, v, vn);
}

/* {"seg[0]":{"seg[1]":...value}} for the part of a path that does not
 * exist yet. */
static void put_nested(struct cqrs_strbuf *b, char *const *seg, size_t n, const char *v, size_t vn)
{
	if (n == 0) {
		cqrs_strbuf_put(b, v, vn);
		return;
	}
	cqrs_strbuf_puts(b, "{\"");
	cqrs_strbuf_puts(b, seg[0]);
	cqrs_strbuf_puts(b, "\":");
	put_nested(b, seg + 1, n - 1, v, vn);
	cqrs_strbuf_putc(b, '}');
}

/*
 * Writes obj into b with the member at seg[0..n) set to v (v NULL: removed).
 * A member that exists is replaced where it is; a new one goes at the end
 * of its object, or, when anchor names a member of the object at depth
 * anchor_depth, in that member's place (which it takes: a move into an
 * object that does not exist yet puts it where the moved member was).
 * Returns 0, or -1 when a part of the way is not an object (*bad: how
 * deep).
 */
static int edit(struct cqrs_strbuf *b, const char *obj, size_t len, char *const *seg, size_t n,
		const char *v, size_t vn, const char *anchor, size_t anchor_depth, size_t depth,
		size_t *bad)
{
	if (len == 0 || obj[0] != '{') {
		*bad = depth;
		return -1;
	}
	bool use_anchor = anchor != NULL && depth == anchor_depth && v != NULL;
	size_t pos = 0;
	cqrs_json_member m;
	while (use_anchor && cqrs_json_next_member(obj, len, &pos, &m) == 1)
		use_anchor = !key_is(&m, seg[0]); /* the member exists: set in it */
	cqrs_strbuf_putc(b, '{');
	bool first = true, done = false;
	pos = 0;
	while (cqrs_json_next_member(obj, len, &pos, &m) == 1) {
		bool here = key_is(&m, seg[0]);
		if (!here && !(use_anchor && key_is(&m, anchor))) {
			put_member(b, &first, m.key, m.key_len, m.value, m.value_len);
			continue;
		}
		done = true;
		if (n == 1 && v == NULL)
			continue;
		if (!first)
			cqrs_strbuf_putc(b, ',');
		first = false;
		cqrs_strbuf_putc(b, '"');
		cqrs_strbuf_puts(b, seg[0]);
		cqrs_strbuf_puts(b, "\":");
		if (!here)
			put_nested(b, seg + 1, n - 1, v, vn);
		else if (n == 1)
			cqrs_strbuf_put(b, v, vn);
		else if (edit(b, m.value, m.value_len, seg + 1, n - 1, v, vn, anchor, anchor_depth,
			      depth + 1, bad) < 0)
			return -1;
	}
	if (!done && v != NULL) {
		if (!first)
			cqrs_strbuf_putc(b, ',');
		cqrs_strbuf_putc(b, '"');
		cqrs_strbuf_puts(b, seg[0]);
		cqrs_strbuf_puts(b, "\":");
		put_nested(b, seg + 1, n - 1, v, vn);
	}
	cqrs_strbuf_putc(b, '}');
	return 0;
}

/* What a step found wrong in an event: filled in by the caller with the
 * event's sequence and type. */
static int step_fail(cqrs_error *err, const char *fmt, ...) CQRS_PRINTF(2, 3);
static int step_fail(cqrs_error *err, const char *fmt, ...)
{
	if (err == NULL)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	va_end(ap);
	err->code = CQRS_EXIT_DATAERR;
	return -1;
}

static int set_path(struct cqrs_strbuf *out, const char *obj, size_t len, const struct path *p,
		    const char *v, size_t vn, const char *anchor, size_t anchor_depth,
		    cqrs_error *err)
{
	size_t bad = 0;
	if (edit(out, obj, len, p->seg, p->n, v, vn, anchor, anchor_depth, 0, &bad) == 0)
		return 0;
	struct cqrs_strbuf where = { 0 };
	for (size_t i = 0; i <= bad && i < p->n; i++)
		cqrs_strbuf_printf(&where, "%s%s", i ? "." : "", p->seg[i]);
	int rc = step_fail(err, "data.%s is not an object", cqrs_strbuf_str(&where));
	cqrs_strbuf_free(&where);
	return rc;
}

/* rename and move: the value goes as its bytes */
static int do_move(const struct step *s, const char *in, size_t len, struct cqrs_strbuf *out,
		   struct cqrs_strbuf *tmp, cqrs_error *err)
{
	size_t vn, tn;
	const char *v = get_path(in, len, &s->from, &vn);
	if (v == NULL) {
		if (!s->optional)
			return step_fail(err, "data.%s is missing", s->from.text);
		cqrs_strbuf_put(out, in, len);
		return 0;
	}
	if (get_path(in, len, &s->to, &tn) != NULL)
		return step_fail(err, "data.%s is there already", s->to.text);
	/* the depth of the object both paths go through last */
	size_t d = 0;
	while (d + 1 < s->from.n && d + 1 < s->to.n && strcmp(s->from.seg[d], s->to.seg[d]) == 0)
		d++;
	const char *anchor = s->from.n == d + 1 ? s->from.seg[d] : NULL;
	cqrs_strbuf_reset(tmp);
	if (set_path(tmp, in, len, &s->to, v, vn, anchor, d, err) < 0)
		return -1;
	/* the new member took the moved one's place, or the moved one is
	 * still there to remove */
	if (get_path(tmp->p, tmp->len, &s->from, &tn) == NULL) {
		cqrs_strbuf_put(out, tmp->p, tmp->len);
		return 0;
	}
	return set_path(out, tmp->p, tmp->len, &s->from, NULL, 0, NULL, 0, err);
}

/* A JSON string value decoded into scratch (NUL-terminated): its length,
 * or -1 when v is not a string. */
/* A JSON string's text in scratch: its length, -1 when v is not a
 * string, NO_MEMORY when scratch could not hold it (71 for the caller,
 * never "not a string"). */
#define NO_MEMORY (-2)
static long decode_string(const char *v, size_t vn, struct cqrs_strbuf *scratch)
{
	cqrs_strbuf_reset(scratch);
	if (vn < 2 || v[0] != '"')
		return -1;
	if (!cqrs_strbuf_grow(scratch, vn))
		return NO_MEMORY;
	long r = cqrs_json_string(v, vn, scratch->p, vn);
	if (r >= 0)
		scratch->p[r] = '\0';
	return r;
}

static bool is_number(const char *v, size_t vn)
{
	return vn > 0 && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9'));
}

static int do_split(const struct step *s, const char *in, size_t len, struct cqrs_strbuf *out,
		    struct cqrs_strbuf *scratch, cqrs_error *err)
{
	size_t vn;
	const char *v = get_path(in, len, &s->from, &vn);
	if (v == NULL)
		return step_fail(err, "data.%s is missing", s->from.text);
	long n = decode_string(v, vn, scratch);
	if (n == NO_MEMORY)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	if (n < 0)
		return step_fail(err, "data.%s is not a string", s->from.text);
	/* the field goes; its parts go where into says, each as a string (a
	 * part the text does not have is left out) */
	struct cqrs_strbuf cur = { 0 }, next = { 0 }, part = { 0 };
	int rc = set_path(&cur, in, len, &s->from, NULL, 0, NULL, 0, err);
	size_t seplen = strlen(s->separator);
	const char *p = scratch->p, *end = scratch->p + n;
	for (size_t i = 0; rc == 0 && i < s->nparts && p != NULL; i++) {
		const char *cut = i + 1 < s->nparts
					  ? memmem(p, (size_t)(end - p), s->separator, seplen)
					  : NULL;
		cqrs_strbuf_reset(&part);
		cqrs_strbuf_json_string(&part, p, cut ? (size_t)(cut - p) : (size_t)(end - p));
		p = cut ? cut + seplen : NULL;
		cqrs_strbuf_reset(&next);
		/* a part or the data so far cut short by want of memory is 71,
		 * never data without a member or with one that has no value */
		if (part.oom || cur.oom) {
			rc = cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
			break;
		}
		rc = set_path(&next, cur.p, cur.len, &s->parts[i], part.p, part.len, NULL, 0, err);
		struct cqrs_strbuf t = cur;
		cur = next;
		next = t;
	}
	if (rc == 0 && cur.oom)
		rc = cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	if (rc == 0)
		cqrs_strbuf_put(out, cur.p, cur.len);
	cqrs_strbuf_free(&cur);
	cqrs_strbuf_free(&next);
	cqrs_strbuf_free(&part);
	return rc;
}

/* compute with a template: a string of its text, each {path} the field's
 * text (a string's content, a number's digits as written, true or false) */
static int do_template(const struct step *s, const char *in, size_t len, struct cqrs_strbuf *out,
		       struct cqrs_strbuf *tmp, struct cqrs_strbuf *scratch, cqrs_error *err)
{
	cqrs_strbuf_reset(tmp);
	for (const char *t = s->template; *t;) {
		if (*t != '{') {
			const char *brace = strchr(t, '{');
			size_t k = brace ? (size_t)(brace - t) : strlen(t);
			cqrs_strbuf_put(tmp, t, k);
			t += k;
			continue;
		}
		const char *close = strchr(t, '}');
		struct path p = { .n = 0 };
		char name[256], shown[256];
		snprintf(name, sizeof name, "%.*s", (int)(close - t - 1), t + 1);
		memcpy(shown, name, sizeof shown);
		t = close + 1;
		/* the name as a path, split in place */
		for (char *c = name; p.n < MAX_PATH_DEPTH;) {
			p.seg[p.n++] = c;
			char *dot = strchr(c, '.');
			if (dot == NULL)
				break;
			*dot = '\0';
			c = dot + 1;
		}
		size_t vn;
		const char *v = get_path(in, len, &p, &vn);
		if (v == NULL)
			return step_fail(err, "data.%s is missing", shown);
		long n = v[0] == '"' ? decode_string(v, vn, scratch) : -1;
		if (n == NO_MEMORY)
			return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		if (n >= 0)
			cqrs_strbuf_put(tmp, scratch->p, (size_t)n);
		else if (is_number(v, vn) || (vn == 4 && memcmp(v, "true", 4) == 0) ||
			 (vn == 5 && memcmp(v, "false", 5) == 0))
			cqrs_strbuf_put(tmp, v, vn);
		else
			return step_fail(err, "data.%s is not a string, number or boolean", shown);
	}
	cqrs_strbuf_reset(scratch);
	cqrs_strbuf_json_string(scratch, tmp->p, tmp->len);
	return set_path(out, in, len, &s->from, scratch->p, scratch->len, NULL, 0, err);
}

/* A JSON number as an exact decimal: digits (with no point) and how many
 * of them are decimals; -1 for an exponent or more than 36 digits. */
static int decimal_parse(const char *v, size_t vn, bool *neg, __int128 *digits, int *scale)
{
	size_t i = 0;
	*neg = v[0] == '-';
	i += *neg;
	*digits = 0;
	*scale = 0;
	int count = 0;
	bool point = false;
	for (; i < vn; i++) {
		if (v[i] == '.') {
			point = true;
			continue;
		}
		if (v[i] < '0' || v[i] > '9' || ++count > 36)
			return -1;
		*digits = *digits * 10 + (v[i] - '0');
		*scale += point;
	}
	return 0;
}

/* A sum and its addends, in units of its last decimal, stay within 10^36:
 * past it a product or a sum of two would overflow (an addend of 21 whole
 * digits and one of 34 decimals is 55 digits in those units). */
static const __int128 sum_limit = (__int128)1000000000000000000 * 1000000000000000000;

/* *x times ten, when that stays within the limit */
static bool times_ten(__int128 *x)
{
	if (*x > sum_limit / 10 || *x < -(sum_limit / 10))
		return false;
	*x *= 10;
	return true;
}

/* compute with sum: the exact sum of numbers, with as many decimals as
 * the addend that has the most (0.10 + 0.2 = 0.30) */
static int do_sum(const struct step *s, const char *in, size_t len, struct cqrs_strbuf *out,
		  struct cqrs_strbuf *scratch, cqrs_error *err)
{
	__int128 total = 0;
	int scale = 0;
	for (size_t i = 0; i < s->nparts; i++) {
		size_t vn;
		const char *v = get_path(in, len, &s->parts[i], &vn);
		if (v == NULL)
			return step_fail(err, "data.%s is missing", s->parts[i].text);
		bool neg;
		__int128 d;
		int sc;
		if (!is_number(v, vn) || decimal_parse(v, vn, &neg, &d, &sc) < 0)
			return step_fail(err,
					 "data.%s is not a number of at most 36 digits without an "
					 "exponent: %.*s",
					 s->parts[i].text, (int)(vn > 64 ? 64 : vn), v);
		bool ok = true;
		for (; ok && scale < sc; scale++)
			ok = times_ten(&total);
		for (; ok && sc < scale; sc++)
			ok = times_ten(&d);
		if (ok)
			total += neg ? -d : d;
		if (!ok || total > sum_limit || total < -sum_limit)
			return step_fail(err, "the sum of %s is out of range", s->from.text);
	}
	char digits[64];
	int k = 0;
	bool neg = total < 0;
	__int128 t = neg ? -total : total;
	do {
		digits[k++] = (char)('0' + (int)(t % 10));
		t /= 10;
	} while (t > 0 || k <= scale);
	cqrs_strbuf_reset(scratch);
	if (neg)
		cqrs_strbuf_putc(scratch, '-');
	while (k > 0) {
		cqrs_strbuf_putc(scratch, digits[--k]);
		if (k == scale && scale > 0)
			cqrs_strbuf_putc(scratch, '.');
	}
	return set_path(out, in, len, &s->from, scratch->p, scratch->len, NULL, 0, err);
}

/* convert: a value of one JSON type to another, keeping its text */
static int do_convert(const struct step *s, const char *in, size_t len, struct cqrs_strbuf *out,
		      struct cqrs_strbuf *scratch, cqrs_error *err)
{
	size_t vn;
	const char *v = get_path(in, len, &s->from, &vn);
	if (v == NULL) {
		if (!s->optional)
			return step_fail(err, "data.%s is missing", s->from.text);
		cqrs_strbuf_put(out, in, len);
		return 0;
	}
	bool boolean =
		(vn == 4 && memcmp(v, "true", 4) == 0) || (vn == 5 && memcmp(v, "false", 5) == 0);
	bool number = is_number(v, vn);
	const char *nv = v;
	size_t nn = vn;
	cqrs_strbuf_reset(scratch);
	switch (s->type) {
	case JT_STRING:
		if (number || boolean) {
			cqrs_strbuf_putc(scratch, '"');
			cqrs_strbuf_put(scratch, v, vn);
			cqrs_strbuf_putc(scratch, '"');
			nv = scratch->p, nn = scratch->len;
		} else if (v[0] != '"') {
			return step_fail(err, "data.%s is not a number or boolean to make a string",
					 s->from.text);
		}
		break;
	case JT_NUMBER:
	case JT_BOOLEAN:
		if ((s->type == JT_NUMBER && number) || (s->type == JT_BOOLEAN && boolean))
			break;
		long n = decode_string(v, vn, scratch);
		if (n == NO_MEMORY)
			return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		cqrs_error e = { 0 };
		size_t cn = (size_t)n;
		bool ok = n > 0 && cqrs_json_compact(scratch->p, &cn, &e) == 0 && cn == (size_t)n;
		if (ok && s->type == JT_NUMBER)
			ok = is_number(scratch->p, cn);
		if (ok && s->type == JT_BOOLEAN)
			ok = (cn == 4 && memcmp(scratch->p, "true", 4) == 0) ||
			     (cn == 5 && memcmp(scratch->p, "false", 5) == 0);
		if (!ok && e.code == CQRS_EXIT_OSERR)
			return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		if (!ok)
			return step_fail(err, "data.%s is not %s: %.*s", s->from.text,
					 s->type == JT_NUMBER
						 ? "a number, or a string holding one"
						 : "a boolean, or \"true\" or \"false\"",
					 (int)(vn > 64 ? 64 : vn), v);
		nv = scratch->p, nn = cn;
		break;
	}
	return set_path(out, in, len, &s->from, nv, nn, NULL, 0, err);
}

static int do_add(const struct step *s, const char *in, size_t len, struct cqrs_strbuf *out,
		  cqrs_error *err)
{
	size_t vn;
	if (get_path(in, len, &s->from, &vn) != NULL) {
		cqrs_strbuf_put(out, in, len);
		return 0;
	}
	return set_path(out, in, len, &s->from, s->value, strlen(s->value), NULL, 0, err);
}

static int do_jq(cqrs_upcaster *u, const struct step *s, const char *in, size_t len,
		 struct cqrs_strbuf *out, cqrs_error *err)
{
	if (!s->accept_reprinted) {
		size_t nl;
		const char *num = upcast_jq_reprinted_number(in, len, &nl);
		if (num != NULL)
			return step_fail(err,
					 "the number %.*s would not keep its text through jq (it "
					 "holds numbers as doubles): the step does not declare "
					 "'numbers: reprinted'",
					 (int)(nl > 64 ? 64 : nl), num);
	}
	upcast_jq **q = &u->jq[s->jq_index];
	if (*q == NULL && (*q = upcast_jq_new(s->program, err)) == NULL)
		return -1;
	if (upcast_jq_run(*q, in, len, out, err) < 0)
		return -1;
	cqrs_error e = { 0 };
	size_t n = out->len;
	if (out->oom || cqrs_json_compact(out->p, &n, &e) < 0)
		return step_fail(err, "jq: its output is not JSON: %s", e.msg);
	out->len = n;
	return 0;
}

static int run_step(cqrs_upcaster *u, const struct step *s, const char *in, size_t len,
		    struct cqrs_strbuf *out, cqrs_error *err)
{
	switch (s->op) {
	case OP_RENAME:
	case OP_MOVE: return do_move(s, in, len, out, &u->tmp, err);
	case OP_ADD: return do_add(s, in, len, out, err);
	case OP_REMOVE: return set_path(out, in, len, &s->from, NULL, 0, NULL, 0, err);
	case OP_SPLIT: return do_split(s, in, len, out, &u->scratch, err);
	case OP_TEMPLATE: return do_template(s, in, len, out, &u->tmp, &u->scratch, err);
	case OP_SUM: return do_sum(s, in, len, out, &u->scratch, err);
	case OP_CONVERT: return do_convert(s, in, len, out, &u->scratch, err);
	case OP_JQ: return do_jq(u, s, in, len, out, err);
	}
	return 0;
}

cqrs_upcaster *cqrs_upcaster_new(cqrs_error *err)
{
	const struct upcast_set *set = get_set(err);
	if (set == NULL)
		return NULL;
	cqrs_upcaster *u = calloc(1, sizeof *u);
	if (u == NULL || (set->njq > 0 && (u->jq = calloc(set->njq, sizeof *u->jq)) == NULL)) {
		free(u);
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		return NULL;
	}
	u->set = set;
	return u;
}

void cqrs_upcaster_free(cqrs_upcaster *u)
{
	if (u == NULL)
		return;
	for (size_t i = 0; u->jq != NULL && i < u->set->njq; i++)
		upcast_jq_free(u->jq[i]);
	free(u->jq);
	for (int i = 0; i < 2; i++)
		cqrs_strbuf_free(&u->buf[i]);
	cqrs_strbuf_free(&u->tmp);
	cqrs_strbuf_free(&u->scratch);
	free(u);
}

/* "event 42 (OrderShipped, event_version 1): " before what went wrong */
static int event_fail(cqrs_error *err, int code, const cqrs_event *ev, const char *fmt, ...)
	CQRS_PRINTF(4, 5);
static int event_fail(cqrs_error *err, int code, const cqrs_event *ev, const char *fmt, ...)
{
	char what[900];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	return cqrs_fail(err, code, "event %lld (%s, event_version %lld): %s",
			 (long long)ev->sequence, ev->event_type, (long long)ev->event_version,
			 what);
}

int cqrs_upcaster_apply(cqrs_upcaster *u, cqrs_event *ev, cqrs_error *err)
{
	const struct upcast_set *set = u->set;
	int64_t lowest = 0, newest = 0;
	for (size_t i = 0; i < set->n; i++) {
		const struct upcaster *c = &set->u[i];
		if (strcmp(c->event_type, ev->event_type) != 0)
			continue;
		if (lowest == 0 || c->from < lowest)
			lowest = c->from;
		if (c->from + 1 > newest)
			newest = c->from + 1;
	}
	/* the domain's own types are read at the version it writes, whatever
	 * the declarations loaded */
	int64_t domain = dom_event_version(ev->event_type); /* 1: not versioned */
	if (domain > 1 && domain > newest)
		newest = domain;
	if (newest == 0 || ev->event_version == newest)
		return 0; /* current, or a type no upcaster knows */
	if (ev->event_version > newest)
		return event_fail(err, CQRS_EXIT_CONFIG, ev,
				  "newer than the newest version the upcasters know (%lld): "
				  "this release cannot read it",
				  (long long)newest);
	const char *data = ev->data;
	size_t len = ev->data_len;
	int k = 0;
	for (int64_t v = ev->event_version; v < newest; v++) {
		const struct upcaster *c = find(set, ev->event_type, v);
		if (c == NULL && set->shipped_missing != NULL)
			return event_fail(err, CQRS_EXIT_CONFIG, ev,
					  "no upcaster reads event_version %lld: the shipped "
					  "upcasters, %s, are missing (install cqrs-tools, or set "
					  "CQRS_SHAREDIR)",
					  (long long)v, set->shipped_missing);
		if (c == NULL)
			return event_fail(err, CQRS_EXIT_CONFIG, ev,
					  "no upcaster reads event_version %lld (the oldest "
					  "reads %lld)",
					  (long long)v, (long long)lowest);
		for (size_t i = 0; i < c->nsteps; i++) {
			const struct step *s = &c->steps[i];
			struct cqrs_strbuf *out = &u->buf[k];
			cqrs_strbuf_reset(out);
			cqrs_error e = { 0 };
			int rc = run_step(u, s, data, len, out, &e);
			if (rc == 0 && (out->oom || u->tmp.oom || u->scratch.oom))
				return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
			if (rc < 0)
				return e.code == CQRS_EXIT_DATAERR
					       ? event_fail(err, e.code, ev,
							    "the upcaster from event_version %lld "
							    "(%s:%d:%d) fails: %s",
							    (long long)v, c->file, s->line, s->col,
							    e.msg)
					       : cqrs_fail(err, e.code, "%s", e.msg);
			data = out->p;
			len = out->len;
			k = 1 - k;
		}
	}
	ev->data = data;
	ev->data_len = len;
	ev->event_version = newest;
	return 1;
}

/* --- the store's UPCAST stage ------------------------------------------ */

static int decode(void *ctx, cqrs_store *st, cqrs_event *ev, struct cqrs_strbuf *out,
		  cqrs_error *err)
{
	(void)st;
	cqrs_event up = *ev;
	int r = cqrs_upcaster_apply(ctx, &up, err);
	if (r <= 0)
		return r;
	cqrs_strbuf_put(out, up.data, up.data_len);
	if (out->oom)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	ev->data = out->p;
	ev->data_len = out->len;
	ev->event_version = up.event_version;
	return 0;
}

static void decoder_free(void *ctx)
{
	cqrs_upcaster_free(ctx);
}

int cqrs_upcast_attach(cqrs_store *st, cqrs_error *err)
{
	cqrs_upcaster *u = cqrs_upcaster_new(err);
	if (u == NULL)
		return -1;
	struct cqrs_decoder d = { .decode = decode, .free = decoder_free, .ctx = u };
	cqrs_store_set_decoder(st, CQRS_DECODE_UPCAST, &d);
	cqrs_store_set_form(st, CQRS_FORM_CURRENT);
	return 0;
}
