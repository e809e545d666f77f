/* cqrs-project: keep the read models (the views) current from the events. */
#include "config.h"

#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cqrs.h"
#include "banned.h"

static const char usage_text[] =
	"usage: cqrs-project [-fv] [-b count] [-P file] [-s store] [--views path] [--wait]\n"
	"                    [--no-default-projections] [--timeout seconds]\n"
	"                    [--metrics-dir dir] [--upcasters file]\n"
	"                    [--rebuild [--force] | --diff | --lag | --parked | --check |\n"
	"                     -o file [--as-of time | --to seq]] [--stdin | file ...]\n";

static void usage(int code)
{
	cqrs_print_usage(usage_text, code);
	if (code == 0)
		fputs("\n"
		      "  (no mode)                  apply what is new in the store, then exit\n"
		      "  -f, --follow               keep applying events as they are appended\n"
		      "      --stdin, -             apply the NDJSON events on standard input\n"
		      "      --rebuild              replay all events into new views, swap them "
		      "in\n"
		      "      --force                with --rebuild: drop projections not loaded\n"
		      "      --diff                 rebuild into a scratch file, compare with the "
		      "views\n"
		      "      --lag                  how far each projection is behind the store\n"
		      "      --parked               list the events parked by the projections\n"
		      "      --check                check the projection files and list them\n"
		      "  -o, --output FILE          build the views into a new FILE (history)\n"
		      "      --as-of TIME           with --output: as of an RFC 3339 time\n"
		      "      --to SEQ               with --output: up to sequence SEQ\n"
		      "  -P, --projections FILE     also load the projections of FILE "
		      "(repeatable)\n"
		      "      --no-default-projections  load only the files given with -P\n"
		      "  -b, --batch COUNT          commit every COUNT events (default 10000)\n"
		      "      --wait                 wait for another cqrs-project on the views\n"
		      "      --timeout SECONDS      what one event runs must end within SECONDS\n"
		      "                             (default 10; 0: no limit)\n"
		      "  -s, --store PATH           event store (default: $CQRS_STORE)\n"
		      "      --views PATH           views file (default: $CQRS_VIEWS)\n"
		      "      --metrics-dir DIR      add this run's metrics to "
		      "DIR/cqrs_project.prom\n"
		      "                             (default: $CQRS_METRICS_DIR)\n"
		      "  -v, --verbose              say what was applied, on standard error\n"
		      "      --log-format FORMAT    messages as text or json lines (default:\n"
		      "                             $CQRS_LOG_FORMAT, else text)\n"
		      "  -h, --help                 show this help\n"
		      "  -V, --version              show the version\n",
		      stdout);
	exit(code);
}

enum mode { CATCH_UP, FOLLOW, INPUT, REBUILD, DIFF, LAG, PARKED, CHECK, HISTORY };

static struct {
	const char *store, *views;
	bool wait, verbose;
	int64_t batch;
	int64_t timeout_ms;
} opt = { .timeout_ms = 10 * 1000 };

/* A run that finds the views busy (75) says nothing unless -v: from cron,
 * a busy minute is normal and must not send mail. */
static void warn_error(const cqrs_error *err)
{
	if (err->code != CQRS_EXIT_TEMPFAIL || opt.verbose)
		cqrs_log_error(err);
}

static _Noreturn void die_error(const cqrs_error *err)
{
	warn_error(err);
	exit(cqrs_finish_stdout(err->code));
}

static void set_mode(enum mode *m, enum mode want, const char *name)
{
	if (*m != CATCH_UP && *m != want)
		cqrs_die(CQRS_EXIT_USAGE, "%s goes alone: one mode per run\n%s", name, usage_text);
	*m = want;
}

static cqrs_store *open_store(void)
{
	cqrs_error err = { 0 };
	cqrs_store *st = cqrs_store_open(cqrs_store_path(opt.store), CQRS_OPEN_READ, &err);
	/* projections consume the current form: personal fields decrypted */
	if (st == NULL || cqrs_store_decrypt(st, &err) < 0)
		die_error(&err);
	return st;
}

static int take_lock(void)
{
	cqrs_error err = { 0 };
	int fd = cqrs_views_lock(cqrs_views_path(opt.views), opt.wait, &err);
	if (fd < 0)
		die_error(&err);
	return fd;
}

static cqrs_projector *open_projector(cqrs_projections *ps)
{
	cqrs_error err = { 0 };
	cqrs_projector *p = cqrs_projector_open(cqrs_views_path(opt.views), ps, 0, &err);
	if (p == NULL)
		die_error(&err);
	else {
		cqrs_projector_set_batch(p, opt.batch);
		cqrs_projector_set_timeout(p, opt.timeout_ms);
	}
	return p;
}

static void report(cqrs_projector *p)
{
	if (opt.verbose)
		cqrs_info("applied %lld events; views at sequence %lld",
			  (long long)cqrs_projector_applied(p),
			  (long long)cqrs_projector_position(p));
}

/* After a run that applied what it could: 5 and one line when events are
 * parked (cqrs-project(1), PARKED EVENTS). */
static int parked_status(int code, const char *views, const cqrs_projections *ps)
{
	char what[512];
	cqrs_error err = { 0 };
	if (code != CQRS_EXIT_OK)
		return code;
	int64_t n = cqrs_views_parked_summary(views, ps, what, sizeof what, &err);
	if (n < 0) {
		cqrs_warn("%s", err.msg);
		return err.code;
	}
	if (n == 0)
		return code;
	cqrs_warn("%lld event%s parked (%s): cqrs-project --parked lists them", (long long)n,
		  n == 1 ? "" : "s", what);
	return CQRS_EXIT_PARKED;
}

static int catch_up(cqrs_projections *ps)
{
	int lock = take_lock();
	cqrs_store *st = open_store();
	cqrs_projector *p = open_projector(ps);
	cqrs_projector_set_progress(p, cqrs_progress_wanted(), NULL);
	cqrs_error err = { 0 };
	int code = CQRS_EXIT_OK;
	if (cqrs_projector_sync(p, &err) < 0 || cqrs_projector_catch_up(p, st, 0, NULL, &err) < 0 ||
	    cqrs_projector_flush(p, &err) < 0) {
		warn_error(&err);
		code = err.code;
	}
	report(p);
	cqrs_projector_close(p);
	cqrs_store_close(st);
	code = parked_status(code, cqrs_views_path(opt.views), ps);
	cqrs_views_unlock(lock);
	return code;
}

static bool signalled(int sfd, int timeout_ms)
{
	struct pollfd p = { .fd = sfd, .events = POLLIN };
	return poll(&p, 1, timeout_ms) > 0;
}

/* Whether the store holds an event that the views (as this process last
 * saw them) do not: an idle follower touches neither the lock nor the
 * views, so that its own writes, which inotify reports when the views sit
 * next to the store, do not wake it again and again. */
static int store_ahead(cqrs_store *st, cqrs_projector *p, cqrs_error *err)
{
	int64_t last = cqrs_store_last_sequence(st, err);
	if (last < 0)
		return -1;
	int64_t pos = cqrs_projector_position(p);
	return pos >= 0 && last > pos;
}

/* One round under the lock; 1 when the lock was busy (try again). */
static int follow_round(cqrs_projector *p, cqrs_store *st, cqrs_error *err)
{
	int lock = cqrs_views_lock(cqrs_views_path(opt.views), false, err);
	if (lock < 0)
		return err->code == CQRS_EXIT_TEMPFAIL ? 1 : -1;
	int r = cqrs_projector_sync(p, err);
	if (r == 0)
		r = cqrs_projector_catch_up(p, st, 0, NULL, err);
	if (r == 0)
		r = cqrs_projector_flush(p, err);
	cqrs_views_unlock(lock);
	if (r == 0)
		report(p);
	return r;
}

/* Holds the lock only while applying, so that cron runs, --rebuild and
 * --diff get their turn between rounds. */
static int follow(cqrs_projections *ps)
{
	int sfd = cqrs_follow_signal_fd();
	cqrs_store *st = open_store();
	cqrs_projector *p = open_projector(ps);
	cqrs_error err = { 0 };
	int code = CQRS_EXIT_OK;
	int64_t parked = 0;
	bool due = true; /* the first round syncs whatever the store holds */
	for (;;) {
		if (!due) {
			int a = store_ahead(st, p, &err);
			if (a < 0)
				break;
			due = a == 1;
		}
		if (due) {
			int r = follow_round(p, st, &err);
			if (r < 0)
				break;
			if (r == 1) { /* busy: another run is at work */
				if (signalled(sfd, 100))
					goto out;
				continue;
			}
			due = false;
		}
		if (cqrs_projector_parked_new(p) > parked) {
			parked = cqrs_projector_parked_new(p);
			cqrs_warn("%lld event%s parked so far: cqrs-project --parked lists them",
				  (long long)parked, parked == 1 ? "" : "s");
		}
		cqrs_metrics_tick();
		/* a timeout looks again: a safety net for file systems that
		 * do not report changes */
		int w = cqrs_store_wait(st, 1000, &sfd, 1, &err);
		if (w < 0)
			break;
		if (w == 2)
			goto out;
	}
	warn_error(&err);
	code = err.code;
out:
	cqrs_projector_close(p);
	cqrs_store_close(st);
	close(sfd);
	return code;
}

/* Nothing more is waiting on stdin: commit, so the views are current
 * while the writer upstream is quiet. */
static bool stdin_idle(const cqrs_input *in)
{
	if (strcmp(cqrs_input_name(in), "stdin") != 0)
		return false;
	struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };
	return poll(&p, 1, 0) == 0;
}

/* An event fed in the stored form (cqrs-read's output): its personal
 * fields decrypted with the store's keys, as a read of the store gives
 * them to the projections (cqrs-erase(1)). */
static int decrypt_fed(cqrs_event *ev, cqrs_store **st, cqrs_error *err)
{
	if (!cqrs_event_encrypted(ev))
		return 0;
	if (*st == NULL &&
	    ((*st = cqrs_store_open(cqrs_store_path(opt.store), CQRS_OPEN_READ, err)) == NULL ||
	     cqrs_store_decrypt(*st, err) < 0))
		return -1;
	return cqrs_store_decode(*st, ev, err);
}

static int from_input(cqrs_projections *ps, char **paths, int npaths)
{
	int lock = take_lock();
	cqrs_projector *p = open_projector(ps);
	cqrs_store *st = NULL;
	cqrs_error err = { 0 };
	int code = CQRS_EXIT_OK;
	cqrs_input *in = NULL;
	if (cqrs_projector_sync(p, &err) < 0)
		goto fail;
	in = cqrs_input_open(paths, npaths);
	if (in == NULL)
		cqrs_die(CQRS_EXIT_OSERR, "out of memory");
	char *line;
	size_t len;
	int r;
	cqrs_event ev;
	int64_t pending = 0;
	while ((r = cqrs_input_next(in, &line, &len, &err)) == 1) {
		if (cqrs_event_parse(&ev, line, len, &err) < 0 || decrypt_fed(&ev, &st, &err) < 0 ||
		    cqrs_projector_feed(p, &ev, cqrs_store_path(opt.store), &st, &err) < 0) {
			char msg[sizeof err.msg];
			snprintf(msg, sizeof msg, "%s", err.msg);
			cqrs_fail(&err, err.code, "%s:%ld: %s", cqrs_input_name(in),
				  cqrs_input_lineno(in), msg);
			goto fail;
		}
		if (++pending > 0 && stdin_idle(in)) {
			if (cqrs_projector_commit(p, &err) < 0)
				goto fail;
			pending = 0;
		}
	}
	if (r < 0 || cqrs_projector_flush(p, &err) < 0)
		goto fail;
	goto out;
fail:
	cqrs_projector_rollback(p);
	warn_error(&err);
	code = err.code;
out:
	report(p);
	cqrs_input_close(in);
	cqrs_projector_close(p);
	cqrs_store_close(st);
	code = parked_status(code, cqrs_views_path(opt.views), ps);
	cqrs_views_unlock(lock);
	return code;
}

int main(int argc, char **argv)
{
	enum {
		OPT_STDIN = 256,
		OPT_REBUILD,
		OPT_FORCE,
		OPT_DIFF,
		OPT_LAG,
		OPT_PARKED,
		OPT_CHECK,
		OPT_AS_OF,
		OPT_TO,
		OPT_NO_DEFAULT,
		OPT_WAIT,
		OPT_VIEWS,
		OPT_TIMEOUT,
		OPT_LOG_FORMAT,
		OPT_METRICS_DIR,
		OPT_UPCASTERS
	};
	static const struct option longopts[] = {
		{ "follow", no_argument, NULL, 'f' },
		{ "stdin", no_argument, NULL, OPT_STDIN },
		{ "rebuild", no_argument, NULL, OPT_REBUILD },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "diff", no_argument, NULL, OPT_DIFF },
		{ "lag", no_argument, NULL, OPT_LAG },
		{ "parked", no_argument, NULL, OPT_PARKED },
		{ "check", no_argument, NULL, OPT_CHECK },
		{ "output", required_argument, NULL, 'o' },
		{ "as-of", required_argument, NULL, OPT_AS_OF },
		{ "to", required_argument, NULL, OPT_TO },
		{ "projections", required_argument, NULL, 'P' },
		{ "no-default-projections", no_argument, NULL, OPT_NO_DEFAULT },
		{ "batch", required_argument, NULL, 'b' },
		{ "wait", no_argument, NULL, OPT_WAIT },
		{ "store", required_argument, NULL, 's' },
		{ "views", required_argument, NULL, OPT_VIEWS },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "metrics-dir", required_argument, NULL, OPT_METRICS_DIR },
		{ "upcasters", required_argument, NULL, OPT_UPCASTERS },
		{ "verbose", no_argument, NULL, 'v' },
		{ "log-format", required_argument, NULL, OPT_LOG_FORMAT },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	enum mode mode = CATCH_UP;
	const char *output = NULL, *metrics_dir = NULL;
	char until[CQRS_TIMESTAMP_LEN + 1];
	bool have_until = false, force = false, no_default = false, use_stdin = false;
	int64_t to = 0;
	char **files = NULL;
	int nfiles = 0, ch;

	cqrs_tool_init("cqrs-project");
	cqrs_log_scan_args(argc, argv);
	/* the -P files: fewer than the arguments */
	files = calloc((size_t)argc, sizeof *files);
	/* --upcasters; static: reachable until exit, whichever way the tool ends */
	static char **upcasters;
	upcasters = calloc((size_t)argc, sizeof *upcasters);
	int nupcasters = 0;
	if (files == NULL || upcasters == NULL) {
		cqrs_warn("out of memory");
		return CQRS_EXIT_OSERR;
	}
	while ((ch = cqrs_getopt_long(argc, argv, "fo:P:b:s:vhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'f': set_mode(&mode, FOLLOW, "--follow"); break;
		case OPT_STDIN: use_stdin = true; break;
		case OPT_REBUILD: set_mode(&mode, REBUILD, "--rebuild"); break;
		case OPT_FORCE: force = true; break;
		case OPT_DIFF: set_mode(&mode, DIFF, "--diff"); break;
		case OPT_LAG: set_mode(&mode, LAG, "--lag"); break;
		case OPT_PARKED: set_mode(&mode, PARKED, "--parked"); break;
		case OPT_CHECK: set_mode(&mode, CHECK, "--check"); break;
		case 'o':
			set_mode(&mode, HISTORY, "--output");
			output = optarg;
			break;
		case OPT_AS_OF:
			if (cqrs_timestamp_normalize(optarg, strlen(optarg), until) < 0)
				cqrs_die(CQRS_EXIT_USAGE, "--as-of: not an RFC 3339 time: '%s'",
					 optarg);
			have_until = true;
			break;
		case OPT_TO:
			if (cqrs_parse_int64(optarg, &to) < 0 || to == 0)
				cqrs_die(CQRS_EXIT_USAGE,
					 "--to needs a sequence of at least 1: '%s'", optarg);
			break;
		case 'P': files[nfiles++] = optarg; break;
		case OPT_NO_DEFAULT: no_default = true; break;
		case 'b':
			if (cqrs_parse_int64(optarg, &opt.batch) < 0 || opt.batch == 0)
				cqrs_die(CQRS_EXIT_USAGE, "--batch needs a positive count: '%s'",
					 optarg);
			break;
		case OPT_WAIT: opt.wait = true; break;
		case 's': opt.store = optarg; break;
		case OPT_VIEWS: opt.views = optarg; break;
		case OPT_TIMEOUT:
			if (cqrs_parse_int64(optarg, &opt.timeout_ms) < 0 || opt.timeout_ms < 0 ||
			    opt.timeout_ms > INT64_MAX / 1000)
				cqrs_die(CQRS_EXIT_USAGE,
					 "--timeout needs a number of seconds: '%s'", optarg);
			opt.timeout_ms *= 1000;
			break;
		case 'v': opt.verbose = true; break;
		case OPT_LOG_FORMAT: cqrs_log_format_option(optarg); break;
		case OPT_METRICS_DIR: metrics_dir = optarg; break;
		case OPT_UPCASTERS: upcasters[nupcasters++] = optarg; break;
		case 'h': usage(0); break;
		case 'V':
			cqrs_print_version();
			free(files);
			return cqrs_finish_stdout(0);
		default: usage(CQRS_EXIT_USAGE);
		}
	}
	char *dash[] = { "-" };
	char **inputs = argv + optind;
	int ninputs = argc - optind;
	if (use_stdin) {
		if (ninputs > 0)
			cqrs_die(CQRS_EXIT_USAGE, "--stdin and file operands go alone");
		inputs = dash;
		ninputs = 1;
	}
	if (ninputs > 0)
		set_mode(&mode, INPUT, "reading events from input");
	if (force && mode != REBUILD)
		cqrs_die(CQRS_EXIT_USAGE, "--force goes with --rebuild");
	if ((have_until || to > 0) && mode != HISTORY)
		cqrs_die(CQRS_EXIT_USAGE, "--as-of and --to go with --output");
	if (have_until && to > 0)
		cqrs_die(CQRS_EXIT_USAGE, "--as-of and --to go alone");
	if (no_default && nfiles == 0)
		cqrs_die(CQRS_EXIT_USAGE, "--no-default-projections needs --projections FILE");

	cqrs_error err = { 0 };
	if (cqrs_metrics_init(metrics_dir, &err) < 0)
		cqrs_die_error(&err);
	/* The projector upcasts each event after it checked the event's hash
	 * (the stored form's), so the store here keeps the stored form. */
	if (cqrs_upcasters_init(upcasters, nupcasters, &err) < 0)
		die_error(&err);
	cqrs_projections *ps = cqrs_projections_new();
	if (ps == NULL)
		cqrs_die(CQRS_EXIT_OSERR, "out of memory");
	char shipped[4096];
	if (!no_default &&
	    cqrs_projections_load(
		    ps, cqrs_share_path("projections/orders.yaml", shipped, sizeof shipped), &err) <
		    0)
		die_error(&err);
	for (int i = 0; i < nfiles; i++)
		if (cqrs_projections_load(ps, files[i], &err) < 0)
			die_error(&err);
	if (cqrs_projections_check(ps, &err) < 0)
		die_error(&err);

	/* a follower's lines carry their time; -v names each parked event */
	cqrs_log_set_timestamps(mode == FOLLOW);
	cqrs_log_set_verbose(opt.verbose);
	int code = CQRS_EXIT_OK;
	/* cqrs_store_path may return a buffer that a later call reuses */
	char store_path[4096];
	snprintf(store_path, sizeof store_path, "%s", cqrs_store_path(opt.store));
	cqrs_build_opts bo = { .batch = opt.batch,
			       .progress = cqrs_progress_wanted(),
			       .force = force,
			       .to = to,
			       .until = have_until ? until : NULL,
			       .timeout_ms = opt.timeout_ms,
			       .store_path = store_path };
	switch (mode) {
	case CHECK: cqrs_projections_describe(ps, stdout); break;
	case CATCH_UP: code = catch_up(ps); break;
	case FOLLOW: code = follow(ps); break;
	case INPUT: code = from_input(ps, inputs, ninputs); break;
	case LAG: {
		cqrs_store *st = open_store();
		if (cqrs_views_lag(cqrs_views_path(opt.views), st, stdout, &err) < 0)
			die_error(&err);
		cqrs_store_close(st);
		break;
	}
	case PARKED:
		if (cqrs_views_parked(cqrs_views_path(opt.views), stdout, &err) < 0)
			cqrs_die_error(&err);
		break;
	case HISTORY: {
		cqrs_store *st = open_store();
		if (cqrs_views_build(output, st, ps, &bo, &err) < 0)
			die_error(&err);
		code = parked_status(code, output, ps);
		cqrs_store_close(st);
		break;
	}
	case REBUILD:
	case DIFF: {
		int lock = take_lock();
		cqrs_store *st = open_store();
		int r = mode == REBUILD
				? cqrs_views_rebuild(cqrs_views_path(opt.views), st, ps, &bo, &err)
				: cqrs_views_diff(cqrs_views_path(opt.views), st, ps, &bo, stdout,
						  &err);
		if (r < 0)
			die_error(&err);
		/* --diff: 1 when the views differ, as diff(1) */
		code = r == 1 ? CQRS_EXIT_NOT_FOUND : CQRS_EXIT_OK;
		if (mode == REBUILD)
			code = parked_status(code, cqrs_views_path(opt.views), ps);
		cqrs_store_close(st);
		cqrs_views_unlock(lock);
		break;
	}
	}
	cqrs_projections_free(ps);
	free(files);
	return cqrs_finish_stdout(code);
}
