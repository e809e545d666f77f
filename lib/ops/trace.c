/*
 * An order's trace, from its events alone (cqrs-trace(1)).  The ids the
 * tools already write link everything: an event's metadata.causation_id
 * names the command that made it (a person's command_id, or a saga's
 * "saga:SAGA/STEP/ITEM/ATTEMPT"), the saga's own events name the saga,
 * an event a saga step emits names "SAGA/STEP", and SagaStarted names the
 * event that started the saga.  The events of one correlation become a
 * tree of spans: commands, events, sagas, their steps and compensations.
 * A step's span runs from step_started_at to step_ended_at, which the
 * saga records in the metadata of the event that ends the step's attempt.
 */
#include "config.h"

#include <nettle/sha2.h>
#include <stdlib.h>
#include <string.h>

#include "cqrs.h"
#include "banned.h"

enum node_kind { NODE_COMMAND, NODE_EVENT, NODE_SAGA, NODE_STEP };
static const char *const kind_names[] = { "command", "event", "saga", "step" };

struct node {
	enum node_kind kind;
	char *key;	     /* unique: "event:ID", "command:ID", "saga:ID", "step:SAGA/STEP" */
	char *id;	     /* the event id, command id, saga id or step key */
	char *label;	     /* for the text tree and the span's name */
	int parent;	     /* index, -1: a root */
	int64_t start, end;  /* own times in microseconds; -1: none of its own */
	int64_t first, last; /* the subtree's */
	int64_t first_seq;   /* the subtree's lowest sequence */
	char *error;	     /* a failed step or saga: why; NULL when it went well */
	/* an event's */
	cqrs_event ev;
	char event_id[37], aggregate_id[37];
	char saga_id[37];
	char *saga_type, *step;
	bool has_tp;
	struct cqrs_traceparent tp;
	uint8_t span_id[8];
	int *kids;
	size_t nkids, capkids;
};

struct trace {
	struct node *nodes;
	size_t n, cap;
	int *slots; /* open addressing over nodes by key; -1 empty */
	size_t nslots;
	char corr[CQRS_MAX_CORRELATION + 1];
	uint8_t trace_id[16];
	bool has_tp;
	bool oom;
};

/* --- nodes by key -------------------------------------------------------------------- */

static uint64_t key_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static int find(const struct trace *t, const char *key)
{
	if (t->nslots == 0)
		return -1;
	for (size_t i = key_hash(key) & (t->nslots - 1);; i = (i + 1) & (t->nslots - 1)) {
		if (t->slots[i] < 0)
			return -1;
		if (strcmp(t->nodes[t->slots[i]].key, key) == 0)
			return t->slots[i];
	}
}

static bool rehash(struct trace *t)
{
	size_t n = t->nslots ? t->nslots * 2 : 64;
	int *s = malloc(n * sizeof *s);
	if (s == NULL)
		return false;
	for (size_t i = 0; i < n; i++)
		s[i] = -1;
	for (size_t k = 0; k < t->n; k++) {
		size_t i = key_hash(t->nodes[k].key) & (n - 1);
		while (s[i] >= 0)
			i = (i + 1) & (n - 1);
		s[i] = (int)k;
	}
	free(t->slots);
	t->slots = s;
	t->nslots = n;
	return true;
}

/* The node of key, made (with parent) when it is new; -1 out of memory. */
static int node_get(struct trace *t, enum node_kind kind, const char *key, const char *id,
		    const char *label, int parent)
{
	int k = find(t, key);
	if (k >= 0)
		return k;
	if ((t->n + 1) * 2 > t->nslots && !rehash(t))
		return -1;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct node *p = realloc(t->nodes, cap * sizeof *p);
		if (p == NULL)
			return -1;
		t->nodes = p;
		t->cap = cap;
	}
	struct node *nd = &t->nodes[t->n];
	memset(nd, 0, sizeof *nd);
	nd->kind = kind;
	nd->key = strdup(key);
	nd->id = strdup(id);
	nd->label = strdup(label);
	if (nd->key == NULL || nd->id == NULL || nd->label == NULL) {
		free(nd->key);
		free(nd->id);
		free(nd->label);
		return -1;
	}
	nd->parent = parent;
	nd->start = nd->end = -1;
	/* from the key: exporting the same history again gives the same ids */
	cqrs_trace_span_id(key, nd->span_id);
	size_t i = key_hash(key) & (t->nslots - 1);
	while (t->slots[i] >= 0)
		i = (i + 1) & (t->nslots - 1);
	t->slots[i] = (int)t->n;
	return (int)t->n++;
}

static void trace_free(struct trace *t)
{
	for (size_t i = 0; i < t->n; i++) {
		struct node *nd = &t->nodes[i];
		free(nd->key);
		free(nd->id);
		free(nd->label);
		free(nd->error);
		free(nd->saga_type);
		free(nd->step);
		free((char *)nd->ev.data);
		free(nd->kids);
	}
	free(t->nodes);
	free(t->slots);
}

/* --- reading the events -------------------------------------------------------------- */

/* "2026-01-16T14:00:00.123456Z" (the store's form) in microseconds; -1 else */
static int64_t time_us(const char *s, size_t n)
{
	char norm[CQRS_TIMESTAMP_LEN + 1];
	if (cqrs_timestamp_normalize(s, n, norm) < 0)
		return -1;
	int64_t f[7] = { 0 };
	static const int at[] = { 0, 5, 8, 11, 14, 17, 20 }, len[] = { 4, 2, 2, 2, 2, 2, 6 };
	for (int i = 0; i < 7; i++)
		for (int k = 0; k < len[i]; k++)
			f[i] = f[i] * 10 + (norm[at[i] + k] - '0');
	return ((cqrs_days_from_civil(f[0], (unsigned)f[1], (unsigned)f[2]) * 86400 + f[3] * 3600 +
		 f[4] * 60 + f[5]) *
			1000000 +
		f[6]);
}

static void format_us(int64_t us, char out[CQRS_TIMESTAMP_LEN + 1])
{
	/* civil from days (Howard Hinnant's algorithm) */
	int64_t days = us / 86400000000 - (us % 86400000000 < 0);
	int64_t rem = us - days * 86400000000;
	int64_t z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
	int64_t d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
	int64_t y = yoe + era * 400 + (m <= 2);
	char buf[96];
	snprintf(buf, sizeof buf, "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld.%06lldZ", (long long)y,
		 (long long)m, (long long)d, (long long)(rem / 3600000000),
		 (long long)(rem / 60000000 % 60), (long long)(rem / 1000000 % 60),
		 (long long)(rem % 1000000));
	memcpy(out, buf, CQRS_TIMESTAMP_LEN);
	out[CQRS_TIMESTAMP_LEN] = '\0';
}

/* A string member of a compact object, decoded; false when absent or not
 * a string that fits. */
static bool get_str(const char *obj, size_t len, const char *key, char *buf, size_t cap)
{
	const char *v;
	size_t vn;
	return obj != NULL && cqrs_json_get(obj, len, key, &v, &vn) &&
	       cqrs_json_string(v, vn, buf, cap) > 0;
}

static char *dup_str(struct trace *t, const char *s)
{
	char *p = strdup(s);
	if (p == NULL)
		t->oom = true;
	return p;
}

/* The saga's step an event of the Saga stream is about: "STEP" for doing
 * it, "STEP/compensate" for undoing it, "on_failure"; "" for the saga
 * itself.  The same keys as the saga's idempotency keys (saga.c). */
static void saga_step_key(const cqrs_event *ev, char *out, size_t cap)
{
	static const char *const doing[] = { "SagaStepCompleted", "SagaStepFailed",
					     "SagaStepWaiting" };
	static const char *const undoing[] = { "SagaStepCompensated", "SagaCompensationFailed",
					       "SagaCompensationDeferred" };
	char step[128];
	out[0] = '\0';
	if (strcmp(ev->event_type, "SagaFailureHandled") == 0) {
		snprintf(out, cap, "on_failure");
		return;
	}
	if (!get_str(ev->data, ev->data_len, "step", step, sizeof step))
		return;
	for (size_t i = 0; i < sizeof doing / sizeof *doing; i++)
		if (strcmp(ev->event_type, doing[i]) == 0)
			snprintf(out, cap, "%s", step);
	for (size_t i = 0; i < sizeof undoing / sizeof *undoing; i++)
		if (strcmp(ev->event_type, undoing[i]) == 0)
			snprintf(out, cap, strcmp(step, "on_failure") == 0 ? "%s" : "%s/compensate",
				 step);
}

static int saga_node(struct trace *t, const char *saga_id)
{
	char key[300], label[64];
	snprintf(key, sizeof key, "saga:%s", saga_id);
	snprintf(label, sizeof label, "saga %s", saga_id);
	int k = node_get(t, NODE_SAGA, key, saga_id, label, -1);
	if (k >= 0 && t->nodes[k].saga_id[0] == '\0')
		snprintf(t->nodes[k].saga_id, sizeof t->nodes[k].saga_id, "%s", saga_id);
	return k;
}

static int step_node(struct trace *t, const char *saga_id, const char *step)
{
	int saga = saga_node(t, saga_id);
	if (saga < 0)
		return -1;
	char key[256], label[200];
	snprintf(key, sizeof key, "step:%s/%s", saga_id, step);
	size_t n = strlen(step);
	if (n > 11 && strcmp(step + n - 11, "/compensate") == 0)
		snprintf(label, sizeof label, "compensate %.*s", (int)(n - 11), step);
	else if (strcmp(step, "on_failure") == 0)
		snprintf(label, sizeof label, "on_failure");
	else
		snprintf(label, sizeof label, "step %s", step);
	int k = node_get(t, NODE_STEP, key, step, label, saga);
	if (k >= 0)
		snprintf(t->nodes[k].saga_id, sizeof t->nodes[k].saga_id, "%s", saga_id);
	return k;
}

static bool is_saga(const struct trace *t, const char *id)
{
	char key[300]; /* as long as saga_node's, so that the same id finds it */
	snprintf(key, sizeof key, "saga:%s", id);
	return find(t, key) >= 0;
}

/* The node an event hangs from, made when new; -1 for a root, -2 out of
 * memory. */
static int cause_of(struct trace *t, const cqrs_event *ev, const char *causation)
{
	char sid[37], step[160];
	if (strcmp(ev->aggregate_type, "Saga") == 0) {
		cqrs_uuid_format(ev->aggregate_id, sid);
		saga_step_key(ev, step, sizeof step);
		int k = step[0] ? step_node(t, sid, step) : saga_node(t, sid);
		return k < 0 ? -2 : k;
	}
	if (causation[0] == '\0')
		return -1;
	char key[300];
	/* a saga's command: saga:SAGA/STEP[/compensate]/ITEM/ATTEMPT */
	size_t n = strlen(causation);
	if (strncmp(causation, "saga:", 5) == 0 && n > 5 + 36 && causation[41] == '/') {
		memcpy(sid, causation + 5, 36);
		sid[36] = '\0';
		const char *s = causation + 42;
		const char *end = causation + n;
		for (int slashes = 0; end > s && slashes < 2; end--)
			if (end[-1] == '/' && ++slashes == 2)
				break;
		if (end > s + 1 && (size_t)(end - s) < sizeof step) {
			snprintf(step, sizeof step, "%.*s", (int)(end - s - 1), s);
			int st = step_node(t, sid, step);
			if (st < 0)
				return -2;
			snprintf(key, sizeof key, "command:%s", causation);
			char label[300];
			snprintf(label, sizeof label, "command %s", causation);
			int k = node_get(t, NODE_COMMAND, key, causation, label, st);
			return k < 0 ? -2 : k;
		}
	}
	/* an event a step emitted: SAGA/STEP */
	if (n > 37 && causation[36] == '/') {
		memcpy(sid, causation, 36);
		sid[36] = '\0';
		if (is_saga(t, sid)) {
			int k = step_node(t, sid, causation + 37);
			return k < 0 ? -2 : k;
		}
	}
	if (is_saga(t, causation)) {
		int k = saga_node(t, causation);
		return k < 0 ? -2 : k;
	}
	snprintf(key, sizeof key, "event:%s", causation);
	int k = find(t, key);
	if (k >= 0)
		return k;
	/* a command: a person's or a program's command_id */
	snprintf(key, sizeof key, "command:%s", causation);
	char label[300];
	snprintf(label, sizeof label, "command %s", causation);
	k = node_get(t, NODE_COMMAND, key, causation, label, -1);
	return k < 0 ? -2 : k;
}

static void set_error(struct trace *t, struct node *nd, const char *why)
{
	free(nd->error);
	nd->error = dup_str(t, why);
}

/* What the saga's own events say about their saga and step. */
static void saga_facts(struct trace *t, int parent, const cqrs_event *ev, const char *meta,
		       size_t mlen)
{
	struct node *p = &t->nodes[parent];
	char buf[512];
	if (p->kind == NODE_STEP) {
		int64_t s = get_str(meta, mlen, "step_started_at", buf, sizeof buf)
				    ? time_us(buf, strlen(buf))
				    : -1;
		int64_t e = get_str(meta, mlen, "step_ended_at", buf, sizeof buf)
				    ? time_us(buf, strlen(buf))
				    : -1;
		if (s >= 0 && (p->start < 0 || s < p->start))
			p->start = s;
		if (e >= 0 && e > p->end)
			p->end = e;
		bool failed = strcmp(ev->event_type, "SagaStepFailed") == 0 ||
			      strcmp(ev->event_type, "SagaCompensationFailed") == 0;
		if (failed && get_str(ev->data, ev->data_len, "reason", buf, sizeof buf))
			set_error(t, p, buf);
		else if (!failed && strcmp(ev->event_type, "SagaStepWaiting") != 0 && p->error) {
			free(p->error); /* a later attempt went well */
			p->error = NULL;
		}
		return;
	}
	if (strcmp(ev->event_type, "SagaStarted") == 0) {
		char start[37], key[64];
		if (get_str(ev->data, ev->data_len, "saga_type", buf, sizeof buf)) {
			char label[200];
			snprintf(label, sizeof label, "saga %.190s", buf);
			free(p->label);
			p->label = dup_str(t, label);
			free(p->saga_type);
			p->saga_type = dup_str(t, buf);
		}
		if (get_str(ev->data, ev->data_len, "start_event_id", start, sizeof start)) {
			snprintf(key, sizeof key, "event:%s", start);
			int k = find(t, key);
			if (k >= 0 && p->parent < 0)
				p->parent = k;
		}
	}
	if (strcmp(ev->event_type, "SagaFailed") == 0) {
		char outcome[64] = "failed";
		get_str(ev->data, ev->data_len, "outcome", outcome, sizeof outcome);
		if (!get_str(ev->data, ev->data_len, "reason", buf, sizeof buf))
			buf[0] = '\0';
		char why[600];
		snprintf(why, sizeof why, "%s%s%s", outcome, buf[0] ? ": " : "", buf);
		set_error(t, p, why);
	}
}

static int add_event(struct trace *t, const cqrs_event *ev, cqrs_error *err)
{
	char causation[256] = "", tp[128];
	get_str(ev->metadata, ev->metadata_len, "causation_id", causation, sizeof causation);
	int parent = cause_of(t, ev, causation);
	if (parent == -2)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	char id[37], key[64], label[2 * CQRS_MAX_TYPE_NAME + 32];
	cqrs_uuid_format(ev->event_id, id);
	snprintf(key, sizeof key, "event:%s", id);
	snprintf(label, sizeof label, "%s %s #%lld", ev->aggregate_type, ev->event_type,
		 (long long)ev->sequence);
	if (find(t, key) >= 0)
		return 0;
	int k = node_get(t, NODE_EVENT, key, id, label, parent);
	if (k < 0)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	struct node *nd = &t->nodes[k];
	nd->ev = *ev;
	nd->ev.metadata = NULL;
	nd->ev.metadata_len = 0;
	nd->ev.data = NULL;
	nd->ev.data_len = 0;
	snprintf(nd->event_id, sizeof nd->event_id, "%s", id);
	cqrs_uuid_format(ev->aggregate_id, nd->aggregate_id);
	nd->start = nd->end = time_us(ev->timestamp, strlen(ev->timestamp));
	nd->first_seq = ev->sequence;
	if (get_str(ev->metadata, ev->metadata_len, "traceparent", tp, sizeof tp) &&
	    cqrs_traceparent_parse(tp, strlen(tp), &nd->tp, NULL) == 0) {
		nd->has_tp = true;
		if (!t->has_tp) {
			memcpy(t->trace_id, nd->tp.trace_id, sizeof t->trace_id);
			t->has_tp = true;
		}
		/* a command takes its caller's span as parent */
		if (parent >= 0 && t->nodes[parent].kind == NODE_COMMAND &&
		    !t->nodes[parent].has_tp) {
			t->nodes[parent].has_tp = true;
			t->nodes[parent].tp = nd->tp;
		}
	}
	if (strcmp(ev->aggregate_type, "Saga") == 0 && parent >= 0)
		saga_facts(t, parent, ev, ev->metadata, ev->metadata_len);
	return t->oom ? cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory") : 0;
}

static int read_events(struct trace *t, cqrs_store *st, cqrs_error *err)
{
	cqrs_filter f;
	memset(&f, 0, sizeof f);
	f.correlation_id = t->corr;
	cqrs_cursor *c = cqrs_store_read(st, &f, err);
	if (c == NULL)
		return -1;
	cqrs_event ev;
	int r;
	while ((r = cqrs_cursor_next(c, &ev, err)) == 1) {
		/* the first pass knows the sagas, so that what a saga caused
		 * finds its saga whatever the order of the events */
		if (strcmp(ev.aggregate_type, "Saga") == 0) {
			char sid[37];
			cqrs_uuid_format(ev.aggregate_id, sid);
			if (saga_node(t, sid) < 0) {
				r = cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
				break;
			}
		}
	}
	cqrs_cursor_close(c);
	if (r < 0)
		return -1;
	if ((c = cqrs_store_read(st, &f, err)) == NULL)
		return -1;
	while ((r = cqrs_cursor_next(c, &ev, err)) == 1)
		if (add_event(t, &ev, err) < 0) {
			r = -1;
			break;
		}
	cqrs_cursor_close(c);
	return r < 0 ? -1 : 0;
}

/* --- the tree ------------------------------------------------------------------------ */

static const struct trace *sort_trace;

static int by_time(const void *a, const void *b)
{
	const struct node *x = &sort_trace->nodes[*(const int *)a];
	const struct node *y = &sort_trace->nodes[*(const int *)b];
	if (x->first != y->first)
		return x->first < y->first ? -1 : 1;
	if (x->first_seq != y->first_seq)
		return x->first_seq < y->first_seq ? -1 : 1;
	return strcmp(x->key, y->key);
}

/* A node's span: its own times when it has them (an event's moment, a
 * step's run), else from the first to the last of its children's spans (a
 * command: its events; a saga: its steps and events).  Also the subtree's
 * lowest sequence, and the children in order. */
static void span_of(struct trace *t, int k, int depth)
{
	struct node *nd = &t->nodes[k];
	bool own = nd->start >= 0;
	nd->first = nd->start;
	nd->last = nd->end;
	if (nd->kind != NODE_EVENT)
		nd->first_seq = INT64_MAX;
	for (size_t i = 0; depth < 10000 && i < nd->nkids; i++) {
		span_of(t, nd->kids[i], depth + 1);
		nd = &t->nodes[k];
		const struct node *kid = &t->nodes[nd->kids[i]];
		if (!own && kid->first >= 0 && (nd->first < 0 || kid->first < nd->first))
			nd->first = kid->first;
		if (!own && kid->last > nd->last)
			nd->last = kid->last;
		if (kid->first_seq < nd->first_seq)
			nd->first_seq = kid->first_seq;
	}
	if (nd->last < nd->first)
		nd->last = nd->first;
	if (nd->nkids > 1) { /* qsort wants an array, and a leaf has none */
		sort_trace = t;
		qsort(nd->kids, nd->nkids, sizeof *nd->kids, by_time);
	}
}

static int link_children(struct trace *t, int **roots, size_t *nroots)
{
	size_t cap = 0;
	*roots = NULL;
	*nroots = 0;
	for (size_t i = 0; i < t->n; i++) {
		int p = t->nodes[i].parent;
		int **list = p < 0 ? roots : &t->nodes[p].kids;
		size_t *n = p < 0 ? nroots : &t->nodes[p].nkids;
		size_t *c = p < 0 ? &cap : &t->nodes[p].capkids;
		if (*n == *c) {
			size_t nc = *c ? *c * 2 : 4;
			int *q = realloc(*list, nc * sizeof *q);
			if (q == NULL)
				return -1;
			*list = q;
			*c = nc;
		}
		(*list)[(*n)++] = (int)i;
	}
	return 0;
}

/* --- output -------------------------------------------------------------------------- */

static void hex(FILE *out, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(out, "%02x", b[i]);
}

static void seconds(FILE *out, int64_t us)
{
	if (us < 0) {
		fputc('-', out);
		us = -us;
	}
	fprintf(out, "%lld.%06llds", (long long)(us / 1000000), (long long)(us % 1000000));
}

struct emit {
	struct trace *t;
	enum cqrs_trace_format fmt;
	FILE *out;
	bool first;
};

static void text_line(const struct emit *e, const struct node *nd, int depth, int64_t since)
{
	char when[CQRS_TIMESTAMP_LEN + 1];
	format_us(nd->first, when);
	fprintf(e->out, "%*s%s", 2 * depth, "", nd->label);
	if (nd->kind == NODE_EVENT)
		fprintf(e->out, " %s", nd->aggregate_id);
	fprintf(e->out, "  %s  +", when);
	seconds(e->out, since);
	if (nd->kind != NODE_EVENT) {
		fputs("  took ", e->out);
		seconds(e->out, nd->last - nd->first);
	}
	if (nd->error != NULL)
		fprintf(e->out, "  failed: %s", nd->error);
	fputc('\n', e->out);
}

static void json_str(FILE *out, const char *key, const char *s)
{
	fprintf(out, ",\"%s\":", key);
	cqrs_json_write_string(out, s, strlen(s));
}

static void ndjson_line(const struct emit *e, const struct node *nd, int depth, int64_t since)
{
	char a[CQRS_TIMESTAMP_LEN + 1], b[CQRS_TIMESTAMP_LEN + 1];
	FILE *out = e->out;
	format_us(nd->first, a);
	format_us(nd->last, b);
	fprintf(out, "{\"depth\":%d,\"kind\":\"%s\",\"span_id\":\"", depth, kind_names[nd->kind]);
	hex(out, nd->span_id, sizeof nd->span_id);
	fputs("\",\"parent_span_id\":", out);
	if (nd->parent >= 0) {
		fputc('"', out);
		hex(out, e->t->nodes[nd->parent].span_id, 8);
		fputc('"', out);
	} else {
		fputs("null", out);
	}
	json_str(out, "name", nd->label);
	fprintf(out,
		",\"start\":\"%s\",\"end\":\"%s\",\"since_cause_us\":%lld,\"duration_us\":%lld", a,
		b, (long long)since, (long long)(nd->last - nd->first));
	switch (nd->kind) {
	case NODE_EVENT:
		fprintf(out, ",\"sequence\":%lld", (long long)nd->ev.sequence);
		json_str(out, "event_id", nd->event_id);
		json_str(out, "event_type", nd->ev.event_type);
		json_str(out, "aggregate_type", nd->ev.aggregate_type);
		json_str(out, "aggregate_id", nd->aggregate_id);
		break;
	case NODE_COMMAND: json_str(out, "command_id", nd->id); break;
	case NODE_SAGA:
		json_str(out, "saga_id", nd->id);
		if (nd->saga_type != NULL)
			json_str(out, "saga_type", nd->saga_type);
		break;
	case NODE_STEP:
		json_str(out, "saga_id", nd->saga_id);
		json_str(out, "step", nd->id);
		break;
	}
	if (nd->error != NULL)
		json_str(out, "error", nd->error);
	fputs("}\n", out);
}

static void attr_str(FILE *out, bool *first, const char *key, const char *v)
{
	fprintf(out, "%s{\"key\":\"%s\",\"value\":{\"stringValue\":", *first ? "" : ",", key);
	cqrs_json_write_string(out, v, strlen(v));
	fputs("}}", out);
	*first = false;
}

/* OTLP/JSON (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding):
 * lowerCamelCase names, ids in hex, 64-bit integers as strings, enums as
 * numbers. */
static void otlp_span(const struct emit *e, const struct node *nd)
{
	/* SpanKind: 1 internal, 2 server (a command handled), 4 producer (an
	 * event published) */
	static const int kinds[] = { 2, 4, 1, 1 };
	FILE *out = e->out;
	fprintf(out, "%s{\"traceId\":\"", e->first ? "" : ",");
	hex(out, e->t->trace_id, 16);
	fputs("\",\"spanId\":\"", out);
	hex(out, nd->span_id, 8);
	fputc('"', out);
	if (nd->parent >= 0) {
		fputs(",\"parentSpanId\":\"", out);
		hex(out, e->t->nodes[nd->parent].span_id, 8);
		fputc('"', out);
	} else if (nd->has_tp && memcmp(nd->tp.trace_id, e->t->trace_id, 16) == 0) {
		/* the caller's span, from the traceparent the command came with */
		fputs(",\"parentSpanId\":\"", out);
		hex(out, nd->tp.parent_id, 8);
		fputc('"', out);
	}
	fputs(",\"name\":", out);
	const char *name = nd->kind == NODE_EVENT ? nd->ev.event_type : nd->label;
	cqrs_json_write_string(out, name, strlen(name));
	fprintf(out,
		",\"kind\":%d,\"startTimeUnixNano\":\"%lld000\",\"endTimeUnixNano\":\"%lld000\"",
		kinds[nd->kind], (long long)nd->first, (long long)nd->last);
	fputs(",\"attributes\":[", out);
	bool first = true;
	attr_str(out, &first, "cqrs.correlation_id", e->t->corr);
	switch (nd->kind) {
	case NODE_EVENT:
		attr_str(out, &first, "cqrs.event_type", nd->ev.event_type);
		attr_str(out, &first, "cqrs.aggregate_type", nd->ev.aggregate_type);
		attr_str(out, &first, "cqrs.aggregate_id", nd->aggregate_id);
		attr_str(out, &first, "cqrs.event_id", nd->event_id);
		fprintf(out, ",{\"key\":\"cqrs.sequence\",\"value\":{\"intValue\":\"%lld\"}}",
			(long long)nd->ev.sequence);
		break;
	case NODE_COMMAND: attr_str(out, &first, "cqrs.command_id", nd->id); break;
	case NODE_SAGA:
		attr_str(out, &first, "cqrs.saga_id", nd->id);
		if (nd->saga_type != NULL)
			attr_str(out, &first, "cqrs.saga_type", nd->saga_type);
		break;
	case NODE_STEP:
		attr_str(out, &first, "cqrs.saga_id", nd->saga_id);
		attr_str(out, &first, "cqrs.step", nd->id);
		break;
	}
	fputc(']', out);
	/* Status: 2 error */
	if (nd->error != NULL) {
		fputs(",\"status\":{\"message\":", out);
		cqrs_json_write_string(out, nd->error, strlen(nd->error));
		fputs(",\"code\":2}", out);
	}
	fputc('}', out);
}

static void walk(struct emit *e, int k, int depth, int64_t cause_first)
{
	const struct node *nd = &e->t->nodes[k];
	int64_t since = cause_first < 0 ? 0 : nd->first - cause_first;
	if (e->fmt == CQRS_TRACE_TEXT)
		text_line(e, nd, depth, since);
	else if (e->fmt == CQRS_TRACE_NDJSON)
		ndjson_line(e, nd, depth, since);
	else
		otlp_span(e, nd);
	e->first = false;
	for (size_t i = 0; depth < 10000 && i < nd->nkids; i++)
		walk(e, nd->kids[i], depth + 1, nd->first);
}

static void print(struct trace *t, const int *roots, size_t nroots, enum cqrs_trace_format fmt,
		  FILE *out)
{
	struct emit e = { t, fmt, out, true };
	if (fmt == CQRS_TRACE_TEXT) {
		fputs("trace ", out);
		hex(out, t->trace_id, 16);
		fputs("  correlation ", out);
		fputs(t->corr, out);
		fputc('\n', out);
	} else if (fmt == CQRS_TRACE_OTLP) {
		fputs("{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service."
		      "name\","
		      "\"value\":{\"stringValue\":\"cqrs-tools\"}}]},\"scopeSpans\":[{\"scope\":{"
		      "\"name\":\"cqrs-trace\",\"version\":\"" PACKAGE_VERSION "\"},\"spans\":[",
		      out);
	}
	for (size_t i = 0; i < nroots; i++)
		walk(&e, roots[i], 0, -1);
	if (fmt == CQRS_TRACE_OTLP)
		fputs("]}]}]}\n", out);
}

/* --- the API ------------------------------------------------------------------------- */

/* The correlation of the order (any aggregate will do): its first event's. */
static int correlation_of(cqrs_store *st, const uint8_t *id, char *out, size_t cap, cqrs_error *err)
{
	cqrs_filter f;
	memset(&f, 0, sizeof f);
	f.aggregate_id = id;
	f.limit = 1;
	cqrs_cursor *c = cqrs_store_read(st, &f, err);
	if (c == NULL)
		return -1;
	cqrs_event ev;
	char text[37];
	cqrs_uuid_format(id, text);
	int r = cqrs_cursor_next(c, &ev, err);
	if (r == 1 && !cqrs_event_correlation(&ev, out, cap))
		r = cqrs_fail(err, CQRS_EXIT_NOT_FOUND,
			      "order %s: its first event has no "
			      "correlation_id",
			      text);
	else if (r == 0)
		r = cqrs_fail(err, CQRS_EXIT_NOT_FOUND, "order %s: no such order in the store",
			      text);
	cqrs_cursor_close(c);
	return r < 0 ? -1 : 0;
}

int cqrs_trace_print(cqrs_store *st, const uint8_t *order_id, const char *correlation_id,
		     enum cqrs_trace_format fmt, FILE *out, cqrs_error *err)
{
	struct trace t;
	memset(&t, 0, sizeof t);
	if (order_id != NULL) {
		if (correlation_of(st, order_id, t.corr, sizeof t.corr, err) < 0)
			return -1;
	} else {
		snprintf(t.corr, sizeof t.corr, "%s", correlation_id);
	}
	int *roots = NULL;
	size_t nroots = 0;
	int rc = -1;
	if (read_events(&t, st, err) < 0)
		goto done;
	if (t.n == 0) {
		cqrs_fail(err, CQRS_EXIT_NOT_FOUND, "correlation '%s': no events", t.corr);
		goto done;
	}
	if (!t.has_tp) {
		/* no caller's trace: one derived from the correlation id, the
		 * same on every export */
		cqrs_trace_id_of_correlation(t.corr, t.trace_id);
	}
	if (link_children(&t, &roots, &nroots) < 0) {
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < nroots; i++)
		span_of(&t, roots[i], 0);
	sort_trace = &t;
	qsort(roots, nroots, sizeof *roots, by_time);
	print(&t, roots, nroots, fmt, out);
	rc = 0;
done:
	free(roots);
	trace_free(&t);
	return rc;
}
