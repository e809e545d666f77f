/* cqrs-saga: run sagas (the order-processing saga by default) and see them. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cqrs.h"
#include "banned.h"

static const char usage_text[] =
	"usage: cqrs-saga run [-v] [--follow] [--wait] [-b count] [-f file]... [-s store] "
	"[--no-sync]\n"
	"                     [--metrics-dir dir] [--upcasters file]... [--lease duration]\n"
	"       cqrs-saga status [--format text|ndjson] [--stuck-after duration] [-s store]\n"
	"       cqrs-saga show [--format text|ndjson] [-s store] saga_id\n"
	"       cqrs-saga dot [-f file]... [-T dot|svg|png] [-o file] [-s store] [saga_id]\n"
	"       cqrs-saga retry [-s store] saga_id\n"
	"       cqrs-saga check [-f file]...\n";

static CQRS_NORETURN void usage(int code)
{
	cqrs_print_usage(usage_text, code);
	if (code == 0)
		fputs("\n"
		      "  -b, --batch COUNT        saga instances per transaction (default 256)\n"
		      "  -f, --file FILE          saga definition (default: the order saga)\n"
		      "      --follow             keep running: new events, retries, deadlines\n"
		      "      --format FORMAT      text (default) or ndjson\n"
		      "      --lease DUR          PostgreSQL: how long a runner holds an\n"
		      "                           instance it works on (5m, or twice the\n"
		      "                           longest step timeout)\n"
		      "  -o, --output FILE        where dot -T svg|png writes the picture\n"
		      "  -s, --store PATH         event store (default: $CQRS_STORE)\n"
		      "      --stuck-after DUR    status: active with no change this long (1h)\n"
		      "  -T, --type FORMAT        dot: dot (default), svg or png (needs Graphviz)\n"
		      "  -v, --verbose            say each step on standard error\n"
		      "      --wait               wait for another runner instead of exit 75\n"
		      "      --no-sync            do not fsync each commit\n"
		      "      --log-format FORMAT  messages as text or json lines (default:\n"
		      "                           $CQRS_LOG_FORMAT, else text)\n"
		      "      --metrics-dir DIR    run: add its metrics to DIR/cqrs_saga.prom\n"
		      "                           (default: $CQRS_METRICS_DIR)\n"
		      "  -h, --help               show this help\n"
		      "  -V, --version            show the version\n",
		      stdout);
	exit(code);
}

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static bool stopping(void)
{
	return stop != 0;
}

/* A busy run is the normal case under cron (the last run is still going):
 * it exits 75 quietly, so that cron has nothing to mail; -v says why. */
static CQRS_NORETURN void exit_busy(void)
{
	exit(cqrs_finish_stdout(CQRS_EXIT_TEMPFAIL));
}

/* quiet: a run without -v, for which busy is no news */
static CQRS_NORETURN void die_error(const cqrs_error *err, bool quiet)
{
	if (err->code == CQRS_EXIT_TEMPFAIL && quiet)
		exit_busy();
	cqrs_die_error(err);
}

/* One runner per store at a time: a second one would run steps twice. */
static int take_lock(const char *store, bool wait, bool verbose)
{
	char path[4200];
	snprintf(path, sizeof path, "%s.saga.lock", store);
	/* held to the store's rules: a lock someone else planted is refused */
	cqrs_error err = { 0 };
	int fd = cqrs_open_trusted(path, O_RDWR | O_CREAT, true, &err);
	if (fd < 0)
		cqrs_die_error(&err);
	while (flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) < 0) {
		if (errno == EINTR && !stop)
			continue;
		if ((errno == EWOULDBLOCK || errno == EINTR) && !verbose)
			exit_busy();
		if (errno == EWOULDBLOCK || errno == EINTR)
			cqrs_die(CQRS_EXIT_TEMPFAIL,
				 "%s: another cqrs-saga run holds the lock; try "
				 "again later (or use --wait)",
				 path);
		cqrs_die(CQRS_EXIT_IOERR, "%s: cannot lock: %s", path, strerror(errno));
	}
	return fd;
}

static size_t load_defs(char **files, size_t nfiles, cqrs_saga_def **defs)
{
	char def[4096];
	char *fallback[1] = { (char *)cqrs_share_path("sagas/order.yaml", def, sizeof def) };
	if (nfiles == 0) {
		files = fallback;
		nfiles = 1;
	}
	for (size_t i = 0; i < nfiles; i++) {
		cqrs_error err = { 0 };
		defs[i] = cqrs_saga_load(files[i], &err);
		if (defs[i] == NULL)
			cqrs_die_error(&err);
	}
	return nfiles;
}

/* run and retry write to the store but never create one: a typo in a cron
 * line would otherwise make an empty store and run nothing, every minute,
 * with exit 0.  Only the user's own mistake is caught here; the store
 * itself is checked on the opened file. */
static cqrs_store *open_store(const char *opt, enum cqrs_open_mode mode, bool quiet)
{
	const char *path = cqrs_store_path(opt);
	struct stat sb;
	if (!cqrs_store_on_server(path) && stat(path, &sb) < 0 &&
	    (errno == ENOENT || errno == ENOTDIR))
		cqrs_die(CQRS_EXIT_NOINPUT, "%s: no such store", path);
	cqrs_error err = { 0 };
	cqrs_store *st = cqrs_store_open(path, mode, &err);
	/* the saga reads the current form: personal fields decrypted */
	if (st == NULL || cqrs_store_decrypt(st, &err) < 0)
		die_error(&err, quiet);
	return st;
}

/* --follow: sleep until new events, the next retry or deadline, or a signal */
static int wait_for_work(cqrs_store *st, int64_t next_due, cqrs_error *err)
{
	int64_t ms = 60000;
	if (next_due > 0) {
		int64_t left = (next_due - cqrs_saga_now()) / 1000 + 1;
		if (left < ms)
			ms = left < 0 ? 0 : left;
	}
	return cqrs_store_wait(st, (int)ms, NULL, 0, err);
}

/* A follower keeps going through a failure that may pass (75: the store
 * busy past CQRS_BUSY_TIMEOUT, a deadlock or serialization failure on
 * PostgreSQL, another runner's change to a saga it held): it says so and
 * tries again after 100 ms, doubling to 5 s; after FOLLOW_RETRIES in a row
 * (about half a minute) it exits 75 for its supervisor to restart it.  A
 * failed pass leaves nothing half done: each of its transactions commits
 * or rolls back whole, and a runner takes its own leases again. */
#define FOLLOW_RETRIES 10

static void pause_ms(int64_t ms)
{
	for (int64_t slept = 0; slept < ms && !stop; slept += 50)
		nanosleep(&(struct timespec){ .tv_nsec = 50 * 1000000L }, NULL);
}

static int run(cqrs_store *st, cqrs_saga_def **defs, size_t ndefs, int64_t batch, bool verbose,
	       bool follow, int64_t lease_us)
{
	struct cqrs_saga_options opt = {
		.batch = batch, .verbose = verbose, .should_stop = stopping, .lease_us = lease_us
	};
	cqrs_error err = { 0 };
	cqrs_saga_runner *r = cqrs_saga_runner_new(st, defs, ndefs, &opt, &err);
	if (r == NULL)
		die_error(&err, !verbose);
	int code = 0, transient = 0;
	do {
		cqrs_metrics_tick();
		int64_t next_due = 0;
		if (cqrs_saga_run(r, &next_due, &err) < 0 ||
		    (follow && !stop && wait_for_work(st, next_due, &err) < 0)) {
			if (follow && !stop && err.code == CQRS_EXIT_TEMPFAIL &&
			    transient < FOLLOW_RETRIES) {
				int64_t ms = cqrs_backoff_ms(transient++, 100, 5000);
				cqrs_warn("%s; trying again in %lld ms", err.msg, (long long)ms);
				pause_ms(ms);
				err = (cqrs_error){ 0 };
				continue;
			}
			if (err.code != CQRS_EXIT_TEMPFAIL || verbose || transient > 0)
				cqrs_log_error(&err);
			code = err.code;
			break;
		}
		transient = 0;
	} while (follow && !stop);
	if (verbose) {
		struct cqrs_saga_stats s;
		cqrs_saga_runner_stats(r, &s);
		cqrs_info("started %lld, completed %lld, compensated %lld, failed %lld, "
			  "%lld steps, %lld retries scheduled",
			  (long long)s.started, (long long)s.completed, (long long)s.compensated,
			  (long long)s.failed, (long long)s.steps, (long long)s.retries);
	}
	cqrs_saga_runner_free(r);
	return code;
}

/* DOT through Graphviz's dot(1), argv only: dot -T FORMAT -o FILE. */
static int render(const char *dot, size_t len, const char *format, const char *outfile)
{
	int p[2];
	if (pipe(p) < 0)
		cqrs_die(CQRS_EXIT_OSERR, "pipe: %s", strerror(errno));
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		cqrs_die(CQRS_EXIT_OSERR, "fork: %s", strerror(errno));
	if (pid == 0) {
		signal(SIGPIPE, SIG_DFL);
		dup2(p[0], STDIN_FILENO);
		close(p[0]);
		close(p[1]);
		char fmt[16];
		snprintf(fmt, sizeof fmt, "-T%s", format);
		execlp("dot", "dot", fmt, "-o", outfile, (char *)NULL);
		_exit(errno == ENOENT ? 127 : 126);
	}
	close(p[0]);
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(p[1], dot + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	close(p[1]);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
		cqrs_die(CQRS_EXIT_UNAVAILABLE,
			 "-T %s needs Graphviz's dot, which is not installed (apt-get install "
			 "graphviz); -T dot writes the DOT text",
			 format);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		cqrs_die(CQRS_EXIT_SOFTWARE, "dot -T%s failed", format);
	return 0;
}

struct opts {
	const char *cmd, *store, *output, *type, *metrics_dir;
	enum cqrs_saga_format format;
	int64_t batch, stuck_us, lease_us;
	bool verbose, follow, wait, no_sync;
	char **files;
	size_t nfiles;
	char **upcasters; /* --upcasters: cqrs-upcasters(5) */
	int nupcasters;
	char **args;
	int nargs;
};

static const struct option longopts[] = {
	{ "batch", required_argument, NULL, 'b' },
	{ "file", required_argument, NULL, 'f' },
	{ "follow", no_argument, NULL, 'F' },
	{ "format", required_argument, NULL, 'm' },
	{ "output", required_argument, NULL, 'o' },
	{ "store", required_argument, NULL, 's' },
	{ "stuck-after", required_argument, NULL, 'k' },
	{ "type", required_argument, NULL, 'T' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "wait", no_argument, NULL, 'w' },
	{ "no-sync", no_argument, NULL, 'S' },
	{ "log-format", required_argument, NULL, 'L' },
	{ "metrics-dir", required_argument, NULL, 'M' },
	{ "upcasters", required_argument, NULL, 'U' },
	{ "lease", required_argument, NULL, 'l' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

/* How many long options "--name" (or "--name=value") abbreviates. */
static int long_matches(const char *arg)
{
	size_t n = strcspn(arg + 2, "=");
	int count = 0;
	for (const struct option *o = longopts; o->name != NULL; o++) {
		if (strncmp(o->name, arg + 2, n) == 0 && o->name[n] == '\0')
			return 1;
		count += strncmp(o->name, arg + 2, n) == 0;
	}
	return count;
}

static const char *long_name(int val)
{
	for (const struct option *o = longopts; o->name != NULL; o++)
		if (o->val == val)
			return o->name;
	return "?";
}

/* The message and the usage, exit 64.  getopt's own messages would name
 * the command ("run: ...") rather than the tool, so ours name both. */
static CQRS_NORETURN CQRS_PRINTF(2, 3) void bad_usage(const char *cmd, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (cmd != NULL)
		cqrs_warn("%s: %s", cmd, msg);
	else
		cqrs_warn("%s", msg);
	usage(CQRS_EXIT_USAGE);
}

/* What getopt_long (opterr 0, optstring starting with ':') stopped at. */
static CQRS_NORETURN void bad_option(const char *cmd, char **argv, int ch)
{
	const char *arg = argv[optind - 1];
	char shortopt[2] = { (char)optopt, '\0' };
	bool is_long = strncmp(arg, "--", 2) == 0;
	if (ch == ':')
		bad_usage(cmd,
			  is_long ? "option '%s' requires an argument"
				  : "option requires an argument -- '%s'",
			  is_long ? arg : shortopt);
	if (optopt == 0 && long_matches(arg) > 1)
		bad_usage(cmd, "option '%s' is ambiguous", arg);
	if (optopt == 0)
		bad_usage(cmd, "unrecognized option '%s'", arg);
	if (strchr("FmkwS", optopt) != NULL) /* long only: given a value */
		bad_usage(cmd, "option '--%s' doesn't allow an argument", long_name(optopt));
	bad_usage(cmd, "invalid option -- '%s'", shortopt);
}

static void set_option(struct opts *o, int ch)
{
	switch (ch) {
	case 'b':
		if (cqrs_parse_int64(optarg, &o->batch) < 0 || o->batch == 0 || o->batch > 100000)
			cqrs_die(CQRS_EXIT_USAGE, "--batch needs a count from 1 to 100000: '%s'",
				 optarg);
		break;
	case 'f': o->files[o->nfiles++] = optarg; break;
	case 'F': o->follow = true; break;
	case 'm':
		if (strcmp(optarg, "text") == 0)
			o->format = CQRS_SAGA_TEXT;
		else if (strcmp(optarg, "ndjson") == 0)
			o->format = CQRS_SAGA_NDJSON;
		else
			cqrs_die(CQRS_EXIT_USAGE, "--format is text or ndjson: '%s'", optarg);
		break;
	case 'o': o->output = optarg; break;
	case 's': o->store = optarg; break;
	case 'k':
		o->stuck_us = cqrs_saga_duration_parse(optarg);
		if (o->stuck_us < 0)
			cqrs_die(CQRS_EXIT_USAGE,
				 "--stuck-after needs a duration such as 30m or 2h: '%s'", optarg);
		break;
	case 'T':
		if (strcmp(optarg, "dot") != 0 && strcmp(optarg, "svg") != 0 &&
		    strcmp(optarg, "png") != 0)
			cqrs_die(CQRS_EXIT_USAGE, "-T is dot, svg or png: '%s'", optarg);
		o->type = optarg;
		break;
	case 'v': o->verbose = true; break;
	case 'w': o->wait = true; break;
	case 'S': o->no_sync = true; break;
	case 'L': cqrs_log_format_option(optarg); break;
	case 'M': o->metrics_dir = optarg; break;
	case 'U': o->upcasters[o->nupcasters++] = optarg; break;
	case 'l':
		o->lease_us = cqrs_saga_duration_parse(optarg);
		if (o->lease_us <= 0)
			cqrs_die(CQRS_EXIT_USAGE,
				 "--lease needs a duration such as 90s or 10m: '%s'", optarg);
		break;
	}
}

/* argv[0] is the command, its options (those in allowed) and operands
 * follow. */
static void parse_options(int argc, char **argv, const char *allowed, struct opts *o)
{
	o->files = calloc((size_t)argc + 1, sizeof *o->files);
	o->upcasters = calloc((size_t)argc + 1, sizeof *o->upcasters);
	if (o->files == NULL || o->upcasters == NULL)
		cqrs_die(CQRS_EXIT_OSERR, "out of memory");
	opterr = 0;
	int ch;
	while ((ch = getopt_long(argc, argv, ":b:f:o:s:T:vhV", longopts, NULL)) != -1) {
		if (ch == '?' || ch == ':')
			bad_option(o->cmd, argv, ch);
		if (ch == 'h')
			usage(0);
		if (ch == 'V') {
			cqrs_print_version();
			exit(cqrs_finish_stdout(0));
		}
		if (strchr(allowed, ch) == NULL)
			bad_usage(o->cmd, "option '--%s' does not apply to this command",
				  long_name(ch));
		set_option(o, ch);
	}
	if (o->nfiles > 64)
		cqrs_die(CQRS_EXIT_USAGE, "at most 64 saga definitions");
	o->args = argv + optind;
	o->nargs = argc - optind;
}

static void no_operands(const struct opts *o)
{
	if (o->nargs != 0)
		cqrs_die(CQRS_EXIT_USAGE, "%s takes no operands: '%s'", o->cmd, o->args[0]);
}

static int cmd_run(const struct opts *o)
{
	no_operands(o);
	cqrs_saga_def *defs[64];
	size_t ndefs = load_defs(o->files, o->nfiles, defs);
	const char *path = cqrs_store_path(o->store);
	cqrs_error err = { 0 };
	if (cqrs_metrics_init(o->metrics_dir, &err) < 0 ||
	    cqrs_upcasters_init(o->upcasters, o->nupcasters, &err) < 0)
		cqrs_die_error(&err);
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	cqrs_store *st = open_store(o->store, CQRS_OPEN_WRITE, !o->verbose);
	/* starting events and the aggregates of its commands: current form */
	if (cqrs_upcast_attach(st, &err) < 0)
		cqrs_die_error(&err);
	/* on a PostgreSQL store runners share the instances by leases instead */
	int lock = cqrs_saga_runners_share(st) ? -1 : take_lock(path, o->wait, o->verbose);
	if (o->no_sync)
		cqrs_store_set_durability(st, CQRS_DURABLE_NORMAL);
	cqrs_log_set_timestamps(o->follow); /* a follower's lines carry their time */
	int code = run(st, defs, ndefs, o->batch, o->verbose, o->follow, o->lease_us);
	cqrs_store_close(st);
	if (lock >= 0)
		close(lock);
	for (size_t i = 0; i < ndefs; i++)
		cqrs_saga_free(defs[i]);
	return code;
}

static int cmd_check(const struct opts *o)
{
	no_operands(o);
	cqrs_saga_def *defs[64];
	size_t ndefs = load_defs(o->files, o->nfiles, defs);
	for (size_t i = 0; i < ndefs; i++) {
		printf("%s: saga '%s' is valid\n", o->nfiles ? o->files[i] : "order.yaml",
		       cqrs_saga_name(defs[i]));
		cqrs_saga_free(defs[i]);
	}
	return 0;
}

static int cmd_status(const struct opts *o)
{
	no_operands(o);
	cqrs_error err = { 0 };
	cqrs_store *st = open_store(o->store, CQRS_OPEN_READ, false);
	if (cqrs_saga_status(st, stdout, o->format, o->stuck_us, &err) < 0)
		cqrs_die_error(&err);
	cqrs_store_close(st);
	return 0;
}

static int cmd_show_retry(const struct opts *o)
{
	if (o->nargs != 1)
		cqrs_die(CQRS_EXIT_USAGE, "%s needs one saga id", o->cmd);
	bool show = strcmp(o->cmd, "show") == 0;
	cqrs_error err = { 0 };
	cqrs_store *st = open_store(o->store, show ? CQRS_OPEN_READ : CQRS_OPEN_WRITE, false);
	int rc = show ? cqrs_saga_show(st, o->args[0], stdout, o->format, &err)
		      : cqrs_saga_retry(st, o->args[0], &err);
	if (rc < 0)
		cqrs_die_error(&err);
	cqrs_store_close(st);
	return 0;
}

static int cmd_dot(const struct opts *o)
{
	if (o->nargs > 1)
		cqrs_die(CQRS_EXIT_USAGE, "dot takes at most one saga id");
	bool picture = strcmp(o->type, "dot") != 0;
	if (picture && o->output == NULL)
		cqrs_die(CQRS_EXIT_USAGE, "-T %s needs -o FILE", o->type);
	cqrs_saga_def *defs[64];
	size_t ndefs = load_defs(o->files, o->nfiles, defs);
	cqrs_store *st = o->nargs ? open_store(o->store, CQRS_OPEN_READ, false) : NULL;
	char *text = NULL;
	size_t len = 0;
	FILE *out = picture ? cqrs_memstream(&text, &len) : stdout;
	if (out == NULL)
		cqrs_die(CQRS_EXIT_OSERR, "out of memory");
	if (!picture && o->output != NULL && freopen(o->output, "w", stdout) == NULL)
		cqrs_die(CQRS_EXIT_CANTCREAT, "%s: %s", o->output, strerror(errno));
	cqrs_error err = { 0 };
	if (cqrs_saga_dot(st, defs, ndefs, o->nargs ? o->args[0] : NULL, out, &err) < 0)
		cqrs_die_error(&err);
	if (picture) {
		if (fclose(out) != 0) /* cqrs_memstream: EOF when a write was lost */
			cqrs_die(CQRS_EXIT_OSERR, "out of memory");
		render(text, len, o->type, o->output);
		free(text);
	}
	cqrs_store_close(st);
	for (size_t i = 0; i < ndefs; i++)
		cqrs_saga_free(defs[i]);
	return 0;
}

/* Before the command only -h and -V mean something. */
static void before_command(const char *arg)
{
	if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)
		usage(0);
	if (strcmp(arg, "-V") == 0 || strcmp(arg, "--version") == 0) {
		cqrs_print_version();
		exit(cqrs_finish_stdout(0));
	}
	if (arg[0] != '-' || arg[1] == '\0')
		return;
	bool known = strncmp(arg, "--", 2) == 0 ? long_matches(arg) > 0
						: strchr("bfosTv", arg[1]) != NULL;
	if (known)
		bad_usage(NULL, "option '%s' goes after the command", arg);
	bad_usage(NULL, "unrecognized option '%s'", arg);
}

/* Each command and the options it takes, as in the SYNOPSIS (-h and -V:
 * all of them). */
static const struct {
	const char *name, *opts;
	int (*fn)(const struct opts *o);
} commands[] = {
	{ "run", "vFwbfsSLMUl", cmd_run }, { "status", "mksL", cmd_status },
	{ "show", "msL", cmd_show_retry }, { "dot", "fTosL", cmd_dot },
	{ "retry", "sL", cmd_show_retry }, { "check", "fL", cmd_check },
};

int main(int argc, char **argv)
{
	cqrs_tool_init("cqrs-saga");
	cqrs_log_scan_args(argc, argv);
	if (argc < 2)
		usage(CQRS_EXIT_USAGE);
	before_command(argv[1]);
	size_t i = 0, n = sizeof commands / sizeof commands[0];
	while (i < n && strcmp(argv[1], commands[i].name) != 0)
		i++;
	if (i == n) {
		cqrs_warn("unknown command '%s'", argv[1]);
		usage(CQRS_EXIT_USAGE);
	}
	struct opts o = { .cmd = argv[1], .type = "dot", .stuck_us = 3600LL * 1000000 };
	parse_options(argc - 1, argv + 1, commands[i].opts, &o);
	int code = commands[i].fn(&o);
	free(o.files);
	free(o.upcasters);
	return cqrs_finish_stdout(code);
}
