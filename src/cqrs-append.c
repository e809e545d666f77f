/* cqrs-append: validate NDJSON events and append them to the store. */
#include "config.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "cqrs.h"
#include "banned.h"

static const char usage_text[] =
	"usage: cqrs-append [-nq] [-b count] [-e version] [-s store] [--no-sync]\n"
	"                   [--metrics-dir dir] [file ...]\n"
	"       cqrs-append --reset-witness [-s store]\n";

static void usage(int code)
{
	cqrs_print_usage(usage_text, code);
	if (code == 0)
		fputs("\n"
		      "  -b, --batch COUNT          commit every COUNT events (large imports)\n"
		      "  -e, --expected-version N   the aggregate must be at version N first\n"
		      "  -n, --dry-run              validate and check versions, store nothing\n"
		      "  -q, --quiet                print nothing on standard output\n"
		      "  -s, --store PATH           event store (default: $CQRS_STORE)\n"
		      "      --no-sync              do not fsync each commit (see cqrs-append(1))\n"
		      "      --metrics-dir DIR      add this run's metrics to "
		      "DIR/cqrs_append.prom\n"
		      "                             (default: $CQRS_METRICS_DIR)\n"
		      "      --reset-witness        after a deliberate restore: the store's "
		      "witness\n"
		      "                             records its head as it is now\n"
		      "      --log-format FORMAT    messages as text or json lines (default:\n"
		      "                             $CQRS_LOG_FORMAT, else text)\n"
		      "  -h, --help                 show this help\n"
		      "  -V, --version              show the version\n",
		      stdout);
	exit(code);
}

/* Stored sequences in input order, as runs, printed once durable. */
struct run {
	int64_t first, count;
};

static struct run *runs;
static size_t nruns, runs_cap;

static void remember(int64_t seq)
{
	if (nruns > 0 && runs[nruns - 1].first + runs[nruns - 1].count == seq) {
		runs[nruns - 1].count++;
		return;
	}
	if (nruns == runs_cap) {
		runs_cap = runs_cap ? runs_cap * 2 : 64;
		runs = realloc(runs, runs_cap * sizeof *runs);
		if (runs == NULL)
			cqrs_die(CQRS_EXIT_OSERR, "out of memory");
	}
	runs[nruns++] = (struct run){ seq, 1 };
}

static int print_runs(cqrs_store *st, cqrs_error *err)
{
	for (size_t i = 0; i < nruns; i++) {
		cqrs_filter f = { .after = runs[i].first - 1,
				  .to = runs[i].first + runs[i].count - 1 };
		cqrs_cursor *c = cqrs_store_read(st, &f, err);
		if (c == NULL)
			return -1;
		cqrs_event ev;
		int r;
		while ((r = cqrs_cursor_next(c, &ev, err)) == 1)
			cqrs_event_write(stdout, &ev);
		cqrs_cursor_close(c);
		if (r < 0)
			return -1;
		if (cqrs_stdout_gone())
			break;
	}
	nruns = 0;
	return 0;
}

struct progress {
	bool wanted;
	time_t last;
};

static void show_progress(struct progress *p, int64_t n, bool done)
{
	if (!p->wanted)
		return;
	time_t now = time(NULL);
	if (!done && now == p->last)
		return;
	p->last = now;
	cqrs_progress_show(NULL, n, 0, done);
}

/* After a restore from a backup or a deliberate rollback, the store is
 * behind its witness on purpose: say so, once, with this. */
static int reset_witness(const char *store_opt, int operands, bool other_options)
{
	if (operands > 0 || other_options)
		cqrs_die(CQRS_EXIT_USAGE, "--reset-witness takes only --store");
	cqrs_error err = { 0 };
	int64_t seq;
	uint8_t hash[CQRS_HASH_LEN];
	if (cqrs_store_reset_witness(cqrs_store_path(store_opt), &seq, hash, &err) < 0)
		cqrs_die_error(&err);
	char hex[2 * CQRS_HASH_LEN + 1];
	cqrs_hash_format(hash, hex);
	printf("witness reset to sequence %lld, head %s\n", (long long)seq, hex);
	return cqrs_finish_stdout(CQRS_EXIT_OK);
}

/* A window of input lines appended together (cqrs_store_append_many: on
 * PostgreSQL, a few round trips for the lot instead of one to three an
 * event).  The lines are copied into one buffer, since the input's is
 * reused, and parsed once the window is complete: then no event points
 * into memory that moves.  A window ends when full or when the input
 * pauses (a writer feeding a pipe sees its events taken as it writes
 * them); the writer splits it where a batch ends.
 *
 * Two windows take turns, so that reading and parsing are off the
 * writer's core: while the writer appends one, a thread of their own
 * reads and parses the next (the reader below), and applies the rules
 * that need no store (cqrs_store_prepare: the schema check and
 * metadata.os_user, 6% of a 1M-event store's append).  The first window is
 * read by the writer itself, and the thread starts only when the input
 * goes on past it: one event, or a short input, costs no thread.
 * Memory: two windows of at most WINDOW_BYTES and one line each, and
 * their events' new metadata. */
#define WINDOW_EVENTS 1000
#define WINDOW_BYTES  (8 * 1024 * 1024)

struct window_line {
	size_t offset, len;
	const char *file; /* cqrs_input_name's, valid while the input is */
	long lineno;
};

struct window {
	char *text;
	size_t used, cap;
	char *meta; /* the events' metadata, as cqrs_store_prepare rewrote it */
	size_t meta_used, meta_cap;
	struct window_line lines[WINDOW_EVENTS];
	cqrs_event evs[WINDOW_EVENTS];
	int results[WINDOW_EVENTS];
	size_t n;	 /* lines kept */
	size_t parsed;	 /* of them, parsed in order before the first bad one */
	bool last;	 /* nothing is read after this window */
	bool bad_line;	 /* line `parsed` is bad: bad says why */
	bool unreadable; /* the input failed after the window's lines: unread */
	bool filled;	 /* handed to the writer (under the reader's lock) */
	cqrs_error bad, unread;
};

/* The reading side: the input, the --expected-version checks (they follow
 * the input's order), and the thread that fills the windows. */
struct reader {
	cqrs_input *in;
	int64_t expected;
	bool first;
	uint8_t single_aggregate[CQRS_UUID_LEN];
	struct window win[2];
	bool threaded;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t changed;
	bool stop;   /* the writer failed: the thread ends (under the lock) */
	int stop_fd; /* an eventfd, readable once stop is set */
};

static int keep_line(struct window *w, const char *line, size_t len, const cqrs_input *in,
		     cqrs_error *err)
{
	if (w->used + len + 1 > w->cap) {
		size_t cap = w->cap ? w->cap : 64 * 1024;
		while (cap < w->used + len + 1)
			cap *= 2;
		char *text = realloc(w->text, cap);
		if (text == NULL)
			return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
		w->text = text;
		w->cap = cap;
	}
	memcpy(w->text + w->used, line, len);
	w->text[w->used + len] = '\0';
	w->lines[w->n] =
		(struct window_line){ w->used, len, cqrs_input_name(in), cqrs_input_lineno(in) };
	w->used += len + 1;
	w->n++;
	return 0;
}

/* Room for the new metadata of the window's n lines, which are at most
 * its text; once there, it does not move while they are parsed. */
static int reserve_metadata(struct window *w, cqrs_error *err)
{
	size_t need = w->used + w->n * cqrs_store_prepare_growth();
	if (need <= w->meta_cap)
		return 0;
	free(w->meta);
	if ((w->meta = malloc(need)) == NULL) {
		w->meta_cap = 0;
		return cqrs_fail(err, CQRS_EXIT_OSERR, "out of memory");
	}
	w->meta_cap = need;
	return 0;
}

/* Line i of the window into its event, with --expected-version's checks,
 * prepared for the store. */
static int parse_line(struct reader *r, struct window *w, size_t i, cqrs_error *err)
{
	cqrs_event *ev = &w->evs[i];
	if (cqrs_event_parse(ev, w->text + w->lines[i].offset, w->lines[i].len, err) < 0)
		return -1;
	if (r->expected >= 0) {
		if (r->first) {
			memcpy(r->single_aggregate, ev->aggregate_id, CQRS_UUID_LEN);
			/* the event's own expectation, stated or implied by its version */
			int64_t own = ev->expected_version >= 0	  ? ev->expected_version
				      : ev->aggregate_version > 0 ? ev->aggregate_version - 1
								  : -1;
			if (own >= 0 && own != r->expected)
				return cqrs_fail(err, CQRS_EXIT_DATAERR,
						 "field '%s' (%lld) disagrees with "
						 "--expected-version %lld",
						 ev->expected_version >= 0 ? "expected_version"
									   : "aggregate_version",
						 (long long)(ev->expected_version >= 0
								     ? ev->expected_version
								     : ev->aggregate_version),
						 (long long)r->expected);
			ev->expected_version = r->expected;
		} else if (memcmp(r->single_aggregate, ev->aggregate_id, CQRS_UUID_LEN) != 0) {
			return cqrs_fail(err, CQRS_EXIT_DATAERR,
					 "--expected-version needs the events of one aggregate");
		}
	}
	r->first = false;
	char *metadata = w->meta + w->meta_used;
	if (cqrs_store_prepare(ev, metadata, err) < 0)
		return -1;
	if (ev->metadata == metadata)
		w->meta_used += ev->metadata_len;
	return 0;
}

/* Reads lines into w until it is full, the input pauses, ends or fails,
 * then parses them in order up to the first bad one.  Whatever stops the
 * input for good is recorded in w, for the writer to report once it has
 * appended the lines before it (as it would one line at a time). */
static void fill_window(struct reader *r, struct window *w)
{
	char *line;
	size_t len;
	int got;
	cqrs_error e = { 0 };
	while ((got = cqrs_input_next(r->in, &line, &len, &e)) == 1) {
		if (keep_line(w, line, len, r->in, &e) < 0) {
			got = -1;
			break;
		}
		if (w->n >= WINDOW_EVENTS || w->used >= WINDOW_BYTES || !cqrs_input_ready(r->in))
			break;
	}
	if (got <= 0)
		w->last = true;
	if (got < 0) {
		w->unreadable = true;
		w->unread = e;
	}
	if (w->n > 0 && reserve_metadata(w, &w->bad) < 0) {
		/* not the first line's fault: no line is named */
		w->unreadable = w->last = true;
		w->unread = w->bad;
		w->n = 0;
		return;
	}
	while (w->parsed < w->n && parse_line(r, w, w->parsed, &w->bad) == 0)
		w->parsed++;
	if (w->parsed < w->n)
		w->bad_line = w->last = true;
}

/* The reading thread: windows 1, 2, 3, ... in turn, each once the writer
 * has given it back; it ends after the last, or when the writer stops it.
 * It waits only where the writer can wake it: for a window (the lock), or
 * for a first line of input (the eventfd). */
static void *read_ahead(void *arg)
{
	struct reader *r = arg;
	for (unsigned k = 1;; k++) {
		struct window *w = &r->win[k % 2];
		pthread_mutex_lock(&r->lock);
		while (w->filled && !r->stop)
			pthread_cond_wait(&r->changed, &r->lock);
		bool stop = r->stop;
		pthread_mutex_unlock(&r->lock);
		if (!stop && cqrs_input_wait(r->in, r->stop_fd) == 1)
			fill_window(r, w);
		pthread_mutex_lock(&r->lock);
		bool done = r->stop || w->last;
		if (!r->stop) {
			w->filled = true;
			pthread_cond_signal(&r->changed);
		}
		pthread_mutex_unlock(&r->lock);
		if (done)
			return NULL;
	}
}

/* The thread, with every signal blocked: they are the writer's to take.
 * Without it (none could be started) the writer reads each window itself. */
static void start_reading_ahead(struct reader *r)
{
	if ((r->stop_fd = eventfd(0, EFD_CLOEXEC)) < 0)
		return;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r->threaded = true; /* before the thread reads it */
	if (pthread_create(&r->thread, NULL, read_ahead, r) != 0) {
		r->threaded = false;
		close(r->stop_fd);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Window k, complete. */
static struct window *take_window(struct reader *r, unsigned k)
{
	struct window *w = &r->win[k % 2];
	if (k == 0 || !r->threaded) {
		fill_window(r, w);
		w->filled = true; /* no thread yet, or none at all */
		if (k == 0 && !w->last)
			start_reading_ahead(r);
		return w;
	}
	pthread_mutex_lock(&r->lock);
	while (!w->filled)
		pthread_cond_wait(&r->changed, &r->lock);
	pthread_mutex_unlock(&r->lock);
	return w;
}

/* The writer is done with w: it is emptied for the window after next. */
static void give_back(struct reader *r, struct window *w)
{
	pthread_mutex_lock(&r->lock);
	w->n = w->used = w->parsed = w->meta_used = 0;
	w->last = w->bad_line = w->unreadable = w->filled = false;
	pthread_cond_signal(&r->changed);
	pthread_mutex_unlock(&r->lock);
}

/* Ends the thread: at once when the writer failed (it may be waiting for
 * input that will not be taken), else after the last window it read. */
static void stop_reading(struct reader *r)
{
	if (!r->threaded)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_signal(&r->changed);
	pthread_mutex_unlock(&r->lock);
	uint64_t one = 1;
	/* wakes its wait for input; cannot fail (the counter is 0 or 1) */
	(void)!write(r->stop_fd, &one, sizeof one);
	pthread_join(r->thread, NULL);
	close(r->stop_fd);
	r->threaded = false;
}

/* --- the writing side ---------------------------------------------------- */

/* The state of one run, across windows and batches. */
struct append_run {
	cqrs_store *st;
	int64_t batch;
	bool dry_run, quiet, in_txn;
	int64_t in_batch, committed, total, last_committed_seq;
	char committed_at[512], where[512];
	struct progress progress;
};

static void say_where(struct append_run *a, const struct window_line *l)
{
	snprintf(a->where, sizeof a->where, "%s:%ld: ", l->file, l->lineno);
}

/* Ends the open transaction: commits it (a dry run: rolls it back) and
 * prints what it stored. */
static int end_transaction(struct append_run *a, cqrs_error *err)
{
	if (a->dry_run) {
		/* the store's head is read first: on PostgreSQL that also reads
		 * the outcome of the last window's COPY, which a rollback would
		 * discard (a dry run must fail as the real run would) */
		if (cqrs_store_last_sequence(a->st, err) < 0 ||
		    (!a->quiet && print_runs(a->st, err) < 0)) {
			cqrs_store_rollback(a->st);
			return -1;
		}
		cqrs_store_rollback(a->st);
	} else {
		if (cqrs_store_commit(a->st, err) < 0)
			return -1;
		if (!a->quiet && print_runs(a->st, err) < 0)
			return -1;
	}
	nruns = 0;
	a->in_txn = false;
	return 0;
}

/* Appends the n parsed events of w from the first-th, and commits the
 * batch when they complete it. */
static int append_events(struct append_run *a, struct window *w, size_t first, size_t n,
			 cqrs_error *err)
{
	cqrs_event *evs = w->evs + first;
	const struct window_line *lines = w->lines + first;
	if (!a->in_txn) {
		if (cqrs_store_begin(a->st, err) < 0)
			return -1;
		a->in_txn = true;
	}
	size_t failed;
	if (cqrs_store_append_many(a->st, evs, n, w->results + first, &failed, err) < 0) {
		/* an earlier window's write: no one line, as for a commit */
		if (failed != CQRS_APPEND_FAILED_EARLIER)
			say_where(a, &lines[failed]);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		remember(evs[i].sequence);
		a->total++;
		if (w->results[first + i] == CQRS_APPENDED)
			a->in_batch++;
		show_progress(&a->progress, a->total, false);
	}
	if (a->batch == 0 || a->in_batch < a->batch)
		return 0;
	if (end_transaction(a, err) < 0)
		return -1;
	a->committed += a->in_batch;
	a->last_committed_seq = evs[n - 1].sequence;
	snprintf(a->committed_at, sizeof a->committed_at, "%s:%ld", lines[n - 1].file,
		 lines[n - 1].lineno);
	a->in_batch = 0;
	if (cqrs_stdout_gone())
		a->quiet = true;
	return 0;
}

/* Appends the window's parsed events, a batch's end splitting it; then
 * what stopped the input, if anything did: a bad line after the events
 * before it, whose errors come first, as they would one line at a time. */
static int append_window(struct append_run *a, struct window *w, cqrs_error *err)
{
	size_t done = 0;
	while (done < w->parsed) {
		size_t n = w->parsed - done;
		/* a batch commits after its last event (duplicates do not count) */
		if (a->batch > 0 && (int64_t)n > a->batch - a->in_batch)
			n = (size_t)(a->batch - a->in_batch);
		if (append_events(a, w, done, n, err) < 0)
			return -1;
		done += n;
	}
	if (w->bad_line) {
		*err = w->bad;
		say_where(a, &w->lines[w->parsed]);
		return -1;
	}
	if (w->unreadable) {
		*err = w->unread;
		return -1;
	}
	return 0;
}

static int append_input(struct append_run *a, struct reader *r, cqrs_error *err)
{
	for (unsigned k = 0;; k++) {
		struct window *w = take_window(r, k);
		/* a window that failed is not given back: the thread reads no
		 * further than the one after it */
		if (append_window(a, w, err) < 0)
			return -1;
		bool last = w->last;
		give_back(r, w);
		if (last)
			break;
	}
	if (a->in_txn && end_transaction(a, err) < 0)
		return -1;
	show_progress(&a->progress, a->total, true);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "batch", required_argument, NULL, 'b' },
		{ "expected-version", required_argument, NULL, 'e' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "store", required_argument, NULL, 's' },
		{ "no-sync", no_argument, NULL, 'S' },
		{ "reset-witness", no_argument, NULL, 'W' },
		{ "log-format", required_argument, NULL, 'L' },
		{ "metrics-dir", required_argument, NULL, 'M' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *store_opt = NULL, *metrics_dir = NULL;
	int64_t batch = 0, expected = -1;
	bool dry_run = false, quiet = false, no_sync = false, reset = false;
	int ch;

	cqrs_tool_init("cqrs-append");
	cqrs_log_scan_args(argc, argv);
	while ((ch = cqrs_getopt_long(argc, argv, "b:e:nqs:hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'b':
			if (cqrs_parse_int64(optarg, &batch) < 0 || batch == 0)
				cqrs_die(CQRS_EXIT_USAGE, "--batch needs a positive count: '%s'",
					 optarg);
			break;
		case 'e':
			if (cqrs_parse_int64(optarg, &expected) < 0)
				cqrs_die(CQRS_EXIT_USAGE,
					 "--expected-version needs a non-negative integer: '%s'",
					 optarg);
			break;
		case 'n': dry_run = true; break;
		case 'q': quiet = true; break;
		case 's': store_opt = optarg; break;
		case 'S': no_sync = true; break;
		case 'W': reset = true; break;
		case 'L': cqrs_log_format_option(optarg); break;
		case 'M': metrics_dir = optarg; break;
		case 'h': usage(0); break;
		case 'V': cqrs_print_version(); return cqrs_finish_stdout(0);
		default: usage(CQRS_EXIT_USAGE);
		}
	}

	if (reset)
		return reset_witness(store_opt, argc - optind,
				     dry_run || quiet || no_sync || batch || expected >= 0);

	/* A dry run stores no chunk, so a later chunk would not see the
	 * sequences and versions of the earlier ones: keep it one transaction. */
	if (dry_run)
		batch = 0;
	cqrs_error err = { 0 };
	if (cqrs_metrics_init(metrics_dir, &err) < 0)
		cqrs_die_error(&err);
	cqrs_store *st = cqrs_store_open(cqrs_store_path(store_opt), CQRS_OPEN_WRITE, &err);
	if (st == NULL)
		cqrs_die_error(&err);
	if (no_sync)
		cqrs_store_set_durability(st, CQRS_DURABLE_NORMAL);
	cqrs_input *in = cqrs_input_open(argv + optind, argc - optind);
	if (in == NULL)
		cqrs_die(CQRS_EXIT_OSERR, "out of memory");

	struct append_run a = { .st = st,
				.batch = batch,
				.dry_run = dry_run,
				.quiet = quiet,
				.progress = { cqrs_progress_wanted(), 0 } };
	/* static: two windows are too large for the stack */
	static struct reader reader;
	struct reader *r = &reader;
	r->in = in;
	r->expected = expected;
	r->first = true;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->changed, NULL);
	int code = CQRS_EXIT_OK;
	if (append_input(&a, r, &err) < 0) {
		if (a.in_txn)
			cqrs_store_rollback(st);
		cqrs_warn("%s%s", a.where, err.msg);
		if (batch > 0 && a.committed > 0 && !dry_run)
			cqrs_warn("%lld events were committed before the error, through %s "
				  "(sequence %lld); the rest of the input was not stored",
				  (long long)a.committed, a.committed_at,
				  (long long)a.last_committed_seq);
		else if (!dry_run)
			cqrs_warn("nothing was stored");
		code = err.code;
	}
	/* after the messages: a FIFO named as a later operand can hold the
	 * thread in its open until someone writes to it */
	stop_reading(r);
	cqrs_input_close(in);
	cqrs_store_close(st);
	for (int i = 0; i < 2; i++) {
		free(r->win[i].text);
		free(r->win[i].meta);
	}
	pthread_cond_destroy(&r->changed);
	pthread_mutex_destroy(&r->lock);
	free(runs);
	return cqrs_finish_stdout(code);
}
