/*
 * Metrics as command-line programs give them: each tool, when asked
 * (--metrics-dir or $CQRS_METRICS_DIR), adds what it measured to one file
 * of its own, DIR/cqrs_TOOL.prom, in the Prometheus text format that
 * node_exporter's textfile collector reads (cqrs-metrics(7)).
 *
 * A process counts in memory and merges at exit (and every
 * $CQRS_METRICS_PERIOD seconds, 15 by default, for long runs): under an flock on a lock
 * file beside the .prom file it reads the file's values, adds its own,
 * and replaces the file atomically (cqrs_textfile_replace), so that
 * processes running at once lose none of each other's counts.
 *
 * Asked for nothing, every call below returns at its first test: no
 * clock, no allocation.  Not thread-safe: record from one thread.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cqrs.h"
#include "common/strbuf.h"
#include "banned.h"

/* Durations from 100 us (a query from the page cache) to 60 s (a long
 * batch); beyond that only +Inf, _sum and _count. */
static const double bucket_le[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
				    0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
				    1,	    2.5,     5,	     10,    30,	    60 };
static const char *const bucket_text[] = { "0.0001", "0.00025", "0.0005", "0.001", "0.0025",
					   "0.005",  "0.01",	"0.025",  "0.05",  "0.1",
					   "0.25",   "0.5",	"1",	  "2.5",   "5",
					   "10",     "30",	"60",	  "+Inf" };
#define NBUCKETS (sizeof bucket_le / sizeof *bucket_le + 1) /* with +Inf */

enum kind { COUNTER, GAUGE, HISTOGRAM };

static const struct family {
	const char *name;
	enum kind kind;
	const char *label[2]; /* NULL: no such label */
	const char *help;
} families[CQRS_METRIC_COUNT] = {
	[CQRS_METRIC_COMMAND_DURATION] = { "cqrs_command_duration_seconds",
					   HISTOGRAM,
					   { "type", "result" },
					   "Time from a command received to its events durable." },
	[CQRS_METRIC_EVENTS_APPENDED] = { "cqrs_events_appended_total",
					  COUNTER,
					  { "tool", NULL },
					  "Events appended to the store and committed." },
	[CQRS_METRIC_PROJECTION_LAG] = { "cqrs_projection_event_lag_seconds",
					 HISTOGRAM,
					 { "projection", NULL },
					 "Time from an event's timestamp to the commit of the "
					 "projection that applied it." },
	[CQRS_METRIC_PROJECTION_EVENTS] = { "cqrs_projection_events_total",
					    COUNTER,
					    { "projection", "result" },
					    "Events a projection applied or parked, committed." },
	[CQRS_METRIC_QUERY_DURATION] = { "cqrs_query_duration_seconds",
					 HISTOGRAM,
					 { "query", NULL },
					 "Time to answer a query, output included." },
	[CQRS_METRIC_SAGA_STARTED] = { "cqrs_saga_started_total",
				       COUNTER,
				       { "saga", NULL },
				       "Saga instances started." },
	[CQRS_METRIC_SAGA_FINISHED] = { "cqrs_saga_finished_total",
					COUNTER,
					{ "saga", "outcome" },
					"Saga instances finished, by outcome." },
	[CQRS_METRIC_REPLAY_EVENTS] = { "cqrs_replay_events_total",
					COUNTER,
					{ "projection", NULL },
					"Events applied by rebuilds." },
	[CQRS_METRIC_REPLAY_DURATION] = { "cqrs_replay_duration_seconds",
					  COUNTER,
					  { "projection", NULL },
					  "Seconds spent in rebuilds." },
	[CQRS_METRIC_REPLAY_SPEED] = { "cqrs_replay_events_per_second",
				       GAUGE,
				       { "projection", NULL },
				       "Events per second of the last rebuild." },
};

/* Most series a file keeps: a bound on its size whatever the labels. */
#define MAX_SERIES 1000

struct cqrs_metric_series {
	enum cqrs_metric metric;
	char *value[2];
	double count;		 /* counter or gauge value; a histogram's _count */
	double sum;		 /* a histogram's _sum */
	double bucket[NBUCKETS]; /* cumulative, as the format writes them */
	bool changed;		 /* since the last merge */
	struct cqrs_metric_series *next;
};

/* A set of series: this process's, or the file's while merging. */
struct series_set {
	struct cqrs_metric_series *head, **tail;
	size_t n;
};

static struct {
	bool on;
	bool warned;
	pid_t pid; /* a forked child that exits must not merge its parent's counts */
	char dir[4096];
	char file[256]; /* cqrs_TOOL.prom */
	char lock[272]; /* .cqrs_TOOL.prom.lock */
	int64_t period; /* seconds between merges of a long run */
	struct series_set mine;
	struct timespec last_merge;
} m = { .mine = { NULL, &m.mine.head, 0 } };

static double mono_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool cqrs_metrics_on(void)
{
	return m.on;
}

double cqrs_metrics_clock(void)
{
	return m.on ? mono_seconds() : 0;
}

double cqrs_metrics_wall_clock(void)
{
	if (!m.on)
		return 0;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int digits(const char *s, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

double cqrs_metrics_timestamp_seconds(const char *ts)
{
	/* the envelope's normalised form: 2026-01-16T14:00:00.123456Z */
	if (strlen(ts) != CQRS_TIMESTAMP_LEN)
		return 0;
	int64_t days = cqrs_days_from_civil(digits(ts, 4), (unsigned)digits(ts + 5, 2),
					    (unsigned)digits(ts + 8, 2));
	int64_t secs = days * 86400 + digits(ts + 11, 2) * 3600 + digits(ts + 14, 2) * 60 +
		       digits(ts + 17, 2);
	return (double)secs + digits(ts + 20, 6) / 1e6;
}

static void warn_once(const char *msg)
{
	if (m.warned)
		return;
	m.warned = true;
	cqrs_warn("metrics: %s (the run itself is not affected)", msg);
}

static void merge_at_exit(void)
{
	if (getpid() == m.pid)
		cqrs_metrics_flush();
}

int cqrs_metrics_init(const char *dir_option, cqrs_error *err)
{
	const char *dir = dir_option;
	if (dir == NULL) {
		dir = getenv("CQRS_METRICS_DIR");
		if (dir == NULL || *dir == '\0')
			return 0; /* not asked */
	}
	if (*dir == '\0')
		return cqrs_fail(err, CQRS_EXIT_USAGE, "--metrics-dir needs a directory");
	if (strlen(dir) >= sizeof m.dir)
		return cqrs_fail(err, CQRS_EXIT_USAGE, "%s: path too long", dir);
	snprintf(m.dir, sizeof m.dir, "%s", dir);
	/* cqrs-command writes cqrs_command.prom */
	const char *tool = cqrs_tool_name();
	if (strncmp(tool, "cqrs-", 5) == 0)
		tool += 5;
	snprintf(m.file, sizeof m.file, "cqrs_%s.prom", tool);
	for (char *p = m.file; *p; p++)
		if (*p == '-')
			*p = '_';
	snprintf(m.lock, sizeof m.lock, ".%s.lock", m.file);
	m.pid = getpid();
	const char *period = getenv("CQRS_METRICS_PERIOD");
	if (period == NULL || cqrs_parse_int64(period, &m.period) < 0)
		m.period = CQRS_METRICS_PERIOD_DEFAULT;
	clock_gettime(CLOCK_MONOTONIC, &m.last_merge);
	if (!m.on)
		atexit(merge_at_exit);
	m.on = true;
	return 0;
}

/* --- series -------------------------------------------------------------------- */

static bool same(const char *a, const char *b)
{
	return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

static struct cqrs_metric_series *find(struct series_set *set, enum cqrs_metric metric,
				       const char *v0, const char *v1)
{
	for (struct cqrs_metric_series *s = set->head; s != NULL; s = s->next)
		if (s->metric == metric && same(s->value[0], v0) && same(s->value[1], v1))
			return s;
	return NULL;
}

static struct cqrs_metric_series *add_series(struct series_set *set, enum cqrs_metric metric,
					     const char *v0, const char *v1)
{
	if (set->n >= MAX_SERIES)
		return NULL;
	struct cqrs_metric_series *s = calloc(1, sizeof *s);
	if (s == NULL)
		return NULL;
	s->metric = metric;
	const char *v[2] = { v0, v1 };
	for (int i = 0; i < 2; i++) {
		if (families[metric].label[i] == NULL)
			continue;
		s->value[i] = strdup(v[i] != NULL ? v[i] : "");
		if (s->value[i] == NULL) {
			free(s->value[0]);
			free(s);
			return NULL;
		}
	}
	*set->tail = s;
	set->tail = &s->next;
	set->n++;
	return s;
}

static void free_set(struct series_set *set)
{
	struct cqrs_metric_series *s = set->head;
	while (s != NULL) {
		struct cqrs_metric_series *next = s->next;
		free(s->value[0]);
		free(s->value[1]);
		free(s);
		s = next;
	}
	set->head = NULL;
	set->tail = &set->head;
	set->n = 0;
}

cqrs_metric_series *cqrs_metrics_series(enum cqrs_metric metric, const char *v0, const char *v1)
{
	if (!m.on)
		return NULL;
	if (families[metric].label[0] != NULL && v0 == NULL)
		v0 = "";
	if (families[metric].label[1] != NULL && v1 == NULL)
		v1 = "";
	if (families[metric].label[0] == NULL)
		v0 = NULL;
	if (families[metric].label[1] == NULL)
		v1 = NULL;
	struct cqrs_metric_series *s = find(&m.mine, metric, v0, v1);
	if (s == NULL && (s = add_series(&m.mine, metric, v0, v1)) == NULL)
		warn_once("too many series, or out of memory: some are not counted");
	return s;
}

void cqrs_metrics_observe(cqrs_metric_series *s, double value)
{
	if (s == NULL)
		return;
	if (value < 0)
		value = 0; /* a clock set back, an event stamped in the future */
	size_t i = 0;
	while (i < NBUCKETS - 1 && value > bucket_le[i])
		i++;
	for (; i < NBUCKETS; i++)
		s->bucket[i]++;
	s->count++;
	s->sum += value;
	s->changed = true;
}

void cqrs_metrics_add(cqrs_metric_series *s, double n)
{
	if (s == NULL)
		return;
	s->count += n;
	s->changed = true;
}

void cqrs_metrics_set(cqrs_metric_series *s, double value)
{
	if (s == NULL)
		return;
	s->count = value;
	s->changed = true;
}

/* --- the file: reading what is there ------------------------------------------- */

/* One label value between quotes, unescaped into out; returns the byte
 * after the closing quote, or NULL. */
static const char *label_value(const char *p, char *out, size_t cap)
{
	size_t n = 0;
	for (; *p != '"'; p++) {
		if (*p == '\0' || *p == '\n')
			return NULL;
		char c = *p;
		if (c == '\\') {
			p++;
			c = *p == 'n' ? '\n' : *p;
			if (c == '\0')
				return NULL;
		}
		if (n + 1 >= cap)
			return NULL;
		out[n++] = c;
	}
	out[n] = '\0';
	return p + 1;
}

enum part { PART_VALUE, PART_BUCKET, PART_SUM, PART_COUNT };

/* The family and part of a sample's name. */
static int which_family(const char *name, size_t len, enum part *part)
{
	static const struct {
		const char *suffix;
		enum part part;
	} parts[] = { { "_bucket", PART_BUCKET }, { "_sum", PART_SUM }, { "_count", PART_COUNT } };
	for (int f = 0; f < CQRS_METRIC_COUNT; f++) {
		size_t fl = strlen(families[f].name);
		if (len < fl || memcmp(name, families[f].name, fl) != 0)
			continue;
		if (families[f].kind != HISTOGRAM) {
			if (len == fl) {
				*part = PART_VALUE;
				return f;
			}
			continue;
		}
		for (size_t k = 0; k < sizeof parts / sizeof *parts; k++)
			if (len - fl == strlen(parts[k].suffix) &&
			    memcmp(name + fl, parts[k].suffix, len - fl) == 0) {
				*part = parts[k].part;
				return f;
			}
	}
	return -1;
}

/* One sample line into set; false when it is not one this file holds. */
static bool read_sample(struct series_set *set, char *line)
{
	size_t nlen = strcspn(line, "{ ");
	enum part part;
	int f = which_family(line, nlen, &part);
	if (f < 0)
		return false;
	char val[2][512] = { "", "" }, le[32] = "";
	bool has[2] = { false, false }, has_le = false;
	const char *p = line + nlen;
	if (*p == '{') {
		p++;
		while (*p != '}') {
			size_t kl = strcspn(p, "=");
			if (p[kl] != '=' || p[kl + 1] != '"')
				return false;
			char *out = NULL;
			size_t cap = 0;
			for (int i = 0; i < 2; i++)
				if (families[f].label[i] != NULL &&
				    strlen(families[f].label[i]) == kl &&
				    memcmp(p, families[f].label[i], kl) == 0) {
					out = val[i], cap = sizeof val[i], has[i] = true;
				}
			if (out == NULL && part == PART_BUCKET && kl == 2 &&
			    memcmp(p, "le", 2) == 0)
				out = le, cap = sizeof le, has_le = true;
			if (out == NULL)
				return false;
			p = label_value(p + kl + 2, out, cap);
			if (p == NULL)
				return false;
			if (*p == ',')
				p++;
			else if (*p != '}')
				return false;
		}
		p++;
	}
	for (int i = 0; i < 2; i++)
		if ((families[f].label[i] != NULL) != has[i])
			return false;
	if ((part == PART_BUCKET) != has_le || *p != ' ')
		return false;
	char *end;
	double v = strtod(p + 1, &end);
	if (end == p + 1 || (*end != '\0' && *end != ' '))
		return false;
	size_t b = 0;
	if (part == PART_BUCKET) {
		while (b < NBUCKETS && strcmp(bucket_text[b], le) != 0)
			b++;
		if (b == NBUCKETS)
			return false; /* another set of buckets: dropped */
	}
	const char *v0 = has[0] ? val[0] : NULL, *v1 = has[1] ? val[1] : NULL;
	struct cqrs_metric_series *s = find(set, (enum cqrs_metric)f, v0, v1);
	if (s == NULL && (s = add_series(set, (enum cqrs_metric)f, v0, v1)) == NULL)
		return false;
	switch (part) {
	case PART_VALUE:
	case PART_COUNT: s->count = v; break;
	case PART_SUM: s->sum = v; break;
	case PART_BUCKET: s->bucket[b] = v; break;
	}
	return true;
}

/* The samples of the file now in place; a line that is not ours is
 * dropped with a warning (someone edited the file). */
static int read_file(int dirfd, struct series_set *set, cqrs_error *err)
{
	int fd = openat(dirfd, m.file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		return cqrs_fail(err, CQRS_EXIT_IOERR, "%s/%s: %s", m.dir, m.file, strerror(errno));
	}
	struct stat sb;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_uid != geteuid()) {
		close(fd);
		return cqrs_fail(err, CQRS_EXIT_NOPERM,
				 "%s/%s: not a regular file of this user: refused", m.dir, m.file);
	}
	FILE *f = fdopen(fd, "r");
	if (f == NULL) {
		close(fd);
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	long lineno = 0, bad = 0;
	while ((n = getline(&line, &cap, f)) > 0) {
		lineno++;
		if (line[n - 1] == '\n')
			line[--n] = '\0';
		if (n == 0 || line[0] == '#')
			continue;
		if (!read_sample(set, line) && bad++ == 0)
			cqrs_warn("metrics: %s/%s:%ld: not a sample this tool writes: dropped",
				  m.dir, m.file, lineno);
	}
	int rc =
		ferror(f) ? cqrs_fail(err, CQRS_EXIT_IOERR, "%s/%s: read error", m.dir, m.file) : 0;
	free(line);
	fclose(f);
	return rc;
}

/* --- the file: writing it back --------------------------------------------------- */

static void put_escaped(struct cqrs_strbuf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			cqrs_strbuf_putc(b, '\\');
		if (*s == '\n')
			cqrs_strbuf_puts(b, "\\n");
		else
			cqrs_strbuf_putc(b, *s);
	}
}

static void put_labels(struct cqrs_strbuf *b, const struct cqrs_metric_series *s, const char *le)
{
	const struct family *fam = &families[s->metric];
	const char *sep = "{";
	for (int i = 0; i < 2; i++) {
		if (fam->label[i] == NULL)
			continue;
		cqrs_strbuf_printf(b, "%s%s=\"", sep, fam->label[i]);
		put_escaped(b, s->value[i]);
		cqrs_strbuf_putc(b, '"');
		sep = ",";
	}
	if (le != NULL) {
		cqrs_strbuf_printf(b, "%sle=\"%s\"", sep, le);
		sep = ",";
	}
	if (*sep == ',')
		cqrs_strbuf_putc(b, '}');
}

static void put_sample(struct cqrs_strbuf *b, const struct cqrs_metric_series *s,
		       const char *suffix, const char *le, double v)
{
	cqrs_strbuf_puts(b, families[s->metric].name);
	cqrs_strbuf_puts(b, suffix);
	put_labels(b, s, le);
	cqrs_strbuf_printf(b, " %.17g\n", v);
}

static void render(struct cqrs_strbuf *b, const struct series_set *set)
{
	static const char *const type_name[] = { "counter", "gauge", "histogram" };
	for (int f = 0; f < CQRS_METRIC_COUNT; f++) {
		bool head = false;
		for (const struct cqrs_metric_series *s = set->head; s != NULL; s = s->next) {
			if ((int)s->metric != f)
				continue;
			if (!head) {
				cqrs_strbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n",
						   families[f].name, families[f].help,
						   families[f].name, type_name[families[f].kind]);
				head = true;
			}
			if (families[f].kind != HISTOGRAM) {
				put_sample(b, s, "", NULL, s->count);
				continue;
			}
			for (size_t i = 0; i < NBUCKETS; i++)
				put_sample(b, s, "_bucket", bucket_text[i], s->bucket[i]);
			put_sample(b, s, "_sum", NULL, s->sum);
			put_sample(b, s, "_count", NULL, s->count);
		}
	}
}

/* Adds this process's changes to the file's series. */
static void merge_into(struct series_set *file)
{
	for (struct cqrs_metric_series *s = m.mine.head; s != NULL; s = s->next) {
		if (!s->changed)
			continue;
		struct cqrs_metric_series *t = find(file, s->metric, s->value[0], s->value[1]);
		if (t == NULL &&
		    (t = add_series(file, s->metric, s->value[0], s->value[1])) == NULL)
			continue;
		if (families[s->metric].kind == GAUGE) {
			t->count = s->count;
			continue;
		}
		t->count += s->count;
		t->sum += s->sum;
		for (size_t i = 0; i < NBUCKETS; i++)
			t->bucket[i] += s->bucket[i];
	}
}

/* What is merged is counted in the file: start again from zero. */
static void mark_merged(void)
{
	for (struct cqrs_metric_series *s = m.mine.head; s != NULL; s = s->next) {
		if (families[s->metric].kind != GAUGE) {
			s->count = s->sum = 0;
			memset(s->bucket, 0, sizeof s->bucket);
		}
		s->changed = false;
	}
}

static int merge_locked(int dirfd, cqrs_error *err)
{
	struct series_set file = { NULL, &file.head, 0 };
	int rc = read_file(dirfd, &file, err);
	if (rc == 0) {
		merge_into(&file);
		struct cqrs_strbuf b = { 0 };
		render(&b, &file);
		if (b.oom)
			rc = cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		else
			/* 0644: node_exporter reads it as a user of its own */
			rc = cqrs_textfile_replace(m.dir, m.file, b.p != NULL ? b.p : "", b.len,
						   0644, err);
		cqrs_strbuf_free(&b);
	}
	free_set(&file);
	return rc;
}

static int merge(cqrs_error *err)
{
	int dirfd = open(m.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", m.dir, strerror(errno));
	char lock[sizeof m.dir + sizeof m.lock + 1];
	snprintf(lock, sizeof lock, "%s/%s", m.dir, m.lock);
	/* owner-only, and refused when someone else planted it */
	int fd = cqrs_open_trusted(lock, O_RDWR | O_CREAT, true, err);
	if (fd < 0) {
		close(dirfd);
		return -1;
	}
	int rc;
	while ((rc = flock(fd, LOCK_EX)) < 0 && errno == EINTR)
		;
	if (rc < 0)
		rc = cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", lock, strerror(errno));
	else
		rc = merge_locked(dirfd, err);
	close(fd); /* and with it the lock */
	close(dirfd);
	return rc;
}

int cqrs_metrics_flush(void)
{
	if (!m.on)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &m.last_merge);
	bool any = false;
	for (struct cqrs_metric_series *s = m.mine.head; s != NULL && !any; s = s->next)
		any = s->changed;
	if (!any)
		return 0;
	cqrs_error err = { 0 };
	if (merge(&err) < 0) {
		/* kept, to be added at the next merge */
		warn_once(err.msg);
		return -1;
	}
	mark_merged();
	return 0;
}

void cqrs_metrics_tick(void)
{
	if (!m.on)
		return;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec - m.last_merge.tv_sec >= m.period)
		cqrs_metrics_flush();
}
