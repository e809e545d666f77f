/*
 * Projection files (cqrs-projection(5)): YAML that names each read model,
 * the tables it owns, and the SQL to run for each event type.
 *
 * The file is read with libyaml's event parser into a small tree that
 * keeps every node's line, so that each problem, from a YAML syntax error
 * to an unknown column in the third statement of a handler, is reported
 * as FILE:LINE.  Parameters such as :data.customer_id are rewritten to
 * numbered ones (?N) here, because SQLite's own named parameters stop at
 * the '.'.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <nettle/sha2.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "cqrs.h"
#include "common/sqlite_errors.h"
#include "common/strbuf.h"
#include "common/yaml.h"
#include "read/views_impl.h"
#include "banned.h"

#define MAX_NAME 64

static int oom(cqrs_error *err)
{
	return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
}

/* --- SQL statements and their parameters ---------------------------------- */

static const char *const root_names[PARAM_ROOT_COUNT] = {
	"sequence",   "event_id",      "aggregate_id", "aggregate_type", "aggregate_version",
	"event_type", "event_version", "timestamp",    "data",		 "metadata",
};

static bool ident_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool ident_char(char c)
{
	return ident_start(c) || (c >= '0' && c <= '9');
}

static void param_free(struct cqrs_param *p)
{
	for (size_t i = 0; i < p->npath; i++)
		free(p->path[i]);
	free(p->path);
	free(p->name);
}

/* The global index of parameter name (interned), or -1 with *err set. */
static long intern_param(cqrs_projections *ps, const char *name, size_t len, const char *where,
			 cqrs_error *err)
{
	for (size_t i = 0; i < ps->nparams; i++)
		if (strlen(ps->params[i].name) == len && memcmp(ps->params[i].name, name, len) == 0)
			return (long)i;
	const char *dot = memchr(name, '.', len);
	size_t rlen = dot != NULL ? (size_t)(dot - name) : len;
	int root = -1;
	for (int r = 0; r < PARAM_ROOT_COUNT; r++)
		if (strlen(root_names[r]) == rlen && memcmp(root_names[r], name, rlen) == 0)
			root = r;
	if (root < 0 || (dot != NULL && root != PARAM_DATA && root != PARAM_METADATA))
		return cqrs_fail(err, CQRS_EXIT_CONFIG,
				 "%s: unknown parameter ':%.*s' (known: :sequence, :event_id, "
				 ":aggregate_id, :aggregate_type, :aggregate_version, :event_type, "
				 ":event_version, :timestamp, :data, :data.FIELD, :metadata, "
				 ":metadata.FIELD)",
				 where, (int)len, name);
	struct cqrs_param p = { 0 };
	p.root = (enum cqrs_param_root)root;
	p.name = strndup(name, len);
	if (p.name == NULL)
		return oom(err);
	for (const char *s = dot; s != NULL && s < name + len;) {
		const char *seg = s + 1;
		const char *e = memchr(seg, '.', (size_t)(name + len - seg));
		if (e == NULL)
			e = name + len;
		char **np = realloc(p.path, (p.npath + 1) * sizeof *np);
		if (np == NULL || (np[p.npath] = strndup(seg, (size_t)(e - seg))) == NULL) {
			if (np != NULL)
				p.path = np;
			param_free(&p);
			return oom(err);
		}
		p.path = np;
		p.npath++;
		s = e < name + len ? e : NULL;
	}
	struct cqrs_param *np = realloc(ps->params, (ps->nparams + 1) * sizeof *np);
	if (np == NULL) {
		param_free(&p);
		return oom(err);
	}
	ps->params = np;
	ps->params[ps->nparams] = p;
	return (long)ps->nparams++;
}

/* Copies a quoted string, identifier or comment that starts at text[i]. */
static size_t skip_quoted(const char *t, size_t n, size_t i)
{
	char c = t[i];
	if (c == '-') { /* -- comment */
		while (i < n && t[i] != '\n')
			i++;
		return i;
	}
	if (c == '/') { /* block comment */
		i += 2;
		while (i + 1 < n && !(t[i] == '*' && t[i + 1] == '/'))
			i++;
		return i + 1 < n ? i + 2 : n;
	}
	char close = c == '[' ? ']' : c;
	for (i++; i < n; i++)
		if (t[i] == close)
			return i + 1; /* a doubled quote reads as two strings: same bytes */
	return n;
}

/* "FILE:LINE:COLUMN: what" for byte i of a statement's text as written */
static void where_at(char *buf, size_t cap, const struct cqrs_sql *s, const char *text, size_t i,
		     const char *what)
{
	int line = s->line, column = s->column;
	size_t bol = 0; /* where i's line starts in text */
	for (size_t k = 0; k < i; k++)
		if (text[k] == '\n') {
			line++;
			bol = k + 1;
		}
	if (s->literal)
		column += (int)(i - bol);
	else if (bol == 0) /* on the first line: the quote, if any, comes first */
		column += (int)i + (s->plain ? 0 : 1);
	if (!s->literal) /* a plain scalar's lines are folded: its start */
		line = s->line;
	snprintf(buf, cap, "%s:%d:%d: %s", s->file, line, column, what);
}

static int sql_init(cqrs_projections *ps, struct cqrs_sql *s, const struct cqrs_yaml_node *n,
		    const char *file, const char *what, struct sha256_ctx *md, cqrs_error *err)
{
	char where[512];
	memset(s, 0, sizeof *s);
	s->file = file;
	s->line = n->line;
	s->column = n->column;
	s->literal = n->literal;
	s->plain = n->plain;
	if (cqrs_yaml_want(n, CQRS_YAML_SCALAR, file, what, err) < 0)
		return -1;
	const char *t = n->text;
	size_t len = strlen(t), i = 0;
	bool blank = true;
	for (size_t k = 0; k < len; k++)
		if (t[k] != ' ' && t[k] != '\t' && t[k] != '\n' && t[k] != '\r' && t[k] != ';')
			blank = false;
	if (blank)
		return cqrs_yaml_fail(err, file, n, "%s: empty SQL statement", what);
	sha256_update(md, len + 1, (const uint8_t *)t);
	struct cqrs_strbuf out = { 0 };
	while (i < len) {
		char c = t[i];
		size_t from = i;
		if (c == '\'' || c == '"' || c == '`' || c == '[' ||
		    (c == '-' && t[i + 1] == '-') || (c == '/' && t[i + 1] == '*')) {
			i = skip_quoted(t, len, i);
			cqrs_strbuf_put(&out, t + from, i - from);
			if (out.oom)
				goto nomem;
			continue;
		}
		bool after_ident = i > 0 && ident_char(t[i - 1]);
		if ((c == '?' || c == '@' || c == '$') && !after_ident) {
			where_at(where, sizeof where, s, t, i, what);
			cqrs_fail(err, CQRS_EXIT_CONFIG,
				  "%s: use named parameters such as :data.customer_id, not '%c'",
				  where, c);
			goto fail;
		}
		if (c != ':' || !ident_start(t[i + 1])) {
			cqrs_strbuf_putc(&out, c);
			if (out.oom)
				goto nomem;
			i++;
			continue;
		}
		size_t start = ++i;
		while (i < len && ident_char(t[i]))
			i++;
		while (i + 1 < len && t[i] == '.' && ident_char(t[i + 1])) {
			i++;
			while (i < len && ident_char(t[i]))
				i++;
		}
		where_at(where, sizeof where, s, t, start - 1, what);
		long g = intern_param(ps, t + start, i - start, where, err);
		if (g < 0)
			goto fail;
		size_t k = 0;
		while (k < s->nparams && s->params[k] != (size_t)g)
			k++;
		if (k == s->nparams) {
			size_t *np = realloc(s->params, (s->nparams + 1) * sizeof *np);
			if (np == NULL)
				goto nomem;
			s->params = np;
			s->params[s->nparams++] = (size_t)g;
		}
		char num[16];
		int m = snprintf(num, sizeof num, "?%zu", k + 1);
		cqrs_strbuf_put(&out, num, (size_t)m);
		if (out.oom)
			goto nomem;
	}
	s->sql = out.p;
	return 0;
nomem:
	oom(err);
fail:
	free(out.p);
	free(s->params);
	s->params = NULL;
	s->nparams = 0;
	return -1;
}

static void sql_free(struct cqrs_sql *s)
{
	free(s->sql);
	free(s->params);
}

void cqrs_sql_where(const struct cqrs_sql *s, int offset, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s:%d:%d", s->file, cqrs_sql_line(s, offset), s->column);
}

int cqrs_sql_line(const struct cqrs_sql *s, int offset)
{
	int line = s->line;
	if (!s->literal || offset < 0)
		return line;
	for (int i = 0; i < offset && s->sql[i] != '\0'; i++)
		if (s->sql[i] == '\n')
			line++;
	return line;
}

/* --- the projection file -------------------------------------------------- */

static bool valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > MAX_NAME || !ident_start(s[0]))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!ident_char(s[i]))
			return false;
	return strncmp(s, "cqrs_", 5) != 0 && strncmp(s, "sqlite_", 7) != 0;
}

static void projection_free(struct cqrs_projection *p)
{
	for (size_t i = 0; i < p->ntables; i++)
		sql_free(&p->tables[i]);
	free(p->tables);
	for (size_t i = 0; i < p->non; i++) {
		for (size_t k = 0; k < p->on[i].nsql; k++)
			sql_free(&p->on[i].sql[k]);
		free(p->on[i].sql);
		free(p->on[i].event_type);
	}
	free(p->on);
	for (size_t i = 0; i < p->nowned; i++)
		free(p->owned[i]);
	free(p->owned);
	for (size_t i = 0; i < p->nviews; i++)
		free(p->views[i]);
	free(p->views);
	free(p->name);
}

/* A list of statements, or one statement on its own. */
static int sql_list(cqrs_projections *ps, const struct cqrs_yaml_node *n, const char *file,
		    const char *what, struct sha256_ctx *md, struct cqrs_sql **out, size_t *nout,
		    cqrs_error *err)
{
	const struct cqrs_yaml_node *const *items = (const struct cqrs_yaml_node *const *)&n;
	size_t count = 1;
	if (n->kind == CQRS_YAML_SEQ) {
		items = (const struct cqrs_yaml_node *const *)n->kids;
		count = n->nkids;
		if (count == 0)
			return cqrs_yaml_fail(err, file, n, "%s: empty list", what);
	}
	*out = calloc(count, sizeof **out);
	if (*out == NULL)
		return oom(err);
	for (size_t i = 0; i < count; i++) {
		if (sql_init(ps, &(*out)[i], items[i], file, what, md, err) < 0)
			return -1;
		(*nout)++;
	}
	return 0;
}

static int load_projection(cqrs_projections *ps, const struct cqrs_yaml_node *n, const char *file,
			   cqrs_error *err)
{
	if (cqrs_yaml_want(n, CQRS_YAML_MAP, file, "a projection", err) < 0)
		return -1;
	const struct cqrs_yaml_node *name = NULL, *tables = NULL, *on = NULL;
	for (size_t i = 0; i < n->nkids; i += 2) {
		const struct cqrs_yaml_node *k = n->kids[i], *v = n->kids[i + 1];
		if (strcmp(k->text, "name") == 0)
			name = v;
		else if (strcmp(k->text, "tables") == 0)
			tables = v;
		else if (strcmp(k->text, "on") == 0)
			on = v;
		else if (strcmp(k->text, "description") == 0) {
			if (cqrs_yaml_want(v, CQRS_YAML_SCALAR, file, "'description'", err) < 0)
				return -1;
		} else
			return cqrs_yaml_fail(err, file, k,
					      "unknown key '%s' in a projection (expected name, "
					      "description, tables, on)",
					      k->text);
	}
	if (name == NULL)
		return cqrs_yaml_fail(err, file, n, "projection without a 'name'");
	if (cqrs_yaml_want(name, CQRS_YAML_SCALAR, file, "'name'", err) < 0)
		return -1;
	if (!valid_name(name->text))
		return cqrs_yaml_fail(err, file, name,
				      "not a projection name: '%s' (a letter or '_', then "
				      "letters, digits or '_', at most %d, not starting cqrs_ or "
				      "sqlite_)",
				      name->text, MAX_NAME);
	for (size_t i = 0; i < ps->n; i++)
		if (strcmp(ps->p[i].name, name->text) == 0)
			return cqrs_yaml_fail(err, file, name,
					      "projection '%s' is already defined at %s:%d",
					      name->text, ps->p[i].file, ps->p[i].line);
	if (tables == NULL)
		return cqrs_yaml_fail(err, file, n,
				      "projection '%s' has no 'tables' (the CREATE statements "
				      "of its read model)",
				      name->text);
	if (on == NULL)
		return cqrs_yaml_fail(err, file, n,
				      "projection '%s' has no 'on' (what to do for each event "
				      "type)",
				      name->text);
	if (cqrs_yaml_want(on, CQRS_YAML_MAP, file, "'on'", err) < 0)
		return -1;
	if (on->nkids == 0)
		return cqrs_yaml_fail(err, file, on, "'on' names no event type");

	struct cqrs_projection *np = realloc(ps->p, (ps->n + 1) * sizeof *np);
	if (np == NULL)
		return oom(err);
	ps->p = np;
	struct cqrs_projection *p = &ps->p[ps->n++];
	memset(p, 0, sizeof *p);
	p->file = file;
	p->line = n->line;
	if ((p->name = strdup(name->text)) == NULL)
		return oom(err);

	struct sha256_ctx ctx, *md = &ctx;
	sha256_init(md);
	sha256_update(md, strlen(p->name) + 1, (const uint8_t *)p->name);
	char what[256];
	snprintf(what, sizeof what, "projection '%s', tables", p->name);
	int rc = sql_list(ps, tables, file, what, md, &p->tables, &p->ntables, err);
	if (rc == 0) {
		p->on = calloc(on->nkids / 2, sizeof *p->on);
		if (p->on == NULL)
			rc = oom(err);
	}
	for (size_t i = 0; rc == 0 && i < on->nkids; i += 2) {
		const struct cqrs_yaml_node *k = on->kids[i], *v = on->kids[i + 1];
		if (strcmp(k->text, "*") != 0 && !cqrs_type_name_valid(k->text, strlen(k->text))) {
			rc = cqrs_yaml_fail(err, file, k,
					    "not an event type: '%s' (or '*' for every event)",
					    k->text);
			break;
		}
		struct cqrs_handler *h = &p->on[p->non++];
		h->line = k->line;
		if ((h->event_type = strdup(k->text)) == NULL) {
			rc = oom(err);
			break;
		}
		sha256_update(md, strlen(h->event_type) + 1, (const uint8_t *)h->event_type);
		snprintf(what, sizeof what, "projection '%s', on %s", p->name, h->event_type);
		rc = sql_list(ps, v, file, what, md, &h->sql, &h->nsql, err);
	}
	uint8_t digest[SHA256_DIGEST_SIZE];
	sha256_digest(md, sizeof digest, digest);
	for (unsigned i = 0; i < SHA256_DIGEST_SIZE; i++)
		snprintf(p->hash + 2 * i, 3, "%02x", digest[i]);
	return rc;
}

cqrs_projections *cqrs_projections_new(void)
{
	cqrs_sqlite_setup();
	return calloc(1, sizeof(cqrs_projections));
}

int cqrs_projections_load(cqrs_projections *ps, const char *path, cqrs_error *err)
{
	char **nf = realloc(ps->files, (ps->nfiles + 1) * sizeof *nf);
	if (nf == NULL)
		return oom(err);
	ps->files = nf;
	if ((ps->files[ps->nfiles] = strdup(path)) == NULL)
		return oom(err);
	const char *file = ps->files[ps->nfiles++];
	ps->checked = false;

	FILE *f = cqrs_yaml_open(file, "projection file", err);
	if (f == NULL)
		return -1;
	struct cqrs_yaml_node *root = cqrs_yaml_load(f, file, "'projections:'", err);
	fclose(f);
	if (root == NULL)
		return -1;
	int rc = 0;
	const struct cqrs_yaml_node *list = NULL;
	if (root->kind != CQRS_YAML_MAP) {
		rc = cqrs_yaml_fail(err, file, root,
				    "expected a mapping with the key 'projections'");
		goto out;
	}
	for (size_t i = 0; i < root->nkids; i += 2) {
		if (strcmp(root->kids[i]->text, "projections") != 0) {
			rc = cqrs_yaml_fail(err, file, root->kids[i],
					    "unknown key '%s' (expected 'projections')",
					    root->kids[i]->text);
			goto out;
		}
		list = root->kids[i + 1];
	}
	if (list == NULL) {
		rc = cqrs_yaml_fail(err, file, root, "no 'projections' list");
		goto out;
	}
	if ((rc = cqrs_yaml_want(list, CQRS_YAML_SEQ, file, "'projections'", err)) < 0)
		goto out;
	if (list->nkids == 0) {
		rc = cqrs_yaml_fail(err, file, list, "'projections' is empty");
		goto out;
	}
	for (size_t i = 0; i < list->nkids && rc == 0; i++)
		rc = load_projection(ps, list->kids[i], file, err);
out:
	cqrs_yaml_free(root);
	return rc;
}

size_t cqrs_projections_count(const cqrs_projections *ps)
{
	return ps->n;
}

const char *cqrs_projections_name(const cqrs_projections *ps, size_t i)
{
	return i < ps->n ? ps->p[i].name : NULL;
}

void cqrs_projections_free(cqrs_projections *ps)
{
	if (ps == NULL)
		return;
	for (size_t i = 0; i < ps->n; i++)
		projection_free(&ps->p[i]);
	free(ps->p);
	for (size_t i = 0; i < ps->nparams; i++)
		param_free(&ps->params[i]);
	free(ps->params);
	for (size_t i = 0; i < ps->nfiles; i++)
		free(ps->files[i]);
	free(ps->files);
	free(ps);
}

/* --- compiling the SQL ------------------------------------------------------ */

/*
 * The sandbox.  What a statement may do is decided from SQLite's own parse:
 * the authorizer sees every table, index and trigger a statement touches,
 * including what the triggers it fires do.  A projection's 'tables' may
 * create tables, views, indexes and triggers of new names, put indexes and
 * triggers only on its own tables, and insert fixed rows into its own
 * tables; its 'on' handlers may read anything and change only its own
 * tables.  Nothing else: no ATTACH, no PRAGMA, no DROP or ALTER, no writes
 * to another projection's tables or to cqrs_checkpoints.  VACUUM is never
 * shown to the authorizer, so a statement must also have been reported
 * doing something allowed: one the authorizer never heard of is refused.
 */
struct names {
	char **v;
	size_t n;
};

struct auth {
	const struct cqrs_projection *p;
	bool ddl;
	struct names *mine;	      /* names its 'tables' created so far (ddl) */
	const struct names *existing; /* names in the file before its 'tables' */
	bool acted;		      /* an allowed action was reported */
	char index[MAX_NAME + 1];     /* the index a CREATE INDEX creates */
	char reason[256];
	bool oom; /* a refusal that is ours: out of memory, not the SQL's fault */
};

static bool names_has(const struct names *ns, const char *name)
{
	for (size_t i = 0; ns != NULL && i < ns->n; i++)
		if (strcmp(ns->v[i], name) == 0)
			return true;
	return false;
}

static void names_clear(struct names *ns)
{
	for (size_t i = 0; i < ns->n; i++)
		free(ns->v[i]);
	free(ns->v);
	ns->v = NULL;
	ns->n = 0;
}

static int names_add(struct names *ns, const char *name)
{
	char **nv = realloc(ns->v, (ns->n + 1) * sizeof *nv);
	if (nv == NULL)
		return -1;
	ns->v = nv;
	if ((nv[ns->n] = strdup(name)) == NULL)
		return -1;
	ns->n++;
	return 0;
}

static const struct cqrs_projection *owner_of(const cqrs_projections *ps, const char *table)
{
	for (size_t i = 0; ps != NULL && i < ps->n; i++)
		for (size_t k = 0; k < ps->p[i].nowned; k++)
			if (strcmp(ps->p[i].owned[k], table) == 0)
				return &ps->p[i];
	return NULL;
}

static bool owns(const struct auth *au, const char *table)
{
	for (size_t k = 0; k < au->p->nowned; k++)
		if (strcmp(au->p->owned[k], table) == 0)
			return true;
	return au->ddl && names_has(au->mine, table);
}

static int deny(struct auth *au, const char *fmt, ...) CQRS_PRINTF(2, 3);

/* The first reason wins: it names what SQLite refused first. */
static int deny(struct auth *au, const char *fmt, ...)
{
	if (au->reason[0] == '\0') {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(au->reason, sizeof au->reason, fmt, ap);
		va_end(ap);
	}
	return SQLITE_DENY;
}

static int deny_oom(struct auth *au)
{
	au->oom = true;
	return deny(au, "out of memory");
}

static bool schema_table(const char *name)
{
	/* SQLite reports its own schema updates of a CREATE, and of a
	 * table-valued function such as json_each, as writes of the schema
	 * table; a statement cannot write it itself (no writable_schema: the
	 * connection is defensive and PRAGMA is refused) */
	return strcmp(name, "sqlite_master") == 0 || strcmp(name, "sqlite_temp_master") == 0;
}

static int authorize_write(struct auth *au, const char *table, const char *db)
{
	if (table == NULL)
		return deny(au, "writes a table it does not name");
	if (schema_table(table))
		return SQLITE_OK;
	if (db != NULL && strcmp(db, "main") != 0)
		return deny(au, "writes the attached database '%s'", db);
	if (strncmp(table, "cqrs_", 5) == 0)
		return deny(au, "table '%s' belongs to cqrs-project", table);
	if (strncmp(table, "sqlite_", 7) == 0)
		return deny(au, "table '%s' belongs to SQLite", table);
	if (!owns(au, table)) {
		const struct cqrs_projection *o = owner_of(au->p->set, table);
		if (o != NULL && o != au->p) {
			snprintf(au->reason, sizeof au->reason,
				 "writes table '%s', which projection '%s' owns (a projection "
				 "writes only the tables it creates)",
				 table, o->name);
			return SQLITE_DENY;
		}
		return deny(au, "writes table '%s', which no projection creates", table);
	}
	au->acted = true;
	return SQLITE_OK;
}

/* CREATE TABLE, VIEW, INDEX or TRIGGER name (on table, for the last two) */
static int authorize_create(struct auth *au, int action, const char *name, const char *table,
			    const char *db)
{
	if (!au->ddl)
		return deny(au, "CREATE belongs in 'tables', not in 'on'");
	if (db != NULL && strcmp(db, "main") != 0)
		return deny(au, "creates in the attached database '%s'", db);
	if (name == NULL || strncmp(name, "cqrs_", 5) == 0)
		return deny(au, "the names cqrs_* are reserved: '%s'", name ? name : "");
	/* SQLite's own (sqlite_autoindex_*, sqlite_sequence), which it
	 * creates for a table; nobody else may use such a name */
	if (strncmp(name, "sqlite_", 7) == 0)
		return SQLITE_OK;
	const struct cqrs_projection *o = owner_of(au->p->set, name);
	if (names_has(au->existing, name) || (o != NULL && o != au->p))
		return deny(au,
			    "'%s' already exists in the views: a projection creates only "
			    "tables of its own, under new names",
			    name);
	bool on_table = action == SQLITE_CREATE_INDEX || action == SQLITE_CREATE_TRIGGER;
	if (on_table && (table == NULL || !owns(au, table))) {
		snprintf(au->reason, sizeof au->reason,
			 "puts %s on table '%s', which it does not create (a projection "
			 "indexes and triggers only its own tables)",
			 action == SQLITE_CREATE_INDEX ? "an index" : "a trigger",
			 table != NULL ? table : "");
		return SQLITE_DENY;
	}
	if (action == SQLITE_CREATE_INDEX)
		snprintf(au->index, sizeof au->index, "%s", name);
	if (names_add(au->mine, name) < 0)
		return deny_oom(au);
	au->acted = true;
	return SQLITE_OK;
}

static int authorize(void *arg, int action, const char *a1, const char *a2, const char *db,
		     const char *trigger)
{
	struct auth *au = arg;
	(void)trigger; /* what a trigger does is checked as if written here */
	switch (action) {
	case SQLITE_SELECT:
		if (!au->ddl)
			au->acted = true;
		return SQLITE_OK;
	case SQLITE_READ:
	case SQLITE_RECURSIVE: return SQLITE_OK;
	case SQLITE_FUNCTION:
		/* it returns a pointer into this process's memory */
		if (a2 != NULL && sqlite3_stricmp(a2, "fts3_tokenizer") == 0)
			return deny(au, "the function %s() is not allowed", a2);
		return SQLITE_OK;
	case SQLITE_INSERT:
	case SQLITE_UPDATE:
	case SQLITE_DELETE: return authorize_write(au, a1, db);
	case SQLITE_CREATE_TABLE:
	case SQLITE_CREATE_VIEW: return authorize_create(au, action, a1, NULL, db);
	case SQLITE_CREATE_INDEX:
	case SQLITE_CREATE_TRIGGER: return authorize_create(au, action, a1, a2, db);
	case SQLITE_REINDEX: /* what CREATE UNIQUE INDEX asks for, of itself */
		if (au->ddl && a1 != NULL && strcmp(a1, au->index) == 0)
			return SQLITE_OK;
		return deny(au, "REINDEX is not allowed");
	case SQLITE_CREATE_TEMP_TABLE:
	case SQLITE_CREATE_TEMP_INDEX:
	case SQLITE_CREATE_TEMP_VIEW:
	case SQLITE_CREATE_TEMP_TRIGGER:
		return deny(au, "TEMP objects are not kept: create ordinary tables");
	case SQLITE_TRANSACTION:
	case SQLITE_SAVEPOINT:
		return deny(au, "transactions belong to cqrs-project, which commits each batch "
				"with its checkpoint");
	case SQLITE_ATTACH:
	case SQLITE_DETACH: return deny(au, "ATTACH and DETACH are not allowed");
	case SQLITE_PRAGMA: return deny(au, "PRAGMA %s is not allowed", a1 ? a1 : "");
	default:
		return deny(au,
			    au->ddl ? "only CREATE TABLE, INDEX, VIEW and TRIGGER (and INSERT "
				      "of fixed rows) belong in 'tables'"
				    : "only INSERT, UPDATE, DELETE and SELECT may run on an event");
	}
}

static bool only_blank(const char *s)
{
	for (;;) {
		while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == ';')
			s++;
		if (s[0] == '-' && s[1] == '-') {
			while (*s != '\0' && *s != '\n')
				s++;
		} else if (s[0] == '/' && s[1] == '*') {
			const char *e = strstr(s + 2, "*/");
			if (e == NULL)
				return true;
			s = e + 2;
		} else {
			return *s == '\0';
		}
	}
}

static int prepare_one(sqlite3 *db, struct auth *au, const char *what, const struct cqrs_sql *s,
		       sqlite3_stmt **out, cqrs_error *err)
{
	const char *tail = NULL;
	sqlite3_set_authorizer(db, authorize, au);
	int rc = sqlite3_prepare_v3(db, s->sql, -1, au->ddl ? 0 : SQLITE_PREPARE_PERSISTENT, out,
				    &tail);
	sqlite3_set_authorizer(db, NULL, NULL);
	char where[PATH_MAX + 64];
	if (rc != SQLITE_OK && au->oom)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	if (rc != SQLITE_OK) {
		cqrs_sql_where(s, sqlite3_error_offset(db), where, sizeof where);
		return cqrs_fail(err, cqrs_sqlite_statement_code(rc, CQRS_EXIT_CONFIG),
				 "%s: %s: %s", where, what,
				 au->reason[0] != '\0' ? au->reason : sqlite3_errmsg(db));
	}
	if (*out == NULL) {
		cqrs_sql_where(s, -1, where, sizeof where);
		return cqrs_fail(err, CQRS_EXIT_CONFIG, "%s: %s: empty SQL statement", where, what);
	}
	const char *refused = NULL;
	if (tail != NULL && !only_blank(tail))
		refused = "one SQL statement per list item (start another item with '- ')";
	else if (sqlite3_stmt_isexplain(*out))
		refused = "EXPLAIN is not allowed";
	else if (!au->acted) /* VACUUM, for one: never shown to the authorizer */
		refused = au->ddl ? "only CREATE TABLE, INDEX, VIEW and TRIGGER (and INSERT of "
				    "fixed rows) belong in 'tables'"
				  : "only INSERT, UPDATE, DELETE and SELECT may run on an event";
	if (refused != NULL) {
		cqrs_sql_where(s, tail != NULL && !only_blank(tail) ? (int)(tail - s->sql) : -1,
			       where, sizeof where);
		sqlite3_finalize(*out);
		*out = NULL;
		return cqrs_fail(err, CQRS_EXIT_CONFIG, "%s: %s: %s", where, what, refused);
	}
	return 0;
}

int cqrs_projection_prepare(sqlite3 *db, const struct cqrs_projection *p,
			    const struct cqrs_handler *h, const struct cqrs_sql *s,
			    sqlite3_stmt **out, cqrs_error *err)
{
	char what[256];
	snprintf(what, sizeof what, "projection '%s', on %s", p->name, h->event_type);
	struct auth au = { .p = p };
	return prepare_one(db, &au, what, s, out, err);
}

/* The names of the tables, views, indexes and triggers in main. */
static int schema_names(sqlite3 *db, const char *type, struct names *ns)
{
	sqlite3_stmt *st;
	memset(ns, 0, sizeof *ns);
	if (sqlite3_prepare_v2(db,
			       "SELECT name FROM main.sqlite_schema WHERE ?1 IS NULL OR type = ?1",
			       -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if (names_add(ns, (const char *)sqlite3_column_text(st, 0)) < 0) {
			rc = SQLITE_NOMEM;
			break;
		}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		names_clear(ns);
		return -1;
	}
	return 0;
}

/* Creates p's tables; *created (if not NULL) receives the names created. */
static int projection_create(sqlite3 *db, const struct cqrs_projection *p, struct names *created,
			     cqrs_error *err)
{
	char what[256];
	snprintf(what, sizeof what, "projection '%s', tables", p->name);
	struct names existing, mine = { 0 };
	/* SQLite's error, or (none) the list's own allocation failed */
	if (schema_names(db, NULL, &existing) < 0)
		return cqrs_views_db_error(db, "views",
					   sqlite3_errcode(db) != SQLITE_OK ? sqlite3_errcode(db)
									    : SQLITE_NOMEM,
					   "cannot read the schema", err);
	int rc = 0;
	for (size_t i = 0; i < p->ntables && rc == 0; i++) {
		struct auth au = { .p = p, .ddl = true, .mine = &mine, .existing = &existing };
		sqlite3_stmt *st;
		if (prepare_one(db, &au, what, &p->tables[i], &st, err) < 0) {
			rc = -1;
			break;
		}
		int r = sqlite3_step(st);
		if (r != SQLITE_DONE) {
			char where[PATH_MAX + 64];
			cqrs_sql_where(&p->tables[i], -1, where, sizeof where);
			rc = cqrs_fail(err, cqrs_sqlite_statement_code(r, CQRS_EXIT_CONFIG),
				       "%s: %s: %s", where, what, sqlite3_errmsg(db));
		}
		sqlite3_finalize(st);
	}
	names_clear(&existing);
	if (rc == 0 && created != NULL)
		*created = mine;
	else
		names_clear(&mine);
	return rc;
}

int cqrs_projection_create(sqlite3 *db, const struct cqrs_projection *p, cqrs_error *err)
{
	return projection_create(db, p, NULL, err);
}

/* Compiles every statement against an empty in-memory database: a bad
 * column or a write to another projection's table is reported before
 * anything is changed. */
int cqrs_projections_check(cqrs_projections *ps, cqrs_error *err)
{
	sqlite3 *db;
	if (sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
		    SQLITE_OK ||
	    cqrs_sql_register_functions(db) < 0) {
		sqlite3_close(db);
		return oom(err);
	}
	cqrs_views_harden(db);
	sqlite3_exec(db, cqrs_views_meta_schema(), NULL, NULL, NULL);
	int rc = 0;
	ps->checked = false;
	for (size_t i = 0; i < ps->n; i++) {
		struct cqrs_projection *p = &ps->p[i];
		for (size_t k = 0; k < p->nowned; k++)
			free(p->owned[k]);
		free(p->owned);
		p->owned = NULL;
		p->nowned = 0;
		for (size_t k = 0; k < p->nviews; k++)
			free(p->views[k]);
		free(p->views);
		p->views = NULL;
		p->nviews = 0;
		p->set = ps;
	}
	for (size_t i = 0; i < ps->n && rc == 0; i++) {
		struct cqrs_projection *p = &ps->p[i];
		struct names created, tables, views;
		rc = projection_create(db, p, &created, err);
		if (rc < 0)
			break;
		/* it owns the tables it created (not its indexes and triggers:
		 * those are not written); a rebuild drops its views too */
		if (schema_names(db, "table", &tables) < 0 ||
		    schema_names(db, "view", &views) < 0) {
			names_clear(&created);
			names_clear(&tables);
			rc = oom(err);
			break;
		}
		for (size_t k = 0; k < created.n && rc == 0; k++) {
			bool table = names_has(&tables, created.v[k]);
			if (!table && !names_has(&views, created.v[k]))
				continue;
			char ***list = table ? &p->owned : &p->views;
			size_t *n = table ? &p->nowned : &p->nviews;
			char **no = realloc(*list, (*n + 1) * sizeof *no);
			if (no == NULL) {
				rc = oom(err);
				break;
			}
			*list = no;
			no[(*n)++] = created.v[k];
			created.v[k] = NULL;
		}
		names_clear(&created);
		names_clear(&tables);
		names_clear(&views);
		if (rc == 0 && p->nowned == 0) {
			char where[PATH_MAX + 64];
			cqrs_sql_where(&p->tables[0], -1, where, sizeof where);
			rc = cqrs_fail(err, CQRS_EXIT_CONFIG,
				       "%s: projection '%s': 'tables' creates no table", where,
				       p->name);
		}
	}
	for (size_t i = 0; i < ps->n && rc == 0; i++) {
		const struct cqrs_projection *p = &ps->p[i];
		for (size_t h = 0; h < p->non && rc == 0; h++)
			for (size_t k = 0; k < p->on[h].nsql && rc == 0; k++) {
				sqlite3_stmt *st = NULL;
				rc = cqrs_projection_prepare(db, p, &p->on[h], &p->on[h].sql[k],
							     &st, err);
				sqlite3_finalize(st);
			}
	}
	ps->checked = rc == 0;
	sqlite3_close(db);
	return rc;
}

void cqrs_projections_describe(const cqrs_projections *ps, FILE *out)
{
	for (size_t i = 0; i < ps->n; i++) {
		const struct cqrs_projection *p = &ps->p[i];
		fputs("{\"projection\":", out);
		cqrs_json_write_string(out, p->name, strlen(p->name));
		fputs(",\"file\":", out);
		cqrs_json_write_string(out, p->file, strlen(p->file));
		fprintf(out, ",\"line\":%d,\"tables\":[", p->line);
		for (size_t k = 0; k < p->nowned; k++) {
			if (k > 0)
				fputc(',', out);
			cqrs_json_write_string(out, p->owned[k], strlen(p->owned[k]));
		}
		fputs("],\"events\":[", out);
		for (size_t k = 0; k < p->non; k++) {
			if (k > 0)
				fputc(',', out);
			cqrs_json_write_string(out, p->on[k].event_type,
					       strlen(p->on[k].event_type));
		}
		fprintf(out, "],\"definition\":\"%s\"}\n", p->hash);
	}
}
