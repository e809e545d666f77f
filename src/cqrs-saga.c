/* cqrs-saga: run sagas (the order-processing saga by default) and see them. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cqrs.h"
#include "banned.h"

static const char usage_text[] =
	"usage: cqrs-saga run [-v] [--follow] [--wait] [-b count] [-f file]... [-s store] "
	"[--no-sync]\n"
	"       cqrs-saga status [--format text|ndjson] [--stuck-after duration] [-s store]\n"
	"       cqrs-saga show [--format text|ndjson] [-s store] saga_id\n"
	"       cqrs-saga dot [-f file]... [-T dot|svg|png] [-o file] [-s store] [saga_id]\n"
	"       cqrs-saga retry [-s store] saga_id\n"
	"       cqrs-saga check [-f file]...\n";

static void usage(int code)
{
	fputs(usage_text, code ? stderr : stdout);
	if (code == 0)
		fputs("\n"
		      "  -b, --batch COUNT        saga instances per transaction (default 256)\n"
		      "  -f, --file FILE          saga definition (default: the order saga)\n"
		      "      --follow             keep running: new events, retries, deadlines\n"
		      "      --format FORMAT      text (default) or ndjson\n"
		      "  -o, --output FILE        where dot -T svg|png writes the picture\n"
		      "  -s, --store PATH         event store (default: $CQRS_STORE)\n"
		      "      --stuck-after DUR    status: active with no change this long (1h)\n"
		      "  -T, --type FORMAT        dot: dot (default), svg or png (needs Graphviz)\n"
		      "  -v, --verbose            say each step on standard error\n"
		      "      --wait               wait for another runner instead of exit 75\n"
		      "      --no-sync            do not fsync each commit\n"
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

/* One runner per store at a time: a second one would run steps twice. */
static int take_lock(const char *store, bool wait)
{
	char path[4200];
	snprintf(path, sizeof path, "%s.saga.lock", store);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		cqrs_die(errno == EACCES ? CQRS_EXIT_NOPERM : CQRS_EXIT_CANTCREAT,
			 "%s: cannot open lock file: %s", path, strerror(errno));
	while (flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) < 0) {
		if (errno == EINTR && !stop)
			continue;
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

static cqrs_store *open_store(const char *opt, enum cqrs_open_mode mode)
{
	cqrs_error err = { 0 };
	cqrs_store *st = cqrs_store_open(cqrs_store_path(opt), mode, &err);
	if (st == NULL)
		cqrs_die_error(&err);
	return st;
}

static int run(cqrs_store *st, cqrs_saga_def **defs, size_t ndefs, int64_t batch, bool verbose,
	       bool follow)
{
	struct cqrs_saga_options opt = { .batch = batch,
					 .verbose = verbose,
					 .should_stop = stopping };
	cqrs_error err = { 0 };
	cqrs_saga_runner *r = cqrs_saga_runner_new(st, defs, ndefs, &opt, &err);
	if (r == NULL)
		cqrs_die_error(&err);
	int code = 0;
	do {
		int64_t next_due = 0;
		if (cqrs_saga_run(r, &next_due, &err) < 0) {
			cqrs_warn("%s", err.msg);
			code = err.code;
			break;
		}
		if (!follow || stop)
			break;
		/* sleep until new events, the next retry or deadline, or a signal */
		int64_t ms = 60000;
		if (next_due > 0) {
			int64_t left = (next_due - cqrs_saga_now()) / 1000 + 1;
			if (left < ms)
				ms = left < 0 ? 0 : left;
		}
		if (cqrs_store_wait(st, (int)ms, NULL, 0, &err) < 0) {
			cqrs_warn("%s", err.msg);
			code = err.code;
			break;
		}
	} while (!stop);
	if (verbose) {
		struct cqrs_saga_stats s;
		cqrs_saga_runner_stats(r, &s);
		cqrs_warn("started %lld, completed %lld, compensated %lld, failed %lld, "
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

int main(int argc, char **argv)
{
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
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	cqrs_tool_init("cqrs-saga");
	if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))
		usage(0);
	if (argc >= 2 && (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0)) {
		cqrs_print_version();
		return cqrs_finish_stdout(0);
	}
	if (argc < 2 || argv[1][0] == '-')
		usage(CQRS_EXIT_USAGE);
	const char *cmd = argv[1];
	argc--;
	argv++;
	const char *store_opt = NULL, *output = NULL, *type = "dot";
	enum cqrs_saga_format format = CQRS_SAGA_TEXT;
	int64_t batch = 0, stuck_us = 3600LL * 1000000;
	bool verbose = false, follow = false, wait = false, no_sync = false;
	char **files = calloc((size_t)argc + 1, sizeof *files);
	size_t nfiles = 0;
	if (files == NULL)
		cqrs_die(CQRS_EXIT_OSERR, "out of memory");
	int ch;
	while ((ch = getopt_long(argc, argv, "b:f:o:s:T:vhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'b':
			if (cqrs_parse_int64(optarg, &batch) < 0 || batch == 0 || batch > 100000)
				cqrs_die(CQRS_EXIT_USAGE,
					 "--batch needs a count from 1 to 100000: '%s'", optarg);
			break;
		case 'f': files[nfiles++] = optarg; break;
		case 'F': follow = true; break;
		case 'm':
			if (strcmp(optarg, "text") == 0)
				format = CQRS_SAGA_TEXT;
			else if (strcmp(optarg, "ndjson") == 0)
				format = CQRS_SAGA_NDJSON;
			else
				cqrs_die(CQRS_EXIT_USAGE, "--format is text or ndjson: '%s'",
					 optarg);
			break;
		case 'o': output = optarg; break;
		case 's': store_opt = optarg; break;
		case 'k':
			stuck_us = cqrs_saga_duration_parse(optarg);
			if (stuck_us < 0)
				cqrs_die(CQRS_EXIT_USAGE,
					 "--stuck-after needs a duration such as 30m or 2h: '%s'",
					 optarg);
			break;
		case 'T':
			if (strcmp(optarg, "dot") != 0 && strcmp(optarg, "svg") != 0 &&
			    strcmp(optarg, "png") != 0)
				cqrs_die(CQRS_EXIT_USAGE, "-T is dot, svg or png: '%s'", optarg);
			type = optarg;
			break;
		case 'v': verbose = true; break;
		case 'w': wait = true; break;
		case 'S': no_sync = true; break;
		case 'h': usage(0); break;
		case 'V': cqrs_print_version(); return cqrs_finish_stdout(0);
		default: usage(CQRS_EXIT_USAGE);
		}
	}
	char **args = argv + optind;
	int nargs = argc - optind;
	cqrs_saga_def *defs[64];
	if (nfiles > 64)
		cqrs_die(CQRS_EXIT_USAGE, "at most 64 saga definitions");
	int code = 0;
	cqrs_error err = { 0 };

	if (strcmp(cmd, "run") == 0) {
		if (nargs != 0)
			cqrs_die(CQRS_EXIT_USAGE, "run takes no operands: '%s'", args[0]);
		size_t ndefs = load_defs(files, nfiles, defs);
		const char *path = cqrs_store_path(store_opt);
		struct sigaction sa = { .sa_handler = on_signal };
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		cqrs_store *st = open_store(store_opt, CQRS_OPEN_WRITE);
		int lock = take_lock(path, wait);
		if (no_sync)
			cqrs_store_set_durability(st, CQRS_DURABLE_NORMAL);
		code = run(st, defs, ndefs, batch, verbose, follow);
		cqrs_store_close(st);
		close(lock);
		for (size_t i = 0; i < ndefs; i++)
			cqrs_saga_free(defs[i]);
	} else if (strcmp(cmd, "check") == 0) {
		if (nargs != 0)
			cqrs_die(CQRS_EXIT_USAGE, "check takes no operands: '%s'", args[0]);
		size_t ndefs = load_defs(files, nfiles, defs);
		for (size_t i = 0; i < ndefs; i++) {
			printf("%s: saga '%s' is valid\n", nfiles ? files[i] : "order.yaml",
			       cqrs_saga_name(defs[i]));
			cqrs_saga_free(defs[i]);
		}
	} else if (strcmp(cmd, "status") == 0) {
		if (nargs != 0)
			cqrs_die(CQRS_EXIT_USAGE, "status takes no operands: '%s'", args[0]);
		cqrs_store *st = open_store(store_opt, CQRS_OPEN_READ);
		if (cqrs_saga_status(st, stdout, format, stuck_us, &err) < 0)
			cqrs_die_error(&err);
		cqrs_store_close(st);
	} else if (strcmp(cmd, "show") == 0 || strcmp(cmd, "retry") == 0) {
		if (nargs != 1)
			cqrs_die(CQRS_EXIT_USAGE, "%s needs one saga id", cmd);
		bool show = cmd[1] == 'h';
		cqrs_store *st = open_store(store_opt, show ? CQRS_OPEN_READ : CQRS_OPEN_WRITE);
		int rc = show ? cqrs_saga_show(st, args[0], stdout, format, &err)
			      : cqrs_saga_retry(st, args[0], &err);
		if (rc < 0)
			cqrs_die_error(&err);
		cqrs_store_close(st);
	} else if (strcmp(cmd, "dot") == 0) {
		if (nargs > 1)
			cqrs_die(CQRS_EXIT_USAGE, "dot takes at most one saga id");
		bool picture = strcmp(type, "dot") != 0;
		if (picture && output == NULL)
			cqrs_die(CQRS_EXIT_USAGE, "-T %s needs -o FILE", type);
		size_t ndefs = load_defs(files, nfiles, defs);
		cqrs_store *st = nargs ? open_store(store_opt, CQRS_OPEN_READ) : NULL;
		char *text = NULL;
		size_t len = 0;
		FILE *out = picture ? open_memstream(&text, &len) : stdout;
		if (out == NULL)
			cqrs_die(CQRS_EXIT_OSERR, "out of memory");
		if (!picture && output != NULL && freopen(output, "w", stdout) == NULL)
			cqrs_die(CQRS_EXIT_CANTCREAT, "%s: %s", output, strerror(errno));
		if (cqrs_saga_dot(st, defs, ndefs, nargs ? args[0] : NULL, out, &err) < 0)
			cqrs_die_error(&err);
		if (picture) {
			fclose(out);
			render(text, len, type, output);
			free(text);
		}
		cqrs_store_close(st);
		for (size_t i = 0; i < ndefs; i++)
			cqrs_saga_free(defs[i]);
	} else {
		cqrs_warn("unknown command '%s'", cmd);
		usage(CQRS_EXIT_USAGE);
	}
	free(files);
	return cqrs_finish_stdout(code);
}
