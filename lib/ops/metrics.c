/*
 * Metrics as command-line programs give them: each tool, when asked
 * (--metrics-dir or $CQRS_METRICS_DIR), adds what it measured to one file
 * of its own, DIR/cqrs_TOOL.prom, in the Prometheus text format that
 * node_exporter's textfile collector reads (cqrs-metrics(7)).
 *
 * A process counts in memory and, at exit (and every $CQRS_METRICS_PERIOD
 * seconds of a long run), appends ONE line with its counts to the tool's
 * journal, DIR/.cqrs_TOOL.journal: one write(2), no fsync, a few
 * microseconds.  Folding the journal into the .prom file (read the file,
 * add, replace it atomically) costs a lock, a parse and an fsync, so it is
 * done only when due: by the process that finds the journal older than
 * $CQRS_METRICS_FOLD seconds (or, beginning one, the .prom file that old)
 * or the journal large, at the end of a long run's period, and always by
 * the collector, cqrs-health --textfile DIR.
 *
 * Race-free without losing or doubling a count:
 *  - a writer holds a shared flock on the journal while it writes, and
 *    writes again to a fresh journal if the one it locked was unlinked;
 *  - a folder, one at a time under the exclusive flock of
 *    .cqrs_TOOL.prom.lock, renames the journal to .cqrs_TOOL.journal.folding
 *    (new writers create a new journal), takes an exclusive flock on it
 *    (waiting out the writers that had it open), reads it, replaces the
 *    .prom file, then unlinks it;
 *  - a .folding journal found at the start of a fold is one a folder left
 *    when it died: folded first.  The .prom file names the bytes it has
 *    folded ("# folded bytes N fnv1a H" of the last journal), so a folder
 *    that died between its replace and its unlink is not counted twice:
 *    those N bytes are skipped.  Every line carries its writer's pid and a
 *    nanosecond timestamp, so two journals never share such a prefix.
 *
 * Asked for nothing, every call below returns at its first test: no
 * clock, no allocation.  Not thread-safe: record from one thread.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
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
	[CQRS_METRIC_REPLAY_DURATION] = { "cqrs_replay_duration_seconds_total",
					  COUNTER,
					  { "projection", NULL },
					  "Seconds spent in rebuilds." },
	[CQRS_METRIC_REPLAY_SPEED] = { "cqrs_replay_events_per_second",
				       GAUGE,
				       { "projection", NULL },
				       "Events per second of the last rebuild." },
	[CQRS_METRIC_COMMAND_CONFLICTS] = { "cqrs_command_conflicts_total",
					    COUNTER,
					    { "type", NULL },
					    "Commands loaded and decided again after a version "
					    "conflict." },
	/* relay ops (issue 14) */
	[CQRS_METRIC_RELAY_EVENTS] = { "cqrs_relay_events_total",
				       COUNTER,
				       { "stream", "direction" },
				       "Events the relay published, replicated or consumed "
				       "(acknowledged)." },
	[CQRS_METRIC_RELAY_LAG_EVENTS] = { "cqrs_relay_lag_events",
					   GAUGE,
					   { "stream", NULL },
					   "Events in the store the relay had not "
					   "published, at its last flush." },
	[CQRS_METRIC_RELAY_LAG_SECONDS] = { "cqrs_relay_lag_seconds",
					    GAUGE,
					    { "stream", NULL },
					    "Age of the oldest event the relay had not "
					    "published, at its last flush." },
	[CQRS_METRIC_RELAY_ACK_LATENCY] = { "cqrs_relay_ack_latency_seconds",
					    HISTOGRAM,
					    { "stream", NULL },
					    "Time from a window of publishes sent to all "
					    "its PubAcks." },
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
	bool oom; /* a series could not be added: a fold must not write the set */
};

/* The longest tool stem (cqrs_command) a file name is made of. */
#define STEM_MAX 127

/* One tool's files in the metrics directory. */
struct tool_files {
	const char *dir;
	char prom[STEM_MAX + 8];     /* cqrs_TOOL.prom, what node_exporter reads */
	char lock[STEM_MAX + 16];    /* .cqrs_TOOL.prom.lock: one folder at a time */
	char journal[STEM_MAX + 16]; /* .cqrs_TOOL.journal: each process's line */
	char folding[STEM_MAX + 24]; /* .cqrs_TOOL.journal.folding: the journal a folder took */
};

/* A journal this large is folded whatever its age: the fold reads it all. */
#define JOURNAL_FOLD_BYTES (256 * 1024)
/* Its lines' first field: what a line from a crashed writer is cut from. */
#define LINE_MARK "cqrs1 "

/* Small and zero at start (.bss, no initializer): one process in a VM pays
 * about 10 us for each page it touches first, and a short run's whole cost
 * of metrics is a few of them (measured: tests/bench/metrics-cost). */
static struct {
	bool on;
	bool warned;
	pid_t pid; /* in every journal line; a forked child never flushes */
	char *dir;
	char stem[STEM_MAX + 1];
	char *journal_path, *prom_path;
	int64_t period; /* seconds between merges of a long run */
	int64_t fold_interval;
	struct series_set mine;
	struct timespec last_merge;
} m;

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

double cqrs_metrics_timestamp_seconds(const char *ts)
{
	/* the envelope's normalised form: 2026-01-16T14:00:00.123456Z */
	if (strlen(ts) != CQRS_TIMESTAMP_LEN)
		return 0;
	return (double)cqrs_timestamp_us(ts) / 1e6;
}

static void warn_once(const char *msg)
{
	if (m.warned)
		return;
	m.warned = true;
	cqrs_warn("metrics: %s (the run itself is not affected)", msg);
}

/* At exit, as an atexit handler would but with nothing to register: a
 * run without metrics returns at the first test. */
__attribute__((destructor)) static void merge_at_exit(void)
{
	if (m.on)
		cqrs_metrics_flush();
}

/* A forked child that exits must not merge its parent's counts.  Told by
 * fork itself, not by comparing getpid() with m.pid at exit: a system
 * call of the few a run pays for metrics. */
static void off_in_child(void)
{
	m.on = false;
}

/* dir/name in a string of its own: free it. */
static char *path_join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);
	if (p != NULL)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

/* The names of tool stem's files (stem: cqrs_command) in dir, which must
 * outlive f. */
static int name_files(struct tool_files *f, const char *dir, const char *stem, cqrs_error *err)
{
	if (strlen(dir) >= PATH_MAX - sizeof f->folding || strlen(stem) > STEM_MAX)
		return cqrs_fail(err, CQRS_EXIT_USAGE, "%s: path too long", dir);
	f->dir = dir;
	snprintf(f->prom, sizeof f->prom, "%s.prom", stem);
	snprintf(f->lock, sizeof f->lock, ".%s.prom.lock", stem);
	snprintf(f->journal, sizeof f->journal, ".%s.journal", stem);
	snprintf(f->folding, sizeof f->folding, ".%s.journal.folding", stem);
	return 0;
}

static int64_t seconds_from_env(const char *name, int64_t fallback)
{
	const char *text = getenv(name);
	int64_t v;
	if (text == NULL || cqrs_parse_int64(text, &v) < 0 || v < 0)
		return fallback;
	return v;
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
	/* cqrs-command writes cqrs_command.prom */
	const char *tool = cqrs_tool_name();
	if (strncmp(tool, "cqrs-", 5) == 0)
		tool += 5;
	snprintf(m.stem, sizeof m.stem, "cqrs_%s", tool);
	for (char *p = m.stem; *p; p++)
		if (*p == '-')
			*p = '_';
	struct tool_files tf;
	if (name_files(&tf, dir, m.stem, err) < 0)
		return -1;
	free(m.dir);
	free(m.journal_path);
	free(m.prom_path);
	m.dir = strdup(dir);
	m.journal_path = path_join(dir, tf.journal);
	m.prom_path = path_join(dir, tf.prom);
	if (m.dir == NULL || m.journal_path == NULL || m.prom_path == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	m.pid = getpid();
	static bool fork_handled;
	if (!fork_handled && pthread_atfork(NULL, NULL, off_in_child) != 0)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	fork_handled = true;
	m.period = seconds_from_env("CQRS_METRICS_PERIOD", CQRS_METRICS_PERIOD_DEFAULT);
	m.fold_interval = seconds_from_env("CQRS_METRICS_FOLD", CQRS_METRICS_FOLD_DEFAULT);
	clock_gettime(CLOCK_MONOTONIC, &m.last_merge);
	if (m.mine.tail == NULL)
		m.mine.tail = &m.mine.head;
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
	if (s == NULL) {
		set->oom = true;
		return NULL;
	}
	s->metric = metric;
	const char *v[2] = { v0, v1 };
	for (int i = 0; i < 2; i++) {
		if (families[metric].label[i] == NULL)
			continue;
		s->value[i] = strdup(v[i] != NULL ? v[i] : "");
		if (s->value[i] == NULL) {
			free(s->value[0]);
			free(s);
			set->oom = true;
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

/* What the .prom file says it has folded: the first bytes of the last
 * journal and their hash. */
struct folded {
	uint64_t bytes, hash;
};

#define FOLDED_FORMAT "# folded bytes %" PRIu64 " fnv1a %016" PRIx64

/* The samples of the file now in place, and what it has folded; a line
 * that is not ours is dropped with a warning (someone edited the file). */
static int read_file(int dirfd, const struct tool_files *tf, struct series_set *set,
		     struct folded *folded, cqrs_error *err)
{
	int fd = openat(dirfd, tf->prom, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		return cqrs_fail(err, CQRS_EXIT_IOERR, "%s/%s: %s", tf->dir, tf->prom,
				 strerror(errno));
	}
	struct stat sb;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_uid != cqrs_euid()) {
		close(fd);
		return cqrs_fail(err, CQRS_EXIT_NOPERM,
				 "%s/%s: not a regular file of this user: refused", tf->dir,
				 tf->prom);
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
	errno = 0;
	while ((n = getline(&line, &cap, f)) > 0) {
		lineno++;
		if (line[n - 1] == '\n')
			line[--n] = '\0';
		uint64_t bytes, hash;
		if (sscanf(line, "# folded bytes %" SCNu64 " fnv1a %" SCNx64, &bytes, &hash) == 2)
			*folded = (struct folded){ bytes, hash };
		if (n == 0 || line[0] == '#')
			continue;
		if (!read_sample(set, line) && !set->oom && bad++ == 0)
			cqrs_warn("metrics: %s/%s:%ld: not a sample this tool writes: dropped",
				  tf->dir, tf->prom, lineno);
		if (set->oom)
			break;
		errno = 0;
	}
	/* out of memory would drop the samples not read: never written back */
	int rc = set->oom || (n < 0 && errno == ENOMEM)
			 ? cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory")
		 : ferror(f)
			 ? cqrs_fail(err, CQRS_EXIT_IOERR, "%s/%s: read error", tf->dir, tf->prom)
			 : 0;
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
	char sep = '{';
	for (int i = 0; i < 2; i++) {
		if (fam->label[i] == NULL)
			continue;
		cqrs_strbuf_putc(b, sep);
		cqrs_strbuf_puts(b, fam->label[i]);
		cqrs_strbuf_puts(b, "=\"");
		put_escaped(b, s->value[i]);
		cqrs_strbuf_putc(b, '"');
		sep = ',';
	}
	if (le != NULL) {
		cqrs_strbuf_putc(b, sep);
		cqrs_strbuf_puts(b, "le=\"");
		cqrs_strbuf_puts(b, le);
		cqrs_strbuf_putc(b, '"');
		sep = ',';
	}
	if (sep == ',')
		cqrs_strbuf_putc(b, '}');
}

/* Counts and bucket counts are whole numbers: written without printf,
 * which was most of a fold's cost (19 samples per histogram). */
static void put_number(struct cqrs_strbuf *b, double v)
{
	if (v >= 0 && v < 9007199254740992.0 && v == (double)(int64_t)v) {
		char digits[20];
		int n = 0;
		int64_t i = (int64_t)v;
		do
			digits[n++] = (char)('0' + i % 10);
		while ((i /= 10) > 0);
		while (n > 0)
			cqrs_strbuf_putc(b, digits[--n]);
		return;
	}
	cqrs_strbuf_printf(b, "%.17g", v);
}

static void put_sample(struct cqrs_strbuf *b, const struct cqrs_metric_series *s,
		       const char *suffix, const char *le, double v)
{
	cqrs_strbuf_puts(b, families[s->metric].name);
	cqrs_strbuf_puts(b, suffix);
	put_labels(b, s, le);
	cqrs_strbuf_putc(b, ' ');
	put_number(b, v);
	cqrs_strbuf_putc(b, '\n');
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

/* Adds one series' counts (from a journal line) to the file's. */
static void add_into(struct series_set *file, const struct cqrs_metric_series *s)
{
	struct cqrs_metric_series *t = find(file, s->metric, s->value[0], s->value[1]);
	if (t == NULL && (t = add_series(file, s->metric, s->value[0], s->value[1])) == NULL)
		return;
	if (families[s->metric].kind == GAUGE) {
		t->count = s->count; /* the journal's order: the last line wins */
		return;
	}
	t->count += s->count;
	t->sum += s->sum;
	for (size_t i = 0; i < NBUCKETS; i++)
		t->bucket[i] += s->bucket[i];
}

/* What is in the journal is counted there: start again from zero. */
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

/* --- the journal: one line per process ------------------------------------------ */

/* A line: LINE_MARK PID SECONDS.NANOSECONDS, then one tab-separated record
 * per series changed, then a tab and a full stop.  A record is its
 * family's name, its label values, its value; a histogram's adds its sum
 * and its non-empty buckets, not cumulative, as INDEX:COUNT,...  Fields
 * are separated by one space; a label value is escaped (%XX for '%',
 * space and control bytes) so that it is one field and LINE_MARK cannot
 * appear inside a line. */
static void put_field(struct cqrs_strbuf *b, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p <= ' ' || *p == '%' || *p == 0x7f)
			cqrs_strbuf_printf(b, "%%%02X", *p);
		else
			cqrs_strbuf_putc(b, (char)*p);
}

static void render_line(struct cqrs_strbuf *b)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	/* m.pid: this process's (a fork's child never flushes) */
	cqrs_strbuf_printf(b, LINE_MARK "%ld %lld.%09ld", (long)m.pid, (long long)now.tv_sec,
			   now.tv_nsec);
	for (const struct cqrs_metric_series *s = m.mine.head; s != NULL; s = s->next) {
		if (!s->changed)
			continue;
		cqrs_strbuf_putc(b, '\t');
		cqrs_strbuf_puts(b, families[s->metric].name);
		for (int i = 0; i < 2; i++)
			if (families[s->metric].label[i] != NULL) {
				cqrs_strbuf_putc(b, ' ');
				put_field(b, s->value[i]);
			}
		cqrs_strbuf_putc(b, ' ');
		put_number(b, s->count);
		if (families[s->metric].kind != HISTOGRAM)
			continue;
		cqrs_strbuf_printf(b, " %.17g ", s->sum);
		const char *sep = "";
		double below = 0;
		for (size_t i = 0; i < NBUCKETS; i++) {
			if (s->bucket[i] != below) {
				cqrs_strbuf_puts(b, sep);
				put_number(b, (double)i);
				cqrs_strbuf_putc(b, ':');
				put_number(b, s->bucket[i] - below);
				sep = ",";
			}
			below = s->bucket[i];
		}
	}
	cqrs_strbuf_puts(b, "\t.\n");
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A label value field unescaped in place; false when it is not one. */
static bool unescape_field(char *f)
{
	char *w = f;
	for (const char *r = f; *r; r++) {
		if (*r != '%') {
			*w++ = *r;
			continue;
		}
		int hi = hex_digit(r[1]), lo = hi < 0 ? -1 : hex_digit(r[2]);
		if (lo < 0 || (hi == 0 && lo == 0))
			return false;
		*w++ = (char)(hi * 16 + lo);
		r += 2;
	}
	*w = '\0';
	return true;
}

static bool parse_number(const char *text, double *v)
{
	if (text == NULL || *text == '\0')
		return false;
	char *end;
	*v = strtod(text, &end);
	return *end == '\0';
}

/* One record of a line into rec; false when it is not one. */
static bool read_record(struct series_set *rec, char *text)
{
	char *name = strsep(&text, " ");
	int f = 0;
	while (f < CQRS_METRIC_COUNT && strcmp(families[f].name, name) != 0)
		f++;
	if (f == CQRS_METRIC_COUNT)
		return false;
	char *v[2] = { NULL, NULL };
	for (int i = 0; i < 2; i++)
		if (families[f].label[i] != NULL &&
		    ((v[i] = strsep(&text, " ")) == NULL || !unescape_field(v[i])))
			return false;
	double count;
	if (!parse_number(strsep(&text, " "), &count))
		return false;
	struct cqrs_metric_series *s = add_series(rec, (enum cqrs_metric)f, v[0], v[1]);
	if (s == NULL)
		return false;
	s->count = count;
	if (families[f].kind != HISTOGRAM)
		return text == NULL;
	char *buckets;
	if (!parse_number(strsep(&text, " "), &s->sum) || (buckets = strsep(&text, " ")) == NULL ||
	    text != NULL)
		return false;
	while (*buckets != '\0') {
		char *item = strsep(&buckets, ","), *end;
		unsigned long i = strtoul(item, &end, 10);
		double n;
		if (end == item || *end != ':' || i >= NBUCKETS || !parse_number(end + 1, &n))
			return false;
		for (size_t j = i; j < NBUCKETS; j++)
			s->bucket[j] += n;
		if (buckets == NULL)
			break;
	}
	return true;
}

/* One whole line (from LINE_MARK, without its newline) added to set; false,
 * adding nothing, when it is damaged. */
static bool read_line(struct series_set *set, char *line)
{
	struct series_set rec = { NULL, &rec.head, 0, false };
	strsep(&line, "\t"); /* LINE_MARK PID TIME: who wrote it, for a unique line */
	bool ok = line != NULL, ended = false;
	while (ok && !ended && line != NULL) {
		char *record = strsep(&line, "\t");
		if (strcmp(record, ".") == 0)
			ended = line == NULL;
		else
			ok = read_record(&rec, record);
	}
	ok = ok && ended;
	if (rec.oom)
		set->oom = true; /* not a damaged line: the fold fails */
	if (ok)
		for (const struct cqrs_metric_series *s = rec.head; s != NULL; s = s->next)
			add_into(set, s);
	free_set(&rec);
	return ok;
}

static const char *last_mark(const char *p, size_t n)
{
	const char *found = NULL;
	for (const char *q; (q = memmem(p, n, LINE_MARK, strlen(LINE_MARK))) != NULL;) {
		found = q;
		n -= (size_t)(q + 1 - p);
		p = q + 1;
	}
	return found;
}

/* Every whole line of text (a journal's bytes from a line's start) into set.
 * What a writer left cut short -- no newline at the end, or a line whose
 * start was cut and followed by the next writer's whole line -- is
 * dropped with a warning rather than counted wrong. */
static void read_journal(struct series_set *set, char *text, size_t len, const char *path)
{
	long lineno = 0, bad = 0, first_bad = 0;
	for (char *p = text, *end = text + len; p < end;) {
		lineno++;
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *line_end = nl != NULL ? nl : end;
		const char *mark = last_mark(p, (size_t)(line_end - p));
		bool ok = false;
		if (nl != NULL && mark != NULL) {
			*nl = '\0';
			ok = read_line(set, (char *)mark) && mark == p;
		}
		if (set->oom)
			return;
		if (!ok && bad++ == 0)
			first_bad = lineno;
		p = line_end + 1;
	}
	if (bad == 1)
		cqrs_warn("metrics: %s:%ld: not a whole line of counts (a writer cut short?): "
			  "dropped",
			  path, first_bad);
	else if (bad > 1)
		cqrs_warn("metrics: %s:%ld: not a whole line of counts (a writer cut short?): "
			  "dropped, and %ld more",
			  path, first_bad, bad - 1);
}

/* Due when the journal is large; else, for a journal this run began (empty
 * before its line), when the .prom file is missing or older than the fold
 * interval; else when the journal is older than the interval: it was
 * begun just after the last fold (its birth time; a file system that keeps
 * none: the .prom file's age, a stat more). */
static bool fold_due(const struct statx *sx, size_t written)
{
	if (m.fold_interval == 0 || sx->stx_size + written >= JOURNAL_FOLD_BYTES)
		return true;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	if (sx->stx_size > 0 && (sx->stx_mask & STATX_BTIME))
		return now.tv_sec - sx->stx_btime.tv_sec >= m.fold_interval;
	struct stat sb;
	if (stat(m.prom_path, &sb) < 0)
		return true;
	return now.tv_sec - sb.st_mtim.tv_sec >= m.fold_interval;
}

/* The shared lock on the journal (fd).  Held by no folder (most runs): at
 * once.  Else its owner is checked before waiting: a file someone else
 * planted and keeps locked must be refused, not waited on for ever. */
static int lock_journal(int fd, cqrs_error *err)
{
	int rc;
	while ((rc = flock(fd, LOCK_SH | LOCK_NB)) < 0 && errno == EINTR)
		;
	if (rc == 0)
		return 0;
	if (errno != EWOULDBLOCK)
		return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", m.journal_path, strerror(errno));
	struct stat sb;
	if (fstat(fd, &sb) < 0)
		return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", m.journal_path, strerror(errno));
	if (cqrs_trust_stat(&sb, m.journal_path, true, err) < 0)
		return -1;
	while ((rc = flock(fd, LOCK_SH)) < 0 && errno == EINTR)
		;
	return rc == 0 ? 0
		       : cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", m.journal_path, strerror(errno));
}

/* The journal, open to append.  The directory is held to cqrs(7)'s rules
 * when the journal is begun (and at every fold): a journal already there
 * is checked itself after the lock, which refuses any file someone else
 * could have planted, and most runs save the directory's stat. */
static int open_journal(cqrs_error *err)
{
	int fd = cqrs_open_nofollow(m.journal_path, O_WRONLY | O_APPEND, err);
	if (fd >= 0 || err->code != CQRS_EXIT_NOINPUT)
		return fd;
	err->code = 0; /* missing: begun below */
	if (cqrs_textfile_check_dir(m.dir, err) < 0)
		return -1;
	return cqrs_open_nofollow(m.journal_path, O_WRONLY | O_APPEND | O_CREAT, err);
}

/* Appends this process's line to the journal: one write, no fsync.  The
 * shared lock keeps a folder from taking the journal in mid-write; a
 * journal unlinked between the open and the lock has been folded: the
 * line goes to the fresh one.  One statx after the lock holds the file to
 * cqrs(7)'s rules (a file someone else planted is refused), sees that it
 * is still linked and whether a fold is due (*due): with the open, the
 * lock, the write and the close, most runs' whole cost of metrics. */
static int append_line(bool *due, cqrs_error *err)
{
	struct cqrs_strbuf b = { 0 };
	render_line(&b);
	if (b.oom) {
		cqrs_strbuf_free(&b);
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	}
	int rc = -1;
	for (int attempt = 0; rc < 0; attempt++) {
		int fd = open_journal(err);
		if (fd < 0)
			break;
		if (lock_journal(fd, err) < 0) {
			close(fd);
			break;
		}
		struct statx sx;
		if (statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS | STATX_BTIME, &sx) < 0) {
			cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", m.journal_path, strerror(errno));
			close(fd);
			break;
		}
		struct stat sb = { .st_mode = sx.stx_mode,
				   .st_uid = sx.stx_uid,
				   .st_gid = sx.stx_gid };
		if (cqrs_trust_stat(&sb, m.journal_path, true, err) < 0) {
			close(fd);
			break;
		}
		if (sx.stx_nlink == 0) {
			close(fd);
			if (attempt < 100)
				continue;
			cqrs_fail(err, CQRS_EXIT_IOERR, "%s: removed again and again",
				  m.journal_path);
			break;
		}
		ssize_t n = write(fd, b.p, b.len);
		if (n == (ssize_t)b.len) {
			*due = fold_due(&sx, b.len);
			rc = 0;
		} else {
			cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", m.journal_path,
				  n < 0 ? strerror(errno) : "short write");
		}
		close(fd); /* and with it the lock */
		if (rc < 0)
			break;
	}
	cqrs_strbuf_free(&b);
	return rc;
}

/* --- the fold: journal into the .prom file ------------------------------------------ */

static uint64_t fnv1a(const char *p, size_t n)
{
	uint64_t h = UINT64_C(14695981039346656037);
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= UINT64_C(1099511628211);
	}
	return h;
}

/* The whole of a file open as fd: *text (NUL-terminated), *len. */
static int read_whole(int fd, const char *path, char **text, size_t *len, cqrs_error *err)
{
	struct stat sb;
	if (fstat(fd, &sb) < 0)
		return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", path, strerror(errno));
	size_t cap = (size_t)sb.st_size + 1, n = 0;
	char *buf = malloc(cap);
	if (buf == NULL)
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	for (;;) {
		ssize_t got = read(fd, buf + n, cap - 1 - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			free(buf);
			return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", path, strerror(errno));
		}
		if (got == 0)
			break;
		n += (size_t)got;
		if (n == cap - 1) {
			char *more = realloc(buf, cap *= 2);
			if (more == NULL) {
				free(buf);
				return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
			}
			buf = more;
		}
	}
	buf[n] = '\0';
	*text = buf;
	*len = n;
	return 0;
}

/* The journal taken (fd, locked exclusively) added to the .prom file,
 * which is replaced naming what it folded.  Bytes that the .prom file
 * already names (a folder died before its unlink) are skipped. */
static int fold_journal(int dirfd, const struct tool_files *tf, int fd, const char *path,
			cqrs_error *err)
{
	char *text = NULL;
	size_t len = 0;
	if (read_whole(fd, path, &text, &len, err) < 0)
		return -1;
	struct series_set file = { NULL, &file.head, 0, false };
	struct folded folded = { 0, 0 };
	int rc = read_file(dirfd, tf, &file, &folded, err);
	size_t start = 0;
	if (rc == 0 && folded.bytes > 0 && folded.bytes <= len &&
	    fnv1a(text, (size_t)folded.bytes) == folded.hash)
		start = (size_t)folded.bytes;
	if (rc == 0 && start < len) {
		uint64_t hash = fnv1a(text, len);
		read_journal(&file, text + start, len - start, path);
		struct cqrs_strbuf b = { 0 };
		cqrs_strbuf_printf(&b, FOLDED_FORMAT "\n", (uint64_t)len, hash);
		render(&b, &file);
		/* a series left out would lose its counts for good */
		if (b.oom || file.oom)
			rc = cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		else
			/* 0644: node_exporter reads it as a user of its own */
			rc = cqrs_textfile_replace(tf->dir, tf->prom, b.p, b.len, 0644, err);
		cqrs_strbuf_free(&b);
	}
	free_set(&file);
	free(text);
	return rc;
}

/* Under the fold lock: a journal a dead folder left, then the current one. */
static int fold_locked(int dirfd, const struct tool_files *tf, cqrs_error *err)
{
	char path[PATH_MAX + sizeof tf->folding];
	snprintf(path, sizeof path, "%s/%s", tf->dir, tf->folding);
	for (bool taken = false;;) {
		struct stat sb;
		if (fstatat(dirfd, tf->folding, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT)
				return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", path,
						 strerror(errno));
			if (taken)
				return 0;
			/* writers that come after create a fresh journal */
			if (renameat(dirfd, tf->journal, dirfd, tf->folding) < 0)
				return errno == ENOENT
					       ? 0
					       : cqrs_fail(err, CQRS_EXIT_IOERR, "%s/%s: %s",
							   tf->dir, tf->journal, strerror(errno));
			taken = true;
			continue;
		}
		int fd = cqrs_open_trusted(path, O_RDONLY, true, err);
		if (fd < 0)
			return -1;
		int rc;
		/* waits out the writers that opened it before the rename */
		while ((rc = flock(fd, LOCK_EX)) < 0 && errno == EINTR)
			;
		if (rc < 0)
			rc = cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", path, strerror(errno));
		else
			rc = fold_journal(dirfd, tf, fd, path, err);
		/* after the .prom file names what it folded, not before */
		if (rc == 0 && unlinkat(dirfd, tf->folding, 0) < 0)
			rc = cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", path, strerror(errno));
		close(fd);
		if (rc < 0 || taken)
			return rc;
	}
}

/* Folds tool's journal; wait false: unless another process folds now. */
static int fold_tool(const struct tool_files *tf, bool wait, cqrs_error *err)
{
	if (cqrs_textfile_check_dir(tf->dir, err) < 0)
		return -1;
	int dirfd = open(tf->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", tf->dir, strerror(errno));
	char lock[PATH_MAX + sizeof tf->lock];
	snprintf(lock, sizeof lock, "%s/%s", tf->dir, tf->lock);
	/* owner-only, and refused when someone else planted it */
	int fd = cqrs_open_trusted(lock, O_RDWR | O_CREAT, true, err);
	if (fd < 0) {
		close(dirfd);
		return -1;
	}
	int rc;
	while ((rc = flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB))) < 0 && errno == EINTR)
		;
	if (rc < 0 && errno == EWOULDBLOCK)
		rc = 0; /* another process folds now */
	else if (rc < 0)
		rc = cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", lock, strerror(errno));
	else
		rc = fold_locked(dirfd, tf, err);
	close(fd); /* and with it the lock */
	close(dirfd);
	return rc;
}

static int flush(bool fold)
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
	bool due = false;
	if (append_line(&due, &err) < 0) {
		/* kept, to be added at the next flush */
		warn_once(err.msg);
		return -1;
	}
	mark_merged();
	struct tool_files tf;
	if ((fold || due) &&
	    (name_files(&tf, m.dir, m.stem, &err) < 0 || fold_tool(&tf, false, &err) < 0)) {
		/* in the journal: the next fold adds them */
		warn_once(err.msg);
		return -1;
	}
	return 0;
}

int cqrs_metrics_flush(void)
{
	return flush(false);
}

void cqrs_metrics_tick(void)
{
	if (!m.on)
		return;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec - m.last_merge.tv_sec >= m.period)
		flush(true); /* the end of a period: its counts reach the .prom file */
}

/* .cqrs_STEM.journal or .cqrs_STEM.journal.folding: STEM into stem. */
static bool journal_stem(const char *name, char *stem, size_t cap)
{
	if (strncmp(name, ".cqrs_", 6) != 0)
		return false;
	size_t n = strspn(name + 1, "abcdefghijklmnopqrstuvwxyz0123456789_");
	const char *rest = name + 1 + n;
	if (n >= cap || (strcmp(rest, ".journal") != 0 && strcmp(rest, ".journal.folding") != 0))
		return false;
	memcpy(stem, name + 1, n);
	stem[n] = '\0';
	return true;
}

int cqrs_metrics_fold_dir(const char *dir, cqrs_error *err)
{
	if (cqrs_textfile_check_dir(dir, err) < 0)
		return -1;
	DIR *d = opendir(dir);
	if (d == NULL)
		return cqrs_fail(err, CQRS_EXIT_IOERR, "%s: %s", dir, strerror(errno));
	int rc = 0;
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		char stem[STEM_MAX + 1]; /* longer: not a name a tool writes */
		if (!journal_stem(e->d_name, stem, sizeof stem))
			continue;
		struct tool_files tf;
		cqrs_error one = { 0 };
		/* a name met twice (the journal renamed meanwhile): nothing the second time */
		if (name_files(&tf, dir, stem, &one) < 0 || fold_tool(&tf, true, &one) < 0) {
			if (rc == 0)
				*err = one;
			rc = -1;
		}
	}
	closedir(d);
	return rc;
}
