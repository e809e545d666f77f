/* cqrs-append: validate NDJSON events and append them to the store. */
#include "config.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
	fprintf(stderr, "\r%s: %lld events%s", cqrs_tool_name(), (long long)n, done ? "\n" : "");
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

	struct progress progress = { cqrs_progress_wanted(), 0 };
	bool in_txn = false, first = true;
	uint8_t single_aggregate[CQRS_UUID_LEN];
	int64_t in_batch = 0, committed = 0, total = 0, last_committed_seq = 0;
	char committed_at[512] = "", where[512] = "";
	char *line;
	size_t len;
	int r, code = CQRS_EXIT_OK;
	cqrs_event ev;

	while ((r = cqrs_input_next(in, &line, &len, &err)) == 1) {
		if (cqrs_event_parse(&ev, line, len, &err) < 0)
			goto bad_line;
		if (expected >= 0) {
			if (first) {
				memcpy(single_aggregate, ev.aggregate_id, CQRS_UUID_LEN);
				/* the event's own expectation, stated or implied by its version */
				int64_t own = ev.expected_version >= 0	 ? ev.expected_version
					      : ev.aggregate_version > 0 ? ev.aggregate_version - 1
									 : -1;
				if (own >= 0 && own != expected) {
					cqrs_fail(&err, CQRS_EXIT_DATAERR,
						  "field '%s' (%lld) disagrees with "
						  "--expected-version %lld",
						  ev.expected_version >= 0 ? "expected_version"
									   : "aggregate_version",
						  (long long)(ev.expected_version >= 0
								      ? ev.expected_version
								      : ev.aggregate_version),
						  (long long)expected);
					goto bad_line;
				}
				ev.expected_version = expected;
			} else if (memcmp(single_aggregate, ev.aggregate_id, CQRS_UUID_LEN) != 0) {
				cqrs_fail(&err, CQRS_EXIT_DATAERR,
					  "--expected-version needs the events of one aggregate");
				goto bad_line;
			}
		}
		first = false;
		if (!in_txn) {
			if (cqrs_store_begin(st, &err) < 0)
				goto fail;
			in_txn = true;
		}
		int res = cqrs_store_append(st, &ev, &err);
		if (res < 0)
			goto bad_line;
		remember(ev.sequence);
		total++;
		if (res == CQRS_APPENDED)
			in_batch++;
		show_progress(&progress, total, false);
		if (batch > 0 && in_batch >= batch) {
			if (dry_run) {
				if (!quiet && print_runs(st, &err) < 0)
					goto fail;
				cqrs_store_rollback(st);
			} else {
				if (cqrs_store_commit(st, &err) < 0)
					goto fail;
				if (!quiet && print_runs(st, &err) < 0)
					goto fail;
			}
			nruns = 0;
			in_txn = false;
			committed += in_batch;
			last_committed_seq = ev.sequence;
			snprintf(committed_at, sizeof committed_at, "%s:%ld", cqrs_input_name(in),
				 cqrs_input_lineno(in));
			in_batch = 0;
			if (cqrs_stdout_gone())
				quiet = true;
		}
	}
	if (r < 0)
		goto fail;
	if (in_txn) {
		if (dry_run) {
			if (!quiet && print_runs(st, &err) < 0)
				goto fail;
			cqrs_store_rollback(st);
		} else {
			if (cqrs_store_commit(st, &err) < 0)
				goto fail;
			if (!quiet && print_runs(st, &err) < 0)
				goto fail;
		}
	}
	show_progress(&progress, total, true);
	goto out;

bad_line:
	/* Say where: the message comes from a layer that does not know. */
	snprintf(where, sizeof where, "%s:%ld: ", cqrs_input_name(in), cqrs_input_lineno(in));
fail:
	if (in_txn)
		cqrs_store_rollback(st);
	cqrs_warn("%s%s", where, err.msg);
	if (batch > 0 && committed > 0 && !dry_run)
		cqrs_warn(
			"%lld events were committed before the error, through %s (sequence %lld); "
			"the rest of the input was not stored",
			(long long)committed, committed_at, (long long)last_committed_seq);
	else if (!dry_run)
		cqrs_warn("nothing was stored");
	code = err.code;
out:
	cqrs_input_close(in);
	cqrs_store_close(st);
	free(runs);
	return cqrs_finish_stdout(code);
}
