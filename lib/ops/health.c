/*
 * The health of one installation, as monitoring sees it: the store (it
 * opens, its schema, SQLite's quick_check, the hash chain against the
 * witness), the views (lag, parked events), the sagas (stuck, failed,
 * compensation failed), the circuit breakers, the write-ahead log and the
 * free disk, and the relays' positions (issue 14).  On a PostgreSQL store
 * (issue 13) the integrity check is the tables check of cqrs_pg_facts, the
 * write-ahead log is the server's (not applicable), and the free disk is
 * the views' alone: the server's disk is its own.  Each check gets a
 * status in the monitoring plugins' convention (0 ok, 1 warning, 2
 * critical, 3 unknown) and one figure; the report is NDJSON, a table, or Prometheus gauges for
 * node_exporter.
 *
 * Everything here only reads: the store and the views are opened by the
 * same calls as cqrs-read and cqrs-query, so that a monitoring user who
 * may read both and write neither can run it.  The facts come from the
 * parts that own them (cqrs_store_facts, cqrs_store_verify,
 * cqrs_views_lag_each, cqrs_saga_facts); this file judges them.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "cqrs.h"
#include "common/strbuf.h"
#include "banned.h"

/* --- thresholds ----------------------------------------------------------------- */

enum unit { U_NONE, U_COUNT, U_SECONDS, U_BYTES };

/* One pair of thresholds: its option, its variable, how it is written. */
static const struct limit_spec {
	const char *option; /* --NAME and CQRS_HEALTH_NAME (upper case, '_') */
	enum cqrs_health_limit which;
	enum unit unit;
	int64_t warn, crit; /* defaults; 0: off */
} limit_specs[] = {
	{ "lag-events", CQRS_HEALTH_LAG_EVENTS, U_COUNT, 1000, 100000 },
	{ "lag-seconds", CQRS_HEALTH_LAG_SECONDS, U_SECONDS, 300, 3600 },
	{ "parked", CQRS_HEALTH_PARKED, U_COUNT, 1, 0 },
	{ "stuck", CQRS_HEALTH_STUCK, U_COUNT, 1, 0 },
	{ "failed", CQRS_HEALTH_FAILED, U_COUNT, 0, 0 },
	{ "compensation-failed", CQRS_HEALTH_COMPENSATION_FAILED, U_COUNT, 0, 1 },
	{ "breakers", CQRS_HEALTH_BREAKERS, U_COUNT, 1, 0 },
	{ "wal", CQRS_HEALTH_WAL, U_BYTES, 64LL << 20, 512LL << 20 },
	{ "disk-free", CQRS_HEALTH_DISK_FREE, U_BYTES, 1LL << 30, 256LL << 20 },
	{ "relay-lag", CQRS_HEALTH_RELAY_LAG, U_COUNT, 1000, 100000 },
};
#define NSPECS (sizeof limit_specs / sizeof limit_specs[0])

#define STUCK_AFTER_DEFAULT (3600LL * 1000000) /* as cqrs-saga status */

void cqrs_health_limits_default(struct cqrs_health_limits *l)
{
	memset(l, 0, sizeof *l);
	for (size_t i = 0; i < NSPECS; i++) {
		l->warn[limit_specs[i].which] = limit_specs[i].warn;
		l->crit[limit_specs[i].which] = limit_specs[i].crit;
	}
	l->stuck_after_us = STUCK_AFTER_DEFAULT;
}

/* 64K, 1M, 2G (powers of 1024) or plain bytes: -1 when malformed */
static int64_t parse_bytes(const char *s, size_t n)
{
	char num[32];
	int shift = 0;
	if (n > 0 && strchr("KMGT", s[n - 1]) != NULL && s[n - 1] != '\0') {
		shift = 10 * (int)(strchr("KMGT", s[n - 1]) - "KMGT" + 1);
		n--;
	}
	int64_t v;
	if (n == 0 || n >= sizeof num)
		return -1;
	memcpy(num, s, n);
	num[n] = '\0';
	if (cqrs_parse_int64(num, &v) < 0 || v > (INT64_MAX >> shift))
		return -1;
	return v << shift;
}

static int64_t parse_one(enum unit unit, const char *s, size_t n)
{
	char buf[32];
	if (n == 0 || n >= sizeof buf)
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (unit == U_BYTES)
		return parse_bytes(buf, n);
	if (unit == U_SECONDS) {
		int64_t us = cqrs_saga_duration_parse(buf);
		return us < 0 ? -1 : us / 1000000;
	}
	int64_t v;
	return cqrs_parse_int64(buf, &v) < 0 ? -1 : v;
}

static const struct limit_spec *spec_named(const char *option)
{
	for (size_t i = 0; i < NSPECS; i++)
		if (strcmp(limit_specs[i].option, option) == 0)
			return &limit_specs[i];
	return NULL;
}

int cqrs_health_limit_set(struct cqrs_health_limits *l, const char *option, const char *value,
			  cqrs_error *err)
{
	if (strcmp(option, "stuck-after") == 0) {
		int64_t us = cqrs_saga_duration_parse(value);
		if (us < 0)
			return cqrs_fail(err, CQRS_EXIT_USAGE,
					 "stuck-after needs a duration such as 30m or 2h: '%s'",
					 value);
		l->stuck_after_us = us;
		return 0;
	}
	const struct limit_spec *sp = spec_named(option);
	if (sp == NULL)
		return cqrs_fail(err, CQRS_EXIT_SOFTWARE, "no threshold named %s", option);
	const char *comma = strchr(value, ',');
	int64_t w = comma ? parse_one(sp->unit, value, (size_t)(comma - value)) : -1;
	int64_t c = comma ? parse_one(sp->unit, comma + 1, strlen(comma + 1)) : -1;
	if (w < 0 || c < 0) {
		static const char *const forms[] = { [U_NONE] = "",
						     [U_COUNT] = "two counts such as 1,10",
						     [U_SECONDS] = "two durations such as 5m,1h",
						     [U_BYTES] = "two sizes such as 64M,1G" };
		return cqrs_fail(err, CQRS_EXIT_USAGE,
				 "%s needs WARNING,CRITICAL, %s (0: off): '%s'", option,
				 forms[sp->unit], value);
	}
	l->warn[sp->which] = w;
	l->crit[sp->which] = c;
	return 0;
}

int cqrs_health_limits_env(struct cqrs_health_limits *l, cqrs_error *err)
{
	for (size_t i = 0; i <= NSPECS; i++) {
		const char *option = i < NSPECS ? limit_specs[i].option : "stuck-after";
		char var[64] = "CQRS_HEALTH_";
		size_t n = strlen(var);
		for (const char *p = option; *p != '\0' && n + 1 < sizeof var; p++)
			var[n++] = *p == '-' ? '_' : (char)(*p - 'a' + 'A');
		var[n] = '\0';
		const char *v = getenv(var);
		if (v == NULL || *v == '\0')
			continue;
		if (cqrs_health_limit_set(l, option, v, err) < 0) {
			char msg[sizeof err->msg];
			snprintf(msg, sizeof msg, "%s", err->msg);
			/* the message names the variable, not the option */
			return cqrs_fail(err, CQRS_EXIT_USAGE, "%s: %s", var,
					 msg + strlen(option) + 1);
		}
	}
	return 0;
}

/* --- the results ------------------------------------------------------------------ */

struct check {
	const char *name;
	enum cqrs_health_status status;
	bool judged; /* a figure was measured */
	int64_t figure;
	const char *unit;
	int limit; /* enum cqrs_health_limit, or -1: no thresholds */
	char detail[600];
};

enum {
	C_STORE,
	C_INTEGRITY,
	C_CHAIN,
	C_VIEWS,
	C_LAG_EVENTS,
	C_LAG_SECONDS,
	C_PARKED,
	C_STUCK,
	C_FAILED,
	C_COMPENSATION,
	C_BREAKERS,
	C_WAL,
	C_DISK,
	C_RELAY,
	C_COUNT
};

static const struct check check_init[C_COUNT] = {
	[C_STORE] = { "store", .unit = "schema", .limit = -1 },
	[C_INTEGRITY] = { "integrity", .unit = "problems", .limit = -1 },
	[C_CHAIN] = { "chain", .unit = "events", .limit = -1 },
	[C_VIEWS] = { "views", .unit = "projections", .limit = -1 },
	[C_LAG_EVENTS] = { "lag_events", .unit = "events", .limit = CQRS_HEALTH_LAG_EVENTS },
	[C_LAG_SECONDS] = { "lag_seconds", .unit = "seconds", .limit = CQRS_HEALTH_LAG_SECONDS },
	[C_PARKED] = { "parked", .unit = "events", .limit = CQRS_HEALTH_PARKED },
	[C_STUCK] = { "sagas_stuck", .unit = "sagas", .limit = CQRS_HEALTH_STUCK },
	[C_FAILED] = { "sagas_failed", .unit = "sagas", .limit = CQRS_HEALTH_FAILED },
	[C_COMPENSATION] = { "compensation_failed", .unit = "sagas",
			     .limit = CQRS_HEALTH_COMPENSATION_FAILED },
	[C_BREAKERS] = { "breakers", .unit = "breakers", .limit = CQRS_HEALTH_BREAKERS },
	[C_WAL] = { "wal", .unit = "bytes", .limit = CQRS_HEALTH_WAL },
	[C_DISK] = { "disk", .unit = "bytes", .limit = CQRS_HEALTH_DISK_FREE },
	[C_RELAY] = { "relay", .unit = "events", .limit = CQRS_HEALTH_RELAY_LAG },
};

struct projection_fig {
	char *name;
	int64_t events, seconds, parked;
};
struct saga_fig {
	char *type;
	int64_t running, compensating, completed, failed, stuck;
};
struct breaker_fig {
	char *name;
	bool open;
};
/* One relay: its stream, the highest sequence the server acknowledged,
 * and the events after it (the store's head minus the position). */
struct relay_fig {
	char *stream;
	int64_t position, lag;
	enum cqrs_health_status status;
};

struct cqrs_health {
	struct cqrs_health_limits limits;
	struct check checks[C_COUNT];
	bool store_open, views_open, chain_ok;
	struct cqrs_store_facts facts;
	int64_t head;
	struct projection_fig *projections;
	size_t nprojections;
	struct saga_fig *sagas;
	size_t nsagas;
	struct breaker_fig *breakers;
	size_t nbreakers;
	struct relay_fig *relays;
	size_t nrelays;
	bool relays_read; /* the counters could be read */
	bool oom;
	time_t ran_at;
};

static void set(struct check *c, enum cqrs_health_status s, const char *fmt, ...) CQRS_PRINTF(3, 4);
static void set(struct check *c, enum cqrs_health_status s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	c->status = s;
	vsnprintf(c->detail, sizeof c->detail, fmt, ap);
	va_end(ap);
}

/* A figure against its thresholds: at or above (at or below, for the
 * free disk) critical, else warning; a threshold of 0 is off. */
static void judge(cqrs_health *h, struct check *c, int64_t figure)
{
	int64_t w = h->limits.warn[c->limit], k = h->limits.crit[c->limit];
	bool low = c->limit == CQRS_HEALTH_DISK_FREE;
	c->judged = true;
	c->figure = figure;
	if (k > 0 && (low ? figure <= k : figure >= k))
		c->status = CQRS_HEALTH_CRITICAL;
	else if (w > 0 && (low ? figure <= w : figure >= w))
		c->status = CQRS_HEALTH_WARNING;
	else
		c->status = CQRS_HEALTH_OK;
}

/* An error that stopped a check: the store or the views are missing,
 * damaged or newer than the tools (critical), or this user may not look
 * or may not look now (unknown). */
static enum cqrs_health_status status_of_error(const cqrs_error *e)
{
	switch (e->code) {
	case CQRS_EXIT_NOPERM:
	case CQRS_EXIT_TEMPFAIL:
	case CQRS_EXIT_OSERR:
	case CQRS_EXIT_SOFTWARE: return CQRS_HEALTH_UNKNOWN;
	default: return CQRS_HEALTH_CRITICAL;
	}
}

static void unknown_because(cqrs_health *h, const int *which, size_t n, const char *why)
{
	for (size_t i = 0; i < n; i++)
		set(&h->checks[which[i]], CQRS_HEALTH_UNKNOWN, "%s", why);
}

static char *dup_str(cqrs_health *h, const char *s)
{
	char *d = strdup(s);
	if (d == NULL)
		h->oom = true;
	return d;
}

static void *grow(cqrs_health *h, void *p, size_t n, size_t size)
{
	void *q = realloc(p, (n + 1) * size);
	if (q == NULL)
		h->oom = true;
	return q;
}

/* --- the store ---------------------------------------------------------------------- */

static void check_store_file(cqrs_health *h, cqrs_store *st)
{
	struct check *c = &h->checks[C_STORE];
	cqrs_error e = { 0 };
	if (cqrs_store_facts(st, &h->facts, &e) < 0) {
		set(c, status_of_error(&e), "%s", e.msg);
		static const int after[] = { C_INTEGRITY, C_WAL };
		unknown_because(h, after, 2, "the store could not be read");
		return;
	}
	c->judged = true;
	c->figure = h->facts.schema;
	if (h->facts.schema < h->facts.schema_current)
		set(c, CQRS_HEALTH_WARNING,
		    "schema %d, older than this release's %d: the next tool that writes migrates "
		    "it",
		    h->facts.schema, h->facts.schema_current);
	else
		set(c, CQRS_HEALTH_OK, "schema %d", h->facts.schema);
	c = &h->checks[C_INTEGRITY];
	c->judged = true;
	c->figure = h->facts.problems;
	const char *how = h->facts.server ? "tables, triggers and sequences" : "quick_check";
	if (h->facts.problems > 0)
		set(c, CQRS_HEALTH_CRITICAL, "%s: %s", how, h->facts.integrity);
	else
		set(c, CQRS_HEALTH_OK, "%s: ok", how);
	if (h->facts.server) {
		set(&h->checks[C_WAL], CQRS_HEALTH_OK,
		    "not applicable: the PostgreSQL server keeps its write-ahead log");
		return;
	}
	judge(h, &h->checks[C_WAL], h->facts.wal_bytes);
	snprintf(h->checks[C_WAL].detail, sizeof h->checks[C_WAL].detail,
		 "write-ahead log %" PRId64 " bytes", h->facts.wal_bytes);
}

/* The chain from the first event to the last, then the store against its
 * witness: a store rolled back, or with an edited event, is critical. */
static void check_chain(cqrs_health *h, cqrs_store *st, const char *store_path)
{
	struct check *c = &h->checks[C_CHAIN];
	cqrs_error e = { 0 };
	cqrs_verify v;
	if (cqrs_store_verify(st, &v, &e) < 0) {
		set(c, status_of_error(&e), "%s", e.msg);
		return;
	}
	h->head = v.head;
	c->judged = true;
	c->figure = v.checked;
	if (v.bad != 0) {
		set(c, CQRS_HEALTH_CRITICAL, "sequence %" PRId64 ": %s", v.bad, v.why);
		return;
	}
	if (cqrs_store_on_server(store_path)) {
		h->chain_ok = true;
		set(c, CQRS_HEALTH_OK,
		    "verified %" PRId64 " events; no witness: the server keeps "
		    "its history",
		    v.checked);
		return;
	}
	char wpath[PATH_MAX + 16];
	snprintf(wpath, sizeof wpath, "%s.witness", store_path);
	bool present = access(wpath, F_OK) == 0;
	bool readable = present && access(wpath, R_OK) == 0;
	if (cqrs_store_check_witness(st, store_path, &e) < 0) {
		set(c, e.code == CQRS_EXIT_BEHIND ? CQRS_HEALTH_CRITICAL : status_of_error(&e),
		    "%s", e.msg);
		return;
	}
	h->chain_ok = true;
	set(c, CQRS_HEALTH_OK, "verified %" PRId64 " events; witness %s", v.checked,
	    !present   ? "none"
	    : readable ? "matched"
		       : "not readable by this user: rollbacks go unseen");
}

/* --- the views ---------------------------------------------------------------------- */

static void each_lag(void *arg, const struct cqrs_view_lag *lag)
{
	cqrs_health *h = arg;
	struct projection_fig *p = grow(h, h->projections, h->nprojections, sizeof *p);
	if (p == NULL)
		return;
	h->projections = p;
	p[h->nprojections] =
		(struct projection_fig){ dup_str(h, lag->projection), lag->events_behind,
					 lag->seconds_behind, lag->parked };
	if (p[h->nprojections].name != NULL)
		h->nprojections++;
}

/* The worst projection of one figure: its index, or -1 when none. */
static int worst(const cqrs_health *h, size_t field_offset)
{
	int best = -1;
	for (size_t i = 0; i < h->nprojections; i++) {
		const int64_t *f =
			(const int64_t *)((const char *)&h->projections[i] + field_offset);
		const int64_t *b = best < 0
					   ? NULL
					   : (const int64_t *)((const char *)&h->projections[best] +
							       field_offset);
		if (b == NULL || *f > *b)
			best = (int)i;
	}
	return best;
}

static void check_views(cqrs_health *h, cqrs_store *st, const char *views_path)
{
	static const int after[] = { C_LAG_EVENTS, C_LAG_SECONDS, C_PARKED };
	struct check *c = &h->checks[C_VIEWS];
	cqrs_error e = { 0 };
	if (cqrs_views_lag_each(views_path, st, each_lag, h, &e) < 0) {
		set(c, status_of_error(&e), "%s", e.msg);
		unknown_because(h, after, 3, "the views could not be read");
		return;
	}
	h->views_open = true;
	c->judged = true;
	c->figure = (int64_t)h->nprojections;
	set(c, CQRS_HEALTH_OK, "%zu projections", h->nprojections);
	int we = worst(h, offsetof(struct projection_fig, events));
	int ws = worst(h, offsetof(struct projection_fig, seconds));
	int64_t parked = 0;
	for (size_t i = 0; i < h->nprojections; i++)
		parked += h->projections[i].parked;
	judge(h, &h->checks[C_LAG_EVENTS], we < 0 ? 0 : h->projections[we].events);
	judge(h, &h->checks[C_LAG_SECONDS], ws < 0 ? 0 : h->projections[ws].seconds);
	judge(h, &h->checks[C_PARKED], parked);
	snprintf(h->checks[C_LAG_EVENTS].detail, sizeof c->detail, "%s %" PRId64 " events behind",
		 we < 0 ? "no projection" : h->projections[we].name,
		 we < 0 ? 0 : h->projections[we].events);
	snprintf(h->checks[C_LAG_SECONDS].detail, sizeof c->detail, "%s %" PRId64 " seconds behind",
		 ws < 0 ? "no projection" : h->projections[ws].name,
		 ws < 0 ? 0 : h->projections[ws].seconds);
	snprintf(h->checks[C_PARKED].detail, sizeof c->detail, "%" PRId64 " events parked", parked);
}

/* --- the sagas ---------------------------------------------------------------------- */

static void each_saga(void *arg, const struct cqrs_saga_counts *s)
{
	cqrs_health *h = arg;
	struct saga_fig *p = grow(h, h->sagas, h->nsagas, sizeof *p);
	if (p == NULL)
		return;
	h->sagas = p;
	p[h->nsagas] = (struct saga_fig){ dup_str(h, s->saga_type),
					  s->running,
					  s->compensating,
					  s->completed,
					  s->failed,
					  s->stuck };
	if (p[h->nsagas].type != NULL)
		h->nsagas++;
	h->checks[C_COMPENSATION].figure += s->compensation_failed;
}

static void each_breaker(void *arg, const struct cqrs_saga_breaker *b)
{
	cqrs_health *h = arg;
	struct breaker_fig *p = grow(h, h->breakers, h->nbreakers, sizeof *p);
	if (p == NULL)
		return;
	h->breakers = p;
	p[h->nbreakers] = (struct breaker_fig){ dup_str(h, b->name), b->open };
	if (p[h->nbreakers].name != NULL)
		h->nbreakers++;
}

/* The saga checks read the counts by status through cqrs_saga_facts
 * alone.  A store with no saga tables (a PostgreSQL store before its
 * sagas) has no saga to be stuck: ok, with no figure; one whose sagas
 * this release cannot read there is unknown, not critical. */
static void check_sagas(cqrs_health *h, cqrs_store *st, const char *store_path)
{
	cqrs_error e = { 0 };
	if (h->facts.no_saga_tables) {
		for (int i = C_STUCK; i <= C_BREAKERS; i++)
			set(&h->checks[i], CQRS_HEALTH_OK,
			    "not applicable: the store keeps no saga tables");
		return;
	}
	if (cqrs_saga_facts(st, h->limits.stuck_after_us, each_saga, each_breaker, h, &e) < 0) {
		bool elsewhere = cqrs_store_on_server(store_path) && e.code == CQRS_EXIT_CONFIG;
		for (int i = C_STUCK; i <= C_BREAKERS; i++)
			set(&h->checks[i], elsewhere ? CQRS_HEALTH_UNKNOWN : status_of_error(&e),
			    "%s%s", elsewhere ? "not applicable: " : "", e.msg);
		return;
	}
	int64_t stuck = 0, failed = 0, open = 0;
	for (size_t i = 0; i < h->nsagas; i++)
		stuck += h->sagas[i].stuck, failed += h->sagas[i].failed;
	struct cqrs_strbuf names = { 0 };
	for (size_t i = 0; i < h->nbreakers; i++)
		if (h->breakers[i].open) {
			cqrs_strbuf_printf(&names, "%s%s", open++ ? ", " : "", h->breakers[i].name);
		}
	char after[64];
	snprintf(after, sizeof after, "%" PRId64 "s", h->limits.stuck_after_us / 1000000);
	judge(h, &h->checks[C_STUCK], stuck);
	judge(h, &h->checks[C_FAILED], failed);
	judge(h, &h->checks[C_COMPENSATION], h->checks[C_COMPENSATION].figure);
	judge(h, &h->checks[C_BREAKERS], open);
	size_t cap = sizeof h->checks[0].detail;
	snprintf(h->checks[C_STUCK].detail, cap, "%" PRId64 " sagas with no change for %s", stuck,
		 after);
	snprintf(h->checks[C_FAILED].detail, cap, "%" PRId64 " sagas FAILED", failed);
	snprintf(h->checks[C_COMPENSATION].detail, cap,
		 "%" PRId64 " sagas whose compensation failed (cqrs-saga retry)",
		 h->checks[C_COMPENSATION].figure);
	snprintf(h->checks[C_BREAKERS].detail, cap, "%" PRId64 " open%s%s", open, open ? ": " : "",
		 open ? cqrs_strbuf_str(&names) : "");
	if (names.oom)
		h->oom = true;
	cqrs_strbuf_free(&names);
}

/* --- the relays (issue 14) ---------------------------------------------------------
 * cqrs-relay publish keeps its position in the store, counter
 * "relay:STREAM" = the position + 1 (relay_publish.c): read here through
 * the store facade, on either backend. */

#define RELAY_COUNTER_PREFIX "relay:"

static void each_relay(void *arg, const char *name, int64_t value)
{
	cqrs_health *h = arg;
	struct relay_fig *p = grow(h, h->relays, h->nrelays, sizeof *p);
	if (p == NULL)
		return;
	h->relays = p;
	p[h->nrelays] = (struct relay_fig){ dup_str(h, name + strlen(RELAY_COUNTER_PREFIX)),
					    value > 0 ? value - 1 : 0, 0, CQRS_HEALTH_OK };
	if (p[h->nrelays].stream != NULL)
		h->nrelays++;
}

/* Each relay's lag judged on its own; the check is the worst of them. */
static void check_relays(cqrs_health *h, cqrs_store *st)
{
	struct check *c = &h->checks[C_RELAY];
	cqrs_error e = { 0 };
	int64_t head;
	if (cqrs_store_counters_each(st, RELAY_COUNTER_PREFIX, each_relay, h, &e) < 0 ||
	    (head = cqrs_store_last_sequence(st, &e)) < 0) {
		set(c, status_of_error(&e), "%s", e.msg);
		return;
	}
	h->relays_read = true;
	if (h->nrelays == 0) {
		set(c, CQRS_HEALTH_OK, "no relay");
		return;
	}
	size_t worst_at = 0;
	for (size_t i = 0; i < h->nrelays; i++) {
		struct relay_fig *r = &h->relays[i];
		r->lag = head > r->position ? head - r->position : 0;
		judge(h, c, r->lag);
		r->status = c->status;
		if (r->lag > h->relays[worst_at].lag)
			worst_at = i;
	}
	const struct relay_fig *w = &h->relays[worst_at];
	judge(h, c, w->lag);
	snprintf(c->detail, sizeof c->detail, "%s %" PRId64 " events behind", w->stream, w->lag);
}

/* --- the disk ----------------------------------------------------------------------- */

/* Free space for the user's files (f_bavail) where the store and the
 * views live: the smaller of the two. */
static void check_disk(cqrs_health *h, const char *store_path, const char *views_path)
{
	struct check *c = &h->checks[C_DISK];
	const char *paths[] = { store_path, views_path };
	int64_t least = -1;
	const char *where = NULL;
	for (int i = 0; i < 2; i++) {
		/* a store on a server: its disk is the server's to watch */
		if (i == 0 && cqrs_store_on_server(store_path))
			continue;
		char copy[PATH_MAX];
		snprintf(copy, sizeof copy, "%s", paths[i]);
		const char *dir = dirname(copy);
		struct statvfs sv;
		if (statvfs(dir, &sv) < 0) {
			set(c, CQRS_HEALTH_UNKNOWN, "%s: %s", dir, strerror(errno));
			return;
		}
		int64_t free_bytes = (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
		if (least < 0 || free_bytes < least) {
			least = free_bytes;
			where = paths[i];
		}
	}
	judge(h, c, least);
	char copy[PATH_MAX];
	snprintf(copy, sizeof copy, "%s", where);
	snprintf(c->detail, sizeof c->detail, "%" PRId64 " bytes free in %s", least, dirname(copy));
}

/* --- the run -------------------------------------------------------------------------- */

cqrs_health *cqrs_health_run(const char *store_path, const char *views_path,
			     const struct cqrs_health_limits *limits, cqrs_error *err)
{
	cqrs_health *h = calloc(1, sizeof *h);
	if (h == NULL) {
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		return NULL;
	}
	h->limits = *limits;
	h->ran_at = time(NULL);
	memcpy(h->checks, check_init, sizeof h->checks);
	cqrs_error e = { 0 };
	cqrs_store *st = cqrs_store_open(store_path, CQRS_OPEN_READ, &e);
	if (st == NULL) {
		/* a server that cannot be reached (75) is what monitoring is for */
		bool down = cqrs_store_on_server(store_path) && e.code == CQRS_EXIT_TEMPFAIL;
		set(&h->checks[C_STORE], down ? CQRS_HEALTH_CRITICAL : status_of_error(&e), "%s",
		    e.msg);
		static const int after[] = { C_INTEGRITY,    C_CHAIN,	 C_VIEWS, C_LAG_EVENTS,
					     C_LAG_SECONDS,  C_PARKED,	 C_STUCK, C_FAILED,
					     C_COMPENSATION, C_BREAKERS, C_WAL,	  C_RELAY };
		unknown_because(h, after, sizeof after / sizeof after[0],
				"the store could not be opened");
	} else {
		h->store_open = true;
		check_store_file(h, st);
		check_chain(h, st, store_path);
		check_views(h, st, views_path);
		check_sagas(h, st, store_path);
		check_relays(h, st);
		cqrs_store_close(st);
	}
	check_disk(h, store_path, views_path);
	if (h->oom) {
		cqrs_health_free(h);
		cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		return NULL;
	}
	return h;
}

void cqrs_health_free(cqrs_health *h)
{
	if (h == NULL)
		return;
	for (size_t i = 0; i < h->nprojections; i++)
		free(h->projections[i].name);
	for (size_t i = 0; i < h->nsagas; i++)
		free(h->sagas[i].type);
	for (size_t i = 0; i < h->nbreakers; i++)
		free(h->breakers[i].name);
	free(h->projections);
	free(h->sagas);
	free(h->breakers);
	for (size_t i = 0; i < h->nrelays; i++)
		free(h->relays[i].stream);
	free(h->relays);
	free(h);
}

/* The monitoring plugins' order (max_state_alt): critical over warning
 * over unknown over ok. */
int cqrs_health_status(const cqrs_health *h)
{
	static const int rank[] = { [CQRS_HEALTH_OK] = 0,
				    [CQRS_HEALTH_UNKNOWN] = 1,
				    [CQRS_HEALTH_WARNING] = 2,
				    [CQRS_HEALTH_CRITICAL] = 3 };
	enum cqrs_health_status w = CQRS_HEALTH_OK;
	for (int i = 0; i < C_COUNT; i++)
		if (rank[h->checks[i].status] > rank[w])
			w = h->checks[i].status;
	return (int)w;
}

/* --- reports -------------------------------------------------------------------------- */

static const char *const status_names[] = { "ok", "warning", "critical", "unknown" };

static void json_threshold(FILE *out, const char *key, int64_t v)
{
	if (v > 0)
		fprintf(out, ",\"%s\":%" PRId64, key, v);
	else
		fprintf(out, ",\"%s\":null", key);
}

/* The relay check as one line per stream (issue 14). */
static void relay_lines_ndjson(const cqrs_health *h, FILE *out)
{
	for (size_t i = 0; i < h->nrelays; i++) {
		const struct relay_fig *r = &h->relays[i];
		fputs("{\"check\":\"relay\",\"stream\":", out);
		cqrs_json_write_string(out, r->stream, strlen(r->stream));
		fprintf(out, ",\"status\":\"%s\",\"figure\":%" PRId64 ",\"unit\":\"events\"",
			status_names[r->status], r->lag);
		json_threshold(out, "warning", h->limits.warn[CQRS_HEALTH_RELAY_LAG]);
		json_threshold(out, "critical", h->limits.crit[CQRS_HEALTH_RELAY_LAG]);
		fprintf(out, ",\"detail\":\"position %" PRId64 ", %" PRId64 " events behind\"}\n",
			r->position, r->lag);
	}
}

void cqrs_health_write_ndjson(const cqrs_health *h, FILE *out)
{
	for (int i = 0; i < C_COUNT; i++) {
		const struct check *c = &h->checks[i];
		if (i == C_RELAY && h->nrelays > 0) {
			relay_lines_ndjson(h, out);
			continue;
		}
		fprintf(out, "{\"check\":\"%s\",\"status\":\"%s\",\"figure\":", c->name,
			status_names[c->status]);
		if (c->judged)
			fprintf(out, "%" PRId64, c->figure);
		else
			fputs("null", out);
		fprintf(out, ",\"unit\":\"%s\"", c->unit);
		if (c->limit >= 0) {
			json_threshold(out, "warning", h->limits.warn[c->limit]);
			json_threshold(out, "critical", h->limits.crit[c->limit]);
		}
		fputs(",\"detail\":", out);
		cqrs_json_write_string(out, c->detail, strlen(c->detail));
		fputs("}\n", out);
	}
}

void cqrs_health_write_table(const cqrs_health *h, FILE *out)
{
	fprintf(out, "%-20s %-8s %14s  %s\n", "CHECK", "STATUS", "FIGURE", "DETAIL");
	for (int i = 0; i < C_COUNT; i++) {
		const struct check *c = &h->checks[i];
		if (i == C_RELAY && h->nrelays > 0) {
			for (size_t k = 0; k < h->nrelays; k++) {
				const struct relay_fig *r = &h->relays[k];
				fprintf(out, "%-20s %-8s %14" PRId64 "  %s: position %" PRId64 "\n",
					c->name, status_names[r->status], r->lag, r->stream,
					r->position);
			}
			continue;
		}
		char fig[32] = "-";
		if (c->judged)
			snprintf(fig, sizeof fig, "%" PRId64, c->figure);
		fprintf(out, "%-20s %-8s %14s  %s\n", c->name, status_names[c->status], fig,
			c->detail);
	}
}

/* A Prometheus label value: backslash, double quote and newline escaped. */
static void label(struct cqrs_strbuf *b, const char *v)
{
	cqrs_strbuf_putc(b, '"');
	for (const char *p = v; *p != '\0'; p++) {
		if (*p == '\\' || *p == '"')
			cqrs_strbuf_putc(b, '\\');
		if (*p == '\n')
			cqrs_strbuf_puts(b, "\\n");
		else
			cqrs_strbuf_putc(b, *p);
	}
	cqrs_strbuf_putc(b, '"');
}

static void gauge(struct cqrs_strbuf *b, const char *name, const char *help)
{
	cqrs_strbuf_printf(b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
}

static void store_gauges(struct cqrs_strbuf *b, const cqrs_health *h)
{
	if (h->checks[C_STORE].judged && h->facts.server) {
		gauge(b, "cqrs_store_size_bytes",
		      "Size of the event store's main file (PostgreSQL: its schema's tables).");
		cqrs_strbuf_printf(b, "cqrs_store_size_bytes %" PRId64 "\n", h->facts.size_bytes);
		gauge(b, "cqrs_store_database_size_bytes",
		      "Size of the PostgreSQL database the store is in.");
		cqrs_strbuf_printf(b, "cqrs_store_database_size_bytes %" PRId64 "\n",
				   h->facts.database_bytes);
	} else if (h->checks[C_STORE].judged) {
		gauge(b, "cqrs_store_size_bytes", "Size of the event store's main file.");
		cqrs_strbuf_printf(b, "cqrs_store_size_bytes %" PRId64 "\n", h->facts.size_bytes);
		gauge(b, "cqrs_store_wal_size_bytes", "Size of the store's write-ahead log.");
		cqrs_strbuf_printf(b, "cqrs_store_wal_size_bytes %" PRId64 "\n",
				   h->facts.wal_bytes);
	}
	if (h->checks[C_STORE].judged && h->facts.events >= 0) {
		gauge(b, "cqrs_store_events", "Events in the store.");
		cqrs_strbuf_printf(b, "cqrs_store_events %" PRId64 "\n", h->facts.events);
	}
	if (h->checks[C_CHAIN].judged) {
		gauge(b, "cqrs_store_head_sequence", "Sequence of the store's last event.");
		cqrs_strbuf_printf(b, "cqrs_store_head_sequence %" PRId64 "\n", h->head);
		gauge(b, "cqrs_store_chain_ok",
		      "1 when the hash chain verifies and the store holds its witness's event.");
		cqrs_strbuf_printf(b, "cqrs_store_chain_ok %d\n", h->chain_ok ? 1 : 0);
	}
}

static void view_gauges(struct cqrs_strbuf *b, const cqrs_health *h)
{
	static const struct {
		const char *name, *help;
		size_t offset;
	} figs[] = {
		{ "cqrs_projection_lag_events", "Events the projection has not applied yet.",
		  offsetof(struct projection_fig, events) },
		{ "cqrs_projection_lag_seconds",
		  "Time between the projection's last event and the store's newest one.",
		  offsetof(struct projection_fig, seconds) },
		{ "cqrs_projection_parked_events", "Events the projection parked.",
		  offsetof(struct projection_fig, parked) },
	};
	if (!h->views_open)
		return;
	for (size_t f = 0; f < sizeof figs / sizeof figs[0]; f++) {
		gauge(b, figs[f].name, figs[f].help);
		for (size_t i = 0; i < h->nprojections; i++) {
			const struct projection_fig *p = &h->projections[i];
			cqrs_strbuf_printf(b, "%s{projection=", figs[f].name);
			label(b, p->name);
			cqrs_strbuf_printf(b, "} %" PRId64 "\n",
					   *(const int64_t *)((const char *)p + figs[f].offset));
		}
	}
}

static void saga_gauges(struct cqrs_strbuf *b, const cqrs_health *h)
{
	if (!h->checks[C_STUCK].judged)
		return;
	gauge(b, "cqrs_saga_instances", "Saga instances by type and status.");
	for (size_t i = 0; i < h->nsagas; i++) {
		const struct saga_fig *s = &h->sagas[i];
		const struct {
			const char *status;
			int64_t n;
		} by[] = { { "RUNNING", s->running },
			   { "COMPLETED", s->completed },
			   { "COMPENSATING", s->compensating },
			   { "FAILED", s->failed } };
		for (size_t k = 0; k < 4; k++) {
			cqrs_strbuf_puts(b, "cqrs_saga_instances{saga=");
			label(b, s->type);
			cqrs_strbuf_printf(b, ",status=\"%s\"} %" PRId64 "\n", by[k].status,
					   by[k].n);
		}
	}
	gauge(b, "cqrs_saga_stuck_instances",
	      "Running or compensating sagas with no change for the stuck-after time.");
	for (size_t i = 0; i < h->nsagas; i++) {
		cqrs_strbuf_puts(b, "cqrs_saga_stuck_instances{saga=");
		label(b, h->sagas[i].type);
		cqrs_strbuf_printf(b, "} %" PRId64 "\n", h->sagas[i].stuck);
	}
	gauge(b, "cqrs_breakers_open", "Circuit breakers that are not closed.");
	cqrs_strbuf_printf(b, "cqrs_breakers_open %" PRId64 "\n", h->checks[C_BREAKERS].figure);
	gauge(b, "cqrs_breaker_open", "1 when the circuit breaker is open or half open.");
	for (size_t i = 0; i < h->nbreakers; i++) {
		cqrs_strbuf_puts(b, "cqrs_breaker_open{breaker=");
		label(b, h->breakers[i].name);
		cqrs_strbuf_printf(b, "} %d\n", h->breakers[i].open ? 1 : 0);
	}
}

static void relay_gauges(struct cqrs_strbuf *b, const cqrs_health *h)
{
	if (!h->relays_read)
		return;
	/* not cqrs_relay_lag_events: that is cqrs-relay's own (cqrs-metrics(7)),
	 * and node_exporter refuses one series in two files */
	gauge(b, "cqrs_relay_position_sequence",
	      "Sequence of the last event the relay's server acknowledged.");
	for (size_t i = 0; i < h->nrelays; i++) {
		cqrs_strbuf_puts(b, "cqrs_relay_position_sequence{stream=");
		label(b, h->relays[i].stream);
		cqrs_strbuf_printf(b, "} %" PRId64 "\n", h->relays[i].position);
	}
	gauge(b, "cqrs_relay_pending_events",
	      "Events in the store after the relay's position (not yet published).");
	for (size_t i = 0; i < h->nrelays; i++) {
		cqrs_strbuf_puts(b, "cqrs_relay_pending_events{stream=");
		label(b, h->relays[i].stream);
		cqrs_strbuf_printf(b, "} %" PRId64 "\n", h->relays[i].lag);
	}
}

int cqrs_health_write_textfile(const cqrs_health *h, const char *dir, cqrs_error *err)
{
	struct cqrs_strbuf b = { 0 };
	store_gauges(&b, h);
	view_gauges(&b, h);
	saga_gauges(&b, h);
	relay_gauges(&b, h);
	if (h->checks[C_DISK].judged) {
		gauge(&b, "cqrs_disk_free_bytes",
		      "Free bytes where the store and the views live (the smaller).");
		cqrs_strbuf_printf(&b, "cqrs_disk_free_bytes %" PRId64 "\n",
				   h->checks[C_DISK].figure);
	}
	gauge(&b, "cqrs_health_check_status",
	      "Status of each check: 0 ok, 1 warning, 2 critical, 3 unknown.");
	for (int i = 0; i < C_COUNT; i++)
		cqrs_strbuf_printf(&b, "cqrs_health_check_status{check=\"%s\"} %d\n",
				   h->checks[i].name, (int)h->checks[i].status);
	gauge(&b, "cqrs_health_last_run_timestamp_seconds", "When cqrs-health last ran.");
	cqrs_strbuf_printf(&b, "cqrs_health_last_run_timestamp_seconds %lld\n",
			   (long long)h->ran_at);
	int rc;
	if (b.oom)
		rc = cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	else
		/* 0644: node_exporter runs as a user of its own and must read it */
		rc = cqrs_textfile_replace(dir, "cqrs_health.prom", cqrs_strbuf_str(&b), b.len,
					   0644, err);
	cqrs_strbuf_free(&b);
	return rc;
}
