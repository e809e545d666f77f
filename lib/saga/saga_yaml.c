/*
 * Saga definitions from YAML (cqrs-saga(5)), checked whole before any
 * saga runs: an unknown key, a missing field or a bad duration is an
 * error that names the file, line and column, exit 78 (common/yaml.h).
 */
#include "config.h"

#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/yaml.h"
#include "saga/saga_impl.h"
#include "banned.h"

#define DEFAULT_TIMEOUT_US  (30LL * 1000000)
#define DEFAULT_ATTEMPTS    3
#define DEFAULT_BACKOFF_US  (1LL * 1000000)
#define DEFAULT_MAXBACK_US  (300LL * 1000000)
#define DEFAULT_BRK_FAILS   5
#define DEFAULT_BRK_COOL_US (60LL * 1000000)

/* Every node below comes from the one YAML loader (common/yaml.h). */
typedef const struct cqrs_yaml_node ynode;

struct loader {
	const char *path;
	cqrs_error *err;
};

static int bad(struct loader *l, ynode *n, const char *fmt, ...) CQRS_PRINTF(3, 4);

static int bad(struct loader *l, ynode *n, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return cqrs_yaml_fail(l->err, l->path, n, "%s", msg);
}

static int oom(struct loader *l)
{
	return cqrs_fail(l->err, CQRS_EXIT_OSERR, "out of memory");
}

static const char *scalar(ynode *n)
{
	return n != NULL && n->kind == CQRS_YAML_SCALAR ? n->text : NULL;
}

static ynode *get(ynode *map, const char *key)
{
	return cqrs_yaml_get(map, key);
}

/* A list's items, or *n as the only item: where one value or a list of
 * them will do (emit, goal, a goal's event_type).  *n must outlive the
 * result. */
static ynode *const *one_or_list(ynode *const *n, size_t *count)
{
	if ((*n)->kind == CQRS_YAML_SEQ) {
		*count = (*n)->nkids;
		return (ynode *const *)(*n)->kids;
	}
	*count = 1;
	return n;
}

static bool valid_name(const char *s)
{
	if (s == NULL || *s == '\0' || strlen(s) > 64)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '.'))
			return false;
	return true;
}

/* Checks that map is a mapping and every key of it is one of allowed
 * ("|a|b|c|"); the loader has already refused keys that are not text
 * and keys given twice. */
static int check_keys(struct loader *l, ynode *map, const char *what, const char *allowed)
{
	if (cqrs_yaml_want(map, CQRS_YAML_MAP, l->path, what, l->err) < 0)
		return -1;
	for (size_t i = 0; i + 1 < map->nkids; i += 2) {
		ynode *k = map->kids[i];
		char pat[80];
		snprintf(pat, sizeof pat, "|%s|", k->text);
		if (strstr(allowed, pat) == NULL)
			return bad(l, k, "%s: unknown key '%s'", what, k->text);
	}
	return 0;
}

static int get_string(struct loader *l, ynode *map, const char *key, bool required, char **out)
{
	ynode *n = get(map, key);
	if (n == NULL) {
		if (required)
			return bad(l, map, "missing key '%s'", key);
		return 0;
	}
	const char *s = scalar(n);
	if (s == NULL || *s == '\0')
		return bad(l, n, "'%s' must be a non-empty string", key);
	if ((*out = strdup(s)) == NULL)
		return oom(l);
	return 0;
}

static int get_duration(struct loader *l, ynode *map, const char *key, int64_t *out)
{
	ynode *n = get(map, key);
	if (n == NULL)
		return 0;
	int64_t v = saga_duration_parse(scalar(n));
	if (v < 0)
		return bad(l, n, "'%s' must be a duration such as 500ms, 30s, 5m, 2h or 1d", key);
	*out = v;
	return 0;
}

static int get_count(struct loader *l, ynode *map, const char *key, int64_t min, int64_t *out)
{
	ynode *n = get(map, key);
	if (n == NULL)
		return 0;
	int64_t v;
	if (cqrs_parse_int64(scalar(n), &v) < 0 || v < min || v > 1000000)
		return bad(l, n, "'%s' must be a whole number from %lld", key, (long long)min);
	*out = v;
	return 0;
}

/* --- templates from YAML nodes ------------------------------------------------------ */

static bool json_number(const char *s)
{
	const char *p = s;
	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (*p >= '0' && *p <= '9')
			p++;
	else
		return false;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (*p < '0' || *p > '9')
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	return *p == '\0';
}

static struct tpl *new_tpl(struct loader *l, enum tpl_kind kind, ynode *n)
{
	struct tpl *t = calloc(1, sizeof *t);
	if (t == NULL) {
		oom(l);
		return NULL;
	}
	t->kind = kind;
	t->line = n->line;
	return t;
}

/* A scalar: a ${path} of its own (the value there, of any JSON type), text
 * with ${path}s in it, or a literal; plain true, false, null, ~ and
 * numbers are JSON's, everything else is a string. */
static struct tpl *scalar_tpl(struct loader *l, ynode *n)
{
	const char *s = n->text;
	struct tpl *t;
	const char *open = strstr(s, "${");
	if (open != NULL) {
		const char *close = strchr(open, '}');
		if (close == NULL || close == open + 2) {
			bad(l, n, "unterminated or empty ${} in '%s'", s);
			return NULL;
		}
		bool whole = open == s && close[1] == '\0' && strstr(open + 2, "${") == NULL;
		if ((t = new_tpl(l, whole ? TPL_REF : TPL_STRING, n)) == NULL)
			return NULL;
		t->text = whole ? strndup(s + 2, (size_t)(close - s - 2)) : strdup(s);
	} else {
		if ((t = new_tpl(l, TPL_LITERAL, n)) == NULL)
			return NULL;
		if (n->plain && (strcmp(s, "true") == 0 || strcmp(s, "false") == 0 ||
				 strcmp(s, "null") == 0 || json_number(s))) {
			t->text = strdup(s);
		} else if (n->plain && (strcmp(s, "~") == 0 || *s == '\0')) {
			t->text = strdup("null");
		} else {
			struct cqrs_strbuf b = { 0 };
			cqrs_strbuf_json_string(&b, s, strlen(s));
			t->text = b.oom ? NULL : strdup(cqrs_strbuf_str(&b));
			cqrs_strbuf_free(&b);
		}
	}
	if (t->text == NULL) {
		tpl_free(t);
		oom(l);
		return NULL;
	}
	return t;
}

static struct tpl *to_tpl(struct loader *l, ynode *n, int depth);

/* A list or a mapping, item by item. */
static struct tpl *collection_tpl(struct loader *l, ynode *n, int depth)
{
	bool map = n->kind == CQRS_YAML_MAP;
	size_t count = map ? n->nkids / 2 : n->nkids;
	struct tpl *t = new_tpl(l, map ? TPL_OBJECT : TPL_ARRAY, n);
	if (t == NULL)
		return NULL;
	t->items = calloc(count + 1, sizeof *t->items);
	t->keys = map ? calloc(count + 1, sizeof *t->keys) : NULL;
	if (t->items == NULL || (map && t->keys == NULL)) {
		tpl_free(t);
		oom(l);
		return NULL;
	}
	for (size_t i = 0; i < count; i++) {
		t->n = i + 1;
		if (map && (t->keys[i] = strdup(n->kids[2 * i]->text)) == NULL) {
			tpl_free(t);
			oom(l);
			return NULL;
		}
		t->items[i] = to_tpl(l, map ? n->kids[2 * i + 1] : n->kids[i], depth + 1);
		if (t->items[i] == NULL) {
			tpl_free(t);
			return NULL;
		}
	}
	return t;
}

static struct tpl *to_tpl(struct loader *l, ynode *n, int depth)
{
	if (depth > 32) {
		bad(l, n, "template nested too deeply");
		return NULL;
	}
	return n->kind == CQRS_YAML_SCALAR ? scalar_tpl(l, n) : collection_tpl(l, n, depth);
}

static int get_tpl(struct loader *l, ynode *map, const char *key, struct tpl **out)
{
	ynode *n = get(map, key);
	if (n == NULL)
		return 0;
	*out = to_tpl(l, n, 0);
	return *out != NULL ? 0 : -1;
}

/* --- actions and steps -------------------------------------------------------------- */

static int load_retry(struct loader *l, ynode *map, struct saga_retry *r)
{
	ynode *n = get(map, "retry");
	if (n == NULL)
		return 0;
	if (check_keys(l, n, "retry", "|max_attempts|backoff|max_backoff|") < 0 ||
	    get_count(l, n, "max_attempts", 1, &r->max_attempts) < 0 ||
	    get_duration(l, n, "backoff", &r->backoff_us) < 0 ||
	    get_duration(l, n, "max_backoff", &r->max_backoff_us) < 0)
		return -1;
	if (r->max_backoff_us < r->backoff_us)
		r->max_backoff_us = r->backoff_us;
	return 0;
}

static int load_breaker(struct loader *l, ynode *map, struct saga_breaker *b)
{
	ynode *n = get(map, "breaker");
	if (n == NULL)
		return 0;
	const char *s = scalar(n);
	if (s != NULL && (strcmp(s, "off") == 0 || strcmp(s, "false") == 0)) {
		b->failures = 0;
		return 0;
	}
	char *name = NULL;
	if (check_keys(l, n, "breaker", "|name|failures|cooldown|") < 0 ||
	    get_string(l, n, "name", false, &name) < 0 ||
	    get_count(l, n, "failures", 1, &b->failures) < 0 ||
	    get_duration(l, n, "cooldown", &b->cooldown_us) < 0)
		return -1;
	if (name != NULL) {
		free(b->name);
		b->name = name;
	}
	return 0;
}

#define ACTION_KEYS "|run|input|timeout|for_each|command|accept_rejected|emit|retry|breaker|"

/* run: [program, arguments...], never a shell command line */
static int load_run(struct loader *l, ynode *run, const char *what, struct saga_action *a)
{
	if (run->kind != CQRS_YAML_SEQ || run->nkids == 0)
		return bad(l, run, "%s: 'run' must be a list: program and arguments", what);
	a->argv = calloc(run->nkids + 1, sizeof *a->argv);
	if (a->argv == NULL)
		return oom(l);
	for (size_t i = 0; i < run->nkids; i++) {
		ynode *arg = run->kids[i];
		const char *s = scalar(arg);
		if (s == NULL || (i == 0 && *s == '\0'))
			return bad(l, arg, "%s: 'run' arguments must be strings", what);
		if ((a->argv[i] = strdup(s)) == NULL)
			return oom(l);
		a->argc = i + 1;
	}
	return 0;
}

/* emit: one event template or a list of them */
static int load_emit(struct loader *l, ynode *emit, struct saga_action *a)
{
	size_t n;
	ynode *const *items = one_or_list(&emit, &n);
	a->emit = calloc(n, sizeof *a->emit);
	if (a->emit == NULL)
		return oom(l);
	for (size_t i = 0; i < n; i++) {
		ynode *e = items[i];
		if (check_keys(l, e, "emit", "|aggregate_type|aggregate_id|event_type|data|") < 0)
			return -1;
		for (const char *const *k = (const char *const[]){ "aggregate_type", "aggregate_id",
								   "event_type", NULL };
		     *k; k++)
			if (get(e, *k) == NULL)
				return bad(l, e, "emit: missing key '%s'", *k);
		if ((a->emit[i] = to_tpl(l, e, 0)) == NULL)
			return -1;
		a->nemit = i + 1;
	}
	return 0;
}

static int load_action(struct loader *l, ynode *map, const char *what,
		       const struct saga_action *defaults, struct saga_action *a)
{
	a->present = true;
	a->line = map->line;
	a->timeout_us = defaults->timeout_us;
	a->retry = defaults->retry;
	a->breaker = defaults->breaker;
	a->breaker.name = NULL;
	/* without its copy the action would have no breaker, silently */
	if (defaults->breaker.name != NULL &&
	    (a->breaker.name = strdup(defaults->breaker.name)) == NULL)
		return oom(l);
	ynode *run = get(map, "run");
	if (run != NULL && load_run(l, run, what, a) < 0)
		return -1;
	if (get_tpl(l, map, "input", &a->input) < 0 ||
	    get_duration(l, map, "timeout", &a->timeout_us) < 0 ||
	    get_tpl(l, map, "for_each", &a->for_each) < 0 ||
	    get_tpl(l, map, "command", &a->command) < 0 || load_retry(l, map, &a->retry) < 0 ||
	    load_breaker(l, map, &a->breaker) < 0)
		return -1;
	ynode *ar = get(map, "accept_rejected");
	if (ar != NULL) {
		const char *v = scalar(ar);
		if (v == NULL || (strcmp(v, "true") != 0 && strcmp(v, "false") != 0))
			return bad(l, ar, "%s: 'accept_rejected' is true or false", what);
		a->accept_rejected = strcmp(v, "true") == 0;
		if (a->command == NULL)
			return bad(l, ar, "%s: 'accept_rejected' needs 'command'", what);
	}
	if (a->input != NULL && a->argv == NULL)
		return bad(l, get(map, "input"), "%s: 'input' needs 'run'", what);
	if (a->for_each != NULL && a->command == NULL)
		return bad(l, get(map, "for_each"), "%s: 'for_each' needs 'command'", what);
	if (a->for_each != NULL && a->for_each->kind != TPL_REF)
		return bad(l, get(map, "for_each"), "%s: 'for_each' must be one ${path}", what);
	if (a->command != NULL && a->command->kind != TPL_OBJECT)
		return bad(l, get(map, "command"), "%s: 'command' must be a mapping", what);
	if (a->timeout_us <= 0)
		return bad(l, get(map, "timeout"), "%s: 'timeout' must be positive", what);
	ynode *emit = get(map, "emit");
	if (emit != NULL && load_emit(l, emit, a) < 0)
		return -1;
	if (a->argv == NULL && a->command == NULL && a->nemit == 0)
		return bad(l, map, "%s: needs at least one of 'run', 'command' or 'emit'", what);
	return 0;
}

static void free_action(struct saga_action *a)
{
	for (size_t i = 0; i < a->argc; i++)
		free(a->argv[i]);
	free(a->argv);
	tpl_free(a->input);
	tpl_free(a->for_each);
	tpl_free(a->command);
	for (size_t i = 0; i < a->nemit; i++)
		tpl_free(a->emit[i]);
	free(a->emit);
	free(a->breaker.name);
}

/* A match mapping (wait, goal): its keys name what an event must have. */
static int check_match(struct loader *l, ynode *parent, const char *what, const struct tpl *m)
{
	if (m == NULL)
		return 0;
	if (m->kind != TPL_OBJECT)
		return bad(l, get(parent, "match"), "%s: 'match' must be a mapping", what);
	for (size_t i = 0; i < m->n; i++) {
		const char *k = m->keys[i];
		if (strcmp(k, "aggregate_id") != 0 && strcmp(k, "correlation_id") != 0 &&
		    strncmp(k, "data.", 5) != 0)
			return bad(l, get(parent, "match"),
				   "%s: match key '%s' is none of aggregate_id, "
				   "correlation_id, data.FIELD",
				   what, k);
	}
	return 0;
}

static int load_wait(struct loader *l, ynode *w, struct saga_step *s)
{
	s->is_wait = true;
	if (check_keys(l, w, "wait", "|event_type|aggregate_type|match|deadline|") < 0 ||
	    get_string(l, w, "event_type", true, &s->wait_event_type) < 0 ||
	    get_string(l, w, "aggregate_type", false, &s->wait_aggregate_type) < 0 ||
	    get_tpl(l, w, "match", &s->wait_match) < 0)
		return -1;
	if (get(w, "deadline") == NULL)
		return bad(l, w, "wait: missing key 'deadline'");
	if (get_duration(l, w, "deadline", &s->deadline_us) < 0)
		return -1;
	return check_match(l, w, "wait", s->wait_match);
}

/* One way a goal is reached: {event_type: T or [T...], aggregate_type, match} */
static int load_goal_one(struct loader *l, ynode *n, struct saga_goal *g)
{
	g->line = n->line;
	if (check_keys(l, n, "goal", "|event_type|aggregate_type|match|") < 0 ||
	    get_string(l, n, "aggregate_type", false, &g->aggregate_type) < 0 ||
	    get_tpl(l, n, "match", &g->match) < 0 || check_match(l, n, "goal", g->match) < 0)
		return -1;
	ynode *t = get(n, "event_type");
	if (t == NULL)
		return bad(l, n, "goal: missing key 'event_type'");
	size_t count;
	ynode *const *types = one_or_list(&t, &count);
	if (count == 0)
		return bad(l, t, "goal: 'event_type' must name at least one event type");
	g->event_types = calloc(count, sizeof *g->event_types);
	if (g->event_types == NULL)
		return oom(l);
	for (size_t i = 0; i < count; i++) {
		ynode *e = types[i];
		const char *v = scalar(e);
		if (v == NULL || !cqrs_type_name_valid(v, strlen(v)))
			return bad(l, e, "goal: 'event_type' must be event type names");
		if ((g->event_types[i] = strdup(v)) == NULL)
			return oom(l);
		g->ntypes = i + 1;
	}
	return 0;
}

/* goal: one mapping, or a list of them (any one reached will do) */
static int load_goals(struct loader *l, ynode *n, struct saga_step *s)
{
	size_t count;
	ynode *const *items = one_or_list(&n, &count);
	if (count == 0)
		return bad(l, n, "goal: must be a mapping or a non-empty list of them");
	s->goals = calloc(count, sizeof *s->goals);
	if (s->goals == NULL)
		return oom(l);
	for (size_t i = 0; i < count; i++) {
		s->ngoals = i + 1;
		if (load_goal_one(l, items[i], &s->goals[i]) < 0)
			return -1;
	}
	return 0;
}

static int load_step(struct loader *l, struct cqrs_saga_def *d, ynode *n,
		     const struct saga_action *defaults, struct saga_step *s)
{
	if (check_keys(l, n, "step", "|name|compensate|wait|goal" ACTION_KEYS) < 0 ||
	    get_string(l, n, "name", true, &s->name) < 0)
		return -1;
	s->line = n->line;
	if (!valid_name(s->name))
		return bad(l, get(n, "name"),
			   "step name '%s' must be letters, digits, '_', '-' or '.'", s->name);
	for (size_t i = 0; i < d->nsteps; i++)
		if (strcmp(d->steps[i].name, s->name) == 0)
			return bad(l, get(n, "name"), "step '%s' is defined twice", s->name);
	struct saga_action def = *defaults;
	char brk[160];
	snprintf(brk, sizeof brk, "%s.%s", d->name, s->name);
	def.breaker.name = brk;
	char what[128];
	snprintf(what, sizeof what, "step '%s'", s->name);
	ynode *w = get(n, "wait");
	if (w != NULL) {
		for (const char *const *k = (const char *const[]){ "run", "command", "emit",
								   "for_each", "input", NULL };
		     *k; k++)
			if (get(n, *k) != NULL)
				return bad(l, get(n, *k), "%s: a wait step cannot also have '%s'",
					   what, *k);
		if (load_wait(l, w, s) < 0)
			return -1;
	} else if (load_action(l, n, what, &def, &s->act) < 0) {
		return -1;
	}
	ynode *g = get(n, "goal");
	if (g != NULL && s->is_wait)
		return bad(l, g, "%s: a wait step cannot also have 'goal'", what);
	if (g != NULL && load_goals(l, g, s) < 0)
		return -1;
	ynode *c = get(n, "compensate");
	if (c != NULL) {
		snprintf(what, sizeof what, "step '%s': compensate", s->name);
		/* undoing uses the step's own settings unless it says otherwise */
		struct saga_action cdef = def;
		if (!s->is_wait) {
			cdef.timeout_us = s->act.timeout_us;
			cdef.retry = s->act.retry;
			cdef.breaker = s->act.breaker;
		}
		if (check_keys(l, c, what, ACTION_KEYS) < 0 ||
		    load_action(l, c, what, &cdef, &s->comp) < 0)
			return -1;
	}
	return 0;
}

void cqrs_saga_free(cqrs_saga_def *d)
{
	if (d == NULL)
		return;
	for (size_t i = 0; i < d->nsteps; i++) {
		struct saga_step *s = &d->steps[i];
		free(s->name);
		free_action(&s->act);
		free_action(&s->comp);
		free(s->wait_event_type);
		free(s->wait_aggregate_type);
		tpl_free(s->wait_match);
		for (size_t j = 0; j < s->ngoals; j++) {
			for (size_t k = 0; k < s->goals[j].ntypes; k++)
				free(s->goals[j].event_types[k]);
			free(s->goals[j].event_types);
			free(s->goals[j].aggregate_type);
			tpl_free(s->goals[j].match);
		}
		free(s->goals);
	}
	free(d->steps);
	free_action(&d->on_failure);
	tpl_free(d->correlation);
	free(d->path);
	free(d->dir);
	free(d->name);
	free(d->description);
	free(d->start_event_type);
	free(d->start_aggregate_type);
	free(d->cancel_event_type);
	free(d->cancel_aggregate_type);
	free(d);
}

static int load_def(struct loader *l, ynode *root, struct cqrs_saga_def *d)
{
	if (check_keys(l, root, "saga definition",
		       "|saga|description|start|correlation_id|defaults|steps|on_failure|"
		       "cancel_on|") < 0 ||
	    get_string(l, root, "saga", true, &d->name) < 0 ||
	    get_string(l, root, "description", false, &d->description) < 0)
		return -1;
	if (!valid_name(d->name) || strlen(d->name) > 64)
		return bad(l, get(root, "saga"),
			   "saga name '%s' must be letters, digits, '_', '-' or '.'", d->name);
	ynode *start = get(root, "start");
	if (start == NULL)
		return bad(l, root, "missing key 'start'");
	if (check_keys(l, start, "start", "|event_type|aggregate_type|") < 0 ||
	    get_string(l, start, "event_type", true, &d->start_event_type) < 0 ||
	    get_string(l, start, "aggregate_type", false, &d->start_aggregate_type) < 0)
		return -1;
	if (get_tpl(l, root, "correlation_id", &d->correlation) < 0)
		return -1;
	ynode *cancel = get(root, "cancel_on");
	if (cancel != NULL &&
	    (check_keys(l, cancel, "cancel_on", "|event_type|aggregate_type|") < 0 ||
	     get_string(l, cancel, "event_type", true, &d->cancel_event_type) < 0 ||
	     get_string(l, cancel, "aggregate_type", false, &d->cancel_aggregate_type) < 0))
		return -1;

	struct saga_action defaults = {
		.timeout_us = DEFAULT_TIMEOUT_US,
		.retry = { DEFAULT_ATTEMPTS, DEFAULT_BACKOFF_US, DEFAULT_MAXBACK_US },
		.breaker = { NULL, DEFAULT_BRK_FAILS, DEFAULT_BRK_COOL_US },
	};
	ynode *defs = get(root, "defaults");
	if (defs != NULL && (check_keys(l, defs, "defaults", "|timeout|retry|breaker|") < 0 ||
			     get_duration(l, defs, "timeout", &defaults.timeout_us) < 0 ||
			     load_retry(l, defs, &defaults.retry) < 0 ||
			     load_breaker(l, defs, &defaults.breaker) < 0))
		return -1;
	if (defaults.breaker.name != NULL) {
		int rc = bad(l, get(defs, "breaker"), "defaults: a breaker name belongs to a step");
		free(defaults.breaker.name);
		return rc;
	}

	ynode *steps = get(root, "steps");
	if (steps == NULL)
		return bad(l, root, "missing key 'steps'");
	if (steps->kind != CQRS_YAML_SEQ || steps->nkids == 0)
		return bad(l, steps, "'steps' must be a non-empty list");
	size_t n = steps->nkids;
	d->steps = calloc(n, sizeof *d->steps);
	if (d->steps == NULL)
		return oom(l);
	for (size_t i = 0; i < n; i++) {
		int rc = load_step(l, d, steps->kids[i], &defaults, &d->steps[i]);
		d->nsteps = i + 1;
		if (rc < 0)
			return -1;
	}
	ynode *of = get(root, "on_failure");
	if (of != NULL) {
		struct saga_action odef = defaults;
		odef.breaker.name = NULL;
		odef.breaker.failures = 0;
		if (check_keys(l, of, "on_failure", ACTION_KEYS) < 0 ||
		    load_action(l, of, "on_failure", &odef, &d->on_failure) < 0)
			return -1;
	}
	return 0;
}

cqrs_saga_def *cqrs_saga_load(const char *path, cqrs_error *err)
{
	FILE *f = cqrs_yaml_open(path, "saga definition", err);
	if (f == NULL)
		return NULL;
	struct cqrs_yaml_node *root = cqrs_yaml_load(f, path, "'saga:'", err);
	fclose(f);
	if (root == NULL)
		return NULL;
	struct loader l = { .path = path, .err = err };
	struct cqrs_saga_def *d = calloc(1, sizeof *d);
	char *copy = strdup(path);
	if (d == NULL || copy == NULL || (d->path = strdup(path)) == NULL ||
	    (d->dir = strdup(dirname(copy))) == NULL) {
		oom(&l);
		goto fail;
	}
	if (load_def(&l, root, d) < 0)
		goto fail;
	free(copy);
	cqrs_yaml_free(root);
	return d;
fail:
	free(copy);
	cqrs_saga_free(d);
	cqrs_yaml_free(root);
	return NULL;
}

const char *cqrs_saga_name(const cqrs_saga_def *d)
{
	return d->name;
}
