/*
 * Seeing sagas: status (instances by status, the stuck ones, the
 * completion rate), one instance with its history, Graphviz pictures of a
 * definition and of one instance's path, and the manual retry of an
 * instance whose compensation failed.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "saga/saga_impl.h"
#include "banned.h"

static void json_kv(FILE *out, const char *k, const char *v, bool comma)
{
	fprintf(out, "%s\"%s\":", comma ? "," : "", k);
	if (v == NULL || *v == '\0')
		fputs("null", out);
	else
		cqrs_json_write_string(out, v, strlen(v));
}

/* --- status ------------------------------------------------------------------------------- */

struct status_out {
	FILE *out;
	enum cqrs_saga_format fmt;
	bool any;
};

/* Instances of each type by status and outcome, and the completion rate. */
static void print_counts(void *arg, const struct saga_type_counts *c)
{
	struct status_out *o = arg;
	FILE *out = o->out;
	o->any = true;
	int64_t finished = c->completed + c->failed;
	double rate = finished > 0 ? (double)c->completed * 100.0 / (double)finished : 0.0;
	if (o->fmt == CQRS_SAGA_NDJSON) {
		fputs("{", out);
		json_kv(out, "saga_type", c->saga_type, false);
		fprintf(out,
			",\"total\":%lld,\"RUNNING\":%lld,\"COMPENSATING\":%lld,"
			"\"COMPLETED\":%lld,\"FAILED\":%lld,\"compensated\":%lld,"
			"\"compensation_failed\":%lld,\"left_to_person\":%lld,"
			"\"cancelled\":%lld,\"completion_rate\":%.1f}\n",
			(long long)c->total, (long long)c->running, (long long)c->compensating,
			(long long)c->completed, (long long)c->failed, (long long)c->compensated,
			(long long)c->compensation_failed, (long long)c->left_to_person,
			(long long)c->cancelled, rate);
		return;
	}
	fprintf(out, "saga %s: %lld instances\n", c->saga_type, (long long)c->total);
	fprintf(out, "  RUNNING       %lld\n", (long long)c->running);
	fprintf(out, "  COMPENSATING  %lld\n", (long long)c->compensating);
	fprintf(out, "  COMPLETED     %lld\n", (long long)c->completed);
	fprintf(out, "  FAILED        %lld (compensated %lld, compensation failed %lld",
		(long long)c->failed, (long long)c->compensated, (long long)c->compensation_failed);
	/* the lifecycle's outcomes, when there are any (issue 8) */
	if (c->left_to_person > 0 || c->cancelled > 0)
		fprintf(out, ", left to a person %lld, cancelled %lld",
			(long long)c->left_to_person, (long long)c->cancelled);
	fputs(")\n", out);
	if (finished > 0)
		fprintf(out, "  completion rate %.1f%% (%lld of %lld finished)\n", rate,
			(long long)c->completed, (long long)finished);
	else
		fputs("  completion rate - (none finished)\n", out);
}

/* stuck: active with no change for stuck_us; needing attention: failed to
 * compensate, or left to a person */
static void print_attention(void *arg, const struct saga_attention *a)
{
	struct status_out *o = arg;
	FILE *out = o->out;
	if (o->fmt == CQRS_SAGA_NDJSON) {
		fputs("{\"stuck\":", out);
		fputs("{", out);
		json_kv(out, "saga_id", a->saga_id, false);
		json_kv(out, "saga_type", a->saga_type, true);
		json_kv(out, "status", a->status, true);
		fprintf(out, ",\"current_step\":%lld,\"attempts\":%lld", (long long)a->step,
			(long long)a->attempts);
		json_kv(out, "updated_at", a->updated_at, true);
		json_kv(out, "next_attempt_at", a->next_attempt_at, true);
		json_kv(out, "last_error", a->last_error, true);
		json_kv(out, "why", a->why, true);
		fputs("}}\n", out);
		return;
	}
	if (!o->any) {
		fputs("stuck or needing attention:\n", out);
		o->any = true;
	}
	bool person = strcmp(a->why, "left_to_person") == 0;
	fprintf(out, "  %s %s %s%s step %lld, %lld attempts, last change %s: %s\n", a->saga_id,
		a->saga_type, a->status, person ? " (left to a person)" : "", (long long)a->step,
		(long long)a->attempts, a->updated_at,
		*a->last_error ? a->last_error : "no error recorded");
}

int cqrs_saga_status(cqrs_store *st, FILE *out, enum cqrs_saga_format fmt, int64_t stuck_us,
		     cqrs_error *err)
{
	struct saga_db *db = saga_db_open(st, err);
	if (db == NULL)
		return -1;
	char limit[CQRS_TIMESTAMP_LEN + 1];
	saga_time_format(saga_now() - stuck_us, limit);
	struct status_out o = { out, fmt, false };
	int rc = saga_db_counts(db, limit, print_counts, &o, err);
	if (rc == 0 && !o.any && fmt == CQRS_SAGA_TEXT)
		fputs("no sagas\n", out);
	o.any = false;
	if (rc == 0)
		rc = saga_db_attention(db, limit, print_attention, &o, err);
	saga_db_close(db);
	return rc;
}

/* --- facts for monitoring (cqrs-health) ---------------------------------------------------- */

struct facts {
	void (*on_type)(void *, const struct cqrs_saga_counts *);
	void *arg;
};

static void fact_of_type(void *arg, const struct saga_type_counts *t)
{
	struct facts *f = arg;
	struct cqrs_saga_counts c = {
		.saga_type = t->saga_type,
		.running = t->running,
		.compensating = t->compensating,
		.completed = t->completed,
		.failed = t->failed,
		.compensation_failed = t->compensation_failed,
		.stuck = t->stuck,
	};
	f->on_type(f->arg, &c);
}

int cqrs_saga_facts(cqrs_store *st, int64_t stuck_us,
		    void (*on_type)(void *arg, const struct cqrs_saga_counts *c),
		    void (*on_breaker)(void *arg, const struct cqrs_saga_breaker *b), void *arg,
		    cqrs_error *err)
{
	struct saga_db *db = saga_db_open(st, err);
	if (db == NULL)
		return -1;
	char limit[CQRS_TIMESTAMP_LEN + 1];
	saga_time_format(saga_now() - stuck_us, limit);
	struct facts f = { on_type, arg };
	/* one read transaction: the counts and the breakers of one moment */
	int rc = saga_db_read_begin(db, err);
	if (rc == 0) {
		rc = saga_db_counts(db, limit, fact_of_type, &f, err) < 0 ||
				     saga_db_breakers(db, on_breaker, arg, err) < 0
			     ? -1
			     : 0;
		saga_db_read_end(db);
	}
	saga_db_close(db);
	return rc;
}

/* --- show ---------------------------------------------------------------------------------- */

static void fmt_time(int64_t us, char *buf)
{
	if (us <= 0)
		snprintf(buf, CQRS_TIMESTAMP_LEN + 1, "-");
	else
		saga_time_format(us, buf);
}

/* The saga's own events, oldest first: calls fn for each. */
static int history(cqrs_store *st, const char *id, void (*fn)(void *, const cqrs_event *),
		   void *arg, cqrs_error *err)
{
	uint8_t uid[CQRS_UUID_LEN];
	if (cqrs_uuid_parse(id, 36, uid) < 0)
		return 0;
	cqrs_filter f = { .aggregate_id = uid, .aggregate_type = "Saga" };
	cqrs_cursor *c = cqrs_store_read(st, &f, err);
	if (c == NULL)
		return -1;
	cqrs_event ev;
	int r;
	while ((r = cqrs_cursor_next(c, &ev, err)) == 1)
		fn(arg, &ev);
	cqrs_cursor_close(c);
	return r < 0 ? -1 : 0;
}

static void print_history_line(void *arg, const cqrs_event *ev)
{
	FILE *out = arg;
	char step[128] = "", reason[400] = "";
	const char *v;
	size_t vn;
	if (cqrs_json_get(ev->data, ev->data_len, "step", &v, &vn) ||
	    cqrs_json_get(ev->data, ev->data_len, "failed_step", &v, &vn))
		cqrs_json_string(v, vn, step, sizeof step);
	if (cqrs_json_get(ev->data, ev->data_len, "reason", &v, &vn))
		cqrs_json_string(v, vn, reason, sizeof reason);
	char how[32];
	if (cqrs_json_get(ev->data, ev->data_len, "reached", &v, &vn) &&
	    cqrs_json_string(v, vn, how, sizeof how) > 0)
		snprintf(reason, sizeof reason, "reached by someone else (%s)", how);
	if (step[0] == '\0' && reason[0] == '\0') {
		fprintf(out, "  %s %s\n", ev->timestamp, ev->event_type);
		return;
	}
	fprintf(out, "  %s %-25s %s%s%s\n", ev->timestamp, ev->event_type, step,
		*reason && *step ? ": " : "", reason);
}

int cqrs_saga_show(cqrs_store *st, const char *id, FILE *out, enum cqrs_saga_format fmt,
		   cqrs_error *err)
{
	struct saga_db *db = saga_db_open(st, err);
	if (db == NULL)
		return -1;
	struct saga_inst in = { 0 };
	int found = saga_db_load(db, id, &in, err);
	int rc = -1;
	if (found < 0)
		goto out;
	if (found == 0) {
		cqrs_fail(err, CQRS_EXIT_NOT_FOUND, "no saga '%s'", id);
		goto out;
	}
	char c[CQRS_TIMESTAMP_LEN + 1], u[CQRS_TIMESTAMP_LEN + 1], n[CQRS_TIMESTAMP_LEN + 1],
		dl[CQRS_TIMESTAMP_LEN + 1];
	fmt_time(in.created, c);
	fmt_time(in.updated, u);
	fmt_time(in.next_at, n);
	fmt_time(in.deadline, dl);
	if (fmt == CQRS_SAGA_NDJSON) {
		fputs("{", out);
		json_kv(out, "saga_id", in.id, false);
		json_kv(out, "saga_type", in.type, true);
		json_kv(out, "correlation_id", in.corr, true);
		json_kv(out, "status", saga_status_name(in.status), true);
		json_kv(out, "outcome", in.outcome, true);
		fprintf(out, ",\"current_step\":%lld,\"attempts\":%lld,\"start_sequence\":%lld",
			(long long)in.step, (long long)in.attempts, (long long)in.start_sequence);
		json_kv(out, "next_attempt_at", in.next_at ? n : NULL, true);
		json_kv(out, "deadline_at", in.deadline ? dl : NULL, true);
		json_kv(out, "last_error", in.last_error, true);
		json_kv(out, "created_at", c, true);
		json_kv(out, "updated_at", u, true);
		fputs(",\"state\":", out);
		fwrite(in.state.p, 1, in.state.len, out);
		fputs("}\n", out);
		rc = 0;
		goto out;
	}
	fprintf(out, "saga         %s\n", in.id);
	fprintf(out, "type         %s\n", in.type);
	fprintf(out, "correlation  %s\n", in.corr);
	fprintf(out, "status       %s%s%s%s\n", saga_status_name(in.status),
		*in.outcome ? " (" : "", in.outcome, *in.outcome ? ")" : "");
	fprintf(out, "step         %lld\n", (long long)in.step);
	fprintf(out, "attempts     %lld\n", (long long)in.attempts);
	fprintf(out, "next attempt %s\n", n);
	if (in.deadline)
		fprintf(out, "deadline     %s\n", dl);
	fprintf(out, "started      %s\n", c);
	fprintf(out, "updated      %s\n", u);
	if (in.last_error[0])
		fprintf(out, "last error   %s\n", in.last_error);
	fputs("history:\n", out);
	rc = history(st, in.id, print_history_line, out, err);
out:
	cqrs_strbuf_free(&in.state);
	saga_db_close(db);
	return rc;
}

/* --- retry ------------------------------------------------------------------------------------ */

int cqrs_saga_retry(cqrs_store *st, const char *id, cqrs_error *err)
{
	struct saga_db *db = saga_db_open(st, err);
	if (db == NULL)
		return -1;
	struct saga_inst in = { 0 };
	int rc = -1;
	if (cqrs_store_begin(st, err) < 0)
		goto out;
	int found = saga_db_load(db, id, &in, err);
	if (found <= 0) {
		if (found == 0)
			cqrs_fail(err, CQRS_EXIT_NOT_FOUND, "no saga '%s'", id);
		goto fail;
	}
	const char *what;
	if (in.status == SAGA_FAILED && strcmp(in.outcome, "compensation_failed") == 0) {
		in.status = SAGA_COMPENSATING;
		in.outcome[0] = '\0';
		in.attempts = 0;
		what = "compensation";
	} else if (in.status == SAGA_RUNNING || in.status == SAGA_COMPENSATING) {
		what = in.status == SAGA_RUNNING ? "step" : "compensation";
	} else {
		cqrs_fail(err, CQRS_EXIT_REJECTED, "saga %s is %s%s%s: nothing to retry", in.id,
			  saga_status_name(in.status), *in.outcome ? " and " : "", in.outcome);
		goto fail;
	}
	in.next_at = 0;
	in.updated = saga_now();
	int w = saga_db_update(db, &in, err);
	if (w == 0)
		cqrs_fail(err, CQRS_EXIT_TEMPFAIL,
			  "saga %s is being worked on by a runner or was changed meanwhile; try "
			  "again",
			  in.id);
	if (w <= 0)
		goto fail;
	struct cqrs_strbuf d = { 0 }, m = { 0 };
	cqrs_strbuf_puts(&d, "{\"saga_type\":");
	cqrs_strbuf_json_string(&d, in.type, strlen(in.type));
	cqrs_strbuf_printf(&d, ",\"what\":\"%s\"}", what);
	cqrs_strbuf_puts(&m, "{\"correlation_id\":");
	cqrs_strbuf_json_string(&m, in.corr, strlen(in.corr));
	cqrs_strbuf_puts(&m, ",\"causation_id\":");
	cqrs_strbuf_json_string(&m, in.id, strlen(in.id));
	cqrs_strbuf_puts(&m, ",\"user_id\":\"cqrs-saga\"}");
	cqrs_event ev;
	memset(&ev, 0, sizeof ev);
	cqrs_uuid_parse(in.id, 36, ev.aggregate_id);
	snprintf(ev.aggregate_type, sizeof ev.aggregate_type, "Saga");
	snprintf(ev.event_type, sizeof ev.event_type, "SagaRetryRequested");
	ev.event_version = 1;
	ev.expected_version = -1;
	ev.data = d.p;
	ev.data_len = d.len;
	ev.metadata = m.p;
	ev.metadata_len = m.len;
	int a = d.oom || m.oom ? cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory")
			       : cqrs_store_append(st, &ev, err);
	cqrs_strbuf_free(&d);
	cqrs_strbuf_free(&m);
	if (a < 0 || cqrs_store_commit(st, err) < 0)
		goto fail;
	rc = 0;
	goto out;
fail:
	cqrs_store_rollback(st);
out:
	cqrs_strbuf_free(&in.state);
	saga_db_close(db);
	return rc;
}

/* --- dot -------------------------------------------------------------------------------------- */

struct path {
	const cqrs_saga_def *d;
	/* per step: 1 done, 2 failed, 3 compensated, 4 compensation failed */
	int *mark;
	int end; /* 0 none, 1 completed, 2 failed, 3 on_failure done */
};

static int step_index(const cqrs_saga_def *d, const char *name)
{
	for (size_t i = 0; i < d->nsteps; i++)
		if (strcmp(d->steps[i].name, name) == 0)
			return (int)i;
	return -1;
}

static void path_event(void *arg, const cqrs_event *ev)
{
	struct path *p = arg;
	char step[128] = "";
	const char *v;
	size_t vn;
	if (cqrs_json_get(ev->data, ev->data_len, "step", &v, &vn))
		cqrs_json_string(v, vn, step, sizeof step);
	int i = step_index(p->d, step);
	const char *t = ev->event_type;
	if (strcmp(t, "SagaCompleted") == 0)
		p->end = 1;
	else if (strcmp(t, "SagaFailed") == 0)
		p->end = 2;
	if (i < 0)
		return;
	if (strcmp(t, "SagaStepCompleted") == 0)
		p->mark[i] = 1;
	else if (strcmp(t, "SagaStepFailed") == 0 && p->mark[i] == 0)
		p->mark[i] = 2;
	else if (strcmp(t, "SagaStepCompensated") == 0)
		p->mark[i] = 3;
	else if (strcmp(t, "SagaCompensationFailed") == 0)
		p->mark[i] = 4;
}

static void dot_label(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', out);
		if (*s == '\n') {
			fputs("\\n", out);
			continue;
		}
		fputc(*s, out);
	}
	fputc('"', out);
}

static void describe_action(const struct saga_action *a, char *buf, size_t cap)
{
	size_t n = 0;
	buf[0] = '\0';
	if (a->argv != NULL)
		n += (size_t)snprintf(buf + n, cap - n, "\nrun %s", a->argv[0]);
	if (a->command != NULL && n < cap) {
		const char *type = "command";
		for (size_t i = 0; i < a->command->n; i++)
			if (strcmp(a->command->keys[i], "type") == 0 &&
			    a->command->items[i]->kind == TPL_LITERAL)
				type = a->command->items[i]->text;
		char t[CQRS_MAX_TYPE_NAME + 1];
		if (*type == '"' && cqrs_json_string(type, strlen(type), t, sizeof t) > 0)
			type = t;
		n += (size_t)snprintf(buf + n, cap - n, "\n%s%s", type,
				      a->for_each ? " per item" : "");
	}
	for (size_t i = 0; i < a->nemit && n < cap; i++) {
		const struct tpl *e = a->emit[i];
		for (size_t k = 0; k < e->n; k++)
			if (strcmp(e->keys[k], "event_type") == 0 &&
			    e->items[k]->kind == TPL_LITERAL) {
				char t[CQRS_MAX_TYPE_NAME + 1];
				const char *x = e->items[k]->text;
				if (cqrs_json_string(x, strlen(x), t, sizeof t) > 0)
					n += (size_t)snprintf(buf + n, cap - n, "\nemit %s", t);
			}
	}
}

static void node_style(FILE *out, int mark, bool comp)
{
	static const char *const fill[] = { "white", "palegreen", "salmon", "orange", "red" };
	if (mark == 0) {
		fprintf(out, ", style=\"rounded%s\"", comp ? ",dashed" : "");
		return;
	}
	fprintf(out, ", style=\"rounded,filled%s\", fillcolor=%s, penwidth=2",
		comp ? ",dashed" : "", fill[mark]);
}

static int dot_one(const cqrs_saga_def *d, const struct path *p, FILE *out)
{
	fputs("digraph ", out);
	dot_label(out, d->name);
	fputs(" {\n\trankdir=LR;\n\tnode [shape=box, style=rounded, fontname=\"Helvetica\"];\n"
	      "\tedge [fontname=\"Helvetica\", fontsize=10];\n",
	      out);
	char label[1024], extra[512];
	snprintf(label, sizeof label, "%s", d->start_event_type);
	fputs("\tstart [shape=oval, label=", out);
	dot_label(out, label);
	fputs("];\n", out);
	for (size_t i = 0; i < d->nsteps; i++) {
		const struct saga_step *s = &d->steps[i];
		int m = p ? p->mark[i] : 0;
		if (s->is_wait) {
			char dl[32];
			saga_duration_format(s->deadline_us, dl, sizeof dl);
			snprintf(label, sizeof label, "%s\nwait for %s\nwithin %s", s->name,
				 s->wait_event_type, dl);
		} else {
			describe_action(&s->act, extra, sizeof extra);
			snprintf(label, sizeof label, "%s%s", s->name, extra);
		}
		fprintf(out, "\ts%zu [label=", i);
		dot_label(out, label);
		node_style(out, m == 3 || m == 4 ? 1 : m, false);
		fputs("];\n", out);
		if (s->comp.present) {
			describe_action(&s->comp, extra, sizeof extra);
			snprintf(label, sizeof label, "undo %s%s", s->name, extra);
			fprintf(out, "\tc%zu [label=", i);
			dot_label(out, label);
			node_style(out, m >= 3 ? m : 0, true);
			fputs("];\n", out);
		}
	}
	if (d->on_failure.present) {
		describe_action(&d->on_failure, extra, sizeof extra);
		snprintf(label, sizeof label, "on_failure%s", extra);
		fputs("\tonfail [label=", out);
		dot_label(out, label);
		node_style(out, p && p->end == 2 ? 3 : 0, true);
		fputs("];\n", out);
	}
	fprintf(out, "\tcompleted [shape=doublecircle, label=\"COMPLETED\"%s];\n",
		p && p->end == 1 ? ", style=filled, fillcolor=palegreen" : "");
	fprintf(out, "\tfailed [shape=doublecircle, label=\"FAILED\"%s];\n",
		p && p->end == 2 ? ", style=filled, fillcolor=salmon" : "");
	/* the way forward */
	fputs("\tstart -> s0;\n", out);
	for (size_t i = 0; i < d->nsteps; i++) {
		bool taken = p && p->mark[i] != 0 && p->mark[i] != 2;
		if (i + 1 < d->nsteps)
			fprintf(out, "\ts%zu -> s%zu%s;\n", i, i + 1, taken ? " [penwidth=2]" : "");
		else
			fprintf(out, "\ts%zu -> completed%s;\n", i, taken ? " [penwidth=2]" : "");
	}
	/* the way back: a failure at step i undoes the steps before it */
	for (size_t i = 0; i < d->nsteps; i++) {
		/* the nearest earlier step with a compensation, else the end */
		char target[32] = "";
		for (size_t j = i; j-- > 0;)
			if (d->steps[j].comp.present) {
				snprintf(target, sizeof target, "c%zu", j);
				break;
			}
		if (target[0] == '\0')
			snprintf(target, sizeof target, "%s",
				 d->on_failure.present ? "onfail" : "failed");
		fprintf(out, "\ts%zu -> %s [style=dashed, color=red, label=\"fails\"%s];\n", i,
			target, p && p->mark[i] == 2 ? ", penwidth=2" : "");
	}
	for (size_t i = 0; i < d->nsteps; i++) {
		if (!d->steps[i].comp.present)
			continue;
		char target[32] = "";
		for (size_t j = i; j-- > 0;)
			if (d->steps[j].comp.present) {
				snprintf(target, sizeof target, "c%zu", j);
				break;
			}
		if (target[0] == '\0')
			snprintf(target, sizeof target, "%s",
				 d->on_failure.present ? "onfail" : "failed");
		fprintf(out, "\tc%zu -> %s [style=dashed, color=red];\n", i, target);
	}
	if (d->on_failure.present)
		fputs("\tonfail -> failed [style=dashed, color=red];\n", out);
	fputs("}\n", out);
	return 0;
}

int cqrs_saga_dot(cqrs_store *st, cqrs_saga_def *const *defs, size_t ndefs, const char *id,
		  FILE *out, cqrs_error *err)
{
	if (id == NULL) {
		for (size_t i = 0; i < ndefs; i++)
			dot_one(defs[i], NULL, out);
		return 0;
	}
	struct saga_db *db = saga_db_open(st, err);
	if (db == NULL)
		return -1;
	struct saga_inst in = { 0 };
	int rc = -1;
	int found = saga_db_load(db, id, &in, err);
	if (found < 0)
		goto out;
	if (found == 0) {
		cqrs_fail(err, CQRS_EXIT_NOT_FOUND, "no saga '%s'", id);
		goto out;
	}
	const cqrs_saga_def *d = NULL;
	for (size_t i = 0; i < ndefs; i++)
		if (strcmp(defs[i]->name, in.type) == 0)
			d = defs[i];
	if (d == NULL) {
		cqrs_fail(err, CQRS_EXIT_CONFIG,
			  "saga %s is of type '%s', which no definition given defines", in.id,
			  in.type);
		goto out;
	}
	struct path p = { d, calloc(d->nsteps, sizeof(int)), 0 };
	if (p.mark == NULL) {
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		goto out;
	}
	if (history(st, in.id, path_event, &p, err) == 0)
		rc = dot_one(d, &p, out);
	free(p.mark);
out:
	cqrs_strbuf_free(&in.state);
	saga_db_close(db);
	return rc;
}
