/*
 * The tools' messages on stderr, in one of two forms: the human one
 * ("tool: message", as always) or one JSON object per line for log
 * collectors (Loki, Elasticsearch, journald), chosen by --log-format or
 * $CQRS_LOG_FORMAT.  Lib code names the ids at hand (the event, the saga,
 * the step) in a context that costs a few stores when nothing is logged:
 * the clock is read and the ids are formatted only when a line is written.
 */
#include "config.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cqrs.h"
#include "common/strbuf.h"
#include "ops/log.h"
#include "banned.h"

static enum cqrs_log_format log_format = CQRS_LOG_TEXT;
static bool log_timestamps, log_verbose;

#define CONTEXT_TEXT_MAX 256

/* One context per thread: a parallel rebuild's threads each have theirs. */
static _Thread_local struct {
	bool has_sequence, has_aggregate;
	int64_t sequence;
	uint8_t aggregate[CQRS_UUID_LEN];
	/* the event being applied: its correlation is read from metadata only
	 * when a line is written */
	const char *metadata;
	size_t metadata_len;
	char text[CQRS_LOG_STEP + 1][CONTEXT_TEXT_MAX]; /* "" when unset */
} ctx;

static const char *const key_names[] = {
	[CQRS_LOG_CORRELATION] = "correlation",
	[CQRS_LOG_SAGA] = "saga",
	[CQRS_LOG_STEP] = "step",
};

static const char *const level_names[] = {
	[CQRS_LOG_ERROR] = "error",
	[CQRS_LOG_WARNING] = "warning",
	[CQRS_LOG_INFO] = "info",
};

/* --- the form ---------------------------------------------------------------- */

static int parse_format(const char *s, enum cqrs_log_format *out)
{
	if (strcmp(s, "text") == 0)
		*out = CQRS_LOG_TEXT;
	else if (strcmp(s, "json") == 0)
		*out = CQRS_LOG_JSON;
	else
		return -1;
	return 0;
}

void cqrs_log_format_env(void)
{
	const char *s = getenv("CQRS_LOG_FORMAT");
	if (s == NULL || *s == '\0')
		return;
	if (parse_format(s, &log_format) < 0)
		cqrs_die(CQRS_EXIT_USAGE, "CQRS_LOG_FORMAT: unknown log format '%s' (json or text)",
			 s);
}

void cqrs_log_format_option(const char *arg)
{
	if (parse_format(arg, &log_format) < 0)
		cqrs_die(CQRS_EXIT_USAGE, "--log-format: unknown format '%s' (json or text)", arg);
}

void cqrs_log_scan_args(int argc, char **argv)
{
	/* Before getopt, so that a message about an option given before
	 * --log-format is in the form asked for too.  The last one wins, as
	 * with getopt; "--" ends the options. */
	static const char opt[] = "--log-format";
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0)
			break;
		if (strncmp(a, opt, sizeof opt - 1) != 0)
			continue;
		if (a[sizeof opt - 1] == '=')
			cqrs_log_format_option(a + sizeof opt);
		else if (a[sizeof opt - 1] == '\0' && i + 1 < argc)
			cqrs_log_format_option(argv[++i]);
	}
}

enum cqrs_log_format cqrs_log_format(void)
{
	return log_format;
}

void cqrs_log_set_timestamps(bool on)
{
	log_timestamps = on;
}

void cqrs_log_set_verbose(bool on)
{
	log_verbose = on;
}

bool cqrs_log_verbose(void)
{
	return log_verbose;
}

/* --- the context ------------------------------------------------------------- */

void cqrs_log_context_set(enum cqrs_log_key key, const char *value)
{
	if (key == CQRS_LOG_CORRELATION)
		ctx.metadata = NULL;
	char *t = ctx.text[key];
	size_t n = value != NULL ? strnlen(value, CONTEXT_TEXT_MAX - 1) : 0;
	memcpy(t, value != NULL ? value : "", n);
	t[n] = '\0';
}

void cqrs_log_context_sequence(int64_t sequence)
{
	ctx.sequence = sequence;
	ctx.has_sequence = sequence > 0;
}

void cqrs_log_context_aggregate(const uint8_t id[CQRS_UUID_LEN])
{
	ctx.has_aggregate = id != NULL;
	if (id != NULL)
		memcpy(ctx.aggregate, id, CQRS_UUID_LEN);
}

void cqrs_log_context_event(const cqrs_event *ev)
{
	if (ev == NULL) {
		ctx.has_sequence = ctx.has_aggregate = false;
		ctx.metadata = NULL;
		return;
	}
	ctx.sequence = ev->sequence;
	ctx.has_sequence = ev->sequence > 0;
	memcpy(ctx.aggregate, ev->aggregate_id, CQRS_UUID_LEN);
	ctx.has_aggregate = true;
	ctx.metadata = ev->metadata;
	ctx.metadata_len = ev->metadata_len;
	ctx.text[CQRS_LOG_CORRELATION][0] = '\0';
}

void cqrs_log_context_clear(void)
{
	ctx.has_sequence = ctx.has_aggregate = false;
	ctx.metadata = NULL;
	for (int k = 0; k <= CQRS_LOG_STEP; k++)
		ctx.text[k][0] = '\0';
}

/* --- writing a line ---------------------------------------------------------- */

/* s as a JSON string: quotes, backslashes and control characters escaped,
 * and each byte that is not part of valid UTF-8 replaced by U+FFFD, so that
 * whatever a message quotes the line stays one valid JSON text. */
static void put_json_string(struct cqrs_strbuf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	cqrs_strbuf_putc(b, '"');
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			char esc[2] = { '\\', (char)c };
			cqrs_strbuf_put(b, esc, 2);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			switch (c) {
			case '\n': cqrs_strbuf_put(b, "\\n", 2); break;
			case '\r': cqrs_strbuf_put(b, "\\r", 2); break;
			case '\t': cqrs_strbuf_put(b, "\\t", 2); break;
			default: {
				char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
				cqrs_strbuf_put(b, esc, 6);
			}
			}
			i++;
		} else {
			size_t len = cqrs_utf8_len((const unsigned char *)s + i, n - i);
			if (len == 0) {
				cqrs_strbuf_put(b, "\\ufffd", 6);
				i++;
			} else {
				cqrs_strbuf_put(b, s + i, len);
				i += len;
			}
		}
	}
	cqrs_strbuf_putc(b, '"');
}

static void put_member(struct cqrs_strbuf *b, const char *key, const char *value, size_t n)
{
	cqrs_strbuf_putc(b, ',');
	put_json_string(b, key, strlen(key));
	cqrs_strbuf_putc(b, ':');
	put_json_string(b, value, n);
}

static void put_context(struct cqrs_strbuf *b)
{
	if (ctx.has_sequence)
		cqrs_strbuf_printf(b, ",\"sequence\":%lld", (long long)ctx.sequence);
	if (ctx.has_aggregate) {
		char id[37];
		cqrs_uuid_format(ctx.aggregate, id);
		put_member(b, "aggregate", id, strlen(id));
	}
	char corr[CQRS_MAX_CORRELATION + 1];
	const char *c = ctx.text[CQRS_LOG_CORRELATION];
	if (ctx.metadata != NULL) {
		cqrs_event probe = { .metadata = ctx.metadata, .metadata_len = ctx.metadata_len };
		c = cqrs_event_correlation(&probe, corr, sizeof corr) ? corr : "";
	}
	if (*c != '\0')
		put_member(b, key_names[CQRS_LOG_CORRELATION], c, strlen(c));
	for (int k = CQRS_LOG_SAGA; k <= CQRS_LOG_STEP; k++)
		if (ctx.text[k][0] != '\0')
			put_member(b, key_names[k], ctx.text[k], strlen(ctx.text[k]));
}

static void build_line(struct cqrs_strbuf *b, enum cqrs_log_level level, const char *msg, size_t n)
{
	char now[CQRS_TIMESTAMP_LEN + 1];
	const char *tool = cqrs_tool_name();
	if (log_format == CQRS_LOG_JSON) {
		cqrs_timestamp_now(now);
		cqrs_strbuf_puts(b, "{\"time\":\"");
		cqrs_strbuf_puts(b, now);
		cqrs_strbuf_puts(b, "\",\"level\":\"");
		cqrs_strbuf_puts(b, level_names[level]);
		cqrs_strbuf_puts(b, "\"");
		put_member(b, "tool", tool, strlen(tool));
		put_member(b, "message", msg, n);
		put_context(b);
		cqrs_strbuf_put(b, "}\n", 2);
		return;
	}
	if (log_timestamps) {
		cqrs_timestamp_now(now);
		cqrs_strbuf_puts(b, now);
		cqrs_strbuf_putc(b, ' ');
	}
	cqrs_strbuf_puts(b, tool);
	cqrs_strbuf_put(b, ": ", 2);
	cqrs_strbuf_put(b, msg, n);
	cqrs_strbuf_putc(b, '\n');
}

void cqrs_vlog(enum cqrs_log_level level, const char *fmt, va_list ap)
{
	char small[2048], *msg = small;
	va_list again;
	va_copy(again, ap);
	int n = vsnprintf(small, sizeof small, fmt, ap);
	if (n < 0)
		n = 0;
	else if ((size_t)n >= sizeof small && (msg = malloc((size_t)n + 1)) != NULL)
		vsnprintf(msg, (size_t)n + 1, fmt, again);
	else if (msg == NULL) {
		msg = small; /* out of memory: the message cut short */
		n = sizeof small - 1;
	}
	va_end(again);
	/* one write per line: lines from processes sharing a journal stream or
	 * a pipe do not interleave */
	struct cqrs_strbuf b = { 0 };
	build_line(&b, level, msg, (size_t)n);
	if (!b.oom)
		fwrite(b.p, 1, b.len, stderr);
	else
		fprintf(stderr, "%s: %.*s\n", cqrs_tool_name(), n, msg);
	cqrs_strbuf_free(&b);
	if (msg != small)
		free(msg);
}

void cqrs_log(enum cqrs_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cqrs_vlog(level, fmt, ap);
	va_end(ap);
}

void cqrs_info(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cqrs_vlog(CQRS_LOG_INFO, fmt, ap);
	va_end(ap);
}

void cqrs_log_error(const cqrs_error *err)
{
	cqrs_log(CQRS_LOG_ERROR, "%s", err->msg);
}
