/*
 * The jq step of an upcaster (cqrs-upcasters(5)): a jq program for what the
 * declared steps cannot say.  libjq (Debian's libjq1, jq 1.6) is loaded on
 * first use, so that the tools whose declarations have no jq step (the
 * shipped domain's) start without it, as signed_head.c does for
 * libhogweed.  jq 1.6 holds numbers as doubles and prints them again
 * (0.10 as 0.1, 1e2 as 100): upcast_jq_reprinted_number finds an event's
 * numbers that would change, so that the caller can refuse the event.
 */
#include "config.h"

#include <dlfcn.h>
#include <jq.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "domain/upcast_impl.h"
#include "banned.h"

#ifndef JQ_SONAME
#define JQ_SONAME "libjq.so.1"
#endif

static struct {
	jq_state *(*init)(void);
	void (*set_error_cb)(jq_state *, jq_msg_cb, void *);
	int (*compile)(jq_state *, const char *);
	void (*start)(jq_state *, jv, int);
	jv (*next)(jq_state *);
	void (*teardown)(jq_state **);
	jv_kind (*get_kind)(jv);
	jv (*copy)(jv);
	void (*free)(jv);
	jv (*invalid_get_msg)(jv);
	int (*invalid_has_msg)(jv);
	const char *(*string_value)(jv);
	int (*string_length_bytes)(jv);
	jv (*dump_string)(jv, int);
	jv (*parse_sized)(const char *, int);
	bool loaded;
} jq;

static pthread_mutex_t jq_lock = PTHREAD_MUTEX_INITIALIZER;

static int jq_load(cqrs_error *err)
{
	pthread_mutex_lock(&jq_lock);
	if (jq.loaded) {
		pthread_mutex_unlock(&jq_lock);
		return 0;
	}
	void *h = dlopen(JQ_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		pthread_mutex_unlock(&jq_lock);
		return cqrs_fail(err, CQRS_EXIT_UNAVAILABLE,
				 "%s: %s (jq's library, Debian package libjq1): a jq step of the "
				 "upcasters needs it",
				 JQ_SONAME, dlerror());
	}
	/* POSIX's way from a void * to a function pointer */
#define SYM(field, name) (*(void **)&jq.field = dlsym(h, name)) != NULL
	bool ok = SYM(init, "jq_init") && SYM(set_error_cb, "jq_set_error_cb") &&
		  SYM(compile, "jq_compile") && SYM(start, "jq_start") && SYM(next, "jq_next") &&
		  SYM(teardown, "jq_teardown") && SYM(get_kind, "jv_get_kind") &&
		  SYM(copy, "jv_copy") && SYM(free, "jv_free") &&
		  SYM(invalid_get_msg, "jv_invalid_get_msg") &&
		  SYM(invalid_has_msg, "jv_invalid_has_msg") &&
		  SYM(string_value, "jv_string_value") &&
		  SYM(string_length_bytes, "jv_string_length_bytes") &&
		  SYM(dump_string, "jv_dump_string") && SYM(parse_sized, "jv_parse_sized");
#undef SYM
	jq.loaded = ok;
	pthread_mutex_unlock(&jq_lock);
	if (!ok)
		return cqrs_fail(err, CQRS_EXIT_UNAVAILABLE, "%s: not jq 1.6's library", JQ_SONAME);
	return 0;
}

struct upcast_jq {
	jq_state *state;
	char msg[512]; /* what jq said last */
};

/* jq's messages (compile errors, error(...)) arrive here rather than on
 * stderr: the first is kept for the one error the tool prints. */
static void on_message(void *arg, jv msg)
{
	upcast_jq *q = arg;
	if (q->msg[0] == '\0') {
		jv text = jq.get_kind(msg) == JV_KIND_STRING ? jq.copy(msg)
							     : jq.dump_string(jq.copy(msg), 0);
		/* its first line, without jq's own "jq: error: " */
		const char *m = jq.string_value(text);
		if (strncmp(m, "jq: error: ", 11) == 0)
			m += 11;
		snprintf(q->msg, sizeof q->msg, "%.*s", (int)strcspn(m, "\n"), m);
		jq.free(text);
	}
	jq.free(msg);
}

upcast_jq *upcast_jq_new(const char *program, cqrs_error *err)
{
	if (jq_load(err) < 0)
		return NULL;
	upcast_jq *q = calloc(1, sizeof *q);
	if (q == NULL || (q->state = jq.init()) == NULL) {
		free(q);
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		return NULL;
	}
	jq.set_error_cb(q->state, on_message, q);
	if (!jq.compile(q->state, program)) {
		cqrs_fail(err, CQRS_EXIT_CONFIG, "jq: %s", q->msg[0] ? q->msg : "does not compile");
		upcast_jq_free(q);
		return NULL;
	}
	return q;
}

void upcast_jq_free(upcast_jq *q)
{
	if (q == NULL)
		return;
	if (q->state != NULL)
		jq.teardown(&q->state);
	free(q);
}

int upcast_jq_check(const char *program, const char *file, int line, int col, cqrs_error *err)
{
	upcast_jq *q = upcast_jq_new(program, err);
	if (q == NULL) {
		if (err != NULL && err->code == CQRS_EXIT_CONFIG) {
			cqrs_error e = *err;
			return cqrs_fail(err, CQRS_EXIT_CONFIG, "%s:%d:%d: %s", file, line, col,
					 e.msg);
		}
		return -1;
	}
	upcast_jq_free(q);
	return 0;
}

/* jq's text for the number token at tok: equal to tok or not. */
static bool reprints_as_itself(const char *tok, size_t n)
{
	jv num = jq.parse_sized(tok, (int)n);
	if (jq.get_kind(num) != JV_KIND_NUMBER) {
		jq.free(num);
		return false;
	}
	jv text = jq.dump_string(num, 0);
	bool same = (size_t)jq.string_length_bytes(jq.copy(text)) == n &&
		    memcmp(jq.string_value(text), tok, n) == 0;
	jq.free(text);
	return same;
}

const char *upcast_jq_reprinted_number(const char *data, size_t n, size_t *len)
{
	for (size_t i = 0; i < n; i++) {
		char c = data[i];
		if (c == '"') { /* past the string, escapes included */
			for (i++; i < n && data[i] != '"'; i++)
				if (data[i] == '\\')
					i++;
			continue;
		}
		if (c != '-' && (c < '0' || c > '9'))
			continue;
		size_t start = i;
		while (i < n && strchr("0123456789+-.eE", data[i]) != NULL && data[i] != '\0')
			i++;
		if (!reprints_as_itself(data + start, i - start)) {
			*len = i - start;
			return data + start;
		}
		i--;
	}
	return NULL;
}

int upcast_jq_run(upcast_jq *q, const char *data, size_t n, struct cqrs_strbuf *out,
		  cqrs_error *err)
{
	q->msg[0] = '\0';
	jv in = jq.parse_sized(data, (int)n);
	jq.start(q->state, in, 0);
	jv res = jq.next(q->state);
	int rc = 0;
	if (jq.get_kind(res) == JV_KIND_INVALID) {
		if (jq.invalid_has_msg(jq.copy(res))) {
			jv msg = jq.invalid_get_msg(jq.copy(res));
			jv text = jq.get_kind(msg) == JV_KIND_STRING ? msg : jq.dump_string(msg, 0);
			rc = cqrs_fail(err, CQRS_EXIT_DATAERR, "jq: %s", jq.string_value(text));
			jq.free(text);
		} else {
			rc = cqrs_fail(err, CQRS_EXIT_DATAERR, "jq: %s",
				       q->msg[0] ? q->msg : "the program gave no output");
		}
	} else if (jq.get_kind(res) != JV_KIND_OBJECT) {
		rc = cqrs_fail(err, CQRS_EXIT_DATAERR, "jq: the program gave %s, not an object",
			       jq.get_kind(res) == JV_KIND_ARRAY ? "an array" : "a scalar");
	} else {
		jv extra = jq.next(q->state);
		if (jq.get_kind(extra) != JV_KIND_INVALID)
			rc = cqrs_fail(err, CQRS_EXIT_DATAERR,
				       "jq: the program gave more than one output");
		jq.free(extra);
	}
	if (rc == 0) {
		jv text = jq.dump_string(jq.copy(res), 0);
		cqrs_strbuf_put(out, jq.string_value(text),
				(size_t)jq.string_length_bytes(jq.copy(text)));
		jq.free(text);
	}
	jq.free(res);
	return rc;
}
