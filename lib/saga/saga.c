/*
 * The saga engine: starts instances from events, moves each through its
 * steps, retries with backoff, compensates in reverse, and keeps every
 * change as events on the saga's own stream (aggregate type "Saga").
 *
 * Exactly once: an instance's new state, the events of its step and the
 * commands the step ran commit in one transaction, so a kill -9 leaves
 * either all of a step or none of it.  A step program runs outside any
 * transaction (it may take its whole timeout), and a step whose program
 * ran but whose result was not committed runs again with the same
 * idempotency key, which the program's service uses to deduplicate.
 */
#include "config.h"

#include <nettle/sha2.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "saga/saga_impl.h"
#include "banned.h"

#define DEFAULT_BATCH 256
#define MAX_POISON    64

/* A step action's result inside one transaction. */
enum act_kind {
	ACT_OK,
	ACT_RETRY,    /* may succeed later */
	ACT_FAIL,     /* will not */
	ACT_EXTERNAL, /* needs its program run first, outside the transaction */
	ACT_PARTIAL,  /* failed after some of its commands were applied */
	ACT_DEFER,    /* circuit open: try again later, not an attempt */
};

struct act_result {
	enum act_kind kind;
	enum act_kind underlying; /* of ACT_PARTIAL */
	bool reached;		  /* ACT_OK with no effect: every command found its goal held */
	bool person;		  /* a command was refused as a person's decision */
	char reason[512];
	int64_t not_before; /* ACT_RETRY / ACT_DEFER: no sooner than this */
	const char *output;
	size_t output_len;
};

/* A failure that rolled back the batch, remembered so that the retried
 * batch records it instead of running the step again. */
struct poison {
	char id[37];
	enum saga_status status;
	int64_t step, attempts;
	enum act_kind kind;
	char reason[512];
};

struct cqrs_saga_runner {
	cqrs_store *st;
	struct saga_db *db;
	cqrs_commander *cmd;
	cqrs_saga_def *const *defs;
	size_t ndefs;
	struct cqrs_saga_options opt;
	bool in_txn;
	int64_t now;
	char now_text[CQRS_TIMESTAMP_LEN + 1];
	/* the time the last look for due instances was made at: what fell
	 * due after it is still to do, whatever the time is when the run ends */
	int64_t scanned_at;
	int64_t changes; /* saves in this pass */
	struct poison poison[MAX_POISON];
	size_t npoison;
	struct cqrs_saga_stats stats;
	struct saga_inst inst;
	int64_t seen; /* start_new saw the starting events up to here */
	struct cqrs_strbuf buf, data, meta, out, state, output;
	struct exec_result exec;
	/* When the action whose outcome the next step event records began,
	 * by the wall clock of the events' timestamps (not CQRS_SAGA_NOW):
	 * that event's metadata carries it, for cqrs-trace(1).  "" none. */
	char step_started[CQRS_TIMESTAMP_LEN + 1];
};

/* snprintf for messages that may be cut short on purpose */
static void msgf(char *buf, size_t cap, const char *fmt, ...) CQRS_PRINTF(3, 4);

static void msgf(char *buf, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, cap, fmt, ap);
	va_end(ap);
}

int64_t cqrs_saga_now(void)
{
	return saga_now();
}

static void tick(struct cqrs_saga_runner *r)
{
	r->now = saga_now();
	saga_time_format(r->now, r->now_text);
}

static const cqrs_saga_def *def_of(struct cqrs_saga_runner *r, const char *type)
{
	for (size_t i = 0; i < r->ndefs; i++)
		if (strcmp(r->defs[i]->name, type) == 0)
			return r->defs[i];
	return NULL;
}

/* The ids of what the runner works on, members of the JSON log lines: the
 * saga, its correlation, and the step it does or undoes (d: NULL when the
 * step is not known here). */
static const struct saga_action *action_of(const cqrs_saga_def *d, const struct saga_inst *in,
					   const char **name, const char **dir);

static void log_context(const cqrs_saga_def *d, const struct saga_inst *in)
{
	const char *name = NULL, *dir;
	if (d != NULL &&
	    ((in->status == SAGA_RUNNING && in->step >= 0 && (size_t)in->step < d->nsteps) ||
	     (in->status == SAGA_COMPENSATING && in->step >= 0 && (size_t)in->step <= d->nsteps)))
		action_of(d, in, &name, &dir);
	cqrs_log_context_event(NULL); /* a command of the last step named these */
	cqrs_log_context_set(CQRS_LOG_SAGA, in->id);
	cqrs_log_context_set(CQRS_LOG_CORRELATION, in->corr);
	cqrs_log_context_set(CQRS_LOG_STEP, name);
}

static void say_at(struct cqrs_saga_runner *r, enum cqrs_log_level level,
		   const struct saga_inst *in, const char *fmt, va_list ap) CQRS_PRINTF(4, 0);

static void say_at(struct cqrs_saga_runner *r, enum cqrs_log_level level,
		   const struct saga_inst *in, const char *fmt, va_list ap)
{
	if (!r->opt.verbose)
		return;
	char msg[768];
	vsnprintf(msg, sizeof msg, fmt, ap);
	cqrs_log(level, "%s %s: %s", in->type, in->id, msg);
}

static void say(struct cqrs_saga_runner *r, const struct saga_inst *in, const char *fmt, ...)
	CQRS_PRINTF(3, 4);

static void say(struct cqrs_saga_runner *r, const struct saga_inst *in, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	say_at(r, CQRS_LOG_INFO, in, fmt, ap);
	va_end(ap);
}

/* -v: a step that failed, or a saga that did: level warning */
static void say_failure(struct cqrs_saga_runner *r, const struct saga_inst *in, const char *fmt,
			...) CQRS_PRINTF(3, 4);

static void say_failure(struct cqrs_saga_runner *r, const struct saga_inst *in, const char *fmt,
			...)
{
	va_list ap;
	va_start(ap, fmt);
	say_at(r, CQRS_LOG_WARNING, in, fmt, ap);
	va_end(ap);
}

/* --- transactions ---------------------------------------------------------------------- */

/* $CQRS_SAGA_CRASH_AT=N, a testing aid: the runner kills itself (SIGKILL)
 * at the Nth transaction boundary, counting each begin and each commit,
 * so that tests can show a crash anywhere loses nothing and repeats
 * nothing. */
static void crash_point(void)
{
	static int64_t at = -1, n;
	if (at < 0) {
		const char *e = getenv("CQRS_SAGA_CRASH_AT");
		if (e == NULL || cqrs_parse_int64(e, &at) < 0)
			at = 0;
	}
	if (at > 0 && ++n == at)
		raise(SIGKILL);
}

static int begin(struct cqrs_saga_runner *r, cqrs_error *err)
{
	crash_point();
	if (cqrs_commander_begin(r->cmd, err) < 0)
		return -1;
	r->in_txn = true;
	return 0;
}

static int commit(struct cqrs_saga_runner *r, cqrs_error *err)
{
	crash_point();
	r->in_txn = false;
	int rc = cqrs_commander_commit(r->cmd, err);
	crash_point();
	return rc;
}

static void rollback(struct cqrs_saga_runner *r)
{
	if (r->in_txn)
		cqrs_commander_rollback(r->cmd);
	r->in_txn = false;
}

/* --- JSON of the state ------------------------------------------------------------------ */

/* obj with member key set to val (added at the end when absent). */
static void set_member(const char *obj, size_t len, const char *key, const char *val, size_t vlen,
		       struct cqrs_strbuf *out)
{
	cqrs_strbuf_reset(out);
	cqrs_strbuf_putc(out, '{');
	size_t pos = 0;
	cqrs_json_member m;
	bool done = false, first = true;
	while (cqrs_json_next_member(obj, len, &pos, &m) == 1) {
		if (!first)
			cqrs_strbuf_putc(out, ',');
		first = false;
		cqrs_strbuf_putc(out, '"');
		cqrs_strbuf_put(out, m.key, m.key_len);
		cqrs_strbuf_put(out, "\":", 2);
		if (m.key_len == strlen(key) && memcmp(m.key, key, m.key_len) == 0) {
			cqrs_strbuf_put(out, val, vlen);
			done = true;
		} else {
			cqrs_strbuf_put(out, m.value, m.value_len);
		}
	}
	if (!done) {
		if (!first)
			cqrs_strbuf_putc(out, ',');
		cqrs_strbuf_json_string(out, key, strlen(key));
		cqrs_strbuf_putc(out, ':');
		cqrs_strbuf_put(out, val, vlen);
	}
	cqrs_strbuf_putc(out, '}');
}

static void state_set(struct cqrs_saga_runner *r, struct saga_inst *in, const char *key,
		      const char *val, size_t vlen)
{
	/* out of memory (here, or for the value: NULL): the state is not
	 * replaced by a part of it (a later step's ${event.*} would name
	 * nothing and fail it for good, make faultsweep saga alloc 4996; a
	 * member without its value, alloc 5459); save() ends with 71.  The
	 * mark stays: a later member set on the state it kept would forget the
	 * one it lost (a step's output or "reached" gone, the run ending 0) */
	if (in->state.oom)
		return;
	if (val != NULL)
		set_member(in->state.p, in->state.len, key, val, vlen, &r->state);
	if (val == NULL || r->state.oom) {
		in->state.oom = true;
		return;
	}
	cqrs_strbuf_reset(&in->state);
	cqrs_strbuf_put(&in->state, r->state.p, r->state.len);
}

static void state_set_step(struct cqrs_saga_runner *r, struct saga_inst *in, const char *name,
			   const char *output, size_t olen)
{
	const char *steps;
	size_t sl;
	if (!cqrs_json_get(in->state.p, in->state.len, "steps", &steps, &sl)) {
		steps = "{}";
		sl = 2;
	}
	struct cqrs_strbuf tmp = { 0 };
	set_member(steps, sl, name, output, olen, &tmp);
	state_set(r, in, "steps", tmp.oom ? NULL : tmp.p, tmp.len);
	cqrs_strbuf_free(&tmp);
}

/* --- events on the saga's stream ------------------------------------------------------------- */

/* The traceparent of the event that started the saga (kept in its state),
 * passed on to what the saga writes and the commands it issues, so that
 * the whole order is one trace (cqrs-trace(1)); "" when it had none. */
static void start_traceparent(const char *state, size_t len, char out[CQRS_TRACEPARENT_LEN + 1])
{
	const char *ev, *meta, *v;
	size_t evn, metan, vn;
	struct cqrs_traceparent tp;
	out[0] = '\0';
	if (state != NULL && cqrs_json_get(state, len, "event", &ev, &evn) &&
	    cqrs_json_get(ev, evn, "metadata", &meta, &metan) &&
	    cqrs_json_get(meta, metan, "traceparent", &v, &vn) && vn == CQRS_TRACEPARENT_LEN + 2 &&
	    cqrs_traceparent_parse(v + 1, vn - 2, &tp, NULL) == 0)
		memcpy(out, tp.text, sizeof tp.text);
}

/* The traceparent a step hands on, to its program (TRACEPARENT) and in its
 * commands: the order's trace, the step's own span as parent, as
 * cqrs-trace(1) exports them (key: the step's idempotency key).  Without
 * a traceparent at the start, the trace id cqrs-trace derives from the
 * correlation id, when always is set; else "". */
static void step_traceparent(const char *state, size_t len, const char *corr, const char *key,
			     bool always, char out[CQRS_TRACEPARENT_LEN + 1])
{
	struct cqrs_traceparent tp;
	start_traceparent(state, len, out);
	if (out[0] != '\0')
		cqrs_traceparent_parse(out, strlen(out), &tp, NULL);
	else if (always && corr != NULL && corr[0] != '\0') {
		cqrs_trace_id_of_correlation(corr, tp.trace_id);
		tp.flags = 1; /* sampled: the trace is the order's record */
	} else
		return;
	char span_key[160];
	uint8_t span[8];
	snprintf(span_key, sizeof span_key, "step:%s", key);
	cqrs_trace_span_id(span_key, span);
	cqrs_traceparent_format(tp.trace_id, span, tp.flags, out);
}

/* The metadata of an event the saga writes, with traceparent tp ("": none). */
static void metadata_with(struct cqrs_strbuf *m, const char *corr, const char *causation,
			  const char *tp, const char *step_started)
{
	cqrs_strbuf_reset(m);
	cqrs_strbuf_putc(m, '{');
	if (corr != NULL && *corr != '\0') {
		cqrs_strbuf_puts(m, "\"correlation_id\":");
		cqrs_strbuf_json_string(m, corr, strlen(corr));
		cqrs_strbuf_putc(m, ',');
	}
	cqrs_strbuf_puts(m, "\"causation_id\":");
	cqrs_strbuf_json_string(m, causation, strlen(causation));
	cqrs_strbuf_puts(m, ",\"user_id\":\"cqrs-saga\"");
	if (tp[0] != '\0')
		cqrs_strbuf_printf(m, ",\"traceparent\":\"%s\"", tp);
	if (step_started != NULL && step_started[0] != '\0') {
		char now[CQRS_TIMESTAMP_LEN + 1];
		cqrs_timestamp_now(now);
		cqrs_strbuf_printf(m, ",\"step_started_at\":\"%s\",\"step_ended_at\":\"%s\"",
				   step_started, now);
	}
	cqrs_strbuf_putc(m, '}');
}

/* step_started: the start of the action this event ends ("" or NULL: not
 * one), recorded with the end, now, as step_started_at / step_ended_at */
static void metadata(struct cqrs_strbuf *m, const char *corr, const char *causation,
		     const char *state, size_t state_len, const char *step_started)
{
	char tp[CQRS_TRACEPARENT_LEN + 1];
	start_traceparent(state, state_len, tp);
	metadata_with(m, corr, causation, tp, step_started);
}
static int append(struct cqrs_saga_runner *r, const uint8_t id[CQRS_UUID_LEN], const char *type,
		  const char *event_type, const struct cqrs_strbuf *data,
		  const struct cqrs_strbuf *meta, const uint8_t *event_id, cqrs_error *err)
{
	if (data->oom || meta->oom)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	cqrs_event ev;
	memset(&ev, 0, sizeof ev);
	memcpy(ev.aggregate_id, id, CQRS_UUID_LEN);
	snprintf(ev.aggregate_type, sizeof ev.aggregate_type, "%s", type);
	snprintf(ev.event_type, sizeof ev.event_type, "%s", event_type);
	ev.event_version = 1;
	ev.expected_version = -1;
	ev.data = data->p;
	ev.data_len = data->len;
	ev.metadata = meta->p;
	ev.metadata_len = meta->len;
	if (event_id != NULL) {
		memcpy(ev.event_id, event_id, CQRS_UUID_LEN);
		ev.has_event_id = true;
	}
	return cqrs_store_append(r->st, &ev, err) < 0 ? -1 : 0;
}

/* An event of the instance: data is r->data, which the caller filled
 * with the members after {"saga_type":..., */
static int saga_event(struct cqrs_saga_runner *r, struct saga_inst *in, const char *type,
		      cqrs_error *err)
{
	struct cqrs_strbuf d = { 0 };
	/* members the caller could not add (out of memory) fail the append,
	 * not leave the event without them (make faultsweep, saga alloc 4048:
	 * a SagaStarted without its start_sequence) */
	d.oom = r->data.oom;
	cqrs_strbuf_puts(&d, "{\"saga_type\":");
	cqrs_strbuf_json_string(&d, in->type, strlen(in->type));
	if (r->data.len > 0) {
		cqrs_strbuf_putc(&d, ',');
		cqrs_strbuf_put(&d, r->data.p, r->data.len);
	}
	cqrs_strbuf_putc(&d, '}');
	/* the events that end an attempt of an action say when it ran */
	static const char *const ends[] = { "SagaStepCompleted",	"SagaStepFailed",
					    "SagaStepCompensated",	"SagaCompensationFailed",
					    "SagaCompensationDeferred", "SagaFailureHandled" };
	const char *started = NULL;
	for (size_t i = 0; i < sizeof ends / sizeof *ends; i++)
		if (strcmp(type, ends[i]) == 0)
			started = r->step_started;
	metadata(&r->meta, in->corr, in->id, in->state.p, in->state.len, started);
	if (started != NULL)
		r->step_started[0] = '\0';
	uint8_t id[CQRS_UUID_LEN];
	cqrs_uuid_parse(in->id, 36, id);
	int rc = append(r, id, "Saga", type, &d, &r->meta, NULL, err);
	cqrs_strbuf_free(&d);
	cqrs_strbuf_reset(&r->data);
	return rc;
}

static void data_str(struct cqrs_saga_runner *r, const char *key, const char *val)
{
	if (r->data.len > 0)
		cqrs_strbuf_putc(&r->data, ',');
	cqrs_strbuf_json_string(&r->data, key, strlen(key));
	cqrs_strbuf_putc(&r->data, ':');
	cqrs_strbuf_json_string(&r->data, val, strlen(val));
}

static void data_int(struct cqrs_saga_runner *r, const char *key, int64_t v)
{
	if (r->data.len > 0)
		cqrs_strbuf_putc(&r->data, ',');
	cqrs_strbuf_printf(&r->data, "\"%s\":%lld", key, (long long)v);
}

static void data_time(struct cqrs_saga_runner *r, const char *key, int64_t us)
{
	char t[CQRS_TIMESTAMP_LEN + 1];
	saga_time_format(us, t);
	data_str(r, key, t);
}

/* --- saving --------------------------------------------------------------------------------- */

static int save(struct cqrs_saga_runner *r, struct saga_inst *in, cqrs_error *err)
{
	if (in->state.oom)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	in->updated = r->now;
	int w = saga_db_update(r->db, in, err);
	if (w < 0)
		return -1;
	if (w == 0)
		return cqrs_fail(err, CQRS_EXIT_TEMPFAIL,
				 "saga %s was changed by another runner meanwhile", in->id);
	r->changes++;
	return 0;
}

/* --- retries --------------------------------------------------------------------------------- */

/* Exponential backoff with "equal jitter": half the delay fixed, half
 * spread by a hash of the saga, step and attempt, so that sagas that
 * failed together do not come back together, yet every run computes the
 * same time for the same attempt. */
static int64_t backoff(const struct saga_retry *rt, const char *id, int64_t step, int64_t attempt)
{
	int64_t d = rt->backoff_us;
	for (int64_t i = 1; i < attempt && d < rt->max_backoff_us; i++)
		d *= 2;
	if (d > rt->max_backoff_us)
		d = rt->max_backoff_us;
	if (d <= 1)
		return d;
	struct sha256_ctx ctx;
	uint8_t h[SHA256_DIGEST_SIZE];
	char salt[64];
	snprintf(salt, sizeof salt, "/%lld/%lld", (long long)step, (long long)attempt);
	sha256_init(&ctx);
	sha256_update(&ctx, strlen(id), (const uint8_t *)id);
	sha256_update(&ctx, strlen(salt), (const uint8_t *)salt);
	sha256_digest(&ctx, sizeof h, h);
	uint64_t x;
	memcpy(&x, h, sizeof x);
	int64_t half = d / 2;
	return half + (int64_t)(x % (uint64_t)(d - half + 1));
}

/* --- actions -------------------------------------------------------------------------------- */

static const struct saga_action *action_of(const cqrs_saga_def *d, const struct saga_inst *in,
					   const char **name, const char **dir)
{
	if (in->status == SAGA_RUNNING) {
		*name = d->steps[in->step].name;
		*dir = "do";
		return &d->steps[in->step].act;
	}
	if (in->step == 0) {
		*name = "on_failure";
		*dir = "compensate";
		return &d->on_failure;
	}
	*name = d->steps[in->step - 1].name;
	*dir = "compensate";
	return &d->steps[in->step - 1].comp;
}

static void idempotency_key(const struct saga_inst *in, const char *name, const char *dir,
			    char *buf, size_t cap)
{
	if (strcmp(dir, "do") == 0)
		snprintf(buf, cap, "%s/%s", in->id, name);
	else if (strcmp(name, "on_failure") == 0)
		snprintf(buf, cap, "%s/on_failure", in->id);
	else
		snprintf(buf, cap, "%s/%s/compensate", in->id, name);
}

static void fill_ctx(struct tpl_ctx *c, struct cqrs_saga_runner *r, const struct saga_inst *in,
		     const char *step, const char *key)
{
	memset(c, 0, sizeof *c);
	c->state = in->state.p;
	c->state_len = in->state.len;
	c->saga_id = in->id;
	c->saga_type = in->type;
	c->correlation_id = in->corr;
	c->step = step;
	c->idempotency_key = key;
	c->attempt = in->attempts + 1;
	c->now = r->now_text;
}

static struct poison *poisoned(struct cqrs_saga_runner *r, const struct saga_inst *in)
{
	for (size_t i = 0; i < r->npoison; i++) {
		struct poison *p = &r->poison[i];
		if (strcmp(p->id, in->id) == 0 && p->status == in->status && p->step == in->step &&
		    p->attempts == in->attempts)
			return p;
	}
	return NULL;
}

static void set_poison(struct cqrs_saga_runner *r, const struct saga_inst *in,
		       const struct act_result *res)
{
	struct poison *p = poisoned(r, in);
	if (p == NULL) {
		if (r->npoison == MAX_POISON)
			r->npoison = 0; /* the oldest were recorded long since */
		p = &r->poison[r->npoison++];
	}
	snprintf(p->id, sizeof p->id, "%s", in->id);
	p->status = in->status;
	p->step = in->step;
	p->attempts = in->attempts;
	p->kind = res->underlying;
	msgf(p->reason, sizeof p->reason, "%s", res->reason);
}

/* What became of one command of a step. */
enum cmd_kind {
	CMD_REFUSED,   /* res says why and whether to retry */
	CMD_APPLIED,   /* accepted with events */
	CMD_NOTHING,   /* rejected, and accept_rejected says that is done */
	CMD_UNCHANGED, /* its goal already held: accepted with no events */
	CMD_PERSON,    /* rejected as a person's decision (code person_decision) */
};

/* Does the result line say s for key? */
static bool result_says(const cqrs_command_result *c, const char *key, const char *s)
{
	const char *v;
	size_t vn;
	char buf[64];
	return c->line != NULL && cqrs_json_get(c->line, c->len, key, &v, &vn) &&
	       cqrs_json_string(v, vn, buf, sizeof buf) > 0 && strcmp(buf, s) == 0;
}

/* One command of a step, in the open transaction: an enum cmd_kind, or -1
 * when the batch must end.  Every command goes out with if_needed and
 * automated (cqrs-command(1)): a goal someone else reached is no failure,
 * and the domain knows the saga from a person. */
static int run_command(struct cqrs_saga_runner *r, const struct saga_action *a,
		       const struct tpl_ctx *ctx, const char *key, size_t item,
		       struct act_result *res, cqrs_error *err)
{
	cqrs_strbuf_reset(&r->buf);
	cqrs_error terr = { 0 };
	if (tpl_render(a->command, ctx, &r->buf, &terr) < 0) {
		if (terr.code == CQRS_EXIT_OSERR) /* not the step's failure */
			return *err = terr, -1;
		res->kind = ACT_FAIL;
		msgf(res->reason, sizeof res->reason, "command: %s", terr.msg);
		return 0;
	}
	/* command_id and correlation_id unless the template gives them */
	const char *v;
	size_t vn;
	struct cqrs_strbuf *c = &r->out;
	cqrs_strbuf_reset(c);
	cqrs_strbuf_putc(c, '{');
	if (!cqrs_json_get(r->buf.p, r->buf.len, "command_id", &v, &vn))
		cqrs_strbuf_printf(c, "\"command_id\":\"saga:%s/%zu/%lld\",", key, item,
				   (long long)ctx->attempt);
	if (!cqrs_json_get(r->buf.p, r->buf.len, "correlation_id", &v, &vn) &&
	    ctx->correlation_id[0]) {
		cqrs_strbuf_puts(c, "\"correlation_id\":");
		cqrs_strbuf_json_string(c, ctx->correlation_id, strlen(ctx->correlation_id));
		cqrs_strbuf_putc(c, ',');
	}
	if (!cqrs_json_get(r->buf.p, r->buf.len, "user_id", &v, &vn))
		cqrs_strbuf_puts(c, "\"user_id\":\"cqrs-saga\",");
	char tp[CQRS_TRACEPARENT_LEN + 1];
	step_traceparent(ctx->state, ctx->state_len, ctx->correlation_id, key, false, tp);
	if (tp[0] != '\0' && !cqrs_json_get(r->buf.p, r->buf.len, "traceparent", &v, &vn))
		cqrs_strbuf_printf(c, "\"traceparent\":\"%s\",", tp);
	if (!cqrs_json_get(r->buf.p, r->buf.len, "if_needed", &v, &vn))
		cqrs_strbuf_puts(c, "\"if_needed\":true,");
	if (!cqrs_json_get(r->buf.p, r->buf.len, "automated", &v, &vn))
		cqrs_strbuf_puts(c, "\"automated\":true,");
	cqrs_strbuf_put(c, r->buf.p + 1, r->buf.len - 1);
	if (c->oom)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	cqrs_command_result cres;
	cqrs_error cerr = { 0 };
	if (cqrs_commander_handle(r->cmd, c->p, c->len, &cres, &cerr) < 0) {
		if (cerr.code == CQRS_EXIT_DATAERR) {
			res->kind = ACT_FAIL;
			msgf(res->reason, sizeof res->reason, "bad command: %s", cerr.msg);
			return CMD_REFUSED;
		}
		if (cerr.code == CQRS_EXIT_CONFLICT) {
			res->kind = ACT_RETRY;
			msgf(res->reason, sizeof res->reason, "%s", cerr.msg);
			return CMD_REFUSED;
		}
		*err = cerr;
		return -1;
	}
	/* the result line says it (cqrs-command(1)), whatever the status enum */
	int kind = CMD_APPLIED;
	if (result_says(&cres, "status", "unchanged"))
		kind = CMD_UNCHANGED;
	else if (cres.status == CQRS_COMMAND_ACCEPTED)
		kind = CMD_APPLIED;
	else if (result_says(&cres, "code", "person_decision"))
		kind = CMD_PERSON;
	else if (a->accept_rejected)
		kind = CMD_NOTHING;
	else {
		kind = CMD_REFUSED;
		res->kind = ACT_FAIL;
		msgf(res->reason, sizeof res->reason, "rejected: %s", cres.reason);
	}
	cqrs_command_result_free(&cres);
	return kind;
}

/* An emitted event: {aggregate_type, aggregate_id, event_type, data}. */
static int run_emit(struct cqrs_saga_runner *r, const struct tpl *t, const struct tpl_ctx *ctx,
		    const char *key, size_t index, struct act_result *res, cqrs_error *err)
{
	cqrs_strbuf_reset(&r->buf);
	cqrs_error terr = { 0 };
	char type[CQRS_MAX_TYPE_NAME + 1], etype[CQRS_MAX_TYPE_NAME + 1], idtext[64];
	const char *v;
	size_t vn;
	uint8_t id[CQRS_UUID_LEN];
	res->kind = ACT_FAIL;
	if (tpl_render(t, ctx, &r->buf, &terr) < 0) {
		if (terr.code == CQRS_EXIT_OSERR)
			return *err = terr, -1;
		msgf(res->reason, sizeof res->reason, "emit: %s", terr.msg);
		return 0;
	}
	if (!cqrs_json_get(r->buf.p, r->buf.len, "aggregate_type", &v, &vn) ||
	    cqrs_json_string(v, vn, type, sizeof type) <= 0 ||
	    !cqrs_type_name_valid(type, strlen(type)) ||
	    !cqrs_json_get(r->buf.p, r->buf.len, "event_type", &v, &vn) ||
	    cqrs_json_string(v, vn, etype, sizeof etype) <= 0 ||
	    !cqrs_type_name_valid(etype, strlen(etype)) ||
	    !cqrs_json_get(r->buf.p, r->buf.len, "aggregate_id", &v, &vn) ||
	    cqrs_json_string(v, vn, idtext, sizeof idtext) != 36 ||
	    cqrs_uuid_parse(idtext, 36, id) < 0) {
		msgf(res->reason, sizeof res->reason,
		     "emit: line %d: needs a type name in aggregate_type and event_type and "
		     "a UUID in aggregate_id",
		     t->line);
		return 0;
	}
	cqrs_strbuf_reset(&r->data);
	if (cqrs_json_get(r->buf.p, r->buf.len, "data", &v, &vn)) {
		if (vn == 0 || v[0] != '{') {
			msgf(res->reason, sizeof res->reason,
			     "emit: line %d: data must be an object", t->line);
			return 0;
		}
		cqrs_strbuf_put(&r->data, v, vn);
	} else {
		cqrs_strbuf_puts(&r->data, "{}");
	}
	/* an event the step emits: a span of the step, as its commands */
	char tp[CQRS_TRACEPARENT_LEN + 1];
	step_traceparent(ctx->state, ctx->state_len, ctx->correlation_id, key, false, tp);
	metadata_with(&r->meta, ctx->correlation_id, key, tp, NULL);
	/* the same event on every retry: the store keeps it once */
	char name[160], eid[37];
	snprintf(name, sizeof name, "%s/emit/%zu/%lld", key, index, (long long)ctx->attempt);
	saga_uuid(ctx->saga_id, name, strlen(name), eid);
	uint8_t event_id[CQRS_UUID_LEN];
	cqrs_uuid_parse(eid, 36, event_id);
	cqrs_error aerr = { 0 };
	int rc = append(r, id, type, etype, &r->data, &r->meta, event_id, &aerr);
	cqrs_strbuf_reset(&r->data);
	if (rc < 0) {
		if (aerr.code == CQRS_EXIT_DATAERR || aerr.code == CQRS_EXIT_CONFLICT) {
			msgf(res->reason, sizeof res->reason, "emit: %s", aerr.msg);
			res->kind = aerr.code == CQRS_EXIT_CONFLICT ? ACT_RETRY : ACT_FAIL;
			return 0;
		}
		*err = aerr;
		return -1;
	}
	res->kind = ACT_OK;
	return 1;
}

/* The in-process part of an action: its commands and events, in the open
 * transaction, after its program (if any) succeeded. */
static int run_local(struct cqrs_saga_runner *r, const struct saga_inst *in,
		     const struct saga_action *a, const char *name, const char *key,
		     struct act_result *res, cqrs_error *err)
{
	struct tpl_ctx ctx;
	fill_ctx(&ctx, r, in, name, key);
	ctx.output = res->output;
	ctx.output_len = res->output_len;
	int effects = 0, unchanged = 0;
	res->kind = ACT_OK;
	if (a->command != NULL) {
		struct cqrs_strbuf list = { 0 };
		size_t pos = 0, item = 0;
		const char *e = NULL;
		size_t en = 0;
		bool each = a->for_each != NULL;
		if (each) {
			cqrs_error terr = { 0 };
			if (tpl_render(a->for_each, &ctx, &list, &terr) < 0 || list.len == 0 ||
			    list.p[0] != '[') {
				cqrs_strbuf_free(&list);
				if (terr.code == CQRS_EXIT_OSERR)
					return *err = terr, -1;
				res->kind = ACT_FAIL;
				msgf(res->reason, sizeof res->reason, "for_each: %s",
				     terr.msg[0] ? terr.msg : "not a list");
				return 0;
			}
		}
		while (!each || cqrs_json_next_element(list.p, list.len, &pos, &e, &en) == 1) {
			ctx.item = e;
			ctx.item_len = en;
			int c = run_command(r, a, &ctx, key, item++, res, err);
			if (c < 0 || c == CMD_REFUSED) {
				cqrs_strbuf_free(&list);
				if (c < 0)
					return -1;
				goto refused;
			}
			effects += c == CMD_APPLIED;
			unchanged += c == CMD_UNCHANGED;
			if (c == CMD_PERSON)
				res->person = true;
			if (!each)
				break;
		}
		cqrs_strbuf_free(&list);
	}
	for (size_t i = 0; i < a->nemit; i++) {
		int c = run_emit(r, a->emit[i], &ctx, key, i, res, err);
		if (c < 0)
			return -1;
		if (c == 0)
			goto refused;
		effects++;
	}
	/* nothing of the saga's own was done: someone else reached the goal */
	res->reached = a->argv == NULL && effects == 0 && unchanged > 0;
	return 0;
refused:
	if (effects > 0) {
		res->underlying = res->kind;
		res->kind = ACT_PARTIAL;
	}
	return 0;
}

/* Does the current action of in as far as it can inside the transaction.
 * ext: the result of its program, when the caller just ran it. */
static int run_action(struct cqrs_saga_runner *r, const cqrs_saga_def *d, struct saga_inst *in,
		      const struct exec_result *ext, struct act_result *res, cqrs_error *err)
{
	const char *name, *dir;
	const struct saga_action *a = action_of(d, in, &name, &dir);
	memset(res, 0, sizeof *res);
	struct poison *p = poisoned(r, in);
	if (p != NULL) {
		res->kind = p->kind;
		msgf(res->reason, sizeof res->reason, "%s", p->reason);
		return 0;
	}
	if (!a->present) {
		res->kind = ACT_OK;
		return 0;
	}
	if (a->argv != NULL && ext == NULL) {
		res->kind = ACT_EXTERNAL;
		return 0;
	}
	if (ext != NULL) {
		if (ext->outcome != EXEC_OK) {
			res->kind = ext->outcome == EXEC_RETRY ? ACT_RETRY : ACT_FAIL;
			if (ext->not_called && in->status == SAGA_COMPENSATING)
				res->kind = ACT_DEFER;
			res->not_before = ext->not_before;
			msgf(res->reason, sizeof res->reason, "%s", ext->reason);
			return 0;
		}
		/* the program's output: one JSON object, or nothing */
		struct cqrs_strbuf *o = &r->output;
		cqrs_strbuf_reset(o);
		cqrs_strbuf_put(o, ext->out.p ? ext->out.p : "", ext->out.len);
		/* before an empty output becomes {}: an output lost for want of
		 * memory is not an empty one (the step's ${output.*} would name
		 * nothing and fail it for good) */
		if (o->oom)
			return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		size_t len = o->len;
		while (len > 0 && (o->p[len - 1] == '\n' || o->p[len - 1] == ' ' ||
				   o->p[len - 1] == '\r' || o->p[len - 1] == '\t'))
			len--;
		if (len == 0) {
			cqrs_strbuf_reset(o);
			cqrs_strbuf_puts(o, "{}");
			len = 2;
		}
		cqrs_error jerr = { 0 };
		if (cqrs_json_compact(o->p, &len, &jerr) < 0 || o->p[0] != '{') {
			/* out of memory is not the program's failure: 71 */
			if (jerr.code == CQRS_EXIT_OSERR)
				return *err = jerr, -1;
			res->kind = ACT_FAIL;
			msgf(res->reason, sizeof res->reason,
			     "exit status 0 but the output is not one JSON object%s%s",
			     jerr.msg[0] ? ": " : "", jerr.msg);
			return 0;
		}
		o->len = len;
		o->p[len] = '\0';
		res->output = o->p;
		res->output_len = len;
	}
	char key[128];
	idempotency_key(in, name, dir, key, sizeof key);
	return run_local(r, in, a, name, key, res, err);
}

/* --- waits ---------------------------------------------------------------------------------- */

/* 1 with the matching event's summary in r->out, 0 when none, -1 with *err, -2 when
 * the match cannot be rendered (res says why).  Without a match, the event
 * must carry the saga's correlation id; so too with one that names neither
 * aggregate_id nor correlation_id when need_key (a goal: an indexed look-up,
 * never a scan of every event of a type). */
static int match_event(struct cqrs_saga_runner *r, const struct saga_inst *in, char *const *types,
		       size_t ntypes, const char *aggregate_type, const struct tpl *match,
		       int64_t after, bool need_key, struct act_result *res, cqrs_error *err)
{
	/* several types: one read of the (few) events of the aggregate or
	 * correlation, the types checked here */
	cqrs_filter f = { .event_type = ntypes == 1 ? types[0] : NULL,
			  .aggregate_type = aggregate_type,
			  .after = after };
	uint8_t agg[CQRS_UUID_LEN];
	char corr[256];
	struct cqrs_strbuf m = { 0 };
	if (match != NULL) {
		struct tpl_ctx ctx;
		fill_ctx(&ctx, r, in, "", "");
		cqrs_error terr = { 0 };
		if (tpl_render(match, &ctx, &m, &terr) < 0) {
			if (terr.code == CQRS_EXIT_OSERR) {
				cqrs_strbuf_free(&m);
				return *err = terr, -1;
			}
			res->kind = ACT_FAIL;
			msgf(res->reason, sizeof res->reason, "match: %s", terr.msg);
			cqrs_strbuf_free(&m);
			return -2;
		}
		const char *v;
		size_t vn;
		if (cqrs_json_get(m.p, m.len, "aggregate_id", &v, &vn)) {
			char t[64];
			if (cqrs_json_string(v, vn, t, sizeof t) != 36 ||
			    cqrs_uuid_parse(t, 36, agg) < 0) {
				res->kind = ACT_FAIL;
				msgf(res->reason, sizeof res->reason,
				     "match: aggregate_id is not a UUID");
				cqrs_strbuf_free(&m);
				return -2;
			}
			f.aggregate_id = agg;
		}
		if (cqrs_json_get(m.p, m.len, "correlation_id", &v, &vn) &&
		    cqrs_json_string(v, vn, corr, sizeof corr) > 0)
			f.correlation_id = corr;
	}
	if (match == NULL || (need_key && f.aggregate_id == NULL && f.correlation_id == NULL))
		f.correlation_id = in->corr;
	cqrs_cursor *c = cqrs_store_read(r->st, &f, err);
	if (c == NULL) {
		cqrs_strbuf_free(&m);
		return -1;
	}
	cqrs_event ev;
	int rc, found = 0;
	while ((rc = cqrs_cursor_next(c, &ev, err)) == 1) {
		bool ok = ntypes == 1;
		for (size_t i = 0; !ok && i < ntypes; i++)
			ok = strcmp(ev.event_type, types[i]) == 0;
		size_t pos = 0;
		cqrs_json_member mem;
		while (ok && m.len > 0 && cqrs_json_next_member(m.p, m.len, &pos, &mem) == 1) {
			if (mem.key_len < 5 || memcmp(mem.key, "data.", 5) != 0)
				continue;
			char field[128];
			snprintf(field, sizeof field, "%.*s", (int)(mem.key_len - 5), mem.key + 5);
			const char *v;
			size_t vn;
			ok = cqrs_json_get(ev.data, ev.data_len, field, &v, &vn) &&
			     vn == mem.value_len && memcmp(v, mem.value, vn) == 0;
		}
		if (!ok)
			continue;
		char eid[37], aid[37];
		cqrs_uuid_format(ev.event_id, eid);
		cqrs_uuid_format(ev.aggregate_id, aid);
		cqrs_strbuf_reset(&r->out);
		cqrs_strbuf_printf(
			&r->out, "{\"sequence\":%lld,\"event_id\":\"%s\",\"aggregate_id\":\"%s\",",
			(long long)ev.sequence, eid, aid);
		cqrs_strbuf_puts(&r->out, "\"event_type\":");
		cqrs_strbuf_json_string(&r->out, ev.event_type, strlen(ev.event_type));
		cqrs_strbuf_puts(&r->out, ",\"data\":");
		cqrs_strbuf_put(&r->out, ev.data, ev.data_len);
		cqrs_strbuf_putc(&r->out, '}');
		/* the summary goes into the state as the step's output: never a
		 * part of it */
		if (r->out.oom)
			rc = cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		else
			found = 1;
		break;
	}
	cqrs_cursor_close(c);
	cqrs_strbuf_free(&m);
	if (rc < 0)
		return -1;
	return found;
}

/* A wait step's event, stored since the saga started. */
static int find_match(struct cqrs_saga_runner *r, const struct saga_step *s,
		      const struct saga_inst *in, struct act_result *res, cqrs_error *err)
{
	return match_event(r, in, &s->wait_event_type, 1, s->wait_aggregate_type, s->wait_match,
			   in->start_sequence, false, res, err);
}

/* Is one of the step's goals reached in the store, by anyone, at any
 * time?  1 with the event that shows it in r->out, 0 not, -2 a goal that
 * cannot be rendered (res), -1 error. */
static int goal_reached(struct cqrs_saga_runner *r, const struct saga_step *s,
			const struct saga_inst *in, struct act_result *res, cqrs_error *err)
{
	for (size_t i = 0; i < s->ngoals; i++) {
		const struct saga_goal *g = &s->goals[i];
		int m = match_event(r, in, g->event_types, g->ntypes, g->aggregate_type, g->match,
				    0, true, res, err);
		if (m != 0)
			return m;
	}
	return 0;
}

/* --- the state machine ------------------------------------------------------------------------ */

/* ADV_NEXT: the instance moved and may move on (inside advance only) */
enum adv { ADV_REST, ADV_EXTERNAL, ADV_PARTIAL, ADV_NEXT };

/* One call of advance: the definition, a program's result for the current
 * action (once), and whether the instance needs saving. */
struct adv_call {
	const cqrs_saga_def *d;
	const struct exec_result *ext;
	bool changed;
};

/* The state's flags: "reached" (steps someone else did), "cancelled",
 * "left_to_person". */
static bool state_has(const struct saga_inst *in, const char *key, const char *member)
{
	const char *v;
	size_t vn;
	if (!cqrs_json_get(in->state.p, in->state.len, key, &v, &vn))
		return false;
	if (member == NULL)
		return vn != 5 || memcmp(v, "false", 5) != 0;
	return vn > 0 && v[0] == '{' && cqrs_json_get(v, vn, member, &v, &vn);
}

static void state_mark_reached(struct cqrs_saga_runner *r, struct saga_inst *in, const char *name,
			       const char *how)
{
	const char *v;
	size_t vn;
	if (!cqrs_json_get(in->state.p, in->state.len, "reached", &v, &vn)) {
		v = "{}";
		vn = 2;
	}
	struct cqrs_strbuf val = { 0 }, tmp = { 0 };
	cqrs_strbuf_json_string(&val, how, strlen(how));
	set_member(v, vn, name, val.oom ? "" : val.p, val.len, &tmp);
	state_set(r, in, "reached", val.oom || tmp.oom ? NULL : tmp.p, tmp.len);
	cqrs_strbuf_free(&val);
	cqrs_strbuf_free(&tmp);
}

static int start_compensation(struct cqrs_saga_runner *r, struct saga_inst *in, const char *step,
			      const char *reason, cqrs_error *err)
{
	in->status = SAGA_COMPENSATING;
	in->attempts = 0;
	in->next_at = 0;
	in->deadline = 0;
	msgf(in->last_error, sizeof in->last_error, "%s%s%s", step, *step ? ": " : "", reason);
	/* short enough for a command's reason field (CancelOrder) */
	size_t n = strlen(in->last_error);
	if (n > 200) {
		n = 200;
		while (n > 0 && ((unsigned char)in->last_error[n] & 0xc0) == 0x80)
			n--;
	}
	struct cqrs_strbuf t = { 0 };
	cqrs_strbuf_json_string(&t, in->last_error, n);
	state_set(r, in, "reason", t.p, t.len);
	cqrs_strbuf_free(&t);
	if (*step)
		data_str(r, "failed_step", step);
	data_str(r, "reason", reason);
	say(r, in, "compensating: %s", in->last_error);
	return saga_event(r, in, "SagaCompensationStarted", err);
}

static int finish(struct cqrs_saga_runner *r, struct saga_inst *in, enum saga_status status,
		  const char *outcome, cqrs_error *err)
{
	in->status = status;
	in->next_at = 0;
	in->deadline = 0;
	snprintf(in->outcome, sizeof in->outcome, "%s", outcome);
	if (status == SAGA_COMPLETED) {
		r->stats.completed++;
		cqrs_metrics_add(
			cqrs_metrics_series(CQRS_METRIC_SAGA_FINISHED, in->type, "completed"), 1);
		say(r, in, "completed");
		return saga_event(r, in, "SagaCompleted", err);
	}
	bool compensated = strcmp(outcome, "compensation_failed") != 0;
	if (compensated)
		r->stats.compensated++;
	else
		r->stats.failed++;
	cqrs_metrics_add(cqrs_metrics_series(CQRS_METRIC_SAGA_FINISHED, in->type,
					     compensated ? "compensated" : "failed"),
			 1);
	data_str(r, "outcome", outcome);
	data_str(r, "reason", in->last_error);
	say_failure(r, in, "failed (%s)", outcome);
	return saga_event(r, in, "SagaFailed", err);
}

/* The end of a compensation: why the saga stopped decides its outcome. */
static int finish_compensated(struct cqrs_saga_runner *r, struct saga_inst *in, cqrs_error *err)
{
	const char *outcome = state_has(in, "cancelled", NULL)	      ? "cancelled"
			      : state_has(in, "left_to_person", NULL) ? "left_to_person"
								      : "compensated";
	return finish(r, in, SAGA_FAILED, outcome, err);
}

/* A failed attempt of a step or compensation: schedule the next one or
 * give up.  Returns 1 when it gave up. */
static int failed_attempt(struct cqrs_saga_runner *r, const struct saga_action *a,
			  struct saga_inst *in, const char *name, bool compensating,
			  const struct act_result *res, bool retryable, cqrs_error *err)
{
	in->attempts++;
	msgf(in->last_error, sizeof in->last_error, "%s: %s", name, res->reason);
	bool again = retryable && in->attempts < a->retry.max_attempts;
	data_str(r, "step", name);
	data_int(r, "attempt", in->attempts);
	data_str(r, "reason", res->reason);
	if (again) {
		int64_t at = r->now + backoff(&a->retry, in->id, in->step, in->attempts);
		if (res->not_before > at)
			at = res->not_before;
		in->next_at = at;
		data_time(r, "retry_at", at);
		r->stats.retries++;
	}
	say_failure(r, in, "%s of %s failed (attempt %lld): %s%s",
		    compensating ? "compensation" : "step", name, (long long)in->attempts,
		    res->reason, again ? "; will retry" : "");
	if (saga_event(r, in, compensating ? "SagaCompensationFailed" : "SagaStepFailed", err) < 0)
		return -1;
	return again ? 0 : 1;
}

/* The current step is done: by the saga, or (reached: "goal" or
 * "unchanged") by someone else, when it has nothing of its own to undo. */
static int step_done(struct cqrs_saga_runner *r, struct adv_call *av, struct saga_inst *in,
		     const char *output, size_t olen, const char *reached, cqrs_error *err)
{
	const char *name = av->d->steps[in->step].name;
	state_set_step(r, in, name, output, olen);
	if (reached != NULL)
		state_mark_reached(r, in, name, reached);
	data_str(r, "step", name);
	data_int(r, "index", in->step + 1);
	data_int(r, "attempt", in->attempts + 1);
	if (reached != NULL)
		data_str(r, "reached", reached);
	say(r, in, "step %s completed%s", name, reached ? " (reached already)" : "");
	if (saga_event(r, in, "SagaStepCompleted", err) < 0)
		return -1;
	in->step++;
	in->attempts = 0;
	in->next_at = 0;
	in->deadline = 0;
	av->changed = true;
	return ADV_NEXT;
}

/* A failed attempt, and what follows when it was the last: a step gives
 * way to compensation, a compensation leaves the saga for a person. */
static int attempt_failed(struct cqrs_saga_runner *r, struct saga_inst *in,
			  const struct saga_action *a, const char *name,
			  const struct act_result *res, cqrs_error *err)
{
	bool comp = in->status == SAGA_COMPENSATING;
	/* compensations retry whatever the failure, a step only when it may
	 * succeed later */
	int gave_up =
		failed_attempt(r, a, in, name, comp, res, comp || res->kind == ACT_RETRY, err);
	if (gave_up <= 0)
		return gave_up < 0 ? -1 : ADV_REST;
	if (!comp) {
		char why[512];
		if (res->kind == ACT_RETRY)
			msgf(why, sizeof why, "gave up after %lld attempts: %s",
			     (long long)in->attempts, res->reason);
		else
			msgf(why, sizeof why, "%s", res->reason);
		return start_compensation(r, in, name, why, err) < 0 ? -1 : ADV_NEXT;
	}
	msgf(in->last_error, sizeof in->last_error,
	     "compensation of %s failed after %lld attempts: %s", name, (long long)in->attempts,
	     res->reason);
	cqrs_warn("saga %s %s: %s; it needs attention (cqrs-saga show %s)", in->type, in->id,
		  in->last_error, in->id);
	return finish(r, in, SAGA_FAILED, "compensation_failed", err) < 0 ? -1 : ADV_REST;
}

/* RUNNING past the last step */
static int adv_complete(struct cqrs_saga_runner *r, struct adv_call *av, struct saga_inst *in,
			cqrs_error *err)
{
	av->changed = true;
	return finish(r, in, SAGA_COMPLETED, "completed", err) < 0 ? -1 : ADV_REST;
}

/* RUNNING at a wait step (WAITING): its event, or its deadline. */
static int adv_wait(struct cqrs_saga_runner *r, struct adv_call *av, struct saga_inst *in,
		    cqrs_error *err)
{
	const struct saga_step *s = &av->d->steps[in->step];
	struct act_result res = { 0 };
	if (in->deadline == 0) {
		in->deadline = r->now + s->deadline_us;
		in->next_at = in->deadline;
		data_str(r, "step", s->name);
		data_str(r, "event_type", s->wait_event_type);
		data_time(r, "deadline", in->deadline);
		if (saga_event(r, in, "SagaStepWaiting", err) < 0)
			return -1;
		av->changed = true;
	}
	int m = find_match(r, s, in, &res, err);
	if (m == -1)
		return -1;
	if (m == 1)
		return step_done(r, av, in, r->out.p, r->out.len, NULL, err);
	if (m == 0 && r->now < in->deadline)
		return ADV_REST;
	if (m == 0) {
		char dl[CQRS_TIMESTAMP_LEN + 1];
		saga_time_format(in->deadline, dl);
		msgf(res.reason, sizeof res.reason, "deadline %s passed with no %s", dl,
		     s->wait_event_type);
	}
	in->attempts++;
	data_str(r, "step", s->name);
	data_int(r, "attempt", in->attempts);
	data_str(r, "reason", res.reason);
	av->changed = true;
	if (saga_event(r, in, "SagaStepFailed", err) < 0 ||
	    start_compensation(r, in, s->name, res.reason, err) < 0)
		return -1;
	return ADV_NEXT;
}

/* Runs the action of the instance's current step or compensation (or
 * takes the external result av carries): -1 on error, ADV_EXTERNAL or
 * ADV_PARTIAL when the advance stops there (neither is 0), else 0 with
 * *res to act on. */
static int act(struct cqrs_saga_runner *r, struct adv_call *av, struct saga_inst *in,
	       struct act_result *res, cqrs_error *err)
{
	/* an in-process action starts now; a program's run started in
	 * run_external */
	if (av->ext == NULL)
		cqrs_timestamp_now(r->step_started);
	if (run_action(r, av->d, in, av->ext, res, err) < 0)
		return -1;
	av->ext = NULL;
	if (res->kind == ACT_EXTERNAL) {
		r->step_started[0] = '\0';
		return ADV_EXTERNAL;
	}
	if (res->kind == ACT_PARTIAL) {
		set_poison(r, in, res);
		return ADV_PARTIAL;
	}
	av->changed = true;
	r->stats.steps++;
	return 0;
}

/* RUNNING at an action step: its goal reached already, else its action. */
static int adv_step(struct cqrs_saga_runner *r, struct adv_call *av, struct saga_inst *in,
		    cqrs_error *err)
{
	const struct saga_step *s = &av->d->steps[in->step];
	struct act_result res = { 0 };
	if (av->ext == NULL && s->ngoals > 0) {
		int g = goal_reached(r, s, in, &res, err);
		if (g == -1)
			return -1;
		if (g == 1)
			return step_done(r, av, in, r->out.p, r->out.len, "goal", err);
		if (g == -2) {
			av->changed = true;
			return attempt_failed(r, in, &s->act, s->name, &res, err);
		}
	}
	int acted = act(r, av, in, &res, err);
	if (acted != 0)
		return acted;
	if (res.kind == ACT_OK)
		return step_done(r, av, in, res.output ? res.output : "{}",
				 res.output ? res.output_len : 2, res.reached ? "unchanged" : NULL,
				 err);
	return attempt_failed(r, in, &s->act, s->name, &res, err);
}

/* COMPENSATING: undo the step below in->step, or at 0 the on_failure
 * action, skipping what the saga did not do itself. */
static int adv_compensate(struct cqrs_saga_runner *r, struct adv_call *av, struct saga_inst *in,
			  cqrs_error *err)
{
	const char *name, *dir;
	const struct saga_action *a = action_of(av->d, in, &name, &dir);
	bool skip = !a->present || (in->step > 0 && state_has(in, "reached", name)) ||
		    (in->step == 0 && state_has(in, "cancelled", NULL));
	if (skip) {
		av->changed = true;
		if (in->step == 0)
			return finish_compensated(r, in, err) < 0 ? -1 : ADV_REST;
		in->step--;
		return ADV_NEXT;
	}
	struct act_result res;
	int acted = act(r, av, in, &res, err);
	if (acted != 0)
		return acted;
	if (res.kind == ACT_DEFER) {
		in->next_at = res.not_before;
		data_str(r, "step", name);
		data_str(r, "reason", res.reason);
		data_time(r, "retry_at", in->next_at);
		return saga_event(r, in, "SagaCompensationDeferred", err) < 0 ? -1 : ADV_REST;
	}
	if (res.kind != ACT_OK)
		return attempt_failed(r, in, a, name, &res, err);
	/* the order is a person's: the saga leaves it as they left it */
	if (res.person)
		state_set(r, in, "left_to_person", "true", 4);
	data_str(r, "step", name);
	data_int(r, "attempt", in->attempts + 1);
	if (res.person)
		data_str(r, "reason", "left to a person: their decision stands");
	say(r, in, "compensated %s", name);
	if (saga_event(r, in, in->step == 0 ? "SagaFailureHandled" : "SagaStepCompensated", err) <
	    0)
		return -1;
	in->attempts = 0;
	in->next_at = 0;
	if (in->step == 0)
		return finish_compensated(r, in, err) < 0 ? -1 : ADV_REST;
	in->step--;
	return ADV_NEXT;
}

/* Moves in forward inside the open transaction until it rests (done,
 * waiting, retrying later) or needs a program run; then saves it.  One
 * function per state: RUNNING past the end, at a wait, at an action;
 * COMPENSATING. */
static int advance(struct cqrs_saga_runner *r, struct saga_inst *in, const struct exec_result *ext,
		   cqrs_error *err)
{
	struct adv_call av = { def_of(r, in->type), ext, false };
	const cqrs_saga_def *d = av.d;
	if (d == NULL)
		return ADV_REST; /* a saga type this runner was not given */
	if (in->step < 0 || (size_t)in->step > d->nsteps)
		return cqrs_fail(err, CQRS_EXIT_DATAERR, "saga %s: step %lld is not in '%s'",
				 in->id, (long long)in->step, d->path);
	for (;;) {
		int rc;
		log_context(d, in);
		if (in->status == SAGA_RUNNING && (size_t)in->step == d->nsteps)
			rc = adv_complete(r, &av, in, err);
		else if (in->status == SAGA_RUNNING && d->steps[in->step].is_wait)
			rc = adv_wait(r, &av, in, err);
		else if (in->status == SAGA_RUNNING)
			rc = adv_step(r, &av, in, err);
		else if (in->status == SAGA_COMPENSATING)
			rc = adv_compensate(r, &av, in, err);
		else
			rc = ADV_REST;
		if (rc < 0 || rc == ADV_PARTIAL)
			return rc;
		if (rc == ADV_NEXT)
			continue;
		if (av.changed && save(r, in, err) < 0)
			return -1;
		return rc;
	}
}

/* --- circuit breakers ---------------------------------------------------------------------------
 */

static int breaker_event(struct cqrs_saga_runner *r, const char *name, const char *type,
			 const struct breaker_row *b, const struct saga_inst *in, cqrs_error *err)
{
	char id[37];
	saga_uuid("circuit-breaker", name, strlen(name), id);
	uint8_t uid[CQRS_UUID_LEN];
	cqrs_uuid_parse(id, 36, uid);
	cqrs_strbuf_reset(&r->data);
	cqrs_strbuf_puts(&r->data, "{\"name\":");
	cqrs_strbuf_json_string(&r->data, name, strlen(name));
	cqrs_strbuf_printf(&r->data, ",\"failures\":%lld}", (long long)b->failures);
	metadata(&r->meta, in->corr, in->id, in->state.p, in->state.len, NULL);
	int rc = append(r, uid, "CircuitBreaker", type, &r->data, &r->meta, NULL, err);
	cqrs_strbuf_reset(&r->data);
	return rc;
}

/* Before a call: may it go out?  0 yes, 1 no (res says until when). */
static int breaker_check(struct cqrs_saga_runner *r, const struct saga_action *a,
			 const struct saga_inst *in, bool *probe, struct act_result *res,
			 cqrs_error *err)
{
	*probe = false;
	if (a->breaker.failures == 0 || a->breaker.name == NULL)
		return 0;
	struct breaker_row b;
	if (saga_db_breaker_get(r->db, a->breaker.name, &b, err) < 0)
		return -1;
	if (b.state == BREAKER_CLOSED)
		return 0;
	int64_t reopen = b.opened_at + a->breaker.cooldown_us;
	if (b.state == BREAKER_OPEN && r->now < reopen) {
		res->not_before = reopen;
		msgf(res->reason, sizeof res->reason,
		     "circuit breaker '%s' is open after %lld failures; not called",
		     a->breaker.name, (long long)b.failures);
		return 1;
	}
	/* cooled down: this call is the one probe */
	*probe = true;
	if (b.state == BREAKER_OPEN) {
		b.state = BREAKER_HALF_OPEN;
		if (saga_db_breaker_put(r->db, a->breaker.name, &b, r->now, err) < 0 ||
		    breaker_event(r, a->breaker.name, "CircuitBreakerHalfOpened", &b, in, err) < 0)
			return -1;
	}
	return 0;
}

/* After a call: a retryable failure counts against the service, anything
 * else shows it is up. */
static int breaker_record(struct cqrs_saga_runner *r, const struct saga_action *a,
			  const struct saga_inst *in, const struct exec_result *x, cqrs_error *err)
{
	if (a->breaker.failures == 0 || a->breaker.name == NULL)
		return 0;
	struct breaker_row b;
	if (saga_db_breaker_get(r->db, a->breaker.name, &b, err) < 0)
		return -1;
	enum breaker_state was = b.state;
	if (x->outcome == EXEC_RETRY) {
		b.failures++;
		if (was == BREAKER_HALF_OPEN ||
		    (was == BREAKER_CLOSED && b.failures >= a->breaker.failures)) {
			b.state = BREAKER_OPEN;
			b.opened_at = r->now;
		}
	} else {
		if (was == BREAKER_CLOSED && b.failures == 0)
			return 0;
		b.state = BREAKER_CLOSED;
		b.failures = 0;
		b.opened_at = 0;
	}
	if (saga_db_breaker_put(r->db, a->breaker.name, &b, r->now, err) < 0)
		return -1;
	if (b.state == BREAKER_OPEN && was != BREAKER_OPEN) {
		cqrs_warn("circuit breaker '%s' opened after %lld failures", a->breaker.name,
			  (long long)b.failures);
		return breaker_event(r, a->breaker.name, "CircuitBreakerOpened", &b, in, err);
	}
	if (b.state == BREAKER_CLOSED && was != BREAKER_CLOSED)
		return breaker_event(r, a->breaker.name, "CircuitBreakerClosed", &b, in, err);
	return 0;
}

/* --- external steps ------------------------------------------------------------------------------
 */

static int build_input(struct cqrs_saga_runner *r, const struct saga_inst *in,
		       const struct saga_action *a, const char *name, const char *dir,
		       const char *key, struct cqrs_strbuf *out, char *reason, size_t cap)
{
	struct tpl_ctx ctx;
	fill_ctx(&ctx, r, in, name, key);
	cqrs_strbuf_reset(out);
	cqrs_strbuf_puts(out, "{\"idempotency_key\":");
	cqrs_strbuf_json_string(out, key, strlen(key));
	cqrs_strbuf_puts(out, ",\"saga_id\":");
	cqrs_strbuf_json_string(out, in->id, strlen(in->id));
	cqrs_strbuf_puts(out, ",\"saga_type\":");
	cqrs_strbuf_json_string(out, in->type, strlen(in->type));
	cqrs_strbuf_puts(out, ",\"step\":");
	cqrs_strbuf_json_string(out, name, strlen(name));
	cqrs_strbuf_printf(out, ",\"action\":\"%s\",\"attempt\":%lld,\"correlation_id\":", dir,
			   (long long)(in->attempts + 1));
	cqrs_strbuf_json_string(out, in->corr, strlen(in->corr));
	cqrs_strbuf_puts(out, ",\"input\":");
	cqrs_error terr = { 0 };
	if (a->input == NULL)
		cqrs_strbuf_puts(out, "{}");
	else if (tpl_render(a->input, &ctx, out, &terr) < 0) {
		/* out of memory: the caller's check of out->oom ends the run
		 * with 71, not the step for good */
		if (terr.code == CQRS_EXIT_OSERR)
			return out->oom = true, 0;
		msgf(reason, cap, "input: %s", terr.msg);
		return -1;
	}
	cqrs_strbuf_puts(out, "}\n");
	return 0;
}

/* Runs the program of in's current action and records what came of it,
 * then carries on in-process.  Returns 1 when the instance needs another
 * program next, 0 when it rests. */
static int run_external(struct cqrs_saga_runner *r, struct saga_inst *in, cqrs_error *err)
{
	const cqrs_saga_def *d = def_of(r, in->type);
	const char *name, *dir;
	const struct saga_action *a = action_of(d, in, &name, &dir);
	char key[128];
	idempotency_key(in, name, dir, key, sizeof key);
	log_context(d, in);
	tick(r);
	r->step_started[0] = '\0';

	/* may the call go out? */
	if (begin(r, err) < 0)
		return -1;
	int64_t revision = in->revision;
	int got = saga_db_reload(r->db, in, err);
	if (got <= 0 || in->revision != revision) {
		rollback(r);
		return got < 0 ? -1 : 0;
	}
	struct act_result deny = { 0 };
	bool probe;
	int b = breaker_check(r, a, in, &probe, &deny, err);
	if (b < 0)
		goto fail;
	struct exec_result *x = &r->exec;
	x->not_called = false;
	x->not_before = 0;
	if (b == 1) {
		/* not called: a step fails fast and spends an attempt, a
		 * compensation only waits (it must happen in the end) */
		x->outcome = EXEC_RETRY;
		x->not_called = true;
		x->not_before = deny.not_before;
		msgf(x->reason, sizeof x->reason, "%s", deny.reason);
	} else {
		if (commit(r, err) < 0)
			return -1;
		struct cqrs_strbuf input = { 0 };
		char reason[512];
		if (build_input(r, in, a, name, dir, key, &input, reason, sizeof reason) < 0) {
			x->outcome = EXEC_PERMANENT;
			msgf(x->reason, sizeof x->reason, "%s", reason);
		} else if (input.oom) {
			cqrs_strbuf_free(&input);
			return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		} else {
			char env[7][256];
			char *envp[8];
			snprintf(env[0], sizeof env[0], "CQRS_IDEMPOTENCY_KEY=%s", key);
			snprintf(env[1], sizeof env[1], "CQRS_SAGA_ID=%s", in->id);
			snprintf(env[2], sizeof env[2], "CQRS_SAGA_STEP=%s", name);
			snprintf(env[3], sizeof env[3], "CQRS_SAGA_ACTION=%s", dir);
			snprintf(env[4], sizeof env[4], "CQRS_SAGA_ATTEMPT=%lld",
				 (long long)(in->attempts + 1));
			snprintf(env[5], sizeof env[5], "CQRS_CORRELATION_ID=%s", in->corr);
			char tp[CQRS_TRACEPARENT_LEN + 1];
			step_traceparent(in->state.p, in->state.len, in->corr, key, true, tp);
			snprintf(env[6], sizeof env[6], "TRACEPARENT=%s", tp);
			int n = tp[0] != '\0' ? 7 : 6;
			for (int i = 0; i < n; i++)
				envp[i] = env[i];
			envp[n] = NULL;
			struct exec_spec spec = { a->argv,   d->dir,	    input.p,
						  input.len, a->timeout_us, envp };
			say(r, in, "running %s for %s %s (attempt %lld)%s", a->argv[0], dir, name,
			    (long long)(in->attempts + 1), probe ? ", the breaker's probe" : "");
			cqrs_timestamp_now(r->step_started);
			int rc = exec_step(&spec, x, err);
			cqrs_strbuf_free(&input);
			if (rc < 0)
				return -1;
		}
		tick(r);
		if (begin(r, err) < 0)
			return -1;
		got = saga_db_reload(r->db, in, err);
		if (got <= 0 || in->revision != revision) {
			/* gone, or another runner took it meanwhile: the
			 * idempotency key makes our call a repeat of theirs */
			rollback(r);
			return got < 0 ? -1 : 0;
		}
		if (breaker_record(r, a, in, x, err) < 0)
			goto fail;
	}
	for (;;) {
		int adv = advance(r, in, x, err);
		if (adv < 0)
			goto fail;
		if (adv == ADV_PARTIAL) {
			/* undo the half-applied step; the retry records its failure */
			rollback(r);
			if (begin(r, err) < 0)
				return -1;
			if (saga_db_reload(r->db, in, err) <= 0)
				goto fail;
			if (!x->not_called && breaker_record(r, a, in, x, err) < 0)
				goto fail;
			continue;
		}
		if (commit(r, err) < 0)
			return -1;
		return adv == ADV_EXTERNAL ? 1 : 0;
	}
fail:
	rollback(r);
	return -1;
}

/* --- starting sagas
 * ------------------------------------------------------------------------------- */

struct start {
	struct cqrs_strbuf state;
	int64_t sequence;
	char corr[256];
};

static void checkpoint_name(const cqrs_saga_def *d, char *buf, size_t cap)
{
	snprintf(buf, cap, "saga:%s", d->name);
}

static void state_of_event(const cqrs_event *ev, struct cqrs_strbuf *s)
{
	char eid[37], aid[37];
	cqrs_uuid_format(ev->event_id, eid);
	cqrs_uuid_format(ev->aggregate_id, aid);
	cqrs_strbuf_reset(s);
	cqrs_strbuf_printf(
		s, "{\"event\":{\"sequence\":%lld,\"event_id\":\"%s\",\"aggregate_id\":\"%s\",",
		(long long)ev->sequence, eid, aid);
	cqrs_strbuf_puts(s, "\"aggregate_type\":");
	cqrs_strbuf_json_string(s, ev->aggregate_type, strlen(ev->aggregate_type));
	cqrs_strbuf_puts(s, ",\"event_type\":");
	cqrs_strbuf_json_string(s, ev->event_type, strlen(ev->event_type));
	cqrs_strbuf_puts(s, ",\"data\":");
	cqrs_strbuf_put(s, ev->data, ev->data_len);
	cqrs_strbuf_puts(s, ",\"metadata\":");
	cqrs_strbuf_put(s, ev->metadata, ev->metadata_len);
	cqrs_strbuf_printf(s, ",\"timestamp\":\"%s\"},\"steps\":{}}", ev->timestamp);
}

static int correlation_of(struct cqrs_saga_runner *r, const cqrs_saga_def *d, struct start *s,
			  const cqrs_event *ev, cqrs_error *err)
{
	if (d->correlation != NULL) {
		struct saga_inst tmp = { 0 };
		tmp.state = s->state;
		struct tpl_ctx ctx;
		fill_ctx(&ctx, r, &tmp, "", "");
		ctx.saga_id = "";
		struct cqrs_strbuf v = { 0 };
		cqrs_error terr = { 0 };
		int rc = tpl_render(d->correlation, &ctx, &v, &terr);
		if (rc == 0 && cqrs_json_string(v.p, v.len, s->corr, sizeof s->corr) > 0) {
			cqrs_strbuf_free(&v);
			return 0;
		}
		cqrs_strbuf_free(&v);
		if (terr.code == CQRS_EXIT_OSERR)
			return *err = terr, -1;
		return cqrs_fail(err, CQRS_EXIT_DATAERR,
				 "%s: event %lld: correlation_id does not give a string: %s",
				 d->path, (long long)ev->sequence, terr.msg);
	}
	if (cqrs_event_correlation(ev, s->corr, sizeof s->corr))
		return 0;
	cqrs_uuid_format(ev->aggregate_id, s->corr);
	return 0;
}

/* The sequence of the last event stored (0: none). */
/* The store's last sequence, in the runner's transaction (the head alone:
 * its event is not decoded, so no upcaster or key is asked for it). */
static int store_head(struct cqrs_saga_runner *r, int64_t *seq, cqrs_error *err)
{
	uint8_t hash[CQRS_HASH_LEN];
	return cqrs_store_head(r->st, seq, hash, err);
}

/* New instances for the starting events since the checkpoint, one batch
 * per transaction with the checkpoint moved in it.  1 when it started
 * any. */
static int start_new(struct cqrs_saga_runner *r, const cqrs_saga_def *d, cqrs_error *err)
{
	int64_t batch = r->opt.batch;
	struct start *s = calloc((size_t)batch, sizeof *s);
	if (s == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	char cp[160];
	checkpoint_name(d, cp, sizeof cp);
	int any = 0, rc = -1;
	for (;;) {
		tick(r);
		if (begin(r, err) < 0)
			goto out;
		int64_t after = saga_db_checkpoint(r->db, cp, err);
		if (after < 0)
			goto fail;
		/* The head first, and the starting events up to it: on
		 * PostgreSQL each statement sees what has committed when it
		 * starts, so a head read after the events could be past an
		 * append that committed in between, and the checkpoint moved
		 * there would skip its starting events (pg-saga.bats, under
		 * load: 29 sagas of 30 never started). */
		int64_t head;
		if (store_head(r, &head, err) < 0)
			goto fail;
		cqrs_filter f = { .event_type = d->start_event_type,
				  .aggregate_type = d->start_aggregate_type,
				  .after = after,
				  .to = head,
				  .limit = batch };
		cqrs_cursor *c = cqrs_store_read(r->st, &f, err);
		if (c == NULL)
			goto fail;
		cqrs_event ev;
		int64_t n = 0, last = after;
		int got;
		while ((got = cqrs_cursor_next(c, &ev, err)) == 1) {
			state_of_event(&ev, &s[n].state);
			s[n].sequence = ev.sequence;
			if (s[n].state.oom) /* before the correlation reads it */
				cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
			if (s[n].state.oom || correlation_of(r, d, &s[n], &ev, err) < 0) {
				cqrs_cursor_close(c);
				goto fail;
			}
			last = ev.sequence;
			n++;
		}
		cqrs_cursor_close(c);
		if (got < 0)
			goto fail;
		for (int64_t i = 0; i < n; i++) {
			struct saga_inst *in = &r->inst;
			uint8_t id[CQRS_UUID_LEN];
			cqrs_uuid_generate(id);
			cqrs_uuid_format(id, in->id);
			snprintf(in->type, sizeof in->type, "%s", d->name);
			snprintf(in->corr, sizeof in->corr, "%s", s[i].corr);
			in->step = 0;
			in->status = SAGA_RUNNING;
			in->attempts = 0;
			in->next_at = in->deadline = 0;
			in->start_sequence = s[i].sequence;
			in->outcome[0] = in->last_error[0] = '\0';
			cqrs_strbuf_reset(&in->state);
			cqrs_strbuf_put(&in->state, s[i].state.p, s[i].state.len);
			if (in->state.oom || s[i].state.oom) {
				cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
				goto fail;
			}
			in->created = in->updated = r->now;
			int ins = saga_db_insert(r->db, in, err);
			if (ins < 0)
				goto fail;
			if (ins == 0)
				continue; /* that event started one already */
			cqrs_strbuf_reset(&r->data);
			data_int(r, "start_sequence", s[i].sequence);
			const char *v;
			size_t vn;
			if (cqrs_json_get(in->state.p, in->state.len, "event", &v, &vn)) {
				const char *e;
				size_t en;
				if (cqrs_json_get(v, vn, "event_id", &e, &en))
					cqrs_strbuf_printf(&r->data, ",\"start_event_id\":%.*s",
							   (int)en, e);
				if (cqrs_json_get(v, vn, "aggregate_id", &e, &en))
					cqrs_strbuf_printf(&r->data, ",\"aggregate_id\":%.*s",
							   (int)en, e);
			}
			if (saga_event(r, in, "SagaStarted", err) < 0)
				goto fail;
			say(r, in, "started by event %lld", (long long)s[i].sequence);
			r->stats.started++;
			cqrs_metrics_add(
				cqrs_metrics_series(CQRS_METRIC_SAGA_STARTED, in->type, NULL), 1);
			r->changes++;
			any = 1;
		}
		/* every starting event up to the head is seen: cancellations up
		 * to there find their instances, and the checkpoint goes to the
		 * head, not to the last starting event, for it says how far the
		 * runner has looked (cqrs-archive(1) must not wait on a runner
		 * that has nothing left to start) */
		if (n < batch) {
			r->seen = head;
			if (head > last)
				last = head;
		}
		if (last > after && saga_db_set_checkpoint(r->db, cp, last, r->now, err) < 0)
			goto fail;
		if (commit(r, err) < 0)
			goto out;
		if (n < batch)
			break;
	}
	rc = any;
	goto out;
fail:
	rollback(r);
out:
	for (int64_t i = 0; i < batch; i++)
		cqrs_strbuf_free(&s[i].state);
	free(s);
	return rc;
}

/* --- cancellations -----------------------------------------------------------------------------
 */

/* A cancel_on event the runner has yet to act on. */
struct cancel {
	int64_t sequence;
	uint8_t aggregate_id[CQRS_UUID_LEN];
	char reason[200];
};

static void cancel_checkpoint_name(const cqrs_saga_def *d, char *buf, size_t cap)
{
	snprintf(buf, cap, "saga:%s:cancel", d->name);
}

/* Cancellations are acted on from where the runner first read cancel_on:
 * those stored before (an upgraded store) stay as they were. */
static int cancel_init(struct cqrs_saga_runner *r, const cqrs_saga_def *d, cqrs_error *err)
{
	if (d->cancel_event_type == NULL)
		return 0;
	char cp[160], sp[160];
	cancel_checkpoint_name(d, cp, sizeof cp);
	checkpoint_name(d, sp, sizeof sp);
	int64_t seq;
	tick(r);
	if (begin(r, err) < 0)
		return -1;
	int got = saga_db_checkpoint_get(r->db, cp, &seq, err);
	if (got == 0)
		got = saga_db_checkpoint_get(r->db, sp, &seq, err) < 0 ||
				      saga_db_set_checkpoint(r->db, cp, seq, r->now, err) < 0
			      ? -1
			      : 0;
	if (got < 0) {
		rollback(r);
		return -1;
	}
	return commit(r, err);
}

/* The instance that the starting event of aggregate id started: 1, 0,
 * SAGA_HELD_ELSEWHERE (another runner is in a step of it), -1 */
static int instance_of(struct cqrs_saga_runner *r, const cqrs_saga_def *d, const uint8_t *id,
		       struct saga_inst *in, cqrs_error *err)
{
	cqrs_filter f = { .aggregate_id = id,
			  .event_type = d->start_event_type,
			  .aggregate_type = d->start_aggregate_type,
			  .limit = 1 };
	cqrs_cursor *c = cqrs_store_read(r->st, &f, err);
	if (c == NULL)
		return -1;
	cqrs_event ev;
	int got = cqrs_cursor_next(c, &ev, err);
	int64_t start = got == 1 ? ev.sequence : 0;
	cqrs_cursor_close(c);
	if (got <= 0)
		return got;
	return saga_db_load_start(r->db, d->name, start, in, err);
}

/* A person (or anything but the saga) cancelled what the instance works
 * for: a RUNNING (or WAITING) or COMPLETED instance undoes its completed
 * steps in reverse and ends with outcome "cancelled".  A compensating or
 * failed one is undoing its work already. */
static int cancel_instance(struct cqrs_saga_runner *r, struct saga_inst *in, const struct cancel *c,
			   cqrs_error *err)
{
	if (in->status != SAGA_RUNNING && in->status != SAGA_COMPLETED)
		return 0;
	char why[256];
	msgf(why, sizeof why, "cancelled%s%s", c->reason[0] ? ": " : "", c->reason);
	state_set(r, in, "cancelled", "true", 4);
	in->outcome[0] = '\0';
	data_int(r, "cancel_sequence", c->sequence);
	if (start_compensation(r, in, "", why, err) < 0 || save(r, in, err) < 0)
		return -1;
	return 0;
}

/* Reads the cancel_on events up to where start_new looked for starting
 * events (so that each finds its instance), in batches, each with the
 * checkpoint moved in its transaction. */
static int cancel_scan(struct cqrs_saga_runner *r, const cqrs_saga_def *d, cqrs_error *err)
{
	if (d->cancel_event_type == NULL)
		return 0;
	int64_t batch = r->opt.batch;
	struct cancel *cs = calloc((size_t)batch, sizeof *cs);
	if (cs == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	char cp[160];
	cancel_checkpoint_name(d, cp, sizeof cp);
	int rc = -1;
	for (;;) {
		tick(r);
		if (begin(r, err) < 0)
			goto out;
		int64_t after, upto = r->seen;
		if (saga_db_checkpoint_get(r->db, cp, &after, err) < 0)
			goto fail;
		if (upto <= after) {
			rollback(r);
			break;
		}
		cqrs_filter f = { .event_type = d->cancel_event_type,
				  .aggregate_type = d->cancel_aggregate_type,
				  .after = after,
				  .to = upto,
				  .limit = batch };
		cqrs_cursor *c = cqrs_store_read(r->st, &f, err);
		if (c == NULL)
			goto fail;
		cqrs_event ev;
		int64_t n = 0;
		int got;
		while ((got = cqrs_cursor_next(c, &ev, err)) == 1) {
			cs[n].sequence = ev.sequence;
			memcpy(cs[n].aggregate_id, ev.aggregate_id, CQRS_UUID_LEN);
			const char *v;
			size_t vn;
			cs[n].reason[0] = '\0';
			if (cqrs_json_get(ev.data, ev.data_len, "reason", &v, &vn))
				cqrs_json_string(v, vn, cs[n].reason, sizeof cs[n].reason);
			n++;
		}
		cqrs_cursor_close(c);
		if (got < 0)
			goto fail;
		bool later = false;
		int64_t i;
		for (i = 0; i < n; i++) {
			struct saga_inst *in = &r->inst;
			got = instance_of(r, d, cs[i].aggregate_id, in, err);
			if (got < 0 || (got == 1 && cancel_instance(r, in, &cs[i], err) < 0))
				goto fail;
			if (got == SAGA_HELD_ELSEWHERE) {
				/* another runner is in the middle of a step of it: this
				 * cancellation and those after it wait for the next pass
				 * (its step's events, or its lease running out, wake a
				 * follower) */
				later = true;
				break;
			}
		}
		int64_t last = later ? cs[i].sequence - 1 : n < batch ? upto : cs[n - 1].sequence;
		if (last > after && saga_db_set_checkpoint(r->db, cp, last, r->now, err) < 0)
			goto fail;
		if (commit(r, err) < 0)
			goto out;
		if (n < batch || later)
			break;
	}
	rc = 0;
	goto out;
fail:
	rollback(r);
out:
	free(cs);
	return rc;
}

/* --- the runner ----------------------------------------------------------------------------------
 */

/* The longest timeout of a program an action of d runs, and its step. */
static int64_t longest_timeout(const cqrs_saga_def *d, const char **step)
{
	int64_t t = 0;
	for (size_t i = 0; i < d->nsteps; i++) {
		const struct saga_action *a[2] = { &d->steps[i].act, &d->steps[i].comp };
		for (int k = 0; k < 2; k++)
			if (a[k]->argv != NULL && a[k]->timeout_us > t) {
				t = a[k]->timeout_us;
				*step = d->steps[i].name;
			}
	}
	if (d->on_failure.argv != NULL && d->on_failure.timeout_us > t) {
		t = d->on_failure.timeout_us;
		*step = "on_failure";
	}
	return t;
}

/* Where runners share the store (PostgreSQL), an instance is leased to the
 * runner working on it: the lease must outlast any step program, or a
 * second runner could run it while the first still does (cqrs-saga(1)).
 * The default: 5 minutes, or twice the longest timeout. */
static int set_lease(struct cqrs_saga_runner *r, cqrs_error *err)
{
	int64_t longest = 0;
	const char *step = "", *path = "";
	for (size_t i = 0; i < r->ndefs; i++) {
		const char *s = "";
		int64_t t = longest_timeout(r->defs[i], &s);
		if (t > longest) {
			longest = t;
			step = s;
			path = r->defs[i]->path;
		}
	}
	int64_t lease = r->opt.lease_us;
	if (lease == 0)
		lease = longest * 2 > 300LL * 1000000 ? longest * 2 : 300LL * 1000000;
	if (lease <= longest) {
		char l[32], t[32];
		saga_duration_format(lease, l, sizeof l);
		saga_duration_format(longest, t, sizeof t);
		return cqrs_fail(err, CQRS_EXIT_USAGE,
				 "--lease %s is not longer than the timeout of step '%s' (%s) in "
				 "%s: a runner could lose an instance while its program runs",
				 l, step, t, path);
	}
	return saga_db_set_lease(r->db, lease, err);
}

cqrs_saga_runner *cqrs_saga_runner_new(cqrs_store *st, cqrs_saga_def *const *defs, size_t ndefs,
				       const struct cqrs_saga_options *opt, cqrs_error *err)
{
	struct cqrs_saga_runner *r = calloc(1, sizeof *r);
	if (r == NULL) {
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		return NULL;
	}
	r->st = st;
	r->defs = defs;
	r->ndefs = ndefs;
	if (opt != NULL)
		r->opt = *opt;
	if (r->opt.batch <= 0)
		r->opt.batch = DEFAULT_BATCH;
	for (size_t i = 0; i < ndefs; i++)
		for (size_t j = 0; j < i; j++)
			if (strcmp(defs[i]->name, defs[j]->name) == 0) {
				cqrs_fail(err, CQRS_EXIT_CONFIG,
					  "%s: saga '%s' is already defined in %s", defs[i]->path,
					  defs[i]->name, defs[j]->path);
				free(r);
				return NULL;
			}
	struct cqrs_command_options copt = { .snapshot_every = CQRS_SNAPSHOT_EVERY_DEFAULT,
					     .user_id = "cqrs-saga" };
	r->db = saga_db_open(st, err);
	if (r->db == NULL || set_lease(r, err) < 0 ||
	    (r->cmd = cqrs_commander_new(st, &copt, err)) == NULL) {
		cqrs_saga_runner_free(r);
		return NULL;
	}
	return r;
}

void cqrs_saga_runner_free(cqrs_saga_runner *r)
{
	if (r == NULL)
		return;
	rollback(r);
	cqrs_commander_free(r->cmd);
	saga_db_close(r->db);
	cqrs_strbuf_free(&r->inst.state);
	cqrs_strbuf_free(&r->buf);
	cqrs_strbuf_free(&r->data);
	cqrs_strbuf_free(&r->meta);
	cqrs_strbuf_free(&r->out);
	cqrs_strbuf_free(&r->state);
	cqrs_strbuf_free(&r->output);
	cqrs_strbuf_free(&r->exec.out);
	free(r);
}

void cqrs_saga_runner_stats(const cqrs_saga_runner *r, struct cqrs_saga_stats *s)
{
	*s = r->stats;
}

/* One pass over the instances with work: in-process steps of a batch in
 * one transaction; a program step ends the transaction before it runs. */
static int pass(struct cqrs_saga_runner *r, cqrs_error *err)
{
	int64_t batch = r->opt.batch;
	int64_t *rowids = calloc((size_t)batch, sizeof *rowids);
	if (rowids == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	int64_t after = 0;
	int rc = -1;
	for (;;) {
		tick(r);
		if (begin(r, err) < 0)
			goto out;
		size_t n;
		r->scanned_at = r->now;
		if (saga_db_candidates(r->db, after, r->now, batch, rowids, &n, err) < 0)
			goto fail;
		if (n == 0) {
			rollback(r);
			break;
		}
		int64_t batch_start = after;
		bool restart = false, stopping = false;
		for (size_t i = 0; i < n; i++) {
			if (r->opt.should_stop != NULL && r->opt.should_stop()) {
				stopping = true;
				break;
			}
			struct saga_inst *in = &r->inst;
			int got = saga_db_load_rowid(r->db, rowids[i], r->now, in, err);
			if (got < 0)
				goto fail;
			after = rowids[i];
			if (got == 0)
				continue;
			int adv = advance(r, in, NULL, err);
			if (adv < 0)
				goto fail;
			if (adv == ADV_PARTIAL) {
				rollback(r);
				after = batch_start;
				restart = true;
				break;
			}
			if (adv == ADV_EXTERNAL) {
				if (commit(r, err) < 0)
					goto out;
				/* the program's step, and those after it, until the
				 * next program or rest */
				int more;
				while ((more = run_external(r, in, err)) == 1)
					;
				if (more < 0)
					goto out;
				tick(r);
				if (begin(r, err) < 0)
					goto out;
			}
		}
		if (restart)
			continue;
		if (commit(r, err) < 0)
			goto out;
		if ((int64_t)n < batch || stopping)
			break;
	}
	rc = 0;
	goto out;
fail:
	rollback(r);
out:
	free(rowids);
	cqrs_log_context_clear(); /* the run's own lines name no saga */
	return rc;
}

int cqrs_saga_run(cqrs_saga_runner *r, int64_t *next_due, cqrs_error *err)
{
	for (int rounds = 0;; rounds++) {
		r->changes = 0;
		for (size_t i = 0; i < r->ndefs; i++)
			if ((rounds == 0 && cancel_init(r, r->defs[i], err) < 0) ||
			    start_new(r, r->defs[i], err) < 0 ||
			    cancel_scan(r, r->defs[i], err) < 0)
				return -1;
		if (pass(r, err) < 0)
			return -1;
		if (r->changes == 0 || rounds > 1000 ||
		    (r->opt.should_stop != NULL && r->opt.should_stop()))
			break;
	}
	cqrs_test_pause("CQRS_TEST_PAUSE_AFTER_PASS");
	tick(r);
	/* resting instances are anyone's (runners sharing a PostgreSQL store) */
	if (saga_db_release(r->db, err) < 0)
		return -1;
	if (next_due != NULL) {
		/* due after the last look, not after now: one that fell due in
		 * between is due at once (the follower runs again), not left until
		 * the next retry after it */
		int64_t t = saga_db_next_due(r->db, r->scanned_at, err);
		if (t < 0)
			return -1;
		*next_due = t;
	}
	return 0;
}
