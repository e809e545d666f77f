/*
 * Saga definitions from YAML (cqrs-saga(5)), checked whole before any
 * saga runs: an unknown key, a missing field or a bad duration is an
 * error that names the file and line, exit 78.
 */
#include "config.h"

#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "saga/saga_impl.h"
#include "banned.h"

#define DEFAULT_TIMEOUT_US  (30LL * 1000000)
#define DEFAULT_ATTEMPTS    3
#define DEFAULT_BACKOFF_US  (1LL * 1000000)
#define DEFAULT_MAXBACK_US  (300LL * 1000000)
#define DEFAULT_BRK_FAILS   5
#define DEFAULT_BRK_COOL_US (60LL * 1000000)

struct loader {
	yaml_document_t doc;
	const char *path;
	cqrs_error *err;
};

static int line_of(yaml_node_t *n)
{
	return n != NULL ? (int)n->start_mark.line + 1 : 0;
}

static int bad(struct loader *l, yaml_node_t *n, const char *fmt, ...) CQRS_PRINTF(3, 4);

static int bad(struct loader *l, yaml_node_t *n, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return cqrs_fail(l->err, CQRS_EXIT_CONFIG, "%s:%d: %s", l->path, line_of(n), msg);
}

static const char *scalar(yaml_node_t *n)
{
	return n != NULL && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static yaml_node_t *node(struct loader *l, int id)
{
	return yaml_document_get_node(&l->doc, id);
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

/* Checks that every key of map is one of allowed ("a|b|c|"). */
static int check_keys(struct loader *l, yaml_node_t *map, const char *what, const char *allowed)
{
	if (map == NULL || map->type != YAML_MAPPING_NODE)
		return bad(l, map, "%s must be a mapping", what);
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = node(l, p->key);
		const char *key = scalar(k);
		if (key == NULL)
			return bad(l, k, "%s: keys must be plain names", what);
		char pat[80];
		snprintf(pat, sizeof pat, "|%s|", key);
		if (strstr(allowed, pat) == NULL)
			return bad(l, k, "%s: unknown key '%s'", what, key);
	}
	return 0;
}

static yaml_node_t *get(struct loader *l, yaml_node_t *map, const char *key)
{
	if (map == NULL || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		const char *k = scalar(node(l, p->key));
		if (k != NULL && strcmp(k, key) == 0)
			return node(l, p->value);
	}
	return NULL;
}

static int get_string(struct loader *l, yaml_node_t *map, const char *key, bool required,
		      char **out)
{
	yaml_node_t *n = get(l, map, key);
	if (n == NULL) {
		if (required)
			return bad(l, map, "missing key '%s'", key);
		return 0;
	}
	const char *s = scalar(n);
	if (s == NULL || *s == '\0')
		return bad(l, n, "'%s' must be a non-empty string", key);
	if ((*out = strdup(s)) == NULL)
		return cqrs_fail(l->err, CQRS_EXIT_OSERR, "out of memory");
	return 0;
}

static int get_duration(struct loader *l, yaml_node_t *map, const char *key, int64_t *out)
{
	yaml_node_t *n = get(l, map, key);
	if (n == NULL)
		return 0;
	int64_t v = saga_duration_parse(scalar(n));
	if (v < 0)
		return bad(l, n, "'%s' must be a duration such as 500ms, 30s, 5m, 2h or 1d", key);
	*out = v;
	return 0;
}

static int get_count(struct loader *l, yaml_node_t *map, const char *key, int64_t min, int64_t *out)
{
	yaml_node_t *n = get(l, map, key);
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

static struct tpl *new_tpl(struct loader *l, enum tpl_kind kind, yaml_node_t *n)
{
	struct tpl *t = calloc(1, sizeof *t);
	if (t == NULL) {
		cqrs_fail(l->err, CQRS_EXIT_OSERR, "out of memory");
		return NULL;
	}
	t->kind = kind;
	t->line = line_of(n);
	return t;
}

static struct tpl *to_tpl(struct loader *l, yaml_node_t *n, int depth)
{
	if (depth > 32) {
		bad(l, n, "template nested too deeply");
		return NULL;
	}
	struct tpl *t = NULL;
	struct cqrs_strbuf b = { 0 };
	switch (n->type) {
	case YAML_SCALAR_NODE: {
		const char *s = (const char *)n->data.scalar.value;
		bool plain = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
		const char *open = strstr(s, "${");
		if (open != NULL) {
			const char *close = strchr(open, '}');
			if (close == NULL || close == open + 2) {
				bad(l, n, "unterminated or empty ${} in '%s'", s);
				return NULL;
			}
			bool whole =
				open == s && close[1] == '\0' && strstr(open + 2, "${") == NULL;
			t = new_tpl(l, whole ? TPL_REF : TPL_STRING, n);
			if (t == NULL)
				return NULL;
			if (whole)
				t->text = strndup(s + 2, (size_t)(close - s - 2));
			else
				t->text = strdup(s);
			break;
		}
		t = new_tpl(l, TPL_LITERAL, n);
		if (t == NULL)
			return NULL;
		if (plain && (strcmp(s, "true") == 0 || strcmp(s, "false") == 0 ||
			      strcmp(s, "null") == 0 || json_number(s))) {
			t->text = strdup(s);
		} else if (plain && (strcmp(s, "~") == 0 || *s == '\0')) {
			t->text = strdup("null");
		} else {
			cqrs_strbuf_json_string(&b, s, n->data.scalar.length);
			t->text = b.oom ? NULL : strdup(cqrs_strbuf_str(&b));
		}
		break;
	}
	case YAML_SEQUENCE_NODE:
	case YAML_MAPPING_NODE: {
		bool map = n->type == YAML_MAPPING_NODE;
		size_t count =
			map ? (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start)
			    : (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
		t = new_tpl(l, map ? TPL_OBJECT : TPL_ARRAY, n);
		if (t == NULL)
			return NULL;
		t->items = calloc(count + 1, sizeof *t->items);
		t->keys = map ? calloc(count + 1, sizeof *t->keys) : NULL;
		if (t->items == NULL || (map && t->keys == NULL)) {
			tpl_free(t);
			cqrs_fail(l->err, CQRS_EXIT_OSERR, "out of memory");
			return NULL;
		}
		for (size_t i = 0; i < count; i++) {
			yaml_node_t *v;
			if (map) {
				yaml_node_pair_t *p = n->data.mapping.pairs.start + i;
				yaml_node_t *k = node(l, p->key);
				const char *key = scalar(k);
				if (key == NULL) {
					tpl_free(t);
					bad(l, k, "keys must be plain names");
					return NULL;
				}
				for (size_t j = 0; j < i; j++)
					if (strcmp(t->keys[j], key) == 0) {
						tpl_free(t);
						bad(l, k, "duplicate key '%s'", key);
						return NULL;
					}
				t->keys[i] = strdup(key);
				v = node(l, p->value);
			} else {
				v = node(l, n->data.sequence.items.start[i]);
			}
			t->n = i + 1;
			t->items[i] = to_tpl(l, v, depth + 1);
			if (t->items[i] == NULL || (map && t->keys[i] == NULL)) {
				tpl_free(t);
				return NULL;
			}
		}
		return t;
	}
	default: bad(l, n, "unexpected YAML node"); return NULL;
	}
	cqrs_strbuf_free(&b);
	if (t->text == NULL) {
		tpl_free(t);
		cqrs_fail(l->err, CQRS_EXIT_OSERR, "out of memory");
		return NULL;
	}
	return t;
}

static int get_tpl(struct loader *l, yaml_node_t *map, const char *key, struct tpl **out)
{
	yaml_node_t *n = get(l, map, key);
	if (n == NULL)
		return 0;
	*out = to_tpl(l, n, 0);
	return *out != NULL ? 0 : -1;
}

/* --- actions and steps -------------------------------------------------------------- */

static int load_retry(struct loader *l, yaml_node_t *map, struct saga_retry *r)
{
	yaml_node_t *n = get(l, map, "retry");
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

static int load_breaker(struct loader *l, yaml_node_t *map, struct saga_breaker *b)
{
	yaml_node_t *n = get(l, map, "breaker");
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

static int load_action(struct loader *l, yaml_node_t *map, const char *what,
		       const struct saga_action *defaults, struct saga_action *a)
{
	a->present = true;
	a->line = line_of(map);
	a->timeout_us = defaults->timeout_us;
	a->retry = defaults->retry;
	a->breaker = defaults->breaker;
	a->breaker.name = defaults->breaker.name ? strdup(defaults->breaker.name) : NULL;
	yaml_node_t *run = get(l, map, "run");
	if (run != NULL) {
		if (run->type != YAML_SEQUENCE_NODE ||
		    run->data.sequence.items.top == run->data.sequence.items.start)
			return bad(l, run, "%s: 'run' must be a list: program and arguments", what);
		size_t n = (size_t)(run->data.sequence.items.top - run->data.sequence.items.start);
		a->argv = calloc(n + 1, sizeof *a->argv);
		if (a->argv == NULL)
			return cqrs_fail(l->err, CQRS_EXIT_OSERR, "out of memory");
		for (size_t i = 0; i < n; i++) {
			yaml_node_t *arg = node(l, run->data.sequence.items.start[i]);
			const char *s = scalar(arg);
			if (s == NULL || (i == 0 && *s == '\0'))
				return bad(l, arg, "%s: 'run' arguments must be strings", what);
			if ((a->argv[i] = strdup(s)) == NULL)
				return cqrs_fail(l->err, CQRS_EXIT_OSERR, "out of memory");
			a->argc = i + 1;
		}
	}
	if (get_tpl(l, map, "input", &a->input) < 0 ||
	    get_duration(l, map, "timeout", &a->timeout_us) < 0 ||
	    get_tpl(l, map, "for_each", &a->for_each) < 0 ||
	    get_tpl(l, map, "command", &a->command) < 0 || load_retry(l, map, &a->retry) < 0 ||
	    load_breaker(l, map, &a->breaker) < 0)
		return -1;
	yaml_node_t *ar = get(l, map, "accept_rejected");
	if (ar != NULL) {
		const char *v = scalar(ar);
		if (v == NULL || (strcmp(v, "true") != 0 && strcmp(v, "false") != 0))
			return bad(l, ar, "%s: 'accept_rejected' is true or false", what);
		a->accept_rejected = strcmp(v, "true") == 0;
		if (a->command == NULL)
			return bad(l, ar, "%s: 'accept_rejected' needs 'command'", what);
	}
	if (a->input != NULL && a->argv == NULL)
		return bad(l, get(l, map, "input"), "%s: 'input' needs 'run'", what);
	if (a->for_each != NULL && a->command == NULL)
		return bad(l, get(l, map, "for_each"), "%s: 'for_each' needs 'command'", what);
	if (a->for_each != NULL && a->for_each->kind != TPL_REF)
		return bad(l, get(l, map, "for_each"), "%s: 'for_each' must be one ${path}", what);
	if (a->command != NULL && a->command->kind != TPL_OBJECT)
		return bad(l, get(l, map, "command"), "%s: 'command' must be a mapping", what);
	if (a->timeout_us <= 0)
		return bad(l, get(l, map, "timeout"), "%s: 'timeout' must be positive", what);
	yaml_node_t *emit = get(l, map, "emit");
	if (emit != NULL) {
		size_t n = emit->type == YAML_SEQUENCE_NODE
				   ? (size_t)(emit->data.sequence.items.top -
					      emit->data.sequence.items.start)
				   : 1;
		a->emit = calloc(n, sizeof *a->emit);
		if (a->emit == NULL)
			return cqrs_fail(l->err, CQRS_EXIT_OSERR, "out of memory");
		for (size_t i = 0; i < n; i++) {
			yaml_node_t *e = emit->type == YAML_SEQUENCE_NODE
						 ? node(l, emit->data.sequence.items.start[i])
						 : emit;
			if (check_keys(l, e, "emit",
				       "|aggregate_type|aggregate_id|event_type|data|") < 0)
				return -1;
			for (const char *const *k =
				     (const char *const[]){ "aggregate_type", "aggregate_id",
							    "event_type", NULL };
			     *k; k++)
				if (get(l, e, *k) == NULL)
					return bad(l, e, "emit: missing key '%s'", *k);
			if ((a->emit[i] = to_tpl(l, e, 0)) == NULL)
				return -1;
			a->nemit = i + 1;
		}
	}
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
static int check_match(struct loader *l, yaml_node_t *parent, const char *what,
		       const struct tpl *m)
{
	if (m == NULL)
		return 0;
	if (m->kind != TPL_OBJECT)
		return bad(l, get(l, parent, "match"), "%s: 'match' must be a mapping", what);
	for (size_t i = 0; i < m->n; i++) {
		const char *k = m->keys[i];
		if (strcmp(k, "aggregate_id") != 0 && strcmp(k, "correlation_id") != 0 &&
		    strncmp(k, "data.", 5) != 0)
			return bad(l, get(l, parent, "match"),
				   "%s: match key '%s' is none of aggregate_id, "
				   "correlation_id, data.FIELD",
				   what, k);
	}
	return 0;
}

static int load_wait(struct loader *l, yaml_node_t *w, struct saga_step *s)
{
	s->is_wait = true;
	if (check_keys(l, w, "wait", "|event_type|aggregate_type|match|deadline|") < 0 ||
	    get_string(l, w, "event_type", true, &s->wait_event_type) < 0 ||
	    get_string(l, w, "aggregate_type", false, &s->wait_aggregate_type) < 0 ||
	    get_tpl(l, w, "match", &s->wait_match) < 0)
		return -1;
	if (get(l, w, "deadline") == NULL)
		return bad(l, w, "wait: missing key 'deadline'");
	if (get_duration(l, w, "deadline", &s->deadline_us) < 0)
		return -1;
	return check_match(l, w, "wait", s->wait_match);
}

/* One way a goal is reached: {event_type: T or [T...], aggregate_type, match} */
static int load_goal_one(struct loader *l, yaml_node_t *n, struct saga_goal *g)
{
	g->line = line_of(n);
	if (check_keys(l, n, "goal", "|event_type|aggregate_type|match|") < 0 ||
	    get_string(l, n, "aggregate_type", false, &g->aggregate_type) < 0 ||
	    get_tpl(l, n, "match", &g->match) < 0 || check_match(l, n, "goal", g->match) < 0)
		return -1;
	yaml_node_t *t = get(l, n, "event_type");
	if (t == NULL)
		return bad(l, n, "goal: missing key 'event_type'");
	bool list = t->type == YAML_SEQUENCE_NODE;
	size_t count = list ? (size_t)(t->data.sequence.items.top - t->data.sequence.items.start)
			    : 1;
	if (count == 0)
		return bad(l, t, "goal: 'event_type' must name at least one event type");
	g->event_types = calloc(count, sizeof *g->event_types);
	if (g->event_types == NULL)
		return cqrs_fail(l->err, CQRS_EXIT_OSERR, "out of memory");
	for (size_t i = 0; i < count; i++) {
		yaml_node_t *e = list ? node(l, t->data.sequence.items.start[i]) : t;
		const char *v = scalar(e);
		if (v == NULL || !cqrs_type_name_valid(v, strlen(v)))
			return bad(l, e, "goal: 'event_type' must be event type names");
		if ((g->event_types[i] = strdup(v)) == NULL)
			return cqrs_fail(l->err, CQRS_EXIT_OSERR, "out of memory");
		g->ntypes = i + 1;
	}
	return 0;
}

/* goal: one mapping, or a list of them (any one reached will do) */
static int load_goals(struct loader *l, yaml_node_t *n, struct saga_step *s)
{
	bool list = n->type == YAML_SEQUENCE_NODE;
	size_t count = list ? (size_t)(n->data.sequence.items.top - n->data.sequence.items.start)
			    : 1;
	if (count == 0)
		return bad(l, n, "goal: must be a mapping or a non-empty list of them");
	s->goals = calloc(count, sizeof *s->goals);
	if (s->goals == NULL)
		return cqrs_fail(l->err, CQRS_EXIT_OSERR, "out of memory");
	for (size_t i = 0; i < count; i++) {
		s->ngoals = i + 1;
		if (load_goal_one(l, list ? node(l, n->data.sequence.items.start[i]) : n,
				  &s->goals[i]) < 0)
			return -1;
	}
	return 0;
}

static int load_step(struct loader *l, struct cqrs_saga_def *d, yaml_node_t *n,
		     const struct saga_action *defaults, struct saga_step *s)
{
	if (check_keys(l, n, "step", "|name|compensate|wait|goal" ACTION_KEYS) < 0 ||
	    get_string(l, n, "name", true, &s->name) < 0)
		return -1;
	s->line = line_of(n);
	if (!valid_name(s->name))
		return bad(l, get(l, n, "name"),
			   "step name '%s' must be letters, digits, '_', '-' or '.'", s->name);
	for (size_t i = 0; i < d->nsteps; i++)
		if (strcmp(d->steps[i].name, s->name) == 0)
			return bad(l, get(l, n, "name"), "step '%s' is defined twice", s->name);
	struct saga_action def = *defaults;
	char brk[160];
	snprintf(brk, sizeof brk, "%s.%s", d->name, s->name);
	def.breaker.name = brk;
	char what[128];
	snprintf(what, sizeof what, "step '%s'", s->name);
	yaml_node_t *w = get(l, n, "wait");
	if (w != NULL) {
		for (const char *const *k = (const char *const[]){ "run", "command", "emit",
								   "for_each", "input", NULL };
		     *k; k++)
			if (get(l, n, *k) != NULL)
				return bad(l, get(l, n, *k),
					   "%s: a wait step cannot also have '%s'", what, *k);
		if (load_wait(l, w, s) < 0)
			return -1;
	} else if (load_action(l, n, what, &def, &s->act) < 0) {
		return -1;
	}
	yaml_node_t *g = get(l, n, "goal");
	if (g != NULL && s->is_wait)
		return bad(l, g, "%s: a wait step cannot also have 'goal'", what);
	if (g != NULL && load_goals(l, g, s) < 0)
		return -1;
	yaml_node_t *c = get(l, n, "compensate");
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

static int load_def(struct loader *l, struct cqrs_saga_def *d)
{
	yaml_node_t *root = yaml_document_get_root_node(&l->doc);
	if (root == NULL)
		return cqrs_fail(l->err, CQRS_EXIT_CONFIG, "%s:1: empty saga definition", l->path);
	if (check_keys(l, root, "saga definition",
		       "|saga|description|start|correlation_id|defaults|steps|on_failure|"
		       "cancel_on|") < 0 ||
	    get_string(l, root, "saga", true, &d->name) < 0 ||
	    get_string(l, root, "description", false, &d->description) < 0)
		return -1;
	if (!valid_name(d->name) || strlen(d->name) > 64)
		return bad(l, get(l, root, "saga"),
			   "saga name '%s' must be letters, digits, '_', '-' or '.'", d->name);
	yaml_node_t *start = get(l, root, "start");
	if (start == NULL)
		return bad(l, root, "missing key 'start'");
	if (check_keys(l, start, "start", "|event_type|aggregate_type|") < 0 ||
	    get_string(l, start, "event_type", true, &d->start_event_type) < 0 ||
	    get_string(l, start, "aggregate_type", false, &d->start_aggregate_type) < 0)
		return -1;
	if (get_tpl(l, root, "correlation_id", &d->correlation) < 0)
		return -1;
	yaml_node_t *cancel = get(l, root, "cancel_on");
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
	yaml_node_t *defs = get(l, root, "defaults");
	if (defs != NULL && (check_keys(l, defs, "defaults", "|timeout|retry|breaker|") < 0 ||
			     get_duration(l, defs, "timeout", &defaults.timeout_us) < 0 ||
			     load_retry(l, defs, &defaults.retry) < 0 ||
			     load_breaker(l, defs, &defaults.breaker) < 0))
		return -1;
	if (defaults.breaker.name != NULL) {
		int rc = bad(l, get(l, defs, "breaker"),
			     "defaults: a breaker name belongs to a step");
		free(defaults.breaker.name);
		return rc;
	}

	yaml_node_t *steps = get(l, root, "steps");
	if (steps == NULL)
		return bad(l, root, "missing key 'steps'");
	if (steps->type != YAML_SEQUENCE_NODE ||
	    steps->data.sequence.items.top == steps->data.sequence.items.start)
		return bad(l, steps, "'steps' must be a non-empty list");
	size_t n = (size_t)(steps->data.sequence.items.top - steps->data.sequence.items.start);
	d->steps = calloc(n, sizeof *d->steps);
	if (d->steps == NULL)
		return cqrs_fail(l->err, CQRS_EXIT_OSERR, "out of memory");
	for (size_t i = 0; i < n; i++) {
		int rc = load_step(l, d, node(l, steps->data.sequence.items.start[i]), &defaults,
				   &d->steps[i]);
		d->nsteps = i + 1;
		if (rc < 0)
			return -1;
	}
	yaml_node_t *of = get(l, root, "on_failure");
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
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		cqrs_fail(err, CQRS_EXIT_NOINPUT, "%s: cannot open saga definition: %s", path,
			  strerror(errno));
		return NULL;
	}
	struct loader l = { .path = path, .err = err };
	yaml_parser_t parser;
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_file(&parser, f);
	struct cqrs_saga_def *d = NULL;
	if (!yaml_parser_load(&parser, &l.doc)) {
		cqrs_fail(err, CQRS_EXIT_CONFIG, "%s:%zu: %s", path, parser.problem_mark.line + 1,
			  parser.problem ? parser.problem : "malformed YAML");
		yaml_parser_delete(&parser);
		fclose(f);
		return NULL;
	}
	d = calloc(1, sizeof *d);
	char *copy = strdup(path);
	if (d == NULL || copy == NULL || (d->path = strdup(path)) == NULL ||
	    (d->dir = strdup(dirname(copy))) == NULL) {
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		goto fail;
	}
	if (load_def(&l, d) < 0)
		goto fail;
	free(copy);
	yaml_document_delete(&l.doc);
	yaml_parser_delete(&parser);
	fclose(f);
	return d;
fail:
	free(copy);
	cqrs_saga_free(d);
	yaml_document_delete(&l.doc);
	yaml_parser_delete(&parser);
	fclose(f);
	return NULL;
}

const char *cqrs_saga_name(const cqrs_saga_def *d)
{
	return d->name;
}
